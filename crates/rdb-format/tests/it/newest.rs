//! The newest formats (RDB 13 / 14, Valkey 9): every file Redis 8.6, the 8.8 format and
//! Valkey 9.1 wrote decodes to what the live server held (`contents.json`), DUMP payloads
//! included; the version policy; round trips of the new types; damaged input.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use rdb_format::{
    Array, ArrayItem, ArrayValue, BytesReader, Chunk, Config, ConsumerGroup, Elem, EncodeConfig,
    Encoder, ErrorKind, IdmpEntry, IdmpProducer, Item, KeyMeta, KeyRecord, ModuleItem,
    PendingEntry, Stream, StreamEntry, StreamId, StreamIdmp, StreamMeta, Value, ValueType,
    decode_dump, dump_payload_with_meta,
};
use serde_json::Value as J;

use crate::encode::normal;
use crate::robustness::byte_by_byte;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/newest-formats")
}

/// Every file that is a real RDB of a known version (the Valkey policy assets are not).
fn files() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in [
        "built-8.6.3",
        "built-unstable-e58041978",
        "built-valkey-9.1.0",
        "redis-librdb",
        "redis-redis",
    ] {
        for e in std::fs::read_dir(dir().join(sub)).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "rdb") {
                out.push((
                    format!("{sub}/{}", e.file_name().to_string_lossy()),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    assert_eq!(
        out.len(),
        16,
        "the 16 real-format files of testdata/newest-formats"
    );
    out
}

fn whole_config() -> Config {
    let mut c = Config::default();
    c.chunk_threshold(usize::MAX).string_piece(u64::MAX);
    c
}

fn keys(data: &[u8]) -> BTreeMap<Vec<u8>, KeyRecord> {
    BytesReader::with_config(Bytes::copy_from_slice(data), whole_config())
        .filter_map(|i| match i.unwrap() {
            Item::Key(k) => Some((k.head.key.to_vec(), k)),
            _ => None,
        })
        .collect()
}

fn s(j: &J) -> &str {
    j.as_str().unwrap_or_else(|| panic!("not a string: {j}"))
}

fn id(t: &str) -> StreamId {
    let (ms, seq) = t.split_once('-').unwrap();
    StreamId {
        ms: ms.parse().unwrap(),
        seq: seq.parse().unwrap(),
    }
}

/// A flat `[name, value, name, value …]` reply as a map.
fn kv(j: &J) -> HashMap<String, J> {
    j.as_array()
        .unwrap()
        .chunks(2)
        .map(|p| (s(&p[0]).to_owned(), p[1].clone()))
        .collect()
}

fn u(j: &J) -> u64 {
    j.as_u64().unwrap_or_else(|| panic!("not a u64: {j}"))
}

fn text(e: &Elem) -> String {
    String::from_utf8_lossy(&e.to_bytes()).into_owned()
}

fn hex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// Checks one key against what the server said it held.
fn check_key(file: &str, rec: &KeyRecord, k: &J) {
    let key = s(&k["key"]);
    let ctx = format!("{file} {key}");
    assert_eq!(rec.head.db, u(&k["db"]), "{ctx}");
    assert_eq!(rec.head.value_type.name(), s(&k["type"]), "{ctx}");
    let pexp = k["pexpiretime_ms"].as_i64().unwrap();
    assert_eq!(
        rec.head.expire_ms,
        (pexp >= 0).then_some(pexp),
        "{ctx}: expiry"
    );
    // key metadata: the first string each class wrote is what KEYMETA.GET returns
    let obj = k.as_object().unwrap();
    for (name, want) in obj.iter().filter(|(n, _)| n.starts_with("keymeta_")) {
        let class = &name["keymeta_".len()..];
        let got = rec.head.key_meta.iter().find(|m| m.class == class);
        match (want, got) {
            (J::Null, None) => {}
            (J::String(w), Some(m)) => {
                assert!(
                    matches!(&m.items[0], ModuleItem::String(b) if b == w.as_bytes()),
                    "{ctx}: {class} = {:?}",
                    m.items
                );
                assert_eq!(m.items.len(), 4, "{ctx}: the test module writes 4 items");
                assert_eq!(m.items[1], ModuleItem::Uint(1));
                assert_eq!(m.items[2], ModuleItem::Float(1.5));
                assert!(matches!(&m.items[3], ModuleItem::String(b) if b.starts_with(b"0x")));
            }
            (w, g) => panic!("{ctx}: class {class}: server {w}, decoded {g:?}"),
        }
    }
    if let Some(m) = rec.head.key_meta.iter().find(|m| m.class == "KMT2") {
        assert_eq!((m.version, m.allow_ignore), (3, false), "{ctx}");
    }
    if let Some(m) = rec.head.key_meta.iter().find(|m| m.class == "KMT1") {
        assert_eq!((m.version, m.allow_ignore), (1, true), "{ctx}");
    }
    match &rec.value {
        Value::String(v) => assert_eq!(v, s(&k["value"]).as_bytes(), "{ctx}"),
        Value::List(v) => {
            let want: Vec<&str> = k["value"].as_array().unwrap().iter().map(s).collect();
            assert_eq!(v.iter().map(text).collect::<Vec<_>>(), want, "{ctx}");
        }
        Value::Set(v) => {
            let mut want: Vec<&str> = k["value"].as_array().unwrap().iter().map(s).collect();
            let mut got: Vec<String> = v.iter().map(text).collect();
            want.sort_unstable();
            got.sort();
            assert_eq!(got, want, "{ctx}");
        }
        Value::SortedSet(v) => {
            let flat: Vec<&J> = k["value"].as_array().unwrap().iter().collect();
            assert_eq!(flat.len(), v.len() * 2, "{ctx}");
            for (m, score) in v {
                let i = flat
                    .iter()
                    .position(|x| x.as_str() == Some(&text(m)))
                    .unwrap();
                let want: f64 = match flat[i + 1] {
                    J::String(t) => t.parse().unwrap(),
                    n => n.as_f64().unwrap(),
                };
                assert_eq!(*score, want, "{ctx}");
            }
        }
        Value::Hash(fields) => {
            let flat: Vec<&str> = k["value"].as_array().unwrap().iter().map(s).collect();
            let want: BTreeMap<&str, &str> = flat.chunks(2).map(|p| (p[0], p[1])).collect();
            let got: BTreeMap<String, String> = fields
                .iter()
                .map(|f| (text(&f.field), text(&f.value)))
                .collect();
            assert_eq!(got.len(), want.len(), "{ctx}");
            for (f, v) in &want {
                assert_eq!(got.get(*f).map(String::as_str), Some(*v), "{ctx}");
            }
            if let Some(ttls) = k.get("field_pexpiretime_ms") {
                for f in fields {
                    let t = ttls[text(&f.field).as_str()].as_i64().unwrap();
                    assert_eq!(
                        f.expire_ms,
                        u64::try_from(t).ok(),
                        "{ctx} field {}",
                        text(&f.field)
                    );
                }
            }
        }
        Value::Stream(st) => check_stream(&ctx, st, k),
        Value::Array(a) => {
            let want: Vec<(u64, &str)> = k["arscan"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (u(&p[0]), s(&p[1])))
                .collect();
            let got: Vec<(u64, String)> = a
                .items
                .iter()
                .map(|i| {
                    (
                        i.index,
                        String::from_utf8_lossy(&i.value.to_bytes()).into_owned(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                want.iter()
                    .map(|(i, v)| (*i, (*v).to_owned()))
                    .collect::<Vec<_>>(),
                "{ctx}"
            );
            let info = kv(&k["arinfo"]);
            assert_eq!(
                a.next_insert_index(),
                u(&info["next-insert-index"]),
                "{ctx}"
            );
            assert_eq!(a.items.len() as u64, u(&info["count"]), "{ctx}");
        }
        other => panic!("{ctx}: unexpected {other:?}"),
    }
}

fn check_stream(ctx: &str, st: &Stream, k: &J) {
    let entries: Vec<(StreamId, Vec<String>)> = st
        .entries
        .iter()
        .map(|e| {
            (
                e.id,
                e.fields
                    .iter()
                    .flat_map(|(f, v)| [text(f), text(v)])
                    .collect(),
            )
        })
        .collect();
    let want: Vec<(StreamId, Vec<String>)> = k["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                id(s(&e[0])),
                e[1].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| s(x).to_owned())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(entries, want, "{ctx}: entries");
    let x = kv(&k["xinfo_stream_full"]);
    let m = &st.meta;
    assert_eq!(m.length, u(&x["length"]), "{ctx}");
    assert_eq!(m.last_id, id(s(&x["last-generated-id"])), "{ctx}");
    assert_eq!(
        m.max_deleted_id,
        Some(id(s(&x["max-deleted-entry-id"]))),
        "{ctx}"
    );
    assert_eq!(m.entries_added, Some(u(&x["entries-added"])), "{ctx}");
    assert_eq!(
        m.first_id,
        Some(id(s(&x["recorded-first-entry-id"]))),
        "{ctx}"
    );
    let idmp = m.idmp.as_ref().expect("RDB 13+ streams carry IDMP state");
    assert_eq!(idmp.duration_s, u(&x["idmp-duration"]), "{ctx}");
    assert_eq!(idmp.max_entries, u(&x["idmp-maxsize"]), "{ctx}");
    assert_eq!(idmp.producers.len() as u64, u(&x["pids-tracked"]), "{ctx}");
    let iids: usize = idmp.producers.iter().map(|p| p.entries.len()).sum();
    assert_eq!(iids as u64, u(&x["iids-tracked"]), "{ctx}");
    assert_eq!(idmp.iids_added, u(&x["iids-added"]), "{ctx}");
    assert_eq!(idmp.iids_duplicates, u(&x["iids-duplicates"]), "{ctx}");
    // every remembered IID points at an entry of the stream
    for p in &idmp.producers {
        for e in &p.entries {
            assert!(
                st.entries.iter().any(|x| x.id == e.id),
                "{ctx}: IID for {}",
                e.id
            );
        }
    }
    let groups = x["groups"].as_array().unwrap();
    assert_eq!(m.groups.len(), groups.len(), "{ctx}");
    for (g, wg) in m.groups.iter().zip(groups) {
        let wg = kv(wg);
        assert_eq!(g.name, s(&wg["name"]).as_bytes(), "{ctx}");
        assert_eq!(g.last_id, id(s(&wg["last-delivered-id"])), "{ctx}");
        assert_eq!(g.entries_read, wg["entries-read"].as_u64(), "{ctx}");
        assert_eq!(g.pending.len() as u64, u(&wg["pel-count"]), "{ctx}");
        let nacked = g.nacked.as_ref().map_or(0, Vec::len) as u64;
        // 8.6 has no NACK zone and XINFO no nacked-count
        assert_eq!(nacked, wg.get("nacked-count").map_or(0, u), "{ctx}");
        for (p, wp) in g.pending.iter().zip(wg["pending"].as_array().unwrap()) {
            assert_eq!(p.id, id(s(&wp[0])), "{ctx}");
            let owner = p.consumer.as_deref().unwrap_or_default();
            assert_eq!(owner, s(&wp[1]).as_bytes(), "{ctx}");
            assert_eq!(p.delivery_time_ms, u(&wp[2]), "{ctx}");
            assert_eq!(p.delivery_count, u(&wp[3]), "{ctx}");
            // a pending entry without an owner is in the NACK zone, and only then
            assert_eq!(
                p.consumer.is_none(),
                g.nacked.as_ref().is_some_and(|n| n.contains(&p.id)),
                "{ctx}"
            );
        }
        for (c, wc) in g.consumers.iter().zip(wg["consumers"].as_array().unwrap()) {
            let wc = kv(wc);
            assert_eq!(c.name, s(&wc["name"]).as_bytes(), "{ctx}");
            assert_eq!(c.seen_time_ms, u(&wc["seen-time"]), "{ctx}");
            assert_eq!(c.active_time_ms, wc["active-time"].as_u64(), "{ctx}");
            let ids: Vec<StreamId> = wc["pending"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| id(s(&p[0])))
                .collect();
            assert_eq!(c.pending, ids, "{ctx}");
        }
    }
}

#[test]
fn files_decode_to_what_the_server_held() {
    let mut checked = 0;
    for sub in [
        "built-8.6.3",
        "built-unstable-e58041978",
        "built-valkey-9.1.0",
    ] {
        let contents: J =
            serde_json::from_slice(&std::fs::read(dir().join(sub).join("contents.json")).unwrap())
                .unwrap();
        for f in contents["files"].as_array().unwrap() {
            let name = s(&f["file"]);
            let Ok(data) = std::fs::read(dir().join(sub).join(name)) else {
                // the failed Valkey sync attempt is recorded without a file
                assert!(f.get("error").is_some(), "{sub}/{name} missing");
                continue;
            };
            assert_eq!(&data[..9], s(&f["header"]).as_bytes(), "{name}");
            let decoded = keys(&data);
            let Some(want) = f["keys"].as_array() else {
                continue;
            };
            assert_eq!(decoded.len(), want.len(), "{sub}/{name}: key count");
            for k in want {
                let rec = decoded
                    .get(s(&k["key"]).as_bytes())
                    .unwrap_or_else(|| panic!("{sub}/{name}: no key {}", k["key"]));
                check_key(&format!("{sub}/{name}"), rec, k);
                if let Some(h) = k.get("dump_hex").and_then(J::as_str) {
                    // the server's DUMP of the key decodes to the same value and metadata
                    let d = decode_dump(&hex(h))
                        .unwrap_or_else(|e| panic!("{sub}/{name} {}: DUMP: {e}", k["key"]));
                    let v = d.version as u32;
                    assert_eq!(
                        normal(&d.value, v),
                        normal(&rec.value, v),
                        "{name} {}",
                        k["key"]
                    );
                    assert_eq!(d.key_meta, rec.head.key_meta, "{name} {}", k["key"]);
                    assert_eq!(
                        &data[5 + usize::from(data[0] == b'V')..9],
                        format!("{:0w$}", v, w = 4 - usize::from(data[0] == b'V')).as_bytes()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} keys checked");
}

#[test]
fn librdb_stream_v13_idmp_matches_its_expected_json() {
    let data = std::fs::read(dir().join("redis-librdb/stream_v13_idmp.rdb")).unwrap();
    // librdb's expected output is a `"key": {…}` fragment
    let frag = std::fs::read_to_string(dir().join("redis-librdb/stream_v13.json")).unwrap();
    let j: J = serde_json::from_str(&format!("{{{frag}}}")).unwrap();
    let (key, want) = j.as_object().unwrap().iter().next().unwrap();
    let recs = keys(&data);
    let Value::Stream(st) = &recs[key.as_bytes()].value else {
        panic!("not a stream")
    };
    let entries = want["entries"].as_array().unwrap();
    assert_eq!(st.entries.len(), entries.len());
    for (e, w) in st.entries.iter().zip(entries) {
        assert_eq!(e.id, id(s(&w["id"])));
        let items = w["items"].as_object().unwrap();
        for (f, v) in &e.fields {
            assert_eq!(items[&text(f)].as_str(), Some(text(v).as_str()));
        }
    }
    let idmp = st.meta.idmp.as_ref().unwrap();
    let wi = &want["idmp"];
    assert_eq!(idmp.duration_s, u(&wi["duration"]));
    assert_eq!(idmp.max_entries, u(&wi["maxEntries"]));
    assert_eq!(idmp.producers.len() as u64, u(&wi["numProducers"]));
    for (p, wp) in idmp
        .producers
        .iter()
        .zip(wi["producers"].as_array().unwrap())
    {
        assert_eq!(p.id, s(&wp["pid"]).as_bytes());
        assert_eq!(p.entries.len() as u64, u(&wp["numEntries"]));
        for (e, we) in p.entries.iter().zip(wp["entries"].as_array().unwrap()) {
            assert_eq!(e.iid, s(&we["iid"]).as_bytes());
            assert_eq!(e.id, id(s(&we["streamId"])));
        }
    }
}

#[test]
fn librdb_49_streams_decode_and_re_encode_identically() {
    let data = std::fs::read(dir().join("redis-librdb/stream_v13.rdb")).unwrap();
    let recs = keys(&data);
    assert_eq!(recs.len(), 49);
    let mut saw_unknown_read = false;
    let mut saw_producers = 0;
    for (k, rec) in &recs {
        let Value::Stream(st) = &rec.value else {
            panic!("{k:?} not a stream")
        };
        saw_unknown_read |= st.meta.groups.iter().any(|g| g.entries_read.is_none());
        saw_producers += st.meta.idmp.as_ref().unwrap().producers.len();
        // the name says how many groups, PEL entries, producers and entries each has
        let name = String::from_utf8_lossy(k).into_owned();
        let n = |tag: &str| -> usize {
            let at = name.find(tag).unwrap() + tag.len();
            name[at..at + 1].parse().unwrap()
        };
        assert_eq!(st.meta.groups.len(), n("_cg"), "{name}");
        if n("_ent") > 0 {
            // a producer left with no entries is not written
            assert_eq!(
                st.meta.idmp.as_ref().unwrap().producers.len(),
                n("_prod"),
                "{name}"
            );
        }
        for v in [13, 14] {
            let cfg = EncodeConfig::new(v).unwrap();
            let payload = dump_payload_with_meta(&rec.value, &[], &cfg).unwrap();
            assert_eq!(
                normal(&decode_dump(&payload).unwrap().value, v),
                normal(&rec.value, v)
            );
        }
    }
    assert!(saw_unknown_read, "some groups have entries_read = 2^64-1");
    assert!(saw_producers > 30);
}

#[test]
fn redis_32bit_array_test_asset() {
    let data = std::fs::read(dir().join("redis-redis/array-32bit.rdb")).unwrap();
    let recs = keys(&data);
    let arr = |k: &str| match &recs[k.as_bytes()].value {
        Value::Array(a) => a.clone(),
        v => panic!("{k}: {v:?}"),
    };
    let vals = |a: &Array| -> Vec<String> {
        a.items
            .iter()
            .map(|i| String::from_utf8_lossy(&i.value.to_bytes()).into_owned())
            .collect()
    };
    assert_eq!(
        vals(&arr("ints")),
        [
            "0",
            "1",
            "-1",
            "42",
            "-42",
            "536870911",
            "-536870912",
            "536870912",
            "-536870913",
            "2147483647",
            "-2147483648",
            "1000000000",
            "999999999",
            "100"
        ]
    );
    assert_eq!(
        vals(&arr("floats")),
        [
            "1.0",
            "-1.0",
            "3.14",
            "0.5",
            "-0.5",
            "0.25",
            "100.0",
            "-100.0",
            "1.5",
            "1.75",
            "0.1",
            "1234.5",
            "0.0625",
            "999999.0",
            "1.23456789012"
        ]
    );
    let strs = vals(&arr("strs"));
    assert_eq!(strs[0], "");
    assert_eq!(strs[10], "this is a longer string for testing");
    assert_eq!(strs[13], "xyz");
    let sparse: Vec<u64> = arr("sparse").items.iter().map(|i| i.index).collect();
    assert_eq!(sparse, [0, 4095, 4096, 8191, 10000, 50000, 100000]);
    let w = arr("withinsert");
    assert_eq!(vals(&w), ["one", "two", "three", "four", "five"]);
    assert_eq!(w.next_insert_index(), 5);
    assert_eq!(recs.len(), 6);
}

/// Valkey's version-policy assets, with what Valkey 9.1 does with each.
#[test]
fn version_policy() {
    let read = |f: &str| std::fs::read(dir().join("valkey-io-valkey").join(f)).unwrap();
    let decode = |data: &[u8], relaxed: bool| -> Result<Vec<Item>, rdb_format::Error> {
        let mut c = Config::default();
        c.relaxed_version(relaxed);
        BytesReader::with_config(Bytes::copy_from_slice(data), c).collect()
    };
    // RDB 12 is Redis 7.4 to us (Valkey calls it foreign)
    let items = decode(&read("encodings-rdb12.rdb"), false).unwrap();
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Item::Key(k) if k.head.key == "foo"))
    );
    for (f, version, likely) in [
        ("encodings-rdb75-unknown-types.rdb", 75, "no released Redis"),
        ("encodings-rdb987.rdb", 987, "Valkey release newer than 9.2"),
        (
            "encodings-rdb987-unknown-types.rdb",
            987,
            "Valkey release newer than 9.2",
        ),
    ] {
        let e = decode(&read(f), false).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnsupportedVersion { version: v, relaxable: true, .. } if *v == version),
            "{f}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(likely) && msg.contains("--relaxed-version"),
            "{f}: {msg}"
        );
    }
    // relaxed: the future Valkey file holds only old types and loads
    let items = decode(&read("encodings-rdb987.rdb"), true).unwrap();
    let n = items.iter().filter(|i| matches!(i, Item::Key(_))).count();
    assert!(n >= 10, "{n} keys");
    // relaxed: type 150 stops decoding with the byte and its offset
    for f in [
        "encodings-rdb75-unknown-types.rdb",
        "encodings-rdb987-unknown-types.rdb",
    ] {
        let data = read(f);
        let e = decode(&data, true).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::UnknownType(150), "{f}: {e}");
        assert_eq!(data[e.offset() as usize], 150, "{f}: offset {}", e.offset());
    }
    // Redis 8.10 and Valkey 9.2 headers are named
    for (magic, likely) in [
        (&b"REDIS0015"[..], "Redis 8.10"),
        (b"VALKEY081", "Valkey 9.2"),
    ] {
        let mut f = magic.to_vec();
        f.extend_from_slice(b"\xff\0\0\0\0\0\0\0\0");
        let e = decode(&f, false).unwrap_err();
        assert!(e.to_string().contains(likely), "{e}");
        decode(&f, true).unwrap();
    }
    // numbers the magics never carry are refused even when relaxed
    for magic in [&b"REDIS0080"[..], b"VALKEY012", b"REDIS0000"] {
        let mut f = magic.to_vec();
        f.extend_from_slice(b"\xff\0\0\0\0\0\0\0\0");
        let e = decode(&f, true).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::UnsupportedVersion {
                    relaxable: false,
                    ..
                }
            ),
            "{e}"
        );
    }
    // a type a version does not have is refused: 26 in RDB 12, 27/28 in RDB 13
    for (v, ty) in [(12, 26u8), (13, 27), (13, 28), (80, 26)] {
        let mut f = if v == 80 {
            b"VALKEY080".to_vec()
        } else {
            format!("REDIS{v:04}").into_bytes()
        };
        f.extend_from_slice(&[ty, 1, b'k', 0]);
        let e = decode(&f, false).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::UnknownType(ty), "v{v} type {ty}");
        assert_eq!(e.offset(), 9);
    }
}

#[test]
fn valkey_slot_import_and_redis_key_meta_share_opcode_243() {
    // Valkey: a file-level record
    let mut f = b"VALKEY080".to_vec();
    f.push(0xF3);
    f.push(40);
    f.extend_from_slice(&[b'j'; 40]);
    f.extend_from_slice(&[2, 0, 0x40 | 0x0f, 0xff, 0x41, 0x00, 0x41, 0x10]);
    f.extend_from_slice(b"\xfe\x00\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0");
    let items = rdb_format::decode_all(&f).unwrap();
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Item::SlotImport { job, ranges }
        if job.len() == 40 && ranges == &[(0, 0x0fff), (0x100, 0x110)]))
    );
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Item::Key(k) if k.head.key_meta.is_empty()))
    );
    // a bad range is refused with its offset
    let mut bad = f.clone();
    bad[56] = 0x20; // second range 288-272
    let e = rdb_format::decode_all(&bad).unwrap_err();
    assert!(e.to_string().contains("bad slot range 288-272"), "{e}");
    assert_eq!(e.offset(), 55);
    // Redis 13: metadata before the type; another opcode there is an error
    let mut r = b"REDIS0013".to_vec();
    r.extend_from_slice(&[0xF3, 1, 0x09, 0xf5, 0xc4, 0x28, 5, 1, b'm', 0]);
    let mut good = r.clone();
    good.extend_from_slice(b"\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0");
    let items = rdb_format::decode_all(&good).unwrap();
    let Some(Item::Key(k)) = items.iter().find(|i| matches!(i, Item::Key(_))) else {
        panic!()
    };
    assert_eq!(k.head.key_meta[0].class, "KMT1");
    assert_eq!(k.head.offset, 9, "the record starts at its KEY_META block");
    let mut bad = r.clone();
    bad.extend_from_slice(b"\xfc\0\0\0\0\0\0\0\0\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0");
    let e = rdb_format::decode_all(&bad).unwrap_err();
    assert!(e.to_string().contains("KEY_META"), "{e}");
    assert_eq!(e.offset(), r.len() as u64);
    // more than 7 classes, and an unknown item opcode
    let mut eight = b"REDIS0013\xf3\x08".to_vec();
    eight.extend_from_slice(b"\xff\0\0\0\0\0\0\0\0");
    assert!(
        rdb_format::decode_all(&eight)
            .unwrap_err()
            .to_string()
            .contains("at most 7")
    );
    let mut op9 = b"REDIS0013".to_vec();
    op9.extend_from_slice(&[0xF3, 1, 0x09, 0xf5, 0xc4, 0x28, 9, 0]);
    op9.extend_from_slice(b"\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0");
    let e = rdb_format::decode_all(&op9).unwrap_err();
    assert!(e.to_string().contains("module opcode 9"), "{e}");
    assert_eq!(e.offset(), 15);
}

#[test]
fn array_layout_errors_name_the_fault() {
    let arr = |body: &[u8]| {
        let mut f = b"REDIS0014\x1c\x01a".to_vec();
        f.extend_from_slice(body);
        f.extend_from_slice(b"\xff\0\0\0\0\0\0\0\0");
        rdb_format::decode_all(&f)
    };
    let ok = arr(&[1, 0, 7, 3, 2, b'h', b'i']).unwrap();
    assert!(ok.iter().any(
        |i| matches!(i, Item::Key(k) if k.value == Value::Array(Box::new(Array {
            items: vec![ArrayItem { index: 7, value: ArrayValue::Short("hi".into()) }],
            insert_index: None,
        })))
    ));
    for (body, why, at) in [
        (&[0u8][..], "0 elements", 12),
        (&[1, 2][..], "insert-index flag is 2", 13),
        (&[1, 0, 0, 4][..], "unknown element tag 4", 15),
        (
            &[
                1, 0, 0, 3, 8, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h',
            ][..],
            "short-string element of 8 bytes",
            15,
        ),
        (
            &[
                1, 0, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
            ][..],
            "2^64-1",
            14,
        ),
        (&[1, 0, 0xc0, 1][..], "special encoding", 14),
    ] {
        let e = arr(body).unwrap_err();
        assert!(e.to_string().contains(why), "{why}: {e}");
        assert_eq!(e.offset(), at, "{why}: {e}");
    }
}

#[test]
fn stream_tail_errors_name_the_fault() {
    // take the 8.8 NACK file and break its parts
    let data = std::fs::read(dir().join("built-unstable-e58041978/stream-xnack.rdb")).unwrap();
    let mut c = Config::default();
    c.verify_checksum(false);
    let decode = |d: &[u8]| -> Result<Vec<Item>, rdb_format::Error> {
        BytesReader::with_config(Bytes::copy_from_slice(d), c).collect()
    };
    decode(&data).unwrap();
    // the NACK zone sits after the consumer's two raw IDs: find "2-0" as sid16 after "bob"
    let sid = |ms: u64| {
        let mut v = ms.to_be_bytes().to_vec();
        v.extend_from_slice(&0u64.to_be_bytes());
        v
    };
    let bob = data.windows(3).rposition(|w| w == b"bob").unwrap();
    let nack_at = bob + data[bob..].windows(16).position(|w| w == sid(2)).unwrap();
    // 2-0 is nacked: make it 4-0, which bob owns
    let mut owned = data.clone();
    owned[nack_at..nack_at + 16].copy_from_slice(&sid(4));
    let e = decode(&owned).unwrap_err();
    assert!(
        e.to_string()
            .contains("NACK-zone entry 4-0 is owned by a consumer"),
        "{e}"
    );
    let mut missing = data.clone();
    missing[nack_at..nack_at + 16].copy_from_slice(&sid(9));
    let e = decode(&missing).unwrap_err();
    assert!(
        e.to_string().contains("not in the group's pending list"),
        "{e}"
    );
    // IDMP duration 0 (its byte follows the NACK zone: 2 IDs)
    let mut zero = data.clone();
    let dur_at = nack_at + 32;
    assert_eq!(
        zero[dur_at..dur_at + 2],
        [0x40, 100],
        "100 as a 14-bit length"
    );
    zero[dur_at + 1] = 0;
    let e = decode(&zero).unwrap_err();
    assert!(e.to_string().contains("IDMP duration 0"), "{e}");
    assert_eq!(e.offset(), dur_at as u64);
}

/// Rebuilds whole values from KeyStart/Chunk/KeyEnd (every type).
pub(crate) fn reassemble(items: Vec<Item>) -> Vec<(Bytes, Value)> {
    let mut out = Vec::new();
    let mut cur: Option<(Bytes, Value)> = None;
    for item in items {
        match item {
            Item::Key(k) => out.push((k.head.key, k.value)),
            Item::KeyStart(h) => {
                let v = match h.value_type {
                    ValueType::Array => Value::Array(Box::default()),
                    ValueType::Stream => Value::Stream(Box::default()),
                    ValueType::Hash => Value::Hash(vec![]),
                    ValueType::List => Value::List(vec![]),
                    ValueType::Set => Value::Set(vec![]),
                    ValueType::SortedSet => Value::SortedSet(vec![]),
                    _ => Value::String(Bytes::new()),
                };
                cur = Some((h.key, v));
            }
            Item::Chunk(c) => match (&mut cur.as_mut().unwrap().1, c) {
                (Value::Array(a), Chunk::Array(v)) => a.items.extend(v),
                (Value::Array(a), Chunk::ArrayEnd { insert_index }) => {
                    a.insert_index = insert_index
                }
                (Value::Stream(s), Chunk::StreamEntries(c)) => s.entries.extend(c),
                (Value::Stream(s), Chunk::StreamMeta(m)) => s.meta = *m,
                (Value::Hash(v), Chunk::Hash(c)) => v.extend(c),
                (Value::List(v), Chunk::List(c)) | (Value::Set(v), Chunk::Set(c)) => v.extend(c),
                (Value::SortedSet(v), Chunk::SortedSet(c)) => v.extend(c),
                (Value::String(s), Chunk::String(p)) => {
                    let mut b = s.to_vec();
                    b.extend_from_slice(&p);
                    *s = b.into();
                }
                (v, c) => panic!("chunk {c:?} for {v:?}"),
            },
            Item::KeyEnd => out.push(cur.take().unwrap()),
            _ => {}
        }
    }
    out
}

#[test]
fn split_chunked_truncated_and_flipped() {
    let mut tiny = Config::default();
    tiny.chunk_threshold(1).chunk_size(1).string_piece(4);
    for (name, data) in files() {
        let whole: Vec<Item> =
            BytesReader::with_config(Bytes::copy_from_slice(&data), whole_config())
                .collect::<Result<_, _>>()
                .unwrap();
        // one byte at a time, in chunks of one element
        let items = byte_by_byte(&data, tiny).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(reassemble(items), reassemble(whole), "{name}");
        // every cut is an error at or before the cut
        for cut in 0..data.len() {
            let r: Result<Vec<Item>, _> =
                BytesReader::new(Bytes::copy_from_slice(&data[..cut])).collect();
            let e = r.expect_err(&format!("{name} cut at {cut} decoded"));
            assert!(e.offset() <= cut as u64, "{name} cut {cut}: {e}");
        }
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let e = rdb_format::decode_all(&bad).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Checksum { .. }),
            "{name}: {e}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Mutated new-format files, with the checksum recomputed so the structure is what is
    /// tested: an error with an offset inside the file or a decode, never a panic.
    #[test]
    fn mutated_files_never_panic(pick in 0usize..16, muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let (_, mut data) = files().swap_remove(pick);
        let body = data.len() - 8;
        for (at, b) in muts {
            let i = 9 + at.index(body - 9);
            data[i] = b;
        }
        let crc = rdb_format::crc64(&data[..body]);
        data[body..].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = rdb_format::decode_all(&data) {
            prop_assert!(e.offset() <= data.len() as u64, "{}", e);
        }
    }
}

// ---------------------------------------------------------------- round trips

fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..max).prop_map(Bytes::from)
}

fn idmp() -> impl Strategy<Value = StreamIdmp> {
    (
        1u64..=86_400,
        1u64..=10_000,
        proptest::collection::vec(
            (
                bytes_strategy(20),
                proptest::collection::vec(
                    (bytes_strategy(20), 0u64..1u64 << 50, any::<u64>()),
                    0..5,
                ),
            ),
            0..4,
        ),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(duration_s, max_entries, producers, iids_added, iids_duplicates)| StreamIdmp {
                duration_s,
                max_entries,
                producers: producers
                    .into_iter()
                    .map(|(id, entries)| IdmpProducer {
                        id,
                        entries: entries
                            .into_iter()
                            .map(|(iid, ms, seq)| IdmpEntry {
                                iid,
                                id: StreamId { ms, seq },
                            })
                            .collect(),
                    })
                    .collect(),
                iids_added,
                iids_duplicates,
            },
        )
}

/// A stream with one group whose PEL has owned entries and a NACK zone of unowned ones.
fn new_stream() -> impl Strategy<Value = Value> {
    (
        2usize..40,
        any::<prop::sample::Index>(),
        idmp(),
        proptest::option::of(0u64..5),
    )
        .prop_map(|(n, split, idmp, nack_n)| {
            let entries: Vec<StreamEntry> = (0..n as u64)
                .map(|i| StreamEntry {
                    id: StreamId {
                        ms: 1000 + i,
                        seq: i % 3,
                    },
                    fields: vec![("f".into(), Elem::Int(i as i64))],
                })
                .collect();
            let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
            let owned = split.index(n);
            let nacked: Vec<StreamId> = match nack_n {
                Some(k) => ids[owned..].iter().take(k as usize).copied().collect(),
                None => Vec::new(),
            };
            let pending = ids[..owned]
                .iter()
                .map(|&id| PendingEntry {
                    id,
                    consumer: Some("c".into()),
                    delivery_time_ms: 5,
                    delivery_count: 2,
                })
                .chain(nacked.iter().map(|&id| PendingEntry {
                    id,
                    consumer: None,
                    delivery_time_ms: 0,
                    delivery_count: 3,
                }))
                .collect();
            let last = *ids.last().unwrap();
            Value::Stream(Box::new(Stream {
                meta: StreamMeta {
                    length: n as u64,
                    last_id: last,
                    first_id: Some(ids[0]),
                    max_deleted_id: Some(StreamId::default()),
                    entries_added: Some(n as u64),
                    groups: vec![ConsumerGroup {
                        name: "g".into(),
                        last_id: last,
                        entries_read: Some(n as u64),
                        pending,
                        consumers: vec![rdb_format::Consumer {
                            name: "c".into(),
                            seen_time_ms: 7,
                            active_time_ms: Some(6),
                            pending: ids[..owned].to_vec(),
                        }],
                        nacked: Some(nacked),
                    }],
                    idmp: Some(idmp),
                },
                entries,
            }))
        })
}

fn array() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| ArrayValue::String(v.into())),
        any::<i64>().prop_map(ArrayValue::Int),
        any::<f64>()
            .prop_filter("not NaN", |d| !d.is_nan())
            .prop_map(ArrayValue::Float),
        proptest::collection::vec(any::<u8>(), 0..=7).prop_map(|v| ArrayValue::Short(v.into())),
    ];
    (
        proptest::collection::btree_map(
            prop_oneof![0u64..10_000, any::<u64>().prop_map(|i| i >> 1)],
            value,
            1..300,
        ),
        proptest::option::of(any::<u64>().prop_map(|i| i >> 1)),
    )
        .prop_map(|(m, insert_index)| {
            Value::Array(Box::new(Array {
                items: m
                    .into_iter()
                    .map(|(index, value)| ArrayItem { index, value })
                    .collect(),
                insert_index,
            }))
        })
}

fn key_meta() -> impl Strategy<Value = Vec<KeyMeta>> {
    let item = prop_oneof![
        any::<u64>().prop_map(ModuleItem::Uint),
        any::<i64>().prop_map(ModuleItem::Sint),
        any::<f32>()
            .prop_filter("not NaN", |d| !d.is_nan())
            .prop_map(ModuleItem::Float),
        any::<f64>()
            .prop_filter("not NaN", |d| !d.is_nan())
            .prop_map(ModuleItem::Double),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(|v| ModuleItem::String(v.into())),
    ];
    proptest::collection::vec(
        (
            "[A-Za-z0-9_-]{4}",
            0u8..32,
            any::<bool>(),
            proptest::collection::vec(item, 0..5),
        ),
        0..=7,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(class, version, allow_ignore, items)| KeyMeta {
                class,
                version,
                allow_ignore,
                reserved_flags: 0,
                items,
            })
            .collect()
    })
}

/// Encodes one key for `cfg` and decodes it back.
fn through(
    rec: &KeyRecord,
    cfg: EncodeConfig,
) -> Result<(KeyRecord, rdb_format::Dropped), rdb_format::EncodeError> {
    let mut enc = Encoder::new(Vec::new(), cfg)?;
    enc.key(rec)?;
    let dropped = enc.dropped();
    let file = enc.finish()?;
    let k = keys(&file).into_values().next().unwrap();
    // and the default (chunking) decoder reads it too
    rdb_format::decode_all(&file).unwrap();
    Ok((k, dropped))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn new_stream_state_round_trips_or_is_dropped_on_request(v in new_stream()) {
        let Value::Stream(st) = &v else { unreachable!() };
        let nacked = st.meta.groups[0].nacked.as_ref().unwrap().len() as u64;
        let idmp_used = !st.meta.idmp.as_ref().unwrap().is_default();
        for version in [9, 10, 11, 12, 13, 14, 80] {
            let rec = KeyRecord::new(0, "s".into(), v.clone());
            let cfg = EncodeConfig::new(version).unwrap();
            let level = if version == 80 { 11 } else { version };
            let lost_idmp = level < 13 && idmp_used;
            let lost_nack = level < 14 && nacked > 0;
            match through(&rec, cfg) {
                Ok((back, d)) => {
                    prop_assert!(!lost_idmp && !lost_nack, "v{} kept what it cannot hold", version);
                    prop_assert!(d.is_empty());
                    prop_assert_eq!(normal(&back.value, version), normal(&v, version));
                    // DUMP payloads too
                    let p = dump_payload_with_meta(&v, &[], &cfg).unwrap();
                    prop_assert_eq!(normal(&decode_dump(&p).unwrap().value, version), normal(&v, version));
                }
                Err(e) => {
                    prop_assert!(lost_idmp || lost_nack, "v{}: {}", version, e);
                    prop_assert!(e.to_string().contains("--lossy") && e.to_string().contains("\"s\""), "{}", e);
                    let mut lossy = cfg;
                    lossy.lossy(true);
                    let (back, d) = through(&rec, lossy).unwrap();
                    prop_assert_eq!(d.idmp_streams, u64::from(lost_idmp));
                    prop_assert_eq!(d.nacked_entries, if lost_nack { nacked } else { 0 });
                    // what is left: the stream without the dropped parts
                    let mut want = (**st).clone();
                    if lost_idmp {
                        want.meta.idmp = None;
                    }
                    let g = &mut want.meta.groups[0];
                    let gone = g.nacked.take().unwrap();
                    if lost_nack {
                        g.pending.retain(|p| !gone.contains(&p.id));
                    }
                    let want = Value::Stream(Box::new(want));
                    prop_assert_eq!(normal(&back.value, version), normal(&want, version));
                }
            }
        }
    }

    #[test]
    fn arrays_round_trip_in_rdb_14_only(v in array(), meta in key_meta()) {
        let mut rec = KeyRecord::new(0, "a".into(), v.clone());
        rec.head.key_meta = meta.clone();
        let (back, d) = through(&rec, EncodeConfig::new(14).unwrap()).unwrap();
        prop_assert!(d.is_empty());
        prop_assert_eq!(&back.value, &v);
        prop_assert_eq!(&back.head.key_meta, &meta);
        let p = dump_payload_with_meta(&v, &meta, &EncodeConfig::new(14).unwrap()).unwrap();
        let dumped = decode_dump(&p).unwrap();
        prop_assert_eq!(dumped.value, v.clone());
        prop_assert_eq!(dumped.key_meta, meta);
        for version in [9, 12, 13, 80] {
            let mut cfg = EncodeConfig::new(version).unwrap();
            cfg.lossy(true);
            let e = through(&rec, cfg).unwrap_err();
            prop_assert!(e.to_string().contains("RDB 14") && e.to_string().contains("\"a\""), "{}", e);
        }
        // chunked delivery gives the same array
        let mut enc = Encoder::new(Vec::new(), EncodeConfig::new(14).unwrap()).unwrap();
        enc.key(&rec).unwrap();
        let file = enc.finish().unwrap();
        let mut tiny = Config::default();
        tiny.chunk_threshold(3).chunk_size(2);
        let items: Vec<Item> = BytesReader::with_config(file.into(), tiny).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&reassemble(items)[0].1, &v);
    }

    #[test]
    fn key_meta_round_trips_and_downgrades(meta in key_meta(), s in bytes_strategy(40)) {
        let v = Value::String(s);
        let mut rec = KeyRecord::new(0, "k".into(), v.clone());
        rec.head.key_meta = meta.clone();
        rec.head.expire_ms = Some(4_102_444_800_000);
        for version in [13, 14] {
            let (back, _) = through(&rec, EncodeConfig::new(version).unwrap()).unwrap();
            prop_assert_eq!(&back.head.key_meta, &meta);
            prop_assert_eq!(back.head.expire_ms, Some(4_102_444_800_000));
            let p = dump_payload_with_meta(&v, &meta, &EncodeConfig::new(version).unwrap()).unwrap();
            prop_assert_eq!(decode_dump(&p).unwrap().key_meta, meta.clone());
        }
        for version in [12, 80] {
            let cfg = EncodeConfig::new(version).unwrap();
            let strict = through(&rec, cfg);
            prop_assert_eq!(strict.is_err(), !meta.is_empty());
            let mut lossy = cfg;
            lossy.lossy(true);
            let all_ignorable = meta.iter().all(|m| m.allow_ignore);
            match through(&rec, lossy) {
                Ok((back, d)) => {
                    prop_assert!(all_ignorable);
                    prop_assert!(back.head.key_meta.is_empty());
                    prop_assert_eq!(d.key_meta_classes, meta.len() as u64);
                    prop_assert_eq!(&back.value, &v);
                }
                Err(e) => {
                    prop_assert!(!all_ignorable);
                    prop_assert!(e.to_string().contains("ALLOW_IGNORE"), "{}", e);
                }
            }
        }
    }
}

#[test]
fn every_real_key_re_encodes_for_its_own_version() {
    for (name, data) in files() {
        let version = match &data[..6] {
            b"VALKEY" => 80,
            _ => std::str::from_utf8(&data[5..9])
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        };
        for rec in keys(&data).into_values() {
            let cfg = EncodeConfig::new(version.max(9)).unwrap();
            let (back, d) = through(&rec, cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(d.is_empty());
            assert_eq!(
                normal(&back.value, version),
                normal(&rec.value, version),
                "{name}"
            );
            assert_eq!(back.head.key_meta, rec.head.key_meta, "{name}");
            assert_eq!(back.head.expire_ms, rec.head.expire_ms, "{name}");
        }
    }
}
