//! The one error a command returns: a single line for stderr.

use std::fmt;
use std::io;

/// A command's failure, shown as `shmq: <line>` with exit status 1.
#[derive(Debug)]
pub struct CliError {
    line: String,
    broken_pipe: bool,
}

impl CliError {
    /// A failure described by `line`.
    pub fn msg(line: impl Into<String>) -> Self {
        CliError {
            line: line.into(),
            broken_pipe: false,
        }
    }

    /// Whether stdout was closed under us (`shmq ls | head`): the reader has what
    /// it wanted, so this ends the command quietly instead of as an error.
    pub fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep it one line whatever a source error contains.
        f.write_str(&self.line.replace('\n', " "))
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError {
            broken_pipe: e.kind() == io::ErrorKind::BrokenPipe,
            line: e.to_string(),
        }
    }
}

impl From<shmq::Error> for CliError {
    fn from(e: shmq::Error) -> Self {
        CliError::msg(e.to_string())
    }
}

/// `Result` with [`CliError`].
pub type Result<T, E = CliError> = std::result::Result<T, E>;
