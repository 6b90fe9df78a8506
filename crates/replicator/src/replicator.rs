//! [`Replicator`]: a live replica as a stream of events.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use replica_net::{Auth, Client, ClientConfig, Event, Status, TlsConfig};

/// Options for a [`Replicator`], from a URL plus setters.
///
/// ```
/// let mut b = replicator::Replicator::builder("redis://repl:pw@10.0.0.5:6380").unwrap();
/// b.rdb_only(true).read_timeout(std::time::Duration::from_secs(30));
/// assert_eq!(b.config().port, 6380);
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

    /// The client configuration, for settings without a setter here.
    pub fn config_mut(&mut self) -> &mut ClientConfig {
        &mut self.cfg
    }

    /// AUTH with an ACL user (`None`: the default user) and a password.
    pub fn auth(&mut self, user: Option<&str>, password: &str) -> &mut Self {
        self.cfg.replica.auth = Some(Auth {
            user: user.map(str::to_owned),
            password: password.to_owned(),
        });
        self
    }

    /// TLS settings (a `rediss://` URL turns TLS on with the defaults).
    pub fn tls(&mut self, tls: TlsConfig) -> &mut Self {
        self.cfg.tls = Some(tls);
        self
    }

    /// Stop after the RDB.
    pub fn rdb_only(&mut self, on: bool) -> &mut Self {
        self.cfg.replica.rdb_only = on;
        self
    }

    /// Start with `PSYNC <replid> <offset+1>` (a position saved from
    /// [`SyncStart`](crate::SyncStart) and later command offsets).
    pub fn resume(&mut self, replid: &str, offset: u64) -> &mut Self {
        self.cfg.resume = Some((replid.to_owned(), offset));
        self
    }

    /// Longest silence from the master before reconnecting.
    pub fn read_timeout(&mut self, t: Duration) -> &mut Self {
        self.cfg.read_timeout = t;
        self
    }

    /// Longest wait for a connection.
    pub fn connect_timeout(&mut self, t: Duration) -> &mut Self {
        self.cfg.connect_timeout = t;
        self
    }

    /// RDB decoding settings (chunk sizes, limits, checksum verification).
    pub fn rdb_config(&mut self, c: rdb_format::Config) -> &mut Self {
        self.cfg.replica.rdb = c;
        self
    }

    /// Events buffered before the replica stops reading from the master.
    pub fn channel_capacity(&mut self, n: usize) -> &mut Self {
        self.cfg.channel_capacity = n;
        self
    }

    /// Starts replicating (on the current tokio runtime).
    pub fn start(&self) -> Replicator {
        Replicator {
            client: Client::start(self.cfg.clone()),
        }
    }
}

/// A replica of a live Redis or Valkey master.
///
/// ```no_run
/// # async fn f() -> Result<(), replicator::NetError> {
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
    pub fn builder(url: &str) -> Result<Builder, replica_net::Error> {
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
    pub async fn next_event(&mut self) -> Option<Result<Event, replica_net::Error>> {
        self.client.recv().await
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
    type Item = Result<Event, replica_net::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0).poll_next(cx)
    }
}
