//! Test bodies that are the same for both ring kinds, for the kinds' test files
//! (`crates/ring/tests/{spsc,mpsc}.rs`) to run each on its own ring.

use shmq_ring::frame::{self, max_payload};
use shmq_ring::{Consumer, Error, Kind, Producer, Region};

/// Every payload size, starting at every 8-byte offset of a `cap`-byte area, for
/// two laps: the wrap (and its padding frame, including the empty one that ends
/// exactly at the end of the area) happens at every offset. Each message must
/// arrive intact and the ring be empty after; `after` then checks the region.
///
/// `make(start)` gives a ring whose positions start at `start`, both ends
/// attached; `msg(seq, len)` the message number `seq`.
///
/// # Panics
/// On a failed check.
pub fn every_size_at_every_offset<K: Kind>(
    cap: usize,
    make: impl Fn(u64) -> (Region, Producer<K>, Consumer<K>),
    msg: impl Fn(u64, usize) -> Vec<u8>,
    after: impl Fn(&Region),
) {
    let mut buf = Vec::new();
    for len in 0..=max_payload(cap) {
        for start in (0..cap as u64).step_by(8) {
            let (region, mut tx, mut rx) = make(start);
            let laps = 2 * cap / frame::frame_len(len) + 1;
            for seq in 0..laps as u64 {
                let m = msg(seq, len);
                tx.try_send(&m).unwrap();
                rx.try_recv_into(&mut buf).unwrap();
                assert_eq!(buf, m, "len {len} start {start} seq {seq}");
            }
            assert!(matches!(rx.try_recv(), Err(Error::Empty)));
            after(&region);
        }
    }
}
