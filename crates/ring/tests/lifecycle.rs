//! Sessions and queues at the ring level ([`Lifecycle`]), for both kinds: what
//! an absent peer means to each call.

use std::sync::Arc;
use std::time::Duration;

use shmq_ring::{
    Disconnect, Error, Geometry, InProcess, Lifecycle, Mpsc, Producer, Region, Spsc, WaitConfig,
    WaitStrategy,
};
use shmq_ring_model::{Ring, fresh};

fn cfg(lifecycle: Lifecycle) -> WaitConfig {
    WaitConfig {
        strategy: WaitStrategy::Park,
        slice: Duration::from_millis(5),
        lifecycle,
        linger: Duration::ZERO,
    }
}

/// A fresh ring whose ends wait under `lifecycle` (returned with the region and
/// that configuration): a producer attached in slot 0, and a consumer that
/// attached and closed.
fn consumer_closed<K: Ring>(
    g: Geometry<K>,
    lifecycle: Lifecycle,
) -> (Region, WaitConfig, Producer<K>) {
    let region = fresh(g, 0);
    let c = cfg(lifecycle);
    let tx = K::producer(&region, g, 0, c, Arc::new(InProcess)).unwrap();
    let rx = K::consumer(&region, g, c, Arc::new(InProcess)).unwrap();
    drop(rx);
    (region, c, tx)
}

/// In a queue, a producer whose consumer closed sends on until the ring is
/// full (`Full`, never `Disconnected`), and the next consumer gets it all; a
/// consumer whose producer closed finds `Empty` (a bounded wait: `Timeout`)
/// until `expect_producers` says one producer makes it done.
fn queue<K: Ring>(g: Geometry<K>) {
    let (region, c, mut tx) = consumer_closed(g, Lifecycle::Queue);
    let mut sent = 0u8;
    loop {
        match tx.try_send(&[sent; 24]) {
            Ok(()) => sent += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("{}: {e:?} with the consumer closed", K::NAME),
        }
    }
    assert!(sent > 1);
    drop(tx);
    let mut rx = K::consumer(&region, g, c, Arc::new(InProcess)).unwrap();
    let mut buf = Vec::new();
    for i in 0..sent {
        rx.try_recv_into(&mut buf).unwrap();
        assert_eq!(buf, [i; 24]);
    }
    assert!(matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)));
    assert!(matches!(
        rx.recv_into_timeout(&mut buf, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    rx.expect_producers(1);
    assert!(matches!(
        rx.recv_into_timeout(&mut buf, Duration::from_millis(20)),
        Err(Error::Disconnected(Disconnect::Closed))
    ));
}

/// In a session, both learn at once, and for good: a consumer that attaches
/// later does not revive a producer that was told, nor a producer that
/// attaches later a consumer that was told.
fn session<K: Ring>(g: Geometry<K>) {
    let (region, c, mut tx) = consumer_closed(g, Lifecycle::Session);
    let closed = |r: Result<(), Error>| matches!(r, Err(Error::Disconnected(Disconnect::Closed)));
    assert!(closed(tx.try_send(b"x")));
    let mut rx = K::consumer(&region, g, c, Arc::new(InProcess)).unwrap();
    assert!(closed(tx.try_send(b"x")), "{}: final", K::NAME);
    assert!(closed(tx.send_timeout(b"x", Duration::from_millis(20))));
    drop(tx);
    let mut buf = Vec::new();
    assert!(closed(
        rx.recv_into_timeout(&mut buf, Duration::from_secs(5))
    ));
    let mut tx = K::producer(&region, g, 1, c, Arc::new(InProcess)).unwrap();
    tx.try_send(b"late").unwrap();
    assert!(closed(rx.try_recv_into(&mut buf)), "{}: final", K::NAME);
}

#[test]
fn a_queue_outlives_its_ends() {
    queue(Geometry::<Spsc>::spsc(1024).unwrap());
    queue(Geometry::<Mpsc>::mpsc(1024, 2).unwrap());
}

#[test]
fn a_session_ends_with_its_peer() {
    session(Geometry::<Spsc>::spsc(1024).unwrap());
    session(Geometry::<Mpsc>::mpsc(1024, 2).unwrap());
}
