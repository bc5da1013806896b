//! A peer's death is reported whatever the shared words say (reliability,
//! round two, item 1): the kernel's liveness marker is the truth, the endpoint
//! state words in shared memory only a hint.
//!
//! Each case: the survivor (this process) and a victim (a re-executed role of
//! this binary) exchange messages on a named channel; then the page holding the
//! header and control block is damaged (the victim's state word zeroed, random
//! words zeroed or overwritten, or a hole punched over the whole page) and the
//! victim is SIGKILLed. The survivor, blocked in `recv` (victim: the producer)
//! or in `send` on a full ring (victim: the consumer), must return an error
//! within the death budget plus a wait slice: never hang, never time out.
//!
//! Run: `cargo test --release --test reliability_death`. More random cases:
//! `SHMQ_PAGE0_CASES=500 cargo test --release --test reliability_death`
//! (default 12).

use std::time::{Duration, Instant};

use serde_json::json;
use shmq::{Disconnect, Error, Mpsc, Options, Receiver, RingKind, Sender, Spsc};
use shmq_testkit as kit;
use shmq_testkit::{DEATH_BUDGET, Names, Rng, Spawn, Watchdog, arg, emit, hang};

/// The default wait slice: a blocked call looks at its peer at least this often.
const SLICE: Duration = shmq::DEFAULT_WAIT_SLICE;

/// Long enough to catch a hang, far beyond any honest answer.
const HANG: Duration = Duration::from_secs(5);

/// Messages exchanged before the damage.
const EXCHANGED: u64 = 10;

/// The ring's capacity: small, so that a few messages fill it.
const CAP: u64 = 4096;

/// Where the segment header keeps the offset of the ring's region.
const DATA_OFFSET_AT: u64 = 32;

// ---------------------------------------------------------------------------
// Roles

shmq_testkit::roles! { role_tx role_rx role_claim }

fn options() -> Options {
    kit::session().capacity(CAP)
}

/// The victim as producer: opens the KIND channel NAME, sends EXCHANGED
/// messages, reports `ready` and holds the channel until killed.
fn role_tx() {
    fn run<K: RingKind>() {
        let mut tx = Sender::<K>::open(&arg::<String>("NAME"), &options()).expect("sender");
        for seq in 0..EXCHANGED {
            tx.send(&kit::message(seq, 0, 64)).expect("send");
        }
        emit("ready", json!({}));
        let _keep = tx;
        hang();
    }
    kit::by_kind!(arg::<String>("KIND").as_str(), run())
}

/// The victim as consumer: opens the KIND channel NAME, receives EXCHANGED
/// messages, reports `ready` and holds the channel until killed.
fn role_rx() {
    fn run<K: RingKind>() {
        let mut rx = Receiver::<K>::open(&arg::<String>("NAME"), &options()).expect("receiver");
        let mut buf = Vec::new();
        for _ in 0..EXCHANGED {
            rx.recv_into(&mut buf).expect("recv");
        }
        emit("ready", json!({}));
        let _keep = rx;
        hang();
    }
    kit::by_kind!(arg::<String>("KIND").as_str(), run())
}

/// An MPSC producer on NAME that reserves room for a message, reports
/// `claimed` and holds the claim until killed.
fn role_claim() {
    let mut tx = shmq::mpsc::Sender::open(&arg::<String>("NAME"), &options()).expect("sender");
    let _claim = tx.reserve(64).expect("reserve");
    emit("claimed", json!({}));
    hang();
}

// ---------------------------------------------------------------------------
// The damage

/// Which end dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    Producer,
    Consumer,
}

/// What happens to the first page before the victim dies.
#[derive(Clone, Debug)]
enum Damage {
    /// The victim's endpoint state word reads "never attached".
    ZeroVictimState,
    /// These 8-byte words of page 0 are overwritten with these values: (whether
    /// the offset is from the ring's control block rather than the segment's
    /// start, offset, value).
    Words(Vec<(bool, u64, u64)>),
    /// `fallocate(PUNCH_HOLE)` over page 0: it reads back as zeros.
    PunchPage0,
}

/// Offset in the segment of the ring's control block.
fn ring_offset(name: &str) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(kit::shm_path(name)).expect("open the segment");
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, DATA_OFFSET_AT)
        .expect("read data_offset");
    u64::from_le_bytes(b)
}

/// Offset in the segment of the victim's endpoint state word (the ring's
/// control block layout, `crates/ring/src/ctl.rs`).
fn state_word(name: &str, kind: &str, victim: Victim) -> u64 {
    ring_offset(name)
        + match (kind, victim) {
            // `Ends` is at 384: epoch, then the consumer's, then the producer's state.
            (_, Victim::Consumer) => 384 + 8,
            ("spsc", Victim::Producer) => 384 + 16,
            // MPSC: producer slots follow the 512-byte control block, slot 0 first.
            (_, Victim::Producer) => 512,
        }
}

fn damage(name: &str, kind: &str, victim: Victim, d: &Damage) {
    match d {
        Damage::ZeroVictimState => {
            kit::hostile::poke(name, state_word(name, kind, victim), &[0; 4])
        }
        Damage::Words(words) => {
            let ring = ring_offset(name);
            for &(in_ring, off, v) in words {
                let at = if in_ring { ring + off } else { off };
                kit::hostile::poke(name, at, &v.to_le_bytes());
            }
        }
        Damage::PunchPage0 => kit::hostile::punch(name, 0, 4096),
    }
}

// ---------------------------------------------------------------------------
// One case

/// Runs one case and returns how the survivor's blocked call ended and how long
/// after the kill.
fn case<K: RingKind>(
    wd: &Watchdog,
    names: &Names,
    victim: Victim,
    d: &Damage,
) -> (shmq::Result<()>, Duration) {
    let kind = K::NAME;
    let name = names.name(&format!("death-{kind}"));
    let o = options();
    let mut buf = Vec::new();
    let (mut p, mut survivor) = match victim {
        Victim::Producer => {
            let mut rx = Receiver::<K>::create(&name, &o).expect("create");
            let mut p = Spawn::role_on("tx", &name).arg("KIND", kind).spawn(wd);
            p.event("ready");
            for _ in 0..EXCHANGED {
                rx.recv_into(&mut buf).expect("recv");
            }
            let s: Survivor = Box::new(move |b| rx.recv_into_timeout(b, HANG));
            (p, s)
        }
        Victim::Consumer => {
            let mut tx = Sender::<K>::create(&name, &o).expect("create");
            let mut p = Spawn::role_on("rx", &name).arg("KIND", kind).spawn(wd);
            for seq in 0..EXCHANGED {
                tx.send(&kit::message(seq, 0, 64)).expect("send");
            }
            p.event("ready");
            // Fill the ring, so that the next send blocks.
            let mut seq = EXCHANGED;
            while tx.try_send(&kit::message(seq, 0, 64)).is_ok() {
                seq += 1;
            }
            let m = kit::message(seq, 0, 64);
            let s: Survivor = Box::new(move |_| tx.send_timeout(&m, HANG));
            (p, s)
        }
    };
    damage(&name, kind, victim, d);
    p.kill_and_reap();
    let killed = Instant::now();
    // A damaged page may also read as messages or room: go on until the call
    // fails (bounded: a hang shows as the HANG time-out).
    let mut oks = 0;
    let end = loop {
        let r = survivor(&mut buf);
        if r.is_ok() {
            oks += 1;
        }
        if r.is_err() || killed.elapsed() > HANG {
            break r;
        }
    };
    let took = killed.elapsed();
    eprintln!("{kind} {victim:?}: {oks} calls succeeded after the kill");
    drop(survivor);
    let _ = shmq::inspect::unlink(&name);
    (end, took)
}

/// The survivor's blocking call (a receive into the buffer, or a send).
type Survivor<'a> = Box<dyn FnMut(&mut Vec<u8>) -> shmq::Result<()> + 'a>;

/// Runs `damage` for both kinds and both victims: the survivor's blocked call
/// must end as `ok` says, within the death budget plus a slice.
fn every_victim(damage: &Damage, ok: impl Fn(&shmq::Result<()>) -> bool) {
    let wd = Watchdog::new("reliability_death");
    let names = Names::new();
    for kind in ["spsc", "mpsc"] {
        for victim in [Victim::Producer, Victim::Consumer] {
            let (end, took) = if kind == "spsc" {
                case::<Spsc>(&wd, &names, victim, damage)
            } else {
                case::<Mpsc>(&wd, &names, victim, damage)
            };
            eprintln!("{kind} {victim:?} {damage:?}: {end:?} after {took:?}");
            assert!(ok(&end), "{kind}, dead {victim:?}, {damage:?}: {end:?}");
            assert!(
                took < DEATH_BUDGET + SLICE,
                "{kind}, dead {victim:?}, {damage:?}: {end:?} only after {took:?}"
            );
        }
    }
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// Tests

/// The red team's case: the victim's state word says "never attached", then the
/// victim dies. Before the fix the survivor waited for ever (here: HANG).
#[test]
fn a_peer_that_zeroes_its_state_word_and_dies_is_reported_dead() {
    every_victim(&Damage::ZeroVictimState, |end| {
        matches!(end, Err(Error::Disconnected(Disconnect::Died)))
    });
}

/// The same with a hole punched over page 0 (which the memfd seals of anonymous
/// channels do not forbid, and nothing forbids for named ones): it reads back as
/// zeros, header and control block alike.
#[test]
fn a_hole_over_page_0_then_a_death_is_an_error_not_a_hang() {
    every_victim(&Damage::PunchPage0, |end| {
        matches!(end, Err(Error::Disconnected(_) | Error::Corrupted(_)))
    });
}

/// Property: whichever words of page 0 are zeroed or overwritten before the
/// victim dies, the survivor's blocked call ends in an error (never `Timeout`)
/// within the death budget plus a slice. Cases: SHMQ_PAGE0_CASES (default 12);
/// the seed is printed, SHMQ_SEED replays it.
#[test]
fn whatever_page_0_says_a_death_is_reported_within_the_budget() {
    let cases: u64 = kit::env_or("SHMQ_PAGE0_CASES", 12);
    let seed = Rng::seed();
    eprintln!("seed {seed} (SHMQ_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let mut plans = Vec::new();
    for _ in 0..cases {
        let victim = *rng.pick(&[Victim::Producer, Victim::Consumer]);
        let n = rng.range(1, 9);
        let words = (0..n)
            .map(|_| {
                // Most in the control block and the first producer slots (the
                // words a survivor reads to judge its peer), the rest anywhere.
                let in_ring = rng.chance(0.7);
                let off = rng.range(0, if in_ring { 80 } else { 512 }) * 8;
                let v = match rng.range(0, 3) {
                    0 => 0,
                    1 => rng.range(0, 4),
                    _ => rng.next_u64(),
                };
                (in_ring, off, v)
            })
            .collect();
        plans.push((rng.chance(0.5), victim, Damage::Words(words)));
    }
    let wd = Watchdog::new("reliability_death_page0");
    let names = Names::new();
    for (mpsc, victim, d) in &plans {
        let (end, took) = if *mpsc {
            case::<Mpsc>(&wd, &names, *victim, d)
        } else {
            case::<Spsc>(&wd, &names, *victim, d)
        };
        let what = format!("{} {victim:?} {d:?}", if *mpsc { "mpsc" } else { "spsc" });
        assert!(
            end.is_err() && !matches!(end, Err(Error::Timeout)),
            "{what}: the survivor's call ended {end:?} after {took:?}"
        );
        assert!(
            took < DEATH_BUDGET + SLICE,
            "{what}: {end:?} only after {took:?}"
        );
    }
    names.assert_clean();
}

/// Reliability round two, item 5: MPSC frame headers stamp claims with the low
/// 16 bits of the slot's incarnation. A producer dies holding a claim; its slot
/// is taken 65,536 times more (here: the incarnation counter is advanced by
/// 65,535, as that many attach-and-leave cycles would, then one real producer
/// attaches), so the live holder's stamp equals the dead claim's. Before the
/// fix the consumer took the dead claim for the live producer's and waited for
/// ever; now it reclaims it (the claim lies before where the live holder
/// started) and receives the live producer's messages.
#[test]
fn a_dead_claim_is_reclaimed_after_its_slot_stamp_wraps() {
    let (wd, names, name) = kit::start("incarnation_wrap", "death-wrap");
    let o = options().max_producers(1);
    let mut rx = shmq::mpsc::Receiver::create(&name, &o).expect("create");
    let mut dead = Spawn::role_on("claim", &name).spawn(&wd);
    dead.event("claimed");
    dead.kill_and_reap();
    // Slot 0's `EndState { state: u32, incarnation: u32 }` starts the first
    // producer slot, right after the 512-byte control block.
    let inc_at = ring_offset(&name) + 512 + 4;
    let mut b = [0u8; 4];
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(kit::shm_path(&name)).expect("open");
        f.read_exact_at(&mut b, inc_at).expect("read incarnation");
    }
    let inc = u32::from_le_bytes(b);
    kit::hostile::poke(&name, inc_at, &(inc + 65_535).to_le_bytes());
    let mut live = Spawn::role_on("tx", &name).arg("KIND", "mpsc").spawn(&wd);
    live.event("ready");
    let mut v = kit::Verifier::new();
    let mut buf = Vec::new();
    for _ in 0..EXCHANGED {
        match rx.recv_into_timeout(&mut buf, HANG) {
            Ok(()) => {
                v.take(&buf);
            }
            Err(e) => panic!("after {} messages: {e:?} (the dead claim blocks)", v.total),
        }
    }
    assert_eq!(v.total, EXCHANGED);
    assert_eq!(rx.reclaimed().expect("reclaimed"), 1, "the dead claim");
    live.kill_and_reap();
    drop(rx);
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
}
