//! Writing RDB files and `DUMP` payloads that a chosen Redis or Valkey version loads.

use std::collections::HashSet;
use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, EncodeErrorKind};

type Result<T> = std::result::Result<T, EncodeError>;

mod chunked;
mod config;
mod primitives;
mod stream;
mod values;

pub use chunked::{ValueHead, ValueWriter, dump_payload_len, dump_payload_spooled};
pub use config::{Dropped, EncodeConfig};
pub(crate) use primitives::*;
use stream::*;
use values::*;

use crate::packed::{intset, listpack::Listpack, ziplist::Ziplist};
use crate::value::{
    Array, ArrayItem, ArrayValue, Elem, HashField, Item, KeyHead, KeyMeta, KeyRecord, ModuleItem,
    Stream, StreamEntry, StreamId, StreamMeta, Value,
};

fn cannot(why: &'static str) -> EncodeError {
    EncodeError::new(EncodeErrorKind::Cannot { why })
}

/// A value as a `DUMP` payload for `cfg`'s version: what `RESTORE` takes.
///
/// ```
/// use rdb_format::{EncodeConfig, Value, decode_dump, dump_payload};
/// let v = Value::List(vec!["a".into(), 7.into()]);
/// let payload = dump_payload(&v, &EncodeConfig::new(10).unwrap()).unwrap();
/// assert_eq!(decode_dump(&payload).unwrap().value, Value::List(vec!["a".into(), 7.into()]));
/// ```
pub fn dump_payload(value: &Value, cfg: &EncodeConfig) -> Result<Bytes> {
    dump_payload_with_meta(value, &[], cfg)
}

/// A `DUMP` payload that carries key metadata (Redis 8.6+ writes the KEY_META block before
/// the type byte).
///
/// ```
/// use rdb_format::{EncodeConfig, KeyMeta, ModuleItem, Value, decode_dump, dump_payload_with_meta};
/// let meta = vec![KeyMeta {
///     class: "KMT1".into(),
///     version: 1,
///     allow_ignore: true,
///     reserved_flags: 0,
///     items: vec![ModuleItem::String("m".into())],
/// }];
/// let v = Value::String("v".into());
/// let payload = dump_payload_with_meta(&v, &meta, &EncodeConfig::new(13).unwrap()).unwrap();
/// assert_eq!(decode_dump(&payload).unwrap().key_meta, meta);
/// ```
pub fn dump_payload_with_meta(
    value: &Value,
    meta: &[KeyMeta],
    cfg: &EncodeConfig,
) -> Result<Bytes> {
    Ok(dump_payload_counted(value, meta, cfg)?.0)
}

/// Like [`dump_payload_with_meta`], and says what a [`lossy`](EncodeConfig::lossy) encoding
/// for an older version dropped.
pub fn dump_payload_counted(
    value: &Value,
    meta: &[KeyMeta],
    cfg: &EncodeConfig,
) -> Result<(Bytes, Dropped)> {
    let mut obj = BytesMut::new();
    let mut dropped = Dropped::default();
    let ty = object(value, cfg, &mut obj, &mut dropped)?;
    let mut body = BytesMut::with_capacity(obj.len() + 11);
    key_meta(meta, cfg, &mut body, &mut dropped)?;
    body.put_u8(ty);
    body.put_slice(&obj);
    Ok((crate::dump::seal_dump(body, cfg.version as u16), dropped))
}

// ---------------------------------------------------------------- files

/// Writes an RDB file to any `Write`, one item at a time: nothing but the current key is held
/// in memory, and the CRC-64 is computed as bytes go out.
///
/// ```
/// use rdb_format::{EncodeConfig, Encoder, KeyHead, KeyRecord, Value, decode_all, Item};
///
/// let mut enc = Encoder::new(Vec::new(), EncodeConfig::new(11).unwrap()).unwrap();
/// enc.aux(b"redis-ver", b"7.2.0").unwrap();
/// enc.select_db(0).unwrap();
/// enc.key(&KeyRecord::new(0, "greeting".into(), Value::String("hello".into()))).unwrap();
/// let file = enc.finish().unwrap();
/// let items = decode_all(&file).unwrap();
/// assert!(items.iter().any(|i| matches!(i, Item::Key(k) if k.head.key == "greeting")));
/// ```
pub struct Encoder<W: Write> {
    w: W,
    cfg: EncodeConfig,
    crc: crc_fast::Digest,
    buf: BytesMut,
    db: Option<u64>,
    dropped: Dropped,
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("cfg", &self.cfg)
            .field("db", &self.db)
            .finish()
    }
}

impl<W: Write> Encoder<W> {
    /// Starts a file: writes the magic and version.
    pub fn new(w: W, cfg: EncodeConfig) -> Result<Self> {
        let mut e = Self {
            w,
            cfg,
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis),
            buf: BytesMut::with_capacity(1 << 16),
            db: None,
            dropped: Dropped::default(),
        };
        let magic = if cfg.valkey() {
            format!("VALKEY{:03}", cfg.version)
        } else {
            format!("REDIS{:04}", cfg.version)
        };
        e.buf.put_slice(magic.as_bytes());
        e.flush_buf()?;
        Ok(e)
    }

    /// The settings.
    pub fn config(&self) -> &EncodeConfig {
        &self.cfg
    }

    /// What a [`lossy`](EncodeConfig::lossy) encoding dropped so far.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    fn flush_buf(&mut self) -> Result<()> {
        self.crc.update(&self.buf);
        self.w.write_all(&self.buf).map_err(EncodeError::io)?;
        self.buf.clear();
        Ok(())
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()
        } else {
            Ok(())
        }
    }

    /// An aux field (`redis-ver`, `ctime`, …).
    pub fn aux(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.buf.put_u8(0xFA);
        put_raw_string(&mut self.buf, key, false);
        put_string(&mut self.buf, value, false);
        self.maybe_flush()
    }

    /// Switches to database `db` (written only when it changes).
    pub fn select_db(&mut self, db: u64) -> Result<()> {
        if self.db != Some(db) {
            self.buf.put_u8(0xFE);
            put_len(&mut self.buf, db);
            self.db = Some(db);
        }
        Ok(())
    }

    /// A RESIZEDB hint for the current database.
    pub fn resize_db(&mut self, keys: u64, expires: u64) -> Result<()> {
        self.buf.put_u8(0xFB);
        put_len(&mut self.buf, keys);
        put_len(&mut self.buf, expires);
        self.maybe_flush()
    }

    /// A function library (`FUNCTION LOAD` code); RDB 10 and newer.
    pub fn function(&mut self, code: &[u8]) -> Result<()> {
        if self.cfg.level() < 10 {
            return Err(cannot("functions need RDB 10 (Redis 7.0) or newer"));
        }
        self.buf.put_u8(0xF5);
        put_raw_string(&mut self.buf, code, self.cfg.compress);
        self.maybe_flush()
    }

    /// A module aux record as the decoder gives it: module name and encoding version, when
    /// (before/after keys), and the raw opcodes up to and including the EOF opcode.
    pub fn module_aux(&mut self, name: &str, encver: u64, when: u64, raw: &[u8]) -> Result<()> {
        let id = crate::decoder::module_id(name, encver)
            .ok_or_else(|| cannot("a module aux record with a bad module name"))?;
        self.buf.put_u8(0xF7);
        put_len(&mut self.buf, id);
        put_len(&mut self.buf, 2); // the `when` field is a module UINT opcode
        put_len(&mut self.buf, when);
        self.buf.put_slice(raw);
        self.maybe_flush()
    }

    /// Writes what the decoder gave: aux fields, functions, module aux records and whole keys.
    /// The header is the encoder's own (its version is the target's); SELECTDB is written where
    /// a key's db changes; RESIZEDB and slot hints, which a filtered or converted file would
    /// get wrong, and the EOF (see [`finish`](Self::finish)) are left out. Chunks of big keys
    /// are refused with [`EncodeErrorKind::NotWhole`]: decode with
    /// `Config::chunk_threshold(usize::MAX)` and `string_piece(u64::MAX)`.
    ///
    /// ```
    /// use rdb_format::{EncodeConfig, Encoder, decode_all};
    /// let file = b"REDIS0009\xfa\x03ver\x055.0.0\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0";
    /// let mut enc = Encoder::new(Vec::new(), EncodeConfig::new(12).unwrap()).unwrap();
    /// for item in decode_all(file).unwrap() {
    ///     enc.item(&item).unwrap();
    /// }
    /// let out = enc.finish().unwrap();
    /// assert_eq!(decode_all(&out).unwrap().len(), 5); // header, aux, SELECTDB, key, EOF
    /// ```
    pub fn item(&mut self, item: &Item) -> Result<()> {
        match item {
            Item::Aux { key, value } => self.aux(key, value),
            // a library of Redis 7.0+ (old-style named functions of 7.0 RCs have no command)
            Item::Function(f) if f.name.is_none() => self.function(&f.code),
            Item::ModuleAux {
                name,
                encver,
                when,
                raw,
            } => self.module_aux(name, *encver, *when, raw),
            Item::Key(rec) => self.key(rec),
            Item::KeyStart(h) | Item::KeyChecked(h) => Err(EncodeError::new(
                EncodeErrorKind::NotWhole(if matches!(item, Item::KeyStart(_)) {
                    "the start of a chunked key"
                } else {
                    "a key checked without its value"
                }),
            )
            .for_key(&h.key)),
            Item::Chunk(_) | Item::KeyEnd => {
                Err(EncodeError::new(EncodeErrorKind::NotWhole("a chunk")))
            }
            _ => Ok(()),
        }
    }

    /// A key with its value, expiry and LRU/LFU, in `rec.head.db` (a SELECTDB is written when
    /// the db changes).
    pub fn key(&mut self, rec: &KeyRecord) -> Result<()> {
        self.key_parts(&rec.head, &rec.value)
    }

    /// Like [`key`](Self::key), from a head and a value.
    pub fn key_parts(&mut self, head: &KeyHead, value: &Value) -> Result<()> {
        self.select_db(head.db)?;
        let mut obj = BytesMut::new();
        let mut dropped = Dropped::default();
        let ty =
            object(value, &self.cfg, &mut obj, &mut dropped).map_err(|e| e.for_key(&head.key))?;
        self.put_head(head, ty, &mut dropped)?;
        self.dropped.add(dropped);
        if obj.len() > 1 << 16 {
            self.flush_buf()?;
            self.buf = obj;
            return self.flush_buf();
        }
        self.buf.put_slice(&obj);
        self.maybe_flush()
    }

    /// A big key written with a [`ValueWriter`]: its head, the writer's [`ValueHead`], then the
    /// body read from `body` in pieces, so that nothing but a piece is held.
    ///
    /// See [`ValueWriter`] for an example.
    pub fn key_spooled(
        &mut self,
        head: &KeyHead,
        value: &ValueHead,
        body: &mut dyn std::io::Read,
    ) -> Result<()> {
        self.select_db(head.db)?;
        let mut dropped = value.dropped;
        self.put_head(head, value.type_byte, &mut dropped)?;
        self.dropped.add(dropped);
        self.buf.put_slice(&value.prefix);
        self.flush_buf()?;
        let mut piece = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut piece).map_err(EncodeError::io)?;
            if n == 0 {
                return Ok(());
            }
            self.crc.update(&piece[..n]);
            self.w.write_all(&piece[..n]).map_err(EncodeError::io)?;
        }
    }

    /// Expiry, LRU/LFU, key metadata, type byte and key.
    fn put_head(&mut self, head: &KeyHead, ty: u8, dropped: &mut Dropped) -> Result<()> {
        let mut meta = BytesMut::new();
        key_meta(&head.key_meta, &self.cfg, &mut meta, dropped)
            .map_err(|e| e.for_key(&head.key))?;
        if let Some(ms) = head.expire_ms {
            self.buf.put_u8(0xFC);
            self.buf.put_i64_le(ms);
        }
        if let Some(idle) = head.idle_s {
            self.buf.put_u8(0xF8);
            put_len(&mut self.buf, idle);
        } else if let Some(freq) = head.freq {
            self.buf.put_u8(0xF9);
            self.buf.put_u8(freq);
        }
        self.buf.put_slice(&meta);
        self.buf.put_u8(ty);
        put_raw_string(&mut self.buf, &head.key, false);
        Ok(())
    }

    /// Ends the file: EOF and the CRC-64; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.buf.put_u8(0xFF);
        self.crc.update(&self.buf);
        let crc = self.crc.finalize();
        self.buf.put_u64_le(crc);
        self.w.write_all(&self.buf).map_err(EncodeError::io)?;
        self.w.flush().map_err(EncodeError::io)?;
        Ok(self.w)
    }
}
