//! The cross-process test harness (catalogue rules R1–R5), shared by
//! `tests/segment.rs`, `tests/spsc.rs` and `tests/mpsc.rs`.
//!
//! - **Real processes (R2).** [`Spawn::role`] re-executes the current test binary
//!   as `<exe> --exact child_role --nocapture --test-threads=1` with
//!   `SHMQ_TEST_ROLE=<role>` and parameters in `SHMQ_TEST_ARG_<KEY>` variables;
//!   each test binary has a `child_role` test that runs [`child_main`], which
//!   does nothing when the variable is unset. [`Spawn::example`] runs the
//!   `producer`/`consumer` example programs from another working directory (built
//!   once by [`example_path`]). [`fork_child`] forks, but only inside a role
//!   process, whose only other thread is libtest's idle main thread.
//! - **Watchdog (R1).** Every multi-process test makes a [`Watchdog`]; a child
//!   that outlives its deadline gets its threads' `wchan`, system call and kernel
//!   stack printed, then every child of this process is killed and reaped and the
//!   test binary aborts. Children are spawned with `PR_SET_PDEATHSIG` and in their
//!   own process group; a [`Proc`] kills and reaps its whole group when dropped,
//!   and this process is a child subreaper, so grandchildren orphaned by a kill
//!   are reaped too (PID 1 in this container does not reap).
//! - **Failpoints (R3).** [`Spawn::failpoint`] arms `SHMQ_FAILPOINT` and hands
//!   the child the write end of a pipe (`SHMQ_FAILPOINT_FD`);
//!   [`Proc::wait_failpoint`] reads its `reached <name>` line.
//! - **Messages (R4).** [`msg`] is the examples' verifiable format; [`Verifier`]
//!   checks per-producer order with no gap and no duplicate.
//! - **No leftovers (R5).** [`Names`] hands out unique `/t-...` names and
//!   [`Names::assert_clean`] checks that none is left in `/dev/shm`, nor open or
//!   mapped in this process; role processes check their fd and mapping counts
//!   with [`shm_fds`] and [`shm_maps`].
//!
//! A child reports to the test through lines `@@shmq-event {json}` on its stdout
//! ([`emit`]), which [`Proc::event`] waits for.
//!
//! For the reliability catalogue (`tests/reliability_*.rs`, `tests/soak.rs`):
//! [`record`] is rule R4's format (producer, incarnation, sequence, send time,
//! checksum) checked by [`RecordVerifier`]; [`ends`] puts SPSC and MPSC endpoints
//! behind one type; [`RawRegion`] is a hostile peer's view of a segment (atomics
//! and raw copies only, with [`ring_off`] naming the control words);
//! [`Spawn::inherit_fd`] passes a descriptor to a role, [`Spawn::role_under`] runs
//! one under a wrapper (`strace`), [`Proc::try_wait_failpoint`] polls a failpoint;
//! [`cpu_ns`], [`rss_kib`], [`zombie_children`], [`shm_entries`] and
//! [`remove_stale`] measure and clean up.
#![allow(dead_code)] // each test binary uses part of the harness

#[path = "../../examples/common/msg.rs"]
pub mod msg;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::mpsc as chan;
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use serde_json::{Value, json};

/// Environment variable naming the role a re-executed test binary plays.
pub const ROLE_ENV: &str = "SHMQ_TEST_ROLE";
/// The test function every test binary defines to run roles.
pub const CHILD_TEST: &str = "child_role";
const ARG_PREFIX: &str = "SHMQ_TEST_ARG_";
const EVENT_MARK: &str = "@@shmq-event ";

/// Default watchdog deadline for a multi-process test.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// How long a test waits for one event from a child before giving up.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(45);
/// The detection budget the brief sets: SIGKILL to `Disconnected`.
pub const DEATH_BUDGET: Duration = Duration::from_millis(250);

/// `n` in release builds; a tenth of it in debug builds, which are ~10x slower.
pub fn scaled(n: u64) -> u64 {
    if cfg!(debug_assertions) {
        (n / 10).max(1)
    } else {
        n
    }
}

// ---------------------------------------------------------------------------
// Time and /proc helpers

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the host, so
/// a time taken in a child can be compared with one taken here.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own exclusively.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This thread's kernel id.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// The system call a thread is blocked in (`None` if it is running).
pub fn thread_syscall(pid: i32, tid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Waits until thread `tid` of `pid` is seen inside `futex(2)`: asleep in a
/// futex wait. Returns whether it was seen before `timeout`.
pub fn wait_in_futex(pid: i32, tid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if thread_syscall(pid, tid) == Some(libc::SYS_futex) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

/// The state letter of a process (`R`, `S`, `T`, `Z`, ...) from `/proc/<pid>/stat`.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

/// The state letters of every thread of `pid`.
fn thread_states(pid: i32) -> Vec<char> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    })
    .collect()
}

/// Waits until every thread of `pid` is stopped (state `T`).
pub fn wait_stopped(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let states = thread_states(pid);
        if !states.is_empty() && states.iter().all(|&s| s == 'T') {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Waits until every thread of `pid` has exited (the process is a zombie or
/// gone): only then has the kernel closed its files and released its locks. A
/// zombie leader alone is not enough: its other threads may still be exiting.
pub fn wait_dead(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if thread_states(pid).iter().all(|&s| s == 'Z' || s == 'X') {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Process group of `pid` from `/proc/<pid>/stat`.
fn proc_pgrp(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm)": state ppid pgrp ...
    s[s.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Every process whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| proc_pgrp(p) == Some(pgid))
        .collect()
}

/// What every thread of `pid` (and of the rest of its process group) is doing:
/// for the watchdog's report.
pub fn diagnose(pid: i32) -> String {
    let mut out = String::new();
    let mut pids = group_members(pid);
    if !pids.contains(&pid) {
        pids.insert(0, pid);
    }
    for p in pids {
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        out += &format!(
            "  process {p} ({}) state {:?}\n",
            comm.trim(),
            proc_state(p)
        );
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.filter_map(|e| e.ok()) {
            let tid = t.file_name().to_string_lossy().into_owned();
            let read = |f: &str| {
                std::fs::read_to_string(format!("/proc/{p}/task/{tid}/{f}"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|e| format!("<{e}>"))
            };
            out += &format!(
                "    thread {tid} ({}): wchan {} syscall {}\n",
                read("comm"),
                read("wchan"),
                read("syscall")
            );
            for line in read("stack").lines().take(12) {
                out += &format!("      {line}\n");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Children: registry, watchdog, spawning, reaping

/// Process groups of every child this process has spawned and not yet reaped.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes this process the reaper of its orphaned descendants (once).
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments and only sets a
        // flag of this process.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if r != 0 {
            eprintln!(
                "harness: PR_SET_CHILD_SUBREAPER failed ({}); orphaned grandchildren will not be reaped",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// SIGKILLs process group `pgid` and reaps its leader and any member that was
/// re-parented to us. Waits at most a few seconds.
fn kill_and_reap_group(pgid: i32, leader: Option<&mut Child>) {
    let _ = signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    if let Some(c) = leader {
        let _ = c.wait();
    } else {
        let _ = waitpid(Pid::from_raw(pgid), None);
    }
    reap_group(pgid);
}

/// Reaps members of `pgid` that became our children when their parent died.
fn reap_group(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        loop {
            match waitpid(Pid::from_raw(-pgid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let members = group_members(pgid);
        if members.is_empty() || Instant::now() >= deadline {
            return;
        }
        for m in &members {
            let _ = signal::kill(Pid::from_raw(*m), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Watched {
    pid: i32,
    label: String,
    log: Arc<Mutex<String>>,
}

struct WdState {
    done: bool,
    watched: Vec<Watched>,
}

type WdShared = Arc<(Mutex<WdState>, Condvar)>;

/// The per-test watchdog (R1): if the test is still running after its deadline,
/// it reports what every watched child is doing, kills and reaps every child
/// of this process, and aborts.
pub struct Watchdog {
    shared: WdShared,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// A watchdog with the default deadline.
    pub fn new(test: &str) -> Watchdog {
        Watchdog::with_limit(test, DEADLINE)
    }

    /// A watchdog that fires after `limit`.
    pub fn with_limit(test: &str, limit: Duration) -> Watchdog {
        become_subreaper();
        let shared: WdShared = Arc::new((
            Mutex::new(WdState {
                done: false,
                watched: Vec::new(),
            }),
            Condvar::new(),
        ));
        let s = shared.clone();
        let test = test.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("watchdog {test}"))
            .spawn(move || {
                let deadline = Instant::now() + limit;
                let (m, cv) = &*s;
                let mut g = lock(m);
                loop {
                    if g.done {
                        return;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        fire(&test, limit, &g.watched);
                    }
                    g = cv
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })
            .expect("spawn watchdog thread");
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    fn watch(&self, pid: i32, label: &str, log: Arc<Mutex<String>>) {
        lock(&self.shared.0).watched.push(Watched {
            pid,
            label: label.to_owned(),
            log,
        });
    }

    fn unwatch(shared: &WdShared, pid: i32) {
        lock(&shared.0).watched.retain(|w| w.pid != pid);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        lock(&self.shared.0).done = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fire(test: &str, limit: Duration, watched: &[Watched]) -> ! {
    let mut report = format!(
        "\nWATCHDOG: test `{test}` still running after {limit:?}; killing its children and aborting\n"
    );
    for w in watched {
        report += &format!("child {} ({}):\n{}", w.pid, w.label, diagnose(w.pid));
        report += &format!(
            "  output of {}:\n{}\n",
            w.label,
            indent(&lock(&w.log), "    | ")
        );
    }
    // Straight to file descriptor 2: libtest captures `eprintln!` of test threads
    // (and of threads they spawn), and the capture is lost when we abort.
    let _ = std::io::stderr().write_all(report.as_bytes());
    let groups: Vec<i32> = lock(&LIVE).clone();
    for g in groups {
        kill_and_reap_group(g, None);
    }
    std::process::abort();
}

fn indent(s: &str, prefix: &str) -> String {
    s.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// How a child is to be started; see [`Spawn::spawn`].
pub struct Spawn {
    cmd: Command,
    label: String,
    failpoint: Option<String>,
    /// Descriptors the child inherits across `exec` (same numbers).
    inherit: Vec<RawFd>,
}

impl Spawn {
    /// This test binary, re-executed to play `role` (see [`child_main`]).
    pub fn role(role: &str) -> Spawn {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        cmd.env(ROLE_ENV, role);
        Spawn::with(cmd, format!("role {role}"))
    }

    /// As [`Spawn::role`], run under `wrapper` (a command and its arguments, such
    /// as `strace` with fault injection), which must exec the test binary with the
    /// arguments that follow it.
    pub fn role_under(wrapper: &[&str], role: &str) -> Spawn {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(exe).args([
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        cmd.env(ROLE_ENV, role);
        Spawn::with(cmd, format!("role {role} under {}", wrapper[0]))
    }

    /// An example program (`producer`, `consumer`), run from a different working
    /// directory than this test, so that it is an unrelated process that knows
    /// the channel only by its name.
    pub fn example(name: &str) -> Spawn {
        let mut cmd = Command::new(example_path(name));
        cmd.current_dir(std::env::temp_dir());
        cmd.env_remove(ROLE_ENV);
        Spawn::with(cmd, format!("example {name}"))
    }

    fn with(mut cmd: Command, label: String) -> Spawn {
        for k in [
            "SHMQ_FAILPOINT",
            "SHMQ_FAILPOINT_FD",
            "SHMQ_TEST_PRIVATE_FUTEX",
        ] {
            cmd.env_remove(k);
        }
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        Spawn {
            cmd,
            label,
            failpoint: None,
            inherit: Vec::new(),
        }
    }

    /// A role parameter, read in the child with [`arg`].
    pub fn arg(mut self, key: &str, value: impl Display) -> Spawn {
        self.cmd
            .env(format!("{ARG_PREFIX}{key}"), value.to_string());
        self
    }

    /// Command-line arguments (for the example programs).
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Spawn {
        self.cmd.args(args);
        self
    }

    /// An environment variable.
    pub fn env(mut self, key: &str, value: impl Display) -> Spawn {
        self.cmd.env(key, value.to_string());
        self
    }

    /// Arms failpoint `name` in the child (R3).
    pub fn failpoint(mut self, name: &str) -> Spawn {
        self.failpoint = Some(name.to_owned());
        self
    }

    /// Lets the child inherit `fd` across `exec`, under the same number, which it
    /// reads as role parameter `key` ([`inherited_fd`]). The parent's descriptor
    /// keeps its `FD_CLOEXEC`; only the child's copy loses it, in the child.
    pub fn inherit_fd(mut self, key: &str, fd: &impl AsRawFd) -> Spawn {
        let raw = fd.as_raw_fd();
        self.inherit.push(raw);
        self.arg(key, raw)
    }

    /// Starts the child, in a process group of its own, watched by `wd`.
    pub fn spawn(mut self, wd: &Watchdog) -> Proc {
        let mut fp_read = None;
        let mut fp_write: Option<OwnedFd> = None;
        if let Some(name) = &self.failpoint {
            let (r, w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2 for failpoint");
            self.cmd
                .env("SHMQ_FAILPOINT", name)
                .env("SHMQ_FAILPOINT_FD", w.as_raw_fd().to_string());
            fp_read = Some(std::fs::File::from(r));
            fp_write = Some(w);
        }
        let keep: Vec<RawFd> = fp_write
            .as_ref()
            .map(|w| w.as_raw_fd())
            .into_iter()
            .chain(self.inherit.iter().copied())
            .collect();
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let hook = move || -> std::io::Result<()> {
            // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers and sets a flag of this
            // process: the child dies if the thread that spawned it exits.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for &fd in &keep {
                // SAFETY: clears FD_CLOEXEC on the failpoint pipe's write end (or on a
                // descriptor passed with `inherit_fd`) in this child only (the parent's
                // descriptor keeps it), so that it survives exec.
                if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the hook runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, fcntl) on integers it owns.
        unsafe { self.cmd.pre_exec(hook) };
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.label));
        drop(fp_write); // so that reading it sees EOF once the child is gone
        let pid = child.id() as i32;
        lock(&LIVE).push(pid);
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, events) = chan::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        {
            let (log, lines, tx) = (log.clone(), lines.clone(), tx.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lock(&log).push_str(&format!("out| {line}\n"));
                    if let Some(i) = line.find(EVENT_MARK) {
                        match serde_json::from_str::<Value>(&line[i + EVENT_MARK.len()..]) {
                            Ok(v) => {
                                let _ = tx.send(v);
                            }
                            Err(e) => lock(&log).push_str(&format!("bad event line: {e}\n")),
                        }
                    }
                    lock(&lines).push(line);
                }
            }));
        }
        {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    lock(&log).push_str(&format!("err| {line}\n"));
                }
            }));
        }
        drop(tx);
        wd.watch(pid, &self.label, log.clone());
        Proc {
            label: format!("{} (pid {pid})", self.label),
            child,
            pid,
            log,
            lines,
            events,
            pending: Vec::new(),
            readers,
            failpoint: fp_read,
            status: None,
            wd: wd.shared.clone(),
        }
    }
}

/// A running child. Dropped unreaped, it is SIGKILLed with its whole process
/// group and reaped.
pub struct Proc {
    label: String,
    child: Child,
    pid: i32,
    log: Arc<Mutex<String>>,
    lines: Arc<Mutex<Vec<String>>>,
    events: chan::Receiver<Value>,
    pending: Vec<Value>,
    readers: Vec<JoinHandle<()>>,
    failpoint: Option<std::fs::File>,
    status: Option<ExitStatus>,
    wd: WdShared,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Everything it printed so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        format!("--- {}:\n{}", self.label, indent(&lock(&self.log), "  "))
    }

    /// Waits for the next event `kind` it emits (earlier events of other kinds
    /// are kept for later calls). Panics, with its output, if it exits first or
    /// nothing comes within [`EVENT_TIMEOUT`].
    pub fn event(&mut self, kind: &str) -> Value {
        match self.next_event(kind, EVENT_TIMEOUT) {
            Ok(v) => v,
            Err(why) => panic!(
                "no `{kind}` event from {}: {why} (exit status {:?})\n{}{}",
                self.label,
                self.child.try_wait().ok().flatten(),
                diagnose(self.pid),
                self.log()
            ),
        }
    }

    /// As [`Proc::event`], `None` on time-out or exit.
    pub fn try_event(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        self.next_event(kind, timeout).ok()
    }

    /// Waits for the first event whose kind is one of `kinds`.
    pub fn event_any(&mut self, kinds: &[&str]) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            for k in kinds {
                if let Some(i) = self.pending.iter().position(|v| v["event"] == *k) {
                    return self.pending.remove(i);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.pending.push(v),
                Err(why) => panic!(
                    "no event of {kinds:?} from {}: {why:?}\n{}",
                    self.label,
                    self.log()
                ),
            }
        }
    }

    fn next_event(&mut self, kind: &str, timeout: Duration) -> Result<Value, String> {
        if let Some(i) = self.pending.iter().position(|v| v["event"] == kind) {
            return Ok(self.pending.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == kind => return Ok(v),
                Ok(v) => self.pending.push(v),
                Err(chan::RecvTimeoutError::Timeout) => {
                    return Err(format!("none within {timeout:?}"));
                }
                Err(chan::RecvTimeoutError::Disconnected) => {
                    return Err("its output ended first".to_owned());
                }
            }
        }
    }

    /// Waits for its armed failpoint to report `reached <name>`.
    pub fn wait_failpoint(&mut self) -> String {
        match self.try_wait_failpoint(EVENT_TIMEOUT) {
            Some(line) => line,
            None => panic!(
                "{} did not reach its failpoint within {EVENT_TIMEOUT:?}\n{}",
                self.label,
                self.log()
            ),
        }
    }

    /// As [`Proc::wait_failpoint`], `None` if the failpoint is not reached within
    /// `timeout` (or the child exits first).
    pub fn try_wait_failpoint(&mut self, timeout: Duration) -> Option<String> {
        let f = self
            .failpoint
            .as_ref()
            .expect("wait_failpoint on a child without a failpoint");
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd we own, for the given time.
        let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if ready <= 0 || pfd.revents & libc::POLLIN == 0 {
            return None;
        }
        // The report may come in several writes: read up to its newline.
        let mut got = Vec::new();
        let mut r: &std::fs::File = f;
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while !got.contains(&b'\n') && Instant::now() < deadline {
            let mut buf = [0u8; 128];
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("read failpoint pipe: {e}"),
            }
        }
        let line = String::from_utf8_lossy(&got).trim().to_owned();
        if line.is_empty() {
            return None; // the child exited without reaching it
        }
        assert!(
            line.starts_with("reached "),
            "{}: unexpected failpoint report {line:?}\n{}",
            self.label,
            self.log()
        );
        Some(line)
    }

    /// Sends `sig` to it (not to its group).
    pub fn signal(&self, sig: Signal) {
        signal::kill(Pid::from_raw(self.pid), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig}) failed: {e}", self.pid));
    }

    /// SIGKILLs it and returns [`mono_ns`] taken just before the signal. Reap it
    /// with [`Proc::wait`] (or drop it).
    pub fn kill_now(&self) -> u64 {
        let t = mono_ns();
        self.signal(Signal::SIGKILL);
        t
    }

    /// Waits for it to exit (at most [`EVENT_TIMEOUT`]), reaps it and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => panic!(
                    "{} did not exit within {EVENT_TIMEOUT:?}\n{}\n{}",
                    self.label,
                    diagnose(self.pid),
                    self.log()
                ),
                Err(e) => panic!("waiting for {}: {e}", self.label),
            }
        };
        self.reaped(status);
        // Let the readers drain what it printed last (bounded: a grandchild could
        // keep the pipe open).
        let until = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        status
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        reap_group(self.pid);
        lock(&LIVE).retain(|&p| p != self.pid);
        Watchdog::unwatch(&self.wd, self.pid);
    }

    /// Waits for it to exit and asserts exit code `code`.
    pub fn expect_exit(&mut self, code: i32) {
        let s = self.wait();
        assert_eq!(
            s.code(),
            Some(code),
            "{} exited with {s:?}, expected code {code}\n{}",
            self.label,
            self.log()
        );
    }

    /// Waits for it to exit and asserts success.
    pub fn expect_success(&mut self) {
        self.expect_exit(0);
    }

    /// Waits for it to exit and asserts that SIGKILL ended it.
    pub fn expect_killed(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let s = self.wait();
        assert_eq!(
            s.signal(),
            Some(libc::SIGKILL),
            "{} ended with {s:?}, expected SIGKILL\n{}",
            self.label,
            self.log()
        );
    }

    /// The last line of its stdout that is a JSON object (the example programs
    /// print their result that way).
    pub fn last_json(&self) -> Value {
        lock(&self.lines)
            .iter()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(Value::is_object)
            })
            .unwrap_or_else(|| panic!("no JSON line from {}\n{}", self.label, self.log()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            kill_and_reap_group(self.pid, Some(&mut self.child));
            let s = self.child.try_wait().ok().flatten();
            self.status = s;
            lock(&LIVE).retain(|&p| p != self.pid);
            Watchdog::unwatch(&self.wd, self.pid);
        }
    }
}

// ---------------------------------------------------------------------------
// Example programs

/// Path of example program `name`, next to this test binary
/// (`target/<profile>/examples/`). The first call in a process builds the
/// examples with the same profile and features (a no-op when they are fresh;
/// cargo's own lock on the build directory, plus a file lock of ours, serialise
/// concurrent test processes). Set `SHMQ_TEST_NO_BUILD=1` to skip the build.
pub fn example_path(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_examples).join(name)
}

fn build_examples() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let profile = profile_dir
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("debug")
        .to_owned();
    let examples = profile_dir.join("examples");
    if std::env::var_os("SHMQ_TEST_NO_BUILD").is_some() {
        return examples;
    }
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target_dir.join(".shmq-test-examples.lock"))
        .expect("open example build lock");
    let _guard = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock example build lock");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--example",
        "producer",
        "--example",
        "consumer",
    ]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        p => {
            cmd.args(["--profile", p]);
        }
    }
    if cfg!(feature = "failpoints") {
        cmd.args(["--features", "failpoints"]);
    }
    cmd.env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    let present = examples.join("producer").exists() && examples.join("consumer").exists();
    assert!(
        present,
        "example programs missing in {} and `cargo build --example producer --example consumer` failed",
        examples.display()
    );
    if !ok {
        eprintln!(
            "harness: building the examples failed; using the existing (maybe stale) binaries"
        );
    }
    examples
}

// ---------------------------------------------------------------------------
// Role processes

/// The body of each test binary's `child_role` test: runs the role named by
/// `SHMQ_TEST_ROLE` (nothing if unset), then exits the process: status 0, or
/// 101 if the role panicked (a role may also exit with a status of its own).
pub fn child_main(dispatch: fn(&str)) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    // The panic hook has printed the message by the time `catch_unwind` returns.
    let ok = std::panic::catch_unwind(|| dispatch(&role)).is_ok();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Exit from this thread in both cases, rather than letting libtest's main
    // thread exit after this one has ended: on this kernel (6.18) the latter
    // sometimes spends tens of seconds in `do_exit` (task_work_run).
    std::process::exit(if ok { 0 } else { 101 });
}

/// Whether this process is a role child.
pub fn in_role() -> bool {
    std::env::var_os(ROLE_ENV).is_some()
}

/// A role parameter set with [`Spawn::arg`].
pub fn arg<T: FromStr>(key: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let v = std::env::var(format!("{ARG_PREFIX}{key}"))
        .unwrap_or_else(|_| panic!("role parameter {key} missing"));
    v.parse()
        .unwrap_or_else(|e| panic!("role parameter {key}={v:?}: {e:?}"))
}

/// A role parameter, or `default`.
pub fn arg_or<T: FromStr>(key: &str, default: T) -> T
where
    T::Err: std::fmt::Debug,
{
    match std::env::var(format!("{ARG_PREFIX}{key}")) {
        Ok(_) => arg(key),
        Err(_) => default,
    }
}

/// A role parameter, if set.
pub fn arg_opt<T: FromStr>(key: &str) -> Option<T>
where
    T::Err: std::fmt::Debug,
{
    std::env::var(format!("{ARG_PREFIX}{key}"))
        .ok()
        .map(|_| arg(key))
}

/// Reports event `kind` (with the fields of `fields`, an object) to the test.
pub fn emit(kind: &str, fields: Value) {
    let mut v = match fields {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => panic!("event fields must be an object, not {other}"),
    };
    v.insert("event".into(), kind.into());
    v.insert("pid".into(), std::process::id().into());
    let mut out = std::io::stdout().lock();
    // One write per line (short lines are atomic on a pipe), after a newline in
    // case libtest left its "test child_role ..." line open.
    let _ = out.write_all(format!("\n{EVENT_MARK}{}\n", Value::Object(v)).as_bytes());
    let _ = out.flush();
}

/// Sleeps until killed (for roles that hold something for the test).
pub fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Forks a child that runs `f` and `_exit`s with its result (101 if it panics).
/// Only in a role process (asserted), whose only other thread is libtest's
/// main thread, idle while it waits for this test's result.
pub fn fork_child(f: impl FnOnce() -> i32) -> Pid {
    assert!(in_role(), "fork only inside a role child process");
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    assert!(
        threads <= 2,
        "fork needs a process whose only other thread is libtest's idle main thread; found {threads} threads"
    );
    // SAFETY: this process has no thread but this one and libtest's main thread,
    // which is blocked waiting for this test's result and holds no lock (checked
    // above: roles start no thread before forking). So the child inherits no lock
    // held by another thread and may allocate and use std (glibc's fork also
    // re-initialises malloc's locks in the child).
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: prctl takes integers; the child is SIGKILLed if its parent dies.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            // SAFETY: _exit ends this child at once, without running destructors or
            // exit handlers that belong to the parent's state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Waits for a forked child (at most `timeout`) and returns its exit code;
/// panics (after killing it) if it does not exit in time or is killed.
pub fn wait_child(pid: Pid, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => panic!("forked child {pid} killed by {sig}"),
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(_) => {
                let _ = signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                panic!("forked child {pid} did not exit within {timeout:?}");
            }
            Err(e) => panic!("waitpid({pid}): {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Names and leftovers (R5)

/// Unique segment names for one test, and the check that none is left behind.
#[derive(Default)]
pub struct Names {
    names: Mutex<Vec<String>>,
}

impl Names {
    /// No names yet.
    pub fn new() -> Names {
        Names::default()
    }

    /// A fresh `/t-<tag>-<64 random bits>` name, remembered for the final check.
    pub fn name(&self, tag: &str) -> String {
        let n = shmq::unique_name(&format!("t-{tag}")).expect("unique_name");
        lock(&self.names).push(n.clone());
        n
    }

    /// Asserts that none of the names exists in `/dev/shm`, and that this process
    /// has none of them open or mapped.
    pub fn assert_clean(&self) {
        let names = lock(&self.names).clone();
        for n in &names {
            let p = shm_path(n);
            assert!(
                std::fs::symlink_metadata(&p).is_err(),
                "{} was left in /dev/shm",
                p.display()
            );
            let fds = fds_matching(&n[1..]);
            assert!(fds.is_empty(), "{n} is still open in this process: {fds:?}");
            let maps = maps_matching(&n[1..]);
            assert!(
                maps.is_empty(),
                "{n} is still mapped in this process: {maps:?}"
            );
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        // Best effort after a failure: do not leak objects into /dev/shm.
        for n in lock(&self.names).iter() {
            let p = shm_path(n);
            if std::fs::remove_file(&p).is_err() {
                let _ = std::fs::remove_dir(&p);
            }
        }
    }
}

/// `/dev/shm/<name without the slash>`.
pub fn shm_path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name.trim_start_matches('/'))
}

fn fd_links() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        Some(
            std::fs::read_link(e.path())
                .ok()?
                .to_string_lossy()
                .into_owned(),
        )
    })
    .collect()
}

fn fds_matching(needle: &str) -> Vec<String> {
    fd_links()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

fn maps_matching(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// How many descriptors of this process refer to shared-memory objects
/// (`/dev/shm/...` or a shmq memfd). For role processes, which run one test.
pub fn shm_fds() -> usize {
    fd_links()
        .iter()
        .filter(|l| l.starts_with("/dev/shm/") || l.starts_with("/memfd:shmq"))
        .count()
}

/// How many mappings of this process are of shared-memory objects.
pub fn shm_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/dev/shm/") || l.contains("/memfd:shmq"))
        .count()
}

/// What every descriptor of this process refers to (for failure messages).
pub fn fd_table() -> Vec<String> {
    fd_links()
}

/// All descriptors of this process.
pub fn fd_count() -> usize {
    fd_links().len()
}

// ---------------------------------------------------------------------------
// Message verification (R4)

/// Checks a stream of [`msg`] messages: every byte, and per producer strictly
/// increasing sequence numbers with no gap and no duplicate.
#[derive(Default, Debug)]
pub struct Verifier {
    next: BTreeMap<u32, u64>,
    /// Messages taken.
    pub total: u64,
}

impl Verifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Checks one message; `Err` describes the first problem.
    pub fn check(&mut self, buf: &[u8]) -> Result<msg::Header, String> {
        let h = msg::check(buf)?;
        let next = self.next.entry(h.producer).or_insert(0);
        if h.seq != *next {
            return Err(format!(
                "producer {}: expected message {}, got {} ({})",
                h.producer,
                *next,
                h.seq,
                if h.seq < *next {
                    "duplicate or reordered"
                } else {
                    "gap: lost messages"
                }
            ));
        }
        *next += 1;
        self.total += 1;
        Ok(h)
    }

    /// As [`Verifier::check`], panicking on a problem.
    pub fn take(&mut self, buf: &[u8]) -> msg::Header {
        self.check(buf)
            .unwrap_or_else(|e| panic!("verification failed: {e}"))
    }

    /// Messages received from `producer`.
    pub fn count(&self, producer: u32) -> u64 {
        self.next.get(&producer).copied().unwrap_or(0)
    }

    /// Per-producer counts, as JSON.
    pub fn counts(&self) -> Value {
        let m: serde_json::Map<String, Value> = self
            .next
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Value::Object(m)
    }
}

/// A message of `size` bytes: message `seq` of `producer`.
pub fn message(seq: u64, producer: u32, size: usize) -> Vec<u8> {
    let mut v = vec![0; size];
    msg::fill(&mut v, seq, producer);
    v
}

/// `shmq::futex_calls()` as JSON fields.
pub fn futex_json() -> Value {
    let (waits, wakes) = shmq::futex_calls();
    json!({ "waits": waits, "wakes": wakes })
}

/// A JSON number field as `u64` (panics with the event if missing).
pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("event {v} has no numeric field {key}"))
}

// ---------------------------------------------------------------------------
// Reliability catalogue helpers (tests/reliability_*.rs, tests/soak.rs)

/// A descriptor passed with [`Spawn::inherit_fd`], in the child. The child owns it.
pub fn inherited_fd(key: &str) -> OwnedFd {
    use std::os::fd::FromRawFd;
    let raw: RawFd = arg(key);
    // SAFETY: the parent passed this number with `inherit_fd`, which cleared its
    // FD_CLOEXEC in this process before exec, so it is open here; nothing else in
    // this process owns it (each key is taken once).
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// The catalogue's message format (rule R4), with the incarnation that the
/// examples' [`msg`] format lacks, a send time for latency, and a checksum:
///
/// ```text
/// 0            4              8         16        20        24          32         len-8
/// | producer u32 | incarnation u32 | seq u64 | len u32 | 0 u32 | sent_ns u64 | payload | hash u64 |
/// ```
/// The payload is derived from the other fields and the hash covers everything
/// before it, so a record is verified whole.
pub mod record {
    /// Smallest record: the fields and the hash, no payload.
    pub const MIN_SIZE: usize = 40;

    /// The fields of a record.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Rec {
        /// Producer id.
        pub producer: u32,
        /// Which (re)start of that producer sent it.
        pub incarnation: u32,
        /// Sequence number within the incarnation, from 0.
        pub seq: u64,
        /// `mono_ns()` when it was sent.
        pub sent_ns: u64,
    }

    fn mix(h: u64, w: u64) -> u64 {
        (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
    }

    /// Hash of `bytes` (whole words, then the tail).
    pub fn hash(bytes: &[u8]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = mix(h, u64::from_le_bytes(c.try_into().unwrap()));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        mix(mix(h, u64::from_le_bytes(tail)), 0x5851_F42D_4C95_7F2D)
    }

    fn payload_word(r: &Rec, i: usize) -> u64 {
        (r.seq ^ (u64::from(r.producer) << 40) ^ (u64::from(r.incarnation) << 20))
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
            .wrapping_add(i as u64)
    }

    /// Writes record `r` over all of `buf` (at least [`MIN_SIZE`] bytes).
    pub fn fill(buf: &mut [u8], r: &Rec) {
        let len = buf.len();
        assert!(len >= MIN_SIZE, "a record needs {MIN_SIZE} bytes");
        buf[0..4].copy_from_slice(&r.producer.to_le_bytes());
        buf[4..8].copy_from_slice(&r.incarnation.to_le_bytes());
        buf[8..16].copy_from_slice(&r.seq.to_le_bytes());
        buf[16..20].copy_from_slice(&(len as u32).to_le_bytes());
        buf[20..24].copy_from_slice(&0u32.to_le_bytes());
        buf[24..32].copy_from_slice(&r.sent_ns.to_le_bytes());
        let body = &mut buf[32..len - 8];
        for (i, c) in body.chunks_mut(8).enumerate() {
            let w = payload_word(r, i).to_le_bytes();
            c.copy_from_slice(&w[..c.len()]);
        }
        let h = hash(&buf[..len - 8]);
        buf[len - 8..].copy_from_slice(&h.to_le_bytes());
    }

    /// Checks a received record whole: length field, hash and payload.
    pub fn check(buf: &[u8]) -> Result<Rec, String> {
        let len = buf.len();
        if len < MIN_SIZE {
            return Err(format!("record of {len} bytes is shorter than {MIN_SIZE}"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
        let r = Rec {
            producer: u32_at(0),
            incarnation: u32_at(4),
            seq: u64_at(8),
            sent_ns: u64_at(24),
        };
        if u32_at(16) as usize != len || u32_at(20) != 0 {
            return Err(format!(
                "{r:?}: length field {} for {len} bytes",
                u32_at(16)
            ));
        }
        if hash(&buf[..len - 8]) != u64_at(len - 8) {
            return Err(format!("{r:?}: checksum mismatch"));
        }
        for (i, c) in buf[32..len - 8].chunks(8).enumerate() {
            let w = payload_word(&r, i).to_le_bytes();
            if c != &w[..c.len()] {
                return Err(format!("{r:?}: payload word {i} is wrong"));
            }
        }
        Ok(r)
    }
}

/// Checks a stream of [`record`]s: every checksum; per (producer, incarnation)
/// sequence numbers from 0 with no gap and no duplicate; and per producer, no
/// record of an incarnation after the first record of a later one.
#[derive(Default, Debug)]
pub struct RecordVerifier {
    next: BTreeMap<(u32, u32), u64>,
    latest: BTreeMap<u32, u32>,
    /// Records taken.
    pub total: u64,
    /// Bytes taken.
    pub bytes: u64,
}

impl RecordVerifier {
    /// A verifier that has seen nothing.
    pub fn new() -> RecordVerifier {
        RecordVerifier::default()
    }

    /// Checks one record; `Err` describes the first problem.
    pub fn check(&mut self, buf: &[u8]) -> Result<record::Rec, String> {
        let r = record::check(buf)?;
        let latest = self.latest.entry(r.producer).or_insert(r.incarnation);
        if r.incarnation < *latest {
            return Err(format!(
                "producer {}: a record of incarnation {} after one of incarnation {}",
                r.producer, r.incarnation, *latest
            ));
        }
        *latest = r.incarnation;
        let next = self.next.entry((r.producer, r.incarnation)).or_insert(0);
        if r.seq != *next {
            return Err(format!(
                "producer {} incarnation {}: expected record {}, got {} ({})",
                r.producer,
                r.incarnation,
                *next,
                r.seq,
                if r.seq < *next {
                    "duplicate or reordered"
                } else {
                    "gap: lost records"
                }
            ));
        }
        *next += 1;
        self.total += 1;
        self.bytes += buf.len() as u64;
        Ok(r)
    }

    /// As [`RecordVerifier::check`], panicking on a problem.
    pub fn take(&mut self, buf: &[u8]) -> record::Rec {
        self.check(buf)
            .unwrap_or_else(|e| panic!("verification failed: {e}"))
    }

    /// Records received from `producer`'s incarnation `incarnation`.
    pub fn count(&self, producer: u32, incarnation: u32) -> u64 {
        self.next
            .get(&(producer, incarnation))
            .copied()
            .unwrap_or(0)
    }

    /// Records received from every incarnation of `producer`.
    pub fn producer_total(&self, producer: u32) -> u64 {
        self.next
            .iter()
            .filter(|((p, _), _)| *p == producer)
            .map(|(_, n)| n)
            .sum()
    }
}

/// CPU time (user + system) all threads of `pid` have used, in nanoseconds, from
/// `/proc/<pid>/task/*/schedstat` (nanosecond resolution, unlike `stat`'s ticks).
pub fn cpu_ns(pid: i32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| {
        let s = std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
        s.split_whitespace().next()?.parse::<u64>().ok()
    })
    .sum()
}

/// CPU time this process has used (all threads), from `getrusage`, in nanoseconds.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `ru`, which we own exclusively.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(r, 0, "getrusage");
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Resident set size of this process in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Children of this process that are zombies (dead, not reaped).
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|v| v.parse::<i32>().ok());
            state == Some("Z") && ppid == Some(me)
        })
        .collect()
}

/// Entries of `/dev/shm` whose name starts with `prefix` (no leading slash).
pub fn shm_entries(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// Descriptors of this process that refer to shared memory (`/dev/shm/...` or a
/// memfd) and lack `FD_CLOEXEC`, as `fd -> target`.
pub fn shm_fds_without_cloexec() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd: i32 = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path())
            .ok()?
            .to_string_lossy()
            .into_owned();
        if !(target.starts_with("/dev/shm/") || target.starts_with("/memfd:")) {
            return None;
        }
        // SAFETY: F_GETFD only reads the descriptor flags of a number we just listed
        // (if it was closed meanwhile the call fails harmlessly).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        (flags >= 0 && flags & libc::FD_CLOEXEC == 0).then(|| format!("{fd} -> {target}"))
    })
    .collect()
}

/// Byte offsets of a ring's control words within a channel segment's user region
/// (`crates/ring/src/ctl.rs`, pinned there by `const` assertions; docs/PROTOCOL.md §2).
pub mod ring_off {
    /// `tail` (u64).
    pub const TAIL: usize = 0;
    /// `head` (u64).
    pub const HEAD: usize = 128;
    /// The consumer's futex sequence (u32).
    pub const DATA_SEQ: usize = 256;
    /// The consumer's waiting flag (u32).
    pub const CONSUMER_WAITING: usize = 260;
    /// The producers' futex sequence (u32).
    pub const SPACE_SEQ: usize = 264;
    /// The producers' waiting flag (u32).
    pub const PRODUCERS_WAITING: usize = 268;
    /// Start of an SPSC ring's data area.
    pub const SPSC_DATA: usize = 512;
    /// Start of an MPSC ring's data area with `producers` slots.
    pub const fn mpsc_data(producers: u16) -> usize {
        512 + 128 * producers as usize
    }
}

/// Raw access to the user region of a mapped segment, as a hostile peer has it:
/// every word through an atomic, every byte range through a raw copy, never a
/// reference. Bounds are checked; the region lives as long as the borrowed segment.
pub struct RawRegion<'a> {
    base: std::ptr::NonNull<u8>,
    len: usize,
    _seg: &'a shmq::segment::Segment,
}

impl<'a> RawRegion<'a> {
    /// The user region of `seg`.
    pub fn of(seg: &'a shmq::segment::Segment) -> RawRegion<'a> {
        RawRegion {
            base: seg.data(),
            len: seg.data_len() as usize,
            _seg: seg,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at<T>(&self, off: usize) -> *mut T {
        let size = std::mem::size_of::<T>();
        assert!(
            off.is_multiple_of(size) && off + size <= self.len,
            "offset {off} out of the {}-byte region or misaligned",
            self.len
        );
        // SAFETY: `off + size <= len` (asserted), so the pointer stays inside the mapping.
        unsafe { self.base.as_ptr().add(off).cast() }
    }

    /// The 64-bit word at `off` (8-aligned).
    pub fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: in bounds and 8-aligned (checked by `at`; the region is 128-aligned);
        // the mapping outlives `'a`; shared memory is only touched atomically here,
        // and every other process accesses these words atomically too.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.at(off)) }
    }

    /// The 32-bit word at `off` (4-aligned).
    pub fn word32(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: as in `word`, for a 4-byte aligned 4-byte word.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.at(off)) }
    }

    /// Copies `bytes` in at `off` (a raw copy: the peer may be reading).
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len, "write beyond the region");
        // SAFETY: in bounds (asserted); a raw copy, never a reference to shared bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(off), bytes.len())
        }
    }

    /// Copies `len` bytes out from `off`.
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len, "read beyond the region");
        let mut v = vec![0u8; len];
        // SAFETY: in bounds (asserted); copied out raw into private memory.
        unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), v.as_mut_ptr(), len) }
        v
    }

    /// `FUTEX_WAKE` (shared, not private) on the 32-bit word at `off`: wakes up to
    /// `n` waiters. Returns how many were woken.
    pub fn futex_wake(&self, off: usize, n: i32) -> i64 {
        let addr = self.at::<u32>(off);
        // SAFETY: futex(2) FUTEX_WAKE only uses the address as a key (it must be a
        // mapped, aligned u32, which `at` checks); no memory is written.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr,
                libc::FUTEX_WAKE,
                n,
                0usize,
                0usize,
                0u32,
            )
        }
    }
}

/// Opens the named segment of a channel as a raw peer would (any owner, shared
/// write allowed: this is the adversary's view, not a trusted open).
pub fn open_raw(name: &str) -> shmq::segment::Segment {
    let opts = shmq::SegmentOptions::new()
        .expected_owner(None)
        .allow_shared_write(true);
    shmq::segment::Segment::open(name, &shmq::segment::Expect::default(), &opts)
        .unwrap_or_else(|e| panic!("raw open of {name}: {e:?}"))
}

/// SPSC and MPSC byte endpoints behind one type, for tests that run the same
/// scenario over both kinds.
pub mod ends {
    use std::time::Duration;

    use shmq::{Error, Options, Result, mpsc, spsc};

    /// Which kind of channel.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        /// `shmq::spsc`.
        Spsc,
        /// `shmq::mpsc`.
        Mpsc,
    }

    impl Kind {
        /// `spsc` or `mpsc`.
        pub fn as_str(self) -> &'static str {
            match self {
                Kind::Spsc => "spsc",
                Kind::Mpsc => "mpsc",
            }
        }

        /// From [`Kind::as_str`].
        pub fn parse(s: &str) -> Kind {
            match s {
                "spsc" => Kind::Spsc,
                "mpsc" => Kind::Mpsc,
                other => panic!("unknown channel kind {other}"),
            }
        }
    }

    impl std::fmt::Display for Kind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.as_str())
        }
    }

    /// How to reach a named channel.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum How {
        /// `create`.
        Create,
        /// `open`.
        Open,
        /// `create_or_open`.
        CreateOrOpen,
    }

    impl How {
        /// From `create`, `open` or `create_or_open`.
        pub fn parse(s: &str) -> How {
            match s {
                "create" => How::Create,
                "open" => How::Open,
                "create_or_open" => How::CreateOrOpen,
                other => panic!("unknown HOW {other}"),
            }
        }
    }

    /// A sender of either kind.
    pub enum Tx {
        /// SPSC.
        S(spsc::Sender),
        /// MPSC.
        M(mpsc::Sender),
    }

    /// A receiver of either kind.
    pub enum Rx {
        /// SPSC.
        S(spsc::Receiver),
        /// MPSC.
        M(mpsc::Receiver),
    }

    impl Tx {
        /// Reaches the named channel.
        pub fn named(kind: Kind, how: How, name: &str, o: &Options) -> Result<Tx> {
            Ok(match (kind, how) {
                (Kind::Spsc, How::Create) => Tx::S(spsc::Sender::create(name, o)?),
                (Kind::Spsc, How::Open) => Tx::S(spsc::Sender::open(name, o)?),
                (Kind::Spsc, How::CreateOrOpen) => Tx::S(spsc::Sender::create_or_open(name, o)?),
                (Kind::Mpsc, How::Create) => Tx::M(mpsc::Sender::create(name, o)?),
                (Kind::Mpsc, How::Open) => Tx::M(mpsc::Sender::open(name, o)?),
                (Kind::Mpsc, How::CreateOrOpen) => Tx::M(mpsc::Sender::create_or_open(name, o)?),
            })
        }

        /// `send`.
        pub fn send(&mut self, m: &[u8]) -> Result<()> {
            match self {
                Tx::S(t) => t.send(m),
                Tx::M(t) => t.send(m),
            }
        }

        /// `try_send`.
        pub fn try_send(&mut self, m: &[u8]) -> Result<()> {
            match self {
                Tx::S(t) => t.try_send(m),
                Tx::M(t) => t.try_send(m),
            }
        }

        /// `send_timeout`.
        pub fn send_timeout(&mut self, m: &[u8], d: Duration) -> Result<()> {
            match self {
                Tx::S(t) => t.send_timeout(m, d),
                Tx::M(t) => t.send_timeout(m, d),
            }
        }

        /// Writes `m` in place through the zero-copy guard (`reserve`, copy, `commit`).
        pub fn reserve_commit(&mut self, m: &[u8]) -> Result<()> {
            match self {
                Tx::S(t) => {
                    let mut g = t.reserve(m.len())?;
                    g.copy_from_slice(m);
                    g.commit();
                }
                Tx::M(t) => {
                    let mut g = t.reserve(m.len())?;
                    g.copy_from_slice(m);
                    g.commit();
                }
            }
            Ok(())
        }

        /// The largest message.
        pub fn max_message_len(&self) -> usize {
            match self {
                Tx::S(t) => t.max_message_len(),
                Tx::M(t) => t.max_message_len(),
            }
        }

        /// A duplicate of the channel's descriptor.
        pub fn export_fd(&self) -> Result<std::os::fd::OwnedFd> {
            match self {
                Tx::S(t) => t.export_fd(),
                Tx::M(t) => t.export_fd(),
            }
        }
    }

    impl Rx {
        /// Reaches the named channel.
        pub fn named(kind: Kind, how: How, name: &str, o: &Options) -> Result<Rx> {
            Ok(match (kind, how) {
                (Kind::Spsc, How::Create) => Rx::S(spsc::Receiver::create(name, o)?),
                (Kind::Spsc, How::Open) => Rx::S(spsc::Receiver::open(name, o)?),
                (Kind::Spsc, How::CreateOrOpen) => Rx::S(spsc::Receiver::create_or_open(name, o)?),
                (Kind::Mpsc, How::Create) => Rx::M(mpsc::Receiver::create(name, o)?),
                (Kind::Mpsc, How::Open) => Rx::M(mpsc::Receiver::open(name, o)?),
                (Kind::Mpsc, How::CreateOrOpen) => Rx::M(mpsc::Receiver::create_or_open(name, o)?),
            })
        }

        /// `recv_into`.
        pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
            match self {
                Rx::S(r) => r.recv_into(buf),
                Rx::M(r) => r.recv_into(buf),
            }
        }

        /// `recv_into_timeout`.
        pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, d: Duration) -> Result<()> {
            match self {
                Rx::S(r) => r.recv_into_timeout(buf, d),
                Rx::M(r) => r.recv_into_timeout(buf, d),
            }
        }

        /// `try_recv_into`.
        pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
            match self {
                Rx::S(r) => r.try_recv_into(buf),
                Rx::M(r) => r.try_recv_into(buf),
            }
        }

        /// MPSC: dead producers' claims reclaimed so far (0 for SPSC).
        pub fn reclaimed(&mut self) -> u64 {
            match self {
                Rx::S(_) => 0,
                Rx::M(r) => r.reclaimed().unwrap_or(0),
            }
        }

        /// MPSC: report `Disconnected` only after `n` producer attachments.
        pub fn expect_producers(&mut self, n: u32) {
            if let Rx::M(r) = self {
                r.expect_producers(n).expect("expect_producers");
            }
        }

        /// A duplicate of the channel's descriptor.
        pub fn export_fd(&self) -> Result<std::os::fd::OwnedFd> {
            match self {
                Rx::S(r) => r.export_fd(),
                Rx::M(r) => r.export_fd(),
            }
        }
    }

    /// `Closed`, `Died`, or the error's debug form: for events and messages.
    pub fn why(e: &Error) -> String {
        match e {
            Error::Disconnected(shmq::Disconnect::Closed) => "Closed".into(),
            Error::Disconnected(shmq::Disconnect::Died) => "Died".into(),
            Error::Corrupted(_) => "Corrupted".into(),
            Error::Full => "Full".into(),
            Error::Empty => "Empty".into(),
            Error::Timeout => "Timeout".into(),
            other => format!("{other:?}"),
        }
    }
}

/// A small deterministic generator (splitmix64) for test choices; seeds are
/// printed so a failing run can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from the clock and pid (printed by the caller).
    pub fn seed() -> u64 {
        mono_ns() ^ (u64::from(std::process::id()) << 32)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next_u64() as usize % items.len()]
    }
}

/// Whether this process runs as root (root-only parts skip otherwise).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `(st_dev, st_ino)` of what `fd` has open.
pub fn fd_identity(fd: &impl std::os::fd::AsFd) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd.as_fd()).expect("fstat");
    (st.st_dev, st.st_ino)
}

/// `(st_dev, st_ino)` of what `/dev/shm/<name>` is now (not following a symlink),
/// or `None` if nothing is there.
pub fn name_identity(name: &str) -> Option<(u64, u64)> {
    let st = nix::sys::stat::lstat(&shm_path(name)).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Removes the stale segment `name` (if it exists), retrying for up to a second:
/// while another thread of this process is between `fork` and `exec`, the child
/// briefly shares every descriptor, and with them the locks of a segment this
/// process has just closed. Panics if it is still there (in use) after that.
pub fn remove_stale(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if !shm_path(name).exists() {
            return;
        }
        match shmq::segment::Segment::remove_if_stale(name) {
            Ok(true) | Err(shmq::segment::Error::NotFound { .. }) => return,
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => panic!("{name} is not stale: {other:?}"),
        }
    }
}

/// Makes this process claim (and release) a channel endpoint once, so that the
/// descriptor the fork guard keeps open for good (`/dev/null`, opened at the first
/// claim: crates/segment/src/fork.rs) exists before a test takes its descriptor
/// baseline.
pub fn warm_up_fork_guard() {
    let (mut tx, mut rx) =
        shmq::spsc::anonymous(&shmq::Options::new().capacity(4096)).expect("warm-up channel");
    tx.send(b"warm-up").expect("warm-up send");
    rx.recv_into(&mut Vec::new()).expect("warm-up recv");
}

/// Removes, when dropped, every `/dev/shm` entry whose name starts with its
/// prefix (for tests that make names outside [`Names`]).
pub struct PrefixCleanup(pub String);

impl Drop for PrefixCleanup {
    fn drop(&mut self) {
        for e in shm_entries(&self.0) {
            let _ = std::fs::remove_file(shm_path(&e));
        }
    }
}
