//! Crash points for tests, compiled only with the `failpoints` feature.
//!
//! A process started with `SHMQ_FAILPOINT=<name>` stops the first time it reaches
//! `<name>`: it writes `reached <name>\n` to the file descriptor in
//! `SHMQ_FAILPOINT_FD` (if set) and then sleeps forever, so the test harness can
//! `SIGKILL` or `SIGSTOP` it at exactly that step of the protocol. Without the
//! feature, [`hit`] is an empty inline function.

/// The protocol steps with a crash point.
pub const POINTS: &[&str] = &[
    "after_claim",
    "mid_payload",
    "before_commit",
    "after_commit_before_wake",
    "after_wait_flag_set",
    "mid_init",
];

#[cfg(feature = "failpoints")]
#[allow(unsafe_code)]
mod imp {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    use std::sync::OnceLock;

    fn armed() -> Option<&'static str> {
        static ARMED: OnceLock<Option<String>> = OnceLock::new();
        ARMED
            .get_or_init(|| std::env::var("SHMQ_FAILPOINT").ok())
            .as_deref()
    }

    /// Stops here forever if `name` is the armed failpoint.
    #[inline(never)]
    pub fn hit(name: &str) {
        if armed() != Some(name) {
            return;
        }
        if let Some(fd) = std::env::var("SHMQ_FAILPOINT_FD")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            // SAFETY: the harness handed us this descriptor for exactly this use; we
            // never close it (ManuallyDrop) since we are about to stop forever.
            let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let _ = writeln!(f, "reached {name}");
            let _ = f.flush();
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }

    /// Whether the futex module should (wrongly) use private futexes.
    pub fn private_futex() -> bool {
        static P: OnceLock<bool> = OnceLock::new();
        *P.get_or_init(|| std::env::var_os("SHMQ_TEST_PRIVATE_FUTEX").is_some())
    }
}

#[cfg(feature = "failpoints")]
pub use imp::hit;
#[cfg(feature = "failpoints")]
pub(crate) use imp::private_futex;

/// Stops here forever if `name` is the armed failpoint (no-op without the
/// `failpoints` feature).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
