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
//! - a listing shows every write and delete that completed before it started (as AWS S3, MinIO
//!   and R2 promise: the lease, the last step's check for vanished files and the MD5s it states
//!   all rely on it), and either returns every key under the prefix or fails; an entry that cannot be a
//!   key (an invalid name, a symbolic link, a device) is returned as a [`ListingProblem`] so each
//!   engine decides (gc refuses to run, publish and verify report it and go on);
//! - every put that carries a `sha256` checks the bytes it stores against it and refuses a
//!   mismatch with [`StoreError::Checksum`], storing nothing;
//! - nothing outside the store's root is ever read, written or deleted: a directory store
//!   refuses to go through a symbolic link.

pub mod fs;
pub mod memory;
pub mod split;
pub mod url;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
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

/// A check a backend runs right before it commits a write or a delete (before the rename or the
/// unlink on a directory, before sending the request on S3). A lease holder passes one that says
/// whether its lease still has enough time left, so nothing it writes lands after the lease may
/// have passed to someone else, however long the data took to write.
#[derive(Clone)]
pub struct WriteGuard(Arc<dyn Fn() -> bool + Send + Sync>);

impl WriteGuard {
    /// A guard that allows the commit while `allows` says so.
    pub fn new(allows: impl Fn() -> bool + Send + Sync + 'static) -> WriteGuard {
        WriteGuard(Arc::new(allows))
    }

    /// Whether the commit may go ahead now.
    pub fn allows(&self) -> bool {
        (self.0)()
    }

    /// `Ok` if the commit may go ahead, else the error that says why not.
    pub fn check(guard: Option<&WriteGuard>, store: &str, key: &str) -> Result<(), StoreError> {
        match guard {
            Some(g) if !g.allows() => Err(StoreError::GuardFailed { store: store.into(), key: key.into() }),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteGuard")
    }
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
    /// Checked right before the write is committed.
    pub guard: Option<WriteGuard>,
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
    /// Its content's MD5 as the backend states it, where it does: an S3 ETag of 32 hex digits,
    /// which is the MD5 of an object written in one part. Not a promise: a KMS-encrypted
    /// object's ETag has the same form and is something else, so it serves only to spare a
    /// read when it equals the MD5 of the bytes the reader expects.
    pub md5: Option<[u8; 16]>,
}

/// An entry a listing met that cannot be used as a key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListingProblem {
    /// The name as the backend knows it (relative to the store's root).
    pub name: String,
    /// What is wrong with it: "is a symbolic link", "is not a valid path: ...".
    pub why: String,
}

impl fmt::Display for ListingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.name, self.why)
    }
}

/// What a listing found.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Every usable object.
    pub objects: Vec<ObjectMeta>,
    /// Entries that are not usable objects.
    pub problems: Vec<ListingProblem>,
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

/// An object's bytes as they arrive ([`Store::get_chunks`]).
pub type Chunks = futures::stream::BoxStream<'static, Result<Bytes, StoreError>>;

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
    /// The key is not something deskew may touch: a symbolic link, a directory, a device, or a
    /// path through a symbolic link.
    #[error("`{key}` in {store} {why}; deskew never follows links or touches anything but regular files in a store")]
    NotRegular {
        /// The store's URL.
        store: String,
        /// The key.
        key: String,
        /// What it is: "is a symbolic link".
        why: String,
    },
    /// The store could not be reached (connection refused, DNS, TLS, timeout).
    #[error("store {store} is unreachable {why}")]
    Unreachable {
        /// The store's URL.
        store: String,
        /// What happened.
        why: String,
    },
    /// The store as a whole cannot be used (missing directory, missing bucket, bad credentials).
    #[error("store {store} {why}")]
    Unusable {
        /// The store's URL.
        store: String,
        /// What is wrong, as a predicate: "does not exist".
        why: String,
    },
    /// A [`WriteGuard`] refused the commit; nothing was changed.
    #[error("stopped before changing `{key}` in {store}: the lease it needs is about to lapse")]
    GuardFailed {
        /// The store's URL.
        store: String,
        /// The key.
        key: String,
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
    /// The one constructor of [`StoreError::Backend`], for every backend.
    pub fn backend(op: Op, store: &str, key: &str, source: impl Into<Cause>) -> StoreError {
        StoreError::Backend { op, store: store.into(), key: key.into(), source: source.into() }
    }

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

    /// What this backend can promise. A backend may find out on first use (S3 probes its
    /// server's conditional writes), so that a command that never needs to know sends nothing.
    async fn capabilities(&self) -> Result<Capabilities, StoreError>;

    /// Writes `body` at `key`, atomically.
    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError>;

    /// Reads the whole object at `key`.
    async fn get(&self, key: &Key) -> Result<Bytes, StoreError>;

    /// Reads the object at `key` as it arrives, for a reader that need not hold it whole (a
    /// release record of 50,000 files is 12 MB). The chunks, joined, are what [`Store::get`]
    /// returns; a missing key fails here, not in the stream. The default reads it whole and
    /// yields it as one chunk.
    async fn get_chunks(&self, key: &Key) -> Result<Chunks, StoreError> {
        let bytes = self.get(key).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(bytes) })))
    }

    /// Every object under `prefix` (the whole store for `None`), in no particular order, and
    /// the entries that cannot be keys.
    async fn list(&self, prefix: Option<&Key>) -> Result<Listing, StoreError>;

    /// [`Store::list`], given keys the caller expects the store to hold (`hints`, in any order:
    /// the files of a release it has read). A backend that lists in pages may split the key
    /// space at them and fetch the parts at once. Every hinted key under `prefix` that the store
    /// holds is in the result, as `list(prefix)` would show it, and nothing it does not hold.
    /// Objects the hints do not name are listed as they are met: all of them on a server that
    /// orders keys byte by byte, as S3 promises; one that does not (SeaweedFS orders a folder
    /// `v1/` before the file `v1.json`) may miss some. So any hints are safe: none, wrong ones,
    /// keys outside `prefix`. The default ignores them.
    async fn list_hinted(&self, prefix: Option<&Key>, hints: &[Key]) -> Result<Listing, StoreError> {
        let _ = hints;
        self.list(prefix).await
    }

    /// Whether the store holds anything at all (cheaper than a listing on most backends).
    async fn is_empty(&self) -> Result<bool, StoreError> {
        let l = self.list(None).await?;
        Ok(l.objects.is_empty() && l.problems.is_empty())
    }

    /// Deletes `key`; a missing key is not an error.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// How many keys one [`Store::delete_many`] call sends in a single request. Callers that
    /// guard deletes with a lease check it before each call, so a backend that deletes one key
    /// per request (the default) gets one key per call.
    fn max_delete_batch(&self) -> usize {
        1
    }

    /// Deletes many keys, returning one result per key in the same order, each checked by
    /// `guard` right before it is committed. Backends with batch deletes override this.
    async fn delete_many(&self, keys: &[Key], guard: Option<&WriteGuard>) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(match WriteGuard::check(guard, self.url(), k.as_str()) {
                Ok(()) => self.delete(k).await,
                Err(e) => Err(e),
            });
        }
        out
    }
}
