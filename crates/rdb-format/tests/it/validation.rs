//! Validation as deep as Redis' own (`sanitize-dump-payload yes`): every one-key file of
//! `testdata/differential/` gets the verdict Redis 7.0 gives, with an error that names the
//! damage and its offset; duplicates in every encoding; `lenient`; errors inside LZF blobs.

use std::path::PathBuf;

use bytes::Bytes;
use rdb_format::{BytesReader, Config, ErrorKind, Item, Value};
use test_support::rdb::{eof_unchecked, len, string};

fn read(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/differential")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn decode(data: &[u8], config: Config) -> Result<Vec<Item>, rdb_format::Error> {
    BytesReader::with_config(Bytes::copy_from_slice(data), config).collect()
}

fn checked() -> Config {
    let mut c = Config::default();
    c.skip_values(true);
    c
}

/// (file, the damage the error must name, offset) for every file Redis refuses.
const REFUSED: [(&str, &str, u64); 13] = [
    (
        "min-hash-listpack-numele.rdb",
        "header says 3 elements, the listpack holds 2",
        19,
    ),
    ("min-list-listpack-backlen.rdb", "back-length", 25),
    (
        "min-hash-ziplist-zllen.rdb",
        "zllen is 7, the ziplist holds 2 entries",
        23,
    ),
    (
        "min-list-ziplist-prevlen.rdb",
        "says the entry before it is 9 bytes, it is 3",
        29,
    ),
    (
        "min-list-ziplist-zltail.rdb",
        "zltail is 10, the last entry is at 13",
        20,
    ),
    ("min-intset-unsorted.rdb", "not ascending", 25),
    ("min-intset-duplicate.rdb", "member 1 twice", 25),
    ("min-set-duplicate.rdb", "duplicate member \"a\"", 18),
    ("min-hash-duplicate.rdb", "duplicate field \"f\"", 20),
    ("min-zset-nan.rdb", "NaN score", 16),
    (
        "min-zipmap-count.rdb",
        "count byte says 5 pairs, the zipmap holds 1",
        15,
    ),
    ("min-key-escape-sequence.rdb", "input ended", 26),
    // stricter than Redis by default (lenient reads them, below)
    (
        "min-zset-textscore-suffix.rdb",
        "\"1.5x\" is not a number",
        17,
    ),
];

#[test]
fn redis_refuses_and_so_do_we() {
    for (file, why, offset) in REFUSED {
        let data = read(file);
        for config in [Config::default(), checked()] {
            let e = decode(&data, config).unwrap_err();
            assert!(e.to_string().contains(why), "{file}: {e}");
            assert_eq!(e.offset(), offset, "{file}: {e}");
            assert!(e.offset() < data.len() as u64);
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Corrupt { .. } | ErrorKind::Truncated { .. }
                ),
                "{file}: {e}"
            );
        }
    }
    // the key with an escape sequence is shown escaped
    let e = decode(&read("min-key-escape-sequence.rdb"), Config::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(r#"key "\x1b[31mRED\x1b[0m\x07""#), "{msg}");
    assert!(!msg.bytes().any(|b| b < 0x20), "{msg:?}");
}

#[test]
fn what_redis_loads_we_read_or_read_when_lenient() {
    // a negative expiry is a key already expired, reported as such
    let items = decode(&read("min-expire-negative.rdb"), Config::default()).unwrap();
    let Some(Item::Key(k)) = items.iter().find(|i| matches!(i, Item::Key(_))) else {
        panic!()
    };
    assert_eq!(k.head.expire_ms, Some(0x8e00_0000_0000_0000_u64 as i64));
    assert!(k.head.expire_ms.unwrap() < 0);
    // db 16 is a server setting, not damage (not counted by design)
    decode(&read("min-selectdb-16.rdb"), Config::default()).unwrap();
    // what Redis reads and we refuse unless lenient
    let mut lenient = Config::default();
    lenient.lenient(true);
    let e = decode(&read("min-count-special-encoding.rdb"), Config::default()).unwrap_err();
    assert!(e.to_string().contains("byte 0xc1"), "{e}");
    assert_eq!(e.offset(), 14);
    for (file, want) in [
        (
            "min-zset-textscore-suffix.rdb",
            Value::SortedSet(vec![("m".into(), 1.5)]),
        ),
        (
            "min-count-special-encoding.rdb",
            Value::Set(vec!["a".into()]),
        ),
    ] {
        let items = decode(&read(file), lenient).unwrap();
        let Some(Item::Key(k)) = items.iter().find(|i| matches!(i, Item::Key(_))) else {
            panic!("{file}")
        };
        assert_eq!(k.value, want, "{file}");
    }
}

fn one_key(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut f = b"REDIS0011".to_vec();
    f.push(ty);
    string(b"k", &mut f);
    f.extend_from_slice(body);
    eof_unchecked(&mut f);
    f
}

/// A listpack of strings (test-sized: entries under 64 bytes).
fn listpack(items: &[&[u8]]) -> Vec<u8> {
    let mut b = vec![0; 6];
    for it in items {
        b.push(0x80 | it.len() as u8);
        b.extend_from_slice(it);
        b.push(it.len() as u8 + 1);
    }
    b.push(0xFF);
    let n = b.len() as u32;
    b[..4].copy_from_slice(&n.to_le_bytes());
    b[4..6].copy_from_slice(&(items.len() as u16).to_le_bytes());
    b
}

#[test]
fn duplicates_in_every_encoding() {
    let blob = |items: &[&[u8]]| {
        let mut v = Vec::new();
        string(&listpack(items), &mut v);
        v
    };
    // set listpack (20), hash listpack (16), zset listpack (17): the integer 1 and the text
    // "1" are the same member
    for (ty, items, what) in [
        (
            20u8,
            &[&b"a"[..], b"b", b"a"][..],
            "set: duplicate member \"a\"",
        ),
        (16, &[b"f", b"1", b"f", b"2"], "hash: duplicate field \"f\""),
        (
            17,
            &[b"m", b"1", b"m", b"2"],
            "sorted set: duplicate member \"m\"",
        ),
    ] {
        let f = one_key(ty, &blob(items));
        for c in [Config::default(), checked()] {
            let e = decode(&f, c).unwrap_err();
            assert!(e.to_string().contains(what), "{ty}: {e}");
        }
    }
    // an integer-encoded member equals its text
    let mut set = Vec::new();
    len(2, &mut set);
    set.extend_from_slice(&[0xC0, 7]);
    string(b"7", &mut set);
    let e = decode(&one_key(2, &set), Config::default()).unwrap_err();
    assert!(e.to_string().contains("duplicate member \"7\""), "{e}");
}

/// A packed set or hash of every size around the bound of the small table that finds its
/// duplicates (64 members: a table on the stack below, sorting above) finds a duplicate
/// wherever it lies, and finds none in members that differ, integers among them.
#[test]
fn packed_duplicates_are_found_at_every_size() {
    let blob = |items: &[Vec<u8>]| {
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        let mut v = Vec::new();
        string(&listpack(&refs), &mut v);
        v
    };
    for n in [2, 3, 20, 31, 32, 33, 63, 64, 65, 66, 127, 128, 129, 300] {
        let members: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    i.to_string().into_bytes()
                } else {
                    format!("member:{i}").into_bytes()
                }
            })
            .collect();
        for c in [Config::default(), checked()] {
            decode(&one_key(20, &blob(&members)), c)
                .unwrap_or_else(|e| panic!("{n} distinct members: {e}"));
        }
        // the last member again, in place of the first, the middle one and the one before it
        for at in [0, (n - 1) / 2, n - 2] {
            let mut set = members.clone();
            set[at] = members[n - 1].clone();
            let e = decode(&one_key(20, &blob(&set)), Config::default())
                .expect_err(&format!("{n} members, {at} twice"));
            assert!(
                e.to_string().contains(&format!(
                    "duplicate member \"{}\"",
                    String::from_utf8_lossy(&members[n - 1])
                )),
                "{n} members, {at} twice: {e}"
            );
            // a hash: fields and values, the values all equal
            let fields: Vec<Vec<u8>> = set
                .iter()
                .flat_map(|m| [m.clone(), b"v".to_vec()])
                .collect();
            let e = decode(&one_key(16, &blob(&fields)), checked())
                .expect_err(&format!("hash of {n} fields, {at} twice"));
            assert!(e.to_string().contains("duplicate field"), "{n}: {e}");
        }
    }
}

#[test]
fn big_collections_are_checked_within_the_limit() {
    // a hashtable set: a b c d e a — `a` is remembered, so found past the limit
    let set = |members: &[&[u8]]| {
        let mut v = Vec::new();
        len(members.len() as u64, &mut v);
        for m in members {
            string(m, &mut v);
        }
        one_key(2, &v)
    };
    let mut limited = Config::default();
    limited.dup_check_limit(4);
    let f = set(&[b"a", b"b", b"c", b"d", b"e", b"a"]);
    let e = decode(&f, limited).unwrap_err();
    assert!(e.to_string().contains("duplicate member \"a\""), "{e}");
    // `e` came after the limit: not remembered, the check is partial and says so, whether
    // the values are built or only checked
    let f = set(&[b"a", b"b", b"c", b"d", b"e", b"e"]);
    let mut limited_check = limited;
    limited_check.skip_values(true);
    for c in [limited, limited_check] {
        let mut dec = rdb_format::Decoder::with_config(c);
        let mut buf = Bytes::from(f.clone());
        while dec.decode_eof(&mut buf).unwrap().is_some() {}
        assert_eq!(dec.partial_checks(), 1);
    }
    // a duplicate met just as the check goes partial is found, and counted once
    let f = set(&[b"a", b"b", b"c", b"d", b"a"]);
    for c in [limited, limited_check] {
        let mut dec = rdb_format::Decoder::with_config(c);
        let mut buf = Bytes::from(f.clone());
        let e = loop {
            match dec.decode_eof(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the duplicate was not found"),
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("duplicate member \"a\""), "{e}");
        assert_eq!(dec.partial_checks(), 1);
    }
    // with the default limit it is found
    assert!(decode(&f, Config::default()).is_err());
    let mut ok = rdb_format::Decoder::new();
    let mut buf = Bytes::from(set(&[b"a", b"b"]));
    while ok.decode_eof(&mut buf).unwrap().is_some() {}
    assert_eq!(ok.partial_checks(), 0);
}

/// A set's body of `n` members, `member:{i}` unless `special` writes the `i`-th itself (and
/// says so); and where the special ones start, in order.
fn set_body(n: u64, mut special: impl FnMut(u64, &mut Vec<u8>) -> bool) -> (Vec<u8>, Vec<usize>) {
    let mut v = Vec::new();
    len(n, &mut v);
    let mut offsets = Vec::new();
    for i in 0..n {
        let at = v.len();
        if special(i, &mut v) {
            offsets.push(at);
        } else {
            string(format!("member:{i}").as_bytes(), &mut v);
        }
    }
    (v, offsets)
}

#[test]
fn a_big_collection_with_a_duplicate_is_skipped_and_the_keys_after_it_are_not() {
    // a set and a hash of 3,000 members (read a step at a time, not whole), each with a
    // duplicate, then a good key: with `Recovery::Skip` the two are skipped, with the same
    // error whether values are built or only checked, and the key after them comes whole
    let n = 3_000u64;
    let (set, _) = set_body(n, |i, v| {
        let special = i == 2_500;
        if special {
            string(b"member:7", v);
        }
        special
    });
    let mut hash = Vec::new();
    len(n, &mut hash);
    for i in 0..n {
        let field = if i == 1_200 { 3 } else { i };
        string(format!("field:{field}").as_bytes(), &mut hash);
        string(format!("value:{i}").as_bytes(), &mut hash);
    }
    let mut f = b"REDIS0011".to_vec();
    for (ty, key, body) in [(2u8, &b"set"[..], &set), (4, b"hash", &hash)] {
        f.push(ty);
        string(key, &mut f);
        f.extend_from_slice(body);
    }
    f.push(0);
    string(b"after", &mut f);
    string(b"value", &mut f);
    eof_unchecked(&mut f);
    let mut seen = Vec::new();
    for mut c in [Config::default(), checked()] {
        c.recovery(rdb_format::Recovery::Skip);
        let items = decode(&f, c).unwrap();
        let skipped: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                Item::Skipped { key, error } => {
                    Some(format!("{key:?} {error} at {}", error.offset()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped[0].contains("duplicate member \"member:7\""),
            "{skipped:?}"
        );
        assert!(
            skipped[1].contains("duplicate field \"field:3\""),
            "{skipped:?}"
        );
        let after = items.iter().any(|i| match i {
            Item::Key(k) => &k.head.key[..] == b"after",
            Item::KeyChecked(h) => &h.key[..] == b"after",
            _ => false,
        });
        assert!(after, "the key after them");
        seen.push(skipped);
    }
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn a_big_collections_duplicate_is_found_in_the_big_table() {
    // 300,000 members: past the first table, into the one sized for all of them; the
    // duplicate of a member from before the move, and one from after it
    let n = 300_000u64;
    for (again, at) in [(17u64, 299_999u64), (250_000, 299_999), (5, 150_000)] {
        let (v, offsets) = set_body(n, |i, v| {
            let special = i == at;
            if special {
                string(format!("member:{again}").as_bytes(), v);
            }
            special
        });
        let offset = offsets[0];
        let f = one_key(2, &v);
        // the value starts after the header (9 bytes), the type and the key "k"
        let value_at = 12;
        for c in [Config::default(), checked()] {
            let e = decode(&f, c).unwrap_err();
            let want = format!("duplicate member \"member:{again}\"");
            assert!(e.to_string().contains(&want), "{again}: {e}");
            // the error points at the member's bytes, after its one-byte length
            assert_eq!(e.offset(), (value_at + offset + 1) as u64, "{again}: {e}");
        }
    }
    // no duplicate: no error, and the check is whole
    let mut v = Vec::new();
    len(n, &mut v);
    for i in 0..n {
        string(format!("member:{i}").as_bytes(), &mut v);
    }
    let mut dec = rdb_format::Decoder::new();
    let mut buf = Bytes::from(one_key(2, &v));
    while dec.decode_eof(&mut buf).unwrap().is_some() {}
    assert_eq!(dec.partial_checks(), 0);
}

#[test]
fn in_a_big_collection_the_first_of_a_duplicate_and_a_bad_lzf_member_is_reported() {
    // 20,000 members: a table loaded ahead, whose members are hashed a batch at a time before
    // their turn; a duplicate and a member whose LZF does not decompress, three apart, in
    // either order
    let n = 20_000u64;
    let bad_lzf = |v: &mut Vec<u8>| {
        // 0xC3: LZF, 2 bytes that say "a literal run of 2" but hold 1, for 10 bytes
        v.push(0xC3);
        len(2, v);
        len(10, v);
        v.extend_from_slice(&[0x01, b'a']);
    };
    for (dup_at, lzf_at) in [(10_000u64, 10_003u64), (10_003, 10_000)] {
        let (v, offsets) = set_body(n, |i, v| {
            if i == dup_at {
                string(b"member:17", v);
            } else if i == lzf_at {
                bad_lzf(v);
            }
            i == dup_at || i == lzf_at
        });
        // the offsets of the two, in file order
        let (dup_offset, lzf_offset) = if dup_at < lzf_at {
            (offsets[0], offsets[1])
        } else {
            (offsets[1], offsets[0])
        };
        let f = one_key(2, &v);
        let value_at = 12;
        for c in [Config::default(), checked()] {
            let e = decode(&f, c).unwrap_err();
            if dup_at < lzf_at {
                assert!(
                    e.to_string().contains("duplicate member \"member:17\""),
                    "{e}"
                );
                assert_eq!(e.offset(), (value_at + dup_offset + 1) as u64, "{e}");
            } else {
                assert!(matches!(e.kind(), ErrorKind::Lzf { expected: 10 }), "{e}");
                // at the compressed bytes, after the encoding byte and the two lengths
                assert_eq!(e.offset(), (value_at + lzf_offset + 3) as u64, "{e}");
            }
        }
    }
}

#[test]
fn errors_inside_lzf_blobs_point_at_the_blob() {
    // a listpack whose count lies, long enough to be LZF-compressed
    let mut lp = listpack(&[&[b'x'; 40], &[b'y'; 40]]);
    lp[4] = 3;
    // LZF-compress it with the encoder's own compressor, through a string value
    let mut enc =
        rdb_format::Encoder::new(Vec::new(), rdb_format::EncodeConfig::new(11).unwrap()).unwrap();
    enc.key(&rdb_format::KeyRecord::new(
        0,
        "s".into(),
        Value::String(Bytes::from(lp.clone())),
    ))
    .unwrap();
    let file = enc.finish().unwrap();
    // turn the string key into a set listpack (type 20) holding the same compressed bytes
    // magic, SELECTDB 0, then the type byte, the key "s" and the value
    let ty_at = 11;
    let mut f = file.clone();
    assert_eq!(&f[ty_at..ty_at + 3], b"\x00\x01s");
    f[ty_at] = 20;
    assert_eq!(f[ty_at + 3], 0xC3, "the blob was LZF-compressed");
    let mut c = Config::default();
    c.verify_checksum(false);
    // built or only checked (then decompressed into a buffer kept for the next blob), the
    // same error at the same place
    let mut only_checked = c;
    only_checked.skip_values(true);
    let e = decode(&f, c).unwrap_err();
    assert!(e.to_string().contains("of the decompressed blob"), "{e}");
    // the compressed bytes start after the 0xC3 marker and two lengths
    assert!(
        (ty_at + 5..ty_at + 10).contains(&(e.offset() as usize)),
        "{e}"
    );
    assert!(e.offset() < f.len() as u64);
    let checked = decode(&f, only_checked).unwrap_err();
    assert_eq!(checked.to_string(), e.to_string());
    assert_eq!(checked.offset(), e.offset());
    // a blob that does not decompress to the length it announces: the LZF error, at its
    // compressed bytes, naming the key, either way
    let mut short = f.clone();
    // after the marker: the compressed length (one byte), the decompressed one (two: 91
    // bytes, 0x40 0x5b), the compressed bytes
    assert_eq!(&short[ty_at + 5..ty_at + 7], [0x40, 91]);
    short[ty_at + 6] += 1;
    for config in [c, only_checked] {
        let e = decode(&short, config).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Lzf { expected: 92 }), "{e}");
        assert_eq!(e.offset(), (ty_at + 7) as u64, "{e}");
        assert!(e.to_string().contains("key \"s\""), "{e}");
    }
}

/// Decodes `data` fed one byte at a time, so that no collection is ever whole in the input:
/// its items, or the first error.
fn split_decode(data: &[u8], config: Config) -> Result<Vec<Item>, rdb_format::Error> {
    let mut dec = rdb_format::Decoder::with_config(config);
    let mut buf = bytes::BytesMut::new();
    let mut items = Vec::new();
    for b in data {
        buf.extend_from_slice(std::slice::from_ref(b));
        while let Some(item) = dec.decode(&mut buf)? {
            items.push(item);
        }
    }
    while let Some(item) = dec.decode_eof(&mut buf)? {
        items.push(item);
    }
    Ok(items)
}

/// An RDB string of LZF data that decompresses to `text` (one literal run, `text` under 33
/// bytes); `says` is the length it claims decompressed (`text.len()` for valid data).
fn lzf_string(text: &[u8], says: usize, out: &mut Vec<u8>) {
    out.push(0xC3);
    len(text.len() as u64 + 1, out);
    len(says as u64, out);
    out.push(text.len() as u8 - 1);
    out.extend_from_slice(text);
}

/// A ziplist of strings (test-sized: entries under 64 bytes), its header's tail and count as
/// they are, or the count `zllen` says.
fn ziplist(items: &[&[u8]], zllen: u16) -> Vec<u8> {
    let mut b = vec![0; 10];
    let (mut prev, mut tail) = (0u8, 10u32);
    for it in items {
        tail = b.len() as u32;
        let at = b.len();
        b.push(prev);
        b.push(it.len() as u8);
        b.extend_from_slice(it);
        prev = (b.len() - at) as u8;
    }
    b.push(0xFF);
    let n = b.len() as u32;
    b[..4].copy_from_slice(&n.to_le_bytes());
    b[4..8].copy_from_slice(&tail.to_le_bytes());
    b[8..10].copy_from_slice(&zllen.to_le_bytes());
    b
}

/// A small list, set, sorted set, hash or quicklist that is all in the input is checked
/// there whole, in the step that reads its key; split into pieces, it is checked step by
/// step. Either way, every value gives the same verdict: the same keys, or the same error
/// at the same offset (and the value built gives that verdict too). The values: good ones,
/// and ones with a duplicate anywhere (raw, an integer and its text, LZF against raw, past
/// the 64 members of the small table, past the 1,024 elements checked whole), a bad LZF
/// member or value, a NaN or non-numeric score, a bad node or container.
#[test]
fn collections_checked_whole_give_what_the_step_by_step_way_gives() {
    // a member as written: raw, an integer, LZF (good or lying about its length)
    #[derive(Clone, Copy)]
    enum M<'a> {
        Raw(&'a [u8]),
        Int(u8),
        Lzf(&'a [u8]),
        BadLzf(&'a [u8]),
    }
    let put = |m: M<'_>, v: &mut Vec<u8>| match m {
        M::Raw(s) => string(s, v),
        M::Int(i) => v.extend_from_slice(&[0xC0, i]),
        M::Lzf(s) => lzf_string(s, s.len(), v),
        M::BadLzf(s) => lzf_string(s, s.len() + 1, v),
    };
    let named: Vec<Vec<u8>> = (0..1100)
        .map(|i| format!("member:{i}").into_bytes())
        .collect();
    let many = |n: usize, dup: Option<(usize, usize)>| -> Vec<M<'_>> {
        let mut ms: Vec<M<'_>> = named[..n].iter().map(|s| M::Raw(s)).collect();
        if let Some((from, to)) = dup {
            ms[to] = ms[from];
        }
        ms
    };
    let lists: Vec<Vec<M<'_>>> = vec![
        vec![M::Raw(b"a"), M::Raw(b"b"), M::Raw(b"c")],
        vec![M::Raw(b"a"), M::Raw(b"b"), M::Raw(b"a")],
        vec![M::Raw(b"a"), M::Raw(b"a")],
        vec![M::Int(7), M::Raw(b"7")],
        vec![M::Raw(b"7"), M::Int(8), M::Int(7)],
        vec![M::Lzf(b"compressed member"), M::Raw(b"x")],
        vec![
            M::Raw(b"compressed member"),
            M::Raw(b"x"),
            M::Lzf(b"compressed member"),
        ],
        vec![M::Raw(b"x"), M::BadLzf(b"a bad one")],
        vec![M::Raw(&[0xFF; 70])],
        vec![M::Raw(b"")],
        many(64, None),
        many(64, Some((0, 63))),
        many(65, Some((3, 64))),
        many(200, Some((150, 199))),
        many(200, None),
        many(1024, Some((5, 1023))),
        many(1025, Some((5, 1024))),
        many(1025, None),
    ];
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, ms) in lists.iter().enumerate() {
        // a list, a set, a hash (each member a field; its value the next member)
        for ty in [1u8, 2, 4] {
            let mut v = Vec::new();
            len(ms.len() as u64, &mut v);
            for (j, &m) in ms.iter().enumerate() {
                put(m, &mut v);
                if ty == 4 {
                    put(ms[(j + 1) % ms.len()], &mut v);
                }
            }
            files.push((format!("type {ty}, members {i}"), one_key(ty, &v)));
        }
        // sorted sets: text scores (type 3) and binary ones (type 5)
        for ty in [3u8, 5] {
            let mut v = Vec::new();
            len(ms.len() as u64, &mut v);
            for (j, &m) in ms.iter().enumerate() {
                put(m, &mut v);
                if ty == 3 {
                    string(format!("{j}.5").as_bytes(), &mut v);
                } else {
                    v.extend_from_slice(&(j as f64 + 0.5).to_le_bytes());
                }
            }
            files.push((format!("type {ty}, members {i}"), one_key(ty, &v)));
        }
    }
    // scores that are not numbers
    for (ty, score) in [
        (3u8, b"\x03nan".to_vec()),
        (3, b"\x03abc".to_vec()),
        (3, b"\x031.5".to_vec()),
        (5, f64::NAN.to_le_bytes().to_vec()),
        (5, 2.5f64.to_le_bytes().to_vec()),
    ] {
        let mut v = Vec::new();
        len(2, &mut v);
        string(b"m", &mut v);
        v.extend_from_slice(&[0x03, b'1', b'.', b'5'][..if ty == 3 { 4 } else { 0 }]);
        if ty == 5 {
            v.extend_from_slice(&1.5f64.to_le_bytes());
        }
        string(b"n", &mut v);
        v.extend_from_slice(&score);
        files.push((format!("type {ty}, score {score:?}"), one_key(ty, &v)));
    }
    // quicklists: listpack nodes (18) plain, packed, LZF-compressed, bad; ziplist nodes (14)
    let good = listpack(&[b"a", b"b", b"c"]);
    // a count that lies, and an entry's back-length that does
    let mut lying = good.clone();
    lying[4] = 9;
    let mut bad_backlen = good.clone();
    bad_backlen[8] = 7;
    // a node: its container, then its blob as written (raw, or LZF claiming `says` bytes)
    let node = |container: u8, blob: &[u8], lzf: Option<usize>| {
        let mut s = vec![container];
        match lzf {
            Some(says) => lzf_string(blob, says, &mut s),
            None => string(blob, &mut s),
        }
        s
    };
    let nodes: Vec<(&str, Vec<u8>)> = vec![
        ("listpack", node(2, &good, None)),
        ("lzf listpack", node(2, &good, Some(good.len()))),
        ("bad lzf listpack", node(2, &good, Some(good.len() + 3))),
        ("lying listpack", node(2, &lying, None)),
        ("lzf lying listpack", node(2, &lying, Some(lying.len()))),
        ("bad back-length", node(2, &bad_backlen, None)),
        ("plain", node(1, b"hello", None)),
        ("container 3", node(3, &good, None)),
        ("integer node", b"\x02\xc0\x07".to_vec()),
    ];
    for (what, node) in &nodes {
        for n in [1, 3] {
            let mut v = Vec::new();
            len(n, &mut v);
            for _ in 0..n {
                v.extend_from_slice(node);
            }
            files.push((format!("quicklist2 {n} x {what}"), one_key(18, &v)));
        }
    }
    for (what, zl) in [
        ("ziplist", ziplist(&[b"a", b"b"], 2)),
        ("lying ziplist", ziplist(&[b"a", b"b"], 5)),
    ] {
        let mut v = Vec::new();
        len(2, &mut v);
        for _ in 0..2 {
            string(&zl, &mut v);
        }
        files.push((format!("quicklist1 {what}"), one_key(14, &v)));
    }
    // a key after each, so that the value is followed by a record
    let (mut good_ones, mut bad_ones) = (0, 0);
    for (what, f) in &files {
        let mut two = f[..f.len() - 9].to_vec();
        two.push(0);
        string(b"after", &mut two);
        string(b"v", &mut two);
        eof_unchecked(&mut two);
        for f in [f, &two] {
            let whole = decode(f, checked());
            let split = split_decode(f, checked());
            let built = decode(f, Config::default());
            match (&whole, &split) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{what}");
                    assert!(built.is_ok(), "{what}: {built:?}");
                    good_ones += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "{what}");
                    assert_eq!(a.offset(), b.offset(), "{what}");
                    let built = built.unwrap_err();
                    assert_eq!(built.offset(), a.offset(), "{what}: {built}");
                    bad_ones += 1;
                }
                _ => panic!("{what}: whole {whole:?}, split {split:?}"),
            }
        }
    }
    // the values that must pass and fail are each many
    assert!(good_ones > 60 && bad_ones > 60, "{good_ones} {bad_ones}");
    // more members than the duplicate check's limit: a partial check, whole or split
    let mut v = Vec::new();
    len(6, &mut v);
    for m in [b"a", b"b", b"c", b"d", b"e", b"f"] {
        string(m, &mut v);
    }
    let f = one_key(2, &v);
    let mut limited = checked();
    limited.dup_check_limit(4);
    let mut dec = rdb_format::Decoder::with_config(limited);
    let mut buf = Bytes::from(f);
    while dec.decode_eof(&mut buf).unwrap().is_some() {}
    assert_eq!(dec.partial_checks(), 1);
}
