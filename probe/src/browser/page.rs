//! One page load in a clean tab (`tab.rs`) with the cache disabled: navigation, the load event,
//! network idle, then client-side navigations to each `--visit` path.
//!
//! The browser's own implicit `/favicon.ico` request (made whether or not the page declares an
//! icon) is not the page's and is ignored; a declared icon is checked like any resource.
//! A load fails when a response has status >= 400, a request fails (`Network.loadingFailed`,
//! except requests blocked by the client or cancelled by the page), an exception is thrown or
//! an error is logged to the console (`ChunkLoadError`, "Failed to fetch dynamically imported
//! module"), or the page does not reach idle in time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cdp::{CdpError, Connection, Event};
use super::tab::Tab;
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
    /// Scripts that set the `localStorage` entries of each origin before the page's own run.
    pub fn storage_scripts(&self) -> Vec<String> {
        self.local_storage
            .iter()
            .map(|(origin, items)| {
                let sets: String = items.iter().map(|(k, v)| format!("localStorage.setItem({}, {});", json!(k), json!(v))).collect();
                format!("if (location.origin === {}) {{ try {{ {sets} }} catch (e) {{}} }}", json!(origin))
            })
            .collect()
    }
}

impl Tracker {
    fn new(epoch: Instant) -> Tracker {
        Tracker {
            ignored: HashSet::new(),
            in_flight: HashSet::new(),
            urls: HashMap::new(),
            document_request: None,
            last_activity: Instant::now(),
            loaded: false,
            requests: 0,
            epoch,
            origins: BTreeSet::new(),
            multiplexed: false,
        }
    }
}

/// What a load leaves for the tab it ran in.
pub struct Outcome {
    /// The load.
    pub sample: LoadSample,
    /// Every origin it requested from: the storage to clear before the tab's next load.
    pub origins: BTreeSet<String>,
    /// Whether the tab may serve another load: the load passed and used no multiplexed
    /// protocol (HTTP/2, HTTP/3), whose connections `Connection: close` does not end.
    pub reusable: bool,
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
    /// Origins requested from.
    origins: BTreeSet<String>,
    /// A response came over HTTP/2 or HTTP/3.
    multiplexed: bool,
}

/// Makes one load of `url` in `tab`. Protocol errors other than a closed connection become
/// failures; a closed connection (the browser died) is returned as an error so the caller
/// restarts it. Failure times count from `epoch`, the probe's start.
pub async fn load(conn: &Connection, tab: &mut Tab, url: &str, opts: &PageOptions, started: Duration, epoch: Instant) -> Result<Outcome, CdpError> {
    let t0 = Instant::now();
    let session = tab.session().map(str::to_string);
    let s = session.as_deref();
    let mut sample = LoadSample { started, ..LoadSample::default() };
    if !opts.cookies.is_empty() {
        conn.call(s, "Network.setCookies", json!({ "cookies": opts.cookies })).await?;
    }
    while tab.events.try_recv().is_ok() {}
    let mut t = Tracker::new(epoch);
    let nav = conn.call(s, "Page.navigate", json!({ "url": url })).await?;
    if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
        sample.failures.push(Failure { url: url.into(), cause: Cause::Network { message: err.into() }, owner: None, at: epoch.elapsed() });
    } else {
        wait_idle(conn, &mut tab.events, &mut t, &mut sample, opts, true).await?;
        for visit in &opts.visits {
            let script = if visit.starts_with('#') {
                format!("location.hash = {};", json!(visit))
            } else {
                format!("history.pushState({{}}, '', {}); dispatchEvent(new PopStateEvent('popstate', {{ state: {{}} }}));", json!(visit))
            };
            t.last_activity = Instant::now();
            let r = conn.call(s, "Runtime.evaluate", json!({ "expression": script })).await?;
            if let Some(ex) = r.get("exceptionDetails") {
                sample.failures.push(Failure {
                    url: format!("{url} (visit {visit})"),
                    cause: Cause::Exception { message: exception_text(ex) },
                    owner: None,
                    at: epoch.elapsed(),
                });
            }
            wait_idle(conn, &mut tab.events, &mut t, &mut sample, opts, false).await?;
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
    tab.loads += 1;
    sample.requests = t.requests;
    sample.duration = t0.elapsed();
    let reusable = sample.failures.is_empty() && !t.multiplexed;
    Ok(Outcome { sample, origins: t.origins, reusable })
}

async fn wait_idle(
    conn: &Connection,
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
            sample.failures.push(Failure {
                url: t.urls.values().next().cloned().unwrap_or_default(),
                cause: Cause::Timeout,
                owner: None,
                at: t.epoch.elapsed(),
            });
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
    }
}

fn handle(ev: Event, t: &mut Tracker, sample: &mut LoadSample) {
    let p = &ev.params;
    let id = p["requestId"].as_str().unwrap_or_default().to_string();
    // Network events of requests this load did not make (the last load's, ignored ones) are not its.
    if ev.method.starts_with("Network.") && ev.method != "Network.requestWillBeSent" && (t.ignored.contains(&id) || !t.urls.contains_key(&id)) {
        return;
    }
    match ev.method.as_str() {
        "Network.requestWillBeSent" => {
            let url = p["request"]["url"].as_str().unwrap_or_default().to_string();
            let implicit_icon =
                p["initiator"]["type"] == "other" && p["type"] == "Other" && url.split(['?', '#']).next().unwrap_or("").ends_with("/favicon.ico");
            if url.starts_with("data:") || implicit_icon {
                t.ignored.insert(id);
                return;
            }
            t.requests += 1;
            t.last_activity = Instant::now();
            if let Ok(u) = url::Url::parse(&url) {
                if u.origin().is_tuple() {
                    t.origins.insert(u.origin().ascii_serialization());
                }
            }
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
            let protocol = p["response"]["protocol"].as_str().unwrap_or_default();
            if protocol.starts_with("h2") || protocol.starts_with("h3") || protocol.starts_with("quic") {
                t.multiplexed = true;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        Tracker::new(Instant::now())
    }

    fn ev(method: &str, params: Value) -> Event {
        Event { method: method.into(), params }
    }

    fn sent(id: &str, url: &str) -> Event {
        ev("Network.requestWillBeSent", json!({ "requestId": id, "request": { "url": url }, "type": "Script", "initiator": { "type": "script" } }))
    }

    fn response(id: &str, status: u16, protocol: &str) -> Event {
        ev("Network.responseReceived", json!({ "requestId": id, "response": { "url": "http://a.test/x.js", "status": status, "protocol": protocol } }))
    }

    /// Events of a request the load did not make (the last load's in a reused tab) are not its.
    #[test]
    fn another_loads_requests_are_not_this_loads_failures() {
        let (mut t, mut s) = (tracker(), LoadSample::default());
        handle(response("old-1", 404, "http/1.1"), &mut t, &mut s);
        handle(ev("Network.loadingFailed", json!({ "requestId": "old-2", "errorText": "net::ERR_ABORTED" })), &mut t, &mut s);
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        handle(sent("1", "http://a.test/x.js"), &mut t, &mut s);
        handle(response("1", 404, "http/1.1"), &mut t, &mut s);
        assert_eq!(s.failures.len(), 1);
        assert_eq!(t.origins.iter().collect::<Vec<_>>(), ["http://a.test"]);
    }

    /// A tab whose load used HTTP/2 or HTTP/3 keeps connections `Connection: close` cannot end.
    #[test]
    fn multiplexed_protocols_are_noticed() {
        for (protocol, multiplexed) in [("http/1.1", false), ("h2", true), ("h3", true), ("h3-29", true), ("quic", true)] {
            let (mut t, mut s) = (tracker(), LoadSample::default());
            handle(sent("1", "https://a.test/x.js"), &mut t, &mut s);
            handle(response("1", 200, protocol), &mut t, &mut s);
            assert_eq!(t.multiplexed, multiplexed, "{protocol}");
        }
    }
}
