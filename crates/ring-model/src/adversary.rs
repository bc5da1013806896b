//! The adversary shim at work (catalogue HP-04, FZ-05, pitfall 11; the tests are
//! `crates/ring/tests/adversary.rs`): with
//! `--cfg shmq_adversary` every atomic read the rings make of shared memory is
//! reported to a thread-local hook (`shmq_ring::adversary`), before and after it
//! happens. Run:
//!
//! ```text
//! RUSTFLAGS="--cfg shmq_adversary" CARGO_TARGET_DIR=target/adversary \
//!     cargo test -p shmq-ring --test adversary --release
//! ```
//!
//! - **Read counts**: one `try_recv`/`try_send` of each ring, recorded word by
//!   word. On the paths that move messages every control word and every frame
//!   header is loaded at most once; the slow paths (an empty ring: liveness and
//!   reclamation) load some words again, each time validating the new value before
//!   using it. The tests pin exactly which words those are.
//! - **Flipper**: a peer that rewrites a word between two reads, exhaustively (each
//!   read of an operation, each hostile value) and at random: the consumer returns
//!   frames that agree with a header it validated, or `Corrupted`, never panics,
//!   and each call makes a bounded number of reads.
//! - **`sim`**: the deterministic simulation the `interleaved_adversary` fuzz target
//!   runs: the fuzzer's input chooses the
//!   operations and, before every read, whether and what the peer writes.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use shmq_ring::adversary::{self, Read};
use shmq_ring::frame::{
    self, MPSC_MSG, MPSC_PAD, MpscHeader, SpscFrame, decode_mpsc, decode_spsc, frame_len,
    max_payload,
};
use shmq_ring::{
    Consumer, Endpoint, Error, Geometry, Kind, Liveness, Producer, Region, WaitConfig, mpsc, spsc,
};

use crate::Ring;

/// One completed read: region offset, width, whether a read-modify-write, value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rd {
    /// Offset in the region.
    pub off: usize,
    /// 4 or 8.
    pub width: u8,
    /// Read half of a compare-and-swap, fetch-add or swap.
    pub rmw: bool,
    /// The value read.
    pub value: u64,
}

/// Runs `f` and returns the reads of `region` it made, in order.
pub fn record<R>(region: &Region, f: impl FnOnce() -> R) -> (R, Vec<Rd>) {
    record_with(region, |_| {}, f)
}

/// [`record`], with `before` called on every report (before and after each read)
/// ahead of the recording: a peer's strike.
pub fn record_with<R>(
    region: &Region,
    mut before: impl FnMut(&Read) + 'static,
    f: impl FnOnce() -> R,
) -> (R, Vec<Rd>) {
    let base = adversary::base_address(region).expect("region of at least a word");
    let len = region.len();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let r = adversary::with_hook(
        move |rd: &Read| {
            before(rd);
            if let Some(value) = rd.value
                && let Some(off) = rd.addr.checked_sub(base)
                && off < len
            {
                l.borrow_mut().push(Rd {
                    off,
                    width: rd.width,
                    rmw: rd.rmw,
                    value,
                });
            }
        },
        f,
    );
    let reads = log.borrow().clone();
    (r, reads)
}

/// Plain loads and read-modify-writes per offset.
pub fn counts(reads: &[Rd]) -> BTreeMap<usize, (u32, u32)> {
    let mut m = BTreeMap::new();
    for r in reads {
        let e = m.entry(r.off).or_insert((0, 0));
        if r.rmw {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }
    m
}

/// Names of the words of a ring region (for messages).
pub fn name(off: usize, mpsc: Option<u16>, cap: usize) -> String {
    let data = mpsc.map_or(spsc::CONTROL_LEN, mpsc::control_len);
    match off {
        0 => "tail".into(),
        128 => "head".into(),
        136 => "received".into(),
        256 => "data_seq".into(),
        260 => "consumer_waiting".into(),
        264 => "space_seq".into(),
        268 => "producers_waiting".into(),
        384 => "epoch".into(),
        392 => "consumer.state".into(),
        396 => "consumer.incarnation".into(),
        400 => "producer.state".into(),
        404 => "producer.incarnation".into(),
        o if o >= data && o < data + cap => format!("data+{}", o - data),
        o if mpsc.is_some() && o >= 512 && o < data => {
            let (s, f) = ((o - 512) / 128, (o - 512) % 128);
            match f {
                0 => format!("slot{s}.state"),
                4 => format!("slot{s}.incarnation"),
                8 => format!("slot{s}.claim"),
                _ => format!("slot{s}+{f}"),
            }
        }
        o => format!("+{o}"),
    }
}

/// Liveness the test controls: bit `s` set means producer slot `s` is dead.
#[derive(Clone, Default)]
pub struct Dead(pub Arc<AtomicU8>);

impl Liveness for Dead {
    fn is_alive(&self, e: Endpoint) -> bool {
        match e {
            Endpoint::Consumer | Endpoint::Subscriber(_) => true,
            Endpoint::Producer(s) => s >= 8 || self.0.load(Ordering::Relaxed) & (1 << s) == 0,
        }
    }
}

/// Waits that never wait (see `fuzz/src/lib.rs`): `recv_into_timeout(ZERO)` runs
/// the blocking path once, deterministically.
pub fn no_wait() -> WaitConfig {
    crate::model::cfg()
}

/// A message the consumer validated: its header's value, decoded at its offset.
fn validated(reads: &[Rd], data: usize, cap: usize, slots: Option<u16>) -> Vec<usize> {
    reads
        .iter()
        .filter(|r| !r.rmw && r.width == 8 && r.off >= data && r.off < data + cap)
        .filter_map(|r| {
            let off = r.off - data;
            match slots {
                None => match decode_spsc(r.value, off, cap) {
                    Ok(SpscFrame::Message { len }) => Some(len),
                    _ => None,
                },
                Some(n) => match decode_mpsc(r.value, off, cap, n) {
                    Ok(Some(h)) if h.kind == MPSC_MSG && h.len >= 0 => Some(h.len as usize),
                    _ => None,
                },
            }
        })
        .collect()
}

/// Checks what a receive returned against the reads it made: every message handed
/// over has the length of a header the consumer read and validated during the call
/// (for one message, the last such header; for a batch, those headers in order), so
/// no value was used that was not the one checked.
///
/// # Errors
/// A description of the disagreement.
pub fn check_delivery(
    delivered: &[usize],
    reads: &[Rd],
    data: usize,
    cap: usize,
    slots: Option<u16>,
    batch: bool,
) -> Result<(), String> {
    let max = max_payload(cap);
    if let Some(l) = delivered.iter().find(|&&l| l > max) {
        return Err(format!("delivered {l} bytes > max {max}"));
    }
    if delivered.is_empty() {
        return Ok(());
    }
    let v = validated(reads, data, cap, slots);
    let ok = if batch {
        v == delivered
    } else {
        v.last() == delivered.last()
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "delivered lengths {delivered:?}, validated headers {v:?}"
        ))
    }
}

/// Reads a single call may make: its walks are bounded by the capacity, an MPSC
/// claim by its retry limit; anything beyond is an unbounded loop.
pub fn read_bound(cap: usize) -> usize {
    4 * 4096 + 64 * (cap / 8 + 16)
}

/// Stores `value` over the 8-byte word at `off` of `region`; for a 4-byte field,
/// `value` goes into its half (`width` 4) and the other half is kept.
pub fn poke(region: &Region, off: usize, width: u8, value: u64) {
    let w = off & !7;
    let v = if width == 4 {
        let old = region.load_word(w).unwrap_or(0);
        if off % 8 == 4 {
            (old & 0xffff_ffff) | (value << 32)
        } else {
            (old & !0xffff_ffff) | (value & 0xffff_ffff)
        }
    } else {
        value
    };
    region.store_word(w, v);
}

/// Hostile values for a word at data offset `off` of an area of `cap` bytes, in
/// both rings' formats: lengths at and beyond every limit, padding that ends short
/// of or past the end, claimed and committed MPSC headers of slots 0, 1 and one
/// out of range.
pub fn hostile_values(off: usize, cap: usize) -> Vec<u64> {
    let max = max_payload(cap);
    let to_end = cap.saturating_sub(off + 8);
    let mut v = vec![
        0,
        u64::MAX,
        1,
        7,
        frame::spsc_message(0),
        frame::spsc_message(max),
        frame::spsc_message(max + 1),
        frame::spsc_message(to_end),
        frame::spsc_message(u32::MAX as usize),
        frame::spsc_padding(to_end),
        frame::spsc_padding(to_end + 8),
        frame::spsc_padding(0),
        frame::spsc_padding(cap - 8),
    ];
    for (len, kind, slot) in [
        (0, MPSC_MSG, 0),
        (max as i32, MPSC_MSG, 0),
        (max as i32 + 1, MPSC_MSG, 0),
        (-(max as i32), MPSC_MSG, 1),
        (i32::MIN, MPSC_MSG, 1),
        (to_end as i32, MPSC_MSG, 0),
        (to_end as i32, MPSC_PAD, 0),
        (to_end as i32 + 8, MPSC_PAD, 0),
        (0, MPSC_PAD, 1),
        (-8, MPSC_PAD, 0),
        (8, MPSC_MSG, 200),
    ] {
        v.push(
            MpscHeader {
                len,
                kind,
                slot,
                incarnation: 1,
            }
            .encode(),
        );
    }
    v
}

/// Values for a control word currently holding `now` (positions, states).
pub fn control_values(now: u64, cap: usize) -> Vec<u64> {
    let cap = cap as u64;
    vec![
        0,
        u64::MAX,
        u64::MAX - 7,
        now ^ 1,
        now.wrapping_add(8),
        now.wrapping_sub(8),
        now.wrapping_add(cap),
        now.wrapping_add(cap + 8),
        now.wrapping_sub(cap + 8),
        1 << 40,
        2,
        3,
    ]
}

pub mod sim {
    //! The FZ-05 simulation: see [`fuzz_one`].
    use super::*;

    /// What the peer does before one read, decoded from the adversary stream.
    #[derive(Clone, Copy, Debug)]
    enum Target {
        /// The word about to be read.
        Loaded,
        /// The word after it.
        Next,
        /// `tail`.
        Tail,
        /// `head`.
        Head,
        /// A word of the endpoints' line.
        Ends(u8),
        /// A producer slot's intent (MPSC).
        Claim(u8),
        /// A data word.
        Data(u8),
    }

    /// A byte stream the peer's choices come from.
    struct Stream {
        data: Vec<u8>,
        pos: usize,
    }

    impl Stream {
        fn byte(&mut self) -> Option<u8> {
            let b = *self.data.get(self.pos)?;
            self.pos += 1;
            Some(b)
        }
        fn u64(&mut self) -> Option<u64> {
            let mut w = [0u8; 8];
            for b in &mut w {
                *b = self.byte()?;
            }
            Some(u64::from_le_bytes(w))
        }
    }

    /// The ring under attack.
    struct World {
        region: Region,
        mpsc: bool,
        cap: usize,
        data: usize,
        base: usize,
        dead: Dead,
    }

    impl World {
        /// Attaches a producer in `slot` (no waiting, liveness from `dead`).
        fn producer<K: Ring>(&self, g: Geometry<K>, slot: u16) -> Result<Producer<K>, String> {
            K::producer(
                &self.region,
                g,
                slot,
                no_wait(),
                Arc::new(self.dead.clone()),
            )
            .map_err(|e| e.to_string())
        }

        /// Attaches the consumer (no waiting, liveness from `dead`).
        fn consumer<K: Ring>(&self, g: Geometry<K>) -> Result<Consumer<K>, String> {
            K::consumer(&self.region, g, no_wait(), Arc::new(self.dead.clone()))
                .map_err(|e| e.to_string())
        }

        /// The peer's write before a read at region offset `at` (width `width`),
        /// as the stream says; returns whether it wrote.
        fn strike(&self, s: &mut Stream, at: usize, width: u8) -> bool {
            let Some(a) = s.byte() else { return false };
            if a & 0x80 == 0 {
                return false;
            }
            let words = self.region.len() / 8;
            let target = match a & 7 {
                0 => Target::Loaded,
                1 => Target::Next,
                2 => Target::Tail,
                3 => Target::Head,
                4 => Target::Ends(s.byte().unwrap_or(0)),
                5 => Target::Claim(s.byte().unwrap_or(0)),
                _ => Target::Data(s.byte().unwrap_or(0)),
            };
            let (off, w) = match target {
                Target::Loaded => (at, width),
                Target::Next => ((at & !7) + 8, 8),
                Target::Tail => (0, 8),
                Target::Head => (128, 8),
                Target::Ends(b) => (384 + 4 * usize::from(b % 6), 4),
                Target::Claim(b) => (512 + 128 * usize::from(b % 2) + 8, 8),
                Target::Data(b) => (self.data + (usize::from(b) * 8) % self.cap, 8),
            };
            if off / 8 >= words {
                return false;
            }
            let now = self.region.load_word(off & !7).unwrap_or(0);
            let now = if w == 4 && off % 8 == 4 {
                now >> 32
            } else {
                now
            };
            let in_data = off >= self.data && off < self.data + self.cap;
            let doff = off.wrapping_sub(self.data);
            let value = match (a >> 3) & 0xf {
                0 => 0,
                1 => s.u64().unwrap_or(u64::MAX),
                2 | 3 if in_data => {
                    let vals = hostile_values(doff, self.cap);
                    vals[usize::from(s.byte().unwrap_or(0)) % vals.len()]
                }
                4 => {
                    let vals = control_values(now, self.cap);
                    vals[usize::from(s.byte().unwrap_or(0)) % vals.len()]
                }
                5 => now ^ (1 << (s.byte().unwrap_or(0) % 64)),
                6 => now.wrapping_add((i64::from(s.byte().unwrap_or(0) as i8) * 8) as u64),
                7 if in_data => {
                    // A well-formed header of another length, same kind.
                    let len = usize::from(s.byte().unwrap_or(0)) * 4;
                    if self.mpsc {
                        let h = MpscHeader::from_raw(now);
                        MpscHeader {
                            len: len as i32 * if h.len < 0 { -1 } else { 1 },
                            ..h
                        }
                        .encode()
                    } else if now >> 32 == u64::from(frame::SPSC_PAD) {
                        frame::spsc_padding(len)
                    } else {
                        frame::spsc_message(len)
                    }
                }
                8 => u64::MAX,
                9 => {
                    // Kill a producer slot (its liveness marker is released).
                    let b = s.byte().unwrap_or(0) % 2;
                    self.dead.0.fetch_or(1 << b, Ordering::Relaxed);
                    return true;
                }
                _ => s.u64().unwrap_or(0) & 0xffff_ffff,
            };
            poke(&self.region, off, w, value);
            true
        }
    }

    /// Shared state of one run: the stream, and the reads of the current call.
    struct Run {
        stream: Stream,
        reads: Vec<Rd>,
        wrote: bool,
    }

    /// One operation of the program.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Push(usize),
        Pop,
        PopGuard,
        PopBatch(usize),
        PopSlow,
        /// MPSC: slot 1 claims `len` bytes and dies before committing.
        ClaimAndDie(usize),
        /// MPSC: slot 1 claims and dies before writing any header.
        ZeroClaimAndDie(usize),
    }

    /// A parsed fuzz input.
    struct Program<'a> {
        mpsc: bool,
        cap: usize,
        start: u64,
        steps: Vec<Step>,
        stream: &'a [u8],
    }

    /// Program head: `[flags, start, n, n op bytes]`, then the adversary stream.
    ///
    /// ```text
    /// flags  bit 0 MPSC; bits 1-2 capacity 64 << x
    /// start  position selector: 0 → 0, odd → u64::MAX + 1 - 8·(b+1), even → 8·b
    /// n      operations: 1 + n % 24
    /// op     low 3 bits: 0,1 push, 2 pop, 3 pop (guard), 4 batch, 5 pop slow
    ///        (recv_into_timeout(0)), 6 claim and die, 7 zero claim and die;
    ///        high 5 bits: length (or batch size) selector
    /// ```
    /// Then, before every read a call makes, one stream byte: below 0x80 the peer
    /// does nothing; otherwise bits 0-2 pick the word (the one being read, the
    /// next, tail, head, an endpoint word, a slot's intent, a data word) and bits
    /// 3-6 the value (zero, any, hostile header, position lie, bit flip, nudge,
    /// header with another length, all ones, a kill, ...), with operand bytes
    /// after. When the stream runs out the peer stops.
    fn parse(data: &[u8]) -> Option<Program<'_>> {
        let (&flags, rest) = data.split_first()?;
        let (&start, rest) = rest.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let n = 1 + usize::from(n) % 24;
        let ops = rest.get(..n)?;
        let mpsc = flags & 1 != 0;
        let cap = 64usize << ((flags >> 1) & 3);
        let start = if start % 2 == 1 {
            0u64.wrapping_sub(8 * (u64::from(start) + 1))
        } else {
            8 * u64::from(start)
        };
        let max = max_payload(cap);
        let steps = ops
            .iter()
            .map(|&b| {
                let sel = usize::from(b >> 3);
                let len = (sel * 7) % (max + 1);
                match b & 7 {
                    0 | 1 => Step::Push(len),
                    2 => Step::Pop,
                    3 => Step::PopGuard,
                    4 => Step::PopBatch(sel % 6),
                    5 => Step::PopSlow,
                    6 => Step::ClaimAndDie(len.max(1)),
                    _ => Step::ZeroClaimAndDie(frame_len(len)),
                }
            })
            .collect();
        Some(Program {
            mpsc,
            cap,
            start,
            steps,
            stream: &data[3 + n..],
        })
    }

    /// Runs one fuzz input: the program's operations against a ring, with the
    /// peer's writes between reads.
    ///
    /// # Panics
    /// When an invariant of HP-04 fails: a frame that disagrees with the header the
    /// consumer validated or is over the maximum, an error a call may not return,
    /// a call that makes more reads than any bounded walk could, or a panic inside
    /// the ring.
    pub fn fuzz_one(data: &[u8]) {
        if let Err(e) = run(data) {
            panic!("{e}");
        }
    }

    /// As [`fuzz_one`], returning the failure.
    ///
    /// # Errors
    /// The invariant that failed.
    pub fn run(data: &[u8]) -> Result<(), String> {
        let Some(Program {
            mpsc: is_mpsc,
            cap,
            start,
            steps,
            stream,
        }) = parse(data)
        else {
            return Ok(());
        };
        let slots = 2u16;
        let region = Region::heap(if is_mpsc {
            mpsc::region_len(cap, slots)
        } else {
            spsc::region_len(cap)
        });
        let dead = Dead::default();
        let world = Rc::new(World {
            mpsc: is_mpsc,
            cap,
            data: if is_mpsc {
                mpsc::control_len(slots)
            } else {
                spsc::CONTROL_LEN
            },
            base: adversary::base_address(&region).unwrap(),
            region: region.clone(),
            dead: dead.clone(),
        });
        let sim = Sim {
            world,
            run: Rc::new(RefCell::new(Run {
                stream: Stream {
                    data: stream.to_vec(),
                    pos: 0,
                },
                reads: Vec::new(),
                wrote: false,
            })),
        };
        if is_mpsc {
            mpsc::init(
                &region,
                shmq_ring::Geometry::mpsc(cap as u64, slots).unwrap(),
                start,
            )
            .unwrap();
            sim.run_mpsc(&steps)
        } else {
            spsc::init(
                &region,
                shmq_ring::Geometry::spsc(cap as u64).unwrap(),
                start,
            )
            .unwrap();
            sim.run_spsc(&steps)
        }
    }

    fn check_bound(reads: &[Rd], cap: usize, what: &str) -> Result<(), String> {
        if reads.len() > read_bound(cap) {
            return Err(format!("{what}: {} reads in one call", reads.len()));
        }
        Ok(())
    }

    fn recv_allowed(e: &Error) -> bool {
        matches!(
            e,
            Error::Empty | Error::Timeout | Error::Corrupted(_) | Error::Disconnected(_)
        )
    }

    fn send_allowed(e: &Error, len: usize, max: usize) -> bool {
        match e {
            Error::Full | Error::Corrupted(_) | Error::Disconnected(_) => true,
            Error::MessageTooLarge { .. } => len > max,
            _ => false,
        }
    }

    fn payload(seq: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (seq as usize * 13 + i) as u8).collect()
    }

    /// One program's run: the ring under attack and the run's shared state, which
    /// the read hook works on.
    struct Sim {
        world: Rc<World>,
        run: Rc<RefCell<Run>>,
    }

    impl Sim {
        /// The read hook: before a read of the region, the peer's write (if the
        /// stream says so); after it, the read recorded.
        fn hook(&self) -> impl FnMut(&Read) + 'static {
            let (w, r) = (self.world.clone(), self.run.clone());
            move |rd: &Read| {
                let Some(off) = rd.addr.checked_sub(w.base) else {
                    return;
                };
                if off >= w.region.len() {
                    return;
                }
                let mut r = r.borrow_mut();
                match rd.value {
                    None => {
                        let Run { stream, wrote, .. } = &mut *r;
                        if w.strike(stream, off, rd.width) {
                            *wrote = true;
                        }
                    }
                    Some(value) => r.reads.push(Rd {
                        off,
                        width: rd.width,
                        rmw: rd.rmw,
                        value,
                    }),
                }
            }
        }

        /// The reads of the current call (taken: the next call starts afresh).
        fn reads(&self) -> Vec<Rd> {
            std::mem::take(&mut self.run.borrow_mut().reads)
        }

        /// The checks after step `seq`, a call `what` that delivered messages of
        /// `delivered` bytes: its reads are bounded and agree with what it delivered.
        fn check_step(
            &self,
            slots: Option<u16>,
            seq: usize,
            what: &str,
            delivered: &[usize],
            batch: bool,
        ) -> Result<(), String> {
            let w = &self.world;
            let reads = self.reads();
            check_bound(&reads, w.cap, what)?;
            check_delivery(delivered, &reads, w.data, w.cap, slots, batch)
                .map_err(|e| format!("{what} (step {seq}): {e}"))
        }

        /// `try_send(m)` under the hook, checked: its reads are bounded and its
        /// result allowed. Whether it sent.
        fn send<K: Kind>(&self, tx: &mut Producer<K>, m: &[u8]) -> Result<bool, String> {
            let cap = self.world.cap;
            let r = adversary::with_hook(self.hook(), || tx.try_send(m));
            check_bound(&self.reads(), cap, "try_send")?;
            match r {
                Ok(()) => Ok(true),
                Err(e) if send_allowed(&e, m.len(), max_payload(cap)) => Ok(false),
                Err(e) => Err(format!("try_send: {e:?}")),
            }
        }

        /// `try_recv_batch(n)` under the hook, its result checked. The lengths it
        /// handed over.
        fn batch<K: Kind>(&self, rx: &mut Consumer<K>, n: usize) -> Result<Vec<usize>, String> {
            let mut lens = Vec::new();
            let r =
                adversary::with_hook(self.hook(), || rx.try_recv_batch(n, |m| lens.push(m.len())));
            match r {
                Ok(k) if k == lens.len() && k <= n => {}
                // Good frames handed over before a bad header is met.
                Err(Error::Corrupted(_)) if lens.len() <= n => {}
                Err(e) if recv_allowed(&e) && lens.is_empty() => {}
                r => return Err(format!("try_recv_batch({n}): {r:?} with {lens:?}")),
            }
            Ok(lens)
        }

        fn run_spsc(&self, steps: &[Step]) -> Result<(), String> {
            let w = &self.world;
            let g = Geometry::spsc(w.cap as u64).unwrap();
            let mut tx = w.producer(g, 0)?;
            let mut rx = w.consumer(g)?;
            let mut sent: VecDeque<Vec<u8>> = VecDeque::new();
            let mut buf = Vec::new();
            for (seq, &step) in steps.iter().enumerate() {
                // "Clean": the peer has written nothing so far, this call included.
                let clean = || !self.run.borrow().wrote;
                let (delivered, batch, what): (Vec<usize>, bool, &str) = match step {
                    Step::Push(len) | Step::ClaimAndDie(len) | Step::ZeroClaimAndDie(len) => {
                        let m = payload(seq as u64, len.min(max_payload(w.cap)));
                        if self.send(&mut tx, &m)? {
                            sent.push_back(m);
                        }
                        continue;
                    }
                    Step::Pop | Step::PopSlow => {
                        let r = adversary::with_hook(self.hook(), || {
                            if step_is_slow(step) {
                                rx.recv_into_timeout(&mut buf, Duration::ZERO)
                            } else {
                                rx.try_recv_into(&mut buf)
                            }
                        });
                        let d = receive_result(r, &buf, &mut sent, clean())?;
                        (d, false, "recv")
                    }
                    Step::PopGuard => {
                        let r =
                            adversary::with_hook(self.hook(), || rx.try_recv().map(|g| g.to_vec()));
                        let got = r.clone().unwrap_or_default();
                        let d = receive_result(r.map(|_| ()), &got, &mut sent, clean())?;
                        (d, false, "try_recv")
                    }
                    Step::PopBatch(n) => {
                        let lens = self.batch(&mut rx, n)?;
                        if clean() {
                            for _ in &lens {
                                sent.pop_front();
                            }
                        }
                        (lens, true, "try_recv_batch")
                    }
                };
                self.check_step(None, seq, what, &delivered, batch)?;
            }
            tx.detach();
            rx.detach();
            Ok(())
        }

        fn run_mpsc(&self, steps: &[Step]) -> Result<(), String> {
            let w = &self.world;
            let (cap, slots) = (w.cap, 2u16);
            let g = Geometry::mpsc(cap as u64, slots).unwrap();
            let mut tx = w.producer(g, 0)?;
            let mut other = Some(w.producer(g, 1)?);
            let mut rx = w.consumer(g)?;
            let mut buf = Vec::new();
            // With no peer write, what the consumer receives is checked only for size
            // and agreement with its reads here: the exact order is the model's job
            // (tests/model.rs), and dead claims and full rings hit known bugs there.
            let mut sent = VecDeque::new();
            for (seq, &step) in steps.iter().enumerate() {
                let (delivered, batch, what): (Vec<usize>, bool, &str) = match step {
                    Step::Push(len) => {
                        self.send(&mut tx, &payload(seq as u64, len))?;
                        continue;
                    }
                    Step::ClaimAndDie(len) => {
                        if let Some(mut p) = other.take() {
                            // The guard is forgotten (it owns nothing), so the claim stays
                            // uncommitted; the producer is detached, not closed: it "died".
                            let r = adversary::with_hook(self.hook(), || {
                                p.try_reserve(len).map(std::mem::forget)
                            });
                            check_bound(&self.reads(), cap, "try_reserve")?;
                            if let Err(e) = r
                                && !send_allowed(&e, len, max_payload(cap))
                            {
                                return Err(format!("try_reserve: {e:?}"));
                            }
                            p.detach();
                            w.dead.0.fetch_or(0b10, Ordering::Relaxed);
                        }
                        continue;
                    }
                    Step::ZeroClaimAndDie(need) => {
                        if let Some(p) = other.take() {
                            // Intent recorded, tail moved, no header: as a producer killed
                            // between its compare-and-swap and its header store.
                            let tail = w.region.load_word(0).unwrap();
                            let head = w.region.load_word(128).unwrap();
                            // (The peer may have made the positions anything.)
                            let used = tail.wrapping_sub(head).checked_add(need as u64);
                            if used.is_some_and(|u| u <= cap as u64) {
                                w.region.store_word(512 + 128 + 8, tail | 1);
                                w.region.store_word(0, tail.wrapping_add(need as u64));
                            }
                            p.detach();
                            w.dead.0.fetch_or(0b10, Ordering::Relaxed);
                        }
                        continue;
                    }
                    Step::Pop | Step::PopSlow | Step::PopGuard => {
                        let r = adversary::with_hook(self.hook(), || match step {
                            Step::PopSlow => rx
                                .recv_into_timeout(&mut buf, Duration::ZERO)
                                .map(|()| buf.clone()),
                            Step::PopGuard => rx.try_recv().map(|g| g.to_vec()),
                            _ => rx.try_recv_into(&mut buf).map(|()| buf.clone()),
                        });
                        let d = match r {
                            Ok(m) => vec![m.len()],
                            Err(e) if recv_allowed(&e) => Vec::new(),
                            Err(e) => return Err(format!("receive: {e:?}")),
                        };
                        (d, false, "recv")
                    }
                    Step::PopBatch(n) => {
                        let lens = self.batch(&mut rx, n)?;
                        (lens, true, "try_recv_batch")
                    }
                };
                self.check_step(Some(slots), seq, what, &delivered, batch)?;
                sent.extend(delivered);
            }
            tx.detach();
            rx.detach();
            Ok(())
        }
    }

    fn step_is_slow(s: Step) -> bool {
        matches!(s, Step::PopSlow)
    }

    /// Checks one receive's result; with no peer write so far, against what was
    /// sent. Returns the delivered lengths.
    fn receive_result(
        r: Result<(), Error>,
        got: &[u8],
        sent: &mut VecDeque<Vec<u8>>,
        clean: bool,
    ) -> Result<Vec<usize>, String> {
        match r {
            Ok(()) => {
                if clean {
                    let want = sent.pop_front();
                    if want.as_deref() != Some(got) {
                        return Err(format!(
                            "with no peer write: received {} bytes, sent {:?}",
                            got.len(),
                            want.map(|w| w.len())
                        ));
                    }
                }
                Ok(vec![got.len()])
            }
            Err(e) if recv_allowed(&e) => {
                if clean && matches!(e, Error::Empty | Error::Timeout) && !sent.is_empty() {
                    return Err(format!(
                        "with no peer write: {e:?} with {} sent",
                        sent.len()
                    ));
                }
                Ok(Vec::new())
            }
            Err(e) => Err(format!("receive: {e:?}")),
        }
    }
    /// Seed inputs for the fuzz target: unit-test-like programs with a quiet peer,
    /// and a few with a peer that strikes at every read.
    pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let op = |code: u8, sel: u8| code | (sel << 3);
        let spsc_ops = [
            op(0, 3),
            op(0, 20),
            op(2, 0),
            op(3, 0),
            op(0, 31),
            op(4, 5),
            op(5, 0),
        ];
        let mpsc_ops = [
            op(0, 3),
            op(6, 4),
            op(0, 9),
            op(2, 0),
            op(5, 0),
            op(7, 2),
            op(4, 3),
            op(5, 0),
        ];
        let program = |flags: u8, start: u8, ops: &[u8], stream: &[u8]| {
            let mut v = vec![flags, start, (ops.len() - 1) as u8];
            v.extend(ops);
            v.extend(stream);
            v
        };
        let quiet = vec![0u8; 64];
        // Before every read: rewrite the word being read with a hostile header.
        let header_flips: Vec<u8> = (0..128u8).flat_map(|i| [0x80 | (2 << 3), i]).collect();
        // Lie about positions now and then.
        let position_lies: Vec<u8> = (0..64u8)
            .flat_map(|i| [0, 0x80 | (4 << 3) | (2 + (i & 1)), i])
            .collect();
        vec![
            ("spsc-quiet", program(0b010, 0, &spsc_ops, &quiet)),
            ("spsc-near-wrap", program(0b000, 7, &spsc_ops, &quiet)),
            (
                "spsc-header-flips",
                program(0b010, 0, &spsc_ops, &header_flips),
            ),
            ("mpsc-quiet", program(0b011, 0, &mpsc_ops, &quiet)),
            (
                "mpsc-header-flips",
                program(0b011, 4, &mpsc_ops, &header_flips),
            ),
            (
                "mpsc-position-lies",
                program(0b101, 0, &mpsc_ops, &position_lies),
            ),
        ]
    }
}
