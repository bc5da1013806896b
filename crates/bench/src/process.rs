//! Processes: forking a peer that runs a closure, reaping it, and pinning
//! processes to CPUs.
//!
//! # Safety
//! `fork` is `unsafe` because the child of a multi-threaded parent may only rely
//! on what the forking thread owns: the child runs the given closure (which uses
//! objects the forking thread created: descriptors, mappings, channel ends) and
//! leaves with `_exit`, so it never returns into the parent's code, never runs
//! `atexit` handlers, and never flushes buffers inherited from the parent.
#![allow(unsafe_code)]

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getppid};

/// Exit code of a child whose closure returned an error.
const CHILD_FAILED: i32 = 1;
/// Exit code of a child whose closure panicked.
const CHILD_PANICKED: i32 = 101;

/// A forked child, killed and reaped on drop unless [`Child::wait`] reaped it.
#[derive(Debug)]
pub(crate) struct Child {
    pid: Option<Pid>,
}

/// Forks a child that pins itself to `cpu` (if any), runs `body`, and exits: 0
/// if `body` returned `Ok`, 1 on error (printed to stderr), 101 on panic. The
/// child also asks to be killed if its parent dies, so that a spinning peer is
/// never left behind.
pub(crate) fn spawn<F>(cpu: Option<usize>, body: F) -> std::io::Result<Child>
where
    F: FnOnce() -> Result<(), Box<dyn std::error::Error>>,
{
    let parent = nix::unistd::getpid();
    // SAFETY: see the module docs: the child only runs `body` and `_exit`s.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                if getppid() != parent {
                    return Err("parent gone before the child started".into());
                }
                if let Some(cpu) = cpu {
                    pin_to(cpu);
                }
                body()
            })) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    // A plain write(2): `eprintln!` takes a lock that another thread
                    // of the parent may have held when we forked.
                    let line = format!("shmq-bench child {}: {e}\n", std::process::id());
                    let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
                    CHILD_FAILED
                }
                Err(_) => CHILD_PANICKED,
            };
            exit_now(code)
        }
        ForkResult::Parent { child } => Ok(Child { pid: Some(child) }),
    }
}

/// Leaves the process at once, without running `atexit` handlers or flushing
/// stdio buffers copied from the parent.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

impl Child {
    /// Waits for the child to exit; `Err` unless it exited with status 0.
    pub(crate) fn wait(mut self) -> Result<(), String> {
        let Some(pid) = self.pid.take() else {
            return Ok(());
        };
        reap(pid)
    }

    /// Whether the child has ended, without reaping it (so that [`Child::wait`]
    /// still reports how): for a parent that spins on shared memory and must not
    /// spin for ever after a dead peer.
    pub(crate) fn has_exited(&self) -> bool {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let Some(pid) = self.pid else {
            return true;
        };
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        !matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive))
    }

    /// How the child failed, if it has ended other than with status 0, without
    /// reaping it (so that [`Child::wait`] still reports it): `None` while it
    /// runs or if it succeeded.
    pub(crate) fn failure(&self) -> Option<String> {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let pid = self.pid?;
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::Exited(_, 0)) | Ok(WaitStatus::StillAlive) | Err(_) => None,
            Ok(WaitStatus::Exited(_, code)) => {
                Some(format!("process {pid} exited with status {code}"))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("process {pid} killed by {sig}")),
            Ok(_) => None,
        }
    }

    /// Gives up ownership of the pid (someone else reaps it).
    pub(crate) fn into_pid(mut self) -> Option<Pid> {
        self.pid.take()
    }
}

/// Waits for `pid` and describes how it ended unless it exited with status 0.
pub(crate) fn reap(pid: Pid) -> Result<(), String> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => {
                return Err(format!("peer process exited with status {code}"));
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(format!("peer process killed by {sig}"));
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = reap(pid);
        }
    }
}

/// The CPUs this process may run on, in order.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Two different CPUs for the two sides of a measurement, if there are two.
pub(crate) fn cpu_pair() -> Option<(usize, usize)> {
    let cpus = allowed_cpus();
    match cpus.as_slice() {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    }
}

/// Pins the calling thread's process to `cpu` (best effort: a restricted cpuset
/// just leaves it unpinned).
pub(crate) fn pin_to(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// Pins this process to a CPU until dropped, then restores the old mask.
pub(crate) struct Pinned {
    old: Option<CpuSet>,
}

impl Pinned {
    /// Pins to `cpu`, or does nothing for `None`.
    pub(crate) fn to(cpu: Option<usize>) -> Pinned {
        let Some(cpu) = cpu else {
            return Pinned { old: None };
        };
        let old = sched_getaffinity(Pid::from_raw(0)).ok();
        pin_to(cpu);
        Pinned { old }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(old) = self.old.take() {
            let _ = sched_setaffinity(Pid::from_raw(0), &old);
        }
    }
}
