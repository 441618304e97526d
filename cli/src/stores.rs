//! Opening a store from its URL.

use anyhow::Result;
use deskew_s3::{S3Options, S3Store};

use crate::args::StoreArgs;
use deskew_core::Store;
use deskew_core::store::fs::FsStore;
use deskew_core::store::url::StoreUrl;

/// What a command will do with the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only reads (releases, verify): no probe writes.
    Read,
    /// Writes and deletes (publish, gc).
    Write,
}

/// Whether a missing store may be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Publish: create the directory.
    Yes,
    /// Everything else: a missing store is an error (a typo must not look like an empty store).
    No,
}

/// Opens the store named by `args`. (A store opened for writing that does not honour
/// create-only writes is reported by the engines: publish warns, gc refuses to take the lease.)
pub async fn open(args: &StoreArgs, create: Create, access: Access) -> Result<Box<dyn Store>> {
    let parsed = StoreUrl::parse(&args.store)?;
    match parsed {
        StoreUrl::File(path) => {
            // The error names the store and says what is wrong: one line, no extra context.
            let store = FsStore::open(&path, create == Create::Yes)?;
            Ok(Box::new(store))
        }
        StoreUrl::S3 { bucket, prefix } => {
            let opts = S3Options {
                endpoint_url: args.s3.endpoint_url.clone(),
                region: args.s3.region.clone(),
                path_style: if args.s3.path_style {
                    Some(true)
                } else if args.s3.virtual_hosted {
                    Some(false)
                } else {
                    None
                },
                ca_bundle: args.s3.ca_bundle.clone(),
                max_attempts: args.s3.max_attempts,
                probe_conditional_writes: access == Access::Write,
                ..S3Options::default()
            };
            let store = S3Store::connect(&bucket, &prefix, &opts).await?;
            Ok(Box::new(store))
        }
    }
}
