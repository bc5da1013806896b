//! `rawsync`: what many people write by hand, a small message queue in shared
//! memory guarded by a process-shared mutex and signalled by an auto-reset event,
//! both from the `raw_sync` crate (pthread mutexes and condition variables marked
//! `PTHREAD_PROCESS_SHARED`). The sender copies the message in under the lock and
//! sets the event; the receiver waits on the event when the queue is empty and
//! copies the message out under the lock.
//!
//! # Safety
//! `raw_sync` builds its objects over raw pointers (`unsafe` constructors): they
//! are given pointers into a [`SharedMap`] at offsets reserved for them (checked
//! against the sizes `raw_sync` reports), and every object is dropped before the
//! map it points into (`Queue` declares the map last).
#![allow(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use raw_sync::Timeout;
use raw_sync::events::{Event, EventImpl, EventInit, EventState};
use raw_sync::locks::{LockImpl, LockInit, Mutex};

use super::{Client, Nudge, Parts, Result, Server, check_echo, is_stop};
use crate::shm::SharedMap;

/// Room reserved for the event (a pthread mutex, a condition variable, flags).
const EVENT_ROOM: usize = 256;
/// Room reserved for the queue's mutex.
const LOCK_ROOM: usize = 128;
/// Offsets of the queue's words, after the synchronisation objects.
const HEAD: usize = EVENT_ROOM + LOCK_ROOM;
const TAIL: usize = HEAD + 8;
const DEAD: usize = HEAD + 16;
/// Where the slots start.
const SLOTS_AT: usize = 512;
/// Messages the queue holds.
const SLOTS: u64 = 4;

/// A queue's event and mutex.
type Objects = (Box<dyn EventImpl>, Box<dyn LockImpl>);

/// A bounded queue of messages of at most `size` bytes in a shared map.
struct Queue {
    event: Box<dyn EventImpl>,
    lock: Box<dyn LockImpl>,
    at: usize,
    size: usize,
    /// Declared last: dropped after the objects that point into it.
    map: Arc<SharedMap>,
}

impl Queue {
    fn slot_len(size: usize) -> usize {
        (8 + size).div_ceil(64) * 64
    }

    /// Bytes one queue takes, rounded to a page.
    fn len(size: usize) -> usize {
        (SLOTS_AT + SLOTS as usize * Self::slot_len(size)).div_ceil(4096) * 4096
    }

    /// Builds a fresh queue at `at` in `map`.
    fn create(map: Arc<SharedMap>, at: usize, size: usize) -> Result<Queue> {
        Self::place(map, at, size, |ev_ptr, lock_ptr, data_ptr| {
            if Event::size_of(Some(ev_ptr)) > EVENT_ROOM {
                return Err("raw_sync event larger than the room reserved".into());
            }
            if Mutex::size_of(Some(lock_ptr)) > LOCK_ROOM {
                return Err("raw_sync mutex larger than the room reserved".into());
            }
            // SAFETY: `ev_ptr` points at `EVENT_ROOM` bytes of the map reserved for the
            // event (size checked above), which outlives the object (module docs).
            let (event, _) = unsafe { Event::new(ev_ptr, true) }?;
            // SAFETY: as above, for the mutex in its `LOCK_ROOM` bytes; the data pointer
            // is informational (the queue's words are reached through the map).
            let (lock, _) = unsafe { Mutex::new(lock_ptr, data_ptr) }?;
            Ok((event, lock))
        })
    }

    /// Another handle on a queue [`Queue::create`] built at `at`.
    fn open(map: Arc<SharedMap>, at: usize, size: usize) -> Result<Queue> {
        Self::place(map, at, size, |ev_ptr, lock_ptr, data_ptr| {
            // SAFETY: the event was initialised at this address by `Queue::create`, in
            // memory that outlives the handle (module docs).
            let (event, _) = unsafe { Event::from_existing(ev_ptr) }?;
            // SAFETY: as above, for the mutex.
            let (lock, _) = unsafe { Mutex::from_existing(lock_ptr, data_ptr) }?;
            Ok((event, lock))
        })
    }

    /// The queue at `at` in `map`, with the event and mutex that `objects` makes
    /// from pointers to their rooms and to the queue's words (the mutex's data).
    fn place(
        map: Arc<SharedMap>,
        at: usize,
        size: usize,
        objects: impl FnOnce(*mut u8, *mut u8, *mut u8) -> Result<Objects>,
    ) -> Result<Queue> {
        assert!(at + Self::len(size) <= map.len(), "queue outside its map");
        let (event, lock) = objects(map.ptr(at), map.ptr(at + EVENT_ROOM), map.ptr(at + HEAD))?;
        Ok(Queue {
            event,
            lock,
            at,
            size,
            map,
        })
    }

    fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        self.map.u64_at(self.at + off)
    }

    fn slot(&self, n: u64) -> usize {
        self.at + SLOTS_AT + (n % SLOTS) as usize * Self::slot_len(self.size)
    }

    /// Appends a message and sets the event.
    fn push(&self, msg: &[u8]) -> Result<()> {
        if msg.len() > self.size {
            return Err("message larger than the queue's slots".into());
        }
        {
            let _g = self.lock.lock()?;
            // Relaxed: the mutex orders everything done under it.
            let (head, tail) = (
                self.word(HEAD).load(Ordering::Relaxed),
                self.word(TAIL).load(Ordering::Relaxed),
            );
            if tail.wrapping_sub(head) >= SLOTS {
                return Err("rawsync queue full".into());
            }
            let slot = self.slot(tail);
            self.map.write(slot, &(msg.len() as u64).to_le_bytes());
            self.map.write(slot + 8, msg);
            self.word(TAIL)
                .store(tail.wrapping_add(1), Ordering::Relaxed);
        }
        self.event.set(EventState::Signaled)
    }

    /// Takes the next message into `buf`, waiting on the event while the queue is
    /// empty; returns its length.
    fn pop(&self, buf: &mut [u8]) -> Result<usize> {
        loop {
            {
                let _g = self.lock.lock()?;
                let (head, tail) = (
                    self.word(HEAD).load(Ordering::Relaxed),
                    self.word(TAIL).load(Ordering::Relaxed),
                );
                if head != tail {
                    let slot = self.slot(head);
                    let mut len = [0u8; 8];
                    self.map.read(slot, &mut len);
                    let len = usize::try_from(u64::from_le_bytes(len))
                        .ok()
                        .filter(|&l| l <= self.size.min(buf.len()))
                        .ok_or("rawsync queue: bad length")?;
                    self.map.read(slot + 8, &mut buf[..len]);
                    self.word(HEAD)
                        .store(head.wrapping_add(1), Ordering::Relaxed);
                    return Ok(len);
                }
                if self.word(DEAD).load(Ordering::Relaxed) != 0 {
                    return Err("echo server gone".into());
                }
            }
            self.event.wait(Timeout::Infinite)?;
        }
    }
}

struct RawClient {
    ping: Queue,
    pong: Queue,
    buf: Vec<u8>,
}

struct RawServer {
    ping: Queue,
    pong: Queue,
    buf: Vec<u8>,
}

impl Client for RawClient {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        self.ping.push(msg)?;
        let n = self.pong.pop(&mut self.buf)?;
        check_echo(&self.buf[..n], msg, "rawsync reply differs")
    }
}

impl Server for RawServer {
    fn serve(&mut self) -> Result<()> {
        loop {
            let n = self.ping.pop(&mut self.buf)?;
            self.pong.push(&self.buf[..n])?;
            if is_stop(&self.buf[..n]) {
                return Ok(());
            }
        }
    }
}

pub(crate) fn parts(size: usize) -> Result<Parts> {
    let qlen = Queue::len(size);
    let map = Arc::new(SharedMap::new(2 * qlen)?);
    // The objects are initialised once, here; after `fork` both processes use the
    // same (inherited) handles on the same shared memory.
    let ping = Queue::create(map.clone(), 0, size)?;
    let pong = Queue::create(map.clone(), qlen, size)?;
    let client = RawClient {
        ping,
        pong,
        buf: vec![0; size],
    };
    // The server's handles: the same objects, opened again over the same memory.
    let server = RawServer {
        ping: Queue::open(map.clone(), 0, size)?,
        pong: Queue::open(map.clone(), qlen, size)?,
        buf: vec![0; size],
    };
    let nudge: Nudge = Box::new(move || {
        // Mark the reply queue dead and set its event: a client waiting there wakes,
        // finds it empty and dead, and gives up.
        map.u64_at(qlen + DEAD).store(1, Ordering::Relaxed);
        if let Ok(q) = Queue::open(map, qlen, size) {
            let _ = q.event.set(EventState::Signaled);
        }
    });
    Ok(Parts {
        client: Box::new(client),
        server: Box::new(server),
        nudge,
    })
}
