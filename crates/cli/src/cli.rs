//! The command line: every subcommand and flag, parsed by clap.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Look at, clean up, pipe through and benchmark shmq shared-memory channels.
#[derive(Parser, Debug)]
#[command(name = "shmq", version, about, long_about = None)]
pub struct Cli {
    /// When to colour the output: `auto` colours a terminal unless NO_COLOR is set.
    #[arg(long, value_enum, default_value_t = ColorMode::Auto, global = true)]
    pub color: ColorMode,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorMode {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every shmq segment in /dev/shm, or every file channel in DIR
    /// (other objects are skipped).
    Ls(LsArgs),
    /// Decode and check one segment's header, control block and endpoints
    /// (and a file channel's durability policy and last sync).
    Inspect(InspectArgs),
    /// Remove one segment; refuses one in use unless --force.
    Rm(RmArgs),
    /// Remove every stale segment (no process has it open, no endpoint alive).
    ///
    /// A stale channel that still holds messages no consumer has received (a
    /// producer sent them and exited before its consumer started, say) is kept,
    /// and gc says so: those messages are data, and a consumer that opens the
    /// channel later receives them. --discard-messages removes such channels too.
    Gc(GcArgs),
    /// Send stdin into a channel: one message per line, or fixed-size chunks.
    ///
    /// Into an MPSC channel it sends as one more producer, into a broadcast
    /// channel as its publisher (refused while another publisher is attached).
    ///
    /// Each line goes out without its newline (`shmq recv` puts it back). The
    /// channel is created if need be, and messages wait in it for a receiver that
    /// starts later; when the ring is full, sending waits for room. At end of input
    /// the channel is closed. Exit status 0, or 1 on an error (the receiver went
    /// away, a line longer than the channel's largest message, ...).
    ///
    /// A line longer than the channel's largest message (about half its
    /// capacity) stops sending with an error naming that limit: the lines
    /// before it have been sent; it and the rest of the input are not. Such a
    /// line is never buffered whole, however long it is.
    Send(SendArgs),
    /// Write a channel's messages to stdout: one line per message, or raw bytes.
    ///
    /// From an MPSC channel it receives as its consumer; from a broadcast
    /// channel as a lossy subscriber, which never holds the publisher back:
    /// when lapped, it says on stderr how many messages it missed and goes on.
    ///
    /// The channel is created if need be. Without --count, stops once the sender
    /// has closed the channel and everything it sent is written (exit status 0);
    /// a sender that died without closing may have been cut short (status 1).
    /// Ctrl-C closes the channel cleanly (status 130).
    Recv(RecvArgs),
    /// Print the messages waiting in a channel without receiving them.
    ///
    /// SPSC and MPSC: the committed messages from the consumer's position on;
    /// broadcast: every message the ring still holds, from the oldest. Nothing
    /// is written to the channel: a receiver still gets them all. Byte messages
    /// are printed one per line as text (invalid UTF-8 replaced) or with --hex
    /// in hexadecimal; a typed channel's records in hexadecimal, each labelled
    /// with its message type.
    Peek(PeekArgs),
    /// Show a channel's message and byte rates and fill level, live.
    ///
    /// Messages per second come from the consumer's received counter, bytes per
    /// second from its ring position (frame headers included). On a terminal the
    /// display is redrawn in place; otherwise one line per refresh is printed.
    /// Ends after --count refreshes or on Ctrl-C (status 0).
    Top(TopArgs),
    /// Run the round-trip latency comparison: the shmq-bench program, with these
    /// arguments (`shmq bench --help` lists them).
    Bench(BenchArgs),
}

/// `shmq bench`: every argument goes to the `shmq-bench` program unchanged
/// (`--help` included).
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// Arguments of shmq-bench (--iters, --size, --transport, --json, --plot, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}

/// `shmq ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// A directory of file channels to list instead of /dev/shm.
    pub dir: Option<std::path::PathBuf>,
    /// Only segments whose name starts with this (e.g. /myapp-).
    #[arg(long)]
    pub prefix: Option<String>,
    /// One JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `shmq inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Segment name, with its leading slash (e.g. /orders), or the path of a
    /// file channel (a path with a `/` after its first character: ./orders, /var/lib/app/orders).
    pub name: String,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `shmq rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Segment name, with its leading slash, or the path of a file channel (a
    /// `/` after its first character: `./q`, `/var/lib/app/q`).
    pub name: String,
    /// Remove it even if a process has it open or an endpoint is alive (those
    /// processes keep their mapping; nobody new can open it).
    #[arg(long, short)]
    pub force: bool,
}

/// `shmq gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Only segments whose name starts with this (e.g. /myapp-).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only say what would be removed (and what kept).
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Also remove stale channels whose messages are waiting for a consumer,
    /// discarding those messages (by default such channels are kept).
    #[arg(long)]
    pub discard_messages: bool,
    /// One JSON array of actions instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `shmq send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Channel name, with its leading slash, or the path of a file channel
    /// (e.g. ./orders). Created if it does not exist.
    pub name: String,
    /// Durability policy of a file channel this command creates: none,
    /// every-commit, periodic:MS:MESSAGES (see the README's "Durable channels").
    #[arg(long, value_parser = parse_durability)]
    pub durability: Option<shmq::Durability>,
    /// Send fixed-size chunks of stdin instead of lines.
    #[arg(long)]
    pub raw: bool,
    /// Chunk size in bytes with --raw (the last chunk may be shorter).
    #[arg(long, default_value_t = 65536, requires = "raw",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk: u64,
    /// Ring capacity in bytes if this side creates the channel (a power of two
    /// from 64 B to 4 GiB; default 1 MiB). A message can be at most half of it.
    #[arg(long)]
    pub capacity: Option<u64>,
}

/// `shmq recv`.
#[derive(Args, Debug)]
pub struct RecvArgs {
    /// Channel name, with its leading slash, or the path of a file channel
    /// (e.g. ./orders). Created if it does not exist.
    pub name: String,
    /// Stop after this many messages (default: until the sender has gone and the
    /// channel is drained).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Write messages as they are, without a newline after each.
    #[arg(long)]
    pub raw: bool,
    /// Ring capacity in bytes if this side creates the channel (default 1 MiB).
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Give up (exit status 1) when no message has come for this long, e.g. 500ms,
    /// 10s, 2m (a bare number is seconds).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `shmq peek`.
#[derive(Args, Debug)]
pub struct PeekArgs {
    /// Channel name, with its leading slash, or the path of a file channel.
    pub name: String,
    /// Print at most this many messages, oldest first.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub count: u64,
    /// Print byte messages in hexadecimal instead of as text.
    #[arg(long)]
    pub hex: bool,
}

/// `shmq top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Channel name, with its leading slash.
    pub name: String,
    /// Stop after this many refreshes (default: until Ctrl-C).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Time between refreshes, e.g. 1s, 250ms (a bare number is seconds).
    #[arg(long, short, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// One JSON object per refresh instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A channel argument that names a file channel: one with a `/` after its
/// first character (`./orders`, `q/orders`, `/var/lib/app/orders`). Anything
/// else is a `/dev/shm` name (`/orders`), checked as such.
pub fn as_file(target: &str) -> Option<std::path::PathBuf> {
    target
        .char_indices()
        .any(|(i, c)| i > 0 && c == '/')
        .then(|| std::path::PathBuf::from(target))
}

/// What a NAME argument names: a `/dev/shm` segment or a file channel
/// ([`as_file`] tells them apart).
pub enum Target<'a> {
    /// A `/dev/shm` name (`/orders`).
    Shm(&'a str),
    /// A file channel's path (`./orders`, see [`as_file`]).
    File(std::path::PathBuf),
}

impl<'a> Target<'a> {
    /// The target `name` (as given on the command line) names.
    pub fn of(name: &'a str) -> Self {
        match as_file(name) {
            Some(path) => Target::File(path),
            None => Target::Shm(name),
        }
    }

    /// Removes the name or file unconditionally (`--force`).
    pub fn unlink(&self) -> crate::error::Result<()> {
        match self {
            Target::Shm(name) => shmq::inspect::unlink(name)?,
            Target::File(path) => std::fs::remove_file(path).map_err(|e| {
                crate::error::CliError::msg(format!("could not remove {}: {e}", path.display()))
            })?,
        }
        Ok(())
    }

    /// Removes it if stale, under its owner lock, messages and all.
    pub fn remove_stale(&self) -> shmq::Result<shmq::inspect::Removal> {
        match self {
            Target::Shm(name) => shmq::inspect::remove_stale(name, true),
            Target::File(path) => shmq::inspect::remove_stale_file(path, true),
        }
    }

    /// Up to `max` of the messages waiting in it, oldest first, consuming
    /// nothing (`None`: not a shmq segment).
    pub fn peek_messages(&self, max: usize) -> shmq::Result<Option<Vec<Vec<u8>>>> {
        match self {
            Target::Shm(name) => shmq::inspect::peek_messages(name, max),
            Target::File(path) => shmq::inspect::peek_messages_file(path, max),
        }
    }

    /// Its report now (`None`: not a shmq segment).
    pub fn inspect(&self) -> shmq::Result<Option<shmq::inspect::Report>> {
        match self {
            Target::Shm(name) => shmq::inspect::inspect(name),
            Target::File(path) => shmq::inspect::inspect_file(path),
        }
    }
}

/// Parses `500ms`, `1.5s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 500ms, 2s, 1m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// `none`, `every-commit`, or `periodic:MS:MESSAGES` (either budget 0 for none).
pub fn parse_durability(s: &str) -> Result<shmq::Durability, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    match parts.as_slice() {
        ["none"] => Ok(shmq::Durability::None),
        ["every-commit"] => Ok(shmq::Durability::EveryCommit),
        ["periodic", ms, n] => Ok(shmq::Durability::Periodic {
            interval: Duration::from_millis(num(ms)?),
            messages: num(n)?,
        }),
        _ => Err(format!(
            "unknown durability {s:?} (none, every-commit, periodic:MS:MESSAGES)"
        )),
    }
}

/// A refresh interval: a duration of at least one millisecond.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err("the interval must be at least 1ms".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_interval("0").is_err());
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(as_file("/orders"), None);
        assert_eq!(as_file("/var/q/orders"), Some("/var/q/orders".into()));
        assert_eq!(as_file("./orders"), Some("./orders".into()));
        assert_eq!(as_file("orders"), None);
        assert!(parse_durability("periodic:10:0").is_ok());
        assert!(parse_durability("sometimes").is_err());
    }
}
