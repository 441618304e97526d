//! A minimal Chrome DevTools Protocol client: commands with ids and their responses, events
//! routed by session (flattened target sessions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// A protocol event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `Network.responseReceived` and so on.
    pub method: String,
    /// Its parameters.
    pub params: Value,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    /// The connection to the browser is gone (it crashed or was stopped).
    #[error("the browser connection closed")]
    Closed,
    /// The browser answered with an error.
    #[error("{method}: {message}")]
    Protocol {
        /// The command.
        method: String,
        /// The browser's message.
        message: String,
    },
    /// Connecting failed.
    #[error("failed to connect to the browser at {url}: {message}")]
    Connect {
        /// The WebSocket URL.
        url: String,
        /// Why.
        message: String,
    },
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;
type Sessions = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>;

/// A connection to the browser.
#[derive(Clone)]
pub struct Connection {
    out: mpsc::UnboundedSender<String>,
    next: Arc<AtomicU64>,
    pending: Pending,
    sessions: Sessions,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Connection {
    /// Connects to the browser's WebSocket debugger URL.
    pub async fn connect(url: &str) -> Result<Connection, CdpError> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| CdpError::Connect { url: url.into(), message: e.to_string() })?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<String>();
        let pending: Pending = Arc::default();
        let sessions: Sessions = Arc::default();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let (p, s, c) = (pending.clone(), sessions.clone(), closed.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    let result = match v.get("error") {
                        Some(e) => Err(e.get("message").and_then(Value::as_str).unwrap_or("error").to_string()),
                        None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    if let Some(tx) = p.lock().expect("pending lock").remove(&id) {
                        let _ = tx.send(result);
                    }
                } else if let Some(method) = v.get("method").and_then(Value::as_str) {
                    let session = v.get("sessionId").and_then(Value::as_str).unwrap_or("").to_string();
                    let event = Event { method: method.to_string(), params: v.get("params").cloned().unwrap_or(Value::Null) };
                    if let Some(tx) = s.lock().expect("sessions lock").get(&session) {
                        let _ = tx.send(event);
                    }
                }
            }
            c.store(true, Ordering::SeqCst);
            // Wake everyone waiting: the browser is gone.
            p.lock().expect("pending lock").clear();
            s.lock().expect("sessions lock").clear();
        });
        Ok(Connection { out, next: Arc::new(AtomicU64::new(1)), pending, sessions, closed })
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends a command (to a session, or the browser for `None`) and waits for its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, CdpError> {
        if self.is_closed() {
            return Err(CdpError::Closed);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        self.out.send(message(id, session, method, params)).map_err(|_| CdpError::Closed)?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(CdpError::Protocol { method: method.into(), message }),
            Err(_) => Err(CdpError::Closed),
        }
    }

    /// Sends a command without waiting for it: its answer, or its error, is dropped when it comes.
    /// For work the browser may do while the caller goes on.
    pub fn send(&self, session: Option<&str>, method: &str, params: Value) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = self.out.send(message(id, session, method, params));
    }

    /// Receives the events of `session` from now on.
    pub fn subscribe(&self, session: &str) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.sessions.lock().expect("sessions lock").insert(session.to_string(), tx);
        rx
    }

    /// Stops routing events of `session`.
    pub fn unsubscribe(&self, session: &str) {
        self.sessions.lock().expect("sessions lock").remove(session);
    }
}

fn message(id: u64, session: Option<&str>, method: &str, params: Value) -> String {
    let mut msg = json!({ "id": id, "method": method, "params": params });
    if let Some(s) = session {
        msg["sessionId"] = json!(s);
    }
    msg.to_string()
}
