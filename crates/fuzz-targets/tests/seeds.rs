//! Every fuzz target body over its seeds and its saved regression inputs.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    test_support::workspace_root()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn inputs(target: &str, seed_dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    files(&root().join("fuzz/regressions").join(target), &mut paths);
    for d in seed_dirs {
        files(d, &mut paths);
    }
    paths.sort();
    paths
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 4 << 20))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn corpus() -> Vec<PathBuf> {
    test_support::corpus_dir("the corpus as fuzz seeds")
        .into_iter()
        .collect()
}

#[test]
fn rdb_file_over_seeds_and_regressions() {
    let mut seeds = vec![root().join("testdata")];
    seeds.extend(corpus());
    let inputs = inputs("rdb_file", &seeds);
    assert!(inputs.len() > 10);
    for i in &inputs {
        fuzz_targets::rdb_file(i);
    }
}

#[test]
fn rdb_dump_over_regressions_and_file_bodies() {
    let mut n = 0;
    for i in inputs("rdb_dump", &[root().join("testdata")]) {
        fuzz_targets::rdb_dump(&i);
        // an RDB's bytes after the 9-byte header look much like a payload body
        if i.len() > 9 {
            fuzz_targets::rdb_dump(&i[9..]);
        }
        n += 1;
    }
    assert!(n > 0);
    // the seeds of real DUMP payloads (Redis 8.6, the 8.8 format, Valkey 9.1) decode
    let seeds = inputs("none", &[root().join("fuzz/seeds/rdb_dump")]);
    assert!(seeds.len() >= 40);
    for s in &seeds {
        rdb_format::decode_dump(s).unwrap();
        fuzz_targets::rdb_dump(s);
    }
}

#[test]
fn resp_over_seeds_and_regressions() {
    let mut seeds = vec![root().join("testdata/aof")];
    seeds.extend(corpus().into_iter().map(|c| c.join("redis-replicator")));
    for i in inputs("resp", &seeds) {
        fuzz_targets::resp(&i);
    }
}

#[test]
fn aof_manifest_over_seeds_and_regressions() {
    let mut n = 0;
    for i in inputs("aof_manifest", &[root().join("testdata/aof")]) {
        fuzz_targets::aof_manifest(&i);
        n += 1;
    }
    assert!(n > 0);
}
