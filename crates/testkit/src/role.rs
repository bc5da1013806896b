//! The child's side of a role process: [`child_main`] runs the role a test
//! asked for, [`arg`] and friends read its parameters, [`emit`] reports events,
//! [`fork_child`] and [`wait_child`] fork inside a role, [`inherited_fd`] takes
//! a descriptor passed with [`crate::Spawn::inherit_fd`].

use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use serde_json::Value;

use crate::process::{ARG_PREFIX, EVENT_MARK, ROLE_ENV};

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
    // sometimes spends tens of seconds in `do_exit` (task_work_run). And exit
    // with `_exit`, not `exit`: a role that had switched users (PS-03) was
    // killed by SIGSEGV after it had reported, in two of seven full runs on
    // 2026-12-04 (never when run alone, 140 times); the likely cause is `exit`
    // tearing libc's state down while libtest's other threads still run (glibc
    // marks `exit` MT-unsafe). Both streams are flushed above.
    // SAFETY: `_exit` ends the process at once; nothing runs after it.
    unsafe { libc::_exit(if ok { 0 } else { 101 }) }
}

/// Whether this process is a role child.
pub fn in_role() -> bool {
    std::env::var_os(ROLE_ENV).is_some()
}

/// A role parameter set with [`Spawn::arg`](crate::Spawn::arg).
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

/// The wait strategy named `park`, `spin` or `default` (a role parameter's
/// value, such as `WAIT`).
pub fn wait_strategy(name: &str) -> shmq::WaitStrategy {
    match name {
        "park" => shmq::WaitStrategy::Park,
        "spin" => shmq::WaitStrategy::Spin,
        "default" => shmq::WaitStrategy::default(),
        other => panic!("unknown wait strategy {other}"),
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

/// Moves this process into new namespaces (`CLONE_NEWNS`, `CLONE_NEWPID`...),
/// or says why it could not (for a role to report as a skip).
pub fn unshare(flags: nix::sched::CloneFlags) -> Result<(), String> {
    nix::sched::unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}"))
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

/// A descriptor passed with [`Spawn::inherit_fd`](crate::Spawn::inherit_fd), in the child. The child owns it.
pub fn inherited_fd(key: &str) -> OwnedFd {
    use std::os::fd::FromRawFd;
    let raw: RawFd = arg(key);
    // SAFETY: the parent passed this number with `inherit_fd`, which cleared its
    // FD_CLOEXEC in this process before exec, so it is open here; nothing else in
    // this process owns it (each key is taken once).
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Defines the test binary's `child_role` test ([`crate::CHILD_TEST`]), which
/// runs, through [`child_main`], the function `role_<name>` of the test binary
/// for role `<name>`: `roles! { role_send role_recv }` (function names,
/// separated by white space).
#[macro_export]
macro_rules! roles {
    ($($f:ident)*) => {
        #[test]
        fn child_role() {
            $crate::child_main(|role| {
                $(
                    if stringify!($f).strip_prefix("role_") == Some(role) {
                        return $f();
                    }
                )*
                panic!("unknown role {role}");
            });
        }
    };
}

/// A role's body that holds one end of the channel NAME, of the kind KIND
/// (`spsc` or `mpsc`), opened with default options: `end` is `rx` for the
/// receiver, anything else for the sender. Reports `ready` (with its pid) once
/// attached, and holds the end, silent, until killed.
pub fn hold_end(end: &str) -> ! {
    fn run<K: shmq::RingKind>(end: &str) -> ! {
        let name = arg::<String>("NAME");
        let o = shmq::Options::new();
        let _end: Box<dyn std::any::Any> = if end == "rx" {
            Box::new(shmq::Receiver::<K>::open(&name, &o).expect("receiver"))
        } else {
            Box::new(shmq::Sender::<K>::open(&name, &o).expect("sender"))
        };
        emit("ready", serde_json::json!({ "pid": std::process::id() }));
        hang();
    }
    crate::by_kind!(arg::<String>("KIND").as_str(), run(end))
}

/// The end of a sending role: reports `sent` (COUNT sent, futex calls since
/// `futex0`, a [`shmq::futex_calls`] reading), then with THEN=hang holds `tx`
/// until killed, otherwise closes it and reports `closed`.
pub fn report_sent<T>(tx: T, count: u64, futex0: (u64, u64)) {
    let f = shmq::futex_calls();
    emit(
        "sent",
        serde_json::json!({ "count": count, "waits": f.0 - futex0.0, "wakes": f.1 - futex0.1 }),
    );
    if arg_or("THEN", "close".to_owned()) == "hang" {
        let _keep = tx;
        hang();
    }
    drop(tx);
    emit("closed", serde_json::json!({}));
}

/// The senders of a spraying role: the channels NAMES (comma-separated),
/// opened as sessions, COUNT messages to send over them at random (SEED),
/// numbered per channel from 0 (the producer id is the channel's index).
pub struct Spray<K: shmq::RingKind> {
    /// One sender per channel of NAMES, in order.
    pub txs: Vec<shmq::Sender<K>>,
    /// COUNT: how many messages [`Spray::send_all`] sends.
    pub count: u64,
    rng: crate::Rng,
    seqs: Vec<u64>,
}

impl<K: shmq::RingKind> Spray<K> {
    /// Opens the channels NAMES.
    pub fn open() -> Spray<K> {
        let txs: Vec<shmq::Sender<K>> = arg::<String>("NAMES")
            .split(',')
            .map(|n| shmq::Sender::<K>::open(n, &crate::session()).expect("open"))
            .collect();
        let seqs = vec![0; txs.len()];
        Spray {
            txs,
            count: arg("COUNT"),
            rng: crate::Rng::new(arg("SEED")),
            seqs,
        }
    }

    /// Sends the COUNT messages, each of 16 to 80 bytes on a channel chosen
    /// at random, calling `pace` with the number of messages sent before it.
    pub fn send_all(&mut self, mut pace: impl FnMut(u64)) {
        for k in 0..self.count {
            let c = self.rng.range(0, self.txs.len() as u64 - 1) as usize;
            let len = self.rng.range(16, 80) as usize;
            self.txs[c]
                .send(&crate::message(self.seqs[c], c as u32, len))
                .expect("send");
            self.seqs[c] += 1;
            pace(k);
        }
    }
}

/// The body of a receiving role once its end is attached (and `ready`
/// reported): receives with `recv` and verifies COUNT messages (WAIT_FIRST=1:
/// reports `waiting` with its thread id before the first; `first` with the
/// time of the first), reports `received`; with AFTER=disconnect it then
/// reports `parked` and waits for the end, which must come with no further
/// message (reported as `disconnected` with the time).
pub fn receive_and_report(mut recv: impl FnMut(&mut Vec<u8>) -> shmq::Result<()>) {
    use serde_json::json;
    let count: u64 = arg("COUNT");
    let mut v = crate::Verifier::new();
    let mut buf = Vec::new();
    if arg_or("WAIT_FIRST", 0u8) == 1 {
        emit("waiting", json!({ "tid": crate::gettid() }));
    }
    let futex0 = shmq::futex_calls();
    for _ in 0..count {
        recv(&mut buf).unwrap_or_else(|e| panic!("recv after {} messages: {e:?}", v.total));
        let at = crate::mono_ns();
        v.take(&buf);
        if v.total == 1 {
            emit("first", json!({ "at_ns": at }));
        }
    }
    let f = shmq::futex_calls();
    emit(
        "received",
        json!({ "count": v.total, "waits": f.0 - futex0.0, "wakes": f.1 - futex0.1 }),
    );
    if arg_or("AFTER", "none".to_owned()) == "disconnect" {
        emit("parked", json!({ "tid": crate::gettid() }));
        match recv(&mut buf) {
            Err(e) => emit(
                "disconnected",
                json!({ "why": crate::kinds::why(&e), "at_ns": crate::mono_ns() }),
            ),
            Ok(()) => panic!(
                "a message beyond the {count} expected: {:?}",
                crate::msg::check(&buf)
            ),
        }
    }
}
