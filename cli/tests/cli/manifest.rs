//! `deskew manifest`.

use crate::support::*;

#[test]
fn json_is_deterministic_sorted_and_valid() {
    let a = run_ok(&["manifest", &fixture("v1"), "--json"]);
    let b = run_ok(&["manifest", &fixture("v1"), "--json"]);
    assert_eq!(a.stdout, b.stdout, "same build, same bytes");
    let m = a.json();
    assert_schema("manifest", &m);
    let files = m["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    let class = |p: &str| files.iter().find(|f| f["path"] == p).unwrap()["class"].as_str().unwrap().to_string();
    assert_eq!(class("index.html"), "entry");
    assert_eq!(class("favicon.ico"), "mutable");
    assert_eq!(class("robots.txt"), "mutable");
    for f in files.iter().filter(|f| f["path"].as_str().unwrap().starts_with("assets/")) {
        assert_eq!(f["class"], "immutable", "{f}");
        assert_eq!(f["cache_control"], "public, max-age=31536000, immutable");
    }
    let ct = |suffix: &str| files.iter().find(|f| f["path"].as_str().unwrap().ends_with(suffix)).unwrap()["content_type"].clone();
    assert_eq!(ct(".js"), "text/javascript; charset=utf-8");
    assert_eq!(ct(".css"), "text/css; charset=utf-8");
    assert_eq!(ct(".woff2"), "font/woff2");
    assert_eq!(ct(".wasm"), "application/wasm");
    assert_eq!(ct(".svg"), "image/svg+xml");
    assert_eq!(m["total"]["files"], 12);
}

#[test]
fn human_summary_goes_to_stderr() {
    let r = run_ok(&["manifest", &fixture("v1")]);
    assert!(r.stdout.is_empty());
    insta::assert_snapshot!(r.stderr);
}

#[test]
fn entry_globs_and_release_id() {
    let r = run_ok(&["manifest", &fixture("v1"), "--json", "--entry", "robots.txt", "--release", "rel-1"]);
    let m = r.json();
    assert_eq!(m["release"], "rel-1");
    let class = |p: &str| m["files"].as_array().unwrap().iter().find(|f| f["path"] == p).unwrap()["class"].clone();
    assert_eq!(class("robots.txt"), "entry");
    assert_eq!(class("index.html"), "mutable");
}

#[test]
fn exclude_leaves_files_out() {
    let r = run_ok(&["manifest", &fixture("v1"), "--json", "--exclude", "*.wasm"]);
    assert!(!r.stdout.contains(".wasm"));
    assert_eq!(r.json()["total"]["files"], 11);
}

#[test]
fn no_entry_file_warns() {
    let t = Scratch::new();
    std::fs::create_dir_all(t.path("dist")).unwrap();
    std::fs::write(t.path("dist/app.js"), "x").unwrap();
    let r = run_ok(&["manifest", &s(&t.path("dist"))]);
    assert!(r.stderr.contains("warning: no entry file"), "{}", r.stderr);
}

/// `--files` lists every file with its class and how it will be served.
#[test]
fn files_table() {
    let r = run_ok(&["manifest", &fixture("v1"), "--files"]);
    let line = r.stderr.lines().find(|l| l.starts_with("index.html")).unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(line.contains("entry") && line.contains("text/html"), "{line}");
    let chunk = r.stderr.lines().find(|l| l.starts_with("assets/about-")).unwrap();
    assert!(chunk.contains("immutable") && chunk.contains("max-age=31536000"), "{chunk}");
    assert!(r.stdout.is_empty(), "the table is for humans: stderr");
}
