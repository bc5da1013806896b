//! Cross-process tests of the segment layer (`shmq-segment`): a round trip
//! through a second process, every error variant, modes under any umask, seals
//! against a forked child, and endpoint liveness across SIGKILL, SIGSTOP, zombies
//! and `fork` without `exec`.
//!
//! What the facade `shmq` makes of these errors is in `tests/segment_facade.rs`
//! of the root package.
//!
//! Run: `cargo test --release -p shmq-segment --test segment`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use shmq_segment::{
    Backing, Error as SegError, Expect, HEADER_LEN, Layout, MAGIC, Opened, Segment, SegmentOptions,
    VERSION,
};
use shmq_testkit as kit;
use shmq_testkit::hostile::{InvalidNames, plant, poke, unsealed_memfd};
use shmq_testkit::{Names, Spawn, Watchdog, arg, emit, hang};

/// The layout the tests create: an arbitrary kind, four endpoints, 64 KiB.
const LAYOUT: Layout = shmq_testkit::hostile::SEG_LAYOUT;

fn expect_all() -> Expect {
    Expect {
        kind: Some(LAYOUT.kind),
        endpoints: Some(LAYOUT.endpoints),
        capacity: Some(LAYOUT.capacity),
        slot_size: Some(LAYOUT.slot_size),
        slot_align: Some(LAYOUT.slot_align),
        type_version: Some(LAYOUT.type_version),
        type_flags: Some(LAYOUT.type_flags),
    }
}

fn opts() -> SegmentOptions {
    SegmentOptions::new()
}

/// Byte `i` of pattern `seed`.
fn pat(seed: u64, i: usize) -> u8 {
    let x = (i as u64)
        .wrapping_add(seed.wrapping_mul(0x1000_0000_01b3))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// Writes pattern `seed` into `len` bytes at `at` of a segment's user region.
fn write_pattern(base: NonNull<u8>, region_len: u64, at: usize, len: usize, seed: u64) {
    assert!((at + len) as u64 <= region_len, "pattern beyond the region");
    let src: Vec<u8> = (0..len).map(|i| pat(seed, i)).collect();
    // SAFETY: `at + len <= region_len` (asserted), and the region is mapped for
    // `region_len` bytes while the segment handle the caller borrowed it from lives;
    // the bytes are written with a raw copy, never through a reference.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), base.as_ptr().add(at), len) }
}

/// Copies `len` bytes at `at` of a segment's user region out.
fn read_region(base: NonNull<u8>, region_len: u64, at: usize, len: usize) -> Vec<u8> {
    assert!((at + len) as u64 <= region_len, "read beyond the region");
    let mut out = vec![0u8; len];
    // SAFETY: as in `write_pattern`: in bounds (asserted), mapped while the caller's
    // segment lives, and copied out raw into private memory.
    unsafe { std::ptr::copy_nonoverlapping(base.as_ptr().add(at), out.as_mut_ptr(), len) }
    out
}

/// Index of the first byte that is not pattern `seed`, if any.
fn pattern_mismatch(bytes: &[u8], seed: u64) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| b != pat(seed, i))
}

/// A `seg_hold` role holding segment `name` (with pattern `seed`), published
/// or not, once it is ready.
fn hold(wd: &Watchdog, name: &str, published: bool, seed: u64) -> shmq_testkit::Proc {
    let mut p = Spawn::role_on("seg_hold", name)
        .arg("PUBLISH", u8::from(published))
        .arg("SEED", seed)
        .spawn(wd);
    p.event("ready");
    p
}

/// A test's names and a first one, tagged `tag`.
fn fresh(tag: &str) -> (Names, String) {
    let names = Names::new();
    let name = names.name(tag);
    (names, name)
}

/// Unlinks segment `name` (which must exist), then checks that none of `names`
/// is left behind.
fn unlink_and_check(names: &Names, name: &str) {
    Segment::unlink(name).expect("unlink");
    names.assert_clean();
}

fn create_published(name: &str) -> Segment {
    Segment::create(name, &LAYOUT, &opts())
        .expect("create")
        .publish()
        .expect("publish")
}

// ---------------------------------------------------------------------------
// Roles

shmq_testkit::roles! {
    role_seg_read role_seg_hold role_seg_claim role_seg_claim_fork role_seg_umask
    role_seg_nospace role_seg_as_nobody role_seg_create_killed role_seg_fsize
    role_seg_create_loop
}

/// Creates NAME (or, if DIR is set, the file DIR/seg) with DATA bytes of user
/// region (built unnamed if UNNAMED=1), right after reporting `go`; writes
/// pattern 9, publishes, and holds it until killed.
fn role_seg_create_killed() {
    let name: String = arg("NAME");
    let dir: String = kit::arg_or("DIR", String::new());
    let o = opts().build_unnamed(arg::<u8>("UNNAMED") == 1);
    let layout = Layout {
        data_len: arg("DATA"),
        ..LAYOUT
    };
    emit("go", json!({}));
    let c = if dir.is_empty() {
        Segment::create(&name, &layout, &o)
    } else {
        Segment::create_file(&std::path::Path::new(&dir).join("seg"), &layout, &o)
    }
    .expect("create");
    write_pattern(c.data(), c.data_len(), 0, 4096, 9);
    let _seg = c.publish().expect("publish");
    emit("published", json!({}));
    hang();
}

/// Creates, publishes, checks and unlinks segment NAME COUNT times (small
/// segments, so that most of the time is spent between `O_EXCL` and the lock);
/// reports `done` with the errors met.
fn role_seg_create_loop() {
    let name: String = arg("NAME");
    let mut errors = Vec::new();
    for _ in 0..arg::<u64>("COUNT") {
        let r = Segment::create(&name, &LAYOUT, &opts())
            .and_then(|c| c.publish())
            .and_then(|seg| {
                let seen = Segment::open(&name, &expect_all(), &opts())?;
                drop((seg, seen));
                Segment::unlink(&name)
            });
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    }
    emit("done", json!({ "errors": errors }));
}

/// Whether SIGXFSZ is blocked in this thread, its disposition, and whether it
/// is pending.
fn xfsz_state() -> serde_json::Value {
    let blocked = nix::sys::signal::SigSet::thread_get_mask()
        .expect("sigprocmask")
        .contains(Signal::SIGXFSZ);
    // SAFETY: an all-zero sigaction is valid to be overwritten; `sigaction` with a
    // null new action only reads the current one into `old`.
    let handler = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut old),
            0
        );
        old.sa_sigaction
    };
    // SAFETY: an all-zero sigset_t is a valid empty set; `sigpending` fills it and
    // `sigismember` reads it.
    let pending = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        assert_eq!(libc::sigpending(&mut set), 0);
        libc::sigismember(&set, libc::SIGXFSZ) == 1
    };
    json!({ "blocked": blocked, "handler": handler, "pending": pending })
}

/// What a create under a file size limit gave, as JSON.
fn fsize_outcome<T>(r: &Result<T, SegError>) -> serde_json::Value {
    match r {
        Err(SegError::FileSizeLimit { size, limit }) => {
            json!({ "fsize": size, "limit": limit, "message": r.as_ref().err().map(|e| e.to_string()) })
        }
        Err(SegError::NoSpace { size }) => json!({ "nospace": size }),
        Err(e) => json!({ "error": format!("{e:?}") }),
        Ok(_) => json!({ "created": true }),
    }
}

/// Under RLIMIT_FSIZE = 1 MiB (SIGXFSZ blocked beforehand if BLOCKED=1), creates
/// a 4 MiB segment NAME and a 4 MiB file segment in DIR (built unnamed if
/// UNNAMED=1), then a 64 KiB one; reports the outcomes and SIGXFSZ's state before
/// and after.
fn role_seg_fsize() {
    let name: String = arg("NAME");
    let dir = std::path::PathBuf::from(arg::<String>("DIR"));
    let o = opts().build_unnamed(arg::<u8>("UNNAMED") == 1);
    // A private /dev/shm where we can (root), so that no other test's
    // temporaries are seen as ours.
    let isolated = kit::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok()
        && mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).is_ok()
        && mount(
            Some(c"tmpfs"),
            c"/dev/shm",
            Some(c"tmpfs"),
            0,
            Some(c"size=64m,mode=1777"),
        )
        .is_ok();
    if arg::<u8>("BLOCKED") == 1 {
        let mut only = nix::sys::signal::SigSet::empty();
        only.add(Signal::SIGXFSZ);
        only.thread_block().expect("block SIGXFSZ");
    }
    // Another thread with SIGXFSZ unblocked: a process-directed SIGXFSZ would be
    // delivered there and kill the process (the kernel's is thread-directed).
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let bystander = std::thread::spawn(move || {
        let _ = stopped.recv();
    });
    let before = xfsz_state();
    let temps_before = kit::shm_entries(shmq_segment::TEMPORARY_PREFIX);
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = 1 << 20;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let big = Layout {
        data_len: 4 << 20,
        ..LAYOUT
    };
    let shm = fsize_outcome(&Segment::create(&name, &big, &o));
    let file = fsize_outcome(&Segment::create_file(&dir.join("seg"), &big, &o));
    let after = xfsz_state();
    drop(stop);
    bystander.join().expect("the bystander thread");
    let shm_left = kit::shm_path(&name).exists()
        || (isolated
            && !kit::shm_entries(shmq_segment::TEMPORARY_PREFIX)
                .iter()
                .all(|t| temps_before.contains(t)));
    let dir_left: Vec<String> = std::fs::read_dir(&dir)
        .expect("read_dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    // Positive control: a segment within the limit is made and published.
    let small = Segment::create(&name, &LAYOUT, &o).and_then(|c| c.publish());
    let small_ok = small.is_ok();
    drop(small);
    let _ = Segment::unlink(&name);
    emit(
        "result",
        json!({
            "shm": shm, "file": file, "before": before, "after": after,
            "shm_left": shm_left, "dir_left": dir_left, "small_ok": small_ok,
            "isolated": isolated,
        }),
    );
}

/// Opens NAME, checks LEN bytes of pattern SEED_IN, writes pattern SEED_OUT after them.
fn role_seg_read() {
    let name: String = arg("NAME");
    let len: usize = arg("LEN");
    let seg = Segment::open(&name, &expect_all(), &opts()).expect("open from the second process");
    let bytes = read_region(seg.data(), seg.data_len(), 0, len);
    let mismatch = pattern_mismatch(&bytes, arg("SEED_IN"));
    write_pattern(seg.data(), seg.data_len(), len, len, arg("SEED_OUT"));
    emit(
        "read",
        json!({
            "mismatch": mismatch,
            "creator_pid": seg.info().creator_pid,
            "parent": std::os::unix::process::parent_id(),
            "data_len": seg.data_len(),
            "named": matches!(seg.backing(), Backing::Named(n) if *n == name),
        }),
    );
}

/// Creates NAME with LAYOUT, writes pattern SEED, publishes it unless PUBLISH=0,
/// reports `ready`, and holds it until killed.
fn role_seg_hold() {
    let name: String = arg("NAME");
    let c = Segment::create(&name, &LAYOUT, &opts()).expect("create");
    write_pattern(c.data(), c.data_len(), 0, 4096, arg("SEED"));
    // Held published (`Ok`) or still being created (`Err`).
    let _keep = match arg::<u8>("PUBLISH") {
        1 => Ok(c.publish().expect("publish")),
        _ => Err(c),
    };
    emit("ready", json!({}));
    hang();
}

/// Opens segment NAME and claims its endpoint IDX (role parameters).
fn open_and_claim() -> Segment {
    let seg = Segment::open(&arg::<String>("NAME"), &Expect::default(), &opts()).expect("open");
    seg.claim_endpoint(arg("IDX")).expect("claim_endpoint");
    seg
}

/// Opens NAME, claims endpoint IDX, reports, holds it until killed (or, with
/// THEN=exit, releases it by exiting normally).
fn role_seg_claim() {
    let seg = open_and_claim();
    emit("claimed", json!({}));
    if arg::<String>("THEN") == "exit" {
        return;
    }
    let _keep = seg;
    hang();
}

/// Opens NAME, claims endpoint IDX, then forks a child that does NOT exec and
/// just lives on (no parent-death signal), reports its pid, and holds until killed.
fn role_seg_claim_fork() {
    let seg = open_and_claim();
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    assert!(
        threads <= 2,
        "fork needs a single test thread, found {threads}"
    );

    // The child says when it runs: until then its descriptor table is the parent's
    // (the atfork handler that drops the endpoint's lock runs in the child, before
    // `fork` returns there), and a parent killed in that window would read alive
    // until the child is first scheduled.
    let (ready_rx, ready_tx) = nix::unistd::pipe().expect("pipe");
    // SAFETY: this role process has only this thread and libtest's main thread,
    // which is idle waiting for the test result; the child makes only raw system
    // calls (write, pause) and touches no lock or allocator.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: writes one byte from a static to a descriptor this process owns.
            unsafe { libc::write(ready_tx.as_raw_fd(), c"r".as_ptr().cast(), 1) };
            loop {
                // SAFETY: pause only sleeps until a signal arrives.
                unsafe { libc::pause() };
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_tx);
            let mut byte = [0u8; 1];
            assert_eq!(
                nix::unistd::read(&ready_rx, &mut byte).expect("read the child's byte"),
                1,
                "the forked child did not start"
            );
            emit("forked", json!({ "child": child.as_raw() }));
            let _keep = seg;
            hang();
        }
    }
}

/// For each umask in 000 and 077, creates N<k> segments with the default mode
/// and with mode 0640, and reports their `fstat` modes.
fn role_seg_umask() {
    use nix::sys::stat::{Mode, fstat, umask};
    let mode_of = |name: &str| -> u32 {
        let fd = nix::sys::mman::shm_open(
            name,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("shm_open");
        fstat(&fd).expect("fstat").st_mode & 0o7777
    };
    let mut results = Vec::new();
    for (k, mask) in [0o000u32, 0o077].into_iter().enumerate() {
        umask(Mode::from_bits_truncate(mask));
        let default_name: String = arg(&format!("N{}", 2 * k));
        let explicit_name: String = arg(&format!("N{}", 2 * k + 1));
        let a = create_published(&default_name);
        let b = Segment::create(&explicit_name, &LAYOUT, &opts().mode(0o640))
            .expect("create 0640")
            .publish()
            .expect("publish");
        results.push(json!({
            "umask": mask,
            "default": mode_of(&default_name),
            "explicit_0640": mode_of(&explicit_name),
        }));
        drop((a, b));
        for n in [&default_name, &explicit_name] {
            Segment::unlink(n).expect("unlink");
        }
    }
    emit("modes", json!({ "results": results }));
}

/// Drops to uid/gid 65534, then opens NAME (a root-owned 0600 segment).
fn role_seg_as_nobody() {
    nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).expect("setgid");
    nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).expect("setuid");
    let name: String = arg("NAME");
    let r = Segment::open(&name, &Expect::default(), &opts().expected_owner(None));
    let shown = match &r {
        Err(SegError::PermissionDenied { name: n }) if *n == name => "PermissionDenied".to_owned(),
        other => format!("{other:?}"),
    };
    emit("opened", json!({ "result": shown }));
}

/// mount(2) in this process's own mount namespace (after `unshare`).
fn mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> std::io::Result<()> {
    let ptr = |c: Option<&std::ffi::CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: mount(2) with valid NUL-terminated strings (or null where allowed);
    // callers use it only in a private mount namespace of their own.
    let r = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// In a private mount namespace with a 1 MiB tmpfs on /dev/shm, creating a
/// 4 MiB segment must fail with NoSpace at creation.
fn role_seg_nospace() {
    if let Err(why) = kit::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        return emit("result", json!({ "skip": why }));
    }
    let private = mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None);
    if let Err(e) = private {
        return emit(
            "result",
            json!({ "skip": format!("mount --make-rprivate /: {e}") }),
        );
    }
    let tmpfs = Some(c"tmpfs");
    if let Err(e) = mount(tmpfs, c"/dev/shm", tmpfs, 0, Some(c"size=1m,mode=1777")) {
        return emit(
            "result",
            json!({ "skip": format!("mount tmpfs on /dev/shm: {e}") }),
        );
    }
    let name: String = arg("NAME");
    let big = Layout {
        data_len: 4 << 20,
        ..LAYOUT
    };
    let r = Segment::create(&name, &big, &opts());
    let big_result = match &r {
        Err(SegError::NoSpace { size }) => json!({ "nospace": size }),
        Err(e) => json!({ "error": format!("{e:?}") }),
        Ok(_) => json!({ "created": true }),
    };
    drop(r);
    let left = kit::shm_path(&name).exists();
    // Positive control: a small segment fits.
    let small = Segment::create(&name, &LAYOUT, &opts()).and_then(|c| c.publish());
    let small_ok = small.is_ok();
    drop(small);
    let _ = Segment::unlink(&name);
    emit(
        "result",
        json!({ "big": big_result, "left_after_failure": left, "small_ok": small_ok }),
    );
}

// ---------------------------------------------------------------------------
// Round trip

#[test]
fn round_trip_through_a_second_process() {
    let (wd, names, name) = shmq_testkit::start("round_trip_through_a_second_process", "seg-rt");
    let len = 16 * 1024;
    let c = Segment::create(&name, &LAYOUT, &opts()).expect("create");
    write_pattern(c.data(), c.data_len(), 0, len, 11);
    let seg = c.publish().expect("publish");

    let mut child = Spawn::role_on("seg_read", &name)
        .arg("LEN", len)
        .arg("SEED_IN", 11)
        .arg("SEED_OUT", 22)
        .spawn(&wd);
    let ev = child.event("read");
    child.expect_success();
    assert!(ev["mismatch"].is_null(), "the child read other bytes: {ev}");
    assert_eq!(ev["creator_pid"], json!(std::process::id()), "{ev}");
    assert_eq!(ev["data_len"], json!(seg.data_len()), "{ev}");
    assert_eq!(ev["named"], json!(true), "{ev}");

    // The child's bytes, through our mapping and through a second one.
    let back = read_region(seg.data(), seg.data_len(), len, len);
    assert_eq!(pattern_mismatch(&back, 22), None, "child's write not seen");
    let again = Segment::open(&name, &expect_all(), &opts()).expect("second open");
    let both = read_region(again.data(), again.data_len(), 0, 2 * len);
    assert_eq!(pattern_mismatch(&both[..len], 11), None);
    assert_eq!(pattern_mismatch(&both[len..], 22), None);
    drop(again);
    drop(seg);
    unlink_and_check(&names, &name);
}

// ---------------------------------------------------------------------------
// Every error variant

#[test]
fn invalid_names_are_refused_before_any_system_call() {
    let names = Names::new();
    let invalid = InvalidNames::new(&names);
    let l = LAYOUT;
    let e = Expect::default();
    for name in &invalid.table {
        let results: Vec<(&str, Result<(), SegError>)> = vec![
            ("create", Segment::create(name, &l, &opts()).map(drop)),
            ("open", Segment::open(name, &e, &opts()).map(drop)),
            (
                "create_or_open",
                Segment::create_or_open(name, &l, &e, &opts()).map(drop),
            ),
            ("unlink", Segment::unlink(name)),
            ("is_stale", Segment::is_stale(name).map(drop)),
            ("remove_if_stale", Segment::remove_if_stale(name).map(drop)),
            ("peek", Segment::peek(name, &opts()).map(drop)),
        ];
        for (op, r) in results {
            assert!(
                matches!(&r, Err(SegError::InvalidName { name: n, .. }) if n == name),
                "{op}({name:?}) gave {r:?}, expected InvalidName"
            );
        }
    }
    invalid.assert_none_reached_shm_open();
    names.assert_clean();
}

#[test]
fn creating_twice_is_already_exists_and_stale_once_the_holder_is_killed() {
    let (wd, names, name) = shmq_testkit::start("creating_twice", "seg-twice");
    let mut holder = hold(&wd, &name, true, 5);

    // A live holder: AlreadyExists, not stale, and reclaim_stale must not remove it.
    let r = Segment::create(&name, &LAYOUT, &opts());
    assert!(
        matches!(&r, Err(SegError::AlreadyExists { name: n, stale: false }) if *n == name),
        "second create while the holder lives: {r:?}"
    );
    let r = Segment::create(&name, &LAYOUT, &opts().reclaim_stale(true));
    assert!(
        matches!(r, Err(SegError::AlreadyExists { stale: false, .. })),
        "reclaim_stale replaced a live segment: {r:?}"
    );
    assert!(!Segment::is_stale(&name).expect("is_stale"));
    assert!(!Segment::remove_if_stale(&name).expect("remove_if_stale"));
    // The holder's segment is intact.
    let seen = Segment::open(&name, &expect_all(), &opts()).expect("open the live segment");
    assert_eq!(
        pattern_mismatch(&read_region(seen.data(), seen.data_len(), 0, 4096), 5),
        None
    );
    drop(seen);

    holder.kill_and_reap();
    let r = Segment::create(&name, &LAYOUT, &opts());
    assert!(
        matches!(r, Err(SegError::AlreadyExists { stale: true, .. })),
        "second create after the holder died: {r:?}"
    );
    assert!(Segment::is_stale(&name).expect("is_stale"));
    // reclaim_stale replaces it, with fresh (zeroed) memory: no old bytes leak.
    let fresh = Segment::create(&name, &LAYOUT, &opts().reclaim_stale(true))
        .expect("create with reclaim_stale")
        .publish()
        .expect("publish");
    let bytes = read_region(fresh.data(), fresh.data_len(), 0, 4096);
    assert!(
        bytes.iter().all(|&b| b == 0),
        "old payload visible after reclaim"
    );
    drop(fresh);
    unlink_and_check(&names, &name);
}

#[test]
fn opening_a_missing_name_is_not_found() {
    let (names, name) = fresh("seg-missing");
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(
        matches!(&r, Err(SegError::NotFound { name: n }) if *n == name),
        "{r:?}"
    );
    assert!(matches!(
        Segment::unlink(&name),
        Err(SegError::NotFound { .. })
    ));
    assert!(matches!(
        Segment::is_stale(&name),
        Err(SegError::NotFound { .. })
    ));
    assert!(matches!(
        Segment::peek(&name, &opts()),
        Err(SegError::NotFound { .. })
    ));
    names.assert_clean();
}

#[test]
fn a_ten_byte_object_is_too_small_and_an_empty_one_abandoned() {
    let (names, name) = fresh("seg-small");
    plant(&name, &[0xAB; 10]);
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(
        matches!(
            r,
            Err(SegError::TooSmall {
                size: 10,
                min: HEADER_LEN
            })
        ),
        "{r:?}"
    );
    assert!(matches!(
        Segment::peek(&name, &opts()),
        Err(SegError::TooSmall { size: 10, .. })
    ));
    // Ten bytes of someone else's: not a leftover of ours.
    assert_eq!(Segment::leftover(&name).expect("leftover"), None);
    assert!(!Segment::remove_leftover(&name).expect("remove_leftover"));
    Segment::unlink(&name).expect("unlink");

    // Size 0 is what an older shmq's creator killed right after `shm_open` left
    // (creators of this version never show an empty object under a name): once
    // no process holds it, an opener calls it abandoned, and create_or_open
    // replaces it.
    let empty = names.name("seg-empty");
    plant(&empty, &[]);
    let r = Segment::open(&empty, &Expect::default(), &opts());
    assert!(matches!(r, Err(SegError::Abandoned)), "{r:?}");
    assert_eq!(
        Segment::leftover(&empty).expect("leftover"),
        Some(shmq_segment::Leftover {
            size: 0,
            in_use: false
        })
    );
    match Segment::create_or_open(&empty, &LAYOUT, &expect_all(), &opts())
        .expect("create_or_open over an empty object")
    {
        Opened::Created(c) => drop(c.publish().expect("publish")),
        Opened::Existing(_) => panic!("opened an empty object"),
    }
    Segment::open(&empty, &expect_all(), &opts()).expect("open the replacement");
    assert_eq!(Segment::leftover(&empty).expect("leftover"), None);
    Segment::unlink(&empty).expect("unlink");

    // remove_leftover removes an empty object, and a zero-filled one.
    for bytes in [vec![], vec![0u8; 8192]] {
        plant(&empty, &bytes);
        assert!(Segment::remove_leftover(&empty).expect("remove_leftover"));
        assert!(matches!(
            Segment::leftover(&empty),
            Err(SegError::NotFound { .. })
        ));
    }
    names.assert_clean();
}

#[test]
fn random_bytes_are_bad_magic() {
    let (names, name) = fresh("seg-random");
    let mut bytes = vec![0u8; 8192];
    getrandom_fill(&mut bytes);
    if bytes[..8] == MAGIC.to_le_bytes() || bytes[..8] == [0; 8] {
        bytes[0] ^= 0x55;
    }
    let found = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    plant(&name, &bytes);
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(
        matches!(r, Err(SegError::BadMagic { found: f }) if f == found),
        "{r:?}"
    );
    let peek = Segment::peek(&name, &opts()).expect("peek a foreign object");
    assert!(!peek.is_shmq());
    assert!(matches!(
        peek.validate(&Expect::default()),
        Err(SegError::BadMagic { .. })
    ));
    drop(peek);
    // The file is untouched: an opener never writes a foreign object.
    assert_eq!(
        std::fs::read(kit::shm_path(&name)).expect("read back"),
        bytes
    );
    unlink_and_check(&names, &name);
}

fn getrandom_fill(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("read /dev/urandom");
}

/// The type name field round-trips through a real segment (mapped and
/// peeked), sits at its documented offset, and a damaged one is refused in
/// words by both readers.
#[test]
fn type_name_round_trips_and_a_damaged_one_is_refused() {
    use shmq_segment::{TYPE_NAME_FIELD_LEN, TYPE_NAME_OFFSET, TypeName};
    let (names, name) = fresh("seg-typename");
    let layout = Layout {
        type_name: TypeName::new("metrics.Sample").expect("short name"),
        ..LAYOUT
    };
    let seg = Segment::create(&name, &layout, &opts())
        .expect("create")
        .publish()
        .expect("publish");
    assert_eq!(seg.type_name().expect("name").as_str(), "metrics.Sample");
    assert_eq!(seg.info().type_version, LAYOUT.type_version);
    assert_eq!(seg.info().type_flags, LAYOUT.type_flags);
    let peek = Segment::peek(&name, &opts()).expect("peek");
    assert_eq!(peek.type_name().expect("name").as_str(), "metrics.Sample");
    let bytes = std::fs::read(kit::shm_path(&name)).expect("read");
    let at = TYPE_NAME_OFFSET as usize;
    assert_eq!(&bytes[at..at + 15], b"metrics.Sample\0");
    drop((seg, peek));

    // No terminator: the whole field is text.
    poke(&name, TYPE_NAME_OFFSET, &[b'x'; TYPE_NAME_FIELD_LEN]);
    let seg = Segment::open(&name, &Expect::default(), &opts()).expect("header intact");
    let e = seg.type_name().expect_err("damaged");
    assert!(
        matches!(
            e,
            SegError::BadTypeName {
                reason: "has no NUL terminator",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("type name field has no NUL terminator"),
        "{e}"
    );
    let peek = Segment::peek(&name, &opts()).expect("peek");
    assert!(matches!(
        peek.type_name(),
        Err(SegError::BadTypeName { .. })
    ));
    drop((seg, peek));
    // Not UTF-8.
    poke(&name, TYPE_NAME_OFFSET, &[0xff, 0xfe, 0]);
    poke(&name, TYPE_NAME_OFFSET + 3, &[0; TYPE_NAME_FIELD_LEN - 3]);
    let seg = Segment::open(&name, &Expect::default(), &opts()).expect("header intact");
    assert!(
        matches!(
            seg.type_name(),
            Err(SegError::BadTypeName {
                reason: "is not UTF-8",
                at: 0
            })
        ),
        "{:?}",
        seg.type_name()
    );
    drop(seg);
    unlink_and_check(&names, &name);
}

#[test]
fn another_header_version_is_version_mismatch_and_a_bad_state_is_corrupt() {
    let (names, name) = fresh("seg-version");
    let seg = create_published(&name);
    drop(seg);
    poke(&name, 8, &(VERSION + 1).to_le_bytes());
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(
        matches!(r, Err(SegError::VersionMismatch { expected: VERSION, found }) if found == VERSION + 1),
        "{r:?}"
    );
    // Back to the right version, but a state no creator writes.
    poke(&name, 8, &VERSION.to_le_bytes());
    Segment::open(&name, &Expect::default(), &opts()).expect("valid again");
    poke(&name, 12, &5u32.to_le_bytes());
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(
        matches!(
            r,
            Err(SegError::Corrupt {
                what: "state",
                value: 5
            })
        ),
        "{r:?}"
    );
    unlink_and_check(&names, &name);
}

#[test]
fn expectations_the_header_does_not_meet_are_layout_mismatch() {
    let (wd, names, name) = shmq_testkit::start("layout_mismatch", "seg-layout");
    let mut creator = hold(&wd, &name, true, 1);
    let full = expect_all();
    Segment::open(&name, &full, &opts()).expect("the creator's own expectations pass");
    let cases: [(&str, Expect); 7] = [
        (
            "kind",
            Expect {
                kind: Some(LAYOUT.kind + 1),
                ..full
            },
        ),
        (
            "endpoints",
            Expect {
                endpoints: Some(LAYOUT.endpoints + 1),
                ..full
            },
        ),
        (
            "capacity",
            Expect {
                capacity: Some(LAYOUT.capacity * 2),
                ..full
            },
        ),
        (
            "slot_size",
            Expect {
                slot_size: Some(LAYOUT.slot_size + 8),
                ..full
            },
        ),
        (
            "slot_align",
            Expect {
                slot_align: Some(16),
                ..full
            },
        ),
        (
            "type_version",
            Expect {
                type_version: Some(LAYOUT.type_version ^ 1),
                ..full
            },
        ),
        (
            "type_flags",
            Expect {
                type_flags: Some(LAYOUT.type_flags ^ 1),
                ..full
            },
        ),
    ];
    for (field, e) in cases {
        let r = Segment::open(&name, &e, &opts());
        assert!(
            matches!(r, Err(SegError::LayoutMismatch { field: f, .. }) if f == field),
            "expecting another {field}: {r:?}"
        );
    }
    // A peer that grows the object under its header: total_len no longer matches.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(kit::shm_path(&name))
        .expect("open");
    let len = f.metadata().expect("stat").len();
    f.set_len(len + 4096).expect("grow");
    drop(f);
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(
        matches!(r, Err(SegError::LayoutMismatch { field: "total_len", expected, found })
            if expected == len + 4096 && found == len),
        "{r:?}"
    );
    creator.kill_and_reap();
    unlink_and_check(&names, &name);
}

#[test]
fn an_unpublished_segment_has_no_name_and_its_killed_creator_leaves_nothing() {
    let (wd, names, name) = shmq_testkit::start("unpublished_invisible", "seg-unpub");
    let mut creator = hold(&wd, &name, false, 3);
    // Being created: nothing under the name, whoever looks.
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(matches!(r, Err(SegError::NotFound { .. })), "{r:?}");
    assert!(matches!(
        Segment::peek(&name, &opts()),
        Err(SegError::NotFound { .. })
    ));
    assert!(matches!(
        Segment::is_stale(&name),
        Err(SegError::NotFound { .. })
    ));
    // A second creator is not refused: the name is free until someone publishes.
    let mine = Segment::create(&name, &LAYOUT, &opts()).expect("create beside the first");
    drop(mine);

    // The creator's draft is a temporary (the one it has open), not dead while
    // it lives.
    let theirs: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", creator.pid()))
        .expect("the creator's descriptors")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_str()?.strip_prefix("/dev/shm/")?.to_owned();
            t.starts_with(shmq_segment::TEMPORARY_PREFIX).then_some(t)
        })
        .collect();
    assert_eq!(theirs.len(), 1, "the creator's temporaries: {theirs:?}");
    let dead = format!("/{}", theirs[0]);
    assert!(
        !Segment::dead_temporaries()
            .expect("dead_temporaries")
            .contains(&dead),
        "a live creator's temporary counted as dead"
    );
    assert!(
        !Segment::remove_dead_temporaries()
            .expect("remove")
            .contains(&dead)
    );

    creator.kill_and_reap();
    let r = Segment::open(&name, &Expect::default(), &opts());
    assert!(matches!(r, Err(SegError::NotFound { .. })), "{r:?}");
    // The killed creator's temporary is dead (unless another test's gc took it
    // already), and gc's function removes it.
    let gone = || !kit::shm_path(&dead).exists();
    assert!(
        Segment::dead_temporaries()
            .expect("dead_temporaries")
            .contains(&dead)
            || gone()
    );
    assert!(
        Segment::remove_dead_temporaries()
            .expect("remove")
            .contains(&dead)
            || gone()
    );
    assert!(
        !kit::shm_entries(shmq_segment::TEMPORARY_PREFIX).contains(&theirs[0]),
        "the dead temporary is still there"
    );
    match Segment::create_or_open(&name, &LAYOUT, &expect_all(), &opts()).expect("create_or_open") {
        Opened::Created(c) => {
            let bytes = read_region(c.data(), c.data_len(), 0, 4096);
            assert!(bytes.iter().all(|&b| b == 0), "half-made data leaked");
            drop(c.publish().expect("publish"));
        }
        Opened::Existing(_) => panic!("opened an unpublished segment"),
    }
    unlink_and_check(&names, &name);
}

const SEAL_SEAL: u32 = libc::F_SEAL_SEAL as u32;
const SEAL_SHRINK: u32 = libc::F_SEAL_SHRINK as u32;
const SEAL_GROW: u32 = libc::F_SEAL_GROW as u32;

fn add_seals(fd: &OwnedFd, seals: u32) {
    // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own, with an integer argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) };
    assert_eq!(r, 0, "F_ADD_SEALS: {}", std::io::Error::last_os_error());
}

#[test]
fn a_memfd_without_the_seals_is_unsealed_and_other_descriptors_untrusted() {
    let names = Names::new();
    let e = Expect::default();
    let r = Segment::from_fd(unsealed_memfd(true), &e, &opts());
    assert!(
        matches!(r, Err(SegError::Unsealed { missing }) if missing == SEAL_SEAL | SEAL_SHRINK | SEAL_GROW),
        "no seals: {r:?}"
    );
    let partial = unsealed_memfd(true);
    add_seals(&partial, SEAL_SHRINK | SEAL_GROW);
    let r = Segment::from_fd(partial, &e, &opts());
    assert!(
        matches!(r, Err(SegError::Unsealed { missing }) if missing == SEAL_SEAL),
        "SHRINK|GROW without SEAL: {r:?}"
    );
    // A memfd made without MFD_ALLOW_SEALING carries only F_SEAL_SEAL.
    let r = Segment::from_fd(unsealed_memfd(false), &e, &opts());
    assert!(
        matches!(r, Err(SegError::Unsealed { missing }) if missing == SEAL_SHRINK | SEAL_GROW),
        "memfd without sealing: {r:?}"
    );
    // Not a memfd at all: a pipe, and a named segment's descriptor.
    let (pipe_r, _pipe_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let r = Segment::from_fd(pipe_r, &e, &opts());
    assert!(matches!(r, Err(SegError::Untrusted { .. })), "pipe: {r:?}");
    let name = names.name("seg-namedfd");
    let named = create_published(&name);
    let r = Segment::from_fd(named.export_fd().expect("export_fd"), &e, &opts());
    assert!(
        matches!(
            r,
            Err(SegError::Unsealed { .. } | SegError::Untrusted { .. })
        ),
        "a named segment's descriptor is not a sealed memfd: {r:?}"
    );
    drop(named);
    // Positive control: a real anonymous segment's descriptor is accepted.
    let anon = Segment::anonymous(&LAYOUT, &opts())
        .expect("anonymous")
        .publish()
        .expect("publish");
    let other = Segment::from_fd(anon.export_fd().expect("export"), &expect_all(), &opts())
        .expect("from_fd of a sealed memfd");
    assert_eq!(other.info(), anon.info());
    drop((other, anon));
    unlink_and_check(&names, &name);
}

#[test]
fn untrusted_objects_under_the_name_are_refused() {
    let names = Names::new();
    let e = Expect::default();
    let real = names.name("seg-real");
    let real_seg = create_published(&real);
    let untrusted = |name: &str, o: &SegmentOptions, what: &str| {
        let r = Segment::open(name, &e, o);
        assert!(
            matches!(r, Err(SegError::Untrusted { .. })),
            "{what}: open gave {r:?}"
        );
    };

    // A symlink to a real segment, and a dangling one.
    let link = names.name("seg-symlink");
    std::os::unix::fs::symlink(kit::shm_path(&real), kit::shm_path(&link)).unwrap();
    untrusted(&link, &opts(), "symlink");
    assert!(matches!(
        Segment::peek(&link, &opts()),
        Err(SegError::Untrusted { .. })
    ));
    let target = names.name("seg-target");
    let dangling = names.name("seg-dangling");
    std::os::unix::fs::symlink(kit::shm_path(&target), kit::shm_path(&dangling)).unwrap();
    let r = Segment::create(&dangling, &LAYOUT, &opts());
    assert!(
        matches!(r, Err(SegError::AlreadyExists { .. })),
        "create over a dangling symlink: {r:?}"
    );
    assert!(
        !kit::shm_path(&target).exists(),
        "create followed a symlink and made its target"
    );
    std::fs::remove_file(kit::shm_path(&link)).unwrap();
    std::fs::remove_file(kit::shm_path(&dangling)).unwrap();

    // A FIFO.
    let fifo = names.name("seg-fifo");
    nix::unistd::mkfifo(
        &kit::shm_path(&fifo),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    untrusted(&fifo, &opts(), "FIFO");
    std::fs::remove_file(kit::shm_path(&fifo)).unwrap();

    // Writable by group, then by others; accepted only when allowed.
    let p = kit::shm_path(&real);
    for mode in [0o620, 0o602] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        untrusted(&real, &opts(), &format!("mode {mode:o}"));
        Segment::open(&real, &e, &opts().allow_shared_write(true))
            .unwrap_or_else(|err| panic!("mode {mode:o} with allow_shared_write: {err:?}"));
    }
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A second hard link.
    let hard = names.name("seg-hardlink");
    std::fs::hard_link(&p, kit::shm_path(&hard)).unwrap();
    untrusted(&real, &opts(), "two hard links");
    untrusted(&hard, &opts(), "two hard links (other name)");
    std::fs::remove_file(kit::shm_path(&hard)).unwrap();

    // Another owner (root may chown; as another user this part is skipped).
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        untrusted(&real, &opts(), "owned by uid 4242");
        Segment::open(&real, &e, &opts().expected_owner(None)).expect("any owner accepted");
        Segment::open(&real, &e, &opts().expected_owner(Some(4242))).expect("that owner");
        nix::unistd::chown(&p, Some(nix::unistd::geteuid()), None).unwrap();
    } else {
        eprintln!("skipping the foreign-owner case: chown needs root");
    }
    Segment::open(&real, &e, &opts()).expect("trusted again");
    drop(real_seg);
    Segment::unlink(&real).expect("unlink");
    names.assert_clean();
}

#[test]
fn a_directory_under_the_name_is_untrusted() {
    let names = Names::new();
    let dir = names.name("seg-dir");
    std::fs::create_dir(kit::shm_path(&dir)).unwrap();
    let r = Segment::open(&dir, &Expect::default(), &opts());
    let p = Segment::peek(&dir, &opts());
    std::fs::remove_dir(kit::shm_path(&dir)).unwrap();
    assert!(matches!(r, Err(SegError::Untrusted { .. })), "open: {r:?}");
    assert!(matches!(p, Err(SegError::Untrusted { .. })), "peek: {p:?}");
    names.assert_clean();
}

#[test]
fn modes_are_0600_or_as_asked_whatever_the_umask() {
    let (wd, names) = (Watchdog::new("modes"), Names::new());
    let mut spawn = Spawn::role("seg_umask");
    for k in 0..4 {
        spawn = spawn.arg(&format!("N{k}"), names.name(&format!("seg-mode{k}")));
    }
    let ev = spawn.run(&wd, "modes");
    let results = ev["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(r["default"], json!(0o600), "default mode under {r}");
        assert_eq!(r["explicit_0640"], json!(0o640), "mode 0640 under {r}");
    }
    names.assert_clean();
}

#[test]
fn a_sealed_memfd_refuses_resizing_from_a_forked_child() {
    let len = 8192;
    let seg = Segment::anonymous(&LAYOUT, &opts())
        .expect("anonymous")
        .publish()
        .expect("publish");
    write_pattern(seg.data(), seg.data_len(), 0, len, 9);
    // A plain duplicate: the child gets the memfd itself, whatever the fork guard
    // does to descriptors holding endpoint markers.
    let fd = seg.export_fd().expect("export_fd");
    let raw = fd.as_raw_fd();
    let size = nix::sys::stat::fstat(&fd).expect("fstat").st_size;
    let data_off = seg.info().data_offset as libc::off_t;
    // SAFETY: the child makes only raw system calls (ftruncate, fallocate, fcntl),
    // reads errno and `_exit`s: no allocation, no lock, so forking this
    // multi-threaded test process is sound.
    let child = match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let errno = || {
                // SAFETY: reads this thread's errno.
                unsafe { *libc::__errno_location() }
            };
            let mut bad = 0;
            // SAFETY: a raw system call on an inherited descriptor.
            if unsafe { libc::ftruncate(raw, 0) } != -1 || errno() != libc::EPERM {
                bad |= 1;
            }
            // SAFETY: as above.
            if unsafe { libc::ftruncate(raw, size * 2) } != -1 || errno() != libc::EPERM {
                bad |= 2;
            }
            // SAFETY: as above.
            if unsafe { libc::fallocate(raw, 0, size, 4096) } != -1 || errno() != libc::EPERM {
                bad |= 4;
            }
            // SAFETY: as above: F_SEAL_SEAL forbids removing or adding seals.
            if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) } != -1
                || errno() != libc::EPERM
            {
                bad |= 8;
            }
            // A hostile holder can still punch a hole (seals do not stop it): the
            // parent must then read zeros, not fault. Exit code bit 16 says it did.
            // SAFETY: as above.
            let punched = unsafe {
                libc::fallocate(
                    raw,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    data_off,
                    4096,
                )
            } == 0;
            // SAFETY: _exit ends the child without touching the parent's state.
            unsafe { libc::_exit(bad | if punched { 16 } else { 0 }) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let code = kit::wait_child(child, Duration::from_secs(30));
    assert_eq!(
        code & 15,
        0,
        "a resize was not refused with EPERM (bits: 1 shrink, 2 grow, 4 fallocate, 8 add seal): {code}"
    );
    // The parent keeps working: same size, readable and writable mapping.
    assert_eq!(nix::sys::stat::fstat(&fd).expect("fstat").st_size, size);
    let bytes = read_region(seg.data(), seg.data_len(), 0, len);
    if code & 16 != 0 {
        assert!(
            bytes[..4096].iter().all(|&b| b == 0),
            "punched page not zero"
        );
        assert_eq!(pattern_mismatch_offset(&bytes, 9, 4096), None);
    } else {
        assert_eq!(pattern_mismatch(&bytes, 9), None);
    }
    write_pattern(seg.data(), seg.data_len(), 0, len, 10);
    let bytes = read_region(seg.data(), seg.data_len(), 0, len);
    assert_eq!(pattern_mismatch(&bytes, 10), None);
    drop(fd);
    drop(seg);
}

/// First index at or after `from` whose byte is not pattern `seed`.
fn pattern_mismatch_offset(bytes: &[u8], seed: u64, from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&i| bytes[i] != pat(seed, i))
}

// ---------------------------------------------------------------------------
// Liveness

#[test]
fn a_killed_endpoint_holder_is_dead_and_a_live_or_stopped_one_alive() {
    let (wd, names, name) = shmq_testkit::start("liveness", "seg-live");
    let seg = create_published(&name);
    let spawn = |idx: u16| {
        Spawn::role_on("seg_claim", &name)
            .arg("IDX", idx)
            .arg("THEN", "hang")
            .spawn(&wd)
    };
    let mut a = spawn(1);
    let mut b = spawn(2);
    a.event("claimed");
    b.event("claimed");
    assert!(
        seg.endpoint_alive(1).unwrap(),
        "a live holder must be alive"
    );
    assert!(seg.endpoint_alive(2).unwrap());
    assert!(!seg.endpoint_alive(3).unwrap(), "never claimed");
    let info = seg.endpoint_info(1).unwrap();
    assert_eq!(info.pid, a.pid() as u32);
    assert_eq!(info.attaches, 1);
    assert!(matches!(
        seg.claim_endpoint(1),
        Err(SegError::EndpointBusy { index: 1 })
    ));
    assert!(matches!(
        seg.endpoint_alive(LAYOUT.endpoints),
        Err(SegError::NoSuchEndpoint { .. })
    ));

    // Stopped is not dead.
    b.stop();
    assert!(
        seg.endpoint_alive(2).unwrap(),
        "a stopped holder was reported dead"
    );
    b.signal(Signal::SIGCONT);

    // Killed: dead as soon as the kernel has torn it down, already as a zombie
    // (not yet reaped, its pid still taken).
    a.signal(Signal::SIGKILL);
    assert!(kit::wait_dead(a.pid(), Duration::from_secs(5)));
    assert_eq!(kit::proc_state(a.pid()), Some('Z'), "not a zombie");
    assert!(
        !seg.endpoint_alive(1).unwrap(),
        "a zombie's endpoint looks alive"
    );
    a.expect_killed();
    assert!(!seg.endpoint_alive(1).unwrap());
    assert!(
        seg.endpoint_alive(2).unwrap(),
        "the other holder must stay alive"
    );
    assert_eq!(
        seg.endpoint_info(1).unwrap().pid,
        a.pid() as u32,
        "pid kept for display"
    );
    seg.claim_endpoint(1)
        .expect("a dead holder's endpoint can be claimed again");
    assert!(seg.endpoint_alive(1).unwrap());
    assert_eq!(seg.endpoint_info(1).unwrap().attaches, 2);

    // A holder that exits normally releases its endpoint too.
    let mut c = Spawn::role_on("seg_claim", &name)
        .arg("IDX", 3)
        .arg("THEN", "exit")
        .spawn(&wd);
    c.event("claimed");
    c.expect_success();
    assert!(!seg.endpoint_alive(3).unwrap());

    b.kill_and_reap();
    assert!(!seg.endpoint_alive(2).unwrap());
    drop(seg);
    unlink_and_check(&names, &name);
}

#[test]
fn fork_without_exec_does_not_mask_the_death_of_the_endpoint_holder() {
    // Catalogue CF-13: A claims an endpoint, forks B (no exec), A is SIGKILLed while
    // B lives on: A's endpoint must read dead.
    let (wd, names, name) = shmq_testkit::start("fork_without_exec", "seg-forkmask");
    let seg = create_published(&name);
    let mut a = Spawn::role_on("seg_claim_fork", &name)
        .arg("IDX", 1)
        .spawn(&wd);
    let ev = a.event("forked");
    let b = kit::num(&ev, "child") as i32;
    assert!(seg.endpoint_alive(1).unwrap());
    a.signal(Signal::SIGKILL);
    assert!(kit::wait_dead(a.pid(), Duration::from_secs(5)));
    let b_state = kit::proc_state(b);
    assert!(
        matches!(b_state, Some('S' | 'R')),
        "the forked child should still live, state {b_state:?}"
    );
    let alive = seg.endpoint_alive(1).unwrap();
    let b_fds: Vec<String> = std::fs::read_dir(format!("/proc/{b}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let b_maps: Vec<String> = std::fs::read_to_string(format!("/proc/{b}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/dev/shm/"))
        .map(str::to_owned)
        .collect();
    // Reaping A also kills and reaps B (same process group; we are its subreaper).
    a.expect_killed();
    assert!(
        !alive,
        "the endpoint of a killed process reads alive while a child it forked (without exec) lives; the child's descriptors: {b_fds:?}; its shared mappings: {b_maps:?}"
    );
    drop(seg);
    unlink_and_check(&names, &name);
}

// ---------------------------------------------------------------------------
// The remaining variants

#[test]
fn a_full_tmpfs_is_no_space_at_creation() {
    let (wd, names, name) = shmq_testkit::start("nospace", "seg-nospace");
    let mut child = Spawn::role("seg_nospace").arg("NAME", &name).spawn(&wd);
    let ev = child.event("result");
    child.expect_success();
    if let Some(reason) = ev["skip"].as_str() {
        eprintln!("SKIP a_full_tmpfs_is_no_space_at_creation: {reason}");
        return;
    }
    assert_eq!(
        ev["big"]["nospace"],
        json!(
            Layout {
                data_len: 4 << 20,
                ..LAYOUT
            }
            .total_len()
            .unwrap()
        ),
        "creating 4 MiB in a 1 MiB tmpfs: {ev}"
    );
    assert_eq!(
        ev["left_after_failure"],
        json!(false),
        "a failed create left its object: {ev}"
    );
    assert_eq!(ev["small_ok"], json!(true), "{ev}");
    names.assert_clean();
}

#[test]
fn another_user_without_access_is_permission_denied() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIP another_user_without_access_is_permission_denied: needs root to switch users"
        );
        return;
    }
    let (wd, names, name) = shmq_testkit::start("permission_denied", "seg-perm");
    let seg = create_published(&name);
    let ev = Spawn::role_on("seg_as_nobody", &name).run(&wd, "opened");
    assert_eq!(ev["result"], "PermissionDenied", "{ev}");
    drop(seg);
    unlink_and_check(&names, &name);
}

#[test]
fn size_limits_huge_pages_and_bad_layouts_are_refused() {
    let (names, name) = fresh("seg-limits");
    let total = LAYOUT.total_len().unwrap();
    let r = Segment::create(&name, &LAYOUT, &opts().max_len(4096));
    assert!(
        matches!(r, Err(SegError::TooLarge { size, max: 4096 }) if size == total),
        "{r:?}"
    );
    assert!(
        !kit::shm_path(&name).exists(),
        "TooLarge must come before creating"
    );
    let seg = create_published(&name);
    let r = Segment::open(&name, &Expect::default(), &opts().max_len(total - 1));
    assert!(matches!(r, Err(SegError::TooLarge { .. })), "{r:?}");
    assert!(matches!(
        seg.claim_endpoint(LAYOUT.endpoints),
        Err(SegError::NoSuchEndpoint { index, count }) if index == LAYOUT.endpoints && count == LAYOUT.endpoints
    ));
    drop(seg);
    Segment::unlink(&name).unwrap();

    let other = names.name("seg-huge");
    let r = Segment::create(&other, &LAYOUT, &opts().huge_pages(true));
    assert!(
        matches!(r, Err(SegError::HugePagesUnavailable { .. })),
        "{r:?}"
    );
    for bad in [
        Layout { kind: 0, ..LAYOUT },
        Layout {
            data_len: 0,
            ..LAYOUT
        },
        Layout {
            endpoints: shmq_segment::MAX_ENDPOINTS + 1,
            ..LAYOUT
        },
    ] {
        let r = Segment::create(&other, &bad, &opts());
        assert!(
            matches!(r, Err(SegError::InvalidArgument { .. })),
            "{bad:?}: {r:?}"
        );
    }
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// Atomic creation (reliability issue: half-made objects under a name)

/// How many creators `creators_killed_*` kill: `SHMQ_CREATE_KILLS`, 40 by
/// default (the long run uses 400).
fn create_kills() -> u64 {
    shmq_testkit::env_or("SHMQ_CREATE_KILLS", 40)
}

#[test]
fn two_creators_of_one_name_the_first_to_publish_wins() {
    let (names, name) = fresh("seg-race");
    let own_temporaries = || {
        let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .expect("fd dir")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|t| Some(t.to_str()?.to_owned()))
            .filter(|t| t.contains(shmq_segment::TEMPORARY_PREFIX))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    // Plain create: both build (the name is free), the second to publish fails
    // and leaves nothing; the winner's data is what the name shows.
    let before = own_temporaries();
    let a = Segment::create(&name, &LAYOUT, &opts()).expect("first create");
    let b = Segment::create(&name, &LAYOUT, &opts()).expect("second create");
    let drafts: Vec<String> = own_temporaries()
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    assert_eq!(drafts.len(), 2, "two drafts under temporaries: {drafts:?}");
    write_pattern(a.data(), a.data_len(), 0, 4096, 1);
    write_pattern(b.data(), b.data_len(), 0, 4096, 2);
    let a = a.publish().expect("the first to publish wins");
    let r = b.publish();
    assert!(
        matches!(&r, Err(SegError::AlreadyExists { stale: false, .. })),
        "{r:?}"
    );
    drop(r);
    let seen = Segment::open(&name, &expect_all(), &opts()).expect("open");
    assert_eq!(
        pattern_mismatch(&read_region(seen.data(), seen.data_len(), 0, 4096), 1),
        None
    );
    drop((a, seen));
    for d in &drafts {
        assert!(
            !std::path::Path::new(d).exists(),
            "a draft was left behind: {d}"
        );
    }
    Segment::unlink(&name).expect("unlink");

    // create_or_open: the loser's publish gives the winner's segment instead.
    let created = |o: Opened| match o {
        Opened::Created(c) => c,
        Opened::Existing(_) => panic!("the name was free"),
    };
    let a = created(Segment::create_or_open(&name, &LAYOUT, &expect_all(), &opts()).unwrap());
    let b = created(Segment::create_or_open(&name, &LAYOUT, &expect_all(), &opts()).unwrap());
    write_pattern(a.data(), a.data_len(), 0, 4096, 3);
    write_pattern(b.data(), b.data_len(), 0, 4096, 4);
    let b = b.publish().expect("b publishes first");
    let a = a.publish().expect("a gets b's segment");
    assert_eq!(
        pattern_mismatch(&read_region(a.data(), a.data_len(), 0, 4096), 4),
        None,
        "the loser sees the winner's data"
    );
    drop((a, b));
    assert!(own_temporaries().iter().all(|t| before.contains(t)));
    unlink_and_check(&names, &name);
}

#[test]
fn removing_dead_temporaries_never_disturbs_a_live_creator() {
    // Two processes create and publish in a loop while we remove dead
    // temporaries as fast as we can: a temporary can be caught between its
    // `O_EXCL` open and its creator's lock, and then the creator must build
    // another, never fail or publish something nobody can reach.
    let (wd, names, name) = shmq_testkit::start("temporaries_vs_creators", "seg-tmprace");
    let other = names.name("seg-tmprace");
    let mut creators: Vec<_> = [&name, &other]
        .iter()
        .map(|n| {
            Spawn::role_on("seg_create_loop", n)
                .arg("COUNT", 300)
                .spawn(&wd)
        })
        .collect();
    let mut removed = 0;
    let mut reports = Vec::new();
    for c in &mut creators {
        loop {
            removed += Segment::remove_dead_temporaries()
                .expect("remove_dead_temporaries")
                .len();
            if let Some(ev) = c.try_event("done", Duration::from_millis(1)) {
                reports.push(ev);
                break;
            }
        }
        c.expect_success();
    }
    eprintln!("removed {removed} temporaries while the creators ran");
    for ev in &reports {
        assert_eq!(ev["errors"], json!([]), "a creator failed: {ev}");
    }
    names.assert_clean();
}

/// Where `creators_killed_at_random_points` creates.
#[derive(Clone, Copy, PartialEq)]
enum KillPlace {
    /// A name in `/dev/shm`, shared with every other test running.
    Shm,
    /// A file in a private directory, whose every entry is ours.
    Dir,
}

/// Kills `create_kills()` creators of one segment, each at a random point of its
/// create and publish (built unnamed if `unnamed`), and checks after each kill
/// that the name is absent or a complete segment with its data, that a fresh
/// create_or_open of it succeeds, and that nothing is left but dead
/// temporaries, which the gc function removes (`remove_dead_temporaries`, or
/// `remove_dead_temporaries_in` for the directory); an unnamed build leaves
/// none. In `/dev/shm`, where other tests' creators come and go, "ours" is
/// "new since the start and dead"; in the private directory it is exact.
fn creators_killed_at_random_points(test: &str, place: KillPlace, unnamed: bool) {
    let (wd, names, name) = shmq_testkit::start(test, "seg-killcreate");
    let temps_before = kit::shm_entries(shmq_segment::TEMPORARY_PREFIX);
    let dir = kit::shm_path(&names.name("seg-killdir"));
    if place == KillPlace::Dir {
        std::fs::create_dir(&dir).expect("mkdir");
    }
    let file = dir.join("seg");
    let layout = Layout {
        data_len: 16 << 20,
        ..LAYOUT
    };
    let expect = Expect {
        capacity: None,
        ..expect_all()
    };
    let short = opts().open_timeout(Duration::from_millis(300));
    let o = opts().build_unnamed(unnamed);
    let open = |o: &SegmentOptions| match place {
        KillPlace::Shm => Segment::open(&name, &expect, o),
        KillPlace::Dir => Segment::open_file(&file, &expect, o),
    };
    let create = |o: &SegmentOptions| match place {
        KillPlace::Shm => Segment::create(&name, &layout, o),
        KillPlace::Dir => Segment::create_file(&file, &layout, o),
    };
    let create_or_open = |o: &SegmentOptions| match place {
        KillPlace::Shm => Segment::create_or_open(&name, &layout, &expect, o),
        KillPlace::Dir => Segment::create_or_open_file(&file, &layout, &expect, o),
    };
    let unlink = || match place {
        KillPlace::Shm => drop(Segment::unlink(&name)),
        KillPlace::Dir => drop(std::fs::remove_file(&file)),
    };
    let gc = || -> Vec<String> {
        match place {
            KillPlace::Shm => Segment::remove_dead_temporaries().expect("remove_dead_temporaries"),
            KillPlace::Dir => Segment::remove_dead_temporaries_in(&dir)
                .expect("remove_dead_temporaries_in")
                .iter()
                .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
                .collect(),
        }
    };
    // How long one creation takes here, to spread the kills over it.
    let mut span = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        drop(create(&o).expect("probe create").publish());
        span = span.max(t.elapsed());
        unlink();
    }
    let seed = kit::Rng::seed();
    eprintln!("{test}: seed {seed}, one creation takes {span:?}");
    let mut rng = kit::Rng::new(seed);
    let max_us = (span.as_micros() as u64) * 3 / 2 + 500;
    let (mut absent, mut complete, mut temporaries) = (0, 0, 0usize);
    let mut failures = Vec::new();
    for i in 0..create_kills() {
        let mut spawn = Spawn::role_on("seg_create_killed", &name)
            .arg("UNNAMED", u8::from(unnamed))
            .arg("DATA", layout.data_len);
        if place == KillPlace::Dir {
            spawn = spawn.arg("DIR", dir.display());
        }
        let mut c = spawn.spawn(&wd);
        c.event("go");
        let delay = rng.range(0, max_us);
        std::thread::sleep(Duration::from_micros(delay));
        c.kill_and_reap();
        let at = format!("kill {i} after {delay} us");
        match open(&short) {
            Ok(seg) => {
                complete += 1;
                let bytes = read_region(seg.data(), seg.data_len(), 0, 4096);
                if pattern_mismatch(&bytes, 9).is_some() {
                    failures.push(format!("{at}: a published segment lacks its data"));
                }
            }
            Err(SegError::NotFound { .. }) => absent += 1,
            Err(e) => failures.push(format!(
                "{at}: the name is neither absent nor a complete segment: {e}"
            )),
        }
        if place == KillPlace::Dir {
            let mut entries: Vec<String> = std::fs::read_dir(&dir)
                .expect("read_dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n != "seg")
                .collect();
            entries.sort();
            let dead = gc();
            temporaries += dead.len();
            if entries != dead || (unnamed && !dead.is_empty()) {
                failures.push(format!(
                    "{at}: left in the directory: {entries:?}; the gc function removed {dead:?}"
                ));
            }
        } else {
            temporaries += gc().len();
        }
        match create_or_open(&short) {
            Ok(Opened::Created(c)) => drop(c.publish()),
            Ok(Opened::Existing(s)) => drop(s),
            Err(e) => failures.push(format!("{at}: create_or_open of the name failed: {e}")),
        }
        unlink();
    }
    eprintln!(
        "{test}: {absent} absent, {complete} complete, {temporaries} dead temporaries removed"
    );
    if place == KillPlace::Shm {
        // Whatever our killed creators left is dead, and the gc function took it:
        // what is new since the start must belong to live creators (other tests').
        gc();
        let left: Vec<String> = Segment::dead_temporaries()
            .expect("dead_temporaries")
            .into_iter()
            .filter(|t| !temps_before.iter().any(|b| t[1..] == **b))
            .collect();
        if !left.is_empty() {
            failures.push(format!(
                "dead temporaries left after the gc function: {left:?}"
            ));
        }
    } else {
        let left: Vec<_> = std::fs::read_dir(&dir).expect("read_dir").collect();
        if !left.is_empty() {
            failures.push(format!("left in the directory: {left:?}"));
        }
        std::fs::remove_dir(&dir).expect("rmdir");
    }
    kit::assert_no_failures(&format!("{test} (seed {seed})"), &failures);
    names.assert_clean();
}

#[test]
fn creators_killed_at_random_points_leave_the_name_absent_or_complete() {
    creators_killed_at_random_points("killed_creators", KillPlace::Shm, false);
}

#[test]
fn creators_of_files_killed_at_random_points_leave_only_dead_temporaries() {
    creators_killed_at_random_points("killed_file_creators", KillPlace::Dir, false);
}

#[test]
fn creators_of_files_killed_at_random_points_building_unnamed_leave_nothing() {
    creators_killed_at_random_points("killed_file_creators_unnamed", KillPlace::Dir, true);
}

#[test]
fn a_file_size_limit_is_an_error_not_sigxfsz_and_leaves_nothing() {
    let (wd, names, name) = shmq_testkit::start("fsize_limit", "seg-fsize");
    let big = Layout {
        data_len: 4 << 20,
        ..LAYOUT
    }
    .total_len()
    .unwrap();
    let mut failures = Vec::new();
    for (unnamed, blocked) in [(false, false), (true, false), (false, true)] {
        let dir = std::env::temp_dir().join(format!(
            "shmq-fsize-{}-{}",
            std::process::id(),
            u8::from(unnamed) * 2 + u8::from(blocked)
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut child = Spawn::role("seg_fsize")
            .arg("NAME", &name)
            .arg("DIR", dir.display())
            .arg("UNNAMED", u8::from(unnamed))
            .arg("BLOCKED", u8::from(blocked))
            .spawn(&wd);
        // A child killed by SIGXFSZ never reports and fails here.
        let ev = child.try_event("result", Duration::from_secs(30));
        let status = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        let case = format!("built unnamed {unnamed}, SIGXFSZ blocked before {blocked}");
        let Some(ev) = ev else {
            failures.push(format!(
                "{case}: the creator died ({status:?}) instead of failing"
            ));
            continue;
        };
        eprintln!("{case}: in a private /dev/shm: {}", ev["isolated"]);
        if !status.success() {
            failures.push(format!("{case}: the creator ended with {status:?}"));
        }
        for what in ["shm", "file"] {
            let r = &ev[what];
            if r["fsize"] != json!(big) || r["limit"] != json!(1u64 << 20) {
                failures.push(format!("{case}: {what}: expected FileSizeLimit, got {r}"));
            }
        }
        if ev["before"] != ev["after"] || ev["after"]["pending"] != json!(false) {
            failures.push(format!(
                "{case}: SIGXFSZ state changed: before {}, after {}",
                ev["before"], ev["after"]
            ));
        }
        if ev["shm_left"] != json!(false) || ev["dir_left"] != json!([]) {
            failures.push(format!(
                "{case}: left behind: shm {}, directory {}",
                ev["shm_left"], ev["dir_left"]
            ));
        }
        if ev["small_ok"] != json!(true) {
            failures.push(format!("{case}: a segment within the limit failed: {ev}"));
        }
    }
    kit::assert_no_failures("file size limit", &failures);
    names.assert_clean();
}

/// A peek copies what it shows (`pread`), never maps: bytes read after the owner
/// truncated the object come back short, not as SIGBUS, and what was copied at
/// peek time (header, endpoint records) stays readable.
#[test]
fn a_peek_reads_copies_and_survives_truncation() {
    let (names, name) = fresh("peek-copy");
    let seg = Segment::create(&name, &LAYOUT, &opts())
        .expect("create")
        .publish()
        .expect("publish");
    write_pattern(seg.data(), seg.data_len(), 0, 8192, 7);
    seg.claim_endpoint(1).expect("claim");
    let peek = Segment::peek(&name, &opts()).expect("peek");
    let len = peek
        .data_len()
        .expect("the user region lies within the object");
    assert_eq!(len, seg.data_len());
    let mut buf = vec![0u8; 8192];
    assert_eq!(peek.read_data(0, &mut buf).expect("read"), 8192);
    assert!(buf.iter().enumerate().all(|(i, &b)| b == pat(7, i)));
    // Past the end of the region: nothing.
    assert_eq!(peek.read_data(len, &mut buf).expect("read at the end"), 0);
    // The owner truncates the object to one page.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(kit::shm_path(&name))
        .expect("open the object");
    f.set_len(4096).expect("truncate");
    let off = 8192u64;
    assert_eq!(
        peek.read_data(off, &mut buf)
            .expect("read past the new end"),
        0,
        "a truncated object reads short"
    );
    let ep = peek.endpoint_info(1).expect("endpoint record (copied)");
    assert!(ep.alive && ep.attaches == 1, "{ep:?}");
    drop((peek, seg, f));
    // `remove_if_stale_unless`: the veto keeps it, no veto removes it.
    let mut looked = false;
    let kept = Segment::remove_if_stale_unless(&name, |p| {
        looked = p.is_shmq();
        true
    })
    .expect("remove_if_stale_unless");
    assert!(!kept && looked && kit::shm_path(&name).exists());
    assert!(Segment::remove_if_stale_unless(&name, |_| false).expect("remove"));
    names.assert_clean();
}
