//! `deskew config [COMMAND]`: the effective configuration, each option's value and where it
//! comes from (see `crate::config` for the layers). Secrets are masked.

use anyhow::Result;
use clap::CommandFactory;
use serde::Serialize;

use crate::Status;
use crate::args::{Cli, ConfigArgs};
use crate::config::{self, ConfigFile};
use crate::printer::Printer;

/// One option's effective value.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Entry {
    /// The command (`publish`, or `probe stop`).
    command: String,
    /// The long option, without `--`.
    option: String,
    /// Its value (`***` for credentials); several values joined with `, `.
    value: String,
    /// `flag` cannot appear here; `env DESKEW_…`, the file's path, or `default`.
    source: String,
}

/// `--json` output.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Output {
    /// Format version.
    #[schemars(schema_with = "crate::formats::config_version")]
    version: u32,
    /// The configuration file read, if any.
    file: Option<String>,
    /// Every option with a value, by command.
    options: Vec<Entry>,
}

pub fn run(a: ConfigArgs, printer: &Printer) -> Result<Status> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = config::locate(&argv).map(|p| ConfigFile::read(&p)).transpose()?;
    if let Some(f) = &file {
        config::command(Some(f))?; // the same checks as every other command
    }
    let mut options = Vec::new();
    let cli = Cli::command();
    for sub in cli.get_subcommands().filter(|s| a.command.as_deref().is_none_or(|c| c == s.get_name())) {
        collect(sub, sub.get_name(), sub.get_name(), file.as_ref(), &mut options)?;
    }
    if a.command.is_some() && options.is_empty() && cli.find_subcommand(a.command.as_deref().unwrap_or_default()).is_none() {
        anyhow::bail!("`{}` is not a deskew command", a.command.unwrap_or_default());
    }
    let out = Output { version: crate::formats::CONFIG, file: file.as_ref().map(|f| f.path.display().to_string()), options };
    printer.line(format_args!("configuration file: {}", out.file.as_deref().unwrap_or("none (no deskew.toml here, no --config, no DESKEW_CONFIG)")));
    for e in &out.options {
        printer.line(format_args!("  {:<16} --{:<18} {:<28} {}", e.command, e.option, e.value, e.source));
    }
    if a.json {
        printer.json(&out)?;
    }
    Ok(Status::Ok)
}

fn collect(cmd: &clap::Command, name: &str, table: &str, file: Option<&ConfigFile>, out: &mut Vec<Entry>) -> Result<()> {
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if config::NOT_CONFIGURABLE.contains(&long) {
            continue;
        }
        let env = config::env_name(long);
        let (value, source) = if let Some(v) = std::env::var_os(&env) {
            (v.to_string_lossy().into_owned(), format!("env {env}"))
        } else if let Some(v) = file.map(|f| f.value(table, long)).transpose()?.flatten() {
            (v.display(), file.map(|f| f.path.display().to_string()).unwrap_or_default())
        } else if !arg.get_default_values().is_empty() {
            let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            (defaults.join(", "), "default".to_string())
        } else {
            continue;
        };
        let value = if config::CREDENTIALS.contains(&long) { "***".to_string() } else { value };
        out.push(Entry { command: name.to_string(), option: long.to_string(), value, source });
    }
    for sub in cmd.get_subcommands() {
        collect(sub, &format!("{name} {}", sub.get_name()), table, file, out)?;
    }
    Ok(())
}
