//! The committed schemas describe what deskew really writes: release records in the store.

use crate::support::*;

#[test]
fn stored_release_records_match_the_schema() {
    let t = Scratch::new();
    run_ok(&["publish", &fixture("v1"), "--store", &t.store(), "--release", "v1"]);
    big_build(&t.path("big"), 1500, 2048);
    t.publish_killed(&s(&t.path("big")), "v2");
    for (id, state) in [("v1", "complete"), ("v2", "pending")] {
        let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(t.path(&format!("store/.deskew/releases/{id}.json"))).unwrap()).unwrap();
        assert_eq!(rec["state"], state);
        assert_schema("release", &rec);
    }
}

#[test]
fn schemas_reject_wrong_output() {
    let m = run_ok(&["manifest", &fixture("v1"), "--json"]).json();
    let mut bad = m.clone();
    bad["files"][0]["path"] = "../escape.js".into();
    let result = std::panic::catch_unwind(|| assert_schema("manifest", &bad));
    assert!(result.is_err(), "an escaping path must not validate");
    let mut bad = m;
    bad["files"][0]["class"] = "hashed".into();
    assert!(std::panic::catch_unwind(|| assert_schema("manifest", &bad)).is_err());
}

/// The committed schemas are the ones the Rust types generate: a field added, renamed or retyped
/// without its schema fails here. `UPDATE_SCHEMAS=1` rewrites them.
#[test]
fn committed_schemas_match_the_types() {
    let dir = deskew_testkit::fixtures::repo_root().join("schemas");
    let update = std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, generated) in deskew_cli::formats::schemas() {
        let path = dir.join(format!("{name}.schema.json"));
        let committed: Option<serde_json::Value> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
        if committed.as_ref() == Some(&generated) {
            continue;
        }
        if update {
            std::fs::write(&path, serde_json::to_string_pretty(&generated).unwrap() + "\n").unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "out of date: {stale:?}; run `UPDATE_SCHEMAS=1 cargo test -p deskew-cli schemas` and commit them");
}
