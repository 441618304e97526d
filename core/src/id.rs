//! Release ids: what names a release in a store, its record's file name and its entry folder.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::time::Timestamp;

/// A release id: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ReleaseId(String);

/// Why a string is not a release id.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid release id `{0}`: use 1 to 128 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`, not ending in `.json`")]
pub struct ReleaseIdError(pub String);

impl ReleaseId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<ReleaseId, ReleaseIdError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('.')
            && !id.starts_with('-')
            // `<id>.json` is the record and `<id>/` the entry folder: an id ending in `.json`
            // would make one release's entry folder collide with another's record.
            && !id.ends_with(".json")
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if ok { Ok(ReleaseId(id)) } else { Err(ReleaseIdError(id)) }
    }

    /// The id a build gets from its content alone: the first 12 hex digits of its digest.
    pub fn from_digest(digest: &str) -> ReleaseId {
        ReleaseId(digest.chars().take(12).collect())
    }

    /// The id `publish` gives a build by default: UTC time plus the first 12 hex digits of its
    /// digest (`20261126T043000Z-3f2a1c9b0d1e`), so ids sort by time and name their content.
    pub fn timestamped(now: Timestamp, digest: &str) -> ReleaseId {
        ReleaseId(format!("{}-{}", now.compact(), digest.chars().take(12).collect::<String>()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ReleaseId {
    type Err = ReleaseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReleaseId::new(s)
    }
}

impl<'de> Deserialize<'de> for ReleaseId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ReleaseId, D::Error> {
        let s = String::deserialize(d)?;
        ReleaseId::new(s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ReleaseId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReleaseId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A release id: 1 to 128 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`, not ending in `.json`.",
            "type": "string",
            "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$",
            "not": { "pattern": "\\.json$" }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(ReleaseId::new("v1.2.3_rc-1").is_ok());
        for bad in ["", "x.json", ".hidden", "-x", "a/b", "a b", "..", &"x".repeat(129)] {
            assert!(ReleaseId::new(bad).is_err(), "{bad:?}");
        }
        let t = Timestamp::parse("2026-11-26T04:30:00Z").unwrap();
        assert_eq!(ReleaseId::timestamped(t, "3f2a1c9b0d1e77").as_str(), "20261126T043000Z-3f2a1c9b0d1e");
    }
}
