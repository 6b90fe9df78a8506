//! What to write: the target version, compression, lossy downgrades, the thresholds of the
//! compact encodings; and what a lossy downgrade dropped.

use super::*;

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

    pub(super) fn valkey(&self) -> bool {
        self.version >= 80
    }

    /// RDB-feature level as Redis numbers it (Valkey 80 has Redis 11's encodings).
    pub(super) fn level(&self) -> u32 {
        if self.valkey() { 11 } else { self.version }
    }
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
