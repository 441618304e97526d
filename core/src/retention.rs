//! Which releases a store keeps.
//!
//! Complete releases are ranked by when they **completed**, newest first: a publish that was
//! resumed days after its first attempt is the newest release the moment it completes, whatever
//! its creation time. A complete release is kept if it is among the newest `keep`, OR was retired
//! (superseded by the next complete release) less than `keep_for` ago, OR is pinned. Count OR
//! age, as Rails' `assets:clean(count, age)`; age runs from retirement, not creation, because an
//! open tab keeps loading chunks of the release it started on for as long as it stays open.
//!
//! At publish time the policy names the release just published ([`Policy::published`]): it is
//! kept, and `keep` counts the releases besides it, so `publish --keep 1` keeps the new release
//! and the one serving traffic until the rollout replaces it.
//!
//! A pending release is kept while its publish is live (a heartbeat that has not lapsed) or for
//! `grace` after its last sign of life, and dropped after. A `dropping` release (a gc began
//! deleting it) is always dropped: it is not whole, so it is never kept, counted or pinned.
//!
//! A release a mutable file serves ([`crate::serving`]: a publish that died among its mutable
//! writes, or completions ranked against the order they landed in) is kept, whatever else.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Serialize;

use crate::release::{ReleaseId, ReleaseRecord, ReleaseState};
use crate::time::Timestamp;

/// The retention policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Keep the newest N complete releases (besides [`Policy::published`], when set).
    pub keep: NonZeroUsize,
    /// Also keep releases retired less than this long ago.
    pub keep_for: Option<Duration>,
    /// Always keep these (the release running after a rollback, say).
    pub pins: Vec<ReleaseId>,
    /// Pending releases and unreferenced files are left alone this long after their last sign
    /// of life.
    pub grace: Duration,
    /// The release the current publish just completed: kept, and not counted in `keep`.
    pub published: Option<ReleaseId>,
}

/// The default grace period: one hour.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

impl Policy {
    /// A policy that keeps every release.
    pub fn keep_all() -> Policy {
        Policy { keep: NonZeroUsize::MAX, keep_for: None, pins: Vec::new(), grace: DEFAULT_GRACE, published: None }
    }

    /// A policy keeping the newest `keep` complete releases, nothing else.
    pub fn keep(keep: NonZeroUsize) -> Policy {
        Policy { keep, ..Policy::keep_all() }
    }
}

/// Why a policy cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// A pin names no release in the store. A typo must not let the running release go.
    #[error("pinned release `{0}` is not in the store")]
    UnknownPin(ReleaseId),
    /// A pin names a release a gc was dropping.
    #[error("pinned release `{0}` is not whole: a gc began dropping it and was interrupted; publish it again (same --release) to restore it")]
    PinnedDropping(ReleaseId),
}

/// Why a release is kept or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Just published by this publish.
    Published,
    /// The newest complete release (the one serving traffic).
    Current,
    /// Among the newest `keep`.
    Newest,
    /// Retired less than `keep_for` ago.
    RecentlyRetired,
    /// Pinned.
    Pinned,
    /// Being published: pending, and its publish is live or was seen within the grace
    /// period; or complete and being published again.
    Publishing,
    /// Complete, and neither new, young nor pinned.
    Expired,
    /// Pending, and its publish has shown no sign of life for longer than the grace period.
    Abandoned,
    /// A mutable file of the store holds its content ([`crate::serving`]): the page browsers
    /// load names its chunks.
    Serving,
    /// A gc began dropping it (and may have died): not whole, dropped.
    Dropping,
}

impl Reason {
    /// Whether this reason keeps the release.
    pub fn keeps(self) -> bool {
        !matches!(self, Reason::Expired | Reason::Abandoned | Reason::Dropping)
    }

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Published => "published",
            Reason::Current => "current",
            Reason::Newest => "newest",
            Reason::RecentlyRetired => "recently-retired",
            Reason::Pinned => "pinned",
            Reason::Publishing => "publishing",
            Reason::Expired => "expired",
            Reason::Abandoned => "abandoned",
            Reason::Serving => "serving",
            Reason::Dropping => "dropping",
        }
    }
}

/// The verdict on one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Decision {
    /// The release.
    pub release: ReleaseId,
    /// Its state.
    pub state: ReleaseState,
    /// When it was created.
    pub created: Timestamp,
    /// When it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    /// When the next complete release superseded it; `None` for the newest and for releases
    /// that are not complete.
    pub retired: Option<Timestamp>,
    /// Whether it is kept.
    pub kept: bool,
    /// Why.
    pub reason: Reason,
}

/// Which releases have a publish at work ([`crate::heartbeat::liveness`]).
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// Releases whose publish was live when its heartbeat was read.
    pub live: HashSet<ReleaseId>,
    /// Releases whose publish was live, or lapsed less than the grace period before.
    pub recent: HashSet<ReleaseId>,
    /// Releases a mutable file of the store serves ([`crate::serving`]).
    pub serving: HashSet<ReleaseId>,
}

/// Applies `policy` to `records` at `now`. Decisions come out in the records' order.
pub fn decide(records: &[ReleaseRecord], liveness: &Liveness, policy: &Policy, now: Timestamp) -> Result<Vec<Decision>, RetentionError> {
    check_pins(records, policy)?;
    let retired = retirement(records);
    let mut ranked: Vec<&ReleaseRecord> =
        records.iter().filter(|r| r.state == ReleaseState::Complete && Some(&r.release) != policy.published.as_ref()).collect();
    ranked.sort_by(|a, b| newest_first(a, b));
    let rank: HashMap<&ReleaseId, usize> = ranked.iter().enumerate().map(|(i, r)| (&r.release, i + 1)).collect();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let pinned = policy.pins.contains(&r.release);
        let reason = match r.state {
            ReleaseState::Dropping => Reason::Dropping,
            ReleaseState::Pending => {
                if pinned {
                    Reason::Pinned
                } else if liveness.recent.contains(&r.release) || r.created.age_at(now) < policy.grace {
                    Reason::Publishing
                } else if liveness.serving.contains(&r.release) {
                    Reason::Serving
                } else {
                    Reason::Abandoned
                }
            }
            ReleaseState::Complete if Some(&r.release) == policy.published.as_ref() => Reason::Published,
            ReleaseState::Complete => {
                let n = rank[&r.release];
                let recently = match (retired.get(&r.release), policy.keep_for) {
                    (Some(t), Some(d)) => t.age_at(now) < d,
                    _ => false,
                };
                if n == 1 {
                    Reason::Current
                } else if n <= policy.keep.get() {
                    Reason::Newest
                } else if pinned {
                    Reason::Pinned
                } else if recently {
                    Reason::RecentlyRetired
                } else if liveness.live.contains(&r.release) {
                    Reason::Publishing // published again right now (a rollback)
                } else if liveness.serving.contains(&r.release) {
                    Reason::Serving
                } else {
                    Reason::Expired
                }
            }
        };
        out.push(Decision {
            release: r.release.clone(),
            state: r.state,
            created: r.created,
            completed: r.completed,
            retired: retired.get(&r.release).copied(),
            kept: reason.keeps(),
            reason,
        });
    }
    Ok(out)
}

/// The newest complete release, the one serving traffic.
pub fn newest_complete(records: &[ReleaseRecord]) -> Option<&ReleaseRecord> {
    records.iter().filter(|r| r.state == ReleaseState::Complete).min_by(|a, b| newest_first(a, b))
}

/// Newest completion first; ties broken by id so every host ranks alike.
pub fn newest_first(a: &ReleaseRecord, b: &ReleaseRecord) -> std::cmp::Ordering {
    b.completed_or_created().cmp(&a.completed_or_created()).then_with(|| b.release.cmp(&a.release))
}

/// For each complete release but the newest: when the next complete release completed.
fn retirement(records: &[ReleaseRecord]) -> HashMap<ReleaseId, Timestamp> {
    let mut complete: Vec<&ReleaseRecord> = records.iter().filter(|r| r.state == ReleaseState::Complete).collect();
    complete.sort_by(|a, b| newest_first(a, b));
    complete.windows(2).map(|w| (w[1].release.clone(), w[0].completed_or_created())).collect()
}

fn check_pins(records: &[ReleaseRecord], policy: &Policy) -> Result<(), RetentionError> {
    let ids: HashSet<&ReleaseId> = records.iter().map(|r| &r.release).chain(policy.published.as_ref()).collect();
    if let Some(pin) = policy.pins.iter().find(|p| !ids.contains(p)) {
        return Err(RetentionError::UnknownPin(pin.clone()));
    }
    if let Some(r) = records.iter().find(|r| r.state == ReleaseState::Dropping && policy.pins.contains(&r.release)) {
        return Err(RetentionError::PinnedDropping(r.release.clone()));
    }
    Ok(())
}
