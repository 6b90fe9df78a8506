//! The tokio driver: a socket (TCP or TLS) around the protocol core, with timeouts,
//! reconnects and a bounded event channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Kind, Result};
use crate::proto::{Auth, Event, Replica, ReplicaConfig};
#[cfg(feature = "tls-rustls")]
use crate::tls::TlsConfig;
use crate::url::Url;

/// Everything the client needs; change it with the setters.
///
/// ```
/// use std::time::Duration;
/// let mut cfg = replica_net::ClientConfig::from_url("redis://10.0.0.5:6380").unwrap();
/// cfg.read_timeout(Duration::from_secs(30)).max_retries(Some(5));
/// cfg.replica_mut().rdb_only(true);
/// assert_eq!((cfg.host(), cfg.port()), ("10.0.0.5", 6380));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Master host.
    pub(crate) host: String,
    /// Master port.
    pub(crate) port: u16,
    /// TLS, when set.
    #[cfg(feature = "tls-rustls")]
    pub(crate) tls: Option<TlsConfig>,
    /// The protocol core's settings (AUTH, REPLCONF values, RDB decoding, rdb-only).
    pub(crate) replica: ReplicaConfig,
    /// Longest wait for a connection (TCP and TLS handshake).
    pub(crate) connect_timeout: Duration,
    /// Longest silence from the master before the link is taken as dead, measured from the
    /// last byte received (Redis' own `repl-timeout` is 60 s; a master PINGs every
    /// `repl-ping-replica-period`, 10 s). Overrides `replica.read_timeout`.
    pub(crate) read_timeout: Duration,
    /// First reconnect delay; doubled after each failure up to `backoff_max`.
    pub(crate) backoff_min: Duration,
    /// Longest reconnect delay.
    pub(crate) backoff_max: Duration,
    /// Give up after this many failed connections in a row (`None`: never).
    pub(crate) max_retries: Option<u32>,
    /// Events buffered for a slow consumer before the client stops reading the socket.
    pub(crate) channel_capacity: usize,
    /// Start with `PSYNC <replid> <offset+1>` (resume after a restart of your program).
    pub(crate) resume: Option<(String, u64)>,
    /// A two-channel full sync holds the stream that arrives during the RDB: this many bytes
    /// in memory, the rest in a temporary file.
    pub(crate) hold_memory: usize,
    /// Where that file goes (default: the system's temporary directory).
    pub(crate) hold_dir: Option<std::path::PathBuf>,
}

impl ClientConfig {
    /// A configuration for `host:port` with the defaults.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            #[cfg(feature = "tls-rustls")]
            tls: None,
            replica: ReplicaConfig::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_retries: None,
            channel_capacity: 1024,
            resume: None,
            hold_memory: 64 << 20,
            hold_dir: None,
        }
    }

    /// The master's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The master's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The protocol core's settings.
    pub fn replica(&self) -> &ReplicaConfig {
        &self.replica
    }

    /// The protocol core's settings (AUTH, REPLCONF values, RDB decoding, rdb-only), to change.
    pub fn replica_mut(&mut self) -> &mut ReplicaConfig {
        &mut self.replica
    }

    /// TLS, when set.
    #[cfg(feature = "tls-rustls")]
    pub fn tls(&mut self, tls: Option<TlsConfig>) -> &mut Self {
        self.tls = tls;
        self
    }

    /// True when TLS is on.
    #[cfg(feature = "tls-rustls")]
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Longest wait for a connection (TCP and TLS handshake).
    pub fn connect_timeout(&mut self, t: Duration) -> &mut Self {
        self.connect_timeout = t;
        self
    }

    /// Longest silence from the master before the link is taken as dead, from the last byte
    /// received (default 60 s, Redis' `repl-timeout`).
    pub fn read_timeout(&mut self, t: Duration) -> &mut Self {
        self.read_timeout = t;
        self
    }

    /// Reconnect delays: the first, doubled after each failure up to the longest.
    pub fn backoff(&mut self, min: Duration, max: Duration) -> &mut Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Give up after this many failed connections in a row (`None`: never).
    pub fn max_retries(&mut self, n: Option<u32>) -> &mut Self {
        self.max_retries = n;
        self
    }

    /// Events buffered for a slow consumer before the client stops reading the socket.
    pub fn channel_capacity(&mut self, n: usize) -> &mut Self {
        self.channel_capacity = n;
        self
    }

    /// Start with `PSYNC <replid> <offset+1>` (resume after a restart of your program).
    pub fn resume(&mut self, at: Option<(String, u64)>) -> &mut Self {
        self.resume = at;
        self
    }

    /// A two-channel full sync holds the writes made during the RDB transfer: up to `bytes`
    /// in memory (default 64 MiB), beyond that in a temporary file in `dir` (default: the
    /// system's), deleted when the sync ends.
    pub fn hold(&mut self, bytes: usize, dir: Option<std::path::PathBuf>) -> &mut Self {
        self.hold_memory = bytes;
        self.hold_dir = dir;
        self
    }

    /// A configuration from a `redis://` or `rediss://` URL (credentials become AUTH).
    pub fn from_url(url: &str) -> Result<Self> {
        let u = Url::parse(url)?;
        let mut c = Self::new(u.host, u.port);
        if let Some(password) = u.password {
            c.replica.auth = Some(Auth {
                user: u.user,
                password,
            });
        }
        if u.tls {
            #[cfg(feature = "tls-rustls")]
            {
                c.tls = Some(TlsConfig::default());
            }
            #[cfg(not(feature = "tls-rustls"))]
            return Err(Error::new(
                Kind::Config,
                "rediss:// needs the tls-rustls feature",
            ));
        }
        Ok(c)
    }
}

/// Where a client connects: a handle shared with whoever follows the topology (a cluster's
/// shards, a Sentinel's master). [`set`](Self::set) points the client at another node: a
/// connection to the old one is dropped at once, and the next one, made there, continues with
/// `PSYNC` from the position reached.
///
/// ```
/// let e = replica_net::Endpoint::new("10.0.0.1", 6379);
/// e.set("10.0.0.2", 6380);
/// assert_eq!(e.get(), ("10.0.0.2".to_owned(), 6380));
/// ```
#[derive(Debug, Clone)]
pub struct Endpoint(Arc<EndpointInner>);

#[derive(Debug)]
struct EndpointInner {
    addr: Mutex<(String, u16)>,
    generation: std::sync::atomic::AtomicU64,
    moved: tokio::sync::Notify,
    lost: tokio::sync::Notify,
}

impl Endpoint {
    /// An endpoint at `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self(Arc::new(EndpointInner {
            addr: Mutex::new((host.into(), port)),
            generation: std::sync::atomic::AtomicU64::new(0),
            moved: tokio::sync::Notify::new(),
            lost: tokio::sync::Notify::new(),
        }))
    }

    /// The node connections go to.
    pub fn get(&self) -> (String, u16) {
        self.0
            .addr
            .lock()
            .map(|a| a.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Points the client at `host:port` (nothing happens when it is there already).
    pub fn set(&self, host: impl Into<String>, port: u16) {
        let host = host.into();
        {
            let mut a = self.0.addr.lock().unwrap_or_else(|e| e.into_inner());
            if a.0 == host && a.1 == port {
                return;
            }
            *a = (host, port);
        }
        self.0
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }

    /// Completes when the client's link to the node drops next (for a watcher that should
    /// check the topology before the client reconnects).
    pub async fn lost(&self) {
        self.0.lost.notified().await;
    }

    fn generation(&self) -> u64 {
        self.0.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What the client is doing, for status lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The protocol phase (`handshake`, `RDB transfer`, `streaming`, …).
    pub phase: &'static str,
    /// RDB bytes received in the current transfer.
    pub rdb_bytes: u64,
    /// Replication offset of what was delivered.
    pub offset: Option<u64>,
    /// Connections made.
    pub connections: u64,
    /// Time of the last bytes from the master.
    pub last_input: Option<Instant>,
    /// The master's replication id, once a sync began.
    pub replid: Option<String>,
}

/// Reads a client's [`Status`] from anywhere.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<Mutex<Status>>);

impl StatusHandle {
    /// The current status.
    pub fn get(&self) -> Status {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Stops a client from anywhere (see [`Client::stop`]).
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// True once a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Asks the client to stop.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// A connection's byte stream: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A replica of a live master. Events arrive through [`recv`](Self::recv) or the
/// `futures_core::Stream` implementation; fatal errors arrive as `Err` and end the stream.
///
/// When the consumer is slower than the master, the channel fills and the client stops reading
/// the socket rather than buffering without bound. The master then buffers for us until its
/// `client-output-buffer-limit replica` drops the link; the client reconnects and continues
/// with PSYNC (or, if the backlog was overrun, a full resync, signalled by
/// [`SyncStart::resync`](crate::SyncStart::resync)).
///
/// ```no_run
/// # async fn f() -> replica_net::Result<()> {
/// use replica_net::{Client, ClientConfig, Event};
///
/// let mut client = Client::start(ClientConfig::from_url("redis://127.0.0.1:6379")?);
/// while let Some(ev) = client.recv().await {
///     match ev? {
///         Event::Command(c) => println!("db {} {:?}", c.db, c.cmd.arg(0)),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    rx: mpsc::Receiver<Result<Event>>,
    stop: Arc<watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
    status: Arc<Mutex<Status>>,
    endpoint: Endpoint,
}

/// The work of a [`Client`]: connecting, the protocol, reconnecting. Nothing happens until it
/// is polled: spawn it on a runtime (`tokio::spawn(connection)`), as tokio-postgres hands back
/// its `Connection`. It ends when the client stops, is dropped or fails for good.
#[must_use = "the connection does nothing unless spawned or awaited"]
pub struct Connection(pub(crate) Pin<Box<dyn Future<Output = ()> + Send>>);

impl Connection {
    /// A connection running `work` (for a layer above that drives clients its own way, as the
    /// facade's cluster-or-master detection does).
    pub fn new(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Box::pin(work))
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Client {
    /// The client and its [`Connection`], which the caller runs (`tokio::spawn`, or `select!`
    /// beside other work). Needs no runtime until the connection is polled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cfg = replica_net::ClientConfig::new("127.0.0.1", 1);
    /// let (mut client, connection) = replica_net::Client::connect(cfg);
    /// tokio::spawn(connection);
    /// client.stop();
    /// # }
    /// ```
    pub fn connect(cfg: ClientConfig) -> (Self, Connection) {
        let (client, conn, _) = Self::connect_reporting(cfg);
        (client, conn)
    }

    /// [`connect`](Self::connect), and a sender into the client's event stream for a layer
    /// above (the Sentinel resolver) to report what it finds before the connection runs.
    pub(crate) fn connect_reporting(
        cfg: ClientConfig,
    ) -> (Self, Connection, mpsc::Sender<Result<Event>>) {
        let (tx, rx) = mpsc::channel(cfg.channel_capacity.max(1));
        let reporter = tx.clone();
        let (stop, stop_rx) = watch::channel(false);
        let status = Arc::new(Mutex::new(Status::default()));
        let endpoint = Endpoint::new(cfg.host.clone(), cfg.port);
        let conn = Connection(Box::pin(run(
            cfg,
            tx,
            stop_rx,
            status.clone(),
            endpoint.clone(),
        )));
        let client = Self {
            rx,
            stop: Arc::new(stop),
            task: None,
            status,
            endpoint,
        };
        (client, conn, reporter)
    }

    /// Starts replicating with [`connect`](Self::connect), the connection spawned on the
    /// current tokio runtime (panics outside one, as `tokio::spawn` does).
    pub fn start(cfg: ClientConfig) -> Self {
        let (mut client, conn) = Self::connect(cfg);
        client.task = Some(tokio::spawn(conn));
        client
    }

    /// The next event; `None` when the client has stopped.
    pub async fn recv(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }

    /// The next event, waiting without a runtime (for a consumer on its own thread).
    pub fn blocking_recv(&mut self) -> Option<Result<Event>> {
        self.rx.blocking_recv()
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Event>> {
        self.rx.try_recv().ok()
    }

    /// What the client is doing.
    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The handle to the node the client connects to (to follow a failover).
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// A handle that reads the status from another thread.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(self.status.clone())
    }

    /// A handle that stops the client from another task or thread (a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Asks the client to stop: it sends a last `REPLCONF ACK` and closes. Events already
    /// queued can still be received.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops and waits until the connection is closed.
    pub async fn shutdown(mut self) {
        self.stop();
        // let the task finish its last writes even if the channel is full
        self.rx.close();
        while self.rx.recv().await.is_some() {}
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // a connection the caller spawned ends at its next step
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl futures_core::Stream for Client {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    let kind = if e.kind() == std::io::ErrorKind::TimedOut {
        Kind::Timeout
    } else {
        Kind::Io
    };
    Error::with_source(kind, what.to_owned(), e)
}

/// A connection to `host:port` as `cfg` says: TCP with its connect timeout, then TLS when
/// configured (no AUTH: the caller speaks first). For other clients of the same servers, as
/// the write side (`redis-sink`) is.
pub async fn connect_io(cfg: &ClientConfig, host: &str, port: u16) -> Result<Box<dyn Io>> {
    connect(cfg, host, port).await.map(|(io, _)| io)
}

/// A connection (TCP, then TLS when configured) to `host:port` and the local port.
pub(crate) async fn connect(
    cfg: &ClientConfig,
    host: &str,
    port: u16,
) -> Result<(Box<dyn Io>, u16)> {
    let tcp = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            Error::new(
                Kind::Timeout,
                format!("connecting to {host}:{port} timed out"),
            )
        })?
        .map_err(|e| io_err(&format!("cannot connect to {host}:{port}"), e))?;
    let _ = tcp.set_nodelay(true);
    let local_port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    #[cfg(feature = "tls-rustls")]
    if let Some(t) = &cfg.tls {
        let config = crate::tls::client_config(t)?;
        let name = crate::tls::server_name(t, host)?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = tokio::time::timeout(cfg.connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::new(Kind::Timeout, "TLS handshake timed out"))?
            .map_err(|e| Error::with_source(Kind::Tls, "TLS handshake failed", e))?;
        return Ok((Box::new(stream), local_port));
    }
    Ok((Box::new(tcp), local_port))
}

enum End {
    /// Asked to stop, or nobody listens any more.
    Stopped,
    /// An rdb-only replica has everything.
    Done,
}

async fn deliver(core: &mut Replica, tx: &mpsc::Sender<Result<Event>>) -> bool {
    while let Some(ev) = core.poll_event() {
        if tx.send(Ok(ev)).await.is_err() {
            return false;
        }
    }
    true
}

fn update(status: &Mutex<Status>, core: &Replica, input: bool) {
    if let Ok(mut s) = status.lock() {
        s.phase = core.phase();
        s.rdb_bytes = core.rdb_bytes();
        s.offset = core.position().map(|p| p.1);
        if let Some((id, _)) = core.position() {
            if s.replid.as_deref() != Some(id) {
                s.replid = Some(id.to_owned());
            }
        }
        if input {
            s.last_input = Some(Instant::now());
        }
    }
}

/// The stream a two-channel sync holds during its RDB: in memory up to a limit, then in a
/// temporary file (deleted on drop). Read back in order while more is added at the end.
struct Spool {
    mem: std::collections::VecDeque<bytes::BytesMut>,
    mem_len: usize,
    limit: usize,
    dir: Option<std::path::PathBuf>,
    /// Once memory overflowed, everything goes through the file: its path, the file, where
    /// reading is and where its end is.
    file: Option<(std::path::PathBuf, std::fs::File)>,
    read_at: u64,
    file_len: u64,
}

impl Spool {
    fn new(cfg: &ClientConfig) -> Self {
        Self {
            mem: std::collections::VecDeque::new(),
            mem_len: 0,
            limit: cfg.hold_memory,
            dir: cfg.hold_dir.clone(),
            file: None,
            read_at: 0,
            file_len: 0,
        }
    }

    fn push(&mut self, b: bytes::BytesMut) -> Result<()> {
        // what memory holds is counted by its length: keep no spare capacity beside it
        let b = if b.capacity() > b.len() + b.len() / 4 {
            bytes::BytesMut::from(&b[..])
        } else {
            b
        };
        if self.file.is_none() && self.mem_len + b.len() <= self.limit {
            self.mem_len += b.len();
            self.mem.push_back(b);
            return Ok(());
        }
        if self.file.is_none() {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
            let path = dir.join(format!(
                "replicator-held-{}-{}.resp",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_err("cannot create the held stream's file", e))?;
            tracing::info!(path = %path.display(), held = self.mem_len, "the held stream outgrew memory: spilling to a file");
            self.file = Some((path, f));
            // what memory holds is older: it goes first
            for m in std::mem::take(&mut self.mem) {
                self.append(&m)?;
            }
            self.mem_len = 0;
        }
        self.append(&b)
    }

    fn append(&mut self, b: &[u8]) -> Result<()> {
        use std::io::{Seek as _, Write as _};
        if let Some((_, f)) = &mut self.file {
            let err = |e| io_err("cannot write the held stream to its file", e);
            f.seek(std::io::SeekFrom::Start(self.file_len))
                .map_err(err)?;
            f.write_all(b).map_err(err)?;
            self.file_len += b.len() as u64;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.file_len - self.read_at + self.mem_len as u64
    }

    /// The oldest bytes not yet read back (`None`: nothing is held).
    fn next_chunk(&mut self) -> Result<Option<bytes::BytesMut>> {
        use std::io::{Read as _, Seek as _};
        if let Some((_, f)) = &mut self.file {
            if self.read_at < self.file_len {
                let err = |e| io_err("cannot read the held stream's file", e);
                let want = (self.file_len - self.read_at).min(1 << 20) as usize;
                let mut chunk = bytes::BytesMut::zeroed(want);
                f.seek(std::io::SeekFrom::Start(self.read_at))
                    .map_err(err)?;
                f.read_exact(&mut chunk).map_err(err)?;
                self.read_at += want as u64;
                return Ok(Some(chunk));
            }
            return Ok(None);
        }
        Ok(self.mem.pop_front().inspect(|m| self.mem_len -= m.len()))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some((path, _)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Reads from the RDB channel when there is one.
async fn read_opt(
    rd: &mut Option<tokio::io::ReadHalf<Box<dyn Io>>>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match rd {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    core: &mut Replica,
    io: Box<dyn Io>,
    tx: &mpsc::Sender<Result<Event>>,
    stop: &mut watch::Receiver<bool>,
    status: &Mutex<Status>,
    endpoint: &Endpoint,
    cfg: &ClientConfig,
    (host, port): (&str, u16),
) -> Result<End> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = vec![0u8; 256 << 10];
    let mut rbuf = vec![0u8; 256 << 10];
    let generation = endpoint.generation();
    // a two-channel sync's RDB channel, and the stream held meanwhile
    let mut rdb_rd: Option<tokio::io::ReadHalf<Box<dyn Io>>> = None;
    let mut rdb_wr: Option<tokio::io::WriteHalf<Box<dyn Io>>> = None;
    let mut spool = Spool::new(cfg);
    loop {
        if core.poll_rdb_channel() {
            tracing::info!(master = %format_args!("{host}:{port}"), "two-channel full sync: opening the RDB channel");
            let (io, _) = connect(cfg, host, port).await?;
            let (r, w) = tokio::io::split(io);
            (rdb_rd, rdb_wr) = (Some(r), Some(w));
            core.handle_rdb_connected(Instant::now());
        }
        if let Some(w) = &mut rdb_wr {
            while let Some(b) = core.poll_rdb_transmit() {
                w.write_all(&b)
                    .await
                    .map_err(|e| io_err("write to the RDB channel", e))?;
            }
        }
        while let Some(b) = core.take_held() {
            spool.push(b)?;
        }
        if core.needs_replay() {
            // the RDB is loaded: its channel closes, and what the main one held goes in, in
            // order, while the main channel is still read (into the hold) so that the master
            // buffers nothing meanwhile
            if let Some(mut w) = rdb_wr.take() {
                let _ = w.shutdown().await;
            }
            rdb_rd = None;
            tracing::info!(
                held = spool.len(),
                "RDB loaded: the stream held meanwhile follows"
            );
            if !deliver(core, tx).await {
                return Ok(End::Stopped);
            }
            loop {
                loop {
                    let got = tokio::select! {
                        biased;
                        r = rd.read(&mut buf) => Some(r),
                        () = std::future::ready(()) => None,
                    };
                    match got {
                        None => break,
                        Some(Err(e)) => return Err(io_err("read from the master", e)),
                        Some(Ok(0)) => {
                            return Err(Error::new(
                                Kind::Closed,
                                "the master closed the connection",
                            ));
                        }
                        Some(Ok(n)) => core.handle_input(&buf[..n], Instant::now())?,
                    }
                }
                while let Some(b) = core.take_held() {
                    spool.push(b)?;
                }
                let Some(chunk) = spool.next_chunk()? else {
                    break;
                };
                core.handle_replay(&chunk, Instant::now())?;
                core.handle_timeout(Instant::now())?;
                while let Some(b) = core.poll_transmit() {
                    wr.write_all(&b)
                        .await
                        .map_err(|e| io_err("write to the master", e))?;
                }
                if !deliver(core, tx).await || *stop.borrow() {
                    return Ok(End::Stopped);
                }
            }
            core.end_replay(Instant::now())?;
            spool = Spool::new(cfg);
        }
        if rdb_wr.is_some() && !core.is_rdb_channel_open() {
            if let Some(mut w) = rdb_wr.take() {
                let _ = w.shutdown().await;
            }
            rdb_rd = None;
        }
        if endpoint.generation() != generation {
            let (h, p) = endpoint.get();
            return Err(Error::new(
                Kind::Closed,
                format!("following the master to {h}:{p}"),
            ));
        }
        // due ACKs go out even when the socket is always readable (a timer raced against an
        // always-ready read in select! would never fire); a silent link fails here
        core.handle_timeout(Instant::now())?;
        while let Some(b) = core.poll_transmit() {
            wr.write_all(&b)
                .await
                .map_err(|e| io_err("write to the master", e))?;
        }
        let handed = Instant::now();
        let listening = deliver(core, tx).await;
        if handed.elapsed() > Duration::from_millis(100) {
            // the consumer held us up: that time was not the link's silence
            core.handle_resumed(Instant::now());
        }
        if core.is_done() {
            let _ = wr.shutdown().await;
            return Ok(End::Done);
        }
        if !listening || *stop.borrow() {
            // a last ACK, so the master knows how far we got
            core.ack_now(Instant::now());
            while let Some(b) = core.poll_transmit() {
                let _ = wr.write_all(&b).await;
            }
            let _ = wr.shutdown().await;
            return Ok(End::Stopped);
        }
        let wake = core.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = read_opt(&mut rdb_rd, &mut rbuf), if rdb_rd.is_some() => {
                let n = match r {
                    Err(e) => return Err(io_err("read from the RDB channel", e)),
                    Ok(0) => return Err(Error::new(Kind::Closed, "the master closed the RDB channel before the RDB's end")),
                    Ok(n) => n,
                };
                core.handle_rdb_input(&rbuf[..n], Instant::now())?;
                update(status, core, true);
            }
            // silence is measured by the core from the last byte received (a timeout around
            // each read, re-armed by every ACK tick, never fired once the stream began)
            r = rd.read(&mut buf) => {
                let n = match r {
                    Err(e) => return Err(io_err("read from the master", e)),
                    Ok(0) => return Err(Error::new(Kind::Closed, "the master closed the connection")),
                    Ok(n) => n,
                };
                core.handle_input(&buf[..n], Instant::now())?;
                update(status, core, true);
            }
            () = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } }, if wake.is_some() => {
                core.handle_timeout(Instant::now())?;
            }
            _ = stop.changed() => {}
            () = endpoint.0.moved.notified() => {}
        }
    }
}

async fn run(
    cfg: ClientConfig,
    tx: mpsc::Sender<Result<Event>>,
    mut stop: watch::Receiver<bool>,
    status: Arc<Mutex<Status>>,
    endpoint: Endpoint,
) {
    let mut replica_cfg = cfg.replica.clone();
    replica_cfg.read_timeout = Some(cfg.read_timeout);
    let mut core: Option<Replica> = None;
    let mut failures = 0u32;
    let mut last_node: Option<(String, u16)> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let generation = endpoint.generation();
        let (host, port) = endpoint.get();
        let attempt = connect(&cfg, &host, port).await;
        let (io, local_port) = match attempt {
            Ok(c) => {
                tracing::debug!(master = %format_args!("{host}:{port}"), "connected");
                c
            }
            Err(e) => {
                if e.is_fatal() {
                    tracing::error!(master = %format_args!("{host}:{port}"), error = %e.chain(), "cannot connect");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                tracing::warn!(master = %format_args!("{host}:{port}"), error = %e.chain(), attempt = failures + 1, "cannot connect; retrying");
                failures += 1;
                if cfg.max_retries.is_some_and(|m| failures > m) {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                if tx
                    .send(Ok(Event::Disconnected { reason: e.chain() }))
                    .await
                    .is_err()
                {
                    return;
                }
                if !backoff(&cfg, failures, &mut stop, &endpoint, generation).await {
                    return;
                }
                continue;
            }
        };
        let core = core.get_or_insert_with(|| {
            if replica_cfg.listening_port == 0 {
                replica_cfg.listening_port = local_port;
            }
            let mut r = Replica::new(replica_cfg.clone());
            if let Some((id, off)) = &cfg.resume {
                r.resume_from(id.clone(), *off);
            }
            r
        });
        if let Ok(mut s) = status.lock() {
            s.connections += 1;
        }
        if last_node
            .as_ref()
            .is_some_and(|n| *n != (host.clone(), port))
        {
            // another node (a failover): continue from the last write, not the last byte
            core.rewind_to_last_write();
        }
        last_node = Some((host.clone(), port));
        core.handle_connected(Instant::now());
        let before = core.position().map(|p| p.1);
        match session(
            core,
            io,
            &tx,
            &mut stop,
            &status,
            &endpoint,
            &cfg,
            (&host, port),
        )
        .await
        {
            Ok(End::Stopped | End::Done) => {
                let _ = deliver(core, &tx).await;
                return;
            }
            Err(e) => {
                // what was decoded before the error still goes out first
                if !deliver(core, &tx).await {
                    return;
                }
                if e.is_fatal() {
                    tracing::error!(master = %format_args!("{host}:{port}"), error = %e.chain(), "replication ends");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                // a session that moved the offset or streamed was a success: start over
                if core.is_streaming() || core.position().map(|p| p.1) != before {
                    failures = 0;
                }
                failures += 1;
                core.handle_disconnected(e.chain());
                endpoint.0.lost.notify_waiters();
                update(&status, core, false);
                if !deliver(core, &tx).await {
                    return;
                }
                if cfg.max_retries.is_some_and(|m| failures > m) {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                if !backoff(&cfg, failures, &mut stop, &endpoint, generation).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps the capped exponential delay, or not at all when the endpoint moved since
/// `generation`; false when asked to stop meanwhile.
async fn backoff(
    cfg: &ClientConfig,
    failures: u32,
    stop: &mut watch::Receiver<bool>,
    endpoint: &Endpoint,
    generation: u64,
) -> bool {
    if endpoint.generation() != generation {
        return !*stop.borrow();
    }
    let exp = failures.saturating_sub(1).min(16);
    let delay = cfg
        .backoff_min
        .saturating_mul(1 << exp)
        .min(cfg.backoff_max);
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = endpoint.0.moved.notified() => true,
        _ = stop.changed() => false,
    }
}
