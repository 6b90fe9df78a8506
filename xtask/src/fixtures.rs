//! `cargo xtask fixtures`: RDB files written by real servers, with the expected JSON Lines
//! read back from the live server (not from our decoder).

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use serde_json::{Map, Value as J, json};
use test_support::{Client, Resp, Server, ServerBin};

/// A future absolute time (2100-01-01) so keys never expire while fixtures are used.
const FAR: u64 = 4_102_444_800_000;

pub(crate) fn run(testdata: &Path) -> Result<()> {
    let servers = test_support::find_servers();
    anyhow::ensure!(!servers.is_empty(), "no redis-server found");
    let mut index = Vec::new();
    for bin in &servers {
        for profile in ["compact", "plain"] {
            let name = format!("{}-{profile}", bin.name);
            eprintln!("fixture {name} ({})", bin.path.display());
            let module = profile == "compact" && bin.module.is_some();
            let written = make(bin, profile, module, testdata, &name)
                .with_context(|| format!("fixture {name}"))?;
            index
                .push(json!({"name": name, "server": bin.name, "module": module, "keys": written}));
        }
    }
    std::fs::write(
        testdata.join("fixtures.json"),
        serde_json::to_string_pretty(&index)? + "\n",
    )?;
    Ok(())
}

/// Server arguments for a profile.
pub(crate) fn profile_args(bin: &ServerBin, profile: &str) -> Vec<(&'static str, String)> {
    let mut a = Vec::new();
    if profile == "plain" {
        a.push(("hash-max-ziplist-entries", "0".into()));
        a.push(("zset-max-ziplist-entries", "0".into()));
        a.push(("set-max-intset-entries", "0".into()));
        a.push(("list-max-ziplist-size", "1".into()));
        if bin.major_minor() >= (7, 2) {
            a.push(("set-max-listpack-entries", "0".into()));
        }
        a.push(("rdbcompression", "no".into()));
        a.push(("maxmemory-policy", "allkeys-lru".into()));
    } else {
        // thresholds high: even the big collections are listpacks/ziplists/intsets
        a.push(("hash-max-ziplist-entries", "4096".into()));
        a.push(("hash-max-ziplist-value", "1024".into()));
        a.push(("zset-max-ziplist-entries", "4096".into()));
        a.push(("set-max-intset-entries", "4096".into()));
        a.push(("list-max-ziplist-size", "-5".into()));
        if bin.major_minor() >= (7, 2) {
            a.push(("set-max-listpack-entries", "4096".into()));
        }
        a.push(("rdbcompression", "yes".into()));
        a.push(("maxmemory-policy", "allkeys-lfu".into()));
    }
    if let (Some(m), "compact") = (&bin.module, profile) {
        a.push(("loadmodule", m.display().to_string()));
    }
    a
}

fn make(
    bin: &ServerBin,
    profile: &str,
    module: bool,
    testdata: &Path,
    name: &str,
) -> Result<usize> {
    let args = profile_args(bin, profile);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(bin, &args, None)?;
    let mut c = server.client()?;
    populate(&mut c, bin, module)?;
    c.ok(&["SAVE"])?;
    std::fs::copy(
        server.dir.join("dump.rdb"),
        testdata.join(format!("{name}.rdb")),
    )?;
    let mut lines = String::new();
    let mut n = 0;
    for db in [0, 1] {
        c.ok(&["SELECT", &db.to_string()])?;
        for key in c.keys()? {
            let rec = export_key(&mut c, bin, db, &key)?;
            lines.push_str(&serde_json::to_string(&rec)?);
            lines.push('\n');
            n += 1;
        }
    }
    std::fs::write(testdata.join(format!("{name}.jsonl")), lines)?;
    Ok(n)
}

fn cmd(c: &mut Client, args: &[&[u8]]) -> Result<Resp> {
    match c.cmd_bytes(args)? {
        Resp::Error(e) => anyhow::bail!("{:?}: {e}", String::from_utf8_lossy(args[0])),
        r => Ok(r),
    }
}

pub(crate) fn populate(c: &mut Client, bin: &ServerBin, module: bool) -> Result<()> {
    let v7 = bin.major_minor() >= (7, 0);
    c.ok(&["SELECT", "0"])?;
    c.ok(&["SET", "str:short", "hello"])?;
    c.ok(&["SET", "str:int", "12345"])?;
    c.ok(&["SET", "str:neg", "-42"])?;
    c.ok(&["SET", "str:i64", "9223372036854775807"])?;
    c.ok(&["SET", "str:utf8", "héllo ☃ \"quoted\"\n"])?;
    c.ok(&["SET", "str:empty", ""])?;
    let big = "abcdefgh".repeat(4000);
    c.ok(&["SET", "str:compressible", &big])?;
    let bin_bytes: Vec<u8> = (0..=255u8).collect();
    cmd(c, &[b"SET", b"str:binary", &bin_bytes])?;
    let mut x = 12345u32;
    let rand: Vec<u8> = (0..20000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xFF) as u8
        })
        .collect();
    cmd(c, &[b"SET", b"str:random", &rand])?;
    cmd(c, &[b"SET", b"key:\xff\xfe", b"non-utf8 key"])?;
    for i in 0..5 {
        let k = format!("exp:{i}");
        c.ok(&["SET", &k, "v"])?;
        c.ok(&["PEXPIREAT", &k, &(FAR + i * 1000 + 123).to_string()])?;
    }
    c.ok(&[
        "RPUSH",
        "list:small",
        "a",
        "b",
        "1",
        "2",
        "-3",
        "70000",
        "5000000000",
    ])?;
    let mut args = vec!["RPUSH".to_owned(), "list:big".to_owned()];
    for i in 0..2000 {
        args.push(if i % 3 == 0 {
            i.to_string()
        } else {
            format!("item-{i}")
        });
    }
    c.ok_args(&args)?;
    if v7 {
        // elements above the packed threshold become PLAIN quicklist nodes (RDB 10+)
        c.ok(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000"])?;
        let big = "p".repeat(2000);
        c.ok(&["RPUSH", "list:plain", "small", &big, "small2"])?;
    }
    c.ok(&["RPUSH", "list:exp", "x"])?;
    c.ok(&["PEXPIREAT", "list:exp", &FAR.to_string()])?;
    c.ok(&[
        "SADD",
        "set:ints",
        "1",
        "2",
        "3",
        "-100",
        "70000",
        "5000000000",
    ])?;
    c.ok(&["SADD", "set:strs", "apple", "banana", "cherry"])?;
    let mut args = vec!["SADD".to_owned(), "set:big".to_owned()];
    args.extend((0..1000).map(|i| format!("m{i}")));
    c.ok_args(&args)?;
    c.ok(&[
        "ZADD",
        "zset:small",
        "1",
        "a",
        "2.5",
        "b",
        "-3",
        "c",
        "inf",
        "d",
        "-inf",
        "e",
        "0.1",
        "f",
    ])?;
    let mut args = vec!["ZADD".to_owned(), "zset:big".to_owned()];
    for i in 0..500 {
        args.push(format!("{}", f64::from(i) * 0.37 - 50.0));
        args.push(format!("member-{i}"));
    }
    c.ok_args(&args)?;
    c.ok(&["HSET", "hash:small", "f1", "v1", "f2", "2", "f3", ""])?;
    let mut args = vec!["HSET".to_owned(), "hash:big".to_owned()];
    for i in 0..1000 {
        args.push(format!("field-{i}"));
        args.push(if i % 2 == 0 {
            i.to_string()
        } else {
            format!("value-{i}")
        });
    }
    c.ok_args(&args)?;
    // Streams: entries with the master fields and with others, a deleted entry, a group with
    // pending entries and two consumers, and an empty stream that only has a group.
    for i in 1..=30 {
        let id = format!("{}-{}", 1_700_000_000_000u64 + i, i % 3);
        if i % 7 == 0 {
            c.ok(&["XADD", "stream:1", &id, "other", &i.to_string()])?;
        } else {
            c.ok(&[
                "XADD",
                "stream:1",
                &id,
                "name",
                "n",
                "value",
                &i.to_string(),
            ])?;
        }
    }
    c.ok(&["XDEL", "stream:1", "1700000000005-2"])?;
    c.ok(&["XGROUP", "CREATE", "stream:1", "g1", "0"])?;
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "3",
        "STREAMS",
        "stream:1",
        ">",
    ])?;
    c.ok(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "bob",
        "COUNT",
        "2",
        "STREAMS",
        "stream:1",
        ">",
    ])?;
    c.ok(&["XACK", "stream:1", "g1", "1700000000001-1"])?;
    c.ok(&["XGROUP", "CREATE", "stream:1", "g2", "$"])?;
    c.ok(&["XGROUP", "CREATE", "stream:empty", "g", "0", "MKSTREAM"])?;
    c.ok(&["SELECT", "1"])?;
    c.ok(&["SET", "db1:str", "in db 1"])?;
    c.ok(&["HSET", "db1:hash", "a", "b"])?;
    c.ok(&["SELECT", "0"])?;
    if v7 {
        c.ok(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return 1 end)",
        ])?;
    }
    if c.has_command("HPEXPIREAT") {
        c.ok(&["HSET", "hfe:small", "a", "1", "b", "2", "c", "3"])?;
        c.ok(&[
            "HPEXPIREAT",
            "hfe:small",
            &(FAR + 1).to_string(),
            "FIELDS",
            "2",
            "a",
            "c",
        ])?;
        let mut args = vec!["HSET".to_owned(), "hfe:big".to_owned()];
        for i in 0..700 {
            args.push(format!("f{i}"));
            args.push(format!("v{i}"));
        }
        c.ok_args(&args)?;
        c.ok(&[
            "HPEXPIREAT",
            "hfe:big",
            &(FAR + 2).to_string(),
            "FIELDS",
            "3",
            "f1",
            "f5",
            "f600",
        ])?;
    }
    if module {
        c.ok(&[
            "GRAPH.QUERY",
            "graph:1",
            "CREATE (:Person {name:'ann', age:42})-[:KNOWS]->(:Person {name:'bob'})",
        ])?;
    }
    Ok(())
}

fn jbytes(b: &[u8]) -> J {
    match std::str::from_utf8(b) {
        Ok(s) => J::String(s.to_owned()),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(b)}),
    }
}

fn jfield(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(b)
        ),
    }
}

fn jscore(text: &str) -> J {
    match text {
        "inf" => J::String("inf".into()),
        "-inf" => J::String("-inf".into()),
        "nan" => J::String("nan".into()),
        t => {
            let d: f64 = t.parse().unwrap_or(f64::NAN);
            serde_json::Number::from_f64(d).map_or(J::Null, J::Number)
        }
    }
}

/// Reads a RESP2 flat map (`[name, value, name, value…]`) into (name, reply) pairs.
fn flat(r: &Resp) -> Vec<(String, &Resp)> {
    r.items()
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].text(), &p[1]))
        .collect()
}

fn get<'a>(m: &'a [(String, &'a Resp)], k: &str) -> Option<&'a Resp> {
    m.iter().find(|(n, _)| n == k).map(|(_, v)| *v)
}

fn export_key(c: &mut Client, bin: &ServerBin, db: u64, key: &[u8]) -> Result<J> {
    let ty = cmd(c, &[b"TYPE", key])?.text();
    let mut rec = Map::new();
    rec.insert("db".into(), json!(db));
    rec.insert("key".into(), jbytes(key));
    let v7 = bin.major_minor() >= (7, 0);
    let expire = if v7 {
        cmd(c, &[b"PEXPIRETIME", key])?.int().unwrap_or(-1)
    } else {
        let pttl = cmd(c, &[b"PTTL", key])?.int().unwrap_or(-1);
        if pttl >= 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            rec.insert("expire_approx".into(), J::Bool(true));
            now + pttl
        } else {
            -1
        }
    };
    if expire >= 0 {
        rec.insert("expire_ms".into(), json!(expire));
    }
    let value = match ty.as_str() {
        "string" => jbytes(cmd(c, &[b"GET", key])?.bytes().unwrap_or_default()),
        "list" => J::Array(
            cmd(c, &[b"LRANGE", key, b"0", b"-1"])?
                .items()
                .iter()
                .map(|e| jbytes(e.bytes().unwrap_or_default()))
                .collect(),
        ),
        "set" => J::Array(
            cmd(c, &[b"SMEMBERS", key])?
                .items()
                .iter()
                .map(|e| jbytes(e.bytes().unwrap_or_default()))
                .collect(),
        ),
        "zset" => J::Array(
            cmd(c, &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])?
                .items()
                .chunks(2)
                .map(|p| {
                    json!([
                        jbytes(p[0].bytes().unwrap_or_default()),
                        jscore(&p[1].text())
                    ])
                })
                .collect(),
        ),
        "hash" => {
            let all = cmd(c, &[b"HGETALL", key])?;
            let mut m = Map::new();
            let mut fields = Vec::new();
            for p in all.items().chunks(2) {
                let f = p[0].bytes().unwrap_or_default().to_vec();
                m.insert(jfield(&f), jbytes(p[1].bytes().unwrap_or_default()));
                fields.push(f);
            }
            if c.has_command("HPEXPIRETIME") && !fields.is_empty() {
                let n = fields.len().to_string();
                let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", n.as_bytes()];
                args.extend(fields.iter().map(Vec::as_slice));
                let times = cmd(c, &args)?;
                let mut fe = Map::new();
                for (f, t) in fields.iter().zip(times.items()) {
                    if let Some(t) = t.int().filter(|t| *t >= 0) {
                        fe.insert(jfield(f), json!(t));
                    }
                }
                if !fe.is_empty() {
                    rec.insert("field_expire_ms".into(), J::Object(fe));
                }
            }
            J::Object(m)
        }
        "stream" => export_stream(c, key)?,
        _ => {
            // A module value: its type name, and the raw value cut from DUMP's payload.
            let dump = cmd(c, &[b"DUMP", key])?;
            let payload = dump.bytes().unwrap_or_default();
            let raw = &payload[1..payload.len().saturating_sub(10)];
            rec.insert("type".into(), json!("module"));
            rec.insert(
                "value".into(),
                json!({"module": ty, "raw": jbytes_b64(raw)}),
            );
            return Ok(J::Object(rec));
        }
    };
    rec.insert("type".into(), json!(ty));
    rec.insert("value".into(), value);
    Ok(J::Object(rec))
}

fn jbytes_b64(b: &[u8]) -> J {
    json!({"base64": base64::engine::general_purpose::STANDARD.encode(b)})
}

fn export_stream(c: &mut Client, key: &[u8]) -> Result<J> {
    let mut s = Map::new();
    let entries: Vec<J> = cmd(c, &[b"XRANGE", key, b"-", b"+"])?
        .items()
        .iter()
        .map(|e| {
            let it = e.items();
            let mut fields = Map::new();
            for p in it.get(1).map(Resp::items).unwrap_or_default().chunks(2) {
                fields.insert(
                    jfield(p[0].bytes().unwrap_or_default()),
                    jbytes(p[1].bytes().unwrap_or_default()),
                );
            }
            json!([it.first().map(Resp::text).unwrap_or_default(), fields])
        })
        .collect();
    s.insert("entries".into(), J::Array(entries));
    let info = cmd(c, &[b"XINFO", b"STREAM", key, b"FULL", b"COUNT", b"0"])?;
    let m = flat(&info);
    if let Some(n) = get(&m, "length").and_then(Resp::int) {
        s.insert("length".into(), json!(n));
    }
    if let Some(v) = get(&m, "last-generated-id") {
        s.insert("last_id".into(), json!(v.text()));
    }
    if let Some(v) = get(&m, "max-deleted-entry-id") {
        s.insert("max_deleted_id".into(), json!(v.text()));
    }
    if let Some(v) = get(&m, "entries-added").and_then(Resp::int) {
        s.insert("entries_added".into(), json!(v));
    }
    if let Some(v) = get(&m, "recorded-first-entry-id") {
        s.insert("first_id".into(), json!(v.text()));
    }
    let mut groups = Vec::new();
    for g in get(&m, "groups").map(Resp::items).unwrap_or_default() {
        let gm = flat(g);
        let mut gj = Map::new();
        gj.insert(
            "name".into(),
            jbytes(get(&gm, "name").and_then(Resp::bytes).unwrap_or_default()),
        );
        gj.insert(
            "last_id".into(),
            json!(get(&gm, "last-delivered-id").map(Resp::text)),
        );
        if let Some(n) = get(&gm, "entries-read").and_then(Resp::int) {
            gj.insert("entries_read".into(), json!(n));
        }
        let pel: Vec<J> = get(&gm, "pending")
            .map(Resp::items)
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let p = p.items();
                json!({"id": p[0].text(), "consumer": jbytes(p[1].bytes().unwrap_or_default()),
                       "delivery_time_ms": p[2].int(), "delivery_count": p[3].int()})
            })
            .collect();
        gj.insert("pending".into(), J::Array(pel));
        let consumers: Vec<J> = get(&gm, "consumers")
            .map(Resp::items)
            .unwrap_or_default()
            .iter()
            .map(|cn| {
                let cm = flat(cn);
                let mut cj = Map::new();
                cj.insert(
                    "name".into(),
                    jbytes(get(&cm, "name").and_then(Resp::bytes).unwrap_or_default()),
                );
                if let Some(t) = get(&cm, "seen-time").and_then(Resp::int) {
                    cj.insert("seen_time_ms".into(), json!(t));
                }
                if let Some(t) = get(&cm, "active-time").and_then(Resp::int) {
                    cj.insert("active_time_ms".into(), json!(t));
                }
                let ids: Vec<J> = get(&cm, "pending")
                    .map(Resp::items)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| json!(p.items()[0].text()))
                    .collect();
                cj.insert("pending".into(), J::Array(ids));
                J::Object(cj)
            })
            .collect();
        gj.insert("consumers".into(), J::Array(consumers));
        groups.push(J::Object(gj));
    }
    s.insert("groups".into(), J::Array(groups));
    Ok(J::Object(s))
}
