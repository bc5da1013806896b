//! The sending side of a ring of any kind, and its write guard: every form of
//! sending written once, over the kind's [`ProducerCore`].
//!
//! Each form is one private operation (`claim`) with a [`Wait`]: `try_` forms
//! do not wait (`Full`), blocking forms wait as the [`WaitConfig`] says, and
//! `_timeout` forms wait until a deadline.
//!
//! # Safety
//! A claimed frame is reachable only through the [`WriteGuard`], which holds
//! `&mut Producer`, until it is published; the core's protocol keeps the
//! consumer (and, for MPSC, the other producers) away from it meanwhile.
#![allow(unsafe_code)]

use std::time::Duration;

use crate::error::{Error, Result};
use crate::failpoint;
use crate::kind::{Claim, EndCore, Kind, ProducerCore};
use crate::region::Lent;
use crate::sync;
use crate::wait::{self, Interrupter, Wait, WaitConfig};

/// The sending side of a ring of kind `K` ([`crate::spsc::Producer`],
/// [`crate::mpsc::Producer`]).
pub struct Producer<K: Kind> {
    pub(crate) core: K::Producer,
    /// A claim made by [`Producer::try_hold`] and not yet turned into a guard
    /// by [`Producer::take_held`] (an async reserve's two steps in one poll).
    pub(crate) held: Option<(Claim, usize)>,
}

impl<K: Kind> core::fmt::Debug for Producer<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::kind::fmt_end(f, "Producer", K::NAME, &self.core)
    }
}

impl<K: Kind> Producer<K> {
    /// The largest message this ring takes.
    pub fn max_message_len(&self) -> usize {
        self.core.max_payload()
    }

    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> usize {
        self.core.capacity()
    }

    /// The wait configuration.
    pub fn wait_config(&self) -> WaitConfig {
        self.core.local().cfg
    }

    /// Changes the wait configuration.
    pub fn set_wait_config(&mut self, cfg: WaitConfig) {
        self.core.local_mut().cfg = cfg;
    }

    /// How this producer rings a consumer that waits on its doorbell
    /// ([`crate::Doorbell`], armed by `Consumer::set_doorbell`). Without one, such a
    /// consumer is not woken by this producer's messages (it looks again once
    /// its wait slice, as far as its own event loop makes it). Setting one is
    /// a peer event: a consumer waiting on its doorbell is rung now, as it is
    /// when this producer closes.
    pub fn set_ringer(&mut self, ringer: std::sync::Arc<dyn crate::Ringer>) {
        self.core.local_mut().ringer = Some(ringer);
        self.core.ring_if_armed();
    }

    /// The flag that interrupts this end's blocking calls ([`Interrupter`]).
    pub fn interrupter(&self) -> Interrupter {
        self.core.local().interrupt.clone()
    }

    /// Makes `interrupter` this end's flag (a handle made before the end
    /// attached, for example).
    pub fn set_interrupter(&mut self, interrupter: Interrupter) {
        self.core.local_mut().interrupt = interrupter;
    }

    /// Reserves room for a message of `len` bytes without waiting. Write the
    /// payload into the guard, then [`WriteGuard::commit`]; a guard dropped
    /// uncommitted sends nothing.
    ///
    /// MPSC: until the guard is committed or dropped, no producer's later message
    /// is received, and once the ring is full every producer waits (see
    /// [`Producer::reserve`]).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] (never fits), [`Error::Full`] (not now),
    /// [`Error::Disconnected`] (the consumer is gone), [`Error::Corrupted`].
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_, K>> {
        self.reserve_with(len, Wait::Try)
    }

    /// Reserves room for `len` bytes, waiting as the wait strategy says.
    ///
    /// # MPSC: a held reservation stops every producer
    /// On an MPSC ring the guard is a claim on the next part of the ring, and the
    /// consumer reads in ring order: it cannot pass a claim that is not committed.
    /// Until the guard is committed or dropped, what other producers send after it
    /// is not received, and once they have filled the ring every producer waits
    /// (nothing moves while a live producer holding a guard is stopped or
    /// blocked). This follows from the design. Keep guards short, or use `send`;
    /// give a producer that cannot be trusted to do so its own SPSC ring. A
    /// producer that dies holding a guard has its claim reclaimed; a live one is
    /// waited for.
    ///
    /// # Errors
    /// As [`Producer::try_reserve`], without `Full`.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_, K>> {
        self.reserve_with(len, Wait::Until(None))
    }

    /// Reserves room for `len` bytes, waiting at most `timeout`.
    ///
    /// MPSC: until the guard is committed or dropped, no producer's later message
    /// is received, and once the ring is full every producer waits (see
    /// [`Producer::reserve`]).
    ///
    /// # Errors
    /// As [`Producer::reserve`], plus [`Error::Timeout`].
    #[inline]
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_, K>> {
        self.reserve_with(len, Wait::timeout(timeout))
    }

    /// Sends a copy of `msg` without waiting.
    ///
    /// # Errors
    /// As [`Producer::try_reserve`].
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_with(msg, Wait::Try)
    }

    /// Sends a copy of `msg`, waiting for room as the wait strategy says.
    ///
    /// # Errors
    /// As [`Producer::reserve`].
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_with(msg, Wait::Until(None))
    }

    /// Sends a copy of `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Producer::reserve_timeout`].
    #[inline]
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_with(msg, Wait::timeout(timeout))
    }

    /// Sends as many of `msgs` as fit now, in order, published with one store
    /// and one notification. Returns how many were sent. (MPSC: at most 64 per
    /// call, and a batch stops at the end of the data area; a producer that dies
    /// inside the call loses the batch, except in its last few stores, where the
    /// later messages may still be delivered without the first.)
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the first message can never fit;
    /// [`Error::Full`] if not even the first fits now; [`Error::Disconnected`],
    /// [`Error::Corrupted`].
    pub fn try_send_batch<'m, I>(&mut self, msgs: I) -> Result<usize>
    where
        I: IntoIterator<Item = &'m [u8]>,
    {
        self.core.send_batch(msgs.into_iter())
    }

    /// Bytes published and not yet consumed, as far as this producer knows.
    pub fn len_hint(&self) -> usize {
        self.core.len_hint()
    }

    /// Drops this handle without marking the endpoint closed: for a process that
    /// inherited the handle across `fork` but is not the one using it, so that its
    /// copy going away does not look, to the peer, like the real endpoint closing.
    pub fn detach(mut self) {
        self.core.local_mut().closed = true;
    }

    /// Marks the producer closed and wakes the consumer. Dropping does it too;
    /// this form is for a process that must not release the ring's memory yet.
    pub fn close(&mut self) {
        self.core.close_once();
    }

    #[inline(always)]
    fn reserve_with(&mut self, len: usize, wait: Wait) -> Result<WriteGuard<'_, K>> {
        let claim = self.claim(len, wait)?;
        Ok(WriteGuard {
            producer: self,
            claim: Some(claim),
            lent: Lent::writing(len),
        })
    }

    #[inline(always)]
    fn send_with(&mut self, msg: &[u8], wait: Wait) -> Result<()> {
        let c = self.claim(msg.len(), wait)?;
        if K::Producer::POLLED_HEADERS {
            self.core.data().write_payload(c.at, msg);
        } else {
            self.core.data().write(c.at, msg);
        }
        failpoint::hit("mid_payload");
        self.core.commit(c, msg.len());
        Ok(())
    }

    /// The one claim every form makes: the fast path, always inlined (as a call
    /// it returns its `Result` through memory, and the store-to-load stalls of
    /// that copy made a zero-copy send twice as slow in the criterion benches).
    #[inline(always)]
    fn claim(&mut self, len: usize, wait: Wait) -> Result<Claim> {
        match self.core.claim(len)? {
            Some(c) => Ok(c),
            None => self.claim_slow(len, wait),
        }
    }

    /// No room now: `Full`, or wait (kept out of line, so that the fast path
    /// stays small; found by the criterion benches, where inlining the wait made
    /// the whole claim an out-of-line call and a zero-copy send twice as slow).
    #[cold]
    #[inline(never)]
    fn claim_slow(&mut self, len: usize, wait: Wait) -> Result<Claim> {
        wait::nothing_now(
            &mut self.core,
            wait,
            Error::Full,
            |c: &mut K::Producer| c.full_or_gone(),
            |c: &mut K::Producer| c.claim(len),
            |c: &mut K::Producer| c.room_ready(len),
        )
    }
}

impl<K: Kind> Producer<K> {
    /// Claims room for `len` bytes now, if there is some, and holds the claim in
    /// the producer for [`Producer::take_held`]: `Ok(true)` when held,
    /// `Ok(false)` when full (errors as [`Producer::try_reserve`]). A
    /// reservation in two steps, so that a caller that must decide whether it
    /// got a guard before borrowing the producer for the guard's lifetime (an
    /// async reserve) can. A claim held and not taken is given up by the next
    /// `try_hold` and by drop.
    #[doc(hidden)]
    pub fn try_hold(&mut self, len: usize) -> Result<bool> {
        if let Some((c, _)) = self.held.take() {
            self.core.abort(c);
        }
        match self.core.claim(len)? {
            Some(c) => {
                self.held = Some((c, len));
                Ok(true)
            }
            None => {
                self.core.full_or_gone()?;
                Ok(false)
            }
        }
    }

    /// The guard of the claim [`Producer::try_hold`] holds (`None` if none).
    #[doc(hidden)]
    pub fn take_held(&mut self) -> Option<WriteGuard<'_, K>> {
        let (claim, len) = self.held.take()?;
        Some(WriteGuard {
            producer: self,
            claim: Some(claim),
            lent: Lent::writing(len),
        })
    }
}

impl<K: Kind> Drop for Producer<K> {
    #[inline]
    fn drop(&mut self) {
        if !sync::model_unwinding() {
            if let Some((c, _)) = self.held.take() {
                self.core.abort(c);
            }
            self.close();
        }
    }
}

/// Room reserved in the ring for one message: write the payload through
/// `DerefMut`, then [`WriteGuard::commit`]. Dropped uncommitted, it sends nothing
/// (an MPSC claim becomes padding).
pub struct WriteGuard<'a, K: Kind> {
    producer: &'a mut Producer<K>,
    /// `None` once committed.
    claim: Option<Claim>,
    lent: Lent,
}

impl<K: Kind> WriteGuard<'_, K> {
    /// Publishes the message.
    #[inline]
    pub fn commit(self) {
        let len = self.reserved().len;
        self.commit_prefix(len);
    }

    /// Publishes the first `len` bytes (`len` at most the reserved length).
    #[inline]
    pub(crate) fn commit_prefix(mut self, len: usize) {
        let c = self.claim.take().expect("a guard commits once");
        assert!(len <= c.len, "commit beyond the reservation");
        self.lent.flush(self.producer.core.data(), c.at, len);
        failpoint::hit("mid_payload");
        self.producer.core.commit(c, len);
    }

    #[inline]
    fn reserved(&self) -> Claim {
        self.claim.expect("claim held until commit")
    }
}

impl<K: Kind> Drop for WriteGuard<'_, K> {
    #[inline]
    fn drop(&mut self) {
        if let Some(c) = self.claim.take() {
            self.producer.core.abort(c);
        }
    }
}

impl<K: Kind> core::ops::Deref for WriteGuard<'_, K> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let c = self.reserved();
        // SAFETY: the bytes are our claim, not published until `commit`: the
        // consumer reads them only after the core's Release publication, no other
        // producer claims them, and the guard holds `&mut Producer`.
        unsafe { self.lent.bytes(self.producer.core.data(), c.at, c.len) }
    }
}

impl<K: Kind> core::ops::DerefMut for WriteGuard<'_, K> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let c = self.reserved();
        // SAFETY: as in `deref`; `&mut self` makes this the only access.
        unsafe { self.lent.bytes_mut(self.producer.core.data(), c.at, c.len) }
    }
}
