//! Be a replica of a live Redis or Valkey master.
//!
//! * [`proto`]: the protocol as a state machine without sockets (handshake, PSYNC, the RDB
//!   transfer decoded as it arrives, the command stream with exact offsets, ACKs).
//! * [`Client`]: a thin tokio driver over it: TCP or TLS, timeouts, reconnects with capped
//!   backoff and PSYNC, events through a bounded channel.

mod error;
pub mod proto;

pub use error::{Error, Result};
pub use proto::{Auth, CommandEvent, Event, Replica, ReplicaConfig, SyncStart};
