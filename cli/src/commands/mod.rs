//! One module per subcommand, plus what they share.

mod gc;
mod manifest;
mod probe;
mod publish;
mod releases;
mod verify;

use anyhow::{Context, Result};
use deskew_core::classify::Classifier;
use deskew_core::manifest::{BuildOptions, Manifest};
use deskew_core::retention::Policy;
use deskew_core::time::Timestamp;

use crate::Status;
use crate::args::{ClassifyArgs, Command, PolicyArgs};
use crate::printer::Printer;

/// Runs one command.
pub async fn dispatch(command: Command, printer: &Printer) -> Result<Status> {
    match command {
        Command::Manifest(a) => manifest::run(a, printer),
        Command::Publish(a) => publish::run(a, printer).await,
        Command::Releases(a) => releases::run(a, printer).await,
        Command::Gc(a) => gc::run(a, printer).await,
        Command::Verify(a) => verify::run(a, printer).await,
        Command::Probe(a) => probe::run(a, printer).await,
    }
}

/// The policy clock: now, unless `DESKEW_NOW` (RFC 3339) sets it. The override exists so tests
/// and dry runs can ask "what would GC do at time T"; leases always use the real clock.
pub fn now() -> Result<Timestamp> {
    match std::env::var("DESKEW_NOW") {
        Ok(s) if !s.is_empty() => Timestamp::parse(&s).with_context(|| format!("DESKEW_NOW=`{s}` is not an RFC 3339 time")),
        _ => Ok(Timestamp::now()),
    }
}

/// The policy from optional flags; with neither --keep nor --keep-for every release is kept.
pub fn policy(a: &PolicyArgs) -> Option<Policy> {
    if a.keep.is_none() && a.keep_for.is_none() && a.pins.is_empty() {
        return None;
    }
    Some(Policy { keep: a.keep.unwrap_or(1), keep_for: a.keep_for, pins: a.pins.clone(), grace: a.grace })
}

/// Builds the manifest of `dist`.
pub fn build_manifest(dist: &std::path::Path, c: &ClassifyArgs, release: Option<deskew_core::ReleaseId>) -> Result<Manifest> {
    for g in &c.exclude {
        globset::Glob::new(g).with_context(|| format!("invalid --exclude glob `{g}`"))?;
    }
    let classifier = Classifier::new(&c.entry, &c.immutable)?;
    let opts = BuildOptions { classifier, exclude: c.exclude.clone(), release };
    Ok(Manifest::from_dir(dist, &opts)?)
}
