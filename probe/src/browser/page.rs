//! One page load in the browser: a fresh browser context with the cache disabled, navigation,
//! the load event, network idle, then client-side navigations to each `--visit` path.
//!
//! The browser's own implicit `/favicon.ico` request (made whether or not the page declares an
//! icon) is not the page's and is ignored; a declared icon is checked like any resource.
//! A load fails when a response has status >= 400, a request fails (`Network.loadingFailed`,
//! except requests blocked by the client or cancelled by the page), an exception is thrown or
//! an error is logged to the console (`ChunkLoadError`, "Failed to fetch dynamically imported
//! module"), or the page does not reach idle in time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cdp::{CdpError, Connection, Event};
use crate::sample::{Cause, Failure, LoadSample};

/// How a browser load runs.
#[derive(Clone, Debug, Default)]
pub struct PageOptions {
    /// Quiet time without requests in flight that counts as idle.
    pub idle: Duration,
    /// Time allowed to reach idle, per navigation.
    pub timeout: Duration,
    /// Client-side navigations after the first load: `/path` (history API) or `#/path` (hash).
    pub visits: Vec<String>,
    /// Extra request headers (`-H`, basic credentials), sent with every request.
    pub headers: Vec<(String, String)>,
    /// Cookies to set before navigating, as `Network.setCookies` takes them.
    pub cookies: Vec<Value>,
    /// `localStorage` entries per origin, set before the page's scripts run.
    pub local_storage: Vec<(String, Vec<(String, String)>)>,
}

impl PageOptions {
    /// Applies headers, cookies and storage in a fresh context, before navigating.
    async fn prepare(&self, conn: &Connection, s: Option<&str>) -> Result<(), CdpError> {
        if !self.headers.is_empty() {
            let headers: serde_json::Map<String, Value> = self.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            conn.call(s, "Network.setExtraHTTPHeaders", json!({ "headers": headers })).await?;
        }
        if !self.cookies.is_empty() {
            conn.call(s, "Network.setCookies", json!({ "cookies": self.cookies })).await?;
        }
        for (origin, items) in &self.local_storage {
            let sets: String = items.iter().map(|(k, v)| format!("localStorage.setItem({}, {});", json!(k), json!(v))).collect();
            let source = format!("if (location.origin === {}) {{ try {{ {sets} }} catch (e) {{}} }}", json!(origin));
            conn.call(s, "Page.addScriptToEvaluateOnNewDocument", json!({ "source": source })).await?;
        }
        Ok(())
    }
}

struct Tracker {
    /// Requests the browser makes on its own (the implicit `/favicon.ico`), not the page.
    ignored: HashSet<String>,
    in_flight: HashSet<String>,
    urls: HashMap<String, String>,
    document_request: Option<String>,
    last_activity: Instant,
    loaded: bool,
    requests: usize,
    /// The probe's start: failure times count from it.
    epoch: Instant,
}

/// Makes one load of `url`. Protocol errors other than a closed connection become failures;
/// a closed connection (the browser died) is returned as an error so the caller restarts it.
/// Failure times count from `epoch`, the probe's start.
pub async fn load(conn: &Connection, url: &str, opts: &PageOptions, started: Duration, epoch: Instant) -> Result<LoadSample, CdpError> {
    let t0 = Instant::now();
    let ctx = conn.call(None, "Target.createBrowserContext", json!({ "disposeOnDetach": true })).await?;
    let ctx_id = ctx["browserContextId"].as_str().unwrap_or_default().to_string();
    let result = load_in_context(conn, url, opts, started, &ctx_id, epoch).await;
    let _ = conn.call(None, "Target.disposeBrowserContext", json!({ "browserContextId": ctx_id })).await;
    let mut sample = result?;
    sample.duration = t0.elapsed();
    Ok(sample)
}

async fn load_in_context(conn: &Connection, url: &str, opts: &PageOptions, started: Duration, ctx_id: &str, epoch: Instant) -> Result<LoadSample, CdpError> {
    let target = conn.call(None, "Target.createTarget", json!({ "url": "about:blank", "browserContextId": ctx_id })).await?;
    let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
    let attached = conn.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await?;
    let session = attached["sessionId"].as_str().unwrap_or_default().to_string();
    let mut events = conn.subscribe(&session);
    let s = Some(session.as_str());
    let mut sample = LoadSample { started, ..LoadSample::default() };
    let setup = async {
        conn.call(s, "Network.enable", json!({})).await?;
        conn.call(s, "Network.setCacheDisabled", json!({ "cacheDisabled": true })).await?;
        conn.call(s, "Page.enable", json!({})).await?;
        conn.call(s, "Runtime.enable", json!({})).await?;
        conn.call(s, "Log.enable", json!({})).await?;
        opts.prepare(conn, s).await?;
        Ok::<(), CdpError>(())
    };
    setup.await?;
    let mut t = Tracker { ignored: HashSet::new(), in_flight: HashSet::new(), urls: HashMap::new(), document_request: None, last_activity: Instant::now(), loaded: false, requests: 0, epoch };
    let nav = conn.call(s, "Page.navigate", json!({ "url": url })).await?;
    if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
        sample.failures.push(Failure { url: url.into(), cause: Cause::Network { message: err.into() }, owner: None, at: epoch.elapsed() });
    } else {
        wait_idle(conn, s, &mut events, &mut t, &mut sample, opts, true).await?;
        for visit in &opts.visits {
            let script = if visit.starts_with('#') {
                format!("location.hash = {};", json!(visit))
            } else {
                format!("history.pushState({{}}, '', {}); dispatchEvent(new PopStateEvent('popstate', {{ state: {{}} }}));", json!(visit))
            };
            t.last_activity = Instant::now();
            let r = conn.call(s, "Runtime.evaluate", json!({ "expression": script })).await?;
            if let Some(ex) = r.get("exceptionDetails") {
                sample.failures.push(Failure { url: format!("{url} (visit {visit})"), cause: Cause::Exception { message: exception_text(ex) }, owner: None, at: epoch.elapsed() });
            }
            wait_idle(conn, s, &mut events, &mut t, &mut sample, opts, false).await?;
        }
    }
    // The page's own document, for release matching.
    if let Some(req) = &t.document_request {
        if let Ok(body) = conn.call(s, "Network.getResponseBody", json!({ "requestId": req })).await {
            let text = body["body"].as_str().unwrap_or_default();
            let bytes = if body["base64Encoded"].as_bool() == Some(true) { decode_base64(text) } else { text.as_bytes().to_vec() };
            sample.page_sha256 = Some(deskew_core::manifest::sha256_hex(&bytes));
        }
    }
    conn.unsubscribe(&session);
    let _ = conn.call(None, "Target.closeTarget", json!({ "targetId": target_id })).await;
    sample.requests = t.requests;
    Ok(sample)
}

async fn wait_idle(
    conn: &Connection,
    session: Option<&str>,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    t: &mut Tracker,
    sample: &mut LoadSample,
    opts: &PageOptions,
    need_load: bool,
) -> Result<(), CdpError> {
    let deadline = Instant::now() + opts.timeout;
    loop {
        let idle_for = t.last_activity.elapsed();
        if (t.loaded || !need_load) && t.in_flight.is_empty() && idle_for >= opts.idle {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let what = if need_load && !t.loaded { "the load event" } else { "network idle" };
            sample.failures.push(Failure { url: t.urls.values().next().cloned().unwrap_or_default(), cause: Cause::Timeout, owner: None, at: t.epoch.elapsed() });
            tracing::debug!("page did not reach {what} within {:?}", opts.timeout);
            return Ok(());
        }
        let wait = opts.idle.saturating_sub(idle_for).max(Duration::from_millis(10)).min(deadline - Instant::now());
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(ev)) => handle(ev, t, sample),
            Ok(None) => return Err(CdpError::Closed),
            Err(_) => {
                if conn.is_closed() {
                    return Err(CdpError::Closed);
                }
            }
        }
        let _ = session;
    }
}

fn handle(ev: Event, t: &mut Tracker, sample: &mut LoadSample) {
    let p = &ev.params;
    let id = p["requestId"].as_str().unwrap_or_default().to_string();
    if t.ignored.contains(&id) && ev.method != "Network.requestWillBeSent" {
        return;
    }
    match ev.method.as_str() {
        "Network.requestWillBeSent" => {
            let url = p["request"]["url"].as_str().unwrap_or_default().to_string();
            let implicit_icon = p["initiator"]["type"] == "other" && p["type"] == "Other" && url.split(['?', '#']).next().unwrap_or("").ends_with("/favicon.ico");
            if url.starts_with("data:") || implicit_icon {
                t.ignored.insert(id);
                return;
            }
            t.requests += 1;
            t.last_activity = Instant::now();
            if p["type"] == "Document" && t.document_request.is_none() {
                t.document_request = Some(id.clone());
            }
            t.in_flight.insert(id.clone());
            t.urls.insert(id, url);
        }
        "Network.responseReceived" => {
            t.last_activity = Instant::now();
            let status = p["response"]["status"].as_u64().unwrap_or(0) as u16;
            let url = p["response"]["url"].as_str().unwrap_or_default().to_string();
            if status >= 400 {
                sample.failures.push(Failure { url, cause: Cause::Status { status }, owner: None, at: t.epoch.elapsed() });
            }
        }
        "Network.loadingFinished" => {
            t.last_activity = Instant::now();
            t.in_flight.remove(&id);
        }
        "Network.loadingFailed" => {
            t.last_activity = Instant::now();
            t.in_flight.remove(&id);
            let canceled = p["canceled"].as_bool() == Some(true);
            let blocked = p.get("blockedReason").is_some_and(|b| !b.is_null());
            if !canceled && !blocked {
                let url = t.urls.get(&id).cloned().unwrap_or_default();
                let message = p["errorText"].as_str().unwrap_or("failed").to_string();
                sample.failures.push(Failure { url, cause: Cause::Network { message }, owner: None, at: t.epoch.elapsed() });
            }
        }
        "Runtime.exceptionThrown" => {
            let details = &p["exceptionDetails"];
            let url = details["url"].as_str().unwrap_or_default().to_string();
            sample.failures.push(Failure { url, cause: Cause::Exception { message: exception_text(details) }, owner: None, at: t.epoch.elapsed() });
        }
        "Runtime.consoleAPICalled" if p["type"] == "error" => {
            let message = p["args"]
                .as_array()
                .map(|args| {
                    args.iter()
                        .map(|a| a["value"].as_str().map(str::to_string).or_else(|| a["description"].as_str().map(str::to_string)).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let url = p["stackTrace"]["callFrames"][0]["url"].as_str().unwrap_or_default().to_string();
            sample.failures.push(Failure { url, cause: Cause::Console { message }, owner: None, at: t.epoch.elapsed() });
        }
        // Errors the browser itself logs (a module script refused for its MIME type, say);
        // network errors are already counted from the Network domain.
        "Log.entryAdded" if p["entry"]["level"] == "error" && p["entry"]["source"] != "network" => {
            let url = p["entry"]["url"].as_str().unwrap_or_default().to_string();
            let message = p["entry"]["text"].as_str().unwrap_or_default().to_string();
            sample.failures.push(Failure { url, cause: Cause::Console { message }, owner: None, at: t.epoch.elapsed() });
        }
        "Page.loadEventFired" => {
            t.loaded = true;
            t.last_activity = Instant::now();
        }
        _ => {}
    }
}

fn exception_text(details: &Value) -> String {
    details["exception"]["description"]
        .as_str()
        .or_else(|| details["text"].as_str())
        .unwrap_or("uncaught exception")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn decode_base64(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let Some(v) = T.iter().position(|&x| x == c) else { continue };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}
