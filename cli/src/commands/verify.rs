//! `deskew verify`: every file of the kept (or given) releases is stored with its recorded sha256.

use anyhow::{Context, Result, bail};
use deskew_core::catalog::Catalog;
use deskew_core::host::SystemHost;
use deskew_core::marker;
use deskew_core::release::{ReleaseRecord, ReleaseState};
use deskew_core::retention::Policy;
use deskew_core::verify::{self, Problem, VerifyReport};
use serde::Serialize;

use crate::Status;
use crate::args::VerifyArgs;
use crate::printer::{Printer, bytes};
use crate::stores::{self, Access, Create};

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Output<'a> {
    #[schemars(schema_with = "crate::formats::verify_version")]
    version: u32,
    store: &'a str,
    ok: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
}

pub async fn run(a: VerifyArgs, printer: &Printer) -> Result<Status> {
    let store = stores::open(&a.store, Create::No, Access::Read).await?;
    match marker::require(store.as_ref()).await {
        Ok(_) => {}
        Err(marker::MarkerError::NotAStore { empty: true, .. }) => return empty(&a, store.url(), printer),
        Err(e) => return Err(e.into()),
    }
    let records = Catalog::load(store.as_ref()).await?.into_clean().with_context(|| format!("cannot verify {}: a release record is unusable", store.url()))?;
    if records.is_empty() {
        return empty(&a, store.url(), printer);
    }
    let chosen: Vec<&ReleaseRecord> = if a.releases.is_empty() {
        let policy = super::policy(a.keep, &a.retention).unwrap_or_else(Policy::keep_all);
        let decisions = super::decide(store.as_ref(), &SystemHost, &records, &policy).await?;
        records.iter().zip(decisions).filter(|(r, d)| d.kept && r.state == ReleaseState::Complete).map(|(r, _)| r).collect()
    } else {
        let mut out = Vec::new();
        for id in &a.releases {
            match records.iter().find(|r| &r.release == id) {
                Some(r) => out.push(r),
                None => bail!("release `{id}` is not in {}", store.url()),
            }
        }
        out
    };
    let report = verify::verify(store.as_ref(), &chosen, &records, a.concurrency.into()).await.with_context(|| format!("failed to verify {}", store.url()))?;
    let ok = report.findings.is_empty();
    for f in &report.findings {
        let what = match &f.problem {
            Problem::Missing => "missing".to_string(),
            Problem::Corrupt { actual } => format!("corrupt (stored sha256 {actual})"),
            Problem::Unreadable { why } => format!("unreadable ({why})"),
            Problem::Unfinished { serving } => {
                format!("serves unfinished release `{serving}` (its publish failed among its last writes; publish it again to complete it)")
            }
        };
        printer.failure(format_args!("{what}: {} (release {}, stored at {})", f.path, f.release, f.key));
    }
    for w in &report.warnings {
        printer.warn(w);
    }
    for r in records.iter().filter(|r| r.state == ReleaseState::Dropping) {
        printer.warn(format_args!(
            "release {} is being dropped by a gc that did not finish: it is not whole and not served; the next gc removes it, publishing it again restores it",
            r.release
        ));
    }
    for f in &report.superseded {
        printer.detail(format_args!("note: {} of release {} was replaced in place by a newer release", f.path, f.release));
    }
    let failed: std::collections::BTreeSet<_> = report.findings.iter().map(|f| &f.release).collect();
    let msg = format!(
        "{} checked, {} objects ({}) read, {} in {}",
        plural(report.releases.len(), "release"),
        report.objects,
        bytes(report.bytes),
        plural(report.findings.len(), "problem"),
        plural(failed.len(), "release"),
    );
    if ok {
        printer.status("Verified", msg);
    } else {
        printer.failed("Failed", msg);
    }
    if a.json {
        printer.json(&Output { version: crate::formats::VERIFY, store: store.url(), ok, report: &report })?;
    }
    Ok(if ok { Status::Ok } else { Status::CheckFailed })
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// A store with no releases: a failed check (a mistyped prefix must not look verified), unless
/// `--allow-empty`.
fn empty(a: &VerifyArgs, url: &str, printer: &Printer) -> Result<Status> {
    if a.allow_empty {
        printer.status("Verified", format_args!("no releases in {url} (--allow-empty)"));
        return Ok(Status::Ok);
    }
    printer.failed("Failed", format_args!("no releases in {url}: nothing to verify (a mistyped store or prefix?); --allow-empty accepts an empty store"));
    Ok(Status::CheckFailed)
}
