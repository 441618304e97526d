//! HTTP mode: one page load is the page, then every resource it needs, each on the load's own
//! connections, with the headers, credentials, cookies and address overrides the user gave.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::RwLock;
use tokio::sync::Semaphore;
use url::Url;

use crate::extract::{self, Kind};
use crate::releases::ReleaseIndex;
use crate::sample::{Cause, Failure, LoadSample};

/// Which origins besides the page's have their resources fetched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowOrigins {
    /// Only the page's own.
    #[default]
    None,
    /// These (serialised origins: `https://cdn.example.com`).
    Listed(Vec<String>),
    /// Every origin (`--allow-origin '*'`).
    Any,
}

/// How loads are made.
#[derive(Clone, Debug)]
pub struct LoaderOptions {
    /// Timeout of each request.
    pub timeout: Duration,
    /// Requests in flight at once per load (browsers use 6 per origin).
    pub per_load_connections: usize,
    /// Origins besides the page's whose resources are fetched too.
    pub allow_origins: AllowOrigins,
    /// With a store: release records, to fetch every asset of the page's release and to say
    /// whom a missing asset belongs to.
    pub releases: Option<Arc<RwLock<ReleaseIndex>>>,
    /// Extra request headers (`-H`), sent with every request.
    pub headers: Vec<(String, String)>,
    /// HTTP basic credentials, sent with every request to the page's origin.
    pub basic_auth: Option<(String, String)>,
    /// Cookies (`name=value`), sent with every request to the page's origin.
    pub cookies: Vec<String>,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Host names resolved to these addresses instead of through DNS (`--resolve`).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            timeout: Duration::from_secs(10),
            per_load_connections: 6,
            allow_origins: AllowOrigins::None,
            releases: None,
            headers: Vec::new(),
            basic_auth: None,
            cookies: Vec::new(),
            insecure: false,
            resolve: Vec::new(),
        }
    }
}

/// Makes HTTP loads of one page.
#[derive(Clone)]
pub struct HttpLoader {
    url: Url,
    opts: LoaderOptions,
    tls: Arc<rustls::ClientConfig>,
    /// When the probe started: failure times are measured from it.
    epoch: Instant,
}

/// Whether `url` answers 2xx now (a signal a pipeline flips, e.g. "the rollout ended"); any
/// error is "not yet".
pub async fn answers_ok(url: &Url) -> bool {
    let client = reqwest::Client::builder().tls_backend_preconfigured(tls_config(false)).timeout(std::time::Duration::from_secs(5)).build();
    match client {
        Ok(c) => c.get(url.clone()).send().await.is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    }
}

fn tls_config(insecure: bool) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    if insecure {
        return builder.dangerous().with_custom_certificate_verifier(Arc::new(crate::tls::AcceptAny(provider))).with_no_client_auth();
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    builder.with_root_certificates(roots).with_no_client_auth()
}

impl HttpLoader {
    /// A loader for `url`; failure times count from `epoch`.
    pub fn new(url: &Url, opts: LoaderOptions, epoch: Instant) -> Result<HttpLoader, crate::ProbeError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(crate::ProbeError::Url { url: url.to_string(), why: "only http and https URLs can be probed".into() });
        }
        let tls = Arc::new(tls_config(opts.insecure));
        Ok(HttpLoader { url: url.clone(), opts, tls, epoch })
    }

    /// The page URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A client with its own connection pool, as a new browser tab has.
    fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls).clone())
            .timeout(self.opts.timeout)
            .connect_timeout(self.opts.timeout)
            .pool_max_idle_per_host(self.opts.per_load_connections)
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(concat!("deskew-probe/", env!("CARGO_PKG_VERSION")));
        for (host, addr) in &self.opts.resolve {
            b = b.resolve(host, *addr);
        }
        b.build()
    }

    fn allowed(&self, u: &Url) -> bool {
        let origin = u.origin().ascii_serialization();
        u.origin() == self.url.origin()
            || match &self.opts.allow_origins {
                AllowOrigins::None => false,
                AllowOrigins::Any => true,
                AllowOrigins::Listed(list) => list.contains(&origin),
            }
    }

    /// Headers for a request to `u`: the user's, plus credentials and cookies for the page's
    /// own origin only (never leaked to a CDN).
    fn headers_for(&self, u: &Url) -> reqwest::header::HeaderMap {
        use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
        let mut h = HeaderMap::new();
        for (k, v) in &self.opts.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                h.append(k, v);
            }
        }
        if u.origin() == self.url.origin() {
            if let Some((user, pass)) = &self.opts.basic_auth {
                let token = crate::tls::base64(format!("{user}:{pass}").as_bytes());
                if let Ok(mut v) = HeaderValue::from_str(&format!("Basic {token}")) {
                    v.set_sensitive(true);
                    h.insert(reqwest::header::AUTHORIZATION, v);
                }
            }
            if !self.opts.cookies.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&self.opts.cookies.join("; ")) {
                    h.insert(reqwest::header::COOKIE, v);
                }
            }
        }
        h
    }

    /// Fetches the page alone (no resources) and returns (how many resources it references,
    /// its sha256), or why it cannot be loaded at all.
    pub async fn preflight(&self) -> Result<(usize, String), Cause> {
        let client = self.client().map_err(|e| Cause::Network { message: deskew_core::error_chain(&e) })?;
        let page =
            fetch(&client, &|| self.client(), &self.url, self.headers_for(&self.url), true, Kind::Other, &std::sync::atomic::AtomicUsize::new(0)).await?;
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
                let cause = Cause::Network { message: deskew_core::error_chain(&e) };
                sample.failures.push(Failure { url: self.url.to_string(), cause, owner: None, at: self.epoch.elapsed() });
                return sample;
            }
        };
        sample.requests += 1;
        let retried = std::sync::atomic::AtomicUsize::new(0);
        let fresh = || self.client();
        let page = match fetch(&client, &fresh, &self.url, self.headers_for(&self.url), true, Kind::Other, &retried).await {
            Ok(f) => f,
            Err(cause) => {
                sample.failures.push(Failure { url: self.url.to_string(), cause, owner: None, at: self.epoch.elapsed() });
                sample.duration = t0.elapsed();
                return sample;
            }
        };
        sample.page_sha256 = Some(deskew_core::digest::sha256_hex(&page.body));
        let mut crawl = Crawl::new(self, &page);
        if let Some(index) = &self.opts.releases {
            let index = index.read().await;
            if let Some(release) = sample.page_sha256.as_deref().and_then(|sha| index.release_of_page(sha)) {
                sample.release = Some(release.clone());
                // Every asset of the page's release, the ones no page names included.
                for p in index.assets_of(release) {
                    if let Ok(u) = crawl.base.join(p) {
                        crawl.enqueue(u, extract::kind_of_path(p));
                    }
                }
            }
        }
        self.fetch_all(&client, &fresh, &mut crawl, &mut sample, &retried).await;
        sample.duration = t0.elapsed();
        sample.retried = retried.load(std::sync::atomic::Ordering::Relaxed);
        sample.skipped = crawl.skipped;
        sample
    }

    /// Fetches everything `crawl` holds, at most `per_load_connections` at once, adding what
    /// stylesheets and modules reference as they arrive.
    async fn fetch_all(
        &self,
        client: &reqwest::Client,
        fresh: &(dyn Fn() -> Result<reqwest::Client, reqwest::Error> + Sync),
        crawl: &mut Crawl<'_>,
        sample: &mut LoadSample,
        retried: &std::sync::atomic::AtomicUsize,
    ) {
        let limit = Arc::new(Semaphore::new(self.opts.per_load_connections.max(1)));
        let mut in_flight = FuturesUnordered::new();
        loop {
            while let Some((u, kind)) = crawl.queue.pop() {
                let (client, limit, headers) = (client.clone(), limit.clone(), self.headers_for(&u));
                in_flight.push(async move {
                    let _permit = limit.acquire_owned().await.expect("semaphore open");
                    let r = fetch(&client, fresh, &u, headers, false, kind, retried).await;
                    (u, kind, r)
                });
            }
            let Some((u, kind, r)) = in_flight.next().await else { break };
            sample.requests += 1;
            match r {
                Err(cause) => {
                    let owner = match &self.opts.releases {
                        Some(index) => Some(index.read().await.owner(&relative_path(&crawl.base, &u))),
                        None => None,
                    };
                    sample.failures.push(Failure { url: u.to_string(), cause, owner, at: self.epoch.elapsed() });
                }
                Ok(fetched) => crawl.follow(&fetched, if kind == Kind::Other { extract::kind_of_path(u.path()) } else { kind }),
            }
        }
    }
}

/// What one load still has to fetch, and what it has seen.
struct Crawl<'a> {
    loader: &'a HttpLoader,
    base: Url,
    seen: HashSet<Url>,
    queue: Vec<(Url, Kind)>,
    skipped: std::collections::BTreeMap<String, usize>,
}

impl<'a> Crawl<'a> {
    /// Starts from the page: everything its HTML references.
    fn new(loader: &'a HttpLoader, page: &Fetched) -> Crawl<'a> {
        let text = String::from_utf8_lossy(&page.body);
        let (base, refs) = extract::html::references(&text);
        let base = base.and_then(|b| page.url.join(&b).ok()).unwrap_or(page.url.clone());
        let mut crawl = Crawl { loader, base, seen: HashSet::from([page.url.clone()]), queue: Vec::new(), skipped: Default::default() };
        for r in refs {
            if let Ok(u) = crawl.base.join(r.href.trim()) {
                crawl.enqueue(u, r.kind);
            }
        }
        crawl
    }

    /// Queues `u` once; another origin is counted as skipped unless allowed.
    fn enqueue(&mut self, mut u: Url, kind: Kind) {
        u.set_fragment(None);
        if !matches!(u.scheme(), "http" | "https") || !self.seen.insert(u.clone()) {
            return;
        }
        if self.loader.allowed(&u) {
            self.queue.push((u, kind));
        } else {
            *self.skipped.entry(u.origin().ascii_serialization()).or_insert(0) += 1;
        }
    }

    /// Queues what a fetched stylesheet or module references.
    fn follow(&mut self, fetched: &Fetched, kind: Kind) {
        let body = String::from_utf8_lossy(&fetched.body);
        let found = match kind {
            Kind::Script => extract::js::references(&body),
            Kind::Style => extract::css::references(&body),
            Kind::Other => Vec::new(),
        };
        for spec in found {
            if let Ok(next) = fetched.url.join(&spec) {
                let next_kind = extract::kind_of_path(next.path());
                self.enqueue(next, next_kind);
            }
        }
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
    headers: reqwest::header::HeaderMap,
    page: bool,
    kind: Kind,
    retried: &std::sync::atomic::AtomicUsize,
) -> Result<Fetched, Cause> {
    let send = |c: &reqwest::Client| {
        c.get(url.clone())
            .headers(headers.clone())
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
    let body = resp.bytes().await.map_err(|e| if e.is_timeout() { Cause::Timeout } else { Cause::Truncated { message: deskew_core::error_chain(&e) } })?;
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
