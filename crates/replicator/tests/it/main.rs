//! The facade: a live master through `Replicator` (as a `futures::Stream`) and files through
//! `files::open` give the same event type and the same data.

mod strings;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use replicator::{Event, Item, Replicator};
use test_support::Server;

async fn next(events: &mut replicator::Events<'_>) -> Option<Result<Event, replicator::Error>> {
    let fut = std::future::poll_fn(|cx| Pin::new(&mut *events).poll_next(cx));
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("an event within 30 s")
}

fn key_of(ev: &Event) -> Option<(u64, Vec<u8>)> {
    match ev {
        Event::Rdb(Item::Key(k)) => Some((k.head.db, k.head.key.to_vec())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_master_and_its_saved_file_give_the_same_events() {
    let bin = test_support::default_server().unwrap();
    let master = Server::start(&bin, &[("repl-diskless-sync-delay", "0")], None).unwrap();
    let mut c = master.client().unwrap();
    for i in 0..100 {
        c.ok(&["HSET", &format!("h:{i}"), "f", &i.to_string()])
            .unwrap();
    }
    c.ok(&["SAVE"]).unwrap();
    let from_file: BTreeSet<_> =
        replicator::files::open(&master.dir.join("dump.rdb"), Default::default())
            .unwrap()
            .map(|e| e.unwrap())
            .filter_map(|e| key_of(&e))
            .collect();
    assert_eq!(from_file.len(), 100);

    let mut r = Replicator::builder(&format!("redis://127.0.0.1:{}", master.port))
        .unwrap()
        .start();
    let mut live = BTreeSet::new();
    {
        let mut events = r.events();
        loop {
            let ev = next(&mut events).await.unwrap().unwrap();
            if let Some(k) = key_of(&ev) {
                live.insert(k);
            }
            if matches!(ev, Event::SyncEnd { .. }) {
                break;
            }
        }
        c.ok(&["DEL", "h:1"]).unwrap();
        loop {
            if let Event::Command(cmd) = next(&mut events).await.unwrap().unwrap() {
                if cmd.cmd.is("DEL") {
                    assert!(cmd.offset.is_some());
                    break;
                }
            }
        }
    }
    assert_eq!(live, from_file);
    assert!(r.status().offset.is_some());
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_url_replicates_every_shard_with_whole_keys() {
    let bin = test_support::default_server().unwrap();
    assert!(bin.major_minor() >= (7, 0), "Debian's redis-server 7.0+");
    let cluster = tokio::task::block_in_place(|| test_support::Cluster::start(&bin, 3, 0)).unwrap();
    // small keys everywhere, and one big list per shard (more elements than a chunk), so that
    // the three shards deliver chunked keys at the same time
    let mut written = BTreeSet::new();
    tokio::task::block_in_place(|| {
        for i in 0..300 {
            let k = format!("k{i}");
            cluster.write(&["SET", &k, "v"]).unwrap();
            written.insert(k.into_bytes());
        }
        for tag in ["a", "b", "c", "d", "e", "f"] {
            let k = format!("big{{{tag}}}");
            for chunk in 0..10 {
                let mut args = vec!["RPUSH".to_owned(), k.clone()];
                args.extend((0..1000).map(|i| format!("e{chunk}-{i}")));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cluster.write(&args).unwrap();
            }
            written.insert(k.into_bytes());
        }
    });
    let url = format!("redis://127.0.0.1:{}", cluster.nodes[1].port);
    let mut r = Replicator::builder(&url).unwrap().start();
    let mut keys = BTreeSet::new();
    let mut shards = BTreeSet::new();
    let mut ends = 0;
    let mut open: Option<Vec<u8>> = None;
    let mut chunked = 0;
    let mut events = r.events();
    while ends < 3 {
        match next(&mut events).await.unwrap().unwrap() {
            Event::SyncStart(s) => {
                assert!(s.full && s.node.is_some());
                shards.insert(s.shard.expect("a cluster's sync names its shard"));
            }
            Event::SyncEnd { .. } => ends += 1,
            Event::Rdb(Item::KeyStart(h)) => {
                assert!(open.is_none(), "a key started inside another's chunks");
                open = Some(h.key.to_vec());
                keys.insert(h.key.to_vec());
                chunked += 1;
            }
            Event::Rdb(Item::Chunk(_)) => assert!(open.is_some(), "a chunk outside its key"),
            Event::Rdb(Item::KeyEnd) => assert!(open.take().is_some()),
            Event::Rdb(item) => {
                assert!(open.is_none(), "{item:?} inside another key's chunks");
                if let Item::Key(k) = item {
                    keys.insert(k.head.key.to_vec());
                }
            }
            _ => {}
        }
    }
    assert_eq!(shards, BTreeSet::from([0, 1, 2]));
    assert_eq!(keys, written);
    assert!(chunked >= 6, "{chunked} chunked keys");
    // commands come with their shard
    tokio::task::block_in_place(|| cluster.write(&["SET", "after", "1"]).unwrap());
    loop {
        if let Event::Command(c) = next(&mut events).await.unwrap().unwrap() {
            if c.cmd.is("SET") {
                assert!(c.shard.is_some() && c.offset.is_some());
                break;
            }
        }
    }
    assert_eq!(r.shards().len(), 3);
    r.shutdown().await;
}

#[test]
fn a_shards_full_resync_is_refused_by_the_resp_stream_rather_than_flushing_every_shard() {
    use replicator::print::{Resp, Sink};
    let mut out = Vec::new();
    let mut resp = Resp::new(&mut out);
    // a single master: FLUSHALL, then the new data
    resp.resync(None).unwrap();
    // one shard of a cluster: FLUSHALL would remove the others' keys too
    let err = resp.resync(Some(2)).unwrap_err();
    assert!(err.to_string().contains("shard 2"), "{err}");
    resp.finish().unwrap();
    drop(resp);
    assert_eq!(out, b"*1\r\n$8\r\nFLUSHALL\r\n");
}
