//! What a [`Replicator`](crate::Replicator) is doing, for people and for machines: each
//! source's phase, offsets, lag and last error ([`Monitor`]), and the same figures as
//! [`metrics`] counters and gauges.
//!
//! The metrics go to whatever recorder the program installed (a Prometheus exporter in the
//! `replicator` CLI); without one they cost nothing. Install the recorder before connecting:
//! the handles are registered when a source is first seen.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `replicator_up` | gauge | `source` | 1 while the source streams commands, else 0 |
//! | `replicator_full_syncs_total` | counter | `source` | full syncs begun |
//! | `replicator_partial_syncs_total` | counter | `source` | partial syncs (PSYNC continued) |
//! | `replicator_reconnects_total` | counter | `source` | links lost and reconnected |
//! | `replicator_errors_total` | counter | `source`, `kind` | `link` (a lost link), `fatal` (the end), `info` (a failed `INFO` poll) |
//! | `replicator_keys_total` | counter | `source` | keys of full syncs received |
//! | `replicator_commands_total` | counter | `source` | commands received |
//! | `replicator_received_bytes_total` | counter | `source` | RDB bytes and replication stream bytes |
//! | `replicator_offset_bytes` | gauge | `source` | our replication offset |
//! | `replicator_master_offset_bytes` | gauge | `source` | the master's (`INFO replication`, polled) |
//! | `replicator_lag_bytes` | gauge | `source` | the master's offset minus ours |
//! | `replicator_lag_seconds` | gauge | `source` | how long ago the master was where we are |
//!
//! `source` is the master's `host:port` as given (a Sentinel source: the master's name), or
//! `shard-N` for the shards of a cluster (N in the order they were found).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};

use crate::{Error, Event};

/// Where a source is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Before the first sync began.
    Connecting,
    /// A full sync: the RDB is being received.
    FullSync,
    /// Commands are streamed.
    Streaming,
    /// The link was lost; reconnecting.
    BackingOff,
    /// The shard left the cluster (its slots went to a shard that is followed already).
    Retired,
    /// The replica ended: stopped, or a fatal error (see the last error).
    Ended,
}

impl Phase {
    /// The phase's name: `connecting`, `full sync`, `streaming`, `backing off`, `retired`,
    /// `ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::FullSync => "full sync",
            Self::Streaming => "streaming",
            Self::BackingOff => "backing off",
            Self::Retired => "retired",
            Self::Ended => "ended",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source's figures, as [`Monitor::sources`] gives them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SourceHealth {
    /// The `source` label: `host:port`, the Sentinel master's name, or `shard-N`.
    pub source: String,
    /// Where it is.
    pub phase: Phase,
    /// Our replication offset (what was received and handed on).
    pub offset: Option<u64>,
    /// The master's offset at the last `INFO replication` poll.
    pub master_offset: Option<u64>,
    /// The master's offset minus ours (0 when we are ahead of the last poll).
    pub lag_bytes: Option<u64>,
    /// How long ago the master was at our offset, from the polled offsets.
    pub lag_seconds: Option<f64>,
    /// Why the lag is not known (the poll failed, or the credentials do not allow `INFO`).
    pub lag_unknown: Option<String>,
    /// The last lost link or error.
    pub last_error: Option<String>,
    /// Full syncs begun.
    pub full_syncs: u64,
    /// Partial syncs.
    pub partial_syncs: u64,
    /// Links lost.
    pub reconnects: u64,
    /// Keys of full syncs.
    pub keys: u64,
    /// Commands.
    pub commands: u64,
    /// RDB and stream bytes.
    pub received_bytes: u64,
}

/// The figures of a [`Replicator`](crate::Replicator)'s sources, readable from any thread.
///
/// ```
/// let m = replicator::observe::Monitor::default();
/// assert!(m.sources().is_empty());
/// // nothing connected yet: not ready
/// assert!(m.ready(1 << 20).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Monitor(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    /// The label of a single master's source.
    single: String,
    sources: Vec<Source>,
    /// Master offsets are polled: readiness needs the lag.
    polled: bool,
    poll_every: Duration,
}

#[derive(Debug)]
struct Source {
    label: String,
    phase: Phase,
    /// What every event moves (keys, commands, bytes, our offset), kept outside the lock.
    hot: Arc<Hot>,
    master_offset: Option<u64>,
    /// When the master's offset was read last.
    polled_at: Option<Instant>,
    /// (time, master offset) of the last polls, oldest first.
    samples: VecDeque<(Instant, u64)>,
    /// The last failed poll; `refused`: the credentials do not allow `INFO`.
    poll_error: Option<(String, bool)>,
    last_error: Option<String>,
    counts: [u64; 3],
    m: Handles,
}

const FULL: usize = 0;
const PARTIAL: usize = 1;
const RECONNECTS: usize = 2;

/// A source's figures that change with (nearly) every event: atomics and their metrics, so
/// that the forwarding loop updates them without taking the monitor's lock.
#[derive(Debug)]
pub(crate) struct Hot {
    keys: AtomicU64,
    commands: AtomicU64,
    bytes: AtomicU64,
    /// Our offset; [`NO_OFFSET`] before the first sync.
    offset: AtomicU64,
    m_keys: Counter,
    m_commands: Counter,
    m_bytes: Counter,
    m_offset: Gauge,
}

const NO_OFFSET: u64 = u64::MAX;

impl Hot {
    fn new(s: &str) -> Self {
        Self {
            keys: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            offset: AtomicU64::new(NO_OFFSET),
            m_keys: metrics::counter!("replicator_keys_total", "source" => s.to_owned()),
            m_commands: metrics::counter!("replicator_commands_total", "source" => s.to_owned()),
            m_bytes: metrics::counter!("replicator_received_bytes_total", "source" => s.to_owned()),
            m_offset: metrics::gauge!("replicator_offset_bytes", "source" => s.to_owned()),
        }
    }

    fn key(&self) {
        self.keys.fetch_add(1, Ordering::Relaxed);
        self.m_keys.increment(1);
    }

    fn command(&self, offset: Option<u64>) {
        self.commands.fetch_add(1, Ordering::Relaxed);
        self.m_commands.increment(1);
        if let Some(o) = offset {
            self.advance(o);
        }
    }

    fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.m_bytes.increment(n);
    }

    /// Our offset moved to `o` (bytes of the stream received in between).
    fn advance(&self, o: u64) {
        let prev = self.offset.swap(o, Ordering::Relaxed);
        if prev != NO_OFFSET {
            self.add_bytes(o.saturating_sub(prev));
        }
        self.m_offset.set(o as f64);
    }

    /// A sync starts at `o` (no bytes counted: an RDB's are counted at its end).
    fn start_at(&self, o: u64) {
        self.offset.store(o, Ordering::Relaxed);
        self.m_offset.set(o as f64);
    }

    fn offset(&self) -> Option<u64> {
        Some(self.offset.load(Ordering::Relaxed)).filter(|&o| o != NO_OFFSET)
    }
}

/// Samples kept for the lag in seconds: ten minutes at one poll a second.
const SAMPLES: usize = 600;

#[derive(Debug)]
struct Handles {
    up: Gauge,
    full: Counter,
    partial: Counter,
    reconnects: Counter,
    link_errors: Counter,
    fatal: Counter,
    info_errors: Counter,
    master_offset: Gauge,
    lag_bytes: Gauge,
    lag_seconds: Gauge,
}

impl Handles {
    fn new(source: &str) -> Self {
        let s = source.to_owned();
        let err = |kind: &'static str| metrics::counter!("replicator_errors_total", "source" => s.clone(), "kind" => kind);
        Self {
            up: metrics::gauge!("replicator_up", "source" => s.clone()),
            full: metrics::counter!("replicator_full_syncs_total", "source" => s.clone()),
            partial: metrics::counter!("replicator_partial_syncs_total", "source" => s.clone()),
            reconnects: metrics::counter!("replicator_reconnects_total", "source" => s.clone()),
            link_errors: err("link"),
            fatal: err("fatal"),
            info_errors: err("info"),
            master_offset: metrics::gauge!("replicator_master_offset_bytes", "source" => s.clone()),
            lag_bytes: metrics::gauge!("replicator_lag_bytes", "source" => s.clone()),
            lag_seconds: metrics::gauge!("replicator_lag_seconds", "source" => s),
        }
    }
}

impl Source {
    fn new(label: String) -> Self {
        let m = Handles::new(&label);
        m.up.set(0.0);
        Self {
            hot: Arc::new(Hot::new(&label)),
            label,
            phase: Phase::Connecting,
            master_offset: None,
            polled_at: None,
            samples: VecDeque::new(),
            poll_error: None,
            last_error: None,
            counts: [0; 3],
            m,
        }
    }

    fn count(&mut self, which: usize) {
        self.counts[which] += 1;
        let c = match which {
            FULL => &self.m.full,
            PARTIAL => &self.m.partial,
            _ => &self.m.reconnects,
        };
        c.increment(1);
    }

    fn set_phase(&mut self, p: Phase) {
        self.phase = p;
        self.m.up.set(if p == Phase::Streaming { 1.0 } else { 0.0 });
    }

    fn lag_bytes(&self) -> Option<u64> {
        Some(self.master_offset?.saturating_sub(self.hot.offset()?))
    }

    /// How long ago the master's offset passed ours: the polls' times, interpolated between
    /// the two around our offset (the write rate between them).
    fn lag_seconds(&self, now: Instant) -> Option<f64> {
        let ours = self.hot.offset()?;
        let &(_, latest) = self.samples.back()?;
        if ours >= latest {
            return Some(0.0);
        }
        let i = self.samples.iter().position(|&(_, m)| m > ours)?;
        let (t1, m1) = self.samples[i];
        let at = if i == 0 {
            // before the oldest sample: at least that long
            t1
        } else {
            let (t0, m0) = self.samples[i - 1];
            let part = (ours - m0) as f64 / (m1 - m0).max(1) as f64;
            t0 + t1.duration_since(t0).mul_f64(part.clamp(0.0, 1.0))
        };
        Some(now.saturating_duration_since(at).as_secs_f64())
    }

    fn health(&self, now: Instant, stale: Duration) -> SourceHealth {
        let lag_unknown = match (&self.poll_error, self.polled_at) {
            (Some((e, _)), None) => Some(e.clone()),
            (Some((e, _)), Some(t)) if now.duration_since(t) > stale => Some(format!(
                "last read {:.1}s ago; since then: {e}",
                now.duration_since(t).as_secs_f64()
            )),
            _ => None,
        };
        SourceHealth {
            source: self.label.clone(),
            phase: self.phase,
            offset: self.hot.offset(),
            master_offset: self.master_offset,
            lag_bytes: self.lag_bytes(),
            lag_seconds: self.lag_seconds(now),
            lag_unknown,
            last_error: self.last_error.clone(),
            full_syncs: self.counts[FULL],
            partial_syncs: self.counts[PARTIAL],
            reconnects: self.counts[RECONNECTS],
            keys: self.hot.keys.load(Ordering::Relaxed),
            commands: self.hot.commands.load(Ordering::Relaxed),
            received_bytes: self.hot.bytes.load(Ordering::Relaxed),
        }
    }
}

impl Monitor {
    /// A monitor whose single master is labelled `source`.
    pub(crate) fn new(source: impl Into<String>) -> Self {
        let m = Self::default();
        m.lock().single = source.into();
        m
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each source's figures, in shard order.
    pub fn sources(&self) -> Vec<SourceHealth> {
        let g = self.lock();
        let now = Instant::now();
        let stale = g.poll_every * 3;
        g.sources.iter().map(|s| s.health(now, stale)).collect()
    }

    /// `Ok` when every source streams and, where the master's offset is polled, lags by at
    /// most `max_lag_bytes`; else why not. A source whose credentials do not allow `INFO` is
    /// judged by its phase alone.
    pub fn ready(&self, max_lag_bytes: u64) -> Result<(), String> {
        let g = self.lock();
        if g.sources.is_empty() {
            return Err("no source has connected yet".into());
        }
        let now = Instant::now();
        let stale = g.poll_every * 3;
        let mut live = 0;
        for s in &g.sources {
            match s.phase {
                Phase::Retired => continue,
                Phase::Streaming => live += 1,
                p => return Err(format!("{}: {p}", s.label)),
            }
            if !g.polled {
                continue;
            }
            let h = s.health(now, stale);
            if let Some(why) = h.lag_unknown {
                if s.poll_error.as_ref().is_some_and(|(_, refused)| *refused) {
                    continue;
                }
                return Err(format!("{}: lag unknown: {why}", s.label));
            }
            match h.lag_bytes {
                Some(l) if l > max_lag_bytes => {
                    return Err(format!(
                        "{}: {l} bytes behind the master (more than {max_lag_bytes})",
                        s.label
                    ));
                }
                Some(_) => {}
                None => return Err(format!("{}: the master's offset is not known yet", s.label)),
            }
        }
        if live == 0 {
            return Err("no source streams".into());
        }
        Ok(())
    }

    fn source(g: &mut Inner, shard: Option<usize>) -> &mut Source {
        let i = shard.unwrap_or(0);
        while g.sources.len() <= i {
            let label = match shard {
                Some(_) => format!("shard-{}", g.sources.len()),
                None => g.single.clone(),
            };
            g.sources.push(Source::new(label));
        }
        &mut g.sources[i]
    }

    /// The lock-free figures of `shard`'s source (created when first seen).
    fn hot(&self, shard: Option<usize>) -> Arc<Hot> {
        Self::source(&mut self.lock(), shard).hot.clone()
    }

    /// Counts an event of `shard` (None: a single master).
    pub(crate) fn observe(&self, shard: Option<usize>, ev: &Result<Event, Error>) {
        let mut g = self.lock();
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                if g.sources.is_empty() {
                    Self::source(&mut g, shard);
                }
                let why = e.to_string();
                for s in &mut g.sources {
                    s.last_error = Some(why.clone());
                    s.set_phase(Phase::Ended);
                }
                g.sources[0].m.fatal.increment(1);
                return;
            }
        };
        let s = Self::source(&mut g, shard);
        match ev {
            Event::SyncStart(st) => {
                if st.full {
                    s.count(FULL);
                    s.set_phase(Phase::FullSync);
                } else {
                    s.count(PARTIAL);
                    s.set_phase(Phase::Streaming);
                }
                s.hot.start_at(st.offset);
            }
            Event::SyncEnd { bytes, .. } => {
                s.hot.add_bytes(*bytes);
                s.set_phase(Phase::Streaming);
            }
            Event::Disconnected { reason, .. } => {
                s.count(RECONNECTS);
                s.m.link_errors.increment(1);
                s.last_error = Some(reason.clone());
                s.set_phase(Phase::BackingOff);
            }
            ev => observe_hot(&s.hot, ev),
        }
    }
    /// The replica ended without an error (stopped).
    pub(crate) fn ended(&self) {
        for s in &mut self.lock().sources {
            s.set_phase(Phase::Ended);
        }
    }

    pub(crate) fn set_polled(&self, every: Duration) {
        let mut g = self.lock();
        g.polled = true;
        g.poll_every = every;
    }

    pub(crate) fn retire(&self, shard: usize) {
        let mut g = self.lock();
        Self::source(&mut g, Some(shard)).set_phase(Phase::Retired);
    }

    /// Sources known so far (the poller asks for this many addresses).
    pub(crate) fn len(&self) -> usize {
        self.lock().sources.len()
    }

    /// A poll of `shard`'s master: its offset, or why it failed (`refused`: not allowed).
    pub(crate) fn polled(&self, shard: Option<usize>, got: Result<u64, (String, bool)>) {
        let mut g = self.lock();
        let s = Self::source(&mut g, shard);
        let now = Instant::now();
        match got {
            Ok(m) => {
                s.master_offset = Some(m);
                s.polled_at = Some(now);
                s.poll_error = None;
                if s.samples.len() == SAMPLES {
                    s.samples.pop_front();
                }
                s.samples.push_back((now, m));
                s.m.master_offset.set(m as f64);
                if let Some(l) = s.lag_bytes() {
                    s.m.lag_bytes.set(l as f64);
                }
                if let Some(l) = s.lag_seconds(now) {
                    s.m.lag_seconds.set(l);
                }
            }
            Err(e) => {
                s.m.info_errors.increment(1);
                s.poll_error = Some(e);
            }
        }
    }
}

/// What most events change: keys, commands, our offset.
#[inline]
fn observe_hot(hot: &Hot, ev: &Event) {
    match ev {
        Event::Rdb(
            rdb_format::Item::Key(_)
            | rdb_format::Item::KeyStart(_)
            | rdb_format::Item::KeyChecked(_),
        ) => hot.key(),
        Event::Command(c) => hot.command(c.offset),
        Event::Offset { offset, .. } => hot.advance(*offset),
        _ => {}
    }
}

/// The forwarding loop's view of a [`Monitor`]: keys, commands and offsets go to each source's
/// atomics (kept here per shard), the rare events through the monitor's lock.
#[derive(Debug)]
pub(crate) struct Observer {
    monitor: Monitor,
    hot: Vec<Option<Arc<Hot>>>,
}

impl Observer {
    pub(crate) fn new(monitor: Monitor) -> Self {
        Self {
            monitor,
            hot: Vec::new(),
        }
    }

    /// Counts an event of `shard` (None: a single master).
    #[inline]
    pub(crate) fn observe(&mut self, shard: Option<usize>, ev: &Result<Event, Error>) {
        match ev {
            Ok(e @ (Event::Rdb(_) | Event::Command(_) | Event::Offset { .. })) => {
                let i = shard.unwrap_or(0);
                if self.hot.len() <= i {
                    self.hot.resize(i + 1, None);
                }
                let hot = self.hot[i].get_or_insert_with(|| self.monitor.hot(shard));
                observe_hot(hot, e);
            }
            ev => self.monitor.observe(shard, ev),
        }
    }

    /// The replica ended.
    pub(crate) fn ended(&self) {
        self.monitor.ended();
    }
}

/// `master_repl_offset` of an `INFO replication` reply.
pub(crate) fn master_repl_offset(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SyncStart;

    fn start(full: bool, offset: u64) -> Result<Event, Error> {
        Ok(Event::SyncStart(SyncStart {
            full,
            replid: "r".repeat(40),
            offset,
            resync: false,
            shard: None,
            node: None,
            history: None,
        }))
    }

    #[test]
    fn phases_counts_and_readiness() {
        let m = Monitor::new("127.0.0.1:7000");
        m.observe(None, &start(true, 100));
        assert_eq!(m.sources()[0].phase, Phase::FullSync);
        assert!(m.ready(10).unwrap_err().contains("full sync"));
        m.observe(
            None,
            &Ok(Event::SyncEnd {
                checksum: None,
                bytes: 500,
                shard: None,
            }),
        );
        m.observe(
            None,
            &Ok(Event::Offset {
                offset: 150,
                shard: None,
            }),
        );
        let s = &m.sources()[0];
        assert_eq!(
            (s.phase, s.received_bytes, s.offset),
            (Phase::Streaming, 550, Some(150))
        );
        assert_eq!(m.ready(10), Ok(()));
        m.set_polled(Duration::from_secs(1));
        assert!(m.ready(10).unwrap_err().contains("not known"));
        m.polled(None, Ok(200));
        assert!(m.ready(10).unwrap_err().contains("50 bytes behind"));
        assert_eq!(m.ready(50), Ok(()));
        m.polled(None, Err(("NOPERM".into(), true)));
        assert_eq!(m.ready(50), Ok(()));
        m.observe(
            None,
            &Ok(Event::Disconnected {
                reason: "gone".into(),
                shard: None,
            }),
        );
        let s = &m.sources()[0];
        assert_eq!((s.phase, s.reconnects), (Phase::BackingOff, 1));
        assert_eq!(s.last_error.as_deref(), Some("gone"));
        m.observe(None, &start(false, 150));
        assert_eq!(m.sources()[0].partial_syncs, 1);
    }

    #[test]
    fn lag_seconds_interpolates_between_polls() {
        let mut s = Source::new("x".into());
        let t0 = Instant::now();
        s.samples
            .extend([(t0, 1000), (t0 + Duration::from_secs(10), 2000)]);
        s.hot.start_at(1500);
        let now = t0 + Duration::from_secs(12);
        let l = s.lag_seconds(now).unwrap();
        assert!((l - 7.0).abs() < 0.01, "{l}");
        s.hot.start_at(2000);
        assert_eq!(s.lag_seconds(now), Some(0.0));
        s.hot.start_at(10);
        assert!((s.lag_seconds(now).unwrap() - 12.0).abs() < 0.01);
    }

    #[test]
    fn offset_from_info() {
        let info = "# Replication\r\nrole:master\r\nmaster_repl_offset:12345\r\n";
        assert_eq!(master_repl_offset(info), Some(12345));
        assert_eq!(master_repl_offset("role:master\r\n"), None);
    }
}
