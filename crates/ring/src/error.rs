//! The one error type of `shmq-ring`.

/// Why the other side is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disconnect {
    /// It closed its endpoint (dropped it, or its process exited normally).
    Closed,
    /// It died without closing (killed, crashed): its liveness marker was released
    /// while it was still attached.
    Died,
}

/// Where and what a check of shared memory found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Corruption {
    /// Which value failed its check.
    pub what: &'static str,
    /// The ring position being read or written when it was found.
    pub position: u64,
    /// The offending value as read.
    pub value: u64,
}

impl core::fmt::Display for Corruption {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} = {:#x} at position {}",
            self.what, self.value, self.position
        )
    }
}

/// Everything that can fail in `shmq-ring`.
///
/// Exhaustive on purpose: the `shmq` facade maps every variant to one of its
/// own, and a new variant here must be a compile error there, not a silent
/// "corrupted".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No room for the message now (`try_` forms only).
    #[error("the ring is full")]
    Full,
    /// No message now (`try_` forms only).
    #[error("the ring is empty")]
    Empty,
    /// A `_timeout` form waited its whole time-out.
    #[error("timed out")]
    Timeout,
    /// A blocking call was interrupted ([`crate::Interrupter`]).
    #[error("interrupted")]
    Interrupted,
    /// The other side is gone and, for a receiver, everything it committed has been
    /// received.
    #[error("the other side is gone ({0:?})")]
    Disconnected(Disconnect),
    /// The message can never fit in this ring.
    #[error("message of {len} bytes exceeds the ring's maximum of {max}")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The largest message this ring takes.
        max: usize,
    },
    /// A value read from shared memory failed its check: the peer is buggy or
    /// hostile, or the memory was damaged. The endpoint refuses further use.
    #[error("ring corrupted: {0}")]
    Corrupted(Corruption),
    /// The capacity is not a power of two within the supported range.
    #[error("invalid capacity {0}: must be a power of two from 64 bytes to 4 GiB")]
    InvalidCapacity(u64),
    /// The region is too small for the control block and the requested capacity.
    #[error("region of {len} bytes is too small; {needed} needed")]
    RegionTooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes given.
        len: u64,
    },
    /// Every producer slot of an MPSC ring is taken.
    #[error("all {0} producer slots are in use")]
    TooManyProducers(u16),
    /// Every subscriber slot of a broadcast ring is taken.
    #[error("all {0} subscriber slots are in use")]
    TooManySubscribers(u16),
    /// A geometry asked for no subscriber slot, or more than
    /// [`crate::broadcast::MAX_SUBSCRIBERS`].
    #[error("a broadcast ring has 1 to {max} subscriber slots, not {0}", max = crate::broadcast::MAX_SUBSCRIBERS)]
    InvalidSubscriberCount(u16),
    /// A lossy broadcast subscriber was lapped: this many messages were
    /// overwritten before it read them. Not final: the next receive returns
    /// the oldest message still in the ring.
    #[error("lapped by the publisher: {0} messages missed")]
    Lagged(u64),
    /// A geometry asked for no producer slot, or more than
    /// [`crate::mpsc::MAX_PRODUCERS`].
    #[error("an MPSC ring has 1 to {max} producer slots, not {0}", max = crate::mpsc::MAX_PRODUCERS)]
    InvalidProducerCount(u16),
}

impl Error {
    /// Whether this is [`Error::Disconnected`], for either reason.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected(_))
    }

    pub(crate) fn corrupted(what: &'static str, position: u64, value: u64) -> Self {
        Error::Corrupted(Corruption {
            what,
            position,
            value,
        })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
