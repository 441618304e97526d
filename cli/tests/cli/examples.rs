//! `examples/` are checked, not just shown: Kubernetes manifests against the Kubernetes schemas
//! (Argo Rollouts objects by their pod and job templates and the Argo fields they use), nginx
//! configs with `nginx -t`, the CI files against the GitHub Actions and GitLab CI schemas, and
//! every deskew command line in them against this binary's parser (`tests/examples/validate.py`).

#[test]
fn examples_are_valid() {
    deskew_testkit::require!(Validators, Nginx);
    let script = deskew_testkit::fixtures::repo_root().join("tests/examples/validate.py");
    let out = std::process::Command::new("python3").arg(script).arg(assert_cmd::cargo::cargo_bin("deskew")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("{stderr}");
}
