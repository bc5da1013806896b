//! Broadcast ring over heap regions: fan-out, lossless gating, lossy lapping
//! with exact counts, joining, eviction of the dead, hostile slots, and a
//! threaded torn-read hunt.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shmq_ring::broadcast::{self, Join, Mode, Publisher, Subscriber};
use shmq_ring::{Endpoint, Error, Geometry, InProcess, Liveness, Region, WaitConfig};

fn ring(cap: u64, subs: u16) -> (Region, Geometry<shmq_ring::Broadcast>) {
    let g = Geometry::broadcast(cap, subs).unwrap();
    let region = Region::heap(g.region_len());
    broadcast::init(&region, g, 0).unwrap();
    (region, g)
}

fn publisher(r: &Region, g: Geometry<shmq_ring::Broadcast>) -> Publisher {
    Publisher::attach(r, g, WaitConfig::default(), Arc::new(InProcess)).unwrap()
}

fn subscriber(
    r: &Region,
    g: Geometry<shmq_ring::Broadcast>,
    slot: u16,
    mode: Mode,
    join: Join,
) -> Subscriber {
    Subscriber::attach(
        r,
        g,
        slot,
        mode,
        join,
        WaitConfig::default(),
        Arc::new(InProcess),
    )
    .unwrap()
}

/// Message `seq`: its length varies with `seq`, and every byte depends on it,
/// so a torn or misplaced message fails [`check`].
fn msg(seq: u64) -> Vec<u8> {
    let len = 8 + (seq as usize * 13) % 120;
    let mut m = seq.to_le_bytes().to_vec();
    m.extend((8..len).map(|i| (seq as usize * 31 + i * 7) as u8));
    m
}

fn check(m: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(m, &msg(seq)[..], "message {seq} torn or misplaced");
    seq
}

/// Message `seq` goes through: the publisher sends it (waiting up to 30 s for
/// room, as a gate on a dead or hostile slot would make it wait for ever) and
/// `sub` receives it next.
#[track_caller]
fn goes_through(tx: &mut Publisher, sub: &mut Subscriber, seq: u64) {
    tx.send_timeout(&msg(seq), Duration::from_secs(30)).unwrap();
    assert_eq!(check(&sub.try_recv().unwrap()), seq);
}

#[test]
fn geometry_limits_are_checked() {
    assert_eq!(
        Geometry::broadcast(1024, 0),
        Err(Error::InvalidSubscriberCount(0))
    );
    assert_eq!(
        Geometry::broadcast(1024, broadcast::MAX_SUBSCRIBERS + 1),
        Err(Error::InvalidSubscriberCount(
            broadcast::MAX_SUBSCRIBERS + 1
        ))
    );
    assert_eq!(
        Geometry::broadcast(1 << 32, 4),
        Err(Error::InvalidCapacity(1 << 32))
    );
    let (r, g) = ring(1024, 2);
    assert!(matches!(
        Subscriber::attach(
            &r,
            g,
            2,
            Mode::Lossless,
            Join::Next,
            WaitConfig::default(),
            Arc::new(InProcess)
        ),
        Err(Error::TooManySubscribers(2))
    ));
}

#[test]
fn every_lossless_subscriber_gets_every_message_once_in_order_across_wraps() {
    let (r, g) = ring(1024, 4);
    let mut subs: Vec<_> = (0..3)
        .map(|s| subscriber(&r, g, s, Mode::Lossless, Join::Next))
        .collect();
    let mut tx = publisher(&r, g);
    let mut next = [0u64; 3];
    for seq in 0..5_000u64 {
        loop {
            match tx.try_send(&msg(seq)) {
                Ok(()) => break,
                Err(Error::Full) => {
                    // Drain one subscriber at a time: the slowest gates.
                    for (i, s) in subs.iter_mut().enumerate() {
                        while let Ok(m) = s.try_recv() {
                            assert_eq!(check(&m), next[i]);
                            next[i] += 1;
                        }
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    for (i, s) in subs.iter_mut().enumerate() {
        while let Ok(m) = s.try_recv() {
            assert_eq!(check(&m), next[i]);
            next[i] += 1;
        }
        assert_eq!(next[i], 5_000);
    }
}

#[test]
fn a_lossless_subscriber_that_reads_nothing_makes_the_ring_full_and_loses_nothing() {
    let (r, g) = ring(1024, 2);
    let mut slow = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    let mut tx = publisher(&r, g);
    let mut sent = 0;
    while tx.try_send(&msg(sent)).is_ok() {
        sent += 1;
    }
    assert!(sent > 3, "only {sent} fitted");
    assert_eq!(tx.try_send(&msg(sent)), Err(Error::Full));
    for seq in 0..sent {
        assert_eq!(check(&slow.try_recv().unwrap()), seq);
    }
    assert_eq!(slow.try_recv().map(|_| ()), Err(Error::Empty));
    tx.try_send(&msg(sent)).unwrap();
}

#[test]
fn a_lossy_subscriber_is_never_waited_for_and_learns_exactly_how_many_it_missed() {
    let (r, g) = ring(1024, 2);
    let mut lossy = subscriber(&r, g, 0, Mode::Lossy, Join::Next);
    let mut tx = publisher(&r, g);
    for seq in 0..1_000 {
        tx.try_send(&msg(seq)).unwrap();
    }
    let missed = match lossy.try_recv().map(|m| m.to_vec()) {
        Err(Error::Lagged(n)) => n,
        other => panic!("expected Lagged, got {other:?}"),
    };
    // It continues from the oldest message still in the ring, to the last one.
    let mut seq = missed;
    while let Ok(m) = lossy.try_recv() {
        assert_eq!(check(&m), seq);
        seq += 1;
    }
    assert_eq!(seq, 1_000, "it read up to the last message");
    assert!(
        missed > 900,
        "a 1 KiB ring holds few messages; missed {missed}"
    );
    assert_eq!(lossy.lagged(), missed);
}

#[test]
fn joining_at_oldest_sees_what_is_retained_and_at_next_only_what_follows() {
    let (r, g) = ring(4096, 3);
    let mut tx = publisher(&r, g);
    for seq in 0..10 {
        tx.send(&msg(seq)).unwrap();
    }
    let mut old = subscriber(&r, g, 0, Mode::Lossless, Join::Oldest);
    let mut new = subscriber(&r, g, 1, Mode::Lossy, Join::Next);
    tx.send(&msg(10)).unwrap();
    for seq in 0..=10 {
        assert_eq!(check(&old.try_recv().unwrap()), seq);
    }
    assert_eq!(check(&new.try_recv().unwrap()), 10);
    assert_eq!(new.try_recv().map(|_| ()), Err(Error::Empty));
}

#[test]
fn a_closed_subscriber_stops_gating_and_its_slot_can_be_joined_again() {
    let (r, g) = ring(1024, 1);
    let mut tx = publisher(&r, g);
    let sub = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    while tx.try_send(&msg(0)).is_ok() {}
    drop(sub);
    for seq in 0..100 {
        tx.try_send(&msg(seq)).unwrap();
    }
    let mut again = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    tx.send(&msg(100)).unwrap();
    assert_eq!(check(&again.try_recv().unwrap()), 100);
}

/// A liveness hook that calls subscriber slot 0 dead once `dead` is set.
struct SlotZeroDies(Arc<AtomicBool>);

impl Liveness for SlotZeroDies {
    fn is_alive(&self, e: Endpoint) -> bool {
        !(e == Endpoint::Subscriber(0) && self.0.load(Ordering::Relaxed))
    }
}

#[test]
fn a_dead_lossless_subscriber_is_evicted_and_a_live_one_never() {
    let (r, g) = ring(1024, 2);
    let dead = Arc::new(AtomicBool::new(false));
    let cfg = WaitConfig {
        slice: Duration::from_millis(5),
        ..WaitConfig::default()
    };
    let mut tx = Publisher::attach(&r, g, cfg, Arc::new(SlotZeroDies(dead.clone()))).unwrap();
    let victim = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    let mut live = subscriber(&r, g, 1, Mode::Lossless, Join::Next);
    let mut seq = 0;
    while tx.try_send(&msg(seq)).is_ok() {
        seq += 1;
    }
    // Both gate; the live one drains, the victim does not: still full, for as
    // long as the victim is alive (several liveness looks).
    while let Ok(m) = live.try_recv() {
        check(&m);
    }
    assert_eq!(
        tx.send_timeout(&msg(seq), Duration::from_millis(50)),
        Err(Error::Timeout)
    );
    // It dies (its process would be gone; here the hook says so): the next
    // look evicts it, and the publisher goes on.
    dead.store(true, Ordering::Relaxed);
    victim.detach(); // no close: it "died"
    goes_through(&mut tx, &mut live, seq);
}

#[test]
fn a_hostile_position_does_not_stop_the_publisher() {
    let (r, g) = ring(1024, 2);
    let mut tx = publisher(&r, g);
    let _hostile = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    let mut honest = subscriber(&r, g, 1, Mode::Lossless, Join::Next);
    // Slot 0's `pos` is 16 bytes into its line (after the control block's 512).
    for garbage in [u64::MAX, 3, 1 << 40] {
        assert!(r.store_word(512 + 16, garbage));
        for seq in 0..200 {
            goes_through(&mut tx, &mut honest, seq);
        }
    }
}

#[test]
fn garbage_in_the_ring_is_an_error_for_the_subscriber_never_a_panic() {
    let (r, g) = ring(1024, 1);
    let mut tx = publisher(&r, g);
    let mut sub = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    tx.send(&msg(0)).unwrap();
    let data = broadcast::control_len(1);
    for garbage in [0u64, u64::MAX, 0x4000_0000_0000_03ff, 0x4000_0100] {
        assert!(r.store_word(data, garbage));
        let mut s = subscriber(&r, g, 0, Mode::Lossy, Join::Oldest);
        assert!(
            matches!(s.try_recv().map(|_| ()), Err(Error::Corrupted(_))),
            "{garbage:#x}"
        );
    }
    assert!(matches!(
        sub.try_recv().map(|_| ()),
        Err(Error::Corrupted(_))
    ));
}

#[test]
fn publisher_restart_resumes_after_the_last_published_message() {
    let (r, g) = ring(1024, 1);
    let mut sub = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    let mut tx = publisher(&r, g);
    tx.send(&msg(0)).unwrap();
    tx.detach(); // no close: it "died"
    let mut tx = publisher(&r, g);
    tx.send(&msg(1)).unwrap();
    assert_eq!(check(&sub.try_recv().unwrap()), 0);
    assert_eq!(check(&sub.try_recv().unwrap()), 1);
}

/// Threads: one publisher as fast as it goes, lossless subscribers that must
/// see everything, and lossy ones that must never see a torn message and
/// whose lag counts plus receipts add up to what was published.
#[test]
fn threads_fan_out_and_lossy_readers_never_see_a_torn_message() {
    const N: u64 = 100_000;
    let (r, g) = ring(4096, 4);
    let mut subs: Vec<_> = (0..4)
        .map(|s| {
            let mode = if s < 2 { Mode::Lossless } else { Mode::Lossy };
            (mode, subscriber(&r, g, s, mode, Join::Next))
        })
        .collect();
    let mut tx = publisher(&r, g);
    std::thread::scope(|scope| {
        let handles: Vec<_> = subs
            .drain(..)
            .map(|(mode, mut s)| {
                scope.spawn(move || {
                    let (mut got, mut lagged, mut next) = (0u64, 0u64, 0u64);
                    loop {
                        match s.recv_timeout(Duration::from_secs(60)) {
                            Ok(m) => {
                                let seq = check(&m);
                                assert_eq!(seq, next, "{mode:?}: out of order");
                                next += 1;
                                got += 1;
                            }
                            Err(Error::Lagged(n)) => {
                                assert_eq!(mode, Mode::Lossy);
                                lagged += n;
                                next += n;
                            }
                            Err(Error::Disconnected(_)) => break,
                            Err(e) => panic!("{mode:?}: {e}"),
                        }
                    }
                    (mode, got, lagged)
                })
            })
            .collect();
        for seq in 0..N {
            tx.send(&msg(seq)).unwrap();
        }
        drop(tx);
        for h in handles {
            let (mode, got, lagged) = h.join().unwrap();
            assert_eq!(got + lagged, N, "{mode:?}");
            if mode == Mode::Lossless {
                assert_eq!(lagged, 0);
            }
        }
    });
}

/// Waking the publisher (PROTOCOL.md section 8): with the publisher asleep,
/// gated by two lossless subscribers, only a release that reaches the
/// position it waits for takes its waiting flag and wakes it. The publisher
/// parks at once; `a` releases every message, one at a time, and after each
/// one that woke the publisher the test waits until it sleeps again (still
/// gated by `b`): exactly one of `a`'s releases bumps the publisher's futex
/// word (before, every lossless release woke it). Then `b` releases its
/// messages and the send goes through.
#[test]
fn only_a_release_that_reaches_the_publishers_need_wakes_it() {
    use shmq_ring::WaitStrategy;
    // The wake line: `space_seq` (u32) at 264, `producers_waiting` (u32) at 268.
    const SPACE: usize = 264;
    let (r, g) = ring(1024, 2);
    let mut a = subscriber(&r, g, 0, Mode::Lossless, Join::Next);
    let mut b = subscriber(&r, g, 1, Mode::Lossless, Join::Next);
    let park = WaitConfig {
        strategy: WaitStrategy::Park,
        ..WaitConfig::default()
    };
    let mut tx = Publisher::attach(&r, g, park, Arc::new(InProcess)).unwrap();
    let mut sent = 0;
    while tx.try_send(&msg(sent)).is_ok() {
        sent += 1;
    }
    assert!(sent >= 5, "only {sent} messages fit");
    let space = |r: &Region| {
        let w = r.load_word(SPACE).unwrap();
        (w as u32, (w >> 32) as u32)
    };
    // Waits until the publisher sleeps with its word at `seq`; a generous
    // limit only catches a publisher that never does.
    let asleep_at = |r: &Region, seq: u32| {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while space(r) != (seq, 1) {
            assert!(
                std::time::Instant::now() < until,
                "the publisher did not sleep again: {:?}, waited for word {seq}",
                space(r)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let (mut seq, _) = space(&r);
    let p = std::thread::spawn(move || {
        tx.send_timeout(&msg(sent), Duration::from_secs(60))
            .unwrap();
        tx
    });
    asleep_at(&r, seq);
    let mut wakes = 0;
    for m in 0..sent {
        assert_eq!(check(&a.try_recv().unwrap()), m);
        let (now, _) = space(&r);
        if now != seq {
            wakes += 1;
            seq = now;
            asleep_at(&r, seq);
        }
    }
    assert_eq!(
        wakes, 1,
        "{sent} releases of a subscriber woke the publisher {wakes} times"
    );
    for m in 0..sent {
        assert_eq!(check(&b.try_recv().unwrap()), m);
    }
    let mut tx = p.join().unwrap();
    assert_eq!(check(&b.try_recv().unwrap()), sent);
    assert_eq!(check(&a.try_recv().unwrap()), sent);
    goes_through(&mut tx, &mut a, sent + 1);
}
