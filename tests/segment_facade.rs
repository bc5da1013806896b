//! What the facade `shmq` makes of what the segment layer finds: every
//! segment error a channel meets comes back as `Error::Segment` with the same
//! variant, a channel's segment has mode 0600 whatever the umask, and a creator
//! killed between writing and publishing its header leaves a segment the next
//! creator replaces. The segment layer's own tests are in
//! `crates/segment/tests/segment.rs`.
//!
//! Run: `cargo test --release --features failpoints --test segment_facade`.

use serde_json::json;
use shmq::{Error, Options, mpsc, spsc};
use shmq_segment::{Error as SegError, MAGIC, Segment, SegmentOptions, VERSION};
use shmq_testkit::hostile::{InvalidNames, SEG_LAYOUT, plant, poke, unsealed_memfd};
use shmq_testkit::{Names, Spawn, Watchdog, arg, emit, hang};

shmq_testkit::roles! {
    role_channel_umask role_spsc_create
}

/// For each umask in 000 and 077, creates a channel named N<k> and reports the
/// `fstat` mode of its segment.
fn role_channel_umask() {
    use nix::sys::stat::{Mode, fstat, umask};
    let mut results = Vec::new();
    for (k, mask) in [0o000u32, 0o077].into_iter().enumerate() {
        umask(Mode::from_bits_truncate(mask));
        let name: String = arg(&format!("N{k}"));
        let tx = spsc::Sender::create(&name, &Options::new()).expect("channel create");
        let fd = tx.export_fd().expect("export_fd");
        results
            .push(json!({ "umask": mask, "channel": fstat(&fd).expect("fstat").st_mode & 0o7777 }));
        // The sender removes its segment on drop (nothing was waiting).
        drop((fd, tx));
    }
    emit("modes", json!({ "results": results }));
}

/// Creates an SPSC channel by name; armed with the `mid_init` failpoint, it stops
/// after writing the header and before publishing it.
fn role_spsc_create() {
    let name: String = arg("NAME");
    let tx = spsc::Sender::create(&name, &Options::new());
    emit("created", json!({ "ok": tx.is_ok() }));
    hang();
}

#[test]
fn invalid_names_are_refused_by_the_channels_too() {
    let names = Names::new();
    let invalid = InvalidNames::new(&names);
    for name in &invalid.table {
        let facade = spsc::Sender::create(name, &Options::new());
        assert!(
            matches!(facade, Err(Error::Segment(SegError::InvalidName { .. }))),
            "spsc::Sender::create({name:?}) gave {facade:?}"
        );
        let facade = mpsc::Receiver::open(name, &Options::new());
        assert!(
            matches!(facade, Err(Error::Segment(SegError::InvalidName { .. }))),
            "mpsc::Receiver::open({name:?}) gave {facade:?}"
        );
    }
    invalid.assert_none_reached_shm_open();
    names.assert_clean();
}

#[test]
fn a_channel_reports_the_segment_error_it_meets() {
    let names = Names::new();

    let missing = names.name("seg-missing");
    let r = spsc::Receiver::open(&missing, &Options::new());
    assert!(
        matches!(r, Err(Error::Segment(SegError::NotFound { .. }))),
        "missing: {r:?}"
    );

    let small = names.name("seg-small");
    plant(&small, &[0xAB; 10]);
    let r = spsc::Receiver::open(&small, &Options::new());
    assert!(
        matches!(r, Err(Error::Segment(SegError::TooSmall { .. }))),
        "ten bytes: {r:?}"
    );

    let random = names.name("seg-random");
    let mut bytes = vec![0u8; 8192];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("read /dev/urandom");
    }
    if bytes[..8] == MAGIC.to_le_bytes() || bytes[..8] == [0; 8] {
        bytes[0] ^= 0x55;
    }
    plant(&random, &bytes);
    let r = mpsc::Receiver::open(&random, &Options::new());
    assert!(
        matches!(r, Err(Error::Segment(SegError::BadMagic { .. }))),
        "random bytes: {r:?}"
    );

    let version = names.name("seg-version");
    let seg = Segment::create(&version, &SEG_LAYOUT, &SegmentOptions::new()).expect("create");
    drop(seg.publish().expect("publish"));
    poke(&version, 8, &(VERSION + 1).to_le_bytes());
    let r = spsc::Sender::open(&version, &Options::new());
    assert!(
        matches!(r, Err(Error::Segment(SegError::VersionMismatch { .. }))),
        "another version: {r:?}"
    );

    let r = spsc::Receiver::from_fd(unsealed_memfd(true), &Options::new());
    assert!(
        matches!(r, Err(Error::Segment(SegError::Unsealed { .. }))),
        "facade from_fd: {r:?}"
    );

    for n in [&small, &random, &version] {
        Segment::unlink(n).expect("unlink");
    }
    names.assert_clean();
}

#[test]
fn a_channels_segment_is_0600_whatever_the_umask() {
    let (wd, names) = (Watchdog::new("channel_modes"), Names::new());
    let ev = Spawn::role("channel_umask")
        .arg("N0", names.name("seg-mode0"))
        .arg("N1", names.name("seg-mode1"))
        .run(&wd, "modes");
    let results = ev["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(r["channel"], json!(0o600), "channel mode under {r}");
    }
    names.assert_clean();
}

#[cfg(feature = "failpoints")]
#[test]
fn a_creator_killed_at_mid_init_leaves_nothing_under_the_name() {
    let (wd, names, name) = shmq_testkit::start("mid_init", "seg-midinit");
    let mut creator = Spawn::role_on("spsc_create", &name).spawn_to(&wd, "mid_init");
    // Being initialised, the segment has no name yet: nothing to open or see.
    let r = spsc::Receiver::open(&name, &Options::new());
    assert!(
        matches!(r, Err(Error::Segment(SegError::NotFound { .. }))),
        "while the creator lives: {r:?}"
    );
    creator.signal(nix::sys::signal::Signal::SIGKILL);
    creator.expect_killed();
    let r = spsc::Receiver::open(&name, &Options::new());
    assert!(
        matches!(r, Err(Error::Segment(SegError::NotFound { .. }))),
        "after the creator died: {r:?}"
    );
    assert!(matches!(
        Segment::peek(&name, &SegmentOptions::new()),
        Err(SegError::NotFound { .. })
    ));
    // The next creator makes the channel without a manual rm, and it works.
    let mut rx = spsc::Receiver::create_or_open(&name, &Options::new())
        .expect("create_or_open after the killed creator");
    let mut tx = spsc::Sender::open(&name, &Options::new()).expect("open");
    tx.send(b"after recovery").expect("send");
    assert_eq!(&*rx.recv().expect("recv"), b"after recovery");
    drop(tx);
    drop(rx);
    names.assert_clean();
}
