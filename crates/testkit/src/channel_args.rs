//! The command line the `producer` and `consumer` example programs share:
//! which channel (a name, or a file with its durability), its capacity and
//! kind (SPSC, MPSC or broadcast), and how an end reaches it.

use std::path::PathBuf;

use shmq::{Durability, Options, Result};

/// Which channel an example program uses and how it creates it
/// (`#[command(flatten)]` into the program's own arguments).
#[derive(clap::Args, Debug)]
pub struct ChannelArgs {
    /// Channel name (e.g. /demo).
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub name: Option<String>,
    /// A file channel at this path instead of a named one (created if need
    /// be, on any local file system; it outlives every process and, with
    /// `--durability`, a power loss).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Durability policy of a file channel this program creates: none,
    /// every-commit, periodic:MS:MESSAGES.
    #[arg(long, requires = "file", value_parser = crate::parse_durability)]
    pub durability: Option<Durability>,
    /// Ring capacity in bytes, if this program creates the channel.
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Use an MPSC channel.
    #[arg(long)]
    pub mpsc: bool,
    /// Use a broadcast channel: the producer is its publisher, each consumer
    /// one of its subscribers (each receives every message sent after it
    /// joined).
    #[arg(long, conflicts_with = "mpsc")]
    pub broadcast: bool,
}

impl ChannelArgs {
    /// `opts` with what these arguments set: the capacity, the durability
    /// and, for MPSC, [`EXAMPLE_PRODUCERS`](crate::msg::EXAMPLE_PRODUCERS)
    /// producer slots.
    pub fn options(&self, mut opts: Options) -> Options {
        if let Some(c) = self.capacity {
            opts = opts.capacity(c);
        }
        if let Some(d) = self.durability {
            opts = opts.durability(d);
        }
        if self.mpsc {
            opts = opts.max_producers(crate::msg::EXAMPLE_PRODUCERS);
        }
        opts
    }

    /// The file channel at `--file` through `at_file`, or the channel named
    /// `--name` through `named`: an end's `create_or_open_file` and
    /// `create_or_open`.
    pub fn create_or_open<T>(
        &self,
        opts: &Options,
        at_file: fn(PathBuf, &Options) -> Result<T>,
        named: fn(&str, &Options) -> Result<T>,
    ) -> Result<T> {
        match (&self.file, &self.name) {
            (Some(path), _) => at_file(path.clone(), opts),
            (None, Some(name)) => named(name, opts),
            (None, None) => unreachable!("clap requires --name or --file"),
        }
    }
}
