//! Single-producer single-consumer channels: one [`Sender`], one [`Receiver`].
//!
//! # Examples
//! Two endpoints by name (in real use, in two processes; either may start first):
//! ```
//! use shmq::{Options, spsc};
//! let name = shmq::unique_name("doc-spsc")?;
//! let mut tx = spsc::Sender::create_or_open(&name, &Options::new().capacity(4096))?;
//! let mut rx = spsc::Receiver::create_or_open(&name, &Options::new())?;
//! tx.send(b"hello")?;
//! assert_eq!(&*rx.recv()?, b"hello");
//! # Ok::<(), shmq::Error>(())
//! ```
//!
//! Across `fork`, with an anonymous (sealed memfd) channel:
//! ```no_run
//! use shmq::{Options, spsc};
//! let (mut tx, mut rx) = spsc::anonymous(&Options::new())?;
//! // SAFETY: a single-threaded program may fork.
//! match unsafe { nix::unistd::fork() }.expect("fork") {
//!     nix::unistd::ForkResult::Child => {
//!         drop(tx); // each process uses one end
//!         let msg = rx.recv()?.to_vec();
//!         assert_eq!(msg, b"from parent");
//!         std::process::exit(0);
//!     }
//!     nix::unistd::ForkResult::Parent { .. } => {
//!         drop(rx);
//!         tx.send(b"from parent")?;
//!     }
//! }
//! # Ok::<(), shmq::Error>(())
//! ```

use shmq_ring::spsc as ring;

use crate::attach::{self, End, Mapped, Shape};
use crate::macros::{named_constructors, receiver_methods, sender_methods};
use crate::{Options, Result};

pub use shmq_ring::spsc::{ReadGuard, WriteGuard};

/// The sending end of an SPSC channel.
pub struct Sender {
    end: End<ring::Producer>,
}

/// The receiving end of an SPSC channel.
pub struct Receiver {
    end: End<ring::Consumer>,
}

impl core::fmt::Debug for Sender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("spsc::Sender")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl core::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("spsc::Receiver")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Sender {
    named_constructors!(|o| Shape::bytes(false, o));
    sender_methods!(ring::Producer, WriteGuard);

    fn from_mapped(m: Mapped, opts: &Options) -> Result<Self> {
        Ok(Sender {
            end: End::attached(m, opts.wait)?,
        })
    }

    pub(crate) fn from_end(end: End<ring::Producer>) -> Self {
        Sender { end }
    }

    /// Sends as many of `msgs` as fit now, in order, published with one store and
    /// one notification. Returns how many were sent.
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
}

impl Receiver {
    named_constructors!(|o| Shape::bytes(false, o));
    receiver_methods!(ring::Consumer, ReadGuard);

    fn from_mapped(m: Mapped, opts: &Options) -> Result<Self> {
        Ok(Receiver {
            end: End::attached(m, opts.wait)?,
        })
    }

    pub(crate) fn from_end(end: End<ring::Consumer>) -> Self {
        Receiver { end }
    }
}

/// A new anonymous channel (a sealed memfd): both ends, for use across `fork`.
/// Each end attaches in the process that first uses it; drop the end a process
/// does not use. [`Sender::export_fd`] passes the channel to an unrelated process.
///
/// # Errors
/// [`Error::InvalidCapacity`](crate::Error::InvalidCapacity),
/// [`Error::Segment`](crate::Error::Segment) (`memfd_create`, sealing, mapping).
pub fn anonymous(opts: &Options) -> Result<(Sender, Receiver)> {
    let (a, b) = attach::anonymous(&Shape::bytes(false, opts), opts)?;
    Ok((
        Sender {
            end: End::pending(a, opts.wait),
        },
        Receiver {
            end: End::pending(b, opts.wait),
        },
    ))
}

/// Typed SPSC channels: fixed-size messages of a [`bytemuck::Pod`] type.
pub mod typed {
    crate::typed::typed_channel!(false);
}
