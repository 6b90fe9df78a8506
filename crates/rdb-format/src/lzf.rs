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

/// Compresses `input` in LZF format (what Redis' `lzf_compress` writes and
/// [`decompress_into`] reads). `None` when the result would not be shorter than `max_out`.
pub(crate) fn compress(input: &[u8], max_out: usize) -> Option<Vec<u8>> {
    const MAX_OFF: usize = 1 << 13;
    const MAX_REF: usize = (1 << 8) + (1 << 3);
    let n = input.len();
    if n >= u32::MAX as usize {
        // positions are kept as u32: such a string is written as it is
        return None;
    }
    let mut out = Vec::with_capacity(max_out.min(n + n / 16 + 64));
    // a table the input's size (up to 2^14 entries): filling a large one for every short
    // string cost more than compressing it
    let hlog = (usize::BITS - n.max(2).leading_zeros()).clamp(8, 14);
    let mut table = vec![u32::MAX; 1 << hlog];
    let hash = |p: usize| {
        let v =
            (u32::from(input[p]) << 16) | (u32::from(input[p + 1]) << 8) | u32::from(input[p + 2]);
        (v.wrapping_mul(2_654_435_761) >> (32 - hlog)) as usize
    };
    let mut lit_start = 0;
    let mut ip = 0;
    let flush = |out: &mut Vec<u8>, from: usize, to: usize| {
        let mut s = from;
        while s < to {
            let run = (to - s).min(32);
            out.push((run - 1) as u8);
            out.extend_from_slice(&input[s..s + run]);
            s += run;
        }
    };
    while ip + 2 < n {
        let h = hash(ip);
        let r = table[h] as usize;
        table[h] = ip as u32;
        if r != u32::MAX as usize
            && r < ip
            && ip - r <= MAX_OFF
            && input[r..r + 3] == input[ip..ip + 3]
        {
            let max = (n - ip).min(MAX_REF);
            let mut len = 3;
            while len < max && input[r + len] == input[ip + len] {
                len += 1;
            }
            flush(&mut out, lit_start, ip);
            let off = ip - r - 1;
            let l = len - 2;
            if l < 7 {
                out.push(((l << 5) | (off >> 8)) as u8);
            } else {
                out.push(((7 << 5) | (off >> 8)) as u8);
                out.push((l - 7) as u8);
            }
            out.push((off & 0xff) as u8);
            ip += len;
            lit_start = ip;
            if out.len() >= max_out {
                return None;
            }
        } else {
            ip += 1;
        }
    }
    flush(&mut out, lit_start, n);
    (out.len() < max_out).then_some(out)
}

#[cfg(test)]
mod compress_tests {
    use super::*;

    #[test]
    fn compress_round_trips() {
        let mut seed = 7u32;
        let mut inputs: Vec<Vec<u8>> = vec![
            b"abcabcabcabcabcabcabcabcabcabcabcabc".to_vec(),
            vec![b'x'; 10_000],
            (0..5000u32).map(|i| (i % 7) as u8).collect(),
        ];
        inputs.push(
            (0..4000)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    b"abcd"[(seed % 4) as usize]
                })
                .collect(),
        );
        for input in inputs {
            let c = compress(&input, input.len()).expect("compressible");
            let mut out = Vec::new();
            decompress_into(&c, input.len(), &mut out).unwrap();
            assert_eq!(out, input);
        }
        // random bytes do not compress
        // splitmix64
        let noise: Vec<u8> = (0..1000u64)
            .map(|i| {
                let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as u8
            })
            .collect();
        assert!(compress(&noise, noise.len() - 4).is_none());
    }
}
