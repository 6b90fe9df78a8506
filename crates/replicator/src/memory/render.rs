//! The memory report's outputs: CSV rows, the JSON summary and the self-contained HTML page.

use std::fmt::Write as _;

use rdb_format::ValueType;

use super::KeyMemory;
use super::report::{Report, Tally, TtlBuckets};
use crate::print::json::{json_bytes, json_str};

/// The CSV header `rdb-tools` writes.
pub const CSV_HEADER: &str =
    "database,type,key,size_in_bytes,encoding,num_elements,len_largest_element,expiry\n";

/// Appends one CSV row for a key, as `rdb --command memory` writes it: `sortedset` for sorted
/// sets, the expiry as a local-free ISO time (`2022-12-25T10:11:12.573000`, empty when
/// none). Keys are written raw, as rdb-tools writes them, except that a key holding a comma,
/// a quote or a line break is quoted as RFC 4180 says (rdb-tools writes such a key bare and
/// breaks the row).
///
/// ```
/// use replicator::memory::{Allocator, Model, Sizer, csv_row};
/// let mut out = Vec::new();
/// # let _ = (Allocator::Libc, Model::for_version("7.0", false, Allocator::Libc));
/// # let k = replicator::memory::KeyMemory::example();
/// csv_row(&mut out, &k);
/// assert_eq!(out, b"0,string,a,48,int,1,1,\n");
/// ```
pub fn csv_row(out: &mut Vec<u8>, k: &KeyMemory) {
    let ty = match k.value_type {
        ValueType::SortedSet => "sortedset",
        t => t.name(),
    };
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(k.db).as_bytes());
    out.push(b',');
    out.extend_from_slice(ty.as_bytes());
    out.push(b',');
    if k.key
        .iter()
        .any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for &c in k.key.iter() {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(&k.key);
    }
    out.push(b',');
    out.extend_from_slice(b.format(k.size).as_bytes());
    out.push(b',');
    out.extend_from_slice(k.encoding.as_bytes());
    for v in [k.num_elements, k.len_largest_element] {
        out.push(b',');
        out.extend_from_slice(b.format(v).as_bytes());
    }
    out.push(b',');
    if let Some(ms) = k.expire_ms {
        out.extend_from_slice(iso_time(ms).as_bytes());
    }
    out.push(b'\n');
}

impl KeyMemory {
    /// A small string key, for examples.
    #[doc(hidden)]
    pub fn example() -> Self {
        Self {
            db: 0,
            key: bytes::Bytes::from_static(b"a"),
            value_type: ValueType::String,
            encoding: "int",
            size: 48,
            num_elements: 1,
            len_largest_element: 1,
            expire_ms: None,
            hint: None,
        }
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS[.ffffff]` (UTC), as Python's `isoformat`.
fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    );
    if frac != 0 {
        let _ = write!(s, ".{:06}", frac * 1000);
    }
    s
}

fn tally_json(out: &mut Vec<u8>, t: Tally) {
    let _ = write_str(
        out,
        &format!("{{\"keys\":{},\"bytes\":{}}}", t.keys, t.bytes),
    );
}

fn write_str(out: &mut Vec<u8>, s: &str) -> std::fmt::Result {
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl Report {
    /// The summary as one JSON object (docs/memory.md lists its fields).
    pub fn to_json(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(b"{\"server\":");
        json_str(&mut o, self.server_text());
        o.extend_from_slice(b",\"now_ms\":");
        o.extend_from_slice(self.now().to_string().as_bytes());
        o.extend_from_slice(b",\"total\":");
        tally_json(&mut o, self.total());
        o.extend_from_slice(b",\"databases\":[");
        for (i, (db, t)) in self.by_db().iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            let _ = write_str(
                &mut o,
                &format!("{{\"db\":{db},\"keys\":{},\"bytes\":{}}}", t.keys, t.bytes),
            );
        }
        o.extend_from_slice(b"],\"types\":{");
        for (i, (ty, t)) in self.by_type().iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            json_str(&mut o, ty);
            o.push(b':');
            tally_json(&mut o, *t);
        }
        o.extend_from_slice(b"},\"encodings\":[");
        for (i, ((ty, enc), t)) in self.by_encoding().iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            let _ = write_str(
                &mut o,
                &format!(
                    "{{\"type\":\"{ty}\",\"encoding\":\"{enc}\",\"keys\":{},\"bytes\":{}}}",
                    t.keys, t.bytes
                ),
            );
        }
        for (name, list) in [
            ("top_by_bytes", self.top_by_size()),
            ("top_by_elements", self.top_by_elements()),
        ] {
            let _ = write_str(&mut o, &format!("],\"{name}\":["));
            for (i, k) in list.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                let _ = write_str(&mut o, &format!("{{\"db\":{},\"key\":", k.db));
                json_bytes(&mut o, &k.key);
                let _ = write_str(
                    &mut o,
                    &format!(
                        ",\"type\":\"{}\",\"encoding\":\"{}\",\"bytes\":{},\"elements\":{}}}",
                        k.value_type, k.encoding, k.size, k.elements
                    ),
                );
            }
        }
        let _ = write_str(
            &mut o,
            &format!(
                "],\"prefix_separator\":{},\"prefix_depth\":{},\"prefixes\":[",
                serde_text(self.sep()),
                self.depth()
            ),
        );
        for (i, p) in self.prefixes().iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            o.extend_from_slice(b"{\"prefix\":");
            json_bytes(&mut o, &p.prefix);
            let _ = write_str(
                &mut o,
                &format!(
                    ",\"depth\":{},\"keys\":{},\"bytes\":{}}}",
                    p.depth, p.tally.keys, p.tally.bytes
                ),
            );
        }
        o.extend_from_slice(b"],\"no_prefix\":");
        tally_json(&mut o, self.no_prefix());
        o.extend_from_slice(b",\"folded_prefixes\":");
        o.extend_from_slice(self.folded().to_string().as_bytes());
        o.extend_from_slice(b",\"other\":[");
        for (i, t) in self.other().iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            tally_json(&mut o, *t);
        }
        o.extend_from_slice(b"],\"ttl\":[");
        for (i, (name, t)) in TtlBuckets::NAMES.iter().zip(self.ttl().0).enumerate() {
            if i > 0 {
                o.push(b',');
            }
            let _ = write_str(
                &mut o,
                &format!(
                    "{{\"bucket\":\"{name}\",\"keys\":{},\"bytes\":{}}}",
                    t.keys, t.bytes
                ),
            );
        }
        let (hints, ht, saves) = self.hints();
        let _ = write_str(
            &mut o,
            &format!(
                "],\"encoding_hints\":{{\"keys\":{},\"bytes\":{},\"saves\":{saves},\"top\":[",
                ht.keys, ht.bytes
            ),
        );
        for (i, h) in hints.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            let _ = write_str(&mut o, &format!("{{\"db\":{},\"key\":", h.db));
            json_bytes(&mut o, &h.key);
            let _ = write_str(
                &mut o,
                &format!(
                    ",\"setting\":\"{}\",\"bytes\":{},\"saves\":{}}}",
                    h.setting, h.size, h.saves
                ),
            );
        }
        o.extend_from_slice(b"]}}\n");
        o
    }

    /// The report as one self-contained HTML page: no script, no network, charts as inline
    /// SVG.
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(64 * 1024);
        let t = self.total();
        h.push_str(HEAD);
        let _ = write!(
            h,
            "<h1>Memory report</h1><p class=sub>{} &middot; {} keys &middot; {} estimated \
             (<code>MEMORY USAGE</code> per key)</p>",
            esc(self.server_text()),
            t.keys,
            human(t.bytes)
        );
        // summary cards
        h.push_str("<section class=cards>");
        for (db, d) in self.by_db() {
            let _ = write!(
                h,
                "<div class=card><b>db {db}</b><span>{} keys</span><span>{}</span></div>",
                d.keys,
                human(d.bytes)
            );
        }
        h.push_str("</section>");
        h.push_str("<div class=row><section><h2>By type</h2>");
        let types: Vec<(String, Tally)> = self
            .by_type()
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        bars(&mut h, &types);
        h.push_str("</section><section><h2>By encoding</h2>");
        let encs: Vec<(String, Tally)> = self
            .by_encoding()
            .iter()
            .map(|((t, e), v)| (format!("{t} / {e}"), *v))
            .collect();
        bars(&mut h, &encs);
        h.push_str("</section></div>");
        h.push_str("<section><h2>Key prefixes by memory</h2>");
        treemap(&mut h, self);
        h.push_str("</section>");
        h.push_str("<div class=row><section><h2>Time to live</h2>");
        ttl_chart(&mut h, self);
        h.push_str("</section><section><h2>Encoding hints</h2>");
        let (hints, ht, saves) = self.hints();
        if hints.is_empty() {
            h.push_str("<p>No key is just over a compact-encoding threshold.</p>");
        } else {
            let _ = write!(
                h,
                "<p>{} keys just over a threshold hold {}; the compact encoding would save {}.</p>\
                 <table><tr><th>key</th><th>setting</th><th>bytes</th><th>saves</th></tr>",
                ht.keys,
                human(ht.bytes),
                human(saves)
            );
            for x in hints {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                    esc(&shown(&x.key)),
                    x.setting,
                    x.size,
                    x.saves
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section></div>");
        let _ = write!(h, "<section><h2>Biggest keys (top {})</h2>", self.top_n());
        h.push_str(
            "<table><tr><th>db</th><th>key</th><th>type</th><th>encoding</th>\
             <th>bytes</th><th>elements</th></tr>",
        );
        for k in self.top_by_size() {
            let _ = write!(
                h,
                "<tr><td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=n>{}</td><td class=n>{}</td></tr>",
                k.db,
                esc(&shown(&k.key)),
                k.value_type,
                k.encoding,
                k.size,
                k.elements
            );
        }
        h.push_str("</table></section></body></html>\n");
        h
    }
}

fn serde_text(b: &[u8]) -> String {
    let mut v = Vec::new();
    json_bytes(&mut v, b);
    String::from_utf8_lossy(&v).into_owned()
}

/// A key for people: printable ASCII as is, other bytes as `\xNN`, cut at 120 bytes.
fn shown(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(120) {
        if (0x20..0x7f).contains(&c) {
            s.push(char::from(c));
        } else {
            let _ = write!(s, "\\x{c:02x}");
        }
    }
    if b.len() > 120 {
        s.push('…');
    }
    s
}

/// Escapes text for HTML and XML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Horizontal bars of bytes, labelled with keys and bytes.
fn bars(h: &mut String, rows: &[(String, Tally)]) {
    let max = rows.iter().map(|r| r.1.bytes).max().unwrap_or(0).max(1);
    let height = 26 * rows.len().max(1) + 4;
    let _ = write!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"{height}\" \
         role=\"img\">"
    );
    for (i, (name, t)) in rows.iter().enumerate() {
        let y = 26 * i + 2;
        let w = (t.bytes as f64 / max as f64 * 210.0).max(1.0);
        let _ = write!(
            h,
            "<text x=\"0\" y=\"{}\" class=\"l\">{}</text>\
             <rect x=\"150\" y=\"{y}\" width=\"{w:.1}\" height=\"20\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{}\" class=\"v\">{} &#183; {} keys</text>",
            y + 15,
            esc(name),
            PALETTE[i % PALETTE.len()],
            156.0 + w,
            y + 15,
            human(t.bytes),
            t.keys
        );
    }
    h.push_str("</svg>");
}

fn ttl_chart(h: &mut String, r: &Report) {
    let b = r.ttl().0;
    let max = b.iter().map(|t| t.keys).max().unwrap_or(0).max(1);
    h.push_str(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"230\" role=\"img\">",
    );
    for (i, (name, t)) in TtlBuckets::NAMES.iter().zip(b).enumerate() {
        let x = 10 + i * 72;
        let hgt = (t.keys as f64 / max as f64 * 160.0).max(1.0);
        let y = 180.0 - hgt;
        let _ = write!(
            h,
            "<rect x=\"{x}\" y=\"{y:.1}\" width=\"60\" height=\"{hgt:.1}\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"c\">{}</text>\
             <text x=\"{}\" y=\"198\" class=\"c\">{}</text>\
             <text x=\"{}\" y=\"214\" class=\"c s\">{}</text>",
            PALETTE[i % PALETTE.len()],
            x + 28,
            y - 4.0,
            t.keys,
            x + 28,
            esc(name),
            x + 28,
            human(t.bytes)
        );
    }
    h.push_str("</svg>");
}

/// A treemap cell: its name, bytes, keys and children.
type Cell = (String, u64, u64, Vec<(String, u64, u64)>);

/// A two-level treemap: prefixes of depth 1 as columns sized by bytes, their depth-2 prefixes
/// stacked inside.
fn treemap(h: &mut String, r: &Report) {
    let all = r.prefixes();
    let total = r.total().bytes.max(1);
    let mut top: Vec<_> = all.iter().filter(|p| p.depth == 1).take(24).collect();
    top.sort_by_key(|p| std::cmp::Reverse(p.tally.bytes));
    let shown_bytes: u64 = top.iter().map(|p| p.tally.bytes).sum();
    let rest = total.saturating_sub(shown_bytes);
    let (w, hgt) = (1080.0f64, 420.0f64);
    let _ = write!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" \
         viewBox=\"0 0 {w} {hgt}\" style=\"max-width:100%;height:auto\" role=\"img\">"
    );
    let mut x = 0.0;
    let mut cells: Vec<Cell> = top
        .iter()
        .map(|p| {
            let kids: Vec<(String, u64, u64)> = all
                .iter()
                .filter(|c| c.depth == 2 && c.prefix.starts_with(&p.prefix))
                .take(12)
                .map(|c| (shown(&c.prefix), c.tally.bytes, c.tally.keys))
                .collect();
            (shown(&p.prefix), p.tally.bytes, p.tally.keys, kids)
        })
        .collect();
    if rest > 0 {
        let keys = r.total().keys - top.iter().map(|p| p.tally.keys).sum::<u64>();
        cells.push(("(other keys)".into(), rest, keys, Vec::new()));
    }
    for (i, (name, bytes, keys, kids)) in cells.iter().enumerate() {
        let cw = *bytes as f64 / total as f64 * w;
        if cw < 0.5 {
            continue;
        }
        let color = PALETTE[i % PALETTE.len()];
        let _ = write!(
            h,
            "<g><title>{} — {} in {} keys</title>\
             <rect x=\"{x:.1}\" y=\"0\" width=\"{cw:.1}\" height=\"{hgt}\" fill=\"{color}\" \
             stroke=\"#fff\" stroke-width=\"2\"/>",
            esc(name),
            human(*bytes),
            keys
        );
        // children stacked from the top, in the lower part of the column
        let mut y = 36.0;
        let inner = hgt - 36.0;
        for (cn, cb, ck) in kids {
            let ch = *cb as f64 / (*bytes).max(1) as f64 * inner;
            if ch >= 1.0 {
                let _ = write!(
                    h,
                    "<g><title>{} — {} in {} keys</title><rect x=\"{:.1}\" y=\"{y:.1}\" \
                     width=\"{:.1}\" height=\"{ch:.1}\" fill=\"#ffffff\" fill-opacity=\"0.18\" \
                     stroke=\"#fff\" stroke-width=\"1\"/>",
                    esc(cn),
                    human(*cb),
                    ck,
                    x + 4.0,
                    (cw - 8.0).max(0.0)
                );
                if ch > 16.0 && cw > 70.0 {
                    let _ = write!(
                        h,
                        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"t s\">{}</text>",
                        x + 8.0,
                        y + 13.0,
                        esc(&clip(cn, (cw / 7.0) as usize))
                    );
                }
                h.push_str("</g>");
                y += ch;
            }
        }
        if cw > 40.0 {
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"16\" class=\"t\">{}</text>\
                 <text x=\"{:.1}\" y=\"30\" class=\"t s\">{}</text>",
                x + 4.0,
                esc(&clip(name, (cw / 7.5) as usize)),
                x + 4.0,
                human(*bytes)
            );
        }
        h.push_str("</g>");
        x += cw;
    }
    h.push_str("</svg>");
    if r.folded() > 0 {
        let _ = write!(
            h,
            "<p class=sub>{} rarely used prefixes were folded into \"other\" to keep the report \
             small.</p>",
            r.folded()
        );
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

const HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Memory report</title><style>\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px 32px;\
color:#222;background:#fafafa}\
h1{margin:0 0 4px;font-size:24px}h2{font-size:16px;margin:18px 0 8px}\
.sub{color:#666;margin:0 0 12px}\
.cards{display:flex;gap:12px;flex-wrap:wrap}\
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 14px;\
display:flex;flex-direction:column}\
.row{display:flex;gap:20px;flex-wrap:wrap}.row section{flex:1 1 520px}\
section{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:4px 16px 12px;\
margin-top:14px}\
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;\
border-bottom:1px solid #eee;text-align:left}td.n{text-align:right;\
font-variant-numeric:tabular-nums}\
svg text{font:12px system-ui,sans-serif;fill:#222}svg text.t{fill:#fff;font-weight:600}\
svg text.s{font-size:11px;font-weight:400}svg text.c{text-anchor:middle}\
svg text.v{fill:#444}\
</style></head><body>";
