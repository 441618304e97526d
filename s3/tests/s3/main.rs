//! Tests of the S3 backend against the real SeaweedFS server the test command starts: what only
//! S3 has (headers, metadata, multipart, conditional-write detection, TLS, retries). The
//! backend-independent behaviour is in the conformance suite (`deskew-testkit`).

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use deskew_core::host::SystemHost;
use deskew_core::manifest::{BuildOptions, Manifest};
use deskew_core::progress::NoProgress;
use deskew_core::publish::{self, DirSource, PublishOptions};
use deskew_core::release::ReleaseId;
use deskew_core::store::{Body, PutOptions, Store, StoreError};
use deskew_core::{Key, lease};
use deskew_s3::{S3Options, S3Store};
use deskew_testkit::proxy::FaultProxy;

fn opts(endpoint: &str) -> S3Options {
    let (_, _, key, secret) = deskew_testkit::s3_server();
    S3Options { endpoint_url: Some(endpoint.into()), static_credentials: Some((key, secret)), ..S3Options::default() }
}

async fn connect(endpoint: &str, prefix: &str) -> Result<S3Store, StoreError> {
    let (_, bucket, _, _) = deskew_testkit::s3_server();
    S3Store::connect(&bucket, prefix, &opts(endpoint)).await
}

fn endpoint() -> String {
    deskew_testkit::s3_server().0
}

async fn publish_fixture(store: &dyn Store, version: &str) -> Manifest {
    let dist = deskew_testkit::fixture_dist(version);
    let m = Manifest::from_dir(&dist, &BuildOptions { release: Some(ReleaseId::new(version).unwrap()), ..Default::default() }).unwrap();
    publish::publish(store, &SystemHost, &DirSource::new(&dist), m.clone(), &PublishOptions::default(), &NoProgress).await.unwrap();
    m
}

/// A listing given hints fetches its parts at once ([`Store::list_hinted`]): on a store of a few
/// dozen keys, pages of 2 and 4 keys make parts of one to several pages each, so every way a
/// part can start and end on a real server is met (`start-after`, then continuation tokens).
/// SeaweedFS lists folder by folder (`.deskew/releases/v1/index.html` before `v1.json`), so a
/// part starting after `v1.json` skips a hinted key: the plain listing must take over.
#[tokio::test]
async fn a_hinted_listing_in_small_pages_is_the_listing() {
    deskew_testkit::require!(S3);
    for page in [2, 4] {
        let (_, bucket, _, _) = deskew_testkit::s3_server();
        let small = S3Options { list_page: page, ..opts(&endpoint()) };
        let store = S3Store::connect(&bucket, &deskew_testkit::unique_prefix("hinted"), &small).await.unwrap();
        deskew_testkit::conformance::a_hinted_listing_shows_every_hinted_key(&store).await;
    }
}

#[tokio::test]
async fn seaweedfs_honours_create_only_writes() {
    deskew_testkit::require!(S3);
    let store = connect(&endpoint(), &deskew_testkit::unique_prefix("caps")).await.unwrap();
    assert!(store.capabilities().await.unwrap().create_only, "SeaweedFS refuses a second If-None-Match: * write; the probe must see that");
}

/// No request checks the bucket on connect, so every call must say what a missing bucket or
/// refused credentials mean itself: a GET of a missing bucket is not a missing object (the
/// marker's read would call the store "not a deskew store"), a DELETE of one is not a success.
#[tokio::test]
async fn every_call_says_the_store_itself_is_unusable() {
    deskew_testkit::require!(S3);
    let key = Key::new(".deskew/store.json").unwrap();
    let name = deskew_testkit::unique_prefix("missing").to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let missing = S3Store::connect(&name, "app", &opts(&endpoint())).await.unwrap();
    let mut wrong = opts(&endpoint());
    wrong.static_credentials = Some((deskew_testkit::s3_server().2, "not-the-secret".into()));
    let refused = S3Store::connect(&deskew_testkit::s3_server().1, "app", &wrong).await.unwrap();
    for (store, says) in [(&missing, format!("no bucket `{name}`")), (&refused, "check the credentials".into())] {
        let mut errors = vec![
            store.get(&key).await.unwrap_err(),
            store.list(None).await.unwrap_err(),
            store.list(Some(&deskew_core::layout::releases_dir())).await.unwrap_err(),
            store.is_empty().await.unwrap_err(),
            store.delete(&key).await.unwrap_err(),
        ];
        // SeaweedFS makes a missing bucket on a PUT; AWS S3 says NoSuchBucket.
        if std::ptr::eq(store, &refused) {
            errors.push(store.put(&key, Body::Bytes(Bytes::from_static(b"{}")), &PutOptions::default()).await.unwrap_err());
        }
        for err in errors {
            assert!(matches!(err, StoreError::Unusable { .. }) && err.to_string().contains(&says), "{err}");
        }
    }
}

/// SeaweedFS's listings state each object's MD5 in its ETag, as AWS S3's do for objects written
/// in one part: what spares publish reading mutable files back (the conformance suite's checks
/// of that take either branch, so this one pins which branch S3 takes).
#[tokio::test]
async fn listings_state_the_md5_of_objects_written_in_one_part() {
    deskew_testkit::require!(S3);
    let store = connect(&endpoint(), &deskew_testkit::unique_prefix("md5")).await.unwrap();
    let key = Key::new("robots.txt").unwrap();
    store.put(&key, Body::Bytes(Bytes::from_static(b"User-agent: *\n")), &PutOptions::default()).await.unwrap();
    let listed = store.list(None).await.unwrap().objects.into_iter().find(|o| o.key == key).unwrap();
    assert_eq!(listed.md5, Some(deskew_core::digest::md5(b"User-agent: *\n")));
}

/// The probe object an earlier probe left in place answers the next probe in one write; it
/// does not fool the probe of a server that ignores the header, reached at the same place
/// (through a proxy that drops it), and that probe leaves no object behind.
#[tokio::test]
async fn a_probe_object_left_in_place_fools_no_later_probe() {
    deskew_testkit::require!(S3);
    let prefix = deskew_testkit::unique_prefix("probe");
    let probe = Key::new(deskew_core::layout::CAS_PROBE).unwrap();
    let first = connect(&endpoint(), &prefix).await.unwrap();
    assert!(first.capabilities().await.unwrap().create_only);
    assert_eq!(first.get(&probe).await.unwrap(), "probe", "left in place");
    assert!(first.is_empty().await.unwrap(), "a temporary object: the place is still empty");
    let proxy = FaultProxy::start(&endpoint()).await;
    let again = connect(&proxy.url, &prefix).await.unwrap();
    assert!(again.capabilities().await.unwrap().create_only);
    let puts = proxy.faults.puts.load(Ordering::SeqCst);
    assert_eq!(puts, 1, "one write, refused");
    proxy.faults.ignore_conditional_puts.store(true, Ordering::SeqCst);
    let ignoring = connect(&proxy.url, &prefix).await.unwrap();
    assert!(!ignoring.capabilities().await.unwrap().create_only, "the object in place must not pass for a refusal");
    assert!(first.get(&probe).await.unwrap_err().is_not_found(), "removed where the header is ignored");
}

/// A server that accepts `If-None-Match: *` and overwrites anyway is detected, and GC refuses to
/// pretend it holds a lease there.
#[tokio::test]
async fn a_server_ignoring_conditional_writes_is_detected() {
    deskew_testkit::require!(S3);
    let proxy = FaultProxy::start(&endpoint()).await;
    proxy.faults.ignore_conditional_puts.store(true, Ordering::SeqCst);
    let store = connect(&proxy.url, &deskew_testkit::unique_prefix("nocas")).await.unwrap();
    assert!(!store.capabilities().await.unwrap().create_only);
    let err = lease::Lease::try_acquire(&store, &SystemHost, lease::LeaseConfig::default(), lease::Purpose::Gc).await.unwrap_err();
    assert!(err.to_string().contains("does not honour create-only writes"), "{err}");
    // Publishing still works (no gc can run there, so it needs no lease); the pending record is
    // written with a check-then-put.
    publish_fixture(&store, "v1").await;
}

/// Objects carry Content-Type, Cache-Control and the sha256 metadata; read back with a second,
/// independent client: the AWS CLI.
#[tokio::test]
async fn objects_carry_headers_read_back_by_the_aws_cli() {
    deskew_testkit::require!(S3);
    let (ep, bucket, key, secret) = deskew_testkit::s3_server();
    let prefix = deskew_testkit::unique_prefix("headers");
    let store = connect(&ep, &prefix).await.unwrap();
    let m = publish_fixture(&store, "v1").await;
    let head = |object: &str| -> serde_json::Value {
        let out = std::process::Command::new("aws")
            .args(["s3api", "head-object", "--bucket", &bucket, "--key", &format!("{prefix}/{object}"), "--endpoint-url", &ep, "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("the aws CLI (PyPI awscli) is needed; scripts/test installs it");
        assert!(out.status.success(), "aws s3api head-object {object}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let find = |suffix: &str| m.files.iter().find(|f| f.path.as_str().ends_with(suffix)).unwrap().clone();
    for (suffix, ct, cc) in [
        (".js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
        (".css", "text/css; charset=utf-8", "public, max-age=31536000, immutable"),
        (".woff2", "font/woff2", "public, max-age=31536000, immutable"),
        (".wasm", "application/wasm", "public, max-age=31536000, immutable"),
        ("robots.txt", "text/plain; charset=utf-8", "public, max-age=300, must-revalidate"),
    ] {
        let f = find(suffix);
        let h = head(f.path.as_str());
        assert_eq!(h["ContentType"], ct, "{suffix}");
        assert_eq!(h["CacheControl"], cc, "{suffix}");
        assert_eq!(h["Metadata"]["sha256"], f.sha256.as_ref(), "{suffix}");
        assert_eq!(h["ContentLength"], f.size, "{suffix}");
    }
    let index = find("index.html");
    let h = head(&format!(".deskew/releases/v1/{}", index.path));
    assert_eq!(h["ContentType"], "text/html; charset=utf-8");
    assert_eq!(h["CacheControl"], "no-cache");
    assert_eq!(h["Metadata"]["sha256"], index.sha256.as_ref());
}

/// A large file goes up in parts and comes back whole, with its sha256 as metadata.
#[tokio::test]
async fn large_files_use_multipart() {
    deskew_testkit::require!(S3);
    let store = connect(&endpoint(), &deskew_testkit::unique_prefix("multipart")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let data: Vec<u8> = (0..(17 * 1024 * 1024u32)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let sha = deskew_core::manifest::sha256_hex(&data);
    let key = Key::new("assets/big.0123abcd.bin").unwrap();
    store.put(&key, Body::File(path.clone()), &PutOptions { sha256: Some(sha.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from(data.clone()));
    // A body that does not match its expected sha256 is refused and the upload aborted.
    let err = store
        .put(&Key::new("assets/bad.bin").unwrap(), Body::File(path), &PutOptions { sha256: Some("0".repeat(64)), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
    let listed: Vec<String> = store.list(None).await.unwrap().objects.into_iter().map(|o| o.key.to_string()).collect();
    assert_eq!(listed, ["assets/big.0123abcd.bin"]);
}

/// Files are PUT signed with the sha256 deskew computed (the SDK does not hash them again), and
/// that digest is the body's: a server that checks it, as AWS S3 does, accepts every one. A file
/// changed after the manifest was made is refused by deskew before it is sent.
#[tokio::test]
async fn files_are_signed_with_their_own_sha256() {
    deskew_testkit::require!(S3);
    let proxy = FaultProxy::start(&endpoint()).await;
    let store = connect(&proxy.url, &deskew_testkit::unique_prefix("signed")).await.unwrap();
    let m = publish_fixture(&store, "v1").await;
    let checked = proxy.faults.payloads_checked.load(Ordering::SeqCst);
    assert!(checked >= m.files.len(), "{checked} PUTs checked against their signed sha256 for {} files", m.files.len());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<html>v9</html>").unwrap();
    std::fs::write(dir.path().join("app-3f2a1c.js"), "console.log(9)").unwrap();
    let m = Manifest::from_dir(dir.path(), &BuildOptions::default()).unwrap();
    std::fs::write(dir.path().join("app-3f2a1c.js"), "console.log(10)").unwrap();
    let err = publish::publish(&store, &SystemHost, &DirSource::new(dir.path()), m, &PublishOptions::default(), &NoProgress).await.unwrap_err();
    let msg = deskew_core::error_chain(&err);
    assert!(msg.contains("app-3f2a1c.js") && !msg.contains("XAmzContentSHA256Mismatch"), "{msg}");
}

/// Throttling (503 SlowDown) for a while: the SDK's bounded retries ride it out.
#[tokio::test]
async fn publish_survives_throttling() {
    deskew_testkit::require!(S3);
    let proxy = FaultProxy::start(&endpoint()).await;
    let store = connect(&proxy.url, &deskew_testkit::unique_prefix("slowdown")).await.unwrap();
    // Four 503s in a row land on one request (the first listing) and on the ones after it.
    proxy.faults.fail_next.store(4, Ordering::SeqCst);
    publish_fixture(&store, "v2").await;
    assert_eq!(proxy.faults.throttled.load(Ordering::SeqCst), 4);
    deskew_testkit::conformance::assert_complete_releases_whole(&store).await;
}

/// Throttling that never ends fails the publish (bounded retries), leaving a pending record.
#[tokio::test]
async fn endless_throttling_fails_bounded() {
    deskew_testkit::require!(S3);
    let proxy = FaultProxy::start(&endpoint()).await;
    let (_, bucket, _, _) = deskew_testkit::s3_server();
    let o = S3Options { max_attempts: 3, ..opts(&proxy.url) };
    let store = S3Store::connect(&bucket, &deskew_testkit::unique_prefix("throttled"), &o).await.unwrap();
    proxy.faults.fail_next.store(usize::MAX, Ordering::SeqCst);
    let dist = deskew_testkit::fixture_dist("v1");
    let m = Manifest::from_dir(&dist, &BuildOptions::default()).unwrap();
    let started = std::time::Instant::now();
    let err = publish::publish(&store, &SystemHost, &DirSource::new(&dist), m, &PublishOptions::default(), &NoProgress).await.unwrap_err();
    let msg = deskew_core::error_chain(&err);
    assert!(msg.contains("SlowDown"), "{msg}");
    assert!(proxy.faults.throttled.load(Ordering::SeqCst) >= 3, "three attempts, then give up");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// HTTPS with a custom CA bundle: trusted with the bundle, refused without it.
#[tokio::test]
async fn https_endpoint_with_custom_ca() {
    deskew_testkit::require!(S3);
    let dir = tempfile::tempdir().unwrap();
    let ca = deskew_testkit::tls::make_test_ca(&dir.path().join("ca"));
    let proxy = FaultProxy::start_tls(&endpoint(), &ca.cert_pem, &ca.key_pem).await;
    assert!(proxy.url.starts_with("https://"));
    let (_, bucket, _, _) = deskew_testkit::s3_server();
    let prefix = deskew_testkit::unique_prefix("tls");
    let mut o = opts(&proxy.url);
    o.ca_bundle = Some(ca.ca_pem.clone());
    let store = S3Store::connect(&bucket, &prefix, &o).await.unwrap();
    publish_fixture(&store, "v1").await;
    o.ca_bundle = Some(Path::new("/etc/ssl/certs/ca-certificates.crt").into());
    o.max_attempts = 1;
    // Nothing is sent on connect: the first call meets the untrusted certificate.
    let store = S3Store::connect(&bucket, &prefix, &o).await.unwrap();
    let err = store.list(None).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }) && err.to_string().contains("is unreachable"), "{err}");
}
