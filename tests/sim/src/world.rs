//! The simulated world: a virtual clock, the store's ground truth, and a scheduler that decides,
//! one step at a time, which pending store operation lands next, when time moves, which actor
//! stalls and which crashes. Every decision comes from one seeded [`Rng`], so a schedule replays
//! exactly.
//!
//! Actors are the real engines (`publish`, `gc`) running as futures on this single-threaded
//! executor. They reach the world only through [`SimStore`] and [`SimHost`]: every store call is
//! a scheduling point, and so is every sleep.
//!
//! The model of time and failure (what the protocol assumes, ARCHITECTURE.md):
//! - each actor's clock is off by a fixed skew, pairwise within the store's allowance;
//! - a request lands within [`MAX_OP_DELAY`] of being sent, or never (its sender crashed first),
//!   or lands and its answer is lost (S3 only: the client sees an error or, for a create-only
//!   write, the "already exists" of its own retry);
//! - between requests an actor may stall for any time (a paused VM, a GC pause);
//! - an actor may crash at any point: its future is dropped and never runs again.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use deskew_core::host::{BoxFuture, Host};
use deskew_core::key::Key;
use deskew_core::store::memory::MemStore;
use deskew_core::store::split::{self, Part};
use deskew_core::store::{Body, Capabilities, Listing, Op, PutMode, PutOptions, Store, StoreError, WriteGuard};
use deskew_core::time::Timestamp;

use crate::rng::Rng;

/// The longest a request takes to land: the protocol's [`deskew_core::lease::OP_MARGIN`].
pub const MAX_OP_DELAY: Duration = deskew_core::lease::OP_MARGIN;

/// Which backend's semantics the store has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// S3: paginated listings, one request per batch delete, answers that may be lost.
    S3,
    /// A directory: a put is a visible temporary file then a rename, one delete per file,
    /// listings read a few entries at a time.
    Dir,
}

impl Model {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Model::S3 => "s3",
            Model::Dir => "dir",
        }
    }
}

/// What an operation did to the store, for the oracle.
#[derive(Clone, Debug)]
pub enum Effect {
    /// A key was written.
    Put {
        /// The key.
        key: Key,
        /// Its new bytes.
        bytes: Bytes,
    },
    /// A key was deleted (it held `prev`).
    Delete {
        /// The key.
        key: Key,
        /// What it held, if anything.
        prev: Option<Bytes>,
    },
}

type Answer = Box<dyn Any + Send>;
type Apply = Box<dyn FnOnce(&mut World, bool) -> Answer + Send>;

#[derive(Default)]
struct Slot {
    answer: Option<Answer>,
    waker: Option<Waker>,
}

struct PendingOp {
    actor: usize,
    issued: Duration,
    what: String,
    apply: Apply,
    slot: Arc<Mutex<Slot>>,
}

struct Sleeper {
    actor: usize,
    deadline: Duration,
    slot: Arc<Mutex<Slot>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared state of a schedule.
pub struct World {
    /// The backend model.
    pub model: Model,
    /// Virtual time since [`World::base`].
    pub now: Duration,
    /// Wall-clock time at virtual zero.
    pub base: SystemTime,
    /// The store's ground truth.
    pub truth: MemStore,
    /// Effects of the current step.
    pub effects: Vec<(usize, Effect)>,
    /// Every step's description, when tracing.
    pub log: Option<Vec<String>>,
    /// FNV-1a over the executed steps: tells interleavings apart.
    pub trace_hash: u64,
    /// Page size of listings.
    pub page: usize,
    /// Keys per batch delete request.
    pub batch: usize,
    /// Whether a listing's first page ignores where it was asked to start (S3's `start-after`),
    /// as some servers do: every fourth seed (those of remainder 1, which leaves the seed that
    /// catches `skip_new_records_check` in its self-test window, 38367, as it was).
    pub ignores_start_after: bool,
    pending: Vec<PendingOp>,
    sleepers: Vec<Sleeper>,
    uniques: u64,
    seed: u64,
}

impl World {
    /// A fresh world.
    pub fn new(model: Model, seed: u64, page: usize, batch: usize) -> World {
        World {
            model,
            now: Duration::ZERO,
            base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            truth: MemStore::new("sim"),
            effects: Vec::new(),
            log: None,
            trace_hash: 0xcbf2_9ce4_8422_2325,
            page,
            batch,
            ignores_start_after: seed % 4 == 1,
            pending: Vec::new(),
            sleepers: Vec::new(),
            uniques: 0,
            seed,
        }
    }

    /// The true wall-clock time.
    pub fn wall(&self) -> SystemTime {
        self.base + self.now
    }

    fn trace(&mut self, s: &str) {
        for b in s.bytes() {
            self.trace_hash ^= b as u64;
            self.trace_hash = self.trace_hash.wrapping_mul(0x0100_0000_01b3);
        }
        if let Some(log) = &mut self.log {
            log.push(format!("{:>9.3}s {s}", self.now.as_secs_f64()));
        }
    }

    /// A note in the trace (not hashed).
    pub fn note(&mut self, s: impl Into<String>) {
        let now = self.now;
        if let Some(log) = &mut self.log {
            log.push(format!("{:>9.3}s # {}", now.as_secs_f64(), s.into()));
        }
    }

    fn put_truth(&mut self, actor: usize, key: &Key, bytes: Bytes, opts: &PutOptions) -> Result<(), StoreError> {
        let r = self.truth.put_sync(key, bytes.clone(), opts, self.wall());
        if r.is_ok() {
            self.effects.push((actor, Effect::Put { key: key.clone(), bytes }));
        }
        r
    }

    fn delete_truth(&mut self, actor: usize, key: &Key) {
        let prev = self.truth.get_sync(key).ok();
        self.truth.delete_sync(key);
        if prev.is_some() {
            self.effects.push((actor, Effect::Delete { key: key.clone(), prev }));
        }
    }
}

/// A shared handle to the world.
pub type WorldRef = Arc<Mutex<World>>;

/// A future that is ready once the scheduler has executed its operation.
struct Waiting<T> {
    slot: Arc<Mutex<Slot>>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: 'static> Future for Waiting<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = lock(&self.slot);
        match slot.answer.take() {
            Some(a) => Poll::Ready(*a.downcast::<T>().expect("answer of the right type")),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn issue<T: Send + 'static>(world: &WorldRef, actor: usize, what: String, f: impl FnOnce(&mut World, bool) -> T + Send + 'static) -> Waiting<T> {
    let slot = Arc::new(Mutex::new(Slot::default()));
    let mut w = lock(world);
    let issued = w.now;
    w.pending.push(PendingOp { actor, issued, what, apply: Box::new(move |w, amb| Box::new(f(w, amb))), slot: slot.clone() });
    Waiting { slot, _t: std::marker::PhantomData }
}

/// One actor's view of the store.
#[derive(Clone)]
pub struct SimStore {
    world: WorldRef,
    actor: usize,
}

impl std::fmt::Debug for SimStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimStore(a{})", self.actor)
    }
}

impl SimStore {
    /// The store as `actor` sees it.
    pub fn new(world: WorldRef, actor: usize) -> SimStore {
        SimStore { world, actor }
    }

    /// The virtual time now and whether `release`'s record is complete in the ground truth.
    pub fn truth_state(&self, release: &deskew_core::release::ReleaseId) -> (Duration, bool) {
        let w = lock(&self.world);
        let key = deskew_core::layout::record_key(release);
        let complete = w
            .truth
            .get_sync(&key)
            .ok()
            .and_then(|b| deskew_core::release::ReleaseRecord::parse(&key, &b).ok())
            .is_some_and(|r| r.state == deskew_core::release::ReleaseState::Complete);
        (w.now, complete)
    }

    fn op<T: Send + 'static>(&self, what: String, f: impl FnOnce(&mut World, bool) -> T + Send + 'static) -> Waiting<T> {
        issue(&self.world, self.actor, what, f)
    }

    fn model(&self) -> Model {
        lock(&self.world).model
    }

    fn page(&self) -> usize {
        lock(&self.world).page
    }

    /// The objects under `prefix` in `part`, one scheduled page after another until its end.
    async fn list_part(&self, prefix: Option<&Key>, part: &Part) -> Result<Option<Listing>, StoreError> {
        let mut out = Listing::default();
        let mut after = part.after.clone();
        let mut first = true;
        loop {
            let (p, a) = (prefix.cloned(), after.clone());
            let what = format!("a{} list {} after {}", self.actor, prefix.map_or("", |p| p.as_str()), after.as_ref().map_or("", |a| a.as_str()));
            let page = self.op(what, move |w, _| {
                let n = w.page;
                let a = if first && w.ignores_start_after { None } else { a };
                (w.truth.list_page(p.as_ref(), a.as_ref(), n), n)
            });
            first = false;
            let (objects, n) = page.await;
            let last_page = objects.len() < n;
            after = objects.last().map(|o| o.key.clone());
            match split::sift(part, objects, |o| o.key.as_str(), |o| out.objects.push(o)) {
                split::Sifted::More if !last_page => {}
                split::Sifted::Unstarted => return Ok(None),
                _ => return Ok(Some(out)),
            }
        }
    }
}

fn lost(key: &Key, op: Op) -> StoreError {
    StoreError::backend(op, "memory://sim", key.as_str(), std::io::Error::new(std::io::ErrorKind::TimedOut, "answer lost"))
}

#[async_trait]
impl Store for SimStore {
    fn url(&self) -> &str {
        "memory://sim"
    }

    async fn capabilities(&self) -> Result<Capabilities, StoreError> {
        Ok(Capabilities { create_only: true })
    }

    fn max_delete_batch(&self) -> usize {
        let w = lock(&self.world);
        // A directory deletes one file per call, like the real one.
        if w.model == Model::Dir { 1 } else { w.batch }
    }

    async fn put(&self, key: &Key, body: Body, opts: &PutOptions) -> Result<(), StoreError> {
        let Body::Bytes(bytes) = body else { panic!("the simulation only stores bytes") };
        let (actor, k) = (self.actor, key.clone());
        let guard = opts.guard.clone();
        let o = PutOptions { guard: None, ..opts.clone() };
        match self.model() {
            Model::S3 => {
                WriteGuard::check(opts.guard.as_ref(), "memory://sim", key.as_str())?;
                self.op(format!("a{actor} put {key}"), move |w, amb| {
                    let r = w.put_truth(actor, &k, bytes, &o);
                    match (r, amb) {
                        (Ok(()), true) if o.mode == PutMode::Create => Err(StoreError::AlreadyExists { store: "memory://sim".into(), key: k.to_string() }),
                        (Ok(()), true) => Err(lost(&k, Op::Put)),
                        (r, _) => r,
                    }
                })
                .await
            }
            Model::Dir => {
                let tmp = {
                    let mut w = lock(&self.world);
                    w.uniques += 1;
                    let name = format!("{}{:06}", deskew_core::layout::TMP_PREFIX, w.uniques);
                    match key.as_str().rsplit_once('/') {
                        Some((dir, _)) => Key::new(format!("{dir}/{name}")).expect("valid"),
                        None => Key::new(name).expect("valid"),
                    }
                };
                let (t, k2, o2) = (tmp.clone(), k.clone(), o.clone());
                let wrote = self
                    .op(format!("a{actor} tmp {key}"), move |w, _| {
                        let check = PutOptions { mode: PutMode::Overwrite, guard: None, ..o2 };
                        w.put_truth(actor, &t, bytes, &check)
                    })
                    .await;
                wrote?;
                // The directory store checks the guard right before its rename.
                if let Err(e) = WriteGuard::check(guard.as_ref(), "memory://sim", key.as_str()) {
                    let t = tmp.clone();
                    self.op(format!("a{actor} unlink tmp"), move |w, _| w.delete_truth(actor, &t)).await;
                    return Err(e);
                }
                self.op(format!("a{actor} place {key}"), move |w, _| {
                    let Ok(bytes) = w.truth.get_sync(&tmp) else { return Err(lost(&k2, Op::Put)) };
                    let placed = if o.mode == PutMode::Create && w.truth.get_sync(&k2).is_ok() {
                        Err(StoreError::AlreadyExists { store: "memory://sim".into(), key: k2.to_string() })
                    } else {
                        w.put_truth(actor, &k2, bytes, &PutOptions { mode: PutMode::Overwrite, sha256: None, guard: None, ..o })
                    };
                    w.delete_truth(actor, &tmp);
                    placed
                })
                .await
            }
        }
    }

    async fn get(&self, key: &Key) -> Result<Bytes, StoreError> {
        let k = key.clone();
        self.op(format!("a{} get {key}", self.actor), move |w, _| w.truth.get_sync(&k)).await
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Listing, StoreError> {
        // A part from the first key never meets a key before its start: always `Some`.
        Ok(self.list_part(prefix, &Part { after: None, upto: None }).await?.unwrap_or_default())
    }

    /// As S3 lists given hints: the parts at once, their pages interleaved by the schedule (a
    /// directory lists as without them).
    async fn list_hinted(&self, prefix: Option<&Key>, hints: &[Key]) -> Result<Listing, StoreError> {
        if self.model() == Model::Dir {
            return self.list(prefix).await;
        }
        let stride = (self.page() * 3 / 4).max(1);
        match split::list_in_parts(prefix, hints, stride, usize::MAX, |p| async move { self.list_part(prefix, &p).await }).await? {
            Some(listing) => Ok(listing),
            None => self.list(prefix).await,
        }
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let (actor, k) = (self.actor, key.clone());
        self.op(format!("a{actor} delete {key}"), move |w, amb| {
            w.delete_truth(actor, &k);
            if amb { Err(lost(&k, Op::Delete)) } else { Ok(()) }
        })
        .await
    }

    async fn delete_many(&self, keys: &[Key], guard: Option<&WriteGuard>) -> Vec<Result<(), StoreError>> {
        if self.model() == Model::Dir {
            let mut out = Vec::new();
            for k in keys {
                out.push(match WriteGuard::check(guard, "memory://sim", k.as_str()) {
                    Ok(()) => self.delete(k).await,
                    Err(e) => Err(e),
                });
            }
            return out;
        }
        if let Err(e) = WriteGuard::check(guard, "memory://sim", "") {
            return keys.iter().map(|_| Err(StoreError::GuardFailed { store: "memory://sim".into(), key: e.to_string() })).collect();
        }
        let (actor, ks) = (self.actor, keys.to_vec());
        let what = format!("a{actor} delete_many {}", keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","));
        self.op(what, move |w, amb| {
            ks.iter()
                .map(|k| {
                    w.delete_truth(actor, k);
                    if amb { Err(lost(k, Op::Delete)) } else { Ok(()) }
                })
                .collect()
        })
        .await
    }

    /// Like the real backends: empty, or holding only deskew's temporary files in `.deskew/`.
    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.op(format!("a{} is_empty", self.actor), move |w, _| {
            let temporary = |k: &Key| deskew_core::layout::is_temp(k) && k.is_under(&deskew_core::layout::deskew_dir());
            Ok(w.truth.list_page(None, None, usize::MAX).iter().all(|o| temporary(&o.key)))
        })
        .await
    }
}

/// One actor's host: the virtual clock off by its skew, sleeps as scheduling points.
#[derive(Clone)]
pub struct SimHost {
    world: WorldRef,
    actor: usize,
    skew_ms: i64,
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimHost(a{}, skew {} ms)", self.actor, self.skew_ms)
    }
}

impl SimHost {
    /// The host of `actor`, whose clock is off by `skew_ms`.
    pub fn new(world: WorldRef, actor: usize, skew_ms: i64) -> SimHost {
        SimHost { world, actor, skew_ms }
    }
}

/// `actor`'s name in lease and heartbeat bodies.
pub fn holder_name(actor: usize) -> String {
    format!("a{actor}")
}

impl Host for SimHost {
    fn now(&self) -> Timestamp {
        let wall = lock(&self.world).wall();
        let skew = Duration::from_millis(self.skew_ms.unsigned_abs());
        Timestamp(if self.skew_ms >= 0 { wall + skew } else { wall - skew })
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let mut w = lock(&self.world);
        let deadline = w.now + d;
        w.sleepers.push(Sleeper { actor: self.actor, deadline, slot: slot.clone() });
        Box::pin(Waiting::<()> { slot, _t: std::marker::PhantomData })
    }

    fn unique(&self) -> String {
        let mut w = lock(&self.world);
        w.uniques += 1;
        let mut r = Rng::new(w.seed ^ w.uniques.wrapping_mul(0x2545_F491_4F6C_DD1D));
        format!("{:016x}", r.next_u64())
    }

    fn holder(&self) -> String {
        holder_name(self.actor)
    }

    fn handle(&self) -> deskew_core::host::HostRef {
        Arc::new(self.clone())
    }
}

/// An actor's future.
pub type ActorFuture = Pin<Box<dyn Future<Output = Box<dyn Any + Send>>>>;

struct ActorWake(AtomicBool);

impl Wake for ActorWake {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// How an actor ended.
pub enum Ending {
    /// Still running.
    Running,
    /// Returned this.
    Done(Box<dyn Any + Send>),
    /// Crashed by the scheduler.
    Crashed,
}

struct ActorSlot {
    future: Option<ActorFuture>,
    wake: Arc<ActorWake>,
    stalled_until: Option<Duration>,
    crashable: bool,
}

/// How the scheduler chooses.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    /// Percent of steps that crash an actor (while crashes are left).
    pub crash_percent: u64,
    /// Crashes left in this schedule.
    pub crashes: u32,
    /// Percent of steps that move the clock forward.
    pub jump_percent: u64,
    /// Percent of answers that stall their actor.
    pub stall_percent: u64,
    /// Longest stall.
    pub max_stall: Duration,
    /// Percent of S3 answers lost after the request landed.
    pub lost_answer_percent: u64,
}

/// The single-threaded executor of one schedule.
pub struct Executor {
    /// The world.
    pub world: WorldRef,
    actors: Vec<ActorSlot>,
    /// How each actor ended, by index.
    pub endings: Vec<Ending>,
    rng: Rng,
    knobs: Knobs,
    /// Steps taken.
    pub steps: u64,
}

/// Called after every step that changed the store.
pub trait Observer {
    /// `effects` just landed.
    fn after_effects(&mut self, world: &World, effects: &[(usize, Effect)]);
    /// An actor just returned.
    fn actor_done(&mut self, world: &World, actor: usize, result: &(dyn Any + Send));
    /// The clock moved (heartbeats may have lapsed).
    fn time_moved(&mut self, world: &World);
}

impl Executor {
    /// An executor over `world`.
    pub fn new(world: WorldRef, rng: Rng, knobs: Knobs) -> Executor {
        Executor { world, actors: Vec::new(), endings: Vec::new(), rng, knobs, steps: 0 }
    }

    /// Adds an actor; `crashable` actors may be crashed by the scheduler.
    pub fn spawn(&mut self, future: ActorFuture, crashable: bool) -> usize {
        self.actors.push(ActorSlot { future: Some(future), wake: Arc::new(ActorWake(AtomicBool::new(true))), stalled_until: None, crashable });
        self.endings.push(Ending::Running);
        self.actors.len() - 1
    }

    /// Number of actors.
    pub fn len(&self) -> usize {
        self.actors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }

    /// Gives the scheduler new knobs (the recovery phase runs without faults).
    pub fn set_knobs(&mut self, knobs: Knobs) {
        self.knobs = knobs;
    }

    fn poll_woken(&mut self, observer: &mut dyn Observer) {
        loop {
            let now = lock(&self.world).now;
            let mut polled = false;
            for i in 0..self.actors.len() {
                let a = &mut self.actors[i];
                if a.future.is_none() || !a.wake.0.load(Ordering::SeqCst) || a.stalled_until.is_some_and(|t| t > now) {
                    continue;
                }
                a.stalled_until = None;
                a.wake.0.store(false, Ordering::SeqCst);
                polled = true;
                let waker = Waker::from(a.wake.clone());
                let mut cx = Context::from_waker(&waker);
                if let Poll::Ready(out) = a.future.as_mut().expect("checked").as_mut().poll(&mut cx) {
                    a.future = None;
                    observer.actor_done(&lock(&self.world), i, out.as_ref());
                    self.endings[i] = Ending::Done(out);
                }
            }
            if !polled {
                return;
            }
        }
    }

    fn crash(&mut self, actor: usize) {
        self.actors[actor].future = None;
        self.endings[actor] = Ending::Crashed;
        let mut w = lock(&self.world);
        w.pending.retain(|p| p.actor != actor);
        w.sleepers.retain(|s| s.actor != actor);
        w.trace(&format!("a{actor} CRASH"));
    }

    fn finish(slot: &Arc<Mutex<Slot>>, answer: Answer) {
        let mut s = lock(slot);
        s.answer = Some(answer);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Runs until every actor has ended or `max_steps` is reached; `false` in the latter case.
    pub fn run(&mut self, observer: &mut dyn Observer, max_steps: u64) -> bool {
        loop {
            self.poll_woken(observer);
            if self.actors.iter().all(|a| a.future.is_none()) {
                return true;
            }
            if self.steps >= max_steps {
                return false;
            }
            self.steps += 1;
            self.step(observer);
        }
    }

    fn step(&mut self, observer: &mut dyn Observer) {
        let (n_ops, n_due, cap, next_event) = {
            let w = lock(&self.world);
            let cap = w.pending.iter().map(|p| p.issued + MAX_OP_DELAY).min().map(|t| t.saturating_sub(w.now));
            let due = w.sleepers.iter().filter(|s| s.deadline <= w.now).count();
            let next_sleep = w.sleepers.iter().map(|s| s.deadline).min();
            let next_stall = self.actors.iter().filter(|a| a.future.is_some()).filter_map(|a| a.stalled_until).min();
            (w.pending.len(), due, cap, next_sleep.into_iter().chain(next_stall).min())
        };
        if n_ops + n_due == 0 {
            // Nothing can happen until the clock reaches the next sleeper or stalled actor.
            let mut w = lock(&self.world);
            if let Some(t) = next_event {
                w.now = w.now.max(t);
            }
            drop(w);
            observer.time_moved(&lock(&self.world));
            return;
        }
        let cap = cap.unwrap_or(Duration::from_secs(120));
        if self.rng.percent(self.knobs.jump_percent) && !cap.is_zero() {
            let jump = Duration::from_millis(self.rng.below(cap.as_millis() as u64 + 1));
            let mut w = lock(&self.world);
            w.now += jump;
            w.trace(&format!("jump {:.3}s", jump.as_secs_f64()));
            drop(w);
            observer.time_moved(&lock(&self.world));
            return;
        }
        if n_ops > 0 && self.knobs.crashes > 0 && self.rng.percent(self.knobs.crash_percent) {
            let (actor, land_first) = {
                let w = lock(&self.world);
                let i = self.rng.below(w.pending.len() as u64) as usize;
                (w.pending[i].actor, self.rng.percent(50))
            };
            if self.actors[actor].crashable {
                self.knobs.crashes -= 1;
                if land_first {
                    self.execute_op_of(actor, observer);
                }
                self.crash(actor);
                return;
            }
        }
        let pick = self.rng.below((n_ops + n_due) as u64) as usize;
        if pick < n_ops {
            self.execute_op(pick, observer);
        } else {
            let mut w = lock(&self.world);
            let now = w.now;
            let idx = w.sleepers.iter().enumerate().filter(|(_, s)| s.deadline <= now).map(|(i, _)| i).nth(pick - n_ops).expect("due sleeper");
            let s = w.sleepers.remove(idx);
            let text = format!("a{} wake", s.actor);
            w.trace(&text);
            drop(w);
            Self::finish(&s.slot, Box::new(()));
        }
        // A little time passes with every step.
        let tick = Duration::from_millis(self.rng.below(40));
        let mut w = lock(&self.world);
        let cap = w.pending.iter().map(|p| p.issued + MAX_OP_DELAY).min().map_or(tick, |t| t.saturating_sub(w.now).min(tick));
        w.now += cap;
    }

    /// Lands every request still in flight (sent by actors that have moved on or ended).
    pub fn drain(&mut self, observer: &mut dyn Observer) {
        while !lock(&self.world).pending.is_empty() {
            self.execute_op(0, observer);
        }
        lock(&self.world).sleepers.clear();
    }

    fn execute_op_of(&mut self, actor: usize, observer: &mut dyn Observer) {
        let idx = lock(&self.world).pending.iter().position(|p| p.actor == actor);
        if let Some(i) = idx {
            self.execute_op(i, observer);
        }
    }

    fn execute_op(&mut self, idx: usize, observer: &mut dyn Observer) {
        let lose = lock(&self.world).model == Model::S3 && self.rng.percent(self.knobs.lost_answer_percent);
        let stall = self.rng.percent(self.knobs.stall_percent);
        let stall_for = Duration::from_millis(self.rng.below(self.knobs.max_stall.as_millis() as u64 + 1));
        let mut w = lock(&self.world);
        let op = w.pending.remove(idx);
        let text = format!("{}{}", op.what, if lose { " (answer lost)" } else { "" });
        w.trace(&text);
        w.effects.clear();
        let answer = (op.apply)(&mut w, lose);
        let effects = std::mem::take(&mut w.effects);
        if stall {
            let until = w.now + stall_for;
            self.actors[op.actor].stalled_until = Some(until);
            w.trace(&format!("a{} stall {:.3}s", op.actor, stall_for.as_secs_f64()));
        }
        if !effects.is_empty() {
            observer.after_effects(&w, &effects);
        }
        drop(w);
        Self::finish(&op.slot, answer);
    }
}

/// A pinned, boxed actor future returning `T`.
pub fn actor<T: Send + 'static>(f: impl Future<Output = T> + 'static) -> ActorFuture {
    Box::pin(async move { Box::new(f.await) as Box<dyn Any + Send> })
}

/// Actors' skews, by index.
pub type Skews = HashMap<usize, i64>;
