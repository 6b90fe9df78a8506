//! Errors that say which file, where, and where the last good command ended.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::ManifestError;

/// What went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading failed (the `io::Error` is the [`source`](std::error::Error::source)).
    #[error("I/O error ({0:?})")]
    Io(std::io::ErrorKind),
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

/// An AOF error with its place: the file, the byte offset of the problem in it, and the end of
/// the last whole command before it (what `redis-check-aof` calls `ok_up_to`).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("appendonly.aof");
/// std::fs::write(&path, b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\n").unwrap();
/// let e = aof_manifest::AofReader::single(&path, Default::default())
///     .find_map(Result::err)
///     .unwrap();
/// assert!(e.is_truncated_tail());
/// assert_eq!((e.ok_up_to(), e.size()), (Some(14), 31));
/// ```
#[derive(Debug, Clone)]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone)]
pub(crate) struct Inner {
    pub(crate) kind: ErrorKind,
    pub(crate) path: Option<PathBuf>,
    pub(crate) file: Option<String>,
    pub(crate) offset: u64,
    pub(crate) ok_up_to: Option<u64>,
    pub(crate) last_file: bool,
    pub(crate) size: u64,
    pub(crate) io: Option<std::sync::Arc<std::io::Error>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self(Box::new(Inner {
            kind,
            path: None,
            file: None,
            offset: 0,
            ok_up_to: None,
            last_file: false,
            size: 0,
            io: None,
        }))
    }

    pub(crate) fn io(e: std::io::Error) -> Self {
        let mut err = Self::new(ErrorKind::Io(e.kind()));
        err.0.io = Some(std::sync::Arc::new(e));
        err
    }

    pub(crate) fn with_path(mut self, path: &Path) -> Self {
        self.0.path = Some(path.to_path_buf());
        self
    }

    pub(crate) fn inner_mut(&mut self) -> &mut Inner {
        &mut self.0
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The file's path, when the error concerns a file.
    pub fn path(&self) -> Option<&Path> {
        self.0.path.as_deref()
    }

    /// The file's name as the manifest lists it.
    pub fn file(&self) -> Option<&str> {
        self.0.file.as_deref()
    }

    /// Byte offset of the problem in the file.
    pub fn offset(&self) -> u64 {
        self.0.offset
    }

    /// End of the last whole command outside a transaction before the problem: truncating the
    /// file there leaves a valid file. `None` when the error is not about file contents.
    pub fn ok_up_to(&self) -> Option<u64> {
        self.0.ok_up_to
    }

    /// True when the file is the last of the sequence (the only one a fix may cut).
    pub fn is_last_file(&self) -> bool {
        self.0.last_file
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.0.size
    }

    /// True for a cut at the end of the last file: what a crash leaves, and what Redis loads
    /// up to the cut with `aof-load-truncated yes`.
    pub fn is_truncated_tail(&self) -> bool {
        self.0.last_file
            && matches!(
                self.0.kind,
                ErrorKind::Truncated { .. } | ErrorKind::OpenMulti
            )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        match (&e.file, &e.path) {
            (Some(name), _) => write!(f, "{name}: offset {}: {}", e.offset, e.kind)?,
            (None, Some(p)) => write!(f, "{}: {}", p.display(), e.kind)?,
            (None, None) => write!(f, "{}", e.kind)?,
        }
        if e.file.is_some() && !e.last_file {
            write!(
                f,
                " (not the last file of the AOF: this is not a crash's cut)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    /// The `io::Error` behind [`ErrorKind::Io`].
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .io
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
