//! `replicator replicate` against real masters: JSON Lines of the snapshot, a RESP stream
//! that rebuilds the master through kills and a full resync, SIGTERM, and refused credentials.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as J;
use test_support::{Server, ServerBin};

use crate::rebuild::{key_facts, pipe_into};
use crate::replicator;

fn bin() -> ServerBin {
    test_support::default_server().expect("redis-server")
}

fn fill(s: &Server) {
    let mut c = s.client().unwrap();
    for i in 0..100 {
        c.ok(&["SET", &format!("s:{i}"), &i.to_string()]).unwrap();
    }
    c.ok(&["RPUSH", "list", "a", "b"]).unwrap();
    c.ok(&["HSET", "hash", "f", "v"]).unwrap();
    c.ok(&["ZADD", "zset", "2.5", "m"]).unwrap();
    c.ok(&["SET", "ttl", "v", "PX", "100000000"]).unwrap();
    c.ok(&["SELECT", "4"]).unwrap();
    c.ok(&["SADD", "set", "x", "y"]).unwrap();
}

/// Key records without the fields that change with time (idle, freq).
fn records(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| {
            let mut v: J = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("idle_s");
            o.remove("freq");
            v.to_string()
        })
        .collect()
}

#[test]
fn rdb_only_jsonl_is_the_masters_data() {
    let master = Server::start(&bin(), &[("repl-diskless-sync-delay", "0")], None).unwrap();
    fill(&master);
    master.client().unwrap().ok(&["SAVE"]).unwrap();
    let url = format!("redis://127.0.0.1:{}", master.port);
    let live = replicator(&["replicate", &url, "--rdb-only"]);
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    let saved = replicator(&["dump", master.dir.join("dump.rdb").to_str().unwrap()]);
    let live = records(&String::from_utf8(live.stdout).unwrap());
    assert_eq!(live.len(), 105);
    assert_eq!(live, records(&String::from_utf8(saved.stdout).unwrap()));
}

fn online_at_master_offset(master: &Server) -> bool {
    let (Some(line), Some(mo)) = (
        master.info("replication", "slave0"),
        master.info("replication", "master_repl_offset"),
    ) else {
        return false;
    };
    line.contains("state=online") && line.contains(&format!("offset={mo},"))
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn resp_stream_rebuilds_the_master_through_kills_and_a_full_resync() {
    let cli = test_support::redis_cli().expect("redis-cli");
    let master = Server::start(
        &bin(),
        &[
            ("repl-backlog-size", "16kb"),
            ("repl-diskless-sync-delay", "0"),
        ],
        None,
    )
    .unwrap();
    fill(&master);
    let scratch = test_support::temp_dir("replicate-resp");
    let out = scratch.join("stream.resp");
    let url = format!("redis://127.0.0.1:{}", master.port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args([
            "replicate",
            &url,
            "--format",
            "resp",
            "-o",
            out.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait("the first sync", || online_at_master_offset(&master));
    let mut c = master.client().unwrap();
    for i in 0..50 {
        c.ok(&["SELECT", &(i % 3).to_string()]).unwrap();
        c.ok(&["INCR", "counter"]).unwrap();
        c.ok(&["HSET", "h", &format!("f{i}"), "v"]).unwrap();
    }
    c.ok(&["MULTI"]).unwrap();
    c.cmd(&["DEL", "s:1"]).unwrap();
    c.cmd(&["PEXPIREAT", "s:2", "4102444800000"]).unwrap();
    c.ok(&["EXEC"]).unwrap();
    // a killed link: PSYNC continues it
    c.cmd(&["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
    c.ok(&["SELECT", "0"]).unwrap();
    c.ok(&["SET", "after-kill", "1"]).unwrap();
    wait("the partial resync", || {
        online_at_master_offset(&master)
            && master.info("stats", "sync_partial_ok").as_deref() == Some("1")
    });
    // killed again, and more written meanwhile than the 16 KiB backlog holds: a full resync,
    // so keys deleted meanwhile must go (FLUSHALL)
    let big = "b".repeat(1000);
    c.cmd(&["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
    for i in 0..40 {
        c.ok(&["SET", &format!("big:{i}"), &big]).unwrap();
    }
    c.ok(&["DEL", "list", "s:3"]).unwrap();
    c.ok(&["FLUSHDB"]).unwrap();
    c.ok(&["SET", "after-resync", "1"]).unwrap();
    wait("the full resync", || {
        master.info("stats", "sync_full").as_deref() == Some("2")
            && online_at_master_offset(&master)
    });
    c.ok(&["SET", "last", "1"]).unwrap();
    wait("the last write", || online_at_master_offset(&master));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("full resync"), "{err}");
    let stream = std::fs::read(&out).unwrap();
    assert!(stream.windows(8).any(|w| w == b"FLUSHALL"));

    let fresh = Server::start(&bin(), &[], None).unwrap();
    pipe_into(&cli, fresh.port, &stream, "replicate");
    let mut a = master.client().unwrap();
    let mut b = fresh.client().unwrap();
    let bin = bin();
    for db in 0..16 {
        a.ok(&["SELECT", &db.to_string()]).unwrap();
        b.ok(&["SELECT", &db.to_string()]).unwrap();
        let keys = a.keys().unwrap();
        assert_eq!(keys, b.keys().unwrap(), "db {db}: key sets differ");
        for k in &keys {
            assert_eq!(
                key_facts(&mut a, &bin, k),
                key_facts(&mut b, &bin, k),
                "db {db} key {:?}",
                String::from_utf8_lossy(k)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn refused_credentials_end_with_a_clear_error() {
    let master = Server::start(&bin(), &[("requirepass", "right-one")], None).unwrap();
    let url = format!("redis://127.0.0.1:{}", master.port);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(["replicate", &url])
        .env("REPLICATOR_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("AUTH refused"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password was printed: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried instead of failing"
    );
    // the right password from the URL works
    let url = format!("redis://:right-one@127.0.0.1:{}", master.port);
    let out = replicator(&["replicate", &url, "--rdb-only"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_cluster_node_url_gives_every_shards_keys() {
    let cluster = test_support::Cluster::start(&bin(), 3, 0).unwrap();
    let mut want = BTreeSet::new();
    for i in 0..200 {
        let k = format!("c:{i}");
        cluster.write(&["SET", &k, "v"]).unwrap();
        want.insert(k);
    }
    let url = format!("redis://127.0.0.1:{}", cluster.nodes[2].port);
    let out = replicator(&["replicate", &url, "--rdb-only"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let got: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<J>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, want);
    // one position per shard, to continue from
    assert_eq!(err.matches("--resume ").count(), 3, "{err}");
}
