//! The GC engine: takes the lease, reads every record (failing closed), plans, and deletes in
//! batches, re-reading the records before each batch.
//!
//! Fails closed: a record it cannot read or parse, a listing error, or a lost lease stops it
//! before it deletes anything more. Records of dropped releases go only after all their files.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError};
use crate::gc_plan::{self, GcPlan};
use crate::key::Key;
use crate::lease::{Lease, LeaseError};
use crate::release::ReleaseId;
use crate::retention::{Policy, RetentionError};
use crate::store::{Store, StoreError};
use crate::time::Timestamp;

/// Objects per delete batch (the S3 DeleteObjects limit).
pub const BATCH: usize = 1000;

/// How a GC runs.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Which releases stay.
    pub policy: Policy,
    /// Plan only.
    pub dry_run: bool,
    /// Refuse to run if more objects would be deleted.
    pub max_delete: Option<usize>,
    /// The policy clock.
    pub now: Timestamp,
    /// Lease lifetime between renewals.
    pub lease_ttl: Duration,
}

/// What a GC did.
#[derive(Debug, Serialize)]
pub struct GcReport {
    /// The plan it carried out (or would, with `dry_run`).
    pub plan: GcPlan,
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
    /// Objects deleted, records included.
    pub deleted: u64,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// Planned deletes skipped because a release published during the run references them.
    pub spared: Vec<Key>,
}

/// Why a GC stopped.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A record could not be used; nothing was deleted.
    #[error("{store}: a release record is unusable, so gc deleted nothing")]
    Catalog {
        /// The store.
        store: String,
        /// The record's problem.
        #[source]
        source: CatalogError,
    },
    /// Retention rejected the policy.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// More would go than allowed.
    #[error("gc would delete {would} objects, more than --max-delete {max}; nothing was deleted")]
    TooMany {
        /// Planned deletes.
        would: usize,
        /// The cap.
        max: usize,
    },
    /// The lease could not be taken or kept.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A listing, read or delete failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some deletes failed; records were left in place so the next run retries.
    #[error("{failed} of {attempted} deletes failed in {store}; release records were kept so the next gc retries")]
    Deletes {
        /// The store.
        store: String,
        /// How many failed.
        failed: usize,
        /// How many were tried.
        attempted: usize,
        /// The first failure.
        #[source]
        first: StoreError,
    },
}

async fn clean_catalog(store: &dyn Store) -> Result<Vec<crate::release::ReleaseRecord>, GcError> {
    Catalog::load(store)
        .await?
        .into_clean()
        .map_err(|source| GcError::Catalog { store: store.url().into(), source })
}

/// Runs a GC.
pub async fn run(store: &dyn Store, opts: &GcOptions) -> Result<GcReport, GcError> {
    let mut lease = if opts.dry_run { None } else { Some(Lease::acquire(store, opts.lease_ttl).await?) };
    let result = run_locked(store, opts, lease.as_mut()).await;
    if let Some(lease) = lease {
        if let Err(e) = lease.release(store).await {
            tracing::warn!("failed to release the gc lease: {e}");
        }
    }
    result
}

async fn run_locked(store: &dyn Store, opts: &GcOptions, mut lease: Option<&mut Lease>) -> Result<GcReport, GcError> {
    let records = clean_catalog(store).await?;
    let listing = store.list(None).await?;
    let plan = gc_plan::plan(&records, &listing, &opts.policy, opts.now)?;
    if let Some(max) = opts.max_delete {
        if plan.delete_count() > max {
            return Err(GcError::TooMany { would: plan.delete_count(), max });
        }
    }
    let mut report = GcReport { plan, dry_run: opts.dry_run, deleted: 0, deleted_bytes: 0, spared: Vec::new() };
    if opts.dry_run {
        return Ok(report);
    }
    let dropped: HashSet<ReleaseId> = report.plan.dropped().cloned().collect();
    let files = report.plan.files.clone();
    for batch in files.chunks(BATCH) {
        if let Some(l) = lease.as_deref_mut() {
            l.renew(store, opts.lease_ttl).await?;
        }
        // Re-read the records: a release published since the plan was made must not lose a
        // file it references.
        let fresh = clean_catalog(store).await?;
        let protected: HashSet<Key> = fresh
            .iter()
            .filter(|r| !dropped.contains(&r.release))
            .flat_map(|r| r.stored_files().map(|(k, _)| k).collect::<Vec<_>>())
            .collect();
        let (keys, sizes): (Vec<Key>, Vec<u64>) = batch
            .iter()
            .filter(|d| {
                let keep = protected.contains(&d.key);
                if keep {
                    report.spared.push(d.key.clone());
                }
                !keep
            })
            .map(|d| (d.key.clone(), d.size))
            .unzip();
        delete_all(store, &keys, &sizes, &mut report).await?;
    }
    let records = report.plan.records.clone();
    if let Some(l) = lease {
        l.renew(store, opts.lease_ttl).await?;
    }
    let sizes = vec![0; records.len()];
    delete_all(store, &records, &sizes, &mut report).await?;
    Ok(report)
}

async fn delete_all(store: &dyn Store, keys: &[Key], sizes: &[u64], report: &mut GcReport) -> Result<(), GcError> {
    if keys.is_empty() {
        return Ok(());
    }
    let results = store.delete_many(keys).await;
    let mut failed = 0;
    let mut first = None;
    for (r, size) in results.into_iter().zip(sizes) {
        match r {
            Ok(()) => {
                report.deleted += 1;
                report.deleted_bytes += size;
            }
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(GcError::Deletes { store: store.url().into(), failed, attempted: keys.len(), first }),
    }
}
