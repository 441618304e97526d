//! What a GC run may delete, computed from the records and one listing. Pure: no I/O here.
//!
//! A stored object is deleted only if no kept release references it. Objects of dropped releases
//! go at once; objects no release references at all (a crashed publish's uploads, temp files)
//! only once they are older than the grace period, since a publish that is writing them right
//! now may not have written its record yet. Records of dropped releases are deleted last, after
//! their files, so a GC that dies half-way leaves records that let the next run finish the job.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::key::Key;
use crate::layout;
use crate::release::{ReleaseId, ReleaseRecord};
use crate::retention::{self, Decision, Policy, RetentionError};
use crate::store::ObjectMeta;
use crate::time::Timestamp;

/// Why an object is to be deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum DeleteReason {
    /// Referenced only by dropped releases.
    Dropped {
        /// The dropped releases that referenced it.
        releases: Vec<ReleaseId>,
    },
    /// Referenced by no release and older than the grace period.
    Unreferenced,
}

/// One planned delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedDelete {
    /// The object.
    pub key: Key,
    /// Its size.
    pub size: u64,
    /// Why it goes.
    pub reason: DeleteReason,
}

/// The plan of a GC run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcPlan {
    /// The verdict on every release.
    pub releases: Vec<Decision>,
    /// Files to delete, sorted by key.
    pub files: Vec<PlannedDelete>,
    /// Records of dropped releases, deleted after `files`.
    pub records: Vec<Key>,
    /// Objects kept.
    pub kept_objects: u64,
    /// Bytes kept.
    pub kept_bytes: u64,
}

impl GcPlan {
    /// Objects to delete, records included.
    pub fn delete_count(&self) -> usize {
        self.files.len() + self.records.len()
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

/// Plans a GC over `records` (newest first) and `listing` (every object in the store).
pub fn plan(
    records: &[ReleaseRecord],
    listing: &[ObjectMeta],
    policy: &Policy,
    now: Timestamp,
) -> Result<GcPlan, RetentionError> {
    let releases = retention::decide(records, policy, now)?;
    let kept_ids: HashSet<&ReleaseId> = releases.iter().filter(|d| d.kept).map(|d| &d.release).collect();

    let mut kept_keys: HashSet<Key> = HashSet::new();
    let mut dropped_keys: HashMap<Key, Vec<ReleaseId>> = HashMap::new();
    let mut dropped_records: HashSet<Key> = HashSet::new();
    for r in records {
        let record_key = layout::record_key(&r.release);
        if kept_ids.contains(&r.release) {
            kept_keys.insert(record_key);
            kept_keys.extend(r.stored_files().map(|(k, _)| k));
        } else {
            dropped_records.insert(record_key);
            for (k, _) in r.stored_files() {
                dropped_keys.entry(k).or_default().push(r.release.clone());
            }
        }
    }

    let lease = layout::lease_key();
    let mut plan = GcPlan { releases, ..GcPlan::default() };
    for obj in listing {
        if obj.key == lease || kept_keys.contains(&obj.key) {
            plan.kept_objects += 1;
            plan.kept_bytes += obj.size;
            continue;
        }
        if dropped_records.contains(&obj.key) {
            plan.records.push(obj.key.clone());
            continue;
        }
        if let Some(ids) = dropped_keys.get(&obj.key) {
            let mut releases = ids.clone();
            releases.sort();
            plan.files.push(PlannedDelete { key: obj.key.clone(), size: obj.size, reason: DeleteReason::Dropped { releases } });
            continue;
        }
        let age = Timestamp(obj.modified).age_at(now);
        // A record file is never "unreferenced": every readable record was accounted for above,
        // and the catalog refused to go on if any was unreadable.
        if age >= policy.grace && layout::record_id(&obj.key).is_none() {
            plan.files.push(PlannedDelete { key: obj.key.clone(), size: obj.size, reason: DeleteReason::Unreferenced });
        } else {
            plan.kept_objects += 1;
            plan.kept_bytes += obj.size;
        }
    }
    plan.files.sort_by(|a, b| a.key.cmp(&b.key));
    plan.records.sort();
    Ok(plan)
}
