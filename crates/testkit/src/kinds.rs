//! Running one scenario over both ring kinds. The facade's endpoints are
//! generic (`shmq::Sender<K>`, `shmq::Receiver<K>` over `K: RingKind`), so a
//! scenario is a generic function `fn scenario<K: KindExt>(...)` that a test
//! calls once per kind (`scenario::<Spsc>(..); scenario::<Mpsc>(..)`), and a
//! role that gets the kind as a parameter picks it once, at its top
//! ([`by_kind!`](crate::by_kind)). [`KindExt`] adds the MPSC-only receiver
//! calls the scenarios make (no-ops for SPSC); [`How`] reaches a named channel
//! by `create`, `open` or `create_or_open`. The helpers below check how a
//! stream ended.

use std::path::Path;

use shmq::{Error, Options, Receiver, Result, Sender};

pub use shmq::{Mpsc, RingKind, Spsc};

/// A ring kind with the MPSC-only calls the scenarios make, so that they can
/// be written once for both kinds.
pub trait KindExt: RingKind {
    /// Whether the ring has many producers (MPSC).
    const MPSC: bool;

    /// MPSC: `rx` reports `Disconnected` only after `n` producer attachments
    /// (nothing for SPSC).
    fn expect_producers(rx: &mut Receiver<Self>, n: u32);

    /// MPSC: dead producers' claims `rx` has reclaimed so far (0 for SPSC).
    fn reclaimed(rx: &mut Receiver<Self>) -> u64;
}

impl KindExt for Spsc {
    const MPSC: bool = false;

    fn expect_producers(_rx: &mut Receiver<Spsc>, _n: u32) {}

    fn reclaimed(_rx: &mut Receiver<Spsc>) -> u64 {
        0
    }
}

impl KindExt for Mpsc {
    const MPSC: bool = true;

    fn expect_producers(rx: &mut Receiver<Mpsc>, n: u32) {
        rx.expect_producers(n).expect("expect_producers");
    }

    fn reclaimed(rx: &mut Receiver<Mpsc>) -> u64 {
        rx.reclaimed().unwrap_or(0)
    }
}

/// Calls the generic function `$f::<K>($args)` with `K` the ring kind named by
/// `$kind` (a `&str`, `spsc` or `mpsc`, as a role parameter gives it): the one
/// place a role turns its KIND parameter into a type.
#[macro_export]
macro_rules! by_kind {
    ($kind:expr, $f:ident($($a:expr),* $(,)?)) => {
        match $kind {
            "spsc" => $f::<$crate::kinds::Spsc>($($a),*),
            "mpsc" => $f::<$crate::kinds::Mpsc>($($a),*),
            other => panic!("unknown channel kind {other}"),
        }
    };
}

/// Defines the `#[test]` that runs scenarios over both ring kinds: a
/// [`Watchdog`](crate::Watchdog) labelled `$label` and the test's
/// [`Names`](crate::Names), each scenario `$scenario::<K>(&wd, names)` for
/// SPSC then MPSC, in the order listed, then
/// [`Names::assert_clean`](crate::Names::assert_clean). A scenario is given
/// the test's `&Names`, or with a tag (`scenario("tag")`) a fresh name
/// `&names.name("tag")` for each kind.
///
/// ```ignore
/// shmq_testkit::test_both_kinds! {
///     /// What the test shows.
///     fn a_test_name() under "label": first_scenario, second_scenario("tag");
/// }
/// ```
#[macro_export]
macro_rules! test_both_kinds {
    (
        $(#[$meta:meta])*
        fn $test:ident() under $label:literal: $($scenario:ident $(($tag:literal))?),+ $(,)?;
    ) => {
        $(#[$meta])*
        #[test]
        fn $test() {
            let wd = $crate::Watchdog::new($label);
            let names = $crate::Names::new();
            $(
                $scenario::<$crate::kinds::Spsc>(&wd, $crate::test_both_kinds!(@names names $($tag)?));
                $scenario::<$crate::kinds::Mpsc>(&wd, $crate::test_both_kinds!(@names names $($tag)?));
            )+
            names.assert_clean();
        }
    };
    (@names $names:ident) => {
        &$names
    };
    (@names $names:ident $tag:literal) => {
        &$names.name($tag)
    };
}

/// Defines two `#[test]`s, `$spsc` and `$mpsc`, that run the scenario
/// `$scenario::<K>($args)` with `K` SPSC and MPSC respectively: one test per
/// kind, for scenarios that run apart (each under its own time limit and
/// name). `$attrs` (docs, `cfg`) go on both; one invocation may define
/// several such pairs.
///
/// ```ignore
/// shmq_testkit::test_each_kind! {
///     fn a_test_spsc, a_test_mpsc = scenario(64);
/// }
/// ```
#[macro_export]
macro_rules! test_each_kind {
    ($(
        $(#[$meta:meta])*
        fn $spsc:ident, $mpsc:ident = $scenario:ident($($arg:expr),* $(,)?);
    )+) => {$(
        $(#[$meta])*
        #[test]
        fn $spsc() {
            $scenario::<$crate::kinds::Spsc>($($arg),*);
        }

        $(#[$meta])*
        #[test]
        fn $mpsc() {
            $scenario::<$crate::kinds::Mpsc>($($arg),*);
        }
    )+};
}

/// How to reach a named channel (or a file channel: [`How::file_sender`],
/// [`How::file_receiver`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `create`.
    Create,
    /// `open`.
    Open,
    /// `create_or_open`.
    CreateOrOpen,
}

impl How {
    /// From `create`, `open` or `create_or_open`.
    pub fn parse(s: &str) -> How {
        match s {
            "create" => How::Create,
            "open" => How::Open,
            "create_or_open" => How::CreateOrOpen,
            other => panic!("unknown HOW {other}"),
        }
    }

    /// Reaches the named channel of kind `K` as its sender.
    pub fn sender<K: RingKind>(self, name: &str, o: &Options) -> Result<Sender<K>> {
        self.pick(Sender::create, Sender::open, Sender::create_or_open)(name, o)
    }

    /// Reaches the named channel of kind `K` as its receiver.
    pub fn receiver<K: RingKind>(self, name: &str, o: &Options) -> Result<Receiver<K>> {
        self.pick(Receiver::create, Receiver::open, Receiver::create_or_open)(name, o)
    }

    /// Reaches the file channel at `path` of kind `K` as its sender
    /// (`create_file`, `open_file` or `create_or_open_file`).
    pub fn file_sender<K: RingKind>(self, path: &Path, o: &Options) -> Result<Sender<K>> {
        self.pick(
            Sender::create_file,
            Sender::open_file,
            Sender::create_or_open_file,
        )(path, o)
    }

    /// Reaches the file channel at `path` of kind `K` as its receiver.
    pub fn file_receiver<K: RingKind>(self, path: &Path, o: &Options) -> Result<Receiver<K>> {
        self.pick(
            Receiver::create_file,
            Receiver::open_file,
            Receiver::create_or_open_file,
        )(path, o)
    }

    /// The one of `create`, `open` and `create_or_open` this is.
    fn pick<A, T>(
        self,
        create: Reach<A, T>,
        open: Reach<A, T>,
        create_or_open: Reach<A, T>,
    ) -> Reach<A, T> {
        match self {
            How::Create => create,
            How::Open => open,
            How::CreateOrOpen => create_or_open,
        }
    }
}

/// An endpoint's `create`, `open` or `create_or_open` (of a named channel,
/// `A` = `&str`), or their `_file` forms (`A` = `&Path`).
type Reach<A, T> = fn(A, &Options) -> Result<T>;

/// Asserts that `end`, the error that ended a stream, is `Disconnected(Closed)`:
/// the other side closed, it did not die.
pub fn assert_closed(end: &Error) {
    assert!(
        matches!(end, Error::Disconnected(shmq::Disconnect::Closed)),
        "{end:?}"
    );
}

/// Asserts that `r` is `Err(Disconnected(Died))`: the other side died
/// (`context` says when, for the message).
pub fn assert_died<T: std::fmt::Debug>(r: &Result<T>, context: &str) {
    assert!(
        matches!(r, Err(Error::Disconnected(shmq::Disconnect::Died))),
        "{context}: {r:?}"
    );
}

/// The disconnect a peer's `ending` must cause: `Closed` for `close`,
/// `Died` for any other (a kill).
pub fn disconnect_after(ending: &str) -> shmq::Disconnect {
    if ending == "close" {
        shmq::Disconnect::Closed
    } else {
        shmq::Disconnect::Died
    }
}

/// Asserts that `end`, the error that ended a stream, is the disconnect the
/// peer's `ending` must cause ([`disconnect_after`]); `context` is for the
/// message.
pub fn assert_ended_by(end: &Error, ending: &str, context: &str) {
    let want = disconnect_after(ending);
    assert!(
        matches!(end, Error::Disconnected(d) if *d == want),
        "{context}: ended with {end:?}, expected {want:?}"
    );
}

/// `Closed`, `Died`, or the error's debug form: for events and messages.
pub fn why(e: &Error) -> String {
    match e {
        Error::Disconnected(shmq::Disconnect::Closed) => "Closed".into(),
        Error::Disconnected(shmq::Disconnect::Died) => "Died".into(),
        Error::Corrupted(_) => "Corrupted".into(),
        Error::Full => "Full".into(),
        Error::Empty => "Empty".into(),
        Error::Timeout => "Timeout".into(),
        other => format!("{other:?}"),
    }
}
