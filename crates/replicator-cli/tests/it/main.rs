//! End-to-end tests of the `replicator` binary against fixtures written by real servers.

mod aof;
mod fixtures;
mod newest;
mod ops;
mod rebuild;
mod reencode;
mod replicate;
mod sync;
mod twochannel;

use std::path::PathBuf;
use std::process::{Command, Output};

pub(crate) fn testdata() -> PathBuf {
    test_support::testdata()
}

pub(crate) fn replicator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(args)
        .output()
        .expect("run replicator")
}

/// The fixture list written by `cargo xtask fixtures`.
pub(crate) fn fixtures() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(testdata().join("fixtures.json")).expect("fixtures.json");
    let v: Vec<serde_json::Value> = serde_json::from_str(&text).expect("fixtures.json parses");
    assert!(!v.is_empty(), "no fixtures");
    v
}
