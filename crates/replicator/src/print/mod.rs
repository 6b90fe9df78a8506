//! Printers: what `replicator dump` writes, for any program.
//!
//! A [`Sink`] takes keys as start / chunks / end (so big keys go through in bounded memory),
//! whole keys when it wants them, other RDB items and commands. The printers here are sinks:
//! [`Jsonl`] / [`Json`] (the format of docs/jsonl.md), [`Resp`] (commands that rebuild the
//! data), [`Restore`] (one `RESTORE` per key), [`Keys`], [`Count`] and [`Rdb`] (a new RDB
//! file for a chosen version). A [`Printer`] drives a sink from [`Event`]s: it applies a
//! [`Filter`], tells each chunk which key it belongs to, and decides which non-key items go
//! through.
//!
//! The output of `replicator dump FILE --format jsonl`, byte for byte:
//!
//! ```
//! use replicator::{files, print::{Jsonl, Printer}};
//! # let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb"));
//! let mut out = Vec::new();
//! let mut printer = Printer::new(Jsonl::new(&mut out));
//! for ev in files::open(path, Default::default())? {
//!     printer.event(ev?)?;
//! }
//! printer.finish()?;
//! # assert!(out.starts_with(b"{\"db\":"));
//! # Ok::<(), replicator::Error>(())
//! ```

pub(crate) mod json;
mod parts;
mod rdb;
mod resp;
mod spool;

use std::io::Write;

use rdb_format::{
    Chunk, Item, KeyHead, KeyRecord, ModuleValue, PackedRecord, StringRecord, Value, ValueType,
};

use crate::error::Result;
use crate::event::{CommandEvent, Event, SyncStart};
use crate::filter::Filter;

pub use json::{Json, Jsonl};
pub use parts::{ParallelEnd, PartSummary, PartWriter, PrintParts, print_parallel};
pub use rdb::{Rdb, Restore, target_config};
pub use resp::{LeftOut, Resp, RespSettings};

/// Something that takes keys, other RDB items and commands.
///
/// Every key reaches a sink through [`key`](Self::key) when the decoder delivered it whole
/// (which by default calls [`start`](Self::start), [`chunk`](Self::chunk) per part and
/// [`end`](Self::end), or [`module`](Self::module)), or as start / chunks / end when the
/// decoder split a big key.
pub trait Sink {
    /// A key begins.
    fn start(&mut self, head: &KeyHead) -> Result<()>;
    /// A part of the key's value.
    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> Result<()>;
    /// The key is complete.
    fn end(&mut self, head: &KeyHead) -> Result<()>;
    /// A whole module value (never chunked).
    fn module(&mut self, head: &KeyHead, value: &ModuleValue) -> Result<()>;
    /// A whole key. The default splits it into [`start`](Self::start), chunks and
    /// [`end`](Self::end) (or [`module`](Self::module)).
    fn key(&mut self, rec: KeyRecord) -> Result<()> {
        let head = rec.head;
        if let Value::Module(m) = &rec.value {
            return self.module(&head, m);
        }
        self.start(&head)?;
        for c in value_chunks(rec.value) {
            self.chunk(&head, &c)?;
        }
        self.end(&head)
    }
    /// A whole string key borrowed from the decoder ([`Printer::string`]). `value` is false
    /// when the decoder skipped values: the key is then what an [`Item::KeyChecked`] is. The
    /// default makes the key's head (and value) and goes the way of items; sinks that print
    /// many strings write them straight from the borrowed bytes.
    fn string(&mut self, rec: &StringRecord<'_>, value: bool) -> Result<()> {
        if value {
            return self.key(rec.to_record());
        }
        let head = rec.head();
        self.start(&head)?;
        self.end(&head)
    }
    /// Whether keys whose value is one packed blob come to [`packed`](Self::packed) when the
    /// decoder can hand them over so (default: no, they come to [`key`](Self::key)).
    fn takes_packed(&self) -> bool {
        false
    }
    /// A key whose value is one packed blob, its elements borrowed from the decoder
    /// ([`Printer::packed`]), printed as its [`Item::Key`] would be. The default builds the
    /// value ([`PackedRecord::to_record`]) and goes the way of items; a sink that
    /// [takes them](Self::takes_packed) writes them from the borrowed elements.
    fn packed(&mut self, rec: &PackedRecord<'_>) -> Result<()> {
        self.key(rec.to_record())
    }
    /// A non-key item (header, aux field, function, …).
    fn other(&mut self, item: &Item) -> Result<()>;
    /// A command (AOF, replication stream).
    fn command(&mut self, cmd: &CommandEvent) -> Result<()>;
    /// Whether non-key items (aux fields, functions, …) go to [`other`](Self::other) when the
    /// caller did not say: `filtered` tells whether a filter is set. The header always
    /// goes. Default: no.
    fn wants_other_items(&self, filtered: bool) -> bool {
        let _ = filtered;
        false
    }
    /// A full resync replaces what was written so far ([`Resp`]: `FLUSHALL`). `shard` is the
    /// cluster shard that resynced (`None` for a single master): only its keys are replaced,
    /// and a sink that cannot remove one shard's keys alone must fail rather than keep them
    /// or remove the others'.
    fn resync(&mut self, shard: Option<usize>) -> Result<()> {
        let _ = shard;
        Ok(())
    }
    /// A live master's sync begins (a full sync with an RDB, or a partial one). Default: a full
    /// resync calls [`resync`](Self::resync).
    fn sync_start(&mut self, s: &SyncStart) -> Result<()> {
        if s.full && s.resync {
            self.resync(s.shard)
        } else {
            Ok(())
        }
    }
    /// A live master's stream moved on without data (`PING`): `offset` of `shard`. Default:
    /// nothing.
    fn offset(&mut self, offset: u64, shard: Option<usize>) -> Result<()> {
        let _ = (offset, shard);
        Ok(())
    }
    /// The RDB of a full sync is complete (`shard`: the cluster shard's). Default: nothing.
    fn sync_end(&mut self, shard: Option<usize>) -> Result<()> {
        let _ = shard;
        Ok(())
    }
    /// Writes out what is buffered (a live stream must not wait for a full buffer).
    fn flush(&mut self) -> Result<()>;
    /// Ends the output (closing brackets, trailer, flush).
    fn finish(&mut self) -> Result<()>;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn start(&mut self, head: &KeyHead) -> Result<()> {
        (**self).start(head)
    }
    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> Result<()> {
        (**self).chunk(head, chunk)
    }
    fn end(&mut self, head: &KeyHead) -> Result<()> {
        (**self).end(head)
    }
    fn module(&mut self, head: &KeyHead, value: &ModuleValue) -> Result<()> {
        (**self).module(head, value)
    }
    fn key(&mut self, rec: KeyRecord) -> Result<()> {
        (**self).key(rec)
    }
    fn string(&mut self, rec: &StringRecord<'_>, value: bool) -> Result<()> {
        (**self).string(rec, value)
    }
    fn takes_packed(&self) -> bool {
        (**self).takes_packed()
    }
    fn packed(&mut self, rec: &PackedRecord<'_>) -> Result<()> {
        (**self).packed(rec)
    }
    fn other(&mut self, item: &Item) -> Result<()> {
        (**self).other(item)
    }
    fn command(&mut self, cmd: &CommandEvent) -> Result<()> {
        (**self).command(cmd)
    }
    fn wants_other_items(&self, filtered: bool) -> bool {
        (**self).wants_other_items(filtered)
    }
    fn resync(&mut self, shard: Option<usize>) -> Result<()> {
        (**self).resync(shard)
    }
    fn sync_start(&mut self, s: &SyncStart) -> Result<()> {
        (**self).sync_start(s)
    }
    fn sync_end(&mut self, shard: Option<usize>) -> Result<()> {
        (**self).sync_end(shard)
    }
    fn offset(&mut self, offset: u64, shard: Option<usize>) -> Result<()> {
        (**self).offset(offset, shard)
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
    fn finish(&mut self) -> Result<()> {
        (**self).finish()
    }
}

/// Splits a whole value into the chunks a sink takes (a module value has none: it goes to
/// [`Sink::module`]).
///
/// ```
/// use replicator::{Chunk, Value, print::value_chunks};
/// let c = value_chunks(Value::List(vec!["a".into()]));
/// assert!(matches!(&c[..], [Chunk::List(v)] if v.len() == 1));
/// ```
pub fn value_chunks(value: Value) -> Vec<Chunk> {
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

/// Drives a [`Sink`] from [`Event`]s: applies the [`Filter`] to keys and commands, hands the
/// chunks of a big key to the sink with their key's head, passes the header always and other
/// non-key items when asked ([`all`](Self::all), or the sink's
/// [`wants_other_items`](Sink::wants_other_items)), and counts what passed.
///
/// ```
/// use replicator::{Event, Item, KeyRecord, Value, print::{Keys, Printer}};
/// let mut out = Vec::new();
/// let mut p = Printer::new(Keys::new(&mut out));
/// p.event(Event::Rdb(Item::Key(KeyRecord::new(0, "k".into(), Value::String("v".into())))))?;
/// p.finish()?;
/// assert_eq!(out, b"k\n");
/// # Ok::<(), replicator::Error>(())
/// ```
#[derive(Debug)]
pub struct Printer<S> {
    sink: S,
    filter: Filter,
    all: Option<bool>,
    /// The head of the chunked key being delivered (`None`: none, or filtered out).
    current: Option<KeyHead>,
    keys: u64,
    commands: u64,
}

impl<S: Sink> Printer<S> {
    /// A printer with no filter.
    pub fn new(sink: S) -> Self {
        Self {
            sink,
            filter: Filter::default(),
            all: None,
            current: None,
            keys: 0,
            commands: 0,
        }
    }

    /// Only keys and commands that pass `filter`.
    pub fn filter(&mut self, filter: Filter) -> &mut Self {
        self.filter = filter;
        self
    }

    /// Also (or never) pass non-key items other than the header: aux fields, functions,
    /// module aux records, RESIZEDB, EOF. Default: what the sink wants.
    pub fn all(&mut self, on: bool) -> &mut Self {
        self.all = Some(on);
        self
    }

    /// Keys that passed the filter so far.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Commands that passed the filter so far.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, to change it.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// One event. A full resync ([`SyncStart::resync`](crate::SyncStart::resync)) is passed to
    /// the sink as [`Sink::resync`]; sync boundaries and disconnections are not the sink's.
    pub fn event(&mut self, ev: Event) -> Result<()> {
        match ev {
            Event::Rdb(item) => self.item(item),
            Event::Command(c) => self.command(&c),
            Event::SyncStart(s) => {
                if s.full && s.resync {
                    self.current = None;
                }
                self.sink.sync_start(&s)
            }
            Event::SyncEnd { shard, .. } => self.sink.sync_end(shard),
            Event::Offset { offset, shard } => self.sink.offset(offset, shard),
            _ => Ok(()),
        }
    }

    /// One command.
    pub fn command(&mut self, c: &CommandEvent) -> Result<()> {
        if self.filter.pass_command(c.db, &c.cmd) {
            self.commands += 1;
            self.sink.command(c)?;
        }
        Ok(())
    }

    /// A string key borrowed from the decoder
    /// ([`FileEvents::next_event_with`](crate::files::FileEvents::next_event_with)), printed
    /// as its item ([`StringRecord::to_item`] with `!value`) would be.
    pub fn string(&mut self, rec: &StringRecord<'_>, value: bool) -> Result<()> {
        if self.filter.pass(rec.db, ValueType::String, rec.key) {
            self.keys += 1;
            self.sink.string(rec, value)?;
        }
        Ok(())
    }

    /// A key whose value is one packed blob, its elements borrowed from the decoder (a
    /// [`Visitor`](rdb_format::Visitor)'s [`packed`](rdb_format::Visitor::packed)): printed
    /// as its [`Item::Key`] is.
    pub fn packed(&mut self, rec: &PackedRecord<'_>) -> Result<()> {
        if self.filter.pass_key(rec.head) {
            self.keys += 1;
            self.sink.packed(rec)?;
        }
        Ok(())
    }

    /// A key whose value was only checked, handed over as its head (a
    /// [`Visitor`](rdb_format::Visitor)'s [`checked`](rdb_format::Visitor::checked)): printed
    /// as its [`Item::KeyChecked`] is.
    pub fn checked(&mut self, head: &KeyHead) -> Result<()> {
        if self.filter.pass_key(head) {
            self.keys += 1;
            self.sink.start(head)?;
            self.sink.end(head)?;
        }
        Ok(())
    }

    /// One RDB item.
    pub fn item(&mut self, item: Item) -> Result<()> {
        match item {
            Item::Key(rec) => {
                if self.filter.pass_key(&rec.head) {
                    self.keys += 1;
                    self.sink.key(rec)?;
                }
            }
            Item::KeyChecked(head) => self.checked(&head)?,
            Item::KeyStart(head) => {
                if self.filter.pass_key(&head) {
                    self.keys += 1;
                    self.sink.start(&head)?;
                    self.current = Some(head);
                } else {
                    self.current = None;
                }
            }
            Item::Chunk(c) => {
                if let Some(h) = &self.current {
                    self.sink.chunk(h, &c)?;
                }
            }
            Item::KeyEnd => {
                if let Some(h) = self.current.take() {
                    self.sink.end(&h)?;
                }
            }
            Item::Header { .. } => self.sink.other(&item)?,
            other => {
                let pass = self
                    .all
                    .unwrap_or_else(|| self.sink.wants_other_items(!self.filter.is_empty()));
                if pass {
                    self.sink.other(&other)?;
                }
            }
        }
        Ok(())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.sink.flush()
    }

    /// The sink, without ending the output (after a failed read, where ending it would make a
    /// cut input look whole).
    pub fn into_sink(self) -> S {
        self.sink
    }

    /// Ends the output; gives the sink back.
    pub fn finish(mut self) -> Result<S> {
        self.sink.finish()?;
        Ok(self.sink)
    }
}

/// One key name per line (commands: their first key).
#[derive(Debug)]
pub struct Keys<W: Write> {
    w: W,
}

impl<W: Write> Keys<W> {
    /// Key names to `w`.
    pub fn new(w: W) -> Self {
        Self { w }
    }
}

impl<W: Write> Keys<W> {
    fn line(&mut self, key: &[u8]) -> Result<()> {
        self.w.write_all(key)?;
        self.w.write_all(b"\n")?;
        Ok(())
    }
}

impl<W: Write> Sink for Keys<W> {
    fn start(&mut self, head: &KeyHead) -> Result<()> {
        self.line(&head.key)
    }
    fn chunk(&mut self, _: &KeyHead, _: &Chunk) -> Result<()> {
        Ok(())
    }
    fn end(&mut self, _: &KeyHead) -> Result<()> {
        Ok(())
    }
    fn module(&mut self, head: &KeyHead, _: &ModuleValue) -> Result<()> {
        self.start(head)
    }
    fn key(&mut self, rec: KeyRecord) -> Result<()> {
        self.start(&rec.head)
    }
    fn string(&mut self, rec: &StringRecord<'_>, _: bool) -> Result<()> {
        self.line(rec.key)
    }
    fn command(&mut self, c: &CommandEvent) -> Result<()> {
        let args: Vec<&[u8]> = c.cmd.args().collect();
        match crate::commands::first_key(&args) {
            Some(k) => self.line(args[k]),
            None => Ok(()),
        }
    }
    fn other(&mut self, _: &Item) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(self.w.flush()?)
    }
    fn finish(&mut self) -> Result<()> {
        Ok(self.w.flush()?)
    }
}

/// The number of keys and commands, written at the end.
#[derive(Debug)]
pub struct Count<W: Write> {
    w: W,
    n: u64,
}

impl<W: Write> Count<W> {
    /// Writes the count to `w` when finished.
    pub fn new(w: W) -> Self {
        Self { w, n: 0 }
    }

    /// Keys and commands counted so far.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Adds what another counter of the same input counted.
    pub fn add(&mut self, n: u64) {
        self.n += n;
    }
}

impl<W: Write> Sink for Count<W> {
    fn start(&mut self, _: &KeyHead) -> Result<()> {
        self.n += 1;
        Ok(())
    }
    fn chunk(&mut self, _: &KeyHead, _: &Chunk) -> Result<()> {
        Ok(())
    }
    fn end(&mut self, _: &KeyHead) -> Result<()> {
        Ok(())
    }
    fn module(&mut self, _: &KeyHead, _: &ModuleValue) -> Result<()> {
        self.n += 1;
        Ok(())
    }
    fn key(&mut self, _: KeyRecord) -> Result<()> {
        self.n += 1;
        Ok(())
    }
    fn string(&mut self, _: &StringRecord<'_>, _: bool) -> Result<()> {
        self.n += 1;
        Ok(())
    }
    fn command(&mut self, _: &CommandEvent) -> Result<()> {
        self.n += 1;
        Ok(())
    }
    fn other(&mut self, _: &Item) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        writeln!(self.w, "{}", self.n)?;
        Ok(self.w.flush()?)
    }
}

/// A [`Visitor`](rdb_format::Visitor) that prints what the decoder hands it through a
/// [`Printer`]: string keys, with their values when `value`; when values are skipped
/// (`value` false), keys whose values were only checked; when they are built, keys whose
/// value is one packed blob, where the sink [takes them](Sink::takes_packed). After each key `then` is told the
/// printer and the key's offset, and stops the decoder's call when it returns true (a buffer
/// to hand over); a sink's error stops it too and waits in [`error`](Self::error).
///
/// ```
/// use bytes::Bytes;
/// use replicator::print::{Count, Printer, PrintVisit};
/// use replicator::rdb::{Config, Decoder};
///
/// // RDB 9: "k" = "v", then a set "s" of one member "m", then EOF without a checksum
/// let mut file =
///     Bytes::from_static(b"REDIS0009\x00\x01k\x01v\x02\x01s\x01\x01m\xff\0\0\0\0\0\0\0\0");
/// let mut config = Config::default();
/// config.skip_values(true);
/// let mut dec = Decoder::with_config(config);
/// let mut p = Printer::new(Count::new(Vec::new()));
/// let mut offsets = Vec::new();
/// loop {
///     let mut v = PrintVisit::new(&mut p, false, |_, at| {
///         offsets.push(at);
///         false
///     });
///     let got = dec.decode_with(&mut file, &mut v).unwrap();
///     assert!(v.error.is_none());
///     match got {
///         Some(item) => p.item(item).unwrap(),
///         None => break,
///     }
/// }
/// // both keys were handed over, none came as an item
/// assert_eq!((p.keys(), &offsets[..]), (2, &[9, 14][..]));
/// ```
pub struct PrintVisit<'p, S, F> {
    printer: &'p mut Printer<S>,
    value: bool,
    then: F,
    /// The sink's error that stopped the decoder's call.
    pub error: Option<crate::Error>,
}

impl<'p, S: Sink, F: FnMut(&Printer<S>, u64) -> bool> PrintVisit<'p, S, F> {
    /// Prints into `printer`; `value`: string keys come with their values (the decoder builds
    /// them), else checked keys are taken too.
    pub fn new(printer: &'p mut Printer<S>, value: bool, then: F) -> Self {
        Self {
            printer,
            value,
            then,
            error: None,
        }
    }

    fn after(&mut self, printed: Result<()>, offset: u64) -> std::ops::ControlFlow<()> {
        if let Err(e) = printed {
            self.error = Some(e);
            return std::ops::ControlFlow::Break(());
        }
        if (self.then)(self.printer, offset) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }
}

impl<S: Sink, F: FnMut(&Printer<S>, u64) -> bool> rdb_format::Visitor for PrintVisit<'_, S, F> {
    fn string(&mut self, rec: &StringRecord<'_>) -> std::ops::ControlFlow<()> {
        let printed = self.printer.string(rec, self.value);
        self.after(printed, rec.offset)
    }

    fn takes_checked(&self) -> bool {
        !self.value
    }

    fn checked(&mut self, head: &KeyHead) -> std::ops::ControlFlow<()> {
        let printed = self.printer.checked(head);
        self.after(printed, head.offset)
    }

    fn takes_packed(&self) -> bool {
        self.value && self.printer.sink.takes_packed()
    }

    fn packed(&mut self, rec: &PackedRecord<'_>) -> std::ops::ControlFlow<()> {
        let printed = self.printer.packed(rec);
        self.after(printed, rec.head.offset)
    }
}
