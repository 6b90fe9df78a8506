//! Golden tests of decoder items, through the library:
//!
//! 1. every fixture's keys against what the live server that wrote it held (the `.jsonl` read
//!    back from that server by `cargo xtask fixtures`): names, dbs, types, expiries, values of
//!    strings, lists, sets, sorted sets and hashes (with field TTLs);
//! 2. every bundled RDB file's items against a reviewed snapshot in `tests/expect/`, one line
//!    per item. `UPDATE_EXPECT=1 cargo test -p rdb-format golden` rewrites the snapshots; review
//!    the diff before committing it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use rdb_format::{BytesReader, Config, Elem, Item, Shown, Value};
use serde_json::Value as J;

fn whole_keys() -> Config {
    let mut c = Config::default();
    c.chunk_threshold(usize::MAX).string_piece(u64::MAX);
    c
}

fn items(path: &Path, config: Config) -> Vec<Item> {
    let data = Bytes::from(std::fs::read(path).unwrap());
    BytesReader::with_config(data, config)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON string, or `{"base64": …}` for bytes that are not UTF-8.
fn bytes_of(v: &J) -> Vec<u8> {
    match v {
        J::String(s) => s.as_bytes().to_vec(),
        J::Object(o) => base64::engine::general_purpose::STANDARD
            .decode(o["base64"].as_str().unwrap())
            .unwrap(),
        other => panic!("not bytes: {other}"),
    }
}

/// A hash field name: non-UTF-8 names are `"base64:<b64>"` object keys.
fn field_of(k: &str) -> Vec<u8> {
    match k.strip_prefix("base64:") {
        Some(b) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
        None => k.as_bytes().to_vec(),
    }
}

fn score_of(v: &J) -> f64 {
    match v {
        J::Number(n) => n.as_f64().unwrap(),
        J::String(s) if s == "inf" => f64::INFINITY,
        J::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("not a score: {other}"),
    }
}

fn elems(v: &[Elem]) -> Vec<Vec<u8>> {
    v.iter().map(|e| e.to_bytes().to_vec()).collect()
}

/// What the server held of one key, in the decoder's terms.
fn check_key(name: &str, want: &J, got: &rdb_format::KeyRecord) {
    let at = format!("{name}: key {}", Shown(&got.head.key));
    assert_eq!(got.head.value_type.name(), want["type"], "{at}");
    assert_eq!(
        got.head.expire_ms,
        want.get("expire_ms").and_then(J::as_i64),
        "{at}"
    );
    let v = &want["value"];
    match &got.value {
        Value::String(s) => assert_eq!(&s[..], &bytes_of(v)[..], "{at}"),
        Value::List(l) => {
            let w: Vec<Vec<u8>> = v.as_array().unwrap().iter().map(bytes_of).collect();
            assert_eq!(elems(l), w, "{at}");
        }
        Value::Set(s) => {
            let mut g = elems(s);
            let mut w: Vec<Vec<u8>> = v.as_array().unwrap().iter().map(bytes_of).collect();
            g.sort();
            w.sort();
            assert_eq!(g, w, "{at}");
        }
        Value::SortedSet(z) => {
            let g: BTreeMap<Vec<u8>, u64> = z
                .iter()
                .map(|(m, s)| (m.to_bytes().to_vec(), s.to_bits()))
                .collect();
            let w: BTreeMap<Vec<u8>, u64> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (bytes_of(&p[0]), score_of(&p[1]).to_bits()))
                .collect();
            // serde_json's float parsing is not correctly rounded (off by an ulp at times):
            // scores agree to two ulps
            let near = |a: u64, b: u64| a == b || (a as i64).abs_diff(b as i64) <= 2;
            let differ: Vec<_> = g
                .iter()
                .filter(|(m, s)| !w.get(*m).is_some_and(|b| near(**s, *b)))
                .map(|(m, s)| {
                    (
                        Shown(m).to_string(),
                        f64::from_bits(*s),
                        w.get(m).map(|b| f64::from_bits(*b)),
                    )
                })
                .collect();
            assert!(differ.is_empty() && g.len() == w.len(), "{at}: {differ:?}");
        }
        Value::Hash(h) => {
            let g: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)> = h
                .iter()
                .map(|f| {
                    (
                        f.field.to_bytes().to_vec(),
                        (f.value.to_bytes().to_vec(), f.expire_ms),
                    )
                })
                .collect();
            let ttls = want.get("field_expire_ms");
            let w: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)> = v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, val)| {
                    let ttl = ttls.and_then(|t| t.get(k)).and_then(J::as_u64);
                    (field_of(k), (bytes_of(val), ttl))
                })
                .collect();
            assert_eq!(g, w, "{at}");
        }
        // streams and module values: their type and expiry above; their contents are
        // compared through the CLI's JSON (crates/replicator-cli/tests/it/fixtures.rs)
        _ => {}
    }
}

#[test]
fn fixtures_hold_what_the_live_server_held() {
    let dir = test_support::testdata();
    let mut files = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let want: BTreeMap<(u64, Vec<u8>), J> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let j: J = serde_json::from_str(l).unwrap();
                ((j["db"].as_u64().unwrap(), bytes_of(&j["key"])), j)
            })
            .collect();
        let got: BTreeMap<(u64, Vec<u8>), rdb_format::KeyRecord> =
            items(&p.with_extension("rdb"), whole_keys())
                .into_iter()
                .filter_map(|i| match i {
                    Item::Key(k) => Some(((k.head.db, k.head.key.to_vec()), k)),
                    _ => None,
                })
                .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: key sets differ"
        );
        for (k, w) in &want {
            check_key(&name, w, &got[k]);
        }
        files += 1;
    }
    assert!(files >= 10, "{files} fixtures with the server's data");
}

/// One line per item; a key as `key db name type encoding [expire] [idle] [freq] [meta] =
/// value`.
fn render(items: &[Item]) -> String {
    let mut out = String::new();
    for i in items {
        match i {
            Item::Key(k) => {
                let h = &k.head;
                write!(
                    out,
                    "key db={} {} {} {}",
                    h.db,
                    Shown(&h.key),
                    h.value_type.name(),
                    h.encoding.name()
                )
                .unwrap();
                if let Some(ms) = h.expire_ms {
                    write!(out, " expire_ms={ms}").unwrap();
                }
                if let Some(s) = h.idle_s {
                    write!(out, " idle_s={s}").unwrap();
                }
                if let Some(f) = h.freq {
                    write!(out, " freq={f}").unwrap();
                }
                if !h.key_meta.is_empty() {
                    write!(out, " meta={:?}", h.key_meta).unwrap();
                }
                writeln!(out, " = {:?}", k.value).unwrap();
            }
            other => writeln!(out, "{other:?}").unwrap(),
        }
    }
    out
}

fn rdb_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rdb_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rdb") {
            out.push(p);
        }
    }
}

#[test]
fn items_match_their_reviewed_snapshots() {
    let root = test_support::testdata();
    let expect = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expect");
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut files = Vec::new();
    for sub in ["", "newest-formats"] {
        let d = root.join(sub);
        if sub.is_empty() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().extension().is_some_and(|x| x == "rdb") {
                    files.push(e.path());
                }
            }
        } else {
            rdb_files(&d, &mut files);
        }
    }
    files.sort();
    let mut stale = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('/', "__");
        // files a decoder must refuse (version-policy assets) have no snapshot
        let Ok(items) =
            BytesReader::with_config(Bytes::from(std::fs::read(f).unwrap()), whole_keys())
                .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        let text = render(&items);
        let snap = expect.join(format!("{rel}.items"));
        if update {
            std::fs::create_dir_all(&expect).unwrap();
            std::fs::write(&snap, &text).unwrap();
        } else {
            match std::fs::read_to_string(&snap) {
                Ok(want) if want == text => {}
                Ok(want) => {
                    let line = want
                        .lines()
                        .zip(text.lines())
                        .position(|(a, b)| a != b)
                        .unwrap_or(want.lines().count().min(text.lines().count()));
                    stale.push(format!("{rel}: first difference at line {}", line + 1));
                }
                Err(_) => stale.push(format!("{rel}: no snapshot")),
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "{checked} files");
    assert!(
        stale.is_empty(),
        "decoded items differ from tests/expect (UPDATE_EXPECT=1 rewrites them; review the \
         diff):\n{}",
        stale.join("\n")
    );
}
