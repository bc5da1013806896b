//! Read-only views of a ring, for tools (`shmq ls`, `shmq inspect`, `shmq top`).
//!
//! Nothing here writes to the region, and every value read is checked the way the
//! rings check it: a damaged ring yields a view listing its problems, never a
//! panic or an out-of-bounds read. Walks over frames are bounded by the capacity.

use crate::ctl::{
    ATTACHED, BroadcastControl, CLOSED, EndState, Ends, LOSSLESS, Line, MpscControl, NEVER,
    NO_CLAIM, ProducerSlot, SpscControl, SubscriberSlot, WakeLine,
};
use crate::error::Result;
use crate::frame::{self, MPSC_PAD, SpscFrame};
use crate::region::{Ctl, CtlArray, Region};
use crate::sync::{AtomicU32, Ordering};
use crate::{broadcast, mpsc, spsc};

/// What an endpoint's state word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointState {
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
pub struct EndpointView {
    /// Its state.
    pub state: EndpointState,
    /// How many times it has been attached.
    pub incarnation: u32,
    /// MPSC producers: the position of a claim whose header is not written yet.
    pub pending_claim: Option<u64>,
}

/// Which endpoint a state word belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointName {
    /// The consumer.
    Consumer,
    /// The SPSC producer.
    Producer,
    /// MPSC producer slot N.
    ProducerSlot(u16),
    /// Broadcast subscriber slot N.
    SubscriberSlot(u16),
}

/// Which part of a ring a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingField {
    /// The consumer's position.
    Head,
    /// The producers' published (SPSC) or claim (MPSC) position.
    Tail,
    /// The frame header at this ring position.
    Frame {
        /// Its position.
        position: u64,
    },
    /// An endpoint's state word.
    EndpointState(EndpointName),
}

/// What a ring check requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingExpected {
    /// A position that is a multiple of 8 (every frame is).
    Aligned,
    /// A position at most `capacity` bytes past `head`.
    WithinCapacity {
        /// The consumer's position.
        head: u64,
        /// The ring's capacity in bytes.
        capacity: u64,
    },
    /// A frame header a producer writes; the check it failed, in words (from
    /// [`frame::decode_spsc`] or [`frame::decode_mpsc`]).
    Frame(&'static str),
    /// A frame that ends at or before this position (the tail).
    EndsBy(u64),
    /// One of the states an endpoint writes: never, attached or closed.
    KnownState,
}

/// One failed check of a ring: which part, what was expected, what was found.
/// Every ring finding is damage (a value no endpoint writes): a ring has no
/// finding of a lesser severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFinding {
    /// The part checked.
    pub field: RingField,
    /// What the check requires.
    pub expected: RingExpected,
    /// The value found: a position, a frame header word, a state word, or (for
    /// [`RingExpected::EndsBy`]) the position where the frame ends.
    pub found: u64,
}

/// One broadcast subscriber slot, as its words describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriberView {
    /// Its state word.
    pub end: EndpointView,
    /// Lossless (gates the publisher) or lossy.
    pub lossless: bool,
    /// The position it has released up to.
    pub position: u64,
    /// Bytes between that position and the publisher's `tail` (its lag).
    pub behind: u64,
    /// Messages it received since it attached.
    pub received: u64,
    /// Messages it was told it missed (lossy).
    pub lagged: u64,
}

/// A snapshot of a ring's control block and contents, and what is wrong with
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingView {
    /// Positions, counts and endpoint states, as read.
    pub state: RingState,
    /// Every check that failed.
    pub problems: Vec<RingFinding>,
}

/// A ring's positions, counts and endpoint states, as its words describe them
/// (the facade shows it as `shmq::inspect::RingReport`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingState {
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
    pub consumer: EndpointView,
    /// The producer (SPSC: one) or producer slots (MPSC); the publisher
    /// (broadcast).
    pub producers: Vec<EndpointView>,
    /// Broadcast: the subscriber slots (empty for the other kinds).
    pub subscribers: Vec<SubscriberView>,
    /// The consumer has announced that it sleeps.
    pub consumer_waiting: bool,
    /// Some producer has announced that it sleeps.
    pub producers_waiting: bool,
}

fn end_view(e: &EndState, end: EndpointName, problems: &mut Vec<RingFinding>) -> EndpointView {
    // Acquire: pairs with the Release stores of `state` in `EndState::attach` and
    // `EndState::close`.
    let state = match e.state.load(Ordering::Acquire) {
        NEVER => EndpointState::Never,
        ATTACHED => EndpointState::Attached,
        CLOSED => EndpointState::Closed,
        v => {
            problems.push(RingFinding {
                field: RingField::EndpointState(end),
                expected: RingExpected::KnownState,
                found: v.into(),
            });
            EndpointState::Invalid(v)
        }
    };
    EndpointView {
        state,
        // Acquire: as `state`; `EndState::attach` bumps it before its Release store.
        incarnation: e.incarnation.load(Ordering::Acquire),
        pending_claim: None,
    }
}

fn flag(f: &AtomicU32) -> bool {
    // Relaxed: a hint for display only; no data is read on its strength.
    f.load(Ordering::Relaxed) != 0
}

/// What both rings read first: the capacity, and the two positions (each read
/// once).
struct Start {
    cap: usize,
    head: u64,
    tail: u64,
}

/// The capacity checked, and the region's size checked against `needed(cap)`.
pub(crate) fn check_len(
    region: &Region,
    capacity: u64,
    needed: impl Fn(usize) -> usize,
) -> Result<usize> {
    let cap = spsc::check_capacity(capacity)?;
    if region.len() < needed(cap) {
        return Err(crate::Error::RegionTooSmall {
            needed: needed(cap) as u64,
            len: region.len() as u64,
        });
    }
    Ok(cap)
}

/// As [`check_len`] for an MPSC ring with `producers` slots, after the slot
/// count itself ([`crate::Error::TooManyProducers`]).
pub(crate) fn check_mpsc_len(region: &Region, capacity: u64, producers: u16) -> Result<usize> {
    if producers == 0 || producers > mpsc::MAX_PRODUCERS {
        return Err(crate::Error::TooManyProducers(producers));
    }
    check_len(region, capacity, |cap| mpsc::region_len(cap, producers))
}

/// As [`check_len`] for a broadcast ring with `subscribers` slots, after the
/// slot count itself ([`crate::Error::InvalidSubscriberCount`]).
pub(crate) fn check_broadcast_len(
    region: &Region,
    capacity: u64,
    subscribers: u16,
) -> Result<usize> {
    if subscribers == 0 || subscribers > broadcast::MAX_SUBSCRIBERS {
        return Err(crate::Error::InvalidSubscriberCount(subscribers));
    }
    check_len(region, capacity, |cap| {
        broadcast::region_len(cap, subscribers)
    })
}

/// Bytes between `head` and `tail` if they are consistent, else `None` with the
/// finding. `stale` says whether a tail a lap behind is a valid resting state.
fn used_bytes(s: &Start, stale: bool, problems: &mut Vec<RingFinding>) -> Option<u64> {
    let (head, tail, cap) = (s.head, s.tail, s.cap as u64);
    let used = tail.wrapping_sub(head);
    let (field, expected, found) = if !head.is_multiple_of(8) {
        (RingField::Head, RingExpected::Aligned, head)
    } else if !tail.is_multiple_of(8) {
        (RingField::Tail, RingExpected::Aligned, tail)
    } else if used <= cap {
        return Some(used);
    } else if stale && crate::peer::stale_tail(head, tail, s.cap) {
        // Nothing is waiting, and the next producer resumes at `head`.
        return Some(0);
    } else {
        let expected = RingExpected::WithinCapacity {
            head,
            capacity: cap,
        };
        (RingField::Tail, expected, tail)
    };
    problems.push(RingFinding {
        field,
        expected,
        found,
    });
    None
}

/// The frame `decoded` says the header word `raw` at `position` is, or `None`
/// with the finding that says why it is none (where a walk ends).
fn frame_at<T>(
    decoded: core::result::Result<T, &'static str>,
    position: u64,
    raw: u64,
    problems: &mut Vec<RingFinding>,
) -> Option<T> {
    decoded
        .map_err(|what| {
            problems.push(RingFinding {
                field: RingField::Frame { position },
                expected: RingExpected::Frame(what),
                found: raw,
            });
        })
        .ok()
}

/// What a walk over a ring's frames counted.
#[derive(Default)]
struct Counts {
    /// Committed messages.
    messages: u64,
    /// Their payload bytes.
    message_bytes: u64,
    /// MPSC: claims not committed.
    uncommitted: u64,
}

impl Counts {
    /// Counts a committed message of `bytes` payload bytes.
    fn message(&mut self, bytes: u64) {
        self.messages += 1;
        self.message_bytes += bytes;
    }
}

/// A ring's view, from what every kind reads the same way: its capacity and
/// positions, what its walk counted, its endpoints and its wake line. The
/// caller sets `received` (and, broadcast, `subscribers`).
fn view(
    s: &Start,
    used_bytes: Option<u64>,
    counts: Counts,
    ends: Endpoints,
    wake: &WakeLine,
    problems: Vec<RingFinding>,
) -> RingView {
    let state = RingState {
        capacity: s.cap,
        head: s.head,
        received: 0,
        tail: s.tail,
        used_bytes,
        messages: counts.messages,
        message_bytes: counts.message_bytes,
        uncommitted: counts.uncommitted,
        consumer: ends.consumer,
        producers: ends.producers,
        subscribers: Vec::new(),
        consumer_waiting: flag(&wake.consumer_waiting),
        producers_waiting: flag(&wake.producers_waiting),
    };
    RingView { state, problems }
}

/// Reads an SPSC ring.
///
/// # Errors
/// [`crate::Error::InvalidCapacity`] or [`crate::Error::RegionTooSmall`] if the
/// ring cannot lie in `region` at all.
pub fn spsc(region: &Region, capacity: u64) -> Result<RingView> {
    let cap = check_len(region, capacity, spsc::region_len)?;
    let ctl: Ctl<SpscControl> = Ctl::new(region);
    let s = Start {
        cap,
        // Acquire (both): pairs with the Release stores of `head` by the consumer
        // and of `tail` by the producer, as the rings' own loads do.
        head: ctl.head.pos.load(Ordering::Acquire),
        tail: ctl.tail.load(Ordering::Acquire),
    };
    let head = s.head;
    let data = region.data(spsc::CONTROL_LEN, cap);
    let mask = cap as u64 - 1;
    let mut problems = Vec::new();
    let used_bytes = used_bytes(&s, true, &mut problems);
    let mut counts = Counts::default();
    if head.is_multiple_of(8) {
        let mut pos = head;
        for _ in 0..=cap / 8 {
            let off = (pos & mask) as usize;
            // Acquire: pairs with the producer's Release store of the frame
            // header, so the payload it announces is written.
            let raw = data.word(off).load(Ordering::Acquire);
            match frame_at(frame::decode_spsc(raw, off, cap), pos, raw, &mut problems) {
                None | Some(SpscFrame::Empty) => break,
                Some(f) => {
                    if let SpscFrame::Message { len } = f {
                        counts.message(len as u64);
                    }
                    pos = pos.wrapping_add(f.size() as u64);
                    if used_bytes.is_some_and(|used| pos.wrapping_sub(head) > used) {
                        // Frames past `tail`: published by a producer that died before
                        // updating `tail`, or a stale lap. Stop counting there.
                        break;
                    }
                }
            }
        }
    }
    let ends = one_producer_endpoints(&ctl.ends, &mut problems);
    let mut v = view(&s, used_bytes, counts, ends, &ctl.wake, problems);
    // Relaxed: a counter for display; nothing is read on its strength.
    v.state.received = ctl.head.received.load(Ordering::Relaxed);
    Ok(v)
}

/// Reads an MPSC ring with `producers` slots.
///
/// # Errors
/// As [`spsc`](fn@spsc), plus [`crate::Error::TooManyProducers`] for a bad slot count.
pub fn mpsc(region: &Region, capacity: u64, producers: u16) -> Result<RingView> {
    let cap = check_mpsc_len(region, capacity, producers)?;
    let ctl: Ctl<MpscControl> = Ctl::new(region);
    let s = Start {
        cap,
        // Acquire (both): pairs with the Release stores of `head` by the consumer
        // and of `tail` by the producers, as the rings' own loads do.
        head: ctl.head.pos.load(Ordering::Acquire),
        tail: ctl.tail.load(Ordering::Acquire),
    };
    let (head, tail) = (s.head, s.tail);
    let slots = slot_array(region, producers);
    let data = region.data(mpsc::control_len(producers), cap);
    let mask = cap as u64 - 1;
    let mut problems = Vec::new();
    let used_bytes = used_bytes(&s, false, &mut problems);
    let mut counts = Counts::default();
    if let Some(used) = used_bytes {
        let mut pos = head;
        for _ in 0..=cap / 8 {
            if pos == tail {
                break;
            }
            let off = (pos & mask) as usize;
            // Acquire: pairs with the producer's Release store of the frame
            // header (its commit), so the payload it announces is written.
            let raw = data.word(off).load(Ordering::Acquire);
            match frame_at(
                frame::decode_mpsc(raw, off, cap, producers),
                pos,
                raw,
                &mut problems,
            ) {
                None => break,
                Some(None) => {
                    // A claim whose producer has not written (or never will write) its
                    // header: its length is unknown, so the walk ends here.
                    counts.uncommitted += 1;
                    break;
                }
                Some(Some(h)) => {
                    if h.len < 0 {
                        counts.uncommitted += 1;
                    } else if h.kind != MPSC_PAD {
                        counts.message(h.len as u64);
                    }
                    let end = pos.wrapping_add(h.size() as u64);
                    if end.wrapping_sub(head) > used {
                        problems.push(RingFinding {
                            field: RingField::Frame { position: pos },
                            expected: RingExpected::EndsBy(tail),
                            found: end,
                        });
                        break;
                    }
                    pos = end;
                }
            }
        }
    }
    let ends = mpsc_endpoints(&ctl, &slots, &mut problems);
    let mut v = view(&s, used_bytes, counts, ends, &ctl.wake, problems);
    // Relaxed: a counter for display; nothing is read on its strength.
    v.state.received = ctl.head.received.load(Ordering::Relaxed);
    Ok(v)
}

/// A ring's endpoints as their state words describe them, without the walk
/// over its frames that [`RingView`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The consumer.
    pub consumer: EndpointView,
    /// The producer (SPSC: one) or producer slots (MPSC).
    pub producers: Vec<EndpointView>,
}

/// Reads the endpoint words of an SPSC ring, and nothing else (a few loads).
///
/// # Errors
/// As [`spsc`](fn@spsc). An invalid state word is shown as
/// [`EndpointState::Invalid`].
pub fn spsc_ends(region: &Region, capacity: u64) -> Result<Endpoints> {
    check_len(region, capacity, spsc::region_len)?;
    let ctl: Ctl<SpscControl> = Ctl::new(region);
    Ok(one_producer_endpoints(&ctl.ends, &mut Vec::new()))
}

/// Reads the endpoint words of an MPSC ring with `producers` slots, and nothing
/// else.
///
/// # Errors
/// As [`mpsc`](fn@mpsc).
pub fn mpsc_ends(region: &Region, capacity: u64, producers: u16) -> Result<Endpoints> {
    check_mpsc_len(region, capacity, producers)?;
    let slots = slot_array(region, producers);
    Ok(mpsc_endpoints(&Ctl::new(region), &slots, &mut Vec::new()))
}

/// Reads a broadcast ring with `subscribers` slots. `head` is the lowest
/// position of an attached lossless subscriber (`tail` if none), and
/// `messages` what lies between: what some lossless subscriber has not
/// released (a broadcast ring holds nothing else for anyone).
///
/// # Errors
/// As [`spsc`](fn@spsc), plus [`crate::Error::InvalidSubscriberCount`].
pub fn broadcast(region: &Region, capacity: u64, subscribers: u16) -> Result<RingView> {
    let cap = check_broadcast_len(region, capacity, subscribers)?;
    let ctl: Ctl<BroadcastControl> = Ctl::new(region);
    let slots: CtlArray<Line<SubscriberSlot>> = CtlArray::new(region, 512, subscribers.into());
    // Acquire: pairs with the publisher's Release store of `tail`.
    let tail = ctl.publisher.tail.load(Ordering::Acquire);
    let mut problems = Vec::new();
    let ends = one_producer_endpoints(&ctl.ends, &mut problems);
    let subs: Vec<SubscriberView> = (0u16..)
        .zip(slots.iter())
        .map(|(i, s)| {
            // Acquire: pairs with the subscriber's Release store of `pos`.
            let position = s.pos.load(Ordering::Acquire);
            SubscriberView {
                end: end_view(&s.end, EndpointName::SubscriberSlot(i), &mut problems),
                // Relaxed (these three): values for display.
                lossless: s.mode.load(Ordering::Relaxed) == LOSSLESS,
                position,
                behind: tail.wrapping_sub(position),
                received: s.received.load(Ordering::Relaxed),
                lagged: s.lagged.load(Ordering::Relaxed),
            }
        })
        .collect();
    let head = subs
        .iter()
        .filter(|s| s.lossless && s.end.state == EndpointState::Attached && s.behind <= cap as u64)
        .map(|s| s.position)
        .max_by_key(|&p| tail.wrapping_sub(p))
        .unwrap_or(tail);
    let start = Start { cap, head, tail };
    let used_bytes = used_bytes(&start, false, &mut problems);
    let mut counts = Counts::default();
    if let Some(used) = used_bytes {
        let data = region.data(broadcast::control_len(subscribers), cap);
        let mut pos = head;
        for _ in 0..=cap / 8 {
            if pos.wrapping_sub(head) >= used {
                break;
            }
            let off = (pos & (cap as u64 - 1)) as usize;
            // Relaxed: below `tail`, loaded with Acquire.
            let raw = data.word(off).load(Ordering::Relaxed);
            let Some(f) = frame_at(
                frame::decode_broadcast(raw, off, cap),
                pos,
                raw,
                &mut problems,
            ) else {
                break;
            };
            if !f.padding {
                counts.message(f.len as u64);
            }
            pos = pos.wrapping_add(f.size() as u64);
        }
    }
    let mut v = view(&start, used_bytes, counts, ends, &ctl.wake, problems);
    v.state.received = subs.iter().map(|s| s.received).sum();
    v.state.subscribers = subs;
    Ok(v)
}

/// A broadcast publisher's positions, as its line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublisherPositions {
    /// End of the last published frame.
    pub tail: u64,
    /// Messages published since the ring was created.
    pub count: u64,
    /// How far the publisher may be writing (bytes below `intent - capacity`
    /// may be overwritten).
    pub intent: u64,
    /// The first frame not yet overwritten: the oldest message the ring
    /// still holds (where a subscriber joining at the oldest starts).
    pub oldest: u64,
}

/// Reads a broadcast ring's publisher line, and nothing else: where its
/// retained messages start (`oldest`) and end (`tail`). The values are as
/// found; a reader walking the frames between them checks each one.
///
/// # Errors
/// As [`broadcast`](fn@broadcast).
pub fn broadcast_publisher(
    region: &Region,
    capacity: u64,
    subscribers: u16,
) -> Result<PublisherPositions> {
    check_broadcast_len(region, capacity, subscribers)?;
    let ctl: Ctl<BroadcastControl> = Ctl::new(region);
    let pl = &ctl.publisher;
    Ok(PublisherPositions {
        // Acquire: pairs with the publisher's Release store of `tail` (after
        // `count`) and of `oldest` (before it overwrites anything).
        tail: pl.tail.load(Ordering::Acquire),
        // Relaxed (these two): stored before `tail`, for display and checks.
        count: pl.count.load(Ordering::Relaxed),
        intent: pl.intent.load(Ordering::Relaxed),
        oldest: pl.oldest.load(Ordering::Acquire),
    })
}

/// Reads the endpoint words of a broadcast ring (the unused consumer word and
/// the publisher), and nothing else.
///
/// # Errors
/// As [`broadcast`](fn@broadcast).
pub fn broadcast_ends(region: &Region, capacity: u64, subscribers: u16) -> Result<Endpoints> {
    check_broadcast_len(region, capacity, subscribers)?;
    let ctl: Ctl<BroadcastControl> = Ctl::new(region);
    Ok(one_producer_endpoints(&ctl.ends, &mut Vec::new()))
}

fn slot_array(region: &Region, producers: u16) -> CtlArray<Line<ProducerSlot>> {
    CtlArray::new(region, 512, producers.into())
}

/// The endpoint words of a ring with one producer word (SPSC; broadcast,
/// whose producer is the publisher and whose consumer word is unused).
fn one_producer_endpoints(ends: &Ends, problems: &mut Vec<RingFinding>) -> Endpoints {
    Endpoints {
        consumer: end_view(&ends.consumer, EndpointName::Consumer, problems),
        producers: vec![end_view(&ends.producer, EndpointName::Producer, problems)],
    }
}

fn mpsc_endpoints(
    ctl: &MpscControl,
    slots: &CtlArray<Line<ProducerSlot>>,
    problems: &mut Vec<RingFinding>,
) -> Endpoints {
    let consumer = end_view(&ctl.ends.consumer, EndpointName::Consumer, problems);
    let producers = (0u16..)
        .zip(slots.iter())
        .map(|(i, s)| {
            let mut v = end_view(&s.end, EndpointName::ProducerSlot(i), problems);
            // Acquire: pairs with the Release store of NO_CLAIM when a producer
            // commits (`mpsc.rs`); the claim is shown, never followed.
            let c = s.claim.load(Ordering::Acquire);
            if c != NO_CLAIM {
                v.pending_claim = Some(c & !7);
            }
            v
        })
        .collect();
    Endpoints {
        consumer,
        producers,
    }
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
            (v.state.messages, v.state.message_bytes, v.state.used_bytes),
            (5, 50, Some(5 * 24))
        );
        assert_eq!(v.state.producers[0].state, EndpointState::Attached);
        assert_eq!(v.state.consumer.state, EndpointState::Never);
        assert!(v.problems.is_empty());
        r.store_word(128, 3); // head not aligned
        r.store_word(spsc::CONTROL_LEN, 0xdead_beef_0000_0001);
        let v = spsc(&r, cap as u64).unwrap();
        assert_eq!(
            v.problems,
            [RingFinding {
                field: RingField::Head,
                expected: RingExpected::Aligned,
                found: 3,
            }]
        );
        r.store_word(128, 0);
        let v = spsc(&r, cap as u64).unwrap();
        assert_eq!(
            v.problems,
            [RingFinding {
                field: RingField::Frame { position: 0 },
                expected: RingExpected::Frame("unknown frame tag"),
                found: 0xdead_beef_0000_0001,
            }]
        );
    }

    #[test]
    fn broadcast_publisher_positions_follow_the_publisher() {
        let cap = 256;
        let g = crate::Geometry::broadcast(cap as u64, 1).unwrap();
        let r = Region::heap(broadcast::region_len(cap, 1));
        broadcast::init(&r, g, 64).unwrap();
        let p = broadcast_publisher(&r, cap as u64, 1).unwrap();
        assert_eq!((p.tail, p.count, p.intent, p.oldest), (64, 0, 64, 64));
        let mut tx =
            broadcast::Publisher::attach(&r, g, WaitConfig::default(), Arc::new(InProcess))
                .unwrap();
        // 24-byte frames: fourteen of them lap the 256-byte ring.
        for i in 0..14u8 {
            tx.send(&[i; 16]).unwrap();
        }
        let p = broadcast_publisher(&r, cap as u64, 1).unwrap();
        assert_eq!((p.tail, p.count), (64 + 14 * 24, 14));
        assert!(p.oldest > 64, "the first frames were overwritten");
        assert!(p.tail - p.oldest <= cap as u64);
        assert!(broadcast_publisher(&r, cap as u64, 0).is_err());
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
        assert_eq!((v.state.messages, v.state.uncommitted), (1, 1));
        assert_eq!(v.state.producers[1].state, EndpointState::Attached);
        assert_eq!(v.state.producers[0].state, EndpointState::Never);
    }
}
