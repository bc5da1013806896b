//! File channels that outlive every process and a reboot: their constructors
//! (`create_file`, `open_file`, `create_or_open_file`), the explicit
//! [`Sender::sync`]/[`Receiver::sync`], and the [`Syncer`] that carries out a
//! channel's [`Durability`] policy.
//!
//! # Who syncs, and when
//! The side that moves messages: a handle of a file channel whose policy is
//! not `None` counts the messages it publishes (sends, commits) and releases
//! (receives), and after a call that leaves some not synced yet, when the
//! policy's budget is spent (at once for `EveryCommit`; `messages` messages,
//! or `interval` since the last sync, for `Periodic`), writes the file back
//! with `msync(MS_SYNC)` before the call returns. A batch of `k` messages
//! counts `k` (and is synced at its end, never split). A call that moves
//! nothing (`Empty`, `Full`, a time-out, a batch of 0) spends no budget and
//! makes no sync unless an earlier call left messages to sync: an idle end
//! polling an empty channel makes no system call for its policy. No thread, no
//! timer, no lock shared with the peer: the cost lands on the call that moved
//! the data, and a test can count it. The price is that a periodic budget is
//! only looked at when a call is made: an end that goes quiet syncs what it did
//! at its next call (whatever that call finds), at
//! [`Sender::sync`]/[`Receiver::sync`], or when it is dropped.
//!
//! A send returns after the sync that covers it. A [`WriteGuard`](crate::WriteGuard)
//! is committed after the call that returned it, so its commit is counted and
//! synced by the handle's next call (or `sync()`, or drop); a received
//! message's release likewise (the consumer's position is synced one call
//! late: after a power loss the last message received before it may be
//! received again, the documented at-least-once message). A sync by either end
//! writes back every page of the file, the peer's changes too.
//!
//! What a sync does and does not guarantee after a kernel crash or a power
//! loss (the kernel also writes pages back on its own, between syncs): README,
//! "Durable channels", and docs/LIFECYCLE.md.
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

/// What one call on a handle moved, for its [`Syncer`]: the messages it
/// published or released before it returned (`now`), and those it lent in a
/// guard (`lent`: published or released when the guard commits or drops, which
/// is before the handle's next call, since the guard borrows the handle).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Messages published or released within the call.
    pub(crate) now: u64,
    /// Messages lent in a guard, moved by the time of the handle's next call.
    pub(crate) lent: u64,
}

impl Moved {
    /// A call that moved nothing (an error, `Empty`, `Full`, a time-out).
    pub(crate) const NOTHING: Moved = Moved { now: 0, lent: 0 };
}

/// The messages a ring operation's successful result stands for (see
/// [`Moved`]); `Handle::run` takes only operations whose result says.
pub(crate) trait Moves {
    /// What the call that returned `self` moved.
    fn moved(&self) -> Moved;
}

/// `send`, `try_send`, `send_timeout`, `recv_into`, `try_recv_into`,
/// `recv_into_timeout`: one message, published or copied out and released
/// before the call returns (every ring operation that returns `()` moves one).
impl Moves for () {
    #[inline]
    fn moved(&self) -> Moved {
        Moved { now: 1, lent: 0 }
    }
}

/// `try_send_batch`, `try_recv_batch`: how many it sent or received (0 moved
/// nothing), all published or released before the call returns.
impl Moves for usize {
    #[inline]
    fn moved(&self) -> Moved {
        Moved {
            now: *self as u64,
            lent: 0,
        }
    }
}

/// `try_hold`: a claim held for the guard the caller takes next (`false`:
/// full, nothing held).
impl Moves for bool {
    #[inline]
    fn moved(&self) -> Moved {
        Moved {
            now: 0,
            lent: u64::from(*self),
        }
    }
}

/// A received message lent in place: released when the guard drops.
impl<K: shmq_ring::Kind> Moves for shmq_ring::ReadGuard<'_, K> {
    #[inline]
    fn moved(&self) -> Moved {
        Moved { now: 0, lent: 1 }
    }
}

/// Room reserved for one message: published when the guard commits (counted
/// as moved even if it is dropped uncommitted: one sync too many, never one
/// too few).
impl<K: shmq_ring::Kind> Moves for shmq_ring::WriteGuard<'_, K> {
    #[inline]
    fn moved(&self) -> Moved {
        Moved { now: 0, lent: 1 }
    }
}

/// Carries out a file channel's durability policy for one handle.
#[derive(Debug)]
pub(crate) struct Syncer {
    policy: Durability,
    /// Messages published or released since the last sync.
    pending: u64,
    /// Messages the last call lent in a guard: moved by the next call.
    lent: u64,
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
                lent: 0,
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

    /// After one call on the handle, whatever it returned (`moved`: what it
    /// moved, [`Moved::NOTHING`] for an error): counts the messages it moved
    /// and those the previous call lent, and syncs if any are waiting for a
    /// sync and the policy's budget is spent. A call that found nothing to do
    /// with nothing waiting costs one branch, never a sync. A failure is
    /// recorded (see the module docs), not returned.
    #[inline]
    pub(crate) fn after_call(&mut self, seg: &Segment, moved: Moved) {
        self.pending += self.lent + moved.now;
        self.lent = 0;
        if self.pending != 0 {
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
        self.lent = moved.lent;
    }

    /// Syncs now; a failure is recorded and returned.
    #[cold]
    pub(crate) fn sync(&mut self, seg: &Segment) -> Result<()> {
        self.check()?;
        match seg.sync() {
            Ok(()) => {
                // A guard lent by the last call is done by now: it borrowed
                // the handle this sync was called on.
                self.pending = 0;
                self.lent = 0;
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
