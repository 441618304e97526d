//! `deskew probe`: the deployment downtime test.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskew_probe::browser::BrowserOptions;
use deskew_probe::browser::page::PageOptions;
use deskew_probe::{LoaderOptions, Mode, Probe, ProbeOptions, Report, Traffic, Until};

use crate::Status;
use crate::args::{ProbeArgs, ProbeMode, StoreArgs};
use crate::printer::Printer;
use crate::stores::{self, Access, Create};

pub async fn run(a: ProbeArgs, printer: &Printer) -> Result<Status> {
    let until = match (&a.duration, a.command.is_empty()) {
        (Some(_), false) => bail!("give either --duration or a deploy command after `--`, not both"),
        (None, true) => bail!("give --duration, or a deploy command after `--` to probe around"),
        (Some(d), true) => Until::Duration(*d),
        (None, false) => Until::Command { argv: a.command.clone(), warmup: a.warmup, settle: a.settle },
    };
    let traffic = match a.rate {
        Some(rate) => Traffic::Open { rate, max_in_flight: 1000 },
        None => Traffic::Closed { concurrency: a.concurrency.into() },
    };
    let store = match &a.store {
        Some(url) => {
            let args = StoreArgs { store: url.clone(), s3: a.s3.clone() };
            let store = stores::open(&args, Create::No, Access::Read).await?;
            Some(Arc::from(store))
        }
        None => None,
    };
    let bar = printer.spinner("Probing");
    let progress_bar = bar.clone();
    let mode = match a.mode {
        ProbeMode::Http => {
            if !a.visits.is_empty() || a.browser.is_some() {
                bail!("--visit and --browser need --mode browser");
            }
            Mode::Http
        }
        ProbeMode::Browser => Mode::Browser {
            browser: BrowserOptions { executable: a.browser.clone() },
            page: PageOptions { idle: Duration::from_millis(a.idle), timeout: a.timeout.max(Duration::from_secs(5)), visits: a.visits.clone() },
        },
    };
    let opts = ProbeOptions {
        mode,
        traffic,
        until,
        loader: LoaderOptions { timeout: a.timeout, allow_origins: a.allow_origins.clone(), ..LoaderOptions::default() },
        store,
        progress: Some(Box::new(move |loads, failed| {
            if loads % 5 == 0 || failed > 0 {
                progress_bar.set_message(format!("{loads} loads, {failed} failed"));
            }
        })),
    };
    // ProbeError names the URL and the cause: one line.
    let result = Probe::run(&a.url, opts).await?;
    bar.finish_and_clear();
    let report = Report::new(&result, a.slo);
    for (path, body) in [(&a.report, report.to_json()), (&a.junit, report.to_junit()), (&a.html, report.to_html())] {
        if let Some(path) = path {
            std::fs::write(path, body).with_context(|| format!("failed to write `{}`", path.display()))?;
        }
    }
    summary(&report, printer);
    if a.json {
        printer.json(&report)?;
    }
    if let Some(c) = &report.command {
        if !c.success && !report.interrupted {
            bail!(
                "the deploy command `{}` failed ({}); the probe's verdict does not count",
                c.argv.join(" "),
                c.exit_code.map_or_else(|| "killed by a signal".to_string(), |code| format!("exit code {code}"))
            );
        }
    }
    if report.interrupted {
        bail!("interrupted; the report covers the loads made until then");
    }
    if report.loads.total == 0 {
        bail!("no load completed in {}", humantime::format_duration(Duration::from_millis(report.duration_ms)));
    }
    Ok(if report.slo.met { Status::Ok } else { Status::CheckFailed })
}

fn timeline_bar(r: &Report) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    r.timeline
        .iter()
        .map(|s| {
            if s.loads == 0 {
                ' '
            } else if s.failed == 0 {
                '·'
            } else {
                LEVELS[((s.failed as f64 / s.loads as f64) * 7.0).round() as usize]
            }
        })
        .collect()
}

fn summary(r: &Report, printer: &Printer) {
    let verdict = if r.slo.met { "met" } else { "MISSED" };
    printer.status(
        "Probed",
        format_args!(
            "{} for {:.1}s: {} loads, {} failed ({:.3}% ok; SLO {}% {verdict})",
            r.url,
            r.duration_ms as f64 / 1000.0,
            r.loads.total,
            r.loads.failed,
            r.loads.success_percent,
            r.slo.target_percent
        ),
    );
    printer.line(format_args!(
        "  requests {} ({} failed, {} retried on a closed connection); latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        r.requests.total, r.requests.failed, r.requests.retried, r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max
    ));
    if let Some(c) = &r.command {
        let end = c.ended_ms.map_or_else(|| "?".into(), |e| format!("{:.1}s", e as f64 / 1000.0));
        let exit = c.exit_code.map_or_else(|| "no exit code".into(), |e| format!("exit {e}"));
        printer.line(format_args!("  deploy `{}` ran {:.1}s to {end}, {exit}", c.argv.join(" "), c.started_ms as f64 / 1000.0));
    }
    printer.line(format_args!("  timeline |{}| (one mark a second: · all ok, ▁..█ share failed)", timeline_bar(r)));
    if let Some(b) = &r.browser {
        printer.line(format_args!(
            "  browser {}: peak memory {} , {} restart(s)",
            b.version,
            crate::printer::bytes(b.peak_rss_bytes),
            b.restarts
        ));
    }
    for rel in &r.releases_seen {
        printer.line(format_args!("  release {}: {} loads", rel.release, rel.loads));
    }
    for w in &r.warnings {
        printer.warn(w);
    }
    if !r.failures.is_empty() {
        printer.line("  failures:");
        for g in r.failures.iter().take(20) {
            let owner = match &g.owner {
                Some(deskew_probe::releases::Owner::Kept { releases }) => format!(", asset of kept release {}", join(releases)),
                Some(deskew_probe::releases::Owner::Dropped { releases }) => format!(", asset of dropped release {}", join(releases)),
                Some(deskew_probe::releases::Owner::None) => ", asset of no known release".into(),
                None => String::new(),
            };
            let pages = if g.releases.is_empty() { String::new() } else { format!(", pages of {}", join(&g.releases)) };
            printer.line(format_args!(
                "    {:>5}x {}  {}  (first {:.1}s, last {:.1}s{pages}{owner})",
                g.count,
                g.cause,
                g.url,
                g.first_seen_ms as f64 / 1000.0,
                g.last_seen_ms as f64 / 1000.0
            ));
        }
        if r.failures.len() > 20 {
            printer.line(format_args!("    … and {} more groups in the report", r.failures.len() - 20));
        }
    }
}

fn join(ids: &[deskew_core::ReleaseId]) -> String {
    ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
}
