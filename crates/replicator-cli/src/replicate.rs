//! `replicator replicate URL`: be a replica of a live master and print what it sends.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use replicator::StatusHandle;
use replicator::print::{Jsonl, Printer, Resp, Sink};
use replicator::{Builder, Event, Replicator, TlsConfig};

use crate::FilterArgs;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReplFormat {
    /// JSON Lines: key records from the RDB, then one object per command.
    Jsonl,
    /// Commands that rebuild the master's data in an empty server (pipe into redis-cli).
    Resp,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ChannelsArg {
    /// Two where the master offers them, else one.
    Auto,
    /// One connection: the classic full sync.
    One,
    /// Two connections, or an error.
    Two,
}

impl ChannelsArg {
    pub(crate) fn channels(self) -> replicator::Channels {
        match self {
            Self::Auto => replicator::Channels::Auto,
            Self::One => replicator::Channels::One,
            Self::Two => replicator::Channels::Two,
        }
    }
}

/// How to reach a master: credentials and TLS (`replicate`, `memory`).
#[derive(clap::Args)]
pub(crate) struct ConnArgs {
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
}

impl ConnArgs {
    /// Applies the credentials and TLS settings to a builder.
    pub(crate) fn apply(&self, b: &mut Builder) -> anyhow::Result<()> {
        let password = self
            .password
            .clone()
            .or_else(|| std::env::var("REPLICATOR_PASSWORD").ok());
        if let Some(password) = password {
            let user = self
                .user
                .clone()
                .or_else(|| b.auth_user().flatten().map(str::to_owned));
            b.auth(user.as_deref(), &password);
        } else if let Some(user) = &self.user {
            b.user(Some(user));
        }
        let wants_tls = self.tls
            || self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_insecure
            || self.tls_sni.is_some();
        if wants_tls || b.is_tls() {
            let mut t = TlsConfig::default();
            if let Some(ca) = &self.tls_ca {
                t.ca_file(ca);
            }
            match (&self.tls_cert, &self.tls_key) {
                (Some(c), Some(k)) => {
                    t.client_cert(c, k);
                }
                (None, None) => {}
                _ => anyhow::bail!("--tls-cert and --tls-key go together"),
            }
            if let Some(sni) = &self.tls_sni {
                t.server_name(sni);
            }
            t.insecure(self.tls_insecure);
            b.tls(t);
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub(crate) struct ReplicateArgs {
    /// `redis://[user:password@]host:port` or `rediss://…` (TLS) of a master or of any node of
    /// a Redis Cluster (every shard is replicated), or
    /// `redis+sentinel://[user:password@]host1:port1,host2:port2/master-name`.
    url: String,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "jsonl")]
    format: ReplFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[command(flatten)]
    conn: ConnArgs,
    /// Stop after the RDB snapshot.
    #[arg(long)]
    rdb_only: bool,
    /// A cluster: replicate each shard from an online replica rather than its master.
    #[arg(long)]
    prefer_replica: bool,
    /// Try a snapshot whose RDB version this tool does not know (a newer master); decoding
    /// stops at the first type or opcode it does not know.
    #[arg(long)]
    relaxed_version: bool,
    /// Continue from a saved position: `PSYNC REPLID OFFSET+1` (a cluster: once per shard).
    #[arg(long, value_name = "REPLID:OFFSET")]
    resume: Vec<String>,
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
    /// How a full sync travels: `two` connections (the RDB on one, the writes made meanwhile
    /// on the other, held here: the master buffers nothing; Redis 8 with repl-rdb-channel,
    /// Valkey 8+ with dual-channel-replication-enabled, both with repl-diskless-sync), `one`
    /// (classic), or `auto`: two where the master offers them.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) sync_channels: ChannelsArg,
    /// During a two-channel sync, MiB of held writes kept in memory; the rest goes to a
    /// temporary file.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub(crate) hold_mib: usize,
    /// Milliseconds between `REPLCONF ACK`s in the command stream (a replica sends one a
    /// second; less makes the master's view of our offset fresher).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    ack_interval: u64,
}

fn builder(args: &ReplicateArgs) -> anyhow::Result<Builder> {
    let mut b = Replicator::builder(&args.url)?;
    args.conn.apply(&mut b)?;
    let mut rdb = replicator::Config::default();
    rdb.relaxed_version(args.relaxed_version);
    b.sync_channels(args.sync_channels.channels())
        .hold(args.hold_mib.max(1) << 20, None);
    b.prefer_replica(args.prefer_replica)
        .rdb_only(args.rdb_only)
        .rdb_config(rdb)
        .ack_interval(Duration::from_millis(args.ack_interval.max(10)))
        .read_timeout(Duration::from_secs(args.read_timeout.max(1)));
    for r in &args.resume {
        let (id, off) = r
            .rsplit_once(':')
            .and_then(|(id, off)| Some((id, off.parse::<u64>().ok()?)))
            .context("--resume wants REPLID:OFFSET")?;
        b.resume(id, off);
    }
    Ok(b)
}

/// A status line on stderr, once a second, while `running`.
fn status_line(
    status: StatusHandle,
    running: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let off = |o: Option<u64>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
    Some(std::thread::spawn(move || {
        while running.load(Ordering::Relaxed) {
            let shards = status.shards();
            let s = status.get();
            let idle = s.last_input.map_or_else(
                || "-".to_owned(),
                |t| format!("{:.1}s", t.elapsed().as_secs_f64()),
            );
            let line = if shards.is_empty() {
                format!(
                    "{} | RDB {} bytes | offset {} | last data {idle} ago | connections {}",
                    if s.phase.is_empty() {
                        "connecting"
                    } else {
                        s.phase
                    },
                    s.rdb_bytes,
                    off(s.offset),
                    s.connections
                )
            } else {
                // a cluster: one short part per shard
                let parts: Vec<String> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| format!("{i}:{} {} @{}", s.addr, s.phase, off(s.offset)))
                    .collect();
                parts.join(" | ")
            };
            eprint!("\r\x1b[K{line}");
            std::thread::sleep(Duration::from_millis(500));
        }
        eprint!("\r\x1b[K");
    }))
}

/// Stops the replica on SIGINT / SIGTERM: a last ACK, then the events end and what was
/// received is flushed.
pub(crate) async fn stop_on_signal(stopper: replicator::Stopper) {
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
}

pub(crate) fn replicate(
    args: ReplicateArgs,
    observed: Option<&crate::obs::Observed>,
) -> anyhow::Result<ExitCode> {
    let mut b = builder(&args)?;
    if observed.is_some() {
        b.poll_master(Some(Duration::from_secs(1)));
    }
    let filter = args.filters.filter()?;
    let rt = crate::runtime(1)?;
    let (mut r, connection) = b.connect();
    if let Some(o) = observed {
        o.watch(r.monitor());
        o.heartbeat(&rt);
    }
    rt.spawn(connection);
    rt.spawn(stop_on_signal(r.stopper()));
    let running = Arc::new(AtomicBool::new(true));
    let status = status_line(r.status_handle(), running.clone());

    let out = crate::open_output(args.output.as_deref())?;
    let followed = match args.format {
        ReplFormat::Jsonl => follow(&mut r, Jsonl::new(out), filter, args.all).map(|(_, f)| f),
        ReplFormat::Resp => {
            let mut resp = Resp::new(out);
            resp.batch(args.batch);
            follow(&mut r, resp, filter, args.all).map(|(resp, f)| {
                crate::report_left_out(&resp);
                f
            })
        }
    };
    running.store(false, Ordering::Relaxed);
    if let Some(t) = status {
        let _ = t.join();
    }
    drop(r);
    rt.shutdown_timeout(Duration::from_secs(1));
    let Followed {
        keys,
        commands,
        positions,
        failure,
    } = followed?;
    let at: Vec<String> = positions
        .values()
        .map(|(id, off)| format!("--resume {id}:{off}"))
        .collect();
    eprintln!(
        "replicator: {keys} key records, {commands} commands received; continue with {}",
        at.join(" ")
    );
    match failure {
        Some(e) => {
            eprintln!("replicator: {}", crate::chain(&e));
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// What [`follow`] saw.
struct Followed {
    keys: u64,
    commands: u64,
    /// Each shard's (a master's: shard 0) replid and the offset of the last command printed.
    positions: std::collections::BTreeMap<usize, (String, u64)>,
    /// The error that ended the replica.
    failure: Option<replicator::Error>,
}

/// Prints the replica's events until it ends; gives the sink back, finished.
fn follow<S: Sink>(
    r: &mut Replicator,
    sink: S,
    filter: replicator::filter::Filter,
    all: bool,
) -> replicator::Result<(S, Followed)> {
    let mut printer = Printer::new(sink);
    printer.filter(filter);
    if all {
        printer.all(true);
    }
    let mut seen = Followed {
        keys: 0,
        commands: 0,
        positions: Default::default(),
        failure: None,
    };
    while let Some(first) = r.blocking_next_event() {
        let mut next = Some(first);
        while let Some(ev) = next.take() {
            match ev {
                Ok(ev) => {
                    match &ev {
                        Event::SyncStart(s) => {
                            if let Some(h) = &s.history {
                                let of = s
                                    .shard
                                    .map_or_else(String::new, |n| format!(" (shard {n})"));
                                let then = if s.full {
                                    "a full sync"
                                } else {
                                    "a partial sync"
                                };
                                tracing::info!("new node{of}: {h}; {then} follows");
                            }
                            if s.full && s.resync {
                                tracing::warn!(
                                    "full resync from {} at {}: the data is sent again",
                                    s.replid,
                                    s.offset
                                );
                            }
                            let at = (s.replid.clone(), s.offset);
                            seen.positions.insert(s.shard.unwrap_or(0), at);
                        }
                        Event::Command(c) => {
                            seen.commands += 1;
                            let p = seen.positions.get_mut(&c.shard.unwrap_or(0));
                            if let (Some(p), Some(o)) = (p, c.offset) {
                                p.1 = o;
                            }
                        }
                        Event::Disconnected { .. } => {
                            // said by the library's log
                        }
                        Event::Offset { offset, shard } => {
                            if let Some(p) = seen.positions.get_mut(&shard.unwrap_or(0)) {
                                p.1 = *offset;
                            }
                        }
                        _ => {}
                    }
                    printer.event(ev)?;
                }
                Err(e) => seen.failure = Some(e),
            }
            next = r.try_next_event();
        }
        printer.flush()?;
        if seen.failure.is_some() {
            break;
        }
    }
    seen.keys = printer.keys();
    Ok((printer.finish()?, seen))
}
