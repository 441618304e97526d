//! Test support shared by deskew's test binaries: the committed fixture builds, synthetic builds,
//! store wrappers that count, fail or delay operations, and [`conformance`], the one suite of
//! store tests that every backend must pass.

pub mod conformance;
pub mod fixtures;
pub mod wrappers;

pub use fixtures::{fixture_dist, synthetic_build};
