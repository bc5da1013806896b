//! What every ring end keeps in its own memory, whatever its kind: the wait
//! configuration, the liveness hook, when to look at the peer next, the peers'
//! epoch last seen, a corruption found earlier, and whether it has closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ctl::{CLOSED, EndState, Ends};
use crate::error::{Corruption, Disconnect, Error, Result};
use crate::peer::{PeerStatus, peer_status};
use crate::sync::{AtomicU32, Ordering};
use crate::wait::{Endpoint, Liveness, WaitConfig};

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
    /// The first corruption found: every later call reports it again.
    poisoned: Option<Corruption>,
    /// Closed (or detached): dropping must not announce it again.
    pub(crate) closed: bool,
    /// The last look found the peer(s) gone while data was left: the next wait
    /// must look again rather than sleep (found by loom: otherwise a wait takes
    /// the epoch as seen and sleeps for a wake-up that already happened).
    pub(crate) peer_gone: bool,
}

impl Local {
    /// The state of an end that just attached, having read the peers' epoch.
    pub(crate) fn new(cfg: WaitConfig, liveness: Arc<dyn Liveness>, seen_epoch: u32) -> Local {
        Local {
            cfg,
            liveness,
            next_look: Instant::now() + cfg.slice,
            seen_epoch,
            poisoned: None,
            closed: false,
            peer_gone: false,
        }
    }

    /// `Err(Corrupted)` if a corruption was found earlier.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        match self.poisoned {
            Some(c) => Err(Error::Corrupted(c)),
            None => Ok(()),
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

    /// Records `e` if it is a corruption (the first one stays); returns it.
    #[cold]
    pub(crate) fn poison(&mut self, e: Error) -> Error {
        if let Error::Corrupted(c) = e {
            self.poisoned.get_or_insert(c);
        }
        e
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
    ) -> Result<PeerStatus> {
        self.begin_look(epoch)?;
        self.status_of(end, who)
    }

    /// Starts a full look at the peers: refuses a poisoned end, and records the
    /// epoch first, so that a change after this look is seen as a change.
    pub(crate) fn begin_look(&mut self, epoch: &AtomicU32) -> Result<()> {
        self.check()?;
        // Acquire: pairs with the Release increment in `EndState::attach`/`close`.
        self.seen_epoch = epoch.load(Ordering::Acquire);
        Ok(())
    }

    /// One peer endpoint's state and liveness. A state word out of range
    /// poisons this end.
    pub(crate) fn status_of(&mut self, end: &EndState, who: Endpoint) -> Result<PeerStatus> {
        peer_status(end, &*self.liveness, who).map_err(|e| self.poison(e))
    }

    /// A producer's full look at the consumer: `Err(Disconnected)` if it is gone.
    pub(crate) fn check_consumer(&mut self, ends: &Ends) -> Result<()> {
        match self.look_at(&ends.epoch, &ends.consumer, Endpoint::Consumer)? {
            PeerStatus::Gone(why) => Err(Error::Disconnected(why)),
            PeerStatus::Alive | PeerStatus::Unattached => Ok(()),
        }
    }
}

/// On a producer's fast path: a consumer that announced it closed gets
/// `Disconnected` (a hint read `Relaxed`; the full look reads it with `Acquire`).
#[inline]
pub(crate) fn consumer_closed(ends: &Ends) -> Result<()> {
    if ends.consumer.state.load(Ordering::Relaxed) == CLOSED {
        return Err(Error::Disconnected(Disconnect::Closed));
    }
    Ok(())
}
