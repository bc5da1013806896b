//! SPSC ring over heap regions: framing, edges, batches, resume, threads, and a
//! hostile peer.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use shmq_ring::frame::{self, max_payload};
use shmq_ring::spsc::{self, CONTROL_LEN, Consumer, Producer};
use shmq_ring::{Disconnect, Error, Geometry, InProcess, Region, Spsc, WaitConfig, WaitStrategy};
use shmq_ring_model::checks::every_size_at_every_offset;
use shmq_ring_model::{Ring, pair, pair_with};

fn ring(cap: usize, start: u64) -> (Region, Producer, Consumer) {
    pair(Geometry::spsc(cap as u64).unwrap(), start)
}

/// A 1024-byte ring whose producer sent "one" and "two", then died after
/// publishing "two" but before storing `tail`: `tail` is put back to where "two"
/// starts, and the producer is forgotten (no close).
fn died_before_storing_tail() -> (Region, Consumer) {
    let (region, mut tx, rx) = ring(1024, 0);
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    let tail = region.load_word(0).unwrap();
    region.store_word(0, tail - frame::frame_len(3) as u64);
    std::mem::forget(tx); // no close: it "died"
    (region, rx)
}

/// A producer attached anew, as after the previous one died.
fn new_producer(region: &Region, cap: usize) -> Producer {
    let g = Geometry::spsc(cap as u64).unwrap();
    Spsc::producer(region, g, 0, WaitConfig::default(), Arc::new(InProcess)).unwrap()
}

/// A message whose bytes depend on its sequence number and length.
fn msg(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize * 31 + i * 7) as u8)
        .collect()
}

#[test]
fn capacities_are_checked() {
    for bad in [0u64, 1, 63, 100, 96, 1 << 33] {
        assert!(
            matches!(spsc::check_capacity(bad), Err(Error::InvalidCapacity(_))),
            "{bad}"
        );
    }
    for good in [64u64, 128, 4096, 1 << 32] {
        spsc::check_capacity(good).unwrap();
    }
    let region = Region::heap(CONTROL_LEN + 64);
    assert!(matches!(
        spsc::init(&region, shmq_ring::Geometry::spsc(128).unwrap(), 0),
        Err(Error::RegionTooSmall { .. })
    ));
}

#[test]
fn every_size_at_every_offset_wraps_intact() {
    let cap = 256;
    every_size_at_every_offset(cap, |start| ring(cap, start), msg, |_| {});
}

#[test]
fn full_and_empty_edges() {
    let cap = 128;
    let (_r, mut tx, mut rx) = ring(cap, 0);
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    // 8-byte payload frames are 16 bytes; one header slot stays free for the end
    // marker, so 7 fit in 128 bytes.
    let mut sent = 0;
    while tx.try_send(&msg(sent, 8)).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 7);
    assert!(matches!(tx.try_send(&[1; 8]), Err(Error::Full)));
    assert!(matches!(
        tx.send_timeout(&[1; 8], Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    for i in 0..sent {
        assert_eq!(&*rx.try_recv().unwrap(), &msg(i, 8)[..]);
    }
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    tx.try_send(&[9; 8]).unwrap();
}

#[test]
fn max_message_size_fits_from_any_offset_and_one_more_is_refused() {
    let cap = 512;
    let max = max_payload(cap);
    for shift in 0..(cap / 8) {
        let (_r, mut tx, mut rx) = ring(cap, 0);
        for _ in 0..shift {
            tx.try_send(&[]).unwrap();
            drop(rx.try_recv().unwrap());
        }
        let m = msg(shift as u64, max);
        tx.try_send(&m).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), &m[..]);
        assert_eq!(
            tx.try_send(&vec![0; max + 1]),
            Err(Error::MessageTooLarge { len: max + 1, max })
        );
        assert!(matches!(
            tx.send(&vec![0; max + 1]),
            Err(Error::MessageTooLarge { .. })
        ));
    }
}

#[test]
fn reserve_commit_and_abort() {
    let (_r, mut tx, mut rx) = ring(1024, 0);
    {
        let mut g = tx.try_reserve(10).unwrap();
        g.copy_from_slice(b"0123456789");
        g.commit();
    }
    {
        let mut g = tx.reserve(100).unwrap();
        g[..3].copy_from_slice(b"abc");
        g.commit_len(3);
    }
    {
        let mut g = tx.try_reserve(4).unwrap();
        g.copy_from_slice(b"nope");
        // dropped: aborted
    }
    tx.send(b"last").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"0123456789");
    assert_eq!(&*rx.recv().unwrap(), b"abc");
    assert_eq!(&*rx.recv().unwrap(), b"last");
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

#[test]
fn bytes_written_into_an_aborted_or_shortened_reservation_never_look_like_frames() {
    // Found by the ops-vs-model property test: the producer zeroes header slots
    // ahead of need, and a reservation written but not (wholly) committed had left
    // bytes there that the consumer took for a frame header.
    let (_r, mut tx, mut rx) = ring(1024, 0);
    tx.send(b"a").unwrap();
    drop(rx.recv().unwrap());
    let junk = frame::spsc_message(5).to_le_bytes().repeat(12);
    {
        let mut g = tx.try_reserve(96).unwrap();
        g.copy_from_slice(&junk);
        // dropped: aborted
    }
    tx.send(b"b").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"b");
    assert!(
        matches!(rx.try_recv(), Err(Error::Empty)),
        "junk read as a frame"
    );
    {
        let mut g = tx.try_reserve(96).unwrap();
        g.copy_from_slice(&junk);
        g.commit_len(3);
    }
    assert_eq!(rx.recv().unwrap().len(), 3);
    assert!(
        matches!(rx.try_recv(), Err(Error::Empty)),
        "junk read as a frame"
    );
}

#[test]
fn batches_publish_and_release_together() {
    let (_r, mut tx, mut rx) = ring(1024, 0);
    let msgs: Vec<Vec<u8>> = (0..20).map(|i| msg(i, (i as usize * 5) % 40)).collect();
    let mut sent = 0;
    while sent < msgs.len() {
        let n = tx
            .try_send_batch(msgs[sent..].iter().map(Vec::as_slice))
            .unwrap();
        assert!(n > 0);
        let mut got = Vec::new();
        let m = rx
            .try_recv_batch(usize::MAX, |p| got.push(p.to_vec()))
            .unwrap();
        assert_eq!(m, n);
        assert_eq!(got, msgs[sent..sent + n]);
        sent += n;
    }
    assert_eq!(rx.try_recv_batch(8, |_| {}), Ok(0));
    // A batch larger than the ring sends what fits.
    let big: Vec<Vec<u8>> = (0..100).map(|i| msg(i, 24)).collect();
    let n = tx.try_send_batch(big.iter().map(Vec::as_slice)).unwrap();
    assert!(n > 0 && n < 100);
    assert_eq!(rx.try_recv_batch(3, |_| {}).unwrap(), 3);
    assert_eq!(rx.try_recv_batch(usize::MAX, |_| {}).unwrap(), n - 3);
}

#[test]
fn positions_cross_the_64_bit_wrap() {
    let cap = 256;
    let start = u64::MAX - 7 - 3 * 64;
    let (_r, mut tx, mut rx) = ring(cap, start);
    let mut buf = Vec::new();
    for i in 0..200u64 {
        let m = msg(i, (i as usize * 13) % 60);
        tx.send(&m).unwrap();
        rx.recv_into(&mut buf).unwrap();
        assert_eq!(buf, m);
    }
}

#[test]
fn close_then_drain_then_disconnected() {
    let (_r, mut tx, mut rx) = ring(1024, 0);
    tx.send(b"a").unwrap();
    tx.send(b"b").unwrap();
    drop(tx);
    assert_eq!(&*rx.recv().unwrap(), b"a");
    assert_eq!(&*rx.try_recv().unwrap(), b"b");
    assert_eq!(
        rx.try_recv().err(),
        Some(Error::Disconnected(Disconnect::Closed))
    );
    assert_eq!(
        rx.recv().err(),
        Some(Error::Disconnected(Disconnect::Closed))
    );

    let (_r, mut tx, rx) = ring(1024, 0);
    drop(rx);
    assert_eq!(
        tx.send(b"x").err(),
        Some(Error::Disconnected(Disconnect::Closed))
    );
}

#[test]
fn a_new_producer_resumes_after_the_last_published_frame() {
    let (region, mut rx) = died_before_storing_tail();
    let mut tx2 = new_producer(&region, 1024);
    tx2.send(b"three").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"one");
    assert_eq!(&*rx.recv().unwrap(), b"two");
    assert_eq!(&*rx.recv().unwrap(), b"three");
}

#[test]
fn a_new_producer_resumes_even_when_the_consumer_read_past_a_stale_tail() {
    let (region, mut rx) = died_before_storing_tail();
    // The consumer reads both, so `head` is now ahead of the stale `tail`.
    assert_eq!(&*rx.recv().unwrap(), b"one");
    assert_eq!(&*rx.recv().unwrap(), b"two");
    let mut tx2 = new_producer(&region, 1024);
    tx2.send(b"three").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"three");
}

#[test]
fn threads_stream_a_million_verified_messages() {
    for strategy in [WaitStrategy::Park, WaitStrategy::default()] {
        let g = Geometry::spsc(4096).unwrap();
        let (_region, mut tx, mut rx) = pair_with(g, 0, WaitConfig::from(strategy));
        const N: u64 = 1_000_000;
        let t = std::thread::spawn(move || {
            for i in 0..N {
                let len = 8 + (i % 57) as usize;
                let mut g = tx.reserve(len).unwrap();
                g[..8].copy_from_slice(&i.to_le_bytes());
                for (k, b) in g[8..].iter_mut().enumerate() {
                    *b = (i as usize + k) as u8;
                }
                g.commit();
            }
        });
        for i in 0..N {
            let m = rx.recv().unwrap();
            assert_eq!(m.len(), 8 + (i % 57) as usize);
            assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), i);
            assert!(
                m[8..]
                    .iter()
                    .enumerate()
                    .all(|(k, &b)| b == (i as usize + k) as u8)
            );
        }
        t.join().unwrap();
        assert_eq!(
            rx.recv().err(),
            Some(Error::Disconnected(Disconnect::Closed))
        );
    }
}

/// What a hostile peer can write, and where (offsets into the region).
#[derive(Clone, Debug)]
enum Lie {
    Tail(u64),
    Head(u64),
    Header { slot: usize, value: u64 },
}

fn lie() -> impl Strategy<Value = Lie> {
    let special = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(1 << 40),
        any::<u64>(),
        (0u64..4096),
    ];
    let header = prop_oneof![
        any::<u64>(),
        (0u32..100_000).prop_map(|l| frame::spsc_message(l as usize)),
        (0u32..4096).prop_map(|l| frame::spsc_padding(l as usize)),
    ];
    prop_oneof![
        special.clone().prop_map(Lie::Tail),
        special.prop_map(Lie::Head),
        ((0usize..64), header).prop_map(|(slot, value)| Lie::Header { slot, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A peer writes arbitrary values into `head`, `tail` and frame headers while
    /// both sides keep working: every call returns a valid frame or a typed error
    /// (never a panic or an out-of-bounds access), and once corrupted an endpoint
    /// stays so.
    #[test]
    fn hostile_writes_give_errors_or_valid_frames(
        lies in proptest::collection::vec((0usize..40, lie()), 1..6),
        sizes in proptest::collection::vec(0usize..100, 40),
    ) {
        let cap = 512;
        let (region, mut tx, mut rx) = ring(cap, 0);
        let mut buf = Vec::new();
        for (step, &len) in sizes.iter().enumerate() {
            for (_, l) in lies.iter().filter(|(at, _)| *at == step) {
                let ok = match *l {
                    Lie::Tail(v) => region.store_word(0, v),
                    Lie::Head(v) => region.store_word(128, v),
                    Lie::Header { slot, value } => region.store_word(CONTROL_LEN + slot * 8, value),
                };
                prop_assert!(ok);
            }
            match tx.try_send(&msg(step as u64, len)) {
                Ok(()) | Err(Error::Full) | Err(Error::Corrupted(_)) => {}
                Err(Error::MessageTooLarge { .. }) => prop_assert!(len > max_payload(cap)),
                Err(e) => prop_assert!(false, "send: {e}"),
            }
            match rx.try_recv_into(&mut buf) {
                Ok(()) => prop_assert!(buf.len() <= max_payload(cap)),
                Err(Error::Empty) | Err(Error::Corrupted(_)) => {}
                Err(e) => prop_assert!(false, "recv: {e}"),
            }
        }
        // A poisoned consumer keeps saying so.
        if let Err(Error::Corrupted(c)) = rx.try_recv_into(&mut buf) {
            prop_assert_eq!(rx.try_recv_into(&mut buf), Err(Error::Corrupted(c)));
        }
    }
}
