//! Round-trip latency between a parent and a forked child over two anonymous
//! SPSC channels.
//!
//! ```text
//! fork_pingpong --iters N [--size BYTES] [--wait spin|adaptive|park]
//! ```
//! The parent sends a message, the child echoes it back, and the parent times each
//! round trip; it prints p50, p90, p99, p99.9 and max in nanoseconds. The two
//! processes are pinned to different CPUs when there are at least two.

use std::time::Instant;

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use nix::unistd::{ForkResult, fork};
use shmq::{Options, WaitStrategy, spsc};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Wait {
    Spin,
    Adaptive,
    Park,
}

#[derive(Parser, Debug)]
#[command(about = "Round-trip latency across fork over shmq")]
struct Args {
    /// Round trips to time.
    #[arg(long, default_value_t = 100_000)]
    iters: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 8)]
    size: usize,
    /// How both sides wait.
    #[arg(long, value_enum, default_value_t = Wait::Adaptive)]
    wait: Wait,
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        // Best effort: a 1-CPU machine or a restricted cpuset just runs unpinned.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn main() -> shmq::Result<()> {
    let a = Args::parse();
    let strategy = match a.wait {
        Wait::Spin => WaitStrategy::Spin,
        Wait::Adaptive => WaitStrategy::default(),
        Wait::Park => WaitStrategy::Park,
    };
    let opts = Options::new().capacity(1 << 16).wait(strategy);
    let (mut ping_tx, mut ping_rx) = spsc::anonymous(&opts)?;
    let (mut pong_tx, mut pong_rx) = spsc::anonymous(&opts)?;
    let two_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let warmup = (a.iters / 10).max(100);
    let total = warmup + a.iters;
    // SAFETY: this program has a single thread when it forks.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(ping_tx);
            drop(pong_rx);
            if two_cpus {
                pin(1);
            }
            for _ in 0..total {
                let m = ping_rx.recv()?;
                let mut out = pong_tx.reserve(m.len())?;
                out.copy_from_slice(&m);
                out.commit();
            }
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(ping_rx);
            drop(pong_tx);
            if two_cpus {
                pin(0);
            }
            let msg = vec![0x5a; a.size];
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
            for i in 0..total {
                let t = Instant::now();
                ping_tx.send(&msg)?;
                let back = pong_rx.recv()?;
                let ns = t.elapsed().as_nanos() as u64;
                assert_eq!(back.len(), a.size, "echo of the wrong length");
                drop(back);
                if i >= warmup {
                    hist.record(ns.max(1)).expect("in range");
                }
            }
            let _ = nix::sys::wait::waitpid(child, None);
            println!(
                "fork_pingpong wait={:?} size={} iters={}: p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
                a.wait,
                a.size,
                a.iters,
                hist.value_at_quantile(0.5),
                hist.value_at_quantile(0.9),
                hist.value_at_quantile(0.99),
                hist.value_at_quantile(0.999),
                hist.max()
            );
        }
    }
    Ok(())
}
