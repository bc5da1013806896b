//! Doorbells: FIFOs in `/dev/shm` that make a consumer's wait pollable.
//!
//! A consumer that waits in an event loop (epoll, tokio's `AsyncFd`, glib...)
//! cannot sleep on a futex. It owns a [`Bell`] instead: a FIFO named
//! `/dev/shm/.shmq-bell-<id>` (`id`: 64 random bits, 16 hex digits), opened
//! read-write and non-blocking, with an owner lock held for as long as it
//! lives. The consumer publishes the id in the ring; a producer that must wake
//! it opens the FIFO by that id ([`Ringer`]) and writes one byte, which makes
//! the consumer's descriptor readable: one kernel hop, the producer's `write`
//! waking the thread blocked in `epoll_wait`.
//!
//! The Linux facts this is built around:
//! - a FIFO opened `O_WRONLY | O_NONBLOCK` fails with `ENXIO` while no reader
//!   has it open, and a write once every reader is gone raises `SIGPIPE`: both
//!   sides open it `O_RDWR`, so it always has a reader and a writer;
//! - the id comes from shared memory, which a peer can write: the ringer builds
//!   the path from the number alone (no `/`, no `..`), opens it with
//!   `O_NOFOLLOW`, and writes only into a FIFO owned by itself or by the
//!   channel's owner; a wrong id is a wake-up that does not arrive, never a
//!   fault;
//! - a consumer that dies leaves its FIFO behind: [`remove_dead_bells`] (run by
//!   `shmq gc`) removes those whose owner lock is free, never one whose owner
//!   lives.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::sys::{self, LockKind, OWNER_LOCK};

/// Where doorbells live.
const BELL_DIR: &str = "/dev/shm";

/// The prefix of a doorbell's file name; its id in 16 hex digits follows.
pub const BELL_PREFIX: &str = ".shmq-bell-";

/// The path of doorbell `id` in `dir`.
fn bell_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{BELL_PREFIX}{id:016x}"))
}

/// The id in a doorbell's file name, if it is one.
fn bell_id(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(BELL_PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Opens the object at `path` read-write, non-blocking, not following a
/// symbolic link, and checks that it is a FIFO owned by one of `owners`.
fn open_fifo(path: &Path, owners: &[u32]) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| os("open doorbell", e))?;
    let st = sys::fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(Error::Os {
            op: "open doorbell",
            source: std::io::Error::other("not a FIFO"),
        });
    }
    if !owners.contains(&st.st_uid) {
        return Err(Error::Os {
            op: "open doorbell",
            source: std::io::Error::other("owned by another user"),
        });
    }
    Ok(fd)
}

fn os(op: &'static str, e: Errno) -> Error {
    Error::Os {
        op,
        source: std::io::Error::from(e),
    }
}

/// A consumer's doorbell: a FIFO it owns (see the module docs), and, when
/// asked for, a timer that makes it readable once a period (so that an event
/// loop looks at a peer that died without ringing). Its descriptor
/// ([`AsFd`]) is an epoll instance holding both, readable while the FIFO was
/// rung or the timer fired and the bell was not [`Bell::clear`]ed since. The
/// FIFO is removed when the bell is dropped.
#[derive(Debug)]
pub struct Bell {
    /// The FIFO, read-write, non-blocking, with its owner lock.
    fifo: OwnedFd,
    /// The periodic timer, if any.
    timer: Option<nix::sys::timerfd::TimerFd>,
    /// What an event loop waits on: `fifo` and `timer`, level-triggered.
    epoll: nix::sys::epoll::Epoll,
    path: PathBuf,
    id: u64,
}

impl Bell {
    /// Makes a new doorbell in `/dev/shm` with permission bits `mode` (those
    /// of the channel, so that whoever may write the channel may ring it),
    /// readable also once every `period` if one is given. A new doorbell is
    /// readable (rung once), so that a loop that waits before it receives
    /// does not wait for a ring nobody was asked for.
    ///
    /// # Errors
    /// [`Error::Os`] if the FIFO cannot be made, opened or locked, or the
    /// timer or epoll instance cannot be made.
    pub fn create(mode: u32, period: Option<std::time::Duration>) -> Result<Bell> {
        Bell::create_in(Path::new(BELL_DIR), mode, period)
    }

    /// As [`Bell::create`], in `dir`.
    ///
    /// # Errors
    /// As [`Bell::create`].
    pub fn create_in(dir: &Path, mode: u32, period: Option<std::time::Duration>) -> Result<Bell> {
        let (fifo, path, id) = make_fifo(dir, mode)?;
        let bell = |fifo: OwnedFd| -> Result<Bell> {
            use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
            use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
            let epoll =
                Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| os("epoll_create", e))?;
            epoll
                .add(&fifo, EpollEvent::new(EpollFlags::EPOLLIN, 0))
                .map_err(|e| os("epoll_ctl", e))?;
            let timer = match period {
                Some(p) => {
                    let t = TimerFd::new(
                        ClockId::CLOCK_MONOTONIC,
                        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
                    )
                    .map_err(|e| os("timerfd_create", e))?;
                    t.set(Expiration::Interval(p.into()), TimerSetTimeFlags::empty())
                        .map_err(|e| os("timerfd_settime", e))?;
                    epoll
                        .add(&t, EpollEvent::new(EpollFlags::EPOLLIN, 1))
                        .map_err(|e| os("epoll_ctl", e))?;
                    Some(t)
                }
                None => None,
            };
            // Readable from the start: until a receive finds nothing and arms
            // it, nobody rings it, so an event loop that waited first would wait
            // for ever. (A write into its own empty FIFO cannot block or fail.)
            let _ = nix::unistd::write(&fifo, &[1]);
            Ok(Bell {
                fifo,
                timer,
                epoll,
                path: path.clone(),
                id,
            })
        };
        bell(fifo).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })
    }
}

/// Makes a FIFO under a fresh doorbell name in `dir` with permission bits
/// `mode`, opens it and takes its owner lock.
fn make_fifo(dir: &Path, mode: u32) -> Result<(OwnedFd, PathBuf, u64)> {
    for _ in 0..8 {
        let id = sys::random_u64()?;
        let path = bell_path(dir, id);
        match nix::unistd::mkfifo(&path, Mode::from_bits_truncate(mode & 0o777)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(os("mkfifo", e)),
        }
        // The umask may have taken bits away: the channel's mode decides.
        let made = open_fifo(&path, &[sys::euid()]).and_then(|fd| {
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777))
                .map_err(|e| os("fchmod doorbell", e))?;
            if !sys::try_lock(&fd, OWNER_LOCK, LockKind::Exclusive)? {
                return Err(Error::Os {
                    op: "lock doorbell",
                    source: std::io::Error::other("locked by another process"),
                });
            }
            Ok(fd)
        });
        return match made {
            Ok(fd) => Ok((fd, path, id)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        };
    }
    Err(Error::Os {
        op: "mkfifo",
        source: std::io::Error::other("eight random doorbell names were all taken"),
    })
}

impl Bell {
    /// The id producers ring it by.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Empties it: reads every byte rung into it, and the timer's count,
    /// without blocking. Rings (and periods) after this make it readable again.
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        // A full read may mean more: read until the FIFO is empty (`EAGAIN`),
        // or it fails for another reason (then nothing more can be done here).
        while let Ok(n) = nix::unistd::read(&self.fifo, &mut buf) {
            if n < buf.len() {
                break;
            }
        }
        if let Some(t) = &self.timer {
            // The expiry count (8 bytes), or `EAGAIN` if none since the last read.
            let _ = nix::unistd::read(t, &mut buf[..8]);
        }
    }
}

impl AsFd for Bell {
    /// The epoll instance an event loop waits on (readable: rung or a period
    /// passed).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

impl Drop for Bell {
    fn drop(&mut self) {
        // Ours (the lock is held until the descriptor closes, after this), so
        // nobody else can have made another FIFO under this name.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A producer's way to ring consumers' doorbells by id (see the module docs):
/// keeps the last doorbell it opened, so that ringing the same consumer again
/// is one `write`.
#[derive(Debug)]
pub struct Ringer {
    dir: PathBuf,
    /// Owners a doorbell may have: this process's user and the channel's owner.
    owners: [u32; 2],
    /// The last doorbell opened, by id.
    open: Mutex<Option<(u64, OwnedFd)>>,
}

impl Ringer {
    /// A ringer for doorbells in `/dev/shm` owned by this process's user or by
    /// `channel_owner` (if known).
    pub fn new(channel_owner: Option<u32>) -> Ringer {
        Ringer::new_in(Path::new(BELL_DIR), channel_owner)
    }

    /// As [`Ringer::new`], for doorbells in `dir`.
    pub fn new_in(dir: &Path, channel_owner: Option<u32>) -> Ringer {
        let me = sys::euid();
        Ringer {
            dir: dir.to_owned(),
            owners: [me, channel_owner.unwrap_or(me)],
            open: Mutex::new(None),
        }
    }

    /// Makes doorbell `id` readable: one byte written into it. A doorbell that
    /// cannot be found or is not trusted is not rung (the consumer looks again
    /// once its wait slice); a full one (64 KiB of rings not cleared) is
    /// readable already.
    pub fn ring(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.as_ref().is_none_or(|(known, _)| *known != id) {
            *open = open_fifo(&bell_path(&self.dir, id), &self.owners)
                .ok()
                .map(|fd| (id, fd));
        }
        if let Some((_, fd)) = open.as_ref() {
            match nix::unistd::write(fd, &[1]) {
                Ok(_) | Err(Errno::EAGAIN) => {}
                // Not a FIFO we can write any more: look it up again next time.
                Err(_) => *open = None,
            }
        }
    }
}

/// Removes the doorbells in `/dev/shm` whose consumers died (their owner lock
/// is free); returns their paths. A live consumer's doorbell is never touched:
/// the lock that proves its owner dead is held while the name is removed.
///
/// # Errors
/// [`Error::Os`] if `/dev/shm` cannot be listed.
pub fn remove_dead_bells() -> Result<Vec<PathBuf>> {
    dead_bells_in(Path::new(BELL_DIR), true)
}

/// The doorbells in `/dev/shm` whose consumers died (as
/// [`remove_dead_bells`], removing nothing).
///
/// # Errors
/// As [`remove_dead_bells`].
pub fn dead_bells() -> Result<Vec<PathBuf>> {
    dead_bells_in(Path::new(BELL_DIR), false)
}

/// As [`remove_dead_bells`] (`remove`) or [`dead_bells`], in `dir`.
///
/// # Errors
/// As [`remove_dead_bells`].
pub fn dead_bells_in(dir: &Path, remove: bool) -> Result<Vec<PathBuf>> {
    crate::segment::dead_owners_in(
        dir,
        remove,
        |name| bell_id(name).is_some(),
        |path| open_fifo(path, &[sys::euid()]).ok(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed (with what is left in it) when dropped.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn dir(test: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("shmq-bell-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn readable(bell: &Bell) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            bell.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn a_ring_makes_the_bell_readable_until_cleared() {
        let d = dir("readable");
        let bell = Bell::create_in(&d, 0o600, None).unwrap();
        let ringer = Ringer::new_in(&d, None);
        assert!(readable(&bell), "a new doorbell is readable");
        bell.clear();
        assert!(!readable(&bell));
        ringer.ring(bell.id());
        ringer.ring(bell.id());
        assert!(readable(&bell));
        bell.clear();
        assert!(!readable(&bell));
        // A wrong id rings nothing and does not fail.
        ringer.ring(bell.id() ^ 1);
        assert!(!readable(&bell));
        ringer.ring(bell.id());
        assert!(readable(&bell));
        let path = bell.path().to_owned();
        drop(bell);
        assert!(!path.exists());
    }

    #[test]
    fn a_ringer_does_not_write_into_a_regular_file_or_follow_a_link() {
        let d = dir("no-file-or-link");
        let id = 0x0123_4567_89ab_cdef_u64;
        std::fs::write(bell_path(&d, id), b"").unwrap();
        Ringer::new_in(&d, None).ring(id);
        assert_eq!(std::fs::read(bell_path(&d, id)).unwrap(), b"");
        std::fs::remove_file(bell_path(&d, id)).unwrap();

        let bell = Bell::create_in(&d, 0o600, None).unwrap();
        bell.clear();
        std::os::unix::fs::symlink(bell.path(), bell_path(&d, id)).unwrap();
        Ringer::new_in(&d, None).ring(id);
        assert!(!readable(&bell));
        std::fs::remove_file(bell_path(&d, id)).unwrap();
    }

    #[test]
    fn a_ringer_does_not_ring_a_bell_of_another_owner() {
        let d = dir("other-owner");
        let bell = Bell::create_in(&d, 0o600, None).unwrap();
        bell.clear();
        // Neither this user nor the channel's owner: as if the FIFO were
        // someone else's.
        let me = sys::euid();
        let ringer = Ringer {
            dir: d.to_path_buf(),
            owners: [me.wrapping_add(1), me.wrapping_add(2)],
            open: Mutex::new(None),
        };
        ringer.ring(bell.id());
        assert!(!readable(&bell));
    }

    #[test]
    fn only_dead_bells_are_collected() {
        let d = dir("gc");
        let live = Bell::create_in(&d, 0o600, None).unwrap();
        // A dead consumer's bell: a FIFO under a bell name nobody holds.
        let dead = bell_path(&d, 42);
        nix::unistd::mkfifo(&dead, Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(dead_bells_in(&d, false).unwrap(), vec![dead.clone()]);
        assert_eq!(dead_bells_in(&d, true).unwrap(), vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.path().exists());
    }
}
