//! The newest formats through the CLI: every file of `testdata/newest-formats` in every
//! output format and through `check`; RESP for 8.6 and 8.4 targets as librdb writes it;
//! `--format rdb` for RDB 13/14 and lossy downgrades that real older servers load.

use std::path::PathBuf;

use serde_json::Value as J;
use test_support::{Client, Resp, Server};

use crate::rebuild::pipe_into;
use crate::{replicator, testdata};

fn newest(rel: &str) -> PathBuf {
    testdata().join("newest-formats").join(rel)
}

const FILES: [&str; 16] = [
    "built-8.6.3/base-types.rdb",
    "built-8.6.3/keymeta-ignorable.rdb",
    "built-8.6.3/keymeta-strict.rdb",
    "built-8.6.3/stream-idmp.rdb",
    "built-unstable-e58041978/array.rdb",
    "built-unstable-e58041978/base-types.rdb",
    "built-unstable-e58041978/keymeta-ignorable.rdb",
    "built-unstable-e58041978/keymeta-strict.rdb",
    "built-unstable-e58041978/stream-idmp.rdb",
    "built-unstable-e58041978/stream-xnack.rdb",
    "built-valkey-9.1.0/hash-field-expire.rdb",
    "built-valkey-9.1.0/replsync-as-9.1.0-replica.rdb",
    "built-valkey-9.1.0/replsync-no-version.rdb",
    "redis-librdb/stream_v13.rdb",
    "redis-librdb/stream_v13_idmp.rdb",
    "redis-redis/array-32bit.rdb",
];

/// Standard output (as bytes: RESP carries binary payloads) and standard error.
fn run_ok_bytes(args: &[&str]) -> (Vec<u8>, String) {
    let r = replicator(args);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(r.status.success(), "{args:?}: {err}");
    (r.stdout, err)
}

fn run_ok(args: &[&str]) -> (String, String) {
    let (out, err) = run_ok_bytes(args);
    (String::from_utf8(out).unwrap(), err)
}

fn run_err(args: &[&str]) -> String {
    let r = replicator(args);
    assert!(!r.status.success(), "{args:?} must fail");
    String::from_utf8_lossy(&r.stderr).into_owned()
}

fn jsonl(path: &str) -> Vec<J> {
    run_ok(&["dump", path])
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}: {l}")))
        .collect()
}

#[test]
fn every_file_in_every_format_and_check() {
    for rel in FILES {
        let p = newest(rel);
        let p = p.to_str().unwrap();
        let (out, _) = run_ok(&["check", p]);
        assert!(out.contains("RDB looks OK"), "{rel}: {out}");
        let lines = jsonl(p);
        assert!(!lines.is_empty(), "{rel}");
        let (count, _) = run_ok(&["dump", p, "--format", "count"]);
        assert_eq!(count.trim(), lines.len().to_string(), "{rel}");
        let (keys, _) = run_ok(&["dump", p, "--format", "keys"]);
        assert_eq!(keys.lines().count(), lines.len(), "{rel}");
        let (json, _) = run_ok(&["dump", p, "--format", "json", "--all"]);
        let all: Vec<J> = serde_json::from_str(&json).unwrap();
        assert!(
            all.len() > lines.len(),
            "{rel}: --all adds aux and EOF records"
        );
        let t = if rel.contains("array") { "14" } else { "" };
        let mut args = vec!["dump", p, "--format", "resp"];
        if !t.is_empty() {
            args.extend(["--target-version", t]);
        }
        let (resp, _) = run_ok_bytes(&args);
        assert!(resp.starts_with(b"*2\r\n$6\r\nSELECT"), "{rel}");
        // `check` counts arrays by name
        if rel.contains("array") {
            assert!(out.contains("array "), "{rel}: {out}");
        }
    }
}

#[test]
fn version_policy_on_the_command_line() {
    let p = |f: &str| newest(&format!("valkey-io-valkey/{f}"));
    for f in ["encodings-rdb987.rdb", "encodings-rdb75-unknown-types.rdb"] {
        let path = p(f);
        let path = path.to_str().unwrap();
        let err = run_err(&["dump", path]);
        assert!(err.contains("--relaxed-version"), "{f}: {err}");
        let r = replicator(&["check", path]);
        assert_eq!(r.status.code(), Some(1), "{f}");
    }
    let ok = p("encodings-rdb987.rdb");
    let (out, _) = run_ok(&["check", ok.to_str().unwrap(), "--relaxed-version"]);
    assert!(out.contains("RDB version 987 (Valkey)"), "{out}");
    let bad = p("encodings-rdb987-unknown-types.rdb");
    let err = run_err(&["dump", bad.to_str().unwrap(), "--relaxed-version"]);
    assert!(err.contains("type 150"), "{err}");
    let (out, _) = run_ok(&["dump", p("encodings-rdb12.rdb").to_str().unwrap()]);
    assert!(out.contains("\"foo\""), "{out}");
}

#[test]
fn jsonl_carries_the_new_state() {
    let d = |rel: &str| jsonl(newest(rel).to_str().unwrap());
    let by_key = |v: &[J], k: &str| v.iter().find(|l| l["key"] == k).unwrap().clone();
    let arrays = d("built-unstable-e58041978/array.rdb");
    let mixed = by_key(&arrays, "array:mixed");
    assert_eq!(mixed["type"], "array");
    assert_eq!(
        mixed["value"]["items"],
        serde_json::json!([
            [0, "42"],
            [1, "-7"],
            [2, "3.25"],
            [3, "abc"],
            [4, "a-longer-string-value"],
            [5, "1234567890123"],
            [100, "sparse-at-100"],
            [5000, "next-slice"]
        ])
    );
    assert!(mixed["value"].get("next_insert_index").is_none());
    assert_eq!(
        by_key(&arrays, "array:ring")["value"]["next_insert_index"],
        1
    );
    let nack = by_key(
        &d("built-unstable-e58041978/stream-xnack.rdb"),
        "stream:nack",
    );
    assert_eq!(
        nack["value"]["groups"][0]["nacked"],
        serde_json::json!(["2-0", "3-0"])
    );
    let idmp = by_key(&d("built-8.6.3/stream-idmp.rdb"), "stream:idmp");
    let i = &idmp["value"]["idmp"];
    assert_eq!(
        (i["duration_s"].as_u64(), i["max_entries"].as_u64()),
        (Some(3600), Some(500))
    );
    assert_eq!(
        (i["iids_added"].as_u64(), i["iids_duplicates"].as_u64()),
        (Some(4), Some(1))
    );
    let producers = i["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 3);
    assert_eq!(producers[0]["id"], "producer-A");
    // the IDMPAUTO IID is 16 binary bytes
    assert!(
        producers[2]["entries"][0]["iid"].get("base64").is_some(),
        "{}",
        producers[2]
    );
    let meta = by_key(&d("built-8.6.3/keymeta-strict.rdb"), "meta:hash2");
    let km = meta["key_meta"].as_array().unwrap();
    assert_eq!(km.len(), 2);
    assert_eq!(
        (
            km[1]["class"].as_str(),
            km[1]["version"].as_u64(),
            km[1]["allow_ignore"].as_bool()
        ),
        (Some("KMT2"), Some(3), Some(false))
    );
    assert_eq!(
        km[1]["value"],
        serde_json::json!([{"string": "m2-strict"}, {"uint": 1}, {"float": 1.5}, {"string": "0xa.aaaaaaaaaaaaa9ep-5"}])
    );
}

/// Commands as (name, sorted args): argument order within XCLAIM's options does not matter.
fn commands(resp: &[u8]) -> Vec<Vec<String>> {
    let mut buf = bytes::BytesMut::from(resp);
    let mut dec = resp_codec::Decoder::new();
    let mut out = Vec::new();
    while let Some(c) = dec.decode_command(&mut buf).unwrap() {
        let mut a: Vec<String> = c
            .args()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if a[0] == "XCLAIM" {
            a[6..].sort();
        }
        // we also create every consumer (librdb creates only those with pending entries)
        if a[0] != "SELECT" && !(a[0] == "XGROUP" && a[1] == "CREATECONSUMER") {
            out.push(a);
        }
    }
    out
}

#[test]
fn resp_for_86_and_84_targets_matches_librdb() {
    let src = newest("redis-librdb/stream_v13_idmp.rdb");
    for (target, file, dropped) in [
        (None, "stream_v13_target_ver_8.6.resp", false),
        (Some("13"), "stream_v13_target_ver_8.6.resp", false),
        (Some("12"), "stream_v13_target_ver_8.4.resp", true),
    ] {
        let mut args = vec!["dump", src.to_str().unwrap(), "--format", "resp"];
        if let Some(t) = target {
            args.extend(["--target-version", t]);
        }
        let (out, err) = run_ok_bytes(&args);
        let want = std::fs::read(newest("redis-librdb").join(file)).unwrap();
        assert_eq!(commands(&out), commands(&want), "{target:?}");
        assert_eq!(
            err.contains("left out the IDMP state of 1 streams"),
            dropped,
            "{err}"
        );
    }
    // RDB 14 NACK zones: claimed, released with XNACK, for 8.8 targets only
    let x = newest("built-unstable-e58041978/stream-xnack.rdb");
    let (out, _) = run_ok_bytes(&["dump", x.to_str().unwrap(), "--format", "resp"]);
    let cmds = commands(&out);
    assert!(
        cmds.contains(
            &[
                "XNACK",
                "stream:nack",
                "mygroup",
                "FAIL",
                "IDS",
                "2",
                "2-0",
                "3-0",
                "RETRYCOUNT",
                "1"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    let (out, err) = run_ok(&[
        "dump",
        x.to_str().unwrap(),
        "--format",
        "resp",
        "--target-version",
        "12",
    ]);
    assert!(!out.contains("XNACK") && !out.contains("__replicator_nack"));
    assert!(err.contains("left out 2 NACK-zone entries"), "{err}");
    // arrays go as RESTORE of an RDB 14 payload, and not at all to older targets
    let a = newest("built-unstable-e58041978/array.rdb");
    let (out, _) = run_ok_bytes(&["dump", a.to_str().unwrap(), "--format", "resp"]);
    let mut buf = bytes::BytesMut::from(&out[..]);
    let mut dec = resp_codec::Decoder::new();
    let mut restored = Vec::new();
    while let Some(c) = dec.decode_command(&mut buf).unwrap() {
        if c.is("RESTORE") {
            // the payload is an RDB 14 DUMP of the array, insert index included
            let d = rdb_format::decode_dump(c.arg(3).unwrap()).unwrap();
            assert_eq!(d.version, 14);
            restored.push((
                String::from_utf8_lossy(c.arg(1).unwrap()).into_owned(),
                d.value,
            ));
        }
    }
    assert_eq!(restored.len(), 3);
    let ring = restored.iter().find(|(k, _)| k == "array:ring").unwrap();
    assert!(matches!(&ring.1, rdb_format::Value::Array(a) if a.next_insert_index() == 1));
    let err = run_err(&[
        "dump",
        a.to_str().unwrap(),
        "--format",
        "resp",
        "--target-version",
        "13",
    ]);
    assert!(err.contains("array:") && err.contains("Redis 8.8"), "{err}");
    // module metadata has no command: said on stderr
    let k = newest("built-8.6.3/keymeta-ignorable.rdb");
    let (_, err) = run_ok(&["dump", k.to_str().unwrap(), "--format", "resp"]);
    assert!(err.contains("module metadata of 2 keys"), "{err}");
}

#[test]
fn rdb_13_and_14_written_and_read_back() {
    let scratch = test_support::temp_dir("newest-rdb");
    for rel in FILES.iter().filter(|f| !f.contains("valkey")) {
        let src = newest(rel);
        let before = jsonl(src.to_str().unwrap());
        let version: u32 = std::fs::read(&src).unwrap()[5..9]
            .iter()
            .fold(0, |v, d| v * 10 + u32::from(d - b'0'));
        let out = scratch.join("out.rdb");
        let o = out.to_str().unwrap();
        for target in [version, 14] {
            let t = target.to_string();
            run_ok(&[
                "dump",
                src.to_str().unwrap(),
                "--format",
                "rdb",
                "--target-version",
                &t,
                "-o",
                o,
            ]);
            assert_eq!(
                &std::fs::read(&out).unwrap()[..9],
                format!("REDIS{target:04}").as_bytes()
            );
            let mut after = jsonl(o);
            if target > version {
                // RDB 14 gives every group a (here empty) NACK zone
                for l in &mut after {
                    let groups = l.pointer_mut("/value/groups").and_then(J::as_array_mut);
                    for g in groups.into_iter().flatten() {
                        assert_eq!(g["nacked"], serde_json::json!([]));
                        g.as_object_mut().unwrap().remove("nacked");
                    }
                }
            }
            let key = |v: &J| v["key"].as_str().unwrap().to_owned();
            // encodings may change (a listpack hash with TTLs is written as a hashtable)
            for l in &mut after {
                l.as_object_mut().unwrap().remove("encoding");
            }
            let mut a = before.clone();
            for l in &mut a {
                l.as_object_mut().unwrap().remove("encoding");
            }
            a.sort_by_key(key);
            after.sort_by_key(key);
            assert_eq!(after, a, "{rel} → RDB {target}");
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn lower_targets_refuse_or_drop_on_request() {
    let scratch = test_support::temp_dir("newest-lossy");
    let out = scratch.join("out.rdb");
    let o = out.to_str().unwrap();
    let dump = |rel: &str, extra: &[&str]| {
        let src = newest(rel).to_str().unwrap().to_owned();
        let mut args = vec!["dump", src.as_str(), "--format", "rdb", "-o", o];
        args.extend(extra);
        replicator(&args)
    };
    let r = dump("built-8.6.3/stream-idmp.rdb", &["--target-version", "12"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("stream:idmp") && err.contains("--lossy"),
        "{err}"
    );
    let r = dump(
        "built-8.6.3/stream-idmp.rdb",
        &["--target-version", "12", "--lossy"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.success() && err.contains("IDMP state of 1 streams"),
        "{err}"
    );
    let r = dump(
        "built-unstable-e58041978/stream-xnack.rdb",
        &["--target-version", "13", "--lossy"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.success() && err.contains("2 NACK-zone entries"),
        "{err}"
    );
    let r = dump(
        "built-unstable-e58041978/array.rdb",
        &["--target-version", "13", "--lossy"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("array:") && err.contains("RDB 14"),
        "{err}"
    );
    let r = dump(
        "built-8.6.3/keymeta-strict.rdb",
        &["--target-version", "12", "--lossy"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("meta:hash2") && err.contains("ALLOW_IGNORE"),
        "{err}"
    );
    let r = dump(
        "built-8.6.3/keymeta-ignorable.rdb",
        &["--target-version", "12", "--lossy"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.success() && err.contains("2 key metadata classes"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

fn server(name: &str) -> Option<test_support::ServerBin> {
    test_support::server_named(name, "part of the downgrade test")
}

fn strings(r: &Resp) -> Vec<String> {
    r.items().iter().map(Resp::text).collect()
}

/// The pending entries of a group as (id, consumer, delivery count).
fn pel(c: &mut Client, key: &str, group: &str) -> Vec<(String, String, i64)> {
    c.ok(&["XPENDING", key, group, "-", "+", "100"])
        .unwrap()
        .items()
        .iter()
        .map(|p| {
            let p = p.items();
            (p[0].text(), p[1].text(), p[3].int().unwrap())
        })
        .collect()
}

/// Redis 8.6/8.8 data moved to older servers: the converted files load there and hold what
/// the newer server held, less what `--lossy` said it dropped.
#[test]
fn downgraded_files_load_into_older_servers() {
    let scratch = test_support::temp_dir("newest-down");
    let contents = |dir: &str| -> J {
        serde_json::from_slice(&std::fs::read(newest(dir).join("contents.json")).unwrap()).unwrap()
    };
    let want = |dir: &str, file: &str, key: &str| -> J {
        let c = contents(dir);
        let f = c["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"] == file)
            .unwrap()
            .clone();
        f["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key"] == key)
            .unwrap()
            .clone()
    };
    let convert = |rel: &str, target: &str, name: &str| {
        let out = scratch.join(name);
        run_ok(&[
            "dump",
            newest(rel).to_str().unwrap(),
            "--format",
            "rdb",
            "--target-version",
            target,
            "--lossy",
            "-o",
            out.to_str().unwrap(),
        ]);
        out
    };
    let mut ran = 0;
    // RDB 13/14 streams → RDB 10 on Redis 7.0
    if let Some(r70) = server("redis-7.0") {
        let f = convert("built-8.6.3/stream-idmp.rdb", "10", "idmp10.rdb");
        let s = Server::start(&r70, &[], Some(&f)).unwrap();
        let mut c = s.client().unwrap();
        let w = want("built-8.6.3", "stream-idmp.rdb", "stream:idmp");
        let xr = c.ok(&["XRANGE", "stream:idmp", "-", "+"]).unwrap();
        let ids: Vec<String> = xr.items().iter().map(|e| e.items()[0].text()).collect();
        let wids: Vec<String> = w["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[0].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, wids);
        assert_eq!(
            pel(&mut c, "stream:idmp", "grp")
                .iter()
                .map(|p| (p.0.clone(), p.1.clone()))
                .collect::<Vec<_>>(),
            wids[..2]
                .iter()
                .map(|i| (i.clone(), "alice".to_owned()))
                .collect::<Vec<_>>()
        );
        let info = c.ok(&["XINFO", "STREAM", "stream:idmp"]).unwrap();
        let info = info.items();
        let at = info
            .iter()
            .position(|x| x.text() == "entries-added")
            .unwrap();
        assert_eq!(info[at + 1].int(), Some(5));

        let f = convert(
            "built-unstable-e58041978/stream-xnack.rdb",
            "10",
            "nack10.rdb",
        );
        let s = Server::start(&r70, &[], Some(&f)).unwrap();
        let mut c = s.client().unwrap();
        // the released entries are gone from the group; bob keeps his
        assert_eq!(
            pel(&mut c, "stream:nack", "mygroup"),
            [
                ("1-0".to_owned(), "bob".to_owned(), 1),
                ("4-0".to_owned(), "bob".to_owned(), 1)
            ]
        );
        ran += 1;
    }
    // RDB 13/14 hashes with field TTLs and key metadata → RDB 12 on Redis 8.2
    if let Some(r82) = server("redis-8.2") {
        for dir in ["built-8.6.3", "built-unstable-e58041978"] {
            let f = convert(&format!("{dir}/base-types.rdb"), "12", "base12.rdb");
            let s = Server::start(&r82, &[], Some(&f)).unwrap();
            let mut c = s.client().unwrap();
            for key in ["hash:lp-fe", "hash:ht-fe", "hash:hsetex"] {
                let w = want(dir, "base-types.rdb", key);
                let mut got = strings(&c.ok(&["HGETALL", key]).unwrap());
                let mut flat: Vec<String> = w["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_owned())
                    .collect();
                let pairs = |v: &mut Vec<String>| {
                    let mut p: Vec<(String, String)> =
                        v.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect();
                    p.sort();
                    p
                };
                assert_eq!(pairs(&mut got), pairs(&mut flat), "{dir} {key}");
                for (field, t) in w["field_pexpiretime_ms"].as_object().unwrap() {
                    let r = c.ok(&["HPEXPIRETIME", key, "FIELDS", "1", field]).unwrap();
                    assert_eq!(r.items()[0].int(), t.as_i64(), "{dir} {key} {field}");
                }
            }
            let w = want(dir, "base-types.rdb", "str:ttl");
            let t = c.ok(&["PEXPIRETIME", "str:ttl"]).unwrap().int();
            assert_eq!(t, w["pexpiretime_ms"].as_i64());
            let f = convert(&format!("{dir}/keymeta-ignorable.rdb"), "12", "meta12.rdb");
            let s = Server::start(&r82, &[], Some(&f)).unwrap();
            let mut c = s.client().unwrap();
            assert_eq!(
                c.ok(&["GET", "meta:str"]).unwrap().text(),
                "value-with-meta"
            );
            assert_eq!(c.ok(&["DBSIZE"]).unwrap().int(), Some(3));
            // and the same data through RESTORE payloads for RDB 12
            let fresh = Server::start(&r82, &[], None).unwrap();
            let (out, _) = run_ok_bytes(&[
                "dump",
                newest(&format!("{dir}/base-types.rdb")).to_str().unwrap(),
                "--format",
                "resp",
                "--restore",
                "--target-version",
                "12",
            ]);
            pipe_into(
                &test_support::redis_cli().expect("redis-cli"),
                fresh.port,
                &out,
                dir,
            );
            let mut c2 = fresh.client().unwrap();
            let loaded_server = Server::start(
                &r82,
                &[],
                Some(&convert(&format!("{dir}/base-types.rdb"), "12", "b.rdb")),
            )
            .unwrap();
            let mut loaded = loaded_server.client().unwrap();
            for key in [
                "hash:lp-fe",
                "hash:ht-fe",
                "list:small",
                "set:small",
                "zset:small",
                "str:int",
            ] {
                let d1 = c2.ok(&["DEBUG", "DIGEST-VALUE", key]).unwrap();
                let d2 = loaded.ok(&["DEBUG", "DIGEST-VALUE", key]).unwrap();
                assert_eq!(d1, d2, "{dir} {key}");
            }
        }
        ran += 1;
    }
    assert!(ran > 0, "no older server installed");
    let _ = std::fs::remove_dir_all(&scratch);
}
