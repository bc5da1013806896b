//! `shmq ls`: every shmq segment in `/dev/shm`, one row each; then each
//! broadcast channel's subscribers, one row each.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::LsArgs;
use crate::error::Result;
use crate::out::{self, Align, Cell, Out, Style, Table};
use crate::report;

/// Lists the segments as a table, or as a JSON array with `--json`. A
/// broadcast channel's CONSUMER column counts its subscribers by status, and
/// a table of its subscribers (mode, status, position, lag, counters) follows
/// the listing; in JSON each has a `subscribers` array. Objects that
/// are not shmq segments are skipped (by header, see `shmq::inspect::list`);
/// damaged ones are listed with their problems; one that cannot be read at all
/// (permissions, say) is listed with the error. In text form, a last line
/// counts what is not a segment but `shmq gc` cares about.
pub fn run(args: &LsArgs, out: &Out) -> Result<ExitCode> {
    let found = match &args.dir {
        Some(dir) => {
            let mut found = shmq::inspect::list_dir(dir)?;
            found.retain(|(path, _)| {
                args.prefix.as_deref().is_none_or(|p| {
                    std::path::Path::new(path)
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(p))
                })
            });
            found
        }
        None => report::list(args.prefix.as_deref())?,
    };
    let files = args.dir.is_some();
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let all: Vec<Value> = found
            .iter()
            .map(|(name, r)| match r {
                Ok(r) => report::report_json(r, false),
                Err(e) => json!({ "name": name, "error": e.to_string() }),
            })
            .collect();
        writeln!(stdout, "{}", Value::Array(all))?;
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        match &args.dir {
            Some(dir) => writeln!(stdout, "no shmq file channels in {}", dir.display())?,
            None => writeln!(stdout, "no shmq segments in /dev/shm")?,
        }
        if files {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(note) = not_segments(args.prefix.as_deref()) {
            writeln!(stdout, "{}", out.paint(&note, Style::Yellow))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut columns = vec![
        ("NAME", Align::Left),
        ("KIND", Align::Left),
        ("TYPE", Align::Left),
        ("CAPACITY", Align::Right),
        ("USED", Align::Right),
        ("FILL", Align::Right),
        ("MSGS", Align::Right),
        ("PRODUCERS", Align::Left),
        ("CONSUMER", Align::Left),
        ("STATE", Align::Left),
    ];
    if files {
        columns.push(("DURABILITY", Align::Left));
    }
    let mut table = Table::new(&columns);
    let mut notes = Vec::new();
    let mut subscribers = Vec::new();
    for (name, r) in &found {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let mut row = vec![
                    Cell::plain(name.as_str()),
                    Cell::styled("?", Style::Dim),
                    Cell::styled("-", Style::Dim),
                    Cell::styled("-", Style::Dim),
                    Cell::styled("-", Style::Dim),
                    Cell::styled("-", Style::Dim),
                    Cell::styled("-", Style::Dim),
                    Cell::styled("-", Style::Dim),
                    Cell::styled("-", Style::Dim),
                    Cell::styled("unreadable", Style::Red),
                ];
                if files {
                    row.push(Cell::styled("-", Style::Dim));
                }
                table.row(row);
                notes.push(format!("{name}: {e}"));
                continue;
            }
        };
        let ring = r.ring.as_ref();
        let used = ring.and_then(|v| v.used_bytes);
        let (used, fill) = match used {
            Some(u) => (out::bytes(u), out::percent(u, r.header.capacity())),
            None => ("-".into(), "-".into()),
        };
        let msgs = match ring {
            Some(v) if v.uncommitted > 0 => format!("{}+{}?", v.messages, v.uncommitted),
            Some(v) => v.messages.to_string(),
            None => "-".into(),
        };
        let (producers, p_style) = report::producers_summary(r);
        let (consumer, c_style) = if report::is_broadcast(r) {
            report::subscribers_summary(r)
        } else {
            report::one_status(report::consumer(r))
        };
        if let Some(t) = report::subscriber_table(r, out) {
            subscribers.push((name.as_str(), t));
        }
        let (state, s_style) = report::state_word(r);
        let mut row = vec![
            Cell::plain(name.as_str()),
            Cell::plain(report::kind_name(r)),
            Cell::plain(report::message_type_short(r)),
            Cell::plain(out::bytes(r.header.capacity())),
            Cell::plain(used),
            Cell::plain(fill),
            Cell::plain(msgs),
            Cell::styled(producers, p_style),
            Cell::styled(consumer, c_style),
            Cell::styled(state, s_style),
        ];
        if files {
            row.push(Cell::plain(report::durability_short(r)));
        }
        table.row(row);
        for p in report::problems(r) {
            notes.push(format!("{name}: {p}"));
        }
    }
    stdout.write_all(table.render(out).as_bytes())?;
    for (name, t) in subscribers {
        writeln!(
            stdout,
            "\n{}",
            out.paint(&format!("{name} subscribers"), Style::Bold)
        )?;
        stdout.write_all(t.as_bytes())?;
    }
    if !notes.is_empty() {
        writeln!(stdout)?;
        for n in notes {
            writeln!(stdout, "{}", out.paint(&n, Style::Red))?;
        }
    }
    if !files && let Some(note) = not_segments(args.prefix.as_deref()) {
        writeln!(stdout, "{}", out.paint(&note, Style::Yellow))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A line about what is in `/dev/shm` but is not a segment: leftovers of
/// interrupted creates (older versions) and temporaries of dead creators, which
/// `shmq gc` reports or removes. `None` if there are none.
fn not_segments(prefix: Option<&str>) -> Option<String> {
    let leftovers = shmq::inspect::leftovers()
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| prefix.is_none_or(|p| n.starts_with(p)))
        .count();
    let temporaries = match prefix {
        None => shmq::inspect::dead_temporaries().map_or(0, |t| t.len()),
        Some(_) => 0,
    };
    if leftovers + temporaries == 0 {
        return None;
    }
    Some(format!(
        "also {leftovers} leftover(s) of interrupted creates and {temporaries} temporary(ies) \
         of dead creators: `shmq gc` reports or removes them"
    ))
}
