//! JSON Lines and JSON: one object per key, command and (with `all`) other item, as
//! docs/jsonl.md says.

use std::io::Write;

use base64::Engine;
use rdb_format::{
    ArrayItem, Chunk, Elem, ElemRef, Encoding, Function, HashField, Item, KeyHead, KeyMeta,
    ModuleItem, ModuleValue, PackedRecord, StreamEntry, StreamId, StreamMeta, StringRecord,
    ValueType,
};

use super::Sink;
use super::spool::Spool;
use crate::error::Result;
use crate::event::CommandEvent;

// ---------------------------------------------------------------- JSON

/// Writes a byte string as the spec says: a JSON string when UTF-8, else `{"base64": …}`.
pub(crate) fn json_bytes(out: &mut Vec<u8>, b: &[u8]) {
    json_text(out, b, json_base64);
}

/// [`json_bytes`], with `not_utf8` writing what stands for bytes that are not UTF-8.
#[inline]
fn json_text(out: &mut Vec<u8>, b: &[u8], not_utf8: fn(&mut Vec<u8>, &[u8])) {
    if b.len() <= SHORT && short_text(out, b) {
        return;
    }
    json_text_any(out, b, not_utf8);
}

/// [`json_text`] of any string, byte by byte where it must be.
fn json_text_any(out: &mut Vec<u8>, b: &[u8], not_utf8: fn(&mut Vec<u8>, &[u8])) {
    let mark = out.len();
    out.reserve(b.len() + 2);
    out.push(b'"');
    // the common case, ASCII, escaped as it is read: one pass
    if escape_ascii(out, b) {
        out.push(b'"');
        return;
    }
    // a byte past ASCII: valid UTF-8 passes through (escaped), anything else is base64
    out.truncate(mark);
    if std::str::from_utf8(b).is_ok() {
        out.reserve(b.len() + 8);
        out.push(b'"');
        escape_into(out, b);
        out.push(b'"');
    } else {
        not_utf8(out, b);
    }
}

/// The longest string [`short_text`] writes.
const SHORT: usize = 32;

/// Writes `b` (at most [`SHORT`] bytes) as a JSON string when it is ASCII that needs no
/// escape, as most keys and elements are; false, with nothing written, when it is not. Its
/// bytes are looked at in at most four words, and room for the longest such string is
/// appended at once, all quotes, and cut to length after the text is moved in (at most two
/// moves of a fixed size): appended by the general way, the text was a call to copy a slice
/// of unknown length and three capacity checks.
#[inline]
fn short_text(out: &mut Vec<u8>, b: &[u8]) -> bool {
    let n = b.len();
    let marked = |i: usize| {
        let x = word(b, i);
        (x & HI) | needs_escape(x)
    };
    // (words that overlap look at some bytes twice; a word with no byte to mark has no mark)
    let plain = match n {
        16.. => marked(0) | marked(8) | marked(n - 16) | marked(n - 8) == 0,
        8.. => marked(0) | marked(n - 8) == 0,
        _ => b.iter().all(|&c| c < 0x80 && !is_escaped(c)),
    };
    if !plain {
        return false;
    }
    let at = out.len();
    out.extend_from_slice(&[b'"'; SHORT + 2]);
    let text = &mut out[at + 1..at + 1 + n];
    match n {
        16.. => {
            text[..16].copy_from_slice(&b[..16]);
            text[n - 16..].copy_from_slice(&b[n - 16..]);
        }
        8.. => {
            text[..8].copy_from_slice(&b[..8]);
            text[n - 8..].copy_from_slice(&b[n - 8..]);
        }
        4.. => {
            text[..4].copy_from_slice(&b[..4]);
            text[n - 4..].copy_from_slice(&b[n - 4..]);
        }
        _ => text.copy_from_slice(b),
    }
    // the quote after the text is one of those appended
    out.truncate(at + n + 2);
    true
}

/// Writes `{"base64":"<b64>"}`.
fn json_base64(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b"{\"base64\":\"");
    base64_into(out, b);
    out.extend_from_slice(b"\"}");
}

/// Appends `b` in standard base64 with padding.
fn base64_into(out: &mut Vec<u8>, b: &[u8]) {
    let at = out.len();
    let n = base64::encoded_len(b.len(), true).expect("a slice's base64 length fits in usize");
    out.resize(at + n, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(b, &mut out[at..])
        .expect("sized by encoded_len");
    out.truncate(at + written);
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero when a byte of `x` is below 0x20, `"` or `\\`: a byte JSON must escape.
fn needs_escape(x: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    (x.wrapping_sub(LO * 0x20) & !x & HI)
        | has_zero(x ^ (LO * u64::from(b'"')))
        | has_zero(x ^ (LO * u64::from(b'\\')))
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn is_escaped(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// Writes `b` with JSON's escapes while it is ASCII; false at its first byte past ASCII
/// (with part of it written). Eight bytes are looked at a time, and each run of bytes that
/// need nothing is copied at once.
fn escape_ascii(out: &mut Vec<u8>, b: &[u8]) -> bool {
    // the first byte not written yet, and where the look goes on
    let (mut start, mut i) = (0, 0);
    loop {
        // the next byte past ASCII or to escape: the lowest byte a word's mask marks is
        // one (a borrow in the mask only marks bytes above the byte it comes from, and each
        // look starts a word at the byte after the last one)
        let stop = loop {
            if i + 8 > b.len() {
                if i >= b.len() {
                    break b.len();
                }
                if b.len() < 8 {
                    break b[i..]
                        .iter()
                        .position(|&c| c >= 0x80 || is_escaped(c))
                        .map_or(b.len(), |p| i + p);
                }
                // the last 1-7 bytes: the string's last word, shifted for them to be its
                // low bytes (the zero bytes shifted in above them are not looked at; a
                // byte's mark only depends on the bytes below it)
                let rest = b.len() - i;
                let x = word(b, b.len() - 8) >> (8 * (8 - rest));
                let marked = ((x & HI) | needs_escape(x)) & ((1u64 << (8 * rest)) - 1);
                break if marked == 0 {
                    b.len()
                } else {
                    i + (marked.trailing_zeros() / 8) as usize
                };
            }
            let x = word(b, i);
            let marked = (x & HI) | needs_escape(x);
            if marked != 0 {
                break i + (marked.trailing_zeros() / 8) as usize;
            }
            i += 8;
        };
        out.extend_from_slice(&b[start..stop]);
        let Some(&c) = b.get(stop) else { return true };
        if c >= 0x80 {
            return false;
        }
        debug_assert!(is_escaped(c), "a word's lowest mark is a byte to escape");
        escape_byte(out, c);
        start = stop + 1;
        i = start;
    }
}

/// Index of the next byte JSON must escape at or after `i` (UTF-8 passes through).
fn next_escape(b: &[u8], mut i: usize) -> usize {
    while i + 8 <= b.len() && needs_escape(word(b, i)) == 0 {
        i += 8;
    }
    while i < b.len() && !is_escaped(b[i]) {
        i += 1;
    }
    i
}

pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s.as_bytes());
    out.push(b'"');
}

/// Writes valid UTF-8 with JSON escapes.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    loop {
        let i = next_escape(bytes, start);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&c) = bytes.get(i) else { return };
        escape_byte(out, c);
        start = i + 1;
    }
}

/// Writes the escape of a byte JSON must escape (below 0x20, `"` or `\`).
fn escape_byte(out: &mut Vec<u8>, c: u8) {
    match c {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        }
    }
}

fn json_elem(out: &mut Vec<u8>, e: ElemRef<'_>) {
    match e {
        ElemRef::Bytes(b) => json_bytes(out, b),
        ElemRef::Int(i) => {
            out.push(b'"');
            out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            out.push(b'"');
        }
    }
}

/// An object key: hash field names that are not UTF-8 become `"base64:<b64>"`.
fn json_field_name(out: &mut Vec<u8>, e: ElemRef<'_>) {
    match e {
        // (not looked at first for a byte past ASCII: that look was a second pass over
        // every name)
        ElemRef::Bytes(b) => json_text(out, b, |out, b| {
            let s = format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            );
            json_str(out, &s);
        }),
        ElemRef::Int(_) => json_elem(out, e),
    }
}

fn json_score(out: &mut Vec<u8>, d: f64) {
    if d.is_nan() {
        out.extend_from_slice(b"\"nan\"");
    } else if d.is_infinite() {
        out.extend_from_slice(if d > 0.0 { b"\"inf\"" } else { b"\"-inf\"" });
    } else if d == d.trunc() && d.abs() < 1e15 {
        // integral scores print as integers (shortest text that reads back the same)
        out.extend_from_slice(itoa::Buffer::new().format(d as i64).as_bytes());
        if d == 0.0 && d.is_sign_negative() {
            out.truncate(out.len() - 1);
            out.extend_from_slice(b"-0.0");
        }
    } else if !short_decimal(out, d) {
        out.extend_from_slice(ryu::Buffer::new().format_finite(d).as_bytes());
    }
}

/// Writes `d` as `ryu` does when it has at most six decimals (as scores such as `12.5` have),
/// without `ryu`'s general search: the first `k` for which `d × 10^k` rounds to an integer
/// `m` with `m / 10^k == d` (both exact in an `f64`, so the division rounds as reading the
/// text back does). `m < 2^50` leaves one such text of `k` decimals within half an ulp, and
/// `1e-3 <= |d| < 1e15` is where `ryu` writes no exponent. False: not such a number (nothing
/// written). Integral values are the caller's.
pub(super) fn short_decimal(out: &mut Vec<u8>, d: f64) -> bool {
    const POW10: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
    let a = d.abs();
    if !(1e-3..1e15).contains(&a) {
        return false;
    }
    for (k, &p) in POW10.iter().enumerate().skip(1) {
        let m = (a * p as f64).round();
        if m >= (1u64 << 50) as f64 {
            return false;
        }
        if m / p as f64 == a {
            let m = m as u64;
            if d < 0.0 {
                out.push(b'-');
            }
            out.extend_from_slice(itoa::Buffer::new().format(m / p).as_bytes());
            out.push(b'.');
            let frac = m % p;
            let mut digits = [b'0'; 6];
            let mut f = frac;
            for i in (0..k).rev() {
                digits[i] = b'0' + (f % 10) as u8;
                f /= 10;
            }
            out.extend_from_slice(&digits[..k]);
            return true;
        }
    }
    false
}

fn json_id(out: &mut Vec<u8>, id: StreamId) {
    out.push(b'"');
    out.extend_from_slice(itoa::Buffer::new().format(id.ms).as_bytes());
    out.push(b'-');
    out.extend_from_slice(itoa::Buffer::new().format(id.seq).as_bytes());
    out.push(b'"');
}

fn json_u64(out: &mut Vec<u8>, name: &str, v: u64) {
    out.push(b',');
    json_str(out, name);
    out.push(b':');
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// JSON Lines: one object per line.
///
/// ```
/// use replicator::{Command, CommandEvent, print::{Jsonl, Sink}};
/// let mut out = Vec::new();
/// let mut j = Jsonl::new(&mut out);
/// j.command(&CommandEvent::new(0, Command::from_args(["SET", "k", "v"])))?;
/// j.finish()?;
/// assert_eq!(out, b"{\"db\":0,\"cmd\":[\"SET\",\"k\",\"v\"]}\n");
/// # Ok::<(), replicator::Error>(())
/// ```
#[derive(Debug)]
pub struct Jsonl<W: Write>(JsonSink<W>);

/// One JSON array of the objects [`Jsonl`] writes.
#[derive(Debug)]
pub struct Json<W: Write>(JsonSink<W>);

impl<W: Write> Jsonl<W> {
    /// JSON Lines to `w`.
    pub fn new(w: W) -> Self {
        Self(JsonSink::new(w, false))
    }

    /// What follows is in db `db` (as after a SELECTDB; RESIZEDB records name it).
    pub(crate) fn set_db(&mut self, db: u64) {
        self.0.db = db;
    }

    /// From now on, holds what it prints in `buf` (after what it holds already) until
    /// [`take_held`](Self::take_held) or a flush, instead of writing it out every 64 KiB.
    pub(crate) fn hold_in(&mut self, mut buf: Vec<u8>) {
        buf.extend_from_slice(&self.0.buf);
        self.0.buf = buf;
        self.0.spill = usize::MAX;
    }

    /// Bytes printed and not written out yet.
    pub(crate) fn held(&self) -> usize {
        self.0.buf.len()
    }

    /// Takes the bytes printed and not written out yet; goes on in `fresh`.
    pub(crate) fn take_held(&mut self, fresh: Vec<u8>) -> Vec<u8> {
        std::mem::replace(&mut self.0.buf, fresh)
    }
}

impl<W: Write> Json<W> {
    /// A JSON array to `w`.
    pub fn new(w: W) -> Self {
        Self(JsonSink::new(w, true))
    }
}

macro_rules! delegate {
    ($t:ident) => {
        impl<W: Write> Sink for $t<W> {
            fn start(&mut self, head: &KeyHead) -> Result<()> {
                self.0.start(head)
            }
            fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> Result<()> {
                self.0.chunk(head, chunk)
            }
            fn end(&mut self, head: &KeyHead) -> Result<()> {
                self.0.end(head)
            }
            fn module(&mut self, head: &KeyHead, value: &ModuleValue) -> Result<()> {
                self.0.module(head, value)
            }
            fn string(&mut self, rec: &StringRecord<'_>, value: bool) -> Result<()> {
                self.0.string(rec, value)
            }
            fn takes_packed(&self) -> bool {
                self.0.takes_packed()
            }
            fn packed(&mut self, rec: &PackedRecord<'_>) -> Result<()> {
                self.0.packed(rec)
            }
            fn other(&mut self, item: &Item) -> Result<()> {
                self.0.other(item)
            }
            fn command(&mut self, cmd: &CommandEvent) -> Result<()> {
                self.0.command(cmd)
            }
            fn flush(&mut self) -> Result<()> {
                self.0.flush()
            }
            fn finish(&mut self) -> Result<()> {
                self.0.finish()
            }
        }
    };
}
delegate!(Jsonl);
delegate!(Json);

/// A big string's pieces as they come ([`Chunk::String`]), kept in a [`Spool`] (memory up to
/// a few MiB, then a temporary file) while whether they are UTF-8 is found piece by piece:
/// JSON writes a string as text or as base64 by what the whole is. (Collected in memory, a
/// string of 300 MB of zeros, 3.4 MB in the file, took 2 GiB to print, its escapes
/// included; 100 MB of random bytes took 234 MiB.)
#[derive(Debug, Default)]
struct BigText {
    spool: Spool,
    /// A byte that is not UTF-8 was seen.
    not_utf8: bool,
    /// The last piece's last bytes, a character cut short (up to 3 bytes).
    cut: Vec<u8>,
}

impl BigText {
    fn put(&mut self, piece: &[u8]) -> Result<()> {
        self.spool.write_all(piece)?;
        if self.not_utf8 {
            return Ok(());
        }
        let mut rest = piece;
        if !self.cut.is_empty() {
            // the character the last piece cut, completed from this one's first bytes
            let want = match self.cut[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let n = (want - self.cut.len()).min(rest.len());
            self.cut.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.cut.len() < want {
                return Ok(());
            }
            if std::str::from_utf8(&self.cut).is_err() {
                self.not_utf8 = true;
                return Ok(());
            }
            self.cut.clear();
        }
        if let Err(e) = std::str::from_utf8(rest) {
            match e.error_len() {
                Some(_) => self.not_utf8 = true,
                None => self.cut.extend_from_slice(&rest[e.valid_up_to()..]),
            }
        }
        Ok(())
    }

    /// Writes the whole string as [`json_bytes`] writes it, a block at a time.
    fn write<W: Write>(&mut self, sink: &mut JsonSink<W>) -> Result<()> {
        const BLOCK: usize = 48 << 10;
        let text = !self.not_utf8 && self.cut.is_empty();
        sink.buf
            .extend_from_slice(if text { b"\"" } else { b"{\"base64\":\"" });
        let mut block = vec![0u8; BLOCK];
        // base64 goes three bytes at a time: what a block leaves over starts the next
        let mut held = 0;
        self.spool.drain(|r| {
            loop {
                let n = r.read(&mut block[held..])?;
                let end = held + n;
                if n == 0 {
                    held = end;
                    break;
                }
                if text {
                    escape_into(&mut sink.buf, &block[..end]);
                    held = 0;
                } else {
                    let whole = end / 3 * 3;
                    base64_into(&mut sink.buf, &block[..whole]);
                    block.copy_within(whole..end, 0);
                    held = end - whole;
                }
                sink.flush_if_big()?;
            }
            Ok(())
        })?;
        if !text {
            base64_into(&mut sink.buf, &block[..held]);
        }
        sink.buf
            .extend_from_slice(if text { b"\"" } else { b"\"}" });
        Ok(())
    }
}

/// JSON Lines (`array = false`) or one JSON array (`array = true`).
#[derive(Debug)]
struct JsonSink<W: Write> {
    w: W,
    buf: Vec<u8>,
    /// `buf` is written out past this many bytes.
    spill: usize,
    array: bool,
    first_record: bool,
    first_elem: bool,
    /// Field TTLs of the hash being written, written after its value.
    field_ttls: Vec<(Elem, u64)>,
    /// A big string being collected (JSON needs to know if the whole is UTF-8).
    big_string: BigText,
    /// The db of the last SELECTDB (RESIZEDB records name it).
    db: u64,
}

impl<W: Write> JsonSink<W> {
    fn new(w: W, array: bool) -> Self {
        Self {
            w,
            buf: Vec::with_capacity(1 << 16),
            spill: 1 << 16,
            array,
            first_record: true,
            first_elem: true,
            field_ttls: Vec::new(),
            big_string: BigText::default(),
            db: 0,
        }
    }

    /// A list's elements or a set's members, after those printed before.
    fn elements<'a>(&mut self, elems: impl Iterator<Item = ElemRef<'a>>) {
        for e in elems {
            self.sep();
            json_elem(&mut self.buf, e);
        }
    }

    /// A sorted set's members and scores, after those printed before.
    fn scored<'a>(&mut self, members: impl Iterator<Item = (ElemRef<'a>, f64)>) {
        for (m, score) in members {
            self.sep();
            self.buf.push(b'[');
            json_elem(&mut self.buf, m);
            self.buf.push(b',');
            json_score(&mut self.buf, score);
            self.buf.push(b']');
        }
    }

    /// A hash's fields and values, after those printed before; their TTLs are kept for the
    /// record's end.
    fn fields<'a>(
        &mut self,
        fields: impl Iterator<Item = (ElemRef<'a>, ElemRef<'a>, Option<u64>)>,
    ) {
        for (field, value, expire_ms) in fields {
            self.sep();
            json_field_name(&mut self.buf, field);
            self.buf.push(b':');
            json_elem(&mut self.buf, value);
            if let Some(ms) = expire_ms {
                self.field_ttls.push((field.to_elem(), ms));
            }
        }
    }

    fn begin_record(&mut self) {
        if self.array {
            self.buf
                .extend_from_slice(if self.first_record { b"[\n" } else { b",\n" });
        }
        self.first_record = false;
    }

    fn end_record(&mut self) -> Result<()> {
        if !self.array {
            self.buf.push(b'\n');
        }
        self.flush_if_big()
    }

    fn flush_if_big(&mut self) -> Result<()> {
        if self.buf.len() >= self.spill {
            self.w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn sep(&mut self) {
        if !self.first_elem {
            self.buf.push(b',');
        }
        self.first_elem = false;
    }
}

impl<W: Write> JsonSink<W> {
    /// A record's fields up to and including `"value":`.
    fn record_head(&mut self, h: HeadFields<'_>) {
        self.begin_record();
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"db\":");
        b.extend_from_slice(itoa::Buffer::new().format(h.db).as_bytes());
        b.extend_from_slice(b",\"key\":");
        json_bytes(b, h.key);
        b.extend_from_slice(b",\"type\":");
        json_str(b, h.value_type.name());
        if let Some(ms) = h.expire_ms {
            // negative: already expired when written
            b.extend_from_slice(b",\"expire_ms\":");
            b.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
        }
        if let Some(idle) = h.idle_s {
            json_u64(b, "idle_s", idle);
        }
        if let Some(freq) = h.freq {
            json_u64(b, "freq", u64::from(freq));
        }
        if !h.key_meta.is_empty() {
            write_key_meta(b, h.key_meta);
        }
        b.extend_from_slice(b",\"encoding\":");
        json_str(b, h.encoding.name());
        b.extend_from_slice(b",\"value\":");
    }
}

/// What a record's head prints, from a [`KeyHead`] or a [`StringRecord`].
struct HeadFields<'a> {
    db: u64,
    key: &'a [u8],
    value_type: ValueType,
    expire_ms: Option<i64>,
    idle_s: Option<u64>,
    freq: Option<u8>,
    key_meta: &'a [KeyMeta],
    encoding: Encoding,
}

impl<W: Write> Sink for JsonSink<W> {
    fn string(&mut self, rec: &StringRecord<'_>, value: bool) -> Result<()> {
        self.record_head(HeadFields {
            db: rec.db,
            key: rec.key,
            value_type: ValueType::String,
            expire_ms: rec.expire_ms,
            idle_s: rec.idle_s,
            freq: rec.freq,
            key_meta: &[],
            encoding: rec.encoding,
        });
        // a checked key's value prints as an empty string, as `start` and `end` print it
        json_bytes(&mut self.buf, if value { rec.value } else { b"" });
        self.buf.push(b'}');
        self.end_record()
    }

    fn takes_packed(&self) -> bool {
        true
    }

    /// As [`key`](Sink::key) prints the built value: `start`, the value as one chunk, `end`.
    fn packed(&mut self, rec: &PackedRecord<'_>) -> Result<()> {
        let head = rec.head;
        self.start(head)?;
        match head.value_type {
            ValueType::List | ValueType::Set => self.elements(rec.elements()),
            ValueType::SortedSet => self.scored(rec.scored()),
            _ => self.fields(rec.fields()),
        }
        self.flush_if_big()?;
        self.end(head)
    }

    fn start(&mut self, head: &KeyHead) -> Result<()> {
        self.record_head(HeadFields {
            db: head.db,
            key: &head.key,
            value_type: head.value_type,
            expire_ms: head.expire_ms,
            idle_s: head.idle_s,
            freq: head.freq,
            key_meta: &head.key_meta,
            encoding: head.encoding,
        });
        let b = &mut self.buf;
        match head.value_type {
            ValueType::String | ValueType::Module => {}
            ValueType::Hash => b.push(b'{'),
            ValueType::Stream => b.extend_from_slice(b"{\"entries\":["),
            ValueType::Array => b.extend_from_slice(b"{\"items\":["),
            _ => b.push(b'['),
        }
        self.first_elem = true;
        self.field_ttls.clear();
        self.big_string = BigText::default();
        Ok(())
    }

    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> Result<()> {
        match chunk {
            Chunk::String(s) => {
                if head.value_type == ValueType::String && self.first_elem {
                    self.big_string = BigText::default();
                }
                self.first_elem = false;
                self.big_string.put(s)?;
            }
            Chunk::List(v) | Chunk::Set(v) => self.elements(v.iter().map(Elem::as_ref)),
            Chunk::SortedSet(v) => self.scored(v.iter().map(|(m, s)| (m.as_ref(), *s))),
            Chunk::Hash(v) => self.fields(v.iter().map(|f| {
                let HashField {
                    field,
                    value,
                    expire_ms,
                } = f;
                (field.as_ref(), value.as_ref(), *expire_ms)
            })),
            Chunk::StreamEntries(v) => {
                for StreamEntry { id, fields } in v {
                    self.sep();
                    self.buf.push(b'[');
                    json_id(&mut self.buf, *id);
                    self.buf.extend_from_slice(b",{");
                    for (i, (f, val)) in fields.iter().enumerate() {
                        if i > 0 {
                            self.buf.push(b',');
                        }
                        json_field_name(&mut self.buf, f.as_ref());
                        self.buf.push(b':');
                        json_elem(&mut self.buf, val.as_ref());
                    }
                    self.buf.extend_from_slice(b"}]");
                }
            }
            Chunk::StreamMeta(meta) => {
                self.buf.push(b']');
                write_stream_meta(&mut self.buf, meta);
                // the closing brace is written by `end`
                self.first_elem = true;
            }
            Chunk::Array(v) => {
                for ArrayItem { index, value } in v {
                    self.sep();
                    self.buf.push(b'[');
                    self.buf
                        .extend_from_slice(itoa::Buffer::new().format(*index).as_bytes());
                    self.buf.push(b',');
                    json_bytes(&mut self.buf, &value.to_bytes());
                    self.buf.push(b']');
                }
            }
            Chunk::ArrayEnd { insert_index } => {
                self.buf.push(b']');
                if let Some(i) = insert_index {
                    json_u64(&mut self.buf, "next_insert_index", i.wrapping_add(1));
                }
                // the closing brace is written by `end`
            }
            _ => {}
        }
        self.flush_if_big()
    }

    fn end(&mut self, head: &KeyHead) -> Result<()> {
        match head.value_type {
            ValueType::String => {
                let mut big = std::mem::take(&mut self.big_string);
                big.write(self)?;
            }
            ValueType::Hash | ValueType::Stream | ValueType::Array => self.buf.push(b'}'),
            _ => self.buf.push(b']'),
        }
        if !self.field_ttls.is_empty() {
            self.buf.extend_from_slice(b",\"field_expire_ms\":{");
            for (i, (f, ms)) in std::mem::take(&mut self.field_ttls).iter().enumerate() {
                if i > 0 {
                    self.buf.push(b',');
                }
                json_field_name(&mut self.buf, f.as_ref());
                self.buf.push(b':');
                self.buf
                    .extend_from_slice(itoa::Buffer::new().format(*ms).as_bytes());
            }
            self.buf.push(b'}');
        }
        self.buf.push(b'}');
        self.end_record()
    }

    fn module(&mut self, head: &KeyHead, m: &ModuleValue) -> Result<()> {
        self.start(head)?;
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"module\":");
        json_str(b, &m.name);
        json_u64(b, "encver", m.encver);
        b.extend_from_slice(b",\"raw\":");
        json_base64(b, &m.raw);
        b.extend_from_slice(b"}}");
        self.end_record()
    }

    fn command(&mut self, c: &CommandEvent) -> Result<()> {
        let CommandEvent {
            db,
            cmd,
            offset,
            ts,
            ..
        } = c;
        self.begin_record();
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"db\":");
        b.extend_from_slice(itoa::Buffer::new().format(*db).as_bytes());
        b.extend_from_slice(b",\"cmd\":[");
        for (i, a) in cmd.args().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            json_bytes(b, a);
        }
        b.push(b']');
        if let Some(off) = offset {
            b.extend_from_slice(b",\"offset\":");
            b.extend_from_slice(itoa::Buffer::new().format(*off).as_bytes());
        }
        if let Some(ts) = ts {
            b.extend_from_slice(b",\"ts\":");
            b.extend_from_slice(itoa::Buffer::new().format(*ts).as_bytes());
        }
        b.push(b'}');
        self.end_record()
    }

    fn other(&mut self, item: &Item) -> Result<()> {
        let mut b = Vec::new();
        match item {
            Item::Aux { key, value } => {
                b.extend_from_slice(b"{\"aux\":{");
                json_bytes(&mut b, key);
                b.push(b':');
                json_bytes(&mut b, value);
                b.extend_from_slice(b"}}");
            }
            Item::Function(Function { code, .. }) => {
                b.extend_from_slice(b"{\"function\":");
                json_bytes(&mut b, code);
                b.push(b'}');
            }
            Item::ModuleAux {
                name,
                encver,
                when,
                raw,
            } => {
                b.extend_from_slice(b"{\"module_aux\":{\"module\":");
                json_str(&mut b, name);
                json_u64(&mut b, "encver", *encver);
                json_u64(&mut b, "when", *when);
                b.extend_from_slice(b",\"raw\":");
                json_base64(&mut b, raw);
                b.extend_from_slice(b"}}");
            }
            Item::ResizeDb {
                db_size,
                expires_size,
            } => {
                b.extend_from_slice(b"{\"resize_db\":{\"db\":");
                b.extend_from_slice(itoa::Buffer::new().format(self.db).as_bytes());
                json_u64(&mut b, "keys", *db_size);
                json_u64(&mut b, "expires", *expires_size);
                b.extend_from_slice(b"}}");
            }
            Item::SelectDb(db) => {
                self.db = *db;
                b.extend_from_slice(b"{\"select_db\":");
                b.extend_from_slice(itoa::Buffer::new().format(*db).as_bytes());
                b.push(b'}');
            }
            Item::SlotInfo {
                slot,
                size,
                expires_size,
            } => {
                b.extend_from_slice(b"{\"slot_info\":{\"slot\":");
                b.extend_from_slice(itoa::Buffer::new().format(*slot).as_bytes());
                json_u64(&mut b, "keys", *size);
                json_u64(&mut b, "expires", *expires_size);
                b.extend_from_slice(b"}}");
            }
            Item::SlotImport { job, ranges } => {
                b.extend_from_slice(b"{\"slot_import\":{\"job\":");
                json_bytes(&mut b, job);
                b.extend_from_slice(b",\"ranges\":[");
                for (i, (from, to)) in ranges.iter().enumerate() {
                    comma(&mut b, i);
                    b.extend_from_slice(format!("[{from},{to}]").as_bytes());
                }
                b.extend_from_slice(b"]}}");
            }
            Item::Eof { checksum } => {
                b.extend_from_slice(b"{\"eof\":{");
                if let Some(c) = checksum {
                    b.extend_from_slice(format!("\"checksum\":\"{c:016x}\"").as_bytes());
                }
                b.extend_from_slice(b"}}");
            }
            _ => return Ok(()),
        }
        self.begin_record();
        self.buf.extend_from_slice(&b);
        self.end_record()
    }

    fn flush(&mut self) -> Result<()> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        Ok(self.w.flush()?)
    }

    fn finish(&mut self) -> Result<()> {
        if self.array {
            self.buf
                .extend_from_slice(if self.first_record { b"[]\n" } else { b"\n]\n" });
        }
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        Ok(self.w.flush()?)
    }
}

/// A comma before every element but the first.
fn comma(b: &mut Vec<u8>, i: usize) {
    if i > 0 {
        b.push(b',');
    }
}

/// `"key_meta": [{"class", "version", "allow_ignore", "value": [item, ...]}]`.
fn write_key_meta(b: &mut Vec<u8>, metas: &[KeyMeta]) {
    b.extend_from_slice(b",\"key_meta\":[");
    for (i, m) in metas.iter().enumerate() {
        comma(b, i);
        b.extend_from_slice(b"{\"class\":");
        json_str(b, &m.class);
        json_u64(b, "version", u64::from(m.version));
        b.extend_from_slice(if m.allow_ignore {
            b",\"allow_ignore\":true"
        } else {
            b",\"allow_ignore\":false"
        });
        b.extend_from_slice(b",\"value\":[");
        for (j, item) in m.items.iter().enumerate() {
            comma(b, j);
            match item {
                ModuleItem::Uint(v) => {
                    b.extend_from_slice(b"{\"uint\":");
                    b.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
                }
                ModuleItem::Sint(v) => {
                    b.extend_from_slice(b"{\"sint\":");
                    b.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes());
                }
                ModuleItem::Float(v) => {
                    b.extend_from_slice(b"{\"float\":");
                    if v.is_finite() {
                        b.extend_from_slice(ryu::Buffer::new().format_finite(*v).as_bytes());
                    } else {
                        json_score(b, f64::from(*v));
                    }
                }
                ModuleItem::Double(v) => {
                    b.extend_from_slice(b"{\"double\":");
                    json_score(b, *v);
                }
                ModuleItem::String(s) => {
                    b.extend_from_slice(b"{\"string\":");
                    json_bytes(b, s);
                }
                _ => b.extend_from_slice(b"{\"unknown\":null"),
            }
            b.push(b'}');
        }
        b.extend_from_slice(b"]}");
    }
    b.push(b']');
}

fn write_stream_meta(b: &mut Vec<u8>, m: &StreamMeta) {
    json_u64(b, "length", m.length);
    b.extend_from_slice(b",\"last_id\":");
    json_id(b, m.last_id);
    if let Some(id) = m.first_id {
        b.extend_from_slice(b",\"first_id\":");
        json_id(b, id);
    }
    if let Some(id) = m.max_deleted_id {
        b.extend_from_slice(b",\"max_deleted_id\":");
        json_id(b, id);
    }
    if let Some(n) = m.entries_added {
        json_u64(b, "entries_added", n);
    }
    b.extend_from_slice(b",\"groups\":[");
    for (i, g) in m.groups.iter().enumerate() {
        comma(b, i);
        b.extend_from_slice(b"{\"name\":");
        json_bytes(b, &g.name);
        b.extend_from_slice(b",\"last_id\":");
        json_id(b, g.last_id);
        if let Some(n) = g.entries_read {
            json_u64(b, "entries_read", n);
        }
        b.extend_from_slice(b",\"pending\":[");
        for (j, p) in g.pending.iter().enumerate() {
            comma(b, j);
            b.extend_from_slice(b"{\"id\":");
            json_id(b, p.id);
            if let Some(c) = &p.consumer {
                b.extend_from_slice(b",\"consumer\":");
                json_bytes(b, c);
            }
            json_u64(b, "delivery_time_ms", p.delivery_time_ms);
            json_u64(b, "delivery_count", p.delivery_count);
            b.push(b'}');
        }
        b.extend_from_slice(b"],\"consumers\":[");
        for (j, c) in g.consumers.iter().enumerate() {
            comma(b, j);
            b.extend_from_slice(b"{\"name\":");
            json_bytes(b, &c.name);
            json_u64(b, "seen_time_ms", c.seen_time_ms);
            if let Some(t) = c.active_time_ms {
                json_u64(b, "active_time_ms", t);
            }
            b.extend_from_slice(b",\"pending\":[");
            for (k, id) in c.pending.iter().enumerate() {
                comma(b, k);
                json_id(b, *id);
            }
            b.extend_from_slice(b"]}");
        }
        b.push(b']');
        if let Some(ids) = &g.nacked {
            b.extend_from_slice(b",\"nacked\":[");
            for (k, id) in ids.iter().enumerate() {
                comma(b, k);
                json_id(b, *id);
            }
            b.push(b']');
        }
        b.push(b'}');
    }
    b.push(b']');
    if let Some(i) = &m.idmp {
        b.extend_from_slice(b",\"idmp\":{\"duration_s\":");
        b.extend_from_slice(itoa::Buffer::new().format(i.duration_s).as_bytes());
        json_u64(b, "max_entries", i.max_entries);
        json_u64(b, "iids_added", i.iids_added);
        json_u64(b, "iids_duplicates", i.iids_duplicates);
        b.extend_from_slice(b",\"producers\":[");
        for (j, p) in i.producers.iter().enumerate() {
            comma(b, j);
            b.extend_from_slice(b"{\"id\":");
            json_bytes(b, &p.id);
            b.extend_from_slice(b",\"entries\":[");
            for (k, e) in p.entries.iter().enumerate() {
                comma(b, k);
                b.extend_from_slice(b"{\"iid\":");
                json_bytes(b, &e.iid);
                b.extend_from_slice(b",\"id\":");
                json_id(b, e.id);
                b.push(b'}');
            }
            b.extend_from_slice(b"]}");
        }
        b.extend_from_slice(b"]}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big string handed over in pieces is written as the whole string is, whatever the
    /// pieces' size: text where all of it is UTF-8 (its characters cut between pieces
    /// anywhere), escaped; base64 where any of it is not, however many bytes the pieces
    /// leave over from base64's groups of three; through the spool's file past its memory.
    #[test]
    fn a_big_string_in_pieces_is_written_as_the_whole_is() {
        let mut texts: Vec<Vec<u8>> = vec![
            b"plain ascii with \"quotes\", a \\ and a \n newline".to_vec(),
            "caf\u{e9} \u{1F600} \u{4E2D}\u{6587} \u{10FFFF}"
                .repeat(7)
                .into_bytes(),
            vec![0xff, b'a', b'b'],
            "\u{e9}".repeat(20).into_bytes()[1..].to_vec(),
            "ok \u{1F600}".repeat(3).into_bytes()[..13].to_vec(),
            (0..=255u8).cycle().take(1000).collect(),
        ];
        // past the spool's memory: its file is read back
        let mut big = "\u{e9}t\u{e9} ".repeat(900_000).into_bytes();
        texts.push(big.clone());
        big[3_000_001] = 0xC0;
        texts.push(big);
        for (i, text) in texts.iter().enumerate() {
            let mut whole = Vec::new();
            json_bytes(&mut whole, text);
            for piece in [1, 2, 3, 5, 64, 1 << 20] {
                let mut sink = JsonSink::new(Vec::new(), false);
                let mut big = BigText::default();
                for p in text.chunks(piece) {
                    big.put(p).unwrap();
                }
                big.write(&mut sink).unwrap();
                let mut got = sink.w;
                got.extend_from_slice(&sink.buf);
                assert!(got == whole, "text {i} in pieces of {piece}");
            }
        }
    }

    /// A short string that needs no escape is written as the general way writes it, and
    /// any other (a byte to escape or past ASCII anywhere in it) is left to that way.
    #[test]
    fn short_strings_are_written_as_any_string_is() {
        let mut short_ones = 0;
        for n in 0..=SHORT + 8 {
            // every byte differs from its neighbours', so a misplaced move shows
            let plain: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut cases = vec![plain.clone()];
            for at in 0..n {
                for c in [b'"', b'\\', b'\n', 0x1f, 0x7f, 0x80, 0xc3, 0xff] {
                    let mut b = plain.clone();
                    b[at] = c;
                    cases.push(b);
                }
            }
            for b in cases {
                let mut want = b"before".to_vec();
                json_text_any(&mut want, &b, json_base64);
                let mut got = b"before".to_vec();
                json_bytes(&mut got, &b);
                assert_eq!(got, want, "{b:?}");
                let mut short = b"before".to_vec();
                let took = n <= SHORT && short_text(&mut short, &b);
                let plain = b
                    .iter()
                    .all(|&c| (0x20..0x80).contains(&c) && !b"\"\\".contains(&c));
                assert_eq!(took, n <= SHORT && plain, "{b:?}");
                if !took {
                    assert_eq!(short, b"before", "nothing written for {b:?}");
                }
                short_ones += usize::from(took);
            }
        }
        assert!(short_ones > SHORT, "the short way was taken");
    }

    /// Scores print as `ryu` prints them, whether or not the short path takes them.
    #[test]
    fn short_decimals_are_ryus_text() {
        let mut values = vec![
            0.1,
            0.2,
            0.3,
            12.5,
            -12.5,
            0.001,
            0.0015,
            0.000999,
            1e-3,
            999999999999999.9,
            1e15 - 0.5,
            123456.789012,
            0.1 + 0.2,
            1.0 / 3.0,
            2.675,
            1e14 + 0.25,
            4503599627370495.5,
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300_000 {
            let r = next();
            // k-decimal values of every size, and arbitrary bits
            let k = (r % 8) as i32;
            let m = (next() % 10u64.pow((r >> 8) as u32 % 17)) as f64;
            values.push(m / 10f64.powi(k) * if r & (1 << 40) != 0 { -1.0 } else { 1.0 });
            values.push(f64::from_bits(next()));
        }
        let mut fast = 0;
        for d in values {
            if !d.is_finite() || d == d.trunc() {
                continue;
            }
            let mut got = Vec::new();
            fast += usize::from(short_decimal(&mut got, d));
            if got.is_empty() {
                continue;
            }
            let want = ryu::Buffer::new().format_finite(d).to_owned();
            assert_eq!(String::from_utf8(got).unwrap(), want, "{d:?}");
        }
        assert!(fast > 100_000, "only {fast} took the short path");
    }

    fn j(b: &[u8]) -> String {
        let mut out = Vec::new();
        json_bytes(&mut out, b);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_strings_match_serde_json() {
        let cases: [&[u8]; 8] = [
            b"",
            b"plain ascii text, long enough for words",
            b"quote \" and backslash \\ and \n\r\t\x01\x1f end",
            "h\u{e9}llo \u{2603} snow\"man\" over eight bytes".as_bytes(),
            b"\"\"\"\"\"\"\"\"\"",
            b"\x7f\x20\x21",
            b"ends with escape\n",
            "\u{1F600}\u{1F600}\u{1F600}x".as_bytes(),
        ];
        for c in cases {
            let s = std::str::from_utf8(c).unwrap();
            assert_eq!(j(c), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        assert_eq!(j(b"\xff\xfe"), r#"{"base64":"//4="}"#);
    }

    /// Strings of every length up to a few words, made of plain ASCII, bytes JSON escapes,
    /// multi-byte UTF-8 and (in some) a byte that is not UTF-8, at every position: UTF-8 ones
    /// print as serde_json prints them, the others as their base64.
    #[test]
    fn json_strings_of_every_shape() {
        use base64::Engine;
        // (serde_json names \x08 and \x0c; the spec writes them as \u00XX: left out here;
        // a space, `#` and `]` come right above bytes that are escaped, where a word's mask
        // may mark a byte that needs nothing)
        let pieces: [&[u8]; 12] = [
            b"a",
            b"Z",
            b" ",
            b"#",
            b"]",
            b"\"",
            b"\\",
            b"\n",
            b"\x01",
            b"\x1f",
            "\u{e9}".as_bytes(),
            "\u{2603}".as_bytes(),
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for round in 0..20_000 {
            let len = next(40);
            let mut b = Vec::new();
            for _ in 0..len {
                // mostly plain text, so that whole words come through too
                let p = if next(4) == 0 {
                    next(pieces.len())
                } else {
                    next(2)
                };
                b.extend_from_slice(pieces[p]);
            }
            if round % 5 == 0 {
                let at = next(b.len() + 1);
                b.insert(at, 0xff);
            }
            // as a hash field's name too
            let mut name = Vec::new();
            json_field_name(&mut name, ElemRef::Bytes(&b));
            let name = String::from_utf8(name).unwrap();
            match std::str::from_utf8(&b) {
                Ok(s) => {
                    assert_eq!(j(&b), serde_json::to_string(s).unwrap(), "{s:?}");
                    assert_eq!(name, serde_json::to_string(s).unwrap(), "{s:?}");
                }
                Err(_) => {
                    let want = base64::engine::general_purpose::STANDARD.encode(&b);
                    assert_eq!(j(&b), format!(r#"{{"base64":"{want}"}}"#), "{b:?}");
                    assert_eq!(name, format!(r#""base64:{want}""#), "{b:?}");
                }
            }
        }
    }

    #[test]
    fn scores() {
        for (d, want) in [
            (1.0, "1"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e300, "1e300"),
            (f64::INFINITY, "\"inf\""),
        ] {
            let mut out = Vec::new();
            json_score(&mut out, d);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
