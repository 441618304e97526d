//! `deskew completions SHELL` and `deskew man`: generated from the clap definitions, so they
//! never drift from `--help`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::Status;
use crate::args::{Cli, CompletionsArgs};

/// Prints the completion script for the shell on stdout.
pub fn completions(a: CompletionsArgs) -> Result<Status> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "deskew", &mut std::io::stdout().lock());
    Ok(Status::Ok)
}

/// Prints the manual page (roff) on stdout: the top-level page, then one section per command.
pub fn man() -> Result<Status> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out).context("failed to render the manual page")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("deskew-{}", sub.get_name());
        clap_mangen::Man::new(sub.clone().name(name)).render(&mut out).context("failed to render the manual page")?;
    }
    std::io::stdout().lock().write_all(&out).context("failed to write the manual page")?;
    Ok(Status::Ok)
}
