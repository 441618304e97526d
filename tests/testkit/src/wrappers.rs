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
use deskew_core::store::{Body, Capabilities, ObjectMeta, Op, PutOptions, Store, StoreError};

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
    /// After a listing of `prefix` (`None`: the whole store).
    async fn after_list(&self, _prefix: Option<&Key>) {}
    /// Before a delete of `n` keys.
    async fn before_delete(&self, _n: usize) {}
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
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        self.hooks.before(Op::Put).await;
        self.hooks.before_put(self.inner.url(), key).await?;
        self.inner.put(key, body, opts).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.hooks.before(Op::Get).await;
        self.inner.get(key).await
    }
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        self.hooks.before(Op::List).await;
        let r = self.inner.list(prefix).await;
        self.hooks.after_list(prefix).await;
        r
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.hooks.before(Op::Delete).await;
        self.hooks.before_delete(1).await;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Vec<Result<(), StoreError>> {
        self.hooks.before(Op::Delete).await;
        self.hooks.before_delete(keys.len()).await;
        self.inner.delete_many(keys).await
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
    async fn before_delete(&self, n: usize) {
        self.deletes.fetch_add(n, Ordering::SeqCst);
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
            return Err(StoreError::Backend { op: Op::Put, store: store.into(), key: key.to_string(), source: "injected failure".into() });
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

/// Forces the one interleaving that would break a naive protocol: the GC re-reads the records
/// and is about to delete a file; the publisher then writes its pending record and lists the
/// store (so dedupe sees the file as present); only then does the GC delete it.
#[derive(Debug, Default)]
pub struct RaceGates {
    gc_about_to_delete: tokio::sync::Notify,
    publisher_listed: tokio::sync::Notify,
}

/// The publisher's side of [`RaceGates`]: its first put waits until the GC is about to delete;
/// its first full listing lets the GC go on.
#[derive(Debug)]
pub struct PublisherGate {
    gates: Arc<RaceGates>,
    first_put: AtomicBool,
    first_full_list: AtomicBool,
}

/// The GC's side of [`RaceGates`]: its first delete waits for the publisher's listing.
#[derive(Debug)]
pub struct GcGate {
    gates: Arc<RaceGates>,
    first_delete: AtomicBool,
}

impl RaceGates {
    /// Wraps one store twice: for the publisher and for the GC.
    pub fn wrap(inner: &dyn Store) -> (Hooked<'_, PublisherGate>, Hooked<'_, GcGate>) {
        let gates = Arc::new(RaceGates::default());
        (
            Hooked::new(inner, PublisherGate { gates: gates.clone(), first_put: true.into(), first_full_list: true.into() }),
            Hooked::new(inner, GcGate { gates, first_delete: true.into() }),
        )
    }
}

#[async_trait]
impl Hooks for PublisherGate {
    async fn before_put(&self, _: &str, _: &Key) -> Result<(), StoreError> {
        if self.first_put.swap(false, Ordering::SeqCst) {
            self.gates.gc_about_to_delete.notified().await;
        }
        Ok(())
    }
    async fn after_list(&self, prefix: Option<&Key>) {
        if prefix.is_none() && self.first_full_list.swap(false, Ordering::SeqCst) {
            self.gates.publisher_listed.notify_one();
        }
    }
}

#[async_trait]
impl Hooks for GcGate {
    async fn before_delete(&self, _: usize) {
        if self.first_delete.swap(false, Ordering::SeqCst) {
            self.gates.gc_about_to_delete.notify_one();
            self.gates.publisher_listed.notified().await;
        }
    }
}
