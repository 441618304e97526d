//! `deskew gc`.

use crate::support::*;

fn publish_at(t: &Scratch, dir: &str, id: &str, time: &str) {
    t.publish_at(dir, id, time);
}

fn gc(t: &Scratch, extra: &[&str]) -> Run {
    let store = t.store();
    let mut args = vec!["gc", "--store", &store];
    args.extend_from_slice(extra);
    deskew().args(&args).output().unwrap().into()
}

/// Four releases; `--keep 2` deletes exactly the files only the oldest two used.
#[test]
fn keep_two_of_four() {
    let t = Scratch::new();
    let builds = [("r1", ["a", "b"]), ("r2", ["a", "c"]), ("r3", ["c", "d"]), ("r4", ["d", "e"])];
    for (i, (name, chunks)) in builds.iter().enumerate() {
        deskew_testkit::synthetic_build(&t.path(name), name, chunks, "r");
        publish_at(&t, &s(&t.path(name)), name, &format!("2026-01-0{}T00:00:00Z", i + 1));
    }
    let before = t.store_files();
    let dry = gc(&t, &["--keep", "2", "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(t.store_files(), before, "dry run deletes nothing");
    insta::with_settings!({ filters => filters() }, { insta::assert_snapshot!("keep_two_of_four_dry_run", dry.stderr) });
    let r = gc(&t, &["--keep", "2", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.json();
    assert_schema("gc", &out);
    let after = t.store_files();
    let gone: Vec<&String> = before.iter().filter(|f| !after.contains(f)).collect();
    let chunk = |c: &str| gone.iter().any(|f| f.starts_with(&format!("assets/{c}.")));
    assert!(chunk("a") && chunk("b"), "{gone:?}");
    assert!(!chunk("c") && !chunk("d") && !chunk("e"), "{gone:?}");
    assert!(gone.contains(&&".deskew/releases/r1.json".to_string()) && gone.contains(&&".deskew/releases/r2/index.html".to_string()));
    // main chunk of r1 and r2, a, b, two entries, two records
    assert_eq!(gone.len(), 8, "{gone:?}");
    assert_eq!(out["deleted"], 8);
    run_ok(&["verify", "--store", &t.store()]);
}

#[test]
fn corrupt_record_deletes_nothing() {
    let t = Scratch::new();
    publish_at(&t, &fixture("v1"), "v1", "2026-01-01T00:00:00Z");
    publish_at(&t, &fixture("v2"), "v2", "2026-01-02T00:00:00Z");
    std::fs::write(t.path("store/.deskew/releases/v0.json"), "{ not json").unwrap();
    let before = t.store_files();
    let r = gc(&t, &["--keep", "1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`.deskew/releases/v0.json` is corrupt") && r.stderr.contains("deleted nothing"), "{}", r.stderr);
    assert_eq!(t.store_files(), before);
}

/// `--keep-for 1h` keeps a release retired ten minutes ago, whatever its age.
#[test]
fn keep_for_counts_from_retirement() {
    let t = Scratch::new();
    publish_at(&t, &fixture("v1"), "v1", &time_from_now(-10 * 86400));
    publish_at(&t, &fixture("v2"), "v2", &time_from_now(-600));
    let r = gc(&t, &["--keep", "1", "--keep-for", "1h", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.json();
    let v1 = out["plan"]["releases"].as_array().unwrap().iter().find(|d| d["release"] == "v1").unwrap().clone();
    assert_eq!(v1["kept"], true);
    assert_eq!(v1["reason"], "recently-retired");
    assert_eq!(out["deleted"], 0);
    let later = time_from_now(3600);
    let r = gc(&t, &["--keep", "1", "--keep-for", "1h", "--dry-run", "--at", &later, "--json"]);
    assert_eq!(r.json()["plan"]["releases"][1]["reason"], "expired");
    // --at is for dry runs only: a real gc always runs on the real clock.
    let r = gc(&t, &["--keep", "1", "--at", &later]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--dry-run"), "{}", r.stderr);
}

#[test]
fn max_delete_refuses() {
    let t = Scratch::new();
    publish_at(&t, &fixture("v1"), "v1", "2026-01-01T00:00:00Z");
    publish_at(&t, &fixture("v2"), "v2", "2026-01-02T00:00:00Z");
    let before = t.store_files();
    let r = gc(&t, &["--keep", "1", "--max-delete", "1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("more than --max-delete 1; nothing was deleted"), "{}", r.stderr);
    assert_eq!(t.store_files(), before);
}

#[test]
fn pin_keeps_a_release_and_unknown_pin_fails() {
    let t = Scratch::new();
    publish_at(&t, &fixture("v1"), "v1", "2026-01-01T00:00:00Z");
    publish_at(&t, &fixture("v2"), "v2", "2026-01-02T00:00:00Z");
    publish_at(&t, &fixture("v3"), "v3", "2026-01-03T00:00:00Z");
    let r = gc(&t, &["--keep", "1", "--pin", "v9"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("pinned release `v9` is not in the store"), "{}", r.stderr);
    let r = gc(&t, &["--keep", "1", "--pin", "v1", "--json"]);
    let kept: Vec<String> =
        r.json()["plan"]["releases"].as_array().unwrap().iter().filter(|d| d["kept"] == true).map(|d| d["release"].as_str().unwrap().to_string()).collect();
    assert_eq!(kept, ["v3", "v1"]);
    run_ok(&["verify", "--store", &t.store(), "--release", "v1"]);
}
