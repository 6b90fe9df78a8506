//! [`Replicator`]: a live replica as a stream of events.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

#[cfg(feature = "tls-rustls")]
use replica_net::TlsConfig;
use replica_net::cluster::{ClusterClient, ClusterConfig, ShardEvent, ShardStatus, ShardsHandle};
use replica_net::sentinel::SentinelUrl;
use replica_net::{Auth, Client, ClientConfig, Connection, Status};
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::observe::{Monitor, Observer};

/// Options for a [`Replicator`], from a URL plus setters.
///
/// ```
/// let mut b = replicator::Replicator::builder("redis://repl:pw@10.0.0.5:6380").unwrap();
/// b.rdb_only(true).read_timeout(std::time::Duration::from_secs(30));
/// assert_eq!(b.config().port(), 6380);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    cfg: ClientConfig,
    capacity: usize,
    cluster: Option<bool>,
    prefer_replica: bool,
    /// Sentinels, the master's name and the Sentinels' credentials (`redis+sentinel://` URLs).
    sentinel: Option<SentinelUrl>,
    /// Saved positions (one per shard of a cluster).
    positions: Vec<(String, u64)>,
    /// Poll each source's `INFO replication` this often (for the lag).
    poll_master: Option<Duration>,
}

impl Builder {
    /// The client configuration being built.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The ACL user (`None`: the default user), keeping the password.
    pub fn user(&mut self, user: Option<&str>) -> &mut Self {
        if let Some(a) = self.cfg.replica_mut().auth_mut() {
            a.user = user.map(str::to_owned);
        }
        self
    }

    /// The user and password `AUTH` sends, if any.
    pub fn auth_user(&self) -> Option<Option<&str>> {
        self.cfg.replica().auth_ref().map(|a| a.user.as_deref())
    }

    /// AUTH with an ACL user (`None`: the default user) and a password.
    pub fn auth(&mut self, user: Option<&str>, password: &str) -> &mut Self {
        self.cfg.replica_mut().auth(Some(Auth {
            user: user.map(str::to_owned),
            password: password.to_owned(),
        }));
        self
    }

    /// TLS settings (a `rediss://` URL turns TLS on with the defaults).
    #[cfg(feature = "tls-rustls")]
    pub fn tls(&mut self, tls: TlsConfig) -> &mut Self {
        self.cfg.tls(Some(tls));
        self
    }

    /// True when TLS is on (a `rediss://` URL or [`tls`](Self::tls)).
    #[cfg(feature = "tls-rustls")]
    pub fn is_tls(&self) -> bool {
        self.cfg.is_tls()
    }

    /// How often to send `REPLCONF ACK` in the command stream (a replica sends one a second).
    pub fn ack_interval(&mut self, t: Duration) -> &mut Self {
        self.cfg.replica_mut().ack_interval(t);
        self
    }

    /// Give up after this many failed connections in a row (`None`: never).
    pub fn max_retries(&mut self, n: Option<u32>) -> &mut Self {
        self.cfg.max_retries(n);
        self
    }

    /// Stop after the RDB.
    pub fn rdb_only(&mut self, on: bool) -> &mut Self {
        self.cfg.replica_mut().rdb_only(on);
        self
    }

    /// Start with `PSYNC <replid> <offset+1>` (a position saved from
    /// [`SyncStart`](crate::SyncStart) and later command offsets). Call it once per shard for a
    /// cluster: each shard takes the position whose replid its node has.
    pub fn resume(&mut self, replid: &str, offset: u64) -> &mut Self {
        self.cfg.resume(Some((replid.to_owned(), offset)));
        self.positions.push((replid.to_owned(), offset));
        self
    }

    /// Longest silence from the master before reconnecting.
    pub fn read_timeout(&mut self, t: Duration) -> &mut Self {
        self.cfg.read_timeout(t);
        self
    }

    /// Longest wait for a connection.
    pub fn connect_timeout(&mut self, t: Duration) -> &mut Self {
        self.cfg.connect_timeout(t);
        self
    }

    /// RDB decoding settings (chunk sizes, limits, checksum verification).
    pub fn rdb_config(&mut self, c: rdb_format::Config) -> &mut Self {
        self.cfg.replica_mut().rdb(c);
        self
    }

    /// Events buffered before the replica stops reading from the master.
    pub fn channel_capacity(&mut self, n: usize) -> &mut Self {
        self.cfg.channel_capacity(n);
        self.capacity = n;
        self
    }

    /// Whether the URL names a Redis Cluster node: `None` (the default) asks the node
    /// (`INFO cluster`) when the connection starts; a cluster is replicated shard by shard.
    pub fn cluster(&mut self, mode: Option<bool>) -> &mut Self {
        self.cluster = mode;
        self
    }

    /// For a cluster: replicate each shard from an online replica rather than its master.
    pub fn prefer_replica(&mut self, on: bool) -> &mut Self {
        self.prefer_replica = on;
        self
    }

    /// How full syncs travel: over a second connection where the master offers it (the
    /// default: Redis 8's rdb channel, Valkey's dual channel), always over one, or over two
    /// or not at all. See [`Channels`](replica_net::Channels).
    pub fn sync_channels(&mut self, c: replica_net::Channels) -> &mut Self {
        self.cfg.replica_mut().channels(c);
        self
    }

    /// A two-channel full sync holds the writes made during the RDB transfer: up to `bytes`
    /// in memory (default 64 MiB), then in a temporary file in `dir` (default: the system's).
    pub fn hold(&mut self, bytes: usize, dir: Option<std::path::PathBuf>) -> &mut Self {
        self.cfg.hold(bytes, dir);
        self
    }

    /// Reads each source's offset from its master (`INFO replication` on a connection of its
    /// own, with the same credentials and TLS) this often, for the lag in
    /// [`Replicator::monitor`] and its metrics. Off by default.
    pub fn poll_master(&mut self, every: Option<Duration>) -> &mut Self {
        self.poll_master = every.map(|d| d.max(Duration::from_millis(100)));
        self
    }

    /// The `source` label of a single master (`host:port`, or a Sentinel master's name).
    fn source_label(&self) -> String {
        match &self.sentinel {
            Some(u) => u.name.clone(),
            None => format!("{}:{}", self.cfg.host(), self.cfg.port()),
        }
    }

    /// The replica and its [`Connection`], for the caller to run (`tokio::spawn`); needs no
    /// runtime until the connection is polled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (r, connection) = replicator::Replicator::builder("redis://127.0.0.1:1")
    ///     .unwrap()
    ///     .connect();
    /// tokio::spawn(connection);
    /// r.shutdown().await;
    /// # }
    /// ```
    pub fn connect(&self) -> (Replicator, Connection) {
        let (tx, rx) = mpsc::channel(self.capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let handles = Arc::new(Mutex::new(Handles::default()));
        let monitor = Monitor::new(self.source_label());
        if let Ok(mut h) = handles.lock() {
            h.monitor = monitor.clone();
        }
        // the work: finding out whether the node is a cluster's, replicating the master or every
        // shard, following failovers
        let conn = Connection::new(run(self.clone(), tx, stop_rx, handles.clone()));
        (
            Replicator {
                rx,
                stop: Arc::new(stop),
                handles,
                task: None,
            },
            conn,
        )
    }

    /// Starts replicating, the connection spawned on the current tokio runtime (panics
    /// outside one).
    pub fn start(&self) -> Replicator {
        let (mut r, conn) = self.connect();
        r.task = Some(tokio::spawn(conn));
        r
    }
}

#[derive(Debug, Default)]
struct Handles {
    single: Option<replica_net::StatusHandle>,
    /// Where a single master's client connects (it moves with a Sentinel's failovers).
    endpoint: Option<replica_net::Endpoint>,
    shards: Option<ShardsHandle>,
    monitor: Monitor,
}

/// A client whose events are forwarded: a master's or a cluster's.
trait Recv {
    type Ev;
    fn recv(&mut self) -> impl Future<Output = Option<Self::Ev>> + Send + '_;
}

impl Recv for Client {
    type Ev = replica_net::Result<replica_net::Event>;
    fn recv(&mut self) -> impl Future<Output = Option<Self::Ev>> + Send + '_ {
        Self::recv(self)
    }
}

impl Recv for ClusterClient {
    type Ev = replica_net::Result<ShardEvent>;
    fn recv(&mut self) -> impl Future<Output = Option<Self::Ev>> + Send + '_ {
        Self::recv(self)
    }
}

/// Forwards one client's events (converted by `convert`, counted in `monitor` under the shard
/// `shard_of` names) until it ends; asks it to stop (through `stop_inner`) when the replicator
/// is stopped or dropped.
async fn forward<C: Recv>(
    client: &mut C,
    shard_of: impl Fn(&C::Ev) -> Option<usize>,
    convert: impl Fn(C::Ev) -> Option<Result<Event>>,
    stop_inner: impl Fn(),
    tx: &mpsc::Sender<Result<Event>>,
    stop: &mut watch::Receiver<bool>,
    monitor: &Monitor,
) {
    let mut observer = Observer::new(monitor.clone());
    let mut stopping = *stop.borrow();
    if stopping {
        stop_inner();
    }
    loop {
        let got = if stopping {
            client.recv().await
        } else {
            tokio::select! {
                got = client.recv() => got,
                _ = stop.changed() => {
                    stopping = true;
                    stop_inner();
                    continue;
                }
            }
        };
        let Some(got) = got else { break };
        let shard = shard_of(&got);
        if let Some(ev) = convert(got) {
            observer.observe(shard, &ev);
            if tx.send(ev).await.is_err() && !stopping {
                stopping = true;
                stop_inner();
            }
        }
    }
    observer.ended();
}

async fn run(
    b: Builder,
    tx: mpsc::Sender<Result<Event>>,
    mut stop: watch::Receiver<bool>,
    handles: Arc<Mutex<Handles>>,
) {
    let monitor = handles
        .lock()
        .map(|h| h.monitor.clone())
        .unwrap_or_default();
    let cluster = match b.cluster {
        Some(m) => m,
        None => {
            let (host, port) = (b.cfg.host().to_owned(), b.cfg.port());
            tokio::select! {
                // a node that cannot be asked (down, refusing the credentials) is replicated as
                // a master: its client retries and reports as it always does
                r = replica_net::cluster::is_cluster(&b.cfg, &host, port) => r.unwrap_or(false),
                _ = stop.changed() => return,
            }
        }
    };
    let poll = b.poll_master.map(|every| {
        monitor.set_polled(every);
        poll_masters(
            b.cfg.clone(),
            handles.clone(),
            monitor.clone(),
            every,
            stop.clone(),
        )
    });
    let poll = async move {
        if let Some(p) = poll {
            p.await;
        }
    };
    if cluster {
        let mut cfg = ClusterConfig::new(b.cfg.clone());
        cfg.prefer_replica(b.prefer_replica)
            .resume(b.positions.clone());
        let (mut client, conn) = ClusterClient::connect(cfg);
        let stopper = client.stopper();
        if let Ok(mut h) = handles.lock() {
            h.shards = Some(client.shards_handle());
        }
        let fwd = forward(
            &mut client,
            |r: &replica_net::Result<ShardEvent>| r.as_ref().ok().map(|ev| ev.shard),
            |r: replica_net::Result<ShardEvent>| match r {
                Ok(ev) => Event::from_shard(ev).map(Ok),
                Err(e) => Some(Err(Error::from(e))),
            },
            || stopper.stop(),
            &tx,
            &mut stop,
            &monitor,
        );
        tokio::join!(conn, fwd, poll);
    } else {
        let (mut client, conn) = match &b.sentinel {
            Some(u) => replica_net::sentinel::connect_with(
                b.cfg.clone(),
                u.sentinels.clone(),
                u.name.clone(),
                u.sentinel_auth.clone(),
                None,
            ),
            None => Client::connect(b.cfg.clone()),
        };
        let stopper = client.stopper();
        if let Ok(mut h) = handles.lock() {
            h.single = Some(client.status_handle());
            h.endpoint = Some(client.endpoint());
        }
        let fwd = forward(
            &mut client,
            |_| None,
            convert,
            || stopper.stop(),
            &tx,
            &mut stop,
            &monitor,
        );
        tokio::join!(conn, fwd, poll);
    }
}

/// Reads every source's `master_repl_offset` each `every` until stopped: a single master at
/// its client's endpoint, a cluster's shards at the nodes they are replicated from.
async fn poll_masters(
    cfg: ClientConfig,
    handles: Arc<Mutex<Handles>>,
    monitor: Monitor,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        // (shard, host, port) of every source seen so far
        let mut nodes: Vec<(Option<usize>, String, u16)> = Vec::new();
        if let Ok(h) = handles.lock() {
            if let Some(e) = &h.endpoint {
                if monitor.len() > 0 {
                    let (host, port) = e.get();
                    nodes.push((None, host, port));
                }
            }
            if let Some(sh) = &h.shards {
                for (i, s) in sh.get().iter().enumerate() {
                    if s.retired {
                        monitor.retire(i);
                        continue;
                    }
                    if let Some((host, port)) = s
                        .addr
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
                    {
                        nodes.push((Some(i), host, port));
                    }
                }
            }
        }
        let polls: Vec<_> = nodes
            .into_iter()
            .map(|(shard, host, port)| {
                let (cfg, monitor) = (cfg.clone(), monitor.clone());
                tokio::spawn(async move {
                    let ask =
                        replica_net::cluster::command(&cfg, &host, port, &["INFO", "replication"]);
                    let got = match tokio::time::timeout(every.max(Duration::from_secs(1)), ask)
                        .await
                    {
                        Err(_) => Err((
                            format!("INFO replication on {host}:{port}: no reply"),
                            false,
                        )),
                        Ok(Err(e)) => {
                            let why = e.to_string();
                            let refused = why.contains("NOPERM") || why.contains("unknown command");
                            Err((format!("INFO replication on {host}:{port}: {why}"), refused))
                        }
                        Ok(Ok(f)) => {
                            let text = match &f {
                                resp_codec::Frame::BulkString(b)
                                | resp_codec::Frame::Verbatim { text: b, .. } => {
                                    String::from_utf8_lossy(b).into_owned()
                                }
                                _ => String::new(),
                            };
                            crate::observe::master_repl_offset(&text).ok_or_else(|| {
                                (
                                    format!(
                                        "INFO replication on {host}:{port}: no master_repl_offset"
                                    ),
                                    false,
                                )
                            })
                        }
                    };
                    monitor.polled(shard, got);
                })
            })
            .collect();
        for p in polls {
            let _ = p.await;
        }
    }
}

/// A replica of a live Redis or Valkey master, or of every shard of a Redis Cluster.
///
/// ```no_run
/// # async fn f() -> Result<(), replicator::Error> {
/// use replicator::{Event, Replicator};
///
/// let mut r = Replicator::builder("redis://127.0.0.1:6379")?.start();
/// while let Some(ev) = r.next_event().await {
///     match ev? {
///         Event::SyncStart(s) => println!("{} sync from {} at {}", if s.full { "full" } else { "partial" }, s.replid, s.offset),
///         Event::Rdb(replicator::Item::Key(k)) => println!("key {:?}", k.head.key),
///         Event::Command(c) => println!("db {} offset {:?}: {:?}", c.db, c.offset, c.cmd.arg(0)),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Replicator {
    rx: mpsc::Receiver<Result<Event>>,
    stop: Arc<watch::Sender<bool>>,
    handles: Arc<Mutex<Handles>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replicator {
    /// Options from a `redis://[user:password@]host:port` or `rediss://` URL (of a master, or
    /// of any node of a cluster).
    ///
    /// `redis+sentinel://[user:password@]host1:port1,host2:port2/master-name` (or
    /// `rediss+sentinel://`) finds the master through Sentinels and follows its failovers;
    /// `?sentinel_password=…[&sentinel_user=…]` for Sentinels with `requirepass`.
    ///
    /// ```
    /// let b = replicator::Replicator::builder("redis+sentinel://s1:26379,s2:26380/mymaster");
    /// assert!(b.is_ok());
    /// ```
    pub fn builder(url: &str) -> Result<Builder> {
        if SentinelUrl::is_sentinel(url) {
            let u = SentinelUrl::parse(url)?;
            let mut cfg = ClientConfig::new("resolved-by-sentinel", 0);
            if let Some(password) = u.password.clone() {
                cfg.replica_mut().auth(Some(Auth {
                    user: u.user.clone(),
                    password,
                }));
            }
            #[cfg(feature = "tls-rustls")]
            if u.tls {
                cfg.tls(Some(TlsConfig::default()));
            }
            return Ok(Builder {
                capacity: 1024,
                cfg,
                cluster: Some(false),
                prefer_replica: false,
                sentinel: Some(u),
                positions: Vec::new(),
                poll_master: None,
            });
        }
        let cfg = ClientConfig::from_url(url)?;
        Ok(Builder {
            capacity: 1024,
            cfg,
            cluster: None,
            prefer_replica: false,
            sentinel: None,
            positions: Vec::new(),
            poll_master: None,
        })
    }

    /// The events, as a `futures::Stream`: sync start (full or partial), RDB items, sync end,
    /// then commands with their db and offset; disconnections in between. From a cluster, each
    /// shard's events in that shard's order (sync starts and commands name their shard; a big
    /// key's chunks come together). A fatal error comes as `Err` and ends the stream.
    pub fn events(&mut self) -> Events<'_> {
        Events(&mut self.rx)
    }

    /// The next event (the same as polling [`events`](Self::events)).
    pub async fn next_event(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }

    /// The next event, waiting without a runtime (for a consumer on its own thread).
    pub fn blocking_next_event(&mut self) -> Option<Result<Event>> {
        self.rx.blocking_recv()
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<Result<Event>> {
        self.rx.try_recv().ok()
    }

    /// A handle that stops the replica from another task or thread (a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// A handle that reads the status from another thread.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(self.handles.clone())
    }

    /// What the replica of a single master is doing (the default before it started, and for a
    /// cluster: see [`shards`](Self::shards)).
    pub fn status(&self) -> Status {
        self.status_handle().get()
    }

    /// What each shard's replica is doing (empty unless the source is a cluster).
    pub fn shards(&self) -> Vec<ShardStatus> {
        self.status_handle().shards()
    }

    /// Each source's phase, offsets, lag and counts, and readiness; readable from any thread.
    pub fn monitor(&self) -> Monitor {
        self.handles
            .lock()
            .map(|h| h.monitor.clone())
            .unwrap_or_default()
    }

    /// Sends a last `REPLCONF ACK` (on every shard) and closes.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // let the connection finish its last writes even if the channel is full
        self.rx.close();
        while self.rx.recv().await.is_some() {}
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Stops a [`Replicator`] from another task or thread.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Asks the replica to stop: a last `REPLCONF ACK`, then the events end.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// Reads a [`Replicator`]'s status from anywhere.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<Mutex<Handles>>);

impl StatusHandle {
    /// The replica's status (single master).
    pub fn get(&self) -> Status {
        self.0
            .lock()
            .ok()
            .and_then(|h| h.single.as_ref().map(replica_net::StatusHandle::get))
            .unwrap_or_default()
    }

    /// Each shard's status (cluster).
    pub fn shards(&self) -> Vec<ShardStatus> {
        self.0
            .lock()
            .ok()
            .and_then(|h| h.shards.as_ref().map(ShardsHandle::get))
            .unwrap_or_default()
    }
}

/// The event stream of a [`Replicator`].
#[derive(Debug)]
pub struct Events<'a>(&'a mut mpsc::Receiver<Result<Event>>);

impl futures_core::Stream for Events<'_> {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The facade's event for the client's (`None`: a kind this facade does not know, skipped).
fn convert(r: replica_net::Result<replica_net::Event>) -> Option<Result<Event>> {
    match r {
        Ok(ev) => Event::from_net(ev).map(Ok),
        Err(e) => Some(Err(Error::from(e))),
    }
}
