//! Replication figures (`cargo xtask bench replication`):
//!
//! * full sync of the bench data set through `replicator replicate --rdb-only --format resp`
//!   (output to /dev/null), next to a real `redis-server --replicaof` doing the same full sync
//!   (time from its start until its log says the sync finished); best of 3 each;
//! * the command stream under `redis-benchmark -P 16 -t set,lpush` for 20 s at the master:
//!   commands/s consumed, the largest lag (master offset − our ACK, sampled every 50 ms) in
//!   bytes and in seconds of writes (how long ago the master's offset passed our ACK), and our
//!   peak RSS;
//! * a full sync under that write load from Redis 8.2 and Valkey 9.1 over one connection and
//!   over two (`--sync-channels`): time, lag after, our peak RSS, the master's peak
//!   `mem_total_replication_buffers` (`BENCH_TWO_CHANNELS_ONLY=1` for these rows alone).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use test_support::Server;

use crate::bench::measure;

fn replica_offset(s: &Server) -> Option<u64> {
    let line = s.info("replication", "slave0")?;
    line.split(',')
        .find_map(|p| p.strip_prefix("offset=")?.parse().ok())
}

pub(crate) fn master_offset(s: &Server) -> u64 {
    s.info("replication", "master_repl_offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0)
}

/// `redis-benchmark -P 16 -t set,lpush -r 100000` at the server on `port`, running until
/// killed: the write load of every replication and sync bench.
pub(crate) fn write_load(port: u16) -> Result<Child> {
    Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-P", "16", "-t", "set,lpush"])
        .args(["-r", "100000", "-n", "2000000000", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("redis-benchmark (Debian's redis-tools)")
}

/// Peak resident set of a running process, from /proc (KiB).
pub(crate) fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A real replica: seconds from its start until its log says the full sync finished.
fn real_replica_sync(master: &Server) -> Result<f64> {
    let bin = test_support::default_server()?;
    let dir = test_support::temp_dir("bench-replica");
    let port = test_support::free_port();
    let log = dir.join("replica.log");
    let start = Instant::now();
    let mut child = Command::new(&bin.path)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--replicaof", "127.0.0.1", &master.port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = start + Duration::from_secs(600);
    let secs = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("MASTER <-> REPLICA sync: Finished with success") {
            break start.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the real replica never finished its sync"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(secs)
}

fn full_sync(bin: &Path, file: &Path) -> Result<()> {
    let server_bin = test_support::default_server()?;
    let master = Server::start(
        &server_bin,
        &[("repl-diskless-sync-delay", "0")],
        Some(file),
    )?;
    let size = std::fs::metadata(file)?.len() as f64 / 1e6;
    let keys = crate::bench::count_keys(bin, file)?;
    let url = format!("redis://127.0.0.1:{}", master.port);
    let b = bin.to_string_lossy();
    let mut ours = (f64::MAX, 0);
    let mut real = f64::MAX;
    for _ in 0..3 {
        let (s, rss) = measure(&[&b, "replicate", &url, "--rdb-only", "--format", "resp"])?;
        if s < ours.0 {
            ours = (s, rss);
        }
        real = real.min(real_replica_sync(&master)?);
    }
    println!();
    println!(
        "full sync of {size:.1} MB ({keys} keys) from redis-server {} (diskless, best of 3):",
        server_bin.version
    );
    println!("| what | seconds | MB/s | peak RSS MiB | × real replica |");
    println!("|---|---|---|---|---|");
    println!(
        "| redis-server --replicaof (until \"sync: Finished\") | {real:.2} | {:.0} | — | 1.0 |",
        size / real
    );
    println!(
        "| replicator replicate --rdb-only --format resp > /dev/null | {:.2} | {:.0} | {:.1} | {:.2} |",
        ours.0,
        size / ours.0,
        ours.1 as f64 / 1024.0,
        real / ours.0
    );
    Ok(())
}

fn stream(bin: &Path, ack_ms: u64, seconds: u64) -> Result<()> {
    let server_bin = test_support::default_server()?;
    let master = Server::start(&server_bin, &[("repl-diskless-sync-delay", "0")], None)?;
    let url = format!("redis://127.0.0.1:{}", master.port);
    let mut ours: Child = Command::new(bin)
        .args([
            "replicate",
            &url,
            "--format",
            "resp",
            "-o",
            "/dev/null",
            "--ack-interval",
            &ack_ms.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !master
        .info("replication", "slave0")
        .is_some_and(|l| l.contains("state=online"))
    {
        anyhow::ensure!(Instant::now() < deadline, "the replica did not come online");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut bench = write_load(master.port)?;
    let start = Instant::now();
    let start_offset = master_offset(&master);
    let (mut max_lag, mut max_lag_s, mut samples) = (0u64, 0f64, 0u64);
    // (time, master offset) samples: the age of the newest byte we ACKed is the time since the
    // master's offset first reached our ACK
    let mut history: Vec<(Instant, u64)> = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        let mo = master_offset(&master);
        history.push((now, mo));
        if let Some(ack) = replica_offset(&master) {
            max_lag = max_lag.max(mo.saturating_sub(ack));
            if ack < mo {
                let reached = history
                    .iter()
                    .find(|(_, o)| *o > ack)
                    .map_or(now, |(t, _)| *t);
                let lag_s = now.duration_since(reached).as_secs_f64();
                if std::env::var_os("BENCH_TRACE").is_some() && lag_s > 1.0 {
                    eprintln!(
                        "t={:.2} mo={mo} ack={ack} lag={lag_s:.2}",
                        now.duration_since(start).as_secs_f64()
                    );
                }
                max_lag_s = max_lag_s.max(lag_s);
            }
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = bench.kill();
    let _ = bench.wait();
    let written = master_offset(&master) - start_offset;
    let elapsed = start.elapsed().as_secs_f64();
    let rate = written as f64 / elapsed;
    // let the replica catch up, then stop it and read its count
    let catch_up = Instant::now();
    while replica_offset(&master) != Some(master_offset(&master))
        && catch_up.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = peak_rss(ours.id());
    Command::new("kill")
        .args(["-TERM", &ours.id().to_string()])
        .status()?;
    let _ = ours.wait();
    let mut err = String::new();
    if let Some(mut e) = ours.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    let commands: u64 = err
        .split(" commands received")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    println!(
        "| {ack_ms} ms | {:.0} | {:.1} | {max_lag} | {:.2} | {:.1} | {samples} |",
        commands as f64 / elapsed,
        rate / 1e6,
        max_lag_s,
        rss as f64 / 1024.0
    );
    Ok(())
}

/// `mem_total_replication_buffers` of a server (0 where it has none).
fn repl_buffers(s: &Server) -> u64 {
    s.info("memory", "mem_total_replication_buffers")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A full sync of the bench data set from `server` under `redis-benchmark -P 16 -t set,lpush`,
/// over one connection or two: seconds until the master says our replica is online, the
/// largest lag in the 10 s after, our peak RSS and the master's peak replication buffers.
fn two_channel_row(bin: &Path, file: &Path, server: &str, channels: &str) -> Result<()> {
    let Some(sbin) = test_support::server_named(server, "two-channel bench") else {
        return Ok(());
    };
    let valkey = sbin.is_valkey();
    let feature = if valkey {
        ("dual-channel-replication-enabled", "yes")
    } else {
        ("repl-rdb-channel", "yes")
    };
    let master = Server::start(
        &sbin,
        &[
            ("repl-diskless-sync", "yes"),
            ("repl-diskless-sync-delay", "0"),
            feature,
        ],
        Some(file),
    )?;
    let mut bench = write_load(master.port)?;
    std::thread::sleep(Duration::from_millis(500));
    let url = format!("redis://127.0.0.1:{}", master.port);
    let start = Instant::now();
    let mut ours: Child = Command::new(bin)
        .args(["replicate", &url, "--format", "resp", "-o", "/dev/null"])
        .args(["--sync-channels", channels])
        .stderr(Stdio::null())
        .spawn()?;
    let online = |m: &Server| {
        let text = m
            .client()
            .and_then(|mut c| c.cmd(&["INFO", "replication"]))
            .map(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("slave") && l.contains("state=online"))
    };
    let mut peak_buf = 0;
    let deadline = start + Duration::from_secs(300);
    while !online(&master) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{server} {channels}: no sync in 300 s"
        );
        peak_buf = peak_buf.max(repl_buffers(&master));
        std::thread::sleep(Duration::from_millis(20));
    }
    let sync_s = start.elapsed().as_secs_f64();
    let mut max_lag = 0u64;
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(10) {
        let mo = master_offset(&master);
        if let Some(ack) = replica_offset(&master) {
            max_lag = max_lag.max(mo.saturating_sub(ack));
        }
        peak_buf = peak_buf.max(repl_buffers(&master));
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss = peak_rss(ours.id());
    let _ = bench.kill();
    let _ = bench.wait();
    let _ = ours.kill();
    let _ = ours.wait();
    println!(
        "| {} {} | {channels} | {sync_s:.2} | {max_lag} | {:.1} | {:.1} |",
        if valkey { "Valkey" } else { "Redis" },
        sbin.version,
        rss as f64 / 1024.0,
        peak_buf as f64 / 1048576.0
    );
    Ok(())
}

fn two_channels(bin: &Path, file: &Path) -> Result<()> {
    println!();
    println!(
        "full sync under redis-benchmark -P 16 -t set,lpush, one connection or two (time until the master says online; lag = master offset − our ACK over the next 10 s):"
    );
    println!(
        "| master | channels | full sync s | max lag bytes after | our peak RSS MiB | master peak replication buffers MiB |"
    );
    println!("|---|---|---|---|---|---|");
    for server in ["redis-8.2", "valkey-9.1"] {
        for channels in ["one", "two"] {
            two_channel_row(bin, file, server, channels)?;
        }
    }
    Ok(())
}

pub(crate) fn run(bin: &Path, file: &Path) -> Result<()> {
    if std::env::var_os("BENCH_TWO_CHANNELS_ONLY").is_some() {
        return two_channels(bin, file);
    }
    if std::env::var_os("BENCH_STREAM_ONLY").is_none() {
        full_sync(bin, file)?;
        two_channels(bin, file)?;
    }
    println!();
    println!(
        "command stream, redis-benchmark -P 16 -t set,lpush for 20 s (lag = master offset − our ACK, sampled every 50 ms):"
    );
    println!(
        "| ACK interval | commands/s consumed | stream MB/s | max lag bytes | max lag (s of writes) | peak RSS MiB | samples |"
    );
    println!("|---|---|---|---|---|---|---|");
    stream(bin, 1000, 20)?;
    stream(bin, 100, 20)?;
    Ok(())
}
