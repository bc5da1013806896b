//! Message type identity across separately built programs: this test binary and
//! the `typed_peer` example each define their own message type. Under the same
//! declared name, version and layout they talk; under another version or
//! layout, or one declared and one not, the opener is refused with both types
//! named in words.

use serde_json::Value;
use shmq::bytemuck::{Pod, Zeroable};
use shmq::{Error, Message, MessageType, Options, mpsc, spsc};
use shmq_testkit::{Proc, Spawn, Watchdog};

/// This binary's own definition, declared as `typed_peer`'s `Reading` is.
/// Its Rust path (`identity::Reading`) differs from the example's
/// (`typed_peer::Reading`): only the declaration makes them one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[bytemuck(crate = "shmq::bytemuck")]
#[repr(C)]
struct Reading {
    seq: u64,
    value: u32,
    check: u32,
}

impl Message for Reading {
    const NAME: &'static str = "shmq.example.Reading";
    const VERSION: u32 = 1;
}

/// `typed_peer`'s check, computed the same way here.
fn reading(seq: u64) -> Reading {
    let value = (seq * 7) as u32;
    Reading {
        seq,
        value,
        check: (seq as u32).wrapping_mul(2_654_435_761) ^ value,
    }
}

/// This end of the channel `name`, made here: an SPSC sender of declared
/// [`Reading`]s, 64 bytes of ring.
fn reading_sender(name: &str) -> spsc::declared::Sender<Reading> {
    spsc::declared::Sender::create(name, &Options::new().capacity(64)).expect("create")
}

/// Starts `typed_peer` with `args` on `name`.
fn spawn_peer(wd: &Watchdog, name: &str, args: &[&str]) -> Proc {
    Spawn::example("typed_peer")
        .args(["--name", name])
        .args(args)
        .spawn(wd)
}

/// Runs `typed_peer` with `args` on `name` to its end; its last JSON line.
fn peer(wd: &Watchdog, name: &str, args: &[&str]) -> (bool, Value) {
    let mut p = spawn_peer(wd, name, args);
    let ok = p.wait().success();
    (ok, p.last_json())
}

/// The error `typed_peer` reported, in words.
fn refused(wd: &Watchdog, name: &str, args: &[&str]) -> String {
    let (ok, j) = peer(wd, name, args);
    assert!(!ok && j["ok"] == false, "{j}");
    j["error"].as_str().expect("error text").to_owned()
}

const V1: &str = "\"shmq.example.Reading\" v1 (16 bytes, align 8)";

#[test]
fn two_programs_with_the_same_declared_type_talk_over_spsc() {
    let (wd, names, name) = shmq_testkit::start("identity_spsc", "ident-spsc");
    let mut tx = reading_sender(&name);
    let n = 500u64;
    let mut p = spawn_peer(&wd, &name, &["--role", "recv", "--count", &n.to_string()]);
    for seq in 0..n {
        tx.send(&reading(seq)).expect("send");
    }
    p.expect_success();
    let j = p.last_json();
    assert_eq!(j["ok"], true, "{j}");
    assert_eq!(j["count"], n, "{j}");
    drop(tx);
    names.assert_clean();
}

#[test]
fn two_programs_with_the_same_declared_type_talk_over_mpsc() {
    let (wd, names, name) = shmq_testkit::start("identity_mpsc", "ident-mpsc");
    let mut rx = mpsc::declared::Receiver::<Reading>::create(&name, &Options::new().capacity(64))
        .expect("create");
    let n = 300u64;
    let mut p = spawn_peer(
        &wd,
        &name,
        &["--mpsc", "--role", "send", "--count", &n.to_string()],
    );
    for seq in 0..n {
        assert_eq!(rx.recv().expect("recv"), reading(seq));
    }
    p.expect_success();
    drop(rx);
    names.assert_clean();
}

#[test]
fn an_undeclared_type_with_the_same_rust_path_still_talks_across_programs() {
    let (wd, names, name) = shmq_testkit::start("identity_array", "ident-array");
    let mut tx = spsc::typed::Sender::<[u64; 2]>::create(&name, &Options::new().capacity(64))
        .expect("create");
    for seq in 0..40u64 {
        tx.send(&[seq, !seq]).expect("send");
    }
    let (ok, j) = peer(
        &wd,
        &name,
        &["--role", "recv", "--count", "40", "--as", "array"],
    );
    assert!(ok, "{j}");
    drop(tx);
    names.assert_clean();
}

#[test]
fn another_version_or_layout_under_the_same_name_is_refused_naming_both() {
    let (wd, names, name) = shmq_testkit::start("identity_refused", "ident-refused");
    let tx = reading_sender(&name);
    let recv = ["--role", "recv", "--count", "1", "--as"];
    let mismatch = |this_end: &str| {
        format!("message type mismatch: the channel holds {V1}, this end uses {this_end}")
    };
    assert_eq!(
        refused(&wd, &name, &[&recv[..], &["v2"]].concat()),
        mismatch("\"shmq.example.Reading\" v2 (16 bytes, align 8)")
    );
    assert_eq!(
        refused(&wd, &name, &[&recv[..], &["wide"]].concat()),
        mismatch("\"shmq.example.Reading\" v1 (24 bytes, align 8)")
    );
    // The same struct, not declared: known by its Rust path, another type.
    assert_eq!(
        refused(&wd, &name, &[&recv[..], &["undeclared"]].concat()),
        mismatch("the undeclared type \"typed_peer::Reading\" (16 bytes, align 8)")
    );
    drop(tx);
    names.assert_clean();
}

#[test]
fn a_declared_type_opening_an_undeclared_channel_is_refused_in_words() {
    let (wd, names, name) = shmq_testkit::start("identity_undeclared", "ident-undecl");
    // The example creates the channel of its undeclared `Reading` and waits
    // for nobody: its sends fit the ring.
    let (ok, j) = peer(
        &wd,
        &name,
        &[
            "--create",
            "--role",
            "send",
            "--count",
            "2",
            "--as",
            "undeclared",
        ],
    );
    assert!(ok, "{j}");
    let r = spsc::declared::Receiver::<Reading>::open(&name, &Options::new());
    match r {
        Err(e @ Error::WrongMessageType { .. }) => {
            assert_eq!(
                e.to_string(),
                format!(
                    "message type mismatch: the channel holds the undeclared type \
                     \"typed_peer::Reading\" (16 bytes, align 8), this end uses {V1}"
                )
            );
            let Error::WrongMessageType { expected, found } = e else {
                unreachable!()
            };
            assert_eq!(
                found,
                MessageType {
                    name: "typed_peer::Reading".into(),
                    version: None,
                    size: 16,
                    align: 8
                }
            );
            assert_eq!(expected.version, Some(1));
        }
        other => panic!("{other:?}"),
    }
    // Its undeclared twin in this binary has another Rust path: refused too.
    let r = spsc::typed::Receiver::<Reading>::open(&name, &Options::new());
    assert!(
        matches!(&r, Err(Error::WrongMessageType { expected, .. }) if expected.name == "identity::Reading"),
        "{r:?}"
    );
    // The example's own type receives what it sent.
    let (ok, j) = peer(
        &wd,
        &name,
        &["--role", "recv", "--count", "2", "--as", "undeclared"],
    );
    assert!(ok, "{j}");
    shmq::inspect::unlink(&name).ok();
    names.assert_clean();
}

/// A name longer than the header holds is refused before anything is made.
#[test]
fn a_declared_name_too_long_for_the_header_is_refused() {
    #[derive(Clone, Copy, Pod, Zeroable)]
    #[bytemuck(crate = "shmq::bytemuck")]
    #[repr(C)]
    struct Long(u64);
    impl Message for Long {
        const NAME: &'static str = "an.example.name.that.goes.on.and.on.and.on.and.on.and.on.\
             and.on.and.on.and.on.and.on.and.on.and.on.and.on.and.on.and.on.and.on.and.on.\
             and.on.and.on.and.on.Long";
        const VERSION: u32 = 1;
    }
    assert!(Long::NAME.len() > shmq::MAX_MESSAGE_NAME);
    let names = shmq_testkit::Names::new();
    let name = names.name("ident-long");
    let e = spsc::declared::Sender::<Long>::create(&name, &Options::new()).unwrap_err();
    assert!(matches!(e, Error::InvalidMessageName { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "it is {} bytes, more than the 127 a channel's header holds",
            Long::NAME.len()
        )),
        "{text}"
    );
    assert!(!shmq_testkit::shm_path(&name).exists(), "nothing was made");
    let e = spsc::declared::anonymous::<Long>(&Options::new()).unwrap_err();
    assert!(matches!(e, Error::InvalidMessageName { .. }), "{e:?}");
    names.assert_clean();
}

/// The message type is checked before the capacity a caller asks for (which a
/// typed channel derives from the type's size): another type is named as
/// such; the same type with another capacity is still a capacity mismatch.
#[test]
fn the_type_is_checked_before_the_capacity() {
    let names = shmq_testkit::Names::new();
    let name = names.name("ident-cap");
    let tx = reading_sender(&name);
    let e = spsc::typed::Receiver::<[u64; 3]>::open(&name, &Options::new().capacity(64))
        .expect_err("another type");
    assert!(matches!(e, Error::WrongMessageType { .. }), "{e:?}");
    let e = spsc::declared::Receiver::<Reading>::open(&name, &Options::new().capacity(1000))
        .expect_err("another capacity");
    assert!(
        matches!(
            e,
            Error::Segment(shmq_segment::Error::LayoutMismatch {
                field: "capacity",
                ..
            })
        ),
        "{e:?}"
    );
    let rx = spsc::declared::Receiver::<Reading>::open(&name, &Options::new().capacity(64))
        .expect("the same type and capacity");
    drop((tx, rx));
    names.assert_clean();
}
