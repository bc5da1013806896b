//! How a ring side sees its peers: state words plus the liveness hook.

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
