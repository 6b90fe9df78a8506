//! Two-channel full syncs against real masters: Redis 8.2's rdb channel and Valkey 8.1 and
//! 9.1's dual channel, under writes during the RDB transfer; every fallback to the classic
//! path; a cut RDB channel and a cut main channel; and a write load that makes the classic
//! sync loop on a small replica output buffer while the two-channel one completes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::{Client, Server, ServerBin, random::Writes, server_named};

use crate::rebuild::pipe_into;
use crate::sync::same_data;

fn wait(what: &str, within: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(within);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A master for two-channel syncs: diskless, slowed to about `ms_per_1000_keys` per thousand
/// keys of RDB, with `extra` settings.
fn master(bin: &ServerBin, extra: &[(&str, &str)], key_delay_us: u32) -> Server {
    let delay = key_delay_us.to_string();
    let mut args = vec![
        ("repl-diskless-sync", "yes"),
        ("repl-diskless-sync-delay", "0"),
        ("rdb-key-save-delay", delay.as_str()),
    ];
    args.extend_from_slice(extra);
    Server::start(bin, &args, None).unwrap()
}

/// `n` plain keys, pipelined, plus random writes of every type.
fn fill(s: &Server, n: usize, seed: u64) -> Writes {
    let mut c = s.client().unwrap();
    for i in 0..n {
        c.send(&["SET", &format!("plain:{i}"), &format!("value {i}")])
            .unwrap();
    }
    c.drain(n).unwrap();
    let mut w = Writes::new(seed, 200);
    w.run(&mut c, 3000).unwrap();
    w
}

fn start(url: &str, out: &std::path::Path, channels: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(["replicate", url, "--format", "resp", "-o"])
        .arg(out)
        .args(["--sync-channels", channels, "--log-level", "debug"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) -> (bool, String) {
    crate::term(&mut child)
}

/// `INFO replication`'s replica lines.
fn replica_lines(s: &Server) -> Vec<String> {
    let text = s
        .client()
        .unwrap()
        .cmd(&["INFO", "replication"])
        .unwrap()
        .text();
    text.lines()
        .filter(|l| l.starts_with("slave"))
        .map(str::to_owned)
        .collect()
}

/// Our replica is online at the master's offset (a Valkey main channel says
/// `type=replica` once online).
fn caught_up(s: &Server) -> bool {
    let Some(mo) = s.info("replication", "master_repl_offset") else {
        return false;
    };
    let lines = replica_lines(s);
    lines.len() == 1
        && lines[0].contains("state=online")
        && lines[0].contains(&format!("offset={mo},"))
}

/// The writes held during the transfer, from our log (`held=N`).
fn held(err: &str) -> u64 {
    err.lines()
        .filter_map(|l| l.split("held=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The master fully synced, under writes during the transfer, over two channels: the RESP
/// output rebuilds it key for key.
fn rebuilds_under_writes(name: &str, extra: &[(&str, &str)], master_says: &str) {
    let Some(bin) = server_named(name, "two-channel sync") else {
        return;
    };
    let cli = test_support::redis_cli().expect("redis-cli");
    let m = master(&bin, extra, 300);
    let mut writes = fill(&m, 4000, 0x2c4a_0001);
    let dir = test_support::temp_dir(&format!("two-channel-{name}"));
    let out = dir.join("out.resp");
    let url = format!("redis://127.0.0.1:{}", m.port);
    let child = start(&url, &out, "two", &[]);
    // writes while the RDB is in flight, in two databases
    let mut c = m.client().unwrap();
    let mut other = m.client().unwrap();
    other.ok(&["SELECT", "3"]).unwrap();
    let mut during = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !replica_lines(&m).iter().any(|l| l.contains("state=online")) {
        assert!(Instant::now() < deadline, "the sync did not finish");
        writes.run(&mut c, 20).unwrap();
        other
            .ok(&["INCR", &format!("during:{}", during % 5)])
            .unwrap();
        during += 1;
    }
    // and after it
    writes.run(&mut c, 200).unwrap();
    wait("our replica at the master's offset", 60, || caught_up(&m));
    let (ok, err) = stop(child);
    assert!(ok, "{err}");
    assert!(during > 0, "no write during the transfer");
    assert!(err.contains("opening the RDB channel"), "{err}");
    assert_eq!(err.matches("full sync begins").count(), 1, "{err}");
    assert!(
        held(&err) > 0,
        "nothing was held during the transfer: {err}"
    );
    assert!(m.log().contains(master_says), "{}", m.log());

    let fresh = Server::start(&bin, &[], None).unwrap();
    pipe_into(&cli, fresh.port, &std::fs::read(&out).unwrap(), name);
    let (mut a, mut b) = (m.client().unwrap(), fresh.client().unwrap());
    same_data(&mut a, &mut b, &bin, &[0, 3], name);
}

#[test]
fn redis_8_2_rdb_channel_rebuilds_the_master_under_writes() {
    rebuilds_under_writes(
        "redis-8.2",
        &[("repl-rdb-channel", "yes")],
        "Full sync will continue with dedicated rdb channel",
    );
}

#[test]
fn valkey_9_1_dual_channel_rebuilds_the_master_under_writes() {
    rebuilds_under_writes(
        "valkey-9.1",
        &[("dual-channel-replication-enabled", "yes")],
        "is capable of dual channel synchronization",
    );
}

#[test]
fn valkey_8_1_dual_channel_rebuilds_the_master_under_writes() {
    rebuilds_under_writes(
        "valkey-8.1",
        &[("dual-channel-replication-enabled", "yes")],
        "is capable of dual channel synchronization",
    );
}

/// A master that does not offer two channels gets a classic sync with `auto`, and `two`
/// fails naming what is missing.
fn falls_back(bin: &ServerBin, extra: &[(&str, &str)], what: &str) {
    let cli = test_support::redis_cli().expect("redis-cli");
    let m = master(bin, extra, 0);
    fill(&m, 500, 0x2c4a_0002);
    let dir = test_support::temp_dir("two-channel-fallback");
    let out = dir.join("out.resp");
    let url = format!("redis://127.0.0.1:{}", m.port);
    let child = start(&url, &out, "auto", &[]);
    wait(&format!("{what}: the classic sync"), 60, || caught_up(&m));
    m.client().unwrap().ok(&["SET", "after", "1"]).unwrap();
    wait(&format!("{what}: the stream"), 60, || caught_up(&m));
    let (ok, err) = stop(child);
    assert!(ok, "{what}: {err}");
    assert!(!err.contains("RDB channel"), "{what}: {err}");
    let fresh = Server::start(bin, &[], None).unwrap();
    pipe_into(&cli, fresh.port, &std::fs::read(&out).unwrap(), what);
    same_data(
        &mut m.client().unwrap(),
        &mut fresh.client().unwrap(),
        bin,
        &[0],
        what,
    );

    let o = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(["replicate", &url, "--sync-channels", "two", "--rdb-only"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{what}: --sync-channels two passed");
    assert!(
        e.contains("classic full sync") && e.contains("two channels need"),
        "{what}: {e}"
    );
}

#[test]
fn masters_without_two_channels_get_a_classic_sync() {
    let debian = test_support::default_server().expect("redis-server");
    falls_back(&debian, &[], "Redis 7.0 (no rdb channel)");
    if let Some(r8) = server_named("redis-8.2", "two-channel fallbacks") {
        falls_back(
            &r8,
            &[("repl-rdb-channel", "no")],
            "Redis 8.2, rdb channel off",
        );
        falls_back(
            &r8,
            &[("repl-rdb-channel", "yes"), ("repl-diskless-sync", "no")],
            "Redis 8.2, disk-based sync",
        );
    }
    if let Some(v9) = server_named("valkey-9.1", "two-channel fallbacks") {
        falls_back(&v9, &[], "Valkey 9.1, dual channel off (the default)");
        falls_back(
            &v9,
            &[
                ("dual-channel-replication-enabled", "yes"),
                ("repl-diskless-sync", "no"),
            ],
            "Valkey 9.1, disk-based sync",
        );
    }
}

/// `CLIENT LIST` ids of our RDB channel and main channel (Redis: the RDB channel has the `C`
/// flag; Valkey: it asked `SYNC`).
fn channel_ids(c: &mut Client) -> (Option<String>, Option<String>) {
    let list = c
        .cmd(&["CLIENT", "LIST", "TYPE", "replica"])
        .unwrap()
        .text();
    let (mut rdb, mut main) = (None, None);
    for l in list.lines() {
        let field = |k: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_owned()
        };
        let id = field("id");
        if field("flags").contains('C') || field("cmd") == "sync" {
            rdb = Some(id);
        } else {
            main = Some(id);
        }
    }
    (rdb, main)
}

/// A channel killed during the transfer: the replica reconnects and a clean full sync over
/// two channels follows; the output still rebuilds the master.
fn a_cut_channel_leads_to_a_clean_full_sync(name: &str, extra: &[(&str, &str)], cut_rdb: bool) {
    let Some(bin) = server_named(name, "two-channel faults") else {
        return;
    };
    let cli = test_support::redis_cli().expect("redis-cli");
    let m = master(&bin, extra, 500);
    fill(&m, 3000, 0x2c4a_0003);
    let dir = test_support::temp_dir("two-channel-cut");
    let out = dir.join("out.resp");
    let url = format!("redis://127.0.0.1:{}", m.port);
    let child = start(&url, &out, "two", &[]);
    let mut c = m.client().unwrap();
    let victim = {
        let mut found = None;
        wait("both channels", 30, || {
            let (rdb, main) = channel_ids(&mut c);
            found = if cut_rdb { rdb } else { main }.filter(|_| channel_ids(&mut c).0.is_some());
            found.is_some()
        });
        found.unwrap()
    };
    c.ok(&["SET", "before-the-cut", "1"]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.ok(&["CLIENT", "KILL", "ID", &victim]).unwrap();
    c.ok(&["SET", "after-the-cut", "1"]).unwrap();
    wait("the second sync", 90, || caught_up(&m));
    c.ok(&["SET", "streamed", "1"]).unwrap();
    wait("the stream", 30, || caught_up(&m));
    let (ok, err) = stop(child);
    assert!(ok, "{err}");
    let what = if cut_rdb {
        "RDB channel"
    } else {
        "main channel"
    };
    assert!(err.contains("link to the master lost"), "{what}: {err}");
    assert_eq!(err.matches("full sync begins").count(), 2, "{what}: {err}");
    assert_eq!(
        err.matches("opening the RDB channel").count(),
        2,
        "{what}: {err}"
    );
    let fresh = Server::start(&bin, &[], None).unwrap();
    pipe_into(&cli, fresh.port, &std::fs::read(&out).unwrap(), what);
    same_data(
        &mut m.client().unwrap(),
        &mut fresh.client().unwrap(),
        &bin,
        &[0],
        what,
    );
}

#[test]
fn a_cut_rdb_or_main_channel_leads_to_a_clean_full_sync() {
    for cut_rdb in [true, false] {
        a_cut_channel_leads_to_a_clean_full_sync(
            "redis-8.2",
            &[("repl-rdb-channel", "yes")],
            cut_rdb,
        );
        a_cut_channel_leads_to_a_clean_full_sync(
            "valkey-9.1",
            &[("dual-channel-replication-enabled", "yes")],
            cut_rdb,
        );
    }
}

/// `mem_total_replication_buffers` of `INFO memory` (0 where the server has none).
fn repl_buffers(s: &Server) -> u64 {
    s.info("memory", "mem_total_replication_buffers")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Writes `value`-sized SETs from another thread until `stop` is set; the number written.
fn writer(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut c = Client::connect(port).unwrap();
        let value = "w".repeat(4096);
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for _ in 0..16 {
                c.send(&["SET", &format!("load:{}", n % 20_000), &value])
                    .unwrap();
                n += 1;
            }
            c.drain(16).unwrap();
            // about 1,000 writes (4 MB) a second: far more than the output buffer holds over
            // a transfer, far less than a replica applies
            std::thread::sleep(Duration::from_millis(16));
        }
        n
    })
}

#[test]
fn heavy_writes_loop_a_classic_sync_and_not_a_two_channel_one() {
    let Some(bin) = server_named("redis-8.2", "the output-buffer loop") else {
        return;
    };
    // a small replica output buffer, a transfer of about 3 s, and writes of ~4 KiB each
    let limits = [
        ("repl-rdb-channel", "yes"),
        // two seconds of writes: a classic transfer (about 7 s) overruns it for sure, a
        // two-channel replica starved of CPU for a while (tests run side by side) does not
        ("client-output-buffer-limit", "replica 8mb 4mb 4"),
    ];
    let mut report = Vec::new();
    for channels in ["one", "two"] {
        let m = master(&bin, &limits, 1000);
        fill(&m, 3000, 0x2c4a_0004);
        let dir = test_support::temp_dir("two-channel-loop");
        let out = dir.join("out.resp");
        let url = format!("redis://127.0.0.1:{}", m.port);
        let stop_writes = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = writer(m.port, stop_writes.clone());
        let child = start(&url, &out, channels, &["--hold-mib", "1"]);
        // 12 s of writes: four transfers' worth
        let mut peak = 0;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(12) {
            peak = peak.max(repl_buffers(&m));
            std::thread::sleep(Duration::from_millis(50));
        }
        stop_writes.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = w.join().unwrap();
        let log = m.log();
        let overruns = log.matches("overcoming of output buffer limits").count();
        if channels == "two" {
            wait("the two-channel replica to catch up", 60, || caught_up(&m));
        }
        let (ok, err) = stop(child);
        assert!(ok, "{err}");
        let syncs = err.matches("full sync begins").count();
        report.push(format!(
            "{channels} channel(s): {written} writes in 12 s, {syncs} full syncs, {overruns} \
             output-buffer overruns, peak mem_total_replication_buffers {peak} bytes"
        ));
        if channels == "one" {
            // the classic path: the buffer overruns, the master drops us, and it starts again
            assert!(overruns >= 1, "{report:?}\n{log}");
            assert!(syncs >= 2, "{report:?}\n{err}");
        } else {
            assert_eq!(overruns, 0, "{report:?}\n{log}");
            assert_eq!(syncs, 1, "{report:?}\n{err}");
            assert!(err.contains("spilling to a file"), "{err}");
            let cli = test_support::redis_cli().expect("redis-cli");
            let fresh = Server::start(&bin, &[], None).unwrap();
            pipe_into(
                &cli,
                fresh.port,
                &std::fs::read(&out).unwrap(),
                "two channels",
            );
            same_data(
                &mut m.client().unwrap(),
                &mut fresh.client().unwrap(),
                &bin,
                &[0],
                "two channels under load",
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}
