//! An in-memory store: the fast tier of the conformance suite (no server, no disk) and the
//! ground truth of the deterministic simulation, which drives its synchronous methods one
//! operation at a time.
//!
//! It keeps the whole contract: atomic puts, atomic create-only puts, sha256 checks on every put
//! that carries one, listings that either return everything or fail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Body, Capabilities, Listing, ObjectMeta, Op, PutMode, PutOptions, Store, StoreError, WriteGuard};
use crate::digest::sha256_hex;
use crate::key::Key;

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemObject {
    /// Its bytes.
    pub bytes: Bytes,
    /// When it was written.
    pub modified: SystemTime,
    /// The `Content-Type` it was written with.
    pub content_type: Option<String>,
    /// The `Cache-Control` it was written with.
    pub cache_control: Option<String>,
    /// The MD5 of its bytes, which listings state (as S3's do in ETags).
    pub md5: [u8; 16],
}

/// A store in memory. Clones share the same objects.
#[derive(Clone, Debug)]
pub struct MemStore {
    url: String,
    objects: Arc<Mutex<BTreeMap<Key, MemObject>>>,
}

impl MemStore {
    /// An empty store named `memory://<name>`.
    pub fn new(name: &str) -> MemStore {
        MemStore::with_url(&format!("memory://{name}"))
    }

    /// An empty store that calls itself `url` in messages (a stand-in for a store that does not
    /// exist yet, for a dry run).
    pub fn with_url(url: &str) -> MemStore {
        MemStore { url: url.into(), objects: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, MemObject>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every object, for checks.
    pub fn snapshot(&self) -> BTreeMap<Key, MemObject> {
        self.lock().clone()
    }

    /// A put with the contract's semantics, at time `now`. `bytes` are what the client sends.
    pub fn put_sync(&self, key: &Key, bytes: Bytes, opts: &PutOptions, now: SystemTime) -> Result<(), StoreError> {
        if let Some(expected) = &opts.sha256 {
            let actual = sha256_hex(&bytes);
            if *expected != actual {
                return Err(StoreError::Checksum { store: self.url.clone(), key: key.to_string(), expected: expected.clone(), actual });
            }
        }
        let mut objects = self.lock();
        if opts.mode == PutMode::Create && objects.contains_key(key) {
            return Err(StoreError::AlreadyExists { store: self.url.clone(), key: key.to_string() });
        }
        WriteGuard::check(opts.guard.as_ref(), &self.url, key.as_str())?;
        let obj = MemObject {
            md5: crate::digest::md5(&bytes),
            bytes,
            modified: now,
            content_type: opts.content_type.clone(),
            cache_control: opts.cache_control.clone(),
        };
        objects.insert(key.clone(), obj);
        Ok(())
    }

    /// A get.
    pub fn get_sync(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.lock().get(key).map(|o| o.bytes.clone()).ok_or_else(|| StoreError::NotFound { store: self.url.clone(), key: key.to_string() })
    }

    /// Up to `limit` objects under `prefix` whose keys sort after `after`, in key order: one
    /// page of a listing.
    pub fn list_page(&self, prefix: Option<&Key>, after: Option<&Key>, limit: usize) -> Vec<ObjectMeta> {
        let objects = self.lock();
        let range = match after {
            Some(a) => objects.range::<Key, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => objects.range::<Key, _>(..),
        };
        range
            .filter(|(k, _)| prefix.is_none_or(|p| k.is_under(p) && *k != p))
            .take(limit)
            .map(|(k, o)| ObjectMeta { key: k.clone(), size: o.bytes.len() as u64, modified: o.modified, md5: Some(o.md5) })
            .collect()
    }

    /// A delete.
    pub fn delete_sync(&self, key: &Key) {
        self.lock().remove(key);
    }
}

fn read_body(store: &str, key: &Key, body: Body) -> Result<Bytes, StoreError> {
    match body {
        Body::Bytes(b) => Ok(b),
        Body::File(path) => std::fs::read(&path).map(Bytes::from).map_err(|e| StoreError::backend(Op::Put, store, key.as_str(), e)),
    }
}

#[async_trait]
impl Store for MemStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn capabilities(&self) -> Result<Capabilities, StoreError> {
        Ok(Capabilities { create_only: true })
    }

    fn max_delete_batch(&self) -> usize {
        1000
    }

    async fn delete_many(&self, keys: &[Key], guard: Option<&WriteGuard>) -> Vec<Result<(), StoreError>> {
        let mut objects = self.lock();
        keys.iter()
            .map(|k| {
                WriteGuard::check(guard, &self.url, k.as_str())?;
                objects.remove(k);
                Ok(())
            })
            .collect()
    }

    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        let bytes = read_body(&self.url, key, body)?;
        self.put_sync(key, bytes, opts, SystemTime::now())
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        self.get_sync(key)
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Listing, StoreError> {
        Ok(Listing { objects: self.list_page(prefix, None, usize::MAX), problems: Vec::new() })
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.delete_sync(key);
        Ok(())
    }
}
