//! FZ-06: a broadcast ring whose shared words and data area are arbitrary, as
//! a hostile publisher or subscriber could leave them, drained by a lossless
//! and a lossy subscriber through the real receive paths, and written to by a
//! publisher attached over it. Every message returned is within the maximum,
//! every error typed (`Corrupted`, `Lagged`, `Empty`, `Disconnected` once the
//! publisher closed, attach refusals); a call
//! that does not return is a libFuzzer timeout.
//!
//! Input: byte 0 capacity (64 << (b % 6) bytes), byte 1 subscriber slots
//! (1 + b % 4), bytes 2..34 the publisher line (tail, count, intent, oldest),
//! bytes 34..42 slot 0's position, the rest the data area.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shmq_ring::broadcast::{self, Join, Mode, Publisher, Subscriber};
use shmq_ring::{Error, Geometry, InProcess, Region, WaitConfig, frame, inspect};

fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupted(_) | Error::Lagged(_) | Error::Empty | Error::Full | Error::Disconnected(_)
    )
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 42 {
        return;
    }
    let cap = 64u64 << (data[0] % 6);
    let subs = 1 + u16::from(data[1] % 4);
    let g = Geometry::broadcast(cap, subs).unwrap();
    let region = Region::heap(g.region_len());
    broadcast::init(&region, g, 0).unwrap();
    let word = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap());
    for (i, off) in [0usize, 8, 16, 24].iter().enumerate() {
        assert!(region.store_word(*off, word(2 + 8 * i)));
    }
    let base = broadcast::control_len(subs);
    for (i, chunk) in data[42..].chunks(8).take(cap as usize / 8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        assert!(region.store_word(base + 8 * i, u64::from_le_bytes(w)));
    }
    let _ = inspect::broadcast(&region, cap, subs);
    let live = Arc::new(InProcess);
    let cfg = WaitConfig::default();
    let max = frame::max_payload(cap as usize);
    let mut buf = Vec::new();
    let mut drain = |rx: &mut Subscriber| {
        for _ in 0..(cap / 4 + 16) {
            match rx.try_recv_into(&mut buf) {
                Ok(()) => assert!(buf.len() <= max, "{} > {max}", buf.len()),
                Err(Error::Empty) => break,
                Err(e) => {
                    assert!(typed(&e), "{e:?}");
                    if matches!(e, Error::Corrupted(_) | Error::Disconnected(_)) {
                        break;
                    }
                }
            }
        }
    };
    let lossless = Subscriber::attach(&region, g, 0, Mode::Lossless, Join::Oldest, cfg, live.clone());
    if let Ok(mut rx) = lossless {
        // The slot's position as a hostile subscriber would leave it.
        assert!(region.store_word(512 + 16, word(34)));
        drain(&mut rx);
    }
    if let Ok(mut rx) = Subscriber::attach(&region, g, subs - 1, Mode::Lossy, Join::Oldest, cfg, live.clone()) {
        drain(&mut rx);
        if let Ok(mut tx) = Publisher::attach(&region, g, cfg, live.clone()) {
            for i in 0..8u8 {
                match tx.try_send(&vec![i; 24.min(max)]) {
                    Ok(()) => {}
                    Err(e) => assert!(typed(&e), "{e:?}"),
                }
            }
        }
        drain(&mut rx);
    }
});
