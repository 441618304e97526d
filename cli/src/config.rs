//! Configuration layers for every option of every command: a flag beats `DESKEW_<OPTION>` (the
//! long name upper-cased, `-` as `_`: `DESKEW_KEEP_FOR`), which beats `deskew.toml`, which beats
//! the built-in default. The layers are put into clap's own definitions before parsing (each long
//! option gets its variable as `env` and the file's value as its default), so validation, help
//! and error messages are clap's, and a new option is configurable with no extra code.
//!
//! `deskew.toml` (in the current directory, or `--config FILE`, or DESKEW_CONFIG): keys are long
//! option names; top-level keys apply to every command that has the option, a `[command]` table
//! (`[publish]`, `[probe]`) to that command only and wins over the top level. A key that is no
//! command's option is an error naming the file and the key, so a typo is not silently ignored.
//!
//! ```toml
//! store = "s3://assets/web"
//! endpoint-url = "http://127.0.0.1:8333"
//! [publish]
//! keep = 2
//! keep-for = "1d"
//! cache-control = ["assets/*.wasm=public, max-age=600"]
//! [probe]
//! concurrency = 8
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Command, CommandFactory};

use crate::args::Cli;

/// Options that are not configuration (or are the configuration's own).
pub const NOT_CONFIGURABLE: &[&str] = &["help", "version", "config", "worker"];

/// Options whose values are credentials: masked by `deskew config`, never repeated in errors,
/// never written to a detached probe's state directory.
pub const CREDENTIALS: &[&str] = &["basic-auth", "cookie", "header"];

/// Whether a command-line word names a credential option (`--header`, `-H`, `--cookie=…`).
pub fn is_credential_flag(word: &str) -> bool {
    let name = word.split_once('=').map_or(word, |(n, _)| n);
    name == "-H" || name.strip_prefix("--").is_some_and(|l| CREDENTIALS.contains(&l))
}

/// The option values read from a file.
#[derive(Debug)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    table: toml::Table,
}

/// An option's value in the file.
pub enum FileValue {
    /// One value.
    One(String),
    /// Several (a repeatable option).
    Many(Vec<String>),
}

impl FileValue {
    /// As shown to people.
    pub fn display(&self) -> String {
        match self {
            FileValue::One(v) => v.clone(),
            FileValue::Many(vs) => vs.join(", "),
        }
    }
}

/// The environment variable of a long option.
pub fn env_name(long: &str) -> String {
    format!("DESKEW_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// Finds the file: `--config FILE` in `argv`, else DESKEW_CONFIG, else `./deskew.toml` if it exists.
pub fn locate(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    if let Some(p) = std::env::var_os("DESKEW_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    Some(PathBuf::from("deskew.toml")).filter(|p| p.is_file())
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("failed to read the configuration file `{}`", path.display()))?;
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("`{}` is not valid TOML", path.display()))?;
        Ok(ConfigFile { path: path.to_path_buf(), table })
    }

    /// The value of `long` for `command`: its table's, else the top level's.
    pub fn value(&self, command: &str, long: &str) -> Result<Option<FileValue>> {
        let scoped = self.table.get(command).and_then(|t| t.as_table()).and_then(|t| t.get(long));
        let Some(v) = scoped.or_else(|| self.table.get(long).filter(|v| !v.is_table())) else { return Ok(None) };
        let one = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => bail!("`{}`: `{long}` must be a string, number, boolean or a list of them", self.path.display()),
            })
        };
        Ok(Some(match v {
            toml::Value::Array(items) => FileValue::Many(items.iter().map(one).collect::<Result<_>>()?),
            v => FileValue::One(one(v)?),
        }))
    }

    /// Every key names an option: top-level keys of some command, table keys of that command.
    fn check_keys(&self, options: &[(String, Vec<String>)]) -> Result<()> {
        for (key, v) in &self.table {
            if let Some(t) = v.as_table() {
                let Some((_, longs)) = options.iter().find(|(c, _)| c == key) else {
                    if options.iter().any(|(_, longs)| longs.contains(key)) {
                        bail!("`{}`: `{key}` must be a string, number, boolean or a list of them", self.path.display());
                    }
                    bail!("`{}`: [{key}] is not a deskew command", self.path.display());
                };
                if let Some(k) = t.keys().find(|k| !longs.contains(k)) {
                    bail!("`{}`: `{k}` in [{key}] is not an option of `deskew {key}`", self.path.display());
                }
            } else if !options.iter().any(|(_, longs)| longs.contains(key)) {
                bail!("`{}`: `{key}` is not an option of any deskew command", self.path.display());
            }
        }
        Ok(())
    }
}

/// The configurable long options of a command and its subcommands (`probe stop`).
fn longs(cmd: &Command) -> Vec<String> {
    let own = cmd.get_arguments().filter_map(|a| a.get_long()).filter(|l| !NOT_CONFIGURABLE.contains(l)).map(str::to_string);
    let nested: Vec<String> = cmd.get_subcommands().flat_map(longs).collect();
    own.chain(nested).collect()
}

/// Every command with its configurable options.
pub fn options() -> Vec<(String, Vec<String>)> {
    Cli::command().get_subcommands().map(|s| (s.get_name().to_string(), longs(s))).collect()
}

/// deskew's command line with the layers put in: every option gets its DESKEW_* variable and,
/// from `file`, its default.
pub fn command(file: Option<&ConfigFile>) -> Result<Command> {
    if let Some(f) = file {
        f.check_keys(&options())?;
    }
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in names {
        let sub = cmd.find_subcommand(&name).expect("listed").clone();
        let layered = layer(sub, &name, file)?;
        cmd = cmd.mut_subcommand(&name, |_| layered);
    }
    Ok(cmd)
}

fn layer(mut sub: Command, table: &str, file: Option<&ConfigFile>) -> Result<Command> {
    let args: Vec<(String, String)> = sub
        .get_arguments()
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_string())))
        .filter(|(_, l)| !NOT_CONFIGURABLE.contains(&l.as_str()))
        .collect();
    for (id, long) in args {
        let value = match file {
            Some(f) => f.value(table, &long)?,
            None => None,
        };
        sub = sub.mut_arg(id, |a| {
            let a = a.env(env_name(&long));
            // A required option the file gives is no longer required on the command line
            // (clap counts a flag or a variable as given, not a default).
            match value {
                Some(FileValue::One(v)) => a.required(false).default_value(v),
                Some(FileValue::Many(vs)) => a.required(false).default_values(vs),
                None => a,
            }
        });
    }
    let nested: Vec<String> = sub.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in nested {
        let inner = layer(sub.find_subcommand(&name).expect("listed").clone(), table, file)?;
        sub = sub.mut_subcommand(&name, |_| inner);
    }
    Ok(sub)
}

/// Options that replace each other: one given as a flag wins over the other from a variable or
/// the file (`--concurrency 2` over `DESKEW_RATE`, a deploy command over `duration` in the file).
const ALTERNATIVES: &[(&str, &str)] = &[("concurrency", "rate"), ("command", "duration")];

/// Drops the layered value of an option whose alternative was given on the command line.
pub fn flags_win_over_alternatives(m: &clap::ArgMatches, cli: &mut Cli) {
    use clap::parser::ValueSource;
    let (Some(("probe", sub)), crate::args::Command::Probe(p)) = (m.subcommand(), &mut cli.command) else { return };
    for (flag, other) in ALTERNATIVES {
        let given = sub.value_source(flag) == Some(ValueSource::CommandLine);
        let layered = matches!(sub.value_source(other), Some(ValueSource::EnvVariable | ValueSource::DefaultValue));
        if given && layered {
            match *other {
                "rate" => p.run.rate = None,
                _ => p.run.duration = None,
            }
        }
    }
}
