//! Latency and throughput harness for shmq and the transports it is compared
//! with: the programs behind `examples/pingpong`, `examples/throughput` and
//! `shmq bench`, and the cross-process pieces of the criterion benches.
//!
//! Every comparison runs each transport in the same harness, in the same run:
//! - [`pingpong`]: round-trip latency between two processes pinned to two CPUs,
//!   percentiles from HdrHistogram, against the hardware floors (a bare atomic
//!   ping-pong, a bare futex ping-pong) and the kernel transports (pipe, UNIX
//!   sockets, TCP loopback, eventfd) and a hand-made `raw_sync` queue;
//! - [`throughput`]: one-way messages/s and GB/s, shmq SPSC and MPSC (producer
//!   processes) against pipes and UNIX sockets, with `memcpy` as the copy limit;
//!   on request, fan-out: one shmq broadcast channel to N subscriber processes
//!   against N SPSC channels fed in turn.
//!
//! # Examples
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     args: shmq_bench::pingpong::Args,
//! }
//! shmq_bench::pingpong::run(&Cli::parse().args)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Map
//! - [`pingpong::Args`], [`pingpong::run`], [`pingpong::measure`]: the latency table.
//! - [`throughput::Args`], [`throughput::run`], [`throughput::measure`]: the rate table.
//! - [`echo::Echo`], [`echo::Transport`]: a forked echo server over any transport,
//!   for harnesses such as criterion's `iter_custom`.
//! - [`cli::parse`]: the command line of a harness program (its flags alone).
//! - [`placement`]: the probe that labels each measurement `close` or `far`.
//! - [`stats`]: histograms and percentiles.
#![deny(unsafe_code)]

pub mod cli;
pub mod echo;
pub mod pingpong;
pub mod placement;
mod plot;
mod process;
mod shm;
pub mod stats;
mod table;
pub mod throughput;
