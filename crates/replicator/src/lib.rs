//! The replicator facade: one dependency for the whole toolkit.
//!
//! * [`Replicator`]: a replica of a live Redis or Valkey master as a `futures::Stream` of
//!   [`Event`]s (sync start, RDB items, sync end, commands with db and offset).
//! * [`files::open`]: the same events from an RDB file or any AOF layout.
//! * The crates, whole: [`rdb`] (RDB decoder), [`resp`] (RESP codec), [`aof`] (AOF reader),
//!   [`net`] (the replication client and its sans-IO core); and [`commands`] (a command's key
//!   and value type, for filters).
//!
//! ```
//! use replicator::{BytesReader, Item};
//! let file = bytes::Bytes::from_static(b"REDIS0009\xff\0\0\0\0\0\0\0\0");
//! let items: Vec<Item> = BytesReader::new(file).collect::<Result<_, _>>().unwrap();
//! assert_eq!(items.len(), 2);
//! ```
#![warn(missing_docs)]

pub mod commands;
pub mod files;
mod replicator;

pub use crate::replicator::{Builder, Events, Replicator};
pub use aof_manifest as aof;
pub use aof_manifest::{AofCommand, AofReader, Event as AofEvent};
pub use rdb_format as rdb;
pub use rdb_format::{
    BytesReader, Chunk, Config, Decoder, Elem, Error, Item, KeyHead, KeyRecord, Reader, Value,
    ValueType,
};
pub use replica_net as net;
pub use replica_net::{
    Client, ClientConfig, CommandEvent, Error as NetError, Event, Status, SyncStart, TlsConfig,
};
pub use resp_codec as resp;
pub use resp_codec::{Command, Frame};
