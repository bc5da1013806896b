//! Broadcast channels: one [`Publisher`] writes each message once; up to the
//! channel's subscriber slots ([`Options::max_subscribers`], default
//! [`DEFAULT_SUBSCRIBERS`](crate::DEFAULT_SUBSCRIBERS)) read it, each at its
//! own position, in any number of processes.
//!
//! Each subscriber chooses how it receives ([`Options::subscribe`]):
//! - [`Mode::Lossless`] (the default): the publisher never overwrites a message
//!   it has not read; it waits for the slowest live lossless subscriber (or
//!   `try_send` says [`Error::Full`](crate::Error::Full)). One that dies is
//!   evicted as soon as the kernel reports it dead; one that is slow or stopped
//!   holds the publisher: that is what lossless means.
//! - [`Mode::Lossy`]: the publisher never waits for it. When it is lapped, its
//!   next receive says [`Error::Lagged`](crate::Error::Lagged) with the exact
//!   number of messages it missed, and it goes on from the oldest message still
//!   in the channel. What it receives is copied and checked, never torn.
//!
//! A subscriber joins at the next message or the oldest retained one
//! ([`Options::join`]) and may come and go at any time. Subscribers are
//! sessions: one that comes back joins anew. The protocol is in
//! docs/PROTOCOL.md, section 8.
//!
//! Subscribers' [`Receiver::doorbell`](crate::Receiver::doorbell) descriptors
//! are not rung by the publisher: they turn readable once a wait slice. Use
//! blocking receives, [`Select`](crate::Select) or the async forms instead.
//!
//! # Examples
//! ```
//! use shmq::{Options, broadcast};
//! let name = shmq::unique_name("doc-broadcast")?;
//! let mut tx = broadcast::Publisher::create(&name, &Options::new())?;
//! let mut fast = broadcast::Subscriber::open(&name, &Options::new())?;
//! let lossy = Options::new().subscribe(broadcast::Mode::Lossy);
//! let mut other = broadcast::Subscriber::open(&name, &lossy)?;
//! tx.send(b"tick 1")?;
//! assert_eq!(&*fast.recv()?, b"tick 1");
//! assert_eq!(&*other.recv()?, b"tick 1");
//! # Ok::<(), shmq::Error>(())
//! ```

use shmq_ring::Broadcast;
pub use shmq_ring::broadcast::{Join, MAX_CAPACITY, MAX_SUBSCRIBERS, Mode};

#[cfg(doc)]
use crate::Options;
use crate::channel::{Declared, Receiver, Sender, Typed};

/// The publishing end of a broadcast channel of byte messages.
pub type Publisher = Sender<Broadcast>;
/// A subscribing end of a broadcast channel of byte messages; each holds one
/// subscriber slot.
pub type Subscriber = Receiver<Broadcast>;
/// Room reserved for one message, written in place, then committed.
pub type WriteGuard<'a> = crate::WriteGuard<'a, Broadcast>;
/// A received message: in place for a lossless subscriber, a private copy
/// for a lossy one.
pub type ReadGuard<'a> = crate::ReadGuard<'a, Broadcast>;

/// Broadcast channels of fixed-size `bytemuck::Pod` messages.
pub mod typed {
    use super::*;

    /// The publishing end of a typed broadcast channel.
    pub type Publisher<T> = Sender<Broadcast, Typed<T>>;
    /// A subscribing end of a typed broadcast channel.
    pub type Subscriber<T> = Receiver<Broadcast, Typed<T>>;
}

/// Broadcast channels of messages with a declared name and version
/// ([`crate::Message`]), for programs built separately.
pub mod declared {
    use super::*;

    /// The publishing end of a declared-type broadcast channel.
    pub type Publisher<T> = Sender<Broadcast, Declared<T>>;
    /// A subscribing end of a declared-type broadcast channel.
    pub type Subscriber<T> = Receiver<Broadcast, Declared<T>>;
}
