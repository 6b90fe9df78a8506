//! One error type: what went wrong, why, and the key when one is known.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The target refused our credentials.
    Auth,
    /// The target refused a write and the settings say stop (`WRONGTYPE`, `OOM`, …).
    Target,
    /// A key already existed in the target and the settings say stop.
    Conflict,
    /// A command whose keys lie in several slots of a cluster target and that cannot be split.
    CrossSlot,
    /// A request the target cannot meet (a database a cluster does not have, a bad URL).
    Config,
    /// The target's replies made no sense.
    Protocol,
    /// The network (after the retries the settings allow).
    Io,
}

pub(crate) use ErrorKind as Kind;

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    msg: String,
    key: Option<Bytes>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// An error of the sink.
///
/// ```
/// let e = redis_sink::Error::new(redis_sink::ErrorKind::Config, "no such database");
/// assert_eq!(e.kind(), redis_sink::ErrorKind::Config);
/// assert_eq!(e.to_string(), "no such database");
/// ```
#[derive(Debug, Clone)]
pub struct Error(Arc<Inner>);

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` saying `msg`.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self(Arc::new(Inner {
            kind,
            msg: msg.into(),
            key: None,
            source: None,
        }))
    }

    /// The same, caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        msg: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(Inner {
            kind,
            msg: msg.into(),
            key: None,
            source: Some(Box::new(source)),
        }))
    }

    /// The same, naming `key`.
    #[must_use]
    pub fn with_key(self, key: Bytes) -> Self {
        let i = &self.0;
        Self(Arc::new(Inner {
            kind: i.kind,
            msg: i.msg.clone(),
            key: Some(key),
            source: None,
        }))
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The key it is about, when known.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key.as_deref()
    }

    /// True when retrying cannot help (credentials, settings, refusals the settings stop on).
    pub fn is_fatal(&self) -> bool {
        !matches!(self.0.kind, Kind::Io)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.msg)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
