//! A probe run: preflight the page, start traffic with the chosen loader, let the phases run
//! (a duration, or around a deploy command), stop, and hand back every sample.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskew_core::Store;
use deskew_core::cancel::Cancel;
use deskew_core::time::Timestamp;
use tokio::sync::RwLock;
use url::Url;

use crate::ProbeError;
use crate::browser::run::{BrowserLoader, BrowserStats};
use crate::deploy::{self, CommandRecord, Until};
use crate::load::{HttpLoader, LoaderOptions};
use crate::loader::PageLoader;
use crate::releases::ReleaseIndex;
use crate::sample::{Cause, LoadSample};
use crate::traffic::{self, Traffic};

/// How loads are made.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Plain HTTP with deskew's own resource discovery.
    Http,
    /// A real Chromium over the DevTools protocol.
    Browser {
        /// How to start the browser.
        browser: crate::browser::BrowserOptions,
        /// How each page load runs.
        page: crate::browser::page::PageOptions,
    },
}

/// Called after every load with the sample and the counts so far (loads, failed loads).
pub type OnSample = Box<dyn Fn(&LoadSample, usize, usize) + Send + Sync>;

/// How a probe runs.
pub struct ProbeOptions {
    /// HTTP or browser.
    pub mode: Mode,
    /// Traffic model.
    pub traffic: Traffic,
    /// When to stop.
    pub until: Until,
    /// How each load is made.
    pub loader: LoaderOptions,
    /// A store to read release records from (never written).
    pub store: Option<Arc<dyn Store>>,
    /// Cancelled by a signal: the run stops, stops the deploy command, and returns what it has.
    pub cancel: Cancel,
    /// Told about every load as it finishes.
    pub on_sample: Option<OnSample>,
}

/// Everything a run produced.
pub struct RunResult {
    /// The page URL.
    pub url: String,
    /// Wall-clock start.
    pub started_at: Timestamp,
    /// How long traffic ran.
    pub elapsed: Duration,
    /// Every load, in start order.
    pub samples: Vec<LoadSample>,
    /// The deploy command, if any.
    pub command: Option<CommandRecord>,
    /// Whether a signal stopped it.
    pub interrupted: bool,
    /// Whether a detached run ended at its `--max-duration`, never stopped.
    pub timed_out: bool,
    /// Open model: starts skipped because `max_in_flight` loads were running.
    pub dropped_starts: usize,
    /// Things worth saying that are not failures ("the page references no resources").
    pub warnings: Vec<String>,
    /// The traffic model used.
    pub traffic: Traffic,
    /// Browser mode's numbers.
    pub browser: Option<BrowserStats>,
}

/// Runs the probe against `url`.
pub async fn run(url: &Url, mut opts: ProbeOptions) -> Result<RunResult, ProbeError> {
    // What is misconfigured is found before anything touches the network.
    if let Until::Command { argv, .. } = &opts.until {
        deploy::check_command(argv)?;
    }
    if let Mode::Browser { browser, .. } = &opts.mode {
        crate::browser::launch::find(browser)?;
    }
    if let Some(store) = &opts.store {
        opts.loader.releases = Some(Arc::new(RwLock::new(ReleaseIndex::load(store.as_ref()).await?)));
    }
    let start = Instant::now();
    let started_at = Timestamp::now();
    let http = HttpLoader::new(url, opts.loader.clone(), start)?;
    let warnings = preflight(&http, url, &opts.loader).await?;
    let (loader, browser): (Arc<dyn PageLoader>, Option<Arc<BrowserLoader>>) = match &opts.mode {
        Mode::Http => (Arc::new(http), None),
        Mode::Browser { browser, page } => {
            let b = Arc::new(BrowserLoader::start(browser, page.clone(), opts.loader.releases.clone(), url, start).await?);
            (b.clone(), Some(b))
        }
    };
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = refresh_releases(&opts, stop.clone());
    let traffic = {
        let record = recorder(samples.clone(), opts.on_sample.take());
        tokio::spawn(traffic::drive(opts.traffic.clone(), loader, stop.clone(), start, record))
    };
    let phases = deploy::run(&opts.until, &opts.cancel, start).await;
    stop.store(true, Ordering::SeqCst);
    let dropped_starts = traffic.await.unwrap_or(0);
    if let Some(r) = refresher {
        let _ = r.await;
    }
    let browser = match browser {
        Some(b) => Some(b.finish().await),
        None => None,
    };
    let phases = phases?;
    let mut samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    samples.sort_by_key(|s| s.started);
    Ok(RunResult {
        url: url.to_string(),
        started_at,
        elapsed: start.elapsed(),
        samples,
        command: phases.command,
        interrupted: phases.interrupted,
        timed_out: phases.timed_out,
        dropped_starts,
        warnings,
        traffic: opts.traffic,
        browser,
    })
}

/// The page alone must answer before a deploy is judged by it. Its resources are left to the
/// loads, so servers see exactly the requests the report counts.
async fn preflight(http: &HttpLoader, url: &Url, opts: &LoaderOptions) -> Result<Vec<String>, ProbeError> {
    let (references, sha) = http.preflight().await.map_err(|cause| {
        let why = match &cause {
            Cause::Status { status } => format!("the page answered HTTP {status}"),
            other => other.to_string(),
        };
        let network = matches!(cause, Cause::Network { .. } | Cause::Timeout | Cause::Truncated { .. });
        ProbeError::Preflight { url: url.to_string(), why, network }
    })?;
    let mut warnings = Vec::new();
    if references == 0 {
        warnings.push(format!("{url} references no resources: only the page itself is checked"));
    }
    if let Some(index) = &opts.releases {
        if index.read().await.release_of_page(&sha).is_none() {
            warnings.push("the page matches no release in the store: only what it references is checked".into());
        }
    }
    Ok(warnings)
}

/// What traffic calls with every finished load: keep it and tell `on_sample`.
fn recorder(samples: Arc<Mutex<Vec<LoadSample>>>, on_sample: Option<OnSample>) -> impl Fn(LoadSample) + Clone + Send + Sync + 'static {
    let failed = Arc::new(AtomicUsize::new(0));
    let on_sample = Arc::new(on_sample);
    move |s: LoadSample| {
        let failed_now = failed.fetch_add(usize::from(!s.ok()), Ordering::Relaxed) + usize::from(!s.ok());
        let mut v = samples.lock().expect("samples lock");
        if let Some(f) = on_sample.as_ref() {
            f(&s, v.len() + 1, failed_now);
        }
        v.push(s);
    }
}

/// Keeps the release index fresh while probing, read-only.
fn refresh_releases(opts: &ProbeOptions, stop: Arc<AtomicBool>) -> Option<tokio::task::JoinHandle<()>> {
    let (store, index) = (opts.store.clone()?, opts.loader.releases.clone()?);
    Some(tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Refresh a copy and swap it in whole: loads never see a half-built index.
            let mut fresh = index.read().await.clone();
            match fresh.refresh(store.as_ref()).await {
                Ok(()) => *index.write().await = fresh,
                Err(e) => tracing::warn!("failed to refresh the releases: {e}"),
            }
        }
    }))
}
