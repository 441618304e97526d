//! `deskew gc`: delete what no kept release references.

use anyhow::{Context, Result};
use deskew_core::gc::{self, GcOptions, GcReport};
use deskew_core::gc_plan::DeleteReason;
use deskew_core::retention::Policy;
use serde::Serialize;

use crate::Status;
use crate::args::GcArgs;
use crate::printer::{Printer, bytes};
use crate::stores::{self, Access, Create};

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Output<'a> {
    #[schemars(schema_with = "crate::formats::gc_version")]
    version: u32,
    store: &'a str,
    #[serde(flatten)]
    report: &'a GcReport,
}

pub async fn run(a: GcArgs, printer: &Printer, signals: &crate::signals::Signals) -> Result<Status> {
    let store = stores::open(&a.store, Create::No, if a.dry_run { Access::Read } else { Access::Write }).await?;
    let r = &a.retention;
    let opts = GcOptions {
        policy: Policy { keep: a.keep, keep_for: r.keep_for, pins: r.pins.clone(), grace: r.grace, published: None },
        dry_run: a.dry_run,
        max_delete: a.max_delete,
        cancel: signals.cancel.clone(),
        lease_wait: a.lock_timeout,
        ..GcOptions::default()
    };
    let host = super::host(a.at);
    let report = gc::run(store.as_ref(), host.as_ref(), &opts, &super::Waits(printer)).await.with_context(|| format!("gc of {} failed", store.url()))?;
    for d in &report.plan.releases {
        let retired = d.retired.map(|t| format!(", retired {}", humantime::format_rfc3339_seconds(t.0))).unwrap_or_default();
        printer.detail(format_args!("{} {} ({}, {}{retired})", if d.kept { "keep" } else { "drop" }, d.release, d.state.as_str(), d.reason.as_str()));
    }
    if a.dry_run {
        for d in &report.plan.files {
            let why = match &d.reason {
                DeleteReason::Dropped { releases } => {
                    format!("only in {}", releases.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
                }
                DeleteReason::Unreferenced => "no release references it".to_string(),
                DeleteReason::Temporary => "a write that died left it".to_string(),
            };
            printer.line(format_args!("would delete {} ({}, {why})", d.key, bytes(d.size)));
        }
        for k in &report.plan.records {
            printer.line(format_args!("would delete record {k}"));
        }
        for k in &report.plan.heartbeats {
            printer.line(format_args!("would delete lapsed heartbeat {k}"));
        }
    }
    print_summary(&report, printer);
    if a.json {
        printer.json(&Output { version: crate::formats::GC, store: store.url(), report: &report })?;
    }
    Ok(Status::Ok)
}

/// The one-line result of a gc, on stderr.
pub fn print_summary(r: &GcReport, printer: &Printer) {
    let dropped = r.plan.dropped().count();
    let kept = r.plan.releases.len() - dropped;
    if r.dry_run {
        printer.status(
            "Dry run",
            format_args!(
                "would keep {kept} releases, drop {dropped}, delete {} files ({}) and {} records",
                r.plan.files.len(),
                bytes(r.plan.delete_bytes()),
                r.plan.records.len()
            ),
        );
    } else {
        printer.status("Collected", format_args!("kept {kept} releases, dropped {dropped}, deleted {} objects ({})", r.deleted, bytes(r.deleted_bytes)));
    }
    for n in &r.plan.nested_stores {
        printer.detail(format_args!("left alone: `{n}` holds a deskew store of its own"));
    }
    if !r.spared.is_empty() {
        printer.detail(format_args!("{} files spared: a release published during gc references them", r.spared.len()));
    }
}
