//! `replicator sync SOURCE TARGET`: a file, an AOF or a live master into Redis, Valkey or a
//! Redis Cluster. The writing is the library's (`replicator::sync::Writer`); this is
//! arguments, the checkpoint file, progress and exit codes.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use replicator::print::Printer;
use replicator::sync::{Conflict, Mode, OnError, Options, Target, Writer};
use replicator::{Event, Replicator};

use crate::FilterArgs;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ModeArg {
    /// RESTORE where the payload fits the target, commands otherwise.
    Auto,
    /// RESTORE for every whole key.
    Restore,
    /// Commands for every key.
    Commands,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ConflictArg {
    /// Stop, naming the key.
    Fail,
    /// Overwrite it.
    Replace,
    /// Leave it and count it.
    Skip,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ErrorArg {
    /// Stop, naming the key and the target's words.
    Fail,
    /// Count it per kind with the first keys and go on.
    Skip,
}

#[derive(clap::Args)]
pub(crate) struct SyncArgs {
    /// An RDB file, an AOF file, an appendonlydir or manifest, or `redis://` / `rediss://` of
    /// a master (a live source runs until SIGINT or SIGTERM).
    source: String,
    /// `redis://[user:password@]host:port` or `rediss://…` of a standalone server or of any
    /// node of a Redis Cluster. The password can come from REPLICATOR_TARGET_PASSWORD.
    target: String,
    /// How keys are written.
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    /// Elements per command when keys go as commands.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// A key that already exists in the target.
    #[arg(long, value_enum, default_value = "fail")]
    on_conflict: ConflictArg,
    /// A write the target refuses (WRONGTYPE, OOM, …).
    #[arg(long, value_enum, default_value = "fail")]
    on_error: ErrorArg,
    /// Source database SRC goes to target database DST (repeatable).
    #[arg(long, value_name = "SRC:DST")]
    db_map: Vec<String>,
    /// Flush every master of the target before a full sync.
    #[arg(long)]
    flush_target: bool,
    /// Count and skip commands whose keys span slots of a cluster target and cannot be split.
    #[arg(long)]
    skip_cross_slot: bool,
    /// Stop on a transaction whose keys span slots of a cluster target (default: apply its
    /// commands one by one, in order, and count it).
    #[arg(long)]
    strict_transactions: bool,
    /// Keep the source position the target acknowledged in this file; a restart with the same
    /// file continues from there (PSYNC replid offset+1).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// A standalone target keeps the position itself, exactly once: commands go in
    /// transactions that also set this key (db 0) to `replid offset`; a restart reads it.
    #[arg(long, value_name = "KEY")]
    checkpoint_key: Option<String>,
    /// LZF-compress the strings of RESTORE payloads (for a target across a slow link).
    #[arg(long)]
    compress: bool,
    /// Unacknowledged commands per target node.
    #[arg(long, default_value_t = 8192)]
    window: usize,
    /// Unacknowledged bytes per target node, in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    window_mib: usize,
    /// A live source's full sync: `two` connections, `one`, or `auto` (see `replicate`).
    #[arg(long, value_enum, default_value = "auto")]
    sync_channels: crate::replicate::ChannelsArg,
    /// During a two-channel sync, MiB of held writes kept in memory; the rest goes to a
    /// temporary file.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    hold_mib: usize,
    #[command(flatten)]
    filters: FilterArgs,
}

impl SyncArgs {
    /// The source is a live master, not a file.
    pub(crate) fn is_live(&self) -> bool {
        self.source.contains("://")
    }
}

/// The checkpoint file: one line per source shard, `shard replid offset`.
fn read_checkpoint(path: &Path) -> anyhow::Result<Vec<(usize, String, u64)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                [s, id, off] => Ok((s.parse()?, id.to_owned(), off.parse()?)),
                _ => anyhow::bail!("{}: bad line {l:?}", path.display()),
            }
        })
        .collect()
}

fn write_checkpoint(path: &Path, positions: &[(usize, String, u64)]) -> anyhow::Result<()> {
    let mut text = String::from("# shard replid offset: the target has everything up to offset\n");
    for (s, id, off) in positions {
        text.push_str(&format!("{s} {id} {off}\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn options(args: &SyncArgs) -> anyhow::Result<Options> {
    let mut o = Options::default();
    o.mode(match args.mode {
        ModeArg::Auto => Mode::Auto,
        ModeArg::Restore => Mode::Restore,
        ModeArg::Commands => Mode::Commands,
    })
    .batch(args.batch)
    .conflict(match args.on_conflict {
        ConflictArg::Fail => Conflict::Fail,
        ConflictArg::Replace => Conflict::Replace,
        ConflictArg::Skip => Conflict::Skip,
    })
    .on_error(match args.on_error {
        ErrorArg::Fail => OnError::Fail,
        ErrorArg::Skip => OnError::Skip,
    })
    .flush_target(args.flush_target)
    .skip_cross_slot(args.skip_cross_slot)
    .strict_transactions(args.strict_transactions)
    .window(args.window, args.window_mib.max(1) << 20)
    .checkpoint_key(args.checkpoint_key.as_deref().map(str::as_bytes))
    .compress(args.compress);
    for m in &args.db_map {
        let (a, b) = m
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .with_context(|| format!("--db-map wants SRC:DST, not {m:?}"))?;
        o.map_db(a, b);
    }
    Ok(o)
}

/// `host:port` of a target URL (no credentials), as the sink's metrics label it.
fn target_addr(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

fn target_url(args: &SyncArgs) -> String {
    match std::env::var("REPLICATOR_TARGET_PASSWORD") {
        Ok(pw) if !args.target.contains('@') => {
            let (scheme, rest) = args
                .target
                .split_once("://")
                .unwrap_or(("redis", &args.target));
            let pw = pw
                .replace('%', "%25")
                .replace('@', "%40")
                .replace(':', "%3A");
            format!("{scheme}://:{pw}@{rest}")
        }
        _ => args.target.clone(),
    }
}

/// A status line on stderr while `running`: keys and commands per second, the source's
/// offset, the acknowledged offset and the lag, commands in flight per node.
fn status_line(
    target: Target,
    positions: replicator::sync::Positions,
    source: Option<replicator::StatusHandle>,
    running: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    if !io::stderr().is_terminal() {
        return None;
    }
    Some(std::thread::spawn(move || {
        let start = Instant::now();
        let (mut last, mut last_acked, mut last_keys) = (Instant::now(), 0u64, 0u64);
        while running.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            let c = target.counters();
            let keys = positions.keys();
            let secs = last.elapsed().as_secs_f64().max(1e-3);
            let rate = (c.acked - last_acked) as f64 / secs;
            let key_rate = keys.saturating_sub(last_keys) as f64 / secs;
            (last, last_acked, last_keys) = (Instant::now(), c.acked, keys);
            let inflight: Vec<String> = target
                .inflight()
                .iter()
                .filter(|(_, n, _)| *n > 0)
                .map(|(a, n, _)| format!("{a}:{n}"))
                .collect();
            let src = source.as_ref().map_or_else(String::new, |s| {
                let st = s.get();
                let acked = target.acked(0);
                let lag = match (st.offset, acked) {
                    (Some(o), Some(a)) => format!(" lag {} bytes", o.saturating_sub(a)),
                    _ => String::new(),
                };
                format!(
                    " | source {} @{}{lag} | acked @{}",
                    if st.phase.is_empty() {
                        "connecting"
                    } else {
                        st.phase
                    },
                    st.offset.map_or("-".into(), |o| o.to_string()),
                    acked.map_or("-".into(), |o| o.to_string())
                )
            });
            eprint!(
                "\r\x1b[K{:.0}s | {keys} keys, {key_rate:.0}/s | {} commands acked, {rate:.0}/s{src} | in flight {}",
                start.elapsed().as_secs_f64(),
                c.acked,
                if inflight.is_empty() {
                    "0".into()
                } else {
                    inflight.join(" ")
                }
            );
        }
        eprint!("\r\x1b[K");
    }))
}

/// `/health`'s target part, and the acknowledged offsets' gauges, read at each scrape.
fn observe_target(
    o: &crate::obs::Observed,
    target: Target,
    positions: replicator::sync::Positions,
    monitor: Option<replicator::observe::Monitor>,
    addr: String,
) {
    o.hook(move || {
        let pos = positions.get();
        let labels: Vec<String> = monitor
            .as_ref()
            .map(|m| m.sources().into_iter().map(|s| s.source).collect())
            .unwrap_or_default();
        for (shard, _, off) in &pos {
            if let Some(source) = labels.get(*shard) {
                metrics::gauge!(
                    "replicator_sink_acked_offset_bytes",
                    "source" => source.clone(),
                    "target" => addr.clone()
                )
                .set(*off as f64);
            }
        }
        let c = target.counters();
        let inflight: usize = target.inflight().iter().map(|(_, n, _)| n).sum();
        Some((
            "target",
            serde_json::json!({
                "target": addr,
                "acknowledged_commands": c.acked,
                "inflight_commands": inflight,
                "pending_units": target.pending(),
                "moved": c.moved,
                "ask": c.ask,
                "retries": c.retries,
                "lost_connections": c.disconnects,
                "positions": pos.iter().map(|(s, id, off)| serde_json::json!({"shard": s, "replid": id, "offset": off})).collect::<Vec<_>>(),
                "error": target.failure().map(|e| e.to_string()),
            }),
        ))
    });
}

pub(crate) fn sync(
    args: SyncArgs,
    observed: Option<&crate::obs::Observed>,
) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let filter = args.filters.filter()?;
    let rt = crate::runtime(2)?;
    let target = rt
        .block_on(replicator::sync::connect(&target_url(&args), opts.clone()))
        .context("cannot use the target")?;
    let live = args.is_live();
    let mut saved = match &args.checkpoint {
        Some(p) => read_checkpoint(p)?,
        None => Vec::new(),
    };
    if let (Some(key), true) = (&args.checkpoint_key, live) {
        // the target's own record wins: it is exactly what was applied
        let url = target_url(&args);
        if let Some((id, off)) =
            rt.block_on(replicator::sync::read_checkpoint_key(&url, key.as_bytes()))?
        {
            saved = vec![(0, id, off)];
        }
    }
    let mut writer = Writer::new(target.clone(), opts.clone())?;
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut failure = None;
    let checkpoint = |w: &Writer| -> anyhow::Result<()> {
        if let Some(p) = &args.checkpoint {
            let pos = w.positions();
            if !pos.is_empty() {
                write_checkpoint(p, &pos)?;
            }
        }
        Ok(())
    };
    let mut printer;
    if live {
        let mut b = Replicator::builder(&args.source)?;
        if let Ok(pw) = std::env::var("REPLICATOR_PASSWORD") {
            let user = b.auth_user().flatten().map(str::to_owned);
            b.auth(user.as_deref(), &pw);
        }
        for (_, id, off) in &saved {
            b.resume(id, *off);
        }
        if observed.is_some() {
            b.poll_master(Some(Duration::from_secs(1)));
        }
        b.sync_channels(args.sync_channels.channels())
            .hold(args.hold_mib.max(1) << 20, None);
        let _guard = rt.enter();
        let (mut r, connection) = b.connect();
        if let Some(o) = observed {
            o.watch(r.monitor());
            o.heartbeat(&rt);
            observe_target(
                o,
                target.clone(),
                writer.positions_handle(),
                Some(r.monitor()),
                target_addr(&args.target),
            );
        }
        rt.spawn(connection);
        rt.spawn(crate::replicate::stop_on_signal(r.stopper()));
        let status = status_line(
            target.clone(),
            writer.positions_handle(),
            Some(r.status_handle()),
            running.clone(),
        );
        // the checkpoint follows the target's acknowledgements, whether the source is busy or not
        let saver = args.checkpoint.clone().map(|path| {
            let (pos, running) = (writer.positions_handle(), running.clone());
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let p = pos.get();
                    if !p.is_empty() {
                        if let Err(e) = write_checkpoint(&path, &p) {
                            eprintln!("replicator: {e:#}");
                        }
                    }
                }
            })
        });
        printer = Printer::new(writer);
        printer.filter(filter);
        while let Some(first) = r.blocking_next_event() {
            let mut next = Some(first);
            while let Some(ev) = next.take() {
                match ev {
                    Ok(ev) => {
                        if let Err(e) = printer.event(ev) {
                            failure = Some(e);
                            r.stopper().stop();
                        }
                    }
                    Err(e) => failure = Some(e),
                }
                if failure.is_some() {
                    break;
                }
                next = r.try_next_event();
            }
            if failure.is_none() {
                // what was gathered goes out while the source is quiet
                if let Err(e) = printer.flush() {
                    failure = Some(e);
                }
            }
            if failure.is_some() {
                break;
            }
        }
        running.store(false, Ordering::Relaxed);
        for t in [status, saver].into_iter().flatten() {
            let _ = t.join();
        }
        drop(r);
    } else {
        if !saved.is_empty() {
            anyhow::bail!("--checkpoint continues a live source; a file is synced whole");
        }
        if target.info().cluster {
            // every database the file uses must have a place before anything is written
            let scan =
                replicator::files::open(Path::new(&args.source), replicator::Config::default())
                    .with_context(|| format!("cannot open {}", args.source))?;
            let mut seen = std::collections::BTreeSet::new();
            for ev in scan {
                let db = match ev? {
                    Event::Rdb(replicator::Item::SelectDb(db)) => db,
                    Event::Command(c) => c.db,
                    _ => continue,
                };
                if seen.insert(db) {
                    opts.check_db(db, target.info())?;
                }
            }
        }
        if let Some(o) = observed {
            o.job("writing a file");
            observe_target(
                o,
                target.clone(),
                writer.positions_handle(),
                None,
                target_addr(&args.target),
            );
        }
        let status = status_line(
            target.clone(),
            writer.positions_handle(),
            None,
            running.clone(),
        );
        printer = Printer::new(writer);
        printer.filter(filter);
        let events =
            replicator::files::open(Path::new(&args.source), replicator::Config::default())
                .with_context(|| format!("cannot open {}", args.source))?;
        for ev in events {
            let r = ev.and_then(|ev| printer.event(ev));
            if let Err(e) = r {
                failure = Some(e);
                break;
            }
        }
        running.store(false, Ordering::Relaxed);
        if let Some(t) = status {
            let _ = t.join();
        }
    }
    // what is in flight is acknowledged before the last checkpoint
    let finished = replicator::print::Sink::finish(printer.sink_mut());
    writer = printer.into_sink();
    if failure.is_none() {
        if let Err(e) = finished {
            failure = Some(e);
        }
    }
    checkpoint(&writer)?;
    report(&writer, started.elapsed());
    rt.shutdown_timeout(Duration::from_secs(1));
    match failure {
        Some(e) => {
            eprintln!("replicator: {}", crate::chain(&e));
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

fn report(w: &Writer, took: Duration) {
    let c = w.counts();
    let t = w.target().counters();
    eprintln!(
        "replicator: {} keys ({} as RESTORE, {} as commands), {} commands written in {:.1}s; \
         {} acknowledged by the target ({} sent again after {} MOVED, {} ASK, {} retries, {} \
         lost connections)",
        c.keys,
        c.restored,
        c.as_commands,
        c.commands,
        took.as_secs_f64(),
        t.acked,
        t.resent,
        t.moved,
        t.ask,
        t.retries,
        t.disconnects
    );
    let mut notes = Vec::new();
    if c.expired > 0 {
        notes.push(format!("{} keys already expired, not written", c.expired));
    }
    if c.split > 0 {
        notes.push(format!("{} multi-key commands split per slot", c.split));
    }
    if c.transactions_split > 0 {
        notes.push(format!(
            "{} transactions across slots applied command by command",
            c.transactions_split
        ));
    }
    if c.cross_slot_skipped > 0 {
        notes.push(format!(
            "{} cross-slot commands skipped",
            c.cross_slot_skipped
        ));
    }
    if t.conflicts_skipped.count > 0 {
        notes.push(format!(
            "{} keys already in the target, left as they were (first: {})",
            t.conflicts_skipped.count,
            shown(&t.conflicts_skipped.first_keys)
        ));
    }
    let refused: BTreeMap<_, _> = t.refused.iter().collect();
    for (kind, r) in refused {
        notes.push(format!(
            "{} writes refused with {kind} and skipped (first keys: {}; {})",
            r.count,
            shown(&r.first_keys),
            r.first_error
        ));
    }
    for n in notes {
        eprintln!("replicator: {n}");
    }
}

fn shown<K: AsRef<[u8]>>(keys: &[K]) -> String {
    keys.iter()
        .map(|k| replicator::rdb::Shown(k.as_ref()).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
