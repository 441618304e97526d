//! Probing from many machines, on one: shard processes started with one `--start-at` against
//! the nginx lab, one of them running the rollout, the others probing until it signals the end;
//! `deskew report merge` joins their reports into exactly their sum, whatever the order, with the
//! lab's verdict (image mode 1, volume mode 0). Bad input to merge is refused with exit 2.

use std::process::{Child, Command};

use crate::lab::{Lab, publish_both, script};
use crate::support::*;

/// Starts shard `i` of `n`; shard 0 runs the rollout and then touches `done`.
fn shard(lab: &Lab, i: u32, n: u32, start_at: &str, done: &std::path::Path, report: &std::path::Path, extra: &[&str]) -> Child {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("deskew"));
    c.args(["probe", &lab.url, "--shard", &format!("{i}/{n}"), "--start-at", start_at, "--concurrency", "2"])
        .args(["--warmup", "1s", "--settle", "1s", "--until-file", &s(done), "--report", &s(report)])
        .args(extra)
        .arg("--")
        .args(["sh", "-c", &format!("{} rollout {} {} && touch {}", s(&script()), s(lab.dir.path()), fixture("v2"), s(done))])
        .env("LAB_STEP", "0.5")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped());
    c.spawn().unwrap()
}

/// Runs `n` shards around one rollout; returns their reports' paths.
fn run_shards(lab: &Lab, t: &Scratch, n: u32, extra: &[&str]) -> Vec<std::path::PathBuf> {
    let start_at = time_from_now(4);
    let done = t.path("rollout-done");
    let reports: Vec<_> = (0..n).map(|i| t.path(&format!("shard-{i}.json"))).collect();
    let children: Vec<Child> = (0..n).map(|i| shard(lab, i, n, &start_at, &done, &reports[i as usize], extra)).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "shard {i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    reports
}

fn json(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn merge(reports: &[std::path::PathBuf], extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["report".into(), "merge".into(), "--json".into()];
    args.extend(reports.iter().map(|p| s(p)));
    args.extend(extra.iter().map(|x| x.to_string()));
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The merged report is the sum of the shards', and the same in any order.
fn assert_exact_sum(reports: &[std::path::PathBuf], merged: &serde_json::Value) {
    let shards: Vec<serde_json::Value> = reports.iter().map(|p| json(p)).collect();
    let sum = |f: &dyn Fn(&serde_json::Value) -> u64| shards.iter().map(f).sum::<u64>();
    assert_eq!(merged["loads"]["total"].as_u64().unwrap(), sum(&|r| r["loads"]["total"].as_u64().unwrap()));
    assert_eq!(merged["loads"]["failed"].as_u64().unwrap(), sum(&|r| r["loads"]["failed"].as_u64().unwrap()));
    assert_eq!(merged["requests"]["total"].as_u64().unwrap(), sum(&|r| r["requests"]["total"].as_u64().unwrap()));
    for g in merged["failures"].as_array().unwrap() {
        let in_shards = sum(&|r| {
            r["failures"].as_array().unwrap().iter().filter(|x| x["url"] == g["url"] && x["cause"] == g["cause"]).map(|x| x["count"].as_u64().unwrap()).sum()
        });
        assert_eq!(g["count"].as_u64().unwrap(), in_shards, "group {}", g["url"]);
    }
    let histogram_total: u64 = merged["latency_histogram_ms"]["buckets"].as_array().unwrap().iter().map(|b| b[1].as_u64().unwrap()).sum();
    assert_eq!(histogram_total, merged["loads"]["total"].as_u64().unwrap(), "every load's latency is in the merged histogram");
    let timeline: u64 = merged["timeline"].as_array().unwrap().iter().map(|s| s["loads"].as_u64().unwrap()).sum();
    assert_eq!(timeline, merged["loads"]["total"].as_u64().unwrap(), "one timeline holds every load");
    let deploy_ended = shards[0]["command"]["ended_ms"].as_u64().expect("shard 0 ran the rollout");
    for (i, r) in shards.iter().enumerate() {
        assert!(r["loads"]["total"].as_u64().unwrap() > 0, "shard {i} made loads");
        assert!(r["duration_ms"].as_u64().unwrap() + 1000 >= deploy_ended, "shard {i} probed until the rollout ended: {} < {deploy_ended}", r["duration_ms"]);
        if i > 0 {
            assert!(r["command"].is_null(), "only the deploy shard runs the command");
        }
    }
    let starts: Vec<i64> = shards
        .iter()
        .map(|r| humantime::parse_rfc3339(r["started"].as_str().unwrap()).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64)
        .collect();
    let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
    assert!(spread < 1000, "--start-at started the shards together (spread {spread} ms)");
    let ids: std::collections::BTreeSet<String> = shards.iter().map(|r| r["run"]["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 1, "the shards share a run id derived from --start-at: {ids:?}");
    let mut reversed = reports.to_vec();
    reversed.reverse();
    let again = merge(&reversed, &[]).json();
    assert_eq!(&again, merged, "merging is order-independent");
}

#[test]
fn image_mode_shards_merge_to_the_outage() {
    deskew_testkit::require!(Nginx);
    let t = Scratch::new();
    let lab = Lab::up("image", "request", "");
    let reports = run_shards(&lab, &t, 3, &[]);
    let r = merge(&reports, &["--junit", &s(&t.path("merged.xml"))]);
    assert_eq!(r.code, 1, "the lab's truth: the outage\n{}", r.stderr);
    let merged = r.json();
    assert_schema("probe-report", &merged);
    assert!(merged["failures"].as_array().unwrap().iter().any(|g| g["url"].as_str().unwrap().contains("/assets/")), "chunks are named");
    assert_eq!(merged["run"]["merged"], serde_json::json!([0, 1, 2]));
    assert_eq!(merged["command"]["success"], true, "the deploy shard's command is in the merged report");
    assert_exact_sum(&reports, &merged);
}

#[test]
fn volume_mode_shards_merge_to_zero_failures() {
    deskew_testkit::require!(Nginx);
    let t = Scratch::new();
    publish_both(&t.store(), &[]);
    let lab = Lab::up("volume", "request", &t.store());
    let reports = run_shards(&lab, &t, 2, &[]);
    let r = merge(&reports, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["loads"]["failed"], 0);
    assert_exact_sum(&reports, &r.json());
}

#[test]
fn browser_mode_shards_merge_to_the_outage() {
    deskew_testkit::require!(Nginx, Chromium);
    let t = Scratch::new();
    let lab = Lab::up("image", "request", "");
    let reports = run_shards(&lab, &t, 2, &["--mode", "browser", "--idle", "200"]);
    let r = merge(&reports, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.json()["mode"], "browser");
    assert_exact_sum(&reports, &r.json());
}

#[test]
fn bad_input_to_merge_is_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let site = rt.block_on(deskew_testkit::site::Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let probe = |name: &str, extra: &[&str]| -> std::path::PathBuf {
        let p = t.path(name);
        let mut args = vec!["probe", &site.url, "--duration", "1s", "--concurrency", "1", "-q"];
        let ps = s(&p);
        args.extend_from_slice(&["--report", &ps]);
        args.extend_from_slice(extra);
        run_ok(&args);
        p
    };
    let a = probe("a.json", &["--shard", "0/2", "--run-id", "one"]);
    let b = probe("b.json", &["--shard", "1/2", "--run-id", "two"]);
    let r = merge(&[a.clone(), b.clone()], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("run `one`") && r.stderr.contains("run `two`") && r.stderr.contains("--allow-mixed-runs"), "{}", r.stderr);
    assert_eq!(merge(&[a.clone(), b.clone()], &["--allow-mixed-runs"]).code, 0);
    let r = merge(&[a.clone(), a.clone()], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("both shard 0"), "{}", r.stderr);
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(t.path("cut.json"), &text[..text.len() / 2]).unwrap();
    let r = merge(&[a.clone(), t.path("cut.json")], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cut.json") && r.stderr.contains("not a complete JSON"), "{}", r.stderr);
    let mut old = json(&a);
    old["version"] = 1.into();
    std::fs::write(t.path("old.json"), old.to_string()).unwrap();
    let r = merge(&[a.clone(), t.path("old.json")], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("old.json") && r.stderr.contains("format version 1"), "{}", r.stderr);
    for (args, expect) in
        [(vec!["--shard", "2/2"], "not a shard like"), (vec!["--shards", "2"], "JOB_COMPLETION_INDEX"), (vec!["--shard", "0/2"], "--run-id, or --start-at")]
    {
        let mut all = vec!["probe", site.url.as_str(), "--duration", "1s"];
        all.extend(args.iter());
        let r = run(&all);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{args:?}: {}", r.stderr);
    }
    let r: Run = deskew()
        .args(["probe", &site.url, "--duration", "1s", "--shards", "2", "--run-id", "k", "--json", "-q"])
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["run"], serde_json::json!({ "id": "k", "shard": 1, "shards": 2 }));
}

/// Review findings: a run with a shard missing, a hand-edited report (counts that disagree), or a
/// shard that timed out is never merged into a passing verdict.
#[test]
fn merge_never_passes_an_incomplete_or_edited_run() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let site = rt.block_on(deskew_testkit::site::Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let probe = |name: &str, shard: &str| -> std::path::PathBuf {
        let p = t.path(name);
        let r = run(&["probe", &site.url, "--duration", "1s", "--concurrency", "1", "-q", "--shard", shard, "--run-id", "r", "--report", &s(&p)]);
        assert!(matches!(r.code, 0 | 1), "{}", r.stderr);
        p
    };
    let a = probe("a.json", "0/2");
    let r = merge(std::slice::from_ref(&a), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("shards [1]") && r.stderr.contains("--allow-missing-shards"), "{}", r.stderr);
    assert_eq!(merge(std::slice::from_ref(&a), &["--allow-missing-shards"]).code, 0);
    site.faults.not_found_every.store(2, std::sync::atomic::Ordering::SeqCst);
    let b = probe("b.json", "1/2");
    assert_eq!(merge(&[a.clone(), b.clone()], &[]).code, 1, "shard 1 saw failures");
    let honest = json(&b);
    let mut edited = honest.clone();
    edited["loads"]["failed"] = 0.into();
    edited["loads"]["ok"] = edited["loads"]["total"].clone();
    std::fs::write(t.path("edited.json"), edited.to_string()).unwrap();
    let r = merge(&[a.clone(), t.path("edited.json")], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("edited.json") && r.stderr.contains("not a consistent probe report"), "{}", r.stderr);
    let text = std::fs::read_to_string(&b).unwrap().replacen("\"failed\":", "\"failed\": 0, \"failed\":", 1);
    std::fs::write(t.path("dup.json"), text).unwrap();
    let r = merge(&[a.clone(), t.path("dup.json")], &[]);
    assert_eq!(r.code, 2, "a field given twice: {}", r.stderr);
    let mut late = honest.clone();
    late["timed_out"] = true.into();
    std::fs::write(t.path("late.json"), late.to_string()).unwrap();
    assert_eq!(merge(&[a.clone(), t.path("late.json")], &[]).code, 2, "a timed-out shard gives no verdict");
    let mut other = honest.clone();
    other["run"]["shards"] = 3.into();
    std::fs::write(t.path("other.json"), other.to_string()).unwrap();
    let r = merge(&[a, t.path("other.json")], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("says the run has 2 shards"), "{}", r.stderr);
    let r = run(&["probe", &site.url, "--duration", "1s", "--start-at", "2999-01-01T00:00:00Z"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("more than a day ahead"), "{}", r.stderr);
}
