//! Every fixture decodes to the JSON Lines read from the live server that wrote it.

use std::collections::BTreeMap;

use serde_json::{Value as J, json};

use crate::{fixtures, replicator, testdata};

fn num(v: &J) -> J {
    match v {
        J::Number(n) => json!(n.as_f64()),
        other => other.clone(),
    }
}

/// Order-free, number-normalised form of a record's value.
fn normalize(ty: &str, v: &J) -> J {
    match ty {
        "set" => {
            let mut items: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.to_string())
                .collect();
            items.sort();
            json!(items)
        }
        "zset" => {
            let mut items: Vec<(String, J)> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].to_string(), num(&p[1])))
                .collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            json!(items)
        }
        "module" => json!({"module": v["module"], "raw": v["raw"]}),
        "stream" => {
            let mut s = v.clone();
            // consumers and groups in name order
            if let Some(groups) = s.get_mut("groups").and_then(J::as_array_mut) {
                for g in groups.iter_mut() {
                    if let Some(c) = g.get_mut("consumers").and_then(J::as_array_mut) {
                        c.sort_by_key(|c| c["name"].to_string());
                    }
                }
                groups.sort_by_key(|g| g["name"].to_string());
            }
            s
        }
        _ => v.clone(),
    }
}

fn records(text: &str) -> BTreeMap<(u64, String), J> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: J = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}"));
            ((v["db"].as_u64().unwrap(), v["key"].to_string()), v)
        })
        .collect()
}

#[test]
fn fixtures_decode_to_what_the_server_held() {
    for fx in fixtures() {
        let name = fx["name"].as_str().unwrap();
        let rdb = testdata().join(format!("{name}.rdb"));
        let expected = std::fs::read_to_string(testdata().join(format!("{name}.jsonl"))).unwrap();
        let out = replicator(&["dump", rdb.to_str().unwrap(), "--format", "jsonl"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = records(&String::from_utf8(out.stdout).unwrap());
        let want = records(&expected);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: key sets differ"
        );
        for (k, w) in &want {
            let g = &got[k];
            let ty = w["type"].as_str().unwrap();
            assert_eq!(g["type"], w["type"], "{name} {k:?}: type");
            assert_eq!(
                normalize(ty, &g["value"]),
                normalize(ty, &w["value"]),
                "{name} {k:?}: value"
            );
            match (g.get("expire_ms"), w.get("expire_ms")) {
                (Some(a), Some(b)) if w.get("expire_approx").is_some() => {
                    let d = a.as_i64().unwrap() - b.as_i64().unwrap();
                    assert!(d.abs() < 5000, "{name} {k:?}: expiry {a} vs {b}");
                }
                (a, b) => assert_eq!(a, b, "{name} {k:?}: expire_ms"),
            }
            assert_eq!(
                g.get("field_expire_ms"),
                w.get("field_expire_ms"),
                "{name} {k:?}: field TTLs"
            );
        }
    }
}

#[test]
fn every_fixture_checks_clean() {
    for fx in fixtures() {
        let name = fx["name"].as_str().unwrap();
        let rdb = testdata().join(format!("{name}.rdb"));
        let out = replicator(&["check", rdb.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("OK"), "{name}: {text}");
    }
}

#[test]
fn check_reports_offset_of_corruption() {
    let rdb = testdata().join("redis-7.0-compact.rdb");
    let mut data = std::fs::read(&rdb).unwrap();
    let n = data.len();
    data[n - 3] ^= 0x55; // inside the checksum
    let path = std::env::temp_dir().join(format!("replicator-badsum-{}.rdb", std::process::id()));
    std::fs::write(&path, &data).unwrap();
    let out = replicator(&["check", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("[offset {}]", n - 8)), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn check_names_the_last_key_read_before_an_error_that_has_none() {
    // string keys, the last one short or longer than the tally keeps without an allocation,
    // then a wrong checksum (an error of no key): the last key read is named
    for last in ["k:9", "a-key-that-is-longer-than-thirty-two-bytes:9"] {
        let mut data = b"REDIS0009\xfe\x00".to_vec();
        for i in 0..10 {
            let key = if i == 9 {
                last.to_owned()
            } else {
                format!("key-of-{}-bytes:{i}", 10 + 4 * i)
            };
            data.push(0);
            data.push(key.len() as u8);
            data.extend_from_slice(key.as_bytes());
            data.extend_from_slice(b"\x05value");
        }
        data.push(0xff);
        data.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let path = std::env::temp_dir().join(format!(
            "replicator-lastkey-{}-{}.rdb",
            std::process::id(),
            last.len()
        ));
        std::fs::write(&path, &data).unwrap();
        for threads in ["1", "2"] {
            let out = replicator(&["check", path.to_str().unwrap(), "--threads", threads]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{threads}: {err}");
            assert!(err.contains("checksum mismatch"), "{threads}: {err}");
            assert!(
                err.contains(&format!("Last key read: \"{last}\"\n")),
                "{threads}: {err}"
            );
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn check_finds_a_changed_value_byte_by_its_checksum_on_every_thread_count() {
    // a byte of a string value changed: every structure still holds, only the checksum
    // tells (summed in place from the mapping, on one thread and on several)
    let rdb = testdata().join("redis-7.0-compact.rdb");
    let mut data = std::fs::read(&rdb).unwrap();
    let at = data
        .windows(12)
        .position(|w| w == b"non-utf8 key")
        .expect("the fixture's value");
    data[at + 4] = b'-';
    let path = std::env::temp_dir().join(format!("replicator-badvalue-{}.rdb", std::process::id()));
    std::fs::write(&path, &data).unwrap();
    for threads in ["1", "2", "8"] {
        let out = replicator(&["check", path.to_str().unwrap(), "--threads", threads]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{threads}: {err}");
        assert!(err.contains("checksum mismatch"), "{threads}: {err}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn filters_select_keys() {
    let rdb = testdata().join("redis-7.0-compact.rdb");
    let rdb = rdb.to_str().unwrap();
    let count = |args: &[&str]| -> u64 {
        let mut a = vec!["dump", rdb, "--format", "count"];
        a.extend_from_slice(args);
        let out = replicator(&a);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    assert_eq!(count(&[]), 30);
    assert_eq!(count(&["--db", "1"]), 2);
    assert_eq!(count(&["--type", "stream"]), 2);
    assert_eq!(count(&["--type", "set", "--type", "zset"]), 5);
    assert_eq!(count(&["--key", "^str:"]), 9);
    let out = replicator(&["dump", rdb, "--format", "keys", "--key", "^list:"]);
    let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["list:big", "list:exp", "list:plain", "list:small"]
    );
    let out = replicator(&["dump", rdb, "--format", "json", "--all", "--db", "1"]);
    let v: J = serde_json::from_slice(&out.stdout).expect("--format json is one JSON document");
    let arr = v.as_array().unwrap();
    assert!(arr.iter().any(|r| r.get("aux").is_some()));
    assert!(arr.iter().any(|r| r.get("function").is_some()));
    assert!(arr.iter().any(|r| r.get("eof").is_some()));
    assert_eq!(arr.iter().filter(|r| r.get("key").is_some()).count(), 2);
}

#[test]
fn mmap_and_streaming_reads_agree() {
    for fx in fixtures() {
        let name = fx["name"].as_str().unwrap();
        let rdb = testdata().join(format!("{name}.rdb"));
        let rdb = rdb.to_str().unwrap();
        // on one thread: read ahead, mapped by default, and `--mmap` as before it was
        let streamed = replicator(&["dump", rdb, "--threads", "1", "--mmap=false"]);
        let mapped = replicator(&["dump", rdb, "--threads", "1"]);
        let flag = replicator(&["dump", "--mmap", rdb, "--threads", "1"]);
        assert!(
            streamed.status.success() && mapped.status.success() && flag.status.success(),
            "{name}"
        );
        assert_eq!(streamed.stdout, mapped.stdout, "{name}");
        assert_eq!(flag.stdout, mapped.stdout, "{name}");
        let checked = replicator(&["check", rdb, "--threads", "1"]);
        let read = replicator(&["check", rdb, "--threads", "1", "--mmap=false"]);
        assert!(checked.status.success(), "{name}");
        assert_eq!(checked.stdout, read.stdout, "{name}");
        // standard input works too
        let data = std::fs::read(rdb).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args(["dump", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // feed stdin from a thread: the output is bigger than a pipe buffer
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert_eq!(out.stdout, streamed.stdout, "{name} from stdin");
    }
}

#[test]
fn truncated_file_is_reported_with_its_offset() {
    let rdb = testdata().join("redis-8.2-compact.rdb");
    let data = std::fs::read(&rdb).unwrap();
    let path = std::env::temp_dir().join(format!("replicator-trunc-{}.rdb", std::process::id()));
    for cut in [data.len() / 3, data.len() - 9] {
        std::fs::write(&path, &data[..cut]).unwrap();
        let out = replicator(&["check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "cut {cut}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("input ended while reading"),
            "cut {cut}: {err}"
        );
        let dump = replicator(&["dump", path.to_str().unwrap()]);
        assert!(
            !dump.status.success(),
            "cut {cut}: dump of a truncated file succeeded"
        );
    }
    let _ = std::fs::remove_file(&path);
}
