//! End-to-end tests of the `replicator` binary against fixtures written by real servers.

mod aof;
mod fixtures;
mod memory;
mod newest;
mod ops;
mod rebuild;
mod reencode;
mod replicate;
mod sync;
mod threads;
mod twochannel;

use std::path::PathBuf;
use std::process::{Command, Output};

pub(crate) fn testdata() -> PathBuf {
    test_support::testdata()
}

/// SIGTERM to `child` (a `replicator` with piped stderr): whether it exited 0, and its stderr.
pub(crate) fn term(child: &mut std::process::Child) -> (bool, String) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let status = child.wait().expect("wait");
    let mut e = String::new();
    if let Some(mut err) = child.stderr.take() {
        std::io::Read::read_to_string(&mut err, &mut e).expect("stderr");
    }
    (status.success(), e)
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
