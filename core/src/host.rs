//! What the engines need from the machine they run on: the time, a way to wait, unique tokens
//! and a name for messages.
//!
//! The publish and GC engines never read the system clock or sleep directly; they go through a
//! [`Host`]. Production code uses [`SystemHost`]. The deterministic simulation (`tests/sim`)
//! gives each actor a host of its own with a skewed virtual clock, so that one seed decides every
//! time, every wait and every token, and a failing schedule replays exactly.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::time::Timestamp;

/// A boxed future, as [`Host::sleep`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The time, sleeping and unique tokens.
pub trait Host: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time on this host (it may differ from other hosts' by up to the
    /// store's clock-skew allowance).
    fn now(&self) -> Timestamp;
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    /// A token no other call on any host returns: 16 hex digits.
    fn unique(&self) -> String;
    /// Who is acting, for lease and heartbeat messages: `host:pid`.
    fn holder(&self) -> String;
    /// A shared handle to this host, for checks that run later on another thread.
    fn handle(&self) -> HostRef;
    /// This process, as only this machine can check it later: boot, PID namespace and pid
    /// (`None` where that cannot be told).
    fn process(&self) -> Option<String> {
        None
    }
    /// Whether `process` (from [`Host::process`], maybe another host's) is a process of this
    /// machine that has ended. `false` when in doubt: a live lease must never look dead.
    fn is_dead(&self, _process: &str) -> bool {
        false
    }
}

/// The real machine: system clock, tokio timers, OS-seeded random tokens.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemHost;

static UNIQUE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Host for SystemHost {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }

    fn unique(&self) -> String {
        // `RandomState` is seeded from the OS's random source once per thread and varies its keys
        // per instance; the counter keeps two calls in one thread apart even so. Two containers
        // with the same PID get different tokens.
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(UNIQUE_COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        format!("{:016x}", h.finish())
    }

    fn holder(&self) -> String {
        let host = std::env::var("HOSTNAME").ok().or_else(|| std::fs::read_to_string("/etc/hostname").ok());
        let host = host.as_deref().map(str::trim).filter(|h| !h.is_empty()).unwrap_or("unknown-host").to_string();
        format!("{host}:{}", std::process::id())
    }

    fn handle(&self) -> HostRef {
        std::sync::Arc::new(SystemHost)
    }

    fn process(&self) -> Option<String> {
        Some(format!("{}/{}", machine()?, std::process::id()))
    }

    fn is_dead(&self, process: &str) -> bool {
        let Some((machine_part, pid)) = process.rsplit_once('/') else { return false };
        if machine().as_deref() != Some(machine_part) {
            return false; // another machine or PID namespace: only time tells
        }
        let Some(pid) = pid.parse::<i32>().ok().filter(|&p| p > 0).and_then(rustix::process::Pid::from_raw) else { return false };
        // Signal 0 asks the kernel, which answers for every process of this namespace; /proc may
        // hide other users' processes (`hidepid=2`), so a missing /proc entry proves nothing.
        match rustix::process::test_kill_process(pid) {
            Err(rustix::io::Errno::SRCH) => true,
            _ => is_zombie(pid),
        }
    }
}

/// A zombie has ended; only its parent has not collected it yet. `false` when /proc does not
/// say (hidden, or gone).
fn is_zombie(pid: rustix::process::Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// This boot of this machine and this PID namespace: `<boot id>/<pid namespace inode>`. Two
/// processes with equal machine parts see the same pids.
fn machine() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let ns = ns.to_str()?.trim_start_matches("pid:[").trim_end_matches(']').to_string();
    Some(format!("{}/{ns}", boot.trim()))
}

/// A shared handle to a host.
pub type HostRef = std::sync::Arc<dyn Host>;

/// The system host as a shared handle.
pub fn system() -> HostRef {
    std::sync::Arc::new(SystemHost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_dead_local_process() {
        let h = SystemHost;
        let me = h.process().expect("Linux tells");
        assert!(!h.is_dead(&me), "this process is alive");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let (machine, _) = me.rsplit_once('/').unwrap();
        assert!(h.is_dead(&format!("{machine}/{pid}")), "an ended process is dead");
        assert!(!h.is_dead(&format!("another-boot/4026531836/{pid}")), "another machine's process is never judged");
        assert!(!h.is_dead("garbage"));
        assert!(!h.is_dead(&format!("{machine}/-1")), "never a process group");
        assert!(!h.is_dead(&format!("{machine}/0")));
    }

    #[test]
    fn a_zombie_is_dead_and_pid_one_is_alive() {
        let h = SystemHost;
        let me = h.process().expect("Linux tells");
        let (machine, _) = me.rsplit_once('/').unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not collected yet: a zombie until `wait`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !h.is_dead(&format!("{machine}/{pid}")) {
            assert!(std::time::Instant::now() < deadline, "the exited child never looked dead");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
        assert!(!h.is_dead(&format!("{machine}/1")), "init is alive, whoever owns it");
    }

    #[test]
    fn unique_tokens_differ() {
        let h = SystemHost;
        let a: std::collections::HashSet<String> = (0..1000).map(|_| h.unique()).collect();
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|t| t.len() == 16));
    }
}
