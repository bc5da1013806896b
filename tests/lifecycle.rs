//! The lifecycle model (docs/LIFECYCLE.md) across real processes: named
//! channels are queues, whose ends come and go without failing each other;
//! "done" is said explicitly with `expect_producers`; a receiver waiting for
//! producers sleeps; peer changes end a wait without polling, and a death ends
//! it within the death budget; a session (anonymous channels, or
//! `Options::lifecycle(Session)`) reports a gone peer as `Disconnected`.
//!
//! Run: `cargo test --release --test lifecycle`.

use std::time::{Duration, Instant};

use serde_json::json;
use shmq::{
    Error, Lifecycle, Mpsc, Options, PeerState, Receiver, RingKind, Sender, Spsc, WaitStrategy,
};
use shmq_testkit as kit;
use shmq_testkit::{DEATH_BUDGET, Names, Spawn, Watchdog, arg, arg_or, emit, hang};

/// The default wait slice: a death is seen within one.
const SLICE: Duration = shmq::DEFAULT_WAIT_SLICE;

shmq_testkit::roles! { role_rx role_tx role_holder }

/// A consumer on the KIND channel NAME: receives COUNT messages (verifying
/// order from FIRST on), reports `got` with the next sequence number expected,
/// then ENDING: `close` (drops the receiver) or `hang`.
fn role_rx() {
    fn run<K: RingKind>() {
        let mut rx = Receiver::<K>::open(&arg::<String>("NAME"), &Options::new()).expect("rx");
        let mut next: u64 = arg_or("FIRST", 0);
        let mut buf = Vec::new();
        for _ in 0..arg::<u64>("COUNT") {
            rx.recv_into(&mut buf).expect("recv");
            let h = kit::msg::check(&buf).expect("a valid message");
            assert_eq!(h.seq, next, "in order, nothing lost");
            next += 1;
        }
        emit("got", json!({ "next": next }));
        close_or_hang(rx);
    }
    kit::by_kind!(arg::<String>("KIND").as_str(), run())
}

/// A producer on the KIND channel NAME: sends COUNT messages from FIRST on,
/// reports `sent`, then ENDING: `close` or `hang`.
fn role_tx() {
    fn run<K: RingKind>() {
        let mut tx = Sender::<K>::open(&arg::<String>("NAME"), &Options::new()).expect("tx");
        let first: u64 = arg_or("FIRST", 0);
        for seq in first..first + arg::<u64>("COUNT") {
            tx.send(&kit::message(seq, arg_or("ID", 0), 64))
                .expect("send");
        }
        emit("sent", json!({ "pid": std::process::id() }));
        close_or_hang(tx);
    }
    kit::by_kind!(arg::<String>("KIND").as_str(), run())
}

/// How a role ends with its channel end `end`, as ENDING says: `close` (the
/// default) drops it, `hang` holds it until killed.
fn close_or_hang<T>(end: T) {
    if arg_or("ENDING", "close".to_owned()) == "hang" {
        let _keep = end;
        hang();
    }
}

/// Holds an end of the KIND channel NAME (ROLE: `rx` or `tx`) until killed,
/// reporting `ready` with its pid.
fn role_holder() {
    kit::role::hold_end(&arg::<String>("ROLE"))
}

fn unlink(name: &str) {
    let _ = shmq::inspect::unlink(name);
}

/// A sender on a named channel goes on sending while its receiver closes,
/// dies and comes back: `send` never fails for the receiver's absence, a full
/// queue is `Full` (not `Disconnected`), and the next receiver gets every
/// message in order from where the last one stopped.
fn sender_outlives_receivers<K: RingKind>(wd: &Watchdog, names: &Names) {
    let name = names.name(&format!("lc-queue-{}", K::NAME));
    let mut tx = Sender::<K>::create(&name, &Options::new().capacity(4096)).expect("create");
    let mut seq = 0u64;
    let mut send = |tx: &mut Sender<K>, n: u64| {
        for _ in 0..n {
            tx.send(&kit::message(seq, 0, 64))
                .expect("send while no receiver");
            seq += 1;
        }
    };
    // Before any receiver, between receivers (one closed, one killed): sends go on.
    send(&mut tx, 10);
    let mut first = 0;
    for ending in ["close", "kill"] {
        let mut rx = Spawn::role_on("rx", &name)
            .arg("KIND", K::NAME)
            .arg("COUNT", 10)
            .arg("FIRST", first)
            .arg("ENDING", if ending == "kill" { "hang" } else { "close" })
            .spawn(wd);
        first = rx.event("got")["next"].as_u64().expect("next");
        if ending == "kill" {
            rx.kill_and_reap();
            assert_eq!(tx.peer().expect("peer"), PeerState::Died);
        } else {
            rx.expect_success();
            assert_eq!(tx.peer().expect("peer"), PeerState::Closed);
        }
        send(&mut tx, 10);
    }
    // Full, with nobody there: `Full` from `try_send`, `Timeout` from a bounded send.
    let filled = (0..)
        .take_while(|&i| tx.try_send(&kit::message(seq + i, 0, 64)).is_ok())
        .count() as u64;
    seq += filled;
    assert!(matches!(
        tx.try_send(&kit::message(seq, 0, 64)),
        Err(Error::Full)
    ));
    assert!(matches!(
        tx.send_timeout(&kit::message(seq, 0, 64), 2 * SLICE),
        Err(Error::Timeout)
    ));
    // The next receiver drains everything, in order, from where the last stopped.
    let mut rx = Spawn::role_on("rx", &name)
        .arg("KIND", K::NAME)
        .arg("COUNT", seq - first)
        .arg("FIRST", first)
        .spawn(wd);
    assert_eq!(rx.event("got")["next"].as_u64(), Some(seq), "{}", K::NAME);
    rx.expect_success();
    drop(tx);
    unlink(&name);
}

kit::test_both_kinds! {
    fn a_named_sender_outlives_its_receivers_and_loses_nothing()
        under "lc_queue": sender_outlives_receivers;
}

/// The same channel as a session (`Options::lifecycle(Session)`): the sender
/// learns at once that its receiver closed, and for good: a receiver that
/// attaches later does not revive it (it used to, silently).
#[test]
fn a_named_session_reports_a_closed_receiver_at_once() {
    let (wd, names, name) = kit::start("lc_session", "lc-session");
    let opts = Options::new().lifecycle(Lifecycle::Session);
    let mut tx = shmq::spsc::Sender::create(&name, &opts).expect("create");
    let mut rx = Spawn::role_on("rx", &name)
        .arg("KIND", "spsc")
        .arg("COUNT", 1)
        .spawn(&wd);
    tx.send(&kit::message(0, 0, 64)).expect("send");
    rx.event("got");
    rx.expect_success();
    assert!(matches!(
        tx.send(&kit::message(1, 0, 64)),
        Err(Error::Disconnected(shmq::Disconnect::Closed))
    ));
    let mut later = Spawn::role_on("holder", &name)
        .arg("KIND", "spsc")
        .arg("ROLE", "rx")
        .spawn(&wd);
    later.event("ready");
    assert!(matches!(
        tx.send(&kit::message(1, 0, 64)),
        Err(Error::Disconnected(shmq::Disconnect::Closed))
    ));
    later.kill_and_reap();
    drop(tx);
    unlink(&name);
    names.assert_clean();
}

/// An MPSC receiver between producers: asleep (under 1% of a CPU while no
/// producer is attached, from `/proc/<pid>/task/*/schedstat`), not `Disconnected`; done exactly when the third of
/// `expect_producers(3)` has closed and everything is received.
#[test]
fn an_mpsc_receiver_sleeps_between_producers_and_is_done_when_said() {
    let (wd, names, name) = kit::start("lc_done", "lc-done");
    let mut rx = shmq::mpsc::Receiver::create(&name, &Options::new()).expect("create");
    rx.expect_producers(3).expect("expect_producers");
    let receiver = std::thread::spawn(move || {
        let mut v = kit::Verifier::new();
        let mut buf = Vec::new();
        let end = loop {
            match rx.recv_into(&mut buf) {
                Ok(()) => {
                    v.take(&buf);
                }
                Err(e) => break e,
            }
        };
        (v.total, end, kit::mono_ns())
    });
    let idle = Duration::from_millis(400);
    let mut idle_cpu = Vec::new();
    let mut third_started_at = 0;
    for id in 0..3u32 {
        // Nobody attached: the receiving thread sleeps (this process does nothing
        // else; the CPU time of the whole process, from /proc's schedstat, bounds
        // the thread's).
        let me = std::process::id() as i32;
        let cpu0 = kit::cpu_ns(me);
        std::thread::sleep(idle);
        idle_cpu.push((kit::cpu_ns(me) - cpu0) as f64 / idle.as_nanos() as f64);
        assert!(!receiver.is_finished(), "done after {id} of 3 producers");
        third_started_at = kit::mono_ns();
        let mut p = Spawn::role_on("tx", &name)
            .arg("KIND", "mpsc")
            .arg("ID", id)
            .arg("COUNT", 1000)
            .spawn(&wd);
        p.event("sent");
        p.expect_success();
    }
    let (total, end, done_at) = receiver.join().expect("receiver");
    eprintln!("idle CPU share per gap: {idle_cpu:?}");
    assert_eq!(total, 3000);
    assert!(
        matches!(end, Error::Disconnected(shmq::Disconnect::Closed)),
        "{end:?}"
    );
    assert!(
        done_at > third_started_at,
        "done only after the third producer"
    );
    for share in idle_cpu {
        assert!(
            share < 0.01,
            "an idle receiver used {:.2}% of a CPU",
            share * 100.0
        );
    }
    unlink(&name);
    names.assert_clean();
}

/// `wait_for_peer` returns when the peer attaches; `peer_changed` and
/// `peers_changed` return when it closes, and within the death budget plus a
/// slice when it is killed; all asleep, whatever the wait strategy.
fn peer_waits<K: RingKind>(wd: &Watchdog, names: &Names, strategy: WaitStrategy) {
    let name = names.name(&format!("lc-wait-{}", K::NAME));
    let opts = Options::new().wait(strategy);
    let tx = Sender::<K>::create(&name, &opts).expect("create");
    assert!(matches!(
        tx.wait_for_peer(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    // The sender waits for a receiver that starts later.
    let mut rx = Spawn::role_on("holder", &name)
        .arg("KIND", K::NAME)
        .arg("ROLE", "rx")
        .spawn(wd);
    let pid = rx.event("ready")["pid"].as_u64().expect("pid") as u32;
    assert_eq!(
        tx.wait_for_peer(Duration::from_secs(10))
            .expect("wait_for_peer"),
        PeerState::Alive { pid }
    );
    // Killed: the wait ends within the death budget plus a slice.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        rx.kill_and_reap();
        Instant::now()
    });
    let state = tx
        .peer_changed(PeerState::Alive { pid }, Duration::from_secs(10))
        .expect("peer_changed");
    let noticed = Instant::now();
    let killed = killer.join().expect("killer");
    assert_eq!(state, PeerState::Died, "{}", K::NAME);
    let late = noticed.saturating_duration_since(killed);
    assert!(
        late <= DEATH_BUDGET + SLICE,
        "{}: a death noticed after {late:?}",
        K::NAME
    );
    drop(tx);
    unlink(&name);

    // The receiver's side: a producer attaches, then closes.
    let name = names.name(&format!("lc-wait-rx-{}", K::NAME));
    let rx = Receiver::<K>::create(&name, &opts).expect("create");
    let known = rx.peers().expect("peers");
    let mut p = Spawn::role_on("tx", &name)
        .arg("KIND", K::NAME)
        .arg("COUNT", 0)
        .arg("ENDING", "hang")
        .spawn(wd);
    let pid = p.event("sent")["pid"].as_u64().expect("pid") as u32;
    let alive = rx
        .wait_for_peer(Duration::from_secs(10))
        .expect("wait_for_peer");
    assert!(alive.contains(&PeerState::Alive { pid }), "{alive:?}");
    assert_ne!(alive, known);
    p.kill_and_reap();
    let after = rx
        .peers_changed(&alive, Duration::from_secs(10))
        .expect("peers_changed");
    assert!(after.contains(&PeerState::Died), "{after:?}");
    drop(rx);
    unlink(&name);
}

#[test]
fn peer_waits_end_on_attach_close_and_death_in_every_strategy() {
    let wd = Watchdog::new("lc_wait");
    let names = Names::new();
    for s in [
        WaitStrategy::Park,
        WaitStrategy::Spin,
        WaitStrategy::SpinThenPark {
            spin: Duration::from_micros(50),
        },
    ] {
        peer_waits::<Spsc>(&wd, &names, s);
        peer_waits::<Mpsc>(&wd, &names, s);
    }
    names.assert_clean();
}

/// A peer wait is interrupted like any blocking call.
#[test]
fn a_peer_wait_is_interrupted() {
    let (tx, _rx) = shmq::spsc::anonymous(&Options::new()).expect("anonymous");
    let stop = tx.interrupter();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stop.interrupt();
    });
    assert!(matches!(
        tx.peer_changed(PeerState::NeverAttached, Duration::from_secs(10)),
        Err(Error::Interrupted)
    ));
    t.join().expect("interrupter");
}

/// Without `expect_producers`, a named channel's receiver never takes "no
/// producer now" for the end: after its producer closed it waits (a time-out),
/// and the next producer's messages arrive.
fn receiver_waits_for_the_next_producer<K: RingKind>(wd: &Watchdog, names: &Names) {
    let name = names.name(&format!("lc-next-{}", K::NAME));
    let mut rx = Receiver::<K>::create(&name, &Options::new()).expect("create");
    let mut v = kit::Verifier::new();
    let mut buf = Vec::new();
    for first in [0, 5] {
        let mut p = Spawn::role_on("tx", &name)
            .arg("KIND", K::NAME)
            .arg("FIRST", first)
            .arg("COUNT", 5)
            .spawn(wd);
        p.event("sent");
        p.expect_success();
        for _ in 0..5 {
            rx.recv_into(&mut buf).expect("recv");
            v.take(&buf);
        }
        assert!(
            matches!(
                rx.recv_into_timeout(&mut buf, 2 * SLICE),
                Err(Error::Timeout)
            ),
            "{}: no producer now is not the end",
            K::NAME
        );
    }
    assert_eq!(v.total, 10);
    drop(rx);
    unlink(&name);
}

kit::test_both_kinds! {
    fn a_named_receiver_waits_for_the_next_producer()
        under "lc_next": receiver_waits_for_the_next_producer;
}

/// A queue's sender blocked on a full ring is not failed by its receiver's
/// death; another thread learns of the death through the sender's
/// `peer_watcher` within the death budget plus a slice, and the blocked send
/// completes once a new receiver drains the ring.
#[test]
fn a_death_is_seen_by_a_watcher_while_the_sender_is_blocked() {
    let (wd, names, name) = kit::start("lc_watcher", "lc-watcher");
    let mut tx = shmq::spsc::Sender::create(&name, &Options::new().capacity(4096)).expect("create");
    let mut rx = Spawn::role_on("holder", &name)
        .arg("KIND", "spsc")
        .arg("ROLE", "rx")
        .spawn(&wd);
    let pid = rx.event("ready")["pid"].as_u64().expect("pid") as u32;
    let watcher = tx.peer_watcher().expect("watcher");
    let mut seq = 0;
    while tx.try_send(&kit::message(seq, 0, 64)).is_ok() {
        seq += 1;
    }
    let blocked = std::thread::spawn(move || {
        tx.send(&kit::message(seq, 0, 64))
            .expect("a blocked send completes");
        seq + 1
    });
    std::thread::sleep(Duration::from_millis(100));
    rx.kill_and_reap();
    let killed = Instant::now();
    let states = watcher
        .changed(&[PeerState::Alive { pid }], Duration::from_secs(10))
        .expect("changed");
    let late = killed.elapsed();
    assert_eq!(states, [PeerState::Died]);
    assert!(late <= DEATH_BUDGET + SLICE, "a death seen after {late:?}");
    assert!(!blocked.is_finished(), "a queue's send does not fail");
    // The next receiver drains everything in order, the blocked send's included.
    let mut rx = Spawn::role_on("rx", &name)
        .arg("KIND", "spsc")
        .arg("COUNT", seq + 1)
        .spawn(&wd);
    assert_eq!(rx.event("got")["next"].as_u64(), Some(seq + 1));
    rx.expect_success();
    assert_eq!(blocked.join().expect("sender"), seq + 1);
    drop(watcher); // it shares the sender's mapping
    unlink(&name);
    names.assert_clean();
}
