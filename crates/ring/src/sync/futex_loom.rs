//! The futex under loom: "compare and park" made atomic with a mutex, and a
//! condition variable that really blocks. Time-outs are ignored, so a wake-up the
//! protocol loses is a deadlock that loom reports.

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct FutexWord {
    word: AtomicU32,
    lock: Mutex<()>,
    cv: Condvar,
}

impl FutexWord {
    pub(crate) fn new(v: u32) -> Self {
        FutexWord {
            word: AtomicU32::new(v),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn load(&self, order: Ordering) -> u32 {
        self.word.load(order)
    }

    pub(crate) fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        self.word.fetch_add(v, order)
    }

    pub(crate) fn wait(&self, expected: u32, _timeout: Option<Duration>) {
        let guard = self.lock.lock().unwrap();
        if self.word.load(Ordering::SeqCst) != expected {
            return;
        }
        drop(self.cv.wait(guard).unwrap());
    }

    pub(crate) fn wake(&self, _n: u32) {
        let _guard = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// Futex system calls made so far: none under loom, which has no futex.
pub fn futex_calls() -> (u64, u64) {
    (0, 0)
}
