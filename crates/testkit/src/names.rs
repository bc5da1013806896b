//! Names and leftovers (rule R5): unique `/t-...` segment names and the check
//! that none is left in `/dev/shm` nor open or mapped ([`Names`]); counts of
//! this process's shared-memory descriptors and mappings; identities of what a
//! name or descriptor refers to; clean-up of stale segments and prefixes;
//! passing a descriptor over a UNIX socket ([`send_fd`], [`recv_fd`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock;

/// Unique segment names for one test, and the check that none is left behind.
#[derive(Default)]
pub struct Names {
    names: Mutex<Vec<String>>,
}

impl Names {
    /// No names yet.
    pub fn new() -> Names {
        Names::default()
    }

    /// A fresh `/t-<tag>-<64 random bits>` name, remembered for the final check.
    pub fn name(&self, tag: &str) -> String {
        let n = shmq::unique_name(&format!("t-{tag}")).expect("unique_name");
        lock(&self.names).push(n.clone());
        n
    }

    /// `n` fresh names tagged `tag` (see [`Names::name`]), for a scenario run
    /// `n` times.
    pub fn several(&self, tag: &str, n: usize) -> Vec<String> {
        (0..n).map(|_| self.name(tag)).collect()
    }

    /// Asserts that none of the names exists in `/dev/shm`, and that this process
    /// has none of them open or mapped. First removes the temporaries of dead
    /// creators (a creator the test killed while it built a segment leaves one;
    /// `shmq gc` removes them in real life), which the CI's final look at
    /// `/dev/shm` would otherwise find.
    pub fn assert_clean(&self) {
        let _ = shmq_segment::Segment::remove_dead_temporaries();
        let names = lock(&self.names).clone();
        for n in &names {
            let p = shm_path(n);
            assert!(
                std::fs::symlink_metadata(&p).is_err(),
                "{} was left in /dev/shm",
                p.display()
            );
            let fds = fds_matching(&n[1..]);
            assert!(fds.is_empty(), "{n} is still open in this process: {fds:?}");
            let maps = maps_matching(&n[1..]);
            assert!(
                maps.is_empty(),
                "{n} is still mapped in this process: {maps:?}"
            );
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        // Best effort after a failure: do not leak objects into /dev/shm.
        let _ = shmq_segment::Segment::remove_dead_temporaries();
        for n in lock(&self.names).iter() {
            let p = shm_path(n);
            if std::fs::remove_file(&p).is_err() {
                let _ = std::fs::remove_dir(&p);
            }
        }
    }
}

/// `/dev/shm/<name without the slash>`.
pub fn shm_path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name.trim_start_matches('/'))
}

fn fd_links() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        Some(
            std::fs::read_link(e.path())
                .ok()?
                .to_string_lossy()
                .into_owned(),
        )
    })
    .collect()
}

fn fds_matching(needle: &str) -> Vec<String> {
    fd_links()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

fn maps_matching(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// How many descriptors of this process refer to shared-memory objects
/// (`/dev/shm/...` or a shmq memfd). For role processes, which run one test.
pub fn shm_fds() -> usize {
    fd_links()
        .iter()
        .filter(|l| l.starts_with("/dev/shm/") || l.starts_with("/memfd:shmq"))
        .count()
}

/// How many mappings of this process are of shared-memory objects.
pub fn shm_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/dev/shm/") || l.contains("/memfd:shmq"))
        .count()
}

/// What every descriptor of this process refers to (for failure messages).
pub fn fd_table() -> Vec<String> {
    fd_links()
}

/// All descriptors of this process.
pub fn fd_count() -> usize {
    fd_links().len()
}

/// Entries of `/dev/shm` whose name starts with `prefix` (no leading slash).
pub fn shm_entries(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// Descriptors of this process that refer to shared memory (`/dev/shm/...` or a
/// memfd) and lack `FD_CLOEXEC`, as `fd -> target`.
pub fn shm_fds_without_cloexec() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd: i32 = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path())
            .ok()?
            .to_string_lossy()
            .into_owned();
        if !(target.starts_with("/dev/shm/") || target.starts_with("/memfd:")) {
            return None;
        }
        // SAFETY: F_GETFD only reads the descriptor flags of a number we just listed
        // (if it was closed meanwhile the call fails harmlessly).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        (flags >= 0 && flags & libc::FD_CLOEXEC == 0).then(|| format!("{fd} -> {target}"))
    })
    .collect()
}

/// `(st_dev, st_ino)` of what `fd` has open.
pub fn fd_identity(fd: &impl std::os::fd::AsFd) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd.as_fd()).expect("fstat");
    (st.st_dev, st.st_ino)
}

/// `(st_dev, st_ino)` of what `/dev/shm/<name>` is now (not following a symlink),
/// or `None` if nothing is there.
pub fn name_identity(name: &str) -> Option<(u64, u64)> {
    let st = nix::sys::stat::lstat(&shm_path(name)).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Removes the stale segment `name` (if it exists), retrying for up to a second:
/// while another thread of this process is between `fork` and `exec`, the child
/// briefly shares every descriptor, and with them the locks of a segment this
/// process has just closed. Panics if it is still there (in use) after that.
pub fn remove_stale(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if !shm_path(name).exists() {
            return;
        }
        match shmq_segment::Segment::remove_if_stale(name) {
            Ok(true) | Err(shmq_segment::Error::NotFound { .. }) => return,
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => panic!("{name} is not stale: {other:?}"),
        }
    }
}

/// Makes this process claim (and release) a channel endpoint once, so that the
/// descriptor the fork guard keeps open for good (`/dev/null`, opened at the first
/// claim: crates/segment/src/fork.rs) exists before a test takes its descriptor
/// baseline.
pub fn warm_up_fork_guard() {
    let (mut tx, mut rx) =
        shmq::spsc::anonymous(&shmq::Options::new().capacity(4096)).expect("warm-up channel");
    tx.send(b"warm-up").expect("warm-up send");
    rx.recv_into(&mut Vec::new()).expect("warm-up recv");
}

/// Removes, when dropped, every `/dev/shm` entry whose name starts with its
/// prefix (for tests that make names outside [`Names`]).
pub struct PrefixCleanup(pub String);

impl Drop for PrefixCleanup {
    fn drop(&mut self) {
        for e in shm_entries(&self.0) {
            let _ = std::fs::remove_file(shm_path(&e));
        }
    }
}

/// Sends `fd` over the UNIX socket `sock` (`SCM_RIGHTS`, with one data byte).
pub fn send_fd(sock: &impl AsRawFd, fd: &impl AsRawFd) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"x")],
        &[ControlMessage::ScmRights(&[fd.as_raw_fd()])],
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
}

/// Receives a descriptor sent with [`send_fd`] over `sock`, close-on-exec;
/// `None` if the message carried none.
pub fn recv_fd(sock: &impl AsRawFd) -> Option<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let m = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg");
    let mut got = None;
    for c in m.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in our table; we
            // are their only owner.
            got = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
        }
    }
    got
}
