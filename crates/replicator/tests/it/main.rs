//! The facade: a live master through `Replicator` (as a `futures::Stream`) and files through
//! `files::open` give the same event type and the same data.

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
