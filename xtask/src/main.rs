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

fn check_deps() -> Result<()> {
    // the format crates stay pure: no runtime, no sockets (resp-codec's tokio-util codec is an
    // opt-in feature, so it is checked with default features)
    for krate in ["rdb-format", "resp-codec", "aof-manifest"] {
        let out = Command::new(env!("CARGO"))
            .current_dir(root())
            .args(["tree", "-p", krate, "-e", "normal", "--prefix", "none"])
            .output()
            .context("cargo tree")?;
        anyhow::ensure!(out.status.success(), "cargo tree failed");
        let tree = String::from_utf8_lossy(&out.stdout);
        let banned = ["tokio", "tokio-util", "mio", "socket2", "rustls"];
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if banned
                .iter()
                .any(|b| name == *b || name.starts_with(&format!("{b}-")))
            {
                bail!("{krate} depends on {name}: the format crates must not pull in networking");
            }
        }
    }
    eprintln!(
        "xtask: rdb-format, resp-codec and aof-manifest hold no tokio, mio, socket2 or rustls"
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
