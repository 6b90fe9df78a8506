//! Where option values come from: the command line, then `REPLICATOR_<FLAG>` environment
//! variables, then a TOML file (`--config FILE`), then the defaults; and `replicator config`,
//! which shows the result.
//!
//! The file's keys are the long flags' names (`on-conflict` or `on_conflict`). Keys at the top
//! apply to every command that has the flag; a table named after a command (`[sync]`) applies
//! to that command only and may also give its positional arguments (`source`, `target`, `url`,
//! `file`). A key that is no flag of any command, or not of its table's command, is an error
//! naming its line.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, CommandFactory as _, FromArgMatches as _};
use toml::de::{DeTable, DeValue};

use crate::Cli;

/// Arguments that never come from the environment or a file.
const BUILT_IN: [&str; 2] = ["help", "version"];

/// `REPLICATOR_<FLAG>` for a long flag.
pub(crate) fn env_name(long: &str) -> String {
    format!("REPLICATOR_{}", long.to_uppercase().replace('-', "_"))
}

fn with_env(a: Arg) -> Arg {
    if a.is_positional() || BUILT_IN.contains(&a.get_id().as_str()) {
        return a;
    }
    match a.get_long() {
        Some(l) => {
            let name = env_name(l);
            a.env(name)
        }
        None => a,
    }
}

/// The command with every flag also read from the environment.
pub(crate) fn command() -> Command {
    Cli::command()
        .mut_args(with_env)
        .mut_subcommands(|sc| sc.mut_args(with_env))
}

/// One value from the file: what it says and on which line.
#[derive(Debug, Clone)]
struct FileValue {
    values: Vec<String>,
    line: usize,
}

/// The file's values for one run: the root's globals and the running command's arguments,
/// by argument id.
#[derive(Debug, Default)]
pub(crate) struct FileLayer {
    path: Option<PathBuf>,
    values: BTreeMap<String, FileValue>,
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// A scalar or array as clap strings.
fn strings(v: &DeValue<'_>, key: &str, line: usize) -> anyhow::Result<Vec<String>> {
    Ok(match v {
        DeValue::String(s) => vec![s.to_string()],
        DeValue::Integer(i) => vec![i.as_str().replace('_', "")],
        DeValue::Float(f) => vec![f.as_str().replace('_', "")],
        DeValue::Boolean(b) => vec![b.to_string()],
        DeValue::Array(a) => {
            let mut out = Vec::new();
            for e in a.iter() {
                match e.get_ref() {
                    DeValue::Array(_) | DeValue::Table(_) => {
                        bail!("line {line}: {key}: an array of plain values is expected")
                    }
                    v => out.extend(strings(v, key, line)?),
                }
            }
            out
        }
        DeValue::Datetime(_) => bail!("line {line}: {key}: a date is no option value"),
        DeValue::Table(_) => bail!("line {line}: {key}: a table is not expected here"),
    })
}

/// The argument of `cmd` that a file key names (a long flag; a positional's id in a table).
fn find<'a>(cmd: &'a Command, key: &str, positional: bool) -> Option<&'a Arg> {
    let key = key.replace('_', "-");
    cmd.get_arguments().find(|a| {
        if BUILT_IN.contains(&a.get_id().as_str()) {
            return false;
        }
        if a.is_positional() {
            positional && a.get_id().as_str().replace('_', "-") == key
        } else {
            a.get_long() == Some(key.as_str())
        }
    })
}

/// The name of the command `argv` runs (after `config`, the one it shows).
fn running(cmd: &Command, argv: &[OsString]) -> Option<String> {
    let names: Vec<&str> = cmd.get_subcommands().map(Command::get_name).collect();
    argv.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| names.contains(a) && *a != "config")
        .map(str::to_owned)
}

/// `--config FILE` (or `--config=FILE`) from `argv`, else `REPLICATOR_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("REPLICATOR_CONFIG").map(PathBuf::from)
}

/// Reads the file's values for command `sub`, checking every key against every command.
fn read_file(cmd: &Command, path: &Path, sub: Option<&str>) -> anyhow::Result<FileLayer> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display();
    let doc = DeTable::parse(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let mut layer = FileLayer {
        path: Some(path.to_owned()),
        values: BTreeMap::new(),
    };
    let mut tables = Vec::new();
    for (k, v) in doc.get_ref().iter() {
        let key: &str = k.get_ref();
        let line = line_of(&text, k.span().start);
        if let (DeValue::Table(t), Some(sc)) = (v.get_ref(), cmd.find_subcommand(key)) {
            tables.push((sc, t));
            continue;
        }
        // a root flag, or a flag of some command
        let root = find(cmd, key, false);
        let any = cmd.get_subcommands().find_map(|sc| find(sc, key, false));
        let Some(arg) = root.or(any) else {
            bail!("{shown}: line {line}: unknown key {key:?}: no command has the flag --{key}");
        };
        let values = strings(v.get_ref(), key, line).with_context(|| shown.to_string())?;
        let applies = root.is_some()
            || sub
                .and_then(|s| cmd.find_subcommand(s))
                .and_then(|sc| find(sc, key, false))
                .is_some();
        if applies {
            layer
                .values
                .insert(arg.get_id().to_string(), FileValue { values, line });
        }
    }
    // a command's table wins over the top
    for (sc, t) in tables {
        for (k, v) in t.iter() {
            let key: &str = k.get_ref();
            let line = line_of(&text, k.span().start);
            let Some(arg) = find(sc, key, true).or_else(|| find(cmd, key, false)) else {
                bail!(
                    "{shown}: line {line}: unknown key {key:?} in [{}]: `replicator {}` has no --{key}",
                    sc.get_name(),
                    sc.get_name()
                );
            };
            let values = strings(v.get_ref(), key, line).with_context(|| shown.to_string())?;
            if sub == Some(sc.get_name()) {
                layer
                    .values
                    .insert(arg.get_id().to_string(), FileValue { values, line });
            }
        }
    }
    Ok(layer)
}

/// The command with the file's values as its defaults (below flags and the environment).
fn apply(mut cmd: Command, layer: &FileLayer, sub: Option<&str>) -> Command {
    for (id, v) in &layer.values {
        let vals: Vec<clap::builder::OsStr> = v.values.iter().map(|s| s.clone().into()).collect();
        let on_root = cmd.get_arguments().any(|a| a.get_id() == id.as_str());
        let set = |a: Arg| {
            let a = a.default_values(vals.clone());
            if a.is_positional() {
                a.required(false)
            } else {
                a
            }
        };
        if on_root {
            cmd = cmd.mut_arg(id, set);
        } else if let Some(s) = sub {
            cmd = cmd.mut_subcommand(s, |sc| sc.mut_arg(id, set));
        }
    }
    cmd
}

/// Parses `argv` with every layer; exits with clap's message on bad arguments.
pub(crate) fn parse(argv: Vec<OsString>) -> anyhow::Result<(Cli, ArgMatches, FileLayer)> {
    let cmd = command();
    let sub = running(&cmd, &argv);
    let layer = match config_path(&argv) {
        Some(p) => read_file(&cmd, &p, sub.as_deref())?,
        None => FileLayer::default(),
    };
    let cmd = apply(cmd, &layer, sub.as_deref());
    let matches = cmd.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((cli, matches, layer))
}

/// An option's value shown without secrets: passwords hidden, and the password in a URL.
pub(crate) fn redact(id: &str, value: &str) -> String {
    if id.contains("password") {
        return "<redacted>".into();
    }
    match value.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or("", |(u, _)| u);
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:<redacted>@{host}")
                } else {
                    format!("{scheme}://<redacted>@{host}")
                }
            }
            None => value.to_owned(),
        },
        None => value.to_owned(),
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// `replicator config COMMAND [ARGS]`: the effective options of that run as TOML, each with
/// where its value came from.
pub(crate) fn show(args: &[OsString]) -> anyhow::Result<String> {
    let mut argv = vec![OsString::from("replicator")];
    argv.extend(args.iter().cloned());
    let cmd = command();
    let Some(sub) = running(&cmd, &argv) else {
        bail!("which command? e.g. `replicator config sync SOURCE TARGET --config FILE`");
    };
    let layer = match config_path(&argv) {
        Some(p) => read_file(&cmd, &p, Some(&sub))?,
        None => FileLayer::default(),
    };
    let fresh = command();
    let cmd = apply(cmd, &layer, Some(&sub));
    let matches = cmd.try_get_matches_from(argv)?;
    let (Some(sc), Some(m)) = (
        fresh.find_subcommand(&sub),
        matches.subcommand_matches(&sub),
    ) else {
        bail!("no command {sub}");
    };
    let mut out = format!("# replicator {sub}: the effective options\n");
    // the options of every command (from the top of the file), then the command's own
    for (args, m, head) in [
        (
            fresh.get_arguments().collect::<Vec<_>>(),
            &matches,
            String::new(),
        ),
        (sc.get_arguments().collect(), m, format!("\n[{sub}]\n")),
    ] {
        out.push_str(&head);
        for a in args {
            let id = a.get_id().as_str();
            if BUILT_IN.contains(&id) {
                continue;
            }
            out.push_str(&shown_line(a, m, &layer));
        }
    }
    Ok(out)
}

/// `name = value  # where from` for one argument.
fn shown_line(a: &Arg, m: &ArgMatches, layer: &FileLayer) -> String {
    let id = a.get_id().as_str();
    let name = a.get_long().unwrap_or(id);
    let plain = |v: &str| {
        let bare = v.parse::<f64>().is_ok() || v == "true" || v == "false";
        if bare { v.to_owned() } else { toml_string(v) }
    };
    let line = match m.get_raw(id) {
        Some(raw) => {
            let vals: Vec<String> = raw
                .map(|v| plain(&redact(id, &v.to_string_lossy())))
                .collect();
            let shown = match vals.len() {
                1 if !matches!(a.get_action(), clap::ArgAction::Append) => vals[0].clone(),
                _ => format!("[{}]", vals.join(", ")),
            };
            format!("{name} = {shown}")
        }
        None => format!("# {name} (not set)"),
    };
    let from = match m.value_source(id) {
        Some(ValueSource::CommandLine) => "flag".to_owned(),
        Some(ValueSource::EnvVariable) => format!(
            "environment {}",
            a.get_env()
                .map_or_else(String::new, |e| e.to_string_lossy().into_owned())
        ),
        Some(ValueSource::DefaultValue) => match layer.values.get(id) {
            Some(v) => format!(
                "file {}:{}",
                layer.path.as_deref().unwrap_or(Path::new("?")).display(),
                v.line
            ),
            None => "default".into(),
        },
        _ => "unset".into(),
    };
    format!("{line:<50} # {from}\n")
}

/// Every option of every command as one Markdown table (docs/config.md).
pub(crate) fn table() -> String {
    let cmd = command();
    let mut out = String::from(
        "| command | option | environment | default | what |\n|---|---|---|---|---|\n",
    );
    let row = |out: &mut String, command: &str, a: &Arg| {
        let id = a.get_id().as_str();
        if BUILT_IN.contains(&id) || a.is_hide_set() {
            return;
        }
        let name = match a.get_long() {
            Some(l) => format!("`--{l}`"),
            None => format!("`{id}` (positional)"),
        };
        let env = a
            .get_env()
            .map_or_else(String::new, |e| format!("`{}`", e.to_string_lossy()));
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match (defaults.is_empty(), a.get_action()) {
            (_, clap::ArgAction::SetTrue) => "`false`".into(),
            (true, _) => String::new(),
            (false, _) => format!("`{}`", defaults.join(",")),
        };
        let help = a
            .get_help()
            .map(|h| h.to_string().replace('|', "\\|").replace('\n', " "))
            .unwrap_or_default();
        let _ = writeln!(out, "| {command} | {name} | {env} | {default} | {help} |");
    };
    for a in cmd.get_arguments() {
        row(&mut out, "all", a);
    }
    let roots: Vec<&str> = cmd.get_arguments().map(|a| a.get_id().as_str()).collect();
    for sc in cmd.get_subcommands() {
        if sc.get_name() == "config" {
            continue;
        }
        for a in sc.get_arguments() {
            if !roots.contains(&a.get_id().as_str()) {
                row(&mut out, sc.get_name(), a);
            }
        }
    }
    out
}
