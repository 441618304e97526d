//! Helpers: run the binary, read its JSON, validate against schemas, filter snapshots.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A command for the `deskew` binary with a clean environment for deskew's own variables.
pub fn deskew() -> Command {
    let mut c = Command::cargo_bin("deskew").unwrap();
    c.env_remove("DESKEW_STORE").env_remove("DESKEW_NOW").env_remove("DESKEW_TEST_ABORT_AFTER").env("NO_COLOR", "1");
    c
}

/// The outcome of a run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `deskew args...`.
pub fn run(args: &[&str]) -> Run {
    deskew().args(args).output().unwrap().into()
}

/// Runs and asserts the exit code.
#[track_caller]
pub fn run_ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(r.code, 0, "deskew {args:?} failed:\n{}", r.stderr);
    r
}

pub fn fixture(v: &str) -> String {
    deskew_testkit::fixture_dist(v).to_string_lossy().into_owned()
}

pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A temp dir with a `store` path inside.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }
    pub fn store(&self) -> String {
        s(&self.dir.path().join("store"))
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// Every file under the store, relative, sorted; deskew's bookkeeping (lease epochs,
    /// publish heartbeats) left out.
    pub fn store_files(&self) -> Vec<String> {
        let root = self.dir.path().join("store");
        let mut out: Vec<String> = walk(&root)
            .into_iter()
            .map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().into_owned())
            .filter(|p| !p.starts_with(".deskew/lease/") && !p.starts_with(".deskew/publishing/"))
            .collect();
        out.sort();
        out
    }

    /// The record of `id` in the store, as JSON.
    pub fn record(&self, id: &str) -> serde_json::Value {
        let p = self.path(&format!("store/.deskew/releases/{id}.json"));
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
    }

    /// Rewrites the record of `id` as if it had been created and completed at `time` (RFC 3339):
    /// a store with history, without a clock hook in the binary.
    pub fn backdate(&self, id: &str, time: &str) {
        let mut rec = self.record(id);
        rec["created"] = time.into();
        if rec.get("completed").is_some() {
            rec["completed"] = time.into();
        }
        std::fs::write(self.path(&format!("store/.deskew/releases/{id}.json")), serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    }

    /// Publishes `dir` as `id`, then backdates it to `time`.
    pub fn publish_at(&self, dir: &str, id: &str, time: &str) {
        run_ok(&["publish", dir, "--store", &self.store(), "--release", id]);
        self.backdate(id, time);
    }

    /// Starts publishing `dir` as `id` and kills the process (SIGKILL) once its pending record
    /// exists, leaving a publish that died half-way.
    pub fn publish_killed(&self, dir: &str, id: &str) {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("deskew"))
            .args(["publish", dir, "--store", &self.store(), "--release", id, "--concurrency", "1", "-q"])
            .env("NO_COLOR", "1")
            .spawn()
            .unwrap();
        let record = self.path(&format!("store/.deskew/releases/{id}.json"));
        let start = std::time::Instant::now();
        while !record.exists() && start.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(self.record(id)["state"], "pending", "killed before it completed");
    }
}

/// The time `secs` seconds from now, RFC 3339.
pub fn time_from_now(secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if secs >= 0 { now + std::time::Duration::from_secs(secs as u64) } else { now - std::time::Duration::from_secs(secs.unsigned_abs()) };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A build of `n` files of `size` bytes (slow enough to kill half-way).
pub fn big_build(dir: &Path, n: usize, size: usize) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><title>big</title>\n").unwrap();
    for i in 0..n {
        let body: Vec<u8> = (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect();
        std::fs::write(dir.join(format!("assets/chunk{i}-{:08x}.js", i * 2654435761 % 4294967291)), body).unwrap();
    }
}

/// Copies the tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in walk(from) {
        let dest = to.join(e.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&e, dest).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
    }
    out
}

/// Validates `value` against `schemas/<name>.schema.json`, with every schema registered so
/// cross-file `$ref`s resolve.
#[track_caller]
pub fn assert_schema(name: &str, value: &serde_json::Value) {
    let dir = deskew_testkit::fixtures::repo_root().join("schemas");
    let load = |n: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{n}.schema.json"))).unwrap()).unwrap() };
    let mut opts = jsonschema::options();
    for other in ["manifest", "release", "releases", "gc", "publish", "verify", "probe-report"] {
        let uri = format!("https://deskew.dev/schemas/{other}.schema.json");
        opts = opts.with_resource(uri, jsonschema::Resource::from_contents(load(other)).unwrap());
    }
    let validator = opts.build(&load(name)).unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
    let errors: Vec<String> = validator.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "output does not match {name}.schema.json:\n{}\n{value:#}", errors.join("\n"));
}

/// Filters for snapshots: temp paths, timestamps, durations.
pub fn filters() -> Vec<(&'static str, &'static str)> {
    vec![(r"/tmp/[^ `\n]*/store", "[STORE]"), (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[TIME]"), (r"in \d+\.\d+s", "in [SECS]")]
}
