//! The replication protocol as a state machine, without sockets: feed it the bytes the master
//! sent ([`Replica::handle_input`]) and the time ([`Replica::handle_timeout`]); it says what to
//! send ([`Replica::poll_transmit`]), what happened ([`Replica::poll_event`]) and when it wants
//! to be woken ([`Replica::poll_timeout`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rdb_format::Item;
use resp_codec::{Command, Frame};

use crate::error::{Error, Kind, Result};

/// Credentials for `AUTH`.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The ACL user (`None`: the default user, `AUTH <password>`).
    pub user: Option<String>,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the password
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What the core needs to know; change it with the setters.
///
/// ```
/// let mut cfg = replica_net::ReplicaConfig::default();
/// cfg.listening_port(6380).rdb_only(true).version(None);
/// assert!(cfg.is_rdb_only());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// `AUTH` before anything else.
    pub(crate) auth: Option<Auth>,
    /// Sent as `REPLCONF listening-port` (what the master shows in `INFO replication`).
    pub(crate) listening_port: u16,
    /// Sent as `REPLCONF ip-address` when set.
    pub(crate) ip_address: Option<String>,
    /// Sent as `REPLCONF version` (Valkey picks the RDB version from it; Redis answers an
    /// error, which is ignored). `None`: not sent. Default: [`ANNOUNCED_VERSION`].
    ///
    /// Valkey 9.1 sends an EOF-capable replica that announces nothing (or a version below
    /// 9.0.0) an RDB 11 stream, and aborts the full sync when a hash has field TTLs, which
    /// RDB 11 cannot hold; announcing 9.0.0 or newer gets `VALKEY080` with every field TTL.
    pub(crate) version: Option<String>,
    /// How often to send `REPLCONF ACK` during the command stream.
    pub(crate) ack_interval: Duration,
    /// A link that brings no byte for this long is dead, even if it never closes (a lost NAT
    /// entry, a paused VM, a half-open TCP connection): [`Replica::handle_timeout`] fails it.
    /// Measured from the last byte received, whatever else happens in between. A master sends
    /// something at least every `repl-ping-replica-period` (10 s by default). `None`: never.
    pub(crate) read_timeout: Option<Duration>,
    /// Settings for decoding the RDB transfer.
    pub(crate) rdb: rdb_format::Config,
    /// Stop after the RDB (no command stream).
    pub(crate) rdb_only: bool,
    /// Whether a full sync may come over a second connection.
    pub(crate) channels: Channels,
}

/// How a full sync travels.
///
/// With two channels the RDB comes over a connection of its own while the master streams
/// the writes made meanwhile on the main one, where the replica holds them until the RDB is
/// loaded (Redis 8 `repl-rdb-channel`, Valkey 8+ `dual-channel-replication-enabled`; both need
/// the master's `repl-diskless-sync yes`). The master then keeps no copy of those writes in
/// its replica output buffer, so a big data set under heavy writes does not overrun
/// `client-output-buffer-limit replica` and loop through full syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    /// One connection: the classic full sync.
    One,
    /// Two connections where the master offers them, else one.
    #[default]
    Auto,
    /// Two connections or an error: a master that answers with a classic full sync fails
    /// the replica ([`ErrorKind::Config`](crate::ErrorKind)).
    Two,
}

/// The version announced with `REPLCONF version`: the newest Valkey whose RDB format the
/// decoder reads. A Valkey master writes the newest RDB version its replica announces it can
/// load (Valkey 9.0/9.1: `VALKEY080`; a 9.2 master would hold back `VALKEY081` from us too).
pub const ANNOUNCED_VERSION: &str = "9.1.0";

impl ReplicaConfig {
    /// `AUTH` before anything else (`None`: no AUTH).
    pub fn auth(&mut self, auth: Option<Auth>) -> &mut Self {
        self.auth = auth;
        self
    }

    /// The credentials `AUTH` sends, if any.
    pub fn auth_ref(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    /// The credentials, to change the user or password.
    pub fn auth_mut(&mut self) -> Option<&mut Auth> {
        self.auth.as_mut()
    }

    /// Sent as `REPLCONF listening-port` (0: the driver sends its local port).
    pub fn listening_port(&mut self, port: u16) -> &mut Self {
        self.listening_port = port;
        self
    }

    /// Sent as `REPLCONF ip-address` when set.
    pub fn ip_address(&mut self, ip: Option<String>) -> &mut Self {
        self.ip_address = ip;
        self
    }

    /// Sent as `REPLCONF version` (`None`: not sent); see the field's notes in
    /// [`ANNOUNCED_VERSION`].
    pub fn version(&mut self, v: Option<String>) -> &mut Self {
        self.version = v;
        self
    }

    /// How often to send `REPLCONF ACK` during the command stream.
    pub fn ack_interval(&mut self, t: Duration) -> &mut Self {
        self.ack_interval = t;
        self
    }

    /// A link that brings no byte for this long is dead (`None`: never).
    pub fn read_timeout(&mut self, t: Option<Duration>) -> &mut Self {
        self.read_timeout = t;
        self
    }

    /// Settings for decoding the RDB transfer.
    pub fn rdb(&mut self, c: rdb_format::Config) -> &mut Self {
        self.rdb = c;
        self
    }

    /// The settings for decoding the RDB transfer, to change one.
    pub fn rdb_mut(&mut self) -> &mut rdb_format::Config {
        &mut self.rdb
    }

    /// Stop after the RDB (no command stream).
    pub fn rdb_only(&mut self, on: bool) -> &mut Self {
        self.rdb_only = on;
        self
    }

    /// True when the replica stops after the RDB.
    pub fn is_rdb_only(&self) -> bool {
        self.rdb_only
    }

    /// Whether a full sync may come over a second connection (default: where offered).
    pub fn channels(&mut self, c: Channels) -> &mut Self {
        self.channels = c;
        self
    }
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            auth: None,
            listening_port: 0,
            ip_address: None,
            version: Some(ANNOUNCED_VERSION.into()),
            ack_interval: Duration::from_secs(1),
            read_timeout: Some(Duration::from_secs(60)),
            rdb: rdb_format::Config::default(),
            rdb_only: false,
            channels: Channels::Auto,
        }
    }
}

/// Where a sync starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStart {
    /// True for a full sync (an RDB follows), false for a partial one (commands follow).
    pub full: bool,
    /// The master's replication id.
    pub replid: String,
    /// The replication offset the data starts at.
    pub offset: u64,
    /// True when a partial sync was asked for and the master answered with a full one: the
    /// data seen so far is replaced by the RDB that follows.
    pub resync: bool,
    /// What the node said of its history before the PSYNC, when it was asked: on a node other
    /// than the last one (a failover) and on a resumed position. `None` when not asked or when
    /// the node refused `INFO replication`.
    pub history: Option<History>,
}

/// Whether a node can continue our stream, judged from its `INFO replication`
/// (`master_replid`, `master_replid2`, `second_repl_offset`, the backlog's range) before the
/// PSYNC, the way the master itself will judge it.
///
/// ```
/// use replica_net::History;
/// let info = "master_replid:bbbb\r\nmaster_replid2:aaaa\r\nsecond_repl_offset:1001\r\n\
///             master_repl_offset:1500\r\nrepl_backlog_active:1\r\n\
///             repl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:1500\r\n";
/// // we hold aaaa up to 1000: the promoted node has it through its replid2
/// assert_eq!(
///     History::judge(info, "aaaa", 1001),
///     History::Inherited { second_repl_offset: 1001 }
/// );
/// assert!(matches!(History::judge(info, "cccc", 1001), History::Lost { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum History {
    /// The node's replication id is ours and its backlog holds the next offset.
    Same,
    /// The node was promoted: its previous id (`master_replid2`) is ours, valid up to
    /// `second_repl_offset`, which reaches our next offset, and its backlog holds it.
    Inherited {
        /// Where the node's previous history ends (the first offset of its own).
        second_repl_offset: u64,
    },
    /// The node cannot continue our stream: it will answer with a full sync.
    Lost {
        /// Why, with the node's figures.
        why: String,
    },
}

impl History {
    /// Judges `INFO replication` text for a PSYNC of `replid` from offset `next`.
    pub fn judge(info: &str, replid: &str, next: u64) -> Self {
        let field = |name: &str| {
            info.lines().find_map(|l| {
                l.trim_end()
                    .strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
            })
        };
        let num = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
        let id = field("master_replid").unwrap_or("");
        let id2 = field("master_replid2").unwrap_or("");
        let second = num("second_repl_offset");
        let verdict = if id == replid {
            Self::Same
        } else if id2 == replid && second.is_some_and(|s| next <= s) {
            Self::Inherited {
                second_repl_offset: second.unwrap_or(0),
            }
        } else if id2 == replid {
            return Self::Lost {
                why: format!(
                    "its previous id is ours but ends at offset {} (second_repl_offset), \
                     before the {next} we need",
                    second.map_or_else(|| "?".into(), |s| s.to_string())
                ),
            };
        } else {
            return Self::Lost {
                why: format!(
                    "it has another history (master_replid {id}, master_replid2 {id2}), \
                     not {replid}"
                ),
            };
        };
        let active = num("repl_backlog_active") == Some(1);
        let first = num("repl_backlog_first_byte_offset").unwrap_or(0);
        let len = num("repl_backlog_histlen").unwrap_or(0);
        if !active || next < first || next > first + len {
            return Self::Lost {
                why: format!(
                    "its backlog holds offsets {first}..{} and we need {next}",
                    first + len
                ),
            };
        }
        verdict
    }
}

/// A command of the replication stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CommandEvent {
    /// The database it applies to (after a SELECT: the one selected).
    pub db: u64,
    /// The command as received.
    pub cmd: Command,
    /// The replication offset after it (`None` only from a master too old for PSYNC).
    pub offset: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The master accepted the PSYNC.
    SyncStart(SyncStart),
    /// An item of the RDB transfer (aux field, key, chunk of a big key, function, …).
    Rdb(Item),
    /// The RDB transfer is complete.
    SyncEnd {
        /// The RDB's checksum (`None` for RDB < 5, `Some(0)` when the master disabled it); it
        /// was verified unless verification is off.
        checksum: Option<u64>,
        /// Bytes transferred.
        bytes: u64,
    },
    /// A command of the stream.
    Command(CommandEvent),
    /// The stream moved on with a command that carries no data and is not delivered (`PING`,
    /// `REPLCONF GETACK`): the offset after it, which a consumer that saves positions may save
    /// once it applied everything before (else a master that only pings looks ahead of it).
    Offset(u64),
    /// The link dropped (the driver reconnects unless the error is fatal).
    Disconnected {
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Auth,
    Ping,
    Port,
    Ip,
    Capa,
    Version,
    Info,
    Psync,
}

#[derive(Debug)]
struct RdbState {
    dec: Box<rdb_format::Decoder>,
    buf: BytesMut,
    /// Disk transfer: bytes still to come. Diskless: `None`.
    remaining: Option<u64>,
    marker: Option<[u8; 40]>,
    bytes: u64,
    checksum: Option<u64>,
    done: bool,
}

/// The RDB channel's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RStep {
    /// Waiting for the driver to connect it.
    Connecting,
    Auth,
    Replconf,
    /// `PSYNC ? -1` (Redis) or `SYNC` (Valkey) sent: `+FULLRESYNC` / `$ENDOFF` comes.
    Sync,
    /// The RDB flows.
    Transfer,
    /// The RDB is in: the driver closes the channel and gives back what the main one held.
    Done,
}

/// The main channel's steps during a two-channel sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MStep {
    /// Valkey: nothing until the RDB channel has its `$ENDOFF`.
    AwaitEndoff,
    /// Valkey: `REPLCONF set-rdb-client-id` sent.
    SetId,
    /// Valkey: `PSYNC <replid> <endoff+1>` sent.
    Continue,
    /// The stream flows and is held until the RDB is loaded.
    Holding,
}

/// A two-channel full sync in progress.
#[derive(Debug)]
struct Two {
    /// Valkey's dual channel (else Redis' rdb channel).
    valkey: bool,
    /// Redis: the main channel's client id, for the RDB channel's REPLCONF.
    main_id: Option<String>,
    rstep: RStep,
    /// The RDB channel's input (its handshake replies; the RDB itself goes through the core's
    /// RDB states) and output.
    rbuf: BytesMut,
    rout: BytesMut,
    /// The main channel's input before the stream begins (Valkey's replies).
    mbuf: BytesMut,
    mstep: MStep,
    /// The main channel's stream, held until the RDB is loaded.
    held: BytesMut,
    /// Valkey `$ENDOFF`: the db the stream starts in (`None`: a `SELECT` comes first).
    dbid: Option<u64>,
    /// The driver was asked to connect the RDB channel.
    asked: bool,
    /// Valkey: the replid and offset of `$ENDOFF`, for the main channel's PSYNC.
    endoff: Option<(String, u64)>,
}

#[derive(Debug)]
enum State {
    Idle,
    Handshake(Step),
    /// A two-channel sync: the RDB channel's handshake.
    RdbChannel,
    RdbHeader,
    Rdb(Box<RdbState>),
    Stream,
    Done,
}

/// The protocol core.
///
/// ```
/// use std::time::Instant;
/// use replica_net::proto::{Event, Replica, ReplicaConfig};
///
/// let mut r = Replica::new(ReplicaConfig::default());
/// let now = Instant::now();
/// r.handle_connected(now);
/// assert_eq!(&r.poll_transmit().unwrap()[..], b"*1\r\n$4\r\nPING\r\n");
/// r.handle_input(b"+PONG\r\n", now).unwrap();
/// // ... REPLCONF listening-port, capa, version, then PSYNC ? -1
/// for _ in 0..3 {
///     r.poll_transmit().unwrap();
///     r.handle_input(b"+OK\r\n", now).unwrap();
/// }
/// assert!(r.poll_transmit().unwrap().ends_with(b"$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"));
/// r.handle_input(b"+FULLRESYNC 0123456789012345678901234567890123456789 100\r\n", now).unwrap();
/// assert!(matches!(r.poll_event(), Some(Event::SyncStart(s)) if s.full && s.offset == 100));
/// ```
#[derive(Debug)]
pub struct Replica {
    cfg: ReplicaConfig,
    state: State,
    buf: BytesMut,
    out: BytesMut,
    events: VecDeque<Event>,
    resp: resp_codec::Decoder,
    /// (replid, offset) of the data we hold: set when an RDB completes or a PSYNC continues.
    synced: Option<(String, u64)>,
    /// The offset after the last command that changed data (PING, PUBLISH, REPLCONF, SELECT
    /// and MULTI do not): where a new node's stream may start without losing a write.
    safe: u64,
    /// The highest offset of a command delivered: commands up to it are not delivered again.
    delivered: u64,
    /// The next PSYNC starts from `safe` (the master moved to another node).
    rewind: bool,
    /// Ask the node's `INFO replication` before the next PSYNC (a new node, a resumed
    /// position), and what it said.
    check_history: bool,
    history: Option<History>,
    /// The sync in progress, until its RDB is complete.
    pending: Option<(String, u64)>,
    db: u64,
    last_ack: Option<Instant>,
    /// When the last byte came in (or the connection was made, or reading resumed).
    last_input: Option<Instant>,
    /// Fell back to `SYNC` (a master without PSYNC): no offsets, no ACKs.
    legacy: bool,
    /// Full syncs begun on this core: any after the first replaces data already delivered.
    full_syncs: u32,
    /// After a diskless RDB, until the stream's first byte: the master starts the stream on an
    /// ACK that arrives once it has seen its RDB child finish, which our first ACK may beat.
    awaiting_stream: bool,
    /// A two-channel full sync in progress.
    two: Option<Box<Two>>,
}

fn simple(frame: &Frame) -> Option<String> {
    match frame {
        Frame::SimpleString(s) => Some(rdb_format::printable(s)),
        _ => None,
    }
}

fn error_text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Error(s) | Frame::BulkError(s) => Some(rdb_format::printable(s)),
        _ => None,
    }
}

/// One reply frame from `buf`, after any bare `\n` keep-alives.
fn decode_reply(buf: &mut BytesMut) -> Result<Option<Frame>> {
    let n = buf.iter().take_while(|&&b| b == b'\n').count();
    buf.advance(n);
    resp_codec::Decoder::new()
        .decode(buf)
        .map_err(|e| Error::with_source(Kind::Protocol, "bad reply", e))
}

fn is_auth_error(text: &str) -> bool {
    text.starts_with("NOAUTH")
        || text.starts_with("NOPERM")
        || text.starts_with("WRONGPASS")
        || text.contains("not permitted")
        || text.contains("invalid password")
        || text.contains("invalid username-password")
}

impl Replica {
    /// A core that has not connected yet.
    pub fn new(cfg: ReplicaConfig) -> Self {
        Self {
            cfg,
            state: State::Idle,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            resp: resp_codec::Decoder::new(),
            synced: None,
            safe: 0,
            delivered: 0,
            rewind: false,
            check_history: false,
            history: None,
            pending: None,
            db: 0,
            last_ack: None,
            last_input: None,
            legacy: false,
            full_syncs: 0,
            awaiting_stream: false,
            two: None,
        }
    }

    /// Starts from a saved position: the next connection asks `PSYNC <replid> <offset+1>`.
    pub fn resume_from(&mut self, replid: impl Into<String>, offset: u64) {
        self.synced = Some((replid.into(), offset));
        self.safe = offset;
        self.delivered = offset;
        self.check_history = true;
    }

    /// The next connection goes to another node (the master moved: a failover): ask it to
    /// continue from the last write rather than the last byte. What an old master sent after
    /// its replica was promoted and before we moved (Sentinel hellos, PINGs) is not in the new
    /// master's history; asking past it would force a full sync. Commands received again are
    /// not delivered twice.
    pub fn rewind_to_last_write(&mut self) {
        self.rewind = true;
        self.check_history = true;
    }

    /// The replication id and offset of the data delivered so far (what to save to resume).
    pub fn position(&self) -> Option<(&str, u64)> {
        self.synced.as_ref().map(|(id, off)| (id.as_str(), *off))
    }

    /// True once an `rdb_only` replica has delivered the whole RDB.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// True in the command stream.
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Stream)
    }

    /// A short name of the current phase (for status lines).
    pub fn phase(&self) -> &'static str {
        match self.state {
            State::Idle => "disconnected",
            State::Handshake(_) => "handshake",
            State::RdbChannel => "RDB channel handshake",
            State::RdbHeader => "waiting for the RDB",
            State::Rdb(_) => "RDB transfer",
            State::Stream => "streaming",
            State::Done => "done",
        }
    }

    /// Bytes of the RDB transfer so far (0 outside of it).
    pub fn rdb_bytes(&self) -> u64 {
        match &self.state {
            State::Rdb(r) => r.bytes,
            _ => 0,
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        resp_codec::encode_command(args, &mut self.out);
    }

    /// Queues an event that gets a log line too.
    fn push_rare(&mut self, ev: Event) {
        trace_rare(&ev);
        self.events.push_back(ev);
    }

    fn send_ack(&mut self, now: Instant) {
        if self.legacy {
            return;
        }
        if let Some((_, off)) = &self.synced {
            let off = itoa::Buffer::new().format(*off).to_owned();
            self.send(&[b"REPLCONF", b"ACK", off.as_bytes()]);
        }
        self.last_ack = Some(now);
    }

    /// A connection is up: the handshake begins.
    pub fn handle_connected(&mut self, now: Instant) {
        self.last_input = Some(now);
        self.buf.clear();
        self.out.clear();
        self.resp = resp_codec::Decoder::new();
        self.pending = None;
        self.db = 0;
        self.last_ack = None;
        self.two = None;
        self.step(if self.cfg.auth.is_some() {
            Step::Auth
        } else {
            Step::Ping
        });
    }

    /// The connection is gone. What was delivered stays delivered: the next connection asks
    /// for a partial sync from there (an RDB cut short is discarded: a full sync follows).
    pub fn handle_disconnected(&mut self, reason: impl Into<String>) {
        self.last_input = None;
        self.state = State::Idle;
        self.pending = None;
        self.two = None;
        self.buf.clear();
        self.push_rare(Event::Disconnected {
            reason: reason.into(),
        });
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Auth => {
                let Some(auth) = self.cfg.auth.clone() else {
                    return self.step(Step::Ping);
                };
                match &auth.user {
                    Some(u) => self.send(&[b"AUTH", u.as_bytes(), auth.password.as_bytes()]),
                    None => self.send(&[b"AUTH", auth.password.as_bytes()]),
                }
            }
            Step::Ping => self.send(&[b"PING"]),
            Step::Port => {
                let port = self.cfg.listening_port.to_string();
                self.send(&[b"REPLCONF", b"listening-port", port.as_bytes()]);
            }
            Step::Ip => {
                let Some(ip) = self.cfg.ip_address.clone() else {
                    return self.step(Step::Capa);
                };
                self.send(&[b"REPLCONF", b"ip-address", ip.as_bytes()]);
            }
            Step::Capa => match self.cfg.channels {
                Channels::One => self.send(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]),
                // Redis 8 and Valkey 8+ each take the capa they know and ignore the other
                Channels::Auto | Channels::Two => self.send(&[
                    b"REPLCONF",
                    b"capa",
                    b"eof",
                    b"capa",
                    b"psync2",
                    b"capa",
                    b"rdb-channel-repl",
                    b"capa",
                    b"dual-channel",
                ]),
            },
            Step::Version => {
                let Some(v) = self.cfg.version.clone() else {
                    return self.step(Step::Info);
                };
                self.send(&[b"REPLCONF", b"version", v.as_bytes()]);
            }
            Step::Info => {
                if let Some((_, off)) = &mut self.synced {
                    if std::mem::take(&mut self.rewind) {
                        *off = self.safe.min(*off);
                    }
                }
                self.history = None;
                if self.synced.is_none() || !std::mem::take(&mut self.check_history) {
                    return self.step(Step::Psync);
                }
                self.send(&[b"INFO", b"replication"]);
            }
            Step::Psync => match &mut self.synced {
                Some((id, off)) => {
                    let next = (*off + 1).to_string();
                    let id = id.clone();
                    self.send(&[b"PSYNC", id.as_bytes(), next.as_bytes()]);
                }
                None => self.send(&[b"PSYNC", b"?", b"-1"]),
            },
        }
        self.state = State::Handshake(step);
    }

    /// Bytes to send to the master, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Events waiting to be polled.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    fn ack_interval(&self) -> Duration {
        if self.awaiting_stream {
            self.cfg.ack_interval.min(Duration::from_millis(100))
        } else {
            self.cfg.ack_interval
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next: the next ACK,
    /// or the moment the link has been silent for the read timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = match self.state {
            // no ACK yet: one is due at once (the time of the last input, never the clock's)
            State::Stream if !self.legacy => self
                .last_ack
                .map(|t| t + self.ack_interval())
                .or(self.last_input),
            _ => None,
        };
        let silence = self.silence_deadline();
        match (ack, silence) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        }
    }

    fn silence_deadline(&self) -> Option<Instant> {
        Some(self.last_input? + self.cfg.read_timeout?)
    }

    /// The driver stopped reading for a while (its consumer applied backpressure): that time
    /// is not silence of the link, so the read timeout starts again from `now`.
    pub fn handle_resumed(&mut self, now: Instant) {
        if self.last_input.is_some() {
            self.last_input = Some(now);
        }
    }

    /// Sends `REPLCONF ACK` now (in the command stream), as before closing.
    pub fn ack_now(&mut self, now: Instant) {
        if matches!(self.state, State::Stream) {
            self.send_ack(now);
        }
    }

    /// Time passed: sends the periodic `REPLCONF ACK`; fails a link silent for longer than
    /// the read timeout (the connection must then be dropped and made again).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        if let (Some(deadline), Some(t)) = (self.silence_deadline(), self.cfg.read_timeout) {
            if now >= deadline {
                return Err(Error::new(
                    Kind::Timeout,
                    format!("no data from the master for {t:?}: the link is silent"),
                ));
            }
        }
        if matches!(self.state, State::Stream)
            && self.last_ack.is_none_or(|t| now >= t + self.ack_interval())
        {
            self.send_ack(now);
        }
        Ok(())
    }

    /// Bytes from the master. An error means the connection must be dropped (and, unless the
    /// error [is fatal](Error::is_fatal), made again).
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<()> {
        if !data.is_empty() {
            self.last_input = Some(now);
        }
        if self.two.is_some() {
            return self.main_input(data);
        }
        self.buf.extend_from_slice(data);
        self.process(now)?;
        if self.two.is_some() {
            // a two-channel sync began: what followed its reply is the main channel's
            let rest = self.buf.split();
            self.main_input(&rest)?;
        }
        Ok(())
    }

    /// True once, when the driver must open the RDB channel: a new connection to the same
    /// master, then [`handle_rdb_connected`](Self::handle_rdb_connected).
    pub fn poll_rdb_channel(&mut self) -> bool {
        match &mut self.two {
            Some(t) if !t.asked => {
                t.asked = true;
                true
            }
            _ => false,
        }
    }

    /// True while a two-channel sync needs its RDB channel (the driver closes it after).
    pub fn is_rdb_channel_open(&self) -> bool {
        self.two
            .as_ref()
            .is_some_and(|t| t.asked && t.rstep != RStep::Done)
    }

    /// The RDB channel is connected: its handshake begins.
    pub fn handle_rdb_connected(&mut self, now: Instant) {
        self.last_input = Some(now);
        let auth = self.cfg.auth.clone();
        let Some(t) = &mut self.two else { return };
        t.rbuf.clear();
        t.rout.clear();
        match auth {
            Some(a) => {
                match &a.user {
                    Some(u) => resp_codec::encode_command(
                        [&b"AUTH"[..], u.as_bytes(), a.password.as_bytes()],
                        &mut t.rout,
                    ),
                    None => resp_codec::encode_command(
                        [&b"AUTH"[..], a.password.as_bytes()],
                        &mut t.rout,
                    ),
                }
                t.rstep = RStep::Auth;
            }
            None => self.rdb_channel_replconf(),
        }
    }

    fn rdb_channel_replconf(&mut self) {
        let port = self.cfg.listening_port.to_string();
        let version = self.cfg.version.clone();
        let Some(t) = &mut self.two else { return };
        let mut args: Vec<&[u8]> = vec![
            b"REPLCONF",
            b"capa",
            b"eof",
            b"rdb-only",
            b"1",
            b"rdb-channel",
            b"1",
        ];
        if let Some(id) = &t.main_id {
            args.extend([&b"main-ch-client-id"[..], id.as_bytes()]);
        }
        args.extend([&b"listening-port"[..], port.as_bytes()]);
        if let (true, Some(v)) = (t.valkey, &version) {
            args.extend([&b"version"[..], v.as_bytes()]);
        }
        resp_codec::encode_command(args, &mut t.rout);
        t.rstep = RStep::Replconf;
    }

    /// Bytes to send on the RDB channel, if any.
    pub fn poll_rdb_transmit(&mut self) -> Option<Bytes> {
        let t = self.two.as_mut()?;
        (!t.rout.is_empty()).then(|| t.rout.split().freeze())
    }

    /// Bytes from the RDB channel.
    pub fn handle_rdb_input(&mut self, data: &[u8], now: Instant) -> Result<()> {
        if !data.is_empty() {
            self.last_input = Some(now);
        }
        let Some(t) = &mut self.two else {
            return Ok(());
        };
        t.rbuf.extend_from_slice(data);
        loop {
            let Some(t) = &mut self.two else {
                return Ok(());
            };
            match t.rstep {
                RStep::Connecting | RStep::Done => {
                    t.rbuf.clear();
                    return Ok(());
                }
                RStep::Auth | RStep::Replconf => {
                    let step = t.rstep;
                    let Some(frame) = decode_reply(&mut t.rbuf)? else {
                        return Ok(());
                    };
                    if let Some(e) = error_text(&frame) {
                        let kind = if is_auth_error(&e) {
                            Kind::Auth
                        } else {
                            Kind::Retry
                        };
                        return Err(Error::new(
                            kind,
                            format!("the RDB channel was refused: {e}"),
                        ));
                    }
                    if step == RStep::Auth {
                        self.rdb_channel_replconf();
                    } else if t.valkey {
                        t.rout.extend_from_slice(b"SYNC\r\n");
                        t.rstep = RStep::Sync;
                    } else {
                        resp_codec::encode_command([&b"PSYNC"[..], b"?", b"-1"], &mut t.rout);
                        t.rstep = RStep::Sync;
                    }
                }
                RStep::Sync => {
                    let n = t.rbuf.iter().take_while(|&&b| b == b'\n').count();
                    t.rbuf.advance(n);
                    let Some(nl) = memchr::memchr(b'\n', &t.rbuf) else {
                        if t.rbuf.len() > 512 {
                            return Err(Error::new(
                                Kind::Protocol,
                                "RDB channel reply line too long",
                            ));
                        }
                        return Ok(());
                    };
                    let line = t.rbuf.split_to(nl + 1);
                    let line = String::from_utf8_lossy(line.strip_suffix(b"\r\n").unwrap_or(&line))
                        .into_owned();
                    self.rdb_channel_sync_reply(&line)?;
                }
                RStep::Transfer => {
                    // the RDB states read the RDB channel's bytes
                    std::mem::swap(&mut self.buf, &mut t.rbuf);
                    let r = self.process(now);
                    let Some(t) = &mut self.two else {
                        return r;
                    };
                    std::mem::swap(&mut self.buf, &mut t.rbuf);
                    r?;
                    if matches!(self.state, State::Stream | State::Done) {
                        t.rstep = RStep::Done;
                        t.rbuf.clear();
                        if let (State::Stream, Some(db)) = (&self.state, t.dbid) {
                            self.db = db;
                        }
                    }
                    return Ok(());
                }
            }
        }
    }

    /// `+FULLRESYNC` (Redis) or `$ENDOFF` (Valkey) on the RDB channel.
    fn rdb_channel_sync_reply(&mut self, line: &str) -> Result<()> {
        if let Some(e) = line.strip_prefix('-') {
            return Err(Error::new(
                Kind::Retry,
                format!("master failed the sync: {e}"),
            ));
        }
        let valkey = self.two.as_ref().is_some_and(|t| t.valkey);
        if !valkey {
            let mut w = line
                .strip_prefix('+')
                .unwrap_or("")
                .split_ascii_whitespace();
            let (Some("FULLRESYNC"), Some(id), Some(off)) =
                (w.next(), w.next(), w.next().and_then(|o| o.parse().ok()))
            else {
                return Err(Error::new(
                    Kind::Protocol,
                    format!("unexpected reply on the RDB channel: {line:?}"),
                ));
            };
            self.begin_full(id, off);
            if let Some(t) = &mut self.two {
                t.rstep = RStep::Transfer;
            }
            return Ok(());
        }
        // $ENDOFF:<offset> <replid> <dbid> <rdb client id>
        let bad = || Error::new(Kind::Protocol, format!("bad $ENDOFF line {line:?}"));
        let rest = line.strip_prefix("$ENDOFF:").ok_or_else(bad)?;
        let w: Vec<&str> = rest.split_ascii_whitespace().collect();
        let [off, id, dbid, client] = w[..] else {
            return Err(bad());
        };
        let off: u64 = off.parse().map_err(|_| bad())?;
        let dbid: i64 = dbid.parse().map_err(|_| bad())?;
        let (id, client) = (id.to_owned(), client.to_owned());
        self.begin_full(&id, off);
        // PSYNC after its +OK: a master refuses PSYNC with a reply still in its output buffer
        self.send(&[b"REPLCONF", b"set-rdb-client-id", client.as_bytes()]);
        if let Some(t) = &mut self.two {
            t.rstep = RStep::Transfer;
            t.mstep = MStep::SetId;
            t.dbid = u64::try_from(dbid).ok();
            t.endoff = Some((id, off));
        }
        Ok(())
    }

    /// Main-channel bytes during a two-channel sync: Valkey's replies, then the held stream.
    fn main_input(&mut self, data: &[u8]) -> Result<()> {
        let Some(t) = &mut self.two else {
            return Ok(());
        };
        if t.mstep == MStep::Holding {
            t.held.extend_from_slice(data);
            return Ok(());
        }
        t.mbuf.extend_from_slice(data);
        loop {
            match t.mstep {
                MStep::Holding => {
                    let rest = t.mbuf.split();
                    t.held.unsplit(rest);
                    return Ok(());
                }
                MStep::AwaitEndoff => {
                    let n = t.mbuf.iter().take_while(|&&b| b == b'\n').count();
                    t.mbuf.advance(n);
                    if !t.mbuf.is_empty() {
                        return Err(Error::new(
                            Kind::Protocol,
                            "the main channel spoke before the RDB channel's $ENDOFF",
                        ));
                    }
                    return Ok(());
                }
                MStep::SetId | MStep::Continue => {
                    let Some(frame) = decode_reply(&mut t.mbuf)? else {
                        return Ok(());
                    };
                    if let Some(e) = error_text(&frame) {
                        return Err(Error::new(
                            Kind::Retry,
                            format!("the main channel could not join the RDB channel: {e}"),
                        ));
                    }
                    if t.mstep == MStep::SetId {
                        t.mstep = MStep::Continue;
                        if let Some((id, off)) = &t.endoff {
                            let next = (off + 1).to_string();
                            resp_codec::encode_command(
                                [&b"PSYNC"[..], id.as_bytes(), next.as_bytes()],
                                &mut self.out,
                            );
                        }
                        continue;
                    }
                    let text = simple(&frame).unwrap_or_default();
                    if !text.starts_with("CONTINUE") {
                        return Err(Error::new(
                            Kind::Retry,
                            format!("the main channel's PSYNC was answered {text:?}, not CONTINUE"),
                        ));
                    }
                    t.mstep = MStep::Holding;
                }
            }
        }
    }

    /// The main channel's stream held so far (to keep elsewhere: memory or a file). Give it
    /// back, in order, through [`handle_replay`](Self::handle_replay) once
    /// [`needs_replay`](Self::needs_replay).
    pub fn take_held(&mut self) -> Option<BytesMut> {
        let t = self.two.as_mut()?;
        (!t.held.is_empty()).then(|| t.held.split())
    }

    /// True when the RDB of a two-channel sync is loaded: the held stream goes in now
    /// ([`handle_replay`](Self::handle_replay)), then [`end_replay`](Self::end_replay).
    pub fn needs_replay(&self) -> bool {
        self.two
            .as_ref()
            .is_some_and(|t| t.rstep == RStep::Done && t.mstep == MStep::Holding)
            && self.is_streaming()
    }

    /// Held stream bytes, in the order [`take_held`](Self::take_held) gave them.
    pub fn handle_replay(&mut self, data: &[u8], now: Instant) -> Result<()> {
        self.buf.extend_from_slice(data);
        self.process(now)
    }

    /// The held stream is all in: what is still held here goes too, and the main channel's
    /// bytes are read as a classic stream from now on.
    pub fn end_replay(&mut self, now: Instant) -> Result<()> {
        if let Some(t) = self.two.take() {
            self.buf.extend_from_slice(&t.held);
        }
        self.process(now)
    }

    /// True during a two-channel full sync (until the held stream is replayed).
    pub fn is_two_channel(&self) -> bool {
        self.two.is_some()
    }

    fn process(&mut self, now: Instant) -> Result<()> {
        loop {
            let progressed = match &mut self.state {
                State::Idle | State::Done => {
                    self.buf.clear();
                    false
                }
                State::Handshake(step) => {
                    let step = *step;
                    self.handshake_reply(step)?
                }
                State::RdbChannel => false,
                State::RdbHeader => self.rdb_header()?,
                State::Rdb(_) => self.rdb(now)?,
                State::Stream => self.stream(now)?,
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Drops the bare `\n` keep-alives a master sends while it prepares the RDB.
    fn skip_newlines(&mut self) {
        let n = self.buf.iter().take_while(|&&b| b == b'\n').count();
        self.buf.advance(n);
    }

    fn handshake_reply(&mut self, step: Step) -> Result<bool> {
        self.skip_newlines();
        let frame = match self.resp.decode(&mut self.buf) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(false),
            Err(e) => {
                return Err(Error::with_source(
                    Kind::Protocol,
                    "bad reply during the handshake",
                    e,
                ));
            }
        };
        let err = error_text(&frame);
        match step {
            Step::Auth => {
                if let Some(e) = err {
                    return Err(Error::new(Kind::Auth, format!("AUTH refused: {e}")));
                }
                self.step(Step::Ping);
            }
            Step::Ping => {
                if let Some(e) = err {
                    let kind = if is_auth_error(&e) {
                        Kind::Auth
                    } else {
                        Kind::Protocol
                    };
                    return Err(Error::new(kind, format!("PING refused: {e}")));
                }
                self.step(Step::Port);
            }
            // a master that does not understand these works without them (as a replica does)
            Step::Port => self.step(Step::Ip),
            Step::Ip => self.step(Step::Capa),
            Step::Capa => self.step(Step::Version),
            Step::Version => self.step(Step::Info),
            Step::Info => {
                // a node that refuses INFO (renamed, ACL) is tried all the same
                if let (Frame::BulkString(text), Some((id, off))) = (&frame, &self.synced) {
                    let info = String::from_utf8_lossy(text);
                    self.history = Some(History::judge(&info, id, off + 1));
                }
                self.step(Step::Psync);
            }
            Step::Psync => return self.psync_reply(&frame).map(|()| true),
        }
        if let Some(e) = err {
            if is_auth_error(&e) {
                return Err(Error::new(Kind::Auth, format!("{step:?} refused: {e}")));
            }
        }
        Ok(true)
    }

    fn psync_reply(&mut self, frame: &Frame) -> Result<()> {
        if let Some(e) = error_text(frame) {
            if e.starts_with("NOMASTERLINK") || e.starts_with("LOADING") {
                return Err(Error::new(Kind::Retry, format!("master busy: {e}")));
            }
            if is_auth_error(&e) {
                return Err(Error::new(Kind::Auth, format!("PSYNC refused: {e}")));
            }
            // a master from before PSYNC: the old SYNC, an RDB and a stream without offsets
            self.legacy = true;
            self.send(&[b"SYNC"]);
            self.pending = Some(("?".into(), 0));
            let start = Event::SyncStart(SyncStart {
                full: true,
                replid: "?".into(),
                offset: 0,
                resync: self.synced.is_some() || self.full_syncs > 0,
                history: self.history.take(),
            });
            self.push_rare(start);
            self.full_syncs += 1;
            self.synced = None;
            self.state = State::RdbHeader;
            return Ok(());
        }
        let Some(text) = simple(frame) else {
            return Err(Error::new(
                Kind::Protocol,
                format!("unexpected PSYNC reply {frame:?}"),
            ));
        };
        let mut words = text.split_ascii_whitespace();
        match words.next() {
            Some("FULLRESYNC") => {
                let (Some(id), Some(off)) =
                    (words.next(), words.next().and_then(|o| o.parse().ok()))
                else {
                    return Err(Error::new(
                        Kind::Protocol,
                        format!("bad FULLRESYNC reply {text:?}"),
                    ));
                };
                if self.cfg.channels == Channels::Two && self.two.is_none() {
                    return Err(Error::new(
                        Kind::Config,
                        "the master answered with a classic full sync: two channels need Redis \
                         8 with repl-rdb-channel, or Valkey 8+ with \
                         dual-channel-replication-enabled, and repl-diskless-sync yes",
                    ));
                }
                self.begin_full(id, off);
            }
            Some(w @ ("RDBCHANNELSYNC" | "DUALCHANNELSYNC"))
                if self.cfg.channels != Channels::One =>
            {
                let valkey = w == "DUALCHANNELSYNC";
                let main_id = words.next().map(str::to_owned);
                if !valkey && main_id.is_none() {
                    return Err(Error::new(
                        Kind::Protocol,
                        format!("{text:?} without the main channel's client id"),
                    ));
                }
                self.two = Some(Box::new(Two {
                    valkey,
                    main_id,
                    rstep: RStep::Connecting,
                    rbuf: BytesMut::new(),
                    rout: BytesMut::new(),
                    mbuf: BytesMut::new(),
                    mstep: if valkey {
                        MStep::AwaitEndoff
                    } else {
                        MStep::Holding
                    },
                    held: BytesMut::new(),
                    dbid: None,
                    asked: false,
                    endoff: None,
                }));
                self.state = State::RdbChannel;
            }
            Some("CONTINUE") => {
                let Some((id, off)) = self.synced.as_mut() else {
                    return Err(Error::new(
                        Kind::Protocol,
                        "CONTINUE without a PSYNC position",
                    ));
                };
                if let Some(new) = words.next() {
                    // psync2: the master has a new id (a failover); the offset goes on
                    *id = new.to_owned();
                }
                let start = SyncStart {
                    full: false,
                    replid: id.clone(),
                    offset: *off,
                    resync: false,
                    history: self.history.take(),
                };
                self.push_rare(Event::SyncStart(start));
                self.enter_stream();
            }
            _ => {
                return Err(Error::new(
                    Kind::Protocol,
                    format!("unexpected PSYNC reply {text:?}"),
                ));
            }
        }
        Ok(())
    }

    /// A full sync of `id` at `off` begins: an RDB follows (on the RDB channel of a
    /// two-channel sync).
    fn begin_full(&mut self, id: &str, off: u64) {
        let start = Event::SyncStart(SyncStart {
            full: true,
            replid: id.to_owned(),
            offset: off,
            resync: self.synced.is_some() || self.full_syncs > 0,
            history: self.history.take(),
        });
        self.push_rare(start);
        self.full_syncs += 1;
        // what was delivered is being replaced: if this RDB is cut short, the next sync must
        // be a full one too
        self.synced = None;
        self.pending = Some((id.to_owned(), off));
        self.state = State::RdbHeader;
    }

    fn enter_stream(&mut self) {
        self.resp = resp_codec::Decoder::new();
        self.db = 0;
        self.state = State::Stream;
    }

    fn rdb_header(&mut self) -> Result<bool> {
        self.skip_newlines();
        let Some(nl) = memchr::memchr(b'\n', &self.buf[..self.buf.len().min(128)]) else {
            if self.buf.len() >= 128 {
                return Err(Error::new(Kind::Protocol, "RDB header line too long"));
            }
            return Ok(false);
        };
        let line = self.buf.split_to(nl + 1);
        let line = line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| Error::new(Kind::Protocol, "RDB header line without CR LF"))?;
        if let Some(e) = line.strip_prefix(b"-") {
            let e = rdb_format::printable(e);
            return Err(Error::new(
                Kind::Retry,
                format!("master failed the sync: {e}"),
            ));
        }
        let Some(rest) = line.strip_prefix(b"$") else {
            return Err(Error::new(
                Kind::Protocol,
                format!(
                    "expected the RDB bulk header, got {}",
                    rdb_format::Shown(line)
                ),
            ));
        };
        let (remaining, marker) = if let Some(mark) = rest.strip_prefix(b"EOF:") {
            let m: [u8; 40] = mark
                .try_into()
                .map_err(|_| Error::new(Kind::Protocol, "diskless marker is not 40 bytes"))?;
            (None, Some(m))
        } else {
            let len = std::str::from_utf8(rest)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| Error::new(Kind::Protocol, "bad RDB length"))?;
            (Some(len), None)
        };
        self.state = State::Rdb(Box::new(RdbState {
            dec: Box::new(rdb_format::Decoder::with_config(self.cfg.rdb)),
            buf: BytesMut::new(),
            remaining,
            marker,
            bytes: 0,
            checksum: None,
            done: false,
        }));
        Ok(true)
    }

    fn rdb(&mut self, now: Instant) -> Result<bool> {
        let State::Rdb(rs) = &mut self.state else {
            return Ok(false);
        };
        if !rs.done {
            let take = match rs.remaining {
                Some(r) => r.min(self.buf.len() as u64) as usize,
                None => self.buf.len(),
            };
            if take > 0 {
                // no copy when the two are adjacent in one allocation (or the RDB buffer is
                // empty); otherwise `unsplit` copies
                rs.buf.unsplit(self.buf.split_to(take));
                rs.bytes += take as u64;
                if let Some(r) = &mut rs.remaining {
                    *r -= take as u64;
                }
            }
            // decode what is there: items go out as they complete
            loop {
                let ended = rs.remaining == Some(0);
                let got = if ended {
                    rs.dec.decode_eof(&mut rs.buf)
                } else {
                    rs.dec.decode(&mut rs.buf)
                };
                match got {
                    Ok(Some(item)) => {
                        if let Item::Eof { checksum } = &item {
                            rs.checksum = *checksum;
                        }
                        self.events.push_back(Event::Rdb(item));
                    }
                    Ok(None) if rs.dec.is_done() => {
                        rs.done = true;
                        break;
                    }
                    Ok(None) => return Ok(false),
                    Err(e) if ended && e.is_truncated() => {
                        return Err(Error::with_source(
                            Kind::Rdb,
                            "the RDB transfer ended inside the RDB",
                            e,
                        ));
                    }
                    Err(e) => return Err(Error::with_source(Kind::Rdb, "bad RDB transfer", e)),
                }
            }
            // bytes moved past the RDB's end go back in front of the input
            let rest = std::mem::take(&mut rs.buf);
            rs.bytes -= rest.len() as u64;
            if !rest.is_empty() {
                let mut joined = rest;
                joined.extend_from_slice(&self.buf);
                self.buf = joined;
            }
        }
        match rs.marker {
            Some(mark) => {
                if self.buf.len() < 40 {
                    return Ok(false);
                }
                if self.buf[..40] != mark {
                    return Err(Error::new(
                        Kind::Protocol,
                        "the diskless RDB's end marker does not match",
                    ));
                }
                self.buf.advance(40);
                rs.bytes += 40;
            }
            None => {
                if rs.remaining != Some(0) {
                    return Err(Error::new(
                        Kind::Protocol,
                        "bytes after the RDB's end in a disk transfer",
                    ));
                }
            }
        }
        let (checksum, bytes, diskless) = (rs.checksum, rs.bytes, rs.marker.is_some());
        self.push_rare(Event::SyncEnd { checksum, bytes });
        self.synced = self.pending.take().filter(|_| !self.legacy);
        if let Some((_, off)) = &self.synced {
            self.safe = *off;
            self.delivered = *off;
        }
        if self.cfg.rdb_only {
            self.state = State::Done;
            return Ok(false);
        }
        self.enter_stream();
        // the master starts a diskless replica's stream only on an ACK: one now, and more
        // often than usual until the stream begins
        self.awaiting_stream = diskless;
        self.send_ack(now);
        Ok(true)
    }

    fn stream(&mut self, now: Instant) -> Result<bool> {
        if !self.buf.is_empty() {
            self.awaiting_stream = false;
        }
        let cmd = match self.resp.decode_command(&mut self.buf) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(false),
            Err(e) => {
                return Err(Error::with_source(
                    Kind::Protocol,
                    "bad command in the replication stream",
                    e,
                ));
            }
        };
        let len = cmd.raw().len() as u64;
        let offset = match &mut self.synced {
            Some((_, off)) => {
                *off += len;
                Some(*off)
            }
            None => None,
        };
        let data = !["PING", "PUBLISH", "SPUBLISH", "REPLCONF", "SELECT", "MULTI"]
            .iter()
            .any(|n| cmd.is(n));
        // received again after a rewind: already delivered
        let again = offset.is_some_and(|o| o <= self.delivered);
        if let Some(o) = offset {
            if data {
                self.safe = o;
            }
            self.delivered = self.delivered.max(o);
        }
        if cmd.is("PING") || cmd.is("REPLCONF") {
            if cmd.is("REPLCONF")
                && cmd
                    .arg(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"GETACK"))
            {
                self.send_ack(now);
            }
            if let (Some(o), false) = (offset, again) {
                self.events.push_back(Event::Offset(o));
            }
            return Ok(true);
        }
        if cmd.is("SELECT") {
            let db = cmd
                .arg(1)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| Error::new(Kind::Protocol, "SELECT without a db index"))?;
            self.db = db;
        }
        if again {
            return Ok(true);
        }
        self.events.push_back(Event::Command(CommandEvent {
            db: self.db,
            cmd,
            offset,
        }));
        Ok(true)
    }
}

/// A log line for the events worth one: syncs begun and ended, lost links (pushed here, off
/// the path of the stream's commands and the RDB's items).
#[cold]
fn trace_rare(ev: &Event) {
    match ev {
        Event::SyncStart(s) => {
            let history = s.history.as_ref().map(|h| format!("{h:?}"));
            tracing::info!(
                full = s.full,
                replid = %s.replid,
                offset = s.offset,
                resync = s.resync,
                history = history.as_deref(),
                "{} sync begins",
                if s.full { "full" } else { "partial" }
            );
        }
        Event::SyncEnd { bytes, checksum } => {
            tracing::info!(
                bytes,
                checksum = checksum.map(|c| format!("{c:016x}")),
                "RDB received"
            );
        }
        Event::Disconnected { reason } => tracing::warn!(%reason, "link to the master lost"),
        _ => {}
    }
}
