//! Round trips from event loops: tokio (a current-thread runtime in each
//! process, made after `fork`) over shmq receivers' doorbells registered with
//! tokio's reactor (`AsyncFd`), tokio's UNIX stream socket and pipes; and a
//! [`shmq::Select`] over 64 channels of which one carries the traffic.
//!
//! Each client round trip enters its runtime once (`block_on`), for every
//! tokio row alike.

use std::os::fd::OwnedFd;

use shmq::{Doorbell, Error, Options, Select, WaitStrategy, spsc};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::runtime::{Builder, Runtime};

use super::{Client, Parts, Result, Server, check_echo, is_stop, no_nudge};

fn runtime() -> Result<Runtime> {
    Ok(Builder::new_current_thread().enable_io().build()?)
}

/// How an async shmq side waits for its next message.
#[derive(Clone, Copy)]
pub(crate) enum AsyncWait {
    /// On the receiver's doorbell, registered with tokio's reactor: the task
    /// sleeps in `epoll_wait` and the sender's `write` wakes it.
    Doorbell,
    /// By polling: a receive, then `yield_now` to the runtime, again.
    Busy,
}

/// A receiver and, for [`AsyncWait::Doorbell`], its doorbell in the reactor
/// (made in the process that waits, inside its runtime).
struct AsyncRx {
    rx: spsc::Receiver,
    bell: Option<AsyncFd<Doorbell>>,
    wait: AsyncWait,
}

impl AsyncRx {
    /// Registers the doorbell (call inside the runtime). The harness's one
    /// `unsafe`: tokio's registration asks its caller to vouch for the
    /// descriptor.
    #[allow(unsafe_code)]
    fn register(&mut self) -> Result<()> {
        if let (AsyncWait::Doorbell, None) = (self.wait, &self.bell) {
            let bell = self.rx.doorbell()?;
            // SAFETY: a `Doorbell` owns (a share of) its descriptor, which stays
            // open and the same for as long as the handle lives (its docs).
            let fd = unsafe { AsyncFd::register_with_interest(bell, Interest::READABLE) };
            self.bell = Some(fd.map_err(|e| e.into_parts().1)?);
        }
        Ok(())
    }

    /// Waits for the next message and hands it to `f`, in place.
    async fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
        loop {
            match self.rx.try_recv() {
                Ok(m) => return f(&m),
                Err(Error::Empty) => match &self.bell {
                    Some(bell) => bell.readable().await?.clear_ready(),
                    None => tokio::task::yield_now().await,
                },
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Writes `msg` in place (the ring has room: one message is in flight).
fn send(tx: &mut spsc::Sender, msg: &[u8]) -> Result<()> {
    let mut out = tx.try_reserve(msg.len())?;
    out.copy_from_slice(msg);
    out.commit();
    Ok(())
}

struct AsyncClient {
    ping: spsc::Sender,
    pong: AsyncRx,
    rt: Option<Runtime>,
}

struct AsyncServer {
    ping: AsyncRx,
    pong: spsc::Sender,
}

impl Client for AsyncClient {
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        if self.rt.is_none() {
            self.rt = Some(runtime()?);
        }
        let Some(rt) = &self.rt else { unreachable!() };
        let (ping, pong) = (&mut self.ping, &mut self.pong);
        rt.block_on(async {
            pong.register()?;
            send(ping, msg)?;
            pong.recv(|back| check_echo(back, msg, "shmq async reply differs"))
                .await
        })
    }
}

impl Server for AsyncServer {
    fn serve(&mut self) -> Result<()> {
        let (ping, pong) = (&mut self.ping, &mut self.pong);
        runtime()?.block_on(async {
            ping.register()?;
            loop {
                let stop = ping.recv(|m| send(pong, m).map(|()| is_stop(m))).await?;
                if stop {
                    return Ok(());
                }
            }
        })
    }
}

/// Two shmq SPSC channels driven by tokio on both sides.
pub(crate) fn shmq_async(wait: AsyncWait, size: usize) -> Result<Parts> {
    let opts = Options::new()
        .capacity(super::capacity_for(size, 1 << 16))
        .wait(WaitStrategy::Park);
    let (ping_tx, ping_rx) = spsc::anonymous(&opts)?;
    let (pong_tx, pong_rx) = spsc::anonymous(&opts)?;
    let rx = |rx| AsyncRx {
        rx,
        bell: None,
        wait,
    };
    Ok(Parts {
        client: Box::new(AsyncClient {
            ping: ping_tx,
            pong: rx(pong_rx),
            rt: None,
        }),
        server: Box::new(AsyncServer {
            ping: rx(ping_rx),
            pong: pong_tx,
        }),
        nudge: no_nudge(),
    })
}

/// A byte stream as tokio sees it, made from a descriptor inside a runtime.
trait Stream: Sized {
    type Read: tokio::io::AsyncRead + Unpin;
    type Write: tokio::io::AsyncWrite + Unpin;
    fn open(self) -> Result<(Self::Read, Self::Write)>;
}

/// A connected UNIX stream socket.
struct Uds(std::os::unix::net::UnixStream);

impl Stream for Uds {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    fn open(self) -> Result<(Self::Read, Self::Write)> {
        self.0.set_nonblocking(true)?;
        Ok(tokio::net::UnixStream::from_std(self.0)?.into_split())
    }
}

/// Two pipes: the read end of one, the write end of the other.
struct Pipes(OwnedFd, OwnedFd);

impl Stream for Pipes {
    type Read = tokio::net::unix::pipe::Receiver;
    type Write = tokio::net::unix::pipe::Sender;
    fn open(self) -> Result<(Self::Read, Self::Write)> {
        Ok((
            tokio::net::unix::pipe::Receiver::from_owned_fd(self.0)?,
            tokio::net::unix::pipe::Sender::from_owned_fd(self.1)?,
        ))
    }
}

/// One side of a tokio stream: the descriptors until the runtime exists.
enum Side<S: Stream> {
    Raw(Option<S>),
    Open(S::Read, S::Write, Runtime),
}

impl<S: Stream> Side<S> {
    fn open(&mut self) -> Result<(&mut S::Read, &mut S::Write, &Runtime)> {
        if let Side::Raw(s) = self {
            let s = s.take().ok_or("stream already failed to open")?;
            let rt = runtime()?;
            let (r, w) = {
                let _in = rt.enter();
                s.open()?
            };
            *self = Side::Open(r, w, rt);
        }
        match self {
            Side::Open(r, w, rt) => Ok((r, w, rt)),
            Side::Raw(_) => unreachable!(),
        }
    }
}

struct StreamClient<S: Stream> {
    side: Side<S>,
    buf: Vec<u8>,
}

struct StreamServer<S: Stream> {
    side: Side<S>,
    buf: Vec<u8>,
}

impl<S: Stream> Client for StreamClient<S> {
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        let buf = &mut self.buf;
        let (r, w, rt) = self.side.open()?;
        rt.block_on(async {
            w.write_all(msg).await?;
            r.read_exact(buf).await?;
            Ok::<(), Box<dyn std::error::Error>>(())
        })?;
        check_echo(buf, msg, "tokio stream reply differs")
    }
}

impl<S: Stream> Server for StreamServer<S> {
    fn serve(&mut self) -> Result<()> {
        let buf = &mut self.buf;
        let (r, w, rt) = self.side.open()?;
        rt.block_on(async {
            loop {
                r.read_exact(buf).await?;
                w.write_all(buf).await?;
                if is_stop(buf) {
                    return Ok(());
                }
            }
        })
    }
}

fn stream_parts<S: Stream + 'static>(size: usize, client: S, server: S) -> Parts {
    Parts {
        client: Box::new(StreamClient {
            side: Side::Raw(Some(client)),
            buf: vec![0; size],
        }),
        server: Box::new(StreamServer {
            side: Side::Raw(Some(server)),
            buf: vec![0; size],
        }),
        nudge: no_nudge(),
    }
}

/// A UNIX stream socket pair, both ends driven by tokio.
pub(crate) fn tokio_uds(size: usize) -> Result<Parts> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    Ok(stream_parts(size, Uds(a), Uds(b)))
}

/// Two pipes (ping and pong), both ends driven by tokio.
pub(crate) fn tokio_pipe(size: usize) -> Result<Parts> {
    let (ping_r, ping_w) = nix::unistd::pipe()?;
    let (pong_r, pong_w) = nix::unistd::pipe()?;
    Ok(stream_parts(
        size,
        Pipes(pong_r, ping_w),
        Pipes(ping_r, pong_w),
    ))
}

/// Channels a select row's server waits on.
pub(crate) const SELECT_CHANNELS: usize = 64;
/// The one that carries the pings.
const ACTIVE: usize = 37;

struct SelectClient {
    ping: spsc::Sender,
    pong: spsc::Receiver,
    /// The other channels' senders, never used (kept so that the server's
    /// receivers stay channels with a sender to come).
    _idle: Vec<spsc::Sender>,
}

struct SelectServer {
    pings: Vec<spsc::Receiver>,
    pong: spsc::Sender,
}

impl Client for SelectClient {
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        send(&mut self.ping, msg)?;
        let back = self.pong.recv()?;
        check_echo(&back, msg, "select reply differs")
    }
}

impl Server for SelectServer {
    fn serve(&mut self) -> Result<()> {
        loop {
            let i = {
                let mut sel = Select::new();
                for rx in &mut self.pings {
                    sel.recv(rx);
                }
                sel.ready()?
            };
            let m = match self.pings[i].try_recv() {
                Ok(m) => m,
                Err(Error::Empty) => continue,
                Err(e) => return Err(e.into()),
            };
            send(&mut self.pong, &m)?;
            if is_stop(&m) {
                return Ok(());
            }
        }
    }
}

/// A server that waits with one [`Select`] over [`SELECT_CHANNELS`] channels,
/// one of which carries the pings; every side parks (`WaitStrategy::Park`).
pub(crate) fn select(size: usize) -> Result<Parts> {
    let opts = Options::new()
        .capacity(super::capacity_for(size, 1 << 16))
        .wait(WaitStrategy::Park);
    let (mut ping, mut idle, mut pings) = (None, Vec::new(), Vec::new());
    for i in 0..SELECT_CHANNELS {
        let (tx, rx) = spsc::anonymous(&opts)?;
        pings.push(rx);
        if i == ACTIVE {
            ping = Some(tx);
        } else {
            idle.push(tx);
        }
    }
    let (pong_tx, pong_rx) = spsc::anonymous(&opts)?;
    Ok(Parts {
        client: Box::new(SelectClient {
            ping: ping.ok_or("no active channel")?,
            pong: pong_rx,
            _idle: idle,
        }),
        server: Box::new(SelectServer {
            pings,
            pong: pong_tx,
        }),
        nudge: no_nudge(),
    })
}
