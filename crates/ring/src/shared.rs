//! The views of a ring's shared memory that every end of a slotted kind holds
//! (MPSC: a slot per producer; broadcast: a slot per subscriber).
//!
//! The layout both kinds share: a 512-byte control block, then one cache line
//! per slot, then the data area.

use crate::ctl::Line;
use crate::error::Result;
use crate::geometry::Geometry;
use crate::kind::Kind;
use crate::region::{ArrayItem, ControlBlock, Ctl, CtlArray, Data, LINE, Region};

/// Where the slots start: right after the control block.
pub(crate) const SLOTS_AT: usize = 512;

/// Bytes of the control block and slots of a ring with `n` slots (where its
/// data area starts).
pub(crate) const fn control_len(n: u16) -> usize {
    SLOTS_AT + n as usize * LINE
}

/// One ring's control block `C`, its slots of `S`, and its data area.
pub(crate) struct Shared<C: ControlBlock, S>
where
    Line<S>: ArrayItem,
{
    pub(crate) ctl: Ctl<C>,
    pub(crate) slots: CtlArray<Line<S>>,
    pub(crate) data: Data,
    /// Bytes of the data area (a power of two).
    pub(crate) cap: usize,
    /// `cap - 1`: a position's offset in the data area is `pos & mask`.
    pub(crate) mask: u64,
    /// Slots in the ring (the geometry's "producers").
    pub(crate) nslots: u16,
}

impl<C: ControlBlock, S> Shared<C, S>
where
    Line<S>: ArrayItem,
{
    /// The views of `region`, once it is known to be large enough for `geometry`.
    ///
    /// # Errors
    /// [`crate::Error::RegionTooSmall`].
    pub(crate) fn new<K: Kind>(region: &Region, geometry: Geometry<K>) -> Result<Self> {
        geometry.check(region)?;
        let (cap, n) = (geometry.capacity(), geometry.producers());
        Ok(Shared {
            ctl: Ctl::new(region),
            slots: CtlArray::new(region, SLOTS_AT, n.into()),
            data: region.data(geometry.control_len(), cap),
            cap,
            mask: cap as u64 - 1,
            nslots: n,
        })
    }

    /// Slot `s` (below `nslots`: callers index with slot numbers they checked).
    #[inline]
    pub(crate) fn slot(&self, s: u16) -> &S {
        &self.slots[usize::from(s)]
    }
}
