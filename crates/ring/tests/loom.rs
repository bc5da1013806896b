//! Loom models of the rings and the wake-up protocol (docs/PROTOCOL.md, section
//! 6; docs/RELIABILITY.md, tests MC-01 to MC-06, MC-14 and MC-15).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmq-ring --test loom --release`.
//! The futex is a mutex and condition variable that really block and never time
//! out, so a lost wake-up is a deadlock that loom reports. With
//! `--cfg shmq_negative_control` the wake-up fences are compiled out and the
//! `negative_control_*` models must fail (they are `should_panic`).
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use shmq_ring::{Disconnect, Endpoint, Error, Liveness, Region, WaitConfig, WaitStrategy};
use shmq_ring::{Geometry, mpsc, spsc};
use shmq_ring_model::{fresh, pair};

fn park() -> WaitConfig {
    WaitConfig::from(WaitStrategy::Park)
}

fn spsc_ring(cap: usize, start: u64) -> (spsc::Producer, spsc::Consumer) {
    let (_, tx, rx) = pair(Geometry::spsc(cap as u64).unwrap(), start);
    (tx, rx)
}

/// Sends `n` messages of 16 bytes from a thread into a 64-byte ring whose
/// positions start at `start`; receives them in order (both sides blocking).
fn spsc_fifo(start: u64, n: u8) {
    let (mut tx, mut rx) = spsc_ring(64, start);
    let t = thread::spawn(move || {
        for i in 0..n {
            tx.send(&[i; 16]).unwrap();
        }
    });
    let mut buf = Vec::new();
    for i in 0..n {
        rx.recv_into(&mut buf).unwrap();
        assert_eq!(buf, [i; 16]);
    }
    t.join().unwrap();
}

/// MC-01: FIFO with a forced wrap (padding), blocking on both sides.
#[test]
fn spsc_fifo_with_wrap() {
    loom::model(|| spsc_fifo(0, 3));
}

/// MC-05: the same across the 64-bit position wrap.
#[test]
fn spsc_across_position_wrap() {
    loom::model(|| spsc_fifo(u64::MAX - 31, 2));
}

/// A batch is published by one header store: the consumer never reads one of its
/// frames early (a torn or stale payload) and gets both, in order. Without it the
/// ordering sweep (MC-07) found the batch's `Release` untested.
#[test]
fn spsc_batch_is_published_whole() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_ring(64, 0);
        let t = thread::spawn(move || {
            let msgs: [&[u8]; 2] = [&[1; 8], &[2; 16]];
            match tx.try_send_batch(msgs) {
                Ok(2) => {}
                r => panic!("batch into an empty ring: {r:?}"),
            }
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            let r = rx.try_recv_batch(2, |m| {
                assert!(m.iter().all(|&x| x == m[0]), "torn frame {m:?}");
                got.push((m[0], m.len()));
            });
            match r {
                Ok(0) => thread::yield_now(),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [(1, 8), (2, 16)]);
        t.join().unwrap();
    });
}

/// MC-01b: a consumer's release hands the lines it frees back (it stores back
/// a word of each, see `Data::hand_back`) while the producer is rewriting
/// them. In a 128-byte ring: "a" at 0..48 and "b" at 48..96 (40-byte
/// payloads), "c" at 96..128, then "d" at 128..144, offset 0, which the
/// producer may write as soon as "a" is released, while the consumer releases
/// "b" and with it the whole first line: a store back at the line's start
/// (offset 0, not 48 where "b" starts) can write "a"'s old header over "d"'s.
/// "e" at 144..192 then puts its header, or the end marker before it, at
/// offset 16..: with the store-back made after the `head` store, or at the
/// line's start, put in by hand, this model fails.
#[test]
fn spsc_release_hands_back_lines_the_producer_is_reusing() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_ring(128, 0);
        let msgs: [(u8, usize); 5] = [(1, 40), (2, 40), (3, 24), (4, 8), (5, 40)];
        let t = thread::spawn(move || {
            for (b, len) in msgs {
                tx.send(&vec![b; len]).unwrap();
            }
        });
        let mut buf = Vec::new();
        for (b, len) in msgs {
            rx.recv_into(&mut buf).unwrap();
            assert_eq!(buf, vec![b; len]);
        }
        t.join().unwrap();
    });
}

/// MC-02: a consumer that sleeps on an empty ring is always woken by a send.
#[test]
fn spsc_consumer_wakeup_is_never_lost() {
    loom::model(consumer_wakeup);
}

/// MC-02: a producer that sleeps on a full ring is always woken by a receive.
#[test]
fn spsc_producer_wakeup_is_never_lost() {
    loom::model(producer_wakeup);
}

fn consumer_wakeup() {
    let (mut tx, mut rx) = spsc_ring(64, 0);
    let t = thread::spawn(move || {
        tx.send(b"ping").unwrap();
        tx
    });
    assert_eq!(&*rx.recv().unwrap(), b"ping");
    drop(t.join().unwrap());
}

fn producer_wakeup() {
    let (mut tx, mut rx) = spsc_ring(64, 0);
    // 16-byte payloads: the first frame and its marker take 32 bytes, so a second
    // 16-byte frame (plus padding at the wrap) cannot fit until the first is read.
    tx.send(&[1; 16]).unwrap();
    tx.send(&[2; 16]).unwrap();
    let t = thread::spawn(move || {
        tx.send(&[3; 16]).unwrap();
        tx
    });
    let mut buf = Vec::new();
    for i in 1..=3u8 {
        rx.recv_into(&mut buf).unwrap();
        assert_eq!(buf, [i; 16]);
    }
    drop(t.join().unwrap());
}

/// Negative control for MC-02: without the SeqCst fences a wake-up is lost and
/// loom finds the deadlock.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_consumer_wakeup_without_fences() {
    loom::model(consumer_wakeup);
}

/// Negative control for MC-02, the producer side.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_producer_wakeup_without_fences() {
    loom::model(producer_wakeup);
}

/// MC-04: the producer closing while the consumer sleeps wakes it with
/// `Disconnected`, after everything sent was received.
#[test]
fn spsc_close_while_consumer_parked() {
    loom::model(|| {
        let (mut tx, mut rx) = spsc_ring(64, 0);
        let t = thread::spawn(move || {
            tx.send(b"last").unwrap();
            drop(tx);
        });
        assert_eq!(&*rx.recv().unwrap(), b"last");
        assert_eq!(
            rx.recv().err(),
            Some(Error::Disconnected(Disconnect::Closed))
        );
        t.join().unwrap();
    });
}

/// MC-04: the consumer closing while the producer sleeps on a full ring wakes it
/// with `Disconnected`.
#[test]
fn spsc_close_while_producer_parked() {
    loom::model(|| {
        let (mut tx, rx) = spsc_ring(64, 0);
        tx.send(&[1; 16]).unwrap();
        tx.send(&[2; 16]).unwrap();
        let t = thread::spawn(move || drop(rx));
        assert_eq!(
            tx.send(&[3; 16]).err(),
            Some(Error::Disconnected(Disconnect::Closed))
        );
        t.join().unwrap();
    });
}

/// Receives one message without blocking: the MPSC models check claim/commit
/// ordering, and the futex wake-up (already modelled on SPSC, the same code) would
/// multiply their interleavings for nothing.
fn mpsc_recv(rx: &mut mpsc::Consumer, buf: &mut Vec<u8>) {
    loop {
        match rx.try_recv_into(buf) {
            Ok(()) => return,
            Err(Error::Empty) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Sends one message without blocking (see [`mpsc_recv`]).
fn mpsc_send(tx: &mut mpsc::Producer, msg: &[u8]) {
    loop {
        match tx.try_reserve(msg.len()) {
            Ok(mut g) => {
                g.copy_from_slice(msg);
                g.commit();
                return;
            }
            Err(Error::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

struct Mock(Vec<AtomicBool>);

impl Liveness for Mock {
    fn is_alive(&self, e: Endpoint) -> bool {
        let i = match e {
            Endpoint::Consumer => 0,
            Endpoint::Producer(s) => 1 + usize::from(s),
            Endpoint::Subscriber(_) => return true,
        };
        self.0[i].load(Ordering::SeqCst)
    }
}

fn mpsc_ring(cap: usize, n: u16) -> (Region, Arc<Mock>) {
    (
        fresh(mpsc_geometry(cap, n), 0),
        Arc::new(Mock((0..=n).map(|_| AtomicBool::new(true)).collect())),
    )
}

fn mpsc_geometry(cap: usize, n: u16) -> Geometry<shmq_ring::Mpsc> {
    Geometry::mpsc(cap as u64, n).unwrap()
}

fn mpsc_producer(r: &Region, cap: usize, n: u16, slot: u16, live: &Arc<Mock>) -> mpsc::Producer {
    mpsc::Producer::attach(r, mpsc_geometry(cap, n), slot, park(), live.clone()).unwrap()
}

fn mpsc_consumer(r: &Region, cap: usize, n: u16, live: &Arc<Mock>) -> mpsc::Consumer {
    mpsc::Consumer::attach(r, mpsc_geometry(cap, n), park(), live.clone()).unwrap()
}

/// [`mpsc_ring`] with the consumer attached.
fn mpsc_with_consumer(cap: usize, n: u16) -> (Region, Arc<Mock>, mpsc::Consumer) {
    let (r, live) = mpsc_ring(cap, n);
    let rx = mpsc_consumer(&r, cap, n, &live);
    (r, live, rx)
}

/// Attaches the producers of slots `0..n` in turn, each handed to `body` on a
/// thread of its own.
fn spawn_producers(
    r: &Region,
    cap: usize,
    n: u16,
    live: &Arc<Mock>,
    body: impl Fn(u16, mpsc::Producer) + Clone + Send + 'static,
) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|s| {
            let tx = mpsc_producer(r, cap, n, s, live);
            let body = body.clone();
            thread::spawn(move || body(s, tx))
        })
        .collect()
}

fn join(ts: Vec<thread::JoinHandle<()>>) {
    for t in ts {
        t.join().unwrap();
    }
}

/// Receives `n` messages (see [`mpsc_recv`]), each a frame of one byte repeated
/// (not torn); returns those bytes in the order received.
fn mpsc_recv_untorn(rx: &mut mpsc::Consumer, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..n {
        mpsc_recv(rx, &mut buf);
        assert!(buf.iter().all(|&x| x == buf[0]), "torn frame");
        got.push(buf[0]);
    }
    got
}

/// MC-03: two producers claim and commit in any order; the consumer never reads
/// an uncommitted frame, and gets each message exactly once, in per-producer order.
fn claims_committed_out_of_order(per_producer: u8) {
    loom::model(move || {
        let cap = 128;
        let (r, live, mut rx) = mpsc_with_consumer(cap, 2);
        let ts = spawn_producers(&r, cap, 2, &live, move |s, mut tx| {
            for i in 0..per_producer {
                mpsc_send(&mut tx, &[s as u8 * 16 + i; 8]);
            }
        });
        let mut next = [0u8; 2];
        let mut buf = Vec::new();
        for _ in 0..2 * per_producer {
            mpsc_recv(&mut rx, &mut buf);
            let s = usize::from(buf[0] / 16);
            assert_eq!(
                buf,
                [s as u8 * 16 + next[s]; 8],
                "uncommitted, duplicated or reordered"
            );
            next[s] += 1;
        }
        join(ts);
        assert_eq!(next, [per_producer; 2]);
    });
}

/// MC-03 in its CI form: one message per producer (each commit can still land
/// before or after the other producer's claim and commit).
#[test]
fn mpsc_claims_committed_out_of_order() {
    claims_committed_out_of_order(1);
}

/// MC-03 at the catalogue's size, 2 producers x 2 messages.
#[test]
fn mpsc_claims_committed_out_of_order_2x2() {
    claims_committed_out_of_order(2);
}

/// A batch (one claim, one publication) racing a single send: the consumer never
/// reads a frame of the batch before the batch is published, and gets everything
/// exactly once, in per-producer order.
#[test]
fn mpsc_batch_races_a_single_send() {
    loom::model(|| {
        let cap = 128;
        let (r, live, mut rx) = mpsc_with_consumer(cap, 2);
        let mut a = mpsc_producer(&r, cap, 2, 0, &live);
        let mut b = mpsc_producer(&r, cap, 2, 1, &live);
        let ta = thread::spawn(move || {
            let msgs: [&[u8]; 2] = [&[1; 8], &[2; 8]];
            loop {
                match a.try_send_batch(msgs) {
                    Ok(2) => break,
                    Ok(n) => panic!("sent {n} of 2"),
                    Err(Error::Full) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let tb = thread::spawn(move || mpsc_send(&mut b, &[3; 8]));
        let got = mpsc_recv_untorn(&mut rx, 3);
        let batch: Vec<u8> = got.iter().copied().filter(|&x| x != 3).collect();
        assert_eq!(batch, [1, 2], "batch order");
        assert!(got.contains(&3));
        ta.join().unwrap();
        tb.join().unwrap();
    });
}

/// A producer reuses space while the consumer releases it: the consumer's zeroing
/// of what it read comes before the producer's next frame there, and the producer
/// never writes over a frame not yet read. (Every other MPSC model reuses only
/// space released before its threads start; the ordering sweep, MC-07, found the
/// consumer's `Release` of `head` untested without this one.)
#[test]
fn mpsc_reuses_space_the_consumer_is_releasing() {
    loom::model(|| {
        let cap = 64;
        let (r, live, mut rx) = mpsc_with_consumer(cap, 1);
        let mut tx = mpsc_producer(&r, cap, 1, 0, &live);
        // 16-byte payloads are 24-byte frames: the third needs the first's space.
        let t = thread::spawn(move || {
            for i in 1..=3u8 {
                mpsc_send(&mut tx, &[i; 16]);
            }
        });
        let mut buf = Vec::new();
        for i in 1..=3u8 {
            mpsc_recv(&mut rx, &mut buf);
            assert_eq!(buf, [i; 16]);
        }
        t.join().unwrap();
    });
}

/// The wrap with padding under contention: a small ring where claims wrap.
#[test]
fn mpsc_wrap_with_padding_under_contention() {
    loom::model(|| {
        let cap = 64;
        let (r, live, mut rx) = mpsc_with_consumer(cap, 2);
        // Move the positions to offset 40, so that 16-byte payloads (24-byte frames) wrap.
        {
            let mut p = mpsc_producer(&r, cap, 2, 0, &live);
            for _ in 0..5 {
                mpsc_send(&mut p, &[]);
                mpsc_recv(&mut rx, &mut Vec::new());
            }
            std::mem::forget(p);
        }
        let ts = spawn_producers(&r, cap, 2, &live, |s, mut tx| {
            mpsc_send(&mut tx, &[s as u8 + 1; 16]);
        });
        let mut got = mpsc_recv_untorn(&mut rx, 2);
        got.sort();
        assert_eq!(got, [1, 2]);
        join(ts);
    });
}

/// MC-06: a producer dies holding a claim while another keeps sending; the
/// consumer reclaims the dead claim only after the death is known, delivers the
/// live producer's message, and never a torn or uncommitted one.
#[test]
fn mpsc_reclaim_of_a_dead_claim_races_a_live_producer() {
    loom::model(|| {
        let cap = 128;
        let (r, live, mut rx) = mpsc_with_consumer(cap, 2);
        let mut dying = mpsc_producer(&r, cap, 2, 0, &live);
        let mut alive = mpsc_producer(&r, cap, 2, 1, &live);
        let live2 = live.clone();
        let d = thread::spawn(move || {
            let mut g = dying.reserve(8).unwrap();
            g.copy_from_slice(&[0xdd; 8]);
            std::mem::forget(g);
            std::mem::forget(dying);
            // The kernel releases its liveness marker.
            live2.0[1].store(false, Ordering::SeqCst);
        });
        let a = thread::spawn(move || {
            mpsc_send(&mut alive, &[0xaa; 8]);
            alive
        });
        let mut buf = Vec::new();
        loop {
            match rx.try_recv_into(&mut buf) {
                Ok(()) => break,
                Err(Error::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(buf, [0xaa; 8]);
        d.join().unwrap();
        drop(a.join().unwrap());
    });
}

/// The peer watch (docs/PROTOCOL.md, "Watching peers"; MC-15): a watcher that
/// reads the wake sequence, then looks at the producer's word, then sleeps while
/// the sequence is unchanged never misses the producer's close. With
/// `look_first` the watcher looks before it reads the sequence: a close in
/// between bumps the sequence the watcher then waits on, and it sleeps for
/// ever (the negative control).
fn watch_sees_a_close(look_first: bool) {
    use shmq_ring::inspect::{EndpointState, spsc_ends};
    use shmq_ring::watch::PeerWatch;
    let (region, tx, _rx) = pair(Geometry::spsc(64).unwrap(), 0);
    let t = thread::spawn(move || drop(tx));
    let watch = PeerWatch::spsc(&region, 64).unwrap();
    let closed = || spsc_ends(&region, 64).unwrap().producers[0].state == EndpointState::Closed;
    loop {
        let seq = if look_first {
            if closed() {
                break;
            }
            watch.seq()
        } else {
            let seq = watch.seq();
            if closed() {
                break;
            }
            seq
        };
        watch.park(seq, std::time::Duration::from_secs(3600));
    }
    t.join().unwrap();
}

/// MC-15: a peer watch never misses an attach or close.
#[test]
fn a_peer_watch_never_misses_a_close() {
    loom::model(|| watch_sees_a_close(false));
}

/// Negative control for MC-15: looking before reading the sequence loses the
/// wake-up, and loom finds the deadlock.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_a_peer_watch_that_looks_first() {
    loom::model(|| watch_sees_a_close(true));
}

/// The select protocol across two rings (docs/PROTOCOL.md, section 6, "Select"):
/// a selector that sets both waiting flags, fences once, re-checks both rings and
/// sleeps on both sequences; two producers that each publish and notify. The
/// producers keep their ends open (a close wakes everyone and would hide a lost
/// wake-up). Every message is found: no wake-up is lost.
fn select_two_rings() {
    use shmq_ring::select::{self, Selectable};
    let (mut txa, mut rxa) = spsc_ring(64, 0);
    let (mut txb, mut rxb) = spsc_ring(64, 0);
    let ta = thread::spawn(move || {
        txa.send(b"a").unwrap();
        txa
    });
    let tb = thread::spawn(move || {
        txb.send(b"b").unwrap();
        txb
    });
    let mut got = Vec::new();
    while got.len() < 2 {
        let i = {
            let mut ends: [&mut dyn Selectable; 2] = [&mut rxa, &mut rxb];
            select::ready(&mut ends, None).unwrap()
        };
        let rx = if i == 0 { &mut rxa } else { &mut rxb };
        match rx.try_recv() {
            Ok(m) => got.push(m[0]),
            Err(e) => panic!("select said ready, receive said {e}"),
        }
    }
    got.sort_unstable();
    assert_eq!(got, b"ab");
    drop(ta.join().unwrap());
    drop(tb.join().unwrap());
}

/// MC-14: a select over two rings never loses a wake-up.
#[test]
fn select_wakeup_is_never_lost() {
    loom::model(select_two_rings);
}

/// Negative control for MC-14: without the fence (the selector's, and the
/// producers') a wake-up is lost and loom finds the deadlock.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_select_without_fence() {
    loom::model(select_two_rings);
}

/// The select protocol for room and messages at once: the selector holds the
/// producer of a full ring and the consumer of an empty one; one thread frees
/// room (a receive, which notifies producers) and another sends. The selector
/// sees both without a lost wake-up.
fn select_room_and_message() {
    use shmq_ring::select::{self, Room, Selectable};
    let (mut tx_full, mut rx_full) = spsc_ring(64, 0);
    // Two 16-byte messages (24-byte frames and an end marker: 56 bytes) leave
    // no room for an 8-byte one (16 bytes and its marker) until the first is
    // received.
    tx_full.send(&[1; 16]).unwrap();
    tx_full.send(&[2; 16]).unwrap();
    let (mut tx_msg, mut rx_msg) = spsc_ring(64, 0);
    let drain = thread::spawn(move || {
        let mut buf = Vec::new();
        rx_full.recv_into(&mut buf).unwrap();
        rx_full
    });
    let send = thread::spawn(move || {
        tx_msg.send(b"m").unwrap();
        tx_msg
    });
    let (mut room, mut msg) = (false, false);
    while !(room && msg) {
        let i = {
            let mut r = Room::new(&mut tx_full, 8);
            let mut ends: Vec<&mut dyn Selectable> = Vec::new();
            if !room {
                ends.push(&mut r);
            }
            if !msg {
                ends.push(&mut rx_msg);
            }
            let i = select::ready(&mut ends, None).unwrap();
            if room { i + 1 } else { i }
        };
        if i == 0 {
            match tx_full.try_send(&[3; 8]) {
                Ok(()) => room = true,
                Err(e) => panic!("select said room, send said {e}"),
            }
        } else {
            match rx_msg.try_recv() {
                Ok(m) => {
                    assert_eq!(&*m, b"m");
                    msg = true;
                }
                Err(e) => panic!("select said ready, receive said {e}"),
            }
        }
    }
    drop(drain.join().unwrap());
    drop(send.join().unwrap());
}

/// MC-14: a select over a producer's room and a consumer's messages never
/// loses a wake-up.
#[test]
fn select_room_and_message_wakeups_are_never_lost() {
    loom::model(select_room_and_message);
}

/// Negative control for MC-14's room side: without the fences it deadlocks.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_select_room_without_fence() {
    loom::model(select_room_and_message);
}

/// A doorbell as the model sees it: a count of rings behind a mutex and a
/// condition variable (which loom models, and which never time out), and the
/// count the consumer saw when it last cleared it. Readable means "rung since
/// the last clear", as a FIFO with bytes in it.
struct ModelBell {
    rung: loom::sync::Mutex<(u32, u32)>,
    cv: loom::sync::Condvar,
}

impl ModelBell {
    const ID: u64 = 0x5eed;

    fn new() -> Arc<ModelBell> {
        Arc::new(ModelBell {
            rung: loom::sync::Mutex::new((0, 0)),
            cv: loom::sync::Condvar::new(),
        })
    }

    /// Blocks until the bell was rung since the last clear (an event loop's
    /// wait on the descriptor).
    fn wait_readable(&self) {
        let mut g = self.rung.lock().unwrap();
        while g.0 == g.1 {
            g = self.cv.wait(g).unwrap();
        }
    }
}

impl shmq_ring::Doorbell for ModelBell {
    fn id(&self) -> u64 {
        Self::ID
    }
    fn clear(&self) {
        let mut g = self.rung.lock().unwrap();
        g.1 = g.0;
    }
}

impl shmq_ring::Ringer for ModelBell {
    fn ring(&self, id: u64) {
        assert_eq!(id, Self::ID, "the ringer got the id the consumer armed");
        self.rung.lock().unwrap().0 += 1;
        self.cv.notify_all();
    }
}

/// The doorbell protocol (docs/PROTOCOL.md, section 6, "Doorbell"): a consumer
/// in an event loop receives without waiting; a receive that finds nothing
/// clears the bell, sets its flag to "ring my doorbell", fences and re-checks;
/// then the loop waits on the bell. A producer publishes, fences, and rings
/// only when it clears such a flag. `close`: the producer closes instead of
/// sending (a peer event: it rings too), and the consumer must see
/// `Disconnected`.
fn doorbell_wakeup(close: bool) {
    let (mut tx, mut rx) = spsc_ring(64, 0);
    let bell = ModelBell::new();
    rx.set_doorbell(Some(bell.clone()));
    tx.set_ringer(bell.clone());
    let t = thread::spawn(move || {
        if close {
            drop(tx);
            None
        } else {
            tx.send(b"ding").unwrap();
            Some(tx)
        }
    });
    loop {
        match rx.try_recv() {
            Ok(m) => {
                assert!(!close);
                assert_eq!(&*m, b"ding");
                break;
            }
            Err(Error::Empty) => bell.wait_readable(),
            Err(Error::Disconnected(_)) if close => break,
            Err(e) => panic!("receive said {e}"),
        }
    }
    drop(t.join().unwrap());
}

/// MC-16: a consumer waiting on its doorbell is always rung by a send.
#[test]
fn doorbell_wakeup_is_never_lost() {
    loom::model(|| doorbell_wakeup(false));
}

/// MC-16: a consumer waiting on its doorbell is rung when its producer closes.
#[test]
fn doorbell_rings_on_close() {
    loom::model(|| doorbell_wakeup(true));
}

/// Negative control for MC-16: without the fences (the consumer's after
/// arming, the producer's before it looks at the flag) a ring is lost and loom
/// finds the deadlock.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_doorbell_without_fences() {
    loom::model(|| doorbell_wakeup(false));
}

// ---------------------------------------------------------------------------
// Broadcast (MC-17): fan-out with lossless gating and wake-ups, lossy reads
// that are never torn, and a subscriber joining while the publisher writes.

use shmq_ring::broadcast::{self, Join, Mode};

/// The broadcast models run with one preemption (`LOOM_MAX_PREEMPTIONS=2`
/// takes minutes each with three threads); the lost wake-up and the stale
/// `oldest` they found were found at one.
fn broadcast_model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(1);
    b.check(f);
}

fn broadcast_ring(cap: u64, subs: u16) -> (Region, Geometry<shmq_ring::Broadcast>) {
    let g = Geometry::broadcast(cap, subs).unwrap();
    let r = Region::heap(g.region_len());
    broadcast::init(&r, g, 0).unwrap();
    (r, g)
}

fn subscriber(
    r: &Region,
    g: Geometry<shmq_ring::Broadcast>,
    slot: u16,
    mode: Mode,
) -> broadcast::Subscriber {
    let live = Arc::new(shmq_ring::InProcess);
    broadcast::Subscriber::attach(r, g, slot, mode, Join::Next, park(), live).unwrap()
}

fn publisher(r: &Region, g: Geometry<shmq_ring::Broadcast>) -> broadcast::Publisher {
    broadcast::Publisher::attach(r, g, park(), Arc::new(shmq_ring::InProcess)).unwrap()
}

/// MC-17e: lossless subscribers hand lines back (`Data::hand_back`, before
/// their Release store of `pos`) while the publisher rewrites them. A 128-byte
/// ring: "a" at 0..48, "b" at 48..96, "c" at 96..128, "d" at 128..176 (offset
/// 0, writable once "a" is released, while the release of "b" frees the whole
/// first line: a store-back at the line's start would hit it, as in MC-01b),
/// "e" at 176..224 (offset 48, writable once "b" is released: a store-back
/// made after the `pos` store would hit it). Every subscriber gets every
/// message whole. With the hand-back moved after the `pos` store by hand, the
/// one-subscriber model fails (the four models below did not).
fn broadcast_hand_back(subs: u16) {
    let (r, g) = broadcast_ring(128, subs);
    let mut rxs: Vec<_> = (0..subs)
        .map(|s| subscriber(&r, g, s, Mode::Lossless))
        .collect();
    let mut tx = publisher(&r, g);
    // Two subscribers: without "e" (three threads through five messages take
    // minutes); "d" still rewrites the line both handed back.
    let all: &'static [(u8, usize)] = &[(1, 40), (2, 40), (3, 24), (4, 40), (5, 40)];
    let msgs = &all[..if subs == 1 { 5 } else { 4 }];
    let p = thread::spawn(move || {
        for &(b, len) in msgs {
            tx.send(&vec![b; len]).unwrap();
        }
    });
    let take = move |mut rx: broadcast::Subscriber| {
        for &(b, len) in msgs {
            assert_eq!(*rx.recv().unwrap(), vec![b; len][..]);
        }
    };
    let first = rxs.remove(0);
    let others: Vec<_> = rxs
        .into_iter()
        .map(|rx| thread::spawn(move || take(rx)))
        .collect();
    take(first);
    p.join().unwrap();
    for t in others {
        t.join().unwrap();
    }
}

/// MC-17e, one subscriber: it is alone, and hands back every line it frees.
#[test]
fn broadcast_release_hands_back_lines_the_publisher_is_reusing() {
    loom::model(|| broadcast_hand_back(1));
}

/// MC-17e, two subscribers: a release hands back only what the other has
/// released already, so each line is handed back by the later of the two,
/// while the publisher waits for both and rewrites it.
#[test]
fn broadcast_releases_of_two_subscribers_hand_back_what_both_read() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(1);
    b.max_branches = 10_000;
    b.check(|| broadcast_hand_back(2));
}

/// Whether subscriber `b` of [`broadcast_fan_out`] stays to the end.
#[derive(Clone, Copy)]
enum Leave {
    /// It receives all three messages.
    Stay,
    /// It takes the first and closes, as a dropped subscriber does: the
    /// publisher must look at the slots again, stop gating on it and be woken
    /// if it sleeps.
    Close,
    /// It takes the first and vanishes unannounced (in-process liveness never
    /// says it died): the publisher waits for it forever.
    #[cfg_attr(not(shmq_negative_control), allow(dead_code))]
    Vanish,
}

/// Two lossless subscribers of a 64-byte ring, both blocking, the publisher
/// blocking too: three 16-byte messages (the third wraps, and fits only once
/// every gating subscriber released the first). `a` gets all three, whole, in
/// order, and so does `b` unless it leaves: the gate kept the publisher off
/// unread frames, and no wake-up was lost.
fn broadcast_fan_out(leave: Leave) {
    let (r, g) = broadcast_ring(64, 2);
    let mut a = subscriber(&r, g, 0, Mode::Lossless);
    let mut b = subscriber(&r, g, 1, Mode::Lossless);
    let mut tx = publisher(&r, g);
    let p = thread::spawn(move || {
        for i in 1..=3u8 {
            tx.send(&[i; 16]).unwrap();
        }
    });
    let t = thread::spawn(move || {
        let stays = matches!(leave, Leave::Stay);
        for i in 1..=if stays { 3 } else { 1 } {
            assert_eq!(*b.recv().unwrap(), [i; 16]);
        }
        match leave {
            Leave::Stay => {}
            Leave::Close => b.close(),
            Leave::Vanish => b.detach(),
        }
    });
    for i in 1..=3u8 {
        assert_eq!(*a.recv().unwrap(), [i; 16]);
    }
    p.join().unwrap();
    t.join().unwrap();
}

/// MC-17a.
#[test]
fn broadcast_fan_out_gates_and_wakes() {
    broadcast_model(|| broadcast_fan_out(Leave::Stay));
}

/// Negative control for MC-17a: without the wake-up fences a subscriber or
/// the publisher sleeps through its wake-up.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_broadcast_fan_out_without_fences() {
    broadcast_model(|| broadcast_fan_out(Leave::Stay));
}

/// A lossy subscriber of a 64-byte ring that the publisher laps: every
/// message it returns is whole (each is one byte value repeated), in order,
/// and what it received plus what it was told it missed is what was sent.
fn broadcast_lossy() {
    let (r, g) = broadcast_ring(64, 1);
    let mut rx = subscriber(&r, g, 0, Mode::Lossy);
    let mut tx = publisher(&r, g);
    let p = thread::spawn(move || {
        for i in 1..=4u8 {
            tx.try_send(&[i; 16]).unwrap();
        }
    });
    let (mut next, mut seen) = (1u8, 0u8);
    while seen < 4 {
        match rx.try_recv() {
            Ok(m) => {
                assert!(m.iter().all(|&x| x == m[0]), "torn message {:?}", &*m);
                assert_eq!(m[0], next);
                next += 1;
                seen += 1;
            }
            Err(Error::Lagged(n)) => {
                next += n as u8;
                seen += n as u8;
            }
            Err(Error::Empty) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    p.join().unwrap();
}

/// MC-17b.
#[test]
fn broadcast_lossy_reads_are_never_torn() {
    broadcast_model(broadcast_lossy);
}

/// Negative control for MC-17b: without the seqlock's fences a lossy
/// subscriber returns a message the publisher was overwriting.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_broadcast_lossy_without_seqlock_fences() {
    broadcast_model(broadcast_lossy);
}

/// MC-17c: a lossless subscriber joins while the publisher sends three
/// messages into a 64-byte ring: it receives a run of consecutive whole
/// messages ending with the last (the publisher never overwrote a frame it
/// was gated on), then `Disconnected`.
#[test]
fn broadcast_join_while_publishing() {
    broadcast_model(|| {
        let (r, g) = broadcast_ring(64, 1);
        let mut tx = publisher(&r, g);
        let p = thread::spawn(move || {
            for i in 1..=3u8 {
                tx.send(&[i; 16]).unwrap();
            }
        });
        let mut rx = subscriber(&r, g, 0, Mode::Lossless);
        let mut last = None;
        loop {
            match rx.recv() {
                Ok(m) => {
                    assert!(m.iter().all(|&x| x == m[0]), "torn message");
                    if let Some(l) = last {
                        assert_eq!(m[0], l + 1);
                    }
                    last = Some(m[0]);
                }
                Err(Error::Disconnected(_)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        p.join().unwrap();
        assert!(last.is_none_or(|l| l == 3));
    });
}

/// MC-17d: a lossless subscriber leaving while the publisher is gated on it
/// releases the publisher.
#[test]
fn broadcast_leave_while_publishing() {
    broadcast_model(|| broadcast_fan_out(Leave::Close));
}

/// Negative control for MC-17d: a subscriber that leaves without closing (and
/// is never reported dead) holds the publisher, and loom finds the deadlock.
#[test]
#[cfg(shmq_negative_control)]
#[should_panic]
fn negative_control_broadcast_leave_without_close() {
    broadcast_model(|| broadcast_fan_out(Leave::Vanish));
}
