//! `shmq peek NAME`: the messages waiting in a channel, printed without
//! receiving them.
//!
//! The library copies them out of the segment without attaching or writing
//! (`shmq::inspect::peek_messages`): for SPSC and MPSC the committed messages
//! from the consumer's position on, for broadcast every message the ring still
//! holds, from the oldest. Byte messages are printed one per line as text
//! (invalid UTF-8 replaced), or in hexadecimal with `--hex`; a typed channel's
//! messages are fixed-size records, printed in hexadecimal, each labelled with
//! the message type its header records.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use crate::cli::PeekArgs;
use crate::error::{CliError, Result};
use crate::inspect::fetch;
use crate::report;

/// Prints the waiting messages (at most `--count`), oldest first. What is
/// not shown, or that nothing waits, is said on stderr.
pub fn run(args: &PeekArgs) -> Result<ExitCode> {
    let r = fetch(&args.name)?;
    let limit = usize::try_from(args.count).unwrap_or(usize::MAX);
    let max = limit.saturating_add(1);
    let found = crate::cli::Target::of(&args.name).peek_messages(max)?;
    let mut messages = found.ok_or_else(|| {
        CliError::msg(format!(
            "{} is not a shmq segment (no shmq header): left alone",
            args.name
        ))
    })?;
    let more = messages.len() > limit;
    messages.truncate(limit);
    let typed = r
        .message_type
        .is_some()
        .then(|| report::message_type_short(&r));
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (i, m) in messages.iter().enumerate() {
        match &typed {
            Some(name) => writeln!(out, "{name} [{i}]: {}", hex(m))?,
            None if args.hex => writeln!(out, "{}", hex(m))?,
            None => {
                out.write_all(String::from_utf8_lossy(m).as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    if messages.is_empty() {
        eprintln!("shmq: no messages waiting in {}", args.name);
    } else if more {
        eprintln!(
            "shmq: more than {limit} messages wait in {}; the first {limit} are shown (--count)",
            args.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes in hexadecimal, two digits each, separated by spaces.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_spaced_pairs() {
        assert_eq!(hex(b""), "");
        assert_eq!(hex(&[0, 0xab, 7]), "00 ab 07");
    }
}
