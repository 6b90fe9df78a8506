//! The sans-IO, resumable frame decoder.

use bytes::{Bytes, BytesMut};

use crate::args::{Piece, split_pieces};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{Args, Command, Frame};

/// Bounds on what the input may claim; each is checked before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    pub(crate) max_bulk_len: u64,
    pub(crate) max_aggregate_len: u64,
    pub(crate) max_depth: usize,
    pub(crate) max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_len: 512 << 20,
            max_aggregate_len: i32::MAX as u64,
            max_depth: 128,
            max_line_len: 64 << 10,
        }
    }
}

impl Limits {
    /// Longest bulk string, bulk error or verbatim string (Redis' `proto-max-bulk-len`,
    /// 512 MiB by default).
    pub fn max_bulk_len(&mut self, n: u64) -> &mut Self {
        self.max_bulk_len = n;
        self
    }
    /// Most elements in one array, set or push, or pairs in one map or attribute (default
    /// `i32::MAX`, Redis' multibulk limit).
    pub fn max_aggregate_len(&mut self, n: u64) -> &mut Self {
        self.max_aggregate_len = n;
        self
    }
    /// Deepest nesting of aggregates (default 128).
    pub fn max_depth(&mut self, n: usize) -> &mut Self {
        self.max_depth = n;
        self
    }
    /// Longest header or inline line (default 64 KiB, Redis' `PROTO_INLINE_MAX_SIZE`).
    pub fn max_line_len(&mut self, n: usize) -> &mut Self {
        self.max_line_len = n;
        self
    }
}

/// Decoder settings; change them with the setters.
///
/// ```
/// let mut config = resp_codec::Config::default();
/// config.inline(true).limits_mut().max_depth(16).max_line_len(1024);
/// let dec = resp_codec::Decoder::with_config(config);
/// # let _ = dec;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    pub(crate) limits: Limits,
    pub(crate) inline: bool,
}

impl Config {
    /// With these limits.
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// The limits, to change one.
    pub fn limits_mut(&mut self) -> &mut Limits {
        &mut self.limits
    }

    /// Decode inline commands: a top-level frame that does not start with a RESP type byte is
    /// a line of space-separated (optionally quoted) arguments, as a server reads them from
    /// `redis-cli` or telnet. Empty lines are skipped. Off by default (a bad type byte is an
    /// error).
    pub fn inline(&mut self, on: bool) -> &mut Self {
        self.inline = on;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Array,
    Map,
    Set,
    Attribute,
    Push,
}

/// One parsed piece of a frame; strings are ranges of the buffer.
#[derive(Debug, Clone, Copy)]
enum Tok {
    Simple(usize, usize),
    Error(usize, usize),
    Bulk(usize, usize),
    BigNumber(usize, usize),
    BulkError(usize, usize),
    Verbatim([u8; 3], usize, usize),
    Int(i64),
    Double(f64),
    Bool(bool),
    Null,
    NullBulk,
    NullArray,
    Agg(Agg, usize),
    Inline(usize),
    Owned(usize),
}

/// The decoder: feed it a `BytesMut` the caller appends to; [`decode`](Self::decode) returns
/// the next whole frame and removes its bytes, or `Ok(None)` when more bytes are needed.
///
/// A partial frame is not rescanned: the decoder remembers how far it parsed and which
/// aggregates are open, and goes on from there on the next call. The caller may only append
/// to the buffer between calls.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::{Decoder, Frame};
///
/// let mut dec = Decoder::new();
/// let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1"[..]);
/// assert_eq!(dec.decode(&mut buf).unwrap(), None); // a partial frame
/// buf.extend_from_slice(b"\r\nk\r\n:1\r\n");
/// assert_eq!(dec.decode(&mut buf).unwrap(), Some(Frame::command(["GET", "k"])));
/// assert_eq!(dec.decode(&mut buf).unwrap(), Some(Frame::Integer(1)));
/// assert_eq!(dec.offset(), 24);
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    config: Config,
    /// Stream offset of the buffer's first byte.
    offset: u64,
    /// Bytes of the buffer already parsed into `toks`.
    pos: usize,
    toks: Vec<Tok>,
    owned: Vec<Bytes>,
    /// Children still expected by each open aggregate, outermost first.
    stack: Vec<u64>,
    /// Argument ranges found by the fast path for commands.
    ranges: Vec<(usize, usize)>,
}

enum Step {
    /// A token, the bytes it used and the children it opens.
    Tok(Tok, usize, u64),
    /// An inline command whose tokens are pushed, and the bytes it used.
    Inline(usize),
    /// An empty inline line to drop.
    Skip(usize),
    More,
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(i64::from(d - b'0'))?
        } else {
            v.checked_add(i64::from(d - b'0'))?
        };
    }
    Some(v)
}

/// The common case of a length line: a few digits, then CR LF, all in the buffer. Returns the
/// length and the index of the CR; `None` sends the line to the general (memchr) path.
#[inline]
fn quick_len(b: &[u8]) -> Option<(i64, usize)> {
    let mut v: i64 = 0;
    let mut i = 1;
    while i < b.len() && i <= 18 {
        let d = b[i];
        if d.is_ascii_digit() {
            v = v * 10 + i64::from(d - b'0');
            i += 1;
        } else {
            break;
        }
    }
    (i > 1 && b.get(i) == Some(&b'\r') && b.get(i + 1) == Some(&b'\n')).then_some((v, i))
}

impl Decoder {
    /// A decoder with the default [`Config`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder with the given settings.
    pub fn with_config(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stream offset of the next byte to decode: the start of the next (or partial) frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Accounts for `n` bytes the caller removed from the front of the buffer itself (between
    /// frames), so error offsets stay stream offsets.
    ///
    /// # Panics
    /// When a partial frame is pending (the caller must not consume bytes then).
    pub fn skipped(&mut self, n: u64) {
        assert!(self.pos == 0, "bytes skipped in the middle of a frame");
        self.offset += n;
    }

    /// True when part of a frame has been parsed and the rest is awaited.
    pub fn is_partial(&self) -> bool {
        self.pos > 0
    }

    /// Bytes of the pending partial frame parsed so far.
    pub fn partial_len(&self) -> usize {
        self.pos
    }

    fn err(&self, kind: ErrorKind, at: usize) -> Error {
        Error::new(kind, self.offset + at as u64)
    }

    /// Finds the CR LF ending the line that starts at `b[0]` (a type byte); returns the index
    /// of the CR.
    fn line(&self, b: &[u8], at: usize) -> Result<Option<usize>> {
        let limit = self.config.limits.max_line_len;
        let window = &b[..b.len().min(limit.saturating_add(3))];
        match memchr::memchr(b'\n', window) {
            Some(nl) if nl >= 2 && window[nl - 1] == b'\r' => Ok(Some(nl - 1)),
            Some(nl) => Err(self.err(ErrorKind::BareLf, at + nl)),
            None if window.len() > limit.saturating_add(2) => {
                Err(self.err(ErrorKind::LineTooLong { limit }, at))
            }
            None => Ok(None),
        }
    }

    /// The length on a `$`/`*`-style header line and the index of its CR; `None`: the line is
    /// not complete yet.
    fn length_line(&self, b: &[u8], at: usize) -> Result<Option<(i64, usize)>> {
        if let Some(v) = quick_len(b) {
            return Ok(Some(v));
        }
        let Some(end) = self.line(b, at)? else {
            return Ok(None);
        };
        let len = parse_i64(&b[1..end]).ok_or_else(|| self.err(ErrorKind::BadLength, at))?;
        Ok(Some((len, end)))
    }

    fn step(&mut self, buf: &[u8]) -> Result<Step> {
        let at = self.pos;
        let b = &buf[at..];
        let ty = b[0];
        let limits = self.config.limits;
        match ty {
            b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => {
                let Some(end) = self.line(b, at)? else {
                    return Ok(Step::More);
                };
                let body = &b[1..end];
                let (s, e) = (at + 1, at + end);
                let tok = match ty {
                    b'+' => Tok::Simple(s, e),
                    b'-' => Tok::Error(s, e),
                    b':' => Tok::Int(
                        parse_i64(body).ok_or_else(|| self.err(ErrorKind::BadInteger, at))?,
                    ),
                    b',' => Tok::Double(
                        std::str::from_utf8(body)
                            .ok()
                            .and_then(|t| t.parse::<f64>().ok())
                            .ok_or_else(|| self.err(ErrorKind::BadDouble, at))?,
                    ),
                    b'#' => match body {
                        b"t" => Tok::Bool(true),
                        b"f" => Tok::Bool(false),
                        _ => return Err(self.err(ErrorKind::BadBoolean, at)),
                    },
                    b'(' => {
                        let digits = match body.first() {
                            Some(b'-' | b'+') => &body[1..],
                            _ => body,
                        };
                        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                            return Err(self.err(ErrorKind::BadBigNumber, at));
                        }
                        Tok::BigNumber(s, e)
                    }
                    _ => {
                        if !body.is_empty() {
                            return Err(self.err(ErrorKind::BadNull, at));
                        }
                        Tok::Null
                    }
                };
                Ok(Step::Tok(tok, end + 2, 0))
            }
            b'$' | b'!' | b'=' => {
                let Some((len, end)) = self.length_line(b, at)? else {
                    return Ok(Step::More);
                };
                if len == -1 && ty == b'$' {
                    return Ok(Step::Tok(Tok::NullBulk, end + 2, 0));
                }
                if len < 0 {
                    return Err(self.err(ErrorKind::NegativeLength(len), at));
                }
                let len = len as u64;
                if len > limits.max_bulk_len {
                    return Err(self.err(
                        ErrorKind::BulkTooLong {
                            len,
                            limit: limits.max_bulk_len,
                        },
                        at,
                    ));
                }
                let len = len as usize;
                let data = end + 2;
                let need = data + len + 2;
                if b.len() < need {
                    return Ok(Step::More);
                }
                if &b[data + len..need] != b"\r\n" {
                    return Err(self.err(ErrorKind::MissingCrlf, at + data + len));
                }
                let (s, e) = (at + data, at + data + len);
                let tok = match ty {
                    b'$' => Tok::Bulk(s, e),
                    b'!' => Tok::BulkError(s, e),
                    _ => {
                        if len < 4 || b[data + 3] != b':' {
                            return Err(self.err(ErrorKind::BadVerbatim, at));
                        }
                        Tok::Verbatim([b[data], b[data + 1], b[data + 2]], s + 4, e)
                    }
                };
                Ok(Step::Tok(tok, need, 0))
            }
            b'*' | b'%' | b'~' | b'|' | b'>' => {
                let Some((len, end)) = self.length_line(b, at)? else {
                    return Ok(Step::More);
                };
                if len == -1 && ty == b'*' {
                    return Ok(Step::Tok(Tok::NullArray, end + 2, 0));
                }
                if len < 0 {
                    return Err(self.err(ErrorKind::NegativeLength(len), at));
                }
                let len = len as u64;
                if len > limits.max_aggregate_len {
                    return Err(self.err(
                        ErrorKind::AggregateTooLong {
                            len,
                            limit: limits.max_aggregate_len,
                        },
                        at,
                    ));
                }
                if self.stack.len() >= limits.max_depth {
                    return Err(self.err(
                        ErrorKind::TooDeep {
                            limit: limits.max_depth,
                        },
                        at,
                    ));
                }
                let (kind, children) = match ty {
                    b'*' => (Agg::Array, len),
                    b'%' => (Agg::Map, len * 2),
                    b'~' => (Agg::Set, len),
                    b'|' => (Agg::Attribute, len * 2 + 1),
                    _ => (Agg::Push, len),
                };
                Ok(Step::Tok(Tok::Agg(kind, len as usize), end + 2, children))
            }
            _ if self.config.inline && self.stack.is_empty() => self.inline(b, at),
            other => Err(self.err(ErrorKind::BadType(other), at)),
        }
    }

    fn inline(&mut self, b: &[u8], at: usize) -> Result<Step> {
        let limit = self.config.limits.max_line_len;
        let window = &b[..b.len().min(limit.saturating_add(1))];
        let Some(nl) = memchr::memchr(b'\n', window) else {
            if window.len() > limit {
                return Err(self.err(ErrorKind::LineTooLong { limit }, at));
            }
            return Ok(Step::More);
        };
        let line = &b[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut pieces = Vec::new();
        split_pieces(line, &mut pieces).map_err(|()| self.err(ErrorKind::UnbalancedQuotes, at))?;
        if pieces.is_empty() {
            return Ok(Step::Skip(nl + 1));
        }
        self.toks.push(Tok::Inline(pieces.len()));
        for p in pieces {
            self.toks.push(match p {
                Piece::Range(s, e) => Tok::Bulk(at + s, at + e),
                Piece::Owned(v) => {
                    self.owned.push(Bytes::from(v));
                    Tok::Owned(self.owned.len() - 1)
                }
            });
        }
        Ok(Step::Inline(nl + 1))
    }

    /// Decodes the next frame from `buf`, removing its bytes. `Ok(None)`: more bytes needed.
    /// After an error the stream cannot be resynchronised; drop the decoder.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        if self.pos == 0 && buf.first() == Some(&b'*') {
            if let Some(frame) = self.fast_frame(buf) {
                return Ok(Some(frame));
            }
        }
        Ok(self.decode_raw(buf)?.map(|(f, _)| f))
    }

    /// The general path: a frame and the bytes it was decoded from.
    fn decode_raw(&mut self, buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>> {
        loop {
            if self.pos >= buf.len() {
                return Ok(None);
            }
            let (used, children) = match self.step(buf)? {
                Step::More => return Ok(None),
                Step::Inline(n) => {
                    // an inline command: its tokens are in place and it is a whole frame
                    self.pos += n;
                    return Ok(Some(self.finish(buf)));
                }
                Step::Skip(n) => {
                    // an empty inline line: consume it as if it were not there
                    self.pos += n;
                    if self.toks.is_empty() {
                        let _ = buf.split_to(self.pos);
                        self.offset += self.pos as u64;
                        self.pos = 0;
                    }
                    continue;
                }
                Step::Tok(tok, used, children) => {
                    self.toks.push(tok);
                    (used, children)
                }
            };
            self.pos += used;
            if children > 0 {
                self.stack.push(children);
                continue;
            }
            // a complete value: it closes every aggregate it completes
            let mut done = true;
            while let Some(top) = self.stack.last_mut() {
                *top -= 1;
                if *top > 0 {
                    done = false;
                    break;
                }
                self.stack.pop();
            }
            if done {
                return Ok(Some(self.finish(buf)));
            }
        }
    }

    /// The common case, a whole array of bulk strings already in the buffer (a command, or a
    /// reply of strings), parsed without tokens into `self.ranges`; returns the frame's bytes,
    /// split off the buffer. `None` leaves everything to the general path, which also reports
    /// any error.
    fn fast_command(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        let b = &buf[..];
        let (n, end) = quick_len(b)?;
        if !(1..=1024).contains(&n) || self.config.limits.max_depth == 0 {
            return None;
        }
        let max_bulk = self.config.limits.max_bulk_len;
        let mut at = end + 2;
        self.ranges.clear();
        for _ in 0..n {
            let rest = b.get(at..)?;
            if rest.first() != Some(&b'$') {
                return None;
            }
            let (len, end) = quick_len(rest)?;
            if len as u64 > max_bulk {
                return None;
            }
            let start = at + end + 2;
            let stop = start + len as usize;
            if b.get(stop..stop + 2)? != b"\r\n" {
                return None;
            }
            self.ranges.push((start, stop));
            at = stop + 2;
        }
        self.offset += at as u64;
        Some(buf.split_to(at).freeze())
    }

    fn fast_frame(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let mut data = self.fast_command(buf)?;
        let mut items = Vec::with_capacity(self.ranges.len());
        let (&(ls, le), others) = self.ranges.split_last()?;
        for &(s, e) in others {
            items.push(Frame::BulkString(data.slice(s..e)));
        }
        // the last argument takes the frame's own handle: one reference count fewer
        data.truncate(le);
        bytes::Buf::advance(&mut data, ls);
        items.push(Frame::BulkString(data));
        Some(Frame::Array(items))
    }

    /// Decodes the next frame as a command: an array of bulk (or simple) strings, or an inline
    /// command when [`Config::inline`] is on. Cheaper than [`decode`](Self::decode) for
    /// commands: one shared handle on the frame's bytes instead of one per argument.
    /// Any other frame is an [`ErrorKind::NotACommand`] error.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// let mut dec = resp_codec::Decoder::new();
    /// let mut buf = BytesMut::from(&b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n"[..]);
    /// let cmd = dec.decode_command(&mut buf).unwrap().unwrap();
    /// assert_eq!(cmd.arg(0), Some(&b"DEL"[..]));
    /// assert_eq!(cmd.raw().len(), 20);
    /// ```
    pub fn decode_command(&mut self, buf: &mut BytesMut) -> Result<Option<Command>> {
        let start = self.offset;
        if self.pos == 0 && buf.first() == Some(&b'*') {
            if let Some(raw) = self.fast_command(buf) {
                return Ok(Some(Command {
                    raw,
                    args: Args::Ranges(self.ranges.clone()),
                }));
            }
        }
        let Some((frame, raw)) = self.decode_raw(buf)? else {
            return Ok(None);
        };
        let base = raw.as_ptr() as usize;
        let in_raw = |b: &Bytes| {
            let p = b.as_ptr() as usize;
            (p >= base && p + b.len() <= base + raw.len()).then(|| (p - base, p - base + b.len()))
        };
        match frame.into_command() {
            Ok(args) => {
                let ranges: Option<Vec<(usize, usize)>> = args.iter().map(in_raw).collect();
                let args = match ranges {
                    Some(r) => Args::Ranges(r),
                    None => Args::Owned(args),
                };
                Ok(Some(Command { raw, args }))
            }
            Err(_) => Err(Error::new(ErrorKind::NotACommand, start)),
        }
    }

    fn finish(&mut self, buf: &mut BytesMut) -> (Frame, Bytes) {
        let data = buf.split_to(self.pos).freeze();
        self.offset += self.pos as u64;
        self.pos = 0;
        let mut i = 0;
        let frame = build(&self.toks, &mut i, &data, &self.owned);
        self.toks.clear();
        self.owned.clear();
        (frame, data)
    }
}

fn build(toks: &[Tok], i: &mut usize, data: &Bytes, owned: &[Bytes]) -> Frame {
    let tok = toks[*i];
    *i += 1;
    match tok {
        Tok::Simple(s, e) => Frame::SimpleString(data.slice(s..e)),
        Tok::Error(s, e) => Frame::Error(data.slice(s..e)),
        Tok::Bulk(s, e) => Frame::BulkString(data.slice(s..e)),
        Tok::BigNumber(s, e) => Frame::BigNumber(data.slice(s..e)),
        Tok::BulkError(s, e) => Frame::BulkError(data.slice(s..e)),
        Tok::Verbatim(format, s, e) => Frame::Verbatim {
            format,
            text: data.slice(s..e),
        },
        Tok::Int(v) => Frame::Integer(v),
        Tok::Double(v) => Frame::Double(v),
        Tok::Bool(v) => Frame::Boolean(v),
        Tok::Null => Frame::Null,
        Tok::NullBulk => Frame::NullBulk,
        Tok::NullArray => Frame::NullArray,
        Tok::Owned(k) => Frame::BulkString(owned[k].clone()),
        Tok::Inline(n) => Frame::Inline(
            (0..n)
                .map(|_| match build(toks, i, data, owned) {
                    Frame::BulkString(b) => b,
                    _ => Bytes::new(),
                })
                .collect(),
        ),
        Tok::Agg(kind, n) => {
            // n is bounded by the tokens actually parsed, not by a claimed length
            match kind {
                Agg::Array => Frame::Array(build_list(toks, i, data, owned, n)),
                Agg::Set => Frame::Set(build_list(toks, i, data, owned, n)),
                Agg::Push => Frame::Push(build_list(toks, i, data, owned, n)),
                Agg::Map | Agg::Attribute => {
                    let mut pairs = Vec::with_capacity(n);
                    for _ in 0..n {
                        let k = build(toks, i, data, owned);
                        let v = build(toks, i, data, owned);
                        pairs.push((k, v));
                    }
                    if kind == Agg::Map {
                        Frame::Map(pairs)
                    } else {
                        let data = build(toks, i, data, owned);
                        Frame::Attribute {
                            attributes: pairs,
                            data: Box::new(data),
                        }
                    }
                }
            }
        }
    }
}

fn build_list(toks: &[Tok], i: &mut usize, data: &Bytes, owned: &[Bytes], n: usize) -> Vec<Frame> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(build(toks, i, data, owned));
    }
    v
}
