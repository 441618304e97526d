//! The state directory of a detached probe: what the start, deploy and stop steps of a pipeline
//! share (a workspace or a volume, not a process).
//!
//! ```text
//! DIR/lock          flock(2)ed by the background probe for its whole life: liveness without
//!                   trusting a pid (a pid may be reused; a lock dies with its process)
//! DIR/probe.json    who it is: pid, start time, command line, --max-duration
//! DIR/status.json   a heartbeat every second: loads and failures so far, the phase
//! DIR/stop.json     written by `probe stop`: finish after this settle time
//! DIR/report.json   the final report, written (atomically) before the process exits
//! DIR/error.json    why it could not start or run, if so
//! DIR/probe.log     its stderr
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use deskew_core::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Format version of the state files.
pub const STATE_VERSION: u32 = 1;

/// `probe.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Identity {
    pub version: u32,
    /// Chosen by the start step and handed to the worker: tells this probe from any other that
    /// used the directory before or after it.
    pub token: String,
    pub pid: u32,
    pub started: Timestamp,
    pub argv: Vec<String>,
    pub max_duration_ms: u64,
}

/// `status.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: u32,
    pub token: String,
    pub pid: u32,
    /// When it was written.
    pub updated: Option<Timestamp>,
    pub loads: usize,
    pub failed: usize,
    /// `probing`, `stopping` (settling after a stop request), `done`.
    pub phase: String,
}

/// `stop.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StopRequest {
    pub version: u32,
    pub requested: Timestamp,
    pub settle_ms: u64,
}

/// `done.json`: written after `report.json`, binding it to the probe that wrote it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Done {
    pub version: u32,
    pub token: String,
    /// sha256 of `report.json`'s bytes.
    pub report_sha256: String,
}

/// `error.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Failure {
    pub version: u32,
    pub message: String,
}

/// A state directory.
#[derive(Clone, Debug)]
pub struct StateDir(PathBuf);

/// Whether a probe holds the directory's lock.
pub enum Liveness {
    /// A probe is running (it holds the lock).
    Alive,
    /// No probe runs; the lock is now ours, held until this is dropped.
    Free(File),
}

impl StateDir {
    pub fn new(dir: &Path) -> StateDir {
        StateDir(dir.to_path_buf())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// Tries to take the lock without waiting.
    pub fn liveness(&self) -> Result<Liveness> {
        let path = self.path("lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).with_context(|| format!("failed to open `{}`", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Liveness::Free(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(Liveness::Alive),
            Err(e) => Err(std::io::Error::from(e)).with_context(|| format!("failed to lock `{}`", path.display())),
        }
    }

    /// Reads `name` as JSON; `None` if it does not exist.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| format!("`{}` is not a deskew probe state file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read `{}`", path.display())),
        }
    }

    /// Writes `name` as JSON atomically (a temporary file, then a rename): a reader never sees half.
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.write_raw(name, &serde_json::to_vec_pretty(value).expect("state serializes"))
    }

    /// Writes `name` atomically, readable by its owner only (it may name what was probed).
    pub fn write_raw(&self, name: &str, body: &[u8]) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::options().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(body)?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("failed to write `{}`", path.display()))
    }

    /// Removes what a previous probe left (never the log, which is appended to).
    pub fn clear(&self) -> Result<()> {
        for name in ["probe.json", "status.json", "stop.json", "report.json", "done.json", "error.json"] {
            match std::fs::remove_file(self.path(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("failed to remove `{}`", self.path(name).display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The last `n` lines of the log, for messages about a probe that failed or died.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.path("probe.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return "(the log is empty)".into();
        }
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}
