//! One end of a typed channel whose message type this program defines itself:
//! the other end, built separately (`tests/identity.rs`), has its own
//! definition under the same declared name.
//!
//! ```text
//! typed_peer --name NAME --role send|recv --count N [--mpsc] [--create]
//!            [--as declared|v2|wide|undeclared|array]
//! ```
//! `--as` picks the message type this end uses: `declared` (the default) is
//! `Reading` declared as `"shmq.example.Reading"` v1, 16 bytes; `v2` the same
//! layout declared as v2; `wide` a 24-byte type under the v1 name; `undeclared`
//! `Reading` without its declaration (`Typed<Reading>`, known by its Rust path
//! `typed_peer::Reading`); `array` the undeclared `[u64; 2]`, whose Rust path
//! every program shares. `send` sends N values (`seq` 0..N), `recv` receives
//! N and checks each. The last line printed is a JSON object:
//! `{"ok": true, "count": n}`, or `{"ok": false, "error": "<the error in words>"}`
//! (exit status 1).

use std::process::ExitCode;

use clap::Parser;
use shmq::bytemuck::{Pod, Zeroable};
use shmq::{Declared, Format, Message, Mpsc, Options, Receiver, RingKind, Sender, Spsc, Typed};

#[derive(Parser, Debug)]
#[command(about = "One end of a typed shmq channel with its own message type")]
struct Args {
    /// Channel name (e.g. /demo).
    #[arg(long)]
    name: String,
    /// `send` or `recv`.
    #[arg(long)]
    role: String,
    /// Messages to send or receive.
    #[arg(long)]
    count: u64,
    /// Use an MPSC channel.
    #[arg(long)]
    mpsc: bool,
    /// Create the channel (otherwise open it).
    #[arg(long)]
    create: bool,
    /// The message type this end uses.
    #[arg(long = "as", default_value = "declared")]
    as_type: String,
}

/// A value with a check derived from its fields, the same in every program.
trait Sample: Pod {
    fn make(seq: u64) -> Self;
    fn seq(&self) -> u64;
    fn ok(&self) -> bool;
}

fn check_of(seq: u64, value: u32) -> u32 {
    (seq as u32).wrapping_mul(2_654_435_761) ^ value
}

/// Defines this program's message type `$t`: `seq`, `value` and `check`, then
/// any `$extra` `u64` fields (set to `seq`), declared under the one name
/// `"shmq.example.Reading"` with version `$version`, and its [`Sample`] values.
macro_rules! reading {
    ($(#[$doc:meta])* $t:ident $(+ $extra:ident)*, version $version:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
        #[bytemuck(crate = "shmq::bytemuck")]
        #[repr(C)]
        struct $t {
            seq: u64,
            value: u32,
            check: u32,
            $($extra: u64,)*
        }

        impl Message for $t {
            const NAME: &'static str = "shmq.example.Reading";
            const VERSION: u32 = $version;
        }

        impl Sample for $t {
            fn make(seq: u64) -> Self {
                let value = (seq * 7) as u32;
                Self { seq, value, check: check_of(seq, value) $(, $extra: seq)* }
            }
            fn seq(&self) -> u64 {
                self.seq
            }
            fn ok(&self) -> bool {
                self.check == check_of(self.seq, self.value)
            }
        }
    };
}

reading!(
    /// This program's own definition of the message type.
    Reading, version 1
);
reading!(
    /// The same layout, declared as the next version.
    ReadingV2, version 2
);
reading!(
    /// Another layout under the v1 name (a field added without a version bump).
    ReadingWide + extra, version 1
);

impl Sample for [u64; 2] {
    fn make(seq: u64) -> Self {
        [seq, !seq]
    }
    fn seq(&self) -> u64 {
        self[0]
    }
    fn ok(&self) -> bool {
        self[1] == !self[0]
    }
}

/// Sends or receives `count` values of `F`'s message type `T`.
fn run<K: RingKind, F, T>(a: &Args) -> shmq::Result<u64>
where
    F: shmq::typed::TypedFormat<Item = T> + Format,
    T: Sample,
{
    let o = Options::new().capacity(64);
    if a.role == "send" {
        let mut tx = if a.create {
            Sender::<K, F>::create(&a.name, &o)?
        } else {
            Sender::<K, F>::open(&a.name, &o)?
        };
        for seq in 0..a.count {
            tx.send(&T::make(seq))?;
        }
    } else {
        let mut rx = if a.create {
            Receiver::<K, F>::create(&a.name, &o)?
        } else {
            Receiver::<K, F>::open(&a.name, &o)?
        };
        for seq in 0..a.count {
            let v = rx.recv()?;
            assert!(v.ok() && v.seq() == seq, "message {seq} arrived damaged");
        }
    }
    Ok(a.count)
}

fn by_type<K: RingKind>(a: &Args) -> shmq::Result<u64> {
    match a.as_type.as_str() {
        "declared" => run::<K, Declared<Reading>, _>(a),
        "v2" => run::<K, Declared<ReadingV2>, _>(a),
        "wide" => run::<K, Declared<ReadingWide>, _>(a),
        "undeclared" => run::<K, Typed<Reading>, _>(a),
        "array" => run::<K, Typed<[u64; 2]>, _>(a),
        other => panic!("unknown --as {other}"),
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    let r = if a.mpsc {
        by_type::<Mpsc>(&a)
    } else {
        by_type::<Spsc>(&a)
    };
    match r {
        Ok(n) => {
            println!("{}", serde_json::json!({ "ok": true, "count": n }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({ "ok": false, "error": e.to_string() })
            );
            ExitCode::FAILURE
        }
    }
}
