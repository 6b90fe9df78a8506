//! `replicator memory`: per-key memory estimates and the report, from a file or a live master.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use replicator::files;
use replicator::memory::{self, Allocator, KeyMemory, Model, Report, Sizer};
use replicator::{Event, Item};

use crate::FilterArgs;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MemFormat {
    /// One row per key, the columns of `rdb --command memory`.
    Csv,
    /// The summary as one JSON object.
    Json,
    /// The summary as one self-contained HTML page with charts.
    Html,
}

#[derive(clap::Args)]
pub(crate) struct MemoryArgs {
    /// An RDB file (`-` for standard input), an AOF (its base is read), or
    /// `redis://[user:password@]HOST:PORT`, `rediss://…` or `redis+sentinel://…` of a master
    /// or of any node of a cluster (a full sync as a replica of every shard: no SCAN load).
    source: String,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "csv")]
    format: MemFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// How many of the biggest keys (and encoding hints) the summary lists.
    #[arg(long, default_value_t = 100)]
    top: usize,
    /// What separates the parts of a key name, for the prefix table.
    #[arg(long, default_value = ":")]
    prefix_separator: String,
    /// How many parts deep the prefix table goes.
    #[arg(long, default_value_t = 3)]
    prefix_depth: usize,
    /// The server to estimate for: `7.0.15`, `redis-8.2`, `valkey-8.1`. Default: the version
    /// the file names (`redis-ver`/`valkey-ver`), else one guessed from its RDB version.
    #[arg(long, value_name = "V")]
    server_version: Option<String>,
    /// The server build's allocator (`INFO memory` `mem_allocator`): jemalloc (the bundled
    /// one), jemalloc-16 (Debian/Ubuntu packages), libc.
    #[arg(long, default_value = "jemalloc", value_parser = parse_alloc)]
    allocator: Allocator,
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    conn: crate::replicate::ConnArgs,
    /// The server ran in cluster mode (Redis 7.0–7.2 and Valkey 7.2 then keep 16 more bytes a
    /// key). Found by itself when SOURCE is a cluster node.
    #[arg(long)]
    cluster_mode: bool,
    /// Try a file whose RDB version this tool does not know.
    #[arg(long)]
    relaxed_version: bool,
    /// Members of one big set, hash or sorted set remembered to find duplicates (9 bytes
    /// each; 16 each in one of up to 65,536 members). Lower than `check`'s default: a report needs no full duplicate check, and the
    /// report stays at about 20 MiB (run `check` for that).
    #[arg(long, value_name = "N", default_value_t = 1 << 16)]
    dup_check_limit: usize,
}

fn parse_alloc(s: &str) -> Result<Allocator, String> {
    Allocator::from_name(s)
        .ok_or_else(|| format!("unknown allocator {s:?}: jemalloc, jemalloc-16 or libc"))
}

/// Parses `7.0.15`, `redis-7.0`, `valkey-8.1.1` into (valkey, version text).
fn parse_server(s: &str) -> anyhow::Result<(bool, String)> {
    let (valkey, v) = match s.split_once('-') {
        Some(("valkey", v)) => (true, v),
        Some(("redis", v)) => (false, v),
        None => (false, s),
        _ => anyhow::bail!("--server-version {s:?}: expected 7.0.15, redis-8.2 or valkey-8.1"),
    };
    if v.split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_none()
    {
        anyhow::bail!("--server-version {s:?}: no major version number");
    }
    Ok((valkey, v.to_string()))
}

/// What the file says of the server that wrote it.
#[derive(Default)]
struct Writer {
    redis_ver: Option<String>,
    valkey_ver: Option<String>,
    rdb_version: u32,
    valkey_magic: bool,
    ctime_ms: Option<i64>,
}

impl Writer {
    fn model(&self, alloc: Allocator, cluster: bool) -> (Model, String) {
        let (valkey, v) = match (&self.valkey_ver, &self.redis_ver) {
            (Some(v), _) => (true, v.clone()),
            (None, Some(v)) => (false, v.clone()),
            (None, None) => {
                let guess = match (self.valkey_magic, self.rdb_version) {
                    (true, _) => "9.0",
                    (_, ..=9) => "6.2",
                    (_, 10) => "7.0",
                    (_, 11) => "7.2",
                    (_, _) => "8.2",
                };
                (self.valkey_magic, guess.to_string())
            }
        };
        let m = Model::for_version(&v, valkey, alloc)
            .unwrap_or(Model::new(memory::Layout::Redis70, alloc))
            .cluster(cluster);
        let name = if valkey { "Valkey" } else { "Redis" };
        (
            m,
            format!("{name} {v}, {} ({:?} layout)", alloc.name(), m.layout),
        )
    }
}

pub(crate) fn memory(args: &MemoryArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filters.filter()?;
    if filter.filters_commands() {
        anyhow::bail!("--command and --skip-command do not apply to a memory report");
    }
    let forced = args
        .server_version
        .as_deref()
        .map(parse_server)
        .transpose()?;
    let mut report = Report::new(
        args.top,
        args.prefix_separator.as_bytes(),
        args.prefix_depth,
    );
    let mut out = crate::open_output(args.output.as_deref())?;
    if args.format == MemFormat::Csv {
        out.write_all(memory::CSV_HEADER.as_bytes())?;
    }
    let mut writer = Writer::default();
    let cluster_seen = std::cell::Cell::new(false);
    let mut sizer: Option<Sizer> = None;
    let mut row = Vec::with_capacity(256);
    let mut keys = 0u64;
    let mut on_item = |item: Item, out: &mut dyn Write| -> anyhow::Result<()> {
        match &item {
            Item::Header { flavor, version } => {
                writer.rdb_version = *version;
                writer.valkey_magic = *flavor == replicator::rdb::Flavor::Valkey;
            }
            Item::Aux { key, value } => {
                let text = String::from_utf8_lossy(value).into_owned();
                match &key[..] {
                    b"redis-ver" => writer.redis_ver = Some(text),
                    b"valkey-ver" => writer.valkey_ver = Some(text),
                    b"ctime" => writer.ctime_ms = text.parse::<i64>().ok().map(|s| s * 1000),
                    _ => {}
                }
            }
            _ => {}
        }
        // the model is fixed at the first item past the header and aux fields
        if matches!(item, Item::Header { .. } | Item::Aux { .. }) {
            return Ok(());
        }
        let s = sizer.get_or_insert_with(|| {
            let (model, text) = match &forced {
                Some((valkey, v)) => {
                    let w = Writer {
                        valkey_ver: valkey.then(|| v.clone()),
                        redis_ver: (!valkey).then(|| v.clone()),
                        ..Writer::default()
                    };
                    w.model(args.allocator, args.cluster_mode || cluster_seen.get())
                }
                None => writer.model(args.allocator, args.cluster_mode || cluster_seen.get()),
            };
            report.server(&text);
            if let Some(ms) = writer.ctime_ms {
                report.now_ms(ms);
            }
            Sizer::new(model)
        });
        if let Some(k) = s.take(item) {
            if pass(&filter, &k) {
                keys += 1;
                report.add(&k);
                if args.format == MemFormat::Csv {
                    row.clear();
                    memory::csv_row(&mut row, &k);
                    out.write_all(&row)?;
                }
            }
        }
        Ok(())
    };
    if ["redis://", "rediss://", "redis+sentinel://"]
        .iter()
        .any(|p| args.source.starts_with(p))
    {
        live(args, &cluster_seen, &mut |i| on_item(i, &mut out))?;
    } else {
        let path = PathBuf::from(&args.source);
        let mut opts = files::Options::new();
        // packed values need only their sizes: checked, not built
        opts.rdb_mut()
            .packed_sizes(true)
            .build_packed(false)
            .dup_check_limit(args.dup_check_limit)
            .relaxed_version(args.relaxed_version);
        let mut events = files::open_with(&path, &opts)?;
        let progress = crate::Progress::new(events.len());
        let mut n = 0u64;
        loop {
            match events.next_event() {
                Ok(Some(Event::Rdb(item))) => {
                    n += 1;
                    if n % 4096 == 0 {
                        progress.set(events.offset());
                    }
                    on_item(item, &mut out)?;
                }
                // an AOF's commands after its base are not part of the report
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    progress.done();
                    return Err(e.into());
                }
            }
        }
        progress.done();
    }
    match args.format {
        MemFormat::Csv => {}
        MemFormat::Json => out.write_all(&report.to_json())?,
        MemFormat::Html => out.write_all(report.to_html().as_bytes())?,
    }
    out.flush()?;
    let t = report.total();
    eprintln!("replicator: {keys} keys, {} bytes estimated", t.bytes);
    Ok(ExitCode::SUCCESS)
}

fn pass(f: &replicator::filter::Filter, k: &KeyMemory) -> bool {
    if f.is_key_filter_empty() {
        return true;
    }
    let head = replicator::KeyRecord::new(
        k.db,
        k.key.clone(),
        replicator::Value::String(k.key.slice(0..0)),
    );
    let mut head = head.head;
    head.value_type = k.value_type;
    f.pass_key(&head)
}

/// A full sync from a live master (every shard of a cluster): the RDBs' items, then done.
fn live(
    args: &MemoryArgs,
    cluster: &std::cell::Cell<bool>,
    on_item: &mut dyn FnMut(Item) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut b = replicator::Replicator::builder(&args.source)?;
    args.conn.apply(&mut b)?;
    let mut rdb = replicator::Config::default();
    rdb.packed_sizes(true)
        .build_packed(false)
        .dup_check_limit(args.dup_check_limit)
        .relaxed_version(args.relaxed_version);
    b.rdb_only(true)
        .rdb_config(rdb)
        .read_timeout(Duration::from_secs(60));
    let rt = crate::runtime(1)?;
    let (mut r, connection) = b.connect();
    rt.spawn(connection);
    let mut result = Ok(());
    while let Some(ev) = r.blocking_next_event() {
        match ev {
            Ok(Event::Rdb(item)) => {
                if let Err(e) = on_item(item) {
                    result = Err(e);
                    break;
                }
            }
            Ok(Event::SyncStart(s)) if s.shard.is_some() => cluster.set(true),
            // the stream ends after the last RDB (every shard's, for a cluster)
            Ok(_) => {}
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    drop(r);
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}
