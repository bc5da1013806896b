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

/// A sending end of an MPSC channel; each holds one producer slot.
pub type Sender = crate::Sender<shmq_ring::Mpsc>;
/// The receiving end of an MPSC channel.
pub type Receiver = crate::Receiver<shmq_ring::Mpsc>;
/// A claimed frame, written in place, then committed; dropped uncommitted, the
/// claim becomes padding.
pub type WriteGuard<'a> = crate::WriteGuard<'a, shmq_ring::Mpsc>;
/// A received message, lent in place until the guard drops.
pub type ReadGuard<'a> = crate::ReadGuard<'a, shmq_ring::Mpsc>;

/// A new anonymous MPSC channel (a sealed memfd), for use across `fork`: give
/// each child its own [`Sender::try_clone`] (made before forking; it attaches in
/// the process that first uses it).
///
/// # Errors
/// As [`crate::spsc::anonymous`].
pub fn anonymous(opts: &crate::Options) -> crate::Result<(Sender, Receiver)> {
    crate::channel::anonymous(opts)
}

/// Typed MPSC channels: fixed-size messages of a [`bytemuck::Pod`] type.
pub mod typed {
    /// A sending end of a typed MPSC channel of `T`.
    pub type Sender<T> = crate::typed::Sender<T, shmq_ring::Mpsc>;
    /// The receiving end of a typed MPSC channel of `T`.
    pub type Receiver<T> = crate::typed::Receiver<T, shmq_ring::Mpsc>;
    /// Room reserved for one `T`.
    pub type WriteGuard<'a, T> = crate::typed::WriteGuard<'a, T, shmq_ring::Mpsc>;
    /// A received `T`, lent in place.
    pub type ReadGuard<'a, T> = crate::typed::ReadGuard<'a, T, shmq_ring::Mpsc>;

    /// A new anonymous typed MPSC channel (both ends, for `fork`).
    ///
    /// # Errors
    /// As [`crate::spsc::anonymous`].
    pub fn anonymous<T: bytemuck::Pod>(
        opts: &crate::Options,
    ) -> crate::Result<(Sender<T>, Receiver<T>)> {
        crate::typed::anonymous(opts)
    }
}

/// MPSC channels of a [`Message`](crate::Message) type: fixed-size messages
/// known by the type's declared name and version (see
/// [`Declared`](crate::Declared)), so that programs built separately, each
/// with its own definition of the type, talk.
pub mod declared {
    /// A sending end of a declared-type MPSC channel of `T`.
    pub type Sender<T> = crate::typed::DeclaredSender<T, shmq_ring::Mpsc>;
    /// The receiving end of a declared-type MPSC channel of `T`.
    pub type Receiver<T> = crate::typed::DeclaredReceiver<T, shmq_ring::Mpsc>;
    /// Room reserved for one `T`.
    pub type WriteGuard<'a, T> = crate::typed::WriteGuard<'a, T, shmq_ring::Mpsc>;
    /// A received `T`, lent in place.
    pub type ReadGuard<'a, T> = crate::typed::ReadGuard<'a, T, shmq_ring::Mpsc>;

    /// A new anonymous declared-type MPSC channel (both ends, for `fork`).
    ///
    /// # Errors
    /// As [`crate::mpsc::anonymous`], and
    /// [`Error::InvalidMessageName`](crate::Error::InvalidMessageName).
    pub fn anonymous<T: crate::Message>(
        opts: &crate::Options,
    ) -> crate::Result<(Sender<T>, Receiver<T>)> {
        crate::typed::anonymous_declared(opts)
    }
}
