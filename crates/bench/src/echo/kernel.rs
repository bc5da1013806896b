//! The kernel transports: pipes, UNIX stream and datagram sockets, TCP loopback.
//! Each message is one `write` (or `send`) and is read whole into a private buffer.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};

use super::{Client, Parts, Result, Server, check_echo, is_stop, no_nudge};

struct StreamClient<R, W> {
    rd: R,
    wr: W,
    buf: Vec<u8>,
}

struct StreamServer<R, W> {
    rd: R,
    wr: W,
    buf: Vec<u8>,
}

impl<R: Read, W: Write> Client for StreamClient<R, W> {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        self.wr.write_all(msg)?;
        self.rd.read_exact(&mut self.buf)?;
        check_echo(&self.buf, msg, "stream reply differs")
    }
}

impl<R: Read, W: Write> Server for StreamServer<R, W> {
    fn serve(&mut self) -> Result<()> {
        loop {
            self.rd.read_exact(&mut self.buf)?;
            self.wr.write_all(&self.buf)?;
            if is_stop(&self.buf) {
                return Ok(());
            }
        }
    }
}

fn stream_parts<R1, W1, R2, W2>(size: usize, client: (R1, W1), server: (R2, W2)) -> Parts
where
    R1: Read + 'static,
    W1: Write + 'static,
    R2: Read + 'static,
    W2: Write + 'static,
{
    Parts {
        client: Box::new(StreamClient {
            rd: client.0,
            wr: client.1,
            buf: vec![0; size],
        }),
        server: Box::new(StreamServer {
            rd: server.0,
            wr: server.1,
            buf: vec![0; size],
        }),
        nudge: no_nudge(),
    }
}

/// Two pipes: ping (client to server) and pong.
pub(crate) fn pipe(size: usize) -> Result<Parts> {
    let (ping_r, ping_w) = nix::unistd::pipe()?;
    let (pong_r, pong_w) = nix::unistd::pipe()?;
    Ok(stream_parts(
        size,
        (File::from(pong_r), File::from(ping_w)),
        (File::from(ping_r), File::from(pong_w)),
    ))
}

/// A connected UNIX stream socket pair.
pub(crate) fn uds_stream(size: usize) -> Result<Parts> {
    let (a, b) = UnixStream::pair()?;
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    Ok(stream_parts(size, (a, a2), (b, b2)))
}

/// TCP over 127.0.0.1, `TCP_NODELAY` on both ends.
pub(crate) fn tcp(size: usize) -> Result<Parts> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let a = TcpStream::connect(listener.local_addr()?)?;
    let (b, _) = listener.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    Ok(stream_parts(size, (a, a2), (b, b2)))
}

struct DgramClient {
    sock: UnixDatagram,
    buf: Vec<u8>,
}

struct DgramServer {
    sock: UnixDatagram,
    buf: Vec<u8>,
}

impl Client for DgramClient {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        if self.sock.send(msg)? != msg.len() {
            return Err("short datagram send".into());
        }
        let n = self.sock.recv(&mut self.buf)?;
        check_echo(&self.buf[..n], msg, "datagram reply differs")
    }
}

impl Server for DgramServer {
    fn serve(&mut self) -> Result<()> {
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            if n == 0 {
                return Err("empty datagram".into());
            }
            if self.sock.send(&self.buf[..n])? != n {
                return Err("short datagram send".into());
            }
            if is_stop(&self.buf[..n]) {
                return Ok(());
            }
        }
    }
}

/// A connected UNIX datagram socket pair, with buffers large enough for one
/// message (`SO_SNDBUF` bounds a datagram).
pub(crate) fn uds_dgram(size: usize) -> Result<Parts> {
    let (a, b) = UnixDatagram::pair()?;
    // A datagram socket sees no end of file when its peer dies: the watchdog wakes
    // a waiting client with an empty datagram from its own copy of the server end.
    let spare = b.try_clone()?;
    Ok(Parts {
        // One byte more than a message, so that a longer reply would show.
        client: Box::new(DgramClient {
            sock: a,
            buf: vec![0; size + 1],
        }),
        server: Box::new(DgramServer {
            sock: b,
            buf: vec![0; size + 1],
        }),
        nudge: Box::new(move || {
            let _ = spare.send(&[]);
        }),
    })
}
