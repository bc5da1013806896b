//! A receiver's pollable descriptor: the doorbell (docs/PROTOCOL.md, section
//! 6, "Doorbell").
//!
//! The segment layer makes the FIFO, its timer and the epoll instance
//! (`shmq_segment::bell`); the ring arms it on a non-blocking receive that
//! finds nothing and has producers ring it (`shmq_ring::Doorbell`,
//! `shmq_ring::Ringer`). This module joins the two.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use shmq_segment::bell;

/// The consumer's side, as the ring uses it.
pub(crate) struct Bell(bell::Bell);

impl shmq_ring::Doorbell for Bell {
    fn id(&self) -> u64 {
        self.0.id()
    }
    fn clear(&self) {
        self.0.clear();
    }
}

/// A producer's side, as the ring uses it.
pub(crate) struct Ringer(bell::Ringer);

impl shmq_ring::Ringer for Ringer {
    fn ring(&self, id: u64) {
        self.0.ring(id);
    }
}

impl Ringer {
    /// For a producer of the channel in `seg`: rings doorbells owned by this
    /// user or by the channel's owner.
    pub(crate) fn for_channel(seg: &shmq_segment::Segment) -> Ringer {
        // A channel whose `fstat` fails: only this user's doorbells.
        let owner = seg.owner_and_mode().ok().map(|(uid, _)| uid);
        Ringer(bell::Ringer::new(owner))
    }
}

/// Makes the doorbell of a consumer of the channel in `seg`: a FIFO with the
/// channel's permission bits, and a timer that fires once every `slice`.
pub(crate) fn create(
    seg: &shmq_segment::Segment,
    slice: std::time::Duration,
) -> crate::Result<Arc<Bell>> {
    let (_, mode) = seg.owner_and_mode()?;
    Ok(Arc::new(Bell(bell::Bell::create(mode, Some(slice))?)))
}

/// A receiver's pollable descriptor ([`Receiver::doorbell`](crate::Receiver::doorbell)):
/// register it with epoll, mio, tokio's `AsyncFd`, glib or calloop, and wait
/// for it to be readable.
///
/// The contract is the usual one for non-blocking descriptors (a new
/// doorbell is readable, so a loop may wait first): receive with
/// the receiver's non-blocking calls (`try_recv`, `try_recv_into`,
/// `try_recv_batch`, `try_iter`) until one says [`Error::Empty`](crate::Error::Empty); after that the
/// descriptor becomes readable when a message arrives, when a sender
/// attaches or closes, and once every wait slice (so that the next
/// `try_recv` looks at senders that died without closing). Readable does
/// not promise a message: receive again, and wait again on `Empty`. The
/// receive that says `Empty` empties the descriptor (level-triggered loops
/// do not spin) and arms the senders' ring, so waking costs the sender one
/// `write` only when the receiver really waits; while messages keep coming
/// nothing is written.
///
/// The descriptor stays open, and the same, for as long as any handle lives
/// (each holds a share of it): what tokio's `AsyncFd::register` asks of its
/// caller. Blocking receives (`recv`, `recv_timeout`) keep working and wait on
/// the futex as before. Dropping every handle and the receiver removes the FIFO
/// in `/dev/shm` (`.shmq-bell-…`); one left by a process that died is
/// removed by `shmq gc`.
#[derive(Clone)]
pub struct Doorbell(pub(crate) Arc<Bell>);

impl core::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Doorbell")
            .field("fd", &self.as_raw_fd())
            .field("path", &self.0.0.path())
            .finish()
    }
}

impl Doorbell {
    /// The FIFO's path (`/dev/shm/.shmq-bell-` and 16 hex digits).
    pub fn path(&self) -> &std::path::Path {
        self.0.0.path()
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.0.as_fd()
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
