//! A forked echo server and the client that times round trips to it, over any of
//! the compared [`Transport`]s.
//!
//! Every transport is driven the same way: the parent writes a message whose
//! first 8 bytes are a sequence number (the rest is a fixed pattern), the child
//! sends the same bytes back, and the parent checks the echo byte for byte before
//! the round trip counts. The floors carry only the sequence word, whatever the
//! message size: they are the cost of the signal alone.
//!
//! ```no_run
//! use shmq_bench::echo::{Echo, Transport};
//! let mut echo = Echo::spawn(Transport::ShmqSpin, 64, true)?;
//! for _ in 0..1000 {
//!     echo.round_trip()?;
//! }
//! echo.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod eventfd;
mod evloop;
mod floor;
mod kernel;
#[cfg(feature = "peers")]
pub(crate) mod peers;
mod rawsync;
mod shmq_pair;

use std::fmt;
use std::thread::JoinHandle;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub(crate) use shmq_pair::capacity_for;

use crate::cli::Rows;
use crate::process::{self, Pinned};

/// Result of the harness's fallible steps.
pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Sequence number of the last message: the server echoes it and exits.
pub(crate) const STOP: u64 = u64::MAX;

/// Smallest message: the sequence number.
pub const MIN_SIZE: usize = 8;
/// Largest message the latency harness accepts.
pub const MAX_SIZE: usize = 1 << 20;

/// A way to carry a message to another process and back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Bare `AtomicU64` ping-pong in a shared page: the cache-line floor.
    FloorSpin,
    /// Bare shared-futex ping-pong (`FUTEX_WAIT`/`FUTEX_WAKE` every message): the
    /// blocking floor.
    FloorFutex,
    /// Two shmq SPSC channels, [`shmq::WaitStrategy::Spin`].
    ShmqSpin,
    /// Two shmq SPSC channels, the default `SpinThenPark`.
    ShmqAdaptive,
    /// Two shmq SPSC channels, [`shmq::WaitStrategy::Park`].
    ShmqPark,
    /// Two pipes.
    Pipe,
    /// A UNIX stream socket pair.
    UdsStream,
    /// A UNIX datagram socket pair.
    UdsDgram,
    /// TCP over 127.0.0.1 with `TCP_NODELAY`.
    Tcp,
    /// Two eventfds signalling, payload in shared memory.
    Eventfd,
    /// A queue in shared memory guarded by `raw_sync`'s mutex, signalled by its
    /// event (a process-shared pthread mutex and condition variable).
    Rawsync,
    /// Two shmq SPSC channels under tokio on both sides, each receiver waiting
    /// on its doorbell in tokio's reactor (`AsyncFd`): one kernel hop a wake.
    ShmqAsync,
    /// As [`Transport::ShmqAsync`], each side polling (`yield_now` between
    /// receives) instead of waiting.
    ShmqAsyncBusy,
    /// A UNIX stream socket pair under tokio on both sides.
    TokioUds,
    /// Two pipes under tokio on both sides.
    TokioPipe,
    /// A server waiting with one `shmq::Select` over 64 channels, one active;
    /// every side parks.
    ShmqSelect,
    /// Two shmq broadcast channels of one lossless subscriber each, the
    /// default `SpinThenPark`: what a subscriber's round trip costs beside
    /// [`Transport::ShmqAdaptive`].
    ShmqBroadcast,
    /// As [`Transport::ShmqBroadcast`], with three more lossless subscribers
    /// of the ping channel draining it in processes of their own: the round
    /// trip of one subscriber among four.
    ShmqBroadcast4,
    /// Two `ringfire` SPMC rings of fixed slots, both sides polling (feature
    /// `peers`).
    #[cfg(feature = "peers")]
    Ringfire,
    /// Two `iceoryx2` publish-subscribe services, both sides polling (feature
    /// `peers`).
    #[cfg(feature = "peers")]
    Iceoryx2,
}

impl Transport {
    /// Every transport, in table order.
    pub const ALL: [Transport; 18] = [
        Transport::FloorSpin,
        Transport::FloorFutex,
        Transport::ShmqSpin,
        Transport::ShmqAdaptive,
        Transport::ShmqPark,
        Transport::Pipe,
        Transport::UdsStream,
        Transport::UdsDgram,
        Transport::Tcp,
        Transport::Eventfd,
        Transport::Rawsync,
        Transport::ShmqAsync,
        Transport::ShmqAsyncBusy,
        Transport::TokioUds,
        Transport::TokioPipe,
        Transport::ShmqSelect,
        Transport::ShmqBroadcast,
        Transport::ShmqBroadcast4,
    ];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Transport::FloorSpin => "floor-spin",
            Transport::FloorFutex => "floor-futex",
            Transport::ShmqSpin => "shmq-spin",
            Transport::ShmqAdaptive => "shmq-adaptive",
            Transport::ShmqPark => "shmq-park",
            Transport::Pipe => "pipe",
            Transport::UdsStream => "uds-stream",
            Transport::UdsDgram => "uds-dgram",
            Transport::Tcp => "tcp",
            Transport::Eventfd => "eventfd",
            Transport::Rawsync => "rawsync",
            Transport::ShmqAsync => "shmq-async",
            Transport::ShmqAsyncBusy => "shmq-async-busy",
            Transport::TokioUds => "tokio-uds",
            Transport::TokioPipe => "tokio-pipe",
            Transport::ShmqSelect => "shmq-select64",
            Transport::ShmqBroadcast => "shmq-broadcast",
            Transport::ShmqBroadcast4 => "shmq-broadcast4",
            #[cfg(feature = "peers")]
            Transport::Ringfire => "ringfire",
            #[cfg(feature = "peers")]
            Transport::Iceoryx2 => "iceoryx2",
        }
    }

    /// Whether both sides wait by spinning only (pointless, and very slow, when the
    /// two processes must share one CPU).
    pub fn spins_only(self) -> bool {
        match self {
            Transport::FloorSpin | Transport::ShmqSpin | Transport::ShmqAsyncBusy => true,
            #[cfg(feature = "peers")]
            Transport::Ringfire | Transport::Iceoryx2 => true,
            _ => false,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Rows for Transport {
    const DEFAULT: &'static [Transport] = &Transport::ALL;
    const PEERS: &'static [Transport] = &[
        #[cfg(feature = "peers")]
        Transport::Ringfire,
        #[cfg(feature = "peers")]
        Transport::Iceoryx2,
    ];
}

/// The parent's side of a transport.
pub(crate) trait Client {
    /// Sends `msg` (whose first 8 bytes are `seq`, little-endian), waits for the
    /// echo, and checks it equals `msg` (the floors: that the word equals `seq`).
    fn round_trip(&mut self, seq: u64, msg: &[u8]) -> Result<()>;
}

/// The child's side: echoes every message until it has echoed [`STOP`].
pub(crate) trait Server {
    /// Runs the echo loop.
    fn serve(&mut self) -> Result<()>;
}

/// Wakes a client that waits for a server that died (run by the watchdog thread).
pub(crate) type Nudge = Box<dyn FnOnce() + Send>;

/// Both sides of a transport, made before `fork`.
pub(crate) struct Parts {
    pub(crate) client: Box<dyn Client>,
    pub(crate) server: Box<dyn Server>,
    pub(crate) nudge: Nudge,
}

/// A no-op [`Nudge`]: the transport itself reports a dead peer (EOF, shmq's
/// liveness checks).
pub(crate) fn no_nudge() -> Nudge {
    Box::new(|| {})
}

/// Whether `msg` is the stop message.
pub(crate) fn is_stop(msg: &[u8]) -> bool {
    msg.get(..8) == Some(&STOP.to_le_bytes()[..])
}

/// Checks that the echo `got` is the message `sent`; if not, the error says
/// `echo mismatch: {what}`.
#[inline]
pub(crate) fn check_echo(got: &[u8], sent: &[u8], what: &str) -> Result<()> {
    if got != sent {
        return Err(format!("echo mismatch: {what}").into());
    }
    Ok(())
}

fn make(t: Transport, size: usize) -> Result<Parts> {
    match t {
        Transport::FloorSpin => floor::spin(),
        Transport::FloorFutex => floor::futex(),
        Transport::ShmqSpin => shmq_pair::parts(shmq::WaitStrategy::Spin, size),
        Transport::ShmqAdaptive => shmq_pair::parts(shmq::WaitStrategy::default(), size),
        Transport::ShmqPark => shmq_pair::parts(shmq::WaitStrategy::Park, size),
        Transport::Pipe => kernel::pipe(size),
        Transport::UdsStream => kernel::uds_stream(size),
        Transport::UdsDgram => kernel::uds_dgram(size),
        Transport::Tcp => kernel::tcp(size),
        Transport::Eventfd => eventfd::parts(size),
        Transport::Rawsync => rawsync::parts(size),
        Transport::ShmqAsync => evloop::shmq_async(evloop::AsyncWait::Doorbell, size),
        Transport::ShmqAsyncBusy => evloop::shmq_async(evloop::AsyncWait::Busy, size),
        Transport::TokioUds => evloop::tokio_uds(size),
        Transport::TokioPipe => evloop::tokio_pipe(size),
        Transport::ShmqSelect => evloop::select(size),
        Transport::ShmqBroadcast => shmq_pair::broadcast(size),
        Transport::ShmqBroadcast4 => shmq_pair::broadcast4(size),
        #[cfg(feature = "peers")]
        Transport::Ringfire => peers::ringfire(size),
        #[cfg(feature = "peers")]
        Transport::Iceoryx2 => peers::iceoryx2(size),
    }
}

/// A running echo server in a forked child and the client that talks to it.
///
/// The parent is pinned to one CPU and the child to another while it lives (when
/// there are two); dropping it without [`Echo::finish`] kills the child.
pub struct Echo {
    transport: Transport,
    client: Box<dyn Client>,
    msg: Vec<u8>,
    seq: u64,
    pid: Option<Pid>,
    watchdog: Option<JoinHandle<std::result::Result<(), String>>>,
    pinned: bool,
    _pin: Pinned,
}

impl fmt::Debug for Echo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Echo")
            .field("transport", &self.transport)
            .field("size", &self.msg.len())
            .field("seq", &self.seq)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

impl Echo {
    /// Sets up `transport` for messages of `size` bytes and forks the echo server.
    /// With `pin` and at least two usable CPUs, this process is pinned to the first
    /// and the server to the second until the `Echo` is finished or dropped.
    ///
    /// Call it from a process with no other thread that could hold a lock the
    /// child needs (the child only touches what this thread set up).
    ///
    /// # Errors
    /// `size` outside [`MIN_SIZE`]..=[`MAX_SIZE`], or any failure to create the
    /// transport or fork.
    pub fn spawn(transport: Transport, size: usize, pin: bool) -> Result<Echo> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
            return Err(format!("message size {size} outside {MIN_SIZE}..={MAX_SIZE}").into());
        }
        let cpus = if pin { process::cpu_pair() } else { None };
        let Parts {
            client,
            mut server,
            nudge,
        } = make(transport, size)?;
        let pin_guard = Pinned::to(cpus.map(|c| c.0));
        let child = process::spawn(cpus.map(|c| c.1), move || server.serve())?;
        let pid = child.into_pid();
        let watchdog = pid.map(|pid| {
            std::thread::spawn(move || {
                let status = process::reap(pid);
                nudge();
                status
            })
        });
        let mut msg = vec![0u8; size];
        for (i, b) in msg.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        Ok(Echo {
            transport,
            client,
            msg,
            seq: 0,
            pid,
            watchdog,
            pinned: cpus.is_some(),
            _pin: pin_guard,
        })
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the two processes are pinned to two different CPUs.
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// The echo server's process id, while it runs (for diagnostics, and for
    /// tests that kill it to check that the client notices).
    pub fn server_pid(&self) -> Option<i32> {
        self.pid.map(Pid::as_raw)
    }

    /// One round trip: sends the next message, waits for the echo and checks it.
    ///
    /// # Errors
    /// The transport failed, the echo differed, or the server died.
    #[inline]
    pub fn round_trip(&mut self) -> Result<()> {
        self.seq += 1;
        self.send_seq(self.seq)
    }

    fn send_seq(&mut self, seq: u64) -> Result<()> {
        self.msg[..8].copy_from_slice(&seq.to_le_bytes());
        match self.client.round_trip(seq, &self.msg) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.explain(e)),
        }
    }

    /// Adds the server's fate to an error, if it has ended.
    fn explain(&mut self, e: Box<dyn std::error::Error>) -> Box<dyn std::error::Error> {
        if self.watchdog.as_ref().is_some_and(|w| w.is_finished()) {
            let status = self.join();
            return format!("{}: {e} (echo server: {status:?})", self.transport).into();
        }
        format!("{}: {e}", self.transport).into()
    }

    fn join(&mut self) -> std::result::Result<(), String> {
        self.pid = None;
        match self.watchdog.take() {
            Some(w) => w.join().unwrap_or_else(|_| Err("watchdog panicked".into())),
            None => Ok(()),
        }
    }

    /// Sends the stop message, waits for the server to exit, and unpins.
    ///
    /// # Errors
    /// The last round trip failed or the server did not exit cleanly.
    pub fn finish(mut self) -> Result<()> {
        self.send_seq(STOP)?;
        self.join()
            .map_err(|e| format!("{}: echo server: {e}", self.transport).into())
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            if !self.watchdog.as_ref().is_some_and(|w| w.is_finished()) {
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Transport::ALL {
            assert_eq!(Transport::named(t.name()).unwrap(), t);
            assert_eq!(t.to_string(), t.name());
        }
        let e = Transport::named("carrier-pigeon").unwrap_err();
        assert!(e.to_string().contains("floor-spin"));
    }

    #[test]
    fn stop_is_recognised() {
        let mut m = vec![0u8; 16];
        assert!(!is_stop(&m));
        m[..8].copy_from_slice(&STOP.to_le_bytes());
        assert!(is_stop(&m));
        assert!(!is_stop(&m[..4]));
    }
}
