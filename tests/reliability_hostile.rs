//! Reliability catalogue, hostile-peer tests (HP-01..HP-13) across real
//! processes: a peer that lies in headers, indices and lengths, flips words while
//! we read them, rewrites delivered payloads, punches holes, storms us with
//! wake-ups or never wakes us. The in-process property tests of the same kind are
//! in `crates/ring/tests/{spsc,mpsc,model}.rs`; the read-count shim (HP-04) and
//! the interleaving fuzzer (FZ-05) in `crates/ring/tests/adversary.rs` and
//! `fuzz/` (docs/FUZZING.md). `docs/RELIABILITY.md` maps every item.
//!
//! The adversary is a role process that maps the channel's segment like any
//! peer and writes it through atomics ([`kit::RawRegion`]).
//!
//! Run: `cargo test --release --features failpoints --test reliability_hostile`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde_json::json;
use shmq::{Error, Options, Receiver, Sender, mpsc, spsc};
use shmq_ring::frame::{self, MpscHeader};
use shmq_segment::{Error as SegError, HeaderInfo, Segment};
use shmq_testkit as kit;
use shmq_testkit::kinds::{How, KindExt, Mpsc, Spsc, why};
use shmq_testkit::ring_off::{DATA_SEQ, HEAD, SPACE_SEQ, SPSC_DATA, TAIL, mpsc_data};
use shmq_testkit::{
    DEATH_BUDGET, Names, RawRegion, Rng, Spawn, Verifier, Watchdog, arg, arg_or, emit, hang,
    mono_ns, msg, num,
};

const SLICE: Duration = shmq::DEFAULT_WAIT_SLICE;

// ---------------------------------------------------------------------------
// HP-12's counting allocator (this test binary only)

/// Records, per thread and only while tracking is on, the largest single
/// allocation: HP-12 checks that a peer's lying lengths never turn into a large
/// allocation.
struct CountingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; the bookkeeping only touches const-initialised
// thread-locals (no allocation, no destructor) through `try_with`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: delegated to the caller (GlobalAlloc's contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: delegated to the caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        // SAFETY: delegated to the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: delegated to the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the largest allocation it made on this
/// thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|m| m.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------
// Roles

shmq_testkit::roles! {
    role_poke role_flip role_scribble role_futex_storm role_punch role_rx role_tx
    role_hostile_mpsc role_truncated_rx role_trunc_end
}

/// Parses `off=value,off=value` (decimal) into pairs.
fn parse_writes(s: &str) -> Vec<(usize, u64)> {
    s.split(',')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (o, v) = w.split_once('=').expect("off=value");
            (o.parse().expect("offset"), v.parse().expect("value"))
        })
        .collect()
}

fn writes_arg(w: &[(usize, u64)]) -> String {
    w.iter()
        .map(|(o, v)| format!("{o}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The adversary's pen: opens segment NAME and stores WRITES (`off=value`, 64-bit
/// words at offsets of the user region) in order, then reports `done`.
fn role_poke() {
    let seg = kit::open_raw(&arg::<String>("NAME"));
    let region = RawRegion::of(&seg);
    for (off, v) in parse_writes(&arg::<String>("WRITES")) {
        region
            .word(off)
            .store(v, std::sync::atomic::Ordering::SeqCst);
    }
    emit("done", json!({ "at_ns": mono_ns() }));
}

/// HP-04's flipper: for MS milliseconds, walks the frames from the consumer's
/// published `head` (KIND ring, data area at DATA) and flips their headers to an
/// invalid value and back, both with compare-and-swap, so that it never
/// resurrects a value the honest side has overwritten. A word is flipped only if
/// `head` did not move while it was read, so it is a real frame header, never
/// payload (changing payload is in a peer's power, but not what this tests).
/// Also flips `tail` between its value and a misaligned one.
fn role_flip() {
    kit::by_kind!(arg::<String>("KIND").as_str(), flip_of())
}

/// [`role_flip`] over a ring of kind `K`.
fn flip_of<K: KindExt>() {
    use std::sync::atomic::Ordering::SeqCst;
    let seg = kit::open_raw(&arg::<String>("NAME"));
    let region = RawRegion::of(&seg);
    let data: usize = arg("DATA");
    let cap = region.len() - data;
    let mask = cap as u64 - 1;
    let slots = ((data - 512) / 128).max(1) as u16;
    let end = mono_ns() + arg::<u64>("MS") * 1_000_000;
    let mut rng = Rng::new(arg("SEED"));
    let (mut flips, mut tails) = (0u64, 0u64);
    emit("started", json!({}));
    while mono_ns() < end {
        let head = region.word(HEAD).load(SeqCst);
        let mut pos = head;
        for _ in 0..rng.range(1, 16) {
            let off = (pos & mask) as usize;
            let w = region.word(data + off);
            let v = w.load(SeqCst);
            if region.word(HEAD).load(SeqCst) != head {
                break; // the consumer moved: `v` may no longer be a header
            }
            let (size, bad) = if K::MPSC {
                match frame::decode_mpsc(v, off, cap, slots) {
                    Ok(Some(h)) => (h.size(), (v & !(0xff << 32)) | (0x77 << 32)),
                    _ => break,
                }
            } else {
                match frame::decode_spsc(v, off, cap) {
                    Ok(frame::SpscFrame::Message { len }) => (
                        frame::frame_len(len),
                        (v & 0xffff_ffff) | (0x0bad_0bad << 32),
                    ),
                    Ok(frame::SpscFrame::Padding { len }) => (
                        frame::HEADER_LEN + len,
                        (v & 0xffff_ffff) | (0x0bad_0bad << 32),
                    ),
                    _ => break,
                }
            };
            if w.compare_exchange(v, bad, SeqCst, SeqCst).is_ok() {
                flips += 1;
                for _ in 0..rng.range(0, 200) {
                    std::hint::spin_loop();
                }
                let _ = w.compare_exchange(bad, v, SeqCst, SeqCst);
            }
            pos = pos.wrapping_add(size as u64);
        }
        if !K::MPSC {
            let t = region.word(TAIL);
            let tv = t.load(SeqCst);
            if t.compare_exchange(tv, tv | 1, SeqCst, SeqCst).is_ok() {
                tails += 1;
                let _ = t.compare_exchange(tv | 1, tv, SeqCst, SeqCst);
            }
        }
    }
    emit("done", json!({ "flips": flips, "tail_flips": tails }));
}

/// HP-05's scribbler: for MS milliseconds, overwrites every byte from DATA to
/// the end of the region of segment NAME with changing garbage, then reports.
fn role_scribble() {
    let seg = kit::open_raw(&arg::<String>("NAME"));
    let region = RawRegion::of(&seg);
    let data: usize = arg("DATA");
    let end = mono_ns() + arg::<u64>("MS") * 1_000_000;
    let mut rounds = 0u64;
    let mut junk = vec![0u8; region.len() - data];
    while mono_ns() < end {
        junk.fill(0xA5 ^ rounds as u8);
        region.write(data, &junk);
        rounds += 1;
    }
    emit("done", json!({ "rounds": rounds }));
}

/// HP-10's storm: for MS milliseconds, `FUTEX_WAKE`s both futex words of segment
/// NAME in a tight loop; with TOGGLE=1 it also bumps the words (so a waiter's
/// compare fails and it cannot even fall asleep).
fn role_futex_storm() {
    let seg = kit::open_raw(&arg::<String>("NAME"));
    let region = RawRegion::of(&seg);
    let toggle = arg_or("TOGGLE", 0u8) == 1;
    let end = mono_ns() + arg::<u64>("MS") * 1_000_000;
    let (mut calls, mut woken) = (0u64, 0i64);
    emit("started", json!({}));
    while mono_ns() < end {
        for off in [DATA_SEQ, SPACE_SEQ] {
            if toggle {
                region
                    .word32(off)
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            woken += region.futex_wake(off, i32::MAX).max(0);
            calls += 1;
        }
    }
    emit("done", json!({ "calls": calls, "woken": woken }));
}

/// HP-06/07: with the memfd inherited as FD, tries to shrink, grow and re-seal it
/// (all must fail with EPERM), then punches holes over RANGES (`off+len,...`).
fn role_punch() {
    let fd = kit::inherited_fd("FD");
    let raw = fd.as_raw_fd();
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let size = nix::sys::stat::fstat(&fd).expect("fstat").st_size;
    // SAFETY: plain system calls on a descriptor this process owns.
    let shrink = unsafe { libc::ftruncate(raw, 0) } == -1 && errno() == libc::EPERM;
    // SAFETY: as above.
    let grow = unsafe { libc::ftruncate(raw, size * 2) } == -1 && errno() == libc::EPERM;
    // SAFETY: as above.
    let reseal = unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) } == -1
        && errno() == libc::EPERM;
    let mut punched = Vec::new();
    for r in arg::<String>("RANGES").split(',') {
        let (o, l) = r.split_once('+').expect("off+len");
        let (o, l): (i64, i64) = (o.parse().unwrap(), l.parse().unwrap());
        // SAFETY: as above.
        let rc = unsafe {
            libc::fallocate(
                raw,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                o,
                l,
            )
        };
        punched.push(rc == 0);
    }
    emit(
        "done",
        json!({ "shrink_eperm": shrink, "grow_eperm": grow, "reseal_eperm": reseal, "punched": punched }),
    );
}

/// A consumer that reports its receive time: opens (HOW, default `create`) the
/// KIND channel NAME with the Park strategy, reports `waiting` (thread id), receives
/// COUNT messages (`first` with the time of the first), then reports `received`.
fn role_rx() {
    kit::by_kind!(arg_or("KIND", "spsc".to_owned()).as_str(), rx_of())
}

/// [`role_rx`] over a channel of kind `K`.
fn rx_of<K: KindExt>() {
    let name: String = arg("NAME");
    let how = How::parse(&arg_or("HOW", "create".to_owned()));
    let mut o = kit::session().wait(shmq::WaitStrategy::Park);
    if let Some(cap) = kit::arg_opt::<u64>("CAP") {
        o = o.capacity(cap);
    }
    let mut rx = how.receiver::<K>(&name, &o).expect("receiver");
    emit("waiting", json!({ "tid": kit::gettid() }));
    let mut v = Verifier::new();
    let mut buf = Vec::new();
    for _ in 0..arg::<u64>("COUNT") {
        match rx.recv_into_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(()) => {
                let at = mono_ns();
                v.take(&buf);
                if v.total == 1 {
                    emit("first", json!({ "at_ns": at }));
                }
            }
            Err(e) => {
                emit("recv_error", json!({ "why": why(&e) }));
                return;
            }
        }
    }
    emit("received", json!({ "count": v.total }));
}

/// An honest producer: opens the KIND channel NAME, sends COUNT messages as ID
/// (PACE_US between them), reports `sent` or `send_error` (with the time).
fn role_tx() {
    kit::by_kind!(arg_or("KIND", "mpsc".to_owned()).as_str(), tx_of())
}

/// [`role_tx`] over a channel of kind `K`.
fn tx_of<K: KindExt>() {
    let name: String = arg("NAME");
    let mut tx = Sender::<K>::open(&name, &kit::session()).expect("sender");
    emit("ready", json!({}));
    let id: u32 = arg("ID");
    let pace = Duration::from_micros(arg_or("PACE_US", 0));
    for seq in 0..arg::<u64>("COUNT") {
        if let Err(e) = tx.send(&kit::message(seq, id, 64)) {
            emit(
                "send_error",
                json!({ "why": why(&e), "at_ns": mono_ns(), "sent": seq }),
            );
            return;
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    emit("sent", json!({}));
}

/// HP-11's hostile producer: attaches to the MPSC channel NAME as a real producer,
/// sends 10 messages, then moves the shared `tail` forward by 2^40 and reports
/// `lied`; its own next send is reported too.
fn role_hostile_mpsc() {
    let name: String = arg("NAME");
    let mut tx = mpsc::Sender::open(&name, &kit::session()).expect("sender");
    for seq in 0..10 {
        tx.send(&kit::message(seq, 99, 64)).expect("send");
    }
    let seg = kit::open_raw(&name);
    let region = RawRegion::of(&seg);
    region
        .word(TAIL)
        .fetch_add(1 << 40, std::sync::atomic::Ordering::SeqCst);
    emit("lied", json!({ "at_ns": mono_ns() }));
    let own = tx.send(&kit::message(10, 99, 64));
    emit("own_send", json!({ "result": format!("{own:?}") }));
    let _keep = (tx, seg);
    hang();
}

/// HP-09 with the guard turned off (GUARD=0): creates the SPSC channel NAME
/// with both ends, sends one message, reports `ready`, then polls both ends for
/// up to 5 s (reporting `survived`). The test truncates the named object
/// meanwhile: without the guard this process must die of SIGBUS.
fn role_truncated_rx() {
    // No core file for the expected SIGBUS.
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads one rlimit we own.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    let name: String = arg("NAME");
    let o = kit::session().sigbus_guard(arg::<u8>("GUARD") == 1);
    let mut rx = spsc::Receiver::create(&name, &o.clone().capacity(1 << 16)).expect("rx");
    let mut tx = spsc::Sender::open(&name, &o).expect("tx");
    tx.send(b"before").expect("send");
    emit("ready", json!({}));
    let mut buf = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let _ = rx.try_recv_into(&mut buf);
        let _ = tx.try_send(b"more");
        std::thread::sleep(Duration::from_millis(5));
    }
    emit("survived", json!({}));
}

/// HP-09, one end of a channel: ROLE=rx creates the KIND channel NAME (64 KiB)
/// and receives with blocking `recv_into`; ROLE=tx opens it and sends 200-byte
/// messages with blocking `send`. Reports `ready` (with its thread id), and
/// `streaming` after 500 messages; with IDLE=1 it makes no call until the file
/// CUT exists. It goes on until a call fails, reports `error` (its kind, and what
/// the next call returns), then waits for the file GO to exist and exits
/// normally, holding its end until then (so that each end must find the damage
/// on its own, not from the other's exit). Dying of a signal fails the test.
fn role_trunc_end() {
    kit::by_kind!(arg::<String>("KIND").as_str(), trunc_end_of())
}

/// [`role_trunc_end`] over a channel of kind `K`.
fn trunc_end_of<K: KindExt>() {
    let name: String = arg("NAME");
    let go = std::path::PathBuf::from(arg::<String>("GO"));
    let cut = std::path::PathBuf::from(arg::<String>("CUT"));
    let idle = arg::<u8>("IDLE") == 1;
    let mut buf = Vec::new();
    let mut n: u64 = 0;
    let ready = || {
        emit("ready", json!({ "tid": kit::gettid() }));
        if idle {
            wait_for(&cut);
        }
    };
    if arg::<String>("ROLE") == "rx" {
        let o = kit::session().capacity(1 << 16);
        let mut rx = How::Create.receiver::<K>(&name, &o).expect("rx");
        ready();
        let first = loop {
            match rx.recv_into(&mut buf) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            if n == 500 {
                emit("streaming", json!({}));
            }
        };
        let next = rx.try_recv_into(&mut buf);
        report_error(n, &first, next.err());
        wait_for(&go);
        drop(rx);
    } else {
        let mut tx = How::Open.sender::<K>(&name, &kit::session()).expect("tx");
        ready();
        let first = loop {
            match tx.send(&kit::message(n, 0, 200)) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            if n == 500 {
                emit("streaming", json!({}));
            }
        };
        let next = tx.try_send(b"after");
        report_error(n, &first, next.err());
        wait_for(&go);
        drop(tx);
    }
}

fn report_error(count: u64, first: &Error, next: Option<Error>) {
    emit(
        "error",
        json!({ "first": why(first), "next": next.as_ref().map(why), "count": count }),
    );
}

/// Waits (without limit: the watchdog catches a hang) for `path` to exist.
fn wait_for(path: &std::path::Path) {
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// Test-side helpers

/// Runs the `poke` role on `name` with `writes` and waits for it.
fn poke(wd: &Watchdog, name: &str, writes: &[(usize, u64)]) -> u64 {
    let mut p = Spawn::role_on("poke", name)
        .arg("WRITES", writes_arg(writes))
        .spawn(wd);
    let ev = p.event("done");
    p.expect_success();
    num(&ev, "at_ns")
}

fn is_corrupted<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Corrupted(_)))
}

/// Plants `bytes` as a 0600 object under `name`.
fn plant(name: &str, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(kit::shm_path(name))
        .expect("plant");
    f.write_all(bytes).expect("write");
}

fn set_u64(img: &mut [u8], off: usize, v: u64) {
    img[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn set_u32(img: &mut [u8], off: usize, v: u32) {
    img[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u16(img: &mut [u8], off: usize, v: u16) {
    img[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// The bytes of a valid, stale SPSC channel (capacity 4096) holding one 64-byte
/// message at position 0: a sender is created, sends, and is dropped (the
/// undelivered message keeps the name).
fn spsc_image(names: &Names) -> Vec<u8> {
    let name = names.name("hp-img");
    let mut tx = spsc::Sender::create(&name, &kit::session().capacity(4096)).expect("create");
    tx.send(&kit::message(0, 0, 64)).expect("send");
    drop(tx);
    let img = std::fs::read(kit::shm_path(&name)).expect("read image");
    Segment::unlink(&name).expect("unlink");
    img
}

// ---------------------------------------------------------------------------
// HP-01

/// HP-01: a table of damaged segment images, planted as real objects in
/// `/dev/shm` and opened through the facade: each gives its own typed error
/// (never a panic, never an attach), and a header-level refusal leaves the
/// object's bytes untouched.
#[test]
fn hp01_each_header_corruption_gives_its_own_typed_error() {
    let names = Names::new();
    let good = spsc_image(&names);
    let info = HeaderInfo::from_bytes(&good).expect("header");
    let d = info.data_offset as usize; // the ring region
    let cap = info.capacity;
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    fn u16_at(off: usize, v: u16) -> Damage {
        Box::new(move |i| set_u16(i, off, v))
    }
    fn u32_at(off: usize, v: u32) -> Damage {
        Box::new(move |i| set_u32(i, off, v))
    }
    fn u64_at(off: usize, v: u64) -> Damage {
        Box::new(move |i| set_u64(i, off, v))
    }
    fn add_u64(off: usize, delta: u64) -> Damage {
        Box::new(move |i| {
            let old = u64::from_le_bytes(i[off..off + 8].try_into().unwrap());
            set_u64(i, off, old + delta)
        })
    }
    /// The error a damaged image must give.
    enum Want {
        /// `LayoutMismatch` of this field.
        Layout(&'static str),
        /// `Corrupt` in this header field.
        Corrupt(&'static str),
        /// A segment error this accepts.
        Seg(fn(&SegError) -> bool),
        /// Whatever this accepts.
        Check(fn(&Result<(), Error>) -> bool),
    }
    use Want::{Check, Corrupt, Layout, Seg};
    impl Want {
        fn accepts(&self, r: &Result<(), Error>) -> bool {
            match *self {
                Layout(f) => {
                    matches!(r, Err(Error::Segment(SegError::LayoutMismatch { field, .. })) if *field == f)
                        || mismatch_in_words(r, f)
                }
                Corrupt(w) => {
                    matches!(r, Err(Error::Segment(SegError::Corrupt { what, .. })) if *what == w)
                }
                Seg(f) => matches!(r, Err(Error::Segment(e)) if f(e)),
                Check(f) => f(r),
            }
        }
    }
    #[rustfmt::skip]
    let cases: Vec<(&str, Damage, Want, bool)> = vec![
        ("bad magic", Box::new(|i| i[0] ^= 0x20), Seg(|e| matches!(e, SegError::BadMagic { .. })), true),
        ("an older version (1: hashed type names, table at 128)", u32_at(8, 1), Seg(|e| matches!(e, SegError::VersionMismatch { found: 1, expected: 3 })), true),
        ("an older version (2: no doorbell)", u32_at(8, 2), Seg(|e| matches!(e, SegError::VersionMismatch { found: 2, expected: 3 })), true),
        ("a state no creator writes", u32_at(12, 5), Corrupt("state"), true),
        ("never published, creator gone", u32_at(12, 0), Seg(|e| matches!(e, SegError::Abandoned)), true),
        ("another kind (layout)", u16_at(16, shmq::KIND_MPSC), Layout("kind"), true),
        ("kind 0", u16_at(16, 0), Corrupt("kind"), true),
        ("too many endpoints", u16_at(18, 5000), Corrupt("endpoints"), true),
        ("total_len not the object's size", add_u64(24, 4096), Layout("total_len"), true),
        ("data offset misaligned", add_u64(32, 8), Layout("data_offset"), true),
        ("data offset overlapping the header", u64_at(32, 64), Layout("data_offset"), true),
        ("data offset past the end", u64_at(32, 1 << 40), Layout("data_offset"), true),
        ("capacity 0", u64_at(40, 0), Check(|r| matches!(r, Err(Error::InvalidCapacity(0)))), false),
        ("capacity not a power of two", u64_at(40, 3000), Check(|r| matches!(r, Err(Error::InvalidCapacity(3000)))), false),
        ("capacity beyond the mapping", u64_at(40, cap * 4), Check(|r| matches!(r, Err(Error::RegionTooSmall { .. }))), false),
        ("capacity 2^62", u64_at(40, 1 << 62), Check(|r| matches!(r, Err(Error::InvalidCapacity(c)) if *c == 1 << 62)), false),
        ("element size on a byte channel", u32_at(48, 8), Layout("slot_size"), true),
        ("type version on a byte channel", u32_at(56, 0xdead), Layout("type_version"), true),
        ("type flags on a byte channel", u32_at(60, 1), Layout("type_flags"), true),
        ("type name on a byte channel", Box::new(|i| i[128] = b'x'), Seg(|e| matches!(e, SegError::BadTypeName { .. })), true),
        ("object smaller than a header", Box::new(|i| i.truncate(40)), Seg(|e| matches!(e, SegError::TooSmall { size: 40, .. })), true),
        ("object grown past its header", Box::new(|i| i.extend_from_slice(&[0u8; 4096])), Layout("total_len"), true),
        ("ring head misaligned", u64_at(d + HEAD, 3), Check(is_corrupted), false),
    ];
    let mut failures = Vec::new();
    for (what, damage, want, untouched) in cases {
        let name = names.name("hp01");
        let mut img = good.clone();
        damage(&mut img);
        plant(&name, &img);
        let o = kit::session().open_timeout(Duration::from_millis(100));
        let r = spsc::Receiver::open(&name, &o).map(drop);
        if !want.accepts(&r) {
            failures.push(format!("{what}: {r:?}"));
        }
        if untouched && std::fs::read(kit::shm_path(&name)).ok().as_ref() != Some(&img) {
            failures.push(format!("{what}: the refused object was written to"));
        }
        Segment::unlink(&name).expect("unlink");
    }
    // Ring positions that break `head <= tail <= head + capacity`: the sender's attach.
    let ring_cases: Vec<(&str, u64, u64)> = vec![
        ("tail - head > capacity", 0, cap + 8),
        ("head far past tail", 2 * cap + 64, 72),
        ("tail misaligned", 0, 77),
    ];
    for (what, head, tail) in ring_cases {
        let name = names.name("hp01");
        let mut img = good.clone();
        set_u64(&mut img, d + HEAD, head);
        set_u64(&mut img, d + TAIL, tail);
        plant(&name, &img);
        let r = spsc::Sender::open(&name, &kit::session()).map(drop);
        if !is_corrupted(&r) {
            failures.push(format!("{what} (sender attach): {r:?}"));
        }
        Segment::unlink(&name).expect("unlink");
    }
    // A frame header no producer writes, at the consumer's position.
    let name = names.name("hp01");
    let mut img = good.clone();
    set_u64(&mut img, d + SPSC_DATA, 0x1234_5678_0000_0040);
    plant(&name, &img);
    let mut rx = spsc::Receiver::open(&name, &kit::session()).expect("open");
    let mut buf = Vec::new();
    let r = rx.try_recv_into(&mut buf);
    if !is_corrupted(&r) {
        failures.push(format!("unknown frame tag: {r:?}"));
    }
    if !is_corrupted(&rx.try_recv_into(&mut buf)) {
        failures.push("a corrupted receiver did not stay corrupted".into());
    }
    drop(rx);
    let _ = Segment::unlink(&name);
    no_failures_and_clean("HP-01", &failures, &names);
}

// ---------------------------------------------------------------------------
// HP-02

/// The value of `lie`, one of the catalogue's lies about a ring index, for a
/// ring of `cap` bytes whose true positions are `(head, tail)`.
fn lie_value(lie: &str, (head, tail): (u64, u64), cap: u64) -> u64 {
    match lie {
        "head+cap+1" => head + cap + 1,
        "u64::MAX" => u64::MAX,
        "head-1" => head.wrapping_sub(1),
        "head+cap+8" => head + cap + 8,
        "head-8" => head.wrapping_sub(8),
        "head+2^40" => head + (1 << 40),
        "tail+8" => tail + 8,
        "tail-cap-8" => tail.wrapping_sub(cap + 8),
        other => panic!("unknown lie {other}"),
    }
}

/// Fills a new MPSC channel (a name tagged `tag`, options `o`) with 64-byte
/// messages until `try_send` fails; an adversary process then writes
/// `value(sent)` into its `head`. Returns how many were sent and what the
/// producer's next `try_send` got; leaves no name behind.
fn mpsc_send_after_head_lie(
    (wd, names, o): (&Watchdog, &Names, &Options),
    tag: &str,
    value: impl FnOnce(u64) -> u64,
) -> (u64, shmq::Result<()>) {
    let name = names.name(tag);
    let rx = mpsc::Receiver::create(&name, o).expect("create");
    let mut tx = mpsc::Sender::open(&name, o).expect("open");
    let mut sent = 0;
    while tx.try_send(&kit::message(sent, 1, 64)).is_ok() {
        sent += 1;
    }
    poke(wd, &name, &[(HEAD, value(sent))]);
    let first = tx.try_send(&kit::message(sent, 1, 64));
    drop((tx, rx));
    kit::remove_stale(&name);
    (sent, first)
}

/// The end of a table-driven test: no case failed (`what`: the catalogue
/// entry), and no name is left.
fn no_failures_and_clean(what: &str, failures: &[String], names: &Names) {
    kit::assert_no_failures(what, failures);
    names.assert_clean();
}

/// HP-02: an adversary process rewrites `head` and `tail` with the catalogue's
/// lies (head+cap+1, u64::MAX, head−1, and aligned ones). A side that reads the
/// lied-about word gets `Corrupted` on that call and stays poisoned; a side that
/// does not read it is unaffected (positions are kept privately and the shared
/// copies are only read where needed: the SPSC consumer never reads `tail` or
/// `head`, the SPSC producer reads `head` only when its cached copy says full,
/// and resynchronises from `head` when it attaches after a `tail` that is
/// behind). Guard pages and ASan over the same code: scripts/sanitizers.sh (MC-10).
#[test]
fn hp02_index_lies_are_corrupted_when_read_and_never_followed() {
    let (wd, names) = (Watchdog::new("hp02"), Names::new());
    let cap = 4096u64;
    let o = kit::session().capacity(cap);
    let frame64 = frame::frame_len(64) as u64;
    let mut failures = Vec::new();
    let mut buf = Vec::new();

    // (a) SPSC `head`, read by the producer once the ring looks full.
    for lie in ["head+cap+1", "u64::MAX", "head-1", "tail+8", "tail-cap-8"] {
        let name = names.name("hp02a");
        let mut rx = spsc::Receiver::create(&name, &o).expect("create");
        let mut tx = spsc::Sender::open(&name, &o).expect("open");
        let mut sent = 0;
        while tx.try_send(&kit::message(sent, 0, 64)).is_ok() {
            sent += 1;
        }
        let value = lie_value(lie, (0, sent * frame64), cap);
        poke(&wd, &name, &[(HEAD, value)]);
        let first = tx.try_send(&kit::message(sent, 0, 64));
        let again = tx.try_send(&kit::message(sent, 0, 64));
        if !is_corrupted(&first) || !is_corrupted(&again) {
            failures.push(format!(
                "SPSC head {lie}: producer got {first:?} then {again:?}"
            ));
        }
        // The consumer does not read `head`: what was published is still delivered.
        match rx.try_recv_into(&mut buf) {
            Ok(()) if msg::check(&buf).is_ok_and(|h| h.seq == 0) => {}
            other => failures.push(format!("SPSC head {lie}: consumer got {other:?}")),
        }
        drop((tx, rx));
        kit::remove_stale(&name);
    }

    // (b) SPSC `tail`: not read while streaming; a producer attaching later either
    // refuses it or resynchronises from `head`, and the stream stays intact.
    for lie in ["head+cap+1", "u64::MAX", "head-1", "head+cap+8", "head-8"] {
        let name = names.name("hp02b");
        let mut rx = spsc::Receiver::create(&name, &o).expect("create");
        let mut tx = spsc::Sender::open(&name, &o).expect("open");
        let mut v = Verifier::new();
        let mut seq = 0;
        let mut stream = |tx: &mut spsc::Sender, v: &mut Verifier, n: u64, seq: &mut u64| {
            for _ in 0..n {
                tx.send(&kit::message(*seq, 0, 64)).expect("send");
                *seq += 1;
                rx.try_recv_into(&mut buf).expect("recv");
                v.take(&buf);
            }
        };
        stream(&mut tx, &mut v, 50, &mut seq);
        let value = lie_value(lie, (50 * frame64, 0), cap);
        poke(&wd, &name, &[(TAIL, value)]);
        stream(&mut tx, &mut v, 100, &mut seq);
        drop(tx);
        poke(&wd, &name, &[(TAIL, value.wrapping_add(100 * frame64))]);
        let outcome = match spsc::Sender::open(&name, &o) {
            Err(Error::Corrupted(_)) => "refused".to_owned(),
            Ok(mut tx2) => {
                stream(&mut tx2, &mut v, 100, &mut seq);
                "resynchronised".to_owned()
            }
            Err(e) => {
                failures.push(format!("SPSC tail {lie}: a new producer got {e:?}"));
                String::new()
            }
        };
        eprintln!("hp02 SPSC tail {lie}: a producer attaching afterwards {outcome}");
        drop(rx);
        kit::remove_stale(&name);
    }

    // (c) MPSC `tail`: read by every producer's claim and by the consumer when it
    // looks for a dead producer's claim: both get `Corrupted` on that call.
    for lie in [
        "head+cap+1",
        "u64::MAX",
        "head-1",
        "head+cap+8",
        "head-8",
        "head+2^40",
    ] {
        let name = names.name("hp02c");
        let rx = mpsc::Receiver::create(&name, &o).expect("create");
        let mut tx = mpsc::Sender::open(&name, &o).expect("open");
        let mut rx = Some(rx);
        for s in 0..20 {
            tx.send(&kit::message(s, 1, 64)).expect("send");
        }
        let value = lie_value(lie, (20 * frame64, 0), cap);
        let (consumer, lied_at) = std::thread::scope(|s| {
            let mut rx = rx.take().expect("rx");
            let t = s.spawn(move || {
                let mut buf = Vec::new();
                let mut v = Verifier::new();
                v.take_n(20, &mut buf, |b| rx.recv_into(b));
                // Now waiting on an empty ring.
                let r = rx.recv_into_timeout(&mut buf, Duration::from_secs(5));
                (r.map(drop), mono_ns(), rx)
            });
            std::thread::sleep(Duration::from_millis(150));
            let lied_at = poke(&wd, &name, &[(TAIL, value)]);
            (t.join().expect("consumer thread"), lied_at)
        });
        // The consumer stays attached (a closed one would answer the producer first).
        let (r, at, rx_kept) = consumer;
        let latency = Duration::from_nanos(at.saturating_sub(lied_at));
        if !is_corrupted(&r) || latency > SLICE + DEATH_BUDGET {
            failures.push(format!(
                "MPSC tail {lie}: the waiting consumer got {r:?} {latency:?} after the lie"
            ));
        }
        // A producer reads `tail` on every claim and checks it against its cached
        // `head`; a lie that stays within what that cache allows ("head-8": just
        // behind the real head) is plausible to it and can only damage the shared
        // ring (shared fate, docs/RELIABILITY.md), never this process.
        let first = tx.try_send(&kit::message(20, 1, 64));
        if !is_corrupted(&first) && lie != "head-8" {
            failures.push(format!(
                "MPSC tail {lie}: a producer's next claim got {first:?}"
            ));
        }
        eprintln!(
            "hp02 MPSC tail {lie}: consumer Corrupted {latency:?} after the lie; producer: {}",
            match &first {
                Ok(()) => "claimed (plausible lie)".to_owned(),
                Err(e) => why(e),
            }
        );
        drop((tx, rx_kept));
        kit::remove_stale(&name);
    }

    // (d) MPSC `head`, read by a producer once its cached copy says full. (A
    // misaligned `head` within range is `hp02_mpsc_producer_refuses_a_misaligned_head`.)
    for lie in ["head+cap+1", "tail+8", "tail-cap-8"] {
        let at = (&wd, &names, &o);
        let (_, first) = mpsc_send_after_head_lie(at, "hp02d", |sent| {
            lie_value(lie, (2 * cap, sent * frame64), cap)
        });
        if !is_corrupted(&first) {
            failures.push(format!("MPSC head {lie}: the producer got {first:?}"));
        }
    }
    no_failures_and_clean("HP-02", &failures, &names);
}

/// HP-02, the catalogue's `u64::MAX` and `head+cap+1` lies in the MPSC `head`
/// while `tail` is still below the capacity: both are misaligned, and within
/// `tail - head <= capacity`. The SPSC producer checks alignment
/// (`check_positions`) and says `Corrupted`; the MPSC producer's claim does not
/// and reports `Full` (never an out-of-bounds write: offsets are masked and the
/// claim starts at its own, checked, `tail`).
#[test]
fn hp02_mpsc_producer_refuses_a_misaligned_head() {
    let (wd, names) = (Watchdog::new("hp02_misaligned"), Names::new());
    let o = kit::session().capacity(4096);
    let mut failures = Vec::new();
    for (lie, value) in [("u64::MAX", u64::MAX), ("head+cap+1", 4096 + 1)] {
        let (sent, first) = mpsc_send_after_head_lie((&wd, &names, &o), "hp02e", |_| value);
        if !is_corrupted(&first) {
            failures.push(format!("MPSC head {lie} (tail {}): {first:?}", sent * 72));
        }
    }
    no_failures_and_clean("HP-02 (MPSC)", &failures, &names);
}

// ---------------------------------------------------------------------------
// HP-03

/// HP-03 across processes (the property tests in `crates/ring/tests` cover the
/// same lies in-process, thousands of cases): an adversary process writes a
/// lying frame header where the consumer will read next. Each lie is
/// `Corrupted` at once (and stays so), or a policy skip that still makes
/// progress; no call takes long.
#[test]
fn hp03_lying_lengths_and_padding_chains_are_corrupted_or_skipped() {
    let (wd, names) = (Watchdog::new("hp03"), Names::new());
    let cap = 4096usize;
    let o = kit::session().capacity(cap as u64);
    let max = frame::max_payload(cap);
    let mut failures = Vec::new();
    // (name, consumer position to reach first, writes relative to the data area,
    // expected: "corrupted" or "progress")
    type Writes = Vec<(usize, u64)>;
    let spsc_cases: Vec<(&str, usize, Writes, &str)> = vec![
        (
            "length max+1",
            0,
            vec![(0, frame::spsc_message(max + 1))],
            "corrupted",
        ),
        (
            "length 2^31",
            0,
            vec![(0, frame::spsc_message(1 << 31))],
            "corrupted",
        ),
        (
            "length past the end of the area",
            cap - 16,
            vec![(cap - 16, frame::spsc_message(64))],
            "corrupted",
        ),
        (
            "padding at offset 0",
            0,
            vec![(0, frame::spsc_padding(cap - 8))],
            "corrupted",
        ),
        (
            "padding not ending at the end",
            8,
            vec![(8, frame::spsc_padding(16))],
            "corrupted",
        ),
        (
            "chained paddings",
            cap - 16,
            vec![
                (cap - 16, frame::spsc_padding(8)),
                (0, frame::spsc_padding(cap - 8)),
            ],
            "corrupted",
        ),
        (
            "unknown tag",
            0,
            vec![(0, 0x0bad_0bad_0000_0010)],
            "corrupted",
        ),
        (
            "zero-length message",
            0,
            vec![(0, frame::spsc_message(0))],
            "progress",
        ),
    ];
    for (what, at, writes, want) in spsc_cases {
        let name = names.name("hp03s");
        let mut rx = spsc::Receiver::create(&name, &o).expect("create");
        let mut tx = spsc::Sender::open(&name, &o).expect("open");
        let mut buf = Vec::new();
        for _ in 0..at / 8 {
            tx.send(&[]).expect("send");
            rx.try_recv_into(&mut buf).expect("recv");
        }
        let writes: Vec<(usize, u64)> = writes
            .into_iter()
            .rev() // the header the consumer reaches first is written last
            .map(|(off, v)| (SPSC_DATA + off, v))
            .collect();
        poke(&wd, &name, &writes);
        let t = Instant::now();
        let r = rx.try_recv_into(&mut buf);
        let again = rx.try_recv_into(&mut buf);
        let took = t.elapsed();
        let ok = match want {
            "corrupted" => is_corrupted(&r) && is_corrupted(&again),
            _ => r.is_ok() && buf.is_empty() && matches!(again, Err(Error::Empty)),
        };
        if !ok || took > Duration::from_secs(1) {
            failures.push(format!("SPSC {what}: {r:?}, then {again:?}, in {took:?}"));
        }
        drop((tx, rx));
        kit::remove_stale(&name);
    }

    let slots = 4u16;
    let mo = o.clone().max_producers(slots);
    let data = mpsc_data(slots);
    let hdr = |len: i32, kind: u8, slot: u8| {
        MpscHeader {
            len,
            kind,
            slot,
            incarnation: 0,
        }
        .encode()
    };
    // Offsets here are absolute within the ring region.
    let lap: Vec<(usize, u64)> = (0..cap / 8)
        .map(|i| (data + i * 8, hdr(0, frame::MPSC_PAD, 0)))
        .collect();
    let mpsc_cases: Vec<(&str, Writes, &str)> = vec![
        (
            "length max+1",
            vec![(data, hdr(max as i32 + 1, frame::MPSC_MSG, 0))],
            "corrupted",
        ),
        (
            "slot out of range",
            vec![(data, hdr(8, frame::MPSC_MSG, 200))],
            "corrupted",
        ),
        ("unknown kind", vec![(data, hdr(8, 0x33, 0))], "corrupted"),
        (
            "padding not 8-aligned",
            vec![(data, hdr(12, frame::MPSC_PAD, 0))],
            "corrupted",
        ),
        ("a lap of zero-length paddings", lap, "corrupted"),
        (
            "a frame beyond tail",
            vec![(data, hdr(-64, frame::MPSC_MSG, 3))],
            "corrupted-when-reclaiming",
        ),
        (
            "an uncommitted claim of a producer that never lived",
            // As a real claim: `tail` moved first, then the header.
            vec![(data, hdr(-64, frame::MPSC_MSG, 3)), (TAIL, 72)],
            "reclaimed",
        ),
    ];
    for (what, writes, want) in mpsc_cases {
        let name = names.name("hp03m");
        let mut rx = mpsc::Receiver::create(&name, &mo).expect("create");
        let writes: Vec<(usize, u64)> = writes.into_iter().rev().collect();
        poke(&wd, &name, &writes);
        let mut buf = Vec::new();
        let t = Instant::now();
        let (r, again) = if want != "corrupted" {
            // Reclaimed once the consumer looks at its producers (within a slice).
            let r = rx.recv_into_timeout(&mut buf, SLICE * 4);
            (r, rx.try_recv_into(&mut buf))
        } else {
            (rx.try_recv_into(&mut buf), rx.try_recv_into(&mut buf))
        };
        let took = t.elapsed();
        let ok = match want {
            "corrupted" | "corrupted-when-reclaiming" => is_corrupted(&r) && is_corrupted(&again),
            _ => {
                matches!(r, Err(Error::Timeout))
                    && matches!(again, Err(Error::Empty))
                    && rx.reclaimed().expect("reclaimed") == 1
            }
        };
        if !ok || took > Duration::from_secs(1) {
            failures.push(format!("MPSC {what}: {r:?}, then {again:?}, in {took:?}"));
        }
        drop(rx);
        kit::remove_stale(&name);
    }
    no_failures_and_clean("HP-03", &failures, &names);
}

// ---------------------------------------------------------------------------
// HP-04

/// HP-04 over channels of kind `K` (named by `names`), for `secs` seconds.
fn hp04<K: KindExt>(wd: &Watchdog, names: &Names, seed: u64, rng: &mut Rng, secs: f64) {
    let kind = K::NAME;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let (mut rounds, mut delivered, mut corrupted, mut flips) = (0, 0u64, 0, 0u64);
    while Instant::now() < until {
        rounds += 1;
        let name = names.name("hp04");
        let o = kit::session().capacity(4096).max_producers(2);
        let mut rx = Receiver::<K>::create(&name, &o).expect("create");
        let mut tx = Sender::<K>::open(&name, &o).expect("open");
        let data = kit::ring_off::data::<K>(2);
        let mut flipper = Spawn::role_on("flip", &name)
            .arg("KIND", K::NAME)
            .arg("DATA", data)
            .arg("MS", 300)
            .arg("SEED", rng.next_u64())
            .spawn(wd);
        flipper.event("started");
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (v, end) = std::thread::scope(|s| {
            s.spawn(|| {
                let mut rng = Rng::new(seed ^ rounds);
                let mut seq = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let m = kit::message(seq, 0, rng.range(16, 200) as usize);
                    match tx.send_timeout(&m, Duration::from_millis(10)) {
                        Ok(()) => seq += 1,
                        Err(Error::Timeout) => {}
                        Err(e) => panic!("the honest producer got {e:?}"),
                    }
                }
            });
            let mut v = Verifier::new();
            let mut buf = Vec::new();
            let round_end = Instant::now() + Duration::from_millis(250);
            let end = loop {
                if Instant::now() > round_end {
                    break "round over".to_owned();
                }
                match rx.recv_into_timeout(&mut buf, Duration::from_millis(20)) {
                    Ok(()) => {
                        if let Err(e) = v.check(&buf) {
                            break format!("BAD DELIVERY: {e}");
                        }
                    }
                    Err(Error::Timeout) => {}
                    Err(e) => break why(&e),
                }
            };
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (v, end)
        });
        assert!(
            end == "Corrupted" || end == "round over",
            "hp04 {kind} (seed {seed}) round {rounds}: {end}"
        );
        delivered += v.total;
        corrupted += u32::from(end == "Corrupted");
        let done = flipper.event("done");
        flipper.expect_success();
        flips += num(&done, "flips");
        drop((tx, rx));
        kit::remove_stale(&name);
    }
    eprintln!(
        "hp04 {kind}: {rounds} rounds, {delivered} messages delivered intact, \
         {corrupted} rounds ended Corrupted, {flips} header flips"
    );
    assert!(
        flips > 0,
        "{kind}: the flipper never found a header to flip"
    );
}

/// HP-04 (CI form: ~1.5 s per kind; `SHMQ_FLIP_SECS` for the catalogue's 60 s): a
/// flipper process turns frame headers invalid and back at full speed while an
/// honest producer streams and the consumer drains. Every message delivered is
/// intact and in sequence (a flipped header is never followed), the flip is
/// reported as `Corrupted`, nothing panics or hangs. The per-operation read
/// count (each shared word loaded once) is the other half of HP-04:
/// `crates/ring/tests/adversary.rs`.
#[test]
fn hp04_serial_flipper_process_never_makes_the_consumer_deliver_a_bad_frame() {
    let secs: f64 = kit::env_or("SHMQ_FLIP_SECS", 1.5);
    let wd = Watchdog::with_limit("hp04", Duration::from_secs(90 + 2 * secs as u64));
    let names = Names::new();
    let seed = Rng::seed();
    let mut rng = Rng::new(seed);
    eprintln!("hp04: seed {seed}");
    hp04::<Spsc>(&wd, &names, seed, &mut rng, secs);
    hp04::<Mpsc>(&wd, &names, seed, &mut rng, secs);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// HP-05

/// HP-05 over a channel of kind `K` named `name`.
fn hp05<K: KindExt>(wd: &Watchdog, name: &str) {
    let kind = K::NAME;
    let o = kit::session().capacity(1 << 16).max_producers(2);
    let mut rx = Receiver::<K>::create(name, &o).expect("create");
    let mut tx = Sender::<K>::open(name, &o).expect("open");
    let m = kit::message(0, 5, 4096);
    tx.send(&m).expect("send");
    let mut buf = Vec::new();
    rx.recv_into(&mut buf).expect("recv");
    let before = kit::record::hash(&buf);
    assert_eq!(buf, m);
    let data = kit::ring_off::data::<K>(2);
    let mut s = Spawn::role_on("scribble", name)
        .arg("DATA", data)
        .arg("MS", 20)
        .spawn(wd);
    let ev = s.event("done");
    s.expect_success();
    assert!(num(&ev, "rounds") > 0);
    let raw = kit::open_raw(name);
    let shared = RawRegion::of(&raw).read(data + 8, m.len());
    assert_ne!(shared, m, "{kind}: the adversary did not rewrite the frame");
    assert_eq!(
        kit::record::hash(&buf),
        before,
        "{kind}: a delivered copy changed"
    );
    assert_eq!(buf, m);
    drop(raw);
    drop((tx, rx));
    kit::remove_stale(name);
}

/// HP-05: bytes handed out by the copying calls (`recv_into`, typed `recv`) never
/// change after delivery, whatever the peer writes afterwards: hashed at
/// delivery, again after 20 ms of an adversary process rewriting the whole data
/// area (which it demonstrably did). The zero-copy guards (`recv`, the batch
/// callback) lend the bytes in place and are for trusted peers (see
/// docs/RELIABILITY.md on HP-05).
#[test]
fn hp05_copied_out_messages_never_change_after_delivery() {
    let (wd, names) = (Watchdog::new("hp05"), Names::new());
    hp05::<Spsc>(&wd, &names.name("hp05"));
    hp05::<Mpsc>(&wd, &names.name("hp05"));
    // A typed message is returned by value.
    let name = names.name("hp05t");
    let mut rx = spsc::typed::Receiver::<[u64; 32]>::create(&name, &kit::session()).expect("typed");
    let mut tx = spsc::typed::Sender::<[u64; 32]>::open(&name, &kit::session()).expect("typed");
    let value: [u64; 32] = std::array::from_fn(|i| i as u64 * 0x0101_0101);
    tx.send(&value).expect("send");
    let got = rx.recv().expect("recv");
    let mut s = Spawn::role_on("scribble", &name)
        .arg("DATA", SPSC_DATA)
        .arg("MS", 20)
        .spawn(&wd);
    s.event("done");
    s.expect_success();
    assert_eq!(got, value, "a typed value changed after delivery");
    drop((tx, rx));
    kit::remove_stale(&name);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// HP-06 / HP-07

/// HP-07 over anonymous channels of kind `K`.
fn hp07<K: KindExt>(wd: &Watchdog) {
    let kind = K::NAME;
    for case in ["first page", "data pages", "everything"] {
        let o = kit::session().capacity(1 << 16);
        let (mut tx, mut rx): (Sender<K>, Receiver<K>) = shmq::anonymous(&o).expect("anonymous");
        let mut buf = Vec::new();
        for s in 0..20 {
            tx.send(&kit::message(s, 0, 100)).expect("send");
        }
        for _ in 0..5 {
            rx.recv_into(&mut buf).expect("recv");
        }
        let fd: OwnedFd = tx.export_fd().expect("export_fd");
        let size = nix::sys::stat::fstat(&fd).expect("fstat").st_size;
        let ranges = match case {
            "first page" => "0+4096".to_owned(),
            "data pages" => format!("4096+{}", size - 4096),
            _ => format!("0+{size}"),
        };
        let mut p = Spawn::role("punch")
            .inherit_fd("FD", &fd)
            .arg("RANGES", ranges)
            .spawn(wd);
        let ev = p.event("done");
        p.expect_success();
        for k in ["shrink_eperm", "grow_eperm", "reseal_eperm"] {
            assert_eq!(ev[k], true, "{kind} {case}: {k}: {ev}");
        }
        assert_eq!(ev["punched"], json!([true]), "{kind} {case}: {ev}");
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        let mut slowest = Duration::ZERO;
        for i in 0..30 {
            let t = Instant::now();
            let r = rx.try_recv_into(&mut buf);
            let k = match &r {
                Ok(()) => "recv Ok".to_owned(),
                Err(e) => format!("recv {}", why(e)),
            };
            *seen.entry(k).or_default() += 1;
            let r = tx.try_send(&kit::message(100 + i, 0, 100));
            let k = match &r {
                Ok(()) => "send Ok".to_owned(),
                Err(e) => format!("send {}", why(e)),
            };
            *seen.entry(k).or_default() += 1;
            slowest = slowest.max(t.elapsed());
        }
        let t = Instant::now();
        let r = rx.recv_into_timeout(&mut buf, Duration::from_millis(100));
        let blocked = t.elapsed();
        eprintln!(
            "hp07 {kind} {case}: {seen:?}; a 100 ms receive gave {} after {blocked:?}",
            match &r {
                Ok(()) => "a message".to_owned(),
                Err(e) => why(e),
            }
        );
        assert!(
            slowest < Duration::from_millis(100),
            "a try_ call took {slowest:?}"
        );
        assert!(
            blocked < Duration::from_millis(100) + DEATH_BUDGET,
            "a bounded receive took {blocked:?}"
        );
        let fresh = spsc::Receiver::from_fd(fd.try_clone().expect("dup"), &kit::session());
        if case != "data pages" {
            assert!(
                matches!(
                    fresh,
                    Err(Error::Segment(
                        SegError::Abandoned | SegError::BadMagic { .. }
                    ))
                ),
                "{kind} {case}: opening the punched object: {fresh:?}"
            );
        }
        drop(fresh);
    }
}

/// HP-07 (and HP-06 at the channel level): a process holding an anonymous
/// channel's sealed memfd cannot shrink, grow or re-seal it (`EPERM`), but can
/// punch holes, which read back as zeros. Over the first page (segment header,
/// ring control and the start of the data), the data pages, or everything, the
/// channel's endpoints keep answering with typed results (`Empty`, `Corrupted`,
/// `Timeout`, a message, ...): no crash, no hang; a fresh open of the punched
/// object is refused with a typed error.
#[test]
fn hp07_punched_holes_give_typed_results_never_a_crash_or_hang() {
    let wd = Watchdog::new("hp07");
    hp07::<Spsc>(&wd);
    hp07::<Mpsc>(&wd);
}

/// HP-07 on a named channel (which cannot be sealed): a hole punched over the
/// first page (segment header and ring control block) reads back as zeros, which
/// a ring alone could take for a fresh ring whose peers have not attached. The
/// facade checks the segment header whenever the ring finds nothing to do, and
/// its liveness hook reports every peer of a segment whose header is gone as
/// dead, so both ends report `Corrupted` (never `Empty`, `Full` or `Timeout` for
/// good; a blocking receive returns, the watchdog would catch a hang), and keep
/// reporting it.
#[test]
fn hp07_a_hole_punched_over_a_named_channels_first_page_is_corrupted() {
    let _wd = Watchdog::new("hp07_named");
    let names = Names::new();
    hp07_named::<Spsc>(&names, true);
    hp07_named::<Mpsc>(&names, true);
    hp07_named::<Spsc>(&names, false);
    hp07_named::<Mpsc>(&names, false);
    names.assert_clean();
}

/// [`hp07_a_hole_punched_over_a_named_channels_first_page_is_corrupted`] over a
/// channel of kind `K`.
/// `blocking`: the receiver has taken every message when the hole is punched,
/// and its first call after is a blocking `recv_into`; otherwise messages are
/// left and it polls with `try_recv_into`.
fn hp07_named<K: KindExt>(names: &Names, blocking: bool) {
    let kind = K::NAME;
    let name = names.name("hp07n");
    let o = kit::session().capacity(1 << 16);
    let mut rx = How::Create.receiver::<K>(&name, &o).expect("rx");
    let mut tx = How::Open.sender::<K>(&name, &kit::session()).expect("tx");
    let mut buf = Vec::new();
    for s in 0..20 {
        tx.send(&kit::message(s, 0, 100)).expect("send");
    }
    for _ in 0..if blocking { 20 } else { 5 } {
        rx.recv_into(&mut buf).expect("recv");
    }
    kit::hostile::punch(&name, 0, 4096);
    if blocking {
        let r = rx.recv_into(&mut buf);
        assert!(
            is_corrupted(&r),
            "{kind}: a blocked receive after the punch: {r:?}"
        );
    }
    let mut seen = Vec::new();
    let rx_end = (0..10_000)
        .map(|_| rx.try_recv_into(&mut buf))
        .inspect(|r| seen.push(r.as_ref().map_or_else(why, |()| "Ok".into())))
        .find_map(Result::err);
    assert!(
        matches!(rx_end, Some(Error::Corrupted(_))),
        "{kind}: the receiver after the punch: {rx_end:?} (seen {seen:?})"
    );
    let bounded = rx.recv_into_timeout(&mut buf, Duration::from_millis(100));
    assert!(is_corrupted(&bounded), "{kind}: then {bounded:?}");
    let tx_end = (0..10_000)
        .map(|i| tx.try_send(&kit::message(100 + i, 0, 100)))
        .find_map(Result::err);
    assert!(
        matches!(tx_end, Some(Error::Corrupted(_))),
        "{kind}: the sender after the punch: {tx_end:?}"
    );
    let again = tx.send_timeout(b"x", Duration::from_millis(100));
    assert!(is_corrupted(&again), "{kind}: then {again:?}");
    drop((tx, rx));
    kit::remove_stale(&name);
    let _ = Segment::unlink(&name);
}

// ---------------------------------------------------------------------------
// HP-08 / HP-09

fn memfd_with(seals: u32, tag: &str) -> OwnedFd {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let name = std::ffi::CString::new(format!("shmq-hp08-{tag}")).unwrap();
    let fd = memfd_create(
        name.as_c_str(),
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .expect("memfd_create");
    nix::unistd::ftruncate(&fd, 1 << 16).expect("ftruncate");
    if seals != 0 {
        // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own, with an integer argument.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) };
        assert_eq!(r, 0, "F_ADD_SEALS: {}", std::io::Error::last_os_error());
    }
    fd
}

/// HP-08: `from_fd` (every facade flavour) refuses, with `Unsealed` or
/// `Untrusted`, a memfd missing any one of SHRINK, GROW and SEAL (or all), a
/// regular file, a pipe, a socket, a character device and a named (`shm_open`)
/// segment; and it does so before mapping anything. A properly sealed memfd that
/// is not a channel is `BadMagic`; a real channel's descriptor is accepted.
#[test]
fn hp08_from_fd_refuses_unsealed_and_foreign_descriptors_before_mapping() {
    let names = Names::new();
    const SHRINK: u32 = libc::F_SEAL_SHRINK as u32;
    const GROW: u32 = libc::F_SEAL_GROW as u32;
    const SEAL: u32 = libc::F_SEAL_SEAL as u32;
    type Open = fn(OwnedFd) -> Result<(), Error>;
    let opens: [(&str, Open); 4] = [
        ("spsc::Receiver", |fd| {
            spsc::Receiver::from_fd(fd, &kit::session()).map(drop)
        }),
        ("spsc::Sender", |fd| {
            spsc::Sender::from_fd(fd, &kit::session()).map(drop)
        }),
        ("mpsc::Sender", |fd| {
            mpsc::Sender::from_fd(fd, &kit::session()).map(drop)
        }),
        ("spsc::typed::Receiver<u64>", |fd| {
            spsc::typed::Receiver::<u64>::from_fd(fd, &kit::session()).map(drop)
        }),
    ];
    let named = names.name("hp08");
    let seg_tx = spsc::Sender::create(&named, &kit::session()).expect("named channel");
    let tmp = std::env::temp_dir().join(format!("shmq-hp08-{}", mono_ns()));
    std::fs::write(&tmp, vec![0u8; 1 << 16]).expect("regular file");
    let mut failures = Vec::new();
    for (api, open) in opens {
        type Case = (String, OwnedFd, fn(&SegError) -> bool);
        let cases: Vec<Case> = vec![
            (
                "memfd without seals".into(),
                memfd_with(0, "none"),
                |e| matches!(e, SegError::Unsealed { missing } if *missing == SHRINK | GROW | SEAL),
            ),
            (
                "memfd without SHRINK".into(),
                memfd_with(GROW | SEAL, "ns"),
                |e| matches!(e, SegError::Unsealed { missing } if *missing == SHRINK),
            ),
            (
                "memfd without GROW".into(),
                memfd_with(SHRINK | SEAL, "ng"),
                |e| matches!(e, SegError::Unsealed { missing } if *missing == GROW),
            ),
            (
                "memfd without SEAL".into(),
                memfd_with(SHRINK | GROW, "nl"),
                |e| matches!(e, SegError::Unsealed { missing } if *missing == SEAL),
            ),
            (
                "regular file".into(),
                std::fs::File::open(&tmp).expect("open").into(),
                |e| matches!(e, SegError::Untrusted { .. }),
            ),
            (
                "pipe".into(),
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .expect("pipe")
                    .0,
                |e| matches!(e, SegError::Untrusted { .. }),
            ),
            (
                "socket".into(),
                std::os::unix::net::UnixStream::pair()
                    .expect("socketpair")
                    .0
                    .into(),
                |e| matches!(e, SegError::Untrusted { .. }),
            ),
            (
                "character device".into(),
                std::fs::File::open("/dev/null").expect("/dev/null").into(),
                |e| matches!(e, SegError::Untrusted { .. }),
            ),
            (
                "named (shm_open) segment".into(),
                seg_tx.export_fd().expect("export_fd"),
                |e| matches!(e, SegError::Unsealed { missing } if *missing == SHRINK | GROW),
            ),
            (
                "sealed memfd that is not a channel".into(),
                memfd_with(SHRINK | GROW | SEAL, "foreign"),
                |e| matches!(e, SegError::BadMagic { found: 0 } | SegError::Abandoned),
            ),
        ];
        for (what, fd, check) in cases {
            let r = open(fd);
            // The facade says an untrusted object in its own words (naming the
            // options that allow sharing); the segment's reason stays in it.
            let ok = match &r {
                Err(Error::Segment(e)) => check(e),
                Err(Error::Untrusted { reason }) => {
                    check(&SegError::Untrusted {
                        reason: reason.clone(),
                    }) && format!("{}", r.as_ref().unwrap_err()).contains("expected_owner")
                }
                _ => false,
            };
            if !ok {
                failures.push(format!("{api} from {what}: {r:?}"));
            }
            let leftovers: Vec<String> = std::fs::read_to_string("/proc/self/maps")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("memfd:shmq-hp08-"))
                .map(str::to_owned)
                .collect();
            if !leftovers.is_empty() {
                failures.push(format!("{api} from {what}: left mapped: {leftovers:?}"));
            }
        }
    }
    // Positive control: an anonymous channel's descriptor.
    let (tx, _rx) = spsc::anonymous(&kit::session()).expect("anonymous");
    let mut tx = tx;
    tx.send(b"attach").expect("send");
    let ok = spsc::Receiver::from_fd(tx.export_fd().expect("export"), &kit::session());
    assert!(ok.is_ok(), "a sealed channel memfd: {ok:?}");
    drop(ok);
    let _ = std::fs::remove_file(&tmp);
    drop(seg_tx);
    no_failures_and_clean("HP-08", &failures, &names);
}

/// HP-09, the stated policy: descriptors of named (POSIX `shm_open`) segments,
/// which cannot be sealed, are refused by `from_fd` (asserted in HP-08, exactly
/// `Unsealed { missing: SHRINK|GROW }`). A peer with write access to a named
/// channel can still truncate it under its ends: the SIGBUS guard turns that
/// into errors. A consumer and a producer in two processes use a named channel
/// (SPSC, then MPSC);
/// this (third) process truncates the object, to nothing and to half its length,
/// while they stream, while the consumer is blocked on an empty ring, and while
/// the producer is blocked on a full one. Neither end gets a signal: each
/// returns `Corrupted` or `Disconnected` from a call (a blocked call too: no
/// hang, the watchdog would catch one), and so does its next call, while both
/// still hold their ends; then both exit normally.
#[test]
fn hp09_truncating_a_named_channel_under_its_ends_is_an_error_not_a_signal() {
    let wd = Watchdog::new("hp09");
    let names = Names::new();
    let dir = std::env::temp_dir().join(format!("shmq-hp09-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let scenarios = ["streaming", "consumer blocked", "producer blocked"];
    for (kind, scenario) in ["spsc", "mpsc"]
        .into_iter()
        .flat_map(|k| scenarios.map(|s| (k, s)))
    {
        for case in ["to nothing", "to half"] {
            let name = names.name("hp09");
            let tag = format!("{kind}-{scenario}-{case}").replace(' ', "-");
            let (go, cut) = (
                dir.join(format!("{tag}.go")),
                dir.join(format!("{tag}.cut")),
            );
            let end = |role: &str, idle: bool| {
                Spawn::role_on("trunc_end", &name)
                    .arg("KIND", kind)
                    .arg("ROLE", role)
                    .arg("IDLE", u8::from(idle))
                    .arg("GO", go.display())
                    .arg("CUT", cut.display())
            };
            let mut rx = end("rx", scenario == "producer blocked").spawn(&wd);
            let rx_tid = num(&rx.event("ready"), "tid") as i32;
            let mut tx = end("tx", scenario == "consumer blocked").spawn(&wd);
            let tx_tid = num(&tx.event("ready"), "tid") as i32;
            match scenario {
                "streaming" => {
                    rx.event("streaming");
                    tx.event("streaming");
                }
                "consumer blocked" => rx.assert_in_futex(rx_tid, "the consumer never blocked"),
                _ => tx.assert_in_futex(tx_tid, "the producer never blocked"),
            }
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(kit::shm_path(&name))
                .expect("open the named object");
            let size = f.metadata().expect("fstat").len();
            let len = if case == "to nothing" {
                0
            } else {
                size / 2 / 4096 * 4096
            };
            f.set_len(len).expect("truncate");
            drop(f);
            std::fs::write(&cut, b"").expect("cut");
            // Both ends still hold their handles when they report: each found the
            // damage on its own.
            for (who, p) in [("consumer", &mut rx), ("producer", &mut tx)] {
                let ev = p.event("error");
                eprintln!("hp09 {kind} {scenario}, {case}: {who}: {ev}");
                for k in ["first", "next"] {
                    assert!(
                        matches!(ev[k].as_str(), Some("Corrupted" | "Died")),
                        "{kind} {scenario}, {case}: the {who}'s {k} call after the truncation: {ev}"
                    );
                }
            }
            std::fs::write(&go, b"").expect("go");
            rx.expect_success();
            tx.expect_success();
            let _ = std::fs::remove_file(&go);
            let _ = std::fs::remove_file(&cut);
            kit::remove_stale(&name);
            let _ = Segment::unlink(&name);
        }
    }
    let _ = std::fs::remove_dir(&dir);
    names.assert_clean();
}

/// HP-09's poison: the SIGBUS guard fills the first `GUARD_POISON_LEN` bytes of
/// a damaged mapping with `0xFF` (zeros would read as a fresh, unattached ring).
/// That prefix must hold the segment header, the endpoint table and the largest
/// control block there is (MPSC with `MAX_PRODUCERS` slots).
#[test]
fn hp09_the_guards_poison_covers_the_largest_control_block() {
    let most = shmq_ring::mpsc::MAX_PRODUCERS;
    let g = shmq_ring::Geometry::mpsc(shmq_ring::spsc::MIN_CAPACITY, most).expect("geometry");
    let control = (g.region_len() - g.capacity()) as u64;
    let end = shmq_segment::Layout::data_offset_for(1 + most) + control;
    assert!(
        end <= shmq_segment::GUARD_POISON_LEN as u64,
        "header, endpoint table and a {most}-slot control block end at {end}, past the \
         poisoned {} bytes",
        shmq_segment::GUARD_POISON_LEN
    );
}

/// HP-09 with the guard turned off (`Options::sigbus_guard(false)`): truncating
/// the named channel kills its ends with SIGBUS, as it did before the guard.
#[test]
fn hp09_with_the_sigbus_guard_off_truncation_is_a_sigbus() {
    let (wd, names, name) = shmq_testkit::start("hp09_off", "hp09");
    let mut c = Spawn::role("truncated_rx")
        .arg("NAME", &name)
        .arg("GUARD", 0)
        .spawn(&wd);
    c.event("ready");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(kit::shm_path(&name))
        .expect("open the named object");
    f.set_len(0).expect("truncate");
    drop(f);
    c.expect_signal(
        nix::sys::signal::Signal::SIGBUS,
        "the guard turned off, a peer truncates a named channel",
    );
    Segment::unlink(&name).expect("unlink");
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// HP-10

/// HP-10, the storm: an adversary process calls `FUTEX_WAKE` on both futex words
/// in a tight loop (and, in the second run, also bumps them, so that a waiter's
/// compare fails at once). A receiver blocked meanwhile uses well under a core
/// (measured from `/proc/<pid>/task/*/schedstat` over a second, asserted < 0.8;
/// every spurious wake re-checks and sleeps again) and still gets its message
/// within a wait slice of it being sent.
#[test]
fn hp10_serial_wake_storm_costs_a_blocked_receiver_less_than_a_core() {
    let (wd, names) = (Watchdog::new("hp10_storm"), Names::new());
    let mut failures = Vec::new();
    for toggle in [false, true] {
        let name = names.name("hp10");
        let mut c = Spawn::role_on("rx", &name)
            .arg("COUNT", 1)
            .arg("CAP", 4096)
            .spawn(&wd);
        let tid = num(&c.event("waiting"), "tid") as i32;
        let mut tx = spsc::Sender::open(&name, &kit::session()).expect("open");
        c.assert_in_futex(tid, "the consumer never slept");
        let mut storm = Spawn::role_on("futex_storm", &name)
            .arg("MS", 1600)
            .arg("TOGGLE", u8::from(toggle))
            .spawn(&wd);
        storm.event("started");
        std::thread::sleep(Duration::from_millis(100));
        let (cpu0, t0) = (kit::cpu_ns(c.pid()), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let cpu = (kit::cpu_ns(c.pid()) - cpu0) as f64 / t0.elapsed().as_nanos() as f64;
        let sent_at = mono_ns();
        tx.send(&kit::message(0, 0, 64)).expect("send");
        let first = num(&c.event("first"), "at_ns");
        let latency = Duration::from_nanos(first.saturating_sub(sent_at));
        c.event("received");
        c.expect_success();
        let done = storm.event("done");
        storm.expect_success();
        eprintln!(
            "hp10 storm (toggle {toggle}): receiver used {:.1}% of a core; message after \
             {latency:?}; storm {done}",
            cpu * 100.0
        );
        if cpu >= 0.8 {
            failures.push(format!(
                "toggle {toggle}: the blocked receiver used {:.0}% of a core",
                cpu * 100.0
            ));
        }
        if latency > SLICE + DEATH_BUDGET {
            failures.push(format!(
                "toggle {toggle}: message delivered after {latency:?}"
            ));
        }
        drop(tx);
        kit::remove_stale(&name);
    }
    no_failures_and_clean("HP-10", &failures, &names);
}

/// HP-10's silent peer over a channel of kind `K` named `name`.
fn hp10_silent<K: KindExt>(wd: &Watchdog, name: &str, rng: &mut Rng) {
    let kind = K::NAME;
    let mut c = Spawn::role_on("rx", name)
        .arg("KIND", K::NAME)
        .arg("COUNT", 1)
        .arg("CAP", 4096)
        .spawn(wd);
    let tid = num(&c.event("waiting"), "tid") as i32;
    c.assert_in_futex(tid, "the consumer never slept");
    std::thread::sleep(Duration::from_millis(rng.range(0, 50)));
    let raw = kit::open_raw(name);
    let region = RawRegion::of(&raw);
    let m = kit::message(0, 0, 64);
    let data = kit::ring_off::data::<K>(shmq::DEFAULT_PRODUCERS);
    let header = if K::MPSC {
        MpscHeader {
            len: m.len() as i32,
            kind: frame::MPSC_MSG,
            slot: 0,
            incarnation: 0,
        }
        .encode()
    } else {
        frame::spsc_message(m.len())
    };
    region.write(data + 8, &m);
    region
        .word(data)
        .store(header, std::sync::atomic::Ordering::Release);
    let written = mono_ns();
    let first = num(&c.event("first"), "at_ns");
    c.event("received");
    c.expect_success();
    let latency = Duration::from_nanos(first.saturating_sub(written));
    eprintln!("hp10 silent peer {kind}: read {latency:?} after the unannounced write");
    assert!(
        latency < SLICE + DEATH_BUDGET,
        "{kind}: an unannounced message was read only after {latency:?}"
    );
    drop(raw);
    kit::remove_stale(name);
}

/// HP-10, the silent peer: a frame is written straight into the segment (payload,
/// then the header with `Release`), with no wake-up at all, while the receiver
/// (Park strategy) sleeps in `FUTEX_WAIT`. It still returns the message within a
/// wait slice (plus margin): every sleep is bounded. (shmq's own producers always
/// wake a flagged receiver; this is what a peer that does not looks like.)
#[test]
fn hp10_a_peer_that_never_wakes_still_gets_its_message_read_within_a_slice() {
    let (wd, names) = (Watchdog::new("hp10_silent"), Names::new());
    let mut rng = Rng::new(Rng::seed());
    hp10_silent::<Spsc>(&wd, &names.name("hp10s"), &mut rng);
    hp10_silent::<Mpsc>(&wd, &names.name("hp10s"), &mut rng);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// HP-11

/// HP-11: one of three MPSC producers (a real, attached producer process) moves
/// the shared `tail` forward by 2^40. The honest producers' next claims and the
/// consumer (once it has delivered the frames claimed before the lie, intact)
/// get `Corrupted`, within one operation and without spinning: the honest
/// producers report it and exit. (One shared ring is shared fate: producers that
/// do not trust each other get one SPSC channel each.)
#[test]
fn hp11_a_hostile_mpsc_producer_moving_tail_corrupts_everyone_without_a_spin() {
    let (wd, names, name) = shmq_testkit::start("hp11", "hp11");
    let o = kit::session().capacity(1 << 16).max_producers(8);
    let mut rx = mpsc::Receiver::create(&name, &o).expect("create");
    rx.expect_producers(3).expect("expect_producers");
    let mut honest: Vec<kit::Proc> = (1..=2)
        .map(|id| {
            Spawn::role_on("tx", &name)
                .arg("ID", id)
                .arg("COUNT", 10_000_000)
                .arg("PACE_US", 20)
                .spawn(&wd)
        })
        .collect();
    for p in &mut honest {
        p.event("ready");
    }
    let mut v = Verifier::new();
    let mut buf = Vec::new();
    v.take_n(200, &mut buf, |b| {
        rx.recv_into_timeout(b, Duration::from_secs(10))
    });
    let mut hostile = Spawn::role("hostile_mpsc").arg("NAME", &name).spawn(&wd);
    let lied = num(&hostile.event("lied"), "at_ns");
    let end = v.take_until(&mut buf, "a frame claimed before the lie", |b| {
        rx.recv_into_timeout(b, Duration::from_secs(10))
    });
    let consumer_after = Duration::from_nanos(mono_ns().saturating_sub(lied));
    assert!(matches!(end, Error::Corrupted(_)), "consumer: {end:?}");
    assert!(
        consumer_after < SLICE + Duration::from_secs(1),
        "the consumer reported the lie only after {consumer_after:?}"
    );
    for p in &mut honest {
        let ev = p.event("send_error");
        p.expect_success();
        assert_eq!(ev["why"], "Corrupted", "{ev}");
        let after = Duration::from_nanos(num(&ev, "at_ns").saturating_sub(lied));
        assert!(
            after < Duration::from_secs(1),
            "an honest producer took {after:?}: {ev}"
        );
    }
    let own = hostile.event("own_send");
    assert!(
        own["result"].as_str().unwrap_or("").contains("Corrupted"),
        "the liar's own next send: {own}"
    );
    eprintln!(
        "hp11: {} intact messages, consumer Corrupted {consumer_after:?} after the lie",
        v.total
    );
    drop(hostile);
    drop(rx);
    kit::remove_stale(&name);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// HP-12

/// HP-12's lying frame lengths over a channel of kind `K` named `name`.
fn hp12<K: KindExt>(name: &str, o: &Options) {
    let kind = K::NAME;
    let mut rx = Receiver::<K>::create(name, o).expect("create");
    let max = frame::max_payload(1 << 16);
    let raw = kit::open_raw(name);
    let region = RawRegion::of(&raw);
    let data = kit::ring_off::data::<K>(shmq::DEFAULT_PRODUCERS);
    let header = if K::MPSC {
        MpscHeader {
            len: i32::MAX,
            kind: frame::MPSC_MSG,
            slot: 0,
            incarnation: 0,
        }
        .encode()
    } else {
        (u64::from(frame::SPSC_MSG) << 32) | 0xffff_ffff
    };
    region
        .word(data)
        .store(header, std::sync::atomic::Ordering::Release);
    let (r, largest) = largest_allocation(|| {
        let mut buf = Vec::new();
        rx.try_recv_into(&mut buf)
    });
    assert!(is_corrupted(&r), "{kind}: {r:?}");
    assert!(
        largest <= max,
        "{kind}: a {largest}-byte allocation for a lying length (maximum message {max})"
    );
    // The mapping is the object's size, whatever the header says.
    let size = std::fs::metadata(kit::shm_path(name)).expect("stat").len();
    let mapped: Vec<u64> = std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&name[1..]))
        .map(|l| {
            let (a, b) = l
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap()
        })
        .collect();
    assert!(!mapped.is_empty());
    assert!(
        mapped.iter().all(|&m| m <= size.next_multiple_of(4096)),
        "{kind}: mappings {mapped:?} for a {size}-byte object"
    );
    drop(raw);
    drop(rx);
    kit::remove_stale(name);
}

/// HP-12: lengths and capacities a peer declares never turn into allocations
/// beyond the channel's maximum message (a counting global allocator in this
/// test binary records the largest allocation of each call), nor into a mapping
/// beyond the object's `fstat` size: a frame declaring `u32::MAX` (SPSC) or
/// `i32::MAX` (MPSC) bytes, a typed frame of the wrong length, a header declaring
/// a capacity of 2^62 or a total length of 2^62.
#[test]
fn hp12_lying_lengths_never_allocate_or_map_beyond_the_limits() {
    let names = Names::new();
    let o = kit::session().capacity(1 << 16);
    hp12::<Spsc>(&names.name("hp12"), &o);
    hp12::<Mpsc>(&names.name("hp12"), &o);
    // A typed frame whose length is not the type's.
    let name = names.name("hp12t");
    let mut rx = spsc::typed::Receiver::<u64>::create(&name, &kit::session()).expect("typed");
    let raw = kit::open_raw(&name);
    RawRegion::of(&raw).word(SPSC_DATA).store(
        frame::spsc_message(24),
        std::sync::atomic::Ordering::Release,
    );
    let (r, largest) = largest_allocation(|| rx.try_recv());
    assert!(is_corrupted(&r), "typed frame of the wrong length: {r:?}");
    assert!(
        largest <= 64,
        "a {largest}-byte allocation for a typed receive"
    );
    drop(raw);
    drop(rx);
    kit::remove_stale(&name);
    // Headers declaring huge sizes: refused, with small allocations, nothing left mapped.
    let good = spsc_image(&names);
    for (what, off, value) in [
        ("capacity 2^62", 40, 1u64 << 62),
        ("total_len 2^62", 24, 1 << 62),
    ] {
        let name = names.name("hp12h");
        let mut img = good.clone();
        set_u64(&mut img, off, value);
        plant(&name, &img);
        let (r, largest) =
            largest_allocation(|| spsc::Receiver::open(&name, &kit::session()).map(drop));
        assert!(r.is_err(), "{what}: {r:?}");
        assert!(largest < 1 << 20, "{what}: a {largest}-byte allocation");
        Segment::unlink(&name).expect("unlink");
    }
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// HP-13

struct Probe<T>(std::marker::PhantomData<T>);
trait ViaPod {
    fn pod(&self) -> bool {
        true
    }
}
impl<T: shmq::bytemuck::Pod> ViaPod for Probe<T> {}
trait ViaAny {
    fn pod(&self) -> bool {
        false
    }
}
impl<T> ViaAny for &Probe<T> {}

/// Whether `$t: bytemuck::Pod` (autoref specialisation: the `Pod` impl is found
/// first when it applies).
macro_rules! is_pod {
    ($t:ty) => {
        (&Probe::<$t>(std::marker::PhantomData)).pod()
    };
}

#[derive(Clone, Copy)]
#[allow(dead_code)]
enum AnEnum {
    A,
    B,
}

#[derive(Clone, Copy)]
#[allow(dead_code)]
struct NotReprC {
    a: u32,
    b: u64,
}

#[derive(Clone, Copy, shmq::bytemuck::Pod, shmq::bytemuck::Zeroable)]
#[bytemuck(crate = "shmq::bytemuck")]
#[repr(C)]
struct ReprC {
    a: u32,
    b: u32,
    c: u64,
}

/// Whether `r` is the facade's word for a mismatch of header field `f`: a
/// wrong kind (`kind`), or a wrong message type (the element fields).
fn mismatch_in_words<T>(r: &shmq::Result<T>, f: &str) -> bool {
    match r {
        Err(Error::WrongKind { .. }) => f == "kind",
        Err(Error::WrongMessageType { .. }) => {
            ["slot_size", "slot_align", "type_name"].contains(&f)
        }
        _ => false,
    }
}

/// Asserts that `r`, an attempt to open a channel as another type (`what`),
/// is a mismatch of a field `field` accepts, said in words.
fn assert_mismatch<T>(r: shmq::Result<T>, field: impl Fn(&str) -> bool, what: &str) {
    let fields = ["kind", "slot_size", "slot_align", "type_name"];
    match &r {
        Err(Error::Segment(SegError::LayoutMismatch { field: f, .. })) if field(f) => {}
        Err(_) if fields.iter().any(|f| field(f) && mismatch_in_words(&r, f)) => {}
        Err(e) => panic!("{what}: {e:?}"),
        Ok(_) => panic!("{what}: opened"),
    }
}

/// HP-13: typed channels take `T: bytemuck::Pod`. Checked here for the
/// catalogue's list without a compile-fail harness: `bool`, `char`, enums,
/// `Option`, references, raw pointers, heap types and non-`#[repr(C)]` structs
/// are not `Pod` (so `Sender<T>` does not compile for them); fixed-width
/// integers, floats, arrays and `#[repr(C)]` `Pod` structs are. `usize`/`isize`
/// are `Pod` (a deviation from the catalogue): the header's element size and
/// type name catch a 32/64-bit mismatch at attach, shown below.
#[test]
fn hp13_typed_channels_take_only_pod_and_the_header_catches_usize_mismatches() {
    assert!(is_pod!(u8) && is_pod!(u16) && is_pod!(u32) && is_pod!(u64) && is_pod!(u128));
    assert!(is_pod!(i8) && is_pod!(i32) && is_pod!(i64) && is_pod!(f32) && is_pod!(f64));
    assert!(is_pod!([u8; 16]) && is_pod!([u64; 4]) && is_pod!(ReprC));
    assert!(
        is_pod!(usize) && is_pod!(isize),
        "usize/isize: see the header check below"
    );
    assert!(!is_pod!(bool), "bool has invalid bit patterns");
    assert!(!is_pod!(char), "char has invalid bit patterns");
    assert!(!is_pod!(AnEnum), "enums have invalid bit patterns");
    assert!(!is_pod!(Option<u8>));
    assert!(!is_pod!(&'static u8), "references are pointers");
    assert!(
        !is_pod!(*const u8),
        "raw pointers are addresses of one process"
    );
    assert!(!is_pod!(String) && !is_pod!(Vec<u8>) && !is_pod!(Box<u8>));
    assert!(!is_pod!(NotReprC), "repr(Rust) layouts are not stable");

    // A channel of `usize` opened as `u64` (same size here) or as `u32` (what
    // `usize` is in a 32-bit peer): refused at attach.
    let names = Names::new();
    let name = names.name("hp13");
    let tx = spsc::typed::Sender::<usize>::create(&name, &kit::session()).expect("create");
    let o = kit::session();
    let u64s = spsc::typed::Receiver::<u64>::open(&name, &o);
    assert_mismatch(u64s, |f| f == "type_name", "usize channel opened as u64");
    let u32s = spsc::typed::Receiver::<u32>::open(&name, &o);
    assert_mismatch(u32s, |f| f == "slot_size", "usize channel opened as u32");
    let pairs = spsc::typed::Receiver::<[u32; 2]>::open(&name, &o);
    let type_or_align = |f: &str| matches!(f, "type_name" | "slot_align");
    assert_mismatch(pairs, type_or_align, "usize channel opened as [u32; 2]");
    drop(tx);
    names.assert_clean();
}
