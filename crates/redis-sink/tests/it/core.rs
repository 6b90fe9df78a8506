//! The core against a simulated cluster: slots that move (MOVED), keys being migrated (ASK),
//! retry replies, lost connections; every key's writes arrive once and in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use redis_sink::{Action, Config, OnError, Pipeline, Route, Unit, key_slot};
use resp_codec::{Command, Decoder, Frame};

fn ok() -> Frame {
    Frame::SimpleString("OK".into())
}

fn err(t: String) -> Frame {
    Frame::Error(t.into_bytes().into())
}

/// `RPUSH key n` routed to the key's slot.
fn unit(key: &str, n: u64, offset: u64) -> Unit {
    let c = Command::from_args(["RPUSH", key, &n.to_string()]);
    Unit::new(c.raw().clone(), 1, Route::Slot(key_slot(key.as_bytes())), 0)
        .key(key.to_owned().into())
        .position(0, Some(offset))
}

struct Sim {
    /// node → port
    ports: Vec<u16>,
    owner: Vec<usize>,
    /// slot → node it is migrating to (keys missing at the owner are ASKed there)
    migrating: HashMap<u16, usize>,
    /// per node: keys it holds and their lists
    data: Vec<BTreeMap<String, Vec<u64>>>,
    /// per node: pending replies not yet delivered
    rng: u64,
    tryagain: u32,
}

impl Sim {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn node_of_port(&self, port: u16) -> usize {
        self.ports.iter().position(|&p| p == port).unwrap()
    }

    fn topology(&self) -> Vec<redis_sink::Master> {
        (0..self.ports.len())
            .map(|n| {
                let mut ranges: Vec<(u16, u16)> = Vec::new();
                for s in (0..16384u16).filter(|&s| self.owner[s as usize] == n) {
                    match ranges.last_mut() {
                        Some(r) if r.1 + 1 == s => r.1 = s,
                        _ => ranges.push((s, s)),
                    }
                }
                (("127.0.0.1".to_owned(), self.ports[n]), ranges)
            })
            .collect()
    }

    /// Runs the commands in `bytes` on `node`, returning the replies.
    fn run(&mut self, node: usize, bytes: &[u8], asking: &mut bool) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        // now and then the node is down for a whole batch (CLUSTERDOWN, as while it fails over)
        let down = self.tryagain > 0 && self.next() % 9 == 0;
        if down {
            self.tryagain -= 1;
        }
        while let Some(c) = dec.decode_command(&mut buf).unwrap() {
            if c.is("ASKING") {
                *asking = true;
                out.push(ok());
                continue;
            }
            if c.is("SELECT") {
                out.push(ok());
                continue;
            }
            let key = String::from_utf8(c.arg(1).unwrap().to_vec()).unwrap();
            let n: u64 = std::str::from_utf8(c.arg(2).unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let slot = key_slot(key.as_bytes());
            let was_asking = std::mem::take(asking);
            if down {
                out.push(err("CLUSTERDOWN The cluster is down".into()));
                continue;
            }
            let owner = self.owner[slot as usize];
            let importing = self.migrating.get(&slot).copied();
            let serves = if owner == node {
                // a key already moved to the importing node is asked for there
                importing.is_none() || self.data[node].contains_key(&key)
            } else {
                importing == Some(node) && was_asking
            };
            if !serves {
                let (to, word) = if owner == node {
                    (importing.unwrap(), "ASK")
                } else {
                    (owner, "MOVED")
                };
                out.push(err(format!("{word} {slot} 127.0.0.1:{}", self.ports[to])));
                continue;
            }
            self.data[node].entry(key).or_default().push(n);
            out.push(Frame::Integer(1));
        }
        out
    }
}

#[test]
fn every_keys_writes_arrive_once_and_in_order_through_moves_asks_retries_and_drops() {
    for seed in 1..=40u64 {
        run_sim(seed);
    }
}

fn run_sim(seed: u64) {
    let ports = vec![7001, 7002, 7003];
    let mut sim = Sim {
        ports: ports.clone(),
        owner: (0..16384).map(|s| s * 3 / 16384).collect(),
        migrating: HashMap::new(),
        data: vec![BTreeMap::new(); 3],
        rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        tryagain: 20,
    };
    let mut cfg = Config::default();
    cfg.window(8, 1 << 20)
        .backoff(Duration::from_millis(1), Duration::from_millis(4));
    let mut p = Pipeline::cluster(cfg, &sim.topology());
    let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    let mut now = Instant::now();
    let mut next_n: HashMap<String, u64> = HashMap::new();
    let mut up: HashSet<usize> = HashSet::new();
    let mut asking = [false; 3];
    // what each connection was sent and has not answered yet
    let mut wire: Vec<Vec<u8>> = vec![Vec::new(); 3];
    let total = 600u64;
    let mut pushed = 0u64;
    let mut spins = 0;
    while pushed < total || !p.is_idle() {
        spins += 1;
        assert!(
            spins < 200_000,
            "seed {seed}: no progress\n{}",
            p.debug_state()
        );
        now += Duration::from_millis(1);
        p.handle_timeout(now);
        while let Some(a) = p.poll_action(now) {
            match a {
                Action::Connect { node, port, .. } => {
                    assert_eq!(sim.ports[node_index(&ports, port)], port);
                    up.insert(node);
                    p.handle_connected(node);
                }
                Action::Refresh => p.handle_topology(&sim.topology()),
                _ => {}
            }
        }
        while pushed < total && p.can_accept() && sim.next() % 3 != 0 {
            let k = keys[(sim.next() % keys.len() as u64) as usize].clone();
            let n = next_n.entry(k.clone()).or_insert(0);
            *n += 1;
            pushed += 1;
            p.push(unit(&k, *n, pushed));
        }
        while let Some((node, bytes)) = p.poll_transmit() {
            assert!(
                up.contains(&node),
                "seed {seed}: sent to a node not connected"
            );
            wire[node].extend_from_slice(&bytes);
        }
        // the target works through what it was sent
        for (node, pending) in wire.iter_mut().enumerate() {
            if pending.is_empty() || sim.next() % 2 == 0 {
                continue;
            }
            let bytes = std::mem::take(pending);
            // a connection lost before the commands arrive: nothing ran, all is sent again
            if sim.next() % 40 == 0 {
                up.remove(&node);
                p.handle_disconnected(node, now);
                continue;
            }
            let port = sim.ports[node];
            let n = sim.node_of_port(port);
            let replies = sim.run(n, &bytes, &mut asking[n]);
            for r in replies {
                p.handle_reply(node, r, now).unwrap();
            }
        }
        // the cluster changes: a slot of one of our keys moves (with its keys), or starts
        // migrating (keys move one by one, ASK for the moved ones)
        if sim.next() % 25 == 0 {
            let k = &keys[(sim.next() % keys.len() as u64) as usize];
            let slot = key_slot(k.as_bytes());
            let from = sim.owner[slot as usize];
            let to = (from + 1 + (sim.next() % 2) as usize) % 3;
            if let Some(imp) = sim.migrating.remove(&slot) {
                // the migration ends: the rest of the slot's keys move, the slot is the importer's
                let moving: Vec<String> = sim.data[from]
                    .keys()
                    .filter(|x| key_slot(x.as_bytes()) == slot)
                    .cloned()
                    .collect();
                for m in moving {
                    let v = sim.data[from].remove(&m).unwrap();
                    sim.data[imp].insert(m, v);
                }
                sim.owner[slot as usize] = imp;
            } else if sim.next() % 2 == 0 {
                sim.migrating.insert(slot, to);
                // one key moves at once
                if let Some(v) = sim.data[from].remove(k) {
                    sim.data[to].insert(k.clone(), v);
                }
            } else {
                let moving: Vec<String> = sim.data[from]
                    .keys()
                    .filter(|x| key_slot(x.as_bytes()) == slot)
                    .cloned()
                    .collect();
                for m in moving {
                    let v = sim.data[from].remove(&m).unwrap();
                    sim.data[to].insert(m, v);
                }
                sim.owner[slot as usize] = to;
            }
        }
    }
    // every key: 1..=n, once each, in order, on exactly one node
    for k in &keys {
        let holders: Vec<&Vec<u64>> = sim.data.iter().filter_map(|d| d.get(k)).collect();
        let want: Vec<u64> = (1..=next_n.get(k).copied().unwrap_or(0)).collect();
        if want.is_empty() {
            continue;
        }
        assert_eq!(
            holders.len(),
            1,
            "seed {seed} key {k}: on {} nodes",
            holders.len()
        );
        assert_eq!(holders[0], &want, "seed {seed} key {k}");
    }
    assert_eq!(p.acked(0), Some(total), "seed {seed}");
    let c = p.counters();
    assert!(c.acked == total, "seed {seed}: {c:?}");
}

fn node_index(ports: &[u16], port: u16) -> usize {
    ports.iter().position(|&p| p == port).unwrap()
}

#[test]
fn refusals_stop_or_are_counted_and_conflicts_likewise() {
    let now = Instant::now();
    let set = |k: &str| {
        let c = Command::from_args(["RESTORE", k, "0", "payload"]);
        Unit::new(c.raw().clone(), 1, Route::Slot(0), 0)
            .key(k.to_owned().into())
            .conflict_on_busy(true)
    };
    let start = |cfg: Config| {
        let mut p = Pipeline::standalone(cfg, "127.0.0.1", 7000);
        let Some(Action::Connect { node, .. }) = p.poll_action(now) else {
            panic!()
        };
        p.handle_connected(node);
        p
    };
    // default: a conflict stops, naming the key
    let mut p = start(Config::default());
    p.push(set("a"));
    p.poll_transmit().unwrap();
    p.handle_reply(
        0,
        err("BUSYKEY Target key name already exists.".into()),
        now,
    )
    .unwrap_err();
    let e = p.error().unwrap();
    assert_eq!(e.kind(), redis_sink::ErrorKind::Conflict);
    assert_eq!(e.key(), Some(&b"a"[..]));
    assert!(!p.can_accept());
    // skip: counted, with the key, and the rest goes on
    let mut cfg = Config::default();
    cfg.on_conflict(OnError::Skip).on_error(OnError::Skip);
    let mut p = start(cfg);
    p.push(set("a"));
    p.push(set("b").position(0, Some(9)));
    p.poll_transmit().unwrap();
    p.handle_reply(
        0,
        err("BUSYKEY Target key name already exists.".into()),
        now,
    )
    .unwrap();
    p.handle_reply(0, err("WRONGTYPE Operation against a key".into()), now)
        .unwrap();
    let c = p.counters();
    assert_eq!(c.conflicts_skipped.count, 1);
    assert_eq!(
        c.conflicts_skipped.first_keys,
        vec![bytes::Bytes::from("a")]
    );
    assert_eq!(c.refused["WRONGTYPE"].count, 1);
    assert_eq!(p.acked(0), Some(9));
    assert!(p.is_idle());
}

#[test]
fn an_all_masters_unit_waits_for_everything_before_it_and_holds_back_what_follows() {
    let now = Instant::now();
    let topo = vec![
        (("127.0.0.1".to_owned(), 7001), vec![(0, 8191)]),
        (("127.0.0.1".to_owned(), 7002), vec![(8192, 16383)]),
    ];
    let mut p = Pipeline::cluster(Config::default(), &topo);
    while let Some(Action::Connect { node, .. }) = p.poll_action(now) {
        p.handle_connected(node);
    }
    p.push(unit("k1", 1, 1));
    let flush = Command::from_args(["FLUSHALL"]);
    p.push(Unit::new(flush.raw().clone(), 1, Route::AllMasters, 0).position(0, Some(2)));
    p.push(unit("k1", 2, 3));
    let (n, b) = p.poll_transmit().unwrap();
    assert!(String::from_utf8_lossy(&b).contains("RPUSH"));
    assert!(p.poll_transmit().is_none(), "FLUSHALL waits for the RPUSH");
    p.handle_reply(n, Frame::Integer(1), now).unwrap();
    let mut flushed = Vec::new();
    while let Some((n, b)) = p.poll_transmit() {
        assert!(
            String::from_utf8_lossy(&b).contains("FLUSHALL"),
            "only FLUSHALL now"
        );
        flushed.push(n);
    }
    assert_eq!(flushed.len(), 2, "to both masters");
    p.handle_reply(flushed[0], ok(), now).unwrap();
    assert!(
        p.poll_transmit().is_none(),
        "the RPUSH after waits for both"
    );
    p.handle_reply(flushed[1], ok(), now).unwrap();
    assert_eq!(p.acked(0), Some(2));
    let (n, b) = p.poll_transmit().unwrap();
    assert!(String::from_utf8_lossy(&b).contains("RPUSH"));
    p.handle_reply(n, Frame::Integer(2), now).unwrap();
    assert_eq!(p.acked(0), Some(3));
}

#[test]
fn a_retry_refusal_passed_by_a_later_write_of_its_key_stops_the_pipeline() {
    let now = Instant::now();
    let start = || {
        let mut p = Pipeline::standalone(Config::default(), "127.0.0.1", 7000);
        let Some(Action::Connect { node, .. }) = p.poll_action(now) else {
            panic!()
        };
        p.handle_connected(node);
        p
    };
    // two keys: the refused one goes again after a backoff, the other is done
    let mut p = start();
    p.push(unit("a", 1, 10));
    p.push(unit("b", 1, 20));
    p.poll_transmit().unwrap();
    p.handle_reply(0, err("CLUSTERDOWN The cluster is down".into()), now)
        .unwrap();
    p.handle_reply(0, Frame::Integer(1), now).unwrap();
    assert_eq!(p.acked(0), None, "a is not applied yet");
    let later = now + Duration::from_secs(2);
    p.handle_timeout(later);
    let again = p.poll_transmit().expect("a goes again");
    assert_eq!(
        Decoder::new()
            .decode_command(&mut BytesMut::from(&again.1[..]))
            .unwrap()
            .unwrap()
            .arg(1),
        Some(&b"a"[..])
    );
    p.handle_reply(0, Frame::Integer(1), later).unwrap();
    assert_eq!(p.acked(0), Some(20));
    // one key: its second write was applied before its first: stop, naming it
    let mut p = start();
    p.push(unit("k", 1, 10));
    p.push(unit("k", 2, 20));
    p.poll_transmit().unwrap();
    p.handle_reply(
        0,
        err("LOADING Redis is loading the dataset in memory".into()),
        now,
    )
    .unwrap();
    let e = p.handle_reply(0, Frame::Integer(2), now).unwrap_err();
    assert!(e.to_string().contains("reorder"), "{e}");
    assert_eq!(e.key(), Some(&b"k"[..]));
    assert!(p.error().is_some());
}

#[test]
fn a_unit_sent_again_goes_in_its_resend_form() {
    let now = Instant::now();
    let mut p = Pipeline::standalone(Config::default(), "127.0.0.1", 7000);
    let Some(Action::Connect { node, .. }) = p.poll_action(now) else {
        panic!()
    };
    p.handle_connected(node);
    let tx = [
        Command::from_args(["MULTI"]).raw().clone(),
        Command::from_args(["INCR", "n"]).raw().clone(),
        Command::from_args(["EXEC"]).raw().clone(),
    ]
    .concat();
    let again = Command::from_args(["EVAL", "script", "0"]).raw().clone();
    p.push(
        Unit::new(tx.clone().into(), 3, Route::Slot(0), 0)
            .position(0, Some(50))
            .resend_as(again.clone(), 1),
    );
    let (_, first) = p.poll_transmit().unwrap();
    assert_eq!(&first[..], &tx[..]);
    // the reply is lost with the connection
    p.handle_disconnected(node, now);
    let later = now + Duration::from_secs(5);
    p.handle_timeout(later);
    if let Some(Action::Connect { node, .. }) = p.poll_action(later) {
        p.handle_connected(node);
    }
    let (_, second) = p.poll_transmit().unwrap();
    assert_eq!(&second[..], &again[..]);
    // one reply for the script, and the window is free again
    p.handle_reply(node, Frame::Integer(0), later).unwrap();
    assert_eq!(p.acked(0), Some(50));
    assert!(p.is_idle());
    assert_eq!(p.inflight()[0].1, 0);
    assert_eq!(p.counters().resent, 1);
}
