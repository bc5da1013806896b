//! Waiting for a ring's endpoints to change, from a handle that is not blocked
//! in a send or a receive (the facade's `wait_for_peer` and `peers_changed`).
//!
//! Every attach and close bumps both wake sequences and wakes their sleepers
//! (`WakeLine::wake_all`), so a watcher that read a sequence before it looked at
//! the endpoints and sleeps while the sequence still has that value cannot miss
//! a change made after its look. A death wakes nobody (the kernel frees the
//! liveness marker silently): the caller bounds each sleep by a wait slice and
//! looks again.

use std::time::Duration;

use crate::ctl::{BroadcastControl, MpscControl, SpscControl, WakeLine};
use crate::error::Result;
use crate::inspect::{check_broadcast_len, check_len, check_mpsc_len};
use crate::region::{Ctl, Region};
use crate::spsc;
use crate::sync::Ordering;

/// A watch on one ring's wake line.
pub struct PeerWatch {
    ctl: Block,
}

enum Block {
    Spsc(Ctl<SpscControl>),
    Mpsc(Ctl<MpscControl>),
    Broadcast(Ctl<BroadcastControl>),
}

impl PeerWatch {
    /// A watch on the SPSC ring in `region`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidCapacity`] or [`crate::Error::RegionTooSmall`].
    pub fn spsc(region: &Region, capacity: u64) -> Result<PeerWatch> {
        check_len(region, capacity, spsc::region_len)?;
        Ok(PeerWatch {
            ctl: Block::Spsc(Ctl::new(region)),
        })
    }

    /// A watch on the MPSC ring in `region` with `producers` slots.
    ///
    /// # Errors
    /// As [`PeerWatch::spsc`], plus [`crate::Error::TooManyProducers`].
    pub fn mpsc(region: &Region, capacity: u64, producers: u16) -> Result<PeerWatch> {
        check_mpsc_len(region, capacity, producers)?;
        Ok(PeerWatch {
            ctl: Block::Mpsc(Ctl::new(region)),
        })
    }

    /// A watch on the broadcast ring in `region` with `subscribers` slots.
    ///
    /// # Errors
    /// As [`PeerWatch::spsc`], plus [`crate::Error::InvalidSubscriberCount`].
    pub fn broadcast(region: &Region, capacity: u64, subscribers: u16) -> Result<PeerWatch> {
        check_broadcast_len(region, capacity, subscribers)?;
        Ok(PeerWatch {
            ctl: Block::Broadcast(Ctl::new(region)),
        })
    }

    fn wake(&self) -> &WakeLine {
        match &self.ctl {
            Block::Spsc(c) => &c.wake,
            Block::Mpsc(c) => &c.wake,
            Block::Broadcast(c) => &c.wake,
        }
    }

    /// The sequence to pass to [`PeerWatch::park`]: read it before looking at
    /// the endpoints.
    pub fn seq(&self) -> u32 {
        // Acquire: pairs with the Release increment in `WakeLine::wake_all`, so a
        // look after this load sees the state change that came with the bump.
        self.wake().data_seq.load(Ordering::Acquire)
    }

    /// Sleeps while the sequence is still `seen`, for at most `timeout`. Returns
    /// on an attach or close, a message notification, a time-out or a signal:
    /// the caller looks again in every case.
    pub fn park(&self, seen: u32, timeout: Duration) {
        self.wake().data_seq.wait(seen, Some(timeout));
    }
}
