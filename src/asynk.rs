//! async/await (cargo feature `async`): futures for receiving, sending and
//! reserving, and receivers as [`futures_core::Stream`]s, for any executor.
//!
//! A future first tries its operation (no system call, nothing registered,
//! while the peer keeps the channel busy). Finding nothing to do, it makes the
//! select's wait for its one ring (`shmq_ring::park`): it spins as the end's
//! [`WaitStrategy`](crate::WaitStrategy) says, at most
//! [`DEFAULT_SPIN`](crate::DEFAULT_SPIN) a poll; reads the ring's futex
//! sequence, sets its waiting flag, fences, re-checks; and, if still nothing,
//! registers its waker with a waiter thread (one per process, started on first
//! use), which sleeps with `futex_waitv` on every registered word and wakes the
//! waker when the word moves, or after one wait slice, so that a future looks
//! at its peer's liveness as a blocking call does. docs/PROTOCOL.md, section 6,
//! "Async waits", has the protocol.
//!
//! A wake-up through the waiter thread is two kernel hops (the producer's
//! `FUTEX_WAKE` wakes the waiter thread, which wakes the executor's thread).
//! A reactor that waits on descriptors (tokio's `AsyncFd`, epoll) can wait on a
//! receiver in one hop through its descriptor instead.
//!
//! **Cancellation**: a future consumes a message only in the poll that returns
//! it; dropping a pending future (a `select!` branch that lost, a time-out)
//! deregisters it, loses nothing and leaves the end usable. Registrations
//! time out after one wait slice, so a runtime dropped with futures pending
//! is never held up by them.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use shmq_ring::park::Parking;
use shmq_ring::select::{Room, Selectable};
use shmq_ring::{Consumer, Producer};

use crate::attach::{Attachable, Handle, RingKind};
use crate::channel::{Format, ReadGuard, Receiver, Sender, WriteGuard};
use crate::durable::Moves;
use crate::typed::TypedFormat;
use crate::{Error, Result};

/// Tries in one poll at most this many times after the wait said "ready" (a
/// ready MPSC room taken by another producer, say); then the poll yields.
const ROUNDS: u32 = 4;

/// One poll of an operation that borrows nothing from the end: try it
/// (`Empty` or `Full`: not now); then wait for the ring `ring` reaches from
/// `end` as `park` says (ready: try again). `end` is a [`Handle`] (its `ring`
/// is [`Handle::ring`]) or a receiver whose format's own receive is the
/// attempt.
fn drive<E, R, T>(
    end: &mut E,
    mut ring: impl FnMut(&mut E) -> Result<&mut R>,
    parking: &mut Parking,
    waker: &Waker,
    mut attempt: impl FnMut(&mut E) -> Result<T>,
    mut park: impl FnMut(&mut R, &mut Parking, &Waker) -> Poll<shmq_ring::Result<()>>,
) -> Poll<Result<T>> {
    for _ in 0..ROUNDS {
        match attempt(end) {
            Err(Error::Empty | Error::Full) => {}
            done => {
                parking.release();
                return Poll::Ready(done);
            }
        }
        let ring = match ring(end) {
            Ok(r) => r,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match park(ring, parking, waker) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            Poll::Pending => return Poll::Pending,
        }
    }
    waker.wake_by_ref();
    Poll::Pending
}

/// `drive` on a handle's own ring: the attempt is one ring operation, run
/// through [`Handle::run`] (attach, damage and sync checks).
fn poll_ring<R: Attachable, T: Moves>(
    end: &mut Handle<R>,
    parking: &mut Parking,
    waker: &Waker,
    mut attempt: impl FnMut(&mut R) -> shmq_ring::Result<T>,
    park: impl FnMut(&mut R, &mut Parking, &Waker) -> Poll<shmq_ring::Result<()>>,
) -> Poll<Result<T>> {
    drive(
        end,
        Handle::ring,
        parking,
        waker,
        |end| end.run(&mut attempt),
        park,
    )
}

/// The wait of a consumer.
fn park_consumer<K: RingKind>(
    c: &mut Consumer<K>,
    parking: &mut Parking,
    waker: &Waker,
) -> Poll<shmq_ring::Result<()>> {
    parking.poll(c as &mut dyn Selectable, waker)
}

/// The wait of a producer for room for `len` bytes.
fn park_room<K: RingKind>(
    p: &mut Producer<K>,
    len: usize,
    parking: &mut Parking,
    waker: &Waker,
) -> Poll<shmq_ring::Result<()>> {
    parking.poll(&mut Room::new(p, len), waker)
}

/// The second step of a future that lends its end to what it returns (a
/// guard): once the first step (`ready`) says the operation can be done, the
/// end leaves `slot` for good and `out` makes the output from it; an error
/// ends the future too.
fn lend<'a, E, T>(
    slot: &mut Option<&'a mut E>,
    ready: Poll<Result<()>>,
    out: impl FnOnce(&'a mut E) -> Result<T>,
) -> Poll<Result<T>> {
    match ready {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Err(e)) => {
            *slot = None;
            Poll::Ready(Err(e))
        }
        Poll::Ready(Ok(())) => {
            let end = slot.take().expect("the caller checked that it is there");
            Poll::Ready(out(end))
        }
    }
}

/// The future of [`Receiver::recv_async`] (bytes): a message lent in place.
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, K: RingKind> {
    rx: Option<&'a mut Receiver<K>>,
    parking: Parking,
}

impl<'a, K: RingKind> Future for RecvFuture<'a, K> {
    type Output = Result<ReadGuard<'a, K>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(rx) = this.rx.as_mut() else {
            panic!("`RecvFuture` polled after it completed");
        };
        // Readiness first (a consumer's is exact: a frame found stays until
        // this consumer takes it), then the one receive that lends the frame
        // for the future's whole lifetime.
        let ready = match rx.end.ring() {
            Ok(ring) => match park_consumer(ring, &mut this.parking, cx.waker()) {
                Poll::Ready(r) => Poll::Ready(r.map_err(Error::from)),
                Poll::Pending => Poll::Pending,
            },
            Err(e) => Poll::Ready(Err(e)),
        };
        lend(&mut this.rx, ready, |rx| rx.try_recv())
    }
}

/// The future of [`Receiver::recv_into_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvIntoFuture<'a, K: RingKind> {
    rx: &'a mut Receiver<K>,
    buf: &'a mut Vec<u8>,
    parking: Parking,
}

impl<K: RingKind> Future for RecvIntoFuture<'_, K> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let buf = &mut *this.buf;
        poll_ring(
            &mut this.rx.end,
            &mut this.parking,
            cx.waker(),
            |r| r.try_recv_into(buf),
            park_consumer,
        )
    }
}

/// The future of a typed [`Receiver::recv_async`]: the value.
#[must_use = "futures do nothing unless polled"]
pub struct RecvValueFuture<'a, K: RingKind, F: TypedFormat> {
    rx: &'a mut Receiver<K, F>,
    parking: Parking,
}

impl<K: RingKind, F: TypedFormat> Future for RecvValueFuture<'_, K, F> {
    type Output = Result<F::Item>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        poll_message(this.rx, &mut this.parking, cx.waker(), |rx| rx.try_recv())
    }
}

/// One poll of an owned receive (`Vec<u8>` or `T`) made by `attempt`: the
/// attempt goes through the receiver (its format's own receive), so `drive`
/// is given the receiver and the way to its ring. A receive never says
/// `Full` (only a send does), so here only `Empty` means "not now".
fn poll_message<K: RingKind, M: Format, T>(
    rx: &mut Receiver<K, M>,
    parking: &mut Parking,
    waker: &Waker,
    attempt: impl FnMut(&mut Receiver<K, M>) -> Result<T>,
) -> Poll<Result<T>> {
    drive(
        rx,
        |rx| rx.end.ring(),
        parking,
        waker,
        attempt,
        park_consumer,
    )
}

/// The future of [`Sender::send_async`] (bytes).
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, K: RingKind> {
    tx: &'a mut Sender<K>,
    msg: &'a [u8],
    parking: Parking,
}

impl<K: RingKind> Future for SendFuture<'_, K> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let msg = this.msg;
        poll_ring(
            &mut this.tx.end,
            &mut this.parking,
            cx.waker(),
            |r| r.try_send(msg),
            |p, parking, w| park_room(p, msg.len(), parking, w),
        )
    }
}

/// The future of a typed [`Sender::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendValueFuture<'a, K: RingKind, F: TypedFormat> {
    tx: &'a mut Sender<K, F>,
    value: F::Item,
    parking: Parking,
}

impl<K: RingKind, F: TypedFormat> Unpin for SendValueFuture<'_, K, F> {}

impl<K: RingKind, F: TypedFormat> Future for SendValueFuture<'_, K, F> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let len = size_of::<F::Item>();
        for _ in 0..ROUNDS {
            match this.tx.try_send(&this.value) {
                Err(Error::Full) => {}
                done => {
                    this.parking.release();
                    return Poll::Ready(done);
                }
            }
            let ring = match this.tx.end.ring() {
                Ok(r) => r,
                Err(e) => return Poll::Ready(Err(e)),
            };
            match park_room(ring, len, &mut this.parking, cx.waker()) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The future of [`Sender::reserve_async`]: room for a message, written in
/// place through the guard.
#[must_use = "futures do nothing unless polled"]
pub struct ReserveFuture<'a, K: RingKind> {
    tx: Option<&'a mut Sender<K>>,
    len: usize,
    parking: Parking,
}

impl<'a, K: RingKind> Future for ReserveFuture<'a, K> {
    type Output = Result<WriteGuard<'a, K>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let len = this.len;
        let Some(tx) = this.tx.as_mut() else {
            panic!("`ReserveFuture` polled after it completed");
        };
        // In two steps, so that whether a guard is had is known before the
        // sender is lent to it for the future's lifetime: the claim is made
        // and held in the producer (`try_hold`), then handed out as a guard.
        let held = drive(
            &mut tx.end,
            Handle::ring,
            &mut this.parking,
            cx.waker(),
            |end| match end.run(|r| r.try_hold(len)) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::Full),
                Err(e) => Err(e),
            },
            |p, parking, w| park_room(p, len, parking, w),
        );
        lend(&mut this.tx, held, |tx| {
            // The handle was attached and checked by the `run` above.
            tx.end
                .ring()
                .map(|p| p.take_held().expect("a claim held by this poll"))
        })
    }
}

/// Received messages as a [`futures_core::Stream`] ([`Receiver::stream`]).
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<'a, K: RingKind, M: Format> {
    rx: &'a mut Receiver<K, M>,
    parking: Parking,
    done: bool,
}

/// Received messages as a [`futures_core::Stream`] that owns its receiver
/// ([`Receiver::into_stream`]).
#[must_use = "streams do nothing unless polled"]
pub struct IntoStream<K: RingKind, M: Format> {
    rx: Receiver<K, M>,
    parking: Parking,
    done: bool,
}

// Nothing in it is pinned: it is moved freely between polls.
impl<K: RingKind, M: Format> Unpin for IntoStream<K, M> {}

impl<K: RingKind, M: Format> IntoStream<K, M> {
    /// The receiver back.
    pub fn into_inner(self) -> Receiver<K, M> {
        self.rx
    }
}

/// One poll of a stream: an item, the end (`Disconnected`: done), or an error
/// as the last item, as [`crate::Iter`].
fn poll_stream<K: RingKind, M: Format>(
    rx: &mut Receiver<K, M>,
    parking: &mut Parking,
    done: &mut bool,
    waker: &Waker,
) -> Poll<Option<Result<M::Message>>> {
    if *done {
        return Poll::Ready(None);
    }
    match poll_message(rx, parking, waker, |rx| M::receive(rx, false)) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Ok(m)) => Poll::Ready(Some(Ok(m))),
        Poll::Ready(Err(Error::Disconnected(_))) => {
            *done = true;
            Poll::Ready(None)
        }
        Poll::Ready(Err(e)) => {
            *done = true;
            Poll::Ready(Some(Err(e)))
        }
    }
}

impl<K: RingKind, M: Format> futures_core::Stream for RecvStream<'_, K, M> {
    type Item = Result<M::Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        poll_stream(this.rx, &mut this.parking, &mut this.done, cx.waker())
    }
}

impl<K: RingKind, M: Format> futures_core::FusedStream for RecvStream<'_, K, M> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<K: RingKind, M: Format> futures_core::Stream for IntoStream<K, M> {
    type Item = Result<M::Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        poll_stream(&mut this.rx, &mut this.parking, &mut this.done, cx.waker())
    }
}

impl<K: RingKind, M: Format> futures_core::FusedStream for IntoStream<K, M> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<K: RingKind> Receiver<K> {
    /// Receives the next message, lent in place until the guard drops, as a
    /// future (see [`Receiver::recv`]). Cancellation-safe: a message is
    /// consumed only when the future completes with it.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    ///
    /// # Examples
    /// ```
    /// # futures_executor::block_on(async {
    /// let (mut tx, mut rx) = shmq::spsc::anonymous(&shmq::Options::new())?;
    /// tx.send_async(b"hello").await?;
    /// assert_eq!(&*rx.recv_async().await?, b"hello");
    /// # Ok::<(), shmq::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn recv_async(&mut self) -> RecvFuture<'_, K> {
        RecvFuture {
            rx: Some(self),
            parking: Parking::new(),
        }
    }

    /// Receives the next message into `buf` (cleared first) as a future (see
    /// [`Receiver::recv_into`]).
    ///
    /// # Errors
    /// As [`Receiver::recv_into`].
    pub fn recv_into_async<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> RecvIntoFuture<'a, K> {
        RecvIntoFuture {
            rx: self,
            buf,
            parking: Parking::new(),
        }
    }
}

impl<K: RingKind, F: TypedFormat> Receiver<K, F> {
    /// Receives the next value as a future (see the typed `recv`).
    ///
    /// # Errors
    /// As the typed `recv`.
    pub fn recv_async(&mut self) -> RecvValueFuture<'_, K, F> {
        RecvValueFuture {
            rx: self,
            parking: Parking::new(),
        }
    }
}

impl<K: RingKind, M: Format> Receiver<K, M> {
    /// The messages, owned (`Vec<u8>` or `T`), as a [`futures_core::Stream`]
    /// borrowing the receiver. It ends when the receiver is done
    /// ([`Error::Disconnected`] is not an item), and any other error is its
    /// last item, as [`Receiver::iter`]; each message is copied out and
    /// released before it is returned (at most once, as `iter`).
    pub fn stream(&mut self) -> RecvStream<'_, K, M> {
        RecvStream {
            rx: self,
            parking: Parking::new(),
            done: false,
        }
    }

    /// As [`Receiver::stream`], owning the receiver (for a `'static` task).
    pub fn into_stream(self) -> IntoStream<K, M> {
        IntoStream {
            rx: self,
            parking: Parking::new(),
            done: false,
        }
    }
}

impl<K: RingKind> Sender<K> {
    /// Sends a copy of `msg` as a future, waiting for room (see
    /// [`Sender::send`]). Dropped before it completes, it has sent nothing.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send_async<'a>(&'a mut self, msg: &'a [u8]) -> SendFuture<'a, K> {
        SendFuture {
            tx: self,
            msg,
            parking: Parking::new(),
        }
    }

    /// Reserves room for `len` bytes as a future (see [`Sender::reserve`],
    /// and its warning for MPSC channels: a held guard stops every producer).
    /// Dropped before it completes, it has reserved nothing.
    ///
    /// # Errors
    /// As [`Sender::reserve`].
    pub fn reserve_async(&mut self, len: usize) -> ReserveFuture<'_, K> {
        ReserveFuture {
            tx: Some(self),
            len,
            parking: Parking::new(),
        }
    }
}

impl<K: RingKind, F: TypedFormat> Sender<K, F> {
    /// Sends `value` as a future, waiting for room (see the typed `send`).
    ///
    /// # Errors
    /// As the typed `send`.
    pub fn send_async(&mut self, value: F::Item) -> SendValueFuture<'_, K, F> {
        SendValueFuture {
            tx: self,
            value,
            parking: Parking::new(),
        }
    }
}
