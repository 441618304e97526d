//! A bounded soak of the real binary: on one store, two publishers (some killed with SIGKILL
//! half-way and resumed) and two gcs looping with `--grace 0s`, for a fixed time. Every publish
//! that exits 0 is verified right after; a release missing then counts as a violation unless
//! enough newer releases completed since to let the policy drop it. Run on a directory and on
//! SeaweedFS. The counts are printed; any violation fails the test.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

const KEEP: usize = 3;
const SOAK: Duration = Duration::from_secs(30);

/// How to run the binary against the store under test.
#[derive(Clone)]
struct Target {
    store: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Target {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("deskew"));
        c.args(args).args(["--store", &self.store]).args(&self.args).env("NO_COLOR", "1").env_remove("DESKEW_STORE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
    fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }
}

#[derive(Default)]
struct Counts {
    published: AtomicU64,
    verified: AtomicU64,
    dropped_by_policy: AtomicU64,
    killed_and_resumed: AtomicU64,
    gcs: AtomicU64,
    violations: Mutex<Vec<String>>,
    /// Every publish that exited 0: release and completion time.
    completions: Mutex<Vec<(String, String)>>,
    /// Publishes whose release was gone at the verify right after: judged at the end.
    gone: Mutex<Vec<(String, String)>>,
    started: std::sync::atomic::AtomicBool,
}

/// A small deterministic generator per thread.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Whether a release that completed at `since` may have been dropped by the policy: at least
/// `KEEP` other releases completed after it (judged once every publish has reported).
fn dropped_by_policy(completions: &[(String, String)], since: &str) -> bool {
    completions.iter().filter(|(_, c)| c.as_str() > since).count() >= KEEP
}

fn publisher(t: Target, who: usize, counts: Arc<Counts>, deadline: Instant) {
    let started = &counts.started;
    let mut rng = Lcg(who as u64 * 7919 + 17);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let id = format!("p{who}-{n}");
        let dist = fixture(["v1", "v2", "v3"][rng.below(3) as usize]);
        let publish = ["publish", dist.as_str(), "--release", id.as_str(), "--keep", "2", "--grace", "0s", "-q", "--json"];
        if rng.below(10) < 3 {
            let mut child = t.command(&publish).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(150)));
            let _ = child.kill();
            let _ = child.wait();
            counts.killed_and_resumed.fetch_add(1, Ordering::SeqCst);
        }
        let r = t.run(&publish);
        if r.code != 0 {
            counts.violations.lock().unwrap().push(format!("publish {id} failed: {}", r.stderr.trim()));
            continue;
        }
        counts.published.fetch_add(1, Ordering::SeqCst);
        started.store(true, Ordering::SeqCst);
        // The publish's own gc runs after its release completed: judge from the completion.
        let completed = r.json()["publish"]["completed"].as_str().unwrap_or_default().to_string();
        counts.completions.lock().unwrap().push((id.clone(), completed.clone()));
        let v = t.run(&["verify", "--release", &id, "-q"]);
        if v.code == 0 {
            counts.verified.fetch_add(1, Ordering::SeqCst);
        } else if v.stderr.contains("is not in") {
            counts.gone.lock().unwrap().push((id.clone(), completed));
        } else {
            counts.violations.lock().unwrap().push(format!("publish {id} (completed {completed}) exited 0, then verify said: {}", v.stderr.trim()));
        }
    }
}

fn gc_loop(t: Target, counts: Arc<Counts>, deadline: Instant) {
    let started = &counts.started;
    let keep = KEEP.to_string();
    while Instant::now() < deadline {
        if !started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10)); // the store does not exist before the first publish
            continue;
        }
        let r = t.run(&["gc", "--keep", &keep, "--grace", "0s", "-q"]);
        if r.code != 0 {
            counts.violations.lock().unwrap().push(format!("gc failed: {}", r.stderr.trim()));
        }
        counts.gcs.fetch_add(1, Ordering::SeqCst);
    }
}

fn soak(name: &str, t: Target) {
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + SOAK;
    let mut threads = Vec::new();
    for who in 0..2 {
        let (t, c) = (t.clone(), counts.clone());
        threads.push(std::thread::spawn(move || publisher(t, who, c, deadline)));
    }
    for _ in 0..2 {
        let (t, c) = (t.clone(), counts.clone());
        threads.push(std::thread::spawn(move || gc_loop(t, c, deadline)));
    }
    for th in threads {
        th.join().unwrap();
    }
    let completions = counts.completions.lock().unwrap().clone();
    for (id, completed) in counts.gone.lock().unwrap().iter() {
        if dropped_by_policy(&completions, completed) {
            counts.dropped_by_policy.fetch_add(1, Ordering::SeqCst);
        } else {
            counts
                .violations
                .lock()
                .unwrap()
                .push(format!("publish {id} (completed {completed}) exited 0, then its release was gone before {KEEP} newer ones completed"));
        }
    }
    let final_gc = t.run(&["gc", "--keep", &KEEP.to_string(), "--grace", "0s"]);
    assert_eq!(final_gc.code, 0, "{}", final_gc.stderr);
    let v = t.run(&["verify"]);
    let violations = counts.violations.lock().unwrap().clone();
    eprintln!(
        "soak on {name}: {} publishes exited 0 ({} of them resumed after SIGKILL), {} verified whole right after, {} dropped by the policy before their verify, {} gc runs, {} violations",
        counts.published.load(Ordering::SeqCst),
        counts.killed_and_resumed.load(Ordering::SeqCst),
        counts.verified.load(Ordering::SeqCst),
        counts.dropped_by_policy.load(Ordering::SeqCst),
        counts.gcs.load(Ordering::SeqCst),
        violations.len()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    assert_eq!(v.code, 0, "the store is whole at the end: {}", v.stderr);
    assert!(counts.published.load(Ordering::SeqCst) >= 10, "the soak did some work");
}

#[test]
fn soak_directory_store() {
    let t = Scratch::new();
    soak("a directory", Target { store: t.store(), args: Vec::new(), env: Vec::new() });
}

#[test]
fn soak_seaweedfs() {
    deskew_testkit::require!(S3);
    let (endpoint, bucket, key, secret) = deskew_testkit::s3_server();
    let t = Target {
        store: format!("s3://{bucket}/{}", deskew_testkit::unique_prefix("soak")),
        args: vec!["--endpoint-url".into(), endpoint],
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), key),
            ("AWS_SECRET_ACCESS_KEY".into(), secret),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ],
    };
    soak("SeaweedFS", t);
}
