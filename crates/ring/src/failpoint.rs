//! Crash points for tests, compiled only with the `failpoints` feature.
//!
//! A process started with `SHMQ_FAILPOINT=<name>` stops the first time it reaches
//! `<name>`: it writes `reached <name>\n` to the file descriptor in
//! `SHMQ_FAILPOINT_FD` (if set) and then sleeps forever, so the test harness can
//! `SIGKILL` it at exactly that step of the protocol. With
//! `SHMQ_FAILPOINT=<name>:stop` it instead stops itself with `SIGSTOP` after
//! writing, and carries on from there when sent `SIGCONT`. Without the feature,
//! [`hit`] is an empty inline function.

/// Whether crash points are compiled in (the `failpoints` feature): a step
/// split only so that a test can crash between its halves is done whole
/// without them.
pub(crate) const ENABLED: bool = cfg!(feature = "failpoints");

/// The protocol steps with a crash point.
pub const POINTS: &[&str] = &[
    "after_claim",
    "mid_payload",
    "before_commit",
    "after_commit_before_wake",
    "after_wait_flag_set",
    "mid_init",
    "mid_release",
];

#[cfg(feature = "failpoints")]
#[allow(unsafe_code)]
mod imp {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The armed failpoint and whether to `SIGSTOP` (instead of sleeping forever).
    fn armed() -> Option<(&'static str, bool)> {
        static ARMED: OnceLock<Option<(String, bool)>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let v = std::env::var("SHMQ_FAILPOINT").ok()?;
                Some(match v.strip_suffix(":stop") {
                    Some(n) => (n.to_owned(), true),
                    None => (v, false),
                })
            })
            .as_ref()
            .map(|(n, stop)| (n.as_str(), *stop))
    }

    /// Stops here if `name` is the armed failpoint: forever, or, with the `:stop`
    /// action, until `SIGCONT` (once: a resumed process does not stop again).
    #[inline(never)]
    pub fn hit(name: &str) {
        static DONE: AtomicBool = AtomicBool::new(false);
        let Some((armed, stop)) = armed() else { return };
        if armed != name || DONE.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(fd) = std::env::var("SHMQ_FAILPOINT_FD")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            // SAFETY: the harness handed us this descriptor for exactly this use; we
            // never close it (ManuallyDrop), it stays the harness's.
            let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let _ = writeln!(f, "reached {name}");
            let _ = f.flush();
        }
        if stop {
            raise_sigstop();
            return;
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }

    fn raise_sigstop() {
        unsafe extern "C" {
            fn raise(sig: i32) -> i32;
        }
        const SIGSTOP: i32 = 19;
        // SAFETY: `raise` is a plain libc call with no memory-safety preconditions.
        unsafe { raise(SIGSTOP) };
    }

    /// Whether the futex module should (wrongly) use private futexes.
    pub fn private_futex() -> bool {
        static P: OnceLock<bool> = OnceLock::new();
        *P.get_or_init(|| std::env::var_os("SHMQ_TEST_PRIVATE_FUTEX").is_some())
    }

    /// Whether this process should act as if `membarrier` were refused
    /// (`SHMQ_TEST_NO_MEMBARRIER=1`): never registered, its heavy barriers
    /// fail over to fences.
    pub fn no_membarrier() -> bool {
        static P: OnceLock<bool> = OnceLock::new();
        *P.get_or_init(|| std::env::var_os("SHMQ_TEST_NO_MEMBARRIER").is_some())
    }

    /// Whether waiters should (wrongly) skip the heavy barrier of an
    /// asymmetric ring (`SHMQ_TEST_SKIP_HEAVY_BARRIER=1`): the negative control
    /// of the cross-process test that shows it is needed.
    pub fn skip_heavy_barrier() -> bool {
        static P: OnceLock<bool> = OnceLock::new();
        *P.get_or_init(|| std::env::var_os("SHMQ_TEST_SKIP_HEAVY_BARRIER").is_some())
    }
}

#[cfg(feature = "failpoints")]
pub use imp::hit;
#[cfg(feature = "failpoints")]
pub(crate) use imp::{no_membarrier, private_futex, skip_heavy_barrier};

/// Stops here forever if `name` is the armed failpoint (no-op without the
/// `failpoints` feature).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
