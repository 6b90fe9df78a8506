//! Listpacks (RDB 10+): the reader, with every check Redis makes, and the writer.

use super::{R, Raw, err, get, le, sext};
use crate::encode::canonical_int;
use crate::value::Elem;

/// Bytes of a listpack entry's back-length for an entry of `l` bytes (`lpEncodeBacklen`).
fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Reads a back-length ending at `end` (exclusive), as `lpDecodeBacklen` does.
fn decode_backlen(b: &[u8], end: usize) -> Option<u64> {
    let mut val = 0u64;
    let mut shift = 0;
    let mut p = end.checked_sub(1)?;
    loop {
        let x = b[p];
        val |= u64::from(x & 127) << shift;
        if x & 128 == 0 {
            return Some(val);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
        p = p.checked_sub(1)?;
    }
}

/// Walks a listpack, calling `f` for each element, with the checks of Redis'
/// `lpValidateIntegrity` (deep): total bytes, the end byte, every entry's back-length, and the
/// element count (65535 = unknown).
pub(crate) fn listpack(b: &[u8], mut f: impl FnMut(Raw) -> R<()>) -> R<()> {
    const W: &str = "listpack";
    let header = get(b, 0, 6, W)?;
    let total = le(&header[0..4]) as usize;
    if total != b.len() {
        return err(
            W,
            0,
            format!("header says {total} bytes, blob has {}", b.len()),
        );
    }
    if b.len() < 7 || b[b.len() - 1] != 0xFF {
        return err(W, b.len().saturating_sub(1), "no end byte (0xff)");
    }
    let numele = le(&header[4..6]) as usize;
    let mut count = 0usize;
    let mut pos = 6;
    loop {
        let start = pos;
        let enc = get(b, pos, 1, W)?[0];
        // The common entries, a small integer or a string of under 64 bytes, whose
        // back-length is one byte (the entry's length) that lies before the end byte: taken
        // at once (through the general way below, the checks of each were eighty
        // instructions). Any other, or one that fails a check, goes that way.
        let short = match enc {
            0..=0x7f => Some((1, Raw::Int(i64::from(enc)))),
            0x80..=0xbf => {
                let len = usize::from(enc & 0x3f);
                Some((1 + len, Raw::Range(pos + 1, pos + 1 + len)))
            }
            _ => None,
        };
        if let Some((entry_len, elem)) = short {
            if pos + entry_len < b.len() - 1 && usize::from(b[pos + entry_len]) == entry_len {
                pos += entry_len + 1;
                count += 1;
                f(elem)?;
                continue;
            }
        }
        let elem = if enc == 0xFF {
            if pos + 1 != b.len() {
                return err(W, pos, "end marker before the end of the blob");
            }
            break;
        } else if enc & 0x80 == 0 {
            pos += 1;
            Raw::Int(i64::from(enc))
        } else if enc & 0xC0 == 0x80 {
            let len = usize::from(enc & 0x3F);
            pos += 1;
            get(b, pos, len, W)?;
            pos += len;
            Raw::Range(pos - len, pos)
        } else if enc & 0xE0 == 0xC0 {
            let x = get(b, pos, 2, W)?;
            pos += 2;
            Raw::Int(sext((u64::from(x[0] & 0x1F) << 8) | u64::from(x[1]), 13))
        } else if enc & 0xF0 == 0xE0 {
            let x = get(b, pos, 2, W)?;
            let len = (usize::from(x[0] & 0x0F) << 8) | usize::from(x[1]);
            pos += 2;
            get(b, pos, len, W)?;
            pos += len;
            Raw::Range(pos - len, pos)
        } else {
            let (n, bits) = match enc {
                0xF0 => {
                    let x = get(b, pos + 1, 4, W)?;
                    let len = le(x) as usize;
                    pos += 5;
                    get(b, pos, len, W)?;
                    pos += len;
                    (usize::MAX, len)
                }
                0xF1 => (2, 16),
                0xF2 => (3, 24),
                0xF3 => (4, 32),
                0xF4 => (8, 64),
                _ => return err(W, pos, format!("bad encoding byte {enc:#x}")),
            };
            if n == usize::MAX {
                Raw::Range(pos - bits, pos)
            } else {
                let x = get(b, pos + 1, n, W)?;
                pos += 1 + n;
                Raw::Int(sext(le(x), bits as u32))
            }
        };
        // backlen: the entry's own length, 7 bits per byte, read from its last byte backwards
        let entry_len = pos - start;
        let size = backlen_size(entry_len);
        get(b, pos, size, W)?;
        pos += size;
        if pos > b.len() - 1 {
            return err(W, start, "entry runs past the end byte");
        }
        if decode_backlen(b, pos) != Some(entry_len as u64) {
            return err(
                W,
                pos - size,
                format!("entry {count} is {entry_len} bytes, its back-length says otherwise"),
            );
        }
        count += 1;
        f(elem)?;
    }
    if numele != 0xFFFF && numele != count {
        return err(
            W,
            4,
            format!("header says {numele} elements, the listpack holds {count}"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- writer

/// A listpack being built.
pub(crate) struct Listpack {
    pub(crate) buf: Vec<u8>,
    pub(crate) count: usize,
}

impl Listpack {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0; 6],
            count: 0,
        }
    }

    pub(crate) fn backlen(&mut self, l: usize) {
        if l <= 127 {
            self.buf.push(l as u8);
        } else if l < 16383 {
            self.buf
                .extend_from_slice(&[(l >> 7) as u8, (l & 127) as u8 | 128]);
        } else if l < 2_097_151 {
            self.buf.extend_from_slice(&[
                (l >> 14) as u8,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]);
        } else if l < 268_435_455 {
            self.buf.extend_from_slice(&[
                (l >> 21) as u8,
                ((l >> 14) & 127) as u8 | 128,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]);
        } else {
            self.buf.extend_from_slice(&[
                (l >> 28) as u8,
                ((l >> 21) & 127) as u8 | 128,
                ((l >> 14) & 127) as u8 | 128,
                ((l >> 7) & 127) as u8 | 128,
                (l & 127) as u8 | 128,
            ]);
        }
    }

    pub(crate) fn int(&mut self, v: i64) {
        let start = self.buf.len();
        if (0..=127).contains(&v) {
            self.buf.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = if v < 0 { (1 << 13) + v } else { v } as u16;
            self.buf
                .extend_from_slice(&[0xC0 | (u >> 8) as u8, u as u8]);
        } else if let Ok(x) = i16::try_from(v) {
            self.buf.push(0xF1);
            self.buf.extend_from_slice(&x.to_le_bytes());
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            self.buf.push(0xF2);
            self.buf.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if let Ok(x) = i32::try_from(v) {
            self.buf.push(0xF3);
            self.buf.extend_from_slice(&x.to_le_bytes());
        } else {
            self.buf.push(0xF4);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        let l = self.buf.len() - start;
        self.backlen(l);
        self.count += 1;
    }

    pub(crate) fn str(&mut self, s: &[u8]) {
        if let Some(v) = canonical_int(s) {
            return self.int(v);
        }
        let start = self.buf.len();
        let n = s.len();
        if n < 64 {
            self.buf.push(0x80 | n as u8);
        } else if n < 4096 {
            self.buf
                .extend_from_slice(&[0xE0 | (n >> 8) as u8, n as u8]);
        } else {
            self.buf.push(0xF0);
            self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(s);
        let l = self.buf.len() - start;
        self.backlen(l);
        self.count += 1;
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
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let count = u16::try_from(self.count).unwrap_or(u16::MAX);
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}
