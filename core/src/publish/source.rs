//! Where a publish reads a build's files from: a directory (`dist/`), or memory (tests and the
//! simulation). A source hands out bodies; the store checks every body against the manifest's
//! sha256 as it writes it, so a file that changed since its manifest was made is never stored
//! under the old hash.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use crate::key::Key;
use crate::manifest::ManifestFile;
use crate::store::Body;

/// Why a source cannot give a file.
#[derive(Debug, thiserror::Error)]
#[error("failed to read `{}`", .path.display())]
pub struct SourceError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A build's files.
#[async_trait]
pub trait BuildSource: Send + Sync {
    /// The body to store for `file`.
    async fn body(&self, file: &ManifestFile) -> Result<Body, SourceError>;
    /// Where `file` comes from, for messages.
    fn describe(&self, file: &ManifestFile) -> PathBuf;
}

/// A build directory.
#[derive(Clone, Debug)]
pub struct DirSource {
    /// The directory.
    pub dist: PathBuf,
    /// Files larger than this are streamed from disk instead of read into memory.
    pub stream_threshold: u64,
}

impl DirSource {
    /// The build in `dist`, streaming files over 16 MiB.
    pub fn new(dist: impl Into<PathBuf>) -> DirSource {
        DirSource { dist: dist.into(), stream_threshold: 16 * 1024 * 1024 }
    }
}

#[async_trait]
impl BuildSource for DirSource {
    async fn body(&self, file: &ManifestFile) -> Result<Body, SourceError> {
        let path = self.describe(file);
        if file.size > self.stream_threshold {
            return Ok(Body::File(path));
        }
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Body::Bytes(Bytes::from(bytes))),
            Err(source) => Err(SourceError { path, source }),
        }
    }

    fn describe(&self, file: &ManifestFile) -> PathBuf {
        self.dist.join(file.path.as_str())
    }
}

/// A build in memory, by path.
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    /// Each file's bytes.
    pub files: HashMap<Key, Bytes>,
}

#[async_trait]
impl BuildSource for MemSource {
    async fn body(&self, file: &ManifestFile) -> Result<Body, SourceError> {
        match self.files.get(&file.path) {
            Some(b) => Ok(Body::Bytes(b.clone())),
            None => Err(SourceError { path: self.describe(file), source: std::io::ErrorKind::NotFound.into() }),
        }
    }

    fn describe(&self, file: &ManifestFile) -> PathBuf {
        PathBuf::from(file.path.as_str())
    }
}
