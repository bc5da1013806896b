//! Consumers restarted on named channels, across real processes (issue 12):
//! a named channel is a queue, so a consumer may be killed at any moment and
//! a fresh one takes over where it stopped, while the producers keep sending.
//!
//! - **Restarts** (`*_killed_repeatedly_*`): the consumer of a named SPSC
//!   channel (one example producer) and of a named MPSC channel (three example
//!   producers) is SIGKILLed mid-stream `SHMQ_RESTART_KILLS` times (default
//!   50, the count, one to two seconds per test in release; a long
//!   run: `SHMQ_RESTART_KILLS=500`), a fresh recording consumer each time, and
//!   finally the example `consumer --resume` takes the rest. Every consumer
//!   life records what it received in a file (one `write(2)` per message, so
//!   the record survives the kill). Even lives are killed at a chosen message,
//!   holding its guard or right after copying it (the event mechanism: the
//!   role reports the message and hangs); odd ones at a random moment
//!   mid-stream. With `recv()` (the message recorded while its guard is held)
//!   the union of all records is every message at least once, and a message
//!   appears twice only as the last record of a killed life and the first of
//!   the next one: at most one redelivery per kill, and exactly the held one
//!   at each kill holding a guard. With `recv_into` (copied, released, then
//!   recorded) no message appears twice, each copied-then-killed message is
//!   missing, and the losses can be matched to distinct kills (SPSC: exactly
//!   at the kill's boundary). The duplicates or losses are counted and printed
//!   (`--nocapture`).
//! - **Delivery guarantees, deterministically**: a consumer that reports the
//!   message whose `recv()` guard it holds and is killed there has that same
//!   message delivered first to the next consumer (at least once); one killed
//!   after `recv_into` copied a message does not get it again: the next
//!   consumer's first message is the following one (at most once).
//! - **Queue**: a sender keeps sending into a named channel whose consumer has
//!   closed (no error), `try_send` says `Full` once the ring is full, `send`
//!   then waits asleep for room, and a new consumer drains everything in order.
//! - **The example programs**: `producer` goes on through a consumer's close
//!   and a `consumer --resume` takes over (first_seq, exit 0; without
//!   `--resume` the same take-over is a verification failure);
//!   `producer --exit-on-disconnect` exits with status 2 when its consumer
//!   closes or dies.
//!
//! Run: `cargo test --release --features failpoints --test restart`. Long form:
//! `SHMQ_RESTART_KILLS=500 cargo test --release --features failpoints --test restart -- --nocapture`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use shmq::{Error, Options, PeerState, Receiver, Sender};
use shmq_testkit as kit;
use shmq_testkit::kinds::{KindExt, Mpsc, Spsc};
use shmq_testkit::{Proc, Rng, Spawn, Verifier, Watchdog, arg, arg_opt, emit, hang, msg, num};

shmq_testkit::roles! { role_consumer role_queue_tx }

/// Bytes per message, in the examples' format ([`msg`]).
const SIZE: usize = 64;

/// Options of a channel here: capacity CAP (bytes) and, for MPSC, the example
/// programs' producer slots (so that the examples can open it).
fn options<K: KindExt>() -> Options {
    channel_options::<K>(arg("CAP"))
}

/// As [`options`], with capacity `cap`.
fn channel_options<K: KindExt>(cap: u64) -> Options {
    let o = Options::new().capacity(cap);
    if K::MPSC {
        o.max_producers(msg::EXAMPLE_PRODUCERS)
    } else {
        o
    }
}

// ---------------------------------------------------------------------------
// Roles

/// A consumer taking over the KIND channel NAME (created or opened with
/// capacity CAP) mid-stream. It receives with FORM: `guard` (`recv`; the
/// message is recorded while its guard is held, then the guard drops) or
/// `copy` (`recv_into`: copied and released, then recorded). Each message is
/// checked (every byte; per producer, consecutive from its first) and recorded
/// in the file RECORD as (producer `u32`, 4 zero bytes, seq `u64`), little-endian (16 bytes: none straddles a page), with one
/// `write(2)`. Reports `ready`, then `first` (producer, seq) of its first
/// message, `mark` after MARK messages (and goes on, for at most AFTER_MARK
/// more, default 5,000: then it hangs, holding nothing); with HOLD=k, at its
/// k-th message reports (producer, seq) and hangs until killed: `holding` in
/// the guard form (recorded, the guard held), `copied` in the copy form
/// (copied and released, not recorded); with
/// STOP_AFTER=k, closes after k messages and reports `closed`; with EXPECT=n,
/// `expect_producers(n)` and receives until `Disconnected`, then reports
/// `done` with the count.
fn role_consumer() {
    kit::by_kind!(arg::<String>("KIND").as_str(), consumer_of())
}

/// [`role_consumer`] over a channel of kind `K`.
fn consumer_of<K: KindExt>() {
    let name: String = arg("NAME");
    let mut rx = Receiver::<K>::create_or_open(&name, &options::<K>())
        .unwrap_or_else(|e| panic!("receiver {name}: {e:?}"));
    let expect: Option<u32> = arg_opt("EXPECT");
    if let Some(n) = expect {
        rx.expect_producers(n).expect("expect_producers");
    }
    let guard = match arg::<String>("FORM").as_str() {
        "guard" => true,
        "copy" => false,
        other => panic!("unknown FORM {other}"),
    };
    let mut record = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(arg::<String>("RECORD"))
        .expect("open the record file");
    let mut write = |h: msg::Header| {
        // 16 bytes, so that no record straddles a page: a write the kill
        // interrupts between two pages would leave half a record (a 12-byte
        // record did: 8 bytes of one, in 1 of 14 runs on 2026-12-04).
        let mut r = [0u8; RECORD_LEN];
        r[..4].copy_from_slice(&h.producer.to_le_bytes());
        r[8..].copy_from_slice(&h.seq.to_le_bytes());
        record.write_all(&r).expect("record");
    };
    let (mark, hold, stop) = (
        arg_opt::<u64>("MARK"),
        arg_opt::<u64>("HOLD"),
        arg_opt::<u64>("STOP_AFTER"),
    );
    let after_mark: u64 = kit::arg_or("AFTER_MARK", 5_000);
    let header = |h: msg::Header| json!({ "producer": h.producer, "seq": h.seq });
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut n = 0u64;
    let mut buf = Vec::new();
    emit("ready", json!({}));
    loop {
        let received = if guard {
            rx.recv().map(|g| {
                let h = msg::check(&g).unwrap_or_else(|e| panic!("message {n}: {e}"));
                write(h);
                if hold == Some(n + 1) {
                    emit("holding", header(h));
                    let _held = g;
                    hang();
                }
                drop(g);
                h
            })
        } else {
            rx.recv_into(&mut buf).map(|()| {
                let h = msg::check(&buf).unwrap_or_else(|e| panic!("message {n}: {e}"));
                if hold == Some(n + 1) {
                    emit("copied", header(h));
                    hang();
                }
                write(h);
                h
            })
        };
        let h = match received {
            Ok(h) => h,
            Err(Error::Disconnected(_)) if expect.is_some() => break,
            Err(e) => panic!("receive after {n} messages: {e:?}"),
        };
        n += 1;
        let want = next.entry(h.producer).or_insert(h.seq);
        assert_eq!(
            h.seq, *want,
            "producer {}: message {} where {} was due",
            h.producer, h.seq, *want
        );
        *want += 1;
        if n == 1 {
            emit("first", header(h));
        }
        if mark == Some(n) {
            emit("mark", json!({}));
        }
        if mark.is_some_and(|m| n >= m + after_mark) {
            hang();
        }
        if stop == Some(n) {
            drop(rx);
            emit("closed", json!({ "count": n }));
            return;
        }
    }
    emit("done", json!({ "count": n }));
}

/// A sender on the KIND channel NAME (capacity CAP): sends FIRST messages,
/// reports `first_sent`, waits until its consumer is `Closed`, then fills the
/// ring with `try_send` until `Full` (any other error fails) and reports `full`
/// (the next seq, the peer state, its thread id); then `send`s up to TOTAL
/// messages in all (waiting for room: no consumer is attached), reports
/// `sent` and closes.
fn role_queue_tx() {
    kit::by_kind!(arg::<String>("KIND").as_str(), queue_tx_of())
}

/// [`role_queue_tx`] over a channel of kind `K`.
fn queue_tx_of<K: KindExt>() {
    let name: String = arg("NAME");
    let mut tx = Sender::<K>::open(&name, &options::<K>()).expect("sender");
    let (first, total): (u64, u64) = (arg("FIRST"), arg("TOTAL"));
    let mut seq = 0;
    while seq < first {
        tx.send(&kit::message(seq, 0, SIZE)).expect("send");
        seq += 1;
    }
    emit("first_sent", json!({}));
    let mut peer = tx.peer().expect("peer");
    while peer != PeerState::Closed {
        peer = tx
            .peer_changed(peer, kit::EVENT_TIMEOUT)
            .expect("peer_changed");
    }
    loop {
        match tx.try_send(&kit::message(seq, 0, SIZE)) {
            Ok(()) => seq += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("try_send {seq} with the consumer closed: {e:?}"),
        }
    }
    let peer = format!("{:?}", tx.peer().expect("peer"));
    emit(
        "full",
        json!({ "seq": seq, "peer": peer, "tid": kit::gettid() }),
    );
    while seq < total {
        tx.send(&kit::message(seq, 0, SIZE))
            .unwrap_or_else(|e| panic!("send {seq} with no consumer: {e:?}"));
        seq += 1;
    }
    emit("sent", json!({ "count": seq }));
}

// ---------------------------------------------------------------------------
// Records

/// The record files of one test's consumer lives, removed when dropped.
struct Records {
    stem: String,
    paths: Vec<PathBuf>,
}

/// Bytes of one record: producer (`u32`), 4 bytes of padding, seq (`u64`).
const RECORD_LEN: usize = 16;

impl Records {
    fn new(tag: &str) -> Records {
        Records {
            stem: format!(
                "shmq-restart-{}-{tag}-{}",
                std::process::id(),
                kit::mono_ns()
            ),
            paths: Vec::new(),
        }
    }

    /// A new, empty record file (its path, for the role's RECORD).
    fn next(&mut self) -> String {
        let p = std::env::temp_dir().join(format!("{}-{}.rec", self.stem, self.paths.len()));
        let _ = std::fs::remove_file(&p);
        self.paths.push(p.clone());
        p.display().to_string()
    }

    /// What life `i` recorded: (producer, seq) in the order received.
    fn read(&self, i: usize) -> Vec<(u32, u64)> {
        let bytes = std::fs::read(&self.paths[i]).unwrap_or_default();
        assert_eq!(bytes.len() % RECORD_LEN, 0, "a torn record in life {i}");
        bytes
            .chunks_exact(RECORD_LEN)
            .map(|r| {
                (
                    u32::from_le_bytes(r[..4].try_into().unwrap()),
                    u64::from_le_bytes(r[8..].try_into().unwrap()),
                )
            })
            .collect()
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A recording consumer role ([`role_consumer`]) of kind `K` on `name`.
fn consumer<K: KindExt>(name: &str, cap: u64, form: &str, record: String) -> Spawn {
    Spawn::role_on("consumer", name)
        .arg("KIND", K::NAME)
        .arg("CAP", cap)
        .arg("FORM", form)
        .arg("RECORD", record)
}

/// The fields `producer`, `seq` of event `ev`.
fn header_of(ev: &Value) -> (u32, u64) {
    (num(ev, "producer") as u32, num(ev, "seq"))
}

// ---------------------------------------------------------------------------
// Restarts

/// The consumer of a named channel of kind `K`, receiving with `form`
/// (`guard` or `copy`), is SIGKILLed mid-stream SHMQ_RESTART_KILLS times while
/// the example producers (one for SPSC, three for MPSC) keep sending; the
/// example `consumer --resume` takes the rest. Checks the union of what every
/// life recorded against the guarantee of the form (module doc).
fn killed_repeatedly<K: KindExt>(form: &str) {
    let kills: usize = kit::env_or("SHMQ_RESTART_KILLS", 50);
    let test = format!("restart_{}_{form}", K::NAME);
    let (wd, names, name) = kit::start(&test, &format!("restart-{}", K::NAME));
    let seed = Rng::seed();
    eprintln!("{test}: seed {seed}, {kills} kills");
    let mut rng = Rng::new(seed);
    let cap: u64 = 16 << 10;
    let producers: u32 = if K::MPSC { 3 } else { 1 };
    // Each life receives at most 2,000 + 5,000 messages (AFTER_MARK): this
    // leaves the final consumer part of every producer's stream.
    let per = kills as u64 * 7_000 + 20_000;
    let mut records = Records::new(K::NAME);
    let mut lives = Vec::new();
    // Even lives are killed at their HOLD-th message, holding its guard
    // (guard) or having copied it (copy); odd ones at a random moment after
    // their MARK-th. `held[i]`: the message of an even life.
    let mut held = Vec::new();
    let held_event = if form == "guard" { "holding" } else { "copied" };
    let life = |i: usize, rng: &mut Rng, records: &mut Records| {
        let c = consumer::<K>(&name, cap, form, records.next());
        if i.is_multiple_of(2) {
            (c.arg("HOLD", rng.range(1, 2_000)), held_event)
        } else {
            (c.arg("MARK", rng.range(1, 2_000)), "mark")
        }
    };
    let (first, first_kill) = life(0, &mut rng, &mut records);
    let mut first = first.spawn(&wd);
    first.event("ready");
    let mut senders: Vec<Proc> = (0..producers)
        .map(|id| {
            let mut p = Spawn::example("producer").args([
                "--name",
                &name,
                "--count",
                &per.to_string(),
                "--size",
                &SIZE.to_string(),
                "--capacity",
                &cap.to_string(),
            ]);
            if K::MPSC {
                p = p.args(["--mpsc", "--id", &id.to_string()]);
            }
            p.spawn(&wd)
        })
        .collect();
    let mut kill = |mut c: Proc, at: &str| {
        let ev = c.event(at);
        c.kill_and_reap();
        held.push((at != "mark").then(|| header_of(&ev)));
    };
    kill(first, first_kill);
    for i in 1..kills {
        let (c, at) = life(i, &mut rng, &mut records);
        kill(c.spawn(&wd), at);
    }
    for i in 0..kills {
        lives.push(records.read(i));
    }
    let mut last = Spawn::example("consumer").args([
        "--name",
        &name,
        "--count",
        &per.to_string(),
        "--capacity",
        &cap.to_string(),
        "--producers",
        &producers.to_string(),
        "--resume",
    ]);
    if K::MPSC {
        last = last.args(["--mpsc"]);
    }
    let mut last = last.spawn(&wd);
    last.expect_success();
    let cj = last.last_json();
    assert_eq!(cj["verified"], true, "{cj}");
    assert_eq!(cj["reason"], "complete", "{cj}");
    for p in &mut senders {
        p.expect_success();
        assert_eq!(num(&p.last_json(), "sent"), per, "{}", p.log());
    }
    // The final consumer's messages: each producer's stream from its first_seq.
    let mut final_life = Vec::new();
    for id in 0..producers {
        let from = num(&cj["first_seq"], &id.to_string());
        assert_eq!(
            num(&cj["per_producer"], &id.to_string()),
            per - from,
            "{cj}"
        );
        final_life.extend((from..per).map(|s| (id, s)));
    }
    lives.push(final_life);
    let report = check_union(&lives, &held, producers, per, form, K::MPSC);
    eprintln!(
        "{test}: {} kills, {} messages, {report}; final consumer: {cj}",
        kills,
        per * u64::from(producers)
    );
    drop(records);
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
    drop(wd);
}

/// The first ten of `list` (or all of a shorter one), for a message.
fn first_ten<T>(list: &[T]) -> &[T] {
    &list[..list.len().min(10)]
}

/// Asserts that `list` is empty; if not, says how many `what` it holds and
/// shows the first ten.
#[track_caller]
fn assert_none<T: std::fmt::Debug>(list: &[T], what: &str) {
    assert!(
        list.is_empty(),
        "{} {what}: first {:?}",
        list.len(),
        first_ten(list)
    );
}

/// Checks what the consumer lives recorded (the last one, the final
/// consumer's, in no particular order within a producer) against the
/// guarantee of `form`; `held[i]` is the message life `i` was killed holding
/// or having copied, if it was killed at that point. Returns a summary of the
/// duplicates or losses.
fn check_union(
    lives: &[Vec<(u32, u64)>],
    held: &[Option<(u32, u64)>],
    producers: u32,
    per: u64,
    form: &str,
    mpsc: bool,
) -> String {
    let kills = lives.len() - 1;
    // Within a life, each producer's messages are consecutive.
    for (i, life) in lives.iter().enumerate() {
        let mut next = BTreeMap::new();
        for &(p, s) in life {
            let want = next.entry(p).or_insert(s);
            assert_eq!(s, *want, "life {i}: producer {p} jumped");
            *want += 1;
        }
    }
    let mut lives_of: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
    for (i, life) in lives.iter().enumerate() {
        for &m in life {
            lives_of.entry(m).or_default().push(i);
        }
    }
    let missing: Vec<(u32, u64)> = (0..producers)
        .flat_map(|p| (0..per).map(move |s| (p, s)))
        .filter(|m| !lives_of.contains_key(m))
        .collect();
    let twice: Vec<((u32, u64), &Vec<usize>)> = lives_of
        .iter()
        .filter(|(_, ls)| ls.len() > 1)
        .map(|(m, ls)| (*m, ls))
        .collect();
    match form {
        "guard" => {
            // At least once: nothing missing.
            assert_none(
                &missing,
                "messages never received (a guard released before its holder recorded it?)",
            );
            // A redelivery is the message a killed life held: its last record,
            // and the first record of the next life; if that life was killed
            // holding it too (a random kill before its second message), the
            // next one's as well. So a run of consecutive lives, each of them
            // but the last killed holding it, and at most one per kill.
            for (m, ls) in &twice {
                for w in ls.windows(2) {
                    let (i, j) = (w[0], w[1]);
                    assert!(
                        j == i + 1
                            && i < kills
                            && lives[i].last() == Some(m)
                            && (j == kills || lives[j].first() == Some(m)),
                        "{m:?} received by lives {ls:?}: lives {i} and {j} are not a kill \
                         holding it and the next life (life {i} ended with {:?}, life {j} \
                         began with {:?})",
                        lives[i].last(),
                        lives[j].first()
                    );
                }
            }
            let per_kill: Vec<usize> = (0..kills)
                .map(|i| {
                    twice
                        .iter()
                        .filter(|(_, ls)| ls[..ls.len() - 1].contains(&i))
                        .count()
                })
                .collect();
            assert!(per_kill.iter().all(|&d| d <= 1), "{per_kill:?}");
            // At least once, where the kill came with the guard held: that
            // message went to the next life too.
            for (i, m) in held.iter().enumerate() {
                if let Some(m) = m {
                    let ls = lives_of.get(m).map(Vec::as_slice).unwrap_or_default();
                    assert!(
                        ls.windows(2).any(|w| w == [i, i + 1]),
                        "life {i} was killed holding the guard of {m:?}, received by lives {ls:?}"
                    );
                }
            }
            let at_hold = held.iter().flatten().count();
            let redelivered: usize = per_kill.iter().sum();
            format!(
                "{redelivered} redelivered (at most one per kill): {at_hold} by the kills \
                 holding a guard, {} by random kills that landed while one was held",
                redelivered - at_hold
            )
        }
        "copy" => {
            // At most once: nothing twice; at most one lost per kill.
            assert_none(&twice, "messages received twice after a copying receive");
            assert!(
                missing.len() <= kills,
                "{} messages lost in {kills} kills: {:?}",
                missing.len(),
                first_ten(&missing)
            );
            // At most one per kill: a message lost at kill k was copied by
            // life k, which lies between the life that recorded the message
            // before it from the same producer and the life that recorded the
            // one after it; each kill must be able to take one loss of its own
            // (intervals matched to distinct kills, greedily by right end).
            let mut lives_of_producer: BTreeMap<u32, BTreeMap<u64, usize>> = BTreeMap::new();
            for (m, ls) in &lives_of {
                lives_of_producer.entry(m.0).or_default().insert(m.1, ls[0]);
            }
            let mut spans: Vec<(usize, usize, (u32, u64))> = missing
                .iter()
                .map(|&(p, s)| {
                    let got = lives_of_producer.get(&p);
                    let lo = got
                        .and_then(|g| g.range(..s).next_back())
                        .map_or(0, |(_, &l)| l);
                    let hi = got
                        .and_then(|g| g.range(s + 1..).next())
                        .map_or(kills, |(_, &l)| l)
                        .saturating_sub(1)
                        .min(kills - 1);
                    (hi, lo, (p, s))
                })
                .collect();
            spans.sort();
            let mut taken = vec![false; kills];
            for (hi, lo, m) in spans {
                let k = (lo..=hi).find(|&k| !taken[k]).unwrap_or_else(|| {
                    panic!(
                        "{m:?} was lost, but every kill between lives {lo} and {} already \
                         lost one: more than one loss per kill ({} lost: {:?})",
                        hi + 1,
                        missing.len(),
                        first_ten(&missing)
                    )
                });
                taken[k] = true;
            }
            // At most once, where the kill came after a copy: that message
            // was not delivered again.
            for (i, m) in held.iter().enumerate() {
                if let Some(m) = m {
                    assert!(
                        missing.contains(m),
                        "life {i} was killed after copying {m:?}, yet it was received again \
                         (by lives {:?})",
                        lives_of.get(m)
                    );
                }
            }
            if !mpsc {
                // One producer: a loss is the message right after a killed
                // life's last record, right before the next life's first.
                for i in 0..kills {
                    let (Some(a), Some(b)) = (
                        lives[i].last().map(|m| m.1),
                        lives[i + 1].iter().map(|m| m.1).min(),
                    ) else {
                        panic!("life {i} or {} recorded nothing", i + 1)
                    };
                    assert!(
                        b == a + 1 || b == a + 2,
                        "kill {i}: life {i} ended at {a}, the next began at {b}"
                    );
                }
            }
            format!(
                "{} lost (copied, then killed before recording; at most one per kill), \
                 {} of them by the kills right after a copy",
                missing.len(),
                held.iter().flatten().count()
            )
        }
        other => panic!("unknown form {other}"),
    }
}

kit::test_each_kind! {
    fn spsc_consumer_killed_repeatedly_holding_guards_redelivers_at_most_one_per_kill,
        mpsc_consumer_killed_repeatedly_holding_guards_redelivers_at_most_one_per_kill
        = killed_repeatedly("guard");

    fn spsc_consumer_killed_repeatedly_after_copies_loses_at_most_one_per_kill,
        mpsc_consumer_killed_repeatedly_after_copies_loses_at_most_one_per_kill
        = killed_repeatedly("copy");
}

// ---------------------------------------------------------------------------
// Delivery guarantees at a deterministic point

/// The test sends 100 messages into a named channel of kind `K`; a consumer
/// receiving with `form` reports its 10th message and hangs there (guard form:
/// holding the guard) and is SIGKILLed; the next consumer's first message is
/// `first_next` (9: the held message again; 10: the copied one is not
/// delivered again), and it receives the rest, in order, to the end.
fn killed_at_the_tenth<K: KindExt>(form: &str, event: &str, first_next: u64) {
    let wd = Watchdog::new(&format!("delivery_{}_{form}", K::NAME));
    let names = kit::Names::new();
    let name = names.name(&format!("delivery-{}", K::NAME));
    let cap: u64 = 1 << 16;
    let opts = channel_options::<K>(cap);
    let mut tx = Sender::<K>::create(&name, &opts).expect("create");
    for seq in 0..100 {
        tx.send(&kit::message(seq, 0, SIZE)).expect("send");
    }
    let mut records = Records::new(&format!("delivery-{form}"));
    let mut c = consumer::<K>(&name, cap, form, records.next())
        .arg("HOLD", 10)
        .spawn(&wd);
    let ev = c.event(event);
    assert_eq!(header_of(&ev), (0, 9), "{ev}");
    c.kill_and_reap();
    let mut next = consumer::<K>(&name, cap, form, records.next())
        .arg("EXPECT", 1)
        .spawn(&wd);
    let ev = next.event("first");
    assert_eq!(
        header_of(&ev),
        (0, first_next),
        "{} {form}: the next consumer's first message",
        K::NAME
    );
    drop(tx);
    let ev = next.event("done");
    next.expect_success();
    assert_eq!(num(&ev, "count"), 100 - first_next, "{ev}");
    let got: Vec<u64> = records.read(1).iter().map(|m| m.1).collect();
    assert_eq!(got, (first_next..100).collect::<Vec<_>>());
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
}

kit::test_each_kind! {
    fn a_consumer_killed_holding_a_recv_guard_leaves_that_message_to_the_next_spsc,
        a_consumer_killed_holding_a_recv_guard_leaves_that_message_to_the_next_mpsc
        = killed_at_the_tenth("guard", "holding", 9);

    fn a_consumer_killed_after_recv_into_copied_a_message_does_not_get_it_again_spsc,
        a_consumer_killed_after_recv_into_copied_a_message_does_not_get_it_again_mpsc
        = killed_at_the_tenth("copy", "copied", 10);
}

// ---------------------------------------------------------------------------
// A queue outlives its consumer

/// The test's receiver takes 10 messages and closes; the sender role goes on:
/// `try_send` fills the ring (no error, `Full` at the end), `send` waits
/// asleep for room; a new receiver drains all TOTAL messages in order.
fn sender_outlives_its_consumer<K: KindExt>() {
    let wd = Watchdog::new(&format!("queue_{}", K::NAME));
    let names = kit::Names::new();
    let name = names.name(&format!("queue-{}", K::NAME));
    let cap: u64 = 4096;
    let opts = channel_options::<K>(cap);
    let total = 1000u64;
    let mut rx = Receiver::<K>::create(&name, &opts).expect("create");
    let mut tx = Spawn::role_on("queue_tx", &name)
        .arg("KIND", K::NAME)
        .arg("CAP", cap)
        .arg("FIRST", 10)
        .arg("TOTAL", total)
        .spawn(&wd);
    tx.event("first_sent");
    let mut v = Verifier::new();
    let mut buf = Vec::new();
    v.take_n(10, &mut buf, |b| rx.recv_into(b));
    drop(rx);
    let ev = tx.event("full");
    assert_eq!(ev["peer"], "Closed", "{ev}");
    let filled = num(&ev, "seq");
    assert!(
        filled > 10 && filled < total,
        "the ring should hold some but not all: {ev}"
    );
    tx.assert_in_futex(
        num(&ev, "tid") as i32,
        "a send into a full queue with no consumer waits asleep for room",
    );
    assert!(
        tx.try_event("sent", Duration::ZERO).is_none(),
        "the sender finished with no consumer to make room\n{}",
        tx.log()
    );
    let mut rx = Receiver::<K>::open(&name, &opts).expect("a new consumer");
    rx.expect_producers(1).expect("expect_producers");
    let end = v.take_until(&mut buf, "the new consumer", |b| rx.recv_into(b));
    kit::kinds::assert_closed(&end);
    assert_eq!(v.total, total, "{}", K::NAME);
    assert_eq!(num(&tx.event("sent"), "count"), total);
    tx.expect_success();
    drop(rx);
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// The example programs

/// The example producer (default: a queue) sends 5,000 messages; a recording
/// consumer takes 100 and closes; the example consumer without `--resume`
/// takes one more and fails verification (it expects 0 first); with
/// `--resume --count 5000` one takes the rest (first_seq 101) and exits 0;
/// the producer exits 0.
fn producer_goes_on_and_resume_takes_over<K: KindExt>() {
    let (wd, names, name) = kit::start(&format!("resume_{}", K::NAME), "resume");
    let cap: u64 = 4096;
    let count = 5_000u64;
    let kind: &[&str] = if K::MPSC { &["--mpsc"] } else { &[] };
    let common = ["--name", &name, "--capacity", &cap.to_string()];
    let mut p = Spawn::example("producer")
        .args(common)
        .args(kind)
        .args(["--count", &count.to_string(), "--size", "64"])
        .spawn(&wd);
    let mut records = Records::new("resume");
    let mut c = consumer::<K>(&name, cap, "guard", records.next())
        .arg("STOP_AFTER", 100)
        .spawn(&wd);
    assert_eq!(num(&c.event("closed"), "count"), 100);
    c.expect_success();
    let mut strict = Spawn::example("consumer")
        .args(common)
        .args(kind)
        .args(["--count", "1"])
        .spawn(&wd);
    strict.expect_exit(1);
    let sj = strict.last_json();
    assert_eq!(sj["verified"], false, "{sj}");
    assert_eq!(sj["lost"], 100, "{sj}");
    assert!(sj.get("first_seq").is_none(), "{sj}");
    let mut resumed = Spawn::example("consumer")
        .args(common)
        .args(kind)
        .args(["--count", &count.to_string(), "--resume"])
        .spawn(&wd);
    resumed.expect_success();
    let rj = resumed.last_json();
    assert_eq!(rj["verified"], true, "{rj}");
    assert_eq!(rj["reason"], "complete", "{rj}");
    assert_eq!(rj["first_seq"], json!({ "0": 101 }), "{rj}");
    assert_eq!(rj["received"], count - 101, "{rj}");
    assert_eq!(rj["per_producer"], json!({ "0": count - 101 }), "{rj}");
    assert_eq!(rj["lost"], 0, "{rj}");
    assert_eq!(rj["duplicated"], 0, "{rj}");
    p.expect_success();
    assert_eq!(num(&p.last_json(), "sent"), count);
    drop(records);
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
}

kit::test_each_kind! {
    fn a_sender_keeps_sending_into_a_queue_whose_consumer_closed_spsc,
        a_sender_keeps_sending_into_a_queue_whose_consumer_closed_mpsc
        = sender_outlives_its_consumer();

    fn the_example_producer_goes_on_through_a_consumer_close_and_resume_takes_over_spsc,
        the_example_producer_goes_on_through_a_consumer_close_and_resume_takes_over_mpsc
        = producer_goes_on_and_resume_takes_over();
}

/// `producer --exit-on-disconnect` (more messages than the consumer takes)
/// exits with status 2 once the consumer, after 100 messages, closes
/// (`ending` = `close`) or is SIGKILLed (`kill`), naming how it went.
fn exit_on_disconnect<K: KindExt>(ending: &str) {
    let (wd, names, name) = kit::start(&format!("exit_on_disconnect_{}", K::NAME), "eod");
    let cap: u64 = 4096;
    let mut p = Spawn::example("producer")
        .args(["--name", &name, "--capacity", &cap.to_string()])
        .args(if K::MPSC { &["--mpsc"][..] } else { &[] })
        .args(["--count", "100000000", "--exit-on-disconnect"])
        .spawn(&wd);
    let mut records = Records::new("eod");
    let c = consumer::<K>(&name, cap, "copy", records.next());
    let (mut c, why) = match ending {
        "close" => (c.arg("STOP_AFTER", 100).spawn(&wd), "Closed"),
        _ => (c.arg("MARK", 100).spawn(&wd), "Died"),
    };
    match ending {
        "close" => {
            c.event("closed");
            c.expect_success();
        }
        _ => {
            c.event("mark");
            c.kill_and_reap();
        }
    }
    p.expect_exit(2);
    assert!(
        p.log().contains(&format!("the consumer went away ({why})")),
        "{}",
        p.log()
    );
    drop(records);
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
}

#[test]
fn the_example_producer_with_exit_on_disconnect_exits_2_when_its_consumer_closes() {
    exit_on_disconnect::<Spsc>("close");
    exit_on_disconnect::<Mpsc>("close");
}

#[test]
fn the_example_producer_with_exit_on_disconnect_exits_2_when_its_consumer_dies() {
    exit_on_disconnect::<Spsc>("kill");
    exit_on_disconnect::<Mpsc>("kill");
}
