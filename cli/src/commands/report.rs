//! `deskew report merge REPORT…`: the shards' reports of one run, merged
//! (`deskew_probe::merge`), written and judged like a single probe's. A report that cannot be
//! read, parsed, or is of another format version is named, with exit 2.

use anyhow::{Context, Result, bail};
use deskew_probe::Report;
use deskew_probe::merge::{self, Shard};
use deskew_probe::report::REPORT_VERSION;

use crate::Status;
use crate::args::{MergeArgs, ReportCommand};
use crate::printer::Printer;
use crate::signals::Signals;

pub fn run(c: ReportCommand, printer: &Printer, signals: &Signals) -> Result<Status> {
    match c {
        ReportCommand::Merge(a) => merge_reports(a, printer, signals),
    }
}

fn read(path: &std::path::Path) -> Result<Shard> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read the report `{name}`"))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("`{name}` is not a complete JSON probe report (truncated, or not JSON)"))?;
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(REPORT_VERSION) => {}
        Some(v) => bail!("`{name}` is a probe report of format version {v}; this deskew merges version {REPORT_VERSION} (write the shards' reports with one deskew version)"),
        None => bail!("`{name}` is not a deskew probe report (no `version`)"),
    }
    let report: Report = serde_json::from_value(value).with_context(|| format!("`{name}` is not a deskew probe report"))?;
    Ok(Shard { name, report })
}

fn merge_reports(a: MergeArgs, printer: &Printer, signals: &Signals) -> Result<Status> {
    let shards = a.reports.iter().map(|p| read(p)).collect::<Result<Vec<_>>>()?;
    let report = merge::merge(&shards, a.slo, a.allow_mixed_runs)?;
    if let Some(run) = &report.run {
        printer.status("Merged", format_args!("{} reports of run {} (shards {:?} of {})", shards.len(), run.id, run.merged, run.shards));
        let missing: Vec<u32> = (0..run.shards).filter(|i| !run.merged.contains(i)).collect();
        if !missing.is_empty() && !run.merged.is_empty() {
            printer.warn(format_args!("shards {missing:?} of the run are missing: the merged report covers only the others"));
        }
    }
    super::probe::write_reports(&report, &a.out)?;
    super::probe::summary::print(&report, printer);
    if a.out.json {
        printer.json(&report)?;
    }
    if report.interrupted {
        bail!("a shard was interrupted by a signal: its loads stop early, so the merged report gives no verdict (reports written)");
    }
    super::probe::verdict(&report, printer, signals)
}
