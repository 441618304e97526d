//! Validated store keys.
//!
//! Every path deskew writes or deletes goes through [`Key`]: a relative, `/`-separated UTF-8 path
//! with no empty, `.` or `..` segment, no backslash and no control character. A key can therefore
//! never name anything outside the store's root, whichever backend maps it to a file or object.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A relative path inside a store, validated so that it cannot escape the store's root. Cheap to
/// clone (shared); keys parsed inside an [`Interner`](crate::intern::Interner) scope share
/// equal strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Arc<str>);

/// Why a string is not a valid [`Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("empty path")]
    Empty,
    /// The key starts with `/`.
    #[error("absolute path `{0}`")]
    Absolute(String),
    /// The key has an empty, `.` or `..` segment.
    #[error("path `{0}` has an empty, `.` or `..` segment")]
    BadSegment(String),
    /// The key holds a backslash or a control character.
    #[error("path `{0}` holds a backslash or a control character")]
    BadChar(String),
    /// The key is longer than any backend accepts.
    #[error("path `{0}` is longer than 1024 bytes")]
    TooLong(String),
}

impl Key {
    /// Validates `path` as a key.
    pub fn new(path: impl Into<String>) -> Result<Key, KeyError> {
        let path = path.into();
        Key::from_str(&path)
    }

    /// Validates `path` as a key (shared with equal keys inside an interner's scope).
    fn from_str(path: &str) -> Result<Key, KeyError> {
        if path.is_empty() {
            return Err(KeyError::Empty);
        }
        if path.len() > 1024 {
            return Err(KeyError::TooLong(path.into()));
        }
        if path.starts_with('/') {
            return Err(KeyError::Absolute(path.into()));
        }
        if path.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(KeyError::BadChar(path.into()));
        }
        if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
            return Err(KeyError::BadSegment(path.into()));
        }
        Ok(Key(crate::intern::intern(path)))
    }

    /// The key as a `/`-separated string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/child`, where `child` is itself a valid key.
    pub fn join(&self, child: &Key) -> Key {
        Key(format!("{}/{}", self.0, child.0).into())
    }

    /// Whether this key lies below the folder `prefix` (or is `prefix` itself).
    pub fn is_under(&self, prefix: &Key) -> bool {
        self.0 == prefix.0 || (self.0.starts_with(&*prefix.0) && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }

    /// The last segment: the file name.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a relative path")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Key::from_str(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl schemars::JsonSchema for Key {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Key".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A relative, `/`-separated path inside a store: no empty, `.` or `..` segment, no backslash or control character.",
            "type": "string",
            "minLength": 1,
            "maxLength": 1024,
            "not": { "pattern": "(^/)|(^|/)\\.{0,2}(/|$)|\\\\|[\\u0000-\\u001f\\u007f]" }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for ok in ["index.html", "assets/main-BcD3fG7h.js", ".deskew/releases/r1.json", "a..b/c"] {
            assert_eq!(Key::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_escapes() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", "a\\b", "a\nb"] {
            assert!(Key::new(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn is_under_respects_segments() {
        let k = Key::new(".deskew/releases/r1.json").unwrap();
        assert!(k.is_under(&Key::new(".deskew").unwrap()));
        assert!(!k.is_under(&Key::new(".desk").unwrap()));
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<Key>("\"../../etc/passwd\"").is_err());
        assert!(serde_json::from_str::<Key>("\"assets/a.js\"").is_ok());
    }
}
