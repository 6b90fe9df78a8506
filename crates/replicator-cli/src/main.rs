//! `replicator`: dump and check RDB and AOF files, and replicate a live master.

mod aof;
mod convert;
mod output;
mod prefetch;
mod replicate;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use rdb_format::{BytesReader, Config, Item, KeyHead, Reader, Value, ValueType};

use output::{JsonSink, KeysSink, RespSink, Sink, value_chunks};

#[derive(Parser)]
#[command(
    name = "replicator",
    version,
    about = "Decode, check and convert Redis/Valkey RDB and AOF files; replicate a live master"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
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
    /// Map the file into memory instead of reading it (zero-copy; the mapped pages count
    /// towards the process' resident memory).
    #[arg(long)]
    mmap: bool,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The RDB file (`-` for standard input), AOF file, AOF directory or AOF manifest.
    file: PathBuf,
    /// Map the file into memory instead of reading it.
    #[arg(long)]
    mmap: bool,
    /// Try a file whose RDB version this tool does not know (a newer Redis or Valkey);
    /// checking stops at the first type or opcode it does not know.
    #[arg(long)]
    relaxed_version: bool,
    /// Accept what Redis accepts where this tool is stricter (see `dump --lenient`).
    #[arg(long)]
    lenient: bool,
    /// Members of one big set, hash or sorted set remembered to find duplicates (16 bytes
    /// each); past it the check is partial and says so.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    dup_check_limit: usize,
    /// AOF: cut the last file at its last valid command, after copying it to a backup.
    #[arg(long)]
    fix: bool,
    /// AOF: cut the last file at the first `#TS` annotation later than this unix time, after
    /// copying it to a backup.
    #[arg(long, value_name = "TS")]
    truncate_to_timestamp: Option<i64>,
}

fn parse_type(s: &str) -> Result<ValueType, String> {
    ValueType::from_name(s).ok_or_else(|| {
        format!(
            "unknown type {s:?}: expected string, list, set, zset, hash, stream, array or module"
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Dump(args) => dump(args),
        Cmd::Check(args) => check(args),
        Cmd::Replicate(args) => replicate::replicate(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`| head`) is not an error worth a message.
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if io.kind() == io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("replicator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Items from a file (mapped, zero-copy) or standard input (streamed).
enum Input {
    Mapped(BytesReader),
    Stream(Reader<Box<dyn Read>>),
    Prefetched(prefetch::Prefetched),
}

impl Input {
    fn open(path: &PathBuf, config: Config, mmap: bool) -> anyhow::Result<(Self, u64)> {
        if path.as_os_str() == "-" {
            let stdin: Box<dyn Read> = Box::new(io::stdin().lock());
            return Ok((Self::Stream(Reader::with_config(stdin, config)), 0));
        }
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        if mmap {
            let bytes: Bytes = rdb_format::mmap_file(path)
                .with_context(|| format!("cannot map {}", path.display()))?;
            return Ok((
                Self::Mapped(BytesReader::with_config(bytes, config)),
                meta.len(),
            ));
        }
        // Streaming reads keep the resident set small whatever the file size (the pages of
        // a mapped file would count towards it); a second thread does the reading.
        Ok((
            Self::Prefetched(prefetch::Prefetched::spawn(file, config)),
            meta.len(),
        ))
    }

    fn next(&mut self) -> Result<Option<Item>, rdb_format::Error> {
        match self {
            Self::Mapped(r) => r.next_item(),
            Self::Stream(r) => r.next_item(),
            Self::Prefetched(r) => r.next_item(),
        }
    }

    fn offset(&self) -> u64 {
        match self {
            Self::Mapped(r) => r.decoder().offset(),
            Self::Stream(r) => r.decoder().offset(),
            Self::Prefetched(r) => r.decoder().offset(),
        }
    }

    fn version(&self) -> u32 {
        match self {
            Self::Mapped(r) => r.decoder().version(),
            Self::Stream(r) => r.decoder().version(),
            Self::Prefetched(r) => r.decoder().version(),
        }
    }

    fn partial_checks(&self) -> u64 {
        match self {
            Self::Mapped(r) => r.decoder().partial_checks(),
            Self::Stream(r) => r.decoder().partial_checks(),
            Self::Prefetched(r) => r.decoder().partial_checks(),
        }
    }
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

struct Filter {
    dbs: Vec<u64>,
    key: Option<regex::bytes::Regex>,
    types: Vec<ValueType>,
}

impl Filter {
    fn from_args(args: &FilterArgs) -> anyhow::Result<Self> {
        Ok(Self {
            dbs: args.db.clone(),
            key: args
                .key
                .as_deref()
                .map(regex::bytes::Regex::new)
                .transpose()
                .context("bad --key regular expression")?,
            types: args.types.clone(),
        })
    }

    fn is_empty(&self) -> bool {
        self.dbs.is_empty() && self.key.is_none() && self.types.is_empty()
    }

    fn pass(&self, head: &KeyHead) -> bool {
        (self.dbs.is_empty() || self.dbs.contains(&head.db))
            && (self.types.is_empty() || self.types.contains(&head.value_type))
            && self.key.as_ref().is_none_or(|re| re.is_match(&head.key))
    }
}

fn is_aof(path: &std::path::Path) -> anyhow::Result<bool> {
    if path.as_os_str() == "-" {
        return Ok(false);
    }
    let d = aof_manifest::detect(path).with_context(|| format!("{}", path.display()))?;
    Ok(d != aof_manifest::Detected::Rdb)
}

fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    if args.format == Format::Rdb {
        return convert::to_rdb(&args);
    }
    if args.restore {
        anyhow::ensure!(
            args.format == Format::Resp,
            "--restore goes with --format resp"
        );
        return convert::restore(&args);
    }
    if is_aof(&args.file)? {
        return aof::dump(args);
    }
    if !args.filters.command.is_empty() || !args.filters.skip_command.is_empty() {
        anyhow::bail!("--command and --skip-command apply to AOF files only");
    }
    let filter = Filter::from_args(&args.filters)?;
    let mut config = Config::default();
    config
        .verify_checksum(!args.no_checksum)
        .relaxed_version(args.relaxed_version)
        .lenient(args.lenient)
        // count and keys need no values: check them without building them
        .skip_values(matches!(args.format, Format::Count | Format::Keys));
    let (mut input, len) = Input::open(&args.file, config, args.mmap)?;
    let out = open_output(&args)?;
    let progress = Progress::new(len);
    let mut count = 0u64;
    let mut sink: Box<dyn Sink> = match args.format {
        Format::Jsonl => Box::new(JsonSink::new(out, false)),
        Format::Json => Box::new(JsonSink::new(out, true)),
        Format::Resp => Box::new(RespSink::new(out, args.batch).target(args.target_version)),
        Format::Keys => Box::new(KeysSink { w: out }),
        Format::Rdb => unreachable!("handled above"),
        Format::Count => {
            let r = run(&mut input, &filter, &progress, |_, _| Ok(()), &mut count);
            progress.done();
            r?;
            let mut out = out;
            writeln!(out, "{count}")?;
            out.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let resp = args.format == Format::Resp;
    let all = args.all;
    let filtered = !filter.is_empty();
    let result = run(
        &mut input,
        &filter,
        &progress,
        |ev, _version| deliver(sink.as_mut(), ev, all || (resp && !filtered)),
        &mut count,
    );
    progress.done();
    sink.finish()?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The output file, or standard output.
fn open_output(args: &DumpArgs) -> anyhow::Result<BufWriter<Box<dyn Write>>> {
    let out: Box<dyn Write> = match &args.output {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    Ok(BufWriter::with_capacity(1 << 16, out))
}

/// Hands one event to the sink; non-key items only when `others` (headers always: sinks
/// need the version).
fn deliver(sink: &mut dyn Sink, ev: Ev<'_>, others: bool) -> io::Result<()> {
    match ev {
        Ev::Start(h) => sink.start(h),
        Ev::Chunk(h, c) => sink.chunk(h, c),
        Ev::End(h) => sink.end(h),
        Ev::Module(h, name, encver, raw) => sink.module(h, name, encver, raw),
        Ev::Other(item) if others || matches!(item, Item::Header { .. }) => sink.other(item),
        Ev::Other(_) => Ok(()),
    }
}

enum Ev<'a> {
    Start(&'a KeyHead),
    Chunk(&'a KeyHead, &'a rdb_format::Chunk),
    End(&'a KeyHead),
    Module(&'a KeyHead, &'a str, u64, &'a Bytes),
    Other(&'a Item),
}

/// Turns decoded items into sink events, applying the filter; keeps the head of a chunked
/// key between its items.
#[derive(Default)]
struct Router {
    current: Option<KeyHead>,
}

impl Router {
    fn route(
        &mut self,
        item: Item,
        filter: &Filter,
        version: Option<u32>,
        count: &mut u64,
        f: &mut impl FnMut(Ev<'_>, Option<u32>) -> io::Result<()>,
    ) -> io::Result<()> {
        match item {
            Item::Key(rec) => {
                if !filter.pass(&rec.head) {
                    return Ok(());
                }
                *count += 1;
                let head = rec.head;
                match rec.value {
                    Value::Module(m) => f(Ev::Module(&head, &m.name, m.encver, &m.raw), version)?,
                    value => {
                        f(Ev::Start(&head), version)?;
                        for c in value_chunks(value) {
                            f(Ev::Chunk(&head, &c), version)?;
                        }
                        f(Ev::End(&head), version)?;
                    }
                }
            }
            Item::KeyChecked(head) => {
                if filter.pass(&head) {
                    *count += 1;
                    f(Ev::Start(&head), version)?;
                    f(Ev::End(&head), version)?;
                }
            }
            Item::KeyStart(head) => {
                if filter.pass(&head) {
                    *count += 1;
                    f(Ev::Start(&head), version)?;
                    self.current = Some(head);
                } else {
                    self.current = None;
                }
            }
            Item::Chunk(c) => {
                if let Some(h) = &self.current {
                    f(Ev::Chunk(h, &c), version)?;
                }
            }
            Item::KeyEnd => {
                if let Some(h) = self.current.take() {
                    f(Ev::End(&h), version)?;
                }
            }
            other => f(Ev::Other(&other), version)?,
        }
        Ok(())
    }
}

/// Drives the decoder, applies the filter and turns items into sink events.
fn run(
    input: &mut Input,
    filter: &Filter,
    progress: &Progress,
    mut f: impl FnMut(Ev<'_>, Option<u32>) -> io::Result<()>,
    count: &mut u64,
) -> anyhow::Result<()> {
    let mut router = Router::default();
    let mut n = 0u64;
    loop {
        let item = input.next().map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(item) = item else { break };
        n += 1;
        if n % 4096 == 0 {
            progress.set(input.offset());
        }
        let version = Some(input.version());
        router.route(item, filter, version, count, &mut f)?;
    }
    Ok(())
}

/// Type names in the order `check` prints them.
const TYPE_NAMES: [&str; 8] = [
    "array", "hash", "list", "module", "set", "stream", "string", "zset",
];

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if is_aof(&args.file)? {
        return aof::check(&args);
    }
    if args.fix || args.truncate_to_timestamp.is_some() {
        anyhow::bail!("--fix and --truncate-to-timestamp apply to AOF files only");
    }
    let mut config = Config::default();
    config
        .skip_values(true)
        .relaxed_version(args.relaxed_version)
        .lenient(args.lenient)
        .dup_check_limit(args.dup_check_limit);
    let (mut input, len) = Input::open(&args.file, config, args.mmap)?;
    let progress = Progress::new(len);
    // keys per db and type (indexed as TYPE_NAMES)
    let mut per_db: BTreeMap<u64, [u64; 8]> = BTreeMap::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // keys with an expiry; of them already expired; of them with a negative time
    let mut expiries = [0u64; 3];
    let mut tally = |head: &KeyHead| {
        let t = TYPE_NAMES
            .iter()
            .position(|n| *n == head.value_type.name())
            .unwrap_or(0);
        per_db.entry(head.db).or_default()[t] += 1;
        if let Some(ms) = head.expire_ms {
            expiries[0] += 1;
            expiries[1] += u64::from(ms < now_ms);
            expiries[2] += u64::from(ms < 0);
        }
    };
    let mut checksum = None;
    let mut header = None;
    let mut aux = 0u64;
    let mut functions = 0u64;
    let mut n = 0u64;
    // a copy, so no key keeps the reader's buffer alive and it can be reused in place
    let mut last_key: Vec<u8> = Vec::new();
    let result = loop {
        match input.next() {
            Ok(Some(item)) => {
                n += 1;
                if n % 4096 == 0 {
                    progress.set(input.offset());
                }
                match item {
                    Item::Header { flavor, version } => header = Some((flavor, version)),
                    Item::Key(rec) => {
                        tally(&rec.head);
                        last_key.clear();
                        last_key.extend_from_slice(&rec.head.key);
                    }
                    Item::KeyStart(head) | Item::KeyChecked(head) => {
                        tally(&head);
                        last_key.clear();
                        last_key.extend_from_slice(&head.key);
                    }
                    Item::Aux { .. } => aux += 1,
                    Item::Function(_) => functions += 1,
                    Item::Eof { checksum: c } => checksum = Some(c),
                    _ => {}
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    progress.done();
    let mut out = io::stdout().lock();
    if let Some((flavor, version)) = header {
        writeln!(out, "RDB version {version} ({flavor:?})")?;
    }
    writeln!(out, "aux fields: {aux}, functions: {functions}")?;
    let total: u64 = per_db.values().flatten().sum();
    for (db, types) in &per_db {
        let keys: u64 = types.iter().sum();
        let detail: Vec<String> = TYPE_NAMES
            .iter()
            .zip(types)
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        writeln!(out, "db {db}: {keys} keys ({})", detail.join(", "))?;
    }
    writeln!(out, "keys: {total}")?;
    writeln!(
        out,
        "expires: {} (already expired: {}, with a negative time: {})",
        expiries[0], expiries[1], expiries[2]
    )?;
    let partial = input.partial_checks();
    if partial > 0 {
        writeln!(
            out,
            "duplicate check: partial for {partial} keys with more members than the limit"
        )?;
    }
    match result {
        Ok(()) => {
            match checksum {
                Some(Some(0)) => writeln!(out, "checksum: disabled in file (0), not checked")?,
                Some(Some(c)) => writeln!(out, "checksum: {c:016x} OK")?,
                Some(None) => writeln!(out, "checksum: none (RDB version < 5)")?,
                None => {}
            }
            writeln!(out, "RDB looks OK")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            out.flush()?;
            eprintln!("--- RDB ERROR DETECTED ---");
            eprintln!("[offset {}] {}", e.offset(), e.kind());
            if let Some(doing) = e.context().doing {
                eprintln!("While reading: {doing}");
            }
            match e.context().key.as_ref() {
                Some(k) => eprintln!("Key: {}", rdb_format::Shown(k)),
                None if !last_key.is_empty() => {
                    eprintln!("Last key read: {}", rdb_format::Shown(&last_key));
                }
                None => {}
            }
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
