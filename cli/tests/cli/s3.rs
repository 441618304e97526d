//! The binary against the real S3 server (SeaweedFS, started by the test command).

use std::process::Command as StdCommand;
use std::sync::atomic::Ordering;

use crate::support::*;

struct S3 {
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
}

fn server() -> S3 {
    let (endpoint, bucket, key, secret) = deskew_testkit::s3_server();
    S3 { endpoint, bucket, key, secret }
}

fn cmd(s3: &S3, endpoint: &str, args: &[&str]) -> assert_cmd::Command {
    let mut c = deskew();
    c.args(args)
        .args(["--endpoint-url", endpoint])
        .env("AWS_ACCESS_KEY_ID", &s3.key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE");
    c
}

fn run_s3(s3: &S3, endpoint: &str, args: &[&str]) -> Run {
    cmd(s3, endpoint, args).output().unwrap().into()
}

#[test]
fn publish_gc_verify_round_trip() {
    deskew_testkit::require!(S3);
    let s3 = server();
    let url = format!("s3://{}/{}", s3.bucket, deskew_testkit::unique_prefix("cli"));
    for v in ["v1", "v2", "v3"] {
        let r = run_s3(&s3, &s3.endpoint, &["publish", &fixture(v), "--store", &url, "--release", v, "--keep", "1", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_schema("publish", &r.json());
    }
    let r = run_s3(&s3, &s3.endpoint, &["releases", "--store", &url, "--json"]);
    let ids: Vec<String> = r.json()["releases"].as_array().unwrap().iter().map(|x| x["release"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["v3", "v2"]);
    let r = run_s3(&s3, &s3.endpoint, &["verify", "--store", &url, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["objects"], 15);
}

#[test]
fn wrong_credentials_fail_clearly_and_never_print_the_secret() {
    deskew_testkit::require!(S3);
    let s3 = server();
    let url = format!("s3://{}/{}", s3.bucket, deskew_testkit::unique_prefix("creds"));
    let wrong_secret = "wrong-secret-value-that-must-not-leak";
    let r: Run =
        cmd(&s3, &s3.endpoint, &["-vv", "publish", &fixture("v1"), "--store", &url]).env("AWS_SECRET_ACCESS_KEY", wrong_secret).output().unwrap().into();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains(&url) && r.stderr.contains("check the credentials"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().filter(|l| l.starts_with("error")).count(), 1, "{}", r.stderr);
    assert!(!r.stderr.contains(wrong_secret) && !r.stdout.contains(wrong_secret), "the secret leaked:\n{}", r.stderr);
    let r = run_s3(&s3, &s3.endpoint, &["-vv", "releases", "--store", &url]);
    assert!(!r.stderr.contains(&s3.secret), "the secret leaked:\n{}", r.stderr);
}

#[test]
fn missing_bucket_unreachable_endpoint_and_bad_urls() {
    deskew_testkit::require!(S3);
    let s3 = server();
    let r = run_s3(&s3, &s3.endpoint, &["gc", "--store", "s3://no-such-bucket/app", "--keep", "1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no bucket `no-such-bucket`"), "{}", r.stderr);
    let r = run_s3(&s3, "http://127.0.0.1:9", &["releases", "--store", &format!("s3://{}/x", s3.bucket), "--max-attempts", "2"]);
    assert_eq!(r.code, 4, "unreachable is I/O");
    assert!(r.stderr.contains("is unreachable at http://127.0.0.1:9") && r.stderr.contains("Connection refused"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one clear line:\n{}", r.stderr);
    let r: Run = cmd(&s3, &s3.endpoint, &["releases", "--store", &format!("s3://{}/x", s3.bucket)])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("has no usable AWS credentials: no credential source had credentials") && r.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", r.stderr);
    // An SSO profile (aws-config built with SSO) whose login has not happened: the error names
    // the profile and SSO, not the store's reachability.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, "[profile sso-test]\nsso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = Admin\nregion = us-east-1\n").unwrap();
    let r: Run = cmd(&s3, &s3.endpoint, &["releases", "--store", &format!("s3://{}/x", s3.bucket)])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .env("AWS_PROFILE", "sso-test")
        .env("HOME", dir.path())
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has no usable AWS credentials") && r.stderr.contains("profile `sso-test`"), "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("sso"), "the SSO provider's own error is shown: {}", r.stderr);
    let r = run_s3(&s3, &s3.endpoint, &["releases", "--store", &format!("s3://{}/a/../../etc", s3.bucket)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is invalid"), "{}", r.stderr);
}

/// AWS_CA_BUNDLE (as these machines export it) is honoured for an HTTPS endpoint.
#[test]
fn aws_ca_bundle_env_is_honoured() {
    deskew_testkit::require!(S3);
    let s3 = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = deskew_testkit::tls::make_test_ca(&dir.path().join("ca"));
    let proxy = rt.block_on(deskew_testkit::proxy::FaultProxy::start_tls(&s3.endpoint, &ca.cert_pem, &ca.key_pem));
    let url = format!("s3://{}/{}", s3.bucket, deskew_testkit::unique_prefix("cabundle"));
    let r: Run = cmd(&s3, &proxy.url, &["publish", &fixture("v1"), "--store", &url]).env("AWS_CA_BUNDLE", &ca.ca_pem).output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r: Run = cmd(&s3, &proxy.url, &["releases", "--store", &url, "--max-attempts", "1"])
        .env("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 4, "an untrusted certificate must fail (the connection is refused: I/O)");
    assert!(r.stderr.contains("is unreachable"), "{}", r.stderr);
    drop(proxy);
}

/// The server stops in the middle of a publish: the publish fails (exit 2, release pending);
/// the server comes back; the rerun completes and verify finds every file.
#[test]
fn server_stopped_mid_publish_then_rerun_completes() {
    deskew_testkit::require!(S3);
    let root = deskew_testkit::fixtures::repo_root();
    let script = root.join("tests/s3/seaweedfs.sh");
    let dir = tempfile::tempdir().unwrap();
    let sw = dir.path().join("seaweedfs");
    let sh = |action: &str| {
        let out = StdCommand::new(&script).args([action, sw.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "seaweedfs.sh {action}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh("start");
    struct Stop<'a>(&'a dyn Fn(&str));
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            (self.0)("stop");
        }
    }
    let _stop = Stop(&sh);
    let env = std::fs::read_to_string(sw.join("env")).unwrap();
    let var = |name: &str| env.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().to_string();
    let own = S3 {
        endpoint: var("DESKEW_TEST_S3_ENDPOINT"),
        bucket: var("DESKEW_TEST_S3_BUCKET"),
        key: var("DESKEW_TEST_S3_ACCESS_KEY"),
        secret: var("DESKEW_TEST_S3_SECRET_KEY"),
    };

    // A build with enough files that the publish is still running when the server goes.
    let build = dir.path().join("dist");
    let chunks: Vec<String> = (0..120).map(|i| format!("chunk{i}")).collect();
    let names: Vec<&str> = chunks.iter().map(String::as_str).collect();
    deskew_testkit::synthetic_build(&build, "big", &names, "r");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(deskew_testkit::proxy::FaultProxy::start(&own.endpoint));
    proxy.faults.put_delay_ms.store(30, Ordering::SeqCst);
    let url = format!("s3://{}/app", own.bucket);
    let child = StdCommand::new(assert_cmd::cargo::cargo_bin("deskew"))
        .args(["publish", &s(&build), "--store", &url, "--release", "big", "--concurrency", "2", "--max-attempts", "3", "--endpoint-url", &proxy.url])
        .env("AWS_ACCESS_KEY_ID", &own.key)
        .env("AWS_SECRET_ACCESS_KEY", &own.secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while proxy.faults.puts.load(Ordering::SeqCst) < 20 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "publish never got going");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    sh("stop");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "a server gone mid-publish is I/O: {stderr}");
    assert!(stderr.contains("failed to publish release `big` to s3://"), "{stderr}");

    sh("start");
    proxy.faults.put_delay_ms.store(0, Ordering::SeqCst);
    let r = run_s3(&own, &proxy.url, &["releases", "--store", &url, "--json"]);
    assert_eq!(r.json()["releases"][0]["state"], "pending", "{}", r.stderr);
    let r = run_s3(&own, &proxy.url, &["publish", &s(&build), "--store", &url, "--release", "big", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run_s3(&own, &proxy.url, &["verify", "--store", &url, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["objects"], 123);
}

/// A retried publish of the newest release reads the store once: the marker (which also finds
/// out that the bucket answers), the lease's top epoch, the records (a listing and the one record) and one listing of the store
/// (made while the build is hashed), whose ETags vouch for the mutable files; it writes nothing
/// and lists nothing twice.
#[test]
fn a_retried_publish_reads_the_store_once() {
    deskew_testkit::require!(S3);
    let s3 = server();
    let url = format!("s3://{}/{}", s3.bucket, deskew_testkit::unique_prefix("retry"));
    let r = run_s3(&s3, &s3.endpoint, &["publish", &fixture("v1"), "--store", &url, "--release", "v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let manifest = run(&["manifest", &fixture("v1"), "--json"]).json();
    let mutable = manifest["files"].as_array().unwrap().iter().filter(|f| f["class"] == "mutable").count();
    assert!(mutable > 0, "the fixture has mutable files, which the listing must vouch for");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(deskew_testkit::proxy::FaultProxy::start(&s3.endpoint));
    let r = run_s3(&s3, &proxy.url, &["publish", &fixture("v1"), "--store", &url, "--release", "v1", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["publish"]["outcome"], "already-complete");
    assert_eq!(proxy.faults.puts.load(Ordering::SeqCst), 0, "nothing written");
    let requests = proxy.faults.requests.load(Ordering::SeqCst);
    // The mutable files are not read: the listing's ETags state their MD5s, those of the build's.
    assert_eq!(requests, 5, "marker, lease, records listing, record and store listing");
}

/// gc reads the store once: one listing of the whole store gives it the records and heartbeats
/// as well as the files (no listing of their own), and no request checks the bucket first.
#[test]
fn gc_lists_the_store_once_for_records_heartbeats_and_files() {
    deskew_testkit::require!(S3);
    let s3 = server();
    let url = format!("s3://{}/{}", s3.bucket, deskew_testkit::unique_prefix("gc-requests"));
    for v in ["v1", "v2"] {
        let r = run_s3(&s3, &s3.endpoint, &["publish", &fixture(v), "--store", &url, "--release", v]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(deskew_testkit::proxy::FaultProxy::start(&s3.endpoint));
    let r = run_s3(&s3, &proxy.url, &["gc", "--store", &url, "--keep", "1", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json()["deleted"].as_u64().unwrap() > 0, "{}", r.stdout);
    let requests = proxy.faults.requests.load(Ordering::SeqCst);
    // The marker; the conditional-write probe (one refused write); the lease taken (a listing,
    // the top epoch, the next epoch, a listing to confirm it); the store's listing; the two
    // records; v1's tombstone; the listing of records made before deleting; the files' and the
    // record's deletes; the lease given back.
    assert_eq!(requests, 14, "marker, probe, 4 lease, listing, 2 records, tombstone, new records, 2 deletes, release");
}
