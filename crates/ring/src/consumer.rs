//! The receiving side of a ring of any kind, and its read guard: every form of
//! receiving written once, over the kind's [`ConsumerCore`].
//!
//! # Safety
//! A published frame is reachable only through the [`ReadGuard`] (or the batch
//! callback), which holds `&mut Consumer`, until its space is released; the
//! core's protocol keeps producers from writing it meanwhile.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ctl::WAIT_BELL;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::kind::{ConsumerCore, EndCore, Kind, Readable};
use crate::region::Lent;
use crate::sync::{self, Ordering};
use crate::wait::{self, Doorbell, Interrupter, Wait, WaitConfig};

/// Rounds of arming a non-blocking receive makes when the ring turns out
/// ready after it armed (a message raced in, or the peers moved) before it
/// says `Empty` with the doorbell armed.
const ARM_ROUNDS: u32 = 4;

/// The receiving side of a ring of kind `K` ([`crate::spsc::Consumer`],
/// [`crate::mpsc::Consumer`]).
pub struct Consumer<K: Kind> {
    pub(crate) core: K::Consumer,
}

impl<K: Kind> core::fmt::Debug for Consumer<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::kind::fmt_end(f, "Consumer", K::NAME, &self.core)
    }
}

impl<K: Kind> Consumer<K> {
    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.core.capacity()
    }

    /// The largest message this ring takes.
    pub fn max_message_len(&self) -> usize {
        crate::frame::max_payload(self.core.capacity())
    }

    /// The wait configuration.
    pub fn wait_config(&self) -> WaitConfig {
        self.core.local().cfg
    }

    /// Changes the wait configuration.
    pub fn set_wait_config(&mut self, cfg: WaitConfig) {
        self.core.local_mut().cfg = cfg;
    }

    /// The flag that interrupts this end's blocking calls ([`Interrupter`]).
    pub fn interrupter(&self) -> Interrupter {
        self.core.local().interrupt.clone()
    }

    /// Reports [`Error::Disconnected`] only once at least `n` producer
    /// attachments have happened (over the ring's life), none is attached now,
    /// and everything committed is received: "done" said explicitly. Unset, a
    /// [`Lifecycle::Session`] consumer expects 1 and a [`Lifecycle::Queue`]
    /// consumer never reports `Disconnected` (it waits for the next producer).
    ///
    /// [`Lifecycle::Session`]: crate::Lifecycle::Session
    /// [`Lifecycle::Queue`]: crate::Lifecycle::Queue
    pub fn expect_producers(&mut self, n: u32) {
        self.core.local_mut().expected = Some(n);
    }

    /// Makes every non-blocking receive that finds nothing (`try_recv`,
    /// `try_recv_into`, a `try_recv_batch` of none) arm `doorbell` before it
    /// says `Empty`: the consumer's flag says "ring my doorbell", so the next
    /// message (or producer attaching or closing) makes the doorbell readable
    /// through the producer's [`crate::Ringer`]. Each such receive costs a
    /// [`Doorbell::clear`], a store and a fence. `None` stops it. Blocking
    /// receives wait on the futex as before.
    pub fn set_doorbell(&mut self, doorbell: Option<Arc<dyn Doorbell>>) {
        self.core.local_mut().doorbell = doorbell;
    }

    /// Makes `interrupter` this end's flag (a handle made before the end
    /// attached, for example).
    pub fn set_interrupter(&mut self, interrupter: Interrupter) {
        self.core.local_mut().interrupt = interrupter;
    }

    /// Whether this consumer's releases hand the cache lines they free back to
    /// the producer by storing back one word of each (on by default; SPSC
    /// only, see docs/PROTOCOL.md section 4). The bytes keep their values, but
    /// the pages are written again: a channel whose file is synced turns it off,
    /// or every sync would write each message's pages a second time.
    pub fn set_hand_back(&mut self, on: bool) {
        self.core.set_hand_back(on);
    }

    /// Receives the next message without waiting, lending its payload in place;
    /// the space is released when the guard drops.
    ///
    /// # Errors
    /// [`Error::Empty`] (nothing now), [`Error::Disconnected`] (the producers are
    /// gone and everything they published has been received), [`Error::Corrupted`].
    #[inline]
    pub fn try_recv(&mut self) -> Result<ReadGuard<'_, K>> {
        self.recv_with(Wait::Try)
    }

    /// Receives the next message, waiting as the wait strategy says.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`], without `Empty`.
    #[inline]
    pub fn recv(&mut self) -> Result<ReadGuard<'_, K>> {
        self.recv_with(Wait::Until(None))
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv`], plus [`Error::Timeout`].
    #[inline]
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, K>> {
        self.recv_with(Wait::timeout(timeout))
    }

    /// Receives the next message into `buf` (cleared first), waiting as the wait
    /// strategy says. The copy is made before the space is released, so the bytes
    /// are private to the caller whatever the peer does afterwards.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    #[inline]
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_into_with(buf, Wait::Until(None))
    }

    /// As [`Consumer::recv_into`] without waiting.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`].
    #[inline]
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_into_with(buf, Wait::Try)
    }

    /// As [`Consumer::recv_into`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv_timeout`].
    #[inline]
    pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        self.recv_into_with(buf, Wait::timeout(timeout))
    }

    /// Hands up to `max` waiting messages to `each`, in order, in place, then
    /// releases all their space with one store and one notification. Returns how
    /// many were handed over (0 if none were waiting, or `max` is 0).
    ///
    /// # Errors
    /// [`Error::Disconnected`] if none were waiting and the producers are gone;
    /// [`Error::Corrupted`].
    #[inline]
    pub fn try_recv_batch(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> Result<usize> {
        let n = self.hand_over(None, max, &mut each)?;
        if n > 0 {
            return Ok(n);
        }
        match self.try_slow() {
            // A message came while the doorbell was armed: hand it over, from
            // the frame found (none if `max` is 0).
            Ok(f) => self.hand_over(Some(f), max, &mut each),
            Err(Error::Empty) => Ok(0),
            Err(e) => Err(self.reported(e)),
        }
    }

    /// Hands up to `max` messages to `each` (as [`Consumer::try_recv_batch`]),
    /// waiting as the wait strategy says until there is at least one. Returns
    /// how many (0 only if `max` is 0).
    ///
    /// With a linger ([`WaitConfig::linger`]), a call that comes less than the
    /// linger after the previous one took every message there first waits
    /// until the linger has passed since then, without reading the ring, so
    /// that a stream is taken in batches while the producer writes undisturbed.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub fn recv_batch(&mut self, max: usize, each: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_with(max, None, each)
    }

    /// As [`Consumer::recv_batch`], waiting at most `timeout` (the linger
    /// included).
    ///
    /// # Errors
    /// As [`Consumer::recv_timeout`].
    pub fn recv_batch_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        each: impl FnMut(&[u8]),
    ) -> Result<usize> {
        self.recv_batch_with(max, Some(Instant::now() + timeout), each)
    }

    /// Bytes published and not yet consumed.
    pub fn len_hint(&self) -> usize {
        self.core.len_hint()
    }

    /// Whether a message is waiting now.
    ///
    /// # Errors
    /// [`Error::Corrupted`].
    pub fn has_message(&mut self) -> Result<bool> {
        match self.core.peek() {
            Ok(f) => Ok(f.is_some()),
            // A receive would return (the lap); it is reported then.
            Err(Error::Lagged(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Drops this handle without marking the endpoint closed: for a process that
    /// inherited the handle across `fork` but is not the one using it, so that its
    /// copy going away does not look, to the peer, like the real endpoint closing.
    pub fn detach(mut self) {
        self.core.local_mut().closed = true;
    }

    /// Marks the consumer closed and wakes the producers. Dropping does it too.
    pub fn close(&mut self) {
        self.core.close_once();
    }

    /// Hands up to `max` frames to `each`, starting with `first` (a frame the
    /// caller's look just found) or with a look of its own, then releases them
    /// all with one store. Stops at the first look that finds nothing, and at a
    /// lap once something was handed over (the next receive reports it).
    #[inline(always)]
    fn hand_over(
        &mut self,
        mut first: Option<Readable>,
        max: usize,
        each: &mut impl FnMut(&[u8]),
    ) -> Result<usize> {
        let mut n = 0;
        while n < max {
            let look = match first.take() {
                Some(f) => Ok(Some(f)),
                None => self.core.peek(),
            };
            let f = match look {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(Error::Lagged(_)) if n > 0 => break,
                Err(e) => return Err(self.reported(e)),
            };
            match self.core.staged() {
                Some(copy) => each(copy),
                // SAFETY: the frame is published (the core's Acquire load of its
                // header) and not released until `release` below, so no producer
                // writes it meanwhile; `&mut self` keeps this process away too.
                None => unsafe { self.core.data().lend(f.at, f.len, &mut *each) },
            }
            self.core.advance(f);
            n += 1;
        }
        if n > 0 {
            self.core.release(n as u64);
        }
        Ok(n)
    }

    /// Every blocking batch form: the linger, a wait for the first message,
    /// then what is there.
    fn recv_batch_with(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize> {
        if max == 0 {
            // As a non-blocking batch of none: 0, or why this end stopped.
            return self.try_recv_batch(0, each);
        }
        let linger = self.core.local().cfg.linger;
        if !linger.is_zero() {
            let local = self.core.local();
            if let Some(drained) = local.drained_at {
                wait::linger(&local.cfg, &local.interrupt, drained + linger, deadline);
            }
        }
        let first = self.next(Wait::Until(deadline))?;
        let n = self.hand_over(Some(first), max, &mut each)?;
        if !linger.is_zero() {
            // A full batch may have left more behind: the next call looks at once.
            self.core.local_mut().drained_at = (n < max).then(Instant::now);
        }
        Ok(n)
    }

    #[inline(always)]
    fn recv_with(&mut self, wait: Wait) -> Result<ReadGuard<'_, K>> {
        let f = self.next(wait)?;
        let lent = Lent::reading(self.core.data(), f.at, f.len);
        Ok(ReadGuard {
            consumer: self,
            f,
            lent,
        })
    }

    #[inline(always)]
    fn recv_into_with(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<()> {
        let f = self.next(wait)?;
        buf.clear();
        match self.core.staged() {
            Some(copy) => buf.extend_from_slice(copy),
            None => {
                buf.resize(f.len, 0);
                self.core.data().read(f.at, buf);
            }
        }
        self.core.advance(f);
        self.core.release(1);
        Ok(())
    }

    /// The one look for a message every form makes: the fast path, always
    /// inlined (as `Producer::claim`).
    #[inline(always)]
    fn next(&mut self, wait: Wait) -> Result<Readable> {
        match self.core.peek() {
            Ok(Some(f)) => Ok(f),
            Ok(None) => self.next_slow(wait).map_err(|e| self.reported(e)),
            Err(e) => Err(self.reported(e)),
        }
    }

    /// An error on its way to the user: a lap it reports is then told
    /// ([`ConsumerCore::lag_reported`]).
    #[cold]
    #[inline(never)]
    fn reported(&mut self, e: Error) -> Error {
        if let Error::Lagged(_) = e {
            self.core.lag_reported();
        }
        e
    }

    /// Nothing now, and not waiting: `Empty` (the doorbell armed, if there is
    /// one), a gone peer, or a message that came while arming.
    #[cold]
    #[inline(never)]
    fn try_slow(&mut self) -> Result<Readable> {
        for _ in 0..ARM_ROUNDS {
            self.core.empty_or_gone()?;
            let Some(bell) = self.core.local().doorbell.clone() else {
                return Err(Error::Empty);
            };
            bell.clear();
            if !self.arm_doorbell(bell.id()) {
                return Err(Error::Empty);
            }
            if let Some(f) = self.core.peek()? {
                return Ok(f);
            }
        }
        // Ready after every arming (the peers keep moving): the flag is still
        // set, so `Empty` now loses no wake-up (at worst a producer rings for
        // nothing).
        Err(Error::Empty)
    }

    /// Sets the consumer's flag to "ring my doorbell `id`" and re-checks:
    /// whether a receive would not say `Empty` now (a message, damage, or the
    /// peers moved). The flag stays set either way; whoever clears it rings.
    fn arm_doorbell(&mut self, id: u64) -> bool {
        let (_, flag) = self.core.wait_words();
        // Relaxed: published by the Release store of the flag below.
        self.core.bell_word().store(id, Ordering::Relaxed);
        // Release: pairs with the Acquire compare-and-swap in `ctl::take_flag`,
        // so that a producer that clears the flag reads this id.
        flag.store(WAIT_BELL, Ordering::Release);
        failpoint::hit("after_doorbell_armed");
        // SeqCst fence, or the heavy barrier of an asymmetric ring: pairs with
        // the notifier's barrier in `WakeLine::notify_data` (and the fence in
        // `ring_if_armed`): either the re-check below sees the producer's
        // publication (or epoch bump), or the producer sees the flag and rings.
        // If the heavy barrier failed (a jail refused it), a light producer
        // may miss the flag: the doorbell's slice timer is then the wake-up.
        let _ = self.core.local().waiter_barrier();
        matches!(self.core.peek(), Ok(Some(_)) | Err(_))
            || self.core.local().epoch_changed(&self.core.ends().epoch)
    }

    /// Nothing now: `Empty`, or wait (out of line, as `Producer::claim_slow`).
    #[cold]
    #[inline(never)]
    fn next_slow(&mut self, wait: Wait) -> Result<Readable> {
        if let Wait::Try = wait {
            return self.try_slow();
        }
        wait::nothing_now(
            &mut self.core,
            wait,
            Error::Empty,
            |c: &mut K::Consumer| c.empty_or_gone(),
            |c: &mut K::Consumer| c.peek(),
            |c: &mut K::Consumer| matches!(c.peek(), Ok(Some(_)) | Err(_)),
        )
    }
}

impl<K: Kind> Drop for Consumer<K> {
    #[inline]
    fn drop(&mut self) {
        if !sync::model_unwinding() {
            self.close();
        }
    }
}

/// A received message, lent in place; its space is released when the guard drops.
///
/// The bytes live in shared memory. The protocol keeps a well-behaved producer
/// from writing them until the guard drops; a producer that breaks the protocol
/// can change them under you (never make this process read out of bounds). When
/// the producer is not trusted, copy with [`Consumer::recv_into`] and validate.
pub struct ReadGuard<'a, K: Kind> {
    consumer: &'a mut Consumer<K>,
    f: Readable,
    lent: Lent,
}

impl<K: Kind> ReadGuard<'_, K> {
    /// Copies the payload out.
    #[inline]
    pub fn to_vec(&self) -> Vec<u8> {
        (**self).to_vec()
    }
}

impl<K: Kind> core::ops::Deref for ReadGuard<'_, K> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        if let Some(copy) = self.consumer.core.staged() {
            return copy;
        }
        // SAFETY: the frame was published (the core's Acquire load of its header)
        // and is released only when this guard drops, so no producer writes it
        // meanwhile; `&mut Consumer` keeps anyone in this process from releasing it.
        unsafe {
            self.lent
                .bytes(self.consumer.core.data(), self.f.at, self.f.len)
        }
    }
}

impl<K: Kind> Drop for ReadGuard<'_, K> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.core.advance(self.f);
        self.consumer.core.release(1);
    }
}
