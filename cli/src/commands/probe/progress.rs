//! What a probe shows while it runs. On a terminal: a spinner with the counts. Anywhere else (a
//! CI log): a status line every few seconds and every new kind of failure the moment it first
//! happens, one line each, so the log tells the story of the rollout. `--quiet` shows none of it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskew_probe::LoadSample;
use deskew_probe::run::OnSample;
use indicatif::ProgressBar;

use crate::printer::Printer;

/// How often a status line is printed when not on a terminal.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counts {
    loads: usize,
    failed: usize,
    seen: HashSet<(String, String)>,
}

/// Progress of one run.
pub struct Watch {
    counts: Arc<Mutex<Counts>>,
    bar: ProgressBar,
    lines: bool,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Starts showing progress.
    pub fn start(printer: &Printer) -> Watch {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let bar = printer.spinner("Probing");
        let lines = printer.progress_lines();
        let ticker = lines.then(|| {
            let counts = counts.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(STATUS_EVERY).await;
                    let c = counts.lock().expect("counts lock");
                    let secs = started.elapsed().as_secs_f64();
                    anstream::eprintln!("probe: {secs:.0}s, {} loads, {} failed, {:.1} loads/s", c.loads, c.failed, c.loads as f64 / secs.max(0.001));
                }
            })
        });
        Watch { counts, bar, lines, ticker }
    }

    /// The callback the probe calls with every load.
    pub fn on_sample(&self) -> OnSample {
        let (counts, bar, lines) = (self.counts.clone(), self.bar.clone(), self.lines);
        Box::new(move |s: &LoadSample, loads, failed| {
            let mut c = counts.lock().expect("counts lock");
            c.loads = loads;
            c.failed = failed;
            if loads % 5 == 0 || !s.ok() {
                bar.set_message(format!("{loads} loads, {failed} failed"));
            }
            for f in &s.failures {
                let kind = serde_json::to_value(&f.cause).ok().and_then(|v| v["kind"].as_str().map(str::to_string)).unwrap_or_default();
                if c.seen.insert((f.url.clone(), kind)) && lines {
                    anstream::eprintln!("probe: first failure at {:.1}s: {} {}", f.at.as_secs_f64(), f.cause, f.url);
                }
            }
        })
    }

    /// Stops showing progress.
    pub fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
