//! `deskew publish`: upload a build to the store before the deploy, then optionally gc.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use deskew_core::gc::{self, GcOptions, GcReport};
use deskew_core::publish::{self, Outcome, Progress, PublishOptions, PublishReport};
use deskew_core::release::ReleaseId;
use deskew_core::{FileClass, Key, lease};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::Status;
use crate::args::PublishArgs;
use crate::printer::{Printer, bytes};
use crate::stores::{self, Access, Create};

/// `--json` output.
#[derive(Serialize)]
struct Output<'a> {
    version: u32,
    store: &'a str,
    publish: &'a PublishReport,
    gc: Option<&'a GcReport>,
    duration_ms: u128,
}

struct Bar {
    bar: ProgressBar,
    /// Test hook: abort the process after this many stored files (`DESKEW_TEST_ABORT_AFTER`), to
    /// prove that a publish killed half-way leaves a store a rerun completes.
    abort_after: Option<u64>,
    stored: std::sync::atomic::AtomicU64,
}

impl Progress for Bar {
    fn start(&self, files: u64, _bytes: u64) {
        self.bar.set_message(format!("0/{files} files"));
    }
    fn stored(&self, _key: &Key, n: u64) {
        let done = self.stored.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.bar.inc(n);
        self.bar.set_message(format!("{done} files"));
        if self.abort_after.is_some_and(|limit| done >= limit) {
            std::process::abort();
        }
    }
}

pub async fn run(a: PublishArgs, printer: &Printer) -> Result<Status> {
    let started = Instant::now();
    let now = super::now()?;
    let mut manifest = super::build_manifest(&a.dist, &a.classify, None)?;
    manifest.release = match a.release.clone() {
        Some(id) => id,
        None => ReleaseId::timestamped(now, &manifest.digest),
    };
    if manifest.of_class(FileClass::Entry).next().is_none() {
        printer.warn(format_args!("no entry file (`*.html` or --entry) in `{}`", a.dist.display()));
    }
    // A dry run writes nothing, not even the store's directory.
    let store = if a.dry_run {
        stores::open(&a.store, Create::No, Access::Read).await?
    } else {
        stores::open(&a.store, Create::Yes, Access::Write).await?
    };
    let policy = super::policy(&a.policy);
    let release = manifest.release.clone();
    printer.status(if a.dry_run { "Planning" } else { "Publishing" }, format_args!("release {release} to {}", store.url()));

    let bar = Bar {
        bar: printer.bytes_bar(manifest.total.bytes, "Uploading"),
        abort_after: std::env::var("DESKEW_TEST_ABORT_AFTER").ok().and_then(|v| v.parse().ok()),
        stored: 0.into(),
    };
    let opts = PublishOptions {
        dry_run: a.dry_run,
        strict: a.strict,
        concurrency: a.concurrency.into(),
        policy: policy.clone(),
        now,
        ..PublishOptions::default()
    };
    let report = publish::publish(store.as_ref(), Path::new(&a.dist), manifest, &opts, &bar)
        .await
        .with_context(|| format!("failed to publish release `{release}` to {}", store.url()))?;
    bar.bar.finish_and_clear();
    for c in &report.conflicts {
        let ids: Vec<String> = c.releases.iter().map(|r| format!("`{r}`")).collect();
        printer.warn(format_args!(
            "`{}` changes in place: clients of {} will now get the new content",
            c.path,
            ids.join(", ")
        ));
    }
    for r in &report.ignored_records {
        printer.warn(format_args!("ignored an unusable record (dedupe may upload more): {r}"));
    }
    match report.outcome {
        Outcome::AlreadyComplete => printer.status("Unchanged", format_args!("release {release} is already complete in the store")),
        Outcome::DryRun => {
            for k in &report.uploaded_keys {
                printer.detail(format_args!("would upload {k}"));
            }
            printer.status(
                "Dry run",
                format_args!(
                    "{} files, would upload {} ({}), {} already stored",
                    report.files,
                    report.uploaded,
                    bytes(report.uploaded_bytes),
                    report.skipped
                ),
            );
        }
        Outcome::Published => printer.status(
            "Published",
            format_args!(
                "release {release}: {} files, {} uploaded ({}), {} already stored, in {:.2}s",
                report.files,
                report.uploaded,
                bytes(report.uploaded_bytes),
                report.skipped,
                started.elapsed().as_secs_f64()
            ),
        ),
    }

    let gc_report = match (&policy, report.outcome) {
        (Some(policy), Outcome::Published | Outcome::AlreadyComplete) => {
            let opts = GcOptions {
                policy: policy.clone(),
                dry_run: false,
                max_delete: a.max_delete,
                now,
                lease_ttl: lease::DEFAULT_TTL,
            };
            let r = gc::run(store.as_ref(), &opts)
                .await
                .with_context(|| format!("release `{release}` is published, but the gc after it failed on {}", store.url()))?;
            super::gc::print_summary(&r, printer);
            Some(r)
        }
        _ => None,
    };
    if a.json {
        printer.json(&Output {
            version: 1,
            store: store.url(),
            publish: &report,
            gc: gc_report.as_ref(),
            duration_ms: started.elapsed().as_millis(),
        })?;
    }
    Ok(Status::Ok)
}
