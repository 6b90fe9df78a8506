//! `DUMP` payloads from real servers decode to what the server holds, and our payloads for
//! the same values are accepted by `RESTORE` and read back the same.

use std::collections::BTreeMap;

use rdb_format::{EncodeConfig, Item, decode_all, decode_dump, dump_payload};
use test_support::{Client, Resp, Server, ServerBin};

use crate::encode::normal;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn word(&mut self) -> String {
        match self.below(4) {
            0 => (self.next() as i64 >> self.below(60)).to_string(),
            1 => "x".repeat(self.below(100) as usize + 1),
            2 => format!("member-{}", self.below(1000)),
            _ => (0..self.below(30))
                .map(|_| char::from(b'a' + self.below(26) as u8))
                .collect(),
        }
    }
}

fn fill(c: &mut Client, bin: &ServerBin, rng: &mut Rng) {
    for i in 0..40 {
        let key = format!("k{i}");
        let n = [1, 5, 50, 200, 1000][rng.below(5) as usize];
        let mut args: Vec<String> = Vec::new();
        match i % 6 {
            0 => {
                let v = if rng.below(2) == 0 {
                    rng.word()
                } else {
                    "abc".repeat(n)
                };
                args.extend(["SET".into(), key, v]);
            }
            1 => {
                args.extend(["RPUSH".into(), key]);
                args.extend((0..n).map(|_| rng.word()));
            }
            2 => {
                args.extend(["SADD".into(), key]);
                if rng.below(2) == 0 {
                    args.extend((0..n).map(|_| rng.below(1_000_000).to_string()));
                } else {
                    args.extend((0..n).map(|_| rng.word()));
                }
            }
            3 => {
                args.extend(["ZADD".into(), key]);
                for _ in 0..n {
                    let score = match rng.below(4) {
                        0 => "inf".to_owned(),
                        1 => (rng.below(1000) as f64 / 7.0).to_string(),
                        _ => (rng.below(100) as i64 - 50).to_string(),
                    };
                    args.push(score);
                    args.push(rng.word());
                }
            }
            4 => {
                args.extend(["HSET".into(), key.clone()]);
                for _ in 0..n {
                    args.push(rng.word());
                    args.push(rng.word());
                }
                let r = c
                    .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
                    .unwrap();
                assert!(!matches!(r, Resp::Error(_)), "{r:?}");
                if c.has_command("HPEXPIRE") {
                    let f = args[2].clone();
                    c.cmd(&["HPEXPIRE", &key, "100000000", "FIELDS", "1", &f])
                        .unwrap();
                }
                continue;
            }
            _ => {
                for j in 0..n.min(300) {
                    c.cmd(&[
                        "XADD",
                        &key,
                        &format!("{}-{}", 1000 + j, j % 3),
                        "f",
                        &rng.word(),
                    ])
                    .unwrap();
                }
                c.cmd(&["XGROUP", "CREATE", &key, "g", "0"]).unwrap();
                c.cmd(&[
                    "XREADGROUP",
                    "GROUP",
                    "g",
                    "alice",
                    "COUNT",
                    "3",
                    "STREAMS",
                    &key,
                    ">",
                ])
                .unwrap();
                let _ = bin;
                continue;
            }
        }
        let r = c
            .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap();
        assert!(!matches!(r, Resp::Error(_)), "{r:?}");
    }
}

#[test]
fn dump_payloads_of_real_servers_and_ours_restore() {
    let servers = test_support::find_servers();
    assert!(!servers.is_empty());
    for bin in &servers {
        let server = Server::start(bin, &[], None).unwrap();
        let mut c = server.client().unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(bin.major_minor().0));
        fill(&mut c, bin, &mut rng);
        c.ok(&["SAVE"]).unwrap();
        let saved: BTreeMap<Vec<u8>, rdb_format::Value> =
            decode_all(&std::fs::read(server.dir.join("dump.rdb")).unwrap())
                .unwrap()
                .into_iter()
                .filter_map(|i| match i {
                    Item::Key(k) => Some((k.head.key.to_vec(), k.value)),
                    _ => None,
                })
                .collect();
        assert!(saved.len() >= 40, "{}: {} keys", bin.name, saved.len());
        for (key, value) in &saved {
            let payload = c.cmd_bytes(&[b"DUMP", key]).unwrap();
            let payload = payload.bytes().unwrap().to_vec();
            let d = decode_dump(&payload)
                .unwrap_or_else(|e| panic!("{}: DUMP of {key:?}: {e}", bin.name));
            let v = u32::from(d.version);
            assert_eq!(
                normal(&d.value, v),
                normal(value, v),
                "{} key {:?}",
                bin.name,
                String::from_utf8_lossy(key)
            );
            // our payload for the value, restored under another name, digests the same
            let ours = dump_payload(&d.value, &EncodeConfig::new(v).unwrap()).unwrap();
            let copy = [b"copy:".as_slice(), key].concat();
            let r = c
                .cmd_bytes(&[b"RESTORE", &copy, b"0", &ours, b"REPLACE"])
                .unwrap();
            assert_eq!(
                r,
                Resp::Simple("OK".into()),
                "{}: RESTORE of our payload for {key:?}",
                bin.name
            );
            let a = c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", key]).unwrap();
            let b = c.cmd_bytes(&[b"DEBUG", b"DIGEST-VALUE", &copy]).unwrap();
            assert_eq!(a, b, "{}: {key:?}", bin.name);
        }
        eprintln!(
            "{}: {} keys: DUMP decoded, our payloads restored",
            bin.name,
            saved.len()
        );
    }
}
