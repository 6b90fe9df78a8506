//! `dump --format rdb` (a new RDB file for a chosen version) and `dump --format resp
//! --restore` (one `RESTORE` per key).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use aof_manifest::{AofReader, Event};
use rdb_format::{Config, EncodeConfig, Encoder, Item, KeyRecord};

use crate::aof::CommandFilter;
use crate::output::{RespSink, Sink};
use crate::{DumpArgs, Filter, Input, is_aof, open_output};

/// Where items come from: an RDB file, or an AOF (its RDB base, then commands).
enum Source {
    Rdb(Box<Input>),
    Aof(Box<AofReader>),
}

enum Got {
    Item(Item),
    Command(aof_manifest::AofCommand),
}

impl Source {
    fn open(args: &DumpArgs) -> anyhow::Result<Self> {
        // whole keys: an encoder needs a value's size before its elements
        let mut config = Config::default();
        config
            .chunk_threshold(usize::MAX)
            .string_piece(u64::MAX)
            .verify_checksum(!args.no_checksum)
            .relaxed_version(args.relaxed_version)
            .lenient(args.lenient);
        if is_aof(&args.file)? {
            let opts = aof_manifest::Options {
                rdb: config,
                ..Default::default()
            };
            let r = AofReader::open(&args.file, opts).map_err(|e| anyhow::anyhow!("{e}"))?;
            return Ok(Self::Aof(Box::new(r)));
        }
        Ok(Self::Rdb(Box::new(
            Input::open(&args.file, config, args.mmap)?.0,
        )))
    }

    fn next(&mut self) -> anyhow::Result<Option<Got>> {
        match self {
            Self::Rdb(i) => Ok(i.next().map_err(|e| anyhow::anyhow!("{e}"))?.map(Got::Item)),
            Self::Aof(r) => loop {
                match r.next_event().map_err(|e| anyhow::anyhow!("{e}"))? {
                    None => return Ok(None),
                    Some(Event::Rdb { item, .. }) => return Ok(Some(Got::Item(item))),
                    Some(Event::Command(c)) => return Ok(Some(Got::Command(c))),
                    Some(_) => {}
                }
            },
        }
    }
}

/// The version to write: the one asked for, else the source's (clamped to what the encoder
/// writes).
fn target(args: &DumpArgs, source: u32) -> anyhow::Result<EncodeConfig> {
    let mut cfg = version(args.target_version, source)?;
    cfg.compress(!args.no_compression).lossy(args.lossy);
    Ok(cfg)
}

fn version(asked: Option<u32>, source: u32) -> anyhow::Result<EncodeConfig> {
    let v = asked.unwrap_or(match source {
        0..=9 => 9,
        10..=14 => source,
        15..=79 => 14,
        _ => 80,
    });
    EncodeConfig::new(v).map_err(|_| {
        anyhow::anyhow!("--target-version {v}: the encoder writes RDB 9 to 14 and 80 (Valkey 9)")
    })
}

pub(crate) fn to_rdb(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::from_args(&args.filters)?;
    let mut src = Source::open(args)?;
    let out = open_output(args)?;
    let mut enc: Option<Encoder<_>> = None;
    let mut out = Some(out);
    let mut keys = 0u64;
    while let Some(got) = src.next()? {
        let item = match got {
            Got::Item(i) => i,
            Got::Command(c) => anyhow::bail!(
                "{}: the AOF has commands after its RDB part (first: {} at offset {}); turning \
                 commands into data needs a server: load the AOF and SAVE",
                args.file.display(),
                rdb_format::Shown(c.cmd.arg(0).unwrap_or_default()),
                c.offset
            ),
        };
        if let Item::Header { version, .. } = &item {
            if enc.is_none() {
                let cfg = target(args, *version)?;
                let w = out.take().context("one RDB per output")?;
                enc = Some(Encoder::new(w, cfg).map_err(|e| anyhow::anyhow!("{e}"))?);
            }
            continue;
        }
        let Some(e) = enc.as_mut() else {
            anyhow::bail!("no RDB header before the first item");
        };
        let r = match &item {
            Item::Aux { key, value } => e.aux(key, value),
            Item::Function(f) if f.name.is_none() => e.function(&f.code),
            Item::ModuleAux {
                name,
                encver,
                when,
                raw,
            } => e.module_aux(name, *encver, *when, raw),
            Item::Key(KeyRecord { head, value }) if filter.pass(head) => {
                keys += 1;
                e.key_parts(head, value)
            }
            _ => Ok(()),
        };
        r.map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    let Some(e) = enc else {
        anyhow::bail!("{}: no RDB data", args.file.display());
    };
    let dropped = e.dropped();
    let version = e.config().version;
    e.finish()
        .map_err(|err| anyhow::anyhow!("{err}"))?
        .flush()?;
    eprintln!("replicator: {keys} keys written");
    report_dropped(dropped, version);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn restore(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter::from_args(&args.filters)?;
    let cmds = CommandFilter::new(&filter, &args.filters);
    let mut src = Source::open(args)?;
    let out = open_output(args)?;
    let mut sink = RespSink::new(out, args.batch);
    let mut cfg = None;
    let mut dropped = rdb_format::Dropped::default();
    let result: anyhow::Result<()> = (|| {
        while let Some(got) = src.next()? {
            match got {
                Got::Command(c) => {
                    if cmds.pass_command(c.db, &c.cmd) {
                        sink.command(c.db, &c.cmd, None, c.ts)?;
                    }
                }
                Got::Item(Item::Header { version, flavor }) => {
                    cfg = Some(target(args, version)?);
                    sink.other(&Item::Header { version, flavor })?;
                }
                Got::Item(Item::Key(rec)) if filter.pass(&rec.head) => {
                    let c = cfg.as_ref().context("no RDB header")?;
                    let (payload, d) =
                        rdb_format::dump_payload_counted(&rec.value, &rec.head.key_meta, c)
                            .map_err(|e| {
                                anyhow::anyhow!("key {}: {e}", rdb_format::Shown(&rec.head.key))
                            })?;
                    dropped.add(d);
                    sink.restore(&rec.head, &payload, true)?;
                }
                Got::Item(item @ Item::Function(_)) if cmds.is_empty() => sink.other(&item)?,
                Got::Item(_) => {}
            }
        }
        Ok(())
    })();
    sink.finish()?;
    result?;
    io::stdout().flush()?;
    if let Some(c) = cfg {
        report_dropped(dropped, c.version);
    }
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr what a lossy conversion for `version` dropped.
pub(crate) fn report_dropped(d: rdb_format::Dropped, version: u32) {
    if d.is_empty() {
        return;
    }
    eprintln!(
        "replicator: --lossy for RDB {version} dropped the IDMP state of {} streams, {} NACK-zone \
         entries and {} key metadata classes",
        d.idmp_streams, d.nacked_entries, d.key_meta_classes
    );
}
