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
    /// A word in this process's own memory (the async waiter's control word).
    pub(crate) const fn new(v: u32) -> FutexWord {
        FutexWord(AtomicU32::new(v))
    }

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
        // The kernel reads the count as an `int`: `u32::MAX` would be -1, and
        // wake exactly one waiter (found by the broadcast ring, whose
        // subscribers share one word and were woken one at a time).
        let _ = futex::wake(&self.0, flags(), n.min(i32::MAX as u32));
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

/// Most words one `futex_waitv` takes (the kernel's `FUTEX_WAITV_MAX`).
pub(crate) const WAITV_MAX: usize = 128;

/// Longest sleep on several words without `futex_waitv`.
const FALLBACK_SLICE: Duration = Duration::from_millis(10);

/// Set once `futex_waitv` reported `ENOSYS` (a kernel older than 5.16): later
/// waits on several words sleep on the first one only, at most
/// [`FALLBACK_SLICE`] at a time, so that the others are looked at that often.
static NO_WAITV: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Sleeps while every `words[i].0` still holds `words[i].1`, for at most
/// `timeout`: `futex_waitv` on at most [`WAITV_MAX`] shared 32-bit words (a
/// `FUTEX_WAKE` on any of them wakes it). Returns on a wake, a time-out, a
/// signal, or at once if a word differs: callers re-check in every case.
/// Counted as one wait in [`futex_calls`].
pub(crate) fn wait_any(words: &[(&FutexWord, u32)], timeout: Duration) {
    let words = &words[..words.len().min(WAITV_MAX)];
    let Some(&(first, seq)) = words.first() else {
        return;
    };
    if words.len() == 1 {
        first.wait(seq, Some(timeout));
        return;
    }
    // Relaxed: a process-local hint; a stale `false` costs one more ENOSYS.
    if NO_WAITV.load(Ordering::Relaxed) {
        first.wait(seq, Some(timeout.min(FALLBACK_SLICE)));
        return;
    }
    // Relaxed: a statistics counter, as in `FutexWord::wait`.
    WAITS.fetch_add(1, Ordering::Relaxed);
    let mut waiters = [futex::Wait::new(); WAITV_MAX];
    for (w, &(word, seq)) in waiters.iter_mut().zip(words) {
        w.val = u64::from(seq);
        w.uaddr = futex::WaitPtr::new(word.0.as_ptr().cast());
        // Shared (no FUTEX2_PRIVATE), as `flags()` for the single-word calls.
        w.flags = futex::WaitFlags::SIZE_U32 | waitv_private();
    }
    // futex_waitv takes an absolute time on the clock it is given.
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let add = |d: Duration| -> rustix::time::Timespec {
        let mut sec = now
            .tv_sec
            .saturating_add(d.as_secs().min(i64::MAX as u64 / 2) as i64);
        let mut nsec = now.tv_nsec + i64::from(d.subsec_nanos());
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.saturating_add(1);
        }
        rustix::time::Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }
    };
    let until = add(timeout);
    // EAGAIN (a word differs), ETIMEDOUT and EINTR all mean "re-check".
    if let Err(rustix::io::Errno::NOSYS) = futex::waitv(
        &waiters[..words.len()],
        futex::WaitvFlags::empty(),
        Some(&until),
        rustix::time::ClockId::Monotonic,
    ) {
        // Relaxed: see the load above.
        NO_WAITV.store(true, Ordering::Relaxed);
        first.wait(seq, Some(timeout.min(FALLBACK_SLICE)));
    }
}

/// `FUTEX2_PRIVATE` when a `failpoints` build is told to use private futexes
/// (see `flags()`), else nothing: shared.
fn waitv_private() -> futex::WaitFlags {
    #[cfg(feature = "failpoints")]
    if crate::failpoint::private_futex() {
        return futex::WaitFlags::PRIVATE;
    }
    futex::WaitFlags::empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// Every waiter wakes on `wake(u32::MAX)`: the kernel reads the count as
    /// an `int`, and -1 woke one (the others slept their whole time-out).
    #[test]
    fn waking_all_wakes_every_waiter() {
        let word = Arc::new(FutexWord::new(0));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let word = word.clone();
                std::thread::spawn(move || {
                    let t = Instant::now();
                    word.wait(0, Some(Duration::from_secs(120)));
                    t.elapsed()
                })
            })
            .collect();
        // Time for them to be asleep in the kernel (one that is not yet sees
        // the new value and returns at once: the test then passes either way).
        std::thread::sleep(Duration::from_millis(200));
        word.fetch_add(1, Ordering::Release);
        word.wake(u32::MAX);
        for w in waiters {
            let slept = w.join().unwrap();
            assert!(slept < Duration::from_secs(60), "a waiter slept {slept:?}");
        }
    }
}
