//! All terminal output goes through [`Printer`]: data (JSON) on stdout, everything for humans
//! (status lines, warnings, errors, tables, progress bars) on stderr. Colour follows the terminal
//! and `NO_COLOR` (through `anstream`); meaning never rests on colour alone, every line also
//! says what it is in words. Progress bars appear only on a terminal, and never with --quiet or
//! --verbose (log lines and bars garble each other).

use std::fmt::Display;
use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::args::GlobalArgs;

const VERB: Style = AnsiColor::Green.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const DIM: Style = Style::new().dimmed();

/// Whether stderr gets colour.
pub fn stderr_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Owns stdout and stderr for one run.
#[derive(Debug)]
pub struct Printer {
    quiet: bool,
    bars: bool,
}

impl Printer {
    /// Whether progress goes out as periodic lines (not a terminal, not quiet): CI logs.
    pub fn progress_lines(&self) -> bool {
        !self.quiet && !self.bars
    }
}

impl Printer {
    /// A printer for the global options.
    pub fn new(global: &GlobalArgs) -> Printer {
        Printer { quiet: global.quiet, bars: !global.quiet && global.verbose == 0 && std::io::stderr().is_terminal() }
    }

    /// A status line: `   Published 12 files` (verb right-aligned, as cargo does).
    pub fn status(&self, verb: &str, msg: impl Display) {
        if !self.quiet {
            anstream::eprintln!("{VERB}{verb:>12}{VERB:#} {msg}");
        }
    }

    /// A plain line for humans.
    pub fn line(&self, msg: impl Display) {
        if !self.quiet {
            anstream::eprintln!("{msg}");
        }
    }

    /// A failed check's line: what failed, shown even with --quiet (a check that fails in
    /// silence tells nothing).
    pub fn failure(&self, msg: impl Display) {
        anstream::eprintln!("{msg}");
    }

    /// A failed check's status line, shown even with --quiet.
    pub fn failed(&self, verb: &str, msg: impl Display) {
        anstream::eprintln!("{ERROR}{verb:>12}{ERROR:#} {msg}");
    }

    /// A dimmed line (details).
    pub fn detail(&self, msg: impl Display) {
        if !self.quiet {
            anstream::eprintln!("{DIM}{msg}{DIM:#}");
        }
    }

    /// A warning; shown even with --quiet.
    pub fn warn(&self, msg: impl Display) {
        anstream::eprintln!("{WARN}warning{WARN:#}: {msg}");
    }

    /// An error and its causes.
    pub fn error(&self, err: &anyhow::Error) {
        anstream::eprintln!("{ERROR}error{ERROR:#}: {err}");
        for cause in err.chain().skip(1) {
            anstream::eprintln!("  {DIM}caused by:{DIM:#} {cause}");
        }
    }

    /// Writes `value` as pretty JSON plus a newline on stdout, through a buffer: stdout flushes
    /// at every newline, so a 5,000-file manifest took one `write` per line, 40,000 of them.
    pub fn json(&self, value: &impl Serialize) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, value)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }

    /// A byte-counting progress bar on stderr, hidden when not on a terminal.
    pub fn bytes_bar(&self, bytes: u64, what: &str) -> ProgressBar {
        if !self.bars || bytes == 0 {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {msg} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar
    }
}

impl Printer {
    /// A spinner with a message on stderr, hidden when not on a terminal.
    pub fn spinner(&self, what: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar =
            ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{prefix:>12.cyan.bold} {spinner} {elapsed} {msg}").expect("valid template"));
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }
}

/// Whether an error is a closed stdout (`deskew releases --json | head`): exit quietly.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>().and_then(|e| e.io_error_kind()) == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
