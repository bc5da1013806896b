//! The command line of the harness programs (`examples/pingpong`,
//! `examples/throughput`): one harness's flags and nothing else.
//!
//! ```no_run
//! let args = shmq_bench::cli::parse::<shmq_bench::pingpong::Args>("Round-trip latency");
//! shmq_bench::pingpong::run(&args)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use clap::{CommandFactory, FromArgMatches, Parser};

/// The rows a harness measures, by name: `pingpong`'s transports and
/// `throughput`'s flows. Written once here: the set of this build (the default
/// rows, then the peers when the feature `peers` is on) and the lookup by name,
/// with its error.
pub trait Rows: Copy + Eq + std::fmt::Display + 'static {
    /// The default rows, in table order.
    const DEFAULT: &'static [Self];
    /// The peers (feature `peers`; none without it), after the default rows.
    const PEERS: &'static [Self];

    /// Rows run only when asked for by name (or by a flag of their own).
    fn named_only() -> Vec<Self> {
        Vec::new()
    }

    /// The peers of this build for which `present` holds, in table order.
    fn peers_among(present: impl Fn(Self) -> bool) -> Vec<Self> {
        Self::PEERS
            .iter()
            .copied()
            .filter(|&r| present(r))
            .collect()
    }

    /// Every row of this build: [`Rows::DEFAULT`], then [`Rows::PEERS`].
    fn every() -> Vec<Self> {
        Self::DEFAULT.iter().chain(Self::PEERS).copied().collect()
    }

    /// The row whose name (its `Display`) is `s`, among every row of this build
    /// and [`Rows::named_only`].
    ///
    /// # Errors
    /// An unknown name, with the known ones.
    fn named(s: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let known = || Self::every().into_iter().chain(Self::named_only());
        known().find(|r| r.to_string() == s.trim()).ok_or_else(|| {
            let names: Vec<String> = known().map(|r| r.to_string()).collect();
            format!("unknown transport {s:?} (known: {})", names.join(", ")).into()
        })
    }
}

/// A command line made of the flags `A` alone, such as [`crate::pingpong::Args`]
/// or [`crate::throughput::Args`].
#[derive(Parser, Debug)]
pub struct Cli<A: clap::Args> {
    /// The harness's flags.
    #[command(flatten)]
    pub args: A,
}

/// This process's arguments as the flags `A`, for a program that `--help`
/// describes as `about`. On `--help` or a usage error it prints what clap prints
/// and exits (status 0 or 2), as [`Parser::parse`] does.
pub fn parse<A: clap::Args>(about: &'static str) -> A {
    let mut cmd = Cli::<A>::command().about(about);
    let mut matches = cmd.clone().get_matches();
    match Cli::<A>::from_arg_matches_mut(&mut matches) {
        Ok(cli) => cli.args,
        Err(e) => e.format(&mut cmd).exit(),
    }
}

/// `argv` (without the program's name) parsed as the flags `A`.
#[cfg(test)]
pub(crate) fn try_parse_from<A: clap::Args>(argv: &[&str]) -> Result<A, clap::Error> {
    Cli::<A>::try_parse_from(std::iter::once("test").chain(argv.iter().copied())).map(|c| c.args)
}

/// Flags parsed from a command line written out in a test.
#[cfg(test)]
pub(crate) trait FromArgv: clap::Args {
    /// `argv` (without the program's name) parsed as these flags; panics on a
    /// usage error.
    fn from_argv(argv: &[&str]) -> Self {
        try_parse_from(argv).unwrap()
    }
}

#[cfg(test)]
impl<A: clap::Args> FromArgv for A {}
