//! Many producer processes into one consumer: forks P producers that each send N
//! verifiable messages into one anonymous MPSC channel, receives and verifies them
//! all, and prints the total rate as JSON.
//!
//! ```text
//! mpsc_fanin [--producers P] [--count N] [--size BYTES]
//! ```

use std::time::Instant;

use clap::Parser;
use nix::unistd::{ForkResult, fork};
use shmq::{Options, mpsc};
use shmq_testkit::msg;

#[derive(Parser, Debug)]
#[command(about = "Fan P producer processes into one shmq MPSC channel")]
struct Args {
    /// Producer processes.
    #[arg(long, default_value_t = 4)]
    producers: u16,
    /// Messages per producer.
    #[arg(long, default_value_t = 250_000)]
    count: u64,
    /// Bytes per message (at least 16).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

fn main() -> shmq::Result<()> {
    let a = Args::parse();
    assert!(
        a.size >= msg::MIN_SIZE,
        "--size must be at least {}",
        msg::MIN_SIZE
    );
    let opts = Options::new()
        .capacity(1 << 20)
        .max_producers(a.producers.max(1));
    let (tx, mut rx) = mpsc::anonymous(&opts)?;
    let started = Instant::now();
    let mut children = Vec::new();
    for id in 0..a.producers {
        let mut mine = tx.try_clone()?;
        // SAFETY: this program has a single thread when it forks.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                drop(rx);
                for seq in 0..a.count {
                    let mut slot = mine.reserve(a.size)?;
                    msg::fill(&mut slot, seq, u32::from(id));
                    slot.commit();
                }
                std::process::exit(0);
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }
    drop(tx);
    rx.expect_producers(u32::from(a.producers))?;
    let mut next = vec![0u64; usize::from(a.producers)];
    let mut buf = Vec::new();
    let mut verified = true;
    let total = a.count * u64::from(a.producers);
    let mut received = 0;
    while received < total {
        match rx.recv_into(&mut buf) {
            Ok(()) => {}
            Err(e) if e.is_disconnected() => break,
            Err(e) => return Err(e),
        }
        received += 1;
        match msg::check(&buf) {
            Ok(h) if next.get(h.producer as usize) == Some(&h.seq) => {
                next[h.producer as usize] += 1
            }
            _ => verified = false,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    for c in children {
        let _ = nix::sys::wait::waitpid(c, None);
    }
    println!(
        "{}",
        serde_json::json!({
            "producers": a.producers,
            "received": received,
            "verified": verified && received == total,
            "msgs_per_sec": (received as f64 / secs).round(),
        })
    );
    if !(verified && received == total) {
        std::process::exit(1);
    }
    Ok(())
}
