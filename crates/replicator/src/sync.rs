//! Events into a live Redis, Valkey or Redis Cluster: the [`Writer`] sink behind `replicator
//! sync`, on [`redis_sink`].
//!
//! Keys become `RESTORE … ABSTTL [IDLETIME|FREQ] [REPLACE]` with payloads encoded for the
//! target's RDB version, or commands (`SET`/`RPUSH`/`HSET`/… in batches, then `PEXPIREAT`) when
//! the payload would pass the target's `proto-max-bulk-len`, when the decoder delivered the
//! key in chunks (a big key never sits whole in memory), or when asked. Keys whose expiry has
//! passed are skipped and counted; functions go to every master with `FUNCTION LOAD REPLACE`.
//! Commands of an AOF or a replication stream pass through as received; a `MULTI`…`EXEC`
//! block stays one transaction when its keys share a slot (always, into a standalone server);
//! multi-key commands whose keys span slots of a cluster are split where each key stands alone
//! (`DEL`, `UNLINK`, `TOUCH`, `EXISTS`, `MSET`), any other stops the sync unless told to skip.
//!
//! ```no_run
//! # fn f() -> replicator::Result<()> {
//! use replicator::print::Printer;
//! use replicator::sync::{Options, Writer};
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let _guard = rt.enter();
//! let target = rt.block_on(replicator::sync::connect("redis://127.0.0.1:7000", Options::default()))?;
//! let mut printer = Printer::new(Writer::new(target, Options::default())?);
//! for ev in replicator::files::open("dump.rdb".as_ref(), Default::default())? {
//!     printer.event(ev?)?;
//! }
//! printer.finish()?; // waits until the target acknowledged everything
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use rdb_format::{Chunk, EncodeConfig, Item, KeyHead, KeyRecord, ModuleValue};
use redis_sink::command::{Keys, Split, keys, split_of};
pub use redis_sink::{Counters, OnError, Refusals, Target, TargetConfig, TargetInfo};
use redis_sink::{Route, Unit, key_slot};
use resp_codec::Command;

use crate::error::{Error, Result};
use crate::event::{CommandEvent, SyncStart};
use crate::print::{Resp, Sink};

/// How keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// `RESTORE` where the payload fits the target, commands otherwise (the default).
    #[default]
    Auto,
    /// `RESTORE` for every whole key (keys delivered in chunks still go as commands).
    Restore,
    /// Commands for every key.
    Commands,
}

/// What a key that already exists in the target does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Conflict {
    /// Stop the sync, naming the key (the default).
    #[default]
    Fail,
    /// Overwrite it.
    Replace,
    /// Leave it as it is, and count it.
    Skip,
}

/// Settings of a [`Writer`].
#[derive(Debug, Clone)]
pub struct Options {
    mode: Mode,
    batch: usize,
    conflict: Conflict,
    on_error: OnError,
    db_map: BTreeMap<u64, u64>,
    flush_target: bool,
    skip_cross_slot: bool,
    strict_transactions: bool,
    window: (usize, usize),
    checkpoint_key: Option<Bytes>,
    compress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: Mode::Auto,
            batch: 512,
            conflict: Conflict::Fail,
            on_error: OnError::Fail,
            db_map: BTreeMap::new(),
            flush_target: false,
            skip_cross_slot: false,
            strict_transactions: false,
            window: (8192, 16 << 20),
            checkpoint_key: None,
            compress: false,
        }
    }
}

impl Options {
    /// How keys are written.
    pub fn mode(&mut self, m: Mode) -> &mut Self {
        self.mode = m;
        self
    }
    /// Elements per command when keys go as commands (default 512).
    pub fn batch(&mut self, n: usize) -> &mut Self {
        self.batch = n.max(1);
        self
    }
    /// What a key that already exists in the target does.
    pub fn conflict(&mut self, c: Conflict) -> &mut Self {
        self.conflict = c;
        self
    }
    /// What a write the target refuses does.
    pub fn on_error(&mut self, e: OnError) -> &mut Self {
        self.on_error = e;
        self
    }
    /// Writes source database `src` into target database `dst`.
    pub fn map_db(&mut self, src: u64, dst: u64) -> &mut Self {
        self.db_map.insert(src, dst);
        self
    }
    /// Flush every master of the target before a full sync (and before a file's data).
    pub fn flush_target(&mut self, on: bool) -> &mut Self {
        self.flush_target = on;
        self
    }
    /// Count and skip commands whose keys span slots and that cannot be split (default: stop).
    pub fn skip_cross_slot(&mut self, on: bool) -> &mut Self {
        self.skip_cross_slot = on;
        self
    }
    /// Stop on a transaction whose keys span slots of a cluster (default: apply its commands
    /// one by one, in order, and count it).
    pub fn strict_transactions(&mut self, on: bool) -> &mut Self {
        self.strict_transactions = on;
        self
    }
    /// Exactly once into a standalone target: commands of a live source go in transactions
    /// (`MULTI` … `SET key "replid offset"` … `EXEC`, in db 0), so the target holds the position
    /// of exactly what it applied; [`read_checkpoint_key`] reads it back for a restart.
    pub fn checkpoint_key(&mut self, key: Option<&[u8]>) -> &mut Self {
        self.checkpoint_key = key.map(Bytes::copy_from_slice);
        self
    }

    /// LZF-compress the strings of `RESTORE` payloads (default off: the target spends as long
    /// decompressing as we do compressing, for bytes that mostly cross a local network).
    pub fn compress(&mut self, on: bool) -> &mut Self {
        self.compress = on;
        self
    }

    /// The in-flight window per node: commands and bytes (default 8192 and 16 MiB).
    pub fn window(&mut self, commands: usize, bytes: usize) -> &mut Self {
        self.window = (commands, bytes);
        self
    }
    /// The target database for source database `db`.
    pub fn target_db(&self, db: u64) -> u64 {
        self.db_map.get(&db).copied().unwrap_or(db)
    }

    /// The target database for source database `db`, or why the target cannot take it (a
    /// cluster serves db 0 only, Valkey 9 clusters `cluster-databases`), with the fix.
    pub fn check_db(&self, db: u64, info: &TargetInfo) -> Result<u64> {
        let to = self.target_db(db);
        if to >= info.databases.max(1) {
            let what = if info.cluster {
                "the target cluster serves db 0 only"
            } else {
                "the target has fewer databases"
            };
            return Err(Error::invalid(format!(
                "source db {db} goes to target db {to}, but {what} ({} database(s)); map it \
                 with --db-map {db}:0",
                info.databases
            )));
        }
        Ok(to)
    }
}

/// Connects to the target (any node of a cluster) with the pipeline settings of `opts`.
pub async fn connect(url: &str, opts: Options) -> Result<Target> {
    let mut cfg = TargetConfig::from_url(url).map_err(sink_err)?;
    let (c, b) = opts.window;
    cfg.pipeline_mut()
        .window(c, b)
        .on_error(opts.on_error)
        .on_conflict(if opts.conflict == Conflict::Skip {
            OnError::Skip
        } else {
            OnError::Fail
        });
    Target::connect(cfg).await.map_err(sink_err)
}

pub(crate) fn sink_err(e: redis_sink::Error) -> Error {
    Error::new(crate::ErrorKind::Sink(e))
}

/// The position a target holds in its checkpoint key (db 0): `(replid, offset)`, or `None` when
/// it has none.
pub async fn read_checkpoint_key(url: &str, key: &[u8]) -> Result<Option<(String, u64)>> {
    let cfg = TargetConfig::from_url(url).map_err(sink_err)?;
    let c = cfg.client();
    let key = String::from_utf8_lossy(key).into_owned();
    let reply = replica_net::cluster::command(c, c.host(), c.port(), &["GET", &key]).await?;
    let text = match reply {
        resp_codec::Frame::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => return Ok(None),
    };
    let (id, off) = text
        .split_once(' ')
        .and_then(|(id, off)| Some((id.to_owned(), off.parse().ok()?)))
        .ok_or_else(|| {
            Error::invalid(format!(
                "checkpoint key {key:?} holds {text:?}, not \"replid offset\""
            ))
        })?;
    Ok(Some((id, off)))
}

/// The RDB version a server of this version reads.
///
/// ```
/// use replicator::sync::rdb_version_of;
/// assert_eq!(rdb_version_of("7.0.15", false), 10);
/// assert_eq!(rdb_version_of("8.2.3", false), 12);
/// assert_eq!(rdb_version_of("9.1.2", true), 80);
/// ```
pub fn rdb_version_of(version: &str, valkey: bool) -> u32 {
    let mut p = version.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
    let (a, b) = (p.next().unwrap_or(0), p.next().unwrap_or(0));
    if valkey {
        return if a >= 9 { 80 } else { 11 };
    }
    match (a, b) {
        (0..=4, _) => 9,
        (5 | 6, _) => 9,
        (7, 0) => 10,
        (7, 1..=2) => 11,
        (7, _) => 12,
        (8, 0..=4) => 12,
        (8, 5..=6) => 13,
        _ => 14,
    }
}

/// What a [`Writer`] did besides the target's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Keys written.
    pub keys: u64,
    /// Keys as `RESTORE`.
    pub restored: u64,
    /// Keys as commands.
    pub as_commands: u64,
    /// Keys whose expiry had passed: not written.
    pub expired: u64,
    /// Commands passed through (split commands count once).
    pub commands: u64,
    /// Commands split into one per slot.
    pub split: u64,
    /// Commands whose keys span slots, skipped (`skip_cross_slot`).
    pub cross_slot_skipped: u64,
    /// Transactions whose keys span slots, applied command by command.
    pub transactions_split: u64,
    /// Functions libraries loaded.
    pub functions: u64,
}

/// A transaction being gathered.
#[derive(Debug)]
struct Block {
    db: u64,
    shard: Option<usize>,
    cmds: Vec<Command>,
}

/// Per source shard: its replid and start offset, and whether its RDB is complete.
#[derive(Debug, Clone)]
struct Synced {
    replid: String,
    start: u64,
    rdb_done: bool,
}

/// Units handed to the target at once, at most, and their bytes (big keys' commands are big).
const OUT_BATCH: usize = 128;
const OUT_BYTES: usize = 256 << 10;

/// Reads a [`Writer`]'s acknowledged source positions from anywhere.
#[derive(Debug, Clone)]
pub struct Positions {
    synced: Arc<Mutex<BTreeMap<usize, Synced>>>,
    target: Target,
    keys: Arc<std::sync::atomic::AtomicU64>,
}

impl Positions {
    /// Keys the writer has written so far (handed to the target; see the target's counters
    /// for what it acknowledged).
    pub fn keys(&self) -> u64 {
        self.keys.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Each source shard's acknowledged position: (shard, replid, offset).
    pub fn get(&self) -> Vec<(usize, String, u64)> {
        let Ok(synced) = self.synced.lock() else {
            return Vec::new();
        };
        synced
            .iter()
            .filter(|(_, s)| s.rdb_done)
            .filter_map(|(&shard, s)| {
                let off = self.target.acked(shard)?;
                (off >= s.start).then(|| (shard, s.replid.clone(), off))
            })
            .collect()
    }
}

/// The sink that writes into the target. See the module notes.
#[derive(Debug)]
pub struct Writer {
    target: Target,
    opts: Options,
    version: u32,
    cfg: Option<EncodeConfig>,
    cmds: Resp<Vec<u8>>,
    dec: resp_codec::Decoder,
    group: u64,
    block: Option<Block>,
    counts: Counts,
    /// `counts.keys` for other threads (the status line's keys per second).
    keys_shared: Arc<std::sync::atomic::AtomicU64>,
    synced: Arc<Mutex<BTreeMap<usize, Synced>>>,
    flushed: bool,
    /// the source position of what is being written (shard of the current sync)
    shard: Option<usize>,
    now_ms: i64,
    keys_since_clock: u32,
    /// `checkpoint_key`: the commands of the transaction being gathered
    batch: Batch,
    /// units not yet handed to the target (they go in batches), and their bytes
    out: Vec<Unit>,
    out_bytes: usize,
}

/// Commands gathered for one exactly-once transaction.
#[derive(Debug, Default)]
struct Batch {
    db: u64,
    shard: usize,
    offset: Option<u64>,
    buf: BytesMut,
    n: u32,
}

/// Runs an exactly-once transaction sent again after a lost connection: only if the
/// position key (db 0) does not already hold its offset or a later one (the first sending
/// ran, and only its reply was lost). `KEYS[1]`: the position key; `ARGV`: the batch's offset,
/// its db, the position to record, then per command its argument count and arguments. As in
/// `MULTI`/`EXEC`, a command's error does not stop the others; the first is returned.
const RESEND_SCRIPT: &str = "\
redis.call('SELECT', '0') \
local v = redis.call('GET', KEYS[1]) \
if v then \
  local o = tonumber(string.match(v, '(%d+)$')) \
  if o and o >= tonumber(ARGV[1]) then \
    redis.call('SELECT', ARGV[2]) \
    return 0 \
  end \
end \
redis.call('SELECT', ARGV[2]) \
local i = 4 \
local err = nil \
while i <= #ARGV do \
  local n = tonumber(ARGV[i]) \
  local r = redis.pcall(unpack(ARGV, i + 1, i + n)) \
  if type(r) == 'table' and r.err and not err then err = r.err end \
  i = i + n + 1 \
end \
redis.call('SELECT', '0') \
redis.call('SET', KEYS[1], ARGV[3]) \
redis.call('SELECT', ARGV[2]) \
if err then return redis.error_reply(err) end \
return 1";

/// The batch `b` as one `EVAL` of [`RESEND_SCRIPT`].
fn resend_form(key: &[u8], b: &Batch, pos: &str) -> Result<Bytes> {
    let offset = b.offset.unwrap_or(0).to_string();
    let db = b.db.to_string();
    let mut args: Vec<Bytes> = vec![
        Bytes::from_static(b"EVAL"),
        Bytes::from_static(RESEND_SCRIPT.as_bytes()),
        Bytes::from_static(b"1"),
        Bytes::copy_from_slice(key),
        Bytes::from(offset),
        Bytes::from(db),
        Bytes::copy_from_slice(pos.as_bytes()),
    ];
    let mut rest = b.buf.clone();
    let mut dec = resp_codec::Decoder::new();
    while let Some(c) = dec.decode_command(&mut rest).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a batch of the stream: {e}"),
        )
    })? {
        args.push(Bytes::from(c.len().to_string()));
        args.extend(c.to_vec());
    }
    let mut out = BytesMut::new();
    resp_codec::encode_command(args.iter(), &mut out);
    Ok(out.freeze())
}

/// A command as `redis-cli` would show it, shortened.
fn shown(c: &Command) -> String {
    let mut out = Vec::new();
    for (i, a) in c.args().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if i == 8 {
            out.extend_from_slice(b"...");
            break;
        }
        resp_codec::quote_arg(&a[..a.len().min(64)], &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Writer {
    /// A writer into `target`. Refuses settings the target cannot meet.
    pub fn new(target: Target, opts: Options) -> Result<Self> {
        let info = target.info().clone();
        if opts.checkpoint_key.is_some() && info.cluster {
            return Err(Error::invalid(
                "a checkpoint key needs a standalone target: a cluster has no transaction \
                 across slots to keep it with the data (use a checkpoint file)",
            ));
        }
        let version = rdb_version_of(&info.version, info.valkey);
        let mut cmds = Resp::new(Vec::new());
        cmds.batch(opts.batch)
            .target_version(Some(version))
            .no_select(true);
        Ok(Self {
            target,
            opts,
            version,
            cfg: None,
            cmds,
            dec: resp_codec::Decoder::new(),
            group: 0,
            block: None,
            counts: Counts::default(),
            keys_shared: Arc::default(),
            synced: Arc::default(),
            flushed: false,
            shard: None,
            now_ms: now_ms(),
            keys_since_clock: 0,
            batch: Batch::default(),
            out: Vec::with_capacity(OUT_BATCH),
            out_bytes: 0,
        })
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// What was done so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    fn key_written(&mut self) {
        self.counts.keys += 1;
        self.keys_shared
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Each source shard's position whose writes the target has all acknowledged: (shard,
    /// replid, offset), for `PSYNC replid offset+1`. Shards whose snapshot is not complete and
    /// acknowledged have none.
    pub fn positions(&self) -> Vec<(usize, String, u64)> {
        self.positions_handle().get()
    }

    /// A handle that reads [`positions`](Self::positions) from another thread (to save them
    /// while the writer waits for the source).
    pub fn positions_handle(&self) -> Positions {
        Positions {
            synced: self.synced.clone(),
            target: self.target.clone(),
            keys: self.keys_shared.clone(),
        }
    }

    fn target_db(&self, db: u64) -> Result<u64> {
        self.opts.check_db(db, self.target.info())
    }

    fn send(&mut self, unit: Unit) -> Result<()> {
        self.out_bytes += unit.len();
        self.out.push(unit);
        if self.out.len() >= OUT_BATCH || self.out_bytes >= OUT_BYTES {
            self.send_out()?;
        }
        Ok(())
    }

    /// Hands the units gathered so far to the target.
    fn send_out(&mut self) -> Result<()> {
        self.out_bytes = 0;
        let units = std::mem::replace(&mut self.out, Vec::with_capacity(OUT_BATCH));
        self.target.blocking_send_all(units).map_err(sink_err)
    }

    fn flush_once(&mut self) -> Result<()> {
        if self.opts.flush_target && !self.flushed {
            self.flushed = true;
            let c = Command::from_args(["FLUSHALL"]);
            self.send(Unit::new(c.raw().clone(), 1, Route::AllMasters, 0))?;
        }
        self.flushed = true;
        Ok(())
    }

    fn key_unit(&self, cmd: Command, db: u64, key: &Bytes, slot: u16) -> Unit {
        let mut u = Unit::new(cmd.raw().clone(), 1, Route::Slot(slot), db).key(key.clone());
        if let Some(s) = self.shard {
            u = u.position(s, None);
        }
        u
    }

    /// Sends what the command printer wrote for one key, command by command.
    fn drain_key(&mut self, head: &KeyHead, db: u64) -> Result<()> {
        self.cmds.flush()?;
        let buf = std::mem::take(self.cmds.get_mut());
        if buf.is_empty() {
            return Ok(());
        }
        let mut buf = BytesMut::from(&buf[..]);
        let slot = key_slot(&head.key);
        while let Some(c) = self.dec.decode_command(&mut buf).map_err(|e| {
            Error::invalid(format!(
                "internal: a command written for a key does not parse: {e}"
            ))
        })? {
            let u = self.key_unit(c, db, &head.key, slot).group(self.group);
            self.send(u)?;
        }
        Ok(())
    }

    fn expired(&mut self, head: &KeyHead) -> bool {
        self.keys_since_clock += 1;
        if self.keys_since_clock >= 4096 {
            self.keys_since_clock = 0;
            self.now_ms = now_ms();
        }
        head.expire_ms.is_some_and(|t| t <= self.now_ms)
    }

    /// The first unit of a key written as commands: what to do if the key exists.
    fn key_guard(&mut self, head: &KeyHead, db: u64) -> Result<()> {
        self.group += 1;
        let slot = key_slot(&head.key);
        let c = match self.opts.conflict {
            Conflict::Replace => Command::from_args([&b"DEL"[..], &head.key]),
            Conflict::Fail | Conflict::Skip => Command::from_args([&b"EXISTS"[..], &head.key]),
        };
        let mut u = self.key_unit(c, db, &head.key, slot).group(self.group);
        if self.opts.conflict != Conflict::Replace {
            u = u.guard(true);
        }
        self.send(u)
    }

    fn push_command(
        &mut self,
        c: Command,
        db: u64,
        shard: Option<usize>,
        off: Option<u64>,
    ) -> Result<()> {
        let args: Vec<&[u8]> = c.args().collect();
        let name = args.first().copied().unwrap_or_default();
        let mark = |u: Unit| match shard {
            Some(s) => u.position(s, off),
            None => u,
        };
        let ks = match keys(&args) {
            Keys::None => {
                let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
                if ["FLUSHALL", "FLUSHDB", "SWAPDB", "FUNCTION", "SCRIPT"]
                    .iter()
                    .any(|n| is(n))
                {
                    let u = Unit::new(c.raw().clone(), 1, Route::AllMasters, db);
                    return self.send(mark(u));
                }
                let sentinel = is("PUBLISH")
                    && args
                        .get(1)
                        .is_some_and(|ch| ch.starts_with(b"__sentinel__"));
                if is("PUBLISH") && !sentinel {
                    let u = Unit::new(c.raw().clone(), 1, Route::Slot(0), db);
                    return self.send(mark(u));
                }
                // PING, REPLCONF, SELECT, Sentinel hellos: nothing to write, but the position
                // moves on
                if let (Some(s), Some(o)) = (shard, off) {
                    self.send(Unit::marker(s, o))?;
                }
                return Ok(());
            }
            Keys::At(k) => k,
        };
        let slots: Vec<u16> = ks.iter().map(|&i| key_slot(args[i])).collect();
        // a slice of the command's bytes, not a copy
        let first = ks.first().and_then(|&i| c.arg_bytes(i)).unwrap_or_default();
        let same = slots.windows(2).all(|w| w[0] == w[1]) || !self.target.info().cluster;
        if same {
            let slot = slots.first().copied().unwrap_or(0);
            let u = Unit::new(c.raw().clone(), 1, Route::Slot(slot), db)
                .key(first)
                .barrier(ks.len() > 1);
            self.counts.commands += 1;
            return self.send(mark(u));
        }
        match split_of(name) {
            Split::EachKey | Split::KeyValue => {
                let per = if split_of(name) == Split::KeyValue {
                    2
                } else {
                    1
                };
                // one command per slot, keys in their order
                let mut by_slot: BTreeMap<u16, Vec<&[u8]>> = BTreeMap::new();
                let mut order = Vec::new();
                for &i in &ks {
                    let s = key_slot(args[i]);
                    if !by_slot.contains_key(&s) {
                        order.push(s);
                    }
                    let e = by_slot.entry(s).or_default();
                    e.extend(&args[i..i + per]);
                }
                self.counts.commands += 1;
                self.counts.split += 1;
                let n = order.len();
                for (j, s) in order.into_iter().enumerate() {
                    let mut parts = vec![name];
                    parts.extend(by_slot.remove(&s).unwrap_or_default());
                    let key = Bytes::copy_from_slice(parts[1]);
                    let c = Command::from_args(parts);
                    let mut u = Unit::new(c.raw().clone(), 1, Route::Slot(s), db).key(key);
                    // the position is the command's once its last part is acknowledged
                    if let Some(sh) = shard {
                        u = u.position(sh, if j + 1 == n { off } else { None });
                    }
                    self.send(u)?;
                }
                Ok(())
            }
            _ => {
                if self.opts.skip_cross_slot {
                    self.counts.cross_slot_skipped += 1;
                    if let (Some(s), Some(o)) = (shard, off) {
                        self.send(Unit::marker(s, o))?;
                    }
                    return Ok(());
                }
                Err(Error::invalid(format!(
                    "{} names keys in several slots of the target cluster and cannot be split \
                     into one command per slot (--skip-cross-slot counts and skips such \
                     commands): {}",
                    String::from_utf8_lossy(name),
                    shown(&c)
                )))
            }
        }
    }

    /// The replid of `shard`'s current sync.
    fn replid_of(&self, shard: usize) -> String {
        self.synced
            .lock()
            .ok()
            .and_then(|s| s.get(&shard).map(|s| s.replid.clone()))
            .unwrap_or_default()
    }

    /// Sends the gathered transaction with the position it covers.
    fn send_batch(&mut self) -> Result<()> {
        let Some(key) = self.opts.checkpoint_key.clone() else {
            return Ok(());
        };
        if self.batch.n == 0 {
            return Ok(());
        }
        let b = std::mem::take(&mut self.batch);
        let replid = self.replid_of(b.shard);
        let mut buf = BytesMut::with_capacity(b.buf.len() + 128);
        resp_codec::encode_command(["MULTI"], &mut buf);
        buf.extend_from_slice(&b.buf);
        let db = b.db.to_string();
        let pos = format!("{replid} {}", b.offset.unwrap_or(0));
        resp_codec::encode_command(["SELECT", "0"], &mut buf);
        resp_codec::encode_command([&b"SET"[..], &key, pos.as_bytes()], &mut buf);
        resp_codec::encode_command(["SELECT", &db], &mut buf);
        resp_codec::encode_command(["EXEC"], &mut buf);
        let again = resend_form(&key, &b, &pos)?;
        let u = Unit::new(buf.freeze(), b.n + 5, Route::Slot(0), b.db)
            .key(key)
            .barrier(true)
            .position(b.shard, b.offset)
            .resend_as(again, 1);
        self.send(u)
    }

    /// Adds a command of a live source to the exactly-once transaction.
    fn batch_command(&mut self, c: &CommandEvent, db: u64) -> Result<()> {
        let shard = c.shard.or(self.shard).unwrap_or(0);
        if self.batch.n > 0 && (self.batch.db != db || self.batch.shard != shard) {
            self.send_batch()?;
        }
        // a source transaction is inside ours: its MULTI and EXEC go
        let skip = ["MULTI", "EXEC", "SELECT", "PING", "REPLCONF"]
            .iter()
            .any(|n| c.cmd.is(n))
            || (c.cmd.is("PUBLISH")
                && c.cmd
                    .arg(1)
                    .is_some_and(|ch| ch.starts_with(b"__sentinel__")));
        if !skip {
            self.batch.buf.extend_from_slice(c.cmd.raw());
            self.batch.n += 1;
            self.counts.commands += 1;
        }
        self.batch.db = db;
        self.batch.shard = shard;
        if c.offset.is_some() {
            self.batch.offset = c.offset;
        }
        if self.batch.n >= 256 || self.batch.buf.len() >= 1 << 20 {
            self.send_batch()?;
        }
        Ok(())
    }

    fn end_block(&mut self, exec_off: Option<u64>) -> Result<()> {
        let Some(b) = self.block.take() else {
            return Ok(());
        };
        let mut slots = Vec::new();
        for c in &b.cmds {
            let args: Vec<&[u8]> = c.args().collect();
            if let Keys::At(k) = keys(&args) {
                slots.extend(k.iter().map(|&i| key_slot(args[i])));
            }
        }
        slots.sort_unstable();
        slots.dedup();
        if slots.len() <= 1 || !self.target.info().cluster {
            let mut buf = BytesMut::new();
            resp_codec::encode_command(["MULTI"], &mut buf);
            for c in &b.cmds {
                buf.extend_from_slice(c.raw());
            }
            resp_codec::encode_command(["EXEC"], &mut buf);
            let n = b.cmds.len() as u32;
            let key = b
                .cmds
                .first()
                .and_then(|c| c.arg(1))
                .map(Bytes::copy_from_slice)
                .unwrap_or_default();
            let mut u = Unit::new(
                buf.freeze(),
                n + 2,
                Route::Slot(slots.first().copied().unwrap_or(0)),
                b.db,
            )
            .key(key)
            .barrier(true);
            if let Some(s) = b.shard {
                u = u.position(s, exec_off);
            }
            self.counts.commands += u64::from(n);
            return self.send(u);
        }
        if self.opts.strict_transactions {
            return Err(Error::invalid(format!(
                "a transaction of {} commands names keys in {} slots of the target cluster, \
                 where it cannot stay one transaction (without --strict-transactions its \
                 commands are applied one by one, in order)",
                b.cmds.len(),
                slots.len()
            )));
        }
        self.counts.transactions_split += 1;
        let n = b.cmds.len();
        for (i, c) in b.cmds.into_iter().enumerate() {
            let off = if i + 1 == n { exec_off } else { None };
            self.push_command(c, b.db, b.shard, off)?;
        }
        Ok(())
    }
}

impl Sink for Writer {
    fn key(&mut self, rec: KeyRecord) -> Result<()> {
        self.flush_once()?;
        if self.expired(&rec.head) {
            self.counts.expired += 1;
            return Ok(());
        }
        let db = self.target_db(rec.head.db)?;
        self.key_written();
        let max = self.target.info().max_bulk_len as usize;
        if self.opts.mode != Mode::Commands {
            if let Some(cfg) = &self.cfg {
                let payload =
                    rdb_format::dump_payload_with_meta(&rec.value, &rec.head.key_meta, cfg);
                match payload {
                    Ok(p) if p.len() < max.saturating_sub(1024) => {
                        self.counts.restored += 1;
                        let replace = self.opts.conflict == Conflict::Replace;
                        self.cmds.restore_replace(replace);
                        self.cmds.restore(&rec.head, &p, true)?;
                        self.cmds.flush()?;
                        let buf = std::mem::take(self.cmds.get_mut());
                        let slot = key_slot(&rec.head.key);
                        let u = Unit::new(Bytes::from(buf), 1, Route::Slot(slot), db)
                            .key(rec.head.key.clone())
                            .conflict_on_busy(!replace);
                        let u = match self.shard {
                            Some(s) => u.position(s, None),
                            None => u,
                        };
                        return self.send(u);
                    }
                    Ok(_) => {}
                    // a value the target's version cannot hold as a payload: commands
                    Err(_) if self.opts.mode == Mode::Auto => {}
                    Err(e) => return Err(e.for_key(&rec.head.key).into()),
                }
            }
        }
        self.counts.as_commands += 1;
        let head = rec.head.clone();
        self.key_guard(&head, db)?;
        self.cmds.key(rec)?;
        self.drain_key(&head, db)
    }

    fn start(&mut self, head: &KeyHead) -> Result<()> {
        self.flush_once()?;
        // a key delivered in chunks: commands, chunk by chunk
        if self.expired(head) {
            // its chunks are skipped too (end/chunk see the same head)
            return Ok(());
        }
        let db = self.target_db(head.db)?;
        self.key_written();
        self.counts.as_commands += 1;
        self.key_guard(head, db)?;
        self.cmds.start(head)?;
        self.drain_key(head, db)
    }

    fn chunk(&mut self, head: &KeyHead, chunk: &Chunk) -> Result<()> {
        if head.expire_ms.is_some_and(|t| t <= self.now_ms) {
            return Ok(());
        }
        let db = self.target_db(head.db)?;
        self.cmds.chunk(head, chunk)?;
        self.drain_key(head, db)
    }

    fn end(&mut self, head: &KeyHead) -> Result<()> {
        if head.expire_ms.is_some_and(|t| t <= self.now_ms) {
            self.counts.expired += 1;
            return Ok(());
        }
        let db = self.target_db(head.db)?;
        self.cmds.end(head)?;
        self.drain_key(head, db)
    }

    fn module(&mut self, head: &KeyHead, value: &ModuleValue) -> Result<()> {
        self.flush_once()?;
        let db = self.target_db(head.db)?;
        self.key_written();
        self.counts.restored += 1;
        self.group += 1;
        let replace = self.opts.conflict == Conflict::Replace;
        self.cmds.restore_replace(replace);
        self.cmds.module(head, value)?;
        self.drain_key(head, db)
    }

    fn other(&mut self, item: &Item) -> Result<()> {
        match item {
            Item::Header { version, .. } => {
                self.cmds.other(item)?;
                let mut cfg = crate::print::target_config(Some(self.version), *version)?;
                cfg.lossy(false).compress(self.opts.compress);
                self.cfg = Some(cfg);
            }
            Item::Function(f) if f.name.is_none() => {
                self.flush_once()?;
                self.counts.functions += 1;
                let c = Command::from_args([&b"FUNCTION"[..], b"LOAD", b"REPLACE", &f.code]);
                self.send(Unit::new(c.raw().clone(), 1, Route::AllMasters, 0))?;
            }
            _ => {}
        }
        Ok(())
    }

    fn wants_other_items(&self, _filtered: bool) -> bool {
        true
    }

    fn command(&mut self, c: &CommandEvent) -> Result<()> {
        self.flush_once()?;
        let db = self.target_db(c.db)?;
        if self.opts.checkpoint_key.is_some() && c.offset.is_some() {
            return self.batch_command(c, db);
        }
        if c.cmd.is("MULTI") {
            self.block = Some(Block {
                db,
                shard: c.shard.or(self.shard),
                cmds: Vec::new(),
            });
            return Ok(());
        }
        if c.cmd.is("EXEC") {
            return self.end_block(c.offset);
        }
        if let Some(b) = &mut self.block {
            if !c.cmd.is("SELECT") {
                b.cmds.push(c.cmd.clone());
            }
            return Ok(());
        }
        self.push_command(
            c.cmd.clone(),
            db,
            c.shard
                .or(self.shard)
                .or(Some(0))
                .filter(|_| c.offset.is_some()),
            c.offset,
        )
    }

    fn resync(&mut self, shard: Option<usize>) -> Result<()> {
        if self.opts.flush_target && shard.is_none() {
            let c = Command::from_args(["FLUSHALL"]);
            return self.send(Unit::new(c.raw().clone(), 1, Route::AllMasters, 0));
        }
        let why = match shard {
            Some(n) => format!(
                "shard {n} of the source answered with a full resync: its keys deleted \
                 meanwhile would stay in the target, and no command removes one shard's keys \
                 alone; sync again into an empty target (--flush-target)"
            ),
            None => "the source answered with a full resync: keys it deleted meanwhile would \
                     stay in the target; run again with --flush-target to flush the target \
                     first (or sync into an empty target)"
                .to_owned(),
        };
        Err(Error::invalid(why))
    }

    fn sync_start(&mut self, s: &SyncStart) -> Result<()> {
        let shard = s.shard.unwrap_or(0);
        if s.full && s.resync {
            self.resync(s.shard)?;
        } else if s.full {
            self.flush_once()?;
        }
        self.shard = Some(shard);
        if let Ok(mut synced) = self.synced.lock() {
            synced.insert(
                shard,
                Synced {
                    replid: s.replid.clone(),
                    start: s.offset,
                    rdb_done: !s.full,
                },
            );
        }
        if !s.full {
            // a partial sync: the position is where it starts until commands are acknowledged
            self.send(Unit::marker(shard, s.offset))?;
        }
        Ok(())
    }

    fn offset(&mut self, offset: u64, shard: Option<usize>) -> Result<()> {
        if self.opts.checkpoint_key.is_some() && self.batch.n > 0 {
            // inside the transaction being gathered: it covers this offset too
            self.batch.offset = Some(offset);
            return Ok(());
        }
        let shard = shard.or(self.shard).unwrap_or(0);
        self.send(Unit::marker(shard, offset))
    }

    fn sync_end(&mut self, shard: Option<usize>) -> Result<()> {
        let shard = shard.unwrap_or(0);
        let start = self.synced.lock().ok().and_then(|mut synced| {
            let s = synced.get_mut(&shard)?;
            s.rdb_done = true;
            Some(s.start)
        });
        if let Some(start) = start {
            self.send(Unit::marker(shard, start))?;
            if let Some(key) = self.opts.checkpoint_key.clone() {
                let replid = self.replid_of(shard);
                let pos = format!("{replid} {start}");
                let mut buf = BytesMut::new();
                resp_codec::encode_command(["SELECT", "0"], &mut buf);
                resp_codec::encode_command([&b"SET"[..], &key, pos.as_bytes()], &mut buf);
                // after every key of the snapshot, before any command
                self.send(Unit::new(buf.freeze(), 2, Route::AllMasters, 0).key(key))?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.send_batch()?;
        self.send_out()
    }

    fn finish(&mut self) -> Result<()> {
        self.end_block(None)?;
        self.send_batch()?;
        self.send_out()?;
        self.target.blocking_flush().map_err(sink_err)
    }
}
