//! `shmq top NAME`: a channel's rates and fill level, refreshed until Ctrl-C.
//!
//! Each refresh reads the segment read-only (as `shmq inspect` does) and derives
//! rates from the previous refresh: messages per second from the consumer's
//! `received` counter, ring bytes per second (headers and padding included) from
//! its `head` position. On a terminal the display is redrawn in place on the
//! alternate screen, and the end (`--count` reached, Ctrl-C) restores the user's
//! screen and cursor, leaves the last display on it and exits with status 0;
//! otherwise each refresh is one line (or one JSON object
//! with `--json`).
//!
//! A broadcast channel's bytes per second are the publisher's (its `tail`),
//! messages per second those its subscribers received, all together; each
//! subscriber is shown with its mode, liveness, position, lag and counters
//! (in the terminal display, as one indented line each after a refresh's
//! line, and as a `subscribers` array in JSON).

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use shmq::inspect::Report;

use crate::cli::TopArgs;
use crate::error::{CliError, Result};
use crate::inspect::fetch;
use crate::out::{self, Out, Style};
use crate::report;
use crate::signal::Interrupt;

/// How often a sleeping `top` looks at the Ctrl-C flag.
const TICK: Duration = Duration::from_millis(50);

/// One refresh's counters.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    received: u64,
    head: u64,
}

impl Sample {
    /// The counters of `r` read at `at`, if its ring could be read.
    fn of(r: &Report, at: Instant) -> Option<Sample> {
        r.ring.as_ref().map(|v| Sample {
            at,
            received: v.received,
            // A broadcast channel's bytes are the publisher's: its `head`
            // is only the slowest lossless subscriber's position.
            head: if report::is_broadcast(r) {
                v.tail
            } else {
                v.head
            },
        })
    }
}

/// Rates between two samples; `None` if a counter went backwards (the channel
/// was removed and made anew under the same name).
fn rates(prev: Option<Sample>, now: Option<Sample>) -> Option<(f64, f64)> {
    let (p, n) = (prev?, now?);
    let dt = n.at.duration_since(p.at).as_secs_f64();
    if dt <= 0.0 {
        return None;
    }
    let msgs = n.received.checked_sub(p.received)?;
    let bytes = n.head.checked_sub(p.head)?;
    Some((msgs as f64 / dt, bytes as f64 / dt))
}

/// The terminal display: while it lives, the terminal shows the alternate screen
/// (as `top` and `less` do) with the cursor hidden; dropping it, whichever way
/// the command ends, brings back the user's screen and cursor, and leaves the
/// last display there as a record.
struct Screen {
    tty: bool,
    last: String,
}

impl Screen {
    /// Switches a terminal to the display; does nothing otherwise.
    fn new(tty: bool) -> std::io::Result<Self> {
        if tty {
            let mut stdout = std::io::stdout().lock();
            // Alternate screen on, cursor hidden.
            stdout.write_all(b"\x1b[?1049h\x1b[?25l")?;
            stdout.flush()?;
        }
        Ok(Screen {
            tty,
            last: String::new(),
        })
    }

    /// Replaces what the screen shows with `block`. Drawing from the top-left
    /// corner of a cleared screen stays right when long lines wrap.
    fn draw(&mut self, block: String) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(b"\x1b[H\x1b[J")?;
        stdout.write_all(block.as_bytes())?;
        self.last = block;
        stdout.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.tty {
            let mut stdout = std::io::stdout().lock();
            // Cursor shown, alternate screen off, then the last display again.
            let _ = stdout.write_all(b"\x1b[?25h\x1b[?1049l");
            let _ = stdout.write_all(self.last.as_bytes());
            let _ = stdout.flush();
        }
    }
}

/// Sleeps `d`, waking early (returning `true`) on Ctrl-C.
fn sleep(d: Duration, interrupt: &Interrupt) -> bool {
    let until = Instant::now() + d;
    loop {
        if interrupt.is_set() {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(TICK));
    }
}

/// Runs the display for `--count` refreshes, or until Ctrl-C (status 0), or
/// until the segment is removed (status 0, with a note on stderr).
pub fn run(args: &TopArgs, out: &Out) -> Result<ExitCode> {
    let interrupt = Interrupt::catch()?;
    let started = Instant::now();
    let first = fetch(&args.name)?;
    let mut prev = Sample::of(&first, started);
    let tty = out.is_tty() && !args.json;
    let mut screen = Screen::new(tty)?;
    if !tty && !args.json {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "{}",
            out.paint(row_header().trim_end(), Style::Bold)
        )?;
        stdout.flush()?;
    }
    if tty {
        screen.draw(block(&first, None, args.interval, out))?;
    }
    let mut refreshes = 0u64;
    while args.count.is_none_or(|c| refreshes < c) {
        if sleep(args.interval, &interrupt) {
            break;
        }
        let now = Instant::now();
        // Gone, or replaced by another program's object: the channel was removed.
        let found = match shmq::inspect::inspect(&args.name) {
            Ok(r) => r,
            Err(e) if shmq::inspect::is_not_found(&e) => None,
            Err(e) => return Err(CliError::from(e)),
        };
        let Some(r) = found else {
            drop(screen);
            eprintln!("shmq: {} was removed", args.name);
            return Ok(ExitCode::SUCCESS);
        };
        let sample = Sample::of(&r, now);
        let rate = rates(prev, sample);
        prev = sample;
        refreshes += 1;
        let elapsed = now.duration_since(started).as_secs_f64();
        if args.json {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", json_line(&r, rate, elapsed))?;
            stdout.flush()?;
        } else if tty {
            screen.draw(block(&r, rate, args.interval, out))?;
        } else {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", row(&r, rate, elapsed).trim_end())?;
            for line in subscriber_rows(&r) {
                writeln!(stdout, "{line}")?;
            }
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes used and capacity, if the ring could be read.
fn fill(r: &Report) -> Option<(u64, u64)> {
    let v = r.ring.as_ref()?;
    Some((v.used_bytes?, v.capacity as u64))
}

/// The column titles of the one-line-per-refresh output.
fn row_header() -> String {
    format!(
        "{:>8} {:>9} {:>12} {:>6} {:>9} {:>11}  {:<10} {:<8}",
        "TIME", "MSG/S", "BYTES/S", "FILL", "WAITING", "RECEIVED", "PRODUCERS", "CONSUMER"
    )
}

/// One refresh as one line, under [`row_header`].
fn row(r: &Report, rate: Option<(f64, f64)>, elapsed: f64) -> String {
    let (msgs, bytes) = match rate {
        Some((m, b)) => (out::si(m), out::byte_rate(b)),
        None => ("-".into(), "-".into()),
    };
    let fill = fill(r).map_or("-".into(), |(u, c)| out::percent(u, c));
    let waiting = r
        .ring
        .as_ref()
        .map_or("-".into(), |v| v.messages.to_string());
    let received = r
        .ring
        .as_ref()
        .map_or("-".into(), |v| v.received.to_string());
    let (producers, _) = report::producers_summary(r);
    let (consumer, _) = consumer_summary(r);
    format!(
        "{:>7.1}s {msgs:>9} {bytes:>12} {fill:>6} {waiting:>9} {received:>11}  {producers:<10} {consumer:<8}",
        elapsed
    )
}

/// The CONSUMER column: the consumer's status, or a broadcast channel's
/// subscribers counted by status.
fn consumer_summary(r: &Report) -> (String, Style) {
    if report::is_broadcast(r) {
        report::subscribers_summary(r)
    } else {
        report::one_status(report::consumer(r))
    }
}

/// A broadcast channel's subscribers for the one-line-per-refresh output:
/// one indented line each, after the refresh's line (none for other kinds).
fn subscriber_rows(r: &Report) -> Vec<String> {
    report::subscribers(r)
        .iter()
        .map(|s| {
            format!(
                "  subscriber {}: {}, {}, position {}, lag {}, {} received, {} missed",
                s.slot,
                s.mode(),
                s.status.as_str(),
                s.record.position,
                out::bytes(s.record.behind),
                s.record.received,
                s.record.lagged
            )
        })
        .collect()
}

/// One refresh as one JSON object.
fn json_line(r: &Report, rate: Option<(f64, f64)>, elapsed: f64) -> serde_json::Value {
    let v = r.ring.as_ref();
    json!({
        "name": r.name,
        "elapsed": elapsed,
        "messages_per_sec": rate.map(|(m, _)| m),
        "bytes_per_sec": rate.map(|(_, b)| b),
        "used_bytes": v.and_then(|v| v.used_bytes),
        "capacity": v.map(|v| v.capacity),
        "fill": fill(r).map(|(u, c)| u as f64 / c as f64),
        "messages": v.map(|v| v.messages),
        "received": v.map(|v| v.received),
        "producers": report::producers_summary(r).0,
        "consumer": consumer_summary(r).0,
        "subscribers": report::subscribers_json(r),
        "problems": report::problems(r),
    })
}

/// The terminal display: a few labelled lines and a fill bar.
fn block(r: &Report, rate: Option<(f64, f64)>, interval: Duration, out: &Out) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}  {}  capacity {}",
        out.paint(&r.name, Style::Bold),
        report::kind_name(r),
        out::bytes(r.header.capacity()),
    );
    let line = |s: &mut String, label: &str, value: String| {
        let _ = writeln!(s, "  {label:<12}{value}");
    };
    let (msgs, bytes) = match rate {
        Some((m, b)) => (format!("{} msg/s", out::si(m)), out::byte_rate(b)),
        None => ("-".into(), "-".into()),
    };
    line(&mut s, "messages", msgs);
    line(&mut s, "bytes", bytes);
    let fill = match fill(r) {
        Some((u, c)) => {
            const WIDTH: u64 = 30;
            let filled = (u.saturating_mul(WIDTH) / c.max(1)).min(WIDTH) as usize;
            let bar = format!(
                "[{}{}]",
                "#".repeat(filled),
                ".".repeat(WIDTH as usize - filled)
            );
            let style = if u * 10 >= c * 9 {
                Style::Red
            } else if u * 2 >= c {
                Style::Yellow
            } else {
                Style::Green
            };
            format!(
                "{} {:>6}  ({} of {})",
                out.paint(&bar, style),
                out::percent(u, c),
                out::bytes(u),
                out::bytes(c)
            )
        }
        None => "-".into(),
    };
    line(&mut s, "fill", fill);
    if let Some(v) = &r.ring {
        line(&mut s, "waiting", format!("{} messages", v.messages));
        line(&mut s, "received", format!("{} in all", v.received));
    }
    let (p, ps) = report::producers_summary(r);
    let (c, cs) = consumer_summary(r);
    if report::is_broadcast(r) {
        line(&mut s, "publisher", out.paint(&p, ps));
        line(&mut s, "subscribers", out.paint(&c, cs));
        if let Some(t) = report::subscriber_table(r, out) {
            s.push_str(&t);
        }
    } else {
        line(&mut s, "producers", out.paint(&p, ps));
        line(&mut s, "consumer", out.paint(&c, cs));
    }
    for p in report::problems(r) {
        let _ = writeln!(s, "  {}", out.paint(&p, Style::Red));
    }
    let _ = writeln!(
        s,
        "\n{}",
        out.paint(&format!("every {interval:?}; Ctrl-C to quit"), Style::Dim)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_deltas() {
        let t0 = Instant::now();
        let a = Sample {
            at: t0,
            received: 100,
            head: 1600,
        };
        let b = Sample {
            at: t0 + Duration::from_secs(2),
            received: 300,
            head: 4800,
        };
        assert_eq!(rates(Some(a), Some(b)), Some((100.0, 1600.0)));
        assert_eq!(rates(Some(b), Some(a)), None, "time or counters going back");
        assert_eq!(rates(None, Some(b)), None);
    }
}
