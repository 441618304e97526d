//! What a GC run may delete, computed from the records, the publish heartbeats and one listing.
//! Pure: no I/O here.
//!
//! - An object referenced by a kept release (complete and kept, pending and live, or serving)
//!   stays.
//! - An object referenced only by dropped releases goes; their records are first rewritten as
//!   `dropping` ([`GcPlan::tombstones`]) and deleted last ([`GcPlan::records`]), so a gc that
//!   dies half-way leaves records that say so and that the next gc finishes.
//! - An object no record references goes once it is older than the grace period.
//! - A directory store's temporary file goes once it is older than the grace period and
//!   [`TEMP_MIN_AGE`], whichever is longer: a write may be in progress.
//! - deskew's own folder is left alone but for dropped records, their entry files and lapsed
//!   heartbeats: the marker, the lease and anything a newer deskew put there stay.
//! - A store nested in this one (a folder holding its own `.deskew/store.json`) is not ours:
//!   nothing under it is touched.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::heartbeat::FoundHeartbeat;
use crate::key::Key;
use crate::layout;
use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::retention::{self, Decision, Policy, RetentionError};
use crate::store::ObjectMeta;
use crate::time::Timestamp;

/// The youngest a temporary file may be and still be deleted, whatever the grace period.
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(3600);

/// Why an object is to be deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum DeleteReason {
    /// Referenced only by dropped releases.
    Dropped {
        /// The dropped releases that referenced it.
        releases: Vec<ReleaseId>,
    },
    /// Referenced by no release and older than the grace period.
    Unreferenced,
    /// A temporary file left by a write that died.
    Temporary,
}

/// One planned delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PlannedDelete {
    /// The object.
    pub key: Key,
    /// Its size.
    pub size: u64,
    /// Why it goes.
    pub reason: DeleteReason,
}

/// The plan of a GC run.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub struct GcPlan {
    /// The verdict on every release.
    pub releases: Vec<Decision>,
    /// Dropped releases whose records are rewritten as `dropping` before any file goes.
    pub tombstones: Vec<ReleaseId>,
    /// Files to delete, sorted by key.
    pub files: Vec<PlannedDelete>,
    /// Records of dropped releases, deleted after `files`.
    pub records: Vec<Key>,
    /// Lapsed heartbeats of publishes that are over.
    pub heartbeats: Vec<Key>,
    /// Folders holding a store of their own, left alone.
    pub nested_stores: Vec<Key>,
    /// Objects kept.
    pub kept_objects: u64,
    /// Bytes kept.
    pub kept_bytes: u64,
}

impl GcPlan {
    /// Objects to delete, records and heartbeats included.
    pub fn delete_count(&self) -> usize {
        self.files.len() + self.records.len() + self.heartbeats.len()
    }

    /// Bytes to free.
    pub fn delete_bytes(&self) -> u64 {
        self.files.iter().map(|d| d.size).sum()
    }

    /// The releases this plan drops.
    pub fn dropped(&self) -> impl Iterator<Item = &ReleaseId> {
        self.releases.iter().filter(|d| !d.kept).map(|d| &d.release)
    }
}

/// Everything a plan is made from.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// Every record (the catalog refused to go on if any was unreadable).
    pub records: &'a [ReleaseRecord],
    /// Every publish heartbeat.
    pub heartbeats: &'a [FoundHeartbeat],
    /// The releases the store's mutable files serve ([`crate::serving`]).
    pub serving: &'a HashSet<ReleaseId>,
    /// Every object in the store.
    pub listing: &'a [ObjectMeta],
    /// The policy.
    pub policy: &'a Policy,
    /// The gc's clock.
    pub now: Timestamp,
    /// The store's clock-skew allowance.
    pub skew: Duration,
}

/// Plans a GC.
pub fn plan(input: PlanInput<'_>) -> Result<GcPlan, RetentionError> {
    let PlanInput { records, heartbeats, serving, listing, policy, now, skew } = input;
    let mut liveness = crate::heartbeat::liveness(heartbeats, skew, policy.grace);
    liveness.serving = serving.clone();
    let releases = retention::decide(records, &liveness, policy, now)?;
    let kept_ids: HashSet<&ReleaseId> = releases.iter().filter(|d| d.kept).map(|d| &d.release).collect();

    let mut kept_keys: HashSet<Key> = HashSet::new();
    let mut dropped_keys: HashMap<Key, Vec<ReleaseId>> = HashMap::new();
    let mut dropped_records: HashSet<Key> = HashSet::new();
    let mut tombstones = Vec::new();
    for r in records {
        if kept_ids.contains(&r.release) {
            kept_keys.insert(layout::record_key(&r.release));
            kept_keys.extend(r.stored_files().map(|(k, _)| k));
        } else {
            dropped_records.insert(layout::record_key(&r.release));
            if r.state != ReleaseState::Dropping {
                tombstones.push(r.release.clone());
            }
            for (k, _) in r.stored_files() {
                dropped_keys.entry(k).or_default().push(r.release.clone());
            }
        }
    }

    let nested = nested_stores(listing);
    let lapsed_heartbeats: HashSet<&Key> = heartbeats.iter().filter(|hb| hb.lapsed(skew, policy.grace)).map(|hb| &hb.key).collect();
    let deskew = layout::deskew_dir();
    let releases_dir = layout::releases_dir();
    let mut plan = GcPlan { releases, tombstones, nested_stores: nested.clone(), ..GcPlan::default() };
    for obj in listing {
        let age = Timestamp(obj.modified).age_at(now);
        let reason = if nested.iter().any(|n| obj.key.is_under(n)) || kept_keys.contains(&obj.key) || obj.key.as_str() == layout::CAS_PROBE {
            None
        } else if dropped_records.contains(&obj.key) {
            plan.records.push(obj.key.clone());
            continue;
        } else if lapsed_heartbeats.contains(&obj.key) {
            plan.heartbeats.push(obj.key.clone());
            continue;
        } else if let Some(ids) = dropped_keys.get(&obj.key) {
            let mut releases = ids.clone();
            releases.sort();
            Some(DeleteReason::Dropped { releases })
        } else if layout::is_temp(&obj.key) {
            (age >= policy.grace.max(TEMP_MIN_AGE)).then_some(DeleteReason::Temporary)
        } else if obj.key.is_under(&deskew) && !is_entry_file(&obj.key, &releases_dir) {
            None
        } else {
            (age >= policy.grace).then_some(DeleteReason::Unreferenced)
        };
        match reason {
            Some(reason) => plan.files.push(PlannedDelete { key: obj.key.clone(), size: obj.size, reason }),
            None => {
                plan.kept_objects += 1;
                plan.kept_bytes += obj.size;
            }
        }
    }
    plan.files.sort_by(|a, b| a.key.cmp(&b.key));
    plan.records.sort();
    plan.heartbeats.sort();
    Ok(plan)
}

/// Whether `key` is an entry file under `.deskew/releases/<id>/` (not a record).
fn is_entry_file(key: &Key, releases_dir: &Key) -> bool {
    key.is_under(releases_dir) && layout::record_id(key).is_none() && key.as_str().matches('/').count() >= 3
}

/// Folders `X` holding `X/.deskew/store.json`.
fn nested_stores(listing: &[ObjectMeta]) -> Vec<Key> {
    let suffix = format!("/{}", layout::MARKER);
    let mut out: Vec<Key> = listing.iter().filter_map(|o| o.key.as_str().strip_suffix(&suffix)).filter_map(|p| Key::new(p).ok()).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::time::SystemTime;

    use super::*;

    /// A temporary object older than the grace period goes; S3's conditional-write probe object,
    /// temporary too, stays: every probe would otherwise write it again, and `--max-delete 0`
    /// would trip on it.
    #[test]
    fn the_conditional_write_probe_object_is_left_alone() {
        let old = SystemTime::UNIX_EPOCH;
        let obj = |k: &str| ObjectMeta { key: Key::new(k).unwrap(), size: 5, modified: old, md5: None };
        let listing = [obj(layout::CAS_PROBE), obj(".deskew/.deskew-tmp-cas-123"), obj(layout::MARKER)];
        let policy = Policy { keep: NonZeroUsize::new(1).unwrap(), keep_for: None, pins: Vec::new(), grace: retention::DEFAULT_GRACE, published: None };
        let now = Timestamp(old + Duration::from_secs(86_400));
        let input =
            PlanInput { records: &[], heartbeats: &[], serving: &HashSet::new(), listing: &listing, policy: &policy, now, skew: Duration::from_secs(15) };
        let plan = plan(input).unwrap();
        let doomed: Vec<&str> = plan.files.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(doomed, [".deskew/.deskew-tmp-cas-123"]);
        assert_eq!(plan.kept_objects, 2);
    }
}
