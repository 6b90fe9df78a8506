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

/// The integer a string is, if it is one exactly as Redis prints integers.
pub(crate) fn canonical_int(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let v: i64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    let mut buf = itoa::Buffer::new();
    (buf.format(v).as_bytes() == b).then_some(v)
}

pub(crate) fn put_raw_string(out: &mut BytesMut, b: &[u8], compress: bool) {
    if compress && b.len() > 20 {
        if let Some(c) = crate::lzf::compress(b, b.len() - 4) {
            out.put_u8(0xC3);
            put_len(out, c.len() as u64);
            put_len(out, b.len() as u64);
            out.put_slice(&c);
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
