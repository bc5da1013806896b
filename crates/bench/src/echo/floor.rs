//! The floors: the least any shared-memory transport can cost.
//!
//! `floor-spin`: each side writes its own `AtomicU64` on its own 128-byte line and
//! spins on the other's, so a round trip is two cache-line transfers and nothing
//! else. `floor-futex`: the same with `AtomicU32` words, where the waiting side
//! sleeps in a shared `FUTEX_WAIT` and the writer calls `FUTEX_WAKE` after every
//! message: two wake-ups per round trip, the least a sleeping transport costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::futex;

use super::{Client, Nudge, Parts, Result, STOP, Server};
use crate::shm::{LINE, SharedMap};

/// Offset of the client's word (written by the client).
const PING: usize = 0;
/// Offset of the server's word (written by the server).
const PONG: usize = LINE;
/// Offset of the "server died" word, written by the watchdog only.
const DEAD: usize = 2 * LINE;
/// Spins between two looks at [`DEAD`].
const DEAD_CHECK: u32 = 1024;

/// How a floor waits: a `pause` per poll, as every spin loop should (it also tells
/// the hypervisor this vCPU is spinning).
#[inline]
fn relax() {
    std::hint::spin_loop();
}

/// Either side of the cache-line floor: both are views of the same shared page.
struct Spin {
    map: Arc<SharedMap>,
}

impl Client for Spin {
    #[inline]
    fn round_trip(&mut self, seq: u64, _msg: &[u8]) -> Result<()> {
        let (ping, pong) = (self.map.u64_at(PING), self.map.u64_at(PONG));
        // Release/Acquire: pair with the server's Acquire load and Release store.
        ping.store(seq, Ordering::Release);
        let mut spins = 0u32;
        loop {
            if pong.load(Ordering::Acquire) == seq {
                return Ok(());
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(DEAD_CHECK)
                && self.map.u64_at(DEAD).load(Ordering::Acquire) != 0
            {
                // One more look: the reply may have come just before the end.
                if pong.load(Ordering::Acquire) == seq {
                    return Ok(());
                }
                return Err("echo server gone".into());
            }
            relax();
        }
    }
}

impl Server for Spin {
    fn serve(&mut self) -> Result<()> {
        let (ping, pong) = (self.map.u64_at(PING), self.map.u64_at(PONG));
        let mut last = 0;
        loop {
            // Acquire/Release: pair with the client's Release store and Acquire load.
            let v = ping.load(Ordering::Acquire);
            if v == last {
                relax();
                continue;
            }
            pong.store(v, Ordering::Release);
            if v == STOP {
                return Ok(());
            }
            last = v;
        }
    }
}

/// Both sides of a floor over one fresh shared page, each made by `side`; the
/// watchdog's nudge runs `dead` on the page.
fn floor_parts<S>(side: fn(Arc<SharedMap>) -> S, dead: fn(&SharedMap)) -> Result<Parts>
where
    S: Client + Server + 'static,
{
    let map = Arc::new(SharedMap::new(4096)?);
    let nudge_map = map.clone();
    let nudge: Nudge = Box::new(move || dead(&nudge_map));
    Ok(Parts {
        client: Box::new(side(map.clone())),
        server: Box::new(side(map)),
        nudge,
    })
}

/// The cache-line floor.
pub(crate) fn spin() -> Result<Parts> {
    floor_parts(
        |map| Spin { map },
        |map| map.u64_at(DEAD).store(1, Ordering::Release),
    )
}

/// 32-bit form of a sequence number for the futex floor (the word is 32 bits).
fn seq32(seq: u64) -> u32 {
    match seq {
        STOP => u32::MAX,
        // 1..=u32::MAX - 2: never 0 (the server's initial `last`) nor a marker.
        s => (s.saturating_sub(1) % u64::from(u32::MAX - 2)) as u32 + 1,
    }
}

fn wake(word: &AtomicU32) {
    // A shared (not private) futex: the waiter is another process.
    let _ = futex::wake(word, futex::Flags::empty(), 1);
}

/// Sleeps while `word` still holds `seen`, for at most `timeout` (EAGAIN, EINTR
/// and ETIMEDOUT just return).
fn wait(word: &AtomicU32, seen: u32, timeout: Option<&rustix::time::Timespec>) {
    let _ = futex::wait(word, futex::Flags::empty(), seen, timeout);
}

/// How long a waiting client sleeps before it looks at [`DEAD`] again (only a
/// wake-up lost to the watchdog's race would make it wait that long).
const DEAD_POLL: rustix::time::Timespec = rustix::time::Timespec {
    tv_sec: 0,
    tv_nsec: 50_000_000,
};

/// Either side of the blocking floor: both are views of the same shared page.
struct Futex {
    map: Arc<SharedMap>,
}

impl Client for Futex {
    #[inline]
    fn round_trip(&mut self, seq: u64, _msg: &[u8]) -> Result<()> {
        let (ping, pong) = (self.map.u32_at(PING), self.map.u32_at(PONG));
        let want = seq32(seq);
        // Release/Acquire: pair with the server's Acquire load and Release store;
        // the futex system calls order nothing by themselves.
        ping.store(want, Ordering::Release);
        wake(ping);
        loop {
            let v = pong.load(Ordering::Acquire);
            if v == want {
                return Ok(());
            }
            if self.map.u32_at(DEAD).load(Ordering::Acquire) != 0 {
                if pong.load(Ordering::Acquire) == want {
                    return Ok(());
                }
                return Err("echo server gone".into());
            }
            wait(pong, v, Some(&DEAD_POLL));
        }
    }
}

impl Server for Futex {
    fn serve(&mut self) -> Result<()> {
        let (ping, pong) = (self.map.u32_at(PING), self.map.u32_at(PONG));
        let mut last = 0;
        loop {
            let v = ping.load(Ordering::Acquire);
            if v == last {
                wait(ping, v, None);
                continue;
            }
            pong.store(v, Ordering::Release);
            wake(pong);
            if v == seq32(STOP) {
                return Ok(());
            }
            last = v;
        }
    }
}

/// The blocking floor.
pub(crate) fn futex() -> Result<Parts> {
    floor_parts(
        |map| Futex { map },
        |map| {
            map.u32_at(DEAD).store(1, Ordering::Release);
            wake(map.u32_at(PONG));
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_words_never_collide_with_markers() {
        assert_eq!(seq32(1), 1);
        assert_ne!(seq32(u64::from(u32::MAX)), seq32(STOP));
        assert_ne!(seq32(u64::from(u32::MAX) - 1), seq32(STOP));
        assert_ne!(seq32(u64::from(u32::MAX) - 1), 0);
    }
}
