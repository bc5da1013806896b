//! File channels that outlive every process and a reboot: their constructors
//! (`create_file`, `open_file`, `create_or_open_file`), the explicit
//! [`Sender::sync`]/[`Receiver::sync`], and the [`Syncer`] that carries out a
//! channel's [`Durability`] policy.
//!
//! # Who syncs, and when
//! The side that commits: after each successful call on a handle of a file
//! channel whose policy is not `None`, the handle counts a commit and, when
//! the policy's budget is spent (every commit; or `messages` commits, or
//! `interval` since the last sync), writes the file back with
//! `msync(MS_SYNC)` before the call returns. No thread, no timer, no lock
//! shared with the peer: the cost lands on the call that made the data, and a
//! test can count it. The price is that a periodic budget is only looked at
//! when a call is made: an end that goes quiet syncs what it did at its next
//! call, at [`Sender::sync`]/[`Receiver::sync`], or when it is dropped.
//!
//! A send returns after the sync that covers it. A [`WriteGuard`](crate::WriteGuard)
//! is committed after the call that returned it, so its commit is synced by
//! the handle's next call (or `sync()`, or drop); a received message's
//! release likewise (the consumer's position is synced one call late: after a
//! power loss the last message received before it may be received again,
//! the documented at-least-once message).
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use shmq::{Durability, Options, spsc};
//!
//! let dir = std::env::temp_dir().join(format!("shmq-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("orders");
//! let opts = Options::new().durability(Durability::Periodic {
//!     interval: Duration::from_millis(100),
//!     messages: 1000,
//! });
//! let mut tx = spsc::Sender::create_or_open_file(&path, &opts)?;
//! tx.send(b"order 1")?;
//! tx.sync()?; // on the disk now, whatever the policy
//! drop(tx); // every process gone: the message waits in the file
//!
//! let mut rx = spsc::Receiver::open_file(&path, &Options::new())?;
//! assert_eq!(&*rx.recv()?, b"order 1");
//! drop(rx); // drained: the file is removed
//! assert!(!path.exists());
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A failed sync (an I/O error) cannot be retried reliably (the kernel may
//! have dropped the pages it could not write): the call that made it keeps its
//! result (the message is in the page cache), and every later call on the
//! handle returns the error.

use std::path::Path;
use std::time::Instant;

use shmq_segment::{Backing, Durability, Segment};

use crate::attach::{RingKind, Source};
use crate::channel::{Format, Receiver, Sender};
use crate::error::{Error, Result};
use crate::options::Options;

/// Carries out a file channel's durability policy for one handle.
#[derive(Debug)]
pub(crate) struct Syncer {
    policy: Durability,
    /// Commits since the last sync.
    pending: u64,
    /// When the last sync completed (or the handle attached).
    last: Instant,
    /// The errno of a failed sync: every later call reports it.
    failed: Option<i32>,
}

impl Syncer {
    /// The syncer for a handle on `seg`: `None` unless it is a file whose
    /// recorded policy syncs.
    pub(crate) fn for_segment(seg: &Segment) -> Result<Option<Syncer>> {
        if !matches!(seg.backing(), Backing::File(_)) {
            return Ok(None);
        }
        Ok(match seg.durability()? {
            Durability::None => None,
            policy => Some(Syncer {
                policy,
                pending: 0,
                last: Instant::now(),
                failed: None,
            }),
        })
    }

    /// The error of an earlier failed sync, if any.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        match self.failed {
            None => Ok(()),
            Some(errno) => Err(sync_error(errno)),
        }
    }

    /// One successful call: syncs if the policy's budget is spent. A failure is
    /// recorded (see the module docs), not returned.
    #[inline]
    pub(crate) fn committed(&mut self, seg: &Segment) {
        self.pending += 1;
        let due = match self.policy {
            Durability::None => false,
            Durability::EveryCommit => true,
            Durability::Periodic { interval, messages } => {
                (messages != 0 && self.pending >= messages)
                    || (!interval.is_zero() && self.last.elapsed() >= interval)
            }
        };
        if due {
            let _ = self.sync(seg);
        }
    }

    /// Syncs now; a failure is recorded and returned.
    #[cold]
    pub(crate) fn sync(&mut self, seg: &Segment) -> Result<()> {
        self.check()?;
        match seg.sync() {
            Ok(()) => {
                self.pending = 0;
                self.last = Instant::now();
                Ok(())
            }
            Err(shmq_segment::Error::Os { source, .. }) => {
                let errno = source.raw_os_error().unwrap_or(EIO);
                self.failed = Some(errno);
                Err(sync_error(errno))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `EIO` (Linux), for an error that carries no errno.
const EIO: i32 = 5;

fn sync_error(errno: i32) -> Error {
    Error::Segment(shmq_segment::Error::Os {
        op: "msync (durability sync)",
        source: std::io::Error::from_raw_os_error(errno),
    })
}

impl<K: RingKind, M: Format> Sender<K, M> {
    /// Creates a file channel at `path` on a local file system; fails if
    /// something is there. The file is built under a temporary name in the same
    /// directory and named once complete (never following a symbolic link);
    /// its space is reserved (`posix_fallocate`), so a full disk is
    /// [`NoSpace`](shmq_segment::Error::NoSpace) now, never `SIGBUS` later.
    /// [`Options::durability`] chooses when writes reach the disk; with a
    /// policy other than `None`, the file and then its directory are synced
    /// before this returns. Like a named channel, a file channel is a queue
    /// (docs/LIFECYCLE.md), and the last end to close removes it if it is
    /// drained.
    ///
    /// # Errors
    /// As [`Sender::create`], with paths for names.
    pub fn create_file(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateFile(path.as_ref()), opts)
    }

    /// Opens the file channel at `path`: the same checks as a named channel
    /// (owner, mode, a regular file with one link, not a symbolic link, every
    /// header field), and the durability policy recorded in it is followed.
    ///
    /// # Errors
    /// As [`Sender::open`]; [`Error::WrongDurability`] if
    /// [`Options::durability`] is set to another policy.
    pub fn open_file(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        Self::attach(Source::OpenFile(path.as_ref()), opts)
    }

    /// Creates the file channel at `path`, or opens it if it exists.
    ///
    /// # Errors
    /// As [`Sender::create_file`] and [`Sender::open_file`].
    pub fn create_or_open_file(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateOrOpenFile(path.as_ref()), opts)
    }

    /// Writes everything committed so far back to the file and waits
    /// (`msync(MS_SYNC)`), whatever the policy: once it returns, the messages
    /// sent before survive a power loss. A no-op for channels that are not files.
    ///
    /// # Errors
    /// [`Error::Segment`] with the I/O error; after one, every call on this
    /// handle reports it (see [`Durability`]).
    pub fn sync(&mut self) -> Result<()> {
        self.end.sync()
    }
}

impl<K: RingKind, M: Format> Receiver<K, M> {
    /// Creates a file channel at `path` (see [`Sender::create_file`]).
    ///
    /// # Errors
    /// As [`Sender::create_file`].
    pub fn create_file(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateFile(path.as_ref()), opts)
    }

    /// Opens the file channel at `path` (see [`Sender::open_file`]). The
    /// consumer's position lives in the file: a receiver that opens it after
    /// another one stopped (or died, or the machine restarted) resumes there.
    ///
    /// # Errors
    /// As [`Sender::open_file`].
    pub fn open_file(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        Self::attach(Source::OpenFile(path.as_ref()), opts)
    }

    /// Creates the file channel at `path`, or opens it if it exists.
    ///
    /// # Errors
    /// As [`Sender::create_or_open_file`].
    pub fn create_or_open_file(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateOrOpenFile(path.as_ref()), opts)
    }

    /// Writes the file back and waits (see [`Sender::sync`]): the consumer's
    /// position, as of the messages released so far, survives a power loss.
    ///
    /// # Errors
    /// As [`Sender::sync`].
    pub fn sync(&mut self) -> Result<()> {
        self.end.sync()
    }
}
