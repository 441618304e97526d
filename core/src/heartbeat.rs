//! Publish heartbeats: `.deskew/publishing/<release>/<token>.json`, written before a publish's
//! pending record and renewed while it works, so a gc can tell a publish at work from one that
//! died, whatever `--grace` is and however long ago the release was first attempted.
//!
//! A pending release is live while one of its heartbeats has not lapsed (its `expires` plus the
//! store's clock-skew allowance is still ahead of the reader's clock). A gc keeps every file a
//! live release references, and the release itself for `--grace` after its last heartbeat.

use crate::retention::Liveness;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::key::Key;
use crate::layout;
use crate::release::ReleaseId;
use crate::store::{Body, ObjectMeta, PutOptions, Store, StoreError};
use crate::time::Timestamp;

/// How long a heartbeat lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(60);

/// How often a publish renews its heartbeat.
pub const RENEW_EVERY: Duration = Duration::from_secs(15);

/// What a heartbeat file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatBody {
    /// The release being published.
    pub release: ReleaseId,
    /// Who publishes it, for messages.
    pub holder: String,
    /// When this publish started.
    pub started: Timestamp,
    /// When it lapses unless renewed (the publisher's clock).
    pub expires: Timestamp,
    /// The publishing process, as its machine can check it ([`Host::process`]): a heartbeat
    /// whose publisher is known to have ended counts as lapsed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

/// A heartbeat found in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundHeartbeat {
    /// Where it is.
    pub key: Key,
    /// What it says; `None` if it is unreadable (a crashed write, a foreign file).
    pub body: Option<HeartbeatBody>,
    /// The reader's clock just before it asked for it. A heartbeat is judged at this time, not
    /// later: one that was live when read may have been renewed since.
    pub read_at: Timestamp,
    /// Whether the reader's machine knows its publisher has ended.
    pub publisher_dead: bool,
}

impl FoundHeartbeat {
    /// Whether it had lapsed, by more than `extra`, when it was read. A publisher known to have
    /// ended counts as lapsed at its last expiry: its release is not live, and the grace period
    /// still runs from there.
    pub fn lapsed(&self, skew: Duration, extra: Duration) -> bool {
        (self.publisher_dead && extra.is_zero()) || self.body.as_ref().is_none_or(|b| self.read_at > b.expires.plus(skew).plus(extra))
    }
}

/// A heartbeat this process keeps.
#[derive(Debug)]
pub struct Heartbeat {
    key: Key,
    body: HeartbeatBody,
    ttl: Duration,
}

fn encode(body: &HeartbeatBody) -> Body {
    Body::Bytes(Bytes::from(serde_json::to_vec(body).expect("heartbeat serialises")))
}

impl Heartbeat {
    /// Writes a first heartbeat for `release`.
    pub async fn start(store: &dyn Store, host: &dyn Host, release: &ReleaseId, ttl: Duration) -> Result<Heartbeat, StoreError> {
        let now = host.now();
        let body = HeartbeatBody { release: release.clone(), holder: host.holder(), started: now, expires: now.plus(ttl), process: host.process() };
        let hb = Heartbeat { key: layout::heartbeat_key(release, &host.unique()), body, ttl };
        store.put(&hb.key, encode(&hb.body), &PutOptions::default()).await?;
        Ok(hb)
    }

    /// Pushes the expiry forward.
    pub async fn renew(&mut self, store: &dyn Store, host: &dyn Host) -> Result<(), StoreError> {
        let body = HeartbeatBody { expires: host.now().plus(self.ttl), ..self.body.clone() };
        store.put(&self.key, encode(&body), &PutOptions::default()).await?;
        self.body = body;
        Ok(())
    }

    /// Removes the heartbeat: the publish is over.
    pub async fn stop(self, store: &dyn Store) -> Result<(), StoreError> {
        store.delete(&self.key).await
    }

    /// Runs `work`, renewing the heartbeat every `every` until it finishes. A failed renewal is
    /// logged and retried at the next tick: the worst it can cause is a gc that takes the publish
    /// for dead, which the publish's last step (under the lease) detects and repairs.
    pub async fn keep_alive<T>(&mut self, store: &dyn Store, host: &dyn Host, every: Duration, work: impl Future<Output = T>) -> T {
        let busy = AtomicBool::new(false);
        let renewing = async {
            loop {
                host.sleep(every).await;
                busy.store(true, Ordering::SeqCst);
                if let Err(e) = self.renew(store, host).await {
                    tracing::warn!("failed to renew the publish heartbeat: {}", crate::error_chain(&e));
                }
                busy.store(false, Ordering::SeqCst);
            }
        };
        let (work, renewing) = (std::pin::pin!(work), std::pin::pin!(renewing));
        match futures::future::select(work, renewing).await {
            futures::future::Either::Left((out, mut renewing)) => {
                // A renewal in flight must land before the caller removes the heartbeat, or it
                // would write it back after the removal.
                futures::future::poll_fn(|cx| {
                    if !busy.load(Ordering::SeqCst) {
                        return Poll::Ready(());
                    }
                    let _ = renewing.as_mut().poll(cx);
                    if busy.load(Ordering::SeqCst) { Poll::Pending } else { Poll::Ready(()) }
                })
                .await;
                out
            }
            futures::future::Either::Right(_) => unreachable!("the renewal loop never ends"),
        }
    }
}

/// Every heartbeat in the store.
pub async fn read_all(store: &dyn Store, host: &dyn Host) -> Result<Vec<FoundHeartbeat>, StoreError> {
    let listing = store.list(Some(&layout::publishing_dir())).await?;
    read_listed(store, host, &listing.objects).await
}

/// Reads the heartbeats `listing` shows: the entries under the heartbeats folder of a listing
/// made by the caller (gc lists the whole store once, and takes the heartbeats from it).
pub async fn read_listed(store: &dyn Store, host: &dyn Host, listing: &[ObjectMeta]) -> Result<Vec<FoundHeartbeat>, StoreError> {
    let dir = layout::publishing_dir();
    let mut out = Vec::new();
    for obj in listing.iter().filter(|o| o.key.is_under(&dir)).cloned() {
        if layout::is_temp(&obj.key) {
            continue;
        }
        let read_at = host.now();
        let body = match store.get(&obj.key).await {
            Ok(bytes) => serde_json::from_slice::<HeartbeatBody>(&bytes).ok(),
            Err(e) if e.is_not_found() => continue, // its publish finished meanwhile
            Err(e) => return Err(e),
        };
        let publisher_dead = body.as_ref().and_then(|b| b.process.as_deref()).is_some_and(|p| host.is_dead(p));
        out.push(FoundHeartbeat { key: obj.key, body, read_at, publisher_dead });
    }
    Ok(out)
}

/// Which releases have a publish at work, judged from `heartbeats` (each at the time it was
/// read): `live` ones had a heartbeat that had not lapsed; `recent` ones one that had not lapsed
/// by more than `grace`.
pub fn liveness(heartbeats: &[FoundHeartbeat], skew: Duration, grace: Duration) -> Liveness {
    let mut out = Liveness::default();
    for hb in heartbeats {
        let Some(b) = &hb.body else { continue };
        if !hb.lapsed(skew, Duration::ZERO) {
            out.live.insert(b.release.clone());
        }
        if !hb.lapsed(skew, grace) {
            out.recent.insert(b.release.clone());
        }
    }
    out
}
