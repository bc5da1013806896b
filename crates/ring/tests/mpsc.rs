//! MPSC ring over heap regions: framing, many producers, dead-producer recovery,
//! disconnection and a hostile peer.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use proptest::prelude::*;
use shmq_ring::frame::{self, MPSC_MSG, MpscHeader, max_payload};
use shmq_ring::mpsc::{Consumer, Producer, control_len};
use shmq_ring::{Disconnect, Endpoint, Error, Liveness, Region, WaitConfig, WaitStrategy};
use shmq_ring_model::{checks, fresh};

/// Liveness we control: index 0 is the consumer, 1 + s producer slot s.
struct Mock(Vec<AtomicBool>);

impl Mock {
    fn new(producers: u16) -> Arc<Mock> {
        Arc::new(Mock(
            (0..=producers).map(|_| AtomicBool::new(true)).collect(),
        ))
    }
    fn kill(&self, e: Endpoint) {
        self.0[Self::idx(e)].store(false, Ordering::SeqCst);
    }
    fn idx(e: Endpoint) -> usize {
        match e {
            Endpoint::Consumer => 0,
            Endpoint::Producer(s) => 1 + s as usize,
            Endpoint::Subscriber(_) => unreachable!("an MPSC ring has no subscribers"),
        }
    }
}

impl Liveness for Mock {
    fn is_alive(&self, e: Endpoint) -> bool {
        self.0[Self::idx(e)].load(Ordering::SeqCst)
    }
}

const PARK: WaitConfig = WaitConfig {
    strategy: WaitStrategy::Park,
    slice: Duration::from_millis(5),
    lifecycle: shmq_ring::Lifecycle::Session,
    linger: Duration::ZERO,
};

fn setup(cap: usize, producers: u16, start: u64) -> (Region, Arc<Mock>) {
    (fresh(geometry(cap, producers), start), Mock::new(producers))
}

/// [`setup`] at position 0, with the consumer attached.
fn with_consumer(cap: usize, producers: u16) -> (Region, Arc<Mock>, Consumer) {
    let (r, live) = setup(cap, producers, 0);
    let rx = consumer(&r, cap, producers, &live);
    (r, live, rx)
}

/// [`with_consumer`] with all `N` producers attached too, slot by slot.
fn with_all<const N: usize>(cap: usize) -> (Region, Arc<Mock>, Consumer, [Producer; N]) {
    let (r, live, rx) = with_consumer(cap, N as u16);
    let txs = std::array::from_fn(|s| producer(&r, cap, N as u16, s as u16, &live));
    (r, live, rx, txs)
}

fn geometry(cap: usize, producers: u16) -> shmq_ring::Geometry<shmq_ring::Mpsc> {
    shmq_ring::Geometry::mpsc(cap as u64, producers).unwrap()
}

fn producer(r: &Region, cap: usize, n: u16, slot: u16, live: &Arc<Mock>) -> Producer {
    Producer::attach(r, geometry(cap, n), slot, PARK, live.clone()).unwrap()
}

fn consumer(r: &Region, cap: usize, n: u16, live: &Arc<Mock>) -> Consumer {
    Consumer::attach(r, geometry(cap, n), PARK, live.clone()).unwrap()
}

fn msg(id: u8, seq: u64, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len)
        .map(|i| (seq as usize * 31 + i * 7) as u8 ^ id)
        .collect();
    if len >= 9 {
        m[0] = id;
        m[1..9].copy_from_slice(&seq.to_le_bytes());
    }
    m
}

/// Attaches the producers of slots `0..n` in turn, each handed to `body` on a
/// thread of its own.
fn spawn_producers(
    r: &Region,
    cap: usize,
    n: u16,
    live: &Arc<Mock>,
    body: impl Fn(u16, Producer) + Clone + Send + 'static,
) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|s| {
            let tx = producer(r, cap, n, s, live);
            let body = body.clone();
            std::thread::spawn(move || body(s, tx))
        })
        .collect()
}

fn join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        h.join().unwrap();
    }
}

/// Checks that `m`, a [`msg`] of `len(seq)` bytes, is the next message of the
/// producer it names, and counts it in `next`.
#[track_caller]
fn in_order(m: &[u8], next: &mut [u64], len: impl Fn(u64) -> usize) {
    let id = m[0] as usize;
    let seq = u64::from_le_bytes(m[1..9].try_into().unwrap());
    assert_eq!(seq, next[id], "producer {id}");
    assert_eq!(m, &msg(id as u8, seq, len(seq))[..]);
    next[id] += 1;
}

/// Producers in slots `0..n` of a 4096-byte ring, each on a thread of its
/// own, send `per_producer` [`msg`]s of `len(seq)` bytes through `produce`;
/// `receive` takes what it can, hands each message to the check it is given
/// and says how many it took. Every message must arrive exactly once and in
/// its producer's order ([`in_order`]). Returns the consumer once the
/// producers have finished.
fn exactly_once_in_order(
    n: u16,
    per_producer: u64,
    len: fn(u64) -> usize,
    produce: impl Fn(u16, Producer) + Clone + Send + 'static,
    mut receive: impl FnMut(&mut Consumer, &mut dyn FnMut(&[u8])) -> usize,
) -> Consumer {
    let cap = 4096;
    let (r, live, mut rx) = with_consumer(cap, n);
    let handles = spawn_producers(&r, cap, n, &live, produce);
    let mut next = vec![0u64; n.into()];
    let mut got = 0;
    while got < u64::from(n) * per_producer {
        got += receive(&mut rx, &mut |m| in_order(m, &mut next, len)) as u64;
    }
    join(handles);
    rx
}

/// Asserts that a receive waiting `ms` milliseconds times out, and that the
/// consumer has reclaimed `reclaimed` frames by then.
#[track_caller]
fn times_out(rx: &mut Consumer, ms: u64, reclaimed: u64) {
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(ms)),
        Err(Error::Timeout)
    ));
    assert_eq!(rx.reclaimed(), reclaimed);
}

#[test]
fn every_size_at_every_offset() {
    let cap = 256;
    let make = |start| {
        let (r, live) = setup(cap, 1, start);
        let tx = producer(&r, cap, 1, 0, &live);
        let rx = consumer(&r, cap, 1, &live);
        (r, tx, rx)
    };
    checks::every_size_at_every_offset(
        cap,
        make,
        |seq, len| msg(1, seq, len),
        |r| {
            // Everything consumed is zeroed.
            let data = control_len(1);
            assert!((0..cap / 8).all(|w| r.load_word(data + w * 8) == Some(0)));
        },
    );
}

#[test]
fn full_abort_and_too_large() {
    let cap = 128;
    let (r, live) = setup(cap, 2, 0);
    let mut a = producer(&r, cap, 2, 0, &live);
    let mut b = producer(&r, cap, 2, 1, &live);
    let mut rx = consumer(&r, cap, 2, &live);
    assert!(matches!(
        a.try_send(&[0; 49]),
        Err(Error::MessageTooLarge { len: 49, max: 48 })
    ));
    let mut g = a.try_reserve(8).unwrap();
    g.copy_from_slice(b"aborted!");
    drop(g); // becomes padding
    let mut n = 0;
    while b.try_send(&msg(2, n, 8)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 7, "8 frames of 16 bytes fill 128 bytes, one is padding");
    assert!(matches!(a.try_send(&[1; 8]), Err(Error::Full)));
    for i in 0..n {
        assert_eq!(&*rx.try_recv().unwrap(), &msg(2, i, 8)[..]);
    }
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

#[test]
fn a_batch_longer_than_a_lap_never_hands_a_message_out_twice() {
    // Found by the throughput benchmark: a receive batch that walked a whole lap of
    // the ring before releasing came back round to consumed, not yet zeroed frames.
    let cap = 1024;
    let (r, live, mut rx) = with_consumer(cap, 1);
    let mut tx = producer(&r, cap, 1, 0, &live);
    let t = std::thread::spawn(move || {
        for i in 0..20_000u64 {
            tx.send(&msg(1, i, 100)).unwrap();
        }
    });
    let mut next = 0u64;
    while next < 20_000 {
        rx.try_recv_batch(usize::MAX, |m| {
            assert_eq!(m, &msg(1, next, 100)[..], "message {next}");
            next += 1;
        })
        .unwrap();
    }
    t.join().unwrap();
}

#[test]
fn batches_from_three_threads_arrive_exactly_once_in_order() {
    const N: u64 = 100_000;
    let len = |seq: u64| 9 + (seq % 50) as usize;
    let produce = move |s: u16, mut tx: Producer| {
        let mut seq = 0;
        while seq < N {
            let msgs: Vec<Vec<u8>> = (seq..(seq + 20).min(N))
                .map(|i| msg(s as u8, i, len(i)))
                .collect();
            match tx.try_send_batch(msgs.iter().map(Vec::as_slice)) {
                Ok(n) => seq += n as u64,
                Err(Error::Full) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    exactly_once_in_order(3, N, len, produce, |rx, check| {
        let n = rx.try_recv_batch(usize::MAX, |m| check(m)).unwrap();
        if n == 0 {
            std::thread::yield_now();
        }
        n
    });
}

#[test]
fn batch_edges() {
    let cap = 256;
    let (r, live, mut rx) = with_consumer(cap, 1);
    let mut tx = producer(&r, cap, 1, 0, &live);
    let big = vec![0u8; max_payload(cap) + 1];
    assert!(matches!(
        tx.try_send_batch([&big[..]]),
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(tx.try_send_batch(std::iter::empty()), Ok(0));
    // Move to offset 200: a batch whose first message must wrap is sent alone.
    for _ in 0..25 {
        tx.send(&[]).unwrap();
        drop(rx.recv().unwrap());
    }
    let m = msg(1, 7, 60);
    assert_eq!(tx.try_send_batch([&m[..], &m[..]]), Ok(1));
    assert_eq!(&*rx.recv().unwrap(), &m[..]);
    // A batch stops where the ring is full.
    let small = msg(1, 8, 16);
    let n = tx
        .try_send_batch(std::iter::repeat_n(&small[..], 64))
        .unwrap();
    assert!(n > 0 && n < 64, "{n}");
}

#[test]
fn four_threads_exactly_once_in_per_producer_order() {
    const N: u64 = 200_000;
    let len = |seq: u64| 9 + (seq % 40) as usize;
    let produce = move |s: u16, mut tx: Producer| {
        for i in 0..N {
            tx.send(&msg(s as u8, i, len(i))).unwrap();
        }
    };
    let mut buf = Vec::new();
    let mut rx = exactly_once_in_order(4, N, len, produce, |rx, check| {
        rx.recv_into(&mut buf).unwrap();
        check(&buf);
        1
    });
    assert_eq!(
        rx.recv().err(),
        Some(Error::Disconnected(Disconnect::Closed))
    );
}

#[test]
fn a_dead_producers_claimed_frame_is_reclaimed_and_others_go_on() {
    let (_r, live, mut rx, [mut dead, mut alive]) = with_all::<2>(1024);
    dead.send(b"before").unwrap();
    let mut g = dead.try_reserve(20).unwrap();
    g.copy_from_slice(&[7; 20]);
    std::mem::forget(g); // claimed, header negative, never committed
    std::mem::forget(dead); // and never closed: it "died"
    alive.send(b"after").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"before");
    // Alive: the claim blocks the consumer, and is not reclaimed.
    times_out(&mut rx, 30, 0);
    live.kill(Endpoint::Producer(0));
    assert_eq!(&*rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"after");
    assert_eq!(rx.reclaimed(), 1);
    alive.send(b"more").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"more");
}

/// Claims `need` bytes the way a producer in `slot` does, then "dies" before
/// writing any header: intent recorded, tail moved, header left 0.
fn claim_without_header(r: &Region, slot: u16, need: u64) {
    let tail = r.load_word(0).unwrap();
    assert!(r.store_word(512 + slot as usize * 128 + 8, tail | 1));
    assert!(r.store_word(0, tail + need));
}

#[test]
fn a_producer_dead_before_its_header_is_reclaimed_without_tearing_the_next_claim() {
    let (r, live, mut rx, [mut a, _b, mut c]) = with_all::<3>(1024);
    a.send(b"first").unwrap();
    claim_without_header(&r, 1, 32); // b claims 32 bytes and stops
    // c claims right after b and is still writing (header negative).
    let mut g = c.try_reserve(5).unwrap();
    g.copy_from_slice(b"third");
    assert_eq!(&*rx.recv().unwrap(), b"first");
    // b alive (only stopped): nothing is reclaimed.
    times_out(&mut rx, 20, 0);
    live.kill(Endpoint::Producer(1));
    // b is dead: its zeroed gap, up to c's header, becomes padding; c's live claim
    // is not touched, and its message arrives once it commits.
    times_out(&mut rx, 30, 1);
    g.commit();
    assert_eq!(&*rx.recv().unwrap(), b"third");
    a.send(b"fourth").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"fourth");
}

#[test]
fn a_zero_gap_stops_at_a_live_producers_intent() {
    let cap = 1024;
    let (r, live, mut rx) = with_consumer(cap, 3);
    let _b = producer(&r, cap, 3, 1, &live);
    let _c = producer(&r, cap, 3, 2, &live);
    claim_without_header(&r, 1, 32); // b, to die
    claim_without_header(&r, 2, 48); // c, alive, no header yet either
    live.kill(Endpoint::Producer(1));
    times_out(&mut rx, 30, 1);
    // The padding covers b's 32 bytes exactly, not c's claim.
    let pad = MpscHeader::from_raw(r.load_word(control_len(3)).unwrap());
    assert_eq!((pad.kind, pad.len), (frame::MPSC_PAD, 24));
    assert_eq!(
        r.load_word(control_len(3) + 32),
        Some(0),
        "c's claim untouched"
    );
}

#[test]
fn wrapping_claims_of_dead_producers_are_reclaimed() {
    let (r, live, mut rx, [mut a, _b]) = with_all::<2>(256);
    // Move to offset 200, so a 64-byte frame must wrap.
    for _ in 0..25 {
        a.send(&[]).unwrap();
        drop(rx.recv().unwrap());
    }
    claim_without_header(&r, 1, 56 + 72); // padding to the end + a 64-byte frame
    live.kill(Endpoint::Producer(1));
    a.send(b"after the wrap").unwrap();
    assert_eq!(
        &*rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        b"after the wrap"
    );
    assert_eq!(rx.reclaimed(), 2, "one padding to the end, one at offset 0");
}

#[test]
fn disconnected_once_every_producer_is_gone_and_drained() {
    let cap = 1024;
    let (r, live, mut rx) = with_consumer(cap, 3);
    rx.expect_producers(2);
    let mut a = producer(&r, cap, 3, 0, &live);
    a.send(b"a").unwrap();
    drop(a);
    assert_eq!(&*rx.recv().unwrap(), b"a");
    // Only one of the two expected producers came: keep waiting.
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    let mut b = producer(&r, cap, 3, 1, &live);
    b.send(b"b").unwrap();
    std::mem::forget(b);
    live.kill(Endpoint::Producer(1));
    assert_eq!(&*rx.recv().unwrap(), b"b");
    assert_eq!(rx.recv().err(), Some(Error::Disconnected(Disconnect::Died)));
    let mut tx = producer(&r, cap, 3, 2, &live);
    drop(rx);
    assert_eq!(
        tx.send(b"x").err(),
        Some(Error::Disconnected(Disconnect::Closed))
    );
}

#[derive(Clone, Debug)]
enum Lie {
    Tail(u64),
    Word { at: usize, value: u64 },
}

fn lie() -> impl Strategy<Value = Lie> {
    let header = prop_oneof![
        any::<u64>(),
        (any::<i32>(), 0u8..4, any::<u16>()).prop_map(|(len, slot, inc)| {
            MpscHeader {
                len,
                kind: MPSC_MSG,
                slot,
                incarnation: inc,
            }
            .encode()
        }),
        (0i32..300, 0u8..4).prop_map(|(len, slot)| {
            MpscHeader {
                len,
                kind: frame::MPSC_PAD,
                slot,
                incarnation: 0,
            }
            .encode()
        }),
    ];
    prop_oneof![
        prop_oneof![Just(1u64 << 40), Just(u64::MAX), any::<u64>(), 0u64..2048].prop_map(Lie::Tail),
        ((0usize..32), header).prop_map(|(at, value)| Lie::Word { at, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A hostile producer corrupts lengths, producer ids and `tail`: the consumer
    /// and honest producers get valid frames or typed errors, never a panic or an
    /// endless loop (the test would hang).
    #[test]
    fn hostile_writes(lies in proptest::collection::vec((0usize..30, lie()), 1..6)) {
        let cap = 256;
        let (r, live, mut rx) = with_consumer(cap, 2);
        let mut tx = producer(&r, cap, 2, 0, &live);
        let mut buf = Vec::new();
        for step in 0..30 {
            for (_, l) in lies.iter().filter(|(at, _)| *at == step) {
                match *l {
                    Lie::Tail(v) => { r.store_word(0, v); }
                    Lie::Word { at, value } => { r.store_word(control_len(2) + at * 8, value); }
                }
            }
            match tx.try_send(&msg(0, step as u64, 12)) {
                Ok(()) | Err(Error::Full) | Err(Error::Corrupted(_)) => {}
                Err(e) => prop_assert!(false, "send: {e}"),
            }
            match rx.try_recv_into(&mut buf) {
                Ok(()) => prop_assert!(buf.len() <= max_payload(cap)),
                Err(Error::Empty) | Err(Error::Corrupted(_)) => {}
                Err(e) => prop_assert!(false, "recv: {e}"),
            }
            // The slow path (reclaim and liveness) must also stay bounded.
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(_) | Err(Error::Timeout) | Err(Error::Corrupted(_)) => {}
                Err(e) => prop_assert!(false, "recv_timeout: {e}"),
            }
        }
    }
}
