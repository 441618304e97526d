//! What the engines tell their caller while they work: progress for a bar or a status line, and
//! waits, which a user must see (a publish blocked behind a gc must say so, not hang silently).
//! Warnings are not here: engines return them in their reports and the printer prints them once.

use crate::key::Key;
use crate::lease::LeaseError;

/// Receives progress. Every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// Uploading starts: this many files and bytes are to go.
    fn start(&self, _files: u64, _bytes: u64) {}
    /// A file was stored.
    fn stored(&self, _key: &Key, _bytes: u64) {}
    /// Objects were deleted.
    fn deleted(&self, _objects: u64) {}
    /// The engine waits for another actor's lease (`why` is [`LeaseError::Held`]); told again
    /// each time the holder changes.
    fn waiting(&self, _why: &LeaseError) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}
