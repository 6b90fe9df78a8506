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

/// Reads at most a few bytes at a time: the decoder sees its input come in odd pieces.
struct Dribble<'a>(&'a [u8], usize);

impl std::io::Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// What `file`'s items are, strings in pieces of `piece` bytes, read whole or a few bytes at
/// a time: each string key's encoding, its pieces' sizes and its bytes; or the first error's
/// kind and offset.
fn strings(file: &[u8], piece: u64, dribble: Option<usize>) -> Result<Vec<String>, String> {
    let mut dc = rdb_format::Config::default();
    dc.string_piece(piece);
    let items: Box<dyn Iterator<Item = rdb_format::Result<Item>>> = match dribble {
        Some(n) => Box::new(rdb_format::Reader::with_config(Dribble(file, n), dc)),
        None => Box::new(rdb_format::BytesReader::with_config(
            Bytes::copy_from_slice(file),
            dc,
        )),
    };
    let mut out = Vec::new();
    let mut text = Vec::new();
    let mut sizes = Vec::new();
    for i in items {
        match i.map_err(|e| format!("{:?} at {}", e.kind(), e.offset()))? {
            Item::Key(k) => match k.value {
                Value::String(s) => out.push(format!("{:?} whole {:?}", k.head.encoding, s)),
                v => out.push(format!("{v:?}")),
            },
            Item::KeyStart(h) => out.push(format!("{:?} in pieces", h.encoding)),
            Item::Chunk(rdb_format::Chunk::String(s)) => {
                sizes.push(s.len());
                text.extend_from_slice(&s);
            }
            Item::KeyEnd => {
                out.push(format!(
                    "{sizes:?} {:?}",
                    Bytes::from(std::mem::take(&mut text))
                ));
                sizes.clear();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// An LZF-compressed string longer than a piece comes in pieces, as a raw one does, each of
/// exactly the piece's size but the last, whatever way the input comes: its bytes are those
/// decompressing it whole gives. Damaged, it fails where and as decompressing it whole fails.
#[test]
fn lzf_strings_longer_than_a_piece_come_in_pieces() {
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{} ", i % 1013).into_bytes())
        .collect();
    let mut enc = Encoder::new(Vec::new(), EncodeConfig::new(11).unwrap()).unwrap();
    enc.key(&KeyRecord::new(
        0,
        "big".into(),
        Value::String(text.clone().into()),
    ))
    .unwrap();
    enc.key(&KeyRecord::new(
        0,
        "small".into(),
        Value::String("x".repeat(90).into()),
    ))
    .unwrap();
    let file = enc.finish().unwrap();
    let whole = strings(&file, u64::MAX, None).unwrap();
    assert!(whole[0].starts_with("Lzf whole"), "{}", &whole[0][..20]);
    assert!(file.len() < text.len() / 2);
    for piece in [1000, 65_536, text.len() as u64 - 1] {
        let n = piece as usize;
        let mut sizes = vec![n; text.len() / n];
        if text.len() % n > 0 {
            sizes.push(text.len() % n);
        }
        let want = vec![
            "Lzf in pieces".to_string(),
            format!("{sizes:?} {:?}", Bytes::from(text.clone())),
            whole[1].clone(),
        ];
        for dribble in [None, Some(1), Some(777)] {
            let got = strings(&file, piece, dribble).unwrap();
            assert!(got == want, "pieces of {piece}, read {dribble:?} at a time");
        }
    }
    // damaged anywhere in its compressed bytes, which start at byte 27 (a damaged length
    // fails too, but where the input ends or where the bytes stop making sense, as it goes)
    let mut failed = 0;
    for at in (40..file.len() - 120).step_by(997) {
        let mut bad = file.clone();
        bad[at] ^= 0x5a;
        let whole = strings(&bad, u64::MAX, None).map(|w| w[0].clone());
        let got = strings(&bad, 65_536, Some(4096)).map(|w| w[1].clone());
        match (&whole, &got) {
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "damaged at {at}");
                failed += 1;
            }
            (Ok(w), Ok(g)) => assert_eq!(
                w.split_once(" whole ").map(|x| x.1),
                g.split_once("] ").map(|x| x.1),
                "damaged at {at}"
            ),
            _ => panic!("damaged at {at}: {whole:?} against {got:?}"),
        }
    }
    assert!(failed > 10, "{failed}");
}
