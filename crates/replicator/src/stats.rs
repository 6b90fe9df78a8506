//! [`Stats`]: what an RDB holds, counted as it is read: keys per database and type, expiries,
//! aux fields, functions, the version and the checksum — the report of `replicator check`.

use std::fmt;

use rdb_format::{Flavor, Item, KeyHead, StringRecord, ValueType, Visitor};

/// Type names in the order the report prints them.
const TYPE_NAMES: [&str; 8] = [
    "array", "hash", "list", "module", "set", "stream", "string", "zset",
];

/// Counts of an RDB's items; [`Display`](fmt::Display) prints the report `replicator check`
/// prints.
///
/// ```
/// use replicator::{Item, KeyRecord, Value, stats::Stats};
/// let mut s = Stats::new();
/// s.add(&Item::Key(KeyRecord::new(0, "k".into(), Value::String("v".into()))));
/// assert_eq!(s.keys(), 1);
/// assert!(s.to_string().contains("db 0: 1 keys (string 1)"));
/// ```
#[derive(Debug, Clone)]
pub struct Stats {
    /// Counts per type for each db, in db order.
    per_db: Vec<(u64, [u64; 8])>,
    /// Where in `per_db` the last key's db is.
    cur: usize,
    /// keys with an expiry; of them already expired; of them with a negative time
    expiries: [u64; 3],
    header: Option<(Flavor, u32)>,
    aux: u64,
    functions: u64,
    checksum: Option<Option<u64>>,
    /// a copy, so no key keeps the reader's buffer alive
    last_key: Vec<u8>,
    now_ms: i64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Nothing counted; "already expired" is measured against the time now.
    pub fn new() -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Self {
            per_db: Vec::new(),
            cur: 0,
            expiries: [0; 3],
            header: None,
            aux: 0,
            functions: 0,
            checksum: None,
            last_key: Vec::new(),
            now_ms,
        }
    }

    /// Counts a string key handed over as a borrowed record
    /// ([`FileEvents::next_event_with`](crate::files::FileEvents::next_event_with)), as
    /// [`add`](Self::add) counts its item.
    pub fn string(&mut self, rec: &StringRecord<'_>) {
        self.count(rec.db, 6, rec.expire_ms);
        self.last_key.clear();
        self.last_key.extend_from_slice(rec.key);
    }

    /// The counts of `db` (the last one's, most often).
    #[inline]
    fn types(&mut self, db: u64) -> &mut [u64; 8] {
        if self.per_db.get(self.cur).is_none_or(|e| e.0 != db) {
            self.cur = match self.per_db.binary_search_by_key(&db, |e| e.0) {
                Ok(i) => i,
                Err(i) => {
                    self.per_db.insert(i, (db, [0; 8]));
                    i
                }
            };
        }
        &mut self.per_db[self.cur].1
    }

    fn count(&mut self, db: u64, t: usize, expire_ms: Option<i64>) {
        self.types(db)[t] += 1;
        if let Some(ms) = expire_ms {
            self.expiries[0] += 1;
            self.expiries[1] += u64::from(ms < self.now_ms);
            self.expiries[2] += u64::from(ms < 0);
        }
    }

    fn key(&mut self, head: &KeyHead) {
        // the index in TYPE_NAMES
        let t = match head.value_type {
            ValueType::Array => 0,
            ValueType::Hash => 1,
            ValueType::List => 2,
            ValueType::Module => 3,
            ValueType::Set => 4,
            ValueType::Stream => 5,
            ValueType::String => 6,
            ValueType::SortedSet => 7,
            #[allow(unreachable_patterns)]
            other => TYPE_NAMES
                .iter()
                .position(|n| *n == other.name())
                .unwrap_or(0),
        };
        self.count(head.db, t, head.expire_ms);
        self.last_key.clear();
        self.last_key.extend_from_slice(&head.key);
    }

    /// Counts a key whose value was only checked, handed over as its head (a
    /// [`Visitor`]'s [`checked`](Visitor::checked)), as [`add`](Self::add) counts its
    /// [`Item::KeyChecked`].
    pub fn checked(&mut self, head: &KeyHead) {
        self.key(head);
    }

    /// Counts one item (a chunked key counts once, at its start).
    pub fn add(&mut self, item: &Item) {
        match item {
            Item::Header { flavor, version } => self.header = Some((*flavor, *version)),
            Item::Key(rec) => self.key(&rec.head),
            Item::KeyStart(head) | Item::KeyChecked(head) => self.key(head),
            Item::Aux { .. } => self.aux += 1,
            Item::Function(_) => self.functions += 1,
            Item::Eof { checksum } => self.checksum = Some(*checksum),
            _ => {}
        }
    }

    /// Adds what another tally counted of a later part of the same file (a
    /// [`Pipeline`](rdb_format::Pipeline) batch).
    pub fn merge(&mut self, later: &Self) {
        for (db, types) in &later.per_db {
            let mine = self.types(*db);
            for (m, t) in mine.iter_mut().zip(types) {
                *m += t;
            }
        }
        for (m, t) in self.expiries.iter_mut().zip(later.expiries) {
            *m += t;
        }
        self.aux += later.aux;
        self.functions += later.functions;
        self.header = later.header.or(self.header);
        self.checksum = later.checksum.or(self.checksum);
        if !later.last_key.is_empty() {
            self.last_key.clone_from(&later.last_key);
        }
    }

    /// Keys counted.
    pub fn keys(&self) -> u64 {
        self.per_db.iter().flat_map(|e| e.1).sum()
    }

    /// The EOF's checksum once the EOF was read (`Some(None)`: RDB < 5 has none).
    pub fn checksum(&self) -> Option<Option<u64>> {
        self.checksum
    }

    /// The last key read (to say where a damaged file went wrong).
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((flavor, version)) = self.header {
            writeln!(f, "RDB version {version} ({flavor:?})")?;
        }
        writeln!(f, "aux fields: {}, functions: {}", self.aux, self.functions)?;
        for (db, types) in &self.per_db {
            let keys: u64 = types.iter().sum();
            let detail: Vec<String> = TYPE_NAMES
                .iter()
                .zip(types)
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            writeln!(f, "db {db}: {keys} keys ({})", detail.join(", "))?;
        }
        writeln!(f, "keys: {}", self.keys())?;
        let [n, expired, negative] = self.expiries;
        writeln!(
            f,
            "expires: {n} (already expired: {expired}, with a negative time: {negative})"
        )
    }
}

/// A tally is a visitor of string keys and of checked keys: what it is handed counts as the
/// items they stand for would.
///
/// ```
/// use bytes::Bytes;
/// use replicator::rdb::{Config, Decoder};
/// use replicator::stats::Stats;
///
/// // RDB 9: "k" = "v", then a set "s" of one member "m", then EOF without a checksum
/// let mut file =
///     Bytes::from_static(b"REDIS0009\x00\x01k\x01v\x02\x01s\x01\x01m\xff\0\0\0\0\0\0\0\0");
/// let mut config = Config::default();
/// config.skip_values(true);
/// let mut dec = Decoder::with_config(config);
/// let mut tally = Stats::new();
/// while let Some(item) = dec.decode_with(&mut file, &mut tally).unwrap() {
///     tally.add(&item);
/// }
/// assert_eq!(tally.keys(), 2);
/// assert!(tally.to_string().contains("db 0: 2 keys (set 1, string 1)"));
/// ```
impl Visitor for Stats {
    fn string(&mut self, rec: &StringRecord<'_>) -> std::ops::ControlFlow<()> {
        Self::string(self, rec);
        std::ops::ControlFlow::Continue(())
    }

    fn takes_checked(&self) -> bool {
        true
    }

    fn checked(&mut self, head: &KeyHead) -> std::ops::ControlFlow<()> {
        Self::checked(self, head);
        std::ops::ControlFlow::Continue(())
    }
}
