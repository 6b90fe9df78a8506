//! A whole Redis Cluster as a source: its shards discovered from any node (`CLUSTER SHARDS`,
//! `CLUSTER NODES` on servers before 7.0), one replica per shard, and each shard followed
//! through failovers.
//!
//! A shard's replica keeps its position (replid, offset) across a failover: when its master
//! fails and a replica is promoted, the new master is found in the topology and the same
//! client continues there with `PSYNC <replid> <offset+1>`. The promoted node accepts it through
//! its `replid2` when it had received that offset (the normal case), else it answers with a full
//! sync of that shard alone, flagged by [`SyncStart::resync`](crate::SyncStart::resync).
//!
//! Order: the events of one shard come in that shard's order (so per key, as long as the key
//! stays in its shard); there is no order across shards. A key that moves between shards
//! (MIGRATE-based resharding) shows up as a `RESTORE` in the new shard's stream and a `DEL` in
//! the old one's, in no defined order with respect to each other. Once a key was restored by
//! one shard, what other shards say of it is left out (their writes are in the payload, their
//! `DEL` is the move's; [`ClusterConfig::raw_migrations`] turns this off), so applying the
//! events in the order they come gives the cluster's data once writes stop. This remembers every
//! key moved while the client runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use resp_codec::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::client::{Client, ClientConfig, Connection, Endpoint, Stopper};
use crate::error::{Error, Kind, Result};
use crate::proto::{CommandEvent, Event};

/// A node of a cluster as the topology shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Node {
    /// The node id.
    pub id: String,
    /// Its address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// True for the shard's master.
    pub master: bool,
    /// False when the cluster marks it failed (or, with `CLUSTER SHARDS`, not online).
    pub healthy: bool,
}

/// A shard: its slot ranges and its nodes (the master and its replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shard {
    /// Slot ranges, inclusive.
    pub slots: Vec<(u16, u16)>,
    /// The nodes, master first when there is one.
    pub nodes: Vec<Node>,
}

impl Shard {
    /// The healthy master, if any.
    pub fn master(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.master && n.healthy)
    }

    /// The node to replicate from: the master, or with `prefer_replica` a healthy replica when
    /// there is one (it has the master's replid, so the position carries over).
    pub fn source(&self, prefer_replica: bool) -> Option<&Node> {
        let replica = || self.nodes.iter().find(|n| !n.master && n.healthy);
        if prefer_replica {
            replica().or_else(|| self.master())
        } else {
            self.master()
        }
    }

    fn has_node(&self, id: &str) -> bool {
        self.nodes.iter().any(|n| n.id == id)
    }

    fn shares_slots(&self, other: &[(u16, u16)]) -> bool {
        self.slots
            .iter()
            .any(|&(a, b)| other.iter().any(|&(c, d)| a <= d && c <= b))
    }
}

fn text(f: &Frame) -> Option<String> {
    match f {
        Frame::BulkString(b) | Frame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        Frame::Verbatim { text, .. } => Some(String::from_utf8_lossy(text).into_owned()),
        Frame::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(f: &Frame) -> Option<i64> {
    match f {
        Frame::Integer(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// The pairs of a RESP2 flat map (`[k, v, k, v, …]`) or a RESP3 map.
fn pairs(f: &Frame) -> Option<Vec<(String, &Frame)>> {
    match f {
        Frame::Array(items) => items
            .chunks(2)
            .map(|kv| Some((text(kv.first()?)?, kv.get(1)?)))
            .collect(),
        Frame::Map(kvs) => kvs.iter().map(|(k, v)| Some((text(k)?, v))).collect(),
        _ => None,
    }
}

fn bad(what: &str) -> Error {
    Error::new(Kind::Protocol, format!("bad {what} reply"))
}

/// The shards from a `CLUSTER SHARDS` reply (shards without slots are left out).
///
/// ```
/// use resp_codec::Frame;
/// let s = |t: &str| Frame::BulkString(t.to_owned().into());
/// let node = Frame::Array(vec![
///     s("id"), s("abc"), s("port"), Frame::Integer(7000), s("ip"), s("127.0.0.1"),
///     s("role"), s("master"), s("health"), s("online"),
/// ]);
/// let shard = Frame::Array(vec![
///     s("slots"), Frame::Array(vec![Frame::Integer(0), Frame::Integer(5460)]),
///     s("nodes"), Frame::Array(vec![node]),
/// ]);
/// let shards = replica_net::cluster::parse_shards(&Frame::Array(vec![shard])).unwrap();
/// assert_eq!(shards[0].slots, vec![(0, 5460)]);
/// assert_eq!(shards[0].master().unwrap().port, 7000);
/// ```
pub fn parse_shards(reply: &Frame) -> Result<Vec<Shard>> {
    let Frame::Array(shards) = reply else {
        return Err(bad("CLUSTER SHARDS"));
    };
    let mut out = Vec::new();
    for s in shards {
        let fields = pairs(s).ok_or_else(|| bad("CLUSTER SHARDS"))?;
        let mut slots = Vec::new();
        let mut nodes = Vec::new();
        for (k, v) in fields {
            match (k.as_str(), v) {
                ("slots", Frame::Array(bounds)) => {
                    for r in bounds.chunks(2) {
                        let (Some(a), Some(b)) = (r.first().and_then(int), r.get(1).and_then(int))
                        else {
                            return Err(bad("CLUSTER SHARDS slots"));
                        };
                        slots.push((a as u16, b as u16));
                    }
                }
                ("nodes", Frame::Array(ns)) => {
                    for n in ns {
                        let f = pairs(n).ok_or_else(|| bad("CLUSTER SHARDS node"))?;
                        let get = |name: &str| f.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
                        let port = get("port")
                            .or_else(|| get("tls-port"))
                            .and_then(int)
                            .unwrap_or(0);
                        let host = get("ip")
                            .and_then(text)
                            .filter(|h| !h.is_empty() && h != "?")
                            .or_else(|| get("endpoint").and_then(text))
                            .unwrap_or_default();
                        nodes.push(Node {
                            id: get("id").and_then(text).unwrap_or_default(),
                            host,
                            port: port as u16,
                            master: get("role").and_then(text).as_deref() == Some("master"),
                            healthy: get("health").and_then(text).as_deref() == Some("online"),
                        });
                    }
                }
                _ => {}
            }
        }
        if !slots.is_empty() {
            nodes.sort_by_key(|n| !n.master);
            out.push(Shard { slots, nodes });
        }
    }
    Ok(out)
}

/// The shards from a `CLUSTER NODES` reply (servers before 7.0; masters without slots are
/// left out; a slot being migrated stays with the master that owns it).
///
/// ```
/// let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191\n\
///             b2 127.0.0.1:7001@17001 slave a1 0 0 1 connected\n\
///             c3 127.0.0.1:7002@17002 master - 0 0 2 connected 8192-16383\n";
/// let shards = replica_net::cluster::parse_nodes(text).unwrap();
/// assert_eq!(shards.len(), 2);
/// assert_eq!(shards[0].nodes.len(), 2);
/// assert_eq!(shards[1].slots, vec![(8192, 16383)]);
/// ```
pub fn parse_nodes(reply: &str) -> Result<Vec<Shard>> {
    struct Line<'a> {
        node: Node,
        of: &'a str,
        slots: Vec<(u16, u16)>,
    }
    let mut lines = Vec::new();
    for l in reply.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            return Err(bad("CLUSTER NODES"));
        }
        let addr = f[1].split(['@', ',']).next().unwrap_or("");
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("CLUSTER NODES"))?;
        let flags: Vec<&str> = f[2].split(',').collect();
        let slots = f[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|a| (a, a)),
            })
            .collect();
        lines.push(Line {
            node: Node {
                id: f[0].to_owned(),
                host: host.to_owned(),
                port: port.parse().map_err(|_| bad("CLUSTER NODES"))?,
                master: flags.contains(&"master"),
                healthy: !flags
                    .iter()
                    .any(|x| matches!(*x, "fail" | "fail?" | "noaddr" | "handshake")),
            },
            of: f[3],
            slots,
        });
    }
    let mut out = Vec::new();
    for m in lines
        .iter()
        .filter(|l| l.node.master && !l.slots.is_empty())
    {
        let mut nodes = vec![m.node.clone()];
        nodes.extend(
            lines
                .iter()
                .filter(|l| !l.node.master && l.of == m.node.id)
                .map(|l| l.node.clone()),
        );
        out.push(Shard {
            slots: m.slots.clone(),
            nodes,
        });
    }
    Ok(out)
}

/// Sends one command to `host:port` (AUTH first when configured, TLS when configured) and
/// reads one reply; an error reply is an error ([`ErrorKind::Auth`](crate::ErrorKind) for
/// refused credentials).
pub async fn command(cfg: &ClientConfig, host: &str, port: u16, args: &[&str]) -> Result<Frame> {
    let (mut io, _) = crate::client::connect(cfg, host, port).await?;
    let mut out = BytesMut::new();
    let mut replies = 1;
    if let Some(a) = cfg.replica().auth_ref() {
        match &a.user {
            Some(u) => resp_codec::encode_command(
                [&b"AUTH"[..], u.as_bytes(), a.password.as_bytes()],
                &mut out,
            ),
            None => resp_codec::encode_command([&b"AUTH"[..], a.password.as_bytes()], &mut out),
        }
        replies += 1;
    }
    resp_codec::encode_command(args, &mut out);
    let io_err = |e| Error::with_source(Kind::Io, format!("{host}:{port}"), e);
    let exchange = async {
        io.write_all(&out).await.map_err(io_err)?;
        let mut dec = resp_codec::Decoder::new();
        let mut buf = BytesMut::with_capacity(16 << 10);
        let mut last = None;
        while replies > 0 {
            if let Some(f) = dec
                .decode(&mut buf)
                .map_err(|e| Error::with_source(Kind::Protocol, "bad reply", e))?
            {
                replies -= 1;
                if let Frame::Error(e) | Frame::BulkError(e) = &f {
                    let msg = String::from_utf8_lossy(e).into_owned();
                    let kind = if msg.starts_with("WRONGPASS") || msg.starts_with("NOAUTH") {
                        Kind::Auth
                    } else {
                        Kind::Protocol
                    };
                    return Err(Error::new(kind, format!("{}: {msg}", args.join(" "))));
                }
                last = Some(f);
                continue;
            }
            if io.read_buf(&mut buf).await.map_err(io_err)? == 0 {
                return Err(Error::new(Kind::Closed, format!("{host}:{port} closed")));
            }
        }
        last.ok_or_else(|| bad("empty"))
    };
    tokio::time::timeout(cfg.connect_timeout, exchange)
        .await
        .map_err(|_| Error::new(Kind::Timeout, format!("{host}:{port}: no reply")))?
}

/// The cluster's shards as `host:port` sees them: `CLUSTER SHARDS`, or `CLUSTER NODES` where
/// the server has no `CLUSTER SHARDS` (before 7.0).
pub async fn topology(cfg: &ClientConfig, host: &str, port: u16) -> Result<Vec<Shard>> {
    match command(cfg, host, port, &["CLUSTER", "SHARDS"]).await {
        Ok(f) => parse_shards(&f),
        Err(e) if e.kind() == crate::ErrorKind::Protocol => {
            let f = command(cfg, host, port, &["CLUSTER", "NODES"]).await?;
            parse_nodes(&text(&f).ok_or_else(|| bad("CLUSTER NODES"))?)
        }
        Err(e) => Err(e),
    }
}

/// True when `host:port` runs in cluster mode (`INFO cluster` says `cluster_enabled:1`).
pub async fn is_cluster(cfg: &ClientConfig, host: &str, port: u16) -> Result<bool> {
    let f = command(cfg, host, port, &["INFO", "cluster"]).await?;
    Ok(text(&f).is_some_and(|t| t.contains("cluster_enabled:1")))
}

/// An event of one shard.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShardEvent {
    /// The shard's index in the order discovered (stable for the client's life).
    pub shard: usize,
    /// The id of the node the shard is replicated from when the event was received.
    pub node: String,
    /// The event.
    pub event: Event,
}

/// What one shard's replica is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStatus {
    /// The shard's slot ranges when last seen.
    pub slots: Vec<(u16, u16)>,
    /// The node replicated from.
    pub node: String,
    /// Its address.
    pub addr: String,
    /// The master's replid once a sync began.
    pub replid: Option<String>,
    /// The offset reached.
    pub offset: Option<u64>,
    /// The protocol phase of the shard's replica (`handshake`, `RDB transfer`, `streaming`, …).
    pub phase: &'static str,
    /// Times the shard followed its master to another node.
    pub moves: u64,
    /// The shard is gone: its slots moved to a shard that is followed already, and its node
    /// left the cluster or became a replica in that shard; its replica stopped.
    pub retired: bool,
}

/// Settings of a [`ClusterClient`]: the per-shard client settings (AUTH, TLS, timeouts, the
/// core's settings; host and port are the seed node's) and how to follow the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    base: ClientConfig,
    prefer_replica: bool,
    refresh: Duration,
    resume: Vec<(String, u64)>,
    raw_migrations: bool,
}

impl ClusterConfig {
    /// Settings from one node's client settings (any node of the cluster).
    pub fn new(seed: ClientConfig) -> Self {
        Self {
            base: seed,
            prefer_replica: false,
            refresh: Duration::from_secs(1),
            resume: Vec::new(),
            raw_migrations: false,
        }
    }

    /// Pass every command as its shard sent it, the `DEL`s that key moves between shards leave
    /// behind included (default: left out, see the module's notes on order).
    pub fn raw_migrations(&mut self, on: bool) -> &mut Self {
        self.raw_migrations = on;
        self
    }

    /// Continue from saved positions, one per shard: the replid of the shard's last
    /// [`SyncStart`](crate::SyncStart) and the offset of the last command applied (a
    /// [`ShardStatus`] may be ahead of what was applied). Each shard asks `PSYNC <replid> <offset+1>` with the
    /// position whose replid its node has as its replication id or its previous one (after a
    /// failover); shards with none start with a full sync.
    pub fn resume(&mut self, positions: Vec<(String, u64)>) -> &mut Self {
        self.resume = positions;
        self
    }

    /// Replicate each shard from a healthy replica rather than its master.
    pub fn prefer_replica(&mut self, on: bool) -> &mut Self {
        self.prefer_replica = on;
        self
    }

    /// How often the topology is read again while a shard's link is down (default 1 s).
    pub fn refresh(&mut self, every: Duration) -> &mut Self {
        self.refresh = every;
        self
    }
}

/// A replica of every shard of a Redis Cluster, as one stream of [`ShardEvent`]s (each shard's
/// in its order) with backpressure per shard.
///
/// ```no_run
/// # async fn f() -> replica_net::Result<()> {
/// use replica_net::{ClientConfig, cluster::{ClusterClient, ClusterConfig}};
/// let cfg = ClusterConfig::new(ClientConfig::from_url("redis://127.0.0.1:7000")?);
/// let (mut cluster, connection) = ClusterClient::connect(cfg);
/// tokio::spawn(connection);
/// while let Some(ev) = cluster.recv().await {
///     let ev = ev?;
///     println!("shard {} from {}: {:?}", ev.shard, ev.node, ev.event);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ClusterClient {
    rx: mpsc::Receiver<Result<ShardEvent>>,
    stop: Arc<watch::Sender<bool>>,
    status: Shared,
}

/// Each shard's status and its client's status handle.
type Shared = Arc<Mutex<Vec<(ShardStatus, crate::StatusHandle)>>>;

impl ClusterClient {
    /// The client and its [`Connection`] (which discovers the shards, replicates each and
    /// follows failovers), for the caller to run.
    pub fn connect(cfg: ClusterConfig) -> (Self, Connection) {
        let (tx, rx) = mpsc::channel(cfg.base.channel_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let status = Arc::new(Mutex::new(Vec::new()));
        let conn = Connection::new(supervise(cfg, tx, stop_rx, status.clone()));
        (
            Self {
                rx,
                stop: Arc::new(stop),
                status,
            },
            conn,
        )
    }

    /// The next event; `None` once every shard stopped.
    pub async fn recv(&mut self) -> Option<Result<ShardEvent>> {
        self.rx.recv().await
    }

    /// The next event, waiting without a runtime.
    pub fn blocking_recv(&mut self) -> Option<Result<ShardEvent>> {
        self.rx.blocking_recv()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Result<ShardEvent>> {
        self.rx.try_recv().ok()
    }

    /// Every shard's status.
    pub fn shards(&self) -> Vec<ShardStatus> {
        self.shards_handle().get()
    }

    /// A handle that reads every shard's status from anywhere.
    pub fn shards_handle(&self) -> ShardsHandle {
        ShardsHandle(self.status.clone())
    }

    /// A handle that stops every shard from another task or thread.
    pub fn stopper(&self) -> ClusterStopper {
        ClusterStopper(self.stop.clone())
    }

    /// Stops every shard's replica (each sends a last ACK).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Reads a [`ClusterClient`]'s shard statuses from anywhere.
#[derive(Debug, Clone)]
pub struct ShardsHandle(Shared);

impl ShardsHandle {
    /// Every shard's status now.
    pub fn get(&self) -> Vec<ShardStatus> {
        let Ok(all) = self.0.lock() else {
            return Vec::new();
        };
        all.iter()
            .map(|(s, h)| {
                let st = h.get();
                let mut s = s.clone();
                s.replid = st.replid;
                s.offset = st.offset;
                s.phase = if s.retired { "retired" } else { st.phase };
                s
            })
            .collect()
    }
}

/// Stops a [`ClusterClient`] from another task or thread.
#[derive(Debug, Clone)]
pub struct ClusterStopper(Arc<watch::Sender<bool>>);

impl ClusterStopper {
    /// Stops every shard's replica (each sends a last ACK).
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Drop for ClusterClient {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

struct Running {
    retired: bool,
    slots: Vec<(u16, u16)>,
    node: Arc<Mutex<String>>,
    endpoint: Endpoint,
    stopper: Stopper,
}

/// Reads the topology from the first node of `addrs` that answers.
async fn discover(cfg: &ClientConfig, addrs: &[(String, u16)]) -> Result<Vec<Shard>> {
    let mut last = Error::new(Kind::Config, "no node to ask for the topology");
    for (h, p) in addrs {
        match topology(cfg, h, *p).await {
            Ok(t) if !t.is_empty() => return Ok(t),
            Ok(_) => last = Error::new(Kind::Protocol, format!("{h}:{p}: no shard has slots")),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn supervise(
    cfg: ClusterConfig,
    tx: mpsc::Sender<Result<ShardEvent>>,
    mut stop: watch::Receiver<bool>,
    status: Shared,
) {
    let seed = vec![(cfg.base.host.clone(), cfg.base.port)];
    let topo = loop {
        match discover(&cfg.base, &seed).await {
            Ok(t) => break t,
            Err(e) if e.is_fatal() => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(cfg.refresh) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let mut known: Vec<(String, u16)> = topo
        .iter()
        .flat_map(|s| s.nodes.iter().map(|n| (n.host.clone(), n.port)))
        .collect();
    let (down_tx, mut down_rx) = mpsc::unbounded_channel::<usize>();
    // a big key comes in chunks: while one shard delivers one, the others wait, so every key's
    // chunks reach the consumer together
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut running = Vec::new();
    let links = Links {
        tx: tx.clone(),
        down: down_tx.clone(),
        gate: gate.clone(),
        status: status.clone(),
        moved: (!cfg.raw_migrations).then(Default::default),
    };
    for shard in &topo {
        let resume = match shard.source(cfg.prefer_replica) {
            Some(n) if !cfg.resume.is_empty() => saved_position(&cfg, n).await,
            _ => None,
        };
        let Some(r) = spawn_shard(&cfg, running.len(), shard, resume, &links, &mut tasks) else {
            let _ = tx
                .send(Err(Error::new(
                    Kind::Protocol,
                    format!("shard of slots {:?} has no healthy node", shard.slots),
                )))
                .await;
            return;
        };
        running.push(r);
    }
    drop(tx);
    drop(down_tx);
    // shards whose link is down, followed until their master is found again
    let mut down: Vec<usize> = Vec::new();
    let mut tick = tokio::time::interval(cfg.refresh);
    // a full look at the topology now and then: shards that appear are replicated too
    let mut survey = tokio::time::interval(cfg.refresh * 10);
    survey.tick().await;
    loop {
        tokio::select! {
            Some(i) = down_rx.recv() => {
                if !down.contains(&i) {
                    down.push(i);
                }
                follow(&cfg, &mut running, &mut down, &mut known, &status, &links).await;
            }
            _ = tick.tick(), if !down.is_empty() => {
                follow(&cfg, &mut running, &mut down, &mut known, &status, &links).await;
            }
            _ = survey.tick() => {
                if let Ok(topo) = discover(&cfg.base, &known).await {
                    for shard in &topo {
                        // a shard is known by its nodes (its slots may have come from others)
                        let mut new = true;
                        for r in running.iter_mut().filter(|r| !r.retired) {
                            if r.node.lock().is_ok_and(|n| shard.has_node(&n)) {
                                r.slots.clone_from(&shard.slots);
                                new = false;
                            }
                        }
                        if new {
                            tracing::info!(slots = ?shard.slots, "a new shard joined the cluster");
                            if let Some(r) =
                                spawn_shard(&cfg, running.len(), shard, None, &links, &mut tasks)
                            {
                                running.push(r);
                            }
                        }
                    }
                }
            }
            r = tasks.join_next() => {
                if r.is_none() {
                    return;
                }
            }
            _ = stop.changed() => {
                for r in &running {
                    r.stopper.stop();
                }
                while tasks.join_next().await.is_some() {}
                return;
            }
        }
    }
}

/// The saved position that belongs to `node`'s shard: the one whose replid the node has as
/// its replication id or its previous one (`INFO replication`).
async fn saved_position(cfg: &ClusterConfig, node: &Node) -> Option<(String, u64)> {
    let info = command(&cfg.base, &node.host, node.port, &["INFO", "replication"])
        .await
        .ok()?;
    let info = text(&info)?;
    let ids: Vec<&str> = info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("master_replid:")
                .or_else(|| l.strip_prefix("master_replid2:"))
        })
        .map(str::trim)
        .collect();
    cfg.resume
        .iter()
        .find(|(id, _)| ids.contains(&id.as_str()))
        .cloned()
}

/// What a shard's forwarding task sends into and signals.
struct Links {
    tx: mpsc::Sender<Result<ShardEvent>>,
    down: mpsc::UnboundedSender<usize>,
    gate: Arc<tokio::sync::Mutex<()>>,
    status: Shared,
    /// Keys a shard received by migration (`RESTORE`), and which shard (`None`: raw events).
    moved: Option<Arc<Mutex<Moved>>>,
}

/// Each key moved between shards while the client runs, and the shard it moved to.
type Moved = std::collections::HashMap<Vec<u8>, usize>;

/// Commands that name no key.
const KEYLESS: &[&str] = &[
    "SELECT", "MULTI", "EXEC", "DISCARD", "PING", "PUBLISH", "SPUBLISH", "FLUSHALL", "FLUSHDB",
    "SWAPDB", "FUNCTION", "SCRIPT", "REPLCONF",
];

/// A command of shard `shard` as it should reach the consumer, given the keys moved between
/// shards: resharding moves a key with MIGRATE, which shows as a `RESTORE` in the new shard's
/// stream and a `DEL` in the old one's, in no defined order. Once a key was restored by one
/// shard, what another shard says of it is older than that (its writes were in the payload, its
/// `DEL` is the move's) and is left out, so whichever order the two streams arrive in, the key
/// ends as the source holds it.
fn migration_filter(
    moved: &Mutex<Moved>,
    shard: usize,
    cmd: resp_codec::Command,
) -> Option<resp_codec::Command> {
    // no allocation and no lock for the commands that name no key (a hot path)
    if cmd.len() < 2 || KEYLESS.iter().any(|n| cmd.is(n)) {
        return Some(cmd);
    }
    let Ok(mut moved) = moved.lock() else {
        return Some(cmd);
    };
    let elsewhere = |k: &[u8], m: &Moved| m.get(k).is_some_and(|&s| s != shard);
    if cmd.is("RESTORE") || cmd.is("RESTORE-ASKING") {
        moved.insert(cmd.arg(1)?.to_vec(), shard);
        return Some(cmd);
    }
    if !(cmd.is("DEL") || cmd.is("UNLINK")) {
        return if elsewhere(cmd.arg(1)?, &moved) {
            None
        } else {
            Some(cmd)
        };
    }
    let keys: Vec<&[u8]> = cmd.args().skip(1).collect();
    let kept: Vec<&[u8]> = keys
        .iter()
        .copied()
        .filter(|k| !elsewhere(k, &moved))
        .collect();
    for k in &kept {
        // deleted where it lives: any shard may write it anew
        moved.remove(*k);
    }
    if kept.is_empty() {
        None
    } else if kept.len() == keys.len() {
        Some(cmd)
    } else {
        let mut args = vec![cmd.arg(0)?];
        args.extend(kept);
        Some(resp_codec::Command::from_args(args))
    }
}

/// Starts replicating shard `i` from its source node: its client's connection and the task
/// that forwards its events (a big key's chunks together, through the gate).
fn spawn_shard(
    cfg: &ClusterConfig,
    i: usize,
    shard: &Shard,
    resume: Option<(String, u64)>,
    links: &Links,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Option<Running> {
    let node = shard.source(cfg.prefer_replica)?;
    let mut c = cfg.base.clone();
    c.host.clone_from(&node.host);
    c.port = node.port;
    c.resume = resume;
    let (mut client, conn) = Client::connect(c);
    tasks.spawn(conn);
    let node_id = Arc::new(Mutex::new(node.id.clone()));
    let running = Running {
        retired: false,
        slots: shard.slots.clone(),
        node: node_id.clone(),
        endpoint: client.endpoint(),
        stopper: client.stopper(),
    };
    if let Ok(mut s) = links.status.lock() {
        s.push((
            ShardStatus {
                slots: shard.slots.clone(),
                node: node.id.clone(),
                addr: format!("{}:{}", node.host, node.port),
                ..Default::default()
            },
            client.status_handle(),
        ));
    }
    let (tx, down, gate) = (links.tx.clone(), links.down.clone(), links.gate.clone());
    let moved = links.moved.clone();
    tasks.spawn(async move {
        let mut held = None;
        while let Some(ev) = client.recv().await {
            let guard = match held.take() {
                Some(g) => g,
                None => gate.clone().lock_owned().await,
            };
            let inside = match &ev {
                Ok(Event::Rdb(rdb_format::Item::KeyStart(_) | rdb_format::Item::Chunk(_))) => true,
                Ok(_) | Err(_) => false,
            };
            let ev = match ev {
                Ok(Event::Command(CommandEvent { db, cmd, offset })) if moved.is_some() => {
                    let Some(cmd) = moved.as_deref().and_then(|m| migration_filter(m, i, cmd))
                    else {
                        // a move's leftover: not the consumer's (the guard was not held:
                        // a command is not inside a key)
                        continue;
                    };
                    Ok(Event::Command(CommandEvent { db, cmd, offset }))
                }
                other => other,
            };
            let ev = ev.map(|event| {
                if matches!(event, Event::Disconnected { .. }) {
                    let _ = down.send(i);
                }
                ShardEvent {
                    shard: i,
                    node: node_id.lock().map(|n| n.clone()).unwrap_or_default(),
                    event,
                }
            });
            if tx.send(ev).await.is_err() {
                client.stop();
                return;
            }
            // the gate opens after a key's last part went out
            if inside {
                held = Some(guard);
            }
        }
    });
    Some(running)
}

/// Reads the topology again and points each shard in `down` at its current source node;
/// shards found healthy where they were leave `down`.
async fn follow(
    cfg: &ClusterConfig,
    running: &mut [Running],
    down: &mut Vec<usize>,
    known: &mut Vec<(String, u16)>,
    status: &Mutex<Vec<(ShardStatus, crate::StatusHandle)>>,
    links: &Links,
) {
    // ask the nodes of the shards that went down first: they know of their own demotion
    let mut ask: Vec<(String, u16)> = down
        .iter()
        .filter_map(|&i| running.get(i))
        .map(|r| r.endpoint.get())
        .collect();
    ask.extend(known.iter().cloned());
    let Ok(topo) = discover(&cfg.base, &ask).await else {
        return;
    };
    for n in topo.iter().flat_map(|s| &s.nodes) {
        let a = (n.host.clone(), n.port);
        if !known.contains(&a) {
            known.push(a);
        }
    }
    // which node each shard follows now, to tell a failover from a shard that is gone
    let followed: Vec<Option<String>> = running
        .iter()
        .map(|r| {
            (!r.retired)
                .then(|| r.node.lock().map(|n| n.clone()).ok())
                .flatten()
        })
        .collect();
    let mut retired = Vec::new();
    down.retain(|&i| {
        let r = &mut running[i];
        if r.retired {
            return false;
        }
        let current = r.node.lock().map(|n| n.clone()).unwrap_or_default();
        let own = topo
            .iter()
            .find(|s| s.has_node(&current) && s.shares_slots(&r.slots));
        // its node is not in the topology (CLUSTER NODES leaves out a failed master whose
        // slots a replica took over): the shard that serves its slots now
        let shard = own.or_else(|| topo.iter().find(|s| s.shares_slots(&r.slots)));
        let Some(shard) = shard else {
            return true;
        };
        let other = followed
            .iter()
            .enumerate()
            .any(|(j, n)| j != i && n.as_deref().is_some_and(|n| shard.has_node(n)));
        if other {
            // its slots went to a shard another replica follows, and its node left or joined
            // that shard (a master that gives away its last slot becomes a replica of the
            // master that took it): the shard is gone, and following that shard too would
            // deliver its data twice
            r.retired = true;
            r.stopper.stop();
            tracing::info!(shard = i, "shard retired: its slots went to a shard followed already");
            retired.push(i);
            return false;
        }
        let Some(node) = shard.source(cfg.prefer_replica) else {
            return true;
        };
        r.slots.clone_from(&shard.slots);
        if node.id != current {
            if let Ok(mut n) = r.node.lock() {
                n.clone_from(&node.id);
            }
            if let Some((s, _)) = status.lock().ok().as_mut().and_then(|s| s.get_mut(i)) {
                s.node.clone_from(&node.id);
                s.addr = format!("{}:{}", node.host, node.port);
                s.slots.clone_from(&shard.slots);
                s.moves += 1;
            }
            tracing::info!(shard = i, node = %node.id, addr = %format_args!("{}:{}", node.host, node.port), "shard follows its master to another node");
            r.endpoint.set(node.host.clone(), node.port);
        }
        false
    });
    for i in retired {
        if let Some((s, _)) = status.lock().ok().as_mut().and_then(|s| s.get_mut(i)) {
            s.retired = true;
        }
        let reason = "shard retired: its slots moved to a shard that is followed already (its \
                      node left the cluster or became a replica there)";
        let ev = ShardEvent {
            shard: i,
            node: running[i]
                .node
                .lock()
                .map(|n| n.clone())
                .unwrap_or_default(),
            event: Event::Disconnected {
                reason: reason.into(),
            },
        };
        let _ = links.tx.send(Ok(ev)).await;
    }
}
