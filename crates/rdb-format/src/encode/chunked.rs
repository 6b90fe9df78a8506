//! Big keys chunk by chunk: [`ValueWriter`] encodes a value that came as
//! [`Item::KeyStart`], [`Item::Chunk`]s and [`Item::KeyEnd`] without holding it, into a body
//! the caller keeps (a spool), and says at the end what goes before that body.

use super::*;
use crate::value::{Chunk, ValueType};

/// How a chunked hash is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashForm {
    /// `RDB_TYPE_HASH`: field, value.
    Plain,
    /// Redis `RDB_TYPE_HASH_METADATA` with a minimum expiry of 0: [expiry + 1 | 0], field, value.
    RedisTtl,
    /// Valkey 9 `HASH_2`: field, value, absolute expiry (`u64::MAX`: none).
    ValkeyTtl,
}

#[derive(Debug)]
enum Kind {
    String,
    List(ListNodes),
    Set,
    Zset,
    Hash(HashForm),
    Stream {
        pending: Vec<StreamEntry>,
        first: Option<StreamId>,
        meta: bool,
    },
    Array {
        insert: Option<Option<u64>>,
    },
}

/// What goes before a chunked value's body: the type byte, and the bytes between the key and
/// the body in a file (between the type byte and the body in a `DUMP` payload): the element
/// or node count and what else the type keeps there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueHead {
    /// The RDB type byte written.
    pub type_byte: u8,
    /// The bytes between the key (or the type byte, in a `DUMP` payload) and the body.
    pub prefix: Bytes,
    /// What a lossy conversion dropped of this value.
    pub dropped: Dropped,
}

/// Encodes a big key's value one chunk at a time, holding at most one quicklist node or one
/// stream node's entries: each [`chunk`](Self::chunk) appends encoded bytes to a body the caller
/// keeps, and [`finish`](Self::finish) gives the [`ValueHead`] (type byte and count) that
/// precedes that body. Write the key with [`Encoder::key_spooled`] or a `DUMP` payload with
/// [`dump_payload_spooled`].
///
/// Members are not checked for duplicates here (the decoder checks the keys it reads); scores
/// must not be NaN.
///
/// ```
/// use rdb_format::{Chunk, EncodeConfig, Encoder, Item, KeyRecord, Value, ValueWriter, decode_all};
/// let cfg = EncodeConfig::new(11).unwrap();
/// let head = KeyRecord::new(0, "k".into(), Value::List(vec![])).head;
/// let mut w = ValueWriter::new(&head, &cfg).unwrap();
/// let mut body = Vec::new();
/// for _ in 0..3 {
///     w.chunk(&Chunk::List(vec!["a".into(), 7.into()]), &mut body).unwrap();
/// }
/// let vh = w.finish(&mut body).unwrap();
/// let mut enc = Encoder::new(Vec::new(), cfg).unwrap();
/// enc.key_spooled(&head, &vh, &mut &body[..]).unwrap();
/// let out = decode_all(&enc.finish().unwrap()).unwrap();
/// assert!(matches!(&out[2], Item::Key(k) if matches!(&k.value, Value::List(l) if l.len() == 6)));
/// ```
#[derive(Debug)]
pub struct ValueWriter {
    cfg: EncodeConfig,
    kind: Kind,
    /// Elements, nodes or bytes written, as the type counts them before its body.
    count: u64,
    scratch: BytesMut,
    dropped: Dropped,
}

impl ValueWriter {
    /// A writer for the value of `head` (its [`ValueType`], and its type byte to tell a hash
    /// with field TTLs) in `cfg`'s version.
    pub fn new(head: &KeyHead, cfg: &EncodeConfig) -> Result<Self> {
        let kind = match head.value_type {
            ValueType::String => Kind::String,
            ValueType::List => Kind::List(ListNodes::new(cfg)),
            ValueType::Set => Kind::Set,
            ValueType::SortedSet => Kind::Zset,
            ValueType::Hash => {
                // a source type that can hold field TTLs (Redis 22–25, Valkey 22)
                let ttls = matches!(head.type_byte, 22..=25);
                Kind::Hash(match () {
                    _ if !ttls => HashForm::Plain,
                    _ if cfg.valkey() => HashForm::ValkeyTtl,
                    _ if cfg.version >= 12 => HashForm::RedisTtl,
                    _ => HashForm::Plain,
                })
            }
            ValueType::Stream => Kind::Stream {
                pending: Vec::new(),
                first: None,
                meta: false,
            },
            ValueType::Array => {
                if cfg.valkey() || cfg.version < 14 {
                    return Err(cannot(
                        "an array needs RDB 14 (Redis 8.8) or newer: no older server has the type",
                    ));
                }
                Kind::Array { insert: None }
            }
            ValueType::Module => {
                return Err(EncodeError::new(EncodeErrorKind::NotWhole(
                    "a module value in chunks",
                )));
            }
        };
        Ok(Self {
            cfg: *cfg,
            kind,
            count: 0,
            scratch: BytesMut::with_capacity(1 << 16),
            dropped: Dropped::default(),
        })
    }

    /// Encodes the next chunk, appending to `body`.
    pub fn chunk(&mut self, chunk: &Chunk, body: &mut dyn Write) -> Result<()> {
        let z = self.cfg.compress;
        let cfg = self.cfg;
        let out = &mut self.scratch;
        let wrong = || cannot("a chunk of another type than the key's");
        match (&mut self.kind, chunk) {
            (Kind::String, Chunk::String(b)) => {
                // the body is the raw bytes: the length before them is the total
                self.count += b.len() as u64;
                body.write_all(b).map_err(EncodeError::io)?;
                return Ok(());
            }
            (Kind::List(nodes), Chunk::List(v)) => {
                v.iter().for_each(|e| nodes.push(e, &cfg, out));
            }
            (Kind::Set, Chunk::Set(v)) => {
                v.iter().for_each(|e| put_elem(out, e, z));
                self.count += v.len() as u64;
            }
            (Kind::Zset, Chunk::SortedSet(v)) => {
                for (m, s) in v {
                    if s.is_nan() {
                        return Err(cannot("a sorted set score is NaN, which Redis cannot hold"));
                    }
                    put_elem(out, m, z);
                    out.put_f64_le(*s);
                }
                self.count += v.len() as u64;
            }
            (Kind::Hash(form), Chunk::Hash(v)) => {
                for f in v {
                    match (*form, f.expire_ms) {
                        (HashForm::Plain, Some(_)) => {
                            return Err(cannot(
                                "hash field TTLs need RDB 12 (Redis 7.4+) or Valkey 9",
                            ));
                        }
                        (HashForm::Plain, None) => {}
                        (HashForm::RedisTtl, t) => {
                            let rel = match t {
                                None => 0,
                                Some(t) => t.checked_add(1).ok_or_else(|| {
                                    cannot("a hash field expiry is past what Redis holds")
                                })?,
                            };
                            put_len(out, rel);
                        }
                        (HashForm::ValkeyTtl, _) => {}
                    }
                    put_elem(out, &f.field, z);
                    put_elem(out, &f.value, z);
                    if *form == HashForm::ValkeyTtl {
                        out.put_u64_le(f.expire_ms.unwrap_or(u64::MAX));
                    }
                }
                self.count += v.len() as u64;
            }
            (
                Kind::Stream {
                    pending,
                    first,
                    meta: false,
                },
                Chunk::StreamEntries(v),
            ) => {
                let per = cfg.stream_node_entries.max(1);
                for e in v {
                    first.get_or_insert(e.id);
                    pending.push(e.clone());
                    if pending.len() >= per {
                        self.count += stream_flush(pending, per, &cfg, out);
                    }
                }
            }
            (
                Kind::Stream {
                    pending,
                    first,
                    meta,
                },
                Chunk::StreamMeta(m),
            ) if !*meta => {
                let here = stream_check(m, &cfg)?;
                self.dropped.add(here);
                self.count += stream_flush(pending, cfg.stream_node_entries.max(1), &cfg, out);
                stream_tail(m, *first, &cfg, out);
                *meta = true;
            }
            (Kind::Array { insert: None }, Chunk::Array(v)) => {
                for it in v {
                    array_item(it, &cfg, out)?;
                }
                self.count += v.len() as u64;
            }
            (Kind::Array { insert }, Chunk::ArrayEnd { insert_index }) if insert.is_none() => {
                *insert = Some(*insert_index);
            }
            _ => return Err(wrong()),
        }
        body.write_all(out).map_err(EncodeError::io)?;
        out.clear();
        Ok(())
    }

    /// Writes what is left (the last quicklist node) to `body` and returns what goes before
    /// the body.
    pub fn finish(mut self, body: &mut dyn Write) -> Result<ValueHead> {
        let cfg = self.cfg;
        let mut prefix = BytesMut::with_capacity(16);
        let type_byte = match &mut self.kind {
            Kind::String => 0,
            Kind::List(nodes) => {
                nodes.finish(&cfg, &mut self.scratch);
                body.write_all(&self.scratch).map_err(EncodeError::io)?;
                self.count = nodes.written;
                list_type(&cfg)
            }
            Kind::Set => 2,
            Kind::Zset => 5,
            Kind::Hash(HashForm::Plain) => 4,
            Kind::Hash(HashForm::ValkeyTtl) => 22,
            Kind::Hash(HashForm::RedisTtl) => {
                // the minimum expiry: 0, so each field's is its own plus one
                prefix.put_u64_le(0);
                24
            }
            Kind::Stream { meta: false, .. } => {
                return Err(cannot("a stream's chunks ended without its metadata"));
            }
            Kind::Stream { .. } => stream_type(&cfg),
            Kind::Array { insert: None } => {
                return Err(cannot("an array's chunks ended without its insert index"));
            }
            Kind::Array { .. } => 28,
        };
        if self.count == 0 && !matches!(self.kind, Kind::Stream { .. }) {
            return Err(cannot("a chunked key with no elements"));
        }
        put_len(&mut prefix, self.count);
        if let Kind::Array {
            insert: Some(insert),
        } = self.kind
        {
            match insert {
                Some(i) => {
                    put_len(&mut prefix, 1);
                    put_len(&mut prefix, i);
                }
                None => put_len(&mut prefix, 0),
            }
        }
        Ok(ValueHead {
            type_byte,
            prefix: prefix.freeze(),
            dropped: self.dropped,
        })
    }
}

/// Writes the pending entries as nodes of `per` entries; returns how many.
fn stream_flush(
    pending: &mut Vec<StreamEntry>,
    per: usize,
    cfg: &EncodeConfig,
    out: &mut BytesMut,
) -> u64 {
    let nodes = stream_nodes(pending, per);
    for (id, lp) in &nodes {
        put_stream_node(out, *id, lp, cfg.compress);
    }
    pending.clear();
    nodes.len() as u64
}

/// A `DUMP` payload for a value written with [`ValueWriter`]: key metadata, the type byte,
/// the head's prefix, the body read from `body` (`body_len` bytes), the version and the
/// CRC-64, written to `out` as they are computed. Returns the payload's length (what
/// [`dump_payload_len`] says for the same arguments) and what a lossy conversion dropped of the
/// key metadata.
///
/// ```
/// use rdb_format::{Chunk, EncodeConfig, KeyRecord, Value, ValueWriter, decode_dump};
/// use rdb_format::{dump_payload_len, dump_payload_spooled};
/// let head = KeyRecord::new(0, "k".into(), Value::Set(vec![])).head;
/// let cfg = EncodeConfig::new(10).unwrap();
/// let mut w = ValueWriter::new(&head, &cfg).unwrap();
/// let mut body = Vec::new();
/// w.chunk(&Chunk::Set(vec!["a".into(), "b".into()]), &mut body).unwrap();
/// let vh = w.finish(&mut body).unwrap();
/// let len = dump_payload_len(&[], &vh, body.len() as u64, &cfg).unwrap();
/// let mut payload = Vec::new();
/// let (n, _) = dump_payload_spooled(&[], &vh, &mut &body[..], &cfg, &mut payload).unwrap();
/// assert_eq!((payload.len() as u64, n), (len, len));
/// assert_eq!(decode_dump(&payload).unwrap().value, Value::Set(vec!["a".into(), "b".into()]));
/// ```
pub fn dump_payload_spooled(
    meta: &[KeyMeta],
    head: &ValueHead,
    body: &mut dyn std::io::Read,
    cfg: &EncodeConfig,
    out: &mut dyn Write,
) -> Result<(u64, Dropped)> {
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis);
    let mut front = BytesMut::new();
    let mut dropped = Dropped::default();
    key_meta(meta, cfg, &mut front, &mut dropped)?;
    front.put_u8(head.type_byte);
    front.put_slice(&head.prefix);
    let mut n = front.len() as u64;
    crc.update(&front);
    out.write_all(&front).map_err(EncodeError::io)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = body.read(&mut buf).map_err(EncodeError::io)?;
        if k == 0 {
            break;
        }
        crc.update(&buf[..k]);
        out.write_all(&buf[..k]).map_err(EncodeError::io)?;
        n += k as u64;
    }
    let version = (cfg.version as u16).to_le_bytes();
    crc.update(&version);
    out.write_all(&version).map_err(EncodeError::io)?;
    out.write_all(&crc.finalize().to_le_bytes())
        .map_err(EncodeError::io)?;
    Ok((n + 10, dropped))
}

/// The length of the payload [`dump_payload_spooled`] writes for a body of `body_len` bytes.
pub fn dump_payload_len(
    meta: &[KeyMeta],
    head: &ValueHead,
    body_len: u64,
    cfg: &EncodeConfig,
) -> Result<u64> {
    let mut front = BytesMut::new();
    key_meta(meta, cfg, &mut front, &mut Dropped::default())?;
    Ok(front.len() as u64 + 1 + head.prefix.len() as u64 + body_len + 10)
}
