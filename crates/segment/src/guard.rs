//! The SIGBUS guard: a peer that shrinks a segment under our mapping makes the
//! kernel raise `SIGBUS` on our next access beyond the new end. This module turns
//! that signal into a flag that the owner of the mapping reads as damage.
//!
//! # Design
//!
//! A process-global `SIGBUS` handler (`SA_SIGINFO | SA_NODEFER | SA_ONSTACK`),
//! installed once, on the first mapping of a segment whose options ask for it
//! (the default), looks the faulting address (`si_addr`) up in a fixed table of
//! registered mappings. If a registered mapping holds it, the handler:
//!
//! 1. maps private anonymous memory over the *whole* mapping
//!    (`mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)`), so every page of it is
//!    valid again, and this process no longer shares any byte with the damaged
//!    object;
//! 2. fills the first [`POISON_LEN`] bytes of it with `0xFF`: the segment header
//!    and every ring's control block live there, and all-ones is invalid for the
//!    words the ring and the header validate (positions are not 8-aligned, state
//!    words out of range, a bad magic number). Zeros would not do: an all-zero
//!    control block is a *valid* fresh ring whose peers have not attached yet,
//!    which a blocked receiver waits for forever;
//! 3. marks the slot damaged and returns, so the faulting access completes
//!    (reading poison or zeros) and the owner turns the flag into an error
//!    ([`crate::Segment::is_damaged`]).
//!
//! This is what Wayland compositors do for clients' `wl_shm` pools, with two
//! differences: Wayland finds the pool through a thread-local set around each
//! access (`wl_shm_buffer_begin_access`), we through a table keyed by address
//! (a ring is accessed from many places, and the pointer escapes to the ring
//! crate); and Wayland maps zeros (pixels carry no protocol state), we poison the
//! control pages (ours do).
//!
//! A fault at an address no registered mapping holds is not ours: the handler
//! calls the previous handler if there was one (with the same arguments), and
//! otherwise puts the previous disposition (`SIG_DFL` or `SIG_IGN`) back and
//! returns, so that the faulting instruction runs again and faults under it
//! (the kernel never ignores a fault's `SIGBUS`: the process dies as it would
//! have without us). A `SIGBUS` sent with `kill` or `raise` is re-raised under
//! the previous disposition instead, as returning would not repeat it. (A Rust
//! program always has a previous handler: std installs one for `SIGBUS` to
//! report stack overflows; for any other fault it puts the default action back
//! and returns, which ends the same way.)
//!
//! Why not the alternatives: sealing (`F_SEAL_SHRINK`) is what memfd segments
//! use, but POSIX shared memory objects and files cannot be sealed; re-checking
//! the object's size (`fstat`) before each access would cost a system call per
//! message and still race with the truncation; `MAP_POPULATE`/`mlock` do not
//! keep pages that truncation removes. A handler is the only way to survive the
//! access that faults.
//!
//! # The table
//!
//! [`SLOTS`] slots of three atomics each (state, start, length). The state word
//! holds a tag (free, being written, active, damaged) and a generation bumped on
//! every claim, so a reader can tell a slot that changed while it read it (a
//! sequence lock with the generation as the sequence). Registration claims a free
//! slot with a compare-and-swap, writes start and length, then publishes the
//! active state with `Release`; the handler reads the state with `Acquire`, the
//! range, then (after an `Acquire` fence) the state again, and ignores the slot if
//! it changed. Unregistration (on drop, *before* `munmap`) stores the free state:
//! after that, a fault at that address concerns some later mapping, not ours.
//!
//! The handler takes no lock and allocates nothing: atomic loads and stores, a
//! bounded scan of the table, `mmap`, `memset`, and for faults not ours
//! `sigaction`/`raise`. (`mmap` is not on POSIX's list of async-signal-safe
//! functions; on Linux it is a plain system call, which is what Wayland relies
//! on too.)
//!
//! # Limits
//!
//! - More than [`SLOTS`] mappings at once: the extra ones are not registered and
//!   a truncation under them is a plain `SIGBUS`, as without the guard.
//! - A handler installed for `SIGBUS` *after* ours replaces it (unless it chains
//!   to the action it replaced, as ours does).
//! - A handler installed before ours that does not return (`longjmp`, `exit`)
//!   still sees only faults that are not ours.
//! - Threads that block `SIGBUS` get the kernel's default action for a fault.
//! - A hole punched in a segment raises no `SIGBUS` (it reads back as zeros), so
//!   the guard plays no part in it: validation must catch it.
//!
//! # Safety
//!
//! The handler replaces memory only inside a range that is registered and
//! active while it looks. A range is registered only while its [`Guard`] lives,
//! and the guard is dropped before the range is unmapped, so the handler never
//! maps over memory that is not a registered segment mapping. Replacing a mapping
//! with another of the same length keeps every pointer into it valid, which is
//! all Rust needs: nothing holds a reference to plain bytes of a segment (see
//! `map.rs`).
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::MaybeUninit;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

/// Most mappings one process can have guarded at once. A mapping beyond this
/// many is not guarded (see the module docs).
pub const SLOTS: usize = 4096;

/// Bytes at the start of a damaged mapping that are filled with `0xFF` rather
/// than left zero: the segment header, the endpoint table and the largest ring
/// control block (an MPSC ring with 256 producer slots) fit well within it.
pub const POISON_LEN: usize = 1 << 20;

const TAG: u64 = 0b11;
const FREE: u64 = 0;
const BUSY: u64 = 1;
const ACTIVE: u64 = 2;
const DAMAGED: u64 = 3;

#[derive(Debug)]
struct Slot {
    /// `generation << 2 | tag`.
    state: AtomicU64,
    start: AtomicUsize,
    len: AtomicUsize,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        state: AtomicU64::new(FREE),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
    }
}; SLOTS];

/// One past the highest slot ever claimed: the handler scans no further.
static HIGH: AtomicUsize = AtomicUsize::new(0);

static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The `SIGBUS` action in place before ours, written once before ours is
/// installed and only read afterwards.
struct Previous {
    ready: AtomicBool,
    action: UnsafeCell<MaybeUninit<libc::sigaction>>,
}

// SAFETY: `action` is written once, inside `INSTALL.call_once`, before `ready` is
// set with Release; it is read only after an Acquire load of `ready` saw `true`,
// and never written again.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous {
    ready: AtomicBool::new(false),
    action: UnsafeCell::new(MaybeUninit::uninit()),
};

/// Whether this process has the guard installed (some segment was mapped with
/// [`crate::SegmentOptions::sigbus_guard`] on, the default).
pub fn sigbus_guard_installed() -> bool {
    // Relaxed: a report, not a synchronisation.
    INSTALLED.load(Ordering::Relaxed)
}

/// Installs the handler, once per process.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a query (`act` null) that writes the current action into `old`,
        // which is valid for writes.
        if unsafe { libc::sigaction(libc::SIGBUS, core::ptr::null(), old.as_mut_ptr()) } != 0 {
            return;
        }
        // SAFETY: `call_once` runs this once; nobody reads `action` before `ready`.
        unsafe { (*PREVIOUS.action.get()).write(old.assume_init()) };
        // Release: pairs with the Acquire load of `ready` in `previous()`.
        PREVIOUS.ready.store(true, Ordering::Release);
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
        let mut new: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
        new.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
        // SAFETY: `on_sigbus` is an `extern "C"` function with the SA_SIGINFO
        // signature that lives for the whole program and is async-signal-safe
        // (module docs).
        if unsafe { libc::sigaction(libc::SIGBUS, &new, core::ptr::null_mut()) } == 0 {
            // Relaxed: only `sigbus_guard_installed` reads it.
            INSTALLED.store(true, Ordering::Relaxed);
        }
    });
}

/// The registration of one mapping, undone on drop (which must come before the
/// range is unmapped).
#[derive(Debug)]
pub(crate) struct Guard {
    /// The slot (a `'static` reference, so that the per-call check indexes
    /// nothing).
    slot: &'static Slot,
    /// The slot's state while active: generation and `ACTIVE`.
    active: u64,
    /// The slot's state once the handler has replaced this mapping's pages.
    damaged: u64,
}

/// Registers `len` bytes at `start`. `None` if every slot is taken.
pub(crate) fn register(start: *mut u8, len: usize) -> Option<Guard> {
    for (i, slot) in TABLE.iter().enumerate() {
        // Relaxed: only a hint for which slot to try; the CAS decides.
        let s = slot.state.load(Ordering::Relaxed);
        if s & TAG != FREE {
            continue;
        }
        let generation = (s >> 2).wrapping_add(1);
        let busy = generation << 2 | BUSY;
        // Relaxed: the slot's previous contents are of no interest to us; the
        // handler is kept off them by the fence below and the Release store.
        if slot
            .state
            .compare_exchange(s, busy, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // Release fence: pairs with the Acquire fence in `lookup`: a handler that
        // reads the range we write next also sees the BUSY state on its re-check.
        fence(Ordering::Release);
        // Relaxed: published by the Release store of the state below.
        slot.start.store(start as usize, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        // Release: pairs with the Acquire load of HIGH in `lookup`.
        HIGH.fetch_max(i + 1, Ordering::Release);
        let active = generation << 2 | ACTIVE;
        // Release: pairs with the Acquire load of the state in `lookup` and in
        // `Guard::is_damaged`: whoever sees ACTIVE sees the range.
        slot.state.store(active, Ordering::Release);
        return Some(Guard {
            slot: &TABLE[i],
            active,
            damaged: (active & !TAG) | DAMAGED,
        });
    }
    None
}

impl Guard {
    /// Whether the handler replaced this mapping's pages.
    #[inline]
    pub(crate) fn is_damaged(&self) -> bool {
        // Acquire: pairs with the Release compare-and-swap to DAMAGED in
        // `on_sigbus` (a fault in another thread of this process). In the faulting
        // thread itself the handler ran before the access returned.
        self.slot.state.load(Ordering::Acquire) == self.damaged
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Release: pairs with the Acquire loads in `lookup` and `register`: the
        // slot is free, and a fault at its old range is no longer ours.
        self.slot.state.store(self.active & !TAG, Ordering::Release);
    }
}

/// The active (or damaged) slot whose range holds `addr`: its index, the state
/// read, start and length.
fn lookup(addr: usize) -> Option<(usize, u64, usize, usize)> {
    // Acquire: pairs with the Release `fetch_max` in `register`.
    let high = HIGH.load(Ordering::Acquire).min(SLOTS);
    for (i, slot) in TABLE[..high].iter().enumerate() {
        // Acquire: pairs with the Release store of ACTIVE in `register`.
        let s = slot.state.load(Ordering::Acquire);
        if !matches!(s & TAG, ACTIVE | DAMAGED) {
            continue;
        }
        // Relaxed: validated by the re-check of the state below.
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        // Acquire fence: pairs with the Release fence in `register`.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        if slot.state.load(Ordering::Relaxed) != s {
            continue;
        }
        if addr >= start && addr - start < len {
            return Some((i, s, start, len));
        }
    }
    None
}

/// Maps fresh private memory over `len` bytes at `start` and poisons its first
/// [`POISON_LEN`] bytes. `false` if the kernel refused.
fn replace(start: usize, len: usize) -> bool {
    // SAFETY: `start..start + len` is a registered, active mapping (the caller
    // looked it up), so MAP_FIXED replaces only our own segment mapping, with one
    // of the same length; pointers into it stay valid.
    let p = unsafe {
        libc::mmap(
            start as *mut c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: the first `min(len, POISON_LEN)` bytes lie in the fresh private
    // read-write mapping made just above; nothing holds a Rust reference to them.
    unsafe { core::ptr::write_bytes(p.cast::<u8>(), 0xFF, len.min(POISON_LEN)) };
    true
}

/// The action in place before ours, if recorded.
fn previous() -> Option<&'static libc::sigaction> {
    // Acquire: pairs with the Release store in `install`.
    if !PREVIOUS.ready.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: written once before `ready` was set, never written again.
    Some(unsafe { (*PREVIOUS.action.get()).assume_init_ref() })
}

/// Hands a `SIGBUS` that is not ours to whatever would have had it without us.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let prev = previous();
    let handler = prev.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
        let siginfo = prev.is_some_and(|p| p.sa_flags & libc::SA_SIGINFO != 0);
        if siginfo {
            // SAFETY: the previous action was installed with SA_SIGINFO, so its
            // handler has this signature; we pass it the arguments we were given.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                unsafe { core::mem::transmute(handler) };
            f(sig, info, ctx);
        } else {
            // SAFETY: the previous action was installed without SA_SIGINFO, so its
            // handler takes the signal number only.
            let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(handler) };
            f(sig);
        }
        return;
    }
    // SAFETY: `info` is the siginfo the kernel passed us (SA_SIGINFO).
    let sent = unsafe { (*info).si_code } <= 0; // SI_USER, SI_QUEUE, SI_TKILL, ...
    if sent && handler == libc::SIG_IGN {
        return;
    }
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask and no flags.
    let dfl: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    let restore: *const libc::sigaction = prev.map_or(&dfl, |p| p);
    // SAFETY: `restore` points to a valid sigaction (ours on the stack, or the
    // recorded previous one); sigaction is async-signal-safe.
    unsafe { libc::sigaction(libc::SIGBUS, restore, core::ptr::null_mut()) };
    if sent {
        // SAFETY: raise is async-signal-safe. With SA_NODEFER, SIGBUS is not blocked
        // here, so the default action (terminate) happens now.
        unsafe { libc::raise(libc::SIGBUS) };
    }
    // A fault: returning runs the access again, which faults under `restore`.
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // Keep errno as the interrupted code left it (mmap may set it).
    // SAFETY: __errno_location returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: `info` is the siginfo the kernel passed us (SA_SIGINFO); `si_addr` is
    // meaningful for a fault, and merely matches no mapping otherwise.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let ours = if code > 0 { lookup(addr) } else { None };
    match ours {
        Some((i, s, start, len)) if s & TAG == DAMAGED || replace(start, len) => {
            // Release: pairs with the Acquire load in `Guard::is_damaged`. If the
            // slot changed meanwhile (it cannot while a thread accesses its
            // mapping, see the module docs) the flag is simply not set.
            let _ = TABLE[i].state.compare_exchange(
                s,
                (s & !TAG) | DAMAGED,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
        _ => chain(sig, info, ctx),
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file-backed shared mapping, registered, then the file truncated under it:
    /// the read completes (no signal), sees the poison, and the slot is damaged.
    #[test]
    fn a_read_past_the_end_of_a_registered_mapping_is_damage_not_a_signal() {
        install();
        assert!(sigbus_guard_installed());
        let len = 4 * 4096;
        let (f, p) = shmq_testkit::hostile::file_mapping("guard", len);
        // SAFETY: within the mapping, which the file still covers.
        unsafe { p.add(3 * 4096).write_volatile(7) };
        let guard = register(p, len).expect("a free slot");
        assert!(!guard.is_damaged());
        f.set_len(4096).unwrap();
        // SAFETY: within the mapping; beyond the file's end, so it faults, and the
        // guard replaces the pages.
        let v = unsafe { p.add(3 * 4096).read_volatile() };
        assert!(guard.is_damaged());
        assert_eq!(
            v, 0xFF,
            "a mapping shorter than POISON_LEN is poison throughout"
        );
        // SAFETY: within the (replaced) mapping, which the file still covers: the
        // guard replaced the whole mapping, not just the pages past the end.
        let first = unsafe { p.read_volatile() };
        assert_eq!(first, 0xFF, "the first page is poisoned too");
        drop(guard);
        // SAFETY: the mapping we made above, unregistered first.
        assert_eq!(unsafe { libc::munmap(p.cast(), len) }, 0);
    }

    /// A slot freed by dropping its guard no longer matches, and is reused.
    #[test]
    fn an_unregistered_range_is_not_looked_up() {
        let mut x = [0u8; 64];
        let p = x.as_mut_ptr();
        let g = register(p, 64).expect("a free slot");
        assert!(lookup(p as usize + 10).is_some());
        drop(g);
        assert!(lookup(p as usize + 10).is_none());
    }
}
