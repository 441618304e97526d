//! The JSON deskew prints and writes: one version constant per format, and every format's
//! schema generated from the Rust types. `schemas/*.schema.json` are these, committed; a test
//! fails when a type changes without them (`UPDATE_SCHEMAS=1 cargo test -p deskew-cli schemas`
//! rewrites them).

use schemars::{Schema, SchemaGenerator};

/// `publish --json`.
pub const PUBLISH: u32 = 1;
/// `gc --json`.
pub const GC: u32 = 1;
/// `verify --json`.
pub const VERIFY: u32 = 1;
/// `releases --json`.
pub const RELEASES: u32 = 1;
/// `demo --json`.
pub const DEMO: u32 = 1;
/// `probe status --json`.
pub const PROBE_STATUS: u32 = 1;
/// `config --json`.
pub const CONFIG: u32 = 1;

/// For each format, the `schema_with` function that pins its `version` field to the constant.
macro_rules! version_schemas {
    ($($name:ident => $version:ident),* $(,)?) => {
        $(pub(crate) fn $name(_: &mut SchemaGenerator) -> Schema {
            deskew_core::schema::version($version)
        })*
    };
}

version_schemas! {
    publish_version => PUBLISH,
    gc_version => GC,
    verify_version => VERIFY,
    releases_version => RELEASES,
    demo_version => DEMO,
    config_version => CONFIG,
    probe_status_version => PROBE_STATUS,
}

/// Every format's schema, by file name stem (`schemas/<name>.schema.json`).
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn schema<T: schemars::JsonSchema>(name: &str) -> serde_json::Value {
        let mut v = serde_json::to_value(schemars::schema_for!(T)).expect("schema serialises");
        v["$id"] = format!("https://deskew.dev/schemas/{name}.schema.json").into();
        v
    }
    vec![
        ("manifest", schema::<deskew_core::Manifest>("manifest")),
        ("release", schema::<deskew_core::ReleaseRecord>("release")),
        ("publish", schema::<crate::commands::publish::Output<'static>>("publish")),
        ("gc", schema::<crate::commands::gc::Output<'static>>("gc")),
        ("verify", schema::<crate::commands::verify::Output<'static>>("verify")),
        ("releases", schema::<crate::commands::releases::Output<'static>>("releases")),
        ("probe-report", schema::<deskew_probe::Report>("probe-report")),
        ("probe-status", schema::<crate::commands::probe::StatusOut>("probe-status")),
        ("demo", schema::<crate::commands::demo::Output<'static>>("demo")),
        ("config", schema::<crate::commands::config::Output>("config")),
    ]
}
