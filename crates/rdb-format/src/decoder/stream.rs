//! Streams: listpack nodes, metadata, consumer groups, PELs, IDMP state and NACK zones.

use super::*;

pub(super) fn stream_id(b: &[u8]) -> Result<StreamId, BlobError> {
    if b.len() != 16 {
        return Err(BlobError {
            what: "stream node",
            why: format!("master ID is {} bytes, expected 16", b.len()),
            pos: 0,
        });
    }
    let ms = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
    let seq = u64::from_be_bytes(b[8..].try_into().unwrap_or_default());
    Ok(StreamId { ms, seq })
}

/// Decodes one stream listpack node, checking its shape; its live entries are appended to
/// `out` when given.
pub(super) fn stream_node(
    id: &[u8],
    lp: &Bytes,
    mut out: Option<&mut Vec<StreamEntry>>,
) -> Result<(), BlobError> {
    let master = stream_id(id)?;
    let mut raws = Vec::new();
    encodings::listpack(lp, |e| {
        raws.push(e);
        Ok(())
    })?;
    let bad = |why: String| BlobError {
        what: "stream node",
        why,
        pos: 0,
    };
    let mut it = raws.into_iter();
    let int = |it: &mut std::vec::IntoIter<encodings::Raw>, what: &str| -> Result<i64, BlobError> {
        it.next()
            .and_then(|e| e.as_int(lp))
            .ok_or_else(|| bad(format!("missing or non-integer {what}")))
    };
    let next = |it: &mut std::vec::IntoIter<encodings::Raw>, what: &str| {
        it.next().ok_or_else(|| bad(format!("missing {what}")))
    };
    if it.len() == 0 {
        return Err(bad("an empty listpack in a stream".into()));
    }
    // as Redis' streamValidateListpackIntegrity: exactly count + deleted entries, each with
    // the lp-count its fields give, and nothing after them
    let count = int(&mut it, "entry count")?;
    let deleted = int(&mut it, "deleted count")?;
    let entries = count
        .checked_add(deleted)
        .filter(|n| *n >= 0 && count >= 0 && deleted >= 0)
        .ok_or_else(|| bad(format!("bad entry counts {count} live, {deleted} deleted")))?;
    let nfields = int(&mut it, "master field count")?;
    if nfields < 0 || nfields as usize > lp.len() {
        return Err(bad(format!("bad master field count {nfields}")));
    }
    let mut master_fields = Vec::with_capacity(nfields as usize);
    for _ in 0..nfields {
        master_fields.push(next(&mut it, "master field")?);
    }
    if int(&mut it, "master terminator")? != 0 {
        return Err(bad("master entry is not terminated by 0".into()));
    }
    for _ in 0..entries {
        let flags = int(&mut it, "entry flags")?;
        let ms = int(&mut it, "entry ID ms")? as u64;
        let seq = int(&mut it, "entry ID seq")? as u64;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms),
            seq: master.seq.wrapping_add(seq),
        };
        let mut pairs = Vec::new();
        // the entry's own elements: flags, the two ID parts, values (and field names + count)
        let mut lp_count_want = nfields + 3;
        if flags & 2 != 0 {
            for f in &master_fields {
                pairs.push((*f, next(&mut it, "value")?));
            }
        } else {
            let n = int(&mut it, "field count")?;
            if n < 0 || n as usize > lp.len() {
                return Err(bad(format!("bad field count {n}")));
            }
            for _ in 0..n {
                let f = next(&mut it, "field")?;
                pairs.push((f, next(&mut it, "value")?));
            }
            lp_count_want = 2 * n + 4;
        }
        let lp_count = int(&mut it, "entry lp-count")?;
        if lp_count != lp_count_want {
            return Err(bad(format!(
                "entry {id} has lp-count {lp_count}, its fields make {lp_count_want}"
            )));
        }
        if let (Some(out), 0) = (out.as_deref_mut(), flags & 1) {
            let fields = pairs
                .into_iter()
                .map(|(f, v)| (f.elem(lp), v.elem(lp)))
                .collect();
            out.push(StreamEntry { id, fields });
        }
    }
    if it.len() > 0 {
        return Err(bad(format!(
            "{} elements after the {entries} entries its counts announce",
            it.len()
        )));
    }
    Ok(())
}

pub(super) struct RawGroup {
    pub(super) name: SRef,
    pub(super) last_id: StreamId,
    pub(super) entries_read: Option<u64>,
    pub(super) pel: Vec<(StreamId, u64, u64)>,
    pub(super) consumers: Vec<RawConsumer>,
    pub(super) nacked: Option<Vec<StreamId>>,
}

pub(super) struct RawConsumer {
    pub(super) name: SRef,
    pub(super) seen: u64,
    pub(super) active: Option<u64>,
    pub(super) pel: Vec<StreamId>,
}

pub(super) struct RawTail {
    pub(super) meta: StreamMeta,
    pub(super) groups: Vec<RawGroup>,
    pub(super) idmp: Option<RawIdmp>,
}

pub(super) struct RawIdmp {
    pub(super) duration_s: u64,
    pub(super) max_entries: u64,
    pub(super) producers: Vec<(SRef, Vec<(SRef, StreamId)>)>,
    pub(super) iids_added: u64,
    pub(super) iids_duplicates: u64,
}

pub(super) fn stream_corrupt(why: String) -> ErrorKind {
    ErrorKind::Corrupt {
        what: "stream",
        why,
    }
}

/// The IDMP section of a type 26/27 stream.
pub(super) fn stream_idmp(c: &mut Cur<'_>) -> P<RawIdmp> {
    let at = c.p;
    let duration_s = c.len()?;
    if !(1..=86_400).contains(&duration_s) {
        return c.bad(
            stream_corrupt(format!("IDMP duration {duration_s} s is outside 1..86400")),
            at,
        );
    }
    let at = c.p;
    let max_entries = c.len()?;
    if !(1..=10_000).contains(&max_entries) {
        return c.bad(
            stream_corrupt(format!(
                "IDMP max entries {max_entries} is outside 1..10000"
            )),
            at,
        );
    }
    let n = c.len()?;
    let mut producers = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        let at = c.p;
        let pid = c.string()?;
        if matches!(pid, SRef::Raw(a, b) if a == b) {
            return c.bad(stream_corrupt("empty IDMP producer ID".into()), at);
        }
        let k = c.len()?;
        let mut entries = Vec::with_capacity(k.min(1024) as usize);
        for _ in 0..k {
            let iid = c.string()?;
            entries.push((iid, len_id(c)?));
        }
        producers.push((pid, entries));
    }
    Ok(RawIdmp {
        duration_s,
        max_entries,
        producers,
        iids_added: c.len()?,
        iids_duplicates: c.len()?,
    })
}

pub(super) fn raw_id(c: &mut Cur<'_>) -> P<StreamId> {
    let b: [u8; 16] = c.array()?;
    Ok(StreamId {
        ms: u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
        seq: u64::from_be_bytes(b[8..].try_into().unwrap_or_default()),
    })
}

pub(super) fn len_id(c: &mut Cur<'_>) -> P<StreamId> {
    Ok(StreamId {
        ms: c.len()?,
        seq: c.len()?,
    })
}

pub(super) fn stream_tail(c: &mut Cur<'_>, ty: u8) -> P<RawTail> {
    let mut meta = StreamMeta {
        length: c.len()?,
        last_id: len_id(c)?,
        ..StreamMeta::default()
    };
    if ty >= 19 {
        meta.first_id = Some(len_id(c)?);
        meta.max_deleted_id = Some(len_id(c)?);
        meta.entries_added = Some(c.len()?);
    }
    let ngroups = c.len()?;
    let mut groups = Vec::with_capacity(ngroups.min(64) as usize);
    for _ in 0..ngroups {
        let name = c.string()?;
        let last_id = len_id(c)?;
        // u64::MAX is Redis' "unknown" (SCG_INVALID_ENTRIES_READ)
        let entries_read = if ty >= 19 {
            Some(c.len()?).filter(|n| *n != u64::MAX)
        } else {
            None
        };
        let npel = c.len()?;
        let mut pel = Vec::with_capacity(npel.min(1024) as usize);
        for _ in 0..npel {
            let id = raw_id(c)?;
            let time = c.u64_le()?;
            let count = c.len()?;
            pel.push((id, time, count));
        }
        let ncons = c.len()?;
        let mut consumers = Vec::with_capacity(ncons.min(64) as usize);
        for _ in 0..ncons {
            let name = c.string()?;
            let seen = c.u64_le()?;
            let active = if ty >= 21 { Some(c.u64_le()?) } else { None };
            let n = c.len()?;
            let mut ids = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                ids.push(raw_id(c)?);
            }
            consumers.push(RawConsumer {
                name,
                seen,
                active,
                pel: ids,
            });
        }
        let nacked = if ty >= 27 {
            let n = c.len()?;
            let mut ids = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                ids.push(raw_id(c)?);
            }
            Some(ids)
        } else {
            None
        };
        groups.push(RawGroup {
            name,
            last_id,
            entries_read,
            pel,
            consumers,
            nacked,
        });
    }
    let idmp = if ty >= 26 {
        Some(stream_idmp(c)?)
    } else {
        None
    };
    Ok(RawTail { meta, groups, idmp })
}

impl RawTail {
    pub(super) fn materialize(self, dec: &Decoder, chunk: &Bytes, base: u64) -> Result<StreamMeta> {
        use std::collections::{HashMap, HashSet};
        let bad = |why: String| Err(Error::new(stream_corrupt(why), base));
        let mut meta = self.meta;
        let mut names = HashSet::new();
        for g in self.groups {
            let gname = dec.mat_bytes(chunk, base, g.name)?;
            if !names.insert(gname.clone()) {
                return bad(format!(
                    "consumer group {} twice",
                    crate::error::Shown(&gname)
                ));
            }
            let mut in_pel = HashSet::with_capacity(g.pel.len());
            for p in &g.pel {
                if !in_pel.insert(p.0) {
                    return bad(format!("entry {} twice in a group's pending list", p.0));
                }
            }
            let mut consumers = Vec::with_capacity(g.consumers.len());
            let mut owner = HashMap::new();
            let mut cnames = HashSet::new();
            for c in g.consumers {
                let name = dec.mat_bytes(chunk, base, c.name)?;
                if !cnames.insert(name.clone()) {
                    return bad(format!("consumer {} twice", crate::error::Shown(&name)));
                }
                let mut mine = HashSet::with_capacity(c.pel.len());
                for id in &c.pel {
                    if !in_pel.contains(id) {
                        return bad(format!(
                            "consumer {} has entry {id} pending, the group does not",
                            crate::error::Shown(&name)
                        ));
                    }
                    if !mine.insert(*id) {
                        return bad(format!("entry {id} twice in a consumer's pending list"));
                    }
                    owner.insert(*id, name.clone());
                }
                consumers.push(Consumer {
                    name,
                    seen_time_ms: c.seen,
                    active_time_ms: c.active,
                    pending: c.pel,
                });
            }
            if let Some(nacked) = &g.nacked {
                // the NACK zone lists unowned entries of the group PEL, and only those
                for id in nacked {
                    let why = if !in_pel.contains(id) {
                        "is not in the group's pending list"
                    } else if owner.contains_key(id) {
                        "is owned by a consumer"
                    } else {
                        continue;
                    };
                    return bad(format!("NACK-zone entry {id} {why}"));
                }
            }
            // every pending entry has an owner (in RDB 14, or is in the NACK zone)
            let released: HashSet<StreamId> = g.nacked.iter().flatten().copied().collect();
            if let Some(p) = g
                .pel
                .iter()
                .find(|p| !owner.contains_key(&p.0) && !released.contains(&p.0))
            {
                return bad(format!("pending entry {} has no consumer", p.0));
            }
            let pending = g
                .pel
                .into_iter()
                .map(|(id, t, n)| PendingEntry {
                    id,
                    consumer: owner.get(&id).cloned(),
                    delivery_time_ms: t,
                    delivery_count: n,
                })
                .collect();
            meta.groups.push(ConsumerGroup {
                name: gname,
                last_id: g.last_id,
                entries_read: g.entries_read,
                pending,
                consumers,
                nacked: g.nacked,
            });
        }
        if let Some(raw) = self.idmp {
            let mut producers = Vec::with_capacity(raw.producers.len());
            for (pid, entries) in raw.producers {
                producers.push(IdmpProducer {
                    id: dec.mat_bytes(chunk, base, pid)?,
                    entries: entries
                        .into_iter()
                        .map(|(iid, id)| {
                            Ok(IdmpEntry {
                                iid: dec.mat_bytes(chunk, base, iid)?,
                                id,
                            })
                        })
                        .collect::<Result<_>>()?,
                });
            }
            meta.idmp = Some(StreamIdmp {
                duration_s: raw.duration_s,
                max_entries: raw.max_entries,
                producers,
                iids_added: raw.iids_added,
                iids_duplicates: raw.iids_duplicates,
            });
        }
        Ok(meta)
    }
}

impl Decoder {
    pub(super) fn step_stream_tail<S: Source>(
        &mut self,
        src: &mut S,
        seq: Box<SeqState>,
    ) -> Result<bool> {
        self.expect = "stream metadata";
        let SeqKind::StreamNodes(ty) = seq.kind else {
            unreachable!("only streams have a tail")
        };
        let start = self.pos;
        let b = src.bytes();
        let mut c = Cur::new(b, self.config.limits.max_string);
        c.lenient = self.config.lenient;
        match stream_tail(&mut c, ty) {
            Ok(raw) => {
                if raw.meta.length > 0 && seq.total == 0 {
                    return Err(self.err(
                        stream_corrupt(format!(
                            "length {} with no listpack of entries",
                            raw.meta.length
                        )),
                        0,
                    ));
                }
                let chunk = self.consume(src, c.p);
                let meta = raw.materialize(self, &chunk, start)?;
                self.finish_seq(seq, Some(meta));
                Ok(true)
            }
            Err(s) => {
                self.state = State::StreamTail(seq);
                self.stop_err(s)
            }
        }
    }
}
