//! The mapping: the only place in this crate that holds the raw pointer.
//!
//! # Safety
//!
//! A [`Mapping`] owns `len` bytes at `ptr`, mapped `MAP_SHARED` from an object
//! whose `fstat` size was at least `len` when it was mapped, and unmaps them
//! exactly once, on drop. Offsets become pointers only here, after a bounds
//! check. Another process may write any byte at any time, so nothing here hands
//! out `&`/`&mut` to plain bytes: the header and endpoint records are reached
//! only as structs of atomics, and the user region only as a raw pointer.
//!
//! A mapping made with `guard` is registered with the SIGBUS guard (`guard.rs`)
//! from just after `mmap` until just before `munmap`: if the object shrinks under
//! it, the guard replaces its pages with private memory of the same length
//! (pointers stay valid) and [`Mapping::is_damaged`] turns true.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::num::NonZeroUsize;
use core::ptr::NonNull;
use std::os::fd::AsFd;

use nix::sys::mman::{self, MapFlags, MmapAdvise, MsFlags, ProtFlags};

use crate::error::{Error, Result};
use crate::header::{
    DURABILITY_OFFSET, ENDPOINT_RECORD_LEN, ENDPOINT_TABLE_OFFSET, EndpointRecord, RawDurability,
    RawHeader, RawTypeName, TYPE_NAME_OFFSET,
};

/// A shared mapping of a whole segment object.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    locked: bool,
    /// The SIGBUS guard's registration; dropped before `munmap`.
    guard: Option<crate::guard::Guard>,
}

// SAFETY: the mapping is plain shared memory owned by this value; every access
// through it goes through atomics or raw pointers whose users synchronise
// themselves, so moving or sharing the owner between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` only exposes atomics and raw pointers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` read-write and shared.
    ///
    /// The caller has checked with `fstat` that the object is at least `len` bytes,
    /// so no access within `len` can fault with `SIGBUS` unless a peer truncates
    /// the object later (which seals prevent for memfd segments). With `guard`,
    /// the SIGBUS guard is installed (once per process) and the mapping
    /// registered with it, so that such a fault marks it damaged instead.
    pub(crate) fn new(
        fd: impl AsFd,
        len: u64,
        populate: bool,
        lock: bool,
        guard: bool,
    ) -> Result<Mapping> {
        Self::with_prot(fd, len, populate, lock, true, guard)
    }

    fn with_prot(
        fd: impl AsFd,
        len: u64,
        populate: bool,
        lock: bool,
        writable: bool,
        guard: bool,
    ) -> Result<Mapping> {
        let len = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or(Error::InvalidArgument {
                what: "mapping length",
            })?;
        let mut flags = MapFlags::MAP_SHARED;
        if populate {
            flags |= MapFlags::MAP_POPULATE;
        }
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: a fresh mapping at an address the kernel picks cannot alias any
        // Rust object; `len` is non-zero and within the object (see above).
        let ptr = unsafe { mman::mmap(None, len, prot, flags, fd, 0) }
            .map_err(|e| Error::os("mmap", e))?;
        let mut map = Mapping {
            ptr: ptr.cast(),
            len: len.get(),
            locked: false,
            guard: None,
        };
        if guard {
            // Before anything touches the pages (mlock and MAP_POPULATE fault them
            // in from the kernel, which never raises SIGBUS for them).
            crate::guard::install();
            map.guard = crate::guard::register(map.ptr.as_ptr(), map.len);
        }
        if lock {
            // SAFETY: the range is exactly the mapping we own.
            unsafe { mman::mlock(map.ptr.cast::<c_void>(), map.len) }
                .map_err(|e| Error::os("mlock", e))?;
            map.locked = true;
        }
        Ok(map)
    }

    /// The header at offset 0.
    pub(crate) fn header(&self) -> &RawHeader {
        assert!(
            self.len >= size_of::<RawHeader>(),
            "mapping smaller than a header"
        );
        // SAFETY: the mapping is page-aligned (so aligned for `RawHeader`), at least
        // `size_of::<RawHeader>()` long (asserted), lives as long as `&self`, and any
        // bit pattern is a valid value of a struct of integer atomics.
        unsafe { &*self.ptr.as_ptr().cast::<RawHeader>() }
    }

    /// The type name field, if the mapping holds it.
    pub(crate) fn type_name_field(&self) -> Option<&RawTypeName> {
        // SAFETY: the field is a struct of `AtomicU64`s (any bit pattern is valid)
        // at a multiple of 8, so aligned for them.
        unsafe { self.atomics_at(TYPE_NAME_OFFSET) }
    }

    /// The durability record, if the mapping holds it.
    pub(crate) fn durability_record(&self) -> Option<&RawDurability> {
        // SAFETY: the record is a struct of `AtomicU64`s (any bit pattern is
        // valid) at offset 64, so aligned for them.
        unsafe { self.atomics_at(DURABILITY_OFFSET) }
    }

    /// The endpoint record `index`, if the mapping holds it.
    pub(crate) fn endpoint_record(&self, index: u16) -> Option<&EndpointRecord> {
        let off = ENDPOINT_TABLE_OFFSET + u64::from(index) * ENDPOINT_RECORD_LEN;
        // SAFETY: the record is a struct of atomics (any bit pattern is valid),
        // `ENDPOINT_RECORD_LEN` long, at a multiple of 16, so aligned for it.
        unsafe { self.atomics_at(off) }
    }

    /// The `T` at byte `off` of the mapping, if the mapping holds all of it.
    ///
    /// # Safety
    /// Any bit pattern must be a valid `T` (a struct of integer atomics), and
    /// `off` a multiple of `T`'s alignment.
    unsafe fn atomics_at<T>(&self, off: u64) -> Option<&T> {
        let end = off.checked_add(size_of::<T>() as u64)?;
        if end > self.len as u64 {
            return None;
        }
        debug_assert_eq!(off % align_of::<T>() as u64, 0, "misaligned field");
        // SAFETY: `off + size_of::<T>() <= len` was checked above; `off` is aligned
        // for `T` from a page-aligned base and any bit pattern is a valid `T` (the
        // caller's contract); the mapping outlives `&self`.
        Some(unsafe { &*self.ptr.as_ptr().add(off as usize).cast::<T>() })
    }

    /// Pointer to `len` bytes at `offset`, if they lie within the mapping.
    pub(crate) fn range(&self, offset: u64, len: u64) -> Option<NonNull<u8>> {
        let end = offset.checked_add(len)?;
        if end > self.len as u64 {
            return None;
        }
        // SAFETY: `offset <= end <= self.len` was checked above, so the result
        // stays within (or one past the end of) the mapping.
        Some(unsafe { self.ptr.add(offset as usize) })
    }

    /// Writes dirty pages back to the file and waits (`msync(MS_SYNC)`).
    pub(crate) fn flush(&self) -> Result<()> {
        // SAFETY: the range is exactly the mapping we own.
        unsafe { mman::msync(self.ptr.cast(), self.len, MsFlags::MS_SYNC) }
            .map_err(|e| Error::os("msync", e))
    }

    /// Whether the SIGBUS guard replaced this mapping's pages (the object shrank
    /// under it and this process touched a page beyond its new end). One atomic
    /// load.
    #[inline]
    pub(crate) fn is_damaged(&self) -> bool {
        self.guard
            .as_ref()
            .is_some_and(crate::guard::Guard::is_damaged)
    }

    /// Passes an `madvise` hint for the whole mapping; hints may be ignored.
    pub(crate) fn advise(&self, advice: MmapAdvise) -> Result<()> {
        // SAFETY: the range is exactly the mapping we own, and the advice values we
        // pass (HUGEPAGE, WILLNEED, DONTFORK) do not change its contents.
        unsafe { mman::madvise(self.ptr.cast(), self.len, advice) }
            .map_err(|e| Error::os("madvise", e))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Unregister before munmap: once the range is unmapped, a fault there
        // concerns whatever is mapped next, never this segment.
        drop(self.guard.take());
        if self.locked {
            // SAFETY: the range is exactly the mapping we own. An error only means
            // the pages were not locked, which munmap makes moot.
            let _ = unsafe { mman::munlock(self.ptr.cast(), self.len) };
        }
        // SAFETY: we own this mapping and nobody can use it after drop: every
        // pointer handed out is tied to `&self` or documented to be valid only while
        // the owner lives. munmap can only fail for bad arguments, which we never pass.
        let _ = unsafe { mman::munmap(self.ptr.cast(), self.len) };
    }
}
