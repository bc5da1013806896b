//! Latency and throughput harness for shmq and the transports it is compared
//! with (being written).

pub mod pingpong {
    //! The round-trip latency comparison: `examples/pingpong` and `shmq bench`.
    use std::path::PathBuf;

    /// Flags of the latency comparison, shared by `examples/pingpong` and
    /// `shmq bench`.
    #[derive(clap::Args, Debug, Clone)]
    pub struct Args {
        /// Round trips per transport and size.
        #[arg(long, default_value_t = 100_000)]
        pub iters: u64,
        /// Message sizes in bytes (a comma-separated list).
        #[arg(long, value_delimiter = ',', default_values_t = [8usize, 64])]
        pub size: Vec<usize>,
        /// Transports to run (a comma-separated list; default: all).
        #[arg(long, value_delimiter = ',')]
        pub transport: Vec<String>,
        /// One JSON object per row instead of a table.
        #[arg(long)]
        pub json: bool,
        /// Draw latency percentile curves into this SVG file.
        #[arg(long)]
        pub plot: Option<PathBuf>,
    }

    /// Runs the comparison and prints the results.
    ///
    /// # Errors
    /// Any failure to set up or run a transport.
    pub fn run(_args: &Args) -> Result<(), Box<dyn std::error::Error>> {
        Err("the latency harness is being written".into())
    }
}
