//! A tab kept for many page loads, and made clean between them.
//!
//! Opening a tab (a browser context, a window, a renderer process) costs the browser more than the
//! page load itself: on two cores it made browser mode slower than a plain Puppeteer script. So a
//! tab serves load after load, and between loads it is made what a fresh one is:
//! - it goes to `about:blank`, so no script or document of the last load lives on (the
//!   back/forward cache is off, see `launch::FLAGS`);
//! - every origin the last load touched has its storage cleared (cookies, local
//!   storage, IndexedDB, cache storage, service workers), and all cookies go; the page's session
//!   storage is cleared by the page before it is left;
//! - the cache stays disabled, so every resource is fetched again;
//! - every request carries `Connection: close`, so no connection outlives its request and the
//!   next load is balanced afresh, as a new visitor is (a pool of kept-alive connections would pin
//!   a tab to a few pods). HTTP/2 and HTTP/3 ignore that header, so a tab that saw one of them is
//!   not reused: the next load gets a new browser context with its own connections.
//!
//! A tab whose load failed, timed out or hit a protocol error is not reused either.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::cdp::{CdpError, Connection, Event};
use super::page::PageOptions;

/// An open tab in its own browser context, attached with a flattened session.
pub struct Tab {
    context: String,
    session: String,
    /// The session's events.
    pub events: UnboundedReceiver<Event>,
    /// Loads made in this tab.
    pub loads: u64,
}

impl Tab {
    /// Opens a tab in a new browser context, its domains enabled and the run's headers and
    /// storage scripts set.
    pub async fn open(conn: &Connection, opts: &PageOptions) -> Result<Tab, CdpError> {
        let ctx = conn.call(None, "Target.createBrowserContext", json!({ "disposeOnDetach": true })).await?;
        let context = ctx["browserContextId"].as_str().unwrap_or_default().to_string();
        let opened = async {
            let target = conn.call(None, "Target.createTarget", json!({ "url": "about:blank", "browserContextId": context })).await?;
            let attached = conn.call(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true })).await?;
            let session = attached["sessionId"].as_str().unwrap_or_default().to_string();
            let events = conn.subscribe(&session);
            let s = Some(session.as_str());
            // Sent at once: the browser answers them in order, one round trip for all.
            futures::future::try_join_all([
                conn.call(s, "Network.enable", json!({})),
                conn.call(s, "Network.setCacheDisabled", json!({ "cacheDisabled": true })),
                conn.call(s, "Network.setExtraHTTPHeaders", json!({ "headers": headers(opts) })),
                conn.call(s, "Page.enable", json!({})),
                conn.call(s, "Runtime.enable", json!({})),
                conn.call(s, "Log.enable", json!({})),
            ])
            .await?;
            futures::future::try_join_all(
                opts.storage_scripts().into_iter().map(|source| conn.call(s, "Page.addScriptToEvaluateOnNewDocument", json!({ "source": source }))),
            )
            .await?;
            Ok::<_, CdpError>(Tab { context: context.clone(), session, events, loads: 0 })
        };
        match opened.await {
            Ok(tab) => Ok(tab),
            Err(e) => {
                let _ = conn.call(None, "Target.disposeBrowserContext", json!({ "browserContextId": context })).await;
                Err(e)
            }
        }
    }

    /// The session id, for commands to this tab.
    pub fn session(&self) -> Option<&str> {
        Some(&self.session)
    }

    /// Makes the tab clean for the next load: `about:blank`, then the storage of every origin in
    /// `origins` and all cookies cleared, then the events of the last load dropped.
    pub async fn reset(&mut self, conn: &Connection, origins: &BTreeSet<String>) -> Result<(), CdpError> {
        let session = self.session.clone();
        let s = Some(session.as_str());
        // Session storage belongs to the tab, not the origin's storage: cleared by the page itself.
        conn.call(s, "Runtime.evaluate", json!({ "expression": "try { sessionStorage.clear() } catch (e) {}" })).await?;
        conn.call(s, "Page.navigate", json!({ "url": "about:blank" })).await?;
        // Wait for the blank page's load event, so nothing of the last document is still running.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(ev) = self.events.recv().await {
                if ev.method == "Page.loadEventFired" {
                    break;
                }
            }
        })
        .await;
        let mut calls = vec![conn.call(s, "Network.clearBrowserCookies", json!({}))];
        for origin in origins {
            calls.push(conn.call(s, "Storage.clearDataForOrigin", json!({ "origin": origin, "storageTypes": "all" })));
        }
        futures::future::try_join_all(calls).await?;
        while self.events.try_recv().is_ok() {}
        // The renderer serves load after load: without a full garbage collection between them it
        // grew to twice a fresh tab's memory. Not waited for: it runs while the next page is fetched.
        conn.send(s, "HeapProfiler.collectGarbage", json!({}));
        Ok(())
    }

    /// Closes the tab and its browser context.
    pub async fn close(self, conn: &Connection) {
        conn.unsubscribe(&self.session);
        let _ = conn.call(None, "Target.disposeBrowserContext", json!({ "browserContextId": self.context })).await;
    }
}

/// The run's extra headers, with `Connection: close` unless the user set a `Connection` header.
fn headers(opts: &PageOptions) -> serde_json::Map<String, Value> {
    let mut headers: serde_json::Map<String, Value> = opts.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    if !opts.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        headers.insert("Connection".into(), json!("close"));
    }
    headers
}
