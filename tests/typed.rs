//! Typed channels in one process: every send and receive form, and opening a
//! typed channel with another type.

use std::time::Duration;

use shmq::bytemuck::{Pod, Zeroable};
use shmq::{Error, Options, mpsc, spsc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: u32,
    qty: u32,
}

// SAFETY: `Tick` is `repr(C)`, made of integers only, with no padding (8 + 4 + 4).
unsafe impl Zeroable for Tick {}
// SAFETY: as above; every bit pattern is a valid `Tick`.
unsafe impl Pod for Tick {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Other {
    a: u64,
    b: u64,
}

// SAFETY: `repr(C)`, two `u64`s, no padding.
unsafe impl Zeroable for Other {}
// SAFETY: as above.
unsafe impl Pod for Other {}

fn tick(i: u64) -> Tick {
    Tick {
        seq: i,
        price: (i * 7) as u32,
        qty: (i * 3) as u32,
    }
}

#[test]
fn every_form_round_trips() {
    let (mut tx, mut rx) = spsc::typed::anonymous::<Tick>(&Options::new().capacity(16)).unwrap();
    tx.send(&tick(0)).unwrap();
    tx.try_send(&tick(1)).unwrap();
    tx.send_timeout(&tick(2), Duration::from_secs(1)).unwrap();
    {
        let mut slot = tx.reserve().unwrap();
        *slot = tick(3);
        slot.commit();
    }
    {
        let mut slot = tx.try_reserve().unwrap();
        slot.seq = 4;
        slot.price = 28;
        slot.qty = 12;
        slot.commit();
    }
    {
        let mut slot = tx.reserve_timeout(Duration::from_secs(1)).unwrap();
        *slot = tick(5);
        // dropped uncommitted: nothing is sent
    }
    assert_eq!(rx.recv().unwrap(), tick(0));
    assert_eq!(rx.try_recv().unwrap(), tick(1));
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), tick(2));
    assert_eq!(*rx.recv_ref().unwrap(), tick(3));
    assert_eq!(*rx.try_recv_ref().unwrap(), tick(4));
    assert!(matches!(
        rx.recv_ref_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    // Capacity is in messages: at least 16 fit.
    for i in 0..16 {
        tx.try_send(&tick(i)).unwrap();
    }
    for i in 0..16 {
        assert_eq!(rx.recv().unwrap(), tick(i));
    }
}

#[test]
fn mpsc_typed_from_two_senders() {
    let (tx, mut rx) = mpsc::typed::anonymous::<Tick>(&Options::new().max_producers(4)).unwrap();
    let mut a = tx;
    a.send(&tick(1)).unwrap();
    a.send(&tick(2)).unwrap();
    assert_eq!(rx.recv().unwrap(), tick(1));
    assert_eq!(rx.recv_ref().unwrap().seq, 2);
}

#[test]
fn opening_with_another_type_is_a_layout_mismatch() {
    let name = shmq::unique_name("t-typed").unwrap();
    let mut rx = spsc::typed::Receiver::<Tick>::create(&name, &Options::new()).unwrap();
    match spsc::typed::Sender::<Other>::open(&name, &Options::new()) {
        Err(e @ Error::WrongMessageType { .. }) => {
            // Both sides in words: this handle's type by name and layout.
            let text = e.to_string();
            assert!(text.contains("Other"), "{text}");
            assert!(text.contains("bytes, align"), "{text}");
        }
        other => panic!("expected a wrong message type, got {other:?}"),
    }
    // A byte channel is another kind altogether.
    match spsc::Sender::open(&name, &Options::new()) {
        Err(e @ Error::WrongKind { .. }) => {
            assert_eq!(
                e.to_string(),
                "the channel is spsc/typed, not spsc/bytes as this handle expects"
            );
        }
        other => panic!("expected a kind mismatch, got {other:?}"),
    }
    let mut tx = spsc::typed::Sender::<Tick>::open(&name, &Options::new()).unwrap();
    tx.send(&tick(9)).unwrap();
    assert_eq!(rx.recv().unwrap(), tick(9));
    drop((tx, rx));
    // Both ends closed with nothing waiting: the name is gone.
    assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists());
}
