//! Stopping an engine between writes: a signal handler (or a test) cancels, and the engine
//! notices at its next step boundary, finishes nothing more, and unwinds through its normal
//! cleanup (the lease released, the heartbeat removed). Nothing is cut off in the middle of a
//! write, so the store stays exactly as consistent as after any crash, and usually better: no
//! lease is left to lapse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A shared "stop now" flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    set: AtomicBool,
    notify: tokio::sync::Notify,
    critical: AtomicUsize,
}

/// While alive, the engine is in a stretch that stopping half-way would leave worse than
/// finishing it ([`Cancel::critical`]).
#[derive(Debug)]
pub struct Critical(Cancel);

impl Drop for Critical {
    fn drop(&mut self) {
        self.0.0.critical.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The engine stopped because it was asked to.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted before it finished; the store is consistent and a rerun resumes")]
pub struct Cancelled;

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether stopping was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Waits until stopping is asked for.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Marks a stretch of writes that must not be cut off (publish's mutable files and the
    /// record after them): a signal handler that would exit at once waits while one is alive.
    pub fn critical(&self) -> Critical {
        self.0.critical.fetch_add(1, Ordering::SeqCst);
        Critical(self.clone())
    }

    /// Whether a [`Critical`] stretch is running.
    pub fn in_critical(&self) -> bool {
        self.0.critical.load(Ordering::SeqCst) > 0
    }

    /// `Err(Cancelled)` once stopping was asked for: call before each write.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() { Err(Cancelled) } else { Ok(()) }
    }
}
