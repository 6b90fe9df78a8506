//! `Config::packed_sizes`: every key stored as packed blobs gets one `Item::Packed` just
//! before its last item, the same whether values are built whole, in chunks, skipped, or
//! left unbuilt for packed encodings only (`Config::build_packed(false)`).

use std::path::Path;

use bytes::Bytes;
use rdb_format::{BytesReader, Config, Encoding, Item, Packed, Value};

/// (key, encoding, packed) per key, in file order.
fn keys(path: &Path, config: &Config) -> Vec<(Bytes, Encoding, Option<Packed>)> {
    let data = Bytes::from(std::fs::read(path).unwrap());
    let mut out = Vec::new();
    let mut pending: Option<Packed> = None;
    let mut head = None;
    for item in BytesReader::with_config(data, *config) {
        match item.unwrap() {
            Item::Packed(p) => {
                assert!(pending.is_none(), "two Packed items for one key");
                pending = Some(*p);
            }
            Item::KeyStart(h) => head = Some(h),
            Item::Key(rec) => {
                if let Some(p) = &pending {
                    // the counts agree with the value built
                    let (n, largest) = match &rec.value {
                        Value::List(v) | Value::Set(v) => {
                            (v.len(), v.iter().map(|e| e.len()).max().unwrap_or(0))
                        }
                        Value::SortedSet(v) => {
                            (v.len(), v.iter().map(|e| e.0.len()).max().unwrap_or(0))
                        }
                        Value::Hash(v) => (
                            v.len(),
                            v.iter()
                                .map(|f| f.field.len().max(f.value.len()))
                                .max()
                                .unwrap_or(0),
                        ),
                        _ => (0, 0),
                    };
                    assert_eq!(
                        (p.elements, p.largest),
                        (n as u64, largest as u64),
                        "{:?}",
                        rec.head.key
                    );
                }
                out.push((rec.head.key.clone(), rec.head.encoding, pending.take()));
            }
            Item::KeyChecked(h) => out.push((h.key.clone(), h.encoding, pending.take())),
            Item::KeyEnd => {
                let h = head.take().unwrap();
                out.push((h.key, h.encoding, pending.take()));
            }
            Item::Chunk(_) => {}
            other => assert!(pending.is_none(), "Packed before {other:?}"),
        }
    }
    out
}

#[test]
fn packed_sizes_come_with_every_packed_key_in_every_mode() {
    let dir = test_support::testdata();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rdb") {
            continue;
        }
        let mut whole = Config::default();
        whole
            .packed_sizes(true)
            .chunk_threshold(usize::MAX)
            .string_piece(u64::MAX);
        let mut chunked = Config::default();
        chunked.packed_sizes(true).chunk_threshold(4).chunk_size(3);
        let mut skipped = Config::default();
        skipped.packed_sizes(true).skip_values(true);
        let mut sized = Config::default();
        sized.packed_sizes(true).build_packed(false);
        let a = keys(&path, &whole);
        assert_eq!(a, keys(&path, &chunked), "{}", path.display());
        assert_eq!(a, keys(&path, &skipped), "{}", path.display());
        assert_eq!(a, keys(&path, &sized), "{}", path.display());
        let none = keys(&path, &Config::default());
        assert!(none.iter().all(|k| k.2.is_none()), "Packed items unasked");
        for (key, enc, packed) in &a {
            let blobs = matches!(
                enc,
                Encoding::Listpack
                    | Encoding::Ziplist
                    | Encoding::Intset
                    | Encoding::Zipmap
                    | Encoding::Quicklist
                    | Encoding::Listpacks
            );
            match packed {
                Some(p) => {
                    assert!(blobs, "{key:?} ({enc:?}) got packed sizes");
                    assert_eq!(p.sizes.len() as u64, p.count);
                    assert_eq!(p.sizes.iter().sum::<u64>(), p.total);
                    assert!(p.sizes.iter().all(|&s| s >= 7), "{key:?}: {p:?}");
                    assert_eq!(
                        p.elements == 0,
                        *enc == Encoding::Listpacks,
                        "{key:?}: {p:?}"
                    );
                    assert!(p.largest > 0 || p.elements == 0 || p.count > 0);
                    if *enc == Encoding::Listpacks {
                        assert_eq!(p.stream_nodes.len() as u64, p.count);
                        assert!(p.stream_nodes.windows(2).all(|w| w[0] < w[1]));
                    } else {
                        assert!(p.stream_nodes.is_empty());
                    }
                    checked += 1;
                }
                // an empty stream has no listpack
                None => assert!(!blobs || *enc == Encoding::Listpacks, "{key:?} ({enc:?})"),
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} packed keys in the bundled files"
    );
}
