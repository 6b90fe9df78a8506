//! Thin drivers over the [`Decoder`]: blocking `Read`, whole `Bytes` (zero-copy), mmap, async.

use std::io::Read;

use bytes::{Bytes, BytesMut};

use crate::decoder::{Config, Decoder, Recovery, Source, Visit};
use crate::error::{Error, Result};
use crate::value::{Item, Visitor};

const MIN_READ: usize = 64 * 1024;

/// One turn of a driver's loop, the `decode` / `decode_eof` contract in one place: the
/// caller's answer (an item, `None` at a clean end, or an error, which marks the driver
/// failed), or `None` when more input is needed. The answer is the decoder's own result, not
/// wrapped again: an item is 176 bytes, and each wrapping copied it.
#[inline]
pub(crate) fn turn<S: Source>(
    dec: &mut Decoder,
    buf: &mut S,
    ended: bool,
    failed: &mut bool,
    visit: Visit<'_, '_>,
) -> Option<Result<Option<Item>>> {
    let got = if ended {
        dec.decode_eof_inner(buf, visit)
    } else {
        dec.decode_inner(buf, visit)
    };
    match &got {
        Ok(Some(_)) => {}
        // the end, or a visitor that asked to stop
        Ok(None) if ended || dec.is_done() || dec.visit_broke() => {}
        Ok(None) => return None,
        Err(_) => *failed = true,
    }
    Some(got)
}

/// Blocking driver: decodes items from any [`Read`] in bounded memory.
///
/// ```
/// let file: &[u8] = b"REDIS0009\xfa\x03ver\x055.0.0\xff\0\0\0\0\0\0\0\0";
/// let items: Result<Vec<_>, _> = rdb_format::Reader::new(file).collect();
/// assert_eq!(items.unwrap().len(), 3); // header, aux, eof
/// ```
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    buf: BytesMut,
    dec: Decoder,
    eof: bool,
    failed: bool,
}

impl<R: Read> Reader<R> {
    /// A reader with the default [`Config`].
    pub fn new(inner: R) -> Self {
        Self::with_config(inner, Config::default())
    }

    /// A reader with the given settings.
    pub fn with_config(inner: R, config: Config) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            dec: Decoder::with_config(config),
            eof: false,
            failed: false,
        }
    }

    /// The decoder (version, offset, flavor).
    pub fn decoder(&self) -> &Decoder {
        &self.dec
    }

    /// Bytes read from the input but not consumed by the decoder (what follows the RDB, as in
    /// an AOF with an RDB preamble), and the inner reader.
    pub fn into_parts(self) -> (BytesMut, R) {
        (self.buf, self.inner)
    }

    /// The next item, `Ok(None)` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        self.next_inner(None)
    }

    /// As [`next_item`](Self::next_item), with string keys (and checked keys, to a visitor
    /// that takes them) handed to `visit` ([`Decoder::decode_with`]).
    pub fn next_item_with(&mut self, visit: &mut dyn Visitor) -> Result<Option<Item>> {
        self.next_inner(Some(visit))
    }

    fn next_inner(&mut self, mut visit: Visit<'_, '_>) -> Result<Option<Item>> {
        if self.failed {
            return Ok(None);
        }
        loop {
            let (dec, buf, eof) = (&mut self.dec, &mut self.buf, self.eof);
            if let Some(answer) = turn(dec, buf, eof, &mut self.failed, visit.as_deref_mut()) {
                return answer;
            }
            // Read at least as much again as is buffered, so a unit that straddles many reads
            // is rescanned a logarithmic number of times, not once per read.
            let want = MIN_READ.max(self.buf.len());
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let n = loop {
                match self.inner.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(old);
                        self.failed = true;
                        return Err(Error::io(e, self.dec.offset() + old as u64));
                    }
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                self.eof = true;
            }
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// Zero-copy driver over a whole file in memory (`Bytes`, or an mmap turned into `Bytes`):
/// every string is a slice of the input.
///
/// ```
/// use bytes::Bytes;
/// let file = Bytes::from_static(b"REDIS0009\x00\x01k\x01v\xff\0\0\0\0\0\0\0\0");
/// let mut reader = rdb_format::BytesReader::new(file.clone());
/// let mut keys = Vec::new();
/// while let Some(item) = reader.next_item().unwrap() {
///     if let rdb_format::Item::Key(k) = item {
///         keys.push(k.head.key);
///     }
/// }
/// assert_eq!(keys, vec![Bytes::from_static(b"k")]);
/// ```
#[derive(Debug)]
pub struct BytesReader {
    buf: Bytes,
    dec: Decoder,
    failed: bool,
}

impl BytesReader {
    /// A reader with the default [`Config`].
    pub fn new(input: Bytes) -> Self {
        Self::with_config(input, Config::default())
    }

    /// A reader with the given settings.
    pub fn with_config(input: Bytes, config: Config) -> Self {
        Self {
            buf: input,
            dec: Decoder::with_config(config),
            failed: false,
        }
    }

    /// The decoder (version, offset, flavor).
    pub fn decoder(&self) -> &Decoder {
        &self.dec
    }

    /// What follows the RDB data (trailing bytes, or an AOF tail after an RDB preamble).
    pub fn remaining(&self) -> &Bytes {
        &self.buf
    }

    /// The next item, `Ok(None)` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        self.next_inner(None)
    }

    /// As [`next_item`](Self::next_item), with string keys (and checked keys, to a visitor
    /// that takes them) handed to `visit` ([`Decoder::decode_with`]).
    pub fn next_item_with(&mut self, visit: &mut dyn Visitor) -> Result<Option<Item>> {
        self.next_inner(Some(visit))
    }

    fn next_inner(&mut self, visit: Visit<'_, '_>) -> Result<Option<Item>> {
        if self.failed {
            return Ok(None);
        }
        // the whole input is here: it has ended
        self.dec
            .decode_eof_inner(&mut self.buf, visit)
            .inspect_err(|_| self.failed = true)
    }
}

impl Iterator for BytesReader {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// Maps a file and returns it as `Bytes` without copying (feature `mmap`).
///
/// The file must not be changed by anyone while the mapping is alive.
#[cfg(feature = "mmap")]
pub fn mmap_file(path: impl AsRef<std::path::Path>) -> std::io::Result<Bytes> {
    Ok(MappedFile::open(path)?.bytes().clone())
}

/// A file mapped into memory, read without copies, whose pages can be let go once read
/// (feature `mmap`): what [`crate::Pipeline`] decodes a file from.
///
/// The mapping's pages count in the process's resident memory as they are touched;
/// [`release`](Self::release) drops the pages of a range from it (they are read again from
/// the file's page cache if touched again), so that a file far bigger than memory can be
/// walked in constant memory.
///
/// The file must not be changed by anyone while the mapping is alive (a file cut short
/// under a mapping ends the process with `SIGBUS`).
///
/// ```
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb");
/// let map = rdb_format::MappedFile::open(path)?;
/// assert_eq!(&map.bytes()[..5], b"REDIS");
/// map.release(0, map.len());
/// assert_eq!(&map.bytes()[..5], b"REDIS"); // read again from the file
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "mmap")]
#[derive(Clone)]
pub struct MappedFile {
    map: std::sync::Arc<memmap2::Mmap>,
    bytes: Bytes,
    /// Its bytes, when the mapping lives until the process ends ([`leak`](Self::leak)).
    forever: Option<&'static [u8]>,
}

#[cfg(feature = "mmap")]
impl MappedFile {
    /// The whole mapping, when it lives until the process ends: what the decoders reading it
    /// slice their items from without a call ([`Decoder::input_within`]).
    pub(crate) fn forever(&self) -> Option<&'static [u8]> {
        self.forever
    }
}

#[cfg(feature = "mmap")]
impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A leaked mapping is never unmapped: its pages go when its `MappedFile` does, so that a
/// program that maps many files holds none of their pages after it is done with them.
#[cfg(feature = "mmap")]
impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.is_leaked() {
            self.release(0, self.len());
        }
    }
}

/// Keeps a mapping alive for as long as some `Bytes` of a range of it is.
#[cfg(feature = "mmap")]
struct MapOwner(std::sync::Arc<memmap2::Mmap>, std::ops::Range<usize>);

#[cfg(feature = "mmap")]
impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0[self.1.clone()]
    }
}

#[cfg(feature = "mmap")]
impl MappedFile {
    /// Maps the file at `path`, read-only, for reading front to back.
    pub fn open(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        Self::from_file(&std::fs::File::open(path)?)
    }

    /// Maps an open file, read-only, for reading front to back; an error for anything but a
    /// regular file (a pipe, a device: they have no length to map).
    pub fn from_file(file: &std::fs::File) -> std::io::Result<Self> {
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::other(
                "not a regular file: it cannot be mapped",
            ));
        }
        #[allow(unsafe_code)]
        // SAFETY: the mapping is read-only; like every tool that maps its input we rely on
        // the file not being changed while it is read, which the type's docs require.
        let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(file)? });
        // a hint only: read ahead of the faults
        let _ = map.advise(memmap2::Advice::Sequential);
        let bytes = Bytes::from_owner(MapOwner(map.clone(), 0..map.len()));
        Ok(Self {
            map,
            bytes,
            forever: None,
        })
    }

    /// The same mapping, kept until the process ends: it is never unmapped, whatever is
    /// dropped. In return, its bytes and their slices carry no reference count, and a
    /// decoder's items refer to them for free. Each of the millions of small values of a
    /// file costs two changes of one shared count otherwise (one to make its item, one to
    /// drop it), about 8 % of printing a file of small values on one thread, and more on
    /// several, where the threads contend for the counts' cache lines. For a program that
    /// maps a few files and then ends (a command-line tool): each leaked mapping keeps its
    /// file's range of addresses until then. Its pages are let go by [`release`](Self::release)
    /// as before, and all of them when this `MappedFile` (or a clone of it) is dropped: what
    /// still refers to them maps them again as it reads them.
    ///
    /// ```
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb");
    /// let map = rdb_format::MappedFile::open(path)?.leak();
    /// assert!(map.is_leaked());
    /// let head = map.slice(0, 5);
    /// drop(map);
    /// assert_eq!(&head[..], b"REDIS"); // as any slice, it outlives the MappedFile
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn leak(self) -> Self {
        if self.is_leaked() {
            return self;
        }
        let map: &'static memmap2::Mmap = Box::leak(Box::new(self.map.clone()));
        let bytes: &'static [u8] = map;
        Self {
            map: self.map.clone(),
            bytes: Bytes::from_static(bytes),
            forever: Some(bytes),
        }
    }

    /// True for a mapping kept until the process ends ([`leak`](Self::leak)).
    pub fn is_leaked(&self) -> bool {
        self.forever.is_some()
    }

    /// The whole file (its bytes are the mapping's; slices of it copy nothing).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes `start..end` (clamped to the file), with a reference count of their own:
    /// all the slices of [`bytes`](Self::bytes) share one count, which threads cloning and
    /// dropping them at once contend for (each change moves its cache line between cores).
    /// A [leaked](Self::leak) mapping's slices have no count at all.
    pub fn slice(&self, start: u64, end: u64) -> Bytes {
        let end = usize::try_from(end.min(self.len())).unwrap_or(usize::MAX);
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(end);
        if self.is_leaked() {
            return self.bytes.slice(start..end);
        }
        Bytes::from_owner(MapOwner(self.map.clone(), start..end))
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Drops the pages that hold bytes `start..end` (whole pages: those at either edge too)
    /// from the process's memory. Nothing changes for anyone reading them: a page touched
    /// again is mapped again from the file.
    pub fn release(&self, start: u64, end: u64) {
        let end = end.min(self.len());
        if start >= end {
            return;
        }
        #[allow(unsafe_code)]
        // SAFETY: the mapping is a shared, read-only mapping of a file: `MADV_DONTNEED`
        // only unmaps its pages, and the next read of one maps the file's page again, with
        // the same bytes as long as the file is not changed (the mapping's own requirement).
        // Nothing here ever writes through it.
        let _ = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start as usize,
                (end - start) as usize,
            )
        };
    }

    /// Maps the pages of `start..end` at once (`MADV_POPULATE_READ`, Linux 5.14 and later; an
    /// older kernel refuses it and the pages are faulted in as they are read; nothing on other
    /// systems), before a reader reads them: one call instead of a page fault each 16 pages
    /// (the kernel's fault-around; 5,880 faults for `check` of the bench's mixed file on one
    /// thread, which took 0.373 s with the calls and 0.382 s without, medians of 11).
    pub(crate) fn populate(&self, start: u64, end: u64) {
        let end = end.min(self.len());
        let start = start / PAGE * PAGE;
        if start < end {
            #[cfg(target_os = "linux")]
            let _ = self.map.advise_range(
                memmap2::Advice::PopulateRead,
                start as usize,
                (end - start) as usize,
            );
        }
    }

    /// Lets go of the whole pages from `*released` up to `to` once they are `step` bytes or
    /// more, and moves `*released` past them: what a reader calls as it goes (the page it
    /// stands in stays).
    /// With `whole`, only whole huge pages (2 MiB, at offsets they are aligned to) go: those
    /// at either edge stay for a reader of the bytes beside them to let go.
    /// A reader that reads behind its offset (a checksum summed in place) settles that in
    /// `settle`, called only when pages go.
    pub(crate) fn release_behind(
        &self,
        released: &mut u64,
        to: u64,
        step: u64,
        whole: bool,
        settle: impl FnOnce(),
    ) {
        let unit = if whole { HUGE } else { PAGE };
        let to = to / unit * unit;
        let from = released.div_ceil(unit).saturating_mul(unit);
        if to > from && to - from >= step {
            settle();
            self.release(from, to);
            *released = to;
        }
    }
}

/// Decodes a [`MappedFile`] in place, a window at a time, and lets its pages go behind the
/// decoder (feature `mmap`): no copy, no reading thread, and resident memory that does not
/// grow with the file.
///
/// Pages are let go a few MiB at a time: those the decoder went past, and those of the items
/// the program took, once it asks for the next one. A page touched again afterwards (an item
/// kept and read later) is mapped again from the file, with the same bytes.
///
/// ```
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/redis-7.0-compact.rdb");
/// let map = rdb_format::MappedFile::open(path)?;
/// let mut reader = rdb_format::MappedReader::new(map, Default::default());
/// let mut keys = 0;
/// while let Some(item) = reader.next_item().unwrap() {
///     keys += matches!(item, rdb_format::Item::Key(_)) as usize;
/// }
/// assert!(keys > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "mmap")]
#[derive(Debug)]
pub struct MappedReader {
    map: MappedFile,
    /// The part of the file the decoder reads now (what it has not taken of it).
    window: Bytes,
    /// The file offset where `window` ends.
    read_to: u64,
    /// The pages before this offset were let go.
    released: u64,
    /// Where the decoder stood when it handed over its last item.
    handed: u64,
    /// Bytes added to the window at a time.
    step: u64,
    dec: Decoder,
    failed: bool,
}

/// Bytes in a page, for letting whole pages go.
#[cfg(feature = "mmap")]
const PAGE: u64 = 4096;

/// Bytes in a huge page. The kernel maps a file's pages 2 MiB at a time where the page
/// cache holds them so (large folios): letting go of part of such a mapping unmaps all of
/// it, and each release stops every other core that runs one of the process's threads (a
/// TLB shootdown, a VM exit in a virtual machine). The pipeline's workers and the caller's
/// thread let pages go a whole huge page at a time.
pub(crate) const HUGE: u64 = 2 << 20;

/// Bytes a [`MappedReader`] adds to its window at a time, and lets go of at a time.
#[cfg(feature = "mmap")]
const MAP_WINDOW: u64 = 2 << 20;

#[cfg(feature = "mmap")]
impl MappedReader {
    /// A reader of `map` with these settings.
    pub fn new(map: MappedFile, config: Config) -> Self {
        Self::with_window(map, config, MAP_WINDOW)
    }

    /// As [`new`](Self::new), reading `window` bytes further each time the decoder needs more
    /// (default 2 MiB; at least as much again as the window holds, for a record bigger than
    /// it), and letting pages go twice that many at a time (tests and tuning).
    pub fn with_window(map: MappedFile, config: Config, window: u64) -> Self {
        let step = window.max(1);
        let read_to = step.min(map.len());
        let forever = map.forever();
        Self {
            step,
            window: map.slice(0, read_to),
            read_to,
            map,
            released: 0,
            handed: 0,
            dec: Decoder::with_config(config).input_within(forever),
            failed: false,
        }
    }

    /// The decoder (version, offset, flavor).
    pub fn decoder(&self) -> &Decoder {
        &self.dec
    }

    /// The next item, `Ok(None)` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        self.next_inner(None)
    }

    /// As [`next_item`](Self::next_item), with string keys (and checked keys, to a visitor
    /// that takes them) handed to `visit` ([`Decoder::decode_with`]).
    pub fn next_item_with(&mut self, visit: &mut dyn Visitor) -> Result<Option<Item>> {
        self.next_inner(Some(visit))
    }

    fn next_inner(&mut self, mut visit: Visit<'_, '_>) -> Result<Option<Item>> {
        if self.failed {
            return Ok(None);
        }
        // the program is done with the items it took before this call
        self.release_to(self.handed);
        loop {
            let ended = self.read_to >= self.map.len();
            let (dec, window) = (&mut self.dec, &mut self.window);
            if let Some(answer) = turn(dec, window, ended, &mut self.failed, visit.as_deref_mut()) {
                self.handed = self.dec.offset();
                return answer;
            }
            // the next window, from what the decoder has not taken yet; at least as much
            // again as it holds, so that a record far bigger than a window is looked at a
            // logarithmic number of times
            let from = self.read_to - self.window.len() as u64;
            let grow = self.step.max(self.window.len() as u64);
            let added = self.read_to;
            self.read_to = self.read_to.saturating_add(grow).min(self.map.len());
            self.map.populate(added, self.read_to);
            self.window = self.map.slice(from, self.read_to);
            self.release_to(from);
        }
    }

    /// Lets the pages before `to` go, a few MiB at a time, once the decoder read the last of
    /// their bytes (its checksum sums them in place, after it went past them).
    fn release_to(&mut self, to: u64) {
        let dec = &mut self.dec;
        self.map
            .release_behind(&mut self.released, to, 2 * self.step, false, || {
                dec.sum_pending();
            });
    }
}

#[cfg(feature = "mmap")]
impl Iterator for MappedReader {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// Decodes a whole file held in memory into items.
///
/// ```
/// let items = rdb_format::decode_all(b"REDIS0009\xff\0\0\0\0\0\0\0\0").unwrap();
/// assert_eq!(items.len(), 2);
/// ```
pub fn decode_all(input: &[u8]) -> Result<Vec<Item>> {
    BytesReader::new(Bytes::copy_from_slice(input)).collect()
}

/// Decodes what it can: the items before the first error, and that error
/// ([`Recovery::Partial`]). With `config`'s recovery set to [`Recovery::Skip`], damaged keys
/// are skipped instead.
pub fn decode_partial(input: Bytes, config: Config) -> (Vec<Item>, Option<Error>) {
    let mut reader = BytesReader::with_config(input, config);
    let mut items = Vec::new();
    loop {
        match reader.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e)),
        }
    }
}

impl Recovery {
    /// True when errors end decoding.
    pub fn aborts(self) -> bool {
        !matches!(self, Self::Skip)
    }
}

/// Async driver over `tokio::io::AsyncRead` (feature `tokio`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let file: &[u8] = b"REDIS0009\xff\0\0\0\0\0\0\0\0";
/// let mut reader = rdb_format::AsyncReader::new(file);
/// let mut n = 0;
/// while let Some(_item) = reader.next_item().await.unwrap() {
///     n += 1;
/// }
/// assert_eq!(n, 2);
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct AsyncReader<R> {
    inner: R,
    buf: BytesMut,
    dec: Decoder,
    eof: bool,
    failed: bool,
}

#[cfg(feature = "tokio")]
impl<R: tokio::io::AsyncRead + Unpin> AsyncReader<R> {
    /// A reader with the default [`Config`].
    pub fn new(inner: R) -> Self {
        Self::with_config(inner, Config::default())
    }

    /// A reader with the given settings.
    pub fn with_config(inner: R, config: Config) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            dec: Decoder::with_config(config),
            eof: false,
            failed: false,
        }
    }

    /// The next item, `Ok(None)` at the end of the file.
    pub async fn next_item(&mut self) -> Result<Option<Item>> {
        use tokio::io::AsyncReadExt;
        if self.failed {
            return Ok(None);
        }
        loop {
            if let Some(answer) = turn(
                &mut self.dec,
                &mut self.buf,
                self.eof,
                &mut self.failed,
                None,
            ) {
                return answer;
            }
            self.buf.reserve(MIN_READ.max(self.buf.len()));
            let n = self.inner.read_buf(&mut self.buf).await.map_err(|e| {
                self.failed = true;
                Error::io(e, self.dec.offset())
            })?;
            if n == 0 {
                self.eof = true;
            }
        }
    }
}

#[cfg(all(test, feature = "mmap", target_os = "linux"))]
mod tests {
    use super::{HUGE, MappedFile};
    use test_support::mapping_rss as rss;

    /// Letting go of whole huge pages only, a reader's pages before the first huge page
    /// boundary and after the last stay (the next reader lets them go); page by page, all go.
    #[test]
    fn whole_huge_pages_are_let_go_and_the_edges_stay() {
        let dir = test_support::temp_dir("release-whole");
        let path = dir.join("eight.rdb");
        let f: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &f).unwrap();
        let map = MappedFile::open(&path).unwrap();
        let addr = map.bytes().as_ptr() as usize;
        let read_all = || map.bytes().iter().map(|&b| u64::from(b)).sum::<u64>();
        let sum = read_all();
        assert_eq!(rss(addr), 8 << 20);

        // from 1 MiB to 7 MiB: the huge pages 2..4 and 4..6 MiB go
        let mut released = 1 << 20;
        map.release_behind(&mut released, 7 << 20, 1, true, || {});
        assert_eq!(released, 6 << 20);
        assert_eq!(rss(addr), 4 << 20);
        // not a whole huge page more: nothing goes, the cursor stays
        map.release_behind(&mut released, (8 << 20) - 1, 1, true, || {});
        assert_eq!(released, 6 << 20);
        assert_eq!(rss(addr), 4 << 20);
        // a step asked for is a step of whole pages
        let mut from_start = 0;
        map.release_behind(&mut from_start, 2 * HUGE - 1, HUGE + 1, true, || {});
        assert_eq!((from_start, rss(addr)), (0, 4 << 20));

        // page by page, the same range lets 6 MiB go (and where the kernel mapped a huge
        // page whole, the rest of the huge pages at the edges with them: it unmaps a file's
        // huge page whole rather than split it, and the next read of it faults it in again)
        assert_eq!(read_all(), sum);
        let mut released = 1 << 20;
        map.release_behind(&mut released, 7 << 20, 1, false, || {});
        assert_eq!(released, 7 << 20);
        assert!(rss(addr) <= 2 << 20, "{} bytes resident", rss(addr));
        drop(map);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
