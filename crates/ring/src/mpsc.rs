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
//! # Safety
//! This module lends frames as slices: a claimed frame only through the
//! [`WriteGuard`] holding `&mut Producer` (the tail CAS gives it to one producer
//! alone, and the consumer reads it only after the Release commit); a committed
//! frame only through the [`ReadGuard`] (or the batch callback) holding
//! `&mut Consumer`, until its space is released.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use crate::ctl::{ATTACHED, CLOSED, Line, MpscControl, NO_CLAIM, ProducerSlot};
use crate::error::{Corruption, Disconnect, Error, Result};
use crate::failpoint;
use crate::frame::{self, HEADER_LEN, MPSC_MSG, MPSC_PAD, MpscHeader};
use crate::peer::{CheckClock, PeerStatus, peer_status};
use crate::region::{Ctl, CtlArray, Data, LINE, Region};
use crate::spsc::check_capacity;
use crate::sync::{AtomicU32, FutexWord, Ordering};
use crate::wait::{self, Endpoint, Liveness, Side, WaitConfig};

/// Most producer slots an MPSC ring can have (a frame header names its producer
/// in 8 bits).
pub const MAX_PRODUCERS: u16 = 256;

/// Failed compare-and-swaps on `tail` before a non-blocking claim gives up.
const MAX_CLAIM_ATTEMPTS: u32 = 1 << 12;

/// Bytes the control block of a ring with `producers` slots takes.
pub const fn control_len(producers: u16) -> usize {
    512 + producers as usize * LINE
}

/// Bytes a region needs for an MPSC ring of `capacity` bytes and `producers` slots.
pub const fn region_len(capacity: usize, producers: u16) -> usize {
    control_len(producers) + capacity
}

fn check_region(region: &Region, capacity: u64, producers: u16) -> Result<usize> {
    let cap = check_capacity(capacity)?;
    if producers == 0 || producers > MAX_PRODUCERS {
        return Err(Error::TooManyProducers(producers));
    }
    let needed = region_len(cap, producers);
    if region.len() < needed {
        return Err(Error::RegionTooSmall {
            needed: needed as u64,
            len: region.len() as u64,
        });
    }
    Ok(cap)
}

/// Prepares a zero-filled region as an empty MPSC ring whose positions start at
/// `start`. The data area must be all zeros (fresh memory is).
///
/// # Errors
/// [`Error::InvalidCapacity`], [`Error::TooManyProducers`] (0 or more than
/// [`MAX_PRODUCERS`]), [`Error::RegionTooSmall`].
///
/// # Panics
/// If `start` is not a multiple of 8.
pub fn init(region: &Region, capacity: u64, producers: u16, start: u64) -> Result<()> {
    assert!(start.is_multiple_of(8), "positions are 8-aligned");
    check_region(region, capacity, producers)?;
    let ctl: Ctl<MpscControl> = Ctl::new(region);
    // Relaxed: published by the segment's Release "ready" store, or by thread spawn.
    ctl.head.pos.store(start, Ordering::Relaxed);
    ctl.tail.store(start, Ordering::Relaxed);
    let slots: CtlArray<Line<ProducerSlot>> = CtlArray::new(region, 512, producers.into());
    for slot in slots.iter() {
        slot.claim.store(NO_CLAIM, Ordering::Relaxed);
    }
    // The data area must read 0 everywhere (see the module docs); fresh memory
    // does, and zeroing a large ring here would touch every page for nothing.
    Ok(())
}

struct Shared {
    ctl: Ctl<MpscControl>,
    slots: CtlArray<Line<ProducerSlot>>,
    data: Data,
    cap: usize,
    mask: u64,
    nslots: u16,
}

impl Shared {
    fn new(region: &Region, capacity: u64, producers: u16) -> Result<Shared> {
        let cap = check_region(region, capacity, producers)?;
        Ok(Shared {
            ctl: Ctl::new(region),
            slots: CtlArray::new(region, 512, producers.into()),
            data: region.data(control_len(producers), cap),
            cap,
            mask: cap as u64 - 1,
            nslots: producers,
        })
    }

    fn slot(&self, s: u16) -> &ProducerSlot {
        &self.slots[usize::from(s)]
    }
}

/// One of many sending sides of an MPSC ring.
pub struct Producer {
    sh: Shared,
    slot: u16,
    incarnation: u16,
    cached_head: u64,
    max_payload: usize,
    cfg: WaitConfig,
    liveness: Arc<dyn Liveness>,
    seen_epoch: u32,
    clock: CheckClock,
    poisoned: Option<Corruption>,
    closed: bool,
}

impl core::fmt::Debug for Producer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("mpsc::Producer")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// A claimed frame: where its message header is, how long the payload is.
#[derive(Clone, Copy)]
struct Claim {
    at: usize,
    len: usize,
}

impl Producer {
    /// Attaches a producer in slot `slot` (the caller holds that slot's liveness
    /// marker, so no other live producer uses it).
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`], [`Error::TooManyProducers`] (bad slot count or
    /// `slot` out of range), [`Error::RegionTooSmall`].
    pub fn attach(
        region: &Region,
        capacity: u64,
        producers: u16,
        slot: u16,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Producer> {
        let sh = Shared::new(region, capacity, producers)?;
        if slot >= producers {
            return Err(Error::TooManyProducers(producers));
        }
        let me = sh.slot(slot);
        me.claim.store(NO_CLAIM, Ordering::Relaxed);
        let seen_epoch = sh.ctl.ends.epoch.load(Ordering::Acquire);
        let incarnation = me.end.attach(&sh.ctl.ends.epoch, &sh.ctl.wake) as u16;
        // Acquire: pairs with the consumer's Release store of `head`.
        let cached_head = sh.ctl.head.pos.load(Ordering::Acquire);
        Ok(Producer {
            max_payload: frame::max_payload(sh.cap),
            sh,
            slot,
            incarnation,
            cached_head,
            cfg,
            liveness,
            seen_epoch,
            clock: CheckClock::starting(cfg.slice),
            poisoned: None,
            closed: false,
        })
    }

    /// This producer's slot.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The largest message this ring takes.
    pub fn max_message_len(&self) -> usize {
        self.max_payload
    }

    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.sh.cap
    }

    /// The wait configuration.
    pub fn wait_config(&self) -> WaitConfig {
        self.cfg
    }

    /// Changes the wait configuration.
    pub fn set_wait_config(&mut self, cfg: WaitConfig) {
        self.cfg = cfg;
    }

    /// Claims room for a message of `len` bytes without waiting. Write the payload
    /// into the guard, then [`WriteGuard::commit`]; a guard dropped uncommitted
    /// turns its claim into padding.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Full`], [`Error::Disconnected`],
    /// [`Error::Corrupted`].
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_>> {
        let c = self.claim_or_full(len)?;
        Ok(WriteGuard::new(self, c))
    }

    /// Claims room for `len` bytes, waiting as the wait strategy says.
    ///
    /// # Errors
    /// As [`Producer::try_reserve`], without `Full`.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_>> {
        let c = self.claim_blocking(len, None)?;
        Ok(WriteGuard::new(self, c))
    }

    /// Claims room for `len` bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Producer::reserve`], plus [`Error::Timeout`].
    #[inline]
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_>> {
        let c = self.claim_blocking(len, Some(Instant::now() + timeout))?;
        Ok(WriteGuard::new(self, c))
    }

    /// Sends a copy of `msg` without waiting.
    ///
    /// # Errors
    /// As [`Producer::try_reserve`].
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        let c = self.claim_or_full(msg.len())?;
        self.write_and_commit(c, msg);
        Ok(())
    }

    /// Sends a copy of `msg`, waiting for room as the wait strategy says.
    ///
    /// # Errors
    /// As [`Producer::reserve`].
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        let c = self.claim_blocking(msg.len(), None)?;
        self.write_and_commit(c, msg);
        Ok(())
    }

    /// Sends a copy of `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Producer::reserve_timeout`].
    #[inline]
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        let c = self.claim_blocking(msg.len(), Some(Instant::now() + timeout))?;
        self.write_and_commit(c, msg);
        Ok(())
    }

    /// Drops this handle without marking the endpoint closed: for a process that
    /// inherited the handle across `fork` but is not the one using it, so that its
    /// copy going away does not look, to the peer, like the real endpoint closing.
    pub fn detach(mut self) {
        self.closed = true;
    }

    /// Sends as many of `msgs` as fit now (at most 64 per call), in order, with one
    /// claim (a single compare-and-swap of `tail`) and one publication (the first
    /// frame's header, stored last). Returns how many were sent; a batch stops at
    /// the end of the data area, so a caller sending many messages calls it again.
    /// A producer that dies inside the call loses the batch (its claims are
    /// reclaimed), except in the last few stores before the publication, where
    /// the later, complete messages may still be delivered without the first.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the first message can never fit;
    /// [`Error::Full`] if not even the first fits now; [`Error::Disconnected`],
    /// [`Error::Corrupted`].
    pub fn try_send_batch<'m, I>(&mut self, msgs: I) -> Result<usize>
    where
        I: IntoIterator<Item = &'m [u8]>,
    {
        const MAX_BATCH: usize = 64;
        let mut batch: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        let mut len = 0;
        for m in msgs.into_iter().take(MAX_BATCH) {
            batch[len] = m;
            len += 1;
        }
        let batch = &batch[..len];
        let Some(first) = batch.first() else {
            return Ok(0);
        };
        self.check_consumer_closed()?;
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        if first.len() > self.max_payload {
            return Err(Error::MessageTooLarge {
                len: first.len(),
                max: self.max_payload,
            });
        }
        let Some((t, n, total)) = self.claim_run(batch)? else {
            // The first message must wrap (or the ring is full): send it alone.
            return self.try_send(first).map(|()| 1);
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
            // Relaxed: ordered before the intent's clearing below (Release).
            sh.data.word(at).store(
                self.header(MpscHeader::claimed_len(m.len()), MPSC_MSG),
                Ordering::Relaxed,
            );
            at += frame::frame_len(m.len());
        }
        debug_assert_eq!(at - o, total as usize);
        // Release: a consumer that reads our intent as cleared sees our headers.
        sh.slot(self.slot).claim.store(NO_CLAIM, Ordering::Release);
        let mut at = o;
        for m in &batch[..n] {
            sh.data.write(at + HEADER_LEN, m);
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
        sh.ctl.wake.notify_data();
        Ok(n)
    }

    /// Claims one run of frames for a prefix of `batch` that fits before the end
    /// of the area: `Some((position, count, bytes))`, or `None` if not even the
    /// first fits without wrapping or the ring is full.
    fn claim_run(&mut self, batch: &[&[u8]]) -> Result<Option<(u64, usize, u64)>> {
        let sh = &self.sh;
        let cap = sh.cap as u64;
        let me = sh.slot(self.slot);
        let backoff = Backoff::new();
        // After a failed CAS our intent still names the old `tail`: every way out
        // but a successful claim withdraws it (Relaxed: our own word, as in
        // `claim_now`), or a consumer would keep bounding dead gaps by it.
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            // Relaxed: only the expected value of the CAS below.
            let t = sh.ctl.tail.load(Ordering::Relaxed);
            if !t.is_multiple_of(8) {
                let c = Corruption {
                    what: "tail not 8-aligned",
                    position: t,
                    value: t,
                };
                self.poisoned = Some(c);
                me.claim.store(NO_CLAIM, Ordering::Relaxed);
                return Err(Error::Corrupted(c));
            }
            let to_end = cap - (t & sh.mask);
            let first = frame::frame_len(batch[0].len()) as u64;
            if t.wrapping_sub(self.cached_head).wrapping_add(first) > cap {
                // Acquire: as in `claim_now`.
                let head = sh.ctl.head.pos.load(Ordering::Acquire);
                if t.wrapping_sub(head) > cap || !head.is_multiple_of(8) {
                    // Relaxed: as in `claim_now`, a `tail` read after `head`.
                    if sh.ctl.tail.load(Ordering::Relaxed) != t {
                        continue;
                    }
                    let c = Corruption {
                        what: "head out of range",
                        position: t,
                        value: head,
                    };
                    self.poisoned = Some(c);
                    me.claim.store(NO_CLAIM, Ordering::Relaxed);
                    return Err(Error::Corrupted(c));
                }
                self.cached_head = head;
            }
            let room = (cap - t.wrapping_sub(self.cached_head)).min(to_end);
            let (mut n, mut total) = (0, 0u64);
            for m in batch {
                let f = frame::frame_len(m.len()) as u64;
                if m.len() > self.max_payload || total + f > room {
                    break;
                }
                n += 1;
                total += f;
            }
            if n == 0 {
                me.claim.store(NO_CLAIM, Ordering::Relaxed);
                return Ok(None);
            }
            // The intent, before the claim (Relaxed: published by the CAS's Release).
            me.claim.store(t | 1, Ordering::Relaxed);
            // Release: as in `claim_now`.
            if sh
                .ctl
                .tail
                .compare_exchange_weak(
                    t,
                    t.wrapping_add(total),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Ok(Some((t, n, total)));
            }
            backoff.spin();
        }
        me.claim.store(NO_CLAIM, Ordering::Relaxed);
        Ok(None)
    }

    /// Marks the producer closed and wakes the consumer. Dropping does it too.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let sh = &self.sh;
            sh.slot(self.slot)
                .end
                .close(&sh.ctl.ends.epoch, &sh.ctl.wake);
        }
    }

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

    /// Claims room now: `Ok(None)` if the ring is full.
    #[inline]
    fn claim_now(&mut self, len: usize) -> Result<Option<Claim>> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        if len > self.max_payload {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_payload,
            });
        }
        let f = frame::frame_len(len);
        let sh = &self.sh;
        let cap = sh.cap as u64;
        let me = sh.slot(self.slot);
        let backoff = Backoff::new();
        let mut attempts = 0u32;
        let (t, pad) = loop {
            attempts += 1;
            if attempts > MAX_CLAIM_ATTEMPTS {
                // Lock-free, but a hostile peer moving `tail` could keep us here:
                // report "no room now" and let the caller wait in bounded slices.
                me.claim.store(NO_CLAIM, Ordering::Relaxed);
                return Ok(None);
            }
            // Relaxed: `t` is only the expected value of the CAS below, which
            // orders everything that matters.
            let t = sh.ctl.tail.load(Ordering::Relaxed);
            if !t.is_multiple_of(8) {
                let c = Corruption {
                    what: "tail not 8-aligned",
                    position: t,
                    value: t,
                };
                self.poisoned = Some(c);
                me.claim.store(NO_CLAIM, Ordering::Relaxed);
                return Err(Error::Corrupted(c));
            }
            let o = (t & sh.mask) as usize;
            let pad = if o + f <= sh.cap { 0 } else { sh.cap - o };
            let need = (pad + f) as u64;
            if t.wrapping_sub(self.cached_head).wrapping_add(need) > cap {
                // Acquire: pairs with the consumer's Release store of `head`: the bytes
                // it released (and zeroed) are ours to write once we see it.
                let head = sh.ctl.head.pos.load(Ordering::Acquire);
                if t.wrapping_sub(head) > cap || !head.is_multiple_of(8) {
                    // Our `t` may be laps old (we may have been preempted since
                    // loading it), and a true `head` past it looks out of range:
                    // judge `head` only against a `tail` read after it (Relaxed: a
                    // value to compare). A stale `t` that passes the check is
                    // harmless: it only overstates the room, and the CAS fails.
                    if sh.ctl.tail.load(Ordering::Relaxed) != t {
                        continue;
                    }
                    let c = Corruption {
                        what: "head out of range",
                        position: t,
                        value: head,
                    };
                    self.poisoned = Some(c);
                    me.claim.store(NO_CLAIM, Ordering::Relaxed);
                    return Err(Error::Corrupted(c));
                }
                self.cached_head = head;
                if t.wrapping_sub(head) + need > cap {
                    me.claim.store(NO_CLAIM, Ordering::Relaxed);
                    return Ok(None);
                }
            }
            // The intent, before the claim: see the module docs.
            me.claim.store(t | 1, Ordering::Relaxed);
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
                break (t, pad);
            }
            backoff.spin();
        };
        failpoint::hit("after_claim");
        let o = (t & sh.mask) as usize;
        let at = if pad > 0 { 0 } else { o };
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
        // Release: a consumer that reads our intent as cleared sees our header(s).
        me.claim.store(NO_CLAIM, Ordering::Release);
        Ok(Some(Claim { at, len }))
    }

    #[inline]
    fn claim_or_full(&mut self, len: usize) -> Result<Claim> {
        self.check_consumer_closed()?;
        match self.claim_now(len)? {
            Some(c) => Ok(c),
            None => {
                self.check_consumer_closed()?;
                if self.clock.due(self.cfg.slice) {
                    self.check_consumer()?;
                }
                Err(Error::Full)
            }
        }
    }

    #[inline]
    fn claim_blocking(&mut self, len: usize, deadline: Option<Instant>) -> Result<Claim> {
        self.check_consumer_closed()?;
        if let Some(c) = self.claim_now(len)? {
            return Ok(c);
        }
        let cfg = self.cfg;
        wait::block(&mut ProducerSide { p: self, len }, &cfg, deadline)
    }

    #[inline]
    fn check_consumer_closed(&self) -> Result<()> {
        if self.sh.ctl.ends.consumer.state.load(Ordering::Relaxed) == CLOSED {
            return Err(Error::Disconnected(Disconnect::Closed));
        }
        Ok(())
    }

    #[cold]
    fn check_consumer(&mut self) -> Result<()> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        self.seen_epoch = self.sh.ctl.ends.epoch.load(Ordering::Acquire);
        match peer_status(
            &self.sh.ctl.ends.consumer,
            &*self.liveness,
            Endpoint::Consumer,
        )
        .map_err(|e| self.poison_err(e))?
        {
            PeerStatus::Gone(why) => Err(Error::Disconnected(why)),
            PeerStatus::Alive | PeerStatus::Unattached => Ok(()),
        }
    }

    #[inline]
    fn write_and_commit(&mut self, c: Claim, msg: &[u8]) {
        self.sh.data.write(c.at + HEADER_LEN, msg);
        failpoint::hit("mid_payload");
        self.commit(c);
    }

    #[inline]
    fn commit(&mut self, c: Claim) {
        failpoint::hit("before_commit");
        // Release: pairs with the consumer's Acquire load of this header; the
        // payload is visible before the positive length.
        self.sh
            .data
            .word(c.at)
            .store(self.header(c.len as i32, MPSC_MSG), Ordering::Release);
        failpoint::hit("after_commit_before_wake");
        self.sh.ctl.wake.notify_data();
    }

    #[inline]
    fn abort(&mut self, c: Claim) {
        let pad = frame::frame_len(c.len) - HEADER_LEN;
        // Release: as in `commit`.
        self.sh
            .data
            .word(c.at)
            .store(self.header(pad as i32, MPSC_PAD), Ordering::Release);
        self.sh.ctl.wake.notify_data();
    }

    /// Records a corruption so that every later call reports it too.
    #[cold]
    fn poison_err(&mut self, e: Error) -> Error {
        if let Error::Corrupted(c) = e {
            self.poisoned.get_or_insert(c);
        }
        e
    }
}

impl Drop for Producer {
    #[inline]
    fn drop(&mut self) {
        // Under loom, a model that failed unwinds through here after loom's state is
        // gone; touching it again would abort the test binary.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        self.close();
    }
}

struct ProducerSide<'a> {
    p: &'a mut Producer,
    len: usize,
}

impl Side for ProducerSide<'_> {
    type Token = Claim;

    fn attempt(&mut self) -> Result<Option<Claim>> {
        self.p.check_consumer_closed()?;
        self.p.claim_now(self.len)
    }

    fn ready(&mut self) -> bool {
        let sh = &self.p.sh;
        // Relaxed/Acquire as in `claim_now`.
        let t = sh.ctl.tail.load(Ordering::Relaxed) & !7;
        let head = sh.ctl.head.pos.load(Ordering::Acquire);
        let f = frame::frame_len(self.len);
        let o = (t & sh.mask) as usize;
        let pad = if o + f <= sh.cap { 0 } else { sh.cap - o };
        t.wrapping_sub(head).wrapping_add((pad + f) as u64) <= sh.cap as u64 || self.epoch_changed()
    }

    fn epoch_changed(&self) -> bool {
        self.p.sh.ctl.ends.epoch.load(Ordering::Acquire) != self.p.seen_epoch
    }

    fn words(&self) -> (&FutexWord, &AtomicU32) {
        (
            &self.p.sh.ctl.wake.space_seq,
            &self.p.sh.ctl.wake.producers_waiting,
        )
    }

    fn exclusive(&self) -> bool {
        false
    }

    fn liveness_due(&mut self, now: Instant, slice: Duration) -> bool {
        self.p.clock.due_at(now, slice)
    }

    fn check_peer(&mut self) -> Result<()> {
        self.p.check_consumer()
    }
}

/// A claimed frame: write the payload through `DerefMut`, then
/// [`WriteGuard::commit`]. Dropped uncommitted, the claim becomes padding.
pub struct WriteGuard<'a> {
    producer: &'a mut Producer,
    c: Option<Claim>,
    #[cfg(loom)]
    buf: Vec<u8>,
}

impl<'a> WriteGuard<'a> {
    #[inline]
    fn new(producer: &'a mut Producer, c: Claim) -> Self {
        WriteGuard {
            producer,
            c: Some(c),
            #[cfg(loom)]
            buf: vec![0; c.len],
        }
    }

    /// Publishes the message.
    #[inline]
    pub fn commit(mut self) {
        let c = self.c.take().expect("a guard commits once");
        #[cfg(loom)]
        self.producer.sh.data.write(c.at + HEADER_LEN, &self.buf);
        failpoint::hit("mid_payload");
        self.producer.commit(c);
    }
}

impl Drop for WriteGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(c) = self.c.take() {
            self.producer.abort(c);
        }
    }
}

impl core::ops::Deref for WriteGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        #[cfg(not(loom))]
        {
            let c = self.c.expect("claim held until commit");
            // SAFETY: the bytes are our claim: no other producer claims them (the
            // tail CAS), and the consumer reads them only after our Release commit;
            // `&mut Producer` keeps anyone else in this process away.
            unsafe { self.producer.sh.data.slice(c.at + HEADER_LEN, c.len) }
        }
        #[cfg(loom)]
        {
            &self.buf
        }
    }
}

impl core::ops::DerefMut for WriteGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        #[cfg(not(loom))]
        {
            let c = self.c.expect("claim held until commit");
            // SAFETY: as in `deref`; `&mut self` makes this the only access.
            unsafe { self.producer.sh.data.slice_mut(c.at + HEADER_LEN, c.len) }
        }
        #[cfg(loom)]
        {
            &mut self.buf
        }
    }
}

/// The single receiving side of an MPSC ring.
pub struct Consumer {
    sh: Shared,
    /// Next frame to read.
    head: u64,
    /// Last `head` published (frames before it are zeroed and released).
    released: u64,
    /// Messages received (published with `head`).
    received: u64,
    expected_producers: u32,
    cfg: WaitConfig,
    liveness: Arc<dyn Liveness>,
    seen_epoch: u32,
    /// The last look found every producer gone (with data left): look again before
    /// sleeping, as in the SPSC consumer.
    peers_gone: bool,
    clock: CheckClock,
    poisoned: Option<Corruption>,
    closed: bool,
    reclaimed: u64,
}

impl core::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("mpsc::Consumer")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// A readable frame.
#[derive(Clone, Copy)]
struct Frame {
    at: usize,
    len: usize,
    next: u64,
}

impl Consumer {
    /// Attaches the consumer (the caller holds its liveness marker).
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`], [`Error::TooManyProducers`],
    /// [`Error::RegionTooSmall`], [`Error::Corrupted`].
    pub fn attach(
        region: &Region,
        capacity: u64,
        producers: u16,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Consumer> {
        let sh = Shared::new(region, capacity, producers)?;
        // Acquire: pairs with an earlier consumer's Release store of `head`.
        let head = sh.ctl.head.pos.load(Ordering::Acquire);
        if head % 8 != 0 {
            return Err(Error::corrupted("head", head, head));
        }
        let seen_epoch = sh.ctl.ends.epoch.load(Ordering::Acquire);
        sh.ctl
            .ends
            .consumer
            .attach(&sh.ctl.ends.epoch, &sh.ctl.wake);
        let received = sh.ctl.head.received.load(Ordering::Relaxed);
        Ok(Consumer {
            sh,
            head,
            released: head,
            received,
            expected_producers: 1,
            cfg,
            liveness,
            seen_epoch,
            peers_gone: false,
            clock: CheckClock::starting(cfg.slice),
            poisoned: None,
            closed: false,
            reclaimed: 0,
        })
    }

    /// Report [`Error::Disconnected`] only after at least `n` producer attachments
    /// have happened (default 1), so that a consumer that starts first does not
    /// give up before its producers arrive.
    pub fn expect_producers(&mut self, n: u32) {
        self.expected_producers = n;
    }

    /// How many times producers have attached to this ring.
    pub fn producer_attachments(&self) -> u32 {
        self.sh
            .slots
            .iter()
            .map(|s| s.end.incarnation.load(Ordering::Relaxed))
            .fold(0, u32::wrapping_add)
    }

    /// How many dead producers' claims this consumer turned into padding.
    pub fn reclaimed(&self) -> u64 {
        self.reclaimed
    }

    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.sh.cap
    }

    /// The largest message this ring takes.
    pub fn max_message_len(&self) -> usize {
        frame::max_payload(self.sh.cap)
    }

    /// The wait configuration.
    pub fn wait_config(&self) -> WaitConfig {
        self.cfg
    }

    /// Changes the wait configuration.
    pub fn set_wait_config(&mut self, cfg: WaitConfig) {
        self.cfg = cfg;
    }

    /// Receives the next message without waiting, lending it in place.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Disconnected`] (every producer that attached is
    /// gone and nothing committed is left), [`Error::Corrupted`].
    #[inline]
    pub fn try_recv(&mut self) -> Result<ReadGuard<'_>> {
        match self.peek()? {
            Some(f) => Ok(ReadGuard::new(self, f)),
            None => {
                self.empty_or_gone()?;
                Err(Error::Empty)
            }
        }
    }

    /// Receives the next message, waiting as the wait strategy says.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`], without `Empty`.
    #[inline]
    pub fn recv(&mut self) -> Result<ReadGuard<'_>> {
        let f = self.recv_blocking(None)?;
        Ok(ReadGuard::new(self, f))
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv`], plus [`Error::Timeout`].
    #[inline]
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_>> {
        let f = self.recv_blocking(Some(Instant::now() + timeout))?;
        Ok(ReadGuard::new(self, f))
    }

    /// Receives the next message into `buf` (cleared first), waiting.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    #[inline]
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let f = self.recv_blocking(None)?;
        self.copy_out(f, buf);
        Ok(())
    }

    /// As [`Consumer::recv_into`], without waiting.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`].
    #[inline]
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        match self.peek()? {
            Some(f) => {
                self.copy_out(f, buf);
                Ok(())
            }
            None => {
                self.empty_or_gone()?;
                Err(Error::Empty)
            }
        }
    }

    /// As [`Consumer::recv_into`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv_timeout`].
    #[inline]
    pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        let f = self.recv_blocking(Some(Instant::now() + timeout))?;
        self.copy_out(f, buf);
        Ok(())
    }

    /// Hands up to `max` waiting messages to `each`, in place, then releases them
    /// all with one zeroing pass, one store and one notification.
    ///
    /// # Errors
    /// [`Error::Disconnected`] if none were waiting and every producer is gone;
    /// [`Error::Corrupted`].
    #[inline]
    pub fn try_recv_batch(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> Result<usize> {
        let mut n = 0;
        while n < max {
            let Some(f) = self.peek()? else { break };
            self.with_payload(f, &mut each);
            self.head = f.next;
            n += 1;
        }
        if n > 0 {
            self.release(n as u64);
        } else {
            self.empty_or_gone()?;
        }
        Ok(n)
    }

    /// Bytes claimed by producers and not yet consumed.
    pub fn len_hint(&self) -> usize {
        // Acquire: pairs with the producers' CAS on `tail`.
        let tail = self.sh.ctl.tail.load(Ordering::Acquire);
        (tail.wrapping_sub(self.head) as usize).min(self.sh.cap)
    }

    /// Drops this handle without marking the endpoint closed: for a process that
    /// inherited the handle across `fork` but is not the one using it, so that its
    /// copy going away does not look, to the peer, like the real endpoint closing.
    pub fn detach(mut self) {
        self.closed = true;
    }

    /// Marks the consumer closed and wakes producers. Dropping does it too.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.sh
                .ctl
                .ends
                .consumer
                .close(&self.sh.ctl.ends.epoch, &self.sh.ctl.wake);
        }
    }

    #[cold]
    fn poison(&mut self, what: &'static str, position: u64, value: u64) -> Error {
        let c = Corruption {
            what,
            position,
            value,
        };
        self.poisoned = Some(c);
        Error::Corrupted(c)
    }

    /// The next committed message, skipping padding (released with it later).
    #[inline]
    fn peek(&mut self) -> Result<Option<Frame>> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
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
                Err(what) => return Err(self.poison(what, self.head, raw)),
            };
            if h.len < 0 {
                return Ok(None);
            }
            let next = self.head.wrapping_add(h.size() as u64);
            if h.kind == MPSC_PAD {
                self.head = next;
                continue;
            }
            return Ok(Some(Frame {
                at: off + HEADER_LEN,
                len: h.len as usize,
                next,
            }));
        }
        Err(self.poison("a lap of padding", self.head, 0))
    }

    #[inline]
    fn recv_blocking(&mut self, deadline: Option<Instant>) -> Result<Frame> {
        if let Some(f) = self.peek()? {
            return Ok(f);
        }
        let cfg = self.cfg;
        wait::block(&mut ConsumerSide { c: self }, &cfg, deadline)
    }

    #[cold]
    fn empty_or_gone(&mut self) -> Result<()> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        if self.clock.due(self.cfg.slice) || self.epoch_changed() {
            self.check_producers()?;
        }
        Ok(())
    }

    fn epoch_changed(&self) -> bool {
        self.peers_gone || self.sh.ctl.ends.epoch.load(Ordering::Acquire) != self.seen_epoch
    }

    /// Whether producer `s` of frames stamped with incarnation `inc` may still write.
    fn producer_alive(&self, s: u16, inc: Option<u16>) -> bool {
        let end = &self.sh.slot(s).end;
        if let Some(inc) = inc
            && end.incarnation.load(Ordering::Acquire) as u16 != inc
        {
            // The slot has been taken again: that earlier holder's marker was free.
            return false;
        }
        end.state.load(Ordering::Acquire) == ATTACHED
            && self.liveness.is_alive(Endpoint::Producer(s))
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
            Err(what) => return Err(self.poison(what, self.head, raw)),
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
                    return Err(self.poison("tail out of range", self.head, tail));
                }
                let mut limit = claimed.min((sh.cap - off) as u64);
                for s in 0..sh.nslots {
                    // Acquire: pairs with the Release clearing of the intent.
                    let intent = sh.slot(s).claim.load(Ordering::Acquire);
                    if intent == NO_CLAIM {
                        continue;
                    }
                    let d = (intent & !7).wrapping_sub(self.head);
                    if d < limit && self.producer_alive(s, None) {
                        limit = d;
                    }
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

    /// Reclaims dead claims, then `Err(Disconnected)` if every producer that
    /// attached is gone and nothing is left to receive.
    #[cold]
    fn check_producers(&mut self) -> Result<()> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        self.seen_epoch = self.sh.ctl.ends.epoch.load(Ordering::Acquire);
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
        self.peers_gone = false;
        let mut gone = None;
        for s in 0..self.sh.nslots {
            match peer_status(&self.sh.slot(s).end, &*self.liveness, Endpoint::Producer(s))
                .map_err(|e| self.poison_err(e))?
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
        let Some(why) = gone else { return Ok(()) };
        if self.producer_attachments() < self.expected_producers {
            return Ok(());
        }
        self.peers_gone = true;
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
        Err(Error::Disconnected(why))
    }

    #[inline]
    fn with_payload(&self, f: Frame, each: &mut impl FnMut(&[u8])) {
        #[cfg(not(loom))]
        {
            // SAFETY: the frame is committed (Acquire in `peek`) and not released until
            // `release`; its producer never writes it again, and no other producer
            // can claim it before we release it.
            each(unsafe { self.sh.data.slice(f.at, f.len) });
        }
        #[cfg(loom)]
        {
            let mut buf = vec![0; f.len];
            self.sh.data.read(f.at, &mut buf);
            each(&buf);
        }
    }

    #[inline]
    fn copy_out(&mut self, f: Frame, buf: &mut Vec<u8>) {
        buf.clear();
        buf.resize(f.len, 0);
        self.sh.data.read(f.at, buf);
        self.head = f.next;
        self.release(1);
    }

    /// Zeroes everything consumed since the last release, then publishes `head`.
    #[inline]
    fn release(&mut self, messages: u64) {
        self.received = self.received.wrapping_add(messages);
        let sh = &self.sh;
        // Relaxed: a statistic for tools, on our own line.
        sh.ctl.head.received.store(self.received, Ordering::Relaxed);
        let mut pos = self.released;
        while pos != self.head {
            let off = (pos & sh.mask) as usize;
            let run = (self.head.wrapping_sub(pos) as usize).min(sh.cap - off);
            sh.data.zero(off, run);
            pos = pos.wrapping_add(run as u64);
        }
        // Release: pairs with the producers' Acquire load of `head`; the zeroes and
        // our reads of the released frames come before any reuse.
        sh.ctl.head.pos.store(self.head, Ordering::Release);
        self.released = self.head;
        sh.ctl.wake.notify_space();
    }

    /// Records a corruption so that every later call reports it too.
    #[cold]
    fn poison_err(&mut self, e: Error) -> Error {
        if let Error::Corrupted(c) = e {
            self.poisoned.get_or_insert(c);
        }
        e
    }
}

impl Drop for Consumer {
    #[inline]
    fn drop(&mut self) {
        // Under loom, a model that failed unwinds through here after loom's state is
        // gone; touching it again would abort the test binary.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        self.close();
    }
}

struct ConsumerSide<'a> {
    c: &'a mut Consumer,
}

impl Side for ConsumerSide<'_> {
    type Token = Frame;

    fn attempt(&mut self) -> Result<Option<Frame>> {
        self.c.peek()
    }

    fn ready(&mut self) -> bool {
        matches!(self.c.peek(), Ok(Some(_)) | Err(_)) || self.c.epoch_changed()
    }

    fn epoch_changed(&self) -> bool {
        self.c.epoch_changed()
    }

    fn words(&self) -> (&FutexWord, &AtomicU32) {
        (
            &self.c.sh.ctl.wake.data_seq,
            &self.c.sh.ctl.wake.consumer_waiting,
        )
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn liveness_due(&mut self, now: Instant, slice: Duration) -> bool {
        self.c.clock.due_at(now, slice)
    }

    fn check_peer(&mut self) -> Result<()> {
        self.c.check_producers()
    }
}

/// A received message, lent in place; its space is released when the guard drops.
/// See [`crate::spsc::ReadGuard`] on trusting the bytes.
pub struct ReadGuard<'a> {
    consumer: &'a mut Consumer,
    f: Frame,
    #[cfg(loom)]
    buf: Vec<u8>,
}

impl<'a> ReadGuard<'a> {
    #[inline]
    fn new(consumer: &'a mut Consumer, f: Frame) -> Self {
        #[cfg(loom)]
        let buf = {
            let mut b = vec![0; f.len];
            consumer.sh.data.read(f.at, &mut b);
            b
        };
        ReadGuard {
            consumer,
            f,
            #[cfg(loom)]
            buf,
        }
    }
}

impl core::ops::Deref for ReadGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        #[cfg(not(loom))]
        {
            // SAFETY: as in `Consumer::with_payload`; `&mut Consumer` keeps anyone in
            // this process from releasing the frame while the guard lives.
            unsafe { self.consumer.sh.data.slice(self.f.at, self.f.len) }
        }
        #[cfg(loom)]
        {
            &self.buf
        }
    }
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.head = self.f.next;
        self.consumer.release(1);
    }
}
