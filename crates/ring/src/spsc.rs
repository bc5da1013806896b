//! The single-producer single-consumer byte ring.
//!
//! # Protocol
//!
//! Positions are monotonic `u64` byte counts; a position's offset in the data area
//! is `position & (capacity - 1)`. Each side keeps its own position in its handle.
//!
//! **Producer**, to send a frame of `f` bytes at its position `t` (offset `o`):
//! 1. If the frame would cross the end of the area, it will write a padding frame
//!    at `o` and the message at offset 0.
//! 2. It needs `pad + f + 8` free bytes: the frame, and the header slot right
//!    after it. It checks `t + need - cached_head <= capacity`, re-reading `head`
//!    (`Acquire`) only when its cached copy says the ring looks full.
//! 3. It writes the payload, stores **0 into the header slot after the frame**
//!    (the end marker), then stores the frame's header with `Release` (for a
//!    wrapped frame: the message header first, the padding header last, with
//!    `Release`). Then it publishes `tail` (informational) and notifies.
//!
//! **Consumer**, at its position `h`, loads the header word at `h` with `Acquire`.
//! 0 means nothing yet. A message header makes the payload readable in place; a
//! padding header sends it to offset 0. When it is done it stores `head` with
//! `Release` (which lets the producer reuse the space) and notifies.
//!
//! The consumer polls the header where the next message will land, not `tail`,
//! so in a request/response exchange one cache line carries both the signal and
//! (for small messages) the data across cores. The end marker is what makes this
//! safe: the word at the consumer's position is either 0 or the real header,
//! never a stale header from an earlier lap or a payload byte that happens to look
//! like one, whatever the producer's payloads contain.
//!
//! # Never trusting the peer
//! Every header is decoded by [`crate::frame::decode_spsc`] (tag known, length
//! within the maximum and within the area, padding ending exactly at the end);
//! every `head` the producer reads satisfies `tail - head <= capacity`. A failed
//! check is [`Error::Corrupted`] and poisons the handle.
//!
//! # Safety
//! This module lends frames as slices (the guards, and `try_recv_batch`). A
//! reserved frame is reachable only through the [`WriteGuard`], which holds
//! `&mut Producer`, until it is published; a published frame only through the
//! [`ReadGuard`] (or the batch callback), which holds `&mut Consumer`, until its
//! space is released. The protocol keeps the peer out of both meanwhile.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ctl::{CLOSED, SpscControl};
use crate::error::{Corruption, Disconnect, Error, Result};
use crate::failpoint;
use crate::frame::{self, HEADER_LEN, SpscFrame};
use crate::peer::{CheckClock, PeerStatus, check_positions, peer_status, stale_tail};
use crate::region::{Ctl, Data, LINE, Region};
use crate::sync::{AtomicU32, FutexWord, Ordering};
use crate::wait::{self, Endpoint, Liveness, Side, WaitConfig};

/// Bytes the SPSC control block takes before the data area.
pub const CONTROL_LEN: usize = 512;

/// Smallest capacity of a byte ring.
pub const MIN_CAPACITY: u64 = 64;
/// Largest capacity of a byte ring (payload lengths are 32-bit).
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Checks a byte-ring capacity: a power of two from [`MIN_CAPACITY`] to
/// [`MAX_CAPACITY`].
///
/// # Errors
/// [`Error::InvalidCapacity`].
pub fn check_capacity(capacity: u64) -> Result<usize> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(Error::InvalidCapacity(capacity));
    }
    usize::try_from(capacity).map_err(|_| Error::InvalidCapacity(capacity))
}

/// Bytes a region needs for an SPSC ring of `capacity` bytes.
pub const fn region_len(capacity: usize) -> usize {
    CONTROL_LEN + capacity
}

/// Prepares a zero-filled region as an empty SPSC ring whose positions start at
/// `start` (0 normally; tests start near `u64::MAX` to cross the wrap).
///
/// # Errors
/// [`Error::InvalidCapacity`], [`Error::RegionTooSmall`].
///
/// # Panics
/// If `start` is not a multiple of 8.
pub fn init(region: &Region, capacity: u64, start: u64) -> Result<()> {
    assert!(start.is_multiple_of(8), "positions are 8-aligned");
    let cap = check_region(region, capacity)?;
    let ctl: Ctl<SpscControl> = Ctl::new(region);
    // Relaxed: the region is published to peers afterwards by the segment's
    // Release store of its ready state (or by spawning the threads that use it).
    ctl.head.pos.store(start, Ordering::Relaxed);
    ctl.tail.store(start, Ordering::Relaxed);
    // The header slot at `start` must read 0 (the end marker): it does in fresh
    // memory, and we make sure for a region being reused.
    let data = region.data(CONTROL_LEN, cap);
    data.word((start & (cap as u64 - 1)) as usize)
        .store(0, Ordering::Relaxed);
    Ok(())
}

fn check_region(region: &Region, capacity: u64) -> Result<usize> {
    let cap = check_capacity(capacity)?;
    let needed = region_len(cap);
    if region.len() < needed {
        return Err(Error::RegionTooSmall {
            needed: needed as u64,
            len: region.len() as u64,
        });
    }
    const { assert!(CONTROL_LEN.is_multiple_of(LINE)) };
    Ok(cap)
}

/// The sending side of an SPSC byte ring.
pub struct Producer {
    ctl: Ctl<SpscControl>,
    data: Data,
    cap: usize,
    mask: u64,
    /// Our position: where the next frame goes.
    tail: u64,
    /// Last `head` we read; the ring looks full against it before it really is.
    cached_head: u64,
    /// Every word from `tail` up to this position is known to be 0 (zeroed ahead of
    /// need, see `zero_ahead`), so a frame ending before it needs no end marker.
    zeroed_to: u64,
    max_payload: usize,
    cfg: WaitConfig,
    liveness: Arc<dyn Liveness>,
    seen_epoch: u32,
    clock: CheckClock,
    poisoned: Option<Corruption>,
    closed: bool,
}

/// The receiving side of an SPSC byte ring.
pub struct Consumer {
    ctl: Ctl<SpscControl>,
    data: Data,
    cap: usize,
    mask: u64,
    /// Our position: the next frame to read.
    head: u64,
    /// Messages received (published with `head`).
    received: u64,
    cfg: WaitConfig,
    liveness: Arc<dyn Liveness>,
    seen_epoch: u32,
    /// The last look at the producer found it gone (with data left to drain):
    /// the next wait must look again rather than sleep.
    peer_gone: bool,
    clock: CheckClock,
    poisoned: Option<Corruption>,
    closed: bool,
}

impl core::fmt::Debug for Producer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.cap)
            .field("tail", &self.tail)
            .finish()
    }
}

impl core::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.cap)
            .field("head", &self.head)
            .finish()
    }
}

/// A frame placement: padding to write first (bytes from `pad_at`), and where
/// the frame itself starts.
#[derive(Clone, Copy)]
struct Placement {
    pad: usize,
    pad_at: usize,
    at: usize,
}

impl Producer {
    /// Attaches the producer to an initialised SPSC region.
    ///
    /// The caller holds the producer's liveness marker (only one producer may be
    /// attached at a time). A producer that attaches after an earlier one resumes
    /// after the earlier one's last published frame, even if that producer died
    /// before it could update `tail`.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`], [`Error::RegionTooSmall`], or
    /// [`Error::Corrupted`] if the positions in the region are inconsistent.
    pub fn attach(
        region: &Region,
        capacity: u64,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Producer> {
        let cap = check_region(region, capacity)?;
        let ctl: Ctl<SpscControl> = Ctl::new(region);
        let data = region.data(CONTROL_LEN, cap);
        let mask = cap as u64 - 1;
        // Acquire: pairs with the Release stores of `head` by the consumer and of
        // `tail` by an earlier producer.
        let head = ctl.head.pos.load(Ordering::Acquire);
        let mut tail = ctl.tail.load(Ordering::Acquire);
        if stale_tail(head, tail, cap) {
            tail = head;
        }
        check_positions(head, tail, cap)?;
        // Walk over frames an earlier producer published after its last `tail`
        // store (it may have died in between): stop at the end marker.
        for _ in 0..=cap / 8 {
            let off = (tail & mask) as usize;
            // Acquire: pairs with the Release header stores of the earlier producer.
            let raw = data.word(off).load(Ordering::Acquire);
            let f = frame::decode_spsc(raw, off, cap)
                .map_err(|what| Error::corrupted(what, tail, raw))?;
            if f == SpscFrame::Empty {
                break;
            }
            let next = tail.wrapping_add(f.size() as u64);
            check_positions(head, next, cap)?;
            tail = next;
        }
        ctl.tail.store(tail, Ordering::Release);
        let seen_epoch = ctl.ends.epoch.load(Ordering::Acquire);
        ctl.ends.producer.attach(&ctl.ends.epoch, &ctl.wake);
        Ok(Producer {
            ctl,
            data,
            cap,
            mask,
            tail,
            cached_head: head,
            // The end marker at `tail` is 0 (the invariant); nothing beyond is known.
            zeroed_to: tail.wrapping_add(HEADER_LEN as u64),
            max_payload: frame::max_payload(cap),
            cfg,
            liveness,
            seen_epoch,
            clock: CheckClock::starting(cfg.slice),
            poisoned: None,
            closed: false,
        })
    }

    /// The largest message this ring takes.
    pub fn max_message_len(&self) -> usize {
        self.max_payload
    }

    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The wait configuration.
    pub fn wait_config(&self) -> WaitConfig {
        self.cfg
    }

    /// Changes the wait configuration.
    pub fn set_wait_config(&mut self, cfg: WaitConfig) {
        self.cfg = cfg;
    }

    /// Reserves room for a message of `len` bytes without waiting. Write the
    /// payload into the guard, then [`WriteGuard::commit`]; dropping the guard
    /// uncommitted sends nothing.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] (never fits), [`Error::Full`] (not now),
    /// [`Error::Disconnected`] (the consumer is gone), [`Error::Corrupted`].
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_>> {
        let p = self.reserve_or_full(len)?;
        Ok(WriteGuard::new(self, p, len))
    }

    /// Reserves room for `len` bytes, waiting as the wait strategy says.
    ///
    /// # Errors
    /// As [`Producer::try_reserve`], without `Full`.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_>> {
        let p = self.reserve_blocking(len, None)?;
        Ok(WriteGuard::new(self, p, len))
    }

    /// Reserves room for `len` bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Producer::reserve`], plus [`Error::Timeout`].
    #[inline]
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_>> {
        let p = self.reserve_blocking(len, Some(Instant::now() + timeout))?;
        Ok(WriteGuard::new(self, p, len))
    }

    /// Sends a copy of `msg` without waiting.
    ///
    /// # Errors
    /// As [`Producer::try_reserve`].
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        let p = self.reserve_or_full(msg.len())?;
        self.write_and_commit(p, msg);
        Ok(())
    }

    /// Sends a copy of `msg`, waiting for room as the wait strategy says.
    ///
    /// # Errors
    /// As [`Producer::reserve`].
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        let p = self.reserve_blocking(msg.len(), None)?;
        self.write_and_commit(p, msg);
        Ok(())
    }

    /// Sends a copy of `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Producer::reserve_timeout`].
    #[inline]
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        let p = self.reserve_blocking(msg.len(), Some(Instant::now() + timeout))?;
        self.write_and_commit(p, msg);
        Ok(())
    }

    /// Sends as many of `msgs` as fit now, in order, and publishes them all with a
    /// single header store and one notification. Returns how many were sent.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the first message that does not fit never
    /// could; [`Error::Full`] if not even the first fits; [`Error::Disconnected`],
    /// [`Error::Corrupted`].
    pub fn try_send_batch<'m, I>(&mut self, msgs: I) -> Result<usize>
    where
        I: IntoIterator<Item = &'m [u8]>,
    {
        let mut first: Option<(Placement, usize)> = None;
        let mut n = 0;
        for msg in msgs {
            let p = match self.reserve_now(msg.len()) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // Publish what was written; the next call reports the error (found by
                // the ops-vs-model property test: returning here left frames written
                // and never published, and the ring wedged).
                Err(_) if first.is_some() => break,
                Err(e) => return Err(e),
            };
            self.data.write(p.at + HEADER_LEN, msg);
            let size = self.frame_size(p, msg.len());
            match first {
                None => first = Some((p, msg.len())),
                Some(_) => self.write_headers(p, msg.len(), Ordering::Relaxed),
            }
            self.tail = self.tail.wrapping_add(size as u64);
            n += 1;
        }
        let Some((p, len)) = first else {
            self.full_or_gone()?;
            return Err(Error::Full);
        };
        self.end_marker(self.tail);
        // The first frame's header, stored last with Release, publishes the batch.
        self.write_headers(p, len, Ordering::Release);
        self.publish_tail();
        self.zero_ahead();
        Ok(n)
    }

    /// Bytes published and not yet consumed, as far as this producer knows.
    pub fn len_hint(&self) -> usize {
        // Acquire: pairs with the consumer's Release store of `head`.
        let head = self.ctl.head.pos.load(Ordering::Acquire);
        (self.tail.wrapping_sub(head) as usize).min(self.cap)
    }

    /// Drops this handle without marking the endpoint closed: for a process that
    /// inherited the handle across `fork` but is not the one using it, so that its
    /// copy going away does not look, to the peer, like the real endpoint closing.
    pub fn detach(mut self) {
        self.closed = true;
    }

    /// Marks the producer closed and wakes the consumer. Dropping does it too; this
    /// form is for a process that must not release the ring's memory yet.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.ctl
                .ends
                .producer
                .close(&self.ctl.ends.epoch, &self.ctl.wake);
        }
    }

    #[inline]
    fn placement(&self, f: usize) -> Placement {
        let o = (self.tail & self.mask) as usize;
        if o + f <= self.cap {
            Placement {
                pad: 0,
                pad_at: o,
                at: o,
            }
        } else {
            Placement {
                pad: self.cap - o,
                pad_at: o,
                at: 0,
            }
        }
    }

    #[inline]
    fn frame_size(&self, p: Placement, len: usize) -> usize {
        p.pad + frame::frame_len(len)
    }

    /// Finds room for `len` bytes now: `Ok(None)` if the ring is full.
    #[inline]
    fn reserve_now(&mut self, len: usize) -> Result<Option<Placement>> {
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
        let p = self.placement(f);
        let need = (p.pad + f + HEADER_LEN) as u64;
        if self.tail.wrapping_sub(self.cached_head) + need > self.cap as u64 {
            // Acquire: pairs with the consumer's Release store of `head`, so its reads
            // of the frames it released are done before we overwrite them.
            let head = self.ctl.head.pos.load(Ordering::Acquire);
            if let Err(e) = check_positions(head, self.tail, self.cap) {
                return Err(self.poison(e));
            }
            self.cached_head = head;
            if self.tail.wrapping_sub(head) + need > self.cap as u64 {
                return Ok(None);
            }
        }
        Ok(Some(p))
    }

    /// Room now, or `Full`/`Disconnected`.
    #[inline]
    fn reserve_or_full(&mut self, len: usize) -> Result<Placement> {
        match self.reserve_now(len)? {
            Some(p) => {
                self.check_consumer_closed()?;
                Ok(p)
            }
            None => {
                self.full_or_gone()?;
                Err(Error::Full)
            }
        }
    }

    #[inline]
    fn reserve_blocking(&mut self, len: usize, deadline: Option<Instant>) -> Result<Placement> {
        if let Some(p) = self.reserve_now(len)? {
            self.check_consumer_closed()?;
            return Ok(p);
        }
        let cfg = self.cfg;
        wait::block(&mut ProducerSide { p: self, len }, &cfg, deadline)
    }

    /// On the fast path: a consumer that announced it closed gets `Disconnected`.
    #[inline]
    fn check_consumer_closed(&mut self) -> Result<()> {
        if self.ctl.ends.consumer.state.load(Ordering::Relaxed) == CLOSED {
            return Err(Error::Disconnected(Disconnect::Closed));
        }
        Ok(())
    }

    /// After finding the ring full in a non-blocking call: `Err(Disconnected)` if
    /// the consumer is gone (the death check is rate-limited to once a slice).
    #[cold]
    fn full_or_gone(&mut self) -> Result<()> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        self.check_consumer_closed()?;
        if self.clock.due(self.cfg.slice) {
            self.check_consumer()?;
        }
        Ok(())
    }

    #[cold]
    fn check_consumer(&mut self) -> Result<()> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        self.seen_epoch = self.ctl.ends.epoch.load(Ordering::Acquire);
        match peer_status(&self.ctl.ends.consumer, &*self.liveness, Endpoint::Consumer)
            .map_err(|e| self.poison_err(e))?
        {
            PeerStatus::Gone(why) => Err(Error::Disconnected(why)),
            PeerStatus::Alive | PeerStatus::Unattached => Ok(()),
        }
    }

    #[inline]
    fn write_and_commit(&mut self, p: Placement, msg: &[u8]) {
        self.data.write(p.at + HEADER_LEN, msg);
        failpoint::hit("mid_payload");
        self.commit_frame(p, msg.len());
    }

    /// Stores the header(s) of a frame whose payload is written.
    #[inline]
    fn write_headers(&self, p: Placement, len: usize, order: Ordering) {
        if p.pad > 0 {
            // The message at offset 0 first; the padding header, which the consumer
            // reaches first, last.
            self.data
                .word(p.at)
                .store(frame::spsc_message(len), Ordering::Relaxed);
            self.data
                .word(p.pad_at)
                .store(frame::spsc_padding(p.pad - HEADER_LEN), order);
        } else {
            self.data.word(p.at).store(frame::spsc_message(len), order);
        }
    }

    #[inline]
    fn commit_frame(&mut self, p: Placement, len: usize) {
        let size = self.frame_size(p, len);
        let next = self.tail.wrapping_add(size as u64);
        self.end_marker(next);
        failpoint::hit("before_commit");
        // Release: pairs with the consumer's Acquire load of this header; makes the
        // payload and the end marker visible before the header.
        self.write_headers(p, len, Ordering::Release);
        self.tail = next;
        self.publish_tail();
        self.zero_ahead();
    }

    /// Makes the header slot at `next` (the slot after a frame being committed)
    /// read 0 until the next frame is published there. It is inside the room
    /// `reserve_now` checked. Usually it was zeroed ahead already, and storing it
    /// again would only delay the frame's header: x86 makes stores visible in order,
    /// so a marker in a line the consumer read on the previous lap would hold the
    /// header back behind that line's ownership transfer.
    #[inline]
    fn end_marker(&mut self, next: u64) {
        let slot_end = next.wrapping_add(HEADER_LEN as u64);
        if slot_end.wrapping_sub(self.tail) > self.zeroed_len() {
            self.data
                .word((next & self.mask) as usize)
                .store(0, Ordering::Relaxed);
            self.zeroed_to = slot_end;
        }
    }

    /// Forgets which words past `tail` are zero (after a reservation's bytes were
    /// written and not committed): the next commit then stores its end marker.
    #[inline]
    fn forget_zeroed(&mut self) {
        self.zeroed_to = self.tail.wrapping_add(HEADER_LEN as u64);
    }

    /// How many bytes from `tail` are known zero (0 if `zeroed_to` fell behind
    /// `tail`, as after a batch).
    #[inline]
    fn zeroed_len(&self) -> u64 {
        let known = self.zeroed_to.wrapping_sub(self.tail);
        if known > self.cap as u64 { 0 } else { known }
    }

    /// After a frame is published (and the consumer woken), zeroes the free words
    /// up to the end of the cache line after the one `tail` is in, so that the end
    /// markers of the next frames are already in place: their lines' ownership moves
    /// here now, off the path of any message. Only free space is zeroed (checked
    /// against the cached `head`, which can only be behind the real one).
    #[inline]
    fn zero_ahead(&mut self) {
        const AHEAD: u64 = 64;
        let want = (self.tail | (AHEAD - 1)).wrapping_add(1 + AHEAD);
        let free_end = self.cached_head.wrapping_add(self.cap as u64);
        let start = self.tail.wrapping_add(self.zeroed_len());
        let end = if want.wrapping_sub(self.tail) <= free_end.wrapping_sub(self.tail) {
            want
        } else {
            free_end
        };
        let mut pos = start;
        while end.wrapping_sub(pos).wrapping_sub(1) < self.cap as u64 {
            // Relaxed: the consumer reads these zeroes (the next frame's end marker)
            // only after the Release header store of a later commit publishes them;
            // the space is ours (below `cached_head + cap`, Acquire-loaded).
            self.data
                .word((pos & self.mask) as usize)
                .store(0, Ordering::Relaxed);
            pos = pos.wrapping_add(8);
        }
        if pos.wrapping_sub(self.tail) > self.zeroed_len() {
            self.zeroed_to = pos;
        }
    }

    /// Publishes `tail` (`Release`, informational) and wakes the consumer if it
    /// sleeps.
    #[inline]
    fn publish_tail(&self) {
        // Release: pairs with the Acquire load in `Producer::attach` (a later
        // producer) and with observers; the consumer does not read `tail`.
        self.ctl.tail.store(self.tail, Ordering::Release);
        failpoint::hit("after_commit_before_wake");
        self.ctl.wake.notify_data();
    }

    #[cold]
    fn poison(&mut self, e: Error) -> Error {
        if let Error::Corrupted(c) = e {
            self.poisoned = Some(c);
        }
        e
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
    type Token = Placement;

    fn attempt(&mut self) -> Result<Option<Placement>> {
        let r = self.p.reserve_now(self.len)?;
        if r.is_some() {
            self.p.check_consumer_closed()?;
        }
        Ok(r)
    }

    fn ready(&mut self) -> bool {
        // Acquire: as in `reserve_now`.
        let head = self.p.ctl.head.pos.load(Ordering::Acquire);
        let f = frame::frame_len(self.len);
        let p = self.p.placement(f);
        let need = (p.pad + f + HEADER_LEN) as u64;
        self.p.tail.wrapping_sub(head).wrapping_add(need) <= self.p.cap as u64
            || self.epoch_changed()
    }

    fn epoch_changed(&self) -> bool {
        self.p.ctl.ends.epoch.load(Ordering::Acquire) != self.p.seen_epoch
    }

    fn words(&self) -> (&FutexWord, &AtomicU32) {
        (
            &self.p.ctl.wake.space_seq,
            &self.p.ctl.wake.producers_waiting,
        )
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn liveness_due(&mut self, now: Instant, slice: Duration) -> bool {
        self.p.clock.due_at(now, slice)
    }

    fn check_peer(&mut self) -> Result<()> {
        self.p.check_consumer()
    }
}

/// Room reserved in the ring for one message: write the payload through
/// `DerefMut`, then [`WriteGuard::commit`]. Dropped uncommitted, it sends nothing.
pub struct WriteGuard<'a> {
    producer: &'a mut Producer,
    p: Placement,
    len: usize,
    /// Set once the whole reservation is committed.
    whole: bool,
    #[cfg(loom)]
    buf: Vec<u8>,
}

impl<'a> WriteGuard<'a> {
    #[inline]
    fn new(producer: &'a mut Producer, p: Placement, len: usize) -> Self {
        WriteGuard {
            producer,
            p,
            len,
            whole: false,
            #[cfg(loom)]
            buf: vec![0; len],
        }
    }

    /// Publishes the message.
    #[inline]
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }

    /// Publishes only the first `len` bytes (for a message whose size was only
    /// bounded when reserving).
    ///
    /// # Panics
    /// If `len` exceeds the reserved length.
    #[inline]
    pub fn commit_len(mut self, len: usize) {
        assert!(len <= self.len, "commit_len beyond the reservation");
        #[cfg(loom)]
        self.producer
            .data
            .write(self.p.at + HEADER_LEN, &self.buf[..len]);
        failpoint::hit("mid_payload");
        if len < self.len {
            // The caller may have written past the committed length, over words
            // that were zeroed ahead: only the marker at `tail` is known now.
            self.producer.forget_zeroed();
        }
        self.whole = true;
        self.producer.commit_frame(self.p, len);
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if !self.whole {
            // Aborted: the reservation's bytes may have been written (found by the
            // ops-vs-model property test), so nothing past `tail` is known zero.
            self.producer.forget_zeroed();
        }
    }
}

impl core::ops::Deref for WriteGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        #[cfg(not(loom))]
        {
            // SAFETY: the bytes were reserved by `reserve_now` and are not published
            // until `commit`; the consumer reads them only after our Release header
            // store, and nobody else in this process can reach them (the guard holds
            // `&mut Producer`).
            unsafe { self.producer.data.slice(self.p.at + HEADER_LEN, self.len) }
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
            // SAFETY: as in `deref`; `&mut self` makes this the only access.
            unsafe {
                self.producer
                    .data
                    .slice_mut(self.p.at + HEADER_LEN, self.len)
            }
        }
        #[cfg(loom)]
        {
            &mut self.buf
        }
    }
}

/// A readable frame: where its payload is, and where the next one starts.
#[derive(Clone, Copy)]
struct Frame {
    at: usize,
    len: usize,
    next: u64,
}

impl Consumer {
    /// Attaches the consumer to an initialised SPSC region, starting at the
    /// published `head` (a consumer that attaches after an earlier one died may
    /// thus see the last message that one was reading again).
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`], [`Error::RegionTooSmall`], [`Error::Corrupted`].
    pub fn attach(
        region: &Region,
        capacity: u64,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Consumer> {
        let cap = check_region(region, capacity)?;
        let ctl: Ctl<SpscControl> = Ctl::new(region);
        let data = region.data(CONTROL_LEN, cap);
        // Acquire: pairs with the Release store of `head` by an earlier consumer.
        let head = ctl.head.pos.load(Ordering::Acquire);
        if !head.is_multiple_of(8) {
            return Err(Error::corrupted("head", head, head));
        }
        let seen_epoch = ctl.ends.epoch.load(Ordering::Acquire);
        ctl.ends.consumer.attach(&ctl.ends.epoch, &ctl.wake);
        let received = ctl.head.received.load(Ordering::Relaxed);
        Ok(Consumer {
            ctl,
            data,
            cap,
            mask: cap as u64 - 1,
            head,
            received,
            cfg,
            liveness,
            seen_epoch,
            peer_gone: false,
            clock: CheckClock::starting(cfg.slice),
            poisoned: None,
            closed: false,
        })
    }

    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The largest message this ring takes.
    pub fn max_message_len(&self) -> usize {
        frame::max_payload(self.cap)
    }

    /// The wait configuration.
    pub fn wait_config(&self) -> WaitConfig {
        self.cfg
    }

    /// Changes the wait configuration.
    pub fn set_wait_config(&mut self, cfg: WaitConfig) {
        self.cfg = cfg;
    }

    /// Receives the next message without waiting, lending its payload in place;
    /// the space is released when the guard drops.
    ///
    /// # Errors
    /// [`Error::Empty`] (nothing now), [`Error::Disconnected`] (the producer is gone
    /// and everything it published has been received), [`Error::Corrupted`].
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

    /// Receives the next message into `buf` (cleared first), waiting as the wait
    /// strategy says. The copy is made before the space is released, so the bytes
    /// are private to the caller whatever the peer does afterwards.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    #[inline]
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let f = self.recv_blocking(None)?;
        self.copy_out(f, buf);
        Ok(())
    }

    /// As [`Consumer::recv_into`] without waiting.
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

    /// Hands up to `max` waiting messages to `each`, in order, in place, then
    /// releases all their space with a single store and one notification. Returns
    /// how many were handed over (0 if none were waiting).
    ///
    /// # Errors
    /// [`Error::Disconnected`] if none were waiting and the producer is gone;
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

    /// Bytes published and not yet consumed (reads the producer's `tail`).
    pub fn len_hint(&self) -> usize {
        // Acquire: pairs with the producer's Release store of `tail`.
        let tail = self.ctl.tail.load(Ordering::Acquire);
        (tail.wrapping_sub(self.head) as usize).min(self.cap)
    }

    /// Whether a message is waiting now.
    pub fn has_message(&mut self) -> Result<bool> {
        Ok(self.peek()?.is_some())
    }

    /// Drops this handle without marking the endpoint closed: for a process that
    /// inherited the handle across `fork` but is not the one using it, so that its
    /// copy going away does not look, to the peer, like the real endpoint closing.
    pub fn detach(mut self) {
        self.closed = true;
    }

    /// Marks the consumer closed and wakes the producer. Dropping does it too.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.ctl
                .ends
                .consumer
                .close(&self.ctl.ends.epoch, &self.ctl.wake);
        }
    }

    /// The next readable frame, skipping (and consuming) one padding frame.
    #[inline]
    fn peek(&mut self) -> Result<Option<Frame>> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        // At most one padding frame precedes a message (padding at offset 0 is
        // refused by the decoder), so two rounds suffice.
        for _ in 0..2 {
            let off = (self.head & self.mask) as usize;
            // Acquire: pairs with the producer's Release header store in
            // `commit_frame`/`try_send_batch`: the payload is visible once the header is.
            let raw = self.data.word(off).load(Ordering::Acquire);
            match frame::decode_spsc(raw, off, self.cap) {
                Ok(SpscFrame::Empty) => return Ok(None),
                Ok(SpscFrame::Message { len }) => {
                    let next = self.head.wrapping_add(frame::frame_len(len) as u64);
                    return Ok(Some(Frame {
                        at: off + HEADER_LEN,
                        len,
                        next,
                    }));
                }
                Ok(SpscFrame::Padding { len }) => {
                    self.head = self.head.wrapping_add((HEADER_LEN + len) as u64);
                }
                Err(what) => {
                    let c = Corruption {
                        what,
                        position: self.head,
                        value: raw,
                    };
                    self.poisoned = Some(c);
                    return Err(Error::Corrupted(c));
                }
            }
        }
        let c = Corruption {
            what: "padding after padding",
            position: self.head,
            value: 0,
        };
        self.poisoned = Some(c);
        Err(Error::Corrupted(c))
    }

    #[inline]
    fn recv_blocking(&mut self, deadline: Option<Instant>) -> Result<Frame> {
        if let Some(f) = self.peek()? {
            return Ok(f);
        }
        let cfg = self.cfg;
        wait::block(&mut ConsumerSide { c: self }, &cfg, deadline)
    }

    /// `Empty` from a non-blocking call: is the producer gone (rate-limited)?
    #[cold]
    fn empty_or_gone(&mut self) -> Result<()> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        let announced = self.ctl.ends.producer.state.load(Ordering::Relaxed) == CLOSED;
        if announced || self.clock.due(self.cfg.slice) {
            self.check_producer()?;
        }
        Ok(())
    }

    /// `Err(Disconnected)` if the producer is gone and nothing is left to read.
    #[cold]
    fn check_producer(&mut self) -> Result<()> {
        if let Some(c) = self.poisoned {
            return Err(Error::Corrupted(c));
        }
        self.seen_epoch = self.ctl.ends.epoch.load(Ordering::Acquire);
        match peer_status(
            &self.ctl.ends.producer,
            &*self.liveness,
            Endpoint::Producer(0),
        )
        .map_err(|e| self.poison_err(e))?
        {
            PeerStatus::Gone(why) => {
                // Remember it (found by loom): otherwise a later wait would take the
                // epoch as seen and sleep for a wake-up that already happened.
                self.peer_gone = true;
                // The producer's last frames were published before its state changed
                // (or before it died): look once more before reporting it gone.
                if self.peek()?.is_some() {
                    Ok(())
                } else {
                    Err(Error::Disconnected(why))
                }
            }
            PeerStatus::Alive | PeerStatus::Unattached => {
                self.peer_gone = false;
                Ok(())
            }
        }
    }

    #[inline]
    fn with_payload(&self, f: Frame, each: &mut impl FnMut(&[u8])) {
        #[cfg(not(loom))]
        {
            // SAFETY: the frame was published (Acquire above) and is not released
            // until `release`, so the producer does not write it meanwhile.
            each(unsafe { self.data.slice(f.at, f.len) });
        }
        #[cfg(loom)]
        {
            let mut buf = vec![0; f.len];
            self.data.read(f.at, &mut buf);
            each(&buf);
        }
    }

    #[inline]
    fn copy_out(&mut self, f: Frame, buf: &mut Vec<u8>) {
        buf.clear();
        buf.resize(f.len, 0);
        self.data.read(f.at, buf);
        self.head = f.next;
        self.release(1);
    }

    /// Publishes our position: the producer may reuse everything before it.
    #[inline]
    fn release(&mut self, messages: u64) {
        self.received = self.received.wrapping_add(messages);
        // Relaxed: a statistic for tools, on our own line.
        self.ctl
            .head
            .received
            .store(self.received, Ordering::Relaxed);
        // Release: pairs with the producer's Acquire load of `head` in `reserve_now`;
        // our reads of the released frames happen before it overwrites them.
        self.ctl.head.pos.store(self.head, Ordering::Release);
        self.ctl.wake.notify_space();
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
        matches!(self.c.peek(), Ok(Some(_)) | Err(_)) || self.epoch_changed()
    }

    fn epoch_changed(&self) -> bool {
        self.c.peer_gone || self.c.ctl.ends.epoch.load(Ordering::Acquire) != self.c.seen_epoch
    }

    fn words(&self) -> (&FutexWord, &AtomicU32) {
        (&self.c.ctl.wake.data_seq, &self.c.ctl.wake.consumer_waiting)
    }

    fn liveness_due(&mut self, now: Instant, slice: Duration) -> bool {
        self.c.clock.due_at(now, slice)
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn check_peer(&mut self) -> Result<()> {
        self.c.check_producer()
    }
}

/// A received message, lent in place; its space is released when the guard drops.
///
/// The bytes live in shared memory. The protocol keeps a well-behaved producer
/// from writing them until the guard drops; a producer that breaks the protocol
/// can change them under you (never make this process read out of bounds). When
/// the producer is not trusted, copy with [`Consumer::recv_into`] and validate.
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
            consumer.data.read(f.at, &mut b);
            b
        };
        ReadGuard {
            consumer,
            f,
            #[cfg(loom)]
            buf,
        }
    }

    /// Copies the payload out.
    #[inline]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.f.len];
        self.consumer.data.read(self.f.at, &mut v);
        v
    }
}

impl core::ops::Deref for ReadGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        #[cfg(not(loom))]
        {
            // SAFETY: the frame was published (Acquire in `peek`) and is released only
            // when this guard drops, so the producer does not write it meanwhile;
            // `&mut Consumer` keeps anyone in this process from releasing it earlier.
            unsafe { self.consumer.data.slice(self.f.at, self.f.len) }
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
