//! The adversary shim: atomics that report every read of shared memory to a
//! thread-local hook, compiled only with `--cfg shmq_adversary` (a rustc cfg like
//! `loom`, never a cargo feature, so `--all-features` cannot turn it on).
//!
//! Every control word and frame header of a ring is an [`AtomicU64`] or
//! [`AtomicU32`] of this crate, so under the shim every read the rings make of
//! shared memory goes through [`AtomicU64::load`] (or the read half of a
//! read-modify-write) here. Each calls the hook twice: once *before* the hardware
//! load ([`Read::value`] is `None`), when the hook may play a hostile peer and
//! write anything into the region, and once *after* it, with the value read. That
//! gives tests two tools (catalogue HP-04, FZ-05, pitfall 11):
//! - **read counts**: record the addresses an operation reads and prove that every
//!   shared field is fetched at most once, so a value cannot be validated from one
//!   fetch and used from another (a double fetch);
//! - **deterministic interleaving**: a single-threaded test or fuzz target chooses
//!   a peer write to make between *every* pair of reads, which a racing thread would
//!   hit only by luck.
//!
//! Payload bytes are copied with plain memory copies, not atomics, and are not
//! reported; nor are the futex words (`FutexWord` uses the core atomic, which the
//! futex system call needs), which are wake-up hints only. Stores are not reported,
//! nor is the load of a `store_back` (the SPSC consumer's hand-back stores back
//! what a word holds without looking at it).
//!
//! The hook is per thread and is not re-entered: reads made while it runs (for
//! example a hook that calls [`Region::load_word`](crate::Region::load_word)) do
//! not call it again.
//!
//! # Examples
//! ```
//! # #[cfg(shmq_adversary)] {
//! use std::{cell::RefCell, rc::Rc, sync::Arc};
//! use shmq_ring::{adversary, spsc, InProcess, Region, WaitConfig};
//!
//! let region = Region::heap(spsc::region_len(256));
//! spsc::init(&region, shmq_ring::Geometry::spsc(256).unwrap(), 0).unwrap();
//! let mut rx = spsc::Consumer::attach(&region, shmq_ring::Geometry::spsc(256).unwrap(), WaitConfig::default(), Arc::new(InProcess)).unwrap();
//! let base = adversary::base_address(&region).unwrap();
//! let reads = Rc::new(RefCell::new(Vec::new()));
//! let r = reads.clone();
//! adversary::with_hook(
//!     move |read: &adversary::Read| if read.value.is_some() { r.borrow_mut().push(read.addr - base) },
//!     || { let _ = rx.try_recv(); },
//! );
//! assert!(reads.borrow().contains(&spsc::CONTROL_LEN)); // the header at position 0
//! # }
//! ```

use core::cell::RefCell;
use core::sync::atomic::{self, Ordering};

use crate::Region;

/// One read of a shared word, as the hook sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// Address of the word (compare with [`base_address`] to get a region offset).
    pub addr: usize,
    /// Width of the word in bytes: 4 or 8.
    pub width: u8,
    /// Whether this is the read half of a read-modify-write (compare-and-swap,
    /// fetch-add, swap) rather than a plain load.
    pub rmw: bool,
    /// `None` when the hook is called before the read; the value read (zero-extended
    /// for 4-byte words) when it is called after.
    pub value: Option<u64>,
}

type Hook = Box<dyn FnMut(&Read)>;

std::thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Installs `hook` for reads made by this thread, replacing any earlier one.
///
/// # Panics
/// If called from inside a hook.
pub fn set_hook(hook: impl FnMut(&Read) + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
}

/// Removes this thread's hook.
///
/// # Panics
/// If called from inside a hook.
pub fn clear_hook() {
    HOOK.with(|h| *h.borrow_mut() = None);
}

/// Runs `body` with `hook` installed for this thread, then removes it (also when
/// `body` panics, so that a failing fuzz input or test leaves no hook behind).
pub fn with_hook<R>(hook: impl FnMut(&Read) + 'static, body: impl FnOnce() -> R) -> R {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            let _ = HOOK.try_with(|h| {
                if let Ok(mut h) = h.try_borrow_mut() {
                    *h = None;
                }
            });
        }
    }
    set_hook(hook);
    let _clear = Clear;
    body()
}

/// The address of the first byte of `region`, so that a hook can turn
/// [`Read::addr`] into a region offset (`None` for a region shorter than a word).
/// Found by reading word 0 under a recording hook; this thread's own hook is put
/// back afterwards.
///
/// # Panics
/// If called from inside a hook.
pub fn base_address(region: &Region) -> Option<usize> {
    let saved = HOOK.with(|h| h.borrow_mut().take());
    let seen = std::rc::Rc::new(core::cell::Cell::new(None));
    let s = seen.clone();
    set_hook(move |r| {
        if r.value.is_none() && s.get().is_none() {
            s.set(Some(r.addr));
        }
    });
    let _ = region.load_word(0);
    HOOK.with(|h| *h.borrow_mut() = saved);
    seen.get()
}

/// Calls the hook, unless none is set, it is already running (a read made by the
/// hook itself), or the thread is being torn down.
#[inline]
fn report(read: Read) {
    let _ = HOOK.try_with(|h| {
        if let Ok(mut h) = h.try_borrow_mut()
            && let Some(f) = h.as_mut()
        {
            f(&read);
        }
    });
}

/// A compare-and-swap method of a shim: the core type's method of the same
/// name, its read reported through `cas`.
macro_rules! cas_method {
    ($(#[$doc:meta])* $method:ident, $int:ty) => {
        $(#[$doc])*
        #[inline]
        pub fn $method(
            &self,
            current: $int,
            new: $int,
            success: Ordering,
            failure: Ordering,
        ) -> Result<$int, $int> {
            self.cas(|w| w.$method(current, new, success, failure))
        }
    };
}

macro_rules! shim {
    ($name:ident, $int:ty, $core:ty, $width:expr) => {
        /// A core atomic whose reads are reported to the hook (see the module docs).
        /// Same size, alignment and bit validity as the core type it wraps, so it can
        /// be laid over shared memory exactly as that type is.
        #[repr(transparent)]
        #[derive(Debug, Default)]
        pub struct $name($core);

        // Several methods exist for parity with the core type (and loom's), so that
        // the crate compiles unchanged whichever of the three `sync` gives it.
        #[allow(dead_code)]
        impl $name {
            /// A new atomic holding `v`.
            pub const fn new(v: $int) -> Self {
                Self(<$core>::new(v))
            }

            #[inline]
            fn addr(&self) -> usize {
                (self as *const Self).addr()
            }

            #[inline]
            fn before(&self, rmw: bool) -> usize {
                let addr = self.addr();
                report(Read {
                    addr,
                    width: $width,
                    rmw,
                    value: None,
                });
                addr
            }

            #[inline]
            fn after(addr: usize, rmw: bool, v: $int) -> $int {
                report(Read {
                    addr,
                    width: $width,
                    rmw,
                    value: Some(u64::from(v)),
                });
                v
            }

            /// Loads the value (reported before and after).
            #[inline]
            pub fn load(&self, order: Ordering) -> $int {
                let a = self.before(false);
                Self::after(a, false, self.0.load(order))
            }

            /// Stores `v` (not reported).
            #[inline]
            pub fn store(&self, v: $int, order: Ordering) {
                self.0.store(v, order)
            }

            /// Stores back the value the word holds (a `Relaxed` load, then a
            /// `Relaxed` store of that value): takes the word's cache line for
            /// writing without changing it. Not reported: the value is never
            /// looked at, so no check can be bypassed with it.
            #[inline]
            pub fn store_back(&self) {
                self.0
                    .store(self.0.load(Ordering::Relaxed), Ordering::Relaxed)
            }

            /// Swaps in `v`, returning the previous value (its read is reported).
            #[inline]
            pub fn swap(&self, v: $int, order: Ordering) -> $int {
                let a = self.before(true);
                Self::after(a, true, self.0.swap(v, order))
            }

            /// Adds `v` (wrapping), returning the previous value (its read is reported).
            #[inline]
            pub fn fetch_add(&self, v: $int, order: Ordering) -> $int {
                let a = self.before(true);
                Self::after(a, true, self.0.fetch_add(v, order))
            }

            /// Subtracts `v` (wrapping), returning the previous value (its read is
            /// reported).
            #[inline]
            pub fn fetch_sub(&self, v: $int, order: Ordering) -> $int {
                let a = self.before(true);
                Self::after(a, true, self.0.fetch_sub(v, order))
            }

            cas_method!(
                /// Stores `new` if the value is `current`; returns the value read
                /// either way (reported).
                ///
                /// # Errors
                /// The value read, if it was not `current`.
                compare_exchange,
                $int
            );

            cas_method!(
                /// As [`Self::compare_exchange`], allowed to fail spuriously.
                ///
                /// # Errors
                /// The value read, if it was not `current` (or spuriously).
                compare_exchange_weak,
                $int
            );

            /// One compare-and-swap `op` on the word, counted as a read.
            #[inline]
            fn cas(&self, op: impl FnOnce(&$core) -> Result<$int, $int>) -> Result<$int, $int> {
                let a = self.before(true);
                let r = op(&self.0);
                let (Ok(v) | Err(v)) = r;
                Self::after(a, true, v);
                r
            }

            /// The value, from exclusive ownership (no other thread can read it: not
            /// reported).
            pub fn into_inner(self) -> $int {
                self.0.into_inner()
            }
        }
    };
}

shim!(AtomicU64, u64, atomic::AtomicU64, 8);
shim!(AtomicU32, u32, atomic::AtomicU32, 4);

const _: () = {
    assert!(size_of::<AtomicU64>() == 8 && align_of::<AtomicU64>() == 8);
    assert!(size_of::<AtomicU32>() == 4 && align_of::<AtomicU32>() == 4);
};
