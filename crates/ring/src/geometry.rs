//! A ring's geometry: its capacity and producer slots, checked once when made,
//! so that everything that takes a [`Geometry`] can rely on it.

use core::marker::PhantomData;

use crate::error::{Error, Result};
use crate::kind::{Broadcast, Kind, Mpsc, Spsc};
use crate::mpsc::MAX_PRODUCERS;
use crate::region::Region;
use crate::spsc::check_capacity;

/// The shape of a ring of kind `K`: a capacity that is a power of two in range,
/// and (MPSC) a number of producer slots in range. Made only by
/// [`Geometry::spsc`] and [`Geometry::mpsc`], which check them.
pub struct Geometry<K> {
    cap: usize,
    producers: u16,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Geometry<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Geometry<K> {}

impl<K: Kind> core::fmt::Debug for Geometry<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Geometry")
            .field("kind", &K::NAME)
            .field("capacity", &self.cap)
            .field("producers", &self.producers)
            .finish()
    }
}

impl<K: Kind> PartialEq for Geometry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.cap, self.producers) == (other.cap, other.producers)
    }
}

impl<K: Kind> Eq for Geometry<K> {}

impl Geometry<Spsc> {
    /// An SPSC ring of `capacity` bytes.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`]: not a power of two from
    /// [`crate::spsc::MIN_CAPACITY`] to [`crate::spsc::MAX_CAPACITY`].
    pub fn spsc(capacity: u64) -> Result<Self> {
        Ok(Geometry {
            cap: check_capacity(capacity)?,
            producers: 1,
            _kind: PhantomData,
        })
    }
}

impl Geometry<Mpsc> {
    /// An MPSC ring of `capacity` bytes with `producers` slots.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`] as for SPSC; [`Error::InvalidProducerCount`] for 0
    /// or more than [`MAX_PRODUCERS`] slots.
    pub fn mpsc(capacity: u64, producers: u16) -> Result<Self> {
        let cap = check_capacity(capacity)?;
        if producers == 0 || producers > MAX_PRODUCERS {
            return Err(Error::InvalidProducerCount(producers));
        }
        Ok(Geometry {
            cap,
            producers,
            _kind: PhantomData,
        })
    }
}

impl Geometry<Broadcast> {
    /// A broadcast ring of `capacity` bytes with `subscribers` slots (its
    /// [`Geometry::producers`]).
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`] as for SPSC, or above
    /// [`crate::broadcast::MAX_CAPACITY`]; [`Error::InvalidSubscriberCount`]
    /// for 0 or more than [`crate::broadcast::MAX_SUBSCRIBERS`] slots.
    pub fn broadcast(capacity: u64, subscribers: u16) -> Result<Self> {
        if capacity > crate::broadcast::MAX_CAPACITY {
            return Err(Error::InvalidCapacity(capacity));
        }
        let cap = check_capacity(capacity)?;
        if subscribers == 0 || subscribers > crate::broadcast::MAX_SUBSCRIBERS {
            return Err(Error::InvalidSubscriberCount(subscribers));
        }
        Ok(Geometry {
            cap,
            producers: subscribers,
            _kind: PhantomData,
        })
    }
}

impl<K: Kind> Geometry<K> {
    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Producer slots (1 for SPSC).
    pub fn producers(&self) -> u16 {
        self.producers
    }

    /// Bytes of the control block before the data area.
    pub fn control_len(&self) -> usize {
        K::control_len(self.producers)
    }

    /// Bytes a region needs for this ring: control block and data area.
    pub fn region_len(&self) -> usize {
        self.control_len() + self.cap
    }

    /// `Err(RegionTooSmall)` unless `region` holds this ring.
    pub(crate) fn check(&self, region: &Region) -> Result<()> {
        let needed = self.region_len();
        if region.len() < needed {
            return Err(Error::RegionTooSmall {
                needed: needed as u64,
                len: region.len() as u64,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometries_are_checked_when_made() {
        assert_eq!(Geometry::spsc(1000), Err(Error::InvalidCapacity(1000)));
        assert_eq!(Geometry::spsc(32), Err(Error::InvalidCapacity(32)));
        assert_eq!(Geometry::mpsc(1024, 0), Err(Error::InvalidProducerCount(0)));
        assert_eq!(
            Geometry::mpsc(1024, MAX_PRODUCERS + 1),
            Err(Error::InvalidProducerCount(MAX_PRODUCERS + 1))
        );
        let g = Geometry::mpsc(1024, MAX_PRODUCERS).unwrap();
        assert_eq!((g.capacity(), g.producers()), (1024, MAX_PRODUCERS));
        assert_eq!(g.region_len(), crate::mpsc::region_len(1024, MAX_PRODUCERS));
        let s = Geometry::spsc(1024).unwrap();
        assert_eq!(s.region_len(), crate::spsc::region_len(1024));
    }

    #[test]
    fn a_region_too_small_for_the_geometry_is_refused() {
        let g = Geometry::spsc(4096).unwrap();
        let small = Region::heap(g.region_len() - 8);
        assert_eq!(
            crate::spsc::init(&small, g, 0),
            Err(Error::RegionTooSmall {
                needed: g.region_len() as u64,
                len: g.region_len() as u64 - 8,
            })
        );
        let fits = Region::heap(g.region_len());
        assert_eq!(crate::spsc::init(&fits, g, 0), Ok(()));
    }
}
