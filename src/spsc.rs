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

/// The sending end of an SPSC channel.
pub type Sender = crate::Sender<shmq_ring::Spsc>;
/// The receiving end of an SPSC channel.
pub type Receiver = crate::Receiver<shmq_ring::Spsc>;
/// Room reserved for one message, written in place, then committed.
pub type WriteGuard<'a> = crate::WriteGuard<'a, shmq_ring::Spsc>;
/// A received message, lent in place until the guard drops.
pub type ReadGuard<'a> = crate::ReadGuard<'a, shmq_ring::Spsc>;

/// A new anonymous channel (a sealed memfd): both ends, for use across `fork`.
/// Each end attaches in the process that first uses it; drop the end a process
/// does not use. [`Sender::export_fd`] passes the channel to an unrelated process.
///
/// # Errors
/// [`Error::InvalidCapacity`](crate::Error::InvalidCapacity),
/// [`Error::Segment`](crate::Error::Segment) (`memfd_create`, sealing, mapping).
pub fn anonymous(opts: &crate::Options) -> crate::Result<(Sender, Receiver)> {
    crate::channel::anonymous(opts)
}

/// Typed SPSC channels: fixed-size messages of a [`bytemuck::Pod`] type.
pub mod typed {
    /// The sending end of a typed SPSC channel of `T`.
    pub type Sender<T> = crate::typed::Sender<T, shmq_ring::Spsc>;
    /// The receiving end of a typed SPSC channel of `T`.
    pub type Receiver<T> = crate::typed::Receiver<T, shmq_ring::Spsc>;
    /// Room reserved for one `T`.
    pub type WriteGuard<'a, T> = crate::typed::WriteGuard<'a, T, shmq_ring::Spsc>;
    /// A received `T`, lent in place.
    pub type ReadGuard<'a, T> = crate::typed::ReadGuard<'a, T, shmq_ring::Spsc>;

    /// A new anonymous typed SPSC channel (both ends, for `fork`).
    ///
    /// # Errors
    /// As [`crate::spsc::anonymous`].
    pub fn anonymous<T: bytemuck::Pod>(
        opts: &crate::Options,
    ) -> crate::Result<(Sender<T>, Receiver<T>)> {
        crate::typed::anonymous(opts)
    }
}

/// SPSC channels of a [`Message`](crate::Message) type: fixed-size messages
/// known by the type's declared name and version (see
/// [`Declared`](crate::Declared)), so that programs built separately, each
/// with its own definition of the type, talk.
pub mod declared {
    /// The sending end of a declared-type SPSC channel of `T`.
    pub type Sender<T> = crate::typed::DeclaredSender<T, shmq_ring::Spsc>;
    /// The receiving end of a declared-type SPSC channel of `T`.
    pub type Receiver<T> = crate::typed::DeclaredReceiver<T, shmq_ring::Spsc>;
    /// Room reserved for one `T`.
    pub type WriteGuard<'a, T> = crate::typed::WriteGuard<'a, T, shmq_ring::Spsc>;
    /// A received `T`, lent in place.
    pub type ReadGuard<'a, T> = crate::typed::ReadGuard<'a, T, shmq_ring::Spsc>;

    /// A new anonymous declared-type SPSC channel (both ends, for `fork`).
    ///
    /// # Errors
    /// As [`crate::spsc::anonymous`], and
    /// [`Error::InvalidMessageName`](crate::Error::InvalidMessageName).
    pub fn anonymous<T: crate::Message>(
        opts: &crate::Options,
    ) -> crate::Result<(Sender<T>, Receiver<T>)> {
        crate::typed::anonymous_declared(opts)
    }
}
