//! `check` and `dump` give the same bytes at any thread count: every bundled RDB file, every
//! corpus file and every newest-format and differential file, at 1, 2 and 8 threads, with
//! batches cut at every key (so that every join, and every `SELECT` a join may drop, is
//! exercised) and at the default size.

use std::path::Path;

use crate::replicator;

/// Exit code, stdout and stderr of a run.
type Run = (Option<i32>, Vec<u8>, String);

/// Runs `args` on `path` with `threads` and batches of `batch` bytes.
fn run(path: &Path, args: &[&str], threads: &str, batch: &str) -> Run {
    let mut a = args.to_vec();
    let file = path.to_str().unwrap();
    a.insert(1, file);
    a.extend(["--threads", threads, "--batch-bytes", batch]);
    let o = replicator(&a);
    (
        o.status.code(),
        o.stdout,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Fails unless the run at `threads` gave what the run on one thread gave.
fn assert_same(got: &Run, want: &Run, what: &str, threads: &str, batch: &str) {
    assert!(
        got == want,
        "{what} at {threads} threads, batches of {batch}: exit {:?} vs {:?}\nstderr: {}\nvs {}\n\
         stdout {} vs {} bytes",
        got.0,
        want.0,
        got.2,
        want.2,
        got.1.len(),
        want.1.len()
    );
}

#[test]
fn every_file_gives_the_same_bytes_at_any_thread_count() {
    let files = test_support::every_rdb_file("the thread-count test's corpus files");
    assert!(files.len() > 40, "only {} files", files.len());
    let commands: [&[&str]; 6] = [
        &["check"],
        &["dump", "--format", "jsonl", "--all"],
        &["dump", "--format", "resp"],
        &["dump", "--format", "resp", "--restore"],
        &["dump", "--format", "keys", "--db", "0", "--db", "2"],
        &["dump", "--format", "count", "--type", "hash"],
    ];
    let (mut compared, mut failed) = (0, 0);
    for path in &files {
        for cmd in commands {
            let want = run(path, cmd, "1", "524288");
            if want.0 != Some(0) {
                failed += 1;
            }
            for (threads, batch) in [("2", "1"), ("8", "1"), ("2", "524288")] {
                let got = run(path, cmd, threads, batch);
                let what = format!("{} {cmd:?}", path.display());
                assert_same(&got, &want, &what, threads, batch);
                compared += 1;
            }
        }
    }
    // the refused files were compared too: the same first error
    assert!(failed > 20, "only {failed} failing runs");
    eprintln!("{compared} runs compared over {} files", files.len());
}

/// An RDB string of fewer than 64 bytes.
fn short_string(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 64);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// `n` string keys `prefix:i`, each a short string value.
fn strings(f: &mut Vec<u8>, prefix: &str, n: usize) {
    for i in 0..n {
        f.push(0); // a string key
        short_string(f, format!("{prefix}:{i}").as_bytes());
        short_string(f, format!("value {i} of {prefix}").as_bytes());
    }
}

/// An RDB 9 file: strings in db 0, then in db 2 a hash of `fields` fields (the decoder hands
/// it out in chunks past 8,192), more strings in db 2 and one in db 0 again. `dup_at`: the
/// field at that place repeats the first one. Returns the file and where the hash's value
/// starts and ends.
fn file_with_a_big_hash(fields: usize, dup_at: Option<usize>) -> (Vec<u8>, usize, usize) {
    let mut f = b"REDIS0009".to_vec();
    f.extend([0xFE, 0]);
    strings(&mut f, "before", 300);
    f.extend([0xFE, 2]);
    strings(&mut f, "db2", 10);
    f.push(4); // a hash of plain strings
    short_string(&mut f, b"big:hash");
    let start = f.len();
    f.push(0x80);
    f.extend((fields as u32).to_be_bytes());
    for i in 0..fields {
        let field = if dup_at == Some(i) { 0 } else { i };
        short_string(&mut f, format!("field-{field}").as_bytes());
        short_string(&mut f, format!("value \"{i}\"").as_bytes());
    }
    let end = f.len();
    strings(&mut f, "after", 300);
    f.extend([0xFE, 0]);
    strings(&mut f, "last", 1);
    f.push(0xFF);
    f.extend([0; 8]); // checksum disabled
    (f, start, end)
}

/// Runs each of `commands` on a whole file, one with a duplicate field and one cut inside the
/// big hash, on one thread and at each of `configs` (threads, batch bytes): the same exit
/// code, stdout and stderr. `look` sees each one-thread run first (file name, command, output).
/// The three files the big-key tests run, with whether each is good: a big hash of `fields`
/// whole, with a duplicate at `dup_at`, and cut `num / den` of the way into the hash.
fn whole_dup_and_cut(
    fields: usize,
    dup_at: usize,
    (num, den): (usize, usize),
) -> [(&'static str, Vec<u8>, bool); 3] {
    let (whole, start, end) = file_with_a_big_hash(fields, None);
    let (dup, ..) = file_with_a_big_hash(fields, Some(dup_at));
    let cut = whole[..start + (end - start) * num / den].to_vec();
    [
        ("whole", whole, true),
        ("dup", dup, false),
        ("cut", cut, false),
    ]
}

fn same_whole_dup_or_cut(
    dir: &Path,
    files: [(&str, Vec<u8>, bool); 3],
    commands: &[&[&str]],
    configs: &[(&str, &str)],
    look: impl Fn(&str, &[&str], &[u8], bool),
) {
    for (name, bytes, ok) in files {
        let path = dir.join(format!("{name}.rdb"));
        std::fs::write(&path, bytes).unwrap();
        for &cmd in commands {
            let want = run(&path, cmd, "1", "524288");
            assert_eq!(want.0 == Some(0), ok, "{name} {cmd:?}: {}", want.2);
            look(name, cmd, &want.1, ok);
            for &(threads, batch) in configs {
                let got = run(&path, cmd, threads, batch);
                assert_same(&got, &want, &format!("{name} {cmd:?}"), threads, batch);
            }
        }
    }
}

#[test]
fn a_big_key_gives_the_same_bytes_at_any_thread_count_whole_cut_or_bad() {
    // the caller's thread prints a big key as a worker decodes it: what the worker printed
    // before it, the SELECTs around it, the keys counted, and an error inside it must come out
    // as one printer has them
    let dir = test_support::temp_dir("threads-big-key");
    let files = whole_dup_and_cut(20_000, 13_000, (2, 3));
    let commands: [&[&str]; 7] = [
        &["check"],
        &["dump", "--format", "jsonl", "--all"],
        &["dump", "--format", "resp"],
        &["dump", "--format", "resp", "--db", "2"],
        &["dump", "--format", "keys"],
        &["dump", "--format", "count"],
        &["dump", "--format", "count", "--type", "string"],
    ];
    let configs = [("2", "1"), ("2", "524288"), ("8", "4096")];
    same_whole_dup_or_cut(&dir, files, &commands, &configs, |name, cmd, out, ok| {
        if cmd[0] == "dump" && cmd[2] == "jsonl" {
            let text = String::from_utf8_lossy(out);
            // the big key's start is printed, whole or not
            assert!(
                text.contains("\"field-12000\":\"value \\\"12000\\\"\""),
                "{name}"
            );
            assert_eq!(text.contains("\"after:0\""), ok, "{name}");
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_key_bigger_than_the_walkers_reach_gives_the_same_bytes_whole_cut_or_bad() {
    // a record of 7 MB: the walker hands it to a worker as a batch of its own while it walks
    // it (past 4 MiB), and cuts the next batch where that worker's key ends
    let dir = test_support::temp_dir("threads-open-record");
    // a duplicate past the point where the record was handed over
    let files = whole_dup_and_cut(250_000, 240_000, (9, 10));
    let (_, start, end) = file_with_a_big_hash(250_000, None);
    assert!(end - start > 6 << 20);
    let commands: [&[&str]; 4] = [
        &["check"],
        &["dump", "--format", "jsonl", "--all"],
        &["dump", "--format", "resp", "--db", "2"],
        &["dump", "--format", "count"],
    ];
    let configs = [("2", "524288"), ("8", "4096")];
    same_whole_dup_or_cut(&dir, files, &commands, &configs, |name, cmd, out, ok| {
        if cmd[0] == "check" {
            // what follows the big key was read (or the error named)
            assert!(
                out.ends_with(b"RDB looks OK\n") == ok,
                "{name}: {}",
                String::from_utf8_lossy(out)
            );
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file cut short by someone else while it is mapped and decoded (on one thread or two): a message
/// and status 1, not a death by `SIGBUS` with nothing said.
#[cfg(target_os = "linux")]
#[test]
fn a_file_cut_short_while_it_is_read_is_reported() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = test_support::temp_dir("threads-sigbus");
    // on one thread the file is mapped too (by default), on several always
    for threads in ["1", "2"] {
        let path = dir.join(format!("big-{threads}.rdb"));
        // ten strings of 10 MB: printing them as JSON takes this (unoptimized) build seconds
        let mut f = b"REDIS0009\xfe\x00".to_vec();
        for i in 0..10u8 {
            f.extend([0, 5]);
            f.extend(format!("big:{i}").as_bytes());
            f.push(0x80);
            f.extend(10_000_000u32.to_be_bytes());
            f.extend(std::iter::repeat_n(b'a' + i, 10_000_000));
        }
        f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
        std::fs::write(&path, &f).unwrap();
        let file = path.to_str().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args(["dump", file, "--format", "jsonl", "--threads", threads])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // once the file is mapped, cut it to its first page
        let maps = format!("/proc/{}/maps", child.id());
        let since = Instant::now();
        while !std::fs::read_to_string(&maps).is_ok_and(|m| m.contains(file)) {
            assert!(since.elapsed() < Duration::from_secs(20), "never mapped");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{threads} threads: {stderr}");
        assert!(
            stderr.contains("cut short while it was being read"),
            "{threads} threads: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pipe (a FIFO, `<(...)`) is read once, front to back, as an RDB file, at any thread count:
/// the same output as the file, where it used to wait forever (the format was sniffed on a
/// first open, and a FIFO opened again waits for a writer that is gone).
#[cfg(target_os = "linux")]
#[test]
fn a_pipe_is_read_once_at_any_thread_count() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = test_support::temp_dir("threads-fifo");
    let file = test_support::testdata().join("redis-7.0-compact.rdb");
    let want = replicator(&["dump", file.to_str().unwrap(), "--format", "jsonl"]);
    assert!(want.status.success());
    for threads in ["1", "2"] {
        let fifo = dir.join(format!("fifo-{threads}"));
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let writer = {
            let (fifo, file) = (fifo.clone(), file.clone());
            // ends with an error if the reader closes early; the output comparison tells
            std::thread::spawn(move || std::fs::write(fifo, std::fs::read(file).unwrap()))
        };
        // into a file: a pipe the test did not read while it waits would fill
        let out = dir.join(format!("out-{threads}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args(["dump", fifo.to_str().unwrap(), "--format", "jsonl"])
            .args(["--threads", threads])
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .spawn()
            .unwrap();
        let since = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if since.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                // (a writer still waiting for a reader is left behind: the panic ends the test)
                panic!("a pipe at {threads} threads: still waiting after 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = child.wait().unwrap();
        let _ = writer.join();
        assert!(status.success(), "a pipe at {threads} threads");
        let got = std::fs::read(&out).unwrap();
        assert!(got == want.stdout, "a pipe at {threads} threads");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker hands a batch's output over once, at its end, unless it passed 2 MiB (then at
/// each 2 MiB) or a big key comes: batches of 64 MiB (the whole file), 1 MiB and 3 MB whose
/// output passes 2 MiB several times, with `SELECT`s inside them and at their starts, and a
/// big hash after 2 MiB of output, give what one thread gives.
#[test]
fn a_batch_handed_over_in_pieces_gives_the_same_bytes() {
    let dir = test_support::temp_dir("threads-handed");
    let mut f = b"REDIS0009".to_vec();
    f.extend([0xFE, 0]);
    strings(&mut f, "a", 50_000);
    f.extend([0xFE, 3]);
    strings(&mut f, "b", 50_000);
    f.push(4);
    short_string(&mut f, b"big:hash");
    f.push(0x80);
    f.extend(20_000u32.to_be_bytes());
    for i in 0..20_000 {
        short_string(&mut f, format!("field-{i}").as_bytes());
        short_string(&mut f, format!("value {i}").as_bytes());
    }
    strings(&mut f, "c", 50_000);
    f.extend([0xFE, 0]);
    strings(&mut f, "d", 50_000);
    f.push(0xFF);
    f.extend([0; 8]);
    let path = dir.join("handed.rdb");
    std::fs::write(&path, &f).unwrap();
    let commands: [&[&str]; 4] = [
        &["dump", "--format", "jsonl", "--all"],
        &["dump", "--format", "resp"],
        &["dump", "--format", "resp", "--db", "3"],
        &["dump", "--format", "keys"],
    ];
    for cmd in commands {
        let want = run(&path, cmd, "1", "524288");
        assert_eq!(want.0, Some(0), "{cmd:?}: {}", want.2);
        // several hand-overs' worth of output in one batch
        assert!(want.1.len() > 4 << 20 || cmd[2] == "keys", "{cmd:?}");
        if cmd[2] == "resp" && cmd.len() == 3 {
            let text = String::from_utf8_lossy(&want.1);
            assert_eq!(text.matches("SELECT").count(), 3, "{cmd:?}");
        }
        for (threads, batch) in [("2", "67108864"), ("2", "1048576"), ("8", "3000000")] {
            let got = run(&path, cmd, threads, batch);
            assert_same(&got, &want, &format!("{cmd:?}"), threads, batch);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
