//! An opaque error that says what kind of failure it was.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing the socket failed.
    Io,
    /// Connecting or reading took longer than allowed, or the link went silent.
    Timeout,
    /// The master closed the connection.
    Closed,
    /// The master sent something a master must not send.
    Protocol,
    /// The master refused the credentials (or the user lacks a permission).
    Auth,
    /// The TLS handshake failed.
    Tls,
    /// The RDB transfer was damaged (the RDB decoder's error is the source).
    Rdb,
    /// The master asked to be tried again later (`-LOADING`, `-NOMASTERLINK`).
    Retry,
    /// The settings are unusable (bad URL, unreadable certificate).
    Config,
}

pub(crate) type Kind = ErrorKind;

/// A replication error: what kind ([`kind`](Self::kind), or the `is_*` methods), a message
/// that says what failed ([`Display`](fmt::Display), one level), and the cause as
/// [`source`](std::error::Error::source) when there is one (an `io::Error`, the RDB decoder's
/// error, a TLS error).
///
/// ```
/// let e = replica_net::ClientConfig::from_url("http://x").unwrap_err();
/// assert_eq!(e.kind(), replica_net::ErrorKind::Config);
/// assert!(e.is_fatal());
/// ```
pub struct Error(Box<Inner>);

struct Inner {
    kind: Kind,
    msg: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind,
            msg: msg.into(),
            source: None,
        }))
    }

    pub(crate) fn with_source(
        kind: Kind,
        msg: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self(Box::new(Inner {
            kind,
            msg: msg.into(),
            source: Some(Box::new(source)),
        }))
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message and every cause, joined with `: ` (for a one-line reason).
    pub(crate) fn chain(&self) -> String {
        let mut out = self.0.msg.clone();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }

    /// Reading or writing the socket failed.
    pub fn is_io(&self) -> bool {
        self.0.kind == Kind::Io
    }
    /// Connecting or reading took longer than the configured timeout.
    pub fn is_timeout(&self) -> bool {
        self.0.kind == Kind::Timeout
    }
    /// The master closed the connection.
    pub fn is_closed(&self) -> bool {
        self.0.kind == Kind::Closed
    }
    /// The master sent something a master must not send.
    pub fn is_protocol(&self) -> bool {
        matches!(self.0.kind, Kind::Protocol | Kind::Rdb)
    }
    /// The master refused the credentials (or the user lacks a permission). Not retried.
    pub fn is_auth(&self) -> bool {
        self.0.kind == Kind::Auth
    }
    /// The TLS handshake failed (for example, the certificate did not verify).
    pub fn is_tls(&self) -> bool {
        self.0.kind == Kind::Tls
    }
    /// The RDB transfer was damaged (the RDB decoder's error is the source).
    pub fn is_rdb(&self) -> bool {
        self.0.kind == Kind::Rdb
    }
    /// The master asked to be tried again later (`-LOADING`, `-NOMASTERLINK`).
    pub fn is_retry_later(&self) -> bool {
        self.0.kind == Kind::Retry
    }
    /// The settings are unusable (bad URL, unreadable certificate). Not retried.
    pub fn is_config(&self) -> bool {
        self.0.kind == Kind::Config
    }
    /// True when reconnecting cannot help: refused credentials, unusable settings, and TLS
    /// handshake failures (an unverifiable certificate does not get better by retrying).
    pub fn is_fatal(&self) -> bool {
        matches!(self.0.kind, Kind::Auth | Kind::Config | Kind::Tls)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind).field("msg", &self.0.msg);
        if let Some(s) = &self.0.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the cause is the source, not repeated here
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

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
