//! Errors a user can act on: each mismatch and refusal says what is wrong in
//! words (kinds, types, limits, the options that change it), never raw codes.
//!
//! Run: `cargo test --release --test errors`.

use shmq::{Error, Options, SegmentOptions, mpsc, spsc};
use shmq_testkit::{Names, Spawn};

shmq_testkit::roles! { role_hold }

/// Holds the consumer of the SPSC channel NAME until killed.
fn role_hold() {
    shmq_testkit::role::hold_end("rx")
}

#[test]
fn producer_slots_out_of_range_are_said_as_a_range() {
    for n in [0u16, 257] {
        let r = mpsc::anonymous(&Options::new().max_producers(n));
        match r {
            Err(e @ Error::InvalidProducerCount { .. }) => assert_eq!(
                e.to_string(),
                format!("an MPSC channel has 1 to 256 producer slots, not {n}")
            ),
            other => panic!("max_producers({n}): {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn a_typed_channel_without_room_for_a_message_is_refused() {
    let r = spsc::typed::anonymous::<u64>(&Options::new().capacity(0));
    match r {
        Err(e @ Error::InvalidCapacity(0)) => {
            assert!(
                e.to_string().contains("typed channel room for 1 message"),
                "{e}"
            );
        }
        other => panic!("capacity(0): {:?}", other.map(|_| ())),
    }
    // One message is enough.
    let (mut tx, mut rx) =
        spsc::typed::anonymous::<u64>(&Options::new().capacity(1)).expect("capacity(1)");
    tx.send(&7).expect("send");
    assert_eq!(rx.recv().expect("recv"), 7);
}

#[test]
fn already_attached_names_the_holders_pid() {
    let (wd, names, name) = shmq_testkit::start("errors_already_attached", "errors-attached");
    let tx = spsc::Sender::create(&name, &Options::new()).expect("create");
    let mut p = Spawn::role_on("hold", &name).arg("KIND", "spsc").spawn(&wd);
    let pid = p.event("ready")["pid"].as_u64().expect("pid");
    match spsc::Receiver::open(&name, &Options::new()) {
        Err(e @ Error::AlreadyAttached { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "the consumer end of this channel is already attached by a live process (pid {pid})"
            )
        ),
        other => panic!("second consumer: {:?}", other.map(|_| ())),
    }
    p.kill_and_reap();
    drop(tx);
    let _ = shmq::inspect::unlink(&name);
    names.assert_clean();
}

/// `segment_options` sets a base; the builder's own settings apply on top of
/// it in any order (before, it replaced a `mode` set earlier).
#[test]
fn segment_options_compose_with_the_builders_settings() {
    use std::os::unix::fs::PermissionsExt;
    let names = Names::new();
    for (what, o) in [
        (
            "mode, then segment_options",
            Options::new()
                .mode(0o640)
                .segment_options(SegmentOptions::new().max_len(1 << 30)),
        ),
        (
            "segment_options, then mode",
            Options::new()
                .segment_options(SegmentOptions::new().max_len(1 << 30))
                .mode(0o640),
        ),
    ] {
        let name = names.name("errors-compose");
        let rx = spsc::Receiver::create(&name, &o).expect("create");
        let mode = std::fs::metadata(shmq_testkit::shm_path(&name))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "{what}");
        drop(rx);
        let _ = shmq::inspect::unlink(&name);
    }
    names.assert_clean();
}

/// `Clone` of an MPSC sender never panics: the clone takes its slot on first
/// use, and reports `TooManyProducers` there when every slot is taken (typed
/// senders clone the same way).
#[test]
fn a_clone_without_a_free_slot_fails_on_first_use_not_with_a_panic() {
    let o = Options::new().max_producers(2);
    let (tx, mut rx) = mpsc::anonymous(&o).expect("anonymous");
    let (mut a, mut b, mut c) = (tx.clone(), tx.clone(), tx.clone());
    a.send(b"a").expect("first slot");
    b.send(b"b").expect("second slot");
    match c.send(b"c") {
        Err(e @ Error::TooManyProducers { max: 2 }) => {
            assert!(e.to_string().contains("2 producer slots"), "{e}");
        }
        other => panic!("third sender on two slots: {other:?}"),
    }
    drop((tx, c));
    let mut got: Vec<Vec<u8>> = rx.try_iter().map(|m| m.expect("message")).collect();
    got.sort();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    let (t, _r) =
        mpsc::typed::anonymous::<u32>(&Options::new().max_producers(1)).expect("typed anonymous");
    let mut t2 = t.clone();
    let mut t = t;
    t.send(&1).expect("the only slot");
    assert!(matches!(
        t2.send(&2),
        Err(Error::TooManyProducers { max: 1 })
    ));
}
