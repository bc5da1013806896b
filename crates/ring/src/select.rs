//! Waiting on many consumers (and producers' [`Room`]) at once: the select of
//! docs/PROTOCOL.md, section 6.
//!
//! The waiter, having found no consumer ready (for a producer's room read
//! "space sequence" and "producers' flag" below, which `notify_space` pairs
//! with; an MPSC producers' flag is shared, so the waiter never clears it):
//! 1. spins over all of them (unless every one's strategy is `Park`), for the
//!    longest spin budget among them;
//! 2. for each consumer, reads its data sequence (`Acquire`) and sets its
//!    waiting flag; then ONE `fence(SeqCst)`; then re-checks every ring; if none
//!    is ready, sleeps on all the sequences at once (`futex_waitv`, at most
//!    [`MAX_WAIT_WORDS`] words) for at most one wait slice;
//! 3. clears its flags, polls every consumer (looking at each one's producers
//!    once a slice or when their epoch moved, as the blocking loop does), and
//!    goes back to 2 if none is ready.
//!
//! Producers are unchanged: a producer publishes, fences, and bumps and wakes
//! only when the consumer's flag is set. For each ring the waiter's store of the
//! flag, the fence and its re-check of that ring against the producer's
//! publication, fence and load of the flag are the Dekker pattern of the
//! single-ring wait: either the re-check sees the message or the producer sees
//! the flag, bumps the sequence the waiter read and wakes it (a bump before the
//! waiter sleeps makes `futex_waitv` return at once). One fence serves every
//! ring: each flag store is before it and each re-check after it.

use std::time::{Duration, Instant};

use crate::consumer::Consumer;
use crate::error::{Error, Result};
use crate::kind::{ConsumerCore, EndCore, Kind, ProducerCore};
use crate::producer::Producer;
use crate::sync::{self, Ordering, WAITV_MAX, fence_seqcst, wait_any};
use crate::wait::WaitConfig;

/// The most rings one sleep waits on (the kernel's `FUTEX_WAITV_MAX`). A select
/// over more consumers sets the waiting flags of, and sleeps on, the first
/// `MAX_WAIT_WORDS` only (the others' producers need not wake a word nobody
/// sleeps on), re-checks all of them, and bounds every sleep by
/// [`OVERFLOW_SLICE`], so that a message on a ring past them is found within it.
pub const MAX_WAIT_WORDS: usize = WAITV_MAX;

/// The longest sleep of a select over more than [`MAX_WAIT_WORDS`] consumers:
/// the latency of a message on a ring it does not sleep on, when nothing else
/// wakes it.
pub const OVERFLOW_SLICE: Duration = Duration::from_millis(10);

/// A ring end a select can wait on: a [`Consumer<K>`] of any kind (ready when a
/// receive would not say `Empty`), or a producer's [`Room`] (ready when a send
/// would not say `Full`). Sealed.
pub trait Selectable: sealed::End {}

impl<K: Kind> Selectable for Consumer<K> {}

/// A producer as a select waits on it: ready when a message of `len` bytes
/// fits now, or a send would fail (the consumer of a session is gone, the end
/// is poisoned, the message can never fit).
pub struct Room<'a, K: Kind> {
    producer: &'a mut Producer<K>,
    len: usize,
}

impl<'a, K: Kind> Room<'a, K> {
    /// Waits for room for a message of `len` bytes in `producer`'s ring.
    pub fn new(producer: &'a mut Producer<K>, len: usize) -> Room<'a, K> {
        Room { producer, len }
    }
}

impl<K: Kind> core::fmt::Debug for Room<'_, K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Room")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<K: Kind> Selectable for Room<'_, K> {}

pub(crate) mod sealed {
    use std::time::Instant;

    use crate::sync::{AtomicU32, FutexWord};
    use crate::wait::WaitConfig;

    /// What a select needs from one end (crate-private methods).
    pub trait End {
        /// Whether a non-blocking receive would not say `Empty` now: a message
        /// waits, the end is poisoned, or (looked at once a slice, or when the
        /// peers' epoch moved) its producers are done. Consumes nothing.
        fn poll(&mut self, now: Instant) -> bool;
        /// Cheap re-check after the waiting flag is set (shared memory only):
        /// a message, an error, or the peers' epoch moved.
        fn recheck(&mut self) -> bool;
        /// The futex sequence and waiting flag of the consumer.
        fn words(&self) -> (&FutexWord, &AtomicU32);
        /// The end's wait configuration.
        fn cfg(&self) -> WaitConfig;
        /// Whether the end's `Interrupter` is set.
        fn interrupted(&self) -> bool;
        /// Whether this end is its flag's only waiter (then the select clears
        /// the flag after waking; MPSC producers share theirs, which only
        /// notifiers clear).
        fn exclusive(&self) -> bool;
        /// Whether the end's ring has asymmetric fences (its waiters make the
        /// heavy barrier).
        fn asymmetric(&self) -> bool;
        /// The region the end's words lie in (for an async wait, whose waiter
        /// thread keeps it mapped while it sleeps on them).
        #[cfg(not(loom))]
        fn region(&self) -> &crate::Region;
    }
}

impl<K: Kind> sealed::End for Room<'_, K> {
    fn poll(&mut self, now: Instant) -> bool {
        let c = &mut self.producer.core;
        if c.local().check().is_err()
            || self.len > c.max_payload()
            || c.room_ready(self.len)
            || c.local().consumer_closed_hint(c.ends())
        {
            return true;
        }
        let slice = c.local().cfg.slice;
        // As `wait::liveness_due`: under loom time must not steer a model.
        let due = !sync::MODEL && c.local_mut().look_due_at(now, slice);
        if due || c.local().epoch_changed(&c.ends().epoch) {
            // A session's consumer gone, or damage: the end records it
            // (`Local::disconnected`, `Local::poison`), and the send reports it.
            c.check_peer().is_err()
        } else {
            false
        }
    }

    fn recheck(&mut self) -> bool {
        let c = &self.producer.core;
        c.room_ready(self.len) || c.local().epoch_changed(&c.ends().epoch)
    }

    fn words(&self) -> (&crate::sync::FutexWord, &crate::sync::AtomicU32) {
        self.producer.core.wait_words()
    }

    fn cfg(&self) -> WaitConfig {
        self.producer.core.local().cfg
    }

    fn interrupted(&self) -> bool {
        self.producer.core.local().interrupt.is_interrupted()
    }

    fn exclusive(&self) -> bool {
        K::Producer::EXCLUSIVE_WAIT
    }

    fn asymmetric(&self) -> bool {
        self.producer.core.local().asymmetric()
    }

    #[cfg(not(loom))]
    fn region(&self) -> &crate::Region {
        self.producer.core.data().region()
    }
}

impl<K: Kind> sealed::End for Consumer<K> {
    fn poll(&mut self, now: Instant) -> bool {
        match self.core.peek() {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => {
                let slice = self.core.local().cfg.slice;
                // As `wait::liveness_due`: under loom time must not steer a model.
                let due = !sync::MODEL && self.core.local_mut().look_due_at(now, slice);
                if due || self.core.local().epoch_changed(&self.core.ends().epoch) {
                    // Disconnected (done) or corrupted: the end records it
                    // (`Local::disconnected`, `Local::poison`), and the
                    // caller's receive reports it.
                    self.core.check_peer().is_err()
                } else {
                    false
                }
            }
        }
    }

    fn recheck(&mut self) -> bool {
        matches!(self.core.peek(), Ok(Some(_)) | Err(_))
            || self.core.local().epoch_changed(&self.core.ends().epoch)
    }

    fn words(&self) -> (&crate::sync::FutexWord, &crate::sync::AtomicU32) {
        self.core.wait_words()
    }

    fn cfg(&self) -> WaitConfig {
        self.core.local().cfg
    }

    fn interrupted(&self) -> bool {
        self.core.local().interrupt.is_interrupted()
    }

    fn exclusive(&self) -> bool {
        K::Consumer::EXCLUSIVE_WAIT
    }

    fn asymmetric(&self) -> bool {
        self.core.local().asymmetric()
    }

    #[cfg(not(loom))]
    fn region(&self) -> &crate::Region {
        self.core.data().region()
    }
}

std::thread_local! {
    /// Where this thread's next poll starts (see [`start`]).
    static NEXT: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Where a poll over `n` ends starts: a different place on each call, so that
/// a busy end early in the set cannot starve the others.
fn start(n: usize) -> usize {
    NEXT.with(|c| {
        let s = c.get();
        c.set(s.wrapping_add(1));
        if n == 0 { 0 } else { s % n }
    })
}

/// The first ready end in `ends`, from `from` round the set.
fn poll_all(ends: &mut [&mut (dyn Selectable + '_)], from: usize) -> Option<usize> {
    let n = ends.len();
    let now = Instant::now();
    (0..n).map(|k| (from + k) % n).find(|&i| ends[i].poll(now))
}

/// The index of an end whose non-blocking receive would not say `Empty` now
/// (a message, or an error such as `Disconnected`), without waiting.
pub fn try_ready(ends: &mut [&mut (dyn Selectable + '_)]) -> Option<usize> {
    let from = start(ends.len());
    poll_all(ends, from)
}

/// How a set of ends waits: the longest spin, the shortest slice.
fn combined(ends: &[&mut (dyn Selectable + '_)]) -> (Option<Duration>, Duration) {
    let mut spin = Some(Duration::ZERO);
    let mut slice = Duration::MAX;
    for e in ends {
        let cfg: WaitConfig = e.cfg();
        slice = slice.min(cfg.slice);
        spin = spin.zip(cfg.strategy.spin_limit()).map(|(a, b)| a.max(b));
    }
    (spin, slice)
}

/// Waits until one of `ends` is ready (as [`try_ready`]) and returns its index.
///
/// Each end's wait strategy and slice apply to the set: it spins for the longest
/// spin budget among them (forever if one is
/// [`WaitStrategy::Spin`](crate::WaitStrategy::Spin)), then sleeps on all their
/// data sequences at once, at most the shortest wait slice at a time, and looks
/// at each end's producers as its blocking receive would.
/// A select is a blocking call of every end in it: it returns
/// [`Error::Interrupted`] when any end's [`Interrupter`](crate::Interrupter) is
/// set. An empty set waits until the deadline.
///
/// # Errors
/// [`Error::Timeout`] once `deadline` passes; [`Error::Interrupted`].
pub fn ready(ends: &mut [&mut (dyn Selectable + '_)], deadline: Option<Instant>) -> Result<usize> {
    if ends.is_empty() {
        loop {
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            std::thread::sleep(left);
        }
    }
    let from = start(ends.len());
    if let Some(i) = poll_all(ends, from) {
        return Ok(i);
    }
    let (spin, slice) = combined(ends);
    let interrupted = |ends: &[&mut (dyn Selectable + '_)]| ends.iter().any(|e| e.interrupted());
    let past = |now: Instant| deadline.is_some_and(|d| now >= d);
    // A model does not spin: time does not pass in it.
    if !sync::MODEL {
        // `None`: spin for ever (a `Spin` end, or a budget past the clock's end).
        let until = spin.and_then(|s| Instant::now().checked_add(s));
        while until.is_none_or(|u| Instant::now() < u) {
            sync::spin_loop();
            if let Some(i) = poll_all(ends, from) {
                return Ok(i);
            }
            if interrupted(ends) {
                return Err(Error::Interrupted);
            }
            if past(Instant::now()) {
                return Err(Error::Timeout);
            }
        }
    }
    let bound = if ends.len() > MAX_WAIT_WORDS {
        slice.min(OVERFLOW_SLICE)
    } else {
        slice
    };
    let mut seqs = Vec::with_capacity(ends.len());
    loop {
        if interrupted(ends) {
            return Err(Error::Interrupted);
        }
        let (ready, paired) = arm(ends, &mut seqs);
        if !ready {
            let mut sleep = bound;
            if !paired {
                sleep = sleep.min(crate::local::DEGRADED_SLEEP);
            }
            if let Some(d) = deadline {
                sleep = sleep.min(d.saturating_duration_since(Instant::now()));
            }
            if !sleep.is_zero() {
                let words: Vec<_> = ends
                    .iter()
                    .zip(&seqs)
                    .map(|(e, &s)| (e.words().0, s))
                    .collect();
                wait_any(&words, sleep);
            }
        }
        disarm(ends);
        if let Some(i) = poll_all(ends, from) {
            return Ok(i);
        }
        if past(Instant::now()) {
            return Err(Error::Timeout);
        }
    }
}

/// Steps 1 to 3 of a wait on `ends` (docs/PROTOCOL.md, section 6): for each of
/// the first [`MAX_WAIT_WORDS`] ends, reads its futex sequence into `seqs` and
/// sets its waiting flag; then one barrier (`fence(SeqCst)`, or the heavy
/// barrier if one of the rings has asymmetric fences); then re-checks every
/// end. Returns whether one is ready (then the caller does not sleep, and
/// calls [`disarm`]), and whether the barrier paired with the notifiers'
/// (false: a heavy barrier failed, and the caller must sleep at most
/// `DEGRADED_SLEEP`); otherwise the caller may sleep on the sequences in
/// `seqs` (a select in this thread, an async wait in the waiter thread of
/// [`crate::park`]) and calls [`disarm`] after.
pub(crate) fn arm(ends: &mut [&mut (dyn Selectable + '_)], seqs: &mut Vec<u32>) -> (bool, bool) {
    seqs.clear();
    // Only the rings a sleep waits on: a flag on another would make its
    // producer wake a word nobody sleeps on.
    for e in ends.iter().take(MAX_WAIT_WORDS) {
        let (seq, flag) = e.words();
        // Acquire: pairs with the Release increment in
        // `WakeLine::notify_data` (`notify_space` for a producer's room) and
        // `wake_all`; an increment after this load makes the sleep on it
        // return at once.
        seqs.push(seq.load(Ordering::Acquire));
        // Ordered before the re-checks by the barrier below.
        crate::ctl::arm_flag(flag);
    }
    // SeqCst fence, or the heavy barrier if one of the rings has asymmetric
    // fences (it is a full barrier here too): pairs with the notifier's barrier
    // in `WakeLine::notify_data` (for a consumer) or `notify_space` (for a
    // producer's room), ring by ring (see the module docs).
    let paired = if ends.iter().take(MAX_WAIT_WORDS).any(|e| e.asymmetric()) {
        sync::heavy_barrier()
    } else {
        fence_seqcst();
        true
    };
    (ends.iter_mut().any(|e| e.recheck()), paired)
}

/// Step 5 of a wait: clears the waiting flags [`arm`] set, where the end is
/// its flag's only waiter.
pub(crate) fn disarm(ends: &[&mut (dyn Selectable + '_)]) {
    for e in ends.iter().take(MAX_WAIT_WORDS).filter(|e| e.exclusive()) {
        // Relaxed: this end is the flag's only waiter (as in `wait::block`
        // for an exclusive side); a notifier may clear it too. A shared flag
        // (MPSC producers) is left to the notifiers.
        e.words().1.store(0, Ordering::Relaxed);
    }
}
