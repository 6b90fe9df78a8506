//! Memory reports: what each key of an RDB costs on the server that wrote it, and where the
//! memory goes (per database, type, encoding, key prefix and TTL), in bounded memory.
//!
//! * [`Model`]: the server layout ([`Layout`]) and allocator ([`Allocator`]) an estimate is
//!   for; [`Model::for_version`] reads a `redis-ver`/`valkey-ver` text.
//! * [`Sizer`]: feed it the items of an RDB (decoded with
//!   [`Config::packed_sizes`](rdb_format::Config::packed_sizes) on) and it hands back one
//!   [`KeyMemory`] per key: `MEMORY USAGE key SAMPLES 0` as that server would say it.
//! * [`Report`]: totals, the biggest keys, prefixes, a TTL histogram and encoding hints, in
//!   bounded memory; [`Report::to_json`] and [`Report::to_html`] render it, [`csv_row`] writes
//!   the per-key CSV rows `rdb-tools` writes.
//!
//! ```
//! use replicator::memory::{Allocator, Model, Report, Sizer};
//! use replicator::{BytesReader, Config};
//! let file = bytes::Bytes::from_static(
//!     b"REDIS0009\xfe\x00\x00\x01c\x01x\xff\x00\x00\x00\x00\x00\x00\x00\x00",
//! );
//! let mut config = Config::default();
//! config.packed_sizes(true).verify_checksum(false);
//! let model = Model::for_version("7.0.15", false, Allocator::Jemalloc16).unwrap();
//! let mut sizer = Sizer::new(model);
//! let mut report = Report::new(10, b":", 3);
//! for item in BytesReader::with_config(file, config) {
//!     if let Some(k) = sizer.item(&item.unwrap()) {
//!         report.add(&k);
//!     }
//! }
//! assert_eq!(report.total_bytes(), 64); // MEMORY USAGE c on Debian's Redis 7.0
//! ```

mod model;
mod render;
mod report;

use bytes::Bytes;
use rdb_format::{
    Chunk, Elem, Encoding, HashField, Item, KeyHead, Packed, StreamEntry, StreamMeta, Value,
    ValueType,
};

pub use model::{Allocator, Layout, Model};
pub use render::{CSV_HEADER, csv_row};
pub use report::{Hint, PrefixStat, Report, Tally, TopKey, TtlBuckets};

use model::{CompactSize, RaxCount, Shape, int_width, intset_bytes};

/// What one key costs, with what the CSV report shows of it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyMemory {
    /// Database number.
    pub db: u64,
    /// The key.
    pub key: Bytes,
    /// The value type.
    pub value_type: ValueType,
    /// The encoding the server holds it in (`OBJECT ENCODING`'s name).
    pub encoding: &'static str,
    /// Estimated bytes: what `MEMORY USAGE key SAMPLES 0` would say.
    pub size: u64,
    /// Elements (bytes for a string).
    pub num_elements: u64,
    /// Bytes of the largest element (of a field or a value in a hash).
    pub len_largest_element: u64,
    /// Absolute expiry, unix ms.
    pub expire_ms: Option<i64>,
    /// Bytes saved if the value were held in its compact encoding, and the setting that
    /// keeps it out of it, when the value is just over that setting's default threshold.
    pub hint: Option<(u64, &'static str)>,
}

/// Everything known of one key while its items arrive.
#[derive(Debug)]
struct KeyAcc {
    head: KeyHead,
    n: u64,
    largest: u64,
    compact: CompactSize,
    /// The elements were not seen, only the packed sizes (an unbuilt packed value).
    from_sizes: bool,
    /// Whether the compact sizes are still wanted (a conversion or a hint may need them).
    compact_on: bool,
    /// All members are integers (sets), and the widest needs this many bytes.
    all_int: bool,
    int_width: u64,
    /// Members (or fields, or values) longer than 64 bytes: keeps a value out of a listpack.
    long_elems: bool,
    /// Sum of the per-member costs for a hashtable or skiplist.
    members: u64,
    /// String bytes (a string delivered in pieces) or its value.
    string: Option<Elem>,
    string_len: u64,
    stream_entries: u64,
    meta: Option<Box<StreamMeta>>,
    module_bytes: u64,
}

/// Turns RDB items into per-key estimates for one [`Model`]. Constant memory per key: the
/// elements are counted as they pass, never kept.
#[derive(Debug)]
pub struct Sizer {
    model: Model,
    /// Skiplist member costs by member length, for lengths under 256.
    zset_costs: Vec<u64>,
    db: u64,
    cur: Option<KeyAcc>,
    packed: Option<Box<Packed>>,
}

impl Sizer {
    /// A sizer for `model`.
    pub fn new(model: Model) -> Self {
        Self {
            model,
            zset_costs: (0..256).map(|len| model.zset_member(len)).collect(),
            db: 0,
            cur: None,
            packed: None,
        }
    }

    /// The model.
    pub fn model(&self) -> Model {
        self.model
    }

    /// Takes one item by value (no copy of the packed sizes); see [`Sizer::item`].
    pub fn take(&mut self, item: Item) -> Option<KeyMemory> {
        match item {
            Item::Packed(p) => {
                self.packed = Some(p);
                None
            }
            other => self.item(&other),
        }
    }

    /// Takes one item; a key's estimate comes back with the key's last item.
    pub fn item(&mut self, item: &Item) -> Option<KeyMemory> {
        match item {
            Item::SelectDb(db) => {
                self.db = *db;
                None
            }
            Item::Packed(p) => {
                self.packed = Some(p.clone());
                None
            }
            Item::Key(rec) => {
                let mut acc = self.start(&rec.head);
                self.value(&mut acc, &rec.value);
                Some(self.finish(acc))
            }
            Item::KeyStart(head) => {
                self.cur = Some(self.start(head));
                None
            }
            Item::KeyChecked(head) => {
                // a packed value left unbuilt (`Config::build_packed(false)`): its sizes say
                // what is needed
                let mut acc = self.start(head);
                if let Some(p) = &self.packed {
                    acc.n = p.elements;
                    acc.largest = p.largest;
                    acc.long_elems = p.largest > 64;
                    acc.all_int = head.encoding == Encoding::Intset;
                    if acc.all_int && p.elements > 0 {
                        acc.int_width = p.total.saturating_sub(8) / p.elements;
                    }
                }
                acc.from_sizes = true;
                Some(self.finish(acc))
            }
            Item::Chunk(c) => {
                let mut acc = self.cur.take()?;
                self.chunk(&mut acc, c);
                self.cur = Some(acc);
                None
            }
            Item::KeyEnd => {
                let acc = self.cur.take()?;
                Some(self.finish(acc))
            }
            Item::Skipped { .. } => {
                self.packed = None;
                self.cur = None;
                None
            }
            _ => None,
        }
    }

    fn start(&self, head: &KeyHead) -> KeyAcc {
        KeyAcc {
            head: head.clone(),
            n: 0,
            largest: 0,
            compact: CompactSize::default(),
            compact_on: self.needs_compact(head),
            from_sizes: false,
            all_int: true,
            int_width: 2,
            long_elems: false,
            members: 0,
            string: None,
            string_len: 0,
            stream_entries: 0,
            meta: None,
            module_bytes: 0,
        }
    }

    /// Whether a key's compact size must be worked out from its elements: when the server
    /// would convert the file's encoding, or a hint may want the listpack size.
    fn needs_compact(&self, h: &KeyHead) -> bool {
        let m = self.model;
        match (h.value_type, h.encoding) {
            (ValueType::String | ValueType::Stream | ValueType::Module, _) => false,
            (ValueType::List, Encoding::Quicklist) => {
                h.type_byte != 18 && m.loads_ziplist_as_listpack()
            }
            (_, Encoding::Intset) => false,
            (_, Encoding::Listpack) => !m.loads_ziplist_as_listpack(),
            (_, Encoding::Ziplist) => m.loads_ziplist_as_listpack(),
            _ => true,
        }
    }

    /// Counts one element; its length.
    fn elem(&self, acc: &mut KeyAcc, e: &Elem) -> u64 {
        let shape = Shape::of(e);
        let len = shape.len();
        acc.n += 1;
        acc.largest = acc.largest.max(len);
        if acc.compact_on {
            acc.compact.push(shape);
            // past every threshold a hint looks at, a table stays a table
            if acc.n > 1280
                && matches!(
                    acc.head.encoding,
                    Encoding::Hashtable | Encoding::Skiplist | Encoding::Raw
                )
            {
                acc.compact_on = false;
            }
        }
        acc.long_elems |= len > 64;
        match shape {
            Shape::Int(v) => acc.int_width = acc.int_width.max(int_width(v)),
            Shape::Str(_) => acc.all_int = false,
        }
        len
    }

    fn list(&self, acc: &mut KeyAcc, v: &[Elem]) {
        for e in v {
            self.elem(acc, e);
        }
    }

    fn set(&self, acc: &mut KeyAcc, v: &[Elem]) {
        for e in v {
            let len = self.elem(acc, e);
            acc.members += self.model.set_member(len);
        }
    }

    fn zset(&self, acc: &mut KeyAcc, v: &[(Elem, f64)]) {
        for (m, score) in v {
            let len = self.elem(acc, m);
            if acc.compact_on {
                // the score as a listpack holds it: an integer when it is one, else its text
                let s = if score.fract() == 0.0 && score.abs() < 1e17 {
                    Shape::Int(*score as i64)
                } else {
                    Shape::Str(ryu::Buffer::new().format(*score).len() as u64)
                };
                acc.compact.push(s);
            }
            acc.members += match self.zset_costs.get(len as usize) {
                Some(&c) => c,
                None => self.model.zset_member(len),
            };
        }
    }

    fn hash(&self, acc: &mut KeyAcc, v: &[HashField]) {
        for f in v {
            let flen = self.elem(acc, &f.field);
            let vlen = self.elem(acc, &f.value);
            acc.n -= 1;
            acc.members += self.model.hash_field(flen, vlen);
        }
    }

    fn stream(&self, acc: &mut KeyAcc, v: &[StreamEntry]) {
        acc.stream_entries += v.len() as u64;
        for e in v {
            for (f, val) in &e.fields {
                acc.largest = acc.largest.max(f.len() as u64).max(val.len() as u64);
            }
        }
    }

    fn value(&self, acc: &mut KeyAcc, v: &Value) {
        match v {
            Value::String(b) => {
                acc.string_len = b.len() as u64;
                acc.string = Some(Elem::Bytes(b.clone()));
            }
            Value::List(v) => self.list(acc, v),
            Value::Set(v) => self.set(acc, v),
            Value::SortedSet(v) => self.zset(acc, v),
            Value::Hash(v) => self.hash(acc, v),
            Value::Stream(s) => {
                self.stream(acc, &s.entries);
                acc.meta = Some(Box::new(s.meta.clone()));
            }
            Value::Module(m) => acc.module_bytes = m.raw.len() as u64,
            Value::Array(a) => {
                for it in &a.items {
                    let len = self.elem(acc, &Elem::Bytes(it.value.to_bytes()));
                    acc.members += self.model.set_member(len);
                }
            }
            _ => {}
        }
    }

    fn chunk(&self, acc: &mut KeyAcc, c: &Chunk) {
        match c {
            Chunk::String(b) => acc.string_len += b.len() as u64,
            Chunk::List(v) => self.list(acc, v),
            Chunk::Set(v) => self.set(acc, v),
            Chunk::SortedSet(v) => self.zset(acc, v),
            Chunk::Hash(v) => self.hash(acc, v),
            Chunk::StreamEntries(v) => self.stream(acc, v),
            Chunk::StreamMeta(m) => acc.meta = Some(m.clone()),
            Chunk::Array(v) => {
                for it in v {
                    let len = self.elem(acc, &Elem::Bytes(it.value.to_bytes()));
                    acc.members += self.model.set_member(len);
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, acc: KeyAcc) -> KeyMemory {
        let packed = self.packed.take();
        let m = self.model;
        let h = &acc.head;
        let klen = h.key.len() as u64;
        let expires = h.expire_ms.is_some();
        let over = m.key_overhead(klen, expires);
        let lp = acc.compact.listpack();
        let compact_name = if m.keeps(Encoding::Ziplist) {
            "ziplist"
        } else {
            "listpack"
        };
        // what the listpack would save against a table of `size` bytes
        let saving = |size: u64, setting: &'static str| {
            Some((size.saturating_sub(over + m.packed(lp)), setting))
        };
        // a one-blob value as this server holds it: the file's blob when the server keeps that
        // encoding, else the listpack (or 6.2's ziplist) it converts it to
        let compact = || -> u64 {
            let kept = matches!(
                (h.encoding, m.loads_ziplist_as_listpack()),
                (Encoding::Intset, _) | (Encoding::Listpack, true) | (Encoding::Ziplist, false)
            );
            match &packed {
                Some(p) if kept && p.count == 1 => p.total,
                // elements unseen: a listpack is 4 bytes of header smaller than the ziplist
                // of the same entries, entry for entry about the same
                Some(p) if acc.from_sizes && m.loads_ziplist_as_listpack() => {
                    p.total.saturating_sub(4)
                }
                Some(p) if acc.from_sizes => p.total + 4,
                _ if m.loads_ziplist_as_listpack() => lp,
                _ => acc.compact.ziplist(),
            }
        };
        let mut hint = None;
        let (encoding, size, elements) = match h.value_type {
            ValueType::String => {
                let size = match &acc.string {
                    Some(v) => m.string_key(klen, expires, v),
                    None => m.string_len_key(klen, expires, acc.string_len),
                };
                let enc = match &acc.string {
                    Some(v) if matches!(Shape::of(v), Shape::Int(_)) => "int",
                    _ => m.string_encoding(klen, expires, acc.string_len),
                };
                (enc, size, acc.string_len)
            }
            ValueType::List => {
                let (ql, node) = m.quicklist_sizes();
                // (nodes, the first node's bytes, what the nodes cost)
                let mut nodes = (0u64, 0u64, 0u64);
                let mut add = |s: u64| {
                    if nodes.0 == 0 {
                        nodes.1 = s;
                    }
                    nodes.0 += 1;
                    nodes.2 += node + m.packed(s);
                };
                match (&packed, h.encoding) {
                    (Some(p), Encoding::Quicklist) if !p.sizes.is_empty() => {
                        let scale = if m.keeps(Encoding::Ziplist) || h.type_byte == 18 {
                            1.0
                        } else {
                            lp as f64 / acc.compact.ziplist().max(1) as f64
                        };
                        for &s in &p.sizes {
                            add((s as f64 * scale).round() as u64);
                        }
                        // sizes past the kept ones: their average
                        let left = p.count - p.sizes.len() as u64;
                        if let Some(avg) = (p.total - p.sizes.iter().sum::<u64>()).checked_div(left)
                        {
                            (0..left).for_each(|_| add(avg));
                        }
                    }
                    _ => {
                        // rebuilt as pushes build it: nodes of at most 8 KiB
                        let total = if m.loads_ziplist_as_listpack() {
                            lp
                        } else {
                            acc.compact.ziplist()
                        };
                        let k = total.div_ceil(8192).max(1);
                        (0..k).for_each(|_| add(total / k));
                    }
                }
                let (count, first, cost) = nodes;
                if m.small_lists_are_listpacks() && count == 1 && first <= 8192 {
                    ("listpack", over + m.packed(first), acc.n)
                } else {
                    ("quicklist", over + ql + cost, acc.n)
                }
            }
            ValueType::Set => {
                let lp_ok = m.small_lists_are_listpacks() && acc.n <= 128 && !acc.long_elems;
                match h.encoding {
                    Encoding::Intset => (
                        "intset",
                        over + m.packed(
                            packed
                                .as_ref()
                                .map_or(intset_bytes(acc.n, acc.int_width), |p| p.total),
                        ),
                        acc.n,
                    ),
                    Encoding::Listpack if m.small_lists_are_listpacks() => {
                        ("listpack", over + m.packed(compact()), acc.n)
                    }
                    _ if acc.all_int && acc.n <= 512 => (
                        "intset",
                        over + m.packed(intset_bytes(acc.n, acc.int_width)),
                        acc.n,
                    ),
                    _ if lp_ok => ("listpack", over + m.packed(lp), acc.n),
                    _ => {
                        let size = over + m.table(acc.n) + acc.members;
                        if m.small_lists_are_listpacks() && acc.n <= 160 && !acc.long_elems {
                            hint = saving(size, "set-max-listpack-entries");
                        }
                        ("hashtable", size, acc.n)
                    }
                }
            }
            ValueType::SortedSet => match h.encoding {
                Encoding::Listpack | Encoding::Ziplist => {
                    (compact_name, over + m.packed(compact()), acc.n)
                }
                _ => {
                    let size = over + m.zset_fixed() + m.table(acc.n) + acc.members;
                    if acc.n > 128 && acc.n <= 160 && !acc.long_elems {
                        hint = saving(size, "zset-max-listpack-entries");
                    }
                    ("skiplist", size, acc.n)
                }
            },
            ValueType::Hash => match h.encoding {
                Encoding::Listpack | Encoding::Ziplist | Encoding::Zipmap => {
                    (compact_name, over + m.packed(compact()), acc.n)
                }
                _ => {
                    let size = over + m.table(acc.n) + acc.members;
                    if acc.n > 512 && acc.n <= 640 && !acc.long_elems {
                        hint = saving(size, "hash-max-listpack-entries");
                    } else if acc.n <= 512 && acc.long_elems && acc.largest <= 80 {
                        hint = saving(size, "hash-max-listpack-value");
                    }
                    ("hashtable", size, acc.n)
                }
            },
            ValueType::Stream => {
                let mut size = over + m.stream_struct();
                let mut rax = RaxCount::default();
                if let Some(p) = &packed {
                    for id in &p.stream_nodes {
                        rax.push(*id, m.alloc);
                    }
                    size += p.sizes.iter().map(|&s| m.a(s)).sum::<u64>();
                    let left = p.count - p.sizes.len() as u64;
                    if let Some(avg) = (p.total - p.sizes.iter().sum::<u64>()).checked_div(left) {
                        size += left * m.a(avg);
                    }
                }
                let (k, n, b) = rax.finish(m.alloc);
                size += m.rax_usage(k, n, b);
                if let Some(meta) = &acc.meta {
                    size += self.groups(meta);
                }
                ("stream", size, acc.stream_entries)
            }
            ValueType::Module => ("module", over + acc.module_bytes, 1),
            _ => ("sliced-array", over + acc.members, acc.n),
        };
        if let Some((0, _)) = hint {
            hint = None;
        }
        KeyMemory {
            db: h.db,
            key: h.key.clone(),
            value_type: h.value_type,
            encoding,
            size,
            num_elements: elements,
            len_largest_element: if h.value_type == ValueType::String {
                acc.string_len
            } else {
                acc.largest
            },
            expire_ms: h.expire_ms,
            hint,
        }
    }

    /// Consumer groups: each group, its pending entries, its consumers and their PELs.
    fn groups(&self, meta: &StreamMeta) -> u64 {
        let m = self.model;
        let rax = |ids: &mut dyn Iterator<Item = rdb_format::StreamId>| {
            let mut r = RaxCount::default();
            for id in ids {
                r.push(id, m.alloc);
            }
            let (k, n, b) = r.finish(m.alloc);
            m.rax_usage(k, n, b)
        };
        let (cg, consumer) = match m.layout {
            Layout::Redis6 => (32, 24),
            Layout::Redis70 => (40, 24),
            _ => (40, 32),
        };
        let mut size = 0;
        for g in &meta.groups {
            size += cg + rax(&mut g.pending.iter().map(|p| p.id)) + 24 * g.pending.len() as u64;
            for c in &g.consumers {
                size += consumer + c.name.len() as u64 + rax(&mut c.pending.iter().copied());
            }
        }
        size
    }
}
