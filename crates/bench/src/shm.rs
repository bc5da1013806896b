//! A `MAP_SHARED` anonymous mapping inherited across `fork`: the memory of the
//! hand-made baselines (the floors, eventfd's payload, the `raw_sync` queue).
//!
//! # Safety
//! A [`SharedMap`] owns `len` bytes of page-aligned memory, mapped until it drops.
//! Another process (the forked peer) may write any byte at any time, so:
//! - words that both sides touch are reached only as atomics, at aligned offsets
//!   checked against `len`;
//! - payload bytes are only copied with raw copies (never lent as `&[u8]`), at
//!   ranges checked against `len`; a peer that breaks a baseline's protocol can
//!   make a copy read torn bytes, never read or write out of bounds;
//! - [`SharedMap::ptr`] hands out a raw pointer for `raw_sync`, whose own
//!   constructors are `unsafe` and state their requirements.
#![allow(unsafe_code)]

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// Bytes between two words that different processes write: two cache lines, so
/// that the adjacent-line prefetcher does not couple them (as in shmq's control
/// block).
pub(crate) const LINE: usize = 128;

/// A zero-filled shared anonymous mapping.
pub(crate) struct SharedMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the map is plain memory that lives until `Drop`; every access goes
// through atomics or bounds-checked raw copies (see the module docs), so sharing
// the handle between threads adds nothing that sharing it with a process does not.
unsafe impl Send for SharedMap {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes (rounded up to whole pages by the kernel), zero-filled,
    /// shared with children forked later.
    pub(crate) fn new(len: usize) -> std::io::Result<SharedMap> {
        let length = NonZeroUsize::new(len).ok_or_else(|| std::io::Error::other("empty map"))?;
        // SAFETY: a fresh mapping chosen by the kernel (no address hint) aliases no
        // existing Rust object; it is unmapped only in `Drop`.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(SharedMap {
            base: ptr.cast(),
            len,
        })
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check(&self, off: usize, len: usize, align: usize) {
        assert!(
            off.is_multiple_of(align) && off.checked_add(len).is_some_and(|end| end <= self.len),
            "shared map access out of bounds: {off}+{len} of {}",
            self.len
        );
    }

    /// The `AtomicU64` at `off`.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or the word is not inside the map.
    pub(crate) fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: in bounds and 8-aligned (checked; the base is page-aligned); any
        // bit pattern is a valid `AtomicU64`; the map lives as long as `&self`.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// The `AtomicU32` at `off`.
    ///
    /// # Panics
    /// If `off` is not 4-aligned or the word is not inside the map.
    pub(crate) fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: as in `u64_at`, for 4 bytes.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// Copies `src` into the map at `off`.
    ///
    /// # Panics
    /// If the range is not inside the map.
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        self.check(off, src.len(), 1);
        // SAFETY: the destination range is inside the map (checked) and is never
        // behind a Rust reference; `src` is private memory, so they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(off), src.len())
        }
    }

    /// Copies `dst.len()` bytes at `off` out of the map.
    ///
    /// # Panics
    /// If the range is not inside the map.
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
        self.check(off, dst.len(), 1);
        // SAFETY: as in `write`, in the other direction.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        }
    }

    /// XOR of the `len / 8` little-endian words at `off` (8-aligned), read in
    /// place with plain loads: the floor's consumer reads every byte of a record
    /// without copying it out, as shmq's receiver does.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or the range is not inside the map.
    pub(crate) fn fold_words(&self, off: usize, len: usize) -> u64 {
        self.check(off, len, 8);
        let base = self.base.as_ptr();
        let mut acc = 0u64;
        for k in 0..len / 8 {
            // SAFETY: word `k` is inside the checked, 8-aligned range; it is read
            // through a raw pointer, never behind a Rust reference, as `read` does.
            acc ^= unsafe { base.add(off + 8 * k).cast::<u64>().read() };
        }
        acc
    }

    /// Copies `len` bytes from `from` to `to` inside the map (the ranges must not
    /// overlap).
    ///
    /// # Panics
    /// If a range is not inside the map or the two overlap.
    pub(crate) fn copy_within(&self, from: usize, to: usize, len: usize) {
        self.check(from, len, 1);
        self.check(to, len, 1);
        assert!(
            from + len <= to || to + len <= from,
            "overlapping copy in a shared map"
        );
        // SAFETY: both ranges are inside the map and disjoint (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(from),
                self.base.as_ptr().add(to),
                len,
            )
        }
    }

    /// A raw pointer to byte `off`, for `raw_sync`'s constructors.
    ///
    /// # Panics
    /// If `off` is past the end of the map.
    pub(crate) fn ptr(&self, off: usize) -> *mut u8 {
        self.check(off, 0, 1);
        // SAFETY: `off <= len` (checked), so the result is in or one past the map.
        unsafe { self.base.as_ptr().add(off) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length and not unmapped since; every
        // borrow of it ended with `&self`.
        let _ = unsafe { munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn words_and_copies_stay_in_bounds() {
        let m = SharedMap::new(4096).unwrap();
        m.u64_at(LINE).store(7, Ordering::Relaxed);
        assert_eq!(m.u64_at(LINE).load(Ordering::Relaxed), 7);
        m.write(8, b"abc");
        m.copy_within(8, 100, 3);
        let mut out = [0; 3];
        m.read(100, &mut out);
        assert_eq!(&out, b"abc");
        assert!(std::panic::catch_unwind(|| m.u64_at(4092).load(Ordering::Relaxed)).is_err());
        assert!(std::panic::catch_unwind(|| m.u32_at(2)).is_err());
    }
}
