//! The many-producer single-consumer byte ring, after Agrona's
//! `ManyToOneRingBuffer`, with recovery from producers that die mid-write.
//!
//! # Protocol
//!
//! **A producer** (in slot `s`, incarnation `i`) sending `f` bytes:
//! 1. reads `tail` = `t`; if the frame would cross the end of the area the claim
//!    also covers the padding up to the end; checks the room against `head`;
//! 2. records its *intent* `claim[s] = t | 1`, then compare-and-swaps `tail` from
//!    `t` to `t + need` (retrying with a new `t` if another producer won);
//! 3. writes the frame header with a **negative** length and `(s, i)` (for a
//!    wrapped claim: the message header at offset 0 first, then the committed
//!    padding header at `t`), then clears its intent;
//! 4. copies the payload, then stores the **positive** length with `Release`
//!    (commit), and wakes the consumer if it sleeps.
//!
//! **The consumer** reads the header at `head` with `Acquire`: 0 or a negative
//! length means "not yet", padding is skipped, a positive length is a message.
//! When it releases frames it **zeroes** their bytes, then stores `head` with
//! `Release`, so that every byte a producer will claim reads 0 until that producer
//! writes its header there.
//!
//! # A producer that dies mid-write
//! The frame at `head` may stay uncommitted forever. The consumer turns it into
//! padding, but only once its producer is *positively* dead (its liveness marker
//! released, or its slot taken by a later incarnation), never on a time-out: a
//! stopped or slow producer is never reclaimed, so a reclaimed claim is never
//! written again, and no live producer's frame is ever torn.
//! - **Header written** (negative length): the header names the producer, and
//!   its length the frame; the consumer compare-and-swaps it to padding.
//! - **No header yet** (the producer died between its CAS and its header store):
//!   the bytes from `head` read 0. The claim is bounded by the first non-zero
//!   word after `head` (the next claim's header), by `tail`, by the end of the
//!   area, and by the position of every *live* producer's intent: a live producer
//!   with an intent in the gap may own part of it (its header is not written yet),
//!   so the gap stops there. Every claim that starts inside the resulting gap
//!   belongs to a producer that is not alive (a live owner would still show its
//!   intent, since it clears the intent only after writing its header, and the
//!   consumer reads intents after `tail`, which every claim's CAS precedes). The
//!   consumer compare-and-swaps the zero at `head` to a padding header covering
//!   the gap.
//!
//! Shared fate: any producer can corrupt the ring for all. Producers that do not
//! trust each other should get one SPSC ring each.
//!
//! # Structure
//! This module is the MPSC core: the layout, [`ProducerCore`] (one claim loop
//! for single frames and batches, the intent held by a guard) and
//! [`ConsumerCore`] (peek, release, reclaim). Every form a user calls is
//! written once in [`crate::Producer`] and [`crate::Consumer`]; [`Producer`]
//! and [`Consumer`] here are those types for this kind. A claimed frame is lent
//! only through the [`WriteGuard`] (the tail CAS gives it to one producer
//! alone, and the consumer reads it only after the Release commit).

use std::sync::Arc;

use crossbeam_utils::Backoff;

use crate::ctl::{ATTACHED, Line, MpscControl, NO_CLAIM, ProducerSlot};
use crate::error::{Disconnect, Error, Result};
use crate::failpoint;
use crate::frame::{self, HEADER_LEN, MPSC_MSG, MPSC_PAD, MpscHeader};
use crate::geometry::Geometry;
use crate::kind::{Claim, ConsumerCore as _, EndCore as _, Mpsc, ProducerCore as _, Readable};
use crate::local::Local;
use crate::peer::PeerStatus;
use crate::region::{Ctl, CtlArray, Region};
use crate::shared::SLOTS_AT;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{Endpoint, Liveness, WaitConfig};

/// One of many sending sides of an MPSC ring.
pub type Producer = crate::Producer<Mpsc>;
/// The single receiving side of an MPSC ring.
pub type Consumer = crate::Consumer<Mpsc>;
/// A claimed frame (see [`crate::WriteGuard`]); dropped uncommitted, the claim
/// becomes padding.
pub type WriteGuard<'a> = crate::WriteGuard<'a, Mpsc>;
/// A received message lent in place (see [`crate::ReadGuard`]).
pub type ReadGuard<'a> = crate::ReadGuard<'a, Mpsc>;

/// Most producer slots an MPSC ring can have (a frame header names its producer
/// in 8 bits).
pub const MAX_PRODUCERS: u16 = 256;

/// Failed compare-and-swaps on `tail` before a non-blocking claim gives up.
const MAX_CLAIM_ATTEMPTS: u32 = 1 << 12;

/// Bytes the control block of a ring with `producers` slots takes.
pub const fn control_len(producers: u16) -> usize {
    crate::shared::control_len(producers)
}

/// Bytes a region needs for an MPSC ring of `capacity` bytes and `producers` slots.
pub const fn region_len(capacity: usize, producers: u16) -> usize {
    control_len(producers) + capacity
}

/// Prepares a zero-filled region as an empty MPSC ring whose positions start at
/// `start`. The data area must be all zeros (fresh memory is).
///
/// # Errors
/// [`Error::RegionTooSmall`].
///
/// # Panics
/// If `start` is not a multiple of 8.
pub fn init(region: &Region, geometry: Geometry<Mpsc>, start: u64) -> Result<()> {
    assert!(start.is_multiple_of(8), "positions are 8-aligned");
    geometry.check(region)?;
    let producers = geometry.producers();
    let ctl: Ctl<MpscControl> = Ctl::new(region);
    // Relaxed: published by the segment's Release "ready" store, or by thread spawn.
    ctl.head.pos.store(start, Ordering::Relaxed);
    ctl.head.releasing.store(start, Ordering::Relaxed);
    ctl.tail.store(start, Ordering::Relaxed);
    ctl.wake.init_fences();
    let slots: CtlArray<Line<ProducerSlot>> = CtlArray::new(region, SLOTS_AT, producers.into());
    for slot in slots.iter() {
        slot.claim.store(NO_CLAIM, Ordering::Relaxed);
    }
    // The data area must read 0 everywhere (see the module docs); fresh memory
    // does, and zeroing a large ring here would touch every page for nothing.
    Ok(())
}

/// The views of the shared memory both sides use.
type Shared = crate::shared::Shared<MpscControl, ProducerSlot>;

/// The MPSC producer core.
#[doc(hidden)]
pub struct ProducerCore {
    sh: Shared,
    slot: u16,
    incarnation: u16,
    /// Last `head` we read; the ring looks full against it before it really is.
    cached_head: u64,
    local: Local,
}

/// The MPSC consumer core.
#[doc(hidden)]
pub struct ConsumerCore {
    sh: Shared,
    /// Next frame to read.
    head: u64,
    /// Last `head` published (frames before it are zeroed and released).
    released: u64,
    /// Messages received (published with `head`).
    received: u64,
    /// Dead producers' claims turned into padding.
    reclaimed: u64,
    local: Local,
}

/// A producer's intent word while it claims: announced before each
/// compare-and-swap of `tail`, and withdrawn when the guard drops (every way out
/// of the claim loop but a claim). A successful claim keeps it until the claim's
/// header is written ([`Intent::withdraw_after_headers`]), so that a consumer
/// bounding a dead producer's gap never takes our claim for part of it (module
/// docs). The guard exists only while the intent is announced, so it carries no
/// flag (the fast path keeps it in registers).
struct Intent<'a> {
    word: &'a AtomicU64,
}

impl<'a> Intent<'a> {
    /// Announces a claim about to be made at `t`.
    #[inline(always)]
    fn announce(word: &'a AtomicU64, t: u64) -> Intent<'a> {
        // Relaxed: published by the Release compare-and-swap of `tail` that follows.
        word.store(t | 1, Ordering::Relaxed);
        Intent { word }
    }

    /// After the claim's header(s) are written.
    #[inline(always)]
    fn withdraw_after_headers(self) {
        // Release: a consumer that reads our intent as cleared (Acquire) sees our
        // header(s).
        self.word.store(NO_CLAIM, Ordering::Release);
        std::mem::forget(self);
    }
}

impl Drop for Intent<'_> {
    #[inline]
    fn drop(&mut self) {
        // Relaxed: no claim was made, so there is nothing to publish; our own word.
        self.word.store(NO_CLAIM, Ordering::Relaxed);
    }
}

/// [`claim_space`] on a producer core's own fields, borrowed one by one: the
/// intent it returns borrows only `sh`, so the caller can go on using the
/// core's other fields (a method taking `&mut self` would hold all of it).
macro_rules! claim_here {
    ($core:expr, $fit:expr) => {
        claim_space(
            &$core.sh,
            $core.slot,
            &mut $core.cached_head,
            &mut $core.local,
            $fit,
        )
    };
}

/// The one claim loop, for single frames and batches. At a `tail` of `t`,
/// `fit(offset, room)` says how many bytes to claim when `room` bytes are free
/// (0: not even the first frame fits). Returns the claimed position and length,
/// and the intent, still announced, for the caller to withdraw once the
/// headers are written; `None` when there is no room now (or, bounded, when
/// other claimers kept winning). Always inlined, so that its result, a tuple
/// with the intent guard, never goes through memory (see `Claim`).
#[inline(always)]
fn claim_space<'s>(
    sh: &'s Shared,
    slot: u16,
    cached_head: &mut u64,
    local: &mut Local,
    mut fit: impl FnMut(usize, u64) -> u64,
) -> Result<Option<(u64, u64, Intent<'s>)>> {
    let cap = sh.cap as u64;
    let word = &sh.slot(slot).claim;
    let backoff = Backoff::new();
    // Lock-free, but a hostile peer moving `tail` could keep us here: after a
    // bound, report "no room now" and let the caller wait in bounded slices.
    // (A plain counter rather than a range loop: the first attempt, the usual
    // one, then costs no loop set-up.)
    let mut attempts = 0;
    loop {
        if attempts == MAX_CLAIM_ATTEMPTS {
            return Ok(None);
        }
        attempts += 1;
        // Relaxed: `t` is only the expected value of the CAS below, which orders
        // everything that matters.
        let t = sh.ctl.tail.load(Ordering::Relaxed);
        if !t.is_multiple_of(8) {
            return Err(local.corrupt("tail not 8-aligned", t, t));
        }
        let o = (t & sh.mask) as usize;
        let mut need = fit(o, cap.saturating_sub(t.wrapping_sub(*cached_head)));
        if need == 0 {
            // Acquire: pairs with the consumer's Release store of `head`: the bytes
            // it released (and zeroed) are ours to write once we see it.
            let head = sh.ctl.head.pos.load(Ordering::Acquire);
            if t.wrapping_sub(head) > cap || !head.is_multiple_of(8) {
                // Our `t` may be laps old (we may have been preempted since loading
                // it), and a true `head` past it looks out of range: judge `head`
                // only against a `tail` read after it (Relaxed: a value to compare).
                // A stale `t` that passes the check is harmless: it only overstates
                // the room, and the CAS fails.
                if sh.ctl.tail.load(Ordering::Relaxed) != t {
                    continue;
                }
                return Err(local.corrupt("head out of range", t, head));
            }
            *cached_head = head;
            local.saw_head(head);
            need = fit(o, cap - t.wrapping_sub(head));
            if need == 0 {
                return Ok(None);
            }
        }
        // The intent, before the claim: see the module docs.
        let intent = Intent::announce(word, t);
        // Release: publishes our intent to a consumer that reads `tail` (Acquire)
        // and then the intents; the CASes on `tail` form a release sequence, so
        // that consumer sees every earlier claimer's intent too. No Acquire: we
        // read nothing an earlier claimer wrote, and what the consumer wrote in
        // the space we take (its zeroes) is ordered by our Acquire load of the
        // `head` that made room for it, now or when we cached it (the ordering
        // sweep, docs/RELIABILITY.md MC-07).
        if sh
            .ctl
            .tail
            .compare_exchange_weak(
                t,
                t.wrapping_add(need),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return Ok(Some((t, need, intent)));
        }
        backoff.spin();
    }
}

impl Producer {
    /// Attaches a producer in slot `slot` (the caller holds that slot's liveness
    /// marker, so no other live producer uses it).
    ///
    /// # Errors
    /// [`Error::TooManyProducers`] (`slot` out of range), [`Error::RegionTooSmall`].
    pub fn attach(
        region: &Region,
        geometry: Geometry<Mpsc>,
        slot: u16,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Producer> {
        let sh = Shared::new(region, geometry)?;
        if slot >= geometry.producers() {
            return Err(Error::TooManyProducers(geometry.producers()));
        }
        let me = sh.slot(slot);
        // Relaxed: our own word; an earlier holder of the slot is dead or closed.
        me.claim.store(NO_CLAIM, Ordering::Relaxed);
        // Acquire: pairs with the Release increment of the epoch by other ends.
        let seen_epoch = sh.ctl.ends.epoch.load(Ordering::Acquire);
        // Relaxed: the previous holder's claims were made before it died or closed,
        // and our taking its marker came after (system calls, full barriers). A
        // consumer that reads a stale `since` only reclaims a dead claim a look later.
        me.since
            .store(sh.ctl.tail.load(Ordering::Relaxed), Ordering::Relaxed);
        let incarnation = me.end.attach(&sh.ctl.ends.epoch, &sh.ctl.wake) as u16;
        // Acquire: pairs with the consumer's Release store of `head`.
        let cached_head = sh.ctl.head.pos.load(Ordering::Acquire);
        let mut local = Local::new(cfg, liveness, seen_epoch, cached_head);
        local.read_fences(&sh.ctl.wake.fences);
        local.note(&sh.ctl.ends.consumer, Endpoint::Consumer);
        Ok(crate::Producer {
            core: ProducerCore {
                sh,
                slot,
                incarnation,
                cached_head,
                local,
            },
            held: None,
        })
    }

    /// This producer's slot.
    pub fn slot(&self) -> u16 {
        self.core.slot
    }
}

impl ProducerCore {
    #[inline]
    fn header(&self, len: i32, kind: u8) -> u64 {
        MpscHeader {
            len,
            kind,
            slot: self.slot as u8,
            incarnation: self.incarnation,
        }
        .encode()
    }

    /// Claims room for one frame now: `Ok(None)` if the ring is full.
    #[inline(always)]
    fn claim_now(&mut self, len: usize) -> Result<Option<Claim>> {
        self.admit(len)?;
        let f = frame::frame_len(len);
        let cap = self.sh.cap;
        let fit = |o: usize, room: u64| {
            // A frame that would cross the end also claims the padding up to it.
            let pad = if o + f <= cap { 0 } else { cap - o };
            let need = (pad + f) as u64;
            if need <= room { need } else { 0 }
        };
        let Some((t, need, intent)) = claim_here!(self, fit)? else {
            return Ok(None);
        };
        failpoint::hit("after_claim");
        let sh = &self.sh;
        let o = (t & sh.mask) as usize;
        let pad = need as usize - f;
        let at = if pad > 0 { 0 } else { o };
        // Relaxed: ordered before the intent's withdrawal (Release).
        sh.data.word(at).store(
            self.header(MpscHeader::claimed_len(len), MPSC_MSG),
            Ordering::Relaxed,
        );
        if pad > 0 {
            // Release: a consumer that sees this padding sees our header at offset 0.
            sh.data.word(o).store(
                self.header((pad - HEADER_LEN) as i32, MPSC_PAD),
                Ordering::Release,
            );
        }
        intent.withdraw_after_headers();
        Ok(Some(Claim {
            at: at + HEADER_LEN,
            len,
        }))
    }
}

impl crate::kind::EndCore for ProducerCore {
    const EXCLUSIVE_WAIT: bool = false;

    crate::kind::end_accessors!(producer: local, sh.ctl, sh.data, sh.cap);

    #[cold]
    fn check_peer(&mut self) -> Result<()> {
        self.local
            .check_consumer(&self.sh.ctl.ends, self.cached_head)
    }

    fn len_hint(&self) -> usize {
        // Acquire: pairs with the consumer's Release store of `head`.
        let head = self.sh.ctl.head.pos.load(Ordering::Acquire);
        // Relaxed: a hint.
        let tail = self.sh.ctl.tail.load(Ordering::Relaxed);
        (tail.wrapping_sub(head) as usize).min(self.sh.cap)
    }

    fn announce_close(&mut self) {
        let sh = &self.sh;
        sh.slot(self.slot)
            .end
            .close(&sh.ctl.ends.epoch, &sh.ctl.wake);
        sh.ctl.wake.ring_if_armed(&self.local);
    }
}

impl crate::kind::ProducerCore for ProducerCore {
    #[inline(always)]
    fn claim(&mut self, len: usize) -> Result<Option<Claim>> {
        self.local.consumer_closed(&self.sh.ctl.ends)?;
        self.claim_now(len)
    }

    #[inline]
    fn commit(&mut self, c: Claim, len: usize) {
        debug_assert_eq!(len, c.len, "an MPSC claim commits whole");
        failpoint::hit("before_commit");
        // Release: pairs with the consumer's Acquire load of this header; the
        // payload is visible before the positive length.
        self.sh
            .data
            .word(c.at - HEADER_LEN)
            .store(self.header(c.len as i32, MPSC_MSG), Ordering::Release);
        failpoint::hit("after_commit_before_wake");
        self.sh.ctl.wake.notify_data(&self.local);
    }

    #[inline]
    fn abort(&mut self, c: Claim) {
        let pad = frame::frame_len(c.len) - HEADER_LEN;
        // Release: as in `commit`.
        self.sh
            .data
            .word(c.at - HEADER_LEN)
            .store(self.header(pad as i32, MPSC_PAD), Ordering::Release);
        self.sh.ctl.wake.notify_data(&self.local);
    }

    fn ring_if_armed(&self) {
        self.sh.ctl.wake.ring_if_armed(&self.local);
    }

    fn room_ready(&self, len: usize) -> bool {
        let sh = &self.sh;
        // Relaxed/Acquire as in `claim_space`.
        let t = sh.ctl.tail.load(Ordering::Relaxed) & !7;
        let head = sh.ctl.head.pos.load(Ordering::Acquire);
        let f = frame::frame_len(len);
        let o = (t & sh.mask) as usize;
        let pad = if o + f <= sh.cap { 0 } else { sh.cap - o };
        t.wrapping_sub(head).wrapping_add((pad + f) as u64) <= sh.cap as u64
    }

    /// At most 64 messages, with one claim (a single compare-and-swap of `tail`)
    /// and one publication (the first frame's header, stored last); a batch
    /// stops at the end of the data area.
    fn send_batch<'m>(&mut self, msgs: impl Iterator<Item = &'m [u8]>) -> Result<usize> {
        const MAX_BATCH: usize = 64;
        let mut batch: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        let mut len = 0;
        for m in msgs.take(MAX_BATCH) {
            batch[len] = m;
            len += 1;
        }
        let batch = &batch[..len];
        let Some(first) = batch.first() else {
            return Ok(0);
        };
        self.local.consumer_closed(&self.sh.ctl.ends)?;
        self.admit(first.len())?;
        let (cap, max_payload) = (self.sh.cap, self.max_payload());
        let mut n = 0;
        // The longest prefix that fits before the end of the area (never wrapping).
        let fit = |o: usize, room: u64| {
            let room = room.min((cap - o) as u64);
            let (mut count, mut total) = (0, 0u64);
            for m in batch {
                let f = frame::frame_len(m.len()) as u64;
                if m.len() > max_payload || total + f > room {
                    break;
                }
                count += 1;
                total += f;
            }
            n = count;
            total
        };
        let Some((t, total, intent)) = claim_here!(self, fit)? else {
            // The first message must wrap (or the ring is full): send it alone.
            return match self.claim(first.len())? {
                Some(c) => {
                    self.sh.data.write_payload(c.at, first);
                    failpoint::hit("mid_payload");
                    crate::kind::ProducerCore::commit(self, c, first.len());
                    Ok(1)
                }
                None => {
                    crate::kind::ProducerCore::full_or_gone(self)?;
                    Err(Error::Full)
                }
            };
        };
        failpoint::hit("after_claim");
        let sh = &self.sh;
        let o = (t & sh.mask) as usize;
        // Every frame's header, negative, before any payload: the claims' owner is
        // then known for each, so that if we die mid-batch the consumer reclaims
        // frame by frame and never meets payload bytes where it looks for a
        // header (a claim without a header must read 0 up to the next one). Then
        // the intent can go.
        let mut at = o;
        for m in &batch[..n] {
            // Relaxed: ordered before the intent's withdrawal (Release).
            sh.data.word(at).store(
                self.header(MpscHeader::claimed_len(m.len()), MPSC_MSG),
                Ordering::Relaxed,
            );
            at += frame::frame_len(m.len());
        }
        debug_assert_eq!(at - o, total as usize);
        intent.withdraw_after_headers();
        let mut at = o;
        for (i, m) in batch[..n].iter().enumerate() {
            // The consumer polls the first frame's header line (see
            // `Data::write_payload`); the later frames are copied front to back.
            if i == 0 {
                sh.data.write_payload(at + HEADER_LEN, m);
            } else {
                sh.data.write(at + HEADER_LEN, m);
            }
            at += frame::frame_len(m.len());
        }
        failpoint::hit("mid_payload");
        // The later frames' positive lengths. Relaxed: published by the first
        // frame's Release header store below (a consumer reads them only after it).
        let mut at = o + frame::frame_len(first.len());
        for m in &batch[1..n] {
            sh.data
                .word(at)
                .store(self.header(m.len() as i32, MPSC_MSG), Ordering::Relaxed);
            at += frame::frame_len(m.len());
        }
        failpoint::hit("before_commit");
        // Release: pairs with the consumer's Acquire load of this header; every frame
        // of the batch (payloads and headers) is visible before it.
        sh.data
            .word(o)
            .store(self.header(first.len() as i32, MPSC_MSG), Ordering::Release);
        failpoint::hit("after_commit_before_wake");
        sh.ctl.wake.notify_data(&self.local);
        Ok(n)
    }
}

impl Consumer {
    /// Attaches the consumer (the caller holds its liveness marker).
    ///
    /// # Errors
    /// [`Error::RegionTooSmall`], [`Error::Corrupted`].
    pub fn attach(
        region: &Region,
        geometry: Geometry<Mpsc>,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Consumer> {
        let sh = Shared::new(region, geometry)?;
        // Acquire: pairs with an earlier consumer's Release store of `head`.
        let head = sh.ctl.head.pos.load(Ordering::Acquire);
        if !head.is_multiple_of(8) {
            return Err(Error::corrupted("head", head, head));
        }
        // Acquire: pairs with the Release increment of the epoch by other ends.
        let seen_epoch = sh.ctl.ends.epoch.load(Ordering::Acquire);
        sh.ctl
            .ends
            .consumer
            .attach(&sh.ctl.ends.epoch, &sh.ctl.wake);
        // Relaxed: a statistic, on the consumer's own line.
        let received = sh.ctl.head.received.load(Ordering::Relaxed);
        // Messages received, not `head`: reclaiming a dead claim also moves `head`,
        // and a claim proves no producer attached (a hostile peer can fake one).
        let mut local = Local::new(cfg, liveness, seen_epoch, received);
        local.read_fences(&sh.ctl.wake.fences);
        for s in 0..sh.nslots {
            local.note(&sh.slot(s).end, Endpoint::Producer(s));
        }
        let mut core = ConsumerCore {
            sh,
            head,
            released: head,
            received,
            reclaimed: 0,
            local,
        };
        if let Some(to) = core.unfinished_release() {
            core.head = to;
            core.release(0);
        }
        Ok(crate::Consumer { core })
    }

    /// How many times producers have attached to this ring.
    pub fn producer_attachments(&self) -> u32 {
        self.core.producer_attachments()
    }

    /// How many dead producers' claims this consumer turned into padding.
    pub fn reclaimed(&self) -> u64 {
        self.core.reclaimed
    }
}

impl ConsumerCore {
    /// The position a consumer that died while zeroing its last release was
    /// moving `head` to, if it is one: 8-aligned, past `head` by at most the
    /// ring, and not past `tail` (anything else, a value from an older
    /// layout or a damaged one, is no note).
    fn unfinished_release(&self) -> Option<u64> {
        // Relaxed: stored before the earlier consumer's zeroes, and it is gone.
        let to = self.sh.ctl.head.releasing.load(Ordering::Relaxed);
        // Relaxed: a bound for the check; nothing is read through it (the
        // frames are read by their headers' Acquire loads, as always).
        let tail = self.sh.ctl.tail.load(Ordering::Relaxed);
        let ahead = to.wrapping_sub(self.head);
        (ahead != 0
            && to.is_multiple_of(8)
            && ahead <= self.sh.cap as u64
            && tail.wrapping_sub(to) <= self.sh.cap as u64)
            .then_some(to)
    }

    fn producer_attachments(&self) -> u32 {
        self.sh
            .slots
            .iter()
            // Relaxed: a count for a decision the next look revisits.
            .map(|s| s.end.incarnation.load(Ordering::Relaxed))
            .fold(0, u32::wrapping_add)
    }

    /// Whether producer `s` of frames stamped with incarnation `inc` may still
    /// write (`inc`: the claim at `head` is stamped so).
    fn producer_alive(&self, s: u16, inc: Option<u16>) -> bool {
        let slot = self.sh.slot(s);
        let end = &slot.end;
        if let Some(inc) = inc {
            // Acquire: pairs with the Release stores in `EndState::attach`.
            if end.incarnation.load(Ordering::Acquire) as u16 != inc {
                // The slot has been taken again: that earlier holder's marker was free.
                return false;
            }
            // The same stamp, yet the claim lies before where the current holder
            // started: an earlier holder's, 65,536 attachments ago (Relaxed: a
            // stale value only defers the reclamation to the next look).
            let since = slot.since.load(Ordering::Relaxed);
            if (since.wrapping_sub(self.head) as i64) > 0 {
                return false;
            }
        }
        // Acquire: as above.
        end.state.load(Ordering::Acquire) == ATTACHED
            && self.local.liveness.is_alive(Endpoint::Producer(s))
    }

    /// Turns dead producers' claims at `head` into padding; returns whether it
    /// reclaimed anything. See the module docs for why this never tears a live
    /// producer's frame.
    #[cold]
    fn reclaim_dead(&mut self) -> Result<bool> {
        let sh = &self.sh;
        let off = (self.head & sh.mask) as usize;
        // Acquire: pairs with the producers' header stores.
        let raw = sh.data.word(off).load(Ordering::Acquire);
        let h = match frame::decode_mpsc(raw, off, sh.cap, sh.nslots) {
            Ok(h) => h,
            Err(what) => return Err(self.local.corrupt(what, self.head, raw)),
        };
        let pad = match h {
            Some(h) if h.len < 0 => {
                if self.producer_alive(h.slot.into(), Some(h.incarnation)) {
                    return Ok(false);
                }
                h.size() - HEADER_LEN
            }
            Some(_) => return Ok(false),
            None => {
                // Acquire: pairs with the claimers' CAS, which follows their intents.
                let tail = sh.ctl.tail.load(Ordering::Acquire);
                let claimed = tail.wrapping_sub(self.head);
                if claimed == 0 {
                    return Ok(false);
                }
                if claimed > sh.cap as u64 || !claimed.is_multiple_of(8) {
                    return Err(self.local.corrupt("tail out of range", self.head, tail));
                }
                let mut limit = claimed.min((sh.cap - off) as u64);
                for s in 0..sh.nslots {
                    // Acquire: pairs with the Release withdrawal of the intent.
                    let intent = sh.slot(s).claim.load(Ordering::Acquire);
                    if intent == NO_CLAIM {
                        continue;
                    }
                    let d = (intent & !7).wrapping_sub(self.head);
                    if d < limit && self.producer_alive(s, None) {
                        limit = d;
                    }
                }
                // The claim at `head` may have got its header since we read it
                // as 0: its producer then withdrew its intent and is copying
                // its payload, which the gap walk below must never read (a
                // data race; ThreadSanitizer found it). Relaxed: an intent read
                // as withdrawn (Acquire above) pairs with the withdrawal's
                // Release, which follows the header. Changed: look next round.
                if sh.data.word(off).load(Ordering::Relaxed) != raw {
                    return Ok(false);
                }
                let mut gap = HEADER_LEN as u64;
                while gap < limit {
                    // Acquire: a non-zero word is the next claim's header.
                    if sh.data.word(off + gap as usize).load(Ordering::Acquire) != 0 {
                        break;
                    }
                    gap += 8;
                }
                if limit == 0 || gap > limit {
                    return Ok(false);
                }
                gap as usize - HEADER_LEN
            }
        };
        let padding = MpscHeader {
            len: pad as i32,
            kind: MPSC_PAD,
            slot: 0,
            incarnation: 0,
        }
        .encode();
        // A CAS, to replace exactly what we judged: a header that changed meanwhile
        // is looked at again on the next round. Its atomicity is what matters; the
        // orderings are stronger than needed (we alone read the padding we write; the
        // dead producer's writes are ordered by its death), kept on this cold path.
        let done = sh
            .data
            .word(off)
            .compare_exchange(raw, padding, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if done {
            self.reclaimed += 1;
        }
        Ok(done)
    }
}

impl crate::kind::EndCore for ConsumerCore {
    const EXCLUSIVE_WAIT: bool = true;

    crate::kind::end_accessors!(consumer: local, sh.ctl, sh.data, sh.cap);

    /// Reclaims dead claims, then `Err(Disconnected)` if every producer that
    /// attached is gone and nothing is left to receive.
    #[cold]
    fn check_peer(&mut self) -> Result<()> {
        self.local.begin_look(&self.sh.ctl.ends.epoch)?;
        // Bounded: each reclamation moves `head` on by at least 8 bytes, so a lap's
        // worth is all an honest ring can need; a peer that keeps rewriting claims
        // gets one lap per call (found with the adversary shim).
        for _ in 0..=self.sh.cap / 8 {
            if !self.reclaim_dead()? {
                break;
            }
            if self.peek()?.is_some() {
                return Ok(());
            }
        }
        self.local.peer_gone = false;
        let mut gone = None;
        for s in 0..self.sh.nslots {
            match self
                .local
                .status_of(&self.sh.slot(s).end, Endpoint::Producer(s), false)?
            {
                PeerStatus::Alive => return Ok(()),
                PeerStatus::Unattached => {}
                PeerStatus::Gone(why) => {
                    gone = Some(match (gone, why) {
                        (Some(Disconnect::Died), _) | (_, Disconnect::Died) => Disconnect::Died,
                        _ => Disconnect::Closed,
                    })
                }
            }
        }
        // Every word says "never attached", yet messages came since we attached:
        // the words were reset (damage, see `peer_status`), and only the markers
        // tell whether a producer is still there.
        if gone.is_none() && self.local.moved(self.received) {
            let live = &self.local.liveness;
            if (0..self.sh.nslots).any(|s| live.is_alive(Endpoint::Producer(s))) {
                return Ok(());
            }
            gone = Some(Disconnect::Died);
        }
        let Some(why) = gone else { return Ok(()) };
        // The shared counts are hints too: a producer this end saw attached, or
        // the ring's having moved, is an attachment whatever the counters say.
        let attachments = self
            .producer_attachments()
            .max(self.local.seen_producers())
            .max(u32::from(self.local.moved(self.received)));
        if attachments < self.local.expected_producers() {
            return Ok(());
        }
        self.local.peer_gone = true;
        if self.peek()?.is_some() {
            return Ok(());
        }
        // Acquire: pairs with the producers' CAS on `tail`.
        let tail = self.sh.ctl.tail.load(Ordering::Acquire);
        if tail != self.head {
            // Claims remain that no live producer will finish and that could not be
            // reclaimed yet (their gap is still being bounded): look again later.
            return Ok(());
        }
        Err(self.local.disconnected(why))
    }

    fn len_hint(&self) -> usize {
        // Acquire: pairs with the producers' CAS on `tail`.
        let tail = self.sh.ctl.tail.load(Ordering::Acquire);
        (tail.wrapping_sub(self.head) as usize).min(self.sh.cap)
    }

    fn announce_close(&mut self) {
        self.sh
            .ctl
            .ends
            .consumer
            .close(&self.sh.ctl.ends.epoch, &self.sh.ctl.wake);
    }
}

impl crate::kind::ConsumerCore for ConsumerCore {
    /// The next committed message, skipping padding (released with it later).
    #[inline(always)]
    fn peek(&mut self) -> Result<Option<Readable>> {
        self.local.check()?;
        // Every step advances at least 8 bytes, and a lap is `cap` bytes.
        for _ in 0..=self.sh.cap / 8 {
            if self.head.wrapping_sub(self.released) >= (self.sh.cap / 2) as u64 {
                // Consumed frames are zeroed only when released; a batch (or a run of
                // padding) that went on past half the ring would come back round to
                // them and read them again (found by the throughput benchmark).
                // Everything before `head` is consumed, so release it now.
                self.release(0);
            }
            let off = (self.head & self.sh.mask) as usize;
            // Acquire: pairs with the producer's Release commit (or padding) store.
            let raw = self.sh.data.word(off).load(Ordering::Acquire);
            let h = match frame::decode_mpsc(raw, off, self.sh.cap, self.sh.nslots) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(what) => return Err(self.local.corrupt(what, self.head, raw)),
            };
            if h.len < 0 {
                return Ok(None);
            }
            let next = self.head.wrapping_add(h.size() as u64);
            if h.kind == MPSC_PAD {
                self.head = next;
                continue;
            }
            return Ok(Some(Readable {
                at: off + HEADER_LEN,
                len: h.len as usize,
            }));
        }
        Err(self.local.corrupt("a lap of padding", self.head, 0))
    }

    #[inline]
    fn advance(&mut self, f: Readable) {
        self.head = f.next(self.head);
    }

    /// Zeroes everything consumed since the last release, then publishes `head`.
    /// The new `head` is noted in `releasing` first: a consumer killed while
    /// zeroing leaves released frames with a zeroed prefix, whose first
    /// non-zero word may be in the middle of one, and the next consumer
    /// finishes from the note instead of reading from the old `head`.
    #[inline]
    fn release(&mut self, messages: u64) {
        self.received = self.received.wrapping_add(messages);
        let sh = &self.sh;
        // Relaxed: a statistic for tools, on our own line.
        sh.ctl.head.received.store(self.received, Ordering::Relaxed);
        let mut pos = self.released;
        if pos != self.head {
            // Relaxed: read by the next consumer, after this one is gone.
            sh.ctl.head.releasing.store(self.head, Ordering::Relaxed);
            // Release fence: the note before the zeroes that follow, so that
            // a consumer that sees any of them sees it (and the compiler
            // keeps the order for a kill between them).
            crate::sync::fence(Ordering::Release);
        }
        while pos != self.head {
            let off = (pos & sh.mask) as usize;
            let run = (self.head.wrapping_sub(pos) as usize).min(sh.cap - off);
            // In two halves only where a test can crash between them
            // (`mid_release`); one call otherwise.
            let half = if failpoint::ENABLED {
                (run / 2) & !7
            } else {
                run
            };
            sh.data.zero(off, half);
            failpoint::hit("mid_release");
            if half < run {
                sh.data.zero(off + half, run - half);
            }
            pos = pos.wrapping_add(run as u64);
        }
        // Release: pairs with the producers' Acquire load of `head`; the zeroes and
        // our reads of the released frames come before any reuse.
        sh.ctl.head.pos.store(self.head, Ordering::Release);
        self.released = self.head;
        sh.ctl.wake.notify_space(&self.local);
    }

    #[cold]
    fn empty_or_gone(&mut self) -> Result<()> {
        self.local.check()?;
        if self.local.look_due() || self.local.epoch_changed(&self.sh.ctl.ends.epoch) {
            self.check_peer()?;
        }
        Ok(())
    }

    fn bell_word(&self) -> &crate::sync::AtomicU64 {
        &self.sh.ctl.wake.bell
    }
}
