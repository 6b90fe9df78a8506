//! The replicator facade: one dependency for the whole toolkit.
//!
//! It re-exports the RDB decoder ([`rdb`]), the RESP codec ([`resp`]) and the AOF reader
//! ([`aof`]), lifts their most used types to the root, and adds what they share:
//! [`commands`] (a command's key and value type, for filters). Live replication joins it as
//! its crate lands.
//!
//! ```
//! use replicator::{BytesReader, Item};
//! let file = bytes::Bytes::from_static(b"REDIS0009\xff\0\0\0\0\0\0\0\0");
//! let items: Vec<Item> = BytesReader::new(file).collect::<Result<_, _>>().unwrap();
//! assert_eq!(items.len(), 2);
//! ```
#![warn(missing_docs)]

pub mod commands;

pub use aof_manifest as aof;
pub use aof_manifest::{AofCommand, AofReader, Event as AofEvent};
pub use rdb_format as rdb;
pub use rdb_format::{
    BytesReader, Chunk, Config, Decoder, Elem, Error, Item, KeyHead, KeyRecord, Reader, Value,
    ValueType,
};
pub use resp_codec as resp;
pub use resp_codec::{Command, Frame};
