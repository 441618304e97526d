//! Configuration: `deskew.toml` < `DESKEW_*` < flag for every option, typos in the file refused
//! with the file and the key named, secrets masked by `deskew config`, per-glob Cache-Control and
//! Content-Type rules on the directory store (the record) and on SeaweedFS (the objects' headers);
//! completions and the manual page generated from the same definitions.

use crate::support::*;

/// `deskew` run in `dir` (where its `deskew.toml` is), with extra environment.
fn in_dir(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = deskew();
    c.current_dir(dir).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap().into()
}

/// How many releases `releases --json` marks kept.
fn kept(r: &Run) -> usize {
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["releases"].as_array().unwrap().iter().filter(|x| x["kept"] == true).count()
}

#[test]
fn file_then_env_then_flag() {
    let t = Scratch::new();
    for (i, v) in ["v1", "v2", "v3", "v1"].iter().enumerate() {
        let mut dist = std::path::PathBuf::from(fixture(v));
        if i == 3 {
            dist = t.path("v4");
            copy_dir(std::path::Path::new(&fixture("v1")), &dist);
            std::fs::write(dist.join("robots.txt"), "v4").unwrap();
        }
        run_ok(&["publish", &s(&dist), "--store", &t.store(), "--release", &format!("r{i}")]);
    }
    std::fs::write(t.path("deskew.toml"), format!("store = \"{}\"\n[releases]\nkeep = 1\n", t.store())).unwrap();
    let dir = t.path("");
    assert_eq!(kept(&in_dir(&dir, &["releases", "--json"], &[])), 1, "the file's value");
    assert_eq!(kept(&in_dir(&dir, &["releases", "--json"], &[("DESKEW_KEEP", "2")])), 2, "the variable beats the file");
    assert_eq!(kept(&in_dir(&dir, &["releases", "--json", "--keep", "3"], &[("DESKEW_KEEP", "2")])), 3, "the flag beats both");
    let other = t.path("other.toml");
    std::fs::write(&other, format!("store = \"{}\"\nkeep = 4\n", t.store())).unwrap();
    assert_eq!(kept(&in_dir(&dir, &["releases", "--json", "--config", &s(&other)], &[])), 4, "--config names another file");
    let cfg = in_dir(&dir, &["config", "releases", "--json"], &[("DESKEW_KEEP", "2")]).json();
    assert_schema("config", &cfg);
    let keep = cfg["options"].as_array().unwrap().iter().find(|o| o["option"] == "keep").unwrap().clone();
    assert_eq!((keep["value"].as_str(), keep["source"].as_str()), (Some("2"), Some("env DESKEW_KEEP")));
    let store = cfg["options"].as_array().unwrap().iter().find(|o| o["option"] == "store").unwrap().clone();
    assert_eq!(store["source"], "deskew.toml");
}

#[test]
fn a_bad_file_is_refused_with_its_name_and_key() {
    let t = Scratch::new();
    let dir = t.path("");
    for (body, expect) in [
        ("kep = 1\n", "`kep` is not an option of any deskew command"),
        ("[publish]\nprobe-rate = 1\n", "`probe-rate` in [publish] is not an option of `deskew publish`"),
        ("[pubish]\nkeep = 1\n", "[pubish] is not a deskew command"),
        ("keep = [\n", "is not valid TOML"),
        ("keep = { a = 1 }\n", "`keep` must be a string, number, boolean or a list of them"),
    ] {
        std::fs::write(t.path("deskew.toml"), body).unwrap();
        let r = in_dir(&dir, &["releases", "--store", &t.store()], &[]);
        assert_eq!(r.code, 2, "{body}: {}", r.stderr);
        assert!(r.stderr.contains("deskew.toml") && r.stderr.contains(expect), "{body}: {}", r.stderr);
    }
    std::fs::write(t.path("deskew.toml"), "[gc]\nkeep = \"two\"\n").unwrap();
    let r = in_dir(&dir, &["gc", "--store", &t.store()], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("'two'") && r.stderr.contains("--keep") && r.stderr.contains("deskew.toml"), "{}", r.stderr);
}

#[test]
fn config_masks_secrets() {
    let t = Scratch::new();
    std::fs::write(t.path("deskew.toml"), "[probe]\nbasic-auth = \"ops:hunter2\"\ncookie = [\"session=s3cr3t\"]\nconcurrency = 8\n").unwrap();
    let r = in_dir(&t.path(""), &["config", "probe", "--json"], &[("DESKEW_HEADER", "Authorization: Bearer t0ken")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for secret in ["hunter2", "s3cr3t", "t0ken"] {
        assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret), "{secret} printed: {}{}", r.stdout, r.stderr);
    }
    let opts = r.json()["options"].as_array().unwrap().clone();
    let get = |o: &str| opts.iter().find(|x| x["option"] == o).unwrap()["value"].clone();
    assert_eq!(get("basic-auth"), "***");
    assert_eq!(get("concurrency"), "8");
}

const RULES: &str = "[publish]\ncache-control = [\"assets/*.wasm=public, max-age=600\"]\ncontent-type = [\"robots.txt=text/plain; charset=us-ascii\"]\n";

#[test]
fn per_glob_headers_on_the_directory_store() {
    let t = Scratch::new();
    std::fs::write(t.path("deskew.toml"), RULES).unwrap();
    let r = in_dir(&t.path(""), &["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = t.record("v1");
    let file = |p: &str| rec["manifest"]["files"].as_array().unwrap().iter().find(|f| f["path"].as_str().unwrap().ends_with(p)).unwrap().clone();
    assert_eq!(file(".wasm")["cache_control"], "public, max-age=600");
    assert_eq!(file(".js")["cache_control"], "public, max-age=31536000, immutable", "other files keep their class's");
    assert_eq!(file("robots.txt")["content_type"], "text/plain; charset=us-ascii");
    let r = run(&["manifest", &fixture("v1"), "--cache-control", "*.wasm"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`*.wasm` is not GLOB=VALUE"), "{}", r.stderr);
}

#[test]
fn per_glob_headers_on_s3() {
    deskew_testkit::require!(S3);
    let (endpoint, bucket, key, secret) = deskew_testkit::s3_server();
    let t = Scratch::new();
    std::fs::write(t.path("deskew.toml"), format!("endpoint-url = \"{endpoint}\"\n{RULES}")).unwrap();
    let prefix = deskew_testkit::unique_prefix("headers");
    let env = [("AWS_ACCESS_KEY_ID", key.as_str()), ("AWS_SECRET_ACCESS_KEY", secret.as_str()), ("AWS_EC2_METADATA_DISABLED", "true")];
    let r = in_dir(&t.path(""), &["publish", &fixture("v1"), "--store", &format!("s3://{bucket}/{prefix}"), "--release", "v1", "--json"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let head = |object: &str| -> serde_json::Value {
        let out = std::process::Command::new("aws")
            .args(["s3api", "head-object", "--bucket", &bucket, "--key", &format!("{prefix}/{object}"), "--endpoint-url", &endpoint, "--output", "json"])
            .envs(env)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("the aws CLI (PyPI awscli) is needed; scripts/test installs it");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(head("assets/add-DkMAU0Nf.wasm")["CacheControl"], "public, max-age=600");
    assert_eq!(head("robots.txt")["ContentType"], "text/plain; charset=us-ascii");
    assert_eq!(head("assets/about-B0thXP3Q.js")["CacheControl"], "public, max-age=31536000, immutable");
}

#[test]
fn completions_and_the_manual_page() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let r = run_ok(&["completions", shell]);
        assert!(r.stdout.contains("deskew") && r.stdout.contains("publish"), "{shell}");
    }
    let bash = run_ok(&["completions", "bash"]).stdout;
    let t = Scratch::new();
    std::fs::write(t.path("deskew.bash"), &bash).unwrap();
    let check = std::process::Command::new("bash").arg("-n").arg(t.path("deskew.bash")).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    let man = run_ok(&["man"]).stdout;
    assert!(man.starts_with(".ie") || man.starts_with(".TH"), "{}", &man[..80.min(man.len())]);
    for section in ["deskew\\-publish", "deskew\\-probe", "\\-\\-keep\\-for"] {
        assert!(man.contains(section), "{section} is in the manual page");
    }
}

/// Review finding: an option given as a flag wins over its alternative from a variable or the
/// file (`--concurrency` over DESKEW_RATE; a deploy command over DESKEW_DURATION).
#[test]
fn a_flag_wins_over_its_alternative_from_the_environment() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let site = rt.block_on(deskew_testkit::site::Site::start(deskew_testkit::fixture_dist("v1")));
    let t = Scratch::new();
    let r = in_dir(&t.path(""), &["probe", &site.url, "--duration", "1s", "--concurrency", "2", "--json", "-q"], &[("DESKEW_RATE", "5")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["traffic"]["model"], "closed");
    let r = in_dir(&t.path(""), &["probe", &site.url, "--warmup", "0s", "--settle", "0s", "--json", "-q", "--", "true"], &[("DESKEW_DURATION", "30s")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["command"]["success"], true);
    let r = in_dir(&t.path(""), &["probe", &site.url, "--duration", "1s", "-H", "Authorization Bearer t0ken"], &[]);
    assert_eq!(r.code, 2);
    assert!(!r.stderr.contains("t0ken"), "a malformed credential is not echoed: {}", r.stderr);
}
