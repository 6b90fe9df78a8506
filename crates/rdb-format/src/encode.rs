//! Writing RDB files and `DUMP` payloads that a chosen Redis or Valkey version loads.

use std::collections::HashSet;
use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{EncodeError, EncodeErrorKind};

type Result<T> = std::result::Result<T, EncodeError>;
use crate::value::{
    Array, ArrayValue, Elem, HashField, Item, KeyHead, KeyMeta, KeyRecord, ModuleItem, Stream,
    StreamEntry, StreamId, Value,
};

/// What to write: the target's RDB version and the thresholds below which it uses its compact
/// encodings (the defaults are Redis' own); change them with the setters.
///
/// ```
/// let mut cfg = rdb_format::EncodeConfig::new(12).unwrap();
/// cfg.compress(false).hash_max_listpack_entries(0);
/// assert_eq!(cfg.version(), 12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeConfig {
    /// RDB version: 9 (Redis 5/6), 10 (7.0), 11 (7.2, Valkey 7.2–8.x), 12 (7.4–8.4),
    /// 13 (8.6), 14 (8.8), or 80 (Valkey 9, `VALKEY080`).
    pub(crate) version: u32,
    /// Writing for an older version, drop what it cannot hold and a server itself would drop
    /// (stream IDMP state, the NACK zone, key metadata marked ALLOW_IGNORE) instead of
    /// refusing the key; [`Encoder::dropped`] counts what went.
    pub(crate) lossy: bool,
    /// LZF-compress strings longer than 20 bytes when that makes them shorter
    /// (`rdbcompression yes`).
    pub(crate) compress: bool,
    /// Largest hash stored as a listpack/ziplist (`hash-max-listpack-entries`).
    pub(crate) hash_max_listpack_entries: usize,
    /// Longest field or value of such a hash (`hash-max-listpack-value`).
    pub(crate) hash_max_listpack_value: usize,
    /// Largest all-integer set stored as an intset (`set-max-intset-entries`).
    pub(crate) set_max_intset_entries: usize,
    /// Largest set stored as a listpack, RDB 11+ (`set-max-listpack-entries`).
    pub(crate) set_max_listpack_entries: usize,
    /// Longest member of such a set (`set-max-listpack-value`).
    pub(crate) set_max_listpack_value: usize,
    /// Largest sorted set stored as a listpack/ziplist (`zset-max-listpack-entries`).
    pub(crate) zset_max_listpack_entries: usize,
    /// Longest member of such a sorted set (`zset-max-listpack-value`).
    pub(crate) zset_max_listpack_value: usize,
    /// Bytes per quicklist node (`list-max-listpack-size -2` is 8 KiB).
    pub(crate) list_node_bytes: usize,
    /// Entries per quicklist node at most.
    pub(crate) list_node_entries: usize,
    /// Entries per stream listpack node (`stream-node-max-entries`).
    pub(crate) stream_node_entries: usize,
}

impl EncodeConfig {
    /// The settings for RDB `version` with Redis' default thresholds.
    ///
    /// ```
    /// assert!(rdb_format::EncodeConfig::new(10).is_ok());
    /// assert!(rdb_format::EncodeConfig::new(42).is_err());
    /// ```
    pub fn new(version: u32) -> Result<Self> {
        if !matches!(version, 9..=14 | 80) {
            return Err(EncodeError::new(EncodeErrorKind::Version(version)));
        }
        Ok(Self {
            version,
            lossy: false,
            compress: true,
            hash_max_listpack_entries: 128,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            set_max_listpack_entries: 128,
            set_max_listpack_value: 64,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_node_bytes: 8 << 10,
            list_node_entries: 128,
            stream_node_entries: 100,
        })
    }

    /// The RDB version written: 9 (Redis 5/6), 10 (7.0), 11 (7.2, Valkey 7.2–8.x), 12
    /// (7.4–8.4), 13 (8.6), 14 (8.8), or 80 (Valkey 9, `VALKEY080`).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// LZF-compress strings longer than 20 bytes when that makes them shorter
    /// (`rdbcompression yes`, the default).
    pub fn compress(&mut self, on: bool) -> &mut Self {
        self.compress = on;
        self
    }

    /// Writing for an older version, drop what it cannot hold and a server itself would drop
    /// (stream IDMP state, the NACK zone, key metadata marked ALLOW_IGNORE) instead of
    /// refusing the key; [`Encoder::dropped`] counts what went.
    pub fn lossy(&mut self, on: bool) -> &mut Self {
        self.lossy = on;
        self
    }

    /// Largest hash stored as a listpack/ziplist (`hash-max-listpack-entries`).
    pub fn hash_max_listpack_entries(&mut self, n: usize) -> &mut Self {
        self.hash_max_listpack_entries = n;
        self
    }

    /// Longest field or value of such a hash (`hash-max-listpack-value`).
    pub fn hash_max_listpack_value(&mut self, n: usize) -> &mut Self {
        self.hash_max_listpack_value = n;
        self
    }

    /// Largest all-integer set stored as an intset (`set-max-intset-entries`).
    pub fn set_max_intset_entries(&mut self, n: usize) -> &mut Self {
        self.set_max_intset_entries = n;
        self
    }

    /// Largest set stored as a listpack, RDB 11+ (`set-max-listpack-entries`).
    pub fn set_max_listpack_entries(&mut self, n: usize) -> &mut Self {
        self.set_max_listpack_entries = n;
        self
    }

    /// Longest member of such a set (`set-max-listpack-value`).
    pub fn set_max_listpack_value(&mut self, n: usize) -> &mut Self {
        self.set_max_listpack_value = n;
        self
    }

    /// Largest sorted set stored as a listpack/ziplist (`zset-max-listpack-entries`).
    pub fn zset_max_listpack_entries(&mut self, n: usize) -> &mut Self {
        self.zset_max_listpack_entries = n;
        self
    }

    /// Longest member of such a sorted set (`zset-max-listpack-value`).
    pub fn zset_max_listpack_value(&mut self, n: usize) -> &mut Self {
        self.zset_max_listpack_value = n;
        self
    }

    /// Bytes per quicklist node (`list-max-listpack-size -2` is 8 KiB).
    pub fn list_node_bytes(&mut self, n: usize) -> &mut Self {
        self.list_node_bytes = n;
        self
    }

    /// Entries per quicklist node at most.
    pub fn list_node_entries(&mut self, n: usize) -> &mut Self {
        self.list_node_entries = n;
        self
    }

    /// Entries per stream listpack node (`stream-node-max-entries`).
    pub fn stream_node_entries(&mut self, n: usize) -> &mut Self {
        self.stream_node_entries = n;
        self
    }

    fn valkey(&self) -> bool {
        self.version >= 80
    }

    /// RDB-feature level as Redis numbers it (Valkey 80 has Redis 11's encodings).
    fn level(&self) -> u32 {
        if self.valkey() { 11 } else { self.version }
    }
}

fn cannot(why: &'static str) -> EncodeError {
    EncodeError::new(EncodeErrorKind::Cannot { why })
}

/// What a lossy encoding for an older version dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// Streams whose IDMP state (producers, IIDs, settings, counters) was dropped.
    pub idmp_streams: u64,
    /// NACK-zone entries dropped (and taken out of their group's pending list).
    pub nacked_entries: u64,
    /// Key metadata classes dropped (all marked ALLOW_IGNORE).
    pub key_meta_classes: u64,
}

impl Dropped {
    /// True when nothing was dropped.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Adds what another encoding dropped.
    pub fn add(&mut self, o: Self) {
        self.idmp_streams += o.idmp_streams;
        self.nacked_entries += o.nacked_entries;
        self.key_meta_classes += o.key_meta_classes;
    }
}

/// Writes a KEY_META block (opcode included) for the target, or drops it when the target
/// cannot hold it and every class allows it.
fn key_meta(
    metas: &[KeyMeta],
    cfg: &EncodeConfig,
    out: &mut BytesMut,
    dropped: &mut Dropped,
) -> Result<()> {
    if metas.is_empty() {
        return Ok(());
    }
    if cfg.valkey() || cfg.version < 13 {
        if cfg.lossy && metas.iter().all(|m| m.allow_ignore) {
            dropped.key_meta_classes += metas.len() as u64;
            return Ok(());
        }
        return Err(cannot(if cfg.lossy {
            "key metadata without ALLOW_IGNORE needs RDB 13 (Redis 8.6) or newer; a server \
             without its module refuses the key too"
        } else {
            "key metadata needs RDB 13 (Redis 8.6) or newer (--lossy drops ALLOW_IGNORE classes)"
        }));
    }
    if metas.len() > 7 {
        return Err(cannot("a key has more than 7 metadata classes"));
    }
    out.put_u8(0xF3);
    put_len(out, metas.len() as u64);
    for m in metas {
        let spec = m.spec().ok_or_else(|| {
            cannot("a key metadata class name is not 4 characters of A-Za-z0-9_-")
        })?;
        out.put_u32_le(spec);
        for item in &m.items {
            match item {
                ModuleItem::Sint(v) => {
                    put_len(out, 1);
                    put_len(out, *v as u64);
                }
                ModuleItem::Uint(v) => {
                    put_len(out, 2);
                    put_len(out, *v);
                }
                ModuleItem::Float(v) => {
                    put_len(out, 3);
                    out.put_f32_le(*v);
                }
                ModuleItem::Double(v) => {
                    put_len(out, 4);
                    out.put_f64_le(*v);
                }
                ModuleItem::String(b) => {
                    put_len(out, 5);
                    put_string(out, b, cfg.compress);
                }
            }
        }
        put_len(out, 0);
    }
    Ok(())
}

fn array(a: &Array, cfg: &EncodeConfig, out: &mut BytesMut) -> Result<u8> {
    if cfg.valkey() || cfg.version < 14 {
        return Err(cannot(
            "an array needs RDB 14 (Redis 8.8) or newer: no older server has the type",
        ));
    }
    if a.items.is_empty() {
        return Err(cannot("Redis refuses an array with no elements"));
    }
    put_len(out, a.items.len() as u64);
    match a.insert_index {
        Some(i) => {
            put_len(out, 1);
            put_len(out, i);
        }
        None => put_len(out, 0),
    }
    for it in &a.items {
        if it.index == u64::MAX {
            return Err(cannot("array index 2^64-1 is reserved"));
        }
        put_len(out, it.index);
        match &it.value {
            ArrayValue::String(b) => {
                put_len(out, 0);
                put_string(out, b, cfg.compress);
            }
            ArrayValue::Int(i) => {
                put_len(out, 1);
                out.put_i64_le(*i);
            }
            ArrayValue::Float(d) => {
                put_len(out, 2);
                out.put_f64_le(*d);
            }
            ArrayValue::Short(b) => {
                if b.len() > 7 {
                    return Err(cannot(
                        "a short-string array element is longer than 7 bytes",
                    ));
                }
                put_len(out, 3);
                put_string(out, b, false);
            }
        }
    }
    Ok(28)
}

// ---------------------------------------------------------------- primitives

fn put_len(out: &mut BytesMut, n: u64) {
    if n < 1 << 6 {
        out.put_u8(n as u8);
    } else if n < 1 << 14 {
        out.put_u8(0x40 | (n >> 8) as u8);
        out.put_u8(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.put_u8(0x80);
        out.put_u32(n as u32);
    } else {
        out.put_u8(0x81);
        out.put_u64(n);
    }
}

/// The integer a string is, if it is one exactly as Redis prints integers.
fn canonical_int(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let v: i64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    let mut buf = itoa::Buffer::new();
    (buf.format(v).as_bytes() == b).then_some(v)
}

fn put_raw_string(out: &mut BytesMut, b: &[u8], compress: bool) {
    if compress && b.len() > 20 {
        if let Some(c) = crate::lzf::compress(b, b.len() - 4) {
            out.put_u8(0xC3);
            put_len(out, c.len() as u64);
            put_len(out, b.len() as u64);
            out.put_slice(&c);
            return;
        }
    }
    put_len(out, b.len() as u64);
    out.put_slice(b);
}

/// A string as Redis saves it: an integer encoding when it is a small integer, LZF when that
/// helps, raw otherwise.
fn put_string(out: &mut BytesMut, b: &[u8], compress: bool) {
    if let Some(v) = canonical_int(b) {
        if let Ok(v) = i8::try_from(v) {
            out.put_u8(0xC0);
            out.put_i8(v);
            return;
        }
        if let Ok(v) = i16::try_from(v) {
            out.put_u8(0xC1);
            out.put_i16_le(v);
            return;
        }
        if let Ok(v) = i32::try_from(v) {
            out.put_u8(0xC2);
            out.put_i32_le(v);
            return;
        }
    }
    put_raw_string(out, b, compress);
}

fn put_elem(out: &mut BytesMut, e: &Elem, compress: bool) {
    e.with_bytes(|b| put_string(out, b, compress));
}

fn put_raw_id(out: &mut BytesMut, id: StreamId) {
    out.put_u64(id.ms);
    out.put_u64(id.seq);
}

// ---------------------------------------------------------------- listpack, ziplist, intset

/// A listpack being built.
struct Listpack {
    buf: Vec<u8>,
    count: usize,
}

impl Listpack {
    fn new() -> Self {
        Self {
            buf: vec![0; 6],
            count: 0,
        }
    }

    fn backlen(&mut self, l: usize) {
        if l <= 127 {
            self.buf.push(l as u8);
        } else if l < 16383 {
            self.buf
                .extend_from_slice(&[(l >> 7) as u8, (l & 127) as u8 | 128]);
        } else if l < 2_097_151 {
            self.buf.extend_from_slice(&[
                (l >> 14) as u8,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]);
        } else if l < 268_435_455 {
            self.buf.extend_from_slice(&[
                (l >> 21) as u8,
                ((l >> 14) & 127) as u8 | 128,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]);
        } else {
            self.buf.extend_from_slice(&[
                (l >> 28) as u8,
                ((l >> 21) & 127) as u8 | 128,
                ((l >> 14) & 127) as u8 | 128,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]);
        }
    }

    fn int(&mut self, v: i64) {
        let start = self.buf.len();
        if (0..=127).contains(&v) {
            self.buf.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = if v < 0 { (1 << 13) + v } else { v } as u16;
            self.buf
                .extend_from_slice(&[0xC0 | (u >> 8) as u8, u as u8]);
        } else if let Ok(x) = i16::try_from(v) {
            self.buf.push(0xF1);
            self.buf.extend_from_slice(&x.to_le_bytes());
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            self.buf.push(0xF2);
            self.buf.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if let Ok(x) = i32::try_from(v) {
            self.buf.push(0xF3);
            self.buf.extend_from_slice(&x.to_le_bytes());
        } else {
            self.buf.push(0xF4);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        let l = self.buf.len() - start;
        self.backlen(l);
        self.count += 1;
    }

    fn str(&mut self, s: &[u8]) {
        if let Some(v) = canonical_int(s) {
            return self.int(v);
        }
        let start = self.buf.len();
        let n = s.len();
        if n < 64 {
            self.buf.push(0x80 | n as u8);
        } else if n < 4096 {
            self.buf
                .extend_from_slice(&[0xE0 | (n >> 8) as u8, n as u8]);
        } else {
            self.buf.push(0xF0);
            self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(s);
        let l = self.buf.len() - start;
        self.backlen(l);
        self.count += 1;
    }

    fn elem(&mut self, e: &Elem) {
        match e {
            Elem::Int(i) => self.int(*i),
            Elem::Bytes(b) => self.str(b),
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xFF);
        let total = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let count = u16::try_from(self.count).unwrap_or(u16::MAX);
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

/// A ziplist being built (RDB 9 compact encodings).
struct Ziplist {
    buf: Vec<u8>,
    count: usize,
    prev: usize,
    tail: usize,
}

impl Ziplist {
    fn new() -> Self {
        Self {
            buf: vec![0; 10],
            count: 0,
            prev: 0,
            tail: 10,
        }
    }

    fn entry(&mut self, enc: &[u8], data: &[u8]) {
        let start = self.buf.len();
        self.tail = start;
        if self.prev < 254 {
            self.buf.push(self.prev as u8);
        } else {
            self.buf.push(0xFE);
            self.buf
                .extend_from_slice(&(self.prev as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(enc);
        self.buf.extend_from_slice(data);
        self.prev = self.buf.len() - start;
        self.count += 1;
    }

    fn int(&mut self, v: i64) {
        if (0..=12).contains(&v) {
            self.entry(&[0xF1 + v as u8], &[]);
        } else if let Ok(x) = i8::try_from(v) {
            self.entry(&[0xFE], &x.to_le_bytes());
        } else if let Ok(x) = i16::try_from(v) {
            self.entry(&[0xC0], &x.to_le_bytes());
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            self.entry(&[0xF0], &(v as i32).to_le_bytes()[..3]);
        } else if let Ok(x) = i32::try_from(v) {
            self.entry(&[0xD0], &x.to_le_bytes());
        } else {
            self.entry(&[0xE0], &v.to_le_bytes());
        }
    }

    fn str(&mut self, s: &[u8]) {
        if let Some(v) = canonical_int(s) {
            return self.int(v);
        }
        let n = s.len();
        if n < 64 {
            self.entry(&[n as u8], s);
        } else if n < 16384 {
            self.entry(&[0x40 | (n >> 8) as u8, n as u8], s);
        } else {
            let mut enc = vec![0x80];
            enc.extend_from_slice(&(n as u32).to_be_bytes());
            self.entry(&enc, s);
        }
    }

    fn elem(&mut self, e: &Elem) {
        match e {
            Elem::Int(i) => self.int(*i),
            Elem::Bytes(b) => self.str(b),
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xFF);
        let total = self.buf.len() as u32;
        let tail = self.tail as u32;
        let count = u16::try_from(self.count).unwrap_or(u16::MAX);
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        self.buf[4..8].copy_from_slice(&tail.to_le_bytes());
        self.buf[8..10].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

/// A compact list of elements: a listpack, or a ziplist for RDB 9.
enum Packed {
    Lp(Listpack),
    Zl(Ziplist),
}

impl Packed {
    fn new(cfg: &EncodeConfig) -> Self {
        if cfg.level() >= 10 {
            Self::Lp(Listpack::new())
        } else {
            Self::Zl(Ziplist::new())
        }
    }
    fn elem(&mut self, e: &Elem) {
        match self {
            Self::Lp(l) => l.elem(e),
            Self::Zl(z) => z.elem(e),
        }
    }
    fn str(&mut self, s: &[u8]) {
        match self {
            Self::Lp(l) => l.str(s),
            Self::Zl(z) => z.str(s),
        }
    }
    fn len_bytes(&self) -> usize {
        match self {
            Self::Lp(l) => l.buf.len(),
            Self::Zl(z) => z.buf.len(),
        }
    }
    fn count(&self) -> usize {
        match self {
            Self::Lp(l) => l.count,
            Self::Zl(z) => z.count,
        }
    }
    fn finish(self) -> Vec<u8> {
        match self {
            Self::Lp(l) => l.finish(),
            Self::Zl(z) => z.finish(),
        }
    }
}

fn intset(mut v: Vec<i64>) -> Vec<u8> {
    v.sort_unstable();
    let width: usize = if v.iter().all(|&x| i16::try_from(x).is_ok()) {
        2
    } else if v.iter().all(|&x| i32::try_from(x).is_ok()) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + v.len() * width);
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes()[..width]);
    }
    out
}

// ---------------------------------------------------------------- values

fn unique<'a>(items: impl Iterator<Item = &'a Elem>, what: &'static str) -> Result<()> {
    let mut seen = HashSet::new();
    for e in items {
        if !seen.insert(e.to_bytes()) {
            return Err(EncodeError::new(EncodeErrorKind::Invalid {
                what,
                why: format!("duplicate element {e:?}"),
            }));
        }
    }
    Ok(())
}

/// The shortest text that reads back as the same double, as a sorted set listpack stores it.
fn score_text(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if d.fract() == 0.0 && d.abs() < 1e17 {
        return format!("{}", d as i64);
    }
    ryu::Buffer::new().format_finite(d).to_owned()
}

/// Writes a value's body (what follows the type byte) and returns the type byte.
fn object(
    value: &Value,
    cfg: &EncodeConfig,
    out: &mut BytesMut,
    dropped: &mut Dropped,
) -> Result<u8> {
    let z = cfg.compress;
    Ok(match value {
        Value::String(s) => {
            put_string(out, s, z);
            0
        }
        Value::List(items) => {
            let mut nodes = Vec::new();
            let mut cur = Packed::new(cfg);
            for e in items {
                if cur.count() > 0
                    && (cur.count() >= cfg.list_node_entries
                        || cur.len_bytes() + e.len() > cfg.list_node_bytes)
                {
                    nodes.push(std::mem::replace(&mut cur, Packed::new(cfg)).finish());
                }
                cur.elem(e);
            }
            if cur.count() > 0 {
                nodes.push(cur.finish());
            }
            put_len(out, nodes.len() as u64);
            for n in &nodes {
                if cfg.level() >= 10 {
                    put_len(out, 2); // a packed (listpack) node
                }
                put_raw_string(out, n, z);
            }
            if cfg.level() >= 10 { 18 } else { 14 }
        }
        Value::Set(items) => {
            unique(items.iter(), "set")?;
            let ints: Option<Vec<i64>> = items
                .iter()
                .map(|e| match e {
                    Elem::Int(i) => Some(*i),
                    Elem::Bytes(b) => canonical_int(b),
                })
                .collect();
            match ints {
                Some(v) if !v.is_empty() && v.len() <= cfg.set_max_intset_entries => {
                    put_raw_string(out, &intset(v), z);
                    11
                }
                _ if cfg.level() >= 11
                    && !items.is_empty()
                    && items.len() <= cfg.set_max_listpack_entries
                    && items.iter().all(|e| e.len() <= cfg.set_max_listpack_value) =>
                {
                    let mut lp = Listpack::new();
                    items.iter().for_each(|e| lp.elem(e));
                    put_raw_string(out, &lp.finish(), z);
                    20
                }
                _ => {
                    put_len(out, items.len() as u64);
                    items.iter().for_each(|e| put_elem(out, e, z));
                    2
                }
            }
        }
        Value::SortedSet(items) => {
            unique(items.iter().map(|(m, _)| m), "sorted set")?;
            if items.iter().any(|(_, s)| s.is_nan()) {
                return Err(cannot("a sorted set score is NaN, which Redis cannot hold"));
            }
            if !items.is_empty()
                && items.len() <= cfg.zset_max_listpack_entries
                && items
                    .iter()
                    .all(|(m, _)| m.len() <= cfg.zset_max_listpack_value)
            {
                // compact sorted sets are kept in (score, member) order
                let mut sorted: Vec<(Bytes, f64)> =
                    items.iter().map(|(m, s)| (m.to_bytes(), *s)).collect();
                sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                let mut p = Packed::new(cfg);
                for (m, s) in &sorted {
                    p.str(m);
                    p.str(score_text(*s).as_bytes());
                }
                put_raw_string(out, &p.finish(), z);
                if cfg.level() >= 10 { 17 } else { 12 }
            } else {
                put_len(out, items.len() as u64);
                for (m, s) in items {
                    put_elem(out, m, z);
                    out.put_f64_le(*s);
                }
                5
            }
        }
        Value::Hash(fields) => {
            unique(fields.iter().map(|f| &f.field), "hash")?;
            if fields.iter().any(|f| f.expire_ms.is_some()) {
                return hash_with_ttls(fields, cfg, out);
            }
            if !fields.is_empty()
                && fields.len() <= cfg.hash_max_listpack_entries
                && fields.iter().all(|f| {
                    f.field.len() <= cfg.hash_max_listpack_value
                        && f.value.len() <= cfg.hash_max_listpack_value
                })
            {
                let mut p = Packed::new(cfg);
                for f in fields {
                    p.elem(&f.field);
                    p.elem(&f.value);
                }
                put_raw_string(out, &p.finish(), z);
                if cfg.level() >= 10 { 16 } else { 13 }
            } else {
                put_len(out, fields.len() as u64);
                for f in fields {
                    put_elem(out, &f.field, z);
                    put_elem(out, &f.value, z);
                }
                4
            }
        }
        Value::Stream(s) => stream(s, cfg, out, dropped)?,
        Value::Module(m) => {
            out.put_slice(&m.raw);
            7
        }
        Value::Array(a) => array(a, cfg, out)?,
    })
}

fn hash_with_ttls(fields: &[HashField], cfg: &EncodeConfig, out: &mut BytesMut) -> Result<u8> {
    let z = cfg.compress;
    if cfg.valkey() {
        // Valkey 9 HASH_2: field, value, absolute expiry (u64::MAX: none)
        put_len(out, fields.len() as u64);
        for f in fields {
            put_elem(out, &f.field, z);
            put_elem(out, &f.value, z);
            out.put_u64_le(f.expire_ms.unwrap_or(u64::MAX));
        }
        return Ok(22);
    }
    if cfg.version < 12 {
        return Err(cannot(
            "hash field TTLs need RDB 12 (Redis 7.4+) or Valkey 9",
        ));
    }
    // Redis HASH_METADATA: the smallest expiry, then [ttl - min + 1 | 0][field][value]
    let min = fields.iter().filter_map(|f| f.expire_ms).min().unwrap_or(0);
    out.put_u64_le(min);
    put_len(out, fields.len() as u64);
    for f in fields {
        put_len(out, f.expire_ms.map_or(0, |t| t - min + 1));
        put_elem(out, &f.field, z);
        put_elem(out, &f.value, z);
    }
    Ok(24)
}

fn stream_nodes(entries: &[StreamEntry], per: usize) -> Vec<(StreamId, Vec<u8>)> {
    let mut nodes = Vec::new();
    for group in entries.chunks(per.max(1)) {
        let master = group[0].id;
        let master_fields: Vec<&Elem> = group[0].fields.iter().map(|(f, _)| f).collect();
        let mut lp = Listpack::new();
        lp.int(group.len() as i64);
        lp.int(0);
        lp.int(master_fields.len() as i64);
        master_fields.iter().for_each(|f| lp.elem(f));
        lp.int(0);
        for e in group {
            let same = e.fields.len() == master_fields.len()
                && e.fields
                    .iter()
                    .zip(&master_fields)
                    .all(|((f, _), m)| f.to_bytes() == m.to_bytes());
            lp.int(if same { 2 } else { 0 });
            lp.int(e.id.ms.wrapping_sub(master.ms) as i64);
            lp.int(e.id.seq.wrapping_sub(master.seq) as i64);
            if same {
                e.fields.iter().for_each(|(_, v)| lp.elem(v));
            } else {
                lp.int(e.fields.len() as i64);
                for (f, v) in &e.fields {
                    lp.elem(f);
                    lp.elem(v);
                }
            }
            let n = e.fields.len() as i64;
            lp.int(if same { n + 3 } else { 2 * n + 4 });
        }
        nodes.push((master, lp.finish()));
    }
    nodes
}

/// A group's read counter as Redis estimates it when loading a stream that does not carry one
/// (`streamEstimateDistanceFromFirstEverEntry`); `u64::MAX` is Redis' "unknown".
fn estimate_entries_read(
    length: u64,
    last: StreamId,
    first: StreamId,
    deleted: StreamId,
    added: u64,
    id: StreamId,
) -> u64 {
    const UNKNOWN: u64 = u64::MAX;
    if added == 0 {
        return 0;
    }
    if (length == 0 && id <= last) || id == last {
        return added;
    }
    if id > last {
        return UNKNOWN;
    }
    if deleted == StreamId::default() || deleted < first {
        if id < first {
            return added - length;
        }
        if id == first {
            return added - length + 1;
        }
    }
    UNKNOWN
}

fn stream(s: &Stream, cfg: &EncodeConfig, out: &mut BytesMut, dropped: &mut Dropped) -> Result<u8> {
    let z = cfg.compress;
    let level = cfg.level();
    let idmp_lost = level < 13 && s.meta.idmp.as_ref().is_some_and(|i| !i.is_default());
    let nacked: u64 = s
        .meta
        .groups
        .iter()
        .map(|g| g.nacked.as_ref().map_or(0, Vec::len) as u64)
        .sum();
    let nack_lost = level < 14 && nacked > 0;
    if (idmp_lost || nack_lost) && !cfg.lossy {
        return Err(cannot(if idmp_lost {
            "stream IDMP state needs RDB 13 (Redis 8.6) or newer (--lossy drops it)"
        } else {
            "a stream NACK zone needs RDB 14 (Redis 8.8) or newer (--lossy drops it)"
        }));
    }
    let mut here = Dropped::default();
    if idmp_lost {
        here.idmp_streams = 1;
    }
    if nack_lost {
        here.nacked_entries = nacked;
    }
    let nodes = stream_nodes(&s.entries, cfg.stream_node_entries);
    put_len(out, nodes.len() as u64);
    for (id, lp) in &nodes {
        let mut key = BytesMut::with_capacity(16);
        put_raw_id(&mut key, *id);
        put_raw_string(out, &key, false);
        put_raw_string(out, lp, z);
    }
    let m = &s.meta;
    put_len(out, m.length);
    put_len(out, m.last_id.ms);
    put_len(out, m.last_id.seq);
    // what a stream from before RDB 10 gets when Redis loads it
    let first = m
        .first_id
        .or_else(|| s.entries.first().map(|e| e.id))
        .unwrap_or_default();
    let deleted = m.max_deleted_id.unwrap_or_default();
    let added = m.entries_added.unwrap_or(m.length);
    if level >= 10 {
        put_len(out, first.ms);
        put_len(out, first.seq);
        put_len(out, deleted.ms);
        put_len(out, deleted.seq);
        put_len(out, added);
    }
    put_len(out, m.groups.len() as u64);
    for g in &m.groups {
        put_raw_string(out, &g.name, z);
        put_len(out, g.last_id.ms);
        put_len(out, g.last_id.seq);
        if level >= 10 {
            // a stream read from RDB 10+ said "unknown" itself; one from RDB 9 had no counter,
            // and gets the one Redis computes when loading it
            let read = match g.entries_read {
                Some(n) => n,
                None if m.first_id.is_some() => u64::MAX,
                None => {
                    estimate_entries_read(m.length, m.last_id, first, deleted, added, g.last_id)
                }
            };
            put_len(out, read);
        }
        // released entries leave the pending list with the NACK zone they belong to
        let pending: Vec<_> = match &g.nacked {
            Some(n) if nack_lost && !n.is_empty() => {
                let gone: HashSet<StreamId> = n.iter().copied().collect();
                g.pending.iter().filter(|p| !gone.contains(&p.id)).collect()
            }
            _ => g.pending.iter().collect(),
        };
        put_len(out, pending.len() as u64);
        for p in pending {
            put_raw_id(out, p.id);
            out.put_u64_le(p.delivery_time_ms);
            put_len(out, p.delivery_count);
        }
        put_len(out, g.consumers.len() as u64);
        for c in &g.consumers {
            put_raw_string(out, &c.name, z);
            out.put_u64_le(c.seen_time_ms);
            if level >= 11 {
                out.put_u64_le(c.active_time_ms.unwrap_or(c.seen_time_ms));
            }
            put_len(out, c.pending.len() as u64);
            for id in &c.pending {
                put_raw_id(out, *id);
            }
        }
        if level >= 14 {
            let ids = g.nacked.as_deref().unwrap_or_default();
            put_len(out, ids.len() as u64);
            for id in ids {
                put_raw_id(out, *id);
            }
        }
    }
    if level >= 13 {
        let default = crate::value::StreamIdmp::default();
        let i = s.meta.idmp.as_ref().unwrap_or(&default);
        put_len(out, i.duration_s);
        put_len(out, i.max_entries);
        put_len(out, i.producers.len() as u64);
        for p in &i.producers {
            put_raw_string(out, &p.id, z);
            put_len(out, p.entries.len() as u64);
            for e in &p.entries {
                put_raw_string(out, &e.iid, z);
                put_len(out, e.id.ms);
                put_len(out, e.id.seq);
            }
        }
        put_len(out, i.iids_added);
        put_len(out, i.iids_duplicates);
    }
    dropped.add(here);
    Ok(match level {
        9 => 15,
        10 => 19,
        11 | 12 => 21,
        13 => 26,
        _ => 27,
    })
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
        let mut meta = BytesMut::new();
        let mut dropped = Dropped::default();
        let ty = object(value, &self.cfg, &mut obj, &mut dropped)
            .and_then(|ty| {
                key_meta(&head.key_meta, &self.cfg, &mut meta, &mut dropped).map(|()| ty)
            })
            .map_err(|e| e.for_key(&head.key))?;
        self.dropped.add(dropped);
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
        if obj.len() > 1 << 16 {
            self.flush_buf()?;
            self.buf = obj;
            return self.flush_buf();
        }
        self.buf.put_slice(&obj);
        self.maybe_flush()
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
