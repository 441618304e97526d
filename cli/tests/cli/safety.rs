//! The store's safety promises, attacked with the real binary on a real directory: every way a
//! store was seen to lose data or touch what is not its own (links out of the root, a directory
//! that is not a store, a killed gc, a resumed publish, long names, two containers with one PID,
//! `--keep 1` at publish, a stray file with an invalid name, a test hook in production).

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use crate::support::*;

fn gc(t: &Scratch, extra: &[&str]) -> Run {
    let store = t.store();
    let mut args = vec!["gc", "--store", &store];
    args.extend_from_slice(extra);
    run(&args)
}

fn outside(t: &Scratch) -> std::path::PathBuf {
    let dir = t.path("outside");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("victim.txt"), "precious").unwrap();
    dir
}

fn assert_outside_untouched(t: &Scratch) {
    let entries: Vec<_> = std::fs::read_dir(t.path("outside")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["victim.txt"], "nothing may appear outside the store");
    assert_eq!(std::fs::read_to_string(t.path("outside/victim.txt")).unwrap(), "precious");
}

/// A folder of the store that links outside: publishing a file under it is refused, and the
/// file outside is untouched.
#[test]
fn publish_never_writes_through_a_link() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    symlink(outside(&t), t.path("store/x")).unwrap();
    let dist = t.path("dist");
    std::fs::create_dir_all(dist.join("x")).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(dist.join("x/victim.txt"), "overwritten").unwrap();
    let r = run(&["publish", &s(&dist), "--store", &t.store(), "--release", "evil"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`x`, which is a symbolic link"), "{}", r.stderr);
    assert_outside_untouched(&t);
}

/// A directory link inside the store (`assets2 -> elsewhere`): gc refuses to run (it cannot know
/// what the link is for) and deletes nothing, in the store or behind the link.
#[test]
fn gc_refuses_a_store_holding_a_link() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    run_ok(&["publish", &fixture("v2"), "--store", &t.store(), "--release", "v2"]);
    symlink(outside(&t), t.path("store/assets2")).unwrap();
    let before = t.store_files();
    let r = gc(&t, &["--keep", "1", "--grace", "0s"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`assets2` is a symbolic link") && r.stderr.contains("gc deleted nothing"), "{}", r.stderr);
    assert_eq!(t.store_files(), before);
    assert_outside_untouched(&t);
}

/// `.deskew` itself a link: every command refuses, nothing is deleted.
#[test]
fn a_linked_deskew_folder_is_refused() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    run_ok(&["publish", &fixture("v2"), "--store", &t.store(), "--release", "v2"]);
    std::fs::rename(t.path("store/.deskew"), t.path("elsewhere")).unwrap();
    symlink(t.path("elsewhere"), t.path("store/.deskew")).unwrap();
    let before = t.store_files();
    for args in [vec!["gc", "--keep", "1", "--grace", "0s"], vec!["verify"], vec!["releases"], vec!["publish", "DIST", "--release", "v3"]] {
        let store = t.store();
        let v3 = fixture("v3");
        let mut a: Vec<&str> = args.iter().map(|x| if *x == "DIST" { v3.as_str() } else { x }).collect();
        a.extend(["--store", &store]);
        let r = run(&a);
        assert_eq!(r.code, 2, "{a:?}: {}", r.stderr);
        assert!(r.stderr.contains("symbolic link"), "{a:?}: {}", r.stderr);
    }
    assert_eq!(t.store_files(), before);
}

/// A stored asset replaced by a link to a file outside: verify reports it, never reads through.
#[test]
fn verify_reports_a_linked_asset() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let asset = t.path("store/favicon.ico");
    std::fs::remove_file(&asset).unwrap();
    symlink(outside(&t).join("victim.txt"), &asset).unwrap();
    let r = run(&["verify", "--store", &t.store(), "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let finding = &r.json()["findings"][0];
    assert_eq!(finding["path"], "favicon.ico");
    assert_eq!(finding["problem"]["kind"], "unreadable");
    assert!(finding["problem"]["why"].as_str().unwrap().contains("symbolic link"), "{finding}");
}

/// A record that links to `/dev/zero` is never read (it would be read until memory runs out).
#[test]
fn a_record_linked_to_a_device_is_refused_at_once() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    symlink("/dev/zero", t.path("store/.deskew/releases/evil.json")).unwrap();
    let start = Instant::now();
    let r = gc(&t, &["--keep", "1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("evil.json` is a symbolic link"), "{}", r.stderr);
    let r = run(&["verify", "--store", &t.store()]);
    assert_eq!(r.code, 0, "verify checks v1 and warns about the link: {}", r.stderr);
    assert!(r.stderr.contains("evil.json` is a symbolic link"), "{}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(20));
}

/// `--store /srv` instead of `/srv/assets`: gc and verify refuse a directory without the marker,
/// whatever its files' ages; publish refuses it unless it is empty; `init` adopts it on purpose.
#[test]
fn a_directory_that_is_not_a_store_is_refused() {
    let t = Scratch::new();
    let srv = t.path("store");
    std::fs::create_dir_all(srv.join("www")).unwrap();
    std::fs::write(srv.join("www/index.php"), "<?php").unwrap();
    std::fs::write(srv.join("notes.txt"), "keep me").unwrap();
    let before = t.store_files();
    let r = gc(&t, &["--keep", "1", "--grace", "0s"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a deskew store") && r.stderr.contains("deskew init"), "{}", r.stderr);
    let r: Run = deskew().args(["gc", "--keep", "1", "--grace", "0s"]).env("DESKEW_STORE", &srv).output().unwrap().into();
    assert_eq!(r.code, 2, "a wrong DESKEW_STORE is refused too: {}", r.stderr);
    let r = run(&["verify", "--store", &t.store()]);
    assert_eq!(r.code, 2);
    let r = run(&["publish", &fixture("v1"), "--store", &t.store()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a deskew store"), "{}", r.stderr);
    assert_eq!(t.store_files(), before, "nothing written or deleted");
    run_ok(&["init", "--store", &t.store()]);
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    // Adopted on purpose, the files no release references are the gc's after the grace period.
    let r = gc(&t, &["--keep", "1", "--dry-run", "--json"]);
    assert_eq!(r.json()["plan"]["files"].as_array().unwrap().len(), 0, "young unreferenced files wait for the grace period");
}

/// A store inside another: the outer gc leaves it whole.
#[test]
fn a_nested_store_survives_the_outer_gc() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let inner = format!("{}/inner", t.store());
    run_ok(&["publish", &fixture("v2"), "--store", &inner, "--release", "i1"]);
    run_ok(&["publish", &fixture("v3"), "--store", &t.store(), "--release", "v3"]);
    let r = gc(&t, &["--keep", "1", "--grace", "0s", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["plan"]["nested_stores"][0], "inner");
    run_ok(&["verify", "--store", &inner]);
}

/// File names up to the filesystem's limit publish (the temporary name does not grow with them).
#[test]
fn long_file_names_publish() {
    let t = Scratch::new();
    let dist = t.path("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html>").unwrap();
    let name = format!("{}-0123abcd.js", "a".repeat(240));
    assert_eq!(name.len(), 252);
    std::fs::write(dist.join("assets").join(&name), "export {}").unwrap();
    run_ok(&["publish", &s(&dist), "--store", &t.store(), "--release", "long"]);
    run_ok(&["verify", "--store", &t.store()]);
}

/// Two containers with the same PID (separate PID namespaces) publishing to one volume at once:
/// their temporary files never collide.
#[test]
fn same_pid_in_two_containers_does_not_collide() {
    let t = Scratch::new();
    let bin = assert_cmd::cargo::cargo_bin("deskew");
    for round in 0..5 {
        let children: Vec<_> = ["a", "b"]
            .iter()
            .map(|who| {
                let id = format!("{who}{round}");
                std::process::Command::new("unshare")
                    .args(["--pid", "--fork", "--mount-proc"])
                    .arg(&bin)
                    .args(["publish", &fixture("v2"), "--store", &t.store(), "--release", &id, "-q"])
                    .env("NO_COLOR", "1")
                    .output()
            })
            .collect();
        for c in children {
            let out = c.expect("unshare (util-linux) runs");
            assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    assert!(!t.store_files().iter().any(|f| f.contains(".deskew-tmp-")), "no temporary file left");
    run_ok(&["verify", "--store", &t.store()]);
}

/// A gc killed at many points (SIGKILL after 0 to 100 ms): whatever it had done, every record
/// that says `complete` is whole (verify passes), a release it began dropping says `dropping`,
/// pinning such a release is refused, and the next gc takes over the dead gc's lease at once
/// (same machine, its process is gone) and finishes.
#[test]
fn a_killed_gc_leaves_truthful_records() {
    let t = Scratch::new();
    let names = ["g1", "g2", "g3"];
    for name in names {
        let dir = t.path(name);
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), format!("<!doctype html>{name}")).unwrap();
        for i in 0..500 {
            std::fs::write(dir.join(format!("assets/{name}-{i}-0123abcd.js")), format!("{name} {i}")).unwrap();
        }
    }
    let mut caught_dropping = 0;
    for delay_ms in [0u64, 5, 10, 20, 35, 60, 100] {
        // Three releases, each its own files; the gc keeps the newest and drops two.
        for (i, name) in names.iter().enumerate() {
            t.publish_at(&s(&t.path(name)), name, &time_from_now(-100 + i as i64));
        }
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("deskew"))
            .args(["gc", "--store", &t.store(), "--keep", "1", "--grace", "0s", "-q"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let v = run(&["verify", "--store", &t.store()]);
        assert_eq!(v.code, 0, "after a kill at {delay_ms} ms, a complete release is not whole: {}", v.stderr);
        let releases = run_ok(&["releases", "--store", &t.store(), "--json"]).json();
        let dropping: Vec<String> =
            releases["releases"].as_array().unwrap().iter().filter(|r| r["state"] == "dropping").map(|r| r["release"].as_str().unwrap().to_string()).collect();
        if let Some(d) = dropping.first() {
            caught_dropping += 1;
            assert!(v.stderr.contains(&format!("release {d} is being dropped")), "{}", v.stderr);
            let r = gc(&t, &["--keep", "2", "--pin", d]);
            assert_eq!(r.code, 2);
            assert!(r.stderr.contains(&format!("pinned release `{d}` is not whole")), "{}", r.stderr);
        }
        let start = Instant::now();
        let r = gc(&t, &["--keep", "1", "--grace", "0s"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(start.elapsed() < Duration::from_secs(15), "the dead gc's lease is taken over without waiting for it to lapse");
        let ids: Vec<String> = run_ok(&["releases", "--store", &t.store(), "--json"]).json()["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["release"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["g3"], "after a kill at {delay_ms} ms");
        run_ok(&["verify", "--store", &t.store()]);
    }
    eprintln!("{caught_dropping} of 7 kills landed while the gc was dropping");
    assert!(caught_dropping > 0, "no kill landed while the gc was dropping: the test did not test anything");
}

/// A publish that died a day ago is rerun while gcs with `--grace 0` run in a loop: it
/// completes, and the release is whole right after.
#[test]
fn a_resumed_publish_survives_a_gc_loop() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    big_build(&t.path("big"), 1500, 2048);
    t.publish_killed(&s(&t.path("big")), "v2");
    t.backdate("v2", &time_from_now(-86400));
    let store = t.store();
    let gcs = std::thread::spawn(move || {
        for _ in 0..15 {
            let r = run(&["gc", "--store", &store, "--keep", "1", "--grace", "0s"]);
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
    });
    run_ok(&["publish", &s(&t.path("big")), "--store", &t.store(), "--release", "v2"]);
    run_ok(&["verify", "--store", &t.store(), "--release", "v2"]);
    gcs.join().unwrap();
    run_ok(&["verify", "--store", &t.store(), "--release", "v2"]);
}

/// `publish --keep 1` before the rollout: the release serving traffic stays whole.
#[test]
fn publish_keep_one_keeps_the_live_release() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    run_ok(&["publish", &fixture("v2"), "--store", &t.store(), "--release", "v2"]);
    run_ok(&["publish", &fixture("v3"), "--store", &t.store(), "--release", "v3", "--keep", "1", "--pin", "v3", "--grace", "0s"]);
    run_ok(&["verify", "--store", &t.store(), "--release", "v2"]);
    let r = run(&["verify", "--store", &t.store(), "--release", "v1"]);
    assert_eq!(r.code, 2, "v1 was dropped: {}", r.stderr);
}

/// `DESKEW_NOW` is not honoured: a future value cannot make a live publish look abandoned.
#[test]
fn no_clock_hook_in_production() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    big_build(&t.path("big"), 1500, 2048);
    t.publish_killed(&s(&t.path("big")), "v2");
    let r: Run = deskew().args(["gc", "--store", &t.store(), "--keep", "1", "--json"]).env("DESKEW_NOW", "2099-01-01T00:00:00Z").output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v2 = r.json()["plan"]["releases"].as_array().unwrap().iter().find(|d| d["release"] == "v2").unwrap().clone();
    assert_eq!(v2["reason"], "publishing", "a pending release of a minute ago is within the grace period: {v2}");
}

/// One stray file whose name is not a valid key: publish and verify say so and go on; gc
/// refuses (it must not guess) and deletes nothing.
#[test]
fn an_invalid_name_is_reported_not_fatal() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    std::fs::write(t.path("store/assets/bad\\name.js"), "x").unwrap();
    let r = run_ok(&["publish", &fixture("v2"), "--store", &t.store(), "--release", "v2"]);
    assert!(r.stderr.contains("bad\\name.js"), "{}", r.stderr);
    let r = run_ok(&["verify", "--store", &t.store()]);
    assert!(r.stderr.contains("bad\\name.js"), "{}", r.stderr);
    let before = t.store_files();
    let r = gc(&t, &["--keep", "1", "--grace", "0s"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad\\name.js") && r.stderr.contains("gc deleted nothing"), "{}", r.stderr);
    assert_eq!(t.store_files(), before);
}
