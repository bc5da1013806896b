//! Cross-process tests of MPSC channels (`shmq::mpsc`): many producer processes
//! into one consumer with per-producer verification, producers SIGKILLed at each
//! failpoint (their claims reclaimed, the others unaffected), SIGSTOPped
//! producers that are never reclaimed, and when the consumer is told
//! `Disconnected`.
//!
//! Run: `cargo test --release --features failpoints --test mpsc`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use shmq::{Error, mpsc};
use shmq_testkit as kit;
use shmq_testkit::{
    Names, Proc, Spawn, Verifier, Watchdog, arg, arg_or, emit, hang, mono_ns, msg, num, scaled,
};

// ---------------------------------------------------------------------------
// Roles

shmq_testkit::roles! {
    role_send role_fork_fanin role_recv_batch
}

/// Opens the MPSC channel NAME as its consumer, receives one batch of up to
/// BATCH messages with `try_recv_batch` (which releases them all at its end),
/// checking each, then reports `received` and hangs.
fn role_recv_batch() {
    let name: String = arg("NAME");
    let mut rx = mpsc::Receiver::open(&name, &kit::session()).expect("open receiver");
    let mut n = 0;
    while n == 0 {
        n = rx
            .try_recv_batch(arg("BATCH"), |m| {
                msg::check(m).expect("a whole message");
            })
            .expect("receive");
    }
    emit("received", json!({ "count": n }));
    hang();
}

/// Opens the MPSC channel NAME, reports `attached` (with its slot), sends COUNT
/// messages of SIZE bytes as producer ID (MODE=reserve: written in place between
/// claim and commit; MODE=slow: the same, sleeping 1 ms before each commit;
/// MODE=send: copied; MODE=batch: copied, 8 at a time with `try_send_batch`),
/// pausing 1 ms every PACE messages, then
/// reports `sent` and closes (THEN=close) or hangs (THEN=hang).
fn role_send() {
    let name: String = arg("NAME");
    let id: u32 = arg("ID");
    let count: u64 = arg("COUNT");
    let size: usize = arg_or("SIZE", 64);
    let pace: u64 = arg_or("PACE", 0);
    let mode: String = arg_or("MODE", "send".to_owned());
    let mut tx = mpsc::Sender::open(&name, &kit::session()).expect("open sender");
    emit("attached", json!({ "slot": tx.slot().expect("slot") }));
    let mut buf = vec![0u8; size];
    if mode == "batch" {
        let mut bufs = vec![vec![0u8; size]; 8];
        let mut seq = 0;
        while seq < count {
            let n = (count - seq).min(8) as usize;
            for (k, b) in bufs[..n].iter_mut().enumerate() {
                msg::fill(b, seq + k as u64, id);
            }
            let r = match tx.try_send_batch(bufs[..n].iter().map(Vec::as_slice)) {
                Err(shmq::Error::Full) => tx.send(&bufs[0]).map(|()| 1),
                r => r,
            };
            match r {
                Ok(k) => seq += k as u64,
                Err(e) => {
                    emit(
                        "send_error",
                        json!({ "why": kit::kinds::why(&e), "sent": seq }),
                    );
                    return;
                }
            }
        }
        emit("sent", json!({ "count": count }));
        if arg::<String>("THEN") == "hang" {
            let _keep = tx;
            hang();
        }
        return;
    }
    for seq in 0..count {
        let r = if mode == "reserve" || mode == "slow" {
            tx.reserve(size).map(|mut slot| {
                msg::fill(&mut slot, seq, id);
                if mode == "slow" {
                    // A slow writer: most of its time is spent inside its claim.
                    std::thread::sleep(Duration::from_millis(1));
                }
                slot.commit();
            })
        } else {
            msg::fill(&mut buf, seq, id);
            tx.send(&buf)
        };
        if let Err(e) = r {
            emit(
                "send_error",
                json!({ "why": kit::kinds::why(&e), "sent": seq }),
            );
            return;
        }
        if pace > 0 && seq % pace == pace - 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    emit("sent", json!({ "count": count }));
    if arg::<String>("THEN") == "hang" {
        let _keep = tx;
        hang();
    }
}

/// An anonymous MPSC channel across fork: three children each send COUNT
/// messages through their own `try_clone`d sender; this process verifies them all.
fn role_fork_fanin() {
    let count: u64 = arg("COUNT");
    let (fds0, maps0) = (kit::shm_fds(), kit::shm_maps());
    let (tx, mut rx) =
        mpsc::anonymous(&kit::session().capacity(1 << 16).max_producers(4)).expect("anonymous");
    rx.expect_producers(3).expect("expect_producers");
    let mut children = Vec::new();
    for id in 0..3u32 {
        let mut mine = Some(tx.try_clone().expect("try_clone"));
        children.push(kit::fork_child(|| {
            let mut tx = mine.take().expect("sender");
            let mut buf = vec![0u8; 48];
            for seq in 0..count {
                msg::fill(&mut buf, seq, id);
                tx.send(&buf).expect("send");
            }
            drop(tx);
            0
        }));
        drop(mine);
    }
    drop(tx);
    let (v, end) = kit::msg::drain(|b| rx.recv_into(b));
    let end = kit::kinds::why(&end);
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| kit::wait_child(c, Duration::from_secs(60)))
        .collect();
    drop(rx);
    emit(
        "done",
        json!({
            "per": v.counts(), "end": end, "children": codes,
            "fds_before": fds0, "fds_after": kit::shm_fds(),
            "maps_before": maps0, "maps_after": kit::shm_maps(),
        }),
    );
}

// ---------------------------------------------------------------------------
// A consumer thread in the test process

/// What the consumer thread tells the test as it goes.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    reclaimed: AtomicU64,
    /// Set by the test; the consumer then records the next arrival in `resumed_ns`.
    mark: AtomicBool,
    resumed_ns: AtomicU64,
    stop: AtomicBool,
}

/// Stops the consumer thread when dropped, so that a panic in the test's thread
/// (which `thread::scope` only propagates once every scoped thread has ended)
/// cannot leave the consumer waiting forever.
struct StopOnDrop<'a>(&'a Progress);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// What the consumer thread returns.
struct Outcome {
    v: Verifier,
    end: String,
    reclaimed: u64,
}

/// Receives and verifies until `Disconnected` (or `stop`). The time-out of each
/// receive (200 ms) is longer than the wait slice (50 ms), so that liveness is
/// checked while it waits.
fn consume(mut rx: mpsc::Receiver, p: &Progress) -> Outcome {
    let mut v = Verifier::new();
    let end = kit::receive_through_timeouts(
        |b| {
            // Before each receive: what the last one left reclaimed.
            p.reclaimed
                .store(rx.reclaimed().expect("reclaimed"), Ordering::Relaxed);
            rx.recv_into_timeout(b, Duration::from_millis(200))
        },
        |m| {
            v.take(m);
            p.received.fetch_add(1, Ordering::Relaxed);
            if p.mark.load(Ordering::Relaxed) && p.resumed_ns.load(Ordering::Relaxed) == 0 {
                p.resumed_ns.store(mono_ns(), Ordering::Relaxed);
            }
        },
        || p.stop.load(Ordering::Relaxed).then(|| "stopped".to_owned()),
    )
    .map_or_else(|stopped| stopped, |e| kit::kinds::why(&e));
    let reclaimed = rx.reclaimed().expect("reclaimed");
    p.reclaimed.store(reclaimed, Ordering::Relaxed);
    drop(rx);
    Outcome { v, end, reclaimed }
}

/// Waits until producers have attached to `name` `n` times in all.
#[cfg(feature = "failpoints")]
fn wait_attached(name: &str, n: u32) {
    kit::poll_until(kit::EVENT_TIMEOUT, Duration::from_millis(1), || {
        let attached: u32 = ring_view(name)
            .producers
            .iter()
            .map(|p| p.incarnation)
            .sum();
        (attached >= n)
            .then_some(())
            .ok_or_else(|| format!("only {attached} of {n} producers attached"))
    })
}

/// Waits until the consumer has received at least `n` messages.
fn wait_received(p: &Progress, n: u64) {
    kit::poll_until(kit::EVENT_TIMEOUT, Duration::from_millis(1), || {
        (p.received.load(Ordering::Relaxed) >= n)
            .then_some(())
            .ok_or_else(|| format!("the consumer never got {n} messages"))
    })
}

/// Waits until the consumer has taken every committed message before the first
/// uncommitted claim (the ring's walk from `head` meets no message before it),
/// then until it has been quiet for 50 ms; returns its count.
fn wait_stuck(p: &Progress, name: &str) -> u64 {
    kit::poll_until(kit::EVENT_TIMEOUT, Duration::from_millis(2), || {
        let view = ring_view(name);
        (view.uncommitted >= 1 && view.messages == 0)
            .then_some(())
            .ok_or_else(|| format!("the consumer never got stuck at the claim: {view:?}"))
    });
    wait_quiet(p, Duration::from_millis(50))
}

/// Waits until the consumer has received nothing for `quiet`; returns its count.
fn wait_quiet(p: &Progress, quiet: Duration) -> u64 {
    let deadline = Instant::now() + kit::EVENT_TIMEOUT;
    let mut last = p.received.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = p.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(Instant::now() < deadline, "the consumer never went quiet");
    }
}

/// Asserts for 300 ms that the consumer stays at `stalled` messages and
/// reclaims nothing: a live producer (`whose`) holds up the ring with its claim.
fn assert_held(p: &Progress, stalled: u64, whose: &str) {
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        assert_eq!(
            p.received.load(Ordering::Relaxed),
            stalled,
            "{whose}: a message beyond its claim was delivered"
        );
        assert_eq!(
            p.reclaimed.load(Ordering::Relaxed),
            0,
            "{whose}: its claim was reclaimed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`shmq_testkit::start`], and the receiver of a 64 KiB MPSC channel under
/// the name (bind it last: it is dropped first).
fn start_64k(test: &str, tag: &str) -> (Watchdog, Names, String, mpsc::Receiver) {
    let (wd, names, name) = shmq_testkit::start(test, tag);
    let rx = mpsc::Receiver::create(&name, &kit::session().capacity(1 << 16)).expect("create");
    (wd, names, name, rx)
}

/// The receiver of a 64 KiB MPSC channel `name` with 8 producer slots, which
/// expects 4 producers.
#[cfg(feature = "failpoints")]
fn four_producer_rx(name: &str) -> mpsc::Receiver {
    let o = kit::session().capacity(1 << 16).max_producers(8);
    let mut rx = mpsc::Receiver::create(name, &o).expect("create");
    rx.expect_producers(4).expect("expect_producers");
    rx
}

/// Producers 1 to 3 of `name`, each sending `count` messages, pausing every 100.
#[cfg(feature = "failpoints")]
fn paced_senders(wd: &Watchdog, name: &str, count: u64) -> Vec<Proc> {
    (1..=3)
        .map(|id| sender(wd, name, id, count).arg("PACE", 100).spawn(wd))
        .collect()
}

fn sender(wd: &Watchdog, name: &str, id: u32, count: u64) -> Spawn {
    let _ = wd;
    Spawn::role_on("send", name)
        .arg("ID", id)
        .arg("COUNT", count)
        .arg("THEN", "close")
}

fn ring_view(name: &str) -> shmq::inspect::RingReport {
    shmq::inspect::inspect(name)
        .expect("inspect")
        .expect("a shmq segment")
        .ring
        .expect("a ring view")
}

// ---------------------------------------------------------------------------
// Many producers

#[test]
fn million_messages_from_four_producer_processes_all_verified() {
    let _serial = kit::serial();
    let (wd, names, name) = shmq_testkit::start("million_four_producers", "mpsc-million");
    let per = scaled(250_000);
    let mut c = Spawn::example("consumer")
        .args(["--name", &name, "--mpsc", "--producers", "4"])
        .args(["--count", &(4 * per).to_string()])
        .spawn(&wd);
    let mut producers: Vec<Proc> = (0..4)
        .map(|id| {
            Spawn::example("producer")
                .args(["--name", &name, "--mpsc", "--id", &id.to_string()])
                .args(["--count", &per.to_string(), "--size", "64"])
                .spawn(&wd)
        })
        .collect();
    for p in &mut producers {
        p.expect_success();
        assert_eq!(num(&p.last_json(), "sent"), per);
    }
    c.expect_success();
    let cj = c.last_json();
    assert_eq!(num(&cj, "received"), 4 * per, "{cj}");
    assert_eq!(cj["verified"], true, "{cj}");
    assert_eq!(cj["lost"], 0, "{cj}");
    assert_eq!(cj["duplicated"], 0, "{cj}");
    assert_eq!(
        cj["per_producer"],
        json!({ "0": per, "1": per, "2": per, "3": per }),
        "{cj}"
    );
    names.assert_clean();
}

#[test]
fn an_anonymous_channel_fans_in_from_forked_producers() {
    let wd = Watchdog::new("fork_fanin");
    let count = scaled(100_000);
    let mut p = Spawn::role("fork_fanin").arg("COUNT", count).spawn(&wd);
    let ev = p.event("done");
    p.expect_success();
    assert_eq!(
        ev["per"],
        json!({ "0": count, "1": count, "2": count }),
        "{ev}"
    );
    assert_eq!(ev["end"], "Closed", "{ev}");
    assert_eq!(ev["children"], json!([0, 0, 0]), "{ev}");
    kit::assert_no_leak(&ev);
}

// ---------------------------------------------------------------------------
// Producers that die or stop mid-message

/// Three producers stream (paced, so that they are still sending when the victim
/// claims); the victim stops at `point` with its claim in the middle of the
/// stream; it is SIGKILLed. Every other message arrives, in order, once.
#[cfg(feature = "failpoints")]
fn victim_killed_at(point: &str) {
    victim_killed_at_sending(point, "send");
}

/// As [`victim_killed_at`], the victim sending with MODE (`send` or `batch`).
#[cfg(feature = "failpoints")]
fn victim_killed_at_sending(point: &str, mode: &str) {
    let (wd, names, name) = shmq_testkit::start(point, "mpsc-victim");
    let n = scaled(20_000);
    let rx = four_producer_rx(&name);
    let progress = Progress::default();
    let committed_before_stop = point == "after_commit_before_wake";
    let (outcome, t_kill, stalled_at) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&progress);
        let consumer = s.spawn(|| consume(rx, &progress));
        let mut good = paced_senders(&wd, &name, n);
        wait_received(&progress, 300);
        // Every good producer holds its slot before the victim takes one: a good
        // producer that attached only after the victim died could take its slot,
        // and the consumer would then see that slot closed by its new holder, not
        // the death (found at about 1 run in 10 under load).
        wait_attached(&name, 3);
        let mut victim = sender(&wd, &name, 0, n)
            .arg("MODE", mode)
            .spawn_to(&wd, point);
        let mut stalled_at = None;
        if !committed_before_stop {
            // The consumer reaches the victim's frame and stops there; the victim is
            // alive, so its claim must not be touched.
            stalled_at = Some(wait_quiet(&progress, Duration::from_millis(300)));
            assert_eq!(
                progress.reclaimed.load(Ordering::Relaxed),
                0,
                "a live producer's claim was reclaimed"
            );
            let view = ring_view(&name);
            assert!(view.uncommitted >= 1, "no uncommitted claim in {view:?}");
        }
        progress.mark.store(true, Ordering::Relaxed);
        let t_kill = victim.kill_and_reap();
        for g in &mut good {
            g.expect_success();
        }
        let outcome = consumer.join().expect("consumer thread");
        (outcome, t_kill, stalled_at)
    });
    for id in 1..=3 {
        assert_eq!(outcome.v.count(id), n, "producer {id}: {:?}", outcome.v);
    }
    let from_victim = outcome.v.count(0);
    if committed_before_stop {
        assert_eq!(
            from_victim, 1,
            "the victim's committed message must arrive once"
        );
    } else {
        assert_eq!(
            from_victim, 0,
            "the victim's uncommitted message was delivered"
        );
        assert!(
            outcome.reclaimed >= 1,
            "the dead producer's claim was not reclaimed"
        );
    }
    assert_eq!(outcome.end, "Died", "the end: one producer died");
    let resumed = progress.resumed_ns.load(Ordering::Relaxed);
    let latency = Duration::from_nanos(resumed.saturating_sub(t_kill));
    eprintln!(
        "{point}: stalled at {stalled_at:?} of {} messages; reclaimed {}; first message {latency:?} after SIGKILL",
        3 * n,
        outcome.reclaimed
    );
    if !committed_before_stop && stalled_at.is_some_and(|s| s < 3 * n) {
        assert!(resumed > 0, "nothing arrived after the kill");
        assert!(
            latency < Duration::from_secs(1),
            "the stream resumed only {latency:?} after the victim's SIGKILL"
        );
    }
    names.assert_clean();
}

#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_after_claim_is_reclaimed_and_the_others_go_on() {
    victim_killed_at("after_claim");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_mid_payload_is_reclaimed_and_the_others_go_on() {
    victim_killed_at("mid_payload");
}

/// A batch: every frame's payload written, none published. The whole batch is
/// reclaimed and none of it delivered (once, the later frames had their positive
/// lengths already, and a death before one of them left payload bytes where the
/// consumer looked for a header).
#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_mid_batch_is_reclaimed_whole_and_the_others_go_on() {
    victim_killed_at_sending("mid_payload", "batch");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_before_commit_is_reclaimed_and_the_others_go_on() {
    victim_killed_at("before_commit");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_after_commit_before_wake_delivers_its_message_once() {
    victim_killed_at("after_commit_before_wake");
}

/// CF-07 with the failpoint: a producer stopped (SIGSTOP) right after its claim is
/// alive, so nothing beyond its frame is delivered and nothing is reclaimed, for
/// as long as it stays stopped, and after SIGCONT. The failpoint then holds it
/// forever, so it cannot complete: it is killed at the end, and reclaimed.
#[cfg(feature = "failpoints")]
#[test]
fn a_producer_stopped_after_claim_is_never_reclaimed_while_alive() {
    let (wd, names, name) = shmq_testkit::start("stopped_after_claim", "mpsc-stopped");
    let n = scaled(20_000);
    let rx = four_producer_rx(&name);
    let progress = Progress::default();
    let outcome = std::thread::scope(|s| {
        let _stop = StopOnDrop(&progress);
        let consumer = s.spawn(|| consume(rx, &progress));
        let mut good = paced_senders(&wd, &name, n);
        wait_received(&progress, 300);
        // Every good producer holds its slot before the victim takes one: a good
        // producer that attached only after the victim died could take its slot,
        // and the consumer would then see that slot closed by its new holder, not
        // the death (found at about 1 run in 10 under load).
        wait_attached(&name, 3);
        let mut victim = sender(&wd, &name, 0, n).failpoint("after_claim").spawn(&wd);
        let slot = num(&victim.event("attached"), "slot") as usize;
        victim.wait_failpoint();
        victim.stop();
        let stalled = wait_stuck(&progress, &name);
        let view = ring_view(&name);
        assert!(
            view.producers[slot].pending_claim.is_some(),
            "the stopped producer's intent is not visible: {view:?}"
        );
        for phase in ["stopped", "continued"] {
            assert_held(&progress, stalled, &format!("{phase}: the live producer"));
            if phase == "stopped" {
                victim.signal(Signal::SIGCONT);
            }
        }
        victim.kill_and_reap();
        for g in &mut good {
            g.expect_success();
        }
        consumer.join().expect("consumer thread")
    });
    for id in 1..=3 {
        assert_eq!(outcome.v.count(id), n, "producer {id}");
    }
    assert_eq!(outcome.v.count(0), 0);
    assert!(outcome.reclaimed >= 1, "not reclaimed after the kill");
    assert_eq!(outcome.end, "Died");
    names.assert_clean();
}

/// CF-07 without a failpoint: a producer SIGSTOPped in the middle of writing a
/// message (caught by stopping it at random moments until `inspect` shows its
/// claim uncommitted) holds up the consumer, is never reclaimed while stopped
/// (even with other producers filling the ring behind it), and after SIGCONT
/// completes: every message of every producer arrives.
#[test]
fn a_producer_stopped_mid_message_completes_after_sigcont() {
    let (wd, names, name) = shmq_testkit::start("stopped_mid_message", "mpsc-sigcont");
    let victim_count = 300;
    let others = 2000;
    let mut rx = mpsc::Receiver::create(&name, &kit::session().capacity(1 << 18).max_producers(8))
        .expect("create");
    rx.expect_producers(4).expect("expect_producers");
    let progress = Progress::default();
    let (outcome, attempts) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&progress);
        let consumer = s.spawn(|| consume(rx, &progress));
        let mut victim = sender(&wd, &name, 0, victim_count)
            .arg("SIZE", 1024)
            .arg("MODE", "slow")
            .spawn(&wd);
        victim.event("attached");
        wait_received(&progress, 10);
        let mut seed = mono_ns();
        let mut caught = None;
        for attempt in 1..=200 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::thread::sleep(Duration::from_micros((seed >> 33) % 2000));
            victim.stop();
            wait_quiet(&progress, Duration::from_millis(30));
            if ring_view(&name).uncommitted >= 1 {
                caught = Some(attempt);
                break;
            }
            victim.signal(Signal::SIGCONT);
            assert!(
                progress.received.load(Ordering::Relaxed) < victim_count,
                "the victim finished before it was caught mid-message"
            );
        }
        let attempts = caught.expect("never caught the producer in the middle of a message");
        let stalled = wait_stuck(&progress, &name);
        let mut good: Vec<Proc> = (1..=3)
            .map(|id| sender(&wd, &name, id, others).spawn(&wd))
            .collect();
        for g in &mut good {
            g.event("attached");
        }
        assert_held(&progress, stalled, "the stopped producer");
        victim.signal(Signal::SIGCONT);
        victim.expect_success();
        for g in &mut good {
            g.expect_success();
        }
        (consumer.join().expect("consumer thread"), attempts)
    });
    eprintln!("caught the producer mid-message after {attempts} stop(s)");
    assert_eq!(
        outcome.v.count(0),
        victim_count,
        "the stopped producer's messages"
    );
    for id in 1..=3 {
        assert_eq!(outcome.v.count(id), others, "producer {id}");
    }
    assert_eq!(
        outcome.reclaimed, 0,
        "nothing may be reclaimed: nobody died"
    );
    assert_eq!(outcome.end, "Closed");
    names.assert_clean();
}

/// A consumer polling with time-outs shorter than the wait slice must still
/// reclaim a dead producer's claim (or the channel stalls behind it for good).
#[cfg(feature = "failpoints")]
#[test]
fn a_consumer_polling_with_short_time_outs_reclaims_a_dead_producer() {
    let (wd, names, name, mut rx) = start_64k("polling_reclaim", "mpsc-poll");
    let mut victim = sender(&wd, &name, 0, 10).spawn_to(&wd, "after_claim");
    let mut good = sender(&wd, &name, 1, 100).spawn(&wd);
    good.expect_success();
    let mut buf = Vec::new();
    // Wait once while the victim lives, so the consumer has seen both producers.
    let r = rx.recv_into_timeout(&mut buf, Duration::from_millis(100));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    victim.kill_and_reap();
    let mut v = Verifier::new();
    let polling = Instant::now();
    while v.count(1) < 100 && polling.elapsed() < Duration::from_secs(2) {
        match rx.recv_into_timeout(&mut buf, Duration::from_millis(10)) {
            Ok(()) => {
                v.take(&buf);
            }
            Err(Error::Timeout) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(
        v.count(1),
        100,
        "after polling for {:?} with 10 ms time-outs, reclaimed = {}",
        polling.elapsed(),
        rx.reclaimed().unwrap()
    );
    drop(rx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// The end of the stream

#[test]
fn disconnected_only_once_every_expected_producer_is_gone_and_drained() {
    let (wd, names, name, mut rx) = start_64k("expect_producers", "mpsc-end");
    rx.expect_producers(3).expect("expect_producers");
    let mut v = Verifier::new();
    let mut buf = Vec::new();
    // Not the end yet: nothing within 300 ms, `attached` producers so far.
    let not_the_end = |rx: &mut mpsc::Receiver, buf: &mut Vec<u8>, attached: u32, when: &str| {
        let r = rx.recv_into_timeout(buf, Duration::from_millis(300));
        assert!(matches!(r, Err(Error::Timeout)), "{when}: {r:?}");
        assert_eq!(rx.producer_attachments().unwrap(), attached);
    };

    let mut p1 = sender(&wd, &name, 1, 100).spawn(&wd);
    p1.expect_success();
    v.take_n(100, &mut buf, |b| {
        rx.recv_into_timeout(b, Duration::from_secs(20))
    });
    // One of three expected producers came and went: not the end.
    not_the_end(&mut rx, &mut buf, 1, "after 1 of 3 producers");

    let mut p2 = sender(&wd, &name, 2, 100).spawn(&wd);
    let mut p3 = sender(&wd, &name, 3, 100).arg("THEN", "hang").spawn(&wd);
    p3.event("sent");
    p2.expect_success();
    v.take_n(200, &mut buf, |b| {
        rx.recv_into_timeout(b, Duration::from_secs(20))
    });
    // All three attached, but one lives: not the end.
    not_the_end(&mut rx, &mut buf, 3, "while producer 3 lives");

    let (r, latency) = p3.kill_then(|| rx.recv_into_timeout(&mut buf, Duration::from_secs(10)));
    kit::kinds::assert_died(&r, "after the last producer died");
    eprintln!("last producer SIGKILLed -> Disconnected(Died) after {latency:?}");
    assert!(
        latency < kit::DEATH_BUDGET,
        "Disconnected after {latency:?}"
    );
    for id in 1..=3 {
        assert_eq!(v.count(id), 100);
    }
    let r = rx.try_recv_into(&mut buf);
    assert!(
        matches!(r, Err(Error::Disconnected(_)) | Err(Error::Empty)),
        "{r:?}"
    );
    drop(rx);
    names.assert_clean();
}

#[test]
fn disconnected_closed_when_the_only_producer_closes() {
    let (wd, names, name, mut rx) = start_64k("closed", "mpsc-closed");
    let mut p = sender(&wd, &name, 5, 50).spawn(&wd);
    p.expect_success();
    let (v, end) = kit::msg::drain(|b| rx.recv_into_timeout(b, Duration::from_secs(10)));
    assert_eq!(v.count(5), 50);
    kit::kinds::assert_closed(&end);
    drop(rx);
    names.assert_clean();
}

/// A consumer killed in the middle of zeroing the frames it had just released
/// (failpoint `mid_release`, halfway through a run of five 48-byte frames, so
/// inside one): the next consumer finishes that release from the note the
/// first one left and receives every later message, whole and in order, and
/// none of the five again. Before the note it started at the old `head`, took
/// the zeroed prefix for a dead producer's claim without a header, and read
/// what followed (a payload word as a header, `Corrupted`, or the released
/// frames again); found by the MPSC file-channel kill storm.
#[cfg(feature = "failpoints")]
#[test]
fn a_consumer_killed_mid_release_finishes_nothing_twice() {
    let (wd, names, name) = shmq_testkit::start("killed_mid_release", "mpsc-mid-release");
    let mut tx = mpsc::Sender::create(&name, &kit::session().capacity(1 << 12)).expect("create");
    for seq in 0..20 {
        tx.send(&msg::message(seq, 1, 40)).expect("send");
    }
    let mut victim = Spawn::role_on("recv_batch", &name)
        .arg("BATCH", 5)
        .failpoint("mid_release")
        .spawn(&wd);
    victim.wait_failpoint();
    victim.kill_and_reap();
    let mut rx = mpsc::Receiver::open(&name, &kit::session()).expect("a new consumer");
    for seq in 5..20 {
        let m = rx
            .try_recv()
            .unwrap_or_else(|e| panic!("message {seq}: {e}"));
        let h = msg::check(&m).unwrap_or_else(|e| panic!("message {seq}: {e}"));
        assert_eq!((h.producer, h.seq), (1, seq), "after the killed release");
    }
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    drop(rx);
    drop(tx);
    names.assert_clean();
}
