//! Regions: the memory a ring lives in, and the only place offsets become pointers.
//!
//! # Safety
//!
//! A [`Region`] is `len` bytes that stay valid while any clone of it lives: either
//! a heap allocation it owns, or memory whose owner (a segment mapping) it keeps
//! alive. A ring lays a control block (a `#[repr(C)]` struct of atomics) at its
//! start and a data area after it. Another process may write any of those bytes
//! at any time, so:
//! - control words are only reached as atomics;
//! - frame headers are only reached as `AtomicU64`s, at 8-aligned offsets that
//!   [`Data`] bounds-checks;
//! - payload bytes are copied with raw copies, or lent to the user as slices only
//!   while the ring protocol keeps the peer from writing them (a peer that breaks
//!   the protocol can change lent bytes, never make us read or write out of bounds).
//!
//! Under `--cfg loom` the data area is an array of loom `AtomicU64`s and payload
//! copies go word by word through them, so loom sees every access.
#![allow(unsafe_code)]

#[cfg(not(loom))]
use core::ptr::NonNull;
use std::sync::Arc;

use crate::sync::AtomicU64;

/// Fewest bytes a consumer's release frees for it to hand their lines back
/// first ([`Data::hand_back`]). Smaller releases are what a request/response
/// exchange makes, and x86 makes stores visible in order, so the lines'
/// transfer would hold back the consumer's next stores (its reply) for no
/// gain; the models hand back at every release that frees a line.
pub(crate) const HAND_BACK_MIN: u64 = if crate::sync::MODEL { 8 } else { 256 };

#[cfg(test)]
thread_local! {
    /// Lines [`Data::hand_back`] stored back on this thread (for tests of who
    /// hands lines back).
    pub(crate) static HANDED_BACK: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Bytes a ring's data area is aligned to, and the size of one control "line"
/// (two 64-byte cache lines: the adjacent-line prefetcher moves pairs).
pub const LINE: usize = 128;

/// A control block that can live at the start of a region.
/// Under loom a block cannot be zero bytes in place: it is made by
/// [`crate::sync::Fresh`].
pub(crate) trait ControlBlock: crate::sync::Fresh + Send + Sync + 'static {
    /// Bytes the block takes in shared memory (a multiple of [`LINE`]).
    const LEN: usize;
}

/// Memory for one ring: a heap buffer for tests and models, or a mapping for real
/// use. Cloning shares the memory.
#[derive(Clone)]
pub struct Region {
    inner: Arc<Inner>,
}

#[cfg(not(loom))]
struct Inner {
    base: NonNull<u8>,
    len: usize,
    _owner: Option<Box<dyn Send + Sync>>,
    heap: Option<std::alloc::Layout>,
}

#[cfg(loom)]
struct Inner {
    len: usize,
    ctl: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    array: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    words: Box<[AtomicU64]>,
}

// SAFETY: `Inner` only holds a pointer to memory that is valid while it lives and
// that is only accessed through atomics or raw copies (see the module docs).
#[cfg(not(loom))]
unsafe impl Send for Inner {}
// SAFETY: as for `Send`.
#[cfg(not(loom))]
unsafe impl Sync for Inner {}

#[cfg(not(loom))]
impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(layout) = self.heap {
            // SAFETY: allocated in `Region::heap` with exactly this layout.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) }
        }
    }
}

impl core::fmt::Debug for Region {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Region {
    /// A zero-filled, page-aligned heap region of `len` bytes, for tests, models
    /// and rings shared only between threads.
    ///
    /// # Panics
    /// If `len` is 0 or the allocation fails.
    pub fn heap(len: usize) -> Region {
        assert!(len > 0, "a region needs at least one byte");
        #[cfg(not(loom))]
        {
            let layout = std::alloc::Layout::from_size_align(len, 4096).expect("region layout");
            // SAFETY: `layout` has non-zero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            let base = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
            Region {
                inner: Arc::new(Inner {
                    base,
                    len,
                    _owner: None,
                    heap: Some(layout),
                }),
            }
        }
        #[cfg(loom)]
        {
            let words = (0..len / 8).map(|_| AtomicU64::new(0)).collect();
            Region {
                inner: Arc::new(Inner {
                    len,
                    ctl: std::sync::OnceLock::new(),
                    array: std::sync::OnceLock::new(),
                    words,
                }),
            }
        }
    }

    /// A region over memory owned by someone else, such as a shared mapping.
    ///
    /// # Safety
    /// `base` must be aligned to [`LINE`] bytes and valid for reads and writes of
    /// `len` bytes for as long as `owner` lives, and must never be accessed as
    /// Rust references to plain (non-atomic) data by anyone in this process.
    #[cfg(not(loom))]
    pub unsafe fn from_raw_parts(
        base: NonNull<u8>,
        len: usize,
        owner: Box<dyn Send + Sync>,
    ) -> Region {
        assert_eq!(
            base.as_ptr() as usize % LINE,
            0,
            "region base must be LINE-aligned"
        );
        Region {
            inner: Arc::new(Inner {
                base,
                len,
                _owner: Some(owner),
                heap: None,
            }),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether the region is empty (never true for a region built by this crate).
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Atomically loads the 8-byte word at `off` (`Acquire`), or `None` if `off` is
    /// not 8-aligned or the word is not inside the region. For tools that inspect a
    /// ring and for tests that play a peer; rings themselves use typed access.
    #[cfg(not(loom))]
    pub fn load_word(&self, off: usize) -> Option<u64> {
        self.word_at(off)
            .map(|w| w.load(crate::sync::Ordering::Acquire))
    }

    /// Atomically stores `value` into the 8-byte word at `off` (`Release`); returns
    /// whether `off` was valid (8-aligned, inside the region). For tests that play a
    /// peer, hostile ones included: any value is memory-safe for the ring to read.
    #[cfg(not(loom))]
    pub fn store_word(&self, off: usize, value: u64) -> bool {
        self.word_at(off)
            .map(|w| w.store(value, crate::sync::Ordering::Release))
            .is_some()
    }

    #[cfg(not(loom))]
    fn word_at(&self, off: usize) -> Option<&AtomicU64> {
        if !off.is_multiple_of(8) || off.checked_add(8).is_none_or(|end| end > self.len()) {
            return None;
        }
        // SAFETY: `off` is 8-aligned and `off + 8 <= len` (checked above); the base is
        // LINE-aligned; every bit pattern is a valid `AtomicU64`; the region lives as
        // long as `&self`.
        Some(unsafe { &*self.inner.base.as_ptr().add(off).cast::<AtomicU64>() })
    }

    /// The control block of type `C` at the start of the region.
    ///
    /// # Panics
    /// If the region is shorter than `C::LEN` (callers check first).
    pub(crate) fn control<C: ControlBlock>(&self) -> &C {
        assert!(
            self.len() >= C::LEN,
            "region shorter than its control block"
        );
        #[cfg(not(loom))]
        {
            const { assert!(core::mem::align_of::<C>() <= LINE) };
            const { assert!(core::mem::size_of::<C>() <= C::LEN) };
            // SAFETY: the base is LINE-aligned (checked at construction), the region
            // is at least `C::LEN >= size_of::<C>()` bytes (asserted), it lives as
            // long as `&self`, and `C` is a `#[repr(C)]` struct of integer atomics,
            // for which every bit pattern (including another process's writes) is valid.
            unsafe { &*self.inner.base.as_ptr().cast::<C>() }
        }
        #[cfg(loom)]
        {
            self.inner
                .ctl
                .get_or_init(|| Box::new(C::fresh()))
                .downcast_ref::<C>()
                .expect("one control block type per region")
        }
    }

    /// The data area: `cap` bytes after a control block of `ctl_len` bytes.
    ///
    /// # Panics
    /// If the region is too small or `cap` is not a multiple of 8 (callers check).
    pub(crate) fn data(&self, ctl_len: usize, cap: usize) -> Data {
        assert!(
            cap.is_multiple_of(8) && ctl_len.is_multiple_of(LINE),
            "data area must be word-aligned"
        );
        assert!(
            ctl_len
                .checked_add(cap)
                .is_some_and(|end| end <= self.len()),
            "region too small"
        );
        #[cfg(not(loom))]
        {
            // SAFETY: `ctl_len + cap <= len` was asserted, so the pointer stays in bounds.
            let bytes = unsafe { self.inner.base.add(ctl_len) };
            Data {
                bytes,
                cap,
                _region: self.clone(),
            }
        }
        #[cfg(loom)]
        {
            let _ = ctl_len;
            Data {
                cap,
                region: self.clone(),
            }
        }
    }
}

/// A word of shared memory that a thread other than the end's owner reaches
/// (the async waiter thread, `crate::park`): a futex sequence or a waiting
/// flag. Every bit pattern of it is valid (it is an atomic), and nothing in
/// this process reaches it as plain data.
#[cfg(not(loom))]
pub(crate) trait SharedWord: Sync + 'static {}
#[cfg(not(loom))]
impl SharedWord for crate::sync::FutexWord {}
#[cfg(not(loom))]
impl SharedWord for crate::sync::AtomicU32 {}

/// A reference to a word of a region that keeps the region (so the mapping)
/// alive: it may outlive the ring end that lent it, so that the async waiter
/// thread never reads unmapped memory.
#[cfg(not(loom))]
pub(crate) struct Pinned<T: SharedWord> {
    ptr: NonNull<T>,
    _region: Region,
}

// SAFETY: `T` is an atomic (`SharedWord`), shared across threads by design, and
// the region it lies in is kept alive by the `Region` clone.
#[cfg(not(loom))]
unsafe impl<T: SharedWord> Send for Pinned<T> {}
// SAFETY: as for `Send`.
#[cfg(not(loom))]
unsafe impl<T: SharedWord> Sync for Pinned<T> {}

#[cfg(not(loom))]
impl<T: SharedWord> Clone for Pinned<T> {
    fn clone(&self) -> Self {
        Pinned {
            ptr: self.ptr,
            _region: self._region.clone(),
        }
    }
}

#[cfg(not(loom))]
impl<T: SharedWord> core::ops::Deref for Pinned<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `ptr` was made from a reference that `Region::pin` checked lies
        // wholly inside the region, which `_region` keeps alive; `T` is an atomic,
        // valid for every bit pattern another process may write.
        unsafe { self.ptr.as_ref() }
    }
}

#[cfg(not(loom))]
impl Region {
    /// `word`, pinned with this region, if it lies wholly inside the region
    /// (`None` otherwise: a word of another region, or of the heap).
    pub(crate) fn pin<T: SharedWord>(&self, word: &T) -> Option<Pinned<T>> {
        let base = self.inner.base.as_ptr() as usize;
        let at = core::ptr::from_ref(word) as usize;
        let inside = at >= base
            && (at - base)
                .checked_add(size_of::<T>())
                .is_some_and(|end| end <= self.len());
        inside.then(|| Pinned {
            ptr: NonNull::from(word),
            _region: self.clone(),
        })
    }
}

/// An element of an array of control records after the fixed control block.
/// Under loom an element is made by [`crate::sync::Fresh`]; in shared memory
/// zero bytes are a fresh element.
pub(crate) trait ArrayItem: crate::sync::Fresh + Send + Sync + Sized + 'static {
    /// Bytes one element takes in shared memory.
    const LEN: usize;
}

/// A typed handle on `n` records of `T` at a fixed offset of a region.
pub(crate) struct CtlArray<T: ArrayItem> {
    #[cfg(not(loom))]
    ptr: NonNull<T>,
    n: usize,
    #[cfg_attr(not(loom), allow(dead_code))]
    region: Region,
    _t: core::marker::PhantomData<T>,
}

// SAFETY: as for `Ctl`: the region is kept alive, `T` is a struct of atomics.
#[cfg(not(loom))]
unsafe impl<T: ArrayItem> Send for CtlArray<T> {}
// SAFETY: as for `Send`.
#[cfg(not(loom))]
unsafe impl<T: ArrayItem> Sync for CtlArray<T> {}

impl<T: ArrayItem> CtlArray<T> {
    /// `n` records starting `offset` bytes into `region`.
    ///
    /// # Panics
    /// If the records do not lie within the region (callers check the region's
    /// length first) or `offset` is not LINE-aligned.
    pub(crate) fn new(region: &Region, offset: usize, n: usize) -> Self {
        assert!(
            offset.is_multiple_of(LINE),
            "record arrays are LINE-aligned"
        );
        let end = n.checked_mul(T::LEN).and_then(|b| b.checked_add(offset));
        assert!(
            end.is_some_and(|e| e <= region.len()),
            "record array outside the region"
        );
        #[cfg(not(loom))]
        {
            const { assert!(core::mem::size_of::<T>() == T::LEN) };
            const { assert!(core::mem::align_of::<T>() <= LINE) };
            // SAFETY: `offset + n * LEN <= len` (asserted), so the pointer is in bounds.
            let ptr = unsafe { region.inner.base.add(offset) }.cast::<T>();
            CtlArray {
                ptr,
                n,
                region: region.clone(),
                _t: core::marker::PhantomData,
            }
        }
        #[cfg(loom)]
        {
            let _ = region
                .inner
                .array
                .get_or_init(|| Box::new((0..n).map(|_| T::fresh()).collect::<Vec<T>>()));
            CtlArray {
                n,
                region: region.clone(),
                _t: core::marker::PhantomData,
            }
        }
    }
}

impl<T: ArrayItem> core::ops::Deref for CtlArray<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        #[cfg(not(loom))]
        {
            // SAFETY: `n` records of `T` lie within the region (checked in `new`),
            // LINE-aligned from a LINE-aligned base, which we keep alive; `T` is a
            // `#[repr(C)]` struct of integer atomics, valid for every bit pattern.
            unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.n) }
        }
        #[cfg(loom)]
        {
            let v = self.region.inner.array.get().expect("made in new");
            &v.downcast_ref::<Vec<T>>()
                .expect("one array type per region")[..self.n]
        }
    }
}

/// A typed handle on a region's control block, checked once when made.
pub(crate) struct Ctl<C: ControlBlock> {
    #[cfg(not(loom))]
    ptr: NonNull<C>,
    /// Keeps the memory alive (and, under loom, is how the block is reached).
    #[cfg_attr(not(loom), allow(dead_code))]
    region: Region,
    _c: core::marker::PhantomData<C>,
}

// SAFETY: `Ctl` keeps its region alive and `C` is a struct of atomics, which are
// themselves `Send + Sync`.
#[cfg(not(loom))]
unsafe impl<C: ControlBlock> Send for Ctl<C> {}
// SAFETY: as for `Send`.
#[cfg(not(loom))]
unsafe impl<C: ControlBlock> Sync for Ctl<C> {}

impl<C: ControlBlock> Ctl<C> {
    /// The control block of `region` (whose length the caller has checked).
    pub(crate) fn new(region: &Region) -> Self {
        let c: &C = region.control();
        #[cfg(loom)]
        let _ = c;
        Ctl {
            #[cfg(not(loom))]
            ptr: NonNull::from(c),
            region: region.clone(),
            _c: core::marker::PhantomData,
        }
    }
}

impl<C: ControlBlock> core::ops::Deref for Ctl<C> {
    type Target = C;
    #[inline]
    fn deref(&self) -> &C {
        #[cfg(not(loom))]
        {
            // SAFETY: made from a reference into `self.region`, which we keep alive;
            // see `Region::control` for why such a reference is valid.
            unsafe { self.ptr.as_ref() }
        }
        #[cfg(loom)]
        {
            self.region.control()
        }
    }
}

/// A ring's data area: `cap` bytes, 8-aligned, accessed by byte offset.
pub struct Data {
    #[cfg(not(loom))]
    bytes: NonNull<u8>,
    cap: usize,
    #[cfg(not(loom))]
    _region: Region,
    #[cfg(loom)]
    region: Region,
}

// SAFETY: `Data` keeps its region alive and only reaches the memory through
// atomics and raw copies (module docs).
#[cfg(not(loom))]
unsafe impl Send for Data {}
// SAFETY: as for `Send`.
#[cfg(not(loom))]
unsafe impl Sync for Data {}

impl Data {
    /// The region this area lies in (kept alive by it).
    #[cfg(not(loom))]
    pub(crate) fn region(&self) -> &Region {
        &self._region
    }

    /// The 8-byte word at `off` (a frame header).
    ///
    /// # Panics
    /// If `off` is not 8-aligned or not below the capacity: offsets are masked
    /// positions or validated lengths, so this is a bug in this crate, never the
    /// result of a peer's value.
    #[inline]
    pub(crate) fn word(&self, off: usize) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off < self.cap,
            "word offset out of range"
        );
        #[cfg(not(loom))]
        {
            // SAFETY: `off + 8 <= cap` (asserted, with 8-alignment), the area lies within
            // the region (checked in `Region::data`), the base is 8-aligned, and
            // `AtomicU64` has the size and alignment of `u64` with every bit pattern valid.
            unsafe { &*self.bytes.as_ptr().add(off).cast::<AtomicU64>() }
        }
        #[cfg(loom)]
        {
            &self.region.inner.words[off / 8]
        }
    }

    /// Before a consumer publishes that it is done with the bytes between the
    /// positions `from` and `to` (monotonic byte positions, as the rings keep
    /// them; the area's capacity is a power of two), takes every cache line
    /// that stretch covers wholly into this CPU's cache for writing: it stores
    /// back the word each holds at one place in the line that is the
    /// consumer's (from `from` on; the part of the first line before `from`
    /// may be the producer's again). The bytes do not change.
    ///
    /// Why: a line the consumer only read stays shared between the two
    /// caches, and the producer's next write to it must first take the
    /// consumer's copy away; on the machine this was measured on (AMD EPYC,
    /// KVM) that made a stream of 4 KiB messages about 4 times slower than
    /// when the consumer had written the line last, as the MPSC consumer,
    /// which zeroes what it frees, always did (docs/PROTOCOL.md, section 4,
    /// "Handing lines back"). Callers skip releases under [`HAND_BACK_MIN`].
    ///
    /// The caller must own every byte from `from` to `to` until a later
    /// `Release` store publishes them (the producer writes them only after an
    /// `Acquire` load of that store).
    #[inline]
    pub(crate) fn hand_back(&self, from: u64, to: u64) {
        const CACHE_LINE: u64 = 64;
        let mask = self.cap as u64 - 1;
        // At most a ring: more (a batch through frames a hostile producer kept
        // rewriting) would only store over bytes again.
        let freed = to.wrapping_sub(from).min(self.cap as u64);
        // The end of the line `from` is in, then of each line after it.
        let mut end = (from | (CACHE_LINE - 1)).wrapping_add(1);
        while end.wrapping_sub(from) <= freed {
            let start = end.wrapping_sub(CACHE_LINE);
            let at = if from.wrapping_sub(start) < CACHE_LINE {
                from
            } else {
                start
            };
            // Relaxed, both (in `store_back`): the word is the caller's until
            // its Release store, and we store back what it holds.
            crate::sync::store_back(self.word((at & mask) as usize));
            #[cfg(test)]
            HANDED_BACK.with(|n| n.set(n.get() + 1));
            end = end.wrapping_add(CACHE_LINE);
        }
    }

    /// Copies a message's payload into the data area at `off` (just after its
    /// frame header) as [`Data::write`] does, but the bytes that share a cache
    /// line with the header last. A consumer waiting for this frame polls the
    /// header's line; copying front to back, the producer would take that line
    /// for the first bytes, lose it to the next poll while it copies the rest,
    /// and take it again for the header. With the line written last, its bytes
    /// and the header follow each other (docs/PROTOCOL.md, section 3, "The
    /// header's line is copied last": 64-byte messages one by one went from
    /// 16-17 to 18.5-20 M msgs/s). Only for the frame a consumer may be polling:
    /// a batch's later frames are copied front to back.
    ///
    /// # Panics
    /// If the range leaves the data area (a bug in this crate).
    #[inline]
    pub(crate) fn write_payload(&self, off: usize, src: &[u8]) {
        const CACHE_LINE: usize = 64;
        // Bytes from `off` to the end of its line (0 when `off` starts one: the
        // header is then in the line before).
        let room = off.wrapping_neg() % CACHE_LINE;
        if room == 0 || src.len() <= room {
            // All of it in the header's line, or none of it: one copy, as
            // `write` makes it.
            self.write(off, src);
        } else {
            self.write(off + room, &src[room..]);
            self.write(off, &src[..room]);
        }
    }

    /// Copies `src` into the data area at `off`.
    ///
    /// # Panics
    /// If the range leaves the data area (a bug in this crate).
    #[inline]
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        assert!(
            off.checked_add(src.len())
                .is_some_and(|end| end <= self.cap),
            "write out of range"
        );
        #[cfg(not(loom))]
        {
            // SAFETY: the range is within the data area (asserted above), `src` is private
            // memory so cannot overlap shared memory, and the protocol reserved these
            // bytes for us: the consumer reads them only after our Release publication.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.bytes.as_ptr().add(off),
                    src.len(),
                )
            }
        }
        #[cfg(loom)]
        {
            for (i, chunk) in src.chunks(8).enumerate() {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                let idx = (off / 8) + i;
                assert!(off.is_multiple_of(8), "loom payloads are word-aligned");
                self.region.inner.words[idx]
                    .store(u64::from_le_bytes(w), crate::sync::Ordering::Relaxed);
            }
        }
    }

    /// Copies `dst.len()` bytes at `off` out of the data area.
    ///
    /// # Panics
    /// If the range leaves the data area (a bug in this crate).
    #[inline]
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
        assert!(
            off.checked_add(dst.len())
                .is_some_and(|end| end <= self.cap),
            "read out of range"
        );
        #[cfg(not(loom))]
        {
            // SAFETY: the range is within the data area (asserted above) and `dst` is
            // private memory. A peer writing these bytes concurrently breaks the
            // protocol; the copy then yields arbitrary bytes, never an out-of-bounds access.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.bytes.as_ptr().add(off),
                    dst.as_mut_ptr(),
                    dst.len(),
                )
            }
        }
        #[cfg(loom)]
        {
            for (i, chunk) in dst.chunks_mut(8).enumerate() {
                let w = self.region.inner.words[off / 8 + i].load(crate::sync::Ordering::Relaxed);
                chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
            }
        }
    }

    /// Zeroes `len` bytes at `off` (both 8-aligned), word by word with `Relaxed`
    /// atomic stores: the MPSC consumer does this to consumed frames, and a
    /// producer scanning for frame headers may read these words concurrently.
    ///
    /// # Panics
    /// If the range leaves the data area (a bug in this crate).
    #[inline]
    pub(crate) fn zero(&self, off: usize, len: usize) {
        assert!(len.is_multiple_of(8), "zeroing is word-aligned");
        // `words` checks `off` and the range.
        for w in self.words(off, len / 8) {
            w.store(0, crate::sync::Ordering::Relaxed);
        }
    }

    /// The `n` words from `off`, checked once (for loops over a stretch, where
    /// [`Data::word`]'s check per word cost more than the store).
    ///
    /// # Panics
    /// If `off` is not 8-aligned or the words leave the data area (a bug in this
    /// crate).
    #[inline]
    fn words(&self, off: usize, n: usize) -> &[AtomicU64] {
        assert!(
            off.is_multiple_of(8)
                && n.checked_mul(8)
                    .and_then(|len| off.checked_add(len))
                    .is_some_and(|end| end <= self.cap),
            "words out of range"
        );
        #[cfg(not(loom))]
        {
            // SAFETY: as in `word`, for each of the `n` words: `off + 8 * n <= cap`
            // (asserted, with 8-alignment) and the area lies within the region.
            unsafe {
                core::slice::from_raw_parts(self.bytes.as_ptr().add(off).cast::<AtomicU64>(), n)
            }
        }
        #[cfg(loom)]
        {
            &self.region.inner.words[off / 8..off / 8 + n]
        }
    }

    /// Raw pointer to `len` bytes at `off`, for lending a frame's payload.
    ///
    /// # Panics
    /// If the range leaves the data area (a bug in this crate).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn ptr(&self, off: usize, len: usize) -> *mut u8 {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.cap),
            "lend out of range"
        );
        // SAFETY: `off <= cap`, so the pointer is within (or one past) the data area.
        unsafe { self.bytes.as_ptr().add(off) }
    }

    /// Lends `len` bytes at `off` as a shared slice.
    ///
    /// # Safety
    /// The caller guarantees by the ring protocol that no one in this process writes
    /// these bytes while the slice lives (a peer process that breaks the protocol
    /// can still change them; see the module docs).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &[u8] {
        let p = self.ptr(off, len);
        // SAFETY: in bounds (checked by `ptr`); exclusivity delegated to the caller.
        unsafe { core::slice::from_raw_parts(p, len) }
    }

    /// Lends `len` bytes at `off` as a mutable slice.
    ///
    /// # Safety
    /// The caller guarantees by the ring protocol that nobody reads or writes these
    /// bytes while the slice lives (they are reserved and not yet published).
    #[cfg(not(loom))]
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, off: usize, len: usize) -> &mut [u8] {
        let p = self.ptr(off, len);
        // SAFETY: in bounds (checked by `ptr`); exclusivity delegated to the caller.
        unsafe { core::slice::from_raw_parts_mut(p, len) }
    }
}

/// A payload lent to a guard. In normal builds it is empty: the guard lends the
/// ring's bytes in place. Under loom it is a private copy (loom must see every
/// access to shared memory as an atomic word), written back by [`Lent::flush`]
/// before a reserved frame is published. This is the only place guards meet loom.
pub(crate) struct Lent {
    #[cfg(loom)]
    buf: Vec<u8>,
}

impl Lent {
    /// For a frame being read: nothing, or (loom) a copy of its `len` bytes at `off`.
    #[inline]
    pub(crate) fn reading(data: &Data, off: usize, len: usize) -> Lent {
        #[cfg(not(loom))]
        {
            let _ = (data, off, len);
            Lent {}
        }
        #[cfg(loom)]
        {
            let mut buf = vec![0; len];
            data.read(off, &mut buf);
            Lent { buf }
        }
    }

    /// For a frame being written: nothing, or (loom) a zeroed buffer of `len` bytes.
    #[inline]
    pub(crate) fn writing(len: usize) -> Lent {
        #[cfg(not(loom))]
        {
            let _ = len;
            Lent {}
        }
        #[cfg(loom)]
        {
            Lent { buf: vec![0; len] }
        }
    }

    /// The lent bytes: `len` bytes at `off` of `data`.
    ///
    /// # Safety
    /// As [`Data::slice`]: the ring protocol keeps everyone in this process from
    /// writing these bytes while the slice lives.
    #[inline]
    pub(crate) unsafe fn bytes<'a>(&'a self, data: &'a Data, off: usize, len: usize) -> &'a [u8] {
        #[cfg(not(loom))]
        {
            // SAFETY: delegated to the caller.
            unsafe { data.slice(off, len) }
        }
        #[cfg(loom)]
        {
            let _ = (data, off);
            &self.buf[..len]
        }
    }

    /// The lent bytes, writable: `len` bytes at `off` of `data`.
    ///
    /// # Safety
    /// As [`Data::slice_mut`]: the bytes are reserved and not yet published, and
    /// `&mut self` is the only way to them in this process.
    #[inline]
    pub(crate) unsafe fn bytes_mut<'a>(
        &'a mut self,
        data: &'a Data,
        off: usize,
        len: usize,
    ) -> &'a mut [u8] {
        #[cfg(not(loom))]
        {
            // SAFETY: delegated to the caller.
            unsafe { data.slice_mut(off, len) }
        }
        #[cfg(loom)]
        {
            let _ = (data, off);
            &mut self.buf[..len]
        }
    }

    /// Before publishing a written frame: (loom) copies the first `len` bytes
    /// back to `off`; nothing otherwise (they were written in place).
    #[inline]
    pub(crate) fn flush(&self, data: &Data, off: usize, len: usize) {
        #[cfg(not(loom))]
        let _ = (data, off, len);
        #[cfg(loom)]
        data.write(off, &self.buf[..len]);
    }
}

impl Data {
    /// Calls `f` with the `len` bytes at `off` (in place; under loom, a copy).
    ///
    /// # Safety
    /// As [`Data::slice`].
    #[inline]
    pub(crate) unsafe fn lend<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let lent = Lent::reading(self, off, len);
        // SAFETY: delegated to the caller.
        f(unsafe { lent.bytes(self, off, len) })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// `write_payload` changes the order of the copy, never what lands where:
    /// at every 8-aligned offset of a line and every length up to three lines,
    /// the area holds what `write` leaves, and nothing outside the payload moves.
    #[test]
    fn write_payload_leaves_what_write_leaves() {
        let cap = 512;
        let (a, b) = (Region::heap(cap), Region::heap(cap));
        let (da, db) = (a.data(0, cap), b.data(0, cap));
        let mut seen = vec![0u8; cap];
        let mut want = vec![0u8; cap];
        for off in (64..128).step_by(8) {
            for len in 0..=192 {
                let src: Vec<u8> = (0..len).map(|i| (i * 7 + off + len) as u8).collect();
                for d in [&da, &db] {
                    d.write(0, &vec![0xAA; cap]);
                }
                da.write(off, &src);
                db.write_payload(off, &src);
                da.read(0, &mut want);
                db.read(0, &mut seen);
                assert_eq!(seen, want, "offset {off}, {len} bytes");
            }
        }
    }
}
