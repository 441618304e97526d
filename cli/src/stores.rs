//! Opening a store from its URL.

use anyhow::{Context, Result, bail};
use deskew_core::Store;
use deskew_core::store::fs::FsStore;
use deskew_core::store::url::StoreUrl;

/// Whether a missing store may be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Publish: create the directory.
    Yes,
    /// Everything else: a missing store is an error (a typo must not look like an empty store).
    No,
}

/// Opens the store at `url`.
pub fn open(url: &str, create: Create) -> Result<Box<dyn Store>> {
    let parsed = StoreUrl::parse(url)?;
    match parsed {
        StoreUrl::File(path) => {
            let store = FsStore::open(&path, create == Create::Yes).with_context(|| format!("failed to open store `{url}`"))?;
            Ok(Box::new(store))
        }
        StoreUrl::S3 { .. } => bail!("store `{url}`: S3 stores are not available in this build of deskew yet"),
    }
}
