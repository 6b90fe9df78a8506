//! Output sinks: JSON Lines / JSON, RESP commands, key names.
//!
//! Every key reaches a sink as `start`, one or more `chunk`s and `end`, whether the decoder
//! delivered it whole or in chunks, so big keys are written in bounded memory.

use std::io::{self, Write};

use base64::Engine;
use bytes::Bytes;
use rdb_format::{
    ArrayItem, Chunk, Elem, Function, HashField, Item, KeyHead, KeyMeta, ModuleItem, StreamEntry,
    StreamId, StreamMeta, Value, ValueType,
};
use resp_codec::Command;

/// Something that writes keys and other RDB items.
pub(crate) trait Sink {
    fn start(&mut self, head: &KeyHead) -> io::Result<()>;
    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> io::Result<()>;
    fn end(&mut self, head: &KeyHead) -> io::Result<()>;
    /// A whole module value (never chunked).
    fn module(&mut self, head: &KeyHead, name: &str, encver: u64, raw: &Bytes) -> io::Result<()>;
    /// A non-key item (aux, function, …).
    fn other(&mut self, item: &Item) -> io::Result<()>;
    /// A command (AOF, replication stream) applying to `db`: `offset` is the replication offset
    /// after it, `ts` the `#TS` annotation before it (AOF).
    fn command(
        &mut self,
        db: u64,
        cmd: &Command,
        offset: Option<u64>,
        ts: Option<i64>,
    ) -> io::Result<()>;
    /// A full resync replaces what was written so far (`resp`: FLUSHALL).
    fn resync(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Writes out what is buffered (a live stream must not wait for a full buffer).
    fn flush(&mut self) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

/// Splits a whole value into the chunk form sinks take.
pub(crate) fn value_chunks(value: Value) -> Vec<Chunk> {
    match value {
        Value::String(s) => vec![Chunk::String(s)],
        Value::List(v) => vec![Chunk::List(v)],
        Value::Set(v) => vec![Chunk::Set(v)],
        Value::SortedSet(v) => vec![Chunk::SortedSet(v)],
        Value::Hash(v) => vec![Chunk::Hash(v)],
        Value::Stream(s) => {
            let s = *s;
            vec![
                Chunk::StreamEntries(s.entries),
                Chunk::StreamMeta(Box::new(s.meta)),
            ]
        }
        Value::Array(a) => {
            let a = *a;
            vec![
                Chunk::Array(a.items),
                Chunk::ArrayEnd {
                    insert_index: a.insert_index,
                },
            ]
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------- JSON

/// Writes a byte string as the spec says: a JSON string when UTF-8, else `{"base64": …}`.
fn json_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let plain = plain_ascii_prefix(b);
    if plain == b.len() {
        // the common case: printable ASCII with nothing to escape
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    match std::str::from_utf8(&b[plain..]) {
        Ok(_) => {
            out.push(b'"');
            out.extend_from_slice(&b[..plain]);
            escape_into(out, &b[plain..]);
            out.push(b'"');
        }
        Err(_) => {
            out.extend_from_slice(b"{\"base64\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\"}");
        }
    }
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

/// Length of the leading run of ASCII bytes that need no escaping, eight bytes at a time.
fn plain_ascii_prefix(b: &[u8]) -> usize {
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = word(b, i);
        if (x & HI) | needs_escape(x) != 0 {
            break;
        }
        i += 8;
    }
    while i < b.len() && b[i] < 0x80 && !is_escaped(b[i]) {
        i += 1;
    }
    i
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

fn json_str(out: &mut Vec<u8>, s: &str) {
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
        start = i + 1;
    }
}

fn json_elem(out: &mut Vec<u8>, e: &Elem) {
    match e {
        Elem::Bytes(b) => json_bytes(out, b),
        Elem::Int(i) => {
            out.push(b'"');
            out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
            out.push(b'"');
        }
    }
}

/// An object key: hash field names that are not UTF-8 become `"base64:<b64>"`.
fn json_field_name(out: &mut Vec<u8>, e: &Elem) {
    match e {
        Elem::Bytes(b) if std::str::from_utf8(b).is_err() => {
            let s = format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            );
            json_str(out, &s);
        }
        _ => json_elem(out, e),
    }
}

pub(crate) fn json_score(out: &mut Vec<u8>, d: f64) {
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
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(d).as_bytes());
    }
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

/// JSON Lines (`array = false`) or one JSON array (`array = true`).
pub(crate) struct JsonSink<W: Write> {
    w: W,
    buf: Vec<u8>,
    array: bool,
    first_record: bool,
    first_elem: bool,
    /// Field TTLs of the hash being written, written after its value.
    field_ttls: Vec<(Elem, u64)>,
    /// A big string being collected (JSON needs to know if the whole is UTF-8).
    big_string: Vec<u8>,
    /// The db of the last SELECTDB (RESIZEDB records name it).
    db: u64,
}

impl<W: Write> JsonSink<W> {
    pub(crate) fn new(w: W, array: bool) -> Self {
        Self {
            w,
            buf: Vec::with_capacity(1 << 16),
            array,
            first_record: true,
            first_elem: true,
            field_ttls: Vec::new(),
            big_string: Vec::new(),
            db: 0,
        }
    }

    fn begin_record(&mut self) {
        if self.array {
            self.buf
                .extend_from_slice(if self.first_record { b"[\n" } else { b",\n" });
        }
        self.first_record = false;
    }

    fn end_record(&mut self) -> io::Result<()> {
        if !self.array {
            self.buf.push(b'\n');
        }
        self.flush_if_big()
    }

    fn flush_if_big(&mut self) -> io::Result<()> {
        if self.buf.len() >= 1 << 16 {
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

impl<W: Write> Sink for JsonSink<W> {
    fn start(&mut self, head: &KeyHead) -> io::Result<()> {
        self.begin_record();
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"db\":");
        b.extend_from_slice(itoa::Buffer::new().format(head.db).as_bytes());
        b.extend_from_slice(b",\"key\":");
        json_bytes(b, &head.key);
        b.extend_from_slice(b",\"type\":");
        json_str(b, head.value_type.name());
        if let Some(ms) = head.expire_ms {
            // negative: already expired when written
            b.extend_from_slice(b",\"expire_ms\":");
            b.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
        }
        if let Some(idle) = head.idle_s {
            json_u64(b, "idle_s", idle);
        }
        if let Some(freq) = head.freq {
            json_u64(b, "freq", u64::from(freq));
        }
        if !head.key_meta.is_empty() {
            write_key_meta(b, &head.key_meta);
        }
        b.extend_from_slice(b",\"encoding\":");
        json_str(b, head.encoding.name());
        b.extend_from_slice(b",\"value\":");
        match head.value_type {
            ValueType::String | ValueType::Module => {}
            ValueType::Hash => b.push(b'{'),
            ValueType::Stream => b.extend_from_slice(b"{\"entries\":["),
            ValueType::Array => b.extend_from_slice(b"{\"items\":["),
            _ => b.push(b'['),
        }
        self.first_elem = true;
        self.field_ttls.clear();
        self.big_string.clear();
        Ok(())
    }

    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> io::Result<()> {
        match chunk {
            Chunk::String(s) => {
                if head.value_type == ValueType::String && self.first_elem {
                    self.big_string.clear();
                }
                self.first_elem = false;
                self.big_string.extend_from_slice(s);
            }
            Chunk::List(v) | Chunk::Set(v) => {
                for e in v {
                    self.sep();
                    json_elem(&mut self.buf, e);
                }
            }
            Chunk::SortedSet(v) => {
                for (m, s) in v {
                    self.sep();
                    self.buf.push(b'[');
                    json_elem(&mut self.buf, m);
                    self.buf.push(b',');
                    json_score(&mut self.buf, *s);
                    self.buf.push(b']');
                }
            }
            Chunk::Hash(v) => {
                for HashField {
                    field,
                    value,
                    expire_ms,
                } in v
                {
                    self.sep();
                    json_field_name(&mut self.buf, field);
                    self.buf.push(b':');
                    json_elem(&mut self.buf, value);
                    if let Some(ms) = expire_ms {
                        self.field_ttls.push((field.clone(), *ms));
                    }
                }
            }
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
                        json_field_name(&mut self.buf, f);
                        self.buf.push(b':');
                        json_elem(&mut self.buf, val);
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

    fn end(&mut self, head: &KeyHead) -> io::Result<()> {
        match head.value_type {
            ValueType::String => {
                let s = std::mem::take(&mut self.big_string);
                json_bytes(&mut self.buf, &s);
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
                json_field_name(&mut self.buf, f);
                self.buf.push(b':');
                self.buf
                    .extend_from_slice(itoa::Buffer::new().format(*ms).as_bytes());
            }
            self.buf.push(b'}');
        }
        self.buf.push(b'}');
        self.end_record()
    }

    fn module(&mut self, head: &KeyHead, name: &str, encver: u64, raw: &Bytes) -> io::Result<()> {
        self.start(head)?;
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"module\":");
        json_str(b, name);
        json_u64(b, "encver", encver);
        b.extend_from_slice(b",\"raw\":{\"base64\":\"");
        b.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(raw)
                .as_bytes(),
        );
        b.extend_from_slice(b"\"}}}");
        self.end_record()
    }

    fn command(
        &mut self,
        db: u64,
        cmd: &Command,
        offset: Option<u64>,
        ts: Option<i64>,
    ) -> io::Result<()> {
        self.begin_record();
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"db\":");
        b.extend_from_slice(itoa::Buffer::new().format(db).as_bytes());
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
            b.extend_from_slice(itoa::Buffer::new().format(off).as_bytes());
        }
        if let Some(ts) = ts {
            b.extend_from_slice(b",\"ts\":");
            b.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
        }
        b.push(b'}');
        self.end_record()
    }

    fn other(&mut self, item: &Item) -> io::Result<()> {
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
                b.extend_from_slice(b",\"raw\":{\"base64\":\"");
                b.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(raw)
                        .as_bytes(),
                );
                b.extend_from_slice(b"\"}}}");
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

    fn flush(&mut self) -> io::Result<()> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        self.w.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.array {
            self.buf
                .extend_from_slice(if self.first_record { b"[]\n" } else { b"\n]\n" });
        }
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        self.w.flush()
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

// ---------------------------------------------------------------- RESP

/// Writes commands that rebuild every key in an empty server.
pub(crate) struct RespSink<W: Write> {
    w: W,
    buf: Vec<u8>,
    db: Option<u64>,
    batch: usize,
    version: u32,
    /// Elements of the current command not yet written.
    args: Vec<Bytes>,
    string_started: bool,
    stream_has_entries: bool,
    /// The RDB version of the server the commands are for (`None`: the source's).
    target: Option<u32>,
    /// Elements of the array being written (arrays go as one `RESTORE`).
    array: Vec<ArrayItem>,
    /// What the target cannot hold and was left out.
    left_out: LeftOut,
}

/// What `--format resp` left out because the target (or commands) cannot express it.
#[derive(Debug, Default)]
struct LeftOut {
    idmp_streams: u64,
    nacked_entries: u64,
    key_meta_keys: u64,
}

impl<W: Write> RespSink<W> {
    pub(crate) fn new(w: W, batch: usize) -> Self {
        Self {
            w,
            buf: Vec::with_capacity(1 << 16),
            db: None,
            batch: batch.max(1),
            version: 9,
            args: Vec::new(),
            string_started: false,
            stream_has_entries: false,
            target: None,
            array: Vec::new(),
            left_out: LeftOut::default(),
        }
    }

    /// Writes commands for a server of RDB version `target` (default: the source's).
    pub(crate) fn target(mut self, target: Option<u32>) -> Self {
        self.target = target;
        self
    }

    /// The target's feature level as Redis numbers RDB versions (Valkey 9 has RDB 11's).
    fn level(&self) -> u32 {
        match self.target.unwrap_or(self.version) {
            v if v >= 80 => 11,
            v => v,
        }
    }

    /// IDMP state (`XCFGSET`, then `XIDMPRECORD` per remembered IID) for Redis 8.6+ targets.
    fn stream_idmp(&mut self, key: &[u8], idmp: &rdb_format::StreamIdmp) -> io::Result<()> {
        if idmp.is_default() {
            return Ok(());
        }
        if self.level() < 13 {
            self.left_out.idmp_streams += 1;
            return Ok(());
        }
        let d = idmp.duration_s.to_string();
        let m = idmp.max_entries.to_string();
        // XCFGSET clears the IID history, so it goes first
        self.cmd(&[
            b"XCFGSET",
            key,
            b"IDMP-DURATION",
            d.as_bytes(),
            b"IDMP-MAXSIZE",
            m.as_bytes(),
        ])?;
        for p in &idmp.producers {
            for e in &p.entries {
                let id = id_text(e.id);
                self.cmd(&[b"XIDMPRECORD", key, &p.id, &e.iid, &id])?;
            }
        }
        Ok(())
    }

    /// The NACK zone of a group for Redis 8.8+ targets: the entries are claimed by a
    /// throw-away consumer, released with `XNACK … FAIL` (one command per delivery count) and
    /// the consumer removed, which leaves them pending and unowned as in the source.
    fn stream_nacks(&mut self, key: &[u8], g: &rdb_format::ConsumerGroup) -> io::Result<()> {
        let Some(ids) = g.nacked.as_deref().filter(|ids| !ids.is_empty()) else {
            return Ok(());
        };
        if self.level() < 14 {
            self.left_out.nacked_entries += ids.len() as u64;
            return Ok(());
        }
        const TMP: &[u8] = b"__replicator_nack";
        let counts: std::collections::HashMap<StreamId, u64> = g
            .pending
            .iter()
            .filter(|p| p.consumer.is_none())
            .map(|p| (p.id, p.delivery_count))
            .collect();
        let mut by_count: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = Default::default();
        for id in ids {
            let count = counts.get(id).copied().unwrap_or(1);
            let id = id_text(*id);
            self.cmd(&[b"XCLAIM", key, &g.name, TMP, b"0", &id, b"FORCE", b"JUSTID"])?;
            by_count.entry(count).or_default().push(id);
        }
        for (count, ids) in by_count {
            let n = ids.len().to_string();
            let count = count.to_string();
            let mut args: Vec<&[u8]> = vec![b"XNACK", key, &g.name, b"FAIL", b"IDS", n.as_bytes()];
            args.extend(ids.iter().map(|i| &i[..]));
            args.extend([&b"RETRYCOUNT"[..], count.as_bytes()]);
            self.cmd(&args)?;
        }
        self.cmd(&[b"XGROUP", b"DELCONSUMER", key, &g.name, TMP])
    }

    fn cmd(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let b = &mut self.buf;
        b.push(b'*');
        b.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
        b.extend_from_slice(b"\r\n");
        for a in args {
            b.push(b'$');
            b.extend_from_slice(itoa::Buffer::new().format(a.len()).as_bytes());
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(a);
            b.extend_from_slice(b"\r\n");
        }
        if b.len() >= 1 << 16 {
            self.w.write_all(b)?;
            b.clear();
        }
        Ok(())
    }

    /// `RESTORE key ttl payload [ABSTTL] REPLACE`, with IDLETIME/FREQ when `lru` and the head
    /// has them.
    pub(crate) fn restore(&mut self, head: &KeyHead, payload: &[u8], lru: bool) -> io::Result<()> {
        self.select(head.db)?;
        // RESTORE takes no negative time: a key expired before 1970 is as expired at 1 ms
        let ttl = head
            .expire_ms
            .map_or_else(|| "0".to_owned(), |ms| ms.max(1).to_string());
        let mut args: Vec<&[u8]> = vec![b"RESTORE", &head.key, ttl.as_bytes(), payload];
        if head.expire_ms.is_some() {
            args.push(b"ABSTTL");
        }
        let idle = head.idle_s.map(|i| i.to_string());
        let freq = head.freq.map(|f| f.to_string());
        if lru {
            if let Some(i) = &idle {
                args.push(b"IDLETIME");
                args.push(i.as_bytes());
            } else if let Some(f) = &freq {
                args.push(b"FREQ");
                args.push(f.as_bytes());
            }
        }
        args.push(b"REPLACE");
        self.cmd(&args)
    }

    fn select(&mut self, db: u64) -> io::Result<()> {
        if self.db != Some(db) {
            self.db = Some(db);
            let n = db.to_string();
            self.cmd(&[b"SELECT", n.as_bytes()])?;
        }
        Ok(())
    }

    /// Writes `name key args...` in commands of at most `batch` elements (`per` args each).
    fn batched(
        &mut self,
        name: &[u8],
        key: &[u8],
        items: Vec<Bytes>,
        per: usize,
    ) -> io::Result<()> {
        for group in items.chunks(self.batch * per) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(group.len() + 2);
            args.push(name);
            args.push(key);
            args.extend(group.iter().map(|b| &b[..]));
            self.cmd(&args)?;
        }
        Ok(())
    }
}

fn score_text(d: f64) -> Bytes {
    if d.is_nan() {
        Bytes::from_static(b"nan")
    } else if d.is_infinite() {
        Bytes::from_static(if d > 0.0 { b"inf" } else { b"-inf" })
    } else {
        Bytes::from(ryu::Buffer::new().format_finite(d).to_owned())
    }
}

fn id_text(id: StreamId) -> Vec<u8> {
    format!("{}-{}", id.ms, id.seq).into_bytes()
}

impl<W: Write> Sink for RespSink<W> {
    fn start(&mut self, head: &KeyHead) -> io::Result<()> {
        self.select(head.db)?;
        self.string_started = false;
        self.stream_has_entries = false;
        self.args.clear();
        self.array.clear();
        if head.value_type == ValueType::Array && self.level() < 14 {
            return Err(io::Error::other(format!(
                "key {}: an array needs a Redis 8.8 target (RDB 14); the target is RDB {}",
                rdb_format::Shown(&head.key),
                self.target.unwrap_or(self.version)
            )));
        }
        if !head.key_meta.is_empty() && head.value_type != ValueType::Array {
            // no command attaches module metadata; RESTORE payloads carry it
            self.left_out.key_meta_keys += 1;
        }
        Ok(())
    }

    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> io::Result<()> {
        let key = &head.key[..];
        match chunk {
            Chunk::String(s) => {
                if self.string_started {
                    self.cmd(&[b"APPEND", key, s])?;
                } else {
                    self.cmd(&[b"SET", key, s])?;
                    self.string_started = true;
                }
            }
            Chunk::List(v) => {
                let items = v.iter().map(Elem::to_bytes).collect();
                self.batched(b"RPUSH", key, items, 1)?;
            }
            Chunk::Set(v) => {
                let items = v.iter().map(Elem::to_bytes).collect();
                self.batched(b"SADD", key, items, 1)?;
            }
            Chunk::SortedSet(v) => {
                let items = v
                    .iter()
                    .flat_map(|(m, s)| [score_text(*s), m.to_bytes()])
                    .collect();
                self.batched(b"ZADD", key, items, 2)?;
            }
            Chunk::Hash(v) => {
                let items = v
                    .iter()
                    .flat_map(|f| [f.field.to_bytes(), f.value.to_bytes()])
                    .collect();
                self.batched(b"HSET", key, items, 2)?;
                for f in v {
                    if let Some(ms) = f.expire_ms {
                        let ms = ms.to_string();
                        let field = f.field.to_bytes();
                        self.cmd(&[b"HPEXPIREAT", key, ms.as_bytes(), b"FIELDS", b"1", &field])?;
                    }
                }
            }
            Chunk::StreamEntries(v) => {
                for e in v {
                    let id = id_text(e.id);
                    let fields: Vec<Bytes> = e
                        .fields
                        .iter()
                        .flat_map(|(f, v)| [f.to_bytes(), v.to_bytes()])
                        .collect();
                    let mut args: Vec<&[u8]> = vec![b"XADD", key, &id];
                    args.extend(fields.iter().map(|b| &b[..]));
                    self.cmd(&args)?;
                    self.stream_has_entries = true;
                }
            }
            Chunk::StreamMeta(m) => {
                if !self.stream_has_entries {
                    // An empty stream: create it through a throw-away group.
                    self.cmd(&[
                        b"XGROUP",
                        b"CREATE",
                        key,
                        b"__replicator_tmp",
                        b"0",
                        b"MKSTREAM",
                    ])?;
                    self.cmd(&[b"XGROUP", b"DESTROY", key, b"__replicator_tmp"])?;
                }
                let last = id_text(m.last_id);
                match (m.entries_added, m.max_deleted_id) {
                    (Some(added), Some(maxdel)) => {
                        let added = added.to_string();
                        let maxdel = id_text(maxdel);
                        self.cmd(&[
                            b"XSETID",
                            key,
                            &last,
                            b"ENTRIESADDED",
                            added.as_bytes(),
                            b"MAXDELETEDID",
                            &maxdel,
                        ])?;
                    }
                    _ => self.cmd(&[b"XSETID", key, &last])?,
                }
                for g in &m.groups {
                    let gid = id_text(g.last_id);
                    match g.entries_read {
                        Some(n) => {
                            let n = n.to_string();
                            self.cmd(&[
                                b"XGROUP",
                                b"CREATE",
                                key,
                                &g.name,
                                &gid,
                                b"ENTRIESREAD",
                                n.as_bytes(),
                            ])?;
                        }
                        None => self.cmd(&[b"XGROUP", b"CREATE", key, &g.name, &gid])?,
                    }
                    for c in &g.consumers {
                        self.cmd(&[b"XGROUP", b"CREATECONSUMER", key, &g.name, &c.name])?;
                    }
                    self.stream_nacks(key, g)?;
                    for p in &g.pending {
                        let Some(consumer) = &p.consumer else {
                            continue;
                        };
                        let id = id_text(p.id);
                        let time = p.delivery_time_ms.to_string();
                        let count = p.delivery_count.to_string();
                        self.cmd(&[
                            b"XCLAIM",
                            key,
                            &g.name,
                            consumer,
                            b"0",
                            &id,
                            b"TIME",
                            time.as_bytes(),
                            b"RETRYCOUNT",
                            count.as_bytes(),
                            b"FORCE",
                            b"JUSTID",
                        ])?;
                    }
                }
                if let Some(idmp) = &m.idmp {
                    self.stream_idmp(key, idmp)?;
                }
            }
            Chunk::Array(v) => self.array.extend(v.iter().cloned()),
            Chunk::ArrayEnd { insert_index } => {
                // no command sets an array's insert index: RESTORE keeps everything
                let value = Value::Array(Box::new(rdb_format::Array {
                    items: std::mem::take(&mut self.array),
                    insert_index: *insert_index,
                }));
                let cfg = rdb_format::EncodeConfig::new(14).map_err(io::Error::other)?;
                let payload = rdb_format::dump_payload_with_meta(&value, &head.key_meta, &cfg)
                    .map_err(|e| {
                        io::Error::other(format!("key {}: {e}", rdb_format::Shown(&head.key)))
                    })?;
                self.restore(head, &payload, false)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, head: &KeyHead) -> io::Result<()> {
        if let Some(ms) = head.expire_ms {
            let ms = ms.to_string();
            self.cmd(&[b"PEXPIREAT", &head.key, ms.as_bytes()])?;
        }
        Ok(())
    }

    fn module(&mut self, head: &KeyHead, _name: &str, _encver: u64, raw: &Bytes) -> io::Result<()> {
        // A DUMP payload: type byte, the value, RDB version (2 bytes LE), CRC-64 of all that.
        let mut payload = Vec::with_capacity(raw.len() + 11);
        payload.push(head.type_byte);
        payload.extend_from_slice(raw);
        payload.extend_from_slice(&(self.version.min(u32::from(u16::MAX)) as u16).to_le_bytes());
        let crc = rdb_format::crc64(&payload);
        payload.extend_from_slice(&crc.to_le_bytes());
        self.restore(head, &payload, false)
    }

    fn command(
        &mut self,
        db: u64,
        cmd: &Command,
        _: Option<u64>,
        _: Option<i64>,
    ) -> io::Result<()> {
        // SELECT is written where the db changes, before the next command that needs it
        if cmd.is("SELECT") {
            return Ok(());
        }
        self.select(db)?;
        self.buf.extend_from_slice(cmd.raw());
        if self.buf.len() >= 1 << 16 {
            self.w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn other(&mut self, item: &Item) -> io::Result<()> {
        match item {
            Item::Header { version, .. } => self.version = *version,
            Item::Function(f) if f.name.is_none() => {
                self.cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", &f.code])?;
            }
            _ => {}
        }
        Ok(())
    }

    fn resync(&mut self) -> io::Result<()> {
        self.cmd(&[b"FLUSHALL"])?;
        self.db = None;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        self.w.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        let l = &self.left_out;
        let target = self.target.unwrap_or(self.version);
        if l.idmp_streams > 0 {
            eprintln!(
                "replicator: left out the IDMP state of {} streams: RDB {target} targets have no \
                 XCFGSET/XIDMPRECORD (Redis 8.6+)",
                l.idmp_streams
            );
        }
        if l.nacked_entries > 0 {
            eprintln!(
                "replicator: left out {} NACK-zone entries: RDB {target} targets have no XNACK \
                 (Redis 8.8+)",
                l.nacked_entries
            );
        }
        if l.key_meta_keys > 0 {
            eprintln!(
                "replicator: left out the module metadata of {} keys: no command attaches it \
                 (--restore carries it to Redis 8.6+ targets)",
                l.key_meta_keys
            );
        }
        self.flush()
    }
}

// ---------------------------------------------------------------- keys

/// One key name per line.
pub(crate) struct KeysSink<W: Write> {
    pub(crate) w: W,
}

impl<W: Write> Sink for KeysSink<W> {
    fn start(&mut self, head: &KeyHead) -> io::Result<()> {
        self.w.write_all(&head.key)?;
        self.w.write_all(b"\n")
    }
    fn chunk(&mut self, _: &KeyHead, _: &Chunk) -> io::Result<()> {
        Ok(())
    }
    fn end(&mut self, _: &KeyHead) -> io::Result<()> {
        Ok(())
    }
    fn module(&mut self, head: &KeyHead, _: &str, _: u64, _: &Bytes) -> io::Result<()> {
        self.start(head)
    }
    fn command(&mut self, _: u64, cmd: &Command, _: Option<u64>, _: Option<i64>) -> io::Result<()> {
        let args: Vec<&[u8]> = cmd.args().collect();
        if let Some(k) = replicator::commands::first_key(&args) {
            self.w.write_all(args[k])?;
            self.w.write_all(b"\n")?;
        }
        Ok(())
    }

    fn other(&mut self, _: &Item) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
