//! One-way throughput between processes: shmq SPSC (bytes, and a 64-byte typed
//! `Pod`) and MPSC (1, 2, 4 producer processes) against pipes and UNIX stream
//! sockets, with `floor-stream` (a bare ring in shared memory) as the ceiling
//! and `memcpy` as the copy limit; messages/s and GB/s at 64 B, 4 KiB and 64 KiB.
//!
//! ```text
//! cargo run --release --example throughput -- [--size 64,4096,65536]
//!     [--transport floor-stream,shmq-spsc,shmq-spsc-typed,shmq-mpsc,pipe,uds-stream,memcpy]
//!     [--producers 1,2,4] [--batch N] [--rounds N] [--json] [--goals]
//! cargo run --release --example throughput --features peers   # with ringfire and iceoryx2
//! cargo run --release --example throughput -- --fanout --size 64,4096 [--subscribers 1,2,4,8]
//! ```
//! `--fanout` measures one broadcast channel to N subscriber processes
//! (`shmq-broadcast-N`) beside N SPSC channels fed in turn (`spsc-fanout-N`).
//! Each row says on which placement of the two CPUs (`close`, `far`) it ran, and
//! its ratios are to the rows of the same placement; `--goals` adds the
//! project's internal goals.
//! The harness lives in `shmq-bench` (`shmq_bench::throughput`).

use shmq_bench::{cli, throughput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<throughput::Args>(
        "One-way throughput: shmq against the stream floor, pipes, UNIX sockets and memcpy",
    );
    throughput::run(&args)
}
