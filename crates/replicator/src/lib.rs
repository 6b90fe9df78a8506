//! The replicator facade: one dependency for the whole toolkit.
//!
//! Today it re-exports the RDB decoder ([`rdb`]) and lifts its most used types to the root.
//! AOF reading and live replication join it as their crates land.
//!
//! ```
//! use replicator::{BytesReader, Item};
//! let file = bytes::Bytes::from_static(b"REDIS0009\xff\0\0\0\0\0\0\0\0");
//! let items: Vec<Item> = BytesReader::new(file).collect::<Result<_, _>>().unwrap();
//! assert_eq!(items.len(), 2);
//! ```
#![warn(missing_docs)]

pub use rdb_format as rdb;
pub use rdb_format::{
    BytesReader, Chunk, Config, Decoder, Elem, Error, Item, KeyHead, KeyRecord, Reader, Value,
    ValueType,
};
