//! Traffic models: a closed one (N loads in flight, each starting when the previous ends) or an
//! open one (loads started at a fixed rate, whatever their latency, like k6's
//! constant-arrival-rate). Stopping lets loads in flight finish, so every request the servers
//! saw is in the report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::loader::PageLoader;
use crate::sample::LoadSample;

/// The traffic model.
#[derive(Clone, Debug)]
pub enum Traffic {
    /// `concurrency` loads in flight, each starting when the previous one ends.
    Closed {
        /// Loads in flight.
        concurrency: usize,
    },
    /// `rate` loads started per second, at most `max_in_flight` at once.
    Open {
        /// Loads per second.
        rate: f64,
        /// Cap on loads in flight; starts beyond it are counted as dropped.
        max_in_flight: usize,
    },
}

/// Makes loads with `loader` until `stop` is set; every finished load goes to `record`. Returns
/// the starts the open model skipped because `max_in_flight` loads were running.
pub async fn drive(
    model: Traffic,
    loader: Arc<dyn PageLoader>,
    stop: Arc<AtomicBool>,
    start: Instant,
    record: impl Fn(LoadSample) + Clone + Send + Sync + 'static,
) -> usize {
    match model {
        Traffic::Closed { concurrency } => {
            let workers: Vec<_> = (0..concurrency.max(1))
                .map(|_| {
                    let (loader, stop, record) = (loader.clone(), stop.clone(), record.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::SeqCst) {
                            record(loader.load(start.elapsed()).await);
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
            0
        }
        Traffic::Open { rate, max_in_flight } => open(rate, max_in_flight, loader, stop, start, record).await,
    }
}

async fn open(
    rate: f64,
    max_in_flight: usize,
    loader: Arc<dyn PageLoader>,
    stop: Arc<AtomicBool>,
    start: Instant,
    record: impl Fn(LoadSample) + Clone + Send + Sync + 'static,
) -> usize {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut dropped = 0;
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if in_flight.load(Ordering::SeqCst) >= max_in_flight {
            dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::SeqCst);
        let (loader, record, in_flight) = (loader.clone(), record.clone(), in_flight.clone());
        tasks.spawn(async move {
            record(loader.load(start.elapsed()).await);
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    dropped
}
