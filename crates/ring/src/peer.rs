//! How a ring side sees its peers: state words plus the liveness hook.

use std::time::{Duration, Instant};

use crate::ctl::{ATTACHED, CLOSED, EndState, NEVER};
use crate::error::{Disconnect, Error, Result};
use crate::sync::Ordering;
use crate::wait::{Endpoint, Liveness};

/// How a peer's endpoint looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStatus {
    /// Never attached yet: wait for it.
    Unattached,
    /// Attached and alive.
    Alive,
    /// Gone.
    Gone(Disconnect),
}

/// Reads an endpoint's state word and, if it claims to be attached, asks the
/// liveness hook.
pub(crate) fn peer_status(
    end: &EndState,
    liveness: &dyn Liveness,
    who: Endpoint,
) -> Result<PeerStatus> {
    // Acquire: pairs with the Release stores in `EndState::attach`/`close`, so that
    // a consumer that sees CLOSED then sees every frame published before it.
    match end.state.load(Ordering::Acquire) {
        NEVER => Ok(PeerStatus::Unattached),
        CLOSED => Ok(PeerStatus::Gone(Disconnect::Closed)),
        ATTACHED if liveness.is_alive(who) => Ok(PeerStatus::Alive),
        ATTACHED => Ok(PeerStatus::Gone(Disconnect::Died)),
        v => Err(Error::corrupted("endpoint state", 0, v.into())),
    }
}

/// When an endpoint next looks at its peer's liveness (a system call). It lives
/// in the endpoint, so that a caller polling with short time-outs or `try_` calls
/// still gets a look once per wait slice (found by the cross-process tests).
pub(crate) struct CheckClock {
    next: Instant,
}

impl CheckClock {
    /// A clock whose first look is due one `every` from now.
    pub(crate) fn starting(every: Duration) -> CheckClock {
        CheckClock {
            next: Instant::now() + every,
        }
    }

    pub(crate) fn due(&mut self, every: Duration) -> bool {
        // Under loom time does not pass; checking every time keeps models
        // deterministic. (The blocking path instead looks only when the epoch
        // changes, see `wait::liveness_due`.)
        if cfg!(loom) {
            return true;
        }
        self.due_at(Instant::now(), every)
    }

    /// As [`CheckClock::due`], at a time the caller has read already.
    pub(crate) fn due_at(&mut self, now: Instant, every: Duration) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + every;
        true
    }
}

/// Whether an SPSC `tail` lies behind `head` by at most a ring: an earlier
/// producer died between publishing frames and storing `tail`, and the consumer
/// has read past it since. Not damage: the next producer resumes at `head`.
pub(crate) fn stale_tail(head: u64, tail: u64, cap: usize) -> bool {
    tail.wrapping_sub(head) > cap as u64 && head.wrapping_sub(tail) <= cap as u64
}

/// Checks `head <= tail <= head + cap` (in wrapping arithmetic) and alignment.
pub(crate) fn check_positions(head: u64, tail: u64, cap: usize) -> Result<()> {
    if !head.is_multiple_of(8) {
        return Err(Error::corrupted("head not 8-aligned", tail, head));
    }
    if !tail.is_multiple_of(8) {
        return Err(Error::corrupted("tail not 8-aligned", tail, tail));
    }
    if tail.wrapping_sub(head) > cap as u64 {
        return Err(Error::corrupted("head out of range", tail, head));
    }
    Ok(())
}
