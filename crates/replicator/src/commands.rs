//! What a command touches: its first key and the type of value it writes. Used to apply
//! key and type filters to commands (AOF, replication stream).

use rdb_format::ValueType;

/// Commands that name no key (server-wide, transaction and scripting commands).
const KEYLESS: &[&str] = &[
    "SELECT", "MULTI", "EXEC", "DISCARD", "FLUSHALL", "FLUSHDB", "SWAPDB", "FUNCTION", "SCRIPT",
    "PUBLISH", "SPUBLISH", "PING", "REPLCONF", "MODULE", "CONFIG", "CLIENT", "DEBUG", "ACL",
];

/// Index of the first key argument of `args` (`args[0]` is the command name), or `None` for a
/// command that names no key.
///
/// ```
/// use replicator::commands::first_key;
/// assert_eq!(first_key(&["SET", "k", "v"]), Some(1));
/// assert_eq!(first_key(&[&b"EVAL"[..], b"return 1", b"1", b"k"]), Some(3));
/// assert_eq!(first_key(&[&b"BITOP"[..], b"AND", b"dest", b"a"]), Some(2));
/// assert_eq!(first_key(&[&b"SELECT"[..], b"1"]), None);
/// ```
pub fn first_key<A: AsRef<[u8]>>(args: &[A]) -> Option<usize> {
    let name = args.first()?.as_ref();
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    let at = if KEYLESS.iter().any(|n| is(n)) {
        return None;
    } else if [
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
    ]
    .iter()
    .any(|n| is(n))
    {
        let numkeys: u64 = std::str::from_utf8(args.get(2)?.as_ref())
            .ok()?
            .parse()
            .ok()?;
        if numkeys == 0 {
            return None;
        }
        3
    } else if is("BITOP") || is("XGROUP") || is("XINFO") || is("OBJECT") {
        2
    } else {
        1
    };
    (at < args.len()).then_some(at)
}

const STRING: &[&str] = &[
    "SET",
    "SETEX",
    "PSETEX",
    "SETNX",
    "SETRANGE",
    "APPEND",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "DECR",
    "DECRBY",
    "MSET",
    "MSETNX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "SETBIT",
    "BITFIELD",
    "BITOP",
    "PFADD",
    "PFMERGE",
];
const LIST: &[&str] = &[
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LINSERT",
    "LSET",
    "LREM",
    "LTRIM",
    "RPOPLPUSH",
    "LMOVE",
    "BLPOP",
    "BRPOP",
    "BLMOVE",
    "BRPOPLPUSH",
];
const SET: &[&str] = &[
    "SADD",
    "SREM",
    "SPOP",
    "SMOVE",
    "SINTERSTORE",
    "SUNIONSTORE",
    "SDIFFSTORE",
];
const ZSET: &[&str] = &[
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYLEX",
    "ZUNIONSTORE",
    "ZINTERSTORE",
    "ZDIFFSTORE",
    "ZRANGESTORE",
    "ZPOPMIN",
    "ZPOPMAX",
    "BZPOPMIN",
    "BZPOPMAX",
];
const HASH: &[&str] = &[
    "HSET",
    "HSETNX",
    "HMSET",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HEXPIRE",
    "HPEXPIRE",
    "HEXPIREAT",
    "HPEXPIREAT",
    "HPERSIST",
    "HGETDEL",
    "HGETEX",
    "HSETEX",
];
const STREAM: &[&str] = &[
    "XADD",
    "XDEL",
    "XTRIM",
    "XGROUP",
    "XSETID",
    "XCLAIM",
    "XAUTOCLAIM",
    "XACK",
    "XREADGROUP",
    // Redis 8.6 IDMP, 8.8 XNACK
    "XCFGSET",
    "XIDMPRECORD",
    "XNACK",
];
/// Redis 8.8 arrays: the write commands known here (others are treated like any-type commands).
const ARRAY: &[&str] = &["ARSET", "ARINSERT", "ARRING"];

/// The type of value a write command works on, or `None` for commands that work on keys of
/// any type (`DEL`, `EXPIRE`, `RENAME`, `RESTORE`, …) or are not known here.
///
/// ```
/// use replicator::{ValueType, commands::value_type};
/// assert_eq!(value_type(b"hset"), Some(ValueType::Hash));
/// assert_eq!(value_type(b"DEL"), None);
/// ```
pub fn value_type(name: &[u8]) -> Option<ValueType> {
    let tables: [(&[&str], ValueType); 7] = [
        (STRING, ValueType::String),
        (LIST, ValueType::List),
        (SET, ValueType::Set),
        (ZSET, ValueType::SortedSet),
        (HASH, ValueType::Hash),
        (STREAM, ValueType::Stream),
        (ARRAY, ValueType::Array),
    ];
    tables.iter().find_map(|(names, t)| {
        names
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            .then_some(*t)
    })
}
