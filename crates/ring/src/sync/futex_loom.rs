//! The futex under loom: "compare and park" made atomic with a mutex, and a
//! condition variable that really blocks. Time-outs are ignored, so a wake-up the
//! protocol loses is a deadlock that loom reports.
//!
//! One mutex and condition variable serve every word of a model (as the kernel's
//! hash table serves every futex): a wait on several words ([`wait_any`], the
//! stand-in of `futex_waitv`) compares all of them under the lock and sleeps
//! until a wake on any word. A wake on one word also wakes the waiters of
//! others; they re-check and sleep again, as after a spurious wake-up.

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Condvar, Mutex};
use std::time::Duration;

loom::lazy_static! {
    /// The futex "hash bucket" of the model.
    static ref HUB: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
}

pub struct FutexWord {
    word: AtomicU32,
}

impl FutexWord {
    pub(crate) fn new(v: u32) -> Self {
        FutexWord {
            word: AtomicU32::new(v),
        }
    }

    pub(crate) fn load(&self, order: Ordering) -> u32 {
        self.word.load(order)
    }

    pub(crate) fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        self.word.fetch_add(v, order)
    }

    pub(crate) fn wait(&self, expected: u32, _timeout: Option<Duration>) {
        wait_any(&[(self, expected)], Duration::MAX);
    }

    pub(crate) fn wake(&self, _n: u32) {
        let _guard = HUB.0.lock().unwrap();
        HUB.1.notify_all();
    }
}

/// Most words one wait takes (as `futex_waitv`).
pub(crate) const WAITV_MAX: usize = 128;

/// Sleeps while every word still holds its value (the time-out is ignored).
pub(crate) fn wait_any(words: &[(&FutexWord, u32)], _timeout: Duration) {
    let words = &words[..words.len().min(WAITV_MAX)];
    let guard = HUB.0.lock().unwrap();
    // SeqCst: the kernel's compare. A waker bumps its word and then takes the
    // hub's lock to notify, so a bump after this compare finds us asleep.
    if words
        .iter()
        .any(|(w, seq)| w.word.load(Ordering::SeqCst) != *seq)
    {
        return;
    }
    drop(HUB.1.wait(guard).unwrap());
}

/// Futex system calls made so far: none under loom, which has no futex.
pub fn futex_calls() -> (u64, u64) {
    (0, 0)
}
