//! The deployment downtime test: loads a page and every resource it needs, again and again
//! while a deploy runs, and reports every failed load with its reason.
//!
//! A load fetches the page as a new browser tab would (its own connections, at most six at once
//! per origin), then everything the page references, then what stylesheets and JavaScript modules
//! reference in turn (lazy route chunks behind dynamic `import()` included). A load fails when any
//! of those answers with a status >= 400, a network error, a timeout or a truncated body.
//! Failures are data in the report, never errors of the run.
//!
//! Architecture invariant: the probe never writes to the store. With a store it only reads
//! release records, to tell which release a page came from and whom a missing asset belonged to.

pub mod browser;
pub mod deploy;
pub mod extract;
pub mod histogram;
pub mod load;
pub mod loader;
pub mod merge;
pub mod releases;
pub mod report;
pub mod run;
pub mod sample;
pub mod tls;
pub mod traffic;

pub use deploy::Until;
pub use load::{AllowOrigins, HttpLoader, LoaderOptions};
pub use report::Report;
pub use run::{Mode, ProbeOptions, run};
pub use sample::{Cause, Failure, LoadSample};
pub use traffic::Traffic;

/// Why a probe could not run (as opposed to loads that failed, which are results).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not usable.
    #[error("invalid URL `{url}`: {why}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The first load could not reach the page at all.
    #[error("cannot load {url}: {why}")]
    Preflight {
        /// The URL.
        url: String,
        /// Why.
        why: String,
        /// Whether the network failed (no answer, a timeout), rather than the page answering
        /// with something that is not a page (a status, not HTML): I/O, not a wrong URL.
        network: bool,
    },
    /// The HTTP client could not be built.
    #[error("failed to set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The deploy command does not exist (checked before any traffic).
    #[error("the deploy command `{command}` cannot be run: {hint}")]
    CommandNotFound {
        /// The program.
        command: String,
        /// What to do about it.
        hint: String,
    },
    /// The deploy command could not be started.
    #[error("failed to start the deploy command `{command}`")]
    Command {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The browser could not be found, started or reached.
    #[error("browser mode: {0}")]
    Browser(String),
    /// Reading the store's releases failed.
    #[error("failed to read the releases of the store")]
    Store(#[from] deskew_core::StoreError),
}
