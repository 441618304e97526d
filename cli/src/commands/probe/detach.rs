//! `deskew probe URL --detach --state DIR`: the probe as a background process that outlives the
//! pipeline step starting it. The step starts the same binary with the same options (plus the
//! hidden `--worker`) in its own session, its output going to `DIR/probe.log`, and returns once
//! the first loads have completed, or fails with the reason. The worker keeps a heartbeat, waits
//! for `probe stop` (or `--max-duration`), and leaves its report in DIR for `probe stop` to judge.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use deskew_core::cancel::Cancel;
use deskew_core::time::Timestamp;
use deskew_probe::run::OnSample;
use deskew_probe::{LoadSample, Report, Until};

use super::state::{Done, Failure, Heartbeat, Identity, Liveness, STATE_VERSION, StateDir, StopRequest};
use crate::Status;
use crate::args::ProbeArgs;
use crate::printer::Printer;

/// How the start step hands the worker its identity token.
const TOKEN_ENV: &str = "DESKEW_DETACH_TOKEN";

/// The command line with credential values replaced by `***`.
fn redacted(argv: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in argv {
        if hide_next {
            out.push("***".into());
            hide_next = false;
        } else if let Some((opt, _)) = a.split_once('=').filter(|_| crate::config::is_credential_flag(&a)) {
            out.push(format!("{opt}=***"));
        } else {
            hide_next = crate::config::is_credential_flag(&a);
            out.push(a);
        }
    }
    out
}

/// How long the start step waits for the first loads (beyond one request timeout).
const START_WAIT: Duration = Duration::from_secs(60);

/// Starts the background probe and waits until its traffic flows.
pub async fn start(a: &ProbeArgs, printer: &Printer) -> Result<Status> {
    if !a.command.is_empty() {
        bail!(
            "--detach runs the probe in the background: run the deploy as its own step, then `deskew probe stop --state DIR`; a deploy command after `--` is for the wrapping form"
        );
    }
    if a.duration.is_some() {
        bail!("--detach runs until `deskew probe stop`; use --max-duration to bound it, not --duration");
    }
    let dir = StateDir::new(a.state.as_deref().expect("clap requires --state with --detach"));
    std::fs::create_dir_all(dir.dir()).with_context(|| format!("failed to create the state directory `{}`", dir.dir().display()))?;
    let lock = match dir.liveness()? {
        Liveness::Alive => {
            let who = dir.read::<Identity>("probe.json").ok().flatten().map(|i| format!(" (pid {}, started {})", i.pid, i.started)).unwrap_or_default();
            bail!("`{}` holds a running probe{who}: stop it first with `deskew probe stop --state {}`", dir.dir().display(), dir.dir().display());
        }
        Liveness::Free(lock) => lock,
    };
    dir.clear()?;
    drop(lock);
    let token = deskew_core::host::Host::unique(&deskew_core::host::SystemHost);
    let mut child = spawn_worker(&dir, &token)?;
    let started = Instant::now();
    loop {
        // Our own worker's heartbeat: another start racing for DIR has another token.
        if let Some(h) = dir.read::<Heartbeat>("status.json").ok().flatten().filter(|h| h.loads > 0 && h.token == token && h.pid == child.id()) {
            printer.status(
                "Detached",
                format_args!(
                    "probe pid {} is loading {} ({} loads so far); finish it with `deskew probe stop --state {}`",
                    h.pid,
                    super::page(a),
                    h.loads,
                    dir.dir().display()
                ),
            );
            return Ok(Status::Ok);
        }
        if let Some(status) = child.try_wait().context("failed to watch the background probe")? {
            let why = match dir.read::<Failure>("error.json")? {
                Some(f) => f.message,
                None => format!("it exited ({status}) before any load completed; its log ends:\n{}", dir.log_tail(10)),
            };
            bail!("the background probe did not start: {why}");
        }
        if started.elapsed() > START_WAIT + a.timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no load completed within {}s; the background probe was stopped; its log ends:\n{}", (START_WAIT + a.timeout).as_secs(), dir.log_tail(10));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// This binary again, with the same options, `--worker` instead of `--detach`, output to the log.
fn spawn_worker(dir: &StateDir, token: &str) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("failed to find the deskew executable")?;
    // Last: there is no `--` (--detach refuses a deploy command), and every option has its value.
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--detach").collect();
    args.push("--worker".into());
    // The options reach the worker through an owner-only file, not its command line, which any
    // local user can read (`ps`): they may hold credentials (--header, --basic-auth, --cookie).
    let args_file = dir.path(WORKER_ARGS);
    dir.write(WORKER_ARGS, &args)?;
    let log_path = dir.path("probe.log");
    let log = std::fs::File::options().create(true).append(true).open(&log_path).with_context(|| format!("failed to open `{}`", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(WORKER_VERB).arg(&args_file).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).env("NO_COLOR", "1").env(TOKEN_ENV, token);
    cmd.spawn().context("failed to start the background probe")
}

/// The hidden first argument that starts a worker from its arguments file.
pub const WORKER_VERB: &str = "__probe-worker";
const WORKER_ARGS: &str = ".worker-args.json";
/// The worker's own options, as read from its arguments file.
static WORKER_ARGV: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// The worker's command line: `deskew __probe-worker FILE` becomes `deskew ARGS…` (the file is
/// read once and removed). Any other command line is returned as it is.
pub fn worker_argv(argv: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>> {
    if argv.len() != 3 || argv[1] != WORKER_VERB {
        return Ok(argv);
    }
    let path = std::path::PathBuf::from(&argv[2]);
    let body = std::fs::read(&path).with_context(|| format!("failed to read the worker's arguments `{}`", path.display()))?;
    let _ = std::fs::remove_file(&path);
    let args: Vec<String> = serde_json::from_slice(&body).with_context(|| format!("`{}` is not a worker's arguments", path.display()))?;
    let _ = WORKER_ARGV.set(args.clone());
    Ok(std::iter::once(argv[0].clone()).chain(args.into_iter().map(Into::into)).collect())
}

/// The background process's side: lock, identity, heartbeat, stop requests, final report.
pub struct Worker {
    dir: StateDir,
    token: String,
    /// Its state directory no longer names it (removed, replaced): it ends without writing there.
    lost: Arc<std::sync::atomic::AtomicBool>,
    _lock: std::fs::File,
    stop: Cancel,
    max: Duration,
    loads: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// Takes the state directory's lock, leaves the pipeline step's session, writes who it is,
    /// and starts the heartbeat and the watch for a stop request.
    pub fn start(dir: &std::path::Path, max: Duration) -> Result<Worker> {
        // Its own session: the step's end (a process-group kill, a closed terminal) is not ours.
        let _ = rustix::process::setsid();
        let dir = StateDir::new(dir);
        let Liveness::Free(lock) = dir.liveness()? else {
            bail!("`{}` holds a running probe", dir.dir().display());
        };
        let token = std::env::var(TOKEN_ENV).unwrap_or_else(|_| deskew_core::host::Host::unique(&deskew_core::host::SystemHost));
        let me = Identity {
            version: STATE_VERSION,
            token: token.clone(),
            pid: std::process::id(),
            started: Timestamp::now(),
            argv: redacted(WORKER_ARGV.get().cloned().unwrap_or_else(|| std::env::args().skip(1).collect()).into_iter()),
            max_duration_ms: max.as_millis() as u64,
        };
        dir.write("probe.json", &me)?;
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut w = Worker { dir, token, lost, _lock: lock, stop: Cancel::new(), max, loads: Arc::default(), failed: Arc::default(), tasks: Vec::new() };
        w.tasks.push(w.heartbeat());
        w.tasks.push(w.watch_for_stop());
        Ok(w)
    }

    /// Probe until stopped, or `--max-duration`.
    pub fn until(&self) -> Until {
        Until::Stop { stop: self.stop.clone(), max: self.max }
    }

    /// Counts loads for the heartbeat, then calls `inner` (the log's progress lines).
    pub fn on_sample(&self, inner: OnSample) -> OnSample {
        let (loads, failed) = (self.loads.clone(), self.failed.clone());
        Box::new(move |s: &LoadSample, n, f| {
            loads.store(n, Ordering::Relaxed);
            failed.store(f, Ordering::Relaxed);
            inner(s, n, f);
        })
    }

    fn beat(dir: &StateDir, token: &str, loads: &AtomicUsize, failed: &AtomicUsize, phase: &str) {
        let h = Heartbeat {
            version: STATE_VERSION,
            token: token.to_string(),
            pid: std::process::id(),
            updated: Some(Timestamp::now()),
            loads: loads.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            phase: phase.into(),
        };
        if let Err(e) = dir.write("status.json", &h) {
            tracing::warn!("{e:#}");
        }
    }

    /// Writes the heartbeat every 50 ms until the first load lands (the start step waits for
    /// it), then every second.
    fn heartbeat(&self) -> tokio::task::JoinHandle<()> {
        let (dir, loads, failed) = (self.dir.clone(), self.loads.clone(), self.failed.clone());
        let (token, lost, stop) = (self.token.clone(), self.lost.clone(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                if dir.read::<Identity>("probe.json").ok().flatten().is_none_or(|i| i.token != token) {
                    anstream::eprintln!(
                        "probe: `{}` no longer names this probe (removed or replaced): ending without writing there",
                        dir.path("probe.json").display()
                    );
                    lost.store(true, Ordering::SeqCst);
                    stop.cancel();
                    return;
                }
                let phase = if dir.path("stop.json").exists() { "stopping" } else { "probing" };
                Worker::beat(&dir, &token, &loads, &failed, phase);
                let first = loads.load(Ordering::Relaxed) == 0;
                tokio::time::sleep(if first { Duration::from_millis(50) } else { Duration::from_secs(1) }).await;
            }
        })
    }

    fn watch_for_stop(&self) -> tokio::task::JoinHandle<()> {
        let (dir, stop) = (self.dir.clone(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                match dir.read::<StopRequest>("stop.json") {
                    Ok(Some(req)) => {
                        let settle = Duration::from_millis(req.settle_ms);
                        anstream::eprintln!("probe: stop requested at {}; settling for {}", req.requested, humantime::format_duration(settle));
                        tokio::time::sleep(settle).await;
                        stop.cancel();
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => anstream::eprintln!("probe: ignoring an unreadable stop request: {e:#}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// The run failed: say why in DIR for the start step (or `probe stop`) to report.
    pub fn failed(self, e: anyhow::Error) -> anyhow::Error {
        if !self.lost.load(Ordering::SeqCst) {
            let _ = self.dir.write("error.json", &Failure { version: STATE_VERSION, message: format!("{e:#}") });
        }
        self.end();
        e
    }

    /// The run ended: leave the report for `probe stop`.
    pub fn finish(self, report: &Report) -> Result<()> {
        self.end();
        if self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        let body = report.to_json();
        self.dir.write_raw("report.json", body.as_bytes())?;
        let done = Done { version: STATE_VERSION, token: self.token.clone(), report_sha256: deskew_core::digest::sha256_hex(body.as_bytes()) };
        self.dir.write("done.json", &done)?;
        Worker::beat(&self.dir, &self.token, &self.loads, &self.failed, "done");
        Ok(())
    }

    fn end(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// An error for a state directory that holds no detached probe.
pub fn not_started(dir: &StateDir) -> anyhow::Error {
    anyhow!(
        "`{}` holds no probe started with --detach (no `probe.json`): start one with `deskew probe URL --detach --state {}`",
        dir.dir().display(),
        dir.dir().display()
    )
}
