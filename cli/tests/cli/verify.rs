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
