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

/// A service some tests need beyond Rust itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// The real S3 server (SeaweedFS) the test command starts.
    S3,
    /// nginx with the stream module, for the rolling-update lab.
    Nginx,
    /// Chromium, for browser mode.
    Chromium,
    /// The schema validators of the examples (PyPI `kubernetes-validate`, `check-jsonschema`).
    Validators,
}

/// Whether every service must be there: under `CI=true` and in `scripts/test`
/// (`DESKEW_REQUIRE_SERVICES=1`) a missing one is a failure, never a skip.
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var("DESKEW_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether `service` is there. When it is not: panics with instructions if the suite must be
/// complete ([`services_required`]); otherwise (a plain `cargo test`) says on stderr, outside the
/// test harness's capture, which test it did not run and why, and returns `false`: the test
/// returns at once.
pub fn available(service: Service) -> bool {
    let (present, what) = match service {
        Service::S3 => (std::env::var("DESKEW_TEST_S3_ENDPOINT").is_ok_and(|v| !v.is_empty()), "SeaweedFS is not running"),
        Service::Nginx => (
            (std::path::Path::new("/usr/sbin/nginx").exists() || which("nginx"))
                && std::path::Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists(),
            "nginx (with its stream module) is not installed",
        ),
        Service::Chromium => (chromium_path().is_some(), "Chromium is not installed"),
        Service::Validators => (
            std::process::Command::new("python3").args(["-c", "import kubernetes_validate, check_jsonschema, yaml"]).output().is_ok_and(|o| o.status.success()),
            "kubernetes-validate and check-jsonschema (PyPI) are not installed",
        ),
    };
    if present {
        return true;
    }
    if services_required() {
        panic!("{what}: scripts/test installs and starts everything the suite needs");
    }
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(std::io::stderr(), "NOT RUN {test}: {what} (scripts/test installs and starts it and runs the whole suite)");
    false
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn chromium_path() -> Option<std::path::PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].iter().map(std::path::PathBuf::from).find(|p| p.exists())
}

/// The real S3 server the test command started (`tests/s3/seaweedfs.sh`), from its environment:
/// `(endpoint, bucket, access key, secret key)`. Call [`available`] first; panics with
/// instructions when it is not set.
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
    chromium_path().unwrap_or_else(|| panic!("Chromium is not installed: scripts/test installs it (apt-get install chromium)"))
}

/// Returns from the calling test unless `service` is there (see [`available`]).
#[macro_export]
macro_rules! require {
    ($($service:ident),+) => {
        $(
            if !$crate::available($crate::Service::$service) {
                return;
            }
        )+
    };
}
