//! Printing one RDB file on several threads: [`print_parallel`] runs a [`Pipeline`] whose
//! workers print their batches with sinks of their own into buffers, and joins the buffers in
//! file order, byte for byte what one printer writes.

use std::cell::RefCell;
use std::io::Write;
use std::ops::{ControlFlow, Range};
use std::path::Path;
use std::rc::Rc;
use std::sync::Mutex;
use std::thread::ThreadId;

use rdb_format::{Item, Part, Pipeline};

use super::{Count, Jsonl, Keys, LeftOut, Printer, Resp, RespSettings, Sink};
use crate::error::{Error, Result};
use crate::filter::Filter;

/// Where a sink printing in parts writes: the output itself on the caller's thread, a buffer
/// on a worker. Clones write to the same place.
#[derive(Clone)]
pub struct PartWriter(Rc<RefCell<Target>>);

enum Target {
    Buffer(Vec<u8>),
    Output(Box<dyn Write>),
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartWriter")
    }
}

impl PartWriter {
    /// A writer to `w`.
    pub fn output(w: Box<dyn Write>) -> Self {
        Self(Rc::new(RefCell::new(Target::Output(w))))
    }

    /// A writer to a buffer that has no room yet (see [`refill`](Self::refill)).
    fn buffer() -> Self {
        Self(Rc::new(RefCell::new(Target::Buffer(Vec::new()))))
    }

    /// Gives the buffer `b` where it has no room of its own, else gives `b` back to `pool`.
    fn refill(&self, b: Vec<u8>, pool: &Pool) {
        match &mut *self.0.borrow_mut() {
            Target::Buffer(mine) if mine.capacity() == 0 => *mine = b,
            _ => pool.put(b, Some(std::thread::current().id())),
        }
    }

    /// Bytes a buffer holds.
    fn len(&self) -> usize {
        match &*self.0.borrow() {
            Target::Buffer(b) => b.len(),
            Target::Output(_) => 0,
        }
    }

    /// What a buffer holds, taken out of it; the writer goes on in a buffer from `refill`
    /// (or in an empty one).
    fn take(&self, refill: Option<&Pool>) -> Vec<u8> {
        match &mut *self.0.borrow_mut() {
            Target::Buffer(b) => std::mem::replace(b, refill.map_or_else(Vec::new, Pool::get)),
            Target::Output(_) => Vec::new(),
        }
    }
}

/// Buffers the workers print into, given back once their bytes are written: a worker's part
/// neither grows its buffer from nothing (copying it at each doubling) nor allocates a fresh
/// one that the kernel has to fault in. A worker gets back one it printed into before where
/// there is one: another's was written last on the other's core, and each of its lines
/// would move over as this one writes it.
#[derive(Default)]
struct Pool(Mutex<Vec<(Option<ThreadId>, Vec<u8>)>>);

impl Pool {
    /// Buffers kept at most: more than are in flight at once while parts wait for their turn
    /// (each batch's output is a few buffers, and a window of up to 8 batches waits), so that
    /// none is freed and made again, its pages faulted in again; what is kept was in flight
    /// before. At most 24 were in flight at once printing the bench's files at 2, 4 and 8
    /// threads. With 8 kept, `dump --format resp --threads 2` of its strings file made 85 and
    /// freed 77 again (5,600 page faults against 4,500 now), and at 4 threads 14,200 page
    /// faults against 5,300 now.
    const KEEP: usize = 32;

    /// An empty buffer that holds a part without growing: the last one this thread printed
    /// into, else the last one given back.
    fn get(&self) -> Vec<u8> {
        let me = std::thread::current().id();
        let got = self.0.lock().ok().and_then(|mut p| {
            let i = p.iter().rposition(|(by, _)| *by == Some(me));
            let i = i.or(p.len().checked_sub(1))?;
            Some(p.remove(i).1)
        });
        got.unwrap_or_else(|| Vec::with_capacity(SPILL + (SPILL >> 2)))
    }

    /// Takes `b` back, printed into by thread `by`, unless it grew past what a part usually
    /// needs (a big record's), or is too small to hold one.
    fn put(&self, mut b: Vec<u8>, by: Option<ThreadId>) {
        if b.capacity() > 4 * SPILL || b.capacity() < SPILL {
            return;
        }
        b.clear();
        if let Ok(mut p) = self.0.lock() {
            if p.len() < Self::KEEP {
                p.push((by, b));
            } else {
                #[cfg(test)]
                tests::FREED_WHEN_FULL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut *self.0.borrow_mut() {
            Target::Buffer(b) => {
                b.extend_from_slice(buf);
                Ok(buf.len())
            }
            Target::Output(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut *self.0.borrow_mut() {
            Target::Buffer(_) => Ok(()),
            Target::Output(w) => w.flush(),
        }
    }
}

/// What a part tells the sink on the caller's thread when its bytes are joined.
#[derive(Debug, Clone, Default)]
pub struct PartSummary {
    /// Keys and commands counted ([`Count`]).
    pub count: u64,
    /// The db the part's commands leave the target in ([`Resp`]; `None`: no `SELECT`).
    pub db: Option<u64>,
    /// The part's first `SELECT`: its db and its bytes in the part's output ([`Resp`]).
    pub first_select: Option<(u64, Range<u64>)>,
    /// What the part's commands left out ([`Resp`]).
    pub left_out: LeftOut,
}

/// A sink that can print a file in parts (see [`print_parallel`]): [`Jsonl`], [`Resp`],
/// [`Keys`] and [`Count`] over a [`PartWriter`]. ([`Restore`](super::Restore) is not one: a big key's payload
/// is one command, which a worker would have to hold whole.)
pub trait PrintParts: Sink + Sized {
    /// The sink's settings, for the workers' sinks.
    type Settings: Send + Sync;
    /// This sink's settings.
    fn settings(&self) -> Self::Settings;
    /// A sink with `settings` for one part, writing to `w`.
    fn for_part(settings: &Self::Settings, w: PartWriter) -> Self;
    /// What follows starts in the file's db `db` (JSON names it in RESIZEDB records).
    fn part_start(&mut self, db: u64) {
        let _ = db;
    }
    /// What the part tells the joined output.
    fn summary(&self) -> PartSummary {
        PartSummary::default()
    }
    /// Takes in a part joined to the output.
    fn join(&mut self, part: &PartSummary) {
        let _ = part;
    }
    /// The db the joined output leaves the target in ([`Resp`]).
    fn output_db(&self) -> Option<u64> {
        None
    }
    /// From now on, holds what it prints in `buf` (an empty buffer) until
    /// [`take_held`](Self::take_held) or a flush, rather than copying it to its writer in
    /// pieces; gives `buf` back where it cannot.
    fn hold_in(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        Some(buf)
    }
    /// Bytes held, not written to the writer yet.
    fn held(&self) -> usize {
        0
    }
    /// Takes the bytes held, going on in `fresh`; `None` where it holds none of its own.
    fn take_held(&mut self, fresh: Vec<u8>) -> Option<Vec<u8>> {
        let _ = fresh;
        None
    }
}

/// [`PrintParts`]' buffer methods for a sink with `hold_in`, `held` and `take_held` of its own.
macro_rules! holds_its_buffer {
    () => {
        fn hold_in(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
            Self::hold_in(self, buf);
            None
        }
        fn held(&self) -> usize {
            Self::held(self)
        }
        fn take_held(&mut self, fresh: Vec<u8>) -> Option<Vec<u8>> {
            Some(Self::take_held(self, fresh))
        }
    };
}

impl PrintParts for Jsonl<PartWriter> {
    type Settings = ();
    fn settings(&self) {}
    fn for_part((): &(), w: PartWriter) -> Self {
        Self::new(w)
    }
    fn part_start(&mut self, db: u64) {
        self.set_db(db);
    }
    holds_its_buffer!();
}

impl PrintParts for Keys<PartWriter> {
    type Settings = ();
    fn settings(&self) {}
    fn for_part((): &(), w: PartWriter) -> Self {
        Self::new(w)
    }
}

impl PrintParts for Count<PartWriter> {
    type Settings = ();
    fn settings(&self) {}
    fn for_part((): &(), w: PartWriter) -> Self {
        Self::new(w)
    }
    fn summary(&self) -> PartSummary {
        PartSummary {
            count: self.count(),
            ..PartSummary::default()
        }
    }
    fn join(&mut self, part: &PartSummary) {
        self.add(part.count);
    }
}

impl PrintParts for Resp<PartWriter> {
    type Settings = RespSettings;
    fn settings(&self) -> RespSettings {
        self.settings()
    }
    fn for_part(settings: &RespSettings, w: PartWriter) -> Self {
        Self::with_settings(w, settings)
    }
    fn summary(&self) -> PartSummary {
        PartSummary {
            db: self.db(),
            first_select: self.first_select(),
            left_out: self.left_out(),
            ..PartSummary::default()
        }
    }
    fn join(&mut self, part: &PartSummary) {
        if part.db.is_some() {
            self.set_db(part.db);
        }
        self.add_left_out(&part.left_out);
    }
    fn output_db(&self) -> Option<u64> {
        self.db()
    }
    holds_its_buffer!();
}

/// What a worker made of (a part of) a batch.
#[derive(Default)]
struct Printed {
    /// Buffers of output that go before `bytes`, in order (see [`Stash`]).
    before: Vec<Vec<u8>>,
    bytes: Vec<u8>,
    /// For the first part of a printer's output: its first `SELECT`, where it lies in the
    /// first buffer (`before`'s first, else `bytes`).
    first: FirstSelect,
    /// When `bytes` end a printer's output within the batch (before a big key): its summary.
    summary: Option<PartSummary>,
    /// Items for the caller's printer to print after `bytes` (a big key's).
    items: Vec<Item>,
    /// For the last part: what the batch ended with.
    last: Option<Last>,
    /// The worker that printed it, whose buffers go back to it ([`Pool`]).
    by: Option<ThreadId>,
}

/// How a batch ended.
struct Last {
    summary: PartSummary,
    keys: u64,
    end: u64,
    partial: u64,
    error: Option<Error>,
}

/// A worker's printer's buffer is put aside past this many bytes ([`Stash`]).
const SPILL: usize = 512 << 10;

/// A worker hands its output over past this many bytes, else at the end of its batch (or
/// before a big key). A batch of small keys (1 MiB of file, 1.3-1.6 MiB printed) is then
/// handed over once, and the caller's thread is woken once for it rather than for each
/// [`SPILL`]: handing over at each, `dump --format resp --threads 2` of the bench's mixed
/// file switched threads 3,100 times, in 80 ms of kernel time (futex wake-ups and the
/// interrupts between the cores); 2,420 times in 64 ms this way, and took 0.471 s instead
/// of 0.479 (medians of 11); `jsonl` of the bench's strings file 0.132 s instead of 0.146.
const HAND: usize = 2 << 20;

/// A printer's first `SELECT` where a part starts its output: its db and where it lies in
/// the part's first buffer (`None` inside: it has none; `None`: the part does not start a
/// printer's output).
type FirstSelect = Option<Option<(u64, Range<u64>)>>;

/// The buffers a worker put aside and has not handed over yet.
#[derive(Default)]
struct Stash {
    bufs: Vec<Vec<u8>>,
    /// The first `SELECT` of the printer whose first buffer is the first put aside.
    first: FirstSelect,
}

impl Stash {
    /// Puts `b` aside; `first`: it is the first of a printer's output, with that `SELECT`.
    fn put(&mut self, b: Vec<u8>, first: FirstSelect) {
        if self.bufs.is_empty() {
            self.first = first;
        }
        self.bufs.push(b);
    }

    /// Bytes put aside.
    fn bytes(&self) -> usize {
        self.bufs.iter().map(Vec::len).sum()
    }

    /// What goes before a part whose own first `SELECT` (where it is a printer's first) is
    /// `first`: the buffers put aside, and the first `SELECT` of all of them.
    fn take(&mut self, first: FirstSelect) -> (Vec<Vec<u8>>, FirstSelect) {
        if self.bufs.is_empty() {
            (Vec::new(), first)
        } else {
            (std::mem::take(&mut self.bufs), self.first.take())
        }
    }
}

/// A worker hands a big key's chunks to the caller's thread this many at a time.
const CHUNKS_HANDED: usize = 4;

/// How [`print_parallel`] ended.
#[derive(Debug)]
pub struct ParallelEnd<S> {
    /// The printer, to [`finish`](Printer::finish) the output (or not, after an error).
    pub printer: Printer<S>,
    /// The first error; the output holds what came before it, as with one decoder.
    pub error: Option<Error>,
    /// Keys printed.
    pub keys: u64,
    /// Keys whose duplicate check stopped at the limit.
    pub partial_checks: u64,
}

/// Prints the RDB file at `path` with `sink` (which writes to `out`), `filter` and `all` as a
/// [`Printer`] takes them, decoding with `pipeline` (its threads, its decoder settings): the
/// output is byte for byte what one printer fed by one decoder writes.
/// `progress` hears (keys printed, file offset) after each batch.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use replicator::print::{Jsonl, PartWriter, Printer, print_parallel};
/// # let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb"));
/// # #[derive(Clone)] struct Shared(Arc<Mutex<Vec<u8>>>);
/// # impl std::io::Write for Shared {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// let out = Shared(Arc::new(Mutex::new(Vec::new())));
/// let w = PartWriter::output(Box::new(out.clone()));
/// let mut pipeline = replicator::rdb::Pipeline::new(Default::default());
/// pipeline.threads(2);
/// let end = print_parallel(path, &pipeline, Jsonl::new(w.clone()), &w, Default::default(), None, |_, _| {})?;
/// assert!(end.error.is_none());
/// end.printer.finish()?;
///
/// let mut one = Vec::new();
/// let mut p = Printer::new(Jsonl::new(&mut one));
/// for ev in replicator::files::open(path, Default::default())? {
///     p.event(ev?)?;
/// }
/// p.finish()?;
/// assert_eq!(*out.0.lock().unwrap(), one);
/// # Ok::<(), replicator::Error>(())
/// ```
pub fn print_parallel<S: PrintParts>(
    path: &Path,
    pipeline: &Pipeline,
    sink: S,
    out: &PartWriter,
    filter: Filter,
    all: Option<bool>,
    mut progress: impl FnMut(u64, u64),
) -> Result<ParallelEnd<S>> {
    let settings = sink.settings();
    let mut main = Printer::new(sink);
    main.filter(filter.clone());
    if let Some(a) = all {
        main.all(a);
    }
    let (filter_ref, settings_ref) = (&filter, &settings);
    let pool = Pool::default();
    let pool = &pool;
    // a printer for a part of a batch that starts in db `db`
    let fresh = |w: &PartWriter, header: Item, db: u64| -> (Printer<S>, Option<Error>) {
        let mut p = Printer::new(S::for_part(settings_ref, w.clone()));
        // what it prints is handed over in the sink's own buffer where it can be, else in
        // the writer's
        if let Some(b) = p.sink_mut().hold_in(pool.get()) {
            w.refill(b, pool);
        }
        p.filter(filter_ref.clone());
        if let Some(a) = all {
            p.all(a);
        }
        // the header first, as the printer of the whole file had it
        let error = p.item(header).err();
        p.sink_mut().part_start(db);
        (p, error)
    };
    let work = |batch: &mut rdb_format::Batch<'_>, hand: &mut dyn FnMut(Printed)| -> Printed {
        let by = Some(std::thread::current().id());
        let mut hand = |p: Printed| hand(Printed { by, ..p });
        let w = PartWriter::buffer();
        let (mut p, mut error) = fresh(&w, batch.header(), batch.db());
        let mut first = true;
        // keys printed by the batch's printers before `p`
        let mut keys = 0;
        // in a big key (one that comes in chunks), whose items go to the caller's printer,
        // a few at a time (each hand-over may wake a thread)
        let mut big = false;
        let mut pending = Vec::new();
        // what was printed and not handed over yet
        let mut stash = Stash::default();
        // string keys as borrowed records; the visitor stops where a part is to be handed over
        let value = !batch.skips_values();
        while error.is_none() {
            let mut broke = false;
            // (checked keys too, when values are skipped)
            let mut visit = super::PrintVisit::new(&mut p, value, |p, _| {
                broke = w.len() + p.sink().held() >= SPILL;
                broke
            });
            let got = batch.next_with(&mut visit);
            if let Some(e) = visit.error {
                error = Some(e);
                broke = true;
            }
            match got {
                _ if error.is_some() => break,
                // A big key is printed by the caller's thread as this one decodes it: its
                // rendering is no longer on this worker alone while the others wait for it.
                // What this printer wrote before goes first, with its summary, as a batch's
                // end would; a new printer goes on after the key.
                Some(Ok(Item::KeyStart(head))) if !big => {
                    let bytes = match all_of(&mut p, &w, Some(pool)) {
                        Ok(b) => b,
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    };
                    let summary = p.sink().summary();
                    let db = head.db;
                    let (before, first_select) =
                        stash.take(first.then(|| summary.first_select.clone()));
                    hand(Printed {
                        before,
                        bytes,
                        first: first_select,
                        summary: Some(summary),
                        items: vec![Item::KeyStart(head)],
                        ..Printed::default()
                    });
                    keys += p.keys();
                    (p, error) = fresh(&w, batch.header(), db);
                    (first, big) = (true, true);
                }
                Some(Ok(item)) if big => {
                    big = !matches!(item, Item::KeyEnd);
                    pending.push(item);
                    if !big || pending.len() >= CHUNKS_HANDED {
                        hand(Printed {
                            items: std::mem::take(&mut pending),
                            ..Printed::default()
                        });
                    }
                }
                Some(item) => {
                    if let Err(e) = item.map_err(Error::from).and_then(|i| p.item(i)) {
                        error = Some(e);
                        break;
                    }
                }
                None if broke => {}
                None => break,
            }
            if w.len() + p.sink().held() >= SPILL {
                // what went to the writer, else (most often) the sink's own buffer
                let bytes = if w.len() > 0 {
                    w.take(Some(pool))
                } else {
                    let fresh = pool.get();
                    p.sink_mut()
                        .take_held(fresh)
                        .unwrap_or_else(|| w.take(Some(pool)))
                };
                stash.put(bytes, first.then(|| p.sink().summary().first_select));
                first = false;
                if stash.bytes() >= HAND {
                    let (before, first_select) = stash.take(None);
                    hand(Printed {
                        before,
                        first: first_select,
                        ..Printed::default()
                    });
                }
            }
        }
        if !pending.is_empty() {
            // a big key's chunks before its error
            hand(Printed {
                items: pending,
                ..Printed::default()
            });
        }
        let bytes = all_of(&mut p, &w, None).unwrap_or_else(|e| {
            error.get_or_insert(e);
            w.take(None)
        });
        let summary = p.sink().summary();
        let (before, first) = stash.take(first.then(|| summary.first_select.clone()));
        Printed {
            before,
            bytes,
            first,
            summary: None,
            items: Vec::new(),
            last: Some(Last {
                summary,
                keys: keys + p.keys(),
                end: batch.end(),
                partial: batch.partial_checks(),
                error,
            }),
            by,
        }
    };
    let (mut keys, mut partial) = (0u64, 0u64);
    let mut failure: Option<Error> = None;
    let r = pipeline.run(path, work, |part| {
        let step = match part {
            Part::Item(item) => main.item(item),
            Part::Done(printed) => {
                if let Some(last) = &printed.last {
                    keys += last.keys;
                    partial += last.partial;
                    progress(keys + main.keys(), last.end);
                }
                join(&mut main, out, printed, pool)
            }
        };
        match step {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Err(e) = r {
        failure.get_or_insert(e.into());
    }
    Ok(ParallelEnd {
        keys: keys + main.keys(),
        printer: main,
        error: failure,
        partial_checks: partial,
    })
}

/// All that printer `p` printed and did not hand over yet, flushed: its sink's own buffer
/// itself where nothing went to its writer `w` since the last hand-over, else `w`'s bytes
/// (the sink's buffer written after them); `w` goes on in a buffer from `refill`.
fn all_of<S: PrintParts>(
    p: &mut Printer<S>,
    w: &PartWriter,
    refill: Option<&Pool>,
) -> Result<Vec<u8>> {
    if w.len() == 0 {
        if let Some(b) = p.sink_mut().take_held(Vec::new()) {
            p.flush()?;
            return Ok(b);
        }
    }
    p.flush()?;
    Ok(w.take(refill))
}

/// Writes a worker's part to the output after what the main printer buffered, without a
/// `SELECT` the output does not need, and takes in its batch's summary at its end.
fn join<S: PrintParts>(
    main: &mut Printer<S>,
    out: &PartWriter,
    mut part: Printed,
    pool: &Pool,
) -> Result<()> {
    main.flush()?;
    let mut w = out.clone();
    let mut first = part.first.take().flatten();
    for buf in std::mem::take(&mut part.before)
        .into_iter()
        .chain([std::mem::take(&mut part.bytes)])
    {
        let bytes = &buf[..];
        match first.take() {
            // (a SELECT cut by a hand-over stays: the output is still right, one command
            // longer)
            Some((db, r))
                if main.sink().output_db() == Some(db) && r.end as usize <= bytes.len() =>
            {
                w.write_all(&bytes[..r.start as usize])?;
                w.write_all(&bytes[r.end as usize..])?;
            }
            _ => w.write_all(bytes)?,
        }
        pool.put(buf, part.by);
    }
    if let Some(s) = &part.summary {
        main.sink_mut().join(s);
    }
    for item in part.items {
        main.item(item)?;
    }
    let Some(last) = part.last else {
        return Ok(());
    };
    main.sink_mut().join(&last.summary);
    match last.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Buffers [`Pool::put`] freed because it held [`Pool::KEEP`] already, by every pool of
    /// the process: only [`the_pool_keeps_the_buffers_in_flight`] prints in parallel in this
    /// test binary, so what it counts is that test's.
    pub(super) static FREED_WHEN_FULL: AtomicUsize = AtomicUsize::new(0);

    /// A thread gets back the buffer it printed into last, even where another thread's came
    /// back after it; else the one given back last.
    #[test]
    fn a_worker_gets_back_its_own_buffer_first() {
        let pool = Pool::default();
        let (mine, theirs) = (pool.get(), pool.get());
        let (at_mine, at_theirs) = (mine.as_ptr(), theirs.as_ptr());
        let other = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        pool.put(mine, Some(std::thread::current().id()));
        pool.put(theirs, Some(other));
        let got = pool.get();
        assert_eq!(got.as_ptr(), at_mine);
        // none of its own is left: the other thread's
        let next = pool.get();
        assert_eq!(next.as_ptr(), at_theirs);
        assert!(pool.get().capacity() >= SPILL);
    }

    /// An RDB 9 file (no checksum) of `n` string keys of 200 bytes.
    fn strings_file(n: usize) -> tempfile::NamedTempFile {
        let mut b = b"REDIS0009".to_vec();
        b.extend_from_slice(&[0xfe, 0]);
        for i in 0..n {
            let key = format!("key:{i}");
            b.push(0);
            b.push(key.len() as u8);
            b.extend_from_slice(key.as_bytes());
            // a 14-bit length: 0x40 | its high bits, then its low byte
            b.extend_from_slice(&[0x40, 200]);
            b.extend((0..200).map(|j| b'a' + ((i + j) % 26) as u8));
        }
        b.push(0xff);
        b.extend_from_slice(&[0; 8]);
        let mut f = tempfile::NamedTempFile::new().expect("a temp file");
        f.write_all(&b).expect("written");
        f
    }

    /// Printing on several threads, the pool keeps every buffer that was in flight: none is
    /// freed to be made again (with 8 kept, this file at 4 threads freed some), and the
    /// output is what one printer writes.
    #[test]
    fn the_pool_keeps_the_buffers_in_flight() {
        let file = strings_file(100_000);
        let one = {
            let mut out = Vec::new();
            let mut p = Printer::new(Resp::new(&mut out));
            for ev in crate::files::open(file.path(), Default::default()).expect("opened") {
                p.event(ev.expect("an event")).expect("printed");
            }
            p.finish().expect("finished");
            out
        };
        for threads in [2, 4, 8] {
            // the joined output, read back once written
            let printed = tempfile::NamedTempFile::new().expect("a temp file");
            let to = printed.reopen().expect("reopened");
            let w = PartWriter::output(Box::new(std::io::BufWriter::new(to)));
            let mut pipeline = Pipeline::new(Default::default());
            pipeline.threads(threads);
            let before = FREED_WHEN_FULL.load(Ordering::Relaxed);
            let end = print_parallel(
                file.path(),
                &pipeline,
                Resp::new(w.clone()),
                &w,
                Filter::default(),
                None,
                |_, _| {},
            )
            .expect("printed");
            assert!(end.error.is_none(), "{:?}", end.error);
            end.printer.finish().expect("finished");
            drop(w);
            let out = std::fs::read(printed.path()).expect("read back");
            let freed = FREED_WHEN_FULL.load(Ordering::Relaxed) - before;
            assert_eq!(freed, 0, "{threads} threads: buffers freed and made again");
            assert!(out == one, "{threads} threads: not one printer's output");
        }
    }
}
