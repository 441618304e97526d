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
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{name}` is not a complete JSON probe report (truncated, or not JSON)"))?;
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(REPORT_VERSION) => {}
        Some(v) => bail!(
            "`{name}` is a probe report of format version {v}; this deskew merges version {REPORT_VERSION} (write the shards' reports with one deskew version)"
        ),
        None => bail!("`{name}` is not a deskew probe report (no `version`)"),
    }
    // From the text, not the parsed value: a field given twice is refused, not last-one-wins.
    let report: Report = serde_json::from_str(&text).with_context(|| format!("`{name}` is not a deskew probe report"))?;
    if let Err(why) = consistent(&report) {
        bail!("`{name}` is not a consistent probe report ({why}): edited or damaged; merge the shards' reports as the probes wrote them");
    }
    Ok(Shard { name, report })
}

/// The counts a probe writes agree with each other; a hand-edited or damaged report does not.
fn consistent(r: &Report) -> Result<(), String> {
    let l = &r.loads;
    if l.ok.checked_add(l.failed) != Some(l.total) {
        return Err(format!("loads: ok {} + failed {} is not total {}", l.ok, l.failed, l.total));
    }
    let groups = r.failures.iter().try_fold(0u64, |a, g| a.checked_add(g.count)).ok_or("failure counts overflow")?;
    if groups != r.requests.failed || r.requests.failed > r.requests.total {
        return Err(format!("{groups} failed requests in the failure groups, requests.failed {} of {}", r.requests.failed, r.requests.total));
    }
    if (l.failed == 0) != (r.requests.failed == 0) || l.failed > r.requests.failed {
        return Err(format!("{} failed loads but {} failed requests", l.failed, r.requests.failed));
    }
    if r.latency_histogram_ms.count() != l.total {
        return Err(format!("the latency histogram holds {} loads, not {}", r.latency_histogram_ms.count(), l.total));
    }
    let (tl, tf) = r.timeline.iter().fold((0u64, 0u64), |(a, b), s| (a.saturating_add(s.loads), b.saturating_add(s.failed)));
    if tl != l.total || tf != l.failed {
        return Err(format!("the timeline holds {tl} loads and {tf} failed, not {} and {}", l.total, l.failed));
    }
    Ok(())
}

fn merge_reports(a: MergeArgs, printer: &Printer, signals: &Signals) -> Result<Status> {
    let shards = a.reports.iter().map(|p| read(p)).collect::<Result<Vec<_>>>()?;
    let report = merge::merge(&shards, a.slo, a.allow_mixed_runs)?;
    if let Some(run) = &report.run {
        printer.status("Merged", format_args!("{} reports of run {} (shards {:?} of {})", shards.len(), run.id, run.merged, run.shards));
        let missing: Vec<u32> = (0..run.shards).filter(|i| !run.merged.contains(i)).collect();
        if !missing.is_empty() && !run.merged.is_empty() {
            if !a.allow_missing_shards {
                bail!(
                    "shards {missing:?} of the {} of run {} have no report here: a missing shard may be the one that saw the failures (--allow-missing-shards merges the others anyway)",
                    run.shards,
                    run.id
                );
            }
            printer.warn(format_args!("shards {missing:?} of the run are missing: the merged report covers only the others"));
        }
    }
    super::probe::write_reports(&report, &a.out)?;
    super::probe::summary::print(&report, printer);
    if a.out.json {
        printer.json(&report)?;
    }
    if report.interrupted || report.timed_out {
        bail!(
            "a shard was interrupted by a signal or ran out its --max-duration: its loads may not cover the rollout, so the merged report gives no verdict (reports written)"
        );
    }
    super::probe::verdict(&report, printer, signals)
}
