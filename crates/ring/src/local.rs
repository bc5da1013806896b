//! What every ring end keeps in its own memory, whatever its kind: the wait
//! configuration, the liveness hook, when to look at the peer next, the peers'
//! epoch last seen, a corruption found earlier, and whether it has closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ctl::{CLOSED, EndState, Ends, FENCES_ASYMMETRIC, FENCES_SYMMETRIC, NEVER};
use crate::error::{Corruption, Disconnect, Error, Result};
use crate::peer::{PeerStatus, peer_status};
use crate::sync::{AtomicU32, Ordering};
use crate::wait::{Doorbell, Endpoint, Interrupter, Lifecycle, Liveness, Ringer, WaitConfig};

/// A ring end's private state (one per producer or consumer handle).
pub struct Local {
    /// How blocking calls wait.
    pub(crate) cfg: WaitConfig,
    /// Says whether a peer that claims to be attached is alive.
    pub(crate) liveness: Arc<dyn Liveness>,
    /// When the next look at the peer's liveness is due.
    next_look: Instant,
    /// The peers' epoch at the last full look: a change means an endpoint
    /// attached or closed since, and the peer must be looked at again.
    pub(crate) seen_epoch: u32,
    /// Why this end stopped for good, the first time: a corruption found, or
    /// `Disconnected` reported (final, as in std). Every later call reports it
    /// again.
    stopped: Option<Stop>,
    /// Closed (or detached): dropping must not announce it again.
    pub(crate) closed: bool,
    /// The last look found the peer(s) gone while data was left: the next wait
    /// must look again rather than sleep (found by loom: otherwise a wait takes
    /// the epoch as seen and sleeps for a wake-up that already happened).
    pub(crate) peer_gone: bool,
    /// The peer endpoints this end has seen attached or closed, one bit each
    /// (the consumer, then the producer slots): a later "never attached" from
    /// one of them is damage, and its liveness marker decides ([`peer_status`]).
    seen: [u64; SEEN_WORDS],
    /// What this end compares with to tell whether its peers have moved the
    /// ring since it attached: the consumer's `head` at attach (for a consumer,
    /// its own; for a producer, the last it read); for an MPSC consumer, its
    /// count of messages received.
    start: u64,
    /// Set from anywhere to make this end's blocking calls return `Interrupted`.
    pub(crate) interrupt: Interrupter,
    /// The consumer's position differed from `start` at some point: peers have
    /// moved the ring since this end attached.
    moved: bool,
    /// Consumers: how many producer attachments must have happened before
    /// "every producer gone" may be reported as `Disconnected` (`expect_producers`;
    /// unset: 1 in a session, never in a queue).
    pub(crate) expected: Option<u32>,
    /// Consumers: the doorbell a non-blocking receive that finds nothing arms
    /// (`Consumer::set_doorbell`); none: the futex only.
    pub(crate) doorbell: Option<Arc<dyn Doorbell>>,
    /// Consumers with a linger (`WaitConfig::linger`): when the last blocking
    /// batch receive drained the ring (none: it did not, or none was made).
    pub(crate) drained_at: Option<Instant>,
    /// Producers: how to ring a consumer's doorbell (`Producer::set_ringer`);
    /// none: a consumer waiting on one is not woken by this producer (it looks
    /// again once a slice).
    pub(crate) ringer: Option<Arc<dyn Ringer>>,
    /// The ring's fences are asymmetric (its `fences` word, read at attach):
    /// this end's waits make the heavy barrier.
    asym: bool,
    /// And this process is registered for it: this end's notifications make
    /// only the light one.
    light: bool,
}

/// Why an end stopped for good ([`Local::stopped`]).
#[derive(Clone, Copy, Debug)]
enum Stop {
    Corrupted(Corruption),
    Disconnected(Disconnect),
}

impl Stop {
    /// The error every later call reports. Out of line: the fast path only
    /// asks whether there is one.
    #[cold]
    #[inline(never)]
    fn error(self) -> Error {
        match self {
            Stop::Corrupted(c) => Error::Corrupted(c),
            Stop::Disconnected(why) => Error::Disconnected(why),
        }
    }
}

/// The longest sleep of a waiter whose heavy barrier failed
/// ([`Local::waiter_barrier`]): a light notifier may miss its flag, so it
/// looks again this often.
pub(crate) const DEGRADED_SLEEP: Duration = Duration::from_millis(1);

/// Words of [`Local::seen`]: a bit for the consumer and each producer slot.
const SEEN_WORDS: usize = (1 + crate::mpsc::MAX_PRODUCERS as usize).div_ceil(64);

/// The bit of `who` in [`Local::seen`].
fn seen_bit(who: Endpoint) -> (usize, u64) {
    let i = match who {
        Endpoint::Consumer => 0,
        Endpoint::Producer(s) => 1 + usize::from(s),
        // Subscribers are looked at only by the publisher, which keeps no
        // seen bits (it evicts on the liveness hook's word alone).
        Endpoint::Subscriber(_) => 0,
    };
    (i / 64, 1 << (i % 64))
}

impl Local {
    /// The state of an end that just attached, having read the peers' epoch.
    /// `start` is the consumer's `head` as this end read it at attach.
    pub(crate) fn new(
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
        seen_epoch: u32,
        start: u64,
    ) -> Local {
        Local {
            cfg,
            liveness,
            next_look: Instant::now() + cfg.slice,
            seen_epoch,
            stopped: None,
            closed: false,
            peer_gone: false,
            seen: [0; SEEN_WORDS],
            start,
            interrupt: Interrupter::new(),
            moved: false,
            expected: None,
            doorbell: None,
            drained_at: None,
            ringer: None,
            asym: false,
            light: false,
        }
    }

    /// At attach: how the ring fences (its `fences` word, read once). A value
    /// out of range is damage: the end is poisoned (every call reports it),
    /// and fences symmetrically meanwhile.
    pub(crate) fn read_fences(&mut self, word: &AtomicU32) {
        // Relaxed: written by the creator before the ring was published, which
        // this end's attach synchronised with (the segment's ready state).
        match word.load(Ordering::Relaxed) {
            FENCES_SYMMETRIC => self.asym = false,
            FENCES_ASYMMETRIC => self.asym = true,
            v => {
                self.corrupt("fences", 0, u64::from(v));
                self.asym = false;
            }
        }
        self.light = self.asym && crate::sync::membarrier_registered();
    }

    /// A notifier's barrier between its publication and its load of the
    /// waiting flag: `fence(SeqCst)`, or only a compiler barrier on an
    /// asymmetric ring when this process is registered for the waiters'
    /// heavy barrier.
    #[inline(always)]
    pub(crate) fn notifier_barrier(&self) {
        if self.light {
            crate::sync::light_barrier();
        } else {
            crate::sync::fence_seqcst();
        }
    }

    /// A waiter's barrier between its store of the waiting flag and its
    /// re-check: on an asymmetric ring the heavy barrier, else
    /// `fence(SeqCst)`. False if the heavy barrier failed (a fence was made,
    /// which light notifiers do not pair with): the caller must then sleep
    /// briefly ([`DEGRADED_SLEEP`]), since a wake-up may be lost.
    pub(crate) fn waiter_barrier(&self) -> bool {
        if self.asym {
            crate::sync::heavy_barrier()
        } else {
            crate::sync::fence_seqcst();
            true
        }
    }

    /// Whether this end's ring has asymmetric fences.
    pub(crate) fn asymmetric(&self) -> bool {
        self.asym
    }

    /// Rings the consumer's doorbell `id` (see [`Ringer`]), if this end can.
    #[cold]
    pub(crate) fn ring(&self, id: u64) {
        if let Some(r) = &self.ringer {
            r.ring(id);
        }
    }

    /// Producer attachments before `Disconnected` (see [`Local::expected`]).
    pub(crate) fn expected_producers(&self) -> u32 {
        self.expected.unwrap_or(match self.cfg.lifecycle {
            Lifecycle::Session => 1,
            Lifecycle::Queue => u32::MAX,
        })
    }

    /// Whether this end's ring is a queue: an absent peer is waited for, never
    /// reported as `Disconnected` ([`Lifecycle`]).
    #[inline(always)]
    pub(crate) fn queue(&self) -> bool {
        self.cfg.lifecycle == Lifecycle::Queue
    }

    /// At attach: notes a peer endpoint whose word says it attached or closed
    /// already.
    pub(crate) fn note(&mut self, end: &EndState, who: Endpoint) {
        // Relaxed: a hint for later liveness looks; nothing is read on its strength.
        if end.state.load(Ordering::Relaxed) != NEVER {
            self.saw(who);
        }
    }

    fn saw(&mut self, who: Endpoint) {
        let (w, b) = seen_bit(who);
        self.seen[w] |= b;
    }

    fn has_seen(&self, who: Endpoint) -> bool {
        let (w, b) = seen_bit(who);
        self.seen[w] & b != 0
    }

    /// How many producer slots this end has seen attached or closed.
    pub(crate) fn seen_producers(&self) -> u32 {
        let consumer = seen_bit(Endpoint::Consumer);
        let all: u32 = self.seen.iter().map(|w| w.count_ones()).sum();
        all - u32::from(self.seen[consumer.0] & consumer.1 != 0)
    }

    /// Notes the consumer's position as this end just read it (off the fast
    /// path: when the ring looks full, and at every look).
    #[inline]
    pub(crate) fn saw_head(&mut self, head: u64) {
        self.moved |= head != self.start;
    }

    /// Whether the ring has moved since this end attached, `head` being the
    /// consumer's position now (as this end knows it). Sticky: damage that
    /// resets the position later does not make it "never moved".
    pub(crate) fn moved(&mut self, head: u64) -> bool {
        self.saw_head(head);
        self.moved
    }

    /// `Err(Corrupted)` if a corruption was found earlier, `Err(Disconnected)`
    /// if it was reported earlier.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        match self.stopped {
            None => Ok(()),
            Some(stop) => Err(stop.error()),
        }
    }

    /// Records a corruption (the first one stays) and returns it as the error.
    #[cold]
    pub(crate) fn corrupt(&mut self, what: &'static str, position: u64, value: u64) -> Error {
        self.poison(Error::Corrupted(Corruption {
            what,
            position,
            value,
        }))
    }

    /// Records `e` if it is a corruption (the first stop stays); returns it.
    #[cold]
    pub(crate) fn poison(&mut self, e: Error) -> Error {
        if let Error::Corrupted(c) = e {
            self.stopped.get_or_insert(Stop::Corrupted(c));
        }
        e
    }

    /// Records that this end reports its peers gone for good (the first stop
    /// stays); returns the error. Every `Disconnected` an end reports comes
    /// from here, so that it is final.
    #[cold]
    pub(crate) fn disconnected(&mut self, why: Disconnect) -> Error {
        self.stopped.get_or_insert(Stop::Disconnected(why));
        Error::Disconnected(why)
    }

    /// Whether a look at the peer's liveness is due now (rate-limited to once a
    /// wait slice). Under loom time does not pass; looking every time keeps models
    /// deterministic (the blocking path instead looks only when the epoch
    /// changes, see `wait::block`).
    pub(crate) fn look_due(&mut self) -> bool {
        if crate::sync::MODEL {
            return true;
        }
        self.look_due_at(Instant::now(), self.cfg.slice)
    }

    /// As [`Local::look_due`], at a time the caller has read already. The clock
    /// lives in the end, so that a caller polling with short time-outs or `try_`
    /// calls still gets a look once per slice (found by the cross-process tests).
    pub(crate) fn look_due_at(&mut self, now: Instant, every: Duration) -> bool {
        if now < self.next_look {
            return false;
        }
        self.next_look = now + every;
        true
    }

    /// Whether the peers' epoch moved since the last full look, or the last look
    /// found the peer gone.
    #[inline]
    pub(crate) fn epoch_changed(&self, epoch: &AtomicU32) -> bool {
        // Acquire: pairs with the Release increment in `EndState::attach`/`close`.
        self.peer_gone || epoch.load(Ordering::Acquire) != self.seen_epoch
    }

    /// A full look at one peer endpoint: [`Local::begin_look`], then
    /// [`Local::status_of`].
    pub(crate) fn look_at(
        &mut self,
        epoch: &AtomicU32,
        end: &EndState,
        who: Endpoint,
        moved: bool,
    ) -> Result<PeerStatus> {
        self.begin_look(epoch)?;
        self.status_of(end, who, moved)
    }

    /// Starts a full look at the peers: refuses a poisoned end, and records the
    /// epoch first, so that a change after this look is seen as a change.
    pub(crate) fn begin_look(&mut self, epoch: &AtomicU32) -> Result<()> {
        self.check()?;
        // Acquire: pairs with the Release increment in `EndState::attach`/`close`.
        self.seen_epoch = epoch.load(Ordering::Acquire);
        Ok(())
    }

    /// One peer endpoint's state and liveness; `moved`: the ring moved since
    /// this end attached, so a peer of this role was there ([`peer_status`]). A
    /// state word out of range poisons this end.
    pub(crate) fn status_of(
        &mut self,
        end: &EndState,
        who: Endpoint,
        moved: bool,
    ) -> Result<PeerStatus> {
        let seen = moved || self.has_seen(who);
        let status = peer_status(end, &*self.liveness, who, seen).map_err(|e| self.poison(e))?;
        if status != PeerStatus::Unattached {
            self.saw(who);
        }
        Ok(status)
    }

    /// A producer's full look at the consumer: `Err(Disconnected)` if it is gone
    /// and the ring is a session (a queue's producer waits for the next consumer).
    /// `head`: the consumer's position as the producer last read it.
    pub(crate) fn check_consumer(&mut self, ends: &Ends, head: u64) -> Result<()> {
        let moved = self.moved(head);
        match self.look_at(&ends.epoch, &ends.consumer, Endpoint::Consumer, moved)? {
            PeerStatus::Gone(why) if !self.queue() => Err(self.disconnected(why)),
            PeerStatus::Gone(_) | PeerStatus::Alive | PeerStatus::Unattached => Ok(()),
        }
    }

    /// A consumer's full look at its one producer (the SPSC producer, the
    /// broadcast publisher); `pos`: the position that tells whether the ring
    /// moved since this end attached (see [`Local::moved`]: the SPSC
    /// consumer's `head`, the tail a broadcast subscriber last read).
    pub(crate) fn look_at_producer(&mut self, ends: &Ends, pos: u64) -> Result<PeerStatus> {
        let moved = self.moved(pos);
        self.look_at(&ends.epoch, &ends.producer, Endpoint::Producer(0), moved)
    }

    /// On a producer's fast path: in a session, a consumer that announced it
    /// closed gets `Disconnected` (a hint read `Relaxed`; the full look reads it
    /// with `Acquire`). In a queue, nothing: the producer sends on.
    #[inline(always)]
    pub(crate) fn consumer_closed(&mut self, ends: &Ends) -> Result<()> {
        if self.consumer_closed_hint(ends) {
            return Err(self.disconnected(Disconnect::Closed));
        }
        Ok(())
    }

    /// Whether [`Local::consumer_closed`] would fail.
    #[inline(always)]
    pub(crate) fn consumer_closed_hint(&self, ends: &Ends) -> bool {
        // Relaxed: a hint; the full look (`peer_status`) reads the word with
        // Acquire before anything is concluded from a gone consumer's data.
        !self.queue() && ends.consumer.state.load(Ordering::Relaxed) == CLOSED
    }

    /// A consumer's judgement once every producer that attached is gone (`why`)
    /// and nothing is left to read: `Disconnected` if at least the expected number
    /// of producer `attachments` happened, else keep waiting for more.
    pub(crate) fn producers_done(&mut self, attachments: u32, why: Disconnect) -> Result<()> {
        if attachments >= self.expected_producers() {
            Err(self.disconnected(why))
        } else {
            Ok(())
        }
    }
}
