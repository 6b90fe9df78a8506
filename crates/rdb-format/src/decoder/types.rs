//! The type and module-name tables: type bytes to value types and encodings, module IDs to
//! names, and which server most likely wrote a version.

use super::*;

/// Which server most likely wrote a file with a version this decoder does not know.
pub(super) fn likely_writer(flavor: Flavor, version: u32, invalid: bool) -> &'static str {
    match (flavor, version) {
        _ if invalid => "no Redis or Valkey release writes this magic with this number",
        (Flavor::Redis, 15) => "Redis 8.10 (RDB 15)",
        (Flavor::Redis, 16..=20) => "a Redis release newer than 8.10",
        (Flavor::Redis, _) => {
            "no released Redis (Valkey calls versions 12 to 79 foreign; a test or hand-made file)"
        }
        (Flavor::Valkey, 81) => "Valkey 9.2 (VALKEY081)",
        (Flavor::Valkey, _) => "a Valkey release newer than 9.2",
    }
}

pub(super) const MODULE_CHARSET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The 9-character module type name and encoding version packed into a module ID.
pub fn module_name(id: u64) -> (String, u64) {
    let mut name = String::with_capacity(9);
    for i in 0..9 {
        let c = (id >> (64 - 6 * (i + 1))) & 63;
        name.push(char::from(MODULE_CHARSET[c as usize]));
    }
    (name, id & 1023)
}

/// The 64-bit module type ID of a 9-character name and an encoding version (the inverse of
/// [`module_name`]); `None` for a name that is not 9 characters of Redis' module charset.
///
/// ```
/// let id = rdb_format::module_id("graphdata", 17).unwrap();
/// assert_eq!(rdb_format::module_name(id), ("graphdata".to_owned(), 17));
/// ```
pub fn module_id(name: &str, encver: u64) -> Option<u64> {
    if name.len() != 9 || encver > 1023 {
        return None;
    }
    let mut id = 0u64;
    for (i, b) in name.bytes().enumerate() {
        let c = MODULE_CHARSET.iter().position(|&x| x == b)? as u64;
        id |= c << (64 - 6 * (i + 1));
    }
    Some(id | encver)
}

pub(super) fn type_info(ty: u8, flavor: Flavor) -> (ValueType, Encoding) {
    use Encoding as E;
    use ValueType as T;
    match ty {
        0 => (T::String, E::Raw),
        1 => (T::List, E::LinkedList),
        2 => (T::Set, E::Hashtable),
        3 | 5 => (T::SortedSet, E::Skiplist),
        4 => (T::Hash, E::Hashtable),
        6 | 7 => (T::Module, E::Module),
        9 => (T::Hash, E::Zipmap),
        10 => (T::List, E::Ziplist),
        11 => (T::Set, E::Intset),
        12 => (T::SortedSet, E::Ziplist),
        13 => (T::Hash, E::Ziplist),
        14 | 18 => (T::List, E::Quicklist),
        15 | 19 | 21 | 26 | 27 => (T::Stream, E::Listpacks),
        28 => (T::Array, E::SlicedArray),
        16 => (T::Hash, E::Listpack),
        17 => (T::SortedSet, E::Listpack),
        20 => (T::Set, E::Listpack),
        22 if flavor == Flavor::Valkey => (T::Hash, E::Hashtable),
        22 | 24 => (T::Hash, E::Hashtable),
        23 | 25 => (T::Hash, E::Listpack),
        _ => (T::String, E::Raw),
    }
}

/// A human name for a type byte, for error messages.
pub fn type_name(ty: u8, flavor: Flavor) -> &'static str {
    match ty {
        0 => "string",
        1 => "list (linked list)",
        2 => "set (hashtable)",
        3 => "zset (text scores)",
        4 => "hash (hashtable)",
        5 => "zset (binary scores)",
        6 => "module (pre-GA)",
        7 => "module",
        9 => "hash (zipmap)",
        10 => "list (ziplist)",
        11 => "set (intset)",
        12 => "zset (ziplist)",
        13 => "hash (ziplist)",
        14 => "list (quicklist)",
        15 => "stream (v1)",
        16 => "hash (listpack)",
        17 => "zset (listpack)",
        18 => "list (quicklist v2)",
        19 => "stream (v2)",
        20 => "set (listpack)",
        21 => "stream (v3)",
        22 if flavor == Flavor::Valkey => "hash (Valkey HASH_2)",
        22 => "hash with field TTLs (7.4 RC)",
        23 if flavor == Flavor::Valkey => "hash (Valkey PATH_HASH)",
        23 => "hash listpack with field TTLs (7.4 RC)",
        24 => "hash with field TTLs",
        25 => "hash listpack with field TTLs",
        26 => "stream (v4)",
        27 => "stream (v5)",
        28 => "array",
        _ => "unknown type",
    }
}
