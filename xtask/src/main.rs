//! `cargo xtask`: project tasks.
//!
//! * `test` — makes sure a redis-server is present (installs Debian's when it can), checks
//!   that `rdb-format` pulls in no networking crate, and runs every test.
//! * `fixtures [rdb|aof]` — regenerates `testdata/` (RDB) and `testdata/aof/` from every
//!   server binary found.
//! * `bench` — whole-file figures against redis-server's own load time (see docs/bench.md).
//! * `differential [--cases N] [--files N] [--seed S]` — mutated values through our decoder and
//!   a real redis-server with `sanitize-dump-payload yes`, by `RESTORE` (20,000 cases by
//!   default) and as whole files the server loads at start (2,000); `test` runs 1,500 and 200.
//! * `check-deps` — only the dependency check.

mod aof_fixtures;
mod bench;
mod bench_repl;
mod bench_sync;
mod cores;
mod differential;
mod fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("fixtures") => {
            // `fixtures` makes both sets; `fixtures rdb` / `fixtures aof` one of them
            let which = args.get(1).map(String::as_str);
            let testdata = root().join("testdata");
            (if which != Some("aof") {
                fixtures::run(&testdata)
            } else {
                Ok(())
            })
            .and_then(|()| {
                if which != Some("rdb") {
                    aof_fixtures::run(&testdata)
                } else {
                    Ok(())
                }
            })
        }
        Some("bench") => bench::run(&args[1..]),
        Some("differential") => differential::run(&args[1..]),
        Some("check-deps") => check_deps(),
        _ => {
            eprintln!("usage: cargo xtask <test|fixtures|bench|differential|check-deps> [args]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure Debian's redis-server (and redis-cli) are installed.
fn ensure_redis() -> Result<()> {
    if Path::new("/usr/bin/redis-server").is_file() && Path::new("/usr/bin/redis-cli").is_file() {
        return Ok(());
    }
    let apt = Path::new("/usr/bin/apt-get").is_file();
    if apt && is_root() {
        eprintln!("xtask: installing Debian's redis-server with apt-get");
        let ok = Command::new("apt-get")
            .arg("update")
            .arg("-qq")
            .status()?
            .success()
            && Command::new("apt-get")
                .args(["install", "-y", "-qq", "redis-server", "redis-tools"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()?
                .success();
        if ok {
            // The package starts a service on 6379; the tests never use it, stop it.
            let _ = Command::new("service")
                .args(["redis-server", "stop"])
                .status();
            return Ok(());
        }
    }
    bail!(
        "redis-server is not installed. Install it with `sudo apt-get install redis-server` \
         (Debian/Ubuntu) or set REDIS_SERVER=/path/to/redis-server; redis-cli is needed too"
    )
}

/// The crates `cargo tree` lists for `args` (normal dependencies only).
fn tree(args: &[&str]) -> Result<Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .arg("tree")
        .args(args)
        .args(["-e", "normal", "--prefix", "none"])
        .output()
        .context("cargo tree")?;
    anyhow::ensure!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// Fails when a crate of `banned` (or `banned-*`) is in the tree of `args`.
fn refuse(what: &str, args: &[&str], banned: &[&str]) -> Result<()> {
    for name in tree(args)? {
        if banned
            .iter()
            .any(|b| name == *b || name.starts_with(&format!("{b}-")))
        {
            bail!("{what} depends on {name}");
        }
    }
    Ok(())
}

fn check_deps() -> Result<()> {
    const RUNTIME: [&str; 7] = [
        "tokio",
        "tokio-util",
        "mio",
        "socket2",
        "rustls",
        "ring",
        "futures-core",
    ];
    const NETWORK: [&str; 4] = ["mio", "socket2", "rustls", "ring"];
    // the format crates stay pure: no runtime, no sockets
    for krate in ["rdb-format", "resp-codec", "aof-manifest"] {
        refuse(
            &format!("{krate} (default features)"),
            &["-p", krate],
            &RUNTIME,
        )?;
        // opt-in features (rdb-format's `tokio` driver, resp-codec's tokio-util codec) may
        // bring tokio's traits, never its network half or TLS
        refuse(
            &format!("{krate} (all features)"),
            &["-p", krate, "--all-features"],
            &NETWORK,
        )?;
    }
    // a program that wants files only compiles no runtime
    refuse(
        "replicator with only the `rdb` feature",
        &[
            "-p",
            "replicator",
            "--no-default-features",
            "--features",
            "rdb",
        ],
        &RUNTIME,
    )?;
    refuse(
        "replicator with `rdb` and `aof`",
        &[
            "-p",
            "replicator",
            "--no-default-features",
            "--features",
            "rdb,aof",
        ],
        &RUNTIME,
    )?;
    // and the replica without TLS has no rustls
    refuse(
        "replicator with `net` but not `tls-rustls`",
        &[
            "-p",
            "replicator",
            "--no-default-features",
            "--features",
            "rdb,net",
        ],
        &["rustls", "ring"],
    )?;
    eprintln!(
        "xtask: the format crates (every feature) and the facade with `rdb`/`aof` hold no \
         tokio, mio, socket2, rustls or ring; `net` without `tls-rustls` holds no rustls"
    );
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    ensure_redis()?;
    check_deps()?;
    let servers = test_support::find_servers();
    eprintln!(
        "xtask: servers found: {}",
        servers
            .iter()
            .map(|s| format!("{} ({})", s.name, s.path.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["test", "--workspace", "--all-features"])
        .args(extra)
        .status()?;
    anyhow::ensure!(status.success(), "tests failed");
    // our verdicts against a real redis-server's on mutated values (seeded: reproducible)
    let seed = 0x5eed;
    let n = differential::run_cases(1500, seed, false)?;
    differential::report(&n, seed)?;
    let f = differential::run_file_cases(200, seed)?;
    differential::report(&f, seed)?;
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["bench", "--workspace", "--no-run"])
        .status()?;
    anyhow::ensure!(status.success(), "benches do not build");
    Ok(())
}
