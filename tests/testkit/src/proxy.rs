//! A reverse proxy for fault tests, in front of a real S3 server: it can answer `503 SlowDown`
//! to the next N requests (throttling), stand in for a server that accepts `If-None-Match: *` but
//! overwrites anyway, answer `502` while its upstream is down, serve TLS with a test certificate,
//! and count what passed. Like AWS S3, it refuses a PUT whose body does not match the sha256 its
//! `x-amz-content-sha256` header signed (SeaweedFS does not check it). Requests it forwards keep
//! their `Host` header, so SigV4 signatures stay valid.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the proxy does to the traffic, changeable while it runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer this many next requests with 503 SlowDown.
    pub fail_next: AtomicUsize,
    /// Answer PUTs carrying `If-None-Match` with 200 without forwarding them: a server that
    /// "accepts" conditional writes and overwrites anyway.
    pub ignore_conditional_puts: AtomicBool,
    /// Delay every forwarded PUT by this many milliseconds (a slow link).
    pub put_delay_ms: std::sync::atomic::AtomicU64,
    /// Requests received.
    pub requests: AtomicUsize,
    /// Requests answered with an injected 503.
    pub throttled: AtomicUsize,
    /// PUT requests forwarded.
    pub puts: AtomicUsize,
    /// PUTs whose signed payload hash was a sha256 (not `UNSIGNED-PAYLOAD`) and matched the body.
    pub payloads_checked: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT` or `https://…`.
    pub url: String,
    /// The knobs and counters.
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = Full<Bytes>;

impl FaultProxy {
    /// Starts a plain-HTTP proxy to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_inner(upstream, None).await
    }

    /// Starts an HTTPS proxy to `upstream`, with `cert_pem`/`key_pem` as its certificate.
    pub async fn start_tls(upstream: &str, cert_pem: &[u8], key_pem: &[u8]) -> FaultProxy {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_inner(upstream, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_inner(upstream: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> FaultProxy {
        let is_tls = tls.is_some();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let faults = Arc::new(Faults::default());
        let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let state = (faults.clone(), client, upstream);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        FaultProxy { url: format!("{}://{addr}", if is_tls { "https" } else { "http" }), faults, task }
    }
}

/// An S3 error response, as the server would send it.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>");
    Response::builder().status(status).header("content-type", "application/xml").body(Full::new(Bytes::from(xml))).unwrap()
}

async fn handle(
    (faults, client, upstream): (Arc<Faults>, Client<HttpConnector, Body>, Arc<str>),
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    faults.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let throttle = faults.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if throttle {
        faults.throttled.fetch_add(1, Ordering::SeqCst);
        return Ok(s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", "Please reduce your request rate."));
    }
    if parts.method == hyper::Method::PUT && parts.headers.contains_key("if-none-match") && faults.ignore_conditional_puts.load(Ordering::SeqCst) {
        return Ok(Response::builder().status(StatusCode::OK).header("etag", "\"0\"").body(Full::new(Bytes::new())).unwrap());
    }
    if parts.method == hyper::Method::PUT {
        let signed = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if signed.len() == 64 && signed.bytes().all(|b| b.is_ascii_hexdigit()) {
            if !signed.eq_ignore_ascii_case(&deskew_core::digest::sha256_hex(&body)) {
                let why = "The provided 'x-amz-content-sha256' header does not match what was computed.";
                return Ok(s3_error(StatusCode::BAD_REQUEST, "XAmzContentSHA256Mismatch", why));
            }
            faults.payloads_checked.fetch_add(1, Ordering::SeqCst);
        }
        faults.puts.fetch_add(1, Ordering::SeqCst);
        let delay = faults.put_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
    }
    let uri = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut out = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let out = out.body(Full::new(body)).unwrap();
    match client.request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(e) => Ok(Response::builder().status(StatusCode::BAD_GATEWAY).body(Full::new(Bytes::from(format!("upstream: {e}")))).unwrap()),
    }
}
