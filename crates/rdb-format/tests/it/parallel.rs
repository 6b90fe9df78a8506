//! The pipeline gives what one decoder gives: every bundled file, every corpus file and every
//! differential file, at 1, 2 and 8 threads, in batches down to one record and with big
//! items handed over in parts as they come: the same items in the same order, and the same
//! first error.

use std::ops::ControlFlow;
use std::path::Path;

use rdb_format::{Config, Part, Pipeline};

/// Each item as text, up to and including the first error.
fn sequential(path: &Path, config: Config) -> Vec<String> {
    super::visit::plain(&std::fs::read(path).unwrap(), &config)
}

/// `visit`: string keys through [`rdb_format::Batch::next_with`]; `map`: the file mapped
/// ([`Pipeline::map`], with the `mmap` feature) rather than read.
fn parallel(
    path: &Path,
    config: Config,
    (threads, batch, spill): (usize, u64, usize),
    (visit, map): (bool, bool),
) -> Vec<String> {
    parallel_big_first(path, config, (threads, batch, spill), (visit, map), false)
}

/// As [`parallel`]; `big_first`: batches with big records decoded first
/// ([`Pipeline::big_first`]; `spill` should then be more than a batch's items).
fn parallel_big_first(
    path: &Path,
    config: Config,
    sizes: (usize, u64, usize),
    (visit, map): (bool, bool),
    big_first: bool,
) -> Vec<String> {
    parallel_with(path, config, sizes, (visit, map, false), big_first)
}

/// A visitor that takes string keys and checked keys, turned back into the items they stand
/// for.
struct Back<'i> {
    items: &'i mut Vec<Result<rdb_format::Item, rdb_format::Error>>,
    skip: bool,
}

impl rdb_format::Visitor for Back<'_> {
    fn string(&mut self, r: &rdb_format::StringRecord<'_>) -> ControlFlow<()> {
        self.items.push(Ok(r.to_item(self.skip)));
        ControlFlow::Continue(())
    }

    fn takes_checked(&self) -> bool {
        true
    }

    fn checked(&mut self, head: &rdb_format::KeyHead) -> ControlFlow<()> {
        self.items
            .push(Ok(rdb_format::Item::KeyChecked(head.clone())));
        ControlFlow::Continue(())
    }
}

/// As [`parallel_big_first`]; `leak`: a mapped file's mapping is leaked
/// ([`Pipeline::leak_map`]).
fn parallel_with(
    path: &Path,
    config: Config,
    (threads, batch, spill): (usize, u64, usize),
    (visit, map, leak): (bool, bool, bool),
    big_first: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut failed = false;
    let take = |out: &mut Vec<String>, items: Vec<Result<rdb_format::Item, rdb_format::Error>>| {
        for i in items {
            match i {
                Ok(i) => out.push(format!("{i:?}")),
                Err(e) => {
                    out.push(format!("error: {e}"));
                    return true;
                }
            }
        }
        false
    };
    let r = Pipeline::new(config)
        .threads(threads)
        .batch_bytes(batch)
        .window(if big_first { 1 << 16 } else { 3 })
        .map(map)
        .leak_map(leak)
        .big_first(big_first)
        .run(
            path,
            // hand the items over `spill` at a time, the rest at the end
            |b, hand| {
                let mut items = Vec::new();
                let skip = b.skips_values();
                loop {
                    // string keys and checked keys visited, when `visit`, come before the
                    // item that follows them
                    let got = if visit {
                        b.next_with(&mut Back {
                            items: &mut items,
                            skip,
                        })
                    } else {
                        b.next()
                    };
                    let Some(i) = got else { break };
                    items.push(i);
                    if items.len() >= spill {
                        hand(std::mem::take(&mut items));
                    }
                }
                items
            },
            |part| {
                failed = match part {
                    Part::Item(i) => {
                        out.push(format!("{i:?}"));
                        false
                    }
                    Part::Done(items) => take(&mut out, items),
                };
                if failed {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
    if let Err(e) = r {
        assert!(!failed, "{}: an error after the first", path.display());
        out.push(format!("error: {e}"));
    }
    out
}

#[test]
fn the_pipeline_gives_what_one_decoder_gives() {
    let files = test_support::every_rdb_file("the pipeline's corpus files");
    assert!(files.len() > 20, "only {} files", files.len());
    let mut chunked = Config::default();
    chunked.chunk_threshold(4).chunk_size(3).string_piece(16);
    let mut errors = 0;
    for path in &files {
        let mut skip = Config::default();
        skip.skip_values(true);
        for config in [Config::default(), chunked, skip] {
            let want = sequential(path, config);
            if want.last().is_some_and(|l| l.starts_with("error")) {
                errors += 1;
            }
            for (threads, batch, spill) in [(1, 1 << 20, 1000), (2, 1, 1), (8, 300, 3)] {
                for (visit, map, leak) in [
                    (false, false, false),
                    (true, false, false),
                    (false, true, false),
                    (true, true, true),
                ] {
                    let sizes = (threads, batch, spill);
                    let got = parallel_with(path, config, sizes, (visit, map, leak), false);
                    assert_eq!(
                        got,
                        want,
                        "{} at {threads} threads, batches of {batch}, visit {visit}, map {map}, \
                         leaked {leak}",
                        path.display()
                    );
                }
            }
        }
    }
    // the differential files are all refused: the errors were compared too
    assert!(errors > 10, "only {errors} files with errors");
}

#[test]
fn nothing_after_a_failed_worker_is_given_out() {
    let path = test_support::testdata().join("redis-7.0-plain.rdb");
    let run = |fail_at: u64, seen: &mut Vec<u64>| {
        Pipeline::new(Config::default())
            .threads(2)
            .batch_bytes(1)
            .run(
                &path,
                |b, _| {
                    assert!(b.start() != fail_at, "a worker fails");
                    b.start()
                },
                |part| {
                    if let Part::Done(start) = part {
                        seen.push(start);
                    }
                    ControlFlow::Continue(())
                },
            )
    };
    let mut starts = Vec::new();
    run(u64::MAX, &mut starts).unwrap();
    assert!(starts.len() > 10);
    let hole = starts[3];
    let mut seen = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(hole, &mut seen)));
    assert!(r.is_err(), "the worker's panic comes out");
    // batches come in file order and stop before the hole
    assert_eq!(seen, starts[..3], "given out");
}

/// A caller's `emit` that panics ends the run with its panic, on a file read through a
/// mapping (the walker guessing where batches start) and on one it walks: the other threads
/// stop. (The walker of a mapped file waited forever for the caller's thread to ask for more
/// batches, and the run with it.) Each run is given a minute in a thread of its own.
#[test]
fn a_panic_in_emit_ends_the_run() {
    let path = test_support::testdata().join("redis-7.0-plain.rdb");
    for (map, threads) in [(true, 2), (true, 8), (false, 2)] {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let mut parts = 0;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Pipeline::new(Config::default())
                    .threads(threads)
                    .map(map)
                    .batch_bytes(1)
                    .run(
                        &p,
                        |b, _| b.count(),
                        |part| {
                            if matches!(part, Part::Done(_)) {
                                parts += 1;
                                assert!(parts < 3, "the caller's emit fails");
                            }
                            ControlFlow::Continue(())
                        },
                    )
            }));
            let _ = tx.send(r.is_err());
        });
        let panicked = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(panicked, Ok(true), "map {map}, {threads} threads");
    }
}

/// A file of sets of `n` integer members (hashtable encoding) between string keys; `dup`
/// repeats the first member of the last set at its end.
fn big_sets_between_strings(n: u32, dup: bool) -> Vec<u8> {
    big_sets_between_n_strings(n, 50, dup)
}

/// As [`big_sets_between_strings`], with `strings` string keys before each set.
fn big_sets_between_n_strings(n: u32, strings: u32, dup: bool) -> Vec<u8> {
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    for k in 0..4u32 {
        for s in 0..strings {
            let key = format!("str:{k}:{s:02}");
            f.push(0);
            f.push(key.len() as u8);
            f.extend_from_slice(key.as_bytes());
            f.extend_from_slice(b"\x05value");
        }
        f.extend_from_slice(b"\x02\x05set:");
        f.push(b'0' + k as u8);
        f.push(0x80);
        f.extend_from_slice(&n.to_be_bytes());
        for i in 0..n {
            let m = if dup && k == 3 && i == n - 1 { 0 } else { i };
            f.push(0xC2);
            f.extend_from_slice(&(k * 10_000_000 + m).to_le_bytes());
        }
    }
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    f
}

/// Sets big enough for a big duplicate table are decoded one batch at a time, in turn
/// (`Decoder::big_tables`): on any number of threads, in any batch size, with a window of 3,
/// the pipeline still gives what one decoder gives, the duplicate at the end of the last set
/// included, and never stalls.
#[test]
fn batches_with_big_duplicate_tables_wait_their_turn() {
    let dir = test_support::temp_dir("parallel-big-sets");
    let mut skip = Config::default();
    skip.skip_values(true);
    for dup in [false, true] {
        let path = dir.join(format!("sets-{dup}.rdb"));
        std::fs::write(&path, big_sets_between_strings(70_000, dup)).unwrap();
        for config in [Config::default(), skip] {
            let want = sequential(&path, config);
            assert_eq!(
                want.last().unwrap().starts_with("error"),
                dup,
                "{:?}",
                want.last()
            );
            for (threads, batch, spill) in [(1, 1 << 20, 1000), (2, 1, 1), (8, 300, 3)] {
                for map in [false, true] {
                    let got = parallel(&path, config, (threads, batch, spill), (false, map));
                    assert!(
                        got == want,
                        "dup {dup} at {threads} threads, batches of {batch}, map {map}"
                    );
                }
                // big batches first, their results kept until their turn
                let got = parallel_big_first(
                    &path,
                    config,
                    (threads, batch.max(4096), usize::MAX),
                    (false, true),
                    true,
                );
                assert!(got == want, "dup {dup} at {threads} threads, big first");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An RDB 9 file with two records of about 7 MB, more than the walker reads ahead before it
/// hands such a record to a worker as a batch of its own: a string, then (in db 3) a set of
/// 500,000 members whose duplicate check needs a big table. `dup_at`: that member repeats the
/// first one. Returns the file and where the set's value starts and ends.
fn file_with_big_records(dup_at: Option<usize>) -> (Vec<u8>, usize, usize) {
    let short = |f: &mut Vec<u8>, s: &[u8]| {
        f.push(s.len() as u8);
        f.extend_from_slice(s);
    };
    let strings = |f: &mut Vec<u8>, prefix: &str| {
        for i in 0..200 {
            f.push(0);
            short(f, format!("{prefix}:{i}").as_bytes());
            short(f, format!("value {i}").as_bytes());
        }
    };
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    strings(&mut f, "before");
    f.push(0);
    short(&mut f, b"big:string");
    f.push(0x80);
    f.extend(7_000_000u32.to_be_bytes());
    f.extend((0..7_000_000u32).map(|i| b'a' + (i % 26) as u8));
    strings(&mut f, "middle");
    f.extend([0xFE, 3, 2]);
    short(&mut f, b"big:set");
    let start = f.len();
    f.push(0x80);
    f.extend(500_000u32.to_be_bytes());
    for i in 0..500_000 {
        let m = if dup_at == Some(i) { 0 } else { i };
        short(&mut f, format!("member-{m:07}").as_bytes());
    }
    let end = f.len();
    strings(&mut f, "after");
    f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
    (f, start, end)
}

#[test]
fn records_bigger_than_the_walkers_reach_give_what_one_decoder_gives() {
    let dir = test_support::temp_dir("pipeline-big-records");
    let (whole, start, end) = file_with_big_records(None);
    let (dup, ..) = file_with_big_records(Some(450_000));
    let cut = whole[..start + (end - start) * 9 / 10].to_vec();
    for (name, bytes, ok) in [
        ("whole", whole, true),
        ("dup", dup, false),
        ("cut", cut, false),
    ] {
        let path = dir.join(format!("{name}.rdb"));
        std::fs::write(&path, bytes).unwrap();
        let mut skip = Config::default();
        skip.skip_values(true);
        for config in [Config::default(), skip] {
            let want = sequential(&path, config);
            let failed = want.last().is_some_and(|l| l.starts_with("error"));
            assert_eq!(failed, !ok, "{name}: {:?}", want.last());
            for (threads, batch, spill) in [(2, 1 << 20, 1000), (8, 4096, 3)] {
                let got = parallel_big_first(
                    &path,
                    config,
                    (threads, batch, usize::MAX),
                    (false, true),
                    true,
                );
                assert!(got == want, "{name} at {threads} threads, big first");
                for map in [false, true] {
                    let got = parallel(&path, config, (threads, batch, spill), (false, map));
                    assert!(
                        got == want,
                        "{name} at {threads} threads, batches of {batch}, map {map}: {} items \
                         vs {}, last {:?} vs {:?}",
                        got.len(),
                        want.len(),
                        got.last(),
                        want.last()
                    );
                }
            }
            // and on one thread, mapped, in windows far smaller than the records
            #[cfg(feature = "mmap")]
            for window in [4096, 1 << 20] {
                let got = mapped(&path, config, window, true);
                assert!(got == want, "{name}, mapped in windows of {window}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A leaked mapping is never unmapped, but its pages go with its `MappedFile`: a program that
/// leaks the mappings of many files holds none of their pages once it is done with them, and
/// what still refers to them reads them again.
#[cfg(all(feature = "mmap", target_os = "linux"))]
#[test]
fn a_leaked_mapping_lets_its_pages_go_when_dropped() {
    let dir = test_support::temp_dir("leaked-map");
    let path = dir.join("big.rdb");
    let f: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &f).unwrap();
    let map = rdb_format::MappedFile::open(&path).unwrap().leak();
    let all = map.bytes().clone();
    let addr = all.as_ptr() as usize;
    // every page read
    assert_eq!(
        all.iter().map(|&b| u64::from(b)).sum::<u64>(),
        f.iter().map(|&b| u64::from(b)).sum::<u64>()
    );
    let before = test_support::mapping_rss(addr);
    assert!(
        before >= 3 << 20,
        "{before} bytes resident after reading 4 MiB"
    );
    drop(map);
    let after = test_support::mapping_rss(addr);
    assert!(after < 64 << 10, "{after} bytes resident after the drop");
    // still there to read, the same
    assert!(all[..] == f[..]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 96 MB of big strings (each a batch of its own in the pipeline), small keys between them,
/// and a set of 2,000,000 members (28 MB) whose duplicate check reads every one.
#[cfg(all(feature = "mmap", target_os = "linux"))]
fn big_strings_and_a_set() -> Vec<u8> {
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    let short = |f: &mut Vec<u8>, s: &[u8]| {
        f.push(s.len() as u8);
        f.extend_from_slice(s);
    };
    for i in 0..8u32 {
        f.push(0);
        short(&mut f, format!("big:{i}").as_bytes());
        f.push(0x80);
        f.extend(12_000_000u32.to_be_bytes());
        f.extend((0..12_000_000u32).map(|j| b'a' + ((i + j) % 26) as u8));
        for j in 0..1000 {
            f.push(0);
            short(&mut f, format!("small:{i}:{j}").as_bytes());
            short(&mut f, b"value");
        }
    }
    f.push(2);
    short(&mut f, b"set");
    f.push(0x80);
    f.extend(2_000_000u32.to_be_bytes());
    for i in 0..2_000_000 {
        short(&mut f, format!("member-{i:07}").as_bytes());
    }
    f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
    f
}

#[cfg(all(feature = "mmap", target_os = "linux"))]
#[test]
fn a_mapped_file_is_let_go_behind_the_readers() {
    let f = big_strings_and_a_set();
    let dir = test_support::temp_dir("pipeline-mapped-rss");
    let path = dir.join("big.rdb");
    std::fs::write(&path, &f).unwrap();
    drop(f);
    let mut skip = Config::default();
    skip.skip_values(true);
    // a leaked mapping's pages are let go as well
    for (config, leak) in [
        (skip, false),
        (Config::default(), false),
        (Config::default(), true),
    ] {
        let before = test_support::file_rss(&path);
        let mut peak = before;
        let mut keys = 0;
        Pipeline::new(config)
            .threads(2)
            .map(true)
            .leak_map(leak)
            .run(
                &path,
                |b, _| b.filter(|i| i.is_ok()).count(),
                |part| {
                    peak = peak.max(test_support::file_rss(&path));
                    if let Part::Done(n) = part {
                        keys += n;
                    }
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        assert!(keys > 8_000, "{keys} items");
        // read whole and kept, the file would add 124 MB; two workers may each hold a batch
        // of a 12 MB string and its window meanwhile (10-18 MiB measured)
        let grew = peak.saturating_sub(before);
        assert!(grew < 32 << 20, "mapped pages grew by {} MiB", grew >> 20);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `f` written as `name` in a fresh temp directory (`tag`), dropped from the page cache and
/// read back through a mapping, as a file read from the disk may be held (large folios); the
/// directory and the file's path.
#[cfg(all(feature = "mmap", target_os = "linux"))]
fn written_and_read_back(
    f: Vec<u8>,
    tag: &str,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = test_support::temp_dir(tag);
    let path = dir.join(name);
    std::fs::write(&path, &f).unwrap();
    drop(f);
    test_support::drop_from_page_cache(&path);
    let map = rdb_format::MappedFile::open(&path).unwrap();
    let touched = map
        .bytes()
        .iter()
        .step_by(4096)
        .map(|&b| u64::from(b))
        .sum::<u64>();
    assert!(touched > 0);
    (dir, path)
}

/// With a wide window (`check`'s: a batch's results are a few numbers) the workers run far
/// ahead of a caller's thread that waits (for a big key's batch, say): each lets its batches'
/// pages go as far as its decoder got, not only the whole huge pages inside them, so the
/// pages of the batches waiting for their turn are not resident meanwhile. Here the caller's
/// thread waits at the first batch until the workers decoded the whole file (64 MB in batches
/// of 64 KiB, many to a huge page). The pages near the caller's thread are left to it, which
/// lets them go a few MiB at a time as it takes the batches: resident pages stay bounded all the
/// way through (looked at every 32 batches taken), there and where the caller's thread keeps up.
#[cfg(all(feature = "mmap", target_os = "linux"))]
#[test]
fn workers_far_ahead_of_the_caller_let_their_pages_go() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let keys: u64 = 1_000_000;
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    for i in 0..keys {
        f.push(0);
        let k = format!("key:{i:010}");
        f.push(k.len() as u8);
        f.extend_from_slice(k.as_bytes());
        let v = format!("{i:046}");
        f.push(v.len() as u8);
        f.extend_from_slice(v.as_bytes());
    }
    f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(f.len() > 60 << 20);
    let (dir, path) = written_and_read_back(f, "pipeline-far-ahead", "strings.rdb");
    for wait in [true, false] {
        let decoded = AtomicU64::new(0);
        let before = test_support::file_rss(&path);
        let mut waited = None;
        let (mut taken, mut parts, mut peak) = (0u64, 0u64, 0u64);
        Pipeline::new(Config::default())
            .threads(4)
            .map(true)
            .window(1 << 16)
            .batch_bytes(64 << 10)
            .run(
                &path,
                |b, _| {
                    let n = b
                        .filter(|i| matches!(i, Ok(rdb_format::Item::Key(_))))
                        .count() as u64;
                    decoded.fetch_add(n, Ordering::Relaxed);
                    n
                },
                |part| {
                    if let Part::Done(n) = part {
                        taken += n;
                        parts += 1;
                        if parts % 32 == 0 {
                            let now = test_support::file_rss(&path).saturating_sub(before);
                            peak = peak.max(now);
                        }
                        if wait && waited.is_none() {
                            // every batch decoded, all but the first waiting for this thread
                            let start = std::time::Instant::now();
                            while decoded.load(Ordering::Relaxed) < keys {
                                assert!(
                                    start.elapsed().as_secs() < 120,
                                    "the workers did not get through the file"
                                );
                                std::thread::sleep(std::time::Duration::from_millis(5));
                            }
                            waited = Some(test_support::file_rss(&path).saturating_sub(before));
                        }
                    }
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        assert_eq!(taken, keys);
        // kept by the workers, the batches' pages would be the whole file, 64 MB
        if let Some(grew) = waited {
            assert!(grew < 24 << 20, "mapped pages grew by {} MiB", grew >> 20);
        }
        assert!(parts > 500, "{parts} batches");
        // on the way: up to 8 MiB left to the caller's thread ahead of it and as much behind
        // it not let go yet, and four workers' batches mapped in 2 MiB folios (10-15 MiB
        // measured; with the caller's thread not letting them go, 60)
        assert!(
            peak < 32 << 20,
            "waiting {wait}: mapped pages grew by {} MiB on the way",
            peak >> 20
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A big key's pieces may be handed over after the caller's thread let go of pages they lie
/// in: a piece handed after another may lie before where the batch's decoder was when the
/// other was handed (here each piece is handed one hand-over late). The pages such a piece
/// maps again are let go again with the batch's next hand-over, not kept until the batch's
/// end. (They were kept: up to 10 MiB of the bench's big hash where the page cache held it
/// in 2 MiB folios.)
#[cfg(all(feature = "mmap", target_os = "linux"))]
#[test]
fn a_big_keys_pages_mapped_again_behind_a_release_go_again() {
    use rdb_format::{Chunk, Elem, Item};
    const HUGE: usize = 2 << 20;
    // 1,500,000 fields of 17 bytes: 25.5 MB
    let f = big_collection(4, 1_500_000, &[]);
    let (dir, path) = written_and_read_back(f, "pipeline-behind-release", "hash.rdb");
    let (mut lo, mut hi, mut fields) = (usize::MAX, 0usize, 0usize);
    // the first pages found mapped behind the reading, and how far behind it was looked at
    let (mut behind, mut looked) = (None, 0usize);
    let mut config = Config::default();
    config.chunk_threshold(1000).chunk_size(1000);
    Pipeline::new(config)
        .threads(2)
        .map(true)
        // (slices of a leaked mapping are the mapping's bytes, and it stays to be looked at)
        .leak_map(true)
        .run(
            &path,
            |b, hand| {
                let mut late: Vec<Item> = Vec::new();
                for item in b.by_ref() {
                    let item = item.unwrap();
                    if matches!(item, Item::Chunk(_)) {
                        hand(std::mem::take(&mut late));
                        late.push(item);
                    }
                }
                late
            },
            |part| {
                if let Part::Done(items) = part {
                    // the pages of what was read before, but for the last few huge pages
                    // (the batch's worker lets go whole huge pages behind it)
                    let (from, to) = (
                        lo.div_ceil(HUGE).saturating_mul(HUGE),
                        (hi / HUGE).saturating_sub(3) * HUGE,
                    );
                    if to > from {
                        let mapped = test_support::present_pages(from, to - from);
                        if mapped > 0 {
                            behind.get_or_insert((mapped, from, to));
                        }
                        looked = looked.max(to - from);
                    }
                    for item in items {
                        let Item::Chunk(Chunk::Hash(v)) = item else {
                            continue;
                        };
                        // read as a printer reads them
                        for field in &v {
                            let Elem::Bytes(b) = &field.field else {
                                continue;
                            };
                            lo = lo.min(b.as_ptr() as usize);
                            hi = hi.max(b.as_ptr() as usize + b.len());
                            fields += usize::from(b.contains(&b'-'));
                        }
                    }
                }
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert_eq!(fields, 1_500_000);
    assert!(looked >= 16 << 20, "looked at {looked} bytes");
    assert_eq!(behind, None, "pages mapped behind (count, from, to)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every item of a [`rdb_format::MappedReader`] as text, up to and including the first error;
/// `visit`: string keys through a visitor.
#[cfg(feature = "mmap")]
fn mapped(path: &Path, config: Config, window: u64, visit: bool) -> Vec<String> {
    let map = rdb_format::MappedFile::open(path).unwrap();
    mapped_from(map, config, window, visit)
}

/// As [`mapped`], from `map`.
#[cfg(feature = "mmap")]
fn mapped_from(
    map: rdb_format::MappedFile,
    config: Config,
    window: u64,
    visit: bool,
) -> Vec<String> {
    let mut r = rdb_format::MappedReader::with_window(map, config, window);
    let skip = r.decoder().skips_values();
    let mut out = Vec::new();
    loop {
        let mut visited = Vec::new();
        let got = if visit {
            r.next_item_with(&mut |s: &rdb_format::StringRecord<'_>| {
                visited.push(format!("{:?}", s.to_item(skip)));
                ControlFlow::Continue(())
            })
        } else {
            r.next_item()
        };
        out.append(&mut visited);
        match got {
            Ok(Some(i)) => out.push(format!("{i:?}")),
            // (the visitor never asks to stop: this is the end)
            Ok(None) => break,
            Err(e) => {
                out.push(format!("error: {e}"));
                break;
            }
        }
    }
    out
}

#[cfg(feature = "mmap")]
#[test]
fn a_mapped_reader_gives_what_one_decoder_gives() {
    let files = test_support::every_rdb_file("the mapped reader's corpus files");
    assert!(files.len() > 20, "only {} files", files.len());
    let mut chunked = Config::default();
    chunked.chunk_threshold(4).chunk_size(3).string_piece(16);
    for path in &files {
        let mut skip = Config::default();
        skip.skip_values(true);
        for config in [Config::default(), chunked, skip] {
            let want = sequential(path, config);
            for window in [1, 7, 4096, 2 << 20] {
                for visit in [false, true] {
                    let got = mapped(path, config, window, visit);
                    assert_eq!(
                        got,
                        want,
                        "{} in windows of {window}, visit {visit}",
                        path.display()
                    );
                }
            }
            // a leaked mapping: items with no reference count, the same
            let leaked = rdb_format::MappedFile::open(path).unwrap().leak();
            assert_eq!(
                mapped_from(leaked, config, 4096, true),
                want,
                "{} leaked",
                path.display()
            );
        }
    }
}

#[cfg(all(feature = "mmap", target_os = "linux"))]
#[test]
fn a_mapped_reader_lets_its_pages_go() {
    let dir = test_support::temp_dir("mapped-reader-rss");
    let path = dir.join("big.rdb");
    std::fs::write(&path, big_strings_and_a_set()).unwrap();
    let mut skip = Config::default();
    skip.skip_values(true);
    // a leaked mapping's pages are let go as well
    for (config, leak) in [
        (skip, false),
        (Config::default(), false),
        (Config::default(), true),
    ] {
        let before = test_support::file_rss(&path);
        let mut peak = before;
        let mut keys = 0;
        let mut map = rdb_format::MappedFile::open(&path).unwrap();
        if leak {
            map = map.leak();
        }
        // (looked at every 256 KiB read: reading smaps is slow in a process that maps much)
        let mut reader = rdb_format::MappedReader::new(map, config);
        let mut next = 0;
        while reader.next_item().unwrap().is_some() {
            keys += 1;
            if reader.decoder().offset() >= next {
                peak = peak.max(test_support::file_rss(&path));
                next = reader.decoder().offset() + (256 << 10);
            }
        }
        assert!(keys > 8_000, "{keys} items");
        // read whole and kept, the file would add 124 MB (and read at all, some of it is
        // resident on the way: the measure sees the file's mapping)
        let grew = peak.saturating_sub(before);
        assert!(grew < 20 << 20, "mapped pages grew by {} MiB", grew >> 20);
        assert!(grew > 0, "no page of the file was ever resident");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pages a [`rdb_format::MappedReader`] let go stay let go: nothing it reads afterwards
/// lies behind them. (Its checksum, summed in place in a leaked mapping, lagged up to 8 KiB
/// behind the decoder and summed them after they went. A page read again is mapped again
/// with the pages around it, the kernel's fault-around or a whole large folio, and no later
/// release covered it: where the page cache held the file in 2 MiB folios, `check` of the
/// bench's mixed file on one thread kept 140 MiB of it mapped.) Where the kernel maps the file
/// 2 MiB at a time, the huge page the reader is in is mapped whole again as it reads on (a
/// release within it unmaps all of it): the pages before the one before it are looked at.
#[cfg(all(feature = "mmap", target_os = "linux"))]
#[test]
fn a_mapped_reader_reads_nothing_behind_the_pages_it_let_go() {
    const HUGE: u64 = 2 << 20;
    let dir = test_support::temp_dir("mapped-reader-behind");
    let path = dir.join("strings.rdb");
    // 24 MiB of small string keys
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    let mut i = 0u32;
    while f.len() < 24 << 20 {
        let (key, value) = (format!("key:{i:08}"), format!("value:{}", i % 997));
        f.push(0);
        for s in [key.as_bytes(), value.as_bytes()] {
            f.push(s.len() as u8);
            f.extend_from_slice(s);
        }
        i += 1;
    }
    f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
    std::fs::write(&path, &f).unwrap();
    for skip in [false, true] {
        let mut config = Config::default();
        config.skip_values(skip);
        let map = rdb_format::MappedFile::open(&path).unwrap().leak();
        let addr = map.bytes().as_ptr() as usize;
        let mut reader = rdb_format::MappedReader::new(map, config);
        let (mut keys, mut looked) = (0, 0);
        while reader.next_item().unwrap().is_some() {
            keys += 1;
            let behind = reader.decoder().offset().saturating_sub(3 * HUGE) / HUGE * HUGE;
            if behind > looked {
                let mapped = test_support::present_pages(addr, behind as usize);
                assert_eq!(
                    mapped,
                    0,
                    "pages mapped before {behind} with the decoder at {} (skip {skip})",
                    reader.decoder().offset()
                );
                looked = behind;
            }
        }
        assert!(
            keys > 700_000 && looked >= 16 << 20,
            "{keys} items, looked to {looked}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What is wrong in a big collection of [`big_collection`], by element index.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The member at `.0` repeats the member at `.1`.
    Dup(usize, usize),
    /// The member at `.0` is LZF-compressed data that does not give its length.
    BadLzf(usize),
    /// A sorted set's score at `.0` is NaN.
    Nan(usize),
    /// A hash's value at `.0` is bad LZF data.
    BadValue(usize),
}

/// An RDB 9 file: strings, then a collection of type `ty` (2 set, 4 hash, 5 sorted set) of
/// `n` members with `faults`, then strings.
fn big_collection(ty: u8, n: usize, faults: &[Fault]) -> Vec<u8> {
    let short = |f: &mut Vec<u8>, s: &[u8]| {
        f.push(s.len() as u8);
        f.extend_from_slice(s);
    };
    // one literal run: a valid LZF string of `s`, or one that claims a byte more
    let lzf = |f: &mut Vec<u8>, s: &[u8], bad: bool| {
        f.push(0xC3);
        f.push(s.len() as u8 + 1);
        f.push(s.len() as u8 + u8::from(bad));
        f.push(s.len() as u8 - 1);
        f.extend_from_slice(s);
    };
    let strings = |f: &mut Vec<u8>, prefix: &str| {
        for i in 0..30 {
            f.push(0);
            short(f, format!("{prefix}:{i}").as_bytes());
            short(f, b"value");
        }
    };
    let mut f = b"REDIS0009\xfe\x00".to_vec();
    strings(&mut f, "before");
    f.push(ty);
    short(&mut f, b"big");
    f.push(0x80);
    f.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let mut m = i;
        let mut bad_member = false;
        for fault in faults {
            match *fault {
                Fault::Dup(at, of) if at == i => m = of,
                Fault::BadLzf(at) => bad_member |= at == i,
                _ => {}
            }
        }
        let member = format!("member-{m:07}");
        if bad_member {
            lzf(&mut f, member.as_bytes(), true);
        } else {
            short(&mut f, member.as_bytes());
        }
        match ty {
            4 => {
                if faults
                    .iter()
                    .any(|x| matches!(x, Fault::BadValue(at) if *at == i))
                {
                    lzf(&mut f, b"a value", true);
                } else {
                    short(&mut f, b"v");
                }
            }
            5 => {
                let nan = faults
                    .iter()
                    .any(|x| matches!(x, Fault::Nan(at) if *at == i));
                let score = if nan { f64::NAN } else { i as f64 };
                f.extend(score.to_le_bytes());
            }
            _ => {}
        }
    }
    strings(&mut f, "after");
    f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
    f
}

/// The pipeline checks a big collection's members for duplicates on a thread beside the
/// batch's decoder, which goes on decoding meanwhile: a duplicate, wherever it is in the
/// collection and whatever else is wrong near it, still comes out as one decoder gives it,
/// after the same items, and the keys checked in part are counted alike.
#[test]
fn big_collections_checked_beside_their_decoder_fail_where_one_decoder_fails() {
    use Fault::*;
    let dir = test_support::temp_dir("pipeline-deferred-dups");
    let n = 150_000;
    let cases: Vec<(&str, u8, Vec<Fault>, bool)> = vec![
        ("set", 2, vec![], true),
        // in the first step, before the key starts coming in chunks
        ("set-dup-early", 2, vec![Dup(3, 1)], false),
        // the first member of the second step (the first takes 8,193)
        ("set-dup-second-step", 2, vec![Dup(8193, 0)], false),
        ("set-dup-last", 2, vec![Dup(n - 1, 70_000)], false),
        ("hash-dup", 4, vec![Dup(100_000, 99_999)], false),
        // the same member's duplicate and bad value: the duplicate is found first
        (
            "hash-dup-bad-value",
            4,
            vec![Dup(70_000, 5), BadValue(70_000)],
            false,
        ),
        (
            "hash-bad-value-then-dup",
            4,
            vec![BadValue(69_000), Dup(70_000, 5)],
            false,
        ),
        ("zset", 5, vec![], true),
        // a NaN score is found before the member's duplicate
        ("zset-nan-dup", 5, vec![Nan(50_000), Dup(50_000, 7)], false),
        (
            "zset-dup-then-nan",
            5,
            vec![Dup(49_990, 10), Nan(50_000)],
            false,
        ),
        (
            "set-lzf-then-dup",
            2,
            vec![BadLzf(60_000), Dup(60_010, 3)],
            false,
        ),
        (
            "set-dup-then-lzf",
            2,
            vec![Dup(60_000, 3), BadLzf(60_010)],
            false,
        ),
        // past a limit of 100,000: checked against the first 100,000 only
        ("set-dup-past-limit", 2, vec![Dup(140_000, 50_000)], false),
        (
            "set-dup-past-limit-missed",
            2,
            vec![Dup(140_000, 120_000)],
            true,
        ),
    ];
    let mut skip = Config::default();
    skip.skip_values(true);
    let mut chunked = Config::default();
    chunked.chunk_threshold(1000).chunk_size(700);
    let mut limited = Config::default();
    limited.dup_check_limit(100_000);
    for (name, ty, faults, ok) in cases {
        let path = dir.join(format!("{name}.rdb"));
        std::fs::write(&path, big_collection(ty, n, &faults)).unwrap();
        let past_limit = name.contains("past-limit");
        let configs = if past_limit {
            vec![limited]
        } else {
            vec![Config::default(), skip, chunked]
        };
        for config in configs {
            let want = sequential(&path, config);
            let failed = want.last().is_some_and(|l| l.starts_with("error"));
            assert_eq!(failed, !ok, "{name}: {:?}", want.last());
            for (threads, batch, spill) in [(1, 1 << 20, 1000), (2, 1, 1), (8, 300, 3)] {
                for (visit, map) in [(false, false), (true, true)] {
                    let got = parallel(&path, config, (threads, batch, spill), (visit, map));
                    assert!(
                        got == want,
                        "{name} at {threads} threads, batches of {batch}: {} items vs {}, \
                         last {:?} vs {:?}",
                        got.len(),
                        want.len(),
                        got.last(),
                        want.last()
                    );
                }
            }
        }
        if past_limit {
            // one key checked in part, by one decoder and by the pipeline
            let bytes = std::fs::read(&path).unwrap();
            let mut dec = rdb_format::Decoder::with_config(limited);
            let mut src = bytes::Bytes::from(bytes);
            while let Ok(Some(_)) = dec.decode_eof(&mut src) {}
            assert_eq!(dec.partial_checks(), 1, "{name}");
            let mut partial = 0;
            Pipeline::new(limited)
                .threads(2)
                .run(
                    &path,
                    |b, _| {
                        b.by_ref().take_while(|i| i.is_ok()).for_each(drop);
                        b.partial_checks()
                    },
                    |part| {
                        if let Part::Done(p) = part {
                            partial += p;
                        }
                        ControlFlow::Continue(())
                    },
                )
                .ok();
            assert_eq!(partial, 1, "{name}: keys checked in part");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With [`Pipeline::big_first`], the batches that hold a big record (found by the walker as
/// it cuts the file far ahead) are decoded before those ahead of them in the file, and
/// everything still comes out in file order, as one decoder gives it.
#[cfg(feature = "mmap")]
#[test]
fn big_batches_are_decoded_first_and_come_out_in_turn() {
    use std::sync::Mutex;
    let dir = test_support::temp_dir("parallel-big-first");
    let path = dir.join("sets.rdb");
    // (the sets' batches are cut far from each other)
    std::fs::write(&path, big_sets_between_n_strings(70_000, 5000, false)).unwrap();
    let want = sequential(&path, Config::default());
    for big_first in [false, true] {
        let started = Mutex::new(Vec::new());
        let mut got = Vec::new();
        Pipeline::new(Config::default())
            .threads(1)
            .batch_bytes(4096)
            .window(1 << 16)
            .map(true)
            .big_first(big_first)
            .run(
                &path,
                |b, _| {
                    let first = {
                        let mut s = started.lock().unwrap();
                        s.push(b.start());
                        s.len() == 1
                    };
                    if first {
                        // the walker cuts the whole file meanwhile
                        std::thread::sleep(std::time::Duration::from_millis(250));
                    }
                    b.map(|i| format!("{:?}", i.unwrap())).collect::<Vec<_>>()
                },
                |part| {
                    match part {
                        Part::Item(i) => got.push(format!("{i:?}")),
                        Part::Done(items) => got.extend(items),
                    }
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        assert!(
            got == want,
            "big first {big_first}: not what one decoder gives"
        );
        let started = started.into_inner().unwrap();
        let in_order = started.windows(2).all(|w| w[0] < w[1]);
        assert_eq!(in_order, !big_first, "batches started at {started:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
