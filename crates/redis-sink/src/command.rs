//! Where the keys of a write command are: a typed view of the commands a replication stream or
//! an AOF carries, after the key specs of `COMMAND DOCS`, enough to route a command to its slot
//! and to split multi-key commands that act on each key alone.

/// What a command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// No key: server-wide, transaction or connection commands (`FLUSHALL`, `FUNCTION`,
    /// `SELECT`, `MULTI`, `PING`…).
    None,
    /// The indices of its keys in the argument vector (`args[0]` is the name), in order.
    At(Vec<usize>),
}

/// How a command whose keys lie in several slots can be split into one command per slot
/// with the same effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Split {
    /// Each key argument stands alone (`DEL`, `UNLINK`, `TOUCH`, `EXISTS`).
    EachKey,
    /// Each key is followed by its value (`MSET`).
    KeyValue,
    /// The command's effect spans its keys (`RENAME`, `SUNIONSTORE`, `MSETNX`, scripts): it
    /// cannot be split.
    No,
}

/// (first key, last key (negative: from the end), step), as the legacy `COMMAND INFO` triple.
const TABLE: &[(&str, i32, i32, usize)] = &[
    // strings
    ("SET", 1, 1, 1),
    ("SETNX", 1, 1, 1),
    ("SETEX", 1, 1, 1),
    ("PSETEX", 1, 1, 1),
    ("APPEND", 1, 1, 1),
    ("INCR", 1, 1, 1),
    ("DECR", 1, 1, 1),
    ("INCRBY", 1, 1, 1),
    ("DECRBY", 1, 1, 1),
    ("INCRBYFLOAT", 1, 1, 1),
    ("GETSET", 1, 1, 1),
    ("GETDEL", 1, 1, 1),
    ("GETEX", 1, 1, 1),
    ("SETRANGE", 1, 1, 1),
    ("SETBIT", 1, 1, 1),
    ("BITFIELD", 1, 1, 1),
    ("MSET", 1, -1, 2),
    ("MSETNX", 1, -1, 2),
    ("BITOP", 2, -1, 1),
    // keys
    ("DEL", 1, -1, 1),
    ("UNLINK", 1, -1, 1),
    ("TOUCH", 1, -1, 1),
    ("EXISTS", 1, -1, 1),
    ("EXPIRE", 1, 1, 1),
    ("PEXPIRE", 1, 1, 1),
    ("EXPIREAT", 1, 1, 1),
    ("PEXPIREAT", 1, 1, 1),
    ("PERSIST", 1, 1, 1),
    ("RENAME", 1, 2, 1),
    ("RENAMENX", 1, 2, 1),
    ("COPY", 1, 2, 1),
    ("RESTORE", 1, 1, 1),
    ("RESTORE-ASKING", 1, 1, 1),
    ("MOVE", 1, 1, 1),
    // lists
    ("LPUSH", 1, 1, 1),
    ("RPUSH", 1, 1, 1),
    ("LPUSHX", 1, 1, 1),
    ("RPUSHX", 1, 1, 1),
    ("LPOP", 1, 1, 1),
    ("RPOP", 1, 1, 1),
    ("LINSERT", 1, 1, 1),
    ("LSET", 1, 1, 1),
    ("LREM", 1, 1, 1),
    ("LTRIM", 1, 1, 1),
    ("RPOPLPUSH", 1, 2, 1),
    ("LMOVE", 1, 2, 1),
    ("BLMOVE", 1, 2, 1),
    ("BRPOPLPUSH", 1, 2, 1),
    // sets
    ("SADD", 1, 1, 1),
    ("SREM", 1, 1, 1),
    ("SPOP", 1, 1, 1),
    ("SMOVE", 1, 2, 1),
    ("SINTERSTORE", 1, -1, 1),
    ("SUNIONSTORE", 1, -1, 1),
    ("SDIFFSTORE", 1, -1, 1),
    // hashes
    ("HSET", 1, 1, 1),
    ("HSETNX", 1, 1, 1),
    ("HMSET", 1, 1, 1),
    ("HDEL", 1, 1, 1),
    ("HINCRBY", 1, 1, 1),
    ("HINCRBYFLOAT", 1, 1, 1),
    ("HEXPIRE", 1, 1, 1),
    ("HPEXPIRE", 1, 1, 1),
    ("HEXPIREAT", 1, 1, 1),
    ("HPEXPIREAT", 1, 1, 1),
    ("HPERSIST", 1, 1, 1),
    ("HGETDEL", 1, 1, 1),
    ("HGETEX", 1, 1, 1),
    ("HSETEX", 1, 1, 1),
    // sorted sets
    ("ZADD", 1, 1, 1),
    ("ZINCRBY", 1, 1, 1),
    ("ZREM", 1, 1, 1),
    ("ZREMRANGEBYSCORE", 1, 1, 1),
    ("ZREMRANGEBYRANK", 1, 1, 1),
    ("ZREMRANGEBYLEX", 1, 1, 1),
    ("ZPOPMIN", 1, 1, 1),
    ("ZPOPMAX", 1, 1, 1),
    ("ZRANGESTORE", 1, 2, 1),
    // streams
    ("XADD", 1, 1, 1),
    ("XDEL", 1, 1, 1),
    ("XDELEX", 1, 1, 1),
    ("XTRIM", 1, 1, 1),
    ("XACK", 1, 1, 1),
    ("XACKDEL", 1, 1, 1),
    ("XCLAIM", 1, 1, 1),
    ("XAUTOCLAIM", 1, 1, 1),
    ("XSETID", 1, 1, 1),
    ("XGROUP", 2, 2, 1),
    ("XCFGSET", 1, 1, 1),
    ("XIDMPRECORD", 1, 1, 1),
    ("XNACK", 1, 1, 1),
    // others
    ("PFADD", 1, 1, 1),
    ("PFMERGE", 1, -1, 1),
    ("GEOADD", 1, 1, 1),
    ("GEOSEARCHSTORE", 1, 2, 1),
];

/// Commands that name no key.
const KEYLESS: &[&str] = &[
    "SELECT", "MULTI", "EXEC", "DISCARD", "FLUSHALL", "FLUSHDB", "SWAPDB", "FUNCTION", "SCRIPT",
    "PUBLISH", "PING", "REPLCONF", "MODULE", "CONFIG", "CLIENT", "DEBUG", "ACL", "ASKING",
];

fn is(name: &[u8], n: &str) -> bool {
    name.eq_ignore_ascii_case(n.as_bytes())
}

/// The table sorted by name, for a binary search on the upper-cased name (a scan of a hundred
/// names per command showed in profiles).
fn sorted() -> &'static [(&'static str, i32, i32, usize)] {
    static SORTED: std::sync::OnceLock<Vec<(&str, i32, i32, usize)>> = std::sync::OnceLock::new();
    SORTED.get_or_init(|| {
        let mut t = TABLE.to_vec();
        t.sort_unstable_by_key(|e| e.0);
        t
    })
}

fn lookup(name: &[u8]) -> Option<(i32, i32, usize)> {
    let mut up = [0u8; 24];
    let n = name.len();
    if n > up.len() {
        return None;
    }
    for (d, s) in up.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    let up = std::str::from_utf8(&up[..n]).ok()?;
    let t = sorted();
    t.binary_search_by(|e| e.0.cmp(up))
        .ok()
        .map(|i| (t[i].1, t[i].2, t[i].3))
}

fn number(arg: Option<&[u8]>) -> Option<usize> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

/// Where the keys of `args` are. Commands not in the table (module commands) are taken to
/// name one key, their first argument, as nearly all do.
///
/// ```
/// use redis_sink::command::{Keys, keys};
/// assert_eq!(keys(&[&b"MSET"[..], b"a", b"1", b"b", b"2"]), Keys::At(vec![1, 3]));
/// assert_eq!(keys(&[&b"ZUNIONSTORE"[..], b"d", b"2", b"a", b"b"]), Keys::At(vec![1, 3, 4]));
/// assert_eq!(keys(&[&b"EVAL"[..], b"return 1", b"1", b"k", b"arg"]), Keys::At(vec![3]));
/// assert_eq!(keys(&[&b"FLUSHALL"[..]]), Keys::None);
/// ```
pub fn keys<A: AsRef<[u8]>>(args: &[A]) -> Keys {
    let Some(name) = args.first().map(AsRef::as_ref) else {
        return Keys::None;
    };
    let n = args.len();
    let range = |from: usize, to: usize, step: usize| -> Keys {
        Keys::At((from..to.min(n)).step_by(step.max(1)).collect())
    };
    // the common case first: a command of the table
    if let Some((first, last, step)) = lookup(name) {
        let first = first as usize;
        let end = if last < 0 {
            n
        } else {
            (last as usize + 1).min(n)
        };
        return range(first, end, step);
    }
    if KEYLESS.iter().any(|k| is(name, k)) || is(name, "SPUBLISH") {
        return Keys::None;
    }
    // numkeys-based forms
    let numkeys_at = |at: usize, first: usize| -> Keys {
        match number(args.get(at).map(AsRef::as_ref)) {
            Some(k) => range(first, first + k, 1),
            None => Keys::At(Vec::new()),
        }
    };
    for s in [
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
    ] {
        if is(name, s) {
            return numkeys_at(2, 3);
        }
    }
    for s in ["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"] {
        if is(name, s) {
            let Keys::At(mut k) = numkeys_at(2, 3) else {
                return Keys::None;
            };
            k.insert(0, 1);
            return Keys::At(k);
        }
    }
    for s in ["LMPOP", "ZMPOP", "SINTERCARD", "ZINTERCARD"] {
        if is(name, s) {
            return numkeys_at(1, 2);
        }
    }
    for s in ["BLMPOP", "BZMPOP"] {
        if is(name, s) {
            return numkeys_at(2, 3);
        }
    }
    if is(name, "SORT") {
        let mut k = vec![1];
        if let Some(i) = (2..n).find(|&i| is(args[i].as_ref(), "STORE")) {
            if i + 1 < n {
                k.push(i + 1);
            }
        }
        return Keys::At(k);
    }
    if n > 1 { Keys::At(vec![1]) } else { Keys::None }
}

/// How `name` can be split across slots.
///
/// ```
/// use redis_sink::command::{Split, split_of};
/// assert_eq!(split_of(b"del"), Split::EachKey);
/// assert_eq!(split_of(b"MSET"), Split::KeyValue);
/// assert_eq!(split_of(b"MSETNX"), Split::No);
/// ```
pub fn split_of(name: &[u8]) -> Split {
    if ["DEL", "UNLINK", "TOUCH", "EXISTS"]
        .iter()
        .any(|s| is(name, s))
    {
        Split::EachKey
    } else if is(name, "MSET") {
        Split::KeyValue
    } else {
        Split::No
    }
}
