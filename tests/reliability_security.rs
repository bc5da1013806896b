//! Reliability catalogue, permission and security tests (PS-01..PS-09) beyond
//! the segment-level ones in `crates/segment/tests/segment.rs` (modes under any umask, symlinks,
//! FIFOs, hard links, foreign owners, `PermissionDenied`, invalid names);
//! `docs/RELIABILITY.md` maps every item. Root-only parts skip with a printed
//! reason when not root.
//!
//! Run: `cargo test --release --features failpoints --test reliability_security`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use serde_json::json;
use shmq::{Error, Options, Receiver, SegmentOptions, Sender, mpsc, spsc};
use shmq_segment::{Error as SegError, Segment};
use shmq_testkit as kit;
use shmq_testkit::kinds::KindExt;
use shmq_testkit::{Names, Spawn, Watchdog, arg, emit, hang};

const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------
// Roles

shmq_testkit::roles! {
    role_umask_modes role_as_user role_hold
}

/// The `fdinfo` flags of every descriptor of this process that refers to `name`.
fn fd_flags_of(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .expect("fd dir")
        .flatten()
    {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !target.to_string_lossy().contains(&name[1..]) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if let Some(f) = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        {
            out.push(f);
        }
    }
    out
}

/// PS-01: under umask 000 and 077, creates SPSC, MPSC and typed channels with
/// the default mode and with mode 0640 (names N0..N11), and reports the `fstat`
/// mode of each and the flags of every descriptor it holds on them.
fn role_umask_modes() {
    use nix::sys::stat::{Mode, umask};
    let mut results = Vec::new();
    let mut k = 0;
    for mask in [0o000u32, 0o077] {
        umask(Mode::from_bits_truncate(mask));
        for explicit in [false, true] {
            let o = if explicit {
                Options::new().mode(0o640)
            } else {
                Options::new()
            };
            for kind in ["spsc", "mpsc", "typed"] {
                let name: String = arg(&format!("N{k}"));
                k += 1;
                let keep: Box<dyn std::any::Any> = match kind {
                    "spsc" => Box::new(spsc::Sender::create(&name, &o).expect("spsc")),
                    "mpsc" => Box::new(mpsc::Receiver::create(&name, &o).expect("mpsc")),
                    _ => Box::new(spsc::typed::Sender::<u64>::create(&name, &o).expect("typed")),
                };
                let mode = std::fs::metadata(kit::shm_path(&name))
                    .expect("stat")
                    .permissions()
                    .mode()
                    & 0o7777;
                results.push(json!({
                    "umask": mask, "explicit": explicit, "kind": kind, "mode": mode,
                    "fd_flags": fd_flags_of(&name),
                }));
                drop(keep);
            }
        }
    }
    emit("modes", json!({ "results": results }));
}

/// PS-03: drops to uid 65534 with primary group GID and no supplementary
/// groups, then opens the SPSC channel NAME as its sender (accepting a root-owned,
/// group-writable segment) and sends one message; reports the outcome.
fn role_as_user() {
    let gid: u32 = arg("GID");
    nix::unistd::setgroups(&[]).expect("setgroups");
    nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)).expect("setgid");
    nix::unistd::setuid(nix::unistd::Uid::from_raw(NOBODY)).expect("setuid");
    let name: String = arg("NAME");
    let o = Options::new().segment_options(
        SegmentOptions::new()
            .expected_owner(Some(0))
            .allow_shared_write(true),
    );
    let r = spsc::Sender::open(&name, &o).and_then(|mut tx| tx.send(b"from another user"));
    let result = match r {
        Ok(()) => "sent".to_owned(),
        Err(Error::Segment(SegError::PermissionDenied { .. })) => "PermissionDenied".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    emit("opened", json!({ "result": result }));
}

/// PS-05/PS-09: creates the KIND channel NAME with both ends in this process,
/// sends COUNT messages of SECRET bytes (a repeated byte), receives TAKE of them,
/// reports `ready`, and holds both ends until killed.
fn role_hold() {
    kit::by_kind!(arg::<String>("KIND").as_str(), hold_of())
}

/// [`role_hold`] over a channel of kind `K`.
fn hold_of<K: KindExt>() {
    let name: String = arg("NAME");
    let o = Options::new().capacity(4096);
    let mut rx = Receiver::<K>::create(&name, &o).expect("create");
    let mut tx = Sender::<K>::open(&name, &o).expect("open");
    let secret = vec![arg::<u8>("SECRET"); 200];
    for _ in 0..arg::<u64>("COUNT") {
        tx.send(&secret).expect("send");
    }
    let mut buf = Vec::new();
    for _ in 0..arg::<u64>("TAKE") {
        rx.recv_into(&mut buf).expect("recv");
    }
    emit("ready", json!({}));
    let _keep = (tx, rx);
    hang();
}

// ---------------------------------------------------------------------------
// PS-01

/// PS-01 for every channel flavour (the segment level is in `crates/segment/tests/segment.rs`):
/// under umask 000 and 077 a channel is created 0600 by default and exactly as
/// asked otherwise (applied with `fchmod`, never left to the umask), and every
/// descriptor the process holds on it is `O_RDWR|O_CLOEXEC`.
#[test]
fn ps01_every_channel_is_created_0600_and_cloexec_whatever_the_umask() {
    let (wd, names) = (Watchdog::new("ps01"), Names::new());
    let mut s = Spawn::role("umask_modes");
    for k in 0..12 {
        s = s.arg(&format!("N{k}"), names.name("ps01"));
    }
    let ev = s.run(&wd, "modes");
    let results = ev["results"].as_array().expect("results");
    assert_eq!(results.len(), 12);
    for r in results {
        let want = if r["explicit"] == true { 0o640 } else { 0o600 };
        assert_eq!(r["mode"], json!(want), "{r}");
        let flags = r["fd_flags"].as_array().expect("flags");
        assert!(!flags.is_empty(), "no descriptor on the channel: {r}");
        for f in flags {
            let f = f.as_u64().expect("flag") as i32;
            assert_ne!(
                f & libc::O_CLOEXEC,
                0,
                "a descriptor without O_CLOEXEC: {r}"
            );
            assert_eq!(f & libc::O_ACCMODE, libc::O_RDWR, "{r}");
        }
    }
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// PS-02

/// PS-02 at the channel level, with the attacker's objects owned by another
/// user when running as root: a regular file, a symlink (to a real channel and
/// dangling), a FIFO, a second hard link and a directory squatting a channel's
/// name. `create` (with or without `reclaim_stale`) is `AlreadyExists` or
/// `Untrusted` and never removes, follows or writes the attacker's object;
/// `open` and `create_or_open` are refused with a typed error (`Untrusted`, or
/// `BadMagic` for a same-user file that is not a channel) and attach nothing.
#[test]
fn ps02_a_squatted_name_is_never_opened_followed_or_removed() {
    let _wd = Watchdog::new("ps02");
    let names = Names::new();
    let root = kit::is_root();
    if !root {
        eprintln!("ps02: not root: the squatting objects are this user's own (no chown)");
    }
    let victim = names.name("ps02-real");
    let victim_tx = spsc::Sender::create(&victim, &Options::new()).expect("a real channel");
    let chown = |p: &std::path::Path| {
        if root {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                p,
                Some(nix::unistd::Uid::from_raw(NOBODY)),
                Some(nix::unistd::Gid::from_raw(NOBODY)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .expect("lchown");
        }
    };
    let kinds = [
        "foreign file",
        "world-writable file",
        "symlink to a channel",
        "dangling symlink",
        "fifo",
        "hard link",
        "directory",
    ];
    let mut failures = Vec::new();
    for kind in kinds {
        let name = names.name("ps02");
        let path = kit::shm_path(&name);
        let target = names.name("ps02-target");
        match kind {
            "foreign file" => std::fs::write(&path, vec![0x5a; 8192]).unwrap(),
            "world-writable file" => {
                std::fs::write(&path, vec![0x5a; 8192]).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
            "symlink to a channel" => {
                std::os::unix::fs::symlink(kit::shm_path(&victim), &path).unwrap()
            }
            "dangling symlink" => {
                std::os::unix::fs::symlink(kit::shm_path(&target), &path).unwrap()
            }
            "fifo" => {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
            }
            "hard link" => {
                std::fs::write(kit::shm_path(&target), vec![0x5a; 8192]).unwrap();
                std::fs::hard_link(kit::shm_path(&target), &path).unwrap();
            }
            _ => std::fs::create_dir(&path).unwrap(),
        }
        chown(&path);
        let before = std::fs::symlink_metadata(&path).expect("lstat");
        // Read only regular files (reading the FIFO would block).
        let content = before
            .is_file()
            .then(|| std::fs::read(&path).expect("read the squat"));
        let mut results = Vec::new();
        for (what, r) in [
            (
                "spsc create",
                spsc::Sender::create(&name, &Options::new()).map(drop),
            ),
            (
                "mpsc create",
                mpsc::Receiver::create(&name, &Options::new()).map(drop),
            ),
            (
                "create reclaim_stale",
                spsc::Sender::create(&name, &Options::new().reclaim_stale(true)).map(drop),
            ),
            (
                "open",
                spsc::Receiver::open(&name, &Options::new()).map(drop),
            ),
            (
                "create_or_open",
                spsc::Receiver::create_or_open(&name, &Options::new()).map(drop),
            ),
        ] {
            let same_user_file = !root && (kind == "foreign file");
            let ok = match (&r, what) {
                (Ok(()), _) => false,
                (Err(Error::Segment(SegError::AlreadyExists { .. })), w) => w.contains("create"),
                (Err(Error::Segment(SegError::Untrusted { .. }) | Error::Untrusted { .. }), _) => {
                    true
                }
                (Err(Error::Segment(SegError::BadMagic { .. })), _) => same_user_file,
                (Err(Error::Segment(SegError::InvalidName { .. })), _) => kind == "directory",
                _ => false,
            };
            if what == "create reclaim_stale" && same_user_file {
                // A same-user, unlocked regular file is this user's own stale object:
                // reclaim_stale may replace it (the trust boundary is the user).
                results.push(format!("{what}: {r:?} (same user: allowed)"));
                continue;
            }
            if !ok {
                failures.push(format!("{kind}: {what} gave {r:?}"));
            }
            results.push(format!(
                "{what}: {}",
                if ok { "refused" } else { "ACCEPTED" }
            ));
        }
        // The attacker's object is untouched (unless reclaim_stale replaced this
        // user's own file, above).
        if root || kind != "foreign file" {
            let after = std::fs::symlink_metadata(&path).expect("the squat is still there");
            if after.ino() != before.ino() || after.mode() != before.mode() {
                failures.push(format!(
                    "{kind}: the squatting object was replaced or changed"
                ));
            }
            if let Some(c) = &content
                && std::fs::read(&path).ok().as_ref() != Some(c)
            {
                failures.push(format!("{kind}: the squatting file was written"));
            }
        }
        if kind == "dangling symlink" && kit::shm_path(&target).exists() {
            failures.push("a dangling symlink was followed: its target exists".into());
        }
        eprintln!("ps02 {kind}: {}", results.join("; "));
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir(&path).unwrap();
        } else {
            let _ = std::fs::remove_file(&path);
        }
        let _ = std::fs::remove_file(kit::shm_path(&target));
    }
    // The real channel the symlink pointed at is intact and still works.
    let mut rx = spsc::Receiver::open(&victim, &Options::new()).expect("the real channel");
    let mut tx = victim_tx;
    tx.send(b"still mine").expect("send");
    assert_eq!(&*rx.recv().expect("recv"), b"still mine");
    drop((tx, rx));
    kit::assert_no_failures("PS-02", &failures);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// PS-03

/// PS-03 at the channel level (root only): another user cannot open a 0600
/// channel (`PermissionDenied`); with mode 0660 and the channel's group set,
/// a member of that group can (and its message arrives), a non-member cannot.
#[test]
fn ps03_other_users_are_denied_and_only_group_members_get_a_group_channel() {
    if !kit::root_or_skip("ps03: needs root to switch users and groups") {
        return;
    }
    let (wd, names) = (Watchdog::new("ps03"), Names::new());
    const GROUP: u32 = 4242;
    let as_user = |name: &str, gid: u32| -> String {
        let mut c = Spawn::role_on("as_user", name).arg("GID", gid).spawn(&wd);
        let ev = c.event("opened");
        c.expect_success();
        ev["result"].as_str().unwrap_or("").to_owned()
    };
    // 0600, root's: nobody is denied.
    let private = names.name("ps03p");
    let rx = spsc::Receiver::create(&private, &Options::new()).expect("create");
    assert_eq!(as_user(&private, NOBODY), "PermissionDenied");
    assert_eq!(as_user(&private, GROUP), "PermissionDenied");
    drop(rx);
    // 0660, group 4242: a member sends, a non-member is denied.
    let shared = names.name("ps03g");
    let mut rx = spsc::Receiver::create(&shared, &Options::new().mode(0o660)).expect("create");
    std::os::unix::fs::chown(kit::shm_path(&shared), None, Some(GROUP)).expect("chgrp");
    assert_eq!(as_user(&shared, NOBODY), "PermissionDenied", "a non-member");
    assert_eq!(
        as_user(&shared, GROUP),
        "sent",
        "a member of the channel's group"
    );
    assert_eq!(
        &*rx.recv_timeout(Duration::from_secs(10))
            .expect("the member's message"),
        b"from another user"
    );
    drop(rx);
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// PS-04

/// PS-04's second half (the invalid names are in `crates/segment/tests/segment.rs`): generated
/// names carry 64 random bits (16 hex digits after the prefix) and do not repeat.
#[test]
fn ps04_generated_names_carry_64_random_bits() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let n = shmq::unique_name("ps04").expect("unique_name");
        let suffix = n.strip_prefix("/ps04-").expect("prefix kept");
        assert_eq!(suffix.len(), 16, "{n}");
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{n}");
        shmq::validate_name(&n).expect("valid");
        assert!(seen.insert(n), "a generated name repeated");
    }
}

// ---------------------------------------------------------------------------
// PS-05

/// Every byte of the object under `name`.
fn object_bytes(name: &str) -> Vec<u8> {
    std::fs::read(kit::shm_path(name)).expect("read the object")
}

/// PS-05 over a channel of kind `K` named `name`.
fn ps05<K: KindExt>(wd: &Watchdog, name: &str) {
    let kind = K::NAME;
    let secret = 0xC7u8;
    let mut owner = Spawn::role_on("hold", name)
        .arg("KIND", K::NAME)
        .arg("SECRET", secret)
        .arg("COUNT", 15)
        .arg("TAKE", 5)
        .spawn(wd);
    owner.event("ready");
    owner.kill_and_reap();
    let old = object_bytes(name);
    let run = |b: &[u8]| b.windows(16).any(|w| w.iter().all(|&x| x == secret));
    assert!(
        run(&old),
        "{kind}: the dead owner's payloads should be in the old object"
    );
    let r = Sender::<K>::create(name, &Options::new()).map(drop);
    assert!(
        matches!(
            r,
            Err(Error::Segment(SegError::AlreadyExists { stale: true, .. }))
        ),
        "{kind}: {r:?}"
    );
    let o = Options::new().capacity(4096).reclaim_stale(true);
    // The 10 unreceived messages are kept (`StaleWithMessages`) until they are
    // discarded on purpose; either way no new channel shows them.
    let r = Receiver::<K>::create(name, &o).map(drop);
    assert!(
        matches!(r, Err(Error::StaleWithMessages { messages: 10, .. })),
        "{kind}: {r:?}"
    );
    assert_eq!(
        shmq::inspect::remove_stale(name, true).expect("discard"),
        shmq::inspect::Removal::Removed
    );
    let mut rx = Receiver::<K>::create(name, &o).expect("reclaim_stale");
    let mut tx = Sender::<K>::open(name, &Options::new()).expect("open");
    let new = object_bytes(name);
    assert!(
        !run(&new),
        "{kind}: old payload bytes in the reclaimed channel"
    );
    // Not one secret byte in the ring's data area. The header and the endpoint
    // table hold this process's pid, whose low byte is 0xC7 for one pid in 256:
    // the whole-object check failed in CI that way (seen once in 40 local runs,
    // both kinds, exactly at the creator's and the two endpoints' pid fields).
    let info = *kit::open_raw(name).info();
    let data = info.data_offset as usize + kit::ring_off::data::<K>(info.endpoints - 1);
    assert!(
        new[data..].iter().all(|&b| b != secret),
        "{kind}: an old payload byte survived"
    );
    let mut buf = Vec::new();
    assert!(
        matches!(rx.try_recv_into(&mut buf), Err(Error::Empty)),
        "{kind}"
    );
    let zeros = tx.reserve(1000).expect("reserve").iter().all(|&b| b == 0);
    assert!(
        zeros,
        "{kind}: a reservation in a fresh channel shows old bytes"
    );
    drop((tx, rx));
    kit::remove_stale(name);
}

kit::test_both_kinds! {
    /// PS-05: the owners of a channel die with payloads (consumed and unconsumed)
    /// in its ring. A new run that reuses the name with `create` is refused
    /// (`AlreadyExists { stale: true }`: it never attaches to the old ring); with
    /// `reclaim_stale` it is refused while unreceived messages wait (they are data),
    /// and once they are discarded it gets a fresh object: not one byte of the old payloads is
    /// anywhere in it, a zero-copy reservation reads zeros, nothing is received.
    /// (`create_or_open` is documented to attach to the existing channel and
    /// deliver its unread messages: same user, by design.)
    fn ps05_a_reused_name_never_shows_old_payload_bytes() under "ps05": ps05("ps05");
}

// ---------------------------------------------------------------------------
// PS-06

/// PS-06: after attaching named SPSC, MPSC and typed channels and both ends of
/// anonymous ones, a child that execs (`sh -c 'ls -l /proc/self/fd'`) holds none
/// of their descriptors, and none of this process's shared-memory descriptors
/// lacks `FD_CLOEXEC` (the endpoint locks live on those descriptors).
#[test]
fn ps06_no_channel_descriptor_survives_exec() {
    let names = Names::new();
    let a = names.name("ps06");
    let b = names.name("ps06");
    let c = names.name("ps06");
    let mut rx1 = spsc::Receiver::create(&a, &Options::new()).expect("spsc");
    let mut tx1 = spsc::Sender::open(&a, &Options::new()).expect("spsc");
    let mut rx2 = mpsc::Receiver::create(&b, &Options::new()).expect("mpsc");
    let mut tx2 = mpsc::Sender::open(&b, &Options::new()).expect("mpsc");
    let tx3 = spsc::typed::Sender::<u64>::create(&c, &Options::new()).expect("typed");
    let (mut tx4, mut rx4) = spsc::anonymous(&Options::new()).expect("anonymous");
    let (mut tx5, mut rx5) = mpsc::anonymous(&Options::new()).expect("anonymous");
    tx1.send(b"x").unwrap();
    tx2.send(b"x").unwrap();
    tx4.send(b"x").unwrap();
    tx5.send(b"x").unwrap();
    rx1.recv().unwrap();
    rx2.recv().unwrap();
    rx4.recv().unwrap();
    rx5.recv().unwrap();
    let mine = kit::shm_fds();
    assert!(
        mine >= 7,
        "expected descriptors for 7 endpoints, found {mine}"
    );
    let out = std::process::Command::new("sh")
        .args(["-c", "ls -l /proc/self/fd"])
        .output()
        .expect("sh");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listing.contains("/dev/shm/") && !listing.contains("memfd:"),
        "a shared-memory descriptor leaked across exec:\n{listing}"
    );
    let open = kit::shm_fds_without_cloexec();
    assert!(open.is_empty(), "descriptors without FD_CLOEXEC: {open:?}");
    drop((tx1, rx1, tx2, rx2, tx3, tx4, rx4, tx5, rx5));
    names.assert_clean();
}

// ---------------------------------------------------------------------------
// PS-08

/// PS-08 is not applicable (shmq has no socket rendezvous of its own); this is
/// the user-side pattern docs/RELIABILITY.md recommends when passing a channel
/// descriptor: check the peer's credentials (`SO_PEERCRED`) on the UNIX socket
/// before trusting what comes over it, then `from_fd` (which checks the seals).
#[test]
fn ps08_user_side_peer_credentials_before_from_fd() {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let creds = getsockopt(&b, PeerCredentials).expect("SO_PEERCRED");
    assert_eq!(creds.uid(), nix::unistd::geteuid().as_raw(), "peer uid");
    assert_eq!(creds.pid(), std::process::id() as i32, "peer pid");
    let (mut tx, rx) = spsc::anonymous(&Options::new()).expect("anonymous");
    drop(rx);
    let fd = tx.export_fd().expect("export_fd");
    kit::send_fd(&a, &fd);
    let got = kit::recv_fd(&b);
    let mut rx2 = spsc::Receiver::from_fd(got.expect("a descriptor"), &Options::new())
        .expect("from_fd after the credential check");
    tx.send(b"checked").expect("send");
    assert_eq!(&*rx2.recv().expect("recv"), b"checked");
}

// ---------------------------------------------------------------------------
// PS-09

/// PS-09, what holds and what differs: an anonymous channel never has a name
/// (its descriptors are memfds, nothing in `/dev/shm`); a named channel keeps its
/// name while in use (any process may open it by name, by design) and removes it
/// when its last endpoint closes with nothing left to read; if both ends are
/// SIGKILLed the name stays, as a stale segment that `is_stale` reports and
/// `remove_if_stale` (`shmq gc`) or `reclaim_stale` removes.
#[test]
fn ps09_names_exist_only_while_needed_and_a_killed_pair_leaves_a_stale_one() {
    let (wd, names) = (Watchdog::new("ps09"), Names::new());
    // Anonymous: memfd descriptors, no name.
    let (mut tx, mut rx) = spsc::anonymous(&Options::new()).expect("anonymous");
    tx.send(b"x").unwrap();
    rx.recv().unwrap();
    let fds: Vec<String> = kit::fd_table()
        .into_iter()
        .filter(|l| l.starts_with("/memfd:shmq"))
        .collect();
    assert!(
        !fds.is_empty(),
        "anonymous channel descriptors: {:?}",
        kit::fd_table()
    );
    drop((tx, rx));
    // Named, closed gracefully: the name goes with the last endpoint.
    let graceful = names.name("ps09");
    let mut rx = spsc::Receiver::create(&graceful, &Options::new()).expect("create");
    let mut tx = spsc::Sender::open(&graceful, &Options::new()).expect("open");
    tx.send(b"x").unwrap();
    rx.recv().unwrap();
    assert!(kit::shm_path(&graceful).exists(), "in use: named");
    drop((tx, rx));
    assert!(
        !kit::shm_path(&graceful).exists(),
        "closed and drained: no name"
    );
    // Named, both ends SIGKILLed: a stale name, removable.
    let killed = names.name("ps09");
    let mut owner = Spawn::role_on("hold", &killed)
        .arg("KIND", "spsc")
        .arg("SECRET", 1)
        .arg("COUNT", 3)
        .arg("TAKE", 1)
        .spawn(&wd);
    owner.event("ready");
    owner.kill_and_reap();
    assert!(
        kit::shm_path(&killed).exists(),
        "a killed pair leaves its name"
    );
    assert!(Segment::is_stale(&killed).expect("is_stale"));
    let report = shmq::inspect::inspect(&killed)
        .expect("inspect")
        .expect("a channel");
    assert!(report.is_stale(), "inspect: {:?}", report.problems);
    kit::remove_stale(&killed);
    names.assert_clean();
}
