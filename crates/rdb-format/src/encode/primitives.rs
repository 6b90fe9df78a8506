//! Lengths, strings (integer-encoded, LZF-compressed or raw) and IDs as RDB writes them.

use super::*;

pub(crate) fn put_len(out: &mut BytesMut, n: u64) {
    if n < 1 << 6 {
        out.put_u8(n as u8);
    } else if n < 1 << 14 {
        out.put_u8(0x40 | (n >> 8) as u8);
        out.put_u8(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.put_u8(0x80);
        out.put_u32(n as u32);
    } else {
        out.put_u8(0x81);
        out.put_u64(n);
    }
}

/// The integer a string is, if it is one exactly as Redis prints integers (no sign but `-`,
/// no leading zero, no `-0`).
pub(crate) fn canonical_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d); // 19 digits fit in a u64
    }
    match neg {
        true if v <= 1 << 63 => Some((v as i64).wrapping_neg()),
        false if v <= i64::MAX as u64 => Some(v as i64),
        _ => None,
    }
}

pub(crate) fn put_raw_string(out: &mut BytesMut, b: &[u8], compress: bool) {
    if compress && b.len() > 20 {
        let done = crate::lzf::compress_with(b, b.len() - 4, |c| {
            out.put_u8(0xC3);
            put_len(out, c.len() as u64);
            put_len(out, b.len() as u64);
            out.put_slice(c);
        });
        if done.is_some() {
            return;
        }
    }
    put_len(out, b.len() as u64);
    out.put_slice(b);
}

/// A string as Redis saves it: an integer encoding when it is a small integer, LZF when that
/// helps, raw otherwise.
pub(crate) fn put_string(out: &mut BytesMut, b: &[u8], compress: bool) {
    if let Some(v) = canonical_int(b) {
        if let Ok(v) = i8::try_from(v) {
            out.put_u8(0xC0);
            out.put_i8(v);
            return;
        }
        if let Ok(v) = i16::try_from(v) {
            out.put_u8(0xC1);
            out.put_i16_le(v);
            return;
        }
        if let Ok(v) = i32::try_from(v) {
            out.put_u8(0xC2);
            out.put_i32_le(v);
            return;
        }
    }
    put_raw_string(out, b, compress);
}

pub(crate) fn put_elem(out: &mut BytesMut, e: &Elem, compress: bool) {
    e.with_bytes(|b| put_string(out, b, compress));
}

pub(crate) fn put_raw_id(out: &mut BytesMut, id: StreamId) {
    out.put_u64(id.ms);
    out.put_u64(id.seq);
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_ints_are_what_redis_prints() {
        for (s, v) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-7", Some(-7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("-0", None),
            ("07", None),
            ("+7", None),
            ("", None),
            ("-", None),
            ("1a", None),
            (" 1", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(super::canonical_int(s.as_bytes()), v, "{s:?}");
        }
    }
}
