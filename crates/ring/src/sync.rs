//! The only place that names `std` or `loom` atomics, and the futex.
//!
//! Under `--cfg loom` the atomics are loom's and the futex is a mutex and condition
//! variable that really block, so a lost wake-up shows up in a model as a deadlock.
//!
//! Under `--cfg shmq_adversary` (and not loom) the atomics are the thin wrappers of
//! `sync/adversary.rs`: every load, and the read half of every read-modify-write, first
//! calls a thread-local hook with the word's address, so that a test can count the
//! reads an operation makes (catalogue HP-04) or play a peer that writes between
//! any two of them (FZ-05). Normal builds use the core atomics unchanged.

pub(crate) use core::hint::spin_loop;
#[cfg(not(any(loom, shmq_adversary)))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64};
// `fence` is unused only in the negative-control build, which drops the fences.
#[cfg(not(loom))]
#[cfg_attr(shmq_negative_control, allow(unused_imports))]
pub(crate) use core::sync::atomic::{Ordering, fence};
#[cfg(loom)]
#[cfg_attr(shmq_negative_control, allow(unused_imports))]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(all(shmq_adversary, not(loom)))]
pub mod adversary;
#[cfg(all(shmq_adversary, not(loom)))]
pub(crate) use adversary::{AtomicU32, AtomicU64};

#[cfg(loom)]
mod fresh_loom;

/// Whether this build runs under a model checker (loom), where time does not
/// pass and must not steer a model: blocking calls do not spin, and peers are
/// looked at only when their epoch changes.
pub(crate) const MODEL: bool = cfg!(loom);

/// Loads `word` and stores the value back (`Relaxed`, both), to take its
/// cache line for writing without changing it (the SPSC consumer's hand-back,
/// docs/PROTOCOL.md section 4). The caller owns the word until a later
/// `Release` store publishes it. Under the adversary shim the load is not
/// reported as a read: its value is never looked at.
#[inline]
pub(crate) fn store_back(word: &AtomicU64) {
    #[cfg(all(shmq_adversary, not(loom)))]
    word.store_back();
    #[cfg(not(all(shmq_adversary, not(loom))))]
    word.store(word.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// A value that can be made fresh, as zero bytes in shared memory are: under
/// loom control blocks live on the heap and are made by `fresh()`
/// (`sync/fresh_loom.rs`); otherwise every type qualifies and nothing is made.
#[cfg(loom)]
pub(crate) trait Fresh: Sized {
    /// A fresh value: every word 0 (claims `NO_CLAIM`).
    fn fresh() -> Self;
}

/// See the loom form.
#[cfg(not(loom))]
pub(crate) trait Fresh {}
#[cfg(not(loom))]
impl<T> Fresh for T {}

#[cfg_attr(not(loom), path = "sync/futex_linux.rs")]
#[cfg_attr(loom, path = "sync/futex_loom.rs")]
mod futex;

pub use futex::{FutexWord, futex_calls};
pub(crate) use futex::{WAITV_MAX, wait_any};

/// The fence of the wake-up protocol (docs/PROTOCOL.md, section 6): orders our store of a
/// position or waiting flag before our load of the other one.
///
/// `shmq_negative_control` builds drop it, to show that the loom model of the
/// wake-up protocol deadlocks without it.
#[inline]
pub(crate) fn fence_seqcst() {
    #[cfg(not(shmq_negative_control))]
    fence(Ordering::SeqCst);
}

/// The writer's fence of the broadcast seqlock (`broadcast.rs`): the
/// announcement of an overwrite (`intent`) before the bytes overwritten.
/// Compiled out in `shmq_negative_control` builds, whose loom model must then
/// find a lossy subscriber returning a torn message.
#[inline(always)]
pub(crate) fn seqlock_write_fence() {
    #[cfg(not(shmq_negative_control))]
    fence(Ordering::Release);
}

/// The reader's fence of the broadcast seqlock: the bytes copied before the
/// look at `intent` that validates them. Compiled out as
/// [`seqlock_write_fence`] is.
#[inline(always)]
pub(crate) fn seqlock_read_fence() {
    #[cfg(not(shmq_negative_control))]
    fence(Ordering::Acquire);
}

/// Whether this process is registered for `MEMBARRIER_CMD_GLOBAL_EXPEDITED`
/// (asked once, registered on the first call): then a waiter's
/// [`heavy_barrier`] in any process reaches this one's threads, and its
/// notifiers may make do with [`light_barrier`] on rings whose every waiter
/// issues the heavy one (docs/PROTOCOL.md, section 6, "Asymmetric fences").
/// Never under loom (the models keep the symmetric fences), nor when a
/// `failpoints` build is told `SHMQ_TEST_NO_MEMBARRIER=1` (a process as a
/// seccomp jail leaves it).
pub(crate) fn membarrier_registered() -> bool {
    #[cfg(loom)]
    {
        false
    }
    #[cfg(not(loom))]
    {
        use rustix::thread::{MembarrierCommand, MembarrierQuery, membarrier, membarrier_query};
        static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *REGISTERED.get_or_init(|| {
            #[cfg(feature = "failpoints")]
            if crate::failpoint::no_membarrier() {
                return false;
            }
            let q = membarrier_query();
            q.contains(
                MembarrierQuery::GLOBAL_EXPEDITED | MembarrierQuery::REGISTER_GLOBAL_EXPEDITED,
            ) && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
        })
    }
}

/// The waiter's side of an asymmetric fence: `membarrier(GLOBAL_EXPEDITED)`,
/// a full barrier in this thread and in every running thread of every
/// registered process, so that a notifier there that made only a
/// [`light_barrier`] is ordered as if it had fenced. Returns false if the
/// call failed (a jail that refuses it); a `fence(SeqCst)` was made instead,
/// which does not reach light notifiers. Under loom, the `fence(SeqCst)` the
/// models check (PROTOCOL.md argues the equivalence).
pub(crate) fn heavy_barrier() -> bool {
    #[cfg(not(loom))]
    {
        #[cfg(feature = "failpoints")]
        if crate::failpoint::skip_heavy_barrier() {
            return true;
        }
        use rustix::thread::{MembarrierCommand, membarrier};
        if membarrier(MembarrierCommand::GlobalExpedited).is_ok() {
            return true;
        }
    }
    fence_seqcst();
    cfg!(loom)
}

/// The notifier's side of an asymmetric fence: the compiler must not move
/// its load of the waiting flag before its publication; the processor may,
/// and the waiter's [`heavy_barrier`] covers that.
#[inline(always)]
pub(crate) fn light_barrier() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// Whether a `Drop` must leave shared state alone because a loom model is
/// unwinding: loom's state is gone by then, and touching an atomic again would
/// abort the test binary. Always `false` outside loom.
#[inline]
pub(crate) fn model_unwinding() -> bool {
    cfg!(loom) && std::thread::panicking()
}
