//! A whole Redis Cluster as the source: 3 masters + 3 replicas made with
//! `redis-cli --cluster create`, replicated shard by shard while written to, through a
//! `CLUSTER FAILOVER` on one shard and the death of another shard's master.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replica_net::cluster::{ClusterClient, ClusterConfig};
use replica_net::{ClientConfig, History};
use test_support::Cluster;

use crate::model::{Held, Model, wait_for};

/// Runs a cluster replica whose events go into `model`; gives the consumer task and the shards'
/// status as of the last event.
fn replicate_into(
    cfg: ClusterConfig,
    model: &Arc<Mutex<Model>>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<Vec<replica_net::cluster::ShardStatus>>,
) {
    let (mut client, connection) = ClusterClient::connect(cfg);
    tokio::spawn(connection);
    let m = model.clone();
    let (status_tx, status_rx) = tokio::sync::watch::channel(Vec::new());
    let task = tokio::spawn(async move {
        while let Some(ev) = client.recv().await {
            let ev = ev.expect("no fatal error");
            m.lock().unwrap().apply(ev.shard, ev.event);
            let _ = status_tx.send(client.shards());
        }
    });
    (task, status_rx)
}

/// One key per master (hash tags found by asking the cluster who serves them).
fn tags(cluster: &Cluster, masters: usize) -> Vec<String> {
    let mut by_master: BTreeMap<u16, String> = BTreeMap::new();
    for i in 0.. {
        let tag = format!("t{i}");
        let port = cluster.master_port_of(&format!("{{{tag}}}")).unwrap();
        by_master.entry(port).or_insert(tag);
        if by_master.len() == masters {
            break;
        }
    }
    by_master.into_values().collect()
}

/// Numbered writes to every tag: `INCR n{tag}` and `RPUSH l{tag} i`, rounds `from..to`.
fn write_rounds(cluster: &Cluster, tags: &[String], from: u64, to: u64) {
    for i in from..to {
        for t in tags {
            cluster.write(&["INCR", &format!("n{{{t}}}")]).unwrap();
            cluster
                .write(&["RPUSH", &format!("l{{{t}}}"), &i.to_string()])
                .unwrap();
        }
    }
}

fn sync_partial_ok(cluster: &Cluster, port: u16) -> u64 {
    cluster
        .node(port)
        .and_then(|n| n.info("stats", "sync_partial_ok"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The replica of the master at `port`.
fn replica_of(cluster: &Cluster, port: u16) -> u16 {
    cluster
        .nodes
        .iter()
        .find(|n| {
            n.info("replication", "master_port").as_deref() == Some(&port.to_string())
                && n.info("replication", "role").as_deref() == Some("slave")
        })
        .map(|n| n.port)
        .expect("every master has a replica")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_followed_through_a_failover_and_a_dead_master() {
    let bin = test_support::default_server().unwrap();
    assert!(
        bin.major_minor() >= (7, 0),
        "the cluster test wants Debian's redis-server 7.0 or newer, found {}",
        bin.version
    );
    let cluster = tokio::task::block_in_place(|| Cluster::start(&bin, 3, 1)).unwrap();
    let tags = tokio::task::block_in_place(|| tags(&cluster, 3));
    // data before the replica starts (in the RDBs), spread over every slot range
    tokio::task::block_in_place(|| {
        for i in 0..300 {
            cluster
                .write(&["SET", &format!("k{i}"), &i.to_string()])
                .unwrap();
        }
        write_rounds(&cluster, &tags, 0, 20);
    });

    let seed = cluster.nodes[0].port;
    let mut base = ClientConfig::new("127.0.0.1", seed);
    base.backoff(Duration::from_millis(50), Duration::from_millis(500))
        .read_timeout(Duration::from_secs(10));
    let mut cfg = ClusterConfig::new(base);
    cfg.refresh(Duration::from_millis(200));
    let model = Arc::new(Mutex::new(Model::default()));
    let (consumer, mut status_rx) = replicate_into(cfg, &model);

    tokio::task::block_in_place(|| {
        wait_for(&model, &tags, 20);
        // every key written before the start came through the shards' RDBs
        let m = model.lock().unwrap();
        for i in 0..300 {
            assert_eq!(
                m.keys.get(format!("k{i}").as_bytes()),
                Some(&Held::Str(i.to_string().into_bytes())),
                "k{i}"
            );
        }
        assert_eq!(m.full_starts, 3, "one full sync per shard");
    });
    assert_eq!(status_rx.borrow_and_update().len(), 3);

    // a manual failover of the first tag's shard while writing
    let old_master = tokio::task::block_in_place(|| {
        let old = cluster.master_port_of(&format!("{{{}}}", tags[0])).unwrap();
        let replica = replica_of(&cluster, old);
        write_rounds(&cluster, &tags, 20, 40);
        cluster
            .failover(
                replica,
                &format!("{{{}}}", tags[0]),
                Duration::from_secs(60),
            )
            .unwrap();
        write_rounds(&cluster, &tags, 40, 60);
        wait_for(&model, &tags, 60);
        let partial = sync_partial_ok(&cluster, replica);
        assert!(
            partial >= 1,
            "the promoted replica accepted our PSYNC ({partial})"
        );
        old
    });
    let _ = old_master;

    // another shard's master dies; the cluster elects its replica
    tokio::task::block_in_place(|| {
        let victim = cluster.master_port_of(&format!("{{{}}}", tags[1])).unwrap();
        let heir = replica_of(&cluster, victim);
        let mut c = cluster.node(victim).unwrap().client().unwrap();
        let _ = c.cmd(&["SHUTDOWN", "NOSAVE"]);
        cluster
            .wait(Duration::from_secs(60), |c| {
                c.master_port_of(&format!("{{{}}}", tags[1])).ok() == Some(heir)
            })
            .unwrap();
        write_rounds(&cluster, &tags, 60, 80);
        wait_for(&model, &tags, 80);
        let partial = sync_partial_ok(&cluster, heir);
        assert!(
            partial >= 1,
            "the elected replica accepted our PSYNC ({partial})"
        );
    });
    let m = model.lock().unwrap();
    assert_eq!(m.full_starts, 3, "no shard needed a second full sync");
    assert!(m.partial_starts >= 2, "{} partial syncs", m.partial_starts);
    // each new master was asked before the PSYNC, and said it had inherited our history
    assert!(
        m.histories
            .iter()
            .filter(|h| matches!(h, History::Inherited { .. }))
            .count()
            >= 2
            && !m
                .histories
                .iter()
                .any(|h| matches!(h, History::Lost { .. })),
        "{:?}",
        m.histories
    );
    drop(m);
    let shards = status_rx.borrow_and_update().clone();
    assert!(
        shards.iter().filter(|s| s.moves >= 1).count() >= 2,
        "two shards followed their master: {shards:?}"
    );
    consumer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_appears_is_replicated_and_one_that_leaves_is_retired() {
    let bin = test_support::default_server().unwrap();
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(&bin, 3, 0)).unwrap();
    let mut base = ClientConfig::new("127.0.0.1", cluster.nodes[0].port);
    base.backoff(Duration::from_millis(50), Duration::from_millis(500));
    let mut cfg = ClusterConfig::new(base);
    cfg.refresh(Duration::from_millis(100));
    let model = Arc::new(Mutex::new(Model::default()));
    let (consumer, status_rx) = replicate_into(cfg, &model);
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while model.lock().unwrap().full_starts < 3 {
            assert!(std::time::Instant::now() < deadline, "three shards synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        // an empty cluster: the reshard moves slots only; a fourth master appears
        let port = cluster.add_master(&bin, 500).unwrap();
        let tag = (0..)
            .map(|i| format!("t{i}"))
            .find(|t| cluster.master_port_of(&format!("{{{t}}}")).unwrap() == port)
            .unwrap();
        // the survey finds the new shard (every 10 refreshes), syncs it, and streams its writes
        let tags = vec![tag];
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut round = 0;
        loop {
            write_rounds(&cluster, &tags, round, round + 1);
            round += 1;
            std::thread::sleep(Duration::from_millis(100));
            let m = model.lock().unwrap();
            if m.full_starts == 4 && m.keys.contains_key(format!("n{{{}}}", tags[0]).as_bytes()) {
                break;
            }
            drop(m);
            assert!(
                std::time::Instant::now() < deadline,
                "the new shard was not followed"
            );
        }
        wait_for(&model, &tags, round);
        // the fourth master gives its slots back and leaves: its shard is retired, and its
        // slots' writes come through the shard that took them, with no second full sync
        cluster.remove_master(port).unwrap();
        write_rounds(&cluster, &tags, round, round + 20);
        wait_for(&model, &tags, round + 20);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !status_rx.borrow().iter().any(|s| s.retired) {
            assert!(
                std::time::Instant::now() < deadline,
                "the gone shard was not retired: {:?}",
                status_rx.borrow()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let shards = status_rx.borrow().clone();
    assert_eq!(shards.len(), 4);
    assert_eq!(shards.iter().filter(|s| s.retired).count(), 1, "{shards:?}");
    assert_eq!(shards.iter().find(|s| s.retired).unwrap().phase, "retired");
    let m = model.lock().unwrap();
    assert_eq!(m.full_starts, 4, "no shard was synced twice");
    drop(m);
    consumer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_shard_positions_resume_with_partial_syncs() {
    let bin = test_support::default_server().unwrap();
    let cluster = tokio::task::block_in_place(|| Cluster::start(&bin, 3, 0)).unwrap();
    let tags = tokio::task::block_in_place(|| tags(&cluster, 3));
    tokio::task::block_in_place(|| write_rounds(&cluster, &tags, 0, 10));
    let base = ClientConfig::new("127.0.0.1", cluster.nodes[0].port);
    let model = Arc::new(Mutex::new(Model::default()));
    let run = |cfg: ClusterConfig| replicate_into(cfg, &model);
    let (first, status) = run(ClusterConfig::new(base.clone()));
    tokio::task::block_in_place(|| {
        write_rounds(&cluster, &tags, 10, 20);
        wait_for(&model, &tags, 20);
    });
    // what a program saves: each shard's replid and the offset of the last command it applied
    let positions: Vec<(String, u64)> = model.lock().unwrap().positions.values().cloned().collect();
    assert_eq!(positions.len(), 3);
    assert_eq!(status.borrow().len(), 3);
    first.abort();
    // written while no replica runs
    tokio::task::block_in_place(|| write_rounds(&cluster, &tags, 20, 30));
    let partial_before: u64 = (0..3)
        .map(|i| {
            cluster.nodes[i]
                .info("stats", "sync_partial_ok")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0u64)
        })
        .sum();
    let mut cfg = ClusterConfig::new(base);
    cfg.resume(positions);
    let (second, _status) = run(cfg);
    tokio::task::block_in_place(|| {
        write_rounds(&cluster, &tags, 30, 40);
        wait_for(&model, &tags, 40);
    });
    let m = model.lock().unwrap();
    assert_eq!(
        m.full_starts, 3,
        "the second start asked every shard for a partial sync"
    );
    assert_eq!(m.partial_starts, 3);
    // a resumed position is checked with the node first
    assert_eq!(m.histories, vec![History::Same; 3]);
    drop(m);
    let partial_after: u64 = (0..3)
        .map(|i| {
            cluster.nodes[i]
                .info("stats", "sync_partial_ok")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0u64)
        })
        .sum();
    assert_eq!(partial_after - partial_before, 3);
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_moved_by_a_reshard_under_writes_end_as_the_cluster_holds_them() {
    let bin = test_support::default_server().unwrap();
    let cluster = tokio::task::block_in_place(|| Cluster::start(&bin, 3, 0)).unwrap();
    // many tags, so that the reshard moves some of them
    let tags: Vec<String> = (0..60).map(|i| format!("r{i}")).collect();
    tokio::task::block_in_place(|| write_rounds(&cluster, &tags, 0, 5));
    let before: Vec<u16> = tokio::task::block_in_place(|| {
        tags.iter()
            .map(|t| cluster.master_port_of(&format!("{{{t}}}")).unwrap())
            .collect()
    });
    let mut base = ClientConfig::new("127.0.0.1", cluster.nodes[0].port);
    base.backoff(Duration::from_millis(50), Duration::from_millis(500));
    let mut cfg = ClusterConfig::new(base);
    cfg.refresh(Duration::from_millis(200));
    let model = Arc::new(Mutex::new(Model::default()));
    let (consumer, _) = replicate_into(cfg, &model);
    let rounds = tokio::task::block_in_place(|| {
        wait_for(&model, &tags, 5);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let rounds = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut r = 5;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    write_rounds(&cluster, &tags, r, r + 1);
                    r += 1;
                }
                r
            });
            // a third of the slots move to the first master, keys and all, while writing
            cluster.reshard(cluster.nodes[0].port, 5000).unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            writer.join().unwrap()
        });
        write_rounds(&cluster, &tags, rounds, rounds + 2);
        rounds + 2
    });
    let moved = tokio::task::block_in_place(|| {
        tags.iter()
            .zip(&before)
            .filter(|(t, p)| cluster.master_port_of(&format!("{{{t}}}")).unwrap() != **p)
            .count()
    });
    assert!(moved >= 5, "the reshard moved {moved} of the keys");
    tokio::task::block_in_place(|| wait_for(&model, &tags, rounds));
    consumer.abort();
}
