//! Shutdown: an [`shmq::Interrupter`] stops a blocked `recv` or `send` from
//! another thread or a signal handler, whatever the wait strategy, within one
//! wait slice; the peer is a live, silent process (a re-executed role of this
//! binary), so nothing else would ever wake the blocked call.
//!
//! Run: `cargo test --release --test shutdown`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmq::{Error, Interrupter, Mpsc, Options, Receiver, RingKind, Sender, Spsc, WaitStrategy};
use shmq_testkit as kit;
use shmq_testkit::{DEATH_BUDGET, Names, Proc, Spawn, Watchdog};

/// The default wait slice.
const SLICE: Duration = shmq::DEFAULT_WAIT_SLICE;

/// How long the call is left blocked before the interrupt.
const BLOCKED: Duration = Duration::from_millis(150);

shmq_testkit::roles! { role_silent_tx role_silent_rx }

/// Opens the KIND channel NAME as a producer, reports `ready`, sends nothing.
fn role_silent_tx() {
    kit::role::hold_end("tx")
}

/// Opens the KIND channel NAME as the consumer, reports `ready`, receives nothing.
fn role_silent_rx() {
    kit::role::hold_end("rx")
}

/// The strategies a blocked call can wait in.
fn strategies() -> [(&'static str, WaitStrategy); 3] {
    [
        ("spin", WaitStrategy::Spin),
        (
            "spin-then-park",
            WaitStrategy::SpinThenPark {
                spin: Duration::from_micros(50),
            },
        ),
        ("park", WaitStrategy::Park),
    ]
}

/// Interrupts `i` after [`BLOCKED`], from a thread.
fn interrupt_later(i: Interrupter) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        std::thread::sleep(BLOCKED);
        i.interrupt();
        Instant::now()
    })
}

/// The end `end` (`rx` or `tx`) of a fresh 4 KiB channel of kind `K` that
/// waits with `strategy`, made with `create`, and the silent role process
/// holding the other end, ready; and the channel's name.
fn facing_a_silent_peer<K: RingKind, E>(
    (wd, names): (&Watchdog, &Names),
    strategy: WaitStrategy,
    end: &str,
    create: fn(&str, &Options) -> shmq::Result<E>,
) -> (String, E, Proc) {
    let name = names.name(&format!("shutdown-{end}-{}", K::NAME));
    let o = Options::new().capacity(4096).wait(strategy);
    let e = create(&name, &o).expect("create");
    let peer = if end == "rx" {
        "silent_tx"
    } else {
        "silent_rx"
    };
    let mut p = Spawn::role_on(peer, &name).arg("KIND", K::NAME).spawn(wd);
    p.event("ready");
    (name, e, p)
}

/// Asserts that `r`, the end of a blocking call that [`interrupt_later`]
/// (`at`) interrupted, is `Interrupted`, within a slice and the death budget
/// of the interrupt.
fn assert_interrupted_soon<T: std::fmt::Debug>(
    r: &shmq::Result<T>,
    at: std::thread::JoinHandle<Instant>,
    strategy: WaitStrategy,
) {
    let took = at.join().expect("interrupter").elapsed();
    assert!(matches!(r, Err(Error::Interrupted)), "{strategy:?}: {r:?}");
    assert!(
        took < SLICE + DEATH_BUDGET,
        "{strategy:?}: returned {took:?} after the interrupt"
    );
}

/// A receiver blocked in `recv` on an empty channel whose producer is alive.
fn blocked_receiver<K: RingKind>(wd: &Watchdog, names: &Names, strategy: WaitStrategy) {
    let (name, mut rx, mut p) =
        facing_a_silent_peer::<K, _>((wd, names), strategy, "rx", Receiver::<K>::create);
    let at = interrupt_later(rx.interrupter());
    let mut buf = Vec::new();
    let r = rx.recv_into(&mut buf);
    assert_interrupted_soon(&r, at, strategy);
    // It stays interrupted: blocking calls return at once, `try_` calls work.
    let t = Instant::now();
    assert!(matches!(rx.recv_into(&mut buf), Err(Error::Interrupted)));
    assert!(t.elapsed() < SLICE + DEATH_BUDGET, "{:?}", t.elapsed());
    assert!(matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)));
    // Cleared, it waits again (here until a short time-out).
    rx.interrupter().clear();
    assert!(matches!(
        rx.recv_into_timeout(&mut buf, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    p.kill_and_reap();
    drop(rx);
    let _ = shmq::inspect::unlink(&name);
}

/// A sender blocked in `send` on a full channel whose consumer is alive.
fn blocked_sender<K: RingKind>(wd: &Watchdog, names: &Names, strategy: WaitStrategy) {
    let (name, mut tx, mut p) =
        facing_a_silent_peer::<K, _>((wd, names), strategy, "tx", Sender::<K>::create);
    let m = kit::message(0, 0, 64);
    while tx.try_send(&m).is_ok() {}
    let at = interrupt_later(tx.interrupter());
    let r = tx.send(&m);
    assert_interrupted_soon(&r, at, strategy);
    p.kill_and_reap();
    drop(tx);
    let _ = shmq::inspect::unlink(&name);
}

/// Runs `case` for both kinds under every wait strategy.
fn every_strategy(test: &str, case: [fn(&Watchdog, &Names, WaitStrategy); 2]) {
    let wd = Watchdog::new(test);
    let names = Names::new();
    for (what, s) in strategies() {
        eprintln!("{test}, {what}");
        case.iter().for_each(|c| c(&wd, &names, s));
    }
    names.assert_clean();
}

#[test]
fn an_interrupt_stops_a_blocked_recv_in_every_strategy_serial() {
    every_strategy(
        "shutdown_recv",
        [blocked_receiver::<Spsc>, blocked_receiver::<Mpsc>],
    );
}

#[test]
fn an_interrupt_stops_a_blocked_send_in_every_strategy_serial() {
    every_strategy(
        "shutdown_send",
        [blocked_sender::<Spsc>, blocked_sender::<Mpsc>],
    );
}

/// The interrupter the SIGUSR1 handler sets.
static ON_SIGNAL: OnceLock<Interrupter> = OnceLock::new();

extern "C" fn on_sigusr1(_: libc::c_int) {
    // Async-signal-safe: a lock-free read of an initialised OnceLock and one
    // atomic store.
    if let Some(i) = ON_SIGNAL.get() {
        i.interrupt();
    }
}

/// A signal handler stops a parked receiver: the usual way a service turns
/// SIGTERM into an orderly shutdown.
#[test]
fn a_signal_handler_stops_a_parked_recv() {
    let (wd, names) = (Watchdog::new("shutdown_signal"), Names::new());
    let (name, mut rx, mut p) = facing_a_silent_peer::<Spsc, _>(
        (&wd, &names),
        WaitStrategy::Park,
        "rx",
        Receiver::<Spsc>::create,
    );
    ON_SIGNAL.set(rx.interrupter()).expect("set once");
    // SAFETY: installs a handler that only does async-signal-safe work.
    let old = unsafe { libc::signal(libc::SIGUSR1, on_sigusr1 as *const () as libc::sighandler_t) };
    assert_ne!(old, libc::SIG_ERR);
    // SAFETY: `pthread_self` of this thread, which stays alive until joined.
    let me = unsafe { libc::pthread_self() };
    let sender = std::thread::spawn(move || {
        std::thread::sleep(BLOCKED);
        // SAFETY: `me` is the test thread, blocked in `recv` below until this
        // signal's handler interrupts it.
        unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
        Instant::now()
    });
    let mut buf = Vec::new();
    let r = rx.recv_into(&mut buf);
    let took = sender.join().expect("signaller").elapsed();
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    assert!(took < SLICE + DEATH_BUDGET, "{took:?} after the signal");
    p.kill_and_reap();
    drop(rx);
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
}
