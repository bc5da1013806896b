//! eventfd: the payload goes through shared memory, and each direction signals
//! with an eventfd (`write` 1 to wake, blocking `read` to wait), the kernel's
//! lightest wake-up object.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::unistd;

use super::{Client, Parts, Result, Server, check_echo};
use crate::shm::{LINE, SharedMap};

/// Layout: the request at 0, the reply at `reply_at(size)`.
fn reply_at(size: usize) -> usize {
    size.div_ceil(LINE) * LINE
}

struct EfdClient {
    map: Arc<SharedMap>,
    ping: OwnedFd,
    pong: OwnedFd,
    reply: usize,
    buf: Vec<u8>,
}

struct EfdServer {
    map: Arc<SharedMap>,
    ping: OwnedFd,
    pong: OwnedFd,
    reply: usize,
    size: usize,
}

impl Client for EfdClient {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        // The eventfd write and read are system calls: full barriers, and the
        // kernel's wake-up orders the peer's copy before our read of the reply.
        self.map.write(0, msg);
        signal(&self.ping)?;
        wait(&self.pong)?;
        self.map.read(self.reply, &mut self.buf);
        check_echo(&self.buf, msg, "eventfd reply differs")
    }
}

impl Server for EfdServer {
    fn serve(&mut self) -> Result<()> {
        let mut head = [0u8; 8];
        loop {
            wait(&self.ping)?;
            self.map.copy_within(0, self.reply, self.size);
            self.map.read(0, &mut head);
            signal(&self.pong)?;
            if super::is_stop(&head) {
                return Ok(());
            }
        }
    }
}

/// Adds 1 to the eventfd's counter, waking a reader.
fn signal(fd: &OwnedFd) -> Result<()> {
    unistd::write(fd, &1u64.to_ne_bytes())?;
    Ok(())
}

/// Blocks until the counter is non-zero, and resets it.
fn wait(fd: &OwnedFd) -> Result<()> {
    let mut v = [0u8; 8];
    if unistd::read(fd, &mut v)? != 8 {
        return Err("short eventfd read".into());
    }
    Ok(())
}

fn new_eventfd() -> Result<OwnedFd> {
    Ok(OwnedFd::from(EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    Ok(fd.as_fd().try_clone_to_owned()?)
}

pub(crate) fn parts(size: usize) -> Result<Parts> {
    let reply = reply_at(size);
    let map = Arc::new(SharedMap::new(reply + size)?);
    let ping = new_eventfd()?;
    let pong = new_eventfd()?;
    let nudge_fd = dup(&pong)?;
    Ok(Parts {
        client: Box::new(EfdClient {
            map: map.clone(),
            ping: dup(&ping)?,
            pong: dup(&pong)?,
            reply,
            buf: vec![0; size],
        }),
        server: Box::new(EfdServer {
            map,
            ping,
            pong,
            reply,
            size,
        }),
        // An eventfd has no end of file: when the server dies, the watchdog wakes
        // a waiting client, which then finds a stale reply.
        nudge: Box::new(move || {
            let _ = signal(&nudge_fd);
        }),
    })
}
