//! Release ids and release records: what a publish leaves in the store about itself.
//!
//! A record holds the release's whole manifest, so every question about what a release needs
//! (dedupe, retention, GC, verify, the probe's release matching) is answered from records, never
//! by reading assets. A record is `pending` from before the first asset is written until every
//! asset and entry file is stored; only then is it rewritten as `complete`. A gc that drops a
//! release rewrites its record as `dropping` before it deletes the first file, so a record that
//! says `complete` is always whole, even after a gc was killed half-way.

use serde::{Deserialize, Serialize};

pub use crate::id::{ReleaseId, ReleaseIdError};

use crate::key::Key;
use crate::layout;
use crate::manifest::{self, FORMAT_VERSION, FileClass, Manifest, ManifestFile};
use crate::time::Timestamp;

/// Whether a release is fully stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseState {
    /// Being published, or a publish that crashed: some files may be missing.
    Pending,
    /// Every file is stored.
    Complete,
    /// A gc is deleting its files (or was, and died): the release is not whole and never served,
    /// kept or pinned again. The next gc finishes the job; publishing it again restores it.
    Dropping,
}

impl ReleaseState {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Pending => "pending",
            ReleaseState::Complete => "complete",
            ReleaseState::Dropping => "dropping",
        }
    }
}

/// A release record, stored at `.deskew/releases/<id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseRecord {
    /// Format version, [`FORMAT_VERSION`].
    #[schemars(schema_with = "crate::schema::format_version")]
    pub version: u32,
    /// The release id; equals the record's file name and `manifest.release`.
    pub release: ReleaseId,
    /// Pending or complete.
    pub state: ReleaseState,
    /// When the publish began (the pending record was first written).
    pub created: Timestamp,
    /// When the record was marked complete: the release's place in retention order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    /// When a gc began dropping it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropping_since: Option<Timestamp>,
    /// The deskew that wrote it.
    pub tool: String,
    /// The release's whole manifest.
    pub manifest: Manifest,
}

/// Why stored bytes are not a usable release record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or not a record (an escaping path lands here too: keys are validated on parse).
    #[error("release record `{key}` is corrupt")]
    Parse {
        /// The record's key.
        key: Key,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Written by a newer deskew.
    #[error("release record `{key}` has format version {found}; this deskew reads up to {FORMAT_VERSION}")]
    Version {
        /// The record's key.
        key: Key,
        /// Its version.
        found: u32,
    },
    /// Fields that contradict each other or the file name.
    #[error("release record `{key}` is inconsistent: {why}")]
    Inconsistent {
        /// The record's key.
        key: Key,
        /// What is wrong.
        why: String,
    },
}

impl ReleaseRecord {
    /// A new pending record for `manifest`.
    pub fn pending(manifest: Manifest, created: Timestamp) -> ReleaseRecord {
        ReleaseRecord {
            version: FORMAT_VERSION,
            release: manifest.release.clone(),
            state: ReleaseState::Pending,
            created,
            completed: None,
            dropping_since: None,
            tool: crate::tool_version(),
            manifest,
        }
    }

    /// Parses and checks the record stored at `key`: its id must match the key, its digest its
    /// files, and every path must be a valid key (no `..`, no absolute path).
    pub fn parse(key: &Key, bytes: &[u8]) -> Result<ReleaseRecord, RecordError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        // A record of a newer format is refused as such, whether or not it parses as this one.
        let too_new = |version: u32| (version > FORMAT_VERSION).then(|| RecordError::Version { key: key.clone(), found: version });
        let rec: ReleaseRecord = match serde_json::from_slice(bytes) {
            Ok(rec) => rec,
            Err(source) => {
                let version = serde_json::from_slice::<VersionOnly>(bytes).map_or(0, |v| v.version);
                return Err(too_new(version).unwrap_or(RecordError::Parse { key: key.clone(), source }));
            }
        };
        if let Some(e) = too_new(rec.version) {
            return Err(e);
        }
        ReleaseRecord::checked(key, rec)
    }

    /// [`parse`](ReleaseRecord::parse) from a reader, as the bytes arrive. A record that does
    /// not parse is [`RecordError::Parse`], even one of a newer format (only [`parse`], which
    /// holds the text, can read just its version): read it whole to tell the two apart.
    pub fn parse_reader(key: &Key, reader: impl std::io::Read) -> Result<ReleaseRecord, RecordError> {
        let rec: ReleaseRecord = serde_json::from_reader(reader).map_err(|source| RecordError::Parse { key: key.clone(), source })?;
        if rec.version > FORMAT_VERSION {
            return Err(RecordError::Version { key: key.clone(), found: rec.version });
        }
        ReleaseRecord::checked(key, rec)
    }

    /// The checks of [`parse`](ReleaseRecord::parse) on a record of a known version.
    fn checked(key: &Key, mut rec: ReleaseRecord) -> Result<ReleaseRecord, RecordError> {
        rec.manifest.files.shrink_to_fit();
        let bad = |why: String| Err(RecordError::Inconsistent { key: key.clone(), why });
        if layout::record_key(&rec.release) != *key {
            return bad(format!("it names release `{}`", rec.release));
        }
        if rec.manifest.release != rec.release {
            return bad(format!("its manifest names release `{}`", rec.manifest.release));
        }
        if !rec.manifest.files.windows(2).all(|w| w[0].path < w[1].path) {
            return bad("its files are not sorted and unique".into());
        }
        if manifest::digest(&rec.manifest.files) != rec.manifest.digest {
            return bad("its digest does not match its files".into());
        }
        if let Some(f) = rec.manifest.files.iter().find(|f| f.path.is_under(&Key::new(layout::DESKEW_DIR).unwrap())) {
            return bad(format!("file `{}` lies in deskew's own folder", f.path));
        }
        if rec.state == ReleaseState::Complete && rec.completed.is_none() {
            return bad("it is complete but has no completion time".into());
        }
        Ok(rec)
    }

    /// When it became complete (its creation time for a record that never was).
    pub fn completed_or_created(&self) -> Timestamp {
        self.completed.unwrap_or(self.created)
    }

    /// Compact JSON with a trailing newline. Records are read by machines, every kept one by
    /// every publish and gc: compact, a 50,000-file record is a fifth smaller than pretty-printed
    /// (15 → 12 MB) to write, read, hold and parse. Readers accept either form.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).expect("record serialises");
        s.push('\n');
        s
    }

    /// Every file of the release with the store key it lives at.
    pub fn stored_files(&self) -> impl Iterator<Item = (Key, &ManifestFile)> {
        self.manifest.files.iter().map(|f| (layout::file_key(&self.release, f), f))
    }

    /// Bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.manifest.total.bytes
    }

    /// Whether the release has a file of class `class` at `path`.
    pub fn has(&self, class: FileClass, path: &Key) -> bool {
        self.manifest.file(path).is_some_and(|f| f.class == class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ReleaseRecord {
        let files = vec![ManifestFile {
            path: Key::new("assets/a-0123abcd.js").unwrap(),
            sha256: "0".repeat(64).into(),
            size: 1,
            content_type: "text/javascript".into(),
            cache_control: "public".into(),
            class: FileClass::Immutable,
        }];
        ReleaseRecord::pending(Manifest::from_files(files, Some(ReleaseId::new("r1").unwrap())), Timestamp::parse("2026-11-29T12:00:00Z").unwrap())
    }

    #[test]
    fn a_record_must_agree_with_its_key_and_itself() {
        let key = layout::record_key(&ReleaseId::new("r1").unwrap());
        let r = record();
        assert_eq!(ReleaseRecord::parse(&key, r.to_json().as_bytes()).unwrap(), r);
        let other = layout::record_key(&ReleaseId::new("r2").unwrap());
        assert!(matches!(ReleaseRecord::parse(&other, r.to_json().as_bytes()), Err(RecordError::Inconsistent { .. })));
        let mut complete = r.clone();
        complete.state = ReleaseState::Complete;
        assert!(matches!(ReleaseRecord::parse(&key, complete.to_json().as_bytes()), Err(RecordError::Inconsistent { .. })), "complete needs a completion time");
        let mut tampered = r.clone();
        tampered.manifest.files[0].sha256 = "1".repeat(64).into();
        assert!(matches!(ReleaseRecord::parse(&key, tampered.to_json().as_bytes()), Err(RecordError::Inconsistent { .. })), "the digest covers the files");
        // A pretty-printed record (earlier builds wrote them so) reads the same.
        assert_eq!(ReleaseRecord::parse(&key, serde_json::to_string_pretty(&r).unwrap().as_bytes()).unwrap(), r);
        let newer = r.to_json().replacen("\"version\":1", "\"version\":99", 1);
        assert!(matches!(ReleaseRecord::parse(&key, newer.as_bytes()), Err(RecordError::Version { found: 99, .. })));
        let unreadable = newer.replacen("\"state\":\"pending\"", "\"state\":\"shelved\"", 1);
        assert!(
            matches!(ReleaseRecord::parse(&key, unreadable.as_bytes()), Err(RecordError::Version { found: 99, .. })),
            "a newer record that this version cannot parse is too new, not corrupt"
        );
    }

    /// Paths are checked as they are parsed: a record whose every other check holds (sorted,
    /// digest over its files) is refused for a path that leaves the store.
    #[test]
    fn a_consistent_record_with_an_escaping_path_does_not_parse() {
        let key = layout::record_key(&ReleaseId::new("r1").unwrap());
        for path in ["../a-0123abcd.js", "/etc/a-0123abcd.js", "assets/../../a.js"] {
            let mut json: serde_json::Value = serde_json::from_str(&record().to_json()).unwrap();
            json["manifest"]["files"][0]["path"] = path.into();
            json["manifest"]["digest"] = crate::digest::sha256_hex(format!("{path}\0{}\n", "0".repeat(64)).as_bytes()).into();
            let err = ReleaseRecord::parse(&key, &serde_json::to_vec(&json).unwrap()).unwrap_err();
            assert!(matches!(err, RecordError::Parse { .. }), "{path}: {err:?}");
        }
    }
}
