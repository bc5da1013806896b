//! `floor-stream`: the physical ceiling of a one-way stream through shared
//! memory, measured in the same run as every throughput row (as `floor-spin` is
//! for latency).
//!
//! No protocol at all: a ring of fixed-size records in a shared mapping (the
//! same bytes as the shmq channels' ring, `--capacity`), the producer writing
//! each record in place and the consumer reading it in place. A record's first
//! word is its stamp (sequence number + 1, so that the zero-filled ring holds no
//! valid stamp); the producer writes the rest of the record (its last word is the
//! stamp again), then stores the first word with `Release`. The consumer spins
//! until the first word of its next slot equals the stamp it expects
//! (`Acquire`), reads every word of the record (an XOR, as the other rows'
//! receivers do), and checks the trailer; a first word that is neither the
//! expected stamp nor the previous lap's is an error.
//!
//! After reading a record the consumer stores back one word of each of its
//! cache lines (the same value), as shmq's SPSC consumer does with what it
//! releases: a line written here last is taken by the producer's next write
//! faster than one both caches share (see `hand_back`).
//!
//! The consumer waits for each record's stamp, whatever `--batch` says (the
//! producer writes record by record either way): waiting for the last stamp of
//! a batch of records, then reading them, was the slower floor (37 against 73
//! M records/s of 64 bytes on 2026-12-05). It is the ceiling of a stream that
//! publishes every record; a transport that publishes a batch with one store
//! (shmq's `try_send_batch`) can pass it.
//!
//! The producer must not lap the consumer: the consumer publishes how many
//! records it has finished with every eighth of the ring (one `Release` store to
//! a line of its own), and the producer, when it reaches the end of the room it
//! last saw, spins until there is more (`Acquire`). That is the least flow
//! control a bounded ring can have, and it costs one cache-line transfer per
//! eighth of a ring.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Gun, Plan, Result, reap_all, ring_capacity, wait_for_gun};
use crate::process::{self, Child};
use crate::shm::SharedMap;

/// Offset of the consumer's published position (records finished with).
const POS: usize = 0;
/// Offset of the first record: a page of its own for the position, so that
/// records of a page or more start on a page (a hardware prefetcher stops at page
/// boundaries) and smaller ones on a line.
const AREA: usize = 4096;
/// Spins of a waiting consumer between two looks at whether the producer died.
const DEAD_CHECK: u32 = 1 << 16;

/// The ring's shape for records of `size` bytes in `capacity` bytes: slots and
/// how often (in records) the consumer publishes its position.
fn shape(size: usize, capacity: u64) -> (usize, u64) {
    let area = ring_capacity(size, capacity) as usize;
    let slots = (area / size).max(8);
    (slots, (slots as u64 / 8).max(1))
}

/// Streams `count` records of `plan.size` bytes from a forked producer on `cpu`
/// to this process and returns the seconds from the start gun to the last record
/// checked.
pub(super) fn floor_stream(plan: &Plan, count: u64, cpu: Option<usize>) -> Result<f64> {
    let size = plan.size;
    if !size.is_multiple_of(8) || size < 16 {
        return Err(
            format!("floor-stream: {size}-byte records (a multiple of 8 is needed)").into(),
        );
    }
    let (slots, every) = shape(size, plan.capacity);
    let map = Arc::new(SharedMap::new(AREA + slots * size)?);
    let gun = Gun::new()?;
    let trigger = gun.trigger()?;
    let theirs = map.clone();
    let child = process::spawn(cpu, move || {
        wait_for_gun(&trigger)?;
        produce(&theirs, size, slots, count);
        Ok(())
    })?;
    let t0 = Instant::now();
    gun.fire(1)?;
    let folded = consume(&map, (size, slots, every), count, &child)?;
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(folded);
    reap_all(vec![child])?;
    Ok(secs)
}

/// The producer: `count` records, each written in place then stamped.
fn produce(map: &SharedMap, size: usize, slots: usize, count: u64) {
    let mut rec = vec![0u8; size];
    for (i, b) in rec.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let pos = map.u64_at(POS);
    let mut limit = slots as u64;
    let mut idx = 0;
    for seq in 0..count {
        while seq >= limit {
            // Acquire: pairs with the consumer's Release after it read the
            // records it reports, so their slots may be written again.
            limit = pos.load(Ordering::Acquire) + slots as u64;
            std::hint::spin_loop();
        }
        let stamp = seq + 1;
        let off = AREA + idx * size;
        rec[size - 8..].copy_from_slice(&stamp.to_le_bytes());
        map.write(off + 8, &rec[8..]);
        // Release: the record's bytes before its stamp.
        map.u64_at(off).store(stamp, Ordering::Release);
        idx += 1;
        if idx == slots {
            idx = 0;
        }
    }
}

/// The consumer: waits for each record's stamp, reads and checks the record,
/// publishes its position every `every` records; returns the XOR of every word
/// read.
fn consume(
    map: &SharedMap,
    (size, slots, every): (usize, usize, u64),
    count: u64,
    producer: &Child,
) -> Result<u64> {
    let pos = map.u64_at(POS);
    let mut folded = 0u64;
    let mut idx = 0;
    let mut until_publish = every;
    let mut trailer = [0u8; 8];
    for seq in 0..count {
        let stamp = seq + 1;
        let off = AREA + idx * size;
        // The Acquire load of the stamp in `wait_for` pairs with the
        // producer's Release store of it: the record's bytes are visible.
        wait_for(map, (size, slots), seq, producer)?;
        folded ^= map.fold_words(off + 8, size - 8);
        map.read(off + size - 8, &mut trailer);
        if u64::from_le_bytes(trailer) != stamp {
            return Err(format!(
                "floor-stream: record {seq} torn: trailer {}, stamp {stamp}",
                u64::from_le_bytes(trailer)
            )
            .into());
        }
        hand_back(map, off, size);
        idx += 1;
        if idx == slots {
            idx = 0;
        }
        until_publish -= 1;
        if until_publish == 0 {
            // Release: every read of the records reported happened before.
            pos.store(seq + 1, Ordering::Release);
            until_publish = every;
        }
    }
    Ok(folded)
}

/// Stores back one word of each cache line of the record at `off` (a word of
/// the record's own: the lines it shares with its neighbours may be the
/// producer's), so that the producer's next write to the line finds it written
/// here last rather than shared by both caches. On the machine this was measured
/// on that made the stream several times faster (the README's throughput
/// section); shmq's SPSC consumer does the same when it releases frames.
fn hand_back(map: &SharedMap, off: usize, size: usize) {
    const CACHE_LINE: usize = 64;
    let mut at = off;
    while at < off + size {
        let word = map.u64_at(at);
        // Relaxed, both: the record is ours until the position published after
        // it (Release), and the word keeps its value.
        word.store(word.load(Ordering::Relaxed), Ordering::Relaxed);
        at = (at | (CACHE_LINE - 1)) + 1;
    }
}

/// Spins until record `seq` is stamped; an error if its slot holds anything but
/// its stamp or the previous lap's, or if the producer died.
fn wait_for(
    map: &SharedMap,
    (size, slots): (usize, usize),
    seq: u64,
    producer: &Child,
) -> Result<()> {
    let stamp = seq + 1;
    let before = stamp.saturating_sub(slots as u64);
    let word = map.u64_at(AREA + (seq % slots as u64) as usize * size);
    let mut spins = 0u32;
    loop {
        // Acquire: pairs with the producer's Release of the stamp (and so of
        // every record stamped before it).
        let w = word.load(Ordering::Acquire);
        if w == stamp {
            return Ok(());
        }
        if w != before {
            return Err(format!(
                "floor-stream: record {seq}: stamp {w}, expected {stamp} (or {before} before it)"
            )
            .into());
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(DEAD_CHECK)
            && producer.has_exited()
            && word.load(Ordering::Acquire) != stamp
        {
            return Err("floor-stream: producer gone".into());
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_shape() {
        assert_eq!(shape(64, 1 << 20), (16384, 2048));
        let (slots, every) = shape(65536, 1 << 16);
        assert!(slots >= 8 && every >= 1);
        assert_eq!(
            shape(24, 1 << 10).1,
            (shape(24, 1 << 10).0 as u64 / 8).max(1)
        );
    }

    #[test]
    fn odd_sizes_are_refused() {
        let plan = Plan {
            size: 28,
            messages: 10,
            capacity: 1 << 16,
            pin: false,
            batch: 1,
            linger: std::time::Duration::ZERO,
            file_dir: std::env::temp_dir(),
        };
        assert!(floor_stream(&plan, 10, None).is_err());
    }
}
