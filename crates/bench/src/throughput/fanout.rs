//! The fan-out rows: one producer process hands every message to N consumer
//! processes, each of which checks every message it receives (as every row's
//! receiver does: order, trailer, every byte read).
//!
//! - `shmq-broadcast-N`: one broadcast channel (`shmq::broadcast`), its
//!   publisher in one process and N lossless subscribers in N others: each
//!   message is written once and read N times; the publisher waits for the
//!   slowest subscriber.
//! - `shmq-broadcast-lossy-N`: the same with lossy subscribers: the
//!   publisher never waits for them; one that is lapped is told how many
//!   messages it missed (`Error::Lagged`), checks that the next one it gets is
//!   the first after them, and reports the count (the row's `drops`).
//! - `spsc-fanout-N`: what users did before broadcast: N separate SPSC
//!   channels, one per consumer process, fed in turn by one producer (each
//!   batch of `--batch` messages is stamped once, then sent on channel 0, 1,
//!   ..., N-1): each message is written N times.
//!
//! The rate is the producer's: distinct messages per second (each delivered
//! N times), from the start gun to the moment the last consumer has checked
//! the last message (each consumer reports on a pipe; this process sleeps on
//! it). The producer runs on the "other" CPU of the pair as every row's
//! producers do; the consumers on the remaining CPUs in turn (on a machine of
//! two CPUs, all N share one CPU).

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use shmq::broadcast::Mode;
use shmq::{Options, Receiver, RingKind, Sender};

use super::{
    Checker, Gun, Plan, Result, reap_all, recv_batch, ring_capacity, send_all, send_all_to,
    wait_for_gun,
};
use crate::process::{self, Child};

/// A pipe on which each consumer process writes one record when it reaches a
/// step (attached: one byte; done: the messages it was told it missed, eight
/// bytes, one write, so records never interleave), and this process reads them.
struct Signal {
    read: OwnedFd,
    write: Option<OwnedFd>,
}

impl Signal {
    fn new() -> Result<Signal> {
        let (read, write) = nix::unistd::pipe()?;
        Ok(Signal {
            read,
            write: Some(write),
        })
    }

    /// The end a consumer writes its byte on.
    fn writer(&self) -> Result<OwnedFd> {
        match &self.write {
            Some(w) => Ok(w.try_clone()?),
            None => Err("signal pipe already closed".into()),
        }
    }

    /// Closes this process's write end (once every consumer has its own), so
    /// that a read sees the end of file when all of them are gone.
    fn close_mine(&mut self) {
        self.write = None;
    }

    /// Waits for `n` records of `size` bytes and returns their bytes. Between
    /// looks (every 20 ms) checks `children`: one that failed fails the wait,
    /// instead of leaving it hanging.
    fn wait_for(
        &self,
        (n, size): (usize, usize),
        children: &[Child],
        what: &str,
    ) -> Result<Vec<u8>> {
        let mut got = 0;
        let mut buf = vec![0u8; n * size];
        while got < buf.len() {
            let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(20u8)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                Ok(_) => match nix::unistd::read(&self.read, &mut buf[got..])? {
                    0 => {
                        let done = got / size;
                        return Err(format!("{what}: {done} of {n} consumers got there").into());
                    }
                    k => got += k,
                },
                Err(e) => return Err(e.into()),
            }
            if let Some(e) = children.iter().find_map(Child::failure) {
                return Err(format!("{what}: {e}").into());
            }
        }
        Ok(buf)
    }
}

/// In a consumer process: writes its record in one write.
fn signal(w: &OwnedFd, record: &[u8]) -> Result<()> {
    if nix::unistd::write(w, record)? != record.len() {
        return Err("signal pipe: short write".into());
    }
    Ok(())
}

/// The CPU of consumer `k`: the allowed CPUs other than the producer's, in
/// turn (none when the producer is not pinned).
fn consumer_cpu(producer: Option<usize>, k: usize) -> Option<usize> {
    let p = producer?;
    let others: Vec<usize> = process::allowed_cpus()
        .into_iter()
        .filter(|&c| c != p)
        .collect();
    (!others.is_empty()).then(|| others[k % others.len()])
}

/// In a consumer process: attaches (before the clock starts), says so, checks
/// `count` messages (received, or reported missed by a lossy subscriber's
/// `Lagged`), says so with the number missed.
fn consume<K: RingKind>(
    rx: &mut Receiver<K>,
    (size, cap): (usize, u64),
    count: u64,
    (ready, done): (&OwnedFd, &OwnedFd),
) -> Result<()> {
    match rx.try_recv() {
        Err(shmq::Error::Empty) => {}
        Ok(_) => return Err("a message before the start".into()),
        Err(e) => return Err(e.into()),
    }
    signal(ready, &[1])?;
    let batch = recv_batch(size, cap);
    let mut check = Checker::new(size, 1);
    while check.received + check.skipped < count {
        match rx.recv_batch(batch, |m| check.check(m)) {
            Ok(_) => {}
            Err(shmq::Error::Lagged(missed)) => check.skip(missed),
            Err(e) => return Err(e.into()),
        }
    }
    let skipped = check.skipped;
    check.result()?;
    signal(done, &skipped.to_le_bytes())
}

/// Forks the consumers (`consumer(k, ready, done)` each), waits until all
/// have attached, forks the producer (`producer(trigger)`), fires, and
/// returns the seconds until every consumer has checked every message, and
/// the messages the consumers were told they missed (summed).
fn fan_out(
    n: u16,
    mut consumer: impl FnMut(usize, OwnedFd, OwnedFd) -> Result<Child>,
    producer: impl FnOnce(OwnedFd) -> Result<Child>,
) -> Result<(f64, u64)> {
    let (mut ready, mut done) = (Signal::new()?, Signal::new()?);
    let mut children = Vec::new();
    for k in 0..usize::from(n) {
        children.push(consumer(k, ready.writer()?, done.writer()?)?);
    }
    ready.close_mine();
    done.close_mine();
    ready.wait_for((usize::from(n), 1), &children, "attaching")?;
    let gun = Gun::new()?;
    children.push(producer(gun.trigger()?)?);
    let t0 = Instant::now();
    gun.fire(1)?;
    let missed = done.wait_for((usize::from(n), 8), &children, "receiving")?;
    let secs = t0.elapsed().as_secs_f64();
    reap_all(children)?;
    let missed = missed
        .chunks_exact(8)
        .map(|r| u64::from_le_bytes(r.try_into().expect("eight bytes")))
        .sum();
    Ok((secs, missed))
}

/// `shmq-broadcast-N` and `shmq-broadcast-lossy-N`: `count` messages through
/// one broadcast channel to `subscribers` subscriber processes in `mode`.
pub(super) fn shmq_broadcast(
    plan: &Plan,
    mode: Mode,
    subscribers: u16,
    count: u64,
    cpu: Option<usize>,
) -> Result<(f64, u64)> {
    let cap = ring_capacity(plan.size, plan.capacity);
    let opts = Options::new()
        .capacity(cap)
        .max_subscribers(subscribers)
        .subscribe(mode);
    let (tx, mut rx) = shmq::anonymous::<shmq::Broadcast, shmq::Bytes>(&opts)?;
    let (size, batch) = (plan.size, plan.batch);
    fan_out(
        subscribers,
        |k, ready, done| {
            // The subscriber is pending: each forked copy attaches in its
            // own process, in a slot of its own; this process never does.
            let rx = &mut rx;
            Ok(process::spawn(consumer_cpu(cpu, k), move || {
                consume(rx, (size, cap), count, (&ready, &done))
            })?)
        },
        move |trigger| {
            let mut tx = tx;
            Ok(process::spawn(cpu, move || {
                let _ = tx.try_reserve(size)?; // attach before the clock starts
                wait_for_gun(&trigger)?;
                send_all(&mut tx, (size, batch), 0, count)
            })?)
        },
    )
}

/// `spsc-fanout-N`: `count` messages, each sent on `consumers` SPSC channels
/// in turn, one consumer process per channel.
pub(super) fn spsc_fanout(
    plan: &Plan,
    consumers: u16,
    count: u64,
    cpu: Option<usize>,
) -> Result<(f64, u64)> {
    let cap = ring_capacity(plan.size, plan.capacity);
    let opts = Options::new().capacity(cap);
    let mut txs: Vec<Sender<shmq::Spsc>> = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..consumers {
        let (tx, rx) = shmq::spsc::anonymous(&opts)?;
        txs.push(tx);
        rxs.push(Some(rx));
    }
    let (size, batch) = (plan.size, plan.batch);
    fan_out(
        consumers,
        |k, ready, done| {
            let mut rx = rxs[k].take().ok_or("consumer forked twice")?;
            Ok(process::spawn(consumer_cpu(cpu, k), move || {
                consume(&mut rx, (size, cap), count, (&ready, &done))
            })?)
        },
        move |trigger| {
            let mut txs = txs;
            Ok(process::spawn(cpu, move || {
                for tx in &mut txs {
                    let _ = tx.try_reserve(size)?; // attach before the clock starts
                }
                wait_for_gun(&trigger)?;
                send_all_to(&mut txs, (size, batch), 0, count)
            })?)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_avoid_the_producer_cpu() {
        assert_eq!(consumer_cpu(None, 3), None);
        let cpus = process::allowed_cpus();
        if let [a, b, ..] = cpus[..] {
            assert_ne!(consumer_cpu(Some(b), 0), Some(b));
            assert_eq!(consumer_cpu(Some(b), 0), Some(a));
        }
    }
}
