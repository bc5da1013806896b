//! `shmq-spsc-typed`: a 64-byte `Pod` through a typed SPSC channel
//! (`shmq::spsc::typed`), the like-for-like comparison with rings of fixed
//! 64-byte slots. Sent with `try_send_batch` in batches of `--batch` values
//! (`--batch 1`: `try_send` value by value), received with `recv_batch`;
//! the receiver checks each value's sequence number and trailer and reads all
//! its words, as the byte rows' receivers do. Only at 64 B.

use std::time::Instant;

use shmq::Options;
use shmq::bytemuck::{Pod, Zeroable};

use super::{Gun, Plan, Result, reap_all, ring_capacity, send_batch, wait_for_gun};
use crate::process;

/// The message: sequence number, producer, a body, and the sequence number again.
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq)]
#[bytemuck(crate = "shmq::bytemuck")]
#[repr(C)]
pub(super) struct Line {
    seq: u64,
    producer: u64,
    body: [u64; 5],
    trailer: u64,
}

/// The only size of the typed row.
pub(super) const SIZE: usize = size_of::<Line>();

impl Line {
    fn new(seq: u64) -> Line {
        Line {
            seq,
            producer: 0,
            body: [0x0707_0707_0707_0707; 5],
            trailer: seq,
        }
    }

    /// XOR of the words (the receiver reads them all).
    fn fold(&self) -> u64 {
        self.body
            .iter()
            .fold(self.seq ^ self.producer ^ self.trailer, |a, w| a ^ w)
    }
}

/// The channel's capacity in messages for a ring of about `bytes` bytes.
fn capacity_msgs(bytes: u64) -> u64 {
    let frame = shmq::message_footprint(SIZE) as u64;
    (bytes / frame).max(8).next_power_of_two()
}

/// Streams `count` values from a forked producer on `cpu`; the seconds from the
/// start gun to the last value checked.
pub(super) fn shmq_spsc_typed(plan: &Plan, count: u64, cpu: Option<usize>) -> Result<f64> {
    if plan.size != SIZE {
        return Err(format!("shmq-spsc-typed: {SIZE}-byte messages only").into());
    }
    let cap = capacity_msgs(ring_capacity(SIZE, plan.capacity));
    let opts = Options::new().capacity(cap).linger(plan.linger);
    let (mut tx, mut rx) = shmq::spsc::typed::anonymous::<Line>(&opts)?;
    let gun = Gun::new()?;
    let trigger = gun.trigger()?;
    let b = send_batch(SIZE, plan.batch);
    let child = process::spawn(cpu, move || {
        let _ = tx.try_reserve()?; // attach before the clock starts
        wait_for_gun(&trigger)?;
        let mut buf = vec![Line::new(0); b];
        let mut seq = 0;
        while seq < count {
            let n = (count - seq).min(b as u64) as usize;
            for (k, v) in buf[..n].iter_mut().enumerate() {
                *v = Line::new(seq + k as u64);
            }
            let mut sent = 0;
            while sent < n {
                let r = if n - sent == 1 {
                    tx.try_send(&buf[sent]).map(|()| 1)
                } else {
                    tx.try_send_batch(&buf[sent..n])
                };
                match r {
                    Ok(k) => sent += k,
                    Err(shmq::Error::Full) => {
                        tx.send(&buf[sent])?;
                        sent += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            seq += n as u64;
        }
        Ok(())
    })?;
    let _ = rx.try_recv(); // attach before the clock starts
    let batch = (cap as usize / 2).clamp(1, 256);
    let mut next = 0u64;
    let mut folded = 0u64;
    let mut error: Option<String> = None;
    let mut check = |v: Line| {
        folded ^= v.fold();
        if error.is_none() && (v.seq != next || v.trailer != next || v.producer != 0) {
            error = Some(format!(
                "value {next} out of order or torn: seq {}, trailer {}",
                v.seq, v.trailer
            ));
        }
        next += 1;
    };
    let t0 = Instant::now();
    gun.fire(1)?;
    let mut received = 0;
    while received < count {
        received += rx.recv_batch(batch, &mut check)? as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(folded);
    if let Some(e) = error {
        return Err(e.into());
    }
    reap_all(vec![child])?;
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_64_bytes_and_folds() {
        assert_eq!(SIZE, 64);
        assert_eq!(Line::new(3).trailer, 3);
        assert!(capacity_msgs(1 << 20).is_power_of_two());
    }
}
