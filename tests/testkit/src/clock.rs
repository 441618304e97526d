//! Hosts for tests that travel in time: the system clock shifted by a fixed offset, so a test can
//! publish "three days ago" and gc "in two hours" against a real store, with leases and
//! heartbeats written on the same shifted clocks.

use std::time::Duration;

use deskew_core::host::{BoxFuture, Host, HostRef, SystemHost};
use deskew_core::time::Timestamp;

/// The system clock, `offset` seconds ahead (or behind, if negative).
#[derive(Debug, Clone, Copy)]
pub struct ShiftedHost(pub i64);

impl Host for ShiftedHost {
    fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        if self.0 >= 0 { now.plus(Duration::from_secs(self.0 as u64)) } else { now.minus(Duration::from_secs(self.0.unsigned_abs())) }
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        SystemHost.sleep(d)
    }
    fn unique(&self) -> String {
        SystemHost.unique()
    }
    fn holder(&self) -> String {
        SystemHost.holder()
    }
    fn handle(&self) -> HostRef {
        std::sync::Arc::new(*self)
    }
    fn process(&self) -> Option<String> {
        SystemHost.process()
    }
    fn is_dead(&self, process: &str) -> bool {
        SystemHost.is_dead(process)
    }
}

/// The host `offset_secs` seconds from now.
pub fn at(offset_secs: i64) -> ShiftedHost {
    ShiftedHost(offset_secs)
}

/// The real clock.
pub fn now() -> ShiftedHost {
    ShiftedHost(0)
}
