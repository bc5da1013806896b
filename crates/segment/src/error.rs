//! The one error type of `shmq-segment`.

use std::time::Duration;

/// Everything that can fail in `shmq-segment`.
///
/// Each variant names one case a caller may want to tell apart; none of them
/// carries a `nix` type, so the public API does not depend on `nix`'s version.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is not a valid POSIX shared-memory name. Checked before any system call.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `create` found an object under this name already.
    #[error("segment {name} already exists{}", if *stale { " (stale: no process has it open)" } else { "" })]
    AlreadyExists {
        /// The name.
        name: String,
        /// No live process has the existing segment open: `SegmentOptions::reclaim_stale`
        /// would replace it.
        stale: bool,
    },
    /// No segment under this name or path.
    #[error("segment {name} not found")]
    NotFound {
        /// The name or path.
        name: String,
    },
    /// The kernel refused access (`EACCES`/`EPERM`).
    #[error("permission denied for segment {name}")]
    PermissionDenied {
        /// The name or path.
        name: String,
    },
    /// The object is smaller than a segment header, so it cannot be a segment.
    #[error("segment is {size} bytes, smaller than the {min}-byte header")]
    TooSmall {
        /// Its size from `fstat`.
        size: u64,
        /// The header size.
        min: u64,
    },
    /// The object is larger than `OpenOptions::max_len` allows to be mapped.
    #[error("segment is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its size from `fstat` (or the requested size).
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The first bytes are not a shmq header: this is someone else's object.
    #[error("not a shmq segment: bad magic {found:#018x}")]
    BadMagic {
        /// The magic number found.
        found: u64,
    },
    /// The segment was written by an incompatible layout version of shmq (an
    /// older or newer build): it is refused, never read as this version.
    #[error(
        "the segment was made by another version of shmq (layout version {found}; \
         this build reads version {expected})"
    )]
    VersionMismatch {
        /// The version this build understands.
        expected: u32,
        /// The version in the header.
        found: u32,
    },
    /// A header field disagrees with what the caller expects, or with the object's size.
    #[error("layout mismatch in {field}: expected {expected}, found {found}")]
    LayoutMismatch {
        /// The field's name.
        field: &'static str,
        /// The expected value.
        expected: u64,
        /// The value in the header (or from `fstat`).
        found: u64,
    },
    /// The header's type name field is not what a creator writes: the segment
    /// is damaged.
    #[error("segment header is damaged: its type name field {reason} (byte {at})")]
    BadTypeName {
        /// Which check failed, in words.
        reason: &'static str,
        /// Offset in the field of the first byte that failed it.
        at: usize,
    },
    /// A type name is too long for the header's type name field.
    #[error("a type name of {len} bytes is longer than the {max} bytes a segment header holds")]
    TypeNameTooLong {
        /// Its length in bytes.
        len: usize,
        /// The most the field holds.
        max: usize,
    },
    /// A header field holds a value no creator writes: the segment is damaged.
    #[error("segment header is damaged: {what} = {value:#x}")]
    Corrupt {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// The object under the name stayed unusable for the whole open time-out:
    /// held exclusively (by a process removing it), or an unpublished object
    /// whose creator (an older shmq version: this one publishes only complete
    /// segments under a name) is still at work.
    #[error("segment not ready after {waited:?}: its creator has not finished initialising it")]
    NotReady {
        /// How long we waited.
        waited: Duration,
    },
    /// The object under the name was left half-made by a creator that died (an
    /// older shmq version, which made the object under its name before
    /// initialising it): an unpublished header, or an empty object no process
    /// has open. It can never become ready; `create_or_open` replaces it.
    #[error("segment was abandoned: its creator died before publishing it")]
    Abandoned,
    /// A memfd lacks the seals that stop a peer from resizing it under us.
    #[error("memfd lacks required seals (missing {missing:#x}; needs SHRINK|GROW|SEAL)")]
    Unsealed {
        /// The `F_SEAL_*` bits that are missing.
        missing: u32,
    },
    /// The object fails a trust check (type, owner, mode or link count), or the file
    /// descriptor is not a memfd.
    #[error("segment is untrusted: {reason}")]
    Untrusted {
        /// Which check failed.
        reason: String,
    },
    /// Another open of the segment holds this endpoint's liveness marker.
    #[error("endpoint {index} is already held by a live process")]
    EndpointBusy {
        /// The endpoint index.
        index: u16,
    },
    /// The endpoint index is beyond the segment's endpoint table.
    #[error("endpoint index {index} out of range (the segment has {count})")]
    NoSuchEndpoint {
        /// The index asked for.
        index: u16,
        /// How many the segment has.
        count: u16,
    },
    /// The file system has no room for the segment (`ENOSPC` from `posix_fallocate`).
    #[error("no space for a {size}-byte segment")]
    NoSpace {
        /// The requested size.
        size: u64,
    },
    /// The segment would be larger than a file may grow (`EFBIG`): beyond this
    /// process's file size limit (`RLIMIT_FSIZE`, `ulimit -f`) or the file
    /// system's largest file. Nothing is left behind, and the process is not
    /// killed by the `SIGXFSZ` the kernel sends with it.
    #[error("a {size}-byte segment is larger than the file size limit{}", match limit {
        Some(l) => format!(" of {l} bytes (ulimit -f)"),
        None => " of the file system".to_owned(),
    })]
    FileSizeLimit {
        /// The requested size.
        size: u64,
        /// This process's soft file size limit in bytes, if it is not unlimited.
        limit: Option<u64>,
    },
    /// Huge pages were requested but the system cannot provide them.
    #[error("huge pages unavailable: {reason}")]
    HugePagesUnavailable {
        /// Why.
        reason: &'static str,
    },
    /// An argument is out of range (for example a zero length).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// Which one, and why.
        what: &'static str,
    },
    /// A system call failed for a reason not listed above.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an errno from `op`.
    pub(crate) fn os(op: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Os {
            op,
            source: std::io::Error::from_raw_os_error(errno as i32),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
