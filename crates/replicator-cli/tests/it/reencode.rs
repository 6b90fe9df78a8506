//! `dump --format rdb` and `dump --format resp --restore` on every fixture, checked by the
//! servers themselves: the re-encoded file loads with the same per-key digests, expiries,
//! field TTLs and groups; the RESTORE stream rebuilds the same.

use test_support::{Server, ServerBin, module_args, server_named};

use crate::rebuild::{key_facts, pipe_into};
use crate::{fixtures, replicator, testdata};

fn same_data(a: &Server, b: &Server, bin: &ServerBin, name: &str) -> usize {
    let mut ca = a.client().unwrap();
    let mut cb = b.client().unwrap();
    let mut n = 0;
    for db in 0..16 {
        ca.ok(&["SELECT", &db.to_string()]).unwrap();
        cb.ok(&["SELECT", &db.to_string()]).unwrap();
        let keys = ca.keys().unwrap();
        assert_eq!(keys, cb.keys().unwrap(), "{name} db {db}: key sets differ");
        for k in &keys {
            assert_eq!(
                key_facts(&mut ca, bin, k),
                key_facts(&mut cb, bin, k),
                "{name} db {db} key {:?}",
                String::from_utf8_lossy(k)
            );
            n += 1;
        }
    }
    if bin.major_minor() >= (7, 0) {
        ca.ok(&["SELECT", "0"]).unwrap();
        cb.ok(&["SELECT", "0"]).unwrap();
        assert_eq!(
            ca.ok(&["FUNCTION", "LIST"]).unwrap(),
            cb.ok(&["FUNCTION", "LIST"]).unwrap(),
            "{name}: functions"
        );
    }
    n
}

#[test]
fn every_fixture_re_encoded_loads_with_the_same_data() {
    let cli = test_support::redis_cli().expect("redis-cli");
    let scratch = test_support::temp_dir("reencode");
    let mut checked = 0;
    for fx in fixtures() {
        let name = fx["name"].as_str().unwrap();
        let Some(bin) = &server_named(
            fx["server"].as_str().unwrap(),
            &format!("the re-encode test of {name}"),
        ) else {
            continue;
        };
        let module = fx["module"].as_bool().unwrap_or(false);
        let margs = module_args(bin, module);
        let margs: Vec<(&str, &str)> = margs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let rdb = testdata().join(format!("{name}.rdb"));
        let out = scratch.join(format!("{name}.rdb"));
        let r = replicator(&[
            "dump",
            rdb.to_str().unwrap(),
            "--format",
            "rdb",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            r.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let original = Server::start(bin, &margs, Some(&rdb)).unwrap();
        let reencoded = Server::start(bin, &margs, Some(&out)).unwrap();
        let n = same_data(&original, &reencoded, bin, name);
        assert!(n > 20, "{name}: only {n} keys");

        // RESTORE payloads of our own making
        let fresh = Server::start(bin, &margs, None).unwrap();
        let r = replicator(&[
            "dump",
            rdb.to_str().unwrap(),
            "--format",
            "resp",
            "--restore",
        ]);
        assert!(
            r.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        pipe_into(&cli, fresh.port, &r.stdout, name);
        same_data(&original, &fresh, bin, name);
        eprintln!("{name}: {n} keys re-encoded and restored with the same data");
        checked += 1;
    }
    assert!(checked > 0);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn a_filtered_rdb_holds_only_what_passed() {
    let rdb = testdata().join("redis-7.0-compact.rdb");
    let scratch = test_support::temp_dir("filtered");
    let out = scratch.join("hashes.rdb");
    let r = replicator(&[
        "dump",
        rdb.to_str().unwrap(),
        "--format",
        "rdb",
        "-o",
        out.to_str().unwrap(),
        "--type",
        "hash",
        "--db",
        "0",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines = String::from_utf8(replicator(&["dump", out.to_str().unwrap()]).stdout).unwrap();
    assert!(lines.lines().count() > 0);
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["db"].as_u64()),
            (Some("hash"), Some(0)),
            "{l}"
        );
    }
    // a version that cannot hold what the file has says so
    let r = replicator(&[
        "dump",
        rdb.to_str().unwrap(),
        "--format",
        "rdb",
        "-o",
        out.to_str().unwrap(),
        "--target-version",
        "9",
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("functions need RDB 10"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn re_encoded_for_a_newer_version_loads_there_with_the_same_data() {
    let by = |n: &str| server_named(n, "part of the upgrade test");
    // (fixture, its server, target version, the newer server)
    let pairs = [
        ("redis-6.2-plain", "redis-6.2", "10", "redis-7.0"),
        ("redis-7.0-compact", "redis-7.0", "12", "redis-8.2"),
    ];
    let scratch = test_support::temp_dir("upgrade");
    let mut done = 0;
    for (fx, old, target, new) in pairs {
        let (Some(old), Some(new)) = (&by(old), &by(new)) else {
            continue;
        };
        let rdb = testdata().join(format!("{fx}.rdb"));
        let out = scratch.join(format!("{fx}-v{target}.rdb"));
        let r = replicator(&[
            "dump",
            rdb.to_str().unwrap(),
            "--format",
            "rdb",
            "--target-version",
            target,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            r.status.success(),
            "{fx}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        // both on the newer server (digests of doubles differ between versions): the original
        // file loaded there, and ours written for it
        let _ = old;
        let original = Server::start(new, &[], Some(&rdb)).unwrap();
        let upgraded = Server::start(new, &[], Some(&out)).unwrap();
        let n = same_data(&original, &upgraded, new, fx);
        eprintln!(
            "{fx} → RDB {target} on {}: {n} keys with the same digests",
            new.name
        );
        done += 1;
    }
    assert!(done > 0);
    let _ = std::fs::remove_dir_all(&scratch);
}
