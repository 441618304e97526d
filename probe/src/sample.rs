//! What one page load produced, whichever way it was made (HTTP or a browser): the sample every
//! loader returns, the failures in it and their causes. Failures are data, never errors.

use std::collections::BTreeMap;
use std::time::Duration;

use deskew_core::ReleaseId;
use serde::{Deserialize, Serialize};

use crate::releases::Owner;

/// Why one request of a load failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Cause {
    /// The server answered with an error status.
    Status {
        /// The status code.
        status: u16,
    },
    /// No answer: connection refused or reset, DNS, TLS.
    Network {
        /// What the client said.
        message: String,
    },
    /// No complete answer in time.
    Timeout,
    /// The body ended before its announced length.
    Truncated {
        /// What the client said.
        message: String,
    },
    /// The page is not HTML.
    NotHtml {
        /// Its content type.
        content_type: String,
    },
    /// Redirects went round in a loop or too deep.
    Redirects {
        /// What the client said.
        message: String,
    },
    /// An asset answered with HTML: a server's SPA fallback (`try_files $uri /index.html`)
    /// covering for a missing file. Browsers refuse it (a module script must be JavaScript).
    HtmlFallback {
        /// The content type received.
        content_type: String,
    },
    /// Browser mode: an uncaught exception.
    Exception {
        /// Its message.
        message: String,
    },
    /// Browser mode: an error written to the console (by the page or by the browser).
    Console {
        /// Its text.
        message: String,
    },
    /// Browser mode: the browser crashed during the load (it is restarted).
    BrowserCrash,
    /// A script or stylesheet with a content type browsers refuse for it.
    WrongType {
        /// What was expected (`javascript`, `text/css`).
        expected: String,
        /// The content type received.
        content_type: String,
    },
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Status { status } => write!(f, "HTTP {status}"),
            Cause::Network { message } => write!(f, "network error: {message}"),
            Cause::Timeout => write!(f, "timeout"),
            Cause::Truncated { message } => write!(f, "truncated body: {message}"),
            Cause::NotHtml { content_type } => write!(f, "not HTML ({content_type})"),
            Cause::Redirects { message } => write!(f, "redirects: {message}"),
            Cause::HtmlFallback { content_type } => write!(f, "HTML instead of the asset ({content_type}): a fallback answered for a missing file"),
            Cause::Exception { message } => write!(f, "uncaught exception: {message}"),
            Cause::Console { message } => write!(f, "console error: {message}"),
            Cause::BrowserCrash => write!(f, "the browser crashed"),
            Cause::WrongType { expected, content_type } => write!(f, "wrong content type {content_type} (expected {expected})"),
        }
    }
}

/// One failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The URL.
    pub url: String,
    /// Why.
    pub cause: Cause,
    /// With a store: whom the missing asset belongs to, when it failed.
    pub owner: Option<Owner>,
    /// When the request failed (its answer, or the error, arrived), since the probe started:
    /// the time to compare with a server's access log.
    #[serde(skip)]
    pub at: Duration,
}

/// The outcome of one load.
#[derive(Clone, Debug, Default)]
pub struct LoadSample {
    /// When it started, since the probe started.
    pub started: Duration,
    /// How long it took.
    pub duration: Duration,
    /// Requests made (page included).
    pub requests: usize,
    /// Failed requests; empty for a successful load.
    pub failures: Vec<Failure>,
    /// sha256 of the page body, to match it to a release.
    pub page_sha256: Option<String>,
    /// With a store: the release the page came from.
    pub release: Option<ReleaseId>,
    /// Requests retried once because the connection closed before any answer (a stale
    /// keep-alive connection; browsers retry these too).
    pub retried: usize,
    /// Resources the page needs on origins that are not checked (`--allow-origin` adds them):
    /// origin and how many.
    pub skipped: BTreeMap<String, usize>,
}

impl LoadSample {
    /// Whether every request succeeded.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// When the load first failed (its first failed request), or when it started.
    pub fn failed_at(&self) -> Duration {
        self.failures.iter().map(|f| f.at).min().unwrap_or(self.started)
    }
}
