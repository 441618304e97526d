//! `deskew probe stop|status --state DIR`: judging and watching a probe started with `--detach`.
//! A probe that died, vanished or was never started is never read as success: exit 2.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskew_core::time::Timestamp;
use deskew_probe::Report;
use serde::Serialize;

use super::detach::not_started;
use super::state::{Heartbeat, Identity, Liveness, STATE_VERSION, StateDir, StopRequest};
use crate::Status;
use crate::args::{ProbeStatusArgs, ProbeStopArgs};
use crate::printer::Printer;
use crate::signals::Signals;

/// How long `stop` waits, beyond the settle time, for the probe to finish its last loads.
const FINISH_WAIT: Duration = Duration::from_secs(120);

/// Asks the probe to finish, waits for it, and judges its report as a wrapped run is judged.
pub async fn stop(a: ProbeStopArgs, printer: &Printer, signals: &Signals) -> Result<Status> {
    let dir = StateDir::new(&a.state);
    let Some(who) = dir.read::<Identity>("probe.json")? else { return Err(not_started(&dir)) };
    if let Liveness::Alive = dir.liveness()? {
        dir.write("stop.json", &StopRequest { version: STATE_VERSION, requested: Timestamp::now(), settle_ms: a.settle.as_millis() as u64 })?;
        printer.status("Stopping", format_args!("probe pid {} after a settle time of {}", who.pid, humantime::format_duration(a.settle)));
        wait_for_end(&dir, &who, a.settle + FINISH_WAIT, signals).await?;
    }
    let now = dir.read::<Identity>("probe.json")?;
    if now.as_ref().is_none_or(|n| n.token != who.token) {
        bail!(
            "the background probe (pid {}, started {}) was replaced in `{}` by another --detach while stopping: no verdict for it",
            who.pid,
            who.started,
            dir.dir().display()
        );
    }
    let Some(report) = own_report(&dir, &who)? else {
        let why = match dir.read::<super::state::Failure>("error.json")? {
            Some(f) => f.message,
            None => format!("it was killed or crashed; its log ends:\n{}", dir.log_tail(10)),
        };
        bail!("the background probe (pid {}, started {}) ended without a report, so there is no verdict: {why}", who.pid, who.started);
    };
    super::write_reports(&report, &a.out)?;
    super::summary::print(&report, printer);
    if a.out.json {
        printer.json(&report)?;
    }
    if report.interrupted {
        bail!("the background probe was stopped by a signal before `probe stop` came (reports written): its loads may not cover the rollout");
    }
    if report.timed_out {
        bail!(
            "the background probe ended by itself after --max-duration {} before `probe stop` came: its loads may not cover the rollout (reports written); start it with a longer --max-duration",
            humantime::format_duration(Duration::from_millis(who.max_duration_ms))
        );
    }
    super::verdict(&report, printer, signals)
}

/// The report `who` wrote, checked against the digest it recorded and its last heartbeat; `None`
/// if it wrote none. A report edited, planted or left by another probe is refused.
fn own_report(dir: &StateDir, who: &Identity) -> Result<Option<Report>> {
    let Ok(body) = std::fs::read(dir.path("report.json")) else { return Ok(None) };
    let done = dir.read::<super::state::Done>("done.json")?;
    let genuine = done.is_some_and(|d| d.token == who.token && d.report_sha256 == deskew_core::digest::sha256_hex(&body));
    if !genuine {
        bail!(
            "`{}` is not the report the background probe (pid {}) wrote (changed, or left by another probe): no verdict",
            dir.path("report.json").display(),
            who.pid
        );
    }
    let report: Report = serde_json::from_slice(&body).with_context(|| format!("`{}` is not a probe report", dir.path("report.json").display()))?;
    if let Some(beat) = dir.read::<Heartbeat>("status.json")?.filter(|b| b.token == who.token) {
        if (beat.failed as u64) > report.loads.failed || (beat.loads as u64) > report.loads.total {
            bail!(
                "`{}` counts fewer loads or failures than the probe's own heartbeat ({} loads, {} failed): no verdict",
                dir.path("report.json").display(),
                beat.loads,
                beat.failed
            );
        }
    }
    Ok(Some(report))
}

/// Waits until the probe releases its lock (it has written its report and exited).
async fn wait_for_end(dir: &StateDir, who: &Identity, limit: Duration, signals: &Signals) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Liveness::Free(_) = dir.liveness()? {
            return Ok(());
        }
        if signals.cancel.is_cancelled() {
            bail!("interrupted while waiting for the background probe (pid {}); it goes on and will finish after the settle time", who.pid);
        }
        if started.elapsed() > limit {
            bail!("the background probe (pid {}) did not finish within {}s of the stop request; its log ends:\n{}", who.pid, limit.as_secs(), dir.log_tail(10));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `probe status --json` prints.
#[derive(Serialize, schemars::JsonSchema)]
pub struct StatusOut {
    /// Format version.
    #[schemars(schema_with = "crate::formats::probe_status_version")]
    version: u32,
    /// `running`, `finished` (a report is waiting for `probe stop`), or `dead`.
    state: &'static str,
    /// The background probe's process id.
    pid: u32,
    /// When it started.
    started: Timestamp,
    /// Page loads so far.
    loads: usize,
    /// Failed page loads so far.
    failed: usize,
    /// `probing`, `stopping` (settling after a stop request) or `done`.
    phase: String,
    /// When its heartbeat was last written.
    updated: Option<Timestamp>,
}

/// Prints how the probe is doing. Exit 0 while it runs or when its report waits; 2 if it died
/// without one or was never started.
pub fn status(a: ProbeStatusArgs, printer: &Printer) -> Result<Status> {
    let dir = StateDir::new(&a.state);
    let Some(who) = dir.read::<Identity>("probe.json")? else { return Err(not_started(&dir)) };
    let beat = dir.read::<Heartbeat>("status.json")?.unwrap_or_default();
    let state = match dir.liveness()? {
        Liveness::Alive => "running",
        Liveness::Free(_) if dir.path("report.json").exists() => "finished",
        Liveness::Free(_) => "dead",
    };
    let out = StatusOut {
        version: crate::formats::PROBE_STATUS,
        state,
        pid: who.pid,
        started: who.started,
        loads: beat.loads,
        failed: beat.failed,
        phase: beat.phase,
        updated: beat.updated,
    };
    if a.json {
        printer.json(&out)?;
    }
    printer.line(format_args!("probe pid {} ({}, started {}): {} loads, {} failed", out.pid, out.state, out.started, out.loads, out.failed));
    if state == "dead" {
        bail!("the background probe (pid {}) died without a report; its log ends:\n{}", who.pid, dir.log_tail(10));
    }
    Ok(Status::Ok)
}
