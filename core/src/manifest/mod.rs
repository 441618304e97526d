//! The content-addressed manifest of a build: every file's path, sha256, size, content type,
//! cache policy and class.
//!
//! The same directory always yields the same manifest (files sorted by path, no timestamps), so
//! its JSON is byte-identical across runs and machines. Files are never read through a symbolic
//! link that leads out of the build directory.
//!
//! This module is the model; `build.rs` walks a directory and hashes it into one.

mod build;
mod walk;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::ReleaseId;
use crate::key::Key;

pub use build::{BuildOptions, ManifestError};

/// Version of the manifest and release record formats. Readers accept formats up to this one.
pub const FORMAT_VERSION: u32 = 1;

/// How a file is served and kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FileClass {
    /// Served by each pod from its own image, changes in place (`index.html`).
    Entry,
    /// Named by its content hash; never changes, cached forever.
    Immutable,
    /// Anything else; may change in place, cached briefly.
    Mutable,
}

impl FileClass {
    /// The lower-case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            FileClass::Entry => "entry",
            FileClass::Immutable => "immutable",
            FileClass::Mutable => "mutable",
        }
    }
}

/// One file of a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManifestFile {
    /// Path relative to the build directory, `/`-separated.
    pub path: Key,
    /// Lower-case hex sha256 of the content.
    #[serde(deserialize_with = "crate::intern::shared")]
    pub sha256: Arc<str>,
    /// Size in bytes.
    pub size: u64,
    /// The `Content-Type` it is served with.
    #[serde(deserialize_with = "crate::intern::shared")]
    pub content_type: Arc<str>,
    /// The `Cache-Control` it is served with.
    #[serde(deserialize_with = "crate::intern::shared")]
    pub cache_control: Arc<str>,
    /// Its class.
    pub class: FileClass,
}

/// Files and bytes of a manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Totals {
    /// Number of files.
    pub files: u64,
    /// Sum of their sizes.
    pub bytes: u64,
}

/// The manifest of one build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Manifest {
    /// Format version, [`FORMAT_VERSION`].
    #[schemars(schema_with = "crate::schema::format_version")]
    pub version: u32,
    /// The deskew that wrote it.
    pub tool: String,
    /// The release this build is published as.
    pub release: ReleaseId,
    /// sha256 over every file's path and sha256: two builds with equal digests are equal.
    pub digest: String,
    /// Totals over `files`.
    pub total: Totals,
    /// Every file, sorted by path.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Builds a manifest from already hashed files (sorted here).
    pub fn from_files(mut files: Vec<ManifestFile>, release: Option<ReleaseId>) -> Manifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let digest = digest(&files);
        let total = Totals { files: files.len() as u64, bytes: files.iter().map(|f| f.size).sum() };
        let release = release.unwrap_or_else(|| ReleaseId::from_digest(&digest));
        Manifest { version: FORMAT_VERSION, tool: crate::tool_version(), release, digest, total, files }
    }

    /// The files of class `class`.
    pub fn of_class(&self, class: FileClass) -> impl Iterator<Item = &ManifestFile> {
        self.files.iter().filter(move |f| f.class == class)
    }

    /// The file at `path`.
    pub fn file(&self, path: &Key) -> Option<&ManifestFile> {
        self.files.binary_search_by(|f| f.path.cmp(path)).ok().map(|i| &self.files[i])
    }

    /// Pretty JSON with a trailing newline, as written to files and stdout.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("manifest serialises");
        s.push('\n');
        s
    }
}

/// The digest over a sorted file list: sha256 of `path NUL sha256 LF` lines.
pub fn digest(files: &[ManifestFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_str().as_bytes());
        h.update([0]);
        h.update(f.sha256.as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

pub use crate::digest::{hash_reader, sha256_hex};
