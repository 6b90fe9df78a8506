//! AOF through the CLI: fixtures written by real servers rebuilt through `--format resp`,
//! JSON Lines, filters, `check`, `check --fix` and `--truncate-to-timestamp`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value as J;
use test_support::{Server, ServerBin};

use crate::rebuild::{key_facts, pipe_into};
use crate::{replicator, testdata};

fn aof_fixtures() -> Vec<J> {
    let text =
        std::fs::read_to_string(testdata().join("aof/fixtures.json")).expect("aof/fixtures.json");
    let v: Vec<J> = serde_json::from_str(&text).unwrap();
    assert!(!v.is_empty(), "no AOF fixtures");
    v
}

fn fixture_path(fx: &J) -> PathBuf {
    testdata().join("aof").join(fx["name"].as_str().unwrap())
}

/// Copies a fixture (file or directory) to `dst`.
fn copy_fixture(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    } else {
        std::fs::copy(src, dst).unwrap();
    }
}

/// A server that loads the fixture at start, as the server that wrote it would.
fn load_fixture(bin: &ServerBin, fx: &J, scratch: &Path) -> Server {
    let dir = scratch.join("original");
    std::fs::create_dir_all(&dir).unwrap();
    let multi = fx["multi_part"].as_bool().unwrap();
    let dst = dir.join(if multi {
        "appendonlydir"
    } else {
        "appendonly.aof"
    });
    copy_fixture(&fixture_path(fx), &dst);
    let d = dir.to_str().unwrap();
    Server::start(
        bin,
        &[("dir", d), ("appendonly", "yes"), ("appendfsync", "no")],
        None,
    )
    .unwrap()
}

fn stdout(args: &[&str]) -> String {
    let out = replicator(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn jsonl(args: &[&str]) -> Vec<J> {
    stdout(args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn each_aof_fixture_rebuilds_what_the_server_held() {
    let cli = test_support::redis_cli().expect("redis-cli not found: cargo xtask test installs it");
    let mut rebuilt = 0;
    for fx in aof_fixtures() {
        let name = fx["name"].as_str().unwrap();
        let Some(bin) = &test_support::server_named(
            fx["server"].as_str().unwrap(),
            &format!("the AOF rebuild of {name}"),
        ) else {
            continue;
        };
        let scratch = test_support::temp_dir(&format!("aof-{name}"));
        let original = load_fixture(bin, &fx, &scratch);
        let fresh = Server::start(bin, &[], None).unwrap();
        let path = fixture_path(&fx);
        let out = replicator(&["dump", path.to_str().unwrap(), "--format", "resp"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pipe_into(&cli, fresh.port, &out.stdout, name);

        // every key the writer held, with the digest it reported
        let digests = fx["digests"].as_object().unwrap();
        assert!(digests.len() > 20, "{name}: too few keys recorded");
        let mut a = original.client().unwrap();
        let mut b = fresh.client().unwrap();
        let mut seen = 0;
        for db in 0..16 {
            let d = db.to_string();
            a.ok(&["SELECT", &d]).unwrap();
            b.ok(&["SELECT", &d]).unwrap();
            let keys = b.keys().unwrap();
            assert_eq!(a.keys().unwrap(), keys, "{name} db {db}: key sets differ");
            for key in &keys {
                let k = base64::engine::general_purpose::STANDARD.encode(key);
                let want = digests
                    .get(&format!("{db}:{k}"))
                    .unwrap_or_else(|| panic!("{name}: key {db}:{k} was not on the writer"));
                let got = b.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", key]).unwrap();
                assert_eq!(
                    got.items()[0].text(),
                    want.as_str().unwrap(),
                    "{name} {db}:{k} digest"
                );
                assert_eq!(
                    key_facts(&mut a, bin, key),
                    key_facts(&mut b, bin, key),
                    "{name} {db}:{k}"
                );
                seen += 1;
            }
        }
        assert_eq!(
            seen,
            digests.len(),
            "{name}: keys missing after the rebuild"
        );
        eprintln!("{name}: {seen} keys rebuilt with the writer's digests");
        if bin.major_minor() >= (7, 0) {
            a.ok(&["SELECT", "0"]).unwrap();
            b.ok(&["SELECT", "0"]).unwrap();
            assert_eq!(
                a.ok(&["FUNCTION", "LIST"]).unwrap(),
                b.ok(&["FUNCTION", "LIST"]).unwrap(),
                "{name}: functions"
            );
        }
        drop(original);
        let _ = std::fs::remove_dir_all(&scratch);
        rebuilt += 1;
    }
    assert!(
        rebuilt > 0,
        "no AOF fixture could be rebuilt: no server installed"
    );
}

#[test]
fn jsonl_of_a_multi_part_aof() {
    let fx = aof_fixtures()
        .into_iter()
        .find(|f| f["name"] == "redis-7.0-preamble")
        .expect("redis-7.0-preamble fixture");
    let path = fixture_path(&fx);
    let recs = jsonl(&["dump", path.to_str().unwrap()]);
    let keys = recs.iter().filter(|r| r.get("key").is_some()).count();
    let cmds: Vec<&J> = recs.iter().filter(|r| r.get("cmd").is_some()).collect();
    // key records (the RDB base) come first, then commands
    assert!(keys > 20 && cmds.len() > 20);
    assert!(recs[..keys].iter().all(|r| r.get("key").is_some()));
    for c in &cmds {
        assert!(
            c["db"].is_u64() && c["cmd"].as_array().is_some_and(|a| !a.is_empty()),
            "{c}"
        );
        assert!(
            c.get("offset").is_none(),
            "offset is for replication only: {c}"
        );
    }
    // #TS annotations reach the commands after them; transactions are kept as written
    assert!(
        cmds.iter()
            .any(|c| c["ts"].as_i64().is_some_and(|t| t > 1_700_000_000))
    );
    let names: Vec<&str> = cmds
        .iter()
        .map(|c| c["cmd"][0].as_str().unwrap_or(""))
        .collect();
    let multi = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case("MULTI"))
        .unwrap();
    assert!(
        names[multi + 1..]
            .iter()
            .any(|n| n.eq_ignore_ascii_case("EXEC"))
    );
    // SELECT moves the db of what follows
    let sel = cmds
        .iter()
        .position(|c| c["cmd"][0] == "SELECT" && c["cmd"][1] != "0")
        .unwrap();
    assert_eq!(cmds[sel + 1]["db"], cmds[sel]["db"]);
    assert_ne!(cmds[sel + 1]["db"], 0);
    // a value with CR LF inside survives
    assert!(
        cmds.iter()
            .any(|c| c["cmd"].as_array().unwrap().iter().any(|a| a == "f\r\n"))
    );
    // count agrees
    let n: usize = stdout(&["dump", path.to_str().unwrap(), "--format", "count"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, keys + cmds.len());
}

#[test]
fn filters_apply_to_commands() {
    let path = testdata().join("aof/redis-7.0-resp");
    let p = path.to_str().unwrap();
    for r in jsonl(&["dump", p, "--key", "^aof:"]) {
        let name = r["cmd"][0].as_str().map(str::to_ascii_uppercase);
        match name.as_deref() {
            // commands that name no key pass
            Some("SELECT" | "MULTI" | "EXEC" | "FUNCTION") => {}
            Some(_) => assert!(r["cmd"][1].as_str().unwrap().starts_with("aof:"), "{r}"),
            None => assert!(r["key"].as_str().unwrap().starts_with("aof:"), "{r}"),
        }
    }
    let only_set = jsonl(&["dump", p, "--command", "set"]);
    assert!(!only_set.is_empty());
    assert!(
        only_set
            .iter()
            .all(|r| r["cmd"][0].as_str().unwrap().eq_ignore_ascii_case("SET"))
    );
    let no_multi = jsonl(&[
        "dump",
        p,
        "--skip-command",
        "MULTI",
        "--skip-command",
        "exec",
    ]);
    assert!(
        no_multi
            .iter()
            .all(|r| !r["cmd"][0].as_str().unwrap().eq_ignore_ascii_case("MULTI"))
    );
    let db1 = jsonl(&["dump", p, "--db", "2"]);
    assert!(!db1.is_empty() && db1.iter().all(|r| r["db"] == 2));
    let lists = jsonl(&["dump", p, "--type", "list"]);
    assert!(lists.iter().any(|r| r["cmd"][0] == "RPUSH"));
    assert!(
        lists
            .iter()
            .all(|r| !["SET", "HSET", "SADD", "ZADD"].contains(&r["cmd"][0].as_str().unwrap()))
    );
}

fn last_incr(dir: &Path) -> PathBuf {
    let manifest = std::fs::read_to_string(dir.join("appendonly.aof.manifest")).unwrap();
    let last = manifest.lines().rfind(|l| l.contains("type i")).unwrap();
    dir.join(last.split_whitespace().nth(1).unwrap())
}

#[test]
fn check_reports_and_fixes_a_cut_last_file() {
    let src = testdata().join("aof/redis-7.0-preamble");
    let scratch = test_support::temp_dir("aof-fix");
    let full = std::fs::read(last_incr(&src)).unwrap();
    let mut fixed = 0;
    for cut in (1..full.len()).step_by(53) {
        let dir = scratch.join(format!("cut{cut}"));
        copy_fixture(&src, &dir);
        let last = last_incr(&dir);
        std::fs::write(&last, &full[..cut]).unwrap();
        let d = dir.to_str().unwrap();
        let out = replicator(&["check", d]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            // the cut fell between two commands
            assert!(text.contains("AOF looks OK"), "{text}");
            continue;
        }
        assert!(
            text.contains("AOF analyzed: filename=appendonly.aof.3.incr.aof"),
            "{text}"
        );
        assert!(text.contains("Use the --fix option"), "{text}");
        let ok: usize = text
            .split("ok_up_to=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ok < cut);
        // --fix: a backup, then the cut
        let out = replicator(&["check", d, "--fix"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(std::fs::read(&last).unwrap(), &full[..ok]);
        let bak = PathBuf::from(format!("{}.bak", last.display()));
        assert_eq!(std::fs::read(&bak).unwrap(), &full[..cut]);
        assert!(replicator(&["check", d]).status.success());
        fixed += 1;
    }
    assert!(fixed > 5);
    // a cut in a file that is not the last is not a crash's tail: no fix
    let dir = scratch.join("middle");
    copy_fixture(&src, &dir);
    let middle = dir.join("appendonly.aof.2.incr.aof");
    let data = std::fs::read(&middle).unwrap();
    std::fs::write(&middle, &data[..data.len() - 5]).unwrap();
    let out = replicator(&["check", dir.to_str().unwrap(), "--fix"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("not the last file"),
        "{text}"
    );
    assert_eq!(std::fs::read(&middle).unwrap().len(), data.len() - 5);
    // dump reports the cut and exits non-zero, after writing what precedes it
    let out = replicator(&["dump", dir.to_str().unwrap(), "--format", "count"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("appendonly.aof.2.incr.aof"));
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn truncate_to_timestamp_cuts_the_last_file_only() {
    let src = testdata().join("aof/redis-7.0-resp");
    let scratch = test_support::temp_dir("aof-ts");
    // the annotations of the last file
    let recs = jsonl(&["dump", src.to_str().unwrap(), "--command", "SET"]);
    let stamps: Vec<i64> = recs.iter().filter_map(|r| r["ts"].as_i64()).collect();
    let (first, last) = (*stamps.iter().min().unwrap(), *stamps.iter().max().unwrap());
    assert!(last > first, "fixture needs two different #TS");
    let dir = scratch.join("a");
    copy_fixture(&src, &dir);
    let d = dir.to_str().unwrap();
    let out = replicator(&[
        "check",
        d,
        "--truncate-to-timestamp",
        &(last - 1).to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Successfully truncated"),
        "{text}"
    );
    let after = jsonl(&["dump", d]);
    assert!(
        after
            .iter()
            .all(|r| r["ts"].as_i64().is_none_or(|t| t < last))
    );
    assert!(replicator(&["check", d]).status.success());
    // a timestamp whose cut would fall in an earlier file is refused
    let dir = scratch.join("b");
    copy_fixture(&src, &dir);
    let out = replicator(&[
        "check",
        dir.to_str().unwrap(),
        "--truncate-to-timestamp",
        &(first - 1).to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("not the last file"),
        "{text}"
    );
    // nothing after the newest stamp: nothing to cut
    let out = replicator(&[
        "check",
        dir.to_str().unwrap(),
        "--truncate-to-timestamp",
        &last.to_string(),
    ]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Truncate nothing")
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn corpus_lf_only_incr_file_is_a_clear_error() {
    let Some(dir) = test_support::corpus_dir("LF-only AOF test") else {
        return;
    };
    let shake = dir.join("redisshake/test/aof_test/appendonlydir");
    let out = replicator(&["dump", shake.to_str().unwrap(), "--format", "count"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("appendonly.aof.2.incr.aof: offset 2") && err.contains("LF but no CR"),
        "{err}"
    );
}

#[test]
fn a_directory_its_manifest_and_a_single_file_are_detected() {
    let dir = testdata().join("aof/valkey-9.1-preamble");
    let manifest = dir.join("appendonly.aof.manifest");
    let from_dir = stdout(&["dump", dir.to_str().unwrap()]);
    assert!(!from_dir.is_empty());
    assert_eq!(from_dir, stdout(&["dump", manifest.to_str().unwrap()]));
    // one incr file alone reads as a single-file AOF
    let incr = dir.join("appendonly.aof.3.incr.aof");
    let recs = jsonl(&["dump", incr.to_str().unwrap()]);
    assert!(!recs.is_empty() && recs.iter().all(|r| r.get("cmd").is_some()));
    // and an RDB is still an RDB
    let rdb = testdata().join("redis-7.0-compact.rdb");
    assert!(
        jsonl(&["dump", rdb.to_str().unwrap()])
            .iter()
            .all(|r| r.get("key").is_some())
    );
}
