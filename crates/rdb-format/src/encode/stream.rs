//! Streams: listpack nodes, metadata, consumer groups and PELs, IDMP state, NACK zones (and
//! what a lossy downgrade drops of them).

use super::*;

pub(super) fn stream_nodes(entries: &[StreamEntry], per: usize) -> Vec<(StreamId, Vec<u8>)> {
    let mut nodes = Vec::new();
    for group in entries.chunks(per.max(1)) {
        let master = group[0].id;
        let master_fields: Vec<&Elem> = group[0].fields.iter().map(|(f, _)| f).collect();
        let mut lp = Listpack::new();
        lp.int(group.len() as i64);
        lp.int(0);
        lp.int(master_fields.len() as i64);
        master_fields.iter().for_each(|f| lp.elem(f));
        lp.int(0);
        for e in group {
            let same = e.fields.len() == master_fields.len()
                && e.fields
                    .iter()
                    .zip(&master_fields)
                    .all(|((f, _), m)| f.to_bytes() == m.to_bytes());
            lp.int(if same { 2 } else { 0 });
            lp.int(e.id.ms.wrapping_sub(master.ms) as i64);
            lp.int(e.id.seq.wrapping_sub(master.seq) as i64);
            if same {
                e.fields.iter().for_each(|(_, v)| lp.elem(v));
            } else {
                lp.int(e.fields.len() as i64);
                for (f, v) in &e.fields {
                    lp.elem(f);
                    lp.elem(v);
                }
            }
            let n = e.fields.len() as i64;
            lp.int(if same { n + 3 } else { 2 * n + 4 });
        }
        nodes.push((master, lp.finish()));
    }
    nodes
}

/// A group's read counter as Redis estimates it when loading a stream that does not carry one
/// (`streamEstimateDistanceFromFirstEverEntry`); `u64::MAX` is Redis' "unknown".
pub(super) fn estimate_entries_read(
    length: u64,
    last: StreamId,
    first: StreamId,
    deleted: StreamId,
    added: u64,
    id: StreamId,
) -> u64 {
    const UNKNOWN: u64 = u64::MAX;
    if added == 0 {
        return 0;
    }
    if (length == 0 && id <= last) || id == last {
        return added;
    }
    if id > last {
        return UNKNOWN;
    }
    if deleted == StreamId::default() || deleted < first {
        if id < first {
            return added - length;
        }
        if id == first {
            return added - length + 1;
        }
    }
    UNKNOWN
}

/// What a target of `cfg`'s version cannot hold of a stream's metadata: refused, or counted
/// as dropped when lossy.
pub(super) fn stream_check(meta: &StreamMeta, cfg: &EncodeConfig) -> Result<Dropped> {
    let level = cfg.level();
    let idmp_lost = level < 13 && meta.idmp.as_ref().is_some_and(|i| !i.is_default());
    let nacked: u64 = meta
        .groups
        .iter()
        .map(|g| g.nacked.as_ref().map_or(0, Vec::len) as u64)
        .sum();
    let nack_lost = level < 14 && nacked > 0;
    if (idmp_lost || nack_lost) && !cfg.lossy {
        return Err(cannot(if idmp_lost {
            "stream IDMP state needs RDB 13 (Redis 8.6) or newer (--lossy drops it)"
        } else {
            "a stream NACK zone needs RDB 14 (Redis 8.8) or newer (--lossy drops it)"
        }));
    }
    let mut here = Dropped::default();
    if idmp_lost {
        here.idmp_streams = 1;
    }
    if nack_lost {
        here.nacked_entries = nacked;
    }
    Ok(here)
}

/// One listpack node: its master ID as a 16-byte key, then the listpack.
pub(super) fn put_stream_node(out: &mut BytesMut, id: StreamId, lp: &[u8], compress: bool) {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&id.ms.to_be_bytes());
    key[8..].copy_from_slice(&id.seq.to_be_bytes());
    put_raw_string(out, &key, false);
    put_raw_string(out, lp, compress);
}

/// The stream type byte for the target.
pub(super) fn stream_type(cfg: &EncodeConfig) -> u8 {
    match cfg.level() {
        9 => 15,
        10 => 19,
        11 | 12 => 21,
        13 => 26,
        _ => 27,
    }
}

pub(super) fn stream(
    s: &Stream,
    cfg: &EncodeConfig,
    out: &mut BytesMut,
    dropped: &mut Dropped,
) -> Result<u8> {
    let here = stream_check(&s.meta, cfg)?;
    let nodes = stream_nodes(&s.entries, cfg.stream_node_entries);
    put_len(out, nodes.len() as u64);
    for (id, lp) in &nodes {
        put_stream_node(out, *id, lp, cfg.compress);
    }
    stream_tail(&s.meta, s.entries.first().map(|e| e.id), cfg, out);
    dropped.add(here);
    Ok(stream_type(cfg))
}

/// What follows the nodes: length, IDs, counters, groups with their PELs and consumers, IDMP
/// state. `first_entry`: the first entry's ID, for a stream from before RDB 10.
pub(super) fn stream_tail(
    m: &StreamMeta,
    first_entry: Option<StreamId>,
    cfg: &EncodeConfig,
    out: &mut BytesMut,
) {
    let z = cfg.compress;
    let level = cfg.level();
    let nack_lost = level < 14;
    put_len(out, m.length);
    put_len(out, m.last_id.ms);
    put_len(out, m.last_id.seq);
    // what a stream from before RDB 10 gets when Redis loads it
    let first = m.first_id.or(first_entry).unwrap_or_default();
    let deleted = m.max_deleted_id.unwrap_or_default();
    let added = m.entries_added.unwrap_or(m.length);
    if level >= 10 {
        put_len(out, first.ms);
        put_len(out, first.seq);
        put_len(out, deleted.ms);
        put_len(out, deleted.seq);
        put_len(out, added);
    }
    put_len(out, m.groups.len() as u64);
    for g in &m.groups {
        put_raw_string(out, &g.name, z);
        put_len(out, g.last_id.ms);
        put_len(out, g.last_id.seq);
        if level >= 10 {
            // a stream read from RDB 10+ said "unknown" itself; one from RDB 9 had no counter,
            // and gets the one Redis computes when loading it
            let read = match g.entries_read {
                Some(n) => n,
                None if m.first_id.is_some() => u64::MAX,
                None => {
                    estimate_entries_read(m.length, m.last_id, first, deleted, added, g.last_id)
                }
            };
            put_len(out, read);
        }
        // released entries leave the pending list with the NACK zone they belong to
        let pending: Vec<_> = match &g.nacked {
            Some(n) if nack_lost && !n.is_empty() => {
                let gone: HashSet<StreamId> = n.iter().copied().collect();
                g.pending.iter().filter(|p| !gone.contains(&p.id)).collect()
            }
            _ => g.pending.iter().collect(),
        };
        put_len(out, pending.len() as u64);
        for p in pending {
            put_raw_id(out, p.id);
            out.put_u64_le(p.delivery_time_ms);
            put_len(out, p.delivery_count);
        }
        put_len(out, g.consumers.len() as u64);
        for c in &g.consumers {
            put_raw_string(out, &c.name, z);
            out.put_u64_le(c.seen_time_ms);
            if level >= 11 {
                out.put_u64_le(c.active_time_ms.unwrap_or(c.seen_time_ms));
            }
            put_len(out, c.pending.len() as u64);
            for id in &c.pending {
                put_raw_id(out, *id);
            }
        }
        if level >= 14 {
            let ids = g.nacked.as_deref().unwrap_or_default();
            put_len(out, ids.len() as u64);
            for id in ids {
                put_raw_id(out, *id);
            }
        }
    }
    if level >= 13 {
        let default = crate::value::StreamIdmp::default();
        let i = m.idmp.as_ref().unwrap_or(&default);
        put_len(out, i.duration_s);
        put_len(out, i.max_entries);
        put_len(out, i.producers.len() as u64);
        for p in &i.producers {
            put_raw_string(out, &p.id, z);
            put_len(out, p.entries.len() as u64);
            for e in &p.entries {
                put_raw_string(out, &e.iid, z);
                put_len(out, e.id.ms);
                put_len(out, e.id.seq);
            }
        }
        put_len(out, i.iids_added);
        put_len(out, i.iids_duplicates);
    }
}
