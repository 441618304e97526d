//! Where things live in a store. The same for every backend:
//!
//! ```text
//! <root>/assets/main-BcD3fG7h.js                 immutable and mutable files at their own path
//! <root>/favicon.ico
//! <root>/.deskew/releases/<id>.json              release records
//! <root>/.deskew/releases/<id>/index.html        each release's entry files, never at their public path
//! <root>/.deskew/gc.lease                        held by a running gc
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
/// The GC lease.
pub const LEASE: &str = ".deskew/gc.lease";

/// `.deskew/releases`.
pub fn releases_dir() -> Key {
    Key::new(RELEASES_DIR).expect("constant key")
}

/// `.deskew/gc.lease`.
pub fn lease_key() -> Key {
    Key::new(LEASE).expect("constant key")
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
