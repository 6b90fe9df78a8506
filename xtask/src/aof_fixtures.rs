//! `cargo xtask fixtures` (AOF part): AOF files written by real servers under
//! `testdata/aof/`, with the per-key digests the writing server reported.
//!
//! Redis/Valkey 7.0 and newer write a multi-part `appendonlydir`: a base (RDB or AOF format,
//! per `aof-use-rdb-preamble`), then several incr files (one rewrite is made to fail so two
//! incr files remain), with `#TS` annotations and transactions. Redis 6.2 writes one file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use serde_json::{Map, json};
use test_support::{Client, Resp, Server, ServerBin};

use crate::fixtures::populate;

fn info(s: &Server, field: &str) -> Result<String> {
    s.info("persistence", field)
        .with_context(|| format!("INFO has no {field}"))
}

fn wait_for(s: &Server, field: &str, value: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while info(s, field)? != value {
        anyhow::ensure!(Instant::now() < deadline, "{field} never became {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Writes after the first rewrite: transactions, deletes, overwrites, another db.
fn more_writes(c: &mut Client, round: u32) -> Result<()> {
    let r = round.to_string();
    c.ok(&["SELECT", "0"])?;
    c.ok(&["MULTI"])?;
    for args in [
        &["INCR", "aof:counter"][..],
        &["RPUSH", "aof:list", &r, "x y", ""],
        &["HSET", "aof:hash", "round", &r, "f\r\n", "crlf"],
        &["SADD", "aof:set", &r, "member"],
    ] {
        anyhow::ensure!(c.cmd(args)?.text() == "QUEUED", "{args:?} not queued");
    }
    anyhow::ensure!(c.cmd(&["EXEC"])?.items().len() == 4, "EXEC failed");
    c.ok(&[
        "ZADD",
        "aof:zset",
        &format!("{round}.5"),
        &format!("m{round}"),
        "-inf",
        "low",
    ])?;
    c.ok(&["SET", "str:short", &format!("overwritten {round}")])?;
    c.ok(&["DEL", &format!("str:gone{round}")])?;
    c.ok(&["SET", &format!("str:gone{}", round + 1), "will be deleted"])?;
    c.ok(&["APPEND", "aof:append", &r])?;
    c.ok(&["PEXPIREAT", "aof:append", "4102444800000"])?;
    c.ok(&["XADD", "stream:1", "*", "round", &r])?;
    c.ok(&["SELECT", &(round % 3 + 1).to_string()])?;
    c.ok(&["SET", &format!("db-key:{round}"), &r])?;
    c.ok(&["LPUSH", "db-list", &r])?;
    c.ok(&["SELECT", "0"])?;
    Ok(())
}

/// The children of a process (a rewrite in progress is a child of the server).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Starts a rewrite, writes while it runs, then kills it: the incr file it opened stays.
fn failed_rewrite(server: &Server, c: &mut Client) -> Result<()> {
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "100000"])?;
    c.ok(&["BGREWRITEAOF"])?;
    wait_for(server, "aof_rewrite_in_progress", "1")?;
    more_writes(c, 2)?;
    let kids = children(server.pid());
    anyhow::ensure!(!kids.is_empty(), "no rewrite child found");
    for k in kids {
        std::process::Command::new("kill")
            .arg("-9")
            .arg(k.to_string())
            .status()?;
    }
    wait_for(server, "aof_rewrite_in_progress", "0")?;
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "0"])?;
    Ok(())
}

fn make(bin: &ServerBin, preamble: bool, out: &Path, name: &str) -> Result<serde_json::Value> {
    let multi_part = bin.major_minor() >= (7, 0);
    let mut args = vec![
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("auto-aof-rewrite-percentage", "0"),
        ("aof-use-rdb-preamble", if preamble { "yes" } else { "no" }),
    ];
    if multi_part {
        args.push(("aof-timestamp-enabled", "yes"));
    }
    let server = Server::start(bin, &args, None)?;
    let mut c = server.client()?;
    populate(&mut c, bin, false)?;
    // the first rewrite folds all of it into the base
    c.ok(&["BGREWRITEAOF"])?;
    std::thread::sleep(Duration::from_millis(100));
    wait_for(&server, "aof_rewrite_in_progress", "0")?;
    wait_for(&server, "aof_rewrite_scheduled", "0")?;
    anyhow::ensure!(
        info(&server, "aof_last_bgrewrite_status")? == "ok",
        "rewrite failed"
    );
    // a second, so #TS annotations differ
    std::thread::sleep(Duration::from_millis(1100));
    more_writes(&mut c, 1)?;
    if multi_part {
        failed_rewrite(&server, &mut c)?;
    } else {
        more_writes(&mut c, 2)?;
    }
    std::thread::sleep(Duration::from_millis(1100));
    more_writes(&mut c, 3)?;

    // what the server holds: every key's digest
    let mut digests = Map::new();
    for db in 0..16 {
        c.ok(&["SELECT", &db.to_string()])?;
        for key in c.keys()? {
            let d = c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", &key])?;
            let d = d.items().first().map(Resp::text).unwrap_or_default();
            let k = base64::engine::general_purpose::STANDARD.encode(&key);
            digests.insert(format!("{db}:{k}"), json!(d));
        }
    }
    let target = out.join(name);
    let _ = std::fs::remove_dir_all(&target);
    let _ = std::fs::remove_file(&target);
    let files = if multi_part {
        std::fs::create_dir_all(&target)?;
        let src = server.dir.join("appendonlydir");
        let mut names = Vec::new();
        for e in std::fs::read_dir(&src)? {
            let e = e?;
            std::fs::copy(e.path(), target.join(e.file_name()))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        let manifest = std::fs::read_to_string(src.join("appendonly.aof.manifest"))?;
        anyhow::ensure!(
            manifest.matches("type i").count() >= 2,
            "expected several incr files:\n{manifest}"
        );
        names
    } else {
        std::fs::copy(server.dir.join("appendonly.aof"), &target)?;
        vec![name.to_owned()]
    };
    Ok(json!({
        "name": name,
        "server": bin.name,
        "multi_part": multi_part,
        "preamble": preamble,
        "files": files,
        "digests": digests,
    }))
}

pub(crate) fn run(testdata: &Path) -> Result<()> {
    let out = testdata.join("aof");
    std::fs::create_dir_all(&out)?;
    let mut index = Vec::new();
    for bin in test_support::find_servers() {
        for preamble in [true, false] {
            let kind = if preamble { "preamble" } else { "resp" };
            let name = if bin.major_minor() >= (7, 0) {
                format!("{}-{kind}", bin.name)
            } else {
                format!("{}-{kind}.aof", bin.name)
            };
            eprintln!("AOF fixture {name}");
            index.push(
                make(&bin, preamble, &out, &name).with_context(|| format!("AOF fixture {name}"))?,
            );
        }
    }
    std::fs::write(
        out.join("fixtures.json"),
        serde_json::to_string_pretty(&index)? + "\n",
    )?;
    Ok(())
}
