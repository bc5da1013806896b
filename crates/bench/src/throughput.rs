//! One-way throughput: `examples/throughput`.
//!
//! Producer processes (forked, pinned to one CPU) send a fixed number of
//! fixed-size messages as fast as they can; this process (pinned to another CPU)
//! receives and checks them. The clock starts when the producers are released
//! (all of them wait on one "start gun" pipe) and stops when the last message has
//! been checked. Every message carries its producer and sequence number at the
//! front and the sequence number again at the end, and the receiver checks all
//! three; it also reads every byte of every message (an XOR of its words), so
//! that a transport that hands the bytes over in place (shmq) pays for bringing
//! them to the receiver's CPU as the kernel transports do with their copy.
//!
//! Transports: `floor-stream` (records in a bare ring in shared memory, no
//! protocol: the ceiling; see below), `shmq-spsc` (`try_send_batch`,
//! `recv_batch`, with `--linger` if given), `shmq-spsc-typed` (a 64-byte `Pod` through a typed SPSC
//! channel, 64 B only), `shmq-mpsc` with 1, 2, 4 producer processes (the same
//! calls), `pipe` and `uds-stream` (one `write` per batch; the receiver reads
//! through a 256 KiB buffer), and `memcpy` (one thread copying each message into
//! a ring-sized buffer: the copy limit). With the cargo feature `peers`, also
//! `ringfire` and `iceoryx2` (see `peers`), in the same rounds.
//!
//! `floor-stream`: each record's first word is its stamp (sequence number + 1),
//! its last word the stamp again; the producer writes the record in place, then
//! stores the stamp (`Release`); the consumer waits for the stamp of the last
//! record of its next batch (`Acquire`), then checks each record's stamp and
//! trailer and reads all its words in place. The producer does not lap the
//! consumer: the consumer publishes its position every eighth of the ring
//! (`--capacity` bytes, as the shmq channels), and the producer waits for room
//! when it reaches the end of what it last saw. Records of a multiple of 8
//! bytes.
//!
//! Before each measurement a placement probe (see [`crate::placement`]) labels
//! it `close` or `far`; a row is reported per placement it ran in, and ratios are
//! taken only between rows of the same placement. The default output is the
//! results and their ratios to the floors (and the peers); `--goals` adds the
//! project's internal goals.
//! Every producer hands over the same number of messages per call (`--batch`,
//! default 64; `--batch 1` sends message by message), so that no transport is
//! timed with more calls per message than another.
//!
//! Fan-out (asked for by name or with `--fanout`, not in the default set):
//! `shmq-broadcast-N`, one broadcast channel to N lossless subscriber
//! processes, and `shmq-broadcast-lossy-N`, the same with lossy subscribers
//! (its `drops`: the messages they were told they missed, summed), beside
//! `spsc-fanout-N`, N SPSC channels fed in turn by one producer, for each N
//! of `--subscribers` (default 1, 2, 4, 8), interleaved (broadcast, lossy,
//! then SPSC at each N); the rate is the producer's (distinct messages per
//! second) until every consumer has checked every message it received, and
//! the table adds each row's ratio to its own 1-consumer row and the
//! broadcast rows' ratio to `spsc-fanout` at the same N (see `fanout`).
//!
//! Durable channels (asked for by name, not in the default set): `shmq-shm` (a
//! named SPSC channel in `/dev/shm`, the baseline), and SPSC channels on a file
//! in `--file-dir` (default: the temporary directory) under each durability
//! policy: `shmq-file-none`, `shmq-file-periodic` (every 10 ms or 1,000
//! commits) and `shmq-file-every` (every commit: one `msync(MS_SYNC)` per
//! `try_send_batch` call on the producer's side and per `recv_batch` call
//! on the receiver's; its rows move at most [`EVERY_COMMIT_MAX_MSGS`] messages).

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use shmq::broadcast::Mode;
use shmq::{Options, Receiver, RingKind, Sender, mpsc, spsc};

use crate::cli::Rows;
use crate::placement::{self, Placement};
use crate::process;
use crate::stats::ratio;
use crate::table;

mod fanout;
mod floor;
#[cfg(feature = "peers")]
mod peers;
mod typed;

/// Result of the harness's fallible steps.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Smallest message: producer, sequence number and trailer.
pub const MIN_SIZE: usize = 24;
/// Largest message.
pub const MAX_SIZE: usize = 1 << 22;

/// Flags of the throughput comparison.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Message sizes in bytes (a comma-separated list; at least 24).
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 4096, 65536])]
    pub size: Vec<usize>,
    /// Transports to run (a comma-separated list; default: all). Known:
    /// floor-stream, shmq-spsc, shmq-spsc-typed, shmq-mpsc, pipe, uds-stream,
    /// memcpy (and, with the feature `peers`, ringfire, iceoryx2).
    #[arg(long, value_delimiter = ',')]
    pub transport: Vec<String>,
    /// Producer processes for shmq-mpsc (a comma-separated list).
    #[arg(long, value_delimiter = ',', default_values_t = [1u16, 2, 4])]
    pub producers: Vec<u16>,
    /// The fan-out comparison: shmq-broadcast, shmq-broadcast-lossy and
    /// spsc-fanout (added to --transport; alone when it is not given).
    #[arg(long)]
    pub fanout: bool,
    /// Consumer processes of the fan-out rows (a comma-separated list).
    #[arg(long, value_delimiter = ',', default_values_t = [1u16, 2, 4, 8])]
    pub subscribers: Vec<u16>,
    /// Bytes to move per row (the message count is this over the size, capped by
    /// --max-msgs); ignored with --count.
    // 512 MiB until 2026-12-05: a 4 KiB shmq row then took 17 ms and varied
    // from 12 to 31 GB/s between runs; at 2 GiB it held 28-32 (close).
    #[arg(long, default_value_t = 2 << 30)]
    pub bytes: u64,
    /// Most messages per row.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_msgs: u64,
    /// Messages per row, whatever the size (overrides --bytes and --max-msgs).
    #[arg(long)]
    pub count: Option<u64>,
    /// Ring capacity of the shmq channels in bytes (a power of two; raised to hold
    /// at least 8 messages).
    #[arg(long, default_value_t = 1 << 20)]
    pub capacity: u64,
    /// Messages a producer hands over per call, for every transport alike
    /// (`try_send_batch` for shmq, one `write` for the kernel's): at most this
    /// many, and no more than 64 KiB of them. 1 sends message by message.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// The shmq receivers' linger in nanoseconds (`Options::linger`; 0, the
    /// default: none): each takes its messages with `recv_batch`, which then
    /// looks at the ring at most once per linger while messages keep coming.
    #[arg(long, default_value_t = 0)]
    pub linger: u64,
    /// One JSON object per row instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Do not pin the receiver and the producers to different CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Measure every row this many times, in interleaved rounds, and report the
    /// run with the median time (the machine's state drifts between runs).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Directory of the file channels of the `shmq-file-*` transports (default:
    /// the temporary directory); it should be on the disk to measure.
    #[arg(long)]
    pub file_dir: Option<std::path::PathBuf>,
    /// Goals and the placement probe.
    #[command(flatten)]
    pub report: placement::ReportArgs,
}

/// Most messages a `shmq-file-every` row moves (each call syncs to the disk).
pub const EVERY_COMMIT_MAX_MSGS: u64 = 20_000;

/// A way to move messages one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Records in a bare ring in shared memory, no protocol: the ceiling.
    FloorStream,
    /// An shmq SPSC channel, batch APIs on both sides.
    ShmqSpsc,
    /// A typed shmq SPSC channel of a 64-byte `Pod` (64 B only).
    ShmqSpscTyped,
    /// An shmq MPSC channel, one producer process per sender.
    ShmqMpsc,
    /// A pipe.
    Pipe,
    /// A UNIX stream socket pair.
    UdsStream,
    /// `memcpy` into a ring-sized buffer in one thread: the copy limit.
    Memcpy,
    /// A named SPSC channel in `/dev/shm`.
    ShmqShm,
    /// An SPSC channel on a file, durability none.
    ShmqFileNone,
    /// An SPSC channel on a file, synced every 10 ms or 1,000 commits.
    ShmqFilePeriodic,
    /// An SPSC channel on a file, synced at every commit.
    ShmqFileEvery,
    /// One shmq broadcast channel, one publisher process, N lossless
    /// subscriber processes.
    ShmqBroadcast,
    /// One shmq broadcast channel, one publisher process, N lossy subscriber
    /// processes: the publisher never waits for them (what "written once"
    /// costs the publisher when nobody can hold it back).
    ShmqBroadcastLossy,
    /// N shmq SPSC channels fed in turn by one producer process, one consumer
    /// process each.
    SpscFanout,
    /// A `ringfire` SPMC ring (lossless backpressure), one reader.
    #[cfg(feature = "peers")]
    Ringfire,
    /// An `iceoryx2` publish-subscribe service, one subscriber.
    #[cfg(feature = "peers")]
    Iceoryx2,
}

impl Flow {
    /// Every flow of the default build, in table order.
    pub const ALL: [Flow; 7] = [
        Flow::FloorStream,
        Flow::ShmqSpsc,
        Flow::ShmqSpscTyped,
        Flow::ShmqMpsc,
        Flow::Pipe,
        Flow::UdsStream,
        Flow::Memcpy,
    ];

    /// The durable-channel flows, run only when named.
    pub const FILES: [Flow; 4] = [
        Flow::ShmqShm,
        Flow::ShmqFileNone,
        Flow::ShmqFilePeriodic,
        Flow::ShmqFileEvery,
    ];

    /// The fan-out flows, run only when named (or with `--fanout`), at each
    /// consumer count of `--subscribers`.
    pub const FANOUT: [Flow; 3] = [
        Flow::ShmqBroadcast,
        Flow::ShmqBroadcastLossy,
        Flow::SpscFanout,
    ];

    /// Whether the flow is a fan-out flow (its rows are named
    /// `<name>-<consumers>`).
    pub fn is_fanout(self) -> bool {
        Flow::FANOUT.contains(&self)
    }

    /// Whether the flow carries messages of `size` bytes (the typed row and the
    /// peers' fixed slots have a few sizes only; the floor needs whole words).
    pub fn supports(self, size: usize) -> bool {
        match self {
            Flow::ShmqSpscTyped => size == typed::SIZE,
            Flow::FloorStream => size.is_multiple_of(8),
            #[cfg(feature = "peers")]
            Flow::Ringfire => peers::RINGFIRE_SIZES.contains(&size),
            _ => true,
        }
    }

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Flow::ShmqShm => "shmq-shm",
            Flow::ShmqFileNone => "shmq-file-none",
            Flow::ShmqFilePeriodic => "shmq-file-periodic",
            Flow::ShmqFileEvery => "shmq-file-every",
            Flow::ShmqBroadcast => "shmq-broadcast",
            Flow::ShmqBroadcastLossy => "shmq-broadcast-lossy",
            Flow::SpscFanout => "spsc-fanout",
            Flow::FloorStream => "floor-stream",
            Flow::ShmqSpsc => "shmq-spsc",
            Flow::ShmqSpscTyped => "shmq-spsc-typed",
            Flow::ShmqMpsc => "shmq-mpsc",
            Flow::Pipe => "pipe",
            Flow::UdsStream => "uds-stream",
            Flow::Memcpy => "memcpy",
            #[cfg(feature = "peers")]
            Flow::Ringfire => "ringfire",
            #[cfg(feature = "peers")]
            Flow::Iceoryx2 => "iceoryx2",
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Rows for Flow {
    const DEFAULT: &'static [Flow] = &Flow::ALL;
    const PEERS: &'static [Flow] = &[
        #[cfg(feature = "peers")]
        Flow::Ringfire,
        #[cfg(feature = "peers")]
        Flow::Iceoryx2,
    ];
    fn named_only() -> Vec<Flow> {
        Flow::FILES.iter().chain(&Flow::FANOUT).copied().collect()
    }
}

/// One measured flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The flow.
    pub flow: Flow,
    /// Message size in bytes.
    pub size: usize,
    /// Producer processes (1 for everything but `shmq-mpsc`).
    pub producers: u16,
    /// Consumer processes (1 for everything but the fan-out flows), each of
    /// which receives and checks every message.
    pub consumers: u16,
    /// Messages moved and checked.
    pub messages: u64,
    /// Seconds from the start gun to the last message checked.
    pub secs: f64,
    /// Where the two processes ran, by the probe before the measurement.
    pub placement: Placement,
    /// The probe's median bare spin round trip in ns (0: not probed).
    pub probe_ns: u64,
    /// Messages the transport dropped (counted by the receiver from gaps in the
    /// sequence numbers; only a transport that may drop, `iceoryx2`, has any
    /// without failing the row).
    pub drops: u64,
    /// Measurements of this row in this placement (the row is their median).
    pub runs: u32,
}

impl Row {
    /// Messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        ratio(self.messages as f64, self.secs).unwrap_or(0.0)
    }

    /// Payload gigabytes (10^9 bytes) per second.
    pub fn gbytes_per_sec(&self) -> f64 {
        self.msgs_per_sec() * self.size as f64 / 1e9
    }

    /// The row's name: the flow's, and for a fan-out flow its consumer
    /// count (`shmq-broadcast-4`).
    pub fn label(&self) -> String {
        if self.flow.is_fanout() {
            format!("{}-{}", self.flow.name(), self.consumers)
        } else {
            self.flow.name().to_owned()
        }
    }

    /// The row as one JSON object with exactly the keys `transport` (the
    /// [`Row::label`]), `size`, `producers`, `msgs_per_sec`, `gbytes_per_sec`,
    /// `placement` (`close`, `far` or `unprobed`), `probe_ns`, `drops`, `runs`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "transport": self.label(),
            "size": self.size,
            "producers": self.producers,
            "msgs_per_sec": self.msgs_per_sec().round(),
            "gbytes_per_sec": (self.gbytes_per_sec() * 1000.0).round() / 1000.0,
            "placement": self.placement.name(),
            "probe_ns": self.probe_ns,
            "drops": self.drops,
            "runs": self.runs,
        })
    }
}

/// What one measurement moves.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Message size in bytes.
    pub size: usize,
    /// Messages in all (split evenly between producers).
    pub messages: u64,
    /// shmq ring capacity in bytes.
    pub capacity: u64,
    /// Pin the receiver and the producers to two different CPUs.
    pub pin: bool,
    /// Most messages per send call (see [`Args::batch`]).
    pub batch: usize,
    /// The shmq receivers' linger (see [`Args::linger`]).
    pub linger: std::time::Duration,
    /// Directory of the file channels.
    pub file_dir: std::path::PathBuf,
}

/// Writes the producer, the sequence number and the trailer into `msg`.
#[inline]
fn stamp(msg: &mut [u8], producer: u64, seq: u64) {
    let n = msg.len();
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..16].copy_from_slice(&producer.to_le_bytes());
    msg[n - 8..].copy_from_slice(&seq.to_le_bytes());
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// XOR of the 8-byte words of `m` (the tail shorter than a word is ignored):
/// makes the receiver read every byte.
#[inline]
fn fold(m: &[u8]) -> u64 {
    m.chunks_exact(8).fold(0, |acc, w| {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        acc ^ u64::from_ne_bytes(b)
    })
}

/// The receiver's check: sizes, and each producer's messages in order.
struct Checker {
    size: usize,
    next: Vec<u64>,
    received: u64,
    /// Messages [`Checker::skip`]ped.
    skipped: u64,
    /// Folded words of every message (kept so the reads are not optimised away).
    folded: u64,
    error: Option<String>,
}

impl Checker {
    fn new(size: usize, producers: u16) -> Checker {
        Checker {
            size,
            next: vec![0; usize::from(producers)],
            received: 0,
            skipped: 0,
            folded: 0,
            error: None,
        }
    }

    #[inline]
    fn check(&mut self, m: &[u8]) {
        self.received += 1;
        self.folded ^= fold(m);
        if self.error.is_some() {
            return;
        }
        if m.len() != self.size {
            self.error = Some(format!(
                "message of {} bytes, expected {}",
                m.len(),
                self.size
            ));
            return;
        }
        let (seq, p, trailer) = (word(m, 0), word(m, 8), word(m, m.len() - 8));
        match usize::try_from(p).ok().and_then(|p| self.next.get_mut(p)) {
            Some(next) if *next == seq && trailer == seq => *next += 1,
            _ => {
                self.error = Some(format!(
                    "message {} out of order or torn: producer {p}, seq {seq}, trailer {trailer}",
                    self.received
                ));
            }
        }
    }

    /// `n` messages of producer 0 that will not come: a lossy subscriber was
    /// told it missed them (`Error::Lagged`).
    fn skip(&mut self, n: u64) {
        self.next[0] += n;
        self.skipped += n;
    }

    fn result(self) -> Result<()> {
        std::hint::black_box(self.folded);
        match self.error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// The start gun: each producer blocks reading one byte from a pipe; the receiver
/// writes one byte per producer. (End of file would not do: every forked
/// producer inherits the write end and never closes it.)
struct Gun {
    read: OwnedFd,
    write: OwnedFd,
}

impl Gun {
    fn new() -> Result<Gun> {
        let (read, write) = nix::unistd::pipe()?;
        Ok(Gun { read, write })
    }

    /// The end a producer waits on.
    fn trigger(&self) -> Result<OwnedFd> {
        Ok(self.read.try_clone()?)
    }

    /// Releases `producers` producers.
    fn fire(&self, producers: u16) -> Result<()> {
        let shots = vec![1u8; usize::from(producers)];
        let mut done = 0;
        while done < shots.len() {
            done += nix::unistd::write(&self.write, &shots[done..])?;
        }
        Ok(())
    }
}

/// In a producer: waits for the start gun.
fn wait_for_gun(trigger: &OwnedFd) -> Result<()> {
    let mut b = [0u8; 1];
    if nix::unistd::read(trigger, &mut b)? != 1 {
        return Err("start gun pipe closed".into());
    }
    Ok(())
}

/// A ring that holds at least 8 messages of `size` bytes.
fn ring_capacity(size: usize, asked: u64) -> u64 {
    crate::echo::capacity_for(2 * size, asked.max(64))
}

/// Moves `plan.messages` messages over `flow` with `n` processes on its many
/// side (the producers of `shmq-mpsc`, the consumers of the fan-out flows;
/// ignored by the others) and returns the measured row.
///
/// # Errors
/// Setting up, a producer or consumer failing, or a message arriving wrong.
pub fn measure(flow: Flow, n: u16, plan: &Plan) -> Result<Row> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&plan.size) {
        return Err(format!("message size {} outside {MIN_SIZE}..={MAX_SIZE}", plan.size).into());
    }
    if !flow.supports(plan.size) {
        return Err(format!("{flow} does not carry {}-byte messages", plan.size).into());
    }
    let producers = if flow == Flow::ShmqMpsc { n.max(1) } else { 1 };
    let consumers = if flow.is_fanout() { n.max(1) } else { 1 };
    let cpus = if plan.pin { process::cpu_pair() } else { None };
    let _pin = process::Pinned::to(cpus.map(|c| c.0));
    let theirs = cpus.map(|c| c.1);
    let messages = if flow == Flow::ShmqFileEvery {
        plan.messages.min(EVERY_COMMIT_MAX_MSGS)
    } else {
        plan.messages
    };
    let per = messages.div_ceil(u64::from(producers)).max(1);
    let total = per * u64::from(producers);
    // Seconds, and messages dropped: iceoryx2 may drop without failing, and
    // lossy subscribers report the messages they were told they missed.
    let (secs, drops) = match flow {
        Flow::FloorStream => (floor::floor_stream(plan, per, theirs)?, 0),
        Flow::ShmqSpsc => (shmq_spsc(plan, per, theirs)?, 0),
        Flow::ShmqSpscTyped => (typed::shmq_spsc_typed(plan, per, theirs)?, 0),
        Flow::ShmqMpsc => (shmq_mpsc(plan, producers, per, theirs)?, 0),
        Flow::Pipe => {
            let (r, w) = nix::unistd::pipe()?;
            (stream(plan, per, theirs, File::from(r), File::from(w))?, 0)
        }
        Flow::UdsStream => {
            let (a, b) = UnixStream::pair()?;
            (stream(plan, per, theirs, a, b)?, 0)
        }
        Flow::Memcpy => (memcpy(plan, per), 0),
        Flow::ShmqShm | Flow::ShmqFileNone | Flow::ShmqFilePeriodic | Flow::ShmqFileEvery => {
            (shmq_durable(flow, plan, per, theirs)?, 0)
        }
        Flow::ShmqBroadcast => {
            fanout::shmq_broadcast(plan, Mode::Lossless, consumers, per, theirs)?
        }
        Flow::ShmqBroadcastLossy => {
            fanout::shmq_broadcast(plan, Mode::Lossy, consumers, per, theirs)?
        }
        Flow::SpscFanout => fanout::spsc_fanout(plan, consumers, per, theirs)?,
        #[cfg(feature = "peers")]
        Flow::Ringfire => (peers::ringfire(plan, per, theirs)?, 0),
        #[cfg(feature = "peers")]
        Flow::Iceoryx2 => peers::iceoryx2(plan, per, theirs)?,
    };
    Ok(Row {
        flow,
        size: plan.size,
        producers,
        consumers,
        messages: total,
        secs,
        placement: Placement::Unprobed,
        probe_ns: 0,
        drops,
        runs: 1,
    })
}

/// Waits for every producer; the first failure wins.
fn reap_all(children: Vec<process::Child>) -> Result<()> {
    let mut first = Ok(());
    for c in children {
        if let Err(e) = c.wait()
            && first.is_ok()
        {
            first = Err(e.into());
        }
    }
    first
}

/// Messages a producer hands over per call: at most `batch`, and no more than
/// 64 KiB of them (but at least one).
fn send_batch(size: usize, batch: usize) -> usize {
    (65536 / size).min(batch).max(1)
}

/// Messages the receiver takes per `recv_batch`: up to 256, and no more than
/// half the ring, so that a batch releases space while producers still have room.
fn recv_batch(size: usize, capacity: u64) -> usize {
    let frame = shmq::message_footprint(size);
    (capacity as usize / 2 / frame).clamp(1, 256)
}

/// The shmq producers' loop: `count` messages of `size` bytes from `producer`,
/// stamped in batches of [`send_batch`] and sent with one `try_send_batch` each;
/// when the ring is full, one message goes with `send`, which waits for room.
fn send_all<K: RingKind>(
    tx: &mut Sender<K>,
    (size, batch): (usize, usize),
    producer: u64,
    count: u64,
) -> Result<()> {
    send_all_to(std::slice::from_mut(tx), (size, batch), producer, count)
}

/// [`send_all`] to each of `txs` in turn, every batch to all of them (the
/// fan-out over separate channels: each message copied once per channel).
fn send_all_to<K: RingKind>(
    txs: &mut [Sender<K>],
    (size, batch): (usize, usize),
    producer: u64,
    count: u64,
) -> Result<()> {
    let b = send_batch(size, batch);
    let mut bufs = vec![vec![0u8; size]; b];
    let mut seq = 0;
    while seq < count {
        let n = (count - seq).min(b as u64) as usize;
        for (k, buf) in bufs[..n].iter_mut().enumerate() {
            stamp(buf, producer, seq + k as u64);
        }
        for tx in txs.iter_mut() {
            hand_over(tx, &bufs[..n])?;
        }
        seq += n as u64;
    }
    Ok(())
}

/// Sends the stamped messages `bufs` with `try_send_batch` (when the ring is
/// full, one message with `send`, which waits for room).
#[inline]
fn hand_over<K: RingKind>(tx: &mut Sender<K>, bufs: &[Vec<u8>]) -> Result<()> {
    let mut sent = 0;
    while sent < bufs.len() {
        match tx.try_send_batch(bufs[sent..].iter().map(Vec::as_slice)) {
            Ok(k) => sent += k,
            Err(shmq::Error::Full) => {
                tx.send(&bufs[sent])?;
                sent += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn shmq_spsc(plan: &Plan, count: u64, cpu: Option<usize>) -> Result<f64> {
    let cap = ring_capacity(plan.size, plan.capacity);
    let opts = Options::new().capacity(cap).linger(plan.linger);
    let (mut tx, mut rx) = spsc::anonymous(&opts)?;
    let gun = Gun::new()?;
    let trigger = gun.trigger()?;
    let (size, batch) = (plan.size, plan.batch);
    let child = process::spawn(cpu, move || {
        let _ = tx.try_reserve(size)?; // attach before the clock starts
        wait_for_gun(&trigger)?;
        send_all(&mut tx, (size, batch), 0, count)
    });
    let child = child?;
    let _ = rx.try_recv(); // attach before the clock starts
    let secs = receive_all(&mut rx, &gun, (size, cap), 1, count)?;
    reap_all(vec![child])?;
    Ok(secs)
}

/// An SPSC channel by name (`/dev/shm`) or on a file in `plan.file_dir` with
/// the flow's durability policy; the producer opens it in its own process.
fn shmq_durable(flow: Flow, plan: &Plan, count: u64, cpu: Option<usize>) -> Result<f64> {
    use shmq::Durability;
    let cap = ring_capacity(plan.size, plan.capacity);
    let policy = match flow {
        Flow::ShmqFilePeriodic => Durability::Periodic {
            interval: std::time::Duration::from_millis(10),
            messages: 1000,
        },
        Flow::ShmqFileEvery => Durability::EveryCommit,
        _ => Durability::None,
    };
    let tag = format!("shmq-bench-{}-{}", std::process::id(), flow.name());
    let name = format!("/{tag}");
    let path = plan.file_dir.join(&tag);
    let file = flow != Flow::ShmqShm;
    let opts = Options::new().capacity(cap);
    let mut rx = if file {
        Receiver::<shmq::Spsc>::create_file(&path, &opts.clone().durability(policy))?
    } else {
        Receiver::<shmq::Spsc>::create(&name, &opts)?
    };
    // Whatever happens, nothing is left behind.
    struct Remove(Option<std::path::PathBuf>, String);
    impl Drop for Remove {
        fn drop(&mut self) {
            match &self.0 {
                Some(p) => drop(std::fs::remove_file(p)),
                None => drop(shmq::inspect::unlink(&self.1)),
            }
        }
    }
    let _remove = Remove(file.then(|| path.clone()), name.clone());
    let gun = Gun::new()?;
    let trigger = gun.trigger()?;
    let (size, batch) = (plan.size, plan.batch);
    let child = process::spawn(cpu, move || {
        let mut tx = if file {
            shmq::spsc::Sender::open_file(&path, &Options::new())?
        } else {
            shmq::spsc::Sender::open(&name, &Options::new())?
        };
        wait_for_gun(&trigger)?;
        send_all(&mut tx, (size, batch), 0, count)
    });
    let child = child?;
    let secs = receive_all(&mut rx, &gun, (size, cap), 1, count)?;
    reap_all(vec![child])?;
    Ok(secs)
}

/// The shmq consumer's loop: fires the gun for `producers`, then receives
/// `total` messages with `recv_batch` (which waits for the first of each
/// batch, and lingers if the channel says so) and checks them; returns the
/// seconds it took.
fn receive_all<K: RingKind>(
    rx: &mut Receiver<K>,
    gun: &Gun,
    (size, cap): (usize, u64),
    producers: u16,
    total: u64,
) -> Result<f64> {
    let batch = recv_batch(size, cap);
    let mut check = Checker::new(size, producers);
    let t0 = Instant::now();
    gun.fire(producers)?;
    while check.received < total {
        rx.recv_batch(batch, |m| check.check(m))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    check.result()?;
    Ok(secs)
}

fn shmq_mpsc(plan: &Plan, producers: u16, per: u64, cpu: Option<usize>) -> Result<f64> {
    let cap = ring_capacity(plan.size, plan.capacity);
    let opts = Options::new()
        .capacity(cap)
        .max_producers(producers)
        .linger(plan.linger);
    let (tx, mut rx) = mpsc::anonymous(&opts)?;
    let gun = Gun::new()?;
    let (size, batch) = (plan.size, plan.batch);
    let mut children = Vec::new();
    for id in 0..producers {
        let mut mine = tx.try_clone()?;
        let trigger = gun.trigger()?;
        let child = process::spawn(cpu, move || {
            mine.slot()?; // attach before the clock starts
            wait_for_gun(&trigger)?;
            send_all(&mut mine, (size, batch), u64::from(id), per)
        });
        children.push(child?);
    }
    drop(tx);
    rx.expect_producers(u32::from(producers))?;
    let total = per * u64::from(producers);
    let secs = receive_all(&mut rx, &gun, (size, cap), producers, total)?;
    reap_all(children)?;
    Ok(secs)
}

fn stream<R, W>(plan: &Plan, count: u64, cpu: Option<usize>, rd: R, mut wr: W) -> Result<f64>
where
    R: Read,
    W: Write,
{
    let gun = Gun::new()?;
    let trigger = gun.trigger()?;
    let (size, batch) = (plan.size, plan.batch);
    let child = process::spawn(cpu, move || {
        wait_for_gun(&trigger)?;
        // Batches as the shmq producers make them: `send_batch` messages stamped
        // into one buffer and handed over with one `write` (as many as the kernel
        // takes at a time), so that no transport is timed with more calls per
        // message than another.
        let b = send_batch(size, batch);
        let mut buf = vec![0u8; size * b];
        let mut seq = 0;
        while seq < count {
            let n = (count - seq).min(b as u64) as usize;
            for (k, msg) in buf.chunks_exact_mut(size).take(n).enumerate() {
                stamp(msg, 0, seq + k as u64);
            }
            wr.write_all(&buf[..n * size])?;
            seq += n as u64;
        }
        Ok(())
    });
    // `wr` went with the closure: our copy is closed, so a dead producer shows as
    // end of file.
    let child = child?;
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    let mut buf = vec![0u8; size];
    let mut check = Checker::new(size, 1);
    let t0 = Instant::now();
    gun.fire(1)?;
    while check.received < count {
        rd.read_exact(&mut buf)?;
        check.check(&buf);
    }
    let secs = t0.elapsed().as_secs_f64();
    check.result()?;
    reap_all(vec![child])?;
    Ok(secs)
}

fn memcpy(plan: &Plan, count: u64) -> f64 {
    let size = plan.size;
    let area = ring_capacity(size, plan.capacity) as usize;
    let slots = (area / size).max(1);
    let mut dst = vec![0u8; slots * size];
    let mut src = vec![0u8; size];
    stamp(&mut src, 0, 0);
    let t0 = Instant::now();
    for i in 0..count {
        let at = (i as usize % slots) * size;
        dst[at..at + size].copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    t0.elapsed().as_secs_f64()
}

fn select(names: &[String]) -> Result<Vec<Flow>> {
    if names.is_empty() {
        return Ok(Flow::every());
    }
    let mut out = Vec::new();
    for n in names {
        let f = Flow::named(n)?;
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

impl Args {
    /// Messages per row for messages of `size` bytes.
    pub fn messages_for(&self, size: usize) -> u64 {
        self.count
            .unwrap_or_else(|| (self.bytes / size.max(1) as u64).min(self.max_msgs))
            .max(1)
    }

    /// The (flow, processes on its many side) pairs to measure, in table
    /// order: the fan-out flows where the first of them was asked for, by
    /// consumer count then flow (broadcast beside SPSC at each count).
    fn runs(&self) -> Result<Vec<(Flow, u16)>> {
        let mut flows = if self.transport.is_empty() && self.fanout {
            Vec::new()
        } else {
            select(&self.transport)?
        };
        if self.fanout {
            for f in Flow::FANOUT {
                if !flows.contains(&f) {
                    flows.push(f);
                }
            }
        }
        let fan: Vec<Flow> = flows.iter().copied().filter(|f| f.is_fanout()).collect();
        let mut out = Vec::new();
        for f in flows {
            if f.is_fanout() {
                if f != fan[0] {
                    continue;
                }
                let mut ns = self.subscribers.clone();
                ns.dedup();
                if ns.is_empty() || ns.contains(&0) {
                    return Err("--subscribers: each count must be at least 1".into());
                }
                if let Some(&big) = ns.iter().find(|&&n| n > shmq::broadcast::MAX_SUBSCRIBERS) {
                    return Err(format!(
                        "--subscribers {big}: at most {}",
                        shmq::broadcast::MAX_SUBSCRIBERS
                    )
                    .into());
                }
                for n in ns {
                    out.extend(fan.iter().map(|&g| (g, n)));
                }
            } else if f == Flow::ShmqMpsc {
                let mut ps = self.producers.clone();
                ps.dedup();
                if ps.is_empty() || ps.contains(&0) {
                    return Err("--producers: each count must be at least 1".into());
                }
                out.extend(ps.into_iter().map(|p| (f, p)));
            } else {
                out.push((f, 1));
            }
        }
        Ok(out)
    }
}

/// Runs the comparison and prints the results.
///
/// # Errors
/// Any failure to set up or run a transport.
pub fn run(args: &Args) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let runs = args.runs()?;
    if args.size.is_empty() {
        return Err("no message size given".into());
    }
    for &s in &args.size {
        if !(MIN_SIZE..=MAX_SIZE).contains(&s) {
            return Err(format!("--size {s}: must be from {MIN_SIZE} to {MAX_SIZE}").into());
        }
    }
    // The rows, in table order: every (flow, producers) at every size it carries.
    let mut cases = Vec::new();
    for &size in &args.size {
        for &(flow, p) in &runs {
            if flow.supports(size) {
                cases.push((flow, p, size));
            } else if !args.transport.is_empty() {
                eprintln!("throughput: {flow} does not carry {size}-byte messages: skipped");
            }
        }
    }
    let rounds = args.rounds.max(1);
    let probe = args.report.probe();
    let pin = !args.no_pin;
    let bar = ProgressBar::new(cases.len() as u64 * u64::from(rounds));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // Every measurement of each row, in table order.
    let mut all: Vec<Vec<Row>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, &(flow, p, size)) in cases.iter().enumerate() {
            let plan = Plan {
                size,
                messages: args.messages_for(size),
                capacity: args.capacity,
                pin,
                batch: args.batch,
                linger: std::time::Duration::from_nanos(args.linger),
                file_dir: args.file_dir.clone().unwrap_or_else(std::env::temp_dir),
            };
            bar.set_prefix(format!("{flow} x{p} {size} B"));
            // memcpy runs in one thread: where the other CPU is does not matter.
            let (placement, probe_ns) = if flow == Flow::Memcpy {
                (Placement::Unprobed, 0)
            } else {
                probe
                    .run(pin)
                    .map_err(|e| format!("placement probe: {e}"))?
            };
            let mut row = measure_retrying(flow, p, &plan)?;
            row.placement = placement;
            row.probe_ns = probe_ns;
            all[i].push(row);
            bar.inc(1);
        }
    }
    let rows: Vec<Row> = all.into_iter().flat_map(by_placement).collect();
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if args.json {
        for r in &rows {
            writeln!(out, "{}", r.to_json())?;
        }
    } else {
        let pinned = pin && process::cpu_pair().is_some();
        write!(out, "{}", render(&rows, pinned, args.batch))?;
        if args.linger > 0 {
            writeln!(
                out,
                "# shmq receivers linger {} ns (recv_batch)",
                args.linger
            )?;
        }
        write!(out, "{}", probe.footnote(pinned))?;
        if rows.iter().any(|r| r.flow.is_fanout()) {
            writeln!(out, "{}", fanout_note(pin))?;
        }
        if args.report.goals {
            write!(out, "{}", goals_text(&rows, args.batch))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// What the fan-out rows measure and where their processes ran.
fn fanout_note(pin: bool) -> String {
    let cpus = process::allowed_cpus().len();
    let place = if pin && cpus >= 2 {
        format!(
            "the producer pinned to one CPU, the N consumer processes to the other {} in turn{}",
            cpus - 1,
            if cpus == 2 {
                " (this machine has 2 CPUs: the N consumers share one, N + 1 \
                 processes two)"
            } else {
                ""
            }
        )
    } else {
        format!("processes not pinned, {cpus} CPU(s)")
    };
    format!(
        "# fan-out: msgs/s is the producer's (distinct messages, each delivered to N \
         consumer processes that check every one) until the last consumer is done; \
         shmq-broadcast-N: one broadcast channel, N lossless subscribers; \
         shmq-broadcast-lossy-N: N lossy subscribers (never waited for; drops: the \
         messages they were told they missed, summed); spsc-fanout-N: N SPSC channels \
         fed in turn; {place}"
    )
}

/// Attempts at one measurement before giving up.
const ATTEMPTS: u32 = 3;

/// [`measure`], tried again (with a warning on stderr) if it fails: a failure
/// of one row, such as a producer process preempted at the wrong moment tripping
/// a check in the channel, should not throw away the whole table; a row that
/// keeps failing still does.
fn measure_retrying(flow: Flow, producers: u16, plan: &Plan) -> Result<Row> {
    let mut attempt = 1;
    loop {
        match measure(flow, producers, plan) {
            Ok(row) => return Ok(row),
            Err(e) => {
                let what = format!("{flow} x{producers}, {}-byte messages: {e}", plan.size);
                if attempt >= ATTEMPTS {
                    return Err(what.into());
                }
                eprintln!("throughput: attempt {attempt} failed ({what}); trying again");
                attempt += 1;
            }
        }
    }
}

/// The measurement with the median time (the lower middle of an even count).
fn median_row(mut runs: Vec<Row>) -> Option<Row> {
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let mid = runs.len().checked_sub(1)? / 2;
    let n = runs.len() as u32;
    let probes: Vec<u64> = runs.iter().map(|r| r.probe_ns).collect();
    let mut row = runs.into_iter().nth(mid)?;
    row.runs = n;
    // The probe figure of the row: the median of its measurements' probes.
    let mut probes = probes;
    probes.sort_unstable();
    row.probe_ns = probes[probes.len() / 2];
    Some(row)
}

/// One row's measurements as one row per placement they ran in (each the median
/// of its measurements), in [`Placement::ALL`] order.
fn by_placement(runs: Vec<Row>) -> Vec<Row> {
    Placement::ALL
        .into_iter()
        .filter_map(|p| median_row(runs.iter().filter(|r| r.placement == p).cloned().collect()))
        .collect()
}

/// A rate for a table cell.
fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The row of `flow` at `size` measured in `placement` (`memcpy`, one thread,
/// in any placement).
fn find(rows: &[Row], flow: Flow, size: usize, placement: Placement) -> Option<&Row> {
    rows.iter().find(|r| {
        r.flow == flow && r.size == size && (r.placement == placement || flow == Flow::Memcpy)
    })
}

/// The row of fan-out `flow` with `consumers` consumers at `size` measured in
/// `placement`.
fn find_fanout(
    rows: &[Row],
    flow: Flow,
    consumers: u16,
    size: usize,
    placement: Placement,
) -> Option<&Row> {
    rows.iter().find(|r| {
        r.flow == flow && r.consumers == consumers && r.size == size && r.placement == placement
    })
}

/// The table: results, and ratios to the floors, to a pipe and to the peers, each
/// against the row of the same size and placement; with fan-out rows, each
/// one's ratio to its own flow's 1-consumer row (`/ x1`) and a broadcast
/// row's to `spsc-fanout` with as many consumers.
pub fn render(rows: &[Row], pinned: bool, batch: usize) -> String {
    let mut s = format!(
        "# one way, receiver {}; the receiver checks every message and reads all its \
         bytes;\n# producers send up to {batch} messages (at most 64 KiB) per call, \
         every transport alike;\n# msgs/s and GB/s (10^9 bytes) of payload; ratios of \
         msgs/s to the row of the same size and placement (-: none; memcpy runs in \
         one thread, unprobed, and is compared with every placement)\n",
        if pinned {
            "and producers pinned to two different CPUs"
        } else {
            "and producers not pinned"
        }
    );
    let mut header = vec![
        "transport",
        "size",
        "producers",
        "placement",
        "messages",
        "msgs/s",
        "GB/s",
        "/ floor-stream",
        "/ memcpy",
        "/ pipe",
    ];
    let peers = Flow::peers_among(|f| rows.iter().any(|r| r.flow == f));
    let peer_names: Vec<String> = peers.iter().map(|f| format!("/ {f}")).collect();
    header.extend(peer_names.iter().map(String::as_str));
    let drops = rows.iter().any(|r| r.drops > 0) || peers.iter().any(|f| f.name() == "iceoryx2");
    if drops {
        header.push("drops");
    }
    let fan = rows.iter().any(|r| r.flow.is_fanout());
    if fan {
        header.extend(["/ x1", "/ spsc-fanout"]);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let to = |f: Flow| {
                table::ratio_cell(
                    find(rows, f, r.size, r.placement)
                        .and_then(|b| ratio(r.msgs_per_sec(), b.msgs_per_sec())),
                )
            };
            let mut c = vec![
                r.label(),
                r.size.to_string(),
                r.producers.to_string(),
                r.placement.name().to_string(),
                r.messages.to_string(),
                rate(r.msgs_per_sec()),
                format!("{:.3}", r.gbytes_per_sec()),
                to(Flow::FloorStream),
                to(Flow::Memcpy),
                to(Flow::Pipe),
            ];
            c.extend(peers.iter().map(|&f| to(f)));
            if drops {
                c.push(r.drops.to_string());
            }
            if fan {
                let fan_to = |f: Flow, n: u16| {
                    let base = r
                        .flow
                        .is_fanout()
                        .then(|| find_fanout(rows, f, n, r.size, r.placement))
                        .flatten();
                    table::ratio_cell(base.and_then(|b| ratio(r.msgs_per_sec(), b.msgs_per_sec())))
                };
                c.push(fan_to(r.flow, 1));
                c.push(if r.flow != Flow::SpscFanout {
                    fan_to(Flow::SpscFanout, r.consumers)
                } else {
                    table::ratio_cell(None)
                });
            }
            c
        })
        .collect();
    s.push_str(&table::render(&header, &cells));
    s
}

/// The goals against the peers (issue 16: one message per call, 64 B).
#[cfg(feature = "peers")]
fn peer_goals(batch: usize) -> Vec<Want> {
    if batch != 1 {
        return Vec::new();
    }
    vec![
        Want {
            what: "shmq-spsc-typed msgs/s / ringfire msgs/s",
            size: 64,
            num: Flow::ShmqSpscTyped,
            den: Flow::Ringfire,
            min: 1.2,
        },
        Want {
            what: "shmq-spsc msgs/s / ringfire msgs/s",
            size: 64,
            num: Flow::ShmqSpsc,
            den: Flow::Ringfire,
            min: 0.8,
        },
    ]
}

/// The goals against the peers: none without the feature `peers`.
#[cfg(not(feature = "peers"))]
fn peer_goals(_batch: usize) -> Vec<Want> {
    Vec::new()
}

/// One throughput goal: `num` over `den` at `size`, at least `min`.
struct Want {
    what: &'static str,
    size: usize,
    num: Flow,
    den: Flow,
    min: f64,
}

/// The project's internal throughput goals (`--goals`), each judged within one
/// placement; a goal whose two rows never ran in the same placement says so.
pub fn goals_text(rows: &[Row], batch: usize) -> String {
    let mut wanted = vec![
        Want {
            what: "shmq-spsc msgs/s / pipe msgs/s",
            size: 64,
            num: Flow::ShmqSpsc,
            den: Flow::Pipe,
            min: 25.0,
        },
        Want {
            what: "shmq-spsc GB/s / pipe GB/s",
            size: 4096,
            num: Flow::ShmqSpsc,
            den: Flow::Pipe,
            min: 4.0,
        },
        Want {
            what: "shmq-spsc GB/s / floor-stream GB/s",
            size: 4096,
            num: Flow::ShmqSpsc,
            den: Flow::FloorStream,
            min: 0.6,
        },
        Want {
            what: "shmq-spsc msgs/s / floor-stream msgs/s",
            size: 64,
            num: Flow::ShmqSpsc,
            den: Flow::FloorStream,
            // Issue 16: one message per call at least half the floor, batched
            // at least 0.8 of it.
            min: if batch == 1 { 0.5 } else { 0.8 },
        },
    ];
    wanted.extend(peer_goals(batch));
    let mut lines = Vec::new();
    for w in &wanted {
        let at = |f: Flow| rows.iter().filter(move |r| r.flow == f && r.size == w.size);
        if at(w.num).next().is_none() || at(w.den).next().is_none() {
            continue;
        }
        let mut paired = false;
        for p in Placement::ALL {
            let (Some(a), Some(b)) = (find(rows, w.num, w.size, p), find(rows, w.den, w.size, p))
            else {
                continue;
            };
            let Some(v) = ratio(a.msgs_per_sec(), b.msgs_per_sec()) else {
                continue;
            };
            paired = true;
            let what = format!("{} B: {}", w.size, w.what);
            lines.push(format!(
                "  {what:<46} {:<9} {v:>7.2} (goal >= {})  {}",
                p.name(),
                w.min,
                if v >= w.min { "met" } else { "NOT met" }
            ));
        }
        if !paired {
            let places = |f: Flow| {
                at(f)
                    .map(|r| r.placement.name())
                    .collect::<Vec<_>>()
                    .join("+")
            };
            lines.push(format!(
                "  {} B: {}: no same-placement pair ({} ran {}, {} ran {}): not judged",
                w.size,
                w.what,
                w.num,
                places(w.num),
                w.den,
                places(w.den)
            ));
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\ngoals (internal targets of the project, not pass/fail of the product; \
         ratios between rows of the same size and placement):\n",
    );
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// How long a measurement of `messages` took, for tests of the arithmetic.
#[cfg(test)]
fn row(flow: Flow, size: usize, messages: u64, secs: std::time::Duration) -> Row {
    Row {
        flow,
        size,
        producers: 1,
        consumers: 1,
        messages,
        secs: secs.as_secs_f64(),
        placement: Placement::Unprobed,
        probe_ns: 0,
        drops: 0,
        runs: 1,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cli::FromArgv;

    #[test]
    fn defaults_and_lists() {
        let a = Args::from_argv(&[]);
        assert_eq!(a.size, vec![64, 4096, 65536]);
        assert_eq!(a.producers, vec![1, 2, 4]);
        assert_eq!(a.messages_for(64), 2_000_000);
        assert_eq!(a.messages_for(65536), 32768);
        let runs = a.runs().unwrap();
        assert_eq!(runs.len(), 9 + Flow::PEERS.len());
        assert!(runs.contains(&(Flow::ShmqMpsc, 4)));
        let b = Args::from_argv(&[
            "--transport",
            "pipe,shmq-mpsc",
            "--producers",
            "3",
            "--count",
            "10",
        ]);
        assert_eq!(
            b.runs().unwrap(),
            vec![(Flow::Pipe, 1), (Flow::ShmqMpsc, 3)]
        );
        assert_eq!(b.messages_for(65536), 10);
        assert!(Args::from_argv(&["--transport", "nope"]).runs().is_err());
        assert!(Args::from_argv(&["--producers", "0"]).runs().is_err());
    }

    #[test]
    fn fanout_rows_interleave_by_consumer_count() {
        use Flow::{ShmqBroadcast as B, ShmqBroadcastLossy as L, SpscFanout as F};
        // Not in the default set.
        assert!(
            !Args::from_argv(&[])
                .runs()
                .unwrap()
                .iter()
                .any(|(f, _)| f.is_fanout())
        );
        let a = Args::from_argv(&["--fanout"]);
        assert_eq!(
            a.runs().unwrap(),
            vec![
                (B, 1),
                (L, 1),
                (F, 1),
                (B, 2),
                (L, 2),
                (F, 2),
                (B, 4),
                (L, 4),
                (F, 4),
                (B, 8),
                (L, 8),
                (F, 8)
            ]
        );
        let b = Args::from_argv(&["--transport", "pipe,spsc-fanout", "--subscribers", "3"]);
        assert_eq!(b.runs().unwrap(), vec![(Flow::Pipe, 1), (F, 3)]);
        let c = Args::from_argv(&["--transport", "pipe", "--fanout", "--subscribers", "2"]);
        assert_eq!(
            c.runs().unwrap(),
            vec![(Flow::Pipe, 1), (B, 2), (L, 2), (F, 2)]
        );
        assert!(
            Args::from_argv(&["--fanout", "--subscribers", "0"])
                .runs()
                .is_err()
        );
        assert!(
            Args::from_argv(&["--fanout", "--subscribers", "1001"])
                .runs()
                .is_err()
        );
        assert_eq!(Flow::named("shmq-broadcast").unwrap(), B);
        assert_eq!(Flow::named("shmq-broadcast-lossy").unwrap(), L);
    }

    /// Message `seq` of producer 0, stamped as the producers stamp theirs.
    fn stamped(seq: u64, size: usize) -> Vec<u8> {
        let mut m = vec![0u8; size];
        stamp(&mut m, 0, seq);
        m
    }

    #[test]
    fn a_lossy_checker_takes_the_message_after_the_missed_ones_only() {
        let mut c = Checker::new(64, 1);
        c.check(&stamped(0, 64));
        c.skip(3);
        c.check(&stamped(4, 64));
        assert_eq!((c.received, c.skipped), (2, 3));
        c.result().unwrap();
        // A count one short: the next message is out of order.
        let mut c = Checker::new(64, 1);
        c.check(&stamped(0, 64));
        c.skip(2);
        c.check(&stamped(4, 64));
        assert!(c.result().is_err());
    }

    #[test]
    fn fanout_rows_are_named_and_compared() {
        let at = |flow, consumers, ms| {
            let mut r = row(flow, 64, 1000, Duration::from_millis(ms));
            r.consumers = consumers;
            r
        };
        let rows = vec![
            at(Flow::ShmqBroadcast, 1, 10),
            at(Flow::SpscFanout, 1, 10),
            at(Flow::ShmqBroadcast, 4, 20),
            at(Flow::SpscFanout, 4, 80),
        ];
        assert_eq!(rows[2].label(), "shmq-broadcast-4");
        assert_eq!(rows[2].to_json()["transport"], "shmq-broadcast-4");
        assert_eq!(
            row(Flow::Pipe, 64, 1, Duration::from_secs(1)).label(),
            "pipe"
        );
        let t = render(&rows, true, 64);
        assert!(t.contains("/ x1") && t.contains("/ spsc-fanout"), "{t}");
        let b4 = t
            .lines()
            .find(|l| l.starts_with("shmq-broadcast-4"))
            .unwrap();
        // Half the 1-subscriber rate; four times the SPSC fan-out's.
        assert!(b4.contains("0.50") && b4.contains("4.00"), "{b4}");
        let f4 = t.lines().find(|l| l.starts_with("spsc-fanout-4")).unwrap();
        assert!(f4.contains("0.12"), "{f4}");
        // No fan-out rows, no fan-out columns.
        assert!(!render(&rows[..0], true, 64).contains("/ x1"));
    }

    #[test]
    fn rates_and_json() {
        let r = row(Flow::ShmqSpsc, 4096, 1_000_000, Duration::from_millis(500));
        assert_eq!(r.msgs_per_sec(), 2_000_000.0);
        assert!((r.gbytes_per_sec() - 8.192).abs() < 1e-9);
        let v = r.to_json();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "drops",
                "gbytes_per_sec",
                "msgs_per_sec",
                "placement",
                "probe_ns",
                "producers",
                "runs",
                "size",
                "transport"
            ]
        );
        assert_eq!(v["gbytes_per_sec"], 8.192);
        assert_eq!(rate(2_500_000.0), "2.50M");
        assert_eq!(rate(2_500.0), "2.5k");
    }

    #[test]
    fn goals_are_ratios_to_pipe() {
        let rows = vec![
            row(Flow::ShmqSpsc, 64, 30_000_000, Duration::from_secs(1)),
            row(Flow::Pipe, 64, 1_000_000, Duration::from_secs(1)),
            row(Flow::ShmqSpsc, 4096, 1_000_000, Duration::from_secs(1)),
            row(Flow::Pipe, 4096, 500_000, Duration::from_secs(1)),
        ];
        let t = goals_text(&rows, 64);
        assert!(t.contains("30.00 (goal >= 25)  met"), "{t}");
        assert!(t.contains("2.00 (goal >= 4)  NOT met"), "{t}");
        // The goals print only on request: the table has none.
        assert!(!render(&rows, true, 64).contains("met"));
    }

    #[test]
    fn median_of_runs() {
        let ms = |m| row(Flow::Pipe, 64, 1000, Duration::from_millis(m));
        assert_eq!(median_row(vec![ms(30), ms(10), ms(20)]).unwrap().secs, 0.02);
        assert_eq!(median_row(vec![ms(30), ms(10)]).unwrap().secs, 0.01);
        assert!(median_row(Vec::new()).is_none());
        assert_eq!(Args::from_argv(&["--rounds", "3"]).rounds, 3);
        assert_eq!(Args::from_argv(&[]).rounds, 1);
    }

    #[test]
    fn fold_reads_every_word() {
        let mut m = vec![0u8; 24];
        assert_eq!(fold(&m), 0);
        m[17] = 1;
        assert_eq!(fold(&m), 1 << 8);
    }

    #[test]
    fn checker_catches_order_and_tearing() {
        let mut m = vec![0u8; 64];
        let mut c = Checker::new(64, 2);
        stamp(&mut m, 1, 0);
        c.check(&m);
        stamp(&mut m, 0, 0);
        c.check(&m);
        assert!(c.error.is_none());
        stamp(&mut m, 0, 2); // skipped 1
        c.check(&m);
        assert!(c.error.is_some());
        let mut c = Checker::new(64, 1);
        stamp(&mut m, 0, 0);
        m[63] ^= 1; // torn trailer
        c.check(&m);
        assert!(c.result().is_err());
        let mut c = Checker::new(64, 1);
        c.check(&m[..32]);
        assert!(c.result().is_err());
    }

    #[test]
    fn capacity_holds_eight_messages() {
        assert_eq!(ring_capacity(64, 1 << 20), 1 << 20);
        let c = ring_capacity(65536, 1 << 16);
        assert!(c >= 8 * 65536 && c.is_power_of_two());
        assert_eq!(send_batch(64, 64), 64);
        assert_eq!(send_batch(64, 1), 1);
        assert_eq!(send_batch(65536, 64), 1);
        assert_eq!(send_batch(64, 0), 1);
        assert_eq!(recv_batch(64, 1 << 20), 256);
        assert_eq!(recv_batch(65536, 1 << 20), 7);
        assert_eq!(recv_batch(65536, 1 << 16), 1);
    }

    #[test]
    fn rows_split_by_placement_and_ratios_stay_within_one() {
        let at = |flow, msgs, ms, placement| {
            let mut r = row(flow, 64, msgs, Duration::from_millis(ms));
            r.placement = placement;
            r
        };
        let rows = by_placement(vec![
            at(Flow::ShmqSpsc, 1000, 10, Placement::Close),
            at(Flow::ShmqSpsc, 1000, 30, Placement::Far),
            at(Flow::ShmqSpsc, 1000, 20, Placement::Close),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].placement, rows[0].runs), (Placement::Close, 2));
        assert_eq!((rows[1].placement, rows[1].runs), (Placement::Far, 1));
        let mut all = rows;
        all.push(at(Flow::FloorStream, 1000, 5, Placement::Far));
        let t = render(&all, true, 64);
        let close = t.lines().find(|l| l.contains("close")).unwrap();
        let far = t
            .lines()
            .find(|l| l.starts_with("shmq-spsc") && l.contains("far"))
            .unwrap();
        // No close floor: no ratio; the far row against the far floor, 5/30.
        assert!(close.contains("             -"), "{close}");
        assert!(far.contains("0.17"), "{far}");
        let g = goals_text(&all, 64);
        assert!(
            g.contains("far") && g.contains("(goal >= 0.8)  NOT met"),
            "{g}"
        );
        let only_close = vec![
            at(Flow::ShmqSpsc, 1000, 10, Placement::Close),
            at(Flow::FloorStream, 1000, 5, Placement::Far),
        ];
        assert!(goals_text(&only_close, 64).contains("no same-placement pair"));
    }
}
