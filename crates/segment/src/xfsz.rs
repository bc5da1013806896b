//! Sizing a new segment without being killed by `SIGXFSZ`.
//!
//! When a file would grow beyond the soft `RLIMIT_FSIZE` (`ulimit -f`),
//! `ftruncate` and `posix_fallocate` fail with `EFBIG` *and* the kernel sends
//! the calling thread `SIGXFSZ`, whose default action kills the whole process.
//! A library must report the error instead, and leave the process's signal state
//! as it found it. [`guarded`] blocks `SIGXFSZ` in the calling thread around the
//! sizing calls, takes back (with `sigtimedwait` and a zero time-out) a `SIGXFSZ`
//! that became pending meanwhile, and restores the thread's signal mask. The
//! signal is thread-directed (`send_sig` to the current task), so blocking it in
//! this thread is enough: no other thread can receive it. A `SIGXFSZ` that was
//! already pending before the call (sent by someone else and blocked) is left
//! pending. The disposition is never changed.
//!
//! # Safety
//! `sigpending`, `sigtimedwait` and `getrlimit` get pointers to local, initialised
//! values only.
#![allow(unsafe_code)]

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Runs `f` (which sizes a file) with `SIGXFSZ` blocked in this thread, then
/// discards a `SIGXFSZ` that `f` raised and restores the thread's signal mask.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> T {
    let mut only = SigSet::empty();
    only.add(Signal::SIGXFSZ);
    let Ok(old) = only.thread_swap_mask(SigmaskHow::SIG_BLOCK) else {
        // Cannot fail for a valid set; run unguarded rather than not at all.
        return f();
    };
    let was_pending = pending_xfsz();
    let out = f();
    if !was_pending {
        while pending_xfsz() && take_xfsz(&only) {}
    }
    let _ = old.thread_set_mask();
    out
}

/// Whether `SIGXFSZ` is pending for this thread or the process.
fn pending_xfsz() -> bool {
    // SAFETY: an all-zero `sigset_t` is a valid (empty) set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `sigpending` writes one `sigset_t` into the value we own, and
    // `sigismember` reads it.
    unsafe { libc::sigpending(&mut set) == 0 && libc::sigismember(&set, libc::SIGXFSZ) == 1 }
}

/// Takes one pending `SIGXFSZ` without waiting; whether one was taken.
fn take_xfsz(only: &SigSet) -> bool {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `only` is a valid signal set, `info` may be null, `zero` is a valid
    // timespec on our stack; with a zero time-out the call never blocks.
    let r = unsafe { libc::sigtimedwait(only.as_ref(), std::ptr::null_mut(), &zero) };
    r == libc::SIGXFSZ
}

/// The soft `RLIMIT_FSIZE` in bytes, or `None` if unlimited or unknown.
pub(crate) fn file_size_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the value we own.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) };
    (r == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}
