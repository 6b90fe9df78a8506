//! The encoder: arbitrary values of every type → encode → decode = the original, for every
//! target version that can hold them; and DUMP payloads the same way.

use bytes::Bytes;
use proptest::prelude::*;
use rdb_format::{
    Consumer, ConsumerGroup, Elem, EncodeConfig, Encoder, HashField, Item, KeyRecord, PendingEntry,
    Stream, StreamEntry, StreamId, StreamMeta, Value, decode_all, decode_dump, dump_payload,
};

pub(crate) const VERSIONS: [u32; 7] = [9, 10, 11, 12, 13, 14, 80];

fn text(e: &Elem) -> Vec<u8> {
    e.to_bytes().to_vec()
}

/// A value in a form that ignores what encodings may change: integer vs text elements, set
/// order, sorted-set order, and stream metadata the version does not carry.
pub(crate) fn normal(v: &Value, version: u32) -> String {
    match v {
        Value::String(s) => format!("S{s:?}"),
        Value::List(l) => format!("L{:?}", l.iter().map(text).collect::<Vec<_>>()),
        Value::Set(s) => {
            let mut m: Vec<_> = s.iter().map(text).collect();
            m.sort();
            format!("T{m:?}")
        }
        Value::SortedSet(z) => {
            let mut m: Vec<_> = z.iter().map(|(e, s)| (text(e), s.to_bits())).collect();
            m.sort();
            format!("Z{m:?}")
        }
        Value::Hash(h) => {
            let mut m: Vec<_> = h
                .iter()
                .map(|f| (text(&f.field), text(&f.value), f.expire_ms))
                .collect();
            m.sort();
            format!("H{m:?}")
        }
        Value::Stream(s) => {
            let entries: Vec<_> = s
                .entries
                .iter()
                .map(|e| {
                    (
                        e.id,
                        e.fields
                            .iter()
                            .map(|(f, v)| (text(f), text(v)))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            let m = &s.meta;
            let level = if version >= 80 { 11 } else { version };
            let groups: Vec<_> = m
                .groups
                .iter()
                .map(|g| {
                    let cons: Vec<_> = g
                        .consumers
                        .iter()
                        .map(|c| {
                            (
                                c.name.clone(),
                                c.seen_time_ms,
                                if level >= 11 { c.active_time_ms } else { None },
                                c.pending.clone(),
                            )
                        })
                        .collect();
                    let pel: Vec<_> = g
                        .pending
                        .iter()
                        .map(|p| {
                            (
                                p.id,
                                p.consumer.clone(),
                                p.delivery_time_ms,
                                p.delivery_count,
                            )
                        })
                        .collect();
                    (
                        g.name.clone(),
                        g.last_id,
                        if level >= 10 { g.entries_read } else { None },
                        pel,
                        cons,
                        // RDB 14 carries a NACK zone for every group, often empty
                        if level >= 14 {
                            g.nacked.clone().unwrap_or_default()
                        } else {
                            Vec::new()
                        },
                    )
                })
                .collect();
            let extra = if level >= 10 {
                Some((m.first_id, m.max_deleted_id, m.entries_added))
            } else {
                None
            };
            // RDB 13+ carries IDMP state for every stream, the defaults when never used
            let idmp = if level >= 13 {
                Some(m.idmp.clone().unwrap_or_default())
            } else {
                None
            };
            format!(
                "X{entries:?} {} {:?} {extra:?} {groups:?} {idmp:?}",
                m.length, m.last_id
            )
        }
        other => format!("{other:?}"),
    }
}

fn elem() -> impl Strategy<Value = Elem> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|v| Elem::Bytes(Bytes::from(v))),
        prop_oneof![
            any::<i64>(),
            -5000i64..5000,
            Just(i64::MIN),
            Just(i64::MAX),
            Just(127),
            Just(128),
            Just(-4096),
            Just(4095),
            Just(4096),
            Just(32767),
            Just(32768),
            Just(8_388_607),
            Just(8_388_608),
            Just(2_147_483_647),
            Just(2_147_483_648),
        ]
        .prop_map(Elem::Int),
        "[0-9]{1,20}".prop_map(|s| Elem::Bytes(Bytes::from(s))),
    ]
}

fn unique_elems(max: usize) -> impl Strategy<Value = Vec<Elem>> {
    proptest::collection::vec(elem(), 0..max).prop_map(|v| {
        let mut seen = std::collections::HashSet::new();
        v.into_iter()
            .filter(|e| seen.insert(e.to_bytes()))
            .collect()
    })
}

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("not NaN", |d| !d.is_nan()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        Just(1.5),
        (-1000i64..1000).prop_map(|i| i as f64),
    ]
}

fn stream() -> impl Strategy<Value = Value> {
    let fields = proptest::collection::vec((elem(), elem()), 1..4);
    (
        proptest::collection::vec(fields, 0..250),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 1..8),
    )
        .prop_map(|(entry_fields, with_group, gname)| {
            let mut entries = Vec::new();
            let mut ms = 1_700_000_000_000u64;
            for (i, f) in entry_fields.into_iter().enumerate() {
                // many entries share their fields, as real streams do
                let f = if i % 3 == 0 {
                    f
                } else {
                    vec![("field".into(), Elem::Int(i as i64))]
                };
                ms += (i % 4) as u64;
                entries.push(StreamEntry {
                    id: StreamId { ms, seq: i as u64 },
                    fields: f,
                });
            }
            let last = entries
                .last()
                .map(|e| e.id)
                .unwrap_or(StreamId { ms: 5, seq: 0 });
            let mut meta = StreamMeta {
                length: entries.len() as u64,
                last_id: last,
                first_id: Some(entries.first().map(|e| e.id).unwrap_or_default()),
                max_deleted_id: Some(StreamId::default()),
                entries_added: Some(entries.len() as u64),
                groups: Vec::new(),
                idmp: None,
            };
            if with_group {
                let pending: Vec<StreamId> = entries.iter().take(3).map(|e| e.id).collect();
                meta.groups.push(ConsumerGroup {
                    name: Bytes::from(gname),
                    last_id: last,
                    entries_read: Some(entries.len() as u64),
                    pending: pending
                        .iter()
                        .map(|&id| PendingEntry {
                            id,
                            consumer: Some("alice".into()),
                            delivery_time_ms: 1_700_000_000_123,
                            delivery_count: 2,
                        })
                        .collect(),
                    consumers: vec![Consumer {
                        name: "alice".into(),
                        seen_time_ms: 1_700_000_000_200,
                        active_time_ms: Some(1_700_000_000_100),
                        pending,
                    }],
                    nacked: None,
                });
            }
            Value::Stream(Box::new(Stream { entries, meta }))
        })
}

pub(crate) fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|v| Value::String(Bytes::from(v))),
        "[0-9]{1,19}".prop_map(|s| Value::String(Bytes::from(s))),
        Just(Value::String(Bytes::from(vec![b'a'; 5000]))),
        proptest::collection::vec(elem(), 1..700).prop_map(Value::List),
        unique_elems(300)
            .prop_filter("non-empty", |v| !v.is_empty())
            .prop_map(Value::Set),
        proptest::collection::vec(-100_000i64..100_000, 1..700).prop_map(|v| {
            let mut s: Vec<i64> = v;
            s.sort_unstable();
            s.dedup();
            Value::Set(s.into_iter().map(Elem::Int).collect())
        }),
        (unique_elems(300), proptest::collection::vec(score(), 300))
            .prop_filter("non-empty", |(m, _)| !m.is_empty())
            .prop_map(|(m, s)| Value::SortedSet(m.into_iter().zip(s).collect())),
        (unique_elems(300), proptest::collection::vec(elem(), 300))
            .prop_filter("non-empty", |(m, _)| !m.is_empty())
            .prop_map(|(f, v)| Value::Hash(
                f.into_iter()
                    .zip(v)
                    .map(|(field, value)| HashField {
                        field,
                        value,
                        expire_ms: None
                    })
                    .collect()
            )),
        stream(),
    ]
}

pub(crate) fn ttl_hash() -> impl Strategy<Value = Value> {
    (
        unique_elems(200),
        proptest::collection::vec(
            proptest::option::of(1_700_000_000_000u64..1_800_000_000_000),
            200,
        ),
    )
        .prop_filter("non-empty", |(m, _)| !m.is_empty())
        .prop_map(|(f, t)| {
            Value::Hash(
                f.into_iter()
                    .zip(t)
                    .map(|(field, expire_ms)| HashField {
                        value: field.clone(),
                        field,
                        expire_ms,
                    })
                    .collect(),
            )
        })
}

fn through_file(v: &Value, version: u32, compress: bool) -> Value {
    let mut cfg = EncodeConfig::new(version).unwrap();
    cfg.compress(compress);
    let mut enc = Encoder::new(Vec::new(), cfg).unwrap();
    let mut rec = KeyRecord::new(3, "k".into(), v.clone());
    rec.head.expire_ms = Some(1_900_000_000_000);
    rec.head.freq = Some(5);
    enc.key(&rec).unwrap();
    let file = enc.finish().unwrap();
    let mut dc = rdb_format::Config::default();
    dc.chunk_threshold(usize::MAX).string_piece(u64::MAX);
    let items: Vec<Item> = rdb_format::BytesReader::with_config(Bytes::from(file.clone()), dc)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("v{version}: our file does not decode: {e}"));
    // and the default decoder (chunks) reads it to the end too
    decode_all(&file).unwrap();
    let Some(Item::Key(k)) = items.iter().find(|i| matches!(i, Item::Key(_))) else {
        panic!("no key")
    };
    assert_eq!(
        (k.head.db, k.head.expire_ms, k.head.freq),
        (3, Some(1_900_000_000_000), Some(5))
    );
    k.value.clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn every_value_round_trips_through_every_version(v in value(), compress in any::<bool>()) {
        for version in VERSIONS {
            let back = through_file(&v, version, compress);
            prop_assert_eq!(normal(&back, version), normal(&v, version), "version {}", version);
            let payload = dump_payload(&v, &EncodeConfig::new(version).unwrap()).unwrap();
            let d = decode_dump(&payload).unwrap();
            prop_assert_eq!(d.version as u32, version);
            prop_assert_eq!(normal(&d.value, version), normal(&v, version));
        }
    }

    #[test]
    fn hash_field_ttls_where_the_version_has_them(v in ttl_hash()) {
        for version in [12, 80] {
            let back = through_file(&v, version, true);
            prop_assert_eq!(normal(&back, version), normal(&v, version));
        }
        if let Value::Hash(h) = &v {
            if h.iter().any(|f| f.expire_ms.is_some()) {
                for version in [9, 10, 11] {
                    let cfg = EncodeConfig::new(version).unwrap();
                    let e = Encoder::new(Vec::new(), cfg).unwrap().key(&KeyRecord::new(0, "h".into(), v.clone())).unwrap_err();
                    prop_assert!(e.to_string().contains("field TTLs"), "{}", e);
                }
            }
        }
    }
}

#[test]
fn big_collections_leave_the_compact_encodings() {
    let big_list = Value::List((0..20_000).map(Elem::Int).collect());
    let big_hash = Value::Hash(
        (0..1000)
            .map(|i| HashField {
                field: Elem::Int(i),
                value: Elem::Bytes(Bytes::from(vec![b'v'; 100])),
                expire_ms: None,
            })
            .collect(),
    );
    let big_zset = Value::SortedSet((0..1000).map(|i| (Elem::Int(i), i as f64 / 3.0)).collect());
    for version in VERSIONS {
        for v in [&big_list, &big_hash, &big_zset] {
            assert_eq!(
                normal(&through_file(v, version, true), version),
                normal(v, version)
            );
        }
    }
}

#[test]
fn what_a_version_cannot_hold_is_an_error() {
    let nan = Value::SortedSet(vec![(Elem::Int(1), f64::NAN)]);
    assert!(
        Encoder::new(Vec::new(), EncodeConfig::new(10).unwrap())
            .unwrap()
            .key(&KeyRecord::new(0, "z".into(), nan))
            .is_err()
    );
    let mut e = Encoder::new(Vec::new(), EncodeConfig::new(9).unwrap()).unwrap();
    assert!(
        e.function(b"#!lua name=x\n")
            .unwrap_err()
            .to_string()
            .contains("functions")
    );
    let dup = Value::Set(vec![Elem::Int(1), Elem::Bytes("1".into())]);
    assert!(e.key(&KeyRecord::new(0, "s".into(), dup)).is_err());
}

#[test]
fn empty_collections_round_trip() {
    let empties = [
        Value::List(Vec::new()),
        Value::Set(Vec::new()),
        Value::SortedSet(Vec::new()),
        Value::Hash(Vec::new()),
        Value::String(Bytes::new()),
        // an empty stream (XADD + XDEL, or MKSTREAM), metadata as RDB 10+ carries it
        Value::Stream(Box::new(Stream {
            entries: Vec::new(),
            meta: StreamMeta {
                first_id: Some(StreamId::default()),
                max_deleted_id: Some(StreamId::default()),
                entries_added: Some(0),
                ..StreamMeta::default()
            },
        })),
    ];
    for version in VERSIONS {
        for v in &empties {
            assert_eq!(
                normal(&through_file(v, version, true), version),
                normal(v, version),
                "v{version} {v:?}"
            );
        }
    }
}
