//! `deskew demo`, end to end, with nothing but the binary: the first rollout (pods serving their
//! own image) fails loads naming missing chunks, the second (pods serving `/assets/` from the
//! store deskew published to) has exactly zero; one HTML report holds both.

use crate::support::*;

fn check(r: &Run, html: &std::path::Path, min_loads: u64) {
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.json();
    assert_schema("demo", &out);
    let (before, after) = (&out["without_deskew"], &out["with_deskew"]);
    assert_schema("probe-report", before);
    assert!(before["loads"]["failed"].as_u64().unwrap() > 0, "the outage is shown: {}", before["loads"]);
    let failed: Vec<&str> = before["failures"].as_array().unwrap().iter().map(|g| g["url"].as_str().unwrap()).collect();
    assert!(failed.iter().any(|u| u.contains("/assets/") && u.ends_with(".js")), "missing chunks are named: {failed:?}");
    assert_eq!(after["loads"]["failed"], 0, "{}", after["failures"]);
    assert!(after["loads"]["total"].as_u64().unwrap() >= min_loads, "{}", after["loads"]);
    let seen: Vec<&str> = after["releases_seen"].as_array().unwrap().iter().map(|r| r["release"].as_str().unwrap()).collect();
    assert_eq!(seen, ["v1", "v2"], "both releases were served during the rollout");
    assert!(r.stderr.contains("without deskew") && r.stderr.contains("with deskew"), "{}", r.stderr);
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.trim_end().ends_with("</html>"));
    assert_eq!(page.matches("<iframe").count(), 2, "both runs are in the report");
    assert!(!page[page.find("srcdoc=\"").unwrap() + 8..].split('"').next().unwrap().contains('<'), "the embedded reports are escaped");
}

#[test]
fn the_demo_shows_the_outage_and_the_fix() {
    let t = Scratch::new();
    let html = t.path("demo.html");
    let r = run(&["demo", "--dir", &s(&t.path("demo")), "--html", &s(&html), "--json"]);
    check(&r, &html, 50);
    assert!(t.path("demo/store/.deskew/store.json").exists(), "--dir keeps the store");
}

#[test]
fn the_demo_without_a_dir_leaves_nothing() {
    let t = Scratch::new();
    let html = t.path("demo.html");
    let r: Run = deskew().args(["demo", "--html", &s(&html), "--json"]).env("TMPDIR", t.path("")).output().unwrap().into();
    check(&r, &html, 50);
    let left: Vec<_> = std::fs::read_dir(t.path("")).unwrap().flatten().map(|e| e.file_name()).filter(|n| n != "demo.html").collect();
    assert!(left.is_empty(), "the temporary directory is removed: {left:?}");
}

#[test]
fn the_demo_in_browser_mode() {
    deskew_testkit::require!(Chromium);
    let t = Scratch::new();
    let html = t.path("demo.html");
    let r = run(&["demo", "--browser", "--html", &s(&html), "--json"]);
    check(&r, &html, 5);
    assert_eq!(r.json()["with_deskew"]["mode"], "browser");
}
