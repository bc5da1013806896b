//! The one place the facade turns a segment's memory into a ring region.
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
