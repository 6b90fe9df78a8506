//! A Sentinel-managed master as the source: `redis+sentinel://[user:pass@]h1:p1,h2:p2/name`.
//!
//! The Sentinels are asked in turn for the master (`SENTINEL GET-MASTER-ADDR-BY-NAME`), the
//! answer is checked with `ROLE`, and the replica connects there. A watcher listens on the
//! Sentinels' `+switch-master` channel (and asks again every few seconds, in case a message was
//! missed); after a failover it points the replica at the new master, where it continues with
//! `PSYNC <replid> <offset+1>`: the promoted replica accepts it through its `replid2` when it
//! had received that offset.

use std::time::Duration;

use bytes::BytesMut;
use resp_codec::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Client, ClientConfig, Connection, Endpoint};
use crate::error::{Error, Kind, Result};

/// What a `redis+sentinel://` URL says.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelUrl {
    /// The Sentinels, in the order given.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the master under.
    pub name: String,
    /// `rediss+sentinel://`: TLS to the data nodes.
    pub tls: bool,
    /// The data nodes' user, if given.
    pub user: Option<String>,
    /// The data nodes' password, if given.
    pub password: Option<String>,
    /// The Sentinels' own credentials (`?sentinel_password=…[&sentinel_user=…]`), for
    /// Sentinels with `requirepass`.
    pub sentinel_auth: Option<crate::Auth>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("name", &self.name)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("sentinel_auth", &self.sentinel_auth)
            .finish()
    }
}

impl SentinelUrl {
    /// True for a URL this parses (`redis+sentinel://` or `rediss+sentinel://`).
    pub fn is_sentinel(url: &str) -> bool {
        url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
    }

    /// Parses `redis+sentinel://[user:pass@]host1:port1,host2:port2/master-name` (Sentinel
    /// port default 26379).
    ///
    /// ```
    /// let u = replica_net::sentinel::SentinelUrl::parse(
    ///     "redis+sentinel://repl:pw@10.0.0.1:26379,10.0.0.2/mymaster",
    /// )
    /// .unwrap();
    /// assert_eq!(u.sentinels, vec![("10.0.0.1".into(), 26379), ("10.0.0.2".into(), 26379)]);
    /// assert_eq!((u.name.as_str(), u.user.as_deref()), ("mymaster", Some("repl")));
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::new(Kind::Config, format!("bad Sentinel URL: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            (true, r)
        } else {
            return Err(bad("expected redis+sentinel:// or rediss+sentinel://"));
        };
        let (hosts, name) = rest
            .split_once('/')
            .ok_or_else(|| bad("no master name after the Sentinels (…/mymaster)"))?;
        let (name, query) = name.split_once('?').unwrap_or((name, ""));
        let name = name.split('/').next().unwrap_or_default();
        if name.is_empty() {
            return Err(bad("no master name"));
        }
        let (mut s_user, mut s_password) = (None, None);
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("sentinel_password", v)) => s_password = Some(crate::url::unescape(v)?),
                Some(("sentinel_user", v)) => s_user = Some(crate::url::unescape(v)?),
                _ => return Err(bad(&format!("unknown parameter {kv:?}"))),
            }
        }
        // the credentials and the first host parse as a plain URL; the rest are host:port
        let mut sentinels = Vec::new();
        let (mut user, mut password) = (None, None);
        for (i, h) in hosts.split(',').enumerate() {
            let u = crate::Url::parse(&format!("redis://{h}"))?;
            if i == 0 {
                user = u.user;
                password = u.password;
            }
            let port = if h
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                u.port
            } else {
                26379
            };
            sentinels.push((u.host, port));
        }
        Ok(Self {
            sentinels,
            name: name.to_owned(),
            tls,
            user,
            password,
            sentinel_auth: s_password.map(|password| crate::Auth {
                user: s_user,
                password,
            }),
        })
    }
}

fn text(f: &Frame) -> Option<String> {
    match f {
        Frame::BulkString(b) | Frame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        Frame::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The master the Sentinels name for `name`, checked with `ROLE` on it; tries the Sentinels
/// in turn and moves the one that answered to the front.
///
/// `sentinel_cfg` is for the Sentinels (their AUTH, TLS and timeouts), `cfg` for the master.
/// The error is [fatal](Error::is_fatal) only when every Sentinel refused for good (refused
/// credentials, a TLS failure, no master of that name): then retrying cannot help.
pub async fn resolve(
    cfg: &ClientConfig,
    sentinel_cfg: &ClientConfig,
    sentinels: &mut [(String, u16)],
    name: &str,
) -> Result<(String, u16)> {
    let mut last = Error::new(Kind::Config, "no Sentinel given");
    // the first refusal for good, and how many Sentinels refused so
    let (mut fatal, mut refusals): (Option<Error>, usize) = (None, 0);
    let mut refused = |e: Error, last: &mut Error| {
        if e.is_fatal() {
            refusals += 1;
            if fatal.is_none() {
                fatal = Some(e);
                return;
            }
        }
        *last = e;
    };
    for i in 0..sentinels.len() {
        let (h, p) = sentinels[i].clone();
        let reply = match crate::cluster::command(
            sentinel_cfg,
            &h,
            p,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name],
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                refused(
                    Error::with_source(e.kind(), format!("Sentinel {h}:{p}"), e),
                    &mut last,
                );
                continue;
            }
        };
        let addr = match &reply {
            Frame::Array(a) if a.len() == 2 => {
                text(&a[0]).zip(text(&a[1]).and_then(|p| p.parse::<u16>().ok()))
            }
            _ => None,
        };
        let Some((mh, mp)) = addr else {
            let e = Error::new(
                Kind::Config,
                format!("Sentinel {h}:{p} knows no master named {name:?}"),
            );
            refused(e, &mut last);
            continue;
        };
        // the node must say it is a master (a Sentinel may answer before a failover ends)
        let role = crate::cluster::command(cfg, &mh, mp, &["ROLE"]).await;
        match role {
            Ok(Frame::Array(r)) if r.first().and_then(text).as_deref() == Some("master") => {
                sentinels[..=i].rotate_right(1);
                return Ok((mh, mp));
            }
            // refused credentials: the replica's own connection says so
            Err(e) if e.is_fatal() => return Ok((mh, mp)),
            Ok(_) => last = Error::new(Kind::Retry, format!("{mh}:{mp} is not a master yet")),
            Err(e) => last = e,
        }
    }
    match fatal {
        // every Sentinel refused for good: retrying cannot help
        Some(f) if refusals == sentinels.len() => Err(f),
        // another may answer later
        Some(f) => Err(Error::with_source(
            Kind::Retry,
            format!("no Sentinel named the master ({last})"),
            f,
        )),
        None => Err(last),
    }
}

/// A replica of the master the Sentinels name: a [`Client`] (its events, status and stop as
/// for a fixed master) and its [`Connection`], which resolves the master first and then follows
/// every failover.
///
/// ```no_run
/// # async fn f() -> replica_net::Result<()> {
/// let url = replica_net::sentinel::SentinelUrl::parse("redis+sentinel://127.0.0.1:26379/mymaster")?;
/// let (mut client, connection) = replica_net::sentinel::connect(url, Default::default());
/// tokio::spawn(connection);
/// while let Some(ev) = client.recv().await {
///     println!("{:?}", ev?);
/// }
/// # Ok(()) }
/// ```
pub fn connect(url: SentinelUrl, refresh: Option<Duration>) -> (Client, Connection) {
    let mut cfg = ClientConfig::new("sentinel-resolved", 0);
    if let Some(password) = url.password.clone() {
        cfg.replica_mut().auth(Some(crate::Auth {
            user: url.user.clone(),
            password,
        }));
    }
    #[cfg(feature = "tls-rustls")]
    if url.tls {
        cfg.tls(Some(crate::TlsConfig::default()));
    }
    connect_with(cfg, url.sentinels, url.name, url.sentinel_auth, refresh)
}

/// Like [`connect`], with client settings (AUTH, TLS, timeouts, the core's settings; their host
/// and port are replaced by what the Sentinels say).
pub fn connect_with(
    cfg: ClientConfig,
    sentinels: Vec<(String, u16)>,
    name: String,
    sentinel_auth: Option<crate::Auth>,
    refresh: Option<Duration>,
) -> (Client, Connection) {
    let refresh = refresh.unwrap_or(Duration::from_secs(2));
    let mut cfg = cfg;
    // after a lost link, give the watcher time to ask the Sentinels before reconnecting: a
    // demoted master would otherwise be tried again (and relay, or force a full sync)
    cfg.backoff_min = cfg.backoff_min.max(Duration::from_millis(300));
    let (client, conn, report) = Client::connect_reporting(cfg.clone());
    // the Sentinels: TLS as for the data nodes, their own credentials
    let mut sentinel_cfg = cfg.clone();
    sentinel_cfg.replica_mut().auth(sentinel_auth);
    let endpoint = client.endpoint();
    let stopper = client.stopper();
    let fut = async move {
        let mut sentinels = sentinels;
        // the master first: the client's connection is not polled before it is known
        let mut said = String::new();
        let mut pause = Duration::from_millis(200);
        loop {
            if stopper.is_stopped() {
                return;
            }
            match resolve(&cfg, &sentinel_cfg, &mut sentinels, &name).await {
                Ok((h, p)) => {
                    endpoint.set(h, p);
                    break;
                }
                Err(e) if e.is_fatal() => {
                    let _ = report.send(Err(e)).await;
                    return;
                }
                Err(e) => {
                    // said once per new reason, as a lost link is
                    let reason = e.chain();
                    if reason != said {
                        let ev = Ok(crate::Event::Disconnected {
                            reason: reason.clone(),
                        });
                        if report.send(ev).await.is_err() {
                            return;
                        }
                        said = reason;
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        drop(report);
        let watch = watch_switches(
            cfg.clone(),
            sentinel_cfg,
            sentinels,
            name,
            endpoint,
            refresh,
        );
        tokio::select! {
            () = conn => {}
            () = watch => {}
        }
    };
    (client, Connection::new(fut))
}

/// Follows failovers: `+switch-master` from a Sentinel, and a check every `refresh`.
async fn watch_switches(
    cfg: ClientConfig,
    sentinel_cfg: ClientConfig,
    mut sentinels: Vec<(String, u16)>,
    name: String,
    endpoint: Endpoint,
    refresh: Duration,
) {
    loop {
        let (h, p) = sentinels[0].clone();
        let sub = async {
            let (mut s, _) = crate::client::connect(&sentinel_cfg, &h, p).await.ok()?;
            let mut out = BytesMut::new();
            if let Some(a) = sentinel_cfg.replica().auth_ref() {
                match &a.user {
                    Some(u) => resp_codec::encode_command(
                        [&b"AUTH"[..], u.as_bytes(), a.password.as_bytes()],
                        &mut out,
                    ),
                    None => {
                        resp_codec::encode_command([&b"AUTH"[..], a.password.as_bytes()], &mut out)
                    }
                }
            }
            resp_codec::encode_command(["SUBSCRIBE", "+switch-master"], &mut out);
            s.write_all(&out).await.ok()?;
            let mut dec = resp_codec::Decoder::new();
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                while let Ok(Some(f)) = dec.decode(&mut buf) {
                    // ["message", "+switch-master", "<name> <old-ip> <old-port> <new-ip> <new-port>"]
                    if let Frame::Array(a) = f {
                        if a.first().and_then(text).as_deref() == Some("message") {
                            let msg = a.get(2).and_then(text).unwrap_or_default();
                            let w: Vec<&str> = msg.split_whitespace().collect();
                            if w.len() == 5 && w[0] == name {
                                return Some(());
                            }
                        }
                    }
                }
                if s.read_buf(&mut buf).await.ok()? == 0 {
                    return None;
                }
            }
        };
        // whatever woke us (a switch, the replica's lost link, a lost Sentinel, the timer): ask
        // who the master is
        tokio::select! {
            _ = tokio::time::timeout(refresh, sub) => {}
            () = endpoint.lost() => {}
        }
        if let Ok((mh, mp)) = resolve(&cfg, &sentinel_cfg, &mut sentinels, &name).await {
            if endpoint.get() != (mh.clone(), mp) {
                tracing::info!(master = %name, addr = %format_args!("{mh}:{mp}"), "the Sentinels name a new master");
            }
            endpoint.set(mh, mp);
        }
    }
}
