//! Helpers for the JSON Schemas generated from deskew's types (`schemas/*.schema.json`, kept in
//! step by a test): a format's `version` field is pinned to its one constant.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A `version` field that must equal `version`.
pub fn version(version: u32) -> Schema {
    json_schema!({ "description": "Format version: readers refuse a newer one.", "type": "integer", "const": version })
}

/// The schema of a field holding [`crate::manifest::FORMAT_VERSION`].
pub fn format_version(_: &mut SchemaGenerator) -> Schema {
    version(crate::manifest::FORMAT_VERSION)
}
