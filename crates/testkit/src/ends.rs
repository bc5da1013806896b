//! SPSC and MPSC byte endpoints behind one type, for tests that run the same
//! scenario over both kinds.

use std::time::Duration;

use shmq::{Error, Options, Result, mpsc, spsc};

/// Which kind of channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `shmq::spsc`.
    Spsc,
    /// `shmq::mpsc`.
    Mpsc,
}

impl Kind {
    /// `spsc` or `mpsc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spsc => "spsc",
            Kind::Mpsc => "mpsc",
        }
    }

    /// From [`Kind::as_str`].
    pub fn parse(s: &str) -> Kind {
        match s {
            "spsc" => Kind::Spsc,
            "mpsc" => Kind::Mpsc,
            other => panic!("unknown channel kind {other}"),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Both kinds, each with a fresh name of `names` tagged `tag`: for a scenario
/// run over SPSC and MPSC.
pub fn each_kind(names: &crate::Names, tag: &str) -> [(Kind, String); 2] {
    [Kind::Spsc, Kind::Mpsc].map(|k| (k, names.name(tag)))
}

/// How to reach a named channel.
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

    /// The one of `create`, `open` and `create_or_open` this is.
    fn pick<T>(self, create: Reach<T>, open: Reach<T>, create_or_open: Reach<T>) -> Reach<T> {
        match self {
            How::Create => create,
            How::Open => open,
            How::CreateOrOpen => create_or_open,
        }
    }
}

/// An endpoint's `create`, `open` or `create_or_open`.
type Reach<T> = fn(&str, &Options) -> Result<T>;

/// `named` of [`Tx`] (`$ty`: `Sender`) or [`Rx`] (`Receiver`): reaches a named
/// channel of either kind.
macro_rules! named {
    ($side:ident, $ty:ident) => {
        /// Reaches the named channel.
        pub fn named(kind: Kind, how: How, name: &str, o: &Options) -> Result<$side> {
            let (s, m) = (
                how.pick(
                    spsc::$ty::create,
                    spsc::$ty::open,
                    spsc::$ty::create_or_open,
                ),
                how.pick(
                    mpsc::$ty::create,
                    mpsc::$ty::open,
                    mpsc::$ty::create_or_open,
                ),
            );
            Ok(match kind {
                Kind::Spsc => $side::S(s(name, o)?),
                Kind::Mpsc => $side::M(m(name, o)?),
            })
        }
    };
}

/// A sender of either kind.
pub enum Tx {
    /// SPSC.
    S(spsc::Sender),
    /// MPSC.
    M(mpsc::Sender),
}

/// A receiver of either kind.
pub enum Rx {
    /// SPSC.
    S(spsc::Receiver),
    /// MPSC.
    M(mpsc::Receiver),
}

impl Tx {
    named!(Tx, Sender);

    /// `send`.
    pub fn send(&mut self, m: &[u8]) -> Result<()> {
        match self {
            Tx::S(t) => t.send(m),
            Tx::M(t) => t.send(m),
        }
    }

    /// `try_send`.
    pub fn try_send(&mut self, m: &[u8]) -> Result<()> {
        match self {
            Tx::S(t) => t.try_send(m),
            Tx::M(t) => t.try_send(m),
        }
    }

    /// `send_timeout`.
    pub fn send_timeout(&mut self, m: &[u8], d: Duration) -> Result<()> {
        match self {
            Tx::S(t) => t.send_timeout(m, d),
            Tx::M(t) => t.send_timeout(m, d),
        }
    }

    /// Writes `m` in place through the zero-copy guard (`reserve`, copy, `commit`).
    pub fn reserve_commit(&mut self, m: &[u8]) -> Result<()> {
        match self {
            Tx::S(t) => {
                let mut g = t.reserve(m.len())?;
                g.copy_from_slice(m);
                g.commit();
            }
            Tx::M(t) => {
                let mut g = t.reserve(m.len())?;
                g.copy_from_slice(m);
                g.commit();
            }
        }
        Ok(())
    }

    /// The largest message.
    pub fn max_message_len(&self) -> usize {
        match self {
            Tx::S(t) => t.max_message_len(),
            Tx::M(t) => t.max_message_len(),
        }
    }

    /// A duplicate of the channel's descriptor.
    pub fn export_fd(&self) -> Result<std::os::fd::OwnedFd> {
        match self {
            Tx::S(t) => t.export_fd(),
            Tx::M(t) => t.export_fd(),
        }
    }
}

impl Rx {
    named!(Rx, Receiver);

    /// `recv_into`.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        match self {
            Rx::S(r) => r.recv_into(buf),
            Rx::M(r) => r.recv_into(buf),
        }
    }

    /// `recv_into_timeout`.
    pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, d: Duration) -> Result<()> {
        match self {
            Rx::S(r) => r.recv_into_timeout(buf, d),
            Rx::M(r) => r.recv_into_timeout(buf, d),
        }
    }

    /// `try_recv_into`.
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        match self {
            Rx::S(r) => r.try_recv_into(buf),
            Rx::M(r) => r.try_recv_into(buf),
        }
    }

    /// MPSC: dead producers' claims reclaimed so far (0 for SPSC).
    pub fn reclaimed(&mut self) -> u64 {
        match self {
            Rx::S(_) => 0,
            Rx::M(r) => r.reclaimed().unwrap_or(0),
        }
    }

    /// MPSC: report `Disconnected` only after `n` producer attachments.
    pub fn expect_producers(&mut self, n: u32) {
        if let Rx::M(r) = self {
            r.expect_producers(n).expect("expect_producers");
        }
    }

    /// A duplicate of the channel's descriptor.
    pub fn export_fd(&self) -> Result<std::os::fd::OwnedFd> {
        match self {
            Rx::S(r) => r.export_fd(),
            Rx::M(r) => r.export_fd(),
        }
    }
}

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
