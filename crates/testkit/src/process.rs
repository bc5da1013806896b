//! Child processes seen from the test (catalogue rules R1–R3): [`Spawn`] starts
//! a role of this test binary, a role under a wrapper, or an example program;
//! [`Proc`] is the running child (its events, failpoint and exit); [`Watchdog`]
//! bounds a test's run time. The child's side of the protocol is in
//! [`crate::role`].

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as chan;
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::Value;

use crate::lock;
use crate::measure::mono_ns;
use crate::procfs::{diagnose, group_members};

/// Environment variable naming the role a re-executed test binary plays.
pub const ROLE_ENV: &str = "SHMQ_TEST_ROLE";
/// The test function every test binary defines to run roles.
pub const CHILD_TEST: &str = "child_role";
pub(crate) const ARG_PREFIX: &str = "SHMQ_TEST_ARG_";
pub(crate) const EVENT_MARK: &str = "@@shmq-event ";

/// Default watchdog deadline for a multi-process test.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// How long a test waits for one event from a child before giving up.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(45);

/// Process groups of every child this process has spawned and not yet reaped.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

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
    /// This test binary, re-executed to play `role` (see [`child_main`](crate::child_main)).
    pub fn role(role: &str) -> Spawn {
        let cmd = Command::new(std::env::current_exe().expect("current_exe"));
        Spawn::with(Spawn::role_cmd(cmd, role), format!("role {role}"))
    }

    /// [`Spawn::role`] with role parameter `NAME` set to `name`: a role that
    /// works on the channel or segment `name`.
    pub fn role_on(role: &str, name: &str) -> Spawn {
        Spawn::role(role).arg("NAME", name)
    }

    /// As [`Spawn::role`], run under `wrapper` (a command and its arguments, such
    /// as `strace` with fault injection), which must exec the test binary with the
    /// arguments that follow it.
    pub fn role_under(wrapper: &[&str], role: &str) -> Spawn {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(std::env::current_exe().expect("current_exe"));
        let label = format!("role {role} under {}", wrapper[0]);
        Spawn::with(Spawn::role_cmd(cmd, role), label)
    }

    /// `cmd` with the arguments that make a test binary run only its
    /// [`CHILD_TEST`], and the variable that names the role.
    fn role_cmd(mut cmd: Command, role: &str) -> Command {
        cmd.args([
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        cmd.env(ROLE_ENV, role);
        cmd
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

    /// `cmd`, without the failpoint variables this process may have, under
    /// `label` for messages.
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

    /// A role parameter, read in the child with [`arg`](crate::arg).
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
    /// reads as role parameter `key` ([`inherited_fd`](crate::inherited_fd)). The parent's descriptor
    /// keeps its `FD_CLOEXEC`; only the child's copy loses it, in the child.
    pub fn inherit_fd(mut self, key: &str, fd: &impl AsRawFd) -> Spawn {
        let raw = fd.as_raw_fd();
        self.inherit.push(raw);
        self.arg(key, raw)
    }

    /// Arms failpoint `point` ([`Spawn::failpoint`]; `<name>` or
    /// `<name>:stop`), starts the child and waits until it reports that it
    /// reached `<name>`.
    pub fn spawn_to(self, wd: &Watchdog, point: &str) -> Proc {
        let mut p = self.failpoint(point).spawn(wd);
        let name = point.split(':').next().unwrap_or(point);
        assert_eq!(p.wait_failpoint(), format!("reached {name}"), "{}", p.log());
        p
    }

    /// As [`Spawn::spawn_to`], then SIGKILLs and reaps the child there: a
    /// peer that died at exactly that step.
    pub fn kill_at(self, wd: &Watchdog, point: &str) {
        self.spawn_to(wd, point).kill_and_reap();
    }

    /// Starts a receiving role that waits parked for one message (WAIT=park,
    /// COUNT=1) and SIGKILLs it right after it set its waiting flag (the
    /// `after_wait_flag_set` failpoint): a consumer that died asleep.
    pub fn kill_after_wait_flag_set(self, wd: &Watchdog) {
        self.arg("WAIT", "park")
            .arg("COUNT", 1)
            .kill_at(wd, "after_wait_flag_set");
    }

    /// Starts the child, waits for its event `kind` and for its successful exit,
    /// and returns the event: for a child that reports once, at its end.
    pub fn run(self, wd: &Watchdog, kind: &str) -> Value {
        let mut p = self.spawn(wd);
        let ev = p.event(kind);
        p.expect_success();
        ev
    }

    /// Starts a receiving role (the parameters of [`crate::role::receive_and_report`]) that waits
    /// parked for one message and then for the end (WAIT=park, COUNT=1,
    /// WAIT_FIRST=1, AFTER=disconnect), and returns once its thread is seen
    /// asleep in `futex(2)`, with the id of that thread.
    pub fn spawn_asleep(self, wd: &Watchdog) -> (Proc, i32) {
        let c = self
            .arg("WAIT", "park")
            .arg("COUNT", 1)
            .arg("WAIT_FIRST", 1)
            .arg("AFTER", "disconnect")
            .spawn(wd);
        let mut c = c;
        let tid = num(&c.event("waiting"), "tid") as i32;
        c.assert_in_futex(tid, "the consumer never slept");
        (c, tid)
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

    /// SIGSTOPs it and waits until every thread of it is stopped (panics with
    /// its output if that takes more than 5 s).
    pub fn stop(&self) {
        self.signal(Signal::SIGSTOP);
        self.assert_stopped();
    }

    /// Asserts that every thread of it is stopped, waiting up to 5 s (for a
    /// child that stops itself, such as at a `:stop` failpoint).
    pub fn assert_stopped(&self) {
        assert!(
            crate::wait_stopped(self.pid, Duration::from_secs(5)),
            "{} did not stop\n{}",
            self.label,
            self.log()
        );
    }

    /// SIGKILLs it, reaps it (asserting that the signal ended it) and returns
    /// [`mono_ns`] taken just before the signal.
    pub fn kill_and_reap(&mut self) -> u64 {
        let t = self.kill_now();
        self.expect_killed();
        t
    }

    /// SIGKILLs and reaps it, then runs `then` (which waits for the kill to be
    /// noticed); returns what `then` returned and the time from just before the
    /// signal to its end.
    pub fn kill_then<T>(&mut self, then: impl FnOnce() -> T) -> (T, Duration) {
        let t_kill = self.kill_and_reap();
        let r = then();
        (r, Duration::from_nanos(mono_ns() - t_kill))
    }

    /// SIGKILLs and reaps it, then waits for `watcher`'s event `kind` (its
    /// report of the death, with fields `why` and `at_ns`) and for its
    /// successful exit; asserts that the report says `Died` and returns it with
    /// the time from just before the signal to `at_ns`.
    pub fn kill_seen_by(&mut self, watcher: &mut Proc, kind: &str) -> (Value, Duration) {
        let t_kill = self.kill_and_reap();
        let ev = watcher.event(kind);
        watcher.expect_success();
        assert_eq!(ev["why"], "Died", "{ev}");
        let latency = Duration::from_nanos(num(&ev, "at_ns").saturating_sub(t_kill));
        (ev, latency)
    }

    /// Asserts that its thread `tid` is seen asleep in `futex(2)` within 10 s
    /// (`what` says what the test expected, for the message).
    pub fn assert_in_futex(&self, tid: i32, what: &str) {
        assert!(
            crate::wait_in_futex(self.pid, tid, Duration::from_secs(10)),
            "{what} (not seen asleep in futex within 10 s)\n{}",
            self.log()
        );
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
    #[track_caller]
    pub fn expect_killed(&mut self) {
        self.expect_signal(Signal::SIGKILL, "a kill");
    }

    /// Waits for it to exit and asserts that the signal `sig` ended it
    /// (`what` names the case, for the message).
    #[track_caller]
    pub fn expect_signal(&mut self, sig: Signal, what: &str) {
        use std::os::unix::process::ExitStatusExt;
        let s = self.wait();
        assert_eq!(
            s.signal(),
            Some(sig as i32),
            "{what}: {} ended with {s:?}, expected {sig}\n{}",
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

/// Path of example program `name` of the `shmq` package, next to this test
/// binary (`target/<profile>/examples/`). The first call in a process builds the
/// examples (`producer`, `consumer`, `typed_peer`) with the same profile and features (`failpoints` if this crate's
/// feature of that name is on, as the `shmq` feature turns it on; a no-op when they are fresh:
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
        "--package",
        "shmq",
        "--example",
        "producer",
        "--example",
        "consumer",
        "--example",
        "typed_peer",
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
    // The features the tests were built with, so that the build is a no-op.
    let features: Vec<&str> = [
        ("failpoints", cfg!(feature = "failpoints")),
        ("async", cfg!(feature = "async")),
    ]
    .iter()
    .filter_map(|&(f, on)| on.then_some(f))
    .collect();
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    cmd.env("CARGO_TARGET_DIR", target_dir)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
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

/// Asserts that event `ev` reports as many shared-memory descriptors and
/// mappings after (`fds_after`, `maps_after`) as before (`fds_before`,
/// `maps_before`).
pub fn assert_no_leak(ev: &Value) {
    assert_eq!(ev["fds_after"], ev["fds_before"], "descriptor leak: {ev}");
    assert_eq!(ev["maps_after"], ev["maps_before"], "mapping leak: {ev}");
}

/// A JSON number field as `u64` (panics with the event if missing).
pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("event {v} has no numeric field {key}"))
}
