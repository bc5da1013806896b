//! Typed channels of any ring kind: messages of one [`bytemuck::Pod`] type `T`,
//! in fixed-size frames of the byte ring (so a typed message, like a byte one,
//! shares its cache line with the header the receiver polls). The header
//! records the type's name (as text), version, size and alignment; opening with
//! another type is [`Error::WrongMessageType`], which names both.
//!
//! Two formats carry typed messages ([`TypedFormat`]):
//! - [`Typed<T>`]: any `Pod` type, known by its Rust type name
//!   ([`std::any::type_name`]), so both ends must use the same type at the same
//!   path (as two binaries sharing one crate of message types do).
//! - [`Declared<T>`]: a [`Message`](crate::Message) type, known by its declared
//!   name and version, so separately built programs, each with its own
//!   definition, agree on it.
//!
//! [`Sender<T, K>`] is [`crate::Sender`]`<K, Typed<T>>`: its constructors, its
//! capacity (in messages), `export_fd` and the MPSC methods are the generic
//! ones; the sending and receiving forms for values of `T` are here, for both
//! formats. `spsc::typed` and `mpsc::typed` name them per kind, and
//! `spsc::declared` and `mpsc::declared` the declared ones.

use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

use crate::Result;
use crate::attach::RingKind;
use crate::channel::{Declared, Format, Typed};
use crate::error::{Corruption, Error};

/// A format of fixed-size messages of one `Pod` type: [`Typed<T>`] or
/// [`Declared<T>`]. Sealed.
pub trait TypedFormat: Format {
    /// The message type.
    type Item: Pod;
}

impl<T: Pod> TypedFormat for Typed<T> {
    type Item = T;
}

impl<T: crate::Message> TypedFormat for Declared<T> {
    type Item = T;
}

/// The sending end of a typed channel of `T` over ring kind `K`.
pub type Sender<T, K> = crate::Sender<K, Typed<T>>;

/// The receiving end of a typed channel of `T` over ring kind `K`.
pub type Receiver<T, K> = crate::Receiver<K, Typed<T>>;

/// Room reserved for one `T`, written in place, then [`WriteGuard::commit`]ted.
pub struct WriteGuard<'a, T: Pod, K: RingKind> {
    inner: crate::WriteGuard<'a, K>,
    _t: PhantomData<&'a mut T>,
}

impl<T: Pod, K: RingKind> WriteGuard<'_, T, K> {
    /// Publishes the message.
    pub fn commit(self) {
        self.inner.commit();
    }
}

impl<T: Pod, K: RingKind> core::ops::Deref for WriteGuard<'_, T, K> {
    type Target = T;
    fn deref(&self) -> &T {
        bytemuck::from_bytes(&self.inner)
    }
}

impl<T: Pod, K: RingKind> core::ops::DerefMut for WriteGuard<'_, T, K> {
    fn deref_mut(&mut self) -> &mut T {
        bytemuck::from_bytes_mut(&mut self.inner)
    }
}

/// A received `T`, lent in place until the guard drops.
pub struct ReadGuard<'a, T: Pod, K: RingKind> {
    inner: crate::ReadGuard<'a, K>,
    _t: PhantomData<&'a T>,
}

impl<T: Pod, K: RingKind> core::ops::Deref for ReadGuard<'_, T, K> {
    type Target = T;
    fn deref(&self) -> &T {
        bytemuck::from_bytes(&self.inner)
    }
}

/// Frames are 8-aligned, so a `T` can be lent in place only if its alignment
/// is at most 8; larger alignments use the copying calls.
const fn lendable<T>() {
    assert!(
        align_of::<T>() <= 8,
        "zero-copy typed access needs align_of::<T>() <= 8; use the copying calls"
    );
}

/// A frame of the wrong length in a typed channel: the peer broke the protocol.
fn wrong_length(len: usize, want: usize) -> Error {
    Error::Corrupted(Corruption {
        what: "typed message length",
        position: 0,
        value: (len as u64) << 32 | want as u64,
    })
}

/// A copy of the `T` in `bytes`, which must be exactly one `T` long.
fn read<T: Pod>(bytes: &[u8]) -> Result<T> {
    if bytes.len() != size_of::<T>() {
        return Err(wrong_length(bytes.len(), size_of::<T>()));
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}

/// A guard over a byte frame that must be exactly one `T` long.
fn lend<T: Pod, K: RingKind>(inner: crate::ReadGuard<'_, K>) -> Result<ReadGuard<'_, T, K>> {
    if inner.len() != size_of::<T>() {
        return Err(wrong_length(inner.len(), size_of::<T>()));
    }
    Ok(ReadGuard {
        inner,
        _t: PhantomData,
    })
}

/// A typed guard over reserved bytes.
fn reserved<T: Pod, K: RingKind>(inner: crate::WriteGuard<'_, K>) -> WriteGuard<'_, T, K> {
    WriteGuard {
        inner,
        _t: PhantomData,
    }
}

impl<F: TypedFormat, K: RingKind> crate::Sender<K, F> {
    /// Sends a copy of `value` without waiting.
    ///
    /// # Errors
    /// As the byte [`crate::Sender::try_send`].
    pub fn try_send(&mut self, value: &F::Item) -> Result<()> {
        self.end.run(|r| r.try_send(bytemuck::bytes_of(value)))
    }

    /// Sends a copy of `value`, waiting for room.
    ///
    /// # Errors
    /// As the byte [`crate::Sender::send`].
    pub fn send(&mut self, value: &F::Item) -> Result<()> {
        self.end.run(|r| r.send(bytemuck::bytes_of(value)))
    }

    /// Sends a copy of `value`, waiting at most `timeout`.
    ///
    /// # Errors
    /// As the byte [`crate::Sender::send_timeout`].
    pub fn send_timeout(&mut self, value: &F::Item, timeout: Duration) -> Result<()> {
        self.end
            .run(|r| r.send_timeout(bytemuck::bytes_of(value), timeout))
    }

    /// Sends as many of `values` as fit now, published together; returns how
    /// many were sent.
    ///
    /// # Errors
    /// As the byte [`crate::Sender::try_send_batch`].
    pub fn try_send_batch<'v>(
        &mut self,
        values: impl IntoIterator<Item = &'v F::Item>,
    ) -> Result<usize>
    where
        F::Item: 'v,
    {
        self.end
            .run(|r| r.try_send_batch(values.into_iter().map(bytemuck::bytes_of)))
    }

    /// Reserves room for one message without waiting; write it in place, then commit.
    ///
    /// MPSC: until the guard is committed or dropped, no producer's later message
    /// is received, and once the ring is full every producer waits (see
    /// [`crate::Sender::reserve`]).
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    pub fn try_reserve(&mut self) -> Result<WriteGuard<'_, F::Item, K>> {
        const { lendable::<F::Item>() };
        Ok(reserved(
            self.end.run(|r| r.try_reserve(size_of::<F::Item>()))?,
        ))
    }

    /// Reserves room for one message, waiting.
    ///
    /// # MPSC: a held reservation stops every producer
    /// On an MPSC channel the reservation is a claim on the next part of the ring,
    /// and the receiver takes messages in ring order: it cannot pass a claim that
    /// is not committed yet. Until this guard is committed or dropped, messages
    /// that other producers send after it are not received, and once they have
    /// filled the ring every producer waits (0 messages a second while a producer
    /// holding a guard is stopped, descheduled or blocked). This follows from the
    /// design (one shared ring, delivered in order). Keep guards short: fill and
    /// commit them without blocking in between, or use `send`, which holds its
    /// claim only while it copies the message. A producer that cannot be trusted to do
    /// so (another team's process, one that may be stopped with `SIGSTOP` or
    /// debugged) should get its own SPSC channel ([`crate::spsc`]), so that it can
    /// only hold up itself. A producer that dies holding a guard is recovered from
    /// (its claim is reclaimed once its death is seen); one that lives is waited for.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn reserve(&mut self) -> Result<WriteGuard<'_, F::Item, K>> {
        const { lendable::<F::Item>() };
        Ok(reserved(self.end.run(|r| r.reserve(size_of::<F::Item>()))?))
    }

    /// Reserves room for one message, waiting at most `timeout`.
    ///
    /// MPSC: until the guard is committed or dropped, no producer's later message
    /// is received, and once the ring is full every producer waits (see
    /// [`crate::Sender::reserve`]).
    ///
    /// # Errors
    /// As [`Sender::send_timeout`].
    pub fn reserve_timeout(&mut self, timeout: Duration) -> Result<WriteGuard<'_, F::Item, K>> {
        const { lendable::<F::Item>() };
        Ok(reserved(self.end.run(|r| {
            r.reserve_timeout(size_of::<F::Item>(), timeout)
        })?))
    }
}

impl<F: TypedFormat, K: RingKind> crate::Receiver<K, F> {
    /// Receives the next value without waiting.
    ///
    /// # Errors
    /// As the byte [`crate::Receiver::try_recv`]; a frame of the wrong size is
    /// `Corrupted`.
    pub fn try_recv(&mut self) -> Result<F::Item> {
        read(&self.end.run(|r| r.try_recv())?)
    }

    /// Receives the next value, waiting.
    ///
    /// # Errors
    /// As the byte [`crate::Receiver::recv`].
    pub fn recv(&mut self) -> Result<F::Item> {
        read(&self.end.run(|r| r.recv())?)
    }

    /// Receives the next value, waiting at most `timeout`.
    ///
    /// # Errors
    /// As the byte [`crate::Receiver::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<F::Item> {
        read(&self.end.run(|r| r.recv_timeout(timeout))?)
    }

    /// Receives the next value in place, waiting; it is released when the
    /// guard drops.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_ref(&mut self) -> Result<ReadGuard<'_, F::Item, K>> {
        const { lendable::<F::Item>() };
        lend(self.end.run(|r| r.recv())?)
    }

    /// As [`Receiver::recv_ref`], without waiting.
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    pub fn try_recv_ref(&mut self) -> Result<ReadGuard<'_, F::Item, K>> {
        const { lendable::<F::Item>() };
        lend(self.end.run(|r| r.try_recv())?)
    }

    /// As [`Receiver::recv_ref`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Receiver::recv_timeout`].
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, F::Item, K>> {
        const { lendable::<F::Item>() };
        lend(self.end.run(|r| r.recv_timeout(timeout))?)
    }

    /// Hands up to `max` waiting values to `each`, in order, and releases them
    /// all with one store. Returns how many were handed over.
    ///
    /// # Errors
    /// As the byte [`crate::Receiver::try_recv_batch`]; a frame of the wrong size
    /// (a peer that broke the protocol) is `Corrupted`, reported after the batch:
    /// every well-formed value in it was handed over, the malformed ones were not.
    pub fn try_recv_batch(&mut self, max: usize, each: impl FnMut(F::Item)) -> Result<usize> {
        self.batch(max, Take::Now, each)
    }

    /// Hands up to `max` values to `each`, waiting as the wait strategy says
    /// until there is at least one (as the byte
    /// [`crate::Receiver::recv_batch`], linger included).
    ///
    /// # Errors
    /// As the byte [`crate::Receiver::recv_batch`]; a frame of the wrong size
    /// as in [`Receiver::try_recv_batch`].
    pub fn recv_batch(&mut self, max: usize, each: impl FnMut(F::Item)) -> Result<usize> {
        self.batch(max, Take::Wait(None), each)
    }

    /// As [`Receiver::recv_batch`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As the byte [`crate::Receiver::recv_batch_timeout`].
    pub fn recv_batch_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        each: impl FnMut(F::Item),
    ) -> Result<usize> {
        self.batch(max, Take::Wait(Some(timeout)), each)
    }

    /// Every batch form: each frame is decoded into a value for `each`; a
    /// malformed one is reported after the batch.
    fn batch(&mut self, max: usize, take: Take, mut each: impl FnMut(F::Item)) -> Result<usize> {
        let mut bad = None;
        let mut decode = |bytes: &[u8]| match read::<F::Item>(bytes) {
            Ok(v) => each(v),
            Err(e) => {
                bad.get_or_insert(e);
            }
        };
        let n = self.end.run(|r| match take {
            Take::Now => r.try_recv_batch(max, &mut decode),
            Take::Wait(None) => r.recv_batch(max, &mut decode),
            Take::Wait(Some(timeout)) => r.recv_batch_timeout(max, timeout, &mut decode),
        })?;
        bad.map_or(Ok(n), Err)
    }
}

/// How a typed batch receive waits for its first value.
#[derive(Clone, Copy)]
enum Take {
    /// Not at all.
    Now,
    /// At most this long (`None`: as long as it takes).
    Wait(Option<Duration>),
}

/// A new anonymous typed channel of kind `K` (both ends, for `fork`).
///
/// # Errors
/// As [`crate::spsc::anonymous`].
pub fn anonymous<T: Pod, K: RingKind>(
    opts: &crate::Options,
) -> Result<(Sender<T, K>, Receiver<T, K>)> {
    crate::channel::anonymous(opts)
}

/// The sending end of a declared-type channel of `T` over ring kind `K`.
pub type DeclaredSender<T, K> = crate::Sender<K, Declared<T>>;

/// The receiving end of a declared-type channel of `T` over ring kind `K`.
pub type DeclaredReceiver<T, K> = crate::Receiver<K, Declared<T>>;

/// A new anonymous declared-type channel of kind `K` (both ends, for `fork`).
///
/// # Errors
/// As [`crate::spsc::anonymous`], and [`Error::InvalidMessageName`].
pub fn anonymous_declared<T: crate::Message, K: RingKind>(
    opts: &crate::Options,
) -> Result<(DeclaredSender<T, K>, DeclaredReceiver<T, K>)> {
    crate::channel::anonymous(opts)
}
