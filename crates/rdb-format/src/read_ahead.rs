//! [`ReadAhead`]: a driver that reads on a second thread, so the kernel's copy of the next block
//! overlaps with decoding the current one (`read` was a fifth of `check`'s time on two cores).
//!
//! Blocks are handed over without copying: each block is read behind some free room, and the
//! bytes of a unit still being decoded (always short: one key, one element) are copied into that
//! room, so the decoder sees one contiguous buffer.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};

use crate::decoder::{Config, Decoder, Visit};
use crate::error::{Error, Result};
use crate::reader::turn;
use crate::value::{Item, Visitor};
use bytes::{Buf, Bytes, BytesMut};

const BLOCK: usize = 1 << 20;
const ROOM: usize = 64 << 10;

/// Blocking driver that reads ahead on its own thread: for files and pipes, where the decoder
/// should not wait for each `read`. Memory stays at a few MiB (two 1 MiB blocks in flight).
///
/// ```
/// let file: &[u8] = b"REDIS0009\xfa\x03ver\x055.0.0\xff\0\0\0\0\0\0\0\0";
/// let items: Result<Vec<_>, _> = rdb_format::ReadAhead::spawn(file, Default::default()).collect();
/// assert_eq!(items.unwrap().len(), 3); // header, aux, eof
/// ```
pub struct ReadAhead {
    room: usize,
    dec: Decoder,
    buf: BytesMut,
    rx: Receiver<io::Result<Vec<u8>>>,
    eof: bool,
    failed: bool,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("offset", &self.dec.offset())
            .finish()
    }
}

impl ReadAhead {
    /// Starts the reading thread over `inner` (a `File`, standard input, anything `Send`).
    pub fn spawn<R: Read + Send + 'static>(inner: R, config: Config) -> Self {
        Self::with_sizes(inner, config, BLOCK, ROOM)
    }

    fn with_sizes<R: Read + Send + 'static>(
        mut inner: R,
        config: Config,
        block_size: usize,
        room: usize,
    ) -> Self {
        // two blocks in flight: memory stays at a few MiB
        let (tx, rx) = sync_channel(2);
        std::thread::spawn(move || {
            loop {
                // the room is zeroed, the block is read into spare capacity (not zeroed first)
                let mut block = vec![0u8; room];
                block.reserve_exact(block_size);
                // (read_to_end goes on after an interrupted read by itself)
                let result = (&mut inner)
                    .take(block_size as u64)
                    .read_to_end(&mut block)
                    .map(drop);
                let n = block.len();
                let last = n < room + block_size;
                let msg = match result {
                    Ok(()) => Ok(block),
                    Err(e) => Err(e),
                };
                let stop = msg.is_err() || last;
                if tx.send(msg).is_err() || stop {
                    return;
                }
            }
        });
        Self {
            room,
            dec: Decoder::with_config(config),
            buf: BytesMut::new(),
            rx,
            eof: false,
            failed: false,
        }
    }

    /// The decoder (version, offset, flavor).
    pub fn decoder(&self) -> &Decoder {
        &self.dec
    }

    /// The next item, `Ok(None)` at the end of the file.
    #[inline]
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        self.next_inner(None)
    }

    /// As [`next_item`](Self::next_item), with string keys (and checked keys, to a visitor
    /// that takes them) handed to `visit` ([`Decoder::decode_with`]).
    #[inline]
    pub fn next_item_with(&mut self, visit: &mut dyn Visitor) -> Result<Option<Item>> {
        self.next_inner(Some(visit))
    }

    #[inline]
    fn next_inner(&mut self, mut visit: Visit<'_, '_>) -> Result<Option<Item>> {
        if self.failed {
            return Ok(None);
        }
        loop {
            let (dec, buf, eof) = (&mut self.dec, &mut self.buf, self.eof);
            if let Some(answer) = turn(dec, buf, eof, &mut self.failed, visit.as_deref_mut()) {
                return answer;
            }
            let block = match self.rx.recv() {
                Ok(Ok(block)) => block,
                Ok(Err(e)) => {
                    self.failed = true;
                    let offset = self.dec.offset() + self.buf.len() as u64;
                    return Err(Error::from_io(e, offset));
                }
                Err(_) => {
                    self.eof = true;
                    continue;
                }
            };
            let room = self.room;
            if block.len() == room {
                self.eof = true;
                continue;
            }
            let left = self.buf.len();
            if left <= room {
                // put the unfinished unit in front of the new block: no copy of the block
                let mut block = block;
                block[room - left..room].copy_from_slice(&self.buf);
                // a Vec turned into Bytes is uniquely owned: into BytesMut without a copy
                let mut next = Bytes::from(block)
                    .try_into_mut()
                    .unwrap_or_else(|b| BytesMut::from(&b[..]));
                next.advance(room - left);
                self.buf = next;
            } else {
                self.buf.extend_from_slice(&block[room..]);
            }
        }
    }
}

impl Iterator for ReadAhead {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(mut p: ReadAhead) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        while let Some(i) = p.next_item()? {
            out.push(i);
        }
        Ok(out)
    }

    #[test]
    fn block_boundaries_do_not_matter() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
        for name in ["redis-7.0-compact.rdb", "valkey-9.1-plain.rdb"] {
            let data = std::fs::read(dir.join(name)).unwrap();
            let want: Vec<Item> = crate::BytesReader::new(data.clone().into())
                .collect::<Result<_, _>>()
                .unwrap();
            // small blocks and room: units both fit the room (copied in front) and do not
            // (appended), at every kind of boundary
            for (block, room) in [(97, 13), (4096, 512), (1, 1), (data.len(), 8)] {
                let got = items(ReadAhead::with_sizes(
                    io::Cursor::new(data.clone()),
                    Config::default(),
                    block,
                    room,
                ))
                .unwrap();
                assert_eq!(got, want, "{name} block {block} room {room}");
            }
            let cut = data[..data.len() / 2].to_vec();
            let r = items(ReadAhead::with_sizes(
                io::Cursor::new(cut),
                Config::default(),
                97,
                13,
            ));
            assert!(r.unwrap_err().is_truncated(), "{name}");
        }
    }
}
