//! Durable channels on files (issue 17), across real processes.
//!
//! - **Outliving every process**: a producer writes 10^6 messages into a file
//!   channel and exits; no process has the file open; a consumer started
//!   afterwards receives every one, verified, and its close removes the
//!   drained file.
//! - **Kill storm**: producers and consumers of one file channel are SIGKILLed
//!   at random points `SHMQ_FILE_KILLS` times (default 50, the count: about 1.6 s in
//!   release; a long run: `SHMQ_FILE_KILLS=500`), a fresh one of the killed side started each
//!   time (the consumer resumes at the position the file holds); at the end every
//!   process has died and a last consumer, started afterwards, drains the file.
//!   Each producer life has its own producer id and records every seq whose
//!   `send` returned (one `write(2)` each); each consumer life records what it
//!   received while holding the message's guard. Then: per producer, the
//!   messages come in order with no gap; a message appears twice only as the
//!   last record of a killed consumer life and the first of the next (the
//!   at-least-once message of docs/LIFECYCLE.md, at most one per consumer
//!   kill); a producer life that finished is received whole, and a killed one
//!   has every recorded message received, and at most one more (committed, the
//!   kill came before its record). The same storm runs on an MPSC file
//!   channel (`mpsc_file_channel_kill_storm_serial`), one producer life at a
//!   time.
//! - **Sync policies, counted**: under `strace -c`, a writer of each policy
//!   makes exactly the `msync` calls its policy promises (every commit: one per
//!   send, plus one at creation and one at close; periodic every 10 messages: a
//!   tenth of that; none: none, and no `fsync` or `fdatasync` either). Skipped,
//!   saying so, when strace is not installed.
//! - **Messages, not calls** (counted with the file's sync counter, in one
//!   process): calls that move nothing (an empty poll of every receive form, a
//!   batch of 0, a batch send of nothing) make no sync under any policy and
//!   spend no periodic budget; a lent guard's release or commit is synced once,
//!   by the next call; `Periodic { messages: 10 }` syncs once per 10 messages
//!   on each side, a batch counting its messages; an interval budget syncs
//!   only what moved since the last sync.
//! - **Damaged, foreign, truncated, linked files**: clear errors, never a signal,
//!   a panic or a hang.
//! - **A full file system** (a 256 KiB tmpfs mounted in a mount namespace of a
//!   role's own; root only, skipped saying so otherwise): creating a 1 MiB file
//!   channel there is `NoSpace` at once (the space is reserved with
//!   `posix_fallocate`), and nothing is left in the directory.
//!
//! Run: `cargo nextest run --release -E 'binary(durable)'`. Long form:
//! `SHMQ_FILE_KILLS=500 cargo test --release --test durable -- --nocapture`.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use shmq::{Durability, Error, Mpsc, Options, Receiver, RingKind, Sender, Spsc};
use shmq_segment::{Error as SegError, Segment, SegmentOptions};
use shmq_testkit as kit;
use shmq_testkit::kinds::How;
use shmq_testkit::msg::{self, Verifier};
use shmq_testkit::{Proc, Rng, Spawn, Watchdog, arg, arg_opt, emit};

shmq_testkit::roles! { role_file_tx role_file_rx role_file_sync role_full_disk }

/// A directory of its own for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let n = Rng::seed();
        let dir =
            std::env::temp_dir().join(format!("shmq-durable-{tag}-{}-{n:08x}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a test with children starts with: a [`Watchdog`] labelled `test` and
/// a [`TempDir`] tagged `tag`. Bind them in this order (`let (wd, dir) =
/// ...`), so that the directory is removed before the watchdog stops.
fn start(test: &str, tag: &str) -> (Watchdog, TempDir) {
    (Watchdog::new(test), TempDir::new(tag))
}

/// A policy from its role spelling: `none`, `every`, `periodic:MS:MESSAGES`.
fn policy(spec: &str) -> Durability {
    kit::parse_durability(spec).unwrap_or_else(|e| panic!("{e}"))
}

fn role_options() -> Options {
    Options::new()
        .capacity(arg("CAP"))
        .durability(policy(&arg::<String>("POLICY")))
}

/// The role's end of the file channel PATH, reached by HOW (`create`, `open`
/// or `create_or_open`) with `reach` ([`How::file_sender`] or
/// [`How::file_receiver`]; `end` names it for the message), with
/// [`role_options`].
fn role_end<T>(end: &str, reach: fn(How, &Path, &Options) -> shmq::Result<T>) -> T {
    let path: String = arg("PATH");
    let how = How::parse(&arg::<String>("HOW"));
    reach(how, path.as_ref(), &role_options())
        .unwrap_or_else(|e| panic!("{how:?} {end} on {path}: {e}"))
}

/// Appends `bytes` to `file` with one `write(2)` (so that a kill never
/// leaves half of it: records are 8 or 16 bytes and never straddle a page).
fn record(file: &mut std::fs::File, bytes: &[u8]) {
    use std::io::Write;
    file.write_all(bytes).expect("write the record");
}

fn append(path: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the record file")
}

// ---------------------------------------------------------------------------
// Roles

/// Runs `role::<Spsc>` or `role::<Mpsc>` as the KIND argument says (`spsc`
/// when absent).
macro_rules! for_kind {
    ($role:ident) => {
        match arg_opt::<String>("KIND").as_deref() {
            Some("mpsc") => $role::<Mpsc>(),
            _ => $role::<Spsc>(),
        }
    };
}

/// A producer of the file channel PATH (of KIND; HOW `create` or
/// `create_or_open`; capacity CAP, policy POLICY) sending COUNT messages of
/// SIZE bytes as producer PRODUCER, seq 0 on, with `send`; with RECORD,
/// appends each seq once `send` returned. Reports `ready`, then `sent`, and
/// exits.
fn role_file_tx() {
    for_kind!(file_tx)
}

fn file_tx<K: RingKind>() {
    let mut tx = role_end("sender", How::file_sender::<K>);
    let (count, size, producer): (u64, usize, u32) = (arg("COUNT"), arg("SIZE"), arg("PRODUCER"));
    let mut rec = arg_opt::<String>("RECORD").map(|p| append(&p));
    emit("ready", json!({}));
    let mut buf = vec![0u8; size];
    for seq in 0..count {
        msg::fill(&mut buf, seq, producer);
        tx.send(&buf).unwrap_or_else(|e| panic!("send {seq}: {e}"));
        if let Some(f) = &mut rec {
            record(f, &seq.to_le_bytes());
        }
    }
    emit("sent", json!({ "count": count }));
}

/// A consumer of the file channel PATH (of KIND; HOW `open` or
/// `create_or_open`). Every message is checked byte by byte. With RECORD,
/// each is recorded as (producer u32, 4 zero bytes, seq u64) while its guard
/// is held. MODE `drain`: receives until the ring is empty (no producer may be
/// alive), then reports `done` with the count and, with VERIFY, the
/// per-producer order checked; `stream`: receives until killed.
fn role_file_rx() {
    for_kind!(file_rx)
}

fn file_rx<K: RingKind>() {
    let mut rx = role_end("receiver", How::file_receiver::<K>);
    let mut rec = arg_opt::<String>("RECORD").map(|p| append(&p));
    let verify = arg_opt::<u32>("VERIFY").is_some();
    let drain = arg::<String>("MODE") == "drain";
    let mut verifier = Verifier::new();
    let mut count = 0u64;
    emit("ready", json!({}));
    loop {
        let m = if drain {
            match rx.try_recv() {
                Ok(m) => m,
                Err(Error::Empty) => break,
                Err(e) => panic!("receive after {count}: {e}"),
            }
        } else {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(Error::Timeout) => continue,
                Err(e) => panic!("receive after {count}: {e}"),
            }
        };
        let h = if verify {
            verifier.check(&m)
        } else {
            msg::check(&m)
        }
        .unwrap_or_else(|e| panic!("message {count}: {e}"));
        if let Some(f) = &mut rec {
            let mut r = [0u8; 16];
            r[..4].copy_from_slice(&h.producer.to_le_bytes());
            r[8..].copy_from_slice(&h.seq.to_le_bytes());
            record(f, &r);
        }
        drop(m);
        count += 1;
    }
    drop(rx);
    emit(
        "done",
        json!({ "count": count, "counts": verifier.counts() }),
    );
}

/// Creates the file channel PATH with policy POLICY (capacity CAP), sends
/// COUNT 64-byte messages with `send`, closes it, reports `done`.
fn role_file_sync() {
    let path: String = arg("PATH");
    let mut tx = Sender::<Spsc>::create_file(&path, &role_options())
        .unwrap_or_else(|e| panic!("sender on {path}: {e}"));
    let count: u64 = arg("COUNT");
    for seq in 0..count {
        tx.send(&msg::message(seq, 1, 64)).expect("send");
    }
    drop(tx);
    emit("done", json!({}));
}

/// In a mount namespace of its own, mounts a 256 KiB tmpfs on DIR and creates
/// a file channel of 1 MiB there; reports `created` with the error's text (or
/// `skip` with why the namespace or the mount could not be had).
fn role_full_disk() {
    let dir: String = arg("DIR");
    if let Err(why) = kit::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        return emit("skip", json!({ "why": why }));
    }
    let run = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| {
                s.success()
                    .then_some(())
                    .ok_or(format!("mount {args:?}: {s}"))
            })
    };
    // Private first: the tmpfs must not show up outside this namespace.
    let mounted = run(&["--make-rprivate", "/"])
        .and_then(|()| run(&["-t", "tmpfs", "-o", "size=256k", "tmpfs", &dir]));
    if let Err(why) = mounted {
        return emit("skip", json!({ "why": why }));
    }
    let path = format!("{dir}/chan");
    let r = Sender::<Spsc>::create_file(&path, &Options::new().capacity(1 << 20));
    let exists = Path::new(&path).exists();
    let leftovers = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    emit(
        "created",
        json!({
            "no_space": matches!(r, Err(Error::Segment(SegError::NoSpace { .. }))),
            "error": r.err().map(|e| e.to_string()),
            "exists": exists,
            "leftovers": leftovers,
        }),
    );
}

// ---------------------------------------------------------------------------
// Outliving every process

#[test]
fn million_file_messages_outlive_their_producer() {
    let (wd, dir) = start("million_file", "million");
    let path = dir.path("chan");
    let count = kit::scaled(1_000_000);
    // 10^6 16-byte messages take 24 bytes each in the ring: 24 MB of 32 MiB.
    let cap = 32u64 << 20;
    let p = path.display().to_string();
    let mut tx = Spawn::role("file_tx")
        .arg("PATH", &p)
        .arg("HOW", "create")
        .arg("CAP", cap)
        .arg("POLICY", "none")
        .arg("COUNT", count)
        .arg("SIZE", 16)
        .arg("PRODUCER", 1)
        .spawn(&wd);
    tx.event("sent");
    tx.expect_success();
    // Every process is gone; the file holds the messages.
    let peek = Segment::peek_file(&path, &SegmentOptions::new()).expect("peek the file");
    assert!(!peek.in_use().expect("in_use"), "nobody has it open");
    drop(peek);
    let mut rx = Spawn::role("file_rx")
        .arg("PATH", &p)
        .arg("HOW", "open")
        .arg("CAP", cap)
        .arg("POLICY", "none")
        .arg("MODE", "drain")
        .arg("VERIFY", 1)
        .spawn(&wd);
    let done = rx.event("done");
    rx.expect_success();
    assert_eq!(kit::num(&done, "count"), count, "{done}");
    assert_eq!(done["counts"]["1"], json!(count), "{done}");
    assert!(
        !path.exists(),
        "the drained file is removed by its last close"
    );
}

#[test]
fn the_example_programs_take_a_file() {
    let (wd, dir) = start("examples_file", "examples");
    let p = dir.path("chan").display().to_string();
    let mut tx = Spawn::example("producer")
        .args(["--file", &p, "--durability", "periodic:5:100"])
        .args(["--count", "5000", "--size", "64", "--capacity", "1048576"])
        .spawn(&wd);
    tx.expect_success();
    assert_eq!(tx.last_json()["sent"], json!(5000));
    let mut rx = Spawn::example("consumer")
        .args(["--file", &p, "--count", "5000"])
        .spawn(&wd);
    rx.expect_success();
    let out = rx.last_json();
    assert_eq!(out["verified"], json!(true), "{out}");
    assert_eq!(out["received"], json!(5000), "{out}");
    assert!(!dir.path("chan").exists());
}

// ---------------------------------------------------------------------------
// Kill storm

/// Messages one producer life sends, if not killed first.
const PER_LIFE: u64 = 20_000;

/// The role `role` of the kill storm on the `kind` file channel `p`: it
/// reaches it with `create_or_open` (a 64 KiB ring, policy `policy`).
fn storm_role(role: &str, kind: &str, p: &str, policy: &str) -> Spawn {
    Spawn::role(role)
        .arg("KIND", kind)
        .arg("PATH", p)
        .arg("HOW", "create_or_open")
        .arg("CAP", 1 << 16)
        .arg("POLICY", policy)
}

/// A producer life of the kill storm on the `kind` file channel `p`.
fn spawn_tx(wd: &Watchdog, kind: &str, p: &str, dir: &TempDir, life: u32, policy: &str) -> Proc {
    let mut tx = storm_role("file_tx", kind, p, policy)
        .arg("COUNT", PER_LIFE)
        .arg("SIZE", 32)
        .arg("PRODUCER", life)
        .arg("RECORD", dir.path(&format!("p{life}")).display())
        .spawn(wd);
    tx.event("ready");
    tx
}

/// A consumer life of the kill storm on the `kind` file channel `p`.
fn spawn_rx(
    wd: &Watchdog,
    kind: &str,
    p: &str,
    dir: &TempDir,
    life: u32,
    mode: &str,
    policy: &str,
) -> Proc {
    let mut rx = storm_role("file_rx", kind, p, policy)
        .arg("MODE", mode)
        .arg("RECORD", dir.path(&format!("c{life}")).display())
        .spawn(wd);
    rx.event("ready");
    rx
}

fn read_words(path: &Path, len: usize) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_default();
    assert_eq!(bytes.len() % len, 0, "a torn record in {}", path.display());
    bytes.chunks(len).map(<[u8]>::to_vec).collect()
}

#[test]
fn file_channel_kill_storm_serial() {
    kill_storm("spsc");
}

/// The kill storm on an MPSC file channel: a killed producer's claim left
/// uncommitted is reclaimed (as padding) by the consumer or a later producer,
/// its committed messages are delivered.
#[test]
fn mpsc_file_channel_kill_storm_serial() {
    kill_storm("mpsc");
}

/// SHMQ_FILE_KILLS kills of producer and consumer processes of one `kind`
/// file channel at random points (one producer and one consumer alive at a
/// time, a fresh one of the killed side started each time); then every
/// process has died, a last consumer drains the file, and the records say
/// that nothing was lost or duplicated beyond the documented message.
fn kill_storm(kind: &str) {
    let kills: u32 = kit::env_or("SHMQ_FILE_KILLS", 50);
    let seed = Rng::seed();
    println!("{kind}: SHMQ_FILE_KILLS={kills}, seed {seed}");
    let mut rng = Rng::new(seed);
    let wd = Watchdog::with_limit(
        "file_kill_storm",
        Duration::from_secs(60 + 5 * u64::from(kills)),
    );
    let dir = TempDir::new("storm");
    let path = dir.path("chan");
    let p = path.display().to_string();
    let pol = "periodic:20:512";
    let (mut plives, mut clives) = (0u32, 0u32);
    let mut producer: Option<Proc> = None;
    let mut consumer: Option<Proc> = None;
    // Per producer life: whether it finished its PER_LIFE messages.
    let mut finished: Vec<bool> = Vec::new();
    // Per consumer life: whether it was killed.
    let mut consumer_kills = 0u32;
    // A producer may have finished and exited before its kill.
    let end_producer = |tx: &mut Proc, finished: &mut Vec<bool>| {
        tx.kill_now();
        let status = tx.wait();
        let sent = tx.try_event("sent", Duration::from_millis(200)).is_some();
        assert!(sent || !status.success(), "{}", tx.log());
        finished.push(sent);
    };
    for _ in 0..kills {
        if producer.is_none() {
            producer = Some(spawn_tx(&wd, kind, &p, &dir, plives, pol));
            plives += 1;
        }
        if consumer.is_none() {
            consumer = Some(spawn_rx(&wd, kind, &p, &dir, clives, "stream", pol));
            clives += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.range(1, 40)));
        if rng.chance(0.5) {
            let mut tx = producer.take().expect("a producer");
            end_producer(&mut tx, &mut finished);
        } else {
            let mut rx = consumer.take().expect("a consumer");
            rx.kill_and_reap();
            consumer_kills += 1;
        }
    }
    if let Some(mut tx) = producer.take() {
        end_producer(&mut tx, &mut finished);
    }
    if let Some(mut rx) = consumer.take() {
        rx.kill_and_reap();
        consumer_kills += 1;
    }
    // Every process has died: a last consumer drains what the file holds.
    let mut last = spawn_rx(&wd, kind, &p, &dir, clives, "drain", pol);
    clives += 1;
    last.event("done");
    last.expect_success();

    // Per producer: in order, no gap; duplicates only across a consumer kill.
    let mut next = vec![0u64; plives as usize];
    let mut redelivered = 0u32;
    let mut previous_last: Option<Vec<u8>> = None;
    for life in 0..clives {
        let recs = read_words(&dir.path(&format!("c{life}")), 16);
        for (i, r) in recs.iter().enumerate() {
            let producer = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
            let seq = u64::from_le_bytes(r[8..].try_into().unwrap());
            assert!(producer < next.len(), "unknown producer {producer}");
            if seq == next[producer] {
                next[producer] += 1;
            } else if i == 0 && previous_last.as_ref() == Some(r) {
                redelivered += 1;
            } else {
                panic!(
                    "consumer life {life}, record {i}: producer {producer} seq {seq}, expected {}",
                    next[producer]
                );
            }
        }
        if let Some(r) = recs.last() {
            previous_last = Some(r.clone());
        }
    }
    assert!(
        redelivered <= consumer_kills,
        "{redelivered} redeliveries for {consumer_kills} consumer kills"
    );
    let mut killed_mid_stream = 0;
    for (life, &done) in finished.iter().enumerate() {
        let recorded = read_words(&dir.path(&format!("p{life}")), 8).len() as u64;
        let got = next[life];
        if done {
            assert_eq!(got, PER_LIFE, "producer life {life} finished");
        } else {
            killed_mid_stream += 1;
            assert!(
                got == recorded || got == recorded + 1,
                "producer life {life}: {recorded} sends returned, {got} received"
            );
        }
    }
    assert!(
        !path.exists(),
        "the drained file is removed by its last close"
    );
    println!(
        "{kills} kills: {plives} producer lives ({killed_mid_stream} killed mid-stream), \
         {clives} consumer lives ({consumer_kills} killed), {redelivered} redeliveries, \
         {} messages",
        next.iter().sum::<u64>()
    );
}

// ---------------------------------------------------------------------------
// Sync policies, counted with strace

/// System calls of `role_file_sync` under `strace -f -c`: (msync, fsync, fdatasync).
fn syncs_of(wd: &Watchdog, dir: &TempDir, policy: &str, count: u64) -> (u64, u64, u64) {
    let out = dir.path(&format!("strace-{}", policy.replace(':', "-")));
    let chan = dir.path(&format!("chan-{}", policy.replace(':', "-")));
    let o = out.display().to_string();
    let mut c = Spawn::role_under(
        &[
            "strace",
            "-f",
            "-c",
            "-e",
            "trace=msync,fsync,fdatasync",
            "-o",
            &o,
        ],
        "file_sync",
    )
    .arg("PATH", chan.display())
    .arg("CAP", 1 << 16)
    .arg("POLICY", policy)
    .arg("COUNT", count)
    .spawn(wd);
    c.event("done");
    c.expect_success();
    let _ = std::fs::remove_file(&chan);
    let table = std::fs::read_to_string(&out).expect("strace output");
    let calls = |name: &str| -> u64 {
        table
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.last() == Some(&name)).then(|| f[3].parse().unwrap_or(0))
            })
            .sum()
    };
    (calls("msync"), calls("fsync"), calls("fdatasync"))
}

#[test]
fn file_sync_policies_make_the_syncs_they_promise() {
    if !kit::strace_or_skip("it counts the syncs") {
        return;
    }
    let (wd, dir) = start("file_sync_counts", "strace");
    let n = 200;
    // Every commit: one per send, one at creation (before the file is named),
    // one at close; and the directory's fsync once named.
    assert_eq!(
        syncs_of(&wd, &dir, "every", n),
        (n + 2, 1, 0),
        "every commit"
    );
    // Every 10 messages (no time budget): n / 10, plus creation and close.
    assert_eq!(
        syncs_of(&wd, &dir, "periodic:0:10", n),
        (n / 10 + 2, 1, 0),
        "periodic"
    );
    assert_eq!(syncs_of(&wd, &dir, "none", n), (0, 0, 0), "none");
}

// ---------------------------------------------------------------------------
// Damaged, foreign, truncated and linked files

/// A file channel at `path` holding `n` messages, closed.
fn filled(path: &Path, n: u64, policy: Durability) {
    let mut tx =
        Sender::<Spsc>::create_file(path, &Options::new().capacity(4096).durability(policy))
            .expect("create_file");
    for seq in 0..n {
        tx.send(&msg::message(seq, 1, 24)).expect("send");
    }
}

fn open_rx(path: &Path) -> shmq::Result<Receiver<Spsc>> {
    Receiver::<Spsc>::open_file(path, &Options::new())
}

#[test]
fn foreign_damaged_and_versioned_files_are_clear_errors() {
    let dir = TempDir::new("damage");
    // Someone else's file.
    let foreign = dir.path("foreign");
    std::fs::write(&foreign, vec![0x5au8; 8192]).unwrap();
    let e = open_rx(&foreign).unwrap_err();
    assert!(
        matches!(e, Error::Segment(SegError::BadMagic { .. })),
        "{e}"
    );
    let short = dir.path("short");
    std::fs::write(&short, b"SHMQ").unwrap();
    let e = open_rx(&short).unwrap_err();
    assert!(
        matches!(e, Error::Segment(SegError::TooSmall { .. })),
        "{e}"
    );

    let path = dir.path("chan");
    let poke = |offset: u64, bytes: &[u8]| {
        filled(&path, 3, Durability::EveryCommit);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_at(bytes, offset).unwrap();
        let r = open_rx(&path);
        let _ = std::fs::remove_file(&path);
        r
    };
    // Another version.
    let e = poke(8, &9u32.to_le_bytes()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Segment(SegError::VersionMismatch { found: 9, .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("another version of shmq"), "{e}");
    // A durability policy no creator writes, and budgets on "every commit".
    let e = poke(64, &7u32.to_le_bytes()).unwrap_err();
    assert!(
        matches!(e, Error::Segment(SegError::Corrupt { what, .. }) if what.contains("durability policy")),
        "{e}"
    );
    let e = poke(72, &5u64.to_le_bytes()).unwrap_err();
    assert!(e.to_string().contains("durability"), "{e}");
    // A policy other than the opener asks for, said in words.
    filled(&path, 1, Durability::EveryCommit);
    let e = Receiver::<Spsc>::open_file(&path, &Options::new().durability(Durability::None))
        .unwrap_err();
    assert!(
        matches!(&e, Error::WrongDurability { .. }) && e.to_string().contains("every commit"),
        "{e}"
    );
    let _ = std::fs::remove_file(&path);

    // Random damage anywhere: an error or messages, never a signal, panic or hang.
    let seed = Rng::seed();
    let mut rng = Rng::new(seed);
    filled(&path, 40, Durability::None);
    let pristine = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let rounds = kit::env_or("SHMQ_FILE_DAMAGE_ROUNDS", 300u32);
    let (mut refused, mut opened) = (0, 0);
    for _ in 0..rounds {
        let mut image = pristine.clone();
        for _ in 0..rng.range(1, 9) {
            // Mostly the header and control block, sometimes anywhere.
            let hi = if rng.chance(0.7) {
                1024
            } else {
                image.len() as u64
            };
            // `range` includes its upper end.
            let at = rng.range(0, hi - 1) as usize;
            image[at] = rng.next_u64() as u8;
        }
        std::fs::write(&path, &image).unwrap();
        match open_rx(&path) {
            Err(_) => refused += 1,
            Ok(mut rx) => {
                opened += 1;
                for _ in 0..100 {
                    match rx.try_recv() {
                        Ok(m) => drop(m),
                        Err(_) => break,
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    println!("seed {seed}: {rounds} damaged files, {refused} refused, {opened} opened");
}

#[test]
fn a_truncated_file_is_an_error_not_sigbus() {
    let dir = TempDir::new("trunc");
    let path = dir.path("chan");
    let mut tx =
        Sender::<Spsc>::create_file(&path, &Options::new().capacity(1 << 16)).expect("create");
    tx.send(b"before").expect("send");
    // Another process (here: this one, through its own descriptor) truncates it.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(4096).unwrap();
    let mut outcome = Ok(());
    for i in 0..20_000u32 {
        if let Err(e) = tx.try_send(&i.to_le_bytes()) {
            outcome = Err(e);
            break;
        }
    }
    let e = outcome.expect_err("sending into a truncated file fails");
    assert!(matches!(e, Error::Corrupted(_)), "{e}");
    drop(tx);
    // Opened afresh: its header no longer matches its size.
    let e = open_rx(&path).unwrap_err();
    assert!(matches!(e, Error::Segment(_)), "{e}");
    f.set_len(0).unwrap();
    let e = open_rx(&path).unwrap_err();
    println!("an emptied file: {e}");
}

#[test]
fn a_full_file_system_is_no_space_at_creation() {
    if !kit::root_or_skip("a full file system: needs root to mount a small tmpfs") {
        return;
    }
    let (wd, dir) = start("full_disk", "full");
    let mut c = Spawn::role("full_disk")
        .arg("DIR", dir.0.display())
        .spawn(&wd);
    let ev = c.event_any(&["created", "skip"]);
    c.expect_success();
    if ev["event"] == "skip" {
        eprintln!("SKIP a full file system: {}", ev["why"]);
        return;
    }
    assert_eq!(ev["no_space"], json!(true), "{ev}");
    assert!(ev["error"].as_str().unwrap().contains("space"), "{ev}");
    assert_eq!(ev["exists"], json!(false), "{ev}");
    assert_eq!(ev["leftovers"], json!(0), "no temporary left: {ev}");
}

#[test]
fn a_symlink_is_refused() {
    let dir = TempDir::new("link");
    let path = dir.path("chan");
    filled(&path, 1, Durability::None);
    let link = dir.path("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let e = open_rx(&link).unwrap_err();
    assert!(
        matches!(&e, Error::Untrusted { reason } if reason.contains("symbolic link")),
        "{e}"
    );
    let e = Sender::<Spsc>::create_or_open_file(&link, &Options::new()).unwrap_err();
    assert!(matches!(&e, Error::Untrusted { .. }), "{e}");
    // A dangling one is not followed to create a file either.
    let dangling = dir.path("dangling");
    std::os::unix::fs::symlink(dir.path("nowhere"), &dangling).unwrap();
    let e = Sender::<Spsc>::create_file(&dangling, &Options::new()).unwrap_err();
    assert!(!dir.path("nowhere").exists(), "{e}");
    // And durability is refused on channels that are not files.
    let name = shmq::unique_name("t-durable").unwrap();
    let e = Sender::<Spsc>::create(&name, &Options::new().durability(Durability::EveryCommit))
        .unwrap_err();
    assert!(e.to_string().contains("file channels only"), "{e}");
}

#[test]
fn typed_and_mpsc_file_channels_resume() {
    let dir = TempDir::new("kinds");
    let path = dir.path("mpsc");
    let opts = Options::new().durability(Durability::Periodic {
        interval: Duration::from_millis(10),
        messages: 0,
    });
    {
        let mut a = shmq::mpsc::typed::Sender::<u64>::create_file(&path, &opts).unwrap();
        let mut b = a.try_clone().unwrap();
        for i in 0..10u64 {
            a.send(&i).unwrap();
            b.send(&(100 + i)).unwrap();
        }
        b.sync().unwrap();
    }
    let mut got = Vec::new();
    {
        let mut rx = shmq::mpsc::typed::Receiver::<u64>::open_file(&path, &Options::new()).unwrap();
        for _ in 0..5 {
            got.push(rx.recv().unwrap());
        }
    }
    let mut rx = shmq::mpsc::typed::Receiver::<u64>::open_file(&path, &Options::new()).unwrap();
    while let Ok(v) = rx.try_recv() {
        got.push(v);
    }
    got.sort_unstable();
    let want: Vec<u64> = (0..10).chain(100..110).collect();
    assert_eq!(got, want);
    let seg = Segment::peek_file(&path, &SegmentOptions::new()).unwrap();
    assert!(
        seg.sync_record().unwrap().syncs >= 2,
        "creation and the explicit sync"
    );
    drop(seg);
    drop(rx);
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------
// A sync is spent on messages moved, never on calls that moved nothing

/// Syncs the file channel at `path` has recorded so far (the durability
/// record's counter: one per completed sync, whichever end made it).
fn syncs_in(path: &Path) -> u64 {
    Segment::peek_file(path, &SegmentOptions::new())
        .expect("peek the file")
        .sync_record()
        .expect("a durability record")
        .syncs
}

/// A sender and a receiver of one new file channel at `path` with `policy`.
fn file_pair(path: &Path, policy: Durability) -> (Sender<Spsc>, Receiver<Spsc>) {
    let opts = Options::new().capacity(1 << 14).durability(policy);
    let rx = Receiver::<Spsc>::create_file(path, &opts).expect("create_file");
    let tx = Sender::<Spsc>::open_file(path, &Options::new()).expect("open_file");
    (tx, rx)
}

/// Closes `ends`, both ends of the drained file channel at `path`, and
/// asserts that the last close removed the file.
#[track_caller]
fn close_drained<T>(ends: T, path: &Path) {
    drop(ends);
    assert!(!path.exists(), "drained: removed by the last close");
}

/// One call of every kind that finds nothing to do, on each side: a batch
/// receive that returns 0, a `try_recv` and a `try_recv_into` that say
/// `Empty`, and a batch send of nothing (`Full` on SPSC).
fn idle_calls(tx: &mut Sender<Spsc>, rx: &mut Receiver<Spsc>) {
    let got = rx.try_recv_batch(16, |m| panic!("unexpected message {m:?}"));
    assert_eq!(got.expect("an empty batch"), 0);
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    assert!(matches!(
        rx.try_recv_into(&mut Vec::new()),
        Err(Error::Empty)
    ));
    assert!(matches!(
        tx.try_send_batch(std::iter::empty()),
        Err(Error::Full)
    ));
}

#[test]
fn every_commit_syncs_messages_not_empty_polls() {
    let dir = TempDir::new("idle");
    let path = dir.path("chan");
    let (mut tx, mut rx) = file_pair(&path, Durability::EveryCommit);
    let s0 = syncs_in(&path);
    let syncs = || syncs_in(&path) - s0;
    for _ in 0..1000 {
        idle_calls(&mut tx, &mut rx);
    }
    assert_eq!(syncs(), 0, "4000 calls that moved nothing made syncs");

    // A send, and a batch receive that takes it: one sync each.
    tx.send(b"one").expect("send");
    assert_eq!(syncs(), 1, "the send");
    let got = rx.try_recv_batch(16, |m| assert_eq!(m, b"one"));
    assert_eq!(got.expect("batch"), 1);
    assert_eq!(syncs(), 2, "the batch receive");
    for _ in 0..1000 {
        idle_calls(&mut tx, &mut rx);
    }
    assert_eq!(syncs(), 2, "empty polls after a message made syncs");

    // A lent message is released after its call: the receiver's next call
    // syncs the release, once, whatever that call finds.
    tx.send(b"two").expect("send");
    assert_eq!(syncs(), 3);
    let m = rx.try_recv().expect("a message");
    assert_eq!(&*m, b"two");
    drop(m);
    assert_eq!(syncs(), 3, "a sync before the guard released anything");
    for _ in 0..1000 {
        idle_calls(&mut tx, &mut rx);
    }
    assert_eq!(syncs(), 4, "the release is synced by the next call, once");

    // A reservation is committed after its call, and synced by the next one.
    let mut g = tx.try_reserve(5).expect("reserve");
    g.copy_from_slice(b"three");
    g.commit();
    assert_eq!(syncs(), 4, "a sync before the guard committed anything");
    for _ in 0..1000 {
        assert!(matches!(
            tx.try_send_batch(std::iter::empty()),
            Err(Error::Full)
        ));
    }
    assert_eq!(syncs(), 5, "the commit is synced by the next call, once");
    let mut buf = Vec::new();
    rx.try_recv_into(&mut buf).expect("the reserved message");
    assert_eq!(buf, b"three");
    assert_eq!(syncs(), 6, "a copying receive releases within its call");
    for _ in 0..1000 {
        idle_calls(&mut tx, &mut rx);
    }
    assert_eq!(syncs(), 6);
    close_drained((tx, rx), &path);

    // MPSC: a batch send of nothing is `Ok(0)`, a call that moved nothing.
    let path = dir.path("mpsc");
    let opts = Options::new().durability(Durability::EveryCommit);
    let mut rx = shmq::mpsc::Receiver::create_file(&path, &opts).expect("create_file");
    let mut tx = shmq::mpsc::Sender::open_file(&path, &Options::new()).expect("open_file");
    let s0 = syncs_in(&path);
    for _ in 0..1000 {
        assert_eq!(tx.try_send_batch(std::iter::empty()).expect("nothing"), 0);
        assert_eq!(rx.try_recv_batch(16, |_| ()).expect("nothing"), 0);
    }
    assert_eq!(syncs_in(&path) - s0, 0, "MPSC calls that moved nothing");
    close_drained((tx, rx), &path);
}

#[test]
fn periodic_message_budget_counts_messages_not_calls() {
    let dir = TempDir::new("budget");
    let path = dir.path("chan");
    let policy = Durability::Periodic {
        interval: Duration::from_secs(3600),
        messages: 10,
    };
    let (mut tx, mut rx) = file_pair(&path, policy);
    let s0 = syncs_in(&path);
    let syncs = || syncs_in(&path) - s0;
    // One message at a time, each received (a lent guard or a batch of one),
    // with empty polls on both sides in between.
    let n = 95;
    for seq in 0..n {
        tx.send(&msg::message(seq, 1, 24)).expect("send");
        if seq % 2 == 0 {
            let m = rx.try_recv().expect("a message");
            msg::check(&m).expect("intact");
        } else {
            let got = rx.try_recv_batch(4, |m| {
                msg::check(m).expect("intact");
            });
            assert_eq!(got.expect("batch"), 1);
        }
        for _ in 0..3 {
            idle_calls(&mut tx, &mut rx);
        }
    }
    assert_eq!(
        syncs(),
        2 * (n / 10),
        "one sync per 10 messages on each side"
    );
    // 5 messages wait on each side. A batch of 5 spends the budget; then a
    // batch of 12 spends it (synced at its end: a batch is not split).
    let five: Vec<Vec<u8>> = (0..5).map(|s| msg::message(s, 2, 24)).collect();
    assert_eq!(
        tx.try_send_batch(five.iter().map(Vec::as_slice))
            .expect("5"),
        5
    );
    assert_eq!(syncs(), 2 * (n / 10) + 1, "the sender's 10th message");
    assert_eq!(rx.try_recv_batch(64, |_| ()).expect("5"), 5);
    assert_eq!(syncs(), 2 * (n / 10) + 2, "the receiver's 10th message");
    let twelve: Vec<Vec<u8>> = (0..12).map(|s| msg::message(s, 3, 24)).collect();
    assert_eq!(
        tx.try_send_batch(twelve.iter().map(Vec::as_slice))
            .expect("12"),
        12
    );
    assert_eq!(rx.try_recv_batch(64, |_| ()).expect("12"), 12);
    assert_eq!(syncs(), 2 * (n / 10) + 4);
    for _ in 0..1000 {
        idle_calls(&mut tx, &mut rx);
    }
    assert_eq!(syncs(), 2 * (n / 10) + 4, "idle calls spent the budget");
    close_drained((tx, rx), &path);
}

#[test]
fn periodic_interval_syncs_only_what_moved() {
    let dir = TempDir::new("interval");
    let path = dir.path("chan");
    let interval = Duration::from_millis(200);
    let policy = Durability::Periodic {
        interval,
        messages: 0,
    };
    let (mut tx, mut rx) = file_pair(&path, policy);
    let s0 = syncs_in(&path);
    let syncs = || syncs_in(&path) - s0;
    let idle_for = |tx: &mut Sender<Spsc>, rx: &mut Receiver<Spsc>, d: Duration| {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            idle_calls(tx, rx);
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Longer than the interval, with nothing to sync: no sync.
    idle_for(&mut tx, &mut rx, interval + Duration::from_millis(100));
    assert_eq!(syncs(), 0, "idle calls past the interval made syncs");
    // The interval has run out on both sides: each one's message is synced
    // by the call that moved it.
    tx.send(b"one").expect("send");
    assert_eq!(rx.try_recv_batch(4, |_| ()).expect("one"), 1);
    assert_eq!(syncs(), 2);
    // Right after a sync: each side's next message is synced by that call
    // (if the interval ran out meanwhile, on a slow machine) or by its first
    // call after the interval (an idle one); either way once.
    tx.send(b"two").expect("send");
    assert_eq!(rx.try_recv_batch(4, |_| ()).expect("two"), 1);
    idle_for(&mut tx, &mut rx, interval + Duration::from_millis(100));
    assert_eq!(syncs(), 4, "each side's last message, synced once");
    idle_for(&mut tx, &mut rx, interval + Duration::from_millis(100));
    assert_eq!(syncs(), 4);
    close_drained((tx, rx), &path);
}

// ---------------------------------------------------------------------------
// Broadcast on a file

/// A broadcast file channel keeps what its publisher sent after the publisher
/// is gone (the last close does not remove a file whose ring retains
/// messages): a lossless subscriber that joins afterwards at the oldest
/// message receives every one in order, then `Empty` (a file channel is a
/// queue: it waits for the next publisher); a publisher that opens the file
/// again goes on after the last message. Subscribers are sessions
/// (docs/LIFECYCLE.md): a later subscriber joins anew, at the oldest message
/// the ring still holds.
#[test]
fn broadcast_file_channel_outlives_its_publisher() {
    use shmq::broadcast::{self, Join};
    let dir = TempDir::new("broadcast");
    let path = dir.path("ticks");
    let opts = Options::new()
        .capacity(1 << 16)
        .durability(Durability::Periodic {
            interval: Duration::from_millis(10),
            messages: 100,
        });
    let oldest = Options::new().join(Join::Oldest);
    {
        let mut tx = broadcast::typed::Publisher::<u64>::create_file(&path, &opts).unwrap();
        for i in 0..1000u64 {
            tx.send(&i).unwrap();
        }
    }
    assert!(path.exists(), "the publisher's close left the file");
    let mut rx = broadcast::typed::Subscriber::<u64>::open_file(&path, &oldest).unwrap();
    for i in 0..1000u64 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    drop(rx);
    assert!(path.exists(), "a subscriber's close left the file");
    {
        let mut tx = broadcast::typed::Publisher::<u64>::open_file(&path, &Options::new()).unwrap();
        tx.send(&1000).unwrap();
    }
    let mut rx = broadcast::typed::Subscriber::<u64>::open_file(&path, &oldest).unwrap();
    assert_eq!(
        rx.recv().unwrap(),
        0,
        "a new subscriber joins at the oldest retained"
    );
    let mut last = 0;
    while let Ok(v) = rx.try_recv() {
        assert_eq!(v, last + 1);
        last = v;
    }
    assert_eq!(last, 1000);
    let seg = Segment::peek_file(&path, &SegmentOptions::new()).unwrap();
    assert!(
        seg.sync_record().unwrap().syncs >= 10,
        "a sync per 100 messages"
    );
}

/// Bytes this process has caused to be sent to storage (`write_bytes` in
/// `/proc/self/io`).
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("read /proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

/// A receiver of a synced file channel leaves the message pages as the
/// producer's sync left them: its own syncs write the pages its position and
/// the header's sync record are on, never a message's page again. (An SPSC
/// consumer stores back a word of each line it frees, which on a synced file
/// made every receiver's sync write each 4 KiB message a second time: 40%
/// more bytes written in all. The facade turns that off on synced files.)
#[test]
fn a_synced_channel_writes_each_message_page_once() {
    let dir = TempDir::new("written");
    let path = dir.path("chan");
    let (mut tx, mut rx) = file_pair(&path, Durability::EveryCommit);
    let msg = vec![0x5a; 4000];
    let mut buf = Vec::new();
    let (mut sending, mut receiving) = (0, 0);
    let n = 200;
    for _ in 0..n {
        let b0 = bytes_written();
        tx.send(&msg).expect("send");
        let b1 = bytes_written();
        rx.recv_into(&mut buf).expect("recv");
        let b2 = bytes_written();
        assert_eq!(buf, msg);
        sending += b1 - b0;
        receiving += b2 - b1;
    }
    eprintln!(
        "per message: sending {} B, receiving {} B",
        sending / n,
        receiving / n
    );
    if sending == 0 {
        eprintln!("skipped: this file system reports no bytes written ({path:?})");
        return;
    }
    assert!(
        receiving < sending,
        "the receiver's syncs wrote {receiving} bytes, the sender's {sending}"
    );
}
