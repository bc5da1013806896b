//! The facade's error type.

pub use shmq_ring::{Corruption, Disconnect};

/// Everything that can fail in `shmq`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No room for the message now (`try_` forms only).
    #[error("the channel is full")]
    Full,
    /// No message now (`try_` forms only).
    #[error("the channel is empty")]
    Empty,
    /// A `_timeout` form waited its whole time-out.
    #[error("timed out")]
    Timeout,
    /// A blocking call was interrupted with this handle's [`crate::Interrupter`]
    /// (a shutdown): nothing was sent or received by the call.
    #[error("interrupted (the handle's Interrupter was set)")]
    Interrupted,
    /// The other side is gone for good, and final for this handle: a session's
    /// sender gets it once the receiver closed or died; a receiver only when done
    /// (the expected producers came and went, see
    /// [`crate::Receiver::expect_producers`]) and everything committed has been
    /// received. A queue's sender never gets it (docs/LIFECYCLE.md).
    #[error("the other side is gone ({0:?})")]
    Disconnected(Disconnect),
    /// The message can never fit in this channel.
    #[error("message of {len} bytes exceeds the channel's maximum of {max}")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The largest message the channel takes.
        max: usize,
    },
    /// A value read from shared memory failed its check: the peer is buggy or
    /// hostile, or the segment was damaged. The endpoint refuses further use.
    #[error("channel corrupted: {0}")]
    Corrupted(Corruption),
    /// This end of the channel (the consumer, or the SPSC producer) is already held
    /// by a live process.
    #[error(
        "the {role} end of this channel is already attached by a live process{}",
        pid.map_or(String::new(), |p| format!(" (pid {p})"))
    )]
    AlreadyAttached {
        /// `"consumer"` or `"producer"`.
        role: &'static str,
        /// The holder's process id as it recorded it (for display: shared
        /// memory, and another pid namespace may number it differently).
        pid: Option<u32>,
    },
    /// Every producer slot of an MPSC channel is taken by a live producer.
    #[error("all {max} producer slots of this channel are taken")]
    TooManyProducers {
        /// The channel's number of slots.
        max: u16,
    },
    /// Every subscriber slot of a broadcast channel is taken by a live
    /// subscriber.
    #[error("all {max} subscriber slots of this channel are taken")]
    TooManySubscribers {
        /// The channel's number of slots.
        max: u16,
    },
    /// A broadcast channel's number of subscriber slots is out of range.
    #[error("a broadcast channel has 1 to {max} subscriber slots, not {requested}")]
    InvalidSubscriberCount {
        /// The number asked for.
        requested: u16,
        /// The most a channel has.
        max: u16,
    },
    /// A lossy subscriber was lapped by its publisher: this many messages
    /// were overwritten before it read them. Not final: the next receive
    /// returns the oldest message still in the channel.
    #[error("lapped by the publisher: {0} messages missed")]
    Lagged(u64),
    /// This handle was attached by another process and inherited through `fork`;
    /// it can only be used in the process that attached it (make channels meant to
    /// cross `fork` with `anonymous()`, whose ends attach where they are first used).
    #[error(
        "this channel end was attached by the parent process and inherited through fork; use it there"
    )]
    Forked,
    /// The capacity is out of range.
    #[error(
        "invalid capacity {0}: a byte channel needs a power of two from 64 bytes to 4 GiB, \
         a typed channel room for 1 message or more"
    )]
    InvalidCapacity(u64),
    /// An MPSC channel's number of producer slots is out of range.
    #[error("an MPSC channel has 1 to {max} producer slots, not {requested}")]
    InvalidProducerCount {
        /// The number asked for.
        requested: u16,
        /// The most a channel has.
        max: u16,
    },
    /// The channel under this name (or descriptor) is of another kind than the
    /// handle asked for.
    #[error("the channel is {found}, not {expected} as this handle expects")]
    WrongKind {
        /// The kind this handle expects, as `spsc/bytes`, `mpsc/typed`, ...
        expected: String,
        /// The channel's kind.
        found: String,
    },
    /// A typed channel holds messages of another type than the handle's: another
    /// name, version (declared or not), size or alignment.
    #[error("message type mismatch: the channel holds {found}, this end uses {expected}")]
    WrongMessageType {
        /// This handle's message type.
        expected: crate::MessageType,
        /// The channel's, as its header records it.
        found: crate::MessageType,
    },
    /// A message type's name cannot be recorded in a channel's header: empty,
    /// longer than [`MAX_MESSAGE_NAME`](crate::MAX_MESSAGE_NAME) bytes, or
    /// holding a NUL.
    #[error("invalid message type name {name:?}: {reason}")]
    InvalidMessageName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The segment fails a trust check: another owner, a mode that lets others
    /// write, not a regular object, ...
    #[error(
        "the channel's segment is not trusted: {reason} (to share channels between users, \
         create them with Options::mode, e.g. 0o660, and open them with \
         Options::expected_owner and Options::allow_shared_write)"
    )]
    Untrusted {
        /// Which check failed, in words.
        reason: String,
    },
    /// This handle failed to attach earlier (an anonymous end whose first use
    /// could not attach): it cannot be used.
    #[error("this channel handle failed to attach earlier and cannot be used")]
    NotAttached,
    /// The segment's data area is smaller than its ring needs: the segment was
    /// made by something else, or damaged.
    #[error(
        "the segment's data area of {len} bytes is smaller than the {needed} bytes its ring needs"
    )]
    RegionTooSmall {
        /// Bytes the ring needs.
        needed: u64,
        /// Bytes the segment has.
        len: u64,
    },
    /// `create` with `reclaim_stale` found a stale channel under the name (no
    /// process has it open) whose ring still holds messages no consumer has
    /// received, and did not destroy them.
    #[error(
        "channel {name} is stale (no process has it open) but holds {messages} messages \
         ({bytes} bytes) that no consumer has received: open it to receive them, or \
         remove it (shmq rm) to discard them"
    )]
    StaleWithMessages {
        /// The channel's name.
        name: String,
        /// Messages waiting.
        messages: u64,
        /// Their payload bytes.
        bytes: u64,
    },
    /// A file channel was opened with [`Options::durability`](crate::Options::durability)
    /// set to another policy than the one its creator recorded.
    #[error("the file channel's durability policy is {found}, not {expected} as this end asks")]
    WrongDurability {
        /// The policy this end asked for.
        expected: String,
        /// The channel's, as its header records it.
        found: String,
    },
    /// The segment layer failed: bad name, missing, foreign or damaged segment,
    /// mismatched layout, permissions, ...
    #[error(transparent)]
    Segment(#[from] shmq_segment::Error),
}

impl Error {
    /// Whether this is [`Error::Disconnected`], for either reason.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected(_))
    }
}

impl From<shmq_ring::Error> for Error {
    fn from(e: shmq_ring::Error) -> Self {
        use shmq_ring::Error as R;
        match e {
            R::Full => Error::Full,
            R::Empty => Error::Empty,
            R::Timeout => Error::Timeout,
            R::Interrupted => Error::Interrupted,
            R::Disconnected(d) => Error::Disconnected(d),
            R::MessageTooLarge { len, max } => Error::MessageTooLarge { len, max },
            R::Corrupted(c) => Error::Corrupted(c),
            R::InvalidCapacity(c) => Error::InvalidCapacity(c),
            R::RegionTooSmall { needed, len } => Error::RegionTooSmall { needed, len },
            R::TooManyProducers(max) => Error::TooManyProducers { max },
            R::TooManySubscribers(max) => Error::TooManySubscribers { max },
            R::InvalidSubscriberCount(requested) => Error::InvalidSubscriberCount {
                requested,
                max: shmq_ring::broadcast::MAX_SUBSCRIBERS,
            },
            R::Lagged(n) => Error::Lagged(n),
            R::InvalidProducerCount(requested) => Error::InvalidProducerCount {
                requested,
                max: shmq_ring::mpsc::MAX_PRODUCERS,
            },
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
