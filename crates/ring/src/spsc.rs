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
//! `Release` (which lets the producer reuse the space) and notifies; before a
//! release of 256 bytes or more it first stores back one word of each cache
//! line the release frees, so that those lines come back to the producer
//! written rather than shared (`Data::hand_back`).
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
//! # Structure
//! This module is the SPSC core: the layout, [`ProducerCore`] and
//! [`ConsumerCore`] (claim, commit, abort, batch; peek, release). Every form a
//! user calls is written once in [`crate::Producer`] and [`crate::Consumer`];
//! [`Producer`] and [`Consumer`] here are those types for this kind.

use std::sync::Arc;

use crate::ctl::{CLOSED, SpscControl};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::frame::{self, HEADER_LEN, SpscFrame};
use crate::geometry::Geometry;
use crate::kind::{Claim, ConsumerCore as _, EndCore as _, ProducerCore as _, Readable, Spsc};
use crate::local::Local;
use crate::peer::{check_positions, stale_tail};
use crate::region::{Ctl, Data, HAND_BACK_MIN, LINE, Region};
use crate::sync::Ordering;
use crate::wait::{Endpoint, Liveness, WaitConfig};

/// The sending side of an SPSC byte ring.
pub type Producer = crate::Producer<Spsc>;
/// The receiving side of an SPSC byte ring.
pub type Consumer = crate::Consumer<Spsc>;
/// Room reserved for one message (see [`crate::WriteGuard`]).
pub type WriteGuard<'a> = crate::WriteGuard<'a, Spsc>;
/// A received message lent in place (see [`crate::ReadGuard`]).
pub type ReadGuard<'a> = crate::ReadGuard<'a, Spsc>;

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
/// [`Error::RegionTooSmall`].
///
/// # Panics
/// If `start` is not a multiple of 8.
pub fn init(region: &Region, geometry: Geometry<Spsc>, start: u64) -> Result<()> {
    assert!(start.is_multiple_of(8), "positions are 8-aligned");
    geometry.check(region)?;
    let cap = geometry.capacity();
    let ctl: Ctl<SpscControl> = Ctl::new(region);
    // Relaxed: the region is published to peers afterwards by the segment's
    // Release store of its ready state (or by spawning the threads that use it).
    ctl.head.pos.store(start, Ordering::Relaxed);
    ctl.tail.store(start, Ordering::Relaxed);
    ctl.wake.init_fences();
    // The header slot at `start` must read 0 (the end marker): it does in fresh
    // memory, and we make sure for a region being reused.
    let data = region.data(CONTROL_LEN, cap);
    data.word((start & (cap as u64 - 1)) as usize)
        .store(0, Ordering::Relaxed);
    Ok(())
}

const _: () = assert!(CONTROL_LEN.is_multiple_of(LINE));

/// The SPSC producer core.
#[doc(hidden)]
pub struct ProducerCore {
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
    local: Local,
}

/// The SPSC consumer core.
#[doc(hidden)]
pub struct ConsumerCore {
    ctl: Ctl<SpscControl>,
    data: Data,
    cap: usize,
    mask: u64,
    /// Our position: the next frame to read.
    head: u64,
    /// The `head` we last published: the bytes from here to `head` are read and
    /// still ours, until `release` publishes them.
    released: u64,
    /// Messages received (published with `head`).
    received: u64,
    /// Whether releases hand their lines back (`Data::hand_back`); off on a
    /// channel whose file is synced, where it would write the pages again.
    hand_back: bool,
    local: Local,
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
    /// [`Error::RegionTooSmall`], or [`Error::Corrupted`] if the positions in the region are inconsistent.
    pub fn attach(
        region: &Region,
        geometry: Geometry<Spsc>,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Producer> {
        geometry.check(region)?;
        let cap = geometry.capacity();
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
        // Release: pairs with the Acquire load of `tail` in a later producer's
        // attach, which resumes from the position we publish here.
        ctl.tail.store(tail, Ordering::Release);
        // Acquire: pairs with the Release increment of the epoch by other ends.
        let seen_epoch = ctl.ends.epoch.load(Ordering::Acquire);
        ctl.ends.producer.attach(&ctl.ends.epoch, &ctl.wake);
        let mut local = Local::new(cfg, liveness, seen_epoch, head);
        local.read_fences(&ctl.wake.fences);
        local.note(&ctl.ends.consumer, Endpoint::Consumer);
        Ok(crate::Producer {
            core: ProducerCore {
                ctl,
                data,
                cap,
                mask,
                tail,
                cached_head: head,
                // The end marker at `tail` is 0 (the invariant); nothing beyond is known.
                zeroed_to: tail.wrapping_add(HEADER_LEN as u64),
                local,
            },
            held: None,
        })
    }
}

impl WriteGuard<'_> {
    /// Publishes only the first `len` bytes (for a message whose size was only
    /// bounded when reserving).
    ///
    /// # Panics
    /// If `len` exceeds the reserved length.
    #[inline]
    pub fn commit_len(self, len: usize) {
        self.commit_prefix(len);
    }
}

impl ProducerCore {
    /// Where a frame of `f` bytes goes: `(padding, offset)`, the padding to write
    /// first (at `tail`, up to the end of the area) and the frame's offset.
    #[inline]
    fn placement(&self, f: usize) -> (usize, usize) {
        let o = (self.tail & self.mask) as usize;
        if o + f <= self.cap {
            (0, o)
        } else {
            (self.cap - o, 0)
        }
    }

    /// Finds room for `len` bytes now: `Ok(None)` if the ring is full.
    #[inline(always)]
    fn reserve_now(&mut self, len: usize) -> Result<Option<Claim>> {
        self.admit(len)?;
        let f = frame::frame_len(len);
        let (pad, at) = self.placement(f);
        let need = (pad + f + HEADER_LEN) as u64;
        if self.tail.wrapping_sub(self.cached_head) + need > self.cap as u64 {
            // Acquire: pairs with the consumer's Release store of `head`, so its reads
            // of the frames it released are done before we overwrite them.
            let head = self.ctl.head.pos.load(Ordering::Acquire);
            if let Err(e) = check_positions(head, self.tail, self.cap) {
                return Err(self.local.poison(e));
            }
            self.cached_head = head;
            self.local.saw_head(head);
            if self.tail.wrapping_sub(head) + need > self.cap as u64 {
                return Ok(None);
            }
        }
        Ok(Some(Claim {
            at: at + HEADER_LEN,
            len,
        }))
    }

    /// The padding a claim made at the current `tail` needs before its frame:
    /// `(bytes, offset)`, 0 bytes if the frame did not wrap (a wrapped frame is
    /// at offset 0 and `tail` is not).
    #[inline]
    fn padding_of(&self, c: Claim) -> (usize, usize) {
        let o = (self.tail & self.mask) as usize;
        if c.at - HEADER_LEN == o {
            (0, o)
        } else {
            (self.cap - o, o)
        }
    }

    /// Stores the header(s) of a frame whose payload is written, with `pad`
    /// bytes of padding at `pad_at` before it.
    #[inline]
    fn write_headers(&self, c: Claim, (pad, pad_at): (usize, usize), len: usize, order: Ordering) {
        let at = c.at - HEADER_LEN;
        if pad > 0 {
            // The message at offset 0 first; the padding header, which the consumer
            // reaches first, last.
            self.data
                .word(at)
                .store(frame::spsc_message(len), Ordering::Relaxed);
            self.data
                .word(pad_at)
                .store(frame::spsc_padding(pad - HEADER_LEN), order);
        } else {
            self.data.word(at).store(frame::spsc_message(len), order);
        }
    }

    #[inline]
    fn commit_frame(&mut self, c: Claim, len: usize) {
        let padding = self.padding_of(c);
        let next = self
            .tail
            .wrapping_add((padding.0 + frame::frame_len(len)) as u64);
        self.end_marker(next);
        failpoint::hit("before_commit");
        // Release: pairs with the consumer's Acquire load of this header; makes the
        // payload and the end marker visible before the header.
        self.write_headers(c, padding, len, Ordering::Release);
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
    /// up to the end of the 128-byte line pair after the one `tail` is in, so that
    /// the end markers of the next frames are already in place: their lines'
    /// ownership moves here now, off the path of any message. Only free space is
    /// zeroed (checked against the cached `head`, which can only be behind the
    /// real one). One 64-byte line ahead left the marker of a 72-byte frame
    /// starting late in a line outside the stretch: with a pair, 64-byte messages
    /// one by one went from 17.7-19.4 to 21.7-22.2 M msgs/s and their round trip's
    /// p99 from 361-370 to 291-340 ns (close placement, alternating builds).
    #[inline]
    fn zero_ahead(&mut self) {
        const AHEAD: u64 = LINE as u64;
        let want = (self.tail | (AHEAD - 1)).wrapping_add(1 + AHEAD);
        let free_end = self.cached_head.wrapping_add(self.cap as u64);
        let start = self.tail.wrapping_add(self.zeroed_len());
        let end = if want.wrapping_sub(self.tail) <= free_end.wrapping_sub(self.tail) {
            want
        } else {
            free_end
        };
        let len = end.wrapping_sub(start);
        let pos = if len.wrapping_sub(1) < self.cap as u64 {
            // Relaxed (in `zero`): the consumer reads these zeroes (the next
            // frame's end marker) only after the Release header store of a later
            // commit publishes them; the space is ours (below `cached_head + cap`,
            // Acquire-loaded). Two stretches when it wraps.
            let (off, len) = ((start & self.mask) as usize, len as usize);
            let first = len.min(self.cap - off);
            self.data.zero(off, first);
            if first < len {
                self.data.zero(0, len - first);
            }
            end
        } else {
            start
        };
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
        self.ctl.wake.notify_data(&self.local);
    }
}

impl crate::kind::EndCore for ProducerCore {
    const EXCLUSIVE_WAIT: bool = true;

    crate::kind::end_accessors!(producer: local, ctl, data, cap);

    #[cold]
    fn check_peer(&mut self) -> Result<()> {
        self.local.check_consumer(&self.ctl.ends, self.cached_head)
    }

    fn len_hint(&self) -> usize {
        // Acquire: pairs with the consumer's Release store of `head`.
        let head = self.ctl.head.pos.load(Ordering::Acquire);
        (self.tail.wrapping_sub(head) as usize).min(self.cap)
    }

    fn announce_close(&mut self) {
        self.ctl
            .ends
            .producer
            .close(&self.ctl.ends.epoch, &self.ctl.wake);
        self.ctl.wake.ring_if_armed(&self.local);
    }
}

impl crate::kind::ProducerCore for ProducerCore {
    #[inline(always)]
    fn claim(&mut self, len: usize) -> Result<Option<Claim>> {
        let c = self.reserve_now(len)?;
        if c.is_some() {
            self.local.consumer_closed(&self.ctl.ends)?;
        }
        Ok(c)
    }

    #[inline]
    fn commit(&mut self, c: Claim, len: usize) {
        if len < c.len {
            // The caller may have written past the committed length, over words
            // that were zeroed ahead: only the marker at `tail` is known now.
            self.forget_zeroed();
        }
        self.commit_frame(c, len);
    }

    fn abort(&mut self, _c: Claim) {
        // Aborted: the reservation's bytes may have been written (found by the
        // ops-vs-model property test), so nothing past `tail` is known zero.
        self.forget_zeroed();
    }

    fn ring_if_armed(&self) {
        self.ctl.wake.ring_if_armed(&self.local);
    }

    fn room_ready(&self, len: usize) -> bool {
        // Acquire: as in `reserve_now`.
        let head = self.ctl.head.pos.load(Ordering::Acquire);
        let f = frame::frame_len(len);
        let (pad, _) = self.placement(f);
        let need = (pad + f + HEADER_LEN) as u64;
        self.tail.wrapping_sub(head).wrapping_add(need) <= self.cap as u64
    }

    /// Writes every frame that fits now, then publishes them all with a single
    /// header store (the first frame's, last) and one notification.
    fn send_batch<'m>(&mut self, mut msgs: impl Iterator<Item = &'m [u8]>) -> Result<usize> {
        // The first frame: its header is stored last, and the consumer polls its
        // line (see `Data::write_payload`). Nothing (or no room) sends nothing.
        let first = match msgs.next() {
            Some(msg) => self.reserve_now(msg.len())?.map(|c| (c, msg)),
            None => None,
        };
        let Some((first, msg)) = first else {
            crate::kind::ProducerCore::full_or_gone(self)?;
            return Err(Error::Full);
        };
        self.data.write_payload(first.at, msg);
        let (first_padding, first_len) = (self.padding_of(first), msg.len());
        self.tail = self
            .tail
            .wrapping_add((first_padding.0 + frame::frame_len(first_len)) as u64);
        // The later frames, copied front to back, their headers stored at once.
        let mut n = 1;
        for msg in msgs {
            // An error (or no room) ends the batch: what was written is
            // published, and the next call reports the error (found by the
            // ops-vs-model property test: returning here left frames written
            // and never published, and the ring wedged).
            let Ok(Some(c)) = self.reserve_now(msg.len()) else {
                break;
            };
            self.data.write(c.at, msg);
            let padding = self.padding_of(c);
            self.write_headers(c, padding, msg.len(), Ordering::Relaxed);
            self.tail = self
                .tail
                .wrapping_add((padding.0 + frame::frame_len(msg.len())) as u64);
            n += 1;
        }
        self.end_marker(self.tail);
        // The first frame's header, stored last with Release, publishes the batch.
        self.write_headers(first, first_padding, first_len, Ordering::Release);
        self.publish_tail();
        self.zero_ahead();
        Ok(n)
    }
}

impl Consumer {
    /// Attaches the consumer to an initialised SPSC region, starting at the
    /// published `head` (a consumer that attaches after an earlier one died may
    /// thus see the last message that one was reading again).
    ///
    /// # Errors
    /// [`Error::RegionTooSmall`], [`Error::Corrupted`].
    pub fn attach(
        region: &Region,
        geometry: Geometry<Spsc>,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Consumer> {
        geometry.check(region)?;
        let cap = geometry.capacity();
        let ctl: Ctl<SpscControl> = Ctl::new(region);
        let data = region.data(CONTROL_LEN, cap);
        // Acquire: pairs with the Release store of `head` by an earlier consumer.
        let head = ctl.head.pos.load(Ordering::Acquire);
        if !head.is_multiple_of(8) {
            return Err(Error::corrupted("head", head, head));
        }
        // Acquire: pairs with the Release increment of the epoch by other ends.
        let seen_epoch = ctl.ends.epoch.load(Ordering::Acquire);
        ctl.ends.consumer.attach(&ctl.ends.epoch, &ctl.wake);
        // Relaxed: a statistic, on the consumer's own line.
        let received = ctl.head.received.load(Ordering::Relaxed);
        let mut local = Local::new(cfg, liveness, seen_epoch, head);
        local.read_fences(&ctl.wake.fences);
        local.note(&ctl.ends.producer, Endpoint::Producer(0));
        Ok(crate::Consumer {
            core: ConsumerCore {
                ctl,
                data,
                cap,
                mask: cap as u64 - 1,
                head,
                released: head,
                received,
                hand_back: true,
                local,
            },
        })
    }
}

impl crate::kind::EndCore for ConsumerCore {
    const EXCLUSIVE_WAIT: bool = true;

    crate::kind::end_accessors!(consumer: local, ctl, data, cap);

    /// `Err(Disconnected)` if the producer is gone and nothing is left to read.
    #[cold]
    fn check_peer(&mut self) -> Result<()> {
        let status = self.local.look_at_producer(&self.ctl.ends, self.head)?;
        self.judge_the_producer(status)
    }

    fn len_hint(&self) -> usize {
        // Acquire: pairs with the producer's Release store of `tail`.
        let tail = self.ctl.tail.load(Ordering::Acquire);
        (tail.wrapping_sub(self.head) as usize).min(self.cap)
    }

    fn announce_close(&mut self) {
        self.ctl
            .ends
            .consumer
            .close(&self.ctl.ends.epoch, &self.ctl.wake);
    }
}

impl crate::kind::ConsumerCore for ConsumerCore {
    /// The next readable frame, skipping (and consuming) one padding frame.
    #[inline(always)]
    fn peek(&mut self) -> Result<Option<Readable>> {
        self.local.check()?;
        // At most one padding frame precedes a message (padding at offset 0 is
        // refused by the decoder), so two rounds suffice.
        for _ in 0..2 {
            let off = (self.head & self.mask) as usize;
            // Acquire: pairs with the producer's Release header store in
            // `commit_frame`/`send_batch`: the payload is visible once the header is.
            let raw = self.data.word(off).load(Ordering::Acquire);
            match frame::decode_spsc(raw, off, self.cap) {
                Ok(SpscFrame::Empty) => return Ok(None),
                Ok(SpscFrame::Message { len }) => {
                    return Ok(Some(Readable {
                        at: off + HEADER_LEN,
                        len,
                    }));
                }
                Ok(SpscFrame::Padding { len }) => {
                    self.head = self.head.wrapping_add((HEADER_LEN + len) as u64);
                }
                Err(what) => return Err(self.local.corrupt(what, self.head, raw)),
            }
        }
        Err(self.local.corrupt("padding after padding", self.head, 0))
    }

    #[inline]
    fn advance(&mut self, f: Readable) {
        self.head = f.next(self.head);
    }

    /// Publishes our position: the producer may reuse everything before it.
    #[inline]
    fn release(&mut self, messages: u64) {
        if self.hand_back && self.head.wrapping_sub(self.released) >= HAND_BACK_MIN {
            self.data.hand_back(self.released, self.head);
        }
        self.released = self.head;
        self.received = self.received.wrapping_add(messages);
        // Relaxed: a statistic for tools, on our own line.
        self.ctl
            .head
            .received
            .store(self.received, Ordering::Relaxed);
        // Release: pairs with the producer's Acquire load of `head` in `reserve_now`;
        // our reads of the released frames happen before it overwrites them.
        self.ctl.head.pos.store(self.head, Ordering::Release);
        self.ctl.wake.notify_space(&self.local);
    }

    /// `Empty` from a non-blocking call: is the producer gone (rate-limited)?
    #[cold]
    fn empty_or_gone(&mut self) -> Result<()> {
        self.local.check()?;
        // Relaxed: a hint; `check_peer` reads the state again with Acquire.
        let announced = self.ctl.ends.producer.state.load(Ordering::Relaxed) == CLOSED;
        // The epoch (or `peer_gone`, a look that found the producer done): so
        // that a `Disconnected` a select saw is what this call reports, as MPSC's.
        if announced || self.local.look_due() || self.local.epoch_changed(&self.ctl.ends.epoch) {
            self.check_peer()?;
        }
        Ok(())
    }

    fn bell_word(&self) -> &crate::sync::AtomicU64 {
        &self.ctl.wake.bell
    }

    fn set_hand_back(&mut self, on: bool) {
        self.hand_back = on;
    }
}
