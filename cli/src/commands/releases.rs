//! `deskew releases`: the releases of a store, newest first, with what the policy keeps.

use anyhow::{Context, Result};
use deskew_core::catalog::Catalog;
use deskew_core::marker;
use deskew_core::release::{ReleaseId, ReleaseState};
use deskew_core::retention::{Policy, Reason};
use deskew_core::time::Timestamp;
use serde::Serialize;

use crate::Status;
use crate::args::ReleasesArgs;
use crate::printer::{Printer, bytes};
use crate::stores::{self, Access, Create};

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Row {
    release: ReleaseId,
    state: ReleaseState,
    created: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retired: Option<Timestamp>,
    files: u64,
    bytes: u64,
    kept: bool,
    reason: Reason,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Output<'a> {
    #[schemars(schema_with = "crate::formats::releases_version")]
    version: u32,
    store: &'a str,
    releases: Vec<Row>,
    unreadable: Vec<String>,
}

pub async fn run(a: ReleasesArgs, printer: &Printer) -> Result<Status> {
    let store = stores::open(&a.store, Create::No, Access::Read).await?;
    marker::require(store.as_ref()).await?;
    let host = super::host(a.at);
    let catalog = Catalog::load(store.as_ref()).await.with_context(|| format!("failed to read the releases of {}", store.url()))?;
    let policy = super::policy(a.keep, &a.retention).unwrap_or_else(Policy::keep_all);
    let decisions = super::decide(store.as_ref(), host.as_ref(), &catalog.records, &policy).await?;
    let rows: Vec<Row> = catalog
        .records
        .iter()
        .zip(decisions)
        .map(|(r, d)| Row {
            release: r.release.clone(),
            state: r.state,
            created: r.created,
            completed: r.completed,
            retired: d.retired,
            files: r.manifest.total.files,
            bytes: r.bytes(),
            kept: d.kept,
            reason: d.reason,
        })
        .collect();
    let unreadable: Vec<String> = catalog.problems.iter().map(|p| deskew_core::error_chain(p)).collect();
    for u in &unreadable {
        printer.warn(format_args!("unreadable record: {u}"));
    }
    if a.json {
        printer.json(&Output { version: crate::formats::RELEASES, store: store.url(), releases: rows, unreadable })?;
        return Ok(Status::Ok);
    }
    if rows.is_empty() {
        printer.line(format_args!("no releases in {}", store.url()));
        return Ok(Status::Ok);
    }
    printer.line(format_args!("{:<4} {:<34} {:<9} {:<24} {:>6} {:>11}  {}", "", "release", "state", "created", "files", "bytes", "why"));
    for r in &rows {
        let created = humantime::format_rfc3339_seconds(r.created.0).to_string();
        printer.line(format_args!(
            "{:<4} {:<34} {:<9} {:<24} {:>6} {:>11}  {}",
            if r.kept { "keep" } else { "drop" },
            r.release.as_str(),
            r.state.as_str(),
            created,
            r.files,
            bytes(r.bytes),
            r.reason.as_str()
        ));
    }
    Ok(Status::Ok)
}
