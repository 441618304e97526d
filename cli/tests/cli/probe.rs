//! `deskew probe` against in-process test sites that fail on purpose.

use std::sync::atomic::Ordering;

use deskew_testkit::site::Site;

use crate::support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Every 50th asset request answers 404, every 73rd drops the connection, every 97th is cut
/// short: the report counts exactly what the server did, by cause. A dropped connection is
/// retried once, as browsers retry a request whose connection closed before any answer; the
/// retry is counted, and the retried request lands on a position that does not fail.
#[test]
fn counts_exactly_what_the_server_failed() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    site.faults.not_found_every.store(50, Ordering::SeqCst);
    site.faults.drop_every.store(73, Ordering::SeqCst);
    site.faults.truncate_every.store(97, Ordering::SeqCst);
    let r = run(&["probe", &site.url, "--duration", "3s", "--concurrency", "4", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rep = r.json();
    assert_schema("probe-report", &rep);
    let f = &site.faults;
    let (n404, drops, cuts) = (f.injected_404.load(Ordering::SeqCst), f.injected_drops.load(Ordering::SeqCst), f.injected_truncations.load(Ordering::SeqCst));
    assert!(n404 > 5 && drops > 3 && cuts > 2, "the run was too short to mean anything: {n404} {drops} {cuts}");
    let by_kind =
        |kind: &str| -> u64 { rep["failures"].as_array().unwrap().iter().filter(|g| g["cause"]["kind"] == kind).map(|g| g["count"].as_u64().unwrap()).sum() };
    assert_eq!(by_kind("status"), n404 as u64);
    assert_eq!(rep["requests"]["retried"].as_u64().unwrap() as usize, drops);
    assert_eq!(by_kind("network"), 0, "every drop was retried once and the retry succeeded");
    assert_eq!(by_kind("truncated"), cuts as u64);
    assert_eq!(rep["requests"]["failed"].as_u64().unwrap() as usize, n404 + cuts);
    // Every request the server saw is in the report: pages, assets, and the retries.
    assert_eq!(
        rep["requests"]["total"].as_u64().unwrap() as usize + drops,
        f.page_requests.load(Ordering::SeqCst) - 1 + f.asset_requests.load(Ordering::SeqCst),
        "one page request is the preflight"
    );
    assert!(r.stderr.contains("SLO 100% MISSED"), "{}", r.stderr);
}

/// Only a lazy route chunk (reachable only through a dynamic `import()`) is missing: the probe
/// finds it and names it.
#[test]
fn a_missing_lazy_chunk_is_found() {
    let rt = rt();
    let t = Scratch::new();
    copy_dir(&deskew_testkit::fixture_dist("v1"), &t.path("site"));
    let chunk =
        std::fs::read_dir(t.path("site/assets")).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).find(|n| n.starts_with("about-")).unwrap();
    let index_js = std::fs::read_dir(t.path("site/assets"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("index-") && p.extension().unwrap() == "js")
        .unwrap();
    assert!(std::fs::read_to_string(&index_js).unwrap().contains(&format!("import(\"./{chunk}\")")), "the fixture loads {chunk} lazily");
    assert!(!std::fs::read_to_string(t.path("site/index.html")).unwrap().contains(&chunk), "index.html does not name the lazy chunk");
    std::fs::remove_file(t.path(&format!("site/assets/{chunk}"))).unwrap();
    let site = rt.block_on(Site::start(t.path("site")));
    let r = run(&["probe", &site.url, "--duration", "1s", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rep = r.json();
    let urls: Vec<&str> = rep["failures"].as_array().unwrap().iter().map(|g| g["url"].as_str().unwrap()).collect();
    assert_eq!(urls, [format!("{}assets/{chunk}", site.url)]);
    assert_eq!(rep["failures"][0]["cause"], serde_json::json!({"kind": "status", "status": 404}));
    assert!(r.stderr.contains(&format!("HTTP 404  {}assets/{chunk}", site.url)), "{}", r.stderr);
}

/// With --store, the probe matches the page to its release and fetches every asset of it,
/// including one no page or module imports (a wasm file whose URL the code builds at run time).
#[test]
fn store_mode_fetches_every_asset_of_the_release() {
    let rt = rt();
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    copy_dir(&deskew_testkit::fixture_dist("v1"), &t.path("site"));
    let wasm =
        std::fs::read_dir(t.path("site/assets")).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).find(|n| n.ends_with(".wasm")).unwrap();
    std::fs::remove_file(t.path(&format!("site/assets/{wasm}"))).unwrap();
    let site = rt.block_on(Site::start(t.path("site")));
    let plain = run(&["probe", &site.url, "--duration", "1s"]);
    assert_eq!(plain.code, 0, "without the store the wasm file is invisible:\n{}", plain.stderr);
    let r = run(&["probe", &site.url, "--duration", "1s", "--store", &t.store(), "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rep = r.json();
    assert_schema("probe-report", &rep);
    assert_eq!(rep["releases_seen"][0]["release"], "v1");
    let g = &rep["failures"][0];
    assert!(g["url"].as_str().unwrap().ends_with(&wasm), "{g}");
    assert_eq!(g["releases"], serde_json::json!(["v1"]));
    assert_eq!(g["owner"], serde_json::json!({"kind": "kept", "releases": ["v1"]}));
    assert!(r.stderr.contains("asset of kept release v1"), "{}", r.stderr);
}

#[test]
fn reports_junit_and_html() {
    deskew_testkit::require!(Chromium);
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v2")));
    site.faults.not_found_every.store(10, Ordering::SeqCst);
    let t = Scratch::new();
    let (report, junit, html) = (t.path("r.json"), t.path("r.xml"), t.path("r.html"));
    let r = run(&["probe", &site.url, "--rate", "20", "--duration", "2s", "--report", &s(&report), "--junit", &s(&junit), "--html", &s(&html)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_schema("probe-report", &rep);
    assert_eq!(rep["traffic"]["model"], "open");
    let loads = rep["loads"]["total"].as_u64().unwrap();
    assert!((30..=45).contains(&loads), "20 loads/s for 2s started {loads}");
    // The JUnit file parses, with one failing test case per failure group.
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); print(len(r.findall('.//testcase')), len(r.findall('.//failure')))",
            &s(&junit),
        ])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // One case for the page (failed: SLO missed) and one per failure group.
    let groups = rep["failures"].as_array().unwrap().len();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), format!("{} {}", groups + 1, groups + 1));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("SLO missed") && !page.contains("<script"), "self-contained, no scripts");
    // It opens in a real browser without errors; the screenshot is kept as a test artifact.
    let artifacts = deskew_testkit::fixtures::repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("probe-report.png");
    let _ = std::fs::remove_file(&shot);
    let profile = t.path("chromium-profile");
    let out = std::process::Command::new(deskew_testkit::chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", s(&profile)))
        .arg(format!("--screenshot={}", s(&shot)))
        .args(["--window-size=1200,900", "--enable-logging=stderr", "--v=0"])
        .arg(format!("file://{}", s(&html)))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed on the report:\n{log}");
    assert!(!log.contains("Uncaught") && !log.contains("CONSOLE"), "the report logged errors:\n{log}");
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "no screenshot of the report");
}

#[test]
fn bad_input_is_clear() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["probe".into(), "http://127.0.0.1:9/".into(), "--duration".into(), "1s".into()], 4, "cannot load http://127.0.0.1:9/: network error"),
        (vec!["probe".into(), format!("{}robots.txt", site.url), "--duration".into(), "1s".into()], 2, "not HTML (text/plain"),
        (vec!["probe".into(), format!("{}loop", site.url), "--duration".into(), "1s".into()], 2, "redirects"),
        (vec!["probe".into(), format!("{}nope.html", site.url), "--duration".into(), "1s".into()], 2, "the page answered HTTP 404"),
        (vec!["probe".into(), site.url.clone(), "--rate=-3".into(), "--duration".into(), "1s".into()], 2, "is not a rate"),
        (vec!["probe".into(), "ftp://x/".into(), "--duration".into(), "1s".into()], 2, "is not an http or https URL"),
        (vec!["probe".into(), site.url.clone()], 2, "give --duration"),
        (vec!["probe".into(), site.url.clone(), "--timeout".into(), "0s".into(), "--duration".into(), "1s".into()], 2, "must be longer than zero"),
        (vec!["probe".into(), site.url.clone(), "--allow-origin".into(), "cdn.example.com".into(), "--duration".into(), "1s".into()], 2, "is not an origin"),
        (
            vec!["probe".into(), site.url.clone(), "--warmup".into(), "0s".into(), "--settle".into(), "0s".into(), "--".into(), "false".into()],
            3,
            "the deploy command `false` failed (exit code 1)",
        ),
        (
            vec!["probe".into(), site.url.clone(), "--warmup".into(), "0s".into(), "--".into(), "/no/such/cmd".into()],
            2,
            "the deploy command `/no/such/cmd` cannot be run",
        ),
        (vec!["probe".into(), site.url.clone(), "--".into(), "kubectl rollout status deploy/web".into()], 2, "sh -c 'kubectl rollout status deploy/web'"),
    ];
    for (args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = std::time::Instant::now();
        let r = run(&args);
        assert_eq!(r.code, code, "{args:?}:\n{}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?} should say {needle:?}:\n{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        if code == 2 {
            assert!(start.elapsed() < std::time::Duration::from_secs(2), "{args:?}: a usage error is found before any traffic");
        }
    }
    // A page with no resources is fine, and says so.
    let t = Scratch::new();
    std::fs::create_dir_all(t.path("bare")).unwrap();
    std::fs::write(t.path("bare/index.html"), "<!doctype html><title>bare</title><p>hi").unwrap();
    let bare = rt.block_on(Site::start(t.path("bare")));
    let r = run(&["probe", &bare.url, "--duration", "1s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("references no resources"), "{}", r.stderr);
}

/// The deploy command runs with inherited stdio between warm-up and settle, and the report
/// marks when.
#[test]
fn traffic_runs_around_the_deploy_command() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let r = run(&["probe", &site.url, "--warmup", "1s", "--settle", "1s", "--json", "--", "sh", "-c", "echo deploying >&2; sleep 1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("deploying"), "inherited stderr: {}", r.stderr);
    let rep = r.json();
    let c = &rep["command"];
    assert_eq!(c["success"], true);
    let (start, end) = (c["started_ms"].as_u64().unwrap(), c["ended_ms"].as_u64().unwrap());
    assert!((900..1500).contains(&start) && end - start >= 900, "{c}");
    assert!(rep["duration_ms"].as_u64().unwrap() >= end + 900);
}

/// Ctrl-C (SIGINT) stops the deploy command and the probe, and the report is still written.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_command_and_probe_and_writes_the_report() {
    let rt = rt();
    let site = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let report = t.path("r.json");
    let marker = t.path("still-running");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("deskew"))
        .args(["probe", &site.url, "--warmup", "0s", "--report", &s(&report), "--", "sh", "-c"])
        .arg(format!("sleep 30; touch {}", s(&marker)))
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let start = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "the probe must stop promptly");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "128 + SIGINT: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_schema("probe-report", &rep);
    assert_eq!(rep["interrupted"], true);
    assert!(rep["loads"]["total"].as_u64().unwrap() > 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!marker.exists(), "the deploy command was stopped");
    let sleepers = std::process::Command::new("pgrep").args(["-f", &format!("touch {}", s(&marker))]).output().unwrap();
    assert!(sleepers.stdout.is_empty(), "the command's own children were stopped too");
}

/// Resources on other origins are fetched only when allowed with --allow-origin.
#[test]
fn other_origins_need_allow_origin() {
    let rt = rt();
    let cdn = rt.block_on(Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    std::fs::create_dir_all(t.path("page")).unwrap();
    std::fs::write(t.path("page/index.html"), format!("<!doctype html><script type=module src=\"{}assets/missing-Zz9Zz9Zz.js\"></script>", cdn.url)).unwrap();
    let page = rt.block_on(Site::start(t.path("page")));
    let r = run(&["probe", &page.url, "--duration", "1s"]);
    assert_eq!(r.code, 0, "another origin is not fetched by default:\n{}", r.stderr);
    let origin = cdn.url.trim_end_matches('/');
    let r = run(&["probe", &page.url, "--duration", "1s", "--allow-origin", origin]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("missing-Zz9Zz9Zz.js"), "{}", r.stderr);
}
