//! The store marker, `.deskew/store.json`: what makes a directory or a bucket prefix a deskew
//! store, and the settings every host working on it must share.
//!
//! gc deletes every file no release references, so pointed at the wrong place (`/srv` instead of
//! `/srv/assets`, a mistyped `DESKEW_STORE`) it would wipe it. Every command that deletes or
//! judges a store therefore requires the marker first. `publish` writes it when it creates a
//! store, which it does only in an empty place; `deskew init` makes an existing, non-empty place
//! a store on purpose.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::layout;
use crate::store::{Body, PutMode, PutOptions, Store, StoreError};
use crate::time::Timestamp;

/// The marker's format version.
pub const MARKER_VERSION: u32 = 1;

/// The default allowance for clock differences between the hosts that work on one store.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(15);

/// The largest clock-skew allowance a store may set: beyond it, a dead holder's lease would
/// block gc and publishes for longer than any deploy waits, and times stop being meaningful.
pub const MAX_CLOCK_SKEW_LIMIT: Duration = Duration::from_secs(3600);

/// What `.deskew/store.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMarker {
    /// Format version, [`MARKER_VERSION`].
    pub version: u32,
    /// When the store was made.
    pub created: Timestamp,
    /// The deskew that made it.
    pub tool: String,
    /// How far apart the clocks of hosts working on this store may be, in milliseconds. Leases
    /// and publish heartbeats count as lapsed only this long after their expiry.
    pub max_clock_skew_ms: u64,
}

impl StoreMarker {
    /// A new marker.
    pub fn new(now: Timestamp, max_clock_skew: Duration) -> StoreMarker {
        StoreMarker { version: MARKER_VERSION, created: now, tool: crate::tool_version(), max_clock_skew_ms: max_clock_skew.as_millis() as u64 }
    }

    /// The clock-skew allowance.
    pub fn max_clock_skew(&self) -> Duration {
        Duration::from_millis(self.max_clock_skew_ms)
    }
}

/// Why a store cannot be used as one.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    /// No marker: this is not a deskew store.
    #[error("{store} is not a deskew store (no `.deskew/store.json`){}", if *.empty { "; it is empty: publish a release to it first" } else { ": check the path; to make this non-empty place a store on purpose, run `deskew init --store` on it" })]
    NotAStore {
        /// The store.
        store: String,
        /// Whether the place is empty.
        empty: bool,
    },
    /// The marker is not readable.
    #[error("the store marker `.deskew/store.json` in {store} is corrupt or from a newer deskew")]
    Corrupt {
        /// The store.
        store: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn encode(marker: &StoreMarker) -> Body {
    let mut s = serde_json::to_string_pretty(marker).expect("marker serialises");
    s.push('\n');
    Body::Bytes(Bytes::from(s))
}

/// Reads the marker, if there is one.
pub async fn read(store: &dyn Store) -> Result<Option<StoreMarker>, MarkerError> {
    match store.get(&layout::marker_key()).await {
        Ok(bytes) => {
            let m: StoreMarker = serde_json::from_slice(&bytes).map_err(|source| MarkerError::Corrupt { store: store.url().into(), source })?;
            if m.version > MARKER_VERSION {
                let source = serde::de::Error::custom(format!("version {} is newer than {MARKER_VERSION}", m.version));
                return Err(MarkerError::Corrupt { store: store.url().into(), source });
            }
            if m.max_clock_skew() > MAX_CLOCK_SKEW_LIMIT {
                let source = serde::de::Error::custom(format!(
                    "max_clock_skew_ms {} is over the limit of {} (1h)",
                    m.max_clock_skew_ms,
                    MAX_CLOCK_SKEW_LIMIT.as_millis()
                ));
                return Err(MarkerError::Corrupt { store: store.url().into(), source });
            }
            Ok(Some(m))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The marker of a store that must already be one (gc, verify, releases).
pub async fn require(store: &dyn Store) -> Result<StoreMarker, MarkerError> {
    match read(store).await? {
        Some(m) => Ok(m),
        None => Err(MarkerError::NotAStore { store: store.url().into(), empty: store.is_empty().await? }),
    }
}

/// The marker for a publish: the existing one, or a new one if the place is empty (the publish
/// creates the store). A non-empty place without a marker is refused.
pub async fn for_publish(store: &dyn Store, host: &dyn Host) -> Result<StoreMarker, MarkerError> {
    if let Some(m) = read(store).await? {
        return Ok(m);
    }
    if !store.is_empty().await? {
        // A concurrent publish may have made the store between our two looks: it writes the
        // marker before anything else, so whatever made the place non-empty is visible now.
        return read(store).await?.ok_or_else(|| MarkerError::NotAStore { store: store.url().into(), empty: false });
    }
    create(store, StoreMarker::new(host.now(), DEFAULT_MAX_CLOCK_SKEW)).await
}

/// Makes `store` a deskew store (`deskew init`), keeping an existing marker.
pub async fn init(store: &dyn Store, host: &dyn Host, max_clock_skew: Duration) -> Result<StoreMarker, MarkerError> {
    if let Some(m) = read(store).await? {
        return Ok(m);
    }
    create(store, StoreMarker::new(host.now(), max_clock_skew)).await
}

/// Sets the clock-skew allowance of an existing store (`deskew init --max-clock-skew` again).
/// Hosts read it when they start a command; change it while none runs.
pub async fn set_max_clock_skew(store: &dyn Store, marker: &StoreMarker, max_clock_skew: Duration) -> Result<StoreMarker, MarkerError> {
    let updated = StoreMarker { max_clock_skew_ms: max_clock_skew.as_millis() as u64, ..marker.clone() };
    let opts = PutOptions { mode: PutMode::Overwrite, content_type: Some("application/json".into()), ..PutOptions::default() };
    store.put(&layout::marker_key(), encode(&updated), &opts).await?;
    Ok(updated)
}

async fn create(store: &dyn Store, marker: StoreMarker) -> Result<StoreMarker, MarkerError> {
    let opts = PutOptions { mode: PutMode::Create, content_type: Some("application/json".into()), ..PutOptions::default() };
    match store.put(&layout::marker_key(), encode(&marker), &opts).await {
        Ok(()) => Ok(marker),
        // Another publish made the store at the same moment: use its marker.
        Err(StoreError::AlreadyExists { .. }) => read(store).await?.ok_or_else(|| MarkerError::NotAStore { store: store.url().into(), empty: false }),
        Err(e) => Err(e.into()),
    }
}
