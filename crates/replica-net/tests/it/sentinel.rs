//! A Sentinel-managed master as the source: a master, 2 replicas and 3 Sentinels; the replica
//! found through `redis+sentinel://`, then `SENTINEL FAILOVER` while writing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replica_net::sentinel::{self, SentinelUrl};
use test_support::{Resp, Sentinel, Server};

use crate::model::{Model, wait_for};

fn rounds(port: u16, from: u64, to: u64) {
    let mut c = test_support::Client::connect(port).unwrap();
    for i in from..to {
        c.ok(&["INCR", "n{s}"]).unwrap();
        c.ok(&["RPUSH", "l{s}", &i.to_string()]).unwrap();
    }
}

fn until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed_with_a_partial_resync() {
    let bin = test_support::default_server().unwrap();
    let (master, replicas, sentinels) = tokio::task::block_in_place(|| {
        let master = Server::start(&bin, &[("repl-diskless-sync-delay", "0")], None).unwrap();
        let replicas: Vec<Server> = (0..2)
            .map(|_| {
                let r = Server::start(&bin, &[], None).unwrap();
                let port = master.port.to_string();
                r.client()
                    .unwrap()
                    .ok(&["REPLICAOF", "127.0.0.1", &port])
                    .unwrap();
                r
            })
            .collect();
        until("replicas linked", Duration::from_secs(30), || {
            replicas
                .iter()
                .all(|r| r.info("replication", "master_link_status").as_deref() == Some("up"))
        });
        let sentinels: Vec<Sentinel> = (0..3)
            .map(|_| Sentinel::start(&bin, "mymaster", master.port, 2).unwrap())
            .collect();
        until(
            "Sentinels know the replicas",
            Duration::from_secs(30),
            || sentinels.iter().all(|s| s.replicas("mymaster") == 2),
        );
        rounds(master.port, 0, 20);
        (master, replicas, sentinels)
    });
    let hosts: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url =
        SentinelUrl::parse(&format!("redis+sentinel://{}/mymaster", hosts.join(","))).unwrap();
    let (mut client, connection) = sentinel::connect(url, Some(Duration::from_millis(500)));
    tokio::spawn(connection);
    let model = Arc::new(Mutex::new(Model::default()));
    let m = model.clone();
    let consumer = tokio::spawn(async move {
        while let Some(ev) = client.recv().await {
            let ev = ev.expect("no fatal error");
            if std::env::var_os("SENTINEL_DEBUG").is_some()
                && !matches!(
                    ev,
                    replica_net::Event::Command(_) | replica_net::Event::Rdb(_)
                )
            {
                eprintln!("{:?} {ev:?}", std::time::SystemTime::now());
            }
            m.lock().unwrap().apply(0, ev);
        }
    });
    let tags = vec!["s".to_owned()];
    tokio::task::block_in_place(|| {
        wait_for(&model, &tags, 20);
        rounds(master.port, 20, 40);
        wait_for(&model, &tags, 40);
        // a forced failover does not wait for the replicas: let them have every write first
        // (else the promoted one lacks writes we have, and only a full sync can follow)
        let master_offset: u64 = master
            .info("replication", "master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap();
        until("replicas caught up", Duration::from_secs(30), || {
            replicas.iter().all(|r| {
                r.info("replication", "slave_repl_offset")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|o| o >= master_offset)
            })
        });
        // a failover ordered by a Sentinel while the replica streams
        let mut c = test_support::Client::connect(sentinels[0].port).unwrap();
        assert_eq!(
            c.cmd(&["SENTINEL", "FAILOVER", "mymaster"]).unwrap(),
            Resp::Simple("OK".into())
        );
        until(
            "the Sentinel names a new master",
            Duration::from_secs(60),
            || {
                sentinels[0]
                    .master_port("mymaster")
                    .is_some_and(|p| p != master.port)
            },
        );
        let new = sentinels[0].master_port("mymaster").unwrap();
        let promoted = replicas
            .iter()
            .find(|r| r.port == new)
            .expect("a replica was promoted");
        until(
            "the promoted replica is a master",
            Duration::from_secs(30),
            || promoted.info("replication", "role").as_deref() == Some("master"),
        );
        // the replica moves to the new master (told by +switch-master or its next check) and
        // continues there with PSYNC; until then the demoted master relays the stream
        let partial = || -> u64 {
            promoted
                .info("stats", "sync_partial_ok")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        until(
            "our PSYNC to the promoted replica",
            Duration::from_secs(30),
            || partial() >= 1,
        );
        if std::env::var_os("SENTINEL_DEBUG").is_some() {
            std::thread::sleep(Duration::from_secs(6));
            for l in promoted.log().lines().filter(|l| {
                l.contains("resync")
                    || l.contains("Partial")
                    || l.contains("offset")
                    || l.contains("MASTER MODE")
            }) {
                eprintln!("promoted: {l}");
            }
        }
        rounds(new, 40, 60);
        wait_for(&model, &tags, 60);
    });
    let m = model.lock().unwrap();
    assert_eq!(m.full_starts, 1, "one full sync, at the start");
    assert!(m.partial_starts >= 1);
    assert!(
        m.histories
            .iter()
            .any(|h| matches!(h, replica_net::History::Inherited { .. })),
        "the promoted replica was asked and had our history: {:?}",
        m.histories
    );
    drop(m);
    consumer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_sentinels_and_master() {
    let bin = test_support::default_server().unwrap();
    let (master, sentinel) = tokio::task::block_in_place(|| {
        let master = Server::start(&bin, &[("requirepass", "data-pw")], None).unwrap();
        let mut c = master.client().unwrap();
        c.ok(&["AUTH", "data-pw"]).unwrap();
        c.ok(&["SET", "guarded", "1"]).unwrap();
        let sentinel = Sentinel::start_with(
            &bin,
            "mymaster",
            master.port,
            1,
            "requirepass sentinel-pw\nsentinel auth-pass mymaster data-pw",
        )
        .unwrap();
        (master, sentinel)
    });
    let url = format!(
        "redis+sentinel://:data-pw@127.0.0.1:{}/mymaster?sentinel_password=sentinel-pw",
        sentinel.port
    );
    let u = SentinelUrl::parse(&url).unwrap();
    assert!(u.sentinel_auth.is_some() && !format!("{u:?}").contains("sentinel-pw"));
    let (mut client, connection) = sentinel::connect(u, Some(Duration::from_millis(500)));
    tokio::spawn(connection);
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = client.recv().await {
            if let replica_net::Event::Rdb(rdb_format::Item::Key(k)) = ev.unwrap() {
                return Some(k.head.key.to_vec());
            }
        }
        None
    })
    .await
    .expect("the key within 30 s");
    assert_eq!(got.as_deref(), Some(&b"guarded"[..]));
    client.stop();

    // a wrong Sentinel password, and a name no Sentinel monitors: an error at once, naming
    // the Sentinel, without the password, not retries for ever
    for (query, kind, words) in [
        (
            "/mymaster?sentinel_password=wrong-pw",
            replica_net::ErrorKind::Auth,
            "WRONGPASS",
        ),
        (
            "/othermaster?sentinel_password=sentinel-pw",
            replica_net::ErrorKind::Config,
            "othermaster",
        ),
    ] {
        let url = format!(
            "redis+sentinel://:data-pw@127.0.0.1:{}{query}",
            sentinel.port
        );
        let (mut client, connection) = sentinel::connect(SentinelUrl::parse(&url).unwrap(), None);
        tokio::spawn(connection);
        let err = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ev) = client.recv().await {
                if let Err(e) = ev {
                    return e;
                }
            }
            panic!("the stream ended without an error")
        })
        .await
        .expect("an error within 10 s");
        let mut text = err.to_string();
        let mut src = std::error::Error::source(&err);
        while let Some(e) = src {
            text = format!("{text}: {e}");
            src = e.source();
        }
        assert_eq!(err.kind(), kind, "{text}");
        assert!(text.contains(words), "{text}");
        assert!(
            text.contains(&format!("Sentinel 127.0.0.1:{}", sentinel.port)),
            "{text}"
        );
        assert!(
            !text.contains("wrong-pw") && !text.contains("data-pw"),
            "{text}"
        );
        assert!(client.recv().await.is_none(), "the stream ends");
    }
    drop(master);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_master_over_tls() {
    let bin = test_support::default_server().unwrap();
    let pki = crate::pki::make_pki("pki-sentinel");
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let (master_tls, sentinel_tls) = (test_support::free_port(), test_support::free_port());
    let (master, _sentinel) = tokio::task::block_in_place(|| {
        let port = master_tls.to_string();
        let master = Server::start(
            &bin,
            &[
                ("tls-port", &port),
                ("tls-cert-file", &cert),
                ("tls-key-file", &key),
                ("tls-ca-cert-file", &ca),
                ("tls-auth-clients", "no"),
                ("repl-diskless-sync-delay", "0"),
            ],
            None,
        )
        .unwrap();
        master
            .client()
            .unwrap()
            .ok(&["SET", "sealed", "1"])
            .unwrap();
        // the Sentinel speaks TLS on its TLS port and to the master (tls-replication)
        let sentinel = Sentinel::start_with(
            &bin,
            "mymaster",
            master_tls,
            1,
            &format!(
                "tls-port {sentinel_tls}\ntls-cert-file {cert}\ntls-key-file {key}\n\
                 tls-ca-cert-file {ca}\ntls-auth-clients no\ntls-replication yes"
            ),
        )
        .unwrap();
        (master, sentinel)
    });
    // only the Sentinel's TLS port is given: a plain connection there would fail
    let mut cfg = replica_net::ClientConfig::new("unused", 0);
    let mut tls = replica_net::TlsConfig::default();
    tls.ca_file(std::path::Path::new(&ca));
    cfg.tls(Some(tls));
    let (mut client, connection) = sentinel::connect_with(
        cfg,
        vec![("127.0.0.1".into(), sentinel_tls)],
        "mymaster".into(),
        None,
        Some(Duration::from_millis(500)),
    );
    tokio::spawn(connection);
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = client.recv().await {
            if let replica_net::Event::Rdb(rdb_format::Item::Key(k)) = ev.unwrap() {
                return Some(k.head.key.to_vec());
            }
        }
        None
    })
    .await
    .expect("the key within 30 s");
    assert_eq!(got.as_deref(), Some(&b"sealed"[..]));
    assert_eq!(
        client.endpoint().get().1,
        master_tls,
        "the master's TLS port"
    );
    client.stop();
    drop(master);
    let _ = std::fs::remove_dir_all(&pki.dir);
}
