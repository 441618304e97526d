//! The publish engine: puts a build's files into a store so that every pod, old or new, finds
//! every asset during a rolling update.
//!
//! Order, chosen so that a crash at any point leaves no complete release referencing a missing
//! file and a rerun finishes the job:
//! 1. read the records (what the store holds, by path and sha256);
//! 2. write this release's record as `pending` (create-only), before any dedupe decision;
//! 3. one listing; upload every immutable and mutable file the records and the listing do not
//!    prove present, then the entry files under `.deskew/releases/<id>/`;
//! 4. wait for any running GC, list again, and re-upload anything missing;
//! 5. rewrite the record as `complete`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::catalog::{Catalog, CatalogError};
use crate::key::Key;
use crate::layout;
use crate::lease::{self, LeaseError};
use crate::manifest::{FileClass, Manifest, ManifestFile};
use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::retention::{self, Policy, RetentionError};
use crate::store::{Body, PutMode, PutOptions, Store, StoreError};
use crate::time::Timestamp;

/// How a publish runs.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Plan only: write nothing.
    pub dry_run: bool,
    /// Refuse (before writing anything) to replace a mutable file a kept release still serves.
    pub strict: bool,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// The policy that decides which releases count as kept when looking for conflicts;
    /// `None` counts every complete release.
    pub policy: Option<Policy>,
    /// The record's creation time.
    pub now: Timestamp,
    /// How long to wait for a running GC before the final check.
    pub lease_wait: Duration,
    /// Files larger than this are streamed from disk instead of read into memory.
    pub stream_threshold: u64,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            dry_run: false,
            strict: false,
            concurrency: 16,
            policy: None,
            now: Timestamp::now(),
            lease_wait: Duration::from_secs(600),
            stream_threshold: 16 * 1024 * 1024,
        }
    }
}

/// Receives progress as files are stored.
pub trait Progress: Send + Sync {
    /// Uploading starts: this many files and bytes are to go.
    fn start(&self, _files: u64, _bytes: u64) {}
    /// A file was stored.
    fn stored(&self, _key: &Key, _bytes: u64) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// How a publish ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The release is now complete in the store.
    Published,
    /// The release was already complete with the same content: nothing was written.
    AlreadyComplete,
    /// Nothing was written on purpose.
    DryRun,
}

/// A mutable file whose stored content this publish replaces while kept releases still serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The file.
    pub path: Key,
    /// Its sha256 in this release.
    pub sha256: String,
    /// Kept releases with other content at this path: their clients will get the new content.
    pub releases: Vec<ReleaseId>,
}

/// What a publish did.
#[derive(Clone, Debug, Serialize)]
pub struct PublishReport {
    /// The release.
    pub release: ReleaseId,
    /// How it ended.
    pub outcome: Outcome,
    /// Files in the release.
    pub files: u64,
    /// Bytes in the release.
    pub bytes: u64,
    /// Files written (or, in a dry run, that would be).
    pub uploaded: u64,
    /// Bytes written (or that would be).
    pub uploaded_bytes: u64,
    /// Files already in the store.
    pub skipped: u64,
    /// Keys written (or that would be), in order.
    pub uploaded_keys: Vec<Key>,
    /// Mutable files replaced under kept releases.
    pub conflicts: Vec<Conflict>,
    /// Records that could not be read and were ignored for dedupe.
    pub ignored_records: Vec<String>,
}

/// Why a publish failed. The store is left with at most a pending record, which a rerun resumes.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The release id is taken by other content.
    #[error("release `{release}` already exists in {store} with different content (digest {existing}); choose another --release")]
    DifferentContent {
        /// The release.
        release: ReleaseId,
        /// The store.
        store: String,
        /// The stored digest.
        existing: String,
    },
    /// `--strict` and mutable files would change under kept releases.
    #[error("{} mutable file(s) would change under kept releases (first: `{}`, served by {}); nothing was written", .0.len(), .0[0].path, join_ids(&.0[0].releases))]
    Conflicts(Vec<Conflict>),
    /// This release's own record is unreadable.
    #[error("the record of release `{release}` is unusable; fix or delete it first")]
    OwnRecord {
        /// The release.
        release: ReleaseId,
        /// Why.
        #[source]
        source: CatalogError,
    },
    /// A source file cannot be read.
    #[error("failed to read `{}`", .path.display())]
    Source {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A source file changed since the manifest was made.
    #[error("`{}` changed after its manifest was computed; rebuild and publish again", .path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// Files were still missing after the final check and one retry.
    #[error("`{key}` is still missing from {store} after uploading it again")]
    Incomplete {
        /// The store.
        store: String,
        /// The file.
        key: Key,
    },
    /// The retention policy is invalid.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// Waiting for GC failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn join_ids(ids: &[ReleaseId]) -> String {
    ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// Publishes `manifest`, whose files are read from `dist`, to `store`.
pub async fn publish(
    store: &dyn Store,
    dist: &Path,
    manifest: Manifest,
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    let started = std::time::Instant::now();
    let catalog = Catalog::load(store).await?;
    let mut ignored_records = Vec::new();
    for p in catalog.problems {
        if let CatalogError::Record(crate::release::RecordError::Parse { key, .. }) = &p {
            if layout::record_id(key) == Some(manifest.release.as_str()) {
                return Err(PublishError::OwnRecord { release: manifest.release.clone(), source: p });
            }
        }
        tracing::warn!("ignoring an unusable release record: {}", crate::error_chain(&p));
        ignored_records.push(crate::error_chain(&p));
    }
    let records = catalog.records;

    let mut report = PublishReport {
        release: manifest.release.clone(),
        outcome: Outcome::Published,
        files: manifest.total.files,
        bytes: manifest.total.bytes,
        uploaded: 0,
        uploaded_bytes: 0,
        skipped: 0,
        uploaded_keys: Vec::new(),
        conflicts: Vec::new(),
        ignored_records,
    };

    let own = records.iter().find(|r| r.release == manifest.release);
    if let Some(own) = own {
        if own.manifest.digest != manifest.digest {
            return Err(PublishError::DifferentContent {
                release: manifest.release.clone(),
                store: store.url().into(),
                existing: own.manifest.digest.clone(),
            });
        }
        if own.state == ReleaseState::Complete {
            report.outcome = Outcome::AlreadyComplete;
            report.skipped = report.files;
            return Ok(report);
        }
    }
    let others: Vec<&ReleaseRecord> = records.iter().filter(|r| r.release != manifest.release).collect();

    report.conflicts = conflicts(&records, &manifest, opts.policy.as_ref(), opts.now)?;
    if opts.strict && !report.conflicts.is_empty() {
        return Err(PublishError::Conflicts(report.conflicts));
    }

    // Step 2: the pending record goes first, so a concurrent GC sees this release before we
    // decide anything from the store's contents.
    let created = own.map_or(opts.now, |r| r.created);
    let mut record = ReleaseRecord::pending(manifest, created);
    if !opts.dry_run && own.is_none() {
        let key = layout::record_key(&record.release);
        let put = PutOptions { mode: PutMode::Create, content_type: Some("application/json".into()), ..PutOptions::default() };
        match store.put(&key, Body::Bytes(Bytes::from(record.to_json())), &put).await {
            Ok(()) => {}
            // A concurrent publish of the same release: resume if it is the same content.
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = ReleaseRecord::parse(&key, &store.get(&key).await?)
                    .map_err(|e| PublishError::OwnRecord { release: record.release.clone(), source: e.into() })?;
                if existing.manifest.digest != record.manifest.digest {
                    return Err(PublishError::DifferentContent {
                        release: record.release.clone(),
                        store: store.url().into(),
                        existing: existing.manifest.digest,
                    });
                }
                record.created = existing.created;
            }
            Err(e) => return Err(e.into()),
        }
    }

    // Step 3: what the store lacks, from the records plus one listing.
    let listing: HashMap<Key, u64> = store.list(None).await?.into_iter().map(|o| (o.key, o.size)).collect();
    let vouched = vouched_contents(&others);
    let needed: Vec<(Key, ManifestFile)> = record
        .stored_files()
        .filter(|(key, f)| {
            let present = f.class != FileClass::Entry
                && listing.get(key) == Some(&f.size)
                && vouched.get(key).is_some_and(|v| v.as_deref() == Some(f.sha256.as_str()));
            !present
        })
        .map(|(k, f)| (k, f.clone()))
        .collect();
    report.skipped = report.files - needed.len() as u64;
    report.uploaded = needed.len() as u64;
    report.uploaded_bytes = needed.iter().map(|(_, f)| f.size).sum();
    report.uploaded_keys = needed.iter().map(|(k, _)| k.clone()).collect();
    if opts.dry_run {
        report.outcome = Outcome::DryRun;
        return Ok(report);
    }

    progress.start(report.uploaded, report.uploaded_bytes);
    let (entries, assets): (Vec<_>, Vec<_>) = needed.into_iter().partition(|(_, f)| f.class == FileClass::Entry);
    upload_all(store, dist, assets, opts, progress).await?;
    upload_all(store, dist, entries, opts, progress).await?;

    // Step 4: no GC may be deleting while we check; a GC that starts after this point reads our
    // pending record and keeps every file it references.
    lease::wait_until_free(store, opts.lease_wait).await?;
    for attempt in 0..2 {
        let listing: HashMap<Key, u64> = store.list(None).await?.into_iter().map(|o| (o.key, o.size)).collect();
        let missing: Vec<(Key, ManifestFile)> = record
            .stored_files()
            .filter(|(k, f)| listing.get(k) != Some(&f.size))
            .map(|(k, f)| (k, f.clone()))
            .collect();
        if missing.is_empty() {
            break;
        }
        if attempt == 1 {
            return Err(PublishError::Incomplete { store: store.url().into(), key: missing[0].0.clone() });
        }
        tracing::warn!(count = missing.len(), "files vanished during publish (a concurrent gc?); uploading them again");
        upload_all(store, dist, missing, opts, &NoProgress).await?;
    }

    // Step 5.
    record.state = ReleaseState::Complete;
    record.completed = Some(Timestamp(opts.now.0 + started.elapsed()).max(record.created));
    let key = layout::record_key(&record.release);
    let put = PutOptions { content_type: Some("application/json".into()), ..PutOptions::default() };
    store.put(&key, Body::Bytes(Bytes::from(record.to_json())), &put).await?;
    Ok(report)
}

/// For every key any record references: the sha256 all those records agree on, or `None` if
/// they disagree (a mutable file that changed: the store holds one of them, we cannot tell which).
fn vouched_contents(records: &[&ReleaseRecord]) -> HashMap<Key, Option<String>> {
    let mut out: HashMap<Key, Option<String>> = HashMap::new();
    for r in records {
        for (key, f) in r.stored_files() {
            out.entry(key)
                .and_modify(|v| {
                    if v.as_deref() != Some(f.sha256.as_str()) {
                        *v = None;
                    }
                })
                .or_insert_with(|| Some(f.sha256.clone()));
        }
    }
    // Only complete records prove a file was stored; a pending one may have died before it.
    let complete: HashMap<Key, ()> = records
        .iter()
        .filter(|r| r.state == ReleaseState::Complete)
        .flat_map(|r| r.stored_files().map(|(k, _)| (k, ())).collect::<Vec<_>>())
        .collect();
    out.retain(|k, _| complete.contains_key(k));
    out
}

fn conflicts(
    records: &[ReleaseRecord],
    manifest: &Manifest,
    policy: Option<&Policy>,
    now: Timestamp,
) -> Result<Vec<Conflict>, RetentionError> {
    let kept: Vec<&ReleaseRecord> = match policy {
        Some(p) => {
            let decisions = retention::decide(records, p, now)?;
            records.iter().zip(decisions).filter(|(_, d)| d.kept && d.state == ReleaseState::Complete).map(|(r, _)| r).collect()
        }
        None => records.iter().filter(|r| r.state == ReleaseState::Complete).collect(),
    };
    let mut out = Vec::new();
    for f in manifest.of_class(FileClass::Mutable) {
        let mut releases: Vec<ReleaseId> = kept
            .iter()
            .filter(|r| r.release != manifest.release)
            .filter(|r| r.manifest.file(&f.path).is_some_and(|o| o.class == FileClass::Mutable && o.sha256 != f.sha256))
            .map(|r| r.release.clone())
            .collect();
        if !releases.is_empty() {
            releases.sort();
            out.push(Conflict { path: f.path.clone(), sha256: f.sha256.clone(), releases });
        }
    }
    Ok(out)
}

async fn upload_all(
    store: &dyn Store,
    dist: &Path,
    files: Vec<(Key, ManifestFile)>,
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<(), PublishError> {
    let dist: Arc<Path> = dist.into();
    futures::stream::iter(files)
        .map(|(key, f)| {
            let dist = dist.clone();
            async move {
                let path = dist.join(f.path.as_str());
                let body = if f.size <= opts.stream_threshold {
                    let bytes = tokio::fs::read(&path).await.map_err(|source| PublishError::Source { path: path.clone(), source })?;
                    if crate::manifest::sha256_hex(&bytes) != f.sha256 {
                        return Err(PublishError::Changed { path });
                    }
                    Body::Bytes(Bytes::from(bytes))
                } else {
                    Body::File(path.clone())
                };
                let put = PutOptions {
                    mode: PutMode::Overwrite,
                    content_type: Some(f.content_type.clone()),
                    cache_control: Some(f.cache_control.clone()),
                    sha256: Some(f.sha256.clone()),
                };
                match store.put(&key, body, &put).await {
                    Ok(()) => {}
                    Err(StoreError::Checksum { .. }) => return Err(PublishError::Changed { path }),
                    Err(e) => return Err(e.into()),
                }
                progress.stored(&key, f.size);
                Ok(())
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
