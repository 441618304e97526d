//! What a publish must upload and what it changes, decided from records and a listing. Pure:
//! no I/O here.
//!
//! A file is skipped only if a complete release vouches for its content at that key (every
//! complete record referencing the key agrees on its sha256) and the listing shows the key with
//! the right size. Entry files live under the release's own folder, so only the release's own
//! complete record (a release published again) vouches for them.

use std::collections::{HashMap, HashSet};

use crate::key::Key;
use crate::manifest::{FileClass, Manifest, ManifestFile};
use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::retention::{self, Liveness, Policy, RetentionError};
use crate::store::ObjectMeta;
use crate::time::Timestamp;

use super::Conflict;

/// Keys and sizes of a listing.
pub fn sizes(listing: &[ObjectMeta]) -> HashMap<&Key, u64> {
    listing.iter().map(|o| (&o.key, o.size)).collect()
}

/// The MD5s `listing` states for `record`'s mutable files (S3's ETags).
pub fn listed_md5s(record: &ReleaseRecord, listing: &[ObjectMeta]) -> HashMap<Key, [u8; 16]> {
    let mutable: HashSet<Key> = record.stored_files().filter(|(_, f)| f.class == FileClass::Mutable).map(|(k, _)| k).collect();
    listing.iter().filter(|o| mutable.contains(&o.key)).filter_map(|o| Some((o.key.clone(), o.md5?))).collect()
}

/// The keys of `record`'s stored files whose content complete releases vouch for: every
/// complete record referencing the key agrees on its sha256, and it is `record`'s. Only these
/// keys are kept, not the records: a publish drops the kept releases' records before it writes
/// its own (at 50,000 files a record's entries take 4-5 MB).
pub fn vouched(record: &ReleaseRecord, records: &[ReleaseRecord]) -> HashSet<Key> {
    let mut agreed: HashMap<Key, Option<&str>> = HashMap::new();
    for r in records.iter().filter(|r| r.state == ReleaseState::Complete) {
        for (key, f) in r.stored_files() {
            agreed
                .entry(key)
                .and_modify(|v| {
                    if *v != Some(&*f.sha256) {
                        *v = None;
                    }
                })
                .or_insert(Some(&*f.sha256));
        }
    }
    record.stored_files().filter(|(key, f)| agreed.get(key).is_some_and(|v| *v == Some(&*f.sha256))).map(|(key, _)| key).collect()
}

/// The files of `record` the store lacks.
pub fn needed<'r>(record: &'r ReleaseRecord, listing: &HashMap<&Key, u64>, vouched: &HashSet<Key>) -> Vec<(Key, &'r ManifestFile)> {
    record
        .stored_files()
        .filter(|(key, f)| {
            let present = listing.get(key) == Some(&f.size) && vouched.contains(key);
            !present
        })
        .collect()
}

/// The files of `record` no complete release vouches for, when no listing was made: a vouched
/// file is stored, since a complete record is whole (I3); the last step's listing checks again.
pub fn unvouched<'r>(record: &'r ReleaseRecord, vouched: &HashSet<Key>) -> Vec<(Key, &'r ManifestFile)> {
    record.stored_files().filter(|(key, _)| !vouched.contains(key)).collect()
}

/// Whether uploads of an earlier attempt may lie in the store unreferenced by any complete
/// record: only a pending or dropping record (ours or another's) leaves such files, and an
/// unreadable record might be one. Without any, the upload step needs no listing.
pub fn may_hold_leftovers(records: &[ReleaseRecord], unreadable: bool) -> bool {
    unreadable || records.iter().any(|r| r.state != ReleaseState::Complete)
}

/// Whether `release` is complete and the newest complete release: publishing it again changes
/// nothing in retention order.
pub fn is_newest_complete(records: &[ReleaseRecord], release: &ReleaseId) -> bool {
    retention::newest_complete(records).is_some_and(|r| &r.release == release)
}

/// The files of `record` a listing does not show with the right size.
pub fn missing<'r>(record: &'r ReleaseRecord, listing: &HashMap<&Key, u64>) -> Vec<(Key, &'r ManifestFile)> {
    record.stored_files().filter(|(k, f)| listing.get(k) != Some(&f.size)).collect()
}

/// Mutable files of `manifest` whose stored content differs in releases the policy keeps
/// (every complete release without a policy).
pub fn conflicts(records: &[ReleaseRecord], manifest: &Manifest, policy: Option<&Policy>, now: Timestamp) -> Result<Vec<Conflict>, RetentionError> {
    let kept: HashSet<ReleaseId> = match policy {
        Some(p) => {
            let p = Policy { published: Some(manifest.release.clone()), ..p.clone() };
            let decisions = retention::decide(records, &Liveness::default(), &p, now)?;
            decisions.into_iter().filter(|d| d.kept && d.state == ReleaseState::Complete).map(|d| d.release).collect()
        }
        None => records.iter().filter(|r| r.state == ReleaseState::Complete).map(|r| r.release.clone()).collect(),
    };
    let mut out = Vec::new();
    for f in manifest.of_class(FileClass::Mutable) {
        let mut releases: Vec<ReleaseId> = records
            .iter()
            .filter(|r| r.release != manifest.release && kept.contains(&r.release))
            .filter(|r| r.manifest.file(&f.path).is_some_and(|o| o.class == FileClass::Mutable && o.sha256 != f.sha256))
            .map(|r| r.release.clone())
            .collect();
        if !releases.is_empty() {
            releases.sort();
            out.push(Conflict { path: f.path.clone(), sha256: f.sha256.to_string(), releases });
        }
    }
    Ok(out)
}

/// A path this build holds with other content than another release, where one of the two is
/// immutable: browsers cache an immutable file for a year, so it must never change in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clash {
    /// The file.
    pub path: Key,
    /// Releases (complete or being published) with other content at that path.
    pub releases: Vec<ReleaseId>,
}

/// Files of `manifest` that would overwrite, or be overwritten by, another release's immutable
/// file with other content. Releases being dropped do not count: their files are going.
pub fn clashes(records: &[ReleaseRecord], manifest: &Manifest) -> Vec<Clash> {
    let mut out = Vec::new();
    for f in manifest.files.iter().filter(|f| f.class != FileClass::Entry) {
        let mut releases: Vec<ReleaseId> = records
            .iter()
            .filter(|r| r.release != manifest.release && r.state != ReleaseState::Dropping)
            .filter(|r| {
                r.manifest.file(&f.path).is_some_and(|o| {
                    o.class != FileClass::Entry && o.sha256 != f.sha256 && (o.class == FileClass::Immutable || f.class == FileClass::Immutable)
                })
            })
            .map(|r| r.release.clone())
            .collect();
        if !releases.is_empty() {
            releases.sort();
            out.push(Clash { path: f.path.clone(), releases });
        }
    }
    out
}

/// Folders of `manifest`'s public files (`assets`, `assets/fonts`), where a nested store's
/// marker would sit.
pub fn folders(manifest: &Manifest) -> Vec<Key> {
    let mut out: Vec<Key> = manifest
        .files
        .iter()
        .filter(|f| f.class != FileClass::Entry)
        .flat_map(|f| {
            let p = f.path.as_str();
            p.match_indices('/').map(move |(i, _)| &p[..i])
        })
        .filter_map(|d| Key::new(d).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn file(path: &str, sha: char) -> ManifestFile {
        ManifestFile {
            path: Key::new(path).unwrap(),
            sha256: sha.to_string().repeat(64).into(),
            size: 1,
            content_type: "text/javascript".into(),
            cache_control: "public".into(),
            class: FileClass::Immutable,
        }
    }

    fn record(id: &str, files: Vec<ManifestFile>, state: ReleaseState, completed_secs: u64) -> ReleaseRecord {
        let at = Timestamp(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + completed_secs));
        let mut r = ReleaseRecord::pending(Manifest::from_files(files, Some(ReleaseId::new(id).unwrap())), at);
        r.state = state;
        r.completed = (state == ReleaseState::Complete).then_some(at);
        r
    }

    #[test]
    fn only_a_complete_release_ranked_first_is_the_newest() {
        let id = |s: &str| ReleaseId::new(s).unwrap();
        let old = record("old", vec![file("a.js", 'a')], ReleaseState::Complete, 10);
        let new = record("new", vec![file("b.js", 'b')], ReleaseState::Complete, 20);
        let pending = record("later", vec![file("c.js", 'c')], ReleaseState::Pending, 30);
        let records = vec![pending.clone(), new.clone(), old.clone()];
        assert!(is_newest_complete(&records, &id("new")), "a pending release does not outrank a complete one");
        assert!(!is_newest_complete(&records, &id("old")), "a rollback must go through the steps");
        assert!(!is_newest_complete(&records, &id("later")));
        assert!(!is_newest_complete(&[], &id("new")));
        let dropping = record("new", vec![file("b.js", 'b')], ReleaseState::Dropping, 20);
        assert!(!is_newest_complete(&[dropping, old], &id("new")));
    }

    #[test]
    fn leftovers_come_only_from_unfinished_or_unreadable_records() {
        let done = record("a", vec![file("a.js", 'a')], ReleaseState::Complete, 1);
        assert!(!may_hold_leftovers(std::slice::from_ref(&done), false));
        assert!(may_hold_leftovers(std::slice::from_ref(&done), true), "an unreadable record may be a pending one");
        for state in [ReleaseState::Pending, ReleaseState::Dropping] {
            assert!(may_hold_leftovers(&[done.clone(), record("b", vec![file("b.js", 'b')], state, 2)], false));
        }
    }

    #[test]
    fn without_a_listing_only_what_complete_records_vouch_for_is_skipped() {
        let old = record("old", vec![file("a.js", 'a'), file("b.js", 'b')], ReleaseState::Complete, 1);
        let gone = record("gone", vec![file("c.js", 'c')], ReleaseState::Pending, 2);
        let new = record("new", vec![file("a.js", 'a'), file("b.js", 'x'), file("c.js", 'c')], ReleaseState::Pending, 3);
        let vouched = vouched(&new, &[old, gone]);
        let keys: Vec<String> = unvouched(&new, &vouched).into_iter().map(|(k, _)| k.to_string()).collect();
        // b.js has other content than the vouched one; c.js is only in a pending release.
        assert_eq!(keys, ["b.js", "c.js"]);
    }

    #[test]
    fn complete_records_that_disagree_vouch_for_nothing() {
        // A mutable file that changed: the store holds one of the two contents, no one knows which.
        let one = record("one", vec![file("m.json", 'a'), file("s.js", 's')], ReleaseState::Complete, 1);
        let two = record("two", vec![file("m.json", 'b'), file("s.js", 's')], ReleaseState::Complete, 2);
        let new = record("new", vec![file("m.json", 'a'), file("s.js", 's')], ReleaseState::Pending, 3);
        let keys: Vec<String> = vouched(&new, &[one.clone(), two]).into_iter().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["s.js"]);
        let alone: Vec<String> = vouched(&new, &[one]).into_iter().map(|k| k.to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        assert_eq!(alone, ["m.json", "s.js"]);
    }
}
