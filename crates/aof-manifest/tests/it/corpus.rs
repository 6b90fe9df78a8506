//! The AOF files of the third-party corpus.

use std::path::PathBuf;

use aof_manifest::{AofReader, ErrorKind, Event};

fn corpus_dir() -> Option<PathBuf> {
    test_support::corpus_dir("AOF corpus test")
}

/// (path, commands, RDB keys) for the files that must read cleanly.
const GOOD: &[(&str, usize, usize)] = &[
    ("redis/tests/assets/rdb-preamble.aof", 2, 2),
    ("redis-replicator/src/test/resources/appendonly1.aof", 4, 0),
    ("redis-replicator/src/test/resources/appendonly5.aof", 71, 0),
    ("redis-replicator/src/test/resources/appendonly6.aof", 72, 0),
    ("redis-replicator/src/test/resources/appendonly7.aof", 4, 0),
    (
        "redis-replicator/src/test/resources/appendonly-with-ts.aof",
        65,
        0,
    ),
    ("hdt3213-rdb/cases/memory.aof", 8, 0),
    ("hdt3213-rdb/cases/memory_regex.aof", 2, 0),
    ("hdt3213-rdb/cases/hash_with_hfe.aof", 9, 0),
    ("hdt3213-rdb/cases/hash_as_listpack_with_hfe.aof", 4, 0),
    ("hdt3213-rdb/cases/valkey_hash2_with_hfe.aof", 4, 0),
];

#[test]
fn corpus_aof_files() {
    let Some(dir) = corpus_dir() else { return };
    for (rel, want_cmds, want_keys) in GOOD {
        let path = dir.join(rel);
        let mut cmds = 0;
        let mut keys = 0;
        let mut ts = 0;
        for ev in AofReader::open(&path, Default::default()).unwrap() {
            match ev.unwrap_or_else(|e| panic!("{rel}: {e}")) {
                Event::Command(_) => cmds += 1,
                Event::Rdb {
                    item: rdb_format::Item::Key(_),
                    ..
                } => keys += 1,
                Event::Annotation { ts: Some(_), .. } => ts += 1,
                _ => {}
            }
        }
        assert_eq!((cmds, keys), (*want_cmds, *want_keys), "{rel}");
        if rel.contains("with-ts") {
            assert_eq!(ts, 54, "{rel}");
        }
    }
    // RedisShake's multi-part set: the base reads, the LF-only incr file is refused clearly
    let shake = dir.join("redisshake/test/aof_test/appendonlydir");
    let mut keys = 0;
    let mut err = None;
    for ev in AofReader::open(&shake, Default::default()).unwrap() {
        match ev {
            Ok(Event::Rdb {
                item: rdb_format::Item::Key(_),
                ..
            }) => keys += 1,
            Ok(_) => {}
            Err(e) => err = Some(e),
        }
    }
    assert_eq!(keys, 10016);
    let e = err.expect("the LF-only incr file must be refused");
    assert!(
        matches!(e.kind(), ErrorKind::Resp(resp_codec::ErrorKind::BareLf)),
        "{e}"
    );
    assert_eq!(e.file(), Some("appendonly.aof.2.incr.aof"));
    assert!(e.to_string().contains("LF but no CR"), "{e}");
}
