//! Errors that say which file, where, and where the last good command ended.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::ManifestError;

/// What went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading failed.
    #[error("{0}")]
    Io(String),
    /// The manifest is bad.
    #[error(transparent)]
    Manifest(ManifestError),
    /// A directory without a `*.manifest` file.
    #[error("no AOF manifest (*.manifest) in the directory")]
    NoManifest,
    /// A directory with several `*.manifest` files.
    #[error("several AOF manifests (*.manifest) in the directory")]
    ManyManifests,
    /// The RDB part (base or preamble) is bad or cut.
    #[error("RDB part: {0}")]
    Rdb(rdb_format::Error),
    /// Bad RESP.
    #[error("bad RESP: {0}")]
    Resp(resp_codec::ErrorKind),
    /// The file ends inside a command or an annotation (what a crash leaves).
    #[error("the file ends inside {what}")]
    Truncated {
        /// What was cut.
        what: String,
    },
    /// The file ends with a MULTI not closed by EXEC.
    #[error("MULTI without EXEC at the end of the file")]
    OpenMulti,
    /// A command Redis would refuse to load.
    #[error("{0}")]
    BadCommand(&'static str),
    /// An annotation line longer than Redis writes.
    #[error("annotation line longer than {} bytes", crate::reader::MAX_ANNOTATION)]
    BadAnnotation,
}

/// An AOF error with its place (boxed: see [`ErrorInfo`] for the fields, reachable directly
/// as `e.kind`, `e.offset`, …).
#[derive(Debug, Clone)]
pub struct Error(Box<ErrorInfo>);

impl std::ops::Deref for Error {
    type Target = ErrorInfo;
    fn deref(&self) -> &ErrorInfo {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut ErrorInfo {
        &mut self.0
    }
}

/// What an [`Error`] says: the file, the byte offset of the problem in it, and the end of the
/// last whole command before it (what `redis-check-aof` calls `ok_up_to`).
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The file's path, when the error concerns a file.
    pub path: Option<PathBuf>,
    /// The file's name as listed.
    pub file: Option<String>,
    /// Byte offset of the problem in the file.
    pub offset: u64,
    /// End of the last whole command outside a transaction before the problem: truncating the
    /// file there leaves a valid file. `None` when the error is not about file contents.
    pub ok_up_to: Option<u64>,
    /// True when the file is the last of the sequence (the only one a fix may cut).
    pub last_file: bool,
    /// The file's size.
    pub size: u64,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self(Box::new(ErrorInfo {
            kind,
            path: None,
            file: None,
            offset: 0,
            ok_up_to: None,
            last_file: false,
            size: 0,
        }))
    }

    pub(crate) fn with_path(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    /// True for a cut at the end of the last file: what a crash leaves, and what Redis loads
    /// up to the cut with `aof-load-truncated yes`.
    pub fn is_truncated_tail(&self) -> bool {
        self.last_file
            && matches!(
                self.kind,
                ErrorKind::Truncated { .. } | ErrorKind::OpenMulti
            )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, &self.path) {
            (Some(name), _) => write!(f, "{name}: offset {}: {}", self.offset, self.kind)?,
            (None, Some(p)) => write!(f, "{}: {}", p.display(), self.kind)?,
            (None, None) => write!(f, "{}", self.kind)?,
        }
        if self.file.is_some() && !self.last_file {
            write!(
                f,
                " (not the last file of the AOF: this is not a crash's cut)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
