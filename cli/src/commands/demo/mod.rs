//! `deskew demo`: the outage deskew prevents, and the fix, with nothing but the binary. The sample
//! Vite app in two versions is embedded; three in-process pods behind a round-robin balancer are
//! rolled from v1 to v2 twice while the real probe (the engine of `deskew probe`) loads the page
//! and everything it needs: first with each pod serving only its own image (failed loads, missing
//! chunks named), then after `deskew publish` of both versions to a directory store the pods
//! serve `/assets/` from (zero failed loads).

mod cluster;
mod html;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskew_core::Store;
use deskew_core::cancel::Cancel;
use deskew_core::manifest::{BuildOptions, Manifest};
use deskew_core::publish::{self, DirSource, PublishOptions};
use deskew_core::release::ReleaseId;
use deskew_core::store::fs::FsStore;
use deskew_probe::{LoaderOptions, Mode, ProbeOptions, Report, Traffic, Until};
use serde::Serialize;

use super::probe::{progress, summary};
use crate::Status;
use crate::args::DemoArgs;
use crate::printer::Printer;
use crate::signals::Signals;
use cluster::Cluster;

/// The sample app's builds (`tests/fixtures/dist/v1`, `v2`).
static BUILDS: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../tests/fixtures/dist");

/// Traffic before the rollout starts, and after it ends.
const WARMUP: Duration = Duration::from_secs(1);
const SETTLE: Duration = Duration::from_secs(1);
/// One pod replacement (start, ready, old one out).
const STEP: Duration = Duration::from_millis(2000);

/// `--json` output: both runs' reports.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Output<'a> {
    /// Format version.
    #[schemars(schema_with = "crate::formats::demo_version")]
    version: u32,
    /// The rollout with each pod serving its own image.
    without_deskew: &'a Report,
    /// The same rollout with pods serving `/assets/` from the store.
    with_deskew: &'a Report,
}

/// Plays the story; exit 0 when the run with deskew had zero failed loads.
pub async fn run(a: DemoArgs, printer: &Printer, signals: &Signals) -> Result<Status> {
    let (dir, temporary) = workdir(a.dir.as_deref())?;
    let result = play(&a, &dir, printer, signals).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn play(a: &DemoArgs, dir: &Path, printer: &Printer, signals: &Signals) -> Result<Status> {
    let images = dir.join("images");
    for v in ["v1", "v2"] {
        let build = BUILDS.get_dir(v).with_context(|| format!("the embedded build `{v}` is missing"))?;
        build.extract(&images).with_context(|| format!("failed to write the sample build to `{}`", images.display()))?;
    }
    let mode = mode(a.browser)?;
    printer.status("Demo", "a Vite app rolled from v1 to v2: 3 pods behind a round-robin balancer, maxSurge 1, maxUnavailable 0");
    printer.status("Run 1", "without deskew: each pod serves only its own image");
    let before = rollout(&images, None, &mode, printer, signals).await?;
    summary::print(&before, printer);
    let store = dir.join("store");
    printer.status("Publishing", format_args!("v1 and v2 to the store `{}` (deskew publish), before the rollout", store.display()));
    publish_both(&images, &store, signals).await?;
    printer.status("Run 2", "with deskew: the same rollout, pods serve /assets/ from the store");
    let after = rollout(&images, Some(&store), &mode, printer, signals).await?;
    summary::print(&after, printer);
    side_by_side(&before, &after, printer);
    if let Some(path) = &a.html {
        std::fs::write(path, html::page(&before, &after)).with_context(|| format!("failed to write `{}`", path.display()))?;
        printer.status("Wrote", format_args!("both runs to `{}`", path.display()));
    }
    if a.json {
        printer.json(&Output { version: crate::formats::DEMO, without_deskew: &before, with_deskew: &after })?;
    }
    if before.interrupted || after.interrupted {
        return Ok(Status::Interrupted(signals.received().unwrap_or(2)));
    }
    Ok(if after.loads.total > 0 && after.loads.failed == 0 { Status::Ok } else { Status::CheckFailed })
}

/// `--dir`, or a fresh temporary directory removed at the end (`true`).
fn workdir(dir: Option<&Path>) -> Result<(PathBuf, bool)> {
    let (dir, temporary) = match dir {
        Some(d) => (d.to_path_buf(), false),
        None => (std::env::temp_dir().join(format!("deskew-demo-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    Ok((dir, temporary))
}

fn mode(browser: bool) -> Result<Mode> {
    if !browser {
        return Ok(Mode::Http);
    }
    let browser = deskew_probe::browser::BrowserOptions::default();
    if let Err(e) = deskew_probe::browser::launch::find(&browser) {
        bail!("--browser needs Chromium: {e}");
    }
    let page = deskew_probe::browser::page::PageOptions {
        idle: Duration::from_millis(200),
        timeout: Duration::from_secs(10),
        visits: vec!["#/about".into()],
        ..Default::default()
    };
    Ok(Mode::Browser { browser, page })
}

/// One rollout from v1 to v2 under continuous probing.
async fn rollout(images: &Path, store: Option<&Path>, mode: &Mode, printer: &Printer, signals: &Signals) -> Result<Report> {
    let cluster = Cluster::start(&images.join("v1"), store).await?;
    let url = url::Url::parse(&cluster.url)?;
    let records: Option<Arc<dyn Store>> = match store {
        Some(s) => Some(Arc::new(FsStore::open(s, false)?)),
        None => None,
    };
    let stop = Cancel::new();
    let watch = progress::Watch::start(printer);
    let opts = ProbeOptions {
        mode: mode.clone(),
        traffic: Traffic::Closed { concurrency: if matches!(mode, Mode::Http) { 4 } else { 2 } },
        until: Until::Stop { stop: stop.clone(), max: Duration::from_secs(300) },
        loader: LoaderOptions::default(),
        store: records,
        cancel: signals.cancel.clone(),
        on_sample: Some(watch.on_sample()),
    };
    let say = |line: String| printer.detail(line);
    let drive = async {
        tokio::time::sleep(WARMUP).await;
        cluster.roll(&images.join("v2"), STEP, &say).await;
        tokio::time::sleep(SETTLE).await;
        stop.cancel();
    };
    let (result, ()) = tokio::join!(deskew_probe::run(&url, opts), drive);
    watch.finish();
    Ok(Report::new(&result?, 100.0))
}

/// `deskew publish` of both builds (the same engine), as a pipeline would before each deploy.
async fn publish_both(images: &Path, store_dir: &Path, signals: &Signals) -> Result<()> {
    let store = FsStore::open(store_dir, true)?;
    let host = deskew_core::host::system();
    for v in ["v1", "v2"] {
        let dist = images.join(v);
        let opts = BuildOptions { release: Some(ReleaseId::new(v)?), ..BuildOptions::default() };
        let manifest = Manifest::from_dir(&dist, &opts)?;
        let publish_opts = PublishOptions { cancel: signals.cancel.clone(), ..PublishOptions::default() };
        publish::publish(&store, host.as_ref(), &DirSource::new(&dist), manifest, &publish_opts, &deskew_core::progress::NoProgress)
            .await
            .with_context(|| format!("failed to publish `{v}` to `{}`", store_dir.display()))?;
    }
    Ok(())
}

/// The two runs next to each other.
fn side_by_side(before: &Report, after: &Report, printer: &Printer) {
    let missing = |r: &Report| -> String {
        let mut urls: Vec<&str> = r.failures.iter().map(|f| f.url.rsplit('/').next().unwrap_or(&f.url)).collect();
        urls.sort_unstable();
        urls.dedup();
        if urls.is_empty() { "none".into() } else { urls.join(", ") }
    };
    let pct = |r: &Report| format!("{:.1}%", r.loads.success_percent);
    printer.line("");
    printer.line(format_args!("{:<22} {:>16} {:>16}", "", "without deskew", "with deskew"));
    printer.line(format_args!("{:<22} {:>16} {:>16}", "page loads", before.loads.total, after.loads.total));
    printer.line(format_args!("{:<22} {:>16} {:>16}", "failed loads", before.loads.failed, after.loads.failed));
    printer.line(format_args!("{:<22} {:>16} {:>16}", "successful", pct(before), pct(after)));
    printer.line(format_args!("{:<22} {:>16} {:>16}", "failed requests", before.requests.failed, after.requests.failed));
    printer.line(format_args!("missing without deskew: {}", missing(before)));
    printer.line(format_args!("missing with deskew:    {}", missing(after)));
}
