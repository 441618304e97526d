//! Store wrappers for tests: count operations, fail after a number of puts (a crash half-way
//! through a publish), or delay every operation by a random amount (to shake out races).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deskew_core::Key;
use deskew_core::store::{Body, Capabilities, ObjectMeta, Op, PutOptions, Store, StoreError};

/// Counts puts and deletes.
#[derive(Debug)]
pub struct Counting<'a> {
    inner: &'a dyn Store,
    /// Puts so far.
    pub puts: AtomicUsize,
    /// Deletes so far.
    pub deletes: AtomicUsize,
}

impl<'a> Counting<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a dyn Store) -> Self {
        Counting { inner, puts: 0.into(), deletes: 0.into() }
    }
}

#[async_trait]
impl Store for Counting<'_> {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, body, opts).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Vec<Result<(), StoreError>> {
        self.deletes.fetch_add(keys.len(), Ordering::SeqCst);
        self.inner.delete_many(keys).await
    }
}

/// Fails every put after the first `allowed`, as a publish that dies half-way.
#[derive(Debug)]
pub struct FailingPuts<'a> {
    inner: &'a dyn Store,
    allowed: usize,
    done: AtomicUsize,
}

impl<'a> FailingPuts<'a> {
    /// Wraps `inner`, letting `allowed` puts through.
    pub fn new(inner: &'a dyn Store, allowed: usize) -> Self {
        FailingPuts { inner, allowed, done: 0.into() }
    }
}

#[async_trait]
impl Store for FailingPuts<'_> {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        if self.done.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(StoreError::Backend {
                op: Op::Put,
                store: self.url().into(),
                key: key.to_string(),
                source: "injected failure".into(),
            });
        }
        self.inner.put(key, body, opts).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// Delays every operation by up to `max` (pseudo-random, seeded), so concurrent engines
/// interleave differently on every iteration.
#[derive(Debug, Clone)]
pub struct Jitter<'a> {
    inner: &'a dyn Store,
    max_micros: u64,
    state: Arc<AtomicU64>,
}

impl<'a> Jitter<'a> {
    /// Wraps `inner` with delays up to `max`, seeded by `seed`.
    pub fn new(inner: &'a dyn Store, max: Duration, seed: u64) -> Self {
        Jitter { inner, max_micros: max.as_micros().max(1) as u64, state: Arc::new(AtomicU64::new(seed | 1)) }
    }

    async fn pause(&self) {
        // xorshift64: good enough to vary interleavings, and reproducible from the seed.
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_micros(x % self.max_micros)).await;
    }
}

#[async_trait]
impl Store for Jitter<'_> {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        self.pause().await;
        self.inner.put(key, body, opts).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.pause().await;
        self.inner.get(key).await
    }
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        self.pause().await;
        let r = self.inner.list(prefix).await;
        self.pause().await;
        r
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.pause().await;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Vec<Result<(), StoreError>> {
        self.pause().await;
        self.inner.delete_many(keys).await
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

/// The publisher's side of [`RaceGates`].
#[derive(Debug)]
pub struct PublisherGate<'a> {
    inner: &'a dyn Store,
    gates: Arc<RaceGates>,
    first_put: std::sync::atomic::AtomicBool,
    first_full_list: std::sync::atomic::AtomicBool,
}

/// The GC's side of [`RaceGates`].
#[derive(Debug)]
pub struct GcGate<'a> {
    inner: &'a dyn Store,
    gates: Arc<RaceGates>,
    first_delete: std::sync::atomic::AtomicBool,
}

impl RaceGates {
    /// Wraps one store twice: for the publisher and for the GC.
    pub fn wrap(inner: &dyn Store) -> (PublisherGate<'_>, GcGate<'_>) {
        let gates = Arc::new(RaceGates::default());
        (
            PublisherGate { inner, gates: gates.clone(), first_put: true.into(), first_full_list: true.into() },
            GcGate { inner, gates, first_delete: true.into() },
        )
    }
}

#[async_trait]
impl Store for PublisherGate<'_> {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        if self.first_put.swap(false, Ordering::SeqCst) {
            self.gates.gc_about_to_delete.notified().await;
        }
        self.inner.put(key, body, opts).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        let r = self.inner.list(prefix).await;
        if prefix.is_none() && self.first_full_list.swap(false, Ordering::SeqCst) {
            self.gates.publisher_listed.notify_one();
        }
        r
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

#[async_trait]
impl Store for GcGate<'_> {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        self.inner.put(key, body, opts).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Vec<Result<(), StoreError>> {
        if self.first_delete.swap(false, Ordering::SeqCst) {
            self.gates.gc_about_to_delete.notify_one();
            self.gates.publisher_listed.notified().await;
        }
        self.inner.delete_many(keys).await
    }
}
