//! Waiting on many receivers at once: [`Select`].
//!
//! A select sleeps on every receiver's futex word with one system call
//! (`futex_waitv`, Linux 5.16 and later): while nothing arrives it costs no CPU,
//! and while messages keep coming it makes no system call at all (each producer
//! wakes it only when it has announced that it sleeps; docs/PROTOCOL.md,
//! section 6, "Select").

use std::time::{Duration, Instant};

use shmq_ring::select::{self, Selectable};

use crate::attach::RingKind;
use crate::channel::{Format, Receiver, Sender};
use crate::{Error, Result};

/// Waits until one of several receivers, of any kinds and message formats, has
/// something for a non-blocking receive: a message, or an error such as
/// [`Error::Disconnected`] (its producers are done) or
/// [`Error::Corrupted`]; or until one of several senders has room (or its
/// `try_send` would fail). Modelled on `crossbeam_channel::Select`: add
/// receivers with [`Select::recv`] (senders with [`Select::send`],
/// [`Select::send_typed`]), which returns each one's index; [`Select::ready`]
/// (or [`Select::try_ready`], [`Select::ready_timeout`]) returns the index of a
/// ready one; then call that receiver's `try_recv` (or `try_recv_into`, ...),
/// or that sender's `try_send`.
///
/// A select borrows its receivers and senders mutably (an end's state moves as
/// it looks), so make one for each wait, as in the example: it is a vector of
/// references, cheap to build.
///
/// - **Readiness** is a hint, as in crossbeam: usually the receive that follows
///   succeeds, but it may say [`Error::Empty`] (for example when two threads
///   share nothing but a producer's claim was given up); call it and go on.
/// - **Every kind, format and strategy**: SPSC and MPSC, bytes and typed. The
///   set spins for the longest spin budget among its receivers' wait
///   strategies (for ever if one is [`WaitStrategy::Spin`](crate::WaitStrategy)),
///   then sleeps, at most the shortest of their wait slices at a time; a
///   receiver that has not attached yet (an anonymous one) attaches here.
/// - **Peers**: an attach or a close of any receiver's peers wakes the select; a
///   death is noticed within that receiver's wait slice (it is then ready when
///   its receive would report `Disconnected`: in a session, or after
///   [`Receiver::expect_producers`]).
/// - **Interrupters**: a select is a blocking call of every receiver and sender
///   in it, so it returns [`Error::Interrupted`] within a wait slice when any of
///   their interrupters ([`Receiver::interrupter`], [`Sender::interrupter`]) is
///   set; [`Select::try_ready`] is not affected.
/// - **Many receivers**: one sleep waits on at most 128 futex words (the
///   kernel's limit for `futex_waitv`). A select over more sleeps on its first
///   128 receivers and wakes at least every 10 ms to look at the others, so a
///   message on a receiver past the 128th may wait up to 10 ms (add the
///   receivers that need the lowest latency first).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use shmq::{Options, Select, spsc};
///
/// let (mut tx_a, mut rx_a) = spsc::anonymous(&Options::new())?;
/// let (mut tx_b, mut rx_b) = spsc::typed::anonymous::<u64>(&Options::new())?;
/// tx_b.send(&7)?;
/// tx_a.send(b"hello")?;
///
/// let mut got = 0;
/// while got < 2 {
///     let mut sel = Select::new();
///     let a = sel.recv(&mut rx_a);
///     let b = sel.recv(&mut rx_b);
///     let i = sel.ready_timeout(Duration::from_secs(5))?;
///     if i == a {
///         assert_eq!(&*rx_a.try_recv()?, b"hello");
///     } else if i == b {
///         assert_eq!(rx_b.try_recv()?, 7);
///     }
///     got += 1;
/// }
/// # Ok::<(), shmq::Error>(())
/// ```
#[derive(Default)]
pub struct Select<'a> {
    entries: Vec<Registered<'a>>,
}

/// One operation of a select.
enum Registered<'a> {
    /// A message (or an error) on a receiver.
    Recv(&'a mut dyn Entry),
    /// Room for a message of this many bytes (or an error) on a sender.
    Send(&'a mut dyn SendEntry, usize),
}

impl core::fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Select")
            .field("receivers", &self.entries.len())
            .finish()
    }
}

/// A receiver of any kind and format, as a select holds it.
trait Entry {
    /// The ring consumer, attached now if it has not yet.
    fn end(&mut self) -> Result<&mut dyn Selectable>;
}

impl<K: RingKind, M: Format> Entry for Receiver<K, M> {
    fn end(&mut self) -> Result<&mut dyn Selectable> {
        Ok(self.end.ring()?)
    }
}

/// A sender of any kind and format, as a select holds it.
trait SendEntry {
    /// The ring producer as a select waits for room for `len` bytes in it,
    /// attached now if it has not yet.
    fn room(&mut self, len: usize) -> Result<Box<dyn Selectable + '_>>;
}

impl<K: RingKind, M: Format> SendEntry for Sender<K, M> {
    fn room(&mut self, len: usize) -> Result<Box<dyn Selectable + '_>> {
        Ok(Box::new(select::Room::new(self.end.ring()?, len)))
    }
}

/// What a select waits on, for one call: a receiver's consumer, or the room
/// of a sender's producer (made for the call).
enum Ready<'x> {
    Recv(&'x mut dyn Selectable),
    Send(Box<dyn Selectable + 'x>),
}

impl<'a> Select<'a> {
    /// An empty select.
    pub fn new() -> Select<'a> {
        Select::default()
    }

    /// Adds a receiver and returns its index (0 for the first, then 1, ...).
    pub fn recv<K: RingKind, M: Format>(&mut self, rx: &'a mut Receiver<K, M>) -> usize {
        self.entries.push(Registered::Recv(rx));
        self.entries.len() - 1
    }

    /// Adds a byte sender, ready when a message of `len` bytes fits (its
    /// `try_send` would not say [`Error::Full`]) or a send would fail (the
    /// receiver of a session is gone, `len` is more than the channel takes);
    /// returns its index. For an MPSC channel the room may be taken by another
    /// sender before yours: readiness is a hint.
    pub fn send<K: RingKind>(&mut self, tx: &'a mut Sender<K>, len: usize) -> usize {
        self.entries.push(Registered::Send(tx, len));
        self.entries.len() - 1
    }

    /// Adds a typed sender, ready when one value fits (see [`Select::send`]).
    pub fn send_typed<K: RingKind, T: bytemuck::Pod>(
        &mut self,
        tx: &'a mut Sender<K, crate::Typed<T>>,
    ) -> usize {
        self.entries.push(Registered::Send(tx, size_of::<T>()));
        self.entries.len() - 1
    }

    /// How many receivers were added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no receiver was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index of a ready receiver, without waiting. When several are ready,
    /// the one returned varies from call to call, so that none is starved.
    ///
    /// # Errors
    /// [`Error::Empty`] if none is ready now.
    pub fn try_ready(&mut self) -> Result<usize> {
        self.wait(None)
    }

    /// Waits until a receiver is ready and returns its index. An empty select
    /// waits for ever.
    ///
    /// # Errors
    /// [`Error::Interrupted`] (see the type's docs).
    pub fn ready(&mut self) -> Result<usize> {
        self.wait(Some(None))
    }

    /// As [`Select::ready`], waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Interrupted`].
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<usize> {
        self.wait(Some(Instant::now().checked_add(timeout)))
    }

    /// As [`Select::ready`], waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Interrupted`].
    pub fn ready_deadline(&mut self, deadline: Instant) -> Result<usize> {
        self.wait(Some(Some(deadline)))
    }

    /// `None`: do not wait; `Some(deadline)`: wait until it (`None`: for ever).
    fn wait(&mut self, wait: Option<Option<Instant>>) -> Result<usize> {
        let mut held: Vec<Ready<'_>> = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter_mut().enumerate() {
            let end = match e {
                Registered::Recv(rx) => rx.end().map(Ready::Recv),
                Registered::Send(tx, len) => tx.room(*len).map(Ready::Send),
            };
            match end {
                Ok(end) => held.push(end),
                // Attaching failed (or the handle was inherited through `fork`):
                // the receive or send reports why.
                Err(_) => return Ok(i),
            }
        }
        let mut ends: Vec<&mut (dyn Selectable + '_)> = held
            .iter_mut()
            .map(|h| match h {
                Ready::Recv(r) => &mut **r,
                Ready::Send(b) => &mut **b,
            })
            .collect();
        match wait {
            None => select::try_ready(&mut ends).ok_or(Error::Empty),
            Some(deadline) => Ok(select::ready(&mut ends, deadline)?),
        }
    }
}
