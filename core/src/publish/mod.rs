//! The publish engine: puts a build's files into a store so that every pod, old or new, finds
//! every asset during a rolling update.
//!
//! The protocol, one function per step (ARCHITECTURE.md, "The store protocol", says why each
//! step is there):
//! 1. [`start_heartbeat`]: announce a live publish; renewed until the end.
//! 2. [`register`]: write the release's record as `pending` (create-only; resume one left by a
//!    crashed attempt; take back one a gc was dropping, under the lease).
//! 3. [`wait_for_gc`]: wait until no gc holds the lease, then check the record is still ours.
//!    From here on, any gc reads our record and keeps every file it references.
//! 4. [`upload_missing`]: upload what no complete release vouches for, entry files last; one
//!    listing first, unless the records read before registering still hold and no attempt left
//!    files behind.
//! 5. [`complete`]: under the lease, list the store, upload anything that vanished, and only then
//!    rewrite the record as `complete`.
//!
//! Before step 1, a release published again while it is still the newest complete one, listed
//! whole and with its mutable files holding its content, writes nothing
//! ([`Outcome::AlreadyComplete`]). The reads that come first (marker, lease epoch, records, and
//! that listing) can be made while the build is still hashed ([`Preread`], [`publish_after`]).
//!
//! Killed at any step, the store holds at most a pending record (which says "not whole") and
//! some files; rerunning the same publish resumes it.

pub mod plan;
pub mod source;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cancel::{Cancel, Cancelled};
use crate::catalog::{Catalog, CatalogError};
use crate::heartbeat::{self, Heartbeat};
use crate::host::Host;
use crate::key::Key;
use crate::layout;
use crate::lease::{self, Lease, LeaseConfig, LeaseError, Purpose};
use crate::manifest::{FileClass, Manifest, ManifestFile};
use crate::marker::{self, MarkerError};
use crate::progress::{NoProgress, Progress};
use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::retention::{Policy, RetentionError};
use crate::store::{Body, PutMode, PutOptions, Store, StoreError, WriteGuard};

pub use source::{BuildSource, DirSource, MemSource, SourceError};

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
    /// Lease lifetime between renewals.
    pub lease_ttl: Duration,
    /// How long to wait for a running gc, at each step that waits.
    pub lease_wait: Duration,
    /// How often to look at the lease again while waiting.
    pub lease_poll: Duration,
    /// Heartbeat lifetime.
    pub heartbeat_ttl: Duration,
    /// How often the heartbeat is renewed.
    pub heartbeat_every: Duration,
    /// Read and hash every stored file of an existing release, upload again what is missing or
    /// differs, and check it again afterwards.
    pub repair: bool,
    /// Stops the publish between writes when cancelled.
    pub cancel: Cancel,
    /// Safety steps to skip: for the simulation's self-test only.
    #[doc(hidden)]
    pub faults: crate::faults::Faults,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            dry_run: false,
            strict: false,
            concurrency: 16,
            policy: None,
            lease_ttl: lease::DEFAULT_TTL,
            lease_wait: Duration::from_secs(600),
            lease_poll: lease::POLL,
            heartbeat_ttl: heartbeat::TTL,
            heartbeat_every: heartbeat::RENEW_EVERY,
            repair: false,
            cancel: Cancel::new(),
            faults: crate::faults::Faults::default(),
        }
    }
}

/// How a publish ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The release is now complete in the store.
    Published,
    /// The release was already complete with the same content: nothing was written.
    AlreadyComplete,
    /// Nothing was written on purpose.
    DryRun,
    /// `--repair` found files missing or damaged, uploaded them again, and the release checks
    /// whole now.
    Repaired,
}

/// A mutable file whose stored content this publish replaces while kept releases still serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Conflict {
    /// The file.
    pub path: Key,
    /// Its sha256 in this release.
    pub sha256: String,
    /// Kept releases with other content at this path: their clients will get the new content.
    pub releases: Vec<ReleaseId>,
}

/// What a publish did.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
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
    /// Files that vanished before the last step and were uploaded again.
    pub repaired: u64,
    /// When the release became complete (its place in retention order); `None` for a dry run.
    pub completed: Option<crate::time::Timestamp>,
    /// Keys written (or that would be), in order.
    pub uploaded_keys: Vec<Key>,
    /// Mutable files replaced under kept releases.
    pub conflicts: Vec<Conflict>,
    /// Things the user should know: unreadable records ignored for dedupe, unusable entries.
    pub warnings: Vec<String>,
}

/// Why a publish failed. The store is left with at most a pending record, which a rerun resumes.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Not a deskew store.
    #[error(transparent)]
    Marker(#[from] MarkerError),
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
    /// A file would change content under a name one of the releases treats as immutable.
    #[error("`{path}` has other content in release {} of {store}, and one of the two is immutable (a content-hashed name, cached by browsers for a year), so it must never change in place; nothing was written. If the name carries no content hash, class it mutable in every build (--mutable GLOB)", join_ids(.releases))]
    Clash {
        /// The file.
        path: Key,
        /// The releases holding other content.
        releases: Vec<ReleaseId>,
        /// The store.
        store: String,
    },
    /// An immutable file is already stored with other content (written by a concurrent
    /// publish, or by none we know of); it is never overwritten.
    #[error(
        "`{key}` in {store} already holds other content (sha256 {stored}) than this build's (sha256 {ours}); an immutable file is never overwritten, so release `{release}` stays pending. If the name carries no content hash, class it mutable (--mutable GLOB)"
    )]
    StoredClash {
        /// The key.
        key: Key,
        /// The store.
        store: String,
        /// sha256 of what is stored.
        stored: String,
        /// sha256 of this build's file.
        ours: String,
        /// The release.
        release: ReleaseId,
    },
    /// A folder this build writes into holds a deskew store of its own.
    #[error("`{folder}` in {store} holds a deskew store of its own (`{folder}/.deskew/store.json`); refusing to write `{path}` into it; nothing was written")]
    NestedStore {
        /// The folder.
        folder: Key,
        /// The first file that would go into it.
        path: Key,
        /// The store.
        store: String,
    },
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
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A source file changed since the manifest was made.
    #[error("`{}` changed after its manifest was computed; rebuild and publish again", .path.display())]
    Changed {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The record kept being taken away (a gc dropping it each time).
    #[error("release `{release}` kept being dropped by a concurrent gc in {store}; its publish is not complete")]
    Contended {
        /// The release.
        release: ReleaseId,
        /// The store.
        store: String,
    },
    /// The retention policy is invalid.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// Waiting for or holding the lease failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Stopped on request (a signal) between writes.
    #[error(transparent)]
    Interrupted(#[from] Cancelled),
    /// `--repair` of a release that is not in the store.
    #[error("nothing to repair: release `{release}` is not in {store}; publish it without --repair")]
    NothingToRepair {
        /// The release.
        release: ReleaseId,
        /// The store.
        store: String,
    },
    /// After a repair, the release still does not check whole.
    #[error("release `{release}` still has {count} missing or damaged file(s) after the repair (first: `{first}`)")]
    StillDamaged {
        /// The release.
        release: ReleaseId,
        /// How many.
        count: usize,
        /// The first one.
        first: Key,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> PublishError {
        match e {
            e @ StoreError::GuardFailed { .. } => PublishError::Lease(e.into()),
            e => PublishError::Store(e),
        }
    }
}

fn join_ids(ids: &[ReleaseId]) -> String {
    ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// Everything the steps share.
struct Ctx<'a> {
    /// Whether the store honours create-only writes. If not, no gc can run on it (it refuses
    /// without a lease), and publish, which only adds, needs no lease either.
    exclusive: bool,
    store: &'a dyn Store,
    host: &'a dyn Host,
    source: &'a dyn BuildSource,
    opts: &'a PublishOptions,
    progress: &'a dyn Progress,
    cfg: LeaseConfig,
    /// Keys `--repair` found damaged: overwritten, even if immutable.
    damaged: std::collections::HashSet<Key>,
    /// Whether the store may hold uploads an earlier attempt left ([`plan::may_hold_leftovers`]):
    /// the upload step then lists the store to find them.
    leftovers: bool,
    /// When the records were read, before registering, and the lease's top epoch seen just
    /// before: if no gc can have run since, what they vouch for is still stored.
    catalog_read_at: crate::time::Timestamp,
    lease_before: Option<u64>,
}

impl Ctx<'_> {
    fn waiting(&self) -> impl Fn(&LeaseError) + Send + Sync + '_ {
        |why| self.progress.waiting(why)
    }
}

/// What a publish reads from the store before it looks at the build. It only reads, so it can
/// run while the build is hashed (`deskew publish` does): the marker, the lease's top epoch, the
/// records and, when the release named in advance is already the newest complete one (a retried
/// pipeline), a listing of the whole store. A publish given one goes on from it as if it had
/// read it itself at that moment: every step holds for any delay between the reads and what
/// follows (the simulation puts a random one in), since any gc that may have run in between is
/// seen by the lease's epoch, and the last step lists the store again before it completes.
pub struct Preread {
    skew: Duration,
    read_at: crate::time::Timestamp,
    lease_before: Option<u64>,
    catalog: Catalog,
    /// The store listed for a publish of this release, used only to find it still whole.
    listing: Option<(ReleaseId, crate::store::Listing)>,
}

impl Preread {
    /// Reads ahead for a publish of `release` (when its id is known before the build is
    /// hashed). `None` where the place is not a store yet: the publish makes it first.
    pub async fn read(store: &dyn Store, host: &dyn Host, release: Option<&ReleaseId>) -> Result<Option<Preread>, PublishError> {
        let Some(marker) = marker::read(store).await? else { return Ok(None) };
        let read_at = host.now();
        let lease_before = lease::top_epoch(store).await?;
        let catalog = Catalog::load(store).await?;
        let listing = match release {
            // Only a shortcut: if it fails, the publish lists the store itself when it needs to
            // (a build whose content differs needs no listing, and gets its own error).
            Some(r) if catalog.problems.is_empty() && plan::is_newest_complete(&catalog.records, r) => {
                let own = catalog.get(r).expect("the newest complete release is listed");
                list_for(store, own, true).await.ok().map(|l| (r.clone(), l))
            }
            _ => None,
        };
        Ok(Some(Preread { skew: marker.max_clock_skew(), read_at, lease_before, catalog, listing }))
    }
}

/// Publishes `manifest`, whose files `source` gives, to `store`.
pub async fn publish(
    store: &dyn Store,
    host: &dyn Host,
    source: &dyn BuildSource,
    manifest: Manifest,
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    publish_after(store, host, source, manifest, None, opts, progress).await
}

/// [`publish`], going on from what [`Preread::read`] read while the build was hashed (a dry run
/// reads again: it may run on a place that is not a store yet).
pub async fn publish_after(
    store: &dyn Store,
    host: &dyn Host,
    source: &dyn BuildSource,
    manifest: Manifest,
    pre: Option<Preread>,
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    let pre = match pre.filter(|_| !opts.dry_run) {
        Some(p) if opts.faults.fresh_preread => Preread { read_at: host.now(), lease_before: lease::top_epoch(store).await?, ..p },
        Some(p) => p,
        None => read_now(store, host, opts.dry_run).await?,
    };
    let cfg = LeaseConfig { poll: opts.lease_poll, ..LeaseConfig::new(opts.lease_ttl, pre.skew) };
    let mut ctx = Ctx {
        exclusive: false,
        store,
        host,
        source,
        opts,
        progress,
        cfg,
        damaged: Default::default(),
        leftovers: true,
        catalog_read_at: pre.read_at,
        lease_before: pre.lease_before,
    };
    let mut report = empty_report(&manifest);
    let (catalog, unreadable) = sort_problems(pre.catalog, &manifest, &mut report)?;
    let mut listing = pre.listing.filter(|(r, _)| r == &manifest.release).map(|(_, l)| l);
    let own = catalog.get(&manifest.release);
    if let Some(own) = own.filter(|o| o.manifest.digest != manifest.digest) {
        return Err(different(store, &manifest.release, &own.manifest.digest));
    }
    // Published again (a rerun, a rollback): the release becomes the newest once more, after
    // the same steps, which also put back anything missing.
    let was_complete = own.is_some_and(|o| o.state == ReleaseState::Complete);
    if let Some(c) = plan::clashes(&catalog.records, &manifest).into_iter().next() {
        return Err(PublishError::Clash { path: c.path, releases: c.releases, store: store.url().into() });
    }
    if !opts.dry_run && !opts.repair && !unreadable && plan::is_newest_complete(&catalog.records, &manifest.release) {
        let own = own.expect("the newest complete release is ours");
        if opts.faults.unchecked_republish || unchanged(&ctx, own, listing.take(), &mut report).await? {
            report.outcome = Outcome::AlreadyComplete;
            report.skipped = report.files;
            report.completed = own.completed;
            return Ok(report);
        }
    }
    ctx.exclusive = !opts.dry_run && store.capabilities().await?.create_only;
    if !opts.dry_run && !ctx.exclusive {
        report.warnings.push(format!("{} does not honour create-only writes: gc cannot run on it, so publish takes no lease", store.url()));
    }
    ctx.leftovers = plan::may_hold_leftovers(&catalog.records, unreadable);
    check_not_nested(store, &manifest).await?;
    report.conflicts = plan::conflicts(&catalog.records, &manifest, opts.policy.as_ref(), host.now())?;
    if opts.strict && !report.conflicts.is_empty() {
        return Err(PublishError::Conflicts(report.conflicts));
    }
    let record = ReleaseRecord::pending(manifest, host.now());
    let mut vouched = plan::vouched(&record, &catalog.records);
    let damaged = if opts.repair { damaged_files(store, own, &record.release, &catalog.records, opts).await? } else { Vec::new() };
    for k in &damaged {
        vouched.remove(k); // not vouched for: upload it again
    }
    ctx.damaged = damaged.iter().cloned().collect();
    // What the kept releases' records say is decided on; at 50,000 files each holds 4-5 MB that
    // would otherwise stay alive while this release's own record is encoded and written.
    drop((catalog, listing));
    if opts.dry_run {
        dry_run(&ctx, &record, &vouched, &mut report).await?;
        if was_complete && report.uploaded == 0 {
            report.outcome = Outcome::AlreadyComplete;
        }
        return Ok(report);
    }
    let mut hb = start_heartbeat(&ctx, &record.release).await?;
    let result = hb.keep_alive(store, host, opts.heartbeat_every, run_steps(&ctx, record, vouched, report)).await;
    if let Err(e) = hb.stop(store).await {
        tracing::info!("the publish heartbeat was not removed (a gc will): {}", crate::error_chain(&e));
    }
    let mut report = result?;
    if was_complete && report.uploaded == 0 && report.repaired == 0 {
        report.outcome = Outcome::AlreadyComplete;
    }
    if opts.repair && !damaged.is_empty() {
        check_repaired(store, &report.release, opts).await?;
        report.outcome = Outcome::Repaired;
    }
    Ok(report)
}

/// Whether the newest complete release, published again, can be left as it is: the store lists
/// every file of it with its size (one deleted outside deskew, by a bucket lifecycle rule or by
/// hand, sends the publish through its steps, which put it back), and its mutable files hold its
/// content (a publish of another release that died in its last step may have changed them).
/// A listing taken ahead ([`Preread`]) serves as well as one taken now: it looks for files
/// deleted outside deskew, which can happen just after any listing too, and the MD5s it states
/// stand for what the mutable files held when it was taken, after this publish started, as the
/// reads that replace them would (a publish running alongside can change them after either).
async fn unchanged(ctx: &Ctx<'_>, own: &ReleaseRecord, listing: Option<crate::store::Listing>, report: &mut PublishReport) -> Result<bool, PublishError> {
    let listing = match listing {
        Some(l) => l,
        None => list_for(ctx.store, own, true).await?,
    };
    note_problems(report, &listing);
    if !plan::missing(own, &plan::sizes(&listing.objects)).is_empty() {
        return Ok(false);
    }
    let listed = plan::listed_md5s(own, &listing.objects);
    drop(listing);
    Ok(changed_mutable(ctx, own, &listed).await?.is_empty())
}

/// Refuses to write into a folder that holds a store of its own (its gc would drop our files'
/// records, ours would not know its files).
async fn check_not_nested(store: &dyn Store, manifest: &Manifest) -> Result<(), PublishError> {
    let folders = plan::folders(manifest);
    let found: Vec<Option<Key>> = futures::stream::iter(folders)
        .map(|folder| async move {
            let marker = Key::new(format!("{folder}/{}", layout::MARKER)).expect("a folder and the marker make a key");
            match store.get(&marker).await {
                Ok(_) => Ok(Some(folder)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let Some(folder) = found.into_iter().flatten().next() else { return Ok(()) };
    let path = manifest.files.iter().find(|f| f.class != FileClass::Entry && f.path.is_under(&folder)).map(|f| f.path.clone());
    Err(PublishError::NestedStore { path: path.unwrap_or_else(|| folder.clone()), folder, store: store.url().into() })
}

/// `--repair`: the stored files of the release that are missing, damaged or unreadable (a mutable
/// file a newer release replaced in place is not damage).
async fn damaged_files(
    store: &dyn Store,
    own: Option<&ReleaseRecord>,
    release: &ReleaseId,
    all: &[ReleaseRecord],
    opts: &PublishOptions,
) -> Result<Vec<Key>, PublishError> {
    let Some(own) = own else {
        return Err(PublishError::NothingToRepair { release: release.clone(), store: store.url().into() });
    };
    let report = crate::verify::verify(store, &[own], all, opts.concurrency).await?;
    Ok(report.findings.into_iter().map(|f| f.key).collect())
}

/// After a repair: the release must check whole.
async fn check_repaired(store: &dyn Store, release: &ReleaseId, opts: &PublishOptions) -> Result<(), PublishError> {
    let catalog = Catalog::load(store).await?;
    let Some(own) = catalog.get(release) else {
        return Err(PublishError::NothingToRepair { release: release.clone(), store: store.url().into() });
    };
    let report = crate::verify::verify(store, &[own], &catalog.records, opts.concurrency).await?;
    match report.findings.first() {
        None => Ok(()),
        Some(f) => Err(PublishError::StillDamaged { release: release.clone(), count: report.findings.len(), first: f.key.clone() }),
    }
}

/// The clock-skew allowance of the store; a store is created here (its marker written) unless
/// this is a dry run.
async fn store_skew(store: &dyn Store, host: &dyn Host, dry_run: bool) -> Result<Duration, PublishError> {
    let marker = if dry_run {
        match marker::read(store).await? {
            Some(m) => Some(m),
            None if store.is_empty().await? => None,
            None => return Err(MarkerError::NotAStore { store: store.url().into(), empty: false }.into()),
        }
    } else {
        Some(marker::for_publish(store, host).await?)
    };
    Ok(marker.map_or(marker::DEFAULT_MAX_CLOCK_SKEW, |m| m.max_clock_skew()))
}

fn empty_report(manifest: &Manifest) -> PublishReport {
    PublishReport {
        release: manifest.release.clone(),
        outcome: Outcome::Published,
        files: manifest.total.files,
        bytes: manifest.total.bytes,
        uploaded: 0,
        uploaded_bytes: 0,
        skipped: 0,
        repaired: 0,
        completed: None,
        uploaded_keys: Vec::new(),
        conflicts: Vec::new(),
        warnings: Vec::new(),
    }
}

fn different(store: &dyn Store, release: &ReleaseId, existing: &str) -> PublishError {
    PublishError::DifferentContent { release: release.clone(), store: store.url().into(), existing: existing.into() }
}

/// The reads a publish starts from, made now (no [`Preread`] was made, or it is a dry run).
async fn read_now(store: &dyn Store, host: &dyn Host, dry_run: bool) -> Result<Preread, PublishError> {
    let skew = store_skew(store, host, dry_run).await?;
    let read_at = host.now();
    let lease_before = if dry_run { None } else { lease::top_epoch(store).await? };
    Ok(Preread { skew, read_at, lease_before, catalog: Catalog::load(store).await?, listing: None })
}

/// Sorts out the records that could not be read: one costs only dedupe (a warning), unless it
/// is our own. Also says whether any record was unreadable.
fn sort_problems(mut catalog: Catalog, manifest: &Manifest, report: &mut PublishReport) -> Result<(Catalog, bool), PublishError> {
    let unreadable = !catalog.problems.is_empty();
    for p in std::mem::take(&mut catalog.problems) {
        if let CatalogError::Record(crate::release::RecordError::Parse { key, .. }) = &p {
            if layout::record_id(key) == Some(manifest.release.as_str()) {
                return Err(PublishError::OwnRecord { release: manifest.release.clone(), source: p });
            }
        }
        report.warnings.push(format!("ignored an unusable record (dedupe may upload more): {}", crate::error_chain(&p)));
    }
    Ok((catalog, unreadable))
}

async fn dry_run(ctx: &Ctx<'_>, record: &ReleaseRecord, vouched: &HashSet<Key>, report: &mut PublishReport) -> Result<(), PublishError> {
    let listing = ctx.store.list(None).await?;
    let needed = plan::needed(record, &plan::sizes(&listing.objects), vouched);
    count_uploads(report, &needed);
    report.outcome = Outcome::DryRun;
    Ok(())
}

/// The whole store listed for a release expected whole, split at its record and files
/// ([`Store::list_hinted`]), so on S3 the pages are fetched at once: each of those is listed if
/// stored. Its mutable files are hints only if `mutable_stored` (a release already complete):
/// the last step writes them after its listing, a first publish has none yet, and a hint the
/// store does not hold costs the plain listing besides. A mutable file not listed is read back
/// ([`changed_mutable`]); files of other releases may go unlisted on a server that orders keys
/// otherwise, and nothing here looks at those.
async fn list_for(store: &dyn Store, record: &ReleaseRecord, mutable_stored: bool) -> Result<crate::store::Listing, StoreError> {
    let files = record.stored_files().filter(|(_, f)| mutable_stored || f.class != FileClass::Mutable).map(|(k, _)| k);
    let hints: Vec<Key> = std::iter::once(layout::record_key(&record.release)).chain(files).collect();
    store.list_hinted(None, &hints).await
}

/// Warns about what a listing found that is not a usable key (once, if two listings find it).
fn note_problems(report: &mut PublishReport, listing: &crate::store::Listing) {
    for p in &listing.problems {
        let warning = format!("the store holds {p}; it was left alone");
        if !report.warnings.contains(&warning) {
            report.warnings.push(warning);
        }
    }
}

fn count_uploads(report: &mut PublishReport, needed: &[(Key, &ManifestFile)]) {
    report.skipped = report.files - needed.len() as u64;
    report.uploaded = needed.len() as u64;
    report.uploaded_bytes = needed.iter().map(|(_, f)| f.size).sum();
    report.uploaded_keys = needed.iter().map(|(k, _)| k.clone()).collect();
}

/// Step 1.
async fn start_heartbeat(ctx: &Ctx<'_>, release: &ReleaseId) -> Result<Heartbeat, PublishError> {
    Ok(Heartbeat::start(ctx.store, ctx.host, release, ctx.opts.heartbeat_ttl).await?)
}

async fn run_steps(ctx: &Ctx<'_>, mut record: ReleaseRecord, vouched: HashSet<Key>, mut report: PublishReport) -> Result<PublishReport, PublishError> {
    let mut registered = None;
    for _ in 0..3 {
        let size = register(ctx, &mut record).await?;
        if let Some(current) = wait_for_gc(ctx, &record, size).await? {
            registered = Some((current, size));
            break;
        }
    }
    let Some((catalog_current, size)) = registered else {
        return Err(PublishError::Contended { release: record.release, store: ctx.store.url().into() });
    };
    let list = ctx.leftovers || !catalog_current;
    upload_missing(ctx, &record, &vouched, list, &mut report).await?;
    drop(vouched);
    complete(ctx, record, size, &mut report).await?;
    Ok(report)
}

fn record_put() -> PutOptions {
    PutOptions { content_type: Some("application/json".into()), ..PutOptions::default() }
}

/// The record's bytes and their length.
fn encode(record: &ReleaseRecord) -> (Body, u64) {
    let json = record.to_json();
    let size = json.len() as u64;
    (Body::Bytes(Bytes::from(json)), size)
}

/// Our record as stored, with its size; an error if the release has other content there.
async fn read_own(store: &dyn Store, record: &ReleaseRecord) -> Result<Option<(ReleaseRecord, u64)>, PublishError> {
    let key = layout::record_key(&record.release);
    match store.get(&key).await {
        Ok(bytes) => {
            let existing = ReleaseRecord::parse(&key, &bytes).map_err(|e| PublishError::OwnRecord { release: record.release.clone(), source: e.into() })?;
            if existing.manifest.digest != record.manifest.digest {
                return Err(different(store, &record.release, &existing.manifest.digest));
            }
            Ok(Some((existing, bytes.len() as u64)))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether our record is still the one of `size` bytes we wrote or read, judged from a listing
/// that shows it at `listed` bytes (`None`: absent); read back only when the size changed. A
/// record is large (a 50,000-file build's is 12 MB), so steps 3 and 5 list instead of reading it:
/// every change deskew makes to a record changes its size (`dropping` adds a field) or removes
/// it. `Some(true)`: ours, not dropping; `Some(false)`: ours, dropping; `None`: gone.
async fn still_own(store: &dyn Store, record: &ReleaseRecord, size: u64, listed: Option<u64>) -> Result<Option<bool>, PublishError> {
    match listed {
        None => Ok(None),
        Some(s) if s == size => Ok(Some(true)),
        Some(_) => Ok(read_own(store, record).await?.map(|(r, _)| r.state != ReleaseState::Dropping)),
    }
}

/// Step 2: our record exists, pending (or complete: published before, or by a concurrent
/// publish of the same release).
/// Returns the stored record's size.
async fn register(ctx: &Ctx<'_>, record: &mut ReleaseRecord) -> Result<u64, PublishError> {
    ctx.opts.cancel.check()?;
    let key = layout::record_key(&record.release);
    let create = PutOptions { mode: PutMode::Create, ..record_put() };
    loop {
        let (body, size) = encode(record);
        match ctx.store.put(&key, body, &create).await {
            Ok(()) => return Ok(size),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match read_own(ctx.store, record).await? {
            None => continue, // dropped between our write and our read: write again
            Some((existing, _)) if existing.state == ReleaseState::Dropping => return take_back(ctx, record).await,
            Some((existing, size)) => {
                record.created = existing.created;
                return Ok(size);
            }
        }
    }
}

/// A gc was dropping our release (and may have died doing it): under the lease, no gc runs, so
/// the record can be made pending again; the last step uploads whatever the gc deleted.
async fn take_back(ctx: &Ctx<'_>, record: &mut ReleaseRecord) -> Result<u64, PublishError> {
    if !ctx.exclusive {
        let (body, size) = encode(record);
        ctx.store.put(&layout::record_key(&record.release), body, &record_put()).await?;
        return Ok(size);
    }
    let mut lease = Lease::acquire(ctx.store, ctx.host, ctx.cfg, Purpose::Publish, ctx.opts.lease_wait, &ctx.waiting()).await?;
    let result = async {
        match read_own(ctx.store, record).await? {
            Some((r, size)) if r.state != ReleaseState::Dropping => return Ok(size),
            Some((r, _)) => record.created = r.created,
            None => {}
        }
        lease.ensure(ctx.store, ctx.host).await?;
        let put = PutOptions { guard: Some(lease.guard(ctx.host)), ..record_put() };
        let (body, size) = encode(record);
        ctx.store.put(&layout::record_key(&record.release), body, &put).await?;
        Ok(size)
    }
    .await;
    let _ = lease.release(ctx.store, ctx.host).await;
    result
}

/// Step 3: waits until no gc holds the lease. `None` if a gc dropped our record meanwhile
/// (register again); else whether the records read before registering still hold: no one held
/// the lease since then, so no gc deleted anything they vouch for.
async fn wait_for_gc(ctx: &Ctx<'_>, record: &ReleaseRecord, size: u64) -> Result<Option<bool>, PublishError> {
    let mut current = !ctx.exclusive;
    if ctx.exclusive && !ctx.opts.faults.skip_wait_for_gc {
        let top = lease::wait_until_free(ctx.store, ctx.host, ctx.cfg, ctx.opts.lease_wait, &ctx.waiting()).await?;
        current = ctx.opts.faults.trust_stale_records || top.is_none_or(|t| t.idle_since(ctx.lease_before, ctx.catalog_read_at, ctx.cfg.skew));
    }
    if ctx.opts.faults.skip_recheck {
        return Ok(Some(current));
    }
    let key = layout::record_key(&record.release);
    let listed = ctx.store.list(Some(&layout::releases_dir())).await?.objects.into_iter().find(|o| o.key == key).map(|o| o.size);
    let ours = still_own(ctx.store, record, size, listed).await? == Some(true);
    Ok(ours.then_some(current))
}

/// Step 4: immutable and entry files. Mutable files, which every release shares at one path,
/// wait for the last step.
///
/// `list`: list the store and skip what it shows vouched for at the right size. Without a
/// listing, what a complete record vouches for is taken as stored: right when the store holds no
/// leftovers and no gc ran since the records were read (a complete record is whole, I3), and
/// the last step's listing checks it under the lease anyway.
async fn upload_missing(ctx: &Ctx<'_>, record: &ReleaseRecord, vouched: &HashSet<Key>, list: bool, report: &mut PublishReport) -> Result<(), PublishError> {
    let mut needed = if list {
        let listing = ctx.store.list(None).await?;
        note_problems(report, &listing);
        plan::needed(record, &plan::sizes(&listing.objects), vouched)
    } else {
        plan::unvouched(record, vouched)
    };
    let early = ctx.opts.faults.mutable_early;
    needed.retain(|(_, f)| early || f.class != FileClass::Mutable);
    count_uploads(report, &needed);
    ctx.progress.start(report.uploaded, report.uploaded_bytes);
    let (entries, assets): (Vec<_>, Vec<_>) = needed.into_iter().partition(|(_, f)| f.class == FileClass::Entry);
    upload_all(ctx, &record.release, assets, ctx.progress, None, &ctx.opts.cancel).await?;
    upload_all(ctx, &record.release, entries, ctx.progress, None, &ctx.opts.cancel).await
}

/// Step 5: under the lease, no gc deletes anything: what the listing shows stays until the
/// record says `complete`, and any later gc keeps what a complete release references. Mutable
/// files are written here, so the last release to complete is the one whose content they hold,
/// and a publish that fails earlier never changes what the current release serves.
async fn complete(ctx: &Ctx<'_>, mut record: ReleaseRecord, size: u64, report: &mut PublishReport) -> Result<(), PublishError> {
    if !ctx.exclusive || ctx.opts.faults.complete_without_lease {
        return complete_unleased(ctx, &mut record, report).await;
    }
    let mut last = None;
    for _ in 0..3 {
        let mut lease = Lease::acquire(ctx.store, ctx.host, ctx.cfg, Purpose::Publish, ctx.opts.lease_wait, &ctx.waiting()).await?;
        let result = complete_locked(ctx, &mut lease, &mut record, size, report).await;
        let _ = lease.release(ctx.store, ctx.host).await;
        match result {
            Err(PublishError::Lease(e @ LeaseError::Lost { .. })) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("three attempts failed").into())
}

async fn complete_locked(ctx: &Ctx<'_>, lease: &mut Lease, record: &mut ReleaseRecord, size: u64, report: &mut PublishReport) -> Result<(), PublishError> {
    // Always a listing here, whatever the records say: a file deleted outside deskew (a bucket
    // lifecycle rule, a hand) is found and put back before the record says `complete`.
    let listing = list_for(ctx.store, record, false).await?;
    note_problems(report, &listing);
    // Still ours (same content): a record of another size is read back and compared. Gone or
    // dropping (a gc while this publish stalled) is fine: what it lists is put back below.
    let key = layout::record_key(&record.release);
    still_own(ctx.store, record, size, listing.objects.iter().find(|o| o.key == key).map(|o| o.size)).await?;
    let mut missing = plan::missing(record, &plan::sizes(&listing.objects));
    let listed = plan::listed_md5s(record, &listing.objects);
    drop(listing); // 50,000 keys: not alive while the record is encoded below
    missing.retain(|(_, f)| f.class != FileClass::Mutable);
    if !missing.is_empty() {
        tracing::info!(count = missing.len(), "files vanished before the last step; uploading them again");
        report.repaired += missing.len() as u64;
        lease.keep_alive(ctx.store, ctx.host, upload_all(ctx, &record.release, missing, &NoProgress, None, &ctx.opts.cancel)).await?;
    }
    let changed = lease.keep_alive(ctx.store, ctx.host, changed_mutable(ctx, record, &listed)).await?;
    // The last point a signal stops the publish: from the first mutable write on, stopping
    // would leave the store serving a mix of two releases, so the few writes left finish.
    ctx.opts.cancel.check()?;
    let _critical = ctx.opts.cancel.critical();
    for chunk in changed.chunks(ctx.opts.concurrency.max(1)) {
        lease.ensure(ctx.store, ctx.host).await?;
        upload_all(ctx, &record.release, chunk.to_vec(), &NoProgress, Some(lease.guard(ctx.host)), &Cancel::new()).await?;
    }
    count_mutable(report, &changed);
    lease.ensure(ctx.store, ctx.host).await?;
    record.state = ReleaseState::Complete;
    record.completed = Some(ctx.host.now().max(record.created));
    let put = PutOptions { guard: Some(lease.guard(ctx.host)), ..record_put() };
    ctx.store.put(&layout::record_key(&record.release), encode(record).0, &put).await?;
    report.completed = record.completed;
    Ok(())
}

/// Step 5 on a store where no gc can run.
async fn complete_unleased(ctx: &Ctx<'_>, record: &mut ReleaseRecord, report: &mut PublishReport) -> Result<(), PublishError> {
    let listing = list_for(ctx.store, record, false).await?;
    let mut missing = plan::missing(record, &plan::sizes(&listing.objects));
    let listed = plan::listed_md5s(record, &listing.objects);
    drop(listing);
    missing.retain(|(_, f)| f.class != FileClass::Mutable);
    report.repaired += missing.len() as u64;
    upload_all(ctx, &record.release, missing, &NoProgress, None, &ctx.opts.cancel).await?;
    let changed = changed_mutable(ctx, record, &listed).await?;
    ctx.opts.cancel.check()?; // the last point a signal stops it, as in `complete_locked`
    let _critical = ctx.opts.cancel.critical();
    upload_all(ctx, &record.release, changed.clone(), &NoProgress, None, &Cancel::new()).await?;
    count_mutable(report, &changed);
    record.state = ReleaseState::Complete;
    record.completed = Some(ctx.host.now().max(record.created));
    ctx.store.put(&layout::record_key(&record.release), encode(record).0, &record_put()).await?;
    report.completed = record.completed;
    Ok(())
}

/// This release's mutable files whose stored content differs from the build's: a record cannot
/// tell, since a publish that died in this step may have left other content there. A file the
/// listing (`listed`, taken under the same lease, or ahead for a publish that writes nothing)
/// states the MD5 of the build's bytes for is taken as holding them; any other is read back and
/// hashed, one the listing does not show included (writing it unread broke I7 in the
/// simulation's directory model, seed 8306).
async fn changed_mutable<'r>(ctx: &Ctx<'_>, record: &'r ReleaseRecord, listed: &HashMap<Key, [u8; 16]>) -> Result<Vec<(Key, &'r ManifestFile)>, PublishError> {
    if ctx.opts.faults.mutable_early {
        return Ok(Vec::new());
    }
    let mutable: Vec<(Key, &ManifestFile)> = record.stored_files().filter(|(_, f)| f.class == FileClass::Mutable).collect();
    let checked: Vec<Option<(Key, &ManifestFile)>> = futures::stream::iter(mutable)
        .map(|(key, f)| async move {
            if let Some(stated) = listed.get(&key) {
                if ctx.opts.faults.trust_listed_md5 || build_md5(ctx, f).await == Some(*stated) {
                    return Ok(None);
                }
            }
            match ctx.store.get(&key).await {
                Ok(bytes) if crate::digest::sha256_hex(&bytes) == *f.sha256 => Ok(None),
                Ok(_) => Ok(Some((key, f))),
                Err(e) if e.is_not_found() => Ok(Some((key, f))),
                Err(e) => Err(PublishError::from(e)),
            }
        })
        .buffer_unordered(ctx.opts.concurrency.max(1))
        .try_collect()
        .await?;
    let mut changed: Vec<_> = checked.into_iter().flatten().collect();
    changed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(changed)
}

/// The MD5 of `file`'s bytes in the build, if they still have the sha256 the manifest gives
/// (`None` if they do not, or cannot be read: the stored copy is then read back instead).
async fn build_md5(ctx: &Ctx<'_>, file: &ManifestFile) -> Option<[u8; 16]> {
    let (sha256, md5) = match ctx.source.body(file).await.ok()? {
        Body::Bytes(b) => crate::digest::sha256_md5(&b[..]).ok()?,
        Body::File(path) => tokio::task::spawn_blocking(move || crate::digest::sha256_md5(std::fs::File::open(path)?)).await.ok()?.ok()?,
    };
    (sha256 == *file.sha256).then_some(md5)
}

/// Adds the mutable files written in the last step to what was uploaded.
fn count_mutable(report: &mut PublishReport, written: &[(Key, &ManifestFile)]) {
    report.uploaded += written.len() as u64;
    report.uploaded_bytes += written.iter().map(|(_, f)| f.size).sum::<u64>();
    report.uploaded_keys.extend(written.iter().map(|(k, _)| k.clone()));
    report.skipped = report.files.saturating_sub(report.uploaded);
}

/// Uploads `files`. An immutable file is written create-only: one already stored is left as
/// it is if its content is the same, and refused otherwise (it is never overwritten), unless
/// `--repair` found it damaged. `guard` guards every write (mutable files, in the last step);
/// `cancel` stops it before each.
async fn upload_all(
    ctx: &Ctx<'_>,
    release: &ReleaseId,
    files: Vec<(Key, &ManifestFile)>,
    progress: &dyn Progress,
    guard: Option<WriteGuard>,
    cancel: &Cancel,
) -> Result<(), PublishError> {
    let guard = &guard;
    futures::stream::iter(files)
        .map(|(key, f)| async move {
            cancel.check()?;
            let create = f.class == FileClass::Immutable && ctx.exclusive && !ctx.damaged.contains(&key);
            let put = PutOptions {
                mode: if create { PutMode::Create } else { PutMode::Overwrite },
                content_type: Some(f.content_type.to_string()),
                cache_control: Some(f.cache_control.to_string()),
                sha256: Some(f.sha256.to_string()),
                guard: guard.clone(),
            };
            let mut attempts = 0;
            loop {
                attempts += 1;
                let body = ctx.source.body(f).await?;
                match ctx.store.put(&key, body, &put).await {
                    Ok(()) => break,
                    Err(StoreError::AlreadyExists { .. }) => match ctx.store.get(&key).await {
                        Ok(bytes) => {
                            let stored = crate::digest::sha256_hex(&bytes);
                            if stored == *f.sha256 {
                                break;
                            }
                            return Err(PublishError::StoredClash {
                                key,
                                store: ctx.store.url().into(),
                                stored,
                                ours: f.sha256.to_string(),
                                release: release.clone(),
                            });
                        }
                        // Deleted meanwhile (an orphan a gc removed): write it again.
                        Err(e) if e.is_not_found() && attempts < 3 => continue,
                        Err(e) => return Err(e.into()),
                    },
                    Err(StoreError::Checksum { .. }) => return Err(PublishError::Changed { path: ctx.source.describe(f) }),
                    Err(e) => return Err(e.into()),
                }
            }
            progress.stored(&key, f.size);
            Ok(())
        })
        .buffer_unordered(ctx.opts.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
