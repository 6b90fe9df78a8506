//! `cargo xtask bench sync`: writing the bench data set into live servers, side by side.
//!
//! * into a standalone redis-server: `replicator sync FILE redis://…` next to
//!   `replicator dump FILE --format resp | redis-cli --pipe` and the same with `--restore`
//!   (wall time, keys/s, peak RSS of our process; every row into a fresh server, checked by
//!   its key count);
//! * into clusters of 1 and 3 masters (`redis-cli --cluster create`): how the rate scales;
//! * a live master under `redis-benchmark -P 16 -t set,lpush` synced into a standalone server
//!   for 20 s: commands/s applied, the largest lag (master offset − the offset the target
//!   acknowledged, from the checkpoint file) in bytes and in seconds of writes, peak RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use test_support::{Cluster, Server};

use crate::bench::measure;
use crate::bench_repl::{master_offset, peak_rss};

fn dbsize_all(ports: &[u16]) -> u64 {
    ports
        .iter()
        .map(|p| {
            test_support::Client::connect(*p)
                .and_then(|mut c| c.cmd(&["DBSIZE"]))
                .ok()
                .and_then(|r| r.int())
                .unwrap_or(0) as u64
        })
        .sum()
}

/// Runs `sh -c script`, returning wall seconds.
fn shell(script: &str) -> Result<f64> {
    let start = Instant::now();
    let out = Command::new("sh").arg("-c").arg(script).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        text.contains("errors: 0"),
        "{script}: redis-cli --pipe reported errors: {text}"
    );
    Ok(start.elapsed().as_secs_f64())
}

fn row(name: &str, secs: f64, keys: u64, rss_kib: Option<u64>, loaded: u64) {
    let rss = rss_kib.map_or_else(|| "—".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "| {name} | {secs:.2} | {:.0} | {rss} | {loaded} |",
        keys as f64 / secs
    );
}

fn standalone(bin: &Path, file: &Path, keys: u64) -> Result<()> {
    let server_bin = test_support::default_server()?;
    let cli = test_support::redis_cli().context("redis-cli")?;
    let (b, f, c) = (
        bin.to_str().unwrap_or_default(),
        file.to_str().unwrap_or_default(),
        cli.to_str().unwrap_or_default(),
    );
    println!(
        "into a standalone redis-server {} (fresh for every row):",
        server_bin.version
    );
    println!("| what | seconds | keys/s | peak RSS MiB (ours) | keys loaded |");
    println!("|---|---|---|---|---|");
    for round in 0..2 {
        let s = Server::start(&server_bin, &[], None)?;
        let url = format!("redis://127.0.0.1:{}", s.port);
        let (secs, rss) = measure(&[b, "sync", f, &url])?;
        if round == 1 {
            row(
                "replicator sync",
                secs,
                keys,
                Some(rss),
                dbsize_all(&[s.port]),
            );
        }
        let s = Server::start(&server_bin, &[], None)?;
        let secs = shell(&format!(
            "{b} dump {f} --format resp | {c} -p {} --pipe",
            s.port
        ))?;
        if round == 1 {
            row(
                "dump --format resp | redis-cli --pipe",
                secs,
                keys,
                None,
                dbsize_all(&[s.port]),
            );
        }
        let s = Server::start(&server_bin, &[], None)?;
        let secs = shell(&format!(
            "{b} dump {f} --format resp --restore | {c} -p {} --pipe",
            s.port
        ))?;
        if round == 1 {
            row(
                "dump --format resp --restore | redis-cli --pipe",
                secs,
                keys,
                None,
                dbsize_all(&[s.port]),
            );
        }
    }
    Ok(())
}

fn clusters(bin: &Path, file: &Path, keys: u64) -> Result<()> {
    let server_bin = test_support::default_server()?;
    let (b, f) = (
        bin.to_str().unwrap_or_default(),
        file.to_str().unwrap_or_default(),
    );
    println!();
    println!(
        "into a Redis Cluster (redis-cli --cluster create, {}):",
        server_bin.version
    );
    println!("| masters | seconds | keys/s | peak RSS MiB | keys loaded |");
    println!("|---|---|---|---|---|");
    for masters in [3, 6] {
        let cluster = Cluster::start(&server_bin, masters, 0)?;
        let url = format!("redis://127.0.0.1:{}", cluster.nodes[0].port);
        let (secs, rss) = measure(&[b, "sync", f, &url])?;
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
        row(
            &masters.to_string(),
            secs,
            keys,
            Some(rss),
            dbsize_all(&ports),
        );
    }
    Ok(())
}

/// Runs `redis-benchmark -P 16 -t set,lpush` at `master` for `seconds`, sampling every 50 ms
/// how far `applied` (an offset of the master's stream) is behind: the largest lag in bytes and
/// in seconds of writes (how long ago the master's offset passed it). Gives them and the
/// master's offset when the load began.
fn load_and_sample(
    master: &Server,
    seconds: u64,
    applied: impl Fn() -> Option<u64>,
) -> Result<(u64, f64, u64)> {
    let mut bench = crate::bench_repl::write_load(master.port)?;
    let start = Instant::now();
    let start_offset = master_offset(master);
    let (mut max_lag, mut max_lag_s) = (0u64, 0f64);
    let mut history: Vec<(Instant, u64)> = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        let mo = master_offset(master);
        history.push((now, mo));
        if let Some(a) = applied() {
            max_lag = max_lag.max(mo.saturating_sub(a));
            if a < mo {
                let reached = history
                    .iter()
                    .find(|(_, o)| *o > a)
                    .map_or(now, |(t, _)| *t);
                max_lag_s = max_lag_s.max(now.duration_since(reached).as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = bench.kill();
    let _ = bench.wait();
    Ok((max_lag, max_lag_s, start_offset))
}

/// The same load with a real replica (`REPLICAOF`) in our place: how far behind a redis-server
/// falls on this machine (its own processed offset, sampled every 50 ms).
fn live_real_replica(seconds: u64) -> Result<(u64, f64)> {
    let server_bin = test_support::default_server()?;
    let master = Server::start(&server_bin, &[("repl-diskless-sync-delay", "0")], None)?;
    let replica = Server::start(&server_bin, &[], None)?;
    replica
        .client()?
        .ok(&["REPLICAOF", "127.0.0.1", &master.port.to_string()])?;
    let offset =
        |s: &Server| -> Option<u64> { s.info("replication", "master_repl_offset")?.parse().ok() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.info("replication", "master_link_status").as_deref() != Some("up") {
        anyhow::ensure!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (max_lag, max_lag_s, _) = load_and_sample(&master, seconds, || offset(&replica))?;
    Ok((max_lag, max_lag_s))
}

fn live(bin: &Path, seconds: u64) -> Result<()> {
    let server_bin = test_support::default_server()?;
    let master = Server::start(&server_bin, &[("repl-diskless-sync-delay", "0")], None)?;
    let target = Server::start(&server_bin, &[], None)?;
    let dir = test_support::temp_dir("bench-sync");
    let ckpt = dir.join("checkpoint");
    let mut ours = Command::new(bin)
        .args([
            "sync",
            &format!("redis://127.0.0.1:{}", master.port),
            &format!("redis://127.0.0.1:{}", target.port),
            "--on-conflict",
            "replace",
        ])
        .arg("--checkpoint")
        .arg(&ckpt)
        // more flags to try (`BENCH_SYNC_EXTRA="--window 4096"`)
        .args(
            std::env::var("BENCH_SYNC_EXTRA")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stderr(Stdio::piped())
        .spawn()?;
    let acked = || test_support::checkpoint_offset(&ckpt);
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the sync did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let (max_lag, max_lag_s, start_offset) = load_and_sample(&master, seconds, acked)?;
    let elapsed = start.elapsed().as_secs_f64();
    let written = master_offset(&master) - start_offset;
    let catch_up = Instant::now();
    while acked() < Some(master_offset(&master)) && catch_up.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught = catch_up.elapsed().as_secs_f64();
    let rss = peak_rss(ours.id());
    Command::new("kill")
        .args(["-TERM", &ours.id().to_string()])
        .status()?;
    let _ = ours.wait();
    let applied = target
        .info("stats", "total_commands_processed")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    println!();
    println!(
        "a live master under redis-benchmark -P 16 -t set,lpush for {seconds} s, synced into a \
         standalone server (lag = master offset − acknowledged offset, sampled every 50 ms):"
    );
    println!(
        "| commands/s applied | stream MB/s | max lag bytes | max lag (s of writes) | catch-up after the load s | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.1} | {max_lag} | {max_lag_s:.2} | {caught:.2} | {:.1} |",
        applied / (elapsed + caught),
        written as f64 / elapsed / 1e6,
        rss as f64 / 1024.0
    );
    let (real_lag, real_lag_s) = live_real_replica(seconds)?;
    println!(
        "| (a redis-server replica under the same load) | — | {real_lag} | {real_lag_s:.2} | — | — |"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub(crate) fn run(bin: &Path, file: &Path) -> Result<()> {
    let keys = crate::bench::count_keys(bin, file)?;
    let size = std::fs::metadata(file)?.len();
    println!(
        "file: {} ({:.1} MB, {keys} keys)",
        file.display(),
        size as f64 / 1e6
    );
    if std::env::var_os("BENCH_SYNC_LIVE_ONLY").is_none() {
        standalone(bin, file, keys)?;
        clusters(bin, file, keys)?;
    }
    live(bin, 20)
}
