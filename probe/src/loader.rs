//! What a probe needs from a way of loading pages: one load at a time, made by plain HTTP
//! ([`crate::load::HttpLoader`]) or by a real browser ([`crate::browser::run::BrowserLoader`]).

use std::time::Duration;

use futures::future::BoxFuture;

use crate::sample::LoadSample;

/// Makes page loads.
pub trait PageLoader: Send + Sync {
    /// One load, started at `at` since the probe started.
    fn load(&self, at: Duration) -> BoxFuture<'_, LoadSample>;
}

impl PageLoader for crate::load::HttpLoader {
    fn load(&self, at: Duration) -> BoxFuture<'_, LoadSample> {
        Box::pin(crate::load::HttpLoader::load(self, at))
    }
}
