//! The one place the facade turns memory into a ring region: a segment's, or a
//! private heap copy for inspection ([`zeroed_region`]).
//!
//! # Safety
//! [`Segment::data`] is valid for [`Segment::data_len`] bytes for as long as the
//! segment lives, is aligned to 128 bytes, and is only ever accessed through the
//! ring's atomics and raw copies. A [`Region`] made here owns an `Arc` of the
//! segment, so the memory outlives every ring handle using it.
#![allow(unsafe_code)]

use std::sync::Arc;

use shmq_ring::Region;
use shmq_segment::Segment;

/// A region over `seg`'s user data, keeping `seg` alive.
pub(crate) fn region(seg: &Arc<Segment>) -> Region {
    let len = usize::try_from(seg.data_len()).expect("mapped lengths fit in usize");
    // SAFETY: see the module docs; the owner box holds the segment.
    unsafe { Region::from_raw_parts(seg.data(), len, Box::new(seg.clone())) }
}

/// Runs `init` over the user data of a segment still being created. The region
/// must not outlive the call: it does not keep the segment alive.
pub(crate) fn with_creating<R>(
    creating: &shmq_segment::Creating,
    init: impl FnOnce(&Region) -> R,
) -> R {
    let len = usize::try_from(creating.data_len()).expect("mapped lengths fit in usize");
    // SAFETY: the data is valid while `creating` is borrowed, which outlasts this
    // call; `init` only initialises the ring and its region is dropped on return.
    let region = unsafe { Region::from_raw_parts(creating.data(), len, Box::new(())) };
    init(&region)
}

/// A zero-filled region of `len` bytes on the heap, for reading a copy of a
/// segment's ring (`crate::inspect`).
///
/// Unlike [`Region::heap`] (page-aligned, so its allocation is zeroed by hand,
/// which touches every page), the memory comes from a byte vector, which the
/// allocator zeroes lazily for large sizes (fresh pages from the kernel): a copy
/// of a large, mostly empty ring costs only the pages written into it.
pub(crate) fn zeroed_region(len: usize) -> Region {
    let len = len.max(8);
    let mut bytes = vec![0u8; len + shmq_ring::LINE];
    let skip = bytes.as_mut_ptr().align_offset(shmq_ring::LINE);
    assert!(
        skip < shmq_ring::LINE,
        "a byte pointer can always be aligned"
    );
    let base = std::ptr::NonNull::new(bytes.as_mut_ptr().wrapping_add(skip))
        .expect("a vector's buffer is never null");
    // SAFETY: `base` is LINE-aligned and `skip + len <= bytes.len()`, so `len`
    // bytes from it lie in the vector's buffer, which the owner box keeps alive
    // and in place (moving a vector does not move its buffer) and which nothing
    // else reaches: after this call the vector is only dropped, never read or
    // written as plain data.
    unsafe { Region::from_raw_parts(base, len, Box::new(bytes)) }
}
