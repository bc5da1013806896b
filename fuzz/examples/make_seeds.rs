//! Writes the committed seed corpora, `fuzz/corpus/<target>/seed-*`, from rings
//! built with the real API (the same situations the unit tests set up: messages,
//! a wrap with its padding, an MPSC claim still held, a dead producer's claim with
//! and without a header, positions near the 64-bit wrap).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`
//! (`--cfg shmq_adversary` in RUSTFLAGS also writes `interleaved_adversary` seeds).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shmq_fuzz::model::{Op, PeerValue, Setup};
use shmq_fuzz::{DrainInput, FrameInput, Mask, no_wait, ops};
use shmq_ring::frame::{self, MPSC_MSG, MPSC_PAD, MpscHeader};
use shmq_ring::{Geometry, Mpsc, Region};
use shmq_ring_model::{Ring, sent};
use shmq_segment::{Layout, MAGIC, STATE_READY, VERSION};

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(dir(target).join(format!("seed-{name}")), bytes).unwrap();
}

fn image(region: &Region) -> Vec<u8> {
    (0..region.len() / 8)
        .flat_map(|i| region.load_word(i * 8).unwrap().to_le_bytes())
        .collect()
}

/// The bytes of message `i` in the seeds' rings.
fn fill(i: usize) -> u8 {
    i as u8 + 1
}

/// An SPSC ring of `cap` bytes starting at `start`: `n` messages sent, `read` of
/// them received.
fn spsc_ring(cap: usize, start: u64, sizes: &[usize], read: usize) -> Region {
    let g = Geometry::spsc(cap as u64).unwrap();
    let (r, tx, rx) = sent(g, start, no_wait(), Arc::new(Mask(0)), sizes, read, fill);
    tx.detach();
    rx.detach();
    r
}

/// An MPSC ring with `producers` slots: slot 0 sends `sizes`, the consumer reads
/// `read`; then slot 1 (if any) holds a claim of 20 bytes (negative header), and
/// `zero_claim` more bytes are claimed without a header (a producer that died
/// between its compare-and-swap and its header store).
fn mpsc_ring(cap: usize, producers: u16, sizes: &[usize], read: usize, zero_claim: u64) -> Region {
    let g = Geometry::mpsc(cap as u64, producers).unwrap();
    let (r, mut a, rx) = sent(g, 0, no_wait(), Arc::new(Mask(0)), sizes, read, fill);
    drop(a.try_reserve(3).unwrap()); // aborted: padding
    if producers > 1 {
        let mut b = Mpsc::producer(&r, g, 1, no_wait(), Arc::new(Mask(0))).unwrap();
        let mut g = b.try_reserve(20).unwrap();
        g.copy_from_slice(&[0xbb; 20]);
        std::mem::forget(g);
        std::mem::forget(b);
    }
    if zero_claim > 0 {
        let tail = r.load_word(0).unwrap();
        r.store_word(512 + 8, tail | 1); // slot 0's intent
        r.store_word(0, tail + zero_claim);
    }
    a.detach();
    rx.detach();
    r
}

/// A segment image: header, endpoint table, ring region.
fn segment(kind: u16, endpoints: u16, capacity: u64, ring: &Region) -> Vec<u8> {
    let data_offset = Layout::data_offset_for(endpoints);
    let total = data_offset + ring.len() as u64;
    let mut v = vec![0u8; data_offset as usize];
    v[0..8].copy_from_slice(&MAGIC.to_le_bytes());
    v[8..12].copy_from_slice(&VERSION.to_le_bytes());
    v[12..16].copy_from_slice(&STATE_READY.to_le_bytes());
    v[16..18].copy_from_slice(&kind.to_le_bytes());
    v[18..20].copy_from_slice(&endpoints.to_le_bytes());
    v[20..24].copy_from_slice(&4242u32.to_le_bytes());
    v[24..32].copy_from_slice(&total.to_le_bytes());
    v[32..40].copy_from_slice(&data_offset.to_le_bytes());
    v[40..48].copy_from_slice(&capacity.to_le_bytes());
    v.extend(image(ring));
    assert_eq!(v.len() as u64, total);
    v
}

fn attach_header() {
    let t = "attach_header";
    let r = spsc_ring(256, 0, &[5, 40, 100, 3], 1);
    write(t, "spsc", &segment(shmq::KIND_SPSC, 2, 256, &r));
    let r = spsc_ring(256, u64::MAX - 63, &[100, 100, 30], 1);
    write(
        t,
        "spsc-wrapped",
        &segment(shmq::KIND_SPSC_TYPED, 2, 256, &r),
    );
    let r = mpsc_ring(256, 2, &[9, 33, 12], 1, 0);
    write(t, "mpsc-claim", &segment(shmq::KIND_MPSC, 3, 256, &r));
    let r = mpsc_ring(512, 4, &[60, 60, 60], 0, 40);
    write(
        t,
        "mpsc-zero-claim",
        &segment(shmq::KIND_MPSC_TYPED, 5, 512, &r),
    );
    let mut bad = segment(shmq::KIND_SPSC, 2, 256, &spsc_ring(256, 0, &[1], 0));
    bad[12] = 0; // not ready
    write(t, "not-ready", &bad);
}

fn consumer_drain() {
    let t = "consumer_drain";
    let cases: Vec<(&str, bool, u16, u8, Region, u64)> = vec![
        (
            "spsc",
            false,
            1,
            0,
            spsc_ring(256, 0, &[5, 40, 100, 3], 1),
            256,
        ),
        (
            "spsc-wrap",
            false,
            1,
            0,
            spsc_ring(256, u64::MAX - 63, &[100, 100, 30], 1),
            256,
        ),
        (
            "mpsc-claims",
            true,
            2,
            0,
            mpsc_ring(256, 2, &[9, 33, 12], 1, 0),
            256,
        ),
        (
            "mpsc-dead-header",
            true,
            2,
            0b10,
            mpsc_ring(256, 2, &[9], 1, 0),
            256,
        ),
        (
            "mpsc-dead-zero-claim",
            true,
            4,
            0b1,
            mpsc_ring(512, 4, &[60, 60], 0, 40),
            512,
        ),
    ];
    for (name, mpsc, producers, dead, region, capacity) in cases {
        let img = image(&region);
        let input = DrainInput {
            mpsc,
            relative_tail: false,
            producers,
            dead,
            capacity,
            head: region.load_word(128).unwrap(),
            tail: region.load_word(0).unwrap(),
            batch: 3,
            image: img,
        };
        let bytes = input.to_bytes();
        assert_eq!(DrainInput::parse(&bytes).as_ref(), Some(&input));
        write(t, name, &bytes);
    }
}

fn frame_decoder() {
    let t = "frame_decoder";
    let cap = 4096;
    let m = |len, kind, slot| {
        MpscHeader {
            len,
            kind,
            slot,
            incarnation: 3,
        }
        .encode()
    };
    let cases = [
        ("zero", 0, 0),
        ("spsc-msg", frame::spsc_message(100), 64),
        (
            "spsc-msg-max",
            frame::spsc_message(frame::max_payload(cap)),
            0,
        ),
        ("spsc-pad", frame::spsc_padding(cap - 8 - 4000), 4000),
        ("mpsc-msg", m(77, MPSC_MSG, 1), 128),
        ("mpsc-claimed", m(-77, MPSC_MSG, 1), 128),
        ("mpsc-pad", m(16, MPSC_PAD, 0), 256),
        ("garbage", 0xdead_beef_f00d_cafe, 8),
    ];
    for (name, raw, off) in cases {
        let input = FrameInput {
            raw,
            off,
            cap,
            slots: 4,
        };
        assert_eq!(FrameInput::parse(&input.to_bytes()), Some(input));
        write(t, name, &input.to_bytes());
    }
}

fn ops_vs_model() {
    let t = "ops_vs_model";
    let push = |p, len| Op::Push { p, len };
    let programs: Vec<(&str, Setup, Vec<Op>)> = vec![
        (
            "spsc-full-exact",
            Setup {
                mpsc: false,
                cap_shift: 0,
                start: 0,
            },
            vec![
                push(0, 8),
                push(0, 8),
                push(0, 8),
                push(0, 8),
                Op::Pop,
                push(0, 8),
                Op::PopBatch { max: 5 },
            ],
        ),
        (
            "spsc-wrap-near-u64-max",
            Setup {
                mpsc: false,
                cap_shift: 2,
                start: 2 | (7 << 2),
            },
            vec![
                push(0, 100),
                Op::ReserveCommit {
                    p: 0,
                    len: 90,
                    keep: 50,
                },
                Op::Pop,
                Op::PushBatch {
                    p: 0,
                    lens: vec![10, 20, 30],
                },
                Op::PopSlow,
                Op::ReattachProducer { p: 0 },
                Op::ReattachConsumer,
                Op::PopBatch { max: 3 },
            ],
        ),
        {
            let (setup, mut prog) = shmq_fuzz::model::held_claims(40);
            prog.extend([Op::Pop, Op::ReserveAbort { p: 0, len: 7 }, Op::PopSlow]);
            ("mpsc-held-claims", setup, prog)
        },
        (
            "hostile",
            Setup {
                mpsc: true,
                cap_shift: 1,
                start: 1 | (3 << 2),
            },
            vec![
                push(0, 20),
                Op::PeerWrite {
                    word: 68,
                    value: PeerValue::MpscMsg {
                        len: -20,
                        slot: 1,
                        inc: 1,
                    },
                },
                Op::SetTail(1 << 40),
                Op::Pop,
                Op::PeerWrite {
                    word: 2,
                    value: PeerValue::Raw(u64::MAX),
                },
                Op::SetHead(8),
                push(1, 5),
                Op::PopSlow,
            ],
        ),
    ];
    for (name, setup, prog) in programs {
        let bytes = ops::encode(setup, &prog);
        let (s, p) = ops::program(&bytes).unwrap();
        assert_eq!(
            (s, &p),
            (setup, &prog),
            "{name}: encoding does not round-trip"
        );
        shmq_fuzz::model::run(setup, &prog).unwrap_or_else(|e| panic!("{name}: {e}"));
        write(t, name, &bytes);
    }
}

fn main() {
    attach_header();
    consumer_drain();
    frame_decoder();
    ops_vs_model();
    #[cfg(shmq_adversary)]
    for (name, bytes) in shmq_fuzz::adversary::sim::seeds() {
        write("interleaved_adversary", name, &bytes);
    }
    println!("seeds written under {}", dir("").display());
}
