//! The compact encodings stored as one string in the file: ziplist, listpack, intset, zipmap.
//!
//! Each parser walks a blob that is already in memory and hands out elements as slices of it.
//! Every length is checked against the blob's end before use.

use bytes::Bytes;

use crate::value::Elem;

/// An element of a blob: a byte range of it, or an integer. Turned into an [`Elem`] (a slice
/// of the blob) only when the value is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raw {
    Range(usize, usize),
    Int(i64),
}

impl Raw {
    pub(crate) fn elem(self, blob: &Bytes) -> Elem {
        match self {
            Self::Range(a, b) => Elem::Bytes(blob.slice(a..b)),
            Self::Int(i) => Elem::Int(i),
        }
    }

    pub(crate) fn bytes(self, blob: &[u8]) -> &[u8] {
        match self {
            Self::Range(a, b) => &blob[a..b],
            Self::Int(_) => &[],
        }
    }

    /// The element as an integer, as Redis' `string2ll` reads it.
    pub(crate) fn as_int(self, blob: &[u8]) -> Option<i64> {
        match self {
            Self::Int(i) => Some(i),
            Self::Range(a, b) => std::str::from_utf8(&blob[a..b]).ok()?.parse().ok(),
        }
    }
}

/// A structural problem inside a blob: what, why, and the position inside the blob.
#[derive(Debug)]
pub(crate) struct BlobError {
    pub(crate) what: &'static str,
    pub(crate) why: String,
    pub(crate) pos: usize,
}

type R<T> = Result<T, BlobError>;

fn err<T>(what: &'static str, pos: usize, why: impl Into<String>) -> R<T> {
    Err(BlobError {
        what,
        why: why.into(),
        pos,
    })
}

fn get<'a>(b: &'a [u8], pos: usize, n: usize, what: &'static str) -> R<&'a [u8]> {
    match pos.checked_add(n) {
        Some(end) if end <= b.len() => Ok(&b[pos..end]),
        _ => err(
            what,
            pos,
            format!("{n} bytes needed past the end of the blob"),
        ),
    }
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// Sign-extends the low `bits` bits of `v`.
fn sext(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Walks a ziplist, calling `f` for each element.
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
    let mut pos = 10;
    loop {
        let first = get(b, pos, 1, W)?[0];
        if first == 0xFF {
            if pos + 1 != b.len() {
                return err(W, pos, "end marker before the end of the blob");
            }
            return Ok(());
        }
        // prevlen
        pos += if first < 254 { 1 } else { 5 };
        let enc = get(b, pos, 1, W)?[0];
        let elem = match enc >> 6 {
            0 => {
                let len = usize::from(enc & 0x3F);
                pos += 1;
                let s = get(b, pos, len, W)?;
                let _ = s;
                let e = Raw::Range(pos, pos + len);
                pos += len;
                e
            }
            1 => {
                let x = get(b, pos, 2, W)?;
                let len = (usize::from(x[0] & 0x3F) << 8) | usize::from(x[1]);
                pos += 2;
                get(b, pos, len, W)?;
                let e = Raw::Range(pos, pos + len);
                pos += len;
                e
            }
            2 => {
                if enc != 0x80 {
                    return err(W, pos, format!("bad string encoding byte {enc:#x}"));
                }
                let x = get(b, pos + 1, 4, W)?;
                let len = u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize;
                pos += 5;
                get(b, pos, len, W)?;
                let e = Raw::Range(pos, pos + len);
                pos += len;
                e
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
        f(elem)?;
    }
}

/// Walks a listpack, calling `f` for each element.
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
    let mut pos = 6;
    loop {
        let start = pos;
        let enc = get(b, pos, 1, W)?[0];
        let elem = if enc == 0xFF {
            if pos + 1 != b.len() {
                return err(W, pos, "end marker before the end of the blob");
            }
            return Ok(());
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
        // backlen: the entry's own length, 7 bits per byte
        let entry_len = pos - start;
        let backlen = match entry_len {
            0..=127 => 1,
            128..=16383 => 2,
            16384..=2_097_151 => 3,
            2_097_152..=268_435_455 => 4,
            _ => 5,
        };
        get(b, pos, backlen, W)?;
        pos += backlen;
        f(elem)?;
    }
}

/// Walks an intset, calling `f` for each member.
pub(crate) fn intset(b: &[u8], mut f: impl FnMut(Raw) -> R<()>) -> R<()> {
    const W: &str = "intset";
    let header = get(b, 0, 8, W)?;
    let width = le(&header[0..4]) as usize;
    let count = le(&header[4..8]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return err(W, 0, format!("bad integer width {width}"));
    }
    match count.checked_mul(width).and_then(|n| n.checked_add(8)) {
        Some(n) if n == b.len() => {}
        _ => {
            return err(
                W,
                4,
                format!(
                    "{count} members of {width} bytes do not fill {} bytes",
                    b.len()
                ),
            );
        }
    }
    for i in 0..count {
        let x = &b[8 + i * width..8 + (i + 1) * width];
        f(Raw::Int(sext(le(x), (width * 8) as u32)))?;
    }
    Ok(())
}

/// Walks a zipmap, calling `f` for each (field, value).
pub(crate) fn zipmap(b: &[u8], mut f: impl FnMut(Raw, Raw) -> R<()>) -> R<()> {
    const W: &str = "zipmap";
    let mut pos = 1;
    get(b, 0, 1, W)?;
    let read_len = |pos: &mut usize| -> R<Option<usize>> {
        let first = get(b, *pos, 1, W)?[0];
        match first {
            0xFF => Ok(None),
            254 => {
                let x = get(b, *pos + 1, 4, W)?;
                *pos += 5;
                Ok(Some(le(x) as usize))
            }
            253 => {
                // 253 is reserved; Redis never writes it as a length.
                err(W, *pos, "reserved length byte 253")
            }
            n => {
                *pos += 1;
                Ok(Some(usize::from(n)))
            }
        }
    };
    loop {
        let Some(klen) = read_len(&mut pos)? else {
            if pos + 1 != b.len() {
                return err(W, pos, "end marker before the end of the blob");
            }
            return Ok(());
        };
        get(b, pos, klen, W)?;
        let field = Raw::Range(pos, pos + klen);
        pos += klen;
        let Some(vlen) = read_len(&mut pos)? else {
            return err(W, pos, "field without a value");
        };
        let free = usize::from(get(b, pos, 1, W)?[0]);
        pos += 1;
        get(b, pos, vlen + free, W)?;
        let value = Raw::Range(pos, pos + vlen);
        pos += vlen + free;
        f(field, value)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_lp(b: &[u8]) -> R<Vec<Elem>> {
        let blob = Bytes::copy_from_slice(b);
        let mut v = Vec::new();
        listpack(&blob, |e| {
            v.push(e.elem(&blob));
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn listpack_small_ints_and_strings() {
        // total=13, count=2: 7-bit uint 5, 6-bit string "ab"
        let lp = [13, 0, 0, 0, 2, 0, 0x05, 0x01, 0x82, b'a', b'b', 0x03, 0xFF];
        assert_eq!(
            collect_lp(&lp).unwrap(),
            vec![Elem::Int(5), Elem::from("ab")]
        );
    }

    #[test]
    fn listpack_13bit_negative() {
        // 13-bit int -1 = 0x1FFF
        let lp = [10, 0, 0, 0, 1, 0, 0xDF, 0xFF, 0x02, 0xFF];
        assert_eq!(collect_lp(&lp).unwrap(), vec![Elem::Int(-1)]);
    }

    #[test]
    fn listpack_lying_length_is_error() {
        let lp = [13, 0, 0, 0, 2, 0, 0x05, 0x01, 0xBF, b'a', b'b', 0x03, 0xFF];
        assert!(collect_lp(&lp).is_err());
    }

    #[test]
    fn intset_widths() {
        let blob = Bytes::from_static(&[2, 0, 0, 0, 2, 0, 0, 0, 0xFF, 0xFF, 7, 0]);
        let mut v = Vec::new();
        intset(&blob, |e| {
            v.push(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(v, vec![Raw::Int(-1), Raw::Int(7)]);
    }
}
