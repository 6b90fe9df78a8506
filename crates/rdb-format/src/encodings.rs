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

/// Walks an intset, calling `f` for each member, with the checks of Redis'
/// `intsetValidateIntegrity` (deep): the encoding, the size, not empty, strictly ascending.
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
    if count == 0 {
        return err(W, 4, "an empty intset");
    }
    let mut prev = None;
    for i in 0..count {
        let at = 8 + i * width;
        let v = sext(le(&b[at..at + width]), (width * 8) as u32);
        if prev.is_some_and(|p| v <= p) {
            let why = if prev == Some(v) {
                format!("member {v} twice")
            } else {
                format!(
                    "member {v} after {} (not ascending)",
                    prev.unwrap_or_default()
                )
            };
            return err(W, at, why);
        }
        prev = Some(v);
        f(Raw::Int(v))?;
    }
    Ok(())
}

/// Walks a zipmap, calling `f` for each (field, value), with the checks of Redis'
/// `zipmapValidateIntegrity` (deep): the end byte, every length inside the blob, not empty, and
/// the count byte (when below 254) against the pairs.
pub(crate) fn zipmap(b: &[u8], mut f: impl FnMut(Raw, Raw) -> R<()>) -> R<()> {
    const W: &str = "zipmap";
    let mut pos = 1;
    let zmlen = usize::from(get(b, 0, 1, W)?[0]);
    if b.len() < 2 || b[b.len() - 1] != 0xFF {
        return err(W, b.len().saturating_sub(1), "no end byte (0xff)");
    }
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
    let mut count = 0usize;
    loop {
        let Some(klen) = read_len(&mut pos)? else {
            if pos + 1 != b.len() {
                return err(W, pos, "end marker before the end of the blob");
            }
            break;
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
        if pos > b.len() - 1 {
            return err(W, pos, "pair runs past the end byte");
        }
        count += 1;
        f(field, value)?;
    }
    if count == 0 {
        return err(W, 0, "an empty zipmap");
    }
    if zmlen < 254 && zmlen != count {
        return err(
            W,
            0,
            format!("count byte says {zmlen} pairs, the zipmap holds {count}"),
        );
    }
    Ok(())
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
