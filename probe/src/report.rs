//! The probe report: totals, failures grouped by URL and cause, a per-second timeline, latency
//! percentiles, releases seen; as JSON (`schemas/probe-report.schema.json`), JUnit XML and a
//! self-contained HTML page.

use std::collections::BTreeMap;

use deskew_core::ReleaseId;
use deskew_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::browser::run::BrowserStats;
use crate::deploy::CommandRecord;
use crate::histogram::Histogram;
use crate::releases::Owner;
use crate::run::RunResult;
use crate::sample::Cause;
use crate::traffic::Traffic;

/// Report format version.
pub const REPORT_VERSION: u32 = 2;

fn report_version(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    deskew_core::schema::version(REPORT_VERSION)
}

/// Loads and their outcome.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Loads {
    /// Loads made.
    pub total: u64,
    /// Loads where every request succeeded.
    pub ok: u64,
    /// Loads with at least one failed request.
    pub failed: u64,
    /// `ok / total * 100`; 0 when nothing loaded.
    pub success_percent: f64,
}

/// Requests over all loads.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Requests {
    /// Requests made.
    pub total: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Requests retried once because the connection closed before any answer (as browsers do
    /// for stale keep-alive connections); a retry that failed too is in `failed`.
    pub retried: u64,
}

/// The service level objective and whether it was met.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Slo {
    /// Required success percentage.
    pub target_percent: f64,
    /// Whether `loads.success_percent >= target_percent` (and at least one load ran).
    pub met: bool,
}

/// Page-load latency.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
}

impl Latency {
    /// Percentiles from a histogram, and the exact maximum.
    pub fn of(h: &Histogram, max: u64) -> Latency {
        Latency { p50: h.percentile(50.0), p90: h.percentile(90.0), p99: h.percentile(99.0), max }
    }
}

/// Failed requests with the same URL and cause.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailureGroup {
    /// The URL.
    pub url: String,
    /// Why.
    pub cause: Cause,
    /// How many requests failed this way.
    pub count: u64,
    /// First time seen, ms since start.
    pub first_seen_ms: u64,
    /// Last time seen, ms since start.
    pub last_seen_ms: u64,
    /// Releases of the pages whose loads hit it (with a store).
    pub releases: Vec<ReleaseId>,
    /// Whom the asset belonged to when it last failed (with a store).
    pub owner: Option<Owner>,
}

/// One second of the run.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Second {
    /// Seconds since start.
    pub second: u64,
    /// Loads started in that second.
    pub loads: u64,
    /// Of which failed.
    pub failed: u64,
}

/// Loads per release (with a store).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseSeen {
    /// The release.
    pub release: ReleaseId,
    /// Loads of its pages.
    pub loads: u64,
}

/// The traffic model, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrafficReport {
    /// `closed` or `open`.
    pub model: String,
    /// Closed model: loads in flight.
    pub concurrency: Option<usize>,
    /// Open model: loads started per second.
    pub rate: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    /// Format version, [`REPORT_VERSION`].
    #[schemars(schema_with = "report_version")]
    pub version: u32,
    /// The deskew that wrote it.
    pub tool: String,
    /// `http` (or `browser`).
    pub mode: String,
    /// The page probed.
    pub url: String,
    /// Wall-clock start.
    pub started: Timestamp,
    /// How long traffic ran.
    pub duration_ms: u64,
    /// The traffic model.
    pub traffic: TrafficReport,
    /// The deploy command.
    pub command: Option<CommandRecord>,
    /// Whether Ctrl-C stopped the run.
    pub interrupted: bool,
    /// Whether a detached probe ended by itself at `--max-duration`, no `probe stop` having
    /// come: its loads may not cover the rollout.
    #[serde(default)]
    pub timed_out: bool,
    /// Loads.
    pub loads: Loads,
    /// Requests.
    pub requests: Requests,
    /// The SLO.
    pub slo: Slo,
    /// Page-load latency in ms (percentiles from `latency_histogram_ms`).
    pub latency_ms: Latency,
    /// Every page load's duration in ms, as a mergeable histogram (`deskew report merge`).
    pub latency_histogram_ms: Histogram,
    /// Which run and shard this is, for runs split over machines (`--shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// Failed requests, grouped, most frequent first.
    pub failures: Vec<FailureGroup>,
    /// Per second.
    pub timeline: Vec<Second>,
    /// Releases whose pages were loaded.
    pub releases_seen: Vec<ReleaseSeen>,
    /// Open model: starts skipped because too many loads were in flight.
    pub dropped_starts: u64,
    /// Notes that are not failures.
    pub warnings: Vec<String>,
    /// Browser mode: version, restarts, memory.
    pub browser: Option<BrowserStats>,
    /// Resources on origins that were not checked (`--allow-origin` adds them), most first.
    pub skipped_origins: Vec<SkippedOrigin>,
}

/// A run split over machines: every shard's report carries the same id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunInfo {
    /// Shared by every shard of the run.
    pub id: String,
    /// This shard (0-based); absent in a merged report.
    pub shard: Option<u32>,
    /// How many shards the run has.
    pub shards: u32,
    /// A merged report: the shards it was merged from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<u32>,
}

/// Resources on one origin the probe did not fetch.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkippedOrigin {
    /// The origin (`https://cdn.example.com`).
    pub origin: String,
    /// Resource references to it, over all loads.
    pub resources: u64,
}

/// Everything counted over the samples of a run.
#[derive(Default)]
struct Tally {
    groups: BTreeMap<(String, Cause), FailureGroup>,
    timeline: BTreeMap<u64, (u64, u64)>,
    releases: BTreeMap<ReleaseId, u64>,
    requests: Requests,
    skipped: BTreeMap<String, u64>,
}

impl Tally {
    fn of(run: &RunResult) -> Tally {
        let mut t = Tally::default();
        for s in &run.samples {
            // A load counts in the second it started; a failed one is marked in the second its
            // first request failed, as a server's log would show it.
            t.timeline.entry(s.started.as_secs()).or_default().0 += 1;
            if !s.ok() {
                t.timeline.entry(s.failed_at().as_secs()).or_default().1 += 1;
            }
            for (origin, n) in &s.skipped {
                *t.skipped.entry(origin.clone()).or_default() += *n as u64;
            }
            t.requests.total += s.requests as u64;
            t.requests.failed += s.failures.len() as u64;
            t.requests.retried += s.retried as u64;
            if let Some(r) = &s.release {
                *t.releases.entry(r.clone()).or_default() += 1;
            }
            for f in &s.failures {
                t.add_failure(f, s.release.as_ref());
            }
        }
        t
    }

    fn add_failure(&mut self, f: &crate::sample::Failure, release: Option<&ReleaseId>) {
        let at = f.at.as_millis() as u64;
        let g = self.groups.entry((f.url.clone(), f.cause.clone())).or_insert_with(|| FailureGroup {
            url: f.url.clone(),
            cause: f.cause.clone(),
            count: 0,
            first_seen_ms: at,
            last_seen_ms: at,
            releases: Vec::new(),
            owner: None,
        });
        g.count += 1;
        g.first_seen_ms = g.first_seen_ms.min(at);
        g.last_seen_ms = g.last_seen_ms.max(at);
        if let Some(r) = release.filter(|r| !g.releases.contains(r)) {
            g.releases.push(r.clone());
        }
        if f.owner.is_some() {
            g.owner = f.owner.clone();
        }
    }

    /// Every second of the run, empty ones included.
    fn seconds(&self, elapsed: std::time::Duration) -> Vec<Second> {
        let last = elapsed.as_secs().max(self.timeline.keys().last().copied().unwrap_or(0));
        (0..=last)
            .map(|sec| {
                let (loads, failed) = self.timeline.get(&sec).copied().unwrap_or_default();
                Second { second: sec, loads, failed }
            })
            .collect()
    }

    fn failure_groups(&mut self) -> Vec<FailureGroup> {
        let mut failures: Vec<FailureGroup> = std::mem::take(&mut self.groups).into_values().collect();
        failures.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.url.cmp(&b.url)));
        for g in &mut failures {
            g.releases.sort();
        }
        failures
    }

    /// The origins skipped, most first, and the warning that names them.
    fn skipped_origins(&self) -> (Vec<SkippedOrigin>, Option<String>) {
        let mut out: Vec<SkippedOrigin> =
            self.skipped.iter().map(|(origin, resources)| SkippedOrigin { origin: origin.clone(), resources: *resources }).collect();
        out.sort_by(|a, b| b.resources.cmp(&a.resources).then_with(|| a.origin.cmp(&b.origin)));
        let warning = (!out.is_empty()).then(|| {
            let list: Vec<String> = out.iter().take(5).map(|o| format!("{} ({})", o.origin, o.resources)).collect();
            format!(
                "resources on {} other origin(s) were not checked: {}{}; add --allow-origin ORIGIN (or '*') to check them",
                out.len(),
                list.join(", "),
                if out.len() > 5 { ", …" } else { "" }
            )
        });
        (out, warning)
    }
}

impl Report {
    /// Aggregates a run against an SLO of `slo_percent`.
    pub fn new(run: &RunResult, slo_percent: f64) -> Report {
        let total = run.samples.len() as u64;
        let failed = run.samples.iter().filter(|s| !s.ok()).count() as u64;
        let success_percent = if total == 0 { 0.0 } else { (total - failed) as f64 * 100.0 / total as f64 };
        let histogram = Histogram::of(run.samples.iter().map(|s| s.duration.as_millis() as u64));
        let max = run.samples.iter().map(|s| s.duration.as_millis() as u64).max().unwrap_or(0);
        let mut tally = Tally::of(run);
        let (skipped_origins, skipped_warning) = tally.skipped_origins();
        let traffic = match &run.traffic {
            Traffic::Closed { concurrency } => TrafficReport { model: "closed".into(), concurrency: Some(*concurrency), rate: None },
            Traffic::Open { rate, .. } => TrafficReport { model: "open".into(), concurrency: None, rate: Some(*rate) },
        };
        Report {
            version: REPORT_VERSION,
            tool: deskew_core::tool_version(),
            mode: if run.browser.is_some() { "browser" } else { "http" }.into(),
            url: run.url.clone(),
            started: run.started_at,
            duration_ms: run.elapsed.as_millis() as u64,
            traffic,
            command: run.command.clone(),
            interrupted: run.interrupted,
            timed_out: run.timed_out,
            loads: Loads { total, ok: total - failed, failed, success_percent },
            requests: tally.requests.clone(),
            slo: Slo { target_percent: slo_percent, met: total > 0 && success_percent >= slo_percent },
            latency_ms: Latency::of(&histogram, max),
            latency_histogram_ms: histogram,
            run: None,
            failures: tally.failure_groups(),
            timeline: tally.seconds(run.elapsed),
            releases_seen: tally.releases.iter().map(|(release, loads)| ReleaseSeen { release: release.clone(), loads: *loads }).collect(),
            dropped_starts: run.dropped_starts as u64,
            warnings: run.warnings.iter().cloned().chain(skipped_warning).collect(),
            browser: run.browser.clone(),
            skipped_origins,
        }
    }

    /// Pretty JSON plus a newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("report serialises");
        s.push('\n');
        s
    }

    /// JUnit XML with names that stay the same from run to run, so CI keeps a history per test:
    /// one case for the page (`page <url>`, failed when the SLO was missed) and one per failure
    /// group (`<cause kind> <url>`); counts and times go in properties and the failure text.
    pub fn to_junit(&self) -> String {
        let secs = self.duration_ms as f64 / 1000.0;
        let prop = |k: &str, v: &dyn std::fmt::Display| format!("        <property name=\"{k}\" value=\"{}\"/>\n", xml(&v.to_string()));
        let mut cases = String::new();
        let page_props = [
            prop("loads", &self.loads.total),
            prop("failed", &self.loads.failed),
            prop("success_percent", &format!("{:.3}", self.loads.success_percent)),
            prop("slo_percent", &self.slo.target_percent),
        ]
        .concat();
        let page_failure = if self.slo.met {
            String::new()
        } else {
            format!(
                "      <failure message=\"{} of {} loads failed; SLO {}% missed\" type=\"slo\"/>\n",
                self.loads.failed, self.loads.total, self.slo.target_percent
            )
        };
        cases.push_str(&format!(
            "    <testcase classname=\"deskew.probe\" name=\"page {}\" time=\"{secs:.3}\">\n      <properties>\n{page_props}      </properties>\n{page_failure}    </testcase>\n",
            xml(&self.url)
        ));
        for g in &self.failures {
            let props = [prop("count", &g.count), prop("first_seen_ms", &g.first_seen_ms), prop("last_seen_ms", &g.last_seen_ms)].concat();
            let releases = if g.releases.is_empty() {
                String::new()
            } else {
                format!("; pages of release(s) {}", g.releases.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
            };
            let msg = format!("{} failed {} time(s): {}", g.url, g.count, g.cause);
            let body = format!("first seen at {} ms, last at {} ms{releases}", g.first_seen_ms, g.last_seen_ms);
            cases.push_str(&format!(
                "    <testcase classname=\"deskew.probe\" name=\"{} {}\" time=\"0\">\n      <properties>\n{props}      </properties>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                stable_kind(&g.cause),
                xml(&g.url),
                xml(&msg),
                xml(cause_kind(&g.cause)),
                xml(&body)
            ));
        }
        let tests = self.failures.len() + 1;
        let failed = self.failures.len() + usize::from(!self.slo.met);
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"deskew probe\" tests=\"{tests}\" failures=\"{failed}\" time=\"{secs:.3}\">\n  <testsuite name=\"deskew probe {url}\" tests=\"{tests}\" failures=\"{failed}\" errors=\"0\" time=\"{secs:.3}\" timestamp=\"{ts}\">\n{cases}  </testsuite>\n</testsuites>\n",
            url = xml(&self.url),
            ts = self.started,
        )
    }

    /// A self-contained HTML page: summary, per-second timeline as inline SVG, failure table.
    /// No scripts, no network.
    pub fn to_html(&self) -> String {
        // Bars fill about 960 px, between 3 and 40 px each.
        let w = (960 / self.timeline.len().max(1)).clamp(3, 40);
        let h = 120usize;
        // A load failing in a later second than it started can make a second's failed exceed its loads.
        let max = self.timeline.iter().map(|s| s.loads.max(s.failed)).max().unwrap_or(1).max(1) as f64;
        let mut bars = String::new();
        for (i, s) in self.timeline.iter().enumerate() {
            let x = i * w;
            let lh = (s.loads as f64 / max * h as f64).round() as usize;
            let fh = (s.failed as f64 / max * h as f64).round() as usize;
            bars.push_str(&format!(
                "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{lh}\" class=\"ok\"><title>second {}: {} loads, {} failed</title></rect>",
                h - lh,
                w - 1,
                s.second,
                s.loads,
                s.failed
            ));
            if fh > 0 {
                bars.push_str(&format!("<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{fh}\" class=\"bad\"/>", h - fh, w - 1));
            }
        }
        if let Some(c) = &self.command {
            for (t, label) in [(Some(c.started_ms), "deploy start"), (c.ended_ms, "deploy end")] {
                if let Some(t) = t {
                    let x = (t as f64 / 1000.0 * w as f64) as usize;
                    bars.push_str(&format!("<line x1=\"{x}\" y1=\"0\" x2=\"{x}\" y2=\"{h}\" class=\"mark\"><title>{label}</title></line>"));
                }
            }
        }
        let mut rows = String::new();
        for g in &self.failures {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{} ms</td><td>{}</td></tr>",
                html(&g.url),
                html(&g.cause.to_string()),
                g.count,
                g.first_seen_ms,
                g.last_seen_ms,
                html(&g.releases.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
            ));
        }
        let verdict = if self.slo.met { "SLO met" } else { "SLO missed" };
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>deskew probe: {url}</title>\n<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}.ok{{fill:#9ab}}.bad{{fill:#c33}}.mark{{stroke:#333;stroke-dasharray:3 2}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}.verdict{{font-weight:bold}}</style></head>\n<body><h1>deskew probe</h1>\n<p>{url}: <span class=\"verdict\">{verdict}</span>: {ok} of {total} loads succeeded ({pct:.3}%, target {target}%), {failed} failed. Latency p50 {p50} ms, p99 {p99} ms, max {max} ms.</p>\n<h2>Timeline (loads per second; failed in red)</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{sw}\" height=\"{h}\" role=\"img\" aria-label=\"loads per second\">{bars}</svg>\n<h2>Failures</h2>\n{table}\n</body></html>\n",
            url = html(&self.url),
            ok = self.loads.ok,
            total = self.loads.total,
            pct = self.loads.success_percent,
            target = self.slo.target_percent,
            failed = self.loads.failed,
            p50 = self.latency_ms.p50,
            p99 = self.latency_ms.p99,
            max = self.latency_ms.max,
            sw = (self.timeline.len() * w).max(w),
            table = if rows.is_empty() {
                "<p>None.</p>".to_string()
            } else {
                format!(
                    "<table><thead><tr><th>URL</th><th>cause</th><th>count</th><th>first</th><th>last</th><th>releases</th></tr></thead><tbody>{rows}</tbody></table>"
                )
            },
        )
    }
}

/// A cause's name with only what stays the same across runs (an HTTP status, not an error text).
fn stable_kind(c: &Cause) -> String {
    match c {
        Cause::Status { status } => format!("HTTP {status}"),
        other => cause_kind(other).to_string(),
    }
}

fn cause_kind(c: &Cause) -> &'static str {
    match c {
        Cause::Status { .. } => "status",
        Cause::Network { .. } => "network",
        Cause::Timeout => "timeout",
        Cause::Truncated { .. } => "truncated",
        Cause::NotHtml { .. } => "not-html",
        Cause::Redirects { .. } => "redirects",
        Cause::HtmlFallback { .. } => "html-fallback",
        Cause::WrongType { .. } => "wrong-type",
        Cause::Exception { .. } => "exception",
        Cause::Console { .. } => "console",
        Cause::BrowserCrash => "browser-crash",
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn html(s: &str) -> String {
    xml(s)
}
