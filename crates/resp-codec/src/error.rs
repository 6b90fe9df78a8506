//! Typed decoding errors, each with the byte offset where the input went wrong.

/// What was wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The first byte of a frame is not a RESP type byte.
    #[error("unknown RESP type byte 0x{0:02x}")]
    BadType(u8),
    /// A length field is not a decimal integer.
    #[error("bad length")]
    BadLength,
    /// A negative length other than the `-1` null of `$` and `*`.
    #[error("negative length {0}")]
    NegativeLength(i64),
    /// A bulk string longer than [`Limits::max_bulk_len`](crate::Limits::max_bulk_len).
    #[error("bulk length {len} exceeds the limit of {limit}")]
    BulkTooLong {
        /// The length the input claimed.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// An aggregate longer than [`Limits::max_aggregate_len`](crate::Limits::max_aggregate_len).
    #[error("aggregate length {len} exceeds the limit of {limit}")]
    AggregateTooLong {
        /// The length the input claimed.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// Aggregates nested deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("aggregates nested deeper than {limit}")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// A header or inline line longer than [`Limits::max_line_len`](crate::Limits::max_line_len)
    /// without a line end.
    #[error("line longer than {limit} bytes without a line end")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// A bulk payload not followed by CRLF.
    #[error("missing CRLF after a bulk payload")]
    MissingCrlf,
    /// A line ended by a bare LF (no CR before it).
    #[error("line ends with LF but no CR")]
    BareLf,
    /// An integer frame that is not a decimal `i64`.
    #[error("bad integer")]
    BadInteger,
    /// A double frame that is not a number, `inf`, `-inf` or `nan`.
    #[error("bad double")]
    BadDouble,
    /// A boolean other than `#t` / `#f`.
    #[error("bad boolean")]
    BadBoolean,
    /// A big number that is not an optionally signed run of digits.
    #[error("bad big number")]
    BadBigNumber,
    /// A verbatim string without its `xxx:` format prefix.
    #[error("verbatim string without a 3-byte format and ':'")]
    BadVerbatim,
    /// A RESP3 null (`_`) with something on its line.
    #[error("null with data")]
    BadNull,
    /// A frame that is not a command where a command was expected.
    #[error("not a command (an array of bulk strings)")]
    NotACommand,
    /// An inline command with unbalanced quotes.
    #[error("unbalanced quotes in an inline command")]
    UnbalancedQuotes,
}

/// A decoding error: what was wrong and the offset (in the whole stream) of the first byte of
/// the line or payload that was wrong.
///
/// ```
/// let mut dec = resp_codec::Decoder::new();
/// let mut buf = bytes::BytesMut::from(&b"+OK\r\n?x\r\n"[..]);
/// assert!(dec.decode(&mut buf).unwrap().is_some());
/// let e = dec.decode(&mut buf).unwrap_err();
/// assert_eq!((e.kind(), e.offset()), (&resp_codec::ErrorKind::BadType(b'?'), 5));
/// assert_eq!(e.to_string(), "RESP error at offset 5: unknown RESP type byte 0x3f");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    offset: u64,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, offset: u64) -> Self {
        Self(Box::new(Inner { kind, offset }))
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The offset in the stream (counted from the decoder's start) where it went wrong.
    pub fn offset(&self) -> u64 {
        self.0.offset
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("offset", &self.0.offset)
            .finish()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RESP error at offset {}: {}", self.0.offset, self.0.kind)
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
