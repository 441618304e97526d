//! deskew's S3-compatible store: AWS S3, MinIO, Garage, SeaweedFS, Cloudflare R2, GCS in S3 mode.
//!
//! The same layout as the filesystem store under `s3://bucket/prefix/`. Objects carry their
//! Content-Type, Cache-Control and sha256 (`x-amz-meta-sha256`; multipart ETags are not content
//! hashes). Large bodies go up in multipart uploads. Retries with backoff cover throttling
//! (503 SlowDown), 5xx, timeouts and dropped connections, bounded.
//!
//! Servers differ in what they honour. Create-only writes (`If-None-Match: *`) are probed per
//! store, never assumed: a server that silently overwrites is detected, and the GC lease is then
//! refused rather than faked (see ARCHITECTURE.md).

mod config;
mod errors;
mod store;

pub use config::S3Options;
pub use store::S3Store;
