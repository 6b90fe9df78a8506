//! The sans-IO RDB decoder: fed bytes, returns items, never does I/O.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::cursor::{Cur, P, SRef, Stop, StrHead};
use crate::encodings::{self, BlobError};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::value::*;

/// What to do when a value is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Recovery {
    /// Stop at the first error (default).
    #[default]
    Abort,
    /// Skip a key whose value is damaged when the format still tells where the next item
    /// starts (a corrupt ziplist/listpack/intset inside a well-framed string); report it as
    /// [`Item::Skipped`] and go on.
    Skip,
    /// Stop at the first error, but let the collecting helpers return what was decoded so far
    /// together with the error ([`crate::decode_partial`]).
    Partial,
}

/// Limits checked before anything is allocated or waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    pub(crate) max_string: u64,
}

impl Limits {
    /// Largest string (key, element, blob, compressed or decompressed) accepted, in bytes.
    /// Raw string *values* above [`Config::string_piece`] are streamed in pieces instead and are
    /// not limited by this. Default 512 MiB, like Redis' `proto-max-bulk-len`.
    pub fn max_string(&mut self, n: u64) -> &mut Self {
        self.max_string = n;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_string: 512 << 20,
        }
    }
}

/// Decoder settings.
///
/// ```
/// let mut config = rdb_format::Config::default();
/// config.chunk_threshold(10_000).string_piece(1 << 20).verify_checksum(true);
/// let decoder = rdb_format::Decoder::with_config(config);
/// # let _ = decoder;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub(crate) limits: Limits,
    pub(crate) chunk_threshold: usize,
    pub(crate) chunk_size: usize,
    pub(crate) string_piece: u64,
    pub(crate) recovery: Recovery,
    pub(crate) verify_checksum: bool,
    pub(crate) skip_values: bool,
    pub(crate) relaxed_version: bool,
    pub(crate) dup_check_limit: usize,
    pub(crate) lenient: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            chunk_threshold: 8192,
            chunk_size: 4096,
            string_piece: 1 << 20,
            recovery: Recovery::Abort,
            verify_checksum: true,
            skip_values: false,
            relaxed_version: false,
            dup_check_limit: 1 << 20,
            lenient: false,
        }
    }
}

impl Config {
    /// Collections with more elements than this come out as [`Item::KeyStart`], chunks and
    /// [`Item::KeyEnd`] instead of one [`Item::Key`].
    pub fn chunk_threshold(&mut self, n: usize) -> &mut Self {
        self.chunk_threshold = n.max(1);
        self
    }

    /// Number of elements per chunk of a big collection.
    pub fn chunk_size(&mut self, n: usize) -> &mut Self {
        self.chunk_size = n.max(1);
        self
    }

    /// Raw string values longer than this come out in pieces of at most this many bytes.
    pub fn string_piece(&mut self, n: u64) -> &mut Self {
        self.string_piece = n.max(1);
        self
    }

    /// Limits on lengths read from the input.
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// The recovery policy.
    pub fn recovery(&mut self, r: Recovery) -> &mut Self {
        self.recovery = r;
        self
    }

    /// Check every value (structure, LZF data, scores) without building it: each key then
    /// comes out as one [`Item::KeyChecked`] with its metadata. For validating and counting,
    /// where building values would be wasted work.
    pub fn skip_values(&mut self, on: bool) -> &mut Self {
        self.skip_values = on;
        self
    }

    /// Try files whose RDB version this decoder does not know (a newer Redis or Valkey), like
    /// Valkey's `rdb-version-check relaxed`: decoding then stops at the first type or opcode
    /// byte it does not know, with that byte and its offset. Off by default: an unknown version
    /// is refused up front with an error that names it.
    pub fn relaxed_version(&mut self, on: bool) -> &mut Self {
        self.relaxed_version = on;
        self
    }

    /// How many members of one hashtable-encoded set, hash or sorted set are remembered (as
    /// 16-byte hashes) to find duplicates, which Redis refuses. Past it, later members are
    /// still checked against the remembered ones, and [`Decoder::partial_checks`] counts the
    /// key. Default 1,048,576 (about 32 MiB at most). Compact encodings are always checked
    /// whole.
    pub fn dup_check_limit(&mut self, n: usize) -> &mut Self {
        self.dup_check_limit = n;
        self
    }

    /// Read, as Redis does, the two things this decoder otherwise refuses as corrupt: a text
    /// score with trailing bytes (`"1.5x"` is 1.5, as `sscanf` reads it) and a string
    /// special-encoding byte where a length belongs (its low 6 bits are the length). Off by
    /// default: the errors name the byte, and this gets out whatever Redis would load.
    pub fn lenient(&mut self, on: bool) -> &mut Self {
        self.lenient = on;
        self
    }

    /// Verify the CRC-64 at the end of the file (default on).
    pub fn verify_checksum(&mut self, on: bool) -> &mut Self {
        self.verify_checksum = on;
        self
    }
}

/// Input the decoder can consume from without copying: `BytesMut` (streaming) or `Bytes`
/// (a whole file or an mmap).
pub trait Source {
    /// The bytes not yet consumed.
    fn bytes(&self) -> &[u8];
    /// Removes the first `n` bytes and returns them as `Bytes` sharing the same memory.
    fn split(&mut self, n: usize) -> Bytes;
}

impl Source for BytesMut {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn split(&mut self, n: usize) -> Bytes {
        self.split_to(n).freeze()
    }
}

impl Source for Bytes {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn split(&mut self, n: usize) -> Bytes {
        self.split_to(n)
    }
}

/// CRC-64/Jones as Redis computes it, over `data` (SIMD-accelerated through `crc-fast`).
///
/// ```
/// assert_eq!(rdb_format::crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
/// ```
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, data)
}

fn crc_digest() -> crc_fast::Digest {
    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqKind {
    List,
    Set,
    Zset1,
    Zset2,
    Hash,
    /// Hash with field TTLs stored as len-encoded values: relative to `min` (+1) for type 24,
    /// absolute for the 7.4 RC type 22.
    HashTtl(Option<u64>),
    /// Valkey 9 `HASH_2`.
    ValkeyHash2,
    Quicklist1,
    Quicklist2,
    StreamNodes(u8),
    /// Redis 8.8 array, with its insert index.
    Array(Option<u64>),
}

#[derive(Debug)]
enum Acc {
    List(Vec<Elem>),
    Set(Vec<Elem>),
    Zset(Vec<(Elem, f64)>),
    Hash(Vec<HashField>),
    Stream(Vec<StreamEntry>),
    Array(Vec<ArrayItem>),
}

impl Acc {
    fn len(&self) -> usize {
        match self {
            Self::List(v) | Self::Set(v) => v.len(),
            Self::Zset(v) => v.len(),
            Self::Hash(v) => v.len(),
            Self::Stream(v) => v.len(),
            Self::Array(v) => v.len(),
        }
    }

    fn take(&mut self) -> Chunk {
        match self {
            Self::List(v) => Chunk::List(std::mem::take(v)),
            Self::Set(v) => Chunk::Set(std::mem::take(v)),
            Self::Zset(v) => Chunk::SortedSet(std::mem::take(v)),
            Self::Hash(v) => Chunk::Hash(std::mem::take(v)),
            Self::Stream(v) => Chunk::StreamEntries(std::mem::take(v)),
            Self::Array(v) => Chunk::Array(std::mem::take(v)),
        }
    }

    /// Takes the first `n` elements (all of them when fewer).
    fn take_front(&mut self, n: usize) -> Chunk {
        fn front<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
            let rest = v.split_off(n.min(v.len()));
            std::mem::replace(v, rest)
        }
        match self {
            Self::List(v) => Chunk::List(front(v, n)),
            Self::Set(v) => Chunk::Set(front(v, n)),
            Self::Zset(v) => Chunk::SortedSet(front(v, n)),
            Self::Hash(v) => Chunk::Hash(front(v, n)),
            Self::Stream(v) => Chunk::StreamEntries(front(v, n)),
            Self::Array(v) => Chunk::Array(front(v, n)),
        }
    }

    fn into_value(self, meta: Option<StreamMeta>, insert_index: Option<u64>) -> Value {
        match self {
            Self::List(v) => Value::List(v),
            Self::Set(v) => Value::Set(v),
            Self::Zset(v) => Value::SortedSet(v),
            Self::Hash(v) => Value::Hash(v),
            Self::Stream(entries) => Value::Stream(Box::new(Stream {
                entries,
                meta: meta.unwrap_or_default(),
            })),
            Self::Array(items) => Value::Array(Box::new(Array {
                items,
                insert_index,
            })),
        }
    }
}

#[derive(Debug)]
struct SeqState {
    head: KeyHead,
    kind: SeqKind,
    remaining: u64,
    acc: Acc,
    started: bool,
    damaged: Option<Error>,
    /// Hashes of the members seen so far (sets, hashes, sorted sets), for duplicates.
    seen: Seen,
    /// The element (or node) count the value announced.
    total: u64,
}

/// Hashes of a collection's members (128-bit xxh3: a false duplicate is out of reach), up to
/// a limit; past it the check goes on for the members already seen and is partial.
#[derive(Debug, Default)]
struct Seen {
    set: std::collections::HashSet<u128, std::hash::BuildHasherDefault<U128Hasher>>,
    partial: bool,
}

/// The members' hashes are uniform already: use their low bits as they are.
#[derive(Default)]
struct U128Hasher(u64);

impl std::hash::Hasher for U128Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

#[derive(Debug)]
enum State {
    Magic,
    Top,
    Value(Box<KeyHead>),
    Seq(Box<SeqState>),
    StreamTail(Box<SeqState>),
    BigString { remaining: u64 },
    Done,
    Failed(Error),
}

/// Metadata opcodes seen before a key's type byte.
#[derive(Debug, Default, Clone)]
struct Pending {
    start: Option<u64>,
    expire_ms: Option<i64>,
    idle_s: Option<u64>,
    freq: Option<u8>,
    /// A KEY_META block was read: the next byte must be a value type.
    key_meta: Option<Vec<KeyMeta>>,
}

/// A whole key record parsed ahead in the same unit as the one before it.
struct BatchRec {
    meta: Pending,
    ty: u8,
    key: SRef,
    whole: Whole,
}

/// A value that is one unit in the file, parsed but not yet materialized.
enum Whole {
    Str(SRef),
    Blob(SRef),
    /// Module value: where it starts and ends in the unit, and its module ID.
    Module(usize, usize, u64),
}

/// A raw element parsed from the input, turned into values once its bytes are consumed.
enum RawEl {
    One(SRef),
    Two(SRef, SRef),
    Scored(SRef, f64),
    Ttl(u64, SRef, SRef),
    Node(u64, SRef),
    Stream(SRef, SRef),
    Array(u64, ArrRaw),
}

/// An array element's payload as found in the input.
#[derive(Clone, Copy)]
enum ArrRaw {
    Str(SRef),
    Int(i64),
    Float(f64),
    Short(SRef),
}

/// The sans-IO decoder.
///
/// Feed it bytes with [`Decoder::decode`]; it returns the next [`Item`], or `Ok(None)` when it
/// needs more input. It never reads or allocates on the word of a length field alone.
///
/// ```
/// use bytes::BytesMut;
/// use rdb_format::{Decoder, Item};
///
/// // An empty RDB 9 file with checksums disabled.
/// let file = b"REDIS0009\xff\0\0\0\0\0\0\0\0";
/// let mut dec = Decoder::new();
/// let mut buf = BytesMut::new();
/// let mut items = Vec::new();
/// for &b in file.iter() {
///     buf.extend_from_slice(&[b]); // one byte at a time: the decoder resumes where it stopped
///     while let Some(item) = dec.decode(&mut buf).unwrap() {
///         items.push(item);
///     }
/// }
/// assert!(dec.is_done());
/// assert!(matches!(items[1], Item::Eof { checksum: Some(0) }));
/// ```
pub struct Decoder {
    config: Config,
    state: State,
    /// Absolute offset of the first unconsumed byte.
    pos: u64,
    crc: crc_fast::Digest,
    version: u32,
    flavor: Flavor,
    db: u64,
    pending: Pending,
    out: VecDeque<Item>,
    ctx: Context,
    expect: &'static str,
    /// Reused list of elements parsed in one step of a collection.
    seq_raws: Vec<RawEl>,
    /// Reused list of the elements of a blob.
    blob_raws: std::cell::Cell<BlobScratch>,
    /// Reused list of key records decoded together.
    batch: Vec<BatchRec>,
    /// Reused buffer for checking LZF strings without keeping them.
    scratch: std::cell::Cell<Vec<u8>>,
    /// Keys whose duplicate check stopped at the limit.
    partial_checks: u64,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("version", &self.version)
            .field("flavor", &self.flavor)
            .field("offset", &self.pos)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The newest Redis RDB version this decoder knows (Redis 8.8).
pub const MAX_REDIS_VERSION: u32 = 14;
/// The newest Valkey RDB version this decoder knows (Valkey 9.0 and 9.1).
pub const MAX_VALKEY_VERSION: u32 = 80;

/// Which server most likely wrote a file with a version this decoder does not know.
fn likely_writer(flavor: Flavor, version: u32, invalid: bool) -> &'static str {
    match (flavor, version) {
        _ if invalid => "no Redis or Valkey release writes this magic with this number",
        (Flavor::Redis, 15) => "Redis 8.10 (RDB 15)",
        (Flavor::Redis, 16..=20) => "a Redis release newer than 8.10",
        (Flavor::Redis, _) => {
            "no released Redis (Valkey calls versions 12 to 79 foreign; a test or hand-made file)"
        }
        (Flavor::Valkey, 81) => "Valkey 9.2 (VALKEY081)",
        (Flavor::Valkey, _) => "a Valkey release newer than 9.2",
    }
}

const MODULE_CHARSET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The 9-character module type name and encoding version packed into a module ID.
pub fn module_name(id: u64) -> (String, u64) {
    let mut name = String::with_capacity(9);
    for i in 0..9 {
        let c = (id >> (64 - 6 * (i + 1))) & 63;
        name.push(char::from(MODULE_CHARSET[c as usize]));
    }
    (name, id & 1023)
}

/// The 64-bit module type ID of a 9-character name and an encoding version (the inverse of
/// [`module_name`]); `None` for a name that is not 9 characters of Redis' module charset.
///
/// ```
/// let id = rdb_format::module_id("graphdata", 17).unwrap();
/// assert_eq!(rdb_format::module_name(id), ("graphdata".to_owned(), 17));
/// ```
pub fn module_id(name: &str, encver: u64) -> Option<u64> {
    if name.len() != 9 || encver > 1023 {
        return None;
    }
    let mut id = 0u64;
    for (i, b) in name.bytes().enumerate() {
        let c = MODULE_CHARSET.iter().position(|&x| x == b)? as u64;
        id |= c << (64 - 6 * (i + 1));
    }
    Some(id | encver)
}

impl Decoder {
    /// A decoder with the default [`Config`].
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A decoder with the given settings.
    pub fn with_config(config: Config) -> Self {
        Self {
            config,
            state: State::Magic,
            pos: 0,
            crc: crc_digest(),
            version: 0,
            flavor: Flavor::Redis,
            db: 0,
            pending: Pending::default(),
            out: VecDeque::new(),
            ctx: Context::default(),
            expect: "header",
            seq_raws: Vec::new(),
            blob_raws: std::cell::Cell::new(BlobScratch::default()),
            batch: Vec::new(),
            scratch: std::cell::Cell::new(Vec::new()),
            partial_checks: 0,
        }
    }

    /// How many keys were too big to be checked for duplicate members in full
    /// ([`Config::dup_check_limit`]).
    pub fn partial_checks(&self) -> u64 {
        self.partial_checks
    }

    /// The RDB version from the header (0 before it was read).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The server family from the magic.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Bytes consumed so far: the offset in the input of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.pos
    }

    /// True once the EOF item has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done) && self.out.is_empty()
    }

    /// The error to report when the input ends before the file does.
    fn truncated(&self) -> Error {
        if let State::Failed(e) = &self.state {
            return e.clone();
        }
        Error::new(ErrorKind::Truncated { what: self.expect }, self.pos).with_context(&self.ctx)
    }

    /// Decodes the next item from `src`, consuming its bytes. `Ok(None)`: more input needed
    /// (or, once [`is_done`](Self::is_done), the file has ended). After an error the decoder
    /// keeps returning it. The contract of `tokio_util::codec::Decoder`: call it while it gives
    /// items, read more when it gives `None`, and call [`decode_eof`](Self::decode_eof) once
    /// the input has ended.
    pub fn decode<S: Source>(&mut self, src: &mut S) -> Result<Option<Item>> {
        loop {
            // items decoded before an error still come out first, in order
            if let Some(item) = self.out.pop_front() {
                return Ok(Some(item));
            }
            if let State::Failed(e) = &self.state {
                return Err(e.clone());
            }
            match self.step(src) {
                Ok(true) => {}
                Ok(false) if self.out.is_empty() => return Ok(None),
                Ok(false) => {}
                Err(e) => self.state = State::Failed(e.with_context(&self.ctx)),
            }
        }
    }

    /// Decodes the next item when the input has ended: `Ok(None)` when the file ended cleanly
    /// (its EOF item was decoded), a truncation error (with offset and key) when it did not.
    pub fn decode_eof<S: Source>(&mut self, src: &mut S) -> Result<Option<Item>> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if self.is_done() => Ok(None),
            None => {
                let e = self.truncated();
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn err(&self, kind: ErrorKind, rel: usize) -> Error {
        Error::new(kind, self.pos + rel as u64)
    }

    fn stop_err(&self, stop: Stop) -> Result<bool> {
        match stop {
            Stop::More => Ok(false),
            Stop::Bad(kind, at) => Err(self.err(kind, at)),
        }
    }

    /// Consumes `n` bytes (updating the checksum) and returns them.
    fn consume<S: Source>(&mut self, src: &mut S, n: usize) -> Bytes {
        let b = src.split(n);
        self.crc.update(&b);
        self.pos += n as u64;
        b
    }

    fn mat(&self, chunk: &Bytes, base: u64, r: SRef) -> Result<Elem> {
        Ok(match r {
            SRef::Raw(s, e) => Elem::Bytes(chunk.slice(s..e)),
            SRef::Int(i) => Elem::Int(i),
            SRef::Lzf(s, e, ulen) => {
                let mut data = Vec::new();
                crate::lzf::decompress_into(&chunk[s..e], ulen as usize, &mut data).ok_or_else(
                    || Error::new(ErrorKind::Lzf { expected: ulen }, base + s as u64),
                )?;
                Elem::Bytes(Bytes::from(data))
            }
        })
    }

    fn mat_bytes(&self, chunk: &Bytes, base: u64, r: SRef) -> Result<Bytes> {
        Ok(self.mat(chunk, base, r)?.to_bytes())
    }

    fn key_metas(&self, raw: Vec<RawMeta>, chunk: &Bytes, base: u64) -> Result<Vec<KeyMeta>> {
        raw.into_iter()
            .map(|m| {
                let (class, version, flags) = KeyMeta::parse_spec(m.spec);
                let items = m
                    .items
                    .into_iter()
                    .map(|i| {
                        Ok(match i {
                            RawModuleItem::Uint(v) => ModuleItem::Uint(v),
                            RawModuleItem::Sint(v) => ModuleItem::Sint(v as i64),
                            RawModuleItem::Float(v) => ModuleItem::Float(v),
                            RawModuleItem::Double(v) => ModuleItem::Double(v),
                            RawModuleItem::Str(s) => {
                                ModuleItem::String(self.mat_bytes(chunk, base, s)?)
                            }
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(KeyMeta {
                    class,
                    version,
                    allow_ignore: flags & 1 != 0,
                    reserved_flags: flags & 6,
                    items,
                })
            })
            .collect()
    }

    fn step<S: Source>(&mut self, src: &mut S) -> Result<bool> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Magic => {
                self.state = State::Magic;
                self.step_magic(src)
            }
            State::Top => {
                self.state = State::Top;
                self.step_top(src)
            }
            State::Value(head) => self.step_value(src, head),
            State::Seq(seq) => self.step_seq(src, seq),
            State::StreamTail(seq) => self.step_stream_tail(src, seq),
            State::BigString { remaining } => self.step_big_string(src, remaining),
            State::Done => Ok(false),
            State::Failed(e) => {
                self.state = State::Failed(e);
                Ok(false)
            }
        }
    }

    fn step_magic<S: Source>(&mut self, src: &mut S) -> Result<bool> {
        let b = src.bytes();
        let (flavor, n) = if b.starts_with(b"VALKEY") || (b.len() < 6 && b"VALKEY".starts_with(b)) {
            (Flavor::Valkey, 9)
        } else {
            (Flavor::Redis, 9)
        };
        let magic = if flavor == Flavor::Valkey {
            &b"VALKEY"[..]
        } else {
            &b"REDIS"[..]
        };
        let m = magic.len().min(b.len());
        if b[..m] != magic[..m] {
            return Err(self.err(
                ErrorKind::BadMagic {
                    found: b[..b.len().min(9)].to_vec(),
                },
                0,
            ));
        }
        if b.len() < n {
            return Ok(false);
        }
        let digits = &b[magic.len()..n];
        let version = std::str::from_utf8(digits)
            .ok()
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| {
                self.err(
                    ErrorKind::BadMagic {
                        found: b[..n].to_vec(),
                    },
                    0,
                )
            })?;
        let invalid = match flavor {
            // what Valkey's loader calls invalid: the two magics never carry these numbers
            Flavor::Redis => version == 0 || version > 79,
            Flavor::Valkey => version <= 79,
        };
        let known = match flavor {
            Flavor::Redis => version <= MAX_REDIS_VERSION,
            Flavor::Valkey => version == MAX_VALKEY_VERSION,
        };
        if invalid || (!known && !self.config.relaxed_version) {
            return Err(self.err(
                ErrorKind::UnsupportedVersion {
                    flavor,
                    version,
                    likely: likely_writer(flavor, version, invalid),
                    relaxable: !invalid,
                },
                magic.len(),
            ));
        }
        self.consume(src, n);
        self.version = version;
        self.flavor = flavor;
        self.state = State::Top;
        self.out.push_back(Item::Header { flavor, version });
        Ok(true)
    }

    fn ms_time(&self, c: &mut Cur<'_>) -> P<u64> {
        c.u64_le()
    }

    fn step_top<S: Source>(&mut self, src: &mut S) -> Result<bool> {
        let start = self.pos;
        let b = src.bytes();
        let mut c = Cur::new(b, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        let op = match c.u8() {
            Ok(op) => op,
            Err(s) => {
                self.expect = "opcode";
                return self.stop_err(s);
            }
        };
        self.ctx = Context {
            opcode: Some(op),
            doing: None,
            key: None,
        };
        if self.pending.key_meta.is_some() && (op >= 0xF0 || op == 107) {
            return Err(self.err(
                ErrorKind::Corrupt {
                    what: "key metadata",
                    why: format!(
                        "opcode {op:#04x} follows a KEY_META block, where only a value type may"
                    ),
                },
                0,
            ));
        }
        macro_rules! p {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(s) => return self.stop_err(s),
                }
            };
        }
        match op {
            0xFF => {
                self.expect = "checksum";
                self.ctx.doing = Some("checksum");
                if self.version >= 5 {
                    let stored = p!(c.u64_le());
                    self.consume(src, 1);
                    let actual = self.crc.finalize();
                    src.split(8);
                    self.pos += 8;
                    if self.config.verify_checksum && stored != 0 && stored != actual {
                        return Err(Error::new(
                            ErrorKind::Checksum {
                                expected: stored,
                                actual,
                            },
                            self.pos - 8,
                        ));
                    }
                    self.out.push_back(Item::Eof {
                        checksum: Some(stored),
                    });
                } else {
                    self.consume(src, 1);
                    self.out.push_back(Item::Eof { checksum: None });
                }
                self.state = State::Done;
                return Ok(true);
            }
            0xFE => {
                self.expect = "SELECTDB";
                let db = p!(c.len());
                self.consume(src, c.p);
                self.db = db;
                self.out.push_back(Item::SelectDb(db));
            }
            0xFD => {
                self.expect = "EXPIRETIME";
                let secs = u32::from_le_bytes(p!(c.array()));
                self.consume(src, c.p);
                self.pending.start.get_or_insert(start);
                self.pending.expire_ms = Some(i64::from(secs) * 1000);
            }
            0xFC => {
                self.expect = "EXPIRETIME_MS";
                let ms = p!(self.ms_time(&mut c));
                self.consume(src, c.p);
                self.pending.start.get_or_insert(start);
                self.pending.expire_ms = Some(ms as i64);
            }
            0xFB => {
                self.expect = "RESIZEDB";
                let db_size = p!(c.len());
                let expires_size = p!(c.len());
                self.consume(src, c.p);
                self.out.push_back(Item::ResizeDb {
                    db_size,
                    expires_size,
                });
            }
            0xFA => {
                self.expect = "AUX field";
                self.ctx.doing = Some("aux");
                let k = p!(c.string());
                let v = p!(c.string());
                let chunk = self.consume(src, c.p);
                let key = self.mat_bytes(&chunk, start, k)?;
                let value = self.mat_bytes(&chunk, start, v)?;
                self.out.push_back(Item::Aux { key, value });
            }
            0xF9 => {
                self.expect = "FREQ";
                let f = p!(c.u8());
                self.consume(src, c.p);
                self.pending.start.get_or_insert(start);
                self.pending.freq = Some(f);
            }
            0xF8 => {
                self.expect = "IDLE";
                let idle = p!(c.len());
                self.consume(src, c.p);
                self.pending.start.get_or_insert(start);
                self.pending.idle_s = Some(idle);
            }
            0xF7 => {
                self.expect = "MODULE_AUX";
                self.ctx.doing = Some("module-aux");
                let id = p!(c.len());
                let when_op = p!(c.len());
                if when_op != 2 {
                    return Err(self.err(
                        ErrorKind::Corrupt {
                            what: "module aux",
                            why: format!("'when' opcode is {when_op}, expected 2 (UINT)"),
                        },
                        c.p,
                    ));
                }
                let when = p!(c.len());
                let body = c.p;
                p!(skip_module_body(&mut c));
                let chunk = self.consume(src, c.p);
                let (name, encver) = module_name(id);
                self.out.push_back(Item::ModuleAux {
                    name,
                    encver,
                    when,
                    raw: chunk.slice(body..),
                });
            }
            0xF6 => {
                self.expect = "FUNCTION_PRE_GA";
                self.ctx.doing = Some("function");
                let name = p!(c.string());
                let engine = p!(c.string());
                let has_desc = p!(c.len());
                let desc = if has_desc != 0 {
                    Some(p!(c.string()))
                } else {
                    None
                };
                let code = p!(c.string());
                let chunk = self.consume(src, c.p);
                let description = match desc {
                    Some(d) => Some(self.mat_bytes(&chunk, start, d)?),
                    None => None,
                };
                self.out.push_back(Item::Function(Function {
                    code: self.mat_bytes(&chunk, start, code)?,
                    name: Some(self.mat_bytes(&chunk, start, name)?),
                    engine: Some(self.mat_bytes(&chunk, start, engine)?),
                    description,
                }));
            }
            0xF5 => {
                self.expect = "FUNCTION2";
                self.ctx.doing = Some("function");
                let code = p!(c.string());
                let chunk = self.consume(src, c.p);
                self.out.push_back(Item::Function(Function {
                    code: self.mat_bytes(&chunk, start, code)?,
                    name: None,
                    engine: None,
                    description: None,
                }));
            }
            0xF4 if self.version >= 12 || self.flavor == Flavor::Valkey => {
                self.expect = "SLOT_INFO";
                let slot = p!(c.len());
                let size = p!(c.len());
                let expires_size = p!(c.len());
                self.consume(src, c.p);
                self.out.push_back(Item::SlotInfo {
                    slot,
                    size,
                    expires_size,
                });
            }
            107 if self.flavor == Flavor::Redis => {
                // Redis Enterprise's RAM_LRU hint before a key: one length, nothing we use.
                self.expect = "RAM_LRU";
                p!(c.len());
                self.consume(src, c.p);
                self.pending.start.get_or_insert(start);
            }
            0xF3 if self.flavor == Flavor::Valkey => {
                self.expect = "SLOT_IMPORT";
                self.ctx.doing = Some("slot import");
                let job = p!(c.string());
                let n = p!(c.len());
                let mut ranges = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    let at = c.p;
                    let (from, to) = (p!(c.len()), p!(c.len()));
                    if from > to || to > 16383 {
                        return Err(self.err(
                            ErrorKind::Corrupt {
                                what: "slot import",
                                why: format!("bad slot range {from}-{to}"),
                            },
                            at,
                        ));
                    }
                    ranges.push((from, to));
                }
                let chunk = self.consume(src, c.p);
                let job = self.mat_bytes(&chunk, start, job)?;
                self.out.push_back(Item::SlotImport { job, ranges });
            }
            0xF3 if self.version >= 13 => {
                self.expect = "KEY_META";
                self.ctx.doing = Some("key metadata");
                let raw = p!(key_meta_block(&mut c));
                let chunk = self.consume(src, c.p);
                let metas = self.key_metas(raw, &chunk, start)?;
                self.pending.start.get_or_insert(start);
                self.pending.key_meta = Some(metas);
            }
            ty => {
                self.expect = "key";
                self.check_type(ty)?;
                let k = p!(c.string());
                let key_end = c.p;
                // Fast path: a whole value that is all there is decoded in the same unit as
                // its key. Anything else (sequences, big strings, more bytes needed, a
                // malformed value) goes the step-by-step way, which also reports errors.
                let whole = self.parse_whole(&mut c, ty).unwrap_or_default();
                // More whole keys that follow are decoded in the same unit: one split and one
                // checksum update for many small keys.
                let mut batch = std::mem::take(&mut self.batch);
                batch.clear();
                if whole.is_some() {
                    while batch.len() < 256 && c.p < (256 << 10) {
                        let at = c.p;
                        match self.whole_record(&mut c) {
                            Some(rec) => batch.push(rec),
                            None => {
                                c.p = at;
                                break;
                            }
                        }
                    }
                }
                let end = if whole.is_some() { c.p } else { key_end };
                let chunk = self.consume(src, end);
                let pending = std::mem::take(&mut self.pending);
                let head = self.key_head(&chunk, start, ty, k, pending)?;
                let Some(w) = whole else {
                    self.state = State::Value(Box::new(head));
                    self.batch = batch;
                    return Ok(true);
                };
                self.emit_whole_raw(head, &chunk, start, w)?;
                for rec in batch.drain(..) {
                    let head = self.key_head(&chunk, start, rec.ty, rec.key, rec.meta)?;
                    self.emit_whole_raw(head, &chunk, start, rec.whole)?;
                }
                self.batch = batch;
            }
        }
        Ok(true)
    }

    /// The head of a key whose type byte and key were parsed at `start + …` and consumed in
    /// `chunk`; sets the error context to it.
    fn key_head(
        &mut self,
        chunk: &Bytes,
        start: u64,
        ty: u8,
        k: SRef,
        meta: Pending,
    ) -> Result<KeyHead> {
        let key = self.mat_bytes(chunk, start, k)?;
        let (value_type, encoding) = type_info(ty, self.flavor);
        self.ctx = Context {
            opcode: Some(ty),
            doing: Some(type_name(ty, self.flavor)),
            key: Some(key.clone()),
        };
        Ok(KeyHead {
            db: self.db,
            key,
            value_type,
            encoding,
            type_byte: ty,
            expire_ms: meta.expire_ms,
            idle_s: meta.idle_s,
            freq: meta.freq,
            offset: meta.start.unwrap_or(start),
            key_meta: meta.key_meta.unwrap_or_default(),
        })
    }

    /// Parses one more record made of metadata opcodes, a type byte, a key and a whole value,
    /// if it is all there and well formed; `None` otherwise (the caller rewinds).
    fn whole_record(&self, c: &mut Cur<'_>) -> Option<BatchRec> {
        let base = self.pos;
        let mut meta = Pending::default();
        loop {
            let at = c.p;
            let op = c.u8().ok()?;
            match op {
                0xFC => meta.expire_ms = Some(c.u64_le().ok()? as i64),
                0xFD => {
                    meta.expire_ms = Some(i64::from(u32::from_le_bytes(c.array().ok()?)) * 1000)
                }
                0xF8 => meta.idle_s = Some(c.len().ok()?),
                0xF9 => meta.freq = Some(c.u8().ok()?),
                ty if matches!(ty, 0 | 7 | 9..=13 | 16 | 17 | 20 | 25)
                    && self.check_type(ty).is_ok() =>
                {
                    meta.start.get_or_insert(base + at as u64);
                    let key = c.string().ok()?;
                    let whole = self.parse_whole(c, ty).ok()??;
                    return Some(BatchRec {
                        meta,
                        ty,
                        key,
                        whole,
                    });
                }
                _ => return None,
            }
            meta.start.get_or_insert(base + at as u64);
        }
    }

    fn check_type(&self, ty: u8) -> Result<()> {
        let known = match ty {
            0..=5 | 7 | 9..=21 => true,
            6 => {
                return Err(self.err(
                    ErrorKind::Unsupported {
                        ty,
                        why: "module values of the 4.0 release candidates (type 6) carry no \
                              framing and need the module's own decoder",
                    },
                    0,
                ));
            }
            22 | 23 if self.flavor == Flavor::Valkey => true,
            22..=25 => self.version >= 12 && self.flavor == Flavor::Redis,
            26 => self.version >= 13 && self.flavor == Flavor::Redis,
            27 | 28 => self.version >= 14 && self.flavor == Flavor::Redis,
            _ => false,
        };
        if known {
            Ok(())
        } else {
            Err(self.err(ErrorKind::UnknownType(ty), 0))
        }
    }

    fn step_value<S: Source>(&mut self, src: &mut S, head: Box<KeyHead>) -> Result<bool> {
        let start = self.pos;
        let ty = head.type_byte;
        self.expect = type_name(ty, self.flavor);
        let b = src.bytes();
        let mut c = Cur::new(b, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        macro_rules! p {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(s) => {
                        self.state = State::Value(head);
                        return self.stop_err(s);
                    }
                }
            };
        }
        let seq = |kind: SeqKind, remaining: u64, head: Box<KeyHead>| {
            let cap = remaining.min(1024) as usize;
            let acc = match kind {
                SeqKind::List | SeqKind::Quicklist1 | SeqKind::Quicklist2 => {
                    Acc::List(Vec::with_capacity(cap))
                }
                SeqKind::Set => Acc::Set(Vec::with_capacity(cap)),
                SeqKind::Zset1 | SeqKind::Zset2 => Acc::Zset(Vec::with_capacity(cap)),
                SeqKind::Hash | SeqKind::HashTtl(_) | SeqKind::ValkeyHash2 => {
                    Acc::Hash(Vec::with_capacity(cap))
                }
                SeqKind::StreamNodes(_) => Acc::Stream(Vec::new()),
                SeqKind::Array(_) => Acc::Array(Vec::with_capacity(cap)),
            };
            State::Seq(Box::new(SeqState {
                head: *head,
                kind,
                remaining,
                acc,
                started: false,
                damaged: None,
                seen: Seen::default(),
                total: remaining,
            }))
        };
        match ty {
            1 | 2 | 3 | 4 | 5 | 14 | 18 | 15 | 19 | 21 | 26 | 27 => {
                let n = p!(c.len());
                self.consume(src, c.p);
                let kind = match ty {
                    1 => SeqKind::List,
                    2 => SeqKind::Set,
                    3 => SeqKind::Zset1,
                    4 => SeqKind::Hash,
                    5 => SeqKind::Zset2,
                    14 => SeqKind::Quicklist1,
                    18 => SeqKind::Quicklist2,
                    _ => SeqKind::StreamNodes(ty),
                };
                self.state = seq(kind, n, head);
            }
            28 => {
                let at = c.p;
                let n = p!(c.len());
                if n == 0 {
                    return Err(self.err(array_corrupt("an array with 0 elements".into()), at));
                }
                let at = c.p;
                let insert = match p!(c.len()) {
                    0 => None,
                    1 => Some(p!(c.len())),
                    x => {
                        return Err(self.err(
                            array_corrupt(format!("insert-index flag is {x}, expected 0 or 1")),
                            at,
                        ));
                    }
                };
                self.consume(src, c.p);
                self.state = seq(SeqKind::Array(insert), n, head);
            }
            22 if self.flavor == Flavor::Valkey => {
                let n = p!(c.len());
                self.consume(src, c.p);
                self.state = seq(SeqKind::ValkeyHash2, n, head);
            }
            22 | 24 => {
                let min = if ty == 24 {
                    Some(p!(self.ms_time(&mut c)))
                } else {
                    None
                };
                let n = p!(c.len());
                self.consume(src, c.p);
                self.state = seq(SeqKind::HashTtl(min), n, head);
            }
            23 if self.flavor == Flavor::Valkey => {
                return Err(self.err(
                    ErrorKind::Unsupported {
                        ty,
                        why: "Valkey 9.2 PATH_HASH values are not decoded (layout not published)",
                    },
                    0,
                ));
            }
            _ => match p!(self.parse_whole(&mut c, ty)) {
                Some(w) => {
                    let chunk = self.consume(src, c.p);
                    self.emit_whole_raw(*head, &chunk, start, w)?;
                }
                None => {
                    // a raw string longer than a piece: stream it
                    let StrHead::Raw(n) = p!(c.string_header()) else {
                        unreachable!("parse_whole only declines big raw strings")
                    };
                    self.consume(src, c.p);
                    let mut head = head;
                    head.encoding = Encoding::Raw;
                    self.out.push_back(if self.config.skip_values {
                        Item::KeyChecked(*head)
                    } else {
                        Item::KeyStart(*head)
                    });
                    self.state = State::BigString { remaining: n };
                }
            },
        }
        Ok(true)
    }

    /// Parses a value that is one unit in the file (a string, a blob, a module value).
    /// `None`: the type is a sequence, or a raw string longer than a piece.
    fn parse_whole(&self, c: &mut Cur<'_>, ty: u8) -> P<Option<Whole>> {
        Ok(Some(match ty {
            0 => {
                let at = c.p;
                if let StrHead::Raw(n) = c.string_header()? {
                    if n > self.config.string_piece {
                        c.p = at;
                        return Ok(None);
                    }
                }
                c.p = at;
                Whole::Str(c.string()?)
            }
            7 => {
                let body = c.p;
                let id = c.len()?;
                skip_module_body(c)?;
                Whole::Module(body, c.p, id)
            }
            9..=13 | 16 | 17 | 20 | 25 => {
                if ty == 25 {
                    c.u64_le()?;
                }
                Whole::Blob(c.string()?)
            }
            23 if self.flavor == Flavor::Redis => Whole::Blob(c.string()?),
            _ => return Ok(None),
        }))
    }

    /// Turns a parsed whole value into a key record (or a skipped key) once consumed.
    fn emit_whole_raw(
        &mut self,
        mut head: KeyHead,
        chunk: &Bytes,
        base: u64,
        w: Whole,
    ) -> Result<()> {
        match w {
            Whole::Str(s) => {
                head.encoding = match s {
                    SRef::Int(_) => Encoding::Int,
                    SRef::Lzf(..) => Encoding::Lzf,
                    SRef::Raw(..) => Encoding::Raw,
                };
                if self.config.skip_values {
                    self.check_sref(chunk, base, s)?;
                    self.emit_checked(head);
                } else {
                    let v = self.mat_bytes(chunk, base, s)?;
                    self.emit_whole(head, Value::String(v));
                }
            }
            Whole::Module(..) if self.config.skip_values => self.emit_checked(head),
            Whole::Module(body, end, id) => {
                let (name, encver) = module_name(id);
                let raw = chunk.slice(body..end);
                self.emit_whole(head, Value::Module(ModuleValue { name, encver, raw }));
            }
            Whole::Blob(s) => {
                let blob = self.mat_bytes(chunk, base, s)?;
                let mut scratch = self.blob_raws.take();
                let decoded = decode_blob(
                    head.type_byte,
                    &blob,
                    !self.config.skip_values,
                    &mut scratch,
                );
                self.blob_raws.set(scratch);
                match decoded {
                    Ok(Some(v)) => self.emit_whole(head, v),
                    Ok(None) => self.emit_checked(head),
                    Err(e) => {
                        let err = blob_error(e, base, s).with_context(&self.ctx);
                        if self.config.recovery != Recovery::Skip {
                            return Err(err);
                        }
                        self.out.push_back(Item::Skipped {
                            key: head.key.clone(),
                            error: err,
                        });
                        self.state = State::Top;
                        self.ctx = Context::default();
                    }
                }
            }
        }
        Ok(())
    }

    fn emit_checked(&mut self, head: KeyHead) {
        self.out.push_back(Item::KeyChecked(head));
        self.state = State::Top;
        self.ctx = Context::default();
    }

    fn emit_whole(&mut self, head: KeyHead, value: Value) {
        self.out.push_back(Item::Key(KeyRecord { head, value }));
        self.state = State::Top;
        self.ctx = Context::default();
    }

    fn step_big_string<S: Source>(&mut self, src: &mut S, remaining: u64) -> Result<bool> {
        self.expect = "string value";
        if remaining == 0 {
            if !self.config.skip_values {
                self.out.push_back(Item::KeyEnd);
            }
            self.state = State::Top;
            return Ok(true);
        }
        let want = remaining.min(self.config.string_piece);
        let avail = src.bytes().len() as u64;
        if avail < want {
            self.state = State::BigString { remaining };
            return Ok(false);
        }
        let piece = self.consume(src, want as usize);
        if !self.config.skip_values {
            self.out.push_back(Item::Chunk(Chunk::String(piece)));
        }
        self.state = State::BigString {
            remaining: remaining - want,
        };
        Ok(true)
    }

    fn step_seq<S: Source>(&mut self, src: &mut S, mut seq: Box<SeqState>) -> Result<bool> {
        self.expect = type_name(seq.head.type_byte, self.flavor);
        let start = self.pos;
        let b = src.bytes();
        let mut c = Cur::new(b, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        let mut raws = std::mem::take(&mut self.seq_raws);
        raws.clear();
        let mut done_at = 0;
        let room = if seq.started {
            self.config.chunk_size
        } else {
            self.config.chunk_threshold.saturating_add(1)
        };
        // Parse as many whole elements as the input holds (up to a chunk's worth), then
        // consume them at once.
        let mut budget = room.saturating_sub(seq.acc.len()).max(1);
        while (raws.len() as u64) < seq.remaining && budget > 0 {
            let r = match seq.kind {
                SeqKind::List | SeqKind::Set => c.string().map(RawEl::One),
                SeqKind::Zset1 => c
                    .string()
                    .and_then(|m| Ok(RawEl::Scored(m, c.text_double()?))),
                SeqKind::Zset2 => c
                    .string()
                    .and_then(|m| Ok(RawEl::Scored(m, c.bin_double()?))),
                SeqKind::Hash => c.string().and_then(|f| Ok(RawEl::Two(f, c.string()?))),
                SeqKind::HashTtl(_) => c
                    .len()
                    .and_then(|ttl| Ok(RawEl::Ttl(ttl, c.string()?, c.string()?))),
                SeqKind::ValkeyHash2 => valkey_hash2_field(&mut c),
                SeqKind::Quicklist1 => c.string().map(|s| RawEl::Node(2, s)),
                SeqKind::Quicklist2 => c.len().and_then(|k| Ok(RawEl::Node(k, c.string()?))),
                SeqKind::StreamNodes(_) => {
                    c.string().and_then(|id| Ok(RawEl::Stream(id, c.string()?)))
                }
                SeqKind::Array(_) => array_elem(&mut c),
            };
            match r {
                Ok(r) => {
                    raws.push(r);
                    done_at = c.p;
                    budget = budget.saturating_sub(match seq.kind {
                        SeqKind::Quicklist1 | SeqKind::Quicklist2 | SeqKind::StreamNodes(_) => {
                            // a node holds many elements: count it as a chunk's share
                            budget.min(64)
                        }
                        _ => 1,
                    });
                }
                Err(Stop::More) => break,
                Err(Stop::Bad(kind, at)) => {
                    let e = self.err(kind, at);
                    return Err(e);
                }
            }
        }
        if raws.is_empty() && seq.remaining > 0 {
            self.state = State::Seq(seq);
            self.seq_raws = raws;
            return Ok(false);
        }
        let chunk = self.consume(src, done_at);
        seq.remaining -= raws.len() as u64;
        for r in raws.drain(..) {
            let res = self
                .check_member(&mut seq, &chunk, start, &r)
                .and_then(|()| self.push_raw(&mut seq, &chunk, start, r));
            if let Err(e) = res {
                let e = e.with_context(&self.ctx);
                if self.config.recovery == Recovery::Skip && seq.damaged.is_none() {
                    seq.damaged = Some(e);
                } else if seq.damaged.is_none() {
                    return Err(e);
                }
            }
        }
        self.seq_raws = raws;
        if seq.damaged.is_some() {
            seq.acc.take();
        }
        if !seq.started && seq.acc.len() > self.config.chunk_threshold && seq.damaged.is_none() {
            seq.started = true;
            self.out.push_back(Item::KeyStart(seq.head.clone()));
        }
        if seq.started {
            // Chunks are cut at exact multiples of chunk_size, whatever the input's split.
            while seq.acc.len() >= self.config.chunk_size {
                let chunk = seq.acc.take_front(self.config.chunk_size);
                self.out.push_back(Item::Chunk(chunk));
            }
        }
        if seq.remaining == 0 {
            if let SeqKind::StreamNodes(_) = seq.kind {
                self.state = State::StreamTail(seq);
                return Ok(true);
            }
            self.finish_seq(seq, None);
        } else {
            self.state = State::Seq(seq);
        }
        Ok(true)
    }

    /// Splits an oversized chunk into chunks of `chunk_size` elements.
    fn push_chunks(&mut self, chunk: Chunk) {
        let n = self.config.chunk_size;
        macro_rules! split {
            ($v:expr, $ctor:path) => {{
                let mut v = $v;
                while v.len() > n {
                    let rest = v.split_off(n);
                    self.out.push_back(Item::Chunk($ctor(v)));
                    v = rest;
                }
                if !v.is_empty() {
                    self.out.push_back(Item::Chunk($ctor(v)));
                }
            }};
        }
        match chunk {
            Chunk::List(v) => split!(v, Chunk::List),
            Chunk::Set(v) => split!(v, Chunk::Set),
            Chunk::SortedSet(v) => split!(v, Chunk::SortedSet),
            Chunk::Hash(v) => split!(v, Chunk::Hash),
            Chunk::StreamEntries(v) => split!(v, Chunk::StreamEntries),
            Chunk::Array(v) => split!(v, Chunk::Array),
            other => self.out.push_back(Item::Chunk(other)),
        }
    }

    #[allow(clippy::boxed_local)] // the state machine holds it boxed; unboxing would copy it
    fn finish_seq(&mut self, mut seq: Box<SeqState>, meta: Option<StreamMeta>) {
        if let Some(error) = seq.damaged.take() {
            self.out.push_back(Item::Skipped {
                key: seq.head.key.clone(),
                error,
            });
        } else if self.config.skip_values {
            self.out.push_back(Item::KeyChecked(seq.head));
        } else if seq.started {
            let rest = seq.acc.take();
            if !rest.is_empty() {
                self.push_chunks(rest);
            }
            if let Some(meta) = meta {
                self.out
                    .push_back(Item::Chunk(Chunk::StreamMeta(Box::new(meta))));
            }
            if let SeqKind::Array(insert_index) = seq.kind {
                self.out
                    .push_back(Item::Chunk(Chunk::ArrayEnd { insert_index }));
            }
            self.out.push_back(Item::KeyEnd);
        } else {
            let seq = *seq;
            let insert = match seq.kind {
                SeqKind::Array(i) => i,
                _ => None,
            };
            self.out.push_back(Item::Key(KeyRecord {
                head: seq.head,
                value: seq.acc.into_value(meta, insert),
            }));
        }
        self.state = State::Top;
        self.ctx = Context::default();
    }

    /// Checks an element without building it (skip-values mode).
    fn check_raw(&self, seq: &SeqState, chunk: &Bytes, base: u64, r: RawEl) -> Result<()> {
        let blob_err = |e: BlobError, s: SRef| blob_error(e, base, s);
        match r {
            RawEl::One(s) | RawEl::Scored(s, _) => self.check_sref(chunk, base, s),
            RawEl::Array(_, ArrRaw::Str(s) | ArrRaw::Short(s)) => self.check_sref(chunk, base, s),
            RawEl::Array(..) => Ok(()),
            RawEl::Two(f, v) | RawEl::Ttl(_, f, v) => {
                self.check_sref(chunk, base, f)?;
                self.check_sref(chunk, base, v)
            }
            RawEl::Node(container, s) => {
                let at = sref_at(s);
                let blob = self.mat_bytes(chunk, base, s)?;
                match (seq.kind, container) {
                    (SeqKind::Quicklist2, 1) => Ok(()),
                    (SeqKind::Quicklist2, 2) => encodings::listpack(&blob, |_| Ok(())),
                    (SeqKind::Quicklist1, _) => encodings::ziplist(&blob, |_| Ok(())),
                    _ => return Err(bad_container(container, base + at as u64)),
                }
                .map_err(|e| blob_err(e, s))
            }
            RawEl::Stream(id, lp_ref) => {
                let id = self.mat_bytes(chunk, base, id)?;
                let lp = self.mat_bytes(chunk, base, lp_ref)?;
                stream_node(&id, &lp, None).map_err(|e| blob_err(e, lp_ref))
            }
        }
    }

    /// What Redis refuses in a set, hash or sorted set element by element: a member seen
    /// before, a NaN score.
    fn check_member(
        &mut self,
        seq: &mut SeqState,
        chunk: &Bytes,
        base: u64,
        r: &RawEl,
    ) -> Result<()> {
        let (member, what) = match (seq.kind, r) {
            (SeqKind::Set, RawEl::One(m)) => (*m, "set"),
            (SeqKind::Zset1 | SeqKind::Zset2, RawEl::Scored(m, score)) => {
                if score.is_nan() {
                    return Err(Error::new(
                        ErrorKind::Corrupt {
                            what: "sorted set",
                            why: "NaN score".into(),
                        },
                        base + sref_at(*m) as u64,
                    ));
                }
                (*m, "sorted set")
            }
            (SeqKind::Hash | SeqKind::HashTtl(_) | SeqKind::ValkeyHash2, RawEl::Two(f, _))
            | (SeqKind::Hash | SeqKind::HashTtl(_) | SeqKind::ValkeyHash2, RawEl::Ttl(_, f, _)) => {
                (*f, "hash")
            }
            // a node's master ID is its key in the stream's radix tree
            (SeqKind::StreamNodes(_), RawEl::Stream(id, _)) => (*id, "stream node"),
            _ => return Ok(()),
        };
        let h = self.sref_hash(chunk, base, member)?;
        let dup = if seq.seen.set.len() < self.config.dup_check_limit {
            !seq.seen.set.insert(h)
        } else {
            // past the limit: still checked against the members remembered
            if !seq.seen.partial {
                seq.seen.partial = true;
                self.partial_checks += 1;
            }
            seq.seen.set.contains(&h)
        };
        if dup {
            return Err(Error::new(
                ErrorKind::Corrupt {
                    what,
                    why: format!(
                        "duplicate {} {}",
                        match what {
                            "hash" => "field",
                            "stream node" => "master ID",
                            _ => "member",
                        },
                        crate::error::Shown(&self.mat_bytes(chunk, base, member)?)
                    ),
                },
                base + sref_at(member) as u64,
            ));
        }
        Ok(())
    }

    /// The 128-bit hash of a string's text (integers as decimal, LZF decompressed and checked).
    fn sref_hash(&self, chunk: &Bytes, base: u64, r: SRef) -> Result<u128> {
        use xxhash_rust::xxh3::xxh3_128;
        Ok(match r {
            SRef::Raw(a, b) => xxh3_128(&chunk[a..b]),
            SRef::Int(i) => xxh3_128(itoa::Buffer::new().format(i).as_bytes()),
            SRef::Lzf(s, e, ulen) => {
                let mut scratch = self.scratch.take();
                scratch.clear();
                let ok = crate::lzf::decompress_into(&chunk[s..e], ulen as usize, &mut scratch);
                let h = xxh3_128(&scratch);
                self.scratch.set(scratch);
                ok.ok_or_else(|| Error::new(ErrorKind::Lzf { expected: ulen }, base + s as u64))?;
                h
            }
        })
    }

    /// Only LZF strings can be wrong once framed: decompress them (into a reused buffer) to
    /// be sure.
    fn check_sref(&self, chunk: &Bytes, base: u64, r: SRef) -> Result<()> {
        if let SRef::Lzf(s, e, ulen) = r {
            let mut scratch = self.scratch.take();
            scratch.clear();
            let ok = crate::lzf::decompress_into(&chunk[s..e], ulen as usize, &mut scratch);
            self.scratch.set(scratch);
            ok.ok_or_else(|| Error::new(ErrorKind::Lzf { expected: ulen }, base + s as u64))?;
        }
        Ok(())
    }

    fn push_raw(&self, seq: &mut SeqState, chunk: &Bytes, base: u64, r: RawEl) -> Result<()> {
        if self.config.skip_values {
            return self.check_raw(seq, chunk, base, r);
        }
        let blob_err = |e: BlobError, s: SRef| blob_error(e, base, s);
        match (&mut seq.acc, r) {
            (Acc::List(v) | Acc::Set(v), RawEl::One(s)) => v.push(self.mat(chunk, base, s)?),
            (Acc::Array(v), RawEl::Array(index, a)) => v.push(ArrayItem {
                index,
                value: match a {
                    ArrRaw::Str(s) => ArrayValue::String(self.mat_bytes(chunk, base, s)?),
                    ArrRaw::Short(s) => ArrayValue::Short(self.mat_bytes(chunk, base, s)?),
                    ArrRaw::Int(i) => ArrayValue::Int(i),
                    ArrRaw::Float(d) => ArrayValue::Float(d),
                },
            }),
            (Acc::Zset(v), RawEl::Scored(m, score)) => v.push((self.mat(chunk, base, m)?, score)),
            (Acc::Hash(v), RawEl::Two(f, val)) => v.push(HashField {
                field: self.mat(chunk, base, f)?,
                value: self.mat(chunk, base, val)?,
                expire_ms: None,
            }),
            (Acc::Hash(v), RawEl::Ttl(ttl, f, val)) => {
                let expire_ms = match seq.kind {
                    SeqKind::HashTtl(Some(min)) => (ttl != 0).then(|| ttl.saturating_add(min) - 1),
                    SeqKind::HashTtl(None) => (ttl != 0).then_some(ttl),
                    // Valkey HASH_2: the TTL is carried as an absolute time, u64::MAX = none
                    _ => (ttl != u64::MAX).then_some(ttl),
                };
                v.push(HashField {
                    field: self.mat(chunk, base, f)?,
                    value: self.mat(chunk, base, val)?,
                    expire_ms,
                });
            }
            (Acc::List(v), RawEl::Node(container, s)) => {
                let at = sref_at(s);
                let blob = self.mat_bytes(chunk, base, s)?;
                let push = |r: encodings::Raw| {
                    v.push(r.elem(&blob));
                    Ok(())
                };
                match (seq.kind, container) {
                    (SeqKind::Quicklist2, 1) => {
                        v.push(Elem::Bytes(blob.clone()));
                        Ok(())
                    }
                    (SeqKind::Quicklist2, 2) => encodings::listpack(&blob, push),
                    (SeqKind::Quicklist1, _) => encodings::ziplist(&blob, push),
                    _ => return Err(bad_container(container, base + at as u64)),
                }
                .map_err(|e| blob_err(e, s))?;
            }
            (Acc::Stream(v), RawEl::Stream(id, lp_ref)) => {
                let id = self.mat_bytes(chunk, base, id)?;
                let lp = self.mat_bytes(chunk, base, lp_ref)?;
                stream_node(&id, &lp, Some(v)).map_err(|e| blob_err(e, lp_ref))?;
            }
            _ => unreachable!("raw element kind always matches the accumulator"),
        }
        Ok(())
    }

    fn step_stream_tail<S: Source>(&mut self, src: &mut S, seq: Box<SeqState>) -> Result<bool> {
        self.expect = "stream metadata";
        let SeqKind::StreamNodes(ty) = seq.kind else {
            unreachable!("only streams have a tail")
        };
        let start = self.pos;
        let b = src.bytes();
        let mut c = Cur::new(b, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        match stream_tail(&mut c, ty) {
            Ok(raw) => {
                if raw.meta.length > 0 && seq.total == 0 {
                    return Err(self.err(
                        stream_corrupt(format!(
                            "length {} with no listpack of entries",
                            raw.meta.length
                        )),
                        0,
                    ));
                }
                let chunk = self.consume(src, c.p);
                let meta = raw.materialize(self, &chunk, start)?;
                self.finish_seq(seq, Some(meta));
                Ok(true)
            }
            Err(s) => {
                self.state = State::StreamTail(seq);
                self.stop_err(s)
            }
        }
    }
}

fn sref_at(s: SRef) -> usize {
    match s {
        SRef::Raw(a, _) | SRef::Lzf(a, _, _) => a,
        SRef::Int(_) => 0,
    }
}

/// An error inside a blob stored at `s` in a unit that starts at `base`: the file offset of
/// the faulty byte, or for an LZF-compressed blob the offset of the compressed data with the
/// position inside the decompressed bytes in the message.
fn blob_error(e: BlobError, base: u64, s: SRef) -> Error {
    let (at, why) = match s {
        SRef::Lzf(a, _, _) => (
            base + a as u64,
            format!("{} (at byte {} of the decompressed blob)", e.why, e.pos),
        ),
        SRef::Raw(a, _) => (base + (a + e.pos) as u64, e.why),
        SRef::Int(_) => (base, e.why),
    };
    Error::new(ErrorKind::Corrupt { what: e.what, why }, at)
}

fn bad_container(container: u64, at: u64) -> Error {
    Error::new(
        ErrorKind::Corrupt {
            what: "quicklist node",
            why: format!("unknown container type {container}"),
        },
        at,
    )
}

fn valkey_hash2_field(c: &mut Cur<'_>) -> P<RawEl> {
    // Valkey 9 HASH_2: field, value, then the field's absolute expiry in ms as 8 bytes LE,
    // -1 for none (seen in files Valkey 9.0 and 9.1 write; see docs/format-notes.md).
    let f = c.string()?;
    let v = c.string()?;
    let ttl = c.u64_le()?;
    Ok(RawEl::Ttl(ttl, f, v))
}

fn array_corrupt(why: String) -> ErrorKind {
    ErrorKind::Corrupt { what: "array", why }
}

/// The longest tag-3 (short string) element a 64-bit Redis writes or loads.
const ARRAY_SHORT_MAX: u64 = 7;

fn array_elem(c: &mut Cur<'_>) -> P<RawEl> {
    let at = c.p;
    let index = c.len()?;
    if index == u64::MAX {
        return c.bad(array_corrupt("index 2^64-1 is reserved".into()), at);
    }
    let at = c.p;
    let value = match c.len()? {
        0 => ArrRaw::Str(c.string()?),
        1 => ArrRaw::Int(i64::from_le_bytes(c.array()?)),
        2 => ArrRaw::Float(f64::from_le_bytes(c.array()?)),
        3 => {
            let s = c.string()?;
            let n = match s {
                SRef::Raw(a, b) => (b - a) as u64,
                SRef::Int(i) => itoa::Buffer::new().format(i).len() as u64,
                SRef::Lzf(_, _, ulen) => ulen,
            };
            if n > ARRAY_SHORT_MAX {
                return c.bad(
                    array_corrupt(format!(
                        "short-string element of {n} bytes (at most {ARRAY_SHORT_MAX})"
                    )),
                    at,
                );
            }
            ArrRaw::Short(s)
        }
        tag => return c.bad(array_corrupt(format!("unknown element tag {tag}")), at),
    };
    Ok(RawEl::Array(index, value))
}

/// One class of a KEY_META block as found in the input.
struct RawMeta {
    spec: u32,
    items: Vec<RawModuleItem>,
}

enum RawModuleItem {
    Uint(u64),
    Sint(u64),
    Float(f32),
    Double(f64),
    Str(SRef),
}

/// The most classes a KEY_META block may hold (Redis refuses more).
const KEY_META_MAX_CLASSES: u64 = 7;

/// A KEY_META block after its opcode: class count, then per class its spec and items.
fn key_meta_block(c: &mut Cur<'_>) -> P<Vec<RawMeta>> {
    let at = c.p;
    let n = c.len()?;
    if n > KEY_META_MAX_CLASSES {
        return c.bad(
            ErrorKind::Corrupt {
                what: "key metadata",
                why: format!("{n} classes (at most {KEY_META_MAX_CLASSES})"),
            },
            at,
        );
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let spec = u32::from_le_bytes(c.array()?);
        let mut items = Vec::new();
        loop {
            let at = c.p;
            items.push(match c.len()? {
                0 => break,
                1 => RawModuleItem::Sint(c.len()?),
                2 => RawModuleItem::Uint(c.len()?),
                3 => RawModuleItem::Float(f32::from_le_bytes(c.array()?)),
                4 => RawModuleItem::Double(f64::from_le_bytes(c.array()?)),
                5 => RawModuleItem::Str(c.string()?),
                op => {
                    return c.bad(
                        ErrorKind::Corrupt {
                            what: "key metadata",
                            why: format!("unknown module opcode {op}"),
                        },
                        at,
                    );
                }
            });
        }
        out.push(RawMeta { spec, items });
    }
    Ok(out)
}

/// The length of the KEY_META block (after its opcode) at the start of `b`, for DUMP payloads.
pub(crate) fn key_meta_len(b: &[u8]) -> std::result::Result<usize, (ErrorKind, usize)> {
    let mut c = Cur::new(b, u64::MAX);
    match key_meta_block(&mut c) {
        Ok(_) => Ok(c.p),
        Err(Stop::More) => Err((
            ErrorKind::Truncated {
                what: "key metadata",
            },
            b.len(),
        )),
        Err(Stop::Bad(kind, at)) => Err((kind, at)),
    }
}

fn skip_module_body(c: &mut Cur<'_>) -> P<()> {
    loop {
        let at = c.p;
        match c.len()? {
            0 => return Ok(()),
            1 | 2 => {
                c.len()?;
            }
            3 => {
                c.take(4)?;
            }
            4 => {
                c.take(8)?;
            }
            5 => {
                c.string()?;
            }
            op => {
                return c.bad(
                    ErrorKind::Corrupt {
                        what: "module value",
                        why: format!("unknown module opcode {op}"),
                    },
                    at,
                );
            }
        }
    }
}

fn type_info(ty: u8, flavor: Flavor) -> (ValueType, Encoding) {
    use Encoding as E;
    use ValueType as T;
    match ty {
        0 => (T::String, E::Raw),
        1 => (T::List, E::LinkedList),
        2 => (T::Set, E::Hashtable),
        3 | 5 => (T::SortedSet, E::Skiplist),
        4 => (T::Hash, E::Hashtable),
        6 | 7 => (T::Module, E::Module),
        9 => (T::Hash, E::Zipmap),
        10 => (T::List, E::Ziplist),
        11 => (T::Set, E::Intset),
        12 => (T::SortedSet, E::Ziplist),
        13 => (T::Hash, E::Ziplist),
        14 | 18 => (T::List, E::Quicklist),
        15 | 19 | 21 | 26 | 27 => (T::Stream, E::Listpacks),
        28 => (T::Array, E::SlicedArray),
        16 => (T::Hash, E::Listpack),
        17 => (T::SortedSet, E::Listpack),
        20 => (T::Set, E::Listpack),
        22 if flavor == Flavor::Valkey => (T::Hash, E::Hashtable),
        22 | 24 => (T::Hash, E::Hashtable),
        23 | 25 => (T::Hash, E::Listpack),
        _ => (T::String, E::Raw),
    }
}

/// A human name for a type byte, for error messages.
pub fn type_name(ty: u8, flavor: Flavor) -> &'static str {
    match ty {
        0 => "string",
        1 => "list (linked list)",
        2 => "set (hashtable)",
        3 => "zset (text scores)",
        4 => "hash (hashtable)",
        5 => "zset (binary scores)",
        6 => "module (pre-GA)",
        7 => "module",
        9 => "hash (zipmap)",
        10 => "list (ziplist)",
        11 => "set (intset)",
        12 => "zset (ziplist)",
        13 => "hash (ziplist)",
        14 => "list (quicklist)",
        15 => "stream (v1)",
        16 => "hash (listpack)",
        17 => "zset (listpack)",
        18 => "list (quicklist v2)",
        19 => "stream (v2)",
        20 => "set (listpack)",
        21 => "stream (v3)",
        22 if flavor == Flavor::Valkey => "hash (Valkey HASH_2)",
        22 => "hash with field TTLs (7.4 RC)",
        23 if flavor == Flavor::Valkey => "hash (Valkey PATH_HASH)",
        23 => "hash listpack with field TTLs (7.4 RC)",
        24 => "hash with field TTLs",
        25 => "hash listpack with field TTLs",
        26 => "stream (v4)",
        27 => "stream (v5)",
        28 => "array",
        _ => "unknown type",
    }
}

/// Walks a blob-encoded value and checks its shape; builds the value when `build`.
/// Buffers reused from one blob to the next.
#[derive(Debug, Default)]
struct BlobScratch {
    raws: Vec<encodings::Raw>,
    /// (64-bit hash of a member's text, its index): sorted to find duplicates.
    hashes: Vec<(u64, u32)>,
}

/// The text of a blob element (integers formatted into `buf`).
fn raw_text<'a>(r: encodings::Raw, blob: &'a [u8], buf: &'a mut itoa::Buffer) -> &'a [u8] {
    match r {
        encodings::Raw::Range(a, e) => &blob[a..e],
        encodings::Raw::Int(i) => buf.format(i).as_bytes(),
    }
}

fn decode_blob(
    ty: u8,
    blob: &Bytes,
    build: bool,
    scratch: &mut BlobScratch,
) -> Result<Option<Value>, BlobError> {
    let BlobScratch { raws, hashes } = scratch;
    raws.clear();
    let push = |e| {
        raws.push(e);
        Ok(())
    };
    match ty {
        9 => encodings::zipmap(blob, |f, v| {
            raws.push(f);
            raws.push(v);
            Ok(())
        })?,
        10 | 12 | 13 => encodings::ziplist(blob, push)?,
        11 => encodings::intset(blob, push)?,
        _ => encodings::listpack(blob, push)?,
    }
    let bad = |why: &str| BlobError {
        what: "element list",
        why: why.into(),
        pos: 0,
    };
    let per = match ty {
        9 | 12 | 13 | 16 | 17 => 2,
        23 | 25 => 3,
        _ => 1,
    };
    if raws.len() % per != 0 {
        return Err(bad(match per {
            2 => "odd number of elements in a map or sorted set",
            _ => "hash listpack with TTLs is not made of triples",
        }));
    }
    // members of sets, fields of hashes and members of sorted sets are unique (Redis checks
    // them in every encoding); an intset checked its own order already
    if ty != 10 && ty != 11 && raws.len() > per {
        // hash every member's text, sort, and compare the texts of equal neighbours: no set
        // to allocate for the small collections these encodings hold
        hashes.clear();
        let mut text = itoa::Buffer::new();
        for (i, r) in raws.iter().step_by(per).enumerate() {
            let h = xxhash_rust::xxh3::xxh3_64(raw_text(*r, blob, &mut text));
            hashes.push((h, i as u32));
        }
        hashes.sort_unstable();
        let mut other = itoa::Buffer::new();
        // within a run of equal hashes, every pair (a 64-bit collision of two texts is not
        // a duplicate; such runs are almost always two long)
        let pairs = hashes.chunk_by(|x, y| x.0 == y.0).flat_map(|run| {
            (0..run.len()).flat_map(move |i| (i + 1..run.len()).map(move |j| (run[i].1, run[j].1)))
        });
        for (i, j) in pairs {
            let (a, b) = (raws[i as usize * per], raws[j as usize * per]);
            let b_text = raw_text(b, blob, &mut other);
            if raw_text(a, blob, &mut text) == b_text {
                let at = match b {
                    encodings::Raw::Range(s, _) => s,
                    encodings::Raw::Int(_) => 0,
                };
                return Err(BlobError {
                    what: match ty {
                        12 | 17 => "sorted set",
                        20 => "set",
                        _ => "hash",
                    },
                    why: format!(
                        "duplicate {} {}",
                        if matches!(ty, 12 | 17 | 20) {
                            "member"
                        } else {
                            "field"
                        },
                        crate::error::Shown(b_text)
                    ),
                    pos: at,
                });
            }
        }
    }
    let score = |r: encodings::Raw| -> Result<f64, BlobError> {
        match r {
            encodings::Raw::Int(i) => Ok(i as f64),
            r => std::str::from_utf8(r.bytes(blob))
                .ok()
                .and_then(crate::cursor::parse_double)
                .ok_or_else(|| bad("score is not a number")),
        }
    };
    let ttl = |r: encodings::Raw| -> Result<Option<u64>, BlobError> {
        let t = r
            .as_int(blob)
            .ok_or_else(|| bad("field TTL is not an integer"))?;
        Ok((t != 0).then_some(t as u64))
    };
    if !build {
        for c in raws.chunks_exact(per) {
            match ty {
                12 | 17 => {
                    score(c[1])?;
                }
                23 | 25 => {
                    ttl(c[2])?;
                }
                _ => {}
            }
        }
        return Ok(None);
    }
    let el = |r: encodings::Raw| r.elem(blob);
    Ok(Some(match ty {
        10 => Value::List(raws.iter().copied().map(el).collect()),
        11 | 20 => Value::Set(raws.iter().copied().map(el).collect()),
        12 | 17 => Value::SortedSet(
            raws.chunks_exact(2)
                .map(|c| Ok((el(c[0]), score(c[1])?)))
                .collect::<Result<_, BlobError>>()?,
        ),
        9 | 13 | 16 => Value::Hash(
            raws.chunks_exact(2)
                .map(|c| HashField {
                    field: el(c[0]),
                    value: el(c[1]),
                    expire_ms: None,
                })
                .collect(),
        ),
        23 | 25 => Value::Hash(
            raws.chunks_exact(3)
                .map(|c| {
                    Ok(HashField {
                        field: el(c[0]),
                        value: el(c[1]),
                        expire_ms: ttl(c[2])?,
                    })
                })
                .collect::<Result<_, BlobError>>()?,
        ),
        _ => unreachable!("decode_blob is only called for blob types"),
    }))
}

fn stream_id(b: &[u8]) -> Result<StreamId, BlobError> {
    if b.len() != 16 {
        return Err(BlobError {
            what: "stream node",
            why: format!("master ID is {} bytes, expected 16", b.len()),
            pos: 0,
        });
    }
    let ms = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
    let seq = u64::from_be_bytes(b[8..].try_into().unwrap_or_default());
    Ok(StreamId { ms, seq })
}

/// Decodes one stream listpack node, checking its shape; its live entries are appended to
/// `out` when given.
fn stream_node(
    id: &[u8],
    lp: &Bytes,
    mut out: Option<&mut Vec<StreamEntry>>,
) -> Result<(), BlobError> {
    let master = stream_id(id)?;
    let mut raws = Vec::new();
    encodings::listpack(lp, |e| {
        raws.push(e);
        Ok(())
    })?;
    let bad = |why: String| BlobError {
        what: "stream node",
        why,
        pos: 0,
    };
    let mut it = raws.into_iter();
    let int = |it: &mut std::vec::IntoIter<encodings::Raw>, what: &str| -> Result<i64, BlobError> {
        it.next()
            .and_then(|e| e.as_int(lp))
            .ok_or_else(|| bad(format!("missing or non-integer {what}")))
    };
    let next = |it: &mut std::vec::IntoIter<encodings::Raw>, what: &str| {
        it.next().ok_or_else(|| bad(format!("missing {what}")))
    };
    if it.len() == 0 {
        return Err(bad("an empty listpack in a stream".into()));
    }
    // as Redis' streamValidateListpackIntegrity: exactly count + deleted entries, each with
    // the lp-count its fields give, and nothing after them
    let count = int(&mut it, "entry count")?;
    let deleted = int(&mut it, "deleted count")?;
    let entries = count
        .checked_add(deleted)
        .filter(|n| *n >= 0 && count >= 0 && deleted >= 0)
        .ok_or_else(|| bad(format!("bad entry counts {count} live, {deleted} deleted")))?;
    let nfields = int(&mut it, "master field count")?;
    if nfields < 0 || nfields as usize > lp.len() {
        return Err(bad(format!("bad master field count {nfields}")));
    }
    let mut master_fields = Vec::with_capacity(nfields as usize);
    for _ in 0..nfields {
        master_fields.push(next(&mut it, "master field")?);
    }
    if int(&mut it, "master terminator")? != 0 {
        return Err(bad("master entry is not terminated by 0".into()));
    }
    for _ in 0..entries {
        let flags = int(&mut it, "entry flags")?;
        let ms = int(&mut it, "entry ID ms")? as u64;
        let seq = int(&mut it, "entry ID seq")? as u64;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms),
            seq: master.seq.wrapping_add(seq),
        };
        let mut pairs = Vec::new();
        // the entry's own elements: flags, the two ID parts, values (and field names + count)
        let mut lp_count_want = nfields + 3;
        if flags & 2 != 0 {
            for f in &master_fields {
                pairs.push((*f, next(&mut it, "value")?));
            }
        } else {
            let n = int(&mut it, "field count")?;
            if n < 0 || n as usize > lp.len() {
                return Err(bad(format!("bad field count {n}")));
            }
            for _ in 0..n {
                let f = next(&mut it, "field")?;
                pairs.push((f, next(&mut it, "value")?));
            }
            lp_count_want = 2 * n + 4;
        }
        let lp_count = int(&mut it, "entry lp-count")?;
        if lp_count != lp_count_want {
            return Err(bad(format!(
                "entry {id} has lp-count {lp_count}, its fields make {lp_count_want}"
            )));
        }
        if let (Some(out), 0) = (out.as_deref_mut(), flags & 1) {
            let fields = pairs
                .into_iter()
                .map(|(f, v)| (f.elem(lp), v.elem(lp)))
                .collect();
            out.push(StreamEntry { id, fields });
        }
    }
    if it.len() > 0 {
        return Err(bad(format!(
            "{} elements after the {entries} entries its counts announce",
            it.len()
        )));
    }
    Ok(())
}

struct RawGroup {
    name: SRef,
    last_id: StreamId,
    entries_read: Option<u64>,
    pel: Vec<(StreamId, u64, u64)>,
    consumers: Vec<RawConsumer>,
    nacked: Option<Vec<StreamId>>,
}

struct RawConsumer {
    name: SRef,
    seen: u64,
    active: Option<u64>,
    pel: Vec<StreamId>,
}

struct RawTail {
    meta: StreamMeta,
    groups: Vec<RawGroup>,
    idmp: Option<RawIdmp>,
}

struct RawIdmp {
    duration_s: u64,
    max_entries: u64,
    producers: Vec<(SRef, Vec<(SRef, StreamId)>)>,
    iids_added: u64,
    iids_duplicates: u64,
}

fn stream_corrupt(why: String) -> ErrorKind {
    ErrorKind::Corrupt {
        what: "stream",
        why,
    }
}

/// The IDMP section of a type 26/27 stream.
fn stream_idmp(c: &mut Cur<'_>) -> P<RawIdmp> {
    let at = c.p;
    let duration_s = c.len()?;
    if !(1..=86_400).contains(&duration_s) {
        return c.bad(
            stream_corrupt(format!("IDMP duration {duration_s} s is outside 1..86400")),
            at,
        );
    }
    let at = c.p;
    let max_entries = c.len()?;
    if !(1..=10_000).contains(&max_entries) {
        return c.bad(
            stream_corrupt(format!(
                "IDMP max entries {max_entries} is outside 1..10000"
            )),
            at,
        );
    }
    let n = c.len()?;
    let mut producers = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        let at = c.p;
        let pid = c.string()?;
        if matches!(pid, SRef::Raw(a, b) if a == b) {
            return c.bad(stream_corrupt("empty IDMP producer ID".into()), at);
        }
        let k = c.len()?;
        let mut entries = Vec::with_capacity(k.min(1024) as usize);
        for _ in 0..k {
            let iid = c.string()?;
            entries.push((iid, len_id(c)?));
        }
        producers.push((pid, entries));
    }
    Ok(RawIdmp {
        duration_s,
        max_entries,
        producers,
        iids_added: c.len()?,
        iids_duplicates: c.len()?,
    })
}

fn raw_id(c: &mut Cur<'_>) -> P<StreamId> {
    let b: [u8; 16] = c.array()?;
    Ok(StreamId {
        ms: u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
        seq: u64::from_be_bytes(b[8..].try_into().unwrap_or_default()),
    })
}

fn len_id(c: &mut Cur<'_>) -> P<StreamId> {
    Ok(StreamId {
        ms: c.len()?,
        seq: c.len()?,
    })
}

fn stream_tail(c: &mut Cur<'_>, ty: u8) -> P<RawTail> {
    let mut meta = StreamMeta {
        length: c.len()?,
        last_id: len_id(c)?,
        ..StreamMeta::default()
    };
    if ty >= 19 {
        meta.first_id = Some(len_id(c)?);
        meta.max_deleted_id = Some(len_id(c)?);
        meta.entries_added = Some(c.len()?);
    }
    let ngroups = c.len()?;
    let mut groups = Vec::with_capacity(ngroups.min(64) as usize);
    for _ in 0..ngroups {
        let name = c.string()?;
        let last_id = len_id(c)?;
        // u64::MAX is Redis' "unknown" (SCG_INVALID_ENTRIES_READ)
        let entries_read = if ty >= 19 {
            Some(c.len()?).filter(|n| *n != u64::MAX)
        } else {
            None
        };
        let npel = c.len()?;
        let mut pel = Vec::with_capacity(npel.min(1024) as usize);
        for _ in 0..npel {
            let id = raw_id(c)?;
            let time = c.u64_le()?;
            let count = c.len()?;
            pel.push((id, time, count));
        }
        let ncons = c.len()?;
        let mut consumers = Vec::with_capacity(ncons.min(64) as usize);
        for _ in 0..ncons {
            let name = c.string()?;
            let seen = c.u64_le()?;
            let active = if ty >= 21 { Some(c.u64_le()?) } else { None };
            let n = c.len()?;
            let mut ids = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                ids.push(raw_id(c)?);
            }
            consumers.push(RawConsumer {
                name,
                seen,
                active,
                pel: ids,
            });
        }
        let nacked = if ty >= 27 {
            let n = c.len()?;
            let mut ids = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                ids.push(raw_id(c)?);
            }
            Some(ids)
        } else {
            None
        };
        groups.push(RawGroup {
            name,
            last_id,
            entries_read,
            pel,
            consumers,
            nacked,
        });
    }
    let idmp = if ty >= 26 {
        Some(stream_idmp(c)?)
    } else {
        None
    };
    Ok(RawTail { meta, groups, idmp })
}

impl RawTail {
    fn materialize(self, dec: &Decoder, chunk: &Bytes, base: u64) -> Result<StreamMeta> {
        use std::collections::{HashMap, HashSet};
        let bad = |why: String| Err(Error::new(stream_corrupt(why), base));
        let mut meta = self.meta;
        let mut names = HashSet::new();
        for g in self.groups {
            let gname = dec.mat_bytes(chunk, base, g.name)?;
            if !names.insert(gname.clone()) {
                return bad(format!(
                    "consumer group {} twice",
                    crate::error::Shown(&gname)
                ));
            }
            let mut in_pel = HashSet::with_capacity(g.pel.len());
            for p in &g.pel {
                if !in_pel.insert(p.0) {
                    return bad(format!("entry {} twice in a group's pending list", p.0));
                }
            }
            let mut consumers = Vec::with_capacity(g.consumers.len());
            let mut owner = HashMap::new();
            let mut cnames = HashSet::new();
            for c in g.consumers {
                let name = dec.mat_bytes(chunk, base, c.name)?;
                if !cnames.insert(name.clone()) {
                    return bad(format!("consumer {} twice", crate::error::Shown(&name)));
                }
                let mut mine = HashSet::with_capacity(c.pel.len());
                for id in &c.pel {
                    if !in_pel.contains(id) {
                        return bad(format!(
                            "consumer {} has entry {id} pending, the group does not",
                            crate::error::Shown(&name)
                        ));
                    }
                    if !mine.insert(*id) {
                        return bad(format!("entry {id} twice in a consumer's pending list"));
                    }
                    owner.insert(*id, name.clone());
                }
                consumers.push(Consumer {
                    name,
                    seen_time_ms: c.seen,
                    active_time_ms: c.active,
                    pending: c.pel,
                });
            }
            if let Some(nacked) = &g.nacked {
                // the NACK zone lists unowned entries of the group PEL, and only those
                for id in nacked {
                    let why = if !in_pel.contains(id) {
                        "is not in the group's pending list"
                    } else if owner.contains_key(id) {
                        "is owned by a consumer"
                    } else {
                        continue;
                    };
                    return bad(format!("NACK-zone entry {id} {why}"));
                }
            }
            // every pending entry has an owner (in RDB 14, or is in the NACK zone)
            let released: HashSet<StreamId> = g.nacked.iter().flatten().copied().collect();
            if let Some(p) = g
                .pel
                .iter()
                .find(|p| !owner.contains_key(&p.0) && !released.contains(&p.0))
            {
                return bad(format!("pending entry {} has no consumer", p.0));
            }
            let pending = g
                .pel
                .into_iter()
                .map(|(id, t, n)| PendingEntry {
                    id,
                    consumer: owner.get(&id).cloned(),
                    delivery_time_ms: t,
                    delivery_count: n,
                })
                .collect();
            meta.groups.push(ConsumerGroup {
                name: gname,
                last_id: g.last_id,
                entries_read: g.entries_read,
                pending,
                consumers,
                nacked: g.nacked,
            });
        }
        if let Some(raw) = self.idmp {
            let mut producers = Vec::with_capacity(raw.producers.len());
            for (pid, entries) in raw.producers {
                producers.push(IdmpProducer {
                    id: dec.mat_bytes(chunk, base, pid)?,
                    entries: entries
                        .into_iter()
                        .map(|(iid, id)| {
                            Ok(IdmpEntry {
                                iid: dec.mat_bytes(chunk, base, iid)?,
                                id,
                            })
                        })
                        .collect::<Result<_>>()?,
                });
            }
            meta.idmp = Some(StreamIdmp {
                duration_s: raw.duration_s,
                max_entries: raw.max_entries,
                producers,
                iids_added: raw.iids_added,
                iids_duplicates: raw.iids_duplicates,
            });
        }
        Ok(meta)
    }
}
