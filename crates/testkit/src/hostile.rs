//! A hostile peer's view of a channel segment: the ring's control word offsets
//! ([`ring_off`]), raw atomic and byte access to the user region
//! ([`RawRegion`]), and an open that trusts nothing ([`open_raw`]); objects a
//! peer may leave where a segment is expected ([`plant`], [`poke`],
//! [`unsealed_memfd`]), a mapping whose file it can truncate underneath
//! ([`file_mapping`]), and names it may try ([`InvalidNames`]).

use std::os::fd::OwnedFd;

use crate::names::{Names, shm_path};

/// Byte offsets of a ring's control words within a channel segment's user region
/// (`crates/ring/src/ctl.rs`, pinned there by `const` assertions; docs/PROTOCOL.md §2).
pub mod ring_off {
    /// A cache-line pair: each group of control words has one of its own.
    const LINE: usize = 128;
    /// `tail` (u64), first in the region.
    pub const TAIL: usize = 0;
    /// `head` (u64).
    pub const HEAD: usize = TAIL + LINE;
    /// The consumer's futex sequence (u32), first of the wake line.
    pub const DATA_SEQ: usize = HEAD + LINE;
    /// The consumer's waiting flag (u32).
    pub const CONSUMER_WAITING: usize = DATA_SEQ + 4;
    /// The producers' futex sequence (u32).
    pub const SPACE_SEQ: usize = DATA_SEQ + 8;
    /// The producers' waiting flag (u32).
    pub const PRODUCERS_WAITING: usize = DATA_SEQ + 12;
    /// Start of an SPSC ring's data area, after the wake line and the ends line.
    pub const SPSC_DATA: usize = DATA_SEQ + 2 * LINE;
    /// Start of an MPSC ring's data area with `producers` slots (one line each).
    pub const fn mpsc_data(producers: u16) -> usize {
        SPSC_DATA + LINE * producers as usize
    }
    /// Start of the data area of a `K` ring with `producers` slots (which an
    /// SPSC ring does not have).
    pub fn data<K: crate::kinds::KindExt>(producers: u16) -> usize {
        if K::MPSC {
            mpsc_data(producers)
        } else {
            SPSC_DATA
        }
    }
}

/// Raw access to the user region of a mapped segment, as a hostile peer has it:
/// every word through an atomic, every byte range through a raw copy, never a
/// reference. Bounds are checked; the region lives as long as the borrowed segment.
pub struct RawRegion<'a> {
    base: std::ptr::NonNull<u8>,
    len: usize,
    _seg: &'a shmq_segment::Segment,
}

impl<'a> RawRegion<'a> {
    /// The user region of `seg`.
    pub fn of(seg: &'a shmq_segment::Segment) -> RawRegion<'a> {
        RawRegion {
            base: seg.data(),
            len: seg.data_len() as usize,
            _seg: seg,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at<T>(&self, off: usize) -> *mut T {
        let size = std::mem::size_of::<T>();
        assert!(
            off.is_multiple_of(size) && off + size <= self.len,
            "offset {off} out of the {}-byte region or misaligned",
            self.len
        );
        // SAFETY: `off + size <= len` (asserted), so the pointer stays inside the mapping.
        unsafe { self.base.as_ptr().add(off).cast() }
    }

    /// The 64-bit word at `off` (8-aligned).
    pub fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: in bounds and 8-aligned (checked by `at`; the region is 128-aligned);
        // the mapping outlives `'a`; shared memory is only touched atomically here,
        // and every other process accesses these words atomically too.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.at(off)) }
    }

    /// The 32-bit word at `off` (4-aligned).
    pub fn word32(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: as in `word`, for a 4-byte aligned 4-byte word.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.at(off)) }
    }

    /// Copies `bytes` in at `off` (a raw copy: the peer may be reading).
    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.len, "write beyond the region");
        // SAFETY: in bounds (asserted); a raw copy, never a reference to shared bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(off), bytes.len())
        }
    }

    /// Copies `len` bytes out from `off`.
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len, "read beyond the region");
        let mut v = vec![0u8; len];
        // SAFETY: in bounds (asserted); copied out raw into private memory.
        unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), v.as_mut_ptr(), len) }
        v
    }

    /// `FUTEX_WAKE` (shared, not private) on the 32-bit word at `off`: wakes up to
    /// `n` waiters. Returns how many were woken.
    pub fn futex_wake(&self, off: usize, n: i32) -> i64 {
        let addr = self.at::<u32>(off);
        // SAFETY: futex(2) FUTEX_WAKE only uses the address as a key (it must be a
        // mapped, aligned u32, which `at` checks); no memory is written.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr,
                libc::FUTEX_WAKE,
                n,
                0usize,
                0usize,
                0u32,
            )
        }
    }
}

/// Opens the named segment of a channel as a raw peer would (any owner, shared
/// write allowed: this is the adversary's view, not a trusted open).
pub fn open_raw(name: &str) -> shmq_segment::Segment {
    let opts = shmq::SegmentOptions::new()
        .expected_owner(None)
        .allow_shared_write(true);
    shmq_segment::Segment::open(name, &shmq_segment::Expect::default(), &opts)
        .unwrap_or_else(|e| panic!("raw open of {name}: {e:?}"))
}

/// The layout of the segments tests make by hand (not channels): an arbitrary
/// kind, four endpoints, 64 KiB.
pub const SEG_LAYOUT: shmq_segment::Layout = shmq_segment::Layout {
    kind: 0x7e57,
    endpoints: 4,
    data_len: 64 * 1024,
    capacity: 4096,
    slot_size: 24,
    slot_align: 8,
    type_version: 0xf00d,
    type_flags: 1,
    type_name: shmq_segment::TypeName::EMPTY,
};

/// Writes `bytes` as a mode-0600 object under `name` in `/dev/shm` (which must
/// not exist yet): a foreign or truncated object where a segment is expected.
pub fn plant(name: &str, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(name))
        .expect("plant a file in /dev/shm");
    f.write_all(bytes).expect("write planted file");
}

/// Overwrites `bytes` at `offset` of the object under `name` in `/dev/shm`
/// (a header field changed behind the library's back).
pub fn poke(name: &str, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .expect("open the /dev/shm file");
    f.write_all_at(bytes, offset).expect("pwrite");
}

/// Punches a hole (`fallocate(PUNCH_HOLE | KEEP_SIZE)`) over `len` bytes at
/// `offset` of the named object: they read back as zeros, and nothing forbids
/// it for a named segment (a memfd's seals do not either).
pub fn punch(name: &str, offset: i64, len: i64) {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .expect("open the /dev/shm file");
    // SAFETY: a plain system call on a descriptor this function owns.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    };
    assert_eq!(rc, 0, "punch: {}", std::io::Error::last_os_error());
}

/// A 64 KiB memfd with no seals: if `allow_sealing`, one that could still be
/// sealed (no seal at all), else one made without `MFD_ALLOW_SEALING` (which
/// carries only `F_SEAL_SEAL`). Neither is a segment an opener may trust.
pub fn unsealed_memfd(allow_sealing: bool) -> OwnedFd {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let mut flags = MFdFlags::MFD_CLOEXEC;
    if allow_sealing {
        flags |= MFdFlags::MFD_ALLOW_SEALING;
    }
    let fd = memfd_create(c"shmq-test-unsealed", flags).expect("memfd_create");
    nix::unistd::ftruncate(&fd, 1 << 16).expect("ftruncate");
    fd
}

/// A writable shared mapping of `len` bytes of a fresh temporary file (named
/// after `tag` and the process, and unlinked at once), and the file: truncated
/// under the mapping, it makes a touch of the pages past its end fault. The
/// mapping is the caller's, until it unmaps it or the process exits.
///
/// # Panics
/// If the file cannot be made or sized, or the mapping fails.
pub fn file_mapping(tag: &str, len: usize) -> (std::fs::File, *mut u8) {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(format!("shmq-{tag}-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("temp file");
    let _ = std::fs::remove_file(&path);
    f.set_len(len as u64).expect("size");
    // SAFETY: a fresh shared mapping of a file we own, at an address the kernel
    // picks.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    (f, p.cast())
}

/// Invalid segment names, among them names glibc's `shm_open` would accept (it
/// strips leading slashes): if the validation came after the system call, these
/// would create objects, which [`InvalidNames::assert_none_reached_shm_open`]
/// looks for.
pub struct InvalidNames {
    /// The names to try.
    pub table: Vec<String>,
    /// The objects the names glibc accepts would have created.
    leaked: [String; 2],
}

impl InvalidNames {
    /// A table with two fresh names of `names` in it (one without its leading
    /// slash, one with two).
    pub fn new(names: &Names) -> InvalidNames {
        let bare = names.name("seg-bare").trim_start_matches('/').to_owned();
        let double = format!("/{}", names.name("seg-dbl"));
        let long = format!("/{}", "x".repeat(256));
        let leaked = [bare.clone(), double.trim_start_matches('/').to_owned()];
        let table = ["", "/", &bare, &double, "/a/b", "/a\0b", "/.", "/..", &long]
            .map(str::to_owned)
            .to_vec();
        InvalidNames { table, leaked }
    }

    /// Asserts that no name of the table created an object in `/dev/shm`.
    pub fn assert_none_reached_shm_open(&self) {
        for leaked in &self.leaked {
            assert!(
                !shm_path(leaked).exists(),
                "an invalid name reached shm_open: /dev/shm/{leaked} exists"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ring_off::*;

    /// The offsets are those `crates/ring/src/ctl.rs` pins with `const` assertions.
    #[test]
    fn ring_offsets_are_the_protocol_s() {
        assert_eq!(
            [
                TAIL,
                HEAD,
                DATA_SEQ,
                CONSUMER_WAITING,
                SPACE_SEQ,
                PRODUCERS_WAITING,
                SPSC_DATA
            ],
            [0, 128, 256, 260, 264, 268, 512]
        );
        assert_eq!(mpsc_data(4), 512 + 4 * 128);
    }
}
