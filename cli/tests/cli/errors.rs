//! Bad input: each a clear error naming the thing, exit 2, nothing written.

use crate::support::*;

fn dist_with(files: &[(&str, &str)]) -> Scratch {
    let t = Scratch::new();
    for (p, body) in files {
        let path = t.path(&format!("dist/{p}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    t
}

/// A build whose `leak.js` links to a file outside it.
#[cfg(unix)]
fn dist_with_a_link_out() -> Scratch {
    let t = dist_with(&[("index.html", "x")]);
    std::fs::write(t.path("secret"), "secret").unwrap();
    std::os::unix::fs::symlink(t.path("secret"), t.path("dist/leak.js")).unwrap();
    t
}

#[track_caller]
fn assert_fails(args: &[&str], needle: &str) -> Run {
    let r = run(args);
    assert_eq!(r.code, 2, "deskew {args:?} should exit 2:\n{}", r.stderr);
    assert!(r.stderr.contains(needle), "stderr should mention {needle:?}:\n{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

#[test]
fn missing_dist() {
    let t = Scratch::new();
    assert_fails(&["publish", &s(&t.path("nope")), "--store", &t.store()], "does not exist");
    assert!(!t.path("store").exists(), "nothing written");
}

/// The store is read while the build is hashed; a bad build is still reported at once, even
/// when the store never answers (here: a port that accepts connections and says nothing). A
/// missing build directory is caught before the store is touched; a link out of the build only
/// while hashing, with the store's reads in flight.
#[cfg(unix)]
#[test]
fn a_bad_build_is_reported_without_waiting_for_a_silent_store() {
    let t = dist_with_a_link_out();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    for (dist, says) in [(t.path("nope"), "does not exist"), (t.path("dist"), "points outside the build directory")] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("deskew"))
            .args(["publish", &s(&dist), "--store", "s3://bucket/app", "--endpoint-url", &endpoint, "--release", "r1"])
            .env("AWS_ACCESS_KEY_ID", "k")
            .env("AWS_SECRET_ACCESS_KEY", "s")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{}: still waiting for the silent store after 10 s", dist.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn dist_is_a_file() {
    let t = dist_with(&[("index.html", "x")]);
    assert_fails(&["manifest", &s(&t.path("dist/index.html"))], "is not a directory");
}

#[test]
fn empty_dist() {
    let t = Scratch::new();
    std::fs::create_dir_all(t.path("dist/sub")).unwrap();
    assert_fails(&["manifest", &s(&t.path("dist"))], "holds no file");
}

#[cfg(unix)]
#[test]
fn symlink_out_of_dist() {
    let t = dist_with_a_link_out();
    assert_fails(&["publish", &s(&t.path("dist")), "--store", &t.store()], "points outside the build directory");
    assert!(!t.path("store").exists());
}

#[cfg(unix)]
#[test]
fn non_utf8_name() {
    use std::os::unix::ffi::OsStrExt;
    let t = dist_with(&[("index.html", "x")]);
    std::fs::write(t.path("dist").join(std::ffi::OsStr::from_bytes(b"bad\xff.js")), "x").unwrap();
    assert_fails(&["manifest", &s(&t.path("dist"))], "not valid UTF-8");
}

#[cfg(unix)]
#[test]
fn fifo_is_not_a_file() {
    let t = dist_with(&[("index.html", "x")]);
    let status = std::process::Command::new("mkfifo").arg(t.path("dist/pipe")).status().unwrap();
    assert!(status.success());
    assert_fails(&["manifest", &s(&t.path("dist"))], "is not a regular file");
}

#[test]
fn backslash_name() {
    let t = dist_with(&[("index.html", "x"), ("a\\b.js", "x")]);
    assert_fails(&["manifest", &s(&t.path("dist"))], "cannot be published");
}

#[test]
fn store_not_writable() {
    let t = dist_with(&[("index.html", "x")]);
    std::fs::write(t.path("file"), "x").unwrap();
    assert_fails(&["publish", &s(&t.path("dist")), "--store", &s(&t.path("file/store"))], "cannot be opened");
}

#[test]
fn missing_store_for_gc_is_not_an_empty_store() {
    let t = Scratch::new();
    assert_fails(&["gc", "--store", &t.store(), "--keep", "1"], "does not exist");
}

#[test]
fn bad_flags() {
    let t = Scratch::new();
    assert_fails(&["gc", "--store", &t.store()], "--keep");
    assert_fails(&["gc", "--store", &t.store(), "--keep", "1", "--keep-for", "soon"], "not a duration");
    assert_fails(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "../x"], "invalid release id");
    assert_fails(&["manifest", &fixture("v1"), "--entry", "a["], "invalid glob `a[`");
    assert_fails(&["publish", &fixture("v1"), "--store", "gs://bucket"], "unsupported scheme");
}

#[test]
fn help_documents_exit_codes() {
    let r = run_ok(&["--help"]);
    for line in [
        "Exit codes",
        "1    the check ran and failed",
        "2    usage or configuration",
        "3    the deploy command",
        "4    store or network I/O",
        "130 by SIGINT, 143 by SIGTERM",
    ] {
        assert!(r.stdout.contains(line), "--help must say {line:?}:\n{}", r.stdout);
    }
}
