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
    last_key: LastKey,
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
            last_key: LastKey::default(),
            now_ms,
        }
    }

    /// Counts a string key handed over as a borrowed record
    /// ([`FileEvents::next_event_with`](crate::files::FileEvents::next_event_with)), as
    /// [`add`](Self::add) counts its item.
    #[inline]
    pub fn string(&mut self, rec: &StringRecord<'_>) {
        self.count(rec.db, 6, rec.expire_ms);
        self.last_key.set(rec.key);
    }

    /// The counts of `db` (the last one's, most often).
    #[inline(always)]
    fn types(&mut self, db: u64) -> &mut [u64; 8] {
        if self.per_db.get(self.cur).is_none_or(|e| e.0 != db) {
            self.find_db(db);
        }
        &mut self.per_db[self.cur].1
    }

    /// Makes `cur` the place of `db`'s counts, new ones where it has none yet.
    #[cold]
    fn find_db(&mut self, db: u64) {
        self.cur = match self.per_db.binary_search_by_key(&db, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                self.per_db.insert(i, (db, [0; 8]));
                i
            }
        };
    }

    // (inlined into the visitor's calls, a key costs a few instructions: as a call, with the
    // key's copy, counting was a fifth of checking a file of small strings)
    #[inline(always)]
    fn count(&mut self, db: u64, t: usize, expire_ms: Option<i64>) {
        self.types(db)[t] += 1;
        if let Some(ms) = expire_ms {
            self.expiries[0] += 1;
            self.expiries[1] += u64::from(ms < self.now_ms);
            self.expiries[2] += u64::from(ms < 0);
        }
    }

    #[inline]
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
        self.last_key.set(&head.key);
    }

    /// Counts a key whose value was only checked, handed over as its head (a
    /// [`Visitor`]'s [`checked`](Visitor::checked)), as [`add`](Self::add) counts its
    /// [`Item::KeyChecked`].
    #[inline]
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
        if !later.last_key.get().is_empty() {
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
        self.last_key.get()
    }
}

/// Keys of up to this many bytes are kept by [`LastKey`] without an allocation.
const SHORT_KEY: usize = 32;

/// The last key read: a copy made for each key, in a few moves of fixed sizes where it is
/// short (most keys), where a `Vec`'s `clear` and `extend_from_slice` called `memcpy`.
#[derive(Debug, Clone, Default)]
struct LastKey {
    short: [u8; SHORT_KEY],
    /// The length of the key in `short`; `usize::MAX`: the key is in `long`.
    len: usize,
    long: Vec<u8>,
}

impl LastKey {
    #[inline(always)]
    fn set(&mut self, key: &[u8]) {
        let n = key.len();
        if n > SHORT_KEY {
            return self.set_long(key);
        }
        let d = &mut self.short;
        // two moves that overlap cover every length from the smaller size to the larger
        if n >= 16 {
            d[..16].copy_from_slice(&key[..16]);
            d[n - 16..n].copy_from_slice(&key[n - 16..]);
        } else if n >= 8 {
            d[..8].copy_from_slice(&key[..8]);
            d[n - 8..n].copy_from_slice(&key[n - 8..]);
        } else if n >= 4 {
            d[..4].copy_from_slice(&key[..4]);
            d[n - 4..n].copy_from_slice(&key[n - 4..]);
        } else {
            for (d, k) in d.iter_mut().zip(key) {
                *d = *k;
            }
        }
        self.len = n;
    }

    #[cold]
    fn set_long(&mut self, key: &[u8]) {
        self.long.clear();
        self.long.extend_from_slice(key);
        self.len = usize::MAX;
    }

    fn get(&self) -> &[u8] {
        match self.len {
            usize::MAX => &self.long,
            n => &self.short[..n],
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The last key is the key itself at every length, short and long, whatever was kept
    /// before it (longer or shorter), and after a merge.
    #[test]
    fn the_last_key_is_kept_whole_at_every_length() {
        let mut s = Stats::new();
        let keys: Vec<Vec<u8>> = (0..=70usize)
            .map(|n| {
                (0..n)
                    .map(|i| b"abcdefghijklmnopqrstuvwxyz"[(i * 7 + n) % 26])
                    .collect()
            })
            .collect();
        // every length after every other length
        for a in &keys {
            for b in &keys {
                for k in [a, b] {
                    let rec = StringRecord {
                        db: 0,
                        key: k,
                        value: b"v",
                        encoding: rdb_format::Encoding::Raw,
                        expire_ms: None,
                        idle_s: None,
                        freq: None,
                        offset: 0,
                    };
                    s.string(&rec);
                    assert_eq!(s.last_key(), &k[..], "{} after {}", b.len(), a.len());
                }
            }
        }
        let mut other = Stats::new();
        other.merge(&s);
        assert_eq!(other.last_key(), &keys[70][..]);
        s.merge(&Stats::new());
        assert_eq!(
            s.last_key(),
            &keys[70][..],
            "an empty tally keeps the last key"
        );
        assert_eq!(s.keys(), 2 * 71 * 71);
    }
}
