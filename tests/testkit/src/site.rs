//! A static web server for probe tests: serves a build directory (`/` is `index.html`), and can
//! fail asset requests on purpose (404, a dropped connection, a truncated body) at known
//! positions, counting each, so tests can check that the probe saw exactly what happened.
//! `/loop` redirects to itself forever.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Which asset requests fail (1-based positions among asset requests; 0 = never). A request
/// matching several rules gets the first: 404, then drop, then truncate.
#[derive(Debug, Default)]
pub struct SiteFaults {
    /// Every Nth asset request answers 404.
    pub not_found_every: AtomicUsize,
    /// Every Nth asset request has its connection closed without an answer.
    pub drop_every: AtomicUsize,
    /// Every Nth asset request gets half its body, then the connection closes.
    pub truncate_every: AtomicUsize,
    /// Asset requests seen.
    pub asset_requests: AtomicUsize,
    /// Page requests seen.
    pub page_requests: AtomicUsize,
    /// 404s injected.
    pub injected_404: AtomicUsize,
    /// Connections dropped.
    pub injected_drops: AtomicUsize,
    /// Bodies truncated.
    pub injected_truncations: AtomicUsize,
}

/// One request as the server saw it: an access log line, with the request's headers.
#[derive(Clone, Debug)]
pub struct Logged {
    /// When the answer (or the failure) was produced.
    pub at: std::time::SystemTime,
    /// The request path.
    pub path: String,
    /// The status answered (0 for a dropped connection).
    pub status: u16,
    /// The request's headers, lower-case names.
    pub headers: Vec<(String, String)>,
}

/// A running site; stops when dropped.
pub struct Site {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// Fault knobs and counters.
    pub faults: Arc<SiteFaults>,
    /// Every request, in order.
    pub log: Arc<std::sync::Mutex<Vec<Logged>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

impl Site {
    /// Serves `root` on a free loopback port.
    pub async fn start(root: PathBuf) -> Site {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(SiteFaults::default());
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = (Arc::new(root), faults.clone(), log.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Site { url: format!("http://{addr}/"), faults, log, task }
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).map_err(|never: Infallible| match never {}).boxed())
        .unwrap()
}

fn hits(every: &AtomicUsize, n: usize) -> bool {
    let e = every.load(Ordering::SeqCst);
    e != 0 && n % e == 0
}

type State = (Arc<PathBuf>, Arc<SiteFaults>, Arc<std::sync::Mutex<Vec<Logged>>>);

async fn serve((root, faults, log): State, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let answer = respond(&root, &faults, req).await;
    let status = answer.as_ref().map_or(0, |r| r.status().as_u16());
    log.lock().unwrap().push(Logged { at: std::time::SystemTime::now(), path, status, headers });
    answer
}

async fn respond(root: &std::path::Path, faults: &SiteFaults, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_string();
    if path == "/loop" {
        return Ok(Response::builder()
            .status(StatusCode::FOUND)
            .header("location", "/loop")
            .body(Full::new(Bytes::new()).map_err(|n: Infallible| match n {}).boxed())
            .unwrap());
    }
    let rel = if path.ends_with('/') { format!("{path}index.html") } else { path.clone() };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|s| s == "..") {
        return Ok(full(StatusCode::BAD_REQUEST, "text/plain", "bad path"));
    }
    let is_page = rel.ends_with(".html");
    if is_page {
        faults.page_requests.fetch_add(1, Ordering::SeqCst);
    } else {
        let n = faults.asset_requests.fetch_add(1, Ordering::SeqCst) + 1;
        if hits(&faults.not_found_every, n) {
            faults.injected_404.fetch_add(1, Ordering::SeqCst);
            return Ok(full(StatusCode::NOT_FOUND, "text/plain", "injected 404"));
        }
        if hits(&faults.drop_every, n) {
            faults.injected_drops.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::other("injected connection drop"));
        }
        if hits(&faults.truncate_every, n) {
            if let Ok(bytes) = tokio::fs::read(root.join(rel)).await {
                faults.injected_truncations.fetch_add(1, Ordering::SeqCst);
                let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
                // Send the headers and half the body, give hyper time to flush them, then fail
                // the body: the client sees a response whose body ends early.
                let frames = futures::stream::unfold(0u8, move |step| {
                    let half = half.clone();
                    async move {
                        match step {
                            0 => Some((Ok(Frame::data(half)), 1)),
                            1 => {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                Some((Err(std::io::Error::other("injected truncation")), 2))
                            }
                            _ => None,
                        }
                    }
                });
                let body = StreamBody::new(frames).boxed();
                return Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", deskew_core::mime::content_type(rel))
                    .header("content-length", bytes.len())
                    .body(body)
                    .unwrap());
            }
        }
    }
    match tokio::fs::read(root.join(rel)).await {
        Ok(bytes) => Ok(full(StatusCode::OK, &deskew_core::mime::content_type(rel), bytes)),
        Err(_) => Ok(full(StatusCode::NOT_FOUND, "text/plain", "not found")),
    }
}
