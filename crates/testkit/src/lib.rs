//! The cross-process test kit of the shmq workspace (catalogue rules R1–R5):
//! what the integration tests of `shmq` (`tests/*.rs`) and of `shmq-segment`
//! (`crates/segment/tests/`), and the example programs, share. Not published.
//!
//! # Map
//!
//! | module | what is there |
//! | --- | --- |
//! | this crate | [`start`] (watchdog, names, a first name), [`serial`], [`scaled`], [`poll_until`], [`assert_no_failures`], [`root_or_skip`], [`strace_or_skip`], [`DEATH_BUDGET`] |
//! | [`process`] | [`Spawn`] (`role`, `role_on`, `example`, `spawn_to` a failpoint, `run` to an event), [`Proc`] (events, `stop`, `kill_then`, `kill_seen_by`, `expect_signal`), [`Watchdog`], [`example_path`], [`assert_no_leak`] |
//! | [`role`] | the child's side: [`roles!`] and [`child_main`], [`arg`], [`wait_strategy`], [`emit`], [`role::hold_end`], [`fork_child`], [`wait_child`], [`inherited_fd`], [`unshare`] |
//! | [`procfs`] | `/proc` reads: [`proc_state`], [`wait_stopped`], [`wait_dead`], [`wait_in_futex`], [`diagnose`] |
//! | [`names`] | [`Names`], [`shm_path`], descriptor and mapping counts, [`shm_entries`], [`remove_stale`], [`PrefixCleanup`], [`send_fd`] / [`recv_fd`] |
//! | [`msg`] | the examples' verifiable message format, its [`Verifier`] and [`msg::drain`] |
//! | [`channel_args`] | the examples' shared command line: [`ChannelArgs`] |
//! | [`record`] | the catalogue's record format (incarnation, send time, checksum), its [`RecordVerifier`] and [`record::drain`] |
//! | [`hostile`] | a hostile peer's view of a segment: [`ring_off`], [`RawRegion`], [`open_raw`]; [`hostile::plant`], [`hostile::poke`], [`hostile::unsealed_memfd`], [`hostile::InvalidNames`] |
//! | [`measure`] | [`mono_ns`], [`cpu_ns`], [`self_cpu_ns`], [`process_cpu_ns`], [`rss_kib`], [`zombie_children`], [`futex_json`] |
//! | [`kinds`] | one scenario over both ring kinds: [`kinds::KindExt`] (the MPSC-only calls, no-ops for SPSC), [`by_kind!`] (a role's KIND parameter to a type), [`test_both_kinds!`] (a test of scenarios over both kinds), [`test_each_kind!`] (a test per kind), [`kinds::How`]; [`kinds::assert_closed`], [`kinds::assert_died`], [`kinds::why`] |
//! | [`rng`] | [`Rng`], a replayable generator for test choices |
//!
//! The items of every module but [`msg`], [`record`] and [`kinds`] are also
//! re-exported here, so a test writes `shmq_testkit::Spawn`.
//!
//! # How the pieces fit
//!
//! - **Real processes (R2).** [`Spawn::role`] re-executes the current test binary
//!   as `<exe> --exact child_role --nocapture --test-threads=1` with
//!   `SHMQ_TEST_ROLE=<role>` and parameters in `SHMQ_TEST_ARG_<KEY>` variables;
//!   each test binary has a `child_role` test that runs [`child_main`], which
//!   does nothing when the variable is unset. [`Spawn::example`] runs the
//!   `producer`/`consumer` example programs of the `shmq` package from another
//!   working directory (built once by [`example_path`]). [`fork_child`] forks, but
//!   only inside a role process, whose only other thread is libtest's idle main
//!   thread.
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
//!   checks per-producer order with no gap and no duplicate. [`record`] is the
//!   reliability catalogue's format (producer, incarnation, sequence, send time,
//!   checksum), checked by [`RecordVerifier`].
//! - **No leftovers (R5).** [`Names`] hands out unique `/t-...` names and
//!   [`Names::assert_clean`] checks that none is left in `/dev/shm`, nor open or
//!   mapped in this process; role processes check their fd and mapping counts
//!   with [`shm_fds`] and [`shm_maps`].
//!
//! A child reports to the test through lines `@@shmq-event {json}` on its stdout
//! ([`emit`]), which [`Proc::event`] waits for.

use std::sync::Mutex;
use std::time::Duration;

pub mod channel_args;
pub mod hostile;
pub mod kinds;
pub mod measure;
pub mod msg;
pub mod names;
pub mod process;
pub mod procfs;
pub mod record;
pub mod rng;
pub mod role;

pub use channel_args::ChannelArgs;
pub use hostile::{RawRegion, open_raw, ring_off};
pub use measure::{
    cpu_ns, futex_json, mono_ns, process_cpu_ns, rss_kib, self_cpu_ns, thread_cpu_ns,
    zombie_children,
};
pub use msg::{Stamp, Verifier, message};
pub use names::{
    Names, PrefixCleanup, fd_count, fd_identity, fd_table, name_identity, recv_fd, remove_stale,
    send_fd, shm_entries, shm_fds, shm_fds_without_cloexec, shm_maps, shm_path, warm_up_fork_guard,
};
pub use process::{
    CHILD_TEST, DEADLINE, EVENT_TIMEOUT, Proc, ROLE_ENV, Spawn, Watchdog, assert_no_leak,
    example_path, num,
};
pub use procfs::{
    diagnose, gettid, proc_state, thread_syscall, wait_dead, wait_in_futex, wait_stopped,
};
pub use record::RecordVerifier;
pub use rng::Rng;
pub use role::{
    arg, arg_opt, arg_or, child_main, emit, fork_child, hang, in_role, inherited_fd, unshare,
    wait_child, wait_strategy,
};

/// Options for a channel whose ends are one session (`Lifecycle::Session`):
/// a peer's close or death is reported as `Disconnected`. The tests of death
/// detection and of draining after a producer is gone use it on named channels,
/// which are queues by default (docs/LIFECYCLE.md).
pub fn session() -> shmq::Options {
    shmq::Options::new().lifecycle(shmq::Lifecycle::Session)
}

/// A count or duration a long run can raise: the environment variable `key`
/// parsed as `T`, or `default` (the small CI value) if it is unset or does not
/// parse.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A durability policy as the examples and tests spell it: `none`,
/// `every-commit` (or `every`), `periodic:MS:MESSAGES` (either budget 0 for
/// none of that kind).
pub fn parse_durability(spec: &str) -> Result<shmq::Durability, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{spec:?}: {e}"));
    match parts.as_slice() {
        ["none"] => Ok(shmq::Durability::None),
        ["every" | "every-commit"] => Ok(shmq::Durability::EveryCommit),
        ["periodic", ms, n] => Ok(shmq::Durability::Periodic {
            interval: Duration::from_millis(num(ms)?),
            messages: num(n)?,
        }),
        _ => Err(format!(
            "unknown durability {spec:?} (none, every-commit, periodic:MS:MESSAGES)"
        )),
    }
}

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

/// What a multi-process test starts with: a [`Watchdog`] labelled `test`, the
/// test's [`Names`] and a first name from them, tagged `tag`. Bind them in this
/// order (`let (wd, names, name) = ...`), so that the names are cleaned up
/// before the watchdog stops.
pub fn start(test: &str, tag: &str) -> (Watchdog, Names, String) {
    let wd = Watchdog::new(test);
    let names = Names::new();
    let name = names.name(tag);
    (wd, names, name)
}

/// CF-06's start (`tests/reliability_crash.rs` and `tests/spsc.rs`): as
/// [`start`], then the receiving role `consumer` makes of the name, with a ring
/// of `capacity` bytes, dies right after setting its waiting flag
/// ([`Spawn::kill_after_wait_flag_set`]).
pub fn start_after_a_consumer_died_asleep(
    (test, tag): (&str, &str),
    consumer: impl FnOnce(&str) -> Spawn,
    capacity: u64,
) -> (Watchdog, Names, String) {
    let (wd, names, name) = start(test, tag);
    consumer(&name)
        .arg("CAP", capacity)
        .kill_after_wait_flag_set(&wd);
    (wd, names, name)
}

/// Polls `check` every `every` until it returns `Ok`, and returns what it
/// holds; panics with the last `Err` (what was seen instead) if `within`
/// passes first. For a test that waits for a state it can only look at.
#[track_caller]
pub fn poll_until<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(t) => return t,
            Err(seen) => assert!(std::time::Instant::now() < deadline, "{seen}"),
        }
        std::thread::sleep(every);
    }
}

/// Whether this process runs as root (root-only parts skip otherwise).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Checks that `seq` is `*next`, the next sequence number of stream `who`,
/// and counts it; `Err` says whether it is a duplicate or a gap (`what`: the
/// unit, `message` or `record`).
pub(crate) fn in_sequence(
    next: &mut u64,
    seq: u64,
    who: std::fmt::Arguments<'_>,
    what: &str,
) -> Result<(), String> {
    if seq != *next {
        let problem = if seq < *next {
            "duplicate or reordered".to_owned()
        } else {
            format!("gap: lost {what}s")
        };
        return Err(format!(
            "{who}: expected {what} {next}, got {seq} ({problem})"
        ));
    }
    *next += 1;
    Ok(())
}

/// Holds the lock that lets only one heavy (spinning, million-message or soak)
/// test of this process run at a time, also under `cargo test`'s threads.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    lock(&SERIAL)
}

/// Receives with `recv` (into one reused buffer) until it fails, handing every
/// message to `take` with `v`; returns `v` and the error that ended the stream.
pub(crate) fn drain_with<V, E>(
    mut v: V,
    take: impl Fn(&mut V, &[u8]),
    mut recv: impl FnMut(&mut Vec<u8>) -> Result<(), E>,
) -> (V, E) {
    let mut buf = Vec::new();
    loop {
        if let Err(e) = recv(&mut buf) {
            return (v, e);
        }
        take(&mut v, &buf);
    }
}

/// Receives with `recv` (a receive with a time-out, into one reused buffer)
/// until it fails with anything but [`shmq::Error::Timeout`]: hands every
/// message to `on_message`, and calls `on_timeout` at every time-out, which
/// may stop the stream early by returning `Some(stopped)`. Returns the error
/// that ended the stream, or `Err(stopped)`.
pub fn receive_through_timeouts<T>(
    mut recv: impl FnMut(&mut Vec<u8>) -> shmq::Result<()>,
    mut on_message: impl FnMut(&[u8]),
    mut on_timeout: impl FnMut() -> Option<T>,
) -> Result<shmq::Error, T> {
    let mut buf = Vec::new();
    loop {
        match recv(&mut buf) {
            Ok(()) => on_message(&buf),
            Err(shmq::Error::Timeout) => {
                if let Some(stopped) = on_timeout() {
                    return Err(stopped);
                }
            }
            Err(e) => return Ok(e),
        }
    }
}

/// Asserts that a test that goes through a table of cases collected no
/// failures (one line each), listing them all under `what` if it did.
pub fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n"));
}

/// Whether this process runs as root; if not, prints `SKIP <what>` (`what`:
/// the test and why it needs root), for a root-only test to return at once.
pub fn root_or_skip(what: &str) -> bool {
    let root = is_root();
    if !root {
        eprintln!("SKIP {what}");
    }
    root
}

/// Whether `strace` is installed; if not, prints `SKIP: strace is not
/// installed (<why>)` (`why`: what the test needs it for), for a test that
/// runs its children under `strace` to return at once.
pub fn strace_or_skip(why: &str) -> bool {
    let there = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok();
    if !there {
        eprintln!("SKIP: strace is not installed ({why})");
    }
    there
}

/// Locks `m`, taking the data of a poisoned lock too: a test that panicked
/// while holding it must not hide the harness's state from the clean-up.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
