//! Merging the reports of a run's shards (`deskew report merge`) into the report one probe making
//! all their loads would have written: totals summed, failure groups joined by URL and cause with
//! first and last times on a common clock (the earliest shard's start), one timeline, latency
//! percentiles from the summed histograms, releases seen summed. Every step is a sum, a minimum,
//! a maximum or a set union, so the result does not depend on the order of the reports.

use std::collections::{BTreeMap, BTreeSet};

use crate::histogram::Histogram;
use crate::report::{FailureGroup, Latency, Loads, ReleaseSeen, Report, Requests, RunInfo, Second, SkippedOrigin, Slo, TrafficReport};

/// A shard's report and where it came from (for messages).
pub struct Shard {
    /// The file it was read from.
    pub name: String,
    /// The report.
    pub report: Report,
}

/// Reports that cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing given.
    #[error("no reports to merge")]
    Empty,
    /// Two runs.
    #[error("`{a}` is from run `{run_a}` but `{b}` from run `{run_b}`: not shards of one run (--allow-mixed-runs merges them anyway)")]
    Runs {
        /// One file.
        a: String,
        /// Its run id.
        run_a: String,
        /// Another.
        b: String,
        /// Its run id.
        run_b: String,
    },
    /// The same shard twice.
    #[error("`{a}` and `{b}` are both shard {shard} of run `{run}`")]
    DuplicateShard {
        /// One file.
        a: String,
        /// The other.
        b: String,
        /// The shard.
        shard: u32,
        /// The run.
        run: String,
    },
    /// Shards that disagree on how many there are, or an index out of range.
    #[error("`{b}` is shard {shard} of {shards}, but `{a}` says the run has {expected} shards")]
    Shards {
        /// The first file.
        a: String,
        /// The disagreeing one.
        b: String,
        /// Its index.
        shard: u32,
        /// Its count.
        shards: u32,
        /// The first file's count.
        expected: u32,
    },
    /// Counts too large to add: not reports a probe wrote.
    #[error("the reports' load counts overflow when added: they were not written by a probe")]
    Overflow,
    /// HTTP and browser mode.
    #[error("`{a}` probed in {mode_a} mode but `{b}` in {mode_b} mode")]
    Modes {
        /// One file.
        a: String,
        /// Its mode.
        mode_a: String,
        /// Another.
        b: String,
        /// Its mode.
        mode_b: String,
    },
}

fn run_id(r: &Report) -> String {
    r.run.as_ref().map_or_else(|| "(none)".to_string(), |x| x.id.clone())
}

/// Checks that `shards` belong together.
fn check(shards: &[Shard], allow_mixed: bool) -> Result<(), MergeError> {
    let first = shards.first().ok_or(MergeError::Empty)?;
    let mut seen: BTreeMap<(String, u32), &str> = BTreeMap::new();
    for s in shards {
        if s.report.mode != first.report.mode {
            return Err(MergeError::Modes { a: first.name.clone(), mode_a: first.report.mode.clone(), b: s.name.clone(), mode_b: s.report.mode.clone() });
        }
        if !allow_mixed && run_id(&s.report) != run_id(&first.report) {
            return Err(MergeError::Runs { a: first.name.clone(), run_a: run_id(&first.report), b: s.name.clone(), run_b: run_id(&s.report) });
        }
        if let Some(RunInfo { shard: Some(i), shards, .. }) = &s.report.run {
            let n = first.report.run.as_ref().map_or(*shards, |r| r.shards);
            if *shards != n || i >= shards {
                return Err(MergeError::Shards { a: first.name.clone(), b: s.name.clone(), shard: *i, shards: *shards, expected: n });
            }
        }
        if let Some(RunInfo { id, shard: Some(n), .. }) = &s.report.run {
            if let Some(other) = seen.insert((id.clone(), *n), &s.name) {
                return Err(MergeError::DuplicateShard { a: other.to_string(), b: s.name.clone(), shard: *n, run: id.clone() });
            }
        }
    }
    Ok(())
}

/// Merges `shards` and judges the result against `slo_percent`.
pub fn merge(shards: &[Shard], slo_percent: f64, allow_mixed: bool) -> Result<Report, MergeError> {
    check(shards, allow_mixed)?;
    let reports: Vec<&Report> = shards.iter().map(|s| &s.report).collect();
    let started = reports.iter().map(|r| r.started).min().expect("checked non-empty");
    // Each shard's clock, moved onto the earliest start.
    let offset_ms = |r: &Report| r.started.since(started).as_millis() as u64;
    let (total, failed) =
        reports.iter().try_fold((0u64, 0u64), |(t, f), r| Some((t.checked_add(r.loads.total)?, f.checked_add(r.loads.failed)?))).ok_or(MergeError::Overflow)?;
    let success_percent = if total == 0 { 0.0 } else { (total - failed) as f64 * 100.0 / total as f64 };
    let histogram = reports.iter().fold(Histogram::default(), |h, r| h.merge(&r.latency_histogram_ms));
    let max = reports.iter().map(|r| r.latency_ms.max).max().unwrap_or(0);
    let first = reports.iter().min_by_key(|r| (r.run.as_ref().and_then(|x| x.shard), r.started)).expect("non-empty");
    Ok(Report {
        version: crate::report::REPORT_VERSION,
        tool: deskew_core::tool_version(),
        mode: first.mode.clone(),
        url: reports.iter().map(|r| r.url.as_str()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", "),
        started,
        duration_ms: reports.iter().map(|r| offset_ms(r) + r.duration_ms).max().unwrap_or(0),
        traffic: traffic(&reports),
        command: reports.iter().filter_map(|r| r.command.clone()).min_by_key(|c| c.started_ms),
        interrupted: reports.iter().any(|r| r.interrupted),
        timed_out: reports.iter().any(|r| r.timed_out),
        loads: Loads { total, ok: total - failed, failed, success_percent },
        requests: reports.iter().fold(Requests::default(), |a, r| Requests {
            total: a.total + r.requests.total,
            failed: a.failed + r.requests.failed,
            retried: a.retried + r.requests.retried,
        }),
        slo: Slo { target_percent: slo_percent, met: total > 0 && success_percent >= slo_percent },
        latency_ms: Latency::of(&histogram, max),
        latency_histogram_ms: histogram,
        failures: failures(&reports, &offset_ms),
        timeline: timeline(&reports, &offset_ms),
        releases_seen: releases(&reports),
        dropped_starts: reports.iter().map(|r| r.dropped_starts).sum(),
        warnings: reports.iter().flat_map(|r| r.warnings.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect(),
        browser: browser(&reports),
        skipped_origins: skipped(&reports),
        run: Some(RunInfo {
            id: reports.iter().map(|r| run_id(r)).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join("+"),
            shard: None,
            shards: reports.iter().filter_map(|r| r.run.as_ref().map(|x| x.shards)).max().unwrap_or(reports.len() as u32),
            merged: reports.iter().filter_map(|r| r.run.as_ref().and_then(|x| x.shard)).collect::<BTreeSet<_>>().into_iter().collect(),
        }),
    })
}

fn traffic(reports: &[&Report]) -> TrafficReport {
    let models: BTreeSet<&str> = reports.iter().map(|r| r.traffic.model.as_str()).collect();
    let model = if models.len() == 1 { models.into_iter().next().unwrap_or_default().to_string() } else { "mixed".into() };
    let concurrency = reports.iter().map(|r| r.traffic.concurrency).sum::<Option<usize>>();
    let rate = reports.iter().map(|r| r.traffic.rate).sum::<Option<f64>>();
    TrafficReport { model, concurrency, rate }
}

fn failures(reports: &[&Report], offset_ms: &dyn Fn(&Report) -> u64) -> Vec<FailureGroup> {
    let mut groups: BTreeMap<(String, crate::sample::Cause), FailureGroup> = BTreeMap::new();
    for r in reports {
        let off = offset_ms(r);
        for g in &r.failures {
            let key = (g.url.clone(), g.cause.clone());
            let m = groups.entry(key).or_insert_with(|| FailureGroup {
                count: 0,
                first_seen_ms: u64::MAX,
                last_seen_ms: 0,
                releases: Vec::new(),
                owner: None,
                ..g.clone()
            });
            m.count += g.count;
            m.first_seen_ms = m.first_seen_ms.min(off + g.first_seen_ms);
            if off + g.last_seen_ms >= m.last_seen_ms {
                // The owner when it last failed; on a tie the larger, so any order gives one answer.
                m.owner = if off + g.last_seen_ms == m.last_seen_ms { m.owner.clone().max(g.owner.clone()) } else { g.owner.clone() };
                m.last_seen_ms = off + g.last_seen_ms;
            }
            m.releases = m.releases.iter().chain(&g.releases).cloned().collect::<BTreeSet<_>>().into_iter().collect();
        }
    }
    let mut out: Vec<FailureGroup> = groups.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.url.cmp(&b.url)).then_with(|| a.cause.cmp(&b.cause)));
    out
}

fn timeline(reports: &[&Report], offset_ms: &dyn Fn(&Report) -> u64) -> Vec<Second> {
    let mut secs: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in reports {
        let off = (offset_ms(r) + 500) / 1000;
        for s in &r.timeline {
            let e = secs.entry(off + s.second).or_default();
            e.0 += s.loads;
            e.1 += s.failed;
        }
    }
    let last = secs.keys().last().copied().unwrap_or(0);
    (0..=last)
        .map(|second| {
            let (loads, failed) = secs.get(&second).copied().unwrap_or_default();
            Second { second, loads, failed }
        })
        .collect()
}

fn releases(reports: &[&Report]) -> Vec<ReleaseSeen> {
    let mut by: BTreeMap<deskew_core::ReleaseId, u64> = BTreeMap::new();
    for r in reports {
        for s in &r.releases_seen {
            *by.entry(s.release.clone()).or_default() += s.loads;
        }
    }
    by.into_iter().map(|(release, loads)| ReleaseSeen { release, loads }).collect()
}

fn skipped(reports: &[&Report]) -> Vec<SkippedOrigin> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for r in reports {
        for o in &r.skipped_origins {
            *by.entry(o.origin.clone()).or_default() += o.resources;
        }
    }
    let mut out: Vec<SkippedOrigin> = by.into_iter().map(|(origin, resources)| SkippedOrigin { origin, resources }).collect();
    out.sort_by(|a, b| b.resources.cmp(&a.resources).then_with(|| a.origin.cmp(&b.origin)));
    out
}

fn browser(reports: &[&Report]) -> Option<crate::browser::run::BrowserStats> {
    let stats: Vec<_> = reports.iter().filter_map(|r| r.browser.as_ref()).collect();
    let first = stats.iter().min_by_key(|b| b.version.clone())?;
    Some(crate::browser::run::BrowserStats {
        version: first.version.clone(),
        restarts: stats.iter().map(|b| b.restarts).sum(),
        // Shards run on different machines: the largest one's memory, not a sum.
        peak_rss_bytes: stats.iter().map(|b| b.peak_rss_bytes).max().unwrap_or(0),
        peak_pss_bytes: stats.iter().map(|b| b.peak_pss_bytes).max().unwrap_or(0),
        rss_samples: Vec::new(),
    })
}
