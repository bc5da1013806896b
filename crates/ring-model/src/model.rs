//! Model-based test of both rings (catalogue FZ-04; the property tests that run it
//! are in `crates/ring/tests/model.rs`): a list of operations runs against a ring on a heap region and
//! against a `VecDeque` model of it.
//!
//! - With no peer operations the ring must match the model exactly: every receive
//!   returns the model's front message, `Full` and `Empty` come exactly when the
//!   model says so (SPSC keeps one 8-byte header slot free for the end marker and a
//!   frame takes `8 + align8(len)` bytes, plus padding to the end of the area when
//!   it would cross it), and the read-only `inspect` view agrees after every step.
//! - Once a peer operation has written into the region (`PeerWrite`, `SetTail`,
//!   `SetHead`), only frames no longer than the maximum or typed errors may come
//!   out, a corrupted consumer stays corrupted, and nothing may panic.
//!
//! The same harness is the body of the `ops_vs_model` fuzz target (`fuzz/src/lib.rs`
//! decodes fuzz input into [`Op`]s), so a fuzz crash replays as a list of
//! operations in a test of `crates/ring/tests/model.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use shmq_ring::frame::{self, MPSC_MSG, MPSC_PAD, MpscHeader, frame_len, max_payload};
use shmq_ring::{
    Consumer, Error, Geometry, InProcess, Mpsc, Producer, Region, Spsc, WaitConfig, WaitStrategy,
    inspect, mpsc, spsc,
};

use crate::Ring;

/// Which ring, how big, and where positions start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// MPSC with two producer slots, or SPSC.
    pub mpsc: bool,
    /// Capacity is `64 << (cap_shift % 5)`: 64 to 1024 bytes.
    pub cap_shift: u8,
    /// Start position selector (0, an offset inside the area, or near the 64-bit
    /// wrap): see [`Setup::start`].
    pub start: u16,
}

impl Setup {
    /// Capacity in bytes.
    pub fn cap(&self) -> usize {
        64 << (self.cap_shift % 5)
    }

    /// First position (8-aligned).
    pub fn start(&self) -> u64 {
        let k = u64::from(self.start >> 2) * 8;
        match self.start & 3 {
            0 => 0,
            1 => k,
            // Just below the 64-bit wrap.
            2 => u64::MAX - 7 - k,
            _ => (1u64 << 32) - k,
        }
    }
}

/// A value a peer writes into the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerValue {
    /// Zero (nothing written / reclaimed).
    Zero,
    /// Any bits.
    Raw(u64),
    /// A well-formed SPSC message header of this length.
    SpscMsg(u32),
    /// A well-formed SPSC padding header of this length.
    SpscPad(u32),
    /// A well-formed MPSC header with these fields.
    MpscMsg {
        /// Length (negative: being written).
        len: i32,
        /// Producer slot.
        slot: u8,
        /// Incarnation.
        inc: u16,
    },
    /// A well-formed MPSC padding header of this length.
    MpscPad(i32),
}

impl PeerValue {
    /// The 64-bit word.
    pub fn word(self) -> u64 {
        match self {
            PeerValue::Zero => 0,
            PeerValue::Raw(v) => v,
            PeerValue::SpscMsg(l) => frame::spsc_message(l as usize),
            PeerValue::SpscPad(l) => frame::spsc_padding(l as usize),
            PeerValue::MpscMsg { len, slot, inc } => MpscHeader {
                len,
                kind: MPSC_MSG,
                slot,
                incarnation: inc,
            }
            .encode(),
            PeerValue::MpscPad(len) => MpscHeader {
                len,
                kind: MPSC_PAD,
                slot: 0,
                incarnation: 0,
            }
            .encode(),
        }
    }
}

/// What a nested operation does while a reservation is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// MPSC: the *other* producer sends (SPSC: skipped, its producer is borrowed).
    Push {
        /// Length selector (see [`len_of`]).
        len: u16,
    },
    /// The consumer receives one message.
    Pop,
    /// The consumer receives up to `max` messages in place.
    PopBatch {
        /// Most messages.
        max: u8,
    },
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `try_send` by producer `p % producers`.
    Push {
        /// Producer.
        p: u8,
        /// Length selector (see [`len_of`]).
        len: u16,
    },
    /// `try_reserve`, write, then commit (SPSC: `commit_len(min(keep, len))`).
    ReserveCommit {
        /// Producer.
        p: u8,
        /// Length selector.
        len: u16,
        /// SPSC: bytes actually committed.
        keep: u16,
    },
    /// `try_reserve`, write, then drop the guard (abort).
    ReserveAbort {
        /// Producer.
        p: u8,
        /// Length selector.
        len: u16,
    },
    /// `try_reserve`, then the inner operations while the reservation is held, then
    /// commit or abort.
    Hold {
        /// Producer.
        p: u8,
        /// Length selector.
        len: u16,
        /// What happens meanwhile.
        inner: Vec<Inner>,
        /// Commit (else abort).
        commit: bool,
    },
    /// `try_recv_into`.
    Pop,
    /// `try_recv_batch(max)`.
    PopBatch {
        /// Most messages.
        max: u8,
    },
    /// `recv_into_timeout(0)`: the blocking path with a zero deadline (MPSC: with
    /// the reclamation pass).
    PopSlow,
    /// SPSC `try_send_batch` (MPSC: the same messages one by one).
    PushBatch {
        /// Producer.
        p: u8,
        /// Length selectors.
        lens: Vec<u16>,
    },
    /// Detach producer `p` (as after `fork`) and attach a new one in its place.
    ReattachProducer {
        /// Producer.
        p: u8,
    },
    /// Detach the consumer and attach a new one.
    ReattachConsumer,
    /// A peer writes `value` into region word `word % words`.
    PeerWrite {
        /// Word index.
        word: u16,
        /// What it writes.
        value: PeerValue,
    },
    /// A peer writes `tail`.
    SetTail(u64),
    /// A peer writes `head`.
    SetHead(u64),
}

/// Payload length from a selector: `0..=max + 8`, so that a few are too large.
pub fn len_of(sel: u16, max: usize) -> usize {
    usize::from(sel) % (max + 9)
}

/// The payload of message number `seq`.
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(0x9e37_79b9) as usize).wrapping_add(i * 7) as u8)
        .collect()
}

const REGION_TAIL: usize = 0;
const REGION_HEAD: usize = 128;

/// Sends and receives never wait: `Park` never spins and a zero slice never sleeps,
/// so every call (including `recv_into_timeout(0)`) is deterministic.
pub fn cfg() -> WaitConfig {
    WaitConfig {
        strategy: WaitStrategy::Park,
        slice: Duration::ZERO,
        ..WaitConfig::default()
    }
}

/// What happened, for coverage statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received.
    pub received: u64,
    /// `Full` results.
    pub full: u64,
    /// `Corrupted` results.
    pub corrupted: u64,
    /// Operations run after the first peer write.
    pub hostile_ops: u64,
}

/// A failed comparison.
pub type Mismatch = String;

macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

/// What a result may be once a peer has written into the region.
fn hostile_ok<T>(r: &Result<T, Error>, len: Option<usize>, max: usize) -> Result<(), Mismatch> {
    match r {
        Ok(_)
        | Err(Error::Full)
        | Err(Error::Empty)
        | Err(Error::Timeout)
        | Err(Error::Corrupted(_))
        | Err(Error::Disconnected(_)) => Ok(()),
        Err(Error::MessageTooLarge { len: l, max: m }) => {
            check!(
                Some(*l) == len && *l > max && *m == max,
                "MessageTooLarge for {l} (max {max})"
            );
            Ok(())
        }
        Err(e) => Err(format!("unexpected error {e:?}")),
    }
}

// ---------------------------------------------------------------------------
// Both rings

/// What the two models answer alike.
trait Model {
    /// The data area's capacity in bytes.
    fn cap(&self) -> usize;
    /// Largest payload.
    fn max(&self) -> usize {
        max_payload(self.cap())
    }
    /// `(padding, need)` for a frame of `len` bytes, or `None` when full.
    fn place(&self, len: usize) -> Option<(usize, usize)>;
    /// Commits a message placed after `pad` bytes of padding.
    fn commit(&mut self, msg: Vec<u8>, pad: usize);
    /// A single receive.
    fn pop(&mut self) -> Option<Vec<u8>>;
    /// `try_recv_batch(max)`.
    fn batch(&mut self, max: usize) -> Vec<Vec<u8>>;
    /// The tail and the head the room is counted from (for messages).
    fn tail_head(&self) -> (u64, u64);
    /// What the `inspect` view must show with an honest peer.
    fn view(&self) -> ModelView;
}

/// A reservation's result split into what the model checks (`Ok(())` or the
/// error) and the guard, if there is one.
fn split<G>(r: Result<G, Error>) -> (Result<(), Error>, Option<G>) {
    match r {
        Ok(g) => (Ok(()), Some(g)),
        Err(e) => (Err(e), None),
    }
}

/// A frame of `len` bytes claimed at `tail` in a data area of `cap` bytes:
/// its size, and the padding before it (up to the end, if it would cross it).
fn frame_at(tail: u64, cap: usize, len: usize) -> (usize, usize) {
    let f = frame_len(len);
    let o = (tail & (cap as u64 - 1)) as usize;
    (f, if o + f <= cap { 0 } else { cap - o })
}

/// What the model says the `inspect` view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ModelView {
    /// The published `head` and `tail`.
    head: u64,
    tail: u64,
    /// Committed messages waiting, and their payload bytes.
    messages: u64,
    message_bytes: u64,
    /// Claims not yet committed (MPSC).
    uncommitted: u64,
}

/// A ring kind under the model: its model and what the kinds do differently.
trait ModelKind: Ring {
    /// The kind's model.
    type Model: Model;
    /// What a refused placement is called in messages.
    const PLACE: &'static str;
    /// The geometry of a ring of `cap` bytes.
    fn geometry(cap: usize) -> Geometry<Self>;
    /// A model of an empty ring at `start`.
    fn model(cap: usize, start: u64) -> Self::Model;
    /// Producer operations whose forms differ between the kinds (reservations,
    /// held guards, batches).
    fn produce(run: &mut Run<Self>, op: &Op) -> Result<(), Mismatch>;
    /// Checks that hold after a receive with an honest peer.
    fn after_recv(rx: &Consumer<Self>) -> Result<(), Mismatch>;
    /// The kind's `inspect` view of the ring.
    fn inspect(region: &Region, geometry: Geometry<Self>) -> shmq_ring::Result<inspect::RingView>;
}

/// A ring of kind `K` and its model, with a producer per slot (one for SPSC).
struct Run<K: ModelKind> {
    region: Region,
    geometry: Geometry<K>,
    tx: Vec<Option<Producer<K>>>,
    rx: Option<Consumer<K>>,
    model: K::Model,
    hostile: bool,
    rx_poison: Option<Error>,
    seq: u64,
    stats: Stats,
}

impl<K: ModelKind> Run<K> {
    fn new(setup: Setup) -> Run<K> {
        let cap = setup.cap();
        let geometry = K::geometry(cap);
        let region = Region::heap(geometry.region_len());
        K::init(&region, geometry, setup.start()).unwrap();
        let tx = (0..geometry.producers())
            .map(|s| Some(K::producer(&region, geometry, s, cfg(), Arc::new(InProcess)).unwrap()))
            .collect();
        let rx = K::consumer(&region, geometry, cfg(), Arc::new(InProcess)).unwrap();
        Run {
            model: K::model(cap, setup.start()),
            region,
            geometry,
            tx,
            rx: Some(rx),
            hostile: false,
            rx_poison: None,
            seq: 0,
            stats: Stats::default(),
        }
    }

    /// The producer slot an operation's `p` selects.
    fn slot(&self, p: u8) -> usize {
        usize::from(p) % self.tx.len()
    }

    fn next_payload(&mut self, len: usize) -> Vec<u8> {
        self.seq += 1;
        payload(self.seq, len)
    }

    /// Checks a send-like result against the model; returns the placement to commit.
    fn expect_room(
        &mut self,
        r: &Result<(), Error>,
        len: usize,
    ) -> Result<Option<usize>, Mismatch> {
        let max = self.model.max();
        if matches!(r, Err(Error::Full)) {
            self.stats.full += 1;
        }
        if matches!(r, Err(Error::Corrupted(_))) {
            self.stats.corrupted += 1;
        }
        if self.hostile {
            hostile_ok(r, Some(len), max)?;
            return Ok(None);
        }
        if len > max {
            check!(
                *r == Err(Error::MessageTooLarge { len, max }),
                "len {len} > max {max}: got {r:?}"
            );
            return Ok(None);
        }
        match (self.model.place(len), r) {
            (Some((pad, _)), Ok(())) => Ok(Some(pad)),
            (None, Err(Error::Full)) => Ok(None),
            (want, got) => {
                let (tail, head) = self.model.tail_head();
                Err(format!(
                    "{} {len} at tail {tail} head {head}: model {want:?}, ring {got:?}",
                    K::PLACE
                ))
            }
        }
    }

    /// `try_send` from producer `p`.
    fn push(&mut self, p: usize, len: usize) -> Result<(), Mismatch> {
        let m = self.next_payload(len);
        let Some(tx) = self.tx[p].as_mut() else {
            return Ok(());
        };
        let r = tx.try_send(&m);
        if let Some(pad) = self.expect_room(&r, len)? {
            self.model.commit(m, pad);
        }
        Ok(())
    }

    /// Checks a receive's result against the model (for a hostile run: a valid
    /// frame or an error, and a poisoned consumer repeats its error on every call).
    fn check_received(&mut self, r: Result<Vec<u8>, Error>) -> Result<(), Mismatch> {
        let max = self.model.max();
        if let Ok(m) = &r {
            check!(m.len() <= max, "received {} bytes > max {max}", m.len());
            self.stats.received += 1;
        }
        if self.hostile {
            if let Some(p) = self.rx_poison {
                check!(r == Err(p), "poisoned consumer returned {r:?}, not {p:?}");
            }
            if let Err(e @ Error::Corrupted(_)) = r {
                self.stats.corrupted += 1;
                self.rx_poison = Some(e);
            }
            return hostile_ok(&r, None, max);
        }
        match (self.model.pop(), r) {
            (Some(want), Ok(got)) => {
                check!(
                    want == got,
                    "received {} bytes, model {} bytes",
                    got.len(),
                    want.len()
                );
                Ok(())
            }
            (None, Err(Error::Empty | Error::Timeout)) => Ok(()),
            (want, got) => Err(format!(
                "recv: model {:?}, ring {got:?}",
                want.map(|w| w.len())
            )),
        }
    }

    fn pop(&mut self, slow: bool) -> Result<(), Mismatch> {
        let Some(rx) = self.rx.as_mut() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        let r = if slow {
            rx.recv_into_timeout(&mut buf, Duration::ZERO)
        } else {
            rx.try_recv_into(&mut buf)
        };
        if !self.hostile {
            if slow {
                check!(
                    !matches!(r, Err(Error::Empty)),
                    "blocking receive said Empty"
                );
            } else {
                check!(
                    !matches!(r, Err(Error::Timeout)),
                    "non-blocking receive said Timeout"
                );
            }
            K::after_recv(rx)?;
        }
        self.check_received(r.map(|()| buf))
    }

    fn pop_batch(&mut self, max: u8) -> Result<(), Mismatch> {
        let Some(rx) = self.rx.as_mut() else {
            return Ok(());
        };
        let mut got = Vec::new();
        let r = rx.try_recv_batch(usize::from(max), |m| got.push(m.to_vec()));
        check!(
            r.is_err() || r == Ok(got.len()),
            "batch returned {r:?} but handed over {}",
            got.len()
        );
        check!(
            got.len() <= usize::from(max),
            "batch of at most {max} gave {}",
            got.len()
        );
        if self.hostile {
            for m in got {
                self.check_received(Ok(m))?;
            }
            if r.is_err() {
                self.check_received(r.map(|_| Vec::new()))?;
            }
            return Ok(());
        }
        check!(r.is_ok(), "batch: {r:?}");
        let want = self.model.batch(usize::from(max));
        check!(
            got.len() == want.len(),
            "batch gave {}, model {}",
            got.len(),
            want.len()
        );
        let limit = self.model.max();
        for m in &got {
            check!(m.len() <= limit, "received {} bytes > max {limit}", m.len());
        }
        check!(
            got == want,
            "batch gave {} messages, model {}",
            got.len(),
            want.len()
        );
        self.stats.received += got.len() as u64;
        Ok(())
    }

    /// An operation inside a held reservation; a push goes to producer `other`
    /// (SPSC has none, and skips it).
    fn inner(&mut self, other: Option<usize>, op: Inner) -> Result<(), Mismatch> {
        match op {
            Inner::Push { len } => match other {
                Some(o) => self.push(o, len_of(len, self.model.max())),
                None => Ok(()),
            },
            Inner::Pop => self.pop(false),
            Inner::PopBatch { max } => self.pop_batch(max),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), Mismatch> {
        let max = self.model.max();
        if self.hostile {
            self.stats.hostile_ops += 1;
        }
        match *op {
            Op::Push { p, len } => self.push(self.slot(p), len_of(len, max))?,
            Op::ReserveCommit { .. }
            | Op::ReserveAbort { .. }
            | Op::Hold { .. }
            | Op::PushBatch { .. } => K::produce(self, op)?,
            Op::Pop => self.pop(false)?,
            Op::PopSlow => self.pop(true)?,
            Op::PopBatch { max } => self.pop_batch(max)?,
            Op::ReattachProducer { p } => {
                let p = self.slot(p);
                if let Some(tx) = self.tx[p].take() {
                    tx.detach();
                }
                let r = K::producer(
                    &self.region,
                    self.geometry,
                    p as u16,
                    cfg(),
                    Arc::new(InProcess),
                );
                if !self.hostile {
                    check!(r.is_ok(), "producer re-attach: {:?}", r.err());
                } else {
                    hostile_ok(&r, None, max)?;
                }
                self.tx[p] = r.ok();
            }
            Op::ReattachConsumer => {
                if let Some(rx) = self.rx.take() {
                    rx.detach();
                }
                let r = K::consumer(&self.region, self.geometry, cfg(), Arc::new(InProcess));
                if !self.hostile {
                    check!(r.is_ok(), "consumer re-attach: {:?}", r.err());
                } else {
                    hostile_ok(&r, None, max)?;
                }
                self.rx = r.ok();
                self.rx_poison = None;
            }
            Op::PeerWrite { word, value } => {
                let w = usize::from(word) % (self.region.len() / 8);
                check!(self.region.store_word(w * 8, value.word()), "store_word");
                self.hostile = true;
            }
            Op::SetTail(v) => {
                check!(self.region.store_word(REGION_TAIL, v), "store_word");
                self.hostile = true;
            }
            Op::SetHead(v) => {
                check!(self.region.store_word(REGION_HEAD, v), "store_word");
                self.hostile = true;
            }
        }
        if !self.hostile {
            self.check_view()?;
        }
        Ok(())
    }

    /// The inspection view agrees with the model.
    fn check_view(&self) -> Result<(), Mismatch> {
        let v = K::inspect(&self.region, self.geometry).map_err(|e| e.to_string())?;
        let m = self.model.view();
        check!(v.problems.is_empty(), "view problems {:?}", v.problems);
        check!(
            (v.state.head, v.state.tail) == (m.head, m.tail),
            "view head/tail {}/{}, model {}/{}",
            v.state.head,
            v.state.tail,
            m.head,
            m.tail
        );
        check!(
            (v.state.messages, v.state.uncommitted) == (m.messages, m.uncommitted),
            "view counts {} messages and {} claims, model {} and {}",
            v.state.messages,
            v.state.uncommitted,
            m.messages,
            m.uncommitted
        );
        check!(
            v.state.message_bytes == m.message_bytes,
            "view counts {} bytes, model {}",
            v.state.message_bytes,
            m.message_bytes
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// SPSC

/// The SPSC model: positions and the queue of committed messages, each with the
/// padding that precedes it.
struct SpscModel {
    cap: usize,
    tail: u64,
    head: u64,
    queue: VecDeque<(Vec<u8>, usize)>,
}

impl Model for SpscModel {
    fn cap(&self) -> usize {
        self.cap
    }

    /// Where a frame of `len` bytes goes: `(padding, room needed)`, or `None` when
    /// it does not fit now.
    fn place(&self, len: usize) -> Option<(usize, usize)> {
        let (f, pad) = frame_at(self.tail, self.cap, len);
        // The frame, its padding, and the header slot after it (the end marker).
        let need = pad + f + frame::HEADER_LEN;
        (self.tail.wrapping_sub(self.head) + need as u64 <= self.cap as u64).then_some((pad, need))
    }

    fn commit(&mut self, msg: Vec<u8>, pad: usize) {
        self.tail = self.tail.wrapping_add((pad + frame_len(msg.len())) as u64);
        self.queue.push_back((msg, pad));
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let (m, pad) = self.queue.pop_front()?;
        self.head = self.head.wrapping_add((pad + frame_len(m.len())) as u64);
        Some(m)
    }

    fn batch(&mut self, max: usize) -> Vec<Vec<u8>> {
        (0..max).map_while(|_| self.pop()).collect()
    }

    fn tail_head(&self) -> (u64, u64) {
        (self.tail, self.head)
    }

    fn view(&self) -> ModelView {
        ModelView {
            head: self.head,
            tail: self.tail,
            messages: self.queue.len() as u64,
            message_bytes: self.queue.iter().map(|(q, _)| q.len() as u64).sum(),
            uncommitted: 0,
        }
    }
}

impl ModelKind for Spsc {
    type Model = SpscModel;
    const PLACE: &'static str = "send";

    fn geometry(cap: usize) -> Geometry<Spsc> {
        Geometry::spsc(cap as u64).unwrap()
    }

    fn model(cap: usize, start: u64) -> SpscModel {
        SpscModel {
            cap,
            tail: start,
            head: start,
            queue: VecDeque::new(),
        }
    }

    /// Reservations (committed short with `commit_len`, aborted, or held across
    /// receives) and `try_send_batch`.
    fn produce(run: &mut Run<Spsc>, op: &Op) -> Result<(), Mismatch> {
        let max = run.model.max();
        match *op {
            Op::ReserveCommit { len, keep, .. } => {
                let len = len_of(len, max);
                let m = run.next_payload(len);
                let keep = usize::from(keep).min(len);
                let Some(tx) = run.tx[0].as_mut() else {
                    return Ok(());
                };
                let r = tx.try_reserve(len).map(|mut g| {
                    g.copy_from_slice(&m);
                    g.commit_len(keep);
                });
                if let Some(pad) = run.expect_room(&r, len)? {
                    run.model.commit(m[..keep].to_vec(), pad);
                }
            }
            Op::ReserveAbort { len, .. } => {
                let len = len_of(len, max);
                let m = run.next_payload(len);
                let Some(tx) = run.tx[0].as_mut() else {
                    return Ok(());
                };
                let r = tx.try_reserve(len).map(|mut g| g.copy_from_slice(&m));
                run.expect_room(&r, len)?;
            }
            Op::Hold {
                len,
                ref inner,
                commit,
                ..
            } => {
                let len = len_of(len, max);
                let m = run.next_payload(len);
                let Some(mut tx) = run.tx[0].take() else {
                    return Ok(());
                };
                let res: Result<(), Mismatch> = (|| {
                    let (r, g) = split(tx.try_reserve(len));
                    let pad = run.expect_room(&r, len)?;
                    let Some(mut g) = g else {
                        return Ok(());
                    };
                    g.copy_from_slice(&m);
                    for &i in inner {
                        run.inner(None, i)?;
                    }
                    if commit {
                        g.commit();
                        if let Some(pad) = pad {
                            run.model.commit(m, pad);
                        }
                    }
                    Ok(())
                })();
                run.tx[0] = Some(tx);
                res?;
            }
            Op::PushBatch { ref lens, .. } => {
                // Lengths are kept within the maximum: a too-large message after one
                // that fits wedges the ring (see `try_send_batch_with_a_too_large_message_*`).
                let msgs: Vec<Vec<u8>> = lens
                    .iter()
                    .map(|&l| {
                        let len = len_of(l, max).min(max);
                        run.next_payload(len)
                    })
                    .collect();
                let Some(tx) = run.tx[0].as_mut() else {
                    return Ok(());
                };
                let r = tx.try_send_batch(msgs.iter().map(Vec::as_slice));
                if run.hostile {
                    hostile_ok(&r, None, max)?;
                    return Ok(());
                }
                let mut n = 0;
                for m in &msgs {
                    let Some((pad, _)) = run.model.place(m.len()) else {
                        break;
                    };
                    run.model.commit(m.clone(), pad);
                    n += 1;
                }
                match (n, r) {
                    (0, Err(Error::Full)) if !msgs.is_empty() => run.stats.full += 1,
                    (0, Err(Error::Full)) => {}
                    (n, Ok(k)) if n == k && n > 0 => {}
                    (n, r) => {
                        return Err(format!("batch of {}: model {n}, ring {r:?}", msgs.len()));
                    }
                }
            }
            _ => unreachable!("{op:?} is not a kind-specific producer operation"),
        }
        Ok(())
    }

    fn after_recv(_rx: &spsc::Consumer) -> Result<(), Mismatch> {
        Ok(())
    }

    fn inspect(region: &Region, geometry: Geometry<Spsc>) -> shmq_ring::Result<inspect::RingView> {
        inspect::spsc(region, geometry.capacity() as u64)
    }
}

// ---------------------------------------------------------------------------
// MPSC

#[derive(Clone, Debug)]
enum Kind {
    Msg(Vec<u8>),
    Pad,
    /// Claimed by a guard that is still held (its header is negative).
    Claim,
}

#[derive(Clone, Debug)]
struct Entry {
    pos: u64,
    size: u64,
    kind: Kind,
}

/// The MPSC model: the claim position, the published `head`, and every frame from
/// the consumer's position on (messages, padding, claims still held).
struct MpscModel {
    cap: usize,
    tail: u64,
    /// The consumer's own position: past every frame it has received or skipped.
    head: u64,
    /// The position it last published (after the last release).
    head_pub: u64,
    queue: VecDeque<Entry>,
}

impl MpscModel {
    /// Claims room; returns the index of the frame's entry.
    fn claim(&mut self, len: usize, pad: usize) -> u64 {
        if pad > 0 {
            self.queue.push_back(Entry {
                pos: self.tail,
                size: pad as u64,
                kind: Kind::Pad,
            });
            self.tail = self.tail.wrapping_add(pad as u64);
        }
        let pos = self.tail;
        self.queue.push_back(Entry {
            pos,
            size: frame_len(len) as u64,
            kind: Kind::Claim,
        });
        self.tail = self.tail.wrapping_add(frame_len(len) as u64);
        pos
    }

    fn settle(&mut self, pos: u64, kind: Kind) {
        let e = self
            .queue
            .iter_mut()
            .find(|e| e.pos == pos && matches!(e.kind, Kind::Claim))
            .expect("the claim is in the queue");
        e.kind = kind;
    }

    /// Before each frame it looks at, the consumer releases (zeroes and publishes)
    /// what it has consumed once that is half the ring or more, so that a long walk
    /// never comes back round to frames it has not zeroed yet.
    fn maybe_release(&mut self) {
        if self.head.wrapping_sub(self.head_pub) >= (self.cap / 2) as u64 {
            self.head_pub = self.head;
        }
    }

    /// One walk of the consumer: skips padding, stops at a claim or at the end, or
    /// takes a message (whose release is the caller's business).
    fn walk(&mut self) -> Option<Vec<u8>> {
        loop {
            self.maybe_release();
            if matches!(self.queue.front()?.kind, Kind::Claim) {
                return None;
            }
            let e = self.queue.pop_front().unwrap();
            self.head = e.pos.wrapping_add(e.size);
            if let Kind::Msg(m) = e.kind {
                return Some(m);
            }
        }
    }
}

impl Model for MpscModel {
    fn cap(&self) -> usize {
        self.cap
    }

    /// `(padding, need)` for a claim of `len` bytes, or `None` when full.
    fn place(&self, len: usize) -> Option<(usize, usize)> {
        let (f, pad) = frame_at(self.tail, self.cap, len);
        let need = pad + f;
        (self.tail.wrapping_sub(self.head_pub) + need as u64 <= self.cap as u64)
            .then_some((pad, need))
    }

    /// A claim settled at once (`try_send`).
    fn commit(&mut self, msg: Vec<u8>, pad: usize) {
        let pos = self.claim(msg.len(), pad);
        self.settle(pos, Kind::Msg(msg));
    }

    /// A single receive: the walk, then the release of the message.
    fn pop(&mut self) -> Option<Vec<u8>> {
        let m = self.walk()?;
        self.head_pub = self.head;
        Some(m)
    }

    /// `try_recv_batch(max)`: walks for up to `max` messages, then one release if
    /// it took any.
    fn batch(&mut self, max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.walk() {
                Some(m) => out.push(m),
                None => break,
            }
        }
        if !out.is_empty() {
            self.head_pub = self.head;
        }
        out
    }

    fn tail_head(&self) -> (u64, u64) {
        (self.tail, self.head_pub)
    }

    fn view(&self) -> ModelView {
        let msgs = || {
            self.queue.iter().filter_map(|e| match &e.kind {
                Kind::Msg(m) => Some(m.len() as u64),
                _ => None,
            })
        };
        ModelView {
            head: self.head_pub,
            tail: self.tail,
            messages: msgs().count() as u64,
            message_bytes: msgs().sum(),
            uncommitted: self
                .queue
                .iter()
                .filter(|e| matches!(e.kind, Kind::Claim))
                .count() as u64,
        }
    }
}

const PRODUCERS: u16 = 2;

impl ModelKind for Mpsc {
    type Model = MpscModel;
    const PLACE: &'static str = "claim";

    fn geometry(cap: usize) -> Geometry<Mpsc> {
        Geometry::mpsc(cap as u64, PRODUCERS).unwrap()
    }

    fn model(cap: usize, start: u64) -> MpscModel {
        MpscModel {
            cap,
            tail: start,
            head: start,
            head_pub: start,
            queue: VecDeque::new(),
        }
    }

    /// Reservations (committed, aborted, or held across the other producer's sends
    /// and receives) and batches (sent one by one).
    fn produce(run: &mut Run<Mpsc>, op: &Op) -> Result<(), Mismatch> {
        let max = run.model.max();
        match *op {
            Op::ReserveCommit { p, len, .. } | Op::ReserveAbort { p, len } => {
                let commit = matches!(op, Op::ReserveCommit { .. });
                run.hold(usize::from(p % 2), len_of(len, max), &[], commit)
            }
            Op::Hold {
                p,
                len,
                ref inner,
                commit,
            } => run.hold(usize::from(p % 2), len_of(len, max), inner, commit),
            Op::PushBatch { p, ref lens } => {
                for &l in lens {
                    run.push(usize::from(p % 2), len_of(l, max))?;
                }
                Ok(())
            }
            _ => unreachable!("{op:?} is not a kind-specific producer operation"),
        }
    }

    fn after_recv(rx: &mpsc::Consumer) -> Result<(), Mismatch> {
        check!(
            rx.reclaimed() == 0,
            "reclaimed a claim with every producer alive"
        );
        Ok(())
    }

    fn inspect(region: &Region, geometry: Geometry<Mpsc>) -> shmq_ring::Result<inspect::RingView> {
        inspect::mpsc(region, geometry.capacity() as u64, geometry.producers())
    }
}

impl Run<Mpsc> {
    fn hold(
        &mut self,
        p: usize,
        len: usize,
        inner: &[Inner],
        commit: bool,
    ) -> Result<(), Mismatch> {
        // A zero-length claim is published as a committed empty message at once (see
        // `mpsc_zero_length_reservation_is_not_delivered_before_commit`): until that
        // is fixed, reservations here are at least one byte long.
        let len = len.max(1);
        let m = self.next_payload(len);
        let Some(mut tx) = self.tx[p].take() else {
            return Ok(());
        };
        let res: Result<(), Mismatch> = (|| {
            let (r, g) = split(tx.try_reserve(len));
            let pad = self.expect_room(&r, len)?;
            let pos = pad.map(|pad| self.model.claim(len, pad));
            let Some(mut g) = g else {
                return Ok(());
            };
            g.copy_from_slice(&m);
            for &i in inner {
                self.inner(Some(1 - p), i)?;
            }
            if commit {
                g.commit();
            } else {
                drop(g);
            }
            if let Some(pos) = pos {
                self.model
                    .settle(pos, if commit { Kind::Msg(m) } else { Kind::Pad });
            }
            Ok(())
        })();
        self.tx[p] = Some(tx);
        res
    }
}

/// Two MPSC producers' held claims: producer 0 holds a claim of 5 while producer 1
/// sends and the consumer receives, then commits; producer 1 holds a claim of
/// `second` bytes while producer 0 sends, then aborts. A test
/// (`mpsc_claims_block_in_order`) and a fuzz seed (`mpsc-held-claims`) go on from
/// here.
pub fn held_claims(second: u16) -> (Setup, Vec<Op>) {
    let setup = Setup {
        mpsc: true,
        cap_shift: 2,
        start: 0,
    };
    let ops = vec![
        Op::Hold {
            p: 0,
            len: 5,
            inner: vec![
                Inner::Push { len: 3 },
                Inner::Pop,
                Inner::PopBatch { max: 3 },
            ],
            commit: true,
        },
        Op::PopBatch { max: 3 },
        Op::Hold {
            p: 1,
            len: second,
            inner: vec![Inner::Push { len: 3 }],
            commit: false,
        },
    ];
    (setup, ops)
}

/// Runs `ops` against the ring `setup` describes and its model.
///
/// # Errors
/// The first disagreement between ring and model, in words.
pub fn run(setup: Setup, ops: &[Op]) -> Result<Stats, Mismatch> {
    if setup.mpsc {
        run_kind::<Mpsc>(setup, ops)
    } else {
        run_kind::<Spsc>(setup, ops)
    }
}

fn run_kind<K: ModelKind>(setup: Setup, ops: &[Op]) -> Result<Stats, Mismatch> {
    let mut r = Run::<K>::new(setup);
    for (i, op) in ops.iter().enumerate() {
        r.step(op).map_err(|e| format!("step {i} ({op:?}): {e}"))?;
    }
    Ok(r.stats)
}
