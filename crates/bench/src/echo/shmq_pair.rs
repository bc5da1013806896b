//! shmq: two anonymous SPSC channels (ping and pong) across `fork`, used as a
//! user would: the message is written in place (`reserve`/`commit`) and read in
//! place (the `recv` guard), and each side waits with the channel's own strategy.

use shmq::{Options, WaitStrategy, spsc};

use super::{Client, Parts, Result, Server, check_echo, is_stop, no_nudge};

struct ShmqClient {
    ping: spsc::Sender,
    pong: spsc::Receiver,
}

struct ShmqServer {
    ping: spsc::Receiver,
    pong: spsc::Sender,
}

impl Client for ShmqClient {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        let mut out = self.ping.reserve(msg.len())?;
        out.copy_from_slice(msg);
        out.commit();
        let back = self.pong.recv()?;
        check_echo(&back, msg, "shmq reply differs")
    }
}

impl Server for ShmqServer {
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

pub(crate) fn parts(wait: WaitStrategy, size: usize) -> Result<Parts> {
    let opts = Options::new()
        .capacity(capacity_for(size, 1 << 16))
        .wait(wait);
    let (ping_tx, ping_rx) = spsc::anonymous(&opts)?;
    let (pong_tx, pong_rx) = spsc::anonymous(&opts)?;
    Ok(Parts {
        client: Box::new(ShmqClient {
            ping: ping_tx,
            pong: pong_rx,
        }),
        server: Box::new(ShmqServer {
            ping: ping_rx,
            pong: pong_tx,
        }),
        nudge: no_nudge(),
    })
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
