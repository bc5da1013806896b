//! Waiting: strategies, the liveness hook, and the one blocking loop every side
//! uses (docs/PROTOCOL.md, section 6).
//!
//! The waiter, having found nothing to do:
//! 1. spins (unless the strategy is `Park`), re-trying, for the spin budget;
//! 2. reads the futex sequence (`Acquire`), sets its waiting flag, `fence(SeqCst)`,
//!    and re-checks the ring; if still nothing, `FUTEX_WAIT`s on the sequence for
//!    at most one wait slice;
//! 3. after every wake or slice, re-tries, and looks at its peer's liveness when
//!    the peers' epoch changed or a slice has passed.
//!
//! The notifier (`WakeLine::notify_*`) publishes, `fence(SeqCst)`, and only if the
//! flag is set bumps the sequence and `FUTEX_WAKE`s. The two fences make this
//! Dekker's pattern: the waiter sees the publication or the notifier sees the
//! flag. Bounded slices mean a peer that dies without notifying is noticed within
//! a slice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::failpoint;
use crate::kind::EndCore;
use crate::sync::{AtomicU32, FutexWord, Ordering};

/// How a blocking call waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Never sleeps: lowest latency; burns a CPU while waiting.
    Spin,
    /// Spins for `spin`, then sleeps on a futex (the default).
    SpinThenPark {
        /// How long to spin before sleeping.
        spin: Duration,
    },
    /// Sleeps on a futex at once: least CPU, a wake-up costs a system call.
    Park,
}

/// Default spin budget of [`WaitStrategy::SpinThenPark`].
///
/// Long enough to cover a peer's futex wake-up on a VM (tens of microseconds, see
/// the README's `floor-futex` row), so that in a request/response exchange a side
/// whose peer had to be woken is still spinning when the reply comes, and the two
/// never settle into both sleeping on every message.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// Default longest single sleep; a waiter checks its peer's liveness at least this
/// often, so a peer killed without notice is noticed within it.
pub const DEFAULT_WAIT_SLICE: Duration = Duration::from_millis(50);

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::SpinThenPark { spin: DEFAULT_SPIN }
    }
}

impl WaitStrategy {
    /// How long a wait spins before it sleeps: `None` for as long as it
    /// waits ([`WaitStrategy::Spin`]), zero for [`WaitStrategy::Park`].
    pub(crate) fn spin_limit(self) -> Option<Duration> {
        match self {
            WaitStrategy::Spin => None,
            WaitStrategy::SpinThenPark { spin } => Some(spin),
            WaitStrategy::Park => Some(Duration::ZERO),
        }
    }
}

/// What an absent peer means to a ring end (docs/LIFECYCLE.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// The ends are one conversation: once the peer is gone (closed or dead),
    /// a producer gets [`Error::Disconnected`] at once, and a consumer gets it
    /// when everything committed is received and the expected producers have
    /// come and gone (one, unless `expect_producers` says otherwise). Final.
    #[default]
    Session,
    /// The ring is a queue that outlives its ends: a producer never fails
    /// because the consumer is absent (it waits only for room), and a consumer
    /// waits (asleep) for producers to come; it gets [`Error::Disconnected`]
    /// only once `expect_producers(n)` was called, `n` producers have attached,
    /// none is attached now, and everything committed is received.
    Queue,
}

/// A strategy, the wait slice, and what an absent peer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitConfig {
    /// The strategy.
    pub strategy: WaitStrategy,
    /// Longest single futex sleep (and longest a spinning waiter goes without
    /// checking its peer). Default [`DEFAULT_WAIT_SLICE`].
    pub slice: Duration,
    /// Session (the default) or queue.
    pub lifecycle: Lifecycle,
    /// A consumer's linger (zero, the default: none): a blocking batch
    /// receive (`Consumer::recv_batch`) that comes less than `linger` after
    /// the previous one drained the ring first waits, without looking at the
    /// ring, until `linger` has passed since then. A consumer that keeps up
    /// with a stream of large messages reads each one while the producer
    /// writes the next beside it, and both slow down; one that looks at most
    /// once per linger takes what came meanwhile in one batch. A message after
    /// a quiet spell of at least `linger` is not delayed; one that follows the
    /// previous batch closely waits at most `linger`.
    pub linger: Duration,
}

impl Default for WaitConfig {
    fn default() -> Self {
        WaitConfig {
            strategy: WaitStrategy::default(),
            slice: DEFAULT_WAIT_SLICE,
            lifecycle: Lifecycle::Session,
            linger: Duration::ZERO,
        }
    }
}

impl From<WaitStrategy> for WaitConfig {
    fn from(strategy: WaitStrategy) -> Self {
        WaitConfig {
            strategy,
            ..WaitConfig::default()
        }
    }
}

/// An endpoint of a ring, as named to a [`Liveness`] hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The consumer.
    Consumer,
    /// The producer in slot `n` (always 0 for SPSC; the publisher of a
    /// broadcast ring is `Producer(0)`).
    Producer(u16),
    /// The broadcast subscriber in slot `n`.
    Subscriber(u16),
}

/// Answers "is the holder of this endpoint alive?" from a marker the kernel
/// releases when a process dies (the `shmq` crate uses segment locks). The ring
/// calls it only on slow paths (while waiting), never per message.
pub trait Liveness: Send + Sync {
    /// Whether some live process holds `endpoint`'s marker.
    fn is_alive(&self, endpoint: Endpoint) -> bool;
}

/// What a consumer waits on instead of the futex when it waits in an event
/// loop: a descriptor (the `shmq` crate uses a FIFO) that a producer makes
/// readable through its [`Ringer`]. The ring arms it on a non-blocking
/// receive that finds nothing (docs/PROTOCOL.md, section 6, "Doorbell").
pub trait Doorbell: Send + Sync {
    /// What producers hand to their [`Ringer`] to find this doorbell; written
    /// into shared memory when the consumer arms it.
    fn id(&self) -> u64;
    /// Empties the doorbell (a rung bell stays readable until then); called
    /// before every arming.
    fn clear(&self);
}

/// How a producer rings a consumer's [`Doorbell`]: one write, only when the
/// consumer said it waits on it. `id` comes from shared memory: a ringer
/// finds the doorbell by it and must treat it as untrusted (a wrong id is a
/// wake-up that does not arrive, never a fault).
pub trait Ringer: Send + Sync {
    /// Makes the doorbell `id` readable.
    fn ring(&self, id: u64);
}

/// A [`Liveness`] for rings shared only between threads of one process, where an
/// endpoint is alive exactly as long as it is attached (closing is the only way to go).
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Liveness for InProcess {
    fn is_alive(&self, _endpoint: Endpoint) -> bool {
        true
    }
}

/// What a blocking loop needs from one side of a ring.
pub(crate) trait Side {
    /// Result of a successful attempt (plain data, not a borrow, so that the loop
    /// can keep borrowing the side).
    type Token;
    /// One non-blocking attempt: `Ok(Some)` done, `Ok(None)` not now.
    fn attempt(&mut self) -> Result<Option<Self::Token>>;
    /// Cheap re-check after the waiting flag is set (shared memory only): would an
    /// attempt succeed, or did the peers' epoch change?
    fn ready(&mut self) -> bool;
    /// Whether the peers' epoch changed since the last [`Side::check_peer`].
    fn epoch_changed(&self) -> bool;
    /// Whether a look at the peer's liveness is due (once per `slice`, on a clock
    /// kept by the endpoint across calls).
    fn liveness_due(&mut self, now: Instant, slice: Duration) -> bool;
    /// The futex sequence and waiting flag this side sleeps on.
    fn words(&self) -> (&FutexWord, &AtomicU32);
    /// Whether this side is the only one that sleeps on its flag (then it clears
    /// the flag itself after waking; a shared flag is cleared only by notifiers).
    fn exclusive(&self) -> bool;
    /// Full look at the peer(s), which may make system calls: `Err` when the
    /// operation can never complete (the peer is gone). MPSC consumers also
    /// reclaim dead producers' claims here.
    fn check_peer(&mut self) -> Result<()>;
    /// Whether this end's [`Interrupter`] is set.
    fn interrupted(&self) -> bool;
    /// The barrier between setting the flag and re-checking
    /// (`Local::waiter_barrier`): false if a wake-up may be lost (sleep
    /// briefly).
    fn waiter_barrier(&self) -> bool;
}

/// Interrupts the blocking calls of one ring end from anywhere: another thread,
/// or a signal handler ([`Interrupter::interrupt`] is one atomic store, which is
/// async-signal-safe). A blocked call returns [`Error::Interrupted`] within one
/// wait slice (it looks at the flag whenever it wakes, and while it spins); so
/// does every later blocking call, until [`Interrupter::clear`]. Non-blocking
/// (`try_`) calls are not affected, so that a shutting-down service can still
/// drain what is there.
///
/// The flag is this process's own memory, never the shared segment: a peer
/// cannot interrupt us, and interrupting us wakes no other process.
#[derive(Clone, Debug, Default)]
pub struct Interrupter(Arc<std::sync::atomic::AtomicBool>);

impl Interrupter {
    /// A fresh flag, not set.
    pub fn new() -> Interrupter {
        Interrupter::default()
    }

    /// Makes blocked and later blocking calls return [`Error::Interrupted`].
    pub fn interrupt(&self) {
        // Relaxed: the flag is the whole message (a caller with more to publish
        // synchronises on its own), and no shared memory is involved.
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Interrupter::interrupt`] was called (and not cleared since).
    pub fn is_interrupted(&self) -> bool {
        // Relaxed: see `interrupt`.
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lets blocking calls wait again.
    pub fn clear(&self) {
        // Relaxed: only the flag itself changes.
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long an operation may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all: `Full` or `Empty` at once.
    Try,
    /// Until the deadline (`None`: as long as it takes).
    Until(Option<Instant>),
}

impl Wait {
    /// Waiting at most `timeout` from now.
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        Wait::Until(Some(Instant::now() + timeout))
    }
}

/// Waits until `until` (or the deadline, whichever is first) without looking
/// at the ring: a consumer's linger (`Consumer::recv_batch`). Spins while the
/// strategy would spin, then sleeps in slices; ends early if the end's flag is
/// set (the receive that follows hands over what is there, or says
/// `Interrupted`). Under a model it returns at once (time does not pass
/// there).
pub(crate) fn linger(
    cfg: &WaitConfig,
    interrupt: &Interrupter,
    until: Instant,
    deadline: Option<Instant>,
) {
    if crate::sync::MODEL {
        return;
    }
    let until = deadline.map_or(until, |d| d.min(until));
    let spin_until = cfg
        .strategy
        .spin_limit()
        .map_or(until, |spin| (Instant::now() + spin).min(until));
    loop {
        let now = Instant::now();
        if now >= until || interrupt.is_interrupted() {
            return;
        }
        if now < spin_until {
            crate::sync::spin_loop();
        } else {
            std::thread::sleep((until - now).min(cfg.slice));
        }
    }
}

/// The slow path of every operation, after an attempt found nothing to do: a
/// `Try` lets `gone` report a peer that is gone (else `none`: `Full` or
/// `Empty`); a deadline waits in [`block`], trying with `attempt` and
/// re-checking with `ready`.
pub(crate) fn nothing_now<C: EndCore, T>(
    core: &mut C,
    wait: Wait,
    none: Error,
    gone: impl FnOnce(&mut C) -> Result<()>,
    attempt: impl FnMut(&mut C) -> Result<Option<T>>,
    ready: impl FnMut(&mut C) -> bool,
) -> Result<T> {
    match wait {
        Wait::Try => {
            gone(core)?;
            Err(none)
        }
        Wait::Until(deadline) => {
            let cfg = core.local().cfg;
            block(
                &mut Waiting {
                    core,
                    attempt,
                    ready,
                },
                &cfg,
                deadline,
            )
        }
    }
}

/// A core waiting in [`block`]: how it tries (`attempt`), and how it re-checks
/// cheaply once its waiting flag is set (`ready`); the rest comes from the core.
/// The one [`Side`] of every kind and role.
struct Waiting<'a, C, A, R> {
    core: &'a mut C,
    attempt: A,
    ready: R,
}

impl<C, T, A, R> Side for Waiting<'_, C, A, R>
where
    C: EndCore,
    A: FnMut(&mut C) -> Result<Option<T>>,
    R: FnMut(&mut C) -> bool,
{
    type Token = T;

    fn attempt(&mut self) -> Result<Option<T>> {
        (self.attempt)(self.core)
    }

    fn ready(&mut self) -> bool {
        (self.ready)(self.core) || self.epoch_changed()
    }

    fn epoch_changed(&self) -> bool {
        self.core.local().epoch_changed(&self.core.ends().epoch)
    }

    fn liveness_due(&mut self, now: Instant, slice: Duration) -> bool {
        self.core.local_mut().look_due_at(now, slice)
    }

    fn words(&self) -> (&FutexWord, &AtomicU32) {
        self.core.wait_words()
    }

    fn exclusive(&self) -> bool {
        C::EXCLUSIVE_WAIT
    }

    fn check_peer(&mut self) -> Result<()> {
        self.core.check_peer()
    }

    fn interrupted(&self) -> bool {
        self.core.local().interrupt.is_interrupted()
    }

    fn waiter_barrier(&self) -> bool {
        self.core.local().waiter_barrier()
    }
}

/// Whether the peer's liveness is due for a look. Under loom time must not steer
/// a model (it would make it non-deterministic): there, peers are looked at only
/// when their epoch changes.
#[inline]
fn liveness_due<S: Side>(side: &mut S, now: Instant, cfg: &WaitConfig) -> bool {
    !crate::sync::MODEL && side.liveness_due(now, cfg.slice)
}

/// Spins between time checks in the spin phase.
const SPIN_BATCH: u32 = 64;

/// Blocks until `side` completes an attempt, the peer goes, or `deadline` passes.
pub(crate) fn block<S: Side>(
    side: &mut S,
    cfg: &WaitConfig,
    deadline: Option<Instant>,
) -> Result<S::Token> {
    if let Some(t) = side.attempt()? {
        return Ok(t);
    }
    // A model does not spin: time does not pass in it.
    if !crate::sync::MODEL {
        let spin_until = cfg.strategy.spin_limit().map(|spin| Instant::now() + spin);
        while spin_until.is_none_or(|until| Instant::now() < until) {
            for _ in 0..SPIN_BATCH {
                crate::sync::spin_loop();
                if let Some(t) = side.attempt()? {
                    return Ok(t);
                }
            }
            if side.interrupted() {
                return Err(Error::Interrupted);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            if liveness_due(side, now, cfg) || side.epoch_changed() {
                side.check_peer()?;
            }
        }
    }

    let parked = park(side, cfg, deadline);
    if side.exclusive() {
        // Relaxed: our own flag; a notifier that still finds it set makes one
        // needless wake at most.
        side.words().1.store(0, Ordering::Relaxed);
    }
    parked
}

/// The parking phase of [`block`]; leaves the flag set (an exclusive waiter's
/// caller clears it).
///
/// The flag is set, and the barrier made, only when the flag is not already
/// set from this call's last round: a wake that left it set (a slice's end, a
/// spurious or hostile wake) took no notifier's turn, so the barrier made after
/// setting it still covers every notifier that publishes later, which will see
/// it (PROTOCOL.md section 6). Only an exclusive waiter knows the flag it finds
/// set is its own; a shared one arms every round. On an asymmetric ring the
/// barrier is a system call: HP-10's wake storm made a blocked receiver spend a
/// core on it when every wake re-armed.
fn park<S: Side>(side: &mut S, cfg: &WaitConfig, deadline: Option<Instant>) -> Result<S::Token> {
    let (mut armed, mut paired) = (false, true);
    // Rounds in a row that ended with our flag still set and nothing to do.
    let mut idle_rounds = 0u32;
    loop {
        if side.interrupted() {
            return Err(Error::Interrupted);
        }
        // Acquire: pairs with the Release increment in `WakeLine::notify_*` and
        // `wake_all`; a notifier's increment after this load makes the futex
        // wait below return at once.
        let seq = side.words().0.load(Ordering::Acquire);
        // Relaxed: our own store, or a notifier's clear (then we arm again).
        if !armed || side.words().1.load(Ordering::Relaxed) != crate::ctl::WAIT_FUTEX {
            crate::ctl::arm_flag(side.words().1);
            failpoint::hit("after_wait_flag_set");
            // SeqCst fence, or on an asymmetric ring the heavy barrier: pairs
            // with the notifier's barrier in `WakeLine::notify_*` (see module
            // docs).
            paired = side.waiter_barrier();
            armed = side.exclusive();
        }
        if !side.ready() {
            let now = Instant::now();
            let mut sleep = cfg.slice;
            if !paired {
                sleep = sleep.min(crate::local::DEGRADED_SLEEP);
            }
            if let Some(d) = deadline {
                sleep = sleep.min(d.saturating_duration_since(now));
            }
            if !sleep.is_zero() {
                side.words().0.wait(seq, Some(sleep));
            }
        }
        if let Some(t) = side.attempt()? {
            return Ok(t);
        }
        let now = Instant::now();
        if liveness_due(side, now, cfg) || side.epoch_changed() {
            side.check_peer()?;
            if let Some(t) = side.attempt()? {
                return Ok(t);
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::Timeout);
        }
        // Relaxed: as above. A flag still set means that no notifier took it:
        // the wake was a slice's end, or somebody else's (a peer waking or
        // bumping our word in a loop returns the futex wait at once, round
        // after round). After many such rounds in a row, pause between them;
        // a notifier that takes the flag meanwhile is seen at the next look,
        // late by one pause at most.
        if armed && side.words().1.load(Ordering::Relaxed) == crate::ctl::WAIT_FUTEX {
            idle_rounds += 1;
            if idle_rounds > IDLE_ROUNDS && !crate::sync::MODEL {
                std::thread::sleep(IDLE_PAUSE);
            }
        } else {
            idle_rounds = 0;
        }
    }
}

/// Rounds in a row a parked waiter may find its flag untaken and nothing to
/// do before it pauses between rounds ([`IDLE_PAUSE`]): a wake storm (HP-10)
/// would otherwise keep it in system calls on a whole core.
const IDLE_ROUNDS: u32 = 64;

/// The pause between idle rounds: how late a wake-up can be while a storm of
/// foreign wakes goes on.
const IDLE_PAUSE: Duration = Duration::from_micros(100);
