//! `shmq`: the command-line tool for shmq channels.
//!
//! It looks at, cleans up, pipes through and benchmarks the shared-memory
//! channels that the `shmq` library makes in `/dev/shm`:
//!
//! ```text
//! shmq ls                      every shmq segment: kind, fill, endpoints, stale or not
//! shmq inspect NAME            the header and control block, decoded and checked
//! shmq rm NAME [--force]       remove one (refuses a segment in use without --force)
//! shmq gc [--dry-run]          remove every stale segment
//! shmq send NAME               stdin to a channel, one message per line (or --raw)
//! shmq recv NAME [--count N]   a channel to stdout, one line per message (or --raw)
//! shmq peek NAME [--hex]       the messages waiting in a channel, left there
//! shmq top NAME                live message and byte rates, fill level
//! shmq bench [ARGS]            the round-trip latency comparison (runs shmq-bench)
//! ```
//!
//! `seq 1 100000 | shmq send /x` in one shell and `shmq recv /x --count 100000` in
//! another reproduce the input exactly, whichever starts first.
//!
//! Segments are recognised by their header, never by their name alone: the
//! listing commands skip other programs' objects, and a damaged shmq segment is
//! shown as damaged with every problem found named. Nothing here writes to a
//! segment except `send` and `recv`, which attach as an ordinary endpoint
//! (`peek` reads the waiting messages without attaching).
//!
//! Output is a coloured table on a terminal and plain text otherwise (`--color`
//! overrides, `NO_COLOR` is honoured); the listings (`ls`, `inspect`, `gc`, `top`)
//! also speak JSON with `--json`. Errors are one line on stderr; the exit status
//! is 0 on success, 1 on an error, 2 on a usage error.
//!
//! # Map of the crate
//! - [`cli`]: the command line (clap derive).
//! - [`ls`], [`inspect`], [`remove`] (`rm`, `gc`), [`pipe`] (`send`, `recv`),
//!   [`peek`], [`top`], [`bench`] (runs the `shmq-bench` program): one module per command.
//! - [`report`]: a [`shmq::inspect::Report`] summarised for tables and as JSON.
//! - [`out`]: colours, tables and number formatting; [`error`]: the one-line error.
#![deny(unsafe_code)]

mod bench;
mod cli;
mod error;
mod inspect;
mod ls;
mod out;
mod peek;
mod pipe;
mod remove;
mod report;
mod signal;
mod top;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::out::Out;

/// Parses the command line, runs the command, and turns an error into one
/// line on stderr and exit status 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out::new(cli.color);
    let result = match cli.command {
        Command::Ls(a) => ls::run(&a, &out),
        Command::Inspect(a) => inspect::run(&a, &out),
        Command::Rm(a) => remove::rm(&a),
        Command::Gc(a) => remove::gc(&a, &out),
        Command::Send(a) => pipe::send(&a),
        Command::Recv(a) => pipe::recv(&a),
        Command::Peek(a) => peek::run(&a),
        Command::Top(a) => top::run(&a, &out),
        Command::Bench(a) => bench::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmq: {e}");
            ExitCode::FAILURE
        }
    }
}
