//! The rolling-update lab (`tests/lab/lab.sh`): three nginx "pods" behind an nginx balancer
//! (per connection, as a Kubernetes Service; per request, as an ingress), rolled from v1 to v2
//! with maxSurge 1 / maxUnavailable 0 while `deskew probe` wraps the rollout.
//!
//! `image` mode reproduces the outage (each pod has only its own release's assets): the probe
//! exits 1 and names missing chunks. `volume` and `s3` modes serve `/assets/` from a store deskew
//! published both releases to: the same rollout exits 0 with zero failed loads. Each three times.

use std::process::Command;

use crate::support::*;

pub(crate) struct Lab {
    pub dir: tempfile::TempDir,
    pub url: String,
}

pub(crate) fn script() -> std::path::PathBuf {
    deskew_testkit::fixtures::repo_root().join("tests/lab/lab.sh")
}

impl Lab {
    pub(crate) fn up(mode: &str, flavour: &str, store: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script()).args(["up", &s(dir.path()), mode, flavour, &fixture("v1"), store]).output().unwrap();
        let lab = Lab { url: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir };
        assert!(out.status.success(), "lab up {mode} {flavour}: {}", String::from_utf8_lossy(&out.stderr));
        lab
    }

    /// `deskew probe` around a rollout to v2.
    fn probe_rollout(&self) -> Run {
        self.probe_rollout_with(&[], "0.4")
    }

    fn probe_rollout_with(&self, extra: &[&str], step: &str) -> Run {
        deskew()
            .args(["probe", &self.url, "--concurrency", "4", "--warmup", "1s", "--settle", "1s", "--json"])
            .args(extra)
            .arg("--")
            .arg(script())
            .args(["rollout", &s(self.dir.path()), &fixture("v2")])
            .env("LAB_STEP", step)
            .output()
            .unwrap()
            .into()
    }
}

impl Lab {
    /// Rolls the lab to v2 (`LAB_STEP` seconds between pod replacements), as its own process.
    pub(crate) fn rollout(&self, step: &str) {
        let out = Command::new(script()).args(["rollout", &s(self.dir.path()), &fixture("v2")]).env("LAB_STEP", step).output().unwrap();
        assert!(out.status.success(), "lab rollout: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["down", &s(self.dir.path())]).output();
    }
}

fn assert_outage(r: &Run) {
    assert_eq!(r.code, 1, "image mode must miss the SLO:\n{}", r.stderr);
    let rep = r.json();
    assert_schema("probe-report", &rep);
    assert!(rep["loads"]["failed"].as_u64().unwrap() > 0);
    assert_eq!(rep["command"]["success"], true);
    let failed: Vec<&str> = rep["failures"].as_array().unwrap().iter().map(|g| g["url"].as_str().unwrap()).collect();
    assert!(failed.iter().any(|u| u.contains("/assets/") && u.ends_with(".js")), "a chunk is named: {failed:?}");
    if rep["mode"] == "http" {
        assert!(failed.iter().all(|u| u.contains("/assets/")), "only chunks go missing: {failed:?}");
    }
    // Not on a terminal (a CI log): every new kind of failure is told the moment it happens.
    let told = r.stderr.lines().filter(|l| l.starts_with("probe: first failure at ")).count();
    assert!(told >= 1, "the log tells the story of the rollout:\n{}", r.stderr);
}

fn assert_zero_downtime(r: &Run) {
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = r.json();
    assert_schema("probe-report", &rep);
    assert_eq!(rep["loads"]["failed"], 0);
    assert!(rep["loads"]["total"].as_u64().unwrap() > 100, "{}", rep["loads"]);
    assert_eq!(rep["command"]["success"], true);
}

pub(crate) fn publish_both(store: &str, extra: &[&str]) {
    for v in ["v1", "v2"] {
        let f = fixture(v);
        let mut args = vec!["publish", &f, "--store", store, "--release", v];
        args.extend_from_slice(extra);
        let r = run_s3_env(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

fn run_s3_env(args: &[&str]) -> Run {
    let mut c = deskew();
    c.args(args);
    if let Ok(k) = std::env::var("DESKEW_TEST_S3_ACCESS_KEY") {
        c.env("AWS_ACCESS_KEY_ID", k).env("AWS_SECRET_ACCESS_KEY", std::env::var("DESKEW_TEST_S3_SECRET_KEY").unwrap_or_default());
    }
    c.env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap().into()
}

fn image(flavour: &str) {
    for _ in 0..3 {
        let lab = Lab::up("image", flavour, "");
        assert_outage(&lab.probe_rollout());
    }
}

fn volume(flavour: &str) {
    for _ in 0..3 {
        let t = Scratch::new();
        publish_both(&t.store(), &[]);
        let lab = Lab::up("volume", flavour, &t.store());
        assert_zero_downtime(&lab.probe_rollout());
    }
}

fn s3(flavour: &str) {
    let (endpoint, bucket, _, _) = deskew_testkit::s3_server();
    for _ in 0..3 {
        let prefix = deskew_testkit::unique_prefix("lab");
        publish_both(&format!("s3://{bucket}/{prefix}"), &["--endpoint-url", &endpoint]);
        let lab = Lab::up("s3", flavour, &format!("{endpoint}/{bucket}/{prefix}"));
        assert_zero_downtime(&lab.probe_rollout());
    }
}

#[test]
fn image_mode_per_connection_balancer_breaks() {
    deskew_testkit::require!(Nginx);
    image("conn");
}

#[test]
fn image_mode_per_request_balancer_breaks() {
    deskew_testkit::require!(Nginx);
    image("request");
}

#[test]
fn volume_mode_per_connection_balancer_has_zero_downtime() {
    deskew_testkit::require!(Nginx);
    volume("conn");
}

#[test]
fn volume_mode_per_request_balancer_has_zero_downtime() {
    deskew_testkit::require!(Nginx);
    volume("request");
}

#[test]
fn s3_mode_per_connection_balancer_has_zero_downtime() {
    deskew_testkit::require!(Nginx, S3);
    s3("conn");
}

#[test]
fn s3_mode_per_request_balancer_has_zero_downtime() {
    deskew_testkit::require!(Nginx, S3);
    s3("request");
}

/// Browser mode (issue: real Chromium) in the same lab: the outage is seen and the missing chunk
/// named; with the shared volume, zero failed loads. Three times each.
const BROWSER: &[&str] = &["--mode", "browser", "--idle", "200", "--visit", "#/about"];

#[test]
fn browser_mode_image_lab_breaks() {
    deskew_testkit::require!(Nginx, Chromium);
    for _ in 0..3 {
        let lab = Lab::up("image", "request", "");
        let r = lab.probe_rollout_with(BROWSER, "1.0");
        assert_outage(&r);
        assert_eq!(r.json()["mode"], "browser");
    }
}

#[test]
fn browser_mode_volume_lab_has_zero_downtime() {
    deskew_testkit::require!(Nginx, Chromium);
    for _ in 0..3 {
        let t = Scratch::new();
        publish_both(&t.store(), &[]);
        let lab = Lab::up("volume", "request", &t.store());
        let r = lab.probe_rollout_with(BROWSER, "1.0");
        assert_zero_downtime_browser(&r);
    }
}

fn assert_zero_downtime_browser(r: &Run) {
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = r.json();
    assert_schema("probe-report", &rep);
    assert_eq!(rep["mode"], "browser");
    assert_eq!(rep["loads"]["failed"], 0);
    assert!(rep["loads"]["total"].as_u64().unwrap() > 10, "{}", rep["loads"]);
}
