//! Ziplists (RDB 9 and before): the reader, with every check Redis makes, and the writer.

use super::{R, Raw, err, get, le, sext};
use crate::encode::canonical_int;
use crate::value::Elem;

/// Walks a ziplist, calling `f` for each element, with the checks of Redis'
/// `ziplistValidateIntegrity` (deep): `zlbytes`, the end byte, every entry's `prevlen` against
/// the entry before it, `zltail` against the last entry, and `zllen` (65535 = unknown) against
/// the count.
pub(crate) fn ziplist(b: &[u8], mut f: impl FnMut(Raw) -> R<()>) -> R<()> {
    const W: &str = "ziplist";
    let header = get(b, 0, 10, W)?;
    let zlbytes = le(&header[0..4]) as usize;
    if zlbytes != b.len() {
        return err(
            W,
            0,
            format!("header says {zlbytes} bytes, blob has {}", b.len()),
        );
    }
    if b.len() < 11 || b[b.len() - 1] != 0xFF {
        return err(W, b.len().saturating_sub(1), "no end byte (0xff)");
    }
    let zltail = le(&header[4..8]) as usize;
    let zllen = le(&header[8..10]) as usize;
    let mut pos = 10;
    let mut prev_len = 0usize;
    let mut last = None;
    let mut count = 0usize;
    loop {
        let start = pos;
        let first = get(b, pos, 1, W)?[0];
        if first == 0xFF {
            if pos + 1 != b.len() {
                return err(W, pos, "end marker before the end of the blob");
            }
            break;
        }
        // prevlen: the previous entry's length, 1 byte or 0xFE + 4 bytes
        let prevlen = if first < 254 {
            pos += 1;
            usize::from(first)
        } else {
            let x = get(b, pos + 1, 4, W)?;
            pos += 5;
            le(x) as usize
        };
        if prevlen != prev_len {
            return err(
                W,
                start,
                format!(
                    "entry {count} says the entry before it is {prevlen} bytes, it is {prev_len}"
                ),
            );
        }
        let enc = get(b, pos, 1, W)?[0];
        let elem = match enc >> 6 {
            0 => {
                let len = usize::from(enc & 0x3F);
                pos += 1;
                get(b, pos, len, W)?;
                pos += len;
                Raw::Range(pos - len, pos)
            }
            1 => {
                let x = get(b, pos, 2, W)?;
                let len = (usize::from(x[0] & 0x3F) << 8) | usize::from(x[1]);
                pos += 2;
                get(b, pos, len, W)?;
                pos += len;
                Raw::Range(pos - len, pos)
            }
            2 => {
                if enc != 0x80 {
                    return err(W, pos, format!("bad string encoding byte {enc:#x}"));
                }
                let x = get(b, pos + 1, 4, W)?;
                let len = u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize;
                pos += 5;
                get(b, pos, len, W)?;
                pos += len;
                Raw::Range(pos - len, pos)
            }
            _ => {
                pos += 1;
                let (n, bits) = match enc {
                    0xC0 => (2, 16),
                    0xD0 => (4, 32),
                    0xE0 => (8, 64),
                    0xF0 => (3, 24),
                    0xFE => (1, 8),
                    0xF1..=0xFD => (0, 0),
                    _ => return err(W, pos - 1, format!("bad integer encoding byte {enc:#x}")),
                };
                if n == 0 {
                    Raw::Int(i64::from(enc & 0x0F) - 1)
                } else {
                    let x = get(b, pos, n, W)?;
                    pos += n;
                    Raw::Int(sext(le(x), bits))
                }
            }
        };
        // an entry may not run into the end byte
        if pos > b.len() - 1 {
            return err(W, start, "entry runs past the end byte");
        }
        prev_len = pos - start;
        last = Some(start);
        count += 1;
        f(elem)?;
    }
    match last {
        Some(l) if l != zltail => {
            return err(
                W,
                4,
                format!("zltail is {zltail}, the last entry is at {l}"),
            );
        }
        None if zltail > b.len() - 1 => {
            return err(W, 4, format!("zltail {zltail} is past the end"));
        }
        _ => {}
    }
    if zllen != 0xFFFF && zllen != count {
        return err(
            W,
            8,
            format!("zllen is {zllen}, the ziplist holds {count} entries"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- writer

/// A ziplist being built (RDB 9 compact encodings).
pub(crate) struct Ziplist {
    pub(crate) buf: Vec<u8>,
    pub(crate) count: usize,
    prev: usize,
    tail: usize,
}

impl Ziplist {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0; 10],
            count: 0,
            prev: 0,
            tail: 10,
        }
    }

    pub(crate) fn entry(&mut self, enc: &[u8], data: &[u8]) {
        let start = self.buf.len();
        self.tail = start;
        if self.prev < 254 {
            self.buf.push(self.prev as u8);
        } else {
            self.buf.push(0xFE);
            self.buf
                .extend_from_slice(&(self.prev as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(enc);
        self.buf.extend_from_slice(data);
        self.prev = self.buf.len() - start;
        self.count += 1;
    }

    pub(crate) fn int(&mut self, v: i64) {
        if (0..=12).contains(&v) {
            self.entry(&[0xF1 + v as u8], &[]);
        } else if let Ok(x) = i8::try_from(v) {
            self.entry(&[0xFE], &x.to_le_bytes());
        } else if let Ok(x) = i16::try_from(v) {
            self.entry(&[0xC0], &x.to_le_bytes());
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            self.entry(&[0xF0], &(v as i32).to_le_bytes()[..3]);
        } else if let Ok(x) = i32::try_from(v) {
            self.entry(&[0xD0], &x.to_le_bytes());
        } else {
            self.entry(&[0xE0], &v.to_le_bytes());
        }
    }

    pub(crate) fn str(&mut self, s: &[u8]) {
        if let Some(v) = canonical_int(s) {
            return self.int(v);
        }
        let n = s.len();
        if n < 64 {
            self.entry(&[n as u8], s);
        } else if n < 16384 {
            self.entry(&[0x40 | (n >> 8) as u8, n as u8], s);
        } else {
            let mut enc = vec![0x80];
            enc.extend_from_slice(&(n as u32).to_be_bytes());
            self.entry(&enc, s);
        }
    }

    pub(crate) fn elem(&mut self, e: &Elem) {
        match e {
            Elem::Int(i) => self.int(*i),
            Elem::Bytes(b) => self.str(b),
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xFF);
        let total = self.buf.len() as u32;
        let tail = self.tail as u32;
        let count = u16::try_from(self.count).unwrap_or(u16::MAX);
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        self.buf[4..8].copy_from_slice(&tail.to_le_bytes());
        self.buf[8..10].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}
