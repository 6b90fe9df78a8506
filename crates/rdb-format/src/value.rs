//! The data model: values as Redis sees them, independent of their on-disk encoding.

use std::fmt;

use bytes::Bytes;

/// One string element: raw bytes, or an integer as stored in an intset, ziplist or listpack.
///
/// Integers stay integers until someone asks for text, which saves formatting work for
/// consumers that only count or check.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Elem {
    /// Bytes (usually a zero-copy slice of the input).
    Bytes(Bytes),
    /// An integer-encoded element.
    Int(i64),
}

impl Elem {
    /// The element as bytes (integers formatted as decimal text).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Self::Bytes(b) => b.clone(),
            Self::Int(i) => Bytes::from(i.to_string()),
        }
    }

    /// Calls `f` with the element's bytes without allocating for integers.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Self::Bytes(b) => f(b),
            Self::Int(i) => f(itoa::Buffer::new().format(*i).as_bytes()),
        }
    }

    /// Length of the element's text form in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Int(i) => itoa::Buffer::new().format(*i).len(),
        }
    }

    /// True for an empty byte string.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Bytes(b) if b.is_empty())
    }

    /// Parses the element as a signed 64-bit integer, as Redis' `string2ll` does.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        }
    }
}

impl fmt::Debug for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Self::Int(i) => write!(f, "{i}"),
        }
    }
}

impl From<&'static str> for Elem {
    fn from(s: &'static str) -> Self {
        Self::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Bytes> for Elem {
    fn from(b: Bytes) -> Self {
        Self::Bytes(b)
    }
}

impl From<i64> for Elem {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

/// A hash field with its value and optional absolute expiry (unix ms, hash field TTLs).
#[derive(Debug, Clone, PartialEq)]
pub struct HashField {
    /// The field name.
    pub field: Elem,
    /// The value.
    pub value: Elem,
    /// Absolute expiry in unix milliseconds, when the field has one (RDB 12, Valkey 9).
    pub expire_ms: Option<u64>,
}

/// A stream entry ID (`ms-seq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One stream entry: its ID and field/value pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    /// The entry ID.
    pub id: StreamId,
    /// Field/value pairs in order.
    pub fields: Vec<(Elem, Elem)>,
}

/// A pending entry of a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    /// The entry ID.
    pub id: StreamId,
    /// The consumer owning it (found through the consumers' own PEL lists).
    pub consumer: Option<Bytes>,
    /// Last delivery time, unix ms.
    pub delivery_time_ms: u64,
    /// Number of deliveries.
    pub delivery_count: u64,
}

/// A consumer of a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    /// Consumer name.
    pub name: Bytes,
    /// Last time it was seen, unix ms.
    pub seen_time_ms: u64,
    /// Last time it was active (RDB 11 streams and newer).
    pub active_time_ms: Option<u64>,
    /// IDs of the entries pending for this consumer.
    pub pending: Vec<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroup {
    /// Group name.
    pub name: Bytes,
    /// Last delivered ID.
    pub last_id: StreamId,
    /// Logical read counter (RDB 10 streams and newer).
    pub entries_read: Option<u64>,
    /// The group's pending entries list.
    pub pending: Vec<PendingEntry>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
    /// The NACK zone (RDB 14 streams, Redis 8.8 `XNACK`): pending entries released back to
    /// the group, owned by no consumer, in the group's time order. `None` before RDB 14.
    pub nacked: Option<Vec<StreamId>>,
}

/// Stream metadata that follows the entries in the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamMeta {
    /// Number of (live) entries.
    pub length: u64,
    /// Last generated ID.
    pub last_id: StreamId,
    /// First entry ID (RDB 10 streams and newer).
    pub first_id: Option<StreamId>,
    /// Largest deleted ID (RDB 10 streams and newer).
    pub max_deleted_id: Option<StreamId>,
    /// Count of all entries ever added (RDB 10 streams and newer).
    pub entries_added: Option<u64>,
    /// Consumer groups.
    pub groups: Vec<ConsumerGroup>,
    /// Idempotent-producer state (RDB 13 streams and newer, Redis 8.6 IDMP).
    pub idmp: Option<StreamIdmp>,
}

/// The idempotent-producer (IDMP) state of a stream (Redis 8.6, RDB 13).
///
/// ```
/// let idmp = rdb_format::StreamIdmp::default();
/// assert!(idmp.is_default());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIdmp {
    /// How long an IID is remembered, in seconds (`XCFGSET … IDMP-DURATION`).
    pub duration_s: u64,
    /// How many IIDs a producer keeps at most (`XCFGSET … IDMP-MAXSIZE`).
    pub max_entries: u64,
    /// Producers in file order (Redis writes them in byte order of their IDs).
    pub producers: Vec<IdmpProducer>,
    /// All-time count of IIDs added.
    pub iids_added: u64,
    /// All-time count of duplicate IIDs seen.
    pub iids_duplicates: u64,
}

impl Default for StreamIdmp {
    /// What Redis 8.6 writes for a stream that never used IDMP.
    fn default() -> Self {
        Self {
            duration_s: 100,
            max_entries: 100,
            producers: Vec::new(),
            iids_added: 0,
            iids_duplicates: 0,
        }
    }
}

impl StreamIdmp {
    /// True when the state is what a stream that never used IDMP has: dropping it loses
    /// nothing.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One idempotent producer of a stream and the IIDs it still remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmpProducer {
    /// The producer ID.
    pub id: Bytes,
    /// Remembered IIDs in insertion order.
    pub entries: Vec<IdmpEntry>,
}

/// An idempotent ID and the entry it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmpEntry {
    /// The IID (binary; `IDMPAUTO` makes 16-byte hashes).
    pub iid: Bytes,
    /// The stream entry it produced.
    pub id: StreamId,
}

/// One element of an array value, with the form the server stored it in.
///
/// Every element is a string to a client; the form only decides how the server keeps it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ArrayValue {
    /// Bytes (tag 0).
    String(Bytes),
    /// An integer (tag 1).
    Int(i64),
    /// A double whose text the server reproduces exactly (tag 2).
    Float(f64),
    /// A short string kept inline (tag 3: at most 7 bytes on 64-bit servers).
    Short(Bytes),
}

impl ArrayValue {
    /// The element as `ARGET` returns it: integers in decimal, doubles as Redis prints them
    /// (shortest round-trip text, `.0` added to integral values), strings as they are.
    ///
    /// ```
    /// use rdb_format::ArrayValue;
    /// assert_eq!(ArrayValue::Float(1.0).to_bytes(), "1.0");
    /// assert_eq!(ArrayValue::Float(3.25).to_bytes(), "3.25");
    /// assert_eq!(ArrayValue::Int(-7).to_bytes(), "-7");
    /// ```
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Self::String(b) | Self::Short(b) => b.clone(),
            Self::Int(i) => Bytes::from(itoa::Buffer::new().format(*i).to_owned()),
            Self::Float(d) => Bytes::from(array_float_text(*d)),
        }
    }
}

/// Redis' text for an array double (`d2string`, then `.0` when the text has no `.`, `e` or
/// `E`): integral values up to 2^62 as integers, others as the shortest round-trip digits laid
/// out as Redis' `fpconv_dtoa` lays them out.
pub(crate) fn array_float_text(d: f64) -> String {
    if !d.is_finite() {
        return if d.is_nan() {
            "nan".into()
        } else if d > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let mut s = if d == d.trunc() && d.abs() <= (i64::MAX / 2) as f64 {
        // `double2ll` succeeds: `ll2string` (and "-0" for negative zero)
        if d == 0.0 && d.is_sign_negative() {
            "-0".to_owned()
        } else {
            (d as i64).to_string()
        }
    } else {
        fpconv_text(d)
    };
    if !s.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        s.push_str(".0");
    }
    s
}

/// The layout rules of Redis' `fpconv_dtoa` (`emit_digits`) over the shortest digits.
fn fpconv_text(d: f64) -> String {
    let mut buf = ryu::Buffer::new();
    let t = buf.format_finite(d.abs());
    let (mant, exp) = match t.find('e') {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().unwrap_or(0)),
        None => (t, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let mut digits: Vec<u8> = int
        .bytes()
        .chain(frac.bytes())
        .skip_while(|&c| c == b'0')
        .collect();
    let mut k = exp - frac.len() as i32;
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
        k += 1;
    }
    let n = digits.len() as i32;
    let e = (k + n - 1).abs();
    let mut out = String::new();
    if d < 0.0 {
        out.push('-');
    }
    let digits = String::from_utf8(digits).unwrap_or_default();
    if k >= 0 && e < n + 7 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', k as usize));
    } else if k < 0 && (k > -7 || e < 4) {
        let offset = n + k;
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-offset) as usize));
            out.push_str(&digits);
        } else {
            out.push_str(&digits[..offset as usize]);
            out.push('.');
            out.push_str(&digits[offset as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if k + n - 1 < 0 { '-' } else { '+' });
        out.push_str(&e.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::array_float_text as t;

    #[test]
    fn array_floats_print_as_redis_prints_them() {
        for (d, want) in [
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (3.25, "3.25"),
            (0.1, "0.1"),
            (-0.5, "-0.5"),
            (-0.0, "-0.0"),
            (1234.5, "1234.5"),
            (999_999.0, "999999.0"),
            (1.234_567_890_12, "1.23456789012"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000_123, "0.000123"),
            (1e20, "1e+20"),
            (5e18, "5e+18"),
            (4e18, "4000000000000000000.0"),
            (1e30, "1e+30"),
            (1.5e300, "1.5e+300"),
            (123_456.789e10, "1234567890000000.0"),
        ] {
            assert_eq!(t(d), want, "{d:e}");
            // and the text reads back to the same double
            assert_eq!(t(d).parse::<f64>().unwrap().to_bits(), d.to_bits(), "{d:e}");
        }
    }
}

/// One stored element of an array value.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayItem {
    /// Its index.
    pub index: u64,
    /// Its value.
    pub value: ArrayValue,
}

/// An array value (Redis 8.8, RDB 14): a sparse map from 64-bit indices to strings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Array {
    /// Stored elements in file order (ascending index when Redis wrote the file).
    pub items: Vec<ArrayItem>,
    /// The index last written by `ARINSERT`/`ARRING` (`ARINFO`'s next-insert-index minus 1).
    pub insert_index: Option<u64>,
}

impl Array {
    /// `ARINFO`'s `next-insert-index`: 0 when the array has no insert index.
    pub fn next_insert_index(&self) -> u64 {
        self.insert_index.map_or(0, |i| i.wrapping_add(1))
    }
}

/// One item of a module-annotated value (key metadata, module values): what the module's
/// `rdb_save` wrote, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ModuleItem {
    /// `RM_SaveUnsigned` (opcode 2; Redis' own `RM_SaveSigned` writes this opcode too).
    Uint(u64),
    /// Opcode 1: a signed integer (as its 64-bit pattern).
    Sint(i64),
    /// `RM_SaveFloat` (opcode 3).
    Float(f32),
    /// `RM_SaveDouble` (opcode 4).
    Double(f64),
    /// `RM_SaveString*` (opcode 5; long doubles are written as hex-float text).
    String(Bytes),
}

/// Metadata a module attached to a key (Redis 8.6+ `KEY_META`, opcode 243), one class.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMeta {
    /// The 4-character class name.
    pub class: String,
    /// The class version (0–31).
    pub version: u8,
    /// Flags bit 0: a server without the class may drop the metadata and load the key.
    pub allow_ignore: bool,
    /// Reserved flag bits 1 and 2 as found (written as 0 by Redis).
    pub reserved_flags: u8,
    /// What the class's `rdb_save` wrote.
    pub items: Vec<ModuleItem>,
}

const KEYMETA_CHARSET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

impl KeyMeta {
    /// Decodes a 32-bit class spec: flags, version and 4-character name.
    ///
    /// ```
    /// let (name, version, flags) = rdb_format::KeyMeta::parse_spec(0x28C4F509);
    /// assert_eq!((name.as_str(), version, flags), ("KMT1", 1, 1));
    /// ```
    pub fn parse_spec(spec: u32) -> (String, u8, u8) {
        let name = (0..4)
            .map(|i| {
                let c = (spec >> (26 - 6 * i)) & 63;
                char::from(KEYMETA_CHARSET[c as usize])
            })
            .collect();
        (name, ((spec >> 3) & 31) as u8, (spec & 7) as u8)
    }

    /// The 32-bit class spec of this class; `None` when the name is not 4 characters of the
    /// class charset.
    pub fn spec(&self) -> Option<u32> {
        if self.class.len() != 4 || self.version > 31 {
            return None;
        }
        let mut spec = 0u32;
        for (i, b) in self.class.bytes().enumerate() {
            let c = KEYMETA_CHARSET.iter().position(|&x| x == b)? as u32;
            spec |= c << (26 - 6 * i);
        }
        Some(
            spec | u32::from(self.version) << 3
                | u32::from(self.reserved_flags & 6)
                | u32::from(self.allow_ignore),
        )
    }
}

/// A whole stream value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stream {
    /// Live entries in ID order (entries marked deleted are left out).
    pub entries: Vec<StreamEntry>,
    /// Metadata and consumer groups.
    pub meta: StreamMeta,
}

/// A module value (type 7), kept raw so it can be restored into a server with the module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleValue {
    /// The module type name (9 characters), decoded from the module ID.
    pub name: String,
    /// The module's encoding version.
    pub encver: u64,
    /// The serialized value as in the file: module ID, then the module's opcodes up to and
    /// including the EOF opcode. This is what follows the type byte in a `DUMP` payload.
    pub raw: Bytes,
}

/// A Redis value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A string.
    String(Bytes),
    /// A list, head to tail.
    List(Vec<Elem>),
    /// A set, in file order.
    Set(Vec<Elem>),
    /// A sorted set as (member, score) pairs, in file order.
    SortedSet(Vec<(Elem, f64)>),
    /// A hash, in file order.
    Hash(Vec<HashField>),
    /// A stream.
    Stream(Box<Stream>),
    /// A module value.
    Module(ModuleValue),
    /// An array (Redis 8.8).
    Array(Box<Array>),
}

/// The kind of a value, without its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueType {
    /// String.
    String,
    /// List.
    List,
    /// Set.
    Set,
    /// Sorted set.
    SortedSet,
    /// Hash.
    Hash,
    /// Stream.
    Stream,
    /// Module value.
    Module,
    /// Array (Redis 8.8).
    Array,
}

impl ValueType {
    /// The name used by `TYPE` and in the JSON Lines output (`zset` for sorted sets).
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::List => "list",
            Self::Set => "set",
            Self::SortedSet => "zset",
            Self::Hash => "hash",
            Self::Stream => "stream",
            Self::Module => "module",
            Self::Array => "array",
        }
    }

    /// Parses a name as `TYPE` prints it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "list" => Self::List,
            "set" => Self::Set,
            "zset" => Self::SortedSet,
            "hash" => Self::Hash,
            "stream" => Self::Stream,
            "module" => Self::Module,
            "array" => Self::Array,
            _ => return None,
        })
    }
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::String(_) => ValueType::String,
            Self::List(_) => ValueType::List,
            Self::Set(_) => ValueType::Set,
            Self::SortedSet(_) => ValueType::SortedSet,
            Self::Hash(_) => ValueType::Hash,
            Self::Stream(_) => ValueType::Stream,
            Self::Module(_) => ValueType::Module,
            Self::Array(_) => ValueType::Array,
        }
    }
}

/// The on-disk encoding of a value, reported as metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// Plain string or a len-prefixed collection of strings (hashtable, skiplist, linked list).
    Raw,
    /// Integer-encoded string.
    Int,
    /// LZF-compressed string.
    Lzf,
    /// Linked list (RDB type 1).
    LinkedList,
    /// Hashtable (sets and hashes).
    Hashtable,
    /// Skiplist (sorted sets).
    Skiplist,
    /// Zipmap (old hashes).
    Zipmap,
    /// Ziplist.
    Ziplist,
    /// Intset.
    Intset,
    /// Listpack.
    Listpack,
    /// Quicklist of ziplists or listpacks.
    Quicklist,
    /// Stream of listpacks.
    Listpacks,
    /// Module value.
    Module,
    /// Array (Redis 8.8 `sliced-array`).
    SlicedArray,
}

impl Encoding {
    /// The name `OBJECT ENCODING` would use, as written in the JSON Lines `encoding` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Int => "int",
            Self::Lzf => "raw",
            Self::LinkedList => "linkedlist",
            Self::Hashtable => "hashtable",
            Self::Skiplist => "skiplist",
            Self::Zipmap => "zipmap",
            Self::Ziplist => "ziplist",
            Self::Intset => "intset",
            Self::Listpack => "listpack",
            Self::Quicklist => "quicklist",
            Self::Listpacks => "stream",
            Self::Module => "module",
            Self::SlicedArray => "sliced-array",
        }
    }
}

/// Everything known about a key before its value: where it lives and its metadata.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyHead {
    /// Database number.
    pub db: u64,
    /// The key.
    pub key: Bytes,
    /// The value type.
    pub value_type: ValueType,
    /// The on-disk encoding.
    pub encoding: Encoding,
    /// The RDB type byte.
    pub type_byte: u8,
    /// Absolute expiry, unix ms, signed as Redis reads it: a negative time is a key that was
    /// already expired when written (Redis drops it when loading the file as a master).
    pub expire_ms: Option<i64>,
    /// LRU idle seconds (RDB 9 `IDLE`).
    pub idle_s: Option<u64>,
    /// LFU counter (RDB 9 `FREQ`).
    pub freq: Option<u8>,
    /// Byte offset of the record's first byte (its first metadata opcode or its type byte).
    pub offset: u64,
    /// Module metadata attached to the key (Redis 8.6+ `KEY_META`), in file order.
    pub key_meta: Vec<KeyMeta>,
}

/// A whole key record.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// Key and metadata.
    pub head: KeyHead,
    /// The value.
    pub value: Value,
}

impl KeyRecord {
    /// A record for `key` in `db` with no expiry or LRU/LFU data (for encoding); the
    /// type, encoding and offset fields are placeholders the encoder does not read.
    pub fn new(db: u64, key: Bytes, value: Value) -> Self {
        Self {
            head: KeyHead {
                db,
                key,
                value_type: value.value_type(),
                encoding: Encoding::Raw,
                type_byte: 0,
                expire_ms: None,
                idle_s: None,
                freq: None,
                offset: 0,
                key_meta: Vec::new(),
            },
            value,
        }
    }
}

/// A piece of a value too big to be delivered whole.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Chunk {
    /// The next bytes of a big string.
    String(Bytes),
    /// The next list elements.
    List(Vec<Elem>),
    /// The next set members.
    Set(Vec<Elem>),
    /// The next sorted set members.
    SortedSet(Vec<(Elem, f64)>),
    /// The next hash fields.
    Hash(Vec<HashField>),
    /// The next stream entries.
    StreamEntries(Vec<StreamEntry>),
    /// The stream metadata and groups that follow the entries (last chunk of a stream).
    StreamMeta(Box<StreamMeta>),
    /// The next array elements.
    Array(Vec<ArrayItem>),
    /// The array's insert index (last chunk of an array, present or not).
    ArrayEnd {
        /// See [`Array::insert_index`].
        insert_index: Option<u64>,
    },
}

impl Chunk {
    /// Number of elements (bytes for strings) in the chunk.
    pub fn len(&self) -> usize {
        match self {
            Self::String(b) => b.len(),
            Self::List(v) | Self::Set(v) => v.len(),
            Self::SortedSet(v) => v.len(),
            Self::Hash(v) => v.len(),
            Self::StreamEntries(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::StreamMeta(_) | Self::ArrayEnd { .. } => 0,
        }
    }

    /// True when the chunk holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The packed blobs of one key, as the file holds them: what a server that loads the file
/// keeps in memory byte for byte (a listpack, an intset), or converts (a ziplist or zipmap into
/// a listpack on Redis 7 and newer). Sizes are decompressed sizes.
///
/// ```
/// let mut p = rdb_format::Packed::default();
/// p.add(100, None);
/// p.add(8191, None);
/// assert_eq!((p.count, p.total, p.sizes.len()), (2, 8291, 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Packed {
    /// Blobs seen (quicklist nodes, stream listpacks; 1 for a value that is one blob).
    pub count: u64,
    /// Their bytes in all.
    pub total: u64,
    /// Each blob's size in file order, for the first [`Packed::KEEP`] blobs (past that only
    /// `count` and `total` grow: a huge value costs bounded memory).
    pub sizes: Vec<u64>,
    /// A stream's node keys (each listpack's master ID) in file order, for the first
    /// [`Packed::KEEP`] nodes; empty for other types.
    pub stream_nodes: Vec<StreamId>,
    /// Elements the blobs hold: list items, set members, sorted-set members, hash fields (0 for
    /// streams).
    pub elements: u64,
    /// The longest element's text in bytes (of hashes: fields and values; of sorted sets:
    /// members).
    pub largest: u64,
}

impl Packed {
    /// How many sizes and stream node IDs are kept per key.
    pub const KEEP: usize = 1 << 16;

    /// Records elements of the blobs: `n` more, the longest `largest` bytes.
    pub fn elements(&mut self, n: u64, largest: u64) {
        self.elements += n;
        self.largest = self.largest.max(largest);
    }

    /// Records one blob of `bytes` (and the stream node it is the listpack of).
    pub fn add(&mut self, bytes: u64, node: Option<StreamId>) {
        self.count += 1;
        self.total += bytes;
        if self.sizes.len() < Self::KEEP {
            self.sizes.push(bytes);
        }
        if let Some(id) = node {
            if self.stream_nodes.len() < Self::KEEP {
                self.stream_nodes.push(id);
            }
        }
    }
}

/// A function library (`FUNCTION2`, or the 7.0 release-candidate form).
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// Library code (for `FUNCTION2`, the whole `#!lua name=...` payload).
    pub code: Bytes,
    /// Library name (pre-GA form only).
    pub name: Option<Bytes>,
    /// Engine name (pre-GA form only).
    pub engine: Option<Bytes>,
    /// Description (pre-GA form only).
    pub description: Option<Bytes>,
}

/// Which server family wrote the file (decides the meaning of types 22, 23 and opcode 243).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flavor {
    /// `REDIS` magic.
    Redis,
    /// `VALKEY` magic (Valkey 9 and newer).
    Valkey,
}

/// One item of an RDB file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Item {
    /// The file header.
    Header {
        /// Server family from the magic.
        flavor: Flavor,
        /// RDB version number.
        version: u32,
    },
    /// An `AUX` field.
    Aux {
        /// Field name.
        key: Bytes,
        /// Field value.
        value: Bytes,
    },
    /// `SELECTDB`.
    SelectDb(u64),
    /// `RESIZEDB` hint.
    ResizeDb {
        /// Keys in the db.
        db_size: u64,
        /// Keys with an expiry.
        expires_size: u64,
    },
    /// `SLOT_INFO` (Redis 7.4 cluster mode).
    SlotInfo {
        /// Slot number.
        slot: u64,
        /// Keys in the slot.
        size: u64,
        /// Keys with an expiry in the slot.
        expires_size: u64,
    },
    /// `MODULE_AUX` data, kept raw.
    ModuleAux {
        /// Module type name.
        name: String,
        /// Encoding version.
        encver: u64,
        /// When the aux data was saved (before/after keys).
        when: u64,
        /// The module's opcodes up to and including the EOF opcode.
        raw: Bytes,
    },
    /// A function library.
    Function(Function),
    /// An unfinished slot import (Valkey 9 cluster mode, `SLOT_IMPORT`).
    SlotImport {
        /// The import job's name.
        job: Bytes,
        /// Slot ranges being imported, inclusive.
        ranges: Vec<(u64, u64)>,
    },
    /// A whole key.
    Key(KeyRecord),
    /// Start of a key delivered in chunks.
    KeyStart(KeyHead),
    /// A chunk of the key started by the last [`Item::KeyStart`].
    Chunk(Chunk),
    /// End of a chunked key.
    KeyEnd,
    /// A key whose value was read to its end and checked but not built
    /// ([`Config::skip_values`](crate::Config::skip_values)).
    KeyChecked(KeyHead),
    /// A key skipped because its value was damaged (only with [`Recovery::Skip`](crate::Recovery::Skip)).
    Skipped {
        /// The key.
        key: Bytes,
        /// Why it was skipped.
        error: crate::Error,
    },
    /// The sizes of the packed blobs (listpacks, ziplists, intsets, zipmaps) of the key whose
    /// last item ([`Item::Key`], [`Item::KeyChecked`] or [`Item::KeyEnd`]) comes next; only
    /// with [`Config::packed_sizes`](crate::Config::packed_sizes), and only for keys stored
    /// with such blobs.
    Packed(Box<Packed>),
    /// End of file.
    Eof {
        /// The checksum stored in the file: `None` before RDB 5, `Some(0)` when the writer
        /// disabled checksums (nothing was checked).
        checksum: Option<u64>,
    },
}

/// A string key borrowed from the decoder's input, handed to the visitor of
/// [`Decoder::decode_with`](crate::Decoder::decode_with) instead of an [`Item`]: no `Bytes`,
/// no allocation, no queue. Its value was read and checked (an LZF value decompressed) as for
/// an [`Item::Key`] or [`Item::KeyChecked`]; [`StringRecord::to_item`] gives the item the
/// decoder would have given.
///
/// ```
/// use bytes::Bytes;
/// use rdb_format::{Decoder, Elem, Item, StringRecord};
///
/// // RDB 9: one string key "k" = "v", then EOF without a checksum.
/// let mut file = Bytes::from_static(b"REDIS0009\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0");
/// let mut dec = Decoder::new();
/// let mut visited = Vec::new();
/// let mut items = Vec::new();
/// let mut visit = |r: &StringRecord<'_>| {
///     visited.push((r.key.to_vec(), r.value.to_vec()));
///     std::ops::ControlFlow::Continue(())
/// };
/// while let Some(item) = dec.decode_with(&mut file, &mut visit).unwrap() {
///     items.push(item);
/// }
/// assert_eq!(visited, [(b"k".to_vec(), b"v".to_vec())]);
/// assert!(matches!(items[..], [Item::Header { .. }, Item::Eof { .. }]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StringRecord<'a> {
    /// Database number.
    pub db: u64,
    /// The key.
    pub key: &'a [u8],
    /// The value as text (an integer-encoded value formatted as decimal).
    pub value: &'a [u8],
    /// The on-disk encoding of the value: [`Encoding::Raw`], [`Encoding::Int`] or
    /// [`Encoding::Lzf`].
    pub encoding: Encoding,
    /// Absolute expiry, unix ms (as [`KeyHead::expire_ms`]).
    pub expire_ms: Option<i64>,
    /// LRU idle seconds.
    pub idle_s: Option<u64>,
    /// LFU counter.
    pub freq: Option<u8>,
    /// Byte offset of the record's first byte.
    pub offset: u64,
}

impl StringRecord<'_> {
    /// The key's head, as in the item the decoder would have given.
    pub fn head(&self) -> KeyHead {
        KeyHead {
            db: self.db,
            key: Bytes::copy_from_slice(self.key),
            value_type: ValueType::String,
            encoding: self.encoding,
            type_byte: 0,
            expire_ms: self.expire_ms,
            idle_s: self.idle_s,
            freq: self.freq,
            offset: self.offset,
            key_meta: Vec::new(),
        }
    }

    /// The key as a whole record, its value copied.
    pub fn to_record(&self) -> KeyRecord {
        KeyRecord {
            head: self.head(),
            value: Value::String(Bytes::copy_from_slice(self.value)),
        }
    }

    /// The item [`Decoder::decode`](crate::Decoder::decode) gives for this key: an
    /// [`Item::KeyChecked`] when the decoder skips values, an [`Item::Key`] otherwise.
    pub fn to_item(&self, skip_values: bool) -> Item {
        if skip_values {
            Item::KeyChecked(self.head())
        } else {
            Item::Key(self.to_record())
        }
    }
}

/// An element of a [`PackedRecord`], borrowed from the decoder's input: bytes, or an
/// integer as stored in an intset, ziplist or listpack (as [`Elem`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemRef<'a> {
    /// Bytes.
    Bytes(&'a [u8]),
    /// An integer-encoded element.
    Int(i64),
}

impl ElemRef<'_> {
    /// The element as an owned [`Elem`] (its bytes copied).
    pub fn to_elem(self) -> Elem {
        match self {
            Self::Bytes(b) => Elem::Bytes(Bytes::copy_from_slice(b)),
            Self::Int(i) => Elem::Int(i),
        }
    }
}

impl Elem {
    /// The element borrowed ([`ElemRef`]).
    pub fn as_ref(&self) -> ElemRef<'_> {
        match self {
            Self::Bytes(b) => ElemRef::Bytes(b),
            Self::Int(i) => ElemRef::Int(*i),
        }
    }
}

/// A key whose value is one packed blob (a listpack, ziplist, intset or zipmap), checked whole
/// as the decoder checks any such value, and handed to a [`Visitor`] that
/// [takes them](Visitor::takes_packed) with its elements borrowed from the input: no
/// [`Value`] is built, and no element is a `Bytes` of its own (a slice of a decompressed blob
/// costs a change of the blob's shared count to make and another to drop: 10 % of printing
/// the bench's mixed file as JSON lines on one thread went into them).
///
/// ```
/// use std::ops::ControlFlow;
/// use rdb_format::{Config, Decoder, ElemRef, Item, PackedRecord, StringRecord, Visitor};
///
/// /// Collects the elements of packed lists, sets and sorted sets as text.
/// #[derive(Default)]
/// struct Members(Vec<String>);
/// impl Visitor for Members {
///     fn string(&mut self, _: &StringRecord<'_>) -> ControlFlow<()> {
///         ControlFlow::Continue(())
///     }
///     fn takes_packed(&self) -> bool {
///         true
///     }
///     fn packed(&mut self, rec: &PackedRecord<'_>) -> ControlFlow<()> {
///         for e in rec.elements() {
///             self.0.push(match e {
///                 ElemRef::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
///                 ElemRef::Int(i) => i.to_string(),
///             });
///         }
///         ControlFlow::Continue(())
///     }
/// }
///
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb");
/// let mut file = bytes::Bytes::from(std::fs::read(path)?);
/// let mut dec = Decoder::with_config(Config::default());
/// let mut members = Members::default();
/// let mut keys_built = 0;
/// while let Some(item) = dec.decode_with(&mut file, &mut members)? {
///     keys_built += matches!(item, Item::Key(_)) as usize;
/// }
/// // the packed values' elements went to the visitor; other keys still come as items
/// assert!(!members.0.is_empty() && keys_built > 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PackedRecord<'a> {
    /// The key's head, as in the item the decoder would have given.
    pub head: &'a KeyHead,
    pub(crate) blob: &'a [u8],
    pub(crate) raws: &'a [crate::packed::Raw],
    /// A sorted set's scores, one a member.
    pub(crate) scores: &'a [f64],
    /// A hash's fields' TTLs (unix ms), one a field, for a hash with them (types 23 and 25).
    pub(crate) ttls: &'a [Option<u64>],
}

impl<'a> PackedRecord<'a> {
    fn elem(&self, r: crate::packed::Raw) -> ElemRef<'a> {
        r.elem_ref(self.blob)
    }

    /// Elements a member, field or list element is made of in the blob: 2 for a sorted set
    /// (member, score) or a hash (field, value), 3 for a hash with TTLs, 1 for a list or set.
    fn per(&self) -> usize {
        crate::decoder::blob_per(self.head.type_byte)
    }

    /// Members, fields or list elements.
    pub fn len(&self) -> usize {
        self.raws.len() / self.per()
    }

    /// True for a value with none (Redis writes none such).
    pub fn is_empty(&self) -> bool {
        self.raws.is_empty()
    }

    /// A list's elements or a set's members, in the blob's order (for a sorted set or a hash:
    /// the members or fields).
    pub fn elements(&self) -> impl ExactSizeIterator<Item = ElemRef<'a>> + '_ {
        self.raws.iter().step_by(self.per()).map(|&r| self.elem(r))
    }

    /// A sorted set's members and scores, in the blob's order (nothing for another type).
    pub fn scored(&self) -> impl ExactSizeIterator<Item = (ElemRef<'a>, f64)> + '_ {
        self.raws
            .iter()
            .step_by(2)
            .zip(self.scores)
            .map(|(&m, &s)| (self.elem(m), s))
    }

    /// A hash's fields, values and TTLs (unix ms; `None`: none), in the blob's order
    /// (nothing for another type).
    pub fn fields(
        &self,
    ) -> impl ExactSizeIterator<Item = (ElemRef<'a>, ElemRef<'a>, Option<u64>)> + '_ {
        let per = self.per();
        let raws = match self.head.value_type {
            ValueType::Hash => self.raws,
            _ => &[],
        };
        raws.chunks_exact(per).enumerate().map(move |(i, c)| {
            let ttl = if per == 3 {
                self.ttls.get(i).copied().flatten()
            } else {
                None
            };
            (self.elem(c[0]), self.elem(c[1]), ttl)
        })
    }

    /// The value, built (its elements copied): the one the decoder gives in an [`Item::Key`].
    pub fn to_value(&self) -> Value {
        match self.head.value_type {
            ValueType::List => Value::List(self.elements().map(ElemRef::to_elem).collect()),
            ValueType::Set => Value::Set(self.elements().map(ElemRef::to_elem).collect()),
            ValueType::SortedSet => {
                Value::SortedSet(self.scored().map(|(m, s)| (m.to_elem(), s)).collect())
            }
            _ => Value::Hash(
                self.fields()
                    .map(|(field, value, expire_ms)| HashField {
                        field: field.to_elem(),
                        value: value.to_elem(),
                        expire_ms,
                    })
                    .collect(),
            ),
        }
    }

    /// The key as a whole record, its value built ([`to_value`](Self::to_value)).
    pub fn to_record(&self) -> KeyRecord {
        KeyRecord {
            head: self.head.clone(),
            value: self.to_value(),
        }
    }
}

/// What a decoder hands keys to instead of making an [`Item`] of each
/// ([`Decoder::decode_with`](crate::Decoder::decode_with) and the readers' and the
/// pipeline's `next_with`): small string keys as borrowed [`StringRecord`]s, and, to a
/// visitor that [takes them](Self::takes_checked), the heads of keys whose values were only
/// checked ([`Config::skip_values`](crate::Config::skip_values)) and passed, each in place of
/// the [`Item::KeyChecked`] it stands for. Visited keys and items come in file order
/// together; a key the decoder cannot hand over so (it failed a check, it came in steps, it
/// has key metadata) comes as an item.
///
/// Any `FnMut(&StringRecord) -> ControlFlow<()>` closure is a visitor of string keys only.
/// `Break` from either method makes the decoder's call return `Ok(None)` right after that
/// key; the next call goes on from there.
///
/// ```
/// use std::ops::ControlFlow;
/// use bytes::Bytes;
/// use rdb_format::{Config, Decoder, Item, KeyHead, StringRecord, ValueType, Visitor};
///
/// /// Counts keys by type, strings and checked keys alike.
/// #[derive(Default)]
/// struct Count { strings: u64, others: Vec<ValueType> }
/// impl Visitor for Count {
///     fn string(&mut self, _: &StringRecord<'_>) -> ControlFlow<()> {
///         self.strings += 1;
///         ControlFlow::Continue(())
///     }
///     fn takes_checked(&self) -> bool {
///         true
///     }
///     fn checked(&mut self, head: &KeyHead) -> ControlFlow<()> {
///         self.others.push(head.value_type);
///         ControlFlow::Continue(())
///     }
/// }
///
/// // RDB 9: "k" = "v", then a set "s" of one member "m" (type 2), then EOF without a checksum
/// let mut file =
///     Bytes::from_static(b"REDIS0009\x00\x01k\x01v\x02\x01s\x01\x01m\xff\0\0\0\0\0\0\0\0");
/// let mut config = Config::default();
/// config.skip_values(true);
/// let mut dec = Decoder::with_config(config);
/// let mut count = Count::default();
/// let mut items = Vec::new();
/// while let Some(item) = dec.decode_with(&mut file, &mut count).unwrap() {
///     items.push(item);
/// }
/// assert_eq!((count.strings, &count.others[..]), (1, &[ValueType::Set][..]));
/// assert!(matches!(items[..], [Item::Header { .. }, Item::Eof { .. }]));
/// ```
pub trait Visitor {
    /// A string key, whole in the input, small, its value read and checked.
    fn string(&mut self, rec: &StringRecord<'_>) -> std::ops::ControlFlow<()>;

    /// Whether keys whose values were only checked come to [`checked`](Self::checked)
    /// rather than as [`Item::KeyChecked`]s (false unless overridden).
    fn takes_checked(&self) -> bool {
        false
    }

    /// A key whose value was checked whole and passed, in place of its
    /// [`Item::KeyChecked`] (`Item::KeyChecked(head.clone())` is that item). Only called when
    /// [`takes_checked`](Self::takes_checked) is true.
    fn checked(&mut self, head: &KeyHead) -> std::ops::ControlFlow<()> {
        let _ = head;
        std::ops::ControlFlow::Continue(())
    }

    /// Whether keys whose value is one packed blob come to [`packed`](Self::packed), their
    /// elements borrowed, rather than as [`Item::Key`]s with their values built (false unless
    /// overridden).
    fn takes_packed(&self) -> bool {
        false
    }

    /// A key whose value is one packed blob, checked, in place of its [`Item::Key`]
    /// ([`PackedRecord::to_record`] is that item's record). Only called when
    /// [`takes_packed`](Self::takes_packed) is true and values are built.
    fn packed(&mut self, rec: &PackedRecord<'_>) -> std::ops::ControlFlow<()> {
        let _ = rec;
        std::ops::ControlFlow::Continue(())
    }
}

impl<F: FnMut(&StringRecord<'_>) -> std::ops::ControlFlow<()>> Visitor for F {
    fn string(&mut self, rec: &StringRecord<'_>) -> std::ops::ControlFlow<()> {
        self(rec)
    }
}
