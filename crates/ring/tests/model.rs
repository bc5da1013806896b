//! Model-based test of both rings (catalogue FZ-04, as a property test that
//! always runs): a list of operations runs against a ring on a heap region and
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
//! The harness (`shmq_ring_model::model`) is also the body of the `ops_vs_model`
//! fuzz target, so a fuzz crash replays here as a list of operations.
#![cfg(not(loom))]

// The tests keep their `tests::` paths (scripts/sanitizers.sh runs two by name).
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use shmq_ring::frame::{MPSC_MSG, MpscHeader, max_payload};
    use shmq_ring::{Consumer, Error, Geometry, InProcess, Mpsc, Region, Spsc, mpsc, spsc};
    use shmq_ring_model::model::*;
    use shmq_ring_model::{Ring, fresh, pair_with};

    fn len_sel() -> impl Strategy<Value = u16> {
        prop_oneof![8 => 0u16..64, 2 => any::<u16>()]
    }

    fn inner() -> impl Strategy<Value = Inner> {
        prop_oneof![
            len_sel().prop_map(|len| Inner::Push { len }),
            Just(Inner::Pop),
            (0u8..5).prop_map(|max| Inner::PopBatch { max }),
        ]
    }

    fn peer_value() -> impl Strategy<Value = PeerValue> {
        prop_oneof![
            Just(PeerValue::Zero),
            any::<u64>().prop_map(PeerValue::Raw),
            (0u32..2048).prop_map(PeerValue::SpscMsg),
            (0u32..2048).prop_map(PeerValue::SpscPad),
            (-600i32..600, 0u8..3, 0u16..3).prop_map(|(len, slot, inc)| PeerValue::MpscMsg {
                len,
                slot,
                inc
            }),
            (-8i32..1100).prop_map(PeerValue::MpscPad),
        ]
    }

    /// Operations; peer operations only when `hostile`.
    fn ops(hostile: bool) -> impl Strategy<Value = Vec<Op>> {
        let honest = prop_oneof![
            6 => (any::<u8>(), len_sel()).prop_map(|(p, len)| Op::Push { p, len }),
            2 => (any::<u8>(), len_sel(), any::<u16>())
                .prop_map(|(p, len, keep)| Op::ReserveCommit { p, len, keep }),
            1 => (any::<u8>(), len_sel()).prop_map(|(p, len)| Op::ReserveAbort { p, len }),
            2 => (any::<u8>(), len_sel(), proptest::collection::vec(inner(), 0..4), any::<bool>())
                .prop_map(|(p, len, inner, commit)| Op::Hold { p, len, inner, commit }),
            5 => Just(Op::Pop),
            1 => Just(Op::PopSlow),
            2 => (0u8..6).prop_map(|max| Op::PopBatch { max }),
            1 => (any::<u8>(), proptest::collection::vec(len_sel(), 0..6))
                .prop_map(|(p, lens)| Op::PushBatch { p, lens }),
            1 => any::<u8>().prop_map(|p| Op::ReattachProducer { p }),
            1 => Just(Op::ReattachConsumer),
        ];
        if !hostile {
            return proptest::collection::vec(honest, 1..80).boxed();
        }
        let special = prop_oneof![
            any::<u64>(),
            (0u64..4096),
            Just(u64::MAX),
            Just(u64::MAX - 7),
            Just(1u64 << 40)
        ];
        let peer = prop_oneof![
            3 => (any::<u16>(), peer_value()).prop_map(|(word, value)| Op::PeerWrite { word, value }),
            1 => special.clone().prop_map(Op::SetTail),
            1 => special.prop_map(Op::SetHead),
        ];
        proptest::collection::vec(prop_oneof![8 => honest, 1 => peer], 1..80).boxed()
    }

    fn setup() -> impl Strategy<Value = Setup> {
        (any::<bool>(), 0u8..5, any::<u16>()).prop_map(|(mpsc, cap_shift, start)| Setup {
            mpsc,
            cap_shift,
            start,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// With a well-behaved peer the rings behave exactly as the model.
        #[test]
        fn rings_match_the_model(setup in setup(), ops in ops(false)) {
            let r = run(setup, &ops);
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }

        /// With a hostile peer: valid frames or typed errors, never a panic.
        #[test]
        fn hostile_peers_give_valid_frames_or_errors(setup in setup(), ops in ops(true)) {
            let r = run(setup, &ops);
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }

    /// A fresh ring at 0 with only its consumer attached.
    fn consumer_only<K: Ring>(g: Geometry<K>) -> (Region, Consumer<K>) {
        let region = fresh(g, 0);
        let rx = K::consumer(&region, g, cfg(), Arc::new(InProcess)).unwrap();
        (region, rx)
    }

    /// Full and Empty at the exact byte: SPSC needs the end-marker slot free.
    #[test]
    fn spsc_full_at_the_exact_byte() {
        let setup = Setup {
            mpsc: false,
            cap_shift: 0, // 64 bytes: max payload 16
            start: 0,
        };
        // 16-byte frames (payload 8): 3 fit in 64 bytes with the end marker (48 + 8).
        let mut ops = vec![Op::Push { p: 0, len: 8 }; 4];
        ops.extend([
            Op::Pop,
            Op::Push { p: 0, len: 8 },
            Op::Pop,
            Op::Pop,
            Op::Pop,
            Op::Pop,
        ]);
        let stats = run(setup, &ops).unwrap();
        assert_eq!(stats.full, 1);
        assert_eq!(stats.received, 4);
    }

    /// A claim held by one producer holds back the other's later messages.
    #[test]
    fn mpsc_claims_block_in_order() {
        let (setup, mut ops) = held_claims(5);
        ops.extend([Op::Pop, Op::Pop]);
        let stats = run(setup, &ops).unwrap();
        assert_eq!(stats.received, 3);
    }

    /// Bug found by the model (FZ-04): an MPSC producer marks a claimed frame as
    /// "being written" by a negative length, but `-(0) == 0`, so the header of a
    /// zero-length claim reads as a committed empty message. The consumer delivers
    /// it before it is committed (or even if it is aborted) and releases its space;
    /// the producer's later commit or abort then stores a header into space that is
    /// no longer its own. Once another producer has claimed the same offset a lap
    /// later, that store overwrites the other producer's header, and the consumer
    /// parses that producer's payload as frames: here it receives a message forged
    /// from payload bytes, with no hostile peer involved.
    #[test]
    fn mpsc_zero_length_reservation_is_not_delivered_before_commit() {
        let g = Geometry::mpsc(64, 2).unwrap(); // max payload 16
        let region = fresh(g, 0);
        let attach = |s| Mpsc::producer(&region, g, s, cfg(), Arc::new(InProcess)).unwrap();
        let (mut a, mut b) = (attach(0), attach(1));
        let mut rx = Mpsc::consumer(&region, g, cfg(), Arc::new(InProcess)).unwrap();
        // B's payloads happen to look like frame headers.
        let forged = MpscHeader {
            len: 8,
            kind: MPSC_MSG,
            slot: 1,
            incarnation: 1,
        }
        .encode()
        .to_le_bytes();
        let mut sent = Vec::new();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut drain = |rx: &mut mpsc::Consumer, got: &mut Vec<Vec<u8>>| {
            while rx.try_recv_into(&mut buf).is_ok() {
                got.push(buf.clone());
            }
        };
        let guard = a.try_reserve(0).unwrap();
        drain(&mut rx, &mut got); // today: an empty message that was never committed
        for _ in 0..3 {
            if b.try_send(&forged).is_ok() {
                sent.push(forged.to_vec());
            }
        }
        drain(&mut rx, &mut got);
        // This one wraps: today its header lands at offset 0, where A's claim was.
        if b.try_send(&forged).is_ok() {
            sent.push(forged.to_vec());
        }
        drop(guard); // A aborts: today, a padding header over B's header at offset 0
        drain(&mut rx, &mut got);
        assert_eq!(got, sent, "exactly B's messages, nothing from A");
    }

    /// Bug found by the model (FZ-04): `spsc::Producer::try_send_batch` returns
    /// `MessageTooLarge` for a too-large message *after* it has written the frames
    /// before it and advanced its position, without publishing them. The header
    /// slot the consumer polls stays 0, so those frames and everything sent later
    /// are never received: the ring is wedged for good.
    #[test]
    fn try_send_batch_with_a_too_large_message_publishes_what_it_wrote() {
        let cap = 1024;
        let (_region, mut tx, mut rx) = pair_with(Geometry::spsc(cap as u64).unwrap(), 0, cfg());
        let big = vec![0u8; max_payload(cap) + 1];
        let r = tx.try_send_batch([&b"a"[..], b"b", &big]);
        // Either answer is acceptable, as long as what it reports is what happened.
        let sent = match r {
            Ok(n) => n,
            Err(Error::MessageTooLarge { .. }) => 0,
            Err(e) => panic!("{e}"),
        };
        tx.try_send(b"c").unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while rx.try_recv_into(&mut buf).is_ok() {
            got.push(buf.clone());
        }
        let want: Vec<&[u8]> = [&b"a"[..], b"b"][..sent]
            .iter()
            .copied()
            .chain([&b"c"[..]])
            .collect();
        assert_eq!(got, want, "batch returned {r:?}");
    }

    /// Regression (found by the model, FZ-04, and independently by the throughput
    /// benchmark): the MPSC consumer's walk is bounded only by the zeroes it leaves
    /// behind when it releases frames, and `try_recv_batch` used to release only at
    /// its end. On a ring that is exactly full the walk came back round to the
    /// batch's own first frame, not zeroed yet, and handed it over again (with
    /// `usize::MAX`, for ever). Fixed: the walk releases once half a ring is consumed.
    #[test]
    fn mpsc_batch_on_a_full_ring_delivers_each_message_once() {
        let (_region, mut tx, mut rx) = pair_with(Geometry::mpsc(64, 1).unwrap(), 0, cfg());
        for i in 0..4u8 {
            tx.try_send(&[i; 8]).unwrap(); // 4 frames of 16 bytes: exactly full
        }
        assert_eq!(tx.try_send(&[9]), Err(Error::Full));
        let mut got = Vec::new();
        let n = rx.try_recv_batch(100, |m| got.push(m[0])).unwrap();
        assert_eq!((n, got), (4, vec![0, 1, 2, 3]));
    }

    /// Regression (found by the model, FZ-04): padding the consumer skips used to be
    /// published (and zeroed) only with the next message it released. When
    /// well-behaved producers aborted enough claims to fill the ring with padding,
    /// the consumer walked the whole lap back to padding it had not zeroed and
    /// reported "a lap of padding" as corruption, while every producer got `Full`.
    /// Fixed with the previous one.
    #[test]
    fn mpsc_ring_full_of_aborted_claims_is_not_corrupted() {
        let (_region, mut tx, mut rx) = pair_with(Geometry::mpsc(64, 1).unwrap(), 0, cfg());
        for _ in 0..4 {
            drop(tx.try_reserve(8).unwrap()); // aborted: 16 bytes of padding each
        }
        let mut buf = Vec::new();
        assert_eq!(rx.try_recv_into(&mut buf), Err(Error::Empty));
        tx.try_send(b"after").unwrap();
        rx.try_recv_into(&mut buf).unwrap();
        assert_eq!(buf, b"after");
    }

    /// Minor bug found by the model (FZ-04): PROTOCOL.md section 7 says a failed check
    /// poisons the endpoint, so later calls return the same error. `try_recv_batch(0)`
    /// skips the poison check (it looks for no message) and goes straight to the
    /// liveness path, which for MPSC re-reads the ring and may even compare-and-swap
    /// a header (reclamation) on a ring it has judged corrupted; SPSC returns `Ok(0)`.
    #[test]
    fn a_poisoned_consumer_stays_poisoned() {
        let cap = 256;
        let (region, mut rx) = consumer_only(Geometry::spsc(cap).unwrap());
        region.store_word(spsc::CONTROL_LEN, u64::MAX);
        let mut buf = Vec::new();
        let Err(e @ Error::Corrupted(_)) = rx.try_recv_into(&mut buf) else {
            panic!("garbage header accepted")
        };
        assert_eq!(rx.try_recv_batch(0, |_| {}), Err(e));

        let (region, mut rx) = consumer_only(Geometry::mpsc(cap, 1).unwrap());
        region.store_word(mpsc::control_len(1), u64::MAX);
        let Err(e @ Error::Corrupted(_)) = rx.try_recv_into(&mut buf) else {
            panic!("garbage header accepted")
        };
        region.store_word(mpsc::control_len(1), 0);
        region.store_word(0, 8); // a claim whose header is still 0
        assert_eq!(rx.try_recv_batch(0, |_| {}), Err(e));

        // A bad endpoint state word is reported as corruption, but does not poison:
        // the next call receives again.
        let (region, mut tx, mut rx) = pair_with(Geometry::spsc(cap).unwrap(), 0, cfg());
        let state = 384 + 16; // producer state word (and its incarnation)
        let word = region.load_word(state).unwrap();
        region.store_word(state, (word & !0xffff_ffff) | 3);
        let Err(e @ Error::Corrupted(_)) = rx.try_recv_into(&mut buf) else {
            panic!("bad endpoint state accepted")
        };
        tx.try_send(b"x").unwrap();
        assert_eq!(rx.try_recv_into(&mut buf), Err(e));
    }

    // Sanitizer negative controls: scripts/sanitizers.sh runs these under
    // ThreadSanitizer and AddressSanitizer and requires each to be reported, which
    // shows that the sanitizer run really sees the ring's memory accesses. They
    // break the rules on purpose, so they never run otherwise.

    /// Two producers attached to one SPSC ring at once (the caller's liveness
    /// marker normally prevents it) write the same payload bytes from two threads:
    /// a data race inside `shmq-ring`'s payload copy, which ThreadSanitizer reports.
    #[test]
    #[ignore = "TSan negative control: two producers race on one SPSC ring on purpose"]
    fn tsan_negative_control_two_producers_race() {
        let g = Geometry::spsc(4096).unwrap();
        let region = fresh(g, 0);
        // Both attach first, so that neither has read what the other published.
        let producers: Vec<_> = (0..2)
            .map(|_| Spsc::producer(&region, g, 0, cfg(), Arc::new(InProcess)).unwrap())
            .collect();
        let threads: Vec<_> = producers
            .into_iter()
            .enumerate()
            .map(|(i, mut tx)| {
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _ = tx.try_send(&[i as u8; 64]);
                    }
                    tx.detach();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    /// Reads one byte past the end of a heap buffer, which AddressSanitizer reports.
    #[test]
    #[ignore = "ASan negative control: reads past a heap buffer on purpose"]
    fn asan_negative_control_reads_past_a_buffer() {
        let v: Vec<u8> = std::iter::repeat_n(1u8, 24).collect();
        // SAFETY: none: this reads out of bounds on purpose, for AddressSanitizer
        // to catch (the test is ignored and run only under it).
        let x = unsafe { v.as_ptr().add(v.len()).read_volatile() };
        std::hint::black_box(x);
    }
}
