//! The SIGBUS guard (`guard.rs`): a segment truncated under its mappings is
//! damage, never a signal; a `SIGBUS` anywhere else still reaches the handler
//! installed before ours, or the default action; and the guard can be turned off.
//!
//! The cases that must end in a signal, or that install a handler of their own,
//! run in child processes (the guard is process-global, installed once).
//!
//! Run: `cargo test --release -p shmq-segment --test sigbus`.

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::json;
use shmq_segment::{Expect, Segment, SegmentOptions};
use shmq_testkit as kit;
use shmq_testkit::{Names, Spawn, arg, emit};

const LAYOUT: shmq_segment::Layout = shmq_testkit::hostile::SEG_LAYOUT;

/// Exit code of a child whose own (pre-installed) SIGBUS handler ran.
const USER_HANDLER_RAN: i32 = 42;

shmq_testkit::roles! {
    role_stray_fault role_chained role_guard_off role_raised
}

/// Truncates the named object `name` to `len` bytes from outside any mapping.
fn truncate(name: &str, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(kit::shm_path(name))
        .expect("open the named object");
    f.set_len(len).expect("truncate");
}

/// Reads one byte at `off` of a segment's user region.
fn read_at(seg: &Segment, off: usize) -> u8 {
    assert!((off as u64) < seg.data_len());
    // SAFETY: `off` lies within the user region (asserted), mapped while `seg`
    // lives; a volatile read of one byte, through no reference.
    unsafe { seg.data().as_ptr().add(off).read_volatile() }
}

/// A shared mapping of a fresh, unlinked temporary file of `len` bytes that is
/// *not* a segment (so not registered with the guard), then the file truncated
/// to nothing: touching it faults.
fn stray_truncated_mapping(len: usize) -> *mut u8 {
    // Never unmapped: it stays until the process exits.
    let (f, p) = kit::hostile::file_mapping("stray", len);
    f.set_len(0).expect("truncate");
    p
}

/// Touches a stray truncated mapping: SIGBUS, not ours to handle.
fn touch_stray() -> u8 {
    let p = stray_truncated_mapping(4096);
    // SAFETY: within the mapping; the file no longer covers it, so this faults,
    // which is what the caller wants to observe.
    unsafe { p.read_volatile() }
}

/// No core file for a SIGBUS this role expects to die of.
fn no_core() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads one rlimit we own.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}

/// Creates and publishes a guarded segment NAME (installing the guard).
fn guarded(name: &str, opts: &SegmentOptions) -> Segment {
    Segment::create(name, &LAYOUT, opts)
        .expect("create")
        .publish()
        .expect("publish")
}

/// With the guard installed (a segment mapped), touches a truncated mapping that
/// is not a segment: must die of SIGBUS (the default action).
fn role_stray_fault() {
    no_core();
    let _seg = guarded(&arg::<String>("NAME"), &SegmentOptions::new());
    assert!(shmq_segment::sigbus_guard_installed());
    emit("armed", json!({}));
    let v = touch_stray();
    emit("survived", json!({ "read": v }));
}

static USER_HANDLER_HITS: AtomicU8 = AtomicU8::new(0);

extern "C" fn user_handler(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    USER_HANDLER_HITS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `info` is the siginfo the kernel (or our chaining handler) passed.
    let code = unsafe { (*info).si_code };
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(if code > 0 { USER_HANDLER_RAN } else { 1 }) };
}

/// Installs a SIGBUS handler of its own (SA_SIGINFO) *before* shmq's guard,
/// then maps a guarded segment NAME, truncates it and reads past its end: the
/// guard handles that (`survived`, the user handler not run); then touches a
/// stray truncated mapping: the guard chains to the user handler, which exits
/// with USER_HANDLER_RAN.
fn role_chained() {
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = user_handler as *const () as libc::sighandler_t;
    sa.sa_flags = libc::SA_SIGINFO;
    // SAFETY: installs an extern "C" SA_SIGINFO handler that lives for the program.
    let rc = unsafe { libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "sigaction");
    let name: String = arg("NAME");
    let seg = guarded(&name, &SegmentOptions::new());
    truncate(&name, 0);
    let v = read_at(&seg, seg.data_len() as usize - 1);
    emit(
        "survived",
        json!({
            "damaged": seg.is_damaged(),
            "read": v,
            "user_handler_hits": USER_HANDLER_HITS.load(Ordering::Relaxed),
        }),
    );
    let v = touch_stray();
    emit("not_chained", json!({ "read": v }));
}

/// Maps segment NAME with the guard off (the first segment of this process, so
/// no guard is installed), truncates it and reads past its end: SIGBUS.
fn role_guard_off() {
    no_core();
    let name: String = arg("NAME");
    let seg = guarded(&name, &SegmentOptions::new().sigbus_guard(false));
    assert!(!shmq_segment::sigbus_guard_installed());
    truncate(&name, 0);
    emit("armed", json!({}));
    let v = read_at(&seg, 0);
    emit("survived", json!({ "read": v }));
}

/// With GUARD=1 the guard installed (a segment mapped), with GUARD=0 not: raises
/// SIGBUS itself (`raise`, no fault) and reports if it survived.
fn role_raised() {
    no_core();
    let _seg =
        (arg::<u8>("GUARD") == 1).then(|| guarded(&arg::<String>("NAME"), &SegmentOptions::new()));
    emit("armed", json!({}));
    // SAFETY: raise is always safe to call.
    unsafe { libc::raise(libc::SIGBUS) };
    emit("survived", json!({}));
}

/// A test on child processes: a watchdog and a fresh segment name tagged `tag`
/// handed to `body`, then what every such test ends with (the segment its
/// children left removed, and no name left behind).
fn with_children(tag: &str, body: impl FnOnce(&kit::Watchdog, &str)) {
    let (wd, names, name) = shmq_testkit::start(tag, tag);
    body(&wd, &name);
    kit::remove_stale(&name);
    names.assert_clean();
}

/// Runs ROLE in a child on a fresh segment name tagged `tag`: the child says it
/// is armed, then must die of SIGBUS (`what` names the case).
fn dies_of_sigbus(tag: &str, role: &str, what: &str) {
    with_children(tag, |wd, name| {
        let mut c = Spawn::role_on(role, name).spawn(wd);
        c.event("armed");
        c.expect_signal(nix::sys::signal::Signal::SIGBUS, what);
    });
}

/// In this process: a named segment truncated to nothing under two handles.
/// The handle that reads past the end gets no signal and turns damaged; the
/// other, which touched nothing, is not damaged but sees the object shrunk. A
/// file-backed segment truncated to half its length behaves the same.
#[test]
fn a_read_past_the_end_of_a_truncated_segment_is_damage_not_a_signal() {
    let names = Names::new();
    let name = names.name("sigbus-unit");
    let a = guarded(&name, &SegmentOptions::new());
    let b = Segment::open(&name, &Expect::default(), &SegmentOptions::new()).expect("open");
    assert!(shmq_segment::sigbus_guard_installed());
    assert!(!a.is_damaged() && !b.is_damaged());
    assert!(!a.is_shrunk().unwrap());
    truncate(&name, 0);
    assert!(a.is_shrunk().unwrap() && b.is_shrunk().unwrap());
    let last = a.data_len() as usize - 1;
    let v = read_at(&a, last);
    assert!(a.is_damaged(), "the guard marked the mapping that faulted");
    assert!(!b.is_damaged(), "the other mapping has not faulted");
    assert_eq!(v, 0xFF, "a 64 KiB segment lies within the poisoned prefix");
    assert_eq!(read_at(&a, 0), 0xFF, "the whole mapping was replaced");
    assert!(
        a.info().magic != 0 && a.info().magic == shmq_segment::MAGIC,
        "the private header copy is untouched"
    );
    drop((a, b));
    Segment::unlink(&name).expect("unlink");
    names.assert_clean();

    let dir = std::env::temp_dir().join(format!("shmq-sigbus-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let seg = Segment::create_file(&dir, &LAYOUT, &SegmentOptions::new())
        .expect("create_file")
        .publish()
        .expect("publish");
    let total = seg.info().total_len;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&dir)
        .expect("open")
        .set_len(total / 2 / 4096 * 4096)
        .expect("truncate");
    assert!(!seg.is_damaged());
    let _ = read_at(&seg, seg.data_len() as usize - 1);
    assert!(seg.is_damaged(), "a file-backed segment is guarded too");
    drop(seg);
    std::fs::remove_file(&dir).expect("remove");
}

/// A SIGBUS at an address outside every registered mapping still gets the
/// default action: the child dies of it.
#[test]
fn a_fault_outside_every_segment_still_kills_with_sigbus() {
    dies_of_sigbus(
        "sigbus-stray",
        "stray_fault",
        "a fault in a mapping that is not a segment",
    );
}

/// A SIGBUS sent (`raise`) rather than caused by a fault ends as it would
/// without the guard. (In a Rust program that is survival: std's own SIGBUS
/// handler, there for stack overflows, puts the default action back and returns,
/// and the guard chains to it.)
#[test]
fn a_raised_sigbus_ends_as_without_the_guard() {
    with_children("sigbus-raise", |wd, name| {
        let mut outcome = Vec::new();
        for guard in [0, 1] {
            let mut c = Spawn::role_on("raised", name).arg("GUARD", guard).spawn(wd);
            c.event("armed");
            let status = c.wait();
            outcome.push((status.signal(), status.code(), c.log().contains("survived")));
        }
        assert_eq!(outcome[0], outcome[1], "without, then with the guard");
    });
}

/// A handler installed before the guard is chained: it sees the faults that are
/// not a segment's, and only those.
#[test]
fn a_handler_installed_before_the_guard_is_chained() {
    with_children("sigbus-chain", |wd, name| {
        let mut c = Spawn::role_on("chained", name).spawn(wd);
        let ev = c.event("survived");
        assert_eq!(ev["damaged"], true, "{ev}");
        assert_eq!(
            ev["user_handler_hits"], 0,
            "the guard kept its own fault: {ev}"
        );
        let status = c.wait();
        assert_eq!(
            status.code(),
            Some(USER_HANDLER_RAN),
            "a stray fault must reach the user's handler: {status:?}\n{}",
            c.log()
        );
    });
}

/// With `sigbus_guard(false)` nothing is installed, and truncation is the
/// plain SIGBUS it was before the guard.
#[test]
fn with_the_guard_off_truncation_is_still_sigbus() {
    dies_of_sigbus("sigbus-off", "guard_off", "the guard turned off");
}
