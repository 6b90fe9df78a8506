//! Truncation, corruption, arbitrary bytes, split input, chunking and lying lengths.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rdb_format::{
    BytesReader, Chunk, Config, Decoder, ErrorKind, HashField, Item, Reader, Recovery,
    decode_partial,
};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in testdata/");
    out
}

/// Decodes `data` fed one byte at a time; `None` when the decoder does not reach the end.
pub(crate) fn byte_by_byte(data: &[u8], config: Config) -> Option<Vec<Item>> {
    let mut dec = Decoder::with_config(config);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for b in data {
        buf.extend_from_slice(std::slice::from_ref(b));
        while let Some(item) = dec.decode(&mut buf).unwrap() {
            items.push(item);
        }
    }
    dec.is_done().then_some(items)
}

fn small_chunks() -> Config {
    let mut c = Config::default();
    c.chunk_threshold(100).chunk_size(64).string_piece(1000);
    c
}

fn decode_with(data: &[u8], config: Config) -> Result<Vec<Item>, rdb_format::Error> {
    BytesReader::with_config(Bytes::copy_from_slice(data), config).collect()
}

#[test]
fn crc64_is_jones() {
    assert_eq!(rdb_format::crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
}

#[test]
fn truncated_fixtures_give_errors_never_panics() {
    for (name, data) in fixtures() {
        let step = (data.len() / 300).max(1);
        let cuts = (0..64.min(data.len())).chain((64..data.len()).step_by(step));
        for cut in cuts {
            let r = decode_with(&data[..cut], Config::default());
            let e = r.expect_err(&format!("{name} cut at {cut} decoded"));
            assert!(
                e.offset() <= cut as u64,
                "{name} cut {cut}: offset {} past the end",
                e.offset()
            );
            // the streaming driver agrees
            let r: Result<Vec<_>, _> = Reader::new(&data[..cut]).collect();
            assert!(r.is_err(), "{name} cut at {cut}: Reader decoded");
        }
    }
}

#[test]
fn flipped_checksum_byte_is_a_checksum_error() {
    for (name, data) in fixtures() {
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let e = decode_with(&bad, Config::default()).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Checksum { .. }),
            "{name}: {e}"
        );
        assert_eq!(e.offset(), n as u64 - 8);
        let mut off = Config::default();
        off.verify_checksum(false);
        decode_with(&bad, off).unwrap();
    }
}

#[test]
fn split_at_every_byte_gives_the_same_items() {
    for (name, data) in fixtures()
        .into_iter()
        .filter(|(n, _)| n.contains("compact"))
    {
        let whole = decode_with(&data, small_chunks()).unwrap();
        let items = byte_by_byte(&data, small_chunks()).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(items, whole, "{name}");
    }
}

use crate::newest::reassemble;

#[test]
fn chunked_values_equal_whole_values() {
    for (name, data) in fixtures() {
        let mut big = Config::default();
        big.chunk_threshold(usize::MAX / 2)
            .string_piece(u64::MAX / 2);
        let whole = reassemble(decode_with(&data, big).unwrap());
        let chunked_items = decode_with(&data, small_chunks()).unwrap();
        assert!(
            chunked_items.iter().any(|i| matches!(i, Item::KeyStart(_))),
            "{name}: nothing was chunked"
        );
        for i in &chunked_items {
            if let Item::Chunk(c) = i {
                assert!(c.len() <= 1000, "{name}: chunk of {}", c.len());
            }
        }
        assert_eq!(reassemble(chunked_items), whole, "{name}");
    }
}

use test_support::rdb::{eof_unchecked, len as len_bytes, string as raw_str};

/// An RDB 9 file with one hash of `n` fields in hashtable encoding, checksum disabled.
fn big_hash_file(n: u64) -> Vec<u8> {
    let mut f = b"REDIS0009".to_vec();
    f.push(4);
    raw_str(b"bighash", &mut f);
    len_bytes(n, &mut f);
    for i in 0..n {
        raw_str(format!("field:{i}").as_bytes(), &mut f);
        raw_str(format!("value:{i}").as_bytes(), &mut f);
    }
    eof_unchecked(&mut f);
    f
}

#[test]
fn huge_hash_comes_out_in_bounded_chunks() {
    let n = 300_000;
    let file = big_hash_file(n);
    let mut fields = 0u64;
    let mut max_chunk = 0;
    let mut starts = 0;
    for item in Reader::new(&file[..]) {
        match item.unwrap() {
            Item::KeyStart(h) => {
                starts += 1;
                assert_eq!(&h.key[..], b"bighash");
            }
            Item::Chunk(Chunk::Hash(v)) => {
                max_chunk = max_chunk.max(v.len());
                if fields == 0 {
                    assert_eq!(
                        v[0],
                        HashField {
                            field: "field:0".into(),
                            value: "value:0".into(),
                            expire_ms: None
                        }
                    );
                }
                fields += v.len() as u64;
            }
            Item::Key(_) => panic!("a {n}-field hash must not come out whole"),
            _ => {}
        }
    }
    assert_eq!(starts, 1);
    assert_eq!(fields, n);
    assert!(max_chunk <= 4096, "chunk of {max_chunk}");
}

#[test]
fn lying_lengths_do_not_allocate() {
    // A key whose string claims 2^60 bytes, and a hash that claims 2^32-1 fields.
    let mut f = b"REDIS0009\x00".to_vec();
    f.push(0x81);
    f.extend_from_slice(&(1u64 << 60).to_be_bytes());
    let e = rdb_format::decode_all(&f).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::TooLarge { .. }), "{e}");
    let mut f = b"REDIS0009\x04\x01k\x80\xff\xff\xff\xff".to_vec();
    f.extend_from_slice(b"\x01a\x01b");
    let e = rdb_format::decode_all(&f).unwrap_err();
    assert!(e.is_truncated(), "{e}");
    // LZF claiming to inflate 3 bytes into 1 GiB
    let mut f = b"REDIS0009\x00\x01k\xc3\x03".to_vec();
    f.push(0x80);
    f.extend_from_slice(&(1u32 << 30).to_be_bytes());
    f.extend_from_slice(b"abc");
    let e = rdb_format::decode_all(&f).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Corrupt { .. } | ErrorKind::TooLarge { .. }
        ),
        "{e}"
    );
}

#[test]
fn skip_recovery_skips_a_damaged_ziplist_and_goes_on() {
    // Damage one listpack/ziplist-encoded value of a fixture inside its blob.
    let (_, data) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "redis-7.0-compact.rdb")
        .unwrap();
    let clean = rdb_format::decode_all(&data).unwrap();
    let key_count = clean.iter().filter(|i| matches!(i, Item::Key(_))).count();
    let pos = data.windows(10).position(|w| w == b"hash:small").unwrap();
    let mut bad = data.clone();
    // the listpack header follows the key: break its total-bytes field
    bad[pos + 10 + 2] ^= 0x7F;
    let mut cfg = Config::default();
    cfg.recovery(Recovery::Skip).verify_checksum(false);
    let (items, err) = decode_partial(bad.clone().into(), cfg);
    assert!(err.is_none(), "{err:?}");
    let skipped: Vec<_> = items
        .iter()
        .filter(|i| matches!(i, Item::Skipped { .. }))
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        items.iter().filter(|i| matches!(i, Item::Key(_))).count(),
        key_count - 1
    );
    // Abort and Partial stop there; Partial hands back what came before.
    let mut cfg = Config::default();
    cfg.recovery(Recovery::Partial).verify_checksum(false);
    let (items, err) = decode_partial(bad.into(), cfg);
    let err = err.expect("damaged value is an error");
    assert!(matches!(err.kind(), ErrorKind::Corrupt { .. }), "{err}");
    assert_eq!(err.context().key.as_deref(), Some(&b"hash:small"[..]));
    assert!(!items.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), v in 1u32..15) {
        let mut f = format!("REDIS{v:04}").into_bytes();
        f.extend_from_slice(&body);
        let _ = rdb_format::decode_all(&f);
        let _ = rdb_format::decode_all(&body);
    }

    #[test]
    fn mutated_fixtures_never_panic(seed in any::<u64>(), flips in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..8)) {
        let fx = fixtures();
        let (_, data) = &fx[(seed % fx.len() as u64) as usize];
        let mut d = data.clone();
        for (at, x) in flips {
            let i = at as usize % d.len();
            d[i] ^= x | 1;
        }
        let mut cfg = Config::default();
        cfg.verify_checksum(false);
        let _ = decode_with(&d, cfg);
        cfg.recovery(Recovery::Skip);
        let _ = decode_with(&d, cfg);
    }

    #[test]
    fn split_points_do_not_matter(split in 1usize..4000) {
        let fx = fixtures();
        let (_, data) = &fx[0];
        let whole = decode_with(data, small_chunks()).unwrap();
        let mut dec = Decoder::with_config(small_chunks());
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for part in data.chunks(split) {
            buf.extend_from_slice(part);
            while let Some(item) = dec.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        prop_assert!(dec.is_done());
        prop_assert_eq!(items, whole);
    }
}

fn heads(items: &[Item]) -> Vec<rdb_format::KeyHead> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Key(k) => Some(k.head.clone()),
            Item::KeyStart(h) | Item::KeyChecked(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn skip_values_checks_the_same_keys_without_building_them() {
    let mut skip = Config::default();
    skip.skip_values(true);
    for (name, data) in fixtures() {
        let full = decode_with(&data, Config::default()).unwrap();
        let checked = decode_with(&data, skip).unwrap();
        assert!(
            checked
                .iter()
                .all(|i| !matches!(i, Item::Key(_) | Item::KeyStart(_) | Item::Chunk(_))),
            "{name}: a value was built"
        );
        assert_eq!(heads(&checked), heads(&full), "{name}");
        // truncation is still an error
        for cut in (0..data.len()).step_by((data.len() / 50).max(1)) {
            assert!(decode_with(&data[..cut], skip).is_err(), "{name} cut {cut}");
        }
    }
    // damage inside a blob is found without building the value
    let (_, data) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "redis-7.0-compact.rdb")
        .unwrap();
    let pos = data.windows(10).position(|w| w == b"hash:small").unwrap();
    let mut bad = data.clone();
    bad[pos + 10 + 2] ^= 0x7F;
    let e = decode_with(&bad, skip).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Corrupt { .. }), "{e}");
}

/// An integer member (an encoding byte and four bytes) has a place of its own: a duplicate
/// one, or one with a NaN score, is reported at its encoding byte, whatever pieces the input
/// came in (it used to be reported where the decoding step began, which depends on them).
#[test]
fn an_integer_members_error_points_at_it_whatever_the_split() {
    // ty 2: a set; ty 5: a sorted set with binary scores
    let file = |ty: u8, bad_at: u32| {
        let mut f = b"REDIS0009\xfe\x00".to_vec();
        f.push(ty);
        f.extend_from_slice(b"\x03big\x80");
        f.extend(100_000u32.to_be_bytes());
        let mut at = 0;
        for i in 0..100_000u32 {
            if i == bad_at {
                at = f.len();
            }
            let m = if i == bad_at && ty == 2 { i - 3 } else { i };
            f.push(0xC2);
            f.extend((m + 1_000_000).to_le_bytes());
            if ty == 5 {
                let score = if i == bad_at { f64::NAN } else { 1.5 };
                f.extend(score.to_le_bytes());
            }
        }
        f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
        (f, at as u64)
    };
    for (ty, bad_at) in [(2, 90_000), (2, 4), (5, 77_777)] {
        let (data, at) = file(ty, bad_at);
        let whole = BytesReader::new(Bytes::from(data.clone()))
            .find_map(Result::err)
            .expect("an error");
        assert_eq!(whole.offset(), at, "{whole}");
        for piece in [1000, 4097, 65_536] {
            let mut r = Reader::new(Pieces(&data, piece));
            let e = r.by_ref().find_map(Result::err).expect("an error");
            assert_eq!(e.to_string(), whole.to_string(), "pieces of {piece}");
        }
    }
}

/// A reader that gives at most `n` bytes a call.
struct Pieces<'a>(&'a [u8], usize);

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Lists, sets and hashes whose members mix the common short strings (read on a fast path of
/// their own) with every other kind, at the edges of that path: 63 and 64 bytes, a long
/// string, integers, an empty string. Whatever the input's pieces, and whether values are
/// built, checked or only walked, every key comes out alike and whole.
#[test]
fn members_of_every_kind_decode_alike_whatever_the_split() {
    let long = |n: usize| vec![b'x'; n];
    // (bytes as written, the member as it reads back)
    let members: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"\x01a".to_vec(), b"a".to_vec()),
        ([&[63u8][..], &long(63)].concat(), long(63)),
        ([&[0x40, 64][..], &long(64)].concat(), long(64)),
        ([&[0x41, 0x2c][..], &long(300)].concat(), long(300)),
        (b"\xc0\x05".to_vec(), b"5".to_vec()),
        (b"\xc1\x39\x30".to_vec(), b"12345".to_vec()),
        (b"\x00".to_vec(), Vec::new()),
        (b"\x02bc".to_vec(), b"bc".to_vec()),
    ];
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    // a list, a set and a hash (each member a field, its value the next member)
    for (ty, key) in [(1u8, &b"list"[..]), (2, b"set"), (4, b"hash")] {
        f.push(ty);
        raw_str(key, &mut f);
        len_bytes(members.len() as u64, &mut f);
        for (i, (written, _)) in members.iter().enumerate() {
            f.extend_from_slice(written);
            if ty == 4 {
                f.extend_from_slice(&members[(i + 1) % members.len()].0);
            }
        }
    }
    eof_unchecked(&mut f);
    let read: Vec<Vec<u8>> = members.iter().map(|(_, r)| r.clone()).collect();
    let bytes = |e: &rdb_format::Elem| e.to_bytes().to_vec();
    let whole = decode_with(&f, Config::default()).unwrap();
    let values: Vec<&rdb_format::Value> = whole
        .iter()
        .filter_map(|i| match i {
            Item::Key(k) => Some(&k.value),
            _ => None,
        })
        .collect();
    assert_eq!(values.len(), 3);
    match values[..] {
        [
            rdb_format::Value::List(l),
            rdb_format::Value::Set(s),
            rdb_format::Value::Hash(h),
        ] => {
            assert_eq!(l.iter().map(bytes).collect::<Vec<_>>(), read);
            assert_eq!(s.iter().map(bytes).collect::<Vec<_>>(), read);
            let fields: Vec<(Vec<u8>, Vec<u8>)> = h
                .iter()
                .map(|f| (bytes(&f.field), bytes(&f.value)))
                .collect();
            let want: Vec<(Vec<u8>, Vec<u8>)> = (0..read.len())
                .map(|i| (read[i].clone(), read[(i + 1) % read.len()].clone()))
                .collect();
            assert_eq!(fields, want);
        }
        _ => panic!("{values:?}"),
    }
    // split anywhere, in small chunks
    assert_eq!(byte_by_byte(&f, Config::default()).unwrap(), whole);
    let chunked = byte_by_byte(&f, small_chunks()).unwrap();
    assert_eq!(reassemble(chunked), reassemble(whole.clone()));
    // checked without being built, whole and split
    let mut skip = Config::default();
    skip.skip_values(true);
    let checked = decode_with(&f, skip).unwrap();
    assert_eq!(heads(&checked), heads(&whole));
    assert_eq!(byte_by_byte(&f, skip).unwrap(), checked);
    // walked: the same record boundaries
    let mut walker = Decoder::walker(Config::default());
    let mut buf = BytesMut::new();
    let mut keys = 0;
    for b in &f {
        buf.extend_from_slice(std::slice::from_ref(b));
        while let Some(item) = walker.decode(&mut buf).unwrap() {
            keys += usize::from(matches!(item, Item::KeyChecked(_) | Item::Skipped { .. }));
        }
    }
    assert!(walker.is_done());
    assert_eq!(keys, 3);
    // a member seen twice is a duplicate, on the fast path too
    let mut dup = b"REDIS0009\xfe\x00\x02\x03set\x03\x01a\x02bc\x01a".to_vec();
    eof_unchecked(&mut dup);
    for config in [Config::default(), skip] {
        let e = decode_with(&dup, config).unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }
}

/// A walker skips runs of whole records at once and gives one item for each run: the last
/// record's head, with its key and type, where the run ends.
#[test]
fn a_walkers_run_ends_with_the_head_of_its_last_record() {
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    let mut last = Vec::new();
    for i in 0..50u32 {
        let key = format!("key:{i}");
        // strings, sets and hashes (read by their lengths), in turn
        let ty = [0u8, 2, 4][i as usize % 3];
        f.push(ty);
        raw_str(key.as_bytes(), &mut f);
        match ty {
            0 => raw_str(b"value", &mut f),
            2 => {
                len_bytes(2, &mut f);
                raw_str(b"a", &mut f);
                f.extend_from_slice(b"\xc0\x07");
            }
            _ => {
                len_bytes(1, &mut f);
                raw_str(b"field", &mut f);
                raw_str(&[b'v'; 100], &mut f);
            }
        }
        last.push((key, ty));
    }
    eof_unchecked(&mut f);
    let mut walker = Decoder::walker(Config::default());
    let mut buf = BytesMut::from(&f[..]);
    let mut heads = Vec::new();
    while let Some(item) = walker.decode(&mut buf).unwrap() {
        if let Item::KeyChecked(h) = item {
            heads.push((String::from_utf8(h.key.to_vec()).unwrap(), h.value_type));
        }
    }
    assert!(walker.is_done());
    // all in the input at once: few items, the last of them the file's last record
    assert!(heads.len() < 10, "{heads:?}");
    let (key, ty) = last.last().unwrap();
    assert_eq!(heads.last().unwrap().0, *key);
    let want = match ty {
        0 => rdb_format::ValueType::String,
        2 => rdb_format::ValueType::Set,
        _ => rdb_format::ValueType::Hash,
    };
    assert_eq!(heads.last().unwrap().1, want);
}
