//! `dump --format resp` of each fixture, piped into a fresh server, rebuilds the same data:
//! per-key `DEBUG DIGEST-VALUE`, expiries, hash field TTLs and consumer groups.

use std::io::Write;
use std::process::{Command, Stdio};

use test_support::{Client, Resp, Server, ServerBin, module_args, server_named};

use crate::{fixtures, replicator, testdata};

/// What two servers must agree on for one key: the facts as text, and on servers without
/// `PEXPIRETIME` (before 7.0) the expiry as the server's clock plus `PTTL`, which two reads
/// of the same expiry may give a few milliseconds apart.
#[derive(Clone)]
pub(crate) struct Facts {
    pub(crate) lines: Vec<String>,
    pub(crate) ttl_at: Option<i64>,
}

/// How far apart two estimates of one expiry may be ([`Facts::ttl_at`]): each is off by the
/// time between `PTTL` and `TIME` inside one `MULTI`, well under a millisecond on loopback.
const TTL_AT_SLACK_MS: i64 = 20;

impl PartialEq for Facts {
    fn eq(&self, other: &Self) -> bool {
        self.lines == other.lines
            && match (self.ttl_at, other.ttl_at) {
                (Some(a), Some(b)) => (a - b).abs() <= TTL_AT_SLACK_MS,
                (a, b) => a == b,
            }
    }
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ttl_at {
            Some(at) => write!(f, "{:?} expiring at about {at} ms", self.lines),
            None => write!(f, "{:?}", self.lines),
        }
    }
}

impl std::ops::Deref for Facts {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.lines
    }
}

/// The expiry of `key` estimated as the server's `TIME` plus its `PTTL`, both run inside one
/// `MULTI` so that nothing comes between them; `None` for a key without one.
fn ttl_at(c: &mut Client, key: &[u8]) -> Option<i64> {
    c.cmd_bytes(&[b"MULTI"]).unwrap();
    c.cmd_bytes(&[b"PTTL", key]).unwrap();
    c.cmd_bytes(&[b"TIME"]).unwrap();
    let r = c.cmd_bytes(&[b"EXEC"]).unwrap();
    let [ttl, time] = r.items() else {
        panic!("EXEC of PTTL and TIME: {r:?}")
    };
    let ttl = ttl.int().unwrap();
    let part = |i: usize| -> i64 { time.items()[i].text().parse().unwrap() };
    (ttl >= 0).then(|| part(0) * 1000 + part(1) / 1000 + ttl)
}

pub(crate) fn key_facts(c: &mut Client, bin: &ServerBin, key: &[u8]) -> Facts {
    let mut facts = Vec::new();
    let digest = c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", key]).unwrap();
    facts.push(format!("digest {digest:?}"));
    let mut at = None;
    if bin.major_minor() >= (7, 0) {
        facts.push(format!(
            "expire {:?}",
            c.cmd_bytes(&[b"PEXPIRETIME", key]).unwrap()
        ));
    } else {
        // relative TTLs drift between two servers: compare estimated absolute expiries
        at = ttl_at(c, key);
    }
    let ty = c.cmd_bytes(&[b"TYPE", key]).unwrap().text();
    if ty == "hash" && c.has_command("HPEXPIRETIME") {
        let fields = c.cmd_bytes(&[b"HKEYS", key]).unwrap();
        let mut names: Vec<Vec<u8>> = fields
            .items()
            .iter()
            .map(|f| f.bytes().unwrap().to_vec())
            .collect();
        names.sort();
        let n = names.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", n.as_bytes()];
        args.extend(names.iter().map(Vec::as_slice));
        facts.push(format!("field ttls {:?}", c.cmd_bytes(&args).unwrap()));
    }
    if ty == "stream" {
        let info = c.cmd_bytes(&[b"XINFO", b"GROUPS", key]).unwrap();
        for g in info.items() {
            // name, pending count, last-delivered-id, entries-read (times differ by design)
            let m: Vec<(String, &Resp)> =
                g.items().chunks(2).map(|p| (p[0].text(), &p[1])).collect();
            let pick = |k: &str| {
                m.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| format!("{v:?}"))
            };
            facts.push(format!(
                "group {:?} pending {:?} last {:?} read {:?}",
                pick("name"),
                pick("pending"),
                pick("last-delivered-id"),
                pick("entries-read")
            ));
            let name = m
                .iter()
                .find(|(n, _)| n == "name")
                .unwrap()
                .1
                .bytes()
                .unwrap()
                .to_vec();
            let pel = c
                .cmd_bytes(&[b"XPENDING", key, &name, b"-", b"+", b"1000"])
                .unwrap();
            // id, consumer, delivery count (idle time differs)
            for p in pel.items() {
                let p = p.items();
                facts.push(format!("pel {:?} {:?} {:?}", p[0], p[1], p[3]));
            }
        }
    }
    Facts {
        lines: facts,
        ttl_at: at,
    }
}

#[test]
fn resp_output_rebuilds_every_fixture() {
    let Some(cli) = test_support::redis_cli() else {
        panic!("redis-cli not found: install Debian's redis-tools (cargo xtask test does)");
    };
    let mut rebuilt = 0;
    for fx in fixtures() {
        let name = fx["name"].as_str().unwrap();
        let Some(bin) = &server_named(
            fx["server"].as_str().unwrap(),
            &format!("the rebuild test of {name}"),
        ) else {
            continue;
        };
        let module = fx["module"].as_bool().unwrap_or(false);
        let rdb = testdata().join(format!("{name}.rdb"));
        let margs = module_args(bin, module);
        let margs: Vec<(&str, &str)> = margs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let original = Server::start(bin, &margs, Some(&rdb)).unwrap();
        let fresh = Server::start(bin, &margs, None).unwrap();

        let out = replicator(&[
            "dump",
            rdb.to_str().unwrap(),
            "--format",
            "resp",
            "--batch",
            "100",
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pipe_into(&cli, fresh.port, &out.stdout, name);

        let mut a = original.client().unwrap();
        let mut b = fresh.client().unwrap();
        for db in ["0", "1"] {
            a.ok(&["SELECT", db]).unwrap();
            b.ok(&["SELECT", db]).unwrap();
            let keys = a.keys().unwrap();
            assert!(
                !keys.is_empty() || db == "1",
                "{name}: no keys loaded in db {db}"
            );
            assert_eq!(keys, b.keys().unwrap(), "{name} db {db}: key sets differ");
            for key in &keys {
                assert_eq!(
                    key_facts(&mut a, bin, key),
                    key_facts(&mut b, bin, key),
                    "{name} db {db} key {:?}",
                    String::from_utf8_lossy(key)
                );
            }
        }
        if bin.major_minor() >= (7, 0) {
            let fa = a.ok(&["FUNCTION", "LIST"]).unwrap();
            let fb = b.ok(&["FUNCTION", "LIST"]).unwrap();
            assert_eq!(fa, fb, "{name}: functions differ");
        }
        rebuilt += 1;
    }
    assert!(
        rebuilt > 0,
        "no fixture could be rebuilt: no server installed"
    );
}

/// Pipes `commands` into `redis-cli --pipe` on `port` and checks it reports no errors.
pub(crate) fn pipe_into(cli: &std::path::Path, port: u16, commands: &[u8], name: &str) {
    let mut pipe = Command::new(cli)
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pipe.stdin.take().unwrap().write_all(commands).unwrap();
    let res = pipe.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&res.stdout).into_owned() + &String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success() && report.contains("errors: 0"),
        "{name}: {report}"
    );
}
