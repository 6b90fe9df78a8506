//! Decoder settings: what to do with damage, limits, chunking, checks.

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
    ///
    /// [`Item::Skipped`]: crate::Item::Skipped
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
    /// not limited by this (an LZF one still is: its length is checked before it is read).
    /// Default 512 MiB, like Redis' `proto-max-bulk-len`.
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
    pub(crate) packed_sizes: bool,
    pub(crate) build_packed: bool,
}

/// The default [`Config::dup_check_limit`]: 917,504 member hashes, what a table of 2^20
/// 8-byte slots holds at its load factor (8 MiB); one more member would double it.
pub const DUP_CHECK_LIMIT: usize = 917_504;

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
            packed_sizes: false,
            build_packed: true,
            relaxed_version: false,
            dup_check_limit: DUP_CHECK_LIMIT,
            lenient: false,
        }
    }
}

impl Config {
    /// Collections with more elements than this come out as [`Item::KeyStart`], chunks and
    /// [`Item::KeyEnd`] instead of one [`Item::Key`].
    ///
    /// [`Item::KeyStart`]: crate::Item::KeyStart
    /// [`Item::KeyEnd`]: crate::Item::KeyEnd
    /// [`Item::Key`]: crate::Item::Key
    pub fn chunk_threshold(&mut self, n: usize) -> &mut Self {
        self.chunk_threshold = n.max(1);
        self
    }

    /// Number of elements per chunk of a big collection.
    pub fn chunk_size(&mut self, n: usize) -> &mut Self {
        self.chunk_size = n.max(1);
        self
    }

    /// String values longer than this (raw, or once LZF-decompressed) come out in pieces of
    /// this many bytes (the last one what is left): `KeyStart`, `Chunk::String`s, `KeyEnd`.
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
    ///
    /// [`Item::KeyChecked`]: crate::Item::KeyChecked
    pub fn skip_values(&mut self, on: bool) -> &mut Self {
        self.skip_values = on;
        self
    }

    /// Also deliver, just before each key's last item, an [`Item::Packed`] with the sizes of
    /// the key's packed blobs (listpacks, ziplists, intsets, zipmaps; each quicklist node and
    /// stream listpack): what a memory estimate needs and the values do not tell. Off by
    /// default. Works with [`Config::skip_values`].
    ///
    /// [`Item::Packed`]: crate::Item::Packed
    pub fn packed_sizes(&mut self, on: bool) -> &mut Self {
        self.packed_sizes = on;
        self
    }

    /// `false`: values stored as packed blobs (listpacks, ziplists, intsets, zipmaps, and
    /// quicklists of them) are checked but not built and come out as [`Item::KeyChecked`];
    /// with [`Config::packed_sizes`] their [`Item::Packed`] tells their size, element count
    /// and longest element. Other values are built as usual. Default `true`. For a memory
    /// estimate, which needs the elements of hashtables but only the sizes of packed values.
    ///
    /// [`Item::KeyChecked`]: crate::Item::KeyChecked
    /// [`Item::Packed`]: crate::Item::Packed
    pub fn build_packed(&mut self, on: bool) -> &mut Self {
        self.build_packed = on;
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

    /// How many members of one hashtable-encoded set, hash or sorted set are remembered (9
    /// bytes each: 8 in a table sized for what the value announces, 1 in the filter in front
    /// of it) to find duplicates, which Redis refuses. Past it, later members are still
    /// checked against the remembered ones, and [`Decoder::partial_checks`] counts the key.
    /// Default 917,504 ([`DUP_CHECK_LIMIT`]: what an 8 MiB table holds). Compact
    /// encodings are always checked whole.
    ///
    /// [`Decoder::partial_checks`]: crate::Decoder::partial_checks
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
