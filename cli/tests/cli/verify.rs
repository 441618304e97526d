//! `deskew verify`.

use crate::support::*;

#[test]
fn missing_and_corrupt_files_exit_1() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let ok = run_ok(&["verify", "--store", &t.store(), "--json"]).json();
    assert_schema("verify", &ok);
    assert_eq!(ok["ok"], true);
    std::fs::remove_file(t.path("store/assets/about-B0thXP3Q.js")).unwrap();
    std::fs::write(t.path("store/assets/index-CRJoDtjx.css"), "tampered").unwrap();
    let r = run(&["verify", "--store", &t.store(), "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let out = r.json();
    assert_schema("verify", &out);
    assert_eq!(out["ok"], false);
    assert!(r.stderr.contains("missing: assets/about-B0thXP3Q.js (release v1"), "{}", r.stderr);
    assert!(r.stderr.contains("corrupt (stored sha256 "), "{}", r.stderr);
    assert_eq!(out["findings"].as_array().unwrap().len(), 2);
}

#[test]
fn unknown_release_is_an_error() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let r = run(&["verify", "--store", &t.store(), "--release", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("release `nope` is not in"), "{}", r.stderr);
}

#[test]
fn replaced_mutable_file_is_a_note_not_a_failure() {
    let t = Scratch::new();
    deskew_testkit::synthetic_build(&t.path("a"), "a", &["x"], "old");
    deskew_testkit::synthetic_build(&t.path("b"), "b", &["x"], "new");
    run_ok(&["publish", &s(&t.path("a")), "--store", &t.store(), "--release", "a"]);
    run_ok(&["publish", &s(&t.path("b")), "--store", &t.store(), "--release", "b"]);
    let r = run_ok(&["verify", "--store", &t.store(), "--json"]);
    assert_eq!(r.json()["superseded"][0]["path"], "robots.txt");
}

/// An empty store (a mistyped prefix, a store just made) fails verify unless `--allow-empty`.
#[test]
fn an_empty_store_does_not_verify() {
    let t = Scratch::new();
    std::fs::create_dir_all(t.path("store")).unwrap();
    let r = run(&["verify", "--store", &t.store()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no releases in") && r.stderr.contains("--allow-empty"), "{}", r.stderr);
    run_ok(&["init", "--store", &t.store()]);
    assert_eq!(run(&["verify", "--store", &t.store()]).code, 1);
    run_ok(&["verify", "--store", &t.store(), "--allow-empty"]);
}

/// `publish --repair` puts back a deleted and a corrupted file of a release verify found damaged,
/// under the release's own id, and checks it again.
#[test]
fn repair_restores_missing_and_corrupt_files() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let files = t.store_files();
    let js = files.iter().find(|f| f.starts_with("assets/") && f.ends_with(".js")).unwrap().clone();
    let css = files.iter().find(|f| f.ends_with(".css")).unwrap().clone();
    std::fs::remove_file(t.path(&format!("store/{js}"))).unwrap();
    let original = std::fs::read(t.path(&format!("store/{css}"))).unwrap();
    let mut corrupt = original.clone();
    corrupt[0] ^= 0xff;
    std::fs::write(t.path(&format!("store/{css}")), &corrupt).unwrap();
    let v = run(&["verify", "--store", &t.store(), "--json"]);
    assert_eq!(v.code, 1);
    assert_eq!(v.json()["findings"].as_array().unwrap().len(), 2);
    let r = run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1", "--repair", "--json"]);
    let out = r.json();
    assert_schema("publish", &out);
    assert_eq!(out["publish"]["outcome"], "repaired");
    assert_eq!(out["publish"]["uploaded"], 2, "{out}");
    run_ok(&["verify", "--store", &t.store()]);
    assert_eq!(std::fs::read(t.path(&format!("store/{css}"))).unwrap(), original);
    let r = run(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "nope", "--repair"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nothing to repair"), "{}", r.stderr);
}
