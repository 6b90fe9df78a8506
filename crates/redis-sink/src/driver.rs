//! The tokio driver: connections per node, the topology, units from a bounded channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use replica_net::ClientConfig;
use replica_net::cluster::{parse_nodes, parse_shards};
use resp_codec::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::core::{Action, Config, Counters, Master, NodeId, Pipeline, Unit};
use crate::error::{Error, Kind, Result};

/// Where to write and how: the connection settings of [`replica_net::ClientConfig`] (host,
/// port, AUTH, TLS, timeouts) and the pipeline's [`Config`].
#[derive(Debug, Clone)]
pub struct TargetConfig {
    client: ClientConfig,
    pipeline: Config,
}

impl TargetConfig {
    /// Settings from connection settings, with the default pipeline.
    pub fn new(client: ClientConfig) -> Self {
        Self {
            client,
            pipeline: Config::default(),
        }
    }

    /// Settings from `redis://[user:pass@]host:port` or `rediss://…` (any node of a cluster).
    ///
    /// ```
    /// let t = redis_sink::TargetConfig::from_url("redis://127.0.0.1:7000").unwrap();
    /// assert_eq!(t.client().port(), 7000);
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        let client = ClientConfig::from_url(url)
            .map_err(|e| Error::with_source(Kind::Config, format!("bad target URL {url:?}"), e))?;
        Ok(Self::new(client))
    }

    /// The connection settings.
    pub fn client(&self) -> &ClientConfig {
        &self.client
    }

    /// The connection settings, to change them.
    pub fn client_mut(&mut self) -> &mut ClientConfig {
        &mut self.client
    }

    /// The pipeline's settings, to change them.
    pub fn pipeline_mut(&mut self) -> &mut Config {
        &mut self.pipeline
    }
}

/// What the target is, as found on connecting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetInfo {
    /// `cluster_enabled:1`.
    pub cluster: bool,
    /// The server's version (`redis_version`, or `valkey_version` for Valkey).
    pub version: String,
    /// A Valkey server.
    pub valkey: bool,
    /// `proto-max-bulk-len`: the largest argument it accepts.
    pub max_bulk_len: u64,
    /// Databases a cluster serves (`cluster-databases` of Valkey 9; 1 for Redis), or
    /// `databases` of a standalone server.
    pub databases: u64,
    /// The masters (`host:port`).
    pub masters: Vec<String>,
}

impl TargetInfo {
    /// (major, minor) of the version.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut p = self.version.split('.').map(|x| x.parse().unwrap_or(0));
        (p.next().unwrap_or(0), p.next().unwrap_or(0))
    }
}

#[derive(Debug, Default)]
struct Shared {
    acked: HashMap<usize, u64>,
    counters: Counters,
    inflight: Vec<(String, usize, usize)>,
    pending: usize,
    error: Option<Error>,
}

enum Msg {
    Unit(Unit),
    Units(Vec<Unit>),
    Flush(oneshot::Sender<Result<()>>),
}

enum Ev {
    Connected(NodeId, u64, Box<dyn replica_net::Io>),
    ConnectFailed(NodeId, Error),
    Replies(NodeId, u64, Vec<Frame>),
    Closed(NodeId, u64, String),
    Topology(Result<Vec<Master>>),
}

/// A writer into a Redis, Valkey or Redis Cluster target: units in through a bounded channel,
/// acknowledged positions and counts out.
///
/// ```no_run
/// # fn f() -> redis_sink::Result<()> {
/// use redis_sink::{Route, Target, TargetConfig, Unit, key_slot};
/// let rt = tokio::runtime::Runtime::new().unwrap();
/// let target = rt.block_on(Target::connect(TargetConfig::from_url("redis://127.0.0.1:7000")?))?;
/// let set = resp_codec::Command::from_args(["SET", "k", "v"]);
/// target.blocking_send(Unit::new(set.raw().clone(), 1, Route::Slot(key_slot(b"k")), 0))?;
/// target.blocking_flush()?; // everything acknowledged
/// # Ok(()) }
/// ```
///
/// Clones share the writer: a clone is a handle to read counts from another thread.
#[derive(Debug, Clone)]
pub struct Target {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Mutex<Shared>>,
    info: TargetInfo,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

fn bulk_text(f: &Frame) -> String {
    match f {
        Frame::BulkString(b) | Frame::SimpleString(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Verbatim { text, .. } => String::from_utf8_lossy(text).into_owned(),
        _ => String::new(),
    }
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
}

async fn config_get(cfg: &ClientConfig, h: &str, p: u16, name: &str) -> Option<u64> {
    let r = replica_net::cluster::command(cfg, h, p, &["CONFIG", "GET", name])
        .await
        .ok()?;
    match r {
        Frame::Array(a) => a.get(1).map(bulk_text)?.parse().ok(),
        Frame::Map(m) => m.first().map(|(_, v)| bulk_text(v))?.parse().ok(),
        _ => None,
    }
}

fn net_err(e: replica_net::Error) -> Error {
    let kind = match e.kind() {
        replica_net::ErrorKind::Auth => Kind::Auth,
        replica_net::ErrorKind::Config | replica_net::ErrorKind::Tls => Kind::Config,
        _ => Kind::Io,
    };
    let msg = e.to_string();
    Error::with_source(kind, msg, e)
}

/// The masters and their slots, from any of `nodes`.
async fn topology(cfg: &ClientConfig, nodes: &[(String, u16)]) -> Result<Vec<Master>> {
    let mut last = Error::new(Kind::Io, "no node to ask for the topology");
    for (h, p) in nodes {
        let shards = match replica_net::cluster::command(cfg, h, *p, &["CLUSTER", "SHARDS"]).await {
            Ok(f) => parse_shards(&f),
            Err(e) if e.kind() == replica_net::ErrorKind::Auth => return Err(net_err(e)),
            // before 7.0: CLUSTER NODES
            Err(_) => {
                match replica_net::cluster::command(cfg, h, *p, &["CLUSTER", "NODES"]).await {
                    Ok(f) => parse_nodes(&bulk_text(&f)),
                    Err(e) => {
                        last = net_err(e);
                        continue;
                    }
                }
            }
        };
        match shards {
            Ok(s) if !s.is_empty() => {
                return Ok(s
                    .iter()
                    .filter_map(|s| {
                        let m = s.master()?;
                        Some(((m.host.clone(), m.port), s.slots.clone()))
                    })
                    .collect());
            }
            Ok(_) => last = Error::new(Kind::Protocol, format!("{h}:{p}: no shard has slots")),
            Err(e) => last = net_err(e),
        }
    }
    Err(last)
}

/// Opens a connection and authenticates.
async fn open(cfg: &ClientConfig, host: &str, port: u16) -> Result<Box<dyn replica_net::Io>> {
    let mut io = replica_net::connect_io(cfg, host, port)
        .await
        .map_err(net_err)?;
    if let Some(a) = cfg.replica().auth_ref() {
        let mut out = BytesMut::new();
        match &a.user {
            Some(u) => resp_codec::encode_command(
                [&b"AUTH"[..], u.as_bytes(), a.password.as_bytes()],
                &mut out,
            ),
            None => resp_codec::encode_command([&b"AUTH"[..], a.password.as_bytes()], &mut out),
        }
        io.write_all(&out)
            .await
            .map_err(|e| Error::with_source(Kind::Io, format!("{host}:{port}"), e))?;
        let mut dec = resp_codec::Decoder::new();
        let mut buf = BytesMut::with_capacity(256);
        let reply = loop {
            if let Some(f) = dec
                .decode(&mut buf)
                .map_err(|e| Error::with_source(Kind::Protocol, "bad AUTH reply", e))?
            {
                break f;
            }
            let n = io
                .read_buf(&mut buf)
                .await
                .map_err(|e| Error::with_source(Kind::Io, format!("{host}:{port}"), e))?;
            if n == 0 {
                return Err(Error::new(
                    Kind::Io,
                    format!("{host}:{port} closed the connection"),
                ));
            }
        };
        if let Frame::Error(e) | Frame::BulkError(e) = reply {
            return Err(Error::new(
                Kind::Auth,
                format!(
                    "{host}:{port} refused AUTH: {}",
                    String::from_utf8_lossy(&e)
                ),
            ));
        }
    }
    Ok(io)
}

impl Target {
    /// Connects: asks the node what it is (`INFO`, `CONFIG GET proto-max-bulk-len`), reads
    /// the topology of a cluster, and starts the driver on the current tokio runtime.
    pub async fn connect(cfg: TargetConfig) -> Result<Self> {
        let c = &cfg.client;
        let (h, p) = (c.host().to_owned(), c.port());
        let info = replica_net::cluster::command(c, &h, p, &["INFO"])
            .await
            .map_err(net_err)?;
        let info = bulk_text(&info);
        let valkey = info_field(&info, "server_name") == Some("valkey");
        let version = info_field(&info, "valkey_version")
            .filter(|_| valkey)
            .or_else(|| info_field(&info, "redis_version"))
            .unwrap_or("")
            .to_owned();
        let cluster = info_field(&info, "cluster_enabled") == Some("1");
        let max_bulk_len = config_get(c, &h, p, "proto-max-bulk-len")
            .await
            .unwrap_or(512 << 20);
        let databases = if cluster {
            config_get(c, &h, p, "cluster-databases").await.unwrap_or(1)
        } else {
            config_get(c, &h, p, "databases").await.unwrap_or(16)
        };
        let pipeline = if cluster {
            let t = topology(c, &[(h.clone(), p)]).await?;
            Pipeline::cluster(cfg.pipeline.clone(), &t)
        } else {
            Pipeline::standalone(cfg.pipeline.clone(), &h, p)
        };
        let masters = pipeline.inflight().into_iter().map(|(a, ..)| a).collect();
        let info = TargetInfo {
            cluster,
            version,
            valkey,
            max_bulk_len,
            databases,
            masters,
        };
        // messages of up to 128 units: what waits here stays small next to the window
        let (tx, rx) = mpsc::channel(16);
        let shared = Arc::new(Mutex::new(Shared::default()));
        tokio::spawn(run(cfg.client.clone(), pipeline, rx, shared.clone()));
        Ok(Self { tx, shared, info })
    }

    /// What the target is.
    pub fn info(&self) -> &TargetInfo {
        &self.info
    }

    fn error(&self) -> Error {
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.error.clone())
            .unwrap_or_else(|| Error::new(Kind::Io, "the writer stopped"))
    }

    /// Adds a unit, waiting while the window is full (from a thread outside the runtime).
    pub fn blocking_send(&self, unit: Unit) -> Result<()> {
        if let Some(e) = self.shared.lock().ok().and_then(|s| s.error.clone()) {
            return Err(e);
        }
        self.tx
            .blocking_send(Msg::Unit(unit))
            .map_err(|_| self.error())
    }

    /// Adds units in order, waiting while the window is full (from a thread outside the
    /// runtime): cheaper than one [`blocking_send`](Self::blocking_send) each.
    pub fn blocking_send_all(&self, units: Vec<Unit>) -> Result<()> {
        if units.is_empty() {
            return Ok(());
        }
        if let Some(e) = self.shared.lock().ok().and_then(|s| s.error.clone()) {
            return Err(e);
        }
        self.tx
            .blocking_send(Msg::Units(units))
            .map_err(|_| self.error())
    }

    /// Adds a unit, waiting while the window is full.
    pub async fn send(&self, unit: Unit) -> Result<()> {
        if let Some(e) = self.shared.lock().ok().and_then(|s| s.error.clone()) {
            return Err(e);
        }
        self.tx
            .send(Msg::Unit(unit))
            .await
            .map_err(|_| self.error())
    }

    /// Waits until everything sent so far is acknowledged (from a thread outside the runtime).
    pub fn blocking_flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .blocking_send(Msg::Flush(tx))
            .map_err(|_| self.error())?;
        rx.blocking_recv().map_err(|_| self.error())?
    }

    /// Waits until everything sent so far is acknowledged.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| self.error())?;
        rx.await.map_err(|_| self.error())?
    }

    /// The highest offset of source shard `shard` (0 for a single master) whose writes are
    /// all acknowledged.
    pub fn acked(&self, shard: usize) -> Option<u64> {
        self.shared.lock().ok()?.acked.get(&shard).copied()
    }

    /// Counts so far.
    pub fn counters(&self) -> Counters {
        self.shared
            .lock()
            .map(|s| s.counters.clone())
            .unwrap_or_default()
    }

    /// Unacknowledged commands and bytes per node.
    pub fn inflight(&self) -> Vec<(String, usize, usize)> {
        self.shared
            .lock()
            .map(|s| s.inflight.clone())
            .unwrap_or_default()
    }

    /// Units waiting to be sent or acknowledged.
    pub fn pending(&self) -> usize {
        self.shared.lock().map(|s| s.pending).unwrap_or(0)
    }

    /// The error that stopped the writer, if one did.
    pub fn failure(&self) -> Option<Error> {
        self.shared.lock().ok()?.error.clone()
    }
}

/// How often the shared counts and positions are refreshed while the pipeline is busy.
const PUBLISH: std::time::Duration = std::time::Duration::from_millis(10);

struct Conn {
    generation: u64,
    tx: mpsc::UnboundedSender<Bytes>,
}

fn spawn_connection(
    node: NodeId,
    generation: u64,
    io: Box<dyn replica_net::Io>,
    ev: mpsc::UnboundedSender<Ev>,
) -> mpsc::UnboundedSender<Bytes> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let ev2 = ev.clone();
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if let Err(e) = wr.write_all(&b).await {
                let _ = ev2.send(Ev::Closed(node, generation, format!("write: {e}")));
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut dec = resp_codec::Decoder::new();
        let mut buf = BytesMut::with_capacity(64 << 10);
        loop {
            // the replies of one read go together
            let mut frames = Vec::new();
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        let _ = ev.send(Ev::Replies(node, generation, frames));
                        let _ = ev.send(Ev::Closed(node, generation, format!("bad reply: {e}")));
                        return;
                    }
                }
            }
            if !frames.is_empty() && ev.send(Ev::Replies(node, generation, frames)).is_err() {
                return;
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) => {
                    let _ = ev.send(Ev::Closed(node, generation, "closed".into()));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ev.send(Ev::Closed(node, generation, format!("read: {e}")));
                    return;
                }
            }
        }
    });
    tx
}

/// The sink's [`metrics`], labelled with the target's address (the node given).
struct SinkMetrics {
    written: metrics::Counter,
    moved: metrics::Counter,
    ask: metrics::Counter,
    retries: metrics::Counter,
    resent: metrics::Counter,
    disconnects: metrics::Counter,
    refused: metrics::Counter,
    inflight: metrics::Gauge,
}

impl SinkMetrics {
    fn new(target: &str) -> Self {
        let t = target.to_owned();
        let redirects = |kind: &'static str| metrics::counter!("replicator_sink_redirects_total", "target" => t.clone(), "kind" => kind);
        Self {
            written: metrics::counter!("replicator_sink_written_total", "target" => t.clone()),
            moved: redirects("moved"),
            ask: redirects("ask"),
            retries: metrics::counter!("replicator_sink_retries_total", "target" => t.clone()),
            resent: metrics::counter!("replicator_sink_resent_total", "target" => t.clone()),
            disconnects: metrics::counter!("replicator_sink_disconnects_total", "target" => t.clone()),
            refused: metrics::counter!("replicator_sink_refused_total", "target" => t.clone()),
            inflight: metrics::gauge!("replicator_sink_inflight_commands", "target" => t),
        }
    }

    fn publish(&self, c: &Counters, inflight: &[(String, usize, usize)], before: &Counters) {
        if c.moved > before.moved || c.ask > before.ask {
            tracing::info!(
                moved = c.moved - before.moved,
                ask = c.ask - before.ask,
                "redirected by the cluster; the slots' unacknowledged commands go again in order"
            );
        }
        if c.retries > before.retries {
            tracing::info!(
                retries = c.retries - before.retries,
                "the target asked to retry"
            );
        }
        self.written.absolute(c.acked);
        self.moved.absolute(c.moved);
        self.ask.absolute(c.ask);
        self.retries.absolute(c.retries);
        self.resent.absolute(c.resent);
        self.disconnects.absolute(c.disconnects);
        self.refused
            .absolute(c.refused.values().map(|r| r.count).sum::<u64>() + c.conflicts_skipped.count);
        self.inflight
            .set(inflight.iter().map(|(_, n, _)| *n as f64).sum::<f64>());
    }
}

async fn run(
    client: ClientConfig,
    mut p: Pipeline,
    mut rx: mpsc::Receiver<Msg>,
    shared: Arc<Mutex<Shared>>,
) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Ev>();
    let mut conns: HashMap<NodeId, Conn> = HashMap::new();
    let mut generation = 0u64;
    let mut flushes: Vec<oneshot::Sender<Result<()>>> = Vec::new();
    let mut input_open = true;
    let mut published = Instant::now();
    let metrics = SinkMetrics::new(&format!("{}:{}", client.host(), client.port()));
    loop {
        let now = Instant::now();
        while let Some(a) = p.poll_action(now) {
            match a {
                Action::Connect { node, host, port } => {
                    let (cfg, ev) = (client.clone(), ev_tx.clone());
                    generation += 1;
                    let g = generation;
                    tokio::spawn(async move {
                        match open(&cfg, &host, port).await {
                            Ok(io) => {
                                let _ = ev.send(Ev::Connected(node, g, io));
                            }
                            Err(e) => {
                                let _ = ev.send(Ev::ConnectFailed(node, e));
                            }
                        }
                    });
                }
                Action::Refresh => {
                    let (cfg, ev) = (client.clone(), ev_tx.clone());
                    let mut nodes: Vec<(String, u16)> = p
                        .inflight()
                        .iter()
                        .filter_map(|(a, ..)| {
                            let (h, port) = a.rsplit_once(':')?;
                            Some((h.to_owned(), port.parse().ok()?))
                        })
                        .collect();
                    nodes.push((client.host().to_owned(), client.port()));
                    tokio::spawn(async move {
                        let _ = ev.send(Ev::Topology(topology(&cfg, &nodes).await));
                    });
                }
            }
        }
        while let Some((node, bytes)) = p.poll_transmit() {
            if let Some(c) = conns.get(&node) {
                let _ = c.tx.send(bytes);
            }
        }
        let failed = p.error().cloned();
        let idle = p.is_idle();
        // what others read: every 10 ms at most while busy (it costs allocations), at once
        // when idle, failed or waited for
        if idle || failed.is_some() || !flushes.is_empty() || published.elapsed() >= PUBLISH {
            published = Instant::now();
            if let Ok(mut s) = shared.lock() {
                for (shard, a) in p.positions() {
                    s.acked.insert(shard, a);
                }
                let before = std::mem::replace(&mut s.counters, p.counters().clone());
                s.inflight = p.inflight();
                metrics.publish(&s.counters, &s.inflight, &before);
                s.pending = p.pending();
                if failed.is_some() {
                    s.error.clone_from(&failed);
                }
            }
        }
        if let Some(e) = failed {
            tracing::error!(error = %e, "writing into the target stops");
            for f in flushes.drain(..) {
                let _ = f.send(Err(e.clone()));
            }
            return;
        }
        if p.is_idle() {
            for f in flushes.drain(..) {
                let _ = f.send(Ok(()));
            }
            if !input_open {
                return;
            }
        }
        // while busy, wake for the next publication too
        let wake = p
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .or_else(|| (!idle).then(|| tokio::time::Instant::from_std(published + PUBLISH)));
        tokio::select! {
            m = rx.recv(), if input_open && p.can_accept() => match m {
                Some(Msg::Unit(u)) => {
                    p.push(u);
                    // take what else is waiting without another turn of the loop
                    while p.can_accept() {
                        match rx.try_recv() {
                            Ok(Msg::Unit(u)) => p.push(u),
                            Ok(Msg::Units(us)) => us.into_iter().for_each(|u| p.push(u)),
                            Ok(Msg::Flush(f)) => { flushes.push(f); break; }
                            Err(_) => break,
                        }
                    }
                }
                Some(Msg::Units(us)) => us.into_iter().for_each(|u| p.push(u)),
                Some(Msg::Flush(f)) => flushes.push(f),
                None => input_open = false,
            },
            Some(ev) = ev_rx.recv() => {
                let mut next = Some(ev);
                while let Some(ev) = next.take() {
                    let now = Instant::now();
                    match ev {
                        Ev::Connected(node, g, io) => {
                            tracing::debug!(node, "connected to a target node");
                            let tx = spawn_connection(node, g, io, ev_tx.clone());
                            conns.insert(node, Conn { generation: g, tx });
                            p.handle_connected(node);
                        }
                        Ev::ConnectFailed(node, e) => {
                            if e.kind() == Kind::Auth || e.kind() == Kind::Config {
                                tracing::error!(node, error = %e, "the target refuses us");
                                if let Ok(mut s) = shared.lock() {
                                    s.error = Some(e.clone());
                                }
                                for f in flushes.drain(..) {
                                    let _ = f.send(Err(e.clone()));
                                }
                                return;
                            }
                            tracing::warn!(node, error = %e, "cannot connect to a target node; retrying");
                            p.handle_disconnected(node, now);
                        }
                        Ev::Replies(node, g, frames) => {
                            if conns.get(&node).is_some_and(|c| c.generation == g) {
                                for f in frames {
                                    // the error is kept by the core and reported above
                                    if p.handle_reply(node, f, now).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        Ev::Closed(node, g, why) => {
                            if conns.get(&node).is_some_and(|c| c.generation == g) {
                                tracing::warn!(node, %why, "connection to a target node lost; unacknowledged commands go again");
                                conns.remove(&node);
                                p.handle_disconnected(node, now);
                            }
                        }
                        Ev::Topology(Ok(t)) => {
                            tracing::info!(shards = t.len(), "target topology read");
                            p.handle_topology(&t);
                        }
                        Ev::Topology(Err(e)) => {
                            tracing::warn!(error = %e, "cannot read the target's topology; retrying");
                            p.handle_topology_failed();
                        }
                    }
                    next = ev_rx.try_recv().ok();
                }
            }
            () = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } }, if wake.is_some() => {
                p.handle_timeout(Instant::now());
            }
        }
    }
}
