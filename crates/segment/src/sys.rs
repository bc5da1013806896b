//! File-descriptor level helpers: open-file-description locks, seals, `fstat`
//! checks and re-opening. Safe wrappers over `nix`; no unsafe code here.
//!
//! Liveness rests on OFD locks (`F_OFD_SETLK`): a lock belongs to an open file
//! description, not to a process, and the kernel drops it when the last file
//! descriptor referring to that description is closed, which a dying process
//! does whatever killed it. Unlike classic POSIX locks, closing *another* file
//! descriptor of the same file does not drop it, and unlike a pid it cannot be
//! reused by an unrelated process.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{self, FcntlArg, OFlag, SealFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};

use crate::error::{Error, Result};

/// Byte of the segment file whose lock marks "some process has this segment
/// open": held shared by every attached process, exclusively by a creator while
/// it initialises and by whoever unlinks or reclaims the segment.
pub(crate) const OWNER_LOCK: i64 = 0;
/// Endpoint `k`'s liveness marker is the lock on byte `ENDPOINT_LOCK_BASE + k`.
pub(crate) const ENDPOINT_LOCK_BASE: i64 = 1;

/// The seals a memfd segment must carry before we map it.
pub(crate) const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

fn flock(kind: libc::c_short, byte: i64) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: byte,
        l_len: 1,
        l_pid: 0, // must be 0 for OFD locks
    }
}

/// Tries to take a lock on one byte without blocking. `Ok(false)` if another
/// open file description holds a conflicting lock.
pub(crate) fn try_lock(fd: impl AsFd, byte: i64, kind: LockKind) -> Result<bool> {
    let t = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    };
    let fl = flock(t as libc::c_short, byte);
    match fcntl::fcntl(fd, FcntlArg::F_OFD_SETLK(&fl)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(Error::os("fcntl(F_OFD_SETLK)", e)),
    }
}

/// Polls [`try_lock`] until it succeeds or `timeout` passes (`Ok(false)`).
pub(crate) fn lock_within(
    fd: impl AsFd,
    byte: i64,
    kind: LockKind,
    timeout: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        if try_lock(fd.as_fd(), byte, kind)? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Releases our lock on one byte (a no-op if we hold none).
pub(crate) fn unlock(fd: impl AsFd, byte: i64) -> Result<()> {
    let fl = flock(libc::F_UNLCK as libc::c_short, byte);
    fcntl::fcntl(fd, FcntlArg::F_OFD_SETLK(&fl))
        .map(drop)
        .map_err(|e| Error::os("fcntl(F_OFD_SETLK unlock)", e))
}

/// Whether another open file description holds any lock on `byte`. Locks held
/// through `fd`'s own description never count.
pub(crate) fn is_locked_by_other(fd: impl AsFd, byte: i64) -> Result<bool> {
    let mut fl = flock(libc::F_WRLCK as libc::c_short, byte);
    fcntl::fcntl(fd, FcntlArg::F_OFD_GETLK(&mut fl))
        .map_err(|e| Error::os("fcntl(F_OFD_GETLK)", e))?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// The seals on a memfd, or `Untrusted` if the descriptor does not support seals.
pub(crate) fn seals(fd: impl AsFd) -> Result<SealFlag> {
    match fcntl::fcntl(fd, FcntlArg::F_GET_SEALS) {
        Ok(bits) => Ok(SealFlag::from_bits_retain(bits)),
        Err(Errno::EINVAL) => Err(Error::Untrusted {
            reason: "file descriptor is not a sealable memfd".into(),
        }),
        Err(e) => Err(Error::os("fcntl(F_GET_SEALS)", e)),
    }
}

/// Adds seals to a memfd.
pub(crate) fn add_seals(fd: impl AsFd, seals: SealFlag) -> Result<()> {
    fcntl::fcntl(fd, FcntlArg::F_ADD_SEALS(seals))
        .map(drop)
        .map_err(|e| Error::os("fcntl(F_ADD_SEALS)", e))
}

/// `fstat`, with errors mapped.
pub(crate) fn fstat(fd: impl AsFd) -> Result<FileStat> {
    stat::fstat(fd).map_err(|e| Error::os("fstat", e))
}

/// Size from a `FileStat`.
pub(crate) fn size_of(st: &FileStat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

/// What an opener requires of the object before it maps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TrustPolicy {
    /// Owner the object must have; `None` accepts any owner.
    pub(crate) owner: Option<u32>,
    /// Accept an object that group or others may write.
    pub(crate) allow_shared_write: bool,
}

/// 64 random bits from the kernel (`getrandom`), for fresh names.
pub(crate) fn random_u64() -> Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Os {
        op: "getrandom",
        source: std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    Ok(u64::from_le_bytes(bytes))
}

impl TrustPolicy {
    /// The policy for an object whose mode is not ours to judge (a memfd, a
    /// temporary or a leftover being cleaned up): owned by `owner` (`None`:
    /// anyone), whatever group or others may do with it.
    pub(crate) fn any_mode(owner: Option<u32>) -> TrustPolicy {
        TrustPolicy {
            owner,
            allow_shared_write: true,
        }
    }
}

/// Checks type, owner, mode and link count (Postfix `safe_open` style).
pub(crate) fn check_trust(st: &FileStat, policy: &TrustPolicy) -> Result<()> {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG {
        return Err(Error::Untrusted {
            reason: "not a regular file".into(),
        });
    }
    if let Some(uid) = policy.owner
        && st.st_uid != uid
    {
        return Err(Error::Untrusted {
            reason: format!("owned by uid {}, expected uid {uid}", st.st_uid),
        });
    }
    if !policy.allow_shared_write && st.st_mode & 0o022 != 0 {
        return Err(Error::Untrusted {
            reason: format!("mode {:o} lets group or others write", st.st_mode & 0o777),
        });
    }
    if st.st_nlink > 1 {
        return Err(Error::Untrusted {
            reason: format!("{} hard links", st.st_nlink),
        });
    }
    Ok(())
}

/// A new open file description of the same object as `fd`, through
/// `/proc/self/fd`. Works for `shm_open` objects, memfds and files alike, and is
/// how each endpoint gets locks of its own.
pub(crate) fn reopen(fd: impl AsFd) -> Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    fcntl::open(
        path.as_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::os("open(/proc/self/fd)", e))
}

/// Whether two stats describe the same object.
pub(crate) fn same_object(a: &FileStat, b: &FileStat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// Effective uid of this process.
pub(crate) fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}
