//! **shmq**: message channels between processes on one Linux host, through rings
//! in shared memory.
//!
//! Pipes and UNIX sockets copy every message through the kernel and usually cost a
//! system call and a wake-up each. A shmq channel is a ring buffer in shared memory
//! that the sender writes and the receiver reads in place: while both sides are
//! awake, a message costs no system call at all, and a sleeping side is woken
//! through a shared futex only when it really sleeps.
//!
//! - [`spsc`]: one sender, one receiver. [`mpsc`]: many senders (in many
//!   processes), one receiver; a sender that dies mid-message does not block it.
//! - Byte messages of any length up to half the ring, written and read in place or
//!   copied; typed messages of any [`bytemuck::Pod`] type (`spsc::typed`,
//!   `mpsc::typed`, known by the type's Rust name), or of a [`Message`] type
//!   that declares a stable name and version (`spsc::declared`,
//!   `mpsc::declared`), so that separately built programs agree on it.
//! - Named channels (`/dev/shm`) are queues: either side may start first, stop
//!   or crash and restart without losing a committed message. Anonymous ones for
//!   `fork` (`spsc::anonymous`), and channels passed to an unrelated process as a
//!   file descriptor, are sessions. [`Options::lifecycle`] chooses; the model and
//!   each call's delivery guarantee are in docs/LIFECYCLE.md.
//! - File channels (`create_file`, `open_file`, `create_or_open_file` on every
//!   [`Sender`] and [`Receiver`]): the ring lives in a file on a local file
//!   system and outlives every process and, as its [`Durability`] policy
//!   ([`Options::durability`]) says, a reboot; `sync()` forces it to the disk.
//! - One [`Sender<K, M>`](Sender) and [`Receiver<K, M>`](Receiver) over the ring
//!   kind `K` ([`Spsc`], [`Mpsc`]) and the message format `M` ([`Bytes`], the
//!   default, [`Typed<T>`](Typed) or [`Declared<T>`](Declared)): `spsc::Sender` is `Sender<Spsc>`,
//!   `mpsc::typed::Receiver<T>` is `Receiver<Mpsc, Typed<T>>`, and code written
//!   over `K: RingKind` works with either kind.
//! - [`Select`] waits on many receivers at once (asleep, one system call per
//!   sleep, none per message while messages keep coming).
//! - With the cargo feature `async`: `recv_async`, `send_async`,
//!   `reserve_async` and receivers as `futures_core::Stream`s (`stream`,
//!   `into_stream`), for any executor, cancellation-safe (see `RecvFuture`).
//! - Every blocking call has `try_` and `_timeout` forms; [`WaitStrategy`] chooses
//!   between spinning (lowest latency), sleeping, or spinning then sleeping (the
//!   default).
//! - A peer that dies is noticed within a wait slice (`Error::Disconnected` in a
//!   session; [`PeerState::Died`] and the peer waits such as
//!   [`Sender::peer_changed`] in a queue),
//!   through locks the kernel releases; a peer that writes garbage into shared
//!   memory, or truncates a named channel under us, gets [`Error::Corrupted`],
//!   never undefined behaviour or a `SIGBUS` in this process (see
//!   [`Options::sigbus_guard`]).
//!
//! # Examples
//! ```
//! use shmq::{Options, spsc};
//!
//! let name = shmq::unique_name("doc")?;
//! // In the producer process:
//! let mut tx = spsc::Sender::create_or_open(&name, &Options::new())?;
//! tx.send(b"hello")?;
//! let mut slot = tx.reserve(5)?; // zero-copy: write in place
//! slot.copy_from_slice(b"world");
//! slot.commit();
//!
//! // In the consumer process:
//! let mut rx = spsc::Receiver::create_or_open(&name, &Options::new())?;
//! assert_eq!(&*rx.recv()?, b"hello");
//! let mut buf = Vec::new();
//! rx.recv_into(&mut buf)?;
//! assert_eq!(buf, b"world");
//! # Ok::<(), shmq::Error>(())
//! ```
//!
//! # Crates
//! `shmq` is a facade over `shmq-segment` (shared memory, headers, liveness) and
//! `shmq-ring` (the ring algorithms, over any memory), and the only public
//! boundary: it re-exports neither crate, only the few types of theirs its API
//! names (the kind markers, the guards, the wait configuration,
//! [`SegmentOptions`]). `docs/ARCHITECTURE.md` has the map.
#![deny(unsafe_code)]

#[cfg(feature = "async")]
mod asynk;
mod attach;
pub mod broadcast;
mod channel;
mod doorbell;
mod durable;
mod error;
mod identity;
pub mod inspect;
mod mem;
pub mod mpsc;
mod options;
mod select;
pub mod spsc;
pub mod typed;

#[cfg(feature = "async")]
pub use asynk::{
    IntoStream, RecvFuture, RecvIntoFuture, RecvStream, RecvValueFuture, ReserveFuture, SendFuture,
    SendValueFuture,
};
pub use attach::{
    KIND_BROADCAST, KIND_BROADCAST_TYPED, KIND_MPSC, KIND_MPSC_TYPED, KIND_SPSC, KIND_SPSC_TYPED,
    PeerWatcher, RingKind,
};
pub use channel::{
    Bytes, Declared, Format, Iter, PeerState, ReadGuard, Receiver, Sender, Typed, WriteGuard,
    anonymous,
};
pub use doorbell::Doorbell;
pub use error::{Corruption, Disconnect, Error, Result};
pub use identity::{MAX_MESSAGE_NAME, Message, MessageType};
pub use options::{
    DEFAULT_CAPACITY, DEFAULT_PRODUCERS, DEFAULT_SUBSCRIBERS, DEFAULT_TYPED_CAPACITY, Options,
};
pub use select::Select;
pub use shmq_ring::{Broadcast, Mpsc, Spsc};
pub use shmq_ring::{
    DEFAULT_SPIN, DEFAULT_WAIT_SLICE, Interrupter, Lifecycle, WaitConfig, WaitStrategy, futex_calls,
};
pub use shmq_segment::{Durability, SegmentOptions, SyncRecord, unique_name, validate_name};

/// `bytemuck`, re-exported for message types. Its derives name the crate
/// `bytemuck` in the code they generate; through this re-export (without
/// `bytemuck` among your own dependencies), tell them where it is with
/// `#[bytemuck(crate = "shmq::bytemuck")]`:
///
/// ```
/// use shmq::bytemuck::{Pod, Zeroable};
///
/// #[derive(Clone, Copy, Pod, Zeroable)]
/// #[bytemuck(crate = "shmq::bytemuck")]
/// #[repr(C)]
/// struct Reading {
///     sensor: u32,
///     celsius: f32,
/// }
///
/// let (mut tx, mut rx) =
///     shmq::spsc::typed::anonymous::<Reading>(&shmq::Options::new().capacity(8))?;
/// tx.send(&Reading { sensor: 7, celsius: 21.5 })?;
/// assert_eq!(rx.recv()?.sensor, 7);
///
/// // A stable name and version, for programs built separately (see `Message`):
/// impl shmq::Message for Reading {
///     const NAME: &'static str = "sensors.Reading";
///     const VERSION: u32 = 1;
/// }
/// let (mut tx, mut rx) =
///     shmq::spsc::declared::anonymous::<Reading>(&shmq::Options::new().capacity(8))?;
/// tx.send(&Reading { sensor: 8, celsius: 19.0 })?;
/// assert_eq!(rx.recv()?.sensor, 8);
/// # Ok::<(), shmq::Error>(())
/// ```
pub use bytemuck;

/// Bytes a message of `len` bytes takes in a channel's ring, its 8-byte header
/// and padding to 8 bytes included: for sizing capacities and batches.
pub const fn message_footprint(len: usize) -> usize {
    shmq_ring::frame::frame_len(len)
}
