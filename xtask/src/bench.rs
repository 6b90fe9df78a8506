//! `cargo xtask bench [files|replication|sync] [--keys N] [--hash-fields N] [--reuse]`:
//! whole-file figures, then replication figures (`bench_repl.rs`); `sync` alone writes the data
//! set into live servers and clusters (`bench_sync.rs`).
//!
//! Makes a mixed data set with a real redis-server (DEBUG POPULATE strings, lists, sets, zsets,
//! hashes, streams, plus one big hash), saves it, then times `replicator check`,
//! `replicator dump --format count`, `dump --format jsonl > /dev/null` and the memory report
//! (`memory --format csv|json|html`) (wall time, MB/s,
//! keys/s, peak RSS from `getrusage` of the child) next to redis-server's own load time of the
//! same file (from its log) and redis-check-rdb; `dump --format rdb` and `--restore` next to
//! redis-server's `SAVE`; `check` and `dump` at 1, 2, 4 and 8 threads (alternated rounds,
//! with how near each other the cores were in each); and a small-strings file
//! (`DEBUG POPULATE`) next to the `rdb` 0.4 crate's CLI.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use test_support::Server;

/// The number after `name` in `args`, or `default`.
pub(crate) fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads each argument of `cmd` that names a regular file once, so that every run finds its
/// input in the page cache. Some machines evict pages they see unused for a few seconds (a
/// VM's free page reporting, DAMON reclaim): without this, the first thread of a run to touch
/// them waited for the disk, a different amount each run.
pub(crate) fn warm(cmd: &[&str]) -> Result<()> {
    for arg in cmd {
        let path = Path::new(arg);
        if path.is_file() {
            let mut f = std::fs::File::open(path)?;
            std::io::copy(&mut f, &mut std::io::sink())?;
        }
    }
    Ok(())
}

/// Runs a command with stdout to /dev/null under `/usr/bin/time`, returning (seconds, peak KiB);
/// its input files are read into the page cache first ([`warm`]).
pub(crate) fn measure(cmd: &[&str]) -> Result<(f64, u64)> {
    warm(cmd)?;
    let time = Path::new("/usr/bin/time");
    let start = Instant::now();
    let out = if time.is_file() {
        Command::new(time)
            .arg("-f")
            .arg("MAXRSS %M")
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?
    } else {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?
    };
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| {
            l.strip_prefix("MAXRSS ")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    Ok((secs, rss))
}

/// Seconds until two runs of `cmd` started at once both ended: the machine's own scaling,
/// with nothing shared between the two but the machine.
fn measure_pair(cmd: &[&str]) -> Result<f64> {
    warm(cmd)?;
    let start = Instant::now();
    let spawn = || {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let (mut a, mut b) = (spawn()?, spawn()?);
    let (sa, sb) = (a.wait()?, b.wait()?);
    anyhow::ensure!(sa.success() && sb.success(), "{cmd:?} failed");
    Ok(start.elapsed().as_secs_f64())
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    // `bench` runs both parts; `bench files` / `bench replication` one of them
    let which = args.first().map(String::as_str);
    let (bin, file) = prepare(args)?;
    if which == Some("sync") {
        return crate::bench_sync::run(&bin, &file);
    }
    if which != Some("replication") {
        files(&bin, &file)?;
    }
    if which != Some("files") {
        crate::bench_repl::run(&bin, &file)?;
    }
    Ok(())
}

/// Builds the CLI and makes (or reuses) the data set; returns their paths.
fn prepare(args: &[String]) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let keys = arg(args, "--keys", 1_000_000);
    let fields = arg(args, "--hash-fields", 2_000_000);
    let root = super::root();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--release", "-p", "replicator-cli"])
        .status()?;
    anyhow::ensure!(status.success(), "release build failed");
    let bin = root.join("target/release/replicator");
    let server_bin = test_support::default_server()?;
    let file = root.join(format!("target/bench-mixed-{keys}-{fields}.rdb"));
    if !(args.iter().any(|a| a == "--reuse") && file.is_file()) {
        let server = Server::start(&server_bin, &[], None)?;
        let mut c = server.client()?;
        eprintln!(
            "bench: filling {} with {keys} keys and a {fields}-field hash",
            server_bin.name
        );
        fill(&mut c, keys, fields)?;
        c.ok(&["SAVE"])?;
        std::fs::copy(server.dir.join("dump.rdb"), &file).context("copy bench file")?;
    }
    page_cache_read_back(&file)?;
    Ok((bin, file))
}

/// Drops `file` from the page cache ([`test_support::drop_from_page_cache`]) and reads it
/// back, so that every run finds it as a file read from the disk is held rather than as it
/// was written: a kernel may hold a file read sequentially in large folios, which it maps up
/// to 2 MiB at a time, and peak RSS is higher so (`check --threads 8` of the mixed file with
/// 4 MiB batches: 56.9 MiB against 44.9 for the file as written). Later runs' reading of it
/// keeps that.
fn page_cache_read_back(file: &Path) -> Result<()> {
    test_support::drop_from_page_cache(file);
    warm(&[&file.to_string_lossy()])
}

/// Whole-file figures: check / count / jsonl next to redis' own load and redis-check-rdb.
fn files(bin: &Path, file: &Path) -> Result<()> {
    let server_bin = test_support::default_server()?;
    let size = std::fs::metadata(file)?.len();
    let total_keys = count_keys(bin, file)?;
    let mb = size as f64 / 1e6;
    println!("file: {} ({mb:.1} MB, {total_keys} keys)", file.display());

    // redis-server's own load time, from its log (best of 3, like the other rows)
    let mut load = f64::MAX;
    for _ in 0..3 {
        warm(&[&file.to_string_lossy()])?;
        let start = Instant::now();
        let loader = Server::start(&server_bin, &[], Some(file))?;
        let wall = start.elapsed().as_secs_f64();
        let secs = loader
            .log()
            .lines()
            .find_map(|l| l.split("DB loaded from disk: ").nth(1))
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(wall);
        load = load.min(secs);
    }
    println!("| what | seconds | MB/s | keys/s | peak RSS MiB | × redis load |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| redis-server {} load | {load:.2} | {:.0} | {:.0} | — | 1.0 |",
        server_bin.version,
        mb / load,
        total_keys as f64 / load
    );
    let f = file.to_str().unwrap_or_default();
    let b = bin.to_str().unwrap_or_default();
    let mut rows: Vec<(&str, Vec<&str>)> = vec![
        ("replicator check", vec![b, "check", f]),
        // the target is a single core's
        (
            "replicator check --threads 1",
            vec![b, "check", f, "--threads", "1"],
        ),
        (
            "replicator dump --format count",
            vec![b, "dump", f, "--format", "count"],
        ),
        (
            "replicator dump --format count --threads 1",
            vec![b, "dump", f, "--format", "count", "--threads", "1"],
        ),
        (
            "replicator dump --format jsonl",
            vec![b, "dump", f, "--format", "jsonl"],
        ),
        (
            "replicator memory --format csv",
            vec![b, "memory", f, "--format", "csv"],
        ),
        (
            "replicator memory --format json",
            vec![b, "memory", f, "--format", "json"],
        ),
        (
            "replicator memory --format html",
            vec![b, "memory", f, "--format", "html"],
        ),
    ];
    if Path::new("/usr/bin/redis-check-rdb").is_file() {
        rows.push(("redis-check-rdb", vec!["/usr/bin/redis-check-rdb", f]));
    }
    for (name, cmd) in rows {
        let (s, rss) = best_of_3(&cmd)?;
        println!(
            "| {name} | {s:.2} | {:.0} | {:.0} | {:.1} | {:.2} |",
            mb / s,
            total_keys as f64 / s,
            rss as f64 / 1024.0,
            load / s
        );
    }
    encoder_rows(b, file, mb, total_keys, load)?;
    threads_rows(b, file, mb)?;
    strings_rows(b)?;
    let rdbtools = match std::env::var_os("BENCH_NO_RDBTOOLS") {
        None => rdbtools_memory(b, file, mb, total_keys, load),
        Some(_) => Ok(()),
    };
    if let Err(e) = rdbtools {
        println!("(redis-rdb-tools memory report not measured: {e:#})");
    }
    Ok(())
}

/// redis-rdb-tools' memory report (`rdb -c memory`, Python; reads RDB <= 9 only) beside ours,
/// both on an RDB 9 copy of the file that we write; one run each (rdb-tools takes minutes).
/// rdb-tools is installed with pip into target/bench-tools (BENCH_NO_RDBTOOLS=1 skips this).
fn rdbtools_memory(b: &str, file: &Path, mb: f64, keys: u64, load: f64) -> Result<()> {
    let root = super::root();
    let tools = root.join("target/bench-tools/rdbtools");
    if !tools.join("bin/rdb").is_file() {
        let st = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--target"])
            .arg(&tools)
            .args(["rdbtools", "python-lzf"])
            .status()?;
        anyhow::ensure!(st.success(), "pip install rdbtools failed");
    }
    let v9 = root.join("target/bench-mixed-v9.rdb");
    if !v9.is_file() {
        let st = Command::new(b)
            .arg("dump")
            .arg(file)
            .args(["--format", "rdb", "--target-version", "9", "-o"])
            .arg(&v9)
            .status()?;
        anyhow::ensure!(st.success(), "RDB 9 copy failed");
    }
    let v = v9.to_str().unwrap_or_default();
    let rdb = tools.join("bin/rdb");
    let script = format!(
        "PYTHONPATH={} exec python3 {} -c memory {v}",
        tools.display(),
        rdb.display()
    );
    for (name, cmd) in [
        (
            "replicator memory --format csv (RDB 9 copy)",
            vec![b, "memory", v, "--format", "csv"],
        ),
        (
            "redis-rdb-tools 0.1.15 `rdb -c memory` (RDB 9 copy)",
            vec!["sh", "-c", script.as_str()],
        ),
    ] {
        let (s, rss) = measure(&cmd)?;
        println!(
            "| {name} | {s:.2} | {:.0} | {:.0} | {:.1} | {:.2} |",
            mb / s,
            keys as f64 / s,
            rss as f64 / 1024.0,
            load / s
        );
    }
    Ok(())
}

/// Best of three runs of `cmd`: (seconds, peak KiB).
fn best_of_3(cmd: &[&str]) -> Result<(f64, u64)> {
    let mut best: Option<(f64, u64)> = None;
    for _ in 0..3 {
        let (s, rss) = measure(cmd)?;
        if best.is_none_or(|(b, _)| s < b) {
            best = Some((s, rss));
        }
    }
    Ok(best.unwrap_or_default())
}

/// `dump --format rdb` and `--restore` (big keys encoded chunk by chunk) beside redis-server's
/// `SAVE` of the same data, timed from the client.
fn encoder_rows(b: &str, file: &Path, mb: f64, keys: u64, load: f64) -> Result<()> {
    let server_bin = test_support::default_server()?;
    let server = Server::start(&server_bin, &[], Some(file))?;
    let mut c = server.client()?;
    let mut save = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        c.ok(&["SAVE"])?;
        save = save.min(start.elapsed().as_secs_f64());
    }
    drop(server);
    println!();
    println!(
        "| encoding (the same file) | seconds | MB/s | keys/s | peak RSS MiB | × redis SAVE |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| redis-server {} `SAVE` | {save:.2} | {:.0} | {:.0} | — | 1.0 |",
        server_bin.version,
        mb / save,
        keys as f64 / save
    );
    let out = super::root().join("target/bench-out.rdb");
    let o = out.to_str().unwrap_or_default();
    let f = file.to_str().unwrap_or_default();
    for (name, cmd) in [
        (
            "replicator dump --format rdb -o FILE",
            vec![b, "dump", f, "--format", "rdb", "-o", o],
        ),
        (
            "replicator dump --format resp --restore",
            vec![b, "dump", f, "--format", "resp", "--restore"],
        ),
    ] {
        let (s, rss) = best_of_3(&cmd)?;
        println!(
            "| {name} | {s:.2} | {:.0} | {:.0} | {:.1} | {:.2} |",
            mb / s,
            keys as f64 / s,
            rss as f64 / 1024.0,
            save / s
        );
    }
    let _ = std::fs::remove_file(&out);
    let _ = load;
    Ok(())
}

/// Rounds of the thread-count rows: each round runs every thread count once, one after
/// another, so that each count's runs and the one-thread runs they are compared with happen
/// side by side (the machine's speed drifts over a bench run). (With 5, two of the rounds
/// falling in one of this VM's slow stretches moved a median by up to a tenth. With 9, the
/// rounds with the cores near each other were 2 to 6 of a mode's.)
const THREAD_ROUNDS: usize = 15;

/// `check`, `dump --format jsonl` and `--format resp` at 1, 2, 4 and 8 threads, alternated
/// ([`THREAD_ROUNDS`] rounds): the best and the median time of each, and the median over the
/// rounds of one thread's time over this count's in the same round. Each round also runs two
/// one-thread processes at once: what two cores of this machine give over one when nothing is
/// shared (on a VM, two busy vCPUs may each run slower than one alone), the ceiling for two
/// threads. Before each run and after the last of a round, a cache line's round trip between
/// two threads is timed ([`cores`](crate::cores)): the last column has the medians over the
/// rounds whose cores were near each other throughout.
fn threads_rows(b: &str, file: &Path, mb: f64) -> Result<()> {
    let f = file.to_str().unwrap_or_default();
    let counts = ["1", "2", "4", "8"];
    let modes = [
        ("check", vec!["check", f]),
        ("dump --format jsonl", vec!["dump", f, "--format", "jsonl"]),
        ("dump --format resp", vec!["dump", f, "--format", "resp"]),
    ];
    // per mode: runs[count][round] (seconds, peak KiB), and per round the pair's seconds
    // (two one-thread runs at once) and the round trips before and after it
    let mut all = Vec::new();
    for (_, args) in &modes {
        let mut runs = vec![Vec::new(); counts.len()];
        let mut pairs = Vec::new();
        let mut trips = Vec::new();
        let on = |threads| [&[b][..], args, &["--threads", threads]].concat();
        for _ in 0..THREAD_ROUNDS {
            // a round trip before each run and after the last
            let mut round = Vec::new();
            for (i, t) in counts.iter().enumerate() {
                round.extend(crate::cores::round_trip_ns());
                runs[i].push(measure(&on(t))?);
            }
            round.extend(crate::cores::round_trip_ns());
            pairs.push(measure_pair(&on("1"))?);
            round.extend(crate::cores::round_trip_ns());
            trips.push(round);
        }
        all.push((runs, pairs, trips));
    }
    // near or not against the lowest round trip of the whole table
    let trips: Vec<Vec<f64>> = all.iter().flat_map(|m| m.2.clone()).collect();
    let near_all = crate::cores::near_rounds(&trips);
    let near_count = near_all.iter().filter(|&&n| n).count();
    println!();
    println!(
        "| threads | what | best s | median s | MB/s (best) | peak RSS MiB | × 1 thread (median of {THREAD_ROUNDS} rounds) | × 1 thread, rounds with the cores near |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // per mode: two threads against the machine's ceiling in the same rounds
    let mut against = Vec::new();
    for (m, ((name, _), (runs, pairs, _))) in modes.iter().zip(&all).enumerate() {
        let near = &near_all[m * THREAD_ROUNDS..(m + 1) * THREAD_ROUNDS];
        // the median of `ratios` over all rounds, and over the near ones (with their count)
        let both = |ratios: &[f64]| {
            let near: Vec<f64> = ratios
                .iter()
                .zip(near)
                .filter(|&(_, &n)| n)
                .map(|(r, _)| *r)
                .collect();
            let near = if near.is_empty() {
                "— (0)".to_string()
            } else {
                format!("{:.2} ({})", median(&near), near.len())
            };
            (median(ratios), near)
        };
        for (i, t) in counts.iter().enumerate() {
            let secs: Vec<f64> = runs[i].iter().map(|r| r.0).collect();
            let ratios: Vec<f64> = (runs[0].iter().zip(&runs[i]))
                .map(|(one, this)| one.0 / this.0)
                .collect();
            let best = secs.iter().copied().fold(f64::MAX, f64::min);
            let rss = runs[i].iter().map(|r| r.1).max().unwrap_or(0);
            let (all_rounds, near_median) = both(&ratios);
            println!(
                "| {t} | {name} | {best:.2} | {:.2} | {:.0} | {:.1} | {all_rounds:.2} | {near_median} |",
                median(&secs),
                mb / best,
                rss as f64 / 1024.0,
            );
        }
        // two files' work in the pair's time against one file's in one run's
        let ratios: Vec<f64> = (runs[0].iter().zip(pairs))
            .map(|(one, pair)| 2.0 * one.0 / pair)
            .collect();
        let best = pairs.iter().copied().fold(f64::MAX, f64::min);
        let (all_rounds, near_median) = both(&ratios);
        println!(
            "| 2 × 1, two processes at once (the machine's ceiling) | {name} | {best:.2} | {:.2} | {:.0} | — | {all_rounds:.2} | {near_median} |",
            median(pairs),
            2.0 * mb / best,
        );
        let ratios: Vec<f64> = (runs[1].iter().zip(pairs))
            .map(|(two, pair)| against_ceiling(two.0, *pair))
            .collect();
        let (all_rounds, near_median) = both(&ratios);
        against.push(format!("`{name}` {all_rounds:.2}, near {near_median}"));
    }
    println!(
        "\nTwo threads against the ceiling, each round's two-thread ratio over its pair's \
         (medians, all rounds and near rounds): {}.",
        against.join("; ")
    );
    let flat: Vec<f64> = trips.iter().flatten().copied().collect();
    if flat.is_empty() {
        println!("\nNo round trip timed (one core): no round counts as near.");
    } else {
        let lowest = flat.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = flat.iter().copied().fold(0.0, f64::max);
        println!(
            "\nA cache line's round trip between two threads, before each run and after each round's last: lowest \
             {lowest:.0} ns, median {:.0}, highest {highest:.0}. {near_count} of {} rounds had none \
             over twice the lowest (the cores near each other); in the others two threads that \
             hand data to each other pay more for it than two processes that do not.",
            median(&flat),
            near_all.len(),
        );
    }
    Ok(())
}

/// A round's two-thread ratio over its ceiling's: (one ÷ two threads) ÷ (two files' work in
/// the pair's time ÷ one file's in one run's), in which the one-thread time cancels out: the
/// pair's seconds against twice the two-thread run's. 1 where two threads do as well as two
/// processes that share nothing.
fn against_ceiling(two_threads: f64, pair: f64) -> f64 {
    pair / (2.0 * two_threads)
}

/// The median of `v` (the mean of the middle two for an even count; 0 when empty).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The small-strings file (5,000,000 keys of 10 bytes from `DEBUG POPULATE`): `check` and
/// `dump --format jsonl` at 1 and 2 threads beside the `rdb` 0.4 crate's CLI (installed by
/// `cargo install` into target/bench-tools; BENCH_NO_RDBRS=1 leaves it out).
fn strings_rows(b: &str) -> Result<()> {
    let root = super::root();
    let file = root.join("target/bench-strings-5000000.rdb");
    if !file.is_file() {
        let server = Server::start(&test_support::default_server()?, &[], None)?;
        let mut c = server.client()?;
        c.ok(&["DEBUG", "POPULATE", "5000000", "key", "10"])?;
        c.ok(&["SAVE"])?;
        std::fs::copy(server.dir.join("dump.rdb"), &file).context("copy strings file")?;
    }
    let mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
    let f = file.to_str().unwrap_or_default();
    println!();
    println!("strings file: {f} ({mb:.1} MB, 5000000 keys)");
    println!("| what | seconds | MB/s | peak RSS MiB | × `rdb` 0.4 |");
    println!("|---|---|---|---|---|");
    let rdb_rs = root.join("target/bench-tools/rdb-rs/bin/rdb");
    if std::env::var_os("BENCH_NO_RDBRS").is_none() && !rdb_rs.is_file() {
        let st = Command::new(env!("CARGO"))
            .args(["install", "rdb", "--version", "0.4.0", "--root"])
            .arg(root.join("target/bench-tools/rdb-rs"))
            .status()?;
        anyhow::ensure!(st.success(), "cargo install rdb 0.4.0 failed");
    }
    let r = rdb_rs.to_str().unwrap_or_default();
    let peer = |format: &str| -> Result<Option<f64>> {
        if !rdb_rs.is_file() {
            return Ok(None);
        }
        let (s, rss) = best_of_3(&[r, "--format", format, f])?;
        println!(
            "| `rdb` 0.4 --format {format} | {s:.2} | {:.0} | {:.1} | 1.0 |",
            mb / s,
            rss as f64 / 1024.0
        );
        Ok(Some(s))
    };
    let nil = peer("nil")?;
    for t in ["1", "2"] {
        let (s, rss) = best_of_3(&[b, "check", f, "--threads", t])?;
        println!(
            "| replicator check --threads {t} | {s:.2} | {:.0} | {:.1} | {} |",
            mb / s,
            rss as f64 / 1024.0,
            nil.map_or("—".into(), |n| format!("{:.2}", n / s))
        );
    }
    let json = peer("json")?;
    for t in ["1", "2"] {
        let (s, rss) = best_of_3(&[b, "dump", f, "--format", "jsonl", "--threads", t])?;
        println!(
            "| replicator dump --format jsonl --threads {t} | {s:.2} | {:.0} | {:.1} | {} |",
            mb / s,
            rss as f64 / 1024.0,
            json.map_or("—".into(), |n| format!("{:.2}", n / s))
        );
    }
    Ok(())
}

/// Keys in the file, as `dump --format count` finds them.
pub(crate) fn count_keys(bin: &Path, file: &Path) -> Result<u64> {
    let out = Command::new(bin)
        .args(["dump", &file.to_string_lossy(), "--format", "count"])
        .output()?;
    anyhow::ensure!(out.status.success(), "count failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Pseudo-random printable text, so LZF cannot shrink it to nothing.
fn text(seed: &mut u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            char::from(b'!' + (*seed % 90) as u8)
        })
        .collect()
}

/// Reads the pipelined replies once `at` commands are waiting.
fn flush(c: &mut test_support::Client, pending: &mut usize, at: usize) -> Result<()> {
    if *pending >= at {
        c.drain(*pending)?;
        *pending = 0;
    }
    Ok(())
}

/// A mixed data set: 60 % strings of 200 bytes; lists, sets, sorted sets and hashes of 20
/// elements (listpack-encoded), one in 500 of them with 1,000 elements (hashtable, skiplist,
/// quicklist); 20 streams with a consumer group; one hash of `fields` fields.
fn fill(c: &mut test_support::Client, keys: u64, fields: u64) -> Result<()> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut pending = 0;
    let strings = keys * 6 / 10;
    for i in 0..strings {
        c.send(&[
            "SET".to_owned(),
            format!("string:{i}"),
            text(&mut seed, 200),
        ])?;
        pending += 1;
        flush(c, &mut pending, 1000)?;
    }
    let streams = 20;
    for i in 0..keys.saturating_sub(strings + streams) {
        let n = if i % 500 == 0 { 1000 } else { 20 };
        let (cmd, key) = match i % 4 {
            0 => ("RPUSH", format!("list:{i}")),
            1 => ("SADD", format!("set:{i}")),
            2 => ("ZADD", format!("zset:{i}")),
            _ => ("HSET", format!("hash:{i}")),
        };
        let mut args = vec![cmd.to_owned(), key];
        for j in 0..n {
            match cmd {
                "ZADD" => args.push(format!("{j}.5")),
                "HSET" => args.push(format!("field-{j}")),
                _ => {}
            }
            args.push(text(&mut seed, 14));
        }
        c.send(&args)?;
        pending += 1;
        flush(c, &mut pending, 200)?;
    }
    for i in 0..streams {
        let k = format!("stream:{i}");
        for j in 1..=500 {
            c.send(&[
                "XADD".to_owned(),
                k.clone(),
                format!("{j}-1"),
                "f".into(),
                text(&mut seed, 20),
            ])?;
            pending += 1;
        }
        flush(c, &mut pending, 0)?;
        c.ok(&["XGROUP", "CREATE", &k, "g", "0"])?;
        c.ok(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "10",
            "STREAMS",
            &k,
            ">",
        ])?;
    }
    for i in 0..fields / 1000 {
        let mut args = vec!["HSET".to_owned(), "bighash".to_owned()];
        for j in 0..1000 {
            args.push(format!("field:{}", i * 1000 + j));
            args.push(format!("value:{j}"));
        }
        c.send(&args)?;
        pending += 1;
        flush(c, &mut pending, 50)?;
    }
    flush(c, &mut pending, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_threads_against_the_ceiling_is_their_ratio_over_the_pairs() {
        // one thread 1.0 s, two threads 0.55 s (1.82 ×), the pair 1.05 s (1.90 ×)
        let (one, two, pair) = (1.0, 0.55, 1.05);
        let expected = (one / two) / (2.0 * one / pair);
        assert!((against_ceiling(two, pair) - expected).abs() < 1e-12);
        assert!((against_ceiling(two, pair) - 0.954_545).abs() < 1e-6);
        // as fast as two processes: 1; slower: below
        assert_eq!(against_ceiling(0.5, 1.0), 1.0);
        assert!(against_ceiling(0.6, 1.0) < 1.0);
        assert_eq!(median(&[0.9, 0.8, 1.0]), 0.9);
    }
}
