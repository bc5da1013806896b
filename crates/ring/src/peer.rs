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
    let first = reading(end);
    match first.0 {
        NEVER if !seen => Ok(PeerStatus::Unattached),
        CLOSED => Ok(PeerStatus::Gone(Disconnect::Closed)),
        NEVER | ATTACHED if liveness.is_alive(who) => Ok(PeerStatus::Alive),
        // The marker is free. The peer may have closed between our reading and
        // our question (it stores CLOSED before it gives its marker up), or
        // closed and a new holder attached (a holder takes the marker before it
        // writes its word and bumps the incarnation first): read again. Only the
        // same word and incarnation on both sides of a free marker is a death
        // (found by the eight-producer soak, which saw a clean close reported as
        // `Died`).
        NEVER | ATTACHED => Ok(match reading(end) {
            (CLOSED, _) => PeerStatus::Gone(Disconnect::Closed),
            again if again == first => PeerStatus::Gone(Disconnect::Died),
            _ => PeerStatus::Alive,
        }),
        v => Err(Error::corrupted("endpoint state", 0, v.into())),
    }
}

/// An endpoint's state word and incarnation.
fn reading(end: &EndState) -> (u32, u32) {
    // Acquire: pairs with the Release stores in `EndState::attach`/`close`, so
    // that a consumer that sees CLOSED then sees every frame published before it,
    // and a reader after a free marker sees a close made before it was freed (the
    // marker's release and the lock query are system calls).
    let state = end.state.load(Ordering::Acquire);
    // Relaxed: only compared between two readings, to tell a new attach.
    (state, end.incarnation.load(Ordering::Relaxed))
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

    /// A peer that closes and is replaced while the question is asked.
    struct ReplacedWhileAsked<'a>(&'a EndState);

    impl Liveness for ReplacedWhileAsked<'_> {
        fn is_alive(&self, _: Endpoint) -> bool {
            self.0.state.store(CLOSED, Ordering::Release);
            self.0.incarnation.fetch_add(1, Ordering::Relaxed);
            self.0.state.store(ATTACHED, Ordering::Release);
            false
        }
    }

    #[test]
    fn a_new_holder_between_the_readings_is_alive() {
        let e = end(ATTACHED);
        let status = peer_status(&e, &ReplacedWhileAsked(&e), Endpoint::Producer(0), true);
        assert_eq!(status.unwrap(), PeerStatus::Alive);
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
