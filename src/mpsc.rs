//! Many-producer single-consumer channels: any number of [`Sender`]s (up to the
//! channel's producer slots), in any number of processes, and one [`Receiver`].
//!
//! Producers that die in the middle of writing a message do not block the
//! channel: once the kernel reports them dead, the receiver turns their claimed
//! space into padding and goes on; everything they committed before dying is
//! delivered exactly once. All producers share one ring, so a misbehaving producer
//! can disturb the others; producers that do not trust each other should each get
//! an SPSC channel.
//!
//! # Examples
//! ```
//! use shmq::{Options, mpsc};
//! let name = shmq::unique_name("doc-mpsc")?;
//! let mut rx = mpsc::Receiver::create(&name, &Options::new().max_producers(4))?;
//! let mut a = mpsc::Sender::open(&name, &Options::new())?;
//! let mut b = a.try_clone()?;
//! a.send(b"from a")?;
//! b.send(b"from b")?;
//! assert_eq!(&*rx.recv()?, b"from a");
//! assert_eq!(&*rx.recv()?, b"from b");
//! # Ok::<(), shmq::Error>(())
//! ```

use shmq_ring::mpsc as ring;

use crate::attach::{self, End, Mapped, Shape};
use crate::macros::{named_constructors, receiver_methods, sender_methods};
use crate::{Options, Result};

pub use shmq_ring::mpsc::{ReadGuard, WriteGuard};

/// A sending end of an MPSC channel; each holds one producer slot.
pub struct Sender {
    end: End<ring::Producer>,
}

/// The receiving end of an MPSC channel.
pub struct Receiver {
    end: End<ring::Consumer>,
}

impl core::fmt::Debug for Sender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("mpsc::Sender")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl core::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("mpsc::Receiver")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Sender {
    named_constructors!(|o| Shape::bytes(true, o));
    sender_methods!(ring::Producer, WriteGuard);

    fn from_mapped(m: Mapped, opts: &Options) -> Result<Self> {
        Ok(Sender {
            end: End::attached(m, opts.wait)?,
        })
    }

    pub(crate) fn from_end(end: End<ring::Producer>) -> Self {
        Sender { end }
    }

    /// Another sender on the same channel, with its own producer slot.
    ///
    /// # Errors
    /// [`Error::TooManyProducers`](crate::Error::TooManyProducers) if every slot is
    /// taken, [`Error::Segment`](crate::Error::Segment) if re-opening fails.
    pub fn try_clone(&self) -> Result<Sender> {
        Ok(Sender {
            end: self.end.try_clone()?,
        })
    }

    /// Sends as many of `msgs` as fit now (at most 64), with one claim and one
    /// publication; returns how many were sent.
    ///
    /// # Errors
    /// [`Error::Full`](crate::Error::Full) if not even the first fits, otherwise as
    /// [`Sender::try_send`].
    pub fn try_send_batch<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = &'m [u8]>,
    ) -> Result<usize> {
        Ok(self.end.ring()?.try_send_batch(msgs)?)
    }

    /// This sender's producer slot.
    ///
    /// # Errors
    /// As for sending, if the sender has not attached yet and cannot.
    pub fn slot(&mut self) -> Result<u16> {
        Ok(self.end.ring()?.slot())
    }
}

impl Clone for Sender {
    /// # Panics
    /// If no producer slot is free; use [`Sender::try_clone`] to handle that.
    fn clone(&self) -> Self {
        self.try_clone()
            .expect("cloning an mpsc::Sender needs a free producer slot")
    }
}

impl Receiver {
    named_constructors!(|o| Shape::bytes(true, o));
    receiver_methods!(ring::Consumer, ReadGuard);

    fn from_mapped(m: Mapped, opts: &Options) -> Result<Self> {
        Ok(Receiver {
            end: End::attached(m, opts.wait)?,
        })
    }

    pub(crate) fn from_end(end: End<ring::Consumer>) -> Self {
        Receiver { end }
    }

    /// Report [`Error::Disconnected`](crate::Error::Disconnected) only once at least
    /// `n` producers have attached (default 1), so that a receiver started before
    /// its producers does not give up early.
    ///
    /// # Errors
    /// As for receiving, if the receiver has not attached yet and cannot.
    pub fn expect_producers(&mut self, n: u32) -> Result<()> {
        self.end.ring()?.expect_producers(n);
        Ok(())
    }

    /// How many times producers have attached to this channel.
    ///
    /// # Errors
    /// As [`Receiver::expect_producers`].
    pub fn producer_attachments(&mut self) -> Result<u32> {
        Ok(self.end.ring()?.producer_attachments())
    }

    /// How many dead producers' claims this receiver has turned into padding.
    ///
    /// # Errors
    /// As [`Receiver::expect_producers`].
    pub fn reclaimed(&mut self) -> Result<u64> {
        Ok(self.end.ring()?.reclaimed())
    }
}

/// A new anonymous MPSC channel (a sealed memfd), for use across `fork`: give
/// each child its own [`Sender::try_clone`] (made before forking; it attaches in
/// the process that first uses it).
///
/// # Errors
/// As [`crate::spsc::anonymous`].
pub fn anonymous(opts: &Options) -> Result<(Sender, Receiver)> {
    let (a, b) = attach::anonymous(&Shape::bytes(true, opts), opts)?;
    Ok((
        Sender {
            end: End::pending(a, opts.wait),
        },
        Receiver {
            end: End::pending(b, opts.wait),
        },
    ))
}

/// Typed MPSC channels: fixed-size messages of a [`bytemuck::Pod`] type.
pub mod typed {
    crate::typed::typed_channel!(true);
}
