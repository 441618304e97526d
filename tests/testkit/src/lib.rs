//! Test support shared by deskew's test binaries: the committed fixture builds, synthetic builds,
//! store wrappers that count, fail or delay operations, and [`conformance`], the one suite of
//! store tests that every backend must pass.

pub mod clock;
pub mod conformance;
pub mod fixtures;
pub mod proxy;
pub mod site;
pub mod tls;
pub mod wrappers;

pub use fixtures::{fixture_dist, synthetic_build};

/// The real S3 server the test command started (`tests/s3/seaweedfs.sh`), from its environment:
/// `(endpoint, bucket, access key, secret key)`. Panics with instructions when it is not set:
/// a missing server is a failure, never a silent skip.
pub fn s3_server() -> (String, String, String, String) {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (get("DESKEW_TEST_S3_ENDPOINT"), get("DESKEW_TEST_S3_BUCKET"), get("DESKEW_TEST_S3_ACCESS_KEY"), get("DESKEW_TEST_S3_SECRET_KEY")) {
        (Some(e), Some(b), Some(k), Some(s)) => (e, b, k, s),
        _ => panic!(
            "no S3 test server: run the suite with scripts/test, which starts SeaweedFS, or start one with \
             `tests/s3/seaweedfs.sh start DIR && source DIR/env`"
        ),
    }
}

/// A prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("t-{name}-{}-{t}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// The Chromium binary (Debian's `chromium`), or a panic that says how to install it.
pub fn chromium() -> std::path::PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("Chromium is not installed: scripts/test installs it (apt-get install chromium)")
}
