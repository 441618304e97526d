//! Browser mode: page loads in a real Chromium, driven over the DevTools protocol.
//!
//! A small protocol client of our own (`cdp.rs`, on tokio-tungstenite) speaks the dozen commands
//! and events deskew needs, instead of a generated binding of the whole protocol: it builds in
//! seconds and has nothing to keep in step with Chromium's schema. `launch.rs` starts the browser
//! (its own process group, a fresh profile directory) and always stops it, on drop, Ctrl-C and
//! panic. `tab.rs` keeps a tab clean across loads; `page.rs` is one load in a tab; `run.rs` the loader a
//! probe run uses (one shared browser, restarted when it dies, a pool of tabs, its memory sampled).

pub mod cdp;
pub mod launch;
pub mod page;
pub mod run;
pub mod tab;

pub use launch::{Browser, BrowserOptions};
