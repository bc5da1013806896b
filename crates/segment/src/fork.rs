//! Keeping endpoint liveness markers out of `fork`ed children.
//!
//! An endpoint's marker is a lock on an open file description. `fork` copies the
//! file descriptor table, so without care a child would hold a reference to every
//! description its parent locked, and the lock would outlive the parent for as long
//! as the child lives: the parent's death would be masked (catalogue CF-13).
//! `O_CLOEXEC` covers children that `exec`; this module covers those that do not.
//!
//! Every descriptor that holds an endpoint's marker is registered here. A
//! `pthread_atfork` child handler, installed once, points each registered
//! descriptor number at `/dev/null` (`dup3`, which drops the child's reference to
//! the locked description while keeping the number valid, so that the inherited
//! handle can still be dropped safely) and bumps a generation counter, by which an
//! inherited handle can tell that it is in a child. The handler only does
//! async-signal-safe work: atomic loads and stores and `dup3`.
//!
//! The handler runs in the child, before `fork` returns there. Until the child is
//! first scheduled it still refers to the locked descriptions, so a parent killed
//! within that instant reads alive until the child runs (microseconds, normally);
//! from then on its death shows as usual.
//!
//! # Safety
//! `pthread_atfork` is given a plain `extern "C" fn` that touches only statics of
//! atomics and makes one system call per registered descriptor.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Most descriptors with endpoint markers one process can have registered; more
/// endpoints than this still work, but are not protected across `fork`.
const SLOTS: usize = 4096;

static REGISTERED: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
static DEV_NULL: AtomicI32 = AtomicI32::new(-1);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// How many `fork`s lie between this process and the process that started the
/// program: 0 in the original process, bumped in every child. A handle that
/// recorded a different value was inherited through `fork`.
#[inline]
pub fn fork_generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    let null = DEV_NULL.load(Ordering::Relaxed);
    if null < 0 {
        return;
    }
    for slot in &REGISTERED {
        let fd = slot.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: dup3 only replaces what descriptor number `fd` refers to, in this
            // (child) process; both numbers are valid descriptors here, inherited
            // from the parent. An error leaves the child holding the lock, which only
            // delays the parent's death being noticed.
            unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
        }
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: a plain open of /dev/null; the result is checked.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd >= 0 {
            DEV_NULL.store(fd, Ordering::Relaxed);
        }
        // SAFETY: `in_child` is an `extern "C" fn()` that lives for the whole
        // program and is async-signal-safe (module docs); no prepare or parent
        // handler is needed.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

/// A registration, undone on drop.
#[derive(Debug)]
pub(crate) struct Registration(Option<usize>);

/// Registers `fd` as holding endpoint markers.
pub(crate) fn register(fd: RawFd) -> Registration {
    install();
    for (i, slot) in REGISTERED.iter().enumerate() {
        if slot
            .compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return Registration(Some(i));
        }
    }
    Registration(None)
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            REGISTERED[i].store(-1, Ordering::Relaxed);
        }
    }
}
