//! Big keys chunk by chunk: a value decoded in tiny chunks and written with `ValueWriter` (to a
//! file with `Encoder::key_spooled`, and as a `DUMP` payload with `dump_payload_spooled`) reads
//! back as the value written whole.

use bytes::Bytes;
use proptest::prelude::*;
use rdb_format::{
    EncodeConfig, Encoder, Item, KeyHead, KeyRecord, Value, ValueWriter, decode_dump,
    dump_payload_len, dump_payload_spooled,
};

use crate::encode::{VERSIONS, normal, ttl_hash, value};

/// Decodes `file` with `config` into whole values.
fn values(file: &[u8]) -> Vec<Value> {
    let mut dc = rdb_format::Config::default();
    dc.chunk_threshold(usize::MAX).string_piece(u64::MAX);
    rdb_format::BytesReader::with_config(Bytes::copy_from_slice(file), dc)
        .filter_map(|i| match i.unwrap() {
            Item::Key(k) => Some(k.value),
            _ => None,
        })
        .collect()
}

/// `v` written whole for `version`, read back in chunks of 2 (strings in pieces of 3) and
/// written again chunk by chunk: the new file and the payloads of its big keys.
fn rewrite(v: &Value, version: u32, compress: bool) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut cfg = EncodeConfig::new(version).unwrap();
    cfg.compress(compress);
    let mut enc = Encoder::new(Vec::new(), cfg).unwrap();
    let mut rec = KeyRecord::new(0, "k".into(), v.clone());
    rec.head.expire_ms = Some(1_900_000_000_000);
    enc.key(&rec).ok()?;
    let file = enc.finish().unwrap();

    let mut dc = rdb_format::Config::default();
    dc.chunk_threshold(1).chunk_size(2).string_piece(3);
    let mut out = Encoder::new(Vec::new(), cfg).unwrap();
    let mut payloads = Vec::new();
    let mut big: Option<(KeyHead, ValueWriter, Vec<u8>)> = None;
    for item in rdb_format::BytesReader::with_config(Bytes::from(file), dc) {
        match item.unwrap() {
            Item::KeyStart(h) => {
                let w = ValueWriter::new(&h, &cfg).unwrap();
                big = Some((h, w, Vec::new()));
            }
            Item::Chunk(c) => {
                let (_, w, body) = big.as_mut().expect("a chunk after its start");
                w.chunk(&c, body).unwrap();
            }
            Item::KeyEnd => {
                let (h, w, mut body) = big.take().expect("an end after its start");
                let vh = w.finish(&mut body).unwrap();
                out.key_spooled(&h, &vh, &mut &body[..]).unwrap();
                let len = dump_payload_len(&h.key_meta, &vh, body.len() as u64, &cfg).unwrap();
                let mut p = Vec::new();
                let (n, _) =
                    dump_payload_spooled(&h.key_meta, &vh, &mut &body[..], &cfg, &mut p).unwrap();
                assert_eq!((n, p.len() as u64), (len, len));
                payloads.push(p);
            }
            other => out.item(&other).unwrap(),
        }
    }
    Some((out.finish().unwrap(), payloads))
}

fn check(v: &Value, version: u32, compress: bool) -> Result<(), TestCaseError> {
    let Some((file, payloads)) = rewrite(v, version, compress) else {
        return Ok(()); // a value this version cannot hold
    };
    let back = values(&file);
    prop_assert_eq!(back.len(), 1);
    prop_assert_eq!(
        normal(&back[0], version),
        normal(v, version),
        "version {}",
        version
    );
    for p in payloads {
        let d = decode_dump(&p).unwrap();
        prop_assert_eq!(normal(&d.value, version), normal(v, version));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn chunked_values_round_trip_through_every_version(v in value(), compress in any::<bool>()) {
        for version in VERSIONS {
            check(&v, version, compress)?;
        }
    }

    #[test]
    fn chunked_hashes_keep_their_field_ttls(v in ttl_hash()) {
        for version in [12, 13, 14, 80] {
            check(&v, version, true)?;
        }
    }
}

#[test]
fn a_chunk_of_another_type_is_refused() {
    let rec = KeyRecord::new(0, "k".into(), Value::List(vec!["a".into()]));
    let cfg = EncodeConfig::new(11).unwrap();
    let mut w = ValueWriter::new(&rec.head, &cfg).unwrap();
    let err = w
        .chunk(&rdb_format::Chunk::Set(vec!["a".into()]), &mut Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("another type"), "{err}");
    // and a list that got no element is no key
    let w = ValueWriter::new(&rec.head, &cfg).unwrap();
    assert!(w.finish(&mut Vec::new()).is_err());
}
