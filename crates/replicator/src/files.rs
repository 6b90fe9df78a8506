//! The same [`Event`]s from files: an RDB file, an AOF file, an `appendonlydir` or a
//! manifest.

use std::fs::File;
use std::path::Path;

use aof_manifest::{AofReader, Detected};
use rdb_format::Reader;
use replica_net::{CommandEvent, Event};

/// Why reading a file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be opened.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A bad RDB.
    #[error(transparent)]
    Rdb(#[from] rdb_format::Error),
    /// A bad AOF.
    #[error(transparent)]
    Aof(#[from] aof_manifest::Error),
}

enum Inner {
    Rdb(Box<Reader<File>>),
    Aof(Box<AofReader>),
}

/// Events from a file; see [`open`].
pub struct FileEvents(Inner);

impl std::fmt::Debug for FileEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Rdb(_) => "FileEvents(rdb)",
            Inner::Aof(_) => "FileEvents(aof)",
        })
    }
}

/// Opens an RDB file, an AOF file, an `appendonlydir` or a manifest (detected) as events:
/// [`Event::Rdb`] for RDB items (an RDB file, an AOF's RDB base or preamble) and
/// [`Event::Command`] for AOF commands (with their db and `#TS`, no replication offset).
///
/// ```
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/aof/redis-7.0-preamble");
/// let commands = replicator::files::open(path.as_ref(), Default::default())
///     .unwrap()
///     .filter(|e| matches!(e, Ok(replicator::Event::Command(_))))
///     .count();
/// assert!(commands > 0);
/// ```
pub fn open(path: &Path, config: rdb_format::Config) -> Result<FileEvents, FileError> {
    let io = |source| FileError::Io {
        path: path.display().to_string(),
        source,
    };
    match aof_manifest::detect(path).map_err(io)? {
        Detected::Rdb => {
            let f = File::open(path).map_err(io)?;
            Ok(FileEvents(Inner::Rdb(Box::new(Reader::with_config(
                f, config,
            )))))
        }
        _ => {
            let opts = aof_manifest::Options {
                rdb: config,
                ..Default::default()
            };
            Ok(FileEvents(Inner::Aof(Box::new(AofReader::open(
                path, opts,
            )?))))
        }
    }
}

impl Iterator for FileEvents {
    type Item = Result<Event, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Inner::Rdb(r) => r
                .next_item()
                .map_err(FileError::from)
                .transpose()
                .map(|r| r.map(Event::Rdb)),
            Inner::Aof(r) => loop {
                match r.next_event() {
                    Err(e) => return Some(Err(e.into())),
                    Ok(None) => return None,
                    Ok(Some(aof_manifest::Event::Rdb { item, .. })) => {
                        return Some(Ok(Event::Rdb(item)));
                    }
                    Ok(Some(aof_manifest::Event::Command(c))) => {
                        return Some(Ok(Event::Command(CommandEvent::new(
                            c.db, c.cmd, None, c.ts,
                        ))));
                    }
                    Ok(Some(_)) => {}
                }
            },
        }
    }
}
