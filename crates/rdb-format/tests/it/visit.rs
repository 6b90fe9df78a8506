//! `decode_with`: the string keys handed to the visitor, turned back into items, and the
//! items that still come out are what `decode` gives, in the same order, with the same
//! first error: on every bundled, corpus, differential and newest-format file, whole, fed a
//! few bytes at a time and mapped (where checked keys go to the visitor in runs too), with
//! values built and skipped.

use std::io::Read;
use std::ops::ControlFlow;

use bytes::Bytes;
use rdb_format::{
    BytesReader, Config, Item, KeyHead, MappedFile, MappedReader, PackedRecord, Reader,
    StringRecord, Value, Visitor, crc64,
};

/// Each item as text, up to and including the first error.
pub(crate) fn plain(data: &[u8], config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for item in BytesReader::with_config(Bytes::copy_from_slice(data), *config) {
        match item {
            Ok(i) => out.push(format!("{i:?}")),
            Err(e) => {
                out.push(format!("error: {e}"));
                break;
            }
        }
    }
    out
}

/// A reader that gives at most `n` bytes a call.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// What a visitor is handed, turned back into the items' text: string keys, and checked
/// keys when it `takes` them; with how many of each it was handed.
struct Back<'o> {
    out: &'o mut Vec<String>,
    skip: bool,
    takes: bool,
    /// It takes keys whose value is one packed blob.
    packs: bool,
    strings: usize,
    heads: usize,
    packed: usize,
}

impl Visitor for Back<'_> {
    fn string(&mut self, r: &StringRecord<'_>) -> ControlFlow<()> {
        self.strings += 1;
        self.out.push(format!("{:?}", r.to_item(self.skip)));
        ControlFlow::Continue(())
    }

    fn takes_checked(&self) -> bool {
        self.takes
    }

    fn checked(&mut self, head: &KeyHead) -> ControlFlow<()> {
        assert!(
            self.takes,
            "a checked key handed to a visitor that does not take them"
        );
        self.heads += 1;
        self.out
            .push(format!("{:?}", Item::KeyChecked(head.clone())));
        ControlFlow::Continue(())
    }

    fn takes_packed(&self) -> bool {
        self.packs
    }

    fn packed(&mut self, rec: &PackedRecord<'_>) -> ControlFlow<()> {
        assert!(
            self.packs,
            "a packed key handed to a visitor that does not take them"
        );
        assert!(
            !self.skip,
            "a packed key handed over while values are skipped"
        );
        let n = match rec.to_value() {
            Value::List(v) | Value::Set(v) => v.len(),
            Value::SortedSet(v) => v.len(),
            Value::Hash(v) => v.len(),
            v => panic!("a packed key of {v:?}"),
        };
        assert_eq!(
            (rec.len(), rec.is_empty()),
            (n, n == 0),
            "{:?}",
            rec.head.key
        );
        self.packed += 1;
        self.out.push(format!("{:?}", Item::Key(rec.to_record())));
        ControlFlow::Continue(())
    }
}

/// How [`visited_by`] feeds a file to the decoder.
#[derive(Clone, Copy)]
enum Feed<'m> {
    /// One `Bytes` ([`BytesReader`]).
    Whole,
    /// At most this many bytes a read ([`Reader`]).
    Trickle(usize),
    /// A mapping kept until the process ends, read in windows of this many bytes
    /// ([`MappedReader`]): the decoder borrows keys from it in place, and only then hands
    /// checked keys over in runs, as string keys are.
    Mapped(&'m MappedFile, u64),
}

impl Feed<'_> {
    /// The ways every file is fed: whole, a byte and 4 KiB at a time, and mapped in windows
    /// of 4 KiB and of 2 MiB.
    fn all(map: &MappedFile) -> [Feed<'_>; 5] {
        [
            Feed::Whole,
            Feed::Trickle(1),
            Feed::Trickle(4096),
            Feed::Mapped(map, 4096),
            Feed::Mapped(map, 2 << 20),
        ]
    }
}

impl std::fmt::Debug for Feed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Feed::Whole => write!(f, "whole"),
            Feed::Trickle(n) => write!(f, "trickle {n}"),
            Feed::Mapped(_, w) => write!(f, "mapped in windows of {w}"),
        }
    }
}

/// `data` in a file, mapped, the mapping kept until the process ends.
fn leaked_map(data: &[u8]) -> MappedFile {
    let dir = test_support::temp_dir("visit-mapped");
    let path = dir.join("dump.rdb");
    std::fs::write(&path, data).unwrap();
    let map = MappedFile::open(&path).unwrap().leak();
    std::fs::remove_dir_all(&dir).unwrap();
    map
}

/// The same through `next_item_with`, fed as `feed` says; the visitor takes checked keys
/// when `takes`. Also gives how many string keys and how many checked keys were visited.
fn visited_by(
    data: &[u8],
    config: &Config,
    feed: Feed<'_>,
    takes: bool,
) -> (Vec<String>, usize, usize) {
    let (out, strings, heads, _) = visited_packed_by(data, config, feed, takes, false);
    (out, strings, heads)
}

/// [`visited_by`], the visitor taking keys whose value is one packed blob when `packs`; also
/// gives how many it was handed.
fn visited_packed_by(
    data: &[u8],
    config: &Config,
    feed: Feed<'_>,
    takes: bool,
    packs: bool,
) -> (Vec<String>, usize, usize, usize) {
    let skip = rdb_format::Decoder::with_config(*config).skips_values();
    let mut out = Vec::new();
    let (mut strings, mut heads, mut packed) = (0, 0, 0);
    let mut bytes_reader = BytesReader::with_config(Bytes::copy_from_slice(data), *config);
    let mut reader = Reader::with_config(
        Trickle(data, if let Feed::Trickle(n) = feed { n } else { 0 }),
        *config,
    );
    let mut mapped = match feed {
        Feed::Mapped(map, window) => Some(MappedReader::with_window(map.clone(), *config, window)),
        _ => None,
    };
    loop {
        let mut visit = Back {
            out: &mut out,
            skip,
            takes,
            packs,
            strings: 0,
            heads: 0,
            packed: 0,
        };
        let got = match (&feed, &mut mapped) {
            (Feed::Whole, _) => bytes_reader.next_item_with(&mut visit),
            (_, Some(m)) => m.next_item_with(&mut visit),
            _ => reader.next_item_with(&mut visit),
        };
        strings += visit.strings;
        heads += visit.heads;
        packed += visit.packed;
        match got {
            Ok(Some(i)) => out.push(format!("{i:?}")),
            Ok(None) => break,
            Err(e) => {
                out.push(format!("error: {e}"));
                break;
            }
        }
    }
    (out, strings, heads, packed)
}

/// [`visited_by`] a visitor of string keys only: `whole` reads from one `Bytes`, otherwise
/// `trickle` bytes a read.
fn visited(data: &[u8], config: &Config, whole: bool, trickle: usize) -> (Vec<String>, usize) {
    let feed = if whole {
        Feed::Whole
    } else {
        Feed::Trickle(trickle)
    };
    let (out, strings, _) = visited_by(data, config, feed, false);
    (out, strings)
}

fn configs() -> [Config; 2] {
    let mut skip = Config::default();
    skip.skip_values(true);
    [Config::default(), skip]
}

#[test]
fn every_file_gives_the_same_items() {
    let files = test_support::every_rdb_file("visit");
    assert!(files.len() > 20, "{} files", files.len());
    let mut visits = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        for config in configs() {
            let want = plain(&data, &config);
            for (whole, trickle) in [(true, 0), (false, 1), (false, 7), (false, 4096)] {
                let (got, n) = visited(&data, &config, whole, trickle);
                assert_eq!(
                    got,
                    want,
                    "{} whole {whole} trickle {trickle}",
                    path.display()
                );
                visits += n;
            }
        }
    }
    assert!(visits > 1000, "only {visits} keys were visited");
}

/// A visitor that takes checked keys gets each where its `KeyChecked` item would have come,
/// and one that takes packed keys gets each, its elements borrowed, where its `Key` item would
/// have come (what it was handed, built, is that item): with the string keys and the items,
/// it is what `decode` gives, up to the same first error, on every file, whole, a few bytes at
/// a time and mapped. A visitor that does not take them is never handed one (its `checked`
/// and `packed` assert so), with values built or skipped.
#[test]
fn every_file_gives_the_same_items_to_a_visitor_of_checked_and_packed_keys() {
    let files = test_support::every_rdb_file("visit-checked");
    let (mut strings, mut heads, mut mapped_heads) = (0, 0, 0);
    let (mut packed, mut ttls) = (0, 0);
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let map = MappedFile::open(path).unwrap().leak();
        for config in configs() {
            let want = plain(&data, &config);
            for feed in Feed::all(&map) {
                for (takes, packs) in [(true, false), (false, false), (true, true), (false, true)] {
                    let (got, s, h, p) = visited_packed_by(&data, &config, feed, takes, packs);
                    assert_eq!(
                        got,
                        want,
                        "{} {feed:?} takes {takes} packs {packs}",
                        path.display()
                    );
                    strings += s;
                    heads += h;
                    if let Feed::Mapped(..) = feed {
                        mapped_heads += h;
                    }
                    packed += p;
                    if p > 0 {
                        // (hash fields with TTLs among them)
                        ttls += got.iter().filter(|i| i.contains("expire_ms: Some")).count();
                    }
                }
            }
        }
    }
    assert!(strings > 1000, "only {strings} string keys were visited");
    assert!(heads > 1000, "only {heads} checked keys were visited");
    assert!(
        mapped_heads > 1000,
        "only {mapped_heads} checked keys were visited in runs"
    );
    assert!(packed > 1000, "only {packed} packed keys were visited");
    assert!(
        ttls > 0,
        "no field with a TTL in the files whose packed keys were visited"
    );
}

/// An RDB 11 file: `body` after the header, then EOF and its checksum (`Some(bad)`: wrong).
fn file(body: &[u8], bad: bool) -> Vec<u8> {
    let mut f = b"REDIS0011".to_vec();
    f.extend_from_slice(body);
    f.push(0xFF);
    let sum = crc64(&f) ^ u64::from(bad);
    f.extend_from_slice(&sum.to_le_bytes());
    f
}

/// String keys of every kind the visitor takes (raw, integer, LZF, with expiries, idle
/// times and LFU counters), a set between them, and a big string it leaves to the items.
fn strings_body() -> Vec<u8> {
    let mut b = vec![0xFE, 0x02]; // SELECTDB 2
    for i in 0..300u32 {
        let key = format!("key:{i}");
        if i % 6 == 0 {
            b.push(0xFC);
            b.extend_from_slice(&(1_700_000_000_000u64 + u64::from(i)).to_le_bytes());
        }
        if i % 6 == 1 {
            b.extend_from_slice(&[0xFD]);
            b.extend_from_slice(&(1_700_000_000u32 + i).to_le_bytes());
        }
        if i % 6 == 2 {
            b.extend_from_slice(&[0xF8, 0x05]);
        }
        if i % 6 == 3 {
            b.extend_from_slice(&[0xF9, 0x07]);
        }
        b.push(0);
        b.push(key.len() as u8);
        b.extend_from_slice(key.as_bytes());
        match i % 5 {
            // an integer
            0 => b.extend_from_slice(&[0xC1, 0x39, 0x30]),
            // LZF: a literal run of 4 bytes, then a back reference of 6 bytes at distance 4
            1 => b.extend_from_slice(&[0xC3, 0x07, 0x0A, 0x03, b'a', b'b', b'c', b'd', 0x80, 0x03]),
            // a set of one member in between
            2 => {
                let last = b.len() - key.len() - 2;
                b[last] = 2;
                b.extend_from_slice(&[0x01, 0x01, b'm']);
            }
            _ => {
                b.push(3);
                b.extend_from_slice(b"val");
            }
        }
    }
    // a string longer than a piece: decoded in pieces, as an item
    b.extend_from_slice(&[0x00, 0x03, b'b', b'i', b'g', 0x40, 0x20]);
    b.extend_from_slice(&[b'x'; 32]);
    b.extend_from_slice(&[0x00, 0x04, b'l', b'a', b's', b't', 0xC0, 0x07]);
    b
}

fn small_pieces() -> Config {
    let mut c = Config::default();
    c.string_piece(16);
    c
}

#[test]
fn strings_of_every_kind_are_visited_and_the_checksum_holds() {
    let data = file(&strings_body(), false);
    for mut config in configs() {
        config.string_piece(16);
        let want = plain(&data, &config);
        assert!(want.last().unwrap().starts_with("Eof"), "{want:?}");
        for (whole, trickle) in [(true, 0), (false, 1), (false, 5), (false, 1 << 16)] {
            let (got, n) = visited(&data, &config, whole, trickle);
            assert_eq!(got, want, "whole {whole} trickle {trickle}");
            if whole || trickle > 1000 {
                // all but the 60 sets and the big string
                assert_eq!(n, 241, "whole {whole} trickle {trickle}");
            }
        }
    }
    let bad = file(&strings_body(), true);
    let want = plain(&bad, &small_pieces());
    assert!(want.last().unwrap().contains("checksum"), "{want:?}");
    assert_eq!(visited(&bad, &small_pieces(), true, 0).0, want);
}

#[test]
fn a_damaged_string_is_reported_as_decode_reports_it() {
    let mut body = strings_body();
    // the first LZF value (key:1) claims 11 bytes where 10 come out
    let at = body
        .windows(3)
        .position(|w| w == [0xC3, 0x07, 0x0A])
        .unwrap();
    body[at + 2] = 0x0B;
    let data = file(&body, false);
    for config in configs() {
        let want = plain(&data, &config);
        assert!(want.last().unwrap().starts_with("error"), "{want:?}");
        for (whole, trickle) in [(true, 0), (false, 3)] {
            let (got, n) = visited(&data, &config, whole, trickle);
            assert_eq!(got, want);
            if whole {
                assert_eq!(n, 1, "key:0 is visited, key:1 is the error: {got:?}");
            }
        }
    }
}

#[test]
fn a_visitor_that_breaks_stops_the_call_at_once_and_the_next_call_goes_on() {
    let data = file(&strings_body(), false);
    let config = small_pieces();
    let want = plain(&data, &config);
    for whole in [true, false] {
        let mut bytes_reader = BytesReader::with_config(Bytes::copy_from_slice(&data), config);
        let mut reader = Reader::with_config(Trickle(&data, 1 << 16), config);
        let (mut out, mut n, mut broke, mut late, mut breaks) = (Vec::new(), 0, false, 0, 0);
        loop {
            let mut visit = |r: &StringRecord<'_>| {
                if broke {
                    late += 1;
                }
                n += 1;
                out.push(format!("{:?}", r.to_item(false)));
                broke = n % 7 == 0;
                if broke {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            let got = if whole {
                bytes_reader.next_item_with(&mut visit)
            } else {
                reader.next_item_with(&mut visit)
            };
            match got.unwrap() {
                Some(i) => out.push(format!("{i:?}")),
                None if broke => {
                    broke = false;
                    breaks += 1;
                }
                None => break,
            }
        }
        assert_eq!(out, want, "whole {whole}");
        assert_eq!(late, 0, "keys visited after a break, whole {whole}");
        assert_eq!(breaks, 241 / 7, "whole {whole}");
    }
}

/// Sets of one member, with a damaged sorted set among them: with `Recovery::Skip` its
/// `Skipped` item comes in its place, and the checked keys after it in the same unit come
/// after it, as items or visited, in file order either way.
#[test]
fn checked_keys_after_a_skipped_one_come_after_it() {
    let mut body = vec![0xFE, 0x00];
    for i in 0..50u32 {
        let key = format!("s:{i}");
        if i % 10 == 3 {
            // a sorted set's listpack that does not end in 0xFF
            body.push(17);
            body.push(key.len() as u8);
            body.extend_from_slice(key.as_bytes());
            body.extend_from_slice(&[0x07, 0x07, 0, 0, 0, 0, 0, 0]);
            continue;
        }
        body.push(2);
        body.push(key.len() as u8);
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(&[0x01, 0x01, b'm']);
    }
    let data = file(&body, false);
    let mut config = Config::default();
    config
        .skip_values(true)
        .recovery(rdb_format::Recovery::Skip);
    let want = plain(&data, &config);
    assert_eq!(
        want.iter().filter(|i| i.starts_with("Skipped")).count(),
        5,
        "{want:?}"
    );
    assert!(want.last().unwrap().starts_with("Eof"), "{want:?}");
    let map = leaked_map(&data);
    for feed in Feed::all(&map) {
        let (got, _, heads) = visited_by(&data, &config, feed, true);
        assert_eq!(got, want, "{feed:?}");
        match feed {
            // all in one unit: the sets before the first damaged key are visited, and every
            // key after it in that unit comes as an item
            Feed::Whole => assert_eq!(heads, 3),
            // in runs: each damaged key ends one, and the next begins after its item
            Feed::Mapped(..) => assert_eq!(heads, 45, "{feed:?}"),
            Feed::Trickle(_) => {}
        }
    }
}

/// A visitor of string keys and checked keys that breaks every seventh key it is handed.
struct Breaker {
    out: Vec<String>,
    n: usize,
    broke: bool,
    late: usize,
}

impl Breaker {
    fn handed(&mut self, item: String) -> ControlFlow<()> {
        if self.broke {
            self.late += 1;
        }
        self.n += 1;
        self.out.push(item);
        self.broke = self.n % 7 == 0;
        if self.broke {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Visitor for Breaker {
    fn string(&mut self, r: &StringRecord<'_>) -> ControlFlow<()> {
        self.handed(format!("{:?}", r.to_item(true)))
    }

    fn takes_checked(&self) -> bool {
        true
    }

    fn checked(&mut self, head: &KeyHead) -> ControlFlow<()> {
        self.handed(format!("{:?}", Item::KeyChecked(head.clone())))
    }
}

#[test]
fn a_visitor_that_breaks_on_a_checked_key_stops_the_call_there_and_the_next_call_goes_on() {
    let data = file(&strings_body(), false);
    let mut config = small_pieces();
    config.skip_values(true);
    let want = plain(&data, &config);
    let map = leaked_map(&data);
    for feed in [
        Feed::Whole,
        Feed::Trickle(1 << 16),
        Feed::Mapped(&map, 2 << 20),
    ] {
        let mut bytes_reader = BytesReader::with_config(Bytes::copy_from_slice(&data), config);
        let mut reader = Reader::with_config(Trickle(&data, 1 << 16), config);
        let mut mapped = MappedReader::with_window(map.clone(), config, 2 << 20);
        let mut v = Breaker {
            out: Vec::new(),
            n: 0,
            broke: false,
            late: 0,
        };
        let mut breaks = 0;
        loop {
            let got = match feed {
                Feed::Whole => bytes_reader.next_item_with(&mut v),
                Feed::Mapped(..) => mapped.next_item_with(&mut v),
                Feed::Trickle(_) => reader.next_item_with(&mut v),
            };
            match got.unwrap() {
                Some(i) => v.out.push(format!("{i:?}")),
                None if v.broke => {
                    v.broke = false;
                    breaks += 1;
                }
                None => break,
            }
        }
        assert_eq!(v.out, want, "{feed:?}");
        assert_eq!(v.late, 0, "keys visited after a break, {feed:?}");
        // the 241 small strings and the 60 sets
        assert_eq!(v.n, 301, "{feed:?}");
        assert_eq!(breaks, 301 / 7, "{feed:?}");
    }
}
