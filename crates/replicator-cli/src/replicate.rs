//! `replicator replicate URL`: be a replica of a live master and print what it sends.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rdb_format::Item;
use replica_net::{Auth, Client, ClientConfig, Event, TlsConfig};

use crate::aof::CommandFilter;
use crate::output::{JsonSink, RespSink, Sink};
use crate::{Filter, FilterArgs, Router, deliver};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReplFormat {
    /// JSON Lines: key records from the RDB, then one object per command.
    Jsonl,
    /// Commands that rebuild the master's data in an empty server (pipe into redis-cli).
    Resp,
}

#[derive(clap::Args)]
pub(crate) struct ReplicateArgs {
    /// `redis://[user:password@]host:port` or `rediss://…` (TLS).
    url: String,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "jsonl")]
    format: ReplFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// ACL user (also from the URL).
    #[arg(long)]
    user: Option<String>,
    /// Password (also from the URL, or from the REPLICATOR_PASSWORD environment variable,
    /// which keeps it out of the process list). Never printed.
    #[arg(long)]
    password: Option<String>,
    /// Use TLS even with a redis:// URL.
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA certificates to trust (turns TLS on).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (turns TLS on).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Name to send as SNI and to verify the certificate against (default: the host).
    #[arg(long, value_name = "NAME")]
    tls_sni: Option<String>,
    /// Do not verify the server's certificate (dangerous).
    #[arg(long)]
    tls_insecure: bool,
    /// Stop after the RDB snapshot.
    #[arg(long)]
    rdb_only: bool,
    /// Try a snapshot whose RDB version this tool does not know (a newer master); decoding
    /// stops at the first type or opcode it does not know.
    #[arg(long)]
    relaxed_version: bool,
    /// Continue from a saved position: `PSYNC REPLID OFFSET+1`.
    #[arg(long, value_name = "REPLID:OFFSET")]
    resume: Option<String>,
    #[command(flatten)]
    filters: FilterArgs,
    /// Also write non-key RDB items (jsonl).
    #[arg(long)]
    all: bool,
    /// Largest number of elements per command in `--format resp`.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Seconds of silence from the master before reconnecting.
    #[arg(long, default_value_t = 60)]
    read_timeout: u64,
    /// Milliseconds between `REPLCONF ACK`s in the command stream (a replica sends one a
    /// second; less makes the master's view of our offset fresher).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    ack_interval: u64,
}

fn config(args: &ReplicateArgs) -> anyhow::Result<ClientConfig> {
    let mut cfg = ClientConfig::from_url(&args.url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = args
        .password
        .clone()
        .or_else(|| std::env::var("REPLICATOR_PASSWORD").ok());
    if let Some(password) = password {
        let user = args
            .user
            .clone()
            .or_else(|| cfg.replica.auth.as_ref().and_then(|a| a.user.clone()));
        cfg.replica.auth = Some(Auth { user, password });
    } else if let (Some(user), Some(auth)) = (&args.user, cfg.replica.auth.as_mut()) {
        auth.user = Some(user.clone());
    }
    let wants_tls = args.tls
        || args.tls_ca.is_some()
        || args.tls_cert.is_some()
        || args.tls_insecure
        || args.tls_sni.is_some();
    if wants_tls || cfg.tls.is_some() {
        let mut t = TlsConfig::default();
        if let Some(ca) = &args.tls_ca {
            t.ca_file(ca);
        }
        match (&args.tls_cert, &args.tls_key) {
            (Some(c), Some(k)) => {
                t.client_cert(c, k);
            }
            (None, None) => {}
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        }
        if let Some(sni) = &args.tls_sni {
            t.server_name(sni);
        }
        t.insecure(args.tls_insecure);
        cfg.tls = Some(t);
    }
    cfg.replica.rdb_only = args.rdb_only;
    cfg.replica.rdb.relaxed_version(args.relaxed_version);
    cfg.replica.ack_interval = Duration::from_millis(args.ack_interval.max(10));
    cfg.read_timeout = Duration::from_secs(args.read_timeout.max(1));
    if let Some(r) = &args.resume {
        let (id, off) = r
            .rsplit_once(':')
            .and_then(|(id, off)| Some((id, off.parse::<u64>().ok()?)))
            .context("--resume wants REPLID:OFFSET")?;
        cfg.resume = Some((id.to_owned(), off));
    }
    Ok(cfg)
}

/// A status line on stderr, once a second, while `running`.
fn status_line(client: &Client, running: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<()>> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let status = client.status_handle();
    Some(std::thread::spawn(move || {
        while running.load(Ordering::Relaxed) {
            let s = status.get();
            let idle = s.last_input.map_or_else(
                || "-".to_owned(),
                |t| format!("{:.1}s", t.elapsed().as_secs_f64()),
            );
            eprint!(
                "\r\x1b[K{} | RDB {} bytes | offset {} | last data {idle} ago | connections {}",
                s.phase,
                s.rdb_bytes,
                s.offset.map_or_else(|| "-".to_owned(), |o| o.to_string()),
                s.connections
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        eprint!("\r\x1b[K");
    }))
}

pub(crate) fn replicate(args: ReplicateArgs) -> anyhow::Result<ExitCode> {
    let cfg = config(&args)?;
    let filter = Filter::from_args(&args.filters)?;
    let cmds = CommandFilter::new(&filter, &args.filters);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut client = {
        let _in_runtime = rt.enter();
        Client::start(cfg)
    };
    // SIGINT / SIGTERM: a last ACK, then the channel ends and what was received is flushed
    let stopper = client.stopper();
    rt.spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        stopper.stop();
    });
    let running = Arc::new(AtomicBool::new(true));
    let status = status_line(&client, running.clone());

    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let out = io::BufWriter::with_capacity(1 << 16, out);
    let mut sink: Box<dyn Sink> = match args.format {
        ReplFormat::Jsonl => Box::new(JsonSink::new(out, false)),
        ReplFormat::Resp => Box::new(RespSink::new(out, args.batch)),
    };
    let others = args.all || (args.format == ReplFormat::Resp && cmds.is_empty());
    let mut router = Router::default();
    let mut version = None;
    let mut count = 0u64;
    let mut failure = None;
    let mut commands = 0u64;
    let mut last_offset = None;
    let result: io::Result<()> = (|| {
        while let Some(first) = client.blocking_recv() {
            let mut next = Some(first);
            while let Some(ev) = next.take() {
                match ev {
                    Ok(Event::SyncStart(s)) => {
                        if s.full && s.resync {
                            eprintln!(
                                "replicator: full resync from {} at {}: the data is sent again",
                                s.replid, s.offset
                            );
                            sink.resync()?;
                        }
                    }
                    Ok(Event::Rdb(item)) => {
                        if let Item::Header { version: v, .. } = &item {
                            version = Some(*v);
                        }
                        router.route(item, &filter, version, &mut count, &mut |ev, _| {
                            deliver(sink.as_mut(), ev, others)
                        })?;
                    }
                    Ok(Event::Command(c)) => {
                        commands += 1;
                        last_offset = c.offset.or(last_offset);
                        if cmds.pass_command(c.db, &c.cmd) {
                            sink.command(c.db, &c.cmd, c.offset, None)?;
                        }
                    }
                    Ok(Event::Disconnected { reason }) => {
                        eprintln!("replicator: link lost: {reason}; reconnecting");
                    }
                    Ok(_) => {}
                    Err(e) => failure = Some(e),
                }
                next = client.try_recv();
            }
            sink.flush()?;
            if failure.is_some() {
                break;
            }
        }
        sink.finish()
    })();
    running.store(false, Ordering::Relaxed);
    if let Some(t) = status {
        let _ = t.join();
    }
    drop(client);
    rt.shutdown_timeout(Duration::from_secs(1));
    result?;
    eprintln!(
        "replicator: {count} key records, {commands} commands received, offset {}",
        last_offset.map_or_else(|| "-".to_owned(), |o| o.to_string())
    );
    match failure {
        Some(e) => {
            eprintln!("replicator: {e}");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}
