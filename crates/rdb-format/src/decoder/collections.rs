//! Collections element by element: lists, sets, sorted sets, hashes, and the packed blobs
//! (ziplist, listpack, intset, zipmap) with their duplicate and order checks.

use super::*;

/// Walks a blob-encoded value and checks its shape; builds the value when `build`.
/// Buffers reused from one blob to the next.
#[derive(Debug, Default)]
pub(super) struct BlobScratch {
    pub(super) raws: Vec<encodings::Raw>,
    /// 64-bit hashes of the members' texts of a blob too big for [`any_equal`]'s table on
    /// the stack: sorted to find duplicates.
    pub(super) hashes: Vec<u64>,
    /// A sorted set's scores and a hash's fields' TTLs, for a blob handed over borrowed
    /// ([`PackedRecord`]).
    pub(super) scores: Vec<f64>,
    pub(super) ttls: Vec<Option<u64>>,
}

/// The text of a blob element (integers formatted into `buf`).
pub(super) fn raw_text<'a>(
    r: encodings::Raw,
    blob: &'a [u8],
    buf: &'a mut itoa::Buffer,
) -> &'a [u8] {
    match r {
        encodings::Raw::Range(a, e) => &blob[a..e],
        encodings::Raw::Int(i) => buf.format(i).as_bytes(),
    }
}

/// Walks a blob-encoded value and checks it as [`decode_blob`] does, without building it:
/// the blob may be any bytes (an LZF blob's, decompressed into a buffer kept for the next).
/// Its elements are left in `scratch.raws`.
pub(super) fn check_blob(ty: u8, blob: &[u8], scratch: &mut BlobScratch) -> Result<(), BlobError> {
    let per = walk_blob(ty, blob, scratch)?;
    // what building the value checks of its scores and TTLs
    for c in scratch.raws.chunks_exact(per) {
        match ty {
            12 | 17 => {
                if let encodings::Raw::Range(..) = c[1] {
                    if !crate::cursor::is_double(c[1].bytes(blob)) {
                        return Err(bad_elements("score is not a number"));
                    }
                }
            }
            23 | 25 => {
                ttl(c[2], blob)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// [`check_blob`], a small listpack told first in one pass ([`listpack_passes`]) unless its
/// elements are wanted in `scratch.raws` afterwards (`keep`).
#[inline]
pub(super) fn check_blob_quick(
    ty: u8,
    blob: &[u8],
    scratch: &mut BlobScratch,
    keep: bool,
) -> Result<(), BlobError> {
    if !keep && listpack_passes(ty, blob) {
        return Ok(());
    }
    check_blob(ty, blob, scratch)
}

/// Whether a small listpack of a hash (16), sorted set (17) or set (20) passes every check
/// [`check_blob`] makes, told in one pass without its elements kept: `false` means only that
/// [`check_blob`] must tell (anything but short strings and small integers, a count of
/// 65535, more members than [`STACK_TABLE`], a possible duplicate, a score to parse, any
/// damage), so its errors and their order are its own. Building a list of the elements, then
/// hashing them and checking scores in passes of their own, was a sixth of checking a file of
/// small hashes.
pub(super) fn listpack_passes(ty: u8, blob: &[u8]) -> bool {
    match ty {
        16 => quick_listpack::<2, true, false>(blob),
        17 => quick_listpack::<2, true, true>(blob),
        20 => quick_listpack::<1, true, false>(blob),
        _ => false,
    }
}

/// Whether a quicklist's listpack node walks as [`walk_node`] walks it, told the same way as
/// [`listpack_passes`] (a list's elements have no duplicate check): `false` means only that
/// `walk_node` must tell. Walked through `walk_node`, whose count and longest element a
/// check does not need, it was a third of checking a file of small lists.
pub(super) fn node_walks(blob: &[u8]) -> bool {
    quick_listpack::<1, false, false>(blob)
}

/// [`listpack_passes`] and [`node_walks`]: entries of `PER` elements, the first of each a
/// member whose duplicates are looked for when `DUPS`, the second a score when `SCORES`.
fn quick_listpack<const PER: usize, const DUPS: bool, const SCORES: bool>(blob: &[u8]) -> bool {
    let n = blob.len();
    if n < 7 || blob[n - 1] != 0xFF || crate::packed::le(&blob[0..4]) as usize != n {
        return false;
    }
    let numele = crate::packed::le(&blob[4..6]) as usize;
    let members = numele / PER;
    if numele == 0xFFFF || numele % PER != 0 || (DUPS && members > STACK_TABLE) {
        return false;
    }
    let mut table = (DUPS && members > 1).then(|| StackTable::new(members));
    let (mut pos, mut i) = (6, 0);
    while pos < n - 1 {
        let enc = blob[pos];
        let len = match enc {
            0..=0x7f => 1,
            0x80..=0xbf => 1 + usize::from(enc & 0x3f),
            _ => return false,
        };
        // the one-byte back-length, before the end byte
        if pos + len >= n - 1 || usize::from(blob[pos + len]) != len {
            return false;
        }
        if i % PER == 0 {
            if let Some(table) = &mut table {
                let h = if enc < 0x80 {
                    xxhash_rust::xxh3::xxh3_64(itoa::Buffer::new().format(enc).as_bytes())
                } else {
                    xxhash_rust::xxh3::xxh3_64(&blob[pos + 1..pos + len])
                };
                if table.seen(h) {
                    return false;
                }
            }
        } else if SCORES
            && enc >= 0x80
            && !crate::cursor::is_double_within(blob, pos + 1, pos + len)
        {
            return false;
        }
        pos += len + 1;
        i += 1;
    }
    pos == n - 1 && i == numele
}

/// Walks a blob-encoded value into `scratch.raws`, with the checks of its encoding and of its
/// members' duplicates; returns how many elements an entry is ([`blob_per`]).
pub(super) fn walk_blob(
    ty: u8,
    blob: &[u8],
    scratch: &mut BlobScratch,
) -> Result<usize, BlobError> {
    let BlobScratch { raws, hashes, .. } = scratch;
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
    let per = blob_per(ty);
    if raws.len() % per != 0 {
        return Err(bad_elements(match per {
            2 => "odd number of elements in a map or sorted set",
            _ => "hash listpack with TTLs is not made of triples",
        }));
    }
    // members of sets, fields of hashes and members of sorted sets are unique (Redis checks
    // them in every encoding); an intset checked its own order already
    if ty != 10 && ty != 11 && raws.len() > per {
        // hash every member's text and look for two equal hashes; only then compare texts
        let mut text = itoa::Buffer::new();
        let hash = |r: &encodings::Raw, text: &mut itoa::Buffer| {
            xxhash_rust::xxh3::xxh3_64(raw_text(*r, blob, text))
        };
        let members = raws.iter().step_by(per).map(|r| hash(r, &mut text));
        if any_equal(members, hashes) {
            // a duplicate, or a 64-bit collision of two texts: which members, with their indexes
            let mut hashes: Vec<(u64, u32)> = (raws.iter().step_by(per).enumerate())
                .map(|(i, r)| (hash(r, &mut text), i as u32))
                .collect();
            hashes.sort_unstable();
            let mut other = itoa::Buffer::new();
            // within a run of equal hashes, every pair (a 64-bit collision of two texts is not
            // a duplicate; such runs are almost always two long)
            let pairs = hashes.chunk_by(|x, y| x.0 == y.0).flat_map(|run| {
                (0..run.len())
                    .flat_map(move |i| (i + 1..run.len()).map(move |j| (run[i].1, run[j].1)))
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
    }
    Ok(per)
}

/// Elements a blob's entry of type `ty` is made of: 2 for a hash's or sorted set's, 3 for a
/// hash's with TTLs, 1 for any other.
pub(crate) fn blob_per(ty: u8) -> usize {
    match ty {
        9 | 12 | 13 | 16 | 17 => 2,
        23 | 25 => 3,
        _ => 1,
    }
}

/// An error in a blob's elements as a whole.
fn bad_elements(why: &str) -> BlobError {
    BlobError {
        what: "element list",
        why: why.into(),
        pos: 0,
    }
}

/// A hash field's TTL in a blob: 0 for none.
fn ttl(r: encodings::Raw, blob: &[u8]) -> Result<Option<u64>, BlobError> {
    let t = r
        .as_int(blob)
        .ok_or_else(|| bad_elements("field TTL is not an integer"))?;
    Ok((t != 0).then_some(t as u64))
}

/// A sorted set's score in a blob.
fn blob_score(r: encodings::Raw, blob: &[u8]) -> Result<f64, BlobError> {
    match r {
        encodings::Raw::Int(i) => Ok(i as f64),
        r => crate::cursor::parse_double_bytes(r.bytes(blob))
            .ok_or_else(|| bad_elements("score is not a number")),
    }
}

/// The numbers among a walked blob's elements ([`walk_blob`], `scratch.raws`): a sorted
/// set's scores into `scratch.scores`, a hash's field TTLs into `scratch.ttls`; the first
/// that is not one is the error.
pub(super) fn blob_numbers(
    ty: u8,
    blob: &[u8],
    scratch: &mut BlobScratch,
) -> Result<(), BlobError> {
    let BlobScratch {
        raws, scores, ttls, ..
    } = scratch;
    scores.clear();
    ttls.clear();
    match ty {
        12 | 17 => {
            for c in raws.chunks_exact(2) {
                scores.push(blob_score(c[1], blob)?);
            }
        }
        23 | 25 => {
            for c in raws.chunks_exact(3) {
                ttls.push(ttl(c[2], blob)?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Walks a blob-encoded value and checks it ([`check_blob`]); builds the value when `build`
/// (its scores and TTLs checked, [`blob_numbers`]). Buffers reused from one blob to the next.
pub(super) fn decode_blob(
    ty: u8,
    blob: &Bytes,
    build: bool,
    scratch: &mut BlobScratch,
) -> Result<Option<Value>, BlobError> {
    if !build {
        return check_blob(ty, blob, scratch).map(|()| None);
    }
    walk_blob(ty, blob, scratch)?;
    blob_numbers(ty, blob, scratch)?;
    let BlobScratch {
        raws, scores, ttls, ..
    } = &*scratch;
    let el = |r: encodings::Raw| r.elem(blob);
    let field = |c: &[encodings::Raw], expire_ms| HashField {
        field: el(c[0]),
        value: el(c[1]),
        expire_ms,
    };
    Ok(Some(match ty {
        10 => Value::List(raws.iter().copied().map(el).collect()),
        11 | 20 => Value::Set(raws.iter().copied().map(el).collect()),
        12 | 17 => Value::SortedSet(
            raws.iter()
                .step_by(2)
                .zip(scores)
                .map(|(&m, &s)| (el(m), s))
                .collect(),
        ),
        9 | 13 | 16 => Value::Hash(raws.chunks_exact(2).map(|c| field(c, None)).collect()),
        23 | 25 => Value::Hash(
            raws.chunks_exact(3)
                .zip(ttls)
                .map(|(c, &t)| field(c, t))
                .collect(),
        ),
        _ => unreachable!("decode_blob is only called for blob types"),
    }))
}

/// The most members whose hashes [`any_equal`] puts in a table on the stack.
const STACK_TABLE: usize = 64;

/// Whether two of the hashes `it` gives are equal, or near enough (a hash's lowest bit
/// is not compared): the caller then compares the texts. Up to [`STACK_TABLE`] hashes go
/// into a small open-addressing table on the stack, at most half full (the collections these
/// encodings hold are that small, and sorting them cost more, a mispredicted branch a
/// comparison); more are sorted in `spill`.
fn any_equal(it: impl ExactSizeIterator<Item = u64>, spill: &mut Vec<u64>) -> bool {
    let n = it.len();
    if n > STACK_TABLE {
        spill.clear();
        spill.extend(it.map(|h| h | 1));
        spill.sort_unstable();
        return spill.windows(2).any(|w| w[0] == w[1]);
    }
    let mut table = StackTable::new(n);
    for h in it {
        if table.seen(h) {
            return true;
        }
    }
    false
}

/// [`any_equal`]'s table, for up to [`STACK_TABLE`] hashes: open addressing, at most half
/// full.
struct StackTable {
    slots: [u64; 2 * STACK_TABLE],
    bits: u32,
}

impl StackTable {
    /// A table for `n` hashes (at most [`STACK_TABLE`]).
    fn new(n: usize) -> Self {
        // 2^bits slots, at least twice the hashes; 0 marks an empty one (every hash kept is
        // odd)
        Self {
            slots: [0; 2 * STACK_TABLE],
            bits: (2 * n).next_power_of_two().trailing_zeros().max(3),
        }
    }

    /// Whether `h` (or `h` but for its lowest bit) was added before; adds it if not.
    fn seen(&mut self, h: u64) -> bool {
        let h = h | 1;
        let mask = (1usize << self.bits) - 1;
        // the high bits pick the slot, the next ones on when it is taken
        let mut at = (h >> (64 - self.bits)) as usize;
        loop {
            let slot = &mut self.slots[at];
            if *slot == 0 {
                *slot = h;
                return false;
            }
            if *slot == h {
                return true;
            }
            at = (at + 1) & mask;
        }
    }
}

/// How many members ahead of its turn a member's line in a big duplicate table is loaded.
pub(super) const TOUCH_AHEAD: usize = 64;

/// A sorted set's score may not be NaN.
fn check_score(r: &RawEl, base: u64) -> Result<()> {
    if let RawEl::Scored(m, score) = r {
        if score.is_nan() {
            return Err(Error::new(
                ErrorKind::Corrupt {
                    what: "sorted set",
                    why: "NaN score".into(),
                },
                base + sref_at(*m) as u64,
            ));
        }
    }
    Ok(())
}

/// The kind of value whose members `kind`'s elements are, as errors name it.
pub(super) fn member_what(kind: SeqKind) -> &'static str {
    match kind {
        SeqKind::Set => "set",
        SeqKind::Zset1 | SeqKind::Zset2 => "sorted set",
        SeqKind::StreamNodes(_) => "stream node",
        _ => "hash",
    }
}

/// The string whose duplicates an element of this kind of value may not have: a set's or
/// sorted set's member, a hash's field, a stream node's master ID.
fn member_of(kind: SeqKind, r: &RawEl) -> Option<SRef> {
    match (kind, r) {
        (SeqKind::Set, RawEl::One(m)) | (SeqKind::Zset1 | SeqKind::Zset2, RawEl::Scored(m, _)) => {
            Some(*m)
        }
        (SeqKind::Hash | SeqKind::HashTtl(_) | SeqKind::ValkeyHash2, RawEl::Two(f, _))
        | (SeqKind::Hash | SeqKind::HashTtl(_) | SeqKind::ValkeyHash2, RawEl::Ttl(_, f, _)) => {
            Some(*f)
        }
        // a node's master ID is its key in the stream's radix tree
        (SeqKind::StreamNodes(_), RawEl::Stream(id, _)) => Some(*id),
        _ => None,
    }
}

/// The next element of a collection of `kind` (the general way: any encoding of its strings).
fn parse_element(kind: SeqKind, c: &mut Cur<'_>) -> Result<RawEl, Stop> {
    match kind {
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
        SeqKind::ValkeyHash2 => valkey_hash2_field(c),
        SeqKind::Quicklist1 => c.string().map(|s| RawEl::Node(2, s)),
        SeqKind::Quicklist2 => c.len().and_then(|k| Ok(RawEl::Node(k, c.string()?))),
        SeqKind::StreamNodes(_) => c.string().and_then(|id| Ok(RawEl::Stream(id, c.string()?))),
        SeqKind::Array(_) => array_elem(c),
    }
}

/// Walks a quicklist node's blob: how many elements it holds and the longest one's length,
/// or what is wrong with it; `None` when the container is not one a quicklist of `kind` has.
fn walk_node(kind: SeqKind, container: u64, blob: &[u8]) -> Option<Result<(u64, u64), BlobError>> {
    let (mut n, mut largest) = (0u64, 0u64);
    let count = |r: encodings::Raw| {
        n += 1;
        largest = largest.max(r.text_len());
        Ok(())
    };
    let walked = match (kind, container) {
        (SeqKind::Quicklist2, 1) => return Some(Ok((1, blob.len() as u64))),
        (SeqKind::Quicklist2, 2) => encodings::listpack(blob, count),
        (SeqKind::Quicklist1, _) => encodings::ziplist(blob, count),
        _ => return None,
    };
    Some(walked.map(|()| (n, largest)))
}

/// Elements a collection has at most to be checked whole where it lies
/// ([`Decoder::check_whole_seq`]).
const WHOLE_SEQ: u64 = 1024;

/// Whether two of `hashes` (64-bit hashes of members' texts, more than [`STACK_TABLE`]: fewer
/// go into a [`StackTable`] as they come) may be one member's: equal, or equal but for the
/// lowest bit, as in [`any_equal`]. Sorts them where they are.
fn maybe_dup(hashes: &mut [u64]) -> bool {
    for h in hashes.iter_mut() {
        *h |= 1;
    }
    hashes.sort_unstable();
    hashes.windows(2).any(|w| w[0] == w[1])
}

impl Decoder {
    /// Whether a list, set, sorted set or hash (or quicklist) that is all in the input is
    /// checked there whole, in the step that reads its key ([`check_whole_seq`]): when values
    /// are only checked, and neither walked nor measured.
    ///
    /// [`check_whole_seq`]: Self::check_whole_seq
    pub(super) fn checks_whole_seqs(&self) -> bool {
        self.config.skip_values && !self.config.packed_sizes && !self.walk
    }

    /// Checks a collection of type `ty` (a list, set, sorted set, hash or quicklist) whose
    /// value `c` is at, whole where it lies: true when all of it is there, it has at most
    /// [`WHOLE_SEQ`] elements (and no more than the duplicate check's limit), and it passes
    /// every check the step-by-step way makes (its strings decompress, its nodes walk, its
    /// scores are numbers, no two members are equal), with `c` past it. The step-by-step way
    /// made a state, a box and a table of its own for each such value, and went through the
    /// decoder's loop three times (a third of checking a file of lists of 20). False for
    /// anything else, with `c` anywhere: the value then goes the step-by-step way from its
    /// start, which reports what is wrong with it (a member whose 64-bit hash is another's
    /// is compared there, by its 128-bit hash).
    pub(super) fn check_whole_seq(&self, c: &mut Cur<'_>, ty: u8) -> bool {
        let Some(kind) = SeqKind::of_type(ty) else {
            return false;
        };
        let Ok(n) = c.len() else {
            return false;
        };
        let members = kind.checks_members();
        if n == 0 || n > WHOLE_SEQ || (members && n > self.config.dup_check_limit as u64) {
            return false;
        }
        // the members' hashes: in a table on the stack as they come, as a small listpack's,
        // else in the blobs' buffer (no blob is walked meanwhile), looked at in the end
        if members && n <= STACK_TABLE as u64 {
            let mut table = StackTable::new(n as usize);
            return self.check_whole_elems(c, kind, n, |h| !table.seen(h));
        }
        let mut scratch = self.blob_raws.take();
        let hashes = &mut scratch.hashes;
        hashes.clear();
        let ok = self.check_whole_elems(c, kind, n, |h| {
            hashes.push(h);
            true
        }) && !(members && maybe_dup(hashes));
        self.blob_raws.set(scratch);
        ok
    }

    /// [`check_whole_seq`](Self::check_whole_seq)'s `n` elements, their members' 64-bit
    /// hashes given to `member` (false: a duplicate).
    fn check_whole_elems(
        &self,
        c: &mut Cur<'_>,
        kind: SeqKind,
        n: u64,
        mut member: impl FnMut(u64) -> bool,
    ) -> bool {
        let b = c.b;
        let (two, one) = match kind {
            SeqKind::Hash => (true, false),
            SeqKind::List | SeqKind::Set => (false, true),
            _ => (false, false),
        };
        for _ in 0..n {
            // short raw strings taken at once, as a step takes them
            let at = c.p;
            let short = if two || one {
                c.short_raw().and_then(|a| {
                    let a = SRef::Raw(a.0, a.1);
                    if one {
                        Some(RawEl::One(a))
                    } else {
                        c.short_raw().map(|v| RawEl::Two(a, SRef::Raw(v.0, v.1)))
                    }
                })
            } else {
                None
            };
            let r = match short {
                Some(r) => r,
                None => {
                    c.p = at;
                    match parse_element(kind, c) {
                        Ok(r) => r,
                        Err(_) => return false,
                    }
                }
            };
            // a member's text hashed (and an LZF one decompressed), a value's LZF data
            // decompressed, a node walked
            let mut hash = |s: SRef| {
                self.with_text(b, 0, s, xxhash_rust::xxh3::xxh3_64)
                    .is_ok_and(&mut member)
            };
            let ok = match r {
                RawEl::One(s) if kind == SeqKind::Set => hash(s),
                RawEl::One(s) => self.check_sref(b, 0, s).is_ok(),
                RawEl::Scored(m, score) => !score.is_nan() && hash(m),
                RawEl::Two(f, v) => hash(f) && self.check_sref(b, 0, v).is_ok(),
                RawEl::Node(container, s) => self
                    .with_text(b, 0, s, |blob| {
                        (kind == SeqKind::Quicklist2 && container == 2 && node_walks(blob))
                            || matches!(walk_node(kind, container, blob), Some(Ok(_)))
                    })
                    .unwrap_or(false),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

impl Decoder {
    /// The member of the `n`-th element of a step's input `chunk` of a collection of `kind`
    /// (which a step parsed whole before): found again for the error of a duplicate among
    /// members checked elsewhere, rather than kept for every member.
    pub(super) fn nth_member(&self, kind: SeqKind, chunk: &Bytes, n: usize) -> Option<SRef> {
        let mut c = Cur::new(chunk, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        for _ in 0..n {
            parse_element(kind, &mut c).ok()?;
        }
        member_of(kind, &parse_element(kind, &mut c).ok()?)
    }

    /// The error for the duplicate that is the `n`-th member of a step's input `chunk` (at
    /// `base`), found again there ([`nth_member`](Self::nth_member)).
    pub(super) fn nth_dup_error(&self, kind: SeqKind, chunk: &Bytes, base: u64, n: usize) -> Error {
        match self.nth_member(kind, chunk, n) {
            Some(member) => self.dup_error(member_what(kind), chunk, base, member),
            None => Error::new(
                ErrorKind::Corrupt {
                    what: "duplicate check",
                    why: format!("no member {n} in the checked step's input"),
                },
                base,
            ),
        }
    }

    pub(super) fn step_seq<S: Source>(
        &mut self,
        src: &mut S,
        mut seq: Box<SeqState>,
    ) -> Result<bool> {
        self.expect = type_name(seq.head.type_byte, self.flavor);
        if self.checks_members_only(&seq) && self.step_members(src, &mut seq)? {
            self.end_step(seq);
            return Ok(true);
        }
        let start = self.pos;
        let b = src.bytes();
        let mut c = Cur::new(b, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        let mut raws = std::mem::take(&mut self.seq_raws);
        raws.clear();
        let mut done_at = 0;
        // Parse as many whole elements as the input holds (up to a chunk's worth), then
        // consume them at once.
        let mut budget = self.step_room(&seq).saturating_sub(seq.acc.len()).max(1);
        // elements parsed; a walker keeps none of them (it only needs where they end)
        let mut taken = 0u64;
        let walk = self.walk;
        let (hash, one) = match seq.kind {
            SeqKind::Hash => (true, false),
            SeqKind::List | SeqKind::Set => (false, true),
            _ => (false, false),
        };
        // the lines ahead are loaded before the loop gets to them, as a walker's run of
        // records does: each element's place depends on the lengths before it, so the CPU
        // does not find it by itself (half of a walker's time in a big hash was that wait).
        // It goes on from where the last step stopped asking: a set of 20 members is a few
        // lines, and asking again for 8 KiB at each was a quarter of `step` on a file of such
        // sets.
        let mut ahead = self.step_ahead(start);
        while taken < seq.remaining && budget > 0 {
            prefetch_ahead(&c, &mut ahead);
            // the common elements (raw strings of under 64 bytes, all there) are put where
            // they go from here: through the `Result` below, each was stored a word at a
            // time and loaded back whole, a stalled load that was a third of this loop
            if hash || one {
                let at = c.p;
                if let Some(a) = c.short_raw() {
                    let el = if one {
                        Some(RawEl::One(SRef::Raw(a.0, a.1)))
                    } else {
                        c.short_raw()
                            .map(|b| RawEl::Two(SRef::Raw(a.0, a.1), SRef::Raw(b.0, b.1)))
                    };
                    if let Some(el) = el {
                        if !walk {
                            raws.push(el);
                        }
                        taken += 1;
                        done_at = c.p;
                        budget -= 1;
                        continue;
                    }
                }
                // anything else goes the general way, from the element's start
                c.p = at;
            }
            match parse_element(seq.kind, &mut c) {
                Ok(r) => {
                    if !walk {
                        raws.push(r);
                    }
                    taken += 1;
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
        self.seq_ahead = start.saturating_add(ahead as u64);
        if taken == 0 && seq.remaining > 0 {
            self.state = State::Seq(seq);
            self.seq_raws = raws;
            return Ok(false);
        }
        let chunk = self.consume(src, done_at);
        seq.remaining -= taken;
        // A big duplicate table: hash the batch's members first and load each one's line
        // some members ahead of its turn, so that the cache misses overlap.
        let mut hashes = std::mem::take(&mut self.seq_hashes);
        hashes.clear();
        // members checked elsewhere: their hashes go there, a step at a time, each hashed in
        // its turn (not first, as for a table here: it would be written twice)
        let mut deferred = seq.deferred.then(|| DeferredStep {
            hashes: self.step_hashes(raws.len()),
        });
        if let Some(n) = seq.defer_start.take() {
            self.deferred.push_back(Deferred::Start(n));
        }
        if seq.seen.is_big() && seq.damaged.is_none() {
            for r in &raws {
                match member_of(seq.kind, r).map(|m| self.sref_hash(&chunk, start, m)) {
                    Some(Ok(h)) => hashes.push(h),
                    // the element's own turn reports it, after those before it
                    Some(Err(_)) => break,
                    None => hashes.push(0),
                }
            }
            for &h in hashes.iter().take(TOUCH_AHEAD) {
                seq.seen.touch(h);
            }
        }
        let from = if seq.damaged.is_some() {
            0
        } else {
            self.check_plain_members(&mut seq, &chunk, &raws, &hashes, deferred.as_mut())
        };
        // the elements are read where the parse put them: moved out one by one, each was
        // stored a word at a time and loaded back whole for the calls below (a stalled load)
        for (i, &r) in raws.iter().enumerate().skip(from) {
            if self.config.packed_sizes {
                self.note_packed(&mut seq, &chunk, start, &r);
            }
            if let Some(&h) = hashes.get(i + TOUCH_AHEAD) {
                seq.seen.touch(h);
            }
            let hashed = hashes.get(i).copied();
            let res = match &mut deferred {
                Some(step) => self.check_deferred(&seq, &chunk, start, &r, hashed, step),
                None => self.check_member(&mut seq, &chunk, start, &r, hashed),
            }
            .and_then(|()| self.push_raw(&mut seq, &chunk, start, r));
            if let Err(e) = res {
                let e = e.with_context(&self.ctx);
                if let Some(step) = deferred.take() {
                    // the members before it may hold a duplicate, which comes first
                    self.issue_step(step, &chunk, start, seq.kind);
                    self.seq_hashes = hashes;
                    return Err(e);
                }
                if self.config.recovery == Recovery::Skip && seq.damaged.is_none() {
                    seq.damaged = Some(e);
                } else if seq.damaged.is_none() {
                    return Err(e);
                }
            }
        }
        if let Some(step) = deferred {
            self.issue_step(step, &chunk, start, seq.kind);
        }
        raws.clear();
        self.seq_raws = raws;
        self.seq_hashes = hashes;
        self.end_step(seq);
        Ok(true)
    }

    /// Whether a step of `seq` has nothing to do with its elements but check its members
    /// for duplicates: a set's or hash's, values only checked, not walked, not damaged.
    fn checks_members_only(&self, seq: &SeqState) -> bool {
        matches!(seq.kind, SeqKind::Set | SeqKind::Hash)
            && self.config.skip_values
            && !self.config.packed_sizes
            && !self.walk
            && seq.damaged.is_none()
    }

    /// A step of a set or hash whose members are only checked
    /// ([`checks_members_only`](Self::checks_members_only)), over its elements of short raw
    /// strings: each member hashed as it is parsed, and only its hash kept (checked here, or
    /// handed to the check elsewhere). False, with nothing consumed, when the first element
    /// is of another kind or not all there: the general way takes the step. The elements
    /// were kept for a second pass, which hashed them, and a third, which checked them:
    /// about 440 instructions a field of the bench's big hash went into that.
    fn step_members<S: Source>(&mut self, src: &mut S, seq: &mut SeqState) -> Result<bool> {
        let start = self.pos;
        let b = src.bytes();
        let mut c = Cur::new(b, self.config.limits.max_string);
        let pair = seq.kind == SeqKind::Hash;
        let mut budget = self.step_room(seq).max(1);
        let mut hashes = std::mem::take(&mut self.seq_hashes);
        hashes.clear();
        let mut ahead = self.step_ahead(start);
        let mut done_at = 0;
        while (hashes.len() as u64) < seq.remaining && budget > 0 {
            prefetch_ahead(&c, &mut ahead);
            let Some((a, e)) = c.short_raw() else {
                break;
            };
            if pair && c.short_raw().is_none() {
                break;
            }
            hashes.push(xxhash_rust::xxh3::xxh3_128(&b[a..e]));
            done_at = c.p;
            budget -= 1;
        }
        self.seq_ahead = start.saturating_add(ahead as u64);
        if hashes.is_empty() {
            self.seq_hashes = hashes;
            return Ok(false);
        }
        let chunk = self.consume(src, done_at);
        seq.remaining -= hashes.len() as u64;
        if let Some(n) = seq.defer_start.take() {
            self.deferred.push_back(Deferred::Start(n));
        }
        if seq.deferred {
            // (the next step's hashes get room for as many at once)
            self.seq_hashes = self.step_hashes(hashes.len());
            self.issue_step(DeferredStep { hashes }, &chunk, start, seq.kind);
            return Ok(true);
        }
        let limit = self.config.dup_check_limit;
        let big = seq.seen.is_big();
        if big {
            for &h in hashes.iter().take(TOUCH_AHEAD) {
                seq.seen.touch(h);
            }
        }
        for (i, &h) in hashes.iter().enumerate() {
            if big {
                if let Some(&ahead) = hashes.get(i + TOUCH_AHEAD) {
                    seq.seen.touch(ahead);
                }
            }
            let (dup, partial) = seq.seen.check(h, limit);
            self.partial_checks += u64::from(partial);
            if dup {
                let e = self
                    .nth_dup_error(seq.kind, &chunk, start, i)
                    .with_context(&self.ctx);
                if self.config.recovery == Recovery::Skip {
                    seq.damaged = Some(e);
                    break;
                }
                self.seq_hashes = hashes;
                return Err(e);
            }
        }
        self.seq_hashes = hashes;
        Ok(true)
    }

    /// Elements a step of `seq` takes at most: up to the first chunk's threshold (one past
    /// it), then a chunk's worth.
    fn step_room(&self, seq: &SeqState) -> usize {
        if seq.started {
            self.config.chunk_size
        } else {
            self.config.chunk_threshold.saturating_add(1)
        }
    }

    /// How far past `start` the last step asked for the input's lines
    /// ([`prefetch_ahead`]): 0 for a mark behind it or far past it, another batch's or
    /// buffer's.
    fn step_ahead(&self, start: u64) -> usize {
        match usize::try_from(self.seq_ahead.wrapping_sub(start)) {
            Ok(d) if d <= WALK_AHEAD + 64 => d,
            _ => 0,
        }
    }

    /// What every step of a collection ends with, once its elements are taken: the chunks
    /// of a value delivered in pieces, and the value's end once no element remains.
    fn end_step(&mut self, mut seq: Box<SeqState>) {
        if seq.damaged.is_some() {
            seq.acc.take();
        }
        if !seq.started && seq.acc.len() > self.config.chunk_threshold && seq.damaged.is_none() {
            seq.started = true;
            self.out.push_back(Item::KeyStart(seq.head.clone()));
        }
        if seq.started {
            // Chunks are cut at exact multiples of chunk_size, whatever the input's split.
            seq.acc
                .take_chunks(self.config.chunk_size, seq.remaining, &mut self.out);
        }
        if seq.remaining == 0 {
            if let SeqKind::StreamNodes(_) = seq.kind {
                self.state = State::StreamTail(seq);
                return;
            }
            self.finish_seq(seq, None);
        } else {
            self.state = State::Seq(seq);
        }
    }

    /// Splits an oversized chunk into chunks of `chunk_size` elements.
    pub(super) fn push_chunks(&mut self, chunk: Chunk) {
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

    /// Whether this value is a quicklist left unbuilt ([`Config::build_packed`] off).
    fn skips_packed(&self, seq: &SeqState) -> bool {
        !self.config.build_packed && matches!(seq.kind, SeqKind::Quicklist1 | SeqKind::Quicklist2)
    }

    /// Records a quicklist node's or stream node's blob ([`Config::packed_sizes`]): its
    /// decompressed size, and a stream node's master ID when it reads as one (a bad one is
    /// the element check's to report).
    fn note_packed(&self, seq: &mut SeqState, chunk: &Bytes, base: u64, r: &RawEl) {
        let size = |s: SRef| match s {
            SRef::Raw(a, b) => b.saturating_sub(a) as u64,
            SRef::Lzf(_, _, n) => n,
            SRef::Int(..) => 0,
        };
        let (bytes, node) = match *r {
            RawEl::Node(_, s) => (size(s), None),
            RawEl::Stream(id, lp) => {
                let node = self
                    .mat_bytes(chunk, base, id)
                    .ok()
                    .and_then(|b| stream_id(&b).ok());
                (size(lp), node)
            }
            _ => return,
        };
        seq.packed.get_or_insert_with(Box::default).add(bytes, node);
    }

    #[allow(clippy::boxed_local)] // the state machine holds it boxed; unboxing would copy it
    pub(super) fn finish_seq(&mut self, mut seq: Box<SeqState>, meta: Option<StreamMeta>) {
        if let Some(p) = seq.packed.take() {
            if seq.damaged.is_none() {
                self.out.push_back(Item::Packed(p));
            }
        }
        if let Some(error) = seq.damaged.take() {
            self.out.push_back(Item::Skipped {
                key: seq.head.key.clone(),
                error,
            });
        } else if self.config.skip_values || self.skips_packed(&seq) {
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
    pub(super) fn check_raw(
        &self,
        seq: &mut SeqState,
        chunk: &Bytes,
        base: u64,
        r: RawEl,
    ) -> Result<()> {
        let blob_err = |e: BlobError, s: SRef| blob_error(e, base, s);
        match r {
            RawEl::One(s) | RawEl::Scored(s, _) => self.check_sref(chunk, base, s),
            RawEl::Array(_, ArrRaw::Str(s) | ArrRaw::Short(s)) => self.check_sref(chunk, base, s),
            RawEl::Array(..) => Ok(()),
            RawEl::Two(f, v) | RawEl::Ttl(_, f, v) => {
                self.check_sref(chunk, base, f)?;
                self.check_sref(chunk, base, v)
            }
            RawEl::Node(container, s) => self
                .with_text(chunk, base, s, |blob| {
                    self.check_node(seq, base, container, s, blob)
                })
                .and_then(|checked| checked),
            RawEl::Stream(id, lp_ref) => {
                let id = self.mat_bytes(chunk, base, id)?;
                let lp = self.mat_bytes(chunk, base, lp_ref)?;
                stream_node(&id, &lp, None).map_err(|e| blob_err(e, lp_ref))
            }
        }
    }

    /// Checks a quicklist node's blob (read where it lies, or decompressed into a kept
    /// buffer: [`with_text`](Self::with_text)).
    fn check_node(
        &self,
        seq: &mut SeqState,
        base: u64,
        container: u64,
        s: SRef,
        blob: &[u8],
    ) -> Result<()> {
        let (n, largest) = walk_node(seq.kind, container, blob)
            .ok_or_else(|| bad_container(container, base + sref_at(s) as u64))?
            .map_err(|e| blob_error(e, base, s))?;
        if let Some(p) = seq.packed.as_mut() {
            p.elements(n, largest);
        }
        Ok(())
    }

    /// [`check_member`](Self::check_member) and [`push_raw`](Self::push_raw) of the first of
    /// `raws` of a value that is only checked, while they are a set's or hash's raw strings
    /// or a sorted set's raw member with a score that is a number (most are): nothing of
    /// them is left to check but the member's duplicates. (Each one through both calls, the
    /// check of a set of short strings was 250 instructions a member.) Returns how many it
    /// checked: the rest, from one of another kind or one seen before (not added), go the
    /// general way. `hashes` are the members' when their table is big (loaded ahead). When
    /// the duplicate check is done elsewhere, the hashes go to its `step` instead.
    fn check_plain_members(
        &mut self,
        seq: &mut SeqState,
        chunk: &Bytes,
        raws: &[RawEl],
        hashes: &[u128],
        mut step: Option<&mut DeferredStep>,
    ) -> usize {
        if !self.config.skip_values
            || self.config.packed_sizes
            || !matches!(
                seq.kind,
                SeqKind::Set | SeqKind::Hash | SeqKind::Zset1 | SeqKind::Zset2
            )
        {
            return 0;
        }
        let limit = self.config.dup_check_limit;
        for (i, r) in raws.iter().enumerate() {
            let (RawEl::One(SRef::Raw(a, b))
            | RawEl::Two(SRef::Raw(a, b), SRef::Raw(..))
            | RawEl::Scored(SRef::Raw(a, b), _)) = *r
            else {
                return i;
            };
            if let RawEl::Scored(_, score) = r {
                if score.is_nan() {
                    return i;
                }
            }
            let h = match hashes.get(i) {
                Some(&h) => {
                    if let Some(&ahead) = hashes.get(i + TOUCH_AHEAD) {
                        seq.seen.touch(ahead);
                    }
                    h
                }
                None => xxhash_rust::xxh3::xxh3_128(&chunk[a..b]),
            };
            if let Some(step) = step.as_mut() {
                step.hashes.push(h);
                continue;
            }
            let (dup, partial) = seq.seen.check(h, limit);
            self.partial_checks += u64::from(partial);
            if dup {
                return i;
            }
        }
        raws.len()
    }

    /// What Redis refuses in a set, hash or sorted set element by element: a member seen
    /// before, a NaN score.
    pub(super) fn check_member(
        &mut self,
        seq: &mut SeqState,
        chunk: &Bytes,
        base: u64,
        r: &RawEl,
        hashed: Option<u128>,
    ) -> Result<()> {
        // the member and its hash are found here, not returned together by a function: that
        // result, stored a word at a time, was loaded back whole (a stalled load a member,
        // four fifths of this function's samples on a big hash)
        check_score(r, base)?;
        let Some(member) = member_of(seq.kind, r) else {
            return Ok(());
        };
        let h = match hashed {
            Some(h) => h,
            None => self.sref_hash(chunk, base, member)?,
        };
        let (dup, partial) = seq.seen.check(h, self.config.dup_check_limit);
        self.partial_checks += u64::from(partial);
        if dup {
            return Err(self.dup_error(member_what(seq.kind), chunk, base, member));
        }
        Ok(())
    }

    /// What [`check_member`](Self::check_member) checks of a member whose duplicate check is
    /// done elsewhere ([`Decoder::defer_member_checks`]): its score; its hash goes to `step`.
    fn check_deferred(
        &self,
        seq: &SeqState,
        chunk: &Bytes,
        base: u64,
        r: &RawEl,
        hashed: Option<u128>,
        step: &mut DeferredStep,
    ) -> Result<()> {
        // (found here, as in `check_member`: a result of both, loaded back whole, was a fifth
        // of a big hash's decoding step)
        check_score(r, base)?;
        let Some(member) = member_of(seq.kind, r) else {
            return Ok(());
        };
        let h = match hashed {
            Some(h) => h,
            None => self.sref_hash(chunk, base, member)?,
        };
        step.hashes.push(h);
        Ok(())
    }

    /// The error for `member` (of a `what`, read from `chunk` at `base`), seen before.
    pub(super) fn dup_error(
        &self,
        what: &'static str,
        chunk: &Bytes,
        base: u64,
        member: SRef,
    ) -> Error {
        let text = match self.mat_bytes(chunk, base, member) {
            Ok(t) => t,
            Err(e) => return e,
        };
        Error::new(
            ErrorKind::Corrupt {
                what,
                why: format!(
                    "duplicate {} {}",
                    match what {
                        "hash" => "field",
                        "stream node" => "master ID",
                        _ => "member",
                    },
                    crate::error::Shown(&text)
                ),
            },
            base + sref_at(member) as u64,
        )
    }

    /// The 128-bit hash of a string's text (integers as decimal, LZF decompressed and checked).
    pub(super) fn sref_hash(&self, chunk: &[u8], base: u64, r: SRef) -> Result<u128> {
        self.with_text(chunk, base, r, xxhash_rust::xxh3::xxh3_128)
    }

    /// Runs `f` on the text of string `r` of `chunk` (read at `base`): its bytes where they
    /// lie when raw, an integer's decimal, or LZF data decompressed into the decoder's kept
    /// buffer (a fresh one for each checked quicklist node was an allocation, its clearing
    /// and its freeing); the LZF error when it does not decompress.
    #[inline(always)]
    pub(super) fn with_text<R>(
        &self,
        chunk: &[u8],
        base: u64,
        r: SRef,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        match r {
            SRef::Raw(a, b) => Ok(f(&chunk[a..b])),
            SRef::Int(i, _) => Ok(f(itoa::Buffer::new().format(i).as_bytes())),
            SRef::Lzf(s, e, ulen) => {
                let mut kept = self.scratch.take();
                let got = crate::lzf::decompress_to(&chunk[s..e], ulen as usize, &mut kept).map(f);
                self.scratch.set(kept);
                got.ok_or_else(|| lzf_error(base, s, ulen))
            }
        }
    }

    /// Only LZF strings can be wrong once framed: decompress them (into a reused buffer) to
    /// be sure.
    pub(super) fn check_sref(&self, chunk: &[u8], base: u64, r: SRef) -> Result<()> {
        match r {
            SRef::Lzf(..) => self.with_text(chunk, base, r, |_| ()),
            _ => Ok(()),
        }
    }

    pub(super) fn push_raw(
        &self,
        seq: &mut SeqState,
        chunk: &Bytes,
        base: u64,
        r: RawEl,
    ) -> Result<()> {
        if self.config.skip_values || self.skips_packed(seq) {
            return self.check_raw(seq, chunk, base, r);
        }
        let blob_err = |e: BlobError, s: SRef| blob_error(e, base, s);
        match (&mut seq.acc, r) {
            // raw strings, the most common members, straight from the input: through
            // `mat`'s `Result`, each was stored a word at a time and loaded back whole (a
            // stalled load, a tenth of decoding a big hash)
            (Acc::List(v) | Acc::Set(v), RawEl::One(SRef::Raw(a, b))) => {
                v.push(Elem::Bytes(self.piece(chunk, a, b)));
            }
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
            (Acc::Zset(v), RawEl::Scored(SRef::Raw(a, b), score)) => {
                v.push((Elem::Bytes(self.piece(chunk, a, b)), score));
            }
            (Acc::Zset(v), RawEl::Scored(m, score)) => v.push((self.mat(chunk, base, m)?, score)),
            (Acc::Hash(v), RawEl::Two(SRef::Raw(a, b), SRef::Raw(c, d))) => {
                // two pushes: through one, the two ways of making the pieces met in memory
                match self.forever_of(chunk) {
                    Some(s) => push_field(
                        v,
                        Bytes::from_static(&s[a..b]),
                        Bytes::from_static(&s[c..d]),
                    ),
                    None => push_field(v, chunk.slice(a..b), chunk.slice(c..d)),
                }
            }
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
                let before = v.len();
                // room for the node's entries as its header counts them, not a doubling
                // after every few (a small list is one node)
                v.reserve(node_entries(seq.kind, container, &blob));
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
                if let Some(p) = seq.packed.as_mut() {
                    let new = &v[before..];
                    let largest = new.iter().map(|e| e.len() as u64).max().unwrap_or(0);
                    p.elements(new.len() as u64, largest);
                }
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
}

/// Pushes a hash field of two strings without an expiry, each part written where the vector
/// keeps it: `Vec::push`, not inlined for a hash field (80 bytes), took the field built on the
/// stack a word at a time and loaded it back whole, a stalled load a field (half of pushing it).
#[allow(unsafe_code)]
#[inline(always)]
fn push_field(v: &mut Vec<HashField>, field: Bytes, value: Bytes) {
    v.reserve(1);
    let len = v.len();
    let slot = v.spare_capacity_mut()[0].as_mut_ptr();
    // SAFETY: `slot` points at the vector's first free slot, within the capacity reserved
    // above, which nothing else refers to; each of its three parts is written once, in
    // place, before the length takes the slot in: the vector never holds an unwritten field.
    unsafe {
        (&raw mut (*slot).field).write(Elem::Bytes(field));
        (&raw mut (*slot).value).write(Elem::Bytes(value));
        (&raw mut (*slot).expire_ms).write(None);
        v.set_len(len + 1);
    }
}

/// The entries a quicklist node's header counts (a listpack's at bytes 4..6, a ziplist's at
/// 8..10; 65,535 where there are too many to count), at most one a byte of the node; 0 where
/// it does not say.
fn node_entries(kind: SeqKind, container: u64, blob: &[u8]) -> usize {
    let at = match (kind, container) {
        (SeqKind::Quicklist2, 2) => 4,
        (SeqKind::Quicklist1, _) => 8,
        _ => return 0,
    };
    match blob
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
    {
        Some(n) if n != u16::MAX => usize::from(n).min(blob.len()),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{STACK_TABLE, any_equal};

    /// Evenly spread 64-bit values (splitmix64).
    fn values(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
            .collect()
    }

    #[test]
    fn equal_hashes_are_found_in_the_stack_table_and_past_it() {
        let mut spill = Vec::new();
        for n in (0..=2 * STACK_TABLE + 2).chain([500, 1000]) {
            let vs = values(n, n as u64 + 1);
            assert!(!any_equal(vs.iter().copied(), &mut spill), "{n} distinct");
            for at in (0..n.saturating_sub(1)).step_by(7) {
                let mut w = vs.clone();
                w[at] = w[n - 1];
                assert!(any_equal(w.iter().copied(), &mut spill), "{n}: {at}");
            }
        }
        // hashes that share their high bits (one home slot) and 0
        let same: Vec<u64> = (0..STACK_TABLE as u64)
            .map(|i| (7 << 58) | (i << 1))
            .collect();
        assert!(!any_equal(same.iter().copied(), &mut spill));
        let mut again = same.clone();
        again.push(same[STACK_TABLE - 1]);
        assert!(any_equal(again.iter().copied(), &mut spill));
        // two hashes that differ only in their lowest bit count as equal: the texts decide
        assert!(any_equal([4, 5].into_iter(), &mut spill));
    }

    /// A listpack of `members` members of type `ty` (16 hash, 17 sorted set, 20 set): every
    /// third a small integer, the others short strings; `dup` repeats the first member last,
    /// `bad_score` gives the last a score that is no number.
    fn small_listpack(ty: u8, members: usize, dup: bool, bad_score: bool) -> Vec<u8> {
        let mut lp = crate::packed::listpack::Listpack::new();
        let member = |lp: &mut crate::packed::listpack::Listpack, m: usize| {
            if m % 3 == 0 {
                lp.int(m as i64);
            } else {
                lp.str(format!("member-{m}").as_bytes());
            }
        };
        for m in 0..members {
            member(&mut lp, if dup && m + 1 == members { 0 } else { m });
            match ty {
                16 => lp.str(format!("value {m}").as_bytes()),
                17 if bad_score && m + 1 == members => lp.str(b"1.5x"),
                17 if m % 2 == 0 => lp.int(m as i64),
                17 => lp.str(format!("{m}.5").as_bytes()),
                _ => {}
            }
        }
        lp.finish()
    }

    /// [`listpack_passes`](super::listpack_passes) takes the small listpacks of hashes,
    /// sorted sets and sets that pass [`check_blob`](super::check_blob), and says yes to no
    /// blob that `check_blob` refuses: not to one with a duplicate or a bad score, nor to any
    /// one-byte change or cut of them (where it says no, `check_blob` tells). The same for
    /// [`node_walks`](super::node_walks) and [`walk_node`](super::walk_node) on them as a
    /// list's quicklist nodes.
    #[test]
    fn a_listpack_passes_only_where_check_blob_passes_it() {
        use super::{BlobScratch, SeqKind, check_blob, listpack_passes, node_walks, walk_node};
        // a quicklist's listpack node (any listpack holds a list's elements)
        let node = |b: &[u8]| matches!(walk_node(SeqKind::Quicklist2, 2, b), Some(Ok(_)));
        let mut scratch = BlobScratch::default();
        let (mut changed, mut taken, mut nodes) = (0, 0, 0);
        for ty in [16u8, 17, 20] {
            for members in [0, 1, 2, 3, 20, STACK_TABLE, STACK_TABLE + 1] {
                let blob = small_listpack(ty, members, false, false);
                assert!(
                    check_blob(ty, &blob, &mut scratch).is_ok(),
                    "{ty} {members}"
                );
                assert!(node_walks(&blob) && node(&blob), "{ty} {members}");
                // up to the stack table's size it is taken here, past it `check_blob` tells
                assert_eq!(
                    listpack_passes(ty, &blob),
                    members <= STACK_TABLE,
                    "{ty} {members}"
                );
                let mut refused = vec![small_listpack(ty, members, true, false)];
                if ty == 17 {
                    refused.push(small_listpack(ty, members, false, true));
                }
                for bad in refused.into_iter().filter(|_| members >= 2) {
                    assert!(
                        check_blob(ty, &bad, &mut scratch).is_err(),
                        "{ty} {members}"
                    );
                    assert!(!listpack_passes(ty, &bad), "{ty} {members}");
                }
                // every byte of a small one changed, every seventh of a bigger one; and cuts
                let step = if members <= 20 { 1 } else { 7 };
                let mut variants = Vec::new();
                for at in (0..blob.len()).step_by(step) {
                    for x in [
                        0x00,
                        0x01,
                        0x3f,
                        0x7f,
                        0x80,
                        0xbf,
                        0xc0,
                        0xff,
                        blob[at] ^ 0x01,
                    ] {
                        let mut v = blob.clone();
                        v[at] = x;
                        variants.push(v);
                    }
                    variants.push(blob[..at].to_vec());
                }
                for v in variants {
                    if v == blob {
                        continue;
                    }
                    changed += 1;
                    if node_walks(&v) {
                        nodes += 1;
                        assert!(node(&v), "{ty} {members}: walked a node walk_node refuses");
                    }
                    if listpack_passes(ty, &v) {
                        taken += 1;
                        assert!(
                            check_blob(ty, &v, &mut scratch).is_ok(),
                            "{ty} {members}: passed a blob check_blob refuses: {v:?}"
                        );
                    }
                }
            }
        }
        // (some changes leave a valid listpack: another member, value or score)
        assert!(taken > 0 && taken < changed, "{taken} of {changed}");
        assert!(nodes > taken && nodes < changed, "{nodes} of {changed}");
    }
}
