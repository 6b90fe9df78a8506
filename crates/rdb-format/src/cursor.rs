//! A bounds-checked cursor over the unconsumed input, used to parse one atomic unit at a time.

use crate::error::ErrorKind;

/// Why a parse attempt stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The unit is not all there yet; nothing was consumed.
    More,
    /// The input is malformed at this position (relative to the cursor's start).
    Bad(ErrorKind, usize),
}

pub(crate) type P<T> = Result<T, Stop>;

/// A string as found in the input, before it is turned into bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SRef {
    /// Raw bytes at `start..end` of the unit.
    Raw(usize, usize),
    /// Integer-encoded string, its encoding byte at `at` of the unit (where an error
    /// about it points).
    Int(i64, usize),
    /// LZF-compressed bytes at `start..end`, `ulen` bytes when decompressed.
    Lzf(usize, usize, u64),
}

/// A length field: a length, or one of the special string encodings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Len {
    Len(u64),
    Special(u8),
}

pub(crate) struct Cur<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) p: usize,
    pub(crate) max_string: u64,
    /// Read what Redis reads where we are stricter ([`crate::Config::lenient`]).
    pub(crate) lenient: bool,
}

impl<'a> Cur<'a> {
    pub(crate) fn new(b: &'a [u8], max_string: u64) -> Self {
        Self {
            b,
            p: 0,
            max_string,
            lenient: false,
        }
    }

    pub(crate) fn bad<T>(&self, kind: ErrorKind, at: usize) -> P<T> {
        Err(Stop::Bad(kind, at))
    }

    pub(crate) fn u8(&mut self) -> P<u8> {
        let x = *self.b.get(self.p).ok_or(Stop::More)?;
        self.p += 1;
        Ok(x)
    }

    pub(crate) fn take(&mut self, n: u64) -> P<(usize, usize)> {
        let avail = (self.b.len() - self.p) as u64;
        if n > avail {
            return Err(Stop::More);
        }
        let start = self.p;
        self.p += n as usize;
        Ok((start, self.p))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> P<[u8; N]> {
        let (s, e) = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.b[s..e]);
        Ok(out)
    }

    pub(crate) fn u64_le(&mut self) -> P<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn raw_len(&mut self) -> P<Len> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => Len::Len(u64::from(first & 0x3F)),
            1 => Len::Len((u64::from(first & 0x3F) << 8) | u64::from(self.u8()?)),
            2 => match first {
                0x80 => Len::Len(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Len(u64::from_be_bytes(self.array()?)),
                _ => {
                    return self.bad(
                        ErrorKind::Corrupt {
                            what: "length",
                            why: format!("unknown length encoding byte {first:#x}"),
                        },
                        self.p - 1,
                    );
                }
            },
            _ => Len::Special(first & 0x3F),
        })
    }

    /// A plain length (no string special encoding allowed).
    pub(crate) fn len(&mut self) -> P<u64> {
        let at = self.p;
        match self.raw_len()? {
            Len::Len(n) => Ok(n),
            // Redis' rdbLoadLen reads the marker's low 6 bits as the length
            Len::Special(s) if self.lenient => Ok(u64::from(s)),
            Len::Special(s) => self.bad(
                ErrorKind::Corrupt {
                    what: "length",
                    why: format!(
                        "byte {:#04x} (a string special encoding) where a length was expected \
                         (--lenient reads it as {s}, as Redis does)",
                        self.b[at]
                    ),
                },
                at,
            ),
        }
    }

    fn check_len(&self, len: u64, at: usize) -> P<()> {
        if len > self.max_string {
            return self.bad(
                ErrorKind::TooLarge {
                    len,
                    max: self.max_string,
                },
                at,
            );
        }
        Ok(())
    }

    /// The header of a string: its encoding and, for raw strings, the length still to read.
    pub(crate) fn string_header(&mut self) -> P<StrHead> {
        let at = self.p;
        match self.raw_len()? {
            Len::Len(n) => Ok(StrHead::Raw(n)),
            Len::Special(0) => Ok(StrHead::Int(i64::from(self.u8()? as i8))),
            Len::Special(1) => Ok(StrHead::Int(i64::from(i16::from_le_bytes(self.array()?)))),
            Len::Special(2) => Ok(StrHead::Int(i64::from(i32::from_le_bytes(self.array()?)))),
            Len::Special(3) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                self.check_len(ulen, at)?;
                // LZF never expands a back-reference of 3 bytes into more than 264 bytes, so
                // a stated length far beyond that ratio is a lie: refuse it before allocating.
                if ulen > clen.saturating_mul(100).saturating_add(64) {
                    return self.bad(
                        ErrorKind::Corrupt {
                            what: "LZF string",
                            why: format!("{clen} compressed bytes cannot hold {ulen} bytes"),
                        },
                        at,
                    );
                }
                Ok(StrHead::Lzf(clen, ulen))
            }
            Len::Special(s) => self.bad(
                ErrorKind::Corrupt {
                    what: "string",
                    why: format!("unknown string encoding {s}"),
                },
                at,
            ),
        }
    }

    #[inline]
    pub(crate) fn string(&mut self) -> P<SRef> {
        // the common case first: a raw string of under 64 bytes, all there
        match self.short_raw() {
            Some((start, end)) => Ok(SRef::Raw(start, end)),
            None => self.string_any(),
        }
    }

    /// Skips a string of any encoding; false (the cursor anywhere) when it is not all there
    /// or is malformed.
    #[inline(always)]
    pub(crate) fn skip_string(&mut self) -> bool {
        self.short_raw().is_some() || self.string_any().is_ok()
    }

    /// A raw string of under 64 bytes that is all there (the common case): where its bytes
    /// are, and the cursor past it; `None` (the cursor where it was) for anything else.
    #[inline(always)]
    pub(crate) fn short_raw(&mut self) -> Option<(usize, usize)> {
        let &first = self.b.get(self.p)?;
        let (start, n) = (self.p + 1, usize::from(first));
        if first < 0x40 && n <= self.b.len() - start && n as u64 <= self.max_string {
            self.p = start + n;
            Some((start, self.p))
        } else {
            None
        }
    }

    fn string_any(&mut self) -> P<SRef> {
        let at = self.p;
        match self.string_header()? {
            StrHead::Raw(n) => {
                self.check_len(n, at)?;
                let (s, e) = self.take(n)?;
                Ok(SRef::Raw(s, e))
            }
            StrHead::Int(i) => Ok(SRef::Int(i, at)),
            StrHead::Lzf(clen, ulen) => {
                self.check_len(clen, at)?;
                let (s, e) = self.take(clen)?;
                Ok(SRef::Lzf(s, e, ulen))
            }
        }
    }

    /// A string that must be raw (a blob such as a listpack, or a stream ID).
    pub(crate) fn text_double(&mut self) -> P<f64> {
        let at = self.p;
        let n = self.u8()?;
        match n {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            _ => {
                let (s, e) = self.take(u64::from(n))?;
                let text = &self.b[s..e];
                let parsed = parse_double_bytes(text).or_else(|| {
                    let t = std::str::from_utf8(text).ok()?;
                    self.lenient.then(|| number_prefix(t)).flatten()
                });
                match parsed {
                    Some(d) => Ok(d),
                    None => self.bad(
                        ErrorKind::Corrupt {
                            what: "double",
                            why: format!(
                                "{} is not a number (--lenient reads a number at its start, as \
                                 Redis' sscanf does)",
                                crate::error::Shown(text)
                            ),
                        },
                        at,
                    ),
                }
            }
        }
    }

    pub(crate) fn bin_double(&mut self) -> P<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }
}

/// Parses a double as Redis writes it as text (`inf`, `-inf`, `nan` included).
/// The longest start of `t` that is a number, as `sscanf("%lg")` reads it (leading spaces
/// skipped).
fn number_prefix(t: &str) -> Option<f64> {
    let t = t.trim_start();
    (1..=t.len())
        .rev()
        .filter(|&n| t.is_char_boundary(n))
        .find_map(|n| parse_double(&t[..n]))
}

/// [`parse_double`] of bytes. Plain decimals (`-12.5`) of at most 15 digits take a fast
/// path: the digits as an integer divided by a power of ten, both exact in an `f64`, so the
/// one division rounds correctly (Clinger's fast path, as `str::parse` takes it too).
pub(crate) fn parse_double_bytes(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    let (mut m, mut n, mut frac, mut dot) = (0u64, 0usize, 0usize, false);
    for &c in digits {
        match c {
            b'0'..=b'9' if n < 15 => {
                m = m * 10 + u64::from(c - b'0');
                n += 1;
                frac += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return parse_double(std::str::from_utf8(b).ok()?),
        }
    }
    if n == 0 {
        return parse_double(std::str::from_utf8(b).ok()?);
    }
    let v = m as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// Whether [`parse_double_bytes`] reads `b`, for a score that is only checked. The short
/// decimals most scores are (an optional `-`, then at most 8 digits and dots, one dot at
/// most and a digit at least) are told in one word, without a number made of them (parsed
/// byte by byte, a sorted set's scores were a sixth of checking a file of small ones);
/// anything else is parsed.
pub(crate) fn is_double(b: &[u8]) -> bool {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let n = digits.len();
    if n == 0 || n > 8 {
        return parse_double_bytes(b).is_some();
    }
    // the bytes in a word, low byte first, `0`s past them; overlapping loads put bytes that
    // both hold in the same place, so or-ing them is harmless
    let four = |i: usize| {
        u64::from(u32::from_le_bytes(
            digits[i..i + 4].try_into().expect("four bytes"),
        ))
    };
    let two = |i: usize| u64::from(u16::from_le_bytes([digits[i], digits[i + 1]]));
    let w = match n {
        4.. => four(0) | four(n - 4) << (8 * (n - 4)),
        2.. => two(0) | two(n - 2) << (8 * (n - 2)),
        _ => u64::from(digits[0]),
    };
    short_decimal(w, n) || parse_double_bytes(b).is_some()
}

/// [`is_double`] of `b[at..end]`, where `b` goes on past `end`: a score in a listpack, which
/// its back-length and end byte follow. Its up to 8 bytes are loaded in one word where `b`
/// has 8 from `at` on (no branch on the length).
pub(crate) fn is_double_within(b: &[u8], at: usize, end: usize) -> bool {
    let n = end - at;
    match b.get(at..at + 8) {
        Some(word) if (1..=8).contains(&n) && b[at] != b'-' => {
            let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            // the bytes past the text dropped (a shift by 64 - 8n, 0 for 8 bytes)
            let w = w & (u64::MAX >> (64 - 8 * n));
            short_decimal(w, n) || parse_double_bytes(&b[at..end]).is_some()
        }
        _ => is_double(&b[at..end]),
    }
}

/// Whether the `n` bytes (1 to 8, low byte first) of `w`, zeros past them, are a short
/// decimal: digits and at most one dot, a digit at least.
fn short_decimal(w: u64, n: usize) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // `0`s past the bytes (none for 8: a shift by 64 in two steps)
    let w = w | (LO * u64::from(b'0')) << (8 * n - 1) << 1;
    // a byte's high bit when it is not zero (no carry leaves a byte: each adds at most 0x7f
    // to at most 0x7f)
    let nonzero = |x: u64| ((x & !HI).wrapping_add(!HI & (LO * 0x7f)) | x) & HI;
    // not a digit: its high nibble is not 3, or its low one is past 9
    let t = w ^ (LO * u64::from(b'0'));
    let other = nonzero((t & (LO * 0xf0)) | (((t & (LO * 0x0f)) + LO * 0x06) & (LO * 0x10)));
    let dots = !nonzero(w ^ (LO * u64::from(b'.'))) & HI;
    other & !dots == 0 && dots.count_ones() <= 1 && n > dots.count_ones() as usize
}

pub(crate) fn parse_double(t: &str) -> Option<f64> {
    match t {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => t.parse().ok(),
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StrHead {
    Raw(u64),
    Int(i64),
    Lzf(u64, u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path gives the same bits as `str::parse` (or the same refusal) on decimals
    /// of every shape near its limits.
    #[test]
    fn parse_double_bytes_is_str_parse() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1.",
            ".5",
            "-.5",
            ".",
            "-",
            "",
            "1..2",
            "1.2.3",
            "+1",
            "1e5",
            "inf",
            "-inf",
            "nan",
            "0.1",
            "0.3",
            "123456789012345",
            "1234567890123456",
            "12345678901234567890",
            "9007199254740993",
            "0.000000000000001",
            "-99.999",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let digits = (seed % 19) as usize;
            let mut t = String::new();
            if seed & (1 << 40) != 0 {
                t.push('-');
            }
            let dot = ((seed >> 20) % 21) as usize;
            for i in 0..digits {
                if i == dot {
                    t.push('.');
                }
                t.push(char::from(b'0' + ((seed >> (i * 3 % 60)) % 10) as u8));
            }
            texts.push(t);
        }
        for t in &texts {
            assert_eq!(is_double(t.as_bytes()), parse_double(t).is_some(), "{t:?}");
            let want = parse_double(t).map(f64::to_bits);
            assert_eq!(
                parse_double_bytes(t.as_bytes()).map(f64::to_bits),
                want,
                "{t:?}"
            );
        }
    }

    /// [`is_double`] says what [`parse_double_bytes`] does of every string of up to 5 bytes
    /// made of digits, dots, signs and bytes next to them, and of up to 9 bytes made of a
    /// few of them.
    #[test]
    fn is_double_is_parse_double_bytes() {
        let check = |t: &[u8]| {
            let want = parse_double_bytes(t).is_some();
            assert_eq!(is_double(t), want, "{:?}", String::from_utf8_lossy(t));
            // within a buffer, whatever follows it (digits, dots, other bytes, nothing:
            // read in one word where 8 bytes follow its start)
            for after in [
                &b""[..],
                b"1",
                b"11111111",
                b"........",
                b"9.9.9.9.9",
                b"\x00\xff-",
            ] {
                let mut b = t.to_vec();
                b.extend_from_slice(after);
                assert_eq!(
                    is_double_within(&b, 0, t.len()),
                    want,
                    "{:?} then {after:?}",
                    String::from_utf8_lossy(t)
                );
            }
        };
        let all = |alphabet: &[u8], longest: u32| {
            for len in 0..=longest {
                for mut i in 0..alphabet.len().pow(len) {
                    let t: Vec<u8> = (0..len)
                        .map(|_| {
                            let c = alphabet[i % alphabet.len()];
                            i /= alphabet.len();
                            c
                        })
                        .collect();
                    check(&t);
                }
            }
        };
        all(b"0159.-+e/:\x00\xff\xb0n", 5);
        all(b"07.-/", 9);
    }
}
