//! Store wrappers for tests: one [`Hooked`] store that forwards every call to a real store and
//! lets a [`Hooks`] value count, fail, delay or gate the calls tests care about: a crash
//! half-way through a publish, random delays to shake out races, the one interleaving that would
//! break a naive publish/GC protocol.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deskew_core::Key;
use deskew_core::store::{Body, Capabilities, Listing, Op, PutOptions, Store, StoreError, WriteGuard, split};

/// What a [`Hooked`] store calls around the real store's operations. Every hook defaults to
/// doing nothing.
#[async_trait]
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// Before any operation (delays).
    async fn before(&self, _op: Op) {}
    /// Before a put: an error here is returned instead of writing.
    async fn before_put(&self, _store: &str, _key: &Key) -> Result<(), StoreError> {
        Ok(())
    }
    /// Before a get: an error here is returned instead of reading.
    async fn before_get(&self, _store: &str, _key: &Key) -> Result<(), StoreError> {
        Ok(())
    }
    /// After a put that succeeded.
    async fn after_put(&self, _key: &Key) {}
    /// After a listing of `prefix` (`None`: the whole store).
    async fn after_list(&self, _prefix: Option<&Key>) {}
    /// After a listing given `hints` that succeeded, with what it listed.
    async fn after_list_hinted(&self, _prefix: Option<&Key>, _hints: &[Key], _listed: &Listing) {}
    /// Before a delete of `keys`: an error here is returned for each of them instead.
    async fn before_delete(&self, _store: &str, _keys: &[Key]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store that forwards to `inner` and calls `hooks`.
#[derive(Debug)]
pub struct Hooked<'a, H> {
    inner: &'a dyn Store,
    /// The hooks, readable by the test (counters).
    pub hooks: H,
}

impl<'a, H: Hooks> Hooked<'a, H> {
    /// Wraps `inner`.
    pub fn new(inner: &'a dyn Store, hooks: H) -> Self {
        Hooked { inner, hooks }
    }
}

#[async_trait]
impl<H: Hooks> Store for Hooked<'_, H> {
    fn url(&self) -> &str {
        self.inner.url()
    }
    async fn capabilities(&self) -> Result<Capabilities, StoreError> {
        self.inner.capabilities().await
    }
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        self.hooks.before(Op::Put).await;
        self.hooks.before_put(self.inner.url(), key).await?;
        self.inner.put(key, body, opts).await?;
        self.hooks.after_put(key).await;
        Ok(())
    }
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.hooks.before(Op::Get).await;
        self.hooks.before_get(self.inner.url(), key).await?;
        self.inner.get(key).await
    }
    fn max_delete_batch(&self) -> usize {
        self.inner.max_delete_batch()
    }
    async fn list(&self, prefix: Option<&Key>) -> Result<Listing, StoreError> {
        self.hooks.before(Op::List).await;
        let r = self.inner.list(prefix).await;
        self.hooks.after_list(prefix).await;
        r
    }
    async fn list_hinted(&self, prefix: Option<&Key>, hints: &[Key]) -> Result<Listing, StoreError> {
        self.hooks.before(Op::List).await;
        let r = self.inner.list_hinted(prefix, hints).await;
        self.hooks.after_list(prefix).await;
        if let Ok(listed) = &r {
            self.hooks.after_list_hinted(prefix, hints, listed).await;
        }
        r
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.hooks.before(Op::Delete).await;
        self.hooks.before_delete(self.inner.url(), std::slice::from_ref(key)).await?;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key], guard: Option<&WriteGuard>) -> Vec<Result<(), StoreError>> {
        self.hooks.before(Op::Delete).await;
        if let Err(e) = self.hooks.before_delete(self.inner.url(), keys).await {
            let why = e.to_string();
            return keys.iter().map(|k| Err(StoreError::backend(Op::Delete, self.inner.url(), k.as_str(), why.clone()))).collect();
        }
        self.inner.delete_many(keys, guard).await
    }
    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.inner.is_empty().await
    }
}

/// Checks every listing given hints: a hinted key the listing does not show costs a backend
/// that splits at hints the plain listing besides ([`split::unmet`]), so the hints a caller
/// gives should be keys it expects stored. Counts the listings and keeps the unmet hints.
#[derive(Debug, Default)]
pub struct HintsMet {
    /// Listings given hints.
    pub listings: AtomicUsize,
    /// Hinted keys a listing did not show.
    pub unmet: std::sync::Mutex<Vec<Key>>,
}

#[async_trait]
impl Hooks for HintsMet {
    async fn after_list_hinted(&self, prefix: Option<&Key>, hints: &[Key], listed: &Listing) {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.unmet.lock().unwrap().extend(split::unmet(prefix, hints, &listed.objects).into_iter().cloned());
    }
}

/// Records the key of every read.
#[derive(Debug, Default)]
pub struct Reads(pub std::sync::Mutex<Vec<Key>>);

impl Reads {
    /// How many reads of `key` there were.
    pub fn of(&self, key: &Key) -> usize {
        self.0.lock().unwrap().iter().filter(|k| *k == key).count()
    }
}

#[async_trait]
impl Hooks for Reads {
    async fn before_get(&self, _: &str, key: &Key) -> Result<(), StoreError> {
        self.0.lock().unwrap().push(key.clone());
        Ok(())
    }
}

/// Counts puts and deleted keys.
#[derive(Debug, Default)]
pub struct Count {
    /// Puts so far.
    pub puts: AtomicUsize,
    /// Keys deleted so far.
    pub deletes: AtomicUsize,
}

#[async_trait]
impl Hooks for Count {
    async fn before_put(&self, _: &str, _: &Key) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn before_delete(&self, _: &str, keys: &[Key]) -> Result<(), StoreError> {
        self.deletes.fetch_add(keys.len(), Ordering::SeqCst);
        Ok(())
    }
}

/// Answers "not found" to every read of one key, as if something outside deskew deleted it
/// between a listing and the read.
#[derive(Debug)]
pub struct VanishOnRead(pub Key);

#[async_trait]
impl Hooks for VanishOnRead {
    async fn before_get(&self, store: &str, key: &Key) -> Result<(), StoreError> {
        match key == &self.0 {
            true => Err(StoreError::NotFound { store: store.into(), key: key.to_string() }),
            false => Ok(()),
        }
    }
}

/// Fails every put of one key, as a request refused half-way through a publish's last step.
#[derive(Debug)]
pub struct FailPutOf(pub Key);

#[async_trait]
impl Hooks for FailPutOf {
    async fn before_put(&self, store: &str, key: &Key) -> Result<(), StoreError> {
        match key == &self.0 {
            true => Err(StoreError::backend(Op::Put, store, key.as_str(), "injected failure")),
            false => Ok(()),
        }
    }
}

/// Asks `cancel` to stop (as SIGTERM does) once a put of `key` has landed.
#[derive(Debug)]
pub struct CancelAfterPut {
    /// The key.
    pub key: Key,
    /// What is cancelled.
    pub cancel: deskew_core::cancel::Cancel,
}

#[async_trait]
impl Hooks for CancelAfterPut {
    async fn after_put(&self, key: &Key) {
        if key == &self.key {
            self.cancel.cancel();
        }
    }
}

/// Fails every put after the first `allowed`, as a publish that dies half-way.
#[derive(Debug)]
pub struct FailPutsAfter {
    allowed: usize,
    done: AtomicUsize,
}

impl FailPutsAfter {
    /// Lets `allowed` puts through.
    pub fn new(allowed: usize) -> Self {
        FailPutsAfter { allowed, done: 0.into() }
    }
}

#[async_trait]
impl Hooks for FailPutsAfter {
    async fn before_put(&self, store: &str, key: &Key) -> Result<(), StoreError> {
        if self.done.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(StoreError::backend(Op::Put, store, key.as_str(), "injected failure"));
        }
        Ok(())
    }
}

/// Fails every delete request after the first `allowed`, as a gc killed half-way.
#[derive(Debug)]
pub struct FailDeletesAfter {
    allowed: usize,
    done: AtomicUsize,
}

impl FailDeletesAfter {
    /// Lets `allowed` delete requests through.
    pub fn new(allowed: usize) -> Self {
        FailDeletesAfter { allowed, done: 0.into() }
    }
}

#[async_trait]
impl Hooks for FailDeletesAfter {
    async fn before_delete(&self, store: &str, keys: &[Key]) -> Result<(), StoreError> {
        if keys.iter().all(|k| k.is_under(&deskew_core::layout::lease_dir())) {
            return Ok(()); // tidying old lease epochs is not the gc's work
        }
        if self.done.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(StoreError::backend(Op::Delete, store, "", "injected failure"));
        }
        Ok(())
    }
}

/// Delays every operation by up to `max` (pseudo-random, seeded), so concurrent engines
/// interleave differently on every iteration.
#[derive(Debug)]
pub struct Jitter {
    max_micros: u64,
    state: AtomicU64,
}

impl Jitter {
    /// Delays up to `max`, seeded by `seed`.
    pub fn new(max: Duration, seed: u64) -> Self {
        Jitter { max_micros: max.as_micros().max(1) as u64, state: AtomicU64::new(seed | 1) }
    }
}

#[async_trait]
impl Hooks for Jitter {
    async fn before(&self, _: Op) {
        // xorshift64: good enough to vary interleavings, and reproducible from the seed.
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_micros(x % self.max_micros)).await;
    }
}

/// Two interleavings of a publish and a gc that a protocol can get wrong, forced with gates.
///
/// [`Race::GcBetweenDedupeAndComplete`]: the publisher decides to skip a file that is present
/// (after its listing, or, when it needs none, right before its first upload); then a whole gc runs that wants to delete that file (it drops the only
/// complete release that uses it); then the publisher completes. The gc must see the live
/// publish and spare the file.
///
/// [`Race::GcDeletesWhilePublishRegisters`]: a gc has read the records and is about to delete
/// that file; the publisher then writes its pending record; then the gc deletes. The publisher
/// must not rely on the file: it waits for the gc, lists, and uploads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Race {
    /// See [`Race`].
    GcBetweenDedupeAndComplete,
    /// See [`Race`].
    GcDeletesWhilePublishRegisters,
}

/// The shared gates of a [`Race`].
#[derive(Debug, Default)]
pub struct Gates {
    publisher_listed: tokio::sync::Notify,
    gc_done: tokio::sync::Notify,
    gc_about_to_delete: tokio::sync::Notify,
    publisher_registered: tokio::sync::Notify,
}

/// The publisher's side of a [`Race`].
#[derive(Debug)]
pub struct PublisherGate {
    race: Race,
    gates: Arc<Gates>,
    record: Key,
    armed: AtomicBool,
}

/// The gc's side of a [`Race`].
#[derive(Debug)]
pub struct GcGate {
    race: Race,
    gates: Arc<Gates>,
    armed: AtomicBool,
}

impl GcGate {
    /// Call when the gc has finished.
    pub fn done(&self) {
        self.gates.gc_done.notify_one();
    }
}

/// Wraps one store twice, for the publisher of `release` and for the gc.
pub fn race<'a>(inner: &'a dyn Store, race: Race, release: &deskew_core::ReleaseId) -> (Hooked<'a, PublisherGate>, Hooked<'a, GcGate>) {
    let gates = Arc::new(Gates::default());
    let record = deskew_core::layout::record_key(release);
    (
        Hooked::new(inner, PublisherGate { race, gates: gates.clone(), record, armed: true.into() }),
        Hooked::new(inner, GcGate { race, gates, armed: true.into() }),
    )
}

impl PublisherGate {
    /// The publisher has made its dedupe decisions: in [`Race::GcBetweenDedupeAndComplete`], the
    /// whole gc runs now.
    async fn decided(&self) {
        if self.race == Race::GcBetweenDedupeAndComplete && self.armed.swap(false, Ordering::SeqCst) {
            self.gates.publisher_listed.notify_one();
            self.gates.gc_done.notified().await;
        }
    }
}

#[async_trait]
impl Hooks for PublisherGate {
    async fn after_put(&self, key: &Key) {
        if self.race == Race::GcDeletesWhilePublishRegisters && *key == self.record && self.armed.swap(false, Ordering::SeqCst) {
            self.gates.publisher_registered.notify_one();
        }
    }
    async fn after_list(&self, prefix: Option<&Key>) {
        if prefix.is_none() {
            self.decided().await;
        }
    }
    async fn before_put(&self, _: &str, key: &Key) -> Result<(), StoreError> {
        if self.race == Race::GcDeletesWhilePublishRegisters && *key == self.record && self.armed.load(Ordering::SeqCst) {
            self.gates.gc_about_to_delete.notified().await;
        }
        if !key.is_under(&deskew_core::layout::deskew_dir()) {
            self.decided().await;
        }
        Ok(())
    }
}

#[async_trait]
impl Hooks for GcGate {
    async fn before(&self, _: Op) {
        if self.race == Race::GcBetweenDedupeAndComplete && self.armed.swap(false, Ordering::SeqCst) {
            self.gates.publisher_listed.notified().await;
        }
    }
    async fn before_delete(&self, _: &str, keys: &[Key]) -> Result<(), StoreError> {
        let lease_only = keys.iter().all(|k| k.is_under(&deskew_core::layout::lease_dir()));
        if self.race == Race::GcDeletesWhilePublishRegisters && !lease_only && self.armed.swap(false, Ordering::SeqCst) {
            self.gates.gc_about_to_delete.notify_one();
            self.gates.publisher_registered.notified().await;
        }
        Ok(())
    }
}
