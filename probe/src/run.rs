//! Running loads: a closed model (N loads in flight) or an open one (loads started at a fixed
//! rate, whatever their latency, like k6's constant-arrival-rate), for a duration or around a
//! deploy command. Stopping lets loads in flight finish, so every request the servers saw is in
//! the report.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskew_core::Store;
use deskew_core::time::Timestamp;
use serde::Serialize;
use tokio::sync::RwLock;

use crate::load::{Cause, LoadSample, Loader, LoaderOptions};
use crate::releases::ReleaseIndex;
use crate::ProbeError;

/// The traffic model.
#[derive(Clone, Debug)]
pub enum Traffic {
    /// `concurrency` loads in flight, each starting when the previous one ends.
    Closed {
        /// Loads in flight.
        concurrency: usize,
    },
    /// `rate` loads started per second, at most `max_in_flight` at once.
    Open {
        /// Loads per second.
        rate: f64,
        /// Cap on loads in flight; starts beyond it are counted as dropped.
        max_in_flight: usize,
    },
}

/// When traffic stops.
#[derive(Clone, Debug)]
pub enum Until {
    /// After this long.
    Duration(Duration),
    /// Around a command: warm up, run it, keep going for `settle` after it exits.
    Command {
        /// The command and its arguments.
        argv: Vec<String>,
        /// Traffic before the command starts.
        warmup: Duration,
        /// Traffic after the command exits.
        settle: Duration,
    },
}

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

/// What browser mode adds to a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BrowserStats {
    /// The browser's version string.
    pub version: String,
    /// How many times it crashed and was started again.
    pub restarts: u64,
    /// Peak resident memory of all its processes, bytes.
    pub peak_rss_bytes: u64,
    /// Resident memory once a second, bytes.
    pub rss_samples: Vec<u64>,
}

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
    /// Called after every load with (loads, failed loads) so far.
    pub progress: Option<Box<dyn Fn(usize, usize) + Send + Sync>>,
}

/// What happened to the deploy command.
#[derive(Clone, Debug, Serialize)]
pub struct CommandRecord {
    /// The command line.
    pub argv: Vec<String>,
    /// When it started, ms since the probe started.
    pub started_ms: u64,
    /// When it ended, ms since the probe started.
    pub ended_ms: Option<u64>,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Whether it succeeded.
    pub success: bool,
}

/// Everything a run produced.
pub struct RunResult {
    /// The page URL.
    pub url: String,
    /// Wall-clock start.
    pub started_at: Timestamp,
    /// How long traffic ran.
    pub elapsed: Duration,
    /// Every load, in completion order.
    pub samples: Vec<LoadSample>,
    /// The deploy command, if any.
    pub command: Option<CommandRecord>,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
    /// Open model: starts skipped because `max_in_flight` loads were running.
    pub dropped_starts: usize,
    /// Things worth saying that are not failures ("the page references no resources").
    pub warnings: Vec<String>,
    /// The traffic model used.
    pub traffic: Traffic,
    /// Browser mode's numbers.
    pub browser: Option<BrowserStats>,
}

type LoadFn = Arc<dyn Fn(Duration) -> futures::future::BoxFuture<'static, LoadSample> + Send + Sync>;

struct SharedBrowser {
    browser: tokio::sync::Mutex<Option<crate::browser::Browser>>,
    opts: crate::browser::BrowserOptions,
    stats: Mutex<BrowserStats>,
}

impl SharedBrowser {
    async fn conn(&self) -> Option<crate::browser::cdp::Connection> {
        let mut guard = self.browser.lock().await;
        if guard.as_ref().is_some_and(|b| b.conn.is_closed()) {
            // It died: report it, start a new one.
            *guard = None;
            self.stats.lock().expect("stats lock").restarts += 1;
            tracing::warn!("the browser crashed; starting it again");
        }
        if guard.is_none() {
            match crate::browser::Browser::launch(&self.opts).await {
                Ok(b) => *guard = Some(b),
                Err(e) => {
                    tracing::error!("{e}");
                    return None;
                }
            }
        }
        guard.as_ref().map(|b| b.conn.clone())
    }
}

/// Fills in the release of a browser sample and the owners of its failures.
async fn attribute(sample: &mut LoadSample, index: &Option<Arc<RwLock<ReleaseIndex>>>, page: &url::Url) {
    let Some(index) = index else { return };
    let index = index.read().await;
    if let Some(sha) = &sample.page_sha256 {
        sample.release = index.release_of_page(sha).cloned();
    }
    let dir = &page.path()[..page.path().rfind('/').map_or(0, |i| i + 1)];
    for f in &mut sample.failures {
        if let Ok(u) = url::Url::parse(&f.url) {
            if u.origin() == page.origin() {
                let rel = u.path().strip_prefix(dir).unwrap_or(u.path().trim_start_matches('/'));
                f.owner = Some(index.owner(rel));
            }
        }
    }
}

/// The probe.
pub struct Probe;

impl Probe {
    /// Runs the probe against `url`.
    pub async fn run(url: &str, opts: ProbeOptions) -> Result<RunResult, ProbeError> {
        let mut loader_opts = opts.loader.clone();
        if let Some(store) = &opts.store {
            loader_opts.releases = Some(Arc::new(RwLock::new(ReleaseIndex::load(store.as_ref()).await?)));
        }
        let loader = Loader::new(url, loader_opts.clone())?;
        let mut warnings = Vec::new();

        // Preflight: the page alone must answer before a deploy is judged by it. Its resources
        // are left to the loads, so servers see exactly the requests the report counts.
        let (references, sha) = loader.preflight().await.map_err(|cause| {
            let why = match &cause {
                Cause::Status { status } => format!("the page answered HTTP {status}"),
                other => other.to_string(),
            };
            ProbeError::Preflight { url: url.into(), why }
        })?;
        if references == 0 {
            warnings.push(format!("{url} references no resources: only the page itself is checked"));
        }
        if let Some(index) = &loader_opts.releases {
            if index.read().await.release_of_page(&sha).is_none() {
                warnings.push("the page matches no release in the store: only what it references is checked".into());
            }
        }

        let page_url = loader.url().clone();
        let (load_fn, shared_browser): (LoadFn, Option<Arc<SharedBrowser>>) = match &opts.mode {
            Mode::Http => {
                let loader = loader.clone();
                (Arc::new(move |at| {
                    let loader = loader.clone();
                    Box::pin(async move { loader.load(at).await })
                }), None)
            }
            Mode::Browser { browser, page } => {
                let first = crate::browser::Browser::launch(browser).await?;
                let stats = BrowserStats { version: first.version.clone(), ..BrowserStats::default() };
                let shared = Arc::new(SharedBrowser { browser: tokio::sync::Mutex::new(Some(first)), opts: browser.clone(), stats: Mutex::new(stats) });
                let (page_opts, index, url_s, page_url) = (page.clone(), loader_opts.releases.clone(), url.to_string(), page_url.clone());
                let sb = shared.clone();
                (Arc::new(move |at| {
                    let (sb, page_opts, index, url_s, page_url) = (sb.clone(), page_opts.clone(), index.clone(), url_s.clone(), page_url.clone());
                    Box::pin(async move {
                        let t0 = Instant::now();
                        let crashed = |at| LoadSample {
                            started: at,
                            duration: t0.elapsed(),
                            requests: 0,
                            failures: vec![crate::load::Failure { url: url_s.clone(), cause: Cause::BrowserCrash, owner: None }],
                            ..LoadSample::default()
                        };
                        let Some(conn) = sb.conn().await else { return crashed(at) };
                        match crate::browser::page::load(&conn, &url_s, &page_opts, at).await {
                            Ok(mut s) => {
                                attribute(&mut s, &index, &page_url).await;
                                s
                            }
                            Err(crate::browser::cdp::CdpError::Closed) => crashed(at),
                            Err(e) => LoadSample {
                                started: at,
                                duration: t0.elapsed(),
                                failures: vec![crate::load::Failure { url: url_s.clone(), cause: Cause::Network { message: e.to_string() }, owner: None }],
                                ..LoadSample::default()
                            },
                        }
                    })
                }), Some(shared))
            }
        };

        let start = Instant::now();
        let started_at = Timestamp::now();
        let samples: Arc<Mutex<Vec<LoadSample>>> = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(opts.progress);
        let record = {
            let samples = samples.clone();
            let failed = failed.clone();
            let progress = progress.clone();
            move |s: LoadSample| {
                if !s.ok() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                let n = {
                    let mut v = samples.lock().expect("samples lock");
                    v.push(s);
                    v.len()
                };
                if let Some(p) = progress.as_ref() {
                    p(n, failed.load(Ordering::Relaxed));
                }
            }
        };

        // Keep the release index fresh while probing, read-only.
        let refresher = match (&opts.store, &loader_opts.releases) {
            (Some(store), Some(index)) => {
                let (store, index, stop) = (store.clone(), index.clone(), stop.clone());
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
            _ => None,
        };

        // Browser memory, once a second.
        let sampler = shared_browser.clone().map(|sb| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let rss = sb.browser.lock().await.as_ref().map_or(0, |b| b.rss_bytes());
                    {
                        let mut st = sb.stats.lock().expect("stats lock");
                        st.peak_rss_bytes = st.peak_rss_bytes.max(rss);
                        st.rss_samples.push(rss);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        });
        let dropped = Arc::new(AtomicUsize::new(0));
        let traffic = {
            let (load_fn, stop, record, dropped) = (load_fn.clone(), stop.clone(), record.clone(), dropped.clone());
            let model = opts.traffic.clone();
            tokio::spawn(async move { drive(model, load_fn, stop, start, record, dropped).await })
        };

        let mut interrupted = false;
        let mut command = None;
        match opts.until {
            Until::Duration(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tokio::signal::ctrl_c() => interrupted = true,
                }
            }
            Until::Command { argv, warmup, settle } => {
                tokio::select! {
                    _ = tokio::time::sleep(warmup) => {}
                    _ = tokio::signal::ctrl_c() => interrupted = true,
                }
                if !interrupted {
                    let mut rec = CommandRecord { argv: argv.clone(), started_ms: ms(start.elapsed()), ended_ms: None, exit_code: None, success: false };
                    // Its own process group, so an interrupt stops the command and everything it
                    // started, not just its first process.
                    let mut cmd = tokio::process::Command::new(&argv[0]);
                    cmd.args(&argv[1..]).kill_on_drop(true);
                    #[cfg(unix)]
                    cmd.process_group(0);
                    let mut child = cmd.spawn().map_err(|source| ProbeError::Command { command: argv.join(" "), source })?;
                    tokio::select! {
                        status = child.wait() => {
                            rec.ended_ms = Some(ms(start.elapsed()));
                            if let Ok(status) = status {
                                rec.exit_code = status.code();
                                rec.success = status.success();
                            }
                        }
                        _ = tokio::signal::ctrl_c() => {
                            interrupted = true;
                            stop_command(&mut child).await;
                            rec.ended_ms = Some(ms(start.elapsed()));
                        }
                    }
                    command = Some(rec);
                    if !interrupted {
                        tokio::select! {
                            _ = tokio::time::sleep(settle) => {}
                            _ = tokio::signal::ctrl_c() => interrupted = true,
                        }
                    }
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        let _ = traffic.await;
        if let Some(r) = refresher {
            let _ = r.await;
        }
        if let Some(s) = sampler {
            let _ = s.await;
        }
        let browser = match shared_browser {
            Some(sb) => {
                let stats = sb.stats.lock().expect("stats lock").clone();
                // Stop the browser now, whatever else holds a reference.
                sb.browser.lock().await.take();
                Some(stats)
            }
            None => None,
        };
        let elapsed = start.elapsed();
        let mut samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
        samples.sort_by_key(|s| s.started);
        Ok(RunResult {
            url: url.into(),
            started_at,
            elapsed,
            samples,
            command,
            interrupted,
            dropped_starts: dropped.load(Ordering::SeqCst),
            warnings,
            traffic: opts.traffic,
            browser,
        })
    }
}

/// Stops the deploy command's process group: SIGTERM, then SIGKILL after five seconds.
async fn stop_command(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        let signal_group = |sig: &str| {
            let _ = std::process::Command::new("kill").args([sig, "--", &format!("-{pid}")]).status();
        };
        signal_group("-TERM");
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_ok() {
            // The leader is gone; make sure nothing else of the group lingers.
            signal_group("-KILL");
            return;
        }
        signal_group("-KILL");
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

async fn drive(
    model: Traffic,
    load: LoadFn,
    stop: Arc<AtomicBool>,
    start: Instant,
    record: impl Fn(LoadSample) + Clone + Send + Sync + 'static,
    dropped: Arc<AtomicUsize>,
) {
    match model {
        Traffic::Closed { concurrency } => {
            let workers: Vec<_> = (0..concurrency.max(1))
                .map(|_| {
                    let (load, stop, record) = (load.clone(), stop.clone(), record.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::SeqCst) {
                            let s = load(start.elapsed()).await;
                            record(s);
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
        }
        Traffic::Open { rate, max_in_flight } => {
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let in_flight = Arc::new(AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            while !stop.load(Ordering::SeqCst) {
                ticker.tick().await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if in_flight.load(Ordering::SeqCst) >= max_in_flight {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                in_flight.fetch_add(1, Ordering::SeqCst);
                let (load, record, in_flight) = (load.clone(), record.clone(), in_flight.clone());
                tasks.spawn(async move {
                    let s = load(start.elapsed()).await;
                    record(s);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
}
