//! [`Spool`]: where a big key's encoded body waits until its count is known — in memory up to
//! 4 MiB, then in an unnamed temporary file (deleted when closed; `TMPDIR` says where).

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use rdb_format::{Chunk, EncodeConfig, KeyHead, ValueHead, ValueWriter};

use crate::error::Result;

/// Bytes kept in memory before the spool moves to a file.
const IN_MEMORY: usize = 4 << 20;

/// An encoded body: memory first, a temporary file past [`IN_MEMORY`].
#[derive(Debug, Default)]
pub(crate) struct Spool {
    mem: Vec<u8>,
    file: Option<BufWriter<File>>,
    len: u64,
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.file.is_none() && self.mem.len() + buf.len() > IN_MEMORY {
            let mut f = BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(buf)?,
            None => self.mem.extend_from_slice(buf),
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Spool {
    /// Bytes written.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads back everything written, then empties the spool (its file is closed and gone).
    pub(crate) fn drain(&mut self, with: impl FnOnce(&mut dyn Read) -> Result<()>) -> Result<()> {
        let r = match self.file.take() {
            Some(f) => {
                let mut f = f.into_inner().map_err(|e| e.into_error())?;
                f.seek(SeekFrom::Start(0))?;
                with(&mut io::BufReader::with_capacity(1 << 16, f))
            }
            None => with(&mut &self.mem[..]),
        };
        self.mem.clear();
        self.mem.shrink_to(1 << 16);
        self.len = 0;
        r
    }
}

/// A big key being encoded: its head, the value writer and the body so far.
#[derive(Debug)]
pub(crate) struct BigKey {
    head: KeyHead,
    writer: ValueWriter,
    body: Spool,
}

impl BigKey {
    pub(crate) fn new(head: &KeyHead, cfg: &EncodeConfig) -> Result<Self> {
        Ok(Self {
            head: head.clone(),
            writer: ValueWriter::new(head, cfg).map_err(|e| e.for_key(&head.key))?,
            body: Spool::default(),
        })
    }

    pub(crate) fn chunk(&mut self, c: &Chunk) -> Result<()> {
        let key = &self.head.key;
        Ok(self
            .writer
            .chunk(c, &mut self.body)
            .map_err(|e| e.for_key(key))?)
    }

    /// The key's head, the value's head and its body.
    pub(crate) fn finish(mut self) -> Result<(KeyHead, ValueHead, Spool)> {
        let vh = self
            .writer
            .finish(&mut self.body)
            .map_err(|e| e.for_key(&self.head.key))?;
        Ok((self.head, vh, self.body))
    }
}
