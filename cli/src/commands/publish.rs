//! `deskew publish`: upload a build to the store before the deploy, then optionally gc.

use std::time::Instant;

use anyhow::{Context, Result};
use deskew_core::gc::{self, GcOptions, GcReport};
use deskew_core::lease::LeaseError;
use deskew_core::progress::Progress;
use deskew_core::publish::{self, DirSource, Outcome, PublishOptions, PublishReport};
use deskew_core::release::ReleaseId;
use deskew_core::retention::Policy;
use deskew_core::store::url::StoreUrl;
use deskew_core::{FileClass, Key};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::Status;
use crate::args::PublishArgs;
use crate::printer::{Printer, bytes};
use crate::stores::{self, Access, Create};

/// `--json` output.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Output<'a> {
    #[schemars(schema_with = "crate::formats::publish_version")]
    version: u32,
    store: &'a str,
    publish: &'a PublishReport,
    gc: Option<&'a GcReport>,
    duration_ms: u128,
}

struct Bar<'a> {
    bar: ProgressBar,
    printer: &'a Printer,
    stored: std::sync::atomic::AtomicU64,
}

impl Progress for Bar<'_> {
    fn waiting(&self, why: &LeaseError) {
        self.bar.suspend(|| self.printer.warn(format_args!("waiting: {why}")));
    }
    fn start(&self, files: u64, _bytes: u64) {
        self.bar.set_message(format!("0/{files} files"));
    }
    fn stored(&self, _key: &Key, n: u64) {
        let done = self.stored.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.bar.inc(n);
        self.bar.set_message(format!("{done} files"));
    }
}

pub async fn run(a: PublishArgs, printer: &Printer, signals: &crate::signals::Signals) -> Result<Status> {
    let started = Instant::now();
    let host = deskew_core::host::system();
    // The build is hashed while the store is read ahead (for a retried publish of the newest
    // release, the reads are most of its time). The flags and the build directory are checked
    // before the store is touched at all, and an error found while hashing ends the command at
    // once: a store that hangs cannot hold back a bad build's error. The store's own errors come
    // only once the build is known to be good.
    let build = super::build_options(&a.classify, None)?;
    if !a.dist.is_dir() {
        deskew_core::Manifest::from_dir(&a.dist, &build)?;
    }
    let dist = a.dist.clone();
    let hashing = async move {
        tokio::task::spawn_blocking(move || anyhow::Ok(deskew_core::Manifest::from_dir(&dist, &build)?))
            .await
            .context("the manifest's hashing thread panicked")?
    };
    let ahead = async { Ok(read_ahead(&a, host.as_ref()).await) };
    let (mut manifest, ahead) = tokio::try_join!(hashing, ahead)?;
    manifest.release = match a.release.clone() {
        Some(id) => id,
        None => ReleaseId::timestamped(host.now(), &manifest.digest),
    };
    if manifest.of_class(FileClass::Entry).next().is_none() {
        printer.warn(format_args!("no entry file (`*.html` or --entry) in `{}`", a.dist.display()));
    }
    let (store, pre) = match ahead? {
        Some((store, pre)) => {
            let pre = pre.with_context(|| format!("failed to publish release `{}` to {}", manifest.release, store.url()))?;
            (store, pre)
        }
        None => (open_store(&a).await?, None),
    };
    let policy = super::policy(a.keep, &a.retention).map(|p| Policy { published: Some(manifest.release.clone()), ..p });
    let release = manifest.release.clone();
    printer.status(if a.dry_run { "Planning" } else { "Publishing" }, format_args!("release {release} to {}", store.url()));
    let bar = Bar { bar: printer.bytes_bar(manifest.total.bytes, "Uploading"), printer, stored: 0.into() };
    let opts = PublishOptions {
        dry_run: a.dry_run,
        strict: a.strict,
        concurrency: a.concurrency.into(),
        policy: policy.clone(),
        repair: a.repair,
        cancel: signals.cancel.clone(),
        lease_wait: a.lock_timeout,
        ..PublishOptions::default()
    };
    let report = publish::publish_after(store.as_ref(), host.as_ref(), &DirSource::new(&a.dist), manifest, pre, &opts, &bar)
        .await
        .with_context(|| format!("failed to publish release `{release}` to {}", store.url()))?;
    bar.bar.finish_and_clear();
    print_report(&report, printer, started);
    let gc_report = match (&policy, report.outcome) {
        (Some(policy), Outcome::Published | Outcome::AlreadyComplete | Outcome::Repaired) => {
            let opts = GcOptions {
                policy: policy.clone(),
                max_delete: a.max_delete,
                cancel: signals.cancel.clone(),
                lease_wait: a.lock_timeout,
                ..GcOptions::default()
            };
            let r = gc::run(store.as_ref(), host.as_ref(), &opts, &super::Waits(printer))
                .await
                .with_context(|| format!("release `{release}` is published, but the gc after it failed on {}", store.url()))?;
            super::gc::print_summary(&r, printer);
            Some(r)
        }
        _ => None,
    };
    if a.json {
        printer.json(&Output {
            version: crate::formats::PUBLISH,
            store: store.url(),
            publish: &report,
            gc: gc_report.as_ref(),
            duration_ms: started.elapsed().as_millis(),
        })?;
    }
    Ok(Status::Ok)
}

/// The store opened ahead, and what was read from it (or the publish's error reading it).
type Ahead = Option<(Box<dyn deskew_core::Store>, Result<Option<publish::Preread>, publish::PublishError>)>;

/// The store and what a publish reads first ([`publish::Preread`]), read while the build is
/// hashed. Nothing is written: a directory store that does not exist yet is made (and read) only
/// once the build is known to be good (`None`, as for a dry run). An error opening any other
/// store is the one opening it later would meet.
async fn read_ahead(a: &PublishArgs, host: &dyn deskew_core::host::Host) -> Result<Ahead> {
    if a.dry_run {
        return Ok(None);
    }
    let store = match stores::open(&a.store, Create::No, Access::Write).await {
        Ok(store) => store,
        Err(_) if matches!(StoreUrl::parse(&a.store.store), Ok(StoreUrl::File(_))) => return Ok(None),
        Err(e) => return Err(e),
    };
    // A repair lists the store its own way: no listing ahead for it.
    let release = a.release.as_ref().filter(|_| !a.repair);
    let pre = publish::Preread::read(store.as_ref(), host, release).await;
    Ok(Some((store, pre)))
}

/// The store; for a dry run, read-only, and a directory that does not exist yet is an empty
/// store (a dry run writes nothing, not even the directory).
async fn open_store(a: &PublishArgs) -> Result<Box<dyn deskew_core::Store>> {
    if !a.dry_run {
        return stores::open(&a.store, Create::Yes, Access::Write).await;
    }
    match stores::open(&a.store, Create::No, Access::Read).await {
        Ok(s) => Ok(s),
        Err(e) => match missing_store(&e) {
            Some(url) => Ok(Box::new(deskew_core::store::memory::MemStore::with_url(&url))),
            None => Err(e),
        },
    }
}

/// Warnings, then the one-line outcome.
fn print_report(report: &PublishReport, printer: &Printer, started: Instant) {
    let release = &report.release;
    for c in &report.conflicts {
        let ids: Vec<String> = c.releases.iter().map(|r| format!("`{r}`")).collect();
        printer.warn(format_args!("`{}` changes in place: clients of {} will now get the new content", c.path, ids.join(", ")));
    }
    for w in &report.warnings {
        printer.warn(w);
    }
    if report.repaired > 0 {
        printer.detail(format_args!("{} files vanished while publishing (a concurrent gc?) and were uploaded again", report.repaired));
    }
    let sizes = format!("{} uploaded ({}), {} already stored", report.uploaded, bytes(report.uploaded_bytes), report.skipped);
    match report.outcome {
        Outcome::AlreadyComplete => printer.status("Unchanged", format_args!("release {release} is already complete in the store")),
        Outcome::Repaired => {
            printer.status("Repaired", format_args!("release {release}: {} missing or damaged files uploaded again; it checks whole now", report.uploaded))
        }
        Outcome::DryRun => {
            for k in &report.uploaded_keys {
                printer.detail(format_args!("would upload {k}"));
            }
            printer.status(
                "Dry run",
                format_args!("{} files, would upload {} ({}), {} already stored", report.files, report.uploaded, bytes(report.uploaded_bytes), report.skipped),
            );
        }
        Outcome::Published => {
            printer.status("Published", format_args!("release {release}: {} files, {sizes}, in {:.2}s", report.files, started.elapsed().as_secs_f64()))
        }
    }
}

/// The URL of a store that does not exist yet (a directory), from the error opening it.
fn missing_store(e: &anyhow::Error) -> Option<String> {
    match e.downcast_ref::<deskew_core::StoreError>()? {
        deskew_core::StoreError::Unusable { store, why } if why == "does not exist" => Some(store.clone()),
        _ => None,
    }
}
