//! Shared code of the shmq fuzz targets (docs/FUZZING.md): input formats, the
//! drain loop every consumer-side target runs, and the two harnesses that also run
//! as ordinary tests of `shmq-ring`, from the `shmq-ring-model` crate, so that a
//! fuzz crash replays as a test:
//! - [`model`] is `shmq_ring_model::model` (FZ-04; tests in
//!   `crates/ring/tests/model.rs`);
//! - `adversary` is `shmq_ring_model::adversary`, whose `sim` module is FZ-05
//!   (only with `--cfg shmq_adversary`, which turns on the read-reporting atomics;
//!   tests in `crates/ring/tests/adversary.rs`).

use std::sync::Arc;
use std::time::Duration;

use shmq_ring::{
    Consumer, Endpoint, Error, Geometry, Kind, Liveness, Mpsc, Region, Spsc, WaitConfig, mpsc, spsc,
};
use shmq_ring_model::Ring;

pub use shmq_ring_model::model;

#[cfg(shmq_adversary)]
pub use shmq_ring_model::adversary;

/// Waits that never wait: `Park` skips the spin phase and a zero slice never
/// sleeps, so `recv_into_timeout(ZERO)` runs the blocking path (liveness checks,
/// MPSC reclamation) once and returns, deterministically.
pub fn no_wait() -> WaitConfig {
    shmq_ring_model::model::cfg()
}

/// Liveness from a bit mask: producer slot `s` is dead when bit `s` is set (slots
/// 8 and up are alive); the consumer is alive.
#[derive(Clone, Copy, Debug)]
pub struct Mask(pub u8);

impl Liveness for Mask {
    fn is_alive(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Consumer | Endpoint::Subscriber(_) => true,
            Endpoint::Producer(s) => s >= 8 || self.0 & (1 << s) == 0,
        }
    }
}

/// Copies `bytes` into `region` from offset 0, a word at a time (a short last word
/// is zero-padded); bytes beyond the region are ignored.
pub fn load_image(region: &Region, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        if !region.store_word(i * 8, u64::from_le_bytes(w)) {
            break;
        }
    }
}

/// Which receive calls a drain makes, in turn.
#[derive(Clone, Copy, Debug)]
pub struct DrainPlan {
    /// `try_recv_batch` maximum (0 skips batches).
    pub batch: u8,
    /// Calls to make at most (a static image can look like an endless stream: an
    /// SPSC consumer never zeroes what it read, so frames covering a whole lap
    /// are received again and again, as from a producer that keeps sending).
    pub calls: usize,
}

/// What a drain saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drained {
    /// Messages received.
    pub messages: usize,
    /// The last error, if any.
    pub last: Option<Error>,
}

/// Any receive result must be a message no longer than `max` or one of these.
fn allowed(e: &Error) -> bool {
    matches!(
        e,
        Error::Empty | Error::Timeout | Error::Corrupted(_) | Error::Disconnected(_)
    )
}

/// Drains `rx` as `plan` says.
///
/// # Panics
/// On a frame longer than the maximum or an error that no receive may return.
fn drain<K: Kind>(rx: &mut Consumer<K>, plan: DrainPlan) -> Drained {
    let max = rx.max_message_len();
    let mut out = Drained::default();
    let mut buf = Vec::new();
    for call in 0..plan.calls {
        let r = match call % 4 {
            0 | 1 => rx.try_recv_into(&mut buf).map(|()| 1),
            2 if plan.batch > 0 => rx.try_recv_batch(usize::from(plan.batch), |m| {
                assert!(m.len() <= max, "batch frame of {} > max {max}", m.len());
            }),
            2 => rx.try_recv().map(|g| {
                assert!(g.len() <= max, "guard frame of {} > max {max}", g.len());
                1
            }),
            _ => rx.recv_into_timeout(&mut buf, Duration::ZERO).map(|()| 1),
        };
        match r {
            Ok(n) => {
                assert!(buf.len() <= max, "frame of {} > max {max}", buf.len());
                out.messages += n;
            }
            Err(e) => {
                assert!(allowed(&e), "unexpected error {e:?}");
                out.last = Some(e);
                if matches!(e, Error::Corrupted(_) | Error::Disconnected(_)) {
                    break;
                }
                // Empty: the slow path (liveness, MPSC reclamation) has its turn
                // at `call % 4 == 3`; stop once it has had it.
                if call % 4 == 3 {
                    break;
                }
            }
        }
    }
    out
}

/// Attaches an SPSC consumer to `region` and drains it as `plan` says.
///
/// # Panics
/// On a frame longer than the maximum or an error that no receive may return:
/// the fuzz targets' oracle.
pub fn drain_spsc(region: &Region, capacity: u64, plan: DrainPlan) -> Result<Drained, Error> {
    let mut rx = Spsc::consumer(
        region,
        Geometry::spsc(capacity)?,
        no_wait(),
        Arc::new(Mask(0)),
    )?;
    let out = drain(&mut rx, plan);
    rx.detach();
    Ok(out)
}

/// Attaches an MPSC consumer to `region` (producer slots in `dead` dead) and
/// drains it as `plan` says.
///
/// # Panics
/// As [`drain_spsc`].
pub fn drain_mpsc(
    region: &Region,
    capacity: u64,
    producers: u16,
    dead: u8,
    plan: DrainPlan,
) -> Result<Drained, Error> {
    let g = Geometry::mpsc(capacity, producers)?;
    let mut rx = Mpsc::consumer(region, g, no_wait(), Arc::new(Mask(dead)))?;
    let out = drain(&mut rx, plan);
    rx.detach();
    Ok(out)
}

/// An attach may fail only with these.
pub fn attach_error_ok(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupted(_)
            | Error::InvalidCapacity(_)
            | Error::RegionTooSmall { .. }
            | Error::TooManyProducers(_)
    )
}

/// The `consumer_drain` (FZ-02) input: a fixed 19-byte head, then the region image.
///
/// ```text
/// 0      flags: bit 0 MPSC; bit 1 tail = head + (tail % (2*cap + 16)); bits 2-3
///        producer slots - 1; bits 4-7 dead producer slots (mask)
/// 1      capacity: 64 << (byte % 6)
/// 2..10  head (u64 LE), written at region offset 128
/// 10..18 tail (u64 LE), written at region offset 0
/// 18     try_recv_batch maximum
/// 19..   region image from offset 0 (control block, MPSC producer slots, data)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainInput {
    /// MPSC (else SPSC).
    pub mpsc: bool,
    /// Tail is relative to head.
    pub relative_tail: bool,
    /// MPSC producer slots, 1 to 4.
    pub producers: u16,
    /// Dead producer slots.
    pub dead: u8,
    /// Capacity in bytes.
    pub capacity: u64,
    /// `head` as written.
    pub head: u64,
    /// `tail` as read from the input (see `relative_tail`).
    pub tail: u64,
    /// Batch maximum.
    pub batch: u8,
    /// Region image.
    pub image: Vec<u8>,
}

impl DrainInput {
    /// Length of the fixed head.
    pub const HEAD: usize = 19;

    /// Parses an input (`None` if shorter than the fixed head).
    pub fn parse(data: &[u8]) -> Option<DrainInput> {
        let h = data.get(..Self::HEAD)?;
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
        Some(DrainInput {
            mpsc: h[0] & 1 != 0,
            relative_tail: h[0] & 2 != 0,
            producers: u16::from((h[0] >> 2) & 3) + 1,
            dead: h[0] >> 4,
            capacity: 64 << (h[1] % 6),
            head: u64_at(2),
            tail: u64_at(10),
            batch: h[18],
            image: data[Self::HEAD..].to_vec(),
        })
    }

    /// Serialises (the inverse of [`DrainInput::parse`] for inputs it produced).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::HEAD + self.image.len());
        v.push(
            u8::from(self.mpsc)
                | (u8::from(self.relative_tail) << 1)
                | (((self.producers - 1) as u8 & 3) << 2)
                | (self.dead << 4),
        );
        v.push(self.capacity.trailing_zeros().saturating_sub(6) as u8);
        v.extend(self.head.to_le_bytes());
        v.extend(self.tail.to_le_bytes());
        v.push(self.batch);
        v.extend(&self.image);
        v
    }

    /// The tail to write.
    pub fn effective_tail(&self) -> u64 {
        if self.relative_tail {
            self.head.wrapping_add(self.tail % (2 * self.capacity + 16))
        } else {
            self.tail
        }
    }

    /// Region length.
    pub fn region_len(&self) -> usize {
        let cap = self.capacity as usize;
        if self.mpsc {
            mpsc::region_len(cap, self.producers)
        } else {
            spsc::region_len(cap)
        }
    }
}

/// The `frame_decoder` (FZ-03) input: 15 bytes.
///
/// ```text
/// 0..8   header word (u64 LE)
/// 8..12  offset selector (u32 LE): offset = (sel * 8) % capacity
/// 12     capacity: 1 << (6 + byte % 27), 64 bytes to 4 GiB
/// 13..15 MPSC producer slots (u16 LE): 1 + sel % 256
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInput {
    /// The header word.
    pub raw: u64,
    /// Its offset in the data area (8-aligned, below the capacity).
    pub off: usize,
    /// Capacity of the data area.
    pub cap: usize,
    /// MPSC producer slots.
    pub slots: u16,
}

impl FrameInput {
    /// Parses an input (`None` if shorter than 15 bytes).
    pub fn parse(data: &[u8]) -> Option<FrameInput> {
        let d = data.get(..15)?;
        let cap = 1usize << (6 + d[12] % 27);
        let sel = u32::from_le_bytes(d[8..12].try_into().unwrap()) as usize;
        Some(FrameInput {
            raw: u64::from_le_bytes(d[..8].try_into().unwrap()),
            off: sel.wrapping_mul(8) % cap,
            cap,
            slots: 1 + u16::from_le_bytes(d[13..15].try_into().unwrap()) % 256,
        })
    }

    /// Serialises.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.raw.to_le_bytes().to_vec();
        v.extend(((self.off / 8) as u32).to_le_bytes());
        v.push(self.cap.trailing_zeros() as u8 - 6);
        v.extend((self.slots - 1).to_le_bytes());
        v
    }
}

/// Decoding and encoding of [`model::Op`] lists (FZ-04) with
/// [`arbitrary::Unstructured`]: one tag byte per operation, then its fields in
/// little-endian order; lists are a count byte (`% 8`) and the elements.
pub mod ops {
    use arbitrary::{Result, Unstructured};

    use crate::model::{Inner, Op, PeerValue, Setup};

    /// Reads a setup: MPSC flag byte, capacity byte, start (u16).
    pub fn setup(u: &mut Unstructured<'_>) -> Result<Setup> {
        Ok(Setup {
            mpsc: u.arbitrary::<u8>()? & 1 != 0,
            cap_shift: u.arbitrary()?,
            start: u.arbitrary()?,
        })
    }

    fn peer_value(u: &mut Unstructured<'_>) -> Result<PeerValue> {
        Ok(match u.arbitrary::<u8>()? % 6 {
            0 => PeerValue::Zero,
            1 => PeerValue::Raw(u.arbitrary()?),
            2 => PeerValue::SpscMsg(u.arbitrary::<u16>()?.into()),
            3 => PeerValue::SpscPad(u.arbitrary::<u16>()?.into()),
            4 => PeerValue::MpscMsg {
                len: u.arbitrary::<i16>()?.into(),
                slot: u.arbitrary()?,
                inc: u.arbitrary()?,
            },
            _ => PeerValue::MpscPad(u.arbitrary::<i16>()?.into()),
        })
    }

    fn inner(u: &mut Unstructured<'_>) -> Result<Inner> {
        Ok(match u.arbitrary::<u8>()? % 3 {
            0 => Inner::Push {
                len: u.arbitrary()?,
            },
            1 => Inner::Pop,
            _ => Inner::PopBatch {
                max: u.arbitrary()?,
            },
        })
    }

    fn list<T>(
        u: &mut Unstructured<'_>,
        f: impl Fn(&mut Unstructured<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = u.arbitrary::<u8>()? % 8;
        (0..n).map(|_| f(u)).collect()
    }

    /// Reads one operation.
    pub fn op(u: &mut Unstructured<'_>) -> Result<Op> {
        Ok(match u.arbitrary::<u8>()? % 13 {
            0 => Op::Push {
                p: u.arbitrary()?,
                len: u.arbitrary()?,
            },
            1 => Op::ReserveCommit {
                p: u.arbitrary()?,
                len: u.arbitrary()?,
                keep: u.arbitrary()?,
            },
            2 => Op::ReserveAbort {
                p: u.arbitrary()?,
                len: u.arbitrary()?,
            },
            3 => Op::Hold {
                p: u.arbitrary()?,
                len: u.arbitrary()?,
                inner: list(u, inner)?,
                commit: u.arbitrary()?,
            },
            4 => Op::Pop,
            5 => Op::PopBatch {
                max: u.arbitrary()?,
            },
            6 => Op::PopSlow,
            7 => Op::PushBatch {
                p: u.arbitrary()?,
                lens: list(u, |u| u.arbitrary())?,
            },
            8 => Op::ReattachProducer { p: u.arbitrary()? },
            9 => Op::ReattachConsumer,
            10 => Op::PeerWrite {
                word: u.arbitrary()?,
                value: peer_value(u)?,
            },
            11 => Op::SetTail(u.arbitrary()?),
            _ => Op::SetHead(u.arbitrary()?),
        })
    }

    /// A setup and operations until the input runs out (at most 256).
    pub fn program(data: &[u8]) -> Result<(Setup, Vec<Op>)> {
        let mut u = Unstructured::new(data);
        let s = setup(&mut u)?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < 256 {
            ops.push(op(&mut u)?);
        }
        Ok((s, ops))
    }

    fn put_peer_value(v: &mut Vec<u8>, p: PeerValue) {
        match p {
            PeerValue::Zero => v.push(0),
            PeerValue::Raw(x) => {
                v.push(1);
                v.extend(x.to_le_bytes());
            }
            PeerValue::SpscMsg(l) => {
                v.push(2);
                v.extend((l as u16).to_le_bytes());
            }
            PeerValue::SpscPad(l) => {
                v.push(3);
                v.extend((l as u16).to_le_bytes());
            }
            PeerValue::MpscMsg { len, slot, inc } => {
                v.push(4);
                v.extend((len as i16).to_le_bytes());
                v.push(slot);
                v.extend(inc.to_le_bytes());
            }
            PeerValue::MpscPad(l) => {
                v.push(5);
                v.extend((l as i16).to_le_bytes());
            }
        }
    }

    /// Encodes a program (the inverse of [`program`], for operations whose values
    /// fit the encoding: lists of at most 7, 16-bit peer lengths).
    pub fn encode(setup: Setup, ops: &[Op]) -> Vec<u8> {
        let mut v = vec![u8::from(setup.mpsc), setup.cap_shift];
        v.extend(setup.start.to_le_bytes());
        for op in ops {
            match op {
                Op::Push { p, len } => {
                    v.extend([0, *p]);
                    v.extend(len.to_le_bytes());
                }
                Op::ReserveCommit { p, len, keep } => {
                    v.extend([1, *p]);
                    v.extend(len.to_le_bytes());
                    v.extend(keep.to_le_bytes());
                }
                Op::ReserveAbort { p, len } => {
                    v.extend([2, *p]);
                    v.extend(len.to_le_bytes());
                }
                Op::Hold {
                    p,
                    len,
                    inner,
                    commit,
                } => {
                    v.extend([3, *p]);
                    v.extend(len.to_le_bytes());
                    v.push(inner.len() as u8);
                    for i in inner {
                        match i {
                            Inner::Push { len } => {
                                v.push(0);
                                v.extend(len.to_le_bytes());
                            }
                            Inner::Pop => v.push(1),
                            Inner::PopBatch { max } => v.extend([2, *max]),
                        }
                    }
                    v.push(u8::from(*commit));
                }
                Op::Pop => v.push(4),
                Op::PopBatch { max } => v.extend([5, *max]),
                Op::PopSlow => v.push(6),
                Op::PushBatch { p, lens } => {
                    v.extend([7, *p, lens.len() as u8]);
                    for l in lens {
                        v.extend(l.to_le_bytes());
                    }
                }
                Op::ReattachProducer { p } => v.extend([8, *p]),
                Op::ReattachConsumer => v.push(9),
                Op::PeerWrite { word, value } => {
                    v.push(10);
                    v.extend(word.to_le_bytes());
                    put_peer_value(&mut v, *value);
                }
                Op::SetTail(x) => {
                    v.push(11);
                    v.extend(x.to_le_bytes());
                }
                Op::SetHead(x) => {
                    v.push(12);
                    v.extend(x.to_le_bytes());
                }
            }
        }
        v
    }
}
