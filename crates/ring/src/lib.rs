//! Lock-free rings for messages between processes: a single-producer
//! single-consumer ring ([`spsc`]), a many-producer single-consumer ring
//! ([`mpsc`]) and a one-publisher many-subscriber ring ([`broadcast`]), over
//! any region of memory.
//!
//! This crate knows nothing about files or names: a ring lives in a [`Region`],
//! which is a heap buffer in unit tests and `loom` models, and a shared mapping in
//! real use (the `shmq` crate makes those). Whether a peer process is still alive
//! is asked of a [`Liveness`] hook that the caller supplies.
//!
//! Messages are variable-length byte frames (8-byte header, 8-byte aligned,
//! contiguous in memory: see [`frame`]), written and read in place through guards
//! or copied. Blocking calls wait as a [`WaitStrategy`] says: spinning, then
//! sleeping on a shared futex that the other side wakes only when it knows it
//! sleeps, so that while both sides are awake a message costs no system call.
//! Every value read from shared memory is checked; a failed check is
//! [`Error::Corrupted`], never undefined behaviour or a panic.
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use shmq_ring::{Geometry, InProcess, Region, WaitConfig, spsc};
//!
//! let geometry = Geometry::spsc(4096)?; // checked once: a power of two in range
//! let region = Region::heap(geometry.region_len());
//! spsc::init(&region, geometry, 0)?;
//! let cfg = WaitConfig::default();
//! let mut tx = spsc::Producer::attach(&region, geometry, cfg, Arc::new(InProcess))?;
//! let mut rx = spsc::Consumer::attach(&region, geometry, cfg, Arc::new(InProcess))?;
//!
//! tx.send(b"hello")?;
//! let mut guard = tx.reserve(5)?;
//! guard.copy_from_slice(b"world");
//! guard.commit();
//!
//! assert_eq!(&*rx.recv()?, b"hello");
//! assert_eq!(&*rx.recv()?, b"world");
//! # Ok::<(), shmq_ring::Error>(())
//! ```
//!
//! # Map of the crate
//! - [`Producer<K>`](Producer), [`Consumer<K>`](Consumer), [`WriteGuard`],
//!   [`ReadGuard`]: every form of sending and receiving, written once over the
//!   ring kind `K` ([`Spsc`], [`Mpsc`]; each kind implements a small sealed core).
//! - [`spsc`]: the SPSC ring (`spsc::Producer` is `Producer<Spsc>`); [`mpsc`]:
//!   the MPSC ring, with recovery from producers that die mid-write;
//!   [`broadcast`]: one publisher, many subscribers (lossless or lossy).
//! - [`Geometry`]: capacity and producer slots, checked once.
//! - [`WaitStrategy`], [`WaitConfig`]: how blocking calls wait.
//! - [`Liveness`], [`Endpoint`]: the hook that says whether a peer is alive.
//! - [`select`]: wait until one of many consumers has a message.
//! - [`park`]: async waits, through one waiter thread per process.
//! - [`frame`]: the frame format and its checks.
//! - [`inspect`]: read-only views of a ring for tools.
//! - [`Error`]: every failure.
#![deny(unsafe_code)]

pub mod broadcast;
mod consumer;
mod ctl;
mod error;
pub mod failpoint;
pub mod frame;
mod geometry;
pub mod inspect;
mod kind;
mod local;
pub mod mpsc;
pub mod park;
mod peer;
mod producer;
mod region;
pub mod select;
mod shared;
pub mod spsc;
mod sync;
mod wait;
pub mod watch;

pub use consumer::{Consumer, ReadGuard};
pub use geometry::Geometry;
pub use kind::{Broadcast, Kind, Mpsc, Spsc};
pub use producer::{Producer, WriteGuard};

pub use error::{Corruption, Disconnect, Error, Result};
pub use peer::PeerStatus;
pub use region::{LINE, Region};
#[cfg(all(shmq_adversary, not(loom)))]
pub use sync::adversary;
pub use sync::futex_calls;
pub use wait::{
    DEFAULT_SPIN, DEFAULT_WAIT_SLICE, Doorbell, Endpoint, InProcess, Interrupter, Lifecycle,
    Liveness, Ringer, WaitConfig, WaitStrategy,
};
