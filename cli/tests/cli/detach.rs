//! A probe in one pipeline step, the deploy in another, the verdict in a third: `probe --detach`,
//! a lab rollout run as its own process, `probe stop`. A probe that died, timed out or was never
//! started is never read as success, and no process is left behind in any case.

use std::time::{Duration, Instant};

use crate::lab::{Lab, publish_both};
use crate::support::*;

/// The pid the background probe wrote to its state directory.
fn worker_pid(state: &std::path::Path) -> u32 {
    let id: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state.join("probe.json")).unwrap()).unwrap();
    id["pid"].as_u64().unwrap() as u32
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// Waits (bounded) for `pid` to be gone, and says whether it went.
fn gone(pid: u32, within: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) && start.elapsed() < within {
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

fn detach(url: &str, state: &std::path::Path, extra: &[&str]) -> Run {
    let st = s(state);
    let mut args = vec!["probe", url, "--detach", "--state", &st, "--concurrency", "4"];
    args.extend_from_slice(extra);
    run(&args)
}

fn stop(state: &std::path::Path, extra: &[&str]) -> Run {
    let st = s(state);
    let mut args = vec!["probe", "stop", "--state", &st, "--settle", "1s", "--json"];
    args.extend_from_slice(extra);
    run(&args)
}

/// Image mode: the detached probe sees the outage the separate rollout causes; `stop` exits 1
/// naming the chunks, writes JUnit, and the background process is gone.
#[test]
fn detached_probe_sees_the_image_mode_outage() {
    deskew_testkit::require!(Nginx);
    let t = Scratch::new();
    let state = t.path("state");
    let lab = Lab::up("image", "request", "");
    let r = detach(&lab.url, &state, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("deskew probe stop --state"), "{}", r.stderr);
    let pid = worker_pid(&state);
    assert!(alive(pid), "the probe outlives the step that started it");
    let status = run_ok(&["probe", "status", "--state", &s(&state), "--json"]).json();
    assert_schema("probe-status", &status);
    assert_eq!(status["state"], "running");
    lab.rollout("0.4");
    let r = stop(&state, &["--junit", &s(&t.path("j.xml"))]);
    assert_eq!(r.code, 1, "the outage is the verdict:\n{}", r.stderr);
    let rep = r.json();
    assert_schema("probe-report", &rep);
    let failed: Vec<&str> = rep["failures"].as_array().unwrap().iter().map(|g| g["url"].as_str().unwrap()).collect();
    assert!(failed.iter().any(|u| u.contains("/assets/") && u.ends_with(".js")), "a chunk is named: {failed:?}");
    assert!(std::fs::read_to_string(t.path("j.xml")).unwrap().contains("<failure"));
    assert!(gone(pid, Duration::from_secs(5)), "the background probe is gone");
}

/// Volume mode with `--store`: zero failed loads, exit 0.
#[test]
fn detached_probe_passes_the_volume_mode_rollout() {
    deskew_testkit::require!(Nginx);
    let t = Scratch::new();
    let state = t.path("state");
    publish_both(&t.store(), &[]);
    let lab = Lab::up("volume", "request", &t.store());
    let r = detach(&lab.url, &state, &["--store", &t.store()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = worker_pid(&state);
    lab.rollout("0.4");
    let r = stop(&state, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = r.json();
    assert_eq!(rep["loads"]["failed"], 0);
    assert!(rep["loads"]["total"].as_u64().unwrap() > 100, "{}", rep["loads"]);
    assert!(!rep["releases_seen"].as_array().unwrap().is_empty(), "the store was read: {}", rep["releases_seen"]);
    assert!(gone(pid, Duration::from_secs(5)));
}

/// Browser mode detaches too: the outage is seen through Chromium, and neither the probe nor any
/// browser process outlives `stop`.
#[test]
fn detached_browser_probe_sees_the_outage() {
    deskew_testkit::require!(Nginx, Chromium);
    let t = Scratch::new();
    let state = t.path("state");
    let lab = Lab::up("image", "request", "");
    let r = detach(&lab.url, &state, &["--mode", "browser", "--idle", "200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = worker_pid(&state);
    lab.rollout("1.0");
    let r = stop(&state, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.json()["mode"], "browser");
    assert!(gone(pid, Duration::from_secs(5)));
    let dir = s(&state);
    let ps = std::process::Command::new("pgrep").args(["-f", &dir]).output().unwrap();
    assert!(ps.stdout.is_empty(), "a process mentioning the state directory is left: {}", String::from_utf8_lossy(&ps.stdout));
}

/// Killed with SIGKILL: `status` and `stop` exit 2 and say it died; nothing was read as success.
#[test]
fn a_killed_background_probe_is_never_success() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let site = rt.block_on(deskew_testkit::site::Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let state = t.path("state");
    let r = detach(&site.url, &state, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = worker_pid(&state);
    assert!(std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    assert!(gone(pid, Duration::from_secs(5)));
    // The main thread shows as a zombie while its other threads still hold its files (the lock)
    // for a moment: wait, bounded, for the lock to be released.
    let start = Instant::now();
    let mut r = run(&["probe", "status", "--state", &s(&state)]);
    while r.code == 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        r = run(&["probe", "status", "--state", &s(&state)]);
    }
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("died"), "{}", r.stderr);
    let r = stop(&state, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ended without a report") && r.stderr.contains("no verdict"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no report is printed: {}", r.stdout);
}

/// `stop` where nothing was detached, a second `--detach` on a live probe, `--detach` with a
/// deploy command or `--duration`, an unreachable page: exit 2, clear messages, nothing left.
#[test]
fn misuse_of_detach_is_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let site = rt.block_on(deskew_testkit::site::Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let state = t.path("state");
    let r = stop(&state, &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("holds no probe started with --detach"), "{}", r.stderr);
    let r = detach(&site.url, &state, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = worker_pid(&state);
    let r = detach(&site.url, &state, &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("holds a running probe") && r.stderr.contains(&pid.to_string()), "{}", r.stderr);
    assert_eq!(worker_pid(&state), pid, "the live probe's state is untouched");
    run_ok(&["probe", "stop", "--state", &s(&state), "--settle", "0s"]);
    assert!(gone(pid, Duration::from_secs(5)));
    let other = t.path("other");
    for extra in [vec!["--duration", "5s"], vec!["--", "true"]] {
        let r = detach(&site.url, &other, &extra);
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
    }
    let r = detach("http://127.0.0.1:9/", &other, &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did not start") && r.stderr.contains("127.0.0.1:9"), "{}", r.stderr);
    let r = run(&["probe", &site.url, "--state", &s(&other), "--duration", "1s"]);
    assert_eq!(r.code, 2, "--state without --detach: {}", r.stderr);
}

/// A probe nobody stops ends by itself at `--max-duration`; `stop` then exits 2 saying so, with
/// the reports written.
#[test]
fn an_abandoned_probe_ends_at_max_duration() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let site = rt.block_on(deskew_testkit::site::Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let state = t.path("state");
    let r = detach(&site.url, &state, &["--max-duration", "2s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = worker_pid(&state);
    assert!(gone(pid, Duration::from_secs(15)), "it ended by itself");
    let status = run_ok(&["probe", "status", "--state", &s(&state), "--json"]).json();
    assert_eq!(status["state"], "finished");
    let r = stop(&state, &["--report", &s(&t.path("r.json"))]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--max-duration 2s"), "{}", r.stderr);
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(t.path("r.json")).unwrap()).unwrap();
    assert_eq!(rep["timed_out"], true);
    assert_schema("probe-report", &rep);
}

/// Review findings: two starts racing for one DIR never both report success for one probe; a
/// report edited after the fact, or another probe's, is no verdict; a worker whose state
/// directory no longer names it ends; credentials never reach the state directory or `ps`.
#[test]
fn a_detached_probe_is_only_judged_by_its_own_report() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let site = rt.block_on(deskew_testkit::site::Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    for round in 0..4 {
        let state = t.path(&format!("race{round}"));
        let spawn = || {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("deskew"))
                .args(["probe", &site.url, "--detach", "--state", &s(&state), "--concurrency", "1"])
                .output()
                .unwrap()
        };
        let (a, b) = std::thread::scope(|sc| {
            let a = sc.spawn(spawn);
            let b = sc.spawn(spawn);
            (a.join().unwrap(), b.join().unwrap())
        });
        let ok: Vec<String> = [a, b].iter().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).collect();
        assert!(ok.len() <= 1, "round {round}: both starts said they detached: {ok:?}");
        if let Some(said) = ok.first() {
            assert!(said.contains(&format!("pid {} ", worker_pid(&state))), "round {round}: the winner names the running probe: {said}");
        }
        let _ = run(&["probe", "stop", "--state", &s(&state), "--settle", "0s"]);
    }

    let state = t.path("edited");
    run_ok(&["probe", &site.url, "--detach", "--state", &s(&state), "--basic-auth", "ops:hunter2", "-H", "X-Token: s3cr3t"]);
    let pid = worker_pid(&state);
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let identity = std::fs::read_to_string(state.join("probe.json")).unwrap();
    for secret in ["hunter2", "s3cr3t"] {
        assert!(!cmdline.contains(secret), "{secret} on the worker's command line");
        assert!(!identity.contains(secret), "{secret} in probe.json: {identity}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(state.join("probe.json")).unwrap().permissions().mode() & 0o077, 0, "owner-only state files");
    site.faults.not_found_every.store(3, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let r = stop(&state, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let mut rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state.join("report.json")).unwrap()).unwrap();
    rep["loads"]["failed"] = 0.into();
    rep["slo"]["met"] = true.into();
    std::fs::write(state.join("report.json"), rep.to_string()).unwrap();
    let r = stop(&state, &[]);
    assert_eq!(r.code, 2, "an edited report is no verdict: {}", r.stderr);
    assert!(r.stderr.contains("is not the report the background probe"), "{}", r.stderr);
    site.faults.not_found_every.store(0, std::sync::atomic::Ordering::SeqCst);

    let state = t.path("orphan");
    run_ok(&["probe", &site.url, "--detach", "--state", &s(&state)]);
    let pid = worker_pid(&state);
    std::fs::remove_file(state.join("probe.json")).unwrap();
    assert!(gone(pid, Duration::from_secs(10)), "a worker its directory no longer names ends");
    assert!(!state.join("report.json").exists(), "and writes nothing there");
}
