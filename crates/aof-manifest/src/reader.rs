//! One iterator of events over a directory, a manifest or a single AOF file.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use resp_codec::Command;

use crate::error::{Error, ErrorKind};
use crate::manifest::{FileKind, Manifest};

/// Longest annotation line Redis writes or reads (`AOF_ANNOTATION_LINE_MAX_LEN`).
pub const MAX_ANNOTATION: usize = 1024;
const READ: usize = 256 << 10;

/// What a path holds, judged by its name and first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detected {
    /// An RDB file (`REDIS`/`VALKEY` magic, not named `*.aof`).
    Rdb,
    /// A single-file AOF: RESP commands, `#` annotations, or an RDB preamble in a `*.aof`.
    Aof,
    /// A multi-part AOF manifest.
    Manifest,
    /// A directory (an `appendonlydir`).
    Dir,
}

/// Tells an RDB file from an AOF file, a manifest or an AOF directory.
pub fn detect(path: &Path) -> std::io::Result<Detected> {
    if path.is_dir() {
        return Ok(Detected::Dir);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".manifest") {
        return Ok(Detected::Manifest);
    }
    let mut head = [0u8; 9];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    let rdb = head.starts_with(b"REDIS") || head.starts_with(b"VALKEY");
    Ok(if rdb {
        if name.ends_with(".aof") {
            Detected::Aof
        } else {
            Detected::Rdb
        }
    } else if head.starts_with(b"*") || head.starts_with(b"#") {
        Detected::Aof
    } else if head.len() >= 5 && head[..5].eq_ignore_ascii_case(b"file ") {
        Detected::Manifest
    } else {
        Detected::Rdb
    })
}

/// One file of the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Where it is.
    pub path: PathBuf,
    /// Its name as the manifest (or the path) gives it.
    pub name: String,
    /// Its role; `None` for a single-file AOF.
    pub kind: Option<FileKind>,
    /// True for the last file read: the only one a crash may leave truncated, and the only
    /// one a fix may cut.
    pub last: bool,
}

/// Reader settings; change them with the setters.
///
/// ```
/// let mut opts = aof_manifest::Options::default();
/// opts.history(true).rdb_mut().skip_values(true);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    history: bool,
    rdb: rdb_format::Config,
}

impl Options {
    /// Also read the history files (`type h`), before the base. They hold data a rewrite has
    /// already folded into the base; only for inspection.
    pub fn history(&mut self, on: bool) -> &mut Self {
        self.history = on;
        self
    }

    /// Settings for RDB parts (base files and preambles).
    pub fn rdb(&mut self, config: rdb_format::Config) -> &mut Self {
        self.rdb = config;
        self
    }

    /// The settings for RDB parts, to change one.
    pub fn rdb_mut(&mut self) -> &mut rdb_format::Config {
        &mut self.rdb
    }
}

/// A command of an AOF file.
#[derive(Debug, Clone)]
pub struct AofCommand {
    /// The database the command applies to (after a SELECT: the one it selects). Each file
    /// starts in db 0, as Redis loads it.
    pub db: u64,
    /// The command as written (arguments and raw bytes).
    pub cmd: Command,
    /// Index of the file in [`AofReader::files`].
    pub file: usize,
    /// Byte offset of the command in that file.
    pub offset: u64,
    /// The last `#TS:` annotation seen in the file before the command.
    pub ts: Option<i64>,
}

/// What the reader found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A file begins.
    FileStart {
        /// Index in [`AofReader::files`].
        file: usize,
        /// True when it starts with RDB data (an RDB base or an RDB preamble).
        rdb: bool,
    },
    /// An item of the file's RDB part.
    Rdb {
        /// Index in [`AofReader::files`].
        file: usize,
        /// The item, as `rdb-format` decodes it.
        item: rdb_format::Item,
    },
    /// A `#…` annotation line.
    Annotation {
        /// Index in [`AofReader::files`].
        file: usize,
        /// Byte offset of the `#`.
        offset: u64,
        /// The line without its line end.
        text: bytes::Bytes,
        /// The timestamp of a `#TS:<unix>` line.
        ts: Option<i64>,
    },
    /// A command.
    Command(AofCommand),
    /// A file ended cleanly.
    FileEnd {
        /// Index in [`AofReader::files`].
        file: usize,
        /// Its size in bytes.
        size: u64,
    },
}

enum Mode {
    Start,
    Rdb(Box<rdb_format::Decoder>),
    Resp,
}

struct Current {
    idx: usize,
    file: File,
    buf: BytesMut,
    eof: bool,
    size: u64,
    mode: Mode,
    resp: resp_codec::Decoder,
    db: u64,
    ts: Option<i64>,
    /// Offset of an open MULTI.
    multi: Option<u64>,
    /// End of the last command outside a transaction (where a fix would cut).
    ok_up_to: u64,
}

/// Reads a multi-part AOF (directory or manifest) or a single-file AOF as one sequence of
/// [`Event`]s: the base's RDB items or commands, then every incr file's commands, each with
/// its db, file and offset.
///
/// ```no_run
/// use aof_manifest::{AofReader, Event};
///
/// let mut aof = AofReader::open("appendonlydir".as_ref(), Default::default()).unwrap();
/// while let Some(ev) = aof.next_event().unwrap() {
///     if let Event::Command(c) = ev {
///         println!("db {} {:?}", c.db, c.cmd.arg(0));
///     }
/// }
/// ```
pub struct AofReader {
    files: Vec<FileInfo>,
    next: usize,
    cur: Option<Current>,
    opts: Options,
    done: bool,
    manifest: Option<Manifest>,
}

impl std::fmt::Debug for AofReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AofReader")
            .field("files", &self.files)
            .field("next", &self.next)
            .finish()
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::io(e).with_path(path)
}

impl AofReader {
    /// Opens a directory (finds its `*.manifest`), a manifest, or a single AOF file.
    pub fn open(path: &Path, opts: Options) -> Result<Self, Error> {
        match detect(path).map_err(|e| io_err(path, e))? {
            Detected::Dir => {
                let mut found = Vec::new();
                for entry in std::fs::read_dir(path).map_err(|e| io_err(path, e))? {
                    let entry = entry.map_err(|e| io_err(path, e))?;
                    if entry.file_name().to_string_lossy().ends_with(".manifest") {
                        found.push(entry.path());
                    }
                }
                match found.len() {
                    1 => Self::from_manifest(&found[0], opts),
                    0 => Err(Error::new(ErrorKind::NoManifest).with_path(path)),
                    _ => Err(Error::new(ErrorKind::ManyManifests).with_path(path)),
                }
            }
            Detected::Manifest => Self::from_manifest(path, opts),
            Detected::Aof | Detected::Rdb => Ok(Self::single(path, opts)),
        }
    }

    /// Reads the files a manifest lists, from the manifest's directory.
    pub fn from_manifest(path: &Path, opts: Options) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|e| io_err(path, e))?;
        let manifest = Manifest::parse(&text)
            .map_err(|e| Error::new(ErrorKind::Manifest(e)).with_path(path))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut order: Vec<_> = Vec::new();
        if opts.history {
            order.extend(manifest.history());
        }
        order.extend(manifest.load_order());
        let n = order.len();
        let files = order
            .into_iter()
            .enumerate()
            .map(|(i, e)| FileInfo {
                path: dir.join(std::ffi::OsStr::new(&e.name_lossy())),
                name: e.name_lossy(),
                kind: Some(e.kind),
                last: i + 1 == n,
            })
            .collect();
        Ok(Self {
            files,
            next: 0,
            cur: None,
            opts,
            done: false,
            manifest: Some(manifest),
        })
    }

    /// Reads one AOF file (Redis 6 and older, or one file of a multi-part AOF).
    pub fn single(path: &Path, opts: Options) -> Self {
        Self {
            files: vec![FileInfo {
                path: path.to_path_buf(),
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                kind: None,
                last: true,
            }],
            next: 0,
            cur: None,
            opts,
            done: false,
            manifest: None,
        }
    }

    /// The files, in reading order.
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// The manifest, when reading a multi-part AOF.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    fn fail(&mut self, kind: ErrorKind, offset: u64) -> Error {
        self.done = true;
        let Some(cur) = self.cur.take() else {
            return Error::new(kind);
        };
        let info = &self.files[cur.idx];
        let mut e = Error::new(kind).with_path(&info.path);
        let i = e.inner_mut();
        i.file = Some(info.name.clone());
        i.offset = offset;
        // a bad RDB part cannot be cut to something valid
        if !matches!(i.kind, ErrorKind::Rdb(_)) {
            i.ok_up_to = Some(cur.multi.unwrap_or(cur.ok_up_to).min(offset));
        }
        i.last_file = info.last;
        i.size = cur.size;
        e
    }

    fn read_more(&mut self) -> Result<(), Error> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(());
        };
        let want = READ.max(cur.buf.len());
        let old = cur.buf.len();
        cur.buf.resize(old + want, 0);
        let n = loop {
            match cur.file.read(&mut cur.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let path = self.files[cur.idx].path.clone();
                    self.done = true;
                    return Err(io_err(&path, e));
                }
            }
        };
        cur.buf.truncate(old + n);
        cur.eof = n == 0;
        Ok(())
    }

    /// The next event; `Ok(None)` after the last file. After an error, `Ok(None)`.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(cur) = self.cur.as_mut() else {
                if self.next == self.files.len() {
                    self.done = true;
                    return Ok(None);
                }
                let idx = self.next;
                self.next += 1;
                let path = self.files[idx].path.clone();
                let file = File::open(&path).map_err(|e| {
                    self.done = true;
                    io_err(&path, e)
                })?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.cur = Some(Current {
                    idx,
                    file,
                    buf: BytesMut::new(),
                    eof: false,
                    size,
                    mode: Mode::Start,
                    resp: resp_codec::Decoder::new(),
                    db: 0,
                    ts: None,
                    multi: None,
                    ok_up_to: 0,
                });
                continue;
            };
            match &mut cur.mode {
                Mode::Start => {
                    if cur.buf.len() < 6 && !cur.eof {
                        self.read_more()?;
                        continue;
                    }
                    let rdb = cur.buf.starts_with(b"REDIS") || cur.buf.starts_with(b"VALKEY");
                    cur.mode = if rdb {
                        Mode::Rdb(Box::new(rdb_format::Decoder::with_config(self.opts.rdb)))
                    } else {
                        Mode::Resp
                    };
                    return Ok(Some(Event::FileStart { file: cur.idx, rdb }));
                }
                Mode::Rdb(dec) => match if cur.eof {
                    dec.decode_eof(&mut cur.buf)
                } else {
                    dec.decode(&mut cur.buf)
                } {
                    Ok(Some(item)) => {
                        return Ok(Some(Event::Rdb {
                            file: cur.idx,
                            item,
                        }));
                    }
                    Ok(None) if dec.is_done() => {
                        let end = dec.offset();
                        cur.resp.skipped(end);
                        cur.ok_up_to = end;
                        cur.mode = Mode::Resp;
                    }
                    Ok(None) => self.read_more()?,
                    Err(e) => {
                        let at = e.offset();
                        return Err(self.fail(ErrorKind::Rdb(e), at));
                    }
                },
                Mode::Resp => {
                    if let Some(ev) = self.resp_step()? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    /// One step of the RESP part: an event, or `None` to go round again.
    fn resp_step(&mut self) -> Result<Option<Event>, Error> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(None);
        };
        let at = cur.resp.offset();
        if cur.buf.is_empty() && !cur.resp.is_partial() {
            if !cur.eof {
                self.read_more()?;
                return Ok(None);
            }
            if let Some(m) = cur.multi {
                return Err(self.fail(ErrorKind::OpenMulti, m));
            }
            let (file, size) = (cur.idx, cur.size);
            self.cur = None;
            return Ok(Some(Event::FileEnd { file, size }));
        }
        if cur.buf[0] == b'#' && !cur.resp.is_partial() {
            let window = &cur.buf[..cur.buf.len().min(MAX_ANNOTATION + 1)];
            let Some(nl) = memchr::memchr(b'\n', window) else {
                if window.len() > MAX_ANNOTATION {
                    return Err(self.fail(ErrorKind::BadAnnotation, at));
                }
                if cur.eof {
                    return Err(self.fail(
                        ErrorKind::Truncated {
                            what: "an annotation line".into(),
                        },
                        at,
                    ));
                }
                self.read_more()?;
                return Ok(None);
            };
            let line = cur.buf.split_to(nl + 1).freeze();
            cur.resp.skipped(nl as u64 + 1);
            let text = line.slice(..line.len() - 1);
            let text = if text.ends_with(b"\r") {
                text.slice(..text.len() - 1)
            } else {
                text
            };
            let ts = text
                .strip_prefix(b"#TS:")
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| t.parse::<i64>().ok());
            if ts.is_some() {
                cur.ts = ts;
            }
            if cur.multi.is_none() {
                cur.ok_up_to = cur.resp.offset();
            }
            return Ok(Some(Event::Annotation {
                file: cur.idx,
                offset: at,
                text,
                ts,
            }));
        }
        match cur.resp.decode_command(&mut cur.buf) {
            Ok(Some(cmd)) => {
                let end = cur.resp.offset();
                if cmd.is_empty() {
                    return Err(self.fail(ErrorKind::BadCommand("an empty command"), at));
                }
                if cmd.is("SELECT") {
                    let db = cmd
                        .arg(1)
                        .and_then(|d| std::str::from_utf8(d).ok())
                        .and_then(|d| d.parse::<u64>().ok());
                    match db {
                        Some(db) => cur.db = db,
                        None => {
                            return Err(
                                self.fail(ErrorKind::BadCommand("SELECT without a db index"), at)
                            );
                        }
                    }
                } else if cmd.is("MULTI") {
                    if cur.multi.is_some() {
                        return Err(self.fail(ErrorKind::BadCommand("MULTI inside MULTI"), at));
                    }
                    cur.multi = Some(at);
                } else if cmd.is("EXEC") && cur.multi.take().is_none() {
                    return Err(self.fail(ErrorKind::BadCommand("EXEC without MULTI"), at));
                }
                if cur.multi.is_none() {
                    cur.ok_up_to = end;
                }
                Ok(Some(Event::Command(AofCommand {
                    db: cur.db,
                    cmd,
                    file: cur.idx,
                    offset: at,
                    ts: cur.ts,
                })))
            }
            Ok(None) if cur.eof => {
                let have = cur.buf.len();
                Err(self.fail(
                    ErrorKind::Truncated {
                        what: format!("a command ({have} bytes of it present)"),
                    },
                    at,
                ))
            }
            Ok(None) => {
                self.read_more()?;
                Ok(None)
            }
            Err(e) => {
                let off = e.offset();
                Err(self.fail(ErrorKind::Resp(e.kind().clone()), off))
            }
        }
    }
}

impl Iterator for AofReader {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}
