//! Every RDB in the third-party corpus decodes to its end, except the known-bad ones.

use std::path::{Path, PathBuf};

use rdb_format::{BytesReader, ErrorKind, Item};

/// Files the corpus MANIFEST names as negative, with the error each must give.
const NEGATIVE: &[(&str, &str)] = &[
    ("redis/tests/assets/corrupt_ziplist.rdb", "corrupt"),
    ("keydb/tests/assets/corrupt_ziplist.rdb", "corrupt"),
    ("librdb/test/dumps/future_v19.rdb", "version"),
    ("librdb/test/dumps/invalid_chksum_v8.rdb", "checksum"),
    ("redis-replicator/src/test/resources/module.rdb", "module6"),
];

fn corpus_dir() -> Option<PathBuf> {
    test_support::corpus_dir("corpus test")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// True for files that hold RDB data (by content: the magic), including AOFs with a preamble.
fn is_rdb(bytes: &[u8]) -> bool {
    bytes.starts_with(b"REDIS") || bytes.starts_with(b"VALKEY")
}

#[test]
fn corpus_decodes() {
    let Some(dir) = corpus_dir() else { return };
    let mut files = Vec::new();
    walk(&dir, &mut files);
    let mut decoded = 0;
    let mut failures = Vec::new();
    for path in files {
        let data = std::fs::read(&path).unwrap();
        if !is_rdb(&data) {
            continue;
        }
        let rel = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let negative = NEGATIVE.iter().find(|(p, _)| *p == rel).map(|(_, k)| *k);
        let mut keys = 0;
        let mut result = Ok(());
        let mut saw_eof = false;
        // negative files must also fail when values are only checked, not built
        if negative.is_some() {
            let mut skip = rdb_format::Config::default();
            skip.skip_values(true);
            let r: Result<Vec<_>, _> =
                BytesReader::with_config(data.clone().into(), skip).collect();
            assert!(r.is_err(), "{rel}: skip-values mode accepted a bad file");
        }
        for item in BytesReader::new(data.into()) {
            match item {
                Ok(Item::Key(_) | Item::KeyStart(_)) => keys += 1,
                Ok(Item::Eof { .. }) => saw_eof = true,
                Ok(_) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        match (negative, result) {
            (None, Ok(())) => {
                assert!(saw_eof, "{rel}: no EOF item");
                decoded += 1;
                let _ = keys;
            }
            (None, Err(e)) => failures.push(format!("{rel}: {e}")),
            (Some(kind), Ok(())) => failures.push(format!("{rel}: must fail ({kind}) but decoded")),
            (Some(kind), Err(e)) => {
                let ok = match kind {
                    "corrupt" => matches!(e.kind(), ErrorKind::Corrupt { .. }),
                    "version" => {
                        matches!(e.kind(), ErrorKind::UnsupportedVersion { version: 99, .. })
                    }
                    "checksum" => matches!(e.kind(), ErrorKind::Checksum { .. }),
                    "module6" => matches!(e.kind(), ErrorKind::Unsupported { ty: 6, .. }),
                    _ => false,
                };
                if !ok {
                    failures.push(format!("{rel}: expected a {kind} error, got {e}"));
                }
                eprintln!("negative {rel}: {e}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(decoded > 200, "only {decoded} corpus files decoded");
    eprintln!("{decoded} corpus RDB files decoded");
}
