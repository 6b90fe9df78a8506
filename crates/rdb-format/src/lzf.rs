//! LZF decompression into a caller's buffer (the `lzf` crate allocates a fresh `Vec` per call,
//! which showed in profiles of `check`).

/// Decompresses `input` into the front of `buf`, which grows to `ulen` bytes if it is
/// shorter: a buffer kept from one string to the next is written over, not cleared first
/// (only what it grows by is); the `ulen` bytes, or `None` if the data is malformed or does
/// not decompress to exactly `ulen` bytes.
pub(crate) fn decompress_to<'b>(
    input: &[u8],
    ulen: usize,
    buf: &'b mut Vec<u8>,
) -> Option<&'b [u8]> {
    if buf.len() < ulen {
        buf.resize(ulen, 0);
    }
    let dst = &mut buf[..ulen];
    if decompress_slice(input, dst) {
        Some(dst)
    } else {
        None
    }
}

/// Decompresses `input` into all of `dst`: false if the data is malformed or does not fill
/// `dst` exactly. Short copies move a fixed 32 or 16 bytes where both sides have room (one
/// pair of vector moves instead of a call to `memcpy`); what they write past the run is
/// written again by the runs after it.
fn decompress_slice(input: &[u8], dst: &mut [u8]) -> bool {
    const LIT: usize = 32;
    const REF: usize = 16;
    let end = dst.len();
    let (mut ip, mut op) = (0, 0);
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            // a literal run of ctrl + 1 bytes
            let n = ctrl + 1;
            if n > input.len() - ip || n > end - op {
                return false;
            }
            if LIT <= input.len() - ip && LIT <= end - op {
                dst[op..op + LIT].copy_from_slice(&input[ip..ip + LIT]);
            } else {
                dst[op..op + n].copy_from_slice(&input[ip..ip + n]);
            }
            ip += n;
            op += n;
        } else {
            // a back reference
            let mut len = ctrl >> 5;
            if len == 7 {
                let Some(&more) = input.get(ip) else {
                    return false;
                };
                len += usize::from(more);
                ip += 1;
            }
            len += 2;
            let Some(&low) = input.get(ip) else {
                return false;
            };
            ip += 1;
            let back = ((ctrl & 0x1F) << 8) + usize::from(low) + 1;
            if back > op || len > end - op {
                return false;
            }
            let from = op - back;
            if back >= REF && len <= REF && REF <= end - op {
                dst.copy_within(from..from + REF, op);
            } else if back >= len {
                dst.copy_within(from..from + len, op);
            } else {
                // overlapping: byte by byte, each may repeat the one just written
                for k in 0..len {
                    dst[op + k] = dst[from + k];
                }
            }
            op += len;
        }
    }
    op == end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_overlapping_reference() {
        // "aaaaaaaaaa": literal 'a', then a reference of length 9 at distance 1
        let data = [0x00, b'a', (7 << 5), 9 - 2 - 7, 0x00];
        let mut out = Vec::new();
        assert_eq!(decompress_to(&data, 10, &mut out), Some(&b"aaaaaaaaaa"[..]));
    }

    /// A kept buffer is written over: what it held past the string is not read, and a
    /// longer one it held before does not change the next string's bytes, nor does a string
    /// that failed.
    #[test]
    fn a_kept_buffer_gives_each_string_its_own_bytes() {
        let mut buf = Vec::new();
        let ten_a = [0x00, b'a', (7 << 5), 9 - 2 - 7, 0x00];
        assert_eq!(
            decompress_to(&ten_a, 10, &mut buf),
            Some(&b"aaaaaaaaaa"[..])
        );
        assert_eq!(
            decompress_to(&[0x01, b'x', b'y'], 2, &mut buf),
            Some(&b"xy"[..])
        );
        assert_eq!(buf.len(), 10);
        assert_eq!(decompress_to(&[0x05, b'a'], 6, &mut buf), None);
        assert_eq!(
            decompress_to(&[0x01, b'x', b'y'], 2, &mut buf),
            Some(&b"xy"[..])
        );
    }

    #[test]
    fn lies_are_rejected() {
        // too short, a reference before the start, too long
        let mut out = Vec::new();
        assert!(decompress_to(&[0x05, b'a'], 6, &mut out).is_none());
        assert!(decompress_to(&[0x20, 0x05], 3, &mut out).is_none());
        assert!(decompress_to(&[0x00, b'a'], 5, &mut out).is_none());
    }
}

/// The compressor's hash table, kept from one string to the next: an entry is a position plus
/// the `base` of the string it was made for, so entries of earlier strings (below `base`) are
/// stale without clearing the table between strings.
struct Table {
    slots: Vec<u32>,
    base: u32,
}

thread_local! {
    static TABLE: std::cell::RefCell<Table> = const {
        std::cell::RefCell::new(Table { slots: Vec::new(), base: 0 })
    };
    static OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

const HLOG: u32 = 14;

/// Compresses `input` in LZF format (what Redis' `lzf_compress` writes and
/// [`decompress_to`] reads) and calls `with` on the result; `None` when the result would
/// not be shorter than `max_out`. The output buffer and the hash table are reused.
pub(crate) fn compress_with<R>(
    input: &[u8],
    max_out: usize,
    with: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    let n = input.len();
    if n >= (u32::MAX / 2) as usize {
        // positions are kept as u32: such a string is written as it is
        return None;
    }
    let done = TABLE.with_borrow_mut(|t| {
        OUT.with_borrow_mut(|out| {
            out.clear();
            if t.slots.is_empty() {
                t.slots = vec![0; 1 << HLOG];
            }
            // entries are base + position + 1 (0 is never valid)
            if u32::MAX - t.base <= n as u32 + 1 {
                t.slots.fill(0);
                t.base = 0;
            }
            let ok = compress_into(input, max_out, &mut t.slots, t.base, out);
            t.base += n as u32 + 1;
            ok
        })
    });
    if !done {
        return None;
    }
    Some(OUT.with_borrow(|out| with(out)))
}

/// Compresses `input` into `out` with `slots` as the hash table, whose entries below `base` are
/// stale; false when the result would not be shorter than `max_out`.
fn compress_into(
    input: &[u8],
    max_out: usize,
    slots: &mut [u32],
    base: u32,
    out: &mut Vec<u8>,
) -> bool {
    const MAX_OFF: usize = 1 << 13;
    const MAX_REF: usize = (1 << 8) + (1 << 3);
    let n = input.len();
    out.reserve(max_out.min(n + n / 16 + 64));
    let mask = slots.len() - 1;
    let flush = |out: &mut Vec<u8>, from: usize, to: usize| {
        for run in input[from..to].chunks(32) {
            out.push((run.len() - 1) as u8);
            out.extend_from_slice(run);
        }
    };
    let mut lit_start = 0;
    let mut ip = 0;
    while ip + 2 < n {
        let tri = &input[ip..ip + 3];
        let v = (u32::from(tri[0]) << 16) | (u32::from(tri[1]) << 8) | u32::from(tri[2]);
        let h = (v.wrapping_mul(2_654_435_761) >> (32 - HLOG)) as usize & mask;
        let e = slots[h];
        slots[h] = base + ip as u32 + 1;
        if e > base {
            let r = (e - base - 1) as usize;
            if ip - r <= MAX_OFF && input[r..r + 3] == *tri {
                let max = (n - ip).min(MAX_REF);
                let len = 3 + input[r + 3..r + max]
                    .iter()
                    .zip(&input[ip + 3..ip + max])
                    .take_while(|(a, b)| a == b)
                    .count();
                flush(out, lit_start, ip);
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
                    return false;
                }
                continue;
            }
        }
        ip += 1;
    }
    flush(out, lit_start, n);
    out.len() < max_out
}

/// Like [`compress_with`], returning the compressed bytes.
#[cfg(test)]
pub(crate) fn compress(input: &[u8], max_out: usize) -> Option<Vec<u8>> {
    compress_with(input, max_out, <[u8]>::to_vec)
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
            assert_eq!(decompress_to(&c, input.len(), &mut out), Some(&input[..]));
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
