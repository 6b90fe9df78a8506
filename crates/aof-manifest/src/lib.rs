//! Reading AOF as Redis writes it.
//!
//! * Redis 7 multi-part AOF: a [`Manifest`] (`appendonly.aof.manifest`) lists a base file
//!   (RDB or AOF format) and incr files; [`AofReader`] reads them in order as one sequence.
//! * Single-file AOF (Redis 6 and older), with or without an RDB preamble.
//! * `#TS:<unix>` annotations come out as events and are attached to the commands after them.
//! * A truncated last file (what a crash leaves) is reported like `redis-check-aof`: the end
//!   of the last whole command ([`Error::ok_up_to`]) and what was cut.
//!
//! ```
//! use aof_manifest::{AofReader, Event};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("appendonly.aof");
//! std::fs::write(&path, b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n#TS:1700000000\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n").unwrap();
//! let cmds: Vec<_> = AofReader::open(&path, Default::default())
//!     .unwrap()
//!     .filter_map(|ev| match ev.unwrap() {
//!         Event::Command(c) => Some(c),
//!         _ => None,
//!     })
//!     .collect();
//! assert_eq!((cmds[1].db, cmds[1].ts, cmds[1].offset), (2, Some(1700000000), 39));
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod error;
mod fix;
mod manifest;
mod reader;

pub use error::{Error, ErrorKind};
pub use fix::{line_of, truncate_with_backup};
pub use manifest::{Entry, FileKind, MAX_LINE, Manifest, ManifestError, ManifestErrorKind};
pub use reader::{
    AofCommand, AofReader, Detected, Event, FileInfo, MAX_ANNOTATION, Options, detect,
};
