//! Every branch of the protocol core, driven by a scripted master (no sockets).

use std::time::{Duration, Instant};

use replica_net::proto::{Auth, Channels, Event, History, Replica, ReplicaConfig};
use test_support::master::{cmd, commands, full_sync, handshake_reply};

const ID: &str = "0123456789abcdef0123456789abcdef01234567";
const ID2: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn rdb() -> Vec<u8> {
    std::fs::read(test_support::testdata().join("redis-7.0-compact.rdb")).unwrap()
}

fn sent(r: &mut Replica) -> Vec<Vec<String>> {
    let mut buf = Vec::new();
    while let Some(b) = r.poll_transmit() {
        buf.extend_from_slice(&b);
    }
    commands(&buf)
}

fn events(r: &mut Replica) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

/// Runs the handshake up to PSYNC (answering as a master does) and returns what was sent.
fn handshake(r: &mut Replica, now: Instant) -> Vec<Vec<String>> {
    r.handle_connected(now);
    let mut all = Vec::new();
    loop {
        let s = sent(r);
        assert_eq!(s.len(), 1, "one command at a time: {s:?}");
        let done = s[0][0] == "PSYNC";
        let reply = handshake_reply(&s[0]);
        all.extend(s);
        if done {
            return all;
        }
        r.handle_input(reply, now).unwrap();
    }
}

/// A whole full sync of the bundled RDB, then a command stream.
fn full_sync_bytes(diskless: bool, stream: &[u8]) -> Vec<u8> {
    full_sync_of(&rdb(), diskless, stream)
}

/// The same with another RDB.
fn full_sync_of(rdb: &[u8], diskless: bool, stream: &[u8]) -> Vec<u8> {
    full_sync(ID, 1000, rdb, diskless, stream)
}

fn stream_bytes() -> Vec<u8> {
    [
        cmd(&["PING"]),
        cmd(&["SELECT", "3"]),
        cmd(&["SET", "k", "v"]),
        cmd(&["REPLCONF", "GETACK", "*"]),
        cmd(&["MULTI"]),
        cmd(&["INCR", "n"]),
        cmd(&["EXEC"]),
    ]
    .concat()
}

#[test]
fn handshake_sends_what_a_replica_sends() {
    let now = Instant::now();
    let mut cfg = ReplicaConfig::default();
    cfg.auth(Some(Auth {
        user: Some("repl".into()),
        password: "secret".into(),
    }));
    cfg.listening_port(6380);
    cfg.ip_address(Some("10.0.0.1".into()));
    let mut r = Replica::new(cfg);
    let s = handshake(&mut r, now);
    let want: Vec<Vec<&str>> = vec![
        vec!["AUTH", "repl", "secret"],
        vec!["PING"],
        vec!["REPLCONF", "listening-port", "6380"],
        vec!["REPLCONF", "ip-address", "10.0.0.1"],
        vec![
            "REPLCONF",
            "capa",
            "eof",
            "capa",
            "psync2",
            "capa",
            "rdb-channel-repl",
            "capa",
            "dual-channel",
        ],
        vec!["REPLCONF", "version", "9.1.0"],
        vec!["PSYNC", "?", "-1"],
    ];
    assert_eq!(s, want);
    // the password never shows in Debug output
    assert!(!format!("{r:?}").contains("secret"));
}

#[test]
fn refused_credentials_are_auth_errors() {
    let now = Instant::now();
    let mut cfg = ReplicaConfig::default();
    cfg.auth(Some(Auth {
        user: None,
        password: "wrong".into(),
    }));
    let mut r = Replica::new(cfg);
    r.handle_connected(now);
    assert_eq!(sent(&mut r), vec![vec!["AUTH", "wrong"]]);
    let e = r
        .handle_input(b"-WRONGPASS invalid username-password pair\r\n", now)
        .unwrap_err();
    assert!(e.is_auth() && e.is_fatal(), "{e}");
    // no AUTH configured but the master wants one
    let mut r = Replica::new(ReplicaConfig::default());
    r.handle_connected(now);
    let e = r
        .handle_input(b"-NOAUTH Authentication required.\r\n", now)
        .unwrap_err();
    assert!(e.is_auth(), "{e}");
    // an ACL user without PSYNC
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    let e = r
        .handle_input(
            b"-NOPERM this user has no permissions to run the 'psync' command\r\n",
            now,
        )
        .unwrap_err();
    assert!(e.is_auth(), "{e}");
}

#[test]
fn replconf_errors_are_not_fatal() {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    r.handle_connected(now);
    sent(&mut r);
    r.handle_input(b"+PONG\r\n", now).unwrap();
    for _ in 0..3 {
        assert_eq!(sent(&mut r)[0][0], "REPLCONF");
        r.handle_input(b"-ERR Unrecognized REPLCONF option: version\r\n", now)
            .unwrap();
    }
    assert_eq!(sent(&mut r), vec![vec!["PSYNC", "?", "-1"]]);
}

fn check_full_sync(diskless: bool, cuts: &[usize]) {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    let stream = stream_bytes();
    let bytes = full_sync_bytes(diskless, &stream);
    let mut last = 0;
    let mut evs = Vec::new();
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        r.handle_input(&bytes[last..c], now).unwrap();
        last = c;
        evs.extend(events(&mut r));
    }
    let Event::SyncStart(s) = &evs[0] else {
        panic!("{:?}", evs[0])
    };
    assert!(s.full && !s.resync && s.replid == ID && s.offset == 1000);
    let keys = evs
        .iter()
        .filter(|e| matches!(e, Event::Rdb(rdb_format::Item::Key(_))))
        .count();
    let want_keys = rdb_format::decode_all(&rdb())
        .unwrap()
        .iter()
        .filter(|i| matches!(i, rdb_format::Item::Key(_)))
        .count();
    assert_eq!(keys, want_keys);
    let end = evs
        .iter()
        .position(|e| matches!(e, Event::SyncEnd { .. }))
        .unwrap();
    let Event::SyncEnd { checksum, bytes } = &evs[end] else {
        unreachable!()
    };
    assert!(checksum.is_some_and(|c| c != 0));
    assert_eq!(*bytes, rdb().len() as u64 + if diskless { 40 } else { 0 });
    // PING and REPLCONF GETACK are counted but not handed out: only their offsets are
    let skipped: Vec<u64> = evs[end + 1..]
        .iter()
        .filter_map(|e| match e {
            Event::Offset(o) => Some(*o),
            _ => None,
        })
        .collect();
    let at = |n: usize| {
        1000 + [
            cmd(&["PING"]),
            cmd(&["SELECT", "3"]),
            cmd(&["SET", "k", "v"]),
            cmd(&["REPLCONF", "GETACK", "*"]),
        ][..n]
            .concat()
            .len() as u64
    };
    assert_eq!(skipped, vec![at(1), at(4)]);
    let cmds: Vec<(u64, Vec<String>, Option<u64>)> = evs[end + 1..]
        .iter()
        .filter(|e| !matches!(e, Event::Offset(_)))
        .map(|e| match e {
            Event::Command(c) => (
                c.db,
                c.cmd
                    .args()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
                c.offset,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    let names: Vec<&str> = cmds.iter().map(|c| c.1[0].as_str()).collect();
    assert_eq!(names, ["SELECT", "SET", "MULTI", "INCR", "EXEC"]);
    assert_eq!(cmds[1].0, 3);
    let mut off = 1000u64;
    let mut offsets = Vec::new();
    for c in [
        &["PING"][..],
        &["SELECT", "3"],
        &["SET", "k", "v"],
        &["REPLCONF", "GETACK", "*"],
        &["MULTI"],
        &["INCR", "n"],
        &["EXEC"],
    ] {
        off += cmd(c).len() as u64;
        if c[0] != "PING" && c[0] != "REPLCONF" {
            offsets.push(Some(off));
        }
    }
    assert_eq!(cmds.iter().map(|c| c.2).collect::<Vec<_>>(), offsets);
    assert_eq!(r.position(), Some((ID, 1000 + stream.len() as u64)));
    // an ACK right after the RDB, and one for the GETACK with the offset after it
    let acks = sent(&mut r);
    let getack_end = 1000
        + [
            cmd(&["PING"]),
            cmd(&["SELECT", "3"]),
            cmd(&["SET", "k", "v"]),
            cmd(&["REPLCONF", "GETACK", "*"]),
        ]
        .concat()
        .len();
    assert_eq!(
        acks,
        vec![
            vec!["REPLCONF".to_owned(), "ACK".into(), "1000".into()],
            vec!["REPLCONF".into(), "ACK".into(), getack_end.to_string()]
        ]
    );
}

#[test]
fn disk_and_diskless_full_syncs() {
    check_full_sync(false, &[]);
    check_full_sync(true, &[]);
}

#[test]
fn every_split_point_gives_the_same_events() {
    for diskless in [false, true] {
        let total = full_sync_bytes(diskless, &stream_bytes()).len();
        for cut in (0..total).step_by(97) {
            check_full_sync(diskless, &[cut]);
        }
        // and near the end, byte by byte (marker and stream boundaries)
        for cut in total - 400..total {
            check_full_sync(diskless, &[cut]);
        }
    }
    let cuts: Vec<usize> = (1..full_sync_bytes(true, &stream_bytes()).len()).collect();
    check_full_sync(true, &cuts);
}

#[test]
fn a_wrong_diskless_marker_is_an_error() {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    let mut bytes = full_sync_bytes(true, &[]);
    let n = bytes.len();
    bytes[n - 1] = b'y';
    let e = r.handle_input(&bytes, now).unwrap_err();
    assert!(e.is_protocol() && e.to_string().contains("marker"), "{e}");
}

#[test]
fn a_disk_transfer_shorter_than_its_rdb_is_an_error() {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    let rdb = rdb();
    let mut m = format!("+FULLRESYNC {ID} 0\r\n${}\r\n", rdb.len() - 20).into_bytes();
    m.extend(&rdb[..rdb.len() - 20]);
    let e = r.handle_input(&m, now).unwrap_err();
    assert!(e.is_rdb(), "{e}");
    // a damaged RDB
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    let mut bad = rdb.clone();
    bad[200] ^= 0xff;
    let mut m = format!("+FULLRESYNC {ID} 0\r\n${}\r\n", bad.len()).into_bytes();
    m.extend(&bad);
    assert!(r.handle_input(&m, now).unwrap_err().is_rdb());
}

#[test]
fn partial_syncs_and_reconnects() {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    r.handle_input(&full_sync_bytes(false, &cmd(&["SET", "a", "1"])), now)
        .unwrap();
    events(&mut r);
    sent(&mut r);
    let (_, off) = r.position().unwrap();
    // the link drops in the stream: PSYNC from where we are
    r.handle_disconnected("reset by peer");
    assert!(matches!(events(&mut r)[..], [Event::Disconnected { .. }]));
    let s = handshake(&mut r, now);
    assert_eq!(
        s.last().unwrap(),
        &vec!["PSYNC".to_owned(), ID.into(), (off + 1).to_string()]
    );
    // +CONTINUE with a new id (a failover): adopted, the offset goes on
    r.handle_input(format!("+CONTINUE {ID2}\r\n").as_bytes(), now)
        .unwrap();
    r.handle_input(&cmd(&["SET", "b", "2"]), now).unwrap();
    let ev = events(&mut r);
    let Event::SyncStart(s) = &ev[0] else {
        panic!()
    };
    assert!(!s.full && s.replid == ID2 && s.offset == off);
    assert!(
        matches!(&ev[1], Event::Command(c) if c.offset == Some(off + cmd(&["SET", "b", "2"]).len() as u64))
    );
    // +CONTINUE without an id keeps ours
    r.handle_disconnected("again");
    handshake(&mut r, now);
    r.handle_input(b"+CONTINUE\r\n", now).unwrap();
    assert!(matches!(&events(&mut r)[1], Event::SyncStart(s) if s.replid == ID2));
    // refused: a full resync, signalled as such
    r.handle_disconnected("again");
    handshake(&mut r, now);
    r.handle_input(format!("+FULLRESYNC {ID} 5000\r\n").as_bytes(), now)
        .unwrap();
    assert!(matches!(&events(&mut r)[1], Event::SyncStart(s) if s.full && s.resync));
    // cut during that RDB: the next sync is a full one again (nothing half-loaded continues)
    r.handle_input(b"$100\r\nREDIS0009", now).unwrap();
    r.handle_disconnected("cut in the RDB");
    let s = handshake(&mut r, now);
    assert_eq!(s.last().unwrap(), &vec!["PSYNC", "?", "-1"]);
    r.handle_input(format!("+FULLRESYNC {ID} 6000\r\n").as_bytes(), now)
        .unwrap();
    assert!(
        events(&mut r)
            .iter()
            .any(|e| matches!(e, Event::SyncStart(s) if s.resync))
    );
}

#[test]
fn busy_masters_and_old_masters() {
    let now = Instant::now();
    for reply in [
        "-LOADING Redis is loading the dataset in memory\r\n",
        "-NOMASTERLINK Can't SYNC while not connected with my master\r\n",
    ] {
        let mut r = Replica::new(ReplicaConfig::default());
        handshake(&mut r, now);
        let e = r.handle_input(reply.as_bytes(), now).unwrap_err();
        assert!(e.is_retry_later() && !e.is_fatal(), "{e}");
    }
    // a master without PSYNC: SYNC, then an RDB without FULLRESYNC, and no offsets
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    r.handle_input(b"-ERR unknown command 'PSYNC'\r\n", now)
        .unwrap();
    assert_eq!(sent(&mut r), vec![vec!["SYNC"]]);
    let rdb = rdb();
    let mut m = format!("${}\r\n", rdb.len()).into_bytes();
    m.extend(&rdb);
    m.extend(cmd(&["SET", "x", "y"]));
    r.handle_input(&m, now).unwrap();
    let ev = events(&mut r);
    assert!(matches!(ev.last(), Some(Event::Command(c)) if c.offset.is_none()));
    assert!(sent(&mut r).is_empty(), "no ACKs to an old master");
}

#[test]
fn acks_every_interval() {
    let t0 = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, t0);
    // before the stream, only the read timeout is due
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    r.handle_input(&full_sync_bytes(false, &[]), t0).unwrap();
    sent(&mut r);
    let due = r.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_secs(1));
    r.handle_timeout(t0 + Duration::from_millis(500)).unwrap();
    assert!(sent(&mut r).is_empty());
    r.handle_timeout(due).unwrap();
    assert_eq!(sent(&mut r), vec![vec!["REPLCONF", "ACK", "1000"]]);
    assert_eq!(r.poll_timeout(), Some(due + Duration::from_secs(1)));
}

#[test]
fn rdb_only_stops_after_the_rdb() {
    let now = Instant::now();
    let mut cfg = ReplicaConfig::default();
    cfg.rdb_only(true);
    let mut r = Replica::new(cfg);
    handshake(&mut r, now);
    r.handle_input(&full_sync_bytes(true, &cmd(&["SET", "a", "1"])), now)
        .unwrap();
    assert!(r.is_done());
    let ev = events(&mut r);
    assert!(matches!(ev.last(), Some(Event::SyncEnd { .. })));
    assert!(sent(&mut r).is_empty());
}

#[test]
fn garbage_in_the_stream_is_a_protocol_error() {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    r.handle_input(&full_sync_bytes(false, &[]), now).unwrap();
    let e = r.handle_input(b"+OK\r\n", now).unwrap_err();
    assert!(e.is_protocol(), "{e}");
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    assert!(r.handle_input(b"+WHAT\r\n", now).unwrap_err().is_protocol());
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    assert!(
        r.handle_input(format!("+FULLRESYNC {ID} 0\r\n*3\r\n").as_bytes(), now)
            .unwrap_err()
            .is_protocol()
    );
}

#[test]
fn after_a_diskless_rdb_acks_come_fast_until_the_stream_starts() {
    // the master starts the stream on an ACK it reads after its RDB child finished; our first
    // ACK can beat that, so more follow every 100 ms until the stream begins
    let t0 = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, t0);
    r.handle_input(&full_sync_bytes(true, &[]), t0).unwrap();
    assert_eq!(sent(&mut r).len(), 1);
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    r.handle_timeout(t0 + Duration::from_millis(100)).unwrap();
    assert_eq!(sent(&mut r), vec![vec!["REPLCONF", "ACK", "1000"]]);
    let t1 = t0 + Duration::from_millis(150);
    r.handle_input(&cmd(&["PING"]), t1).unwrap();
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(1100)));
}

fn newest(rel: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/newest-formats/{rel}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Redis 8.6 (RDB 13), 8.8 (RDB 14) and Valkey 9.1 transfers (full-sync payloads are
/// byte-identical to the files; the two Valkey ones were captured from a real primary
/// answering a replica that announced 9.1.0, and one that announced nothing) decode through
/// the replica as they do from files, whole and byte by byte.
#[test]
fn newest_format_transfers_decode_as_the_files_do() {
    for rel in [
        "built-8.6.3/stream-idmp.rdb",
        "built-8.6.3/keymeta-strict.rdb",
        "built-8.6.3/base-types.rdb",
        "built-unstable-e58041978/array.rdb",
        "built-unstable-e58041978/stream-xnack.rdb",
        "built-valkey-9.1.0/replsync-as-9.1.0-replica.rdb",
        "built-valkey-9.1.0/replsync-no-version.rdb",
    ] {
        let rdb = newest(rel);
        let want: Vec<rdb_format::Item> = rdb_format::decode_all(&rdb)
            .unwrap()
            .into_iter()
            .filter(|i| matches!(i, rdb_format::Item::Key(_)))
            .collect();
        assert!(!want.is_empty(), "{rel}");
        for (diskless, bytewise) in [(false, false), (true, false), (true, true)] {
            let now = Instant::now();
            let mut r = Replica::new(ReplicaConfig::default());
            let hs = handshake(&mut r, now);
            assert!(hs.contains(&vec!["REPLCONF".into(), "version".into(), "9.1.0".into()]));
            let m = full_sync_of(&rdb, diskless, &cmd(&["SET", "after", "sync"]));
            let mut evs = Vec::new();
            if bytewise {
                for b in &m {
                    r.handle_input(std::slice::from_ref(b), now).unwrap();
                    evs.extend(events(&mut r));
                }
            } else {
                r.handle_input(&m, now).unwrap();
                evs.extend(events(&mut r));
            }
            let got: Vec<rdb_format::Item> = evs
                .iter()
                .filter_map(|e| match e {
                    Event::Rdb(i @ rdb_format::Item::Key(_)) => Some(i.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(got, want, "{rel} diskless={diskless} bytewise={bytewise}");
            assert!(
                matches!(evs.last(), Some(Event::Command(c)) if c.cmd.arg(1) == Some(&b"after"[..])),
                "{rel}: the stream goes on after the RDB"
            );
        }
    }
}

/// A link that stays open but brings nothing is dead after the read timeout, counted from the
/// last byte received: the ACKs the replica keeps sending every second do not restart it.
#[test]
fn a_silent_link_fails_from_the_last_byte() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut cfg = ReplicaConfig::default();
    cfg.read_timeout(Some(s(3)));
    let mut r = Replica::new(cfg);
    handshake(&mut r, t0);
    r.handle_input(&full_sync_bytes(false, &[]), t0).unwrap();
    sent(&mut r);
    for tick in 1..3 {
        r.handle_timeout(t0 + s(tick)).unwrap();
        assert_eq!(sent(&mut r).len(), 1, "an ACK every second");
        // the next wake-up: the next ACK, before the silence deadline
        assert_eq!(r.poll_timeout(), Some(t0 + s(tick + 1)));
    }
    r.handle_timeout(t0 + Duration::from_millis(2_999)).unwrap();
    let e = r.handle_timeout(t0 + s(3)).unwrap_err();
    assert!(e.is_timeout() && !e.is_fatal(), "{e}");
    assert!(e.to_string().contains("silent"), "{e}");
    // a byte resets the clock, and so does the driver resuming after backpressure
    let mut r2 = Replica::new({
        let mut c = ReplicaConfig::default();
        c.read_timeout(Some(s(3)));
        c
    });
    handshake(&mut r2, t0);
    r2.handle_input(&full_sync_bytes(false, &[]), t0).unwrap();
    r2.handle_input(&cmd(&["PING"]), t0 + s(2)).unwrap();
    r2.handle_timeout(t0 + Duration::from_millis(4_999))
        .unwrap();
    r2.handle_resumed(t0 + s(4));
    r2.handle_timeout(t0 + Duration::from_millis(6_999))
        .unwrap();
    assert!(r2.handle_timeout(t0 + s(7)).unwrap_err().is_timeout());
    // and during the RDB transfer too (a master that stops mid-snapshot)
    let mut r3 = Replica::new({
        let mut c = ReplicaConfig::default();
        c.read_timeout(Some(s(3)));
        c
    });
    handshake(&mut r3, t0);
    let bytes = full_sync_bytes(false, &[]);
    r3.handle_input(&bytes[..bytes.len() / 2], t0 + s(1))
        .unwrap();
    r3.handle_timeout(t0 + Duration::from_millis(3_999))
        .unwrap();
    assert!(r3.handle_timeout(t0 + s(4)).unwrap_err().is_timeout());
}

#[test]
fn a_new_master_is_asked_from_the_last_write_and_nothing_is_delivered_twice() {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    let set = cmd(&["SET", "a", "1"]);
    let hello = cmd(&["PUBLISH", "__sentinel__:hello", "x"]);
    let stream = [set.clone(), cmd(&["PING"]), hello.clone()].concat();
    r.handle_input(&full_sync_bytes(false, &stream), now)
        .unwrap();
    let delivered = events(&mut r)
        .iter()
        .filter(|e| matches!(e, Event::Command(_)))
        .count();
    assert_eq!(delivered, 2, "SET and PUBLISH");
    sent(&mut r);
    let (_, off) = r.position().unwrap();
    let after_set = off - (cmd(&["PING"]).len() + hello.len()) as u64;
    // the same node again: from the last byte
    r.handle_disconnected("reset");
    let s = handshake(&mut r, now);
    assert_eq!(s.last().unwrap()[2], (off + 1).to_string());
    r.handle_input(b"+CONTINUE\r\n", now).unwrap();
    events(&mut r);
    // another node (a promoted replica that never saw the PING and the hello): from the write
    r.handle_disconnected("the master moved");
    r.rewind_to_last_write();
    let s = handshake(&mut r, now);
    assert_eq!(s.last().unwrap()[2], (after_set + 1).to_string());
    r.handle_input(format!("+CONTINUE {ID2}\r\n").as_bytes(), now)
        .unwrap();
    // the new master's own history from there: the hello again (not delivered twice), then
    // a new write
    r.handle_input(&[hello.clone(), cmd(&["SET", "b", "2"])].concat(), now)
        .unwrap();
    let cmds: Vec<String> = events(&mut r)
        .iter()
        .filter_map(|e| match e {
            Event::Command(c) => Some(String::from_utf8_lossy(c.cmd.arg(1).unwrap()).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(cmds, vec!["b"], "only the new write");
    assert_eq!(
        r.position().unwrap().1,
        after_set + (hello.len() + cmd(&["SET", "b", "2"]).len()) as u64
    );
}

/// Runs the handshake answering `INFO replication` with `info` (a bulk string); returns the
/// commands sent.
fn handshake_with_info(r: &mut Replica, now: Instant, info: &str) -> Vec<Vec<String>> {
    r.handle_connected(now);
    let mut all = Vec::new();
    loop {
        let s = sent(r);
        assert_eq!(s.len(), 1, "one command at a time: {s:?}");
        let done = s[0][0] == "PSYNC";
        let reply = if s[0][0] == "INFO" {
            format!("${}\r\n{info}\r\n", info.len()).into_bytes()
        } else {
            handshake_reply(&s[0]).to_vec()
        };
        all.extend(s);
        if done {
            return all;
        }
        r.handle_input(&reply, now).unwrap();
    }
}

#[test]
fn a_new_node_is_asked_whether_it_holds_our_history_before_the_psync() {
    let now = Instant::now();
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    r.handle_input(&full_sync_bytes(false, &cmd(&["SET", "a", "1"])), now)
        .unwrap();
    events(&mut r);
    sent(&mut r);
    let (_, off) = r.position().unwrap();
    let backlog = format!(
        "repl_backlog_active:1\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:{}\r\n",
        off + 500
    );
    // the same node again: not asked
    r.handle_disconnected("reset");
    let s = handshake(&mut r, now);
    assert!(!s.iter().any(|c| c[0] == "INFO"), "{s:?}");
    r.handle_input(b"+CONTINUE\r\n", now).unwrap();
    let ev = events(&mut r);
    assert!(matches!(&ev[1], Event::SyncStart(s) if s.history.is_none()));
    // a promoted replica whose replid2 is ours, up to past our offset: inherited
    r.handle_disconnected("the master moved");
    r.rewind_to_last_write();
    let info = format!(
        "# Replication\r\nrole:master\r\nmaster_replid:{ID2}\r\nmaster_replid2:{ID}\r\n\
         master_repl_offset:{}\r\nsecond_repl_offset:{}\r\n{backlog}",
        off + 100,
        off + 1
    );
    let s = handshake_with_info(&mut r, now, &info);
    assert_eq!(s[s.len() - 2], ["INFO", "replication"]);
    r.handle_input(format!("+CONTINUE {ID2}\r\n").as_bytes(), now)
        .unwrap();
    let ev = events(&mut r);
    assert!(
        matches!(&ev[1], Event::SyncStart(s) if !s.full && s.history == Some(History::Inherited { second_repl_offset: off + 1 })),
        "{ev:?}"
    );
    // a node whose previous history ended before our offset: lost, and the master agrees
    r.handle_disconnected("the master moved again");
    r.rewind_to_last_write();
    let info = format!(
        "master_replid:{}\r\nmaster_replid2:{ID2}\r\nsecond_repl_offset:{off}\r\n{backlog}",
        "c".repeat(40)
    );
    handshake_with_info(&mut r, now, &info);
    r.handle_input(&full_sync_bytes(false, &[]), now).unwrap();
    let ev = events(&mut r);
    let Event::SyncStart(s) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert!(s.full && s.resync);
    let Some(History::Lost { why }) = &s.history else {
        panic!("{s:?}")
    };
    assert!(why.contains("second_repl_offset"), "{why}");
    // a node that refuses INFO is tried all the same, with nothing said
    r.handle_disconnected("once more");
    r.rewind_to_last_write();
    r.handle_connected(now);
    loop {
        let s = sent(&mut r);
        if s[0][0] == "PSYNC" {
            break;
        }
        let reply: &[u8] = if s[0][0] == "INFO" {
            b"-ERR unknown command 'INFO'\r\n"
        } else {
            handshake_reply(&s[0])
        };
        r.handle_input(reply, now).unwrap();
    }
    r.handle_input(b"+CONTINUE\r\n", now).unwrap();
    assert!(matches!(&events(&mut r)[1], Event::SyncStart(s) if s.history.is_none()));
}

fn rdb_sent(r: &mut Replica) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Some(b) = r.poll_rdb_transmit() {
        buf.extend_from_slice(&b);
    }
    buf
}

/// The diskless RDB transfer of `rdb` as the RDB channel carries it.
fn eof_transfer(rdb: &[u8]) -> Vec<u8> {
    let mark = [b'm'; 40];
    [b"$EOF:".as_slice(), &mark, b"\r\n", rdb, &mark].concat()
}

/// Everything after the sync: commands with their db and offset.
fn commands_of(evs: &[Event]) -> Vec<(u64, String, Option<u64>)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Command(c) => Some((
                c.db,
                String::from_utf8_lossy(c.cmd.arg(0).unwrap()).into_owned(),
                c.offset,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn redis_rdb_channel_holds_the_stream_until_the_rdb_is_loaded() {
    let now = Instant::now();
    let mut cfg = ReplicaConfig::default();
    cfg.auth(Some(Auth {
        user: None,
        password: "pw".into(),
    }))
    .listening_port(7001);
    let mut r = Replica::new(cfg);
    handshake(&mut r, now);
    // the master moves the full sync to an RDB channel; stream bytes may follow at once
    let stream = stream_bytes();
    let (early, late) = stream.split_at(10);
    r.handle_input(&[b"+RDBCHANNELSYNC 42\r\n".as_slice(), early].concat(), now)
        .unwrap();
    assert!(r.is_two_channel());
    assert!(r.poll_rdb_channel());
    assert!(!r.poll_rdb_channel(), "asked once");
    r.handle_rdb_connected(now);
    assert_eq!(commands(&rdb_sent(&mut r)), vec![vec!["AUTH", "pw"]]);
    r.handle_rdb_input(b"+OK\r\n", now).unwrap();
    assert_eq!(
        commands(&rdb_sent(&mut r)),
        vec![vec![
            "REPLCONF",
            "capa",
            "eof",
            "rdb-only",
            "1",
            "rdb-channel",
            "1",
            "main-ch-client-id",
            "42",
            "listening-port",
            "7001"
        ]]
    );
    r.handle_rdb_input(b"+OK\r\n", now).unwrap();
    assert_eq!(commands(&rdb_sent(&mut r)), vec![vec!["PSYNC", "?", "-1"]]);
    // keep-alives, the snapshot's offset, the RDB
    let transfer = [
        b"\n\n".as_slice(),
        format!("+FULLRESYNC {ID} 1000\r\n").as_bytes(),
        &eof_transfer(&rdb()),
    ]
    .concat();
    let (a, b) = transfer.split_at(transfer.len() / 2);
    r.handle_rdb_input(a, now).unwrap();
    // more of the stream arrives meanwhile: held, not delivered
    r.handle_input(late, now).unwrap();
    assert!(!r.needs_replay());
    let held: Vec<u8> = std::iter::from_fn(|| r.take_held()).flatten().collect();
    assert_eq!(
        held, stream,
        "everything after RDBCHANNELSYNC is held, in order"
    );
    r.handle_rdb_input(b, now).unwrap();
    assert!(!r.is_rdb_channel_open());
    assert!(r.needs_replay());
    let evs = events(&mut r);
    assert!(matches!(&evs[0], Event::SyncStart(s) if s.full && s.offset == 1000 && s.replid == ID));
    assert!(matches!(evs.last(), Some(Event::SyncEnd { .. })));
    assert!(commands_of(&evs).is_empty());
    // an ACK of the snapshot's offset goes on the main channel after the load
    assert!(sent(&mut r).contains(&vec!["REPLCONF".into(), "ACK".into(), "1000".into()]));
    r.handle_replay(&held, now).unwrap();
    r.end_replay(now).unwrap();
    assert!(!r.is_two_channel());
    // the same events as a classic sync's stream, with exact offsets
    let mut classic = Replica::new(ReplicaConfig::default());
    handshake(&mut classic, now);
    classic
        .handle_input(&full_sync_bytes(true, &stream), now)
        .unwrap();
    let want = commands_of(&events(&mut classic));
    assert_eq!(commands_of(&events(&mut r)), want);
    assert_eq!(r.position().map(|p| p.1), classic.position().map(|p| p.1));
    // the main channel is a plain stream again
    r.handle_input(&cmd(&["SET", "after", "1"]), now).unwrap();
    assert_eq!(commands_of(&events(&mut r)).len(), 1);
}

#[test]
fn valkey_dual_channel_joins_the_rdb_channel_and_starts_in_its_db() {
    let now = Instant::now();
    let mut cfg = ReplicaConfig::default();
    cfg.listening_port(7002);
    let mut r = Replica::new(cfg);
    handshake(&mut r, now);
    r.handle_input(b"+DUALCHANNELSYNC\r\n", now).unwrap();
    assert!(r.poll_rdb_channel());
    r.handle_rdb_connected(now);
    let replconf = commands(&rdb_sent(&mut r));
    assert_eq!(
        replconf,
        vec![vec![
            "REPLCONF",
            "capa",
            "eof",
            "rdb-only",
            "1",
            "rdb-channel",
            "1",
            "listening-port",
            "7002",
            "version",
            "9.1.0"
        ]]
    );
    r.handle_rdb_input(b"+OK\r\n", now).unwrap();
    assert_eq!(rdb_sent(&mut r), b"SYNC\r\n");
    // the snapshot's end offset, the replid, the db the stream starts in, the RDB client id
    r.handle_rdb_input(format!("\n$ENDOFF:500 {ID} 2 17\r\n").as_bytes(), now)
        .unwrap();
    assert_eq!(
        sent(&mut r),
        vec![vec!["REPLCONF", "set-rdb-client-id", "17"]],
        "PSYNC waits for the +OK"
    );
    r.handle_input(b"+OK\r\n", now).unwrap();
    assert_eq!(sent(&mut r), vec![vec!["PSYNC", ID, "501"]]);
    // CONTINUE, then the stream: no SELECT first, it is db 2's
    let stream = [
        cmd(&["SET", "a", "1"]),
        cmd(&["SELECT", "5"]),
        cmd(&["SET", "b", "2"]),
    ]
    .concat();
    r.handle_input(
        &[format!("+CONTINUE {ID}\r\n").as_bytes(), &stream].concat(),
        now,
    )
    .unwrap();
    r.handle_rdb_input(&eof_transfer(&rdb()), now).unwrap();
    assert!(r.needs_replay());
    let held: Vec<u8> = std::iter::from_fn(|| r.take_held()).flatten().collect();
    assert_eq!(held, stream);
    r.handle_replay(&held, now).unwrap();
    r.end_replay(now).unwrap();
    let evs = events(&mut r);
    assert!(matches!(&evs[0], Event::SyncStart(s) if s.full && s.offset == 500));
    let a = cmd(&["SET", "a", "1"]).len() as u64;
    let sel = cmd(&["SELECT", "5"]).len() as u64;
    let b = cmd(&["SET", "b", "2"]).len() as u64;
    assert_eq!(
        commands_of(&evs),
        vec![
            (2, "SET".into(), Some(500 + a)),
            (5, "SELECT".into(), Some(500 + a + sel)),
            (5, "SET".into(), Some(500 + a + sel + b)),
        ]
    );
}

#[test]
fn two_channel_refusals_and_the_classic_answer() {
    let now = Instant::now();
    // the main channel cannot join the RDB channel: a retryable error
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    r.handle_input(b"+DUALCHANNELSYNC\r\n", now).unwrap();
    assert!(r.poll_rdb_channel());
    r.handle_rdb_connected(now);
    r.handle_rdb_input(b"+OK\r\n", now).unwrap();
    r.handle_rdb_input(format!("$ENDOFF:0 {ID} -1 9\r\n").as_bytes(), now)
        .unwrap();
    let e = r
        .handle_input(b"-ERR Unrecognized RDB client id\r\n", now)
        .unwrap_err();
    assert_eq!(e.kind(), replica_net::ErrorKind::Retry);
    assert!(e.to_string().contains("Unrecognized"), "{e}");
    // a disconnection forgets the two-channel sync: the next one starts over, full
    r.handle_disconnected("gone");
    assert!(!r.is_two_channel());
    let s = handshake(&mut r, now);
    assert_eq!(s.last().unwrap(), &vec!["PSYNC", "?", "-1"]);

    // the RDB channel refused
    let mut r = Replica::new(ReplicaConfig::default());
    handshake(&mut r, now);
    r.handle_input(b"+RDBCHANNELSYNC 3\r\n", now).unwrap();
    r.handle_rdb_connected(now);
    let e = r
        .handle_rdb_input(b"-ERR Unrecognized REPLCONF option\r\n", now)
        .unwrap_err();
    assert!(e.to_string().contains("RDB channel was refused"), "{e}");

    // one channel: the capa is not offered
    let mut cfg = ReplicaConfig::default();
    cfg.channels(Channels::One);
    let mut r = Replica::new(cfg);
    let s = handshake(&mut r, now);
    assert!(
        s.iter()
            .any(|c| c == &vec!["REPLCONF", "capa", "eof", "capa", "psync2"])
    );
    // two channels or nothing: a classic answer is a configuration error
    let mut cfg = ReplicaConfig::default();
    cfg.channels(Channels::Two);
    let mut r = Replica::new(cfg);
    handshake(&mut r, now);
    let e = r
        .handle_input(format!("+FULLRESYNC {ID} 0\r\n").as_bytes(), now)
        .unwrap_err();
    assert_eq!(e.kind(), replica_net::ErrorKind::Config);
    assert!(e.is_fatal());
}
