//! `cargo xtask differential [--cases N] [--files N] [--seed S]`: our verdict and content
//! against a real redis-server's on mutated values, through `RESTORE` and as whole files.
//!
//! The bases are the DUMP payloads of every key of the Redis 7.0 fixtures (real encodings),
//! the same values written by our encoder uncompressed (so mutations land inside ziplists,
//! listpacks and intsets), and hand-made payloads with a duplicated member. Each case mutates
//! one base (bit flips, byte overwrites, length bytes moved by one, several at once), seals it
//! with a fresh CRC so the structure is what is tested, and hands it to
//!
//! * `RESTORE` on a redis-server running with `sanitize-dump-payload yes` (the same
//!   `rdbLoadObject` and deep checks as loading a file, without the server exiting on a corrupt
//!   file), and
//! * our decoder, building the value (`dump`) and checking it without building (`check`).
//!
//! It counts the files Redis refuses that we pass ("missed"), the files both accept whose
//! content differs ("differs", compared through a DUMP of what Redis restored), and the files
//! we refuse that Redis accepts ("stricter"). `missed` and `differs` must be zero.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use rdb_format::{Config, EncodeConfig, Item, Value};
use test_support::rdb::{len, string};
use test_support::{Client, Resp, Server};

use crate::bench::arg;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The counts of one run.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) cases: u64,
    pub(crate) both_refuse: u64,
    pub(crate) both_accept: u64,
    pub(crate) missed: u64,
    pub(crate) differs: u64,
    pub(crate) stricter: u64,
}

/// A value in a form that ignores what encodings change.
fn canon(v: &Value) -> String {
    let t = |e: &rdb_format::Elem| e.to_bytes().to_vec();
    match v {
        Value::String(s) => format!("S{s:?}"),
        Value::List(l) => format!("L{:?}", l.iter().map(t).collect::<Vec<_>>()),
        Value::Set(s) => {
            let mut m: Vec<_> = s.iter().map(t).collect();
            m.sort();
            format!("T{m:?}")
        }
        Value::SortedSet(z) => {
            let mut m: Vec<_> = z.iter().map(|(e, s)| (t(e), s.to_bits())).collect();
            m.sort();
            format!("Z{m:?}")
        }
        Value::Hash(h) => {
            let mut m: Vec<_> = h
                .iter()
                .map(|f| (t(&f.field), t(&f.value), f.expire_ms))
                .collect();
            m.sort();
            format!("H{m:?}")
        }
        Value::Stream(s) => {
            let entries: Vec<_> = s
                .entries
                .iter()
                .map(|e| {
                    (
                        e.id,
                        e.fields
                            .iter()
                            .map(|(f, v)| (t(f), t(v)))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            // groups and consumers are maps by name (Redis keeps them in sorted trees)
            let mut groups: Vec<_> = s
                .meta
                .groups
                .iter()
                .map(|g| {
                    let mut consumers: Vec<_> =
                        g.consumers.iter().map(|c| (&c.name, &c.pending)).collect();
                    consumers.sort();
                    (&g.name, g.last_id, &g.pending, consumers)
                })
                .collect();
            groups.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "X{entries:?} {} {:?} {:?}",
                s.meta.length, s.meta.last_id, groups
            )
        }
        other => format!("{other:?}"),
    }
}

/// A payload body (type byte + value) sealed as a DUMP payload of `version`.
fn seal(body: &[u8], version: u16) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&version.to_le_bytes());
    let crc = rdb_format::crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// The payload as the only key of an RDB file, for `check`'s path (no values built).
fn as_file(payload: &[u8]) -> Vec<u8> {
    let body = &payload[..payload.len() - 10];
    let version = u16::from_le_bytes([payload[payload.len() - 10], payload[payload.len() - 9]]);
    let mut f = format!("REDIS{version:04}").into_bytes();
    f.push(body[0]);
    f.extend_from_slice(&[1, b'k']);
    f.extend_from_slice(&body[1..]);
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    f
}

fn ours_checked(payload: &[u8]) -> bool {
    let mut c = Config::default();
    c.skip_values(true).verify_checksum(false);
    let file = as_file(payload);
    let total = file.len() as u64;
    let mut dec = rdb_format::Decoder::with_config(c);
    let mut src = bytes::Bytes::from(file);
    let mut keys = 0;
    loop {
        match dec.decode_eof(&mut src) {
            Ok(Some(Item::KeyChecked(_) | Item::Key(_))) => keys += 1,
            Ok(Some(_)) => {}
            // the value must end where the payload does: one key, then our EOF
            Ok(None) => return keys == 1 && dec.offset() == total,
            Err(_) => return false,
        }
    }
}

/// Bases: real DUMPs, our uncompressed encodings, and payloads with a repeated member.
fn bases(c: &mut Client, version: u16) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for db in 0..16 {
        c.ok(&["SELECT", &db.to_string()])?;
        // sorted: SCAN's order changes from one server process to the next
        let mut keys = c.keys()?;
        keys.sort();
        for k in keys {
            if let Resp::Bulk(Some(p)) = c.cmd_bytes(&[b"DUMP", &k])? {
                out.push(p);
            }
        }
    }
    c.ok(&["SELECT", "0"])?;
    // a hashtable's order follows the server's random hash seed: put the members of those in
    // byte order, so that a seed gives the same cases on every run
    for p in &mut out {
        if !matches!(p[0], 2 | 4) {
            continue;
        }
        let Ok(mut d) = rdb_format::decode_dump(p) else {
            continue;
        };
        match &mut d.value {
            Value::Set(m) => m.sort_by_key(rdb_format::Elem::to_bytes),
            Value::Hash(h) => h.sort_by_key(|f| f.field.to_bytes()),
            _ => continue,
        }
        let mut body = vec![p[0]];
        match &d.value {
            Value::Set(m) => {
                len(m.len() as u64, &mut body);
                m.iter().for_each(|e| string(&e.to_bytes(), &mut body));
            }
            Value::Hash(h) => {
                len(h.len() as u64, &mut body);
                for f in h {
                    string(&f.field.to_bytes(), &mut body);
                    string(&f.value.to_bytes(), &mut body);
                }
            }
            _ => {}
        }
        *p = seal(&body, version);
    }
    let mut extra = Vec::new();
    let mut cfg = EncodeConfig::new(u32::from(version))?;
    cfg.compress(false);
    for p in &out {
        let Ok(d) = rdb_format::decode_dump(p) else {
            continue;
        };
        if let Ok(ours) = rdb_format::dump_payload(&d.value, &cfg) {
            extra.push(ours.to_vec());
        }
        // the same members once more, in the hashtable layouts
        let mut body = Vec::new();
        match &d.value {
            Value::Set(m) if !m.is_empty() => {
                body.push(2);
                len(m.len() as u64 + 1, &mut body);
                for e in m.iter().chain(m.first()) {
                    string(&e.to_bytes(), &mut body);
                }
            }
            Value::Hash(h) if !h.is_empty() && h.iter().all(|f| f.expire_ms.is_none()) => {
                body.push(4);
                len(h.len() as u64 + 1, &mut body);
                for f in h.iter().chain(h.last()) {
                    string(&f.field.to_bytes(), &mut body);
                    string(&f.value.to_bytes(), &mut body);
                }
            }
            Value::SortedSet(z) if !z.is_empty() => {
                body.push(5);
                len(z.len() as u64 + 1, &mut body);
                for (m, s) in z.iter().chain(z.first()) {
                    string(&m.to_bytes(), &mut body);
                    body.extend_from_slice(&s.to_le_bytes());
                }
            }
            _ => {}
        }
        if !body.is_empty() {
            extra.push(seal(&body, version));
        }
    }
    out.extend(extra);
    Ok(out)
}

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let n = base.len() - 10;
    let mut body = base[..n].to_vec();
    let version = u16::from_le_bytes([base[n], base[n + 1]]);
    let times = if rng.below(4) == 0 {
        1 + rng.below(4)
    } else {
        1
    };
    for _ in 0..times {
        // the type byte stays: a different type is another test
        let at = 1 + rng.below(n.saturating_sub(1));
        if at >= body.len() {
            continue;
        }
        match rng.below(4) {
            0 => body[at] ^= 1 << rng.below(8),
            1 => body[at] = rng.next() as u8,
            2 => body[at] = body[at].wrapping_add(1),
            _ => body[at] = body[at].wrapping_sub(1),
        }
    }
    seal(&body, version)
}

pub(crate) fn run_cases(cases: u64, seed: u64, verbose: bool) -> Result<Counts> {
    let bin = test_support::default_server()?;
    let fixture = super::root().join("testdata/redis-7.0-compact.rdb");
    let plain = super::root().join("testdata/redis-7.0-plain.rdb");
    let args = [("sanitize-dump-payload", "yes")];
    let mut all = Vec::new();
    for f in [&fixture, &plain] {
        let s = Server::start(&bin, &args, Some(f)).context("redis-server with a fixture")?;
        let mut c = s.client()?;
        all.extend(bases(&mut c, 10)?);
    }
    if all.is_empty() {
        bail!("no base payloads");
    }
    let server = Server::start(&bin, &args, None)?;
    let mut c = server.client()?;
    let mut rng = Rng(seed | 1);
    let mut n = Counts::default();
    let mut samples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for _ in 0..cases {
        let base = &all[rng.below(all.len())];
        let p = mutate(base, &mut rng);
        n.cases += 1;
        let redis = c.cmd_bytes(&[b"RESTORE", b"dk", b"0", &p, b"REPLACE"])?;
        let redis_ok = matches!(&redis, Resp::Simple(s) if s == "OK");
        let ours = rdb_format::decode_dump(&p);
        let checked = ours_checked(&p);
        if ours.is_ok() != checked {
            bail!(
                "dump and check disagree on {}: {:?}",
                hex(&p),
                ours.as_ref().err()
            );
        }
        let kind = match (redis_ok, ours) {
            (false, Err(_)) => {
                n.both_refuse += 1;
                continue;
            }
            (false, Ok(_)) => {
                n.missed += 1;
                "missed"
            }
            (true, Err(e)) => {
                n.stricter += 1;
                samples.entry("stricter").or_default().push(format!("{e}"));
                continue;
            }
            (true, Ok(d)) => {
                let back = match c.cmd_bytes(&[b"DUMP", b"dk"])? {
                    Resp::Bulk(Some(b)) => rdb_format::decode_dump(&b)
                        .map_err(|e| anyhow::anyhow!("redis' own DUMP does not decode: {e}"))?,
                    // an empty collection restored is no key at all
                    other => bail!("DUMP after RESTORE: {other:?}"),
                };
                let (theirs, ours) = (canon(&back.value), canon(&d.value));
                if theirs == ours {
                    n.both_accept += 1;
                    continue;
                }
                n.differs += 1;
                let at = theirs
                    .bytes()
                    .zip(ours.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                let around = |t: &str| {
                    t.get(at.saturating_sub(80)..(at + 80).min(t.len()))
                        .unwrap_or("")
                        .to_owned()
                };
                samples
                    .entry("differs, redis then ours")
                    .or_default()
                    .push(format!("{}\n    {}", around(&theirs), around(&ours)));
                "differs"
            }
        };
        let why = match &redis {
            Resp::Error(e) => e.clone(),
            _ => "OK".into(),
        };
        samples
            .entry(kind)
            .or_default()
            .push(format!("{} (redis: {why})", hex(&p)));
    }
    if verbose || n.missed + n.differs > 0 {
        for (k, v) in &samples {
            for s in v.iter().take(5) {
                eprintln!("differential {k}: {s}");
            }
        }
    }
    Ok(n)
}

/// The payload's value as the only key (`dk`) of an RDB file with a valid checksum.
fn file_of(payload: &[u8]) -> Vec<u8> {
    let n = payload.len() - 10;
    let version = u16::from_le_bytes([payload[n], payload[n + 1]]);
    let mut f = format!("REDIS{version:04}").into_bytes();
    f.extend_from_slice(&[0xFE, 0]);
    f.push(payload[0]);
    f.extend_from_slice(&[2, b'd', b'k']);
    f.extend_from_slice(&payload[1..n]);
    f.push(0xFF);
    let crc = rdb_format::crc64(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// Whole files: the mutated value as the only key of a file a redis-server loads at start
/// (with `sanitize-dump-payload yes`: refused means the server exits), against `check` and
/// `dump` on the same file. Slower (a server per case), so fewer cases.
pub(crate) fn run_file_cases(cases: u64, seed: u64) -> Result<Counts> {
    let bin = test_support::default_server()?;
    let args = [("sanitize-dump-payload", "yes")];
    let fixture = super::root().join("testdata/redis-7.0-compact.rdb");
    let s = Server::start(&bin, &args, Some(&fixture))?;
    let all = bases(&mut s.client()?, 10)?;
    drop(s);
    let dir = std::env::temp_dir().join(format!("replicator-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rng = Rng(seed | 1);
    let mut n = Counts::default();
    for i in 0..cases {
        let p = mutate(&all[rng.below(all.len())], &mut rng);
        let file = file_of(&p);
        let path = dir.join(format!("case-{i}.rdb"));
        std::fs::write(&path, &file)?;
        n.cases += 1;
        let ours: Result<Vec<Item>, _> =
            rdb_format::BytesReader::new(bytes::Bytes::from(file.clone())).collect();
        let mut c = Config::default();
        c.skip_values(true);
        let checked: Result<Vec<Item>, _> =
            rdb_format::BytesReader::with_config(bytes::Bytes::from(file.clone()), c).collect();
        if ours.is_ok() != checked.is_ok() {
            bail!("dump and check disagree on {}", path.display());
        }
        let redis = Server::start(&bin, &args, Some(&path));
        match (redis, ours) {
            (Err(_), Err(_)) => n.both_refuse += 1,
            (Err(e), Ok(_)) => {
                n.missed += 1;
                eprintln!("differential file missed: {} ({e:#})", hex(&file));
            }
            (Ok(_), Err(_)) => n.stricter += 1,
            (Ok(server), Ok(items)) => {
                let mut c = server.client()?;
                let ours = items.into_iter().find_map(|i| match i {
                    Item::Key(k) => Some(k.value),
                    _ => None,
                });
                let theirs = match c.cmd_bytes(&[b"DUMP", b"dk"])? {
                    Resp::Bulk(Some(b)) => Some(rdb_format::decode_dump(&b)?.value),
                    _ => None,
                };
                match (theirs, ours) {
                    (Some(t), Some(o)) if canon(&t) == canon(&o) => n.both_accept += 1,
                    // Redis drops an empty collection when it loads a file; we report it
                    (None, Some(o)) if is_empty(&o) => n.both_accept += 1,
                    (t, o) => {
                        n.differs += 1;
                        eprintln!(
                            "differential file differs: {} redis {t:?} ours {o:?}",
                            hex(&file)
                        );
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(n)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::List(l) | Value::Set(l) => l.is_empty(),
        Value::SortedSet(z) => z.is_empty(),
        Value::Hash(h) => h.is_empty(),
        _ => false,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let cases = arg(args, "--cases", 20_000);
    let files = arg(args, "--files", 2_000);
    let seed = arg(args, "--seed", 0x5eed);
    let n = run_cases(cases, seed, true)?;
    let f = run_file_cases(files, seed)?;
    eprint!("values (RESTORE): ");
    let values = report(&n, seed);
    eprint!("whole files (server start): ");
    report(&f, seed)?;
    values
}

pub(crate) fn report(n: &Counts, seed: u64) -> Result<()> {
    eprintln!(
        "differential (seed {seed:#x}): {} cases: both refuse {}, both accept the same {}, \
         we refuse what redis accepts {}; redis refuses what we pass {}; content differs {}",
        n.cases, n.both_refuse, n.both_accept, n.stricter, n.missed, n.differs
    );
    if n.missed + n.differs > 0 {
        bail!("{} missed, {} differ", n.missed, n.differs);
    }
    Ok(())
}
