//! The bodies of the fuzz targets in `fuzz/`. Each takes arbitrary bytes, must not panic, hang
//! or allocate without bound, and checks what it can about the result. `tests/` runs every body
//! over the seeds (`testdata/`, `$RDB_CORPUS_DIR`) and over every saved regression input
//! (`fuzz/regressions/<target>/`), so the targets keep working without `cargo fuzz`.
#![warn(missing_docs)]
#![deny(unsafe_code)]

use bytes::{Bytes, BytesMut};

fn rdb_config() -> rdb_format::Config {
    let mut c = rdb_format::Config::default();
    // small enough that chunked paths run on small inputs
    c.chunk_threshold(64).chunk_size(16).string_piece(256);
    c
}

/// The RDB decoder on a whole file, from a `Bytes` and fed in two pieces through the streaming
/// decoder (the pieces must give the same items), and in check-only mode.
pub fn rdb_file(data: &[u8]) {
    let whole: Vec<_> =
        rdb_format::BytesReader::with_config(Bytes::copy_from_slice(data), rdb_config()).collect();
    // the streaming decoder, split where the first byte says
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) * data.len() / 256);
    let mut dec = rdb_format::Decoder::with_config(rdb_config());
    let mut buf = BytesMut::from(&data[..cut]);
    let mut split = Vec::new();
    let mut fed = false;
    loop {
        let got = if fed {
            dec.decode_eof(&mut buf)
        } else {
            dec.decode(&mut buf)
        };
        match got {
            Ok(Some(i)) => split.push(Ok(i)),
            Ok(None) if fed || dec.is_done() => break,
            Ok(None) => {
                buf.extend_from_slice(&data[cut..]);
                fed = true;
            }
            Err(e) => {
                split.push(Err(e));
                break;
            }
        }
    }
    // a sound file gives the same items however it arrives; a damaged one an error either
    // way (how many items precede it may differ, since a unit that fails is not emitted in
    // part; and a file with several faults may be reported at a different one, since a unit
    // parsed ahead can meet a later fault before an earlier one is decompressed)
    let err = |v: &[rdb_format::Result<rdb_format::Item>]| v.iter().any(Result::is_err);
    let (we, se) = (err(&whole), err(&split));
    assert_eq!(we, se, "a split turned an error into success or back");
    if !we {
        let items = |v: &[rdb_format::Result<rdb_format::Item>]| {
            v.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>()
        };
        assert_eq!(items(&whole), items(&split), "a split changed the items");
    }
    let mut check = rdb_config();
    check.skip_values(true);
    for _ in rdb_format::BytesReader::with_config(Bytes::copy_from_slice(data), check) {}
    visited(data, &whole);
    pipeline(data, &whole);
    memory_report(data);
}

/// `decode_with` on the same bytes: the visited string keys, turned back into items, and the
/// items that still come out are one decoder's items exactly, up to and including its error.
fn visited(data: &[u8], whole: &[rdb_format::Result<rdb_format::Item>]) {
    let mut reader =
        rdb_format::BytesReader::with_config(Bytes::copy_from_slice(data), rdb_config());
    let mut got = Vec::new();
    loop {
        let mut keys = Vec::new();
        let next = reader.next_item_with(&mut |r: &rdb_format::StringRecord<'_>| {
            keys.push(format!(
                "{:?}",
                Ok::<_, rdb_format::Error>(r.to_item(false))
            ));
            std::ops::ControlFlow::Continue(())
        });
        got.extend(keys);
        match next {
            Ok(Some(i)) => got.push(format!("{:?}", Ok::<_, rdb_format::Error>(i))),
            Ok(None) => break,
            Err(e) => {
                got.push(format!("{:?}", Err::<rdb_format::Item, _>(e)));
                break;
            }
        }
    }
    let want: Vec<String> = whole.iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(got, want, "visited keys differ from the items");
}

/// The multi-threaded pipeline on the same bytes (from a temporary file), in batches as small
/// as the second byte says: the same items as one decoder, and an error where it has one.
fn pipeline(data: &[u8], whole: &[rdb_format::Result<rdb_format::Item>]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "fuzz-pipeline-{}-{}.rdb",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let batch = data.get(1).map_or(1, |&b| u64::from(b) + 1);
    let mut got = Vec::new();
    let r = rdb_format::Pipeline::new(rdb_config())
        .threads(2)
        .batch_bytes(batch)
        .run(
            &path,
            |b, _| b.collect::<Vec<_>>(),
            |part| {
                match part {
                    rdb_format::Part::Item(i) => got.push(Ok(i)),
                    rdb_format::Part::Done(items) => got.extend(items),
                }
                match got.last() {
                    Some(Err(_)) => std::ops::ControlFlow::Break(()),
                    _ => std::ops::ControlFlow::Continue(()),
                }
            },
        );
    let _ = std::fs::remove_file(&path);
    if let Err(e) = r {
        got.push(Err(e));
    }
    let text = |v: &[rdb_format::Result<rdb_format::Item>]| {
        v.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>()
    };
    assert_eq!(
        text(&got),
        text(whole),
        "the pipeline and one decoder differ"
    );
}

/// The memory report's path: packed values sized but not built, every key estimated for every
/// server layout and allocator, and reported.
fn memory_report(data: &[u8]) {
    use replicator::memory::{Allocator, Model, Report, Sizer};
    let mut c = rdb_config();
    c.packed_sizes(true).build_packed(false);
    let items: Vec<rdb_format::Item> =
        rdb_format::BytesReader::with_config(Bytes::copy_from_slice(data), c)
            .map_while(Result::ok)
            .collect();
    for (version, valkey) in [
        ("6.2", false),
        ("7.0", false),
        ("7.2", false),
        ("8.2", false),
        ("8.1", true),
        ("9.1", true),
    ] {
        for alloc in [Allocator::Jemalloc, Allocator::Jemalloc16, Allocator::Libc] {
            let Some(model) = Model::for_version(version, valkey, alloc) else {
                panic!("no model for {version}");
            };
            let mut sizer = Sizer::new(model);
            let mut report = Report::new(3, b":", 2);
            for item in &items {
                if let Some(k) = sizer.item(item) {
                    assert!(k.size > 0, "a key of no bytes: {k:?}");
                    report.add(&k);
                }
            }
            let _ = (report.to_json(), report.to_html());
        }
    }
}

/// `DUMP` payload decoding.
pub fn rdb_dump(data: &[u8]) {
    let _ = rdb_format::decode_dump(data);
    // and with a valid checksum, so the body is reached
    if data.len() >= 3 {
        // the footer's version decides what the body means (Redis 13/14 KEY_META and new
        // types, Valkey 80 HASH_2)
        let version = [10u8, 13, 14, 80][usize::from(data[0] & 3)];
        let mut p = data.to_vec();
        p.extend_from_slice(&[version, 0]);
        let crc = rdb_format::crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        let _ = rdb_format::decode_dump(&p);
    }
}

/// The RESP decoder: whole and split input give the same frames; every frame re-encodes to
/// bytes that decode to it again.
pub fn resp(data: &[u8]) {
    let inline = data.first().is_some_and(|b| b & 1 == 1);
    let mut config = resp_codec::Config::default();
    config
        .inline(inline)
        .limits_mut()
        .max_depth(16)
        .max_line_len(1024)
        .max_bulk_len(1 << 20);
    let run = |cuts: &[usize]| {
        let mut dec = resp_codec::Decoder::with_config(config);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            buf.extend_from_slice(&data[last..c]);
            last = c;
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    };
    let (whole, err) = run(&[]);
    let cut = data
        .get(1)
        .map_or(0, |&b| usize::from(b) * data.len() / 256);
    let (split, split_err) = run(&[cut]);
    assert_eq!(whole.len(), split.len(), "a split changed the frames");
    assert_eq!(
        err.map(|e| e.offset()),
        split_err.map(|e| e.offset()),
        "a split moved the error"
    );
    for f in &whole {
        let mut out = BytesMut::new();
        resp_codec::encode(f, &mut out);
        // default limits: quoting can make an inline command four times as long
        let mut inline = resp_codec::Config::default();
        inline.inline(true);
        let again = resp_codec::Decoder::with_config(inline)
            .decode(&mut out)
            .expect("our own encoding decodes")
            .expect("our own encoding is whole");
        assert!(f.identical(&again), "{f:?} re-encoded as {again:?}");
    }
    let mut dec = resp_codec::Decoder::with_config(config);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = dec.decode_command(&mut buf) {}
}

/// The AOF manifest parser: a manifest it accepts keeps Redis' rules.
pub fn aof_manifest(data: &[u8]) {
    if let Ok(m) = aof_manifest::Manifest::parse(data) {
        assert!(
            m.entries()
                .iter()
                .filter(|e| e.kind == aof_manifest::FileKind::Base)
                .count()
                <= 1
        );
        let seqs: Vec<u64> = m.incrs().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "incr seqs not increasing"
        );
        assert!(
            m.entries()
                .iter()
                .all(|e| !e.name.contains(&b'/') && e.seq > 0)
        );
    }
    let _ = resp_codec::split_args(data);
}
