//! The replicator facade: one dependency for the whole toolkit.
//!
//! * [`files::open`]: an RDB file or any AOF layout as [`Event`]s.
//! * [`Replicator`]: a replica of a live Redis or Valkey master as a `futures::Stream` of the
//!   same [`Event`]s (sync start, RDB items, sync end, commands with db and offset).
//! * [`print`](mod@print): the printers of `replicator dump` (JSON Lines, JSON, RESP,
//!   RESTORE, keys, count, RDB) behind one [`Sink`](print::Sink) trait, and the
//!   [`Printer`](print::Printer) that drives them from events through a
//!   [`Filter`](filter::Filter).
//! * The crates, whole: [`rdb`] (RDB decoder and encoder), [`resp`] (RESP codec), [`aof`] (AOF
//!   reader), [`net`] (the replication client and its sans-IO core); and [`commands`] (a
//!   command's key and value type, for filters).
//! * [`memory`]: per-key memory estimates (`MEMORY USAGE` as the writing server would say it)
//!   and the report of `replicator memory`.
//! * One [`Error`] for all of them.
//!
//! | feature | default | what |
//! |---|---|---|
//! | `rdb` | yes | RDB files, printers, filters (no async runtime, no sockets) |
//! | `aof` | yes | AOF files, directories and manifests |
//! | `net` | yes | [`Replicator`]: tokio, TCP |
//! | `sink` | yes | [`sync`]: writing into Redis, Valkey and Redis Cluster |
//! | `tls-rustls` | yes | `rediss://` through rustls |
//! | `full` | yes | all of the above |
//!
//! ```
//! use replicator::{BytesReader, Item};
//! let file = bytes::Bytes::from_static(b"REDIS0009\xff\0\0\0\0\0\0\0\0");
//! let items: Vec<Item> = BytesReader::new(file).collect::<Result<_, _>>().unwrap();
//! assert_eq!(items.len(), 2);
//! ```
#![warn(missing_docs)]

pub mod commands;
mod error;
mod event;
#[cfg(feature = "rdb")]
pub mod files;
#[cfg(feature = "rdb")]
pub mod filter;
#[cfg(feature = "rdb")]
pub mod memory;
#[cfg(feature = "net")]
pub mod observe;
#[cfg(feature = "rdb")]
pub mod print;
#[cfg(feature = "net")]
mod replicator;
#[cfg(feature = "rdb")]
pub mod stats;
#[cfg(feature = "sink")]
pub mod sync;

pub use crate::error::{Error, ErrorKind, Result};
pub use crate::event::{CommandEvent, Event, History, SyncStart};
#[cfg(feature = "net")]
pub use crate::replicator::{Builder, Events, Replicator, StatusHandle, Stopper};
#[cfg(feature = "aof")]
pub use aof_manifest as aof;
#[cfg(feature = "aof")]
pub use aof_manifest::{AofCommand, AofReader};
pub use rdb_format as rdb;
pub use rdb_format::{
    BytesReader, Chunk, Config, Decoder, Elem, Item, KeyHead, KeyRecord, ReadAhead, Reader, Value,
    ValueType,
};
#[cfg(feature = "net")]
pub use replica_net as net;
#[cfg(feature = "tls-rustls")]
pub use replica_net::TlsConfig;
#[cfg(feature = "net")]
pub use replica_net::cluster::ShardStatus;
#[cfg(feature = "net")]
pub use replica_net::{Channels, ClientConfig, Connection, Status};
pub use resp_codec as resp;
pub use resp_codec::{Command, Frame};
