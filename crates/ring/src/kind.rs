//! Ring kinds and the small core each one implements.
//!
//! A kind ([`Spsc`], [`Mpsc`]) is a marker type naming two cores: a producer
//! core and a consumer core. A core knows its ring's layout and protocol and
//! offers only what differs between kinds: claim room for one frame now, commit
//! or abort it, send a batch; peek at the next frame, release consumed frames;
//! look at the peer. Everything a user calls (`try_` / blocking / `_timeout`
//! forms, copying forms, guards) is written once, over these cores, in
//! [`crate::Producer`] and [`crate::Consumer`].
//!
//! The traits are sealed: they live in a private module, so only this crate
//! can implement them, and their methods are not part of the public API.

use crate::ctl::Ends;
use crate::error::{Disconnect, Result};
use crate::local::Local;
use crate::peer::PeerStatus;
use crate::region::Data;
use crate::sync::{AtomicU32, AtomicU64, FutexWord, Ordering};

/// A ring kind: which producer and consumer cores a [`crate::Producer`] and a
/// [`crate::Consumer`] of this kind drive. Implemented by [`Spsc`], [`Mpsc`]
/// and [`Broadcast`] only.
pub trait Kind: sealed::Sealed + Sized + Send + 'static {
    /// The producer core.
    #[doc(hidden)]
    type Producer: ProducerCore;
    /// The consumer core.
    #[doc(hidden)]
    type Consumer: ConsumerCore;
    /// `"spsc"` or `"mpsc"`, for messages and `Debug`.
    const NAME: &'static str;
    /// Bytes of the control block of a ring with `producers` slots: the
    /// slotted layout (MPSC, broadcast) unless the kind says otherwise.
    #[doc(hidden)]
    fn control_len(producers: u16) -> usize {
        crate::shared::control_len(producers)
    }
}

/// The single-producer single-consumer ring ([`crate::spsc`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spsc;

/// The many-producer single-consumer ring ([`crate::mpsc`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mpsc;

/// The one-publisher many-subscriber ring ([`crate::broadcast`]): its
/// "producer" is the publisher, its "consumers" the subscribers, and its
/// geometry's producer count is the number of subscriber slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Broadcast;

impl Kind for Broadcast {
    type Producer = crate::broadcast::PublisherCore;
    type Consumer = crate::broadcast::SubscriberCore;
    const NAME: &'static str = "broadcast";
}

impl Kind for Spsc {
    type Producer = crate::spsc::ProducerCore;
    type Consumer = crate::spsc::ConsumerCore;
    const NAME: &'static str = "spsc";
    fn control_len(_producers: u16) -> usize {
        crate::spsc::CONTROL_LEN
    }
}

impl Kind for Mpsc {
    type Producer = crate::mpsc::ProducerCore;
    type Consumer = crate::mpsc::ConsumerCore;
    const NAME: &'static str = "mpsc";
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Spsc {}
    impl Sealed for super::Mpsc {}
    impl Sealed for super::Broadcast {}
}

/// Where a readable frame's payload is. Two words, as [`Claim`], so that it
/// travels in registers: with a third (the next frame's position, which the
/// core now works out in `advance` from its own position and `len`), every
/// receive moved it through the stack, and loading two of its words with one
/// 16-byte load that two 8-byte stores had just written missed store-to-load
/// forwarding on the receive path.
#[derive(Clone, Copy, Debug)]
pub struct Readable {
    /// Offset of the payload in the data area.
    pub(crate) at: usize,
    /// Payload length.
    pub(crate) len: usize,
}

impl Readable {
    /// Where the next frame starts, for a message frame starting at `pos`
    /// (every kind's message frame is `frame_len(len)` bytes).
    #[inline]
    pub(crate) fn next(&self, pos: u64) -> u64 {
        pos.wrapping_add(crate::frame::frame_len(self.len) as u64)
    }
}

/// Room for one frame, claimed and not yet published. Two words, so that it
/// travels in registers (a bigger one went through memory, and the partial
/// store-to-load forwarding of that copy cost a zero-copy send half its speed).
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    /// Offset of the payload in the data area.
    pub(crate) at: usize,
    /// Payload length reserved.
    pub(crate) len: usize,
}

/// The six accessors of [`EndCore`] every core writes alike, from where its
/// fields are: `local`, the control block (with its `ends` and `wake` lines),
/// the data area and the capacity (paths below `self`). The side names the
/// futex sequence and waiting flag the end sleeps on: a producer waits for
/// space, a consumer for data, in every kind.
macro_rules! end_accessors {
    (producer: $($rest:tt)*) => {
        crate::kind::end_accessors!(@ (space_seq, producers_waiting) $($rest)*);
    };
    (consumer: $($rest:tt)*) => {
        crate::kind::end_accessors!(@ (data_seq, consumer_waiting) $($rest)*);
    };
    (
        @ ($seq:ident, $flag:ident) $($local:ident).+, $($ctl:ident).+,
        $($data:ident).+, $($cap:ident).+
    ) => {
        #[inline]
        fn local(&self) -> &crate::local::Local {
            &self.$($local).+
        }

        #[inline]
        fn local_mut(&mut self) -> &mut crate::local::Local {
            &mut self.$($local).+
        }

        #[inline]
        fn data(&self) -> &crate::region::Data {
            &self.$($data).+
        }

        #[inline]
        fn capacity(&self) -> usize {
            self.$($cap).+
        }

        #[inline]
        fn ends(&self) -> &crate::ctl::Ends {
            &self.$($ctl).+.ends
        }

        #[inline]
        fn wait_words(&self) -> (&crate::sync::FutexWord, &crate::sync::AtomicU32) {
            (&self.$($ctl).+.wake.$seq, &self.$($ctl).+.wake.$flag)
        }
    };
}
pub(crate) use end_accessors;

/// What every core, producer or consumer, has.
#[doc(hidden)]
pub trait EndCore: Send + Sized {
    /// Whether this side alone sleeps on its waiting flag (then it clears the
    /// flag itself after waking; a shared flag is cleared only by notifiers).
    const EXCLUSIVE_WAIT: bool;
    /// The end's private state.
    fn local(&self) -> &Local;
    /// The end's private state, mutably.
    fn local_mut(&mut self) -> &mut Local;
    /// The data area.
    fn data(&self) -> &Data;
    /// Capacity of the data area in bytes.
    fn capacity(&self) -> usize;
    /// The endpoints' states and epoch.
    fn ends(&self) -> &Ends;
    /// The futex sequence this side sleeps on, and its waiting flag.
    fn wait_words(&self) -> (&FutexWord, &AtomicU32);
    /// Full look at the peer(s), which may make system calls: `Err` when the
    /// operation can never complete (the peer is gone). MPSC consumers also
    /// reclaim dead producers' claims here.
    fn check_peer(&mut self) -> Result<()>;
    /// Bytes published and not yet consumed, as far as this end can tell.
    fn len_hint(&self) -> usize;
    /// Marks the end closed in shared memory and wakes the peer(s).
    fn announce_close(&mut self);
    /// [`EndCore::announce_close`] unless this end is closed already (or
    /// detached): the user's `close` and the handle's drop both come here.
    fn close_once(&mut self) {
        if !self.local().closed {
            self.local_mut().closed = true;
            self.announce_close();
        }
    }
}

/// `Debug` of a producer or consumer handle (`side`) of ring kind `kind`.
pub(crate) fn fmt_end(
    f: &mut core::fmt::Formatter<'_>,
    side: &str,
    kind: &str,
    core: &impl EndCore,
) -> core::fmt::Result {
    f.debug_struct(side)
        .field("kind", &kind)
        .field("capacity", &core.capacity())
        .finish_non_exhaustive()
}

/// What a producer core does; the rest is written once in [`crate::Producer`].
#[doc(hidden)]
pub trait ProducerCore: EndCore {
    /// Whether consumers wait for a frame by polling its header word (SPSC,
    /// MPSC), so that a copied payload's bytes in the header's cache line go
    /// last (`Data::write_payload`); a broadcast subscriber polls `tail`.
    const POLLED_HEADERS: bool = true;
    /// The largest message this ring takes (`frame::max_payload`).
    #[inline]
    fn max_payload(&self) -> usize {
        crate::frame::max_payload(self.capacity())
    }
    /// The checks every claim starts with: the end is not poisoned, and a
    /// message of `len` bytes fits in the ring at all.
    #[inline(always)]
    fn admit(&self, len: usize) -> Result<()> {
        self.local().check()?;
        let max = self.max_payload();
        if len > max {
            return Err(crate::Error::MessageTooLarge { len, max });
        }
        Ok(())
    }
    /// Room for one message of `len` bytes now (`Ok(None)`: full). Refuses a
    /// poisoned end, a message that can never fit, and a consumer that announced
    /// it closed.
    fn claim(&mut self, len: usize) -> Result<Option<Claim>>;
    /// Publishes the first `len` bytes of a claim whose payload is written.
    fn commit(&mut self, c: Claim, len: usize);
    /// Gives a claim up, publishing nothing.
    fn abort(&mut self, c: Claim);
    /// After a non-blocking claim found no room: `Err` if the consumer is gone
    /// (rate-limited to one look a wait slice).
    #[cold]
    fn full_or_gone(&mut self) -> Result<()> {
        self.local().check()?;
        if self.local().consumer_closed_hint(self.ends()) {
            return Err(self.local_mut().disconnected(Disconnect::Closed));
        }
        if self.local_mut().look_due() {
            self.check_peer()?;
        }
        Ok(())
    }
    /// Cheap re-check after the waiting flag is set: is there room for `len`?
    fn room_ready(&self, len: usize) -> bool;
    /// Rings the consumer's doorbell if it waits on it (`WakeLine::ring_if_armed`).
    fn ring_if_armed(&self);
    /// Sends as many of `msgs` as fit now with one publication.
    fn send_batch<'m>(&mut self, msgs: impl Iterator<Item = &'m [u8]>) -> Result<usize>;
}

/// What a consumer core does; the rest is written once in [`crate::Consumer`].
#[doc(hidden)]
pub trait ConsumerCore: EndCore {
    /// The next readable frame, skipping padding (`Ok(None)`: nothing yet).
    fn peek(&mut self) -> Result<Option<Readable>>;
    /// Moves past a frame that was read (its space is released later): the
    /// frame `peek` returned last, which starts at the core's position.
    fn advance(&mut self, f: Readable);
    /// Releases everything read so far (`messages` more were received) and
    /// wakes a waiting producer.
    fn release(&mut self, messages: u64);
    /// After a non-blocking peek found nothing: `Err(Disconnected)` if the
    /// producers are gone and nothing is left (rate-limited).
    fn empty_or_gone(&mut self) -> Result<()>;
    /// The word the consumer writes its doorbell's id to before arming it.
    fn bell_word(&self) -> &AtomicU64;
    /// A private copy of the frame [`ConsumerCore::peek`] just returned, if
    /// this core reads by copying (a lossy broadcast subscriber): guards and
    /// copies then take these bytes instead of the ring's.
    #[inline(always)]
    fn staged(&self) -> Option<&[u8]> {
        None
    }
    /// A `Lagged` error from [`ConsumerCore::peek`] reached the user: stop
    /// reporting it (until then every `peek` returns it, so that a look that
    /// only asks whether a receive would return consumes nothing).
    fn lag_reported(&mut self) {}
    /// Whether releases store back a word of each cache line they free (SPSC;
    /// a lossless broadcast subscriber alone in its channel; see
    /// `Data::hand_back`). Other kinds ignore it.
    fn set_hand_back(&mut self, _on: bool) {}

    /// What a consumer of one producer (SPSC; a broadcast subscriber's
    /// publisher) makes of a look that said `status`: `Err(Disconnected)` if
    /// the producer is gone and nothing is left to read.
    #[cold]
    fn judge_the_producer(&mut self, status: PeerStatus) -> Result<()> {
        match status {
            PeerStatus::Gone(why) => {
                // The producer's last frames were published before its state
                // changed (or before it died): look once more before
                // reporting it gone.
                if self.peek()?.is_some() {
                    self.local_mut().peer_gone = true;
                    return Ok(());
                }
                // Attachments: the producer's count, or at least one if this
                // end saw it (the word is a hint; see `peer_status`).
                // Relaxed: a count for a decision the next look revisits.
                let count = self.ends().producer.incarnation.load(Ordering::Relaxed);
                let done = self.local_mut().producers_done(count.max(1), why);
                // Waiting for more producers (a queue): sleep until one
                // attaches (its attach wakes us) rather than look again at once.
                self.local_mut().peer_gone = done.is_err();
                done
            }
            PeerStatus::Alive | PeerStatus::Unattached => {
                self.local_mut().peer_gone = false;
                Ok(())
            }
        }
    }
}
