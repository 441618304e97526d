//! Starting and stopping Chromium.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::cdp::Connection;
use crate::ProbeError;

/// The flags that make Chromium work headless as root in a container, with no network of its own.
/// Tabs in flight at once are all foreground (no timer throttling or lower priority for the
/// others), a page left is not kept alive in the back/forward cache, and no window is opened
/// until a load asks for one. A window's own user interface (the omnibox popup and reload button,
/// pages of the browser's UI) would take a renderer process of its own, about 60 MB for every
/// tab in flight: those features are off.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-features=BackForwardCache,Translate,MediaRouter,OptimizationHints,WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIReloadButton",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// How to start the browser.
#[derive(Clone, Debug, Default)]
pub struct BrowserOptions {
    /// The executable; `None` looks for `chromium`, `chromium-browser`, `google-chrome` on PATH.
    pub executable: Option<PathBuf>,
    /// More command-line flags (`--host-resolver-rules=…` for `--resolve`,
    /// `--ignore-certificate-errors` for `--insecure`).
    pub extra_args: Vec<String>,
}

/// A running browser. Dropping it kills its whole process group and removes its profile.
pub struct Browser {
    /// The protocol connection.
    pub conn: Connection,
    child: tokio::process::Child,
    pgid: Option<u32>,
    _profile: tempfile::TempDir,
    /// `Chromium 156.0…`.
    pub version: String,
}

/// Finds the browser executable.
pub fn find(opts: &BrowserOptions) -> Result<PathBuf, ProbeError> {
    const HINT: &str = "install Chromium (Debian: apt-get install chromium) or name it with --browser PATH";
    if let Some(p) = &opts.executable {
        return if p.is_file() { Ok(p.clone()) } else { Err(ProbeError::Browser(format!("no browser at `{}`: {HINT}", p.display()))) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(ProbeError::Browser(format!("Chromium was not found on PATH: {HINT}")))
}

/// How many times a browser that dies while starting is started again before the probe gives up.
const LAUNCH_ATTEMPTS: u32 = 3;

/// How long one start may take to open its DevTools port. A warm start takes well under a
/// second; the first start on a machine whose page cache lost the browser (after a large build)
/// reads some 300 MB from disk, and on a slow CI disk that took more than 30 s.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The last lines the browser printed before it failed to start, for the error message (its
/// D-Bus complaints are noise in a container and left out).
#[derive(Default)]
struct Tail(std::collections::VecDeque<String>);

impl Tail {
    const LINES: usize = 5;

    fn push(&mut self, line: String) {
        if line.trim().is_empty() || line.contains("dbus") || line.contains("DBus") {
            return;
        }
        if self.0.len() == Self::LINES {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }
}

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, "; it said:")?;
        for line in &self.0 {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

/// Why one start failed.
enum LaunchFailure {
    /// It started and died before it could be used (killed, crashed, out of memory): worth
    /// another try, as a crash later in the run is.
    Died(ProbeError),
    /// Not there, not startable, or silent for [`START_TIMEOUT`]: trying again would only repeat it.
    Fatal(ProbeError),
}

impl Browser {
    /// Starts the browser and connects to it; one that dies while starting is started again,
    /// up to [`LAUNCH_ATTEMPTS`] times. Also how many times it died first (restarts too).
    pub async fn launch(opts: &BrowserOptions) -> Result<(Browser, u64), ProbeError> {
        let mut attempt = 1;
        loop {
            match Browser::launch_once(opts).await {
                Ok(b) => return Ok((b, u64::from(attempt - 1))),
                Err(LaunchFailure::Died(e)) if attempt < LAUNCH_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!("{e}\nstarting it again (start {attempt} of {LAUNCH_ATTEMPTS})");
                }
                Err(LaunchFailure::Died(e) | LaunchFailure::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn launch_once(opts: &BrowserOptions) -> Result<Browser, LaunchFailure> {
        use LaunchFailure::{Died, Fatal};
        let exe = find(opts).map_err(Fatal)?;
        let profile = tempfile::Builder::new()
            .prefix("deskew-chromium-")
            .tempdir()
            .map_err(|e| Fatal(ProbeError::Browser(format!("cannot make a profile directory: {e}"))))?;
        // Chromium's own temp files go inside the profile too, so removing the profile leaves
        // nothing behind even after a kill.
        let tmp = profile.path().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Fatal(ProbeError::Browser(format!("cannot make a temp directory: {e}"))))?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.env("TMPDIR", &tmp)
            .args(FLAGS)
            .args(&opts.extra_args)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--no-startup-window")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| Fatal(ProbeError::Browser(format!("failed to start `{}`: {e}", exe.display()))))?;
        let pgid = child.id();
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut said = Tail::default();
        let ws = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(i) = line.find("ws://") {
                    return Some(line[i..].trim().to_string());
                }
                said.push(line);
            }
            None
        })
        .await;
        // Keep draining stderr so the browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut browser_guard = Guard { pgid, done: false };
        let ws = match ws {
            Ok(Some(ws)) => ws,
            Ok(None) => return Err(Died(ProbeError::Browser(format!("`{}` exited before it opened its DevTools port{said}", exe.display())))),
            Err(_) => {
                let secs = START_TIMEOUT.as_secs();
                return Err(Fatal(ProbeError::Browser(format!("`{}` did not open its DevTools port within {secs}s{said}", exe.display()))));
            }
        };
        let conn = Connection::connect(&ws).await.map_err(|e| Died(ProbeError::Browser(format!("the browser died while connecting: {e}"))))?;
        let version = conn
            .call(None, "Browser.getVersion", serde_json::json!({}))
            .await
            .ok()
            .and_then(|v| v.get("product").and_then(|p| p.as_str()).map(str::to_string))
            .unwrap_or_default();
        browser_guard.done = true;
        Ok(Browser { conn, child, pgid, _profile: profile, version })
    }

    /// The process group id (the browser's pid).
    pub fn pgid(&self) -> Option<u32> {
        self.pgid
    }

    /// Whether the browser process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// The memory of a browser (its process, `root`) and all its descendants, in bytes (Linux; zero
/// elsewhere): the RSS summed over them, and their PSS, where each shared page (the browser's
/// code, mapped by every renderer) counts once across them instead of once per process.
/// Blocking: it reads `/proc`.
pub fn memory(root: u32) -> Memory {
    let pids = tree(root);
    Memory { rss_bytes: pids.iter().map(|p| proc_stat(*p).map_or(0, |s| s.rss_bytes)).sum(), pss_bytes: pids.into_iter().map(pss_bytes).sum() }
}

/// See [`memory`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// RSS summed over the processes.
    pub rss_bytes: u64,
    /// PSS summed over the processes.
    pub pss_bytes: u64,
}

/// Kills the group if launching fails half-way.
struct Guard {
    pgid: Option<u32>,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            kill_group(self.pgid);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(self.pgid);
        let _ = self.child.start_kill();
    }
}

/// Kills the browser's process group and every descendant (Chromium's zygote and renderers may
/// leave the group), then waits up to two seconds until none is left alive.
fn kill_group(pgid: Option<u32>) {
    let Some(root) = pgid else { return };
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process, kill_process_group};
        let pids = tree(root);
        if let Some(group) = Pid::from_raw(root as i32) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        for pid in pids.iter().filter_map(|p| Pid::from_raw(*p as i32)) {
            let _ = kill_process(pid, Signal::KILL);
        }
        for _ in 0..40 {
            if !pids.iter().any(|p| proc_stat(*p).is_some_and(|s| s.state != 'Z')) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

struct ProcStat {
    state: char,
    rss_bytes: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    use procfs::WithCurrentSystemInfo;
    let stat = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some(ProcStat { state: stat.state, rss_bytes: stat.rss_bytes().get() })
}

/// The `Pss:` line of `/proc/PID/smaps_rollup`, in bytes; 0 for a process gone meanwhile.
fn pss_bytes(pid: u32) -> u64 {
    let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { return 0 };
    parse_pss_kb(&rollup).map_or(0, |kb| kb * 1024)
}

fn parse_pss_kb(rollup: &str) -> Option<u64> {
    let value = rollup.lines().find_map(|l| l.strip_prefix("Pss:"))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// `root` and all its descendants.
fn tree(root: u32) -> Vec<u32> {
    let Ok(all) = procfs::process::all_processes() else { return vec![root] };
    let parents: Vec<(u32, u32)> =
        all.flatten().filter_map(|p| p.stat().ok()).filter_map(|s| Some((u32::try_from(s.pid).ok()?, u32::try_from(s.ppid).ok()?))).collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_is_read_from_its_own_line_of_smaps_rollup() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:              204800 kB\nPss:               51234 kB\nPss_Anon:          40000 kB\n";
        assert_eq!(parse_pss_kb(rollup), Some(51234));
        assert_eq!(parse_pss_kb("Rss: 10 kB\n"), None);
        assert_eq!(parse_pss_kb("Pss: many kB\n"), None);
        // The running test process has some.
        assert!(pss_bytes(std::process::id()) > 0);
        assert_eq!(pss_bytes(u32::MAX), 0);
    }

    #[test]
    fn a_failed_start_quotes_the_browsers_last_lines_without_its_dbus_noise() {
        let mut tail = Tail::default();
        assert_eq!(tail.to_string(), "", "nothing said, nothing added");
        tail.push("[1:2:ERROR:dbus/bus.cc:405] Failed to connect to the bus".into());
        tail.push("   ".into());
        assert_eq!(tail.to_string(), "");
        for i in 0..7 {
            tail.push(format!("line {i}"));
        }
        assert_eq!(tail.to_string(), "; it said:\n  line 2\n  line 3\n  line 4\n  line 5\n  line 6");
    }
}
