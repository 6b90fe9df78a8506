//! The sans-IO core: ordered lanes per slot, pipelines per node, redirects and retries.
//!
//! Every write is a [`Unit`]: one command, or a `MULTI`…`EXEC` block, routed to a slot. Units
//! of one slot form a lane and are sent in order; the lanes of a node share its connection, one
//! pipeline, bounded by an in-flight window (commands and bytes). A unit refused with `MOVED`,
//! `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN` or `READONLY` stops its lane: once
//! every reply of the lane's units in flight is in, the refused units are sent again, in order
//! (to the node `MOVED` names, with `ASKING` before each for `ASK`, after a pause for the
//! others), and only they: units that succeeded are not sent twice. A connection that drops takes
//! its unacknowledged units back to their lanes, to be sent again on the next connection (those
//! whose reply was lost may apply twice: see the crate notes).
//!
//! The core is driven by calls: [`Pipeline::push`] (a unit), [`Pipeline::poll_transmit`]
//! (bytes for a node), [`Pipeline::handle_reply`], [`Pipeline::handle_connected`] /
//! [`Pipeline::handle_disconnected`], [`Pipeline::handle_topology`], and
//! [`Pipeline::poll_action`] for what the driver must do (connect, read the topology).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use resp_codec::Frame;

use crate::error::{Error, Kind, Result};
use crate::slot::SLOTS;

/// Where a unit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// The master serving this slot (a standalone target serves every slot).
    Slot(u16),
    /// Every master, once everything pushed before it is acknowledged and before anything
    /// pushed after it is sent (`FLUSHALL`, `FUNCTION LOAD`, `SCRIPT FLUSH`, `SWAPDB`).
    AllMasters,
}

/// What a refusal of the target means for the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnError {
    /// Stop with the error (the default).
    Fail,
    /// Count it (with the first keys) and go on.
    Skip,
}

/// One write: one command or a `MULTI`…`EXEC` block, whose keys all lie in one slot.
#[derive(Debug, Clone)]
pub struct Unit {
    pub(crate) bytes: Bytes,
    pub(crate) replies: u32,
    pub(crate) route: Route,
    pub(crate) db: u64,
    pub(crate) barrier: bool,
    pub(crate) shard: Option<usize>,
    pub(crate) offset: Option<u64>,
    pub(crate) key: Bytes,
    /// `BUSYKEY` is a conflict (a `RESTORE` without `REPLACE`), counted or fatal.
    pub(crate) busy_is_conflict: bool,
    /// The units written for one key share a group.
    pub(crate) group: u64,
    /// An `EXISTS` whose 1 is a conflict: the group's later units are dropped (or the
    /// pipeline stops).
    pub(crate) guard: bool,
    /// What to send instead when it goes again after a lost connection, and its replies.
    pub(crate) resend_as: Option<std::sync::Arc<(Bytes, u32)>>,
}

impl Unit {
    /// One encoded command routed to `route` in database `db`; `key` names it in errors.
    ///
    /// ```
    /// use redis_sink::{Route, Unit};
    /// let cmd = resp_codec::Command::from_args(["SET", "k", "v"]);
    /// let u = Unit::new(cmd.raw().clone(), 1, Route::Slot(redis_sink::key_slot(b"k")), 0);
    /// assert_eq!(u.len(), cmd.raw().len());
    /// ```
    pub fn new(bytes: Bytes, replies: u32, route: Route, db: u64) -> Self {
        Self {
            bytes,
            replies,
            route,
            db,
            barrier: false,
            shard: None,
            offset: None,
            key: Bytes::new(),
            busy_is_conflict: false,
            group: 0,
            guard: false,
            resend_as: None,
        }
    }

    /// A position marker: no command; `offset` of `shard` is reported once everything pushed
    /// before it is acknowledged.
    ///
    /// ```
    /// let m = redis_sink::Unit::marker(0, 1234);
    /// assert!(m.is_empty());
    /// ```
    pub fn marker(shard: usize, offset: u64) -> Self {
        Self::new(Bytes::new(), 0, Route::Slot(0), 0).position(shard, Some(offset))
    }

    /// The units written for one key share a non-zero group (see [`guard`](Self::guard)).
    #[must_use]
    pub fn group(mut self, group: u64) -> Self {
        self.group = group;
        self
    }

    /// This unit is an `EXISTS` of its group's key, sent alone: a reply of 1 means the key was
    /// in the target before; that is a conflict ([`Config::on_conflict`]): the pipeline stops,
    /// or the group's later units are dropped and the key counted.
    #[must_use]
    pub fn guard(mut self, on: bool) -> Self {
        self.guard = on;
        self.barrier |= on;
        self
    }

    /// Sent again after a lost connection (it may have run: its reply was lost), the unit
    /// goes as `bytes` instead, which give `replies` replies: a form that checks whether the
    /// first one ran (a transaction that records its own position, resent as a script that
    /// runs it only if that position is not there yet).
    #[must_use]
    pub fn resend_as(mut self, bytes: Bytes, replies: u32) -> Self {
        self.resend_as = Some(std::sync::Arc::new((bytes, replies)));
        self
    }

    /// The key it writes (for errors and counts).
    #[must_use]
    pub fn key(mut self, key: Bytes) -> Self {
        self.key = key;
        self
    }

    /// Sent only when its lane has nothing in flight, and nothing of its lane after it until
    /// it is acknowledged (multi-key commands and transactions: a refusal of it can then not
    /// let later writes pass it).
    #[must_use]
    pub fn barrier(mut self, on: bool) -> Self {
        self.barrier = on;
        self
    }

    /// The source position it belongs to: its shard (0 for a single master) and, for a command
    /// of a replication stream, the offset after it.
    #[must_use]
    pub fn position(mut self, shard: usize, offset: Option<u64>) -> Self {
        self.shard = Some(shard);
        self.offset = offset;
        self
    }

    /// A `BUSYKEY` refusal is a conflict with a key already in the target (counted as one,
    /// or fatal, per [`Config::on_conflict`]) rather than a data error.
    #[must_use]
    pub fn conflict_on_busy(mut self, on: bool) -> Self {
        self.busy_is_conflict = on;
        self
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for an empty unit (a position marker).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Settings of a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) window_commands: usize,
    pub(crate) window_bytes: usize,
    pub(crate) on_error: OnError,
    pub(crate) on_conflict: OnError,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) first_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_commands: 8192,
            window_bytes: 16 << 20,
            on_error: OnError::Fail,
            on_conflict: OnError::Fail,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            first_keys: 5,
        }
    }
}

impl Config {
    /// At most `commands` commands and `bytes` bytes unacknowledged per node (defaults 8192
    /// and 16 MiB); a unit bigger than the byte window goes alone.
    ///
    /// Many small commands in flight keep a busy target fed through scheduling gaps (1024
    /// capped a live sync at about 200,000 commands/s on two shared cores, and its lag at
    /// 1.7 s of writes; 8192: 0.2 s); few bytes in flight bound memory when big keys go in
    /// pieces (64 MiB of them raised the peak RSS of a file sync from 110 to 150 MiB).
    pub fn window(&mut self, commands: usize, bytes: usize) -> &mut Self {
        self.window_commands = commands.max(1);
        self.window_bytes = bytes.max(1);
        self
    }

    /// What a data command the target refuses does (`WRONGTYPE`, `OOM`, …): stop (default)
    /// or count it and go on.
    pub fn on_error(&mut self, e: OnError) -> &mut Self {
        self.on_error = e;
        self
    }

    /// What a conflict (`BUSYKEY` on a unit marked [`Unit::conflict_on_busy`]) does.
    pub fn on_conflict(&mut self, e: OnError) -> &mut Self {
        self.on_conflict = e;
        self
    }

    /// Pauses before retrying a slot the target asked to retry (`TRYAGAIN`, `LOADING`, …) and
    /// before reconnecting: from `min`, doubling, at most `max`.
    pub fn backoff(&mut self, min: Duration, max: Duration) -> &mut Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }
}

/// A node of the target, as the core numbers them.
pub type NodeId = usize;

/// A master of a cluster: its address and the slot ranges it serves (inclusive).
pub type Master = ((String, u16), Vec<(u16, u16)>);

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a connection to this node (AUTH and TLS as configured), then call
    /// [`Pipeline::handle_connected`], or [`Pipeline::handle_disconnected`] if it failed.
    Connect {
        /// The node.
        node: NodeId,
        /// Its address.
        host: String,
        /// Its port.
        port: u16,
    },
    /// Read the cluster's topology and pass it to [`Pipeline::handle_topology`].
    Refresh,
}

/// Refusals of one kind: how many, and the first keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusals {
    /// How many.
    pub count: u64,
    /// The first keys (up to five) and the target's words for the first.
    pub first_keys: Vec<Bytes>,
    /// The first error text.
    pub first_error: String,
}

/// What the core did so far.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Commands acknowledged by the target.
    pub acked: u64,
    /// Commands sent again after a redirect, a retry or a reconnection.
    pub resent: u64,
    /// `MOVED` replies.
    pub moved: u64,
    /// `ASK` replies.
    pub ask: u64,
    /// Replies asking to retry (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`, `READONLY`).
    pub retries: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Data commands the target refused and that were skipped, by error kind (its first word).
    pub refused: BTreeMap<String, Refusals>,
    /// Keys that already existed in the target and were left as they were.
    pub conflicts_skipped: Refusals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Sent,
    Done,
}

#[derive(Debug, Clone)]
enum Failure {
    Moved(u16, String, u16),
    Ask(String, u16),
    Retry { refresh: bool },
}

#[derive(Debug)]
struct Entry {
    unit: Unit,
    seq: u64,
    state: State,
    failed: Option<Failure>,
    ask: Option<NodeId>,
    sent_before: bool,
    /// Bytes and commands it took in the window when sent (its resend form may differ).
    sent: (usize, usize),
}

#[derive(Debug, Default)]
struct Lane {
    entries: VecDeque<Entry>,
    inflight: u32,
    /// a barrier is in flight: nothing else of the lane goes until it is acknowledged
    barrier_out: bool,
    draining: bool,
    blocked_until: Option<Instant>,
    retries: u32,
    ready: bool,
    /// the node its units in flight went to: a lane has units in flight on one connection at
    /// a time, so its replies come in its order and a lost connection loses them together
    on: Option<NodeId>,
    /// no entry before this index waits to be sent (a hot key's lane holds a window of units
    /// in flight: scanning them for every send was quadratic)
    hint: usize,
}

#[derive(Debug)]
enum Expect {
    Select,
    Asking,
    Unit {
        lane: u32,
        seq: u64,
        left: u32,
        failure: Option<Failure>,
        error: Option<String>,
        guard: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Down,
    Connecting,
    Up,
}

#[derive(Debug)]
struct Node {
    host: String,
    port: u16,
    link: Link,
    sent: VecDeque<Expect>,
    out: BytesMut,
    inflight_cmds: usize,
    inflight_bytes: usize,
    db: Option<u64>,
    retry_at: Option<Instant>,
    failures: u32,
    /// lanes that found the window full
    waiting: Vec<u32>,
}

/// Offsets of one source shard waiting to be reported, and the last reported.
#[derive(Debug, Default)]
struct Positions {
    /// (seq, offset) in push order: reported once every unit pushed up to seq is acknowledged
    marks: VecDeque<(u64, u64)>,
    acked: Option<u64>,
}

impl Positions {
    fn advance(&mut self, low: Option<u64>) {
        while let Some(&(seq, off)) = self.marks.front() {
            if low.is_some_and(|l| l <= seq) {
                break;
            }
            self.acked = Some(off);
            self.marks.pop_front();
        }
    }
}

/// The sans-IO write pipeline. See the module notes.
///
/// ```
/// use std::time::Instant;
/// use redis_sink::{Action, Pipeline, Route, Unit};
/// use resp_codec::{Command, Frame};
///
/// let mut p = Pipeline::standalone(Default::default(), "127.0.0.1", 6400);
/// let Some(Action::Connect { node, .. }) = p.poll_action(Instant::now()) else { panic!() };
/// p.handle_connected(node);
/// let set = Command::from_args(["SET", "k", "v"]);
/// p.push(Unit::new(set.raw().clone(), 1, Route::Slot(0), 0).position(0, Some(100)));
/// let (to, bytes) = p.poll_transmit().unwrap();
/// assert_eq!((to, &bytes[..]), (node, &set.raw()[..]));
/// p.handle_reply(node, Frame::SimpleString("OK".into()), Instant::now()).unwrap();
/// assert_eq!(p.acked(0), Some(100));
/// assert!(p.is_idle());
/// ```
#[derive(Debug)]
pub struct Pipeline {
    cfg: Config,
    cluster: bool,
    nodes: Vec<Node>,
    /// slot → node (all slots → node 0 for a standalone target)
    owner: Vec<Option<NodeId>>,
    /// the nodes that own slots
    masters: Vec<NodeId>,
    lanes: Lanes,
    ready: VecDeque<u32>,
    /// lanes pausing before a retry
    blocked: Vec<u32>,
    /// nodes `ASK` sent units to
    ask_nodes: Vec<NodeId>,
    /// units behind a global barrier (an all-masters unit), in push order
    held: VecDeque<(u64, Unit)>,
    /// the all-masters unit in flight: its lane ids (one per master) not yet acknowledged
    global: Option<(u64, Vec<u32>)>,
    seq: u64,
    positions: HashMap<usize, Positions>,
    /// groups whose key was found in the target (their later units are dropped on push)
    dropped_groups: std::collections::BTreeSet<u64>,
    /// unacknowledged units, whatever their shard (seq → copies left): an offset is reported
    /// once everything pushed before it is acknowledged, which covers the snapshot's keys
    /// (they carry no offset) of every shard
    outstanding: BTreeMap<u64, u32>,
    queued_bytes: usize,
    queued_units: usize,
    actions: VecDeque<Action>,
    refresh_wanted: bool,
    refresh_pending: bool,
    failed: Option<Error>,
    counters: Counters,
}

/// Lane ids are small integers: a multiplicative hash is enough (SipHash showed in profiles).
#[derive(Default, Clone, Copy)]
struct LaneHasher(u64);

impl std::hash::Hasher for LaneHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Lanes = HashMap<u32, Lane, std::hash::BuildHasherDefault<LaneHasher>>;

/// Lane ids at and above this carry all-masters units, one per node.
const NODE_LANES: u32 = SLOTS as u32;

fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Error(e) | Frame::BulkError(e) => Some(String::from_utf8_lossy(e).into_owned()),
        _ => None,
    }
}

fn addr(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    Some((h.to_owned(), p.parse().ok()?))
}

fn classify(err: &str) -> Option<Failure> {
    let mut w = err.split_ascii_whitespace();
    match w.next()? {
        "MOVED" => {
            let slot = w.next()?.parse().ok()?;
            let (h, p) = addr(w.next()?)?;
            Some(Failure::Moved(slot, h, p))
        }
        "ASK" => {
            w.next()?;
            let (h, p) = addr(w.next()?)?;
            Some(Failure::Ask(h, p))
        }
        "TRYAGAIN" | "LOADING" | "BUSY" => Some(Failure::Retry { refresh: false }),
        "CLUSTERDOWN" | "MASTERDOWN" | "READONLY" => Some(Failure::Retry { refresh: true }),
        _ => None,
    }
}

fn is_auth(err: &str) -> bool {
    err.starts_with("NOAUTH") || err.starts_with("NOPERM") || err.starts_with("WRONGPASS")
}

impl Pipeline {
    /// A pipeline into one standalone server.
    pub fn standalone(cfg: Config, host: &str, port: u16) -> Self {
        let mut p = Self::new(cfg, false);
        let n = p.node(host, port);
        p.owner = vec![Some(n); usize::from(SLOTS)];
        p.update_masters();
        p
    }

    /// A pipeline into a Redis Cluster whose masters serve these slot ranges (inclusive).
    pub fn cluster(cfg: Config, masters: &[Master]) -> Self {
        let mut p = Self::new(cfg, true);
        p.apply_topology(masters);
        p
    }

    fn new(cfg: Config, cluster: bool) -> Self {
        Self {
            cfg,
            cluster,
            nodes: Vec::new(),
            owner: vec![None; usize::from(SLOTS)],
            masters: Vec::new(),
            lanes: Lanes::default(),
            ready: VecDeque::new(),
            blocked: Vec::new(),
            ask_nodes: Vec::new(),
            held: VecDeque::new(),
            global: None,
            seq: 0,
            positions: HashMap::new(),
            outstanding: BTreeMap::new(),
            dropped_groups: std::collections::BTreeSet::new(),
            queued_bytes: 0,
            queued_units: 0,
            actions: VecDeque::new(),
            refresh_wanted: false,
            refresh_pending: false,
            failed: None,
            counters: Counters::default(),
        }
    }

    /// True for a cluster target.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    fn node(&mut self, host: &str, port: u16) -> NodeId {
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.host == host && n.port == port)
        {
            return i;
        }
        self.nodes.push(Node {
            host: host.to_owned(),
            port,
            link: Link::Down,
            sent: VecDeque::new(),
            out: BytesMut::new(),
            inflight_cmds: 0,
            inflight_bytes: 0,
            db: None,
            retry_at: None,
            failures: 0,
            waiting: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn apply_topology(&mut self, masters: &[Master]) {
        for ((h, p), ranges) in masters {
            let n = self.node(h, *p);
            for &(a, b) in ranges {
                for s in a..=b.min(SLOTS - 1) {
                    self.owner[usize::from(s)] = Some(n);
                }
            }
        }
        self.update_masters();
        // lanes whose owner is now known may go
        let lanes: Vec<u32> = self.lanes.keys().copied().collect();
        for l in lanes {
            self.make_ready(l);
        }
    }

    /// The masters and their slots, as read from the cluster (after [`Action::Refresh`]).
    pub fn handle_topology(&mut self, masters: &[Master]) {
        self.refresh_pending = false;
        self.apply_topology(masters);
    }

    /// Reading the topology failed: it is asked again later.
    pub fn handle_topology_failed(&mut self) {
        self.refresh_pending = false;
        self.refresh_wanted = true;
    }

    fn masters(&self) -> Vec<NodeId> {
        self.masters.clone()
    }

    fn update_masters(&mut self) {
        let mut seen = vec![false; self.nodes.len()];
        for o in self.owner.iter().flatten() {
            seen[*o] = true;
        }
        self.masters = (0..seen.len()).filter(|&i| seen[i]).collect();
    }

    /// True when more units may be pushed: what waits to be sent is under a quarter of the
    /// byte window (at least 1 MiB) and twice the command window. A driver stops reading its
    /// input while this is false, which holds the source back; memory stays near the window.
    pub fn can_accept(&self) -> bool {
        self.failed.is_none()
            && self.queued_bytes < (self.cfg.window_bytes / 4).max(1 << 20)
            && self.queued_units < self.cfg.window_commands * 2
    }

    /// Adds a unit at the end of its lane.
    pub fn push(&mut self, unit: Unit) {
        self.seq += 1;
        let seq = self.seq;
        if !unit.is_empty() {
            // an all-masters unit counts its copies when they are made
            self.outstanding.insert(seq, 1);
        }
        if let (Some(shard), Some(off)) = (unit.shard, unit.offset) {
            let low = self.outstanding.keys().next().copied();
            let pos = self.positions.entry(shard).or_default();
            pos.marks.push_back((seq, off));
            pos.advance(low);
        }
        if unit.is_empty() {
            return;
        }
        if unit.group != 0 && !self.dropped_groups.is_empty() {
            // groups come in increasing order: older ones are over
            self.dropped_groups = self.dropped_groups.split_off(&unit.group);
            if self.dropped_groups.contains(&unit.group) {
                self.outstanding.remove(&seq);
                return;
            }
        }
        self.queued_bytes += unit.len();
        self.queued_units += 1;
        if self.global.is_some() || !self.held.is_empty() || unit.route == Route::AllMasters {
            self.held.push_back((seq, unit));
            return;
        }
        self.enqueue(seq, unit);
    }

    fn enqueue(&mut self, seq: u64, unit: Unit) {
        let Route::Slot(slot) = unit.route else {
            return;
        };
        let id = u32::from(slot);
        self.lanes.entry(id).or_default().entries.push_back(Entry {
            unit,
            seq,
            state: State::Queued,
            failed: None,
            ask: None,
            sent_before: false,
            sent: (0, 0),
        });
        self.make_ready(id);
    }

    fn make_ready(&mut self, id: u32) {
        if let Some(l) = self.lanes.get_mut(&id) {
            if !l.ready {
                l.ready = true;
                self.ready.push_back(id);
            }
        }
    }

    fn lane_node(&self, id: u32) -> Option<NodeId> {
        if id >= NODE_LANES {
            Some((id - NODE_LANES) as usize)
        } else {
            self.owner[id as usize]
        }
    }

    /// Starts the all-masters unit at the head of `held` when every lane is idle, and moves
    /// the units behind it into their lanes once it is acknowledged.
    fn release_held(&mut self) {
        loop {
            if self.global.is_some() {
                return;
            }
            let Some((_, front)) = self.held.front() else {
                return;
            };
            if front.route != Route::AllMasters {
                let (seq, u) = self.held.pop_front().expect("front exists");
                self.enqueue(seq, u);
                continue;
            }
            if self.lanes.values().any(|l| !l.entries.is_empty()) {
                return;
            }
            let (seq, u) = self.held.pop_front().expect("front exists");
            let masters = self.masters();
            if masters.is_empty() {
                self.outstanding.remove(&seq);
            } else {
                self.outstanding.insert(seq, masters.len() as u32);
            }
            let mut ids = Vec::new();
            for m in masters {
                let id = NODE_LANES + m as u32;
                ids.push(id);
                let mut copy = u.clone();
                copy.route = Route::Slot(0);
                self.lanes.entry(id).or_default().entries.push_back(Entry {
                    unit: copy,
                    seq,
                    state: State::Queued,
                    failed: None,
                    ask: None,
                    sent_before: false,
                    sent: (0, 0),
                });
                self.make_ready(id);
            }
            // one copy's bytes were counted on push
            self.queued_bytes += u.len() * ids.len().saturating_sub(1);
            self.queued_units += ids.len().saturating_sub(1);
            if !ids.is_empty() {
                self.global = Some((seq, ids));
            }
        }
    }

    /// What the driver must do now: connect a node whose pause is over, read the topology.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        if let Some(a) = self.actions.pop_front() {
            return Some(a);
        }
        if self.refresh_wanted && !self.refresh_pending && self.cluster {
            self.refresh_wanted = false;
            self.refresh_pending = true;
            return Some(Action::Refresh);
        }
        let wanted: Vec<NodeId> = self.wanted_nodes();
        for n in wanted {
            let node = &mut self.nodes[n];
            if node.link == Link::Down && node.retry_at.is_none_or(|t| now >= t) {
                node.link = Link::Connecting;
                return Some(Action::Connect {
                    node: n,
                    host: node.host.clone(),
                    port: node.port,
                });
            }
        }
        None
    }

    /// Nodes to be connected to: every master (up front, so that refused credentials show at
    /// once), and the nodes `ASK` sent units to.
    fn wanted_nodes(&self) -> Vec<NodeId> {
        let mut w: Vec<NodeId> = self.masters();
        w.extend(self.ask_nodes.iter().copied());
        w.sort_unstable();
        w.dedup();
        w
    }

    /// When [`poll_action`](Self::poll_action) or [`handle_timeout`](Self::handle_timeout)
    /// wants to be called next (a paused node or lane).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let nodes = self
            .nodes
            .iter()
            .filter(|n| n.link == Link::Down)
            .filter_map(|n| n.retry_at);
        let lanes = self
            .blocked
            .iter()
            .filter_map(|id| self.lanes.get(id)?.blocked_until);
        nodes.chain(lanes).min()
    }

    /// Time passed: lanes whose pause is over may send again.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.blocked.is_empty() {
            return;
        }
        let mut due = Vec::new();
        let lanes = &mut self.lanes;
        self.blocked.retain(|id| {
            let Some(l) = lanes.get_mut(id) else {
                return false;
            };
            if l.blocked_until.is_some_and(|t| now >= t) {
                l.blocked_until = None;
                due.push(*id);
                return false;
            }
            l.blocked_until.is_some()
        });
        for id in due {
            self.make_ready(id);
        }
    }

    /// The connection to `node` is up (authenticated): units go to it.
    pub fn handle_connected(&mut self, node: NodeId) {
        let n = &mut self.nodes[node];
        n.link = Link::Up;
        // a new connection starts in db 0
        n.db = Some(0);
        n.failures = 0;
        let lanes: Vec<u32> = self.lanes.keys().copied().collect();
        for id in lanes {
            self.make_ready(id);
        }
    }

    /// The connection to `node` is gone (or could not be made): what it had unacknowledged
    /// goes back to its lanes, to be sent again on a new connection after a pause.
    pub fn handle_disconnected(&mut self, node: NodeId, now: Instant) {
        let n = &mut self.nodes[node];
        if n.link == Link::Up {
            self.counters.disconnects += 1;
        }
        n.link = Link::Down;
        n.failures += 1;
        let exp = n.failures.saturating_sub(1).min(16);
        let pause = self
            .cfg
            .backoff_min
            .saturating_mul(1 << exp)
            .min(self.cfg.backoff_max);
        n.retry_at = Some(now + pause);
        n.out.clear();
        n.db = None;
        n.inflight_cmds = 0;
        n.inflight_bytes = 0;
        let sent = std::mem::take(&mut n.sent);
        for e in sent {
            if let Expect::Unit { lane, seq, .. } = e {
                if let Some(l) = self.lanes.get_mut(&lane) {
                    if let Some(en) = find(&mut l.entries, seq) {
                        if en.state == State::Sent {
                            en.state = State::Queued;
                            l.hint = 0;
                            l.inflight = l.inflight.saturating_sub(1);
                            if en.unit.barrier {
                                l.barrier_out = false;
                            }
                        }
                    }
                }
            }
        }
        // a failed-over master: the cluster may name another one for these slots
        self.refresh_wanted = self.cluster;
        let lanes: Vec<u32> = self.lanes.keys().copied().collect();
        for id in lanes {
            let l = self.lanes.get_mut(&id).expect("lane exists");
            // a lane that waited for these replies to resend may go now
            if l.draining && l.inflight == 0 {
                self.resolve(id, now);
            }
            self.make_ready(id);
        }
    }

    /// Bytes for a node, when units are ready and its window has room.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Bytes)> {
        self.release_held();
        let rounds = self.ready.len();
        for _ in 0..rounds {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            if let Some(l) = self.lanes.get_mut(&id) {
                l.ready = false;
            }
            self.send_lane(id);
        }
        let n = self.nodes.iter().position(|n| !n.out.is_empty())?;
        let bytes = self.nodes[n].out.split().freeze();
        Some((n, bytes))
    }

    fn send_lane(&mut self, id: u32) {
        loop {
            let Some(l) = self.lanes.get(&id) else {
                return;
            };
            if l.draining || l.blocked_until.is_some() || l.barrier_out {
                return;
            }
            let from = l.hint.min(l.entries.len());
            let Some(i) = l
                .entries
                .iter()
                .skip(from)
                .position(|e| e.state == State::Queued)
                .map(|p| p + from)
            else {
                if let Some(l) = self.lanes.get_mut(&id) {
                    l.hint = l.entries.len();
                }
                return;
            };
            let e = &l.entries[i];
            if e.unit.barrier && l.inflight > 0 {
                return;
            }
            let Some(to) = e.ask.or_else(|| self.lane_node(id)) else {
                // no master known for the slot: read the topology
                self.refresh_wanted = true;
                return;
            };
            if l.inflight > 0 && l.on != Some(to) {
                // the rest goes to another node once everything in flight came back
                return;
            }
            let node = &self.nodes[to];
            if node.link != Link::Up {
                return;
            }
            let alt = e.unit.resend_as.clone().filter(|_| e.sent_before);
            let (len, cmds) = match &alt {
                Some(a) => (a.0.len(), a.1 as usize),
                None => (e.unit.len(), e.unit.replies as usize),
            };
            if node.inflight_cmds > 0
                && (node.inflight_cmds + cmds > self.cfg.window_commands
                    || node.inflight_bytes + len > self.cfg.window_bytes)
            {
                // full: the lane goes again when replies come
                self.nodes[to].waiting.push(id);
                return;
            }
            let (seq, db, asking, barrier, resend, guard) = (
                e.seq,
                e.unit.db,
                e.ask.is_some(),
                e.unit.barrier,
                e.sent_before,
                e.unit.guard,
            );
            let (bytes, replies) = match &alt {
                Some(a) => (a.0.clone(), a.1),
                None => (e.unit.bytes.clone(), e.unit.replies),
            };
            let node = &mut self.nodes[to];
            if node.db != Some(db) {
                let n = itoa::Buffer::new().format(db).to_owned();
                resp_codec::encode_command([&b"SELECT"[..], n.as_bytes()], &mut node.out);
                node.sent.push_back(Expect::Select);
                node.db = Some(db);
            }
            if asking {
                resp_codec::encode_command([&b"ASKING"[..]], &mut node.out);
                node.sent.push_back(Expect::Asking);
            }
            node.out.extend_from_slice(&bytes);
            node.sent.push_back(Expect::Unit {
                lane: id,
                seq,
                left: replies.max(1),
                failure: None,
                error: None,
                guard,
            });
            node.inflight_cmds += cmds;
            node.inflight_bytes += len;
            if resend {
                self.counters.resent += u64::from(replies);
            } else {
                self.queued_bytes = self.queued_bytes.saturating_sub(len);
                self.queued_units = self.queued_units.saturating_sub(1);
            }
            let l = self.lanes.get_mut(&id).expect("lane exists");
            l.inflight += 1;
            l.on = Some(to);
            l.hint = i + 1;
            l.barrier_out = barrier;
            let e = &mut l.entries[i];
            e.state = State::Sent;
            e.sent_before = true;
            e.sent = (len, cmds);
        }
    }

    /// A reply from `node`. An error is fatal: refused credentials, or a refusal the
    /// configuration says stops the sync; the pipeline then accepts nothing more.
    pub fn handle_reply(&mut self, node: NodeId, frame: Frame, now: Instant) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.nodes[node].sent.is_empty() {
            let n = &self.nodes[node];
            let msg = format!("{}:{}: a reply nobody asked for", n.host, n.port);
            return Err(self.fail(Error::new(Kind::Protocol, msg)));
        }
        let err = text(&frame);
        let n = &mut self.nodes[node];
        let expect = n.sent.front_mut().expect("not empty");
        let refused = match expect {
            Expect::Select | Expect::Asking => {
                let what = if matches!(expect, Expect::Select) {
                    "SELECT"
                } else {
                    "ASKING"
                };
                n.sent.pop_front();
                let Some(e) = err else {
                    return Ok(());
                };
                let kind = if is_auth(&e) {
                    Kind::Auth
                } else {
                    Kind::Target
                };
                let msg = if what == "SELECT" && e.contains("not allowed") {
                    format!(
                        "{}:{} refuses SELECT ({e}): a cluster serves db 0 only; map the \
                         source's databases with --db-map SRC:0",
                        n.host, n.port
                    )
                } else {
                    format!("{}:{} refused {what}: {e}", n.host, n.port)
                };
                Error::new(kind, msg)
            }
            Expect::Unit {
                left,
                failure,
                error,
                guard,
                ..
            } => {
                if *guard && frame == Frame::Integer(1) {
                    *error = Some("EXISTS the key was in the target before".into());
                }
                if let Some(e) = err {
                    if failure.is_none() && error.is_none() {
                        match classify(&e) {
                            Some(f) => *failure = Some(f),
                            None if e.starts_with("EXECABORT") => {}
                            None => *error = Some(e),
                        }
                    }
                } else if let (Frame::Array(items), None) = (&frame, &error) {
                    // the replies of a transaction's commands
                    if *left == 1 {
                        if let Some(e) = items.iter().find_map(text) {
                            *error = Some(e);
                        }
                    }
                }
                *left -= 1;
                if *left > 0 {
                    return Ok(());
                }
                let Some(Expect::Unit {
                    lane,
                    seq,
                    failure,
                    error,
                    ..
                }) = n.sent.pop_front()
                else {
                    unreachable!("the front was a unit");
                };
                return self.unit_done(node, lane, seq, failure, error, now);
            }
        };
        Err(self.fail(refused))
    }

    fn fail(&mut self, e: Error) -> Error {
        self.failed = Some(e.clone());
        e
    }

    fn unit_done(
        &mut self,
        node: NodeId,
        lane: u32,
        seq: u64,
        failure: Option<Failure>,
        error: Option<String>,
        now: Instant,
    ) -> Result<()> {
        let Some(l) = self.lanes.get_mut(&lane) else {
            return Ok(());
        };
        let i = l.entries.partition_point(|x| x.seq < seq);
        let Some(e) = l.entries.get(i).filter(|e| e.seq == seq) else {
            return Ok(());
        };
        let (len, cmds) = e.sent;
        let n = &mut self.nodes[node];
        n.inflight_cmds = n.inflight_cmds.saturating_sub(cmds);
        n.inflight_bytes = n.inflight_bytes.saturating_sub(len);
        l.inflight = l.inflight.saturating_sub(1);
        if e.unit.barrier {
            l.barrier_out = false;
        }
        if let Some(f) = failure {
            match &f {
                Failure::Moved(slot, h, p) => {
                    self.counters.moved += 1;
                    let (slot, h, p) = (*slot, h.clone(), *p);
                    let to = self.node(&h, p);
                    self.owner[usize::from(slot)] = Some(to);
                    self.update_masters();
                    self.refresh_wanted = true;
                }
                Failure::Ask(..) => self.counters.ask += 1,
                Failure::Retry { refresh } => {
                    self.counters.retries += 1;
                    if *refresh {
                        self.refresh_wanted = true;
                    }
                }
            }
            let l = self.lanes.get_mut(&lane).expect("lane exists");
            let e = find(&mut l.entries, seq).expect("entry exists");
            e.state = State::Queued;
            e.failed = Some(f);
            l.hint = 0;
            l.draining = true;
            if l.inflight == 0 {
                self.resolve(lane, now);
            }
            self.make_ready(lane);
            self.wake_node(node);
            return Ok(());
        }
        // a write answered while an earlier write of the same key waits to go again (a
        // CLUSTERDOWN or LOADING that ended between two commands of one pipeline): the key's
        // order is already broken, and going on would hide it
        if l.draining && !e.unit.key.is_empty() {
            let key = e.unit.key.clone();
            let earlier = l
                .entries
                .range(..i)
                .any(|x| x.unit.key == key && matches!(x.failed, Some(Failure::Retry { .. })));
            if earlier {
                return Err(self.fail(
                    Error::new(
                        Kind::Target,
                        format!(
                            "key {}: a write was refused for a moment (CLUSTERDOWN, LOADING, \
                             TRYAGAIN…) while a later write of the same key in the same \
                             pipeline was applied; sending the first again would reorder the \
                             key, so the sync stops (resume from the checkpoint)",
                            rdb_format::Shown(&key)
                        ),
                    )
                    .with_key(key),
                ));
            }
        }
        let e = &mut l.entries[i];
        let mut drop_group = 0;
        if let Some(text) = error {
            let key = e.unit.key.clone();
            let guarded = e.unit.guard && text.starts_with("EXISTS");
            if guarded {
                drop_group = e.unit.group;
            }
            let conflict = guarded || (e.unit.busy_is_conflict && text.starts_with("BUSYKEY"));
            if is_auth(&text) {
                return Err(self.fail(Error::new(
                    Kind::Auth,
                    format!("the target refused a write: {text}"),
                )));
            }
            let (policy, what) = if conflict {
                (self.cfg.on_conflict, "conflict")
            } else {
                (self.cfg.on_error, "refused")
            };
            if policy == OnError::Fail {
                let msg = if conflict {
                    format!(
                        "key {} already exists in the target (--on-conflict replace overwrites \
                         it, skip leaves it)",
                        rdb_format::Shown(&key)
                    )
                } else {
                    format!(
                        "the target refused a write to key {}: {text} (--on-error skip counts \
                         and goes on)",
                        rdb_format::Shown(&key)
                    )
                };
                let kind = if conflict {
                    Kind::Conflict
                } else {
                    Kind::Target
                };
                return Err(self.fail(Error::new(kind, msg).with_key(key)));
            }
            let first = self.cfg.first_keys;
            let r = if what == "conflict" {
                &mut self.counters.conflicts_skipped
            } else {
                let kind = text
                    .split_ascii_whitespace()
                    .next()
                    .unwrap_or("ERR")
                    .to_owned();
                self.counters.refused.entry(kind).or_default()
            };
            r.count += 1;
            if r.first_keys.len() < first {
                r.first_keys.push(key);
            }
            if r.first_error.is_empty() {
                r.first_error = text;
            }
        }
        self.counters.acked += cmds as u64;
        let l = self.lanes.get_mut(&lane).expect("lane exists");
        let e = find(&mut l.entries, seq).expect("entry exists");
        e.state = State::Done;
        l.retries = 0;
        if drop_group != 0 {
            self.dropped_groups.insert(drop_group);
            // the key was there before: what was to be written of it is dropped, unsent
            let mut dropped = Vec::new();
            for e in l.entries.iter_mut() {
                if e.unit.group == drop_group && e.state == State::Queued {
                    e.state = State::Done;
                    dropped.push((e.seq, e.unit.len()));
                }
            }
            for (seq, len) in dropped {
                self.queued_bytes = self.queued_bytes.saturating_sub(len);
                self.queued_units = self.queued_units.saturating_sub(1);
                self.outstanding.remove(&seq);
            }
        }
        let l = self.lanes.get_mut(&lane).expect("lane exists");
        while l.entries.front().is_some_and(|e| e.state == State::Done) {
            l.entries.pop_front();
            l.hint = l.hint.saturating_sub(1);
        }
        let empty = l.entries.is_empty() && l.inflight == 0;
        if l.draining && l.inflight == 0 {
            self.resolve(lane, now);
        }
        if empty && !l_ready(&self.lanes, lane) {
            self.lanes.remove(&lane);
        } else {
            self.make_ready(lane);
        }
        // the node's window has room again: its other lanes may go
        self.wake_node(node);
        if let Some(c) = self.outstanding.get_mut(&seq) {
            *c -= 1;
            if *c == 0 {
                self.outstanding.remove(&seq);
            }
        }
        let low = self.outstanding.keys().next().copied();
        for pos in self.positions.values_mut() {
            pos.advance(low);
        }
        if let Some((gseq, ids)) = &mut self.global {
            if *gseq == seq {
                ids.retain(|&i| i != lane);
                if ids.is_empty() {
                    self.global = None;
                }
            }
        }
        Ok(())
    }

    fn wake_node(&mut self, node: NodeId) {
        let ids = std::mem::take(&mut self.nodes[node].waiting);
        for id in ids {
            self.make_ready(id);
        }
    }

    /// Every reply of the lane's units in flight is in: the refused ones go again, in order.
    fn resolve(&mut self, lane: u32, now: Instant) {
        let (min, max) = (self.cfg.backoff_min, self.cfg.backoff_max);
        let mut asks: Vec<(usize, String, u16)> = Vec::new();
        let mut pause = false;
        {
            let l = self.lanes.get_mut(&lane).expect("lane exists");
            l.draining = false;
            for (i, e) in l.entries.iter_mut().enumerate() {
                match e.failed.take() {
                    Some(Failure::Ask(h, p)) => asks.push((i, h, p)),
                    Some(Failure::Moved(..)) => e.ask = None,
                    Some(Failure::Retry { .. }) => {
                        e.ask = None;
                        pause = true;
                    }
                    None => {}
                }
            }
            if pause {
                let exp = l.retries.min(16);
                l.retries += 1;
                l.blocked_until = Some(now + min.saturating_mul(1 << exp).min(max));
            }
        }
        if pause && !self.blocked.contains(&lane) {
            self.blocked.push(lane);
        }
        for (i, h, p) in asks {
            let to = self.node(&h, p);
            if !self.ask_nodes.contains(&to) {
                self.ask_nodes.push(to);
            }
            let l = self.lanes.get_mut(&lane).expect("lane exists");
            l.entries[i].ask = Some(to);
        }
    }

    /// The highest source offset of `shard` whose writes the target has all acknowledged
    /// (with everything pushed before them).
    pub fn acked(&self, shard: usize) -> Option<u64> {
        self.positions.get(&shard).and_then(|p| p.acked)
    }

    /// Every source shard's acknowledged offset.
    pub fn positions(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.positions
            .iter()
            .filter_map(|(&s, p)| Some((s, p.acked?)))
    }

    /// True when nothing is queued or unacknowledged.
    pub fn is_idle(&self) -> bool {
        self.held.is_empty()
            && self.global.is_none()
            && self.lanes.values().all(|l| l.entries.is_empty())
    }

    #[doc(hidden)]
    pub fn debug_state(&self) -> String {
        let mut out = String::new();
        for (id, l) in &self.lanes {
            out += &format!(
                "lane {id}: inflight {} on {:?} draining {} blocked {:?} barrier {} ready {} states {:?}\n",
                l.inflight,
                l.on,
                l.draining,
                l.blocked_until,
                l.barrier_out,
                l.ready,
                l.entries
                    .iter()
                    .map(|e| (e.state, e.ask, e.failed.is_some()))
                    .collect::<Vec<_>>()
            );
        }
        for (i, n) in self.nodes.iter().enumerate() {
            out += &format!(
                "node {i}: {:?} sent {} waiting {:?} inflight {}\n",
                n.link,
                n.sent.len(),
                n.waiting,
                n.inflight_cmds
            );
        }
        out += &format!(
            "ready {:?} held {} global {:?}\n",
            self.ready,
            self.held.len(),
            self.global
        );
        out
    }

    /// Units pushed and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.held.len() + self.lanes.values().map(|l| l.entries.len()).sum::<usize>()
    }

    /// Commands unacknowledged per node: (address, commands, bytes).
    pub fn inflight(&self) -> Vec<(String, usize, usize)> {
        self.nodes
            .iter()
            .map(|n| {
                (
                    format!("{}:{}", n.host, n.port),
                    n.inflight_cmds,
                    n.inflight_bytes,
                )
            })
            .collect()
    }

    /// What was done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The error that stopped the pipeline, if one did.
    pub fn error(&self) -> Option<&Error> {
        self.failed.as_ref()
    }
}

fn l_ready(lanes: &Lanes, id: u32) -> bool {
    lanes.get(&id).is_some_and(|l| l.ready)
}

/// The entry of `seq` in a lane (entries are in increasing seq order).
fn find(entries: &mut VecDeque<Entry>, seq: u64) -> Option<&mut Entry> {
    let i = entries.partition_point(|e| e.seq < seq);
    entries.get_mut(i).filter(|e| e.seq == seq)
}
