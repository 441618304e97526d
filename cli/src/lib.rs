//! The `deskew` command line: parses arguments, wires the `deskew-core` engines to a store and
//! a printer, and maps outcomes to exit codes. No deployment logic lives here.
//!
//! Exit codes: 0 success; 1 the check ran and failed (`verify` found missing or corrupt files);
//! 2 usage, configuration, store or I/O error.

mod args;
mod commands;
mod printer;
mod stores;

use std::process::ExitCode;

use clap::Parser;

use args::Cli;
use printer::Printer;

/// How a command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: the check ran and found a problem.
    CheckFailed,
}

/// Runs deskew with the process's arguments and returns its exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
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
    match runtime.block_on(commands::dispatch(cli.command, &printer)) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::CheckFailed) => ExitCode::from(1),
        Err(e) if printer::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            printer.error(&e);
            ExitCode::from(2)
        }
    }
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
