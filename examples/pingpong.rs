//! Round-trip latency between two processes over shmq and the transports it is
//! compared with, in one run: the hardware floors, shmq with each wait strategy,
//! pipes, UNIX sockets, TCP loopback, eventfd and a `raw_sync` queue.
//!
//! ```text
//! cargo run --release --example pingpong -- [--iters N] [--size 8,64,1024,4096]
//!     [--transport floor-spin,shmq-spin,pipe,...] [--json] [--plot FILE.svg] [--goals]
//! cargo run --release --example pingpong --features peers   # with ringfire and iceoryx2
//! ```
//! Each row says on which placement of the two CPUs (`close`, `far`) it ran, and
//! its ratios are to the rows of the same placement; `--goals` adds the
//! project's internal goals.
//! The harness lives in `shmq-bench` (`shmq_bench::pingpong`), which `shmq bench`
//! runs too.

use shmq_bench::{cli, pingpong};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<pingpong::Args>(
        "Round-trip latency: shmq against the floors and the kernel transports",
    );
    pingpong::run(&args)
}
