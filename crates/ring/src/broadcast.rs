//! The broadcast ring: one publisher writes each message once; up to
//! [`MAX_SUBSCRIBERS`] subscribers read it, each at its own position.
//!
//! # Protocol
//!
//! Positions are monotonic `u64` byte counts, as in SPSC; frames are the 8-byte
//! broadcast headers of [`crate::frame::decode_broadcast`], which carry the low
//! 32 bits of each message's sequence number. The publisher's line holds
//! `tail` (end of the last published frame), `count` (messages published),
//! `intent` (how far it may be writing) and `oldest` (the first frame not yet
//! overwritten).
//!
//! **Publisher**, to send a frame of `f` bytes at its position `t` (padding to
//! the end of the area first if it would cross it; `need` bytes in all,
//! `end = t + need`):
//! 1. *Gate.* Every attached **lossless** subscriber's `pos` must satisfy
//!    `end - pos <= capacity`; the lowest such `pos` is cached and re-read only
//!    when the ring looks full or the endpoints' epoch moved (a subscriber
//!    attached or closed). Otherwise: full (`Ok(None)`).
//! 2. *Announce.* If `end > intent`: store `intent = end`, move `oldest` past
//!    every frame that starts below `end - capacity` (`Release`), then the
//!    notifier's barrier (a `SeqCst` fence, or its light half on an asymmetric
//!    ring) and a second look at the epoch: a subscriber that attached
//!    meanwhile is gated before anything is written (see "Joining").
//!    Then `fence(Release)`: the announcement is ordered before the bytes.
//! 3. *Write* the payload and the header(s) (`Relaxed`), store `count`, then
//!    `tail` with `Release`, and wake sleeping subscribers.
//!
//! **A lossless subscriber** at `pos` loads `tail` (`Acquire`) and reads the
//! frames below it in place: the gate keeps the publisher off them until it
//! stores a later `pos` (`Release`), which it does when it releases them.
//! It first hands back (`Data::hand_back`, as an SPSC consumer does) the freed
//! lines that every other lossless subscriber has released already: each line
//! is taken for writing by the last lossless subscriber to release it.
//!
//! **A lossy subscriber** is never waited for. It reads the header, copies the
//! payload into its own buffer, then `fence(Acquire)` and loads `intent`: if
//! `intent - pos > capacity` the publisher may have overwritten what it read
//! (a seqlock whose counter is `intent`), and the copy is thrown away. It then
//! moves to `oldest`, and reports how many messages it missed
//! ([`Error::Lagged`]), counted from the sequence number in the next header
//! it reads (the 32 low bits in the header, the high ones from `count`). A
//! message it returns was read whole between two announcements that did not
//! cover it, so it is never torn.
//!
//! **Waking the publisher.** A publisher whose claim found no room stores
//! `need | 1` in its line (`need = end - capacity`: the claim fits once every
//! lossless `pos` has reached it) before it sets its waiting flag (`Release`)
//! and sleeps as any waiter does (section 6 of docs/PROTOCOL.md). A lossless
//! subscriber, after its `Release` store of `pos` and the notifier's barrier,
//! loads the flag (`Acquire`, so it reads that `need`) and wakes the
//! publisher only if this release took its `pos` from short of `need` to
//! `need` or past it. The slowest subscriber is one of those that cross, so
//! the publisher is woken once it can go on; a release that leaves others
//! short of `need` wakes it at most once per subscriber, not once per
//! release. No wake-up is lost: either the publisher's look after its
//! barrier sees a crossing subscriber's new `pos`, or that subscriber sees
//! the flag. A `need` without its mark (0: a publisher of an earlier
//! version) wakes on every release. Measured with 4 lossless subscribers at
//! 64 B: 96 k `membarrier` calls and 190 k futex calls for 20 M messages
//! before, 8 k and 14 k after.
//!
//! **Joining.** A subscriber stores its `pos` (the next message: `tail`; or the
//! oldest retained: `oldest`) and mode, marks its slot attached, and bumps the
//! epoch; then the waiter's barrier (`SeqCst` fence, or `membarrier` on an
//! asymmetric ring) and loads `intent`. This pairs with the publisher's barrier
//! between its `intent` store and its second epoch look (store buffering):
//! either the publisher sees the epoch move and gates the newcomer before it
//! writes, or the newcomer sees the `intent` that covers the write and picks a
//! later position. A claim that could not proceed after `intent` was raised
//! leaves it raised: that only makes lossy subscribers skip sooner. A lossy
//! subscriber joining at the next message learns its place in the sequence
//! at once (`count`, read while no claim is in flight); one that could not
//! (the publisher kept claiming; or a join at the oldest message) learns it
//! from the first header it reads, and if it is lapped before that, starts at
//! the oldest message without a `Lagged` report.
//!
//! **Leaving.** A subscriber that closes marks its slot closed; one that dies
//! keeps gating until the publisher, blocked on it, asks the liveness hook
//! (once a wait slice) and the kernel says it is dead: then it is evicted (its
//! slot and incarnation are ignored from then on), never on a time-out. A
//! stopped or slow live lossless subscriber holds the publisher: that is what
//! lossless means. A slot whose `pos` is out of range (more than a ring behind
//! `tail`, or ahead of it: a joiner's stale pick, or a hostile subscriber) is
//! ignored while it is, so no subscriber can stop the publisher except by
//! being lossless and not reading.
//!
//! # Never trusting the peers
//! Every header is decoded and its sequence number checked; every `tail`,
//! `intent`, `oldest` and `pos` is checked against the others. A failed check
//! is [`Error::Corrupted`] for the end that read it.

use std::sync::Arc;

use crate::ctl::{
    ATTACHED, BroadcastControl, CLOSED, LOSSLESS, LOSSY, PublisherLine, SubscriberSlot,
};
use crate::error::{Disconnect, Error, Result};
use crate::failpoint;
use crate::frame::{self, BroadcastFrame, HEADER_LEN};
use crate::geometry::Geometry;
use crate::kind::{Broadcast, Claim, ConsumerCore as _, EndCore as _, ProducerCore as _, Readable};
use crate::local::Local;
use crate::peer::{PeerStatus, peer_status};
use crate::region::{Ctl, HAND_BACK_MIN, Region};
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{Endpoint, Liveness, WaitConfig};

/// The sending side of a broadcast ring.
pub type Publisher = crate::Producer<Broadcast>;
/// One receiving side of a broadcast ring.
pub type Subscriber = crate::Consumer<Broadcast>;
/// Room reserved for one message (see [`crate::WriteGuard`]).
pub type WriteGuard<'a> = crate::WriteGuard<'a, Broadcast>;
/// A received message: in place for a lossless subscriber, a private copy for
/// a lossy one (see [`crate::ReadGuard`]).
pub type ReadGuard<'a> = crate::ReadGuard<'a, Broadcast>;

/// Most subscriber slots a broadcast ring can have: a channel's segment has
/// at most 1,024 endpoints, and the publisher takes one.
pub const MAX_SUBSCRIBERS: u16 = 1000;

/// Largest capacity of a broadcast ring (a frame length has 30 bits).
pub const MAX_CAPACITY: u64 = 1 << 31;

/// Bytes the control block of a ring with `subscribers` slots takes.
pub const fn control_len(subscribers: u16) -> usize {
    crate::shared::control_len(subscribers)
}

/// Bytes a region needs for a broadcast ring.
pub const fn region_len(capacity: usize, subscribers: u16) -> usize {
    control_len(subscribers) + capacity
}

/// How a subscriber receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The publisher never overwrites a message this subscriber has not
    /// released: it waits for it (or `try_send` says `Full`). Messages are
    /// read in place.
    #[default]
    Lossless,
    /// The publisher never waits for this subscriber; when it is lapped, its
    /// next receive reports [`Error::Lagged`] with the count it missed, and it
    /// continues from the oldest message still in the ring. Messages are
    /// copied out and checked, so never torn.
    Lossy,
}

/// Where a subscriber starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Join {
    /// At the next message published after it attached.
    #[default]
    Next,
    /// At the oldest message still in the ring.
    Oldest,
}

/// Prepares a zero-filled region as an empty broadcast ring whose positions
/// start at `start`.
///
/// # Errors
/// [`Error::RegionTooSmall`].
///
/// # Panics
/// If `start` is not a multiple of 8.
pub fn init(region: &Region, geometry: Geometry<Broadcast>, start: u64) -> Result<()> {
    assert!(start.is_multiple_of(8), "positions are 8-aligned");
    geometry.check(region)?;
    let ctl: Ctl<BroadcastControl> = Ctl::new(region);
    // Relaxed: published by the segment's Release "ready" store, or by thread spawn.
    for w in [
        &ctl.publisher.tail,
        &ctl.publisher.intent,
        &ctl.publisher.oldest,
    ] {
        w.store(start, Ordering::Relaxed);
    }
    ctl.publisher.count.store(0, Ordering::Relaxed);
    ctl.wake.init_fences();
    Ok(())
}

/// The views of the shared memory both sides use.
type Shared = crate::shared::Shared<BroadcastControl, SubscriberSlot>;

impl Shared {
    fn publisher(&self) -> &PublisherLine {
        &self.ctl.publisher
    }

    /// Whether `later` is more than a ring ahead of `pos` (wrapping), or behind it.
    fn beyond_a_ring(&self, pos: u64, later: u64) -> bool {
        later.wrapping_sub(pos) > self.cap as u64
    }
}

/// The broadcast publisher core.
#[doc(hidden)]
pub struct PublisherCore {
    sh: Shared,
    /// Our position: where the next frame goes.
    tail: u64,
    /// Messages published (the next message's sequence number).
    count: u64,
    /// The last `intent` we stored.
    intent: u64,
    /// The last `oldest` we stored.
    oldest: u64,
    /// The lowest position of a lossless subscriber at the last look (`None`:
    /// no lossless subscriber then): room ends a ring after it.
    gate: Option<u64>,
    /// The epoch at that look: when it moves, look again.
    gate_epoch: u32,
    /// Per slot, the incarnation evicted (dead, or its position out of
    /// range); 0: none.
    evicted: Vec<u32>,
    local: Local,
}

/// A broadcast subscriber core.
#[doc(hidden)]
pub struct SubscriberCore {
    sh: Shared,
    slot: u16,
    lossy: bool,
    /// Our position: the next frame to read.
    pos: u64,
    /// `tail` as last read: frames below it are published.
    tail: u64,
    /// The next message's sequence number.
    next_seq: u64,
    /// The next header's sequence number is taken as it is: `Silent` after
    /// joining, `Report` after a lap (the difference is the count missed).
    resync: Resync,
    /// Messages missed in a lap found and not yet reported to the user: every
    /// `peek` returns `Lagged` with it until `lag_reported`.
    lag_pending: u64,
    /// Messages received.
    received: u64,
    /// Messages reported missed.
    lagged: u64,
    /// Lossy: the private copy of the frame `peek` returned.
    stage: Vec<u8>,
    /// The `pos` we last published: the bytes from here to `pos` are read and
    /// still ours (lossless: the gate keeps the publisher off them).
    released: u64,
    /// Lossless: whether releases hand their lines back (`Data::hand_back`):
    /// the lines every other lossless subscriber has released already; off
    /// for a lossy one (the publisher does not wait for it) and on a synced
    /// file.
    hand_back: bool,
    /// The epoch at which `others` was found, and the slots of the other
    /// lossless subscribers attached then (see `hand_back_end`).
    others_at: u32,
    others: Vec<u16>,
    local: Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resync {
    No,
    Silent,
    Report,
}

impl Publisher {
    /// Attaches the publisher (the caller holds its liveness marker, so it is
    /// the only one). A publisher that attaches after an earlier one resumes
    /// after the last frame that one published.
    ///
    /// # Errors
    /// [`Error::RegionTooSmall`], [`Error::Corrupted`].
    pub fn attach(
        region: &Region,
        geometry: Geometry<Broadcast>,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Publisher> {
        let sh = Shared::new(region, geometry)?;
        let pl = sh.publisher();
        // Acquire: pairs with an earlier publisher's Release store of `tail`.
        let tail = pl.tail.load(Ordering::Acquire);
        // Relaxed: stored before that `tail`.
        let count = pl.count.load(Ordering::Relaxed);
        let intent = pl.intent.load(Ordering::Relaxed);
        let oldest = pl.oldest.load(Ordering::Relaxed);
        if !tail.is_multiple_of(8) || !oldest.is_multiple_of(8) {
            return Err(Error::corrupted(
                "publisher position not 8-aligned",
                tail,
                oldest,
            ));
        }
        if sh.beyond_a_ring(tail, intent) {
            return Err(Error::corrupted("intent out of range", tail, intent));
        }
        if sh.beyond_a_ring(oldest, tail) {
            return Err(Error::corrupted("oldest out of range", tail, oldest));
        }
        // Acquire: pairs with the Release increment of the epoch by other ends.
        let seen_epoch = sh.ctl.ends.epoch.load(Ordering::Acquire);
        sh.ctl
            .ends
            .producer
            .attach(&sh.ctl.ends.epoch, &sh.ctl.wake);
        let mut local = Local::new(cfg, liveness, seen_epoch, tail);
        local.read_fences(&sh.ctl.wake.fences);
        let n = usize::from(sh.nslots);
        let mut core = PublisherCore {
            sh,
            tail,
            count,
            intent,
            oldest,
            gate: None,
            gate_epoch: seen_epoch.wrapping_sub(1),
            evicted: vec![0; n],
            local,
        };
        // An earlier publisher may have overwritten frames up to its `intent`
        // before it died: they are gone.
        core.advance_oldest(intent)?;
        Ok(crate::Producer { core, held: None })
    }
}

impl PublisherCore {
    /// Whether a frame ending at `end` leaves every gating subscriber's frames
    /// alone.
    #[inline(always)]
    fn fits(&self, end: u64) -> bool {
        self.gate
            .is_none_or(|g| end.wrapping_sub(g) <= self.sh.cap as u64)
    }

    /// Whether the epoch moved since the gate was computed.
    #[inline(always)]
    fn epoch_moved(&self) -> bool {
        // Relaxed: a hint; `regate` reads it again with Acquire.
        self.sh.ctl.ends.epoch.load(Ordering::Relaxed) != self.gate_epoch
    }

    /// Recomputes the gate from the slots.
    #[cold]
    fn regate(&mut self) {
        // Acquire: pairs with the Release increment in `EndState::attach`, so
        // that the newcomer's `pos` and mode, stored before, are seen.
        self.gate_epoch = self.sh.ctl.ends.epoch.load(Ordering::Acquire);
        let mut gate: Option<u64> = None;
        for s in 0..self.sh.nslots {
            let Some(pos) = self.gating_pos(s) else {
                continue;
            };
            if gate.is_none_or(|g| self.tail.wrapping_sub(pos) > self.tail.wrapping_sub(g)) {
                gate = Some(pos);
            }
        }
        self.gate = gate;
    }

    /// The position slot `s` gates at, if it does: attached, lossless, not
    /// evicted, with a position in range (one out of range is evicted now).
    fn gating_pos(&mut self, s: u16) -> Option<u64> {
        let slot = self.sh.slot(s);
        // Acquire: pairs with the Release store of the state in `EndState::attach`.
        if slot.end.state.load(Ordering::Acquire) != ATTACHED {
            return None;
        }
        // Relaxed: ordered by the state's Acquire (stored before it).
        let inc = slot.end.incarnation.load(Ordering::Relaxed);
        if slot.mode.load(Ordering::Relaxed) != LOSSLESS || self.evicted[usize::from(s)] == inc {
            return None;
        }
        // Acquire: pairs with the subscriber's Release store of `pos`: its
        // reads of the frames below it are done before we overwrite them.
        let pos = slot.pos.load(Ordering::Acquire);
        if !pos.is_multiple_of(8) || self.sh.beyond_a_ring(pos, self.tail) {
            // Out of range: a joiner whose first pick went stale (it moves on,
            // and bumps the epoch so that we look again), or a hostile or
            // damaged slot, which does not get to stop the publisher. Not
            // evicted: ignored while it stays out of range (the churn test
            // found a joiner evicted for its stale pick, then lapped).
            return None;
        }
        Some(pos)
    }

    /// Evicts lossless subscribers that are dead (the liveness hook says so);
    /// never one that is only slow or stopped.
    #[cold]
    fn evict_dead(&mut self) -> Result<()> {
        for s in 0..self.sh.nslots {
            if self.gating_pos(s).is_none() {
                continue;
            }
            let slot = self.sh.slot(s);
            // Relaxed: compared with the value `gating_pos` just read.
            let inc = slot.end.incarnation.load(Ordering::Relaxed);
            let status = peer_status(
                &slot.end,
                &*self.local.liveness,
                Endpoint::Subscriber(s),
                true,
            )
            .map_err(|e| self.local.poison(e))?;
            if status == PeerStatus::Gone(Disconnect::Died) {
                self.evicted[usize::from(s)] = inc;
            }
        }
        self.regate();
        Ok(())
    }

    /// Moves `oldest` past every frame that starts below `end - capacity`.
    fn advance_oldest(&mut self, end: u64) -> Result<()> {
        let cap = self.sh.cap as u64;
        let mut oldest = self.oldest;
        // Each frame is at least 8 bytes, and frames tile the ring.
        for _ in 0..=self.sh.cap / 8 {
            if end.wrapping_sub(oldest) <= cap || oldest == self.tail {
                break;
            }
            let off = (oldest & self.sh.mask) as usize;
            // Relaxed: our own header (or an earlier publisher's, ordered by our
            // attach's Acquire load of `tail`).
            let raw = self.sh.data.word(off).load(Ordering::Relaxed);
            let f = frame::decode_broadcast(raw, off, self.sh.cap)
                .map_err(|what| self.local.corrupt(what, oldest, raw))?;
            oldest = oldest.wrapping_add(f.size() as u64);
            if self.sh.beyond_a_ring(oldest, self.tail) {
                return Err(self.local.corrupt("frame runs past tail", oldest, raw));
            }
        }
        self.oldest = oldest;
        // Release: pairs with a lossy subscriber's Acquire load of `oldest`:
        // the frame there (published before) is visible to it.
        self.sh.publisher().oldest.store(oldest, Ordering::Release);
        Ok(())
    }

    /// Room for one message of `len` bytes now: `Ok(None)` if a lossless
    /// subscriber holds it.
    #[inline(always)]
    fn claim_now(&mut self, len: usize) -> Result<Option<Claim>> {
        self.admit(len)?;
        let f = frame::frame_len(len);
        let o = (self.tail & self.sh.mask) as usize;
        let at = if o + f <= self.sh.cap { o } else { 0 };
        let need = if at == o { f } else { self.sh.cap - o + f };
        let end = self.tail.wrapping_add(need as u64);
        if self.epoch_moved() || !self.fits(end) {
            self.regate();
            if !self.fits(end) {
                self.gated(end);
                return Ok(None);
            }
        }
        if end.wrapping_sub(self.intent) as i64 > 0 && !self.announce(end)? {
            self.gated(end);
            return Ok(None);
        }
        // Release: the announcement covering these bytes (made now, or by an
        // earlier claim that then found no room) before the bytes; pairs with
        // a lossy subscriber's Acquire fence after its copy (a seqlock). A
        // compiler barrier on x86.
        crate::sync::seqlock_write_fence();
        Ok(Some(Claim {
            at: at + HEADER_LEN,
            len,
        }))
    }

    /// Raises `intent` to `end` before the bytes below it are written; false
    /// if a subscriber that attached meanwhile must be waited for. In the
    /// steady state every claim announces (each one ends past the last).
    #[inline(always)]
    fn announce(&mut self, end: u64) -> Result<bool> {
        // `oldest` first: a subscriber that sees the new `intent` sees it too.
        self.advance_oldest(end)?;
        self.intent = end;
        // Release: pairs with the lossy subscriber's Acquire load in
        // `overwritten`, so that the `oldest` it then jumps to is this one;
        // ordered before the payload by the Release fence below, and before
        // the epoch load by the barrier.
        self.sh.publisher().intent.store(end, Ordering::Release);
        failpoint::hit("after_intent");
        // SeqCst fence, or its light half on an asymmetric ring: pairs with
        // the joining subscriber's barrier between its epoch bump and its load
        // of `intent` (module docs, "Joining").
        self.local.notifier_barrier();
        if self.epoch_moved() {
            self.regate();
            if !self.fits(end) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A claim ending at `end` found no room: notes in `need` the position
    /// every lossless subscriber must reach for it, so that one whose release
    /// does not get there leaves a sleeping publisher asleep (module docs,
    /// "Waking the publisher"). Before any wait sets the waiting flag: every
    /// wait starts with a claim that failed, or (a select's, an async send's)
    /// with a look at the room, `room_ready`, which stores it too.
    #[cold]
    fn gated(&self, end: u64) {
        let need = &self.sh.publisher().need;
        let v = end.wrapping_sub(self.sh.cap as u64) | 1;
        // Relaxed, both: our own word. Stored only when it changes: a waiter
        // that spins claims again and again, and each store would take the
        // line from the subscribers polling `tail` beside it. Ordered before
        // the waiting flag by its Release store in `wait::park`, which the
        // subscriber loads with Acquire.
        if need.load(Ordering::Relaxed) != v {
            need.store(v, Ordering::Relaxed);
        }
    }

    /// Stores the header(s) of a frame claimed at `tail` (padding before it
    /// if it wrapped), and moves `tail` and `count` past it (not published).
    #[inline]
    fn write_headers(&mut self, c: Claim, len: usize) {
        let at = c.at - HEADER_LEN;
        let o = (self.tail & self.sh.mask) as usize;
        let seq = self.count as u32;
        let mut size = frame::frame_len(len);
        if at != o {
            let pad = BroadcastFrame {
                len: self.sh.cap - o - HEADER_LEN,
                padding: true,
                seq,
            };
            // Relaxed: published by the Release store of `tail`.
            self.sh.data.word(o).store(pad.encode(), Ordering::Relaxed);
            size += pad.size();
        }
        let msg = BroadcastFrame {
            len,
            padding: false,
            seq,
        };
        // Relaxed: published by the Release store of `tail`.
        self.sh.data.word(at).store(msg.encode(), Ordering::Relaxed);
        self.tail = self.tail.wrapping_add(size as u64);
        self.count = self.count.wrapping_add(1);
    }

    /// Publishes `tail` and wakes sleeping subscribers.
    #[inline]
    fn publish(&self) {
        let pl = self.sh.publisher();
        // Release: pairs with a joiner's Acquire load in `start_at`, which
        // then sees the `intent` this commit's claim raised (published with
        // `tail` below for everyone else).
        pl.count.store(self.count, Ordering::Release);
        failpoint::hit("before_commit");
        // Release: pairs with the subscribers' Acquire load of `tail`; the frames
        // below it (payloads and headers) are visible first.
        pl.tail.store(self.tail, Ordering::Release);
        failpoint::hit("after_commit_before_wake");
        self.sh.ctl.wake.notify_subscribers(&self.local);
    }

    /// The lowest lossless position without evicting anything (for `&self`).
    fn lowest_lossless(&self) -> Option<u64> {
        (0..self.sh.nslots)
            .filter_map(|s| {
                let slot = self.sh.slot(s);
                // Acquire: as in `gating_pos`.
                let state = slot.end.state.load(Ordering::Acquire);
                let inc = slot.end.incarnation.load(Ordering::Relaxed);
                let lossless = slot.mode.load(Ordering::Relaxed) == LOSSLESS;
                let pos = slot.pos.load(Ordering::Acquire);
                (state == ATTACHED
                    && lossless
                    && self.evicted[usize::from(s)] != inc
                    && !self.sh.beyond_a_ring(pos, self.tail))
                .then_some(pos)
            })
            .max_by_key(|&pos| self.tail.wrapping_sub(pos))
    }
}

impl crate::kind::EndCore for PublisherCore {
    const EXCLUSIVE_WAIT: bool = true;

    crate::kind::end_accessors!(producer: local, sh.ctl, sh.data, sh.cap);

    /// Evicts dead lossless subscribers. A publisher is never disconnected:
    /// it publishes whether or not anyone listens.
    #[cold]
    fn check_peer(&mut self) -> Result<()> {
        self.local.begin_look(&self.sh.ctl.ends.epoch)?;
        self.evict_dead()
    }

    fn len_hint(&self) -> usize {
        self.lowest_lossless()
            .map_or(0, |g| self.tail.wrapping_sub(g) as usize)
    }

    fn announce_close(&mut self) {
        self.sh
            .ctl
            .ends
            .producer
            .close(&self.sh.ctl.ends.epoch, &self.sh.ctl.wake);
    }
}

impl crate::kind::ProducerCore for PublisherCore {
    const POLLED_HEADERS: bool = false;

    #[inline(always)]
    fn claim(&mut self, len: usize) -> Result<Option<Claim>> {
        self.claim_now(len)
    }

    #[inline]
    fn commit(&mut self, c: Claim, len: usize) {
        self.write_headers(c, len);
        self.publish();
    }

    fn abort(&mut self, _c: Claim) {
        // Nothing was published; `intent` stays raised (harmless, module docs).
    }

    /// Full for the publisher: nobody to report gone; a look (rate-limited)
    /// evicts dead lossless subscribers.
    #[cold]
    fn full_or_gone(&mut self) -> Result<()> {
        self.local.check()?;
        if self.local.look_due() {
            self.check_peer()?;
        }
        Ok(())
    }

    fn room_ready(&self, len: usize) -> bool {
        let f = frame::frame_len(len);
        let o = (self.tail & self.sh.mask) as usize;
        let need = if o + f <= self.sh.cap {
            f
        } else {
            self.sh.cap - o + f
        };
        let end = self.tail.wrapping_add(need as u64);
        let ready = self
            .lowest_lossless()
            .is_none_or(|g| end.wrapping_sub(g) <= self.sh.cap as u64);
        if !ready {
            // A select or an async send looks here, not through a claim,
            // before it sets the waiting flag: `need` must be this wait's.
            self.gated(end);
        }
        ready
    }

    fn ring_if_armed(&self) {
        // Subscribers do not wait on doorbells.
    }

    /// Every message that fits now, published with one store of `tail`.
    fn send_batch<'m>(&mut self, msgs: impl Iterator<Item = &'m [u8]>) -> Result<usize> {
        let mut n = 0;
        for msg in msgs {
            let c = match self.claim_now(msg.len()) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                // Publish what was written; the next call reports the error.
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            };
            self.sh.data.write(c.at, msg);
            self.write_headers(c, msg.len());
            n += 1;
        }
        if n == 0 {
            crate::kind::ProducerCore::full_or_gone(self)?;
            return Err(Error::Full);
        }
        self.publish();
        Ok(n)
    }
}

impl Subscriber {
    /// Attaches a subscriber in slot `slot` (the caller holds that slot's
    /// liveness marker), receiving in `mode` from where `join` says.
    ///
    /// # Errors
    /// [`Error::TooManySubscribers`] (`slot` out of range),
    /// [`Error::RegionTooSmall`], [`Error::Corrupted`].
    pub fn attach(
        region: &Region,
        geometry: Geometry<Broadcast>,
        slot: u16,
        mode: Mode,
        join: Join,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Subscriber> {
        let sh = Shared::new(region, geometry)?;
        if slot >= sh.nslots {
            return Err(Error::TooManySubscribers(sh.nslots));
        }
        let lossy = mode == Mode::Lossy;
        let me = sh.slot(slot);
        let pl = sh.publisher();
        // Acquire: pairs with the Release increment of the epoch by other ends.
        let seen_epoch = sh.ctl.ends.epoch.load(Ordering::Acquire);
        // Acquire: pairs with the publisher's Release stores, so that the
        // frames below the position picked are visible.
        let (mut pos, mut base) = start_at(pl, join);
        if !pos.is_multiple_of(8) {
            return Err(Error::corrupted(
                "publisher position not 8-aligned",
                pos,
                pos,
            ));
        }
        // Relaxed: published by the Release store of the state in `attach`.
        me.pos.store(pos, Ordering::Relaxed);
        me.mode
            .store(if lossy { LOSSY } else { LOSSLESS }, Ordering::Relaxed);
        me.received.store(0, Ordering::Relaxed);
        me.lagged.store(0, Ordering::Relaxed);
        me.end.attach(&sh.ctl.ends.epoch, &sh.ctl.wake);
        let mut local = Local::new(cfg, liveness, seen_epoch, pos);
        local.read_fences(&sh.ctl.wake.fences);
        local.note(&sh.ctl.ends.producer, Endpoint::Producer(0));
        if !lossy {
            // Joining (module docs): bounded, since a position picked now is
            // overtaken only if the publisher laps the ring meanwhile.
            for _ in 0..64 {
                // The heavy barrier (or SeqCst fence): pairs with the
                // publisher's barrier in `announce`.
                let _ = local.waiter_barrier();
                // Relaxed: ordered by the barrier.
                let intent = pl.intent.load(Ordering::Relaxed);
                if !sh.beyond_a_ring(pos, intent) {
                    break;
                }
                (pos, base) = start_at(pl, join);
                // Release: pairs with the publisher's Acquire load in
                // `gating_pos` (it waits for us at this position now).
                me.pos.store(pos, Ordering::Release);
                // Release: pairs with the publisher's Acquire load in `regate`.
                // A publisher that ignored our stale pick (out of range) looks
                // again; the next round's barrier pairs with its `announce`
                // as the first did.
                sh.ctl.ends.epoch.fetch_add(1, Ordering::Release);
                // A publisher asleep on our earlier position must look again
                // (found by the loom model MC-17c: it slept for ever).
                sh.ctl.wake.notify_space(&local);
            }
        }
        Ok(crate::Consumer {
            core: SubscriberCore {
                sh,
                slot,
                lossy,
                pos,
                tail: pos,
                next_seq: base.unwrap_or(0),
                resync: if base.is_some() {
                    Resync::Report
                } else {
                    Resync::Silent
                },
                lag_pending: 0,
                received: 0,
                lagged: 0,
                stage: Vec::new(),
                released: pos,
                hand_back: !lossy,
                others_at: seen_epoch.wrapping_sub(1),
                others: Vec::new(),
                local,
            },
        })
    }

    /// This subscriber's slot.
    pub fn slot(&self) -> u16 {
        self.core.slot
    }

    /// Messages this subscriber was told it missed ([`Error::Lagged`]), in all.
    pub fn lagged(&self) -> u64 {
        self.core.lagged
    }
}

/// Reads of two words that must agree before a subscriber gives up for now
/// (two under loom, where every extra read multiplies the interleavings).
const RETRIES: usize = if crate::sync::MODEL { 2 } else { 64 };

/// Where a subscriber joining now starts, and the sequence number of the
/// message there when it can be known: for [`Join::Next`], `tail` and
/// `count` read while no claim is in flight (`intent` equal to `tail`, and
/// unchanged around the reads: a claim raises `intent` before it stores
/// `count`, both `Release`), so that a subscriber lapped before its first
/// message is told how many it missed. Otherwise (the oldest message, or a
/// publisher that kept claiming) the first header it reads sets it.
fn start_at(pl: &PublisherLine, join: Join) -> (u64, Option<u64>) {
    // Acquire (all): pair with the publisher's Release stores of `oldest`,
    // `intent`, `count` and `tail`.
    if join == Join::Next {
        for _ in 0..RETRIES {
            let before = pl.intent.load(Ordering::Acquire);
            let tail = pl.tail.load(Ordering::Acquire);
            let count = pl.count.load(Ordering::Acquire);
            let after = pl.intent.load(Ordering::Acquire);
            if before == after && after == tail {
                return (tail, Some(count));
            }
        }
        return (pl.tail.load(Ordering::Acquire), None);
    }
    (pl.oldest.load(Ordering::Acquire), None)
}

impl SubscriberCore {
    /// How far from `released` our release may hand lines back: to `pos`,
    /// but not past the `pos` of any other attached lossless subscriber, so
    /// that only the last of them to release a line takes it for writing
    /// (taking it earlier would take it from those still reading it). The
    /// other lossless slots are found again when the endpoints' epoch moves
    /// (every attach and close bumps it), a hint read `Relaxed`: a stale list
    /// costs cache traffic, never a byte (the store-back writes what the
    /// words hold, in bytes the gate keeps the publisher off until our
    /// `Release` store of `pos`).
    fn hand_back_end(&mut self) -> u64 {
        let epoch = self.sh.ctl.ends.epoch.load(Ordering::Relaxed);
        if epoch != self.others_at {
            self.others_at = epoch;
            let me = self.slot;
            let sh = &self.sh;
            self.others.clear();
            self.others.extend((0..sh.nslots).filter(|&s| {
                let slot = sh.slot(s);
                s != me
                    && slot.end.state.load(Ordering::Relaxed) == ATTACHED
                    && slot.mode.load(Ordering::Relaxed) == LOSSLESS
            }));
        }
        let mut ahead = self.pos.wrapping_sub(self.released);
        for &s in &self.others {
            // Acquire: pairs with that subscriber's Release store of `pos` in
            // its `release`: its reads of the bytes below come before our
            // store-back. Behind `released` (it still reads some of ours), we
            // hand back nothing; a hostile value far ahead is capped by our
            // own range.
            let theirs = self.sh.slot(s).pos.load(Ordering::Acquire);
            let d = theirs.wrapping_sub(self.released);
            ahead = ahead.min(if (d as i64) < 0 { 0 } else { d });
        }
        self.released.wrapping_add(ahead)
    }

    /// After a lossless release from `before` to `pos`: wakes a sleeping
    /// publisher only if this release reached the position it waits for
    /// (`need`), crossing it now. A subscriber already past it woke the
    /// publisher when it crossed (or the publisher saw it there before it
    /// slept), and one still short of it cannot make room: with N
    /// subscribers, every release woke the publisher, which found itself
    /// still gated by another and slept again, a system call and an
    /// inter-processor interrupt each time (module docs, "Waking the
    /// publisher"). A `need` without its mark (a publisher of an earlier
    /// version) wakes on every release, as before.
    #[inline]
    fn wake_publisher(&self, before: u64) {
        let wake = &self.sh.ctl.wake;
        // SeqCst fence (or its light half): as in `WakeLine::notify_space`.
        self.local.notifier_barrier();
        // Acquire: pairs with the Release store of the flag in `wait::park`,
        // so that the `need` read below is the one stored before it.
        if wake.producers_waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        // Relaxed: ordered by the flag's Acquire above.
        let need = self.sh.publisher().need.load(Ordering::Relaxed);
        if need & 1 == 1 {
            let short = |p: u64| (p.wrapping_sub(need & !1) as i64) < 0;
            let crossed = short(before) && !short(self.pos);
            if !crossed {
                return;
            }
        }
        wake.wake_producers();
    }

    /// Whether the publisher may have overwritten the bytes at `pos` (a lossy
    /// subscriber's check after reading them).
    #[inline]
    fn overwritten(&self) -> bool {
        // Acquire fence: pairs with the publisher's Release fence in `announce`:
        // if our reads saw any byte written after an announcement, this load
        // sees that announcement (a seqlock whose counter is `intent`).
        crate::sync::seqlock_read_fence();
        // Acquire: pairs with the Release store in `announce`, so that a
        // `jump` after this sees the `oldest` stored before it.
        let intent = self.sh.publisher().intent.load(Ordering::Acquire);
        self.sh.beyond_a_ring(self.pos, intent)
    }

    /// Lapped: moves to `oldest`; the next header read tells how many were
    /// missed. False if the publisher kept moving `oldest` while we looked
    /// (try again later).
    #[cold]
    fn jump(&mut self) -> Result<bool> {
        let pl = self.sh.publisher();
        // `oldest` and `tail` are two words: a pair read while the publisher
        // moves both may be from different messages; a pair within a ring of
        // each other is one we can start from.
        for _ in 0..RETRIES {
            // Acquire: pairs with the publisher's Release store of `oldest`.
            let oldest = pl.oldest.load(Ordering::Acquire);
            // Acquire: pairs with the Release store of `tail`.
            let tail = pl.tail.load(Ordering::Acquire);
            if self.sh.beyond_a_ring(oldest, tail) {
                continue;
            }
            if !oldest.is_multiple_of(8) || oldest.wrapping_sub(self.pos) as i64 <= 0 {
                return Err(self.local.corrupt("oldest out of range", self.pos, oldest));
            }
            self.pos = oldest;
            self.tail = tail;
            // Lapped before its first message, a subscriber has no place in
            // the sequence yet to count from: it starts at the oldest message
            // silently (module docs, "Joining").
            if self.resync != Resync::Silent {
                self.resync = Resync::Report;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// A header that passed its checks, at `pos`: `Err(Lagged)` if it shows
    /// (after a lap) that messages were missed, `Corrupted` if out of sequence.
    fn sequence(&mut self, f: BroadcastFrame, raw: u64) -> Result<()> {
        match self.resync {
            Resync::No => {
                if f.seq != self.next_seq as u32 {
                    return Err(self.local.corrupt("frame out of sequence", self.pos, raw));
                }
                Ok(())
            }
            how => {
                // The high bits from `count` (Relaxed: stored before the `tail`
                // we loaded with Acquire, so it counts this frame); the frame is
                // within a ring of it, far fewer than 2^32 messages.
                let count = self.sh.publisher().count.load(Ordering::Relaxed);
                let seq = count.wrapping_sub(u64::from((count as u32).wrapping_sub(f.seq)));
                let missed = seq.wrapping_sub(self.next_seq);
                self.next_seq = seq;
                self.resync = Resync::No;
                if how == Resync::Report && missed != 0 {
                    if missed as i64 <= 0 {
                        return Err(self.local.corrupt("sequence went back", self.pos, raw));
                    }
                    self.lag_pending = missed;
                    return Err(Error::Lagged(missed));
                }
                Ok(())
            }
        }
    }
}

impl crate::kind::EndCore for SubscriberCore {
    const EXCLUSIVE_WAIT: bool = false;

    crate::kind::end_accessors!(consumer: local, sh.ctl, sh.data, sh.cap);

    /// `Err(Disconnected)` if the publisher is gone and nothing is left.
    #[cold]
    fn check_peer(&mut self) -> Result<()> {
        let status = self.local.look_at_producer(&self.sh.ctl.ends, self.tail)?;
        self.judge_the_producer(status)
    }

    fn len_hint(&self) -> usize {
        // Acquire: pairs with the publisher's Release store of `tail`.
        let tail = self.sh.publisher().tail.load(Ordering::Acquire);
        (tail.wrapping_sub(self.pos) as usize).min(self.sh.cap)
    }

    fn announce_close(&mut self) {
        self.sh
            .slot(self.slot)
            .end
            .close(&self.sh.ctl.ends.epoch, &self.sh.ctl.wake);
    }
}

impl crate::kind::ConsumerCore for SubscriberCore {
    /// The next message, skipping padding; for a lossy subscriber copied into
    /// the stage and checked.
    fn peek(&mut self) -> Result<Option<Readable>> {
        self.local.check()?;
        if self.lag_pending != 0 {
            // Until the user is told (`lag_reported`): a look that only asks
            // whether a receive would return (a wait's re-check) consumes nothing.
            return Err(Error::Lagged(self.lag_pending));
        }
        // A padding, a lap and a resynchronisation at most, many times over
        // only while the publisher keeps lapping us: bounded, then "nothing now".
        for _ in 0..16 {
            if self.pos == self.tail {
                // Acquire: pairs with the publisher's Release store of `tail`.
                let tail = self.sh.publisher().tail.load(Ordering::Acquire);
                if tail == self.pos {
                    return Ok(None);
                }
                if !tail.is_multiple_of(8) {
                    return Err(self.local.corrupt("tail not 8-aligned", self.pos, tail));
                }
                self.tail = tail;
            }
            if self.sh.beyond_a_ring(self.pos, self.tail) {
                if !self.lossy {
                    return Err(self.local.corrupt("tail out of range", self.pos, self.tail));
                }
                if !self.jump()? {
                    return Ok(None);
                }
                continue;
            }
            let off = (self.pos & self.sh.mask) as usize;
            // Relaxed: below `tail`, which we loaded with Acquire (lossless: the
            // gate keeps the publisher off it; lossy: checked below).
            let raw = self.sh.data.word(off).load(Ordering::Relaxed);
            if self.lossy && self.overwritten() {
                if !self.jump()? {
                    return Ok(None);
                }
                continue;
            }
            let f = match frame::decode_broadcast(raw, off, self.sh.cap) {
                Ok(f) => f,
                Err(what) => return Err(self.local.corrupt(what, self.pos, raw)),
            };
            let next = self.pos.wrapping_add(f.size() as u64);
            if next.wrapping_sub(self.pos) > self.tail.wrapping_sub(self.pos) {
                return Err(self.local.corrupt("frame runs past tail", self.pos, raw));
            }
            self.sequence(f, raw)?;
            if f.padding {
                self.pos = next;
                continue;
            }
            let at = off + HEADER_LEN;
            if self.lossy {
                self.stage.resize(f.len, 0);
                self.sh.data.read(at, &mut self.stage);
                if self.overwritten() {
                    if !self.jump()? {
                        return Ok(None);
                    }
                    continue;
                }
            }
            return Ok(Some(Readable { at, len: f.len }));
        }
        Ok(None)
    }

    #[inline]
    fn advance(&mut self, f: Readable) {
        self.pos = f.next(self.pos);
        self.next_seq = self.next_seq.wrapping_add(1);
    }

    fn release(&mut self, messages: u64) {
        let before = self.released;
        if self.hand_back && self.pos.wrapping_sub(self.released) >= HAND_BACK_MIN {
            let end = self.hand_back_end();
            self.sh.data.hand_back(self.released, end);
        }
        self.released = self.pos;
        self.received = self.received.wrapping_add(messages);
        let slot = self.sh.slot(self.slot);
        // Relaxed: a statistic for tools, on our own line.
        slot.received.store(self.received, Ordering::Relaxed);
        // Release: pairs with the publisher's Acquire load in `gating_pos`; our
        // reads of the released frames come before it overwrites them.
        slot.pos.store(self.pos, Ordering::Release);
        if !self.lossy {
            self.wake_publisher(before);
        }
    }

    #[cold]
    fn empty_or_gone(&mut self) -> Result<()> {
        self.local.check()?;
        // Relaxed: a hint; `check_peer` reads the state again with Acquire.
        let announced = self.sh.ctl.ends.producer.state.load(Ordering::Relaxed) == CLOSED;
        if announced || self.local.look_due() || self.local.epoch_changed(&self.sh.ctl.ends.epoch) {
            self.check_peer()?;
        }
        Ok(())
    }

    fn bell_word(&self) -> &AtomicU64 {
        &self.sh.ctl.wake.bell
    }

    fn set_hand_back(&mut self, on: bool) {
        self.hand_back = on && !self.lossy;
    }

    #[inline]
    fn staged(&self) -> Option<&[u8]> {
        self.lossy.then_some(&self.stage[..])
    }

    fn lag_reported(&mut self) {
        self.lagged = self
            .lagged
            .wrapping_add(std::mem::take(&mut self.lag_pending));
        // Relaxed: a statistic for tools, on our own line.
        self.sh
            .slot(self.slot)
            .lagged
            .store(self.lagged, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InProcess;
    use crate::region::HANDED_BACK;

    fn handed_back() -> u64 {
        HANDED_BACK.with(core::cell::Cell::get)
    }

    /// With two lossless subscribers, a release hands back only the lines the
    /// other has released already: the first to release a stretch hands back
    /// nothing (the other still reads it), the last hands back all of it.
    #[test]
    fn only_the_last_lossless_subscriber_to_release_a_line_hands_it_back() {
        let g = Geometry::broadcast(4096, 2).unwrap();
        let r = Region::heap(g.region_len());
        init(&r, g, 0).unwrap();
        let sub = |slot| {
            let live = Arc::new(InProcess);
            Subscriber::attach(
                &r,
                g,
                slot,
                Mode::Lossless,
                Join::Next,
                WaitConfig::default(),
                live,
            )
        };
        let (mut a, mut b) = (sub(0).unwrap(), sub(1).unwrap());
        let mut tx = Publisher::attach(&r, g, WaitConfig::default(), Arc::new(InProcess)).unwrap();
        // 16 frames of 8 + 120 bytes: 2 KiB, 32 lines.
        for i in 0..16u8 {
            tx.send(&[i; 120]).unwrap();
        }
        let take_all = |rx: &mut Subscriber| {
            let before = handed_back();
            assert_eq!(
                rx.try_recv_batch(64, |m| assert_eq!(m.len(), 120)).unwrap(),
                16
            );
            handed_back() - before
        };
        assert_eq!(
            take_all(&mut a),
            0,
            "the first to release handed back lines the other reads"
        );
        assert_eq!(
            take_all(&mut b),
            32,
            "the last to release did not hand back every line"
        );
        // Alone again (`a` closed): a release hands back all it frees.
        drop(a);
        for i in 0..16u8 {
            tx.send(&[i; 120]).unwrap();
        }
        assert_eq!(
            take_all(&mut b),
            32,
            "alone, it did not hand back every line"
        );
    }
}
