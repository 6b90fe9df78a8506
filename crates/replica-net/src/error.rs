//! An opaque error that says what kind of failure it was.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Io,
    Timeout,
    Closed,
    Protocol,
    Auth,
    Tls,
    Rdb,
    Retry,
    Config,
}

/// A replication error. Ask what kind it is with the `is_*` methods; `source()` gives the
/// cause when there is one.
pub struct Error {
    kind: Kind,
    msg: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: Kind,
        msg: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            msg: msg.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Reading or writing the socket failed.
    pub fn is_io(&self) -> bool {
        self.kind == Kind::Io
    }
    /// Connecting or reading took longer than the configured timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }
    /// The master closed the connection.
    pub fn is_closed(&self) -> bool {
        self.kind == Kind::Closed
    }
    /// The master sent something a master must not send.
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol | Kind::Rdb)
    }
    /// The master refused the credentials (or the user lacks a permission). Not retried.
    pub fn is_auth(&self) -> bool {
        self.kind == Kind::Auth
    }
    /// The TLS handshake failed (for example, the certificate did not verify).
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }
    /// The RDB transfer was damaged (the RDB decoder's error is the source).
    pub fn is_rdb(&self) -> bool {
        self.kind == Kind::Rdb
    }
    /// The master asked to be tried again later (`-LOADING`, `-NOMASTERLINK`).
    pub fn is_retry_later(&self) -> bool {
        self.kind == Kind::Retry
    }
    /// The settings are unusable (bad URL, unreadable certificate). Not retried.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }
    /// True when reconnecting cannot help: refused credentials, unusable settings, and TLS
    /// handshake failures (an unverifiable certificate does not get better by retrying).
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, Kind::Auth | Kind::Config | Kind::Tls)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("msg", &self.msg);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
