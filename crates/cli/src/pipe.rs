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
//! The kind of an existing channel decides which end they take: `send` is an
//! SPSC channel's producer, one more producer of an MPSC channel, or a
//! broadcast channel's publisher (if none is attached); `recv` is an SPSC or
//! MPSC channel's consumer, or a lossy subscriber of a broadcast channel (it
//! never holds the publisher back; when lapped it says on stderr how many
//! messages it missed and goes on). Typed channels are refused: these carry
//! byte messages. A channel that does not exist is made as SPSC bytes.
//!
//! Line mode (the default) sends each line without its `\n` and the receiver
//! writes each message followed by `\n`, so text goes through unchanged (a last
//! line without a newline gains one). `--raw` sends fixed-size chunks and writes
//! messages back as they are, so any bytes go through unchanged.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmq::inspect::ChannelKind;
use shmq::{Broadcast, Disconnect, Error, Mpsc, Options, Receiver, RingKind, Sender, Spsc, spsc};

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

/// The kind of the channel under `name` if one is there; `None` if nothing
/// is (it is made as an SPSC byte channel) or what is there cannot be read
/// as a channel (opening it then says why, in words).
fn existing_kind(name: &str) -> Option<ChannelKind> {
    crate::cli::Target::of(name)
        .inspect()
        .ok()
        .flatten()
        .and_then(|r| r.kind)
}

/// A refusal for a typed channel: `send` and `recv` carry byte messages.
fn refuse_typed(name: &str, kind: ChannelKind) -> CliError {
    CliError::msg(format!(
        "{name} is a {} channel; shmq send and recv carry byte messages \
         (shmq peek shows a typed channel's records)",
        kind.long_name()
    ))
}

/// Opens a sending end of ring kind `K`: created if need be (`create`), or
/// only opened.
fn open_sender<K: RingKind>(name: &str, opts: &Options, create: bool) -> shmq::Result<Sender<K>> {
    match (crate::cli::as_file(name), create) {
        (Some(path), true) => Sender::create_or_open_file(path, opts),
        (Some(path), false) => Sender::open_file(path, opts),
        (None, true) => Sender::create_or_open(name, opts),
        (None, false) => Sender::open(name, opts),
    }
}

/// Opens a receiving end of ring kind `K`: created if need be (`create`), or
/// only opened.
fn open_receiver<K: RingKind>(
    name: &str,
    opts: &Options,
    create: bool,
) -> shmq::Result<Receiver<K>> {
    match (crate::cli::as_file(name), create) {
        (Some(path), true) => Receiver::create_or_open_file(path, opts),
        (Some(path), false) => Receiver::open_file(path, opts),
        (None, true) => Receiver::create_or_open(name, opts),
        (None, false) => Receiver::open(name, opts),
    }
}

/// What to say when a sending end cannot be had: a broadcast channel's
/// publisher held by another process is said as such.
fn open_send_error(name: &str, kind: Option<ChannelKind>, e: Error) -> CliError {
    match (kind, e) {
        (Some(k), Error::AlreadyAttached { pid, .. }) if k.is_broadcast() => {
            CliError::msg(format!(
                "{name} is a broadcast channel and its publisher is already attached by a live \
             process{}: a broadcast channel has one publisher",
                pid.map_or(String::new(), |p| format!(" (pid {p})"))
            ))
        }
        (_, e) => e.into(),
    }
}

/// What to say when stdin fails.
fn read_error(e: io::Error) -> CliError {
    CliError::msg(format!("reading stdin: {e}"))
}

/// Sends stdin: each line as one message (`\n` stripped), or with `--raw`
/// chunks of `--chunk` bytes. The kind of an existing channel decides the end:
/// an SPSC channel's producer, one producer of an MPSC channel, a broadcast
/// channel's publisher; a channel that does not exist is made as SPSC.
pub fn send(args: &SendArgs) -> Result<ExitCode> {
    let kind = existing_kind(&args.name);
    let mut opts = options(args.capacity);
    if let Some(d) = args.durability {
        opts = opts.durability(d);
    }
    match kind {
        Some(k) if k.is_typed() => Err(refuse_typed(&args.name, k)),
        Some(ChannelKind::Mpsc) => {
            let tx = open_sender::<Mpsc>(&args.name, &opts, false);
            let tx = tx.map_err(|e| open_send_error(&args.name, kind, e))?;
            send_with(args, tx, send_raw_copied)
        }
        Some(ChannelKind::Broadcast) => {
            let tx = open_sender::<Broadcast>(&args.name, &opts, false);
            let tx = tx.map_err(|e| open_send_error(&args.name, kind, e))?;
            send_with(args, tx, send_raw_copied)
        }
        _ => send_with(
            args,
            open_sender::<Spsc>(&args.name, &opts, true)?,
            send_raw,
        ),
    }
}

/// How `--raw` sends stdin through a sender of kind `K`: [`send_raw`] reads
/// straight into SPSC reservations, [`send_raw_copied`] copies each chunk.
type SendRaw<K> = fn(&mut Sender<K>, io::StdinLock<'static>, u64, usize) -> Result<()>;

/// Sends stdin through `tx`: lines, or with `--raw` chunks sent by `raw`.
fn send_with<K: RingKind>(args: &SendArgs, mut tx: Sender<K>, raw: SendRaw<K>) -> Result<ExitCode> {
    let max = tx.max_message_len();
    let stdin = io::stdin().lock();
    if args.raw {
        raw(&mut tx, stdin, args.chunk, max)?;
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
fn send_lines<K: RingKind>(tx: &mut Sender<K>, mut input: impl BufRead, max: usize) -> Result<()> {
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

/// `--chunk` as a length, if a message can be that long.
fn chunk_len(chunk: u64, max: usize) -> Result<usize> {
    let chunk = usize::try_from(chunk).unwrap_or(usize::MAX);
    if chunk > max {
        return Err(CliError::msg(format!(
            "--chunk {chunk} is more than this channel's largest message ({max} bytes): \
             use a smaller --chunk or a larger --capacity"
        )));
    }
    Ok(chunk)
}

/// Reads up to `buf.len()` bytes, fewer only at end of input.
fn read_chunk(input: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(filled)
}

/// Raw mode for MPSC and broadcast: each chunk is read into a buffer, then
/// sent (a copy more than [`send_raw`] makes).
fn send_raw_copied<K: RingKind>(
    tx: &mut Sender<K>,
    mut input: impl Read,
    chunk: u64,
    max: usize,
) -> Result<()> {
    let mut buf = vec![0u8; chunk_len(chunk, max)?];
    let mut sent: u64 = 0;
    loop {
        let filled = read_chunk(&mut input, &mut buf)?;
        if filled == 0 {
            return Ok(());
        }
        tx.send(&buf[..filled]).map_err(|e| send_error(e, sent))?;
        sent += 1;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

/// Raw mode: each chunk is read straight into the space reserved for it in the
/// ring, so the bytes are copied once, from the kernel into shared memory.
fn send_raw(tx: &mut spsc::Sender, mut input: impl Read, chunk: u64, max: usize) -> Result<()> {
    let chunk = chunk_len(chunk, max)?;
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
/// The kind of an existing channel decides the end: an SPSC or MPSC channel's
/// consumer, or a lossy subscriber of a broadcast channel (which never holds
/// the publisher back; messages it missed are counted on stderr); a channel
/// that does not exist is made as SPSC. Waiting messages are taken in batches;
/// stdout is flushed whenever the channel runs dry, so a slow sender's lines
/// show up promptly. Ctrl-C closes the channel cleanly and exits with status 130.
pub fn recv(args: &RecvArgs) -> Result<ExitCode> {
    let kind = existing_kind(&args.name);
    let interrupt = Interrupt::catch()?;
    let opts = options(args.capacity);
    match kind {
        Some(k) if k.is_typed() => Err(refuse_typed(&args.name, k)),
        Some(ChannelKind::Mpsc) => {
            let rx = open_receiver::<Mpsc>(&args.name, &opts, false)?;
            recv_from(args, rx, &interrupt)
        }
        Some(ChannelKind::Broadcast) => {
            let lossy = opts.subscribe(shmq::broadcast::Mode::Lossy);
            let rx = open_receiver::<Broadcast>(&args.name, &lossy, false)?;
            recv_from(args, rx, &interrupt)
        }
        _ => {
            let rx = open_receiver::<Spsc>(&args.name, &opts, true)?;
            recv_from(args, rx, &interrupt)
        }
    }
}

/// Says on stderr that a lossy subscriber was lapped and missed `n` messages.
fn missed(name: &str, n: u64) {
    eprintln!("shmq: {name}: missed {n} messages (the publisher overwrote them first)");
}

/// The receive loop of [`recv`], on an open receiving end.
fn recv_from<K: RingKind>(
    args: &RecvArgs,
    mut rx: Receiver<K>,
    interrupt: &Interrupt,
) -> Result<ExitCode> {
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
            Err(Error::Lagged(n)) => {
                out.flush()?;
                missed(&args.name, n);
                continue;
            }
            Err(Error::Disconnected(why)) => return sender_gone(&mut out, why, received),
            Err(e) => return Err(recv_error(e, received)),
        }
        // Nothing waiting: let what we have reach the reader, then wait.
        out.flush()?;
        match wait_one(&mut rx, &mut out, args, interrupt, received)? {
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
fn wait_one<K: RingKind>(
    rx: &mut Receiver<K>,
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
            Err(Error::Lagged(n)) => missed(&args.name, n),
            Err(Error::Disconnected(why)) => return Ok(Waited::Disconnected(why)),
            Err(e) => return Err(recv_error(e, received)),
        }
    }
}

/// What to say when the channel fails while receiving.
fn recv_error(e: Error, received: u64) -> CliError {
    CliError::msg(format!("receiving message {}: {e}", received + 1))
}
