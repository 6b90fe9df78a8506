//! Seeded random writes of every type, for tests that compare a copy with its source.
//!
//! Keys are `{gN}` hash-tagged, so that the multi-key commands (`MSET`, `SUNIONSTORE`,
//! `LMOVE`, `COPY`…) stay within one slot of a cluster, and typed by name (`{g3}list1`), so
//! that no command meets a key of another type. No command ever returns an error: streams are
//! never deleted (their consumer groups would go), counters hold only integers.

use std::collections::BTreeSet;

/// A xorshift generator: the same seed, the same writes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n.max(1)
    }

    /// A word: an integer, a run of one letter, a member name or random letters.
    pub fn word(&mut self) -> String {
        match self.below(4) {
            0 => (self.bits() as i64 >> self.below(60)).to_string(),
            1 => "x".repeat(self.below(100) as usize + 1),
            2 => format!("member-{}", self.below(1000)),
            _ => (0..self.below(30))
                .map(|_| char::from(b'a' + self.below(26) as u8))
                .collect(),
        }
    }
}

/// Random write commands over `groups` hash tags with a few keys of each type in each.
#[derive(Debug, Clone)]
pub struct Writes {
    rng: Rng,
    groups: u64,
    /// streams whose consumer group exists
    grouped: BTreeSet<String>,
}

const TYPES: [&str; 7] = ["str", "cnt", "list", "set", "zset", "hash", "stream"];

impl Writes {
    /// Writes from `seed` over `groups` hash tags.
    pub fn new(seed: u64, groups: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            groups: groups.max(1),
            grouped: BTreeSet::new(),
        }
    }

    fn key(&mut self, group: u64, ty: &str) -> String {
        format!("{{g{group}}}{ty}{}", self.rng.below(3))
    }

    /// The next command (its key, or first key, is `args[1]`).
    pub fn next_command(&mut self) -> Vec<String> {
        let g = self.rng.below(self.groups);
        let ty = TYPES[self.rng.below(TYPES.len() as u64) as usize];
        let k = self.key(g, ty);
        let r = &mut self.rng;
        let mut a: Vec<String> = Vec::new();
        let mut push = |v: &[&str]| a.extend(v.iter().map(|s| (*s).to_owned()));
        match (ty, r.below(6)) {
            ("str", 0) => push(&["SET", &k, &r.word(), "EX", "100000"]),
            ("str", 1) => push(&["APPEND", &k, &r.word()]),
            ("str", 2) => push(&["SETRANGE", &k, &r.below(50).to_string(), &r.word()]),
            ("str", 3) => {
                let other = format!("{{g{g}}}str{}", r.below(3));
                push(&["MSET", &k, &r.word(), &other, &r.word()]);
            }
            ("str", 4) => {
                // a destination no other command writes (COPY refuses a key onto itself)
                let other = format!("{{g{g}}}strcopy");
                push(&["COPY", &k, &other, "REPLACE"]);
            }
            ("str", _) => push(&["SET", &k, &r.word()]),
            ("cnt", 0) => push(&["DEL", &k]),
            ("cnt", _) => push(&["INCRBY", &k, &(r.below(1000) as i64 - 500).to_string()]),
            ("list", 0) => {
                push(&["RPUSH", &k]);
                let n = [1, 5, 200][r.below(3) as usize];
                for _ in 0..n {
                    let w = r.word();
                    push(&[&w]);
                }
            }
            ("list", 1) => push(&["LPOP", &k]),
            ("list", 2) => push(&["LTRIM", &k, "0", &r.below(100).to_string()]),
            ("list", 3) => {
                let other = format!("{{g{g}}}list{}", r.below(3));
                push(&["LMOVE", &k, &other, "LEFT", "RIGHT"]);
            }
            ("list", _) => push(&["LPUSH", &k, &r.word(), &r.word()]),
            ("set", 0) => push(&["SREM", &k, &r.below(100).to_string()]),
            ("set", 1) => {
                let other = format!("{{g{g}}}set{}", r.below(3));
                push(&["SUNIONSTORE", &k, &k, &other]);
            }
            ("set", 2) => {
                push(&["SADD", &k]);
                for _ in 0..r.below(150) + 1 {
                    let w = r.word();
                    push(&[&w]);
                }
            }
            ("set", _) => push(&["SADD", &k, &r.below(100).to_string(), &r.word()]),
            ("zset", 0) => push(&["ZPOPMIN", &k]),
            ("zset", 1) => push(&["ZINCRBY", &k, "1.5", &r.word()]),
            ("zset", 2) => {
                let other = format!("{{g{g}}}zset{}", r.below(3));
                push(&["ZUNIONSTORE", &k, "2", &k, &other]);
            }
            ("zset", _) => {
                let score = (r.below(1000) as f64 / 7.0).to_string();
                push(&["ZADD", &k, &score, &r.word()]);
            }
            ("hash", 0) => push(&["HDEL", &k, &format!("f{}", r.below(10))]),
            ("hash", 1) => push(&["HINCRBY", &k, "n", "3"]),
            ("hash", 2) => {
                push(&["HSET", &k]);
                for i in 0..r.below(200) + 1 {
                    let w = r.word();
                    push(&[&format!("big{i}"), &w]);
                }
            }
            ("hash", _) => push(&["HSET", &k, &format!("f{}", r.below(10)), &r.word()]),
            ("stream", n) => {
                if !self.grouped.contains(&k) {
                    self.grouped.insert(k.clone());
                    return vec![
                        "XGROUP".into(),
                        "CREATE".into(),
                        k,
                        "grp".into(),
                        "$".into(),
                        "MKSTREAM".into(),
                    ];
                }
                match n {
                    0 => push(&[
                        "XREADGROUP",
                        "GROUP",
                        "grp",
                        &format!("c{}", r.below(2)),
                        "COUNT",
                        "2",
                        "STREAMS",
                        &k,
                        ">",
                    ]),
                    1 => push(&["XTRIM", &k, "MAXLEN", "50"]),
                    _ => push(&["XADD", &k, "*", "f", &r.word()]),
                }
            }
            _ => unreachable!("every type is matched"),
        }
        // every few commands, an expiry on a key that is not a stream
        if ty != "stream" && self.rng.below(20) == 0 {
            return vec!["EXPIRE".into(), k, "100000".into()];
        }
        a
    }

    /// Runs the next `n` commands on a server (every one must succeed).
    pub fn run(&mut self, c: &mut crate::Client, n: usize) -> anyhow::Result<()> {
        for _ in 0..n {
            let args = self.next_command();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.ok(&args)?;
        }
        Ok(())
    }

    /// Runs the next `n` commands on a cluster, each on the master of its key.
    pub fn run_on_cluster(&mut self, cluster: &crate::Cluster, n: usize) -> anyhow::Result<()> {
        for _ in 0..n {
            let args = self.next_command();
            let key = Self::key_of(&args).to_owned();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cluster.write_keyed(&key, &args)?;
        }
        Ok(())
    }

    /// The key a command routes on: `args[1]`, or the stream of `XGROUP`/`XREADGROUP`.
    pub fn key_of(args: &[String]) -> &str {
        match args[0].as_str() {
            "XGROUP" => &args[2],
            "XREADGROUP" => &args[7],
            _ => &args[1],
        }
    }
}
