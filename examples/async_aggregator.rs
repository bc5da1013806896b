//! One tokio task set receiving from K producer processes at once, each over
//! its own named channel, while it also serves a timer (feature `async`).
//!
//! ```text
//! async_aggregator --inputs K --count N
//! ```
//!
//! It re-executes itself K times as producers. Each sends N verifiable
//! messages (sequence, producer, `CLOCK_MONOTONIC` send time, checksum), the
//! first half at full speed; then pauses one second; then sends its first
//! [`PACED`] messages 2 ms apart (each one finds the aggregator asleep: these
//! are the wake-ups timed) and the rest at full speed. The aggregator, one
//! tokio current-thread runtime with a task per channel and a 100 ms interval
//! timer, verifies every message (per producer: in order, no gap, no
//! duplicate, checksum) and prints one JSON line:
//!
//! `{"received": K*N, "verified": true, "idle_cpu_pct": x, "p50_wake_us": y, ...}`
//!
//! - `idle_cpu_pct`: the aggregator process's CPU time
//!   (`CLOCK_PROCESS_CPUTIME_ID`: every thread, the waiter thread of the async
//!   waits included) over the wall time from the moment every producer's first
//!   half has arrived to the first message after the pause, in percent of one
//!   CPU.
//! - `p50_wake_us`: the median, over the paced messages after the pause, of
//!   the time from send to receipt.
//!
//! Exit status 0 when every message arrived verified, 1 otherwise.

use std::time::Duration;

use clap::Parser;
use serde_json::json;
use shmq::{Options, Receiver, Sender, Spsc};
use shmq_testkit::{mono_ns, process_cpu_ns};

/// Messages sent 2 ms apart after the pause by each producer (at most half of
/// its messages).
const PACED: u64 = 20;

/// Bytes of a message: sequence, producer, send time, checksum.
const SIZE: usize = 32;

#[derive(Parser, Debug)]
#[command(about = "K producer processes into one async aggregator (tokio)")]
struct Args {
    /// Producer processes (and channels).
    #[arg(long, default_value_t = 4)]
    inputs: u32,
    /// Messages per producer (at least 2).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Internal: run as producer ID over channel NAME.
    #[arg(long, hide = true)]
    producer: Option<u32>,
    /// Internal: the producer's channel.
    #[arg(long, hide = true)]
    name: Option<String>,
}

fn checksum(seq: u64, id: u64, sent: u64) -> u64 {
    (seq ^ id.rotate_left(17) ^ sent.rotate_left(31)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn encode(seq: u64, id: u32) -> [u8; SIZE] {
    let sent = mono_ns();
    let mut m = [0u8; SIZE];
    m[0..8].copy_from_slice(&seq.to_le_bytes());
    m[8..16].copy_from_slice(&u64::from(id).to_le_bytes());
    m[16..24].copy_from_slice(&sent.to_le_bytes());
    m[24..32].copy_from_slice(&checksum(seq, u64::from(id), sent).to_le_bytes());
    m
}

/// (sequence, producer, send time), if the message is whole.
fn decode(m: &[u8]) -> Option<(u64, u64, u64)> {
    if m.len() != SIZE {
        return None;
    }
    let w = |i: usize| u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    (checksum(w(0), w(1), w(2)) == w(3)).then(|| (w(0), w(1), w(2)))
}

fn producer(id: u32, name: &str, count: u64) -> shmq::Result<()> {
    let mut tx = Sender::<Spsc>::create_or_open(name, &Options::new())?;
    let half = count / 2;
    for seq in 0..count {
        if seq == half {
            std::thread::sleep(Duration::from_secs(1));
        }
        if seq >= half && seq < half + PACED {
            std::thread::sleep(Duration::from_millis(2));
        }
        tx.send(&encode(seq, id))?;
    }
    Ok(())
}

/// What one channel's task found.
struct Report {
    received: u64,
    verified: bool,
    /// Send-to-receipt times of the paced messages, in ns.
    wakes: Vec<u64>,
    /// (`CLOCK_MONOTONIC`, process CPU time) when the first half had all
    /// arrived, and when the first message after the pause did, in ns.
    half_done: (u64, u64),
    resumed: (u64, u64),
}

/// Longest wait for one message before the aggregator gives up.
const PATIENCE: Duration = Duration::from_secs(30);

async fn receive(id: u64, mut rx: Receiver<Spsc>, count: u64) -> Report {
    let half = count / 2;
    let mut r = Report {
        received: 0,
        verified: true,
        wakes: Vec::new(),
        half_done: (0, 0),
        resumed: (0, 0),
    };
    let mut buf = Vec::with_capacity(SIZE);
    while r.received < count {
        match tokio::time::timeout(PATIENCE, rx.recv_into_async(&mut buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("channel {id}: {e}");
                r.verified = false;
                break;
            }
            Err(_) => {
                eprintln!("channel {id}: nothing for {PATIENCE:?}");
                r.verified = false;
                break;
            }
        }
        let now = mono_ns();
        match decode(&buf) {
            Some((seq, from, sent)) if seq == r.received && from == id => {
                if seq + 1 == half {
                    r.half_done = (now, process_cpu_ns());
                }
                if seq == half {
                    r.resumed = (now, process_cpu_ns());
                }
                if seq >= half && seq < half + PACED {
                    r.wakes.push(now.saturating_sub(sent));
                }
            }
            other => {
                eprintln!(
                    "channel {id}: message {} is {other:?} (expected that sequence number)",
                    r.received
                );
                r.verified = false;
            }
        }
        r.received += 1;
    }
    r
}

fn aggregate(args: &Args) -> shmq::Result<bool> {
    let k = args.inputs.max(1);
    let n = args.count.max(2);
    let names: Vec<String> = (0..k)
        .map(|i| shmq::unique_name(&format!("agg{i}")).map_err(shmq::Error::from))
        .collect::<shmq::Result<_>>()?;
    let rxs: Vec<Receiver<Spsc>> = names
        .iter()
        .map(|name| Receiver::<Spsc>::create(name, &Options::new()))
        .collect::<shmq::Result<_>>()?;
    let exe = std::env::current_exe().expect("current_exe");
    let children: Vec<std::process::Child> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            std::process::Command::new(&exe)
                .args(["--producer", &i.to_string(), "--name", name])
                .args(["--count", &n.to_string()])
                .spawn()
                .expect("spawn a producer")
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reports = rt.block_on(async {
        // The timer the aggregator also serves.
        let counter = ticks.clone();
        let timer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                // Relaxed: a count read after the runtime is gone.
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let mut set = tokio::task::JoinSet::new();
        for (i, rx) in rxs.into_iter().enumerate() {
            set.spawn(receive(i as u64, rx, n));
        }
        let mut reports = Vec::new();
        while let Some(r) = set.join_next().await {
            reports.push(r.expect("a receiving task"));
        }
        timer.abort();
        reports
    });
    drop(rt);
    let mut children_ok = true;
    for mut c in children {
        children_ok &= c.wait().map(|s| s.success()).unwrap_or(false);
    }

    let received: u64 = reports.iter().map(|r| r.received).sum();
    let verified =
        children_ok && received == u64::from(k) * n && reports.iter().all(|r| r.verified);
    let start = reports.iter().map(|r| r.half_done).max_by_key(|x| x.0);
    let end = reports.iter().map(|r| r.resumed).min_by_key(|x| x.0);
    let idle_cpu_pct = match (start, end) {
        (Some(s), Some(e)) if e.0 > s.0 => {
            Some(100.0 * (e.1.saturating_sub(s.1)) as f64 / (e.0 - s.0) as f64)
        }
        _ => None,
    };
    let mut wakes: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.wakes.iter().copied())
        .collect();
    wakes.sort_unstable();
    let p50_wake_us = wakes.get(wakes.len() / 2).map(|&ns| ns as f64 / 1000.0);
    println!(
        "{}",
        json!({
            "received": received,
            "verified": verified,
            "idle_cpu_pct": idle_cpu_pct,
            "p50_wake_us": p50_wake_us,
            "idle_window_ms": match (start, end) {
                (Some(s), Some(e)) => Some(e.0.saturating_sub(s.0) as f64 / 1e6),
                _ => None,
            },
            "wake_samples": wakes.len(),
            // Relaxed: the timer task is gone.
            "timer_ticks": ticks.load(std::sync::atomic::Ordering::Relaxed),
        })
    );
    Ok(verified)
}

fn main() {
    let args = Args::parse();
    if let (Some(id), Some(name)) = (args.producer, args.name.as_deref()) {
        if let Err(e) = producer(id, name, args.count.max(2)) {
            eprintln!("producer {id}: {e}");
            std::process::exit(1);
        }
        return;
    }
    match aggregate(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("async_aggregator: {e}");
            std::process::exit(1);
        }
    }
}
