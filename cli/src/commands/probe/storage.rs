//! `--storage-state`: Playwright's `storageState` JSON (`context.storageState({ path })`), the
//! cookies and localStorage of a logged-in session, so the probe can load apps behind a login.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// A Playwright storage state.
#[derive(Debug, Deserialize)]
pub struct StorageState {
    /// Cookies, in the shape the DevTools protocol's `Network.setCookies` accepts.
    #[serde(default)]
    pub cookies: Vec<serde_json::Value>,
    /// localStorage per origin.
    #[serde(default)]
    pub origins: Vec<OriginState>,
}

/// One origin's localStorage.
#[derive(Debug, Deserialize)]
pub struct OriginState {
    /// `https://app.example.com`.
    pub origin: String,
    /// Its entries.
    #[serde(default, rename = "localStorage")]
    pub local_storage: Vec<Entry>,
}

/// One localStorage entry.
#[derive(Debug, Deserialize)]
pub struct Entry {
    /// Key.
    pub name: String,
    /// Value.
    pub value: String,
}

/// Reads `path`.
pub fn load(path: &Path) -> Result<StorageState> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read the storage state `{}`", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not a Playwright storage state (cookies and origins)", path.display()))
}

impl StorageState {
    /// `name=value` of the cookies whose domain covers `host`.
    pub fn cookie_pairs_for(&self, host: &str) -> Vec<String> {
        self.cookies
            .iter()
            .filter(|c| {
                let domain = c["domain"].as_str().unwrap_or_default().trim_start_matches('.');
                !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
            })
            .filter_map(|c| Some(format!("{}={}", c["name"].as_str()?, c["value"].as_str()?)))
            .collect()
    }

    /// localStorage entries per origin.
    pub fn local_storage(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.origins.iter().map(|o| (o.origin.clone(), o.local_storage.iter().map(|e| (e.name.clone(), e.value.clone())).collect())).collect()
    }
}
