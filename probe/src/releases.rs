//! What the store's release records tell the probe: which release a page came from (by the
//! sha256 of its entry file), every asset that release's pages may ask for (lazy chunks the page
//! does not name included), and whom a missing asset belongs to. Read-only.

use std::collections::{HashMap, HashSet};

use deskew_core::catalog::Catalog;
use deskew_core::{FileClass, ReleaseId, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Whom a path belongs to, among the releases the store holds or held while probing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Owner {
    /// A release whose record is in the store now.
    Kept {
        /// The releases.
        releases: Vec<ReleaseId>,
    },
    /// Only releases whose records were deleted while probing.
    Dropped {
        /// The releases.
        releases: Vec<ReleaseId>,
    },
    /// No release the probe saw.
    None,
}

/// Releases by entry sha256 and by asset path.
#[derive(Debug, Default, Clone)]
pub struct ReleaseIndex {
    by_entry: HashMap<String, ReleaseId>,
    assets: HashMap<ReleaseId, Vec<String>>,
    owners: HashMap<String, HashSet<ReleaseId>>,
    current: HashSet<ReleaseId>,
}

impl ReleaseIndex {
    /// Reads the records of `store` (unreadable ones are skipped: this only informs a report).
    pub async fn load(store: &dyn Store) -> Result<ReleaseIndex, StoreError> {
        let mut idx = ReleaseIndex::default();
        idx.refresh(store).await?;
        Ok(idx)
    }

    /// Re-reads the records: new releases are added, vanished ones become dropped.
    pub async fn refresh(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        let catalog = Catalog::load(store).await?;
        self.current.clear();
        for r in &catalog.records {
            self.current.insert(r.release.clone());
            if self.assets.contains_key(&r.release) {
                continue;
            }
            let mut paths = Vec::new();
            for f in &r.manifest.files {
                match f.class {
                    FileClass::Entry => {
                        self.by_entry.insert(f.sha256.to_string(), r.release.clone());
                    }
                    FileClass::Immutable | FileClass::Mutable => {
                        paths.push(f.path.to_string());
                        self.owners.entry(f.path.to_string()).or_default().insert(r.release.clone());
                    }
                }
            }
            self.assets.insert(r.release.clone(), paths);
        }
        Ok(())
    }

    /// The release whose entry file has this sha256.
    pub fn release_of_page(&self, sha256: &str) -> Option<&ReleaseId> {
        self.by_entry.get(sha256)
    }

    /// Asset paths (relative to the site root) of `release`.
    pub fn assets_of(&self, release: &ReleaseId) -> &[String] {
        self.assets.get(release).map_or(&[], Vec::as_slice)
    }

    /// Whom the asset at `path` (relative to the site root) belongs to.
    pub fn owner(&self, path: &str) -> Owner {
        let Some(ids) = self.owners.get(path) else { return Owner::None };
        let mut kept: Vec<ReleaseId> = ids.iter().filter(|i| self.current.contains(*i)).cloned().collect();
        if !kept.is_empty() {
            kept.sort();
            return Owner::Kept { releases: kept };
        }
        let mut dropped: Vec<ReleaseId> = ids.iter().cloned().collect();
        dropped.sort();
        Owner::Dropped { releases: dropped }
    }
}
