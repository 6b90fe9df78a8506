//! Write into Redis, Valkey and Redis Cluster, in order, knowing what was acknowledged.
//!
//! [`Pipeline`] is the sans-IO core: units of work (one command, or a `MULTI`…`EXEC` block)
//! go into one ordered lane per slot; the lanes of a node share one pipelined connection with
//! an in-flight window (commands and bytes) that holds the source back when full. Redirects
//! (`MOVED`, `ASK`), retry replies (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`,
//! `READONLY`) and lost connections send again only the units not acknowledged, in their lane's
//! order. [`Target`] drives it on tokio: it connects (TCP or TLS, AUTH), reads the cluster's
//! topology, and takes units from a bounded channel.
//!
//! # What can apply twice
//! A unit is applied at most once as long as its connection lives: a refusal (`MOVED`, `ASK`,
//! retry replies) means the command did not run. When a connection drops, the units whose
//! replies had not come back are sent again on the next connection; any of them that ran before
//! the drop runs twice. `RESTORE … REPLACE`, `SET`, `DEL`, `HSET` and the like are idempotent;
//! `INCR`, `RPUSH`, `APPEND` are not. Callers who need exactly once wrap each batch in a
//! transaction that also records its position, and read the position back after a reconnect.
//!
//! # Order
//! Per slot, units are applied in the order pushed, across redirects and reconnects. A unit
//! marked as a [barrier](Unit::barrier) (multi-key commands, transactions) goes alone: nothing
//! later of its slot passes it even when it is refused. Across slots there is no order, except
//! for [`Route::AllMasters`] units (`FLUSHALL`, `FUNCTION LOAD`), which wait for everything
//! before them and hold back everything after them.

pub mod command;
mod core;
mod driver;
mod error;
mod slot;

pub use crate::core::{
    Action, Config, Counters, Master, NodeId, OnError, Pipeline, Refusals, Route, Unit,
};
pub use crate::driver::{Target, TargetConfig, TargetInfo};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::slot::{SLOTS, crc16, key_slot};
