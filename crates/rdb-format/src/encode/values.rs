//! Values: the encoding each type gets for the target (packed below the thresholds, as the
//! server would choose), module key metadata, arrays.

use super::*;

/// A compact list of elements: a listpack, or a ziplist for RDB 9.
pub(super) enum Packed {
    Lp(Listpack),
    Zl(Ziplist),
}

impl Packed {
    pub(super) fn new(cfg: &EncodeConfig) -> Self {
        if cfg.level() >= 10 {
            Self::Lp(Listpack::new())
        } else {
            Self::Zl(Ziplist::new())
        }
    }
    pub(super) fn elem(&mut self, e: &Elem) {
        match self {
            Self::Lp(l) => l.elem(e),
            Self::Zl(z) => z.elem(e),
        }
    }
    pub(super) fn str(&mut self, s: &[u8]) {
        match self {
            Self::Lp(l) => l.str(s),
            Self::Zl(z) => z.str(s),
        }
    }
    pub(super) fn len_bytes(&self) -> usize {
        match self {
            Self::Lp(l) => l.buf.len(),
            Self::Zl(z) => z.buf.len(),
        }
    }
    pub(super) fn count(&self) -> usize {
        match self {
            Self::Lp(l) => l.count,
            Self::Zl(z) => z.count,
        }
    }
    pub(super) fn finish(self) -> Vec<u8> {
        match self {
            Self::Lp(l) => l.finish(),
            Self::Zl(z) => z.finish(),
        }
    }
}

/// A quicklist built node by node: elements go into the current node until the next one does
/// not fit (`list_node_entries`, `list_node_bytes`); each full node is written out at once.
pub(super) struct ListNodes {
    cur: Packed,
    /// Nodes written so far.
    pub(super) written: u64,
}

impl std::fmt::Debug for ListNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ListNodes({} written, {} pending)",
            self.written,
            self.cur.count()
        )
    }
}

impl ListNodes {
    pub(super) fn new(cfg: &EncodeConfig) -> Self {
        Self {
            cur: Packed::new(cfg),
            written: 0,
        }
    }

    /// Adds `e`, writing the current node to `out` first when `e` does not fit in it.
    pub(super) fn push(&mut self, e: &Elem, cfg: &EncodeConfig, out: &mut BytesMut) {
        let cur = &self.cur;
        if cur.count() > 0
            && (cur.count() >= cfg.list_node_entries
                || cur.len_bytes() + e.len() > cfg.list_node_bytes)
        {
            self.finish(cfg, out);
        }
        self.cur.elem(e);
    }

    /// Writes the current node to `out`, if it holds anything.
    pub(super) fn finish(&mut self, cfg: &EncodeConfig, out: &mut BytesMut) {
        if self.cur.count() == 0 {
            return;
        }
        let node = std::mem::replace(&mut self.cur, Packed::new(cfg)).finish();
        if cfg.level() >= 10 {
            put_len(out, 2); // a packed (listpack) node
        }
        put_raw_string(out, &node, cfg.compress);
        self.written += 1;
    }
}

/// The type byte of a quicklist for the target: of listpacks (RDB 10+) or ziplists.
pub(super) fn list_type(cfg: &EncodeConfig) -> u8 {
    if cfg.level() >= 10 { 18 } else { 14 }
}

pub(super) fn unique<'a>(items: impl Iterator<Item = &'a Elem>, what: &'static str) -> Result<()> {
    // 128-bit hashes of the members' texts: a false duplicate is out of reach, and nothing is
    // copied (the decoder's check works the same way)
    let mut seen: HashSet<u128, std::hash::BuildHasherDefault<crate::decoder::U128Hasher>> =
        HashSet::default();
    for e in items {
        if !seen.insert(e.with_bytes(xxhash_rust::xxh3::xxh3_128)) {
            return Err(EncodeError::new(EncodeErrorKind::Invalid {
                what,
                why: format!("duplicate element {e:?}"),
            }));
        }
    }
    Ok(())
}

/// The shortest text that reads back as the same double, as a sorted set listpack stores it.
pub(super) fn score_text(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if d.fract() == 0.0 && d.abs() < 1e17 {
        return format!("{}", d as i64);
    }
    ryu::Buffer::new().format_finite(d).to_owned()
}

/// Writes a value's body (what follows the type byte) and returns the type byte.
pub(super) fn object(
    value: &Value,
    cfg: &EncodeConfig,
    out: &mut BytesMut,
    dropped: &mut Dropped,
) -> Result<u8> {
    let z = cfg.compress;
    Ok(match value {
        Value::String(s) => {
            put_string(out, s, z);
            0
        }
        Value::List(items) => {
            // the node count goes before the nodes
            let mut body = BytesMut::new();
            let mut nodes = ListNodes::new(cfg);
            items.iter().for_each(|e| nodes.push(e, cfg, &mut body));
            nodes.finish(cfg, &mut body);
            put_len(out, nodes.written);
            out.put_slice(&body);
            list_type(cfg)
        }
        Value::Set(items) => {
            unique(items.iter(), "set")?;
            let ints: Option<Vec<i64>> = items
                .iter()
                .map(|e| match e {
                    Elem::Int(i) => Some(*i),
                    Elem::Bytes(b) => canonical_int(b),
                })
                .collect();
            match ints {
                Some(v) if !v.is_empty() && v.len() <= cfg.set_max_intset_entries => {
                    put_raw_string(out, &intset::encode(v), z);
                    11
                }
                _ if cfg.level() >= 11
                    && !items.is_empty()
                    && items.len() <= cfg.set_max_listpack_entries
                    && items.iter().all(|e| e.len() <= cfg.set_max_listpack_value) =>
                {
                    let mut lp = Listpack::new();
                    items.iter().for_each(|e| lp.elem(e));
                    put_raw_string(out, &lp.finish(), z);
                    20
                }
                _ => {
                    put_len(out, items.len() as u64);
                    items.iter().for_each(|e| put_elem(out, e, z));
                    2
                }
            }
        }
        Value::SortedSet(items) => {
            unique(items.iter().map(|(m, _)| m), "sorted set")?;
            if items.iter().any(|(_, s)| s.is_nan()) {
                return Err(cannot("a sorted set score is NaN, which Redis cannot hold"));
            }
            if !items.is_empty()
                && items.len() <= cfg.zset_max_listpack_entries
                && items
                    .iter()
                    .all(|(m, _)| m.len() <= cfg.zset_max_listpack_value)
            {
                // compact sorted sets are kept in (score, member) order
                let mut sorted: Vec<(Bytes, f64)> =
                    items.iter().map(|(m, s)| (m.to_bytes(), *s)).collect();
                sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                let mut p = Packed::new(cfg);
                for (m, s) in &sorted {
                    p.str(m);
                    p.str(score_text(*s).as_bytes());
                }
                put_raw_string(out, &p.finish(), z);
                if cfg.level() >= 10 { 17 } else { 12 }
            } else {
                put_len(out, items.len() as u64);
                for (m, s) in items {
                    put_elem(out, m, z);
                    out.put_f64_le(*s);
                }
                5
            }
        }
        Value::Hash(fields) => {
            unique(fields.iter().map(|f| &f.field), "hash")?;
            if fields.iter().any(|f| f.expire_ms.is_some()) {
                return hash_with_ttls(fields, cfg, out);
            }
            if !fields.is_empty()
                && fields.len() <= cfg.hash_max_listpack_entries
                && fields.iter().all(|f| {
                    f.field.len() <= cfg.hash_max_listpack_value
                        && f.value.len() <= cfg.hash_max_listpack_value
                })
            {
                let mut p = Packed::new(cfg);
                for f in fields {
                    p.elem(&f.field);
                    p.elem(&f.value);
                }
                put_raw_string(out, &p.finish(), z);
                if cfg.level() >= 10 { 16 } else { 13 }
            } else {
                put_len(out, fields.len() as u64);
                for f in fields {
                    put_elem(out, &f.field, z);
                    put_elem(out, &f.value, z);
                }
                4
            }
        }
        Value::Stream(s) => stream(s, cfg, out, dropped)?,
        Value::Module(m) => {
            out.put_slice(&m.raw);
            7
        }
        Value::Array(a) => array(a, cfg, out)?,
    })
}

pub(super) fn hash_with_ttls(
    fields: &[HashField],
    cfg: &EncodeConfig,
    out: &mut BytesMut,
) -> Result<u8> {
    let z = cfg.compress;
    if cfg.valkey() {
        // Valkey 9 HASH_2: field, value, absolute expiry (u64::MAX: none)
        put_len(out, fields.len() as u64);
        for f in fields {
            put_elem(out, &f.field, z);
            put_elem(out, &f.value, z);
            out.put_u64_le(f.expire_ms.unwrap_or(u64::MAX));
        }
        return Ok(22);
    }
    if cfg.version < 12 {
        return Err(cannot(
            "hash field TTLs need RDB 12 (Redis 7.4+) or Valkey 9",
        ));
    }
    // Redis HASH_METADATA: the smallest expiry, then [ttl - min + 1 | 0][field][value]
    let min = fields.iter().filter_map(|f| f.expire_ms).min().unwrap_or(0);
    out.put_u64_le(min);
    put_len(out, fields.len() as u64);
    for f in fields {
        put_len(out, f.expire_ms.map_or(0, |t| t - min + 1));
        put_elem(out, &f.field, z);
        put_elem(out, &f.value, z);
    }
    Ok(24)
}

/// Writes a KEY_META block (opcode included) for the target, or drops it when the target
/// cannot hold it and every class allows it.
pub(super) fn key_meta(
    metas: &[KeyMeta],
    cfg: &EncodeConfig,
    out: &mut BytesMut,
    dropped: &mut Dropped,
) -> Result<()> {
    if metas.is_empty() {
        return Ok(());
    }
    if cfg.valkey() || cfg.version < 13 {
        if cfg.lossy && metas.iter().all(|m| m.allow_ignore) {
            dropped.key_meta_classes += metas.len() as u64;
            return Ok(());
        }
        return Err(cannot(if cfg.lossy {
            "key metadata without ALLOW_IGNORE needs RDB 13 (Redis 8.6) or newer; a server \
             without its module refuses the key too"
        } else {
            "key metadata needs RDB 13 (Redis 8.6) or newer (--lossy drops ALLOW_IGNORE classes)"
        }));
    }
    if metas.len() > 7 {
        return Err(cannot("a key has more than 7 metadata classes"));
    }
    out.put_u8(0xF3);
    put_len(out, metas.len() as u64);
    for m in metas {
        let spec = m.spec().ok_or_else(|| {
            cannot("a key metadata class name is not 4 characters of A-Za-z0-9_-")
        })?;
        out.put_u32_le(spec);
        for item in &m.items {
            match item {
                ModuleItem::Sint(v) => {
                    put_len(out, 1);
                    put_len(out, *v as u64);
                }
                ModuleItem::Uint(v) => {
                    put_len(out, 2);
                    put_len(out, *v);
                }
                ModuleItem::Float(v) => {
                    put_len(out, 3);
                    out.put_f32_le(*v);
                }
                ModuleItem::Double(v) => {
                    put_len(out, 4);
                    out.put_f64_le(*v);
                }
                ModuleItem::String(b) => {
                    put_len(out, 5);
                    put_string(out, b, cfg.compress);
                }
            }
        }
        put_len(out, 0);
    }
    Ok(())
}

pub(super) fn array(a: &Array, cfg: &EncodeConfig, out: &mut BytesMut) -> Result<u8> {
    if cfg.valkey() || cfg.version < 14 {
        return Err(cannot(
            "an array needs RDB 14 (Redis 8.8) or newer: no older server has the type",
        ));
    }
    if a.items.is_empty() {
        return Err(cannot("Redis refuses an array with no elements"));
    }
    put_len(out, a.items.len() as u64);
    match a.insert_index {
        Some(i) => {
            put_len(out, 1);
            put_len(out, i);
        }
        None => put_len(out, 0),
    }
    for it in &a.items {
        array_item(it, cfg, out)?;
    }
    Ok(28)
}

/// One array element: its index, then its tagged value.
pub(super) fn array_item(it: &ArrayItem, cfg: &EncodeConfig, out: &mut BytesMut) -> Result<()> {
    if it.index == u64::MAX {
        return Err(cannot("array index 2^64-1 is reserved"));
    }
    put_len(out, it.index);
    match &it.value {
        ArrayValue::String(b) => {
            put_len(out, 0);
            put_string(out, b, cfg.compress);
        }
        ArrayValue::Int(i) => {
            put_len(out, 1);
            out.put_i64_le(*i);
        }
        ArrayValue::Float(d) => {
            put_len(out, 2);
            out.put_f64_le(*d);
        }
        ArrayValue::Short(b) => {
            if b.len() > 7 {
                return Err(cannot(
                    "a short-string array element is longer than 7 bytes",
                ));
            }
            put_len(out, 3);
            put_string(out, b, false);
        }
    }
    Ok(())
}
