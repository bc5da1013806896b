//! Shared-memory segments for shmq: named POSIX objects, sealed anonymous memfds
//! and file-backed files, each with a validated header and per-endpoint liveness
//! markers that the kernel releases when a process dies.
//!
//! This crate knows nothing about rings: it maps memory, writes and checks a
//! header, and answers "is endpoint K alive?". The `shmq` crate builds channels
//! on top of it.
//!
//! # Examples
//! ```
//! use shmq_segment::{Expect, Layout, Segment, SegmentOptions};
//!
//! let name = shmq_segment::unique_name("doc")?;
//! let layout = Layout { kind: 1, endpoints: 2, data_len: 4096, ..Layout::default() };
//! let creating = Segment::create(&name, &layout, &SegmentOptions::new())?;
//! // ... initialise the region at `creating.data()` ...
//! let seg = creating.publish()?;
//! seg.claim_endpoint(0)?;
//!
//! let peer = Segment::open(&name, &Expect { kind: Some(1), ..Expect::default() }, &SegmentOptions::new())?;
//! assert!(peer.endpoint_alive(0)?);
//! drop(seg);
//! assert!(!peer.endpoint_alive(0)?);
//! Segment::unlink(&name)?;
//! # Ok::<(), shmq_segment::Error>(())
//! ```
//!
//! # Map of the crate
//! - [`Segment`]: a mapped, validated segment; [`Creating`] while its creator
//!   initialises it; [`Opened`] from [`Segment::create_or_open`].
//! - [`Layout`] (what a creator writes), [`Expect`] (what an opener requires),
//!   [`HeaderInfo`] (what a header says), [`HeaderFinding`] (one failed check of
//!   a header: its [`HeaderField`], what was [`Expected`], what was found, and its
//!   [`Severity`]).
//! - [`SegmentOptions`]: mode, populate, lock, huge pages, time-outs, trust checks,
//!   how a new segment is built before it is published under its name, the
//!   SIGBUS guard ([`SegmentOptions::sigbus_guard`], [`Segment::is_damaged`],
//!   [`sigbus_guard_installed`]).
//! - Clean-up: [`Segment::remove_dead_temporaries`] (temporaries named
//!   [`TEMPORARY_PREFIX`]…, left by creators killed while building),
//!   [`Segment::remove_if_stale`], [`Leftover`]s of older versions.
//! - [`Error`]: every failure, one variant per case.
#![deny(unsafe_code)]

pub mod bell;
mod error;
mod fork;
mod guard;
mod header;
mod map;
mod name;
mod segment;
mod sys;
mod xfsz;

pub use error::{Error, Result};
pub use fork::fork_generation;
pub use guard::{POISON_LEN as GUARD_POISON_LEN, SLOTS as GUARD_SLOTS, sigbus_guard_installed};
pub use header::{
    DATA_ALIGN, DURABILITY_OFFSET, DURABILITY_RECORD_LEN, Durability, ENDPOINT_RECORD_LEN,
    ENDPOINT_TABLE_OFFSET, Expect, Expected, HEADER_LEN, HeaderField, HeaderFinding, HeaderInfo,
    Layout, MAGIC, MAX_ENDPOINTS, STATE_INIT, STATE_READY, Severity, SyncRecord,
    TYPE_NAME_FIELD_LEN, TYPE_NAME_MAX, TYPE_NAME_OFFSET, TypeName, VERSION,
};
pub use name::{NAME_MAX, unique_name, validate_name};
pub use segment::{
    Backing, Creating, EndpointInfo, Leftover, Opened, Peek, Segment, SegmentOptions,
    TEMPORARY_PREFIX,
};
