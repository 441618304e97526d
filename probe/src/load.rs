//! One page load: the page, then every resource it needs, each on the load's own connections.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;
use url::Url;

use deskew_core::ReleaseId;
use tokio::sync::RwLock;

use crate::extract::{self, Kind};
use crate::releases::{Owner, ReleaseIndex};

/// Why one request of a load failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Cause {
    /// The server answered with an error status.
    Status {
        /// The status code.
        status: u16,
    },
    /// No answer: connection refused or reset, DNS, TLS.
    Network {
        /// What the client said.
        message: String,
    },
    /// No complete answer in time.
    Timeout,
    /// The body ended before its announced length.
    Truncated {
        /// What the client said.
        message: String,
    },
    /// The page is not HTML.
    NotHtml {
        /// Its content type.
        content_type: String,
    },
    /// Redirects went round in a loop or too deep.
    Redirects {
        /// What the client said.
        message: String,
    },
    /// An asset answered with HTML: a server's SPA fallback (`try_files $uri /index.html`)
    /// covering for a missing file. Browsers refuse it (a module script must be JavaScript).
    HtmlFallback {
        /// The content type received.
        content_type: String,
    },
    /// Browser mode: an uncaught exception.
    Exception {
        /// Its message.
        message: String,
    },
    /// Browser mode: an error written to the console (by the page or by the browser).
    Console {
        /// Its text.
        message: String,
    },
    /// Browser mode: the browser crashed during the load (it is restarted).
    BrowserCrash,
    /// A script or stylesheet with a content type browsers refuse for it.
    WrongType {
        /// What was expected (`javascript`, `text/css`).
        expected: String,
        /// The content type received.
        content_type: String,
    },
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Status { status } => write!(f, "HTTP {status}"),
            Cause::Network { message } => write!(f, "network error: {message}"),
            Cause::Timeout => write!(f, "timeout"),
            Cause::Truncated { message } => write!(f, "truncated body: {message}"),
            Cause::NotHtml { content_type } => write!(f, "not HTML ({content_type})"),
            Cause::Redirects { message } => write!(f, "redirects: {message}"),
            Cause::HtmlFallback { content_type } => write!(f, "HTML instead of the asset ({content_type}): a fallback answered for a missing file"),
            Cause::Exception { message } => write!(f, "uncaught exception: {message}"),
            Cause::Console { message } => write!(f, "console error: {message}"),
            Cause::BrowserCrash => write!(f, "the browser crashed"),
            Cause::WrongType { expected, content_type } => write!(f, "wrong content type {content_type} (expected {expected})"),
        }
    }
}

/// One failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The URL.
    pub url: String,
    /// Why.
    pub cause: Cause,
    /// With a store: whom the missing asset belongs to, when it failed.
    pub owner: Option<Owner>,
}

/// The outcome of one load.
#[derive(Clone, Debug, Default)]
pub struct LoadSample {
    /// When it started, since the probe started.
    pub started: Duration,
    /// How long it took.
    pub duration: Duration,
    /// Requests made (page included).
    pub requests: usize,
    /// Failed requests; empty for a successful load.
    pub failures: Vec<Failure>,
    /// sha256 of the page body, to match it to a release.
    pub page_sha256: Option<String>,
    /// With a store: the release the page came from.
    pub release: Option<ReleaseId>,
    /// Requests retried once because the connection closed before any answer (a stale
    /// keep-alive connection; browsers retry these too).
    pub retried: usize,
}

impl LoadSample {
    /// Whether every request succeeded.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// How loads are made.
#[derive(Clone, Debug)]
pub struct LoaderOptions {
    /// Timeout of each request.
    pub timeout: Duration,
    /// Requests in flight at once per load (browsers use 6 per origin).
    pub per_load_connections: usize,
    /// Origins besides the page's whose resources are fetched too.
    pub allow_origins: Vec<String>,
    /// With a store: release records, to fetch every asset of the page's release and to say
    /// whom a missing asset belongs to.
    pub releases: Option<Arc<RwLock<ReleaseIndex>>>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            timeout: Duration::from_secs(10),
            per_load_connections: 6,
            allow_origins: Vec::new(),
            releases: None,
        }
    }
}

/// Makes loads of one page.
#[derive(Clone)]
pub struct Loader {
    url: Url,
    opts: LoaderOptions,
    tls: Arc<rustls::ClientConfig>,
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl Loader {
    /// A loader for `url`.
    pub fn new(url: &str, opts: LoaderOptions) -> Result<Loader, crate::ProbeError> {
        let parsed = Url::parse(url).map_err(|e| crate::ProbeError::Url { url: url.into(), why: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(crate::ProbeError::Url { url: url.into(), why: "only http and https URLs can be probed".into() });
        }
        Ok(Loader { url: parsed, opts, tls: Arc::new(tls_config()) })
    }

    /// The page URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A client with its own connection pool, as a new browser tab has.
    fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls).clone())
            .timeout(self.opts.timeout)
            .connect_timeout(self.opts.timeout)
            .pool_max_idle_per_host(self.opts.per_load_connections)
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(concat!("deskew-probe/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    fn allowed(&self, u: &Url) -> bool {
        let origin = u.origin().ascii_serialization();
        u.origin() == self.url.origin() || self.opts.allow_origins.iter().any(|o| o.trim_end_matches('/') == origin)
    }

    /// Fetches the page alone (no resources) and returns (how many resources it references,
    /// its sha256), or why it cannot be loaded at all.
    pub async fn preflight(&self) -> Result<(usize, String), Cause> {
        let client = self.client().map_err(|e| Cause::Network { message: deskew_core::error_chain(&e) })?;
        let page = fetch(&client, &|| self.client(), &self.url, true, Kind::Other, &std::sync::atomic::AtomicUsize::new(0)).await?;
        let (_, refs) = extract::html::references(&String::from_utf8_lossy(&page.body));
        Ok((refs.len(), deskew_core::manifest::sha256_hex(&page.body)))
    }

    /// Makes one load. `started` is its start time relative to the probe's start.
    pub async fn load(&self, started: Duration) -> LoadSample {
        let t0 = Instant::now();
        let mut sample = LoadSample { started, ..LoadSample::default() };
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                sample.failures.push(Failure { url: self.url.to_string(), cause: Cause::Network { message: deskew_core::error_chain(&e) }, owner: None });
                return sample;
            }
        };
        sample.requests += 1;
        let retried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fresh = || self.client();
        let page = match fetch(&client, &fresh, &self.url, true, Kind::Other, &retried).await {
            Ok(f) => f,
            Err(cause) => {
                sample.failures.push(Failure { url: self.url.to_string(), cause, owner: None });
                sample.duration = t0.elapsed();
                return sample;
            }
        };
        sample.page_sha256 = Some(deskew_core::manifest::sha256_hex(&page.body));
        let text = String::from_utf8_lossy(&page.body);
        let (base, refs) = extract::html::references(&text);
        let base_url = base.and_then(|b| page.url.join(&b).ok()).unwrap_or(page.url.clone());

        let mut seen: HashSet<Url> = HashSet::new();
        seen.insert(page.url.clone());
        let mut queue: Vec<(Url, Kind)> = Vec::new();
        let enqueue = |u: Url, kind: Kind, seen: &mut HashSet<Url>, queue: &mut Vec<(Url, Kind)>| {
            let mut u = u;
            u.set_fragment(None);
            if self.allowed(&u) && seen.insert(u.clone()) {
                queue.push((u, kind));
            }
        };
        for r in refs {
            if let Ok(u) = base_url.join(r.href.trim()) {
                enqueue(u, r.kind, &mut seen, &mut queue);
            }
        }
        let mut extra: Vec<String> = Vec::new();
        if let Some(index) = &self.opts.releases {
            let index = index.read().await;
            if let Some(release) = sample.page_sha256.as_deref().and_then(|sha| index.release_of_page(sha)) {
                sample.release = Some(release.clone());
                extra.extend(index.assets_of(release).iter().cloned());
            }
        }
        for p in &extra {
            if let Ok(u) = base_url.join(p) {
                let kind = extract::kind_of_path(u.path());
                enqueue(u, kind, &mut seen, &mut queue);
            }
        }

        let limit = Arc::new(Semaphore::new(self.opts.per_load_connections.max(1)));
        let mut in_flight = FuturesUnordered::new();
        loop {
            while let Some((u, kind)) = queue.pop() {
                let client = client.clone();
                let limit = limit.clone();
                let retried = retried.clone();
                let fresh = &fresh;
                in_flight.push(async move {
                    let _permit = limit.acquire_owned().await.expect("semaphore open");
                    let r = fetch(&client, fresh, &u, false, kind, &retried).await;
                    (u, kind, r)
                });
            }
            let Some((u, kind, r)) = in_flight.next().await else { break };
            sample.requests += 1;
            match r {
                Err(cause) => {
                    let owner = match &self.opts.releases {
                        Some(index) => {
                            let rel = relative_path(&base_url, &u);
                            Some(index.read().await.owner(&rel))
                        }
                        None => None,
                    };
                    sample.failures.push(Failure { url: u.to_string(), cause, owner });
                }
                Ok(fetched) => {
                    let kind = if kind == Kind::Other { extract::kind_of_path(u.path()) } else { kind };
                    let body = String::from_utf8_lossy(&fetched.body);
                    let found = match kind {
                        Kind::Script => extract::js::references(&body),
                        Kind::Style => extract::css::references(&body),
                        Kind::Other => Vec::new(),
                    };
                    for spec in found {
                        if let Ok(next) = fetched.url.join(&spec) {
                            let next_kind = extract::kind_of_path(next.path());
                            enqueue(next, next_kind, &mut seen, &mut queue);
                        }
                    }
                }
            }
        }
        sample.duration = t0.elapsed();
        sample.retried = retried.load(std::sync::atomic::Ordering::Relaxed);
        sample
    }
}

/// `u`'s path relative to the directory of `base` (the site root the store maps to).
fn relative_path(base: &Url, u: &Url) -> String {
    let dir = &base.path()[..base.path().rfind('/').map_or(0, |i| i + 1)];
    u.path().strip_prefix(dir).unwrap_or(u.path().trim_start_matches('/')).to_string()
}

struct Fetched {
    url: Url,
    body: bytes::Bytes,
}

/// Whether an error is a connection closed before any of the response arrived: on a reused
/// keep-alive connection that the server closed meanwhile, browsers and curl retry once.
fn is_stale_connection(e: &reqwest::Error) -> bool {
    let text = deskew_core::error_chain(e);
    text.contains("connection closed before message completed") || (text.contains("Connection reset") && !e.is_body())
}

/// Fetches `url`. A request whose connection closed before any answer is retried once on a
/// fresh connection (a new client, whose pool holds no connection the server may have closed),
/// as browsers do.
async fn fetch(
    client: &reqwest::Client,
    fresh: &(dyn Fn() -> Result<reqwest::Client, reqwest::Error> + Sync),
    url: &Url,
    page: bool,
    kind: Kind,
    retried: &std::sync::atomic::AtomicUsize,
) -> Result<Fetched, Cause> {
    let send = |c: &reqwest::Client| {
        c.get(url.clone())
            .header("cache-control", "no-cache")
            .header("pragma", "no-cache")
            .header("accept", if page { "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8" } else { "*/*" })
            .send()
    };
    let resp = match send(client).await {
        Ok(r) => r,
        Err(e) if is_stale_connection(&e) => {
            retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let new = fresh().map_err(|e| Cause::Network { message: deskew_core::error_chain(&e) })?;
            send(&new).await.map_err(|e| classify(&e))?
        }
        Err(e) => return Err(classify(&e)),
    };
    let status = resp.status().as_u16();
    let final_url = resp.url().clone();
    if status >= 400 {
        // Drain the body so the connection can be reused by the rest of the load.
        let _ = resp.bytes().await;
        return Err(Cause::Status { status });
    }
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = resp.bytes().await.map_err(|e| {
        if e.is_timeout() { Cause::Timeout } else { Cause::Truncated { message: deskew_core::error_chain(&e) } }
    })?;
    let ct = content_type.to_ascii_lowercase();
    if page {
        if !ct.contains("html") {
            return Err(Cause::NotHtml { content_type: if content_type.is_empty() { "no content type".into() } else { content_type } });
        }
    } else {
        let path = final_url.path().to_ascii_lowercase();
        let names_html = path.ends_with(".html") || path.ends_with(".htm") || path.ends_with('/');
        if ct.starts_with("text/html") && !names_html {
            return Err(Cause::HtmlFallback { content_type });
        }
        let js = ["javascript", "ecmascript"].iter().any(|t| ct.contains(t));
        match kind {
            Kind::Script if !js => return Err(Cause::WrongType { expected: "JavaScript".into(), content_type }),
            Kind::Style if !ct.starts_with("text/css") => return Err(Cause::WrongType { expected: "text/css".into(), content_type }),
            _ => {}
        }
    }
    Ok(Fetched { url: final_url, body })
}

fn classify(e: &reqwest::Error) -> Cause {
    if e.is_timeout() {
        Cause::Timeout
    } else if e.is_redirect() {
        Cause::Redirects { message: deskew_core::error_chain(e) }
    } else if e.is_body() || e.is_decode() {
        Cause::Truncated { message: deskew_core::error_chain(e) }
    } else {
        Cause::Network { message: deskew_core::error_chain(e) }
    }
}
