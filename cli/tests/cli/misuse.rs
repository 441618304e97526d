//! What an adversarial reviewer did to the release binary, each a test: an immutable name given
//! new content, two publishes racing for the mutable files, a killed publish, a store inside the
//! build's folders, a lease holder hidden by `hidepid=2`, absurd clock-skew bounds, a quiet
//! verify that fails, a release left serving by a publish that died in its last step.

use std::time::{Duration, Instant};

use crate::support::*;

/// A copy of fixture `base` in `t/name` whose `robots.txt` (a mutable file) says `robots`.
fn variant(t: &Scratch, name: &str, base: &str, robots: &str) -> String {
    let dir = t.path(name);
    copy_dir(std::path::Path::new(&fixture(base)), &dir);
    std::fs::write(dir.join("robots.txt"), robots).unwrap();
    s(&dir)
}

fn stored(t: &Scratch, key: &str) -> String {
    std::fs::read_to_string(t.path(&format!("store/{key}"))).unwrap()
}

/// A build that gives a hashed name another release holds new content is refused before anything
/// is written, naming the file and the release; a name whose "hash" is only digits (a date, a
/// build number) is not treated as content-hashed; `--mutable` declares a file mutable.
#[test]
fn an_immutable_name_never_gets_new_content() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let dist = variant(&t, "changed", "v2", "User-agent: *\n");
    std::fs::write(format!("{dist}/assets/about-B0thXP3Q.js"), "export default 'changed';\n").unwrap();
    let before = t.store_files();
    let r = run(&["publish", &dist, "--store", &t.store(), "--release", "v2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("assets/about-B0thXP3Q.js") && r.stderr.contains("v1"), "{}", r.stderr);
    assert_eq!(t.store_files(), before, "nothing written");
    run_ok(&["verify", "--store", &t.store()]);

    let dated = t.path("dated");
    std::fs::create_dir_all(dated.join("assets")).unwrap();
    std::fs::write(dated.join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(dated.join("assets/report-20261129.js"), "x").unwrap();
    std::fs::write(dated.join("assets/config.json"), "{}").unwrap();
    let m = run_ok(&["manifest", &s(&dated), "--json", "--mutable", "assets/config.*"]).json();
    let class = |p: &str| m["files"].as_array().unwrap().iter().find(|f| f["path"] == p).unwrap()["class"].clone();
    assert_eq!(class("assets/report-20261129.js"), "mutable", "digits alone are not a hash");
    assert_eq!(class("assets/config.json"), "mutable");
}

/// A publish killed half-way and one that fails on a bad record leave the mutable files the
/// current release serves alone; verify passes; gc then clears the dead publish.
#[test]
fn a_failed_publish_leaves_served_mutable_files_alone() {
    let t = Scratch::new();
    run_ok(&["publish", &variant(&t, "one", "v1", "robots one"), "--store", &t.store(), "--release", "r1"]);
    let big = t.path("big");
    big_build(&big, 1500, 2048);
    std::fs::write(big.join("robots.txt"), "robots big").unwrap();
    t.publish_killed(&s(&big), "r2");
    assert_eq!(stored(&t, "robots.txt"), "robots one", "a killed publish changed a served file");
    run_ok(&["verify", "--store", &t.store()]);
    let r = run_ok(&["gc", "--store", &t.store(), "--keep", "1", "--grace", "0s", "--json"]);
    let r2 = r.json()["plan"]["releases"].as_array().unwrap().iter().find(|d| d["release"] == "r2").unwrap().clone();
    assert_eq!(r2["reason"], "abandoned", "{r2}");
    assert_eq!(stored(&t, "robots.txt"), "robots one");
    run_ok(&["verify", "--store", &t.store()]);
}

/// Two builds published at once, again and again: both exit 0, and the mutable files hold the
/// content of the release that completed last (the one a rollout of "the latest" serves).
#[test]
fn racing_publishes_leave_the_last_completed_content() {
    let t = Scratch::new();
    let big = t.path("big");
    big_build(&big, 400, 1024);
    std::fs::write(big.join("robots.txt"), "robots big").unwrap();
    let small = variant(&t, "small", "v1", "robots small");
    for round in 0..4 {
        let (b, sm) = (format!("b{round}"), format!("s{round}"));
        let store = t.store();
        let bigs = s(&big);
        let racer = std::thread::spawn(move || run(&["publish", &bigs, "--store", &store, "--release", &b, "-q"]));
        let r = run(&["publish", &small, "--store", &t.store(), "--release", &sm, "-q"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rb = racer.join().unwrap();
        assert_eq!(rb.code, 0, "{}", rb.stderr);
        let completed = |id: &str| t.record(id)["completed"].as_str().unwrap().to_string();
        let (cb, cs) = (completed(&format!("b{round}")), completed(&format!("s{round}")));
        let expect = if cb > cs { "robots big" } else { "robots small" };
        assert_ne!(cb, cs, "round {round}: two completions in the same millisecond cannot be ordered");
        assert_eq!(stored(&t, "robots.txt"), expect, "round {round}: big completed {cb}, small {cs}");
    }
    run_ok(&["verify", "--store", &t.store()]);
}

/// A build with a folder where a store of its own lives (`admin/` of the outer store holds
/// `admin/.deskew/store.json`) is refused before anything is written; so is a build that
/// carries a `.deskew` folder anywhere.
#[test]
fn publish_never_writes_into_a_nested_store() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let inner = format!("{}/admin", t.store());
    run_ok(&["publish", &variant(&t, "inner", "v2", "inner robots"), "--store", &inner, "--release", "i1"]);
    let dist = variant(&t, "outer", "v3", "outer robots");
    std::fs::create_dir_all(format!("{dist}/admin")).unwrap();
    std::fs::write(format!("{dist}/admin/robots.txt"), "overwritten").unwrap();
    let before = t.store_files();
    let r = run(&["publish", &dist, "--store", &t.store(), "--release", "v3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("admin") && r.stderr.contains("store"), "{}", r.stderr);
    assert_eq!(t.store_files(), before, "nothing written");
    assert_eq!(stored(&t, "admin/robots.txt"), "inner robots");

    std::fs::remove_dir_all(format!("{dist}/admin")).unwrap();
    std::fs::create_dir_all(format!("{dist}/sub/.deskew")).unwrap();
    std::fs::write(format!("{dist}/sub/.deskew/store.json"), "{}").unwrap();
    let r = run(&["publish", &dist, "--store", &t.store(), "--release", "v3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("sub/.deskew`") && r.stderr.contains("`.deskew` folder"), "{}", r.stderr);
    assert_eq!(t.store_files(), before);
}

/// A child process that is killed however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lease's last epoch as JSON, and its key.
fn last_epoch(t: &Scratch) -> (std::path::PathBuf, serde_json::Value) {
    let mut keys: Vec<_> = std::fs::read_dir(t.path("store/.deskew/lease")).unwrap().flatten().map(|e| e.path()).collect();
    keys.sort();
    let last = keys.pop().expect("a lease epoch");
    let body = serde_json::from_str(&std::fs::read_to_string(&last).unwrap()).unwrap();
    (last, body)
}

/// With `/proc` mounted `hidepid=2`, another user's live gc is invisible in /proc: a gc run as
/// `nobody` must still see its holder alive and wait (exit 4 after `--lock-timeout`), and take
/// over at once when it has really ended. Needs root (mount namespace, setpriv).
#[test]
fn a_lease_holder_hidden_by_hidepid_is_alive() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap().stdout;
    if String::from_utf8_lossy(&uid).trim() != "0" {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root: this test must run there");
        eprintln!("skipped: needs root (mount namespace and setpriv)");
        return;
    }
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    run_ok(&["gc", "--store", &t.store(), "--keep", "1"]);
    let (key, mut body) = last_epoch(&t);
    let machine = body["process"].as_str().expect("the lease names its process").rsplit_once('/').unwrap().0.to_string();
    let mut holder = KillOnDrop(std::process::Command::new("sleep").arg("120").spawn().unwrap());
    let epoch = body["epoch"].as_u64().unwrap() + 1;
    body["epoch"] = epoch.into();
    body["token"] = "someone-else".into();
    body["state"] = "held".into();
    body["expires"] = time_from_now(60).into();
    body["process"] = format!("{machine}/{}", holder.0.id()).into();
    let next = key.with_file_name(format!("{epoch:020}.json"));
    std::fs::write(&next, serde_json::to_vec(&body).unwrap()).unwrap();
    let mut dir = t.path("store");
    while dir != std::path::Path::new("/") {
        let _ = std::process::Command::new("chmod").args(["a+rwX", &s(&dir)]).status();
        if dir.ends_with("tmp") {
            break;
        }
        dir.pop();
    }
    assert!(std::process::Command::new("chmod").args(["-R", "a+rwX", &t.store()]).status().unwrap().success());
    let as_nobody = || -> Run {
        let bin = s(&assert_cmd::cargo::cargo_bin("deskew"));
        let inner = format!(
            "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid=65534 --regid=65534 --clear-groups {bin} gc --store {} --keep 1 --lock-timeout 3s",
            t.store()
        );
        std::process::Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &inner]).env("NO_COLOR", "1").output().unwrap().into()
    };
    let r = as_nobody();
    assert_eq!(r.code, 4, "a live holder hidden from /proc must be waited for: {}", r.stderr);
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let start = Instant::now();
    let r = as_nobody();
    assert_eq!(r.code, 0, "a holder that ended is taken over: {}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// A clock-skew bound beyond an hour is refused; `init` on an existing store updates it and
/// says so.
#[test]
fn clock_skew_bounds_are_checked_and_updated() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let r = run(&["init", "--store", &t.store(), "--max-clock-skew", "100000000h"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("max-clock-skew"), "{}", r.stderr);
    let r = run_ok(&["init", "--store", &t.store(), "--max-clock-skew", "5m"]);
    assert!(r.stderr.contains("Updated") && r.stderr.contains("5m"), "{}", r.stderr);
    let marker: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(t.path("store/.deskew/store.json")).unwrap()).unwrap();
    assert_eq!(marker["max_clock_skew_ms"], 300_000, "{marker}");
    run_ok(&["gc", "--store", &t.store(), "--keep", "1"]);
}

/// `verify -q` fails loudly: each problem and the count are printed even when quiet.
#[test]
fn a_quiet_verify_still_names_what_failed() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    run_ok(&["publish", &fixture("v2"), "--store", &t.store(), "--release", "v2"]);
    std::fs::remove_file(t.path("store/assets/about-B0thXP3Q.js")).unwrap();
    let r = run(&["verify", "--store", &t.store(), "-q"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("assets/about-B0thXP3Q.js"), "{}", r.stderr);
    assert!(r.stderr.contains("problem"), "{}", r.stderr);
}

/// A stored file deleted outside deskew (a bucket lifecycle rule, a hand) is never vouched for
/// blindly: publishing its release again puts it back, and a new release sharing it uploads it
/// again before it says `complete`.
#[test]
fn a_file_deleted_outside_deskew_is_put_back_by_the_next_publish() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    let shared = t.path("store/assets/about-B0thXP3Q.js");
    std::fs::remove_file(&shared).unwrap();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    assert!(shared.exists(), "publishing v1 again puts its missing file back");
    run_ok(&["verify", "--store", &t.store()]);
    std::fs::remove_file(&shared).unwrap();
    run_ok(&["publish", &fixture("v2"), "--store", &t.store(), "--release", "v2"]);
    assert!(shared.exists(), "v2 shares the file: it must be stored before v2 is complete");
    run_ok(&["verify", "--store", &t.store()]);
}

/// A publish that died among its mutable writes (here: its record put back to `pending` after
/// it wrote them, the state such a death leaves) still serves: `releases` says so, and a gc that
/// would drop it as abandoned keeps every file of it; the rerun completes it.
#[test]
fn a_release_left_serving_by_a_dead_last_step_is_kept() {
    let t = Scratch::new();
    run_ok(&["publish", &variant(&t, "one", "v1", "robots one"), "--store", &t.store(), "--release", "r1"]);
    let two = variant(&t, "two", "v2", "robots two");
    run_ok(&["publish", &two, "--store", &t.store(), "--release", "r2"]);
    let record_path = t.path("store/.deskew/releases/r2.json");
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record_path).unwrap()).unwrap();
    record["state"] = "pending".into();
    record.as_object_mut().unwrap().remove("completed");
    std::fs::write(&record_path, serde_json::to_string_pretty(&record).unwrap()).unwrap();

    let why = |rows: &serde_json::Value, id: &str| {
        let row = rows["releases"].as_array().unwrap().iter().find(|r| r["release"] == id).unwrap().clone();
        (row["kept"].clone(), row["reason"].clone())
    };
    let v = run(&["verify", "--store", &t.store()]);
    assert_eq!(v.code, 1, "the store serves a mix: {}", v.stderr);
    assert!(v.stderr.contains("robots.txt") && v.stderr.contains("serves unfinished release `r2`"), "named, not called corrupt: {}", v.stderr);
    let listed = run_ok(&["releases", "--store", &t.store(), "--keep", "1", "--grace", "0s", "--json"]).json();
    assert_eq!(why(&listed, "r2"), (true.into(), "serving".into()), "{listed}");
    let before = t.store_files();
    let gc = run_ok(&["gc", "--store", &t.store(), "--keep", "1", "--grace", "0s", "--json"]).json();
    let decisions = serde_json::json!({ "releases": gc["plan"]["releases"] });
    assert_eq!(why(&decisions, "r2"), (true.into(), "serving".into()), "{gc}");
    let r2_files: Vec<String> = record["manifest"]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    let after = t.store_files();
    for f in r2_files.iter().filter(|f| !f.ends_with(".html")) {
        assert!(after.contains(f), "gc deleted `{f}` of the serving release (before: {before:?})");
    }
    run_ok(&["publish", &two, "--store", &t.store(), "--release", "r2"]);
    run_ok(&["gc", "--store", &t.store(), "--keep", "1", "--grace", "0s"]);
    run_ok(&["verify", "--store", &t.store()]);
    assert_eq!(stored(&t, "robots.txt"), "robots two");
}
