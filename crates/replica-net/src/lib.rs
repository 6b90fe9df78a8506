//! Be a replica of a live Redis or Valkey master.
//!
//! * [`proto`]: the protocol as a state machine without sockets (handshake, PSYNC, the RDB
//!   transfer decoded as it arrives, the command stream with exact offsets, ACKs).
//! * [`Client`]: a thin tokio driver over it: TCP or TLS, timeouts, reconnects with capped
//!   backoff and PSYNC, events through a bounded channel.
//!
//! | feature | default | what |
//! |---|---|---|
//! | `tls-rustls` | yes | `rediss://` and [`TlsConfig`] through tokio-rustls (ring) |
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod client;
pub mod cluster;
mod error;
pub mod proto;
pub mod sentinel;
#[cfg(feature = "tls-rustls")]
mod tls;
mod url;

pub use client::{
    Client, ClientConfig, Connection, Endpoint, Io, Status, StatusHandle, Stopper, connect_io,
};
pub use error::{Error, ErrorKind, Result};
pub use proto::{
    ANNOUNCED_VERSION, Auth, Channels, CommandEvent, Event, History, Replica, ReplicaConfig,
    SyncStart,
};
#[cfg(feature = "tls-rustls")]
pub use tls::TlsConfig;
pub use url::Url;
