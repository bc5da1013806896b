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

flavour! {
    Spsc, "SPSC", "spsc", "The";
    /// The sending end of an SPSC channel.
    Sender;
    /// Room reserved for one message, written in place, then committed.
    WriteGuard;
    /// A new anonymous channel (a sealed memfd): both ends, for use across `fork`.
    /// Each end attaches in the process that first uses it; drop the end a process
    /// does not use. [`Sender::export_fd`] passes the channel to an unrelated process.
    ///
    /// # Errors
    /// [`Error::InvalidCapacity`](crate::Error::InvalidCapacity),
    /// [`Error::Segment`](crate::Error::Segment) (`memfd_create`, sealing, mapping).
    anonymous;
}

/// The public items of a channel flavour's module (`spsc`, `mpsc`), written
/// once for both: the endpoint and guard aliases over the ring kind `$ring`,
/// `anonymous`, and the `typed` and `declared` submodules. `$name` is the
/// flavour as the docs spell it, `$module` its module, `$article` the article
/// of a typed sender's doc (the one SPSC sender, one of many MPSC senders);
/// the docs that differ more than that come with the items they document.
macro_rules! flavour {
    (
        $ring:ident, $name:literal, $module:literal, $article:literal;
        $(#[$sender:meta])* Sender;
        $(#[$write:meta])* WriteGuard;
        $(#[$anonymous:meta])* anonymous;
    ) => {
        $(#[$sender])*
        pub type Sender = crate::Sender<shmq_ring::$ring>;
        #[doc = concat!("The receiving end of an ", $name, " channel.")]
        pub type Receiver = crate::Receiver<shmq_ring::$ring>;
        $(#[$write])*
        pub type WriteGuard<'a> = crate::WriteGuard<'a, shmq_ring::$ring>;
        /// A received message, lent in place until the guard drops.
        pub type ReadGuard<'a> = crate::ReadGuard<'a, shmq_ring::$ring>;

        $(#[$anonymous])*
        pub fn anonymous(opts: &crate::Options) -> crate::Result<(Sender, Receiver)> {
            crate::channel::anonymous(opts)
        }

        crate::spsc::flavour! {
            @elements typed, $ring, $name, $article, "typed", Sender, Receiver,
            bytemuck::Pod, anonymous, "As [`crate::spsc::anonymous`].";
            #[doc = concat!(
                "Typed ", $name, " channels: fixed-size messages of a [`bytemuck::Pod`] type."
            )]
        }

        crate::spsc::flavour! {
            @elements declared, $ring, $name, $article, "declared-type", DeclaredSender,
            DeclaredReceiver, crate::Message, anonymous_declared,
            concat!(
                "As [`crate::", $module, "::anonymous`], and\n",
                "[`Error::InvalidMessageName`](crate::Error::InvalidMessageName)."
            );
            #[doc = concat!(
                $name, " channels of a [`Message`](crate::Message) type: fixed-size messages\n",
                "known by the type's declared name and version (see\n",
                "[`Declared`](crate::Declared)), so that programs built separately, each\n",
                "with its own definition of the type, talk."
            )]
        }
    };
    (
        @elements $module:ident, $ring:ident, $name:literal, $article:literal, $kind:literal,
        $sender:ident, $receiver:ident, $bound:path, $make:ident, $errors:expr;
        $(#[$doc:meta])*
    ) => {
        $(#[$doc])*
        pub mod $module {
            #[doc = concat!($article, " sending end of a ", $kind, " ", $name, " channel of `T`.")]
            pub type Sender<T> = crate::typed::$sender<T, shmq_ring::$ring>;
            #[doc = concat!("The receiving end of a ", $kind, " ", $name, " channel of `T`.")]
            pub type Receiver<T> = crate::typed::$receiver<T, shmq_ring::$ring>;
            /// Room reserved for one `T`.
            pub type WriteGuard<'a, T> = crate::typed::WriteGuard<'a, T, shmq_ring::$ring>;
            /// A received `T`, lent in place.
            pub type ReadGuard<'a, T> = crate::typed::ReadGuard<'a, T, shmq_ring::$ring>;

            #[doc = concat!(
                "A new anonymous ", $kind, " ", $name, " channel (both ends, for `fork`)."
            )]
            ///
            /// # Errors
            #[doc = $errors]
            pub fn anonymous<T: $bound>(
                opts: &crate::Options,
            ) -> crate::Result<(Sender<T>, Receiver<T>)> {
                crate::typed::$make(opts)
            }
        }
    };
}
pub(crate) use flavour;
