//! Browser mode as a [`PageLoader`]: one Chromium shared by the loads of a run, started again
//! (and the restart counted) when its connection closes, its memory sampled once a second, and
//! each browser sample attributed to a release when a store is given. Loads take a clean tab
//! from a pool (as many as loads in flight) and give it back cleaned (`tab.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use url::Url;

use super::tab::Tab;
use super::{Browser, BrowserOptions, cdp, page};
use crate::ProbeError;
use crate::loader::PageLoader;
use crate::releases::ReleaseIndex;
use crate::sample::{Cause, Failure, LoadSample};

/// What browser mode adds to a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BrowserStats {
    /// The browser's version string.
    pub version: String,
    /// How many times it died (while starting, or during the run) and was started again.
    pub restarts: u64,
    /// Peak resident memory of all its processes, bytes: a sum of each process's RSS, which
    /// counts the pages they share (the browser's code) once per process.
    pub peak_rss_bytes: u64,
    /// Peak proportional set size of all its processes, bytes: what the browser costs the
    /// machine, shared pages counted once (Linux; 0 where unknown).
    #[serde(default)]
    pub peak_pss_bytes: u64,
    /// Resident memory once a second, bytes.
    pub rss_samples: Vec<u64>,
}

struct Shared {
    browser: tokio::sync::Mutex<Option<Browser>>,
    opts: BrowserOptions,
    stats: Mutex<BrowserStats>,
    /// Clean tabs waiting for a load, of the browser now running.
    tabs: Mutex<Vec<Tab>>,
}

impl Shared {
    /// A connection to a live browser, starting one if the last died.
    async fn conn(&self) -> Option<cdp::Connection> {
        let mut guard = self.browser.lock().await;
        if guard.as_ref().is_some_and(|b| b.conn.is_closed()) {
            *guard = None;
            self.tabs.lock().expect("tabs lock").clear();
            self.stats.lock().expect("stats lock").restarts += 1;
            tracing::warn!("the browser crashed; starting it again");
        }
        if guard.is_none() {
            match Browser::launch(&self.opts).await {
                Ok((b, died)) => {
                    self.stats.lock().expect("stats lock").restarts += died;
                    *guard = Some(b);
                }
                Err(e) => {
                    tracing::error!("{e}");
                    return None;
                }
            }
        }
        guard.as_ref().map(|b| b.conn.clone())
    }
}

/// Page loads in a shared browser.
pub struct BrowserLoader {
    shared: Arc<Shared>,
    page: page::PageOptions,
    index: Option<Arc<RwLock<ReleaseIndex>>>,
    url: Url,
    epoch: Instant,
    sampler: tokio::task::JoinHandle<()>,
}

impl BrowserLoader {
    /// Starts the browser and its memory sampler. Failure times count from `epoch`.
    pub async fn start(
        browser: &BrowserOptions,
        page: page::PageOptions,
        index: Option<Arc<RwLock<ReleaseIndex>>>,
        url: &Url,
        epoch: Instant,
    ) -> Result<BrowserLoader, ProbeError> {
        let (first, died) = Browser::launch(browser).await?;
        let stats = BrowserStats { version: first.version.clone(), restarts: died, ..BrowserStats::default() };
        let shared =
            Arc::new(Shared { browser: tokio::sync::Mutex::new(Some(first)), opts: browser.clone(), stats: Mutex::new(stats), tabs: Mutex::default() });
        let sampler = {
            let shared = shared.clone();
            tokio::spawn(async move {
                // One sample a second however long a sample takes (reading `/proc` under load).
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    // The lock only to learn the process: loads must not wait for `/proc`.
                    let root = shared.browser.lock().await.as_ref().and_then(Browser::pgid);
                    let mem = match root {
                        Some(root) => tokio::task::spawn_blocking(move || super::launch::memory(root)).await.unwrap_or_default(),
                        None => super::launch::Memory::default(),
                    };
                    let mut st = shared.stats.lock().expect("stats lock");
                    st.peak_rss_bytes = st.peak_rss_bytes.max(mem.rss_bytes);
                    st.peak_pss_bytes = st.peak_pss_bytes.max(mem.pss_bytes);
                    st.rss_samples.push(mem.rss_bytes);
                }
            })
        };
        Ok(BrowserLoader { shared, page, index, url: url.clone(), epoch, sampler })
    }

    /// Stops the sampler and the browser; the run's browser numbers.
    pub async fn finish(&self) -> BrowserStats {
        self.sampler.abort();
        let stats = self.shared.stats.lock().expect("stats lock").clone();
        self.shared.browser.lock().await.take();
        stats
    }

    async fn load_one(&self, at: Duration) -> LoadSample {
        let t0 = Instant::now();
        let failed = |cause: Cause| LoadSample {
            started: at,
            duration: t0.elapsed(),
            failures: vec![Failure { url: self.url.to_string(), cause, owner: None, at: self.epoch.elapsed() }],
            ..LoadSample::default()
        };
        let Some(conn) = self.shared.conn().await else { return failed(Cause::BrowserCrash) };
        let pooled = self.shared.tabs.lock().expect("tabs lock").pop();
        let mut tab = match pooled {
            Some(tab) => tab,
            None => match Tab::open(&conn, &self.page).await {
                Ok(tab) => tab,
                Err(cdp::CdpError::Closed) => return failed(Cause::BrowserCrash),
                Err(e) => return failed(Cause::Network { message: e.to_string() }),
            },
        };
        match page::load(&conn, &mut tab, self.url.as_str(), &self.page, at, self.epoch).await {
            Ok(mut outcome) => {
                self.attribute(&mut outcome.sample).await;
                self.give_back(&conn, tab, outcome.reusable, &outcome.origins).await;
                outcome.sample
            }
            Err(e) => {
                tab.close(&conn).await;
                match e {
                    cdp::CdpError::Closed => failed(Cause::BrowserCrash),
                    e => failed(Cause::Network { message: e.to_string() }),
                }
            }
        }
    }

    /// Cleans a tab and returns it to the pool, or closes it when it may not serve again.
    async fn give_back(&self, conn: &cdp::Connection, mut tab: Tab, reusable: bool, origins: &std::collections::BTreeSet<String>) {
        let reset = if reusable { tab.reset(conn, origins).await } else { Ok(()) };
        match reset {
            Ok(()) if reusable && !conn.is_closed() => self.shared.tabs.lock().expect("tabs lock").push(tab),
            _ => {
                tracing::debug!(reusable, loads = tab.loads, ?reset, "tab closed");
                tab.close(conn).await;
            }
        }
    }

    /// Fills in the release of a sample and the owners of its failures.
    async fn attribute(&self, sample: &mut LoadSample) {
        let Some(index) = &self.index else { return };
        let index = index.read().await;
        if let Some(sha) = &sample.page_sha256 {
            sample.release = index.release_of_page(sha).cloned();
        }
        let dir = &self.url.path()[..self.url.path().rfind('/').map_or(0, |i| i + 1)];
        for f in &mut sample.failures {
            if let Ok(u) = Url::parse(&f.url) {
                if u.origin() == self.url.origin() {
                    let rel = u.path().strip_prefix(dir).unwrap_or(u.path().trim_start_matches('/'));
                    f.owner = Some(index.owner(rel));
                }
            }
        }
    }
}

impl PageLoader for BrowserLoader {
    fn load(&self, at: Duration) -> BoxFuture<'_, LoadSample> {
        Box::pin(self.load_one(at))
    }
}
