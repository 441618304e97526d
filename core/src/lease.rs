//! The store lease: at most one actor at a time deletes files or changes a record's state (a gc
//! dropping releases, a publish marking its release complete).
//!
//! The lease is a chain of epochs, `.deskew/lease/<epoch>.json`, each written create-only. The
//! highest epoch is the lease's state. Taking, breaking, renewing and releasing all mean creating
//! the next epoch: of two actors that read epoch N and both try to write N+1, exactly one
//! succeeds, so taking over a lapsed lease and renewing one are atomic compare-and-swaps, with
//! nothing but create-only writes (`link(2)` on a directory, `If-None-Match: *` on S3). Older
//! epochs are deleted once a newer one exists, never the highest; after writing an epoch the
//! writer lists the chain and gives up if a higher epoch exists, which catches a writer that
//! slept through other actors' epochs and recreated a deleted one.
//!
//! Times are wall-clock times of the writer's host. A reader treats a lease as lapsed only
//! when its own clock is past `expires` plus the store's clock-skew allowance. A holder acts
//! only while more than [`OP_MARGIN`] of its lease is left, so a request it sends lands before
//! any other host can see the lease lapse, as long as requests land within that margin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::key::Key;
use crate::layout;
use crate::store::{Body, PutMode, PutOptions, Store, StoreError, WriteGuard};
use crate::time::Timestamp;

/// How long a lease lives unless renewed.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// The longest a request sent under the lease may take to land. A holder with less than this
/// left renews first, and stops if it cannot.
pub const OP_MARGIN: Duration = Duration::from_secs(20);

/// A holder renews once less than this is left: one guarded request may use up to
/// [`OP_MARGIN`], and more than [`OP_MARGIN`] must be left after it.
pub const RENEW_BELOW: Duration = Duration::from_secs(2 * OP_MARGIN.as_secs());

/// How often a waiter looks at the lease again.
pub const POLL: Duration = Duration::from_millis(500);

/// How often [`Lease::ensure`] also reads the stored chain, to stop a holder whose lease was
/// taken away by other means than lapsing: a holder wrongly judged dead, a lease deleted by hand.
pub const CONFIRM_EVERY: Duration = Duration::from_secs(1);

/// Who takes the lease, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// A gc deleting files.
    Gc,
    /// A publish marking its release complete.
    Publish,
}

/// Held or given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseState {
    /// Someone holds it until `expires`.
    Held,
    /// Its holder gave it back.
    Released,
}

/// One epoch of the lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBody {
    /// Its place in the chain.
    pub epoch: u64,
    /// Who holds it (host and pid), for messages.
    pub holder: String,
    /// The holder's token: tells its own epochs from others'.
    pub token: String,
    /// What it is held for.
    pub purpose: Purpose,
    /// Held or released.
    pub state: LeaseState,
    /// When it was taken.
    pub acquired: Timestamp,
    /// When it lapses unless renewed (the holder's clock).
    pub expires: Timestamp,
    /// The holding process, as its machine can check it ([`Host::process`]): a lease whose
    /// holder is known to have ended is free at once, without waiting for it to lapse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl LeaseBody {
    /// Whether `host` may take it over.
    pub fn is_free(&self, host: &dyn Host, skew: Duration) -> bool {
        self.state == LeaseState::Released || host.now() > self.expires.plus(skew) || self.process.as_deref().is_some_and(|p| host.is_dead(p))
    }

    /// When a reader may take it over.
    pub fn lapses_at(&self, skew: Duration) -> Timestamp {
        self.expires.plus(skew)
    }

    /// Whether no holder of the lease acted between `t` (a reader's clock) and now, this being
    /// the top epoch now and `before` the top epoch's number seen at `t`: any holder since
    /// would have written a higher epoch, so this one must be the epoch seen then, released
    /// (a holder releases after its last act), or have lapsed before `t` on any clock within the
    /// allowance (a released epoch's `expires` is when it was released).
    pub fn idle_since(&self, before: Option<u64>, t: Timestamp, skew: Duration) -> bool {
        (before == Some(self.epoch) && self.state == LeaseState::Released) || self.lapses_at(skew) < t
    }
}

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it.
    #[error("{store} is locked by a running {} on {holder} (lease epoch {epoch}); if that process died, the lock lapses at {lapses_at}", purpose_name(*.purpose))]
    Held {
        /// The store.
        store: String,
        /// The holder.
        holder: String,
        /// What for.
        purpose: Purpose,
        /// The epoch held.
        epoch: u64,
        /// When others may take it over.
        lapses_at: Timestamp,
    },
    /// The current epoch is not a lease.
    #[error("the lease `{key}` in {store} is unreadable; delete it if no gc or publish is running")]
    Corrupt {
        /// The store.
        store: String,
        /// The key.
        key: Key,
    },
    /// Our lease lapsed or was taken over while we worked.
    #[error("lost the lease on {store}{}; stopped before changing anything more", .by.as_ref().map(|b| format!(" to {b}")).unwrap_or_default())]
    Lost {
        /// The store.
        store: String,
        /// Who has it now, if known.
        by: Option<String>,
    },
    /// The store cannot do create-only writes, so a lease cannot be taken safely.
    #[error("{store} does not honour create-only writes (If-None-Match), so deskew cannot take its lease safely")]
    Unsupported {
        /// The store.
        store: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for LeaseError {
    fn from(e: StoreError) -> LeaseError {
        match e {
            StoreError::GuardFailed { store, .. } => LeaseError::Lost { store, by: None },
            e => LeaseError::Store(e),
        }
    }
}

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Gc => "gc",
        Purpose::Publish => "publish",
    }
}

/// How a lease is held on one store.
#[derive(Clone, Copy, Debug)]
pub struct LeaseConfig {
    /// Lifetime between renewals.
    pub ttl: Duration,
    /// The store's clock-skew allowance.
    pub skew: Duration,
    /// How often a waiter looks again.
    pub poll: Duration,
}

impl LeaseConfig {
    /// A lease of `ttl` on a store whose clock-skew allowance is `skew`.
    pub fn new(ttl: Duration, skew: Duration) -> LeaseConfig {
        LeaseConfig { ttl, skew, poll: POLL }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig::new(DEFAULT_TTL, crate::marker::DEFAULT_MAX_CLOCK_SKEW)
    }
}

fn encode(body: &LeaseBody) -> Body {
    Body::Bytes(encode_bytes(body))
}

fn encode_bytes(body: &LeaseBody) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(body).expect("lease serialises"))
}

/// The epochs present, sorted.
async fn epochs(store: &dyn Store) -> Result<Vec<u64>, StoreError> {
    let listing = store.list(Some(&layout::lease_dir())).await?;
    let mut out: Vec<u64> = listing.objects.iter().filter_map(|o| layout::lease_epoch(&o.key)).collect();
    out.sort_unstable();
    Ok(out)
}

async fn read_epoch(store: &dyn Store, epoch: u64) -> Result<Option<LeaseBody>, LeaseError> {
    let key = layout::lease_key(epoch);
    match store.get(&key).await {
        Ok(bytes) => match serde_json::from_slice::<LeaseBody>(&bytes) {
            Ok(b) if b.epoch == epoch => Ok(Some(b)),
            _ => Err(LeaseError::Corrupt { store: store.url().into(), key }),
        },
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The highest epoch's number (one listing, no read), if the lease was ever taken.
pub async fn top_epoch(store: &dyn Store) -> Result<Option<u64>, LeaseError> {
    Ok(epochs(store).await?.last().copied())
}

/// The current epoch of the lease, if any was ever taken.
pub async fn current(store: &dyn Store) -> Result<Option<LeaseBody>, LeaseError> {
    loop {
        let Some(&top) = epochs(store).await?.last() else { return Ok(None) };
        // An epoch is deleted only once a higher one exists: if it vanished, look again.
        if let Some(body) = read_epoch(store, top).await? {
            return Ok(Some(body));
        }
    }
}

/// Writes epoch `body.epoch` create-only. Returns the epoch as stored if it is ours: `body`, or,
/// when an earlier attempt of ours landed first (a retried request, a renewal cut short), that
/// attempt's body, whose expiry is the one other hosts see. `None` if another actor wrote it.
async fn write_epoch(store: &dyn Store, body: &LeaseBody) -> Result<Option<LeaseBody>, LeaseError> {
    let key = layout::lease_key(body.epoch);
    let opts = PutOptions { mode: PutMode::Create, content_type: Some("application/json".into()), ..PutOptions::default() };
    match store.put(&key, encode(body), &opts).await {
        Ok(()) => Ok(Some(body.clone())),
        Err(StoreError::AlreadyExists { .. }) => Ok(read_epoch(store, body.epoch).await?.filter(|b| b.token == body.token)),
        Err(e) => Err(e.into()),
    }
}

/// Older epochs are deleted once this many lie below the top. Only the highest epoch counts, so
/// the ones below are harmless leftovers; letting a few pile up spares a delete request on most
/// acquisitions (a chain this short still lists in one page).
const TIDY_AT: usize = 16;

/// After writing `epoch`: whether it is still the highest, and, if so, deletes the ones below
/// once [`TIDY_AT`] have piled up.
async fn confirm_and_tidy(store: &dyn Store, epoch: u64) -> Result<bool, LeaseError> {
    let all = epochs(store).await?;
    if all.last().is_some_and(|&top| top > epoch) {
        return Ok(false);
    }
    let old: Vec<Key> = all.into_iter().filter(|&e| e < epoch).map(layout::lease_key).collect();
    if old.len() >= TIDY_AT {
        // Tidying is best effort: a leftover old epoch is harmless.
        let _ = store.delete_many(&old, None).await;
    }
    Ok(true)
}

/// A lease we hold.
#[derive(Debug)]
pub struct Lease {
    body: LeaseBody,
    cfg: LeaseConfig,
    /// When the stored chain last showed our epoch on top.
    confirmed: Timestamp,
}

impl Lease {
    /// Takes the lease if it is free (never taken, released, or lapsed).
    pub async fn try_acquire(store: &dyn Store, host: &dyn Host, cfg: LeaseConfig, purpose: Purpose) -> Result<Lease, LeaseError> {
        if !store.capabilities().await?.create_only {
            return Err(LeaseError::Unsupported { store: store.url().into() });
        }
        let token = host.unique();
        loop {
            let now = host.now();
            let cur = current(store).await?;
            if let Some(c) = cur.as_ref().filter(|c| !c.is_free(host, cfg.skew)) {
                return Err(held(store, c, cfg.skew));
            }
            if let Some(c) = cur.as_ref().filter(|c| c.state == LeaseState::Held) {
                tracing::info!(holder = %c.holder, epoch = c.epoch, "taking over a lapsed lease");
            }
            let body = LeaseBody {
                epoch: cur.map_or(1, |c| c.epoch + 1),
                holder: host.holder(),
                token: token.clone(),
                purpose,
                state: LeaseState::Held,
                acquired: now,
                expires: now.plus(cfg.ttl),
                process: host.process(),
            };
            if let Some(stored) = write_epoch(store, &body).await? {
                if confirm_and_tidy(store, stored.epoch).await? {
                    return Ok(Lease { body: stored, cfg, confirmed: host.now() });
                }
            }
            // Another actor wrote that epoch or a later one first: look again.
        }
    }

    /// Takes the lease, waiting up to `max_wait` while someone else holds it; `waiting` is
    /// told who, each time the holder changes.
    pub async fn acquire(
        store: &dyn Store,
        host: &dyn Host,
        cfg: LeaseConfig,
        purpose: Purpose,
        max_wait: Duration,
        waiting: &(dyn Fn(&LeaseError) + Send + Sync),
    ) -> Result<Lease, LeaseError> {
        let start = host.now();
        let mut told: Option<u64> = None;
        loop {
            match Lease::try_acquire(store, host, cfg, purpose).await {
                Err(e @ LeaseError::Held { .. }) => {
                    if host.now().since(start) >= max_wait {
                        return Err(e);
                    }
                    if let LeaseError::Held { epoch, .. } = &e {
                        if told != Some(*epoch) {
                            told = Some(*epoch);
                            waiting(&e);
                        }
                    }
                    host.sleep(cfg.poll).await;
                }
                other => return other,
            }
        }
    }

    /// The epoch held.
    pub fn epoch(&self) -> u64 {
        self.body.epoch
    }

    /// Call right before each write the lease guards. Fails with [`LeaseError::Lost`] unless
    /// more than [`OP_MARGIN`] of the lease is left, so the guarded write lands before any other
    /// host may see the lease lapse; renews first when less than [`RENEW_BELOW`] is left.
    ///
    /// At most every [`CONFIRM_EVERY`] it also reads the chain: our epoch must still be the
    /// highest, with our token.
    pub async fn ensure(&mut self, store: &dyn Store, host: &dyn Host) -> Result<(), LeaseError> {
        if self.body.expires.since(host.now()) < RENEW_BELOW {
            self.renew(store, host).await?;
        } else if host.now().since(self.confirmed) >= CONFIRM_EVERY {
            self.confirm(store, host).await?;
        }
        self.check(store, host)
    }

    /// Reads the chain: fails with [`LeaseError::Lost`] unless our epoch is still on top, with
    /// our token. The listing alone tells when it states the MD5 of our epoch's bytes (S3's
    /// ETags); otherwise the top epoch is read.
    async fn confirm(&mut self, store: &dyn Store, host: &dyn Host) -> Result<(), LeaseError> {
        let now = host.now();
        let listing = store.list(Some(&layout::lease_dir())).await?;
        let listed = listing.objects.iter().filter_map(|o| Some((layout::lease_epoch(&o.key)?, o.md5))).max_by_key(|(epoch, _)| *epoch);
        if listed.is_some_and(|(epoch, md5)| epoch == self.body.epoch && md5 == Some(crate::digest::md5(&encode_bytes(&self.body)))) {
            self.confirmed = now;
            return Ok(());
        }
        let top = match listed {
            // An epoch is deleted only once a higher one exists: if it vanished, look again.
            Some((epoch, _)) => match read_epoch(store, epoch).await? {
                Some(body) => Some(body),
                None => current(store).await?,
            },
            None => None,
        };
        if top.as_ref().is_some_and(|t| t.epoch == self.body.epoch && t.token == self.body.token) {
            self.confirmed = now;
            return Ok(());
        }
        let by = top.filter(|t| t.token != self.body.token).map(|t| t.holder);
        tracing::info!(epoch = self.body.epoch, "the lease chain no longer shows our epoch on top");
        Err(LeaseError::Lost { store: store.url().into(), by })
    }

    /// A guard for one write or delete under this lease: it allows the commit only while more
    /// than [`OP_MARGIN`] of the lease is left.
    pub fn guard(&self, host: &dyn Host) -> WriteGuard {
        let (expires, host) = (self.body.expires, host.handle());
        WriteGuard::new(move || expires.since(host.now()) > OP_MARGIN)
    }

    fn check(&self, store: &dyn Store, host: &dyn Host) -> Result<(), LeaseError> {
        if self.body.expires.since(host.now()) <= OP_MARGIN {
            return Err(LeaseError::Lost { store: store.url().into(), by: None });
        }
        Ok(())
    }

    /// Extends the lease by writing the next epoch. Refused once less than [`OP_MARGIN`] is
    /// left: a renewal must land before the lease can look lapsed to anyone, or a waiter that saw
    /// it lapse would go on while we went on too.
    pub async fn renew(&mut self, store: &dyn Store, host: &dyn Host) -> Result<(), LeaseError> {
        self.check(store, host)?;
        let now = host.now();
        let next = LeaseBody { epoch: self.body.epoch + 1, expires: now.plus(self.cfg.ttl), ..self.body.clone() };
        self.advance(store, next).await?;
        self.confirmed = now;
        Ok(())
    }

    /// Runs `work` (which must not use the lease), renewing the lease in the background so a
    /// long read does not let it lapse. A renewal that fails stops the renewing; the next
    /// [`Lease::ensure`] reports the loss.
    pub async fn keep_alive<T>(&mut self, store: &dyn Store, host: &dyn Host, work: impl std::future::Future<Output = T>) -> T {
        let every = self.cfg.ttl / 4;
        let busy = AtomicBool::new(false);
        let renewing = async {
            loop {
                host.sleep(every).await;
                if self.body.expires.since(host.now()) < RENEW_BELOW {
                    busy.store(true, Ordering::SeqCst);
                    let failed = self.renew(store, host).await.is_err();
                    busy.store(false, Ordering::SeqCst);
                    if failed {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let (work, renewing) = (std::pin::pin!(work), std::pin::pin!(renewing));
        match futures::future::select(work, renewing).await {
            futures::future::Either::Left((out, mut renewing)) => {
                // Let a renewal in flight finish, so the lease we hold is the one stored.
                futures::future::poll_fn(|cx| {
                    if busy.load(Ordering::SeqCst) {
                        let _ = renewing.as_mut().poll(cx);
                    }
                    if busy.load(Ordering::SeqCst) { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
                })
                .await;
                out
            }
            futures::future::Either::Right(_) => unreachable!("the renewal loop never ends"),
        }
    }

    async fn advance(&mut self, store: &dyn Store, next: LeaseBody) -> Result<(), LeaseError> {
        if let Some(stored) = write_epoch(store, &next).await? {
            if confirm_and_tidy(store, stored.epoch).await? {
                self.body = stored;
                return Ok(());
            }
        }
        let by = current(store).await.ok().flatten().map(|b| b.holder);
        Err(LeaseError::Lost { store: store.url().into(), by })
    }

    /// Gives the lease back: one create-only write of the next epoch, `released`.
    ///
    /// Unlike taking or renewing, releasing does not list the chain afterwards. A holder that
    /// slept through other actors' epochs and recreated one a tidy had deleted has written a
    /// `released` epoch below the top, where it changes nothing: only the highest epoch counts,
    /// and an epoch is deleted only once a higher one exists.
    pub async fn release(self, store: &dyn Store, host: &dyn Host) -> Result<(), LeaseError> {
        let next = LeaseBody { epoch: self.body.epoch + 1, state: LeaseState::Released, expires: host.now(), ..self.body.clone() };
        if write_epoch(store, &next).await?.is_some() {
            return Ok(());
        }
        let by = current(store).await.ok().flatten().map(|b| b.holder);
        Err(LeaseError::Lost { store: store.url().into(), by })
    }
}

fn held(store: &dyn Store, c: &LeaseBody, skew: Duration) -> LeaseError {
    LeaseError::Held { store: store.url().into(), holder: c.holder.clone(), purpose: c.purpose, epoch: c.epoch, lapses_at: c.lapses_at(skew) }
}

/// Waits until no one holds the lease, for at most `max_wait`; `waiting` is told who holds it,
/// each time the holder changes. Returns the top epoch found free (`None`: never taken).
pub async fn wait_until_free(
    store: &dyn Store,
    host: &dyn Host,
    cfg: LeaseConfig,
    max_wait: Duration,
    waiting: &(dyn Fn(&LeaseError) + Send + Sync),
) -> Result<Option<LeaseBody>, LeaseError> {
    let start = host.now();
    let mut told: Option<u64> = None;
    loop {
        match current(store).await? {
            Some(c) if !c.is_free(host, cfg.skew) => {
                let e = held(store, &c, cfg.skew);
                if host.now().since(start) >= max_wait {
                    return Err(e);
                }
                if told != Some(c.epoch) {
                    told = Some(c.epoch);
                    waiting(&e);
                }
                host.sleep(cfg.poll).await;
            }
            top => return Ok(top),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(epoch: u64, state: LeaseState, expires: Timestamp) -> LeaseBody {
        LeaseBody { epoch, holder: "gc on host-a".into(), token: "t".into(), purpose: Purpose::Gc, state, acquired: expires, expires, process: None }
    }

    /// A publish trusts the records it read at `t` only if no lease holder can have acted since.
    #[test]
    fn idle_since_only_when_no_holder_can_have_acted() {
        let skew = Duration::from_secs(15);
        let t = Timestamp::now();
        let soon = t.plus(Duration::from_secs(60));
        // The same top epoch, released before `t` was read: no one took the lease since.
        assert!(body(7, LeaseState::Released, t).idle_since(Some(7), t, skew));
        // The same epoch, but held at `t` (a gc that was deleting, then died): not idle, though
        // the lease is free now.
        assert!(!body(7, LeaseState::Held, soon).idle_since(Some(7), t, skew));
        // A newer epoch, released: someone held the lease after `t`.
        assert!(!body(8, LeaseState::Released, t.plus(Duration::from_secs(1))).idle_since(Some(7), t, skew));
        // Never seen before (the lease was first taken after `t`).
        assert!(!body(1, LeaseState::Released, t.plus(Duration::from_secs(1))).idle_since(None, t, skew));
        // Whatever the epochs, one that lapsed or was released a clock-skew allowance before `t`.
        let long_ago = Timestamp(t.0 - Duration::from_secs(16));
        assert!(body(8, LeaseState::Held, long_ago).idle_since(Some(7), t, skew));
        assert!(!body(8, LeaseState::Held, Timestamp(t.0 - Duration::from_secs(14))).idle_since(Some(7), t, skew));
    }
}
