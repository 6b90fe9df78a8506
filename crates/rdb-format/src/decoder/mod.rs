//! The sans-IO RDB decoder: fed bytes, returns items, never does I/O.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::cursor::{Cur, P, SRef, Stop, StrHead};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::packed::{self as encodings, BlobError};
use crate::value::*;

pub use crate::config::{Config, Limits, Recovery};

mod collections;
mod deferred;
mod module;
mod stream;
mod types;

pub(crate) use collections::blob_per;
use collections::*;
#[cfg(test)]
pub(crate) use deferred::SPARE_STEPS;
pub(crate) use deferred::{Checked, Deferred, MemberCheck};
use deferred::{DeferredStep, Kept};
pub(crate) use module::key_meta_len;
use module::*;
use stream::*;
use types::*;
pub use types::{module_id, module_name, type_name};

/// Input the decoder can consume from without copying: `BytesMut` (streaming) or `Bytes`
/// (a whole file or an mmap).
pub trait Source {
    /// The bytes not yet consumed.
    fn bytes(&self) -> &[u8];
    /// Removes the first `n` bytes and returns them as `Bytes` sharing the same memory.
    fn split(&mut self, n: usize) -> Bytes;
    /// Removes the first `n` bytes (default: [`split`](Self::split), its result dropped).
    fn advance(&mut self, n: usize) {
        self.split(n);
    }
}

impl Source for BytesMut {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn split(&mut self, n: usize) -> Bytes {
        self.split_to(n).freeze()
    }
    fn advance(&mut self, n: usize) {
        bytes::Buf::advance(self, n);
    }
}

impl Source for Bytes {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn split(&mut self, n: usize) -> Bytes {
        self.split_to(n)
    }
    fn advance(&mut self, n: usize) {
        bytes::Buf::advance(self, n);
    }
}

/// What [`Decoder::decode_with`] hands string keys (and checked keys) to.
pub(crate) type Visit<'v, 'f> = Option<&'v mut (dyn Visitor + 'f)>;

/// Bytes of small records decoded in one unit (one split, one checksum update).
const RUN_BYTES: usize = 256 << 10;

/// CRC-64/Jones as Redis computes it, over `data` (SIMD-accelerated through `crc-fast`).
///
/// ```
/// assert_eq!(rdb_format::crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
/// ```
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, data)
}

/// CRC-64/Jones's polynomial, bit-reflected as the checksum is computed.
const CRC_POLY: u64 = 0x95ac_9329_ac4b_c9b5;

/// `a * b` modulo the polynomial, both bit-reflected (`1 << 63` is 1).
fn crc_mul(a: u64, mut b: u64) -> u64 {
    let mut product = 0;
    for bit in (0..64).rev() {
        if a >> bit & 1 == 1 {
            product ^= b;
        }
        b = (b >> 1) ^ (CRC_POLY & (b & 1).wrapping_neg());
    }
    product
}

/// `x^(2^k)` modulo the polynomial for `k` in `0..64`, bit-reflected.
fn crc_powers() -> &'static [u64; 64] {
    static POWERS: std::sync::OnceLock<[u64; 64]> = std::sync::OnceLock::new();
    POWERS.get_or_init(|| {
        let mut p = [0; 64];
        p[0] = 1 << 62;
        for k in 1..64 {
            p[k] = crc_mul(p[k - 1], p[k - 1]);
        }
        p
    })
}

/// The checksum of `a`'s bytes followed by `b`'s, from the checksum `sum_a` of the first and
/// `sum_b` of the `len_b` others (as [`crc64`] computes them, from zero): for the pipeline,
/// whose workers sum each their batch. About a microsecond, whatever the lengths.
///
/// ```
/// use rdb_format::{crc64, crc64_combine};
/// let (a, b) = (&b"REDIS0011"[..], &b"\xfe\x00\xff"[..]);
/// let whole = crc64(&[a, b].concat());
/// assert_eq!(crc64_combine(crc64(a), crc64(b), b.len() as u64), whole);
/// ```
pub fn crc64_combine(sum_a: u64, sum_b: u64, len_b: u64) -> u64 {
    // `sum_a` times x^(8 len_b): x^(2^(k+3)) for each bit k of the length in bytes
    let powers = crc_powers();
    let mut sum = sum_a;
    for (k, power) in powers[3..].iter().enumerate() {
        if len_b >> k == 0 {
            break;
        }
        if len_b >> k & 1 == 1 {
            sum = crc_mul(*power, sum);
        }
    }
    sum ^ sum_b
}

/// The running checksum of a decoder's input. Small pieces (a key, a length, a listpack of a
/// few elements) are gathered and summed a block at a time: `crc-fast` spends a fixed cost on
/// each update, which on records of a few dozen bytes cost more than the sum.
#[derive(Clone)]
struct Crc {
    digest: crc_fast::Digest,
    /// Input not summed yet. Its room is made at the first piece gathered: a decoder is made
    /// for each place a pipeline's walker tries as a record's start, and room made with each
    /// (cleared, and copied as the decoder moved) was most of that walker's time in a big hash.
    buf: Vec<u8>,
    /// Input not summed yet that lies in memory kept until the process ends (a leaked
    /// mapping's, [`Decoder::input_within`]): pieces that follow each other there are summed
    /// where they lie, a block at a time, instead of being copied into `buf` first (a copy
    /// of most of a file of small records). At most one of `buf` and `run` holds bytes.
    run: &'static [u8],
}

/// Where `part` starts in `whole` when it lies within it (it is `whole[at..at + len]` only if
/// it also ends within it), from the two addresses.
#[inline(always)]
fn offset_within(whole: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    (at <= whole.len() && part.len() <= whole.len() - at).then_some(at)
}

/// Bytes [`Crc`] gathers before it sums them; a piece this long or longer is summed at once.
/// (At 1 KiB, `check` of the bench's mixed file took 3-6 % longer on one thread: each update
/// of `crc-fast` picks its way anew; 8 KiB still stays in a core's first cache.)
const CRC_BLOCK: usize = 8192;

impl Crc {
    fn new() -> Self {
        Self {
            digest: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis),
            buf: Vec::new(),
            run: &[],
        }
    }

    /// Adds `data`, which lies within `whole` when that is `Some` and it ends there (else it is
    /// gathered as [`update`](Self::update) does), to the sum.
    fn update_within(&mut self, data: &[u8], whole: Option<&'static [u8]>) {
        let Some((whole, at)) = whole.and_then(|w| Some((w, offset_within(w, data)?))) else {
            return self.update(data);
        };
        let run_end = self.run.as_ptr() as usize + self.run.len();
        let from = if !self.run.is_empty() && run_end == data.as_ptr() as usize {
            // the run goes on (it lies within `whole` too: it was cut from it)
            self.run.as_ptr() as usize - whole.as_ptr() as usize
        } else {
            self.flush();
            at
        };
        self.run = &whole[from..at + data.len()];
        if self.run.len() >= CRC_BLOCK {
            self.digest.update(self.run);
            self.run = &[];
        }
    }

    /// Adds `data` to the sum.
    fn update(&mut self, data: &[u8]) {
        if !self.run.is_empty() || self.buf.len() + data.len() > CRC_BLOCK {
            self.flush();
        }
        if data.len() >= CRC_BLOCK {
            self.digest.update(data);
        } else {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(CRC_BLOCK);
            }
            self.buf.extend_from_slice(data);
        }
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.digest.update(&self.buf);
            self.buf.clear();
        }
        if !self.run.is_empty() {
            self.digest.update(self.run);
            self.run = &[];
        }
    }

    /// The sum of everything added so far.
    fn finalize(&mut self) -> u64 {
        self.flush();
        self.digest.finalize()
    }
}

impl std::fmt::Debug for Crc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crc")
            .field("gathered", &self.buf.len())
            .field("in place", &self.run.len())
            .finish()
    }
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

impl SeqKind {
    /// The kind of a list, set, sorted set, hash or quicklist of type `ty` (the collections
    /// whose elements follow their count and nothing else).
    fn of_type(ty: u8) -> Option<Self> {
        Some(match ty {
            1 => Self::List,
            2 => Self::Set,
            3 => Self::Zset1,
            4 => Self::Hash,
            5 => Self::Zset2,
            14 => Self::Quicklist1,
            18 => Self::Quicklist2,
            _ => return None,
        })
    }

    /// Its members are checked for duplicates ([`Seen`]).
    fn checks_members(self) -> bool {
        matches!(
            self,
            Self::Set
                | Self::Zset1
                | Self::Zset2
                | Self::Hash
                | Self::HashTtl(_)
                | Self::ValkeyHash2
                | Self::StreamNodes(_)
        )
    }
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

    /// Takes every whole chunk of `n` elements from the front, in order: one chunk in an
    /// allocation at most twice its size is that allocation itself, more are each copied
    /// into a vector of its own that holds `n`. What stays gets room for the next chunk's
    /// worth at once, `n` or the `coming` elements still to come if fewer: grown from nothing
    /// by doubling, its last steps were past `malloc`'s threshold for mapping memory of its
    /// own (a chunk of hash fields is about 300 KB), each a `mremap` and page faults, on every
    /// chunk of a big collection. (It is called once `n` elements came, so room for `n` more
    /// is never more than what the input really held.) A step that read many elements at once
    /// (quicklist nodes of a thousand elements each) is cut in one pass: cut a chunk at a
    /// time, each chunk kept the whole accumulator's allocation and each cut copied all that
    /// was left (a list of 8,000,000 elements printed in 74 MiB).
    fn take_chunks(&mut self, n: usize, coming: u64, out: &mut VecDeque<Item>) {
        fn cut<T>(v: &mut Vec<T>, n: usize, coming: u64, mut put: impl FnMut(Vec<T>)) {
            let whole = v.len() / n * n;
            if whole == 0 {
                return;
            }
            // room for the next chunk's worth, and for what is left
            let room = |left: usize| {
                n.min(left.saturating_add(usize::try_from(coming).unwrap_or(n)))
                    .max(left)
            };
            if whole == n && v.capacity() <= 2 * n {
                // one chunk, in an allocation about its size: the chunk is that allocation
                // and what is left moves to a fresh one (copied into vectors of their own,
                // the 2,000,000 fields of the bench's big hash were written twice)
                let mut rest = Vec::with_capacity(room(v.len() - n));
                rest.extend(v.drain(n..));
                put(std::mem::replace(v, rest));
                return;
            }
            let mut taken = v.drain(..whole);
            while taken.len() > 0 {
                put(taken.by_ref().take(n).collect());
            }
            drop(taken);
            let (left, room) = (v.len(), room(v.len()));
            if v.capacity() > room.saturating_mul(2) {
                let mut rest = Vec::with_capacity(room);
                rest.append(v);
                *v = rest;
            } else {
                v.reserve(room - left);
            }
        }
        let mut put = |c: Chunk| out.push_back(Item::Chunk(c));
        match self {
            Self::List(v) => cut(v, n, coming, |c| put(Chunk::List(c))),
            Self::Set(v) => cut(v, n, coming, |c| put(Chunk::Set(c))),
            Self::Zset(v) => cut(v, n, coming, |c| put(Chunk::SortedSet(c))),
            Self::Hash(v) => cut(v, n, coming, |c| put(Chunk::Hash(c))),
            Self::Stream(v) => cut(v, n, coming, |c| put(Chunk::StreamEntries(c))),
            Self::Array(v) => cut(v, n, coming, |c| put(Chunk::Array(c))),
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
    /// The duplicate check is done elsewhere ([`Decoder::defer_member_checks`]).
    deferred: bool,
    /// The members announced (up to the limit), until the check elsewhere was told.
    defer_start: Option<usize>,
    /// The packed blobs seen ([`Config::packed_sizes`]).
    packed: Option<Box<Packed>>,
}

/// Hashes of a collection's members (128-bit xxh3: a false duplicate is out of reach), up to
/// a limit; past it the check goes on for the members already seen and is partial.
///
/// A value that announces up to [`SEEN_FIRST`] members keeps them in a `HashSet` (at most
/// about 2 MiB, which stays in the caches). One that announces more keeps its first
/// [`SEEN_MOVE`] there too: a count in a few bytes of input allocates no more than that
/// until that many members have actually come. They then move, in one step, into a
/// [`BigSeen`] sized for what it announced (up to the limit), whose lines the decoder loads
/// ahead of the members' turn. Members past what it announced go into the `HashSet` again.
#[derive(Debug, Default)]
struct Seen {
    small: std::collections::HashSet<u128, std::hash::BuildHasherDefault<U128Hasher>>,
    big: BigSeen,
    /// The members the value announces (up to the limit).
    want: usize,
    partial: bool,
    /// A big table's pages may be written first on two threads ([`BigSeen::with_capacity`]).
    helper: bool,
}

impl Seen {
    /// A table for a value that announces `n` members (up to the limit).
    fn with_capacity(n: usize) -> Self {
        Self {
            small: std::collections::HashSet::with_capacity_and_hasher(
                if n > SEEN_FIRST { SEEN_MOVE } else { n },
                Default::default(),
            ),
            want: n,
            ..Self::default()
        }
    }

    /// The same, its big table's pages written first on two threads: for a check beside a
    /// batch's decoder, which may wait for it meanwhile (a core would idle).
    pub(super) fn with_helper(mut self) -> Self {
        self.helper = true;
        self
    }

    /// Whether the members are in a [`BigSeen`], too big for the caches: worth loading lines
    /// ahead.
    fn is_big(&self) -> bool {
        self.big.lines > 0
    }

    /// Hashes held.
    #[inline]
    fn len(&self) -> usize {
        self.small.len() + self.big.len
    }

    /// Starts loading what [`insert`](Self::insert) or [`contains`](Self::contains) of `h`
    /// will read.
    #[inline]
    fn touch(&self, h: u128) {
        if self.partial {
            // past the limit: only searched for, and the filter tells most searches
            self.big.touch_filter(h);
        } else {
            // an insert writes both: the filter's block, out of the caches too once the
            // table's lines went through them, was two fifths of an insert's time unloaded
            self.big.touch(h);
            self.big.touch_filter(h);
        }
    }

    /// Whether `h` was added.
    #[inline]
    fn contains(&self, h: u128) -> bool {
        self.big.contains(h) || self.small.contains(&h)
    }

    /// Checks a member's hash against those seen and adds it, up to `limit` hashes; past
    /// it, only checks it (the check is partial from there on). Returns whether it was seen
    /// before, and whether the check went partial with this one.
    #[inline(always)]
    fn check(&mut self, h: u128, limit: usize) -> (bool, bool) {
        if self.len() < limit {
            return (!self.insert(h), false);
        }
        let went = !self.partial;
        self.partial = true;
        (self.contains(h), went)
    }

    /// Adds a member's hash; false when it was there already. (The big table's insert is
    /// made where its member is checked; the rest is a call.)
    #[inline(always)]
    fn insert(&mut self, h: u128) -> bool {
        if self.is_big() {
            if let Some(new) = self.big.insert(h) {
                return new;
            }
        }
        self.insert_small(h)
    }

    /// [`insert`](Self::insert) into the `HashSet`: before the big table is made (moving
    /// the members there once they are [`SEEN_MOVE`]), and past what the value announced.
    #[inline(never)]
    fn insert_small(&mut self, h: u128) -> bool {
        if self.is_big() {
            // more members than the value announced
            return self.small.insert(h);
        }
        let new = self.small.insert(h);
        if self.small.len() >= SEEN_MOVE && self.want > SEEN_FIRST {
            let mut big = BigSeen::with_capacity(self.want, self.helper);
            for h in std::mem::take(&mut self.small) {
                big.insert(h);
            }
            self.big = big;
        }
        new
    }
}

/// The duplicate table of a big collection, far bigger than the caches, so that each member
/// costs a cache miss. An open-addressing table rather than a `HashSet`: a member's hash and
/// its probe live in one cache line (a `HashSet` reads a control byte and a slot in two), and
/// the decoder [`touch`](Self::touch)es the lines of a batch's coming members ahead of their
/// turn, so the misses overlap instead of coming one after another.
///
/// A member's 128-bit hash picks its home line with its high half, and the table keeps its
/// low half (its [`tag`]): eight to a cache line, half the bytes of whole hashes (half the
/// fresh pages, and fewer lines for the caches to hold), and a probe that seldom leaves its
/// home line. Two members pass for one only when their tags are equal and the probe of one
/// meets the other: for a table of a million members, about one chance in 2^41 (a `HashSet`
/// of 64-bit hashes would have one in 2^25). A table is made at its full size: without the
/// hashes' high halves it cannot be rehashed into a bigger one.
#[derive(Default)]
struct BigSeen {
    /// Tags eight to a cache line, from `skew` on; 0 marks an empty slot (no tag is 0).
    slots: Vec<u64>,
    /// Slots before the first one aligned to a cache line (to a huge page in a table of
    /// [`HUGE_TABLE`] bytes or more).
    skew: usize,
    /// Lines, a power of two (0 for no table).
    lines: usize,
    /// A bit a line: some hash went on past it, full, to a later line. A search that meets a
    /// full line without it stops there: what it looks for would have been put in that line.
    passed: Vec<u64>,
    /// A blocked Bloom filter of the hashes held: three bits a hash in one block (a cache
    /// line) of its own, a block for 56 hashes at the table's load, an eighth of the table's
    /// size. It stays in a core's cache where the table cannot: a search for a hash the table
    /// does not hold (every member past the limit's, in a collection without duplicates)
    /// reads the table only for the few (about 3 %) whose three bits others set.
    filter: Vec<Block>,
    /// Hashes held.
    len: usize,
}

/// A block of a [`BigSeen`]'s filter: 512 bits, one cache line.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

impl std::fmt::Debug for BigSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigSeen")
            .field("len", &self.len)
            .field("slots", &(self.lines * LINE))
            .finish()
    }
}

/// Members a value may announce and keep them all in a `HashSet`; one that announces more
/// gets a [`BigSeen`].
const SEEN_FIRST: usize = 1 << 16;

/// Members of a value that announced more than [`SEEN_FIRST`] held in a `HashSet` before they
/// move into its [`BigSeen`]. The move is a cache miss a member in the fresh table, while
/// the decoder (or, in a pipeline, the decoder beside the check) waits: for 65,536 members
/// it took 3.0-3.8 ms, and the `HashSet` before it 2 MiB more (bench.md). A table made after
/// 4,096 members costs at most the limit's size (8 MiB at the default) whatever the count.
const SEEN_MOVE: usize = 1 << 12;

/// Slots in a cache line.
const LINE: usize = 8;

/// The smallest page size of the machines the crate runs on.
const PAGE: usize = 4096;

/// What a [`BigSeen`] keeps of a hash: its low half, never 0 (the empty slot's mark: a low
/// half of 0 is kept as an odd constant, which a hash is as likely to have as any other).
fn tag(h: u128) -> u64 {
    match h as u64 {
        0 => 0x9e37_79b9_7f4a_7c15,
        t => t,
    }
}

impl BigSeen {
    /// A table that holds `n` hashes, its pages written first on two threads when `helper`.
    fn with_capacity(n: usize, helper: bool) -> Self {
        let lines = (n.max(1) * 8).div_ceil(7 * LINE).next_power_of_two().max(2);
        let len = lines * LINE;
        // a big table starts at a huge page's edge, a small one at a cache line's, whatever
        // the allocator's alignment (the room before it is never touched)
        let huge = len * size_of::<u64>() >= HUGE_TABLE;
        let align = if huge { HUGE_PAGE } else { 64 };
        let room = align / size_of::<u64>() - 1;
        let mut slots = vec![0; len + room];
        let skew = (slots.as_ptr() as usize).wrapping_neg() % align / size_of::<u64>();
        let table = &mut slots[skew..skew + len];
        if huge {
            huge_pages(table);
        }
        // Write each page of the table before anything reads it. A fresh page read first is
        // the kernel's shared zero page; the write after it (a member landing there) then
        // swaps in a page of its own and must flush the old mapping from every core the
        // program runs on: an interrupt to the other cores per page, which cost the pipeline's
        // duplicate check thread 1-15 % of its time. Written first, a page is simply
        // allocated. (Each page gets a member soon anyway: the hashes are uniform.)
        if helper {
            first_write_beside(table);
        } else {
            first_write(table);
        }
        Self {
            slots,
            skew,
            lines,
            passed: vec![0; lines.div_ceil(64)],
            filter: vec![Block::default(); len / 64],
            len: 0,
        }
    }

    /// The filter's block for `h` (its top bits: the home line takes the high half's low
    /// ones), and the three bits set in it (from the low half), as word and mask.
    fn filter_bits(&self, h: u128) -> (usize, [(usize, u64); 3]) {
        let block = ((h >> 104) as usize) & (self.filter.len() - 1);
        let t = h as u64;
        let bit = |i: u32| {
            let b = (t >> (9 * i)) as usize & 511;
            (b / 64, 1u64 << (b % 64))
        };
        (block, [bit(0), bit(1), bit(2)])
    }

    /// False when the table certainly does not hold `h` (its bits in the filter are not all
    /// set); true when it may.
    fn may_hold(&self, h: u128) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let (block, bits) = self.filter_bits(h);
        let words = &self.filter[block].0;
        bits.iter().all(|&(w, m)| words[w] & m != 0)
    }

    /// Notes `h` in the filter.
    fn note(&mut self, h: u128) {
        if self.filter.is_empty() {
            return;
        }
        let (block, bits) = self.filter_bits(h);
        let words = &mut self.filter[block].0;
        for (w, m) in bits {
            words[w] |= m;
        }
    }

    /// Starts loading the filter's block for `h`, for a [`contains`](Self::contains) of it.
    fn touch_filter(&self, h: u128) {
        if !self.filter.is_empty() {
            let (block, _) = self.filter_bits(h);
            prefetch(&self.filter[block].0);
        }
    }

    /// Hashes the table holds: seven eighths of its slots.
    fn capacity(&self) -> usize {
        self.lines * LINE / 8 * 7
    }

    /// The slots of line `i`.
    fn line(&self, i: usize) -> &[u64; LINE] {
        let at = self.skew + i * LINE;
        self.slots[at..]
            .first_chunk()
            .expect("the slots hold every line whole")
    }

    fn home(&self, h: u128) -> usize {
        // the hashes are uniform: their high bits pick the line
        ((h >> 64) as usize) & (self.lines.wrapping_sub(1))
    }

    /// Starts loading the line where `h` would be, so that a later [`insert`](Self::insert)
    /// or [`contains`](Self::contains) of it finds the line in the cache.
    fn touch(&self, h: u128) {
        if self.lines > 0 {
            prefetch(self.line(self.home(h)));
        }
    }

    /// Whether some hash went on past line `line`, full, to a later line.
    fn went_past(&self, line: usize) -> bool {
        self.passed[line / 64] & (1 << (line % 64)) != 0
    }

    /// The line after `line` in the probe of a hash, at its `step`-th step: lines i(i+1)/2
    /// on from the home line, which visits every line of a power-of-two table without the
    /// long runs of full lines that probing line after line builds up at the limit's load.
    fn next(&self, line: usize, step: usize) -> usize {
        (line + step) & (self.lines - 1)
    }

    /// [`insert`](Self::insert) into a full table.
    #[cold]
    fn insert_full(&self, h: u128) -> Option<bool> {
        if self.contains(h) { Some(false) } else { None }
    }

    /// Whether `h` was added.
    fn contains(&self, h: u128) -> bool {
        if self.lines == 0 || !self.may_hold(h) {
            return false;
        }
        let t = tag(h);
        let mut line = self.home(h);
        for step in 1..=self.lines {
            let slots = self.line(line);
            if line_holds(slots, t) {
                return true;
            }
            // slots fill from a line's front: an empty one (the last one, if any is) ends
            // the probe
            if slots[LINE - 1] == 0 || !self.went_past(line) {
                return false;
            }
            line = self.next(line, step);
        }
        false
    }

    /// Adds a member's hash: whether it is new (false when it was there already), or `None`
    /// when the table is full and it was not there.
    #[inline(always)]
    fn insert(&mut self, h: u128) -> Option<bool> {
        if self.len >= self.capacity() {
            return self.insert_full(h);
        }
        let t = tag(h);
        let mut line = self.home(h);
        // below the load limit a free slot lies on the probe: it visits every line
        for step in 1..=self.lines {
            let slots = self.line(line);
            if line_holds(slots, t) {
                return Some(false);
            }
            if slots[LINE - 1] == 0 {
                // slots fill from a line's front: the first empty one is where `t` goes
                let at = self.skew + line * LINE + first_empty(slots);
                self.slots[at] = t;
                self.len += 1;
                self.note(h);
                return Some(true);
            }
            self.passed[line / 64] |= 1 << (line % 64);
            line = self.next(line, step);
        }
        None
    }
}

/// Whether `line` holds `t`: all eight slots compared at once, with no branch.
#[inline]
fn line_holds(line: &[u64; LINE], t: u64) -> bool {
    line.iter().fold(false, |held, &s| held | (s == t))
}

/// The first empty slot of `line`, which has one (its last): its slots fill from the front,
/// so the taken ones end where a search of three steps without a branch finds. (A mask of
/// the empty slots, all eight compared, was a sixth of an insert's instructions; a slot at a
/// time, the branch on where the first empty one lies was mispredicted about once a member.)
#[inline]
fn first_empty(line: &[u64; LINE]) -> usize {
    debug_assert_eq!(line[LINE - 1], 0);
    let mut at = 4 * usize::from(line[3] != 0);
    at += 2 * usize::from(line[at + 1] != 0);
    at + usize::from(line[at] != 0)
}

/// Writes each page of `table` once (with what it holds: nothing changes), so that the kernel
/// gives it a page of its own before anything reads it ([`BigSeen::with_capacity`]).
fn first_write(table: &mut [u64]) {
    for slot in table.iter_mut().step_by(PAGE / size_of::<u64>()) {
        *std::hint::black_box(slot) = *slot;
    }
}

/// [`first_write`] of a big table's second half on a thread of its own, while this one
/// writes the first. The kernel clears each fresh page as it is first written; a huge page
/// that the host of a virtual machine does not back yet cost about 2.5 ms a MiB here, 20 ms
/// for the table of a collection at the default limit, while the check's decoder waited for
/// it and a core idled. On two threads it costs half of that. A table under two huge pages,
/// or one whose helper cannot be made, is written on this thread alone.
fn first_write_beside(table: &mut [u64]) {
    let words = HUGE_PAGE / size_of::<u64>();
    if table.len() < 2 * words {
        return first_write(table);
    }
    let (front, back) = table.split_at_mut((table.len() / 2).next_multiple_of(words));
    let helped = std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("rdb-table".into())
            .spawn_scoped(s, || first_write(back))
            .is_ok();
        first_write(front);
        helper
    });
    if !helped {
        first_write(back);
    }
}

/// Tables of at least this many bytes ask for huge pages ([`huge_pages`]).
const HUGE_TABLE: usize = 4 << 20;

/// The huge page size asked for: x86-64's and most arm64 kernels' (elsewhere a table is
/// only aligned to it).
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back `table` with huge pages where it can (Linux's transparent huge
/// pages, when they are on for the regions that ask: `madvise` or `always`).
///
/// A big duplicate table is read at random, a member a line: with 4 KiB pages nearly each
/// member also misses the TLB, and a page walk (two nested ones in a virtual machine) comes
/// before the cache miss. With 2 MiB pages a 16 MiB table needed 8 TLB entries. Measured on
/// the 2,000,000-field hash of the bench's mixed file: `dump --format jsonl` of that key went
/// from 0.230 to 0.200 s on one thread, the whole file's `check` from 0.510 to 0.496 s.
/// The advice changes nothing the program reads: a kernel without huge pages ignores it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn huge_pages(table: &mut [u64]) {
    let start = table.as_mut_ptr() as usize;
    // whole huge pages inside the table: the advice covers nothing the table does not own
    let from = start.next_multiple_of(HUGE_PAGE);
    let to = (start + size_of_val(table)) / HUGE_PAGE * HUGE_PAGE;
    if to > from {
        // SAFETY: `madvise(MADV_HUGEPAGE)` on pages of a live allocation this function
        // borrows mutably changes only how the kernel backs them, not their contents or
        // their mapping's lifetime; on failure (no huge pages) nothing changes, and the
        // result is not needed.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
        }
    }
}

/// Elsewhere the table keeps the system's pages.
#[cfg(not(target_os = "linux"))]
fn huge_pages(_: &mut [u64]) {}

/// Asks the CPU to bring the cache line at `line` in without waiting for it.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn prefetch(line: &[u64; LINE]) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is only a hint: it reads nothing the program sees and cannot fault,
    // and the pointer comes from a live slice anyway.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>()) }
}

/// Elsewhere a plain read: it still lets some of a batch's misses overlap.
#[cfg(not(target_arch = "x86_64"))]
fn prefetch(line: &[u64; LINE]) {
    std::hint::black_box(line[0]);
}

/// How far ahead of a record's start [`prefetch_far`] loads the input.
const RECORD_AHEAD: usize = 4096;

/// Asks for the line [`RECORD_AHEAD`] bytes past `at`, once a record: in a run of records
/// whose values are not read (a string's, only checked), nothing else loads the line of the
/// next record's start before the decoder waits for it. One line a record: `check` of a file
/// of 600,000 strings of 200 bytes took 0.031 s with it and 0.045 s without (medians of 7);
/// 2 KiB ahead it gave 0.033 s, 8 KiB 0.030 s. Loading every line up to 8 KiB ahead, or only
/// the first line of each page ahead, gained nothing.
fn prefetch_far(b: &[u8], at: usize) {
    if let Some(far) = b.get(at + RECORD_AHEAD) {
        prefetch_byte(far);
    }
}

/// How far ahead of a walker's position its input is loaded, in bytes.
const WALK_AHEAD: usize = 8192;

/// Asks the CPU to bring the cache line holding `b` in without waiting for it.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn prefetch_byte(b: &u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is only a hint: it reads nothing the program sees and cannot fault,
    // and the pointer comes from a live reference anyway.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(b).cast::<i8>()) }
}

/// Elsewhere nothing: a plain read would wait for the line it asks for.
#[cfg(not(target_arch = "x86_64"))]
fn prefetch_byte(_: &u8) {}

/// Asks for the lines of `c`'s input up to [`WALK_AHEAD`] bytes past the cursor, from
/// `*ahead` on (where the last call stopped): a loop whose next place depends on the lengths
/// before it calls this each turn, so that the line it goes to is there when it gets there.
fn prefetch_ahead(c: &Cur<'_>, ahead: &mut usize) {
    *ahead = (*ahead).max(c.p);
    while *ahead < c.p + WALK_AHEAD && *ahead < c.b.len() {
        prefetch_byte(&c.b[*ahead]);
        *ahead += 64;
    }
}

/// The members' hashes are uniform already: use their low bits as they are.
#[derive(Default)]
pub(crate) struct U128Hasher(u64);

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
    BigLzf(Box<BigLzf>),
    Done,
    Failed(Error),
}

/// An LZF-compressed string value that decompresses to more than a piece
/// ([`Config::string_piece`]): decompressed as its input comes and handed over a piece at a
/// time, as a raw one is.
#[derive(Debug)]
struct BigLzf {
    stream: crate::lzf::LzfStream,
    /// Compressed bytes not read yet.
    left: u64,
    /// Where the compressed bytes start in the file, and the length they decompress to: an
    /// error is reported as decompressing the string whole reports it.
    at: u64,
    ulen: u64,
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
    /// A collection checked whole where it lies ([`Decoder::check_whole_seq`]).
    Checked,
}

/// A raw element parsed from the input, turned into values once its bytes are consumed.
#[derive(Clone, Copy)]
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
    /// Memory that lives until the process ends and holds the input (a leaked mapping): its
    /// strings become items without a call ([`Decoder::piece`]).
    forever: Option<&'static [u8]>,
    state: State,
    /// Absolute offset of the first unconsumed byte.
    pos: u64,
    crc: Crc,
    version: u32,
    flavor: Flavor,
    db: u64,
    pending: Pending,
    out: VecDeque<Item>,
    ctx: Context,
    expect: &'static str,
    /// Reused list of elements parsed in one step of a collection.
    seq_raws: Vec<RawEl>,
    /// The members' hashes of a batch of elements bound for a big duplicate table.
    seq_hashes: Vec<u128>,
    /// Absolute offset up to which a collection's steps asked for the input's lines: the
    /// next step (often the next small collection) asks only for the lines past it, not
    /// again for the [`WALK_AHEAD`] bytes it already asked for.
    seq_ahead: u64,
    /// Reused list of the elements of a blob.
    blob_raws: std::cell::Cell<BlobScratch>,
    /// Reused list of key records decoded together.
    batch: Vec<BatchRec>,
    /// Reused buffer for checking LZF strings without keeping them.
    scratch: std::cell::Cell<Vec<u8>>,
    /// Keys whose duplicate check stopped at the limit.
    partial_checks: u64,
    /// Keys whose duplicate check needs a table bigger than its first one (they announce
    /// more than [`SEEN_FIRST`] members, within the limit): counted by a walker too, for the
    /// pipeline to decode one such key at a time.
    big_tables: std::cell::Cell<u64>,
    /// Only find where records end: values are neither checked nor built ([`Decoder::walker`]).
    walk: bool,
    /// A walker's runs of records skipped at once end past this many bytes.
    walk_run: usize,
    /// Whole records decoded in the same step as one before them, at most (a probe's
    /// decoder decodes one a step: it needs only a few).
    run_records: usize,
    /// A big string being checked without its value ([`Config::skip_values`]): its
    /// [`Item::KeyChecked`] comes once it was read to its end, as every other key's does, so
    /// that a record boundary follows that item.
    checked_string: Option<Box<KeyHead>>,
    /// Keep the checksum (off for a decoder resumed inside a file).
    sum: bool,
    /// The checksum kept is of a part of the file only ([`Decoder::sum_from_here`]): the
    /// EOF's is not checked against it.
    partial_sum: bool,
    /// Pause before a collection whose duplicate check needs a big table until this many
    /// such collections were let through ([`Decoder::pause_at_big_tables`]).
    big_turns: Option<u64>,
    /// A [`decode_with`](Self::decode_with) visitor asked to stop.
    visit_broke: bool,
    /// Big collections' duplicate checks are done elsewhere ([`Decoder::defer_member_checks`]).
    defer: bool,
    /// What was handed over for them, not taken yet.
    deferred: VecDeque<Deferred>,
    /// Steps handed over so far.
    issued: u64,
    /// What the steps not checked yet need to report a duplicate.
    kept: VecDeque<Kept>,
    /// Checked steps' vectors, for the next steps' hashes ([`Decoder::recycle_step`]).
    spare_steps: Vec<Vec<u128>>,
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

impl Decoder {
    /// A decoder with the default [`Config`].
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A decoder with the given settings.
    pub fn with_config(config: Config) -> Self {
        Self {
            config,
            forever: None,
            state: State::Magic,
            pos: 0,
            crc: Crc::new(),
            version: 0,
            flavor: Flavor::Redis,
            db: 0,
            pending: Pending::default(),
            out: VecDeque::new(),
            ctx: Context::default(),
            expect: "header",
            seq_raws: Vec::new(),
            seq_hashes: Vec::new(),
            seq_ahead: 0,
            blob_raws: std::cell::Cell::new(BlobScratch::default()),
            batch: Vec::new(),
            scratch: std::cell::Cell::new(Vec::new()),
            partial_checks: 0,
            big_tables: std::cell::Cell::new(0),
            walk: false,
            walk_run: 1 << 20,
            run_records: 256,
            checked_string: None,
            sum: true,
            partial_sum: false,
            big_turns: None,
            visit_broke: false,
            defer: false,
            deferred: VecDeque::new(),
            issued: 0,
            kept: VecDeque::new(),
            spare_steps: Vec::new(),
        }
    }

    /// True when the last call returned `Ok(None)` because its visitor asked to stop.
    pub(crate) fn visit_broke(&self) -> bool {
        self.visit_broke
    }

    /// A decoder that only finds where records end (for [`crate::Pipeline`]'s walker): it
    /// reads lengths, skips strings without decompressing them, checks the checksum, and gives
    /// [`Item::KeyChecked`] for every key, at its end, without checking or building its value.
    /// Other items come out as usual.
    pub fn walker(mut config: Config) -> Self {
        config.skip_values = true;
        let mut d = Self::with_config(config);
        d.walk = true;
        d
    }

    /// A walker skips runs of records at once up to about `n` bytes (default 1 MiB), giving
    /// one item at the end of each run: where batches can be cut.
    pub fn walker_run(&mut self, n: usize) -> &mut Self {
        self.walk_run = n.max(1);
        self
    }

    /// A decoder that starts at a record boundary at `offset` of a file whose header gave
    /// `version` and `flavor`, in database `db`: for decoding a file in parts, as
    /// [`crate::Pipeline`] does. It keeps no checksum, and its input must hold whole records
    /// (no EOF opcode).
    pub fn resume(config: Config, version: u32, flavor: Flavor, db: u64, offset: u64) -> Self {
        let mut d = Self::with_config(config);
        d.state = State::Top;
        d.version = version;
        d.flavor = flavor;
        d.db = db;
        d.pos = offset;
        d.sum = false;
        d.expect = "opcode";
        d
    }

    /// Keeps the checksum of the input from here on (a decoder [resumed](Self::resume) inside
    /// a file): [`Decoder::checksum_so_far`] is that part's, for the pipeline to combine with
    /// the others'; the EOF's checksum is not checked against it.
    pub(crate) fn sum_from_here(&mut self) {
        self.sum = true;
        self.partial_sum = true;
    }

    /// Sums the input read so far that the checksum holds in place (in a leaked mapping,
    /// [`Decoder::input_within`]), so that nothing before the decoder's offset is read again:
    /// what a reader calls before it lets the pages behind the decoder go. A page let go and
    /// read again later is mapped again, and where the page cache holds the file in large
    /// folios the kernel maps the whole folio (up to 2 MiB) that no later release covers.
    pub(crate) fn sum_pending(&mut self) {
        self.crc.flush();
    }

    /// The checksum of the input decoded so far (from where it was kept).
    pub(crate) fn checksum_so_far(&mut self) -> u64 {
        self.crc.finalize()
    }

    /// The database the decoder is in.
    pub(crate) fn db(&self) -> u64 {
        self.db
    }

    /// The error for an EOF checksum that is not the file's, as one decoder reading the
    /// whole file gives it (where this decoder read the EOF and its checksum).
    pub(crate) fn checksum_error(&self, expected: u64, actual: u64) -> Error {
        Error::new(ErrorKind::Checksum { expected, actual }, self.pos - 8).with_context(&self.ctx)
    }

    /// Makes the decoder stop (`Ok(None)`, [`Decoder::awaits_big_turn`]) before it reads the
    /// members of a collection whose duplicate check needs a big table, until
    /// [`Decoder::grant_big_turn`]: the pipeline lets one such table be held at a time.
    pub(crate) fn pause_at_big_tables(&mut self) {
        self.big_turns = Some(self.big_tables.get());
    }

    /// True when the last call stopped before such a collection's members.
    pub(crate) fn awaits_big_turn(&self) -> bool {
        self.big_turns.is_some_and(|n| self.big_tables.get() > n)
    }

    /// Lets the collection the decoder stopped before be decoded.
    pub(crate) fn grant_big_turn(&mut self) {
        if self.big_turns.is_some() {
            self.big_turns = Some(self.big_tables.get());
        }
    }

    /// A [walker](Self::walker) [resumed](Self::resume) at a place that may or may not start
    /// a record (offsets from 0 there), giving an item a record: for the pipeline to guess
    /// where records start.
    pub(crate) fn resume_walker(config: Config, version: u32, flavor: Flavor) -> Self {
        let mut d = Self::resume(config, version, flavor, 0, 0);
        d.config.skip_values = true;
        d.walk = true;
        d.walk_run = 1;
        d
    }

    /// A decoder [resumed](Self::resume) at a place that may or may not start a record, with
    /// every check: it decodes a record a step (the pipeline's guess of where records start
    /// needs only a few; decoding runs of up to 256 records at once, each guess checked up to
    /// 256 KiB, was half of the walker's time in `check --threads 2`).
    pub(crate) fn resume_probe(config: Config, version: u32, flavor: Flavor) -> Self {
        let mut d = Self::resume(config, version, flavor, 0, 0);
        d.run_records = 0;
        d
    }

    /// True between records: nothing decoded is waiting to come out, and no part of a
    /// record (not even an expiry before its key) has been read.
    pub fn at_record_boundary(&self) -> bool {
        self.out.is_empty()
            && matches!(self.state, State::Top)
            && self.pending.start.is_none()
            && self.pending.key_meta.is_none()
    }

    /// How many keys were too big to be checked for duplicate members in full
    /// ([`Config::dup_check_limit`]).
    pub fn partial_checks(&self) -> u64 {
        self.partial_checks
    }

    /// How many keys so far announced more members than a first duplicate table holds
    /// ([`SEEN_FIRST`]): each one's check holds a table of up to 9 MiB while it is decoded.
    /// A walker counts them too, though it checks nothing.
    pub(crate) fn big_tables(&self) -> u64 {
        self.big_tables.get()
    }

    /// Whether the decoder is among a collection's members (a walker walks them one by one,
    /// where it skips a string whole).
    pub(crate) fn in_members(&self) -> bool {
        matches!(self.state, State::Seq(_))
    }

    /// Among a collection's members, at least `least` of them read: how many bytes its
    /// members still to come take if they are as big as those read, on average (its record
    /// read so far counted).
    pub(crate) fn members_left_bytes(&self, least: u64) -> Option<u64> {
        let State::Seq(seq) = &self.state else {
            return None;
        };
        let read = seq.total - seq.remaining;
        if read < least.max(1) {
            return None;
        }
        let bytes = self.pos.saturating_sub(seq.head.offset);
        let per = u128::from(bytes) * u128::from(seq.remaining) / u128::from(read);
        Some(u64::try_from(per).unwrap_or(u64::MAX))
    }

    /// Counts a collection of `n` members in [`Decoder::big_tables`] when its check will
    /// need a big table (the caller knows its members are checked).
    fn note_members(&self, n: u64) {
        if n.min(self.config.dup_check_limit as u64) > SEEN_FIRST as u64 {
            self.big_tables.set(self.big_tables.get() + 1);
        }
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
    pub(crate) fn truncated(&self) -> Error {
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
        self.decode_inner(src, None)
    }

    /// As [`decode`](Self::decode), but runs of small string keys go to `visit` as borrowed
    /// [`StringRecord`]s instead of coming out as items: no allocation, no reference count
    /// and no copy of the item per key, for consumers that look at each key once (counting,
    /// printing). A [`Visitor`] that [takes checked keys](Visitor::takes_checked) is also
    /// handed the head of each key whose value was only checked ([`Config::skip_values`])
    /// and came whole in the input, in place of its [`Item::KeyChecked`]. Every check is the
    /// same; a key that fails one, and every other key, comes out as an item in its place,
    /// so the visited keys and the items are in file order together.
    /// [`StringRecord::to_item`] gives the item a visited string key stands for.
    ///
    /// When `visit` returns `Break`, the call returns `Ok(None)` right after that key (as if
    /// more input were needed); the next call goes on from there.
    pub fn decode_with<S: Source>(
        &mut self,
        src: &mut S,
        visit: &mut dyn Visitor,
    ) -> Result<Option<Item>> {
        self.decode_inner(src, Some(visit))
    }

    /// As [`decode_eof`](Self::decode_eof), with [`decode_with`](Self::decode_with)'s visitor.
    pub fn decode_eof_with<S: Source>(
        &mut self,
        src: &mut S,
        visit: &mut dyn Visitor,
    ) -> Result<Option<Item>> {
        self.decode_eof_inner(src, Some(visit))
    }

    /// True when keys come out checked but not built ([`Config::skip_values`]).
    pub fn skips_values(&self) -> bool {
        self.config.skip_values
    }

    pub(crate) fn decode_inner<S: Source>(
        &mut self,
        src: &mut S,
        mut visit: Visit<'_, '_>,
    ) -> Result<Option<Item>> {
        self.visit_broke = false;
        loop {
            // items decoded before an error still come out first, in order
            if let Some(item) = self.out.pop_front() {
                return Ok(Some(item));
            }
            if let State::Failed(e) = &self.state {
                return Err(e.clone());
            }
            if self.awaits_big_turn() {
                return Ok(None);
            }
            match self.step(src, visit.as_deref_mut()) {
                Ok(true) if self.visit_broke => return Ok(None),
                // a step's members to check elsewhere go before the next step's
                Ok(true) if !self.deferred.is_empty() => return Ok(None),
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
        self.decode_eof_inner(src, None)
    }

    pub(crate) fn decode_eof_inner<S: Source>(
        &mut self,
        src: &mut S,
        visit: Visit<'_, '_>,
    ) -> Result<Option<Item>> {
        match self.decode_inner(src, visit)? {
            Some(item) => Ok(Some(item)),
            None if self.is_done() || self.visit_broke => Ok(None),
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
        if self.sum {
            self.crc.update_within(&b, self.forever);
        }
        self.pos += n as u64;
        b
    }

    fn mat(&self, chunk: &Bytes, base: u64, r: SRef) -> Result<Elem> {
        Ok(match r {
            SRef::Raw(s, e) => Elem::Bytes(self.piece(chunk, s, e)),
            SRef::Int(i, _) => Elem::Int(i),
            SRef::Lzf(s, e, ulen) => {
                let mut data = Vec::new();
                if crate::lzf::decompress_to(&chunk[s..e], ulen as usize, &mut data).is_none() {
                    return Err(lzf_error(base, s, ulen));
                }
                Elem::Bytes(Bytes::from(data))
            }
        })
    }

    /// A decoder whose input lies within `whole` when it is `Some`: bytes that live until the
    /// process ends (a [leaked](crate::MappedFile::leak) mapping's). Input that lies
    /// elsewhere is read as ever.
    pub(crate) fn input_within(mut self, whole: Option<&'static [u8]>) -> Self {
        self.forever = whole;
        self
    }

    /// `chunk` as memory that lives until the process ends, when it lies within the input's
    /// ([`input_within`](Self::input_within)): pieces of it are then made in place
    /// (`Bytes::from_static`), the same bytes as `chunk.slice` gives without its call, whose
    /// result (stored a word at a time) was loaded back whole where it was put (a stalled
    /// load, two a hash field).
    #[inline(always)]
    fn forever_of(&self, chunk: &Bytes) -> Option<&'static [u8]> {
        let whole = self.forever?;
        let at = offset_within(whole, chunk)?;
        Some(&whole[at..at + chunk.len()])
    }

    /// `chunk[a..b]` as a `Bytes` of its own (in place where it can, [`forever_of`](Self::forever_of)).
    #[inline(always)]
    fn piece(&self, chunk: &Bytes, a: usize, b: usize) -> Bytes {
        match self.forever_of(chunk) {
            Some(s) => Bytes::from_static(&s[a..b]),
            None => chunk.slice(a..b),
        }
    }

    fn mat_bytes(&self, chunk: &Bytes, base: u64, r: SRef) -> Result<Bytes> {
        Ok(self.mat(chunk, base, r)?.to_bytes())
    }

    fn step<S: Source>(&mut self, src: &mut S, visit: Visit<'_, '_>) -> Result<bool> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Magic => {
                self.state = State::Magic;
                self.step_magic(src)
            }
            State::Top => {
                self.state = State::Top;
                self.step_top(src, visit)
            }
            State::Value(head) => self.step_value(src, head),
            State::Seq(seq) => self.step_seq(src, seq),
            State::StreamTail(seq) => self.step_stream_tail(src, seq),
            State::BigString { remaining } => self.step_big_string(src, remaining),
            State::BigLzf(z) => self.step_big_lzf(src, z),
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

    fn step_top<S: Source>(&mut self, src: &mut S, mut visit: Visit<'_, '_>) -> Result<bool> {
        let start = self.pos;
        let visiting = visit.is_some();
        // whether checked keys go to the visitor in a run, as string keys do
        let mut run_checked = false;
        if let Some(visit) = visit.as_deref_mut() {
            run_checked = self.runs_checked(src.bytes(), visit);
            // a string key's type byte, or a checked key's
            if src
                .bytes()
                .first()
                .is_some_and(|&ty| ty == 0 || (run_checked && runs_type(ty)))
                && !self.walk
                && self.pending.key_meta.is_none()
                && self.visit_run(src, start, visit, run_checked)
            {
                return Ok(true);
            }
        }
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
                    if self.config.verify_checksum
                        && self.sum
                        && !self.partial_sum
                        && stored != 0
                        && stored != actual
                    {
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
                if self.walk {
                    // a walker skips a run of records that are all in the input at once
                    if let Some((end, last)) = self.walk_run(&mut c, ty) {
                        let chunk = self.consume(src, end);
                        self.pending = Pending::default();
                        let (ty, k) = last;
                        let head = self.key_head(&chunk, start, ty, k, Pending::default())?;
                        self.emit_checked(head);
                        return Ok(true);
                    }
                    c.p = 1;
                }
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
                // (with checked keys going to the visitor, the next step's run takes them)
                if whole.is_some() && !run_checked {
                    while batch.len() < self.run_records && c.p < RUN_BYTES {
                        let at = c.p;
                        // a string key goes to the visitor, in the next steps (as items
                        // here, the strings after each blob were a seventh of `check`)
                        let string_next =
                            visiting && meta_opcodes(&mut c, &mut Pending::default()) == Some(0);
                        c.p = at;
                        if string_next {
                            break;
                        }
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
                    self.ctx.key = Some(head.key.clone());
                    self.state = State::Value(Box::new(head));
                    self.batch = batch;
                    return Ok(true);
                };
                self.emit_whole_raw(head, &chunk, start, w, &mut visit)?;
                for rec in batch.drain(..) {
                    // as if the record's type byte had begun a step of its own: an error in
                    // its key names the same context wherever a batch begins
                    self.ctx = Context {
                        opcode: Some(rec.ty),
                        doing: None,
                        key: None,
                    };
                    let head = self.key_head(&chunk, start, rec.ty, rec.key, rec.meta)?;
                    self.emit_whole_raw(head, &chunk, start, rec.whole, &mut visit)?;
                }
                self.batch = batch;
            }
        }
        Ok(true)
    }

    /// Whether [`visit_run`](Self::visit_run) hands checked keys in the input `b` to
    /// `visit`: it takes them, values are only checked (neither walked nor measured), and `b`
    /// lies in memory that lives until the process ends ([`input_within`](Self::input_within)),
    /// where the key of each can be borrowed for its head without a reference count.
    #[inline]
    fn runs_checked(&self, b: &[u8], visit: &(dyn Visitor + '_)) -> bool {
        self.checks_whole_seqs()
            && !self.visit_broke
            && self.forever.is_some_and(|w| offset_within(w, b).is_some())
            && visit.takes_checked()
    }

    /// [`decode_with`](Self::decode_with)'s fast path, at a string key's type byte (or, when
    /// `checked`, at the type byte of a value checked whole, [`runs_type`]): hands the keys
    /// from here on to `visit` while they are whole in the input, small, and pass their
    /// checks, and consumes them, one split and one checksum update for the run. String keys
    /// go to [`Visitor::string`]; when `checked` ([`runs_checked`](Self::runs_checked)),
    /// keys whose values are only checked go to [`Visitor::checked`], with the same checks
    /// as the step-by-step way's ([`parse_whole`](Self::parse_whole), [`check_blob_quick`]).
    /// False when the first one does not pass (it is decoded the usual way, which reports
    /// what is wrong with it).
    ///
    /// Each checked key went through the decoder's loop as a step of its own, or a record of
    /// a batch: parsed into a record, its key head made with the context's bookkeeping,
    /// then checked and handed over, about 700 instructions a key besides its checks (a
    /// tenth of `check` of the bench's mixed file).
    fn visit_run<S: Source>(
        &mut self,
        src: &mut S,
        start: u64,
        visit: &mut (dyn Visitor + '_),
        checked: bool,
    ) -> bool {
        let b = src.bytes();
        let forever = self
            .forever
            .and_then(|w| Some(&w[offset_within(w, b)?..][..b.len()]));
        let mut c = Cur::new(b, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        let mut ty = b[0];
        c.p = 1;
        // the first key's metadata opcodes were read in steps of their own
        let mut meta = std::mem::take(&mut self.pending);
        let mut offset = meta.start.unwrap_or(start);
        // (a checked value decompresses into the decoder's own buffer, `with_text`)
        let mut scratch = self.scratch.take();
        let mut ints = itoa::Buffer::new();
        let mut end = 0;
        // `c` is past the type byte of a string key, or of a checked key's when `checked`
        while let Ok(SRef::Raw(ks, ke)) = c.string() {
            let flow = if ty == 0 {
                let (value, encoding): (&[u8], Encoding) = match c.string() {
                    // a string longer than a piece is streamed, the usual way
                    Ok(SRef::Raw(s, e)) if (e - s) as u64 <= self.config.string_piece => {
                        (&b[s..e], Encoding::Raw)
                    }
                    Ok(SRef::Int(i, _)) => (ints.format(i).as_bytes(), Encoding::Int),
                    Ok(SRef::Lzf(s, e, ulen)) if ulen <= self.config.string_piece => {
                        match crate::lzf::decompress_to(&b[s..e], ulen as usize, &mut scratch) {
                            Some(value) => (value, Encoding::Lzf),
                            None => break,
                        }
                    }
                    _ => break,
                };
                visit.string(&StringRecord {
                    db: self.db,
                    key: &b[ks..ke],
                    value,
                    encoding,
                    expire_ms: meta.expire_ms,
                    idle_s: meta.idle_s,
                    freq: meta.freq,
                    offset,
                })
            } else {
                let Some(forever) = forever else { break };
                if !self.checks_whole(&mut c, ty, b) {
                    break;
                }
                // (the run's records carry no key metadata: the next one's is read anew)
                let meta = std::mem::take(&mut meta);
                let key = Bytes::from_static(&forever[ks..ke]);
                visit.checked(&self.head_of(key, ty, meta, offset))
            };
            end = c.p;
            if flow.is_break() {
                self.visit_broke = true;
                break;
            }
            if end >= RUN_BYTES {
                break;
            }
            prefetch_far(b, end);
            // the next record, if it is a string key (or a checked one)
            offset = self.pos + end as u64;
            (meta.expire_ms, meta.idle_s, meta.freq) = (None, None, None);
            match meta_opcodes(&mut c, &mut meta) {
                Some(0) => ty = 0,
                Some(t) if checked && runs_type(t) => ty = t,
                _ => break,
            }
        }
        self.scratch.set(scratch);
        if end == 0 {
            // nothing visited: the first key's metadata is still to come with it
            self.pending = meta;
            return false;
        }
        if self.sum {
            self.crc.update_within(&b[..end], self.forever);
        }
        src.advance(end);
        self.pos += end as u64;
        self.pending = Pending::default();
        self.ctx = Context::default();
        true
    }

    /// Whether the value of type `ty` that `c` is at (in `b`) is whole there and passes every
    /// check the step-by-step way makes of it when values are only checked (`c` past it), as
    /// [`parse_whole`](Self::parse_whole) and [`emit_whole_raw`](Self::emit_whole_raw) check
    /// it; false for anything else, with `c` anywhere.
    #[inline]
    fn checks_whole(&self, c: &mut Cur<'_>, ty: u8, b: &[u8]) -> bool {
        match self.parse_whole(c, ty) {
            Ok(Some(Whole::Checked | Whole::Module(..))) => true,
            Ok(Some(Whole::Blob(s @ (SRef::Raw(..) | SRef::Lzf(..))))) => {
                let mut raws = self.blob_raws.take();
                let ok = self
                    .with_text(b, 0, s, |blob| {
                        check_blob_quick(ty, blob, &mut raws, false).is_ok()
                    })
                    .unwrap_or(false);
                self.blob_raws.set(raws);
                ok
            }
            _ => false,
        }
    }

    /// A walker's fast path: skips the record whose type byte `ty` was just read, then as
    /// many whole records after it as the input holds (up to `walker_run` bytes), reading only
    /// lengths.
    /// Gives where the last one ends and its type byte and key; `None` when the first record
    /// is not all there or is of a kind the step-by-step way handles (streams, hashes with
    /// field TTLs, arrays, anything malformed).
    fn walk_run(&self, c: &mut Cur<'_>, ty: u8) -> Option<(usize, (u8, SRef))> {
        // the last record's type byte and where its key is (read again at the end: a key
        // kept as an `SRef` each record was stored a word at a time and loaded back whole,
        // a stalled load that was a third of the walk's time)
        let mut last = (ty, c.p);
        // a big collection counts once it was skipped whole: one not all in the input is
        // walked step by step, and counted then (counted here too, it made the batch before
        // it wait its turn as if it held a big key)
        let mut counted = self.big_tables.get();
        c.string().ok()?;
        if !matches!(self.skip_value(c, ty), Ok(true)) {
            self.big_tables.set(counted);
            return None;
        }
        let mut end = c.p;
        let mut meta = Pending::default();
        // the lines ahead are loaded before the walk gets to them: each record's first byte
        // depends on the lengths before it, so the CPU cannot find it by itself, and waiting
        // for it was half of the walk
        let mut ahead = c.p;
        while c.p < self.walk_run {
            prefetch_ahead(c, &mut ahead);
            let Some(ty) = meta_opcodes(c, &mut meta) else {
                break;
            };
            // type 0 (a string) is known to every version
            if ty != 0 && self.check_type(ty).is_err() {
                break;
            }
            let key_at = c.p;
            counted = self.big_tables.get();
            if !c.skip_string() {
                break;
            }
            // a string key, the most common record, without `skip_value`'s dispatch (a fifth
            // of the walker's instructions on small strings)
            let skipped = if ty == 0 {
                c.skip_string()
            } else {
                matches!(self.skip_value(c, ty), Ok(true))
            };
            if !skipped {
                self.big_tables.set(counted);
                break;
            }
            last = (ty, key_at);
            end = c.p;
        }
        let (ty, key_at) = last;
        c.p = key_at;
        Some((end, (ty, c.string().ok()?)))
    }

    /// Skips a value of type `ty` by its lengths; `Ok(false)` for the types the step-by-step
    /// way walks.
    fn skip_value(&self, c: &mut Cur<'_>, ty: u8) -> P<bool> {
        let n = |c: &mut Cur<'_>| c.len();
        match ty {
            0 | 9..=13 | 16 | 17 | 20 => {
                c.string()?;
            }
            23 if self.flavor == Flavor::Redis => {
                c.string()?;
            }
            25 => {
                c.u64_le()?;
                c.string()?;
            }
            7 => {
                c.len()?;
                skip_module_body(c)?;
            }
            1 | 14 => {
                for _ in 0..n(c)? {
                    c.string()?;
                }
            }
            // sets, hashes and sorted sets: counted for [`Decoder::big_tables`]
            2 => {
                let n = n(c)?;
                self.note_members(n);
                for _ in 0..n {
                    c.string()?;
                }
            }
            3 => {
                let n = n(c)?;
                self.note_members(n);
                for _ in 0..n {
                    c.string()?;
                    c.text_double()?;
                }
            }
            5 => {
                let n = n(c)?;
                self.note_members(n);
                for _ in 0..n {
                    c.string()?;
                    c.bin_double()?;
                }
            }
            4 => {
                let n = n(c)?;
                self.note_members(n);
                for _ in 0..n {
                    c.string()?;
                    c.string()?;
                }
            }
            18 => {
                for _ in 0..n(c)? {
                    c.len()?;
                    c.string()?;
                }
            }
            _ => return Ok(false),
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
        // the key goes into the context only where the value is read step by step
        // (`keyed_ctx`); a whole value's errors name it themselves
        self.ctx = Context {
            opcode: Some(ty),
            doing: Some(type_name(ty, self.flavor)),
            key: None,
        };
        let offset = meta.start.unwrap_or(start);
        Ok(self.head_of(key, ty, meta, offset))
    }

    /// The head of key `key` of type `ty` in the current database, with the metadata `meta`
    /// read before it, of the record at `offset`.
    #[inline(always)]
    fn head_of(&self, key: Bytes, ty: u8, meta: Pending, offset: u64) -> KeyHead {
        let (value_type, encoding) = type_info(ty, self.flavor);
        KeyHead {
            db: self.db,
            key,
            value_type,
            encoding,
            type_byte: ty,
            expire_ms: meta.expire_ms,
            idle_s: meta.idle_s,
            freq: meta.freq,
            offset,
            key_meta: meta.key_meta.unwrap_or_default(),
        }
    }

    /// Parses one more record made of metadata opcodes, a type byte, a key and a whole value,
    /// if it is all there and well formed; `None` otherwise (the caller rewinds).
    fn whole_record(&self, c: &mut Cur<'_>) -> Option<BatchRec> {
        let at = c.p;
        let mut meta = Pending::default();
        let ty = meta_opcodes(c, &mut meta)?;
        let whole = matches!(ty, 0 | 7 | 9..=13 | 16 | 17 | 20 | 25)
            || (SeqKind::of_type(ty).is_some() && self.checks_whole_seqs());
        if !whole || self.check_type(ty).is_err() {
            return None;
        }
        meta.start = Some(self.pos + at as u64);
        let key = c.string().ok()?;
        let whole = self.parse_whole(c, ty).ok()??;
        Some(BatchRec {
            meta,
            ty,
            key,
            whole,
        })
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

    /// Starts a collection ([`State::Seq`]), counting it in [`Decoder::big_tables`] when its
    /// duplicate check will need a big table.
    fn start_seq(&mut self, state: State) {
        if let State::Seq(seq) = &state {
            if seq.kind.checks_members() {
                self.note_members(seq.total);
            }
        }
        self.state = state;
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
        // a walker checks no member
        let dup_limit = if self.walk {
            0
        } else {
            self.config.dup_check_limit as u64
        };
        let defer = self.defer;
        let seq = |kind: SeqKind, remaining: u64, head: Box<KeyHead>| {
            let cap = remaining.min(1024) as usize;
            let announced = remaining.min(dup_limit);
            let deferred = deferred::defers(defer, kind, announced);
            // the members' hashes, sized for what the value announces (up to the limit) once
            // the members have come ([`Seen::with_capacity`]); none when they are checked
            // elsewhere
            let seen = if kind.checks_members() && !deferred {
                Seen::with_capacity(remaining.min(dup_limit) as usize)
            } else {
                Seen::default()
            };
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
                seen,
                total: remaining,
                packed: None,
                deferred,
                defer_start: deferred.then_some(announced as usize),
            }))
        };
        match ty {
            1 | 2 | 3 | 4 | 5 | 14 | 18 | 15 | 19 | 21 | 26 | 27 => {
                let n = p!(c.len());
                self.consume(src, c.p);
                let kind = SeqKind::of_type(ty).unwrap_or(SeqKind::StreamNodes(ty));
                self.start_seq(seq(kind, n, head));
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
                self.start_seq(seq(SeqKind::Array(insert), n, head));
            }
            22 if self.flavor == Flavor::Valkey => {
                let n = p!(c.len());
                self.consume(src, c.p);
                self.start_seq(seq(SeqKind::ValkeyHash2, n, head));
            }
            22 | 24 => {
                let min = if ty == 24 {
                    Some(p!(self.ms_time(&mut c)))
                } else {
                    None
                };
                let n = p!(c.len());
                self.consume(src, c.p);
                self.start_seq(seq(SeqKind::HashTtl(min), n, head));
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
                    self.emit_whole_raw(*head, &chunk, start, w, &mut None)?;
                }
                None => {
                    // a string longer than a piece, raw or decompressed: stream it
                    let (encoding, state) = match p!(c.string_header()) {
                        StrHead::Raw(n) => (Encoding::Raw, State::BigString { remaining: n }),
                        StrHead::Lzf(clen, ulen) => (
                            Encoding::Lzf,
                            State::BigLzf(Box::new(BigLzf {
                                stream: crate::lzf::LzfStream::new(
                                    ulen,
                                    usize::try_from(self.config.string_piece).unwrap_or(1 << 20),
                                ),
                                left: clen,
                                at: self.pos + c.p as u64,
                                ulen,
                            })),
                        ),
                        StrHead::Int(_) => {
                            unreachable!("parse_whole only declines big strings")
                        }
                    };
                    self.consume(src, c.p);
                    let mut head = head;
                    head.encoding = encoding;
                    if self.config.skip_values {
                        self.checked_string = Some(head);
                    } else {
                        self.out.push_back(Item::KeyStart(*head));
                    }
                    self.state = state;
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
                if let StrHead::Raw(n) | StrHead::Lzf(_, n) = c.string_header()? {
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
            // a list, set, sorted set, hash or quicklist, checked whole where it can be
            _ if self.checks_whole_seqs() && self.check_whole_seq(c, ty) => Whole::Checked,
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
        visit: &mut Visit<'_, '_>,
    ) -> Result<()> {
        if self.walk {
            self.emit_checked(head);
            return Ok(());
        }
        match w {
            Whole::Str(s) => {
                head.encoding = match s {
                    SRef::Int(..) => Encoding::Int,
                    SRef::Lzf(..) => Encoding::Lzf,
                    SRef::Raw(..) => Encoding::Raw,
                };
                if self.config.skip_values {
                    self.check_sref(chunk, base, s)
                        .map_err(|e| e.with_key(&head.key))?;
                    self.emit_checked_to(head, visit);
                } else {
                    let v = self
                        .mat_bytes(chunk, base, s)
                        .map_err(|e| e.with_key(&head.key))?;
                    self.emit_whole(head, Value::String(v));
                }
            }
            // (only when values are only checked)
            Whole::Checked => self.emit_checked_to(head, visit),
            Whole::Module(..) if self.config.skip_values => self.emit_checked_to(head, visit),
            Whole::Module(body, end, id) => {
                let (name, encver) = module_name(id);
                let raw = chunk.slice(body..end);
                self.emit_whole(head, Value::Module(ModuleValue { name, encver, raw }));
            }
            Whole::Blob(s) => {
                let build = !self.config.skip_values && self.config.build_packed;
                if build
                    && !self.config.packed_sizes
                    && self.visit_packed(&head, chunk, base, s, visit)
                {
                    return Ok(());
                }
                // (the elements are counted from `scratch` for their sizes)
                let keep = self.config.packed_sizes;
                let (decoded, blob_len, scratch) = match s {
                    // only checked: read where it lies, or decompressed into a buffer kept
                    // for the next (into a fresh one each, its allocation, clearing and
                    // reference count were a twentieth of checking small sorted sets)
                    SRef::Raw(..) | SRef::Lzf(..) if !build => {
                        let mut scratch = self.blob_raws.take();
                        let checked = self.with_text(chunk, base, s, |blob| {
                            let checked =
                                check_blob_quick(head.type_byte, blob, &mut scratch, keep);
                            (checked, blob.len())
                        });
                        let (checked, blob_len) = match checked {
                            Ok(c) => c,
                            Err(e) => {
                                self.blob_raws.set(scratch);
                                return Err(e.with_key(&head.key));
                            }
                        };
                        (checked.map(|()| None), blob_len, scratch)
                    }
                    _ => {
                        let blob = self
                            .mat_bytes(chunk, base, s)
                            .map_err(|e| e.with_key(&head.key))?;
                        let mut scratch = self.blob_raws.take();
                        let decoded = decode_blob(head.type_byte, &blob, build, &mut scratch);
                        (decoded, blob.len(), scratch)
                    }
                };
                if self.config.packed_sizes && decoded.is_ok() {
                    let mut p = Box::<Packed>::default();
                    p.add(blob_len as u64, None);
                    let (n, largest) = blob_elements(head.type_byte, &scratch.raws);
                    p.elements(n, largest);
                    self.out.push_back(Item::Packed(p));
                }
                self.blob_raws.set(scratch);
                match decoded {
                    Ok(Some(v)) => self.emit_whole(head, v),
                    Ok(None) => self.emit_checked_to(head, visit),
                    Err(e) => {
                        // an integer where a blob should be has no byte of its own to name:
                        // the record's, wherever the unit it was read in begins
                        let base = if let SRef::Int(..) = s {
                            head.offset
                        } else {
                            base
                        };
                        let err = blob_error(e, base, s)
                            .with_key(&head.key)
                            .with_context(&self.ctx);
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

    /// `head`'s blob (`s`, in `chunk` read at `base`) handed to `visit` with its elements
    /// borrowed ([`PackedRecord`]), when it [takes them](Visitor::takes_packed), nothing
    /// waits in `out` before it, the key has no key metadata, and the blob checks as
    /// [`decode_blob`] checks it: true when it was. Anything else (a blob that fails a check
    /// among them) goes the way that builds the value, which gives the error.
    fn visit_packed(
        &mut self,
        head: &KeyHead,
        chunk: &[u8],
        base: u64,
        s: SRef,
        visit: &mut Visit<'_, '_>,
    ) -> bool {
        let Some(v) = visit.as_deref_mut() else {
            return false;
        };
        if !v.takes_packed()
            || !self.out.is_empty()
            || self.visit_broke
            || !head.key_meta.is_empty()
            || matches!(s, SRef::Int(..))
        {
            return false;
        }
        let ty = head.type_byte;
        let mut scratch = self.blob_raws.take();
        let flow = self.with_text(chunk, base, s, |blob| {
            walk_blob(ty, blob, &mut scratch).ok()?;
            blob_numbers(ty, blob, &mut scratch).ok()?;
            Some(v.packed(&PackedRecord {
                head,
                blob,
                raws: &scratch.raws,
                scores: &scratch.scores,
                ttls: &scratch.ttls,
            }))
        });
        self.blob_raws.set(scratch);
        let Ok(Some(flow)) = flow else {
            return false;
        };
        if flow.is_break() {
            self.visit_broke = true;
        }
        self.state = State::Top;
        self.ctx = Context::default();
        true
    }

    fn emit_checked(&mut self, head: KeyHead) {
        self.out.push_back(Item::KeyChecked(head));
        self.state = State::Top;
        self.ctx = Context::default();
    }

    /// [`emit_checked`](Self::emit_checked), or `head` handed to `visit` when it
    /// [takes checked keys](Visitor::takes_checked) and nothing waits in `out` before it (the
    /// visited keys and the items stay in file order): no item is made, queued and moved
    /// out through the reader (5 % of `check`'s instructions on one thread, and 7–10 % of
    /// its time). A key with key metadata comes as an item, as a string key with it does.
    fn emit_checked_to(&mut self, head: KeyHead, visit: &mut Visit<'_, '_>) {
        match visit.as_deref_mut() {
            Some(v)
                if self.out.is_empty()
                    && !self.visit_broke
                    && head.key_meta.is_empty()
                    && v.takes_checked() =>
            {
                if v.checked(&head).is_break() {
                    self.visit_broke = true;
                }
                self.state = State::Top;
                self.ctx = Context::default();
            }
            _ => self.emit_checked(head),
        }
    }

    fn emit_whole(&mut self, head: KeyHead, value: Value) {
        self.out.push_back(Item::Key(KeyRecord { head, value }));
        self.state = State::Top;
        self.ctx = Context::default();
    }

    fn step_big_string<S: Source>(&mut self, src: &mut S, remaining: u64) -> Result<bool> {
        self.expect = "string value";
        if remaining == 0 {
            self.out.push_back(match self.checked_string.take() {
                Some(head) => Item::KeyChecked(*head),
                None => Item::KeyEnd,
            });
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
}

impl Decoder {
    /// A step of a big LZF-compressed string ([`BigLzf`]): the next piece decompressed from
    /// the input there is, handed over (or only checked, when values are skipped); its end
    /// once all of it was, its compressed bytes all read.
    fn step_big_lzf<S: Source>(&mut self, src: &mut S, mut z: Box<BigLzf>) -> Result<bool> {
        self.expect = "string value";
        let avail = src.bytes();
        let take = avail
            .len()
            .min(usize::try_from(z.left).unwrap_or(usize::MAX));
        let last = take as u64 == z.left;
        let Ok((used, piece)) = z.stream.step(&avail[..take], last) else {
            return Err(lzf_error(z.at, 0, z.ulen));
        };
        let made = piece.is_some();
        let piece = piece
            .filter(|_| !self.config.skip_values)
            .map(Bytes::copy_from_slice);
        if used > 0 {
            self.consume(src, used);
            z.left -= used as u64;
        }
        if let Some(p) = piece {
            self.out.push_back(Item::Chunk(Chunk::String(p)));
        }
        if z.stream.done() {
            if z.left > 0 {
                // compressed bytes past what makes its length
                return Err(lzf_error(z.at, 0, z.ulen));
            }
            self.out.push_back(match self.checked_string.take() {
                Some(head) => Item::KeyChecked(*head),
                None => Item::KeyEnd,
            });
            self.state = State::Top;
            return Ok(true);
        }
        self.state = State::BigLzf(z);
        Ok(used > 0 || made)
    }
}

/// The error for LZF data at `chunk[at..]` (the chunk read at `base`) that does not
/// decompress to the `ulen` bytes it says.
pub(super) fn lzf_error(base: u64, at: usize, ulen: u64) -> Error {
    Error::new(ErrorKind::Lzf { expected: ulen }, base + at as u64)
}

/// Elements of a decoded blob and the longest one's text: hash fields (fields and values
/// measured), sorted-set members (members measured), list items and set members.
fn blob_elements(ty: u8, raws: &[encodings::Raw]) -> (u64, u64) {
    let per = blob_per(ty);
    let measured = match ty {
        12 | 17 => 1,
        9 | 13 | 16 | 23 | 25 => 2,
        _ => 1,
    };
    let largest = raws
        .chunks_exact(per)
        .flat_map(|c| c[..measured].iter())
        .map(|r| r.text_len())
        .max()
        .unwrap_or(0);
    ((raws.len() / per) as u64, largest)
}

/// Whether `b` may start a few records, as far as a quick look tells: each one's metadata
/// opcodes, its type, its key, a string's or blob's framing, up to [`QUICK_RECORDS`] records
/// and the first byte of the one after them (an opcode or a type). False only where every
/// decoder refuses one of those records or that byte; true for anything it does not look into
/// (opcodes, collections, input that ends). The pipeline's probe tries a decoder at every
/// place this passes: most places inside a value fail here, without a decoder made and an
/// error built for each (a third of the walker's instructions). (With one record looked at,
/// about one place in ten of a big hash's short strings passed, a length byte taken for a
/// type: the probes that looked for the end of the bench's 2,000,000-field hash took 16 ms.)
pub(crate) fn may_start_records(b: &[u8], lenient: bool) -> bool {
    let mut c = Cur::new(b, u64::MAX);
    c.lenient = lenient;
    for _ in 0..QUICK_RECORDS {
        let Some(ty) = meta_opcodes(&mut c, &mut Pending::default()) else {
            return true;
        };
        if !may_start_record(ty) {
            return false;
        }
        if ty > 30 {
            // an opcode
            return true;
        }
        let framed = c.string().and_then(|_| match ty {
            0 | 9..=13 | 16 | 17 | 20 => c.string().map(|_| true),
            _ => Ok(false),
        });
        match framed {
            Ok(true) => {}
            Ok(false) | Err(Stop::More) => return true,
            Err(Stop::Bad(..)) => return false,
        }
    }
    c.b.get(c.p).is_none_or(|&t| may_start_record(t))
}

/// Records [`may_start_records`] frames at most.
const QUICK_RECORDS: usize = 3;

/// Whether a record may start with byte `b`: a value type (up to 30) or an opcode (from
/// 0xF0, and 107, Redis Enterprise's `RAM_LRU`).
fn may_start_record(b: u8) -> bool {
    b <= 30 || b >= 0xF0 || b == 107
}

/// Types of values a [`Decoder::visit_run`] may check whole and hand over as checked keys:
/// those every version knows ([`Decoder::check_type`]) and [`Decoder::parse_whole`] may take
/// whole (blobs, module values, and the collections checked where they lie), streams left out.
#[inline(always)]
fn runs_type(ty: u8) -> bool {
    matches!(ty, 1..=5 | 7 | 9..=14 | 16..=18 | 20)
}

/// Reads a record's metadata opcodes (`EXPIRETIME`, `EXPIRETIME_MS`, `IDLE`, `FREQ`) into
/// `meta` and gives the byte after them, the record's type; `None` when the input ends first
/// or an opcode is malformed.
#[inline(always)]
fn meta_opcodes(c: &mut Cur<'_>, meta: &mut Pending) -> Option<u8> {
    loop {
        match c.u8().ok()? {
            0xFC => meta.expire_ms = Some(c.u64_le().ok()? as i64),
            0xFD => meta.expire_ms = Some(i64::from(u32::from_le_bytes(c.array().ok()?)) * 1000),
            0xF8 => meta.idle_s = Some(c.len().ok()?),
            0xF9 => meta.freq = Some(c.u8().ok()?),
            ty => return Some(ty),
        }
    }
}

fn sref_at(s: SRef) -> usize {
    match s {
        SRef::Raw(a, _) | SRef::Lzf(a, _, _) | SRef::Int(_, a) => a,
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
        SRef::Int(..) => (base, e.why),
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
                SRef::Int(i, _) => itoa::Buffer::new().format(i).len() as u64,
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

#[cfg(test)]
mod tests {
    use super::{BigSeen, CRC_BLOCK, Crc, Decoder, LINE, SEEN_FIRST, SEEN_MOVE, Seen, crc64};
    use crate::value::{Elem, Item, Value};
    use crate::{Chunk, Config};
    use bytes::Bytes;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Every place a record starts, in every file the tests have, passes the probe's quick
    /// look ([`super::may_start_records`]), which turns away places inside values.
    #[test]
    fn every_record_start_may_start_records() {
        use super::may_start_records;
        let (mut starts, mut files) = (0, 0);
        for path in test_support::every_rdb_file("may_start_records") {
            let data = std::fs::read(&path).unwrap();
            if !data.starts_with(b"REDIS") && !data.starts_with(b"VALKEY") {
                continue;
            }
            files += 1;
            let mut config = Config::default();
            config.relaxed_version(true);
            let mut dec = Decoder::with_config(config);
            let mut buf = Bytes::from(data.clone());
            let mut at_starts = Vec::new();
            loop {
                let at = dec.offset() as usize;
                if at >= 9 && dec.at_record_boundary() && at < data.len() {
                    at_starts.push(at);
                }
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    // the record that failed is one no decoder takes, nor the places
                    // it is among the first records from
                    Err(_) => {
                        let keep = at_starts.len().saturating_sub(super::QUICK_RECORDS);
                        at_starts.truncate(keep);
                        break;
                    }
                }
            }
            for at in at_starts {
                assert!(
                    may_start_records(&data[at..], false),
                    "{} at {at}",
                    path.display()
                );
                starts += 1;
            }
        }
        assert!(
            files > 20 && starts > 1000,
            "{files} files, {starts} starts"
        );
        // a string key, then a byte no record starts with, or then a type; its value cut
        // short; a set (not looked into); a value's length of an encoding that does not
        // exist; a type no version has
        assert!(!may_start_records(b"\x00\x01k\x01v\x50", false));
        assert!(may_start_records(b"\x00\x01k\x01v\x00", false));
        // a second and a third string key, and a byte no record starts with after them, or
        // a type; the second's value's length of an encoding that does not exist
        assert!(!may_start_records(
            b"\x00\x01k\x01v\x00\x01k\x01v\x00\x01k\x01v\x50",
            false
        ));
        assert!(may_start_records(
            b"\x00\x01k\x01v\x00\x01k\x01v\x00\x01k\x01v\x02",
            false
        ));
        assert!(!may_start_records(b"\x00\x01k\x01v\x00\x01k\xc7", false));
        assert!(may_start_records(b"\x00\x01k\x05v", false));
        assert!(may_start_records(b"\x02\x01k\x05", false));
        assert!(!may_start_records(b"\x00\x01k\xc7", false));
        assert!(!may_start_records(b"\x60\x01k", false));
    }

    /// A file of a hash (type 4), a set, a list and a sorted set (type 5) of `n` members each,
    /// their strings raw and short, one of each of the hash's strings an integer.
    fn collections_file(n: u16) -> Vec<u8> {
        let mut f = b"REDIS0009\xfe\x00".to_vec();
        let len = |f: &mut Vec<u8>| f.extend_from_slice(&(0x4000 | n).to_be_bytes());
        let text = |f: &mut Vec<u8>, s: String| {
            f.push(s.len() as u8);
            f.extend_from_slice(s.as_bytes());
        };
        for (ty, key) in [(4u8, "h"), (2, "s"), (1, "l"), (5, "z")] {
            f.push(ty);
            text(&mut f, key.into());
            len(&mut f);
            for i in 0..n {
                match ty {
                    4 if i == 7 => f.extend_from_slice(b"\xc0\x07\xc1\x07\x01"),
                    4 => {
                        text(&mut f, format!("field:{i}"));
                        text(&mut f, format!("value:{}", u32::from(i) * 31));
                    }
                    5 => {
                        text(&mut f, format!("member:{i}"));
                        f.extend_from_slice(&f64::from(i).to_le_bytes());
                    }
                    _ => text(&mut f, format!("{key}:{i}")),
                }
            }
        }
        f.push(0xff);
        f.extend([0; 8]);
        f
    }

    /// Every item's strings, each with whether it lies in `within`.
    fn strings(input: Bytes, within: Option<&'static [u8]>, chunk: usize) -> Vec<(Bytes, bool)> {
        let mut config = Config::default();
        config.chunk_threshold(chunk).chunk_size(chunk);
        let mut dec = Decoder::with_config(config).input_within(within);
        let mut src = input;
        let mut out = Vec::new();
        let mut add = |e: &Elem| {
            let b = e.to_bytes();
            let inside = within.is_some_and(|w| w.as_ptr_range().contains(&b.as_ptr()));
            out.push((b, inside));
        };
        while let Some(item) = dec.decode_eof_inner(&mut src, None).unwrap() {
            match item {
                Item::Key(k) => match k.value {
                    Value::Hash(v) => v
                        .iter()
                        .flat_map(|f| [&f.field, &f.value])
                        .for_each(&mut add),
                    Value::Set(v) | Value::List(v) => v.iter().for_each(&mut add),
                    Value::SortedSet(v) => v.iter().for_each(|(m, _)| add(m)),
                    _ => {}
                },
                Item::Chunk(Chunk::Hash(v)) => {
                    v.iter()
                        .flat_map(|f| [&f.field, &f.value])
                        .for_each(&mut add);
                }
                Item::Chunk(Chunk::Set(v) | Chunk::List(v)) => v.iter().for_each(&mut add),
                Item::Chunk(Chunk::SortedSet(v)) => v.iter().for_each(|(m, _)| add(m)),
                _ => {}
            }
        }
        assert!(dec.is_done());
        out
    }

    /// Static bytes that say when they are dropped.
    struct Owner(&'static [u8], Arc<AtomicBool>);

    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0
        }
    }

    impl Drop for Owner {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    /// A decoder told that its input lives forever makes its members' strings in place
    /// (`Bytes::from_static`): the same bytes as slices of the input give, at the input's
    /// own addresses; input that lies elsewhere is sliced as ever.
    #[test]
    fn strings_made_in_place_are_the_inputs_own() {
        let file = collections_file(300);
        let whole: &'static [u8] = Box::leak(file.clone().into_boxed_slice());
        let other: &'static [u8] = Box::leak(file.clone().into_boxed_slice());
        for chunk in [1 << 20, 64, 7] {
            let want = strings(Bytes::from(file.clone()), None, chunk);
            assert_eq!(want.len(), 300 * 5);
            assert!(want.iter().any(|(b, _)| &b[..] == b"field:299"));
            // pieces within the input (each step's chunk of it lies further on): read from
            // it, at their places
            let got = strings(Bytes::from_static(whole), Some(whole), chunk);
            assert_eq!(
                got.iter().map(|x| &x.0).collect::<Vec<_>>(),
                want.iter().map(|x| &x.0).collect::<Vec<_>>()
            );
            // every raw string lies in the input; the two integers do not
            assert_eq!(got.iter().filter(|x| !x.1).count(), 2, "chunks of {chunk}");
            // in place indeed: no string refers to the input's owner (slices would keep it)
            let dropped = Arc::new(AtomicBool::new(false));
            let owned = Bytes::from_owner(Owner(whole, dropped.clone()));
            let got = strings(owned, Some(whole), chunk);
            assert!(
                dropped.load(Ordering::SeqCst),
                "chunks of {chunk}: pieces refer to the input"
            );
            assert_eq!(got.len(), want.len());
            let owned = Bytes::from_owner(Owner(whole, dropped.clone()));
            dropped.store(false, Ordering::SeqCst);
            let sliced = strings(owned, None, chunk);
            assert!(!dropped.load(Ordering::SeqCst));
            drop(sliced);
            assert!(dropped.load(Ordering::SeqCst));
            // input elsewhere than the memory named: sliced from the input as ever
            let elsewhere = strings(Bytes::from_static(other), Some(whole), chunk);
            assert_eq!(
                elsewhere.iter().map(|x| &x.0).collect::<Vec<_>>(),
                want.iter().map(|x| &x.0).collect::<Vec<_>>()
            );
            assert!(elsewhere.iter().all(|x| !x.1));
        }
    }

    /// Distinct, evenly spread 128-bit values (splitmix64 twice).
    fn values(n: usize, seed: u64) -> Vec<u128> {
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|_| (u128::from(next()) << 64) | u128::from(next()))
            .collect()
    }

    /// A big table made with a helper has every page written before it is used (resident),
    /// the half its helper wrote too, and holds what one made alone holds.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_table_written_on_two_threads_is_resident_and_holds_its_hashes() {
        for helper in [true, false] {
            let mut t = BigSeen::with_capacity(917_504, helper);
            let table = 8 << 20;
            // (its huge pages are a mapping of their own, from the table's start)
            let rss = test_support::mapping_rss(t.slots[t.skew..].as_ptr() as usize);
            assert!(rss >= table, "helper {helper}: {rss} bytes resident");
            let vs = values(100_000, 9);
            assert!(vs.iter().all(|&v| t.insert(v) == Some(true)));
            assert!(
                vs.iter()
                    .all(|&v| t.contains(v) && t.insert(v) == Some(false))
            );
            assert!(values(10_000, 10).into_iter().all(|v| !t.contains(v)));
        }
    }

    /// A line's first empty slot is found after every count of taken ones before it, and a
    /// tag is found in every slot it may be in.
    #[test]
    fn a_lines_first_empty_slot_and_its_tags_are_found() {
        for taken in 0..LINE {
            let mut line = [0u64; LINE];
            for (i, s) in line.iter_mut().enumerate().take(taken) {
                *s = 100 + i as u64;
            }
            assert_eq!(super::first_empty(&line), taken);
            for i in 0..LINE {
                let t = 100 + i as u64;
                assert_eq!(
                    super::line_holds(&line, t),
                    i < taken,
                    "{taken} taken, tag {t}"
                );
            }
        }
        assert!(super::line_holds(&[7; LINE], 7));
        assert!(!super::line_holds(&[7; LINE], 8));
    }

    #[test]
    fn a_big_table_finds_every_duplicate_up_to_its_load_and_nothing_else() {
        let n = 200_000;
        let mut t = BigSeen::with_capacity(n, false);
        assert!(t.capacity() >= n && t.capacity() < 2 * n);
        let vs = values(n, 1);
        for &v in &vs {
            assert_eq!(t.insert(v), Some(true), "{v:x} taken for a duplicate");
        }
        assert_eq!(t.len, n);
        for &v in vs.iter().step_by(7) {
            assert!(
                t.insert(v) == Some(false) && t.contains(v),
                "{v:x} not found again"
            );
        }
        for v in values(50_000, 2) {
            assert!(!t.contains(v), "{v:x} found but never added");
        }
        assert_eq!(t.len, n);
        // full: a hash held is found, a new one is refused, not taken for a duplicate
        let mut full = BigSeen::with_capacity(100, false);
        let vs = values(full.capacity(), 3);
        for &v in &vs {
            assert_eq!(full.insert(v), Some(true));
        }
        assert_eq!(full.insert(vs[5]), Some(false));
        assert!(values(100, 4).into_iter().all(|v| full.insert(v).is_none()));
        assert_eq!(full.len, vs.len());
    }

    /// The filter in front of a full table: every hash held passes it, and it turns most
    /// hashes never added away before the table is read (about 3 % pass at the table's full
    /// load), a search past the limit finds what the table holds whether or not the filter
    /// let it through, and a table too small for a filter finds everything as before.
    #[test]
    fn the_filter_passes_every_hash_held_and_few_others() {
        let mut t = BigSeen::with_capacity(917_504, false);
        // an eighth of the table: a block of 64 bytes for eight lines of 64
        assert_eq!(t.filter.len() * 8, t.lines);
        let vs = values(t.capacity(), 11);
        for &v in &vs {
            assert_eq!(t.insert(v), Some(true));
        }
        assert!(vs.iter().all(|&v| t.may_hold(v) && t.contains(v)));
        let others = values(200_000, 12);
        let passed = others.iter().filter(|&&v| t.may_hold(v)).count();
        assert!(
            passed < others.len() / 20,
            "{passed} of {} hashes never added passed the filter",
            others.len()
        );
        assert!(others.iter().all(|&v| !t.contains(v)));
        // full: what it holds is still found, past the filter
        assert_eq!(t.insert(vs[77]), Some(false));
        assert!(t.insert(others[0]).is_none());

        let mut small = BigSeen::with_capacity(20, false);
        assert!(small.filter.is_empty());
        let vs = values(20, 13);
        for &v in &vs {
            assert_eq!(small.insert(v), Some(true));
        }
        assert!(vs.iter().all(|&v| small.contains(v)));
        assert!(values(1000, 14).into_iter().all(|v| !small.contains(v)));
    }

    /// A table of [`HUGE_TABLE`] bytes or more starts at a huge page's edge, and its pages are
    /// advised to be huge (`hg`, whether or not the kernel has any to give, where it has
    /// transparent huge pages at all and they are not turned off for this process); a smaller
    /// one starts at a cache line's. Both find what they hold. (Whether a small table's pages
    /// carry the advice is not asserted: the allocator may put it where a big one was.)
    #[cfg(target_os = "linux")]
    #[test]
    fn a_big_table_asks_for_huge_pages() {
        use super::{HUGE_PAGE, HUGE_TABLE, LINE};
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let advisable = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists()
            && !status
                .lines()
                .any(|l| l.split_whitespace().eq(["THP_enabled:", "0"]));
        for (n, huge) in [(600_000, true), (70_000, false)] {
            let mut t = BigSeen::with_capacity(n, false);
            let vs = values(n, 5);
            for &v in &vs {
                assert_eq!(t.insert(v), Some(true));
            }
            let bytes = t.lines * LINE * size_of::<u64>();
            assert_eq!(bytes >= HUGE_TABLE, huge, "{n} members: {bytes} bytes");
            let start = t.slots[t.skew..].as_ptr() as usize;
            let align = if huge { HUGE_PAGE } else { 64 };
            assert_eq!(start % align, 0, "{n} members: table at {start:#x}");
            if huge && advisable {
                let flags = test_support::smaps_field(start + bytes / 2, "VmFlags:");
                assert!(
                    flags.split(' ').any(|f| f == "hg"),
                    "{n} members: VmFlags {flags}"
                );
            }
            assert!(vs.iter().step_by(13).all(|&v| t.contains(v)));
            assert!(values(1_000, 6).iter().all(|&v| !t.contains(v)));
        }
    }

    #[test]
    fn hashes_sharing_a_home_line_are_all_found_past_full_lines() {
        // every value has the same high bits: one home line, long probes through full lines
        let mut t = BigSeen::with_capacity(1 << 12, false);
        let vs: Vec<u128> = values(3_000, 3)
            .into_iter()
            .map(|v| (v & u128::from(u64::MAX)) | (5 << 64))
            .collect();
        for &v in &vs {
            assert_eq!(t.insert(v), Some(true));
        }
        for &v in &vs {
            assert!(t.contains(v) && t.insert(v) == Some(false));
        }
        for v in values(3_000, 4) {
            let v = (v & u128::from(u64::MAX)) | (5 << 64);
            assert!(!t.contains(v));
        }
    }

    /// The hash 0 (whose tag is not 0) is held like any other, before and after the members
    /// move into the big table; so is 1.
    #[test]
    fn the_hash_zero_is_a_member_like_any_other() {
        for n in [10, 2 * SEEN_FIRST] {
            let mut s = Seen::with_capacity(n);
            assert!(!s.contains(0));
            assert!(s.insert(0));
            assert!(s.contains(0) && !s.insert(0));
            assert!(!s.contains(1));
            assert!(s.insert(1) && !s.insert(1));
            assert_eq!(s.len(), 2);
            for v in values(SEEN_FIRST, 8) {
                assert!(s.insert(v));
            }
            assert_eq!(s.is_big(), n > SEEN_FIRST, "{n}");
            assert!(s.contains(0) && !s.insert(0) && s.contains(1) && !s.insert(1));
            assert_eq!(s.len(), SEEN_FIRST + 2);
        }
    }

    /// A value that announces more than [`SEEN_FIRST`] members holds no more than
    /// [`SEEN_MOVE`] of them in its `HashSet` before its table is made, and a member seen
    /// before the move is found after it, at any distance; one that announces up to
    /// [`SEEN_FIRST`] keeps them all in the `HashSet`.
    #[test]
    fn members_seen_before_the_move_into_the_big_table_are_found_after_it() {
        let mut s = Seen::with_capacity(SEEN_FIRST + 1);
        assert!(s.small.capacity() < 2 * SEEN_MOVE);
        let vs = values(3 * SEEN_MOVE, 9);
        for (i, &v) in vs.iter().enumerate() {
            assert_eq!(s.is_big(), i >= SEEN_MOVE, "{i}");
            assert!(s.insert(v), "{i}");
        }
        assert!(s.small.is_empty() && s.big.len == vs.len());
        assert!(vs.iter().all(|&v| s.contains(v)));
        // the first member, the last before the move and the first after it, again
        for i in [0, SEEN_MOVE - 1, SEEN_MOVE] {
            assert_eq!(s.check(vs[i], usize::MAX), (true, false), "{i}");
        }
        let mut small = Seen::with_capacity(SEEN_FIRST);
        for (i, &v) in values(SEEN_FIRST, 10).iter().enumerate() {
            assert!(small.insert(v), "{i}");
        }
        assert!(!small.is_big() && small.len() == SEEN_FIRST);
    }

    /// Members go into a big table once [`SEEN_MOVE`] came of a value that announced more
    /// than [`SEEN_FIRST`]; past what it announced, beside it. Every one is found, in either
    /// place.
    #[test]
    fn a_value_that_brings_more_members_than_it_announced_grows_its_table() {
        let mut s = Seen::with_capacity(100_000);
        let vs = values(300_000, 5);
        for (i, &v) in vs.iter().enumerate() {
            assert_eq!(s.is_big(), i >= SEEN_MOVE, "{i}");
            assert!(s.insert(v), "{i}");
        }
        assert!(vs.iter().all(|&v| s.contains(v)));
        assert!(vs.iter().step_by(11).all(|&v| !s.insert(v)));
        assert!(values(10_000, 6).iter().all(|&v| !s.contains(v)));
        assert_eq!(s.len(), vs.len());
        assert!(s.big.len == s.big.capacity() && s.small.len() == vs.len() - s.big.len);
    }

    #[test]
    fn checksums_of_parts_combine_into_the_checksum_of_the_whole() {
        let data: Vec<u8> = (0..70_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 1000, 4096, 65_537, 69_999, 70_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                super::crc64_combine(crc64(a), crc64(b), b.len() as u64),
                crc64(&data),
                "cut at {cut}"
            );
        }
        // three parts, combined in order
        let (a, rest) = data.split_at(123);
        let (b, c) = rest.split_at(40_000);
        let ab = super::crc64_combine(crc64(a), crc64(b), b.len() as u64);
        assert_eq!(
            super::crc64_combine(ab, crc64(c), c.len() as u64),
            crc64(&data)
        );
    }

    #[test]
    fn pieces_summed_in_place_give_the_checksum_of_what_was_added() {
        // pieces of a process-long input, one after the other there (summed in place) or
        // not (a gap, a step back), and pieces from elsewhere (gathered): the sum is that
        // of everything added, in order, whatever the way each went
        let whole: &'static [u8] = Box::leak(
            values(6_000, 3)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into_boxed_slice(),
        );
        let elsewhere: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 1) as u8).collect();
        let mut crc = Crc::new();
        let mut added = Vec::new();
        let mut at = 0;
        for (i, &n) in [5, 300, CRC_BLOCK, 1, CRC_BLOCK - 2, 7000, 0, 40, 9000, 3]
            .iter()
            .cycle()
            .take(60)
            .enumerate()
        {
            let n = n.min(whole.len() - at);
            let piece: &[u8] = match i % 5 {
                // from elsewhere
                3 => &elsewhere[i * 100..i * 100 + n.min(5000)],
                // a gap before it
                4 => {
                    at = (at + 17).min(whole.len() - n);
                    &whole[at..at + n]
                }
                // a step back
                2 if at > 50 => {
                    at -= 50;
                    &whole[at..at + n]
                }
                _ => &whole[at..at + n],
            };
            if i % 5 != 3 {
                at += n;
            }
            crc.update_within(piece, Some(whole));
            added.extend_from_slice(piece);
            if i % 11 == 0 {
                // a sum taken on the way does not change what comes after
                assert_eq!(crc.finalize(), crc64(&added), "after piece {i}");
            }
            if at + 10_000 > whole.len() {
                at = 0;
            }
        }
        assert_eq!(crc.finalize(), crc64(&added));
        // and pieces of memory that is not the input's go the gathering way
        let mut crc = Crc::new();
        crc.update_within(&elsewhere[..100], Some(whole));
        crc.update_within(&elsewhere[100..], Some(whole));
        assert_eq!(crc.finalize(), crc64(&elsewhere));
    }

    #[test]
    fn a_checksum_gathered_in_pieces_is_the_checksum_of_the_whole() {
        let data: Vec<u8> = values(2_000, 7)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // pieces of every size around the block's: empty ones, ones that just fit, just do
        // not, and longer ones, which are summed at once
        let sizes = [
            0,
            1,
            7,
            CRC_BLOCK - 1,
            1,
            CRC_BLOCK,
            0,
            CRC_BLOCK + 1,
            300,
            2,
            5000,
        ];
        let mut crc = Crc::new();
        let mut at = 0;
        let mut sums = Vec::new();
        for &n in sizes.iter().cycle() {
            let n = n.min(data.len() - at);
            crc.update(&data[at..at + n]);
            at += n;
            if sums.len() < 3 {
                // a sum taken on the way does not change what comes after
                sums.push((at, crc.finalize()));
            }
            if at == data.len() {
                break;
            }
        }
        assert_eq!(crc.finalize(), crc64(&data));
        for (at, sum) in sums {
            assert_eq!(sum, crc64(&data[..at]), "the sum of the first {at} bytes");
        }
    }
}
