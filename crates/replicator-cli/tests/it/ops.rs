//! Operating the CLI: `/metrics` read with a Prometheus parser, `/health` and `/ready` through a
//! sync, a killed link and a stalled one; sync's sink metrics against the target's own counts;
//! file jobs' figures; the configuration's layers and `replicator config`; secrets kept out of
//! logs, metrics and health.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as J;
use test_support::{Server, ServerBin, free_port, proxy::Proxy};

use crate::{replicator, testdata};

fn bin() -> ServerBin {
    test_support::default_server().expect("redis-server")
}

/// `GET path` on 127.0.0.1:port: the status code and the body.
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Every sample of `/metrics`, parsed by a Prometheus text-format parser, as
/// `name{label=value,…}` (labels sorted) → value.
pub(crate) fn metrics(port: u16) -> BTreeMap<String, f64> {
    let Some((200, body)) = get(port, "/metrics") else {
        return BTreeMap::new();
    };
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics is Prometheus text");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (format!("{}{{{}}}", s.metric, labels.join(",")), v)
        })
        .collect()
}

fn wait(what: &str, within: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(within);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn health(port: u16) -> J {
    let (code, body) = get(port, "/health").expect("/health answers");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("/health is JSON")
}

fn ready(port: u16) -> (u16, String) {
    get(port, "/ready").expect("/ready answers")
}

fn stop(mut child: Child) -> String {
    let (ok, err) = crate::term(&mut child);
    assert!(ok, "{err}");
    err
}

/// The commands of a `replicate` JSON Lines output, by name.
fn commands_in(out: &std::path::Path) -> BTreeMap<String, u64> {
    let mut n = BTreeMap::new();
    for l in std::fs::read_to_string(out).unwrap().lines() {
        let v: J = serde_json::from_str(l).unwrap();
        if let Some(c) = v.get("cmd").and_then(|c| c.get(0)).and_then(J::as_str) {
            *n.entry(c.to_uppercase()).or_default() += 1;
        }
    }
    n
}

const SECRET: &str = "pw-0ps-s3cret";

#[test]
fn replicate_metrics_health_and_readiness_through_a_kill_and_a_stall() {
    let master = Server::start(&bin(), &[("repl-diskless-sync-delay", "0")], None).unwrap();
    let mut c = master.client().unwrap();
    c.ok(&[
        "ACL",
        "SETUSER",
        "ops",
        "on",
        &format!(">{SECRET}"),
        "~*",
        "+@all",
    ])
    .unwrap();
    for i in 0..100 {
        c.ok(&["SET", &format!("before:{i}"), "v"]).unwrap();
    }
    let proxy = Proxy::start(master.port).unwrap();
    // nothing passes at first: the replica is seen connecting, not ready
    proxy.stall(true);
    let port = free_port();
    let dir = test_support::temp_dir("ops-replicate");
    let out = dir.join("out.jsonl");
    let url = format!("redis://ops:{SECRET}@127.0.0.1:{}", proxy.port);
    let child = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(["replicate", &url, "-o", out.to_str().unwrap()])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--ready-lag", "1000", "--read-timeout", "300"])
        .args(["--log-format", "json", "--log-level", "debug"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait("the metrics address", 30, || get(port, "/health").is_some());
    let (code, why) = ready(port);
    assert_eq!(code, 503, "{why}");
    let h = health(port);
    let phases: Vec<&str> = h["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["phase"].as_str())
        .collect();
    assert!(phases.iter().all(|p| *p == "connecting"), "{h}");

    // 503 → 200 once the sync is done and the lag is under the threshold
    proxy.stall(false);
    wait("/ready", 60, || ready(port).0 == 200);
    let n = 500;
    for i in 0..n {
        c.ok(&["SET", &format!("k:{i}"), &i.to_string()]).unwrap();
    }
    let source = format!("source=127.0.0.1:{}", proxy.port);
    let at = |m: &BTreeMap<String, f64>, name: &str| {
        m.get(&format!("{name}{{{source}}}"))
            .copied()
            .unwrap_or(-1.0)
    };
    let master_offset = || -> f64 {
        master
            .info("replication", "master_repl_offset")
            .unwrap()
            .parse()
            .unwrap()
    };
    wait("the commands", 60, || {
        let m = metrics(port);
        at(&m, "replicator_offset_bytes") == master_offset()
            && at(&m, "replicator_master_offset_bytes") == master_offset()
    });
    let m = metrics(port);
    let seen = commands_in(&out);
    assert_eq!(seen.get("SET"), Some(&n), "{seen:?}");
    let total: u64 = seen.values().sum();
    // the counter is every command delivered: the n SETs and the master's SELECT
    assert_eq!(at(&m, "replicator_commands_total"), total as f64, "{m:?}");
    assert_eq!(total, n + seen.get("SELECT").copied().unwrap_or(0));
    assert_eq!(at(&m, "replicator_keys_total"), 100.0, "{m:?}");
    assert_eq!(at(&m, "replicator_full_syncs_total"), 1.0);
    assert_eq!(at(&m, "replicator_partial_syncs_total"), 0.0);
    assert_eq!(at(&m, "replicator_up"), 1.0);
    assert_eq!(at(&m, "replicator_lag_bytes"), 0.0);
    assert!(at(&m, "replicator_received_bytes_total") > 0.0);
    let h = health(port);
    let s = &h["sources"][0];
    assert_eq!(s["phase"], "streaming", "{h}");
    assert_eq!(s["offset"].as_f64(), Some(master_offset()), "{h}");
    assert_eq!(s["commands"].as_u64(), Some(total), "{h}");

    // a killed link: one reconnection, one partial sync, no full sync
    c.ok(&["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
    wait("the partial sync", 60, || {
        let m = metrics(port);
        at(&m, "replicator_partial_syncs_total") == 1.0 && at(&m, "replicator_up") == 1.0
    });
    let m = metrics(port);
    assert_eq!(at(&m, "replicator_reconnects_total"), 1.0, "{m:?}");
    assert_eq!(at(&m, "replicator_full_syncs_total"), 1.0, "{m:?}");
    assert_eq!(
        m.get(&format!("replicator_errors_total{{kind=link,{source}}}")),
        Some(&1.0),
        "{m:?}"
    );
    wait("/ready after the partial sync", 60, || ready(port).0 == 200);
    assert!(health(port)["sources"][0]["last_error"].is_string());

    // a stalled link (the master answers others) while writes go on: the lag passes the
    // threshold and /ready says so; /health still says streaming
    proxy.stall_open(true);
    let big = "x".repeat(200);
    for i in 0..50 {
        c.ok(&["SET", &format!("stalled:{i}"), &big]).unwrap();
    }
    wait("/ready to see the lag", 60, || {
        let (code, why) = ready(port);
        code == 503 && why.contains("bytes behind")
    });
    let m = metrics(port);
    assert!(at(&m, "replicator_lag_bytes") > 1000.0, "{m:?}");
    assert!(at(&m, "replicator_lag_seconds") > 0.0, "{m:?}");
    assert_eq!(health(port)["sources"][0]["phase"], "streaming");
    proxy.stall_open(false);
    wait("/ready after the stall", 60, || ready(port).0 == 200);
    wait("the stalled writes", 60, || {
        at(&metrics(port), "replicator_offset_bytes") == master_offset()
    });

    // no secret in what people and machines read
    let body = get(port, "/metrics").unwrap().1 + &get(port, "/health").unwrap().1;
    let err = stop(child);
    assert!(!body.contains(SECRET), "{body}");
    assert!(!err.contains(SECRET), "the password is in the logs");
    // the logs are JSON lines and tell the story
    let lines: Vec<J> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    let said = |what: &str| {
        lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(what)))
            .count()
    };
    assert_eq!(said("full sync begins"), 1, "{err}");
    assert_eq!(said("partial sync begins"), 1, "{err}");
    assert!(said("link to the master lost") >= 1, "{err}");
}

#[test]
fn sync_metrics_match_the_targets_own_counts() {
    let master = Server::start(&bin(), &[("repl-diskless-sync-delay", "0")], None).unwrap();
    let target = Server::start(&bin(), &[], None).unwrap();
    // the target wants a password
    target
        .client()
        .unwrap()
        .ok(&["CONFIG", "SET", "requirepass", SECRET])
        .unwrap();
    let mut c = master.client().unwrap();
    for i in 0..200 {
        c.ok(&["RPUSH", &format!("l:{i}"), "a", "b"]).unwrap();
    }
    let port = free_port();
    let taddr = format!("127.0.0.1:{}", target.port);
    let child = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args([
            "sync",
            &format!("redis://127.0.0.1:{}", master.port),
            &format!("redis://:{SECRET}@{taddr}"),
            "--mode",
            "restore",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "debug"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait("/ready", 60, || {
        get(port, "/ready").is_some_and(|(c, _)| c == 200)
    });
    let n = 300;
    for i in 0..n {
        c.ok(&["INCR", &format!("n:{}", i % 7)]).unwrap();
    }
    let mo: f64 = master
        .info("replication", "master_repl_offset")
        .unwrap()
        .parse()
        .unwrap();
    let source = format!("source=127.0.0.1:{}", master.port);
    let t = format!("target={taddr}");
    wait("the target to acknowledge everything", 60, || {
        let m = metrics(port);
        m.get(&format!(
            "replicator_sink_acked_offset_bytes{{{source},{t}}}"
        )) == Some(&mo)
            && m.get(&format!("replicator_sink_inflight_commands{{{t}}}")) == Some(&0.0)
    });
    let m = metrics(port);
    // what the target says it ran
    let mut tc = target.client().unwrap();
    tc.ok(&["AUTH", SECRET]).unwrap();
    let stats = tc.cmd(&["INFO", "commandstats"]).unwrap().text();
    let calls = |cmd: &str| -> f64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|r| r.split(',').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    assert!(calls("auth") >= 2.0, "ours and the sink's: {stats}");
    assert_eq!(calls("restore"), 200.0, "{stats}");
    assert_eq!(calls("incr"), n as f64, "{stats}");
    let written = m[&format!("replicator_sink_written_total{{{t}}}")];
    // every data command the target ran was one the sink wrote and saw acknowledged (a SELECT
    // goes only where the database changes: none here)
    assert_eq!(
        written,
        calls("restore") + calls("incr") + calls("select"),
        "{m:?}\n{stats}"
    );
    // the source counted the n INCRs and the SELECT a master sends before its first command
    assert_eq!(
        m[&format!("replicator_commands_total{{{source}}}")],
        n as f64 + 1.0
    );
    assert_eq!(
        m[&format!("replicator_sink_redirects_total{{kind=moved,{t}}}")],
        0.0
    );
    assert_eq!(m[&format!("replicator_sink_retries_total{{{t}}}")], 0.0);
    let h = health(port);
    assert_eq!(
        h["target"]["acknowledged_commands"].as_f64(),
        Some(written),
        "{h}"
    );
    assert_eq!(h["sources"][0]["phase"], "streaming", "{h}");
    let body = get(port, "/metrics").unwrap().1 + &h.to_string();
    let err = stop(child);
    assert!(!body.contains(SECRET), "{body}");
    assert!(!err.contains(SECRET), "the password is in the logs: {err}");
    assert!(err.contains("full sync begins"), "{err}");
}

#[test]
fn a_file_jobs_figures_are_served_until_the_linger_ends() {
    let file = testdata().join("redis-7.0-compact.rdb");
    let keys: f64 = {
        let o = replicator(&["dump", "-f", "count", file.to_str().unwrap()]);
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    let (_, m, label) = checked_with_metrics(&file);
    assert_eq!(m[&format!("replicator_file_keys{{{label}}}")], keys);
    let len = std::fs::metadata(&file).unwrap().len() as f64;
    assert_eq!(m[&format!("replicator_file_read_bytes{{{label}}}")], len);

    // a multi-part AOF: its keys and commands, as `check` counts them
    let dir = testdata().join("aof/redis-7.0-preamble");
    let o = replicator(&["check", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (keys, commands): (f64, f64) = text
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("keys: ")?;
            let (k, rest) = rest.split_once(", commands: ")?;
            let c = rest.split(',').next()?;
            Some((k.parse().ok()?, c.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no totals in {text}"));
    assert!(commands > 0.0);
    let (_, m, label) = checked_with_metrics(&dir);
    assert_eq!(m[&format!("replicator_file_keys{{{label}}}")], keys);
    assert_eq!(m[&format!("replicator_file_commands{{{label}}}")], commands);
}

/// `check FILE --metrics-addr … --metrics-linger 60`: its port, its metrics once the check is
/// done (the process is then killed), and the `file` label.
fn checked_with_metrics(file: &std::path::Path) -> (u16, BTreeMap<String, f64>, String) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(["check", file.to_str().unwrap()])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-linger", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let label = format!("file={}", file.display());
    wait("the check's last figures", 30, || {
        metrics(port).get(&format!("replicator_file_done{{{label}}}")) == Some(&1.0)
    });
    let m = metrics(port);
    // /health is read before the kill
    let job = health(port)["job"].clone();
    assert_eq!(job, "done");
    child.kill().unwrap();
    child.wait().unwrap();
    (port, m, label)
}

fn config_of(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `name = value  # source` of `replicator config` output.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn flags_win_over_the_environment_over_the_file_over_defaults() {
    let dir = test_support::temp_dir("ops-config");
    let file = dir.join("replicator.toml");
    std::fs::write(
        &file,
        "# a daemon's settings\nwindow = 10\nbatch = 5\nmode = \"restore\"\n\n[sync]\n\
         target = \"redis://:hunter2@10.0.0.9:7000\"\nwindow-mib = 9\n",
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    let (ok, out, err) = config_of(
        &[
            "config", "sync", "dump.rdb", "--config", cfg, "--window", "30",
        ],
        &[("REPLICATOR_BATCH", "7"), ("REPLICATOR_WINDOW", "20")],
    );
    assert!(ok, "{err}");
    assert!(line(&out, "window").ends_with("# flag"), "{out}");
    assert!(line(&out, "window").starts_with("window = 30 "), "{out}");
    assert!(line(&out, "batch").contains("= 7 "), "{out}");
    assert!(
        line(&out, "batch").ends_with("# environment REPLICATOR_BATCH"),
        "{out}"
    );
    assert!(
        line(&out, "mode").ends_with(&format!("# file {cfg}:4")),
        "{out}"
    );
    assert!(
        line(&out, "window-mib").ends_with(&format!("# file {cfg}:8")),
        "{out}"
    );
    assert!(line(&out, "on-conflict").ends_with("# default"), "{out}");
    assert!(line(&out, "source").ends_with("# flag"), "{out}");
    // the password in the file's URL is not shown
    assert!(!out.contains("hunter2"), "{out}");
    assert!(
        line(&out, "target").contains(":<redacted>@10.0.0.9:7000"),
        "{out}"
    );

    // the layers reach a real run: the file says keys, the environment count, the flag jsonl
    let rdb = testdata().join("redis-7.0-compact.rdb");
    std::fs::write(
        &file,
        format!(
            "[dump]\nformat = \"keys\"\nfile = {:?}\n",
            rdb.to_str().unwrap()
        ),
    )
    .unwrap();
    let (ok, keys, err) = config_of(&["dump", "--config", cfg], &[]);
    assert!(ok, "{err}");
    let (_, count, _) = config_of(
        &["dump", "--config", cfg],
        &[("REPLICATOR_FORMAT", "count")],
    );
    assert_eq!(count.trim(), keys.lines().count().to_string());
    let (_, jsonl, _) = config_of(
        &["dump", "--config", cfg, "-f", "jsonl"],
        &[("REPLICATOR_FORMAT", "count")],
    );
    assert_eq!(jsonl.lines().count(), keys.lines().count());
    assert!(jsonl.starts_with('{'), "{jsonl}");
}

#[test]
fn an_unknown_key_in_the_file_is_an_error_naming_its_line() {
    let dir = test_support::temp_dir("ops-config-bad");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "window = 10\n\n[sync]\nmode = \"auto\"\nwindwo = 3\n",
    )
    .unwrap();
    let (ok, _, err) = config_of(
        &[
            "sync",
            "a.rdb",
            "redis://127.0.0.1:1",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("line 5") && err.contains("windwo"), "{err}");
    std::fs::write(&file, "verbose = true\n").unwrap();
    let (ok, _, err) = config_of(&["check", "x.rdb", "--config", file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("line 1") && err.contains("verbose"), "{err}");
    std::fs::write(&file, "window = [\n").unwrap();
    let (ok, _, err) = config_of(&["check", "x.rdb", "--config", file.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("bad.toml"), "{err}");
}

#[test]
fn the_options_table_in_the_docs_is_the_tools() {
    let o = replicator(&["config", "--table"]);
    assert!(o.status.success());
    let table = String::from_utf8(o.stdout).unwrap();
    let doc =
        std::fs::read_to_string(test_support::workspace_root().join("docs/config.md")).unwrap();
    assert!(
        doc.contains(&table),
        "docs/config.md is out of step: paste `replicator config --table`:\n{table}"
    );
}
