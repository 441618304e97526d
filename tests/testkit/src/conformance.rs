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
use deskew_core::lease::{Lease, LeaseConfig, LeaseError, Purpose};
use deskew_core::manifest::{BuildOptions, FileClass, Manifest, ManifestFile};
use deskew_core::marker::{self, MarkerError};
use deskew_core::progress::NoProgress;
use deskew_core::publish::{self, DirSource, Outcome, PublishError, PublishOptions, PublishReport};
use deskew_core::release::{ReleaseId, ReleaseRecord, ReleaseState};
use deskew_core::retention::{Policy, Reason};
use deskew_core::store::{Body, PutMode, PutOptions, Store, StoreError, WriteGuard};
use deskew_core::{Key, layout, verify};

use crate::clock::{ShiftedHost, at, now};
use crate::wrappers::{CancelAfterPut, Count, FailDeletesAfter, FailPutOf, FailPutsAfter, HintsMet, Hooked, Jitter, Race, Reads, VanishOnRead, race};
use crate::{fixture_dist, synthetic_build};
use std::num::NonZeroUsize;

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
        $crate::conformance_suite!($make, $race_iterations, require = );
    };
    ($make:path, $race_iterations:expr, require = $($service:ident)?) => {
        $crate::conformance_suite!(@cases $make; [$($service)?];
            round_trip, dedupe, retention_by_count, retention_by_age, pins, gc_fails_closed_on_corrupt_record,
            gc_fails_closed_when_a_record_vanishes, gc_fails_closed_on_a_foreign_heartbeat,
            a_signal_among_the_mutable_writes_lets_them_finish, gc_keeps_what_a_failed_last_step_left_serving,
            gc_keeps_a_failed_release_serving_a_file_it_added,
            crash_then_rerun, escaping_record_is_rejected, unreferenced_files_wait_for_grace,
            max_delete_refuses, create_only_is_exclusive, mutable_conflict, republish_uploads_nothing_and_becomes_newest,
            gc_between_dedupe_and_complete, gc_deletes_while_publish_registers, resumed_publish_survives_gc,
            interrupted_gc_leaves_truthful_records, publish_keep_counts_besides_new, puts_check_sha256,
            guard_refuses_commit, not_a_store_is_refused, nested_store_left_alone, lease_takeover_is_exclusive,
            immutable_files_never_change, mutable_files_change_last, a_lease_taken_by_other_means_stops_its_holder,
            publish_refuses_a_nested_store, a_large_record_is_read_as_it_arrives,
            a_listed_md5_spares_a_read_only_for_the_builds_bytes, a_lease_is_confirmed_by_its_listed_md5,
            a_hinted_listing_shows_every_hinted_key, a_publish_hints_only_stored_keys);
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_publish_and_gc() {
            $crate::conformance_suite!(@require [$($service)?]);
            let t = $make().await;
            $crate::conformance::concurrent_publish_and_gc(t.store.as_ref(), $race_iterations).await;
        }
    };
    (@cases $make:path; $require:tt; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance_suite!(@require $require);
                let t = $make().await;
                $crate::conformance::$case(t.store.as_ref()).await;
            }
        )*
    };
    (@require [$service:ident]) => {
        $crate::require!($service);
    };
    (@require []) => {};
}

fn id(s: &str) -> ReleaseId {
    ReleaseId::new(s).unwrap()
}

fn manifest_of(dir: &Path, release: &str) -> Manifest {
    Manifest::from_dir(dir, &BuildOptions { release: Some(id(release)), ..BuildOptions::default() }).unwrap()
}

fn opts() -> PublishOptions {
    PublishOptions { lease_poll: Duration::from_millis(20), ..PublishOptions::default() }
}

async fn try_publish_with(store: &dyn Store, dir: &Path, release: &str, host: ShiftedHost, opts: &PublishOptions) -> Result<PublishReport, PublishError> {
    publish::publish(store, &host, &DirSource::new(dir), manifest_of(dir, release), opts, &NoProgress).await
}

async fn try_publish(store: &dyn Store, dir: &Path, release: &str, host: ShiftedHost) -> Result<PublishReport, PublishError> {
    try_publish_with(store, dir, release, host, &opts()).await
}

async fn publish_ok(store: &dyn Store, dir: &Path, release: &str, host: ShiftedHost) -> PublishReport {
    let r = try_publish(store, dir, release, host).await;
    r.unwrap_or_else(|e| panic!("publish {release} to {}: {}", store.url(), deskew_core::error_chain(&e)))
}

fn policy(keep: usize, keep_for: Option<Duration>, pins: &[&str]) -> Policy {
    Policy {
        keep: NonZeroUsize::new(keep).unwrap(),
        keep_for,
        pins: pins.iter().map(|p| id(p)).collect(),
        grace: deskew_core::retention::DEFAULT_GRACE,
        published: None,
    }
}

fn gc_opts(policy: Policy, max_delete: Option<usize>) -> GcOptions {
    GcOptions { policy, max_delete, lease_poll: Duration::from_millis(20), ..GcOptions::default() }
}

async fn try_gc(store: &dyn Store, policy: Policy, host: ShiftedHost, max_delete: Option<usize>) -> Result<GcReport, GcError> {
    gc::run(store, &host, &gc_opts(policy, max_delete), &NoProgress).await
}

async fn gc_ok(store: &dyn Store, policy: Policy, host: ShiftedHost) -> GcReport {
    try_gc(store, policy, host, None).await.unwrap_or_else(|e| panic!("gc on {}: {}", store.url(), deskew_core::error_chain(&e)))
}

/// Every key but deskew's bookkeeping (lease epochs, heartbeats), which changes with each run.
async fn keys(store: &dyn Store) -> BTreeSet<String> {
    let bookkeeping = |k: &Key| k.is_under(&layout::lease_dir()) || k.is_under(&layout::publishing_dir()) || k.as_str() == layout::CAS_PROBE;
    store.list(None).await.unwrap().objects.into_iter().filter(|o| !bookkeeping(&o.key)).map(|o| o.key.to_string()).collect()
}

fn release_keys(m: &Manifest) -> BTreeSet<String> {
    m.files.iter().map(|f| layout::file_key(&m.release, f).to_string()).chain([layout::record_key(&m.release).to_string()]).collect()
}

fn with_marker(mut keys: BTreeSet<String>) -> BTreeSet<String> {
    keys.insert(layout::MARKER.into());
    keys
}

async fn record(store: &dyn Store, release: &str) -> Option<ReleaseRecord> {
    Catalog::load(store).await.unwrap().get(&id(release)).cloned()
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
    let r = publish_ok(store, &dist, "v1", now()).await;
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
    assert_eq!(keys(store).await, with_marker(release_keys(&m)));
}

/// A listing given hints shows every hinted key the store holds, as the plain listing does, and
/// nothing the store does not hold, each once, whatever the hints: none, every key, some keys,
/// keys the store does not hold, keys outside the prefix, repeated and unsorted. A backend
/// splits at them and fetches the parts at once; a key skipped at a part's edge (a server that
/// orders keys otherwise) or listed twice fails here.
pub async fn a_hinted_listing_shows_every_hinted_key(store: &dyn Store) {
    publish_ok(store, &fixture_dist("v1"), "v1", at(-20)).await;
    publish_ok(store, &fixture_dist("v2"), "v2", at(-10)).await;
    for extra in ["0-first.txt", "assets/zz-foreign.js", "assets/a/b/c.css", "zzz/last.txt"] {
        store.put(&Key::new(extra).unwrap(), Body::Bytes(Bytes::from(extra)), &PutOptions::default()).await.unwrap();
    }
    let listed = |l: deskew_core::store::Listing| -> Vec<(String, u64, Option<[u8; 16]>)> {
        let mut v: Vec<_> = l.objects.into_iter().map(|o| (o.key.to_string(), o.size, o.md5)).collect();
        v.sort();
        v
    };
    let whole = listed(store.list(None).await.unwrap());
    let all: Vec<Key> = whole.iter().map(|(k, ..)| Key::new(k.as_str()).unwrap()).collect();
    let bogus: Vec<Key> = ["0", "assets/0", "assets/m", "assets/zz", "index.html", "zzzz"].iter().map(|k| Key::new(*k).unwrap()).collect();
    let mut reversed = all.clone();
    reversed.reverse();
    reversed.extend(all.iter().step_by(2).cloned());
    let hint_sets: Vec<(&str, Vec<Key>)> = vec![
        ("none", Vec::new()),
        ("every key", all.clone()),
        ("every second key", all.iter().step_by(2).cloned().collect()),
        ("every third key", all.iter().skip(1).step_by(3).cloned().collect()),
        ("keys not stored", bogus.clone()),
        ("reversed, repeated", reversed),
        ("stored and not", all.iter().step_by(4).cloned().chain(bogus).collect()),
    ];
    let assets = Key::new("assets").unwrap();
    let under = listed(store.list(Some(&assets)).await.unwrap());
    assert!(under.len() > 3 && under.len() < whole.len(), "{under:?}");
    for (prefix, plain) in [(None, &whole), (Some(&assets), &under)] {
        for (what, hints) in &hint_sets {
            let got = listed(store.list_hinted(prefix, hints).await.unwrap());
            let named: BTreeSet<&str> = hints.iter().map(|k| k.as_str()).collect();
            let expected: Vec<_> = plain.iter().filter(|(k, ..)| named.contains(k.as_str())).collect();
            assert!(expected.iter().all(|o| got.contains(o)), "prefix {prefix:?}, hints {what}: a hinted key is missing from {got:?}");
            assert!(got.iter().all(|o| plain.contains(o)), "prefix {prefix:?}, hints {what}: {got:?} holds what the store does not");
            assert!(got.windows(2).all(|w| w[0].0 != w[1].0), "prefix {prefix:?}, hints {what}: a key listed twice in {got:?}");
            if *what == "every key" {
                assert_eq!(&got, plain, "prefix {prefix:?}");
            }
        }
    }
}

/// Publish hints only keys it expects stored: a first publish (whose mutable files are written
/// after its last listing), a next release and a retried one. A hint the store does not hold
/// would make S3 list the store a second time, the plain way, in every such publish.
pub async fn a_publish_hints_only_stored_keys(store: &dyn Store) {
    let hooked = Hooked::new(store, HintsMet::default());
    assert!(manifest_of(&fixture_dist("v1"), "v1").files.iter().any(|f| f.class == FileClass::Mutable), "the fixture has mutable files");
    publish_ok(&hooked, &fixture_dist("v1"), "v1", at(-20)).await;
    publish_ok(&hooked, &fixture_dist("v2"), "v2", at(-10)).await;
    let again = publish_ok(&hooked, &fixture_dist("v2"), "v2", now()).await;
    assert_eq!(again.outcome, Outcome::AlreadyComplete);
    assert!(hooked.hooks.listings.load(Ordering::SeqCst) >= 3, "each publish lists the store given hints");
    assert_eq!(*hooked.hooks.unmet.lock().unwrap(), Vec::<Key>::new(), "hinted keys the store did not hold");
}

/// v2 and v3 upload only what changed; the skipped files are found from records, not reads.
pub async fn dedupe(store: &dyn Store) {
    publish_ok(store, &fixture_dist("v1"), "v1", at(-30)).await;
    let (v1, v2, v3) = (manifest_of(&fixture_dist("v1"), "v1"), manifest_of(&fixture_dist("v2"), "v2"), manifest_of(&fixture_dist("v3"), "v3"));
    let new_in = |m: &Manifest, older: &[&Manifest]| -> BTreeSet<String> {
        m.files
            .iter()
            .filter(|f| f.class == deskew_core::FileClass::Entry || !older.iter().any(|o| o.file(&f.path).is_some_and(|of| of.sha256 == f.sha256)))
            .map(|f| layout::file_key(&m.release, f).to_string())
            .collect()
    };
    let r2 = publish_ok(store, &fixture_dist("v2"), "v2", at(-20)).await;
    let got: BTreeSet<String> = r2.uploaded_keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(got, new_in(&v2, &[&v1]));
    let r3 = publish_ok(store, &fixture_dist("v3"), "v3", at(-10)).await;
    let got: BTreeSet<String> = r3.uploaded_keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(got, new_in(&v3, &[&v1, &v2]));
    // v3 changed one lazy route: its chunk, the entry chunk that imports it, and index.html.
    assert_eq!(r3.uploaded, 3, "{got:?}");
    assert_eq!(r3.skipped, r3.files - 3);
    assert!(got.iter().any(|k| k.starts_with("assets/about-")), "{got:?}");
    assert_complete_releases_whole(store).await;
}

/// Publishing a complete release again uploads nothing, reports `already-complete`, and makes it
/// the newest release (a rollback); other content under the same id is refused before anything
/// is written.
pub async fn republish_uploads_nothing_and_becomes_newest(store: &dyn Store) {
    publish_ok(store, &fixture_dist("v1"), "same", at(-60)).await;
    publish_ok(store, &fixture_dist("v2"), "other", at(-30)).await;
    let counting = Hooked::new(store, Count::default());
    let r = publish_ok(&counting, &fixture_dist("v1"), "same", now()).await;
    assert_eq!(r.outcome, Outcome::AlreadyComplete);
    assert!(r.uploaded_keys.is_empty(), "{:?}", r.uploaded_keys);
    let records = Catalog::load(store).await.unwrap().records;
    assert_eq!(records[0].release.as_str(), "same", "the release published again is the newest");
    let puts = counting.hooks.puts.load(Ordering::SeqCst);
    let err = try_publish(&counting, &fixture_dist("v2"), "same", now()).await.unwrap_err();
    assert!(matches!(err, PublishError::DifferentContent { .. }), "{err}");
    assert_eq!(counting.hooks.puts.load(Ordering::SeqCst), puts, "nothing written for other content");
    assert_complete_releases_whole(store).await;
}

/// A publish of the newest release again reads back none of its mutable files where the
/// listing states their MD5s (S3's ETags) and they are those of the build's bytes, every one
/// where it does not (a volume). A stored file changed since (a publish that died in its last
/// step) is found and put back; a build file changed after it was hashed, to what the store now
/// holds, is not taken for the release's content.
pub async fn a_listed_md5_spares_a_read_only_for_the_builds_bytes(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    synthetic_build(&dir, "b", &["x"], "User-agent: *\n");
    let m = manifest_of(&dir, "b");
    let robots = layout::file_key(&id("b"), m.file(&Key::new("robots.txt").unwrap()).unwrap());
    assert_eq!(m.file(&robots).unwrap().class, FileClass::Mutable);
    publish_ok(store, &dir, "b", at(-60)).await;
    let stated = store.list(None).await.unwrap().objects.iter().find(|o| o.key == robots).unwrap().md5;
    let reads = Hooked::new(store, Reads::default());
    assert_eq!(publish_ok(&reads, &dir, "b", at(-50)).await.outcome, Outcome::AlreadyComplete);
    assert_eq!(reads.hooks.of(&robots), if stated.is_some() { 0 } else { 1 }, "stated: {stated:?}");

    let other = Bytes::from_static(b"User-agent: -\n"); // the same size: only its content tells
    store.put(&robots, Body::Bytes(other.clone()), &PutOptions::default()).await.unwrap();
    let r = publish_ok(&reads, &dir, "b", at(-40)).await;
    assert_ne!(r.outcome, Outcome::AlreadyComplete, "robots.txt holds other content");
    assert_eq!(store.get(&robots).await.unwrap(), "User-agent: *\n");

    store.put(&robots, Body::Bytes(other.clone()), &PutOptions::default()).await.unwrap();
    std::fs::write(dir.join("robots.txt"), &other).unwrap();
    let r = publish::publish(store, &at(-30), &DirSource::new(&dir), m, &opts(), &NoProgress).await;
    assert!(!matches!(&r, Ok(r) if r.outcome == Outcome::AlreadyComplete), "the build changed after hashing: {:?}", r.map(|r| r.outcome));
}

/// After four releases, `keep 2` deletes exactly the files only the oldest two used.
pub async fn retention_by_count(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let builds = [("r1", vec!["a", "b"]), ("r2", vec!["a", "c"]), ("r3", vec!["c", "d"]), ("r4", vec!["d", "e"])];
    let mut manifests = Vec::new();
    for (i, (name, chunks)) in builds.iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, chunks, "User-agent: *\n");
        publish_ok(store, &dir, name, at(-3600 * (4 - i as i64))).await;
        manifests.push(manifest_of(&dir, name));
    }
    let old: BTreeSet<String> = release_keys(&manifests[0]).union(&release_keys(&manifests[1])).cloned().collect();
    let kept: BTreeSet<String> = release_keys(&manifests[2]).union(&release_keys(&manifests[3])).cloned().collect();
    let expected: BTreeSet<String> = old.difference(&kept).cloned().collect();
    let before = keys(store).await;
    let report = gc_ok(store, policy(2, None, &[]), now()).await;
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
    let (d1, d2) = (tmp.path().join("old"), tmp.path().join("new"));
    synthetic_build(&d1, "old", &["x"], "a");
    synthetic_build(&d2, "new", &["y"], "a");
    // Built three days ago, retired ten minutes ago.
    publish_ok(store, &d1, "old", at(-3 * 86400)).await;
    publish_ok(store, &d2, "new", at(-600)).await;
    let hour = Some(Duration::from_secs(3600));
    let r = gc_ok(store, policy(1, hour, &[]), now()).await;
    let old = r.plan.releases.iter().find(|d| d.release.as_str() == "old").unwrap();
    assert!(old.kept);
    assert_eq!(old.reason, Reason::RecentlyRetired);
    assert_eq!(r.deleted, 0);
    let r = gc_ok(store, policy(1, hour, &[]), at(2 * 3600)).await;
    assert!(r.plan.releases.iter().any(|d| d.release.as_str() == "old" && !d.kept && d.reason == Reason::Expired));
    assert!(r.deleted > 0);
    assert_eq!(Catalog::load(store).await.unwrap().records.len(), 1);
    assert_complete_releases_whole(store).await;
}

/// A pinned release survives `keep 1`; an unknown pin is an error and deletes nothing.
pub async fn pins(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        publish_ok(store, &dir, name, at(-100 + i as i64)).await;
    }
    let before = keys(store).await;
    let err = try_gc(store, policy(1, None, &["nope"]), now(), None).await.unwrap_err();
    assert!(matches!(err, GcError::Retention(_)), "{err}");
    assert_eq!(keys(store).await, before);
    let r = gc_ok(store, policy(1, None, &["p1"]), now()).await;
    let kept: Vec<&str> = r.plan.releases.iter().filter(|d| d.kept).map(|d| d.release.as_str()).collect();
    assert_eq!(kept, ["p3", "p1"]);
    assert_complete_releases_whole(store).await;
}

/// A corrupt record anywhere: GC deletes nothing and names the record.
pub async fn gc_fails_closed_on_corrupt_record(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in ["c1", "c2", "c3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        publish_ok(store, &dir, name, at(-100 + i as i64)).await;
    }
    let bad = Key::new(".deskew/releases/c0.json").unwrap();
    store.put(&bad, Body::Bytes(Bytes::from_static(b"{\"version\": 1, \"release\": ")), &PutOptions::default()).await.unwrap();
    let before = keys(store).await;
    let err = try_gc(store, policy(1, None, &[]), now(), None).await.unwrap_err();
    let msg = deskew_core::error_chain(&err);
    assert!(matches!(err, GcError::Catalog { .. }), "{msg}");
    assert!(msg.contains(".deskew/releases/c0.json"), "{msg}");
    assert_eq!(keys(store).await, before, "nothing may be deleted");
}

/// A record of 25,000 files (6 MB, over the size from which records are parsed as they
/// arrive): the chunks the store yields are the object, and the catalog reads it as it was
/// written; a cut copy is refused as corrupt, not read in part.
pub async fn a_large_record_is_read_as_it_arrives(store: &dyn Store) {
    let files: Vec<ManifestFile> = (0..25_000)
        .map(|i| ManifestFile {
            path: Key::new(format!("assets/chunk-{i:05}.{:08x}.js", i * 7919)).unwrap(),
            sha256: format!("{:064x}", i).into(),
            size: 1000 + i,
            content_type: "text/javascript".into(),
            cache_control: "public, max-age=31536000, immutable".into(),
            class: FileClass::Immutable,
        })
        .collect();
    let rec = ReleaseRecord::pending(
        Manifest::from_files(files, Some(ReleaseId::new("large").unwrap())),
        deskew_core::time::Timestamp(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
    );
    let text = Bytes::from(rec.to_json());
    assert!(text.len() > 5 << 20, "{} bytes", text.len());
    let key = layout::record_key(&rec.release);
    store.put(&key, Body::Bytes(text.clone()), &PutOptions::default()).await.unwrap();
    let joined: Vec<Bytes> = futures::TryStreamExt::try_collect(store.get_chunks(&key).await.unwrap()).await.unwrap();
    assert!(joined.concat() == text, "the chunks are the object");
    assert!(store.get_chunks(&Key::new(".deskew/releases/none.json").unwrap()).await.err().is_some_and(|e| e.is_not_found()));
    let cut = layout::record_key(&ReleaseId::new("cut").unwrap());
    let cut_text = String::from_utf8(text[..text.len() - 100].to_vec()).unwrap().replace("\"large\"", "\"cut\"");
    store.put(&cut, Body::Bytes(Bytes::from(cut_text)), &PutOptions::default()).await.unwrap();
    let catalog = Catalog::load(store).await.unwrap();
    assert_eq!(catalog.records, [rec], "read as written");
    let problems: Vec<String> = catalog.problems.iter().map(|p| deskew_core::error_chain(p)).collect();
    assert!(problems.len() == 1 && problems[0].contains("`.deskew/releases/cut.json` is corrupt"), "{problems:?}");
}

/// A record listed but gone when read (a lifecycle rule on `.deskew/`): under the lease only
/// gc deletes records, so gc stops before its release's files look unreferenced.
pub async fn gc_fails_closed_when_a_record_vanishes(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in ["v1", "v2"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        publish_ok(store, &dir, name, at(-100 + i as i64)).await;
    }
    let vanishing = Hooked::new(store, VanishOnRead(Key::new(".deskew/releases/v2.json").unwrap()));
    let before = keys(store).await;
    let no_grace = Policy { grace: Duration::ZERO, ..policy(1, None, &[]) };
    let err = try_gc(&vanishing, no_grace.clone(), now(), None).await.unwrap_err();
    let msg = deskew_core::error_chain(&err);
    assert!(matches!(err, GcError::RecordVanished { .. }), "{msg}");
    assert!(msg.contains(".deskew/releases/v2.json"), "{msg}");
    assert_eq!(keys(store).await, before, "nothing may be deleted");
    let dry = GcOptions { dry_run: true, ..gc_opts(no_grace, None) };
    gc::run(&vanishing, &now(), &dry, &NoProgress).await.expect("a dry run holds no lease: a record may go under it");
}

/// A heartbeat gc cannot read names no release it could keep alive: gc deletes nothing.
pub async fn gc_fails_closed_on_a_foreign_heartbeat(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("h1");
    synthetic_build(&dir, "h1", &["h1"], "a");
    publish_ok(store, &dir, "h1", at(-100)).await;
    let crashed = tmp.path().join("h0");
    synthetic_build(&crashed, "h0", &["h0"], "b");
    try_publish(&Hooked::new(store, FailPutsAfter::new(5)), &crashed, "h0", now()).await.unwrap_err();
    let hb = Key::new(".deskew/publishing/h0/x.json").unwrap();
    store.put(&hb, Body::Bytes(Bytes::from_static(b"{\"release\": \"h0\", \"expi")), &PutOptions::default()).await.unwrap();
    let before = keys(store).await;
    let err = try_gc(store, Policy { grace: Duration::ZERO, ..policy(1, None, &[]) }, now(), None).await.unwrap_err();
    let msg = deskew_core::error_chain(&err);
    assert!(matches!(err, GcError::BadHeartbeat { .. }), "{msg}");
    assert!(msg.contains(".deskew/publishing/h0/x.json"), "{msg}");
    assert_eq!(keys(store).await, before, "nothing may be deleted");
}

/// A build with two mutable files, `config.json` and `robots.txt`, both naming `version`.
fn two_mutable_build(dir: &Path, version: &str) {
    synthetic_build(dir, version, &[version], &format!("robots of {version}"));
    std::fs::write(dir.join("config.json"), format!("{{\"version\": {version:?}}}")).unwrap();
}

async fn holds(store: &dyn Store, dir: &Path, path: &str) -> bool {
    store.get(&Key::new(path).unwrap()).await.ok().as_deref() == Some(std::fs::read(dir.join(path)).unwrap().as_slice())
}

/// SIGTERM once the first mutable file is written: the other one is written too and the release
/// completes; stopping there would serve a mix of two releases.
pub async fn a_signal_among_the_mutable_writes_lets_them_finish(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("m1"), tmp.path().join("m2"));
    two_mutable_build(&d1, "m1");
    two_mutable_build(&d2, "m2");
    publish_ok(store, &d1, "m1", at(-100)).await;
    let cancel = deskew_core::cancel::Cancel::new();
    let signalled = Hooked::new(store, CancelAfterPut { key: Key::new("config.json").unwrap(), cancel: cancel.clone() });
    let one_at_a_time = PublishOptions { concurrency: 1, cancel: cancel.clone(), ..opts() };
    let r = try_publish_with(&signalled, &d2, "m2", now(), &one_at_a_time).await;
    assert!(cancel.is_cancelled(), "the signal came");
    let r = r.unwrap_or_else(|e| panic!("{}", deskew_core::error_chain(&e)));
    assert_eq!(r.outcome, Outcome::Published);
    assert!(holds(store, &d2, "config.json").await && holds(store, &d2, "robots.txt").await, "both mutable files serve m2");
    assert_eq!(record(store, "m2").await.unwrap().state, ReleaseState::Complete);
}

/// The last step fails between two mutable writes: `config.json` serves the new release, whose
/// record stays pending. A gc that would drop it as abandoned keeps it as serving, so no page
/// names a chunk that is gone; the rerun completes it.
pub async fn gc_keeps_what_a_failed_last_step_left_serving(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("s1"), tmp.path().join("s2"));
    two_mutable_build(&d1, "s1");
    two_mutable_build(&d2, "s2");
    let r = fail_last_step_then_gc(store, (&d1, "s1"), (&d2, "s2")).await;
    assert!(holds(store, &d2, "config.json").await && holds(store, &d1, "robots.txt").await, "a mix: config.json of s2, robots.txt of s1");
    let s1 = r.plan.releases.iter().find(|d| d.release.as_str() == "s1").unwrap();
    assert_eq!((s1.kept, s1.reason), (true, Reason::Current), "robots.txt still serves the current release");
    let again = publish_ok(store, &d2, "s2", now()).await;
    assert_eq!(again.outcome, Outcome::Published);
    assert!(holds(store, &d2, "robots.txt").await);
    assert_complete_releases_whole(store).await;
}

/// The last step writes a mutable file the current release does not have (`app.webmanifest`),
/// then fails: that file alone serves the new release, and gc keeps it and its chunks.
pub async fn gc_keeps_a_failed_release_serving_a_file_it_added(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("w1"), tmp.path().join("w2"));
    synthetic_build(&d1, "w1", &["w1"], "robots one");
    synthetic_build(&d2, "w2", &["w2"], "robots two");
    std::fs::write(d2.join("app.webmanifest"), "{\"name\": \"w2\"}").unwrap();
    fail_last_step_then_gc(store, (&d1, "w1"), (&d2, "w2")).await;
    assert!(holds(store, &d2, "app.webmanifest").await && holds(store, &d1, "robots.txt").await, "the file it serves stays");
}

/// Publishes `old`, then `new` with its write of `robots.txt` refused (the last step fails
/// after the mutable files sorted before it), then runs a gc keeping 1 with no grace; checks
/// `new` is kept as serving with every file but `robots.txt` stored.
async fn fail_last_step_then_gc(store: &dyn Store, old: (&Path, &str), new: (&Path, &str)) -> GcReport {
    publish_ok(store, old.0, old.1, at(-7200)).await;
    let failing = Hooked::new(store, FailPutOf(Key::new("robots.txt").unwrap()));
    let one_at_a_time = PublishOptions { concurrency: 1, ..opts() };
    let err = try_publish_with(&failing, new.0, new.1, at(-3600), &one_at_a_time).await.unwrap_err();
    assert!(deskew_core::error_chain(&err).contains("injected failure"), "{}", deskew_core::error_chain(&err));
    let r = gc_ok(store, Policy { grace: Duration::ZERO, ..policy(1, None, &[]) }, now()).await;
    let d = r.plan.releases.iter().find(|d| d.release.as_str() == new.1).unwrap();
    assert_eq!((d.kept, d.reason), (true, Reason::Serving), "{:?}", r.plan.releases);
    for k in release_keys(&manifest_of(new.0, new.1)).into_iter().filter(|k| k != "robots.txt") {
        assert!(store.get(&Key::new(&k).unwrap()).await.is_ok(), "`{k}` of the serving release was deleted");
    }
    r
}

/// A publish that dies half-way leaves a pending record and no complete release; a rerun
/// completes it with every file present.
pub async fn crash_then_rerun(store: &dyn Store) {
    let dist = fixture_dist("v2");
    let failing = Hooked::new(store, FailPutsAfter::new(5));
    let err = try_publish(&failing, &dist, "crashy", now()).await.unwrap_err();
    assert!(deskew_core::error_chain(&err).contains("injected failure"), "{}", deskew_core::error_chain(&err));
    let catalog = Catalog::load(store).await.unwrap();
    assert_eq!(catalog.records.len(), 1);
    assert_eq!(catalog.records[0].state, ReleaseState::Pending);
    let r = publish_ok(store, &dist, "crashy", now()).await;
    assert_eq!(r.outcome, Outcome::Published);
    let catalog = Catalog::load(store).await.unwrap();
    assert_eq!(catalog.records[0].state, ReleaseState::Complete);
    assert_complete_releases_whole(store).await;
}

/// A record whose paths try to leave the store is never used: GC fails closed, publish ignores
/// it (and says so), and nothing outside the store is touched.
pub async fn escaping_record_is_rejected(store: &dyn Store) {
    let dist = fixture_dist("v1");
    publish_ok(store, &dist, "good", now()).await;
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
    let err = try_gc(store, policy(1, None, &[]), at(86400), None).await.unwrap_err();
    assert!(matches!(err, GcError::Catalog { .. }), "{err}");
    assert_eq!(keys(store).await, before);
    let r = publish_ok(store, &fixture_dist("v2"), "next", now()).await;
    assert_eq!(r.warnings.iter().filter(|w| w.contains("unusable record")).count(), 3, "{:?}", r.warnings);
}

/// Files no release references are left alone until older than the grace period.
pub async fn unreferenced_files_wait_for_grace(store: &dyn Store) {
    publish_ok(store, &fixture_dist("v1"), "g1", now()).await;
    let stray = Key::new("assets/stray-Zz9Zz9Zz.js").unwrap();
    store.put(&stray, Body::Bytes(Bytes::from_static(b"leftover")), &PutOptions::default()).await.unwrap();
    let r = gc_ok(store, policy(1, None, &[]), now()).await;
    assert_eq!(r.deleted, 0);
    assert!(keys(store).await.contains(stray.as_str()));
    let r = gc_ok(store, policy(1, None, &[]), at(2 * 3600)).await;
    assert_eq!(r.deleted, 1, "only the stray file (S3's conditional-write probe object stays)");
    assert!(!keys(store).await.contains(stray.as_str()));
    assert_complete_releases_whole(store).await;
}

/// `max_delete` refuses a larger GC and deletes nothing.
pub async fn max_delete_refuses(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in ["m1", "m2", "m3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        publish_ok(store, &dir, name, at(-100 + i as i64)).await;
    }
    let before = keys(store).await;
    let err = try_gc(store, policy(1, None, &[]), now(), Some(2)).await.unwrap_err();
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
    publish_ok(store, &d1, "m-a", now()).await;
    let strict = PublishOptions { strict: true, ..opts() };
    let before = keys(store).await;
    let err = try_publish_with(store, &d2, "m-b", now(), &strict).await.unwrap_err();
    assert!(matches!(&err, PublishError::Conflicts(c) if c[0].path.as_str() == "robots.txt"), "{err}");
    assert_eq!(keys(store).await, before, "strict writes nothing");
    let r = publish_ok(store, &d2, "m-b", now()).await;
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].releases, [id("m-a")]);
    assert_eq!(store.get(&Key::new("robots.txt").unwrap()).await.unwrap(), Bytes::from_static(b"new robots"));
}

/// The key of chunk `c` in a [`synthetic_build`].
fn chunk_key(c: &str) -> Key {
    Key::new(format!("assets/{c}.{}.js", &deskew_core::manifest::sha256_hex(c.as_bytes())[..8])).unwrap()
}

/// An immutable file never changes content. A build with other content under a name a release
/// holds is refused before anything is written; other content already stored under a name no
/// record knows (a leftover) is never overwritten, and that release stays pending; the same
/// content there (a resumed upload) is fine.
pub async fn immutable_files_never_change(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2, d3) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    synthetic_build(&d1, "i-a", &["x"], "r");
    publish_ok(store, &d1, "i-a", now()).await;
    synthetic_build(&d2, "i-b", &["x"], "r");
    let x = chunk_key("x");
    std::fs::write(d2.join(x.as_str()), "export const name = \"changed\";\n").unwrap();
    let before = keys(store).await;
    let err = try_publish(store, &d2, "i-b", now()).await.unwrap_err();
    assert!(matches!(&err, PublishError::Clash { path, releases, .. } if *path == x && releases == &[id("i-a")]), "{err}");
    assert_eq!(keys(store).await, before, "nothing written");
    if !store.capabilities().await.unwrap().create_only {
        return; // without create-only writes a stored leftover cannot be told from a race
    }
    synthetic_build(&d3, "i-c", &["y"], "r");
    let y = chunk_key("y");
    store.put(&y, Body::Bytes(Bytes::from_static(b"leftover")), &PutOptions::default()).await.unwrap();
    let err = try_publish(store, &d3, "i-c", now()).await.unwrap_err();
    assert!(matches!(&err, PublishError::StoredClash { key, .. } if *key == y), "{err}");
    assert_eq!(store.get(&y).await.unwrap(), Bytes::from_static(b"leftover"), "never overwritten");
    let catalog = Catalog::load(store).await.unwrap();
    assert_eq!(catalog.get(&id("i-c")).unwrap().state, ReleaseState::Pending, "not complete");
    let ours = Bytes::from(std::fs::read(d3.join(y.as_str())).unwrap());
    store.put(&y, Body::Bytes(ours), &PutOptions::default()).await.unwrap();
    publish_ok(store, &d3, "i-c", now()).await;
    assert_complete_releases_whole(store).await;
}

/// Mutable files change only in the last step, under the lease: a publish that fails before it
/// leaves what the current release serves alone; the release that completes last is the one
/// whose content they hold (a rollback puts the old content back); content a publish that died
/// in the last step left there is put right by the next publish, whatever the records say.
pub async fn mutable_files_change_last(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("one"), tmp.path().join("two"));
    synthetic_build(&d1, "m1", &["a"], "robots one");
    synthetic_build(&d2, "m2", &["p", "q"], "robots two");
    let robots = Key::new("robots.txt").unwrap();
    publish_ok(store, &d1, "m1", at(-30)).await;
    for allowed in 0..6 {
        let failing = Hooked::new(store, FailPutsAfter::new(allowed));
        assert!(try_publish(&failing, &d2, "m2", at(-20)).await.is_err(), "fails after {allowed} puts");
        assert_eq!(store.get(&robots).await.unwrap(), Bytes::from_static(b"robots one"), "a failed publish changed a mutable file");
    }
    let catalog = Catalog::load(store).await.unwrap();
    let m1 = catalog.get(&id("m1")).unwrap();
    let report = verify::verify(store, &[m1], &catalog.records, 4).await.unwrap();
    assert!(report.findings.is_empty() && report.superseded.is_empty(), "{report:?}");
    publish_ok(store, &d2, "m2", at(-10)).await;
    assert_eq!(store.get(&robots).await.unwrap(), Bytes::from_static(b"robots two"));
    publish_ok(store, &d1, "m1", at(-5)).await;
    assert_eq!(store.get(&robots).await.unwrap(), Bytes::from_static(b"robots one"), "a rollback restores it");
    store.put(&robots, Body::Bytes(Bytes::from_static(b"robots two")), &PutOptions::default()).await.unwrap();
    let r = publish_ok(store, &d1, "m1", now()).await;
    assert_eq!(store.get(&robots).await.unwrap(), Bytes::from_static(b"robots one"), "content is compared, not trusted");
    assert_eq!(r.uploaded_keys, [robots]);
}

/// A holder whose lease is taken away by other means than lapsing (its epochs deleted by hand, a
/// holder wrongly judged dead) stops at its next check instead of acting alongside the new one.
pub async fn a_lease_taken_by_other_means_stops_its_holder(store: &dyn Store) {
    if !store.capabilities().await.unwrap().create_only {
        return;
    }
    let cfg = LeaseConfig::new(Duration::from_secs(60), Duration::from_secs(1));
    let mut first = Lease::try_acquire(store, &now(), cfg, Purpose::Gc).await.unwrap();
    first.ensure(store, &now()).await.unwrap();
    let epochs: Vec<Key> = store.list(Some(&layout::lease_dir())).await.unwrap().objects.into_iter().map(|o| o.key).collect();
    for k in epochs {
        store.delete(&k).await.unwrap();
    }
    let second = Lease::try_acquire(store, &now(), cfg, Purpose::Gc).await.unwrap();
    assert_eq!(first.epoch(), second.epoch(), "the same epoch, another holder's bytes");
    let later = at(2);
    let err = first.ensure(store, &later).await.unwrap_err();
    assert!(matches!(err, LeaseError::Lost { .. }), "{err}");
    second.release(store, &now()).await.unwrap();
}

/// A holder confirms its lease from the chain's listing alone where the listing states the MD5
/// of its epoch's bytes, and reads the epoch where it does not; either way it finds the lease
/// lost once another holder's epoch of the same number is there (the one above).
pub async fn a_lease_is_confirmed_by_its_listed_md5(store: &dyn Store) {
    if !store.capabilities().await.unwrap().create_only {
        return;
    }
    let cfg = LeaseConfig::new(Duration::from_secs(60), Duration::from_secs(1));
    let mut lease = Lease::try_acquire(store, &now(), cfg, Purpose::Gc).await.unwrap();
    let stated = store.list(Some(&layout::lease_dir())).await.unwrap().objects.iter().all(|o| o.md5.is_some());
    let reads = Hooked::new(store, Reads::default());
    lease.ensure(&reads, &at(2)).await.unwrap();
    assert_eq!(reads.hooks.0.lock().unwrap().len(), if stated { 0 } else { 1 }, "stated: {stated}");
    lease.release(store, &at(3)).await.unwrap();
}

/// A build that would write into a folder holding a store of its own is refused before anything
/// is written, and so is a build carrying a `.deskew` folder at any depth.
pub async fn publish_refuses_a_nested_store(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    synthetic_build(&first, "o0", &["z"], "r");
    publish_ok(store, &first, "o0", at(-10)).await;
    let inner = deskew_core::store::memory::MemStore::new("nested");
    publish_ok(&inner, &fixture_dist("v2"), "n1", now()).await;
    for (k, obj) in inner.snapshot() {
        store.put(&Key::new("admin").unwrap().join(&k), Body::Bytes(obj.bytes), &PutOptions::default()).await.unwrap();
    }
    let dir = tmp.path().join("outer");
    synthetic_build(&dir, "o1", &["a"], "r");
    std::fs::create_dir_all(dir.join("admin")).unwrap();
    std::fs::write(dir.join("admin/robots.txt"), "overwritten").unwrap();
    let before: BTreeSet<String> = store.list(None).await.unwrap().objects.into_iter().map(|o| o.key.to_string()).collect();
    let err = try_publish(store, &dir, "o1", now()).await.unwrap_err();
    assert!(matches!(&err, PublishError::NestedStore { folder, .. } if folder.as_str() == "admin"), "{err}");
    let after: BTreeSet<String> = store.list(None).await.unwrap().objects.into_iter().map(|o| o.key.to_string()).collect();
    assert_eq!(after, before, "nothing written");
}

/// Builds a store holding `old` (chunks f, o) and the newer `cur` (chunk c), and a build `new`
/// that reuses f: the setting of every publish/gc race below.
async fn race_setup(store: &dyn Store, tmp: &Path, n: &str) -> (std::path::PathBuf, String) {
    let (old, cur, new, f) = (format!("old{n}"), format!("cur{n}"), format!("new{n}"), format!("f{n}"));
    for (i, (name, chunks)) in [(&old, vec![f.as_str(), "o"]), (&cur, vec!["c"])].into_iter().enumerate() {
        let dir = tmp.join(name);
        synthetic_build(&dir, name, &chunks, "r");
        publish_ok(store, &dir, name, at(-20 + i as i64)).await;
    }
    let dir = tmp.join(&new);
    synthetic_build(&dir, &new, &[f.as_str(), "n"], "r");
    (dir, new)
}

/// A gc runs, whole, between the publisher's dedupe listing (which found chunk f present) and
/// its last step; the gc drops the only complete release using f. It must see the live publish
/// and keep f: the publish completes without re-uploading anything.
pub async fn gc_between_dedupe_and_complete(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, new) = race_setup(store, tmp.path(), "").await;
    let (pstore, gstore) = race(store, Race::GcBetweenDedupeAndComplete, &id(&new));
    let gc = async {
        let r = try_gc(&gstore, Policy { grace: Duration::ZERO, ..policy(1, None, &[]) }, now(), None).await;
        gstore.hooks.done();
        r
    };
    let run = async { tokio::join!(try_publish(&pstore, &dir, &new, now()), gc) };
    let (p, g) = tokio::time::timeout(Duration::from_secs(60), run).await.expect("publish and gc deadlocked");
    let p = p.unwrap_or_else(|e| panic!("publish: {}", deskew_core::error_chain(&e)));
    let g = g.unwrap_or_else(|e| panic!("gc: {}", deskew_core::error_chain(&e)));
    assert!(g.plan.dropped().any(|d| d.as_str() == "old"), "the gc dropped old: {:?}", g.plan.releases);
    assert!(!p.uploaded_keys.iter().any(|k| k.as_str().starts_with("assets/f.")), "dedupe skipped f");
    assert_eq!(p.repaired, 0, "the gc must not delete what a live publish relies on");
    assert_complete_releases_whole(store).await;
}

/// A gc has read the records and is about to delete chunk f (it drops the only release using
/// it) when a publisher registers a release that reuses f. The publisher must wait for the gc,
/// see f gone, and upload it.
pub async fn gc_deletes_while_publish_registers(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, new) = race_setup(store, tmp.path(), "").await;
    let (pstore, gstore) = race(store, Race::GcDeletesWhilePublishRegisters, &id(&new));
    let run =
        async { tokio::join!(try_publish(&pstore, &dir, &new, now()), try_gc(&gstore, Policy { grace: Duration::ZERO, ..policy(1, None, &[]) }, now(), None)) };
    let (p, g) = tokio::time::timeout(Duration::from_secs(60), run).await.expect("publish and gc deadlocked");
    let p = p.unwrap_or_else(|e| panic!("publish: {}", deskew_core::error_chain(&e)));
    let g = g.unwrap_or_else(|e| panic!("gc: {}", deskew_core::error_chain(&e)));
    assert!(g.plan.files.iter().any(|d| d.key.as_str().starts_with("assets/f.")), "gc planned to delete f: {:?}", g.plan.files);
    assert!(p.uploaded_keys.iter().any(|k| k.as_str().starts_with("assets/f.")), "the publisher uploaded f again: {:?}", p.uploaded_keys);
    assert_complete_releases_whole(store).await;
}

/// Publish and gc at the same time, `iterations` times with jittered interleavings: every
/// publish completes, and no complete release ever references a missing file.
pub async fn concurrent_publish_and_gc(store: &dyn Store, iterations: usize) {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..iterations {
        let (dir, new) = race_setup(store, tmp.path(), &i.to_string()).await;
        let jp = Hooked::new(store, Jitter::new(Duration::from_millis(3), i as u64 * 2 + 1));
        let jg = Hooked::new(store, Jitter::new(Duration::from_millis(3), i as u64 * 7 + 3));
        let gc_policy = Policy { grace: Duration::ZERO, ..policy(1, None, &[]) };
        let (p, g) = tokio::join!(try_publish(&jp, &dir, &new, now()), try_gc(&jg, gc_policy, now(), None));
        let p = p.unwrap_or_else(|e| panic!("round {i}: publish: {}", deskew_core::error_chain(&e)));
        g.unwrap_or_else(|e| panic!("round {i}: gc: {}", deskew_core::error_chain(&e)));
        assert_eq!(p.repaired, 0, "round {i}: a live publish lost files");
        assert!(record(store, &new).await.is_some_and(|r| r.state == ReleaseState::Complete), "round {i}: record of {new} lost");
        assert_complete_releases_whole(store).await;
    }
}

/// A publish that died long ago is rerun while gcs with `--grace 0` run: the gc must keep the
/// resumed release (its publish is live again), and once it completes it is the newest release,
/// whatever its first attempt's creation time.
pub async fn resumed_publish_survives_gc(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, new) = race_setup(store, tmp.path(), "").await;
    // The first attempt, a day ago, died after two uploads.
    let failing = Hooked::new(store, FailPutsAfter::new(5));
    try_publish(&failing, &dir, &new, at(-86400)).await.unwrap_err();
    assert_eq!(record(store, &new).await.unwrap().state, ReleaseState::Pending);
    let grace0 = Policy { grace: Duration::ZERO, ..policy(1, None, &[]) };
    let jp = Hooked::new(store, Jitter::new(Duration::from_millis(2), 11));
    let gcs = async {
        for _ in 0..3 {
            try_gc(store, grace0.clone(), now(), None).await.unwrap();
        }
    };
    let (p, ()) = tokio::join!(try_publish(&jp, &dir, &new, now()), gcs);
    let p = p.unwrap_or_else(|e| panic!("resumed publish: {}", deskew_core::error_chain(&e)));
    assert_eq!(p.outcome, Outcome::Published);
    assert_eq!(Catalog::load(store).await.unwrap().records[0].release.as_str(), new, "the resumed release is the newest");
    let g = gc_ok(store, grace0, now()).await;
    assert!(g.plan.releases.iter().any(|d| d.release.as_str() == new && d.kept), "{:?}", g.plan.releases);
    assert_complete_releases_whole(store).await;
}

/// A gc killed after its first delete request leaves the dropped releases marked `dropping`
/// (never `complete` with files missing); a pin of one is refused; the next gc finishes.
pub async fn interrupted_gc_leaves_truthful_records(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in ["g1", "g2", "g3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name, "x", "y", "z"], "a");
        publish_ok(store, &dir, name, at(-100 + i as i64)).await;
    }
    let dying = Hooked::new(store, FailDeletesAfter::new(1));
    let grace0 = Policy { grace: Duration::ZERO, ..policy(1, None, &[]) };
    try_gc(&dying, grace0.clone(), now(), None).await.unwrap_err();
    let records = Catalog::load(store).await.unwrap().into_clean().unwrap();
    let states: Vec<(&str, ReleaseState)> = records.iter().map(|r| (r.release.as_str(), r.state)).collect();
    assert!(states.contains(&("g3", ReleaseState::Complete)), "{states:?}");
    assert!(states.contains(&("g1", ReleaseState::Dropping)) && states.contains(&("g2", ReleaseState::Dropping)), "{states:?}");
    assert_complete_releases_whole(store).await;
    let err = try_gc(store, policy(2, None, &["g1"]), now(), None).await.unwrap_err();
    assert!(deskew_core::error_chain(&err).contains("not whole"), "{}", deskew_core::error_chain(&err));
    gc_ok(store, grace0, now()).await;
    let ids: Vec<String> = Catalog::load(store).await.unwrap().records.iter().map(|r| r.release.to_string()).collect();
    assert_eq!(ids, ["g3"]);
    assert_complete_releases_whole(store).await;
    // Publishing a dropped release again restores it.
    publish_ok(store, &tmp.path().join("g1"), "g1", now()).await;
    assert_eq!(record(store, "g1").await.unwrap().state, ReleaseState::Complete);
    assert_complete_releases_whole(store).await;
}

/// `publish --keep 1` keeps the new release and the one serving traffic before it; a pin may
/// name the release being published.
pub async fn publish_keep_counts_besides_new(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in ["k1", "k2", "k3"].iter().enumerate() {
        let dir = tmp.path().join(name);
        synthetic_build(&dir, name, &[name], "a");
        let mut o = opts();
        o.policy = Some(Policy { published: Some(id(name)), pins: vec![id(name)], ..policy(1, None, &[]) });
        try_publish_with(store, &dir, name, at(-100 + i as i64), &o).await.unwrap();
        let p = Policy { published: Some(id(name)), ..policy(1, None, &[name]) };
        gc::run(store, &at(-100 + i as i64), &gc_opts(p, None), &NoProgress).await.unwrap();
    }
    let ids: Vec<String> = Catalog::load(store).await.unwrap().records.iter().map(|r| r.release.to_string()).collect();
    assert_eq!(ids, ["k3", "k2"], "the new release and the one before it");
    assert_complete_releases_whole(store).await;
}

/// Every put that carries a sha256 checks what it stores, from memory or from a file, small or
/// large: a mismatch is refused and nothing is stored.
pub async fn puts_check_sha256(store: &dyn Store) {
    let tmp = tempfile::tempdir().unwrap();
    let good = Bytes::from_static(b"the right content");
    let sha = deskew_core::digest::sha256_hex(&good);
    let opts = |s: &str| PutOptions { sha256: Some(s.to_string()), ..PutOptions::default() };
    let k = Key::new("assets/checked.js").unwrap();
    let err = store.put(&k, Body::Bytes(Bytes::from_static(b"other content")), &opts(&sha)).await.unwrap_err();
    assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for (name, body) in [("small", b"changed since the manifest".to_vec()), ("big", big.clone())] {
        let path = tmp.path().join(name);
        std::fs::write(&path, &body).unwrap();
        let err = store.put(&Key::new(format!("assets/{name}.bin")).unwrap(), Body::File(path.clone()), &opts(&sha)).await.unwrap_err();
        assert!(matches!(err, StoreError::Checksum { .. }), "{name}: {err}");
        let right = deskew_core::digest::sha256_hex(&body);
        store.put(&Key::new(format!("assets/{name}.bin")).unwrap(), Body::File(path), &opts(&right)).await.unwrap();
    }
    let stored: BTreeSet<String> = keys(store).await;
    assert!(!stored.contains("assets/checked.js"), "a refused put stores nothing");
    assert_eq!(store.get(&Key::new("assets/big.bin").unwrap()).await.unwrap().len(), big.len());
    store.put(&k, Body::Bytes(good), &opts(&sha)).await.unwrap();
}

/// A guard that refuses stops a put and a batch delete before they change anything.
pub async fn guard_refuses_commit(store: &dyn Store) {
    let k = Key::new("assets/guarded.js").unwrap();
    let no = WriteGuard::new(|| false);
    let put = PutOptions { guard: Some(no.clone()), ..PutOptions::default() };
    let err = store.put(&k, Body::Bytes(Bytes::from_static(b"x")), &put).await.unwrap_err();
    assert!(matches!(err, StoreError::GuardFailed { .. }), "{err}");
    assert!(store.get(&k).await.unwrap_err().is_not_found());
    store.put(&k, Body::Bytes(Bytes::from_static(b"x")), &PutOptions::default()).await.unwrap();
    let results = store.delete_many(std::slice::from_ref(&k), Some(&no)).await;
    assert!(matches!(results[0], Err(StoreError::GuardFailed { .. })), "{results:?}");
    assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"x"));
    let yes = WriteGuard::new(|| true);
    assert!(store.delete_many(std::slice::from_ref(&k), Some(&yes)).await[0].is_ok());
    assert!(store.get(&k).await.unwrap_err().is_not_found());
}

/// A place without the store marker is not a store: gc and verify refuse it (deleting nothing),
/// publish refuses it unless it is empty (then it creates the marker).
pub async fn not_a_store_is_refused(store: &dyn Store) {
    let k = Key::new("home/user/important.txt").unwrap();
    store.put(&k, Body::Bytes(Bytes::from_static(b"precious")), &PutOptions::default()).await.unwrap();
    let err = try_gc(store, Policy { grace: Duration::ZERO, ..policy(1, None, &[]) }, at(86400 * 30), None).await.unwrap_err();
    assert!(matches!(err, GcError::Marker(MarkerError::NotAStore { empty: false, .. })), "{err}");
    let err = try_publish(store, &fixture_dist("v1"), "v1", now()).await.unwrap_err();
    assert!(matches!(err, PublishError::Marker(MarkerError::NotAStore { .. })), "{err}");
    assert_eq!(keys(store).await, BTreeSet::from([k.to_string()]), "nothing written or deleted");
    store.delete(&k).await.unwrap();
    publish_ok(store, &fixture_dist("v1"), "v1", now()).await;
    assert!(marker::read(store).await.unwrap().is_some(), "publish made the empty place a store");
}

/// A store nested in another (a folder with its own marker) is left alone by the outer gc.
pub async fn nested_store_left_alone(store: &dyn Store) {
    publish_ok(store, &fixture_dist("v1"), "v1", at(-10)).await;
    let inner = Key::new("inner").unwrap();
    let nested = deskew_core::store::memory::MemStore::new("nested");
    publish_ok(&nested, &fixture_dist("v2"), "n1", at(-10)).await;
    for (k, obj) in nested.snapshot() {
        store.put(&inner.join(&k), Body::Bytes(obj.bytes), &PutOptions::default()).await.unwrap();
    }
    let before: BTreeSet<String> = keys(store).await.into_iter().filter(|k| k.starts_with("inner/")).collect();
    let r = gc_ok(store, Policy { grace: Duration::ZERO, ..policy(1, None, &[]) }, at(86400 * 30)).await;
    assert_eq!(r.plan.nested_stores, [inner]);
    let after: BTreeSet<String> = keys(store).await.into_iter().filter(|k| k.starts_with("inner/")).collect();
    assert_eq!(after, before);
}

/// Of several actors taking over one lapsed lease at once, exactly one wins; the old holder
/// cannot renew it back.
pub async fn lease_takeover_is_exclusive(store: &dyn Store) {
    let cfg = LeaseConfig::new(Duration::from_secs(60), Duration::from_secs(1));
    let mut old = Lease::try_acquire(store, &at(-3600), cfg, Purpose::Gc).await.unwrap();
    for round in 0..5 {
        let host = now();
        let results = futures::future::join_all((0..6).map(|_| Lease::try_acquire(store, &host, cfg, Purpose::Gc))).await;
        let winners: Vec<Lease> = results.into_iter().filter_map(Result::ok).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one actor may take a lapsed lease");
        let w = winners.into_iter().next().unwrap();
        // Make it lapse again for the next round: release it in the past's terms.
        assert!(matches!(old.renew(store, &at(-3600)).await, Err(LeaseError::Lost { .. })), "round {round}: a stale holder renewed");
        w.release(store, &now()).await.unwrap();
        old = Lease::try_acquire(store, &at(-3600), cfg, Purpose::Gc).await.unwrap();
    }
    assert!(matches!(Lease::try_acquire(store, &at(-3600), cfg, Purpose::Gc).await, Err(LeaseError::Held { .. })));
    old.release(store, &at(-3600)).await.unwrap();
}
