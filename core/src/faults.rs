//! Deliberate weaknesses in the store protocol, each undoing one of its safety steps. All are
//! off by default and nothing in deskew's command line can turn one on: they exist so the
//! deterministic simulation (`tests/sim`) can prove, in every CI run, that it catches the bug
//! each step prevents ("revert the fix and watch the test fail", automated).

/// Which safety steps to skip.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Publish marks its release complete without taking the lease.
    pub complete_without_lease: bool,
    /// Publish lists the store for dedupe without waiting for a running gc.
    pub skip_wait_for_gc: bool,
    /// Publish does not check, after waiting for gc, that its record is still pending.
    pub skip_recheck: bool,
    /// Gc deletes files without first marking the releases it drops `dropping`.
    pub no_tombstones: bool,
    /// Gc judges pending releases by their age alone, as if no publish heartbeat existed.
    pub ignore_heartbeats: bool,
    /// Gc ranks complete releases by creation time instead of completion time.
    pub rank_by_creation: bool,
    /// Publish writes mutable files with the other uploads, before the lease, and does not check
    /// them at the last step.
    pub mutable_early: bool,
    /// Publish skips its upload step's listing even when a gc may have run since it read the
    /// records (it trusts what they vouch for).
    pub trust_stale_records: bool,
    /// A release published again while newest writes nothing without reading its mutable files.
    pub unchecked_republish: bool,
    /// Gc does not read the mutable files: a release they serve is dropped if the policy says so.
    pub ignore_serving: bool,
    /// Publish takes what it read ahead of hashing the build ([`crate::publish::Preread`]) as
    /// read just now: the lease epoch and the time it judges a gc by are taken again later.
    pub fresh_preread: bool,
    /// Publish takes a mutable file as unchanged whenever a listing states any MD5 for it,
    /// instead of only when it is the MD5 of the build's bytes.
    pub trust_listed_md5: bool,
    /// Gc deletes on the plan alone: it does not list the records again before each group of
    /// deletes, so a publish that registered after gc's listing loses the files it shares.
    pub skip_new_records_check: bool,
}

impl Faults {
    /// Every fault, one at a time, with its name.
    pub fn each() -> Vec<(&'static str, Faults)> {
        let none = Faults::default();
        vec![
            ("complete_without_lease", Faults { complete_without_lease: true, ..none }),
            ("skip_wait_for_gc", Faults { skip_wait_for_gc: true, ..none }),
            ("skip_recheck", Faults { skip_recheck: true, ..none }),
            ("no_tombstones", Faults { no_tombstones: true, ..none }),
            ("ignore_heartbeats", Faults { ignore_heartbeats: true, ..none }),
            ("rank_by_creation", Faults { rank_by_creation: true, ..none }),
            ("mutable_early", Faults { mutable_early: true, ..none }),
            ("trust_stale_records", Faults { trust_stale_records: true, ..none }),
            ("unchecked_republish", Faults { unchecked_republish: true, ..none }),
            ("ignore_serving", Faults { ignore_serving: true, ..none }),
            ("fresh_preread", Faults { fresh_preread: true, ..none }),
            ("trust_listed_md5", Faults { trust_listed_md5: true, ..none }),
            ("skip_new_records_check", Faults { skip_new_records_check: true, ..none }),
        ]
    }
}
