//! Read-only views of a ring, for tools (`shmq ls`, `shmq inspect`, `shmq top`).
//!
//! Nothing here writes to the region, and every value read is checked the way the
//! rings check it: a damaged ring yields a view listing its problems, never a
//! panic or an out-of-bounds read. Walks over frames are bounded by the capacity.

use crate::ctl::{
    ATTACHED, CLOSED, EndState, Line, MpscControl, NEVER, NO_CLAIM, ProducerSlot, SpscControl,
};
use crate::error::Result;
use crate::frame::{self, MPSC_PAD, SpscFrame};
use crate::region::{Ctl, CtlArray, Region};
use crate::sync::{AtomicU32, Ordering};
use crate::{mpsc, spsc};

/// What an endpoint's state word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndStateKind {
    /// Never attached.
    Never,
    /// Attached (alive or dead: ask the segment's liveness marker).
    Attached,
    /// Closed by its holder.
    Closed,
    /// A value no endpoint writes.
    Invalid(u32),
}

/// One endpoint as its state words describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndView {
    /// Its state.
    pub state: EndStateKind,
    /// How many times it has been attached.
    pub incarnation: u32,
    /// MPSC producers: the position of a claim whose header is not written yet.
    pub pending_claim: Option<u64>,
}

/// A snapshot of a ring's control block and contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingView {
    /// Data area capacity in bytes.
    pub capacity: usize,
    /// The consumer's published position.
    pub head: u64,
    /// Messages the consumer has received since the ring was created.
    pub received: u64,
    /// The producers' published position (SPSC) or claim position (MPSC).
    pub tail: u64,
    /// Bytes between `head` and `tail`, if those are consistent.
    pub used_bytes: Option<u64>,
    /// Committed messages waiting, as far as the walk could tell.
    pub messages: u64,
    /// Payload bytes of those messages.
    pub message_bytes: u64,
    /// MPSC: claims not yet committed (or never to be, if their producer died).
    pub uncommitted: u64,
    /// The consumer.
    pub consumer: EndView,
    /// The producer (SPSC: one) or producer slots (MPSC).
    pub producers: Vec<EndView>,
    /// The consumer has announced that it sleeps.
    pub consumer_waiting: bool,
    /// Some producer has announced that it sleeps.
    pub producers_waiting: bool,
    /// Every check that failed, in words.
    pub problems: Vec<String>,
}

fn end_view(e: &EndState) -> EndView {
    let state = match e.state.load(Ordering::Acquire) {
        NEVER => EndStateKind::Never,
        ATTACHED => EndStateKind::Attached,
        CLOSED => EndStateKind::Closed,
        v => EndStateKind::Invalid(v),
    };
    EndView {
        state,
        incarnation: e.incarnation.load(Ordering::Acquire),
        pending_claim: None,
    }
}

fn flag(f: &AtomicU32) -> bool {
    f.load(Ordering::Relaxed) != 0
}

fn end_problems(name: &str, v: &EndView, problems: &mut Vec<String>) {
    if let EndStateKind::Invalid(x) = v.state {
        problems.push(format!("{name} state word holds {x:#x}, not a known state"));
    }
}

/// Reads an SPSC ring.
///
/// # Errors
/// [`crate::Error::InvalidCapacity`] or [`crate::Error::RegionTooSmall`] if the
/// ring cannot lie in `region` at all.
pub fn spsc(region: &Region, capacity: u64) -> Result<RingView> {
    let cap = spsc::check_capacity(capacity)?;
    if region.len() < spsc::region_len(cap) {
        return Err(crate::Error::RegionTooSmall {
            needed: spsc::region_len(cap) as u64,
            len: region.len() as u64,
        });
    }
    let ctl: Ctl<SpscControl> = Ctl::new(region);
    let data = region.data(spsc::CONTROL_LEN, cap);
    let mask = cap as u64 - 1;
    let head = ctl.head.pos.load(Ordering::Acquire);
    let tail = ctl.tail.load(Ordering::Acquire);
    let mut problems = Vec::new();
    let used = tail.wrapping_sub(head);
    let aligned = head.is_multiple_of(8) && tail.is_multiple_of(8);
    let used_bytes = if aligned && used <= cap as u64 {
        Some(used)
    } else if aligned && crate::peer::stale_tail(head, tail, cap) {
        // Nothing is waiting, and the next producer resumes at `head`.
        Some(0)
    } else {
        problems.push(format!(
            "positions inconsistent: head {head}, tail {tail}, capacity {cap}"
        ));
        None
    };
    let (mut messages, mut message_bytes) = (0, 0);
    if head.is_multiple_of(8) {
        let mut pos = head;
        for _ in 0..=cap / 8 {
            let off = (pos & mask) as usize;
            let raw = data.word(off).load(Ordering::Acquire);
            match frame::decode_spsc(raw, off, cap) {
                Ok(SpscFrame::Empty) => break,
                Ok(f) => {
                    if let SpscFrame::Message { len } = f {
                        messages += 1;
                        message_bytes += len as u64;
                    }
                    pos = pos.wrapping_add(f.size() as u64);
                    if used_bytes.is_some() && pos.wrapping_sub(head) > used {
                        // Frames past `tail`: published by a producer that died before
                        // updating `tail`, or a stale lap. Stop counting there.
                        break;
                    }
                }
                Err(what) => {
                    problems.push(format!(
                        "frame at position {pos}: {what} (header {raw:#018x})"
                    ));
                    break;
                }
            }
        }
    }
    let consumer = end_view(&ctl.ends.consumer);
    let producer = end_view(&ctl.ends.producer);
    end_problems("consumer", &consumer, &mut problems);
    end_problems("producer", &producer, &mut problems);
    Ok(RingView {
        capacity: cap,
        head,
        received: ctl.head.received.load(Ordering::Relaxed),
        tail,
        used_bytes,
        messages,
        message_bytes,
        uncommitted: 0,
        consumer,
        producers: vec![producer],
        consumer_waiting: flag(&ctl.wake.consumer_waiting),
        producers_waiting: flag(&ctl.wake.producers_waiting),
        problems,
    })
}

/// Reads an MPSC ring with `producers` slots.
///
/// # Errors
/// As [`spsc`](fn@spsc), plus [`crate::Error::TooManyProducers`] for a bad slot count.
pub fn mpsc(region: &Region, capacity: u64, producers: u16) -> Result<RingView> {
    let cap = spsc::check_capacity(capacity)?;
    if producers == 0 || producers > mpsc::MAX_PRODUCERS {
        return Err(crate::Error::TooManyProducers(producers));
    }
    let needed = mpsc::region_len(cap, producers);
    if region.len() < needed {
        return Err(crate::Error::RegionTooSmall {
            needed: needed as u64,
            len: region.len() as u64,
        });
    }
    let ctl: Ctl<MpscControl> = Ctl::new(region);
    let slots: CtlArray<Line<ProducerSlot>> = CtlArray::new(region, 512, producers.into());
    let data = region.data(mpsc::control_len(producers), cap);
    let mask = cap as u64 - 1;
    let head = ctl.head.pos.load(Ordering::Acquire);
    let tail = ctl.tail.load(Ordering::Acquire);
    let mut problems = Vec::new();
    let used = tail.wrapping_sub(head);
    let sane = head.is_multiple_of(8) && tail.is_multiple_of(8) && used <= cap as u64;
    if !sane {
        problems.push(format!(
            "positions inconsistent: head {head}, tail {tail}, capacity {cap}"
        ));
    }
    let (mut messages, mut message_bytes, mut uncommitted) = (0, 0, 0);
    if sane {
        let mut pos = head;
        for _ in 0..=cap / 8 {
            if pos == tail {
                break;
            }
            let off = (pos & mask) as usize;
            let raw = data.word(off).load(Ordering::Acquire);
            match frame::decode_mpsc(raw, off, cap, producers) {
                Ok(None) => {
                    // A claim whose producer has not written (or never will write) its
                    // header: its length is unknown, so the walk ends here.
                    uncommitted += 1;
                    break;
                }
                Ok(Some(h)) => {
                    if h.len < 0 {
                        uncommitted += 1;
                    } else if h.kind != MPSC_PAD {
                        messages += 1;
                        message_bytes += h.len as u64;
                    }
                    pos = pos.wrapping_add(h.size() as u64);
                    if pos.wrapping_sub(head) > used {
                        problems.push(format!("frame at position {pos} runs past tail {tail}"));
                        break;
                    }
                }
                Err(what) => {
                    problems.push(format!(
                        "frame at position {pos}: {what} (header {raw:#018x})"
                    ));
                    break;
                }
            }
        }
    }
    let consumer = end_view(&ctl.ends.consumer);
    end_problems("consumer", &consumer, &mut problems);
    let producers: Vec<EndView> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = end_view(&s.end);
            end_problems(&format!("producer {i}"), &v, &mut problems);
            let c = s.claim.load(Ordering::Acquire);
            if c != NO_CLAIM {
                v.pending_claim = Some(c & !7);
            }
            v
        })
        .collect();
    Ok(RingView {
        capacity: cap,
        head,
        received: ctl.head.received.load(Ordering::Relaxed),
        tail,
        used_bytes: sane.then_some(used),
        messages,
        message_bytes,
        uncommitted,
        consumer,
        producers,
        consumer_waiting: flag(&ctl.wake.consumer_waiting),
        producers_waiting: flag(&ctl.wake.producers_waiting),
        problems,
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{InProcess, WaitConfig};
    use std::sync::Arc;

    #[test]
    fn views_count_messages_and_name_damage() {
        let cap = 1024;
        let r = Region::heap(spsc::region_len(cap));
        spsc::init(&r, crate::Geometry::spsc(cap as u64).unwrap(), 0).unwrap();
        let mut tx = spsc::Producer::attach(
            &r,
            crate::Geometry::spsc(cap as u64).unwrap(),
            WaitConfig::default(),
            Arc::new(InProcess),
        )
        .unwrap();
        for i in 0..5u8 {
            tx.send(&[i; 10]).unwrap();
        }
        let v = spsc(&r, cap as u64).unwrap();
        assert_eq!(
            (v.messages, v.message_bytes, v.used_bytes),
            (5, 50, Some(5 * 24))
        );
        assert_eq!(v.producers[0].state, EndStateKind::Attached);
        assert_eq!(v.consumer.state, EndStateKind::Never);
        assert!(v.problems.is_empty());
        r.store_word(128, 3); // head not aligned
        r.store_word(spsc::CONTROL_LEN, 0xdead_beef_0000_0001);
        let v = spsc(&r, cap as u64).unwrap();
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        r.store_word(128, 0);
        let v = spsc(&r, cap as u64).unwrap();
        assert!(
            v.problems.iter().any(|p| p.contains("unknown frame tag")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn mpsc_view_shows_claims() {
        let cap = 1024;
        let r = Region::heap(mpsc::region_len(cap, 2));
        mpsc::init(&r, crate::Geometry::mpsc(cap as u64, 2).unwrap(), 0).unwrap();
        let mut tx = mpsc::Producer::attach(
            &r,
            crate::Geometry::mpsc(cap as u64, 2).unwrap(),
            1,
            WaitConfig::default(),
            Arc::new(InProcess),
        )
        .unwrap();
        tx.send(b"abc").unwrap();
        let g = tx.try_reserve(4).unwrap();
        std::mem::forget(g);
        let v = mpsc(&r, cap as u64, 2).unwrap();
        assert_eq!((v.messages, v.uncommitted), (1, 1));
        assert_eq!(v.producers[1].state, EndStateKind::Attached);
        assert_eq!(v.producers[0].state, EndStateKind::Never);
    }
}
