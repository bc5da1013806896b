//! Typed channels: messages of one `bytemuck::Pod` type, in fixed-size frames of
//! the byte ring (so a typed message, like a byte one, shares its cache line with
//! the header the receiver polls). The header records the type's size, alignment
//! and a hash of its name; opening with another type is
//! [`LayoutMismatch`](shmq_segment::Error::LayoutMismatch).

use crate::error::{Corruption, Error};

/// A frame of the wrong length in a typed channel: the peer broke the protocol.
pub(crate) fn wrong_length(len: usize, want: usize) -> Error {
    Error::Corrupted(Corruption {
        what: "typed message length",
        position: 0,
        value: (len as u64) << 32 | want as u64,
    })
}

/// Defines `Sender<T>`, `Receiver<T>`, `anonymous::<T>()` and the typed guards
/// over the given byte endpoints.
/// Expanded inside `spsc::typed` and `mpsc::typed`, whose parent module holds the
/// byte `Sender`, `Receiver`, `WriteGuard` and `ReadGuard`.
macro_rules! typed_channel {
    ($mpsc:expr) => {
        use std::marker::PhantomData;
        use std::time::Duration;

        use bytemuck::Pod;

        use crate::attach::{self, End, Shape};
        use crate::{Options, Result};

        type ByteWrite<'a> = super::WriteGuard<'a>;
        type ByteRead<'a> = super::ReadGuard<'a>;

        /// The sending end of a typed channel of `T`.
        pub struct Sender<T: Pod> {
            inner: super::Sender,
            _t: PhantomData<fn(T)>,
        }

        /// The receiving end of a typed channel of `T`.
        pub struct Receiver<T: Pod> {
            inner: super::Receiver,
            _t: PhantomData<fn() -> T>,
        }

        impl<T: Pod> core::fmt::Debug for Sender<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct("typed::Sender")
                    .field("type", &std::any::type_name::<T>())
                    .finish()
            }
        }

        impl<T: Pod> core::fmt::Debug for Receiver<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct("typed::Receiver")
                    .field("type", &std::any::type_name::<T>())
                    .finish()
            }
        }

        /// Room reserved for one `T`, written in place, then [`WriteGuard::commit`]ted.
        pub struct WriteGuard<'a, T: Pod> {
            inner: ByteWrite<'a>,
            _t: PhantomData<&'a mut T>,
        }

        impl<T: Pod> WriteGuard<'_, T> {
            /// Publishes the message.
            pub fn commit(self) {
                self.inner.commit();
            }
        }

        impl<T: Pod> core::ops::Deref for WriteGuard<'_, T> {
            type Target = T;
            fn deref(&self) -> &T {
                bytemuck::from_bytes(&self.inner)
            }
        }

        impl<T: Pod> core::ops::DerefMut for WriteGuard<'_, T> {
            fn deref_mut(&mut self) -> &mut T {
                bytemuck::from_bytes_mut(&mut self.inner)
            }
        }

        /// A received `T`, lent in place until the guard drops.
        pub struct ReadGuard<'a, T: Pod> {
            inner: ByteRead<'a>,
            _t: PhantomData<&'a T>,
        }

        impl<T: Pod> core::ops::Deref for ReadGuard<'_, T> {
            type Target = T;
            fn deref(&self) -> &T {
                bytemuck::from_bytes(&self.inner)
            }
        }

        fn shape<T: Pod>(opts: &Options) -> Shape {
            Shape::typed::<T>($mpsc, opts)
        }

        /// Frames are 8-aligned, so a `T` can be lent in place only if its alignment
        /// is at most 8; larger alignments use the copying calls.
        const fn lendable<T>() {
            assert!(
                align_of::<T>() <= 8,
                "zero-copy typed access needs align_of::<T>() <= 8; use the copying calls"
            );
        }

        fn read<T: Pod>(bytes: &[u8]) -> Result<T> {
            if bytes.len() != size_of::<T>() {
                return Err(crate::typed::wrong_length(bytes.len(), size_of::<T>()));
            }
            Ok(bytemuck::pod_read_unaligned(bytes))
        }

        impl<T: Pod> Sender<T> {
            crate::macros::named_constructors!(shape::<T>);

            fn from_mapped(m: attach::Mapped, opts: &Options) -> Result<Self> {
                Ok(Sender {
                    inner: super::Sender::from_end(End::attached(m, opts.wait)?),
                    _t: PhantomData,
                })
            }

            /// Sends a copy of `value` without waiting.
            ///
            /// # Errors
            /// As the byte sender's `try_send`.
            pub fn try_send(&mut self, value: &T) -> Result<()> {
                self.inner.try_send(bytemuck::bytes_of(value))
            }

            /// Sends a copy of `value`, waiting for room.
            ///
            /// # Errors
            /// As the byte sender's `send`.
            pub fn send(&mut self, value: &T) -> Result<()> {
                self.inner.send(bytemuck::bytes_of(value))
            }

            /// Sends a copy of `value`, waiting at most `timeout`.
            ///
            /// # Errors
            /// As the byte sender's `send_timeout`.
            pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
                self.inner.send_timeout(bytemuck::bytes_of(value), timeout)
            }

            /// Reserves room for one `T` without waiting; write it in place, then commit.
            ///
            /// # Errors
            /// As [`Sender::try_send`].
            pub fn try_reserve(&mut self) -> Result<WriteGuard<'_, T>> {
                const { lendable::<T>() };
                Ok(WriteGuard {
                    inner: self.inner.try_reserve(size_of::<T>())?,
                    _t: PhantomData,
                })
            }

            /// Reserves room for one `T`, waiting.
            ///
            /// # Errors
            /// As [`Sender::send`].
            pub fn reserve(&mut self) -> Result<WriteGuard<'_, T>> {
                const { lendable::<T>() };
                Ok(WriteGuard {
                    inner: self.inner.reserve(size_of::<T>())?,
                    _t: PhantomData,
                })
            }

            /// Reserves room for one `T`, waiting at most `timeout`.
            ///
            /// # Errors
            /// As [`Sender::send_timeout`].
            pub fn reserve_timeout(&mut self, timeout: Duration) -> Result<WriteGuard<'_, T>> {
                const { lendable::<T>() };
                Ok(WriteGuard {
                    inner: self.inner.reserve_timeout(size_of::<T>(), timeout)?,
                    _t: PhantomData,
                })
            }
        }

        impl<T: Pod> Receiver<T> {
            crate::macros::named_constructors!(shape::<T>);

            fn from_mapped(m: attach::Mapped, opts: &Options) -> Result<Self> {
                Ok(Receiver {
                    inner: super::Receiver::from_end(End::attached(m, opts.wait)?),
                    _t: PhantomData,
                })
            }

            /// Receives the next value without waiting.
            ///
            /// # Errors
            /// As the byte receiver's `try_recv`; a frame of the wrong size is `Corrupted`.
            pub fn try_recv(&mut self) -> Result<T> {
                read(&self.inner.try_recv()?)
            }

            /// Receives the next value, waiting.
            ///
            /// # Errors
            /// As the byte receiver's `recv`.
            pub fn recv(&mut self) -> Result<T> {
                read(&self.inner.recv()?)
            }

            /// Receives the next value, waiting at most `timeout`.
            ///
            /// # Errors
            /// As the byte receiver's `recv_timeout`.
            pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
                read(&self.inner.recv_timeout(timeout)?)
            }

            /// Receives the next value in place, waiting; it is released when the
            /// guard drops.
            ///
            /// # Errors
            /// As [`Receiver::recv`].
            pub fn recv_ref(&mut self) -> Result<ReadGuard<'_, T>> {
                const { lendable::<T>() };
                lend(self.inner.recv()?)
            }

            /// As [`Receiver::recv_ref`], without waiting.
            ///
            /// # Errors
            /// As [`Receiver::try_recv`].
            pub fn try_recv_ref(&mut self) -> Result<ReadGuard<'_, T>> {
                const { lendable::<T>() };
                lend(self.inner.try_recv()?)
            }

            /// As [`Receiver::recv_ref`], waiting at most `timeout`.
            ///
            /// # Errors
            /// As [`Receiver::recv_timeout`].
            pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, T>> {
                const { lendable::<T>() };
                lend(self.inner.recv_timeout(timeout)?)
            }
        }

        fn lend<T: Pod>(inner: ByteRead<'_>) -> Result<ReadGuard<'_, T>> {
            if inner.len() != size_of::<T>() {
                return Err(crate::typed::wrong_length(inner.len(), size_of::<T>()));
            }
            Ok(ReadGuard {
                inner,
                _t: PhantomData,
            })
        }

        /// A new anonymous typed channel (both ends, for `fork`).
        ///
        /// # Errors
        /// As the byte `anonymous`.
        pub fn anonymous<T: Pod>(opts: &Options) -> Result<(Sender<T>, Receiver<T>)> {
            let (a, b) = attach::anonymous(&shape::<T>(opts), opts)?;
            Ok((
                Sender {
                    inner: super::Sender::from_end(End::pending(a, opts.wait)),
                    _t: PhantomData,
                },
                Receiver {
                    inner: super::Receiver::from_end(End::pending(b, opts.wait)),
                    _t: PhantomData,
                },
            ))
        }
    };
}

pub(crate) use typed_channel;
