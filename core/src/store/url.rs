//! Store URLs: `/srv/assets`, `file:///srv/assets` or `s3://bucket/prefix`.

use std::fmt;
use std::path::PathBuf;

/// A parsed store URL. Parsing does not touch the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A directory: a shared volume every pod mounts.
    File(PathBuf),
    /// An S3-compatible bucket, with an optional key prefix (no leading or trailing `/`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix inside the bucket, empty for the whole bucket.
        prefix: String,
    },
}

/// Why a store URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// Empty string.
    #[error("store URL is empty")]
    Empty,
    /// A scheme deskew does not know.
    #[error("store URL `{0}` has an unsupported scheme; use a path, file:///path or s3://bucket/prefix")]
    Scheme(String),
    /// `file://host/...`.
    #[error("store URL `{0}` names a host; use file:///absolute/path")]
    FileHost(String),
    /// `s3://` without a bucket, or with a prefix that cannot be a key.
    #[error("store URL `{0}` is invalid: {1}")]
    S3(String, String),
}

impl StoreUrl {
    /// Parses a store URL or a plain path.
    pub fn parse(s: &str) -> Result<StoreUrl, StoreUrlError> {
        if s.is_empty() {
            return Err(StoreUrlError::Empty);
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(StoreUrlError::FileHost(s.into()));
            }
            return Ok(StoreUrl::File(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreUrlError::S3(s.into(), "no bucket".into()));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                crate::key::Key::new(prefix).map_err(|e| StoreUrlError::S3(s.into(), e.to_string()))?;
            }
            return Ok(StoreUrl::S3 { bucket: bucket.into(), prefix: prefix.into() });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') {
                return Err(StoreUrlError::Scheme(s.into()));
            }
        }
        Ok(StoreUrl::File(PathBuf::from(s)))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::File(p) => write!(f, "file://{}", p.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(StoreUrl::parse("/srv/a").unwrap(), StoreUrl::File("/srv/a".into()));
        assert_eq!(StoreUrl::parse("rel/dir").unwrap(), StoreUrl::File("rel/dir".into()));
        assert_eq!(StoreUrl::parse("file:///srv/a").unwrap(), StoreUrl::File("/srv/a".into()));
        assert_eq!(StoreUrl::parse("s3://b/app/").unwrap(), StoreUrl::S3 { bucket: "b".into(), prefix: "app".into() });
        assert!(StoreUrl::parse("s3://").is_err());
        assert!(StoreUrl::parse("s3://b/../x").is_err());
        assert!(StoreUrl::parse("gs://b").is_err());
        assert!(StoreUrl::parse("file://host/x").is_err());
    }
}
