//! Receives and verifies messages from a channel.
//!
//! ```text
//! consumer (--name NAME | --file PATH [--durability POLICY]) --count N [--capacity BYTES]
//!          [--mpsc --producers P | --broadcast [--lossy]] [--resume]
//! ```
//! Creates or opens the channel, receives until N messages have arrived, and
//! verifies every one: per-producer order with no gap and no duplicate, and every
//! payload byte. The last line printed is a JSON object
//! `{"received": n, "verified": bool, "lost": n, "lagged": n, "duplicated": n,
//!   "reason": "complete"|"disconnected"|"error", "per_producer": {"0": n, ...}}`.
//! `lost` counts the messages missing from the sequence that nobody reported
//! (a verification failure); `lagged` the ones the channel said were missed
//! (`Error::Lagged`, lossy subscribers only: 0 otherwise), which are not a
//! failure.
//!
//! With `--broadcast` the consumer is a subscriber of a broadcast channel (it
//! joins at the next message sent). Lossless by default: the publisher waits
//! for it. With `--lossy` the publisher never waits for it: when it is lapped
//! it is told how many messages it missed (`lagged`), and the sequence must
//! go on exactly that many further; N is then reached when received plus
//! lagged messages make N. `--lossy` needs `--broadcast`.
//!
//! With `--resume` the consumer takes over a named channel mid-stream (after
//! another consumer closed or died): the first message of each producer may
//! carry any sequence number, and order, gaps and duplicates are verified from
//! there on. The JSON line then also has `"first_seq": {"<producer id>": n, ...}`,
//! and `--count N` means "until the message with sequence number N-1 has
//! arrived from each of the P expected producers" (rather than "N messages").
//!
//! Exit status: 0 when the count is reached and all verified; 2 when the expected
//! producers (`--producers`, default 1) have come and gone first and everything
//! received verified; 1 on a verification failure
//! or any channel error (a foreign, truncated or damaged segment included), or
//! `--lossy` without `--broadcast`, with a message on stderr.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use shmq::{Error, Options, Receiver, RingKind, broadcast};
use shmq_testkit::{ChannelArgs, msg};

#[derive(Parser, Debug)]
#[command(about = "Receive and verify messages from a shmq channel")]
struct Args {
    #[command(flatten)]
    channel: ChannelArgs,
    /// Messages to receive.
    #[arg(long)]
    count: u64,
    /// The end: once this many producer attachments have happened, none is
    /// attached any more, and everything committed has been received
    /// (`Receiver::expect_producers`). Until then the consumer waits, asleep,
    /// for producers to come (a named channel is a queue).
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Take over mid-stream: accept any sequence number as a producer's first,
    /// report it as `first_seq`, and read `--count N` as "until sequence number
    /// N-1 of every expected producer".
    #[arg(long)]
    resume: bool,
    /// A lossy broadcast subscriber (with `--broadcast`): never waited for,
    /// told how many messages it missed when lapped.
    #[arg(long)]
    lossy: bool,
}

#[derive(Default)]
struct Tally {
    received: u64,
    lost: u64,
    /// Messages the channel said this subscriber missed (`Error::Lagged`).
    lagged: u64,
    /// Of `lagged`, those told of since the last message: the next message's
    /// sequence number must be this much further on.
    lag_pending: u64,
    duplicated: u64,
    next: BTreeMap<u32, u64>,
    per_producer: BTreeMap<u32, u64>,
    /// With `--resume`: each producer's first sequence number.
    first_seq: BTreeMap<u32, u64>,
    failure: Option<String>,
}

impl Tally {
    /// The channel said `n` messages were missed before the next one.
    fn lag(&mut self, n: u64) {
        self.lagged += n;
        self.lag_pending += n;
    }

    fn take(&mut self, buf: &[u8], resume: bool) {
        self.received += 1;
        let skipped = std::mem::take(&mut self.lag_pending);
        match msg::check(buf) {
            Ok(h) => {
                let mut first = false;
                let next = self.next.entry(h.producer).or_insert_with(|| {
                    first = true;
                    if resume {
                        self.first_seq.insert(h.producer, h.seq);
                        h.seq
                    } else {
                        0
                    }
                });
                // A reported lag moves the expected sequence number on (when
                // resuming, a producer's first message may be anywhere anyway).
                if !(resume && first) {
                    if h.seq >= *next && h.seq < *next + skipped {
                        self.failure.get_or_insert(format!(
                            "told of {skipped} missed messages before message {} of \
                             producer {}, but only {} were missing",
                            h.seq,
                            h.producer,
                            h.seq - *next
                        ));
                        *next = h.seq;
                    } else if h.seq >= *next {
                        *next += skipped;
                    }
                }
                if h.seq < *next {
                    self.duplicated += 1;
                    self.failure.get_or_insert(format!(
                        "duplicate or reordered message {} of producer {}",
                        h.seq, h.producer
                    ));
                } else {
                    if h.seq > *next {
                        self.lost += h.seq - *next;
                        self.failure.get_or_insert(format!(
                            "lost messages {}..{} of producer {}",
                            *next, h.seq, h.producer
                        ));
                    }
                    *next = h.seq + 1;
                }
                *self.per_producer.entry(h.producer).or_insert(0) += 1;
            }
            Err(e) => {
                self.failure.get_or_insert(e);
            }
        }
    }

    /// Whether the count is reached: `count` messages received or reported
    /// missed, or with `--resume` sequence number `count - 1` from each of
    /// `producers` producers.
    fn done(&self, a: &Args) -> bool {
        if a.resume {
            let through = self.next.values().filter(|&&n| n >= a.count).count();
            through >= a.producers as usize
        } else {
            self.received + self.lagged >= a.count
        }
    }
}

/// Receives into `tally` until `count`; returns how it ended.
fn run(a: &Args, tally: &mut Tally) -> shmq::Result<&'static str> {
    let mut opts = a.channel.options(Options::new());
    if a.lossy {
        opts = opts.subscribe(broadcast::Mode::Lossy);
    }
    if a.channel.mpsc {
        receive_all(open_at::<shmq::Mpsc>(&a.channel, &opts)?, a, tally)
    } else if a.channel.broadcast {
        receive_all(open_at::<shmq::Broadcast>(&a.channel, &opts)?, a, tally)
    } else {
        receive_all(open_at::<shmq::Spsc>(&a.channel, &opts)?, a, tally)
    }
}

fn receive_all<K: RingKind>(
    mut rx: Receiver<K>,
    a: &Args,
    tally: &mut Tally,
) -> shmq::Result<&'static str> {
    rx.expect_producers(a.producers)?;
    let mut buf = Vec::new();
    while !tally.done(a) {
        match rx.recv_into(&mut buf) {
            Ok(()) => tally.take(&buf, a.resume),
            Err(Error::Lagged(n)) => tally.lag(n),
            Err(Error::Disconnected(_)) => return Ok("disconnected"),
            Err(e) => return Err(e),
        }
    }
    Ok("complete")
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.lossy && !a.channel.broadcast {
        eprintln!(
            "consumer: --lossy needs --broadcast (only a broadcast subscriber can be lossy; \
             an SPSC or MPSC consumer receives every message)"
        );
        return ExitCode::from(1);
    }
    let mut tally = Tally::default();
    let (reason, error) = match run(&a, &mut tally) {
        Ok(r) => (r, None),
        Err(e) => ("error", Some(e)),
    };
    let verified = tally.failure.is_none() && error.is_none();
    let per_producer: serde_json::Map<String, serde_json::Value> = tally
        .per_producer
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    let mut line = serde_json::json!({
        "received": tally.received,
        "verified": verified,
        "lost": tally.lost,
        "lagged": tally.lagged,
        "duplicated": tally.duplicated,
        "reason": reason,
        "per_producer": per_producer,
    });
    if a.resume {
        let first_seq: serde_json::Map<String, serde_json::Value> = tally
            .first_seq
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        line["first_seq"] = first_seq.into();
    }
    println!("{line}");
    if let Some(e) = &error {
        eprintln!("consumer: {e}");
    }
    if let Some(f) = &tally.failure {
        eprintln!("consumer: verification failed: {f}");
    }
    match (verified, reason) {
        (true, "complete") => ExitCode::SUCCESS,
        (true, "disconnected") => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// The channel of `a`, created or opened as its receiver.
fn open_at<K: RingKind>(a: &ChannelArgs, opts: &Options) -> shmq::Result<Receiver<K>> {
    a.create_or_open(
        opts,
        Receiver::<K>::create_or_open_file,
        Receiver::<K>::create_or_open,
    )
}
