//! LZF decompression into a caller's buffer (the `lzf` crate allocates a fresh `Vec` per call,
//! which showed in profiles of `check`).

/// Appends the decompression of `input` to `out`; `None` if the data is malformed or does not
/// decompress to exactly `ulen` bytes. Never writes more than `ulen` bytes.
pub(crate) fn decompress_into(input: &[u8], ulen: usize, out: &mut Vec<u8>) -> Option<()> {
    let base = out.len();
    out.reserve(ulen);
    let end = base + ulen;
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            // a literal run of ctrl + 1 bytes
            let run = input.get(ip..ip + ctrl + 1)?;
            if out.len() + run.len() > end {
                return None;
            }
            out.extend_from_slice(run);
            ip += ctrl + 1;
        } else {
            // a back reference
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip)?);
                ip += 1;
            }
            len += 2;
            let back = ((ctrl & 0x1F) << 8) + usize::from(*input.get(ip)?) + 1;
            ip += 1;
            if back > out.len() - base || out.len() + len > end {
                return None;
            }
            let from = out.len() - back;
            if back >= len {
                out.extend_from_within(from..from + len);
            } else {
                for k in 0..len {
                    let b = out[from + k];
                    out.push(b);
                }
            }
        }
    }
    (out.len() == end).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_overlapping_reference() {
        // "aaaaaaaaaa": literal 'a', then a reference of length 9 at distance 1
        let data = [0x00, b'a', (7 << 5), 9 - 2 - 7, 0x00];
        let mut out = Vec::new();
        decompress_into(&data, 10, &mut out).unwrap();
        assert_eq!(out, b"aaaaaaaaaa");
    }

    #[test]
    fn lies_are_rejected() {
        let mut out = Vec::new();
        assert!(decompress_into(&[0x05, b'a'], 6, &mut out).is_none());
        out.clear();
        assert!(decompress_into(&[0x20, 0x05], 3, &mut out).is_none());
        out.clear();
        assert!(decompress_into(&[0x00, b'a'], 5, &mut out).is_none());
    }
}
