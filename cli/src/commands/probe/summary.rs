//! The end-of-run summary on stderr: verdict, requests and latency, the deploy command (quoted
//! so it can be pasted back), a one-line timeline, and the failure groups.

use deskew_probe::Report;
use deskew_probe::deploy::shell_quote;

use crate::printer::Printer;

fn timeline_bar(r: &Report) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    r.timeline
        .iter()
        .map(|s| {
            if s.loads == 0 && s.failed == 0 {
                ' '
            } else if s.loads == 0 {
                '█'
            } else if s.failed == 0 {
                '·'
            } else {
                // A load failing in another second than it started can push a second past 100%.
                LEVELS[((s.failed as f64 / s.loads as f64).min(1.0) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// The summary for humans, on stderr.
pub fn print(r: &Report, printer: &Printer) {
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
        printer.line(format_args!("  deploy `{}` ran {:.1}s to {end}, {exit}", shell_quote(&c.argv), c.started_ms as f64 / 1000.0));
    }
    printer.line(format_args!("  timeline |{}| (one mark a second: · all ok, ▁..█ share failed)", timeline_bar(r)));
    if let Some(b) = &r.browser {
        // PSS is what the browser costs the machine; the RSS sum counts shared pages many times.
        let memory = match b.peak_pss_bytes {
            0 => format!("{} (RSS summed over its processes)", crate::printer::bytes(b.peak_rss_bytes)),
            pss => format!("{} (PSS)", crate::printer::bytes(pss)),
        };
        printer.line(format_args!("  browser {}: peak memory {memory}, {} restart(s)", b.version, b.restarts));
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
