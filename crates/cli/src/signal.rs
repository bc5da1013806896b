//! Ctrl-C as a flag, for the commands that run until interrupted (`top`, `recv`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{CliError, Result};

/// Exit status of a command ended by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// Set once SIGINT or SIGTERM has arrived.
#[derive(Clone, Debug)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Catches SIGINT and SIGTERM from now on: the first one sets the flag, so the
    /// command can finish cleanly (restore the terminal, close its endpoint); a
    /// second one, should the command not get to check the flag (stuck writing to
    /// a full pipe, say), ends the process at once with status 130.
    ///
    /// # Errors
    /// If a handler cannot be installed.
    pub fn catch() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal
            // (signal-hook's documented pattern for "second Ctrl-C terminates").
            signal_hook::flag::register_conditional_shutdown(
                sig,
                i32::from(INTERRUPTED),
                flag.clone(),
            )
            .map_err(|e| CliError::msg(format!("cannot catch signal {sig}: {e}")))?;
            signal_hook::flag::register(sig, flag.clone())
                .map_err(|e| CliError::msg(format!("cannot catch signal {sig}: {e}")))?;
        }
        Ok(Interrupt(flag))
    }

    /// Whether a signal has arrived.
    pub fn is_set(&self) -> bool {
        // Relaxed: a plain flag, no data is published through it.
        self.0.load(Ordering::Relaxed)
    }
}
