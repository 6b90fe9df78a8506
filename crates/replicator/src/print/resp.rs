//! RESP: commands that rebuild the keys in an empty server (pipe into `redis-cli --pipe`).

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};
use rdb_format::{
    ArrayItem, Chunk, Elem, ElemRef, Item, KeyHead, ModuleValue, PackedRecord, StreamId,
    StringRecord, Value, ValueType,
};

use super::Sink;
use crate::error::{Error, Result};
use crate::event::CommandEvent;

// ---------------------------------------------------------------- RESP

/// Writes commands that rebuild every key in an empty server: `SET`/`APPEND`, `RPUSH`,
/// `SADD`, `ZADD`, `HSET` (with `HPEXPIREAT` for field TTLs), `XADD`/`XSETID`/`XGROUP`/`XCLAIM`
/// (and `XCFGSET`/`XIDMPRECORD`/`XNACK` for targets that have them), `PEXPIREAT`, `SELECT`
/// where the db changes; module values and arrays as `RESTORE`; commands as they came.
///
/// ```
/// use replicator::{KeyRecord, Value, print::{Resp, Sink}};
/// let mut out = Vec::new();
/// let mut r = Resp::new(&mut out);
/// r.batch(2);
/// r.key(KeyRecord::new(0, "l".into(), Value::List(vec!["a".into(), "b".into(), "c".into()])))?;
/// r.finish()?;
/// let text = String::from_utf8(out).unwrap();
/// assert_eq!(text.matches("RPUSH").count(), 2);
/// # Ok::<(), replicator::Error>(())
/// ```
#[derive(Debug)]
pub struct Resp<W: Write> {
    w: W,
    buf: BytesMut,
    /// `buf` is written out past this many bytes.
    spill: usize,
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
    /// Write no `SELECT` (a caller that routes each key's commands itself).
    no_select: bool,
    /// `RESTORE` with `REPLACE`.
    replace: bool,
    /// Bytes handed to `w` so far.
    written: u64,
    /// The first `SELECT` written: its db and where its bytes lie in the output.
    first_select: Option<(u64, std::ops::Range<u64>)>,
}

/// A [`Resp`] printer's settings ([`Resp::settings`]).
#[derive(Debug, Clone, Copy)]
pub struct RespSettings {
    batch: usize,
    target: Option<u32>,
    no_select: bool,
    replace: bool,
}

/// What [`Resp`] left out because the target (or any command) cannot express it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeftOut {
    /// Streams whose IDMP state the target has no commands for (before Redis 8.6).
    pub idmp_streams: u64,
    /// NACK-zone entries the target has no `XNACK` for (before Redis 8.8).
    pub nacked_entries: u64,
    /// Keys whose module metadata no command attaches (`RESTORE` payloads carry it).
    pub key_meta_keys: u64,
    /// The RDB version of the target the commands were for.
    pub target: u32,
}

impl LeftOut {
    /// True when nothing was left out.
    pub fn is_empty(&self) -> bool {
        self.idmp_streams == 0 && self.nacked_entries == 0 && self.key_meta_keys == 0
    }
}

/// One line per kind of thing left out, saying why.
impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = self.target;
        if self.idmp_streams > 0 {
            writeln!(
                f,
                "left out the IDMP state of {} streams: RDB {target} targets have no \
                 XCFGSET/XIDMPRECORD (Redis 8.6+)",
                self.idmp_streams
            )?;
        }
        if self.nacked_entries > 0 {
            writeln!(
                f,
                "left out {} NACK-zone entries: RDB {target} targets have no XNACK (Redis 8.8+)",
                self.nacked_entries
            )?;
        }
        if self.key_meta_keys > 0 {
            writeln!(
                f,
                "left out the module metadata of {} keys: no command attaches it (--restore \
                 carries it to Redis 8.6+ targets)",
                self.key_meta_keys
            )?;
        }
        Ok(())
    }
}

impl<W: Write> Resp<W> {
    /// Commands to `w`, at most 512 elements per command, for a server of the source's
    /// version.
    pub fn new(w: W) -> Self {
        Self {
            w,
            buf: BytesMut::with_capacity(1 << 16),
            spill: 1 << 16,
            db: None,
            batch: 512,
            version: 9,
            args: Vec::new(),
            string_started: false,
            stream_has_entries: false,
            target: None,
            array: Vec::new(),
            left_out: LeftOut::default(),
            no_select: false,
            replace: true,
            written: 0,
            first_select: None,
        }
    }

    /// The settings (batch size, target, `SELECT`, `REPLACE`), for another printer.
    pub fn settings(&self) -> RespSettings {
        RespSettings {
            batch: self.batch,
            target: self.target,
            no_select: self.no_select,
            replace: self.replace,
        }
    }

    /// Commands to `w` with `settings` taken from another printer.
    pub fn with_settings(w: W, settings: &RespSettings) -> Self {
        let mut r = Self::new(w);
        r.batch = settings.batch;
        r.target = settings.target;
        r.no_select = settings.no_select;
        r.replace = settings.replace;
        r
    }

    /// Counts what another printer of the same output left out.
    pub fn add_left_out(&mut self, l: &LeftOut) {
        self.left_out.idmp_streams += l.idmp_streams;
        self.left_out.nacked_entries += l.nacked_entries;
        self.left_out.key_meta_keys += l.key_meta_keys;
    }

    /// Write no `SELECT`: for a caller that sends each key's commands to its database
    /// itself (default: `SELECT` where the db changes).
    pub fn no_select(&mut self, on: bool) -> &mut Self {
        self.no_select = on;
        self
    }

    /// `RESTORE` with `REPLACE` (the default) or without (a key already there is refused
    /// with `BUSYKEY`).
    pub fn restore_replace(&mut self, on: bool) -> &mut Self {
        self.replace = on;
        self
    }

    /// The db the commands written so far leave the target in (`None`: no `SELECT` yet).
    pub fn db(&self) -> Option<u64> {
        self.db
    }

    /// Takes the target to be in `db` already: the next key in another db gets a `SELECT`.
    pub fn set_db(&mut self, db: Option<u64>) {
        self.db = db;
    }

    /// The first `SELECT` written: its db, and where its bytes lie in the output (offsets
    /// from the first byte this printer wrote). A part of a file printed apart starts with
    /// one that the joined output may not need.
    pub fn first_select(&self) -> Option<(u64, std::ops::Range<u64>)> {
        self.first_select.clone()
    }

    /// The writer, to take what was written (after [`flush`](Sink::flush)).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    /// At most `n` elements per command (`RPUSH`, `SADD`, `ZADD`, `HSET`).
    pub fn batch(&mut self, n: usize) -> &mut Self {
        self.batch = n.max(1);
        self
    }

    /// Writes commands for a server of RDB version `target` (`None`: the source's).
    pub fn target_version(&mut self, target: Option<u32>) -> &mut Self {
        self.target = target;
        self
    }

    /// What was left out so far.
    pub fn left_out(&self) -> LeftOut {
        LeftOut {
            target: self.version(),
            ..self.left_out
        }
    }

    /// The RDB version the commands are for: the target's, else the source's.
    pub fn version(&self) -> u32 {
        self.target.unwrap_or(self.version)
    }

    /// The target's feature level as Redis numbers RDB versions (Valkey 9 has RDB 11's).
    fn level(&self) -> u32 {
        match self.target.unwrap_or(self.version) {
            v if v >= 80 => 11,
            v => v,
        }
    }

    /// IDMP state (`XCFGSET`, then `XIDMPRECORD` per remembered IID) for Redis 8.6+ targets.
    fn stream_idmp(&mut self, key: &[u8], idmp: &rdb_format::StreamIdmp) -> Result<()> {
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
    fn stream_nacks(&mut self, key: &[u8], g: &rdb_format::ConsumerGroup) -> Result<()> {
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

    fn cmd(&mut self, args: &[&[u8]]) -> Result<()> {
        resp_codec::encode_command(args, &mut self.buf);
        self.flush_if_big()
    }

    fn flush_if_big(&mut self) -> Result<()> {
        if self.buf.len() >= self.spill {
            self.w.write_all(&self.buf)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// `RESTORE key ttl payload [ABSTTL] REPLACE` (after a `SELECT` where the db changes),
    /// with `IDLETIME`/`FREQ` when `lru` and the head has them.
    pub fn restore(&mut self, head: &KeyHead, payload: &[u8], lru: bool) -> Result<()> {
        self.restore_streamed(head, payload.len() as u64, lru, |w| {
            Ok(w.write_all(payload)?)
        })
    }

    /// Like [`restore`](Self::restore), with a payload of `len` bytes that `payload` writes
    /// straight to the output (a big key's, written piece by piece).
    pub fn restore_streamed(
        &mut self,
        head: &KeyHead,
        len: u64,
        lru: bool,
        payload: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        self.select(head.db)?;
        // RESTORE takes no negative time: a key expired before 1970 is as expired at 1 ms
        let ttl = head
            .expire_ms
            .map_or_else(|| "0".to_owned(), |ms| ms.max(1).to_string());
        let mut after: Vec<&[u8]> = Vec::new();
        if head.expire_ms.is_some() {
            after.push(b"ABSTTL");
        }
        let idle = head.idle_s.map(|i| i.to_string());
        let freq = head.freq.map(|f| f.to_string());
        if lru {
            if let Some(i) = &idle {
                after.push(b"IDLETIME");
                after.push(i.as_bytes());
            } else if let Some(f) = &freq {
                after.push(b"FREQ");
                after.push(f.as_bytes());
            }
        }
        if self.replace {
            after.push(b"REPLACE");
        }
        let bulk = |buf: &mut BytesMut, b: &[u8]| {
            resp_codec::encode_header(b'$', b.len(), buf);
            buf.extend_from_slice(b);
            buf.extend_from_slice(b"\r\n");
        };
        resp_codec::encode_header(b'*', 4 + after.len(), &mut self.buf);
        bulk(&mut self.buf, b"RESTORE");
        bulk(&mut self.buf, &head.key);
        bulk(&mut self.buf, ttl.as_bytes());
        resp_codec::encode_header(b'$', len as usize, &mut self.buf);
        if len > 1 << 16 {
            // a big payload goes straight out
            self.w.write_all(&self.buf)?;
            self.written += self.buf.len() as u64 + len;
            self.buf.clear();
            payload(&mut self.w)?;
        } else {
            payload(&mut (&mut self.buf).writer())?;
        }
        self.buf.extend_from_slice(b"\r\n");
        for a in after {
            bulk(&mut self.buf, a);
        }
        self.flush_if_big()
    }

    /// From now on, holds what it prints in `buf` (after what it holds already) until
    /// [`take_held`](Self::take_held) or a flush, instead of writing it out every 64 KiB
    /// (a big payload still goes straight out, after what was held).
    pub(crate) fn hold_in(&mut self, buf: Vec<u8>) {
        let mut buf = bytes_mut(buf);
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
        self.spill = usize::MAX;
    }

    /// Bytes printed and not written out yet.
    pub(crate) fn held(&self) -> usize {
        self.buf.len()
    }

    /// Takes the bytes printed and not written out yet (they count as written); goes on in
    /// `fresh`.
    pub(crate) fn take_held(&mut self, fresh: Vec<u8>) -> Vec<u8> {
        self.written += self.buf.len() as u64;
        // (a buffer of its own from the start: no copy)
        Vec::from(std::mem::replace(&mut self.buf, bytes_mut(fresh)))
    }

    fn select(&mut self, db: u64) -> Result<()> {
        if self.no_select {
            return Ok(());
        }
        if self.db != Some(db) {
            self.db = Some(db);
            let n = db.to_string();
            let at = self.written + self.buf.len() as u64;
            self.cmd(&[b"SELECT", n.as_bytes()])?;
            if self.first_select.is_none() {
                let end = self.written + self.buf.len() as u64;
                self.first_select = Some((db, at..end));
            }
        }
        Ok(())
    }

    /// Writes `name key args...` in commands of at most `batch` of `items`, each written as
    /// `per` bulk strings by `args`, straight into the output buffer (no argument list, no
    /// element copied or counted again).
    fn batched<T>(
        &mut self,
        name: &[u8],
        key: &[u8],
        mut items: impl ExactSizeIterator<Item = T>,
        per: usize,
        mut args: impl FnMut(T, &mut BytesMut),
    ) -> Result<()> {
        while items.len() > 0 {
            let group = items.len().min(self.batch);
            resp_codec::encode_header(b'*', 2 + group * per, &mut self.buf);
            resp_codec::encode_bulk(name, &mut self.buf);
            resp_codec::encode_bulk(key, &mut self.buf);
            for item in items.by_ref().take(group) {
                args(item, &mut self.buf);
            }
            self.flush_if_big()?;
        }
        Ok(())
    }

    /// A sorted set's members and scores (`ZADD`).
    fn zadd<'a>(
        &mut self,
        key: &[u8],
        members: impl ExactSizeIterator<Item = (ElemRef<'a>, f64)>,
    ) -> Result<()> {
        let mut text = Vec::with_capacity(32);
        self.batched(b"ZADD", key, members, 2, |(m, s), buf| {
            score_text(s, &mut text);
            resp_codec::encode_bulk(&text, buf);
            elem(m, buf);
        })
    }

    /// A hash's fields and values (`HSET`), then their TTLs (`HPEXPIREAT`); `fields` gives
    /// them, once for each.
    fn hset<'a, I>(&mut self, key: &[u8], fields: impl Fn() -> I) -> Result<()>
    where
        I: ExactSizeIterator<Item = (ElemRef<'a>, ElemRef<'a>, Option<u64>)>,
    {
        self.batched(b"HSET", key, fields(), 2, |(f, v, _), buf| {
            elem(f, buf);
            elem(v, buf);
        })?;
        for (f, _, ttl) in fields() {
            if let Some(ms) = ttl {
                let ms = ms.to_string();
                let mut int = itoa::Buffer::new();
                let field = match f {
                    ElemRef::Bytes(b) => b,
                    ElemRef::Int(i) => int.format(i).as_bytes(),
                };
                self.cmd(&[b"HPEXPIREAT", key, ms.as_bytes(), b"FIELDS", b"1", field])?;
            }
        }
        Ok(())
    }
}

/// A sorted set's score as `ZADD` takes it, in `text` (cleared first).
fn score_text(d: f64, text: &mut Vec<u8>) {
    text.clear();
    if d.is_nan() {
        text.extend_from_slice(b"nan");
    } else if d.is_infinite() {
        text.extend_from_slice(if d > 0.0 { b"inf" } else { b"-inf" });
    } else if d == d.trunc() || !super::json::short_decimal(text, d) {
        text.extend_from_slice(ryu::Buffer::new().format_finite(d).as_bytes());
    }
}

/// `v` as a `BytesMut`, without copying it.
fn bytes_mut(v: Vec<u8>) -> BytesMut {
    BytesMut::from(Bytes::from(v))
}

/// An element as one bulk string (an integer's text made on the stack).
fn elem(e: ElemRef<'_>, buf: &mut BytesMut) {
    match e {
        ElemRef::Bytes(b) => resp_codec::encode_bulk(b, buf),
        ElemRef::Int(i) => resp_codec::encode_bulk(itoa::Buffer::new().format(i).as_bytes(), buf),
    }
}

fn id_text(id: StreamId) -> Vec<u8> {
    format!("{}-{}", id.ms, id.seq).into_bytes()
}

impl<W: Write> Sink for Resp<W> {
    fn start(&mut self, head: &KeyHead) -> Result<()> {
        self.select(head.db)?;
        self.string_started = false;
        self.stream_has_entries = false;
        self.args.clear();
        self.array.clear();
        if head.value_type == ValueType::Array && self.level() < 14 {
            return Err(Error::invalid(format!(
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

    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> Result<()> {
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
            Chunk::List(v) => self.batched(b"RPUSH", key, v.iter().map(Elem::as_ref), 1, elem)?,
            Chunk::Set(v) => self.batched(b"SADD", key, v.iter().map(Elem::as_ref), 1, elem)?,
            Chunk::SortedSet(v) => self.zadd(key, v.iter().map(|(m, s)| (m.as_ref(), *s)))?,
            Chunk::Hash(v) => self.hset(key, || {
                v.iter()
                    .map(|f| (f.field.as_ref(), f.value.as_ref(), f.expire_ms))
            })?,
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
                let cfg = rdb_format::EncodeConfig::new(14)?;
                let payload = rdb_format::dump_payload_with_meta(&value, &head.key_meta, &cfg)
                    .map_err(|e| e.for_key(&head.key))?;
                self.restore(head, &payload, false)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, head: &KeyHead) -> Result<()> {
        if let Some(ms) = head.expire_ms {
            let ms = ms.to_string();
            self.cmd(&[b"PEXPIREAT", &head.key, ms.as_bytes()])?;
        }
        Ok(())
    }

    fn takes_packed(&self) -> bool {
        true
    }

    /// What `start`, the built value's one chunk and `end` write.
    fn packed(&mut self, rec: &PackedRecord<'_>) -> Result<()> {
        let head = rec.head;
        self.start(head)?;
        let key = &head.key[..];
        match head.value_type {
            ValueType::List => self.batched(b"RPUSH", key, rec.elements(), 1, elem)?,
            ValueType::Set => self.batched(b"SADD", key, rec.elements(), 1, elem)?,
            ValueType::SortedSet => self.zadd(key, rec.scored())?,
            _ => self.hset(key, || rec.fields())?,
        }
        self.end(head)
    }

    fn string(&mut self, rec: &StringRecord<'_>, value: bool) -> Result<()> {
        // what `start`, a whole string's chunk and `end` write
        self.select(rec.db)?;
        if value {
            self.cmd(&[b"SET", rec.key, rec.value])?;
        }
        if let Some(ms) = rec.expire_ms {
            self.cmd(&[
                b"PEXPIREAT",
                rec.key,
                itoa::Buffer::new().format(ms).as_bytes(),
            ])?;
        }
        Ok(())
    }

    fn module(&mut self, head: &KeyHead, m: &ModuleValue) -> Result<()> {
        // a DUMP payload: the type byte and the value as the decoder kept it, sealed
        let mut body = BytesMut::with_capacity(m.raw.len() + 11);
        body.extend_from_slice(&[head.type_byte]);
        body.extend_from_slice(&m.raw);
        let payload = rdb_format::seal_dump(body, self.version.min(u32::from(u16::MAX)) as u16);
        self.restore(head, &payload, false)
    }

    fn wants_other_items(&self, filtered: bool) -> bool {
        // functions go as FUNCTION LOAD, unless only some keys are asked for
        !filtered
    }

    fn command(&mut self, c: &CommandEvent) -> Result<()> {
        let (db, cmd) = (c.db, &c.cmd);
        // SELECT is written where the db changes, before the next command that needs it
        if cmd.is("SELECT") {
            return Ok(());
        }
        self.select(db)?;
        self.buf.extend_from_slice(cmd.raw());
        self.flush_if_big()
    }

    fn other(&mut self, item: &Item) -> Result<()> {
        match item {
            Item::Header { version, .. } => self.version = *version,
            Item::Function(f) if f.name.is_none() => {
                self.cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", &f.code])?;
            }
            _ => {}
        }
        Ok(())
    }

    fn resync(&mut self, shard: Option<usize>) -> Result<()> {
        if let Some(n) = shard {
            // FLUSHALL would remove every shard's keys, and nothing in a command stream removes
            // the keys of one shard's slots alone
            return Err(Error::invalid(format!(
                "shard {n} answered with a full resync: the RESP stream cannot replace one \
                 shard's keys alone (FLUSHALL would remove the other shards' too); replicate \
                 the cluster again into an empty target"
            )));
        }
        self.cmd(&[b"FLUSHALL"])?;
        self.db = None;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.w.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(self.w.flush()?)
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()
    }
}
