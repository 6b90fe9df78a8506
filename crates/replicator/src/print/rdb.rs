//! [`Rdb`]: a new RDB file for a chosen version; [`Restore`]: one `RESTORE` per key.

use std::io::Write;

use rdb_format::{
    Chunk, Dropped, EncodeConfig, Encoder, Item, KeyHead, KeyRecord, ModuleValue, Shown,
};

use super::spool::{BigKey, Spool};
use super::{Resp, Sink};
use crate::error::{Error, Result};
use crate::event::CommandEvent;

/// The encoder settings for a target: the version asked for, else the source's (clamped to
/// what the encoder writes: RDB 9 to 14 and Valkey 80).
///
/// ```
/// assert_eq!(replicator::print::target_config(None, 7).unwrap().version(), 9);
/// assert_eq!(replicator::print::target_config(Some(11), 12).unwrap().version(), 11);
/// assert!(replicator::print::target_config(Some(42), 12).is_err());
/// ```
pub fn target_config(asked: Option<u32>, source: u32) -> Result<EncodeConfig> {
    let v = asked.unwrap_or(match source {
        0..=9 => 9,
        10..=14 => source,
        15..=79 => 14,
        _ => 80,
    });
    Ok(EncodeConfig::new(v)?)
}

/// How a converting sink writes: target version (default: the source's), compression, lossy.
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    version: Option<u32>,
    no_compression: bool,
    lossy: bool,
}

impl Target {
    fn config(self, source: u32) -> Result<EncodeConfig> {
        let mut cfg = target_config(self.version, source)?;
        cfg.compress(!self.no_compression).lossy(self.lossy);
        Ok(cfg)
    }
}

/// The module value of a key as a whole key (module values never come in chunks).
macro_rules! module_as_key {
    () => {
        fn module(&mut self, head: &KeyHead, value: &ModuleValue) -> Result<()> {
            self.key(KeyRecord {
                head: head.clone(),
                value: rdb_format::Value::Module(value.clone()),
            })
        }
    };
}

/// A chunk for the big key being written, which must have started.
fn big_key(big: &mut Option<BigKey>) -> Result<&mut BigKey> {
    big.as_mut()
        .ok_or_else(|| Error::invalid("a chunk without the start of its key"))
}

/// The end of the big key being written: its head, value head and body.
fn finish_big(big: &mut Option<BigKey>) -> Result<(KeyHead, rdb_format::ValueHead, Spool)> {
    big.take()
        .ok_or_else(|| Error::invalid("the end of a key that did not start"))?
        .finish()
}

fn commands_need_a_server(c: &CommandEvent) -> Error {
    Error::invalid(format!(
        "the AOF has commands after its RDB part (first: {}); turning commands into data \
         needs a server: load the AOF and SAVE",
        Shown(c.cmd.arg(0).unwrap_or_default()),
    ))
}

/// Writes a new RDB file: the source's aux fields, functions, module aux records and keys, for
/// the target version. Big keys (chunks) are encoded chunk by chunk into a spool (memory up
/// to 4 MiB, then an unnamed temporary file) until their count is known, so memory stays
/// bounded whatever the key's size.
///
/// ```
/// use replicator::{files, print::{Printer, Rdb}};
/// # let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb"));
/// let config = replicator::Config::default();
/// let mut rdb = Rdb::new(Vec::new());
/// rdb.target_version(Some(11));
/// let mut p = Printer::new(rdb);
/// for ev in files::open(path, config)? {
///     p.event(ev?)?;
/// }
/// let out = p.finish()?.into_inner().unwrap();
/// assert!(out.starts_with(b"REDIS0011"));
/// # Ok::<(), replicator::Error>(())
/// ```
pub struct Rdb<W: Write> {
    w: Option<W>,
    enc: Option<Encoder<W>>,
    target: Target,
    keys: u64,
    dropped: Dropped,
    version: u32,
    big: Option<BigKey>,
}

impl<W: Write> std::fmt::Debug for Rdb<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rdb")
            .field("target", &self.target)
            .field("keys", &self.keys)
            .finish()
    }
}

impl<W: Write> Rdb<W> {
    /// An RDB file to `w`, started at the source's header.
    pub fn new(w: W) -> Self {
        Self {
            w: Some(w),
            enc: None,
            target: Target::default(),
            keys: 0,
            dropped: Dropped::default(),
            version: 0,
            big: None,
        }
    }

    /// The RDB version to write (`None`: the source's).
    pub fn target_version(&mut self, v: Option<u32>) -> &mut Self {
        self.target.version = v;
        self
    }

    /// No LZF compression (`rdbcompression no`).
    pub fn no_compression(&mut self, on: bool) -> &mut Self {
        self.target.no_compression = on;
        self
    }

    /// For an older target, drop what it cannot hold (stream IDMP state, NACK zones, key
    /// metadata marked ALLOW_IGNORE) instead of refusing the key; see [`dropped`](Self::dropped).
    pub fn lossy(&mut self, on: bool) -> &mut Self {
        self.target.lossy = on;
        self
    }

    /// Keys written.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// What a lossy conversion dropped.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// The RDB version written (0 before the source's header came).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The writer, once [`finish`](Sink::finish)ed.
    pub fn into_inner(self) -> Option<W> {
        self.w
    }

    fn enc(&mut self) -> Result<&mut Encoder<W>> {
        self.enc
            .as_mut()
            .ok_or_else(|| Error::invalid("no RDB header before the first item"))
    }
}

impl<W: Write> Sink for Rdb<W> {
    module_as_key!();
    fn key(&mut self, rec: KeyRecord) -> Result<()> {
        self.enc()?.key(&rec)?;
        self.keys += 1;
        Ok(())
    }
    fn start(&mut self, head: &KeyHead) -> Result<()> {
        let cfg = *self.enc()?.config();
        self.big = Some(BigKey::new(head, &cfg)?);
        Ok(())
    }
    fn chunk(&mut self, _: &KeyHead, chunk: &Chunk) -> Result<()> {
        big_key(&mut self.big)?.chunk(chunk)
    }
    fn end(&mut self, _: &KeyHead) -> Result<()> {
        let (head, vh, mut body) = finish_big(&mut self.big)?;
        let enc = self.enc()?;
        body.drain(|r| Ok(enc.key_spooled(&head, &vh, r)?))?;
        self.keys += 1;
        Ok(())
    }
    fn other(&mut self, item: &Item) -> Result<()> {
        if let Item::Header { version, .. } = item {
            if self.enc.is_none() {
                let cfg = self.target.config(*version)?;
                let w = self
                    .w
                    .take()
                    .ok_or_else(|| Error::invalid("one RDB per output"))?;
                self.version = cfg.version();
                self.enc = Some(Encoder::new(w, cfg)?);
            }
            return Ok(());
        }
        Ok(self.enc()?.item(item)?)
    }
    fn command(&mut self, c: &CommandEvent) -> Result<()> {
        Err(commands_need_a_server(c))
    }
    fn wants_other_items(&self, _: bool) -> bool {
        true
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        let Some(enc) = self.enc.take() else {
            return Err(Error::invalid("no RDB data"));
        };
        self.dropped = enc.dropped();
        let mut w = enc.finish()?;
        w.flush()?;
        self.w = Some(w);
        Ok(())
    }
}

/// One `RESTORE key ttl payload [ABSTTL] [IDLETIME|FREQ] REPLACE` per key, with payloads for
/// the target version (default: the source's): keeps every encoding detail, the fastest way
/// to move data between servers. Functions go as `FUNCTION LOAD`, commands as they came. A big
/// key's payload is encoded chunk by chunk into a spool (see [`Rdb`]) and written out in
/// pieces: one `RESTORE` whatever its size.
#[derive(Debug)]
pub struct Restore<W: Write> {
    resp: Resp<W>,
    target: Target,
    cfg: Option<EncodeConfig>,
    dropped: Dropped,
    big: Option<BigKey>,
}

impl<W: Write> Restore<W> {
    /// `RESTORE` commands to `w`.
    pub fn new(w: W) -> Self {
        Self {
            resp: Resp::new(w),
            target: Target::default(),
            cfg: None,
            dropped: Dropped::default(),
            big: None,
        }
    }

    /// The RDB version of the payloads (`None`: the source's).
    pub fn target_version(&mut self, v: Option<u32>) -> &mut Self {
        self.target.version = v;
        self
    }

    /// No LZF compression in the payloads.
    pub fn no_compression(&mut self, on: bool) -> &mut Self {
        self.target.no_compression = on;
        self
    }

    /// Drop what an older target cannot hold instead of refusing the key (see [`Rdb::lossy`]).
    pub fn lossy(&mut self, on: bool) -> &mut Self {
        self.target.lossy = on;
        self
    }

    /// What a lossy conversion dropped.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// The RDB version of the payloads (`None` before the source's header came).
    pub fn version(&self) -> Option<u32> {
        self.cfg.map(|c| c.version())
    }
}

impl<W: Write> Restore<W> {
    fn cfg(&self) -> Result<&EncodeConfig> {
        self.cfg
            .as_ref()
            .ok_or_else(|| Error::invalid("no RDB header"))
    }
}

impl<W: Write> Sink for Restore<W> {
    module_as_key!();
    fn start(&mut self, head: &KeyHead) -> Result<()> {
        self.big = Some(BigKey::new(head, self.cfg()?)?);
        Ok(())
    }
    fn chunk(&mut self, _: &KeyHead, chunk: &Chunk) -> Result<()> {
        big_key(&mut self.big)?.chunk(chunk)
    }
    fn end(&mut self, _: &KeyHead) -> Result<()> {
        let (head, vh, mut body) = finish_big(&mut self.big)?;
        let cfg = *self.cfg()?;
        let meta = &head.key_meta;
        let len = rdb_format::dump_payload_len(meta, &vh, body.len(), &cfg)
            .map_err(|e| e.for_key(&head.key))?;
        self.dropped.add(vh.dropped);
        let resp = &mut self.resp;
        let dropped = &mut self.dropped;
        body.drain(|r| {
            resp.restore_streamed(&head, len, true, |w| {
                let (n, d) = rdb_format::dump_payload_spooled(meta, &vh, r, &cfg, w)
                    .map_err(|e| e.for_key(&head.key))?;
                dropped.add(d);
                if n != len {
                    return Err(Error::invalid(format!(
                        "key {}: the payload came out {n} bytes, not {len}",
                        Shown(&head.key)
                    )));
                }
                Ok(())
            })
        })
    }
    fn key(&mut self, rec: KeyRecord) -> Result<()> {
        let cfg = self.cfg()?;
        let (payload, d) = rdb_format::dump_payload_counted(&rec.value, &rec.head.key_meta, cfg)
            .map_err(|e| e.for_key(&rec.head.key))?;
        self.dropped.add(d);
        self.resp.restore(&rec.head, &payload, true)
    }
    fn other(&mut self, item: &Item) -> Result<()> {
        match item {
            Item::Header { version, .. } => {
                self.cfg = Some(self.target.config(*version)?);
                self.resp.other(item)
            }
            Item::Function(_) => self.resp.other(item),
            _ => Ok(()),
        }
    }
    fn command(&mut self, c: &CommandEvent) -> Result<()> {
        self.resp.command(c)
    }
    fn wants_other_items(&self, filtered: bool) -> bool {
        !filtered
    }
    fn flush(&mut self) -> Result<()> {
        self.resp.flush()
    }
    fn finish(&mut self) -> Result<()> {
        self.resp.finish()
    }
}
