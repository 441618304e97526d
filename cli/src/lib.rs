//! The `deskew` command line: parses arguments, wires the `deskew-core` engines to a store and
//! a printer, and maps outcomes to exit codes. No deployment logic lives here.
//!
//! Exit codes are the same for every command: see [`exit`].

mod args;
pub(crate) mod commands;
mod config;
mod exit;
pub mod formats;
mod printer;
mod signals;
mod stores;

use std::process::ExitCode;

use args::Cli;
use printer::Printer;

pub use exit::Status;

/// Parses the command line with the configuration layers (`config`): flag, DESKEW_*,
/// deskew.toml, default. A usage error is printed here.
fn parse() -> Result<Cli, ExitCode> {
    use clap::FromArgMatches;
    let usage = |e: anyhow::Error| {
        anstream::eprintln!("error: {e:#}");
        ExitCode::from(exit::USAGE)
    };
    let argv = commands::worker_argv(std::env::args_os().collect()).map_err(usage)?;
    let file = config::locate(&argv).map(|p| config::ConfigFile::read(&p)).transpose().map_err(usage)?;
    let command = config::command(file.as_ref()).map_err(usage)?;
    let parsed = command.try_get_matches_from(&argv).and_then(|m| {
        let mut cli = Cli::from_arg_matches(&m)?;
        config::flags_win_over_alternatives(&m, &mut cli);
        Ok(cli)
    });
    parsed.map_err(|e| {
        let code = if e.use_stderr() { exit::USAGE } else { 0 };
        if let Some(value) = secret_value(&e) {
            // clap's message repeats the value, and this one may be a credential: the reason stays.
            anstream::eprint!("{}", e.to_string().replace(&value, "***"));
            return ExitCode::from(code);
        }
        let _ = e.print();
        if let (Some(f), true) = (&file, e.use_stderr()) {
            anstream::eprintln!("note: option values may come from `{}` and DESKEW_* variables (`deskew config` shows each value's source)", f.path.display());
        }
        ExitCode::from(code)
    })
}

/// The value a parse error about a credential option (`--header`, `--basic-auth`, `--cookie`)
/// would repeat, if any.
fn secret_value(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    if !config::CREDENTIALS.iter().any(|c| arg.contains(&format!("--{c}"))) {
        return None;
    }
    match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) if !v.is_empty() => Some(v.clone()),
        _ => None,
    }
}

/// Runs deskew with the process's arguments and returns its exit code.
pub fn run() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(&cli.global);
    let printer = Printer::new(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&anyhow::Error::new(e).context("failed to start the async runtime"));
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let signals = match signals::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                printer.error(&anyhow::Error::new(e).context("failed to listen for signals"));
                return ExitCode::from(exit::USAGE);
            }
        };
        match commands::dispatch(cli.command, &printer, &signals).await {
            Ok(status) => ExitCode::from(status.code()),
            Err(e) if printer::is_broken_pipe(&e) => ExitCode::SUCCESS,
            Err(e) => {
                printer.error(&e);
                ExitCode::from(exit::code_for(&e, signals.received()))
            }
        }
    })
}

fn init_logging(global: &args::GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let default = match global.verbose {
        0 if global.quiet => "error",
        0 => "warn",
        1 => "info",
        // The SDK's own debug logs are noise (and carry request headers); keep them at info.
        _ => "debug,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_sdk_s3=info,aws_config=info,hyper=info,hyper_util=info,rustls=info,h2=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(printer::stderr_color())
        .with_target(false)
        .without_time()
        .try_init();
}
