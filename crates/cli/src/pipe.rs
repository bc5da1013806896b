//! `shmq send` and `shmq recv`: stdin into a channel, a channel onto stdout.
//!
//! Both open the channel with `create_or_open`, so either may start first, and
//! messages sent before the receiver starts wait for it in the ring. The sender
//! closes its end at end of input; the receiver, without `--count`, stops once
//! the sender has gone and everything it sent has been written out. The last of
//! the two to close a drained channel removes it from `/dev/shm`. A channel
//! argument with a directory part (`./orders`) is a file channel instead
//! (`create_or_open_file`; `send --durability` chooses its policy).
//!
//! Line mode (the default) sends each line without its `\n` and the receiver
//! writes each message followed by `\n`, so text goes through unchanged (a last
//! line without a newline gains one). `--raw` sends fixed-size chunks and writes
//! messages back as they are, so any bytes go through unchanged.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmq::inspect::ChannelKind;
use shmq::{Disconnect, Error, Options, spsc};

use crate::cli::{RecvArgs, SendArgs};
use crate::error::{CliError, Result};
use crate::signal::{INTERRUPTED, Interrupt};

/// Buffer size for stdin and stdout: large enough that reading and writing cost
/// few system calls per message.
const IO_BUF: usize = 1 << 16;

/// Messages handed over by one `try_recv_batch` (the ring releases their space
/// with one store).
const RECV_BATCH: usize = 4096;

/// How often a receiver waiting for a message looks at the Ctrl-C flag.
const POLL: Duration = Duration::from_millis(100);

/// Channel options: the default ones, with `--capacity` if given. The ends are
/// a session (`Lifecycle::Session`): `send` and `recv` end when their peer is
/// gone, as a pipe's ends do, rather than wait for the next one as a named
/// channel's ends do by default.
fn options(capacity: Option<u64>) -> Options {
    let o = Options::new().lifecycle(shmq::Lifecycle::Session);
    match capacity {
        Some(c) => o.capacity(c),
        None => o,
    }
}

/// What to say when the channel fails while sending.
fn send_error(e: Error, sent: u64) -> CliError {
    match e {
        Error::Disconnected(why) => CliError::msg(format!(
            "the receiver went away ({}) after {sent} messages",
            match why {
                Disconnect::Closed => "it closed the channel",
                Disconnect::Died => "it died",
            }
        )),
        e => CliError::msg(format!("sending message {}: {e}", sent + 1)),
    }
}

/// A clearer refusal than a layout mismatch when `name` holds another kind of
/// channel (`send` and `recv` speak SPSC byte channels).
fn check_kind(name: &str) -> Result<()> {
    let found = match crate::cli::as_file(name) {
        Some(path) => shmq::inspect::inspect_file(&path),
        None => shmq::inspect::inspect(name),
    };
    if let Ok(Some(r)) = found
        && let Some(kind) = r.kind
        && kind != ChannelKind::Spsc
    {
        return Err(CliError::msg(format!(
            "{name} is an {} channel; shmq send and recv use spsc/bytes channels",
            kind.long_name()
        )));
    }
    Ok(())
}

/// What to say when stdin fails.
fn read_error(e: io::Error) -> CliError {
    CliError::msg(format!("reading stdin: {e}"))
}

/// Sends stdin: each line as one message (`\n` stripped), or with `--raw`
/// chunks of `--chunk` bytes.
pub fn send(args: &SendArgs) -> Result<ExitCode> {
    check_kind(&args.name)?;
    let mut opts = options(args.capacity);
    if let Some(d) = args.durability {
        opts = opts.durability(d);
    }
    let mut tx = match crate::cli::as_file(&args.name) {
        Some(path) => spsc::Sender::create_or_open_file(path, &opts)?,
        None => spsc::Sender::create_or_open(&args.name, &opts)?,
    };
    let max = tx.max_message_len();
    let stdin = io::stdin().lock();
    if args.raw {
        send_raw(&mut tx, stdin, args.chunk, max)?;
    } else {
        send_lines(&mut tx, BufReader::with_capacity(IO_BUF, stdin), max)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What to say about line `number` (1-based) when it cannot fit in a message.
fn too_long(number: u64, len: usize, max: usize) -> CliError {
    CliError::msg(format!(
        "line {number} is {len} bytes, more than this channel's largest message \
         ({max} bytes): use a larger --capacity when creating it, or --raw"
    ))
}

/// What to say about line `number` when it is known to be longer than a message
/// can be, without having read all of it.
fn longer_than(number: u64, max: usize) -> CliError {
    CliError::msg(format!(
        "line {number} is longer than this channel's largest message ({max} bytes): \
         use a larger --capacity when creating it, or --raw"
    ))
}

/// Line mode. Complete lines found in the input buffer go out as one batch (one
/// store and at most one wake-up for many messages); when the ring is full, one
/// blocking send waits for room. A line that straddles two reads is gathered in
/// `carry` first, up to the largest message and no further.
///
/// A line longer than the largest message stops sending with an error naming it:
/// the lines before it have been sent, it and those after it are not.
fn send_lines(tx: &mut spsc::Sender, mut input: impl BufRead, max: usize) -> Result<()> {
    let mut sent: u64 = 0;
    let mut carry = Vec::new();
    loop {
        let buf = input.fill_buf().map_err(read_error)?;
        if buf.is_empty() {
            return Ok(());
        }
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            // No complete line buffered: gather one (or the unterminated last one),
            // but never more than a message and its newline: a longer line is
            // refused as soon as it is known to be too long, however long it is.
            carry.clear();
            let bound = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
            (&mut input)
                .take(bound)
                .read_until(b'\n', &mut carry)
                .map_err(read_error)?;
            if carry.last() == Some(&b'\n') {
                carry.pop();
            } else if carry.len() > max {
                return Err(longer_than(sent + 1, max));
            }
            tx.send(&carry).map_err(|e| send_error(e, sent))?;
            sent += 1;
            continue;
        };
        let lines = buf[..last_nl].split(|&b| b == b'\n');
        // Lines before an over-long one go out now; it is refused once it is first.
        let fitting = lines.clone().take_while(|l| l.len() <= max).count();
        if fitting == 0 {
            let len = lines.clone().next().map_or(0, <[u8]>::len);
            return Err(too_long(sent + 1, len, max));
        }
        let n = match tx.try_send_batch(lines.clone().take(fitting)) {
            Ok(n) => n,
            Err(Error::Full) => {
                let first = lines.clone().next().unwrap_or_default();
                tx.send(first).map_err(|e| send_error(e, sent))?;
                1
            }
            Err(e) => return Err(send_error(e, sent)),
        };
        let consumed: usize = lines.take(n).map(|l| l.len() + 1).sum();
        input.consume(consumed);
        sent += n as u64;
    }
}

/// Raw mode: each chunk is read straight into the space reserved for it in the
/// ring, so the bytes are copied once, from the kernel into shared memory.
fn send_raw(tx: &mut spsc::Sender, mut input: impl Read, chunk: u64, max: usize) -> Result<()> {
    let chunk = usize::try_from(chunk).unwrap_or(usize::MAX);
    if chunk > max {
        return Err(CliError::msg(format!(
            "--chunk {chunk} is more than this channel's largest message ({max} bytes): \
             use a smaller --chunk or a larger --capacity"
        )));
    }
    let mut sent: u64 = 0;
    loop {
        let mut slot = tx.reserve(chunk).map_err(|e| send_error(e, sent))?;
        let mut filled = 0;
        while filled < chunk {
            match input.read(&mut slot[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Dropping the reservation uncommitted sends nothing.
                Err(e) => return Err(read_error(e)),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        slot.commit_len(filled);
        sent += 1;
        if filled < chunk {
            return Ok(());
        }
    }
}

/// Writes one message: as is with `--raw`, else followed by `\n`.
fn put(out: &mut impl Write, msg: &[u8], raw: bool) -> io::Result<()> {
    out.write_all(msg)?;
    if !raw {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Receives onto stdout until `--count` messages, or until the sender has gone
/// and the channel is drained (status 0 if it closed the channel, 1 if it died).
/// Waiting messages are taken in batches; stdout is flushed whenever the channel
/// runs dry, so a slow sender's lines show up promptly. Ctrl-C closes the channel
/// cleanly and exits with status 130.
pub fn recv(args: &RecvArgs) -> Result<ExitCode> {
    check_kind(&args.name)?;
    let interrupt = Interrupt::catch()?;
    let opts = options(args.capacity);
    let mut rx = match crate::cli::as_file(&args.name) {
        Some(path) => spsc::Receiver::create_or_open_file(path, &opts)?,
        None => spsc::Receiver::create_or_open(&args.name, &opts)?,
    };
    let mut out = BufWriter::with_capacity(IO_BUF, io::stdout().lock());
    let limit = args.count.unwrap_or(u64::MAX);
    let mut received: u64 = 0;
    let mut failed: Option<io::Error> = None;
    while received < limit {
        let max = usize::try_from(limit - received)
            .unwrap_or(usize::MAX)
            .min(RECV_BATCH);
        let taken = rx.try_recv_batch(max, |m| {
            if failed.is_none()
                && let Err(e) = put(&mut out, m, args.raw)
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed.take() {
            return Err(e.into());
        }
        match taken {
            Ok(0) => {}
            Ok(n) => {
                received += n as u64;
                continue;
            }
            Err(Error::Disconnected(why)) => return sender_gone(&mut out, why, received),
            Err(e) => return Err(recv_error(e, received)),
        }
        // Nothing waiting: let what we have reach the reader, then wait.
        out.flush()?;
        match wait_one(&mut rx, &mut out, args, &interrupt, received)? {
            Waited::Got => received += 1,
            Waited::Disconnected(why) => return sender_gone(&mut out, why, received),
            Waited::Interrupted => {
                out.flush()?;
                return Ok(ExitCode::from(INTERRUPTED));
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// How a wait for one message ended.
enum Waited {
    /// A message came and was written out.
    Got,
    /// The sender is gone and nothing is left.
    Disconnected(Disconnect),
    /// Ctrl-C (or SIGTERM).
    Interrupted,
}

/// The end of the stream: everything the sender committed has been written. A
/// sender that closed the channel ended its input (status 0); one that died
/// without closing may have been cut short, so that is an error.
fn sender_gone(out: &mut impl Write, why: Disconnect, received: u64) -> Result<ExitCode> {
    out.flush()?;
    match why {
        Disconnect::Closed => Ok(ExitCode::SUCCESS),
        Disconnect::Died => Err(CliError::msg(format!(
            "the sender died without closing the channel, after {received} messages: \
             its input may have been cut short"
        ))),
    }
}

/// How long the next wait may last: [`POLL`], or less to end at `--timeout`
/// (`None` once it has passed).
fn waits_left(started: Instant, timeout: Option<Duration>) -> Option<Duration> {
    match timeout {
        None => Some(POLL),
        Some(t) => t.checked_sub(started.elapsed()).map(|left| left.min(POLL)),
    }
}

/// Waits for one message and writes it, looking at the Ctrl-C flag every
/// [`POLL`] and giving up after `--timeout` without a message.
fn wait_one(
    rx: &mut spsc::Receiver,
    out: &mut impl Write,
    args: &RecvArgs,
    interrupt: &Interrupt,
    received: u64,
) -> Result<Waited> {
    let started = Instant::now();
    loop {
        if interrupt.is_set() {
            return Ok(Waited::Interrupted);
        }
        let Some(slice) = waits_left(started, args.timeout) else {
            return Err(CliError::msg(format!(
                "no message for {:?} (--timeout) after {received} messages",
                args.timeout.unwrap_or_default()
            )));
        };
        match rx.recv_timeout(slice) {
            Ok(msg) => {
                put(out, &msg, args.raw)?;
                return Ok(Waited::Got);
            }
            Err(Error::Timeout) => {}
            Err(Error::Disconnected(why)) => return Ok(Waited::Disconnected(why)),
            Err(e) => return Err(recv_error(e, received)),
        }
    }
}

/// What to say when the channel fails while receiving.
fn recv_error(e: Error, received: u64) -> CliError {
    CliError::msg(format!("receiving message {}: {e}", received + 1))
}
