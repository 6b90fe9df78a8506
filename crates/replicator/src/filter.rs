//! [`Filter`]: which keys and commands pass, by database, key pattern, value type and command
//! name.

use rdb_format::{KeyHead, ValueType};
use resp_codec::Command;

use crate::error::{Error, Result};

/// Which keys and commands pass. Empty, everything passes; each kind of condition that is set
/// must hold. Commands are matched on their first key ([`first_key`](crate::commands::first_key))
/// and the type they write ([`value_type`](crate::commands::value_type)); commands that name no
/// key or work on any type pass those conditions.
///
/// ```
/// use replicator::{Command, KeyHead, ValueType, filter::Filter};
/// let mut f = Filter::new();
/// f.db(0).key_pattern("^user:")?.value_type(ValueType::Hash).skip_command("DEL");
/// assert!(f.pass_command(0, &Command::from_args(["HSET", "user:1", "f", "v"])));
/// assert!(!f.pass_command(0, &Command::from_args(["SET", "user:1", "v"])));
/// assert!(!f.pass_command(0, &Command::from_args(["DEL", "user:1"])));
/// assert!(!f.pass_command(1, &Command::from_args(["HSET", "user:1", "f", "v"])));
/// # Ok::<(), replicator::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Filter {
    dbs: Vec<u64>,
    key: Option<regex::bytes::Regex>,
    types: Vec<ValueType>,
    only: Vec<String>,
    skip: Vec<String>,
}

impl Filter {
    /// Everything passes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also database `db` (the first call makes the filter keep only the databases named).
    pub fn db(&mut self, db: u64) -> &mut Self {
        self.dbs.push(db);
        self
    }

    /// Keys (and commands' first keys) that match this regular expression (on bytes).
    pub fn key_pattern(&mut self, re: &str) -> Result<&mut Self> {
        let re = regex::bytes::Regex::new(re)
            .map_err(|e| Error::invalid(format!("bad key regular expression: {e}")))?;
        self.key = Some(re);
        Ok(self)
    }

    /// Also keys of this type (and commands that write it).
    pub fn value_type(&mut self, t: ValueType) -> &mut Self {
        self.types.push(t);
        self
    }

    /// Also commands with this name, any case (the first call makes the filter keep only the
    /// commands named; key records pass).
    pub fn command(&mut self, name: &str) -> &mut Self {
        self.only.push(name.to_owned());
        self
    }

    /// Leave out commands with this name, any case.
    pub fn skip_command(&mut self, name: &str) -> &mut Self {
        self.skip.push(name.to_owned());
        self
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.is_key_filter_empty() && self.only.is_empty() && self.skip.is_empty()
    }

    /// True when the filter passes every key (it may still filter commands by name).
    pub fn is_key_filter_empty(&self) -> bool {
        self.dbs.is_empty() && self.key.is_none() && self.types.is_empty()
    }

    /// True when names of commands are filtered.
    pub fn filters_commands(&self) -> bool {
        !self.only.is_empty() || !self.skip.is_empty()
    }

    /// Whether a key passes.
    pub fn pass_key(&self, head: &KeyHead) -> bool {
        self.pass(head.db, head.value_type, &head.key)
    }

    /// Whether a key of type `value_type` named `key` in `db` passes.
    pub fn pass(&self, db: u64, value_type: ValueType, key: &[u8]) -> bool {
        (self.dbs.is_empty() || self.dbs.contains(&db))
            && (self.types.is_empty() || self.types.contains(&value_type))
            && self.key.as_ref().is_none_or(|re| re.is_match(key))
    }

    /// Whether a command in `db` passes.
    pub fn pass_command(&self, db: u64, cmd: &Command) -> bool {
        let name = cmd.arg(0).unwrap_or_default();
        let named = |list: &[String]| list.iter().any(|n| name.eq_ignore_ascii_case(n.as_bytes()));
        if (!self.only.is_empty() && !named(&self.only)) || named(&self.skip) {
            return false;
        }
        if !self.dbs.is_empty() && !self.dbs.contains(&db) {
            return false;
        }
        if !self.types.is_empty() {
            // commands that work on any type (DEL, EXPIRE, …) pass a type filter
            if let Some(t) = crate::commands::value_type(name) {
                if !self.types.contains(&t) {
                    return false;
                }
            }
        }
        if let Some(re) = &self.key {
            let args: Vec<&[u8]> = cmd.args().collect();
            // commands that name no key pass a key filter
            if let Some(k) = crate::commands::first_key(&args) {
                return re.is_match(args[k]);
            }
        }
        true
    }
}
