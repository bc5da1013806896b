//! The generic facade: code written once over `RingKind` works for both kinds,
//! and every byte form exists for typed channels too.

use std::time::Duration;

use bytemuck::{Pod, Zeroable};
use shmq::{Error, Mpsc, Options, Receiver, RingKind, Sender, Spsc, mpsc, spsc, typed};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
struct Tick {
    seq: u64,
    price: u64,
}

/// One function for any kind: send `n` messages in batches, receive them in
/// batches, and check order and content.
fn round_trip<K: RingKind>(tx: &mut Sender<K>, rx: &mut Receiver<K>, n: u64) {
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
    let (mut sent, mut got) = (0, Vec::new());
    while (got.len() as u64) < n {
        if sent < msgs.len() {
            match tx.try_send_batch(msgs[sent..].iter().map(Vec::as_slice)) {
                Ok(k) => sent += k,
                Err(Error::Full) => {}
                Err(e) => panic!("batch: {e}"),
            }
        }
        rx.try_recv_batch(64, |m| got.push(u64::from_le_bytes(m.try_into().unwrap())))
            .expect("recv batch");
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    assert_eq!(tx.capacity(), rx.capacity());
    assert_eq!(tx.max_message_len(), rx.max_message_len());
}

#[test]
fn one_generic_function_drives_both_kinds() {
    let opts = Options::new().capacity(4096);
    let (mut tx, mut rx) = spsc::anonymous(&opts).expect("spsc");
    round_trip::<Spsc>(&mut tx, &mut rx, 300);
    let (mut tx, mut rx) = mpsc::anonymous(&opts).expect("mpsc");
    round_trip::<Mpsc>(&mut tx, &mut rx, 300);
}

#[test]
fn typed_mpsc_senders_clone_batch_and_report_capacity() {
    let opts = Options::new().capacity(100).max_producers(2);
    let (mut a, mut rx) = mpsc::typed::anonymous::<Tick>(&opts).expect("typed mpsc");
    let mut b = a.try_clone().expect("second slot");
    assert_ne!(a.slot().expect("slot a"), b.slot().expect("slot b"));
    assert!(
        matches!(a.try_clone(), Err(Error::TooManyProducers { max: 2 })),
        "a third sender has no slot"
    );
    assert!(a.capacity() >= 100, "capacity {} < 100", a.capacity());
    assert_eq!(a.capacity(), rx.capacity());
    let ticks: Vec<Tick> = (0..10)
        .map(|seq| Tick {
            seq,
            price: seq * 3,
        })
        .collect();
    assert_eq!(a.try_send_batch(&ticks[..5]).expect("batch a"), 5);
    assert_eq!(b.try_send_batch(&ticks[5..]).expect("batch b"), 5);
    let mut got = Vec::new();
    assert_eq!(rx.try_recv_batch(64, |t| got.push(t)).expect("recv"), 10);
    assert_eq!(got, ticks);
    rx.expect_producers(2).expect("expect");
    assert_eq!(rx.producer_attachments().expect("attachments"), 2);
    assert_eq!(rx.reclaimed().expect("reclaimed"), 0);
}

#[test]
fn typed_channels_are_generic_over_the_kind() {
    fn echo<K: RingKind>(
        (mut tx, mut rx): (typed::Sender<Tick, K>, typed::Receiver<Tick, K>),
    ) -> Tick {
        let mut slot = tx.reserve_timeout(Duration::from_secs(5)).expect("reserve");
        *slot = Tick { seq: 7, price: 11 };
        slot.commit();
        *rx.recv_ref_timeout(Duration::from_secs(5)).expect("recv")
    }
    let opts = Options::new();
    let want = Tick { seq: 7, price: 11 };
    assert_eq!(echo(typed::anonymous::<Tick, Spsc>(&opts).unwrap()), want);
    assert_eq!(echo(typed::anonymous::<Tick, Mpsc>(&opts).unwrap()), want);
}

#[test]
fn a_typed_channel_exports_its_descriptor() {
    let (tx, _rx) = spsc::typed::anonymous::<Tick>(&Options::new()).expect("typed");
    let fd = tx.export_fd().expect("export");
    let mut other =
        spsc::typed::Receiver::<Tick>::from_fd(fd, &Options::new()).expect("open from fd");
    assert!(matches!(other.try_recv(), Err(Error::Empty)));
}

#[test]
fn message_footprint_is_the_frame_a_message_takes() {
    assert_eq!(shmq::message_footprint(0), 8);
    assert_eq!(shmq::message_footprint(1), 16);
    assert_eq!(shmq::message_footprint(64), 72);
    // A ring of 4096 bytes takes (4096 - 8) / 72 frames of 64 bytes before it is full.
    let (mut tx, _rx) = spsc::anonymous(&Options::new().capacity(4096)).expect("spsc");
    let mut n = 0;
    while tx.try_send(&[0; 64]).is_ok() {
        n += 1;
    }
    assert_eq!(n, (4096 - 8) / shmq::message_footprint(64));
}

/// A peer that breaks the protocol writes a frame of the wrong length between
/// two well-formed values: the typed batch hands over both values and reports
/// the malformed frame after the batch, and a later receive goes on.
#[test]
fn a_typed_batch_hands_over_every_value_around_a_malformed_frame() {
    use shmq_ring::frame::{HEADER_LEN, frame_len, spsc_message};
    use shmq_testkit::hostile::{RawRegion, open_raw, ring_off};

    let names = shmq_testkit::Names::new();
    let name = names.name("typed-bad");
    let mut rx = spsc::typed::Receiver::<Tick>::create(&name, &Options::new()).expect("create");
    let seg = open_raw(&name);
    let raw = RawRegion::of(&seg);
    // Three frames written as a producer would (payloads first, then the
    // headers, the first one last): a Tick, 8 bytes, a Tick; then the end marker.
    let ticks = [Tick { seq: 1, price: 10 }, Tick { seq: 3, price: 30 }];
    let lens = [size_of::<Tick>(), 8, size_of::<Tick>()];
    let mut at = ring_off::SPSC_DATA;
    let mut headers = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let payload = match i {
            0 => bytemuck::bytes_of(&ticks[0]).to_vec(),
            2 => bytemuck::bytes_of(&ticks[1]).to_vec(),
            _ => vec![0xee; len],
        };
        raw.write(at + HEADER_LEN, &payload);
        headers.push((at, spsc_message(len)));
        at += frame_len(len);
    }
    raw.word(at).store(0, std::sync::atomic::Ordering::Release);
    let tail = (at - ring_off::SPSC_DATA) as u64;
    raw.word(ring_off::TAIL)
        .store(tail, std::sync::atomic::Ordering::Release);
    for &(off, h) in headers.iter().rev() {
        raw.word(off).store(h, std::sync::atomic::Ordering::Release);
    }
    let mut got = Vec::new();
    match rx.try_recv_batch(16, |t| got.push(t)) {
        Err(Error::Corrupted(c)) => assert_eq!(c.what, "typed message length"),
        other => panic!("expected Corrupted for the 8-byte frame, got {other:?}"),
    }
    assert_eq!(got, ticks, "both well-formed values are handed over");
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    drop((rx, seg));
    // A channel whose producer never attached is not removed when the receiver
    // closes (a producer may still come): the test removes it.
    shmq_segment::Segment::unlink(&name).expect("unlink");
    names.assert_clean();
}

/// `recv_batch` waits for the first message and then takes what is there, for
/// both kinds and typed channels, with and without a linger: a sender thread
/// sends bursts of random length while the receiver takes batches of at most
/// `max`; every message arrives once and in order, and no batch is empty or
/// larger than `max`.
#[test]
fn a_blocking_batch_takes_every_message_once_in_order() {
    fn run<K: RingKind>(linger: Duration) {
        let opts = Options::new().capacity(1024).linger(linger);
        let (mut tx, mut rx) = shmq::anonymous::<K, shmq::Bytes>(&opts).expect("channel");
        const N: u64 = 20_000;
        let sender = std::thread::spawn(move || {
            for seq in 0..N {
                tx.send(&seq.to_le_bytes()).expect("send");
                if seq % 997 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let mut next = 0u64;
        while next < N {
            let n = rx
                .recv_batch(7, |m| {
                    assert_eq!(u64::from_le_bytes(m.try_into().unwrap()), next);
                    next += 1;
                })
                .expect("recv_batch");
            assert!((1..=7).contains(&n), "a batch of {n}");
        }
        sender.join().unwrap();
        // All received and the sender gone: even a batch of none says so.
        assert!(matches!(
            rx.recv_batch(0, |_| panic!("max 0")),
            Err(Error::Disconnected(_))
        ));
    }
    for linger in [Duration::ZERO, Duration::from_micros(50)] {
        run::<Spsc>(linger);
        run::<Mpsc>(linger);
    }
    let opts = Options::new().linger(Duration::from_micros(50));
    let (mut tx, mut rx) = spsc::typed::anonymous::<Tick>(&opts).expect("typed");
    let ticks: Vec<Tick> = (0..5)
        .map(|seq| Tick {
            seq,
            price: 2 * seq,
        })
        .collect();
    assert_eq!(tx.try_send_batch(&ticks).expect("send"), 5);
    let mut got = Vec::new();
    while got.len() < 5 {
        rx.recv_batch(2, |t| got.push(t)).expect("typed recv_batch");
    }
    assert_eq!(got, ticks);
    assert!(matches!(
        rx.recv_batch_timeout(2, Duration::from_millis(10), |_| {}),
        Err(Error::Timeout)
    ));
}

/// The linger's promises, with a linger far longer than any test (only lower
/// bounds and hangs are timed): the first batch does not linger, nor one after
/// a full batch (more may be waiting); after a batch that took everything, the
/// next waits for the linger, but never past its deadline, and stops at an
/// interrupt; a message after a quiet spell as long as the linger is not
/// delayed.
#[test]
fn a_linger_delays_only_a_batch_that_follows_a_drained_one() {
    let hour = Duration::from_secs(3600);
    let (mut tx, mut rx) = spsc::anonymous(&Options::new().linger(hour)).expect("spsc");
    for m in [b"a", b"b", b"c"] {
        tx.send(m).unwrap();
    }
    // The first batch, then one after a full batch: at once (an hour otherwise).
    assert_eq!(rx.recv_batch(2, |_| {}).unwrap(), 2);
    assert_eq!(rx.recv_batch(2, |_| {}).unwrap(), 1);
    // That one drained the ring: the next lingers, here until its deadline.
    tx.send(b"d").unwrap();
    let t = std::time::Instant::now();
    let mut got = Vec::new();
    assert_eq!(
        rx.recv_batch_timeout(8, Duration::from_millis(200), |m| got.push(m.to_vec()))
            .unwrap(),
        1
    );
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(got, [b"d".to_vec()]);
    // Interrupted: the linger ends; a waiting message is still handed over,
    // and with none the call says so.
    rx.interrupter().interrupt();
    tx.send(b"e").unwrap();
    assert_eq!(rx.recv_batch(8, |m| assert_eq!(m, b"e")).unwrap(), 1);
    assert!(matches!(rx.recv_batch(8, |_| {}), Err(Error::Interrupted)));
    rx.interrupter().clear();

    // A quiet spell as long as the linger: the next message is not delayed.
    let linger = Duration::from_millis(1500);
    let (mut tx, mut rx) = spsc::anonymous(&Options::new().linger(linger)).expect("spsc");
    tx.send(b"f").unwrap();
    assert_eq!(rx.recv_batch(8, |_| {}).unwrap(), 1);
    std::thread::sleep(linger);
    tx.send(b"g").unwrap();
    let t = std::time::Instant::now();
    assert_eq!(rx.recv_batch(8, |m| assert_eq!(m, b"g")).unwrap(), 1);
    // Without the quiet spell counted, the call would linger 1.5 s more.
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
}

/// Broadcast subscribers have the blocking batch too: a lossless and a lossy
/// subscriber, both lingering, each take every message of a burst once and in
/// order (the lossy one is never lapped here: the ring holds the burst).
#[test]
fn broadcast_subscribers_take_batches_and_linger() {
    use shmq::broadcast;
    let names = shmq_testkit::Names::new();
    let name = names.name("gen-bcast");
    let mut tx = broadcast::Publisher::create(&name, &Options::new()).expect("publisher");
    let linger = Options::new().linger(Duration::from_micros(50));
    let mut lossless = broadcast::Subscriber::open(&name, &linger).expect("lossless");
    let mut lossy =
        broadcast::Subscriber::open(&name, &linger.clone().subscribe(broadcast::Mode::Lossy))
            .expect("lossy");
    for round in 0..3u64 {
        for i in 0..100u64 {
            tx.send(&(round * 100 + i).to_le_bytes()).expect("send");
        }
        for rx in [&mut lossless, &mut lossy] {
            let mut got = Vec::new();
            while got.len() < 100 {
                rx.recv_batch(32, |m| got.push(u64::from_le_bytes(m.try_into().unwrap())))
                    .expect("recv_batch");
            }
            assert_eq!(got, (round * 100..round * 100 + 100).collect::<Vec<_>>());
        }
    }
    drop((tx, lossless, lossy));
    names.assert_clean();
}
