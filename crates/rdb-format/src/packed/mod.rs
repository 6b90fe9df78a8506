//! The compact encodings stored as one string in the file: ziplist, listpack, intset, zipmap.
//! Each has a module holding its reader and its writer side by side.
//!
//! Each reader walks a blob that is already in memory and hands out elements as slices of it.
//! Every length is checked against the blob's end before use. The writers build the blobs the
//! encoder stores, as the target server would.

use bytes::Bytes;

use crate::value::Elem;

pub(crate) mod intset;
pub(crate) mod listpack;
pub(crate) mod ziplist;
pub(crate) mod zipmap;

pub(crate) use intset::intset;
pub(crate) use listpack::listpack;
pub(crate) use ziplist::ziplist;
pub(crate) use zipmap::zipmap;

/// An element of a blob: a byte range of it, or an integer. Turned into an [`Elem`] (a slice
/// of the blob) only when the value is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raw {
    Range(usize, usize),
    Int(i64),
}

impl Raw {
    /// Length of the element's text.
    pub(crate) fn text_len(self) -> u64 {
        match self {
            Self::Range(a, b) => (b - a) as u64,
            Self::Int(i) => {
                let digits = i.unsigned_abs().checked_ilog10().map_or(1, |d| d + 1);
                u64::from(digits) + u64::from(i < 0)
            }
        }
    }

    pub(crate) fn elem(self, blob: &Bytes) -> Elem {
        match self {
            Self::Range(a, b) => Elem::Bytes(blob.slice(a..b)),
            Self::Int(i) => Elem::Int(i),
        }
    }

    pub(crate) fn elem_ref(self, blob: &[u8]) -> crate::value::ElemRef<'_> {
        match self {
            Self::Range(a, b) => crate::value::ElemRef::Bytes(&blob[a..b]),
            Self::Int(i) => crate::value::ElemRef::Int(i),
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

pub(crate) type R<T> = Result<T, BlobError>;

pub(crate) fn err<T>(what: &'static str, pos: usize, why: impl Into<String>) -> R<T> {
    Err(BlobError {
        what,
        why: why.into(),
        pos,
    })
}

#[inline]
pub(crate) fn get<'a>(b: &'a [u8], pos: usize, n: usize, what: &'static str) -> R<&'a [u8]> {
    match pos.checked_add(n) {
        Some(end) if end <= b.len() => Ok(&b[pos..end]),
        _ => past_the_end(what, pos, n),
    }
}

#[cold]
fn past_the_end<T>(what: &'static str, pos: usize, n: usize) -> R<T> {
    err(
        what,
        pos,
        format!("{n} bytes needed past the end of the blob"),
    )
}

#[inline]
pub(crate) fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// Sign-extends the low `bits` bits of `v`.
pub(crate) fn sext(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
