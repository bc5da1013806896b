//! Reliability catalogue, load and soak tests (LS-01..LS-09), sized by
//! `SOAK_SECS` (default 60: the CI form, split among the scenarios; every test
//! here has `soak` in its name, so nextest runs them one at a time, and they
//! take a lock so that `cargo test` does too).
//!
//! - CI form: `cargo test --release --features failpoints --test soak`
//! - long form: `SOAK_SECS=3600 cargo test --release --features failpoints --test soak -- --nocapture`
//!
//! Every message is a [`kit::record`] (producer, incarnation, sequence, send
//! time, checksum) and every stream is checked by a [`kit::RecordVerifier`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use shmq::{Error, Options, Receiver, Sender};
use shmq_segment::{Expect, Layout, Segment, SegmentOptions};
use shmq_testkit as kit;
use shmq_testkit::kinds::{KindExt, Mpsc, why};
use shmq_testkit::{
    Names, Proc, RawRegion, RecordVerifier, Rng, Spawn, Watchdog, arg, arg_or, emit, mono_ns, num,
    record,
};

/// The whole budget, in seconds (`SOAK_SECS`, default 60).
fn soak_secs() -> f64 {
    std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(60.0)
}

/// This scenario's share of the budget.
fn share(fraction: f64) -> Duration {
    Duration::from_secs_f64((soak_secs() * fraction).max(1.0))
}

/// How much longer than the CI form this run is (1 in CI).
fn scale() -> f64 {
    (soak_secs() / 60.0).max(1.0)
}

fn watchdog(test: &str, run: Duration) -> Watchdog {
    Watchdog::with_limit(test, run * 2 + Duration::from_secs(90))
}

/// What a soak scenario starts with: the [`kit::serial`] lock, its
/// [`watchdog`] for a run of `run`, its names and a first one, `soak-<test>`.
fn start(
    test: &str,
    run: Duration,
) -> (std::sync::MutexGuard<'static, ()>, Watchdog, Names, String) {
    let serial = kit::serial();
    let wd = watchdog(test, run);
    let names = Names::new();
    let name = names.name(&format!("soak-{test}"));
    (serial, wd, names, name)
}

// ---------------------------------------------------------------------------
// Roles

shmq_testkit::roles! {
    role_soak_tx role_soak_rx role_bp_tx role_sweep_tx role_idle_rx role_mem_pressure
}

/// Record sizes: mostly small, sometimes up to `max`.
fn record_size(rng: &mut Rng, max: usize) -> usize {
    if rng.chance(0.9) {
        rng.range(record::MIN_SIZE as u64, 256.min(max as u64)) as usize
    } else {
        rng.range(record::MIN_SIZE as u64, max as u64) as usize
    }
}

/// A soak producer: opens the KIND channel NAME, sends records as ID, incarnation
/// INC, of random sizes up to MAX (default: the channel's maximum), until END_NS;
/// with PROGRESS (a segment name), stores `INC << 40 | committed` into word ID of
/// its region after every send. Reports `sent` and closes.
fn role_soak_tx() {
    kit::by_kind!(arg::<String>("KIND").as_str(), soak_tx_of())
}

/// [`role_soak_tx`] over a channel of kind `K`.
fn soak_tx_of<K: KindExt>() {
    let name: String = arg("NAME");
    let mut tx = Sender::<K>::open(&name, &kit::session()).expect("open");
    let id: u32 = arg("ID");
    let inc: u32 = arg_or("INC", 0);
    let end: u64 = arg("END_NS");
    let max = arg_or("MAX", tx.max_message_len());
    let mut rng = Rng::new(arg::<u64>("SEED"));
    let progress = kit::arg_opt::<String>("PROGRESS").map(|p| {
        Segment::open(
            &p,
            &Expect::default(),
            &SegmentOptions::new().expected_owner(None),
        )
        .expect("progress segment")
    });
    let progress_region = progress.as_ref().map(RawRegion::of);
    emit("ready", json!({ "tid": kit::gettid() }));
    let mut buf = vec![0u8; max];
    let mut seq = 0u64;
    while mono_ns() < end {
        let len = record_size(&mut rng, max);
        let r = record::Rec {
            producer: id,
            incarnation: inc,
            seq,
            sent_ns: mono_ns(),
        };
        record::fill(&mut buf[..len], &r);
        match tx.send(&buf[..len]) {
            Ok(()) => seq += 1,
            Err(e) => {
                emit("send_error", json!({ "why": why(&e), "sent": seq }));
                return;
            }
        }
        if let Some(r) = &progress_region {
            r.word(8 * id as usize)
                .store(u64::from(inc) << 40 | seq, Ordering::Release);
        }
    }
    emit("sent", json!({ "id": id, "inc": inc, "count": seq }));
}

/// A soak consumer: creates the KIND channel NAME (CAP bytes), expects
/// PRODUCERS producers, receives and verifies records until `Disconnected`,
/// recording their latency; samples RSS, descriptors and mappings once WARM_MS
/// has passed and at the end. Reports `done`.
fn role_soak_rx() {
    kit::by_kind!(arg::<String>("KIND").as_str(), soak_rx_of())
}

/// [`role_soak_rx`] over a channel of kind `K`.
fn soak_rx_of<K: KindExt>() {
    let name: String = arg("NAME");
    let o = kit::session()
        .capacity(arg("CAP"))
        .max_producers(arg_or("SLOTS", 16));
    let mut rx = Receiver::<K>::create(&name, &o).expect("create");
    K::expect_producers(&mut rx, arg("PRODUCERS"));
    emit("ready", json!({}));
    let warm_at = Instant::now() + Duration::from_millis(arg("WARM_MS"));
    let mut warm = None;
    let mut v = RecordVerifier::new();
    let mut hist =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut buf = Vec::new();
    let end = loop {
        match rx.recv_into(&mut buf) {
            Ok(()) => {
                let now = mono_ns();
                let r = v.take(&buf);
                let _ = hist.record(now.saturating_sub(r.sent_ns).max(1));
            }
            Err(e) => break e,
        }
        if warm.is_none() && Instant::now() >= warm_at {
            warm = Some((kit::rss_kib(), kit::fd_count(), kit::shm_maps()));
        }
    };
    let (rss0, fds0, maps0) = warm.unwrap_or((0, 0, 0));
    let per: BTreeMap<String, u64> = (0..64)
        .map(|id| (id.to_string(), v.producer_total(id)))
        .filter(|(_, n)| *n > 0)
        .collect();
    emit(
        "done",
        json!({
            "end": why(&end), "total": v.total, "bytes": v.bytes, "per": per,
            "warm": warm.is_some(),
            "rss_kib": [rss0, kit::rss_kib()], "fds": [fds0, kit::fd_count()],
            "maps": [maps0, kit::shm_maps()],
            "p50_us": hist.value_at_quantile(0.5) as f64 / 1e3,
            "p99_us": hist.value_at_quantile(0.99) as f64 / 1e3,
            "p999_us": hist.value_at_quantile(0.999) as f64 / 1e3,
            "max_us": hist.max() as f64 / 1e3,
        }),
    );
}

/// LS-04's producer: fills the SPSC channel NAME with `try_send` until `Full`
/// (reports `full`), then sends COUNT more with blocking `send`; reports `sent`.
fn role_bp_tx() {
    let name: String = arg("NAME");
    let mut tx = shmq::spsc::Sender::open(&name, &kit::session()).expect("open");
    emit("ready", json!({ "tid": kit::gettid() }));
    let mut seq = 0;
    loop {
        match tx.try_send(&kit::message(seq, 0, 256)) {
            Ok(()) => seq += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("try_send: {e:?}"),
        }
    }
    emit("full", json!({ "count": seq }));
    let count: u64 = arg("COUNT");
    for _ in 0..count {
        tx.send(&kit::message(seq, 0, 256)).expect("send");
        seq += 1;
    }
    emit("sent", json!({ "count": seq }));
}

/// Payload byte `i` of the `k`-th message of length `len` in LS-06's sweep.
fn sweep_byte(len: usize, k: u64, i: usize) -> u8 {
    (len as u64 * 7 + k * 13 + i as u64) as u8
}

/// How many messages of payload `len` LS-06 sends: enough to visit every offset
/// of a `cap`-byte area (`cap / gcd(frame, cap)`), at most `limit` (the offsets
/// still drift from one length to the next, so all are visited overall).
fn sweep_count(len: usize, cap: usize, limit: u64) -> u64 {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let f = shmq_ring::frame::frame_len(len);
    ((cap / gcd(f, cap)) as u64 + 1).min(limit)
}

/// LS-06's producer: for every payload length from 0 to the maximum of the
/// SPSC channel NAME, sends messages of that length starting at many offsets of
/// the ring (all of them for short lengths; LIMIT at most), then tries one byte
/// more than the maximum.
fn role_sweep_tx() {
    let name: String = arg("NAME");
    let mut tx = shmq::spsc::Sender::open(&name, &kit::session()).expect("open");
    let max = tx.max_message_len();
    let cap = tx.capacity() as usize;
    let limit: u64 = arg("LIMIT");
    let mut sent = 0u64;
    let mut buf = vec![0u8; max];
    for len in 0..=max {
        for k in 0..sweep_count(len, cap, limit) {
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = sweep_byte(len, k, i);
            }
            tx.send(&buf[..len]).expect("send");
            sent += 1;
        }
    }
    let too_big = tx.send(&vec![0u8; max + 1]);
    emit(
        "sent",
        json!({ "count": sent, "max": max, "too_big": format!("{too_big:?}") }),
    );
}

/// LS-07's consumer: opens the SPSC channel NAME (default strategy), reports
/// `waiting`, then receives COUNT messages and reports `received`.
fn role_idle_rx() {
    let name: String = arg("NAME");
    let mut rx = shmq::spsc::Receiver::open(&name, &kit::session()).expect("open");
    emit("waiting", json!({ "tid": kit::gettid() }));
    let mut buf = Vec::new();
    let mut v = kit::Verifier::new();
    let count: u64 = arg("COUNT");
    let mut first = None;
    for _ in 0..count {
        rx.recv_into(&mut buf).expect("recv");
        first.get_or_insert_with(Instant::now);
        v.take(&buf);
    }
    let burst = first.map_or(0, |t| t.elapsed().as_millis() as u64);
    emit("received", json!({ "count": v.total, "ms": burst }));
}

/// LS-09: moves itself into the memory cgroup whose `cgroup.procs` is PROCS,
/// then, with MODE=big, creates a channel larger than the cgroup's limit (BIG
/// bytes) and reports the result; with MODE=stream, streams records through a
/// SMALL-byte channel between two threads for MS milliseconds and reports.
fn role_mem_pressure() {
    let procs: String = arg("PROCS");
    std::fs::write(&procs, std::process::id().to_string()).expect("join the cgroup");
    let name: String = arg("NAME");
    if arg::<String>("MODE") == "big" {
        let big = shmq::spsc::Sender::create(&name, &kit::session().capacity(arg("BIG")));
        let result = match &big {
            Ok(_) => "created".to_owned(),
            Err(e) => format!("{e:?}"),
        };
        drop(big);
        let _ = Segment::unlink(&name);
        emit("big", json!({ "result": result }));
        return;
    }
    let o = kit::session().capacity(arg("SMALL"));
    let mut rx = shmq::spsc::Receiver::create(&name, &o).expect("small channel");
    let mut tx = shmq::spsc::Sender::open(&name, &o).expect("small channel");
    let end = mono_ns() + arg::<u64>("MS") * 1_000_000;
    let t = std::thread::spawn(move || {
        let mut rng = Rng::new(7);
        let max = tx.max_message_len().min(64 * 1024);
        let mut buf = vec![0u8; max];
        let mut seq = 0;
        while mono_ns() < end {
            let len = record_size(&mut rng, max);
            record::fill(
                &mut buf[..len],
                &record::Rec {
                    producer: 0,
                    incarnation: 0,
                    seq,
                    sent_ns: 0,
                },
            );
            tx.send(&buf[..len]).expect("send");
            seq += 1;
        }
        seq
    });
    let mut v = RecordVerifier::new();
    let mut buf = Vec::new();
    while rx.recv_into(&mut buf).is_ok() {
        v.take(&buf);
    }
    let sent = t.join().expect("producer thread");
    assert_eq!(v.total, sent);
    emit("streamed", json!({ "count": sent }));
}

// ---------------------------------------------------------------------------
// LS-01

/// LS-01: one producer and one consumer process stream records of random sizes
/// up to the maximum through a 64 KiB SPSC channel for 25% of `SOAK_SECS`: no
/// gap, duplicate or checksum failure; the consumer's RSS stays within 1 MiB
/// after warm-up and its descriptors and mappings do not change; latency
/// percentiles are printed.
#[test]
fn soak_ls01_spsc_random_sizes() {
    let run = share(0.25);
    let (_serial, wd, names, name) = start("ls01", run);
    let seed = Rng::seed();
    let mut c = Spawn::role_on("soak_rx", &name)
        .arg("KIND", "spsc")
        .arg("CAP", 1 << 16)
        .arg("PRODUCERS", 1)
        .arg("WARM_MS", (run.as_millis() / 5).max(500))
        .spawn(&wd);
    c.event("ready");
    let mut p = Spawn::role_on("soak_tx", &name)
        .arg("KIND", "spsc")
        .arg("ID", 0)
        .arg("SEED", seed)
        .arg("END_NS", mono_ns() + run.as_nanos() as u64)
        .spawn(&wd);
    let sent = num(&p.event("sent"), "count");
    p.expect_success();
    let ev = c.event("done");
    c.expect_success();
    eprintln!("ls01 (seed {seed}, {run:?}): {ev}");
    assert_eq!(ev["end"], "Closed", "{ev}");
    assert_eq!(num(&ev, "total"), sent, "{ev}");
    assert_eq!(ev["warm"], true, "{ev}");
    let rss = &ev["rss_kib"];
    let growth = rss[1].as_i64().unwrap() - rss[0].as_i64().unwrap();
    assert!(
        growth.abs() <= 1024,
        "RSS moved {growth} KiB after warm-up: {ev}"
    );
    assert_eq!(ev["fds"][0], ev["fds"][1], "descriptors: {ev}");
    assert_eq!(ev["maps"][0], ev["maps"][1], "mappings: {ev}");
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// LS-02

/// LS-02: eight producer processes into one consumer through a 4 KiB MPSC ring
/// (always wrapping, mostly full) for 15% of `SOAK_SECS`: every producer's
/// received total equals what it reports having sent; every record verifies.
#[test]
fn soak_ls02_mpsc_eight_producers_small_ring() {
    let run = share(0.15);
    let (_serial, wd, names, name) = start("ls02", run);
    let seed = Rng::seed();
    let mut rng = Rng::new(seed);
    let mut c = Spawn::role_on("soak_rx", &name)
        .arg("KIND", "mpsc")
        .arg("CAP", 4096)
        .arg("PRODUCERS", 8)
        .arg("WARM_MS", 500)
        .spawn(&wd);
    c.event("ready");
    let end = mono_ns() + run.as_nanos() as u64;
    let mut ps: Vec<Proc> = (0..8)
        .map(|id| {
            Spawn::role_on("soak_tx", &name)
                .arg("KIND", "mpsc")
                .arg("ID", id)
                .arg("SEED", rng.next_u64())
                .arg("END_NS", end)
                .spawn(&wd)
        })
        .collect();
    let mut sent = BTreeMap::new();
    for p in &mut ps {
        let ev = p.event("sent");
        p.expect_success();
        sent.insert(num(&ev, "id").to_string(), num(&ev, "count"));
    }
    let ev = c.event("done");
    c.expect_success();
    eprintln!("ls02 (seed {seed}, {run:?}): sent {sent:?}; consumer {ev}");
    assert_eq!(ev["per"], json!(sent), "per-producer totals");
    assert!(
        matches!(ev["end"].as_str(), Some("Closed")),
        "every producer closed: {ev}"
    );
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// LS-03

/// What the chaos loop knows about one producer slot.
struct Chaos {
    proc: Proc,
    inc: u32,
    stopped_at: Option<Instant>,
}

/// LS-03 (chaos: 30% of `SOAK_SECS`): LS-02's eight producers while, every
/// 0.1–0.5 s (0.5–5 s in runs of 10 minutes or more), a random producer is
/// SIGKILLed (and restarted as the next incarnation), SIGSTOPped, or SIGCONTed.
/// The consumer (this process) never hangs; every record committed before a kill
/// arrives exactly once (the producer's last published count, or one more for
/// the send in flight), a record in flight arrives whole or not at all
/// (checksums), survivors' totals match exactly; `/dev/shm` and this process's
/// descriptors are back to their baseline at the end.
#[test]
fn soak_ls03_chaos_kill_stop_continue_restart() {
    let _serial = kit::serial();
    let run = share(0.30);
    let wd = watchdog("ls03", run);
    let names = Names::new();
    kit::warm_up_fork_guard();
    let (fds0, maps0) = (kit::fd_count(), kit::shm_maps());
    let shm0 = kit::shm_entries("t-soak-ls03");
    let name = names.name("soak-ls03");
    let progress_name = names.name("soak-ls03-progress");
    let progress = Segment::create(
        &progress_name,
        &Layout {
            kind: 0x50,
            endpoints: 1,
            data_len: 4096,
            ..Layout::default()
        },
        &SegmentOptions::new(),
    )
    .expect("progress segment")
    .publish()
    .expect("publish");
    let seed = Rng::seed();
    let mut rng = Rng::new(seed);
    let (lo, hi) = if soak_secs() >= 600.0 {
        (500, 5000)
    } else {
        (100, 500)
    };
    eprintln!("ls03: seed {seed}, {run:?}, chaos every {lo}-{hi} ms");
    let o = kit::session().capacity(4096).max_producers(16);
    let rx = Receiver::<Mpsc>::create(&name, &o).expect("create");
    let end = mono_ns() + run.as_nanos() as u64;
    let spawn = |id: u32, inc: u32, rng: &mut Rng| {
        let mut p = Spawn::role_on("soak_tx", &name)
            .arg("KIND", "mpsc")
            .arg("ID", id)
            .arg("INC", inc)
            .arg("SEED", rng.next_u64())
            .arg("END_NS", end)
            .arg("PROGRESS", &progress_name)
            .spawn(&wd);
        p.event("ready");
        p
    };
    let stop = AtomicBool::new(false);
    let consumer = std::thread::scope(|s| {
        let stop_ref = &stop;
        let consumer = s.spawn(move || {
            let mut rx = rx;
            Mpsc::expect_producers(&mut rx, 8);
            let mut v = RecordVerifier::new();
            let quiet_since = std::cell::Cell::new(Instant::now());
            let end = kit::receive_through_timeouts(
                |b| rx.recv_into_timeout(b, Duration::from_millis(500)),
                |m| {
                    v.take(m);
                    quiet_since.set(Instant::now());
                },
                || -> Option<std::convert::Infallible> {
                    assert!(
                        stop_ref.load(Ordering::Relaxed)
                            || quiet_since.get().elapsed() < Duration::from_secs(20),
                        "the consumer received nothing for 20 s"
                    );
                    None
                },
            );
            let Ok(end) = end;
            let reclaimed = Mpsc::reclaimed(&mut rx);
            (v, end, reclaimed)
        });
        let mut slots: Vec<Chaos> = (0..8)
            .map(|id| Chaos {
                proc: spawn(id, 0, &mut rng),
                inc: 0,
                stopped_at: None,
            })
            .collect();
        let mut expected: Vec<(u32, u32, u64, bool)> = Vec::new(); // id, inc, count, exact
        let (mut kills, mut stops, mut conts) = (0, 0, 0);
        while mono_ns() + 1_500_000_000 < end {
            std::thread::sleep(Duration::from_millis(rng.range(lo, hi)));
            let id = rng.range(0, 7) as usize;
            // Nobody stays stopped longer than a second or two.
            for sl in slots.iter_mut() {
                if sl
                    .stopped_at
                    .is_some_and(|t| t.elapsed() > Duration::from_millis(hi))
                {
                    sl.proc.signal(Signal::SIGCONT);
                    sl.stopped_at = None;
                    conts += 1;
                }
            }
            let sl = &mut slots[id];
            match rng.range(0, 9) {
                0..=3 => {
                    sl.proc.signal(Signal::SIGKILL);
                    sl.proc.wait();
                    let w = RawRegion::of(&progress)
                        .word(8 * id)
                        .load(Ordering::Acquire);
                    let committed = if (w >> 40) as u32 == sl.inc {
                        w & ((1 << 40) - 1)
                    } else {
                        0
                    };
                    expected.push((id as u32, sl.inc, committed, false));
                    kills += 1;
                    sl.inc += 1;
                    sl.stopped_at = None;
                    sl.proc = spawn(id as u32, sl.inc, &mut rng);
                }
                4..=6 if sl.stopped_at.is_none() => {
                    sl.proc.signal(Signal::SIGSTOP);
                    sl.stopped_at = Some(Instant::now());
                    stops += 1;
                }
                _ => {
                    if sl.stopped_at.take().is_some() {
                        sl.proc.signal(Signal::SIGCONT);
                        conts += 1;
                    }
                }
            }
        }
        for sl in slots.iter_mut() {
            if sl.stopped_at.take().is_some() {
                sl.proc.signal(Signal::SIGCONT);
            }
        }
        for (id, sl) in slots.iter_mut().enumerate() {
            let ev = sl.proc.event("sent");
            sl.proc.expect_success();
            expected.push((id as u32, sl.inc, num(&ev, "count"), true));
        }
        stop.store(true, Ordering::Relaxed);
        let (v, end_err, reclaimed) = consumer.join().expect("consumer thread");
        eprintln!(
            "ls03: {kills} kills, {stops} stops, {conts} continues; {} records, {} reclaimed \
             claims; ended {}",
            v.total,
            reclaimed,
            why(&end_err)
        );
        (v, end_err, expected)
    });
    let (v, end_err, expected) = consumer;
    assert!(matches!(end_err, Error::Disconnected(_)), "{end_err:?}");
    let mut problems = Vec::new();
    for (id, inc, count, exact) in expected {
        let got = v.count(id, inc);
        let ok = if exact {
            got == count
        } else {
            got == count || got == count + 1
        };
        if !ok {
            problems.push(format!(
                "producer {id} incarnation {inc}: {} {count}, delivered {got}",
                if exact {
                    "sent"
                } else {
                    "committed (last published)"
                }
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "ls03 (seed {seed}):\n{}",
        problems.join("\n")
    );
    drop(progress);
    Segment::unlink(&progress_name).expect("unlink progress");
    kit::remove_stale(&name);
    assert_eq!(
        kit::shm_entries("t-soak-ls03"),
        shm0,
        "/dev/shm after the chaos"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while kit::fd_count() != fds0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10)); // output readers finishing
    }
    assert_eq!(kit::fd_count(), fds0, "descriptors: {:?}", kit::fd_table());
    assert_eq!(kit::shm_maps(), maps0, "shared mappings");
    assert!(kit::zombie_children().is_empty(), "zombies");
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// LS-04

/// Creates NAME's end with `create` (a 64 KiB ring) and spawns ROLE on the
/// other end for COUNT messages.
fn end_and_role<T>(
    wd: &Watchdog,
    name: &str,
    create: fn(&str, &Options) -> shmq::Result<T>,
    role: &str,
    count: u64,
) -> (T, Proc) {
    let end = create(name, &kit::session().capacity(1 << 16)).expect("create");
    let p = Spawn::role_on(role, name).arg("COUNT", count).spawn(wd);
    (end, p)
}

/// LS-04 (10% of `SOAK_SECS`): a producer that fills the ring sees `Full` from
/// `try_send`; blocked in `send` (default strategy: spin, then sleep) it uses
/// under 5% of a core while the consumer does not read; then the consumer reads
/// slowly, then at full speed, and gets every message.
#[test]
fn soak_ls04_backpressure_blocked_producer_sleeps() {
    let run = share(0.10);
    let (_serial, wd, names, name) = start("ls04", run);
    let count = 20_000u64;
    let (mut rx, mut p) = end_and_role(&wd, &name, shmq::spsc::Receiver::create, "bp_tx", count);
    let tid = num(&p.event("ready"), "tid") as i32;
    let filled = num(&p.event("full"), "count");
    p.assert_in_futex(tid, "the producer never slept");
    let blocked = run / 2;
    let (cpu0, t0) = (kit::cpu_ns(p.pid()), Instant::now());
    std::thread::sleep(blocked);
    let cpu = (kit::cpu_ns(p.pid()) - cpu0) as f64 / t0.elapsed().as_nanos() as f64;
    // Slow consumer for the rest of the share, then full speed.
    let mut v = kit::Verifier::new();
    let mut buf = Vec::new();
    let slow_until = Instant::now() + run / 2;
    let (slow_cpu0, slow_t0) = (kit::cpu_ns(p.pid()), Instant::now());
    while Instant::now() < slow_until && v.total < filled + count {
        rx.recv_into(&mut buf).expect("recv");
        v.take(&buf);
        if v.total.is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // (The producer may have finished and exited during the slow phase.)
    let slow_cpu = kit::cpu_ns(p.pid())
        .checked_sub(slow_cpu0)
        .map(|d| d as f64 / slow_t0.elapsed().as_nanos() as f64);
    let end = loop {
        match rx.recv_into_timeout(&mut buf, Duration::from_secs(10)) {
            Ok(()) => {
                v.take(&buf);
            }
            Err(e) => break e,
        }
    };
    let sent = num(&p.event("sent"), "count");
    p.expect_success();
    eprintln!(
        "ls04: {filled} messages filled the ring; blocked producer used {:.2}% of a core over \
         {blocked:?}; {} while the consumer read slowly; {} received",
        cpu * 100.0,
        slow_cpu.map_or("(it had finished)".to_owned(), |c| format!(
            "{:.1}%",
            c * 100.0
        )),
        v.total
    );
    assert!(
        cpu < 0.05,
        "a blocked producer used {:.1}% of a core",
        cpu * 100.0
    );
    assert_eq!(v.total, sent);
    kit::kinds::assert_closed(&end);
    drop(rx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// LS-05

/// LS-05: positions start just below the 64-bit wrap and the futex words just
/// below the 32-bit wrap (set through a heap ring's region: the facade cannot
/// choose them), then 10^6 messages (times `SOAK_SECS / 60`) between two threads
/// with the Park strategy, so the wake-ups bump the futex words across their wrap
/// too: nothing lost, duplicated or damaged, SPSC and MPSC.
#[test]
fn soak_ls05_positions_and_futex_words_across_their_wrap() {
    use shmq_ring::{InProcess, Region, WaitConfig, WaitStrategy, mpsc, spsc};
    use std::sync::Arc;
    let _serial = kit::serial();
    let n = (1_000_000.0 * scale()) as u64;
    let cap = 4096usize;
    let cfg = WaitConfig::from(WaitStrategy::Park);
    let start = (u64::MAX - 64 * 1024) & !7; // 8-aligned, 64 KiB below the wrap
    let futex_near_wrap = |r: &Region| {
        // data_seq and space_seq (low halves of the words at 256 and 264).
        assert!(r.store_word(256, u64::from(u32::MAX - 2)));
        assert!(r.store_word(264, u64::from(u32::MAX - 2)));
    };
    let check = |seq: u64, m: &[u8]| {
        assert!(m.len() >= 8, "message {seq} too short");
        assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), seq, "order");
        assert!(
            m[8..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (seq as usize + i) as u8),
            "message {seq} damaged"
        );
    };
    let make = |seq: u64| -> Vec<u8> {
        let len = 8 + (seq % 97) as usize;
        let mut m = vec![0u8; len];
        m[..8].copy_from_slice(&seq.to_le_bytes());
        for (i, b) in m[8..].iter_mut().enumerate() {
            *b = (seq as usize + i) as u8;
        }
        m
    };
    // SPSC.
    let region = Region::heap(spsc::region_len(cap));
    let geometry = shmq_ring::Geometry::spsc(cap as u64).unwrap();
    spsc::init(&region, geometry, start).unwrap();
    futex_near_wrap(&region);
    let mut tx = spsc::Producer::attach(&region, geometry, cfg, Arc::new(InProcess)).unwrap();
    let mut rx = spsc::Consumer::attach(&region, geometry, cfg, Arc::new(InProcess)).unwrap();
    let t = std::thread::spawn(move || {
        for seq in 0..n {
            tx.send(&make(seq)).unwrap();
        }
    });
    let mut buf = Vec::new();
    for seq in 0..n {
        rx.recv_into(&mut buf).unwrap();
        check(seq, &buf);
    }
    t.join().unwrap();
    let head = region.load_word(128).unwrap();
    assert!(
        head < start,
        "the positions did not cross the 64-bit wrap ({head:#x})"
    );
    let seqs = (
        region.load_word(256).unwrap() as u32,
        region.load_word(264).unwrap() as u32,
    );
    eprintln!("ls05 spsc: {n} messages; head {head:#x}; futex words now {seqs:?}");
    // MPSC: two producers.
    let region = Region::heap(mpsc::region_len(cap, 2));
    mpsc::init(
        &region,
        shmq_ring::Geometry::mpsc(cap as u64, 2).unwrap(),
        start,
    )
    .unwrap();
    futex_near_wrap(&region);
    let mut rx = mpsc::Consumer::attach(
        &region,
        shmq_ring::Geometry::mpsc(cap as u64, 2).unwrap(),
        cfg,
        Arc::new(InProcess),
    )
    .unwrap();
    let producers: Vec<_> = (0..2u16)
        .map(|slot| {
            let mut tx = mpsc::Producer::attach(
                &region,
                shmq_ring::Geometry::mpsc(cap as u64, 2).unwrap(),
                slot,
                cfg,
                Arc::new(InProcess),
            )
            .unwrap();
            std::thread::spawn(move || {
                for seq in 0..n / 2 {
                    let mut m = make(seq);
                    m[7] = slot as u8; // seq < 2^56: the top byte names the producer
                    tx.send(&m).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u64; 2];
    for _ in 0..n / 2 * 2 {
        rx.recv_into(&mut buf).unwrap();
        let slot = buf[7] as usize;
        let mut m = buf.clone();
        m[7] = 0;
        check(next[slot], &m);
        next[slot] += 1;
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(next, [n / 2, n / 2]);
    let head = region.load_word(128).unwrap();
    assert!(
        head < start,
        "the MPSC positions did not cross the wrap ({head:#x})"
    );
    eprintln!("ls05 mpsc: {} messages; head {head:#x}", n / 2 * 2);
}

// ---------------------------------------------------------------------------
// LS-06

/// LS-06 across processes (the exhaustive in-process sweep, every length at
/// every offset, is `crates/ring/tests/spsc.rs::every_size_at_every_offset_wraps_intact`
/// and its MPSC twin): a producer process sends every payload length from 0 to
/// the maximum of a 4 KiB channel, each at up to 24 offsets (every offset for
/// lengths whose frames visit fewer; 10x that with `SOAK_SECS=600`), so every
/// wrap and padding case and frames ending exactly at the end of the area
/// occur; one byte more than the maximum is a typed error.
#[test]
fn soak_ls06_every_size_at_every_offset_across_processes() {
    let (_serial, wd, names, name) = start("ls06", Duration::from_secs(60));
    let cap = 4096usize;
    let mut rx =
        shmq::spsc::Receiver::create(&name, &kit::session().capacity(cap as u64)).expect("create");
    let max = rx.max_message_len();
    let limit = (24.0 * scale()) as u64;
    let mut p = Spawn::role_on("sweep_tx", &name)
        .arg("LIMIT", limit)
        .spawn(&wd);
    let mut buf = Vec::new();
    let mut total = 0u64;
    let mut offsets = std::collections::BTreeSet::new();
    let mut pos = 0u64;
    for len in 0..=max {
        for k in 0..sweep_count(len, cap, limit) {
            offsets.insert(pos % cap as u64);
            let f = shmq_ring::frame::frame_len(len) as u64;
            if pos % cap as u64 + f > cap as u64 {
                pos += cap as u64 - pos % cap as u64; // the padding before a wrapped frame
            }
            pos += f;
            rx.recv_into_timeout(&mut buf, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("length {len}, message {k}: {e:?}"));
            assert_eq!(buf.len(), len, "message {k} of length {len}");
            if let Some(i) = (0..len).find(|&i| buf[i] != sweep_byte(len, k, i)) {
                panic!("length {len}, message {k}: byte {i} damaged");
            }
            total += 1;
        }
    }
    let ev = p.event("sent");
    p.expect_success();
    assert_eq!(num(&ev, "count"), total);
    assert!(
        ev["too_big"]
            .as_str()
            .is_some_and(|s| s.contains("MessageTooLarge")),
        "one byte over the maximum: {ev}"
    );
    assert_eq!(
        offsets.len(),
        cap / 8,
        "every 8-byte offset starts some message"
    );
    eprintln!(
        "ls06: {total} messages, every length 0..={max}, at up to {limit} offsets each, all \
         {} offsets of a {cap}-byte ring",
        offsets.len()
    );
    drop(rx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// LS-07

/// LS-07 (5% of `SOAK_SECS` idle; the catalogue's 10 minutes with
/// `SOAK_SECS=12000`): a consumer waits in a blocking receive with nothing to
/// read, using next to no CPU, then gets a burst of 10^5 messages (times
/// `SOAK_SECS / 60`) without a missed wake-up.
#[test]
fn soak_ls07_idle_then_burst() {
    let idle = share(0.05);
    let (_serial, wd, names, name) = start("ls07", idle);
    let burst = (100_000.0 * scale()) as u64;
    let (tx, mut c) = end_and_role(&wd, &name, shmq::spsc::Sender::create, "idle_rx", burst);
    let mut tx = tx;
    let tid = num(&c.event("waiting"), "tid") as i32;
    c.assert_in_futex(tid, "the consumer never slept");
    let (cpu0, t0) = (kit::cpu_ns(c.pid()), Instant::now());
    std::thread::sleep(idle);
    let cpu = (kit::cpu_ns(c.pid()) - cpu0) as f64 / t0.elapsed().as_nanos() as f64;
    let mut buf = vec![0u8; 64];
    for seq in 0..burst {
        kit::msg::fill(&mut buf, seq, 0);
        tx.send(&buf).expect("send");
    }
    let ev = c.event("received");
    c.expect_success();
    eprintln!(
        "ls07: idle {idle:?} at {:.3}% of a core, then {burst} messages in {} ms",
        cpu * 100.0,
        num(&ev, "ms")
    );
    assert!(
        cpu < 0.02,
        "an idle consumer used {:.2}% of a core",
        cpu * 100.0
    );
    assert_eq!(num(&ev, "count"), burst);
    drop(tx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// LS-08

/// LS-08: 256 channels alive at once (both ends attached), then 2,000
/// create/use/destroy cycles (times `SOAK_SECS / 60`; the catalogue's 10^5 with
/// `SOAK_SECS=3000`): no `EMFILE`, and descriptors, mappings and `/dev/shm`
/// entries back to their baseline.
#[test]
fn soak_ls08_many_rings_churn() {
    use shmq::spsc::{Receiver, Sender};
    let _serial = kit::serial();
    let names = Names::new();
    let o = kit::session().capacity(4096);
    kit::warm_up_fork_guard();
    let tag = format!("t-soak-ls08-{:x}", Rng::seed() & 0xffff_ffff);
    let _cleanup = kit::PrefixCleanup(tag.clone());
    let prefix = tag.as_str();
    let (fds0, maps0) = (kit::fd_count(), kit::shm_maps());
    let shm0 = kit::shm_entries(&tag);
    let mut alive = Vec::new();
    let mut buf = Vec::new();
    // A new channel with both ends, `what` and `i` carried through it once.
    let mut channel = |what: &str, i: u64| {
        let n = shmq::unique_name(prefix).expect("name");
        let mut rx = Receiver::create(&n, &o).unwrap_or_else(|e| panic!("{what} {i}: {e:?}"));
        let mut tx = Sender::open(&n, &o).unwrap_or_else(|e| panic!("{what} {i}: {e:?}"));
        tx.send(&i.to_le_bytes()).unwrap();
        rx.recv_into(&mut buf).unwrap();
        assert_eq!(buf, i.to_le_bytes());
        (n, tx, rx)
    };
    for i in 0..256u64 {
        let (_, tx, rx) = channel("channel", i);
        alive.push((tx, rx));
    }
    assert_eq!(kit::shm_entries(&tag).len(), 256 + shm0.len());
    let cycles = (2000.0 * scale()) as u64;
    for c in 0..cycles {
        let (n, tx, rx) = channel("cycle", c);
        drop((tx, rx));
        assert!(!kit::shm_path(&n).exists(), "cycle {c}: {n} left behind");
    }
    drop(alive);
    assert_eq!(kit::shm_entries(&tag), shm0, "/dev/shm after the churn");
    assert_eq!(kit::fd_count(), fds0, "descriptors");
    assert_eq!(kit::shm_maps(), maps0, "mappings");
    eprintln!("ls08: 256 channels alive, then {cycles} create/destroy cycles: no growth");
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// LS-09

/// The memory cgroup this process is in, if it can make a child group there:
/// `(directory, limit file, procs file)`.
fn memory_cgroup() -> Result<std::path::PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    // cgroup v1 memory controller, then cgroup v2.
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrls.split(',').any(|c| c == "memory") {
            let dir =
                std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            if dir.join("memory.limit_in_bytes").exists() {
                return Ok(dir);
            }
        }
        if ctrls.is_empty() && line.starts_with("0::") {
            let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            if dir.join("memory.max").exists() || dir.join("cgroup.controllers").exists() {
                return Ok(dir);
            }
        }
    }
    Err("no writable memory cgroup found".to_owned())
}

/// LS-09 (short form): inside a memory cgroup limited to 48 MiB (cgroup v1 or
/// v2), (1) a channel of 64 MiB, larger than the limit, and (2) a 4 MiB channel
/// streaming records for 5% of `SOAK_SECS`. Neither process ever dies of
/// SIGBUS: space is reserved at creation (`posix_fallocate`), so the 64 MiB
/// channel fails there, with a typed error or, as this kernel does when the
/// cgroup runs out, by the OOM killer (SIGKILL; reported, not hidden); the
/// stream completes. Skips with a reason where cgroups cannot be made.
#[test]
fn soak_ls09_memory_pressure_in_a_cgroup() {
    use std::os::unix::process::ExitStatusExt;
    let _serial = kit::serial();
    if !kit::root_or_skip("ls09: needs root to make a cgroup") {
        return;
    }
    let parent = match memory_cgroup() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIP ls09: {why}");
            return;
        }
    };
    let dir = parent.join(format!("shmq-ls09-{:x}", Rng::seed() & 0xffff_ffff));
    if let Err(e) = std::fs::create_dir(&dir) {
        eprintln!("SKIP ls09: cannot make {}: {e}", dir.display());
        return;
    }
    struct Rmdir(std::path::PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Rmdir(dir.clone());
    let limit: u64 = 48 << 20;
    let v1 = dir.join("memory.limit_in_bytes");
    let set = if v1.exists() {
        std::fs::write(&v1, limit.to_string())
    } else {
        std::fs::write(dir.join("memory.max"), limit.to_string())
    };
    if let Err(e) = set {
        eprintln!("SKIP ls09: cannot set the memory limit: {e}");
        return;
    }
    let run = share(0.05);
    let wd = watchdog("ls09", run);
    let names = Names::new();
    let mut outcomes = Vec::new();
    for mode in ["big", "stream"] {
        let mut c = Spawn::role("mem_pressure")
            .arg("PROCS", dir.join("cgroup.procs").display())
            .arg("MODE", mode)
            .arg("NAME", names.name("soak-ls09"))
            .arg("BIG", 64u64 << 20)
            .arg("SMALL", 4u64 << 20)
            .arg("MS", run.as_millis())
            .spawn(&wd);
        let ev = c.try_event(
            if mode == "big" { "big" } else { "streamed" },
            run + Duration::from_secs(30),
        );
        let status = c.wait();
        eprintln!("ls09 {mode} (limit {limit}): {ev:?}, exit {status:?}");
        assert_ne!(
            status.signal(),
            Some(libc::SIGBUS),
            "{mode}: SIGBUS under memory pressure\n{}",
            c.log()
        );
        match (mode, status.signal()) {
            ("big", Some(libc::SIGKILL)) => outcomes.push("big: OOM-killed at creation"),
            ("big", _) => {
                assert!(status.success(), "{status:?}\n{}", c.log());
                let r = ev.expect("big")["result"].as_str().unwrap_or("").to_owned();
                assert!(
                    r.contains("NoSpace") || r.contains("Os"),
                    "a channel larger than the cgroup's limit: {r}"
                );
                outcomes.push("big: typed error at creation");
            }
            _ => {
                assert!(
                    status.success(),
                    "the 4 MiB stream: {status:?}\n{}",
                    c.log()
                );
                assert!(ev.is_some());
                outcomes.push("stream: completed");
            }
        }
    }
    eprintln!("ls09: {outcomes:?}");
    for e in kit::shm_entries("t-soak-ls09") {
        let _ = std::fs::remove_file(kit::shm_path(&e));
    }
    names.assert_clean();
}
