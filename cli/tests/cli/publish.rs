//! `deskew publish` and `deskew releases`.

use crate::support::*;

#[test]
fn v1_v2_v3_upload_only_what_changed() {
    let t = Scratch::new();
    let mut uploaded = Vec::new();
    for v in ["v1", "v2", "v3"] {
        let r = run_ok(&["publish", &fixture(v), "--store", &t.store(), "--release", v, "--json"]);
        let out = r.json();
        assert_schema("publish", &out);
        assert_eq!(out["publish"]["outcome"], "published");
        uploaded.push(out["publish"]["uploaded"].as_u64().unwrap());
        if v == "v3" {
            let keys: Vec<&str> = out["publish"]["uploaded_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
            assert_eq!(keys.len(), 3, "{keys:?}");
            assert!(keys.iter().any(|k| k.starts_with("assets/about-")));
            assert!(keys.iter().any(|k| k.starts_with("assets/index-") && k.ends_with(".js")));
            assert!(keys.contains(&".deskew/releases/v3/index.html"));
        }
    }
    assert_eq!(uploaded, [12, 3, 3]);
    let files = t.store_files();
    assert!(files.contains(&"assets/about-B0thXP3Q.js".to_string()) && files.contains(&"assets/about-CMgSVHe5.js".to_string()));
    assert!(!files.contains(&"index.html".to_string()), "entry files never at their public path");
    // Publishing the same release again uploads nothing; only its record is rewritten (it is the
    // newest release again, as for a rollback).
    let assets: Vec<&String> = files.iter().filter(|f| !f.ends_with(".json")).collect();
    let mtimes = || -> Vec<_> { assets.iter().map(|f| std::fs::metadata(t.path(&format!("store/{f}"))).unwrap().modified().unwrap()).collect() };
    let before = mtimes();
    let r = run_ok(&["publish", &fixture("v3"), "--store", &t.store(), "--release", "v3", "--json"]);
    assert_eq!(r.json()["publish"]["outcome"], "already-complete");
    assert_eq!(r.json()["publish"]["uploaded"], 0);
    assert_eq!(before, mtimes());
    // The same id with other content is refused.
    let r = run(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v3"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("already exists in") && r.stderr.contains("different content"), "{}", r.stderr);
}

#[test]
fn default_release_id_is_time_plus_digest() {
    let t = Scratch::new();
    let r = run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--json"]);
    let id = r.json()["publish"]["release"].as_str().unwrap().to_string();
    let digest = run_ok(&["manifest", &fixture("v1"), "--json"]).json()["digest"].as_str().unwrap().to_string();
    assert!(id.ends_with(&format!("-{}", &digest[..12])), "{id}");
    assert_eq!(id.len(), "20261126T043000Z-".len() + 12);
}

#[test]
fn killed_mid_publish_then_rerun_completes() {
    let t = Scratch::new();
    big_build(&t.path("big"), 1500, 2048);
    t.publish_killed(&s(&t.path("big")), "v2");
    let rels = run_ok(&["releases", "--store", &t.store(), "--json"]).json();
    assert_eq!(rels["releases"][0]["state"], "pending");
    let v = run(&["verify", "--store", &t.store()]);
    assert_eq!(v.code, 0, "a pending release is not checked by default:\n{}", v.stderr);
    run_ok(&["publish", &s(&t.path("big")), "--store", &t.store(), "--release", "v2"]);
    let rels = run_ok(&["releases", "--store", &t.store(), "--json"]).json();
    assert_eq!(rels["releases"][0]["state"], "complete");
    let v = run_ok(&["verify", "--store", &t.store(), "--release", "v2", "--json"]).json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["objects"], 1501);
}

#[test]
fn dry_run_writes_nothing() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let before = t.store_files();
    let r = run_ok(&["publish", &fixture("v2"), "--store", &t.store(), "--release", "v2", "--dry-run", "--json"]);
    let out = r.json();
    assert_eq!(out["publish"]["outcome"], "dry-run");
    assert_eq!(out["publish"]["uploaded"], 3);
    assert_eq!(t.store_files(), before);
}

#[test]
fn mutable_change_warns_and_strict_refuses() {
    let t = Scratch::new();
    deskew_testkit::synthetic_build(&t.path("a"), "a", &["x"], "old");
    deskew_testkit::synthetic_build(&t.path("b"), "b", &["x"], "new");
    run_ok(&["publish", &s(&t.path("a")), "--store", &t.store(), "--release", "a"]);
    let before = t.store_files();
    let r = run(&["publish", &s(&t.path("b")), "--store", &t.store(), "--release", "b", "--strict"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`robots.txt`") && r.stderr.contains("`a`"), "{}", r.stderr);
    assert_eq!(t.store_files(), before, "strict writes nothing");
    let r = run_ok(&["publish", &s(&t.path("b")), "--store", &t.store(), "--release", "b"]);
    assert!(r.stderr.contains("warning: `robots.txt` changes in place: clients of `a` will now get the new content"), "{}", r.stderr);
}

#[test]
fn publish_with_keep_runs_gc() {
    let t = Scratch::new();
    // `--keep 1` at publish: the new release and the one serving traffic before it.
    for (i, name) in ["k1", "k2", "k3"].iter().enumerate() {
        deskew_testkit::synthetic_build(&t.path(name), name, &[name], "r");
        let r: Run = deskew().args(["publish", &s(&t.path(name)), "--store", &t.store(), "--release", name, "--keep", "1", "--json"]).output().unwrap().into();
        assert_eq!(r.code, 0, "{}", r.stderr);
        let out = r.json();
        assert_schema("publish", &out);
        if i == 2 {
            assert_eq!(out["gc"]["plan"]["records"][0], ".deskew/releases/k1.json");
        }
    }
    let rels = run_ok(&["releases", "--store", &t.store(), "--json"]).json();
    assert_schema("releases", &rels);
    let ids: Vec<&str> = rels["releases"].as_array().unwrap().iter().map(|r| r["release"].as_str().unwrap()).collect();
    assert_eq!(ids, ["k3", "k2"]);
}

#[test]
fn releases_table() {
    let t = Scratch::new();
    for (v, time) in [("v1", "2026-01-01T00:00:00Z"), ("v2", "2026-01-02T00:00:00Z"), ("v3", "2026-01-03T00:00:00Z")] {
        t.publish_at(&fixture(v), v, time);
    }
    let r: Run = deskew().args(["releases", "--store", &t.store(), "--keep", "2", "--at", "2026-01-04T00:00:00Z"]).output().unwrap().into();
    assert_eq!(r.code, 0);
    insta::with_settings!({ filters => filters() }, { insta::assert_snapshot!(r.stderr) });
}

/// `--dry-run` on a store that does not exist yet plans the whole upload and creates nothing.
#[test]
fn dry_run_on_a_store_that_does_not_exist_yet() {
    let t = Scratch::new();
    let r = run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1", "--dry-run", "--json"]);
    let out = r.json();
    assert_eq!(out["publish"]["outcome"], "dry-run");
    assert_eq!(out["publish"]["uploaded"], out["publish"]["files"]);
    assert!(!t.path("store").exists(), "a dry run creates nothing");
}
