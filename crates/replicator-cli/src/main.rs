//! `replicator`: dump and check RDB and AOF files, and replicate a live master. The work is
//! the library's (`replicator::files`, `replicator::print`, `replicator::Replicator`); this is
//! arguments, progress, messages and exit codes.

mod aof;
mod config;
mod memory;
mod obs;
mod replicate;
mod sync;

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use obs::{FileMetrics, Observed};
use replicator::files::{self, FileEvents};
use replicator::filter::Filter;
use replicator::print::{
    Count, Json, Jsonl, Keys, ParallelEnd, PartWriter, PrintParts, PrintVisit, Printer, Rdb, Resp,
    Restore, Sink, print_parallel,
};
use replicator::stats::Stats;
use replicator::{Event, ValueType};

#[derive(Parser)]
#[command(
    name = "replicator",
    version,
    about = "Decode, check and convert Redis/Valkey RDB and AOF files; replicate a live master"
)]
struct Cli {
    #[command(flatten)]
    ops: OpsArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options of every command: configuration, logs, metrics.
#[derive(clap::Args)]
struct OpsArgs {
    /// A TOML file of options, named as the long flags (docs/config.md); flags and
    /// `REPLICATOR_*` environment variables win over it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log lines as text or as JSON objects (on stderr).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: obs::LogFormat,
    /// Which log lines: a level (`info`) or `RUST_LOG`-style filters (`replica_net=debug`).
    /// Default: RUST_LOG, else `info` for replicate and sync and `warn` for the rest.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Serve Prometheus metrics at /metrics, and /health and /ready, on this address.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// /ready answers 200 only while every source lags its master by at most this many bytes.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 1 << 20)]
    ready_lag: u64,
    /// Keep serving the metrics address this many seconds after the work ended (a last scrape
    /// of a `dump` or `check`).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 0)]
    metrics_linger: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode an RDB file, an AOF file, an appendonlydir or a manifest and write its keys and
    /// commands.
    Dump(DumpArgs),
    /// Decode everything and verify checksums (RDB) or commands (AOF); exit 0 when sound.
    Check(CheckArgs),
    /// Be a replica of a live master: print its data (the RDB) and then every command.
    Replicate(replicate::ReplicateArgs),
    /// Write a file, an AOF or a live master into Redis, Valkey or a Redis Cluster, in order,
    /// resumable.
    Sync(sync::SyncArgs),
    /// Estimate each key's memory on the server that wrote the file (or on `--server-version`)
    /// and report where it goes: CSV per key, or a JSON or HTML summary.
    Memory(memory::MemoryArgs),
    /// Show the options a command would run with and where each came from (flag,
    /// environment, file, default); secrets redacted.
    Config(ConfigArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Print every option of every command as a Markdown table instead (docs/config.md).
    #[arg(long)]
    table: bool,
    /// The command and its arguments, as they would be run: `sync SOURCE TARGET --mode …`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND [ARGS]"
    )]
    args: Vec<OsString>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// JSON Lines, one object per key (docs/jsonl.md).
    Jsonl,
    /// One JSON array of the same objects.
    Json,
    /// Redis commands that rebuild the keys (pipe into `redis-cli --pipe`).
    Resp,
    /// Key names, one per line.
    Keys,
    /// The number of keys that pass the filters.
    Count,
    /// A new RDB file (with `-o`) for `--target-version` (default: the source's).
    Rdb,
}

/// The filters of `dump` and `replicate`, for key records and commands alike.
#[derive(clap::Args)]
struct FilterArgs {
    /// Only keys (and commands) of this database (repeatable).
    #[arg(long)]
    db: Vec<u64>,
    /// Only keys (and commands whose first key) match this regular expression (on bytes).
    #[arg(long)]
    key: Option<String>,
    /// Only keys (and commands that write) of this type: string, list, set, zset, hash,
    /// stream, module (repeatable).
    #[arg(long = "type", value_parser = parse_type)]
    types: Vec<ValueType>,
    /// Only commands with this name (repeatable, any case). Key records pass.
    #[arg(long)]
    command: Vec<String>,
    /// Leave out commands with this name (repeatable, any case).
    #[arg(long)]
    skip_command: Vec<String>,
}

#[derive(clap::Args)]
struct DumpArgs {
    /// The RDB file (`-` for standard input), AOF file, AOF directory or AOF manifest.
    file: PathBuf,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "jsonl")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[command(flatten)]
    filters: FilterArgs,
    /// Also write non-key items (aux fields, functions, module aux, RESIZEDB, EOF).
    #[arg(long)]
    all: bool,
    /// Largest number of elements per command in `--format resp`.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// `--format resp`: one `RESTORE key ttl payload ABSTTL REPLACE` per key (keeps every
    /// encoding detail; the fastest way to move data between servers).
    #[arg(long)]
    restore: bool,
    /// RDB version of the server the output is for (`--format rdb|resp`, `RESTORE` payloads):
    /// 9 to 14, or 80 (Valkey 9). Default: the source's. A lower target converts what it can
    /// and refuses what it cannot hold (`--format resp` leaves out commands the target lacks
    /// and says so on stderr).
    #[arg(long, value_name = "N")]
    target_version: Option<u32>,
    /// `--format rdb` / `--restore` for an older target: drop stream IDMP state, NACK zones
    /// and key metadata marked ALLOW_IGNORE (counted on stderr) instead of refusing the key.
    #[arg(long)]
    lossy: bool,
    /// Try a file whose RDB version this tool does not know (a newer Redis or Valkey);
    /// decoding stops at the first type or opcode it does not know.
    #[arg(long)]
    relaxed_version: bool,
    /// Read what Redis reads where this tool is stricter: a text score with trailing bytes
    /// ("1.5x" as 1.5) and a string-encoding byte where a length belongs.
    #[arg(long)]
    lenient: bool,
    /// `--format rdb` / `--restore`: no LZF compression (`rdbcompression no`).
    #[arg(long)]
    no_compression: bool,
    /// Do not verify the checksum.
    #[arg(long)]
    no_checksum: bool,
    /// Map a regular file into memory and read it in place (zero-copy, no reading thread),
    /// its pages let go behind the decoder; `--mmap=false` reads it on a second thread
    /// instead, on one decoding thread (on several, the file is always mapped). Standard
    /// input and pipes are read.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    mmap: bool,
    #[command(flatten)]
    threads: ThreadArgs,
}

/// How many threads decode an RDB file (`dump` and `check`).
#[derive(clap::Args)]
struct ThreadArgs {
    /// Decoding threads for an RDB file (0: one per core; one more thread cuts the file into
    /// batches where records are guessed to start, checked as they are decoded). The output is the same at any count. The file is mapped into memory
    /// and read in place, its pages let go behind the readers. Standard input, AOF files, and
    /// `dump --format json|rdb` and `--restore` (a big key's payload is one command) decode on
    /// one thread.
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Bytes of records per batch on several threads (tests and tuning; 0: for `check`, whose
    /// batches hold a tally, 4 MiB up to four threads and 16 MiB shared among more; 1 MiB
    /// where they hold printed output).
    #[arg(long, value_name = "BYTES", default_value_t = 0, hide = true)]
    batch_bytes: u64,
}

/// `check`'s batch on `threads` threads: 4 MiB up to four threads, then smaller, so that
/// the batches in flight map about 16 MiB of the file in all. Each worker's batch keeps much
/// of its mapped pages until it ends (where the page cache holds the file in large folios,
/// the kernel maps up to 2 MiB at a time), and the batches after a big key's wait for their
/// turn: on eight threads, 4 MiB batches reached 52-69 MiB of peak RSS on the bench's mixed
/// file, 2 MiB batches 38-41 MiB. Fewer, bigger batches are faster on two threads (1 MiB
/// batches took 7.6 % longer there).
fn check_batch(threads: usize) -> u64 {
    ((16u64 << 20) / threads.max(1) as u64).clamp(1 << 20, 4 << 20)
}

impl ThreadArgs {
    /// The batch size asked for, else `default`.
    fn batch_or(&self, default: u64) -> u64 {
        match self.batch_bytes {
            0 => default,
            n => n,
        }
    }

    /// The decoding threads asked for (0: one per core).
    fn count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The RDB file (`-` for standard input), AOF file, AOF directory or AOF manifest.
    file: PathBuf,
    /// Map a regular file into memory and read it in place (zero-copy, no reading thread),
    /// its pages let go behind the decoder; `--mmap=false` reads it on a second thread
    /// instead, on one decoding thread (on several, the file is always mapped). Standard
    /// input and pipes are read.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    mmap: bool,
    /// Try a file whose RDB version this tool does not know (a newer Redis or Valkey);
    /// checking stops at the first type or opcode it does not know.
    #[arg(long)]
    relaxed_version: bool,
    /// Accept what Redis accepts where this tool is stricter (see `dump --lenient`).
    #[arg(long)]
    lenient: bool,
    /// Members of one big set, hash or sorted set remembered to find duplicates (9 bytes
    /// each; 16 each in one of up to 65,536 members); past it the check is partial and says so.
    #[arg(long, value_name = "N", default_value_t = replicator::rdb::DUP_CHECK_LIMIT)]
    dup_check_limit: usize,
    /// AOF: cut the last file at its last valid command, after copying it to a backup.
    #[arg(long)]
    fix: bool,
    /// AOF: cut the last file at the first `#TS` annotation later than this unix time, after
    /// copying it to a backup.
    #[arg(long, value_name = "TS")]
    truncate_to_timestamp: Option<i64>,
    #[command(flatten)]
    threads: ThreadArgs,
}

fn parse_type(s: &str) -> Result<ValueType, String> {
    ValueType::from_name(s).ok_or_else(|| {
        format!(
            "unknown type {s:?}: expected string, list, set, zset, hash, stream, array or module"
        )
    })
}

/// A glibc malloc arena for each thread that runs at once, and no more: the main thread's,
/// one per decoding thread up to the cores, and the walker's and a duplicate check's (see
/// `rdb_format::Pipeline`). glibc gives each new thread an arena of its own up to the limit
/// and keeps what is freed in each: `dump --threads 8` peaked at 58–66 MiB with one per thread
/// (eight per core allowed) and at 43–47 MiB with one per core. Past the limit a new thread
/// shares an arena picked by which one is free at that moment: with one per core, the walker
/// shared one with a worker in some runs and not in others, and where it did, each waited on
/// the other's allocations (`dump --format resp --threads 2` took 0.61 s or 0.70–0.85 s at
/// random; docs/bench.md). Called before any thread is started.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas(threads: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = libc::c_int::try_from(malloc_arenas(threads, cores)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` changes a setting of the allocator and touches no Rust memory; it runs
    // in `main` before any thread is started.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas(_threads: usize) {}

/// The arenas for `threads` decoding threads on `cores` cores: the main thread's, one per
/// decoding thread that runs at once, the walker's and a duplicate check's.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn malloc_arenas(threads: usize, cores: usize) -> usize {
    threads.clamp(1, cores.max(1)) + 3
}

/// An input file is mapped into memory when it is decoded on several threads (or with
/// `--mmap`). If someone cuts it short meanwhile, the next read of a page past its new end
/// raises `SIGBUS`; rather than die with the shell's "Bus error", the process says so and
/// exits with status 1, like any other unreadable input.
#[cfg(unix)]
fn report_sigbus() {
    extern "C" fn on_sigbus(_: libc::c_int) {
        const MSG: &[u8] = b"replicator: the input file was cut short while it was being read \
            (SIGBUS on a page of its mapping); run again on a copy that nobody changes\n";
        // SAFETY: `write` and `_exit` are async-signal-safe; MSG is a static buffer.
        #[allow(unsafe_code)]
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(1);
        }
    }
    // SAFETY: installs a handler that only calls async-signal-safe functions; it runs first in
    // `main`, before any thread is started.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGBUS, on_sigbus as *const () as libc::sighandler_t);
    }
}

#[cfg(not(unix))]
fn report_sigbus() {}

fn main() -> ExitCode {
    report_sigbus();
    let (cli, _, _) = match config::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("replicator: {e:#}");
            return ExitCode::from(2);
        }
    };
    limit_malloc_arenas(match &cli.cmd {
        Cmd::Dump(a) => a.threads.count(),
        Cmd::Check(a) => a.threads.count(),
        // (replicate and sync: as many threads as cores at most)
        _ => usize::MAX,
    });
    let live = matches!(cli.cmd, Cmd::Replicate(_) | Cmd::Sync(_));
    let level = if live { "info" } else { "warn" };
    let live_source = match &cli.cmd {
        Cmd::Replicate(_) => true,
        Cmd::Sync(a) => a.is_live(),
        _ => false,
    };
    if let Err(e) = obs::init_logs(cli.ops.log_format, cli.ops.log_level.as_deref(), level) {
        eprintln!("replicator: {e:#}");
        return ExitCode::from(2);
    }
    let observed = match &cli.ops.metrics_addr {
        Some(addr) => match obs::serve(addr, cli.ops.ready_lag, live_source) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("replicator: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let result = match cli.cmd {
        Cmd::Dump(args) => dump(&args, observed.as_deref()),
        Cmd::Check(args) => check(&args, observed.as_deref()),
        Cmd::Replicate(args) => replicate::replicate(args, observed.as_deref()),
        Cmd::Sync(args) => sync::sync(args, observed.as_deref()),
        Cmd::Memory(args) => memory::memory(&args),
        Cmd::Config(mut args) => {
            if let Some(c) = &cli.ops.config {
                if !args
                    .args
                    .iter()
                    .any(|a| a == "--config" || a.to_string_lossy().starts_with("--config="))
                {
                    args.args.push("--config".into());
                    args.args.push(c.into());
                }
            }
            if args.table {
                print!("{}", config::table());
                Ok(ExitCode::SUCCESS)
            } else {
                config::show(&args.args).map(|text| {
                    print!("{text}");
                    ExitCode::SUCCESS
                })
            }
        }
    };
    if let (Some(o), true) = (&observed, cli.ops.metrics_linger > 0) {
        o.job("done");
        std::thread::sleep(std::time::Duration::from_secs(cli.ops.metrics_linger));
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`| head`) is not an error worth a message.
            let pipe = e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
                    || c.downcast_ref::<replicator::Error>()
                        .is_some_and(replicator::Error::is_broken_pipe)
            });
            if pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("replicator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A multi-threaded tokio runtime with `workers` threads, for the commands that talk to
/// servers.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// An error and its causes on one line, joined with `: `.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// A progress bar on stderr for big files when stderr is a terminal; nothing otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(len: u64) -> Self {
        if len < 8 << 20 || !io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(Some(bar))
    }

    fn set(&self, pos: u64) {
        if let Some(b) = &self.0 {
            b.set_position(pos);
        }
    }

    fn done(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
        let mut f = Filter::new();
        for db in &self.db {
            f.db(*db);
        }
        if let Some(re) = &self.key {
            f.key_pattern(re)?;
        }
        for t in &self.types {
            f.value_type(*t);
        }
        for c in &self.command {
            f.command(c);
        }
        for c in &self.skip_command {
            f.skip_command(c);
        }
        Ok(f)
    }
}

/// The output file, or standard output.
fn open_output(path: Option<&Path>) -> anyhow::Result<BufWriter<Box<dyn Write>>> {
    let out: Box<dyn Write> = match path {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    Ok(BufWriter::with_capacity(1 << 16, out))
}

/// Runs every event of `events` through a printer; a failed read ends the loop and comes back
/// beside the sink (finished unless `finish_on_error` is false: a cut RDB must not get an EOF).
/// Reads `events` into `sink`. `strings`: string keys go to the sink as borrowed records
/// ([`Sink::string`]), with their values (`Some(true)`) or checked only (`Some(false)`: the
/// decoder skips values).
fn drive<S: Sink>(
    events: &mut FileEvents,
    sink: S,
    filter: Filter,
    (all, finish_on_error): (bool, bool),
    strings: Option<bool>,
    metrics: &FileMetrics,
) -> anyhow::Result<(S, Option<replicator::Error>)> {
    let progress = Progress::new(events.len());
    let mut p = Printer::new(sink);
    p.filter(filter);
    if all {
        p.all(true);
    }
    let mut n = 0u64;
    let failure = loop {
        let got = match strings {
            // string keys, and checked keys when values are skipped, are printed as they are
            // handed over; a sink's error stops the decoder at that key
            Some(value) => {
                let mut visit = PrintVisit::new(&mut p, value, |p, offset| {
                    n += 1;
                    if n % 4096 == 0 {
                        progress.set(offset);
                        metrics.set(p.keys(), offset);
                    }
                    false
                });
                let got = events.next_event_with(&mut visit);
                if let Some(e) = visit.error {
                    return Err(e.into());
                }
                got
            }
            None => events.next_event(),
        };
        match got {
            Ok(Some(ev)) => {
                n += 1;
                if n % 4096 == 0 {
                    progress.set(events.offset());
                    metrics.set(p.keys(), events.offset());
                }
                p.event(ev)?;
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    progress.done();
    metrics.finish(p.keys(), events.offset(), failure.is_none());
    if failure.is_some() && !finish_on_error {
        p.flush()?;
        return Ok((p.into_sink(), failure));
    }
    Ok((p.finish()?, failure))
}

fn dump(args: &DumpArgs, observed: Option<&Observed>) -> anyhow::Result<ExitCode> {
    if let Some(o) = observed {
        o.job("decoding");
    }
    let fm = FileMetrics::new(&args.file.display().to_string());
    let aof = files::is_aof(&args.file)?;
    let filter = args.filters.filter()?;
    if !aof && filter.filters_commands() {
        anyhow::bail!("--command and --skip-command apply to AOF files only");
    }
    if args.restore && args.format != Format::Resp {
        anyhow::bail!("--restore goes with --format resp");
    }
    let mut opts = files::Options::new();
    // (the process maps one file and ends: its values' items need no reference count)
    opts.mmap(args.mmap).leak_map(true);
    let config = opts.rdb_mut();
    config
        .verify_checksum(!args.no_checksum)
        .relaxed_version(args.relaxed_version)
        .lenient(args.lenient)
        // count and keys need no values: check them without building them
        .skip_values(matches!(args.format, Format::Count | Format::Keys));
    let rdb_config = *config;
    let threads = args.threads.count();
    let parallel = threads > 1
        && !aof
        && files::is_regular(&args.file)
        && !args.restore
        && matches!(
            args.format,
            Format::Jsonl | Format::Resp | Format::Keys | Format::Count
        );
    let failure = if parallel {
        dump_parallel(args, rdb_config, filter, threads, &fm)?
    } else {
        dump_one(args, &opts, filter, &fm)?
    };
    let Some(e) = failure else {
        return Ok(ExitCode::SUCCESS);
    };
    match e.kind() {
        replicator::ErrorKind::Aof(a) if a.is_truncated_tail() => {
            eprintln!("replicator: {}", chain(&e));
            eprintln!(
                "replicator: the last file ends in a cut command (what a crash leaves); \
                 everything before offset {} was written; `replicator check --fix` cuts it there",
                a.ok_up_to().unwrap_or(0)
            );
            Ok(ExitCode::FAILURE)
        }
        _ => Err(e.into()),
    }
}

/// `check` of a file on one thread: the tally, how it ended, the partially checked keys.
fn check_one(
    path: &Path,
    opts: &files::Options,
    fm: &FileMetrics,
) -> anyhow::Result<(Stats, replicator::Result<()>, u64)> {
    let mut events = files::open_with(path, opts)?;
    let progress = Progress::new(events.len());
    let mut tally = Stats::new();
    let mut n = 0u64;
    let result = loop {
        // string keys and checked keys are counted as they are handed over, without an item
        // each
        let mut visit = CheckVisit {
            tally: &mut tally,
            n: &mut n,
            progress: &progress,
            fm,
        };
        // (the item looked at where it was returned: moved out of it, its 176 bytes were
        // copied once more)
        let got = events.next_event_with(&mut visit);
        match &got {
            Ok(Some(Event::Rdb(item))) => {
                n += 1;
                if n % 4096 == 0 {
                    progress.set(events.offset());
                    fm.set(tally.keys(), events.offset());
                }
                tally.add(item);
            }
            Ok(Some(_)) => {}
            Ok(None) => break Ok(()),
            Err(_) => break got.map(|_| ()),
        }
    };
    progress.done();
    fm.finish(tally.keys(), events.offset(), result.is_ok());
    Ok((tally, result, events.partial_checks()))
}

/// `check`'s [`Visitor`](replicator::rdb::Visitor) on one thread: the keys it is handed
/// counted, and the progress shown every 4096 keys.
struct CheckVisit<'a> {
    tally: &'a mut Stats,
    n: &'a mut u64,
    progress: &'a Progress,
    fm: &'a FileMetrics,
}

impl CheckVisit<'_> {
    fn counted(&mut self, offset: u64) -> ControlFlow<()> {
        *self.n += 1;
        if *self.n % 4096 == 0 {
            self.progress.set(offset);
            self.fm.set(self.tally.keys(), offset);
        }
        ControlFlow::Continue(())
    }
}

impl replicator::rdb::Visitor for CheckVisit<'_> {
    fn string(&mut self, rec: &replicator::rdb::StringRecord<'_>) -> ControlFlow<()> {
        self.tally.string(rec);
        self.counted(rec.offset)
    }

    fn takes_checked(&self) -> bool {
        true
    }

    fn checked(&mut self, head: &replicator::KeyHead) -> ControlFlow<()> {
        self.tally.checked(head);
        self.counted(head.offset)
    }
}

/// `check` of an RDB file on several threads (a [`Pipeline`](replicator::rdb::Pipeline)):
/// the same tally and the same first error as on one.
fn check_parallel(
    path: &Path,
    config: replicator::rdb::Config,
    threads: usize,
    batch_bytes: u64,
    fm: &FileMetrics,
) -> anyhow::Result<(Stats, replicator::Result<()>, u64)> {
    use replicator::rdb::{Part, Pipeline};
    use std::ops::ControlFlow;
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let progress = Progress::new(len);
    /// Tallies a batch's items up to its first error.
    fn tally_batch(
        tally: &mut Stats,
        batch: &mut replicator::rdb::Batch<'_>,
    ) -> Option<replicator::rdb::Error> {
        // string keys and checked keys are counted as they are handed over
        while let Some(item) = batch.next_with(tally) {
            match item {
                Ok(i) => tally.add(&i),
                Err(e) => return Some(e),
            }
        }
        None
    }
    let work = |batch: &mut replicator::rdb::Batch<'_>, _: &mut dyn FnMut(_)| {
        let mut t = Stats::new();
        let e = tally_batch(&mut t, batch);
        (t, e, batch.partial_checks(), batch.end())
    };
    let mut tally = Stats::new();
    let (mut partial, mut failure) = (0u64, None);
    // a tally holds little: many batches may wait for their turn while one worker is busy
    // with a big key (the walker keeps the bytes of only a few of them)
    let r = Pipeline::new(config)
        .threads(threads)
        .leak_map(true)
        .batch_bytes(batch_bytes)
        .window(1 << 16)
        // a tally is handed over whole: a big key is counted ahead of its turn
        .big_first(true)
        .run(path, work, |part| {
            let (error, at) = match part {
                Part::Item(i) => {
                    tally.add(&i);
                    (None, None)
                }
                Part::Done((t, e, p, end)) => {
                    tally.merge(&t);
                    partial += p;
                    (e, Some(end))
                }
            };
            if let Some(at) = at {
                progress.set(at);
                fm.set(tally.keys(), at);
            }
            match error {
                Some(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
                None => ControlFlow::Continue(()),
            }
        });
    progress.done();
    let result = match (failure, r) {
        (Some(e), _) | (None, Err(e)) => Err(replicator::Error::from(e)),
        (None, Ok(())) => Ok(()),
    };
    fm.finish(tally.keys(), len, result.is_ok());
    Ok((tally, result, partial))
}

/// `dump` of an RDB file on several threads ([`print_parallel`]); the first error.
fn dump_parallel(
    args: &DumpArgs,
    config: replicator::rdb::Config,
    filter: Filter,
    threads: usize,
    fm: &FileMetrics,
) -> anyhow::Result<Option<replicator::Error>> {
    let len = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    let out = PartWriter::output(Box::new(open_output(args.output.as_deref())?));
    let all = args.all.then_some(true);
    let mut pipeline = replicator::rdb::Pipeline::new(config);
    pipeline
        .threads(threads)
        .leak_map(true)
        .batch_bytes(args.threads.batch_or(1 << 20));
    if args.format == Format::Count {
        // a batch's count holds a few numbers, as a tally does for `check`: many batches may
        // wait for their turn while one worker is on a big key
        pipeline.window(1 << 16);
    }
    let run = Parallel {
        path: &args.file,
        pipeline,
        out: &out,
        filter: &filter,
        len,
        fm,
    };
    Ok(match args.format {
        Format::Jsonl => {
            let end = run.print(Jsonl::new(out.clone()), all)?;
            end.printer.finish()?;
            end.error
        }
        Format::Keys => {
            let end = run.print(Keys::new(out.clone()), all)?;
            end.printer.finish()?;
            end.error
        }
        Format::Count => {
            let end = run.print(Count::new(out.clone()), None)?;
            end.printer.finish()?;
            end.error
        }
        Format::Resp => {
            let mut r = Resp::new(out.clone());
            r.batch(args.batch).target_version(args.target_version);
            let end = run.print(r, all)?;
            let r = end.printer.finish()?;
            report_left_out(&r);
            end.error
        }
        Format::Json | Format::Rdb => unreachable!("decoded on one thread"),
    })
}

/// What a parallel `dump` prints with.
struct Parallel<'a> {
    path: &'a Path,
    pipeline: replicator::rdb::Pipeline,
    out: &'a PartWriter,
    filter: &'a Filter,
    len: u64,
    fm: &'a FileMetrics,
}

impl Parallel<'_> {
    fn print<S: PrintParts>(&self, sink: S, all: Option<bool>) -> anyhow::Result<ParallelEnd<S>> {
        let progress = Progress::new(self.len);
        let end = print_parallel(
            self.path,
            &self.pipeline,
            sink,
            self.out,
            self.filter.clone(),
            all,
            |keys, at| {
                progress.set(at);
                self.fm.set(keys, at);
            },
        )?;
        progress.done();
        self.fm.finish(end.keys, self.len, end.error.is_none());
        Ok(end)
    }
}

/// `dump` on one thread; the first error.
fn dump_one(
    args: &DumpArgs,
    opts: &files::Options,
    filter: Filter,
    fm: &FileMetrics,
) -> anyhow::Result<Option<replicator::Error>> {
    let mut events = files::open_with(&args.file, opts)?;
    let out = open_output(args.output.as_deref())?;
    // string keys as borrowed records, with values or (keys, count) checked only
    let (v, c) = (Some(true), Some(false));
    Ok(match args.format {
        Format::Jsonl => {
            drive(
                &mut events,
                Jsonl::new(out),
                filter,
                (args.all, true),
                v,
                fm,
            )?
            .1
        }
        Format::Json => drive(&mut events, Json::new(out), filter, (args.all, true), v, fm)?.1,
        Format::Keys => drive(&mut events, Keys::new(out), filter, (args.all, true), c, fm)?.1,
        Format::Count => drive(&mut events, Count::new(out), filter, (false, true), c, fm)?.1,
        Format::Resp if args.restore => {
            let mut r = Restore::new(out);
            r.target_version(args.target_version)
                .no_compression(args.no_compression)
                .lossy(args.lossy);
            let (r, failure) = drive(&mut events, r, filter, (args.all, true), None, fm)?;
            if let Some(v) = r.version() {
                report_dropped(r.dropped(), v);
            }
            failure
        }
        Format::Resp => {
            let mut r = Resp::new(out);
            r.batch(args.batch).target_version(args.target_version);
            let (r, failure) = drive(&mut events, r, filter, (args.all, true), v, fm)?;
            report_left_out(&r);
            failure
        }
        Format::Rdb => {
            let mut r = Rdb::new(out);
            r.target_version(args.target_version)
                .no_compression(args.no_compression)
                .lossy(args.lossy);
            let (r, failure) = drive(&mut events, r, filter, (true, false), None, fm)?;
            if failure.is_none() {
                eprintln!("replicator: {} keys written", r.keys());
                report_dropped(r.dropped(), r.version());
            }
            failure
        }
    })
}

/// Says on stderr what a lossy conversion for `version` dropped.
fn report_dropped(d: replicator::rdb::Dropped, version: u32) {
    if d.is_empty() {
        return;
    }
    eprintln!(
        "replicator: --lossy for RDB {version} dropped the IDMP state of {} streams, {} NACK-zone \
         entries and {} key metadata classes",
        d.idmp_streams, d.nacked_entries, d.key_meta_classes
    );
}

/// Says on stderr what `--format resp` left out because the target cannot hold it.
fn report_left_out<W: Write>(r: &Resp<W>) {
    for line in r.left_out().to_string().lines() {
        eprintln!("replicator: {line}");
    }
}

fn check(args: &CheckArgs, observed: Option<&Observed>) -> anyhow::Result<ExitCode> {
    if let Some(o) = observed {
        o.job("checking");
    }
    let fm = FileMetrics::new(&args.file.display().to_string());
    if files::is_aof(&args.file)? {
        return aof::check(args, &fm);
    }
    if args.fix || args.truncate_to_timestamp.is_some() {
        anyhow::bail!("--fix and --truncate-to-timestamp apply to AOF files only");
    }
    let mut opts = files::Options::new();
    opts.mmap(args.mmap)
        .leak_map(true)
        .rdb_mut()
        .skip_values(true)
        .relaxed_version(args.relaxed_version)
        .lenient(args.lenient)
        .dup_check_limit(args.dup_check_limit);
    let threads = args.threads.count();
    let (tally, result, partial) = if threads > 1 && files::is_regular(&args.file) {
        check_parallel(
            &args.file,
            *opts.rdb_mut(),
            threads,
            args.threads.batch_or(check_batch(threads)),
            &fm,
        )?
    } else {
        check_one(&args.file, &opts, &fm)?
    };
    let mut out = io::stdout().lock();
    write!(out, "{tally}")?;
    if partial > 0 {
        writeln!(
            out,
            "duplicate check: partial for {partial} keys with more members than the limit"
        )?;
    }
    let e = match result {
        Ok(()) => {
            match tally.checksum() {
                Some(Some(0)) => writeln!(out, "checksum: disabled in file (0), not checked")?,
                Some(Some(c)) => writeln!(out, "checksum: {c:016x} OK")?,
                Some(None) => writeln!(out, "checksum: none (RDB version < 5)")?,
                None => {}
            }
            writeln!(out, "RDB looks OK")?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => e,
    };
    out.flush()?;
    let replicator::ErrorKind::Rdb(rdb) = e.kind() else {
        return Err(e.into());
    };
    eprintln!("--- RDB ERROR DETECTED ---");
    eprintln!("[offset {}] {}", rdb.offset(), rdb.kind());
    if let Some(doing) = rdb.context().doing {
        eprintln!("While reading: {doing}");
    }
    match rdb.context().key.as_ref() {
        Some(k) => eprintln!("Key: {}", replicator::rdb::Shown(k)),
        None if !tally.last_key().is_empty() => {
            eprintln!(
                "Last key read: {}",
                replicator::rdb::Shown(tally.last_key())
            );
        }
        None => {}
    }
    eprintln!("error: {}", chain(&e));
    Ok(ExitCode::from(1))
}

#[cfg(test)]
mod tests {
    use super::malloc_arenas;

    /// `check`'s batches: 4 MiB up to four threads, then at most 16 MiB in flight in all, and
    /// never under 1 MiB.
    #[test]
    fn check_batches_shrink_past_four_threads() {
        let got: Vec<u64> = [0, 1, 2, 4, 8, 16, 64]
            .iter()
            .map(|&t| super::check_batch(t) >> 10)
            .collect();
        assert_eq!(got, [4096, 4096, 4096, 4096, 2048, 1024, 1024]);
    }

    /// Every thread of a decoding run that can run at once has an arena of its own (the main
    /// thread, the workers, the walker, a duplicate check), and no more are made for threads
    /// past the cores.
    #[test]
    fn each_thread_that_runs_at_once_has_a_malloc_arena() {
        assert_eq!(malloc_arenas(1, 2), 1 + 1 + 2);
        assert_eq!(malloc_arenas(2, 2), 1 + 2 + 2);
        assert_eq!(malloc_arenas(8, 2), 1 + 2 + 2);
        assert_eq!(malloc_arenas(4, 16), 1 + 4 + 2);
        assert_eq!(malloc_arenas(usize::MAX, 16), 1 + 16 + 2);
        assert_eq!(malloc_arenas(3, 0), 1 + 1 + 2);
    }
}
