//! shmq: two anonymous channels (ping and pong) across `fork`, SPSC or
//! broadcast with one subscriber each, used as a user would: the message is
//! written in place (`reserve`/`commit`) and read in place (the `recv`
//! guard), and each side waits with the channel's own strategy.

use shmq::broadcast::Join;
use shmq::{Options, Receiver, RingKind, Sender, WaitStrategy};

use super::{Client, Parts, Result, Server, check_echo, is_stop, no_nudge};
use crate::process;

struct ShmqClient<K: RingKind> {
    ping: Sender<K>,
    pong: Receiver<K>,
}

struct ShmqServer<K: RingKind> {
    ping: Receiver<K>,
    pong: Sender<K>,
}

impl<K: RingKind> Client for ShmqClient<K> {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        let mut out = self.ping.reserve(msg.len())?;
        out.copy_from_slice(msg);
        out.commit();
        let back = self.pong.recv()?;
        check_echo(&back, msg, "shmq reply differs")
    }
}

impl<K: RingKind> Server for ShmqServer<K> {
    fn serve(&mut self) -> Result<()> {
        loop {
            let m = self.ping.recv()?;
            let mut out = self.pong.reserve(m.len())?;
            out.copy_from_slice(&m);
            out.commit();
            if is_stop(&m) {
                return Ok(());
            }
        }
    }
}

/// A ring that holds at least a few messages of `size` bytes (a message may take
/// at most half the ring, less a frame header).
pub(crate) fn capacity_for(size: usize, at_least: u64) -> u64 {
    let want = (4 * (size as u64 + 16)).next_power_of_two();
    want.max(at_least)
}

/// Two SPSC channels, each side waiting with `wait`.
pub(crate) fn parts(wait: WaitStrategy, size: usize) -> Result<Parts> {
    let opts = Options::new()
        .capacity(capacity_for(size, 1 << 16))
        .wait(wait);
    pair::<shmq::Spsc>(&opts)
}

/// Two broadcast channels of one lossless subscriber each, the default wait.
/// Each subscriber attaches on its first receive, possibly after its
/// publisher sent the first message: it joins at the oldest message, which
/// nothing has overwritten yet (one message at a time is in flight).
pub(crate) fn broadcast(size: usize) -> Result<Parts> {
    pair::<shmq::Broadcast>(&broadcast_options(size, 1))
}

/// Two broadcast channels as [`broadcast`], the ping channel with four
/// lossless subscribers: the server's and three drainers, processes the
/// server forks before its first receive (so that each attaches a slot of its
/// own), which receive every message with the default wait and check that
/// its sequence number follows the last. The publisher is gated on all four.
pub(crate) fn broadcast4(size: usize) -> Result<Parts> {
    let (client, server) = ends::<shmq::Broadcast>(&broadcast_options(size, 4))?;
    Ok(Parts {
        client: Box::new(client),
        server: Box::new(FanServer {
            inner: server,
            drainers: 3,
        }),
        nudge: no_nudge(),
    })
}

/// The broadcast rows' options: `subscribers` slots, joining at the oldest.
fn broadcast_options(size: usize, subscribers: u16) -> Options {
    Options::new()
        .capacity(capacity_for(size, 1 << 16))
        .max_subscribers(subscribers)
        .join(Join::Oldest)
}

/// A broadcast server beside `drainers` more subscribers of its ping channel.
struct FanServer {
    inner: ShmqServer<shmq::Broadcast>,
    drainers: usize,
}

impl Server for FanServer {
    fn serve(&mut self) -> Result<()> {
        let mut children = Vec::with_capacity(self.drainers);
        for _ in 0..self.drainers {
            let rx = &mut self.inner.ping;
            children.push(process::spawn(None, move || drain(rx))?);
        }
        self.inner.serve()?;
        for c in children {
            c.wait()?;
        }
        Ok(())
    }
}

/// In a drainer process: receives until the stop message, checking that each
/// sequence number follows the one before.
fn drain(rx: &mut Receiver<shmq::Broadcast>) -> Result<()> {
    let mut last: Option<u64> = None;
    loop {
        let m = rx.recv()?;
        if is_stop(&m) {
            return Ok(());
        }
        let seq = u64::from_le_bytes(m[..8].try_into()?);
        if last.is_some_and(|l| seq != l.wrapping_add(1)) {
            return Err(format!("drainer: message {seq} after {last:?}").into());
        }
        last = Some(seq);
    }
}

fn pair<K: RingKind>(opts: &Options) -> Result<Parts> {
    let (client, server) = ends::<K>(opts)?;
    Ok(Parts {
        client: Box::new(client),
        server: Box::new(server),
        nudge: no_nudge(),
    })
}

/// Two channels of kind `K` with `opts`: the client's ends and the server's.
fn ends<K: RingKind>(opts: &Options) -> Result<(ShmqClient<K>, ShmqServer<K>)> {
    let (ping_tx, ping_rx) = shmq::anonymous::<K, shmq::Bytes>(opts)?;
    let (pong_tx, pong_rx) = shmq::anonymous::<K, shmq::Bytes>(opts)?;
    Ok((
        ShmqClient {
            ping: ping_tx,
            pong: pong_rx,
        },
        ShmqServer {
            ping: ping_rx,
            pong: pong_tx,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_fits_the_message() {
        for size in [8, 64, 4096, 65536, 1 << 20] {
            let cap = capacity_for(size, 1 << 16);
            assert!(cap.is_power_of_two());
            assert!(size as u64 <= cap / 2 - 16, "{size} in {cap}");
        }
        assert_eq!(capacity_for(8, 1 << 16), 1 << 16);
    }
}
