//! deskew's model of a deployment: the content-addressed manifest of a build, the store a build
//! is published to, release records, the retention policy and the plan of what GC may delete.
//!
//! Architecture invariant: nothing in this crate opens a network connection. Backends that talk
//! to the network (S3) implement [`store::Store`] in their own crates; the publish, GC and verify
//! engines here only ever see that trait.

pub mod cancel;
pub mod catalog;
pub mod classify;
pub mod digest;
pub mod faults;
pub mod gc;
pub mod gc_plan;
pub mod headers;
pub mod heartbeat;
pub mod host;
pub mod id;
pub mod intern;
pub mod key;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod marker;
pub mod mime;
pub mod progress;
pub mod publish;
mod record_stream;
pub mod release;
pub mod retention;
pub mod schema;
pub mod serving;
pub mod store;
pub mod time;
pub mod verify;

pub use key::Key;
pub use manifest::{FileClass, Manifest, ManifestFile};
pub use release::{ReleaseId, ReleaseRecord, ReleaseState};
pub use store::{Store, StoreError};

/// The tool name and version written into every file deskew produces.
pub fn tool_version() -> String {
    format!("deskew {}", env!("CARGO_PKG_VERSION"))
}

/// An error and its sources joined by `: `, skipping a source whose text an earlier part already
/// holds (libraries often repeat their cause in their own message). For one-line messages in
/// reports and logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
