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

/// How far back an LZF back reference reaches at most.
const WINDOW: usize = 8192;

/// LZF data decompressed a piece at a time ([`LzfStream::step`]), as its input comes: a
/// back reference reaches at most [`WINDOW`] bytes back, so only that much of what was given
/// out is kept. A string of hundreds of megabytes is checked and handed over in pieces of the
/// size asked for, in the memory of one piece (decompressed whole, a string of 300 MB of
/// zeros, 3.4 MB in the file, took 297 MiB to check and 583 MiB to print as RESP).
#[derive(Debug)]
pub(crate) struct LzfStream {
    /// What was given out last (up to [`WINDOW`] bytes), then, from `hist`, what was made
    /// since: the piece being made, and past a piece given out, what goes on into the next.
    buf: Vec<u8>,
    hist: usize,
    /// Bytes of the piece at `hist` given out by the last step: history from the next.
    handed: usize,
    /// Bytes still to be made.
    left: u64,
    /// Bytes a piece holds (the last one: what is left).
    piece: usize,
}

impl LzfStream {
    /// A stream that makes `ulen` bytes in all, `piece` bytes a step.
    pub(crate) fn new(ulen: u64, piece: usize) -> Self {
        Self {
            buf: Vec::new(),
            hist: 0,
            handed: 0,
            left: ulen,
            piece: piece.max(1),
        }
    }

    /// True once every byte was made and given out.
    pub(crate) fn done(&self) -> bool {
        self.left == 0 && self.buf.len() == self.hist + self.handed
    }

    /// Decompresses the whole instructions at the front of `input` (the string's compressed
    /// bytes from where the last step stopped; `last`: all of them) until a piece is made:
    /// how many input bytes it read, and the piece, if one is made (the last one when the
    /// data ends). `Err` if the data is malformed, refers before its start, makes more than
    /// it said, or (`last`) ends before it made all of it.
    pub(crate) fn step(&mut self, input: &[u8], last: bool) -> Result<(usize, Option<&[u8]>), ()> {
        if self.handed > 0 {
            // what was given out becomes history: its last WINDOW bytes are kept
            let given = self.hist + self.handed;
            let from = given.saturating_sub(WINDOW);
            self.buf.drain(..from);
            self.hist = given - from;
            self.handed = 0;
        }
        let mut ip = 0;
        while self.left > 0 && self.buf.len() - self.hist < self.piece {
            let Some(&ctrl) = input.get(ip) else { break };
            let ctrl = usize::from(ctrl);
            if ctrl < 32 {
                let n = ctrl + 1;
                let Some(lit) = input.get(ip + 1..ip + 1 + n) else {
                    break;
                };
                if n as u64 > self.left {
                    return Err(());
                }
                self.buf.extend_from_slice(lit);
                self.left -= n as u64;
                ip += 1 + n;
            } else {
                let mut len = ctrl >> 5;
                let mut at = ip + 1;
                if len == 7 {
                    let Some(&more) = input.get(at) else { break };
                    len += usize::from(more);
                    at += 1;
                }
                len += 2;
                let Some(&low) = input.get(at) else { break };
                let back = ((ctrl & 0x1F) << 8) + usize::from(low) + 1;
                if back > self.buf.len() || len as u64 > self.left {
                    return Err(());
                }
                // overlapping (`back` < `len`), the bytes from `from` on repeat every `back`
                // bytes: each copy takes all there is from `from`, a multiple of `back`, and
                // the next one twice as much
                let from = self.buf.len() - back;
                let mut more = len;
                while more > 0 {
                    let n = more.min(self.buf.len() - from);
                    self.buf.extend_from_within(from..from + n);
                    more -= n;
                }
                self.left -= len as u64;
                ip = at + 1;
            }
        }
        let made = self.buf.len() - self.hist;
        if self.left == 0 && ip < input.len() {
            // more data than the length it said
            return Err(());
        }
        let n = if made >= self.piece {
            self.piece
        } else if self.left == 0 && made > 0 {
            made
        } else if last && self.left > 0 {
            // the data ended (or was cut in an instruction) before all of it was made
            return Err(());
        } else {
            return Ok((ip, None));
        };
        self.handed = n;
        Ok((ip, Some(&self.buf[self.hist..self.hist + n])))
    }
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

    /// Decompressed in pieces, fed a few bytes at a time or all at once, LZF data gives
    /// the bytes that decompressing it whole gives, in pieces of exactly the size asked for
    /// (the last one what is left); data that lies fails the same way whole or in pieces.
    #[test]
    fn a_stream_gives_what_decompressing_whole_gives() {
        let text = |n: u32| {
            let mut text = Vec::new();
            for i in 0..n {
                text.extend_from_slice(format!("{} ", i % 977).as_bytes());
                if i % 5000 == 0 {
                    text.extend(std::iter::repeat_n(b'z', 3000));
                }
            }
            text
        };
        // (a piece of a byte moves the history at each: a smaller text for the small pieces)
        let (small, big) = (text(6000), text(60_000));
        for (text, piece, feed) in [1, 100, 4096, 65_536, 1 << 20]
            .into_iter()
            .flat_map(|p| [1, 7, 1000, usize::MAX].map(|f| (p, f)))
            .map(|(p, f)| (if p < 4096 { &small } else { &big }, p, f))
        {
            let packed = compress(text, text.len()).unwrap();
            {
                let mut z = LzfStream::new(text.len() as u64, piece);
                let (mut out, mut pieces, mut at) = (Vec::new(), Vec::new(), 0);
                // (an instruction cut by the input's end waits for more: as a decoder's
                // source does, more is given then)
                let mut more = feed;
                while !z.done() {
                    let end = at + more.min(packed.len() - at);
                    let (used, got) = z.step(&packed[at..end], end == packed.len()).unwrap();
                    more = if used == 0 && got.is_none() {
                        more.saturating_mul(2)
                    } else {
                        feed
                    };
                    at += used;
                    if let Some(p) = got {
                        pieces.push(p.len());
                        out.extend_from_slice(p);
                    }
                }
                assert_eq!(at, packed.len());
                assert!(&out == text, "pieces of {piece}, fed {feed}");
                let last = pieces.pop().unwrap();
                assert!(pieces.iter().all(|&n| n == piece) && last <= piece);
            }
        }
        let run = |data: &[u8], ulen: u64| -> Result<Vec<u8>, ()> {
            let mut z = LzfStream::new(ulen, 3);
            let (mut out, mut at) = (Vec::new(), 0);
            while !z.done() {
                let (used, got) = z.step(&data[at..], true)?;
                at += used;
                out.extend_from_slice(got.ok_or(())?);
            }
            if at < data.len() { Err(()) } else { Ok(out) }
        };
        assert_eq!(
            run(&[0x00, b'a', (7 << 5), 9 - 2 - 7, 0x00], 10).unwrap(),
            b"aaaaaaaaaa"
        );
        // too short, a reference before the start, too long, cut in an instruction
        for (data, ulen) in [
            (&[0x05, b'a'][..], 6),
            (&[0x20, 0x05], 3),
            (&[0x00, b'a'], 5),
            (&[0x01, b'a', b'b', 0x00, b'c'], 2),
            (&[0x00, b'a', 0xE0], 12),
        ] {
            assert!(run(data, ulen).is_err(), "{data:?}");
            let mut buf = Vec::new();
            assert!(decompress_to(data, ulen as usize, &mut buf).is_none());
        }
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
