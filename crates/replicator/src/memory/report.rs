//! The summary of a memory report, in bounded memory.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use super::KeyMemory;

/// Keys and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Keys.
    pub keys: u64,
    /// Estimated bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.keys += 1;
        self.bytes += bytes;
    }
}

/// One of the biggest keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopKey {
    /// Database.
    pub db: u64,
    /// The key.
    pub key: Bytes,
    /// Its type's name.
    pub value_type: &'static str,
    /// Its encoding.
    pub encoding: &'static str,
    /// Estimated bytes.
    pub size: u64,
    /// Elements.
    pub elements: u64,
}

/// A key prefix and what its keys hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixStat {
    /// The prefix, its last separator included.
    pub prefix: Bytes,
    /// How many separators it has (1 for `user:`).
    pub depth: usize,
    /// Its keys and their bytes.
    pub tally: Tally,
}

/// A key just over a compact-encoding threshold, and what the compact encoding would save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// Database.
    pub db: u64,
    /// The key.
    pub key: Bytes,
    /// The setting whose default keeps it out of the compact encoding.
    pub setting: &'static str,
    /// Its estimated bytes now.
    pub size: u64,
    /// Bytes the compact encoding would save.
    pub saves: u64,
}

/// Keys by time to live, measured from the report's "now".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlBuckets(pub [Tally; 7]);

impl TtlBuckets {
    /// The buckets' names, in order.
    pub const NAMES: [&'static str; 7] = [
        "none", "expired", "< 1 h", "< 1 d", "< 7 d", "< 30 d", ">= 30 d",
    ];

    /// The bucket of a key with this expiry, at `now_ms`.
    ///
    /// ```
    /// use replicator::memory::TtlBuckets;
    /// assert_eq!(TtlBuckets::bucket(None, 0), 0);
    /// assert_eq!(TtlBuckets::bucket(Some(5), 10), 1);
    /// assert_eq!(TtlBuckets::bucket(Some(7_200_000), 0), 3);
    /// ```
    pub fn bucket(expire_ms: Option<i64>, now_ms: i64) -> usize {
        let Some(at) = expire_ms else { return 0 };
        let left = at.saturating_sub(now_ms);
        const H: i64 = 3_600_000;
        match left {
            ..=0 => 1,
            l if l < H => 2,
            l if l < 24 * H => 3,
            l if l < 7 * 24 * H => 4,
            l if l < 30 * 24 * H => 5,
            _ => 6,
        }
    }
}

/// A bounded top-N list: the N largest by a weight, ties broken by (db, key), smaller first,
/// so the same keys in any order give the same list.
#[derive(Debug, Clone)]
struct Top<T> {
    n: usize,
    heap: BinaryHeap<Reverse<Entry<T>>>,
}

/// Which of two keys comes first among equal weights.
type Tie = Reverse<(u64, Bytes)>;

/// A heap entry: weight, tie-break and the value.
type Entry<T> = (u64, Tie, Slot<T>);

/// Carries a value through the heap without ordering by it.
#[derive(Debug, Clone)]
struct Slot<T>(T);

impl<T> PartialEq for Slot<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Slot<T> {}
impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Slot<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Top<T> {
    fn new(n: usize) -> Self {
        Self {
            n,
            heap: BinaryHeap::new(),
        }
    }

    fn push(&mut self, w: u64, db: u64, key: &Bytes, make: impl FnOnce() -> T) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() >= self.n {
            let Some(Reverse(min)) = self.heap.peek() else {
                return;
            };
            let Reverse((mdb, mkey)) = &min.1;
            // (w, Reverse((db, key))) against the smallest kept
            let worse = w
                .cmp(&min.0)
                .then_with(|| (*mdb, &mkey[..]).cmp(&(db, &key[..])));
            if worse != std::cmp::Ordering::Greater {
                return;
            }
        }
        // an owned copy: a slice of the decoder's block would keep the whole block alive
        let tie = Reverse((db, Bytes::copy_from_slice(key)));
        self.heap.push(Reverse((w, tie, Slot(make()))));
        if self.heap.len() > self.n {
            self.heap.pop();
        }
    }

    /// Largest first.
    fn sorted(&self) -> Vec<&T> {
        let mut v: Vec<_> = self.heap.iter().map(|Reverse(t)| t).collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        v.into_iter().map(|t| &t.2.0).collect()
    }
}

/// The summary of a memory report: totals per database, type and encoding, the biggest keys
/// by bytes and by elements, bytes per key prefix, a TTL histogram and encoding hints.
///
/// Bounded whatever the input: the top lists hold `top` keys each, and the prefix table at
/// most [`Report::MAX_PREFIXES`] prefixes — past that the least-used half is folded into
/// one "other" row per depth, and [`Report::folded`] counts what was folded (a folded prefix
/// that shows up again starts over, so prefix figures are then lower bounds).
///
/// ```
/// use replicator::memory::Report;
/// let r = Report::new(10, b":", 3);
/// assert_eq!(r.total_bytes(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Report {
    top_n: usize,
    sep: Vec<u8>,
    depth: usize,
    now_ms: i64,
    total: Tally,
    by_db: BTreeMap<u64, Tally>,
    /// Per (type, encoding): a handful of rows, found by a short scan.
    by_encoding: Vec<((&'static str, &'static str), Tally)>,
    last_db: Option<(u64, Tally)>,
    top_size: Top<TopKey>,
    top_elems: Top<TopKey>,
    prefixes: HashMap<Bytes, Tally, BuildHasherDefault<Fx>>,
    other: Vec<Tally>,
    folded: u64,
    no_prefix: Tally,
    ttl: TtlBuckets,
    hints: Top<Hint>,
    hint_tally: Tally,
    hint_saves: u64,
    server: String,
    max_prefixes: usize,
}

impl Report {
    /// Prefixes kept before the least-used are folded.
    pub const MAX_PREFIXES: usize = 1 << 17;

    /// A report keeping the `top` biggest keys, with prefixes cut at `sep` down to `depth`.
    pub fn new(top: usize, sep: &[u8], depth: usize) -> Self {
        Self {
            top_n: top,
            sep: sep.to_vec(),
            depth,
            now_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            total: Tally::default(),
            by_db: BTreeMap::new(),
            by_encoding: Vec::new(),
            last_db: None,
            top_size: Top::new(top),
            top_elems: Top::new(top),
            prefixes: HashMap::default(),
            other: vec![Tally::default(); depth],
            folded: 0,
            no_prefix: Tally::default(),
            ttl: TtlBuckets::default(),
            hints: Top::new(top),
            hint_tally: Tally::default(),
            hint_saves: 0,
            server: String::new(),
            max_prefixes: Self::MAX_PREFIXES,
        }
    }

    /// The time TTLs are measured from (default: when the report was made; the CLI passes
    /// the file's `ctime`).
    pub fn now_ms(&mut self, ms: i64) -> &mut Self {
        self.now_ms = ms;
        self
    }

    /// How many prefixes are kept before the least-used half is folded (default
    /// [`Report::MAX_PREFIXES`]; at least 2).
    pub fn max_prefixes(&mut self, n: usize) -> &mut Self {
        self.max_prefixes = n.max(2);
        self
    }

    /// A line naming the server model, shown in the rendered reports.
    pub fn server(&mut self, text: &str) -> &mut Self {
        self.server = text.to_string();
        self
    }

    /// Counts one key.
    pub fn add(&mut self, k: &KeyMemory) {
        let ty = k.value_type.name();
        self.total.add(k.size);
        // keys come database by database: count in place until the database changes
        match &mut self.last_db {
            Some((db, t)) if *db == k.db => t.add(k.size),
            _ => {
                if let Some((db, t)) = self.last_db.take() {
                    let e = self.by_db.entry(db).or_default();
                    e.keys += t.keys;
                    e.bytes += t.bytes;
                }
                let mut t = Tally::default();
                t.add(k.size);
                self.last_db = Some((k.db, t));
            }
        }
        let row = (ty, k.encoding);
        // names are static strings: the same name is almost always the same pointer
        let at = self
            .by_encoding
            .iter()
            .position(|r| std::ptr::eq(r.0.0, row.0) && std::ptr::eq(r.0.1, row.1))
            .or_else(|| self.by_encoding.iter().position(|r| r.0 == row));
        match at.map(|i| &mut self.by_encoding[i]) {
            Some(r) => r.1.add(k.size),
            None => {
                let mut t = Tally::default();
                t.add(k.size);
                self.by_encoding.push((row, t));
            }
        }
        let top = || TopKey {
            db: k.db,
            key: Bytes::copy_from_slice(&k.key),
            value_type: ty,
            encoding: k.encoding,
            size: k.size,
            elements: k.num_elements,
        };
        self.top_size.push(k.size, k.db, &k.key, top);
        self.top_elems.push(k.num_elements, k.db, &k.key, top);
        self.ttl.0[TtlBuckets::bucket(k.expire_ms, self.now_ms)].add(k.size);
        if let Some((saves, setting)) = k.hint {
            self.hint_tally.add(k.size);
            self.hint_saves += saves;
            self.hints.push(saves, k.db, &k.key, || Hint {
                db: k.db,
                key: Bytes::copy_from_slice(&k.key),
                setting,
                size: k.size,
                saves,
            });
        }
        self.prefix(&k.key, k.size);
    }

    fn prefix(&mut self, key: &Bytes, size: u64) {
        let mut found = 0;
        let mut at = 0;
        let sep = self.sep.len();
        while found < self.depth && sep > 0 {
            let Some(i) = find(&key[at..], &self.sep) else {
                break;
            };
            at += i + sep;
            found += 1;
            match self.prefixes.get_mut(&key[..at]) {
                Some(t) => t.add(size),
                None => {
                    // owned: a slice would keep the decoder's whole block alive
                    let mut t = Tally::default();
                    t.add(size);
                    self.prefixes.insert(Bytes::copy_from_slice(&key[..at]), t);
                }
            }
        }
        if found == 0 {
            self.no_prefix.add(size);
        }
        if self.prefixes.len() > self.max_prefixes {
            self.fold();
        }
    }

    /// Folds the least-used half of the prefixes into the "other" rows.
    fn fold(&mut self) {
        let mut all: Vec<(Bytes, Tally)> = self.prefixes.drain().collect();
        all.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(b.1.keys.cmp(&a.1.keys)));
        let keep = self.max_prefixes / 2;
        for (p, t) in all.drain(keep..) {
            let d = self.depth_of(&p).clamp(1, self.depth) - 1;
            self.other[d].keys += t.keys;
            self.other[d].bytes += t.bytes;
            self.folded += 1;
        }
        self.prefixes.extend(all);
    }

    fn depth_of(&self, p: &[u8]) -> usize {
        let mut n = 0;
        let mut at = 0;
        while let Some(i) = find(&p[at..], &self.sep) {
            at += i + self.sep.len();
            n += 1;
        }
        n
    }

    /// Estimated bytes of every key.
    pub fn total_bytes(&self) -> u64 {
        self.total.bytes
    }

    /// Keys and bytes in all.
    pub fn total(&self) -> Tally {
        self.total
    }

    /// Per database.
    pub fn by_db(&self) -> BTreeMap<u64, Tally> {
        let mut m = self.by_db.clone();
        if let Some((db, t)) = self.last_db {
            let e = m.entry(db).or_default();
            e.keys += t.keys;
            e.bytes += t.bytes;
        }
        m
    }

    /// Per type name (`string`, `list`, `set`, `zset`, `hash`, `stream`, …).
    pub fn by_type(&self) -> BTreeMap<&'static str, Tally> {
        let mut m: BTreeMap<&'static str, Tally> = BTreeMap::new();
        for ((ty, _), t) in &self.by_encoding {
            let e = m.entry(ty).or_default();
            e.keys += t.keys;
            e.bytes += t.bytes;
        }
        m
    }

    /// Per type and encoding.
    pub fn by_encoding(&self) -> BTreeMap<(&'static str, &'static str), Tally> {
        self.by_encoding.iter().copied().collect()
    }

    /// The biggest keys by bytes, biggest first.
    pub fn top_by_size(&self) -> Vec<&TopKey> {
        self.top_size.sorted()
    }

    /// The biggest keys by elements, biggest first.
    pub fn top_by_elements(&self) -> Vec<&TopKey> {
        self.top_elems.sorted()
    }

    /// Prefixes by bytes, biggest first (ties by prefix).
    pub fn prefixes(&self) -> Vec<PrefixStat> {
        let mut v: Vec<PrefixStat> = self
            .prefixes
            .iter()
            .map(|(p, t)| PrefixStat {
                prefix: p.clone(),
                depth: self.depth_of(p),
                tally: *t,
            })
            .collect();
        v.sort_by(|a, b| {
            b.tally
                .bytes
                .cmp(&a.tally.bytes)
                .then_with(|| a.prefix.cmp(&b.prefix))
        });
        v
    }

    /// Keys with no separator in their name.
    pub fn no_prefix(&self) -> Tally {
        self.no_prefix
    }

    /// The folded "other" rows, one per depth (1 first).
    pub fn other(&self) -> &[Tally] {
        &self.other
    }

    /// How many prefixes were folded into "other".
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// The TTL histogram.
    pub fn ttl(&self) -> TtlBuckets {
        self.ttl
    }

    /// Keys just over a compact-encoding threshold: the ones that would save most, and the
    /// keys, bytes and savings of all of them.
    pub fn hints(&self) -> (Vec<&Hint>, Tally, u64) {
        (self.hints.sorted(), self.hint_tally, self.hint_saves)
    }

    pub(crate) fn top_n(&self) -> usize {
        self.top_n
    }

    pub(crate) fn sep(&self) -> &[u8] {
        &self.sep
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    pub(crate) fn now(&self) -> i64 {
        self.now_ms
    }

    pub(crate) fn server_text(&self) -> &str {
        &self.server
    }
}

/// A fast hash for the prefix table (keys are not chosen by an attacker here: a report of a
/// file).
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return hay.iter().position(|&c| c == needle[0]);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdb_format::ValueType;

    fn key(db: u64, k: &str, size: u64) -> KeyMemory {
        KeyMemory {
            db,
            key: Bytes::from(k.to_owned()),
            value_type: ValueType::String,
            encoding: "raw",
            size,
            num_elements: size,
            len_largest_element: size,
            expire_ms: None,
            hint: None,
        }
    }

    #[test]
    fn top_lists_do_not_depend_on_the_order_keys_come_in() {
        let keys: Vec<KeyMemory> = (0..50)
            .map(|i| key(0, &format!("k{i:02}"), i % 7))
            .collect();
        let mut a = Report::new(5, b":", 2);
        let mut b = Report::new(5, b":", 2);
        for k in &keys {
            a.add(k);
        }
        for k in keys.iter().rev() {
            b.add(k);
        }
        let names =
            |r: &Report| -> Vec<Bytes> { r.top_by_size().iter().map(|t| t.key.clone()).collect() };
        assert_eq!(names(&a), names(&b));
        assert_eq!(names(&a), ["k06", "k13", "k20", "k27", "k34"]);
    }

    #[test]
    fn the_prefix_table_stays_bounded_and_accounts_for_what_it_folds() {
        let mut r = Report::new(3, b":", 2);
        r.max_prefixes(64);
        for i in 0..5000u64 {
            // a few heavy prefixes and many light ones
            let k = if i % 10 == 0 {
                format!("heavy{}:x:{i}", i % 3)
            } else {
                format!("light{i}:y:{i}")
            };
            r.add(&key(0, &k, if i % 10 == 0 { 1000 } else { 1 }));
            assert!(r.prefixes.len() <= 64 + 2);
        }
        assert!(r.folded() > 0);
        let kept: Vec<PrefixStat> = r.prefixes();
        for h in 0..3 {
            let p = format!("heavy{h}:");
            let s = kept
                .iter()
                .find(|s| s.prefix == p)
                .expect("heavy prefix kept");
            assert!(s.tally.keys >= 160, "{p}: {:?}", s.tally);
        }
        // every key is in a depth-1 row or in depth 1's "other"
        let depth1: u64 = kept
            .iter()
            .filter(|s| s.depth == 1)
            .map(|s| s.tally.keys)
            .sum();
        assert_eq!(depth1 + r.other()[0].keys + r.no_prefix().keys, 5000);
    }

    #[test]
    fn ttl_buckets_and_totals() {
        let mut r = Report::new(3, b":", 1);
        r.now_ms(1_000_000);
        let mut k = key(1, "a", 10);
        k.expire_ms = Some(1_000_000 + 2 * 3_600_000);
        r.add(&k);
        r.add(&key(0, "b", 5));
        assert_eq!(r.ttl().0[3], Tally { keys: 1, bytes: 10 });
        assert_eq!(r.ttl().0[0], Tally { keys: 1, bytes: 5 });
        assert_eq!(r.by_db()[&1], Tally { keys: 1, bytes: 10 });
        assert_eq!(r.total(), Tally { keys: 2, bytes: 15 });
    }
}
