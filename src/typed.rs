//! Typed channels of any ring kind: messages of one [`bytemuck::Pod`] type `T`,
//! in fixed-size frames of the byte ring (so a typed message, like a byte one,
//! shares its cache line with the header the receiver polls). The header
//! records the type's size, alignment and a hash of its name; opening with
//! another type is [`LayoutMismatch`](shmq_segment::Error::LayoutMismatch).
//!
//! [`Sender<T, K>`] and [`Receiver<T, K>`] wrap the byte [`crate::Sender`] and
//! [`crate::Receiver`]; `spsc::typed` and `mpsc::typed` name them per kind.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::time::Duration;

use bytemuck::Pod;
use shmq_ring::Mpsc;

use crate::attach::{RingKind, Shape, Source};
use crate::error::{Corruption, Error};
use crate::{Options, Result};

/// The sending end of a typed channel of `T` over ring kind `K`.
pub struct Sender<T: Pod, K: RingKind> {
    inner: crate::Sender<K>,
    _t: PhantomData<fn(T)>,
}

/// The receiving end of a typed channel of `T` over ring kind `K`.
pub struct Receiver<T: Pod, K: RingKind> {
    inner: crate::Receiver<K>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod, K: RingKind> core::fmt::Debug for Sender<T, K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("typed::Sender")
            .field("kind", &K::NAME)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Pod, K: RingKind> core::fmt::Debug for Receiver<T, K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("typed::Receiver")
            .field("kind", &K::NAME)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

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

/// How many messages of `frame_len` bytes a ring of `capacity` bytes holds at
/// least (the inverse of [`Shape::typed`]: one frame of room for the wrap's
/// padding and the end marker).
fn messages_in<T>(capacity: u64) -> u64 {
    let frame = shmq_ring::frame::frame_len(size_of::<T>()) as u64;
    let header = shmq_ring::frame::HEADER_LEN as u64;
    capacity.saturating_sub(frame + header) / frame
}

impl<T: Pod, K: RingKind> Sender<T, K> {
    /// Creates the channel under `name`; fails if it exists. The capacity in
    /// [`Options::capacity`] counts messages.
    ///
    /// # Errors
    /// As [`crate::Sender::create`].
    pub fn create(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Create(name), opts)
    }

    /// Opens the existing channel under `name`; its element type must be `T`.
    ///
    /// # Errors
    /// As [`crate::Sender::open`]; another element type is a layout mismatch.
    pub fn open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Open(name), opts)
    }

    /// Creates the channel under `name`, or opens it if it exists.
    ///
    /// # Errors
    /// As [`Sender::create`] and [`Sender::open`].
    pub fn create_or_open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateOrOpen(name), opts)
    }

    /// Opens an anonymous typed channel from a descriptor from another process.
    ///
    /// # Errors
    /// As [`crate::Sender::from_fd`].
    pub fn from_fd(fd: OwnedFd, opts: &Options) -> Result<Self> {
        Self::attach(Source::Fd(fd), opts)
    }

    fn attach(source: Source<'_>, opts: &Options) -> Result<Self> {
        let inner = crate::Sender::attach(source, &Shape::typed::<T, K>(opts), opts)?;
        Ok(Sender {
            inner,
            _t: PhantomData,
        })
    }

    /// Sends a copy of `value` without waiting.
    ///
    /// # Errors
    /// As [`crate::Sender::try_send`].
    pub fn try_send(&mut self, value: &T) -> Result<()> {
        self.inner.try_send(bytemuck::bytes_of(value))
    }

    /// Sends a copy of `value`, waiting for room.
    ///
    /// # Errors
    /// As [`crate::Sender::send`].
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.inner.send(bytemuck::bytes_of(value))
    }

    /// Sends a copy of `value`, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`crate::Sender::send_timeout`].
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.inner.send_timeout(bytemuck::bytes_of(value), timeout)
    }

    /// Sends as many of `values` as fit now, published together; returns how
    /// many were sent.
    ///
    /// # Errors
    /// As [`crate::Sender::try_send_batch`].
    pub fn try_send_batch<'v>(&mut self, values: impl IntoIterator<Item = &'v T>) -> Result<usize>
    where
        T: 'v,
    {
        self.inner
            .try_send_batch(values.into_iter().map(bytemuck::bytes_of))
    }

    /// Reserves room for one `T` without waiting; write it in place, then commit.
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    pub fn try_reserve(&mut self) -> Result<WriteGuard<'_, T, K>> {
        const { lendable::<T>() };
        Ok(reserved(self.inner.try_reserve(size_of::<T>())?))
    }

    /// Reserves room for one `T`, waiting.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn reserve(&mut self) -> Result<WriteGuard<'_, T, K>> {
        const { lendable::<T>() };
        Ok(reserved(self.inner.reserve(size_of::<T>())?))
    }

    /// Reserves room for one `T`, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Sender::send_timeout`].
    pub fn reserve_timeout(&mut self, timeout: Duration) -> Result<WriteGuard<'_, T, K>> {
        const { lendable::<T>() };
        Ok(reserved(
            self.inner.reserve_timeout(size_of::<T>(), timeout)?,
        ))
    }

    /// How many messages the channel holds at least.
    pub fn capacity(&self) -> u64 {
        messages_in::<T>(self.inner.capacity())
    }

    /// A duplicate of the channel's descriptor (see [`crate::Sender::export_fd`]).
    ///
    /// # Errors
    /// As [`crate::Sender::export_fd`].
    pub fn export_fd(&self) -> Result<OwnedFd> {
        self.inner.export_fd()
    }
}

impl<T: Pod> Sender<T, Mpsc> {
    /// Another sender on the same channel, with its own producer slot.
    ///
    /// # Errors
    /// As [`crate::Sender::try_clone`].
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Sender {
            inner: self.inner.try_clone()?,
            _t: PhantomData,
        })
    }

    /// This sender's producer slot.
    ///
    /// # Errors
    /// As [`crate::Sender::slot`].
    pub fn slot(&mut self) -> Result<u16> {
        self.inner.slot()
    }
}

impl<T: Pod, K: RingKind> Receiver<T, K> {
    /// Creates the channel under `name`; fails if it exists.
    ///
    /// # Errors
    /// As [`Sender::create`].
    pub fn create(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Create(name), opts)
    }

    /// Opens the existing channel under `name`; its element type must be `T`.
    ///
    /// # Errors
    /// As [`Sender::open`].
    pub fn open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Open(name), opts)
    }

    /// Creates the channel under `name`, or opens it if it exists.
    ///
    /// # Errors
    /// As [`Sender::create_or_open`].
    pub fn create_or_open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateOrOpen(name), opts)
    }

    /// Opens an anonymous typed channel from a descriptor from another process.
    ///
    /// # Errors
    /// As [`Sender::from_fd`].
    pub fn from_fd(fd: OwnedFd, opts: &Options) -> Result<Self> {
        Self::attach(Source::Fd(fd), opts)
    }

    fn attach(source: Source<'_>, opts: &Options) -> Result<Self> {
        let inner = crate::Receiver::attach(source, &Shape::typed::<T, K>(opts), opts)?;
        Ok(Receiver {
            inner,
            _t: PhantomData,
        })
    }

    /// Receives the next value without waiting.
    ///
    /// # Errors
    /// As [`crate::Receiver::try_recv`]; a frame of the wrong size is `Corrupted`.
    pub fn try_recv(&mut self) -> Result<T> {
        read(&self.inner.try_recv()?)
    }

    /// Receives the next value, waiting.
    ///
    /// # Errors
    /// As [`crate::Receiver::recv`].
    pub fn recv(&mut self) -> Result<T> {
        read(&self.inner.recv()?)
    }

    /// Receives the next value, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`crate::Receiver::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        read(&self.inner.recv_timeout(timeout)?)
    }

    /// Receives the next value in place, waiting; it is released when the
    /// guard drops.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_ref(&mut self) -> Result<ReadGuard<'_, T, K>> {
        const { lendable::<T>() };
        lend(self.inner.recv()?)
    }

    /// As [`Receiver::recv_ref`], without waiting.
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    pub fn try_recv_ref(&mut self) -> Result<ReadGuard<'_, T, K>> {
        const { lendable::<T>() };
        lend(self.inner.try_recv()?)
    }

    /// As [`Receiver::recv_ref`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Receiver::recv_timeout`].
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, T, K>> {
        const { lendable::<T>() };
        lend(self.inner.recv_timeout(timeout)?)
    }

    /// Hands up to `max` waiting values to `each`, in order, and releases them
    /// all with one store. Returns how many were handed over.
    ///
    /// # Errors
    /// As [`crate::Receiver::try_recv_batch`]; a frame of the wrong size (a peer
    /// that broke the protocol) is `Corrupted`, reported after the batch: every
    /// well-formed value in it was handed over, the malformed ones were not.
    pub fn try_recv_batch(&mut self, max: usize, mut each: impl FnMut(T)) -> Result<usize> {
        let mut bad = None;
        let n = self
            .inner
            .try_recv_batch(max, |bytes| match read::<T>(bytes) {
                Ok(v) => each(v),
                Err(e) => {
                    bad.get_or_insert(e);
                }
            })?;
        bad.map_or(Ok(n), Err)
    }

    /// How many messages the channel holds at least.
    pub fn capacity(&self) -> u64 {
        messages_in::<T>(self.inner.capacity())
    }

    /// A duplicate of the channel's descriptor (see [`crate::Sender::export_fd`]).
    ///
    /// # Errors
    /// As [`crate::Receiver::export_fd`].
    pub fn export_fd(&self) -> Result<OwnedFd> {
        self.inner.export_fd()
    }
}

impl<T: Pod> Receiver<T, Mpsc> {
    /// As [`crate::Receiver::expect_producers`].
    ///
    /// # Errors
    /// As [`crate::Receiver::expect_producers`].
    pub fn expect_producers(&mut self, n: u32) -> Result<()> {
        self.inner.expect_producers(n)
    }

    /// How many times producers have attached to this channel.
    ///
    /// # Errors
    /// As [`crate::Receiver::producer_attachments`].
    pub fn producer_attachments(&mut self) -> Result<u32> {
        self.inner.producer_attachments()
    }

    /// How many dead producers' claims this receiver has turned into padding.
    ///
    /// # Errors
    /// As [`crate::Receiver::reclaimed`].
    pub fn reclaimed(&mut self) -> Result<u64> {
        self.inner.reclaimed()
    }
}

/// A new anonymous typed channel of kind `K` (both ends, for `fork`).
///
/// # Errors
/// As [`crate::spsc::anonymous`].
pub fn anonymous<T: Pod, K: RingKind>(opts: &Options) -> Result<(Sender<T, K>, Receiver<T, K>)> {
    let (tx, rx) = crate::channel::anonymous::<K>(&Shape::typed::<T, K>(opts), opts)?;
    Ok((
        Sender {
            inner: tx,
            _t: PhantomData,
        },
        Receiver {
            inner: rx,
            _t: PhantomData,
        },
    ))
}
