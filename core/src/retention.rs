//! Which releases a store keeps.
//!
//! A complete release is kept if it is among the newest `keep`, OR was retired (superseded by
//! the next complete release) less than `keep_for` ago, OR is pinned. Count OR age, as Rails'
//! `assets:clean(count, age)`; age runs from retirement, not creation, because an open tab keeps
//! loading chunks of the release it started on for as long as it stays open, and that release
//! may have been built weeks before it stopped being current. A pending release is kept while it
//! is younger than the grace period (it may still be publishing), and dropped after.
//!
//! The newest complete release is always kept: `keep` must be at least 1.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::time::Timestamp;

/// The retention policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Keep the newest N complete releases (at least 1). `usize::MAX` keeps all.
    pub keep: usize,
    /// Also keep releases retired less than this long ago.
    pub keep_for: Option<Duration>,
    /// Always keep these (the release running after a rollback, say).
    pub pins: Vec<ReleaseId>,
    /// Pending releases and unreferenced files younger than this are left alone.
    pub grace: Duration,
}

/// The default grace period: one hour.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

impl Policy {
    /// A policy that keeps every release.
    pub fn keep_all() -> Policy {
        Policy { keep: usize::MAX, keep_for: None, pins: Vec::new(), grace: DEFAULT_GRACE }
    }
}

/// Why a policy cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// `keep` is 0.
    #[error("--keep must be at least 1: the newest release is the one being served")]
    KeepZero,
    /// A pin names no release in the store. A typo must not let the running release go.
    #[error("pinned release `{0}` is not in the store")]
    UnknownPin(ReleaseId),
}

/// Why a release is kept or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The newest complete release.
    Current,
    /// Among the newest `keep`.
    Newest,
    /// Retired less than `keep_for` ago.
    RecentlyRetired,
    /// Pinned.
    Pinned,
    /// Pending and younger than the grace period.
    Publishing,
    /// Complete, and neither new, young nor pinned.
    Expired,
    /// Pending and older than the grace period: a publish that crashed.
    Abandoned,
}

impl Reason {
    /// Whether this reason keeps the release.
    pub fn keeps(self) -> bool {
        !matches!(self, Reason::Expired | Reason::Abandoned)
    }

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Current => "current",
            Reason::Newest => "newest",
            Reason::RecentlyRetired => "recently-retired",
            Reason::Pinned => "pinned",
            Reason::Publishing => "publishing",
            Reason::Expired => "expired",
            Reason::Abandoned => "abandoned",
        }
    }
}

/// The verdict on one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The release.
    pub release: ReleaseId,
    /// Its state.
    pub state: ReleaseState,
    /// When it was created.
    pub created: Timestamp,
    /// When the next complete release superseded it; `None` for the current one and pending ones.
    pub retired: Option<Timestamp>,
    /// Whether it is kept.
    pub kept: bool,
    /// Why.
    pub reason: Reason,
}

/// Applies `policy` to `records` (newest first, as [`crate::catalog::Catalog`] sorts them).
pub fn decide(records: &[ReleaseRecord], policy: &Policy, now: Timestamp) -> Result<Vec<Decision>, RetentionError> {
    if policy.keep == 0 {
        return Err(RetentionError::KeepZero);
    }
    let ids: HashSet<&ReleaseId> = records.iter().map(|r| &r.release).collect();
    if let Some(pin) = policy.pins.iter().find(|p| !ids.contains(p)) {
        return Err(RetentionError::UnknownPin(pin.clone()));
    }
    let mut out = Vec::with_capacity(records.len());
    let mut complete_seen = 0usize;
    // Completion time of the nearest newer complete release: when the next one went out.
    let mut newer_completed: Option<Timestamp> = None;
    for r in records {
        let pinned = policy.pins.contains(&r.release);
        let (retired, reason) = match r.state {
            ReleaseState::Pending => {
                let young = r.created.age_at(now) < policy.grace;
                (None, if pinned { Reason::Pinned } else if young { Reason::Publishing } else { Reason::Abandoned })
            }
            ReleaseState::Complete => {
                complete_seen += 1;
                let retired = newer_completed;
                newer_completed = Some(r.completed.unwrap_or(r.created));
                let recently = match (retired, policy.keep_for) {
                    (Some(t), Some(d)) => t.age_at(now) < d,
                    _ => false,
                };
                let reason = if complete_seen == 1 {
                    Reason::Current
                } else if complete_seen <= policy.keep {
                    Reason::Newest
                } else if pinned {
                    Reason::Pinned
                } else if recently {
                    Reason::RecentlyRetired
                } else {
                    Reason::Expired
                };
                (retired, reason)
            }
        };
        out.push(Decision {
            release: r.release.clone(),
            state: r.state,
            created: r.created,
            retired,
            kept: reason.keeps(),
            reason,
        });
    }
    Ok(out)
}
