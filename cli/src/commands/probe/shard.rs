//! A probe as one shard of a run spread over machines (a Kubernetes Indexed Job): which shard it
//! is, the run id every shard shares, the instant they all start, and when a shard that does not
//! run the deploy command stops (its `--duration`, or a file or URL that says the rollout ended,
//! then `--settle`). The reports join with `deskew report merge`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskew_core::cancel::Cancel;
use deskew_core::time::Timestamp;
use deskew_probe::Until;
use deskew_probe::report::RunInfo;

use crate::args::ProbeArgs;
use crate::printer::Printer;

/// This probe's place in a run.
pub struct Plan {
    /// The run and shard, for the report; `None` when not sharded.
    pub run: Option<RunInfo>,
    /// Whether this probe runs the deploy command (the deploy shard, or an unsharded probe given one).
    pub deploys: bool,
}

/// Works out the shard from the flags (or JOB_COMPLETION_INDEX with `--shards`).
pub fn plan(a: &ProbeArgs) -> Result<Plan> {
    if let Some(at) = a.start_at.filter(|at| at.since(Timestamp::now()) > MAX_START_AHEAD) {
        bail!("--start-at {at} is more than a day ahead: check the date");
    }
    let shard = match (a.shard, a.shards) {
        (Some(s), _) => Some(s),
        (None, Some(n)) => {
            let index = std::env::var("JOB_COMPLETION_INDEX")
                .context("--shards N takes this shard's index from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job), which is not set; give --shard I/N")?;
            let i: u32 = index.trim().parse().with_context(|| format!("JOB_COMPLETION_INDEX `{index}` is not a shard index"))?;
            if i >= n {
                bail!("JOB_COMPLETION_INDEX {i} is not below --shards {n}");
            }
            Some((i, n))
        }
        (None, None) => None,
    };
    let Some((i, n)) = shard else {
        let run = a.run_id.clone().map(|id| RunInfo { id, shard: None, shards: 1, merged: Vec::new() });
        return Ok(Plan { run, deploys: !a.command.is_empty() });
    };
    if a.deploy_shard >= n {
        bail!("--deploy-shard {} is not one of the {n} shards (0 to {})", a.deploy_shard, n - 1);
    }
    let id = match (&a.run_id, &a.start_at) {
        (Some(id), _) => id.clone(),
        (None, Some(t)) => {
            let seed = format!("{t}|{}|{n}", super::page(a));
            deskew_core::digest::sha256_hex(seed.as_bytes())[..12].to_string()
        }
        (None, None) => bail!("a sharded probe needs an id its shards share: give --run-id, or --start-at (the id is derived from it)"),
    };
    // Without a deploy command (the pipeline deploys), no shard deploys: all probe the same window.
    let deploys = i == a.deploy_shard && !a.command.is_empty();
    if !deploys && !a.command.is_empty() && a.duration.is_none() && a.until_file.is_none() && a.until_url.is_none() {
        bail!(
            "shard {i} does not run the deploy command (shard {} does): give --until-file or --until-url (the end of the rollout), or --duration",
            a.deploy_shard
        );
    }
    Ok(Plan { run: Some(RunInfo { id, shard: Some(i), shards: n, merged: Vec::new() }), deploys })
}

/// When a shard that does not deploy stops: the end signal (`--until-file`, `--until-url`) plus
/// `--settle`, or `--duration`. `None` for the deploy shard and unsharded probes: the usual rules.
pub fn until(a: &ProbeArgs, plan: &Plan) -> Option<Until> {
    if plan.deploys {
        return None;
    }
    if a.until_file.is_none() && a.until_url.is_none() {
        return a.duration.map(Until::Duration);
    }
    let stop = Cancel::new();
    let (file, url, settle, fired) = (a.until_file.clone(), a.until_url.as_ref().map(|u| u.url.clone()), a.settle, stop.clone());
    tokio::spawn(async move {
        loop {
            let ended = match (&file, &url) {
                (Some(f), _) if f.exists() => true,
                (_, Some(u)) => deskew_probe::load::answers_ok(u).await,
                _ => false,
            };
            if ended {
                tokio::time::sleep(settle).await;
                fired.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Some(Until::Stop { stop, max: a.duration.unwrap_or(a.max_duration) })
}

/// The furthest ahead `--start-at` may be: a typo in the date must not leave a probe waiting.
const MAX_START_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Waits for `--start-at` (a signal ends the wait, and the run stops at once); says so when it has
/// already passed.
pub async fn wait_for_start(a: &ProbeArgs, printer: &Printer, cancel: &Cancel) {
    let Some(at) = a.start_at else { return };
    let now = Timestamp::now();
    if at <= now {
        if now.since(at) > Duration::from_secs(1) {
            printer.warn(format_args!("--start-at {at} passed {:.1}s ago: starting now, later than the other shards", now.since(at).as_secs_f64()));
        }
        return;
    }
    printer.detail(format_args!("waiting for --start-at {at}"));
    tokio::select! {
        _ = tokio::time::sleep(at.since(now)) => {}
        _ = cancel.cancelled() => {}
    }
}
