//! Sends N verifiable messages into a channel.
//!
//! ```text
//! producer (--name NAME | --file PATH [--durability POLICY]) --count N --size BYTES [--capacity BYTES]
//!          [--mpsc --id K | --broadcast] [--exit-on-disconnect]
//! ```
//! Creates or opens the channel (either program may start first), sends N
//! messages of BYTES bytes (at least 16), each carrying its sequence number, the
//! producer id and a payload derived from both. The last line printed is a JSON
//! object `{"sent": N, "msgs_per_sec": X}`. Exit status: 0 on success, 2 if the
//! consumer went away and `--exit-on-disconnect` was given (without it, sending
//! waits for the next consumer), 1 on any other error (described on stderr).
//!
//! With `--broadcast` the producer is a broadcast channel's publisher: every
//! subscriber attached when a message is sent receives it, and the publisher
//! waits only for its lossless subscribers' room (never for a subscriber to
//! come: start the consumers first to have them receive everything).
//! `--exit-on-disconnect` does not apply to it (a publisher is never
//! disconnected) and is refused.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use shmq::{Error, Lifecycle, Options, RingKind, Sender};
use shmq_testkit::{ChannelArgs, msg};

#[derive(Parser, Debug)]
#[command(about = "Send N verifiable messages into a shmq channel")]
struct Args {
    #[command(flatten)]
    channel: ChannelArgs,
    /// Messages to send.
    #[arg(long)]
    count: u64,
    /// Bytes per message (at least 16).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Producer id carried in every message.
    #[arg(long, default_value_t = 0)]
    id: u32,
    /// Exit (status 2) as soon as the consumer is closed or dead. Without it the
    /// channel is a queue: sending goes on through consumer restarts, waiting
    /// only for room. Not with `--broadcast`.
    #[arg(long)]
    exit_on_disconnect: bool,
}

fn run(a: &Args) -> shmq::Result<f64> {
    let mut opts = Options::new();
    if a.exit_on_disconnect {
        opts = opts.lifecycle(Lifecycle::Session);
    }
    let opts = a.channel.options(opts);
    if a.channel.mpsc {
        send_all(open_at::<shmq::Mpsc>(&a.channel, &opts)?, a)
    } else if a.channel.broadcast {
        send_all(open_at::<shmq::Broadcast>(&a.channel, &opts)?, a)
    } else {
        send_all(open_at::<shmq::Spsc>(&a.channel, &opts)?, a)
    }
}

/// Sends `a.count` verifiable messages, written in place; returns the rate.
fn send_all<K: RingKind>(mut tx: Sender<K>, a: &Args) -> shmq::Result<f64> {
    let started = Instant::now();
    for seq in 0..a.count {
        let mut slot = tx.reserve(a.size)?;
        msg::fill(&mut slot, seq, a.id);
        slot.commit();
    }
    Ok(a.count as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.size < msg::MIN_SIZE {
        eprintln!("producer: --size must be at least {} bytes", msg::MIN_SIZE);
        return ExitCode::from(1);
    }
    if a.channel.broadcast && a.exit_on_disconnect {
        eprintln!(
            "producer: --exit-on-disconnect does not apply with --broadcast \
             (a publisher is never disconnected: subscribers come and go)"
        );
        return ExitCode::from(1);
    }
    match run(&a) {
        Ok(rate) => {
            println!(
                "{}",
                serde_json::json!({ "sent": a.count, "msgs_per_sec": rate.round() })
            );
            ExitCode::SUCCESS
        }
        Err(Error::Disconnected(why)) => {
            eprintln!("producer: the consumer went away ({why:?})");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("producer: {e}");
            ExitCode::from(1)
        }
    }
}

/// The channel of `a`, created or opened as its sender.
fn open_at<K: RingKind>(a: &ChannelArgs, opts: &Options) -> shmq::Result<Sender<K>> {
    a.create_or_open(
        opts,
        Sender::<K>::create_or_open_file,
        Sender::<K>::create_or_open,
    )
}
