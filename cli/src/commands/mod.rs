//! One module per subcommand, plus what they share.

pub(crate) mod config;
pub(crate) mod demo;
mod docs;
pub(crate) mod gc;
mod init;
mod manifest;
pub(crate) mod probe;
mod report;
pub(crate) use probe::worker_argv;
pub(crate) mod publish;
pub(crate) mod releases;
pub(crate) mod verify;

use anyhow::{Context, Result};
use deskew_core::classify::Classifier;
use deskew_core::manifest::{BuildOptions, Manifest};
use std::num::NonZeroUsize;
use std::sync::Arc;

use deskew_core::Store;
use deskew_core::heartbeat;
use deskew_core::host::{BoxFuture, Host, HostRef, SystemHost};
use deskew_core::lease::LeaseError;
use deskew_core::marker;
use deskew_core::progress::Progress;
use deskew_core::release::ReleaseRecord;
use deskew_core::retention::{self, Decision, Policy};
use deskew_core::time::Timestamp;

use crate::Status;
use crate::args::{ClassifyArgs, Command, RetentionArgs};
use crate::printer::Printer;
use crate::signals::Signals;

/// Runs one command.
pub async fn dispatch(command: Command, printer: &Printer, signals: &Signals) -> Result<Status> {
    match command {
        Command::Manifest(a) => manifest::run(a, printer),
        Command::Publish(a) => publish::run(a, printer, signals).await,
        Command::Releases(a) => releases::run(a, printer).await,
        Command::Gc(a) => gc::run(a, printer, signals).await,
        Command::Verify(a) => verify::run(a, printer).await,
        Command::Probe(a) => probe::dispatch(*a, printer, signals).await,
        Command::Demo(a) => demo::run(a, printer, signals).await,
        Command::Completions(a) => docs::completions(a),
        Command::Man => docs::man(),
        Command::Config(a) => config::run(a, printer),
        Command::Report(c) => report::run(c, printer, signals),
        Command::Init(a) => init::run(a, printer).await,
    }
}

/// The policy from the optional flags; with none of them, `None` (every release is kept).
pub fn policy(keep: Option<NonZeroUsize>, r: &RetentionArgs) -> Option<Policy> {
    if keep.is_none() && r.keep_for.is_none() && r.pins.is_empty() {
        return None;
    }
    Some(Policy { keep: keep.unwrap_or(NonZeroUsize::MAX), keep_for: r.keep_for, pins: r.pins.clone(), grace: r.grace, published: None })
}

/// The machine, or, with `--at`, the machine with its clock stopped at that time (read-only
/// commands and dry runs only: "what would gc do at T").
pub fn host(at: Option<Timestamp>) -> HostRef {
    match at {
        Some(t) => Arc::new(FixedHost(t)),
        None => deskew_core::host::system(),
    }
}

/// A host whose clock says one time.
#[derive(Debug, Clone, Copy)]
struct FixedHost(Timestamp);

impl Host for FixedHost {
    fn now(&self) -> Timestamp {
        self.0
    }
    fn sleep(&self, d: std::time::Duration) -> BoxFuture<'static, ()> {
        SystemHost.sleep(d)
    }
    fn unique(&self) -> String {
        SystemHost.unique()
    }
    fn holder(&self) -> String {
        SystemHost.holder()
    }
    fn handle(&self) -> HostRef {
        Arc::new(*self)
    }
}

/// What `policy` decides for `records` now, with the store's publish heartbeats.
pub async fn decide(store: &dyn Store, host: &dyn Host, records: &[ReleaseRecord], policy: &Policy) -> Result<Vec<Decision>> {
    let skew = marker::read(store).await?.map_or(marker::DEFAULT_MAX_CLOCK_SKEW, |m| m.max_clock_skew());
    let heartbeats = heartbeat::read_all(store, host).await.with_context(|| format!("failed to read the publish heartbeats of {}", store.url()))?;
    let mut liveness = heartbeat::liveness(&heartbeats, skew, policy.grace);
    liveness.serving = deskew_core::gc::serving(store, records, None).await.with_context(|| format!("failed to read the mutable files of {}", store.url()))?;
    Ok(retention::decide(records, &liveness, policy, host.now())?)
}

/// Tells the user what an engine waits for.
pub struct Waits<'a>(pub &'a Printer);

impl Progress for Waits<'_> {
    fn waiting(&self, why: &LeaseError) {
        self.0.warn(format_args!("waiting: {why}"));
    }
}

/// Builds the manifest of `dist`.
pub fn build_manifest(dist: &std::path::Path, c: &ClassifyArgs, release: Option<deskew_core::ReleaseId>) -> Result<Manifest> {
    Ok(Manifest::from_dir(dist, &build_options(c, release)?)?)
}

/// How to build a manifest: the globs and rules checked, each error naming the flag.
pub fn build_options(c: &ClassifyArgs, release: Option<deskew_core::ReleaseId>) -> Result<BuildOptions> {
    for g in &c.exclude {
        globset::Glob::new(g).with_context(|| format!("invalid --exclude glob `{g}`"))?;
    }
    let classifier = Classifier::with_mutable(&c.entry, &c.mutable, &c.immutable)?;
    let headers = deskew_core::headers::HeaderRules::new(&c.cache_control, &c.content_type)?;
    Ok(BuildOptions { classifier, headers, exclude: c.exclude.clone(), release })
}
