//! `cargo xtask bench`: filled in by the benchmark work.

use anyhow::Result;

pub(crate) fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("bench: not written yet")
}
