//! The peers in the throughput harness (feature `peers`), sent to and checked
//! like `shmq-spsc`: the producer stamps each message (sequence number at the
//! front and at the end) and hands over `--batch` at a time where the peer has
//! batches; the receiver checks every stamp and reads every byte.
//!
//! - `ringfire`: an SPMC ring of fixed slots (`[u8; N]`, `N` one of
//!   [`RINGFIRE_SIZES`]) with lossless backpressure (the producer waits for its
//!   one registered reader), as many slots as `--capacity` bytes hold;
//!   `push_batch` / `push`, `recv_batch` / `try_recv`, polling.
//! - `iceoryx2`: a publish-subscribe service of byte slices whose subscriber
//!   buffer holds as many messages as `--capacity` bytes (at most 16384) and
//!   does not overflow (`RetryUntilDelivered`: a full buffer holds the publisher
//!   back); one `loan_slice_uninit` + `send` per message (no batch call),
//!   `receive` polling. Gaps in the sequence numbers would be drops: they are
//!   counted and reported (the row's `drops`) rather than failing the row.

use std::time::Instant;

use super::{Checker, Gun, Plan, Result, reap_all, ring_capacity, send_batch, stamp, wait_for_gun};
use crate::echo::peers::{iox_node, iox_publisher, iox_send, iox_service, ringfire_ring, unique};

use crate::process::{self, Child};

/// Message sizes the ringfire row carries (its slots have a fixed type).
pub(super) const RINGFIRE_SIZES: [usize; 2] = [64, 4096];

/// The sequence number of the iceoryx2 producer's hello (sent before the gun).
const HELLO: u64 = u64::MAX;

/// Polls of a waiting receiver between two looks at whether the producer died.
const DEAD_CHECK: u32 = 1 << 16;

/// Counts an empty poll; an error once the producer is seen dead.
#[inline]
fn idle(polls: &mut u32, producer: &Child) -> Result<()> {
    *polls = polls.wrapping_add(1);
    if polls.is_multiple_of(DEAD_CHECK) && producer.has_exited() {
        return Err("producer gone".into());
    }
    std::hint::spin_loop();
    Ok(())
}

/// The ringfire row: `count` messages of `plan.size` bytes.
pub(super) fn ringfire(plan: &Plan, count: u64, cpu: Option<usize>) -> Result<f64> {
    match plan.size {
        64 => ringfire_n::<64>(plan, count, cpu),
        4096 => ringfire_n::<4096>(plan, count, cpu),
        s => Err(format!("ringfire: fixed slots; sizes {RINGFIRE_SIZES:?} only, not {s}").into()),
    }
}

fn ringfire_n<const N: usize>(plan: &Plan, count: u64, cpu: Option<usize>) -> Result<f64> {
    let slots = (ring_capacity(N, plan.capacity) / N as u64).next_power_of_two();
    let (mut tx, mut rx) = ringfire_ring::<[u8; N]>(slots, true)?;
    let gun = Gun::new()?;
    let trigger = gun.trigger()?;
    let b = send_batch(N, plan.batch);
    let child = process::spawn(cpu, move || {
        wait_for_gun(&trigger)?;
        let mut buf = vec![[0u8; N]; b];
        let mut seq = 0;
        while seq < count {
            let n = (count - seq).min(b as u64) as usize;
            for (k, m) in buf[..n].iter_mut().enumerate() {
                stamp(m, 0, seq + k as u64);
            }
            if n == 1 {
                tx.push(&buf[0]);
            } else {
                tx.push_batch(&buf[..n]);
            }
            seq += n as u64;
        }
        Ok(())
    })?;
    let batch = (slots as usize / 2).clamp(1, 256);
    let mut buf = vec![[0u8; N]; batch];
    let mut check = Checker::new(N, 1);
    let mut polls = 0;
    let t0 = Instant::now();
    gun.fire(1)?;
    while check.received < count {
        let n = rx.recv_batch(&mut buf);
        for m in &buf[..n] {
            check.check(m);
        }
        if n == 0 {
            idle(&mut polls, &child)?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if rx.lapped_count() > 0 {
        return Err(format!("ringfire: reader lapped ({} messages)", rx.lapped_count()).into());
    }
    check.result()?;
    reap_all(vec![child])?;
    Ok(secs)
}

/// The iceoryx2 row: `count` messages of `plan.size` bytes; the seconds and the
/// messages dropped.
pub(super) fn iceoryx2(plan: &Plan, count: u64, cpu: Option<usize>) -> Result<(f64, u64)> {
    let size = plan.size;
    let buffer = (ring_capacity(size, plan.capacity) / size as u64).clamp(8, 16384) as usize;
    let name = unique("iox-stream");
    let node = iox_node()?;
    let service = iox_service(&node, &name, buffer)?;
    let subscriber = service.subscriber_builder().create()?;
    let gun = Gun::new()?;
    let trigger = gun.trigger()?;
    let child = process::spawn(cpu, move || {
        // The child's own node and publisher (no iceoryx2 object crosses the fork).
        let node = iox_node()?;
        let service = iox_service(&node, &name, buffer)?;
        let publisher = iox_publisher(&service, size)?;
        let mut msg = vec![0u8; size];
        // A hello before the gun: the receiver connects to the publisher when it
        // first receives, and a publisher whose buffer fills before that drops
        // (iceoryx2 does not wait for a receiver that is not connected yet).
        stamp(&mut msg, 0, HELLO);
        iox_send(&publisher, &msg)?;
        wait_for_gun(&trigger)?;
        for seq in 0..count {
            stamp(&mut msg, 0, seq);
            iox_send(&publisher, &msg)?;
        }
        Ok(())
    })?;
    // Wait (untimed) for the producer's hello before the gun: then the
    // subscriber is connected.
    let until = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(m) = subscriber.receive()? {
            if super::word(m.payload(), 0) != HELLO {
                return Err("iceoryx2: a message before the hello".into());
            }
            break;
        }
        if child.has_exited() || Instant::now() > until {
            return Err("iceoryx2: no hello from the producer".into());
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    let mut check = Checker::new(size, 1);
    let mut drops = 0u64;
    let mut next = 0u64;
    let mut polls = 0;
    let t0 = Instant::now();
    gun.fire(1)?;
    while next < count {
        match subscriber.receive()? {
            Some(m) => {
                let p = m.payload();
                // A gap is a drop: count it and resynchronise the checker.
                let seq = super::word(p, 0);
                if seq > next && p.len() == size {
                    drops += seq - next;
                    check.next[0] = seq;
                    check.received += seq - next;
                }
                check.check(p);
                next = seq.max(next) + 1;
            }
            None => idle(&mut polls, &child)?,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    check.result()?;
    reap_all(vec![child])?;
    Ok((secs, drops))
}
