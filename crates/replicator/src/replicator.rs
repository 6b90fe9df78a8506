//! [`Replicator`]: a live replica as a stream of events.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[cfg(feature = "tls-rustls")]
use replica_net::TlsConfig;
use replica_net::{Auth, Client, ClientConfig, Connection, Status};

use crate::error::{Error, Result};
use crate::event::Event;

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
    /// [`SyncStart`](crate::SyncStart) and later command offsets).
    pub fn resume(&mut self, replid: &str, offset: u64) -> &mut Self {
        self.cfg.resume(Some((replid.to_owned(), offset)));
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
        self
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
        let (client, conn) = Client::connect(self.cfg.clone());
        (Replicator { client }, conn)
    }

    /// Starts replicating, the connection spawned on the current tokio runtime (panics
    /// outside one).
    pub fn start(&self) -> Replicator {
        Replicator {
            client: Client::start(self.cfg.clone()),
        }
    }
}

/// A replica of a live Redis or Valkey master.
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
    client: Client,
}

impl Replicator {
    /// Options from a `redis://[user:password@]host:port` or `rediss://` URL.
    pub fn builder(url: &str) -> Result<Builder> {
        Ok(Builder {
            cfg: ClientConfig::from_url(url)?,
        })
    }

    /// The events, as a `futures::Stream`: sync start (full or partial), RDB items, sync end,
    /// then commands with their db and offset; disconnections in between. A fatal error comes
    /// as `Err` and ends the stream.
    pub fn events(&mut self) -> Events<'_> {
        Events(&mut self.client)
    }

    /// The next event (the same as polling [`events`](Self::events)).
    pub async fn next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(ev) = convert(self.client.recv().await?) {
                return Some(ev);
            }
        }
    }

    /// The next event, waiting without a runtime (for a consumer on its own thread).
    pub fn blocking_next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(ev) = convert(self.client.blocking_recv()?) {
                return Some(ev);
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(ev) = convert(self.client.try_recv()?) {
                return Some(ev);
            }
        }
    }

    /// A handle that stops the replica from another task or thread (a signal handler).
    pub fn stopper(&self) -> replica_net::Stopper {
        self.client.stopper()
    }

    /// A handle that reads the status from another thread.
    pub fn status_handle(&self) -> replica_net::StatusHandle {
        self.client.status_handle()
    }

    /// What the replica is doing.
    pub fn status(&self) -> Status {
        self.client.status()
    }

    /// Sends a last `REPLCONF ACK` and closes.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
    }

    /// The underlying client (blocking receive, stop handles).
    pub fn into_client(self) -> Client {
        self.client
    }
}

/// The event stream of a [`Replicator`].
#[derive(Debug)]
pub struct Events<'a>(&'a mut Client);

impl futures_core::Stream for Events<'_> {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut *self.0).poll_next(cx) {
                Poll::Ready(Some(ev)) => {
                    if let Some(ev) = convert(ev) {
                        return Poll::Ready(Some(ev));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The facade's event for the client's (`None`: a kind this facade does not know, skipped).
fn convert(r: replica_net::Result<replica_net::Event>) -> Option<Result<Event>> {
    match r {
        Ok(ev) => Event::from_net(ev).map(Ok),
        Err(e) => Some(Err(Error::from(e))),
    }
}
