//! SIGINT, SIGTERM and SIGHUP stop every command the same way: the first asks the running engine
//! to stop at its next step boundary (a probe writes its reports and stops the deploy command's
//! process group; publish and gc stop between writes and release what they hold), and the command
//! exits with 128 + the signal. A second signal exits at once, unless the engine is in a stretch
//! that must not be cut off (publish writing its mutable files and record: a second signal then
//! waits for those few writes; a third exits at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use deskew_core::cancel::Cancel;

/// The signals a command listens to.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    /// Cancelled at the first signal.
    pub cancel: Cancel,
    which: Arc<AtomicI32>,
    count: Arc<AtomicUsize>,
}

impl Signals {
    /// Starts listening (on the current tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let s = Signals::default();
        for (kind, number) in [(SignalKind::interrupt(), 2), (SignalKind::terminate(), 15), (SignalKind::hangup(), 1)] {
            let mut stream = signal(kind)?;
            let me = s.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    let _ = me.which.compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst);
                    match me.count.fetch_add(1, Ordering::SeqCst) {
                        0 => {
                            tracing::info!("signal {number}: stopping at the next step");
                            me.cancel.cancel();
                        }
                        1 if me.cancel.in_critical() => {
                            tracing::warn!(
                                "finishing the last writes (the files the store serves and the record); signal again to exit at once and leave them mixed"
                            );
                        }
                        // The user insists.
                        _ => std::process::exit(128 + number),
                    }
                }
            });
        }
        Ok(s)
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.which.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }
}
