//! The GC engine: takes the lease, reads every record and heartbeat (failing closed) and the
//! mutable files that may serve another release than the newest ([`crate::serving`]), plans,
//! then carries the plan out in three phases, each write guarded by the lease:
//!
//! 1. rewrite the record of every release it drops as `dropping` (a tombstone);
//! 2. delete files in batches, up to [`PARALLEL_DELETES`] requests at once; before each group,
//!    list the records again and spare every file a record it has not seen references;
//! 3. delete the dropped records and lapsed heartbeats.
//!
//! Fails closed: a record or heartbeat it cannot read, a record listed but gone when read (under
//! the lease only gc deletes records, so something else does), an entry it cannot list (a symbolic link,
//! an invalid name), a store without the marker, or a lost lease stops it before it deletes
//! anything more. Killed at any point, it leaves only records that tell the truth: complete ones
//! are whole, dropped ones say `dropping`; the next gc finishes the job.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::cancel::{Cancel, Cancelled};
use crate::catalog::{Catalog, CatalogError};
use crate::gc_plan::{self, GcPlan, PlanInput};
use crate::heartbeat::{self, FoundHeartbeat};
use crate::host::Host;
use crate::key::Key;
use crate::layout;
use crate::lease::{Lease, LeaseConfig, LeaseError, Purpose};
use crate::marker::{self, MarkerError};
use crate::progress::Progress;
use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::retention::{Policy, RetentionError};
use crate::store::{Body, ListingProblem, ObjectMeta, PutOptions, Store, StoreError};

/// Objects per delete batch (the S3 DeleteObjects limit).
pub const BATCH: usize = 1000;

/// Delete requests in flight at once, all under one lease check: the server deletes in parallel
/// (SeaweedFS on two cores took 1 s per batch of 1,000, one batch after the other).
pub const PARALLEL_DELETES: usize = 4;

/// How a GC runs.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Which releases stay.
    pub policy: Policy,
    /// Plan only: no lease, no writes.
    pub dry_run: bool,
    /// Refuse to run if more objects would be deleted.
    pub max_delete: Option<usize>,
    /// Lease lifetime between renewals.
    pub lease_ttl: Duration,
    /// How long to wait for another actor's lease.
    pub lease_wait: Duration,
    /// How often to look at the lease again while waiting.
    pub lease_poll: Duration,
    /// Objects per delete request.
    pub batch: usize,
    /// Stops the gc between writes when cancelled.
    pub cancel: Cancel,
    /// Safety steps to skip: for the simulation's self-test only.
    #[doc(hidden)]
    pub faults: crate::faults::Faults,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            policy: Policy::keep_all(),
            dry_run: false,
            max_delete: None,
            lease_ttl: crate::lease::DEFAULT_TTL,
            lease_wait: Duration::from_secs(300),
            lease_poll: crate::lease::POLL,
            batch: BATCH,
            cancel: Cancel::new(),
            faults: crate::faults::Faults::default(),
        }
    }
}

/// What a GC did.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct GcReport {
    /// The plan it carried out (or would, with `dry_run`).
    pub plan: GcPlan,
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
    /// Objects deleted, records and heartbeats included.
    pub deleted: u64,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// Planned deletes skipped because a release published during the run references them.
    pub spared: Vec<Key>,
}

/// Why a GC stopped.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Not a deskew store, or its marker is unreadable; nothing was deleted.
    #[error(transparent)]
    Marker(#[from] MarkerError),
    /// A record could not be used; nothing was deleted.
    #[error("{store}: a release record is unusable, so gc deleted nothing")]
    Catalog {
        /// The store.
        store: String,
        /// The record's problem.
        #[source]
        source: CatalogError,
    },
    /// A listed record was gone when read. Under the lease only gc deletes records, so
    /// something else does (a lifecycle rule, a hand); its release's files would look
    /// unreferenced. Nothing was deleted.
    #[error(
        "{store}: release record `{key}` was listed but gone when read; something other than deskew's gc deletes release records (a lifecycle rule on `.deskew/`?), so gc deleted nothing; stop it, then publish that release again or delete its files by hand"
    )]
    RecordVanished {
        /// The store.
        store: String,
        /// The record.
        key: Key,
    },
    /// A publish heartbeat is unreadable: the release it keeps alive is unknown. Nothing was
    /// deleted.
    #[error("{store}: publish heartbeat `{key}` is not a deskew heartbeat, so gc deleted nothing; if no publish is running, delete that file")]
    BadHeartbeat {
        /// The store.
        store: String,
        /// The heartbeat.
        key: Key,
    },
    /// The listing met something gc must not guess about; nothing was deleted.
    #[error("{store} holds {problem}, so gc deleted nothing; move it out of the store{}", if *.more > 0 { format!(" ({} more such entries)", .more) } else { String::new() })]
    Unlistable {
        /// The store.
        store: String,
        /// The first such entry.
        problem: ListingProblem,
        /// How many more.
        more: usize,
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
    /// Stopped on request (a signal) between writes.
    #[error(transparent)]
    Interrupted(#[from] Cancelled),
    /// A listing, read or write failed.
    #[error(transparent)]
    Store(StoreError),
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
        first: Box<StoreError>,
    },
}

impl From<StoreError> for GcError {
    fn from(e: StoreError) -> GcError {
        match e {
            e @ StoreError::GuardFailed { .. } => GcError::Lease(e.into()),
            e => GcError::Store(e),
        }
    }
}

/// What a plan is made from, read from the store.
struct Snapshot {
    records: Vec<ReleaseRecord>,
    heartbeats: Vec<FoundHeartbeat>,
    listing: Vec<ObjectMeta>,
    serving: HashSet<ReleaseId>,
}

/// Reads what a plan is made from: one listing of the whole store, then the records and
/// heartbeats it shows. A file in the listing was written after its publish's pending record,
/// so that record is in the listing too; records written later are met before each delete.
/// `locked`: under the lease, where no other gc can delete a record; a dry run holds no lease
/// and may meet one that does.
async fn snapshot(store: &dyn Store, host: &dyn Host, locked: bool) -> Result<Snapshot, GcError> {
    let listing = store.list(None).await?;
    if let Some(problem) = listing.problems.first() {
        return Err(GcError::Unlistable { store: store.url().into(), problem: problem.clone(), more: listing.problems.len() - 1 });
    }
    let catalog = Catalog::read_listed(store, &listing.objects).await;
    if let Some(key) = catalog.vanished.first().filter(|_| locked) {
        return Err(GcError::RecordVanished { store: store.url().into(), key: key.clone() });
    }
    let records = catalog.into_clean().map_err(|source| GcError::Catalog { store: store.url().into(), source })?;
    let heartbeats = heartbeat::read_listed(store, host, &listing.objects).await?;
    if let Some(hb) = heartbeats.iter().find(|hb| hb.body.is_none()) {
        return Err(GcError::BadHeartbeat { store: store.url().into(), key: hb.key.clone() });
    }
    let serving = serving(store, &records, Some(&listing.objects)).await?;
    Ok(Snapshot { records, heartbeats, listing: listing.objects, serving })
}

/// The releases the store's mutable files serve: reads and hashes the few that may hold another
/// release's content than the newest's (with a listing, only where the size matches). Under the
/// lease no publish writes them meanwhile.
pub async fn serving(store: &dyn Store, records: &[ReleaseRecord], listing: Option<&[ObjectMeta]>) -> Result<HashSet<ReleaseId>, StoreError> {
    let mut stored = HashMap::new();
    for key in crate::serving::to_read(records, listing) {
        match store.get(&key).await {
            Ok(bytes) => {
                stored.insert(key, crate::digest::sha256_hex(&bytes));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(crate::serving::serving(records, &stored))
}

/// Runs a GC.
pub async fn run(store: &dyn Store, host: &dyn Host, opts: &GcOptions, progress: &dyn Progress) -> Result<GcReport, GcError> {
    let marker = marker::require(store).await?;
    let cfg = LeaseConfig { poll: opts.lease_poll, ..LeaseConfig::new(opts.lease_ttl, marker.max_clock_skew()) };
    if opts.dry_run {
        let snap = snapshot(store, host, false).await?;
        let plan = make_plan(&snap, opts, host, cfg)?;
        return Ok(GcReport { plan, dry_run: true, deleted: 0, deleted_bytes: 0, spared: Vec::new() });
    }
    let mut lease = Lease::acquire(store, host, cfg, Purpose::Gc, opts.lease_wait, &|why| progress.waiting(why)).await?;
    let result = run_locked(store, host, opts, cfg, &mut lease, progress).await;
    if let Err(e) = lease.release(store, host).await {
        tracing::info!("the gc lease was not released: {}", crate::error_chain(&e));
    }
    result
}

fn make_plan(snap: &Snapshot, opts: &GcOptions, host: &dyn Host, cfg: LeaseConfig) -> Result<GcPlan, GcError> {
    let faulty: Vec<ReleaseRecord>;
    let records = if opts.faults.rank_by_creation {
        faulty = snap
            .records
            .iter()
            .cloned()
            .map(|mut r| {
                r.completed = r.completed.map(|_| r.created);
                r
            })
            .collect();
        &faulty
    } else {
        &snap.records
    };
    let none = HashSet::new();
    let input = PlanInput {
        records,
        heartbeats: if opts.faults.ignore_heartbeats { &[] } else { &snap.heartbeats },
        serving: if opts.faults.ignore_serving { &none } else { &snap.serving },
        listing: &snap.listing,
        policy: &opts.policy,
        now: host.now(),
        skew: cfg.skew,
    };
    let plan = gc_plan::plan(input)?;
    if let Some(max) = opts.max_delete {
        if plan.delete_count() > max {
            return Err(GcError::TooMany { would: plan.delete_count(), max });
        }
    }
    Ok(plan)
}

/// What the locked phases share.
struct Locked<'a> {
    store: &'a dyn Store,
    host: &'a dyn Host,
    lease: &'a mut Lease,
    progress: &'a dyn Progress,
    cancel: &'a Cancel,
    report: GcReport,
}

async fn run_locked(
    store: &dyn Store,
    host: &dyn Host,
    opts: &GcOptions,
    cfg: LeaseConfig,
    lease: &mut Lease,
    progress: &dyn Progress,
) -> Result<GcReport, GcError> {
    let snap = lease.keep_alive(store, host, snapshot(store, host, true)).await?;
    let plan = make_plan(&snap, opts, host, cfg)?;
    let report = GcReport { plan, dry_run: false, deleted: 0, deleted_bytes: 0, spared: Vec::new() };
    let mut run = Locked { store, host, lease, progress, cancel: &opts.cancel, report };
    if !opts.faults.no_tombstones {
        run.mark_dropping(&snap.records).await?;
    }
    let seen: HashSet<Key> = snap.records.iter().map(|r| layout::record_key(&r.release)).collect();
    let files = run.report.plan.files.clone();
    for batch in files.chunks(opts.batch.max(1) * PARALLEL_DELETES) {
        let protected = if opts.faults.skip_new_records_check { HashSet::new() } else { new_records_files(store, &seen).await? };
        let (spared, doomed): (Vec<_>, Vec<_>) = batch.iter().partition(|d| protected.contains(&d.key));
        run.report.spared.extend(spared.into_iter().map(|d| d.key.clone()));
        let keys: Vec<(Key, u64)> = doomed.into_iter().map(|d| (d.key.clone(), d.size)).collect();
        run.delete(&keys).await?;
    }
    let records: Vec<(Key, u64)> = run.report.plan.records.iter().map(|k| (k.clone(), 0)).collect();
    run.delete(&records).await?;
    let heartbeats: Vec<(Key, u64)> = run.report.plan.heartbeats.iter().map(|k| (k.clone(), 0)).collect();
    run.delete(&heartbeats).await?;
    Ok(run.report)
}

impl Locked<'_> {
    /// Phase 1: every dropped release's record says `dropping` before any of its files goes.
    async fn mark_dropping(&mut self, records: &[ReleaseRecord]) -> Result<(), GcError> {
        for id in self.report.plan.tombstones.clone() {
            self.cancel.check()?;
            let Some(r) = records.iter().find(|r| r.release == id) else { continue };
            let mut tomb = r.clone();
            tomb.state = ReleaseState::Dropping;
            tomb.dropping_since = Some(self.host.now());
            self.lease.ensure(self.store, self.host).await?;
            let put = PutOptions { content_type: Some("application/json".into()), guard: Some(self.lease.guard(self.host)), ..PutOptions::default() };
            self.store.put(&layout::record_key(&id), Body::Bytes(Bytes::from(tomb.to_json())), &put).await?;
        }
        Ok(())
    }

    /// Deletes `keys` (with their sizes), [`PARALLEL_DELETES`] requests at a time, each group
    /// after a lease check and every request under its guard.
    async fn delete(&mut self, keys: &[(Key, u64)]) -> Result<(), GcError> {
        let mut failed = 0;
        let mut first = None;
        let per_request = self.store.max_delete_batch().max(1);
        for group in keys.chunks(per_request * PARALLEL_DELETES) {
            // Stop between requests: what was deleted is counted, records stay for the next gc.
            self.cancel.check()?;
            self.lease.ensure(self.store, self.host).await?;
            let guard = self.lease.guard(self.host);
            let store = self.store;
            let requests = group.chunks(per_request).map(|chunk| {
                let ks: Vec<Key> = chunk.iter().map(|(k, _)| k.clone()).collect();
                let guard = &guard;
                async move { store.delete_many(&ks, Some(guard)).await }
            });
            let results = futures::future::join_all(requests).await;
            let mut done = 0;
            for (r, (_, size)) in results.into_iter().flatten().zip(group) {
                match r {
                    Ok(()) => {
                        done += 1;
                        self.report.deleted += 1;
                        self.report.deleted_bytes += size;
                    }
                    Err(StoreError::GuardFailed { store, .. }) => return Err(GcError::Lease(LeaseError::Lost { store, by: None })),
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert(e);
                    }
                }
            }
            self.progress.deleted(done);
        }
        match first {
            None => Ok(()),
            Some(first) => Err(GcError::Deletes { store: self.store.url().into(), failed, attempted: keys.len(), first: Box::new(first) }),
        }
    }
}

/// Files referenced by records that appeared since the plan was made.
async fn new_records_files(store: &dyn Store, seen: &HashSet<Key>) -> Result<HashSet<Key>, GcError> {
    let listing = store.list(Some(&layout::releases_dir())).await?;
    let mut out = HashSet::new();
    for obj in listing.objects {
        if seen.contains(&obj.key) || layout::record_id(&obj.key).is_none() || layout::is_temp(&obj.key) {
            continue;
        }
        let bytes = match store.get(&obj.key).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let record = ReleaseRecord::parse(&obj.key, &bytes).map_err(|e| GcError::Catalog { store: store.url().into(), source: e.into() })?;
        out.extend(record.stored_files().map(|(k, _)| k));
    }
    Ok(out)
}
