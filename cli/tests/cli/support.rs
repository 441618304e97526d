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
    /// Every file under the store, relative, sorted.
    pub fn store_files(&self) -> Vec<String> {
        let root = self.dir.path().join("store");
        let mut out: Vec<String> = walk(&root).into_iter().map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().into_owned()).collect();
        out.sort();
        out
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
    let load = |n: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{n}.schema.json"))).unwrap()).unwrap()
    };
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
    vec![
        (r"/tmp/[^ `\n]*/store", "[STORE]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[TIME]"),
        (r"in \d+\.\d+s", "in [SECS]"),
    ]
}
