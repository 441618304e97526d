//! The phases of a run: traffic for a duration, or around a deploy command (warm-up, the
//! command, settle), stopped early by a signal. The command runs in its own process group, so
//! stopping it stops everything it started: SIGTERM to the group, then SIGKILL after a grace
//! period, with `kill(2)` on the group (no `kill` program). A command that fails ends the run at
//! once: its outcome is the verdict, not the loads after it.

use std::path::Path;
use std::time::{Duration, Instant};

use deskew_core::cancel::Cancel;
use serde::{Deserialize, Serialize};

use crate::ProbeError;

/// When traffic stops.
#[derive(Clone, Debug)]
pub enum Until {
    /// After this long.
    Duration(Duration),
    /// Around a command: warm up, run it, keep going for `settle` after it succeeds.
    Command {
        /// The command and its arguments.
        argv: Vec<String>,
        /// Traffic before the command starts.
        warmup: Duration,
        /// Traffic after the command exits.
        settle: Duration,
    },
    /// Until `stop` is cancelled (a detached probe told to finish), or at most `max`.
    Stop {
        /// Cancelled when the run should end normally (not an interruption).
        stop: Cancel,
        /// The longest the run may last without being stopped.
        max: Duration,
    },
}

/// What happened to the deploy command.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandRecord {
    /// The command line.
    pub argv: Vec<String>,
    /// When it started, ms since the probe started.
    pub started_ms: u64,
    /// When it ended, ms since the probe started.
    pub ended_ms: Option<u64>,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Whether it succeeded.
    pub success: bool,
}

/// How the phases ended.
#[derive(Debug, Default)]
pub struct Phases {
    /// The deploy command, if there was one.
    pub command: Option<CommandRecord>,
    /// Whether a signal ended the run early.
    pub interrupted: bool,
    /// Whether an [`Until::Stop`] run ended at its `max` without being stopped.
    pub timed_out: bool,
}

/// How long a stopped command's group gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Checks, before any traffic, that the deploy command can be started: it exists and is
/// executable, found on PATH if it names no directory.
pub fn check_command(argv: &[String]) -> Result<(), ProbeError> {
    let Some(program) = argv.first() else {
        return Err(ProbeError::CommandNotFound { command: String::new(), hint: "the deploy command after `--` is empty".into() });
    };
    let found = if program.contains('/') {
        is_executable(Path::new(program))
    } else {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program))))
    };
    if found {
        return Ok(());
    }
    let hint = if argv.len() == 1 && program.contains(' ') {
        format!(
            "it is one word holding spaces: give the words separately after `--` (`-- {program}`), or run it through a shell (`-- sh -c {}`)",
            shell_quote(std::slice::from_ref(program))
        )
    } else {
        "no such executable file (checked PATH)".into()
    };
    Err(ProbeError::CommandNotFound { command: program.clone(), hint })
}

fn is_executable(p: &Path) -> bool {
    rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file()
}

/// The command line, quoted for a POSIX shell, so it can be pasted back.
pub fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Sleeps for `d` unless cancelled first; `true` if cancelled.
async fn wait(d: Duration, cancel: &Cancel) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cancel.cancelled() => true,
    }
}

/// Runs the phases of `until`.
pub async fn run(until: &Until, cancel: &Cancel, start: Instant) -> Result<Phases, ProbeError> {
    match until {
        Until::Duration(d) => Ok(Phases { interrupted: wait(*d, cancel).await, ..Phases::default() }),
        Until::Command { argv, warmup, settle } => {
            if wait(*warmup, cancel).await {
                return Ok(Phases { interrupted: true, ..Phases::default() });
            }
            let (rec, interrupted) = run_command(argv, cancel, start).await?;
            let interrupted = interrupted || (rec.success && wait(*settle, cancel).await);
            Ok(Phases { command: Some(rec), interrupted, timed_out: false })
        }
        Until::Stop { stop, max } => Ok(tokio::select! {
            _ = stop.cancelled() => Phases::default(),
            _ = cancel.cancelled() => Phases { interrupted: true, ..Phases::default() },
            _ = tokio::time::sleep(*max) => Phases { timed_out: true, ..Phases::default() },
        }),
    }
}

async fn run_command(argv: &[String], cancel: &Cancel, start: Instant) -> Result<(CommandRecord, bool), ProbeError> {
    let mut rec = CommandRecord { argv: argv.to_vec(), started_ms: ms(start.elapsed()), ended_ms: None, exit_code: None, success: false };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).kill_on_drop(true).process_group(0);
    let mut child = cmd.spawn().map_err(|source| ProbeError::Command { command: shell_quote(argv), source })?;
    let interrupted = tokio::select! {
        status = child.wait() => {
            if let Ok(status) = status {
                rec.exit_code = status.code();
                rec.success = status.success();
            }
            false
        }
        _ = cancel.cancelled() => {
            stop_group(&mut child).await;
            true
        }
    };
    rec.ended_ms = Some(ms(start.elapsed()));
    Ok((rec, interrupted))
}

/// Stops the command's process group: SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn stop_group(child: &mut tokio::process::Child) {
    use rustix::process::{Pid, Signal, kill_process_group};
    let Some(pgid) = child.id().and_then(|id| Pid::from_raw(id as i32)) else { return };
    let _ = kill_process_group(pgid, Signal::TERM);
    let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
    // Whatever else of the group lingers (the leader may have exited first) goes now.
    let _ = kill_process_group(pgid, Signal::KILL);
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_a_shell() {
        let argv: Vec<String> = ["kubectl", "rollout", "status", "deploy/web", "--timeout=5m", "it's here", ""].iter().map(|s| s.to_string()).collect();
        assert_eq!(shell_quote(&argv), r#"kubectl rollout status deploy/web --timeout=5m 'it'\''s here' ''"#);
    }

    #[test]
    fn a_missing_command_is_found_before_traffic() {
        let err = check_command(&["kubectl rollout status deploy/web".into()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("one word holding spaces") && msg.contains("sh -c 'kubectl rollout status deploy/web'"), "{msg}");
        assert!(check_command(&["sh".into(), "-c".into(), "true".into()]).is_ok());
        assert!(check_command(&["/no/such/thing".into()]).is_err());
    }
}
