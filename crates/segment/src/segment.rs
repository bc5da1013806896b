//! Segments: create, open, map, validate, attach and unlink.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::memfd::{self, MFdFlags};
use nix::sys::mman::{self, MmapAdvise};
use nix::sys::stat::{FileStat, Mode};

use crate::Expect;
use crate::error::{Error, Result};
use crate::header::{
    Durability, HEADER_LEN, HeaderInfo, Layout, MAGIC, STATE_INIT, STATE_READY, SyncRecord,
    TypeName,
};
use crate::map::Mapping;
use crate::name::validate_name;
use crate::sys::{self, ENDPOINT_LOCK_BASE, LockKind, OWNER_LOCK, REQUIRED_SEALS, TrustPolicy};

/// How a segment is created and opened.
///
/// Built with [`SegmentOptions::new`] and its setters; the defaults are the
/// secure ones: mode `0o600` (applied with `fchmod`, so the umask never decides),
/// space reserved at creation (`posix_fallocate`, so a full `/dev/shm` is an
/// error now and not `SIGBUS` later), and openers that refuse an object not owned
/// by this user, writable by group or others, or with more than one link; and
/// the SIGBUS guard on (see [`SegmentOptions::sigbus_guard`]).
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    mode: u32,
    sigbus_guard: bool,
    populate: bool,
    lock: bool,
    huge_pages: bool,
    reserve: bool,
    reclaim_stale: bool,
    open_timeout: Duration,
    max_len: u64,
    trust: TrustPolicy,
    build_unnamed: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentOptions {
    /// The defaults described on the type.
    pub fn new() -> Self {
        SegmentOptions {
            mode: 0o600,
            sigbus_guard: true,
            populate: false,
            lock: false,
            huge_pages: false,
            reserve: true,
            reclaim_stale: false,
            open_timeout: Duration::from_secs(2),
            max_len: 1 << 40,
            trust: TrustPolicy {
                owner: Some(sys::euid()),
                allow_shared_write: false,
            },
            build_unnamed: false,
        }
    }

    /// Permission bits of a created segment (default `0o600`). Bits that let group
    /// or others write also make openers with these options accept such a mode.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        if self.mode & 0o022 != 0 {
            self.trust.allow_shared_write = true;
        }
        self
    }

    /// Whether `create` replaces a stale segment (see [`SegmentOptions::reclaim_stale`]).
    pub fn reclaims_stale(&self) -> bool {
        self.reclaim_stale
    }

    /// Guard this segment's mappings against `SIGBUS` (default on).
    ///
    /// A peer that shrinks a named or file-backed segment (`ftruncate`; POSIX
    /// shared memory cannot be sealed) makes every access beyond the new end a
    /// `SIGBUS`, which kills the process. With the guard, the first such mapping
    /// installs a process-global `SIGBUS` handler (once; it chains to any handler
    /// installed before it) and registers the mapping with it; a fault in a
    /// registered mapping replaces the mapping's pages with private memory whose
    /// first [`GUARD_POISON_LEN`](crate::GUARD_POISON_LEN) bytes read as `0xFF`
    /// and the rest as zeros, so the access completes, and
    /// [`Segment::is_damaged`] turns true: the segment is no longer shared with
    /// anyone, and its owner reports an error. Faults anywhere else go to the
    /// previous handler or the default action, as if the guard were not there.
    ///
    /// Off: this segment's mappings are not registered and, if no other segment
    /// installed it, no handler is installed (a truncating peer then crashes this
    /// process with `SIGBUS`). Turn it off if the program owns `SIGBUS` itself and
    /// installs its handler after shmq's without chaining, or if it must not have
    /// a process-global handler installed by a library. At most
    /// [`GUARD_SLOTS`](crate::GUARD_SLOTS) mappings are guarded at once; more are
    /// mapped unguarded.
    pub fn sigbus_guard(mut self, yes: bool) -> Self {
        self.sigbus_guard = yes;
        self
    }

    /// Pre-fault every page when mapping (`MAP_POPULATE`).
    pub fn populate(mut self, yes: bool) -> Self {
        self.populate = yes;
        self
    }

    /// Lock the mapping in memory (`mlock`); needs `RLIMIT_MEMLOCK` headroom.
    pub fn lock(mut self, yes: bool) -> Self {
        self.lock = yes;
        self
    }

    /// Back an anonymous segment with huge pages (`MFD_HUGETLB`). Named and
    /// file-backed segments refuse it with [`Error::HugePagesUnavailable`] (put a
    /// file-backed segment on a hugetlbfs mount instead).
    pub fn huge_pages(mut self, yes: bool) -> Self {
        self.huge_pages = yes;
        self
    }

    /// Allocate the segment's pages at creation (`posix_fallocate`, default on), so
    /// that running out of space is [`Error::NoSpace`] at creation rather than a
    /// `SIGBUS` on some later write.
    pub fn reserve(mut self, yes: bool) -> Self {
        self.reserve = yes;
        self
    }

    /// Let `create` replace an existing segment under the same name that no live
    /// process has open (left behind by a crash), instead of failing with
    /// [`Error::AlreadyExists`].
    pub fn reclaim_stale(mut self, yes: bool) -> Self {
        self.reclaim_stale = yes;
        self
    }

    /// How long `open` waits for the object under a name to become usable
    /// (default 2 s): one held exclusively (being removed), or one that a
    /// creator of an older shmq version has not published yet. A segment of
    /// this version appears under its name only complete, so `open` before its
    /// creator publishes is [`Error::NotFound`] at once.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Largest object `open` agrees to map (default 1 TiB).
    pub fn max_len(mut self, max: u64) -> Self {
        self.max_len = max;
        self
    }

    /// Owner uid an opened object must have: `Some(uid)`, or `None` for any owner.
    /// Default: this process's effective uid.
    pub fn expected_owner(mut self, uid: Option<u32>) -> Self {
        self.trust.owner = uid;
        self
    }

    /// Accept objects that group or others may write (default: refuse them).
    pub fn allow_shared_write(mut self, yes: bool) -> Self {
        self.trust.allow_shared_write = yes;
        self
    }

    /// Build a new named or file-backed segment as an unnamed `O_TMPFILE`
    /// object, published with `linkat`, instead of under a named temporary
    /// (default off). A creator killed while building then leaves nothing at
    /// all, not even a temporary for `shmq gc`; but this process's descriptor
    /// and mapping of the segment show in `/proc/PID/fd` and `/proc/PID/maps` as
    /// `/dev/shm/#INODE (deleted)` instead of its name, for as long as it lives.
    /// File systems without `O_TMPFILE` get a named temporary anyway.
    ///
    /// By default the segment is built under a named temporary (`.shmq-tmp-…`
    /// in the same directory) whose owner lock the creator holds, and renamed
    /// to its name with `renameat2(RENAME_NOREPLACE)`. A creator killed while
    /// building leaves its temporary, which [`Segment::remove_dead_temporaries`]
    /// (for `/dev/shm`, run by `shmq gc`) or
    /// [`Segment::remove_dead_temporaries_in`] removes. Either way the
    /// segment's own name is never left half-made.
    pub fn build_unnamed(mut self, yes: bool) -> Self {
        self.build_unnamed = yes;
        self
    }
}

/// Where a segment lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A POSIX shared-memory object (`/dev/shm` on Linux).
    Named(String),
    /// A sealed memfd with no name.
    Anonymous,
    /// A file at a path.
    File(PathBuf),
}

/// The liveness and bookkeeping of one endpoint, as another process sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Some open file description other than ours holds the endpoint's marker.
    pub alive: bool,
    /// Pid recorded by the last process to claim it (0 if never claimed). For
    /// display only: liveness never relies on it.
    pub pid: u32,
    /// How many times the endpoint has been claimed.
    pub attaches: u32,
}

/// Where POSIX shared-memory objects live on Linux.
const SHM_DIR: &str = "/dev/shm";

/// How the name of a named temporary starts (see [`SegmentOptions::build_unnamed`]).
pub const TEMPORARY_PREFIX: &str = ".shmq-tmp-";

/// An object under a segment name that holds no shmq header: empty, or with
/// every byte of its header zero. Creators of this version never leave one;
/// those of older versions, killed between making the object and writing its
/// header (or stopped by a file size limit), did. `shmq gc` reports them and
/// `shmq rm` removes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// Its size in bytes (0, or the full size of the segment that was meant).
    pub size: u64,
    /// Some process has it open (holds its owner lock): perhaps an older
    /// creator still at work.
    pub in_use: bool,
}

/// A named or file path, the two places that have names.
#[derive(Clone, Copy)]
enum Place<'a> {
    Shm(&'a str),
    File(&'a Path),
}

impl Place<'_> {
    fn display(&self) -> String {
        match self {
            Place::Shm(n) => (*n).to_owned(),
            Place::File(p) => p.display().to_string(),
        }
    }

    fn backing(&self) -> Backing {
        match self {
            Place::Shm(n) => Backing::Named((*n).to_owned()),
            Place::File(p) => Backing::File(p.to_path_buf()),
        }
    }

    /// The path of the object: `/dev/shm/NAME` for a POSIX shared-memory name
    /// (where glibc's `shm_open` puts them on Linux).
    fn path(&self) -> PathBuf {
        match self {
            Place::Shm(n) => PathBuf::from(format!("{SHM_DIR}{n}")),
            Place::File(p) => p.to_path_buf(),
        }
    }

    /// The directory the object's name lives in.
    fn dir(&self) -> PathBuf {
        match self {
            Place::Shm(_) => PathBuf::from(SHM_DIR),
            Place::File(p) => match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }

    fn of(backing: &Backing) -> Option<Place<'_>> {
        match backing {
            Backing::Named(n) => Some(Place::Shm(n)),
            Backing::File(p) => Some(Place::File(p)),
            Backing::Anonymous => None,
        }
    }

    fn open_raw(&self, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
        let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        match self {
            Place::Shm(n) => mman::shm_open(*n, flags, mode),
            Place::File(p) => fcntl::open(*p, flags, mode),
        }
    }

    /// Opens the object under the name for reading and writing (never
    /// blocking, should it be a FIFO).
    fn open_rw(&self) -> nix::Result<OwnedFd> {
        self.open_raw(OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty())
    }

    /// As [`Place::open_rw`], with the errors of `op`.
    fn open_existing(&self, op: &'static str) -> Result<OwnedFd> {
        self.open_rw().map_err(|e| self.map_open_errno(e, op))
    }

    fn unlink(&self) -> nix::Result<()> {
        match self {
            Place::Shm(n) => mman::shm_unlink(*n),
            Place::File(p) => nix::unistd::unlink(*p),
        }
    }

    /// Stat of whatever the name refers to now, without following a symlink.
    fn stat_now(&self) -> nix::Result<FileStat> {
        match self {
            Place::Shm(_) => {
                let fd = self.open_raw(OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())?;
                nix::sys::stat::fstat(&fd)
            }
            Place::File(p) => nix::sys::stat::lstat(*p),
        }
    }

    /// Whether the name still refers to the object `fd` has open.
    fn still_names(&self, fd: impl AsFd) -> Result<bool> {
        let ours = sys::fstat(fd)?;
        Ok(self
            .stat_now()
            .is_ok_and(|now| sys::same_object(&ours, &now)))
    }

    fn map_open_errno(&self, e: Errno, op: &'static str) -> Error {
        match e {
            Errno::ENOENT => Error::NotFound {
                name: self.display(),
            },
            Errno::EACCES | Errno::EPERM => Error::PermissionDenied {
                name: self.display(),
            },
            Errno::EEXIST => Error::AlreadyExists {
                name: self.display(),
                stale: false,
            },
            Errno::ELOOP => Error::Untrusted {
                reason: "the name is a symbolic link".into(),
            },
            Errno::EISDIR => Error::Untrusted {
                reason: "the name is a directory".into(),
            },
            Errno::ENAMETOOLONG | Errno::EINVAL => {
                // glibc's shm_open reports a directory under a valid name as EINVAL:
                // say what is really there.
                if let Place::Shm(n) = self
                    && let Ok(st) = nix::sys::stat::lstat(format!("/dev/shm{n}").as_str())
                    && st.st_mode & libc::S_IFMT != libc::S_IFREG
                {
                    return Error::Untrusted {
                        reason: "the name is not a regular file".into(),
                    };
                }
                Error::InvalidName {
                    name: self.display(),
                    reason: "rejected by the kernel",
                }
            }
            e => Error::os(op, e),
        }
    }
}

/// A mapped shmq segment whose header has been validated (or, for [`Creating`],
/// is being written by us).
///
/// Each `Segment` has its own open file description, through which it holds a
/// shared lock on the segment's owner byte for as long as it lives (this is how
/// "no process has it open" is told apart from "in use"), plus the liveness
/// markers of the endpoints it claimed. Dropping it unmaps the memory and closes
/// the descriptor, which releases all of them.
#[derive(Debug)]
pub struct Segment {
    map: Mapping,
    /// Registered with `fork.rs` from the first endpoint claim on. Declared before `fd`
    /// so that it is unregistered before the descriptor number is closed.
    fork_guard: std::sync::OnceLock<crate::fork::Registration>,
    fd: OwnedFd,
    backing: Backing,
    info: HeaderInfo,
    held: Mutex<Vec<u16>>,
    /// Made with the SIGBUS guard on ([`Segment::reopen`] keeps the choice).
    guarded: bool,
}

/// A segment we created and are still initialising. Until [`Creating::publish`]
/// it has no name (a named temporary that only `shmq gc` looks at, or an unnamed
/// `O_TMPFILE` object): openers find nothing under the name, never a half-made
/// segment. Dropping it unpublished discards it, and a creator that dies
/// half-way leaves nothing under the name.
#[derive(Debug)]
pub struct Creating {
    seg: Option<Segment>,
    /// Where the object is built and how to publish it; `None` for anonymous
    /// segments, which have no name.
    draft: Option<Draft>,
    /// The policy written by [`Creating::set_durability`]: anything but `None`
    /// makes publication sync the file before naming it and its directory after.
    durability: Durability,
}

/// A named or file-backed segment being built under no name, or a temporary one.
#[derive(Debug)]
struct Draft {
    /// `None`: an unnamed `O_TMPFILE` object, published with `linkat`. `Some`: a
    /// named temporary in the same directory whose owner lock we hold, published
    /// with `renameat2(RENAME_NOREPLACE)`.
    temporary: Option<PathBuf>,
    /// Replace a stale segment found under the name at publication.
    reclaim_stale: bool,
    /// From `create_or_open`: if another creator publishes first, open its
    /// segment instead (with these expectations and options).
    or_open: Option<(Expect, SegmentOptions)>,
}

impl Draft {
    /// Removes the named temporary, if any and if it is still ours.
    fn discard(&self, fd: &OwnedFd) {
        if let Some(tmp) = &self.temporary {
            let _ = unlink_if_ours(Place::File(tmp), fd);
        }
    }

    /// Gives the object `fd` its name, failing with `EEXIST` if the name is taken.
    fn link(&self, fd: &OwnedFd, target: &Path) -> nix::Result<()> {
        use nix::fcntl::{AT_FDCWD, RenameFlags};
        match &self.temporary {
            None => {
                let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
                nix::unistd::linkat(
                    AT_FDCWD,
                    proc_path.as_str(),
                    AT_FDCWD,
                    target,
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                )
            }
            Some(tmp) => {
                match fcntl::renameat2(
                    AT_FDCWD,
                    tmp.as_path(),
                    AT_FDCWD,
                    target,
                    RenameFlags::RENAME_NOREPLACE,
                ) {
                    // A file system without RENAME_NOREPLACE: link (which never
                    // replaces either), then drop the temporary name.
                    Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                        nix::unistd::linkat(
                            AT_FDCWD,
                            tmp.as_path(),
                            AT_FDCWD,
                            target,
                            nix::fcntl::AtFlags::empty(),
                        )?;
                        let _ = nix::unistd::unlink(tmp.as_path());
                        Ok(())
                    }
                    r => r,
                }
            }
        }
    }
}

/// What [`Segment::create_or_open`] did.
#[derive(Debug)]
pub enum Opened {
    /// We created the segment; initialise the region, then publish it.
    Created(Creating),
    /// The segment existed and has been opened and validated.
    Existing(Segment),
}

impl Creating {
    /// Start of the user region (zero-filled), `data_len` bytes long.
    pub fn data(&self) -> NonNull<u8> {
        self.seg().data()
    }

    /// Length of the user region.
    pub fn data_len(&self) -> u64 {
        self.seg().data_len()
    }

    /// The header as written so far (state still `STATE_INIT`).
    pub fn info(&self) -> &HeaderInfo {
        &self.seg().info
    }

    /// The segment, for claiming endpoints before publishing.
    pub fn segment(&self) -> &Segment {
        self.seg()
    }

    fn seg(&self) -> &Segment {
        self.seg
            .as_ref()
            .expect("Creating holds its segment until published or dropped")
    }

    /// Records the durability policy in the header (file-backed segments only;
    /// see [`Durability`]). With anything but [`Durability::None`],
    /// [`Creating::publish`] writes the file back (`msync(MS_SYNC)`) before it
    /// names it and syncs the directory (`fsync`) after, so that a segment that
    /// has a name after a power loss is a complete one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a policy on a segment that is not a file,
    /// or a periodic policy without a budget.
    pub fn set_durability(&mut self, d: Durability) -> Result<()> {
        let seg = self.seg();
        if d != Durability::None && !matches!(seg.backing, Backing::File(_)) {
            return Err(Error::InvalidArgument {
                what: "a durability policy applies to file-backed segments only",
            });
        }
        let record = seg.map.durability_record().ok_or(Error::InvalidArgument {
            what: "segment too short for a durability record",
        })?;
        record.write(&d)?;
        self.durability = d;
        Ok(())
    }

    /// Publishes the segment: stores `state = ready` (`Release`), turns our
    /// exclusive owner lock into a shared one, then gives the object its name
    /// in one step (`renameat2(RENAME_NOREPLACE)` of the named temporary, or
    /// `linkat` of the unnamed object), so that openers
    /// see either no segment or a complete one.
    ///
    /// If the name was taken meanwhile: with
    /// [`SegmentOptions::reclaim_stale`], a stale segment there is replaced;
    /// for a `Creating` from [`Segment::create_or_open`], the segment the other
    /// creator published is opened and returned instead (what was written into
    /// [`Creating::data`], and endpoints claimed through
    /// [`Creating::segment`], are discarded with ours); otherwise
    /// [`Error::AlreadyExists`]. Whatever fails, nothing of ours is left behind.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`]; for `create_or_open`, as [`Segment::open`];
    /// [`Error::PermissionDenied`], [`Error::Os`].
    pub fn publish(mut self) -> Result<Segment> {
        let mut seg = self
            .seg
            .take()
            .expect("Creating holds its segment until published");
        let draft = self.draft.take();
        seg.map.header().publish();
        seg.info.state = STATE_READY;
        let durable = self.durability != Durability::None;
        // A durable file is on the disk, complete, before it has a name: a power
        // loss never leaves a name over a half-written file.
        let synced = if durable { seg.map.flush() } else { Ok(()) };
        // Converting our own exclusive lock to a shared one cannot conflict.
        if let Err(e) = synced.and_then(|()| sys::try_lock(&seg.fd, OWNER_LOCK, LockKind::Shared)) {
            if let Some(d) = &draft {
                d.discard(&seg.fd);
            }
            return Err(e);
        }
        match draft {
            None => Ok(seg),
            Some(d) => {
                let dir = Place::of(&seg.backing).map(|p| p.dir());
                let seg = put_in_place(seg, &d)?;
                // The name is durable once its directory is.
                if durable && let Some(dir) = dir {
                    sync_dir(&dir)?;
                }
                Ok(seg)
            }
        }
    }
}

/// Syncs directory `dir` (`fsync`), so that the names made in it survive a
/// power loss.
fn sync_dir(dir: &Path) -> Result<()> {
    let fd = fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::os("open(directory)", e))?;
    nix::unistd::fsync(&fd).map_err(|e| Error::os("fsync(directory)", e))
}

/// Names the published object `seg`, settling a race for the name.
fn put_in_place(seg: Segment, draft: &Draft) -> Result<Segment> {
    let backing = seg.backing.clone();
    let place = Place::of(&backing).expect("a draft has a name");
    let target = place.path();
    let mut reclaimed = false;
    // Each round either publishes, opens, or finds that the name changed hands
    // meanwhile (another process made progress): a handful is plenty.
    for _ in 0..8 {
        match draft.link(&seg.fd, &target) {
            Ok(()) => return Ok(seg),
            Err(Errno::EEXIST) => {}
            Err(e) => {
                draft.discard(&seg.fd);
                return Err(place.map_open_errno(e, "link"));
            }
        }
        if let Some((expect, opts)) = &draft.or_open {
            match open_at(place, expect, opts) {
                Ok(theirs) => {
                    draft.discard(&seg.fd);
                    return Ok(theirs);
                }
                Err(Error::NotFound { .. }) => continue,
                Err(Error::Abandoned) => {
                    reclaim(place)?;
                    continue;
                }
                Err(e) => {
                    draft.discard(&seg.fd);
                    return Err(e);
                }
            }
        }
        if draft.reclaim_stale && !reclaimed {
            reclaimed = true;
            if reclaim(place)? {
                continue;
            }
        }
        break;
    }
    draft.discard(&seg.fd);
    Err(Error::AlreadyExists {
        name: place.display(),
        stale: stale_at(place).unwrap_or(false),
    })
}

impl Drop for Creating {
    fn drop(&mut self) {
        if let (Some(seg), Some(draft)) = (self.seg.take(), self.draft.take()) {
            // Unpublished: the object has no name but its temporary, if any.
            draft.discard(&seg.fd);
        }
    }
}

impl Segment {
    /// A segment of the mapping `map` of `fd`, with header `info` as it was
    /// read or written, guarded against `SIGBUS` as `opts` say.
    fn of(
        map: Mapping,
        fd: OwnedFd,
        backing: Backing,
        info: HeaderInfo,
        opts: &SegmentOptions,
    ) -> Segment {
        Segment {
            map,
            fork_guard: std::sync::OnceLock::new(),
            fd,
            backing,
            info,
            held: Mutex::new(Vec::new()),
            guarded: opts.sigbus_guard,
        }
    }

    /// Creates a named POSIX shared-memory segment for `layout` and maps it.
    ///
    /// Creation is atomic as seen by other processes: the segment is built with
    /// no name, under a named temporary in `/dev/shm` (or as an unnamed
    /// `O_TMPFILE` object, see [`SegmentOptions::build_unnamed`]), locked, `fchmod`ed
    /// to the configured mode, sized (`ftruncate`, then `posix_fallocate` unless
    /// disabled, with `SIGXFSZ` held off) and mapped (`mmap(MAP_SHARED)`); the
    /// header is written. The name appears only at [`Creating::publish`], on a
    /// complete segment. Until then openers find nothing, and a creator killed
    /// at any point leaves nothing under the name (at most a dead temporary,
    /// which `shmq gc` removes). A name already taken fails here, before the caller
    /// initialises anything; publication settles a race with another creator.
    ///
    /// # Errors
    /// [`Error::InvalidName`] before any system call; [`Error::AlreadyExists`]
    /// (with `stale` set when no process has the old one open, unless
    /// `reclaim_stale` replaced it); [`Error::PermissionDenied`], [`Error::NoSpace`],
    /// [`Error::FileSizeLimit`], [`Error::Os`].
    ///
    /// # Examples
    /// ```
    /// use shmq_segment::{Expect, Layout, Segment, SegmentOptions};
    /// let name = shmq_segment::unique_name("doc-create")?;
    /// let layout = Layout { kind: 1, endpoints: 2, data_len: 4096, ..Layout::default() };
    /// let seg = Segment::create(&name, &layout, &SegmentOptions::new())?.publish()?;
    /// let other = Segment::open(&name, &Expect { kind: Some(1), ..Expect::default() }, &SegmentOptions::new())?;
    /// assert_eq!(other.info().total_len, seg.info().total_len);
    /// Segment::unlink(&name)?;
    /// # Ok::<(), shmq_segment::Error>(())
    /// ```
    pub fn create(name: &str, layout: &Layout, opts: &SegmentOptions) -> Result<Creating> {
        validate_name(name)?;
        create_at(Place::Shm(name), layout, opts, None)
    }

    /// Opens and validates an existing named segment. A segment is only ever
    /// seen complete under its name; the open time-out bounds waits for a
    /// process that holds it exclusively (one removing it), and for objects
    /// that creators of older versions left half-made: an empty one that no
    /// process has open is [`Error::Abandoned`] after a short grace.
    ///
    /// `fstat` runs before `mmap`: an object that is not a regular file owned by
    /// the expected user, is writable by others, has several links, is smaller than
    /// a header or larger than the limit is refused without being mapped.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`],
    /// [`Error::Untrusted`], [`Error::TooSmall`], [`Error::TooLarge`],
    /// [`Error::NotReady`] (time-out), [`Error::Abandoned`] (creator died),
    /// [`Error::BadMagic`], [`Error::VersionMismatch`], [`Error::LayoutMismatch`],
    /// [`Error::Corrupt`].
    pub fn open(name: &str, expect: &Expect, opts: &SegmentOptions) -> Result<Segment> {
        validate_name(name)?;
        open_at(Place::Shm(name), expect, opts)
    }

    /// Creates the named segment, or opens it if it exists. Whichever process
    /// publishes first wins the name; a creator that loses gets the winner's
    /// segment from [`Creating::publish`], opened and checked against `expect`,
    /// and its own draft is discarded. A segment abandoned by an older creator
    /// that died half-way is replaced.
    ///
    /// # Errors
    /// As [`Segment::create`] and [`Segment::open`].
    pub fn create_or_open(
        name: &str,
        layout: &Layout,
        expect: &Expect,
        opts: &SegmentOptions,
    ) -> Result<Opened> {
        validate_name(name)?;
        create_or_open_at(Place::Shm(name), layout, expect, opts)
    }

    /// Removes a named segment. Processes that have it mapped keep their mapping.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`].
    pub fn unlink(name: &str) -> Result<()> {
        validate_name(name)?;
        let place = Place::Shm(name);
        place
            .unlink()
            .map_err(|e| place.map_open_errno(e, "shm_unlink"))
    }

    /// Whether the named segment exists and no live process has it open (so
    /// [`SegmentOptions::reclaim_stale`] or `shmq gc` may remove it).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`].
    pub fn is_stale(name: &str) -> Result<bool> {
        validate_name(name)?;
        let place = Place::Shm(name);
        let fd = place.open_existing("shm_open")?;
        Ok(!sys::is_locked_by_other(&fd, OWNER_LOCK)?)
    }

    /// Removes the named segment if no live process has it open, atomically with
    /// respect to openers and creators (they cannot attach while we decide).
    /// Returns whether it was removed.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`].
    pub fn remove_if_stale(name: &str) -> Result<bool> {
        validate_name(name)?;
        reclaim(Place::Shm(name))
    }

    /// Names (`/.shmq-tmp-…`) of the temporaries in `/dev/shm` whose creators
    /// died before publishing them (see [`SegmentOptions::build_unnamed`]).
    /// A temporary's creator holds its owner lock while it lives, so a dead one
    /// is told by the lock, never by a pid.
    ///
    /// # Errors
    /// [`Error::Os`] if `/dev/shm` cannot be listed.
    pub fn dead_temporaries() -> Result<Vec<String>> {
        Ok(dead_temporaries_in(Path::new(SHM_DIR), false)?
            .iter()
            .filter_map(|p| Some(format!("/{}", p.file_name()?.to_str()?)))
            .collect())
    }

    /// Removes the temporaries in `/dev/shm` whose creators died (see
    /// [`Segment::dead_temporaries`]); returns their names. `shmq gc` runs it.
    /// A temporary whose creator lives is never touched: the lock that proves
    /// the creator dead is held while the name is removed.
    ///
    /// # Errors
    /// [`Error::Os`] if `/dev/shm` cannot be listed.
    pub fn remove_dead_temporaries() -> Result<Vec<String>> {
        Ok(dead_temporaries_in(Path::new(SHM_DIR), true)?
            .iter()
            .filter_map(|p| Some(format!("/{}", p.file_name()?.to_str()?)))
            .collect())
    }

    /// As [`Segment::remove_dead_temporaries`], for the temporaries that
    /// file-backed segments leave in directory `dir`; returns their paths.
    ///
    /// # Errors
    /// [`Error::Os`] if `dir` cannot be listed.
    pub fn remove_dead_temporaries_in(dir: &Path) -> Result<Vec<PathBuf>> {
        dead_temporaries_in(dir, true)
    }

    /// Whether the named object is a [`Leftover`] of an interrupted create by an
    /// older shmq; `None` if it is anything else (a segment, someone else's
    /// object, or an object too short for a header but not empty).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`].
    pub fn leftover(name: &str) -> Result<Option<Leftover>> {
        validate_name(name)?;
        let place = Place::Shm(name);
        let fd = place
            .open_raw(OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())
            .map_err(|e| place.map_open_errno(e, "open"))?;
        leftover_of(&fd)
    }

    /// Removes the named object if it is a [`Leftover`] that no process has open
    /// (taking its owner lock exclusively first, as
    /// [`Segment::remove_if_stale`] does). Returns whether it was removed.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`].
    pub fn remove_leftover(name: &str) -> Result<bool> {
        validate_name(name)?;
        let place = Place::Shm(name);
        let fd = place.open_existing("open")?;
        if !sys::try_lock(&fd, OWNER_LOCK, LockKind::Exclusive)? {
            return Ok(false);
        }
        // Checked under the lock: the object cannot become a segment meanwhile.
        if leftover_of(&fd)?.is_none() || !place.still_names(&fd)? {
            return Ok(false);
        }
        Ok(place.unlink().is_ok())
    }

    /// As [`Segment::remove_if_stale`], but before removing it `keep` looks at the
    /// segment (read-only, see [`Peek`]) while this call holds its owner lock
    /// exclusively, so no process can attach, send or receive in between; if
    /// `keep` returns `true` nothing is removed (and the result is `false`). Use it
    /// to keep a segment whose contents still matter, such as messages waiting
    /// for a consumer.
    ///
    /// # Errors
    /// As [`Segment::remove_if_stale`], and those of [`Segment::peek`].
    pub fn remove_if_stale_unless(name: &str, keep: impl FnOnce(&Peek) -> bool) -> Result<bool> {
        validate_name(name)?;
        reclaim_unless(Place::Shm(name), Some(keep))
    }

    /// [`Segment::remove_if_stale_unless`] for the file channel at `path`: the
    /// file is removed if it is this user's and no process has it open (its
    /// owner lock is taken exclusively first), unless `keep`, shown it under
    /// that lock, says to keep it; a symbolic link is not followed.
    ///
    /// # Errors
    /// [`Error::Os`] (or the open's typed errors) if the file cannot be opened
    /// for another reason than not being there.
    pub fn remove_file_if_stale_unless(
        path: &Path,
        keep: impl FnOnce(&Peek) -> bool,
    ) -> Result<bool> {
        reclaim_unless(Place::File(path), Some(keep))
    }

    /// Creates an anonymous segment: a memfd (`MFD_CLOEXEC|MFD_ALLOW_SEALING`),
    /// sized, and sealed `F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL` so that no holder
    /// can resize it under a peer. Share it across `fork` (see [`Segment::reopen`])
    /// or pass [`Segment::export_fd`] over a UNIX socket.
    ///
    /// # Errors
    /// [`Error::HugePagesUnavailable`], [`Error::NoSpace`], [`Error::Os`].
    pub fn anonymous(layout: &Layout, opts: &SegmentOptions) -> Result<Creating> {
        let mut total = layout.total_len()?;
        let mut flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
        if opts.huge_pages {
            flags |= MFdFlags::MFD_HUGETLB;
            total = total.next_multiple_of(huge_page_size());
        }
        check_len(total, opts)?;
        let fd = memfd::memfd_create(c"shmq", flags).map_err(|e| match e {
            Errno::EINVAL if opts.huge_pages => Error::HugePagesUnavailable {
                reason: "the kernel refused MFD_HUGETLB",
            },
            e => Error::os("memfd_create", e),
        })?;
        lock_for_init(&fd, opts)?;
        size_object(&fd, total, opts)?;
        sys::add_seals(&fd, REQUIRED_SEALS)?;
        let seg = Segment::map_new(fd, Backing::Anonymous, layout, total, opts)?;
        Ok(Creating {
            seg: Some(seg),
            draft: None,
            durability: Durability::None,
        })
    }

    /// Opens an anonymous segment from a file descriptor received from another
    /// process. The seals are checked (`F_GET_SEALS`) before anything is mapped:
    /// a descriptor that is not a memfd, or lacks SHRINK, GROW or SEAL, is refused.
    /// The descriptor is re-opened so that this process's liveness markers are its
    /// own, then closed.
    ///
    /// # Errors
    /// [`Error::Untrusted`] (not a memfd, or not a regular file), [`Error::Unsealed`],
    /// then as [`Segment::open`].
    pub fn from_fd(fd: OwnedFd, expect: &Expect, opts: &SegmentOptions) -> Result<Segment> {
        let seals = sys::seals(&fd)?;
        let missing = REQUIRED_SEALS.difference(seals);
        if !missing.is_empty() {
            return Err(Error::Unsealed {
                missing: missing.bits() as u32,
            });
        }
        let st = sys::fstat(&fd)?;
        // A memfd is always ours to trust in ownership terms: it has no name that an
        // attacker could squat. Type and size still matter.
        sys::check_trust(&st, &TrustPolicy::any_mode(None))?;
        let own = sys::reopen(&fd)?;
        drop(fd);
        attach_fd(own, Backing::Anonymous, None, expect, opts)
    }

    /// Creates a file-backed segment at `path` (for rings that must outlive a
    /// reboot); [`Segment::flush`] writes it back. Built as [`Segment::create`]
    /// builds, in `path`'s directory (a named temporary there, or an unnamed
    /// object), published under `path` in one step.
    ///
    /// # Errors
    /// As [`Segment::create`], with paths instead of names.
    pub fn create_file(path: &Path, layout: &Layout, opts: &SegmentOptions) -> Result<Creating> {
        create_at(Place::File(path), layout, opts, None)
    }

    /// Opens a file-backed segment.
    ///
    /// # Errors
    /// As [`Segment::open`].
    pub fn open_file(path: &Path, expect: &Expect, opts: &SegmentOptions) -> Result<Segment> {
        open_at(Place::File(path), expect, opts)
    }

    /// Creates or opens a file-backed segment.
    ///
    /// # Errors
    /// As [`Segment::create_or_open`].
    pub fn create_or_open_file(
        path: &Path,
        layout: &Layout,
        expect: &Expect,
        opts: &SegmentOptions,
    ) -> Result<Opened> {
        create_or_open_at(Place::File(path), layout, expect, opts)
    }

    /// A second handle on the same segment with its own open file description and
    /// mapping: what a second endpoint in this process (or a child after `fork`)
    /// uses, so that its liveness markers are independent of ours.
    ///
    /// # Errors
    /// [`Error::Os`] if `/proc/self/fd` cannot be opened or mapping fails.
    pub fn reopen(&self) -> Result<Segment> {
        let fd = sys::reopen(&self.fd)?;
        let name = match &self.backing {
            Backing::Named(n) => Some(Place::Shm(n)),
            Backing::File(p) => Some(Place::File(p)),
            Backing::Anonymous => None,
        };
        let expect = Expect::default();
        let opts = SegmentOptions::new()
            .expected_owner(None)
            .allow_shared_write(true)
            .sigbus_guard(self.guarded);
        let seg = attach_fd(fd, self.backing.clone(), name, &expect, &opts)?;
        if seg.info != self.info {
            return Err(Error::Corrupt {
                what: "header changed between opens",
                value: 0,
            });
        }
        Ok(seg)
    }

    /// A duplicate of the segment's file descriptor (`CLOEXEC`) to send to another
    /// process with `SCM_RIGHTS`. The receiver uses [`Segment::from_fd`], which
    /// checks the seals and re-opens it.
    ///
    /// # Errors
    /// [`Error::Os`] if `dup` fails.
    pub fn export_fd(&self) -> Result<OwnedFd> {
        self.fd
            .try_clone()
            .map_err(|source| Error::Os { op: "dup", source })
    }

    /// Writes the segment back to its file and waits (`msync(MS_SYNC)`). Useful for
    /// file-backed segments; harmless for the others.
    ///
    /// # Errors
    /// [`Error::Os`] if `msync` fails.
    pub fn flush(&self) -> Result<()> {
        self.map.flush()
    }

    /// Writes the segment back to its file and waits (`msync(MS_SYNC)`: data
    /// and the metadata needed to read it, as `fdatasync`), then records the
    /// time in the durability record (display only; the record itself reaches
    /// the disk with the next sync). Harmless for segments that are not files.
    ///
    /// # Errors
    /// [`Error::Os`] if `msync` fails (an I/O error: what was written since the
    /// last sync may not be on the disk).
    pub fn sync(&self) -> Result<()> {
        self.map.flush()?;
        if let Some(record) = self.map.durability_record() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            record.record_sync(now);
        }
        Ok(())
    }

    /// The durability policy in the header, read now (each word once) and
    /// checked. [`Durability::None`] for a segment made before the record
    /// existed (its bytes were reserved as zeros).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the record holds values no creator writes.
    pub fn durability(&self) -> Result<Durability> {
        match self.map.durability_record() {
            Some(r) => r.read(),
            None => Ok(Durability::None),
        }
    }

    /// The last sync recorded in the header (display only).
    pub fn sync_record(&self) -> SyncRecord {
        self.map
            .durability_record()
            .map(|r| r.sync_record())
            .unwrap_or_default()
    }

    /// The validated header.
    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// Where the segment lives.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The object's owner uid and permission bits, from `fstat` now (a
    /// doorbell takes the channel's, see [`crate::bell`]).
    ///
    /// # Errors
    /// [`Error::Os`] if `fstat` fails.
    pub fn owner_and_mode(&self) -> Result<(u32, u32)> {
        let st = sys::fstat(&self.fd)?;
        Ok((st.st_uid, st.st_mode & 0o777))
    }

    /// The type name field, read now (each word once) and checked: the text
    /// the creator wrote there ([`Layout::type_name`]), empty for untyped
    /// regions.
    ///
    /// # Errors
    /// [`Error::BadTypeName`] if the field is damaged (no terminator, bytes
    /// after it, not UTF-8).
    pub fn type_name(&self) -> Result<TypeName> {
        match self.map.type_name_field() {
            Some(field) => TypeName::decode(&field.read()),
            None => TypeName::decode(&[]),
        }
    }

    /// Start of the user region. Valid while `self` lives; another process may
    /// write it at any time, so it must only be read and written through atomics
    /// or raw copies whose results are validated.
    pub fn data(&self) -> NonNull<u8> {
        self.map
            .range(self.info.data_offset, self.data_len())
            .expect("validated data_offset lies within the mapping")
    }

    /// Length of the user region.
    pub fn data_len(&self) -> u64 {
        self.info.data_len()
    }

    /// Whether the SIGBUS guard replaced this handle's pages: the object shrank
    /// under the mapping (a peer truncated it) and this process touched a page
    /// beyond its new end. From then on the mapping is private memory that reads
    /// as `0xFF` (first [`GUARD_POISON_LEN`](crate::GUARD_POISON_LEN) bytes) and
    /// zeros, shared with nobody: treat the segment as destroyed. One atomic
    /// load; always `false` for a segment opened with
    /// [`SegmentOptions::sigbus_guard`] off.
    #[inline]
    pub fn is_damaged(&self) -> bool {
        self.map.is_damaged()
    }

    /// Whether the shared header still reads as published (magic number and
    /// state): a peer that punched a hole over the first page (which then reads
    /// as zeros) or overwrote it makes this false. Two atomic loads. Meaningful
    /// once the segment is published (a [`Creating`]'s header is not yet).
    pub fn header_intact(&self) -> bool {
        let h = self.map.header();
        // Relaxed: a check of two values that never change after publication,
        // not a synchronisation.
        h.magic.load(core::sync::atomic::Ordering::Relaxed) == MAGIC
            && h.state.load(core::sync::atomic::Ordering::Relaxed) == STATE_READY
    }

    /// Whether the object is now smaller than this handle's mapping (a peer
    /// truncated it), whether or not any page beyond its end was touched yet.
    /// One `fstat`.
    ///
    /// # Errors
    /// [`Error::Os`] if `fstat` fails.
    pub fn is_shrunk(&self) -> Result<bool> {
        Ok(sys::size_of(&sys::fstat(&self.fd)?) < self.info.total_len)
    }

    /// Claims endpoint `index`: takes its liveness marker (an exclusive OFD lock
    /// the kernel releases when this process dies) and records our pid for display.
    ///
    /// # Errors
    /// [`Error::NoSuchEndpoint`]; [`Error::EndpointBusy`] if a live process holds it.
    pub fn claim_endpoint(&self, index: u16) -> Result<()> {
        let record = self.record(index)?;
        {
            // Keep this marker out of children that fork without exec (see fork.rs).
            // Registered before the lock is taken, so that a thread forking while we
            // lock cannot hand the marker to its child.
            self.fork_guard
                .get_or_init(|| crate::fork::register(self.fd.as_raw_fd()));
        }
        if !sys::try_lock(
            &self.fd,
            ENDPOINT_LOCK_BASE + i64::from(index),
            LockKind::Exclusive,
        )? {
            return Err(Error::EndpointBusy { index });
        }
        record
            .pid
            .store(std::process::id(), core::sync::atomic::Ordering::Relaxed);
        record
            .attaches
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(index);
        Ok(())
    }

    /// Releases endpoint `index`'s liveness marker (dropping the segment does too).
    ///
    /// # Errors
    /// [`Error::NoSuchEndpoint`], [`Error::Os`].
    pub fn release_endpoint(&self, index: u16) -> Result<()> {
        self.record(index)?;
        sys::unlock(&self.fd, ENDPOINT_LOCK_BASE + i64::from(index))?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&i| i != index);
        Ok(())
    }

    /// Whether endpoint `index` is held by a live process (this handle included).
    ///
    /// # Errors
    /// [`Error::NoSuchEndpoint`], [`Error::Os`].
    pub fn endpoint_alive(&self, index: u16) -> Result<bool> {
        self.record(index)?;
        if self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&index)
        {
            return Ok(true);
        }
        sys::is_locked_by_other(&self.fd, ENDPOINT_LOCK_BASE + i64::from(index))
    }

    /// Liveness and bookkeeping of endpoint `index`.
    ///
    /// # Errors
    /// As [`Segment::endpoint_alive`].
    pub fn endpoint_info(&self, index: u16) -> Result<EndpointInfo> {
        let alive = self.endpoint_alive(index)?;
        let record = self.record(index)?;
        let r = core::sync::atomic::Ordering::Relaxed;
        Ok(EndpointInfo {
            alive,
            pid: record.pid.load(r),
            attaches: record.attaches.load(r),
        })
    }

    /// If no other process has the segment open, and `unused` agrees, removes its
    /// name (named and file segments; anonymous ones have none). Returns whether
    /// it was removed. Call it when this handle is about to be dropped: it gives
    /// up this handle's shared owner lock to test for others.
    ///
    /// Two processes closing at the same time cannot both decline: each releases
    /// its shared lock before trying the exclusive one, so whichever tries last
    /// finds the other gone (or holding the exclusive lock and removing it).
    ///
    /// # Errors
    /// [`Error::Os`] if a lock operation fails.
    pub fn remove_if_unused(&self, unused: impl FnOnce() -> bool) -> Result<bool> {
        let place = match &self.backing {
            Backing::Named(n) => Place::Shm(n),
            Backing::File(p) => Place::File(p),
            Backing::Anonymous => return Ok(false),
        };
        sys::unlock(&self.fd, OWNER_LOCK)?;
        if !sys::try_lock(&self.fd, OWNER_LOCK, LockKind::Exclusive)? {
            return Ok(false);
        }
        let removed = place.still_names(&self.fd)? && unused() && place.unlink().is_ok();
        // Back to shared: the handle is still open until it is dropped.
        sys::try_lock(&self.fd, OWNER_LOCK, LockKind::Shared)?;
        Ok(removed)
    }

    fn record(&self, index: u16) -> Result<&crate::header::EndpointRecord> {
        if index >= self.info.endpoints {
            return Err(Error::NoSuchEndpoint {
                index,
                count: self.info.endpoints,
            });
        }
        self.map
            .endpoint_record(index)
            .ok_or(Error::NoSuchEndpoint {
                index,
                count: self.info.endpoints,
            })
    }

    fn map_new(
        fd: OwnedFd,
        backing: Backing,
        layout: &Layout,
        total: u64,
        opts: &SegmentOptions,
    ) -> Result<Segment> {
        let map = map_unlocked(&fd, total, opts).map_err(|e| {
            if opts.huge_pages {
                Error::HugePagesUnavailable {
                    reason: "no huge pages could be mapped",
                }
            } else {
                e
            }
        })?;
        if opts.huge_pages {
            // Best effort: a no-op for hugetlb, useful nowhere else.
            let _ = map.advise(MmapAdvise::MADV_HUGEPAGE);
        }
        map.header().write(layout, total);
        if let Some(field) = map.type_name_field() {
            field.write(&layout.type_name);
        }
        let info = map.header().snapshot();
        Ok(Segment::of(map, fd, backing, info, opts))
    }
}

/// A read-only look at an object that may or may not be a shmq segment, for tools
/// such as `shmq ls` and `shmq inspect`: it takes no lock, never waits, and never
/// maps the object. It copies the header and endpoint table into a private buffer
/// with `pread` when made, and reads the user region the same way on demand
/// ([`Peek::read_data`]): the object's owner may truncate it at any moment, and a
/// mapping would then fault (`SIGBUS`) where a `pread` just comes back short.
#[derive(Debug)]
pub struct Peek {
    fd: OwnedFd,
    size: u64,
    header: HeaderInfo,
    /// The bytes from offset 0 up to the end of the endpoint table (or of the
    /// object, or of what a short read returned), as read when peeking.
    table: Vec<u8>,
    backing: Backing,
    uid: u32,
    mode: u32,
}

impl Segment {
    /// Looks at the named object read-only (see [`Peek`]).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`],
    /// [`Error::Untrusted`] (not a regular file), [`Error::TooSmall`] (shorter than
    /// a header: not a segment), [`Error::TooLarge`].
    pub fn peek(name: &str, opts: &SegmentOptions) -> Result<Peek> {
        validate_name(name)?;
        peek_at(Place::Shm(name), opts)
    }

    /// Looks at a file read-only (see [`Peek`]).
    ///
    /// # Errors
    /// As [`Segment::peek`].
    pub fn peek_file(path: &Path, opts: &SegmentOptions) -> Result<Peek> {
        peek_at(Place::File(path), opts)
    }
}

fn peek_at(place: Place<'_>, opts: &SegmentOptions) -> Result<Peek> {
    let fd = place
        .open_raw(OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())
        .map_err(|e| place.map_open_errno(e, "open"))?;
    peek_fd(fd, place.backing(), opts)
}

/// The bytes a [`Peek`] copies when made: the header and the largest endpoint
/// table a header may declare.
const PEEK_TABLE_LEN: u64 = crate::header::ENDPOINT_TABLE_OFFSET
    + crate::header::MAX_ENDPOINTS as u64 * crate::header::ENDPOINT_RECORD_LEN;

/// Refuses an object of `size` bytes too small to hold a header, or larger
/// than `opts` agree to map.
fn check_size(size: u64, opts: &SegmentOptions) -> Result<()> {
    if size < HEADER_LEN {
        return Err(Error::TooSmall {
            size,
            min: HEADER_LEN,
        });
    }
    if size > opts.max_len {
        return Err(Error::TooLarge {
            size,
            max: opts.max_len,
        });
    }
    Ok(())
}

fn peek_fd(fd: OwnedFd, backing: Backing, opts: &SegmentOptions) -> Result<Peek> {
    let st = sys::fstat(&fd)?;
    sys::check_trust(&st, &TrustPolicy::any_mode(None))?;
    let size = sys::size_of(&st);
    check_size(size, opts)?;
    let mut table = vec![0; usize::try_from(size.min(PEEK_TABLE_LEN)).unwrap_or(0)];
    let got = pread_full(&fd, 0, &mut table)?;
    table.truncate(got);
    // Truncated since `fstat`: as short as it is now.
    let header = HeaderInfo::from_bytes(&table).ok_or(Error::TooSmall {
        size: got as u64,
        min: HEADER_LEN,
    })?;
    Ok(Peek {
        fd,
        size,
        header,
        table,
        backing,
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
    })
}

/// Reads into `buf` from `offset` until it is full or the object ends (it may
/// have been truncated since it was measured); returns the bytes read.
fn pread_full(fd: &OwnedFd, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset
            .checked_add(done as u64)
            .and_then(|o| i64::try_from(o).ok())
            .ok_or(Error::InvalidArgument {
                what: "read offset",
            })?;
        match nix::sys::uio::pread(fd, &mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::os("pread", e)),
        }
    }
    Ok(done)
}

impl Peek {
    /// The header as found (not validated).
    pub fn header(&self) -> &HeaderInfo {
        &self.header
    }

    /// The durability policy in the header, checked; `None` if the object is
    /// too short to hold the record.
    pub fn durability(&self) -> Option<Result<Durability>> {
        Durability::from_bytes(&self.table)
    }

    /// The last sync recorded in the header (display only); `None` if the
    /// object is too short to hold the record.
    pub fn sync_record(&self) -> Option<SyncRecord> {
        SyncRecord::from_bytes(&self.table)
    }

    /// Size of the object from `fstat`.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where it lives.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// Owner uid.
    pub fn owner(&self) -> u32 {
        self.uid
    }

    /// Permission bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The type name field as copied when peeking, checked (see
    /// [`Segment::type_name`]).
    ///
    /// # Errors
    /// [`Error::BadTypeName`] if the field is damaged or lies past the end of
    /// the object.
    pub fn type_name(&self) -> Result<TypeName> {
        let at = crate::header::TYPE_NAME_OFFSET as usize;
        TypeName::decode(self.table.get(at..).unwrap_or_default())
    }

    /// Whether the first bytes are shmq's magic number (a shmq segment, possibly
    /// damaged) rather than someone else's object.
    pub fn is_shmq(&self) -> bool {
        self.header.magic == MAGIC
    }

    /// Checks the header as an opener would: [`Error::NotReady`] (creator at work)
    /// or [`Error::Abandoned`] (creator died) for an unpublished header, otherwise
    /// as [`HeaderInfo::validate`].
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self, expect: &Expect) -> Result<()> {
        match self.problems(expect).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem [`Peek::validate`] would report, not just the first.
    pub fn problems(&self, expect: &Expect) -> Vec<Error> {
        if self.header.state == STATE_INIT && self.header.magic == MAGIC {
            return vec![match self.in_use() {
                Ok(true) => Error::NotReady {
                    waited: Duration::ZERO,
                },
                Ok(false) => Error::Abandoned,
                Err(e) => e,
            }];
        }
        self.header.problems(self.size, expect)
    }

    /// Whether some process has the segment open (holds its owner lock).
    ///
    /// # Errors
    /// [`Error::Os`] if the lock cannot be queried.
    pub fn in_use(&self) -> Result<bool> {
        sys::is_locked_by_other(&self.fd, OWNER_LOCK)
    }

    /// Liveness and bookkeeping of endpoint `index` (for a header that declares it),
    /// the bookkeeping as copied when peeking.
    ///
    /// # Errors
    /// [`Error::NoSuchEndpoint`], [`Error::Os`].
    pub fn endpoint_info(&self, index: u16) -> Result<EndpointInfo> {
        let count = self.header.endpoints;
        let off = crate::header::ENDPOINT_TABLE_OFFSET as usize
            + usize::from(index) * crate::header::ENDPOINT_RECORD_LEN as usize;
        let u32_at = |o: usize| {
            let b = self.table.get(o..o + 4)?;
            // Native order: the record's fields are atomics in this machine's order.
            Some(u32::from_ne_bytes(b.try_into().ok()?))
        };
        // The record's layout: `pid`, then `attaches` (see `header::EndpointRecord`).
        let (pid, attaches) = (index < count)
            .then(|| Some((u32_at(off)?, u32_at(off + 4)?)))
            .flatten()
            .ok_or(Error::NoSuchEndpoint { index, count })?;
        let alive = sys::is_locked_by_other(&self.fd, ENDPOINT_LOCK_BASE + i64::from(index))?;
        Ok(EndpointInfo {
            alive,
            pid,
            attaches,
        })
    }

    /// Length of the user region, if the header's `data_offset` (aligned as
    /// segments align it) and `total_len` lie within the object as measured.
    pub fn data_len(&self) -> Option<u64> {
        let len = self.header.total_len.checked_sub(self.header.data_offset)?;
        (self.header.total_len <= self.size
            && self
                .header
                .data_offset
                .is_multiple_of(crate::header::DATA_ALIGN))
        .then_some(len)
    }

    /// Copies user-region bytes from `offset` (relative to the region) into `buf`
    /// with `pread`; returns how many were copied: fewer than asked at the end of
    /// the region, or if the object has been truncated since it was peeked. The
    /// bytes are a copy made while their writers may be at work: treat every value
    /// as untrusted.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the user region lies outside the object (see
    /// [`Peek::data_len`]); [`Error::Os`] if `pread` fails.
    pub fn read_data(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let len = self.data_len().ok_or(Error::InvalidArgument {
            what: "user region outside the object",
        })?;
        let room = usize::try_from(len.saturating_sub(offset)).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        pread_full(&self.fd, self.header.data_offset + offset, &mut buf[..n])
    }
}

/// Maps the object `fd` refers to through a fresh open file description, never
/// through `fd` itself.
///
/// A mapping keeps a reference to the open file description it was made from,
/// and a lock on that description lives as long as any reference does. Were the
/// locks (owner and endpoint markers, taken on `fd`) on the mapped description, a
/// child that inherits the mapping across `fork` would keep them alive after the
/// parent died (found by the CF-13 test). The mapping's own description carries no
/// lock, and its descriptor is closed at once.
fn map_unlocked(fd: &OwnedFd, len: u64, opts: &SegmentOptions) -> Result<Mapping> {
    let map_fd = sys::reopen(fd)?;
    Mapping::new(&map_fd, len, opts.populate, opts.lock, opts.sigbus_guard)
}

fn check_len(total: u64, opts: &SegmentOptions) -> Result<()> {
    if total > opts.max_len {
        return Err(Error::TooLarge {
            size: total,
            max: opts.max_len,
        });
    }
    Ok(())
}

/// Takes the exclusive owner lock on a new object before it has a size, so that an
/// opener who sees a non-zero size knows a creator is (or was) at work.
fn lock_for_init(fd: &OwnedFd, opts: &SegmentOptions) -> Result<()> {
    // Only a racing opener (who lets go as soon as it sees size 0) can be in the way.
    if sys::lock_within(fd, OWNER_LOCK, LockKind::Exclusive, opts.open_timeout)? {
        Ok(())
    } else {
        Err(Error::NotReady {
            waited: opts.open_timeout,
        })
    }
}

/// `ftruncate`, then reserve the pages (`posix_fallocate`) unless disabled, with
/// `SIGXFSZ` held off (see `xfsz.rs`): a file size limit is an error, not death.
fn size_object(fd: &OwnedFd, total: u64, opts: &SegmentOptions) -> Result<()> {
    let len = i64::try_from(total).map_err(|_| Error::TooLarge {
        size: total,
        max: opts.max_len,
    })?;
    let too_big = || Error::FileSizeLimit {
        size: total,
        limit: crate::xfsz::file_size_limit(),
    };
    crate::xfsz::guarded(|| {
        nix::unistd::ftruncate(fd, len).map_err(|e| match e {
            Errno::EFBIG => too_big(),
            Errno::ENOSPC => Error::NoSpace { size: total },
            Errno::ENOMEM if opts.huge_pages => Error::HugePagesUnavailable {
                reason: "no free huge pages",
            },
            e => Error::os("ftruncate", e),
        })?;
        if opts.reserve {
            fcntl::posix_fallocate(fd, 0, len).map_err(|e| match e {
                Errno::ENOSPC if opts.huge_pages => Error::HugePagesUnavailable {
                    reason: "no free huge pages",
                },
                Errno::EFBIG => too_big(),
                Errno::ENOSPC => Error::NoSpace { size: total },
                e => Error::os("posix_fallocate", e),
            })?;
        }
        Ok(())
    })
}

/// Fails early if something is under the name already: the caller should not
/// build a segment it cannot publish. (Publication decides for real.) With
/// `reclaim_stale`, a stale segment there is removed first.
fn check_name_free(place: Place<'_>, opts: &SegmentOptions) -> Result<()> {
    let exists = |place: Place<'_>| -> Result<bool> {
        match place.stat_now() {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            // Another user's object, or something that is not a regular file:
            // taken either way.
            Err(_) if matches!(place, Place::Shm(_)) => Ok(true),
            Err(e) => Err(place.map_open_errno(e, "lstat")),
        }
    };
    if !exists(place)? {
        return Ok(());
    }
    if opts.reclaim_stale && reclaim(place)? && !exists(place)? {
        return Ok(());
    }
    Err(Error::AlreadyExists {
        name: place.display(),
        stale: stale_at(place).unwrap_or(false),
    })
}

/// A new empty object in `place`'s directory under a fresh temporary name, or,
/// if asked and the file system has `O_TMPFILE`, with no name at all; in
/// both cases with our exclusive owner lock on it.
fn new_draft(place: Place<'_>, opts: &SegmentOptions) -> Result<(OwnedFd, Option<PathBuf>)> {
    let dir = place.dir();
    let mode = Mode::from_bits_truncate(opts.mode);
    let dir_errno = |e: Errno, op| match e {
        Errno::ENOENT | Errno::ENOTDIR => Error::NotFound {
            name: place.display(),
        },
        e => place.map_open_errno(e, op),
    };
    if opts.build_unnamed {
        match fcntl::open(
            dir.as_path(),
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            mode,
        ) {
            Ok(fd) => {
                lock_for_init(&fd, opts)?;
                return Ok((fd, None));
            }
            // No O_TMPFILE on this file system: use a named temporary.
            Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {}
            Err(e) => return Err(dir_errno(e, "open(O_TMPFILE)")),
        }
    }
    for _ in 0..8 {
        let tmp = dir.join(format!("{TEMPORARY_PREFIX}{:016x}", sys::random_u64()?));
        let fd = match fcntl::open(
            tmp.as_path(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            mode,
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(dir_errno(e, "open(O_CREAT|O_EXCL)")),
        };
        let tmp_place = Place::File(&tmp);
        if let Err(e) = lock_for_init(&fd, opts) {
            let _ = unlink_if_ours(tmp_place, &fd);
            return Err(e);
        }
        // Between our O_EXCL open and our lock, the empty temporary was unlocked:
        // a cleaner may have taken it for a dead creator's and removed it.
        if tmp_place.still_names(&fd)? {
            return Ok((fd, Some(tmp)));
        }
    }
    Err(Error::NotReady {
        waited: opts.open_timeout,
    })
}

fn create_at(
    place: Place<'_>,
    layout: &Layout,
    opts: &SegmentOptions,
    or_open: Option<&Expect>,
) -> Result<Creating> {
    if opts.huge_pages {
        return Err(Error::HugePagesUnavailable {
            reason: "only anonymous segments take huge_pages; put a file-backed segment on hugetlbfs",
        });
    }
    let total = layout.total_len()?;
    check_len(total, opts)?;
    check_name_free(place, opts)?;
    let (fd, temporary) = new_draft(place, opts)?;
    let draft = Draft {
        temporary,
        reclaim_stale: opts.reclaim_stale,
        or_open: or_open.map(|e| (*e, opts.clone())),
    };
    // From here on, any error must remove our temporary (an unnamed object
    // goes away with its last descriptor).
    let undo = |fd: &OwnedFd, err: Error| -> Error {
        draft.discard(fd);
        err
    };
    if let Err(e) = nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(opts.mode)) {
        return Err(undo(&fd, Error::os("fchmod", e)));
    }
    if let Err(e) = size_object(&fd, total, opts) {
        return Err(undo(&fd, e));
    }
    let probe = match fd.try_clone() {
        Ok(p) => p,
        Err(source) => return Err(undo(&fd, Error::Os { op: "dup", source })),
    };
    let seg =
        Segment::map_new(fd, place.backing(), layout, total, opts).map_err(|e| undo(&probe, e))?;
    Ok(Creating {
        seg: Some(seg),
        draft: Some(draft),
        durability: Durability::None,
    })
}

/// The temporaries in `dir` whose creators died, removed if `remove`.
fn dead_temporaries_in(dir: &Path, remove: bool) -> Result<Vec<PathBuf>> {
    dead_owners_in(
        dir,
        remove,
        |name| name.starts_with(TEMPORARY_PREFIX),
        |path| {
            let fd = Place::File(path).open_rw().ok()?;
            let st = sys::fstat(&fd).ok()?;
            sys::check_trust(&st, &TrustPolicy::any_mode(Some(sys::euid())))
                .is_ok()
                .then_some(fd)
        },
    )
}

/// The objects in `dir` whose file names `candidate` accepts, which `open`
/// opens (and trusts), and whose owner lock is free: their owner died (an
/// owner holds the lock while it lives; a pid is never the test). Removed if
/// `remove`, holding the lock while the name is removed (so no owner can be
/// alive under it) and only if the name still names the object opened. The
/// temporaries of creators and the doorbells of receivers
/// ([`crate::bell`]) are collected this way.
pub(crate) fn dead_owners_in(
    dir: &Path,
    remove: bool,
    candidate: impl Fn(&str) -> bool,
    open: impl Fn(&Path) -> Option<OwnedFd>,
) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Os {
        op: "read_dir",
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        if !entry.file_name().to_str().is_some_and(&candidate) {
            continue;
        }
        let path = entry.path();
        let Some(fd) = open(&path) else {
            continue;
        };
        let place = Place::File(&path);
        let dead = if remove {
            sys::try_lock(&fd, OWNER_LOCK, LockKind::Exclusive)?
                && place.still_names(&fd)?
                && place.unlink().is_ok()
        } else {
            !sys::is_locked_by_other(&fd, OWNER_LOCK)?
        };
        if dead {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Whether the object `fd` refers to is a [`Leftover`].
fn leftover_of(fd: &OwnedFd) -> Result<Option<Leftover>> {
    use std::os::unix::fs::FileExt;
    let st = sys::fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    let size = sys::size_of(&st);
    if size != 0 {
        if size < HEADER_LEN {
            return Ok(None);
        }
        let file = std::fs::File::from(
            fd.try_clone()
                .map_err(|source| Error::Os { op: "dup", source })?,
        );
        let mut header = vec![0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|source| Error::Os {
                op: "pread",
                source,
            })?;
        if header.iter().any(|&b| b != 0) {
            return Ok(None);
        }
    }
    Ok(Some(Leftover {
        size,
        in_use: sys::is_locked_by_other(fd, OWNER_LOCK)?,
    }))
}

/// Removes the name if it still refers to the object `fd` has open.
fn unlink_if_ours(place: Place<'_>, fd: &OwnedFd) -> Result<()> {
    if place.still_names(fd)? {
        let _ = place.unlink();
    }
    Ok(())
}

/// No live process has the object under `place` open.
fn stale_at(place: Place<'_>) -> Result<bool> {
    let fd = place.open_existing("open")?;
    Ok(!sys::is_locked_by_other(&fd, OWNER_LOCK)?)
}

/// Removes the object under `place` if no live process has it open. Holding its
/// exclusive owner lock while we check that the name still refers to it and
/// unlink it keeps openers out (they need the shared lock to attach, and check
/// the name again once they have it).
fn reclaim(place: Place<'_>) -> Result<bool> {
    reclaim_unless(place, None::<fn(&Peek) -> bool>)
}

/// As [`reclaim`], but once the owner lock is held exclusively and the name is
/// known to still refer to the object, `keep` looks at it (a [`Peek`] through
/// the locked descriptor: nobody can attach meanwhile) and may veto the removal.
/// An object too short or too odd to peek at holds nothing to keep.
fn reclaim_unless(place: Place<'_>, keep: Option<impl FnOnce(&Peek) -> bool>) -> Result<bool> {
    let fd = match place.open_rw() {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(place.map_open_errno(e, "open")),
    };
    let st = sys::fstat(&fd)?;
    if sys::check_trust(&st, &TrustPolicy::any_mode(Some(sys::euid()))).is_err() {
        return Ok(false);
    }
    if !sys::try_lock(&fd, OWNER_LOCK, LockKind::Exclusive)? {
        return Ok(false);
    }
    if !place.still_names(&fd)? {
        return Ok(false);
    }
    if let Some(keep) = keep {
        // A descriptor of the same open file description: our own lock does not
        // count as another process having the segment open.
        let look = fd
            .try_clone()
            .map_err(|source| Error::Os { op: "dup", source })?;
        if let Ok(peek) = peek_fd(look, place.backing(), &SegmentOptions::new())
            && keep(&peek)
        {
            return Ok(false);
        }
    }
    Ok(place.unlink().is_ok())
}

fn create_or_open_at(
    place: Place<'_>,
    layout: &Layout,
    expect: &Expect,
    opts: &SegmentOptions,
) -> Result<Opened> {
    // Each round either creates, opens, or loses a race to a remover; a handful of
    // rounds is plenty (each loss means another process made progress).
    let started = Instant::now();
    for _ in 0..8 {
        match create_at(
            place,
            layout,
            &opts.clone().reclaim_stale(false),
            Some(expect),
        ) {
            Ok(c) => return Ok(Opened::Created(c)),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        match open_at(place, expect, opts) {
            Ok(s) => return Ok(Opened::Existing(s)),
            Err(Error::NotFound { .. }) => {}
            Err(Error::Abandoned) => {
                reclaim(place)?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::NotReady {
        waited: started.elapsed(),
    })
}

/// How long an opener waits for an empty object's creator before calling it
/// abandoned. Creators of this version never show an empty object under a
/// name; those of older versions took its lock microseconds after making it.
const EMPTY_GRACE: Duration = Duration::from_millis(100);

fn open_at(place: Place<'_>, expect: &Expect, opts: &SegmentOptions) -> Result<Segment> {
    let started = Instant::now();
    let deadline = started + opts.open_timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        let fd = place.open_existing("open")?;
        let st = sys::fstat(&fd)?;
        sys::check_trust(&st, &opts.trust)?;
        match attach_fd(fd, place.backing(), Some(place), expect, opts) {
            Err(Error::NotReady { .. }) | Err(Error::NotFound { .. })
                if Instant::now() < deadline =>
            {
                if started.elapsed() >= EMPTY_GRACE && empty_and_unowned(place) {
                    return Err(Error::Abandoned);
                }
                // Being replaced under us, or an older creator at work: look
                // again shortly.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(Error::NotReady { .. }) => {
                if empty_and_unowned(place) {
                    return Err(Error::Abandoned);
                }
                return Err(Error::NotReady {
                    waited: started.elapsed(),
                });
            }
            other => return other,
        }
    }
}

/// The object under `place` is empty and no process has it open: left by a
/// creator of an older shmq that died between making it and sizing it.
fn empty_and_unowned(place: Place<'_>) -> bool {
    let Ok(fd) = place.open_rw() else {
        return false;
    };
    sys::fstat(&fd).is_ok_and(|st| sys::size_of(&st) == 0)
        && sys::is_locked_by_other(&fd, OWNER_LOCK).is_ok_and(|locked| !locked)
}

/// Takes the shared owner lock on `fd`, checks that the name (if any) still refers
/// to it, then maps and validates it.
fn attach_fd(
    fd: OwnedFd,
    backing: Backing,
    place: Option<Place<'_>>,
    expect: &Expect,
    opts: &SegmentOptions,
) -> Result<Segment> {
    // A creator holds the lock exclusively while it initialises; so does a remover.
    if !sys::lock_within(&fd, OWNER_LOCK, LockKind::Shared, opts.open_timeout)? {
        return Err(Error::NotReady {
            waited: opts.open_timeout,
        });
    }
    if let Some(place) = place
        && !place.still_names(&fd)?
    {
        // Removed or replaced between our open and our lock.
        return Err(Error::NotFound {
            name: place.display(),
        });
    }
    let size = sys::size_of(&sys::fstat(&fd)?);
    if size == 0 {
        // The creator has made the object but not yet taken its lock and sized it;
        // let it, and look again (the caller retries until its deadline).
        return Err(Error::NotReady {
            waited: Duration::ZERO,
        });
    }
    check_size(size, opts)?;
    let map = map_unlocked(&fd, size, opts)?;
    let info = map.header().snapshot();
    if info.state == STATE_INIT && (info.magic == MAGIC || info.magic == 0) {
        // We hold the shared lock, so no creator holds the exclusive one: whoever
        // made this died before publishing it.
        return Err(Error::Abandoned);
    }
    info.validate(size, expect)?;
    // Read once, checked: a policy no creator writes is damage, and only files
    // are ever given one.
    let durability = match map.durability_record() {
        Some(r) => r.read()?,
        None => Durability::None,
    };
    if durability != Durability::None && !matches!(backing, Backing::File(_)) {
        return Err(Error::Corrupt {
            what: "durability policy (set on a segment that is not a file)",
            value: u64::from(durability.encode().map_or(0, |e| e.0)),
        });
    }
    Ok(Segment::of(map, fd, backing, info, opts))
}

/// Default huge page size from `/proc/meminfo` (2 MiB if it cannot be read).
fn huge_page_size() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let kb = l.strip_prefix("Hugepagesize:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .map_or(2 << 20, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sized_layout_round_trip() {
        let name = crate::unique_name("seg-unit").unwrap();
        let layout = Layout {
            kind: 7,
            endpoints: 3,
            data_len: 100,
            ..Layout::default()
        };
        let c = Segment::create(&name, &layout, &SegmentOptions::new()).unwrap();
        assert_eq!(c.info().state, STATE_INIT);
        let seg = c.publish().unwrap();
        assert_eq!(seg.info().kind, 7);
        assert!(seg.data_len() >= 100);
        assert_eq!(
            seg.data().as_ptr() as usize % crate::header::DATA_ALIGN as usize,
            0
        );
        Segment::unlink(&name).unwrap();
    }
}
