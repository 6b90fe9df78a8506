//! `replicator memory` against real servers: per-key estimates against `MEMORY USAGE key
//! SAMPLES 0`, the report's counts against SCAN, TYPE and PTTL, and the outputs parsed.

use std::collections::BTreeMap;

use test_support::random::Rng;
use test_support::{Client, Server, server_named};

use super::replicator;

/// `len` random lowercase letters.
fn text(r: &mut Rng, len: u64) -> String {
    (0..len)
        .map(|_| char::from(b'a' + r.below(26) as u8))
        .collect()
}

/// Random letters, `min` to `min + extra - 1` of them.
fn span(r: &mut Rng, min: u64, extra: u64) -> String {
    let n = min + r.below(extra);
    text(r, n)
}

/// TTLs in the middle of the report's buckets (seconds): < 1 h, < 1 d, < 7 d, < 30 d, more.
const TTLS: [u64; 5] = [1800, 43_200, 259_200, 1_296_000, 5_184_000];

/// Fills the server with keys of every type, in small (compact) and big encodings.
fn fill(c: &mut Client, seed: u64, streams: bool) -> usize {
    let mut r = Rng::new(seed);
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let prefixes = ["user", "session", "cache:page", "cache:img", "q", "idx:a:b"];
    let mut n = 0;
    for i in 0..700u64 {
        let p = prefixes[r.below(prefixes.len() as u64) as usize];
        let key = if i % 10 == 0 {
            format!("plain{i}")
        } else {
            format!("{p}:{i}:{}", span(&mut r, 1, 12))
        };
        let big = r.below(4) == 0;
        let s = |r: &mut Rng, max: u64| span(r, 1, max);
        let mut cmd: Vec<String> = match r.below(if streams { 7 } else { 6 }) {
            0 => {
                let v = match r.below(4) {
                    0 => r.below(1_000_000_000_000).to_string(),
                    1 => s(&mut r, 40),
                    2 => span(&mut r, 45, 120),
                    _ => span(&mut r, 200, 3000),
                };
                vec!["SET".into(), key.clone(), v]
            }
            1 => {
                let k = if big {
                    300 + r.below(1500)
                } else {
                    1 + r.below(40)
                };
                let mut c = vec!["RPUSH".into(), key.clone()];
                c.extend((0..k).map(|_| {
                    if r.below(3) == 0 {
                        r.below(100_000).to_string()
                    } else {
                        s(&mut r, 60)
                    }
                }));
                c
            }
            2 => {
                let k = if big {
                    200 + r.below(700)
                } else {
                    1 + r.below(60)
                };
                let ints = r.below(2) == 0;
                let mut c = vec!["SADD".into(), key.clone()];
                c.extend((0..k).map(|j| {
                    if ints {
                        (j * 7 + r.below(5)).to_string()
                    } else {
                        format!("{j}{}", s(&mut r, 30))
                    }
                }));
                c
            }
            3 => {
                let k = if big {
                    150 + r.below(400)
                } else {
                    1 + r.below(60)
                };
                let mut c = vec!["ZADD".into(), key.clone()];
                for j in 0..k {
                    let score = if r.below(2) == 0 {
                        r.below(1000).to_string()
                    } else {
                        format!("{}.{}", r.below(1000), r.below(1000))
                    };
                    c.push(score);
                    c.push(format!("{j}{}", s(&mut r, 30)));
                }
                c
            }
            4 | 5 => {
                let k = if big {
                    150 + r.below(500)
                } else {
                    1 + r.below(60)
                };
                let long = !big && r.below(5) == 0;
                let mut c = vec!["HSET".into(), key.clone()];
                for j in 0..k {
                    c.push(format!("f{j}"));
                    c.push(if long && j == 0 {
                        span(&mut r, 70, 100)
                    } else if r.below(3) == 0 {
                        r.below(1_000_000).to_string()
                    } else {
                        s(&mut r, 40)
                    });
                }
                c
            }
            _ => {
                let k = 1 + r.below(if big { 600 } else { 40 });
                for j in 0..k {
                    cmds.push(vec![
                        "XADD".into(),
                        key.clone(),
                        format!("{}-{}", 1_700_000_000_000u64 + j * 3, j % 3),
                        "f".into(),
                        s(&mut r, 20),
                        "n".into(),
                        j.to_string(),
                    ]);
                }
                if r.below(2) == 0 {
                    cmds.push(vec![
                        "XGROUP".into(),
                        "CREATE".into(),
                        key.clone(),
                        "g".into(),
                        "0".into(),
                    ]);
                    cmds.push(vec![
                        "XREADGROUP".into(),
                        "GROUP".into(),
                        "g".into(),
                        "alice".into(),
                        "COUNT".into(),
                        (1 + r.below(k)).to_string(),
                        "STREAMS".into(),
                        key.clone(),
                        ">".into(),
                    ]);
                }
                Vec::new()
            }
        };
        if !cmd.is_empty() {
            cmds.push(std::mem::take(&mut cmd));
        }
        if r.below(3) == 0 {
            let ttl = TTLS[r.below(TTLS.len() as u64) as usize];
            cmds.push(vec!["EXPIRE".into(), key.clone(), ttl.to_string()]);
        }
        n += 1;
    }
    for chunk in cmds.chunks(200) {
        for cmd in chunk {
            c.send(cmd).expect("send");
        }
        c.drain(chunk.len()).expect("replies");
    }
    n
}

/// What the server says of each key.
struct Truth {
    usage: u64,
    ty: String,
    pttl: i64,
}

fn truth(c: &mut Client) -> BTreeMap<Vec<u8>, Truth> {
    let mut out = BTreeMap::new();
    for k in c.keys().expect("scan") {
        let key = String::from_utf8(k.clone()).expect("utf-8 keys");
        let usage = c
            .cmd(&["MEMORY", "USAGE", &key, "SAMPLES", "0"])
            .expect("memory usage")
            .int()
            .expect("usage") as u64;
        let ty = c.cmd(&["TYPE", &key]).expect("type").text();
        let pttl = c.cmd(&["PTTL", &key]).expect("pttl").int().expect("pttl");
        out.insert(k, Truth { usage, ty, pttl });
    }
    out
}

/// `replicator memory ARGS --format json`, which must succeed: the summary.
fn summary(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["memory"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = replicator(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json summary")
}

struct Row {
    ty: String,
    size: u64,
    encoding: String,
}

fn parse_csv(bytes: &[u8]) -> BTreeMap<Vec<u8>, Row> {
    let mut rd = csv::ReaderBuilder::new().from_reader(bytes);
    let header: Vec<String> = rd
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header.join(","),
        "database,type,key,size_in_bytes,encoding,num_elements,len_largest_element,expiry"
    );
    let mut out = BTreeMap::new();
    for rec in rd.byte_records() {
        let rec = rec.expect("csv row");
        assert_eq!(rec.len(), 8, "{rec:?}");
        let text = |i: usize| String::from_utf8(rec[i].to_vec()).expect("utf-8");
        out.insert(
            rec[2].to_vec(),
            Row {
                ty: text(1),
                size: text(3).parse().expect("size"),
                encoding: text(4),
            },
        );
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One server: fill, save, reload, compare.
fn against(name: &str, allocator: &str) {
    let Some(bin) = server_named(name, "memory report accuracy") else {
        return;
    };
    let streams = bin.major_minor() >= (5, 0);
    let mut server = Server::start(&bin, &[], None).expect("server");
    let mut c = server.client().expect("client");
    let n = fill(&mut c, 0x9e37_79b9_7f4a_7c15 ^ name.len() as u64, streams);
    drop(c);
    // what a file describes is what a server holds after loading it
    server.restart().expect("restart");
    let mut c = server.client().expect("client");
    let truth = truth(&mut c);
    assert_eq!(truth.len(), n, "{name}: keys in the server");
    let dump = server.dir.join("dump.rdb");
    let dump = dump.to_str().expect("path");
    let out = replicator(&["memory", dump, "--allocator", allocator]);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = parse_csv(&out.stdout);
    assert_eq!(rows.len(), truth.len(), "{name}: rows");

    let mut errs = Vec::new();
    let mut by_type: BTreeMap<String, (u64, u64, usize)> = BTreeMap::new();
    let (mut est_total, mut real_total) = (0u64, 0u64);
    let mut worst = Vec::new();
    for (k, t) in &truth {
        let row = rows
            .get(k)
            .unwrap_or_else(|| panic!("{name}: no row for {k:?}"));
        let ty = if row.ty == "sortedset" {
            "zset"
        } else {
            &row.ty
        };
        assert_eq!(ty, t.ty, "{name}: type of {:?}", String::from_utf8_lossy(k));
        let e = (row.size as f64 - t.usage as f64).abs() / t.usage as f64;
        errs.push(e);
        est_total += row.size;
        real_total += t.usage;
        let s = by_type
            .entry(format!("{}/{}", t.ty, row.encoding))
            .or_default();
        s.0 += row.size;
        s.1 += t.usage;
        s.2 += 1;
        worst.push((
            e,
            format!("{} {}/{}", String::from_utf8_lossy(k), t.ty, row.encoding),
            row.size,
            t.usage,
        ));
    }
    errs.sort_by(f64::total_cmp);
    worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    let median = percentile(&errs, 0.5);
    let p90 = percentile(&errs, 0.9);
    let total = (est_total as f64 - real_total as f64).abs() / real_total as f64;
    let mut table = String::new();
    for (k, (e, r, n)) in &by_type {
        table.push_str(&format!(
            "  {k:24} {n:4} keys  est {e:10}  real {r:10}  {:+.1}%\n",
            (*e as f64 - *r as f64) / *r as f64 * 100.0
        ));
    }
    for w in worst.iter().take(8) {
        table.push_str(&format!(
            "  worst {:.1}% {} est {} real {}\n",
            w.0 * 100.0,
            w.1,
            w.2,
            w.3
        ));
    }
    eprintln!(
        "{name} ({allocator}): median {:.2}%, p90 {:.2}%, total {:.2}% ({est_total} vs {real_total})\n{table}",
        median * 100.0,
        p90 * 100.0,
        total * 100.0
    );
    assert!(median <= 0.05, "{name}: median error {median}\n{table}");
    assert!(p90 <= 0.20, "{name}: 90th percentile error {p90}\n{table}");
    assert!(total <= 0.05, "{name}: total error {total}\n{table}");

    // the summary's counts are the server's
    let j = summary(&[dump, "--allocator", allocator]);
    assert_eq!(j["total"]["keys"], truth.len() as u64);
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut prefixes: BTreeMap<String, u64> = BTreeMap::new();
    let mut ttl = [0u64; 7];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for (k, t) in &truth {
        *types.entry(t.ty.clone()).or_default() += 1;
        let key = String::from_utf8_lossy(k);
        let mut at = 0;
        for _ in 0..3 {
            let Some(i) = key[at..].find(':') else { break };
            at += i + 1;
            *prefixes.entry(key[..at].to_string()).or_default() += 1;
        }
        let expire = (t.pttl >= 0).then(|| now + t.pttl);
        ttl[replicator::memory::TtlBuckets::bucket(expire, now)] += 1;
    }
    for (ty, n) in &types {
        assert_eq!(j["types"][ty]["keys"], *n, "{name}: keys of type {ty}");
    }
    let got: BTreeMap<String, u64> = j["prefixes"]
        .as_array()
        .expect("prefixes")
        .iter()
        .map(|p| {
            (
                p["prefix"].as_str().expect("prefix").to_string(),
                p["keys"].as_u64().expect("keys"),
            )
        })
        .collect();
    assert_eq!(got, prefixes, "{name}: prefixes");
    let got_ttl: Vec<u64> = j["ttl"]
        .as_array()
        .expect("ttl")
        .iter()
        .map(|b| b["keys"].as_u64().expect("keys"))
        .collect();
    assert_eq!(got_ttl, ttl.to_vec(), "{name}: TTL buckets");
}

#[test]
fn accuracy_redis_6_2() {
    against("redis-6.2", "libc");
}

#[test]
fn accuracy_redis_7_0() {
    against("redis-7.0", "jemalloc-16");
}

#[test]
fn accuracy_redis_8_2() {
    against("redis-8.2", "jemalloc");
}

#[test]
fn accuracy_valkey_8_1() {
    against("valkey-8.1", "libc");
}

#[test]
fn accuracy_valkey_9_1() {
    against("valkey-9.1", "libc");
}

#[test]
fn the_html_report_is_html_with_svg_charts_and_the_json_has_every_part() {
    let file = super::testdata().join("redis-7.0-compact.rdb");
    let file = file.to_str().expect("path");
    let dir = test_support::temp_dir("memory-html");
    let html = dir.join("report.html");
    let out = replicator(&[
        "memory",
        file,
        "--format",
        "html",
        "-o",
        html.to_str().expect("path"),
        "--top",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("html");
    let dom = tl::parse(&page, tl::ParserOptions::default()).expect("HTML parses");
    let parser = dom.parser();
    let count = |sel: &str| dom.query_selector(sel).map_or(0, Iterator::count);
    assert_eq!(count("h1"), 1);
    assert!(count("table") >= 1, "a table of the biggest keys");
    assert_eq!(
        count("svg"),
        4,
        "type and encoding bars, treemap, TTL chart"
    );
    // self-contained: nothing fetched
    for tag in ["script", "link", "img", "iframe"] {
        assert_eq!(count(tag), 0, "no <{tag}>");
    }
    let ns = "xmlns=\"http://www.w3.org/2000/svg\"";
    assert_eq!(
        page.matches("http").count(),
        page.matches(ns).count(),
        "only SVG namespaces"
    );
    // the biggest-keys table lists 5 keys (one header row)
    let rows = dom
        .query_selector("tr")
        .expect("rows")
        .filter(|r| {
            r.get(parser)
                .is_some_and(|n| n.inner_html(parser).contains("<td"))
        })
        .count();
    assert!(rows >= 5, "{rows} rows");
    // every chart is well-formed XML
    let mut at = 0;
    let mut svgs = 0;
    while let Some(i) = page[at..].find("<svg") {
        let start = at + i;
        let end = start + page[start..].find("</svg>").expect("closed svg") + "</svg>".len();
        let doc = roxmltree::Document::parse(&page[start..end])
            .unwrap_or_else(|e| panic!("SVG is not XML: {e}\n{}", &page[start..end]));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        svgs += 1;
        at = end;
    }
    assert_eq!(svgs, 4);

    let j = summary(&[file, "--top", "5"]);
    for field in [
        "server",
        "total",
        "databases",
        "types",
        "encodings",
        "top_by_bytes",
        "top_by_elements",
        "prefixes",
        "ttl",
        "encoding_hints",
    ] {
        assert!(!j[field].is_null(), "json lacks {field}");
    }
    assert_eq!(j["top_by_bytes"].as_array().expect("top").len(), 5);
    let top: Vec<u64> = j["top_by_bytes"]
        .as_array()
        .expect("top")
        .iter()
        .map(|k| k["bytes"].as_u64().expect("bytes"))
        .collect();
    assert!(
        top.windows(2).all(|w| w[0] >= w[1]),
        "biggest first: {top:?}"
    );
    assert_eq!(j["ttl"].as_array().expect("ttl").len(), 7);
    assert!(
        j["server"]
            .as_str()
            .expect("server")
            .starts_with("Redis 7.0")
    );
}

#[test]
fn csv_keys_round_trip_through_a_csv_reader_and_filters_apply() {
    let Some(bin) = server_named("redis-7.0", "memory CSV keys") else {
        return;
    };
    let server = Server::start(&bin, &[], None).expect("server");
    let mut c = server.client().expect("client");
    let odd: [&[u8]; 5] = [b"a,b", b"say \"hi\"", b"two\nlines", b"plain", b"tab\there"];
    for k in odd {
        c.cmd_bytes(&[b"SET", k, b"v"]).expect("set");
    }
    c.cmd(&["HSET", "h", "f", "v"]).expect("hset");
    c.cmd(&["SELECT", "2"]).expect("select");
    c.cmd(&["SET", "other", "1"]).expect("set");
    c.ok(&["SAVE"]).expect("save");
    let dump = server.dir.join("dump.rdb");
    let dump = dump.to_str().expect("path");
    let out = replicator(&["memory", dump]);
    assert!(out.status.success());
    let rows = parse_csv(&out.stdout);
    let mut want: Vec<Vec<u8>> = odd.iter().map(|k| k.to_vec()).collect();
    want.push(b"h".to_vec());
    want.push(b"other".to_vec());
    want.sort();
    assert_eq!(rows.keys().cloned().collect::<Vec<_>>(), want);

    let out = replicator(&["memory", dump, "--db", "0", "--type", "hash"]);
    assert!(out.status.success());
    let rows = parse_csv(&out.stdout);
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec![b"h".to_vec()]
    );
    assert_eq!(rows[&b"h".to_vec()].ty, "hash");
}

#[test]
fn a_live_master_and_its_saved_file_give_the_same_report() {
    let Some(bin) = server_named("redis-7.0", "memory from a live master") else {
        return;
    };
    let mut server = Server::start(&bin, &[], None).expect("server");
    let mut c = server.client().expect("client");
    fill(&mut c, 7, true);
    drop(c);
    server.restart().expect("restart");
    let url = format!("redis://127.0.0.1:{}", server.port);
    let a = summary(&[&url, "--allocator", "jemalloc-16"]);
    let dump = server.dir.join("dump.rdb");
    let b = summary(&[dump.to_str().expect("path"), "--allocator", "jemalloc-16"]);
    for field in ["total", "types", "encodings", "prefixes", "top_by_bytes"] {
        assert_eq!(a[field], b[field], "{field}");
    }
    assert!(a["total"]["keys"].as_u64().expect("keys") > 600);
}

#[test]
fn an_aofs_base_is_reported() {
    let Some(bin) = server_named("redis-7.0", "memory of an AOF base") else {
        return;
    };
    let server = Server::start(
        &bin,
        &[("appendonly", "yes"), ("aof-use-rdb-preamble", "yes")],
        None,
    )
    .expect("server");
    let mut c = server.client().expect("client");
    let n = fill(&mut c, 11, true);
    c.ok(&["BGREWRITEAOF"]).expect("rewrite");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server
        .info("persistence", "aof_rewrite_in_progress")
        .as_deref()
        != Some("0")
        || server
            .info("persistence", "aof_rewrite_scheduled")
            .as_deref()
            != Some("0")
    {
        assert!(std::time::Instant::now() < deadline, "rewrite did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dir = server.dir.join("appendonlydir");
    let j = summary(&[dir.to_str().expect("path")]);
    assert_eq!(j["total"]["keys"], n as u64);
}

#[test]
fn a_guarded_master_and_a_whole_cluster_are_reported() {
    let Some(bin) = server_named("redis-7.0", "memory from a guarded master and a cluster") else {
        return;
    };
    // a password, given as a flag
    let guarded = Server::start(&bin, &[("requirepass", "s3cret")], None).expect("server");
    let mut c = guarded.client().expect("client");
    c.cmd(&["AUTH", "s3cret"]).expect("auth");
    for i in 0..50 {
        c.cmd(&["SET", &format!("g:{i}"), "v"]).expect("set");
    }
    let url = format!("redis://127.0.0.1:{}", guarded.port);
    let out = replicator(&["memory", &url, "--format", "json"]);
    assert!(!out.status.success(), "no password, no report");
    let j = summary(&[&url, "--password", "s3cret"]);
    assert_eq!(j["total"]["keys"], 50);

    // any node of a cluster: every shard's keys, one report
    let cluster = test_support::Cluster::start(&bin, 3, 0).expect("cluster");
    let mut usage = 0u64;
    for i in 0..300 {
        let k = format!("c:{i}");
        cluster
            .write(&["SET", &k, &"x".repeat(i % 90)])
            .expect("set");
    }
    for node in &cluster.nodes {
        let mut c = node.client().expect("client");
        for k in c.keys().expect("scan") {
            let k = String::from_utf8(k).expect("utf-8");
            usage += c
                .cmd(&["MEMORY", "USAGE", &k, "SAMPLES", "0"])
                .expect("usage")
                .int()
                .expect("int") as u64;
        }
    }
    let url = format!("redis://127.0.0.1:{}", cluster.nodes[1].port);
    let j = summary(&[&url, "--allocator", "jemalloc-16"]);
    assert_eq!(j["total"]["keys"], 300);
    assert_eq!(j["prefixes"][0]["prefix"], "c:");
    // strings are estimated exactly on this server (the accuracy test holds it per key)
    assert_eq!(
        j["total"]["bytes"], usage,
        "the cluster's MEMORY USAGE in all"
    );
}
