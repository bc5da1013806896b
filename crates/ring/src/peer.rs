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

/// Reads an endpoint's state word and asks the liveness hook when it matters.
///
/// The word is a hint, the kernel's marker the truth: a word that says "never
/// attached" about an endpoint this end has `seen` (attached or closed before,
/// or the ring has moved since this end attached, which no unattached peer
/// makes happen) was reset, which no endpoint does; a peer damaged it, or a
/// hole punched in the segment reads back as zeros. Then only the marker
/// decides, so that a peer that zeroes its word and dies is still reported
/// dead rather than waited for (reliability issue, the hostile-write class).
pub(crate) fn peer_status(
    end: &EndState,
    liveness: &dyn Liveness,
    who: Endpoint,
    seen: bool,
) -> Result<PeerStatus> {
    // Acquire: pairs with the Release stores in `EndState::attach`/`close`, so that
    // a consumer that sees CLOSED then sees every frame published before it.
    match end.state.load(Ordering::Acquire) {
        NEVER if !seen => Ok(PeerStatus::Unattached),
        NEVER | ATTACHED if liveness.is_alive(who) => Ok(PeerStatus::Alive),
        NEVER | ATTACHED => Ok(PeerStatus::Gone(Disconnect::Died)),
        CLOSED => Ok(PeerStatus::Gone(Disconnect::Closed)),
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
