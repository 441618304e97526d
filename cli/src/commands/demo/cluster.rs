//! The demo's cluster, in process: three "pods" behind a round-robin balancer (as an ingress
//! balances requests), and a rolling update with maxSurge 1 / maxUnavailable 0, the way a
//! Kubernetes Deployment replaces its pods. Each pod serves its own image (a build folder); with a
//! store, it serves `/assets/` from the store instead, as the pods of the fix do.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// One pod: the image it runs, whether it takes traffic.
#[derive(Clone, Debug)]
struct Pod {
    name: String,
    image: PathBuf,
    ready: bool,
}

struct Shared {
    pods: Mutex<Vec<Pod>>,
    store: Option<PathBuf>,
    next: AtomicUsize,
}

/// A running cluster. Dropping it stops serving.
pub struct Cluster {
    /// The Service's URL (the balancer).
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    /// Three ready pods running `image`, behind a balancer on a free loopback port.
    pub async fn start(image: &Path, store: Option<&Path>) -> Result<Cluster> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("failed to listen on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let pods = (1..=3).map(|i| Pod { name: format!("web-{}-{i}", version(image)), image: image.to_path_buf(), ready: true }).collect();
        let shared = Arc::new(Shared { pods: Mutex::new(pods), store: store.map(Path::to_path_buf), next: AtomicUsize::new(0) });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.answer(&req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Ok(Cluster { url: format!("http://{addr}/"), shared, task })
    }

    /// Replaces every pod with one running `image`: start a new pod (surge 1), wait until it is
    /// ready, take one old pod out of the balancer; three times. `step` is one replacement.
    pub async fn roll(&self, image: &Path, step: Duration, say: &(dyn Fn(String) + Sync)) {
        for i in 1..=3 {
            let name = format!("web-{}-{i}", version(image));
            self.shared.pods.lock().expect("pods").push(Pod { name: name.clone(), image: image.to_path_buf(), ready: false });
            tokio::time::sleep(step / 2).await;
            let old = {
                let mut pods = self.shared.pods.lock().expect("pods");
                if let Some(p) = pods.iter_mut().find(|p| p.name == name) {
                    p.ready = true;
                }
                let old = pods.iter().position(|p| p.image != image).map(|at| pods.remove(at).name);
                old.unwrap_or_default()
            };
            say(format!("rollout: {name} ready, {old} terminated"));
            tokio::time::sleep(step / 2).await;
        }
    }
}

/// `v1` for `…/images/v1`.
fn version(image: &Path) -> String {
    image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Shared {
    /// The next ready pod answers (round robin).
    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let pod = {
            let pods = self.pods.lock().expect("pods");
            let ready: Vec<&Pod> = pods.iter().filter(|p| p.ready).collect();
            ready[self.next.fetch_add(1, Ordering::Relaxed) % ready.len()].clone()
        };
        let path = req.uri().path();
        let rel = if path.ends_with('/') { format!("{path}index.html") } else { path.to_string() };
        let rel = rel.trim_start_matches('/');
        if rel.split('/').any(|s| s == ".." || s == ".deskew") {
            return reply(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found"), &pod);
        }
        let root = match &self.store {
            Some(store) if rel.starts_with("assets/") => store.as_path(),
            _ => pod.image.as_path(),
        };
        match std::fs::read(root.join(rel)) {
            Ok(body) => reply(StatusCode::OK, &deskew_core::mime::content_type(rel), body.into(), &pod),
            Err(_) => reply(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found"), &pod),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: Bytes, pod: &Pod) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("x-pod", &pod.name)
        .body(Full::new(body))
        .expect("a valid response")
}
