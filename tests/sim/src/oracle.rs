//! The oracle: checks the invariants against the store's ground truth after every step, and
//! against what each actor was told when it returns (Jepsen-style: record what clients saw,
//! judge the history, not the code's intentions).
//!
//! - I1: a publish that returned `Published`/`AlreadyComplete` left a complete record; a gc
//!   drops a complete release only if the policy it ran with allows it, judged by the true order
//!   of completions (releases completed within the clock-skew allowance of each other count as
//!   unordered).
//! - I2: a publish whose heartbeat never lapsed (in true time) never had to re-upload a file
//!   that vanished: no gc deleted what a live publish relied on.
//! - I3: after every step, every record that says `complete` is whole (every file present with
//!   its sha256); no complete record is ever deleted.
//! - I6: mutable files follow completion order: when a record becomes complete, each of its
//!   mutable files holds its content (it is now the newest release, the one they serve), and
//!   only a lease holder writes a mutable file. A publish that returned success (even one that
//!   wrote nothing, its release already complete and newest) leaves each mutable file with its
//!   content, unless another actor wrote it after the publish started.
//! - I7: what the store serves is whole: while a mutable file holds the content some release
//!   recorded for it, at least one such release (whatever its record's state) has every other
//!   file present. A publish that dies among its mutable writes leaves its release serving; no gc
//!   may then delete its files.
//! - I5: every delete and every record state change lands while its actor holds the lease (the
//!   highest epoch, held, by it).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use deskew_core::digest::sha256_hex;
use deskew_core::key::Key;
use deskew_core::layout;
use deskew_core::lease::{LeaseBody, LeaseState};
use deskew_core::manifest::FileClass;
use deskew_core::release::{ReleaseId, ReleaseRecord, ReleaseState};
use deskew_core::retention::Policy;

use crate::world::{Effect, World, holder_name};

/// What an actor is, for judging it.
#[derive(Clone, Debug)]
pub enum Role {
    /// Publishes `release`; with a policy, runs a gc after.
    Publisher {
        /// The release.
        release: ReleaseId,
        /// The gc after the publish, if any.
        policy: Option<Policy>,
    },
    /// Runs gc with `policy`.
    Gc {
        /// The policy.
        policy: Policy,
    },
}

/// What a publisher actor returns.
#[derive(Debug)]
pub struct PublisherOut {
    /// The publish: outcome and files re-uploaded at the last step, or the error.
    pub publish: Result<(deskew_core::publish::Outcome, u64), String>,
    /// When the publish returned (virtual time).
    pub returned_at: std::time::Duration,
    /// Whether the release's record was complete in the store at that moment.
    pub complete_on_return: bool,
}

/// What a gc actor returns.
#[derive(Debug)]
pub struct GcOut {
    /// Each run's result.
    pub runs: Vec<Result<(), String>>,
}

/// The oracle of one schedule.
pub struct Oracle {
    /// What was found wrong.
    pub violations: Vec<String>,
    /// Each actor's role, by index.
    pub roles: HashMap<usize, Role>,
    skew: Duration,
    completed_at: HashMap<ReleaseId, Duration>,
    dropped_at: HashMap<ReleaseId, Duration>,
    /// For each publisher: when its latest heartbeat expires, in true time (by its own clock).
    heartbeat_expiry: HashMap<usize, Duration>,
    /// Each actor's clock skew in milliseconds.
    pub skews: HashMap<usize, i64>,
    lapsed: HashMap<usize, Duration>,
    done: HashSet<usize>,
    /// sha256 of every object but bookkeeping, kept up to date from the effects.
    shas: HashMap<Key, String>,
    /// Every complete record, kept up to date from the effects.
    complete: HashMap<ReleaseId, ReleaseRecord>,
    /// Every record, whatever its state, kept up to date from the effects.
    records: HashMap<ReleaseId, ReleaseRecord>,
    /// Keys the builds hold as mutable files.
    pub mutable_keys: HashSet<Key>,
    /// When each mutable file was last written or deleted.
    mutable_changed: HashMap<Key, Duration>,
    /// When each publisher started.
    pub started: HashMap<usize, Duration>,
    /// The protocol-level order of what landed: which kind of actor did which kind of change,
    /// repeats collapsed (timing, keys and contents left out).
    pub order_hash: u64,
    last_token: String,
}

impl Oracle {
    /// An oracle for a store with clock-skew allowance `skew`.
    pub fn new(skew: Duration) -> Oracle {
        Oracle {
            violations: Vec::new(),
            roles: HashMap::new(),
            skew,
            completed_at: HashMap::new(),
            dropped_at: HashMap::new(),
            heartbeat_expiry: HashMap::new(),
            skews: HashMap::new(),
            lapsed: HashMap::new(),
            done: HashSet::new(),
            shas: HashMap::new(),
            complete: HashMap::new(),
            records: HashMap::new(),
            mutable_keys: HashSet::new(),
            mutable_changed: HashMap::new(),
            started: HashMap::new(),
            order_hash: 0xcbf2_9ce4_8422_2325,
            last_token: String::new(),
        }
    }

    fn violation(&mut self, world: &World, what: String) {
        if self.violations.len() < 20 && !self.violations.iter().any(|v| v.ends_with(&what)) {
            self.violations.push(format!("at {:.3}s: {what}", world.now.as_secs_f64()));
        }
    }

    fn record_of(key: &Key, bytes: &[u8]) -> Option<ReleaseRecord> {
        layout::record_id(key)?;
        ReleaseRecord::parse(key, bytes).ok()
    }

    fn holds_lease(world: &World, actor: usize) -> Result<(), String> {
        let top = world.truth.list_page(Some(&layout::lease_dir()), None, usize::MAX).into_iter().filter_map(|o| layout::lease_epoch(&o.key)).max();
        let Some(top) = top else { return Err("no lease was ever taken".into()) };
        let body: LeaseBody = serde_json::from_slice(&world.truth.get_sync(&layout::lease_key(top)).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        if body.holder == holder_name(actor) && body.state == LeaseState::Held {
            Ok(())
        } else {
            Err(format!("the lease (epoch {top}) is {:?} by {}", body.state, body.holder))
        }
    }

    fn check_guarded(&mut self, world: &World, actor: usize, what: &str) {
        self.check_guarded_as(world, "I5", actor, what);
    }

    fn check_guarded_as(&mut self, world: &World, invariant: &str, actor: usize, what: &str) {
        if let Err(why) = Self::holds_lease(world, actor) {
            self.violation(world, format!("{invariant}: a{actor} {what} while {why}"));
        }
    }

    fn on_put(&mut self, world: &World, actor: usize, key: &Key, bytes: &[u8]) {
        if key.is_under(&layout::publishing_dir()) {
            if let Ok(hb) = serde_json::from_slice::<deskew_core::heartbeat::HeartbeatBody>(bytes) {
                let skew = self.skews.get(&actor).copied().unwrap_or(0);
                let wall = hb.expires.0.duration_since(world.base).unwrap_or_default();
                let truth = if skew >= 0 { wall.saturating_sub(Duration::from_millis(skew as u64)) } else { wall + Duration::from_millis(skew.unsigned_abs()) };
                let e = self.heartbeat_expiry.entry(actor).or_insert(truth);
                *e = (*e).max(truth);
            }
            return;
        }
        let Some(record) = Self::record_of(key, bytes) else {
            if self.mutable_keys.contains(key) {
                self.check_guarded_as(world, "I6", actor, &format!("wrote mutable file `{key}`"));
            }
            return;
        };
        match record.state {
            ReleaseState::Complete => {
                self.completed_at.insert(record.release.clone(), world.now);
                self.check_guarded(world, actor, &format!("marked `{}` complete", record.release));
                self.check_mutable_current(world, &record);
            }
            ReleaseState::Dropping => {
                self.check_guarded(world, actor, &format!("marked `{}` dropping", record.release));
                self.check_drop_allowed(world, actor, &record);
            }
            ReleaseState::Pending => {}
        }
    }

    /// I6: a release that just became complete is the newest: its mutable files hold its content.
    fn check_mutable_current(&mut self, world: &World, record: &ReleaseRecord) {
        for (k, f) in record.stored_files().filter(|(_, f)| f.class == FileClass::Mutable) {
            if self.shas.get(&k).map(String::as_str) != Some(&*f.sha256) {
                let v = format!("I6: `{}` became complete while `{k}` holds other content than its own", record.release);
                return self.violation(world, v);
            }
        }
    }

    /// I6, on return: each mutable file of a release just published holds its content, unless
    /// someone changed it after the publish started (a newer release, legitimately).
    fn check_mutable_on_return(&mut self, world: &World, actor: usize, release: &ReleaseId) {
        let (Some(record), Some(&started)) = (self.complete.get(release), self.started.get(&actor)) else { return };
        let stale = record
            .stored_files()
            .filter(|(_, f)| f.class == FileClass::Mutable)
            .find(|(k, f)| self.shas.get(k).map(String::as_str) != Some(&*f.sha256) && self.mutable_changed.get(k).is_none_or(|t| *t < started));
        if let Some((k, _)) = stale {
            self.violation(world, format!("I6: a{actor}'s publish of `{release}` returned success while `{k}` holds content written before it started"));
        }
    }

    /// A gc may drop a release that was complete only if its policy does not keep it.
    fn check_drop_allowed(&mut self, world: &World, actor: usize, record: &ReleaseRecord) {
        let Some(at) = self.completed_at.get(&record.release).copied() else { return };
        if record.completed.is_none() {
            return; // it was pending: judged by I2 through its publisher
        }
        self.dropped_at.insert(record.release.clone(), world.now);
        let policy = match self.roles.get(&actor) {
            Some(Role::Gc { policy }) => policy.clone(),
            Some(Role::Publisher { policy: Some(p), release }) => Policy { published: Some(release.clone()), ..p.clone() },
            _ => return self.violation(world, format!("a{actor} dropped `{}` without a policy", record.release)),
        };
        if policy.pins.contains(&record.release) || policy.published.as_ref() == Some(&record.release) {
            return self.violation(world, format!("I1: a{actor} dropped pinned or just-published `{}`", record.release));
        }
        let complete_now: Vec<(ReleaseId, Duration)> = world
            .truth
            .list_page(Some(&layout::releases_dir()), None, usize::MAX)
            .into_iter()
            .filter_map(|o| Self::record_of(&o.key, &world.truth.get_sync(&o.key).ok()?))
            .filter(|r| r.state == ReleaseState::Complete && Some(&r.release) != policy.published.as_ref())
            .filter_map(|r| self.completed_at.get(&r.release).map(|t| (r.release, *t)))
            .collect();
        // A record's completion time is stamped by its publisher's clock (off by up to the skew
        // allowance) before it is written, and the write may land as late as its lease guard
        // allows (the lease's lifetime less the margin): releases that landed within both of
        // each other may rank either way.
        let slack = self.skew + deskew_core::lease::DEFAULT_TTL - deskew_core::lease::OP_MARGIN;
        let maybe_newer = complete_now.iter().filter(|(id, t)| *id != record.release && *t + slack > at).count();
        if maybe_newer < policy.keep.get() {
            self.violation(world, format!("I1: a{actor} dropped `{}`, one of the newest {} complete releases", record.release, policy.keep));
        }
    }

    fn on_delete(&mut self, world: &World, actor: usize, key: &Key, prev: Option<&[u8]>) {
        if key.is_under(&layout::lease_dir()) || key.is_under(&layout::publishing_dir()) || layout::is_temp(key) {
            return;
        }
        self.check_guarded(world, actor, &format!("deleted `{key}`"));
        if let Some(r) = prev.and_then(|b| Self::record_of(key, b)) {
            if r.state == ReleaseState::Complete {
                self.violation(world, format!("I3: a{actor} deleted the complete record of `{}`", r.release));
            }
        }
    }

    /// Every complete record in the store is whole. Reads the whole store: for the end of a run.
    pub fn check_whole(&mut self, world: &World) {
        let objects = world.truth.snapshot();
        self.shas = objects.iter().map(|(k, o)| (k.clone(), sha256_hex(&o.bytes))).collect();
        self.records = objects.iter().filter_map(|(k, o)| Self::record_of(k, &o.bytes)).map(|r| (r.release.clone(), r)).collect();
        self.complete = self.records.values().filter(|r| r.state == ReleaseState::Complete).map(|r| (r.release.clone(), r.clone())).collect();
        self.check_whole_cached(world);
        self.check_serving_whole(world);
    }

    /// Every complete record is whole, from the oracle's running view of the store.
    fn check_whole_cached(&mut self, world: &World) {
        let mut found = None;
        'records: for r in self.complete.values() {
            for (k, f) in r.stored_files() {
                match self.shas.get(&k) {
                    None => {
                        found = Some(format!("I3: `{}` is complete but `{k}` is missing", r.release));
                        break 'records;
                    }
                    // Mutable files change in place when a newer release replaces them.
                    Some(sha) if f.class != FileClass::Mutable && **sha != *f.sha256 => {
                        found = Some(format!("I3: `{}` is complete but `{k}` has other content", r.release));
                        break 'records;
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(v) = found {
            self.violation(world, v);
        }
    }

    /// I7: each mutable file that holds some release's content has one such release whole.
    fn check_serving_whole(&mut self, world: &World) {
        let whole = |r: &ReleaseRecord| {
            r.stored_files().filter(|(_, f)| f.class != FileClass::Mutable).all(|(k, f)| self.shas.get(&k).map(String::as_str) == Some(&*f.sha256))
        };
        let mut found = None;
        for k in &self.mutable_keys {
            let Some(sha) = self.shas.get(k) else { continue };
            let serving: Vec<&ReleaseRecord> = self.records.values().filter(|r| r.stored_files().any(|(rk, f)| rk == *k && *f.sha256 == **sha)).collect();
            if let Some(r) = serving.first().filter(|_| !serving.iter().any(|r| whole(r))) {
                found = Some(format!("I7: `{k}` serves `{}`'s content but `{}` is missing files", r.release, r.release));
                break;
            }
        }
        if let Some(v) = found {
            self.violation(world, v);
        }
    }

    /// Keeps the running view of the store up to date with `effects`; `true` if anything but
    /// bookkeeping (lease epochs, heartbeats) changed.
    fn track(&mut self, effects: &[(usize, Effect)]) -> bool {
        let mut relevant = false;
        for (_, e) in effects {
            let key = match e {
                Effect::Put { key, .. } | Effect::Delete { key, .. } => key,
            };
            if key.is_under(&layout::lease_dir()) || key.is_under(&layout::publishing_dir()) {
                continue;
            }
            relevant = true;
            match e {
                Effect::Put { key, bytes } => {
                    self.shas.insert(key.clone(), sha256_hex(bytes));
                    if let Some(r) = Self::record_of(key, bytes) {
                        if r.state == ReleaseState::Complete {
                            self.complete.insert(r.release.clone(), r.clone());
                        } else {
                            self.complete.remove(&r.release);
                        }
                        self.records.insert(r.release.clone(), r);
                    }
                }
                Effect::Delete { key, .. } => {
                    self.shas.remove(key);
                    if let Some(id) = layout::record_id(key).and_then(|id| ReleaseId::new(id).ok()) {
                        self.complete.remove(&id);
                        self.records.remove(&id);
                    }
                }
            }
        }
        relevant
    }

    fn note_order(&mut self, actor: usize, e: &Effect) {
        let who = match self.roles.get(&actor) {
            Some(Role::Publisher { .. }) => "P",
            Some(Role::Gc { .. }) => "G",
            None => "?",
        };
        let what = match e {
            Effect::Put { key, bytes } if layout::record_id(key).is_some() => Self::record_of(key, bytes).map_or("record", |r| r.state.as_str()).to_string(),
            Effect::Put { key, .. } if key.is_under(&layout::lease_dir()) => "lease".into(),
            Effect::Put { key, .. } if key.is_under(&layout::publishing_dir()) => "heartbeat".into(),
            Effect::Put { .. } => "upload".into(),
            Effect::Delete { key, .. } if key.is_under(&layout::lease_dir()) => "tidy".into(),
            Effect::Delete { key, .. } if layout::record_id(key).is_some() => "forget".into(),
            Effect::Delete { .. } => "delete".into(),
        };
        let token = format!("{who}:{what}");
        if token != self.last_token {
            for b in token.bytes().chain([b'|']) {
                self.order_hash ^= b as u64;
                self.order_hash = self.order_hash.wrapping_mul(0x0100_0000_01b3);
            }
            self.last_token = token;
        }
    }

    fn check_lapses(&mut self, world: &World) {
        for (&actor, &t) in &self.heartbeat_expiry {
            if !self.done.contains(&actor) && world.now > t {
                self.lapsed.entry(actor).or_insert(world.now);
            }
        }
    }

    /// After a run: nothing left half-done.
    pub fn check_quiescent(&mut self, world: &World) {
        let objects = world.truth.snapshot();
        for (key, obj) in &objects {
            if let Some(r) = Self::record_of(key, &obj.bytes) {
                if r.state != ReleaseState::Complete {
                    self.violation(world, format!("after recovery `{}` is still {}", r.release, r.state.as_str()));
                }
            }
            if layout::is_temp(key) {
                self.violation(world, format!("after recovery a temporary file `{key}` is left"));
            }
            if key.is_under(&layout::publishing_dir()) {
                self.violation(world, format!("after recovery a heartbeat `{key}` is left"));
            }
        }
        if let Some(top) = objects.keys().filter_map(layout::lease_epoch).max() {
            let body: Option<LeaseBody> = serde_json::from_slice(&objects[&layout::lease_key(top)].bytes).ok();
            if body.is_none_or(|b| b.state != LeaseState::Released) {
                self.violation(world, format!("after recovery the lease (epoch {top}) is not released"));
            }
        }
    }
}

impl crate::world::Observer for Oracle {
    fn after_effects(&mut self, world: &World, effects: &[(usize, Effect)]) {
        for (actor, e) in effects {
            self.note_order(*actor, e);
        }
        for (actor, e) in effects {
            let (Effect::Put { key, .. } | Effect::Delete { key, .. }) = e;
            if self.mutable_keys.contains(key) {
                self.mutable_changed.insert(key.clone(), world.now);
            }
            match e {
                Effect::Put { key, bytes } => self.on_put(world, *actor, key, bytes),
                Effect::Delete { key, prev } => self.on_delete(world, *actor, key, prev.as_deref()),
            }
        }
        self.check_lapses(world);
        if self.track(effects) {
            self.check_whole_cached(world);
            self.check_serving_whole(world);
        }
    }

    fn actor_done(&mut self, world: &World, actor: usize, result: &(dyn std::any::Any + Send)) {
        self.check_lapses(world);
        self.done.insert(actor);
        let Some(out) = result.downcast_ref::<PublisherOut>() else { return };
        let Some(Role::Publisher { release, .. }) = self.roles.get(&actor).cloned() else { return };
        if let Err(e) = &out.publish {
            // Every store here was made by deskew: a publish must never take it for a foreign one.
            if e.contains("is not a deskew store") {
                self.violation(world, format!("a{actor}'s publish of `{release}` failed: {e}"));
            }
        }
        let Ok((_, repaired)) = out.publish else { return };
        // A gc may drop it under its policy between the publish's last write and its return.
        let dropped_since = self.dropped_at.get(&release).is_some_and(|d| self.completed_at.get(&release).is_some_and(|c| d >= c));
        if !out.complete_on_return && !dropped_since {
            self.violation(world, format!("I1: a{actor}'s publish of `{release}` returned success but its record is not complete"));
        }
        if repaired > 0 && self.lapsed.get(&actor).is_none_or(|t| *t > out.returned_at) {
            self.violation(world, format!("I2: a{actor}'s live publish of `{release}` had {repaired} files deleted under it"));
        }
        self.check_mutable_on_return(world, actor, &release);
    }

    fn time_moved(&mut self, world: &World) {
        self.check_lapses(world);
    }
}
