//! The store conformance suite: one set of tests, run against every backend (the filesystem
//! store in a temp dir, the S3 store against a real server). Each case takes a fresh, empty
//! store and drives the real publish, GC and verify engines through the [`Store`] trait only.
//!
//! Use [`crate::conformance_suite!`] to instantiate every case as a test for one backend.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use deskew_core::catalog::Catalog;
use deskew_core::gc::{self, GcError, GcOptions, GcReport};
use deskew_core::manifest::{BuildOptions, Manifest};
use deskew_core::publish::{self, NoProgress, Outcome, PublishError, PublishOptions, PublishReport};
use deskew_core::release::{ReleaseId, ReleaseState};
use deskew_core::retention::{Policy, Reason};
use deskew_core::store::{Body, PutMode, PutOptions, Store, StoreError};
use deskew_core::time::Timestamp;
use deskew_core::{Key, layout, verify};

use crate::wrappers::{Count, FailPutsAfter, Hooked, Jitter, RaceGates};
use crate::{fixture_dist, synthetic_build};

/// A store under test and whatever keeps it alive (a temp dir, a prefix to clean up).
pub struct TestStore {
    /// The store, empty at the start of the case.
    pub store: Box<dyn Store>,
    /// Dropped after the case.
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Instantiates every conformance case as a `#[tokio::test]` for one backend. `$make` is an
/// async fn returning a fresh [`TestStore`]; `$race_iterations` is how many rounds the
/// concurrent publish+GC race runs.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path, $race_iterations:expr) => {
        $crate::conformance_suite!(@cases $make;
            round_trip, dedupe, retention_by_count, retention_by_age, pins, gc_fails_closed_on_corrupt_record,
            crash_then_rerun, escaping_record_is_rejected, unreferenced_files_wait_for_grace,
            max_delete_refuses, create_only_is_exclusive, mutable_conflict, already_complete_writes_nothing,
            publish_during_gc_delete);
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_publish_and_gc() {
            let t = $make().await;
            $crate::conformance::concurrent_publish_and_gc(t.store.as_ref(), $race_iterations).await;
        }
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let t = $make().await;
                $crate::conformance::$case(t.store.as_ref()).await;
            }
        )*
    };
}

fn id(s: &str) -> ReleaseId {
    ReleaseId::new(s).unwrap()
}

fn real_now() -> Timestamp {
    Timestamp::now()
}

fn at(base: Timestamp, offset_secs: i64) -> Timestamp {
    if offset_secs >= 0 {
        Timestamp(base.0 + Duration::from_secs(offset_secs as u64))
    } else {
        base.minus(Duration::from_secs((-offset_secs) as u64))
    }
}

fn manifest_of(dir: &Path, release: &str) -> Manifest {
    Manifest::from_dir(dir, &BuildOptions { release: Some(id(release)), ..BuildOptions::default() }).unwrap()
}

async fn try_publish(store: &dyn Store, dir: &Path, release: &str, now: Timestamp) -> Result<PublishReport, PublishError> {
    let opts = PublishOptions { now, ..PublishOptions::default() };
    publish::publish(store, dir, manifest_of(dir, release), &opts, &NoProgress).await
}

async fn publish_ok(store: &dyn Store, dir: &Path, release: &str, now: Timestamp) -> PublishReport {
    let r = try_publish(store, dir, release, now).await;
    r.unwrap_or_else(|e| panic!("publish {release} to {}: {}", store.url(), deskew_core::error_chain(&e)))
}

fn policy(keep: usize, keep_for: Option<Duration>, pins: &[&str]) -> Policy {
    Policy { keep, keep_for, pins: pins.iter().map(|p| id(p)).collect(), grace: deskew_core::retention::DEFAULT_GRACE }
}

async fn try_gc(store: &dyn Store, policy: Policy, now: Timestamp, max_delete: Option<usize>) -> Result<GcReport, GcError> {
    let opts = GcOptions { policy, dry_run: false, max_delete, now, lease_ttl: Duration::from_secs(60) };
    gc::run(store, &opts).await
}

async fn gc_ok(store: &dyn Store, policy: Policy, now: Timestamp) -> GcReport {
    try_gc(store, policy, now, None).await.unwrap_or_else(|e| panic!("gc on {}: {}", store.url(), deskew_core::error_chain(&e)))
}

async fn keys(store: &dyn Store) -> BTreeSet<String> {
    store.list(None).await.unwrap().into_iter().map(|o| o.key.to_string()).collect()
}

fn release_keys(m: &Manifest) -> BTreeSet<String> {
    m.files.iter().map(|f| layout::file_key(&m.release, f).to_string()).chain([layout::record_key(&m.release).to_string()]).collect()
}

/// Every complete release in the store has every file, with the recorded sha256.
pub async fn assert_complete_releases_whole(store: &dyn Store) {
    let records = Catalog::load(store).await.unwrap().into_clean().unwrap();
    let complete: Vec<_> = records.iter().filter(|r| r.state == ReleaseState::Complete).collect();
    let report = verify::verify(store, &complete, &records, 8).await.unwrap();
    assert!(report.findings.is_empty(), "complete releases with missing files in {}: {:#?}", store.url(), report.findings);
}

/// Publish one build; every file reads back byte for byte; the record is complete.
pub async fn round_trip(store: &dyn Store) {
    let dist = fixture_dist("v1");
    let r = publish_ok(store, &dist, "v1", real_now()).await;
    assert_eq!(r.outcome, Outcome::Published);
    assert_eq!(r.uploaded, r.files);
    let m = manifest_of(&dist, "v1");
    for f in &m.files {
        let key = layout::file_key(&m.release, f);
        let got = store.get(&key).await.unwrap();
        assert_eq!(got, Bytes::from(std::fs::read(dist.join(f.path.as_str())).unwrap()), "{key}");
    }
    assert!(store.get(&Key::new("index.html").unwrap()).await.unwrap_err().is_not_found(), "entry files never at their public path");
    let catalog = Catalog::load(store).await.unwrap();
    assert!(catalog.problems.is_empty());
    assert_eq!(catalog.records.len(), 1);
    assert_eq!(catalog.records[0].state, ReleaseState::Complete);
    assert_eq!(catalog.records[0].manifest, m);
    assert_eq!(keys(store).await, release_keys(&m));
}

/// v2 and v3 upload only what changed; the skipped files are found from records, not reads.
pub async fn dedupe(store: &dyn Store) {
    let now = real_now();
    publish_ok(store, &fixture_dist("v1"), "v1", at(now, -30)).await;
    let (v1, v2, v3) = (manifest_of(&fixture_dist("v1"), "v1"), manifest_of(&fixture_dist("v2"), "v2"), manifest_of(&fixture_dist("v3"), "v3"));
    let new_in = |m: &Manifest, older: &[&Manifest]| -> BTreeSet<String> {
        m.files
            .iter()
            .filter(|f| f.class == deskew_core::FileClass::Entry || !older.iter().any(|o| o.file(&f.path).is_some_and(|of| of.sha256 == f.sha256)))
            .map(|f| layout::file_key(&m.release, f).to_string())
            .collect()
    };
    let r2 = publish_ok(store, &fixture_dist("v2"), "v2", at(now, -20)).await;
    let got: BTreeSet<String> = r2.uploaded_keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(got, new_in(&v2, &[&v1]));
    let r3 = publish_ok(store, &fixture_dist("v3"), "v3", at(now, -10)).await;
    let got: BTreeSet<String> = r3.uploaded_keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(got, new_in(&v3, &[&v1, &v2]));
    // v3 changed one lazy route: its chunk, the entry chunk that imports it, and index.html.
    assert_eq!(r3.uploaded, 3, "{got:?}");
    assert_eq!(r3.skipped, r3.files - 3);
    assert!(got.iter().any(|k| k.starts_with("assets/about-")), "{got:?}");
    assert_complete_releases_whole(store).await;
}

/// Republishing a complete release is a no-op that writes nothing; other content under the same
/// id is refused.
pub async fn already_complete_writes_nothing(store: &dyn Store) {
    publish_ok(store, &fixture_dist("v1"), "same", real_now()).await;
    let counting = Hooked::new(store, Count::default());
    let r = publish_ok(&counting, &fixture_dist("v1"), "same", real_now()).await;
    assert_eq!(r.outcome, Outcome::AlreadyComplete);
    assert_eq!(counting.hooks.puts.load(Ordering::SeqCst), 0);
    let err = try_publish(&counting, &fixture_dist("v2"), "same", real_now()).await.unwrap_err();
    assert!(matches!(err, PublishError::DifferentContent { .. }), "{err}");
    assert_eq!(counting.hooks.puts.load(Ordering::SeqCst), 0);
}

/// After four releases, `keep 2` deletes exactly the files only the oldest two used.
pub async fn retention_by_count(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let now = real_now();
    let builds = [("r1", vec!["a", "b"]), ("r2", vec!["a", "c"]), ("r3", vec!["c", "d"]), ("r4", vec!["d", "e"])];
    let mut manifests = Vec::new();
    for (i, (name, chunks)) in builds.iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, chunks, "User-agent: *\n");
        publish_ok(store, &dir, name, at(now, -3600 * (4 - i as i64))).await;
        manifests.push(manifest_of(&dir, name));
    }
    let old: BTreeSet<String> = release_keys(&manifests[0]).union(&release_keys(&manifests[1])).cloned().collect();
    let kept: BTreeSet<String> = release_keys(&manifests[2]).union(&release_keys(&manifests[3])).cloned().collect();
    let expected: BTreeSet<String> = old.difference(&kept).cloned().collect();
    let before = keys(store).await;
    let report = gc_ok(store, policy(2, None, &[]), now).await;
    let deleted: BTreeSet<String> = report.plan.files.iter().map(|d| d.key.to_string()).chain(report.plan.records.iter().map(|k| k.to_string())).collect();
    assert_eq!(deleted, expected);
    assert!(deleted.iter().any(|k| k.starts_with("assets/a.")) && deleted.iter().any(|k| k.starts_with("assets/b.")));
    assert!(!deleted.iter().any(|k| k.starts_with("assets/c.")), "c is still used by r3");
    assert_eq!(report.deleted as usize, expected.len());
    let after = keys(store).await;
    assert_eq!(after, before.difference(&expected).cloned().collect());
    let ids: Vec<String> = Catalog::load(store).await.unwrap().records.iter().map(|r| r.release.to_string()).collect();
    assert_eq!(ids, ["r4", "r3"]);
    assert_complete_releases_whole(store).await;
}

/// `keep_for` keeps a release retired (superseded) 10 minutes ago under `1h`, counted from
/// retirement, not creation; two hours later it goes.
pub async fn retention_by_age(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let now = real_now();
    let (d1, d2) = (tmp.path().join("old"), tmp.path().join("new"));
    synthetic_build(&d1, "old", &["x"], "a");
    synthetic_build(&d2, "new", &["y"], "a");
    // Built three days ago, retired ten minutes ago.
    publish_ok(store, &d1, "old", at(now, -3 * 86400)).await;
    publish_ok(store, &d2, "new", at(now, -600)).await;
    let hour = Some(Duration::from_secs(3600));
    let r = gc_ok(store, policy(1, hour, &[]), now).await;
    let old = r.plan.releases.iter().find(|d| d.release.as_str() == "old").unwrap();
    assert!(old.kept);
    assert_eq!(old.reason, Reason::RecentlyRetired);
    assert_eq!(r.deleted, 0);
    let r = gc_ok(store, policy(1, hour, &[]), at(now, 2 * 3600)).await;
    assert!(r.plan.releases.iter().any(|d| d.release.as_str() == "old" && !d.kept && d.reason == Reason::Expired));
    assert!(r.deleted > 0);
    assert_eq!(Catalog::load(store).await.unwrap().records.len(), 1);
    assert_complete_releases_whole(store).await;
}

/// A pinned release survives `keep 1`; an unknown pin is an error and deletes nothing.
pub async fn pins(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let now = real_now();
    for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        publish_ok(store, &dir, name, at(now, -100 + i as i64)).await;
    }
    let before = keys(store).await;
    let err = try_gc(store, policy(1, None, &["nope"]), now, None).await.unwrap_err();
    assert!(matches!(err, GcError::Retention(_)), "{err}");
    assert_eq!(keys(store).await, before);
    let r = gc_ok(store, policy(1, None, &["p1"]), now).await;
    let kept: Vec<&str> = r.plan.releases.iter().filter(|d| d.kept).map(|d| d.release.as_str()).collect();
    assert_eq!(kept, ["p3", "p1"]);
    assert_complete_releases_whole(store).await;
}

/// A corrupt record anywhere: GC deletes nothing and names the record.
pub async fn gc_fails_closed_on_corrupt_record(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let now = real_now();
    for (i, name) in ["c1", "c2", "c3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        publish_ok(store, &dir, name, at(now, -100 + i as i64)).await;
    }
    let bad = Key::new(".deskew/releases/c0.json").unwrap();
    store.put(&bad, Body::Bytes(Bytes::from_static(b"{\"version\": 1, \"release\": ")), &PutOptions::default()).await.unwrap();
    let before = keys(store).await;
    let err = try_gc(store, policy(1, None, &[]), now, None).await.unwrap_err();
    let msg = deskew_core::error_chain(&err);
    assert!(matches!(err, GcError::Catalog { .. }), "{msg}");
    assert!(msg.contains(".deskew/releases/c0.json"), "{msg}");
    assert_eq!(keys(store).await, before, "nothing may be deleted");
}

/// A publish that dies half-way leaves a pending record and no complete release; a rerun
/// completes it with every file present.
pub async fn crash_then_rerun(store: &dyn Store) {
    let dist = fixture_dist("v2");
    let failing = Hooked::new(store, FailPutsAfter::new(5));
    let err = try_publish(&failing, &dist, "crashy", real_now()).await.unwrap_err();
    assert!(deskew_core::error_chain(&err).contains("injected failure"), "{}", deskew_core::error_chain(&err));
    let catalog = Catalog::load(store).await.unwrap();
    assert_eq!(catalog.records.len(), 1);
    assert_eq!(catalog.records[0].state, ReleaseState::Pending);
    let r = publish_ok(store, &dist, "crashy", real_now()).await;
    assert_eq!(r.outcome, Outcome::Published);
    let catalog = Catalog::load(store).await.unwrap();
    assert_eq!(catalog.records[0].state, ReleaseState::Complete);
    assert_complete_releases_whole(store).await;
}

/// A record whose paths try to leave the store is never used: GC fails closed, publish ignores
/// it (and says so), and nothing outside the store is touched.
pub async fn escaping_record_is_rejected(store: &dyn Store) {
    let dist = fixture_dist("v1");
    publish_ok(store, &dist, "good", real_now()).await;
    let rec_key = layout::record_key(&id("good"));
    let mut json: serde_json::Value = serde_json::from_slice(&store.get(&rec_key).await.unwrap()).unwrap();
    for (name, path) in [("evil1", "../../outside.txt"), ("evil2", "/etc/passwd"), ("evil3", "assets/../../x")] {
        json["release"] = name.into();
        json["manifest"]["release"] = name.into();
        json["manifest"]["files"][0]["path"] = path.into();
        let key = layout::record_key(&id(name));
        store.put(&key, Body::Bytes(Bytes::from(serde_json::to_vec(&json).unwrap())), &PutOptions::default()).await.unwrap();
    }
    let catalog = Catalog::load(store).await.unwrap();
    assert_eq!(catalog.records.len(), 1);
    assert_eq!(catalog.problems.len(), 3);
    let before = keys(store).await;
    let err = try_gc(store, policy(1, None, &[]), at(real_now(), 86400), None).await.unwrap_err();
    assert!(matches!(err, GcError::Catalog { .. }), "{err}");
    assert_eq!(keys(store).await, before);
    let r = publish_ok(store, &fixture_dist("v2"), "next", real_now()).await;
    assert_eq!(r.ignored_records.len(), 3);
}

/// Files no release references are left alone until older than the grace period.
pub async fn unreferenced_files_wait_for_grace(store: &dyn Store) {
    publish_ok(store, &fixture_dist("v1"), "g1", real_now()).await;
    let stray = Key::new("assets/stray-Zz9Zz9Zz.js").unwrap();
    store.put(&stray, Body::Bytes(Bytes::from_static(b"leftover")), &PutOptions::default()).await.unwrap();
    let r = gc_ok(store, policy(1, None, &[]), real_now()).await;
    assert_eq!(r.deleted, 0);
    assert!(keys(store).await.contains(stray.as_str()));
    let r = gc_ok(store, policy(1, None, &[]), at(real_now(), 2 * 3600)).await;
    assert_eq!(r.deleted, 1);
    assert!(!keys(store).await.contains(stray.as_str()));
    assert_complete_releases_whole(store).await;
}

/// `max_delete` refuses a larger GC and deletes nothing.
pub async fn max_delete_refuses(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let now = real_now();
    for (i, name) in ["m1", "m2", "m3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        publish_ok(store, &dir, name, at(now, -100 + i as i64)).await;
    }
    let before = keys(store).await;
    let err = try_gc(store, policy(1, None, &[]), now, Some(2)).await.unwrap_err();
    assert!(matches!(err, GcError::TooMany { max: 2, .. }), "{err}");
    assert_eq!(keys(store).await, before);
}

/// Of many racing create-only puts, exactly one wins and its body is what is stored.
pub async fn create_only_is_exclusive(store: &dyn Store) {
    let key = Key::new(".deskew/race").unwrap();
    let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    let results = futures::future::join_all((0..8).map(|i| {
        let (key, opts) = (key.clone(), opts.clone());
        async move { (i, store.put(&key, Body::Bytes(Bytes::from(format!("writer {i}"))), &opts).await) }
    }))
    .await;
    let winners: Vec<usize> = results.iter().filter(|(_, r)| r.is_ok()).map(|(i, _)| *i).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(()) | Err(StoreError::AlreadyExists { .. }))), "{results:?}");
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from(format!("writer {}", winners[0])));
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap(); // deleting a missing key succeeds
}

/// A mutable file that changes in place is reported with the kept releases that served the old
/// content; `strict` refuses before writing anything.
pub async fn mutable_conflict(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("a"), tmp.path().join("b"));
    synthetic_build(&d1, "m-a", &["x"], "old robots");
    synthetic_build(&d2, "m-b", &["x"], "new robots");
    publish_ok(store, &d1, "m-a", real_now()).await;
    let strict = PublishOptions { strict: true, ..PublishOptions::default() };
    let before = keys(store).await;
    let err = publish::publish(store, &d2, manifest_of(&d2, "m-b"), &strict, &NoProgress).await.unwrap_err();
    assert!(matches!(&err, PublishError::Conflicts(c) if c[0].path.as_str() == "robots.txt"), "{err}");
    assert_eq!(keys(store).await, before, "strict writes nothing");
    let r = publish_ok(store, &d2, "m-b", real_now()).await;
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].releases, [id("m-a")]);
    assert_eq!(store.get(&Key::new("robots.txt").unwrap()).await.unwrap(), Bytes::from_static(b"new robots"));
}

/// Publish and GC at the same time, `iterations` times with varied interleavings: no complete
/// release ever references a missing file, and no record of a kept release is lost.
///
/// Each round: an old release holding chunk F, a newer one without it, then concurrently a
/// publish of a release that reuses F (dedupe finds it present) and a `keep 1` GC that drops the
/// old release and wants to delete F.
pub async fn concurrent_publish_and_gc(store: &dyn Store, iterations: usize) {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..iterations {
        let f = format!("f{i}");
        let (old, cur, new) = (format!("old{i}"), format!("cur{i}"), format!("new{i}"));
        for (name, chunks) in [(&old, vec![f.as_str(), "o"]), (&cur, vec!["c"])] {
            let dir = tmp.path().join(name);
            synthetic_build(&dir, name, &chunks, "r");
            publish_ok(store, &dir, name, real_now()).await;
        }
        let dir = tmp.path().join(&new);
        synthetic_build(&dir, &new, &[f.as_str(), "n"], "r");
        let jp = Hooked::new(store, Jitter::new(Duration::from_millis(3), i as u64 * 2 + 1));
        let jg = Hooked::new(store, Jitter::new(Duration::from_millis(3), i as u64 * 7 + 3));
        let (p, g) = tokio::join!(try_publish(&jp, &dir, &new, real_now()), try_gc(&jg, policy(1, None, &[]), real_now(), None));
        p.unwrap_or_else(|e| panic!("round {i}: publish: {}", deskew_core::error_chain(&e)));
        g.unwrap_or_else(|e| panic!("round {i}: gc: {}", deskew_core::error_chain(&e)));
        let catalog = Catalog::load(store).await.unwrap();
        assert!(catalog.get(&id(&new)).is_some_and(|r| r.state == ReleaseState::Complete), "round {i}: record of {new} lost");
        assert_complete_releases_whole(store).await;
        let _ = std::fs::remove_dir_all(tmp.path().join(&old));
    }
}

/// The dangerous interleaving, forced: GC has re-read the records and is about to delete chunk F
/// of a dropped release; a publisher then records a release that reuses F and lists the store,
/// so dedupe finds F present; then GC deletes F. The publisher must notice before it marks its
/// release complete (it waits for the GC lease, lists again and re-uploads F).
pub async fn publish_during_gc_delete(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    for (name, chunks) in [("old", vec!["f", "o"]), ("cur", vec!["c"])] {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &chunks, "r");
        publish_ok(store, &dir, name, real_now()).await;
    }
    let dir = tmp.path().join("new");
    synthetic_build(&dir, "new", &["f", "n"], "r");
    let (pstore, gstore) = RaceGates::wrap(store);
    let run = async {
        tokio::join!(try_publish(&pstore, &dir, "new", real_now()), try_gc(&gstore, policy(1, None, &[]), real_now(), None))
    };
    let (p, g) = tokio::time::timeout(Duration::from_secs(60), run).await.expect("publish and gc deadlocked");
    let p = p.unwrap_or_else(|e| panic!("publish: {}", deskew_core::error_chain(&e)));
    let g = g.unwrap_or_else(|e| panic!("gc: {}", deskew_core::error_chain(&e)));
    assert!(g.plan.files.iter().any(|d| d.key.as_str().starts_with("assets/f.")), "gc must have planned to delete f: {:?}", g.plan.files);
    assert!(!p.uploaded_keys.iter().any(|k| k.as_str().starts_with("assets/f.")), "dedupe must have skipped f at first");
    assert_complete_releases_whole(store).await;
}
