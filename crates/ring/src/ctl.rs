//! Control blocks: the words at the start of a ring's region.
//!
//! Every field is an atomic of fixed width; hot words written by different sides
//! sit on different 128-byte lines (`Line`), so no two hot values share a cache
//! line or an adjacent-line-prefetch pair. `crossbeam_utils::CachePadded` is not
//! used here because its size depends on the target, and this layout is shared
//! between processes and must be the same in every build; the offsets are pinned
//! by `const` assertions below.

use crate::local::Local;
use crate::sync::{AtomicU32, AtomicU64, FutexWord, Ordering, fence_seqcst};

/// A value on its own 128-byte line.
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// An endpoint's state word: never attached, attached, or closed.
pub(crate) const NEVER: u32 = 0;
/// See [`NEVER`].
pub(crate) const ATTACHED: u32 = 1;
/// See [`NEVER`].
pub(crate) const CLOSED: u32 = 2;

/// What one endpoint announces about itself. Written only by that endpoint.
#[repr(C)]
pub(crate) struct EndState {
    /// [`NEVER`], [`ATTACHED`] or [`CLOSED`].
    pub(crate) state: AtomicU32,
    /// Bumped on every attach, so frames and claims of an earlier holder of the
    /// same slot can be told apart from the current one's.
    pub(crate) incarnation: AtomicU32,
}

/// A waiting flag's bit: the waiter sleeps on the futex sequence beside it.
pub(crate) const WAIT_FUTEX: u32 = 1;
/// The consumer's waiting flag's bit: the consumer waits on its doorbell (a
/// descriptor, [`crate::Doorbell`]); the notifier rings it
/// ([`crate::Ringer`]) with the id in [`WakeLine::bell`].
pub(crate) const WAIT_BELL: u32 = 2;

/// The wake line: futex words and waiting flags for both directions.
#[repr(C)]
pub(crate) struct WakeLine {
    /// Bumped to wake the consumer; it sleeps on this word when the ring is empty.
    pub(crate) data_seq: FutexWord,
    /// Set by the consumer before it sleeps ([`WAIT_FUTEX`], or [`WAIT_BELL`]
    /// when it waits on its doorbell); cleared by whoever wakes it.
    pub(crate) consumer_waiting: AtomicU32,
    /// Bumped to wake producers; they sleep on this word when the ring is full.
    pub(crate) space_seq: FutexWord,
    /// Set by a producer before it sleeps; cleared by whoever wakes them.
    pub(crate) producers_waiting: AtomicU32,
    /// The id of the consumer's doorbell ([`crate::Doorbell::id`]), written by
    /// the consumer before it sets [`WAIT_BELL`]; what a producer hands to its
    /// [`crate::Ringer`]. Shared memory: a ringer treats it as a hint.
    pub(crate) bell: AtomicU64,
    /// [`FENCES_SYMMETRIC`] or [`FENCES_ASYMMETRIC`]: how this ring's waiters
    /// and notifiers order the flag against the ring (docs/PROTOCOL.md,
    /// section 6, "Asymmetric fences"). Written once by the creator
    /// (`init`), read once by every end when it attaches.
    pub(crate) fences: AtomicU32,
}

/// [`WakeLine::fences`]: every waiter and notifier makes a `fence(SeqCst)`
/// (fresh memory reads so).
pub(crate) const FENCES_SYMMETRIC: u32 = 0;
/// [`WakeLine::fences`]: every waiter makes a heavy barrier
/// (`membarrier(GLOBAL_EXPEDITED)`) before it re-checks, so a notifier in a
/// process registered for it needs only a compiler barrier.
pub(crate) const FENCES_ASYMMETRIC: u32 = 1;

impl WakeLine {
    /// Called by a producer after publishing: wakes the consumer if it sleeps.
    ///
    /// While the consumer is awake this costs a fence and one load of a line that
    /// nobody writes, so the line stays shared in both caches: no system call, no
    /// cache-line transfer.
    /// A consumer waiting on its doorbell is woken through `local`'s
    /// [`crate::Ringer`] (one write to a descriptor) instead.
    #[inline]
    pub(crate) fn notify_data(&self, local: &Local) {
        // SeqCst fence (or, on an asymmetric ring, the light half of one): pairs
        // with the waiter's barrier in `wait::block` (and `Consumer::arm_doorbell`,
        // `select::ready`) after the consumer sets `consumer_waiting` (Dekker):
        // either it sees our publication when it re-checks, or we see its flag.
        local.notifier_barrier();
        let seen = take_flag(&self.consumer_waiting);
        if seen != 0 {
            self.wake_consumer(seen, local);
        }
    }

    /// The consumer's flag was `seen` and this notifier cleared it: wake it the
    /// way it waits. Out of line: the hot path only loads the flag.
    #[cold]
    #[inline(never)]
    fn wake_consumer(&self, seen: u32, local: &Local) {
        if seen & WAIT_BELL != 0 {
            // Relaxed: `take_flag`'s Acquire read of the flag the consumer stored
            // (Release) after this word already orders it.
            local.ring(self.bell.load(Ordering::Relaxed));
        }
        if seen & !WAIT_BELL != 0 {
            // Release: pairs with the Acquire load of the sequence in `wait::block`.
            self.data_seq.fetch_add(1, Ordering::Release);
            self.data_seq.wake(1);
        }
    }

    /// At a ring's creation: asymmetric fences when this process can make the
    /// heavy barrier (a creator that cannot would leave its own waits unpaired
    /// with light notifiers), else symmetric.
    pub(crate) fn init_fences(&self) {
        // Relaxed: published to the ends with the rest of the control block (the
        // segment's Release store of its ready state, or thread spawn).
        self.fences.store(
            if crate::sync::membarrier_registered() {
                FENCES_ASYMMETRIC
            } else {
                FENCES_SYMMETRIC
            },
            Ordering::Relaxed,
        );
    }

    /// After a producer attached or closed (an event its consumer is woken
    /// for): rings the consumer's doorbell if it waits on it. `wake_all`
    /// already woke a consumer asleep on the futex.
    pub(crate) fn ring_if_armed(&self, local: &Local) {
        // SeqCst fence: pairs with the fence in `Consumer::arm_doorbell`, as in
        // `notify_data`, with the epoch bump before it (`EndState::attach`,
        // `close`) as the publication: the consumer's re-check sees the new
        // epoch, or we see its flag.
        fence_seqcst();
        // Relaxed: a hint; the compare-and-swap in `take_flag` decides.
        if self.consumer_waiting.load(Ordering::Relaxed) & WAIT_BELL != 0 {
            let seen = take_flag(&self.consumer_waiting);
            if seen != 0 {
                self.wake_consumer(seen, local);
            }
        }
    }

    /// Called by a broadcast publisher after publishing: wakes every
    /// subscriber that sleeps (they share `consumer_waiting`; no doorbells).
    #[inline]
    pub(crate) fn notify_subscribers(&self, local: &Local) {
        // SeqCst fence (or its light half): as in `notify_data`.
        local.notifier_barrier();
        if take_flag(&self.consumer_waiting) != 0 {
            // Release: pairs with the Acquire load of the sequence in `wait::block`.
            self.data_seq.fetch_add(1, Ordering::Release);
            self.data_seq.wake(u32::MAX);
        }
    }

    /// Called by the consumer after freeing space: wakes every producer that sleeps.
    #[inline]
    pub(crate) fn notify_space(&self, local: &Local) {
        // SeqCst fence (or its light half): as in `notify_data`, with
        // `producers_waiting`.
        local.notifier_barrier();
        self.wake_producers();
    }

    /// The second half of [`WakeLine::notify_space`], for a notifier that made
    /// the barrier itself (a broadcast subscriber, which looks at the
    /// publisher's `need` first).
    #[inline]
    pub(crate) fn wake_producers(&self) {
        if take_flag(&self.producers_waiting) != 0 {
            // Release: pairs with the Acquire load of the sequence in `wait::block`.
            self.space_seq.fetch_add(1, Ordering::Release);
            self.space_seq.wake(u32::MAX);
        }
    }

    /// Wakes everyone unconditionally (an endpoint attached or closed). Bumping
    /// each sequence makes a waiter that read the old value return at once from
    /// its futex wait even if the wake itself comes before it sleeps.
    pub(crate) fn wake_all(&self) {
        // Release: pairs with the Acquire load of the sequence in `wait::block`, so a
        // waiter that reads the new value also sees the state change made before.
        self.data_seq.fetch_add(1, Ordering::Release);
        self.space_seq.fetch_add(1, Ordering::Release);
        self.data_seq.wake(u32::MAX);
        self.space_seq.wake(u32::MAX);
    }
}

/// Sets a waiting flag ([`WAIT_FUTEX`]) before the waiter's barrier: every
/// futex waiter arms this way, in `wait::park` and in `select::arm` (a select,
/// an async wait).
///
/// Release: pairs with a broadcast subscriber's Acquire load of the
/// publisher's flag, so that it reads the publisher's `need`, stored before
/// (`PublisherCore::gated`); the barrier that follows orders the rest.
#[inline]
pub(crate) fn arm_flag(flag: &AtomicU32) {
    flag.store(WAIT_FUTEX, Ordering::Release);
}

/// Clears a waiting flag if it is set; returns the value this call cleared (0
/// if none: of several notifiers only one makes the wake system call).
///
/// The plain load keeps the common case (nobody waiting) a read of a shared line.
/// The clear is a compare-and-swap rather than a `swap`: both are correct, but
/// loom 0.7 mis-models a `swap` followed by a fenced load of the same word in the
/// same thread (tokio-rs/loom#254, #389) and then reports a lost wake-up that the
/// C++ memory model forbids; a single compare-and-swap is modelled correctly.
///
/// Acquire on success: pairs with the Release store of [`WAIT_BELL`] in
/// `Consumer::arm_doorbell`, so that the doorbell id stored before it is read.
#[inline]
fn take_flag(flag: &AtomicU32) -> u32 {
    let seen = flag.load(Ordering::Relaxed);
    if seen != 0
        && flag
            .compare_exchange(seen, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        seen
    } else {
        0
    }
}

/// The endpoints' line: an epoch bumped on every attach and close, and the
/// consumer's (and, for SPSC, the producer's) state.
#[repr(C)]
pub struct Ends {
    /// Bumped after any endpoint attaches or closes: a waiter compares it to decide
    /// whether to look at its peers again.
    pub(crate) epoch: AtomicU32,
    pub(crate) _reserved: AtomicU32,
    /// The consumer.
    pub(crate) consumer: EndState,
    /// The producer (SPSC only; MPSC producers have slots).
    pub(crate) producer: EndState,
}

impl EndState {
    /// Marks the endpoint attached with a new incarnation, and returns it.
    pub(crate) fn attach(&self, ends_epoch: &AtomicU32, wake: &WakeLine) -> u32 {
        // Relaxed: a counter only this endpoint's holder writes; readers order
        // their judgement by the `state` word stored (Release) just below.
        let inc = self
            .incarnation
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        // Release: pairs with the Acquire load of `state` in `EndState::status`.
        self.state.store(ATTACHED, Ordering::Release);
        ends_epoch.fetch_add(1, Ordering::Release);
        wake.wake_all();
        inc
    }

    /// Marks the endpoint closed and wakes whoever waits on it.
    pub(crate) fn close(&self, ends_epoch: &AtomicU32, wake: &WakeLine) {
        // Release: pairs with the Acquire load of `state` in `EndState::status`, so
        // that everything this endpoint published before closing is seen first.
        self.state.store(CLOSED, Ordering::Release);
        ends_epoch.fetch_add(1, Ordering::Release);
        wake.wake_all();
    }
}

/// The SPSC control block (512 bytes).
#[repr(C)]
pub(crate) struct SpscControl {
    /// Producer line: end of the last published frame. Written by the producer
    /// only; read by observers and by a producer that attaches later.
    pub(crate) tail: Line<AtomicU64>,
    /// Consumer line: start of the first unconsumed frame. Written by the consumer.
    pub(crate) head: Line<ConsumerLine>,
    /// Futex words and flags.
    pub(crate) wake: Line<WakeLine>,
    /// Endpoint states.
    pub(crate) ends: Line<Ends>,
}

/// The consumer's line: its position, and how many messages it has received (for
/// tools that show rates; written with the position, on the consumer's own line).
#[repr(C)]
pub(crate) struct ConsumerLine {
    /// Start of the first unconsumed frame.
    pub(crate) pos: AtomicU64,
    /// Messages received since the ring was created.
    pub(crate) received: AtomicU64,
    /// MPSC: where the release in progress will move `pos`, stored before the
    /// consumer zeroes the released bytes (equal to `pos` when none is), so
    /// that a consumer killed in the middle leaves a note the next one
    /// finishes from. Unused by SPSC.
    pub(crate) releasing: AtomicU64,
}

/// One MPSC producer slot, on its own line (its `claim` is written twice per
/// message by that producer alone).
#[repr(C)]
pub(crate) struct ProducerSlot {
    /// The producer's state and incarnation.
    pub(crate) end: EndState,
    /// `position | 1` while this producer is claiming, or has claimed and not yet
    /// written a header at, `position` (positions are 8-aligned, so bit 0 is free);
    /// [`NO_CLAIM`] otherwise. Lets the consumer tell a dead producer's zeroed claim
    /// from a live producer's (see `mpsc.rs`).
    pub(crate) claim: AtomicU64,
    /// `tail` as this slot's current holder read it when it attached: every claim
    /// it makes lies at or after it, so a claim before it, whatever its 16-bit
    /// incarnation stamp says, is an earlier holder's (the stamp wraps after
    /// 65,536 attachments). 0 in segments of older builds: no claim is before it.
    pub(crate) since: AtomicU64,
}

/// `ProducerSlot::claim` when the producer holds no header-less claim (fresh,
/// zero-filled memory starts this way).
pub(crate) const NO_CLAIM: u64 = 0;

/// The fixed part of the MPSC control block; producer slots follow it.
#[repr(C)]
pub(crate) struct MpscControl {
    /// End of the last claim; producers compare-and-swap it.
    pub(crate) tail: Line<AtomicU64>,
    /// Start of the first unconsumed frame, and messages received. Written by the
    /// consumer.
    pub(crate) head: Line<ConsumerLine>,
    /// Futex words and flags.
    pub(crate) wake: Line<WakeLine>,
    /// Endpoint states (`producer` unused) and the slot count.
    pub(crate) ends: Line<Ends>,
}

/// The broadcast publisher's line: everything subscribers read per message,
/// written by the publisher alone (one line to pull, whatever the count of
/// subscribers).
#[repr(C)]
pub(crate) struct PublisherLine {
    /// End of the last published frame (`Release`).
    pub(crate) tail: AtomicU64,
    /// Messages published since the ring was created; stored before `tail`.
    pub(crate) count: AtomicU64,
    /// How far the publisher may be writing: every byte at a position below
    /// `intent - capacity` has been (or is being) overwritten. Raised before
    /// the bytes are written, never lowered; lossy subscribers check it after
    /// they copy (see `broadcast.rs`).
    pub(crate) intent: AtomicU64,
    /// The first frame not yet overwritten: where a lapped lossy subscriber
    /// (and a subscriber joining at the oldest message) starts.
    pub(crate) oldest: AtomicU64,
    /// `need | 1` while the publisher waits for room: its claim fits once
    /// every lossless subscriber's `pos` has reached `need`. Stored before the
    /// publisher sets its waiting flag; a lossless subscriber wakes it only
    /// when its release crosses `need` (0, as a publisher of an earlier
    /// version leaves it: every release wakes).
    pub(crate) need: AtomicU64,
}

/// A subscriber's mode word: gating the publisher.
pub(crate) const LOSSLESS: u32 = 1;
/// A subscriber's mode word: never waited for.
pub(crate) const LOSSY: u32 = 2;

/// One broadcast subscriber slot, on its own line: written by its subscriber
/// only; the publisher reads `pos` of lossless ones when the ring looks full.
#[repr(C)]
pub(crate) struct SubscriberSlot {
    /// The subscriber's state and incarnation.
    pub(crate) end: EndState,
    /// [`LOSSLESS`] or [`LOSSY`].
    pub(crate) mode: AtomicU32,
    pub(crate) _reserved: AtomicU32,
    /// Start of the first frame this subscriber has not released (`Release`):
    /// a lossless subscriber's gate.
    pub(crate) pos: AtomicU64,
    /// Messages received (for tools).
    pub(crate) received: AtomicU64,
    /// Messages it was told it missed (`Lagged`; for tools).
    pub(crate) lagged: AtomicU64,
}

/// The fixed part of the broadcast control block; subscriber slots follow it.
#[repr(C)]
pub(crate) struct BroadcastControl {
    /// The publisher's line.
    pub(crate) publisher: Line<PublisherLine>,
    /// Unused (keeps the layout of the other kinds: wake line at 256).
    pub(crate) _spare: Line<AtomicU64>,
    /// Futex words and flags: subscribers wait on `data_seq` (sharing
    /// `consumer_waiting`), the publisher on `space_seq`.
    pub(crate) wake: Line<WakeLine>,
    /// Endpoint states: `producer` is the publisher (`consumer` unused); the
    /// epoch also moves when a subscriber attaches or closes.
    pub(crate) ends: Line<Ends>,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Line<AtomicU64>>() == 128);
    assert!(size_of::<SpscControl>() == 512);
    assert!(offset_of!(SpscControl, tail) == 0);
    assert!(offset_of!(SpscControl, head) == 128);
    assert!(offset_of!(ConsumerLine, received) == 8);
    assert!(offset_of!(ConsumerLine, releasing) == 16);
    assert!(offset_of!(SpscControl, wake) == 256);
    assert!(offset_of!(SpscControl, ends) == 384);
    assert!(offset_of!(WakeLine, data_seq) == 0);
    assert!(offset_of!(WakeLine, consumer_waiting) == 4);
    assert!(offset_of!(WakeLine, space_seq) == 8);
    assert!(offset_of!(WakeLine, producers_waiting) == 12);
    assert!(offset_of!(WakeLine, bell) == 16);
    assert!(offset_of!(WakeLine, fences) == 24);
    assert!(offset_of!(Ends, epoch) == 0);
    assert!(offset_of!(Ends, consumer) == 8);
    assert!(offset_of!(Ends, producer) == 16);
    assert!(size_of::<MpscControl>() == 512);
    assert!(size_of::<Line<ProducerSlot>>() == 128);
    assert!(offset_of!(ProducerSlot, claim) == 8);
    assert!(offset_of!(ProducerSlot, since) == 16);
    assert!(size_of::<BroadcastControl>() == 512);
    assert!(offset_of!(BroadcastControl, wake) == 256);
    assert!(offset_of!(BroadcastControl, ends) == 384);
    assert!(offset_of!(PublisherLine, intent) == 16);
    assert!(offset_of!(PublisherLine, need) == 32);
    assert!(size_of::<Line<SubscriberSlot>>() == 128);
    assert!(offset_of!(SubscriberSlot, pos) == 16);
    // 64-bit positions must be lock-free atomics on this target.
    assert!(cfg!(target_has_atomic = "64"));
};

impl crate::region::ArrayItem for Line<ProducerSlot> {
    const LEN: usize = 128;
}

impl crate::region::ControlBlock for SpscControl {
    const LEN: usize = 512;
}

impl crate::region::ControlBlock for MpscControl {
    const LEN: usize = 512;
}

impl crate::region::ControlBlock for BroadcastControl {
    const LEN: usize = 512;
}

impl crate::region::ArrayItem for Line<SubscriberSlot> {
    const LEN: usize = 128;
}
