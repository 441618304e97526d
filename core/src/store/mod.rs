//! The store: where a build's assets and deskew's records live.
//!
//! One small async trait, in the spirit of `object_store`: put, get, list, delete, with
//! validated [`Key`]s and one semantic error enum that every backend's own errors convert into.
//! The publish, GC and verify engines are written against this trait only, and every backend
//! passes the same conformance suite (`deskew-testkit`).
//!
//! Guarantees every backend gives:
//! - a put is atomic: a reader sees the old object, the new one, or none, never a partial one;
//! - [`PutMode::Create`] fails with [`StoreError::AlreadyExists`] if the key exists, and of two
//!   racing creates exactly one wins (a backend that cannot promise this must say so in
//!   [`Store::capabilities`] and the engines fall back);
//! - deleting a missing key succeeds;
//! - a listing either returns every key under the prefix or fails.

pub mod fs;
pub mod url;

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::key::Key;

/// What a put sends.
#[derive(Clone, Debug)]
pub enum Body {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A local file, streamed; used for files too large to hold in memory.
    File(PathBuf),
}

/// Whether a put may replace an existing object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Create or replace.
    #[default]
    Overwrite,
    /// Create only: fail with [`StoreError::AlreadyExists`] if the key exists.
    Create,
}

/// Headers and checks that go with a put.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Overwrite or create-only.
    pub mode: PutMode,
    /// `Content-Type`, for backends that serve objects themselves.
    pub content_type: Option<String>,
    /// `Cache-Control`, for backends that serve objects themselves.
    pub cache_control: Option<String>,
    /// Expected sha256 (hex): a backend that reads the body checks it and refuses a mismatch,
    /// and backends with metadata store it.
    pub sha256: Option<String>,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// What a backend can promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// [`PutMode::Create`] is honoured atomically.
    pub create_only: bool,
}

/// A store operation, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Writing an object.
    Put,
    /// Reading an object.
    Get,
    /// Deleting an object.
    Delete,
    /// Listing objects.
    List,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Put => "write",
            Op::Get => "read",
            Op::Delete => "delete",
            Op::List => "list",
        })
    }
}

/// The cause behind a [`StoreError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a store, in terms the engines act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("`{key}` not found in {store}")]
    NotFound {
        /// The store's URL.
        store: String,
        /// The key.
        key: String,
    },
    /// A create-only put found the key taken.
    #[error("`{key}` already exists in {store}")]
    AlreadyExists {
        /// The store's URL.
        store: String,
        /// The key.
        key: String,
    },
    /// The body did not match the expected sha256 (the source changed while publishing).
    #[error("`{key}` changed while being written to {store}: expected sha256 {expected}, read {actual}")]
    Checksum {
        /// The store's URL.
        store: String,
        /// The key.
        key: String,
        /// The sha256 the manifest recorded.
        expected: String,
        /// The sha256 of what was read.
        actual: String,
    },
    /// A listing returned a name that is not a valid key.
    #[error("{store} holds `{name}`, which is not a valid path")]
    InvalidName {
        /// The store's URL.
        store: String,
        /// The name as listed.
        name: String,
    },
    /// The store as a whole cannot be used (missing directory, missing bucket, bad credentials).
    #[error("store {store} {why}")]
    Unusable {
        /// The store's URL.
        store: String,
        /// What is wrong, as a predicate: "does not exist".
        why: String,
    },
    /// Anything else: I/O, network, permissions, server errors.
    #[error("failed to {op} `{key}` in {store}")]
    Backend {
        /// What was being done.
        op: Op,
        /// The store's URL.
        store: String,
        /// The key (or prefix, for a listing).
        key: String,
        /// Why.
        #[source]
        source: Cause,
    },
}

impl StoreError {
    /// Whether this is [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// A place to publish to. See the module docs for the contract.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The store's URL, for messages (`file:///srv/assets`, `s3://bucket/app`).
    fn url(&self) -> &str;

    /// What this backend can promise.
    fn capabilities(&self) -> Capabilities;

    /// Writes `body` at `key`, atomically.
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError>;

    /// Reads the whole object at `key`.
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError>;

    /// Every object under `prefix` (the whole store for `None`), in no particular order.
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Deletes `key`; a missing key is not an error.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// Deletes many keys, returning one result per key in the same order. Backends with batch
    /// deletes override this.
    async fn delete_many(&self, keys: &[Key]) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.delete(k).await);
        }
        out
    }
}
