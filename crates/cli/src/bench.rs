//! `shmq bench ARGS...`: runs the `shmq-bench` program (the round-trip latency
//! comparison, built from the `shmq-bench` crate) with the same arguments, in
//! place of this process, so that its output, exit status and Ctrl-C are its
//! own. The tool itself does not link the harness.
//!
//! The program is looked up in `$SHMQ_BENCH` (a path), then next to the running
//! `shmq`, then on `PATH`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::cli::BenchArgs;
use crate::error::{CliError, Result};

/// The program's file name.
pub const BENCH_BIN: &str = "shmq-bench";

/// Whether `p` is a file someone may execute.
fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where `shmq-bench` is: `$SHMQ_BENCH`, next to this executable, or on `PATH`.
fn locate() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHMQ_BENCH") {
        return Ok(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(BENCH_BIN)));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(BENCH_BIN));
    if let Some(found) = beside
        .iter()
        .cloned()
        .chain(on_path)
        .find(|p| is_executable(p))
    {
        return Ok(found);
    }
    let beside = beside.map_or_else(String::new, |p| format!(" at {}", p.display()));
    Err(CliError::msg(format!(
        "shmq bench runs the {BENCH_BIN} program, which is not installed (not{beside}, \
         nor on PATH): build it with `cargo build --release -p shmq-bench` (it lands next \
         to shmq) or install it with `cargo install --path crates/bench`"
    )))
}

/// Replaces this process with `shmq-bench ARGS...`; returns only if that fails.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    let bin = locate()?;
    let err = Command::new(&bin).args::<&[OsString], _>(&args.args).exec();
    Err(CliError::msg(format!(
        "cannot run {} for shmq bench: {err}",
        bin.display()
    )))
}
