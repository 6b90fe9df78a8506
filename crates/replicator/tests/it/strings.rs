//! String keys printed from borrowed records (`FileEvents::next_event_with`, `Printer::string`),
//! and keys whose value is one packed blob printed from its borrowed elements (`PrintVisit`,
//! `Printer::packed`), come out byte for byte as their items do, in every format, with every
//! kind of filter, whether the decoder builds values or skips them, read ahead or mapped.

use std::cell::RefCell;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;

use replicator::files::{self, Options};
use replicator::filter::Filter;
use replicator::print::{Count, Json, Jsonl, Keys, PrintVisit, Printer, Resp, Sink};
use replicator::rdb::{Config, KeyHead, PackedRecord, StringRecord, ValueType, Visitor};

/// How [`print`] takes keys from the decoder.
#[derive(Clone, Copy)]
enum Via {
    /// Items only.
    Items,
    /// String keys as borrowed records (`FileEvents::next_event_with`, `Printer::string`);
    /// with their values when `.0`.
    Strings(bool),
    /// A [`PrintVisit`]: string keys, and keys whose value is one packed blob where the sink
    /// takes them (values built).
    Visit,
}

/// Prints `path` through `sink`, taking keys `via` what it says. Gives the output, the error
/// text, if any, and how many keys were visited (string keys for [`Via::Strings`], packed keys
/// for [`Via::Visit`]).
fn print<S: Sink>(
    path: &Path,
    opts: &Options,
    filter: &Filter,
    sink: fn(Shared) -> S,
    via: Via,
) -> (Vec<u8>, String, u64) {
    let out = Shared::default();
    let mut events = files::open_with(path, opts).unwrap();
    let mut p = Printer::new(sink(out.clone()));
    p.filter(filter.clone());
    let mut visited = 0;
    let err = loop {
        let got = match via {
            Via::Items => events.next_event(),
            Via::Strings(value) => events.next_event_with(&mut |rec: &StringRecord<'_>| {
                visited += 1;
                p.string(rec, value).unwrap();
                ControlFlow::Continue(())
            }),
            Via::Visit => {
                let mut visit = Counted {
                    inner: PrintVisit::new(&mut p, true, |_, _| false),
                    packed: 0,
                };
                let got = events.next_event_with(&mut visit);
                visited += visit.packed;
                assert!(visit.inner.error.is_none(), "{:?}", visit.inner.error);
                got
            }
        };
        match got {
            Ok(Some(ev)) => p.event(ev).unwrap(),
            Ok(None) => break String::new(),
            Err(e) => break e.to_string(),
        }
    };
    if err.is_empty() {
        p.finish().unwrap();
    } else {
        p.flush().unwrap();
    }
    (out.0.take(), err, visited)
}

/// Prints `path` through the sink `make` makes, taking keys `via` what it says, and asserts
/// that it gives the output and the error that its items give (`case` names the print in the
/// failure); how many keys were visited.
fn same_as_items<S: Sink>(
    path: &Path,
    opts: &Options,
    filter: &Filter,
    make: fn(Shared) -> S,
    via: Via,
    case: String,
) -> u64 {
    let want = print(path, opts, filter, make, Via::Items);
    let got = print(path, opts, filter, make, via);
    assert_eq!(
        (String::from_utf8_lossy(&got.0), &got.1),
        (String::from_utf8_lossy(&want.0), &want.1),
        "{case} {}",
        path.display()
    );
    got.2
}

/// An output the test reads after the sink is done with it.
#[derive(Default, Clone)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn filters() -> Vec<Filter> {
    let mut db = Filter::new();
    db.db(0);
    let mut key = Filter::new();
    key.key_pattern("^[a-m]").unwrap();
    let mut ty = Filter::new();
    ty.value_type(ValueType::String).value_type(ValueType::Hash);
    let mut other = Filter::new();
    other.value_type(ValueType::List);
    vec![Filter::new(), db, key, ty, other]
}

#[test]
fn visited_strings_print_as_their_items_do() {
    let mut visited = 0;
    let files = test_support::every_rdb_file("strings");
    assert!(files.len() > 20);
    for path in &files {
        for (skip, mmap) in [(false, false), (true, false), (false, true)] {
            let mut config = Config::default();
            config.skip_values(skip);
            let mut opts = Options::new();
            opts.rdb(config).mmap(mmap);
            for filter in filters() {
                let via = Via::Strings(!skip);
                let case = |name| format!("{name} skip {skip} mmap {mmap} filter {filter:?}");
                let (opts, filter) = (&opts, &filter);
                visited += same_as_items(path, opts, filter, Jsonl::new, via, case("jsonl"));
                visited += same_as_items(path, opts, filter, Json::new, via, case("json"));
                visited += same_as_items(path, opts, filter, Resp::new, via, case("resp"));
                visited += same_as_items(path, opts, filter, Keys::new, via, case("keys"));
                visited += same_as_items(path, opts, filter, Count::new, via, case("count"));
            }
        }
    }
    assert!(visited > 10_000, "only {visited} keys were visited");
}

/// A visitor that counts the packed keys the one it wraps is handed.
struct Counted<V> {
    inner: V,
    packed: u64,
}

impl<V: Visitor> Visitor for Counted<V> {
    fn string(&mut self, rec: &StringRecord<'_>) -> ControlFlow<()> {
        self.inner.string(rec)
    }
    fn takes_checked(&self) -> bool {
        self.inner.takes_checked()
    }
    fn checked(&mut self, head: &KeyHead) -> ControlFlow<()> {
        self.inner.checked(head)
    }
    fn takes_packed(&self) -> bool {
        self.inner.takes_packed()
    }
    fn packed(&mut self, rec: &PackedRecord<'_>) -> ControlFlow<()> {
        self.packed += 1;
        self.inner.packed(rec)
    }
}

/// Commands of at most two elements each: a packed key's elements go in several.
fn resp_by_two(w: Shared) -> Resp<Shared> {
    let mut r = Resp::new(w);
    r.batch(2);
    r
}

#[test]
fn packed_keys_print_from_their_borrowed_elements_as_their_items_do() {
    let files = test_support::every_rdb_file("packed");
    assert!(files.len() > 20);
    let mut packed = 0;
    for path in &files {
        for mmap in [false, true] {
            let mut opts = Options::new();
            opts.rdb(Config::default()).mmap(mmap);
            for filter in filters() {
                let case = |name| format!("{name} mmap {mmap} filter {filter:?}");
                let (opts, filter, via) = (&opts, &filter, Via::Visit);
                packed += same_as_items(path, opts, filter, Jsonl::new, via, case("jsonl"));
                packed += same_as_items(path, opts, filter, Json::new, via, case("json"));
                packed += same_as_items(path, opts, filter, Resp::new, via, case("resp"));
                packed += same_as_items(path, opts, filter, resp_by_two, via, case("resp by 2"));
                // (these take none: their keys go the way of items)
                let keys = same_as_items(path, opts, filter, Keys::new, via, case("keys"));
                assert_eq!(keys, 0);
                let count = same_as_items(path, opts, filter, Count::new, via, case("count"));
                assert_eq!(count, 0);
            }
        }
    }
    assert!(packed > 10_000, "only {packed} packed keys were printed");
}
