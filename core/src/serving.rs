//! Which releases the store's mutable files serve. Pure: the gc reads what [`to_read`] names and
//! hands the hashes to [`serving`].
//!
//! Mutable files (`index.html`, `sw.js`) live at one path that every release shares; they hold
//! the content of the last release whose publish wrote them, and that content names the
//! release's chunks. Normally that is the newest complete release, which every policy keeps.
//! Two things leave another release there:
//!
//! - a publish that died (killed, a failed request) among its mutable writes: its record stays
//!   `pending`, its files are whole (listed under the lease before the first mutable write), and
//!   some mutable files already hold its content;
//! - completions stamped within the clock-skew allowance of each other, ranked the other way
//!   round from the order their mutable writes landed in.
//!
//! Such a release is *serving*: a gc keeps it whatever the policy says, or the page a browser
//! loads right now would name chunks that are gone. A release serves through a mutable path
//! the newest complete release also has, with content that differs from the newest's. Through a
//! path the newest lacks, only a pending release serves (a publish that added a file, `sw.js`
//! say, and died after writing it); a complete one there is an older build's leftover, deleted
//! with the release it belongs to.

use std::collections::{HashMap, HashSet};

use crate::key::Key;
use crate::layout;
use crate::manifest::FileClass;
use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::retention;
use crate::store::ObjectMeta;

/// `(key, sha256, size)` of each mutable file another release than the newest may serve
/// through: its record's content differs from the newest's at a path the newest has, or the
/// release is pending (any path, with no complete release).
fn candidates(records: &[ReleaseRecord]) -> impl Iterator<Item = (&ReleaseRecord, Key, &str, u64)> {
    let newest = retention::newest_complete(records);
    // The newest's mutable files by path (`None`: no complete release).
    let newest_sha: Option<HashMap<&Key, &str>> = newest.map(|n| n.manifest.of_class(FileClass::Mutable).map(|f| (&f.path, &*f.sha256)).collect());
    records
        .iter()
        .filter(move |r| r.state != ReleaseState::Dropping && Some(&r.release) != newest.map(|n| &n.release))
        .flat_map(|r| r.manifest.of_class(FileClass::Mutable).map(move |f| (r, f)))
        .filter(move |(r, f)| match newest_sha.as_ref().map(|m| m.get(&f.path)) {
            None => true,                                   // no complete release
            Some(None) => r.state == ReleaseState::Pending, // a path the newest does not ship
            Some(Some(sha)) => *sha != &*f.sha256,
        })
        .map(|(r, f)| (r, layout::file_key(&r.release, f), &*f.sha256, f.size))
}

/// Mutable files to read and hash: with a listing, those whose listed size matches a
/// candidate's; without, every candidate. Few: a build's mutable files, and only where another
/// release's content than the newest's could be there.
pub fn to_read(records: &[ReleaseRecord], listing: Option<&[ObjectMeta]>) -> Vec<Key> {
    let sizes: Option<HashMap<&Key, u64>> = listing.map(|l| l.iter().map(|o| (&o.key, o.size)).collect());
    let mut keys: Vec<Key> =
        candidates(records).filter(|(_, k, _, size)| sizes.as_ref().is_none_or(|s| s.get(k) == Some(size))).map(|(_, k, _, _)| k).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The releases some mutable file serves, given the sha256 of each file read (`stored`). Where
/// several releases recorded the content a file holds, the newest complete one of them serves it
/// (it is whole, and the same content names the same files); with none complete, every pending
/// one does, since which of them wrote it is unknown.
pub fn serving(records: &[ReleaseRecord], stored: &HashMap<Key, String>) -> HashSet<ReleaseId> {
    let mut by_file: HashMap<Key, Vec<&ReleaseRecord>> = HashMap::new();
    for (r, k, sha, _) in candidates(records) {
        if stored.get(&k).is_some_and(|s| s == sha) {
            by_file.entry(k).or_default().push(r);
        }
    }
    let mut out = HashSet::new();
    for holders in by_file.values() {
        let complete = holders.iter().filter(|r| r.state == ReleaseState::Complete).min_by(|a, b| retention::newest_first(a, b));
        match complete {
            Some(r) => {
                out.insert(r.release.clone());
            }
            None => out.extend(holders.iter().map(|r| r.release.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, ManifestFile};
    use crate::time::Timestamp;
    use std::time::{Duration, SystemTime};

    fn file(path: &str, class: FileClass, content: &str) -> ManifestFile {
        ManifestFile {
            path: Key::new(path).unwrap(),
            sha256: crate::digest::sha256_hex(content.as_bytes()).into(),
            size: content.len() as u64,
            class,
            content_type: "text/plain".into(),
            cache_control: "no-cache".into(),
        }
    }

    fn record(id: &str, state: ReleaseState, at: u64, files: Vec<ManifestFile>) -> ReleaseRecord {
        let t = Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(at));
        let manifest = Manifest::from_files(files, Some(ReleaseId::new(id).unwrap()));
        let mut r = ReleaseRecord::pending(manifest, t);
        r.state = state;
        r.completed = (state == ReleaseState::Complete).then_some(t);
        r
    }

    fn index(v: &str) -> ManifestFile {
        file("index.html", FileClass::Mutable, &format!("<script src=main-{v}.js>"))
    }

    fn listed(files: &[&ManifestFile]) -> Vec<ObjectMeta> {
        files.iter().map(|f| ObjectMeta { key: f.path.clone(), size: f.size, modified: SystemTime::UNIX_EPOCH, md5: None }).collect()
    }

    fn stored(f: &ManifestFile) -> HashMap<Key, String> {
        HashMap::from([(f.path.clone(), f.sha256.to_string())])
    }

    #[test]
    fn a_publish_that_died_among_its_mutable_writes_is_serving() {
        let records = [record("a", ReleaseState::Complete, 10, vec![index("aaaa")]), record("b", ReleaseState::Pending, 20, vec![index("bbbb")])];
        assert_eq!(to_read(&records, Some(&listed(&[&index("bbbb")]))), [Key::new("index.html").unwrap()]);
        assert_eq!(serving(&records, &stored(&index("bbbb"))), HashSet::from([ReleaseId::new("b").unwrap()]));
        assert!(serving(&records, &stored(&index("aaaa"))).is_empty(), "the newest serves: no one else");
    }

    #[test]
    fn a_release_ranked_older_by_skewed_clocks_is_serving() {
        let records = [record("a", ReleaseState::Complete, 30, vec![index("aaaa")]), record("b", ReleaseState::Complete, 29, vec![index("bbbb")])];
        assert_eq!(serving(&records, &stored(&index("bbbb"))), HashSet::from([ReleaseId::new("b").unwrap()]));
    }

    #[test]
    fn shared_content_leftovers_and_dropping_releases_serve_nothing() {
        let robots = file("robots.txt", FileClass::Mutable, "allow");
        let old_page = file("old.html", FileClass::Mutable, "old");
        let records = [
            record("a", ReleaseState::Complete, 30, vec![index("aaaa"), robots.clone()]),
            record("b", ReleaseState::Complete, 20, vec![index("bbbb"), robots.clone(), old_page.clone()]),
            record("c", ReleaseState::Dropping, 10, vec![index("cccc")]),
        ];
        let listing = listed(&[&index("cccc"), &robots, &old_page]);
        assert_eq!(to_read(&records, Some(&listing)), [Key::new("index.html").unwrap()], "only where another's content could be");
        assert!(serving(&records, &stored(&robots)).is_empty(), "the same content as the newest's");
        assert!(serving(&records, &stored(&old_page)).is_empty(), "a complete release's leftover");
        assert!(serving(&records, &stored(&index("cccc"))).is_empty(), "a dropping release is not whole");
    }

    #[test]
    fn the_same_content_is_served_by_its_newest_complete_release_else_by_every_pending_one() {
        let records = [
            record("a", ReleaseState::Complete, 40, vec![index("aaaa")]),
            record("b", ReleaseState::Complete, 30, vec![index("bbbb")]),
            record("c", ReleaseState::Complete, 20, vec![index("bbbb")]),
            record("d", ReleaseState::Pending, 35, vec![index("bbbb")]),
            record("e", ReleaseState::Pending, 36, vec![index("eeee")]),
            record("f", ReleaseState::Pending, 37, vec![index("eeee")]),
        ];
        assert_eq!(serving(&records, &stored(&index("bbbb"))), HashSet::from([ReleaseId::new("b").unwrap()]));
        assert_eq!(serving(&records, &stored(&index("eeee"))), HashSet::from([ReleaseId::new("e").unwrap(), ReleaseId::new("f").unwrap()]));
    }

    #[test]
    fn a_pending_release_serves_a_file_it_added() {
        let sw = file("sw.js", FileClass::Mutable, "self.addEventListener('fetch', ...)");
        let records = [record("a", ReleaseState::Complete, 30, vec![index("aaaa")]), record("b", ReleaseState::Pending, 40, vec![index("aaaa"), sw.clone()])];
        assert_eq!(to_read(&records, Some(&listed(&[&index("aaaa"), &sw]))), [Key::new("sw.js").unwrap()]);
        assert_eq!(serving(&records, &stored(&sw)), HashSet::from([ReleaseId::new("b").unwrap()]));
    }

    #[test]
    fn without_a_complete_release_any_mutable_file_serves() {
        let records = [record("a", ReleaseState::Pending, 10, vec![index("aaaa")])];
        assert_eq!(serving(&records, &stored(&index("aaaa"))), HashSet::from([ReleaseId::new("a").unwrap()]));
        assert!(to_read(&records, Some(&[])).is_empty(), "nothing written yet");
    }
}
