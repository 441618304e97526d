//! Exit codes, the same for every command, so a pipeline can act on them:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the check ran and failed (probe: SLO missed; verify: missing or corrupt files) |
//! | 2 | usage or configuration error (bad flag, not a store, invalid input) |
//! | 3 | the deploy command the probe wrapped failed |
//! | 4 | store or network I/O failed (unreachable, refused request, busy store) |
//! | 129, 130, 143 | interrupted by SIGHUP, SIGINT or SIGTERM (128 + the signal) |

use deskew_core::StoreError;
use deskew_core::cancel::Cancelled;
use deskew_core::gc::GcError;
use deskew_core::lease::LeaseError;
use deskew_core::marker::MarkerError;
use deskew_core::publish::PublishError;
use deskew_probe::ProbeError;

/// How a command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: the check ran and found a problem.
    CheckFailed,
    /// Exit 3: the deploy command failed.
    DeployFailed,
    /// Exit 128 + signal: stopped by a signal, after cleaning up.
    Interrupted(i32),
}

impl Status {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::CheckFailed => 1,
            Status::DeployFailed => 3,
            Status::Interrupted(sig) => (128 + sig).clamp(0, 255) as u8,
        }
    }
}

/// Usage or configuration.
pub const USAGE: u8 = 2;
/// Store or network I/O.
pub const IO: u8 = 4;

/// The exit code for a failed command: 4 when a store or the network failed, 2 otherwise (the
/// input or the configuration is wrong), 128 + signal when it was interrupted.
pub fn code_for(err: &anyhow::Error, signal: Option<i32>) -> u8 {
    let interrupted = Status::Interrupted(signal.unwrap_or(2)).code();
    for cause in err.chain() {
        let code = if cause.downcast_ref::<Cancelled>().is_some() {
            Some(interrupted)
        } else if let Some(e) = cause.downcast_ref::<PublishError>() {
            Some(publish(e, interrupted))
        } else if let Some(e) = cause.downcast_ref::<GcError>() {
            Some(gc(e, interrupted))
        } else if let Some(e) = cause.downcast_ref::<StoreError>() {
            Some(store(e))
        } else if let Some(e) = cause.downcast_ref::<LeaseError>() {
            Some(lease(e))
        } else if let Some(e) = cause.downcast_ref::<MarkerError>() {
            Some(marker(e))
        } else {
            cause.downcast_ref::<ProbeError>().map(probe)
        };
        if let Some(code) = code {
            return code;
        }
    }
    USAGE
}

fn store(e: &StoreError) -> u8 {
    match e {
        StoreError::Backend { .. } | StoreError::Unreachable { .. } | StoreError::GuardFailed { .. } => IO,
        StoreError::NotFound { .. } | StoreError::AlreadyExists { .. } => IO,
        StoreError::Checksum { .. } | StoreError::NotRegular { .. } | StoreError::Unusable { .. } => USAGE,
    }
}

fn lease(e: &LeaseError) -> u8 {
    match e {
        LeaseError::Held { .. } | LeaseError::Lost { .. } => IO,
        LeaseError::Store(e) => store(e),
        LeaseError::Corrupt { .. } | LeaseError::Unsupported { .. } => USAGE,
    }
}

fn marker(e: &MarkerError) -> u8 {
    match e {
        MarkerError::Store(e) => store(e),
        _ => USAGE,
    }
}

fn publish(e: &PublishError, interrupted: u8) -> u8 {
    match e {
        PublishError::Interrupted(_) => interrupted,
        PublishError::Store(e) => store(e),
        PublishError::Lease(e) => lease(e),
        PublishError::Marker(e) => marker(e),
        _ => USAGE,
    }
}

fn gc(e: &GcError, interrupted: u8) -> u8 {
    match e {
        GcError::Interrupted(_) => interrupted,
        GcError::Store(e) => store(e),
        GcError::Lease(e) => lease(e),
        GcError::Marker(e) => marker(e),
        GcError::Deletes { .. } => IO,
        _ => USAGE,
    }
}

fn probe(e: &ProbeError) -> u8 {
    match e {
        ProbeError::Preflight { network: true, .. } | ProbeError::Store(_) => IO,
        _ => USAGE,
    }
}
