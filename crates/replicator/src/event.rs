//! [`Event`]: what every source gives — an RDB file, an AOF, a live master.

use rdb_format::Item;
use resp_codec::Command;

/// One thing a source produced, whatever the source: RDB items come from files, AOF bases and
/// preambles and full syncs alike; commands from AOF files and the replication stream.
///
/// ```
/// use replicator::{Event, Item};
/// let ev = Event::Rdb(Item::SelectDb(3));
/// assert!(matches!(ev, Event::Rdb(Item::SelectDb(3))));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A live master accepted the PSYNC: a full sync (an RDB follows) or a partial one.
    SyncStart(SyncStart),
    /// An item of an RDB (aux field, key, chunk of a big key, function, …).
    Rdb(Item),
    /// The RDB of a full sync is complete.
    SyncEnd {
        /// The RDB's checksum (`None` for RDB < 5, `Some(0)` when the master disabled it).
        checksum: Option<u64>,
        /// Bytes transferred.
        bytes: u64,
        /// The shard whose RDB it was (cluster sources).
        shard: Option<usize>,
    },
    /// A command (AOF, replication stream).
    Command(CommandEvent),
    /// A live master's stream moved on without data (`PING`, `REPLCONF GETACK`): the offset
    /// after it, for consumers that save positions.
    Offset {
        /// The replication offset.
        offset: u64,
        /// The shard (cluster sources).
        shard: Option<usize>,
    },
    /// The link to a master was lost; the replica reconnects and continues.
    Disconnected {
        /// Why.
        reason: String,
        /// The shard whose link it was (cluster sources).
        shard: Option<usize>,
    },
}

/// Where a sync with a live master starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStart {
    /// True for a full sync (an RDB follows), false for a partial one (commands follow).
    pub full: bool,
    /// The master's replication id.
    pub replid: String,
    /// The replication offset the data starts at.
    pub offset: u64,
    /// True when a partial sync was asked for and the master answered with a full one: what
    /// was delivered so far is replaced by the RDB that follows.
    pub resync: bool,
    /// The shard (cluster sources): its index in the order discovered.
    pub shard: Option<usize>,
    /// The id of the cluster node the shard is replicated from.
    pub node: Option<String>,
    /// What the node said of its history before the PSYNC, when asked (a node other than
    /// the last one, as after a failover, or a resumed position).
    pub history: Option<History>,
}

/// Whether a node could continue our stream, judged from its `INFO replication` before the
/// PSYNC ([`replica_net::History`] when the `net` feature is on).
///
/// ```
/// let h = replicator::History::Inherited { second_repl_offset: 1001 };
/// assert!(h.to_string().contains("1001"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum History {
    /// The node's replication id is ours and its backlog holds the next offset.
    Same,
    /// The node was promoted: its previous id (`master_replid2`) is ours, valid up to
    /// `second_repl_offset`, which reaches our next offset.
    Inherited {
        /// Where the node's previous history ends.
        second_repl_offset: u64,
    },
    /// The node cannot continue our stream: it will answer with a full sync.
    Lost {
        /// Why, with the node's figures.
        why: String,
    },
}

impl std::fmt::Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Same => f.write_str("the node has our replication id"),
            Self::Inherited { second_repl_offset } => write!(
                f,
                "the node was promoted and inherited our history (master_replid2, up to \
                 second_repl_offset {second_repl_offset})"
            ),
            Self::Lost { why } => write!(f, "the node cannot continue our stream: {why}"),
        }
    }
}

#[cfg(feature = "net")]
impl From<replica_net::History> for History {
    fn from(h: replica_net::History) -> Self {
        match h {
            replica_net::History::Same => Self::Same,
            replica_net::History::Inherited { second_repl_offset } => {
                Self::Inherited { second_repl_offset }
            }
            replica_net::History::Lost { why } => Self::Lost { why },
            // a judgement this facade does not know: say it as the net crate does
            other => Self::Lost {
                why: format!("{other:?}"),
            },
        }
    }
}

/// A command with where it applies and where it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CommandEvent {
    /// The database it applies to (after a `SELECT`: the one selected).
    pub db: u64,
    /// The command.
    pub cmd: Command,
    /// The replication offset after it (live masters; `None` for files and for masters too
    /// old for PSYNC).
    pub offset: Option<u64>,
    /// The `#TS` annotation before it (AOF files written with `aof-timestamp-enabled`).
    pub ts: Option<i64>,
    /// The shard it came from (cluster sources).
    pub shard: Option<usize>,
}

impl CommandEvent {
    /// A command in `db`, with no offset and no timestamp.
    ///
    /// ```
    /// let c = replicator::CommandEvent::new(0, replicator::Command::from_args(&["PING"]));
    /// assert!(c.cmd.is("PING") && c.offset.is_none());
    /// ```
    pub fn new(db: u64, cmd: Command) -> Self {
        Self {
            db,
            cmd,
            offset: None,
            ts: None,
            shard: None,
        }
    }

    /// With the replication offset after the command.
    #[must_use]
    pub fn with_offset(mut self, offset: Option<u64>) -> Self {
        self.offset = offset;
        self
    }

    /// With the `#TS` annotation before the command.
    #[must_use]
    pub fn with_ts(mut self, ts: Option<i64>) -> Self {
        self.ts = ts;
        self
    }
}

impl Event {
    /// The facade's form of a replication client's event (`None` for a kind of event this
    /// version of the facade does not know).
    #[cfg(feature = "net")]
    pub(crate) fn from_net(ev: replica_net::Event) -> Option<Self> {
        Some(match ev {
            replica_net::Event::SyncStart(s) => Self::SyncStart(SyncStart {
                full: s.full,
                replid: s.replid,
                offset: s.offset,
                resync: s.resync,
                shard: None,
                node: None,
                history: s.history.map(History::from),
            }),
            replica_net::Event::Rdb(item) => Self::Rdb(item),
            replica_net::Event::SyncEnd { checksum, bytes } => Self::SyncEnd {
                checksum,
                bytes,
                shard: None,
            },
            replica_net::Event::Command(c) => {
                Self::Command(CommandEvent::new(c.db, c.cmd).with_offset(c.offset))
            }
            replica_net::Event::Disconnected { reason } => Self::Disconnected {
                reason,
                shard: None,
            },
            replica_net::Event::Offset(offset) => Self::Offset {
                offset,
                shard: None,
            },
            _ => return None,
        })
    }

    /// The facade's form of a cluster shard's event, naming the shard.
    #[cfg(feature = "net")]
    pub(crate) fn from_shard(ev: replica_net::cluster::ShardEvent) -> Option<Self> {
        let shard = Some(ev.shard);
        Some(match Self::from_net(ev.event)? {
            Self::SyncStart(mut s) => {
                s.shard = shard;
                s.node = Some(ev.node);
                Self::SyncStart(s)
            }
            Self::Command(mut c) => {
                c.shard = shard;
                Self::Command(c)
            }
            Self::Disconnected { reason, .. } => Self::Disconnected { reason, shard },
            Self::Offset { offset, .. } => Self::Offset { offset, shard },
            Self::SyncEnd {
                checksum, bytes, ..
            } => Self::SyncEnd {
                checksum,
                bytes,
                shard,
            },
            other => other,
        })
    }
}
