//! What a replica's events say each key holds (strings and lists), to check numbered writes
//! against: nothing lost, nothing doubled.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdb_format::{Chunk, Elem, Item, Value};
use replica_net::{Event, History};

/// What the events say each key holds: strings and lists, enough for numbered writes.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) keys: BTreeMap<Vec<u8>, Held>,
    /// the list being delivered in chunks, per shard
    chunked: BTreeMap<usize, Vec<u8>>,
    pub(crate) partial_starts: usize,
    pub(crate) full_starts: usize,
    /// Each shard's position: the replid of its sync and the offset of the last command applied.
    pub(crate) positions: BTreeMap<usize, (String, u64)>,
    /// What new nodes said of their history before each PSYNC they were asked.
    pub(crate) histories: Vec<History>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Held {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
}

fn bytes(e: &Elem) -> Vec<u8> {
    e.to_bytes().to_vec()
}

impl Model {
    pub(crate) fn apply(&mut self, shard: usize, ev: Event) {
        match ev {
            Event::SyncStart(s) => {
                self.histories.extend(s.history.clone());
                if s.full {
                    self.full_starts += 1;
                } else {
                    self.partial_starts += 1;
                }
                self.positions.insert(shard, (s.replid.clone(), s.offset));
            }
            Event::Rdb(Item::Key(k)) => {
                let held = match k.value {
                    Value::String(s) => Held::Str(s.to_vec()),
                    Value::List(l) => Held::List(l.iter().map(bytes).collect()),
                    _ => return,
                };
                self.keys.insert(k.head.key.to_vec(), held);
            }
            Event::Rdb(Item::KeyStart(h)) => {
                self.keys.insert(h.key.to_vec(), Held::List(Vec::new()));
                self.chunked.insert(shard, h.key.to_vec());
            }
            Event::Rdb(Item::Chunk(Chunk::List(v))) => {
                if let Some(k) = self.chunked.get(&shard) {
                    if let Some(Held::List(l)) = self.keys.get_mut(k) {
                        l.extend(v.iter().map(bytes));
                    }
                }
            }
            Event::Command(c) => {
                if let (Some(o), Some(p)) = (c.offset, self.positions.get_mut(&shard)) {
                    p.1 = o;
                }
                let args: Vec<Vec<u8>> = c.cmd.args().map(<[u8]>::to_vec).collect();
                let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                match name.as_str() {
                    "SET" => {
                        self.keys
                            .insert(args[1].clone(), Held::Str(args[2].clone()));
                    }
                    "INCR" => {
                        let n = match self.keys.get(&args[1]) {
                            Some(Held::Str(s)) => {
                                String::from_utf8_lossy(s).parse::<i64>().unwrap()
                            }
                            _ => 0,
                        };
                        self.keys
                            .insert(args[1].clone(), Held::Str((n + 1).to_string().into_bytes()));
                    }
                    "RPUSH" => {
                        let e = self
                            .keys
                            .entry(args[1].clone())
                            .or_insert_with(|| Held::List(Vec::new()));
                        if let Held::List(l) = e {
                            l.extend(args[2..].iter().cloned());
                        }
                    }
                    "RESTORE" | "RESTORE-ASKING" => {
                        let held = match rdb_format::decode_dump(&args[3]).unwrap().value {
                            Value::String(s) => Held::Str(s.to_vec()),
                            Value::List(l) => Held::List(l.iter().map(bytes).collect()),
                            _ => return,
                        };
                        self.keys.insert(args[1].clone(), held);
                    }
                    "DEL" => {
                        for k in &args[1..] {
                            self.keys.remove(k);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Waits until the model holds exactly the numbered writes `0..rounds` for every tag.
pub(crate) fn wait_for(model: &Mutex<Model>, tags: &[String], rounds: u64) {
    let want_list: Vec<Vec<u8>> = (0..rounds).map(|i| i.to_string().into_bytes()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = model.lock().unwrap();
        let ok = tags.iter().all(|t| {
            m.keys.get(format!("n{{{t}}}").as_bytes())
                == Some(&Held::Str(rounds.to_string().into_bytes()))
                && m.keys.get(format!("l{{{t}}}").as_bytes())
                    == Some(&Held::List(want_list.clone()))
        });
        if ok {
            return;
        }
        if Instant::now() > deadline {
            for t in tags {
                let n = m.keys.get(format!("n{{{t}}}").as_bytes());
                let l = match m.keys.get(format!("l{{{t}}}").as_bytes()) {
                    Some(Held::List(l)) => l.len(),
                    _ => 0,
                };
                eprintln!("tag {t}: counter {n:?}, list of {l}");
            }
            panic!("the replicated data did not reach {rounds} numbered writes per shard");
        }
        drop(m);
        std::thread::sleep(Duration::from_millis(50));
    }
}
