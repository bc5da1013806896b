//! Reliability catalogue, crash and fault tests (CF-01..CF-17) that the other
//! cross-process tests do not already cover; `docs/RELIABILITY.md` maps every CF
//! item to its test(s), here or in `tests/{segment,spsc,mpsc}.rs`.
//!
//! Every peer is a real process (a re-executed role of this binary), killed with
//! SIGKILL at a failpoint or at a random moment; every test has a watchdog; no
//! test asserts a timing other than the generous death budget
//! ([`kit::DEATH_BUDGET`], five wait slices).
//!
//! Run: `cargo test --release --features failpoints --test reliability_crash`.
//! Longer storms: `SHMQ_STORM_SECS=120 SHMQ_CRASH_CYCLES=1000 cargo test ...`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use shmq::{Disconnect, Error, Options, Receiver, RingKind, Sender};
use shmq_segment::{Error as SegError, Segment};
use shmq_testkit as kit;
use shmq_testkit::kinds::{How, KindExt, Mpsc, Spsc, why};
use shmq_testkit::{
    DEATH_BUDGET, Names, Proc, Rng, Spawn, Verifier, Watchdog, arg, arg_or, emit, hang, mono_ns,
    msg, num, record,
};

/// The default wait slice: a blocked call notices a dead peer within it.
#[cfg(feature = "failpoints")]
const SLICE: Duration = shmq::DEFAULT_WAIT_SLICE;

/// Options from role parameters WAIT, CAP and PRODUCERS.
fn role_options() -> Options {
    let mut o = kit::session().wait(kit::wait_strategy(&arg_or("WAIT", "default".to_owned())));
    if let Some(cap) = kit::arg_opt::<u64>("CAP") {
        o = o.capacity(cap);
    }
    if let Some(p) = kit::arg_opt::<u16>("PRODUCERS") {
        o = o.max_producers(p);
    }
    o
}

// ---------------------------------------------------------------------------
// Roles

shmq_testkit::roles! {
    role_tx role_rx role_hold_rx role_fork_tx role_pidns role_storm role_crash_loop
}

/// Fills `buf` with message `seq` in FORMAT (`msg`: the examples' format with
/// producer ID; `record`: the catalogue's format with producer ID, incarnation INC).
struct Maker {
    record: bool,
    id: u32,
    inc: u32,
}

impl Maker {
    fn from_args() -> Maker {
        Maker {
            record: arg_or("FORMAT", "msg".to_owned()) == "record",
            id: arg_or("ID", 0),
            inc: arg_or("INC", 0),
        }
    }

    fn make(&self, seq: u64, size: usize) -> Vec<u8> {
        let mut v = vec![0u8; size];
        if self.record {
            record::fill(
                &mut v,
                &record::Rec {
                    producer: self.id,
                    incarnation: self.inc,
                    seq,
                    sent_ns: mono_ns(),
                },
            );
        } else {
            msg::fill(&mut v, seq, self.id);
        }
        v
    }
}

/// A producer: reaches the KIND channel NAME (HOW, default `open`), reports
/// `ready`, waits START_DELAY_MS, sends BATCH messages with `try_send_batch` (SPSC: a path without
/// failpoints), then COUNT more (MODE `send`, `reserve` or `try`), pausing PACE_US
/// microseconds between them; ANNOUNCE=1 reports `sending` (with the time) just
/// before the first of those. Then reports `sent` and closes (THEN=close) or
/// holds (THEN=hang). A send error is reported as `send_error`; with TRY_AFTER=1
/// it then times 100 `try_send` calls (`try_after`).
fn role_tx() {
    kit::by_kind!(arg_or("KIND", "spsc".to_owned()).as_str(), tx_of())
}

/// [`role_tx`] over a channel of kind `K`.
fn tx_of<K: KindExt>() {
    let name: String = arg("NAME");
    let kind = K::NAME;
    let how = How::parse(&arg_or("HOW", "open".to_owned()));
    let mut tx = match how.sender::<K>(&name, &role_options()) {
        Ok(tx) => tx,
        Err(e) if arg_or("CREATE_FAIL_OK", 0u8) == 1 => {
            emit("create_failed", json!({ "error": format!("{e:?}") }));
            kit::hang();
        }
        Err(e) => panic!("{how:?} {kind} sender {name}: {e:?}"),
    };
    emit("ready", json!({ "tid": kit::gettid() }));
    let size: usize = arg_or("SIZE", 64);
    let maker = Maker::from_args();
    let batch: u64 = arg_or("BATCH", 0);
    let count: u64 = arg("COUNT");
    let pace = Duration::from_micros(arg_or("PACE_US", 0));
    let mode: String = arg_or("MODE", "send".to_owned());
    if batch > 0 {
        if K::MPSC {
            panic!("BATCH needs an SPSC channel")
        }
        let msgs: Vec<Vec<u8>> = (0..batch).map(|q| maker.make(q, size)).collect();
        let mut done = 0usize;
        while done < msgs.len() {
            match tx.try_send_batch(msgs[done..].iter().map(Vec::as_slice)) {
                Ok(n) => done += n,
                Err(Error::Full) => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => panic!("try_send_batch: {e:?}"),
            }
        }
        emit("batch_sent", json!({ "count": batch }));
    }
    if let Some(ms) = kit::arg_opt::<u64>("START_DELAY_MS") {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let futex0 = shmq::futex_calls();
    for seq in batch..batch + count {
        let m = maker.make(seq, size);
        if seq == batch && arg_or("ANNOUNCE", 0u8) == 1 {
            emit("sending", json!({ "seq": seq, "at_ns": mono_ns() }));
        }
        let r = match mode.as_str() {
            "reserve" => tx.reserve(m.len()).map(|mut g| {
                g.copy_from_slice(&m);
                g.commit();
            }),
            "try" => loop {
                match tx.try_send(&m) {
                    Err(Error::Full) => std::thread::sleep(Duration::from_micros(100)),
                    other => break other,
                }
            },
            _ => tx.send(&m),
        };
        if let Err(e) = r {
            let f = shmq::futex_calls();
            emit(
                "send_error",
                json!({
                    "why": why(&e), "at_ns": mono_ns(), "sent": seq,
                    "waits": f.0 - futex0.0, "wakes": f.1 - futex0.1,
                }),
            );
            if arg_or("TRY_AFTER", 0u8) == 1 {
                let mut slowest = Duration::ZERO;
                let mut seen: BTreeMap<String, u64> = BTreeMap::new();
                for _ in 0..100 {
                    let t = Instant::now();
                    let r = tx.try_send(&m);
                    slowest = slowest.max(t.elapsed());
                    let k = match &r {
                        Ok(()) => "Ok".to_owned(),
                        Err(e) => why(e),
                    };
                    *seen.entry(k).or_default() += 1;
                }
                emit(
                    "try_after",
                    json!({ "slowest_us": slowest.as_micros() as u64, "results": seen }),
                );
            }
            return;
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    kit::role::report_sent(tx, batch + count, futex0);
}

/// The receiving roles' end: the channel NAME of kind `K`, reached by HOW
/// (default `create`).
fn role_receiver<K: KindExt>() -> Receiver<K> {
    let name: String = arg("NAME");
    let how = How::parse(&arg_or("HOW", "create".to_owned()));
    how.receiver::<K>(&name, &role_options())
        .unwrap_or_else(|e| panic!("{how:?} {} receiver {name}: {e:?}", K::NAME))
}

/// A consumer: reaches the KIND channel NAME (HOW, default `create`), reports
/// `ready` (WAIT_FIRST=1: `waiting` with its thread id), receives and verifies
/// COUNT messages (`first` with the time of the first), reports `received`; with
/// AFTER=disconnect it then waits for the end (`disconnected`, with the time).
fn role_rx() {
    kit::by_kind!(arg_or("KIND", "spsc".to_owned()).as_str(), rx_of())
}

/// [`role_rx`] over a channel of kind `K`.
fn rx_of<K: KindExt>() {
    let mut rx = role_receiver::<K>();
    K::expect_producers(&mut rx, arg_or("EXPECT", 1));
    emit("ready", json!({}));
    kit::role::receive_and_report(|b| rx.recv_into(b));
}

/// Reaches the KIND channel NAME as its receiver (HOW, default `create`), reports
/// `attached`, and never receives; with CLOSE_AFTER_MS it closes after that long
/// (reporting `closed`), otherwise it holds until killed.
fn role_hold_rx() {
    kit::by_kind!(arg_or("KIND", "spsc".to_owned()).as_str(), hold_rx_of())
}

/// [`role_hold_rx`] over a channel of kind `K`.
fn hold_rx_of<K: KindExt>() {
    let rx = role_receiver::<K>();
    emit("attached", json!({}));
    if let Some(ms) = kit::arg_opt::<u64>("CLOSE_AFTER_MS") {
        std::thread::sleep(Duration::from_millis(ms));
        drop(rx);
        emit("closed", json!({ "at_ns": mono_ns() }));
        return;
    }
    let _keep = rx;
    hang();
}

/// CF-13: opens the SPSC channel NAME as its sender, sends COUNT messages, then
/// forks (no exec) a child that tries to use the inherited sender (it must get
/// `Error::Forked`), reports, and lives on; this process reports `forked` and
/// holds until killed.
fn role_fork_tx() {
    let name: String = arg("NAME");
    let mut tx = shmq::spsc::Sender::open(&name, &kit::session()).expect("open sender");
    let count: u64 = arg("COUNT");
    for seq in 0..count {
        tx.send(&kit::message(seq, 0, 64)).expect("send");
    }
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    assert!(
        threads <= 2,
        "fork needs a single test thread, found {threads}"
    );
    // Not `kit::fork_child`: its child dies with its parent (PR_SET_PDEATHSIG),
    // and this child must outlive the parent.
    // SAFETY: this role process has only this thread and libtest's main thread,
    // idle waiting for the test's result and holding no lock (checked above), so
    // the child may allocate and use std.
    let child = match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let r = tx.send(&kit::message(count, 0, 64));
            let forked = matches!(r, Err(Error::Forked));
            emit(
                "child_tried",
                json!({ "result": format!("{r:?}"), "forked": forked }),
            );
            // Dropping the inherited copy must not close the parent's endpoint either.
            drop(tx);
            hang();
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    emit("forked", json!({ "child": child.as_raw() }));
    let _keep = tx;
    hang();
}

/// CF-12 with PID reuse: in a fresh PID namespace, a producer P attaches to the
/// SPSC channel NAME, sends COUNT messages and SIGKILLs itself; the namespace's
/// init reaps it, sets `ns_last_pid` so that the next process gets P's pid, and
/// starts Q, which reports whether it got it and lives on. Q never touches the
/// channel: a liveness check by pid would take it for P.
fn role_pidns() {
    if let Err(why) = kit::unshare(nix::sched::CloneFlags::CLONE_NEWPID) {
        return emit("skip", json!({ "reason": why }));
    }
    let name: String = arg("NAME");
    let count: u64 = arg("COUNT");
    let _init = kit::fork_child(move || {
        // PID 1 of the new namespace, single-threaded: it may fork freely.
        use nix::unistd::{ForkResult, fork, getpid};
        // SAFETY: this process has one thread (it is a fresh fork); the child only
        // uses this thread's state.
        let p = match unsafe { fork() }.expect("fork P") {
            ForkResult::Child => {
                let mut tx = shmq::spsc::Sender::open(&name, &kit::session()).expect("P: open");
                for seq in 0..count {
                    tx.send(&kit::message(seq, 0, 64)).expect("P: send");
                }
                emit(
                    "dying",
                    json!({ "ns_pid": getpid().as_raw(), "at_ns": mono_ns() }),
                );
                let _ = nix::sys::signal::kill(getpid(), Signal::SIGKILL);
                hang();
            }
            ForkResult::Parent { child } => child,
        };
        let status = nix::sys::wait::waitpid(p, None);
        emit("reaped", json!({ "status": format!("{status:?}") }));
        let target = p.as_raw() - 1;
        let set = std::fs::write("/proc/sys/kernel/ns_last_pid", target.to_string());
        // SAFETY: as above.
        match unsafe { fork() }.expect("fork Q") {
            ForkResult::Child => {
                let me = getpid().as_raw();
                emit(
                    "reused",
                    json!({
                        "ns_pid": me, "old_pid": p.as_raw(), "same": me == p.as_raw(),
                        "ns_last_pid": format!("{set:?}"),
                        // What a pid-based liveness check would conclude about P.
                        "kill0_alive": nix::sys::signal::kill(p, None).is_ok(),
                    }),
                );
                hang();
            }
            ForkResult::Parent { .. } => hang(),
        }
    });
    hang();
}

// ---------------------------------------------------------------------------
// Helpers for the test side

fn spawn_tx<K: RingKind>(wd: &Watchdog, name: &str) -> Spawn {
    let _ = wd;
    Spawn::role("tx").arg("NAME", name).arg("KIND", K::NAME)
}

/// Receives and verifies until an error; returns the verifier and the error.
fn drain<K: RingKind>(rx: &mut Receiver<K>, timeout: Duration) -> (Verifier, Error) {
    kit::msg::drain(|b| rx.recv_into_timeout(b, timeout))
}

/// SIGKILLs and reaps `victim` once it is due: when it reaches its armed
/// failpoint (`at_failpoint`), else `kill_after` after `started`; in any case
/// after 5 s. Returns whether it did.
fn kill_if_due(
    victim: &mut kit::Proc,
    at_failpoint: bool,
    started: Instant,
    kill_after: Duration,
) -> bool {
    let due = match at_failpoint {
        true => victim.try_wait_failpoint(Duration::ZERO).is_some(),
        false => started.elapsed() >= kill_after,
    };
    let kill = due || started.elapsed() > Duration::from_secs(5);
    if kill {
        victim.signal(Signal::SIGKILL);
        victim.wait();
    }
    kill
}

/// Creates the receiver of a channel of kind `K` named `name` with `capacity`.
#[cfg(feature = "failpoints")]
fn create_rx<K: RingKind>(name: &str, capacity: u64) -> Receiver<K> {
    Receiver::create(name, &kit::session().capacity(capacity)).expect("create")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------
// CF-01: killed mid-payload, through the zero-copy guard

/// CF-01 over a channel of kind `K` named `name`.
#[cfg(feature = "failpoints")]
fn cf01<K: KindExt>(wd: &Watchdog, name: &str) {
    let kind = K::NAME;
    let mut rx = Receiver::<K>::create(name, &kit::session().capacity(1 << 16)).expect("create");
    let mut committed = 0;
    if K::MPSC {
        // MPSC has no failpoint-free path: an earlier producer commits 100.
        K::expect_producers(&mut rx, 2);
        let mut first = spawn_tx::<K>(wd, name)
            .arg("ID", 1)
            .arg("COUNT", 100)
            .spawn(wd);
        first.expect_success();
        committed = 100;
    }
    let mut p = spawn_tx::<K>(wd, name)
        .arg("BATCH", if K::MPSC { 0 } else { 100 })
        .arg("COUNT", 10)
        .arg("MODE", "reserve")
        .spawn_to(wd, "mid_payload");
    if !K::MPSC {
        committed = 100;
    }
    let t_kill = p.kill_and_reap();
    let (v, end) = drain(&mut rx, Duration::from_secs(10));
    let latency = Duration::from_nanos(mono_ns() - t_kill);
    assert_eq!(v.total, committed, "{kind}: committed messages: {v:?}");
    assert!(
        matches!(end, Error::Disconnected(Disconnect::Died)),
        "{kind}: after the kill: {end:?}"
    );
    assert!(latency < DEATH_BUDGET, "{kind}: Died after {latency:?}");
    eprintln!(
        "cf01 {kind}: {committed} committed messages, then Died {:.1} ms after SIGKILL",
        ms(latency)
    );
    drop(rx);
}

kit::test_both_kinds! {
    /// CF-01 through `reserve`/`commit` (the copying `send` path is covered by
    /// `tests/spsc.rs` and `tests/mpsc.rs`): every message committed before the kill
    /// arrives once and in order, the partial one never, then `Died` within budget.
    #[cfg(feature = "failpoints")]
    fn cf01_a_producer_killed_mid_payload_in_a_reserved_frame_never_delivers_it()
        under "cf01": cf01("cf01");
}

// ---------------------------------------------------------------------------
// CF-04: committed, killed before the wake, consumer parked

/// CF-04 over a channel of kind `K` named `name`.
#[cfg(feature = "failpoints")]
fn cf04<K: KindExt>(wd: &Watchdog, name: &str) {
    let kind = K::NAME;
    let (mut c, tid) = Spawn::role_on("rx", name)
        .arg("KIND", K::NAME)
        .spawn_asleep(wd);
    // The producer's attach wakes the consumer (the epoch changed); it sends only
    // once the consumer has gone back to sleep, half a slice off the rhythm of
    // its slices (which restarted at that wake), so that only the slice's end
    // can deliver the message.
    let mut p = spawn_tx::<K>(wd, name)
        .arg("COUNT", 5)
        .arg("ANNOUNCE", 1)
        .arg("START_DELAY_MS", 225)
        .failpoint("after_commit_before_wake")
        .spawn(wd);
    p.event("ready");
    std::thread::sleep(Duration::from_millis(100));
    c.assert_in_futex(tid, "the consumer is not asleep before the send");
    let sending = num(&p.event("sending"), "at_ns");
    assert_eq!(p.wait_failpoint(), "reached after_commit_before_wake");
    let first = num(&c.event("first"), "at_ns");
    let delivery = Duration::from_nanos(first.saturating_sub(sending));
    let t_kill = p.kill_and_reap();
    let ev = c.event("disconnected");
    c.expect_success();
    let death = Duration::from_nanos(num(&ev, "at_ns").saturating_sub(t_kill));
    eprintln!(
        "cf04 {kind}: message without a wake delivered {:.1} ms after the send began \
         (slice {SLICE:?}); Died {:.1} ms after SIGKILL",
        ms(delivery),
        ms(death)
    );
    assert!(
        delivery < SLICE + DEATH_BUDGET,
        "{kind}: the unwoken consumer took {delivery:?} to see a committed message"
    );
    assert_eq!(ev["why"], "Died", "{kind}: {ev}");
    assert!(death < DEATH_BUDGET, "{kind}: Died after {death:?}");
}

kit::test_both_kinds! {
    /// CF-04 with its time budget: the consumer sleeps in `FUTEX_WAIT`; the producer
    /// commits a message and is stopped (then killed) before it would wake it. The
    /// consumer returns that message within a wait slice (plus margin) of the
    /// producer starting to send, then `Died`.
    #[cfg(feature = "failpoints")]
    fn cf04_a_parked_consumer_gets_a_message_committed_without_a_wake_within_a_slice()
        under "cf04": cf04("cf04");
}

// ---------------------------------------------------------------------------
// CF-05: consumer killed while producers are blocked on a full ring

/// CF-05 for MPSC (SPSC: `tests/spsc.rs`): three producer processes block on a
/// full 4 KiB ring; the consumer is SIGKILLed; every blocked `send` ends with
/// `Died` within budget, and `try_send` after that returns `Full` or `Died`
/// without blocking.
#[test]
fn cf05_a_killed_consumer_fails_blocked_mpsc_producers_and_try_send_never_blocks() {
    let (wd, names, name) = shmq_testkit::start("cf05", "cf05");
    let mut c = Spawn::role_on("hold_rx", &name)
        .arg("KIND", "mpsc")
        .arg("CAP", 4096)
        .spawn(&wd);
    c.event("attached");
    let mut ps: Vec<Proc> = (0..3)
        .map(|id| {
            spawn_tx::<Mpsc>(&wd, &name)
                .arg("ID", id)
                .arg("COUNT", 1000)
                .arg("WAIT", "park")
                .arg("TRY_AFTER", 1)
                .spawn(&wd)
        })
        .collect();
    for p in &mut ps {
        let tid = num(&p.event("ready"), "tid") as i32;
        p.assert_in_futex(tid, "a producer never blocked");
    }
    let t_kill = c.kill_and_reap();
    let mut latencies = Vec::new();
    for p in &mut ps {
        let ev = p.event("send_error");
        let after = p.event("try_after");
        p.expect_success();
        assert_eq!(ev["why"], "Died", "{ev}");
        let latency = Duration::from_nanos(num(&ev, "at_ns").saturating_sub(t_kill));
        latencies.push(ms(latency));
        assert!(
            latency < DEATH_BUDGET,
            "blocked send ended {latency:?} after the kill"
        );
        let results = after["results"].as_object().expect("results");
        assert!(
            results.keys().all(|k| k == "Full" || k == "Died"),
            "try_send after the consumer died: {after}"
        );
        // Returns at once (generous bound for a loaded CI machine).
        assert!(
            num(&after, "slowest_us") < 200_000,
            "a try_send blocked: {after}"
        );
    }
    eprintln!("cf05: blocked MPSC sends failed {latencies:?} ms after the consumer's SIGKILL");
    // The undelivered messages keep the name for a later consumer; it is stale now.
    kit::remove_stale(&name);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// CF-06: consumer killed with its waiting flag set

/// CF-06, the cost of the stale flag and the next consumer (the blocked-producer
/// case is in `tests/spsc.rs`): the consumer dies right after setting its waiting
/// flag; a producer then sends 200 messages that fit, paying exactly one wake-up
/// call for the stale flag; a new consumer attaches and gets all 200.
#[cfg(feature = "failpoints")]
#[test]
fn cf06_a_stale_wait_flag_costs_one_wake_and_a_new_consumer_gets_everything() {
    let consumer = |name: &str| Spawn::role_on("rx", name);
    let (wd, names, name) =
        kit::start_after_a_consumer_died_asleep(("cf06", "cf06"), consumer, 1 << 16);
    let mut p = spawn_tx::<Spsc>(&wd, &name)
        .arg("COUNT", 200)
        .arg("WAIT", "park")
        .arg("THEN", "hang")
        .spawn(&wd);
    let ev = p.event("sent");
    eprintln!("cf06: producer after the consumer died with its flag set: {ev}");
    assert_eq!(
        num(&ev, "wakes"),
        1,
        "the stale flag must cost exactly one wake-up call for 200 sends: {ev}"
    );
    assert_eq!(num(&ev, "waits"), 0, "the producer never had to wait: {ev}");
    let mut rx = Receiver::<Spsc>::open(&name, &kit::session()).expect("new consumer");
    let mut v = Verifier::new();
    let mut buf = Vec::new();
    v.take_n(200, &mut buf, |b| {
        rx.recv_into_timeout(b, Duration::from_secs(10))
    });
    let (r, latency) = p.kill_then(|| rx.recv_into_timeout(&mut buf, Duration::from_secs(10)));
    kit::kinds::assert_died(&r, "after the producer's kill");
    assert!(latency < DEATH_BUDGET, "Died after {latency:?}");
    drop(rx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// CF-07: a stopped producer is not dead

/// CF-07 with the `:stop` failpoint: an MPSC producer stops itself (SIGSTOP) right
/// after claiming; while it is stopped (three wait slices and more) its claim is
/// not reclaimed and nothing behind it is delivered; after SIGCONT it completes
/// and every message of every producer arrives, nothing reclaimed. (No
/// `ClaimRevoked` exists: shmq never reclaims on a time-out.)
#[cfg(feature = "failpoints")]
#[test]
fn cf07_a_producer_sigstopped_after_claim_is_never_reclaimed_and_completes() {
    let (wd, names, name) = shmq_testkit::start("cf07", "cf07");
    let mut rx = create_rx::<Mpsc>(&name, 1 << 16);
    Mpsc::expect_producers(&mut rx, 2);
    let mut victim = spawn_tx::<Mpsc>(&wd, &name)
        .arg("ID", 0)
        .arg("COUNT", 5)
        .spawn_to(&wd, "after_claim:stop");
    victim.assert_stopped();
    // Another producer commits behind the stopped claim.
    let mut other = spawn_tx::<Mpsc>(&wd, &name)
        .arg("ID", 1)
        .arg("COUNT", 100)
        .spawn(&wd);
    other.expect_success();
    let mut buf = Vec::new();
    let held = 3 * SLICE + Duration::from_millis(150);
    let started = Instant::now();
    let r = rx.recv_into_timeout(&mut buf, held);
    assert!(
        matches!(r, Err(Error::Timeout)),
        "while the claimer is stopped nothing may be delivered past its claim: {r:?}"
    );
    assert!(started.elapsed() >= held);
    assert_eq!(
        Mpsc::reclaimed(&mut rx),
        0,
        "a stopped producer's claim was reclaimed"
    );
    victim.signal(Signal::SIGCONT);
    victim.expect_success();
    let (v, end) = drain(&mut rx, Duration::from_secs(10));
    assert_eq!(v.count(0), 5, "the resumed producer's messages: {v:?}");
    assert_eq!(v.count(1), 100, "the other producer's messages: {v:?}");
    assert_eq!(
        Mpsc::reclaimed(&mut rx),
        0,
        "nothing may be reclaimed: nobody died"
    );
    kit::kinds::assert_closed(&end);
    drop(rx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// CF-09: a stale named channel

/// CF-09 over a channel of kind `K` named `name`.
fn cf09<K: KindExt>(wd: &Watchdog, name: &str) {
    let kind = K::NAME;
    let mut owner = spawn_tx::<K>(wd, name)
        .arg("HOW", "create")
        .arg("CAP", 1 << 14)
        .arg("COUNT", 20)
        .arg("SIZE", 200)
        .arg("THEN", "hang")
        .spawn(wd);
    owner.event("sent");
    owner.kill_and_reap();
    assert!(Segment::is_stale(name).expect("is_stale"), "{kind}");
    for how in ["sender", "receiver"] {
        let r = if how == "sender" {
            Sender::<K>::create(name, &kit::session()).map(drop)
        } else {
            Receiver::<K>::create(name, &kit::session()).map(drop)
        };
        assert!(
            matches!(
                &r,
                Err(Error::Segment(SegError::AlreadyExists { stale: true, .. }))
            ),
            "{kind} {how}: create over a stale channel gave {r:?}"
        );
    }
    let fresh_opts = kit::session().capacity(1 << 14).reclaim_stale(true);
    // Its 20 messages are data: `reclaim_stale` does not destroy them.
    let r = Receiver::<K>::create(name, &fresh_opts).map(drop);
    assert!(
        matches!(&r, Err(Error::StaleWithMessages { messages: 20, .. })),
        "{kind}: reclaim_stale over waiting messages gave {r:?}"
    );
    assert!(kit::shm_path(name).exists(), "{kind}: kept");
    // Discarded on purpose (`shmq gc --discard-messages`), the name is free.
    assert_eq!(
        shmq::inspect::remove_stale(name, true).expect("discard"),
        shmq::inspect::Removal::Removed
    );
    let mut rx = Receiver::<K>::create(name, &fresh_opts).expect("reclaim_stale");
    // The new segment's ring memory is all zeros: no old payload byte survives.
    let raw = kit::open_raw(name);
    let region = kit::RawRegion::of(&raw);
    let data_at = kit::ring_off::data::<K>(shmq::DEFAULT_PRODUCERS);
    let bytes = region.read(data_at, region.len() - data_at);
    assert!(
        bytes.iter().all(|&b| b == 0),
        "{kind}: old bytes in the reclaimed channel's data area"
    );
    drop(raw);
    let mut buf = Vec::new();
    assert!(
        matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)),
        "{kind}: the reclaimed channel must be empty"
    );
    let mut tx = Sender::<K>::open(name, &kit::session()).expect("open sender");
    tx.send(&kit::message(0, 9, 64)).expect("send");
    rx.recv_into_timeout(&mut buf, Duration::from_secs(5))
        .expect("recv");
    assert_eq!(msg::check(&buf).expect("valid").producer, 9);
    drop(tx);
    drop(rx);
}

kit::test_both_kinds! {
    /// CF-09 at the channel level (the segment level is in `crates/segment/tests/segment.rs`): the
    /// owner of a named channel is SIGKILLed with messages in its ring. A plain
    /// `create` is `AlreadyExists { stale: true }`; `create` with `reclaim_stale`
    /// refuses to destroy the waiting messages (`StaleWithMessages`); once they are
    /// discarded on purpose, it gives a fresh, empty channel whose memory holds none
    /// of the old bytes; never the old ring state.
    fn cf09_a_stale_named_channel_is_reported_stale_or_replaced_by_a_fresh_one()
        under "cf09": cf09("cf09");
}

// ---------------------------------------------------------------------------
// CF-10: concurrent create / open / cleanup with random kills

const STORM_NAMES: usize = 4;
const STORM_WORKERS: usize = 16;

/// Errors a storm worker may meet while others create, open, remove and die
/// around it: all of them mean "not now", none "damaged".
fn storm_expected(e: &Error) -> Option<&'static str> {
    Some(match e {
        Error::AlreadyAttached { .. } => "AlreadyAttached",
        Error::TooManyProducers { .. } => "TooManyProducers",
        Error::Disconnected(_) => "Disconnected",
        Error::StaleWithMessages { .. } => "StaleWithMessages",
        Error::Full => "Full",
        Error::Empty => "Empty",
        Error::Segment(s) => match s {
            SegError::NotFound { .. } => "NotFound",
            SegError::NotReady { .. } => "NotReady",
            SegError::Abandoned => "Abandoned",
            SegError::AlreadyExists { .. } => "AlreadyExists",
            SegError::EndpointBusy { .. } => "EndpointBusy",
            _ => return None,
        },
        _ => return None,
    })
}

/// One storm worker: until END_NS, picks a name of NAMES and an operation:
/// attach (create_or_open, create with `reclaim_stale`, or open) as sender or
/// receiver, use it for a moment and drop it; `remove_if_stale`; `is_stale`.
/// While attached it checks, twice, that the name still refers to the object its
/// endpoint has mapped. Reports `done` with counts, unexpected errors and any
/// violation.
fn role_storm() {
    let names: Vec<String> = arg::<String>("NAMES")
        .split(',')
        .map(str::to_owned)
        .collect();
    let end: u64 = arg("END_NS");
    let mut rng = Rng::new(arg("SEED"));
    let opts = kit::session()
        .capacity(1 << 14)
        .max_producers(8)
        .open_timeout(Duration::from_millis(500));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations: Vec<String> = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    let note = |counts: &mut BTreeMap<String, u64>, k: &str| {
        *counts.entry(k.to_owned()).or_default() += 1;
    };
    let check_identity = |fd: &std::os::fd::OwnedFd, name: &str, when: &str| -> Option<String> {
        let mine = kit::fd_identity(fd);
        match kit::name_identity(name) {
            Some(now) if now == mine => None,
            Some(now) => Some(format!(
                "{when}: {name} refers to {now:?}, but this live endpoint has {mine:?} mapped"
            )),
            None => Some(format!(
                "{when}: {name} was unlinked under a live endpoint ({mine:?})"
            )),
        }
    };
    let mut buf = Vec::new();
    while mono_ns() < end {
        let name = rng.pick(&names).clone();
        match rng.range(0, 9) {
            0..=6 => {
                let how = match rng.range(0, 5) {
                    0 => How::Open,
                    1 => How::Create,
                    _ => How::CreateOrOpen,
                };
                let o = opts.clone().reclaim_stale(rng.chance(0.5));
                let receiver = rng.chance(0.3);
                let r: Result<Result<Sender<Mpsc>, Receiver<Mpsc>>, Error> = if receiver {
                    how.receiver(&name, &o).map(Err)
                } else {
                    how.sender(&name, &o).map(Ok)
                };
                let mut ep = match r {
                    Ok(ep) => ep,
                    Err(e) => {
                        match storm_expected(&e) {
                            Some(k) => note(&mut counts, &format!("attach:{k}")),
                            None => unexpected.push(format!("attach {how:?}: {e:?}")),
                        }
                        continue;
                    }
                };
                note(&mut counts, "attached");
                let fd = match &ep {
                    Ok(t) => t.export_fd(),
                    Err(r) => r.export_fd(),
                }
                .expect("export_fd");
                violations.extend(check_identity(&fd, &name, "after attaching"));
                let until = Instant::now() + Duration::from_millis(rng.range(0, 20));
                let mut seq = 0;
                while Instant::now() < until {
                    let r = match &mut ep {
                        Ok(t) => t.try_send(&kit::message(seq, 1, 32)),
                        Err(r) => r.try_recv_into(&mut buf).map(|()| {
                            if let Err(e) = msg::check(&buf) {
                                violations.push(format!("a damaged message delivered: {e}"));
                            }
                        }),
                    };
                    seq += 1;
                    if let Err(e) = r
                        && storm_expected(&e).is_none()
                    {
                        unexpected.push(format!("using the endpoint: {e:?}"));
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                violations.extend(check_identity(&fd, &name, "before dropping"));
                drop(fd);
                drop(ep);
            }
            7 | 8 => match Segment::remove_if_stale(&name) {
                Ok(true) => note(&mut counts, "removed_stale"),
                Ok(false) => note(&mut counts, "not_stale"),
                Err(SegError::NotFound { .. }) => note(&mut counts, "clean:NotFound"),
                Err(e) => unexpected.push(format!("remove_if_stale: {e:?}")),
            },
            _ => match Segment::is_stale(&name) {
                Ok(_) | Err(SegError::NotFound { .. }) => note(&mut counts, "is_stale"),
                Err(e) => unexpected.push(format!("is_stale: {e:?}")),
            },
        }
    }
    emit(
        "done",
        json!({ "counts": counts, "violations": violations, "unexpected": unexpected }),
    );
}

/// CF-10 (short form: 16 processes, 4 names, ~8 s; `SHMQ_STORM_SECS` for longer):
/// workers create, open, use and remove channels from a small pool of names
/// while the test SIGKILLs random workers and restarts them. No live endpoint
/// ever finds its name unlinked or pointing at another object, no worker panics,
/// no unexpected error appears, and everything is stale (removable) at the end.
#[test]
fn cf10_serial_storm_of_create_open_cleanup_never_removes_a_live_segment() {
    let secs = kit::env_or::<u64>("SHMQ_STORM_SECS", 8);
    let wd = Watchdog::with_limit("cf10", Duration::from_secs(secs + 90));
    let names = Names::new();
    let pool: Vec<String> = (0..STORM_NAMES).map(|_| names.name("cf10")).collect();
    let seed = Rng::seed();
    let mut rng = Rng::new(seed);
    eprintln!("cf10: seed {seed}, {STORM_WORKERS} workers, {STORM_NAMES} names, {secs} s");
    let end = mono_ns() + secs * 1_000_000_000;
    let spawn = |rng: &mut Rng| {
        Spawn::role("storm")
            .arg("NAMES", pool.join(","))
            .arg("END_NS", end)
            .arg("SEED", rng.next_u64())
            .spawn(&wd)
    };
    let mut workers: Vec<Proc> = (0..STORM_WORKERS).map(|_| spawn(&mut rng)).collect();
    let mut kills = 0;
    while mono_ns() + 1_000_000_000 < end {
        std::thread::sleep(Duration::from_millis(rng.range(20, 200)));
        let i = rng.range(0, STORM_WORKERS as u64 - 1) as usize;
        workers[i].kill_and_reap();
        kills += 1;
        workers[i] = spawn(&mut rng);
    }
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    for w in &mut workers {
        let ev = w.event("done");
        w.expect_success();
        for (k, v) in ev["counts"].as_object().expect("counts") {
            *totals.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
        for key in ["violations", "unexpected"] {
            for p in ev[key].as_array().expect(key) {
                problems.push(format!("{key}: {p}"));
            }
        }
    }
    eprintln!("cf10: {kills} workers SIGKILLed; totals {totals:?}");
    assert!(
        problems.is_empty(),
        "cf10 (seed {seed}): {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        totals.get("attached").copied().unwrap_or(0) > 100,
        "the storm barely attached anything: {totals:?}"
    );
    // Every process is gone: whatever is left is stale, and the cleaner removes it.
    for n in &pool {
        if kit::shm_path(n).exists() {
            assert!(
                Segment::is_stale(n).expect("is_stale"),
                "{n} in use after every process died"
            );
            kit::remove_stale(n);
        }
    }
    assert!(kit::zombie_children().is_empty(), "zombies left");
    names.assert_clean();
}

/// CF-10, the creator's window, made deterministic: the creator of a named
/// channel is held (by `strace` fault injection, a 1 s delay) between its
/// `O_CREAT|O_EXCL` open and its exclusive owner lock, the moment iceoryx2 #1578
/// is about. A cleaner (`remove_if_stale`) and a second creator with
/// `reclaim_stale` run in that window. The first creator must end up owning the
/// name it was told it created (or fail), never hold a channel nobody can reach.
#[test]
fn cf10_a_creator_between_o_excl_and_its_lock_is_not_removed_under_it() {
    if !kit::strace_or_skip("it injects the delay") {
        return;
    }
    let (wd, names) = (Watchdog::new("cf10_window"), Names::new());
    let mut failures = Vec::new();
    for cleaner in ["remove_if_stale", "reclaim_stale"] {
        let name = names.name("cf10w");
        let mut c = Spawn::role_under(
            &[
                "strace",
                "-f",
                "-o",
                "/dev/null",
                "-e",
                "trace=fcntl",
                "-e",
                "inject=fcntl:delay_enter=1000000:when=1",
            ],
            "tx",
        )
        .arg("NAME", &name)
        .arg("HOW", "create")
        .arg("COUNT", 1)
        .arg("THEN", "hang")
        .arg("CREATE_FAIL_OK", 1)
        .spawn(&wd);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !kit::shm_path(&name).exists() {
            assert!(
                Instant::now() < deadline,
                "the creator never created {name}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut second = None;
        let outcome = match cleaner {
            "remove_if_stale" => format!("{:?}", Segment::remove_if_stale(&name)),
            _ => {
                let r = Receiver::<Spsc>::create(&name, &kit::session().reclaim_stale(true));
                let s = format!("{:?}", r.as_ref().map(drop));
                second = r.ok();
                s
            }
        };
        let ev = c.event_any(&["sent", "create_failed"]);
        if ev["event"] == "create_failed" {
            // Failing is allowed, but only because the name now belongs to someone
            // else (the second creator), never for lack of a name.
            let err = ev["error"].as_str().unwrap_or_default().to_owned();
            if !(cleaner == "reclaim_stale" && err.contains("AlreadyExists") && second.is_some()) {
                failures.push(format!("{cleaner}: the creator failed unexpectedly: {err}"));
            }
            drop(second);
            drop(c);
            let _ = Segment::remove_if_stale(&name);
            continue;
        }
        // The creator was told it created `name`: a consumer must reach its channel.
        let reached = Receiver::<Spsc>::open(&name, &kit::session()).and_then(|mut rx| {
            let mut buf = Vec::new();
            rx.recv_into_timeout(&mut buf, Duration::from_secs(2))
                .map(|()| buf)
        });
        let exists = kit::shm_path(&name).exists();
        drop(second);
        drop(c);
        let _ = Segment::remove_if_stale(&name);
        if reached.is_err() {
            failures.push(format!(
                "{cleaner} during the creator's window gave {outcome}; afterwards the \
                 creator's channel cannot be reached under its name (name exists: {exists}): \
                 {:?}",
                reached.map(drop)
            ));
        }
    }
    kit::assert_no_failures(
        "cf10_a_creator_between_o_excl_and_its_lock_is_not_removed_under_it",
        &failures,
    );
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// CF-11: crash loop

/// The survivor of CF-11's crash loop: CYCLES times, creates a channel (random
/// kind) as the side that survives, starts the other side as a victim process,
/// exchanges up to 1,000 messages, SIGKILLs the victim at a random failpoint or a
/// random moment, recovers (drains, or lets a new consumer drain what is left),
/// and checks that its descriptors, mappings, `/dev/shm` and children are back to
/// where they were. Reports `done`.
fn role_crash_loop() {
    let cycles: u64 = arg("CYCLES");
    let seed: u64 = arg("SEED");
    let tag: String = arg("TAG");
    let mut s = Survivor::start(seed, tag);
    for cycle in 0..cycles {
        let kind = *s.rng.pick(&["spsc", "mpsc"]);
        kit::by_kind!(kind, crash_cycle(&mut s, cycle));
    }
    s.names.assert_clean();
    emit(
        "done",
        json!({
            "cycles": cycles, "outcomes": s.outcomes, "delivered": s.delivered,
            "fds": [s.fds0, kit::fd_count()], "maps": [s.maps0, kit::shm_maps()],
        }),
    );
}

/// What the survivor of CF-11's crash loop keeps from cycle to cycle: its
/// generator, names and watchdog, its descriptors and mappings before the first
/// cycle, and the tallies it reports.
struct Survivor {
    rng: Rng,
    tag: String,
    names: Names,
    wd: Watchdog,
    fds0: usize,
    maps0: usize,
    table0: Vec<String>,
    outcomes: BTreeMap<String, u64>,
    delivered: u64,
}

impl Survivor {
    /// Starts the survivor's watchdog and names, warms up, and records its
    /// descriptors and mappings.
    fn start(seed: u64, tag: String) -> Survivor {
        let wd = Watchdog::with_limit("crash_loop survivor", Duration::from_secs(600));
        let names = Names::new();
        // Warm-up: the first endpoint a process claims opens a descriptor of
        // /dev/null for good (the fork guard, crates/segment/src/fork.rs).
        {
            let warm = names.name(&tag);
            let mut rx = Receiver::<Spsc>::create(&warm, &kit::session()).expect("warm-up");
            let mut tx = Sender::<Spsc>::open(&warm, &kit::session()).expect("warm-up");
            tx.send(&kit::message(0, 0, 16)).expect("warm-up send");
            rx.recv_into(&mut Vec::new()).expect("warm-up recv");
        }
        Survivor {
            rng: Rng::new(seed),
            fds0: kit::fd_count(),
            maps0: kit::shm_maps(),
            table0: kit::fd_table(),
            outcomes: BTreeMap::new(),
            delivered: 0,
            tag,
            names,
            wd,
        }
    }
}

/// Cycle `cycle` of [`role_crash_loop`], over a channel of kind `K`.
fn crash_cycle<K: KindExt>(s: &mut Survivor, cycle: u64) {
    let kind = K::NAME;
    let Survivor {
        rng,
        tag,
        names,
        wd,
        fds0,
        maps0,
        table0,
        outcomes,
        delivered,
    } = s;
    let (fds0, maps0) = (*fds0, *maps0);
    let victim_is_producer = rng.chance(0.5);
    let points: &[&str] = match (victim_is_producer, K::MPSC) {
        (true, false) => &[
            "mid_payload",
            "before_commit",
            "after_commit_before_wake",
            "after_wait_flag_set",
        ],
        (true, true) => &[
            "after_claim",
            "mid_payload",
            "before_commit",
            "after_commit_before_wake",
            "after_wait_flag_set",
        ],
        (false, _) => &["after_wait_flag_set"],
    };
    let point = rng.chance(0.6).then(|| *rng.pick(points));
    let name = names.name(tag);
    let o = kit::session().capacity(4096);
    let count = 1000u64;
    let label = format!(
        "cycle {cycle}: {kind}, victim {}, {}",
        if victim_is_producer {
            "producer"
        } else {
            "consumer"
        },
        point.unwrap_or("random moment")
    );
    let kill_after = Duration::from_millis(rng.range(1, 40));
    if victim_is_producer {
        let mut rx = Receiver::<K>::create(&name, &o).expect("survivor create");
        let mut s = Spawn::role_on("tx", &name)
            .arg("KIND", kind)
            .arg("COUNT", count)
            .arg("SIZE", rng.range(16, 300));
        if !K::MPSC {
            s = s.arg("BATCH", rng.range(0, 40));
        }
        if let Some(p) = point {
            s = s.failpoint(p);
        }
        let mut victim = s.spawn(wd);
        victim.event("ready");
        let started = Instant::now();
        let mut v = Verifier::new();
        let mut buf = Vec::new();
        let mut killed = false;
        let end = loop {
            if !killed {
                killed = kill_if_due(&mut victim, point.is_some(), started, kill_after);
            }
            match rx.recv_into_timeout(&mut buf, Duration::from_millis(5)) {
                Ok(()) => {
                    v.check(&buf)
                        .unwrap_or_else(|e| panic!("{label}: {e}\n{}", victim.log()));
                }
                Err(Error::Timeout) => {}
                Err(e) => break e,
            }
        };
        if !killed {
            victim.signal(Signal::SIGKILL);
            victim.wait();
        }
        assert!(
            matches!(end, Error::Disconnected(_)),
            "{label}: the survivor ended with {end:?}"
        );
        *outcomes
            .entry(format!("consumer survived: {}", why(&end)))
            .or_default() += 1;
        *delivered += v.total;
        drop(rx);
    } else {
        let mut tx = Sender::<K>::create(&name, &o).expect("survivor create");
        let mut s = Spawn::role_on("rx", &name)
            .arg("KIND", kind)
            .arg("HOW", "open")
            .arg("COUNT", count);
        if let Some(p) = point {
            s = s.failpoint(p);
        }
        let mut victim = s.spawn(wd);
        victim.event("ready");
        let started = Instant::now();
        let size = rng.range(16, 300) as usize;
        let mut killed = false;
        let mut sent = 0u64;
        let mut end = None;
        while sent < count {
            if !killed {
                killed = kill_if_due(&mut victim, point.is_some(), started, kill_after);
            }
            match tx.send_timeout(&kit::message(sent, 0, size), Duration::from_millis(5)) {
                Ok(()) => sent += 1,
                Err(Error::Timeout) => {}
                Err(e) => {
                    end = Some(why(&e));
                    break;
                }
            }
        }
        if !killed {
            victim.signal(Signal::SIGKILL);
            victim.wait();
        }
        *outcomes
            .entry(format!(
                "producer survived: {}",
                end.as_deref().unwrap_or("all sent")
            ))
            .or_default() += 1;
        drop(tx);
        // Recovery: what the dead consumer did not take waits under the name;
        // a new consumer drains it (in order, no gap) and the name goes away.
        if kit::shm_path(&name).exists() {
            let mut rx = Receiver::<K>::open(&name, &kit::session())
                .unwrap_or_else(|e| panic!("{label}: recovery open: {e:?}"));
            let mut buf = Vec::new();
            let mut last: Option<u64> = None;
            let end = loop {
                match rx.recv_into_timeout(&mut buf, Duration::from_secs(5)) {
                    Ok(()) => {
                        let h = msg::check(&buf).unwrap_or_else(|e| panic!("{label}: {e}"));
                        if let Some(l) = last {
                            assert_eq!(h.seq, l + 1, "{label}: recovery out of order");
                        }
                        last = Some(h.seq);
                        *delivered += 1;
                    }
                    Err(e) => break e,
                }
            };
            assert!(
                matches!(end, Error::Disconnected(Disconnect::Closed)),
                "{label}: recovery ended with {end:?}"
            );
            if let Some(l) = last {
                assert_eq!(
                    l + 1,
                    sent,
                    "{label}: recovery did not reach the last message"
                );
            }
            drop(rx);
        }
    }
    assert!(
        !kit::shm_path(&name).exists(),
        "{label}: {name} left in /dev/shm after recovery"
    );
    let (fds, maps) = (kit::fd_count(), kit::shm_maps());
    assert_eq!(
        fds,
        fds0,
        "{label}: descriptors {fds0} -> {fds}: {:?} -> {:?}",
        table0,
        kit::fd_table()
    );
    assert_eq!(maps, maps0, "{label}: shared mappings {maps0} -> {maps}");
    let z = kit::zombie_children();
    assert!(z.is_empty(), "{label}: zombies {z:?}");
}

/// CF-11 (short form: 50 cycles; `SHMQ_CRASH_CYCLES=1000` for the catalogue's
/// length): a survivor process runs create → exchange → SIGKILL of the other side
/// at a random failpoint or moment → recover, and ends each cycle with its
/// descriptors, mappings, `/dev/shm` entries and children as they were.
#[test]
fn cf11_a_crash_loop_leaks_no_descriptor_mapping_name_or_zombie() {
    let cycles = kit::env_or::<u64>("SHMQ_CRASH_CYCLES", 50);
    let wd = Watchdog::with_limit("cf11", Duration::from_secs(60 + cycles));
    let tag = format!("cf11-{:x}", Rng::seed() & 0xffff_ffff);
    let before = kit::shm_entries(&format!("t-{tag}"));
    let seed = Rng::seed();
    eprintln!("cf11: seed {seed}, {cycles} cycles");
    let mut s = Spawn::role("crash_loop")
        .arg("CYCLES", cycles)
        .arg("SEED", seed)
        .arg("TAG", &tag)
        .spawn(&wd);
    let ev = s.event("done");
    s.expect_success();
    eprintln!("cf11: {ev}");
    assert_eq!(num(&ev, "cycles"), cycles);
    assert!(num(&ev, "delivered") > 0, "nothing was exchanged: {ev}");
    assert_eq!(
        kit::shm_entries(&format!("t-{tag}")),
        before,
        "/dev/shm entries of the crash loop left"
    );
    assert!(kit::zombie_children().is_empty(), "zombies left");
}

// ---------------------------------------------------------------------------
// CF-12: zombies and PID reuse

/// CF-12's first half over a channel of kind `K` named `name`.
fn cf12_zombie<K: KindExt>(wd: &Watchdog, name: &str) {
    let kind = K::NAME;
    let mut rx = Receiver::<K>::create(name, &kit::session()).expect("create");
    let mut p = spawn_tx::<K>(wd, name)
        .arg("COUNT", 10)
        .arg("THEN", "hang")
        .spawn(wd);
    p.event("sent");
    let t_kill = p.kill_now();
    assert!(kit::wait_dead(p.pid(), Duration::from_secs(5)));
    assert_eq!(kit::proc_state(p.pid()), Some('Z'), "not a zombie");
    let (v, end) = drain(&mut rx, Duration::from_secs(10));
    let latency = Duration::from_nanos(mono_ns() - t_kill);
    assert_eq!(
        kit::proc_state(p.pid()),
        Some('Z'),
        "reaped too early: the test needs a zombie"
    );
    p.expect_killed();
    assert_eq!(v.total, 10, "{kind}");
    assert!(
        matches!(end, Error::Disconnected(Disconnect::Died)),
        "{kind}: {end:?}"
    );
    assert!(latency < DEATH_BUDGET, "{kind}: Died after {latency:?}");
    drop(rx);
}

kit::test_both_kinds! {
    /// CF-12, first half: a producer SIGKILLed and deliberately left unreaped (a
    /// zombie, its pid still taken) is `Died` within budget: liveness is a lock the
    /// kernel released, not a pid.
    fn cf12_an_unreaped_dead_producer_is_died_within_budget()
        under "cf12_zombie": cf12_zombie("cf12z");
}

/// CF-12, second half (root): in a fresh PID namespace the dead producer's pid
/// is handed to an unrelated live process (`ns_last_pid`). The recorded pid of
/// the producer endpoint now names a live process, yet the consumer reports
/// `Died` at once: a recycled pid is never taken for the old peer.
#[test]
fn cf12_a_recycled_pid_in_a_fresh_pid_namespace_is_not_the_old_peer() {
    if !kit::root_or_skip("cf12 pid reuse: needs root for unshare(CLONE_NEWPID) and ns_last_pid") {
        return;
    }
    let (wd, names, name) = shmq_testkit::start("cf12_pidns", "cf12ns");
    let mut rx = Receiver::<Spsc>::create(&name, &kit::session()).expect("create");
    let mut r = Spawn::role_on("pidns", &name).arg("COUNT", 10).spawn(&wd);
    let mut buf = Vec::new();
    let mut v = Verifier::new();
    if let Some(skip) = r.try_event("skip", Duration::from_millis(300)) {
        eprintln!("SKIP cf12 pid reuse: {}", skip["reason"]);
        drop(rx);
        return;
    }
    let dying = r.event("dying");
    let reused = r.event("reused");
    eprintln!("cf12 pid reuse: {dying} then {reused}");
    let old_pid = num(&dying, "ns_pid");
    assert_eq!(num(&reused, "old_pid"), old_pid);
    v.take_n(10, &mut buf, |b| {
        rx.recv_into_timeout(b, Duration::from_secs(10))
    });
    let report = shmq::inspect::inspect(&name)
        .expect("inspect")
        .expect("a channel");
    assert_eq!(
        u64::from(report.endpoints[1].pid),
        old_pid,
        "the producer endpoint records the dead producer's (namespace) pid"
    );
    let asked = Instant::now();
    let end = rx.recv_into_timeout(&mut buf, Duration::from_secs(10));
    let latency = asked.elapsed();
    if reused["same"] == true {
        assert_eq!(
            reused["kill0_alive"], true,
            "a pid-based check would see the recycled pid alive: {reused}"
        );
    } else {
        eprintln!(
            "cf12: the kernel did not hand out the old pid again ({reused}); the check still runs"
        );
    }
    kit::kinds::assert_died(&end, "with the producer's pid recycled by a live process");
    assert!(latency < DEATH_BUDGET, "Died after {latency:?}");
    drop(rx);
    drop(r);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// CF-13: fork without exec, at the channel level

/// CF-13 at the channel level (the segment level is in `crates/segment/tests/segment.rs`): a
/// producer forks without exec; the child's inherited sender is `Error::Forked`;
/// the parent is SIGKILLed while the child lives on, and the consumer still sees
/// `Died` within budget.
#[test]
fn cf13_a_sender_inherited_through_fork_is_forked_and_does_not_mask_death() {
    let (wd, names, name) = shmq_testkit::start("cf13", "cf13");
    let mut rx = Receiver::<Spsc>::create(&name, &kit::session()).expect("create");
    let mut p = Spawn::role_on("fork_tx", &name).arg("COUNT", 10).spawn(&wd);
    let child = num(&p.event("forked"), "child") as i32;
    let tried = p.event("child_tried");
    assert_eq!(
        tried["forked"], true,
        "the child's inherited sender: {tried}"
    );
    let mut buf = Vec::new();
    let mut v = Verifier::new();
    v.take_n(10, &mut buf, |b| {
        rx.recv_into_timeout(b, Duration::from_secs(10))
    });
    let t_kill = p.kill_now();
    assert!(kit::wait_dead(p.pid(), Duration::from_secs(5)));
    let r = rx.recv_into_timeout(&mut buf, Duration::from_secs(10));
    let latency = Duration::from_nanos(mono_ns() - t_kill);
    let child_state = kit::proc_state(child);
    p.expect_killed();
    assert!(
        matches!(child_state, Some('S' | 'R')),
        "the forked child should still live: {child_state:?}"
    );
    kit::kinds::assert_died(&r, "the parent died while its fork lives");
    assert!(latency < DEATH_BUDGET, "Died after {latency:?}");
    drop(rx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// CF-15: graceful close vs death, seen by the producer

/// CF-15 over channels of kind `K`, named by `names`.
fn cf15<K: KindExt>(wd: &Watchdog, names: &Names) {
    let kind = K::NAME;
    for ending in ["close", "kill"] {
        let name = names.name("cf15");
        let mut s = Spawn::role_on("hold_rx", &name)
            .arg("KIND", K::NAME)
            .arg("CAP", 4096);
        if ending == "close" {
            s = s.arg("CLOSE_AFTER_MS", 100);
        }
        let mut c = s.spawn(wd);
        c.event("attached");
        let mut tx = Sender::<K>::open(&name, &kit::session()).expect("open");
        if ending == "close" {
            c.event("closed");
            c.expect_success();
        } else {
            c.kill_and_reap();
        }
        let started = Instant::now();
        let mut sent = 0;
        let end = loop {
            match tx.send(&kit::message(sent, 0, 64)) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        let context = format!("{kind} consumer {ending}: the producer after {sent} sends");
        kit::kinds::assert_ended_by(&end, ending, &context);
        assert!(started.elapsed() < DEATH_BUDGET + Duration::from_millis(100));
        if ending == "close" {
            assert_eq!(sent, 0, "{kind}: sends accepted after the consumer closed");
        }
        drop(tx);
        // A killed consumer left messages: the channel waits for another one.
        kit::remove_stale(&name);
    }
}

kit::test_both_kinds! {
    /// CF-15 from the producer's side (the consumer's side is in `tests/spsc.rs` and
    /// `tests/mpsc.rs`): a consumer that closes is `Closed` to the producer; one that
    /// is killed is `Died`.
    fn cf15_a_closed_consumer_and_a_killed_one_are_told_apart_by_the_producer() under "cf15": cf15;
}

// ---------------------------------------------------------------------------
// CF-16: restarted producers, with incarnations

/// CF-16 (CI form: 20 restarts; `SHMQ_RESTARTS=100` for the catalogue's): the
/// consumer stays up while its producer is killed and restarted; each
/// incarnation sends records stamped with its incarnation. Most incarnations
/// stop at a failpoint, so exactly what they committed is known; some are
/// killed at a random moment. Every committed record arrives exactly once, in
/// order, and nothing of incarnation k arrives after the first of k+1. The
/// channel is a queue (a named channel's default): the consumer never takes a
/// dead producer for the end; after each kill it drains what is there and sees
/// the producer `Died` in its peers.
#[cfg(feature = "failpoints")]
#[test]
fn cf16_restarted_producers_deliver_every_committed_record_once_per_incarnation() {
    let restarts = kit::env_or::<u64>("SHMQ_RESTARTS", 20) as u32;
    let wd = Watchdog::with_limit("cf16", Duration::from_secs(60 + u64::from(restarts)));
    let names = Names::new();
    let name = names.name("cf16");
    let seed = Rng::seed();
    let mut rng = Rng::new(seed);
    eprintln!("cf16: seed {seed}, {restarts} incarnations");
    let mut rx =
        Receiver::<Spsc>::create(&name, &shmq::Options::new().capacity(1 << 20)).expect("create");
    let mut v = kit::RecordVerifier::new();
    let mut buf = Vec::new();
    let mut expected: Vec<(u32, Option<u64>)> = Vec::new();
    for inc in 0..restarts {
        let batch = rng.range(0, 300);
        let point = *rng.pick(&[
            Some("mid_payload"),
            Some("before_commit"),
            Some("after_commit_before_wake"),
            None,
        ]);
        let mut s = Spawn::role_on("tx", &name)
            .arg("FORMAT", "record")
            .arg("ID", 7)
            .arg("INC", inc)
            .arg("SIZE", rng.range(40, 400))
            .arg("BATCH", batch);
        s = match point {
            Some(p) => s.arg("COUNT", 5).failpoint(p),
            None => s.arg("COUNT", 1_000_000).arg("PACE_US", 20),
        };
        let mut p = s.spawn(&wd);
        let committed = match point {
            Some(p_name) => {
                p.wait_failpoint();
                // `try_send_batch` publishes (and passes after_commit_before_wake) once
                // per call; the whole batch fits the 1 MiB ring in one call.
                Some(match (p_name, batch) {
                    ("after_commit_before_wake", 0) => 1,
                    _ => batch,
                })
            }
            None => {
                p.event("ready");
                std::thread::sleep(Duration::from_millis(rng.range(1, 30)));
                None
            }
        };
        p.kill_and_reap();
        expected.push((inc, committed));
        // Drain this incarnation (dead and reaped: everything it committed is
        // in the ring), then it is Died and the consumer waits on.
        let end = loop {
            match rx.try_recv_into(&mut buf) {
                Ok(()) => {
                    let r = v
                        .check(&buf)
                        .unwrap_or_else(|e| panic!("cf16 (seed {seed}) incarnation {inc}: {e}"));
                    assert_eq!(r.incarnation, inc, "a record of another incarnation");
                }
                Err(e) => break e,
            }
        };
        assert!(matches!(end, Error::Empty), "incarnation {inc}: {end:?}");
        assert_eq!(rx.peers().expect("peers"), [shmq::PeerState::Died]);
    }
    for (inc, committed) in expected {
        let got = v.count(7, inc);
        match committed {
            Some(c) => assert_eq!(got, c, "incarnation {inc}: committed {c}, delivered {got}"),
            None => eprintln!("cf16: incarnation {inc} killed at a random moment: {got} records"),
        }
    }
    eprintln!("cf16: {} records over {restarts} incarnations", v.total);
    drop(rx);
    names.assert_clean();
}
