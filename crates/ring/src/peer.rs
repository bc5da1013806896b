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
        // The marker is free. The peer may have closed between our read of the
        // word and our question (it stores CLOSED before it gives the marker up),
        // so read the word again: only a word that still says attached after the
        // marker was found free is a death (found by the eight-producer soak,
        // which saw a clean close reported as `Died`).
        // Acquire: pairs with the Release store in `EndState::close`; the marker's
        // release and our lock query are system calls, so a close that came
        // before the marker was free is visible here.
        NEVER | ATTACHED => match end.state.load(Ordering::Acquire) {
            CLOSED => Ok(PeerStatus::Gone(Disconnect::Closed)),
            _ => Ok(PeerStatus::Gone(Disconnect::Died)),
        },
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::AtomicU32;

    /// A peer that closes while the liveness question is asked: it has stored
    /// CLOSED and given its marker up by the time the answer comes.
    struct ClosesWhileAsked<'a>(&'a EndState);

    impl Liveness for ClosesWhileAsked<'_> {
        fn is_alive(&self, _: Endpoint) -> bool {
            self.0.state.store(CLOSED, Ordering::Release);
            false
        }
    }

    /// A peer whose marker is free and whose word still says attached: it died.
    struct Dead;

    impl Liveness for Dead {
        fn is_alive(&self, _: Endpoint) -> bool {
            false
        }
    }

    fn end(state: u32) -> EndState {
        EndState {
            state: AtomicU32::new(state),
            incarnation: AtomicU32::new(1),
        }
    }

    #[test]
    fn a_close_between_the_word_and_the_marker_is_a_close() {
        let e = end(ATTACHED);
        let status = peer_status(&e, &ClosesWhileAsked(&e), Endpoint::Consumer, true);
        assert_eq!(status.unwrap(), PeerStatus::Gone(Disconnect::Closed));
    }

    #[test]
    fn a_free_marker_under_an_attached_word_is_a_death() {
        let e = end(ATTACHED);
        let status = peer_status(&e, &Dead, Endpoint::Producer(3), true);
        assert_eq!(status.unwrap(), PeerStatus::Gone(Disconnect::Died));
        // A reset word about a seen endpoint: damage, and the marker decides.
        let e = end(NEVER);
        let status = peer_status(&e, &Dead, Endpoint::Consumer, true);
        assert_eq!(status.unwrap(), PeerStatus::Gone(Disconnect::Died));
        let status = peer_status(&e, &Dead, Endpoint::Consumer, false);
        assert_eq!(status.unwrap(), PeerStatus::Unattached);
    }
}
