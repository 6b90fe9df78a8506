//! [`Error`]: the facade's one error type.

use std::fmt;

/// Any error of the toolkit: a bad RDB, a value the encoder cannot write, a bad AOF, a failed
/// replication link, or I/O. Its [`Display`](fmt::Display) is the underlying error's own, one
/// level; [`source`](std::error::Error::source) continues the chain (an `io::Error` stays one).
///
/// ```
/// let err = replicator::files::open("/no/such/file.rdb".as_ref(), Default::default()).unwrap_err();
/// assert!(matches!(err.kind(), replicator::ErrorKind::Io { .. }));
/// assert_eq!(err.to_string(), "cannot open /no/such/file.rdb");
/// let io = std::error::Error::source(&err).unwrap();
/// assert!(io.downcast_ref::<std::io::Error>().is_some());
/// ```
pub struct Error {
    inner: Box<ErrorKind>,
}

/// What failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Decoding an RDB (file, AOF base, full sync).
    Rdb(rdb_format::Error),
    /// Writing an RDB or a `DUMP` payload.
    Encode(rdb_format::EncodeError),
    /// Reading an AOF.
    #[cfg(feature = "aof")]
    Aof(aof_manifest::Error),
    /// The replication link.
    #[cfg(feature = "net")]
    Net(replica_net::Error),
    /// Writing into a live target (`sync`).
    #[cfg(feature = "sink")]
    Sink(redis_sink::Error),
    /// Reading or writing a file or stream.
    Io {
        /// What was being done ("cannot open dump.rdb"), empty when nothing more is known.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Bad settings or a request the input cannot meet (a filter's bad regular expression,
    /// commands where only data can go).
    Invalid(String),
}

impl Error {
    /// An error of this kind.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            inner: Box::new(kind),
        }
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::new(ErrorKind::Io {
            what: what.into(),
            source,
        })
    }

    /// Bad settings or input that cannot be handled as asked.
    pub fn invalid(why: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid(why.into()))
    }

    /// What failed.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner
    }

    /// The error, unboxed.
    pub fn into_kind(self) -> ErrorKind {
        *self.inner
    }

    /// The byte offset in the input where decoding failed, when known.
    pub fn offset(&self) -> Option<u64> {
        match &*self.inner {
            ErrorKind::Rdb(e) => Some(e.offset()),
            #[cfg(feature = "aof")]
            ErrorKind::Aof(e) => Some(e.offset()),
            _ => None,
        }
    }

    /// The key being decoded or encoded, when known.
    pub fn key(&self) -> Option<&[u8]> {
        match &*self.inner {
            ErrorKind::Rdb(e) => e.context().key.as_deref(),
            ErrorKind::Encode(e) => e.key().map(|k| &k[..]),
            #[cfg(feature = "sink")]
            ErrorKind::Sink(e) => e.key(),
            _ => None,
        }
    }

    /// True when the reader of our output went away (`| head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(&*self.inner, ErrorKind::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            ErrorKind::Rdb(e) => e.fmt(f),
            ErrorKind::Encode(e) => e.fmt(f),
            #[cfg(feature = "aof")]
            ErrorKind::Aof(e) => e.fmt(f),
            #[cfg(feature = "net")]
            ErrorKind::Net(e) => e.fmt(f),
            #[cfg(feature = "sink")]
            ErrorKind::Sink(e) => e.fmt(f),
            ErrorKind::Io { what, source } if what.is_empty() => source.fmt(f),
            ErrorKind::Io { what, .. } => f.write_str(what),
            ErrorKind::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.inner {
            ErrorKind::Rdb(e) => e.source(),
            ErrorKind::Encode(e) => e.source(),
            #[cfg(feature = "aof")]
            ErrorKind::Aof(e) => e.source(),
            #[cfg(feature = "net")]
            ErrorKind::Net(e) => e.source(),
            #[cfg(feature = "sink")]
            ErrorKind::Sink(e) => e.source(),
            ErrorKind::Io { what, source } if !what.is_empty() => Some(source),
            ErrorKind::Io { source, .. } => source.source(),
            ErrorKind::Invalid(_) => None,
        }
    }
}

impl From<rdb_format::Error> for Error {
    fn from(e: rdb_format::Error) -> Self {
        Self::new(ErrorKind::Rdb(e))
    }
}

impl From<rdb_format::EncodeError> for Error {
    fn from(e: rdb_format::EncodeError) -> Self {
        Self::new(ErrorKind::Encode(e))
    }
}

#[cfg(feature = "aof")]
impl From<aof_manifest::Error> for Error {
    fn from(e: aof_manifest::Error) -> Self {
        Self::new(ErrorKind::Aof(e))
    }
}

#[cfg(feature = "net")]
impl From<replica_net::Error> for Error {
    fn from(e: replica_net::Error) -> Self {
        Self::new(ErrorKind::Net(e))
    }
}

#[cfg(feature = "sink")]
impl From<redis_sink::Error> for Error {
    fn from(e: redis_sink::Error) -> Self {
        Self::new(ErrorKind::Sink(e))
    }
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Self::new(ErrorKind::Io {
            what: String::new(),
            source,
        })
    }
}

/// `Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
