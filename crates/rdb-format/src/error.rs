//! Typed errors with the byte offset where decoding failed.

use std::fmt;

use bytes::Bytes;

/// A decoding error: what went wrong, where (byte offset in the input) and what was being decoded.
///
/// ```
/// let err = rdb_format::decode_all(b"NOTANRDB0").unwrap_err();
/// assert_eq!(err.offset(), 0);
/// assert!(matches!(err.kind(), rdb_format::ErrorKind::BadMagic { .. }));
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    offset: u64,
    context: Context,
    /// The I/O error behind [`ErrorKind::Io`].
    io: Option<std::sync::Arc<std::io::Error>>,
}

/// What the decoder was doing when an error happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Context {
    /// The opcode or value type byte being decoded, when known.
    pub opcode: Option<u8>,
    /// The name of the value type (`"hash"`, `"quicklist"`, …) or item being decoded.
    pub doing: Option<&'static str>,
    /// The key whose value was being decoded, when known.
    pub key: Option<Bytes>,
}

/// Why decoding failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file does not start with `REDIS` or `VALKEY` and a version number.
    #[error("bad magic {found:?}: not an RDB file")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The RDB version is newer than this decoder knows, or not one Redis or Valkey writes.
    #[error(
        "RDB version {version} ({}{version:0width$}) is not one this decoder knows: likely \
         written by {likely}{}",
        if *flavor == crate::Flavor::Valkey { "VALKEY" } else { "REDIS" },
        if *relaxable { "; a relaxed version check (--relaxed-version) tries it anyway" } else { "" },
        width = if *flavor == crate::Flavor::Valkey { 3 } else { 4 }
    )]
    UnsupportedVersion {
        /// The magic's server family.
        flavor: crate::Flavor,
        /// The version number.
        version: u32,
        /// Which server most likely wrote it.
        likely: &'static str,
        /// Whether [`Config::relaxed_version`](crate::Config::relaxed_version) would try it.
        relaxable: bool,
    },
    /// The input ended in the middle of an item.
    #[error("input ended while reading {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// An opcode byte that this RDB version does not define.
    #[error("unknown opcode or value type {0} for this RDB version")]
    UnknownType(u8),
    /// A value type that is known but cannot be decoded (e.g. pre-GA module values).
    #[error("value type {ty} cannot be decoded: {why}")]
    Unsupported {
        /// The type byte.
        ty: u8,
        /// Why.
        why: &'static str,
    },
    /// A length field larger than the configured limit.
    #[error("length {len} exceeds the limit {max}")]
    TooLarge {
        /// The length found in the input.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// The CRC-64 at the end of the file does not match the bytes read.
    #[error("checksum mismatch: file says {expected:016x}, computed {actual:016x}")]
    Checksum {
        /// The checksum stored in the file.
        expected: u64,
        /// The checksum computed over the bytes read.
        actual: u64,
    },
    /// A structure inside a value (ziplist, listpack, intset, zipmap, stream…) is malformed.
    #[error("corrupt {what}: {why}")]
    Corrupt {
        /// The structure.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// LZF decompression failed.
    #[error("LZF data does not decompress to the stated {expected} bytes")]
    Lzf {
        /// The stated uncompressed length.
        expected: u64,
    },
    /// Bytes follow the end of the RDB file where none were expected.
    #[error("{0} bytes of trailing data after EOF")]
    TrailingData(u64),
    /// An I/O error from the driver's reader (the error itself is the
    /// [`source`](std::error::Error::source)).
    #[error("I/O error ({0:?})")]
    Io(std::io::ErrorKind),
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, offset: u64) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                offset,
                context: Context::default(),
                io: None,
            }),
        }
    }

    /// A checksum error made before the actual checksum was known, with it.
    pub(crate) fn with_actual_checksum(mut self, sum: u64) -> Self {
        if let ErrorKind::Checksum { actual, .. } = &mut self.inner.kind {
            *actual = sum;
        }
        self
    }

    pub(crate) fn with_context(mut self, ctx: &Context) -> Self {
        let c = &mut self.inner.context;
        if c.opcode.is_none() {
            c.opcode = ctx.opcode;
        }
        if c.doing.is_none() {
            c.doing = ctx.doing;
        }
        if c.key.is_none() {
            c.key.clone_from(&ctx.key);
        }
        self
    }

    /// The error about `key` (unless it names a key already).
    pub(crate) fn with_key(mut self, key: &Bytes) -> Self {
        if self.inner.context.key.is_none() {
            self.inner.context.key = Some(key.clone());
        }
        self
    }

    pub(crate) fn io(err: std::io::Error, offset: u64) -> Self {
        let mut e = Self::new(ErrorKind::Io(err.kind()), offset);
        e.inner.io = Some(std::sync::Arc::new(err));
        e
    }

    /// An I/O error met by a driver outside this crate, at `offset` in the input (kept as the
    /// [`source`](std::error::Error::source)).
    pub fn from_io(err: std::io::Error, offset: u64) -> Self {
        Self::io(err, offset)
    }

    /// Why decoding failed.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// Byte offset in the input where the failing item or field starts.
    pub fn offset(&self) -> u64 {
        self.inner.offset
    }

    /// What was being decoded.
    pub fn context(&self) -> &Context {
        &self.inner.context
    }

    /// True when the input simply ended too early (a truncated file).
    pub fn is_truncated(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Truncated { .. })
    }
}

impl Clone for Error {
    fn clone(&self) -> Self {
        Self {
            inner: Box::new(Inner {
                kind: self.inner.kind.clone(),
                offset: self.inner.offset,
                context: self.inner.context.clone(),
                io: self.inner.io.clone(),
            }),
        }
    }
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.inner.kind == other.inner.kind
            && self.inner.offset == other.inner.offset
            && self.inner.context == other.inner.context
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("offset", &self.inner.offset)
            .field("context", &self.inner.context)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.inner.offset, self.inner.kind)?;
        let c = &self.inner.context;
        if let Some(doing) = c.doing {
            write!(f, " (while reading {doing}")?;
            if let Some(op) = c.opcode {
                write!(f, ", type/opcode {op}")?;
            }
            if let Some(key) = &c.key {
                write!(f, ", key {}", Shown(key))?;
            }
            write!(f, ")")?;
        } else if let Some(key) = &c.key {
            write!(f, " (key {})", Shown(key))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    /// The I/O error behind [`ErrorKind::Io`]; `None` otherwise ([`Display`](fmt::Display)
    /// already says what the kind is, so a chain prints it once).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .io
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Why the [`Encoder`](crate::Encoder) or a `DUMP` payload writer refused: what it is about (the
/// key, when one was being written) and why. A failed write keeps its `io::Error` as the
/// [`source`](std::error::Error::source).
///
/// ```
/// use rdb_format::{EncodeConfig, EncodeErrorKind, Encoder, KeyRecord, Value};
/// let mut enc = Encoder::new(Vec::new(), EncodeConfig::new(9).unwrap()).unwrap();
/// let rec = KeyRecord::new(0, "scores".into(), Value::SortedSet(vec![("m".into(), f64::NAN)]));
/// let err = enc.key(&rec).unwrap_err();
/// assert_eq!(err.key().map(|k| &k[..]), Some(&b"scores"[..]));
/// assert!(matches!(err.kind(), EncodeErrorKind::Cannot { .. }));
/// assert!(err.to_string().starts_with("key \"scores\": "));
/// ```
pub struct EncodeError {
    inner: Box<EncodeInner>,
}

struct EncodeInner {
    kind: EncodeErrorKind,
    key: Option<Bytes>,
    io: Option<std::io::Error>,
}

/// Why encoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeErrorKind {
    /// The target version (or Redis itself) cannot hold the value as given.
    #[error("{why}")]
    Cannot {
        /// Why.
        why: &'static str,
    },
    /// The value breaks a rule every server keeps (a duplicate member, …).
    #[error("{what}: {why}")]
    Invalid {
        /// What was being written.
        what: &'static str,
        /// Why it is invalid.
        why: String,
    },
    /// No encoder for this RDB version.
    #[error("RDB version {0}: the encoder writes RDB 9 to 14 and 80 (Valkey 9)")]
    Version(u32),
    /// The encoder was given part of a key (decode with `Config::chunk_threshold(usize::MAX)`
    /// and `string_piece(u64::MAX)` for whole keys).
    #[error("the encoder takes whole keys, not {0}")]
    NotWhole(&'static str),
    /// Writing the output failed.
    #[error("cannot write the RDB")]
    Io,
}

impl EncodeError {
    pub(crate) fn new(kind: EncodeErrorKind) -> Self {
        Self {
            inner: Box::new(EncodeInner {
                kind,
                key: None,
                io: None,
            }),
        }
    }

    pub(crate) fn io(err: std::io::Error) -> Self {
        let mut e = Self::new(EncodeErrorKind::Io);
        e.inner.io = Some(err);
        e
    }

    /// The error about `key` (unless it names a key already).
    #[must_use]
    pub fn for_key(mut self, key: &Bytes) -> Self {
        if self.inner.key.is_none() {
            self.inner.key = Some(key.clone());
        }
        self
    }

    /// Why.
    pub fn kind(&self) -> &EncodeErrorKind {
        &self.inner.kind
    }

    /// The key being written, when the error is about one.
    pub fn key(&self) -> Option<&Bytes> {
        self.inner.key.as_ref()
    }
}

impl From<EncodeErrorKind> for EncodeError {
    fn from(kind: EncodeErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Debug for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodeError")
            .field("kind", &self.inner.kind)
            .field("key", &self.inner.key)
            .field("io", &self.inner.io)
            .finish()
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(key) = &self.inner.key {
            write!(f, "key {}: ", Shown(key))?;
        }
        fmt::Display::fmt(&self.inner.kind, f)
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .io
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Bytes as they are safe to print in a message: in double quotes, printable ASCII as is,
/// `\"`, `\\`, and every other byte as `\xNN` (no control character or escape sequence
/// reaches a terminal); cut after 200 bytes, with the full length given.
///
/// ```
/// let key = b"\x1b[31mred\x07";
/// assert_eq!(rdb_format::Shown(key).to_string(), r#""\x1b[31mred\x07""#);
/// let long = vec![b'a'; 1000];
/// assert!(rdb_format::Shown(&long).to_string().ends_with("\"... (1000 bytes)"));
/// ```
#[derive(Clone, Copy)]
pub struct Shown<'a>(pub &'a [u8]);

impl Shown<'_> {
    /// Bytes shown before a value is cut.
    pub const MAX: usize = 200;
}

/// Writes the first [`Shown::MAX`] bytes of `b` escaped (`"` too when `quoted`).
fn escape(out: &mut impl fmt::Write, b: &[u8], quoted: bool) -> fmt::Result {
    for &c in &b[..b.len().min(Shown::MAX)] {
        match c {
            b'"' if quoted => out.write_str("\\\"")?,
            b'\\' => out.write_str("\\\\")?,
            0x20..=0x7e => out.write_char(char::from(c))?,
            _ => write!(out, "\\x{c:02x}")?,
        }
    }
    Ok(())
}

/// What follows a value cut after [`Shown::MAX`] bytes.
fn cut_note(out: &mut impl fmt::Write, b: &[u8]) -> fmt::Result {
    if b.len() > Shown::MAX {
        write!(out, "... ({} bytes)", b.len())?;
    }
    Ok(())
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        escape(f, self.0, true)?;
        f.write_str("\"")?;
        cut_note(f, self.0)
    }
}

/// Text from the input made safe to put in a message, without quotes: printable ASCII as is,
/// every other byte as `\xNN`, cut after [`Shown::MAX`] bytes with the full length given.
///
/// ```
/// assert_eq!(rdb_format::printable(b"ERR \x1b[2J"), r"ERR \x1b[2J");
/// ```
pub fn printable(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().min(Shown::MAX) + 2);
    // writing into a String does not fail
    let _ = escape(&mut s, b, false).and_then(|()| cut_note(&mut s, b));
    s
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
