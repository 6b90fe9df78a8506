//! [`Pipeline`]: one RDB file decoded on several threads, with its results in file order.
//!
//! A mapped file (feature `mmap`) is cut where its records are guessed to start: one thread
//! (the walker) looks a batch's length past where the last batch starts for the first place
//! from which a few records walk (their types and lengths hold, as [`Decoder::walker`] reads
//! them), and cuts there; it reads a few records a batch, not the whole file. Worker threads decode the batches ([`Decoder::resume`]):
//! decompress, validate, build, keep the checksum of their bytes, and run whatever the
//! caller's `work` does with the items (render them, count them). A batch ends at the first
//! record boundary at or past its guessed end. The caller's thread gets the results back in
//! file order, and gives a batch's out only once the batch before it ended where it starts,
//! in its database: after a wrong guess (a place inside a value that decodes as records, a
//! database selected on the way) the batches cut since are dropped and cut again from there.
//! It combines the batches' checksums and checks the file's at its EOF.
//!
//! A file that is read rather than mapped (a pipe) is walked instead: the walker reads the
//! records' lengths, skips their strings without decompressing them, keeps the checksum, and
//! cuts the file into batches of whole records; a record it is 4 MiB into (a big key)
//! becomes a batch of its own at once, decoded while the walker walks on to its end.
//!
//! A worker may
//! hand its results over in parts as it goes (a big key's rendering, piece by piece): it waits
//! while four parts wait for the caller, so no thread ever holds a big key's output whole; at
//! most [`Pipeline::window`] batches are in flight. A key whose duplicate check needs a big
//! table (a set, hash or sorted set of more than 65,536 members) waits until every batch
//! before its own was taken: one such table (up to 9 MiB) is held at a time, so memory does
//! not grow with the number of threads. That key's duplicate check (a cache miss a member)
//! runs on a thread beside its worker, which decodes on meanwhile but hands nothing over past
//! a step whose members were not checked yet: a duplicate comes out where one decoder gives it.
//!
//! A mapped file is read in place by every thread (`MappedFile`, [`Pipeline::map`]):
//! nothing is copied from the page cache, no batch is read twice.
//! Each batch is a `Bytes` with a reference count of its own, so that threads do not contend
//! for one count; the mapping's pages are let go behind each worker and the caller's thread
//! (and the walker, when it walks), so resident memory stays bounded whatever the file's size.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Read as _;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use bytes::{Bytes, BytesMut};

use crate::decoder::{Checked, Config, Decoder, Deferred, MemberCheck, Visit};
use crate::error::{Error, Result};
use crate::reader::HUGE;
use crate::value::{Flavor, Item, Visitor};

/// Bytes a worker reads from the file at a time.
const READ: u64 = 256 << 10;
/// Bytes the walker reads at a time.
const BLOCK: u64 = 2 << 20;
/// Parts of a batch's results that may wait for the caller's thread before their worker waits
/// too. A printed batch of small keys is three or four parts, so that it can be printed whole
/// while the batch before it is (with two, strings printed on two threads were 20 % slower).
const PARTS: usize = 4;
/// Bytes a probe far ahead of the workers reads first ([`Pipeline::probe_at`]): most places
/// are found within them; the rest read all of theirs again. (Read all at once, they took
/// about a third of the walker's time.)
const PROBE_FIRST: u64 = 16 << 10;
/// A batch gathered up to this size stays in the walker's memory for its worker; a bigger one
/// (a big key) is read from the file again by its worker.
const CARRY: u64 = 1 << 20;
/// A record the walker is this far into when it reads on is handed to a worker at once, as a
/// batch of its own whose end its worker finds: the walker walks it while it is decoded.
const OPEN_RECORD: u64 = 2 * BLOCK;
/// A mapped file's pages are let go (`MappedFile::release`) this far behind the walker, and
/// a worker lets its batch's go every this many bytes: resident memory stays within a few of
/// these whatever the file's size.
const RELEASE: u64 = 4 << 20;
/// With a wide window (`check`'s), the caller's thread lets the mapped file's pages go this
/// many bytes at a time behind the batches it took, and the workers leave it the pages that lie
/// within this of there ([`Batch::release`]). Each `madvise` that unmaps pages stops the other
/// cores that run the process (a TLB shootdown, which flushes their whole TLB): with each
/// worker letting its own batch's pages go 2 MiB at a time, `check --threads 2` of the bench's
/// mixed file made 198 of them a run, 79 now; its system time went from 32.5 to 24.2 ms and
/// its time from 89.5 to 88.2 ms (medians of 21 alternated runs; 89.2 → 86.3 over 30), for
/// up to 4 MiB more peak RSS (16 MiB: about as fast, 12 MiB more).
const LEAVE: u64 = 8 << 20;
/// Batches in flight at most for the workers to let their pages go whole huge pages at a time
/// (`Batch::whole_pages`): the default window of a printing pipeline.
const WHOLE_WINDOW: u64 = 8;
/// How far past a batch's guessed end the speculating walker walks a big collection's
/// members to find its end ([`Pipeline::walk_to`]); past that it looks for the next record
/// further on instead. Walking costs a few nanoseconds a member (a hash of 2,000,000 fields:
/// 10 ms), and the workers may wait for the batch meanwhile; a string is skipped whole.
const WALK_PAST: u64 = BLOCK;
/// Members of a big collection the speculating walker walks at least before it guesses
/// from their size how far off its end is ([`Pipeline::walk_to`]).
const WALK_LEAST: u64 = 1024;
/// Records that must decode from a place for the speculating walker to start a batch there.
const PROBE_RECORDS: u32 = 8;
/// Records from such a place the batch starts after.
const PROBE_SKIP: u32 = 2;
/// Bytes those records must lie within.
const PROBE_BYTES: u64 = 64 << 10;
/// Places the walker tries one after the other before it looks further on.
const PROBE_SCAN: u64 = 16 << 10;
/// How far on the walker looks at most when it found no place (in a big record).
const PROBE_GAP: u64 = 4 << 20;
/// How near a big record's end the walker looks for the place its batch ends at
/// ([`Pipeline::nearer`]).
const NEAR_END: u64 = 256 << 10;

#[cfg(feature = "mmap")]
use crate::reader::MappedFile;

/// How far [`Pipeline::walk_to`] got.
enum Walked {
    /// To the first record boundary at or past its target (`None`: the EOF came first).
    To(Option<u64>),
    /// Into a collection whose members go on past [`WALK_PAST`]: this far.
    Far(u64),
    /// The records do not walk (the batch started at a wrong guess).
    Failed,
}

/// Where the pipeline's threads read the file from.
#[derive(Debug, Clone, Copy)]
enum Src<'f> {
    /// Read with `read`/`pread` into buffers of the pipeline's own.
    File(&'f File),
    /// Mapped: read in place, its pages let go behind the readers; with the file it maps,
    /// which the walker's probes read with `pread` ([`Src::copy`]).
    #[cfg(feature = "mmap")]
    Map(&'f MappedFile, Option<&'f File>),
}

impl<'f> Src<'f> {
    /// The file, when it is read rather than mapped.
    fn file(&self) -> Option<&'f File> {
        match *self {
            Src::File(f) => Some(f),
            #[cfg(feature = "mmap")]
            Src::Map(..) => None,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Src::File(f) => f.metadata().map_or(u64::MAX, |m| m.len()),
            #[cfg(feature = "mmap")]
            Src::Map(m, _) => m.len(),
        }
    }

    /// The bytes `start..end` when they can be had without a copy.
    fn slice(&self, start: u64, end: u64) -> Option<Bytes> {
        match self {
            Src::File(_) => {
                let _ = (start, end);
                None
            }
            #[cfg(feature = "mmap")]
            // a count of its own, not shared with other threads' slices
            Src::Map(m, _) => (start <= end.min(m.len())).then(|| m.slice(start, end)),
        }
    }

    /// `f` of the bytes `start..end` (up to the file's end) read into a buffer, for a mapped
    /// file whose file is at hand: the walker's probes look there, far ahead of the workers,
    /// without mapping pages that then had to be let go (each `madvise` that lets pages go
    /// interrupts the other cores running the process: about 100 of them on two threads for
    /// the bench's mixed file, one a probe). The buffer is the thread's, kept for its next
    /// read rather than made and zeroed for each (a quarter of the walker's time). `None`:
    /// look at the mapping, if any.
    fn copy_with<R>(&self, start: u64, end: u64, f: impl FnOnce(&Bytes) -> R) -> Option<R> {
        thread_local! {
            static READ: std::cell::RefCell<BytesMut> = std::cell::RefCell::default();
        }
        match *self {
            Src::File(_) => {
                let _ = (start, end, f);
                None
            }
            #[cfg(feature = "mmap")]
            Src::Map(m, Some(file)) => {
                let n = usize::try_from(end.min(m.len()).checked_sub(start)?).ok()?;
                READ.with(|kept| {
                    let mut buf = kept.take();
                    if buf.len() < n {
                        buf.resize(n, 0);
                    }
                    file.read_exact_at(&mut buf[..n], start).ok()?;
                    let buf = buf.freeze();
                    let r = f(&buf.slice(..n));
                    // (back unless `f` kept a piece of it)
                    if let Ok(buf) = buf.try_into_mut() {
                        kept.replace(buf);
                    }
                    Some(r)
                })
            }
            #[cfg(feature = "mmap")]
            Src::Map(_, None) => None,
        }
    }

    /// Maps the pages of `start..end` at once, before a worker reads them
    /// (`MappedFile::populate`).
    fn populate(&self, start: u64, end: u64) {
        match self {
            Src::File(_) => {
                let _ = (start, end);
            }
            #[cfg(feature = "mmap")]
            Src::Map(m, _) => m.populate(start, end),
        }
    }

    /// True where slices carry no reference count ([`MappedFile::leak`]).
    fn leaked(&self) -> bool {
        match self {
            Src::File(_) => false,
            #[cfg(feature = "mmap")]
            Src::Map(m, _) => m.is_leaked(),
        }
    }

    /// The whole mapping, when it lives until the process ends.
    fn forever(&self) -> Option<&'static [u8]> {
        match self {
            Src::File(_) => None,
            #[cfg(feature = "mmap")]
            Src::Map(m, _) => m.forever(),
        }
    }

    /// Lets the pages before `to` (from `*from` on) go, once they are `step` bytes or more.
    fn release(&self, from: &mut u64, to: u64, step: u64) {
        self.release_as(from, to, step, false);
    }

    /// As [`release`](Self::release), whole huge pages only (2 MiB, aligned): what the
    /// workers and the caller's thread let go as they go. Letting go of part of a huge page
    /// that the kernel mapped whole unmaps all of it (a file's huge page is not split), so
    /// that the worker of the batch beside faults it in again, and each release stops the
    /// other cores that run the process's threads (a TLB shootdown): at each batch's end
    /// (about 1 MiB), that was 600 releases on the bench's mixed file on two threads, 200
    /// now.
    fn release_whole(&self, from: &mut u64, to: u64, step: u64) {
        self.release_as(from, to, step, true);
    }

    fn release_as(&self, from: &mut u64, to: u64, step: u64, whole: bool) {
        self.release_settled(from, to, step, whole, || {});
    }

    /// As [`release_as`](Self::release_as), calling `settle` first when pages go (a reader
    /// whose checksum still holds bytes before `to` sums them, so that it does not read them
    /// again once they went).
    fn release_settled(
        &self,
        from: &mut u64,
        to: u64,
        step: u64,
        whole: bool,
        settle: impl FnOnce(),
    ) {
        match self {
            Src::File(_) => {
                let _ = (from, to, step, whole, settle);
            }
            #[cfg(feature = "mmap")]
            Src::Map(m, _) => m.release_behind(from, to, step, whole, settle),
        }
    }
}

/// Where a batch lies and what a decoder resumed there needs to know.
#[derive(Debug, Clone)]
struct Span {
    start: u64,
    end: u64,
    db: u64,
    version: u32,
    flavor: Flavor,
    /// The batch's bytes when the walker still had them all in one buffer (else the worker
    /// reads them from the file).
    data: Option<Bytes>,
    /// A key of the batch needs a big duplicate table ([`Decoder::big_tables`]): the batch
    /// is decoded only in its turn, when every batch before it was taken, so that one such
    /// table is held at a time whatever the number of threads.
    big: bool,
    /// The batch is the one record at `start`, a big one: it ends where that record does
    /// (`end` is the file's end, where the record may end at the latest).
    one_record: bool,
    /// `start` and `db` are the speculating walker's guess ([`Pipeline::walk_ahead`]), and
    /// so is `end`: the batch ends at the first record boundary at or past it (`u64::MAX`:
    /// at the EOF). The caller's thread gives its items out only if the batch before it
    /// ended where it starts, in its database.
    spec: bool,
    /// The walker's generation the batch was cut in: batches of an older one were cut after
    /// a wrong guess and are dropped.
    generation: u64,
}

impl Span {
    /// The bytes a speculative batch was cut for (up to the file's end), for
    /// [`Gate::queued`]; 0 for a walked one.
    fn queued_bytes(&self, len: u64) -> u64 {
        if self.spec {
            self.end.min(len).saturating_sub(self.start)
        } else {
            0
        }
    }
}

/// Whether a batch checks its big collections for duplicates beside its decoder, on a
/// thread of their own ([`Checker`]), rather than in its decoder as one decoder does. Beside
/// is faster for the batch (the check is about half of decoding such a collection), but
/// costs more in all (the members' hashes handed over, and a check that cannot overlap its
/// cache misses with decoding: 15 ms more of CPU for the bench's 2,000,000-field hash). A
/// big batch decoded ahead of its turn ([`Pipeline::big_first`], `ahead`) while the other
/// workers have at least as many bytes queued as it has (`others`, `own`) runs beside them
/// for its whole length anyway: it checks in its decoder.
fn checks_beside(ahead: bool, own: u64, others: u64) -> bool {
    !(ahead && others >= own)
}

/// The items of one batch of whole records, decoded as they are read from the file (an
/// iterator of `Result<Item>`; it ends at the batch's end or at its first error).
#[derive(Debug)]
pub struct Batch<'f> {
    file: Src<'f>,
    span: Span,
    dec: Decoder,
    buf: BytesMut,
    /// The batch's bytes, when the walker handed them over.
    mem: Option<Bytes>,
    read_to: u64,
    done: bool,
    /// The mapped file's pages before this were let go.
    released: u64,
    /// Whether its pages are let go whole huge pages at a time ([`Src::release_whole`]),
    /// leaving those at its edges to the caller's thread: where at most [`WHOLE_WINDOW`]
    /// batches are in flight, so that what stays is bounded; else page by page, as far as the
    /// decoder got (with `check`'s window of 65,536 the workers of eight threads ran far ahead
    /// of a caller's thread waiting for a big key, and left 2 MiB a batch: 71 MiB at peak).
    whole_pages: bool,
    /// Where the decoder got, for the parts handed over on the way.
    at: &'f AtomicU64,
    /// The duplicate check of the batch's big collections, beside its decoder (made at the
    /// first such collection).
    check: Option<Checker>,
    /// Items (and the error) decoded after members not checked yet: each with the number of
    /// steps that must be checked first ([`Decoder::deferred_issued`]) and where the decoder
    /// was when it came.
    held: VecDeque<(u64, Result<Item>, u64)>,
    /// Where the decoder was when the item handed out last came: while items wait, the input
    /// before this is what was handed out (the decoder may be some steps further on).
    item_at: u64,
    /// Steps checked without a duplicate.
    cleared: u64,
    /// Collections whose check went partial, counted by the check beside the decoder.
    partial: u64,
    /// Nothing more comes from the decoder.
    ended: bool,
    config: Config,
    /// A speculative batch's end as the walker guessed it ([`Span::spec`]): it ends at the
    /// first record boundary at or past this.
    cut: Option<u64>,
    /// A speculative batch's place in file order: it waits for its turn there before a
    /// collection that needs a big duplicate table, and stops once its generation is old.
    turn: Option<Turn<'f>>,
    /// The EOF item, when the batch reached it (speculative batches only).
    eof: Option<Item>,
    /// The batch's first error.
    failed: Option<Error>,
    /// The batch's generation is old: it stopped.
    stale: bool,
    /// The batch holds the one big table allowed before its turn ([`Pipeline::big_first`]).
    holds_ahead: bool,
    /// Its pipeline's shared checks, where its big collections' check goes
    /// ([`Checker::Shared`]); without it (a batch on its own) the check runs on its thread.
    helpers: Option<Arc<Helpers>>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.holds_ahead {
            // its table goes with it
            self.check = None;
            if let Some(t) = self.turn {
                t.gate.release_ahead();
            }
        }
    }
}

/// Where a speculative batch stands in file order.
#[derive(Debug, Clone, Copy)]
struct Turn<'f> {
    gate: &'f Gate,
    idx: u64,
    generation: u64,
    /// The batch may hold a big table before its turn when no other batch does
    /// ([`Pipeline::big_first`]).
    ahead: bool,
}

/// How a batch ended, for the caller's thread: where, in which database, and the checksum
/// of its bytes (speculative batches; the caller's thread checks that they follow on, and
/// combines their checksums).
#[derive(Debug, Default)]
struct Tail {
    end: u64,
    db: u64,
    crc: u64,
    /// The bytes `crc` covers (up to the EOF opcode's, not its checksum's).
    crc_len: u64,
    eof: Option<Item>,
    /// The EOF's checksum when it is to be checked, with the error to give if the file's
    /// bytes do not have it.
    sum: Option<(u64, Error)>,
    failed: Option<Error>,
}

/// Steps of a big collection a batch's decoder may be ahead of their duplicate check: the
/// check, the decoder and the caller's thread rendering the collection share the cores, and
/// a lead of a few milliseconds (a step of small members is decoded in well under one)
/// keeps the decoder busy while another thread runs the check. (Measured when the check had
/// a thread of its own: with 4, the decoder of the bench's 2,000,000-field hash waited
/// 24-65 ms for its check, while the other core idled; with 8, `jsonl --threads 2` of the
/// whole file took 0.61-0.66 s instead of 0.63-0.69, for 2-4 MiB more peak RSS; 32 steps
/// and 4 MiB changed nothing but peak RSS, 11 MiB more.)
const AHEAD: u64 = 8;

/// The input the steps ahead may have read: past it, the decoder waits once more than
/// [`AHEAD_LEAST`] steps wait (what held steps keep of the file, whatever their members' size).
const AHEAD_BYTES: u64 = 1 << 20;

/// Steps the decoder may be ahead whatever their size.
const AHEAD_LEAST: u64 = 2;

/// The duplicate check of a batch's big collections ([`MemberCheck`]): such a check is a
/// cache miss a member, about half of what decoding the collection costs.
#[derive(Debug)]
enum Checker {
    /// On the batch's thread, as the steps come (a batch outside a pipeline).
    Here {
        check: MemberCheck,
        done: VecDeque<Checked>,
    },
    /// Run by whichever thread has time for it: the caller's thread while it waits for
    /// results ([`Helpers::help`]), a worker whose part waits for room, and the batch's own
    /// thread when the others are behind ([`SHARED_BEHIND`]) or when it needs an outcome.
    /// (A thread of its own beside the decoder and the caller's thread made three busy
    /// threads on two cores: at each wake-up one of them waited for a core while the other
    /// core idled, and the bench's big hash was printed at 1.5 cores.)
    Shared {
        shared: Arc<SharedCheck>,
        helpers: Arc<Helpers>,
    },
}

/// A [`Checker::Shared`]: the steps to check, their outcomes, and the check itself, which one
/// thread at a time runs (the steps in order: a step is taken from the queue only under the
/// check's lock).
#[derive(Debug)]
struct SharedCheck {
    /// Steps not taken yet, and outcomes not taken yet.
    queue: Mutex<(VecDeque<Deferred>, VecDeque<Checked>)>,
    check: Mutex<MemberCheck>,
}

impl SharedCheck {
    /// Runs the oldest step waiting, if any, with `check` (locked by the caller): true when
    /// it ran one.
    fn run_one(&self, check: &mut MemberCheck) -> bool {
        let Some(msg) = self.queue.lock().ok().and_then(|mut q| q.0.pop_front()) else {
            return false;
        };
        let out = check.take(msg);
        if let (Some(c), Ok(mut q)) = (out, self.queue.lock()) {
            q.1.push_back(c);
        }
        true
    }

    /// The oldest outcome not taken yet.
    fn outcome(&self) -> Option<Checked> {
        self.queue.lock().ok()?.1.pop_front()
    }
}

/// The shared duplicate checks of a pipeline's batches ([`Checker::Shared`]), for the
/// threads that wait to run them meanwhile.
#[derive(Debug)]
struct Helpers {
    checks: Mutex<Vec<Arc<SharedCheck>>>,
    /// How many `checks` holds, read without its lock: the caller's thread waits in short
    /// turns while there are any.
    count: AtomicU64,
    /// The caller's thread, which waits for results parked ([`recv_helping`]): woken by
    /// each result ([`ToCaller`]) and by a check shared meanwhile.
    caller: std::thread::Thread,
}

impl Helpers {
    /// Helpers whose caller's thread is this one.
    fn new() -> Self {
        Self {
            checks: Mutex::default(),
            count: AtomicU64::new(0),
            caller: std::thread::current(),
        }
    }

    fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Runs a step of a registered check that no other thread is running: true when it ran
    /// one.
    fn help(&self) -> bool {
        if !self.active() {
            return false;
        }
        // each check is tried outside the list's lock (a step takes a while), taken from it
        // one at a time rather than copying the list at each call
        (0..)
            .map_while(|i| self.checks.lock().ok()?.get(i).cloned())
            .any(|c| {
                c.check
                    .try_lock()
                    .is_ok_and(|mut check| c.run_one(&mut check))
            })
    }
}

/// Steps of a shared check that may wait for another thread before the batch's own thread
/// runs the oldest itself. (With 1 the worker ran most of the check and the caller's thread
/// idled; the default lead of [`AHEAD`] steps left it all to the caller's thread.)
const SHARED_BEHIND: usize = 2;

/// How long the caller's thread waits for a result before it looks again for a step to
/// check, while some batch's check is shared.
const HELP_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// Waits for `rx`'s next message, running steps of the batches' shared duplicate checks
/// meanwhile; `None` once every sender is gone. On `helpers`' caller's thread only: it
/// sleeps parked, and the senders ([`ToCaller`]) and a check shared meanwhile
/// ([`Checker::shared`]) wake it. (Waiting in the channel's own `recv`, it could not be woken
/// for a check shared meanwhile and had to look again every millisecond: with that and the
/// walker woken at each batch taken ([`Gate::wait_restart`]), `check --threads 2` of the
/// bench's mixed file switched threads 524 times a run, 289 without, and took 0.0967 s
/// rather than 0.0949, medians of 21 alternated runs.)
fn recv_helping<M>(rx: &mpsc::Receiver<M>, helpers: &Helpers) -> Option<M> {
    debug_assert_eq!(std::thread::current().id(), helpers.caller.id());
    loop {
        match rx.try_recv() {
            Ok(m) => return Some(m),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if helpers.help() {
            continue;
        }
        // (a woken thread that finds nothing sleeps again; a wake-up that came before it
        // slept ends its sleep at once)
        if helpers.active() {
            // a step to check comes without a wake-up
            std::thread::park_timeout(HELP_POLL);
        } else {
            std::thread::park();
        }
    }
}

/// A sender to the caller's thread, which waits for its messages parked
/// ([`recv_helping`]): each message wakes it, and so does the sender's end, once the
/// channel saw it. A batch's results go a few at a time ([`ToCaller::sync_channel`]), or
/// (a batch that may be decoded ahead of its turn, [`Pipeline::big_first`]) all of them.
struct ToCaller<M> {
    tx: Option<CallerTx<M>>,
    caller: std::thread::Thread,
}

enum CallerTx<M> {
    Some(mpsc::SyncSender<M>),
    All(mpsc::Sender<M>),
}

impl<M> ToCaller<M> {
    /// An unbounded channel to `helpers`' caller's thread.
    fn channel(helpers: &Helpers) -> (Self, mpsc::Receiver<M>) {
        let (tx, rx) = mpsc::channel();
        let caller = helpers.caller.clone();
        let tx = Some(CallerTx::All(tx));
        (Self { tx, caller }, rx)
    }

    /// A channel to `helpers`' caller's thread that holds `room` messages.
    fn sync_channel(helpers: &Helpers, room: usize) -> (Self, mpsc::Receiver<M>) {
        let (tx, rx) = mpsc::sync_channel(room);
        let caller = helpers.caller.clone();
        let tx = Some(CallerTx::Some(tx));
        (Self { tx, caller }, rx)
    }

    /// Sends `m` (waiting for room); `Err` when the caller's thread dropped its end.
    fn send(&self, m: M) -> std::result::Result<(), ()> {
        let sent = match &self.tx {
            Some(CallerTx::Some(tx)) => tx.send(m).map_err(drop),
            Some(CallerTx::All(tx)) => tx.send(m).map_err(drop),
            None => Err(()),
        };
        self.caller.unpark();
        sent
    }

    /// As [`send`](Self::send), running steps of the shared duplicate checks while the
    /// caller's thread has no room for the message. (A caller's thread that dropped its end
    /// wants no more.)
    fn send_helping(&self, mut m: M, helpers: &Helpers) {
        if let Some(CallerTx::Some(tx)) = &self.tx {
            while helpers.active() {
                match tx.try_send(m) {
                    Ok(()) => {
                        self.caller.unpark();
                        return;
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => return,
                    Err(mpsc::TrySendError::Full(back)) => m = back,
                }
                if !helpers.help() {
                    break;
                }
            }
        }
        let _ = self.send(m);
    }
}

impl<M> Clone for ToCaller<M> {
    fn clone(&self) -> Self {
        let tx = self.tx.as_ref().map(|tx| match tx {
            CallerTx::Some(tx) => CallerTx::Some(tx.clone()),
            CallerTx::All(tx) => CallerTx::All(tx.clone()),
        });
        let caller = self.caller.clone();
        Self { tx, caller }
    }
}

impl<M> Drop for ToCaller<M> {
    fn drop(&mut self) {
        // (gone first, so that the woken thread finds the channel closed if it was the last)
        drop(self.tx.take());
        self.caller.unpark();
    }
}

impl Checker {
    /// A check on the batch's thread.
    fn here(config: &Config) -> Self {
        Self::Here {
            check: MemberCheck::new(config),
            done: VecDeque::new(),
        }
    }

    /// A check that the threads of `helpers`' pipeline run as they have time.
    fn shared(config: &Config, helpers: Arc<Helpers>) -> Self {
        let shared = Arc::new(SharedCheck {
            queue: Mutex::new((VecDeque::new(), VecDeque::new())),
            check: Mutex::new(MemberCheck::new(config)),
        });
        if let Ok(mut c) = helpers.checks.lock() {
            c.push(shared.clone());
            helpers.count.fetch_add(1, Ordering::Relaxed);
        }
        // (the caller's thread may be waiting for a result: it helps from now on)
        helpers.caller.unpark();
        Self::Shared { shared, helpers }
    }

    fn send(&mut self, msg: Deferred) {
        match self {
            Self::Here { check, done } => done.extend(check.take(msg)),
            Self::Shared { shared, .. } => {
                let waiting = shared.queue.lock().map_or(0, |mut q| {
                    q.0.push_back(msg);
                    q.0.len()
                });
                // the others are behind: this thread runs the oldest step itself
                if waiting > SHARED_BEHIND {
                    if let Ok(mut check) = shared.check.try_lock() {
                        shared.run_one(&mut check);
                    }
                }
            }
        }
    }

    /// The next step's outcome, checked here if no other thread did or does; `None` when
    /// there is none to wait for (or a thread failed while it ran the check).
    fn recv(&mut self) -> Option<Checked> {
        match self {
            Self::Here { done, .. } => done.pop_front(),
            Self::Shared { shared, .. } => loop {
                if let Some(c) = shared.outcome() {
                    return Some(c);
                }
                // (another thread running the step holds the lock: its outcome is there
                // once this thread has it)
                let mut check = shared.check.lock().ok()?;
                if let Some(c) = shared.outcome() {
                    return Some(c);
                }
                if !shared.run_one(&mut check) {
                    return None;
                }
            },
        }
    }

    /// An outcome another thread found already, without waiting.
    fn try_recv(&mut self) -> Option<Checked> {
        match self {
            Self::Here { .. } => None,
            Self::Shared { shared, .. } => shared.outcome(),
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Self::Shared { shared, helpers } = self {
            if let Ok(mut c) = helpers.checks.lock() {
                c.retain(|x| !Arc::ptr_eq(x, shared));
                helpers.count.fetch_sub(1, Ordering::Relaxed);
            }
            // its table goes before the next batch's check may make one (once a thread
            // still running one of its steps is done)
            if let Ok(mut check) = shared.check.lock() {
                check.release();
            }
        }
    }
}

impl<'f> Batch<'f> {
    /// A batch of `span`, its big collections' duplicate checks beside its decoder when
    /// `beside` ([`checks_beside`]).
    fn new(file: Src<'f>, mut span: Span, config: Config, at: &'f AtomicU64, beside: bool) -> Self {
        let cut = span.spec.then_some(span.end);
        if span.spec {
            // it may end past the guess: up to the file's end
            span.end = file.len();
        }
        // a mapped file is decoded a window at a time, for its pages to be let go behind
        // (a speculative batch's decoder gets no input past its guessed end until it is
        // there: it ends there when a record does)
        let window_end = span
            .end
            .min(span.start.saturating_add(RELEASE / 2))
            .min(cut.unwrap_or(u64::MAX));
        let (mem, read_to) = match file.slice(span.start, window_end) {
            Some(m) => {
                file.populate(span.start, window_end);
                (Some(m), window_end)
            }
            None => match span.data.take() {
                Some(m) => (Some(m), span.end),
                None => (None, span.start),
            },
        };
        span.data = None;
        let mut dec = Decoder::resume(config, span.version, span.flavor, span.db, span.start)
            .input_within(file.forever());
        if beside {
            dec.defer_member_checks();
        }
        if cut.is_some() {
            dec.sum_from_here();
            dec.pause_at_big_tables();
        }
        Self {
            cut,
            turn: None,
            eof: None,
            failed: None,
            stale: false,
            holds_ahead: false,
            helpers: None,
            file,
            at,
            released: span.start,
            whole_pages: false,
            dec,
            check: None,
            held: VecDeque::new(),
            item_at: span.start,
            cleared: 0,
            partial: 0,
            ended: false,
            config,
            read_to,
            span,
            buf: BytesMut::new(),
            mem,
            done: false,
        }
    }

    /// The file offset of the batch's first byte.
    pub fn start(&self) -> u64 {
        self.span.start
    }

    /// The file offset just past the batch (for a batch of one big record, known once its
    /// items were all taken).
    pub fn end(&self) -> u64 {
        match self.cut {
            Some(_) if self.done => self.dec.offset(),
            Some(cut) => cut.min(self.span.end),
            None if self.span.one_record && self.done => self.dec.offset(),
            None => self.span.end,
        }
    }

    /// The file's header (every batch's printer may need to know the version).
    pub fn header(&self) -> Item {
        Item::Header {
            flavor: self.span.flavor,
            version: self.span.version,
        }
    }

    /// The database the batch starts in.
    pub fn db(&self) -> u64 {
        self.span.db
    }

    /// Keys of the batch whose duplicate check stopped at the limit.
    pub fn partial_checks(&self) -> u64 {
        self.dec.partial_checks() + self.partial
    }
}

impl Batch<'_> {
    /// As [`Iterator::next`], with string keys (and checked keys, to a visitor that takes
    /// them) handed to `visit` ([`Decoder::decode_with`]): `None` at the batch's end, its
    /// first error, or when `visit` returned `Break` (the next call goes on after that key).
    pub fn next_with(&mut self, visit: &mut dyn Visitor) -> Option<Result<Item>> {
        self.next_inner(Some(visit))
    }

    /// True when keys come out checked but not built ([`Config::skip_values`]).
    pub fn skips_values(&self) -> bool {
        self.dec.skips_values()
    }

    fn next_inner(&mut self, visit: Visit<'_, '_>) -> Option<Result<Item>> {
        if self.stale
            || self
                .turn
                .is_some_and(|t| t.gate.generation() != t.generation)
        {
            // cut after a wrong guess: nobody takes its items
            self.stale = true;
            self.done = true;
            return None;
        }
        let got = self.next_checked(visit);
        if let Some(Err(e)) = &got {
            self.failed.get_or_insert_with(|| e.clone());
        }
        // a mapped file's pages up to where the decoder got: at the batch's end, and on the
        // way through a big one (the page the next batch starts in is the walker's to let go)
        let step = if got.is_none() || self.done {
            1
        } else {
            RELEASE / 2
        };
        self.release(self.dec.offset(), step);
        self.at.store(self.done_to(), Ordering::Relaxed);
        got
    }

    /// Lets the mapped file's pages go up to `to`, once they are `step` bytes or more; with
    /// a wide window, not those within [`LEAVE`] of where the caller's thread took the
    /// batches up to, which it lets go itself.
    fn release(&mut self, to: u64, step: u64) {
        if let Some(t) = self.turn.as_ref().filter(|_| !self.whole_pages) {
            if to
                <= t.gate
                    .taken_to
                    .load(Ordering::Relaxed)
                    .saturating_add(LEAVE)
            {
                return;
            }
        }
        // what the checksum holds in place is summed first: its pages are not read again
        let (file, dec) = (self.file, &mut self.dec);
        file.release_settled(&mut self.released, to, step, self.whole_pages, || {
            dec.sum_pending();
        });
    }

    /// The next item once the members decoded before it were checked for duplicates: the
    /// decoder goes on with a big collection while the check of its last steps runs beside
    /// it, up to [`AHEAD`] steps (fewer when they read much input) and never past the
    /// collection's end. A duplicate comes out as the decoder itself would give it: after the
    /// items of the steps before, instead of everything after.
    fn next_checked(&mut self, mut visit: Visit<'_, '_>) -> Option<Result<Item>> {
        loop {
            if self
                .held
                .front()
                .is_some_and(|(need, _, _)| *need <= self.cleared)
            {
                return self.pop_held();
            }
            let waiting = self.dec.deferred_issued() - self.cleared;
            // (a collection checked, not built, gives no item until its end)
            let wait = self.ended
                || waiting > AHEAD
                || waiting > AHEAD_LEAST
                    && self.dec.offset().saturating_sub(self.done_to()) > AHEAD_BYTES
                || !self.held.is_empty()
                    && (self.dec.at_record_boundary()
                        || self.held.back().is_some_and(|(_, i, _)| i.is_err()));
            // an outcome the caller's thread found already is taken at once, for the items
            // before it to go out ([`Checker::Shared`])
            let got = if waiting == 0 {
                None
            } else if wait {
                Some(self.check.as_mut().and_then(Checker::recv))
            } else {
                self.check.as_mut().and_then(Checker::try_recv).map(Some)
            };
            if let Some(mut got) = got {
                if let Some(c) = &mut got {
                    self.partial += u64::from(c.partial);
                    self.dec.recycle_step(std::mem::take(&mut c.spent));
                }
                match got.map(|c| c.dup) {
                    Some(None) => {
                        self.cleared += 1;
                        self.dec.deferred_cleared(self.cleared);
                        continue;
                    }
                    found => {
                        // a duplicate (or no check): nothing decoded after the steps before
                        // it comes out
                        let e = match found {
                            Some(Some(i)) => self.dec.deferred_dup(self.cleared, i),
                            _ => Error::io(
                                std::io::Error::other("the duplicate check's thread failed"),
                                self.dec.offset(),
                            ),
                        };
                        self.held.clear();
                        (self.done, self.ended) = (true, true);
                        self.check = None;
                        // nothing else comes out
                        self.cleared = self.dec.deferred_issued();
                        return Some(Err(e));
                    }
                }
            }
            if self.ended {
                return self.pop_held();
            }
            if self.dec.awaits_big_turn() {
                // a big duplicate table: once every batch before this one was taken, or
                // (big batches first) at once when no other batch holds one before its turn
                if let Some(t) = self.turn.filter(|_| !self.holds_ahead) {
                    match t.gate.wait_turn(t.idx, t.generation, t.ahead) {
                        Some(ahead) => self.holds_ahead = ahead,
                        None => {
                            self.stale = true;
                            self.done = true;
                            return None;
                        }
                    }
                }
                self.dec.grant_big_turn();
            }
            // string keys go to `visit` only when nothing waits before them
            let v = if self.held.is_empty() {
                visit.as_deref_mut()
            } else {
                None
            };
            let got = self.next_decoded(v);
            // the decoder stopped for its step's members to be taken
            let paused = got.is_none()
                && !self.done
                && (self.dec.has_deferred() || self.dec.awaits_big_turn());
            // (a drain made and dropped for each item was a twentieth of this function)
            if self.dec.has_deferred() {
                for m in self.dec.take_deferred() {
                    let check = self.check.get_or_insert_with(|| match &self.helpers {
                        Some(h) => Checker::shared(&self.config, h.clone()),
                        None => Checker::here(&self.config),
                    });
                    check.send(m);
                }
            }
            let Some(item) = got else {
                if paused {
                    continue;
                }
                if !self.done {
                    // `visit` asked to stop (nothing was held)
                    return None;
                }
                self.ended = true;
                continue;
            };
            let need = self.dec.deferred_issued();
            if need <= self.cleared && self.held.is_empty() {
                self.item_at = self.dec.offset();
                return Some(item);
            }
            self.ended |= item.is_err();
            self.held.push_back((need, item, self.dec.offset()));
        }
    }

    /// Where the input handed out ends: where the decoder is, unless items wait for their
    /// check; then where it was when the last one handed out came.
    fn done_to(&self) -> u64 {
        if self.held.is_empty() {
            self.dec.offset()
        } else {
            self.item_at
        }
    }

    /// The first held item, with where the decoder was when it came.
    fn pop_held(&mut self) -> Option<Result<Item>> {
        let (_, item, at) = self.held.pop_front()?;
        self.item_at = at;
        Some(item)
    }

    /// A speculative batch's decoder is at or past the batch's guessed end, at a record
    /// boundary: the batch ends there.
    fn at_cut(&self) -> bool {
        self.cut
            .is_some_and(|cut| self.dec.offset() >= cut && self.dec.at_record_boundary())
    }

    fn next_decoded(&mut self, mut visit: Visit<'_, '_>) -> Option<Result<Item>> {
        while !self.done {
            if self.span.one_record
                && self.dec.offset() > self.span.start
                && self.dec.at_record_boundary()
            {
                self.done = true;
                break;
            }
            if self.at_cut() {
                self.done = true;
                break;
            }
            let got = match &mut self.mem {
                Some(m) => self.dec.decode_inner(m, visit.as_deref_mut()),
                None => self.dec.decode_inner(&mut self.buf, visit.as_deref_mut()),
            };
            match got {
                Ok(None)
                    if self.dec.visit_broke()
                        || self.dec.has_deferred()
                        || self.dec.awaits_big_turn() =>
                {
                    return None;
                }
                // a walker's batch holds no EOF but the tail after its error may: its
                // checksum is the walker's to check; a speculative batch's EOF and checksum
                // go to the caller's thread
                Ok(Some(eof @ Item::Eof { .. })) => {
                    if self.cut.is_some() {
                        self.eof = Some(eof);
                    }
                    self.done = true;
                }
                Ok(Some(item)) => {
                    if matches!(item, Item::KeyStart(_) | Item::Chunk(_)) {
                        // a big key's pieces are often dropped on another thread (the
                        // caller's, which renders them): the next piece's elements get a
                        // reference count of their own, so that the two threads do not
                        // contend for one count, element by element (a leaked mapping's
                        // elements have none)
                        if let Some(m) = self.mem.as_mut().filter(|_| !self.file.leaked()) {
                            *m = Bytes::from_owner(std::mem::take(m));
                        }
                    }
                    return Some(Ok(item));
                }
                // it ends there (above), without a window past it (the next batch's pages,
                // mapped again for nothing)
                Ok(None) if self.at_cut() => {}
                Ok(None) if self.read_to >= self.span.end => {
                    self.done = true;
                    // a speculative batch at the file's end was to end with its EOF
                    if !self.dec.is_done() && (self.cut.is_some() || !self.dec.at_record_boundary())
                    {
                        return Some(Err(self.dec.truncated()));
                    }
                }
                Ok(None) if self.mem.is_some() => {
                    // mapped: the next window, from what the decoder has not taken yet
                    let left = self.mem.as_ref().map_or(0, |m| m.len() as u64);
                    let from = self.read_to - left;
                    let to = self.read_to.saturating_add(RELEASE / 2).min(self.span.end);
                    let to = match self.cut {
                        Some(cut) if self.read_to < cut => to.min(cut),
                        _ => to,
                    };
                    self.mem = self.file.slice(from, to);
                    // not past the guessed end: what lies there is the next batch's, whose
                    // worker may have let it go already (with `check`'s wide window, the pages
                    // mapped after each batch's end stayed until the caller's thread got
                    // there: 49 MiB of the mapping resident at four threads instead of 19)
                    self.file
                        .populate(self.read_to, self.cut.map_or(to, |cut| to.min(cut)));
                    self.read_to = to;
                    self.release(from, RELEASE / 2);
                }
                Ok(None) => {
                    let to = match self.cut {
                        Some(cut) if self.read_to < cut => self.span.end.min(cut),
                        _ => self.span.end,
                    };
                    let n = READ.min(to - self.read_to) as usize;
                    let old = self.buf.len();
                    self.buf.resize(old + n, 0);
                    // (a mapped file's batch is all in `mem`: only a file read gets here)
                    let read = match self.file.file() {
                        Some(f) => f.read_exact_at(&mut self.buf[old..], self.read_to),
                        None => Err(std::io::ErrorKind::Unsupported.into()),
                    };
                    if let Err(e) = read {
                        self.done = true;
                        return Some(Err(Error::io(e, self.read_to)));
                    }
                    self.read_to += n as u64;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Batch<'_> {
    /// Decodes what `work` left of a speculative batch (to find where it ends) and says how
    /// it ended.
    fn finish(&mut self) -> Tail {
        if self.cut.is_some() {
            while self.next().is_some() {}
        }
        let end = self.end();
        let eof = self.eof.take();
        // the EOF's checksum is not summed
        let unsummed = match eof {
            Some(Item::Eof { checksum: Some(_) }) => 8,
            _ => 0,
        };
        let sum = match eof {
            Some(Item::Eof {
                checksum: Some(stored),
            }) if self.config.verify_checksum && stored != 0 => {
                Some((stored, self.dec.checksum_error(stored, 0)))
            }
            _ => None,
        };
        Tail {
            end,
            sum,
            db: self.dec.db(),
            crc: self.dec.checksum_so_far(),
            crc_len: (end - self.span.start).saturating_sub(unsummed),
            eof,
            failed: self.failed.take(),
        }
    }
}

impl Iterator for Batch<'_> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Result<Item>> {
        self.next_inner(None)
    }
}

/// What the caller's thread gets, in file order.
#[derive(Debug)]
pub enum Part<T> {
    /// An item the walker decoded itself: the header first, the EOF last.
    Item(Item),
    /// What `work` made of (a part of) the next batch on a worker thread.
    Done(T),
}

/// Decodes one RDB file on several threads. One thread cuts the file into batches of whole
/// records: where it guesses records start in a mapped file ([`Pipeline::speculate`]), else
/// where it walked to ([`Decoder::walker`]). Workers decode the batches
/// ([`Decoder::resume`]), with every check, and run the caller's `work` on each ([`Batch`]);
/// the caller's thread gets the results in file order ([`Part`]), the checksum checked. At most [`Pipeline::window`] batches are in flight, and one batch at a time
/// decodes keys whose duplicate check needs a big table (more than 65,536 members), in its
/// turn: memory does not grow with the number of threads, whatever the keys' sizes.
///
/// ```
/// use std::ops::ControlFlow;
/// use rdb_format::{Item, Part, Pipeline};
/// # let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb"));
/// let mut keys = 0;
/// Pipeline::new(Default::default()).threads(2).run(
///     path,
///     // on a worker: count the batch's keys (`_spill` could hand over counts on the way)
///     |batch, _spill| batch.filter(|i| matches!(i, Ok(Item::Key(_)))).count(),
///     // here, in file order
///     |part| {
///         if let Part::Done(n) = part {
///             keys += n;
///         }
///         ControlFlow::Continue(())
///     },
/// )?;
/// assert!(keys > 20);
/// # Ok::<(), rdb_format::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    config: Config,
    threads: usize,
    batch: u64,
    window: usize,
    map: bool,
    leak_map: bool,
    speculate: bool,
    big_first: bool,
}

impl Pipeline {
    /// A pipeline whose workers decode with `config`, on as many threads as the machine has
    /// cores, in batches of 512 KiB.
    pub fn new(config: Config) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            config,
            threads,
            batch: 512 << 10,
            window: 0,
            map: cfg!(feature = "mmap"),
            leak_map: false,
            speculate: true,
            big_first: false,
        }
    }

    /// Whether the file is mapped into memory and read in place (feature `mmap`, on by
    /// default with it) rather than read into buffers: no copies, and no batch read twice.
    /// Its pages are let go behind the readers (`MappedFile::release`),
    /// so resident memory stays bounded. A file that cannot be mapped is read. Like every
    /// mapping, it requires that nobody cuts the file short while it is decoded (that ends
    /// the process with `SIGBUS`); turn it off where that may happen.
    pub fn map(&mut self, on: bool) -> &mut Self {
        self.map = on;
        self
    }

    /// Whether a mapped file's mapping is kept until the process ends (off by default; see
    /// `MappedFile::leak`): its values' items then carry no reference count, which the
    /// threads would contend for. For a program that decodes a few files and ends.
    pub fn leak_map(&mut self, on: bool) -> &mut Self {
        self.leak_map = on;
        self
    }

    /// Whether the batches of a mapped file are cut where its records are guessed to start
    /// (on by default): the walker then reads a few records at each cut instead of every
    /// record of the file, the workers keep the checksum, and a wrong guess (a place inside a
    /// value that decodes as records, a database selected on the way) costs the batches cut
    /// after it, decoded again. Off, or for a file that is read rather than mapped, the
    /// walker walks every record. The items are the same either way.
    pub fn speculate(&mut self, on: bool) -> &mut Self {
        self.speculate = on;
        self
    }

    /// Whether the batches of a mapped file that hold a big record are decoded first, ahead
    /// of their turn (off by default): a big key near the file's end then no longer keeps
    /// one thread busy after the others are done. For a `work` that hands nothing over on the
    /// way (it never calls its second argument): a batch decoded ahead of its turn keeps its
    /// results until the batches before it were taken, so parts handed over meanwhile are
    /// kept whole. Up to two big duplicate tables are held then, one before its turn. The
    /// walker runs up to [`Pipeline::window`] batches ahead (at most 4,096) to find them.
    pub fn big_first(&mut self, on: bool) -> &mut Self {
        self.big_first = on;
        self
    }

    /// Worker threads (at least 1; the walker has its own thread, and so has the duplicate
    /// check of a set, hash or sorted set of more than 65,536 members while one is decoded).
    pub fn threads(&mut self, n: usize) -> &mut Self {
        self.threads = n.max(1);
        self
    }

    /// Bytes of records per batch (the walker cuts at the first key that ends past it).
    pub fn batch_bytes(&mut self, n: u64) -> &mut Self {
        self.batch = n.max(1);
        self
    }

    /// Batches in flight at most (default: two per worker and two more, at most 6, since each
    /// holds its output until its turn, and where the page cache holds the file in large
    /// folios, the kernel maps up to two huge pages for each).
    pub fn window(&mut self, n: usize) -> &mut Self {
        self.window = n;
        self
    }

    /// Runs `work` on each batch on a worker thread and gives its results and the walker's
    /// items to `emit` in file order, on this thread: first what `work` handed to its second
    /// argument on the way, then what it returned. `emit` returning `Break` stops the run.
    /// Errors inside a batch come through its items, in their order; the error returned is a
    /// bad checksum, a thread that failed, or (after `emit` took a batch with an error and
    /// went on) the first error again: the first error in file order comes out first. A
    /// walked file's walker may find an error first (a file that ends early, a record that
    /// does not parse): what follows the last batch is then decoded as a batch of its own
    /// first, for its error to come out as an item, and the walker's is returned after it;
    /// there, a batch's error that the walker does not see (a value that does not validate)
    /// does not end the run.
    pub fn run<T, W, E>(&self, path: &Path, work: W, mut emit: E) -> Result<()>
    where
        T: Send,
        W: Fn(&mut Batch<'_>, &mut dyn FnMut(T)) -> T + Sync,
        E: FnMut(Part<T>) -> ControlFlow<()>,
    {
        // opened once: a pipe opened twice would wait for a second writer
        let opened = File::open(path).map_err(|e| Error::io(e, 0))?;
        // a file that cannot be mapped (a pipe, say) is read
        #[cfg(feature = "mmap")]
        let mapped = self
            .map
            .then(|| MappedFile::from_file(&opened).ok())
            .flatten()
            .map(|m| if self.leak_map { m.leak() } else { m });
        #[cfg(feature = "mmap")]
        let file = match &mapped {
            Some(m) => Src::Map(m, Some(&opened)),
            None => Src::File(&opened),
        };
        #[cfg(not(feature = "mmap"))]
        let file = Src::File(&opened);
        let window = if self.window == 0 {
            // (8 on four and eight threads held up to 65 MiB printing the bench's mixed
            // file where the kernel mapped it 2 MiB at a time, 6 about 5 MiB less, as fast on
            // eight threads and 2 % slower on four)
            (self.threads * 2 + 2).min(6)
        } else {
            self.window
        } as u64;
        let gate = Gate::default();
        let gate = &gate;
        let config = self.config;
        let work = &work;
        // big batches first: the walker runs far ahead to find them, and hands them over
        // beside the others, to be taken before them
        let queued = if self.big_first {
            (window as usize).clamp(self.threads * 2, 4096)
        } else {
            self.threads * 2
        };
        let jobs = Jobs::new(queued);
        let jobs = &jobs;
        let (big_tx, big_rx) = mpsc::channel::<(u64, Span)>();
        let big_tx = self.big_first.then_some(big_tx);
        let big_rx = Mutex::new(big_rx);
        let big_rx = &big_rx;
        let big_first = self.big_first;
        let helpers = Arc::new(Helpers::new());
        let helpers = &helpers;
        let (out_tx, out_rx) = ToCaller::<Numbered<T>>::channel(helpers);
        std::thread::scope(|s| {
            // named, for `top -H` and profilers
            let named = |name: &str| std::thread::Builder::new().name(name.into());
            let mut workers = 0;
            for _ in 0..self.threads {
                let out_tx = out_tx.clone();
                let spawned = named("rdb-worker").spawn_scoped(s, move || {
                    let _stop = StopOnPanic(gate, jobs);
                    loop {
                        let big = || big_rx.lock().ok().and_then(|rx| rx.try_recv().ok());
                        // (and whether it is a big batch handed over ahead of its turn)
                        let (job, ahead) = match big() {
                            Some(job) => (job, true),
                            None => match jobs.recv(helpers) {
                                Some(Some(job)) => (job, false),
                                // a big batch was handed over (another worker may have
                                // taken it already)
                                Some(None) => match big() {
                                    Some(job) => (job, true),
                                    None => continue,
                                },
                                None => return,
                            },
                        };
                        let (idx, span) = job;
                        let own = span.queued_bytes(file.len());
                        let others = gate
                            .queued
                            .fetch_sub(own, Ordering::Relaxed)
                            .saturating_sub(own);
                        let generation = span.generation;
                        if span.spec && gate.generation() != generation {
                            // cut after a wrong guess: nobody takes it
                            continue;
                        }
                        let spec = span.spec.then_some((span.start, span.db));
                        // the batch's results go through a channel of their own, read in turn
                        // (a batch decoded ahead of its turn keeps them all)
                        let (tx, rx) = if big_first {
                            ToCaller::<Handed<T>>::channel(helpers)
                        } else {
                            ToCaller::<Handed<T>>::sync_channel(helpers, PARTS)
                        };
                        if out_tx
                            .send((generation, idx, Msg::Parts(rx, spec)))
                            .is_err()
                        {
                            return;
                        }
                        // no batch before this one waits: the caller's thread gets to it
                        if span.big && !gate.wait_window(idx, 1, 0) {
                            return;
                        }
                        // where the batch's decoder got: what was handed over before lies
                        // before it
                        let at = AtomicU64::new(span.start);
                        let beside = checks_beside(ahead, own, others);
                        let mut batch = Batch::new(file, span, config, &at, beside);
                        batch.whole_pages = window <= WHOLE_WINDOW;
                        if beside {
                            batch.helpers = Some(helpers.clone());
                        }
                        if spec.is_some() {
                            batch.turn = Some(Turn {
                                gate,
                                idx,
                                generation,
                                ahead: big_first,
                            });
                        }
                        let mut spill = |t: T| {
                            tx.send_helping((t, None, at.load(Ordering::Relaxed)), helpers);
                        };
                        let t = work(&mut batch, &mut spill);
                        let tail = batch.finish();
                        let end = batch.end();
                        // (a table held before its turn goes before the batch is handed over)
                        drop(batch);
                        let _ = tx.send((t, Some(Box::new(tail)), end));
                    }
                });
                workers += usize::from(spawned.is_ok());
            }
            let no_thread = || {
                Err(Error::io(
                    std::io::Error::other("no thread could be started for the pipeline"),
                    0,
                ))
            };
            if workers == 0 {
                return no_thread();
            }
            let walker = *self;
            let jobs_tx = JobsTx(jobs);
            let spawned = named("rdb-walker").spawn_scoped(s, move || {
                walker.walk_ahead(file, window, gate, (jobs_tx, big_tx), out_tx);
            });
            if spawned.is_err() {
                // its channels' ends went with it: the workers end
                return no_thread();
            }
            // results in file order
            let mut waiting: BTreeMap<u64, Msg<T>> = BTreeMap::new();
            // a mapped file's pages before this were let go by this thread, with a wide
            // window [`LEAVE`] bytes at a time
            let mut released = 0u64;
            let caller_step = if window <= WHOLE_WINDOW {
                RELEASE / 2
            } else {
                LEAVE
            };
            let mut next = 0u64;
            // a speculating walker's guesses: the generation given out, where the next batch
            // must start and in which database, and the checksum of the file up to there
            let mut generation = 0u64;
            let mut expect: Option<(u64, u64)> = None;
            let mut crc = 0u64;
            // (stops the other threads however this one leaves: they waited forever for a
            // caller's `emit` that had panicked)
            let stop = StopOnDrop(gate);
            let result = 'run: loop {
                let Some((g, idx, msg)) = recv_helping(&out_rx, helpers) else {
                    break Err(Error::io(
                        std::io::Error::other("a pipeline thread ended early"),
                        0,
                    ));
                };
                if g != generation {
                    // cut after a wrong guess
                    continue;
                }
                waiting.insert(idx, msg);
                while let Some(msg) = waiting.remove(&next) {
                    let flow = match msg {
                        Msg::Item(item) => emit(Part::Item(item)),
                        Msg::Begin { at, sum } => {
                            (expect, crc) = (Some((at, 0)), sum);
                            ControlFlow::Continue(())
                        }
                        Msg::Parts(_, Some(start)) if expect != Some(start) => {
                            #[cfg(test)]
                            tests::RESTARTS.with(|r| r.set(r.get() + 1));
                            // the batch before ended elsewhere (or in another database): the
                            // walker cuts the file again from there, and what it cut since
                            // is dropped
                            let Some((start, db)) = expect else {
                                break 'run Err(Error::io(
                                    std::io::Error::other("a batch came before the header"),
                                    0,
                                ));
                            };
                            generation += 1;
                            waiting.clear();
                            gate.restart(Restart {
                                generation,
                                idx: next,
                                start,
                                db,
                            });
                            break;
                        }
                        Msg::Parts(rx, spec) => {
                            let mut tail = None;
                            let mut flow = ControlFlow::Continue(());
                            // where the pages of the batch were let go from its start last
                            let mut again = spec.map_or(u64::MAX, |(start, _)| start);
                            while let Some((t, last, at)) = recv_helping(&rx, helpers) {
                                tail = last;
                                flow = emit(Part::Done(t));
                                // what `emit` read of a mapped file (a big key's pieces,
                                // rendered here) was mapped again after its worker let it go;
                                // in a big batch, every 4 MiB from the huge page the batch
                                // starts in (the batches before it are done): a piece handed
                                // after another may lie before where the decoder was when the
                                // other was handed, and the pages it mapped again behind this
                                // thread's releases stayed (up to 10 MiB of the bench's big
                                // hash; at every part, 90 more releases a run, each a TLB
                                // shootdown)
                                if let Some((start, _)) = spec {
                                    if at.saturating_sub(again) > RELEASE {
                                        released = released.min(start / HUGE * HUGE);
                                        again = at;
                                    }
                                }
                                file.release_whole(&mut released, at, caller_step);
                                if flow.is_break() {
                                    break;
                                }
                            }
                            let Some(tail) = tail.filter(|_| flow.is_continue()) else {
                                if flow.is_continue() {
                                    // the worker ended without its batch's last part (it
                                    // panicked): nothing after the hole may be written as if
                                    // it were whole
                                    break 'run Err(Error::io(
                                        std::io::Error::other("a decoding thread failed"),
                                        0,
                                    ));
                                }
                                break 'run Ok(());
                            };
                            if spec.is_some() {
                                let tail = *tail;
                                if let Some(e) = tail.failed {
                                    // where the next batch starts is not known
                                    break 'run Err(e);
                                }
                                crc = crate::crc64_combine(crc, tail.crc, tail.crc_len);
                                expect = Some((tail.end, tail.db));
                                gate.db.store(tail.db, Ordering::Relaxed);
                                gate.taken_to.store(tail.end, Ordering::Relaxed);
                                file.release_whole(&mut released, tail.end, caller_step);
                                if let Some(eof) = tail.eof {
                                    if let Some((stored, e)) = tail.sum {
                                        if stored != crc {
                                            break 'run Err(e.with_actual_checksum(crc));
                                        }
                                    }
                                    let _ = emit(Part::Item(eof));
                                    break 'run Ok(());
                                }
                            }
                            flow
                        }
                        Msg::End(r) => break 'run r,
                    };
                    next += 1;
                    gate.advance(next);
                    if flow.is_break() {
                        break 'run Ok(());
                    }
                }
            };
            drop(stop);
            drop(out_rx);
            result
        })
    }

    /// The walker of a mapped file: it guesses where batches start rather than walk every
    /// record, so that no thread reads the whole file twice. A batch ends at the first record
    /// boundary at or past its guessed end ([`Span::spec`]); the next one starts two records
    /// after the first place past that guess from which [`PROBE_RECORDS`] records walk
    /// ([`Pipeline::probe`]), in the database the last batch taken ended in. The
    /// caller's thread gives a batch out only once the one before it ended where it starts,
    /// in its database; where it did not (a false start inside a value, a database changed
    /// on the way), what was cut after it is dropped and the walker cuts again from where
    /// the batch before ended. The checksum is kept by the workers, each of its batch's
    /// bytes, and combined in file order by the caller's thread. A file read rather than
    /// mapped, or whose header does not decode, is walked ([`Pipeline::walk`]).
    fn walk_ahead<T>(
        &self,
        file: Src<'_>,
        window: u64,
        gate: &Gate,
        (jobs, big): (JobsTx<'_>, Option<mpsc::Sender<(u64, Span)>>),
        out: ToCaller<Numbered<T>>,
    ) {
        let len = file.len();
        let header = match file.slice(0, len.min(64)) {
            Some(mut head) if self.speculate => {
                let mut dec = Decoder::with_config(self.config);
                match dec.decode(&mut head) {
                    Ok(Some(Item::Header { version, flavor })) => {
                        Some((version, flavor, dec.offset()))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((version, flavor, at)) = header else {
            return self.walk(file, window, gate, jobs, out);
        };
        let sum = file.slice(0, at).map_or(0, |h| crate::crc64(&h));
        let header = Item::Header { version, flavor };
        if out.send((0, 0, Msg::Item(header))).is_err()
            || out.send((0, 1, Msg::Begin { at, sum })).is_err()
        {
            return;
        }
        let (mut generation, mut idx) = (0u64, 2u64);
        // where the next batch starts (`None`: the last one was cut), in which database
        let (mut start, mut db) = (Some(at), 0u64);
        loop {
            let restart = match start {
                _ if gate.generation() != generation => gate.take_restart(),
                Some(_) => None,
                // the last batch was cut: it or a wrong guess before it ends the run
                None => gate.wait_restart(generation),
            };
            if let Some(r) = restart {
                (generation, idx, start, db) = (r.generation, r.idx, Some(r.start), r.db);
            }
            if gate.stopped() {
                return;
            }
            let Some(from) = start else { continue };
            let (end, far) = self.probe(file, from, version, flavor);
            let span = Span {
                start: from,
                end: end.unwrap_or(u64::MAX),
                db,
                version,
                flavor,
                data: None,
                big: false,
                one_record: false,
                spec: true,
                generation,
            };
            if !gate.wait_window(idx, window, generation) {
                // stopped, or cut again from elsewhere
                continue;
            }
            // (counted before a worker can take it)
            gate.queued
                .fetch_add(span.queued_bytes(file.len()), Ordering::Relaxed);
            let sent = match &big {
                // (with word in line with the others, for a worker waiting there)
                Some(big) if far => {
                    let sent = big.send((idx, span)).is_ok();
                    if sent {
                        jobs.send(None);
                    }
                    sent
                }
                _ => {
                    jobs.send(Some((idx, span)));
                    true
                }
            };
            if !sent {
                return;
            }
            idx += 1;
            start = end;
            db = gate.db.load(Ordering::Relaxed);
        }
    }

    /// Where the next batch after one starting at `from` may start, and whether a big record
    /// lies in between. First looked for [`Pipeline::batch_bytes`] past `from`: the first
    /// place in the [`PROBE_SCAN`] bytes there from which [`PROBE_RECORDS`] records (or the
    /// records up to the EOF) walk, and then decode with every check, within [`PROBE_BYTES`].
    /// Where there is none (a big record), the records from `from` on are walked
    /// ([`Decoder::walker`]: lengths read, strings skipped) to the first record boundary past
    /// that place; where that fails too (`from` was a wrong guess), looked for further on,
    /// ever further. `None`: the batch ends at the EOF.
    fn probe(&self, file: Src<'_>, from: u64, version: u32, flavor: Flavor) -> (Option<u64>, bool) {
        let len = file.len();
        let first = from.saturating_add(self.batch);
        if first >= len {
            return (None, false);
        }
        if let Some(at) = self.probe_at(file, first, version, flavor, self.big_first) {
            return (Some(at), false);
        }
        // a big record: walked to its end where that is near, else looked for past where
        // the walk got (the batch's worker finds its end)
        let mut target = match self.walk_to(file, from, first, version, flavor) {
            Walked::To(end) => return (end, true),
            Walked::Far(at) => at,
            Walked::Failed => first,
        };
        let mut gap = self.batch;
        while target < len {
            gap = gap.saturating_mul(2).clamp(PROBE_SCAN, PROBE_GAP);
            let inside = target;
            target = target.saturating_add(gap);
            // (inside a big record, ahead of its worker: the pages read go at once)
            if let Some(at) = self.probe_at(file, target, version, flavor, true) {
                return (
                    Some(self.nearer(file, (inside, target, at), version, flavor)),
                    true,
                );
            }
        }
        (None, true)
    }

    /// A place nearer a big record's end than `at`, the place found at `target` where none
    /// was found at `inside` (in the record): halfway between them is looked at, until they
    /// are [`NEAR_END`] apart. The big record's batch ends there rather than up to
    /// [`PROBE_GAP`] past the record (3.6 MB past the bench's big hash, which its worker
    /// decoded alone at the end while the other waited for the caller's thread to take the
    /// hash: about 7 ms of a core idle in `jsonl --threads 2`). Not with
    /// [`Pipeline::big_first`].
    fn nearer(
        &self,
        file: Src<'_>,
        (mut inside, mut target, mut at): (u64, u64, u64),
        version: u32,
        flavor: Flavor,
    ) -> u64 {
        // (with big batches first, the big batch waits for its end to be known, and a batch
        // longer than its record only leaves less to the other workers)
        if self.big_first {
            return at;
        }
        while target - inside > NEAR_END {
            let mid = inside + (target - inside) / 2;
            match self.probe_at(file, mid, version, flavor, true) {
                Some(p) if p < at => (target, at) = (mid, p),
                // (what `mid` found is no nearer: the record ends before it)
                Some(_) => target = mid,
                None => inside = mid,
            }
        }
        at
    }

    /// The first place in the [`PROBE_SCAN`] bytes from `target` from which records walk and
    /// decode ([`Pipeline::probe`]), two records on. Where `let_go` (far ahead of the
    /// workers), the bytes are read into a buffer ([`Src::copy_with`]) where the file is at
    /// hand, first [`PROBE_FIRST`] of them and all only where those do not tell; else looked
    /// at in the mapping and its pages let go after; else looked at in the mapping, whose
    /// pages its workers then find mapped.
    fn probe_at(
        &self,
        file: Src<'_>,
        target: u64,
        version: u32,
        flavor: Flavor,
        let_go: bool,
    ) -> Option<u64> {
        let len = file.len();
        let window_end = target.saturating_add(PROBE_SCAN + PROBE_BYTES).min(len);
        // places before `from` were looked at and are none
        let mut from = 0;
        let mut scan = |bytes: &Bytes| {
            self.scan(
                bytes,
                &mut from,
                target,
                (len, window_end),
                (version, flavor),
            )
        };
        if let_go {
            let first = target.saturating_add(PROBE_FIRST).min(window_end);
            // (pages the workers soon read are mapped for them instead)
            match file.copy_with(target, first, &mut scan) {
                Some(Found::At(at)) => return Some(at),
                Some(Found::Not) => return None,
                Some(Found::Short) => {
                    if let Some(found) = file.copy_with(target, window_end, &mut scan) {
                        return found.at();
                    }
                }
                None => {}
            }
        }
        let bytes = file.slice(target, window_end)?;
        let found = scan(&bytes).at();
        if let_go {
            let mut from = target;
            file.release(&mut from, window_end, 1);
        }
        found
    }

    /// [`probe_at`](Self::probe_at)'s look at `bytes`, read from `target` on, at the places
    /// from `*from` on: where they end before `window_end` (in a file of `len` bytes),
    /// [`Found::Short`] when the place at `*from` might be one with more of them (the places
    /// before it are none, whatever follows).
    fn scan(
        &self,
        bytes: &Bytes,
        from: &mut usize,
        target: u64,
        (len, window_end): (u64, u64),
        (version, flavor): (u32, Flavor),
    ) -> Found {
        let whole = target + bytes.len() as u64 >= window_end;
        let scan = bytes.len().min(PROBE_SCAN as usize);
        for i in *from..scan {
            *from = i;
            match plausible_record(&bytes[i..]) {
                Some(true) => {}
                Some(false) => continue,
                None if whole => continue,
                None => return Found::Short,
            }
            if !crate::decoder::may_start_records(&bytes[i..], self.config.lenient) {
                continue;
            }
            let at = target + i as u64;
            // walked first (cheap to fail), then decoded with every check (a place in a
            // value that walks, in text, holds no valid listpack or number)
            let walked = records_from(
                Decoder::resume_walker(self.config, version, flavor),
                bytes.slice(i..),
                len - at,
            );
            let checked = match walked {
                Found::At(_) => {
                    let mut config = self.config;
                    config.skip_values(true);
                    records_from(
                        Decoder::resume_probe(config, version, flavor),
                        bytes.slice(i..),
                        len - at,
                    )
                }
                other => other,
            };
            match checked {
                // a false start (inside a value) that decodes at all mostly runs into the
                // file's own records within its first: where its second one ends is
                // a record boundary either way
                Found::At(second) => return Found::At(at + second),
                Found::Short if !whole => return Found::Short,
                Found::Short | Found::Not => {}
            }
        }
        Found::Not
    }

    /// The first record boundary at or past `target`, walking the records from `from` on,
    /// a collection's members up to [`WALK_PAST`] bytes past `target`, and not on from a
    /// block's end where [`WALK_LEAST`] or more of them read say that its end is more than
    /// that again further on. The pages walked are let go behind.
    fn walk_to(
        &self,
        file: Src<'_>,
        from: u64,
        target: u64,
        version: u32,
        flavor: Flavor,
    ) -> Walked {
        let len = file.len();
        let mut dec = Decoder::resume_walker(self.config, version, flavor);
        let (mut buf, mut read_to, mut released) = (Bytes::new(), from, from);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(Item::Eof { .. })) => return Walked::To(None),
                Ok(Some(_)) => {
                    let at = from + dec.offset();
                    if dec.at_record_boundary() && at >= target {
                        return Walked::To(Some(at));
                    }
                }
                Ok(None) if read_to >= len => return Walked::Failed,
                Ok(None) => {
                    let pos = from + dec.offset();
                    let past = target.saturating_add(WALK_PAST);
                    // (a collection that, by its members so far, ends well past that is not
                    // walked on: 6 MiB of a hash of 2,000,000 fields were, 3-7 ms of the
                    // walker's while the workers decode)
                    let ends_far = || {
                        dec.members_left_bytes(WALK_LEAST)
                            .is_some_and(|left| pos.saturating_add(left) > past + WALK_PAST)
                    };
                    if dec.in_members() && (pos >= past || ends_far()) {
                        // the pages walked go too: the batch's worker is far behind
                        file.release(&mut released, pos, 1);
                        return Walked::Far(pos);
                    }
                    read_to = read_to.saturating_add(BLOCK).min(len);
                    let Some(next) = file.slice(pos, read_to) else {
                        return Walked::Failed;
                    };
                    buf = next;
                    file.release(&mut released, pos.saturating_sub(RELEASE), RELEASE / 2);
                }
                Err(_) => return Walked::Failed,
            }
        }
    }

    /// The walker: cuts the file into batches at key boundaries and hands them out, in
    /// order, numbered as the caller's thread takes them.
    fn walk<T>(
        &self,
        file: Src<'_>,
        window: u64,
        gate: &Gate,
        jobs: JobsTx<'_>,
        out: ToCaller<Numbered<T>>,
    ) {
        let len = file.len();
        // a mapped file's pages before this were let go
        let mut released = 0u64;
        // batches whose bytes the walker hands over rather than have their worker read them
        // again (each keeps at most a 3 MiB block of the walker's alive; a re-read costs the
        // kernel's copy a second time)
        let hold = window.min(6);
        let mut dec = Decoder::walker(self.config);
        dec.walker_run(self.batch.min(1 << 20) as usize);
        // what was read from `held_from` on, kept for the workers; `buf`: its unread part
        let (mut held_bytes, mut held_from) = (Bytes::new(), 0u64);
        let mut buf = Bytes::new();
        let (mut read_to, mut ended) = (0u64, false);
        let mut idx = 0u64;
        // the batch being gathered: where it starts, its db
        let mut span = Span {
            start: 0,
            end: 0,
            db: 0,
            version: 0,
            flavor: Flavor::Redis,
            data: None,
            big: false,
            one_record: false,
            spec: false,
            generation: 0,
        };
        let mut db = 0u64;
        // big tables counted by the walker before the batch being gathered
        let mut big_before = 0u64;
        // the last record boundary the walker passed, and its big tables then
        let (mut boundary, mut big_at_boundary) = (0u64, 0u64);
        // a big record handed over as a batch of its own before the walker got to its end
        let mut open = false;
        // messages are numbered in file order; each waits until it is within the window
        let number = |idx: &mut u64| {
            let n = *idx;
            *idx += 1;
            gate.wait_window(n, window, 0).then_some(n)
        };
        let send =
            |msg: Msg<T>, idx: &mut u64| number(idx).is_some_and(|n| out.send((0, n, msg)).is_ok());
        let send_batch = |mut span: Span, idx: &mut u64| {
            if span.end <= span.start {
                return true;
            }
            let Some(n) = number(idx) else {
                return false;
            };
            // far ahead of the caller, a batch is read again from the file rather than kept
            // in memory meanwhile
            if n >= gate.taken().saturating_add(hold) {
                span.data = None;
            }
            jobs.send(Some((n, span)));
            true
        };
        loop {
            let got = if ended {
                dec.decode_eof(&mut buf)
            } else {
                dec.decode(&mut buf)
            };
            let item = match got {
                Ok(Some(item)) => item,
                Ok(None) if ended => return, // an EOF item ended the file
                Ok(None) => {
                    let pos = dec.offset();
                    if !open && !dec.at_record_boundary() && pos - boundary >= OPEN_RECORD {
                        // a big record: the batch before it, then the record, decoded as the
                        // walker goes on walking it (it may wait for its turn, below)
                        span.end = boundary;
                        span.data = held(&held_bytes, held_from, &span);
                        span.big = big_at_boundary > big_before;
                        let record = Span {
                            start: boundary,
                            end: len,
                            db,
                            data: None,
                            big: dec.big_tables() > big_at_boundary,
                            one_record: true,
                            ..span.clone()
                        };
                        if !send_batch(span.clone(), &mut idx) || !send_batch(record, &mut idx) {
                            return;
                        }
                        open = true;
                    }
                    // the next block, after the batch gathered so far (unless it is big: then
                    // its worker reads it from the file) and what is not decoded yet
                    let keep = if span.start >= held_from && pos - span.start <= CARRY {
                        span.start
                    } else {
                        pos
                    };
                    let to = read_to.saturating_add(BLOCK).min(len);
                    if let Some(all) = file.slice(0, to) {
                        // mapped: the next block is there already; the pages far behind
                        // the walker go (a worker still on them maps them again)
                        ended = to == read_to;
                        read_to = to;
                        held_bytes = all;
                        held_from = 0;
                        file.release(&mut released, pos.saturating_sub(RELEASE), RELEASE / 2);
                    } else {
                        let carried = &held_bytes[(keep - held_from) as usize..];
                        let mut next = Vec::with_capacity(carried.len() + BLOCK as usize);
                        next.extend_from_slice(carried);
                        let Some(f) = file.file() else { return };
                        match f.take(BLOCK).read_to_end(&mut next) {
                            Ok(n) => {
                                read_to += n as u64;
                                ended = n == 0;
                            }
                            Err(e) => {
                                send(Msg::End(Err(Error::io(e, read_to))), &mut idx);
                                return;
                            }
                        }
                        held_bytes = Bytes::from(next);
                        held_from = keep;
                    }
                    buf = held_bytes.slice((pos - held_from) as usize..);
                    continue;
                }
                Err(e) => {
                    // what follows the last batch is decoded in full in its turn: its first
                    // error is the one to report, as one decoder alone would (within a big
                    // record handed over, its batch does that)
                    if dec.version() > 0 && !open {
                        span.end = len;
                        span.data = None;
                        // not walked to its end: it may hold any key
                        span.big = true;
                        if !send_batch(span, &mut idx) {
                            return;
                        }
                    }
                    send(Msg::End(Err(e)), &mut idx);
                    return;
                }
            };
            match &item {
                Item::Header { version, flavor } => {
                    (span.version, span.flavor) = (*version, *flavor);
                    span.start = dec.offset();
                    boundary = span.start;
                    if !send(Msg::Item(item), &mut idx) {
                        return;
                    }
                    continue;
                }
                Item::Eof { checksum } => {
                    // the EOF opcode and its checksum end the last batch
                    span.end = dec.offset() - if checksum.is_some() { 9 } else { 1 };
                    span.data = held(&held_bytes, held_from, &span);
                    span.big = dec.big_tables() > big_before;
                    let _ = send_batch(span, &mut idx)
                        && send(Msg::Item(item), &mut idx)
                        && send(Msg::End(Ok(())), &mut idx);
                    return;
                }
                Item::SelectDb(d) => db = *d,
                _ => {}
            }
            if dec.at_record_boundary() {
                boundary = dec.offset();
                big_at_boundary = dec.big_tables();
                if open {
                    // the big record ended: the next batch starts after it
                    open = false;
                    span.start = boundary;
                    span.db = db;
                    big_before = big_at_boundary;
                    continue;
                }
                let after_key = matches!(item, Item::KeyChecked(_) | Item::Skipped { .. });
                if after_key && boundary - span.start >= self.batch {
                    span.end = boundary;
                    span.data = held(&held_bytes, held_from, &span);
                    span.big = dec.big_tables() > big_before;
                    big_before = dec.big_tables();
                    if !send_batch(span.clone(), &mut idx) {
                        return;
                    }
                    span.start = boundary;
                    span.db = db;
                    span.data = None;
                }
            }
        }
    }
}

/// Where the [`PROBE_SKIP`]th record (or, the first, a run of records decoded at once) ends
/// when [`PROBE_RECORDS`] records decode from the start of `src` with `dec` (a decoder resumed
/// at offset 0), or the records up to the EOF, `left` bytes from there being all the file has;
/// [`Found::Not`] if they do not, [`Found::Short`] if `src` ends before they can tell.
fn records_from(mut dec: Decoder, mut src: Bytes, left: u64) -> Found {
    let (mut records, mut second) = (0, None);
    loop {
        match dec.decode(&mut src) {
            // (a listpack ends with the EOF opcode's byte)
            Ok(Some(Item::Eof { .. })) => {
                return match dec.offset() == left {
                    true => Found::At(second.unwrap_or(0)),
                    false => Found::Not,
                };
            }
            // runs of zeros (in a stream's entries, say) walk as records of empty keys, which
            // real files next to never hold
            Ok(Some(Item::KeyChecked(h))) if h.key.is_empty() => return Found::Not,
            // (a run of small records is decoded at once, its items come after)
            Ok(Some(_)) => {
                records += 1;
                if dec.at_record_boundary() {
                    if records >= PROBE_SKIP && second.is_none() {
                        second = Some(dec.offset());
                    }
                    if let Some(second) = second.filter(|_| records >= PROBE_RECORDS) {
                        return Found::At(second);
                    }
                }
            }
            // (the bytes ended first)
            Ok(None) => return Found::Short,
            Err(_) => return Found::Not,
        }
    }
}

/// What a look for a place records start at found: the place; none; or none in the bytes
/// it had, which end before it could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    At(u64),
    Not,
    Short,
}

impl Found {
    /// The place, if one was found.
    fn at(self) -> Option<u64> {
        match self {
            Self::At(at) => Some(at),
            Self::Not | Self::Short => None,
        }
    }
}

/// Whether `b` may start a record, as far as its first bytes tell: a value type followed by a
/// key's length that fits in `b`, or an opcode (the probe decodes what passes). `None`: `b`
/// ends before it can tell.
fn plausible_record(b: &[u8]) -> Option<bool> {
    let (Some(&ty), Some(&len)) = (b.first(), b.get(1)) else {
        return None;
    };
    if ty >= 0xF0 {
        return Some(true);
    }
    if ty > 30 {
        return Some(false);
    }
    let (head, n) = match len >> 6 {
        0 => (1, u64::from(len & 0x3F)),
        1 => (
            2,
            u64::from(len & 0x3F) << 8 | u64::from(*b.get(2).unwrap_or(&0)),
        ),
        2 if len == 0x80 => (
            5,
            b.get(2..6).map_or(u64::MAX, |x| {
                u64::from(u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
            }),
        ),
        // a key kept as an integer, or compressed (its lengths follow)
        3 if len <= 0xC3 => return Some(true),
        _ => return Some(false),
    };
    // the key and at least a byte of its value
    (n.saturating_add(head + 2) <= b.len() as u64).then_some(true)
}

/// The bytes of `span` when `held_bytes` (read from `held_from` on) holds them all.
fn held(held_bytes: &Bytes, held_from: u64, span: &Span) -> Option<Bytes> {
    let from = span.start.checked_sub(held_from)? as usize;
    let to = (span.end - held_from) as usize;
    (to <= held_bytes.len()).then(|| held_bytes.slice(from..to))
}

/// A part of a batch's results: how the batch ended, with its last part; and the file offset
/// its batch's decoder had reached (nothing in it comes from after that).
type Handed<T> = (T, Option<Box<Tail>>, u64);

/// A batch for a worker, numbered in file order; `None`: one was handed over beside the
/// others, to be taken first ([`Pipeline::big_first`]).
type Job = Option<(u64, Span)>;

/// The batches cut by the walker, waiting for a worker: at most `room` of them (the walker
/// waits for room). Its queue grows as batches come: an `mpsc::sync_channel` made room for
/// them all at once, 4,096 for `check` (its window, [`Pipeline::big_first`]), and the
/// caller's thread wrote 400 KiB of it before the walker started, about 100 page faults. And a
/// worker that finds no batch waits on its own, not for another worker: with the `mpsc`
/// receiver shared under a lock, a worker that took a batch woke the next one up only for it to
/// wait again in the receiver.
struct Jobs {
    state: Mutex<JobsState>,
    /// a batch was put, or the walker is done
    put: Condvar,
    /// a batch was taken
    taken: Condvar,
    room: usize,
}

#[derive(Default)]
struct JobsState {
    queue: VecDeque<Job>,
    /// the walker is done: no batch comes after those queued
    closed: bool,
    /// workers waiting for a batch, and whether the walker waits for room (no wake-up is
    /// sent where nobody waits)
    idle: usize,
    full: bool,
}

impl Jobs {
    fn new(room: usize) -> Self {
        Self {
            state: Mutex::default(),
            put: Condvar::new(),
            taken: Condvar::new(),
            room: room.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobsState> {
        // (nothing panics under the lock: a poisoned one holds a consistent state)
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a batch once there is room.
    fn send(&self, job: Job) {
        let mut state = self.lock();
        while state.queue.len() >= self.room {
            state.full = true;
            state = self
                .taken
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.full = false;
        state.queue.push_back(job);
        let wake = state.idle > 0;
        drop(state);
        if wake {
            self.put.notify_one();
        }
    }

    /// Drops the batches queued and wakes the walker if it waits for room (the workers
    /// that would take them are gone: [`StopOnPanic`]).
    fn abandon(&self) {
        self.lock().queue.clear();
        self.taken.notify_all();
    }

    /// The next batch; `None` once the walker is done and every batch was taken. While none
    /// waits, the worker runs steps of the shared duplicate checks ([`Checker::Shared`]) as
    /// the caller's thread does when it waits: a worker idle because the window is full
    /// waits for the caller's thread, which prints a big collection that the other worker
    /// decodes. Helping there takes part of the check off both: about 1 %, within this
    /// VM's spread (`dump --format jsonl --threads 2` of the bench's mixed file, medians of
    /// 16 alternated runs: 0.381 s → 0.375 in one hour, 0.404 → 0.400 in another; `resp`,
    /// with the step vectors given back ([`Decoder::recycle_step`]), 0.301 → 0.298 over 270).
    /// (A worker that began to wait before the check was registered is not woken for it.)
    fn recv(&self, helpers: &Helpers) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                let wake = state.full;
                drop(state);
                if wake {
                    self.taken.notify_one();
                }
                return Some(job);
            }
            if state.closed {
                return None;
            }
            let helping = helpers.active();
            if helping {
                drop(state);
                let helped = helpers.help();
                state = self.lock();
                // (or a batch came meanwhile)
                if helped || !state.queue.is_empty() || state.closed {
                    continue;
                }
            }
            // a batch wakes it up; a step waits for its next look
            state.idle += 1;
            state = if helping {
                self.put
                    .wait_timeout(state, HELP_POLL)
                    .map_or_else(|e| e.into_inner().0, |(s, _)| s)
            } else {
                self.put
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            };
            state.idle -= 1;
        }
    }
}

/// The walker's end of [`Jobs`]: the workers end once it is dropped (however the walker
/// ends, or with the walker's thread that could not be started).
struct JobsTx<'a>(&'a Jobs);

impl JobsTx<'_> {
    fn send(&self, job: Job) {
        self.0.send(job);
    }
}

impl Drop for JobsTx<'_> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.put.notify_all();
    }
}

/// A message to the caller's thread: the walker's generation, its place in file order.
type Numbered<T> = (u64, u64, Msg<T>);

/// What reaches the caller's thread, numbered in file order.
enum Msg<T> {
    Item(Item),
    /// A speculating walker's start: where the first batch starts, and the checksum of the
    /// bytes before it (the header's).
    Begin {
        at: u64,
        sum: u64,
    },
    /// A batch's results, as its worker hands them over; for a speculative one, where it
    /// starts and its database.
    Parts(mpsc::Receiver<Handed<T>>, Option<(u64, u64)>),
    End(Result<()>),
}

/// Where a speculating walker starts again after a wrong guess: at the end of the last batch
/// given out, in its database, numbering on from its index, in a new generation.
#[derive(Debug, Clone, Copy)]
struct Restart {
    generation: u64,
    idx: u64,
    start: u64,
    db: u64,
}

/// How far the caller's thread got, for the walker to stay at most a window ahead; and, for a
/// speculating walker, the generation of its guesses and where to start again.
#[derive(Debug, Default)]
struct Gate {
    taken: Mutex<u64>,
    moved: Condvar,
    /// A restart was asked for, or the run stopped: what a walker done with the file waits
    /// for ([`Gate::wait_restart`]). (Waiting on `moved`, it was woken at each batch taken,
    /// about 70 times a run of `check --threads 2` of the bench's mixed file, each time
    /// taking a core from a worker.)
    restarted: Condvar,
    stopped: AtomicBool,
    generation: AtomicU64,
    restart: Mutex<Option<Restart>>,
    /// The database the last batch taken ended in: the walker's guess for the next ones.
    db: AtomicU64,
    /// A batch holds a big table before its turn ([`Pipeline::big_first`]).
    ahead: AtomicBool,
    /// Bytes of the speculative batches handed to the workers and not taken yet.
    queued: AtomicU64,
    /// Where the batches the caller's thread took end ([`LEAVE`]).
    taken_to: AtomicU64,
}

/// Stops its gate when dropped ([`Gate::stop`]).
struct StopOnDrop<'g>(&'g Gate);

/// Stops the pipeline when a worker's thread unwinds (a caller's `work` that panicked): the
/// batches it would have taken are dropped, and the walker and the other threads end, so
/// that the caller's thread, which waited for them, gets to the panic. (Without it, a panic
/// in a batch cut after a wrong guess left the walker cutting again for workers that were
/// gone, and the caller's thread waiting for their batches, forever.)
struct StopOnPanic<'g>(&'g Gate, &'g Jobs);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
            self.1.abandon();
        }
    }
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Gate {
    fn advance(&self, to: u64) {
        if let Ok(mut t) = self.taken.lock() {
            *t = to;
        }
        self.moved.notify_all();
    }

    fn taken(&self) -> u64 {
        self.taken.lock().map_or(u64::MAX, |t| *t)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.advance(u64::MAX);
        self.restarted.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The generation of the speculating walker's guesses (a walking walker's stays 0).
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Waits until `ready`, given what was taken, says so (under the lock the waiters share);
    /// `None` once stopped or once a generation newer than `generation` began.
    fn wait_for<R>(&self, generation: u64, mut ready: impl FnMut(u64) -> Option<R>) -> Option<R> {
        let mut t = self.taken.lock().ok()?;
        loop {
            if self.stopped() || self.generation() != generation {
                return None;
            }
            if let Some(r) = ready(*t) {
                return Some(r);
            }
            t = self.moved.wait(t).ok()?;
        }
    }

    /// Waits until message `idx` of `generation` is within `window` of what was taken; false
    /// once stopped or once a newer generation began.
    fn wait_window(&self, idx: u64, window: u64, generation: u64) -> bool {
        self.wait_for(generation, |t| {
            (idx < t.saturating_add(window)).then_some(())
        })
        .is_some()
    }

    /// Waits until every batch before `idx` was taken (`Some(false)`), or, if `ahead`, until
    /// no batch holds a big table before its turn (`Some(true)`: this one does now); `None`
    /// once stopped or once a generation newer than `generation` began.
    fn wait_turn(&self, idx: u64, generation: u64, ahead: bool) -> Option<bool> {
        self.wait_for(generation, |t| {
            if t >= idx {
                return Some(false);
            }
            let free = ahead
                && self
                    .ahead
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            free.then_some(true)
        })
    }

    /// The batch that held a big table before its turn let it go.
    fn release_ahead(&self) {
        // under the lock the waiters check it with, so that none misses it
        if let Ok(_t) = self.taken.lock() {
            self.ahead.store(false, Ordering::Release);
        }
        self.moved.notify_all();
    }

    /// Tells the walker to start again (the caller's thread found a wrong guess).
    fn restart(&self, r: Restart) {
        if let Ok(mut x) = self.restart.lock() {
            *x = Some(r);
        }
        // under the lock the waiters check it with, so that none misses it
        if let Ok(_t) = self.taken.lock() {
            self.generation.store(r.generation, Ordering::Release);
        }
        self.moved.notify_all();
        self.restarted.notify_all();
    }

    /// Where to start again, if the caller's thread asked for it since.
    fn take_restart(&self) -> Option<Restart> {
        self.restart.lock().ok()?.take()
    }

    /// Waits for a restart past `generation`; `None` once stopped.
    fn wait_restart(&self, generation: u64) -> Option<Restart> {
        let Ok(mut t) = self.taken.lock() else {
            return None;
        };
        while !self.stopped() && self.generation() == generation {
            t = self.restarted.wait(t).ok()?;
        }
        drop(t);
        if self.stopped() {
            return None;
        }
        self.take_restart()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Times the walker was told to cut again, by a pipeline run on this thread.
        pub(super) static RESTARTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A job numbered `n` for the [`Jobs`] tests.
    fn job(n: u64) -> Job {
        let span = Span {
            start: n,
            end: n + 1,
            ..whole_file(20, None)
        };
        Some((n, span))
    }

    #[test]
    fn jobs_go_out_once_each_in_order_and_the_workers_end_with_the_walker() {
        let jobs = Jobs::new(2);
        let got: Vec<Vec<u64>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while let Some(j) = jobs.recv(&Helpers::new()) {
                            mine.push(j.map_or(u64::MAX, |(n, _)| n));
                        }
                        mine
                    })
                })
                .collect();
            let tx = JobsTx(&jobs);
            for n in 0..1000 {
                tx.send(job(n));
            }
            tx.send(None);
            drop(tx);
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for mine in &got {
            assert!(mine.is_sorted(), "taken out of order: {mine:?}");
        }
        let mut all: Vec<u64> = got.concat();
        all.sort_unstable();
        let want: Vec<u64> = (0..1000).chain([u64::MAX]).collect();
        assert_eq!(all, want);
        // none is left to wait for a walker that is gone
        assert!(jobs.recv(&Helpers::new()).is_none());
    }

    #[test]
    fn the_walker_waits_for_room_and_no_room_is_made_before_it_is_needed() {
        let jobs = Jobs::new(4096);
        let tx = JobsTx(&jobs);
        tx.send(job(0));
        // (an `mpsc::sync_channel` wrote slots for all 4,096 at once)
        assert!(jobs.lock().queue.capacity() < 64);
        drop(tx);
        assert_eq!(
            jobs.recv(&Helpers::new()).flatten().map(|(n, _)| n),
            Some(0)
        );
        assert!(jobs.recv(&Helpers::new()).is_none());

        let jobs = Jobs::new(2);
        let sent = AtomicU64::new(0);
        std::thread::scope(|s| {
            let tx = JobsTx(&jobs);
            let (jobs, sent) = (&jobs, &sent);
            s.spawn(move || {
                for n in 0..3 {
                    tx.send(job(n));
                    sent.store(n + 1, Ordering::SeqCst);
                }
            });
            while sent.load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
            // the third waits for room
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(sent.load(Ordering::SeqCst), 2);
            assert_eq!(jobs.lock().queue.len(), 2);
            assert_eq!(
                jobs.recv(&Helpers::new()).flatten().map(|(n, _)| n),
                Some(0)
            );
            while sent.load(Ordering::SeqCst) < 3 {
                std::thread::yield_now();
            }
        });
        let left: Vec<_> = std::iter::from_fn(|| jobs.recv(&Helpers::new()))
            .map(|j| j.map(|(n, _)| n))
            .collect();
        assert_eq!(left, [Some(1), Some(2)]);
    }

    /// A worker that waits for a batch runs the steps of a shared duplicate check meanwhile,
    /// and still takes the batch that comes (or ends with the walker).
    #[test]
    fn a_worker_waiting_for_a_batch_runs_the_shared_checks_steps() {
        let helpers = Arc::new(Helpers::new());
        let mut check = Checker::shared(&Config::default(), helpers.clone());
        check.send(Deferred::Start(100_000));
        check.send(Deferred::Step((0..1_000u128).collect()));
        assert!(check.try_recv().is_none());
        // a step's outcome, once another thread ran it (`None` after ten seconds)
        let outcome = |check: &mut Checker| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Some(c) = check.try_recv() {
                    return Some(c);
                }
                if std::time::Instant::now() > until {
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        let jobs = Jobs::new(2);
        let got = std::thread::scope(|s| {
            // (dropped if an assertion fails: the worker ends rather than waiting forever)
            let tx = JobsTx(&jobs);
            let worker = s.spawn(|| jobs.recv(&helpers).flatten().map(|(n, _)| n));
            // the worker ran the step: its outcome is there without this thread running it
            assert_eq!(
                outcome(&mut check).map(|c| c.dup),
                Some(None),
                "the waiting worker ran no step"
            );
            // members 995..999 were in the step before
            check.send(Deferred::Step((995..2_000u128).collect()));
            assert_eq!(outcome(&mut check).map(|c| c.dup), Some(Some(0)));
            assert!(!worker.is_finished(), "no batch came yet");
            tx.send(job(7));
            worker.join().unwrap()
        });
        assert_eq!(got, Some(7));
        // and a worker ends with the walker while a check is still shared
        let jobs = Jobs::new(2);
        std::thread::scope(|s| {
            let worker = s.spawn(|| jobs.recv(&helpers).flatten().map(|(n, _)| n));
            drop(JobsTx(&jobs));
            assert_eq!(worker.join().unwrap(), None);
        });
        assert!(helpers.active());
        drop(check);
        assert!(!helpers.active());
    }

    /// Every item of the RDB file `bytes` as one decoder gives them, up to its first error.
    fn one_decoder(bytes: &[u8]) -> Vec<String> {
        let mut dec = Decoder::new();
        let mut src = Bytes::copy_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            match dec.decode_eof(&mut src) {
                Ok(Some(i)) => out.push(format!("{i:?}")),
                Ok(None) => return out,
                Err(e) => {
                    out.push(format!("error: {e}"));
                    return out;
                }
            }
        }
    }

    /// Every item of the RDB file `bytes` from a pipeline of `threads` in batches of `batch`
    /// bytes, up to its first error; and how often its walker was told to cut again.
    fn pipelined(bytes: &[u8], threads: usize, batch: u64, speculate: bool) -> (Vec<String>, u64) {
        let dir = test_support::temp_dir("rdb-speculate");
        let path = dir.join("f.rdb");
        std::fs::write(&path, bytes).unwrap();
        RESTARTS.with(|r| r.set(0));
        let mut out = Vec::new();
        let mut failed = false;
        let r = Pipeline::new(Config::default())
            .threads(threads)
            .batch_bytes(batch)
            .speculate(speculate)
            .run(
                &path,
                |b, _| b.map(|i| i.map(|i| format!("{i:?}"))).collect::<Vec<_>>(),
                |part| {
                    let items = match part {
                        Part::Item(i) => vec![Ok(format!("{i:?}"))],
                        Part::Done(items) => items,
                    };
                    for i in items {
                        match i {
                            Ok(i) => out.push(i),
                            Err(e) => {
                                out.push(format!("error: {e}"));
                                failed = true;
                                return ControlFlow::Break(());
                            }
                        }
                    }
                    ControlFlow::Continue(())
                },
            );
        if let Err(e) = r {
            assert!(!failed, "an error after the first");
            out.push(format!("error: {e}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
        (out, RESTARTS.with(std::cell::Cell::get))
    }

    /// An RDB 9 file of `n` string keys whose values are themselves string records, 40 each
    /// (every 500th, 20,000: more than a probe reads), across `dbs` databases; its checksum
    /// right, or `bad`.
    fn records_in_values(n: u32, dbs: u32, bad: bool) -> Vec<u8> {
        let mut f = b"REDIS0009".to_vec();
        let inner = |n: u32| -> Vec<u8> {
            (0..n)
                .flat_map(|i| {
                    let k = [b'a' + (i % 26) as u8, b'0' + (i % 10) as u8];
                    [&[0, 3][..], b"k", &k, &[5], b"value"].concat()
                })
                .collect()
        };
        let (small, big) = (inner(40), inner(20_000));
        for db in 0..dbs {
            f.extend([0xFE, db as u8]);
            for i in 0..n / dbs {
                let key = format!("key:{db}:{i}");
                f.push(0);
                f.push(key.len() as u8);
                f.extend_from_slice(key.as_bytes());
                let value = if i % 500 == 250 { &big } else { &small };
                f.push(0x80);
                f.extend((value.len() as u32).to_be_bytes());
                f.extend_from_slice(value);
            }
        }
        f.push(0xFF);
        let sum = crate::crc64(&f) ^ u64::from(bad);
        f.extend(sum.to_le_bytes());
        f
    }

    /// Places inside values that decode as records make the walker's guesses wrong: the
    /// batches cut after such a guess are dropped and cut again, and the items are still
    /// those of one decoder, at every batch size; so they are where a database is selected
    /// on the way, and where the file goes on after its EOF.
    // (only a mapped file's batches are cut where records are guessed to start)
    #[cfg(feature = "mmap")]
    #[test]
    fn wrong_guesses_are_cut_again_and_give_what_one_decoder_gives() {
        for (dbs, tail) in [(1, &b""[..]), (7, &b""[..]), (1, &b"\x00\x01a\x01b"[..])] {
            let mut f = records_in_values(3000, dbs, false);
            // (a tail after the EOF is not read)
            f.extend(tail.repeat(5000));
            let want = one_decoder(&f);
            assert!(
                !want.last().unwrap().starts_with("error"),
                "{:?}",
                want.last()
            );
            let mut restarts = 0;
            for (threads, batch) in [(2, 1), (2, 3000), (8, 20_000), (3, 1 << 20)] {
                let (got, r) = pipelined(&f, threads, batch, true);
                assert!(
                    got == want,
                    "{dbs} dbs at {threads} threads, batches of {batch}"
                );
                restarts += r;
                let (got, r) = pipelined(&f, threads, batch, false);
                assert!(
                    got == want,
                    "walked: {dbs} dbs at {threads} threads, {batch}"
                );
                assert_eq!(r, 0);
            }
            // the guesses were wrong at times, and right at others
            assert!(restarts > 0, "{dbs} dbs: no wrong guess");
        }
    }

    /// A caller's `work` that panics ends the run, the panic going on to the caller's thread,
    /// whatever batch it panicked in: one cut after a wrong guess included, whose results
    /// would have been dropped and its part of the file cut again, for workers that were gone.
    /// (That waited forever: the walker for workers to take its batches, the caller's thread
    /// for their results.)
    #[cfg(feature = "mmap")]
    #[test]
    fn a_panic_in_work_ends_the_run() {
        let f = records_in_values(3000, 1, false);
        let dir = test_support::temp_dir("rdb-panic");
        let path = dir.join("f.rdb");
        std::fs::write(&path, &f).unwrap();
        for (threads, batch) in [(1, 3000), (2, 1), (2, 3000), (3, 20_000), (8, 20_000)] {
            for after in [0, 1, 3] {
                let (done, ended) = mpsc::channel();
                let path = path.clone();
                std::thread::spawn(move || {
                    let seen = AtomicU64::new(0);
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        Pipeline::new(Config::default())
                            .threads(threads)
                            .batch_bytes(batch)
                            .run(
                                &path,
                                |b, _| {
                                    if seen.fetch_add(1, Ordering::Relaxed) >= after {
                                        panic!("work panics");
                                    }
                                    b.count()
                                },
                                |_| ControlFlow::Continue(()),
                            )
                    }));
                    let _ = done.send(r.is_err());
                });
                let panicked = ended.recv_timeout(std::time::Duration::from_secs(60));
                assert_eq!(
                    panicked,
                    Ok(true),
                    "{threads} threads, batches of {batch}, a panic after {after}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The workers' checksums of their batches, combined in file order, are the file's: a
    /// file whose EOF says otherwise fails as with one decoder, after every key.
    #[test]
    fn the_checksum_of_speculative_batches_is_the_files() {
        for bad in [false, true] {
            let f = records_in_values(3000, 2, bad);
            let want = one_decoder(&f);
            assert_eq!(want.last().unwrap().starts_with("error"), bad);
            for (threads, batch) in [(1, 1 << 20), (2, 3000), (8, 50_000)] {
                let (got, _) = pipelined(&f, threads, batch, true);
                assert!(
                    got == want,
                    "bad {bad} at {threads} threads, batches of {batch}"
                );
            }
        }
    }

    /// An RDB 9 file with a set of `n` members (hashtable encoding) between two strings;
    /// `dup`: the member at that index repeats the first one.
    fn set_file(n: u32, dup: Option<u32>) -> Vec<u8> {
        let mut f = b"REDIS0009\xfe\x00\x00\x01a\x01b\x02\x03set\x80".to_vec();
        f.extend(n.to_be_bytes());
        for i in 0..n {
            let m = if dup == Some(i) { 0 } else { i };
            let m = format!("m{m:07}");
            f.push(m.len() as u8);
            f.extend_from_slice(m.as_bytes());
        }
        f.extend_from_slice(b"\x00\x01c\x01d\xff");
        f.extend([0; 8]);
        f
    }

    /// A big batch decoded ahead of its turn ([`Pipeline::big_first`]) checks its big
    /// collections in its decoder while the other workers have at least its bytes queued
    /// ([`checks_beside`]): here 40,000 small keys wait while the one worker takes the batch
    /// of a set of 70,000 members at the end. A file that is that set alone keeps its check
    /// beside the decoder. The items are what one decoder gives either way.
    #[cfg(feature = "mmap")]
    #[test]
    fn a_big_batch_ahead_of_its_turn_checks_in_its_decoder_while_others_wait() {
        assert!(checks_beside(false, 100, 1_000));
        assert!(checks_beside(true, 1_000, 999));
        assert!(!checks_beside(true, 1_000, 1_000));
        let dir = test_support::temp_dir("rdb-inline-check");
        let set = set_file(70_000, None);
        // the same set after 40,000 keys of 60-byte values (2.8 MB against its 0.6 MB)
        let mut many = set[..11].to_vec();
        for i in 0..40_000u32 {
            let key = format!("k{i:06}");
            many.extend([0, key.len() as u8]);
            many.extend_from_slice(key.as_bytes());
            many.push(60);
            many.extend_from_slice(&[b'v'; 60]);
        }
        many.extend_from_slice(&set[11..]);
        for (bytes, beside) in [(set, true), (many, false)] {
            let path = dir.join("f.rdb");
            std::fs::write(&path, &bytes).unwrap();
            let want = one_decoder(&bytes);
            let slept = AtomicBool::new(false);
            let deferred = Mutex::new(Vec::new());
            let mut got = Vec::new();
            Pipeline::new(Config::default())
                .threads(1)
                .map(true)
                .batch_bytes(64 << 10)
                .window(1 << 16)
                .big_first(true)
                .run(
                    &path,
                    |b, _| {
                        // the one worker's first batch waits for the walker to hand over
                        // every other one
                        if !beside && !slept.swap(true, Ordering::Relaxed) {
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                        let mut items = Vec::new();
                        while let Some(i) = b.next() {
                            let i = i.unwrap();
                            if matches!(&i, Item::KeyStart(h) if &h.key[..] == b"set") {
                                deferred.lock().unwrap().push(b.dec.defers_member_checks());
                            }
                            items.push(format!("{i:?}"));
                        }
                        items
                    },
                    |part| {
                        match part {
                            Part::Item(i) => got.push(format!("{i:?}")),
                            Part::Done(items) => got.extend(items),
                        }
                        ControlFlow::Continue(())
                    },
                )
                .unwrap();
            assert_eq!(got, want, "the set after {} bytes", bytes.len() - 630_000);
            assert_eq!(*deferred.lock().unwrap(), [beside], "beside its decoder");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A speculative batch that reaches its guessed end at a record boundary ends there,
    /// without reading past it: with string keys visited (as `check` and the printers visit
    /// them), its decoder used to ask for more there, and the batch mapped a window of the next
    /// batch's pages (and, mapping windows at once, `Src::populate`, made them resident:
    /// with `check`'s wide window, 49 MiB of the bench's file at four threads, where the
    /// batches after were let go already).
    #[cfg(feature = "mmap")]
    #[test]
    fn a_batch_ends_at_its_guessed_end_without_reading_past_it() {
        let dir = test_support::temp_dir("rdb-batch-cut");
        let mut f = b"REDIS0009\xfe\x00".to_vec();
        let mut cut = 0;
        for i in 0..100_000u32 {
            f.extend([0, 12]);
            f.extend_from_slice(format!("key:{i:08}").as_bytes());
            f.push(60);
            f.extend(std::iter::repeat_n(b'v', 60));
            if cut == 0 && f.len() > 3 << 20 {
                cut = f.len() as u64;
            }
        }
        f.extend([0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
        let path = dir.join("f.rdb");
        std::fs::write(&path, &f).unwrap();
        let file = File::open(&path).unwrap();
        let map = MappedFile::from_file(&file).unwrap();
        let want = (cut - 11) / 75;
        // its guessed end at a boundary, then inside a record (the batch ends after it)
        for (end, ends) in [(cut, cut), (cut - 30, cut)] {
            for visit in [false, true] {
                let span = Span {
                    end,
                    spec: true,
                    big: false,
                    ..whole_file(f.len() as u64, None)
                };
                let at = AtomicU64::new(0);
                let src = Src::Map(&map, Some(&file));
                let mut batch = Batch::new(src, span, Config::default(), &at, true);
                let mut keys = 0;
                loop {
                    let got = if visit {
                        batch.next_with(&mut |_: &crate::StringRecord<'_>| {
                            keys += 1;
                            ControlFlow::Continue(())
                        })
                    } else {
                        batch.next()
                    };
                    match got {
                        Some(Ok(Item::Key(_))) => keys += 1,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => panic!("{e}"),
                        None => break,
                    }
                }
                assert_eq!(keys, want, "visited: {visit}");
                assert_eq!(batch.end(), ends, "visited: {visit}");
                if end == ends {
                    assert_eq!(batch.read_to, end, "visited: {visit}: read past its end");
                }
            }
        }
        drop(map);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `f` ended (the EOF opcode and the checksum), written to `dir`, opened and mapped.
    #[cfg(feature = "mmap")]
    fn ended_and_mapped(dir: &Path, f: &mut Vec<u8>) -> (File, MappedFile) {
        f.push(0xFF);
        f.extend(crate::crc64(f).to_le_bytes());
        let path = dir.join("f.rdb");
        std::fs::write(&path, &f).unwrap();
        let file = File::open(&path).unwrap();
        let map = MappedFile::from_file(&file).unwrap();
        (file, map)
    }

    /// A probe far ahead reads [`PROBE_FIRST`] bytes first, and all of its window only where
    /// those do not tell: it finds what a look at the whole window in the mapping finds, at
    /// every place of a file of strings of 10 B to 70 KiB, random bytes in which false starts
    /// abound. Some places need the whole window (the test checks that it reads it).
    #[cfg(feature = "mmap")]
    #[test]
    fn a_probe_that_reads_a_little_first_finds_what_one_that_reads_all_finds() {
        let dir = test_support::temp_dir("rdb-probe-first");
        let mut f = b"REDIS0009".to_vec();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..120u32 {
            let key = format!("k{i}");
            f.extend([0, key.len() as u8]);
            f.extend_from_slice(key.as_bytes());
            let n = [10u32, 300, 5_000, 20_000, 40_000, 70_000][i as usize % 6];
            f.push(0x80);
            f.extend(n.to_be_bytes());
            f.extend((0..n).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }));
        }
        let (file, map) = ended_and_mapped(&dir, &mut f);
        let pipeline = Pipeline::new(Config::default());
        let (read, mapped) = (Src::Map(&map, Some(&file)), Src::Map(&map, None));
        let len = f.len() as u64;
        let (mut short, mut found) = (0, 0);
        for target in (9..len).step_by(1_201) {
            let first = read.copy_with(target, target + PROBE_FIRST, |b| {
                let window_end = (target + PROBE_SCAN + PROBE_BYTES).min(len);
                let one = (9, Flavor::Redis);
                pipeline.scan(b, &mut 0, target, (len, window_end), one)
            });
            short += usize::from(first == Some(Found::Short));
            let at = pipeline.probe_at(read, target, 9, Flavor::Redis, true);
            let all = pipeline.probe_at(mapped, target, 9, Flavor::Redis, false);
            assert_eq!(at, all, "at {target}");
            found += usize::from(at.is_some());
        }
        assert!(short > 10 && found > 10, "{short} read all, {found} found");
    }

    /// The speculating walker walks a big collection to its end only where that end is near
    /// ([`WALK_PAST`]): a set of 600,000 members (5.4 MB) is handed over without it, its
    /// batch ending past a place found by a probe after it, while a set of 100,000 ends where
    /// the walk found its end, and so does a string of 6 MB (skipped whole). The items are
    /// what one decoder gives, with no guess cut again.
    #[cfg(feature = "mmap")]
    #[test]
    fn the_walker_walks_a_big_collection_only_where_its_end_is_near() {
        let dir = test_support::temp_dir("rdb-walk-past");
        // (a member is 9 bytes: 400,000 of them end 3.6 MB on, more than `WALK_PAST` past the
        // first probe but near enough to be walked to)
        for (n, walked) in [
            (100_000u32, true),
            (400_000, true),
            (600_000, false),
            (0, true),
        ] {
            // the set of `set_file` (or a string of 6 MB: `n` 0), then 1,500 keys of 4 KiB
            let mut f = set_file(n, None);
            f.truncate(f.len() - 14);
            if n == 0 {
                f.truncate(16);
                f.extend_from_slice(b"\x00\x03str\x80");
                f.extend(6_000_000u32.to_be_bytes());
                f.extend(std::iter::repeat_n(b's', 6_000_000));
            }
            let set_end = f.len() as u64;
            for i in 0..1500 {
                let key = format!("key:{i:05}");
                f.extend([0, key.len() as u8]);
                f.extend_from_slice(key.as_bytes());
                f.extend([0x50, 0x00]);
                f.extend(std::iter::repeat_n(b'v', 4096));
            }
            let (file, map) = ended_and_mapped(&dir, &mut f);
            let mut pipeline = Pipeline::new(Config::default());
            pipeline.batch_bytes(64 << 10);
            // from the set's record: the first probe is inside it
            let src = Src::Map(&map, Some(&file));
            let (end, far) = pipeline.probe(src, 16, 9, Flavor::Redis);
            // the probes past the first, read with `pread`, find what they find in the mapping
            let mapped = Src::Map(&map, None);
            assert_eq!(pipeline.probe(mapped, 16, 9, Flavor::Redis), (end, far));
            let len = f.len() as u64;
            for (a, b) in [
                (0, 10),
                (7, 70_000),
                (len - 100, len),
                (len - 5, len + 1000),
            ] {
                let copied = src.copy_with(a, b, Bytes::clone).expect("read");
                // (what a read before kept is not overwritten)
                let again = src.copy_with(0, 3, Bytes::clone);
                assert_eq!(again.as_deref(), Some(&b"RED"[..]));
                assert_eq!(Some(copied), mapped.slice(a, b.min(len)), "{a}..{b}");
            }
            assert!(mapped.copy_with(0, 10, Bytes::clone).is_none());
            assert!(far, "{n} members");
            // a set whose members so far say it ends far on is walked no further than the
            // first block's end, not to `WALK_PAST` past the probe
            let target = 16 + (64 << 10);
            match pipeline.walk_to(src, 16, target, 9, Flavor::Redis) {
                Walked::To(at) => assert!(walked && at == Some(set_end), "{n}: {at:?}"),
                Walked::Far(at) => assert!(!walked && at <= 16 + BLOCK, "{n}: {at}"),
                Walked::Failed => panic!("{n} members: the walk failed"),
            }
            let end = end.expect("a place after the set");
            if walked {
                assert_eq!(end, set_end, "{n} members: walked to the set's end");
            } else {
                // two records after the first place a probe found
                assert!(
                    end > set_end + 20,
                    "{n} members: {end}, the set ends at {set_end}"
                );
                // near the set's end, not where the probes ever further on found a place
                // (768 KiB past it without `nearer`): a place found within `NEAR_END`, two
                // records of 4 KiB on
                assert!(
                    end - set_end <= NEAR_END + PROBE_SCAN + 2 * 4200,
                    "{n} members: {end}, {} past the set's end",
                    end - set_end
                );
                assert!(end < f.len() as u64 - 9, "{n} members: {end}");
            }
            let want = one_decoder(&f);
            assert!(!want.last().unwrap().starts_with("error"));
            for threads in [1, 2] {
                let (got, restarts) = pipelined(&f, threads, 64 << 10, true);
                assert!(got == want, "{n} members, {threads} threads");
                assert_eq!(restarts, 0, "{n} members, {threads} threads");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A walker counts a big collection once, whatever pieces its input came in: one not all
    /// in the input when a run of records reached it used to count there too, and then again
    /// when it was walked, so that the batch before it waited its turn as if it held one.
    #[test]
    fn a_walker_counts_a_big_collection_once_whatever_the_pieces() {
        let f = set_file(70_000, None);
        for piece in [f.len(), 1000, 64] {
            let mut walker = Decoder::walker(Config::default());
            let mut buf = BytesMut::new();
            let mut before_set = None;
            for p in f.chunks(piece) {
                buf.extend_from_slice(p);
                while let Some(item) = walker.decode(&mut buf).unwrap() {
                    if let Item::KeyChecked(h) = &item {
                        if &h.key[..] == b"a" {
                            before_set = Some(walker.big_tables());
                        }
                    }
                }
            }
            assert!(walker.is_done());
            if piece < f.len() {
                // the string before the set came out before the set was walked
                assert_eq!(before_set, Some(0), "pieces of {piece}");
            }
            assert_eq!(walker.big_tables(), 1, "pieces of {piece}");
        }
    }

    /// The batch of a whole RDB 9 file of `len` bytes: after its header and database
    /// selection, before its EOF and checksum; with its bytes in `data` or read from the file.
    fn whole_file(len: u64, data: Option<Bytes>) -> Span {
        Span {
            start: 11,
            end: len - 9,
            db: 0,
            version: 9,
            flavor: Flavor::Redis,
            data,
            big: true,
            one_record: false,
            spec: false,
            generation: 0,
        }
    }

    /// Where a test batch's duplicate check runs.
    #[derive(Debug, Clone, Copy)]
    enum CheckOn {
        /// Shared, with a thread that runs its steps whenever it can, as a pipeline's
        /// caller's thread does.
        Helped,
        /// Shared, with no other thread: the batch's own runs every step.
        Shared,
        /// On the batch's thread as the steps come.
        Here,
    }

    /// Every item of the file from a batch whose duplicate check runs `on`, up to its first
    /// error; whether the batch still had its check at the end; how many shared checks
    /// were left registered after it; and how many checked steps' vectors came back to its
    /// decoder to be used again.
    fn batch_items(path: &Path, config: Config, on: CheckOn) -> (Vec<String>, bool, u64, usize) {
        let file = File::open(path).unwrap();
        let span = whole_file(file.metadata().unwrap().len(), None);
        let at = AtomicU64::new(0);
        let helpers = Arc::new(Helpers::new());
        let stop = AtomicBool::new(false);
        let mut out = Vec::new();
        let mut kept = false;
        let mut spare = 0;
        std::thread::scope(|s| {
            if matches!(on, CheckOn::Helped) {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        if !helpers.help() {
                            std::thread::yield_now();
                        }
                    }
                });
            }
            let mut batch = Batch::new(Src::File(&file), span, config, &at, true);
            if !matches!(on, CheckOn::Here) {
                batch.helpers = Some(helpers.clone());
            }
            for item in batch.by_ref() {
                match item {
                    Ok(i) => out.push(format!("{i:?}")),
                    Err(e) => {
                        out.push(format!("error: {e}"));
                        break;
                    }
                }
            }
            kept = batch.check.is_some();
            spare = batch.dec.spare_steps();
            drop(batch);
            stop.store(true, Ordering::Relaxed);
        });
        (out, kept, helpers.count.load(Ordering::Relaxed), spare)
    }

    /// A shared check's steps run in order on whichever thread takes them: another thread
    /// that helps, or the batch's own when it waits for an outcome; a duplicate is found
    /// where one decoder finds it, and the check is let go with its batch.
    #[test]
    fn a_shared_checks_steps_run_in_order_on_any_thread() {
        let helpers = Arc::new(Helpers::new());
        let mut check = Checker::shared(&Config::default(), helpers.clone());
        assert!(helpers.active());
        let step = |r: std::ops::Range<u128>| {
            Deferred::Step(
                r.map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
                    .collect(),
            )
        };
        check.send(Deferred::Start(100_000));
        check.send(step(0..1_000));
        // nobody ran them yet
        assert!(check.try_recv().is_none());
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(helpers.help(), "the table");
                assert!(helpers.help(), "the step");
                assert!(!helpers.help(), "nothing left");
            })
            .join()
            .unwrap();
        });
        assert_eq!(check.try_recv().map(|c| c.dup), Some(None));
        check.send(step(1_000..2_000));
        // members 1,990..1,999 were in the step before: the first of them is at index 0
        check.send(step(1_990..2_500));
        assert!(check.try_recv().is_none());
        // the batch's thread runs them itself as it waits
        assert_eq!(check.recv().map(|c| c.dup), Some(None));
        assert_eq!(check.recv().map(|c| c.dup), Some(Some(0)));
        assert!(check.recv().is_none(), "no step left to wait for");
        drop(check);
        assert!(!helpers.active());
        assert!(helpers.checks.lock().unwrap().is_empty());
    }

    /// The caller's thread waits for results parked: each message wakes it, and so does the
    /// last sender's end, after which it finds the channel closed. It waits on a thread of
    /// its own here, for ten seconds at most: a wake-up that never came fails the test
    /// rather than hang it.
    #[test]
    fn a_parked_caller_wakes_for_each_message_and_for_the_senders_end() {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (got_tx, got_rx) = mpsc::channel();
        // (not joined: on a failure it stays parked until the tests end)
        std::thread::spawn(move || {
            let helpers = Helpers::new();
            let (tx, rx) = ToCaller::<u32>::channel(&helpers);
            let (tx2, rx2) = ToCaller::<u32>::sync_channel(&helpers, 1);
            ready_tx.send((tx, tx2)).unwrap();
            let got = (
                recv_helping(&rx, &helpers),
                recv_helping(&rx, &helpers),
                recv_helping(&rx2, &helpers),
                recv_helping(&rx2, &helpers),
            );
            got_tx.send(got).unwrap();
        });
        let (tx, tx2) = ready_rx.recv().unwrap();
        let later = || std::thread::sleep(std::time::Duration::from_millis(30));
        later();
        tx.send(7).unwrap();
        let tx_more = tx.clone();
        drop(tx);
        later();
        // the last sender's end
        drop(tx_more);
        later();
        tx2.send_helping(8, &Helpers::new());
        later();
        drop(tx2);
        let got = got_rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(got, Ok((Some(7), None, Some(8), None)));
    }

    /// A check shared after the caller's thread began to wait for a result (a big key met
    /// in the batch it waits for) is helped by that thread all the same: it does not sleep
    /// until the result comes. The worker here sends its result only once its step was run
    /// by another thread (or after ten seconds: then the test fails).
    #[test]
    fn a_check_shared_while_the_caller_waits_is_helped() {
        let helpers = Arc::new(Helpers::new());
        let (tx, rx) = ToCaller::channel(&helpers);
        let (helped, shared_at) = std::thread::scope(|s| {
            let worker = s.spawn(|| {
                // the caller's thread is waiting by now
                std::thread::sleep(std::time::Duration::from_millis(50));
                let mut check = Checker::shared(&Config::default(), helpers.clone());
                let shared_at = std::time::Instant::now();
                check.send(Deferred::Start(100_000));
                check.send(Deferred::Step((1..1_000u128).collect()));
                let mut helped = false;
                let until = shared_at + std::time::Duration::from_secs(10);
                while std::time::Instant::now() < until {
                    if let Some(c) = check.try_recv() {
                        assert_eq!(c.dup, None);
                        helped = true;
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                tx.send(()).unwrap();
                (helped, shared_at)
            });
            assert_eq!(recv_helping(&rx, &helpers), Some(()));
            worker.join().unwrap()
        });
        assert!(
            helped,
            "the step waited {:?} for the caller's thread",
            shared_at.elapsed()
        );
    }

    /// A big set's members are checked beside the batch's decoder: shared with a thread that
    /// runs steps as it can, shared with none (the batch's thread runs them all), or on the
    /// batch's thread as they come. All give what one decoder gives, and a shared check is
    /// let go with its batch.
    #[test]
    fn a_big_sets_check_beside_its_decoder_gives_what_one_decoder_gives() {
        let dir = test_support::temp_dir("rdb-deferred");
        let mut skip = Config::default();
        skip.skip_values(true);
        for dup in [None, Some(20_000), Some(69_999)] {
            let bytes = set_file(70_000, dup);
            let path = dir.join("set.rdb");
            std::fs::write(&path, &bytes).unwrap();
            for config in [Config::default(), skip] {
                let mut want: Vec<String> = Vec::new();
                let mut dec = Decoder::with_config(config);
                let mut src = Bytes::from(bytes.clone());
                loop {
                    match dec.decode_eof(&mut src) {
                        // (the batch starts after the header and the database's selection)
                        Ok(Some(Item::Header { .. } | Item::Eof { .. } | Item::SelectDb(_))) => {}
                        Ok(Some(i)) => want.push(format!("{i:?}")),
                        Ok(None) => break,
                        Err(e) => {
                            want.push(format!("error: {e}"));
                            break;
                        }
                    }
                }
                assert_eq!(want.last().unwrap().starts_with("error"), dup.is_some());
                for on in [CheckOn::Helped, CheckOn::Shared, CheckOn::Here] {
                    let (got, kept, left, spare) = batch_items(&path, config, on);
                    // (after a duplicate the check is gone at once)
                    assert_eq!(kept, dup.is_none(), "the batch kept its check");
                    // the checked steps' vectors went back to the decoder
                    assert!(spare <= crate::decoder::SPARE_STEPS);
                    if dup.is_none() {
                        assert!(spare > 0, "no step came back, check {on:?}");
                    }
                    assert_eq!(left, 0, "shared checks left registered");
                    assert_eq!(got, want, "dup {dup:?}, check {on:?}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Iterates a batch of the whole file at `path` (an RDB 9 file after its header and
    /// database selection), its bytes in memory as the walker hands them over (so that its
    /// decoder's steps are whole chunks), whose duplicate check is taken only when its
    /// decoder must wait. Calls `chunk` with each chunk's member count and the input the batch
    /// then reports as done with; returns how far at most its decoder was ahead of that.
    fn ahead_of_handed(path: &Path, mut chunk: impl FnMut(u64, u64)) -> u64 {
        let file = File::open(path).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let data = Bytes::from(bytes[11..bytes.len() - 9].to_vec());
        let span = whole_file(bytes.len() as u64, Some(data));
        let at = AtomicU64::new(0);
        let config = Config::default();
        let mut batch = Batch::new(Src::File(&file), span, config, &at, true);
        // checked as the steps come, but taken only when the decoder must wait: it is ahead
        batch.check = Some(Checker::Here {
            check: MemberCheck::new(&config),
            done: VecDeque::new(),
        });
        let mut ahead = 0u64;
        while let Some(item) = batch.next() {
            if let Item::Chunk(crate::Chunk::Set(v)) = item.unwrap() {
                let done = at.load(Ordering::Relaxed);
                chunk(v.len() as u64, done);
                ahead = ahead.max(batch.dec.offset().saturating_sub(done));
            }
        }
        ahead
    }

    /// While a big set's chunks wait for their duplicate check, the decoder is steps ahead
    /// of them: what the batch reports as done with (where the caller's thread lets a mapped
    /// file's pages go, and the pages it maps again rendering a chunk stay until it does) is
    /// the input of the chunks handed out, not where the decoder got.
    #[test]
    fn a_batch_reports_the_input_of_what_it_handed_out_not_where_its_decoder_is() {
        let dir = test_support::temp_dir("rdb-handed");
        let path = dir.join("set.rdb");
        let n = 200_000u64;
        std::fs::write(&path, set_file(n as u32, None)).unwrap();
        let config = Config::default();
        // member i (one length byte, eight bytes of text) ends at 26 + 9 (i + 1)
        let end_of = |members: u64| 26 + 9 * members;
        let (mut members, mut chunks) = (0u64, 0);
        let ahead = ahead_of_handed(&path, |got, done| {
            members += got;
            chunks += 1;
            assert!(
                done >= end_of(members),
                "chunk {chunks}: {done} before its members' end"
            );
            // no more than one step past them (the first reads the threshold's worth and one
            // more, to know the set is big)
            let step = config.chunk_threshold.max(config.chunk_size) as u64 + 1;
            let most = end_of((members + step).min(n));
            assert!(done <= most, "chunk {chunks}: {done} is past {most}");
        });
        assert_eq!(members, n);
        assert!(chunks > AHEAD, "{chunks} chunks");
        // the decoder did get ahead of what was handed out
        assert!(
            ahead > 9 * config.chunk_size as u64,
            "the decoder was {ahead} bytes ahead"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A decoder whose steps read much input is fewer steps ahead of their check: what the
    /// held steps keep of a mapped file stays about [`AHEAD_BYTES`], whatever the members'
    /// size.
    #[test]
    fn a_decoder_ahead_of_its_check_holds_about_a_mebibyte_of_big_members() {
        let dir = test_support::temp_dir("rdb-ahead");
        let path = dir.join("set.rdb");
        let (n, size) = (70_000u32, 200usize);
        let mut f = b"REDIS0009\xfe\x00\x02\x03set\x80".to_vec();
        f.extend(n.to_be_bytes());
        for i in 0..n {
            // a 14-bit length, then the member (too short to be compressed by Redis; this
            // one is not compressed either)
            f.extend([0x40 | (size >> 8) as u8, size as u8]);
            let m = format!("{i:0size$}");
            f.extend_from_slice(m.as_bytes());
        }
        f.extend_from_slice(b"\xff");
        f.extend([0; 8]);
        std::fs::write(&path, f).unwrap();
        let mut members = 0u64;
        let ahead = ahead_of_handed(&path, |got, _| members += got);
        assert_eq!(members, u64::from(n));
        // a step of 4,096 members reads about 0.8 MiB: the decoder goes on while what its
        // waiting steps read is under a mebibyte (or fewer than three wait), one step more
        let step = 4096 * (size as u64 + 2);
        let most = AHEAD_BYTES + 2 * step;
        assert!(
            ahead <= most,
            "the decoder was {ahead} bytes ahead, more than {most}"
        );
        assert!(ahead > step, "the decoder was only {ahead} bytes ahead");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
