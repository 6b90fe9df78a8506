//! `check` and `dump` give the same bytes at any thread count: every bundled RDB file, every
//! corpus file and every newest-format and differential file, at 1, 2 and 8 threads, with
//! batches cut at every key (so that every join, and every `SELECT` a join may drop, is
//! exercised) and at the default size.

use std::path::Path;

use crate::replicator;

/// Exit code, stdout and stderr of a run.
fn run(path: &Path, args: &[&str], threads: &str, batch: &str) -> (Option<i32>, Vec<u8>, String) {
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
                assert!(
                    got == want,
                    "{} {cmd:?} at {threads} threads, batches of {batch}: exit {:?} vs {:?}\n\
                     stderr: {}\nvs {}\nstdout {} vs {} bytes",
                    path.display(),
                    got.0,
                    want.0,
                    got.2,
                    want.2,
                    got.1.len(),
                    want.1.len()
                );
                compared += 1;
            }
        }
    }
    // the refused files were compared too: the same first error
    assert!(failed > 20, "only {failed} failing runs");
    eprintln!("{compared} runs compared over {} files", files.len());
}
