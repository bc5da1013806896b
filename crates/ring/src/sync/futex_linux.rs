//! Shared (not private) futexes through `rustix`: waiters and wakers may be in
//! different processes, so `FUTEX_PRIVATE_FLAG` must not be set.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rustix::thread::futex;

/// Futex system calls made by this process: (`FUTEX_WAIT`, `FUTEX_WAKE`).
static WAITS: AtomicU64 = AtomicU64::new(0);
static WAKES: AtomicU64 = AtomicU64::new(0);

/// How many `FUTEX_WAIT` and `FUTEX_WAKE` system calls this process has made
/// through shmq: a diagnostic for "no system call while the peer is awake".
pub fn futex_calls() -> (u64, u64) {
    (WAITS.load(Ordering::Relaxed), WAKES.load(Ordering::Relaxed))
}

/// A 32-bit futex word in shared memory.
#[repr(transparent)]
pub struct FutexWord(AtomicU32);

impl FutexWord {
    pub(crate) fn load(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }

    pub(crate) fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        self.0.fetch_add(v, order)
    }

    /// Sleeps while the word equals `expected`, for at most `timeout`. Returns on a
    /// wake, a time-out, a signal, or at once if the word differs: callers re-check
    /// their condition in every case.
    pub(crate) fn wait(&self, expected: u32, timeout: Option<Duration>) {
        WAITS.fetch_add(1, Ordering::Relaxed);
        let ts = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        // EAGAIN (word differs), ETIMEDOUT and EINTR all mean "re-check".
        let _ = futex::wait(&self.0, flags(), expected, ts.as_ref());
    }

    /// Wakes up to `n` waiters.
    pub(crate) fn wake(&self, n: u32) {
        WAKES.fetch_add(1, Ordering::Relaxed);
        let _ = futex::wake(&self.0, flags(), n);
    }
}

/// Shared futex: no `PRIVATE` flag. A `failpoints` build can be told to use
/// private futexes (`SHMQ_TEST_PRIVATE_FUTEX=1`) to show that the cross-process
/// wake-up test catches that bug.
fn flags() -> futex::Flags {
    #[cfg(feature = "failpoints")]
    if crate::failpoint::private_futex() {
        return futex::Flags::PRIVATE;
    }
    futex::Flags::empty()
}
