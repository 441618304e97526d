//! deskew inside CI/CD pipelines: signals, exit codes, logs that are not terminals, stable JUnit
//! names, failure times a server's log agrees with, what a load sends, what it skips.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use deskew_testkit::site::Site;

use crate::support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn spawn(args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("deskew")).args(args).env("NO_COLOR", "1").stderr(std::process::Stdio::piped()).spawn().unwrap()
}

fn signal(pid: u32, sig: &str) {
    assert!(std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success());
}

fn alive(pattern: &str) -> bool {
    let out = std::process::Command::new("pgrep").args(["-f", pattern]).output().unwrap();
    !out.stdout.is_empty()
}

/// SIGTERM (Kubernetes, GitLab, Argo) and SIGHUP stop a probe like SIGINT: the deploy command's
/// whole process group is stopped, the report is written, the exit code names the signal.
#[test]
fn sigterm_and_sighup_stop_the_probe_and_its_command() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    for (sig, code) in [("TERM", 143), ("HUP", 129)] {
        let t = Scratch::new();
        let report = t.path("r.json");
        let marker = t.path(&format!("deploy-{sig}-still-running"));
        let script = format!("sleep 377 & sleep 30; touch {}", s(&marker));
        let child = spawn(&["probe", &site.url, "--warmup", "0s", "--report", &s(&report), "--", "sh", "-c", &script]);
        std::thread::sleep(Duration::from_millis(1500));
        signal(child.id(), sig);
        let start = Instant::now();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(start.elapsed() < Duration::from_secs(10), "SIG{sig}: stopped promptly");
        assert_eq!(out.status.code(), Some(code), "SIG{sig}: {stderr}");
        assert!(!stderr.contains("kill:"), "no stray output from a kill program: {stderr}");
        let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(rep["interrupted"], true);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!alive(&s(&marker)), "SIG{sig}: the deploy command was stopped");
        assert!(!alive("sleep 377"), "SIG{sig}: its background child too (the whole process group)");
    }
}

/// A deploy command that fails ends the run at once (no settle) with exit 3.
#[test]
fn a_failed_deploy_exits_three_without_settling() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let start = Instant::now();
    let r = run(&["probe", &site.url, "--warmup", "0s", "--settle", "20s", "--", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("the deploy command `sh -c 'exit 7'` failed (exit code 7)"), "quoted so it can be pasted back: {}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(10), "the settle time is not waited out after a failed deploy");
}

/// publish and gc stop between writes on SIGTERM: exit 143, the record truthful, no lease left
/// (the next command runs at once), and a rerun finishes.
#[test]
fn sigterm_stops_publish_between_writes() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    big_build(&t.path("big"), 3000, 512);
    let child = spawn(&["publish", &s(&t.path("big")), "--store", &t.store(), "--release", "v2", "--concurrency", "1"]);
    let record = t.path("store/.deskew/releases/v2.json");
    let start = Instant::now();
    while !record.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(t.record("v2")["state"], "pending");
    assert!(
        !t.path("store/.deskew/publishing/v2").exists() || std::fs::read_dir(t.path("store/.deskew/publishing/v2")).unwrap().next().is_none(),
        "the heartbeat is removed"
    );
    let start = Instant::now();
    run_ok(&["gc", "--store", &t.store(), "--keep", "1", "--grace", "1h"]);
    assert!(start.elapsed() < Duration::from_secs(5), "no lease was left behind");
    run_ok(&["publish", &s(&t.path("big")), "--store", &t.store(), "--release", "v2"]);
    run_ok(&["verify", "--store", &t.store(), "--release", "v2"]);
}

/// Not on a terminal: a status line every few seconds and every new failure the moment it first
/// happens; `--quiet` shows none of it.
#[test]
fn progress_lines_when_not_on_a_terminal() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v2")));
    site.faults.not_found_every.store(50, Ordering::SeqCst);
    let r = run(&["probe", &site.url, "--duration", "6s", "--concurrency", "2"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let status_lines = r.stderr.lines().filter(|l| l.starts_with("probe: ") && l.contains(" loads, ") && l.contains("loads/s")).count();
    assert!(status_lines >= 1, "a periodic status line:\n{}", r.stderr);
    let first = r.stderr.lines().filter(|l| l.starts_with("probe: first failure at ")).count();
    assert!(first >= 1, "each new failure as it happens:\n{}", r.stderr);
    let quiet = run(&["probe", &site.url, "--duration", "1s", "-q"]);
    assert!(!quiet.stderr.contains("probe: "), "{}", quiet.stderr);
}

/// JUnit test names are the same from one run to the next, so CI keeps one history per test.
#[test]
fn junit_names_are_stable_across_runs() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v2")));
    site.faults.not_found_every.store(7, Ordering::SeqCst);
    let t = Scratch::new();
    let names = |n: usize, duration: &str| -> Vec<String> {
        let junit = t.path(&format!("r{n}.xml"));
        run(&["probe", &site.url, "--duration", duration, "--junit", &s(&junit)]);
        let xml = std::fs::read_to_string(&junit).unwrap();
        let mut names: Vec<String> =
            xml.split("<testcase ").skip(1).map(|c| c.split(" name=\"").nth(1).unwrap().split('"').next().unwrap().to_string()).collect();
        names.sort();
        names
    };
    let (a, b) = (names(1, "1s"), names(2, "2s"));
    assert_eq!(a, b, "same names whatever the number of loads");
    assert!(a.iter().any(|n| n.starts_with("page http://")), "{a:?}");
    assert!(a.iter().any(|n| n.starts_with("HTTP 404 http://")), "one case per failure group: {a:?}");
}

/// A failure's time is when its request failed, as the server's access log says (within 100 ms).
#[test]
fn failure_times_match_the_server_log() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v2")));
    site.faults.not_found_every.store(25, Ordering::SeqCst);
    let r = run(&["probe", &site.url, "--duration", "2s", "--concurrency", "1", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rep = r.json();
    let started = humantime::parse_rfc3339_weak(rep["started"].as_str().unwrap()).unwrap();
    let log = site.log.lock().unwrap().clone();
    let server_404s: Vec<(SystemTime, String)> = log.iter().filter(|l| l.status == 404).map(|l| (l.at, l.path.clone())).collect();
    assert!(!server_404s.is_empty());
    for g in rep["failures"].as_array().unwrap() {
        let path = url::Url::parse(g["url"].as_str().unwrap()).unwrap().path().to_string();
        let first = started + Duration::from_millis(g["first_seen_ms"].as_u64().unwrap());
        let server_first = server_404s.iter().filter(|(_, p)| *p == path).map(|(t, _)| *t).min().unwrap();
        let gap = first.duration_since(server_first).unwrap_or_else(|e| e.duration());
        assert!(gap < Duration::from_millis(100), "{path}: report says {first:?}, server {server_first:?} ({gap:?} apart)");
    }
}

/// Resources on another origin are skipped by default, and a warning names the origin and count.
#[test]
fn skipped_origins_are_named() {
    let rt = rt();
    let cdn = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    std::fs::create_dir_all(t.path("page")).unwrap();
    std::fs::write(
        t.path("page/index.html"),
        format!(
            "<!doctype html><script type=module src=\"{}assets/a-Zz9Zz9Zz.js\"></script><link rel=stylesheet href=\"{}assets/b-Zz9Zz9Zz.css\">",
            cdn.url, cdn.url
        ),
    )
    .unwrap();
    let page = rt.block_on(Site::start(t.path("page")));
    let r = run(&["probe", &page.url, "--duration", "1s", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let origin = cdn.url.trim_end_matches('/');
    assert!(r.stderr.contains("were not checked") && r.stderr.contains(origin), "{}", r.stderr);
    let rep = r.json();
    assert_eq!(rep["skipped_origins"][0]["origin"], origin);
    assert!(rep["skipped_origins"][0]["resources"].as_u64().unwrap() >= 2);
    let r = run(&["probe", &page.url, "--duration", "1s", "--allow-origin", "*"]);
    assert_eq!(r.code, 1, "with '*' the missing CDN files are checked: {}", r.stderr);
}

/// Headers, basic credentials and cookies reach the server (credentials and cookies only the
/// page's origin); `--resolve` aims at an address while the URL keeps its host; the password is
/// never printed.
#[test]
fn headers_auth_cookies_and_resolve_reach_the_server() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let port = url::Url::parse(&site.url).unwrap().port().unwrap();
    let url = format!("http://web.example:{port}/");
    let secret = "s3cr3t-that-must-not-leak";
    let r = run(&[
        "probe",
        &url,
        "--duration",
        "1s",
        "-vv",
        "--json",
        "-H",
        "X-Canary: always",
        "--basic-auth",
        &format!("ops:{secret}"),
        "--cookie",
        "session=abc123",
        "--resolve",
        &format!("web.example:{port}:127.0.0.1"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains(secret) && !r.stdout.contains(secret), "the password is never printed");
    let log = site.log.lock().unwrap().clone();
    assert!(!log.is_empty());
    for l in &log {
        let h = |name: &str| l.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(h("x-canary").as_deref(), Some("always"), "{}", l.path);
        assert_eq!(h("authorization").as_deref(), Some(format!("Basic {}", deskew_probe::tls::base64(format!("ops:{secret}").as_bytes())).as_str()));
        assert_eq!(h("cookie").as_deref(), Some("session=abc123"));
        assert_eq!(h("host").as_deref(), Some(format!("web.example:{port}").as_str()), "the URL keeps its host");
    }
}

/// `--insecure` accepts a certificate no CA vouches for; without it the page is unreachable (4).
#[test]
fn insecure_accepts_an_untrusted_certificate() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let ca = deskew_testkit::tls::make_test_ca(&t.path("ca"));
    let proxy = rt.block_on(deskew_testkit::proxy::FaultProxy::start_tls(site.url.trim_end_matches('/'), &ca.cert_pem, &ca.key_pem));
    let url = format!("{}/", proxy.url.trim_end_matches('/'));
    let r = run(&["probe", &url, "--duration", "1s"]);
    assert_eq!(r.code, 4, "an untrusted certificate is refused: {}", r.stderr);
    let r = run(&["probe", &url, "--duration", "1s", "--insecure"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A URL without a scheme is probed over http, with a note; flags are checked before anything
/// runs, with errors that name what is wrong.
#[test]
fn urls_and_flags_are_checked_when_parsed() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let bare = site.url.trim_start_matches("http://").to_string();
    let r = run(&["probe", &bare, "--duration", "1s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no scheme given, probing http://"), "{}", r.stderr);
    let r = run(&["probe", "localhost:9", "--duration", "1s"]);
    assert_eq!(r.code, 4, "localhost:9 means http://localhost:9 (unreachable), not a `localhost:` scheme: {}", r.stderr);
    for (args, needle) in [
        (vec!["gc", "--store", "/tmp/x", "--keep", "0"], "must be at least 1"),
        (vec!["publish", ".", "--store", "/tmp/x", "--keep", "0"], "must be at least 1"),
        (vec!["releases", "--store", "s3://b/p", "--endpoint-url", "127.0.0.1:9"], "is not an endpoint URL"),
        (vec!["probe", "http://x/", "--duration", "0s"], "must be longer than zero"),
        (vec!["probe", "http://x/", "--duration", "1s", "-H", "no colon"], "is not a header"),
        (vec!["probe", "http://x/", "--duration", "1s", "--resolve", "web:443"], "is not HOST:PORT:ADDR"),
        (vec!["probe", "http://x/", "--duration", "1s", "--basic-auth", "nocolon"], "USER:PASS"),
        (vec!["gc", "--store", "/tmp/x", "--keep", "1", "--at", "2026-01-01T00:00:00Z"], "--dry-run"),
    ] {
        let start = Instant::now();
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?} should say {needle:?}: {}", r.stderr);
        assert!(start.elapsed() < Duration::from_secs(2), "{args:?}: refused before connecting to anything");
    }
}

/// Two SIGTERMs once publish writes the files the store serves: the second does not cut those
/// writes off (the store would serve a mix of two releases); they and the record finish.
#[test]
fn a_second_sigterm_among_the_mutable_writes_lets_them_finish() {
    let t = Scratch::new();
    let build = |name: &str, n: usize| {
        let dir = t.path(name);
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::write(dir.join("index.html"), format!("<!doctype html><title>{name}</title>")).unwrap();
        for i in 0..n {
            std::fs::write(dir.join(format!("m/file-{i:04}.txt")), format!("{name} {i}")).unwrap();
        }
        s(&dir)
    };
    let n = 2000;
    run_ok(&["publish", &build("one", n), "--store", &t.store(), "--release", "one", "-q"]);
    let child = spawn(&["publish", &build("two", n), "--store", &t.store(), "--release", "two", "--concurrency", "1"]);
    let first = t.path("store/m/file-0000.txt");
    let start = Instant::now();
    while std::fs::read_to_string(&first).unwrap_or_default() != "two 0" {
        assert!(start.elapsed() < Duration::from_secs(60), "the mutable writes never began");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(20));
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("finishing the last writes"), "the second signal came among the writes: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(t.record("two")["state"], "complete");
    for i in 0..n {
        assert_eq!(std::fs::read_to_string(t.path(&format!("store/m/file-{i:04}.txt"))).unwrap(), format!("two {i}"));
    }
}
