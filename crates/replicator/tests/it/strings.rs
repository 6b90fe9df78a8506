//! String keys printed from borrowed records (`FileEvents::next_event_with`, `Printer::string`)
//! come out byte for byte as their items do, in every format, with every kind of filter,
//! whether the decoder builds values or skips them, read ahead or mapped.

use std::cell::RefCell;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;

use replicator::files::{self, Options};
use replicator::filter::Filter;
use replicator::print::{Count, Json, Jsonl, Keys, Printer, Resp, Sink};
use replicator::rdb::{Config, ValueType};

/// Prints `path` through `sink`; `visit`: string keys as borrowed records. Gives the output
/// and the error text, if any.
fn print<S: Sink>(
    path: &Path,
    opts: &Options,
    filter: &Filter,
    sink: fn(Shared) -> S,
    (visit, value): (bool, bool),
) -> (Vec<u8>, String, u64) {
    let out = Shared::default();
    let mut events = files::open_with(path, opts).unwrap();
    let mut p = Printer::new(sink(out.clone()));
    p.filter(filter.clone());
    let mut visited = 0;
    let err = loop {
        let got = if visit {
            events.next_event_with(&mut |rec: &replicator::rdb::StringRecord<'_>| {
                visited += 1;
                p.string(rec, value).unwrap();
                ControlFlow::Continue(())
            })
        } else {
            events.next_event()
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
                macro_rules! same {
                    ($name:literal, $make:expr) => {{
                        let want = print(path, &opts, &filter, $make, (false, !skip));
                        let got = print(path, &opts, &filter, $make, (true, !skip));
                        assert_eq!(
                            (String::from_utf8_lossy(&got.0), &got.1),
                            (String::from_utf8_lossy(&want.0), &want.1),
                            "{} {} skip {skip} mmap {mmap} filter {filter:?}",
                            $name,
                            path.display()
                        );
                        visited += got.2;
                    }};
                }
                same!("jsonl", Jsonl::new);
                same!("json", Json::new);
                same!("resp", Resp::new);
                same!("keys", Keys::new);
                same!("count", Count::new);
            }
        }
    }
    assert!(visited > 10_000, "only {visited} keys were visited");
}
