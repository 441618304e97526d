//! Where things live in a store. The same for every backend:
//!
//! ```text
//! <root>/assets/main-BcD3fG7h.js                 immutable and mutable files at their own path
//! <root>/favicon.ico
//! <root>/.deskew/releases/<id>.json              release records
//! <root>/.deskew/releases/<id>/index.html        each release's entry files, never at their public path
//! <root>/.deskew/store.json                      the marker: this is a deskew store
//! <root>/.deskew/lease/<epoch>.json              the lease (gc, and publish's last step)
//! <root>/.deskew/publishing/<id>/<token>.json    heartbeats of publishes at work
//! <root>/**/.deskew-tmp-<token>                  a directory store's write in progress
//! ```
//!
//! Serving `<root>` as the site's asset directory therefore works unchanged, as long as the web
//! server denies `/.deskew/`.

use crate::key::Key;
use crate::manifest::{FileClass, ManifestFile};
use crate::release::ReleaseId;

/// deskew's own folder in a store.
pub const DESKEW_DIR: &str = ".deskew";
/// Where release records live.
pub const RELEASES_DIR: &str = ".deskew/releases";
/// The store marker.
pub const MARKER: &str = ".deskew/store.json";
/// Where lease epochs live.
pub const LEASE_DIR: &str = ".deskew/lease";
/// Where publish heartbeats live.
pub const PUBLISHING_DIR: &str = ".deskew/publishing";
/// The name prefix of a directory store's temporary files.
pub const TMP_PREFIX: &str = ".deskew-tmp-";

/// The object an S3 store writes create-only to learn whether the server honours conditional
/// writes, left in place for the next probe (temporary: gc removes it after the grace period).
pub const CAS_PROBE: &str = ".deskew/.deskew-tmp-cas-probe";

/// `.deskew/releases`.
pub fn releases_dir() -> Key {
    Key::new(RELEASES_DIR).expect("constant key")
}

/// `.deskew`.
pub fn deskew_dir() -> Key {
    Key::new(DESKEW_DIR).expect("constant key")
}

/// `.deskew/store.json`.
pub fn marker_key() -> Key {
    Key::new(MARKER).expect("constant key")
}

/// `.deskew/lease`.
pub fn lease_dir() -> Key {
    Key::new(LEASE_DIR).expect("constant key")
}

/// `.deskew/lease/<epoch>.json`, the epoch zero-padded so keys sort by epoch.
pub fn lease_key(epoch: u64) -> Key {
    Key::new(format!("{LEASE_DIR}/{epoch:020}.json")).expect("valid key")
}

/// The epoch a lease key names.
pub fn lease_epoch(key: &Key) -> Option<u64> {
    let rest = key.as_str().strip_prefix(LEASE_DIR)?.strip_prefix('/')?;
    let digits = rest.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// `.deskew/publishing`.
pub fn publishing_dir() -> Key {
    Key::new(PUBLISHING_DIR).expect("constant key")
}

/// `.deskew/publishing/<id>/<token>.json`.
pub fn heartbeat_key(id: &ReleaseId, token: &str) -> Key {
    Key::new(format!("{PUBLISHING_DIR}/{id}/{token}.json")).expect("valid key")
}

/// Whether `key` names a temporary object: a directory store's file being written, or the S3
/// conditional-write probe's.
pub fn is_temp(key: &Key) -> bool {
    key.file_name().starts_with(TMP_PREFIX)
}

/// `.deskew/releases/<id>.json`.
pub fn record_key(id: &ReleaseId) -> Key {
    Key::new(format!("{RELEASES_DIR}/{id}.json")).expect("release ids are valid key segments")
}

/// `.deskew/releases/<id>`, the folder of the release's entry files.
pub fn entry_dir(id: &ReleaseId) -> Key {
    Key::new(format!("{RELEASES_DIR}/{id}")).expect("release ids are valid key segments")
}

/// Where a file of release `id` is stored.
pub fn file_key(id: &ReleaseId, file: &ManifestFile) -> Key {
    match file.class {
        FileClass::Entry => entry_dir(id).join(&file.path),
        FileClass::Immutable | FileClass::Mutable => file.path.clone(),
    }
}

/// The release id a record key names: `.deskew/releases/<id>.json` gives `<id>`.
pub fn record_id(key: &Key) -> Option<&str> {
    let rest = key.as_str().strip_prefix(RELEASES_DIR)?.strip_prefix('/')?;
    let id = rest.strip_suffix(".json")?;
    (!id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_round_trip_and_sort() {
        assert_eq!(lease_epoch(&lease_key(42)), Some(42));
        assert!(lease_key(9) < lease_key(10));
        assert_eq!(lease_epoch(&Key::new(".deskew/lease/12.json").unwrap()), None);
        assert_eq!(lease_epoch(&Key::new(".deskew/gc.lease").unwrap()), None);
    }
}
