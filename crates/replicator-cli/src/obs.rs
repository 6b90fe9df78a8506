//! Operating the CLI: the log subscriber, and the metrics address with `/metrics` (Prometheus
//! text), `/health` and `/ready`.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use replicator::observe::Monitor;
use serde_json::{Value, json};

/// How log lines look.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Installs the log subscriber on stderr: `level` (a `RUST_LOG`-style filter) when given,
/// else `RUST_LOG`, else `default`.
pub(crate) fn init_logs(
    format: LogFormat,
    level: Option<&str>,
    default: &str,
) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).with_context(|| format!("--log-level {l:?}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LineClearing(std::io::stderr().is_terminal()));
    let done = match format {
        LogFormat::Text => b
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    };
    done.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Stderr for log lines; on a terminal each line first clears the status line drawn there
/// (it is drawn again within half a second).
struct LineClearing(bool);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineClearing {
    type Writer = LineClearingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineClearingWriter(self.0)
    }
}

struct LineClearingWriter(bool);

impl std::io::Write for LineClearingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if self.0 {
            // one write per event: the clearing and the line go out together
            let mut line = Vec::with_capacity(buf.len() + 4);
            line.extend_from_slice(b"\r\x1b[K");
            line.extend_from_slice(buf);
            err.write_all(&line)?;
        } else {
            err.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Figures about the sync's target for `/health`, and gauges to set before a scrape.
type Hook = Box<dyn Fn() -> Option<(&'static str, Value)> + Send + Sync>;

/// What the metrics address serves from.
pub(crate) struct Observed {
    metrics: PrometheusHandle,
    monitor: Mutex<Option<Monitor>>,
    hooks: Mutex<Vec<Hook>>,
    ready_lag: u64,
    /// A live source is expected: not ready before it is watched.
    live: bool,
    /// Milliseconds since `started` when the work's runtime last ticked (0: not watched).
    beat: Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
    /// A file job: what it is doing (`decoding`, `done`, …).
    job: Mutex<Option<String>>,
}

impl Observed {
    /// The replica whose sources `/health` and `/ready` report.
    pub(crate) fn watch(&self, m: Monitor) {
        if let Ok(mut g) = self.monitor.lock() {
            *g = Some(m);
        }
    }

    /// Ticks once a second on the current tokio runtime (the work's): `/health` answers 503
    /// when it stopped ticking for 10 s.
    pub(crate) fn heartbeat(&self, rt: &tokio::runtime::Runtime) {
        let (beat, started) = (self.beat.clone(), self.started);
        rt.spawn(async move {
            loop {
                let ms = started.elapsed().as_millis() as u64;
                beat.store(ms.max(1), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// How long ago the work's runtime ticked, when it is watched.
    fn silent_for(&self) -> Option<Duration> {
        let b = self.beat.load(std::sync::atomic::Ordering::Relaxed);
        (b > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(b))
        })
    }

    /// A file job's phase for `/health` (`/ready` says 200 for files: there is no lag).
    pub(crate) fn job(&self, phase: &str) {
        if let Ok(mut g) = self.job.lock() {
            *g = Some(phase.to_owned());
        }
    }

    /// Runs before every scrape and `/health`: sets gauges and gives a part of the health
    /// document.
    pub(crate) fn hook(
        &self,
        f: impl Fn() -> Option<(&'static str, Value)> + Send + Sync + 'static,
    ) {
        if let Ok(mut g) = self.hooks.lock() {
            g.push(Box::new(f));
        }
    }

    fn run_hooks(&self) -> Vec<(&'static str, Value)> {
        self.hooks
            .lock()
            .map(|h| h.iter().filter_map(|f| f()).collect())
            .unwrap_or_default()
    }

    fn monitor(&self) -> Option<Monitor> {
        self.monitor.lock().ok().and_then(|m| m.clone())
    }

    fn health(&self) -> Value {
        let parts = self.run_hooks();
        let sources: Vec<Value> = self
            .monitor()
            .map(|m| m.sources())
            .unwrap_or_default()
            .iter()
            .map(|s| {
                json!({
                    "source": s.source,
                    "phase": s.phase.as_str(),
                    "offset": s.offset,
                    "master_offset": s.master_offset,
                    "lag_bytes": s.lag_bytes,
                    "lag_seconds": s.lag_seconds,
                    "lag_unknown": s.lag_unknown,
                    "last_error": s.last_error,
                    "full_syncs": s.full_syncs,
                    "partial_syncs": s.partial_syncs,
                    "reconnects": s.reconnects,
                    "keys": s.keys,
                    "commands": s.commands,
                    "received_bytes": s.received_bytes,
                })
            })
            .collect();
        let stuck = self.silent_for().filter(|d| *d > Duration::from_secs(10));
        let mut doc = json!({
            "status": if stuck.is_some() { "stuck" } else { "ok" },
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "sources": sources,
        });
        if let Some(j) = self.job.lock().ok().and_then(|j| j.clone()) {
            doc["job"] = json!(j);
        }
        if let Some(d) = stuck {
            doc["stuck_seconds"] = json!(d.as_secs_f64());
        }
        for (k, v) in parts {
            doc[k] = v;
        }
        doc
    }

    fn ready(&self) -> Result<(), String> {
        match self.monitor() {
            Some(m) => m.ready(self.ready_lag),
            None if self.live => Err("starting".into()),
            None => Ok(()),
        }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |code: StatusCode, kind: &str, body: String| {
            Response::builder()
                .status(code)
                .header("content-type", kind)
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_default()
        };
        let json_reply = |code, v: &Value| reply(code, "application/json", format!("{v}\n"));
        match req.uri().path() {
            "/metrics" => {
                self.run_hooks();
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            "/health" => {
                let h = self.health();
                let code = if h["status"] == "ok" {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_reply(code, &h)
            }
            "/ready" => match self.ready() {
                Ok(()) => json_reply(StatusCode::OK, &json!({"ready": true})),
                Err(why) => json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "reason": why}),
                ),
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: /metrics, /health, /ready\n".into(),
            ),
        }
    }
}

/// Installs the Prometheus recorder and serves `/metrics`, `/health` and `/ready` on `addr`
/// from a thread of its own (it answers whatever the work is doing). `live`: a replica will be
/// [watched](Observed::watch); until then `/ready` says 503.
pub(crate) fn serve(addr: &str, ready_lag: u64, live: bool) -> anyhow::Result<Arc<Observed>> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let observed = Arc::new(Observed {
        metrics,
        monitor: Mutex::new(None),
        hooks: Mutex::new(Vec::new()),
        ready_lag,
        live,
        beat: Arc::default(),
        started: Instant::now(),
        job: Mutex::new(None),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime for the metrics address")?;
    let o = observed.clone();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let o = o.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let r = o.respond(&req);
                            async move { Ok::<_, Infallible>(r) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .context("cannot start the metrics thread")?;
    tracing::info!(addr = %local, "serving /metrics, /health and /ready");
    Ok(observed)
}

/// The decode figures of `dump` and `check`, labelled with the file.
pub(crate) struct FileMetrics {
    keys: metrics::Gauge,
    commands: metrics::Gauge,
    bytes: metrics::Gauge,
    duration: metrics::Gauge,
    done: metrics::Gauge,
    started: Instant,
}

impl FileMetrics {
    pub(crate) fn new(file: &str) -> Self {
        let f = file.to_owned();
        Self {
            keys: metrics::gauge!("replicator_file_keys", "file" => f.clone()),
            commands: metrics::gauge!("replicator_file_commands", "file" => f.clone()),
            bytes: metrics::gauge!("replicator_file_read_bytes", "file" => f.clone()),
            duration: metrics::gauge!("replicator_file_duration_seconds", "file" => f.clone()),
            done: metrics::gauge!("replicator_file_done", "file" => f),
            started: Instant::now(),
        }
    }

    /// Figures so far.
    pub(crate) fn set(&self, keys: u64, bytes: u64) {
        self.keys.set(keys as f64);
        self.bytes.set(bytes as f64);
        self.duration.set(self.started.elapsed().as_secs_f64());
    }

    /// Commands so far (AOF files).
    pub(crate) fn commands(&self, n: u64) {
        self.commands.set(n as f64);
    }

    /// The last figures; `ok`: the file was read whole and sound.
    pub(crate) fn finish(&self, keys: u64, bytes: u64, ok: bool) {
        self.set(keys, bytes);
        self.done.set(if ok { 1.0 } else { -1.0 });
    }
}
