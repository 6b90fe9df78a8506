//! Writing frames and commands straight into a `BytesMut`.

use bytes::{BufMut, BytesMut};

use crate::frame::Frame;

/// Appends `ty`, `n` in decimal and CRLF. Most counts and lengths are under 100: their
/// header is stored whole, without formatting a number or copying a slice of unknown length
/// (with `itoa` and three appends, headers were 8 % of printing a file as RESP).
#[inline]
pub(crate) fn header(dst: &mut BytesMut, ty: u8, n: usize) {
    if n < 10 {
        dst.put_slice(&[ty, b'0' + n as u8, b'\r', b'\n']);
    } else if n < 100 {
        dst.put_slice(&[
            ty,
            b'0' + (n / 10) as u8,
            b'0' + (n % 10) as u8,
            b'\r',
            b'\n',
        ]);
    } else {
        header_long(dst, ty, n);
    }
}

/// [`header`] for a number of three digits or more.
#[inline(never)]
fn header_long(dst: &mut BytesMut, ty: u8, n: usize) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n);
    dst.reserve(s.len() + 3);
    dst.put_u8(ty);
    dst.put_slice(s.as_bytes());
    dst.put_slice(b"\r\n");
}

fn line(dst: &mut BytesMut, ty: u8, body: &[u8]) {
    dst.reserve(body.len() + 3);
    dst.put_u8(ty);
    dst.put_slice(body);
    dst.put_slice(b"\r\n");
}

fn blob(dst: &mut BytesMut, ty: u8, body: &[u8]) {
    if body.len() <= SHORT {
        return short_blob(dst, ty, body);
    }
    header(dst, ty, body.len());
    dst.reserve(body.len() + 2);
    dst.put_slice(body);
    dst.put_slice(b"\r\n");
}

/// The longest body [`short_blob`] writes.
const SHORT: usize = 32;

/// Room [`short_blob`] takes at once: a header of up to 5 bytes, a body of up to [`SHORT`],
/// and CRLF.
const SHORT_ROOM: usize = 48;

/// [`blob`] of a body of at most [`SHORT`] bytes (most of a collection's elements): room for
/// the longest such frame is appended at once and cut to length after, and the body copied
/// in at most two moves of a fixed size. Header, body and CRLF appended one by one were
/// three capacity checks and a call to copy a slice of unknown length (with the header, a
/// seventh of printing a big hash as RESP).
#[inline]
fn short_blob(dst: &mut BytesMut, ty: u8, body: &[u8]) {
    let n = body.len();
    let at = dst.len();
    dst.extend_from_slice(&[0; SHORT_ROOM]);
    let out = &mut dst[at..];
    let h = if n < 10 {
        out[..4].copy_from_slice(&[ty, b'0' + n as u8, b'\r', b'\n']);
        4
    } else {
        out[..5].copy_from_slice(&[
            ty,
            b'0' + (n / 10) as u8,
            b'0' + (n % 10) as u8,
            b'\r',
            b'\n',
        ]);
        5
    };
    copy_short(&mut out[h..], body);
    out[h + n..h + n + 2].copy_from_slice(b"\r\n");
    dst.truncate(at + h + n + 2);
}

/// Copies `body` (at most [`SHORT`] bytes) to the front of `out`: two moves of the largest
/// fixed size that fits, overlapping in the middle.
#[inline]
fn copy_short(out: &mut [u8], body: &[u8]) {
    let n = body.len();
    fn two<const K: usize>(out: &mut [u8], body: &[u8]) {
        let n = body.len();
        out[..K].copy_from_slice(&body[..K]);
        out[n - K..n].copy_from_slice(&body[n - K..]);
    }
    match n {
        16.. => two::<16>(out, body),
        8.. => two::<8>(out, body),
        4.. => two::<4>(out, body),
        _ => out[..n].copy_from_slice(body),
    }
}

/// Appends a header line: `*3\r\n` for `(b'*', 3)`, `$5\r\n` for `(b'$', 5)`; for writing a
/// big bulk string's body straight to its destination after its header.
///
/// ```
/// let mut out = bytes::BytesMut::new();
/// resp_codec::encode_header(b'$', 5, &mut out);
/// assert_eq!(&out[..], b"$5\r\n");
/// ```
pub fn encode_header(ty: u8, n: usize, dst: &mut BytesMut) {
    header(dst, ty, n);
}

/// Appends one bulk string: for writing a command's arguments one at a time after its `*N`
/// header, without gathering them first.
///
/// ```
/// let mut out = bytes::BytesMut::new();
/// resp_codec::encode_header(b'*', 2, &mut out);
/// resp_codec::encode_bulk(b"PING", &mut out);
/// resp_codec::encode_bulk(b"hi", &mut out);
/// assert_eq!(&out[..], b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n");
/// ```
pub fn encode_bulk(body: &[u8], dst: &mut BytesMut) {
    blob(dst, b'$', body);
}

/// Appends `frame` to `dst`. Simple strings and errors are written as they are: they must not
/// contain CR or LF (use bulk strings for arbitrary bytes).
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::{Frame, encode};
///
/// let mut out = BytesMut::new();
/// encode(&Frame::Map(vec![(Frame::SimpleString("a".into()), Frame::Double(f64::INFINITY))]), &mut out);
/// assert_eq!(&out[..], b"%1\r\n+a\r\n,inf\r\n");
/// ```
pub fn encode(frame: &Frame, dst: &mut BytesMut) {
    match frame {
        Frame::SimpleString(s) => line(dst, b'+', s),
        Frame::Error(s) => line(dst, b'-', s),
        Frame::Integer(v) => line(dst, b':', itoa::Buffer::new().format(*v).as_bytes()),
        Frame::BulkString(s) => blob(dst, b'$', s),
        Frame::Array(items) => {
            header(dst, b'*', items.len());
            items.iter().for_each(|f| encode(f, dst));
        }
        Frame::NullBulk => dst.put_slice(b"$-1\r\n"),
        Frame::NullArray => dst.put_slice(b"*-1\r\n"),
        Frame::Null => dst.put_slice(b"_\r\n"),
        Frame::Boolean(v) => dst.put_slice(if *v { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Double(v) => {
            let mut b = ryu::Buffer::new();
            let text: &str = if v.is_nan() {
                "nan"
            } else if v.is_infinite() {
                if *v > 0.0 { "inf" } else { "-inf" }
            } else {
                b.format_finite(*v)
            };
            line(dst, b',', text.as_bytes());
        }
        Frame::BigNumber(s) => line(dst, b'(', s),
        Frame::BulkError(s) => blob(dst, b'!', s),
        Frame::Verbatim { format, text } => {
            header(dst, b'=', text.len() + 4);
            dst.reserve(text.len() + 6);
            dst.put_slice(format);
            dst.put_u8(b':');
            dst.put_slice(text);
            dst.put_slice(b"\r\n");
        }
        Frame::Map(pairs) => {
            header(dst, b'%', pairs.len());
            for (k, v) in pairs {
                encode(k, dst);
                encode(v, dst);
            }
        }
        Frame::Set(items) => {
            header(dst, b'~', items.len());
            items.iter().for_each(|f| encode(f, dst));
        }
        Frame::Attribute { attributes, data } => {
            header(dst, b'|', attributes.len());
            for (k, v) in attributes {
                encode(k, dst);
                encode(v, dst);
            }
            encode(data, dst);
        }
        Frame::Push(items) => {
            header(dst, b'>', items.len());
            items.iter().for_each(|f| encode(f, dst));
        }
        Frame::Inline(args) => {
            let mut l = Vec::new();
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    l.push(b' ');
                }
                crate::args::quote_arg(a, &mut l);
            }
            l.extend_from_slice(b"\r\n");
            dst.put_slice(&l);
        }
    }
}

/// Appends a command (an array of bulk strings) to `dst` without building a [`Frame`].
///
/// ```
/// use bytes::BytesMut;
/// let mut out = BytesMut::new();
/// resp_codec::encode_command(["SET", "k", "v"], &mut out);
/// assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
/// ```
pub fn encode_command<I, A>(args: I, dst: &mut BytesMut)
where
    I: IntoIterator<Item = A>,
    I::IntoIter: ExactSizeIterator,
    A: AsRef<[u8]>,
{
    let args = args.into_iter();
    header(dst, b'*', args.len());
    for a in args {
        blob(dst, b'$', a.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every header is the type byte, the count in decimal and CRLF, whatever its length.
    #[test]
    fn headers_of_every_length() {
        let mut counts: Vec<usize> = (0..1000).collect();
        let mut p = 1usize;
        while let Some(q) = p.checked_mul(10) {
            counts.extend([p - 1, p, p + 1, q - 1]);
            p = q;
        }
        counts.push(usize::MAX);
        let mut dst = BytesMut::from(&b"before"[..]);
        let mut want = b"before".to_vec();
        for n in counts {
            for ty in [b'*', b'$'] {
                header(&mut dst, ty, n);
                want.push(ty);
                want.extend_from_slice(format!("{n}\r\n").as_bytes());
            }
        }
        assert_eq!(&dst[..], &want[..]);
    }

    /// A bulk string of every length up to past [`SHORT`] is its header, its body and CRLF,
    /// appended to what was there (into a buffer that has to grow, and into one that need
    /// not), whatever its bytes.
    #[test]
    fn bulk_strings_of_every_short_length() {
        for room in [0, 1 << 12] {
            let mut dst = BytesMut::with_capacity(room);
            dst.extend_from_slice(b"before");
            let mut want = b"before".to_vec();
            for n in 0..=SHORT + 9 {
                for fill in [b'x', b'\r', 0xff] {
                    // every byte differs from its neighbours', so a misplaced move shows
                    let body: Vec<u8> = (0..n).map(|i| fill.wrapping_add(i as u8)).collect();
                    encode_bulk(&body, &mut dst);
                    want.extend_from_slice(format!("${n}\r\n").as_bytes());
                    want.extend_from_slice(&body);
                    want.extend_from_slice(b"\r\n");
                    assert_eq!(&dst[..], &want[..], "a body of {n} bytes");
                }
            }
        }
    }
}
