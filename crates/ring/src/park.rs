//! Async waits: a ring end that has nothing to do registers its futex word
//! with one waiter thread per process, which sleeps on every registered word
//! at once and wakes each registration's [`Waker`] when its word moves
//! (docs/PROTOCOL.md, section 6, "Async waits").
//!
//! A [`Parking`] is one future's hold on the waiter. Its [`Parking::poll`]
//! makes the select's wait ([`crate::select`]) for one end, with the sleep
//! handed to the waiter thread:
//! 1. looks at the end (`poll`, as a select does: a message or room, an error,
//!    and once a slice, or when the peers' epoch moved, the peers' liveness;
//!    MPSC consumers reclaim dead producers' claims there);
//! 2. spins as the end's [`WaitStrategy`] says, at most [`DEFAULT_SPIN`];
//! 3. `select::arm`: reads the end's futex sequence (`Acquire`), sets its
//!    waiting flag, `fence(SeqCst)`, re-checks the ring;
//! 4. if still nothing, registers (the word, pinned with its region so that it
//!    stays mapped while the waiter thread may read it; the sequence read in 3;
//!    the waker; a time-out of one wait slice) and returns `Pending`.
//!
//! The next poll first drops the registration and clears the flag when the end
//! is its only waiter (`select::disarm`, step 5 of the select); so does
//! dropping the `Parking` (a cancelled future). Producers are unchanged: the
//! Dekker pair of the flag and the fence is the select's, ring by ring, and a
//! bump of the sequence after step 3 makes the waiter thread's `futex_waitv`
//! return at once (the kernel compares the word with the sequence read in 3).
//!
//! The waiter thread sleeps with `futex_waitv` on a control word of its own
//! and on the first [`MAX_WAIT_WORDS`]` - 1` registered words, until the
//! earliest registration's time-out (at most [`OVERFLOW_SLICE`] when more are
//! registered: it looks at the others' words after every sleep). It wakes a
//! registration's waker, and forgets it, when its word no longer holds the
//! sequence it was registered with or its time-out passed. A registration bumps
//! the control word and wakes the thread, so that its next sleep includes the
//! new word; the bump comes after the registration is in the table, and the
//! thread reads the control word before it reads the table, so a registration
//! made while the thread looks makes its sleep return at once.
//!
//! A wake thus costs two kernel hops (the producer's `FUTEX_WAKE` wakes the
//! waiter thread, whose waker call makes the executor's thread run), and a
//! registration one `FUTEX_WAKE` of the waiter thread; while the peer keeps
//! the end busy, nothing registers and nothing is called.
#![cfg(not(loom))]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::region::Pinned;
use crate::select::{self, MAX_WAIT_WORDS, OVERFLOW_SLICE, Selectable};
use crate::sync::{self, AtomicU32, FutexWord, Ordering, wait_any};
use crate::wait::{DEFAULT_SPIN, WaitStrategy};

/// One future's registration with the waiter thread, and the waiting flag it
/// set: dropped (or re-polled), it deregisters and clears the flag when the
/// end is the flag's only waiter. Dropping it loses nothing: a wait consumes
/// no message.
#[derive(Default)]
pub struct Parking {
    registered: Option<Registration>,
    /// The sequence `select::arm` read (kept to reuse its allocation).
    seqs: Vec<u32>,
}

impl core::fmt::Debug for Parking {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Parking")
            .field("registered", &self.registered.is_some())
            .finish()
    }
}

/// Looks at an end at most this many times in one poll after its re-check said
/// ready (an epoch moved, a message came): then the poll yields (wakes its own
/// waker and returns `Pending`), so that one poll never runs for long.
const ROUNDS: u32 = 4;

/// Spins between time checks in the spin phase.
const SPIN_BATCH: u32 = 64;

impl Parking {
    /// No registration.
    pub fn new() -> Parking {
        Parking::default()
    }

    /// Whether a registration is pending (the future returned `Pending` and
    /// has not been polled since).
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// One poll of an async wait on `end` (see the module docs): `Ready(Ok)`
    /// when the end is ready (a non-blocking operation on it would not say
    /// `Empty` or `Full`, as [`select::try_ready`]: the caller makes it now),
    /// `Ready(Err(Interrupted))` when its [`Interrupter`](crate::Interrupter)
    /// is set, and `Pending` with `waker` registered otherwise (woken when the
    /// end's futex word moves, or after one wait slice).
    pub fn poll(&mut self, end: &mut dyn Selectable, waker: &Waker) -> Poll<Result<()>> {
        // Woken by its time-out (or spuriously), not by its word: nothing
        // moved, so spinning now would only burn the budget once a slice per
        // idle future (measured: about 0.2% of a CPU each).
        let quiet = self.registered.as_ref().is_some_and(Registration::unmoved);
        self.release();
        let cfg = end.cfg();
        let budget = match cfg.strategy {
            _ if quiet => Duration::ZERO,
            WaitStrategy::Spin => DEFAULT_SPIN,
            WaitStrategy::SpinThenPark { spin } => spin.min(DEFAULT_SPIN),
            WaitStrategy::Park => Duration::ZERO,
        };
        let started = Instant::now();
        if end.poll(started) {
            return Poll::Ready(Ok(()));
        }
        if end.interrupted() {
            return Poll::Ready(Err(Error::Interrupted));
        }
        if !budget.is_zero() {
            let until = started + budget;
            loop {
                for _ in 0..SPIN_BATCH {
                    sync::spin_loop();
                }
                let now = Instant::now();
                if end.poll(now) {
                    return Poll::Ready(Ok(()));
                }
                if now >= until {
                    break;
                }
            }
        }
        for _ in 0..ROUNDS {
            let mut ends: [&mut dyn Selectable; 1] = [&mut *end];
            let (ready, paired) = select::arm(&mut ends, &mut self.seqs);
            if ready {
                select::disarm(&ends);
                if end.poll(Instant::now()) {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let (word, flag) = ends[0].words();
            let region = ends[0].region();
            let (Some(word), Some(flag)) = (region.pin(word), region.pin(flag)) else {
                // Words outside the end's region cannot happen (they are its
                // control block's); poll again rather than sleep on nothing.
                select::disarm(&ends);
                waker.wake_by_ref();
                return Poll::Pending;
            };
            let exclusive = ends[0].exclusive();
            self.registered = Some(Registration::new(
                word,
                self.seqs[0],
                exclusive.then_some(flag),
                waker.clone(),
                // A failed heavy barrier: a light notifier may miss the flag.
                started
                    + if paired {
                        cfg.slice
                    } else {
                        crate::local::DEGRADED_SLEEP
                    },
            ));
            return Poll::Pending;
        }
        waker.wake_by_ref();
        Poll::Pending
    }

    /// Deregisters, and clears the waiting flag if the end is its only waiter.
    pub fn release(&mut self) {
        self.registered = None;
    }
}

/// One registered word.
struct Registration {
    waiter: Arc<Waiter>,
    id: u64,
    /// The word and the sequence it was registered with (kept to tell a wake
    /// by the word from one by the time-out).
    word: Pinned<FutexWord>,
    seq: u32,
    /// The end's waiting flag, when the end is its only waiter (cleared on drop).
    flag: Option<Pinned<AtomicU32>>,
}

impl Registration {
    fn new(
        word: Pinned<FutexWord>,
        seq: u32,
        flag: Option<Pinned<AtomicU32>>,
        waker: Waker,
        until: Instant,
    ) -> Registration {
        let waiter = waiter();
        let id = {
            let mut t = waiter.lock();
            let id = t.next;
            t.next += 1;
            t.entries.insert(
                id,
                Entry {
                    word: word.clone(),
                    seq,
                    waker,
                    until,
                },
            );
            id
        };
        waiter.kick();
        Registration {
            waiter,
            id,
            word,
            seq,
            flag,
        }
    }

    /// Whether the word still holds the sequence it was registered with.
    fn unmoved(&self) -> bool {
        // Relaxed: a hint that only chooses whether to spin; the wait that
        // follows re-reads everything.
        self.word.load(Ordering::Relaxed) == self.seq
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let was_there = self.waiter.lock().entries.remove(&self.id).is_some();
        if was_there {
            // Still slept on: make the thread sleep without it (and give the
            // mapping it pins back) now rather than at its time-out.
            self.waiter.kick();
        }
        if let Some(flag) = &self.flag {
            // Relaxed: this end is the flag's only waiter, and it no longer
            // waits (as `select::disarm`); a notifier may clear it too.
            flag.store(0, Ordering::Relaxed);
        }
    }
}

/// What the waiter thread keeps of a registration.
struct Entry {
    word: Pinned<FutexWord>,
    seq: u32,
    waker: Waker,
    until: Instant,
}

/// The registrations (oldest first: the first ones are slept on).
#[derive(Default)]
struct Table {
    next: u64,
    entries: BTreeMap<u64, Entry>,
}

/// The process's waiter: its control word and its table.
struct Waiter {
    /// Bumped (`Release`) after every change of the table, and woken.
    ctl: FutexWord,
    table: Mutex<Table>,
}

impl Waiter {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A waker that panicked while the table was locked left it consistent
        // (entries are inserted or removed whole).
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the thread the table changed.
    fn kick(&self) {
        // Release: pairs with the Acquire load at the top of the thread's loop
        // (the table itself is published by its mutex); a bump after that load
        // makes the thread's sleep return at once.
        self.ctl.fetch_add(1, Ordering::Release);
        self.ctl.wake(1);
    }

    /// The thread: forever, wake the wakers whose word moved or whose time-out
    /// passed, then sleep on the control word and the others' words.
    fn run(&self) {
        let mut due: Vec<Waker> = Vec::new();
        let mut words: Vec<(Pinned<FutexWord>, u32)> = Vec::new();
        loop {
            // Acquire: pairs with the Release bump in `kick`.
            let seen = self.ctl.load(Ordering::Acquire);
            let now = Instant::now();
            let mut until = now + Duration::from_secs(3600);
            {
                let mut t = self.lock();
                let many = t.entries.len() >= MAX_WAIT_WORDS;
                t.entries.retain(|_, e| {
                    // Acquire: pairs with the Release increment in
                    // `WakeLine::notify_*` and `wake_all` (the future re-checks
                    // its ring anyway when it is polled).
                    if e.word.load(Ordering::Acquire) != e.seq {
                        due.push(e.waker.clone());
                        return false;
                    }
                    if now >= e.until {
                        // Relaxed: a statistics counter.
                        EXPIRED.fetch_add(1, Ordering::Relaxed);
                        due.push(e.waker.clone());
                        return false;
                    }
                    if words.len() < MAX_WAIT_WORDS - 1 {
                        words.push((e.word.clone(), e.seq));
                    }
                    until = until.min(e.until);
                    true
                });
                if many {
                    until = until.min(now + OVERFLOW_SLICE);
                }
            }
            for w in due.drain(..) {
                w.wake();
            }
            let mut refs: Vec<(&FutexWord, u32)> = Vec::with_capacity(words.len() + 1);
            refs.push((&self.ctl, seen));
            refs.extend(words.iter().map(|(w, s)| (&**w, *s)));
            let sleep = until.saturating_duration_since(Instant::now());
            if !sleep.is_zero() {
                wait_any(&refs, sleep);
            }
            drop(refs);
            // The words' mappings may go now.
            words.clear();
        }
    }
}

/// The process's waiter and the process it was started in (a child made by
/// `fork` has no thread: it starts its own).
static WAITER: Mutex<Option<(u32, Arc<Waiter>)>> = Mutex::new(None);

/// The process's waiter, started on first use.
fn waiter() -> Arc<Waiter> {
    let pid = std::process::id();
    let mut w = WAITER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((p, waiter)) = &*w
        && *p == pid
    {
        return waiter.clone();
    }
    let waiter = Arc::new(Waiter {
        ctl: FutexWord::new(0),
        table: Mutex::new(Table::default()),
    });
    let run = waiter.clone();
    std::thread::Builder::new()
        .name("shmq-async-waiter".into())
        .spawn(move || run.run())
        .expect("spawning the shmq async waiter thread");
    *w = Some((pid, waiter.clone()));
    waiter
}

/// Registrations the waiter thread woke because their time-out passed, not
/// because their word moved, in this process: a diagnostic for tests (a
/// future that waits for a message a peer sends within a slice is never woken
/// so; a lost wake-up would be).
pub fn expired() -> u64 {
    // Relaxed: a statistics counter.
    EXPIRED.load(Ordering::Relaxed)
}

static EXPIRED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many registrations the waiter holds now (a diagnostic for tests: a
/// dropped future leaves none).
pub fn registrations() -> usize {
    let w = WAITER.lock().unwrap_or_else(PoisonError::into_inner);
    match &*w {
        Some((p, waiter)) if *p == std::process::id() => waiter.lock().entries.len(),
        _ => 0,
    }
}
