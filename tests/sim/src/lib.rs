//! Deterministic simulation of deskew's store protocol.
//!
//! One seed decides a whole schedule: the builds, the store's history before it (releases
//! published, a publish or a gc killed half-way), the actors (2-3 publishers, fresh, resumed or
//! racing on one release, some running a gc after; 1-2 gcs with short grace periods and pins),
//! their clock skews, and then every interleaving choice, stall, lost answer and crash. The real
//! `publish` and `gc` engines run against an in-memory store with S3's or a directory's
//! semantics ([`world::Model`]); the [`oracle`] checks the invariants after every step. After
//! the schedule, every publish that did not succeed is run again and a last gc runs, without
//! faults: both must succeed and leave nothing half-done.
//!
//! `cargo run -p deskew-sim --release -- --seed N --model s3 --trace` replays one schedule.

pub mod oracle;
pub mod rng;
pub mod world;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deskew_core::faults::Faults;
use deskew_core::gc::{self, GcOptions};
use deskew_core::key::Key;
use deskew_core::manifest::{FileClass, Manifest, ManifestFile};
use deskew_core::marker::DEFAULT_MAX_CLOCK_SKEW;
use deskew_core::progress::NoProgress;
use deskew_core::publish::{self, MemSource, PublishOptions};
use deskew_core::release::ReleaseId;
use deskew_core::retention::Policy;

use oracle::{GcOut, Oracle, PublisherOut, Role};
use rng::Rng;
use world::{Executor, Knobs, Model, SimHost, SimStore, World, WorldRef, actor};

/// A build: its manifest (release id set per publish) and its bytes.
#[derive(Clone, Debug)]
struct Build {
    files: Vec<ManifestFile>,
    source: MemSource,
}

fn file(path: &str, class: FileClass, body: &str) -> (ManifestFile, Bytes) {
    let bytes = Bytes::from(body.to_string());
    let f = ManifestFile {
        path: Key::new(path).expect("valid path"),
        sha256: deskew_core::digest::sha256_hex(&bytes).into(),
        size: bytes.len() as u64,
        content_type: "text/plain".into(),
        cache_control: "no-cache".into(),
        class,
    };
    (f, bytes)
}

fn builds(rng: &mut Rng) -> Vec<Build> {
    (0..4)
        .map(|b| {
            let mut parts = vec![
                file("index.html", FileClass::Entry, &format!("<html>build {b}</html>")),
                file("robots.txt", FileClass::Mutable, &format!("robots {}", b % 2)),
            ];
            for _ in 0..rng.range(2, 4) {
                let c = rng.below(7);
                let path = format!("assets/c{c}-{:08x}.js", c * 7919);
                if !parts.iter().any(|(f, _)| f.path.as_str() == path) {
                    parts.push(file(&path, FileClass::Immutable, &format!("chunk {c}")));
                }
            }
            let source = MemSource { files: parts.iter().map(|(f, b)| (f.path.clone(), b.clone())).collect() };
            Build { files: parts.into_iter().map(|(f, _)| f).collect(), source }
        })
        .collect()
}

fn rid(i: usize) -> ReleaseId {
    ReleaseId::new(format!("r{i}")).expect("valid id")
}

/// The result of one schedule.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The model.
    pub model: Model,
    /// Invariant violations (empty when the schedule passed).
    pub violations: Vec<String>,
    /// Steps taken.
    pub steps: u64,
    /// Hash of the interleaving.
    pub trace_hash: u64,
    /// Hash of the protocol-level order of changes (see [`oracle::Oracle::order_hash`]).
    pub order_hash: u64,
    /// Publishes that succeeded during the schedule.
    pub published: u32,
    /// Actors crashed.
    pub crashes: u32,
    /// The trace, when asked for.
    pub log: Vec<String>,
}

struct Ctx {
    faults: Faults,
    world: WorldRef,
    builds: Vec<Build>,
    skews: HashMap<usize, i64>,
    rng: Rng,
    /// Whether and how long each publisher reads the store ahead of hashing its build, as
    /// `deskew publish` does (its own generator: the schedules the other draws make stay as
    /// they were).
    ahead: Rng,
}

const SKEW_MS: u64 = DEFAULT_MAX_CLOCK_SKEW.as_millis() as u64;

impl Ctx {
    fn host(&mut self, actor: usize) -> SimHost {
        let skew = *self.skews.entry(actor).or_insert_with(|| self.rng.below(SKEW_MS + 1) as i64 - (SKEW_MS / 2) as i64);
        SimHost::new(self.world.clone(), actor, skew)
    }

    fn manifest(&self, release: usize) -> (Manifest, MemSource) {
        let b = &self.builds[(release - 1) % self.builds.len()];
        (Manifest::from_files(b.files.clone(), Some(rid(release))), b.source.clone())
    }
}

fn publish_opts(faults: Faults) -> PublishOptions {
    PublishOptions { concurrency: 2, lease_wait: Duration::from_secs(400), lease_poll: Duration::from_secs(5), faults, ..PublishOptions::default() }
}

fn gc_opts(policy: Policy, faults: Faults) -> GcOptions {
    GcOptions { policy, lease_wait: Duration::from_secs(200), lease_poll: Duration::from_secs(5), faults, ..GcOptions::default() }
}

fn spawn_publisher(ex: &mut Executor, ctx: &mut Ctx, oracle: &mut Oracle, release: usize, policy: Option<Policy>, crashable: bool) -> usize {
    let actor_id = ex.len();
    let (store, host) = (SimStore::new(ctx.world.clone(), actor_id), ctx.host(actor_id));
    oracle.skews.insert(actor_id, ctx.skews[&actor_id]);
    let (manifest, source) = ctx.manifest(release);
    oracle.roles.insert(actor_id, Role::Publisher { release: rid(release), policy: policy.clone() });
    oracle.started.insert(actor_id, ctx.world.lock().unwrap_or_else(|e| e.into_inner()).now);
    let faults = ctx.faults;
    // Half the publishers read ahead, then hash for up to 5 s of simulated time while the other
    // actors go on, and publish from what they read.
    let ahead = ctx.ahead.percent(50).then(|| Duration::from_millis(ctx.ahead.below(5_000)));
    let fut = actor(async move {
        let pre = match ahead {
            // A failed read ahead is read again by the publish, as `deskew publish` does.
            Some(hashing) => {
                let pre = publish::Preread::read(&store, &host, Some(&rid(release))).await.ok().flatten();
                deskew_core::host::Host::sleep(&host, hashing).await;
                pre
            }
            None => None,
        };
        let r = publish::publish_after(&store, &host, &source, manifest, pre, &publish_opts(faults), &NoProgress).await;
        let (returned_at, complete_on_return) = store.truth_state(&rid(release));
        let out =
            PublisherOut { publish: r.as_ref().map(|r| (r.outcome, r.repaired)).map_err(|e| deskew_core::error_chain(e)), returned_at, complete_on_return };
        if let (Ok(_), Some(p)) = (&r, policy) {
            let p = Policy { published: Some(rid(release)), ..p };
            let _ = gc::run(&store, &host, &gc_opts(p, faults), &NoProgress).await;
        }
        out
    });
    ex.spawn(fut, crashable)
}

fn spawn_gc(ex: &mut Executor, ctx: &mut Ctx, oracle: &mut Oracle, policy: Policy, runs: u32, crashable: bool) -> usize {
    let actor_id = ex.len();
    let (store, host) = (SimStore::new(ctx.world.clone(), actor_id), ctx.host(actor_id));
    oracle.roles.insert(actor_id, Role::Gc { policy: policy.clone() });
    let pause = Duration::from_millis(ctx.rng.below(30_000));
    let faults = ctx.faults;
    let fut = actor(async move {
        let mut out = GcOut { runs: Vec::new() };
        for i in 0..runs {
            if i > 0 {
                deskew_core::host::Host::sleep(&host, pause).await;
            }
            let r = gc::run(&store, &host, &gc_opts(policy.clone(), faults), &NoProgress).await;
            out.runs.push(r.map(|_| ()).map_err(|e| deskew_core::error_chain(&e)));
        }
        out
    });
    ex.spawn(fut, crashable)
}

fn random_policy(rng: &mut Rng) -> Policy {
    let grace = *rng.pick(&[Duration::ZERO, Duration::ZERO, Duration::from_secs(10), Duration::from_secs(90)]);
    let keep = NonZeroUsize::new(rng.range(1, 3) as usize).expect("at least 1");
    let pins = if rng.percent(20) { vec![rid(rng.range(1, 2) as usize)] } else { Vec::new() };
    Policy { keep, keep_for: None, pins, grace, published: None }
}

/// No faults, and time moves only by the small tick of every step: the history before the
/// schedule and the recovery after it.
fn quiet() -> Knobs {
    Knobs { crash_percent: 0, crashes: 0, jump_percent: 0, stall_percent: 0, max_stall: Duration::ZERO, lost_answer_percent: 0 }
}

fn advance(world: &WorldRef, by: Duration) {
    world.lock().unwrap_or_else(|e| e.into_inner()).now += by;
}

/// Runs the schedule of `seed` on `model`.
pub fn run(seed: u64, model: Model, trace: bool) -> Outcome {
    run_with(seed, model, Faults::default(), trace)
}

/// Runs the schedule of `seed` on `model`, the engines of the schedule (not of the history before
/// it or the recovery after it) skipping the safety steps `faults` names.
pub fn run_with(seed: u64, model: Model, faults: Faults, trace: bool) -> Outcome {
    let mut rng = Rng::new(seed);
    let page = rng.range(1, 4) as usize;
    let batch = rng.range(1, 3) as usize;
    let mut w = World::new(model, seed, page, batch);
    if trace {
        w.log = Some(Vec::new());
    }
    let world: WorldRef = Arc::new(Mutex::new(w));
    let mut ctx = Ctx {
        faults: Faults::default(),
        world: world.clone(),
        builds: builds(&mut rng),
        skews: HashMap::new(),
        rng: Rng::new(seed ^ 0xabcdef),
        ahead: Rng::new(seed ^ 0x5eed_a4ead),
    };
    let mut oracle = Oracle::new(DEFAULT_MAX_CLOCK_SKEW);
    oracle.mutable_keys = ctx.builds.iter().flat_map(|b| b.files.iter()).filter(|f| f.class == FileClass::Mutable).map(|f| f.path.clone()).collect();
    let mut ex = Executor::new(world.clone(), Rng::new(seed.wrapping_mul(31)), quiet());
    let mut ok = true;

    // History: two releases, then perhaps a publish and a gc killed half-way; or none at all, and
    // the schedule's publishers create the store together.
    let history: &[usize] = if rng.percent(15) { &[] } else { &[1, 2] };
    for &release in history {
        spawn_publisher(&mut ex, &mut ctx, &mut oracle, release, None, false);
        ok &= ex.run(&mut oracle, 20_000);
        advance(&world, Duration::from_secs(rng.range(1, 300)));
    }
    let crashy = Knobs { crash_percent: 6, crashes: 1, jump_percent: 5, ..quiet() };
    if !history.is_empty() && rng.percent(40) {
        ex.set_knobs(crashy);
        spawn_publisher(&mut ex, &mut ctx, &mut oracle, 3, None, true);
        ok &= ex.run(&mut oracle, 20_000);
        advance(&world, Duration::from_secs(rng.range(1, 300)));
    }
    if !history.is_empty() && rng.percent(30) {
        ex.set_knobs(crashy);
        let policy = Policy { keep: NonZeroUsize::MIN, grace: Duration::ZERO, ..Policy::keep_all() };
        spawn_gc(&mut ex, &mut ctx, &mut oracle, policy, 1, true);
        ok &= ex.run(&mut oracle, 20_000);
    }

    // The schedule.
    let knobs = Knobs {
        crash_percent: 2,
        crashes: rng.range(0, 2) as u32,
        jump_percent: rng.range(2, 12),
        stall_percent: rng.range(0, 6),
        max_stall: Duration::from_secs(rng.range(1, 120)),
        lost_answer_percent: rng.range(0, 4),
    };
    ex.set_knobs(knobs);
    ctx.faults = faults;
    let mut publishers = Vec::new();
    for _ in 0..rng.range(2, 3) {
        let release = *rng.pick(&[1, 2, 3, 3, 4, 4, 5, 6]);
        let policy = rng.percent(40).then(|| random_policy(&mut rng));
        publishers.push((spawn_publisher(&mut ex, &mut ctx, &mut oracle, release, policy, true), release));
    }
    for _ in 0..rng.range(1, 2) {
        let policy = random_policy(&mut rng);
        let runs = rng.range(1, 3) as u32;
        spawn_gc(&mut ex, &mut ctx, &mut oracle, policy, runs, true);
    }
    ok &= ex.run(&mut oracle, 50_000);
    let published = publishers
        .iter()
        .filter(|(a, _)| matches!(&ex.endings[*a], world::Ending::Done(out) if out.downcast_ref::<PublisherOut>().is_some_and(|o| o.publish.is_ok())))
        .count() as u32;
    let crashes = crashed(&ex);

    // Recovery: time passes, every unfinished publish is run again, a last gc runs.
    ctx.faults = Faults::default();
    ex.set_knobs(quiet());
    ex.drain(&mut oracle);
    advance(&world, Duration::from_secs(2 * 3600));
    let unfinished: Vec<usize> = publishers
        .iter()
        .filter(|(a, _)| !matches!(&ex.endings[*a], world::Ending::Done(out) if out.downcast_ref::<PublisherOut>().is_some_and(|o| o.publish.is_ok())))
        .map(|(_, r)| *r)
        .collect();
    for release in unfinished {
        let a = spawn_publisher(&mut ex, &mut ctx, &mut oracle, release, None, false);
        ok &= ex.run(&mut oracle, 20_000);
        require_success(&mut oracle, &ex, &world, a, "re-run of an unfinished publish");
    }
    let final_gc = spawn_gc(&mut ex, &mut ctx, &mut oracle, Policy { grace: Duration::ZERO, ..Policy::keep(NonZeroUsize::new(2).expect("2")) }, 1, false);
    ok &= ex.run(&mut oracle, 20_000);
    require_success(&mut oracle, &ex, &world, final_gc, "the last gc");
    {
        let w = world.lock().unwrap_or_else(|e| e.into_inner());
        oracle.check_whole(&w);
        oracle.check_quiescent(&w);
        if !ok {
            oracle.violations.push("a phase did not finish within its step budget (livelock?)".into());
        }
    }
    let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
    Outcome {
        seed,
        model,
        violations: std::mem::take(&mut oracle.violations),
        steps: ex.steps,
        trace_hash: w.trace_hash,
        order_hash: oracle.order_hash,
        published,
        crashes,
        log: w.log.take().unwrap_or_default(),
    }
}

fn crashed(ex: &Executor) -> u32 {
    ex.endings.iter().filter(|e| matches!(e, world::Ending::Crashed)).count() as u32
}

fn require_success(oracle: &mut Oracle, ex: &Executor, world: &WorldRef, actor: usize, what: &str) {
    let failure = match &ex.endings[actor] {
        world::Ending::Done(out) => {
            if let Some(p) = out.downcast_ref::<PublisherOut>() {
                p.publish.as_ref().err().cloned()
            } else if let Some(g) = out.downcast_ref::<GcOut>() {
                g.runs.iter().find_map(|r| r.as_ref().err().cloned())
            } else {
                None
            }
        }
        _ => Some("did not finish".into()),
    };
    if let Some(e) = failure {
        let now = world.lock().unwrap_or_else(|e| e.into_inner()).now;
        oracle.violations.push(format!("at {:.3}s: {what} (a{actor}) failed: {e}", now.as_secs_f64()));
    }
}

/// Totals over many schedules.
#[derive(Debug, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// Distinct interleavings among them.
    pub distinct: u64,
    /// Distinct protocol-level orders of changes among them.
    pub distinct_orders: u64,
    /// Steps over all.
    pub steps: u64,
    /// Successful publishes over all.
    pub published: u64,
    /// Crashes over all.
    pub crashes: u64,
    /// The failing schedules.
    pub failures: Vec<Outcome>,
}

/// Runs `count` schedules from seed `first`.
pub fn run_many(first: u64, count: u64, model: Model) -> Summary {
    run_many_with(first, count, model, Faults::default(), false)
}

/// Runs `count` schedules from seed `first` with `faults`; with `stop_at_first`, stops at the
/// first failing schedule.
pub fn run_many_with(first: u64, count: u64, model: Model, faults: Faults, stop_at_first: bool) -> Summary {
    let mut seen = std::collections::HashSet::new();
    let mut orders = std::collections::HashSet::new();
    let mut s = Summary::default();
    for seed in first..first + count {
        let o = run_with(seed, model, faults, false);
        s.schedules += 1;
        s.steps += o.steps;
        s.published += o.published as u64;
        s.crashes += o.crashes as u64;
        seen.insert(o.trace_hash);
        orders.insert(o.order_hash);
        if !o.violations.is_empty() {
            s.failures.push(o);
            if stop_at_first {
                break;
            }
        }
    }
    s.distinct = seen.len() as u64;
    s.distinct_orders = orders.len() as u64;
    s
}
