//! End-to-end tests of the `shmq` binary: every subcommand, run as a user would,
//! against real segments in `/dev/shm`.
//!
//! Every test uses names from `shmq::unique_name("cli-test…")`, removes what it
//! made (a [`Cleanup`] guard unlinks even when an assertion fails) and reaps
//! every child it starts ([`Child`] kills and waits on drop). Time-outs are only
//! there to turn a hang into a failure; nothing asserts a duration.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use predicates::prelude::*;
use serde_json::Value;
use shmq::inspect::{EndpointStatus, Report, RingReport};

/// Generous limit for anything to happen: only catches hangs.
const PATIENCE: Duration = Duration::from_secs(60);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shmq")
}

/// `shmq` with a hang-catching time-out; output is plain (stdout is a pipe).
fn shmq() -> Command {
    let mut c = Command::new(bin());
    c.timeout(PATIENCE);
    c
}

/// Runs `shmq ARGS`, which must succeed, for more assertions on its output.
fn succeeds(args: &[&str]) -> Assert {
    shmq().args(args).assert().success()
}

/// A long-running `shmq` child process.
fn spawn(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.args(args).stderr(Stdio::inherit());
    c
}

fn name(tag: &str) -> String {
    shmq::unique_name(&format!("cli-test-{tag}")).expect("unique name")
}

/// A fresh name after `tag`, and what unlinks its segment at the end.
fn named(tag: &str) -> (String, Cleanup) {
    let n = name(tag);
    (n.clone(), Cleanup(vec![n]))
}

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}

/// Unlinks its segments when dropped, whatever happened.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmq::inspect::unlink(n);
        }
    }
}

/// A child process that is killed and reaped when dropped.
struct Child(Option<std::process::Child>);

impl Child {
    fn start(cmd: &mut std::process::Command) -> Child {
        Child(Some(cmd.spawn().expect("spawn shmq")))
    }

    fn inner(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child not reaped yet")
    }

    /// Waits for it to exit (panicking after [`PATIENCE`]) and reaps it.
    fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.inner().try_wait().expect("try_wait") {
                self.0 = None;
                return status;
            }
            assert!(started.elapsed() < PATIENCE, "child did not exit in time");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        self.inner().kill().expect("kill");
        self.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls until `ok` holds, panicking after [`PATIENCE`].
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn report(name: &str) -> Option<Report> {
    shmq::inspect::inspect(name).ok().flatten()
}

fn endpoint_status(name: &str, index: usize) -> Option<EndpointStatus> {
    report(name).and_then(|r| r.endpoints.get(index).map(|e| e.status))
}

/// Starts `shmq send NAME` with its stdin kept open (returned), and waits until
/// its producer is attached: a channel with a live endpoint.
fn live_sender(name: &str) -> (Child, std::process::ChildStdin) {
    let mut child = Child::start(spawn(&["send", name]).stdin(Stdio::piped()));
    let stdin = child.inner().stdin.take().expect("stdin");
    wait_until("the producer to attach", || {
        endpoint_status(name, 1) == Some(EndpointStatus::Alive)
    });
    (child, stdin)
}

/// Whether `name`'s ring can be read and satisfies `ok`.
fn ring_is(name: &str, ok: impl Fn(&RingReport) -> bool) -> bool {
    report(name).and_then(|r| r.ring).is_some_and(|v| ok(&v))
}

/// Writes `lines` to a live sender and waits until the ring holds `count`
/// messages.
fn feed(name: &str, stdin: &mut std::process::ChildStdin, lines: &str, count: u64) {
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_until("the messages in the ring", || {
        ring_is(name, |v| v.messages == count)
    });
}

/// Makes a stale channel: a sender that sent `lines` and exited.
fn stale_channel(name: &str, lines: &str) {
    shmq()
        .args(["send", name])
        .write_stdin(lines)
        .assert()
        .success();
    assert!(
        shm_path(name).exists(),
        "undelivered messages keep the segment"
    );
}

/// The row of `ls` output that starts with `name`.
fn ls_row(name: &str) -> String {
    let out = stdout_of(&["ls"]);
    let text = String::from_utf8(out).expect("utf-8");
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not listed in:\n{text}"))
        .to_owned()
}

fn ls_json(name: &str) -> Value {
    let out = stdout_of(&["ls", "--json", "--prefix", name]);
    let all: Value = serde_json::from_slice(&out).expect("ls --json is JSON");
    let found: Vec<&Value> = all
        .as_array()
        .expect("an array")
        .iter()
        .filter(|v| v["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{all}");
    found[0].clone()
}

fn inspect_json(name: &str) -> Value {
    let out = stdout_of(&["inspect", "--json", name]);
    serde_json::from_slice(&out).expect("inspect --json is JSON")
}

/// Overwrites bytes of a segment's file, as a buggy or hostile peer could.
fn corrupt(name: &str, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .expect("open segment file");
    f.write_all_at(bytes, offset).expect("write");
}

/// A broadcast channel named after `tag`, of `capacity` bytes with room for
/// `max_subscribers`: its name, what removes it, and its publisher.
fn publisher(
    tag: &str,
    capacity: u64,
    max_subscribers: u16,
) -> (String, Cleanup, shmq::broadcast::Publisher) {
    let (n, cleanup) = named(tag);
    let o = shmq::Options::new()
        .capacity(capacity)
        .max_subscribers(max_subscribers);
    let tx = shmq::broadcast::Publisher::create(&n, &o).expect("create");
    (n, cleanup, tx)
}

/// `shmq args` succeeds, says it removed `name`, and `name` is gone.
fn removes(args: &[&str], name: &str) {
    succeeds(args).stdout(predicate::str::contains(format!("removed {name}")));
    assert!(!shm_path(name).exists());
}

fn no_panic() -> impl Predicate<str> {
    predicate::str::contains("panicked").not()
}

/// What `shmq ARGS` writes to stdout; it must succeed.
fn stdout_of(args: &[&str]) -> Vec<u8> {
    succeeds(args).get_output().stdout.clone()
}

/// Runs `shmq ARGS` with `input` on stdin: it must exit with status 1 and a
/// one-line error containing `words`, and not panic.
fn fails_with(args: &[&str], input: &str, words: &str) {
    shmq()
        .args(args)
        .write_stdin(input)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(words).and(no_panic()));
}

#[test]
fn ls_shows_a_live_segment_and_a_killed_producer_as_dead() {
    let (n, _cleanup) = named("ls");
    let (mut sender, mut stdin) = live_sender(&n);
    feed(&n, &mut stdin, "one\ntwo\n", 2);

    let row = ls_row(&n);
    assert!(row.contains("spsc/bytes"), "{row}");
    assert!(row.contains("alive"), "{row}");
    assert!(row.contains("live"), "{row}");
    let j = ls_json(&n);
    assert_eq!(j["producers"][0]["status"], "alive");
    assert_eq!(j["consumer"]["status"], "never");
    assert_eq!(j["messages"], 2);
    assert_eq!(j["stale"], false);
    assert_eq!(j["damaged"], false);

    sender.kill(); // SIGKILL: no chance to close
    drop(stdin);
    let row = ls_row(&n);
    assert!(row.contains("dead"), "{row}");
    assert!(row.contains("stale"), "{row}");
    let j = ls_json(&n);
    assert_eq!(j["producers"][0]["status"], "dead");
    assert_eq!(j["stale"], true);
    assert_eq!(j["messages"], 2, "messages survive the producer");
}

#[test]
fn ls_skips_foreign_objects_and_lists_damaged_segments() {
    let foreign = name("foreign");
    let damaged = name("damaged");
    let _cleanup = Cleanup(vec![foreign.clone(), damaged.clone()]);
    std::fs::write(shm_path(&foreign), vec![0x5a; 4096]).unwrap();
    stale_channel(&damaged, "x\n");
    corrupt(&damaged, 8, &7u32.to_le_bytes()); // the version field

    let out = stdout_of(&["ls"]);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains(&foreign), "foreign object listed:\n{text}");
    let row = ls_row(&damaged);
    assert!(row.contains("damaged"), "{row}");
    assert!(
        text.contains(&format!("{damaged}: header version: expected 3, found 7")),
        "{text}"
    );

    // Every command refuses the foreign object with one line, and leaves it alone.
    for args in [
        vec!["inspect", foreign.as_str()],
        vec!["rm", foreign.as_str()],
        vec!["rm", "--force", foreign.as_str()],
        vec!["top", "--count", "1", foreign.as_str()],
    ] {
        fails_with(&args, "", "not a shmq segment");
    }
    succeeds(&["gc", "--prefix", &foreign]).stdout("no stale segments\n");
    assert!(shm_path(&foreign).exists());
}

#[test]
fn inspect_names_a_damaged_header() {
    let (n, _cleanup) = named("inspect-hdr");
    stale_channel(&n, "a\nb\nc\n");
    let healthy = succeeds(&["inspect", &n]);
    let text = String::from_utf8(healthy.get_output().stdout.clone()).unwrap();
    assert!(text.contains("none: the segment is healthy"), "{text}");
    assert!(text.contains("3 (3 B of payload)"), "{text}");

    corrupt(&n, 8, &99u32.to_le_bytes());
    succeeds(&["inspect", &n]).stdout(
        predicate::str::contains("header version: expected 3, found 99")
            .and(predicate::str::contains(
                "99  <- expected 3 (another layout version",
            ))
            .and(predicate::str::contains("damaged")),
    );
    // Another version's other fields are not read as this version's: the
    // version is the one finding.
    let j = inspect_json(&n);
    assert_eq!(j["problems"].as_array().map(Vec::len), Some(1), "{j}");
    // The channel commands refuse it with one line; nothing panics.
    for args in [vec!["recv", "--count", "1", &n], vec!["send", &n]] {
        fails_with(&args, "z\n", "made by another version of shmq");
    }

    // Back to this version: a second damaged field is named too, not only the
    // first one found.
    corrupt(&n, 8, &3u32.to_le_bytes()); // this build's layout version
    corrupt(&n, 12, &0xdeadu32.to_le_bytes()); // the state field
    corrupt(&n, 16, &0u16.to_le_bytes()); // the kind field
    succeeds(&["inspect", &n]).stdout(
        predicate::str::contains("header state: expected ready, found 0xdead").and(
            predicate::str::contains("header kind: expected not 0, found 0"),
        ),
    );
    let j = inspect_json(&n);
    assert_eq!(j["damaged"], true);
    assert_eq!(j["header"]["version"], 3);
    assert_eq!(j["problems"].as_array().map(Vec::len), Some(2), "{j}");
    // The ring cannot be read, so whether the producer closed or died is unknown.
    assert_eq!(ls_json(&n)["producers"][0]["status"], "gone");
    assert!(j["ring"].is_null(), "an invalid header hides the ring: {j}");
    for args in [vec!["recv", "--count", "1", &n], vec!["send", &n]] {
        fails_with(&args, "z\n", "damaged");
    }
}

#[test]
fn inspect_names_a_damaged_frame() {
    let (n, _cleanup) = named("inspect-frame");
    stale_channel(&n, "hello\nworld\n");
    let data_offset = inspect_json(&n)["header"]["data_offset"]
        .as_u64()
        .expect("data_offset");
    // The first frame header: the data area follows the SPSC control block.
    let first_frame = data_offset + shmq_ring::spsc::CONTROL_LEN as u64;
    corrupt(&n, first_frame, &0xdead_beef_0000_0005u64.to_le_bytes());

    succeeds(&["inspect", &n]).stdout(
        predicate::str::contains(
            "frame at position 0: expected a valid frame header, \
             found 0xdeadbeef00000005 (unknown frame tag)",
        )
        .and(predicate::str::contains("damaged")),
    );
    let j = inspect_json(&n);
    let problems = j["problems"].to_string();
    assert!(problems.contains("unknown frame tag"), "{problems}");
    let row = ls_row(&n);
    assert!(row.contains("damaged"), "{row}");

    // A receiver reports the corruption instead of passing garbage on.
    fails_with(&["recv", &n], "", "corrupted");
}

#[test]
fn rm_refuses_a_live_segment_unless_forced() {
    let (n, _cleanup) = named("rm");
    let (mut sender, _stdin) = live_sender(&n);

    shmq().args(["rm", &n]).assert().code(1).stderr(
        predicate::str::contains("refusing to remove").and(predicate::str::contains("--force")),
    );
    assert!(shm_path(&n).exists());

    succeeds(&["rm", "--force", &n]).stdout(predicate::str::starts_with(format!("removed {n}")));
    assert!(!shm_path(&n).exists());
    sender.kill();

    // A stale one goes without --force; a missing one is a one-line error.
    stale_channel(&n, "x\n");
    succeeds(&["rm", &n]);
    assert!(!shm_path(&n).exists());
    fails_with(&["rm", &n], "", "not found");
}

#[test]
fn gc_removes_only_stale_segments() {
    let base = name("gc");
    let (stale, live) = (format!("{base}-stale"), format!("{base}-live"));
    let _cleanup = Cleanup(vec![stale.clone(), live.clone()]);
    stale_channel(&stale, "left\nbehind\n");
    let (mut sender, _stdin) = live_sender(&live);

    succeeds(&["gc", "--dry-run", "--discard-messages", "--prefix", &base]).stdout(
        predicate::str::contains(format!("would remove {stale}"))
            .and(predicate::str::contains(&live).not()),
    );
    assert!(shm_path(&stale).exists(), "--dry-run removes nothing");

    let out = stdout_of(&["gc", "--json", "--discard-messages", "--prefix", &base]);
    let actions: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(actions.as_array().map(Vec::len), Some(1), "{actions}");
    assert_eq!(actions[0]["name"], stale.as_str());
    assert_eq!(actions[0]["action"], "removed");
    assert!(!shm_path(&stale).exists());
    assert!(shm_path(&live).exists(), "gc must not touch a live segment");

    sender.kill();
    // Its producer died: now the live one is stale too.
    removes(&["gc", "--prefix", &base], &live);
}

#[test]
fn gc_reports_and_rm_removes_leftovers_of_interrupted_creates() {
    // What an older shmq's creator left when killed between `shm_open` and its
    // header: an empty object, or a zero-filled one. And someone else's object.
    let base = name("leftover");
    let (empty, zero, other) = (
        format!("{base}-empty"),
        format!("{base}-zero"),
        format!("{base}-other"),
    );
    let _cleanup = Cleanup(vec![empty.clone(), zero.clone(), other.clone()]);
    std::fs::write(shm_path(&empty), b"").unwrap();
    std::fs::write(shm_path(&zero), vec![0u8; 8192]).unwrap();
    std::fs::write(shm_path(&other), b"not a segment, not a leftover: leave me").unwrap();

    let out = stdout_of(&["gc", "--json", "--prefix", &base]);
    let actions: Value = serde_json::from_slice(&out).unwrap();
    let leftovers: Vec<&str> = actions
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "leftover")
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(leftovers, [empty.as_str(), zero.as_str()], "{actions}");
    for n in [&empty, &zero, &other] {
        assert!(shm_path(n).exists(), "gc must only report {n}");
    }
    // `ls` lists no segment here, but says what else there is.
    succeeds(&["ls", "--prefix", &base]).stdout(predicate::str::contains(
        "2 leftover(s) of interrupted creates",
    ));

    // An empty one that nobody has open goes without --force; a zero-filled one
    // needs it; someone else's object is never removed.
    removes(&["rm", &empty], &empty);
    shmq().args(["rm", &zero]).assert().code(1).stderr(
        predicate::str::contains("refusing to remove").and(predicate::str::contains("--force")),
    );
    assert!(shm_path(&zero).exists());
    succeeds(&["rm", "--force", &zero]);
    assert!(!shm_path(&zero).exists());
    fails_with(&["rm", "--force", &other], "", "not a shmq segment");
    assert!(shm_path(&other).exists());
}

#[test]
fn gc_lists_the_temporary_of_a_dead_creator_and_ls_does_not() {
    // A named temporary whose creator died (nobody holds its lock), made from a
    // real (stale) segment renamed, as a creator killed just before publishing
    // leaves it. Only `--dry-run` without a prefix here: a real gc of all
    // /dev/shm would touch other tests' segments.
    let src = name("tmpsrc");
    let tmp = format!("/.shmq-tmp-{}", &src["/cli-test-tmpsrc-".len()..]);
    let _cleanup = Cleanup(vec![src.clone(), tmp.clone()]);
    let plant = || {
        stale_channel(&src, "x\n");
        std::fs::rename(shm_path(&src), shm_path(&tmp)).unwrap();
    };
    // Another test's clean-up may remove this dead temporary while we look:
    // plant it again then (a few times at most).
    let mut listed = false;
    for _ in 0..5 {
        plant();
        let ls = stdout_of(&["ls"]);
        let out = stdout_of(&["gc", "--dry-run"]);
        if !shm_path(&tmp).exists() {
            continue;
        }
        assert!(
            !String::from_utf8_lossy(&ls).contains(&tmp),
            "ls lists a temporary as a segment"
        );
        assert!(
            String::from_utf8_lossy(&out).contains(&format!("would remove {tmp}")),
            "a dead temporary not listed: {}",
            String::from_utf8_lossy(&out)
        );
        listed = true;
        break;
    }
    assert!(listed, "the dead temporary kept vanishing");
}

/// Repetitions of a stress loop: `var` from the environment, else `default`
/// (small, for CI; docs/RELIABILITY.md gives the long values).
fn runs(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn gc_keeps_messages_waiting_for_a_consumer() {
    let base = name("gc-keep");
    let (kept, dropped) = (format!("{base}-kept"), format!("{base}-dropped"));
    let _cleanup = Cleanup(vec![kept.clone(), dropped.clone()]);
    // A producer sends and exits before any consumer has attached.
    let lines = numbered_lines(5);
    stale_channel(&kept, &lines);
    let bytes: usize = lines.lines().map(str::len).sum();
    let why =
        format!("5 messages ({bytes} bytes) waiting for a consumer; --discard-messages removes it");

    succeeds(&["gc", "--dry-run", "--prefix", &base]).stdout(
        predicate::str::contains(format!("would keep {kept}")).and(predicate::str::contains(&why)),
    );
    succeeds(&["gc", "--prefix", &base]).stdout(
        predicate::str::contains(format!("kept {kept}")).and(predicate::str::contains(&why)),
    );
    let out = stdout_of(&["gc", "--json", "--prefix", &base]);
    let actions: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(actions[0]["action"], "kept", "{actions}");
    assert!(
        shm_path(&kept).exists(),
        "gc must keep undelivered messages"
    );

    // A consumer started afterwards receives every one of them.
    let got = stdout_of(&["recv", &kept, "--count", "5"]);
    assert_eq!(String::from_utf8(got).unwrap(), lines);

    // Removing them takes the explicit flag.
    stale_channel(&dropped, "doomed\n");
    removes(
        &["gc", "--discard-messages", "--prefix", &dropped],
        &dropped,
    );
}

#[test]
fn gc_racing_senders_loses_no_message() {
    // A sender that sends and exits while gc runs: gc decides under the
    // segment's lock, so either the sender is still attached (kept) or its
    // messages are in the ring (kept); every consumer gets its line.
    let base = name("gc-race");
    let n = runs("SHMQ_GC_RACE_RUNS", 5);
    let names: Vec<String> = (0..n).map(|i| format!("{base}-{i}")).collect();
    let _cleanup = Cleanup(names.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let (stop, base) = (stop.clone(), base.clone());
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let st = std::process::Command::new(bin())
                    .args(["gc", "--prefix", &base])
                    .stdout(Stdio::null())
                    .status()
                    .expect("run gc");
                assert!(st.code().is_some(), "gc died: {st}");
            }
        })
    };
    for ch in &names {
        shmq()
            .args(["send", ch])
            .write_stdin(format!("{ch}\n"))
            .assert()
            .success();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    gc.join().expect("gc loop");
    for ch in &names {
        let got = stdout_of(&["recv", ch, "--count", "1"]);
        assert_eq!(String::from_utf8(got).unwrap(), format!("{ch}\n"));
    }
}

#[test]
fn tools_survive_an_owner_truncating_the_segment() {
    // The owner of a valid segment shrinks and regrows it while `ls`, `inspect`,
    // `gc --dry-run` and `top` read it: they copy what they read (pread), so none
    // may die by a signal (SIGBUS from a mapping).
    let (n, _cleanup) = named("truncate");
    // Messages over many pages, so that reading the ring touches them all.
    let lines: String = (0..2000).map(|i| format!("{i:0>200}\n")).collect();
    stale_channel(&n, &lines);
    let image = std::fs::read(shm_path(&n)).expect("read the segment");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let truncator = {
        let (stop, path) = (stop.clone(), shm_path(&n));
        thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.set_len(4096).expect("shrink");
                thread::yield_now();
                f.set_len(image.len() as u64).expect("regrow");
                f.write_all_at(&image, 0).expect("restore");
            }
        })
    };
    let runs = runs("SHMQ_TRUNCATE_RUNS", 20);
    let mut deaths = Vec::new();
    for _ in 0..runs {
        for args in [
            &["ls", "--prefix", n.as_str()][..],
            &["inspect", n.as_str()],
            &["gc", "--dry-run", "--prefix", n.as_str()],
            &["top", n.as_str(), "--count", "1", "--interval", "1ms"],
        ] {
            let st = std::process::Command::new(bin())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run shmq");
            if st.code().is_none() {
                deaths.push(format!("shmq {}: {st}", args.join(" ")));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    truncator.join().expect("truncator");
    assert!(
        deaths.is_empty(),
        "{} of {} runs died by a signal: {deaths:?}",
        deaths.len(),
        runs * 4
    );
}

#[test]
fn send_refuses_an_endless_line_without_buffering_it() {
    // 10 MB without a newline into a 4 KiB channel: refused once the line is
    // known to be too long, having read little of it (the writer hits a closed
    // pipe long before the end), with an error naming the limit; not a signal.
    const TOTAL: usize = 10 << 20;
    let (n, _cleanup) = named("pipe-endless");
    let mut child = Child::start(
        spawn(&["send", &n, "--capacity", "4096"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = child.inner().stdin.take().expect("stdin");
    let mut stderr = child.inner().stderr.take().expect("stderr");
    let writer = thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 16];
        let mut written = 0;
        while written < TOTAL {
            match stdin.write(&chunk) {
                Ok(k) => written += k,
                Err(_) => break,
            }
        }
        written
    });
    let mut err = String::new();
    stderr.read_to_string(&mut err).expect("read stderr");
    let status = child.wait();
    let written = writer.join().expect("writer");
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status}; stderr: {err}"
    );
    assert!(
        err.contains("line 1 is longer than this channel's largest message")
            && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        written < TOTAL,
        "send read the whole line ({written} bytes) before refusing it"
    );
    assert!(
        report(&n)
            .and_then(|r| r.ring)
            .is_none_or(|v| v.messages == 0),
        "nothing was sent"
    );
}

fn numbered_lines(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

/// `shmq send` and `shmq recv --count 100000` carry 100000 lines exactly,
/// whichever starts first (the first one creates the channel).
fn pipe_100000_lines(tag: &str, sender_first: bool) {
    let (n, _cleanup) = named(tag);
    let input = numbered_lines(100_000);
    let start_sender = || {
        let mut sender = Child::start(spawn(&["send", &n]).stdin(Stdio::piped()));
        let mut stdin = sender.inner().stdin.take().unwrap();
        let feed = input.clone();
        // The ring fills long before the input ends: feed from a thread.
        (
            sender,
            thread::spawn(move || stdin.write_all(feed.as_bytes())),
        )
    };
    let start_receiver = || {
        let mut receiver =
            Child::start(spawn(&["recv", &n, "--count", "100000"]).stdout(Stdio::piped()));
        let mut stdout = receiver.inner().stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        (receiver, reader)
    };
    let ((mut sender, writer), (mut receiver, reader)) = if sender_first {
        let sending = start_sender();
        wait_until("the sender to create the channel", || {
            endpoint_status(&n, 1).is_some()
        });
        (sending, start_receiver())
    } else {
        let receiving = start_receiver();
        wait_until("the receiver to attach", || {
            endpoint_status(&n, 0) == Some(EndpointStatus::Alive)
        });
        (start_sender(), receiving)
    };
    writer.join().unwrap().expect("feed the sender");
    let out = reader.join().unwrap().expect("read the receiver's output");
    assert!(sender.wait().success());
    assert!(receiver.wait().success());
    assert!(out == input.as_bytes(), "output differs from input");
    assert!(
        !shm_path(&n).exists(),
        "a drained, closed channel removes itself"
    );
}

#[test]
fn send_then_recv_reproduces_100000_lines() {
    pipe_100000_lines("pipe-send-first", true);
}

#[test]
fn recv_then_send_reproduces_100000_lines() {
    pipe_100000_lines("pipe-recv-first", false);
}

#[test]
fn recv_without_count_stops_when_the_sender_is_gone() {
    let (n, _cleanup) = named("pipe-eof");
    // Empty lines, an unterminated last line (it gains a newline), long lines.
    let long = "x".repeat(10_000);
    let input = format!("first\n\n{long}\nlast");
    stale_channel(&n, &input);
    succeeds(&["recv", &n]).stdout(format!("{input}\n"));
    assert!(!shm_path(&n).exists());
}

#[test]
fn recv_fails_when_the_sender_dies_and_closes_on_ctrl_c() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let (n, _cleanup) = named("pipe-died");
    let (mut sender, mut stdin) = live_sender(&n);
    feed(&n, &mut stdin, "before the crash\n", 1);
    let mut receiver = Child::start(
        spawn(&["recv", &n])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let streams = (
        receiver.inner().stdout.take(),
        receiver.inner().stderr.take(),
    );
    wait_until("the receiver to take the message", || {
        ring_is(&n, |v| v.received == 1)
    });
    sender.kill();
    drop(stdin);
    let status = receiver.wait();
    let mut out = String::new();
    let mut err = String::new();
    streams.0.expect("stdout").read_to_string(&mut out).unwrap();
    streams.1.expect("stderr").read_to_string(&mut err).unwrap();
    assert_eq!(
        out, "before the crash\n",
        "everything committed is delivered"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "a dead sender may have been cut short"
    );
    assert!(err.contains("the sender died"), "{err}");

    // Ctrl-C: the receiver closes its end (closed, not dead) and exits 130.
    let (n, _cleanup2) = named("pipe-int");
    let mut receiver = Child::start(spawn(&["recv", &n]).stdout(Stdio::null()));
    wait_until("the receiver to attach", || {
        endpoint_status(&n, 0) == Some(EndpointStatus::Alive)
    });
    let pid = Pid::from_raw(receiver.inner().id() as i32);
    kill(pid, Signal::SIGINT).expect("SIGINT");
    assert_eq!(receiver.wait().code(), Some(130));
    assert!(
        !shm_path(&n).exists(),
        "a cleanly closed, empty channel removes itself"
    );
}

#[test]
fn raw_mode_carries_any_bytes() {
    let (n, _cleanup) = named("pipe-raw");
    let input: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    let mut receiver =
        Child::start(spawn(&["recv", &n, "--raw", "--capacity", "8192"]).stdout(Stdio::piped()));
    let mut stdout = receiver.inner().stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    shmq()
        .args(["send", &n, "--raw", "--chunk", "1000", "--capacity", "8192"])
        .write_stdin(input.clone())
        .assert()
        .success();
    let out = reader.join().unwrap().unwrap();
    assert!(receiver.wait().success());
    assert!(out == input, "raw bytes differ");
}

#[test]
fn send_refuses_what_cannot_fit() {
    let (n, _cleanup) = named("pipe-big");
    let line = format!("{}\n", "y".repeat(100));
    fails_with(
        &["send", &n, "--capacity", "128"],
        &line,
        "line 1 is 100 bytes",
    );
    fails_with(
        &["send", &n, "--raw", "--chunk", "4096", "--capacity", "128"],
        "z",
        "--chunk 4096",
    );
}

#[test]
fn recv_timeout_gives_up() {
    let (n, _cleanup) = named("pipe-timeout");
    fails_with(&["recv", &n, "--timeout", "200ms"], "", "no message for");
}

#[test]
fn top_prints_n_refreshes_of_rates() {
    let (n, _cleanup) = named("top");
    let (mut sender, mut stdin) = live_sender(&n);
    feed(&n, &mut stdin, &numbered_lines(100), 100);

    let out = stdout_of(&["top", &n, "--count", "3", "--interval", "100ms"]);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and 3 rows:\n{text}");
    assert!(
        lines[0].contains("MSG/S") && lines[0].contains("BYTES/S"),
        "{text}"
    );
    for row in &lines[1..] {
        assert!(row.contains("alive") && row.contains("B/s"), "{row}");
    }

    let out = stdout_of(&["top", &n, "--count", "2", "--interval", "50ms", "--json"]);
    let rows: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r["messages_per_sec"].is_number(), "{r}");
        assert!(r["bytes_per_sec"].is_number(), "{r}");
        assert_eq!(r["messages"], 100);
        assert_eq!(r["producers"], "alive");
    }
    sender.kill();
}

#[test]
fn top_ends_cleanly_on_ctrl_c() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let (n, _cleanup) = named("top-int");
    stale_channel(&n, "x\n");
    let mut top = Child::start(spawn(&["top", &n, "--interval", "50ms"]).stdout(Stdio::piped()));
    let mut stdout = top.inner().stdout.take().unwrap();
    // Wait for the header and a first row, so the handler is surely installed.
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while seen.iter().filter(|&&b| b == b'\n').count() < 2 {
        let k = stdout.read(&mut buf).expect("read top's output");
        assert!(k > 0, "top exited early");
        seen.extend_from_slice(&buf[..k]);
    }
    let pid = Pid::from_raw(top.inner().id() as i32);
    kill(pid, Signal::SIGINT).expect("SIGINT");
    assert_eq!(top.wait().code(), Some(0), "Ctrl-C ends top with status 0");
}

/// The `shmq-bench` program next to the `shmq` under test, if it was built
/// (`cargo build --workspace` builds it; `cargo test -p shmq-cli` alone does not).
fn bench_bin() -> Option<PathBuf> {
    let p = PathBuf::from(bin()).with_file_name("shmq-bench");
    p.is_file().then_some(p)
}

#[test]
fn bench_takes_the_pingpong_flags() {
    let Some(bench) = bench_bin() else {
        eprintln!("shmq-bench is not built next to shmq: only the pass-through is tested");
        return;
    };
    // Found next to shmq, whatever SHMQ_BENCH and PATH say in the caller's shell.
    shmq()
        .env_remove("SHMQ_BENCH")
        .args(["bench", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("--iters")
                .and(predicate::str::contains("--size"))
                .and(predicate::str::contains("--transport"))
                .and(predicate::str::contains("--json"))
                .and(predicate::str::contains("--plot")),
        );
    shmq()
        .env("SHMQ_BENCH", &bench)
        .args(["bench", "--iters", "many"])
        .assert()
        .code(2);
}

#[test]
fn bench_passes_its_arguments_through_and_names_a_missing_program() {
    let dir = std::env::temp_dir().join(format!("shmq-cli-test-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("shmq-bench");
    std::fs::write(&fake, "#!/bin/sh\necho \"args: $*\"\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    shmq()
        .env("SHMQ_BENCH", &fake)
        .args(["bench", "--size", "8,64", "--help", "-x"])
        .assert()
        .code(3)
        .stdout("args: --size 8,64 --help -x\n");

    let missing = dir.join("not-there");
    shmq()
        .env("SHMQ_BENCH", &missing)
        .arg("bench")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot run").and(predicate::str::contains("not-there")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_are_one_line_and_usage_errors_exit_2() {
    let long_name = format!("/{}", "x".repeat(300));
    for args in [
        vec!["inspect", "no-slash"],
        // ("/a/b" is a file channel's path now: `not found`.)
        vec!["inspect", &long_name],
        vec!["rm", ""],
        vec!["recv", "bad", "--count", "1"],
        vec!["top", "/", "--count", "1"],
    ] {
        let a = shmq().args(&args).assert().code(1);
        let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
        assert!(
            err.starts_with("shmq: invalid segment name"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    let missing = name("missing");
    shmq()
        .args(["inspect", &missing])
        .assert()
        .code(1)
        .stderr(format!("shmq: segment {missing} not found\n"));
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["inspect"],
        vec!["recv", "/x", "--count", "lots"],
        vec!["top", "/x", "--interval", "0"],
        vec!["send", "/x", "--chunk", "10"],
    ] {
        shmq().args(&args).assert().code(2);
    }
}

/// The message type of the typed-channel tests: the kit's, 16 bytes, align 8,
/// named `shmq.test.Stamp` at version 3.
use shmq_testkit::Stamp;

/// A typed channel's message type is shown in words: `ls` names it in its TYPE
/// column, `inspect` in a row of its own and in its JSON; a damaged type name
/// field is a finding in words.
#[test]
fn ls_and_inspect_name_the_message_type() {
    let n = name("msgtype");
    let u = name("msgtype-u64");
    let _cleanup = Cleanup(vec![n.clone(), u.clone()]);
    let o = shmq::Options::new().capacity(8);
    let mut tx = shmq::spsc::declared::Sender::<Stamp>::create(&n, &o).expect("create");
    tx.send(&Stamp { seq: 1, from: 2 }).expect("send");
    let plain = shmq::mpsc::typed::Receiver::<u64>::create(&u, &o).expect("create");

    assert!(ls_row(&n).contains("shmq.test.Stamp v3"), "{}", ls_row(&n));
    assert!(ls_row(&u).contains(" u64 "), "{}", ls_row(&u));
    let text = String::from_utf8(stdout_of(&["inspect", &n])).expect("utf-8");
    assert!(
        text.contains("message type        \"shmq.test.Stamp\" v3 (16 bytes, align 8)"),
        "{text}"
    );
    assert!(text.contains("1 (declared name and version)"), "{text}");
    let j = inspect_json(&n);
    assert_eq!(j["message_type"]["name"], "shmq.test.Stamp", "{j}");
    assert_eq!(j["message_type"]["version"], 3, "{j}");
    assert_eq!(j["message_type"]["size"], 16, "{j}");
    let j = inspect_json(&u);
    assert_eq!(j["message_type"]["name"], "u64", "{j}");
    assert_eq!(j["message_type"]["declared"], false, "{j}");
    assert!(j["message_type"]["version"].is_null(), "{j}");

    // A type name field that is not UTF-8: named, in words.
    corrupt(&n, 128, &[0xff]);
    let text = String::from_utf8(stdout_of(&["inspect", &n])).expect("utf-8");
    assert!(
        text.contains(
            "header type name: expected UTF-8 text of at most 127 bytes, a NUL, then zeros, \
             found a bad byte at offset 0 of the field"
        ),
        "{text}"
    );
    drop((tx, plain));
}

/// A directory removed (with what is in it) when the guard drops.
struct Gone(PathBuf);

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new directory of this test process's own for file channels.
fn temp_dir(tag: &str) -> (PathBuf, Gone) {
    let dir = std::env::temp_dir().join(format!("cli-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    (dir.clone(), Gone(dir))
}

#[test]
fn file_channels_are_listed_inspected_and_piped() {
    let (dir, _gone) = temp_dir("files");
    let chan = dir.join("orders");
    let path = chan.to_str().expect("utf-8 path");
    shmq()
        .args(["send", path, "--durability", "every-commit"])
        .write_stdin("one\ntwo\n")
        .assert()
        .success();
    std::fs::write(dir.join("notes.txt"), "not a channel").expect("write");
    let dir_s = dir.to_str().expect("utf-8 path");
    succeeds(&["ls", dir_s])
        .stdout(predicate::str::contains(path).and(predicate::str::contains("every-commit")))
        .stdout(predicate::str::contains("notes.txt").not());
    succeeds(&["inspect", path])
        .stdout(predicate::str::contains("every commit"))
        .stdout(predicate::str::contains("syncs since creation"))
        .stdout(predicate::str::contains("messages waiting    2"));
    let j: Value = serde_json::from_slice(&stdout_of(&["inspect", "--json", path])).expect("json");
    assert_eq!(j["durability"], "every-commit", "{j}");
    assert!(j["syncs"].as_u64().is_some_and(|n| n >= 1), "{j}");
    succeeds(&["recv", path]).stdout("one\ntwo\n");
    assert!(!chan.exists(), "the drained file is removed");
    // A symbolic link is refused, in words.
    std::os::unix::fs::symlink(dir.join("notes.txt"), dir.join("link")).expect("symlink");
    shmq()
        .args(["inspect", dir.join("link").to_str().unwrap()])
        .assert()
        .failure()
        .stderr(predicate::str::contains("symbolic link"));
}

/// `rm PATH` removes a file channel as `rm NAME` does a named one: refused
/// while an end is alive (unless `--force`), removed with its messages once
/// stale; a file that is not a channel is left alone.
#[test]
fn rm_takes_a_file_channel_path() {
    let (dir, _gone) = temp_dir("rm");
    let chan = dir.join("q");
    let path = chan.to_str().expect("utf-8 path");
    let mut tx =
        shmq::spsc::Sender::create_file(&chan, &shmq::Options::new()).expect("create file");
    tx.send(b"kept until rm").expect("send");
    shmq().args(["rm", path]).assert().code(1).stderr(
        predicate::str::contains("refusing to remove").and(predicate::str::contains("alive")),
    );
    assert!(chan.exists());
    drop(tx); // closed with a message waiting: the file stays
    assert!(chan.exists());
    succeeds(&["rm", path]).stdout(format!("removed {path}\n"));
    assert!(!chan.exists());
    let tx = shmq::spsc::Sender::create_file(&chan, &shmq::Options::new()).expect("again");
    succeeds(&["rm", "--force", path]).stdout(predicate::str::starts_with(format!(
        "removed {path} (alive"
    )));
    assert!(!chan.exists());
    drop(tx);
    let other = dir.join("notes.txt");
    std::fs::write(&other, "not a channel").expect("write");
    shmq()
        .args(["rm", other.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a shmq segment"));
    assert!(other.exists());
}

/// `ls` and `inspect` show a broadcast channel's subscribers, each with its
/// mode, liveness, position, lag and counters: in JSON as objects, in text one
/// row each (a closed subscriber as closed; slots never attached left out).
#[test]
fn ls_and_inspect_show_each_broadcast_subscriber() {
    use shmq::broadcast::{Mode, Subscriber};
    let (n, _cleanup, mut tx) = publisher("bcast-subs", 4096, 4);
    let mut fast = Subscriber::open(&n, &shmq::Options::new()).expect("lossless");
    let lossy = shmq::Options::new().subscribe(Mode::Lossy);
    let mut slow = Subscriber::open(&n, &lossy).expect("lossy");
    drop(Subscriber::open(&n, &shmq::Options::new()).expect("a third, closed at once"));
    for i in 0..5 {
        tx.send(format!("m{i}").as_bytes()).expect("send");
    }
    for _ in 0..5 {
        drop(fast.recv().expect("lossless recv"));
    }
    for _ in 0..2 {
        drop(slow.recv().expect("lossy recv"));
    }
    // Each message takes a 16-byte frame: the lossy subscriber is 3 behind.
    let tail = inspect_json(&n)["ring"]["tail"].as_u64().expect("tail");
    let pid = u64::from(std::process::id());
    for j in [ls_json(&n), inspect_json(&n)] {
        assert_eq!(j["kind"], "broadcast/bytes", "{j}");
        let subs = j["subscribers"].as_array().expect("subscribers array");
        assert_eq!(subs.len(), 3, "the fourth slot never attached: {j}");
        let s0 = &subs[0];
        assert_eq!(s0["slot"], 0, "{j}");
        assert_eq!(s0["mode"], "lossless", "{j}");
        assert_eq!(s0["status"], "alive", "{j}");
        assert_eq!(s0["pid"], pid, "{j}");
        assert_eq!(s0["position"], tail, "{j}");
        assert_eq!(s0["lag_bytes"], 0, "{j}");
        assert_eq!(s0["received"], 5, "{j}");
        assert_eq!(s0["missed"], 0, "{j}");
        let s1 = &subs[1];
        assert_eq!(s1["slot"], 1, "{j}");
        assert_eq!(s1["mode"], "lossy", "{j}");
        assert_eq!(s1["status"], "alive", "{j}");
        assert_eq!(s1["position"], tail - 48, "{j}");
        assert_eq!(s1["lag_bytes"], 48, "{j}");
        assert_eq!(s1["received"], 2, "{j}");
        assert_eq!(s1["missed"], 0, "{j}");
        assert_eq!(subs[2]["status"], "closed", "{j}");
        assert_eq!(j["producers"][0]["role"], "publisher", "{j}");
        assert_eq!(j["producers"].as_array().map(Vec::len), Some(1), "{j}");
        assert!(
            j["consumer"].is_null(),
            "a broadcast channel has no consumer: {j}"
        );
    }
    let ls = String::from_utf8(stdout_of(&["ls", "--prefix", &n])).expect("utf-8");
    assert!(ls_row(&n).contains("2 alive, 1 closed"), "{ls}");
    let text = String::from_utf8(stdout_of(&["inspect", &n])).expect("utf-8");
    for t in [&ls, &text] {
        let row = |slot: &str| {
            t.lines()
                .find(|l| l.split_whitespace().next() == Some(slot))
                .unwrap_or_else(|| panic!("no subscriber {slot} row in:\n{t}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            row("0"),
            format!("0 lossless alive {pid} {tail} 0 B 5 0"),
            "{t}"
        );
        assert_eq!(
            row("1"),
            format!("1 lossy alive {pid} {} 48 B 2 0", tail - 48),
            "{t}"
        );
        assert!(row("2").starts_with("2 lossless closed"), "{t}");
        assert!(!t.lines().any(|l| l.trim_start().starts_with("3 ")), "{t}");
    }
    assert!(text.contains("(1 of 4 slots never used)"), "{text}");
    drop((tx, fast, slow));
}

/// Starts `shmq ARGS` with stdout and stderr piped.
fn piped(args: &[&str]) -> std::process::Child {
    std::process::Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmq")
}

/// Waits for a piped child (killing it after [`PATIENCE`]): status, stdout,
/// stderr.
fn output_of(child: std::process::Child) -> (ExitStatus, String, String) {
    let id = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = thread::spawn(move || {
        let started = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if started.elapsed() > PATIENCE {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(id as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watchdog.join().expect("watchdog");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `recv` on a broadcast channel joins it as a lossy subscriber: it receives
/// what the publisher sends, never holds it back, and when lapped says on
/// stderr how many messages it missed, then goes on.
#[test]
fn recv_subscribes_to_a_broadcast_channel_lossily() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (n, _cleanup, mut tx) = publisher("bcast-recv", 256, 2);
    let child = piped(&["recv", &n]);
    let pid = Pid::from_raw(child.id() as i32);
    wait_until("the subscriber to attach", || {
        endpoint_status(&n, 2) == Some(EndpointStatus::Alive)
    });
    let r = report(&n).expect("report");
    let sub = &r.ring.as_ref().expect("ring").subscribers[0];
    assert!(!sub.lossless, "recv subscribes lossy");
    for m in ["a", "b", "c"] {
        tx.send(m.as_bytes()).expect("send");
    }
    wait_until("the three to be received", || {
        ring_is(&n, |v| v.subscribers[0].received == 3)
    });
    // Stopped, it is lapped: the publisher does not wait for it.
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    for i in 0..40 {
        tx.try_send(format!("m{i:02}").as_bytes())
            .expect("a lossy subscriber never holds the publisher");
    }
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    drop(tx); // closed: recv stops once it has what is left
    let (status, stdout, stderr) = output_of(child);
    assert!(status.success(), "{status:?}: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..3], ["a", "b", "c"], "{stdout}");
    let missed: u64 = stderr
        .split_once("missed ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `missed N messages` note: {stderr}"));
    assert!(
        stderr.contains(&format!("missed {missed} messages")),
        "{stderr}"
    );
    let rest = &lines[3..];
    assert!(missed > 0 && !rest.is_empty(), "{stdout} / {stderr}");
    assert_eq!(missed + rest.len() as u64, 40, "{stdout} / {stderr}");
    let first = 40 - rest.len();
    let want: Vec<String> = (first..40).map(|i| format!("m{i:02}")).collect();
    assert_eq!(rest, want, "the newest messages, in order");
}

/// `recv` on an MPSC channel is its consumer, and `send` into one is one
/// more producer: several `send`s go into one channel.
#[test]
fn send_and_recv_tap_an_mpsc_channel() {
    let (n, _cleanup) = named("mpsc-pipe");
    let o = shmq::Options::new().capacity(4096);
    let mut producer = shmq::mpsc::Sender::create(&n, &o).expect("create");
    producer.send(b"from the test").expect("send");
    let child = piped(&["recv", &n, "--count", "5"]);
    shmq()
        .args(["send", &n])
        .write_stdin("one\ntwo\n")
        .assert()
        .success();
    shmq()
        .args(["send", &n])
        .write_stdin("three\nfour\n")
        .assert()
        .success();
    let (status, stdout, stderr) = output_of(child);
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stdout, "from the test\none\ntwo\nthree\nfour\n");
    drop(producer);
}

/// `send` into a broadcast channel is its publisher; with a publisher
/// attached already, it says so in words.
#[test]
fn send_publishes_to_a_broadcast_channel_with_no_publisher() {
    use shmq::broadcast::{Publisher, Subscriber};
    let (n, _cleanup) = named("bcast-send");
    let o = shmq::Options::new().capacity(4096);
    let mut sub = Subscriber::create(&n, &o).expect("create");
    shmq()
        .args(["send", &n])
        .write_stdin("hello\nworld\n")
        .assert()
        .success();
    assert_eq!(&*sub.recv().expect("recv"), b"hello");
    assert_eq!(&*sub.recv().expect("recv"), b"world");
    let publisher = Publisher::open(&n, &shmq::Options::new()).expect("publisher");
    fails_with(
        &["send", &n],
        "more\n",
        "is a broadcast channel and its publisher is already attached by a live process",
    );
    drop((publisher, sub));
}

/// `peek` prints the messages waiting in SPSC, MPSC and broadcast channels
/// (as text, or in hexadecimal) and leaves them there: a receive afterwards
/// still gets every one.
#[test]
fn peek_shows_waiting_messages_and_leaves_them() {
    use shmq::broadcast::{Join, Publisher, Subscriber};
    let (s, m, b) = (name("peek-spsc"), name("peek-mpsc"), name("peek-bcast"));
    let _cleanup = Cleanup(vec![s.clone(), m.clone(), b.clone()]);
    let o = shmq::Options::new().capacity(256);

    let mut tx = shmq::spsc::Sender::create(&s, &o).expect("create");
    tx.send(b"one").expect("send");
    tx.send(b"two \xff").expect("send");
    succeeds(&["peek", &s]).stdout("one\ntwo \u{fffd}\n");
    succeeds(&["peek", "--hex", &s]).stdout("6f 6e 65\n74 77 6f 20 ff\n");
    succeeds(&["recv", &s, "--raw", "--count", "2"]).stdout(&b"onetwo \xff"[..]);
    succeeds(&["peek", &s])
        .stdout("")
        .stderr(predicate::str::contains("no messages waiting"));

    let mut rx = shmq::mpsc::Receiver::create(&m, &o).expect("create");
    let mut p = shmq::mpsc::Sender::open(&m, &o).expect("producer");
    for msg in ["x", "y", "z"] {
        p.send(msg.as_bytes()).expect("send");
    }
    drop(rx.recv().expect("recv x"));
    succeeds(&["peek", &m]).stdout("y\nz\n");
    succeeds(&["peek", &m, "--count", "1"])
        .stdout("y\n")
        .stderr(predicate::str::contains("more than 1 messages wait"));
    assert_eq!(&*rx.recv().expect("recv"), b"y");
    assert_eq!(&*rx.recv().expect("recv"), b"z");

    // Broadcast: the ring keeps the newest messages; peek shows them from
    // the oldest, and a subscriber joining at the oldest receives them.
    let mut publisher = Publisher::create(&b, &o).expect("create");
    for i in 0..40 {
        publisher.send(format!("b{i:02}").as_bytes()).expect("send");
    }
    let text = String::from_utf8(stdout_of(&["peek", &b])).expect("utf-8");
    let shown: Vec<&str> = text.lines().collect();
    assert!(!shown.is_empty() && shown.len() < 40, "{text}");
    let first = 40 - shown.len();
    let want: Vec<String> = (first..40).map(|i| format!("b{i:02}")).collect();
    assert_eq!(shown, want, "{text}");
    let oldest = shmq::Options::new().join(Join::Oldest);
    let mut sub = Subscriber::open(&b, &oldest).expect("subscriber");
    assert_eq!(&*sub.recv().expect("recv"), want[0].as_bytes());
    drop((tx, p, rx, publisher, sub));
}

/// A typed channel's records are printed in hexadecimal, each labelled with
/// the message type its header records.
#[test]
fn peek_labels_a_typed_channel_s_records_with_its_type() {
    let (n, _cleanup) = named("peek-typed");
    let o = shmq::Options::new().capacity(8);
    let mut rx = shmq::mpsc::declared::Receiver::<Stamp>::create(&n, &o).expect("create");
    let mut tx = shmq::mpsc::declared::Sender::<Stamp>::open(&n, &o).expect("open");
    tx.send(&Stamp { seq: 1, from: 2 }).expect("send");
    tx.send(&Stamp {
        seq: 0x0304,
        from: 5,
    })
    .expect("send");
    let zeros = "00 00 00 00 00 00";
    succeeds(&["peek", &n]).stdout(format!(
        "shmq.test.Stamp v3 [0]: 01 00 {zeros} 02 00 {zeros}\n\
             shmq.test.Stamp v3 [1]: 04 03 {zeros} 05 00 {zeros}\n"
    ));
    assert_eq!(rx.recv().expect("recv").seq, 1, "left in the channel");
    drop(tx);
}

/// `top` on a broadcast channel shows each subscriber: in JSON as objects,
/// in its line output one indented line each after the refresh's line.
#[test]
fn top_shows_each_broadcast_subscriber() {
    use shmq::broadcast::{Mode, Subscriber};
    let (n, _cleanup, mut tx) = publisher("bcast-top", 4096, 2);
    let lossy = shmq::Options::new().subscribe(Mode::Lossy);
    let sub = Subscriber::open(&n, &lossy).expect("lossy");
    tx.send(b"waiting").expect("send");
    let out = stdout_of(&["top", &n, "--count", "1", "--interval", "1ms", "--json"]);
    let j: Value = serde_json::from_slice(&out).expect("one JSON object");
    let s = &j["subscribers"][0];
    assert_eq!(s["mode"], "lossy", "{j}");
    assert_eq!(s["status"], "alive", "{j}");
    assert_eq!(s["lag_bytes"], 16, "{j}");
    assert_eq!(s["received"], 0, "{j}");
    let text = String::from_utf8(stdout_of(&["top", &n, "--count", "1", "--interval", "1ms"]))
        .expect("utf-8");
    assert!(
        text.contains("  subscriber 0: lossy, alive, position 0, lag 16 B, 0 received, 0 missed"),
        "{text}"
    );
    drop((tx, sub));
}
