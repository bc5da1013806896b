//! `shmq-bench`: the round-trip latency comparison (`shmq_bench::pingpong`) as a
//! program of its own. `shmq bench ARGS...` runs it with the same arguments, so
//! that the `shmq` tool does not carry the harness and its dependencies.
//!
//! ```text
//! shmq-bench [--iters N] [--size 8,64,1024,4096] [--transport floor-spin,shmq-spin,pipe,...]
//!     [--json] [--plot FILE.svg]
//! ```
//! Exit status 0 on success, 1 on an error (one line on stderr), 2 on a usage error.

use std::process::ExitCode;

use clap::Parser;

/// Round-trip latency: shmq against the floors and the kernel transports.
#[derive(Parser, Debug)]
#[command(name = "shmq-bench", version)]
struct Cli {
    /// The latency comparison's flags.
    #[command(flatten)]
    args: shmq_bench::pingpong::Args,
}

fn main() -> ExitCode {
    match shmq_bench::pingpong::run(&Cli::parse().args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmq-bench: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
