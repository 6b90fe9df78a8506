//! The memory model: what `MEMORY USAGE key SAMPLES 0` says for a key on a given server.
//!
//! Every figure here is a structure size of the server's own code (64-bit builds) or an
//! allocation rounded to the allocator's size classes; `docs/memory.md` lists them with the
//! server versions they hold for and where they are approximate.

use rdb_format::{Elem, Encoding, StreamId};

/// The allocator of the server build: `MEMORY USAGE` counts allocations at their usable size,
/// so the same data costs differently under each. `INFO memory`'s `mem_allocator` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Allocator {
    /// The jemalloc Redis and Valkey bundle (`--with-lg-quantum=3`: 8-byte steps up to 64).
    Jemalloc,
    /// A system jemalloc with 16-byte steps (Debian's and Ubuntu's `redis-server` packages).
    Jemalloc16,
    /// glibc malloc (`mem_allocator:libc`; builds with `MALLOC=libc`).
    Libc,
}

impl Allocator {
    /// Parses `jemalloc`, `jemalloc-16` or `libc`.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "jemalloc" => Self::Jemalloc,
            "jemalloc-16" | "jemalloc16" => Self::Jemalloc16,
            "libc" | "glibc" => Self::Libc,
            _ => return None,
        })
    }

    /// The name [`Allocator::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jemalloc => "jemalloc",
            Self::Jemalloc16 => "jemalloc-16",
            Self::Libc => "libc",
        }
    }

    /// The usable size of an allocation of `n` bytes (`zmalloc_size` after `zmalloc(n)`).
    ///
    /// ```
    /// use replicator::memory::Allocator;
    /// assert_eq!(Allocator::Jemalloc.usable(20), 24);
    /// assert_eq!(Allocator::Jemalloc16.usable(20), 32);
    /// assert_eq!(Allocator::Libc.usable(20), 24);
    /// assert_eq!(Allocator::Jemalloc.usable(129), 160);
    /// ```
    pub fn usable(self, n: u64) -> u64 {
        match self {
            Self::Jemalloc | Self::Jemalloc16 => {
                let quantum = if self == Self::Jemalloc { 8 } else { 16 };
                if n <= 8 {
                    return 8;
                }
                if n <= 64 {
                    return n.div_ceil(quantum) * quantum;
                }
                if n <= 128 {
                    return n.div_ceil(16) * 16;
                }
                // four classes per doubling
                let lg = 64 - (n - 1).leading_zeros();
                let delta = 1u64 << (lg - 3);
                n.div_ceil(delta) * delta
            }
            Self::Libc => {
                // glibc: 16-byte chunks with an 8-byte header, 32 at least; mmapped pages
                // above the mmap threshold (128 KiB) with a 16-byte header
                if n + 8 > 128 * 1024 {
                    return (n + 16).div_ceil(4096) * 4096 - 16;
                }
                ((n + 8 + 15) & !15).max(32) - 8
            }
        }
    }
}

/// Which server layout the estimate follows: where the key, the expiry and small values live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// Redis up to 6.2: key sds + `dictEntry` + `robj`; ziplists.
    Redis6,
    /// Redis 7.0: listpacks; lists are quicklists, sets hashtables or intsets.
    Redis70,
    /// Redis 7.2–7.4 and Valkey 7.2–8.0: small lists and sets are listpacks.
    Redis72,
    /// Redis 8: the key (and its expiry) inside the value object (`kvobj`), no `dictEntry`.
    Redis8,
    /// Valkey 8.1: a new hashtable without entries; key and expiry inside the object.
    Valkey81,
    /// Valkey 9: as 8.1, with an 8-byte object header and strings embedded up to 128 bytes.
    Valkey9,
}

impl Layout {
    /// The layout of a server family and `major.minor` version.
    ///
    /// ```
    /// use replicator::memory::Layout;
    /// assert_eq!(Layout::of(false, 7, 0), Layout::Redis70);
    /// assert_eq!(Layout::of(true, 8, 1), Layout::Valkey81);
    /// ```
    pub fn of(valkey: bool, major: u32, minor: u32) -> Self {
        match (valkey, major, minor) {
            (true, 9.., _) => Self::Valkey9,
            (true, 8, 1..) => Self::Valkey81,
            (true, _, _) => Self::Redis72,
            (false, 8.., _) => Self::Redis8,
            (false, 7, 2..) => Self::Redis72,
            (false, 7, _) => Self::Redis70,
            (false, _, _) => Self::Redis6,
        }
    }

    fn listpack_lists(self) -> bool {
        self >= Self::Redis72
    }

    fn ziplists(self) -> bool {
        self == Self::Redis6
    }

    fn entryless(self) -> bool {
        self >= Self::Valkey81
    }
}

/// A server to estimate for: its layout and allocator.
///
/// ```
/// use replicator::memory::{Allocator, Model};
/// let m = Model::for_version("7.0.15", false, Allocator::Jemalloc16).unwrap();
/// // SET c x on Debian's Redis 7.0: MEMORY USAGE c says 64
/// assert_eq!(m.string_key(1, false, &replicator::Elem::from("x")), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// The layout.
    pub layout: Layout,
    /// The allocator.
    pub alloc: Allocator,
    /// The version keeps two slot-list pointers in each key's `dictEntry` in cluster mode
    /// (Redis 7.0–7.2, Valkey 7.2).
    slot_links: bool,
    /// Bytes a key's entry carries for the cluster's slot lists (16 in cluster mode there).
    cluster_extra: u64,
}

/// `sds` header size for a string of `len` bytes (`sdsReqType`).
fn sds_hdr(len: u64) -> u64 {
    match len {
        0..32 => 1,
        32..256 => 3,
        256..65536 => 5,
        65536..0x1_0000_0000 => 9,
        _ => 17,
    }
}

/// Bytes an `sds` of `len` bytes asks for.
fn sds_req(len: u64) -> u64 {
    sds_hdr(len) + len + 1
}

/// Parses a string as Redis' `string2ll` would for an integer encoding (canonical form: no
/// sign but `-`, no leading zeros, no `-0`).
pub(crate) fn int_like(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > 1 << 63 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// An element as the compact encodings see it: an integer, or bytes of some length.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Int(i64),
    Str(u64),
}

impl Shape {
    pub(crate) fn of(e: &Elem) -> Self {
        match e {
            Elem::Int(i) => Self::Int(*i),
            Elem::Bytes(b) => match int_like(b) {
                Some(v) => Self::Int(v),
                None => Self::Str(b.len() as u64),
            },
        }
    }

    /// Length of the element's text.
    pub(crate) fn len(self) -> u64 {
        match self {
            Self::Int(v) => {
                let digits = v.unsigned_abs().checked_ilog10().map_or(1, |d| d + 1);
                u64::from(digits) + u64::from(v < 0)
            }
            Self::Str(n) => n,
        }
    }
}

/// A listpack entry's bytes for an element (encoding, data and back-length).
pub(crate) fn lp_entry(e: Shape) -> u64 {
    let enc = match e {
        Shape::Int(v) => match v {
            0..=127 => 1,
            -4096..=4095 => 2,
            -32768..=32767 => 3,
            -8_388_608..=8_388_607 => 4,
            -2_147_483_648..=2_147_483_647 => 5,
            _ => 9,
        },
        Shape::Str(l) => {
            l + match l {
                0..64 => 1,
                64..4096 => 2,
                _ => 5,
            }
        }
    };
    enc + match enc {
        0..128 => 1,
        128..16384 => 2,
        16384..2_097_152 => 3,
        2_097_152..268_435_456 => 4,
        _ => 5,
    }
}

/// A ziplist entry's bytes (without its prevlen) for an element.
fn zl_entry(e: Shape) -> u64 {
    match e {
        Shape::Int(0..=12) => 1,
        Shape::Int(v) if i8::try_from(v).is_ok() => 2,
        Shape::Int(v) if i16::try_from(v).is_ok() => 3,
        Shape::Int(-8_388_608..=8_388_607) => 4,
        Shape::Int(v) if i32::try_from(v).is_ok() => 5,
        Shape::Int(_) => 9,
        Shape::Str(l) => {
            l + match l {
                0..64 => 1,
                64..16384 => 2,
                _ => 5,
            }
        }
    }
}

/// Sizes a compact blob (listpack or ziplist) element by element.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CompactSize {
    lp: u64,
    zl: u64,
    zl_prev: u64,
}

impl CompactSize {
    pub(crate) fn push(&mut self, e: Shape) {
        self.lp += lp_entry(e);
        let prevlen = if self.zl_prev < 254 { 1 } else { 5 };
        let here = prevlen + zl_entry(e);
        self.zl += here;
        self.zl_prev = here;
    }

    pub(crate) fn listpack(&self) -> u64 {
        6 + self.lp + 1
    }

    pub(crate) fn ziplist(&self) -> u64 {
        10 + self.zl + 1
    }
}

/// Intset bytes for `n` members whose widest needs `width` bytes.
pub(crate) fn intset_bytes(n: u64, width: u64) -> u64 {
    8 + n * width
}

pub(crate) fn int_width(v: i64) -> u64 {
    if i16::try_from(v).is_ok() {
        2
    } else if i32::try_from(v).is_ok() {
        4
    } else {
        8
    }
}

/// A radix tree (`rax`) of 16-byte stream IDs, counted as keys arrive in ascending order:
/// nodes, and their allocated bytes under a given allocator.
#[derive(Debug, Clone, Default)]
pub(crate) struct RaxCount {
    prev: Option<[u8; 16]>,
    /// Depths of the open branch nodes, shallowest first, with their child counts.
    stack: Vec<(u32, u64)>,
    keys: u64,
    nodes: u64,
    bytes: u64,
    /// The depth of the deepest branch the last key hangs from.
    last_parent: u32,
}

const ID_LEN: u32 = 16;

fn id_bytes(id: StreamId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.ms.to_be_bytes());
    b[8..].copy_from_slice(&id.seq.to_be_bytes());
    b
}

impl RaxCount {
    /// Adds the next key (keys must come in ascending order; others are counted as a leaf).
    pub(crate) fn push(&mut self, id: StreamId, alloc: Allocator) {
        let k = id_bytes(id);
        self.keys += 1;
        let Some(prev) = self.prev.replace(k) else {
            return;
        };
        let lcp = prev.iter().zip(&k).take_while(|(a, b)| a == b).count() as u32;
        let lcp = lcp.min(ID_LEN - 1);
        // close branches deeper than the split point; the previous key hangs from the
        // deepest open branch at or above it
        self.edge(self.last_parent.max(lcp), ID_LEN, true, alloc);
        while let Some(&(d, kids)) = self.stack.last() {
            if d <= lcp {
                break;
            }
            self.stack.pop();
            let parent = self.stack.last().map_or(lcp, |&(p, _)| p.max(lcp));
            self.branch(kids, alloc);
            self.edge(parent, d, false, alloc);
        }
        match self.stack.last_mut() {
            Some((d, kids)) if *d == lcp => *kids += 1,
            _ => {
                // a new branch at lcp with the closed subtree (or the previous leaf) and this
                self.stack.push((lcp, 2));
            }
        }
        self.last_parent = lcp;
    }

    fn branch(&mut self, kids: u64, alloc: Allocator) {
        self.nodes += 1;
        let size = 4 + kids;
        self.bytes += alloc.usable(size + pad(size) + 8 * kids);
    }

    /// The edge from a branch at depth `from` to a node at depth `to`: its first byte lives in
    /// the branch; the rest, when any, is one compressed node. A leaf is one more node.
    fn edge(&mut self, from: u32, to: u32, leaf: bool, alloc: Allocator) {
        let rest = u64::from(to.saturating_sub(from + 1));
        if rest > 0 {
            self.nodes += 1;
            self.bytes += alloc.usable(4 + rest + pad(4 + rest) + 8);
        }
        if leaf {
            self.nodes += 1;
            self.bytes += alloc.usable(8 + 8);
        }
    }

    /// Closes the tree: `(keys, nodes, allocated bytes of the nodes)`.
    pub(crate) fn finish(mut self, alloc: Allocator) -> (u64, u64, u64) {
        if self.keys == 0 {
            return (0, 1, alloc.usable(8));
        }
        if self.keys == 1 {
            // the root holds the whole key compressed, then the leaf
            let root = alloc.usable(4 + 16 + pad(20) + 8);
            return (1, 2, root + alloc.usable(16));
        }
        self.edge(self.last_parent, ID_LEN, true, alloc);
        let mut top = 0;
        while let Some((d, kids)) = self.stack.pop() {
            self.branch(kids, alloc);
            match self.stack.last() {
                Some(&(p, _)) => self.edge(p, d, false, alloc),
                None => top = d,
            }
        }
        if top > 0 {
            // the root: the common prefix, compressed
            let t = u64::from(top);
            self.nodes += 1;
            self.bytes += alloc.usable(4 + t + pad(4 + t) + 8);
        }
        (self.keys, self.nodes, self.bytes)
    }
}

fn pad(n: u64) -> u64 {
    (8 - n % 8) % 8
}

impl Model {
    /// The model for a server version text (`7.0.15`, `8.1.1`), Valkey or Redis.
    pub fn for_version(version: &str, valkey: bool, alloc: Allocator) -> Option<Self> {
        let mut it = version.split('.').map(|p| p.trim().parse::<u32>().ok());
        let major = it.next()??;
        let minor = it.next().flatten().unwrap_or(0);
        Some(Self {
            layout: Layout::of(valkey, major, minor),
            alloc,
            slot_links: if valkey {
                major < 8
            } else {
                (7..=7).contains(&major) && minor <= 2
            },
            cluster_extra: 0,
        })
    }

    /// A layout and allocator, not in cluster mode.
    pub fn new(layout: Layout, alloc: Allocator) -> Self {
        Self {
            layout,
            alloc,
            slot_links: matches!(layout, Layout::Redis70 | Layout::Redis72),
            cluster_extra: 0,
        }
    }

    /// For a server in cluster mode: Redis 7.0–7.2 and Valkey 7.2 keep two slot-list pointers
    /// in each key's `dictEntry`, and `MEMORY USAGE` counts them (16 bytes a key); other
    /// versions keep per-slot tables instead, which it does not count.
    ///
    /// ```
    /// use replicator::memory::{Allocator, Model};
    /// let m = Model::for_version("7.0.15", false, Allocator::Jemalloc16).unwrap();
    /// let x = replicator::Elem::from("x");
    /// assert_eq!(m.cluster(true).string_key(1, false, &x), m.string_key(1, false, &x) + 16);
    /// ```
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster_extra = if on && self.slot_links { 16 } else { 0 };
        self
    }

    pub(crate) fn a(&self, n: u64) -> u64 {
        self.alloc.usable(n)
    }

    /// What `MEMORY USAGE` counts for a packed blob (listpack, ziplist, intset, quicklist
    /// node) of `n` bytes: its allocation, or on Redis 6 its length (`ziplistBlobLen`).
    pub(crate) fn packed(&self, n: u64) -> u64 {
        if self.layout == Layout::Redis6 {
            n
        } else {
            self.a(n)
        }
    }

    /// What `MEMORY USAGE` counts for an `sds` of `len` bytes made to measure: its
    /// allocation.
    pub(crate) fn sds(&self, len: u64) -> u64 {
        self.a(sds_req(len))
    }

    /// Bytes of the key's embedding in the value object (Redis 8, Valkey 8.1+).
    fn emb_key(&self, klen: u64) -> u64 {
        1 + sds_req(klen)
    }

    /// The value object with the key, for a value kept outside it: everything `MEMORY USAGE`
    /// counts for the key itself (key string, dict entry, object header, expiry field).
    pub fn key_overhead(&self, klen: u64, expires: bool) -> u64 {
        match self.layout {
            Layout::Redis6 | Layout::Redis70 | Layout::Redis72 => self.a(sds_req(klen)) + 24 + 16,
            Layout::Redis8 => self.a(16 + 8 * u64::from(expires) + self.emb_key(klen)),
            Layout::Valkey81 | Layout::Valkey9 => {
                let expire = expires || klen >= 128;
                self.a(16 + 8 * u64::from(expire) + self.emb_key(klen))
            }
        }
    }

    /// `MEMORY USAGE` of a string key.
    pub fn string_key(&self, klen: u64, expires: bool, v: &Elem) -> u64 {
        match Shape::of(v) {
            Shape::Int(_) => self.key_overhead(klen, expires),
            Shape::Str(n) => self.string_len_key(klen, expires, n),
        }
    }

    /// The encoding `OBJECT ENCODING` names for a string value of `len` bytes (not an
    /// integer): `embstr` when the value lives inside the object.
    pub fn string_encoding(&self, klen: u64, expires: bool, len: u64) -> &'static str {
        let emb_val = 3 + len + 1;
        let inside = match self.layout {
            Layout::Redis6 | Layout::Redis70 | Layout::Redis72 => len <= 44,
            Layout::Redis8 | Layout::Valkey81 => {
                let expire = expires || (self.layout == Layout::Valkey81 && klen >= 128);
                16 + 8 * u64::from(expire) + self.emb_key(klen) + emb_val <= 64
            }
            Layout::Valkey9 => {
                let expire = expires || klen >= 128;
                8 + 8 * u64::from(expire) + self.emb_key(klen) + emb_val <= 128
            }
        };
        if inside { "embstr" } else { "raw" }
    }

    /// `MEMORY USAGE` of a string key whose value (not an integer) has `len` bytes.
    pub fn string_len_key(&self, klen: u64, expires: bool, len: u64) -> u64 {
        let emb_val = 3 + len + 1;
        match self.layout {
            Layout::Redis6 | Layout::Redis70 | Layout::Redis72 => {
                let key = self.a(sds_req(klen)) + 24 + self.cluster_extra;
                if len <= 44 {
                    key + if self.layout == Layout::Redis6 {
                        len + 2 + 16
                    } else {
                        self.a(16 + emb_val)
                    }
                } else {
                    key + 16 + self.a(sds_req(len))
                }
            }
            Layout::Redis8 | Layout::Valkey81 => {
                let expire = expires || (self.layout == Layout::Valkey81 && klen >= 128);
                let obj = 16 + 8 * u64::from(expire) + self.emb_key(klen);
                if obj + emb_val <= 64 {
                    self.a(obj + emb_val)
                } else {
                    self.a(obj) + self.a(sds_req(len))
                }
            }
            Layout::Valkey9 => {
                let expire = expires || klen >= 128;
                let obj = 8 + 8 * u64::from(expire) + self.emb_key(klen);
                if obj + emb_val <= 128 {
                    self.a(obj + emb_val)
                } else {
                    self.a(obj + 8) + self.a(sds_req(len))
                }
            }
        }
    }

    /// `sizeof(dict)` plus its bucket array, or the entryless hashtable's buckets, for `n`
    /// members: what a collection's table costs besides its members.
    pub(crate) fn table(&self, n: u64) -> u64 {
        if self.layout.entryless() {
            // 64-byte buckets of 7 entries, grown past 100 % fill; a full bucket chains a
            // child bucket: their expected number for keys spread at random (Poisson)
            if n == 0 {
                return 56;
            }
            let buckets = n.div_ceil(7).next_power_of_two();
            let lambda = n as f64 / buckets as f64;
            let mut p = (-lambda).exp();
            let mut children = 0.0;
            for k in 1..64u32 {
                p *= lambda / f64::from(k);
                if k > 7 {
                    children += p * f64::from((k - 7).div_ceil(6));
                }
            }
            let children = (children * buckets as f64).round() as u64;
            return self.a(64 * buckets) + 56 + children * self.a(64);
        }
        let dict = if self.layout == Layout::Redis6 {
            96
        } else {
            56
        };
        let buckets = n.max(4).next_power_of_two();
        dict + 8 * buckets
    }

    /// Per-member cost in a hashtable set (member string and dict entry).
    pub(crate) fn set_member(&self, len: u64) -> u64 {
        if self.layout.entryless() {
            self.sds(len)
        } else {
            self.sds(len) + 24
        }
    }

    /// Per-field cost in a hashtable hash.
    pub(crate) fn hash_field(&self, flen: u64, vlen: u64) -> u64 {
        match self.layout {
            Layout::Valkey81 | Layout::Valkey9 => {
                // one entry: the field embedded, the value inside it up to 128 bytes in all,
                // else beside it behind a pointer
                let field = 1 + sds_req(flen);
                let inside = field + 3 + vlen + 1;
                if inside <= 128 {
                    self.a(inside)
                } else {
                    self.a(field + 8) + self.a(sds_req(vlen))
                }
            }
            _ => self.sds(flen) + self.sds(vlen) + 24,
        }
    }

    /// The expected cost of one skiplist member (node with random levels, member string, dict
    /// entry), levels drawn as Redis draws them (p = 1/4, at most 32).
    pub(crate) fn zset_member(&self, len: u64) -> u64 {
        let mut expected = 0.0f64;
        let mut p = 0.75f64;
        for level in 1..=32u64 {
            let node = match self.layout {
                // the member embedded after the levels, no element pointer
                Layout::Valkey9 => 16 + 16 * level + 1 + sds_req(len),
                _ => 24 + 16 * level,
            };
            expected += p * self.a(node) as f64;
            p *= 0.25;
        }
        let node = expected.round() as u64;
        match self.layout {
            Layout::Valkey9 => node,
            // the member's own string; a dict entry where the table has entries
            Layout::Valkey81 => node + self.sds(len),
            // a dict entry without a value slot
            Layout::Redis8 => node + self.sds(len) + 16,
            _ => node + self.sds(len) + 24,
        }
    }

    /// A skiplist's fixed part: `zset`, `zskiplist`, the 32-level header node.
    pub(crate) fn zset_fixed(&self) -> u64 {
        16 + 32 + self.a(24 + 16 * 32)
    }

    /// `sizeof(quicklist)` and `sizeof(quicklistNode)`.
    pub(crate) fn quicklist_sizes(&self) -> (u64, u64) {
        (
            40,
            if self.layout == Layout::Redis6 {
                32
            } else {
                40
            },
        )
    }

    /// `sizeof(stream)`.
    pub(crate) fn stream_struct(&self) -> u64 {
        if self.layout == Layout::Redis6 {
            40
        } else {
            80
        }
    }

    /// The in-memory encoding a value of `file` encoding gets on this server, before size
    /// thresholds: ziplists and zipmaps become listpacks from Redis 7 on.
    pub(crate) fn loads_ziplist_as_listpack(&self) -> bool {
        !self.layout.ziplists()
    }

    pub(crate) fn small_lists_are_listpacks(&self) -> bool {
        self.layout.listpack_lists()
    }

    pub(crate) fn rax_usage(&self, keys: u64, nodes: u64, bytes: u64) -> u64 {
        if self.layout.entryless() {
            // the tracked allocation of every node, and the rax struct
            bytes + 24
        } else {
            // Redis' estimate (streamRadixTreeMemoryUsage)
            keys * 16 + nodes * (4 + 8 * 30)
        }
    }

    /// Whether the file's encoding is what this server holds in memory.
    pub(crate) fn keeps(&self, enc: Encoding) -> bool {
        !matches!(enc, Encoding::Ziplist | Encoding::Zipmap) || self.layout.ziplists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rax(ids: &[(u64, u64)]) -> (u64, u64) {
        let mut r = RaxCount::default();
        for &(ms, seq) in ids {
            r.push(StreamId { ms, seq }, Allocator::Libc);
        }
        let (k, n, _) = r.finish(Allocator::Libc);
        (k, n)
    }

    #[test]
    fn radix_tree_node_counts() {
        // one key: the root holds it compressed, then the leaf
        assert_eq!(rax(&[(1, 0)]), (1, 2));
        // two keys differing in the last byte: prefix root, branch, two leaves
        assert_eq!(rax(&[(1, 0), (1, 1)]), (2, 4));
        // three under one branch
        assert_eq!(rax(&[(1, 0), (1, 1), (1, 2)]), (3, 5));
        // differing in byte 7 and in byte 15: root, branch at 7 with two children,
        // the first child's compressed path, a branch at 15, three leaves, and the
        // second child's compressed path to its leaf
        assert_eq!(rax(&[(1, 0), (1, 1), (2, 0)]), (3, 8));
    }

    #[test]
    fn listpack_and_ziplist_sizes() {
        let mut c = CompactSize::default();
        for e in [Elem::from("a"), Elem::Int(5), Elem::Int(100_000)] {
            c.push(Shape::of(&e));
        }
        for v in [0i64, 9, 10, -1, -10, i64::MIN, i64::MAX] {
            assert_eq!(Shape::Int(v).len(), v.to_string().len() as u64);
            assert_eq!(int_like(v.to_string().as_bytes()), Some(v));
        }
        assert_eq!(int_like(b"-0"), None);
        assert_eq!(int_like(b"9223372036854775808"), None);
        assert_eq!(int_like(b""), None);
        // a: 1+1+1; 5: 1+1; 100000: 4+1 (24-bit)
        assert_eq!(c.listpack(), 6 + 3 + 2 + 5 + 1);
        // ziplist: prevlen 1 each; "a" 1+1; 5 immediate 1; 100000 1+3
        assert_eq!(c.ziplist(), 10 + 3 + 2 + 5 + 1);
        assert_eq!(int_like(b"0123"), None);
        assert_eq!(int_like(b"-12"), Some(-12));
        assert_eq!(int_like(b"+1"), None);
    }

    #[test]
    fn string_keys_as_the_servers_say() {
        // figures read off the servers with MEMORY USAGE (key "c")
        let x = Elem::from("x");
        let r70 = Model::new(Layout::Redis70, Allocator::Jemalloc16);
        assert_eq!(r70.string_key(1, false, &x), 64);
        let r8 = Model::new(Layout::Redis8, Allocator::Jemalloc);
        assert_eq!(r8.string_key(1, false, &x), 32);
        assert_eq!(r8.string_len_key(1, false, 41), 72);
        let v81 = Model::new(Layout::Valkey81, Allocator::Libc);
        assert_eq!(v81.string_key(1, false, &x), 40);
        assert_eq!(v81.string_len_key(1, false, 41), 80);
        let v9 = Model::new(Layout::Valkey9, Allocator::Libc);
        assert_eq!(v9.string_key(1, false, &x), 24);
        assert_eq!(v9.string_len_key(1, false, 113), 144);
        let r6 = Model::new(Layout::Redis6, Allocator::Libc);
        assert_eq!(r6.string_key(1, false, &x), 67);
        assert_eq!(r6.string_len_key(1, false, 45), 120);
    }
}
