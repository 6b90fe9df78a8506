//! Repairs as `redis-check-aof --fix` makes them: cut a file where its last whole command ends,
//! after copying it aside.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Copies `path` to the first free `path.bak`, `path.bak.1`, … then cuts `path` to `len`
/// bytes (synced); returns the copy's path. `len` is what [`Error::ok_up_to`](crate::Error::ok_up_to)
/// or an annotation's offset says.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("appendonly.aof");
/// std::fs::write(&path, b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI").unwrap();
/// let bak = aof_manifest::truncate_with_backup(&path, 14).unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"*1\r\n$4\r\nPING\r\n");
/// assert_eq!(std::fs::read(&bak).unwrap().len(), 24);
/// ```
pub fn truncate_with_backup(path: &Path, len: u64) -> io::Result<PathBuf> {
    let base = path.as_os_str().to_owned();
    let mut bak = None;
    for i in 0u32.. {
        let mut name = base.clone();
        name.push(if i == 0 {
            ".bak".to_owned()
        } else {
            format!(".bak.{i}")
        });
        let candidate = PathBuf::from(name);
        if !candidate.exists() {
            bak = Some(candidate);
            break;
        }
    }
    let bak = bak.ok_or_else(|| io::Error::other("no free backup name"))?;
    std::fs::copy(path, &bak)?;
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()?;
    Ok(bak)
}

/// The 1-based line of the byte at `offset` in `path` (what `redis-check-aof` reports as
/// `ok_up_to_line`).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("appendonly.aof");
/// std::fs::write(&path, b"*1\r\n$4\r\nPING\r\n").unwrap();
/// assert_eq!(aof_manifest::line_of(&path, 14).unwrap(), 4);
/// ```
pub fn line_of(path: &Path, offset: u64) -> io::Result<u64> {
    let mut f = std::fs::File::open(path)?.take(offset);
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 1;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}
