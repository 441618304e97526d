//! Reading every release record of a store.
//!
//! A catalog keeps the records it could read and the problems it met apart, so each caller
//! decides: GC and verify fail closed on any problem, publish warns and carries on (a record it
//! cannot read only costs it dedupe).

use futures::StreamExt;

use crate::key::Key;
use crate::layout;
use crate::release::{RecordError, ReleaseId, ReleaseRecord};
use crate::store::{Store, StoreError};

/// A record that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The record is corrupt, inconsistent or too new.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The record could not be read.
    #[error(transparent)]
    Read(#[from] StoreError),
    /// A file in the records folder whose name is not `<release-id>.json`.
    #[error("release record `{0}` has a name that is not a release id")]
    BadName(Key),
}

/// The records of a store, newest first, and what could not be read.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Readable records, newest first (by completion, or creation for releases that never
    /// completed; then id).
    pub records: Vec<ReleaseRecord>,
    /// Records that could not be used.
    pub problems: Vec<CatalogError>,
    /// Records that were listed but gone when read. Without the lease that is a gc finishing
    /// a release; under it (no other gc can run) something other than deskew deleted them.
    pub vanished: Vec<Key>,
}

impl Catalog {
    /// Reads every record. Fails only if the records folder cannot be listed.
    pub async fn load(store: &dyn Store) -> Result<Catalog, StoreError> {
        let listing = store.list(Some(&layout::releases_dir())).await?.objects;
        let mut problems = Vec::new();
        let mut keys = Vec::new();
        for obj in listing {
            if layout::is_temp(&obj.key) {
                continue; // a directory store's write in progress, or one that died
            }
            let Some(id) = layout::record_id(&obj.key) else { continue };
            if ReleaseId::new(id).is_err() {
                problems.push(CatalogError::BadName(obj.key.clone()));
                continue;
            }
            keys.push(obj.key);
        }
        let results: Vec<(Key, Result<ReleaseRecord, CatalogError>)> = futures::stream::iter(keys)
            .map(|key| async move {
                let record = match store.get(&key).await {
                    Ok(bytes) => ReleaseRecord::parse(&key, &bytes).map_err(CatalogError::from),
                    Err(e) => Err(e.into()),
                };
                (key, record)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut records = Vec::new();
        let mut vanished = Vec::new();
        for (key, r) in results {
            match r {
                Ok(rec) => records.push(rec),
                // Deleted between the listing and the read: gone, not broken.
                Err(CatalogError::Read(e)) if e.is_not_found() => vanished.push(key),
                Err(e) => problems.push(e),
            }
        }
        records.sort_by(crate::retention::newest_first);
        vanished.sort();
        Ok(Catalog { records, problems, vanished })
    }

    /// The records, or the first problem if there is any (fail closed).
    pub fn into_clean(mut self) -> Result<Vec<ReleaseRecord>, CatalogError> {
        if self.problems.is_empty() { Ok(self.records) } else { Err(self.problems.swap_remove(0)) }
    }

    /// The record of release `id`.
    pub fn get(&self, id: &ReleaseId) -> Option<&ReleaseRecord> {
        self.records.iter().find(|r| &r.release == id)
    }
}
