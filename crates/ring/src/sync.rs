//! The only place that names `std` or `loom` atomics, and the futex.
//!
//! Under `--cfg loom` the atomics are loom's and the futex is a mutex and condition
//! variable that really block, so a lost wake-up shows up in a model as a deadlock.

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg_attr(not(loom), path = "sync/futex_linux.rs")]
#[cfg_attr(loom, path = "sync/futex_loom.rs")]
mod futex;

pub(crate) use futex::FutexWord;
#[cfg(not(loom))]
pub use futex::futex_calls;

/// The fence of the wake-up protocol (DESIGN.md section 6): orders our store of a
/// position or waiting flag before our load of the other one.
///
/// `shmq_negative_control` builds drop it, to show that the loom model of the
/// wake-up protocol deadlocks without it.
#[inline]
pub(crate) fn fence_seqcst() {
    #[cfg(not(shmq_negative_control))]
    fence(Ordering::SeqCst);
}
