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

crate::spsc::flavour! {
    Mpsc, "MPSC", "mpsc", "A";
    /// A sending end of an MPSC channel; each holds one producer slot.
    Sender;
    /// A claimed frame, written in place, then committed; dropped uncommitted, the
    /// claim becomes padding.
    WriteGuard;
    /// A new anonymous MPSC channel (a sealed memfd), for use across `fork`: give
    /// each child its own [`Sender::try_clone`] (made before forking; it attaches in
    /// the process that first uses it).
    ///
    /// # Errors
    /// As [`crate::spsc::anonymous`].
    anonymous;
}
