//! `check` for AOF: a single file, a multi-part directory or its manifest, with
//! `redis-check-aof`'s report, `--fix` and `--truncate-to-timestamp`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use replicator::Item;
use replicator::aof::{AofReader, Event, FileKind, Options};

use crate::CheckArgs;

#[derive(Default, Clone, Copy)]
struct FileStats {
    rdb: bool,
    keys: u64,
    commands: u64,
    annotations: u64,
}

pub(crate) fn check(args: &CheckArgs, fm: &crate::obs::FileMetrics) -> anyhow::Result<ExitCode> {
    let mut opts = Options::default();
    opts.rdb_mut().skip_values(true);
    let reader = match AofReader::open(&args.file, opts) {
        Ok(r) => r,
        Err(e) => {
            println!("error: {}", crate::chain(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    let files = reader.files().to_vec();
    let mut out = io::stdout().lock();
    match reader.manifest() {
        Some(_) => writeln!(out, "Multi-part AOF: {} files to load", files.len())?,
        None => writeln!(out, "Single-file AOF")?,
    }
    let mut stats = vec![FileStats::default(); files.len()];
    let mut cut_at = None;
    let mut failure = None;
    let mut read = 0u64;
    let totals = |stats: &[FileStats]| {
        stats
            .iter()
            .fold((0, 0), |(k, c), s| (k + s.keys, c + s.commands))
    };
    for ev in reader {
        match ev {
            Ok(Event::FileStart { file, rdb }) => stats[file].rdb = rdb,
            Ok(Event::Rdb { file, item }) => {
                if matches!(item, Item::Key(_) | Item::KeyStart(_) | Item::KeyChecked(_)) {
                    stats[file].keys += 1;
                }
            }
            Ok(Event::Command(c)) => stats[c.file].commands += 1,
            Ok(Event::Annotation {
                file, offset, ts, ..
            }) => {
                stats[file].annotations += 1;
                if let (Some(ts), Some(limit)) = (ts, args.truncate_to_timestamp) {
                    if ts > limit {
                        cut_at = Some((file, offset));
                        break;
                    }
                }
            }
            Ok(Event::FileEnd { file, size }) => {
                read += size;
                let (keys, commands) = totals(&stats);
                fm.set(keys, read);
                fm.commands(commands);
                let f = &files[file];
                let s = stats[file];
                let kind = f.kind.map_or("aof", FileKind::name);
                let format = if s.rdb { "RDB" } else { "RESP" };
                writeln!(
                    out,
                    "{} ({kind}, {format}, {size} bytes): {} keys, {} commands, {} annotations: OK",
                    f.name, s.keys, s.commands, s.annotations
                )?;
            }
            Ok(_) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let (keys, commands) = totals(&stats);
    fm.commands(commands);
    fm.finish(keys, read, failure.is_none() && cut_at.is_none());
    if let Some(e) = failure {
        let name = e
            .file()
            .map_or_else(|| args.file.display().to_string(), str::to_owned);
        if let (Some(ok), Some(path)) = (e.ok_up_to(), e.path()) {
            let line = replicator::aof::line_of(path, ok).unwrap_or(0);
            writeln!(
                out,
                "AOF analyzed: filename={name}, size={}, ok_up_to={ok}, ok_up_to_line={line}, diff={}",
                e.size(),
                e.size().saturating_sub(ok)
            )?;
        }
        writeln!(out, "error: {}", crate::chain(&e))?;
        let fixable = e.is_last_file() && e.ok_up_to().is_some();
        if !fixable {
            if args.fix {
                writeln!(
                    out,
                    "Cannot fix {name}: {}",
                    if e.ok_up_to().is_none() {
                        "the damage is not a cut command tail"
                    } else {
                        "it is not the last file of the AOF"
                    }
                )?;
            }
            return Ok(ExitCode::FAILURE);
        }
        let ok = e.ok_up_to().unwrap_or(0);
        if !args.fix {
            writeln!(
                out,
                "AOF {name} is not valid. Use the --fix option to try fixing it."
            )?;
            return Ok(ExitCode::FAILURE);
        }
        let Some(path) = e.path() else {
            return Ok(ExitCode::FAILURE);
        };
        writeln!(
            out,
            "This will shrink the AOF {name} from {} bytes, with {} bytes, to {ok} bytes",
            e.size(),
            e.size().saturating_sub(ok)
        )?;
        let bak = cut(path, ok)?;
        writeln!(
            out,
            "Successfully truncated AOF {name} (backup: {})",
            bak.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(limit) = args.truncate_to_timestamp {
        let Some((file, offset)) = cut_at else {
            writeln!(out, "Truncate nothing in AOF to timestamp {limit}")?;
            return Ok(ExitCode::SUCCESS);
        };
        let f = &files[file];
        if !f.last {
            writeln!(
                out,
                "Failed to truncate AOF {} to timestamp {limit} at offset {offset} because it is not the last file",
                f.name
            )?;
            return Ok(ExitCode::FAILURE);
        }
        if offset == 0 {
            writeln!(
                out,
                "AOF {} has nothing before timestamp {limit}, aborting",
                f.name
            )?;
            return Ok(ExitCode::FAILURE);
        }
        let bak = cut(&f.path, offset)?;
        writeln!(
            out,
            "Successfully truncated AOF {} to timestamp {limit} at offset {offset} (backup: {})",
            f.name,
            bak.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let total = |f: fn(&FileStats) -> u64| stats.iter().map(f).sum::<u64>();
    writeln!(
        out,
        "keys: {}, commands: {}, annotations: {}",
        total(|s| s.keys),
        total(|s| s.commands),
        total(|s| s.annotations)
    )?;
    writeln!(out, "AOF looks OK")?;
    Ok(ExitCode::SUCCESS)
}

/// Backs `path` up, then cuts it to `len` bytes.
fn cut(path: &Path, len: u64) -> anyhow::Result<PathBuf> {
    replicator::aof::truncate_with_backup(path, len)
        .with_context(|| format!("cannot cut {} to {len} bytes", path.display()))
}
