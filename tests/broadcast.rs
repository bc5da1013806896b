//! Broadcast channels across processes (issue 14): one publisher (this test
//! process) and subscriber processes, each verifying every message it gets.
//!
//! - eight lossless subscribers each receive every message once, in order;
//! - a lossless subscriber that stops reading holds the publisher; once it is
//!   SIGKILLed it is evicted within the death budget and the others finish;
//! - a SIGSTOPped lossless subscriber holds the publisher while a lossy one
//!   keeps receiving; once the stopped one is gone the lossy one, paced, is
//!   lapped and told exactly how much it missed (received + lagged = sent);
//! - subscribers join and leave at random while messages flow: each sees a
//!   run of consecutive whole messages, and the publisher never stalls.
//!
//! Counts come from the environment (CI defaults in brackets; long runs in
//! docs/RELIABILITY.md): SHMQ_BROADCAST_MESSAGES (100,000 in release builds,
//! a tenth in debug), SHMQ_BROADCAST_CHURN (24 subscribers).
//!
//! Run: `cargo nextest run --release --test broadcast`.

use std::time::{Duration, Instant};

use serde_json::json;
use shmq::broadcast::{Join, Mode, Publisher, Subscriber};
use shmq::{Error, Options};
use shmq_testkit as kit;
use shmq_testkit::{DEATH_BUDGET, Proc, Rng, Spawn, Watchdog, arg, arg_or, emit};

shmq_testkit::roles! { role_subscriber role_hostile }

/// Options of every end: a session (the publisher's close ends the stream),
/// a small ring so that it wraps often, 16 subscriber slots.
fn opts() -> Options {
    kit::session().capacity(1 << 16).max_subscribers(16)
}

/// Joins the broadcast channel NAME as a MODE (lossless/lossy) subscriber
/// at JOIN (next/oldest), reports `ready`, then receives and verifies until
/// the publisher is gone (or, with STOP_AFTER=n, hangs after n messages
/// without reading more; with LEAVE_AFTER=n, closes after n). PACE_US: a
/// sleep after each message. Reports `done`: received, lagged (messages it
/// was told it missed after its first message; `lagged_before`, before it),
/// first and last sequence numbers, and every failed check.
fn role_subscriber() {
    let mode = match arg::<String>("MODE").as_str() {
        "lossy" => Mode::Lossy,
        _ => Mode::Lossless,
    };
    let join = match arg_or("JOIN", "next".to_owned()).as_str() {
        "oldest" => Join::Oldest,
        _ => Join::Next,
    };
    let stop_after: u64 = arg_or("STOP_AFTER", u64::MAX);
    let leave_after: u64 = arg_or("LEAVE_AFTER", u64::MAX);
    let pace = Duration::from_micros(arg_or("PACE_US", 0));
    let o = opts().subscribe(mode).join(join);
    let mut rx = Subscriber::open(&arg::<String>("NAME"), &o).expect("open");
    emit("ready", json!({}));
    let (mut received, mut lagged, mut lagged_before) = (0u64, 0u64, 0u64);
    let (mut first, mut next) = (None::<u64>, 0u64);
    let mut failures = Vec::new();
    let mut buf = Vec::new();
    loop {
        if received == stop_after {
            emit("stopped", json!({ "received": received }));
            kit::hang();
        }
        if received == leave_after {
            break;
        }
        match rx.recv_into(&mut buf) {
            Ok(()) => match kit::msg::check(&buf) {
                Ok(h) => {
                    if first.is_none() {
                        first = Some(h.seq);
                        next = h.seq;
                    }
                    if h.seq != next {
                        failures.push(format!("message {} where {next} was due", h.seq));
                    }
                    next = h.seq + 1;
                    received += 1;
                }
                Err(e) => failures.push(e),
            },
            Err(Error::Lagged(n)) => {
                if mode == Mode::Lossless {
                    failures.push(format!("a lossless subscriber was told it lagged {n}"));
                }
                // Missed before its first message: not within [first, last].
                if first.is_some() {
                    lagged += n;
                } else {
                    lagged_before += n;
                }
                next += n;
            }
            Err(Error::Disconnected(_)) => break,
            Err(e) => {
                failures.push(format!("receive: {e}"));
                break;
            }
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    emit(
        "done",
        json!({
            "received": received, "lagged": lagged, "lagged_before": lagged_before,
            "first": first,
            "last": next.checked_sub(1), "failures": failures,
        }),
    );
}

/// Joins the broadcast channel NAME as a lossless subscriber (it must get
/// slot 0: started first), reports `ready`, then as a hostile peer writes
/// random words (SEED) into its own slot's position, and with RING=1 also
/// into the data area, until killed.
fn role_hostile() {
    let name: String = arg("NAME");
    let _rx = Subscriber::open(&name, &opts()).expect("open");
    let seg = kit::hostile::open_raw(&name);
    let raw = kit::hostile::RawRegion::of(&seg);
    let mut rng = Rng::new(arg("SEED"));
    let ring = arg_or("RING", 0u8) == 1;
    // The data area of a 16-slot broadcast ring (docs/PROTOCOL.md, section 8).
    let (pos, data, cap) = (512 + 16, 512 + 16 * 128, 1usize << 16);
    emit("ready", json!({}));
    loop {
        raw.word(pos)
            .store(rng.next_u64(), std::sync::atomic::Ordering::Relaxed);
        if ring {
            let off = data + 8 * rng.range(0, cap as u64 / 8 - 1) as usize;
            raw.word(off)
                .store(rng.next_u64(), std::sync::atomic::Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn messages() -> u64 {
    kit::env_or("SHMQ_BROADCAST_MESSAGES", kit::scaled(100_000))
}

/// Message `seq` (16 to 200 bytes, its length a function of `seq`).
fn msg(seq: u64) -> Vec<u8> {
    kit::message(seq, 0, 16 + (seq as usize * 37) % 185)
}

fn subscriber(name: &str, mode: &str) -> Spawn {
    Spawn::role("subscriber")
        .arg("NAME", name)
        .arg("MODE", mode)
}

fn ready(wd: &Watchdog, s: Spawn) -> Proc {
    let mut p = s.spawn(wd);
    p.event("ready");
    p
}

/// The setting of the hostile tests: the publisher of the channel `name`, and
/// its two subscribers, both ready: the role `hostile` (SEED `seed`; with
/// `ring` it also writes into the ring), started first so that it gets slot
/// 0, and an honest lossless one.
fn beside_a_hostile(wd: &Watchdog, name: &str, seed: u64, ring: bool) -> (Publisher, Proc, Proc) {
    let tx = Publisher::create(name, &opts()).expect("create");
    let hostile = ready(
        wd,
        Spawn::role("hostile")
            .arg("NAME", name)
            .arg("SEED", seed)
            .arg("RING", u8::from(ring)),
    );
    let honest = ready(wd, subscriber(name, "lossless"));
    (tx, hostile, honest)
}

/// A subscriber's `done` report: asserts it has no failures.
fn done(p: &mut Proc) -> (u64, u64, Option<u64>, Option<u64>) {
    let d = p.event("done");
    let failures = d["failures"].as_array().cloned().unwrap_or_default();
    assert!(failures.is_empty(), "subscriber {}: {failures:?}", p.pid());
    p.expect_success();
    (
        kit::num(&d, "received"),
        kit::num(&d, "lagged"),
        d["first"].as_u64(),
        d["last"].as_u64(),
    )
}

#[test]
fn eight_lossless_subscribers_each_get_every_message_once_in_order() {
    let (wd, _names, name) = kit::start("eight_subscribers", "bc8");
    let n = messages();
    let mut tx = Publisher::create(&name, &opts()).expect("create");
    let mut subs: Vec<Proc> = (0..8)
        .map(|_| ready(&wd, subscriber(&name, "lossless")))
        .collect();
    for seq in 0..n {
        tx.send(&msg(seq)).expect("send");
    }
    drop(tx);
    for p in &mut subs {
        let (received, lagged, first, last) = done(p);
        assert_eq!((received, lagged), (n, 0));
        assert_eq!((first, last), (Some(0), Some(n - 1)));
    }
}

/// Sends until the channel stays full for `hold` (a lossless subscriber
/// holds it); returns how many were sent.
fn fill(tx: &mut Publisher, from: u64, hold: Duration) -> u64 {
    let mut seq = from;
    let mut full_since = None;
    loop {
        match tx.try_send(&msg(seq)) {
            Ok(()) => {
                seq += 1;
                full_since = None;
            }
            Err(Error::Full) => {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= hold {
                    return seq;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("try_send: {e}"),
        }
    }
}

#[test]
fn a_killed_lossless_subscriber_is_evicted_and_the_others_finish() {
    let (wd, _names, name) = kit::start("killed_subscriber", "bckill");
    let n = messages().max(10_000);
    let mut tx = Publisher::create(&name, &opts()).expect("create");
    let mut victim = ready(&wd, subscriber(&name, "lossless").arg("STOP_AFTER", 100));
    let mut others: Vec<Proc> = (0..3)
        .map(|_| ready(&wd, subscriber(&name, "lossless")))
        .collect();
    // The victim reads 100 messages and then nothing: the publisher is held
    // (a live lossless subscriber is never evicted, however slow).
    let sent = fill(&mut tx, 0, Duration::from_millis(300));
    victim.event("stopped");
    assert!(sent < n, "a 64 KiB ring held all {sent} messages");
    // Killed: the publisher's next blocked send notices within the death
    // budget (a look per wait slice), and goes on.
    let (r, took) = victim.kill_then(|| tx.send_timeout(&msg(sent), Duration::from_secs(30)));
    r.expect("send after the victim's death");
    assert!(
        took < DEATH_BUDGET * 4,
        "the dead subscriber held the publisher {took:?}"
    );
    // Tools see it as dead (its slot word still says attached, its lock is
    // free), the others as alive: `subscriber 0` is the victim, first to join.
    let report = shmq::inspect::inspect(&name)
        .expect("inspect")
        .expect("a channel");
    let status = |role: &str| {
        let e = report.endpoints.iter().find(|e| e.role == role);
        e.unwrap_or_else(|| panic!("no {role}")).status
    };
    assert_eq!(status("subscriber 0"), shmq::inspect::EndpointStatus::Dead);
    assert_eq!(status("subscriber 1"), shmq::inspect::EndpointStatus::Alive);
    assert_eq!(status("publisher"), shmq::inspect::EndpointStatus::Alive);
    for seq in sent + 1..n {
        tx.send(&msg(seq)).expect("send");
    }
    drop(tx);
    for p in &mut others {
        let (received, lagged, first, last) = done(p);
        assert_eq!(
            (received, lagged, first, last),
            (n, 0, Some(0), Some(n - 1))
        );
    }
}

#[test]
fn a_stopped_lossless_subscriber_holds_the_publisher_while_a_lossy_one_goes_on() {
    let (wd, _names, name) = kit::start("stopped_subscriber", "bcstop");
    let n = messages().max(20_000);
    let mut tx = Publisher::create(&name, &opts()).expect("create");
    let mut stopped = ready(&wd, subscriber(&name, "lossless"));
    let mut lossy = ready(&wd, subscriber(&name, "lossy").arg("PACE_US", 20));
    stopped.stop();
    // Held: the stopped subscriber is alive, so it is waited for (documented:
    // a lossless subscriber can hold the publisher for as long as it likes).
    let sent = fill(&mut tx, 0, Duration::from_millis(500));
    assert!(sent < n);
    // Gone: the publisher runs at its own speed, and the paced lossy
    // subscriber is lapped again and again.
    stopped.kill_and_reap();
    for seq in sent..n {
        tx.send_timeout(&msg(seq), Duration::from_secs(30))
            .expect("send once the stopped subscriber is gone");
    }
    drop(tx);
    let (received, lagged, first, last) = done(&mut lossy);
    assert_eq!(
        received + lagged,
        n,
        "every message received or reported missed"
    );
    assert!(lagged > 0, "a paced lossy subscriber was never lapped");
    assert_eq!((first, last), (Some(0), Some(n - 1)));
}

#[test]
fn subscribers_join_and_leave_at_random_while_messages_flow() {
    let (wd, _names, name) = kit::start("churn", "bcchurn");
    let n = messages();
    let churn: u64 = kit::env_or("SHMQ_BROADCAST_CHURN", 24);
    let mut rng = Rng::new(kit::env_or("SHMQ_SEED", 0x5eed_b0ad));
    let mut tx = Publisher::create(&name, &opts()).expect("create");
    let gap = n / churn;
    let mut subs = Vec::new();
    let mut seq = 0;
    for _ in 0..churn {
        let mode = if rng.range(0, 1) == 0 {
            "lossless"
        } else {
            "lossy"
        };
        let join = if rng.range(0, 1) == 0 {
            "next"
        } else {
            "oldest"
        };
        let s = subscriber(&name, mode)
            .arg("JOIN", join)
            .arg("LEAVE_AFTER", rng.range(1, 3 * gap.max(1)));
        subs.push((mode, s.spawn(&wd)));
        for _ in 0..gap {
            tx.send_timeout(&msg(seq), Duration::from_secs(30))
                .expect("send while subscribers come and go");
            seq += 1;
        }
    }
    // Every subscriber attached while the publisher was there (a late one
    // gets nothing, or what is retained, then the end).
    for (_, p) in &mut subs {
        p.event("ready");
    }
    drop(tx);
    for (mode, p) in &mut subs {
        let (received, lagged, first, last) = done(p);
        if *mode == "lossless" {
            assert_eq!(lagged, 0);
        }
        if let (Some(f), Some(l)) = (first, last) {
            assert_eq!(l - f + 1, received + lagged, "a gap nobody reported");
        }
    }
}

/// A hostile subscriber that scribbles over its own position cannot stop the
/// publisher (a position out of range is ignored), and the honest subscriber
/// gets every message.
#[test]
fn a_hostile_subscribers_position_neither_stops_the_publisher_nor_harms_the_others() {
    let (wd, _names, name) = kit::start("hostile_cursor", "bchost");
    let n = messages().min(50_000);
    let (mut tx, mut hostile, mut honest) = beside_a_hostile(&wd, &name, 7, false);
    for seq in 0..n {
        tx.send_timeout(&msg(seq), Duration::from_secs(30))
            .expect("send beside a hostile subscriber");
    }
    drop(tx);
    let (received, lagged, first, last) = done(&mut honest);
    assert_eq!(
        (received, lagged, first, last),
        (n, 0, Some(0), Some(n - 1))
    );
    hostile.kill_and_reap();
}

/// A hostile subscriber that also scribbles over the ring: the publisher and
/// the honest subscriber get frames that pass the ring's checks or
/// `Corrupted`, never a crash or a hang (the watchdog). The bytes inside a
/// frame are the peers' to spoil (shared fate, docs/RELIABILITY.md §1: only
/// the application's own checksum can tell), so the honest subscriber's
/// content checks may fail; its receive calls fail only as `Corrupted`.
#[test]
fn a_hostile_subscriber_writing_into_the_ring_yields_errors_or_valid_messages() {
    let (wd, _names, name) = kit::start("hostile_ring", "bcring");
    let n = messages().min(50_000);
    let (mut tx, mut hostile, mut honest) = beside_a_hostile(&wd, &name, 11, true);
    let mut sent = 0;
    for seq in 0..n {
        match tx.send_timeout(&msg(seq), Duration::from_secs(30)) {
            Ok(()) => sent += 1,
            Err(Error::Corrupted(_)) => break,
            Err(e) => panic!("send: {e}"),
        }
    }
    drop(tx);
    let d = honest.event("done");
    let failures: Vec<String> = d["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let receive_errors: Vec<&String> = failures
        .iter()
        .filter(|f| f.starts_with("receive:"))
        .collect();
    assert!(
        receive_errors
            .iter()
            .all(|f| f.starts_with("receive: channel corrupted")),
        "{receive_errors:?}"
    );
    honest.expect_success();
    hostile.kill_and_reap();
    eprintln!("sent {sent} of {n}; honest subscriber: {d}");
}
