//! The Redis 7 multi-part AOF manifest (`appendonly.aof.manifest`).

use std::fmt;

/// Longest manifest line Redis reads (`MANIFEST_MAX_LINE`).
pub const MAX_LINE: usize = 1024;

/// The role of a file in a multi-part AOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// `type b`: the snapshot of the last rewrite (RDB or AOF format).
    Base,
    /// `type h`: a file replaced by a rewrite, waiting to be deleted.
    History,
    /// `type i`: commands written since the base.
    Incr,
}

impl FileKind {
    /// The word for it: `base`, `history`, `incr`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::History => "history",
            Self::Incr => "incr",
        }
    }

    /// The manifest letter.
    pub fn letter(self) -> char {
        match self {
            Self::Base => 'b',
            Self::History => 'h',
            Self::Incr => 'i',
        }
    }
}

/// One `file … seq … type …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file name (a base name, relative to the manifest's directory).
    pub name: Vec<u8>,
    /// The sequence number.
    pub seq: u64,
    /// Base, history or incr.
    pub kind: FileKind,
    /// `startoffset`: replication offset at the start of the file (newer Redis).
    pub start_offset: Option<u64>,
    /// `endoffset`: replication offset at the end of the file (newer Redis).
    pub end_offset: Option<u64>,
    /// 1-based line number in the manifest.
    pub line: usize,
}

impl Entry {
    /// The name as text (lossy for names that are not UTF-8).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestErrorKind {
    /// The manifest has no lines at all.
    #[error("the manifest is empty")]
    Empty,
    /// A line longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// An empty line, unbalanced quotes, or not `key value` pairs.
    #[error("not `file <name> seq <n> type <b|h|i>` pairs")]
    Format,
    /// A required key is missing.
    #[error("missing `{0}`")]
    Missing(&'static str),
    /// A file name with a directory part.
    #[error("file name {0:?} is a path, not a base name")]
    NotBaseName(String),
    /// A `seq` that is not a positive integer.
    #[error("bad sequence number {0:?}")]
    BadSeq(String),
    /// A `startoffset` / `endoffset` that is not an integer.
    #[error("bad offset {0:?}")]
    BadOffset(String),
    /// A `type` other than b, h, i.
    #[error("unknown file type {0:?}")]
    UnknownType(String),
    /// A second base file.
    #[error("a second base file (the first is on line {0})")]
    DuplicateBase(usize),
    /// An incr file whose seq is not above the previous incr file's.
    #[error("incr seq {seq} is not above the previous incr seq {prev}")]
    NonMonotonicSeq {
        /// This line's seq.
        seq: u64,
        /// The previous incr file's seq.
        prev: u64,
    },
}

/// A manifest error, naming the line.
///
/// ```
/// let e = aof_manifest::Manifest::parse(b"file a seq 1\n").unwrap_err();
/// assert_eq!((e.line(), e.kind()), (1, &aof_manifest::ManifestErrorKind::Format));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError(Box<ManifestErrorInner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ManifestErrorInner {
    line: usize,
    text: String,
    kind: ManifestErrorKind,
}

impl ManifestError {
    fn new(line: usize, text: String, kind: ManifestErrorKind) -> Self {
        Self(Box::new(ManifestErrorInner { line, text, kind }))
    }

    /// 1-based line number (0 for errors about the whole file).
    pub fn line(&self) -> usize {
        self.0.line
    }

    /// The line's text (escaped where not printable, trimmed).
    pub fn text(&self) -> &str {
        &self.0.text
    }

    /// What is wrong.
    pub fn kind(&self) -> &ManifestErrorKind {
        &self.0.kind
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        if e.line == 0 {
            write!(f, "bad AOF manifest: {}", e.kind)
        } else {
            write!(
                f,
                "bad AOF manifest, line {}: {} (>>> {:?})",
                e.line, e.kind, e.text
            )
        }
    }
}

/// A parsed and validated manifest.
///
/// ```
/// use aof_manifest::{FileKind, Manifest};
///
/// let m = Manifest::parse(b"file appendonly.aof.2.base.rdb seq 2 type b\n\
///                           file appendonly.aof.1.incr.aof seq 1 type h\n\
///                           file appendonly.aof.3.incr.aof seq 3 type i\n").unwrap();
/// assert_eq!(m.base().unwrap().seq, 2);
/// assert_eq!(m.incrs().count(), 1);
/// assert_eq!(m.entries()[1].kind, FileKind::History);
///
/// let e = Manifest::parse(b"file a seq 1 type b\nfile b seq 2 type b\n").unwrap_err();
/// assert_eq!(e.line(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
}

fn is_base_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&b'\\')
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl Manifest {
    /// Parses and validates a manifest as Redis does: `#` comment lines, one `key value …`
    /// line per file with quoting as in `redis.conf`, unknown keys ignored; at most one base,
    /// incr seqs strictly increasing, base names only. Unlike Redis, a last line without a
    /// newline is accepted.
    pub fn parse(text: &[u8]) -> Result<Self, ManifestError> {
        let mut entries = Vec::new();
        let mut base_line = None;
        let mut prev_incr = 0u64;
        let mut lines = 0;
        for (i, raw) in text.split_inclusive(|&b| b == b'\n').enumerate() {
            let line_no = i + 1;
            lines += 1;
            let err =
                |kind| ManifestError::new(line_no, rdb_format::printable(raw.trim_ascii()), kind);
            if raw.first() == Some(&b'#') {
                continue;
            }
            if raw.len() > MAX_LINE {
                return Err(err(ManifestErrorKind::LineTooLong));
            }
            let line = raw.trim_ascii();
            if line.is_empty() {
                return Err(err(ManifestErrorKind::Format));
            }
            let args =
                resp_codec::split_args(line).ok_or_else(|| err(ManifestErrorKind::Format))?;
            if args.len() < 6 || args.len() % 2 != 0 {
                return Err(err(ManifestErrorKind::Format));
            }
            let (mut name, mut seq, mut kind, mut start, mut end) = (None, None, None, None, None);
            for kv in args.chunks(2) {
                let (k, v) = (&kv[0], &kv[1]);
                let text = || rdb_format::printable(v);
                if k.eq_ignore_ascii_case(b"file") {
                    if !is_base_name(v) {
                        return Err(err(ManifestErrorKind::NotBaseName(text())));
                    }
                    name = Some(v.clone());
                } else if k.eq_ignore_ascii_case(b"seq") {
                    match parse_u64(v) {
                        Some(n) if n > 0 => seq = Some(n),
                        _ => return Err(err(ManifestErrorKind::BadSeq(text()))),
                    }
                } else if k.eq_ignore_ascii_case(b"type") {
                    kind = Some(match v.as_slice() {
                        [b'b', ..] => FileKind::Base,
                        [b'h', ..] => FileKind::History,
                        [b'i', ..] => FileKind::Incr,
                        _ => return Err(err(ManifestErrorKind::UnknownType(text()))),
                    });
                } else if k.eq_ignore_ascii_case(b"startoffset") {
                    start = Some(
                        parse_u64(v).ok_or_else(|| err(ManifestErrorKind::BadOffset(text())))?,
                    );
                } else if k.eq_ignore_ascii_case(b"endoffset") {
                    end = Some(
                        parse_u64(v).ok_or_else(|| err(ManifestErrorKind::BadOffset(text())))?,
                    );
                }
                // other keys: written by a newer Redis, ignored as Redis does
            }
            let name = name.ok_or_else(|| err(ManifestErrorKind::Missing("file")))?;
            let seq = seq.ok_or_else(|| err(ManifestErrorKind::Missing("seq")))?;
            let kind = kind.ok_or_else(|| err(ManifestErrorKind::Missing("type")))?;
            match kind {
                FileKind::Base => {
                    if let Some(first) = base_line {
                        return Err(err(ManifestErrorKind::DuplicateBase(first)));
                    }
                    base_line = Some(line_no);
                }
                FileKind::Incr => {
                    if seq <= prev_incr {
                        return Err(err(ManifestErrorKind::NonMonotonicSeq {
                            seq,
                            prev: prev_incr,
                        }));
                    }
                    prev_incr = seq;
                }
                FileKind::History => {}
            }
            entries.push(Entry {
                name,
                seq,
                kind,
                start_offset: start,
                end_offset: end,
                line: line_no,
            });
        }
        if lines == 0 {
            return Err(ManifestError::new(
                0,
                String::new(),
                ManifestErrorKind::Empty,
            ));
        }
        Ok(Self { entries })
    }

    /// Every entry, in manifest order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The base file, if any.
    pub fn base(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.kind == FileKind::Base)
    }

    /// The incr files, in order.
    pub fn incrs(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == FileKind::Incr)
    }

    /// The history files, in manifest order.
    pub fn history(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == FileKind::History)
    }

    /// The files to load, in order: the base, then the incr files (what Redis loads).
    pub fn load_order(&self) -> Vec<&Entry> {
        self.base().into_iter().chain(self.incrs()).collect()
    }
}
