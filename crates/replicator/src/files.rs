//! The same [`Event`]s from files: an RDB file (read ahead, mapped or from standard input), an
//! AOF file, an `appendonlydir` or a manifest.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rdb_format::{Config, Item, MappedReader, ReadAhead, Reader, Visitor};

use crate::error::{Error, Result};
#[cfg(feature = "aof")]
use crate::event::CommandEvent;
use crate::event::Event;

/// How to read a file: decoder settings and the driver.
///
/// ```
/// let mut opts = replicator::files::Options::new();
/// opts.mmap(true).rdb_mut().verify_checksum(false);
/// assert!(opts.is_mmap());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    rdb: Config,
    mmap: bool,
    leak_map: bool,
}

impl Options {
    /// The defaults: read ahead on a second thread, verify checksums.
    pub fn new() -> Self {
        Self::default()
    }

    /// With these decoder settings.
    pub fn rdb(&mut self, config: Config) -> &mut Self {
        self.rdb = config;
        self
    }

    /// The decoder settings, to change one.
    pub fn rdb_mut(&mut self) -> &mut Config {
        &mut self.rdb
    }

    /// Map an RDB file into memory instead of reading it: no copy and no reading thread. The
    /// pages read are let go behind the decoder, a few MiB at a time, so that the resident
    /// memory stays small whatever the file's size (a page the program touches again behind
    /// the decoder, through an item it kept, is mapped again and stays). Standard input and
    /// pipes, which cannot be mapped, are read as without it, and so is a file that the file
    /// system cannot map. The file must not change while it is read: a file cut short under
    /// a mapping raises `SIGBUS`.
    pub fn mmap(&mut self, on: bool) -> &mut Self {
        self.mmap = on;
        self
    }

    /// True when RDB files are mapped.
    pub fn is_mmap(&self) -> bool {
        self.mmap
    }

    /// With [`mmap`](Self::mmap): keep each mapping until the process ends, for items that
    /// carry no reference count (`rdb_format::MappedFile::leak`). For a program that reads a
    /// few files and ends.
    pub fn leak_map(&mut self, on: bool) -> &mut Self {
        self.leak_map = on;
        self
    }
}

enum Inner {
    Mapped(Box<MappedReader>),
    Stream(Box<Reader<Box<dyn Read + Send>>>),
    ReadAhead(Box<ReadAhead>),
    #[cfg(feature = "aof")]
    Aof(Box<aof_manifest::AofReader>),
}

/// What [`FileEvents::next_event_with`] hands string keys to.
type Visit<'v, 'f> = Option<&'v mut (dyn Visitor + 'f)>;

/// Events from a file; see [`open`] and [`open_with`].
pub struct FileEvents {
    inner: Inner,
    len: u64,
}

impl std::fmt::Debug for FileEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Mapped(_) => "FileEvents(mapped rdb)",
            Inner::Stream(_) => "FileEvents(rdb stream)",
            Inner::ReadAhead(_) => "FileEvents(rdb)",
            #[cfg(feature = "aof")]
            Inner::Aof(_) => "FileEvents(aof)",
        })
    }
}

/// True when `path` is a regular file (not `-`, a pipe or a device): one that can be decoded
/// on several threads, which read it at different offsets.
pub fn is_regular(path: &Path) -> bool {
    path.as_os_str() != "-" && std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// True when `path` is an AOF (a file of commands, an `appendonlydir` or a manifest) rather
/// than an RDB file (or `-`, standard input, which is read as an RDB).
pub fn is_aof(path: &Path) -> Result<bool> {
    #[cfg(feature = "aof")]
    {
        if path.as_os_str() == "-" {
            return Ok(false);
        }
        // a pipe (`<(...)`, a FIFO) is read once, as an RDB: looking at its first bytes would
        // take them, and a FIFO opened again waits for a writer that is gone
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            return Ok(false);
        }
        let d = aof_manifest::detect(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        Ok(d != aof_manifest::Detected::Rdb)
    }
    #[cfg(not(feature = "aof"))]
    {
        let _ = path;
        Ok(false)
    }
}

/// Opens an RDB file, an AOF file, an `appendonlydir` or a manifest (detected) as events, with
/// [`Options::new`] and these decoder settings: [`Event::Rdb`] for RDB items (an RDB file, an
/// AOF's RDB base or preamble) and [`Event::Command`] for AOF commands (with their db and `#TS`,
/// no replication offset).
///
/// ```
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/aof/redis-7.0-preamble");
/// let commands = replicator::files::open(path.as_ref(), Default::default())
///     .unwrap()
///     .filter(|e| matches!(e, Ok(replicator::Event::Command(_))))
///     .count();
/// assert!(commands > 0);
/// ```
pub fn open(path: &Path, config: Config) -> Result<FileEvents> {
    open_with(path, Options::new().rdb(config))
}

/// Like [`open`], with every option; `-` reads an RDB from standard input.
pub fn open_with(path: &Path, opts: &Options) -> Result<FileEvents> {
    let config = opts.rdb;
    if path.as_os_str() == "-" {
        let stdin: Box<dyn Read + Send> = Box::new(std::io::stdin());
        return Ok(FileEvents {
            inner: Inner::Stream(Box::new(Reader::with_config(stdin, config))),
            len: 0,
        });
    }
    let cannot = |e| Error::io(format!("cannot open {}", path.display()), e);
    if is_aof(path)? {
        #[cfg(feature = "aof")]
        {
            let mut aof_opts = aof_manifest::Options::default();
            aof_opts.rdb(config);
            return Ok(FileEvents {
                inner: Inner::Aof(Box::new(aof_manifest::AofReader::open(path, aof_opts)?)),
                len: 0,
            });
        }
    }
    let file = File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    // what cannot be mapped (a pipe, a device, a file system without mappings) is read
    let map = opts
        .mmap
        .then(|| rdb_format::MappedFile::from_file(&file).ok())
        .flatten()
        .map(|m| if opts.leak_map { m.leak() } else { m });
    if let Some(map) = map {
        return Ok(FileEvents {
            inner: Inner::Mapped(Box::new(MappedReader::new(map, config))),
            len,
        });
    }
    // streaming reads keep the resident set small whatever the file size; a second thread
    // does the reading
    Ok(FileEvents {
        inner: Inner::ReadAhead(Box::new(ReadAhead::spawn(file, config))),
        len,
    })
}

impl FileEvents {
    /// The size of an RDB file (0 for AOF and standard input): what [`offset`](Self::offset)
    /// runs up to.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing is known of the size (AOF, standard input).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the file is an AOF.
    pub fn is_aof(&self) -> bool {
        #[cfg(feature = "aof")]
        if matches!(self.inner, Inner::Aof(_)) {
            return true;
        }
        false
    }

    fn decoder(&self) -> Option<&rdb_format::Decoder> {
        match &self.inner {
            Inner::Mapped(r) => Some(r.decoder()),
            Inner::Stream(r) => Some(r.decoder()),
            Inner::ReadAhead(r) => Some(r.decoder()),
            #[cfg(feature = "aof")]
            Inner::Aof(_) => None,
        }
    }

    /// Bytes of an RDB file decoded so far (0 for AOF).
    pub fn offset(&self) -> u64 {
        self.decoder().map_or(0, rdb_format::Decoder::offset)
    }

    /// How many keys of an RDB file had more members than the duplicate check remembers
    /// (`Config::dup_check_limit`).
    pub fn partial_checks(&self) -> u64 {
        self.decoder()
            .map_or(0, rdb_format::Decoder::partial_checks)
    }

    /// The next event, `Ok(None)` at the end.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        self.next_inner(None)
    }

    /// As [`next_event`](Self::next_event), but the string keys of an RDB go to `visit` as
    /// borrowed records where the decoder can, and so do checked keys' heads to a visitor
    /// that takes them ([`rdb_format::Decoder::decode_with`]): the fast way to look at every
    /// key once. The visited keys and the events are in file order together. An AOF's keys
    /// all come out as events.
    pub fn next_event_with(&mut self, visit: &mut dyn Visitor) -> Result<Option<Event>> {
        self.next_inner(Some(visit))
    }

    fn next_inner(&mut self, visit: Visit<'_, '_>) -> Result<Option<Event>> {
        let item: Option<Item> = match (&mut self.inner, visit) {
            (Inner::Mapped(r), Some(v)) => r.next_item_with(v)?,
            (Inner::Mapped(r), None) => r.next_item()?,
            (Inner::Stream(r), Some(v)) => r.next_item_with(v)?,
            (Inner::Stream(r), None) => r.next_item()?,
            (Inner::ReadAhead(r), Some(v)) => r.next_item_with(v)?,
            (Inner::ReadAhead(r), None) => r.next_item()?,
            #[cfg(feature = "aof")]
            (Inner::Aof(r), _) => loop {
                match r.next_event()? {
                    None => return Ok(None),
                    Some(aof_manifest::Event::Rdb { item, .. }) => break Some(item),
                    Some(aof_manifest::Event::Command(c)) => {
                        return Ok(Some(Event::Command(
                            CommandEvent::new(c.db, c.cmd).with_ts(c.ts),
                        )));
                    }
                    Some(_) => {}
                }
            },
        };
        Ok(item.map(Event::Rdb))
    }
}

impl Iterator for FileEvents {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}
