//! One-way throughput between processes: shmq SPSC and MPSC (1, 2, 4 producer
//! processes) against pipes and UNIX stream sockets, with `memcpy` as the copy
//! limit; messages/s and GB/s at 64 B, 4 KiB and 64 KiB.
//!
//! ```text
//! cargo run --release --example throughput -- [--size 64,4096,65536]
//!     [--transport shmq-spsc,shmq-mpsc,pipe,uds-stream,memcpy] [--producers 1,2,4] [--json]
//! ```
//! The harness lives in `shmq-bench` (`shmq_bench::throughput`).

use shmq_bench::{cli, throughput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<throughput::Args>(
        "One-way throughput: shmq against pipes, UNIX sockets and memcpy",
    );
    throughput::run(&args)
}
