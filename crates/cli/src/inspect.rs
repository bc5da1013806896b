//! `shmq inspect NAME`: one segment's header, control block and endpoints,
//! decoded, each field checked, every problem named; a broadcast channel's
//! subscribers each with mode, liveness, position, lag and counters.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use shmq::inspect::{ChannelKind, Endpoint, EndpointState, EndpointStatus, Field, Report};

use crate::cli::InspectArgs;
use crate::error::{CliError, Result};
use crate::out::{self, Align, Cell, Out, Style, Table};
use crate::report;

/// Fetches the report for `name`: an error for a bad name, a missing object or
/// an object that is not a shmq segment.
pub fn fetch(name: &str) -> Result<Report> {
    crate::cli::Target::of(name).inspect()?.ok_or_else(|| {
        CliError::msg(format!(
            "{name} is not a shmq segment (no shmq header): left alone"
        ))
    })
}

/// Prints the report as text, or as one JSON object with `--json`. A damaged
/// segment is reported, not an error: the exit status is 0 whenever the segment
/// could be read.
pub fn run(args: &InspectArgs, out: &Out) -> Result<ExitCode> {
    let r = fetch(&args.name)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", report::report_json(&r, true))?;
    } else {
        stdout.write_all(render(&r, out).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One `label  value  note` line; the note (a failed check) is shown in red.
fn field(
    s: &mut String,
    out: &Out,
    label: &str,
    value: impl std::fmt::Display,
    bad: Option<String>,
) {
    let _ = write!(s, "  {label:<20}{value}");
    if let Some(b) = bad {
        let _ = write!(s, "  {}", out.paint(&format!("<- {b}"), Style::Red));
    }
    s.push('\n');
}

/// A section title: a blank line, then the title in bold.
fn title(s: &mut String, out: &Out, t: &str) {
    s.push('\n');
    s.push_str(&out.paint(t, Style::Bold));
    s.push('\n');
}

/// The whole report as text.
pub fn render(r: &Report, out: &Out) -> String {
    let mut s = String::new();
    let (state, style) = report::state_word(r);
    let _ = writeln!(
        s,
        "{}  {}  {}",
        out.paint(&r.name, Style::Bold),
        report::kind_name(r),
        out.paint(&state, style)
    );

    title(&mut s, out, "object");
    field(
        &mut s,
        out,
        "size",
        format!("{} ({})", r.size, out::bytes(r.size)),
        None,
    );
    field(
        &mut s,
        out,
        "owner",
        format!("uid {}, mode {:04o}", r.owner, r.mode),
        None,
    );
    field(&mut s, out, "open by a process", yes_no(r.in_use), None);

    header(&mut s, out, r);
    durability(&mut s, out, r);
    ring(&mut s, out, r);
    endpoints(&mut s, out, r);

    title(&mut s, out, "problems");
    let problems = report::problems(r);
    if problems.is_empty() {
        let _ = writeln!(
            s,
            "  {}",
            out.paint("none: the segment is healthy", Style::Green)
        );
    } else {
        for p in &problems {
            let _ = writeln!(s, "  {}", out.paint(&format!("- {p}"), Style::Red));
        }
    }
    s
}

/// A file channel's durability policy and last sync (shown when the header
/// records a policy or a sync: never for a `/dev/shm` channel).
fn durability(s: &mut String, out: &Out, r: &Report) {
    let synced = r.last_sync.is_some_and(|l| l.syncs > 0);
    let policy = match &r.durability {
        Some(Ok(shmq::Durability::None)) if !synced => return,
        None => return,
        Some(p) => p,
    };
    title(s, out, "durability");
    match policy {
        Ok(p) => field(s, out, "policy", p, None),
        Err(e) => field(s, out, "policy", "?", Some(e.clone())),
    }
    field(s, out, "last sync", report::last_sync(r), None);
}

/// `yes` or `no`.
fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The header, each field decoded, with what the findings about it say (see
/// [`report::header_rows`]).
fn header(s: &mut String, out: &Out, r: &Report) {
    title(s, out, "header");
    if r.kind.is_some_and(ChannelKind::is_typed) {
        let notes: Vec<String> = r
            .findings(Field::TypeName)
            .map(report::finding_note)
            .collect();
        field(
            s,
            out,
            "message type",
            report::message_type(r),
            (!notes.is_empty()).then(|| notes.join("; ")),
        );
    }
    for f in report::header_rows(r) {
        field(s, out, f.label, f.value, f.bad);
    }
}

/// What the findings about `field` say, if any.
fn notes(r: &Report, field: Field) -> Option<String> {
    let notes: Vec<String> = r.findings(field).map(report::finding_note).collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// The control block and what the walk over the frames found.
fn ring(s: &mut String, out: &Out, r: &Report) {
    title(s, out, "ring");
    let Some(v) = &r.ring else {
        let _ = writeln!(
            s,
            "  {}",
            out.paint(
                "not read: the header is not valid enough to locate it",
                Style::Dim
            )
        );
        return;
    };
    field(
        s,
        out,
        "capacity",
        format!("{} ({})", v.capacity, out::bytes(v.capacity as u64)),
        None,
    );
    field(s, out, "head", v.head, notes(r, Field::Head));
    field(s, out, "tail", v.tail, notes(r, Field::Tail));
    let used = match v.used_bytes {
        Some(u) => format!("{} ({})", out::bytes(u), out::percent(u, v.capacity as u64)),
        None => "-".into(),
    };
    field(s, out, "used", used, None);
    field(
        s,
        out,
        "messages waiting",
        format!(
            "{} ({} of payload)",
            v.messages,
            out::bytes(v.message_bytes)
        ),
        None,
    );
    if r.kind.is_some_and(ChannelKind::is_mpsc) {
        field(s, out, "uncommitted claims", v.uncommitted, None);
    }
    field(
        s,
        out,
        "received",
        format!("{} messages since creation", v.received),
        None,
    );
    let broadcast = report::is_broadcast(r);
    if !broadcast {
        field(
            s,
            out,
            "consumer",
            format!(
                "{}, incarnation {}{}",
                report::end_state_str(v.consumer.state),
                v.consumer.incarnation,
                if v.consumer_waiting { ", sleeping" } else { "" }
            ),
            notes(r, Field::EndpointState(Endpoint::Consumer)),
        );
    }
    let mpsc = r.kind.is_some_and(ChannelKind::is_mpsc);
    for (i, p) in (0u16..).zip(&v.producers) {
        if mpsc && p.state == EndpointState::Never && p.pending_claim.is_none() {
            continue;
        }
        let (label, end) = if mpsc {
            (format!("producer {i}"), Endpoint::ProducerSlot(i))
        } else if broadcast {
            ("publisher".into(), Endpoint::Producer)
        } else {
            ("producer".into(), Endpoint::Producer)
        };
        let claim = p
            .pending_claim
            .map(|c| format!(", claim pending at {c}"))
            .unwrap_or_default();
        field(
            s,
            out,
            &label,
            format!(
                "{}, incarnation {}{claim}",
                report::end_state_str(p.state),
                p.incarnation
            ),
            notes(r, Field::EndpointState(end)),
        );
    }
    if mpsc {
        let never = v
            .producers
            .iter()
            .filter(|p| p.state == EndpointState::Never && p.pending_claim.is_none())
            .count();
        if never > 0 {
            field(s, out, "unused slots", never, None);
        }
    }
    field(
        s,
        out,
        if broadcast {
            "publisher sleeping"
        } else {
            "producers sleeping"
        },
        yes_no(v.producers_waiting),
        None,
    );
    if broadcast {
        subscribers(s, out, r);
    }
}

/// A broadcast channel's subscribers: one row per slot that has been
/// attached (mode, liveness, position, lag behind the publisher, messages
/// received and missed), with what the findings say about their words.
fn subscribers(s: &mut String, out: &Out, r: &Report) {
    title(s, out, "subscribers");
    let slots = r.ring.as_ref().map_or(0, |v| v.subscribers.len());
    match report::subscriber_table(r, out) {
        Some(t) => s.push_str(&t),
        None => {
            let _ = writeln!(s, "  {}", out.paint("none attached yet", Style::Dim));
        }
    }
    let shown = report::subscribers(r).len();
    if slots > shown {
        let _ = writeln!(
            s,
            "  {}",
            out.paint(
                &format!("({} of {slots} slots never used)", slots - shown),
                Style::Dim
            )
        );
    }
    for i in (0u16..).take(slots) {
        if let Some(n) = notes(r, Field::EndpointState(Endpoint::SubscriberSlot(i))) {
            let _ = writeln!(
                s,
                "  {}",
                out.paint(&format!("subscriber {i}: <- {n}"), Style::Red)
            );
        }
    }
}

/// The endpoint table: liveness from the kernel's locks, pid and attach count
/// from the segment's records.
fn endpoints(s: &mut String, out: &Out, r: &Report) {
    title(s, out, "endpoints");
    if r.endpoints.is_empty() {
        let _ = writeln!(s, "  {}", out.paint("none readable", Style::Dim));
        return;
    }
    let mut t = Table::new(&[
        ("  ROLE", Align::Left),
        ("STATUS", Align::Left),
        ("PID", Align::Right),
        ("ATTACHES", Align::Right),
    ]);
    let mut hidden = 0;
    let broadcast = report::is_broadcast(r);
    let subscribers = report::subscribers(r);
    // The first endpoint is the consumer, the others are producers; a
    // broadcast channel's first is unused, then its publisher, then its
    // subscribers (their status as the subscriber table has it).
    for (i, e) in r.endpoints.iter().enumerate() {
        if broadcast && i == 0 {
            continue;
        }
        let status = match subscribers.iter().find(|s| 2 + usize::from(s.slot) == i) {
            Some(sub) => sub.status,
            None if broadcast && i >= 2 && r.ring.is_some() => EndpointStatus::Never,
            None => e.status,
        };
        let slot = r.kind.is_some_and(|k| k.is_mpsc() || k.is_broadcast());
        let first_slot = if broadcast { 2 } else { 1 };
        if slot && i >= first_slot && status == EndpointStatus::Never {
            hidden += 1;
            continue;
        }
        let pid = if e.pid == 0 {
            "-".into()
        } else {
            e.pid.to_string()
        };
        t.row(vec![
            Cell::plain(format!("  {}", e.role)),
            Cell::styled(status.as_str(), report::status_style(status)),
            Cell::plain(pid),
            Cell::plain(e.attaches.to_string()),
        ]);
    }
    s.push_str(&t.render(out));
    if hidden > 0 {
        let _ = writeln!(
            s,
            "  {}",
            out.paint(
                &format!(
                    "({hidden} {} slots never used)",
                    if broadcast { "subscriber" } else { "producer" }
                ),
                Style::Dim
            )
        );
    }
}
