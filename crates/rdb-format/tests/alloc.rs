//! The decoder fed any bytes never allocates more than a fixed bound over the input's own
//! size: a counting global allocator records the peak of live bytes during each decode.
//! (Its own test binary: the allocator counts the whole process, so nothing else may run.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use proptest::prelude::*;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the pointer came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if new > layout.size() {
            let now = LIVE.fetch_add(new - layout.size(), Ordering::Relaxed) + new - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Fixed room (buffers, tables) plus a multiple of the input (LZF may expand 100×).
fn bound(len: usize) -> usize {
    (4 << 20) + 128 * len
}

/// Peak bytes allocated beyond what was live before, while `f` runs.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

fn decode_every_way(data: &[u8]) -> usize {
    let input = Bytes::copy_from_slice(data);
    let whole = peak_during(|| for _ in rdb_format::BytesReader::new(input.clone()) {});
    let streamed = peak_during(|| for _ in rdb_format::Reader::new(data) {});
    let dump = peak_during(|| {
        let _ = rdb_format::decode_dump(data);
    });
    whole.max(streamed).max(dump)
}

fn rdb_files(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rdb_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rdb") {
            out.push(std::fs::read(&p).unwrap());
        }
    }
}

/// The fixtures, the newest formats (RDB 13/14, Valkey 9) among them.
fn fixtures() -> Vec<Vec<u8>> {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata"));
    let mut v = Vec::new();
    rdb_files(root, &mut v);
    v.sort();
    assert!(v.len() > 25);
    v
}

/// One test for the whole binary: the counter sees every thread of the process, so nothing
/// may run beside a measurement (not even the harness reporting another test's result).
#[test]
fn allocations_stay_within_the_bound() {
    lying_lengths_do_not_allocate();
    arbitrary_bytes_allocate_within_the_bound();
    mutated_fixtures_allocate_within_the_bound();
    big_keys_cost_the_pipeline_and_the_encoder_no_more_than_small_ones();
    big_duplicate_tables_are_held_one_at_a_time_on_any_number_of_threads();
    lists_of_big_nodes_are_cut_into_chunks_in_bounded_memory();
    big_lzf_strings_are_decompressed_a_piece_at_a_time();
}

/// A file with one list of `n` elements (and a few small keys around it).
fn file_with_a_list(n: usize) -> std::path::PathBuf {
    file_with_a_list_of_nodes(n, 128)
}

/// As [`file_with_a_list`], with up to `per_node` elements in each of its quicklist nodes of
/// 8 KiB.
fn file_with_a_list_of_nodes(n: usize, per_node: usize) -> std::path::PathBuf {
    use rdb_format::{EncodeConfig, Encoder, KeyRecord, Value};
    let mut cfg = EncodeConfig::new(11).unwrap();
    cfg.list_node_entries(per_node);
    let mut enc = Encoder::new(Vec::new(), cfg).unwrap();
    for i in 0..100 {
        let v = Value::String(format!("value-{i}").into_bytes().into());
        enc.key(&KeyRecord::new(
            0,
            format!("small-{i}").into_bytes().into(),
            v,
        ))
        .unwrap();
    }
    let list = (0..n as i64)
        .map(|i| rdb_format::Elem::Bytes(format!("element-{i}").into_bytes().into()))
        .collect();
    enc.key(&KeyRecord::new(0, "big".into(), Value::List(list)))
        .unwrap();
    let path = test_support::temp_dir("alloc").join(format!("list-{n}-{per_node}.rdb"));
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    path
}

/// Decoding on threads (items dropped as they come) and re-encoding a big key chunk by chunk
/// (`ValueWriter`, into a sink) take the same peak memory for a list of 100,000 elements
/// and one of 1,000,000: nothing holds a key whole.
fn big_keys_cost_the_pipeline_and_the_encoder_no_more_than_small_ones() {
    use std::ops::ControlFlow;
    let measure = |path: &std::path::Path| {
        let threads = peak_during(|| {
            rdb_format::Pipeline::new(Default::default())
                .threads(2)
                .run(
                    path,
                    |b, hand| {
                        let mut n = 0;
                        for i in b {
                            i.unwrap();
                            n += 1;
                            if n % 1000 == 0 {
                                hand(n);
                            }
                        }
                        n
                    },
                    |_| ControlFlow::Continue(()),
                )
                .unwrap();
        });
        let encoder = peak_during(|| {
            let cfg = rdb_format::EncodeConfig::new(11).unwrap();
            let mut out = rdb_format::Encoder::new(std::io::sink(), cfg).unwrap();
            let mut big: Option<(rdb_format::KeyHead, rdb_format::ValueWriter)> = None;
            let mut body = std::io::sink();
            for item in rdb_format::Reader::new(std::fs::File::open(path).unwrap()) {
                match item.unwrap() {
                    rdb_format::Item::KeyStart(h) => {
                        let w = rdb_format::ValueWriter::new(&h, &cfg).unwrap();
                        big = Some((h, w));
                    }
                    rdb_format::Item::Chunk(c) => {
                        big.as_mut().unwrap().1.chunk(&c, &mut body).unwrap()
                    }
                    rdb_format::Item::KeyEnd => {
                        let (h, w) = big.take().unwrap();
                        let vh = w.finish(&mut body).unwrap();
                        out.key_spooled(&h, &vh, &mut std::io::empty()).unwrap();
                    }
                    other => out.item(&other).unwrap(),
                }
            }
            out.finish().unwrap();
        });
        (threads, encoder)
    };
    // the walker keeps a batch of up to 4 MiB in memory for its worker (a bigger one is read
    // again from the file): past that, the size of a key makes no difference. A record this
    // big is decoded while the walker walks it: the walker's two blocks (about 3 MiB each) and
    // the worker's buffers are then alive at once, more or less so as the threads happen to
    // run, so the peak varies by a few MiB from run to run (6.4 MB here for the list of 14 MB,
    // 7.2 to 8.7 MB for the one of 45 MB), far below the key's size
    let sizes = [1_000_000, 3_000_000];
    let [a, b] = sizes.map(|n| measure(&file_with_a_list(n)));
    for (threads, encoder) in [a, b] {
        assert!(threads < 12 << 20 && encoder < 4 << 20, "{a:?} {b:?}");
    }
    assert!(b.0 < a.0 + (5 << 20), "threads: {a:?} then {b:?}");
    assert!(b.1 < a.1 + (1 << 20), "encoder: {a:?} then {b:?}");
}

/// A list whose quicklist nodes hold hundreds of elements each, as Redis writes them
/// (`list-max-listpack-size -2`: 8 KiB a node, whatever the count), read on one thread and
/// on two: its chunks are cut as they come, each in a vector of its own. (Cut one at a time
/// from a step's hundreds of nodes, each chunk kept the whole step's allocation: 24 MB for
/// this list in memory and on two threads, 7.7 MB now, and a list of 8,000,000 elements
/// that Redis wrote was printed in 74 MiB, in 19 MiB now.)
fn lists_of_big_nodes_are_cut_into_chunks_in_bounded_memory() {
    let path = file_with_a_list_of_nodes(1_000_000, usize::MAX);
    let one = peak_during(|| {
        for i in rdb_format::Reader::new(std::fs::File::open(&path).unwrap()) {
            i.unwrap();
        }
    });
    let data = Bytes::from(std::fs::read(&path).unwrap());
    let whole = peak_during(|| {
        for i in rdb_format::BytesReader::new(data.clone()) {
            i.unwrap();
        }
    });
    let threads = peak_on_two_threads(&path);
    assert!(
        one < 4 << 20 && whole < 12 << 20 && threads < 12 << 20,
        "one thread {one}, in memory {whole}, two threads {threads}"
    );
}

/// Peak bytes of a pipeline of two threads through `path`, its items dropped as they come.
fn peak_on_two_threads(path: &std::path::Path) -> usize {
    peak_during(|| {
        rdb_format::Pipeline::new(Default::default())
            .threads(2)
            .run(
                path,
                |b, _| b.count(),
                |_| std::ops::ControlFlow::Continue(()),
            )
            .unwrap();
    })
}

/// A string of 64 MiB of zeros, 0.7 MB in the file LZF-compressed, read on one thread (from a
/// file, in memory, its string keys handed to a visitor) and on two: it is decompressed a
/// piece at a time, never whole. (Decompressed whole, a string of 300 MB of zeros took
/// 297 MiB to check; one of 100 MB among small keys, 677 MiB to print as `jsonl`, where its
/// keys went to a visitor.)
fn big_lzf_strings_are_decompressed_a_piece_at_a_time() {
    use rdb_format::{EncodeConfig, Encoder, KeyRecord, Value};
    let mut enc = Encoder::new(Vec::new(), EncodeConfig::new(11).unwrap()).unwrap();
    // (among small string keys: a visitor is handed runs of them, the big one not among them)
    let small = |enc: &mut Encoder<Vec<u8>>, at: usize| {
        for i in at..at + 50 {
            let v = Value::String(format!("value-{i}").into_bytes().into());
            enc.key(&KeyRecord::new(0, format!("k{i}").into_bytes().into(), v))
                .unwrap();
        }
    };
    small(&mut enc, 0);
    let zeros = Value::String(vec![0u8; 64 << 20].into());
    enc.key(&KeyRecord::new(0, "zeros".into(), zeros)).unwrap();
    small(&mut enc, 50);
    let file = enc.finish().unwrap();
    assert!(file.len() < 1 << 20, "{}", file.len());
    let path = test_support::temp_dir("alloc").join("zeros.rdb");
    std::fs::write(&path, &file).unwrap();
    let data = Bytes::from(file);
    let mut pieces = 0;
    let one = peak_during(|| {
        for i in rdb_format::Reader::new(std::fs::File::open(&path).unwrap()) {
            pieces += usize::from(matches!(i.unwrap(), rdb_format::Item::Chunk(_)));
        }
    });
    let whole = peak_during(|| {
        for i in rdb_format::BytesReader::new(data.clone()) {
            i.unwrap();
        }
    });
    struct Strings(usize);
    impl rdb_format::Visitor for Strings {
        fn string(&mut self, _: &rdb_format::StringRecord<'_>) -> std::ops::ControlFlow<()> {
            self.0 += 1;
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut visited = Strings(0);
    let visit = peak_during(|| {
        let mut r = rdb_format::BytesReader::new(data.clone());
        while r.next_item_with(&mut visited).unwrap().is_some() {}
    });
    assert!(visited.0 >= 90, "{}", visited.0);
    let mut checked = rdb_format::Config::default();
    checked.skip_values(true);
    let check = peak_during(|| {
        for i in rdb_format::BytesReader::with_config(data.clone(), checked) {
            i.unwrap();
        }
    });
    let threads = peak_on_two_threads(&path);
    assert_eq!(pieces, 64);
    assert!(
        one < 8 << 20
            && whole < 8 << 20
            && visit < 8 << 20
            && check < 8 << 20
            && threads < 12 << 20,
        "one thread {one}, in memory {whole}, visited {visit}, checked {check}, \
         two threads {threads}"
    );
}

/// A file of `sets` sets of `n` members each (integers, in the hashtable encoding).
fn file_with_big_sets(sets: u32, n: u32) -> std::path::PathBuf {
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    for k in 0..sets {
        f.push(2);
        f.push(6);
        f.extend_from_slice(format!("set:{k:02}").as_bytes());
        f.push(0x80);
        f.extend_from_slice(&n.to_be_bytes());
        for i in 0..n {
            f.push(0xC2);
            f.extend_from_slice(&(k * 10_000_000 + i).to_le_bytes());
        }
    }
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    let path = test_support::temp_dir("alloc").join(format!("sets-{sets}-{n}.rdb"));
    std::fs::write(&path, f).unwrap();
    path
}

/// Each set of 300,000 members needs a duplicate table of about 8.5 MiB. On 8 threads the
/// pipeline decodes the four sets one at a time, in turn: its peak is that of one thread, not
/// four tables'.
fn big_duplicate_tables_are_held_one_at_a_time_on_any_number_of_threads() {
    use std::ops::ControlFlow;
    let path = file_with_big_sets(4, 300_000);
    let peak = |threads: usize| {
        peak_during(|| {
            rdb_format::Pipeline::new(Default::default())
                .threads(threads)
                .run(
                    &path,
                    |b, _| b.inspect(|i| assert!(i.is_ok(), "{i:?}")).count(),
                    |_| ControlFlow::Continue(()),
                )
                .unwrap();
        })
    };
    let (one, eight) = (peak(1), peak(8));
    assert!(one > 8 << 20, "one table at least: {one}");
    assert!(
        eight < one + (5 << 20),
        "1 thread: {one}, 8 threads: {eight}"
    );
}

fn arbitrary_bytes_allocate_within_the_bound() {
    let config = ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    };
    proptest!(config, |(data in proptest::collection::vec(any::<u8>(), 0..2000))| {
        let mut input = b"REDIS0011".to_vec();
        input.extend_from_slice(&data);
        let mut newest = b"REDIS0014".to_vec();
        newest.extend_from_slice(&data);
        let mut valkey = b"VALKEY080".to_vec();
        valkey.extend_from_slice(&data);
        for d in [&data[..], &input[..], &newest[..], &valkey[..]] {
            let peak = decode_every_way(d);
            prop_assert!(peak <= bound(d.len()), "{} bytes of input made {} bytes of allocation", d.len(), peak);
        }
    });
}

fn mutated_fixtures_allocate_within_the_bound() {
    let files = fixtures();
    let config = ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    };
    proptest!(config, |(which in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8))| {
        let mut f = files[which.index(files.len())].clone();
        for (at, b) in edits {
            let i = at.index(f.len());
            f[i] = b;
        }
        let peak = decode_every_way(&f);
        prop_assert!(peak <= bound(f.len()), "{} bytes of input made {} bytes of allocation", f.len(), peak);
    });
}

fn lying_lengths_do_not_allocate() {
    // the counter sees allocations at all
    assert!(peak_during(|| drop(std::hint::black_box(vec![1u8; 1 << 20]))) >= 1 << 20);
    // a 512 MiB string claimed in a few bytes, raw and LZF; a 4-billion-element list
    // and the new counts: array elements, IDMP producers and entries, slot-import ranges,
    // NACK-zone IDs, key metadata items
    let cases: [&[u8]; 8] = [
        b"REDIS0011\x00\x01k\x80\x1f\xff\xff\xffabc",
        b"REDIS0011\x00\x01k\xc3\x05\x80\x1f\xff\xff\xff\x00abcde",
        b"REDIS0011\x01\x01k\x80\xff\xff\xff\xff\x01a",
        b"REDIS0014\x1c\x01k\x81\x00\x00\x00\xff\xff\xff\xff\xff\x00\x00\x00\x01a",
        b"REDIS0013\x1a\x01k\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x64\x40\x64\x80\xff\xff\xff\xff\x01p\x80\xff\xff\xff\xff",
        b"VALKEY080\xf3\x01j\x81\x00\x00\xff\xff\xff\xff\xff\xff\x00\x00",
        b"REDIS0014\x1b\x01k\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01g\x00\x00\x00\x00\x80\xff\xff\xff\xff",
        b"REDIS0013\xf3\x01\x09\xf5\xc4\x28\x05\x80\x1f\xff\xff\xff",
    ];
    for c in cases {
        let peak = decode_every_way(c);
        assert!(peak <= bound(c.len()), "{peak}");
    }
}
