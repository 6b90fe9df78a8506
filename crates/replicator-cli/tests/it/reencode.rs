//! `dump --format rdb` and `dump --format resp --restore` on every fixture, checked by the
//! servers themselves: the re-encoded file loads with the same per-key digests, expiries,
//! field TTLs and groups; the RESTORE stream rebuilds the same.

use std::path::Path;

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

/// `rdb` re-encoded to `out` with `dump --format rdb` loads in `bin` with the same data, and
/// its `dump --format resp --restore` piped into a fresh server rebuilds the same: the keys
/// compared and the `RESTORE` commands written.
fn re_encode_and_restore(
    cli: &Path,
    bin: &ServerBin,
    margs: &[(&str, &str)],
    rdb: &Path,
    out: &Path,
    name: &str,
) -> (usize, usize) {
    let rdb_s = rdb.to_str().unwrap();
    let r = replicator(&[
        "dump",
        rdb_s,
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
    let original = Server::start(bin, margs, Some(rdb)).unwrap();
    let reencoded = Server::start(bin, margs, Some(out)).unwrap();
    let n = same_data(&original, &reencoded, bin, name);

    // RESTORE payloads of our own making
    let fresh = Server::start(bin, margs, None).unwrap();
    let r = replicator(&["dump", rdb_s, "--format", "resp", "--restore"]);
    assert!(
        r.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let restores = r.stdout.windows(9).filter(|w| w == b"\r\nRESTORE").count();
    pipe_into(cli, fresh.port, &r.stdout, name);
    same_data(&original, &fresh, bin, name);
    (n, restores)
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
        let (n, _) = re_encode_and_restore(&cli, bin, &margs, &rdb, &out, name);
        assert!(n > 20, "{name}: only {n} keys");
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

/// Fills `c` with one key of each type past the decoder's chunk threshold (8,192 elements) and
/// a 3 MiB string, some with expiries, field TTLs where the server has them, and a stream
/// with a consumer group and pending entries.
fn fill_big_keys(c: &mut test_support::Client) {
    const N: usize = 20_000;
    let big: String = (0..3 << 20)
        .map(|i| (b'a' + (i % 7) as u8) as char)
        .collect();
    c.ok(&["SET", "big:string", &big]).unwrap();
    c.ok(&["PEXPIREAT", "big:string", "4102444800000"]).unwrap();
    for part in 0..N / 1000 {
        let range = part * 1000..(part + 1) * 1000;
        let mut list = vec!["RPUSH".to_owned(), "big:list".into()];
        let mut set = vec!["SADD".to_owned(), "big:set".into()];
        let mut zset = vec!["ZADD".to_owned(), "big:zset".into()];
        let mut hash = vec!["HSET".to_owned(), "big:hash".into()];
        for i in range {
            list.push(if i % 3 == 0 {
                i.to_string()
            } else {
                format!("element-{i}")
            });
            set.push(if i % 2 == 0 {
                i.to_string()
            } else {
                format!("member-{i}")
            });
            zset.push(format!("{}", i as f64 / 7.0));
            zset.push(format!("m{i}"));
            hash.push(format!("field-{i}"));
            hash.push(if i % 5 == 0 {
                i.to_string()
            } else {
                format!("value-{i}")
            });
        }
        for args in [list, set, zset, hash] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.ok(&args).unwrap();
        }
    }
    c.ok(&["PEXPIREAT", "big:set", "4102444800000"]).unwrap();
    if c.has_command("HPEXPIREAT") {
        c.ok(&["HSET", "big:ttlhash", "f", "v"]).unwrap();
        for part in 0..N / 1000 {
            let mut hash = vec!["HSET".to_owned(), "big:ttlhash".into()];
            for i in part * 1000..(part + 1) * 1000 {
                hash.push(format!("field-{i}"));
                hash.push(format!("value-{i}"));
            }
            let args: Vec<&str> = hash.iter().map(String::as_str).collect();
            c.ok(&args).unwrap();
        }
        for i in (0..N).step_by(97) {
            let (at, f) = (
                (4_102_444_800_000u64 + i as u64).to_string(),
                format!("field-{i}"),
            );
            c.ok(&["HPEXPIREAT", "big:ttlhash", &at, "FIELDS", "1", &f])
                .unwrap();
        }
    }
    for i in 0..N {
        let v = i.to_string();
        c.send(&["XADD", "big:stream", "*", "n", &v, "kind", "event"])
            .unwrap();
    }
    c.drain(N).unwrap();
    c.ok(&["XGROUP", "CREATE", "big:stream", "readers", "0"])
        .unwrap();
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "readers",
        "alice",
        "COUNT",
        "300",
        "STREAMS",
        "big:stream",
        ">",
    ])
    .unwrap();
    c.ok(&["SAVE"]).unwrap();
}

#[test]
fn big_keys_are_re_encoded_chunk_by_chunk() {
    let cli = test_support::redis_cli().expect("redis-cli");
    let scratch = test_support::temp_dir("reencode-big");
    let mut checked = 0;
    for name in [
        "redis-6.2",
        "redis-7.0",
        "redis-8.2",
        "valkey-8.1",
        "valkey-9.1",
    ] {
        let Some(bin) = server_named(name, "the big-key re-encode test") else {
            continue;
        };
        let source = Server::start(&bin, &[], None).unwrap();
        fill_big_keys(&mut source.client().unwrap());
        let rdb = scratch.join(format!("{name}.rdb"));
        std::fs::copy(source.dir.join("dump.rdb"), &rdb).unwrap();
        drop(source);
        let out = scratch.join(format!("{name}-out.rdb"));
        let (n, restores) = re_encode_and_restore(&cli, &bin, &[], &rdb, &out, name);
        assert!(n >= 6, "{name}: only {n} keys");
        // one RESTORE per key, however big
        assert_eq!(restores, n, "{name}: RESTORE commands");
        eprintln!("{name}: {n} big keys re-encoded and restored chunk by chunk");
        checked += 1;
    }
    assert!(checked > 0);
    let _ = std::fs::remove_dir_all(&scratch);
}
