//! `shmq rm NAME` (or `rm PATH`, a file channel) and `shmq gc`: removing
//! segments, carefully.
//!
//! Both decide from a [`Report`] and then remove through
//! [`shmq::inspect::remove_stale`], which takes the segment's owner lock exclusively
//! before unlinking: a process that opens the segment between our look and our
//! removal makes the removal decline instead of pulling the name from under it.
//! Only `rm --force` unlinks unconditionally.
//!
//! Messages waiting for a consumer are data: `gc` keeps a stale channel that
//! holds them (checked again under the lock, so a producer that sends and exits
//! between the look and the removal cannot lose them) unless
//! `--discard-messages`. `rm NAME` names the channel, so it removes it with its
//! messages.
//!
//! Objects that older versions' creators left half-made (empty, or with a zero
//! header: a [`Leftover`]) are not segments: `gc` reports them, `rm` removes an
//! empty one nobody has open, `rm --force` any of them. `gc` also removes the
//! temporaries of creators that died while building under a named temporary.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};
use shmq::inspect::{EndpointStatus, Leftover, Removal, Report};

use crate::cli::{GcArgs, RmArgs, Target};
use crate::error::{CliError, Result};
use crate::inspect::fetch;
use crate::out::{Out, Style};
use crate::report;

/// Why a segment must not be removed without `--force`, or `None` if it is stale.
fn why_busy(r: &Report) -> Option<String> {
    let alive: Vec<String> = r
        .endpoints
        .iter()
        .filter(|e| e.status == EndpointStatus::Alive)
        .map(|e| format!("{} (pid {})", e.role, e.pid))
        .collect();
    if !alive.is_empty() {
        Some(format!("alive: {}", alive.join(", ")))
    } else if r.in_use {
        Some("a process has it open".into())
    } else {
        None
    }
}

/// Removes one segment. Without `--force` it refuses a segment that a process has
/// open or with a live endpoint; it never removes an object that is not a shmq
/// segment or a leftover of an interrupted create (see [`rm_leftover`]).
pub fn rm(args: &RmArgs) -> Result<ExitCode> {
    let name = &args.name;
    let target = Target::of(name);
    if let Target::Shm(name) = target
        && let Ok(Some(l)) = shmq::inspect::leftover(name)
    {
        return rm_leftover(name, &l, args.force);
    }
    let r = fetch(name)?;
    let mut stdout = std::io::stdout().lock();
    if args.force {
        target.unlink()?;
        let note = why_busy(&r)
            .map(|why| format!(" ({why}; those processes keep their mapping)"))
            .unwrap_or_default();
        writeln!(stdout, "removed {name}{note}")?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(why) = why_busy(&r) {
        return Err(CliError::msg(format!(
            "refusing to remove {name}: it is in use ({why}); use --force to remove it anyway"
        )));
    }
    // Named explicitly: messages still waiting in it go too (the report said so).
    if target.remove_stale()? == Removal::Removed {
        writeln!(stdout, "removed {name}")?;
        return Ok(ExitCode::SUCCESS);
    }
    // Declined: find out why for the message (opened meanwhile, gone, not ours).
    let why = match target.inspect() {
        Ok(Some(now)) => why_busy(&now).unwrap_or_else(|| "it is not owned by this user".into()),
        Ok(None) => "it was replaced by a non-shmq object".into(),
        Err(e) => e.to_string(),
    };
    Err(CliError::msg(format!("could not remove {name}: {why}")))
}

/// What a [`Leftover`] is, in a few words.
fn leftover_words(l: &Leftover) -> &'static str {
    if l.size == 0 {
        "an empty object left by an interrupted create"
    } else {
        "an object with no shmq header, left by an interrupted create"
    }
}

/// Removes a leftover of an older shmq's interrupted create: with `--force`
/// whatever holds it; without, only an empty one that no process has open
/// (a zero-filled one might be someone's data).
fn rm_leftover(name: &str, l: &Leftover, force: bool) -> Result<ExitCode> {
    let what = leftover_words(l);
    let mut stdout = std::io::stdout().lock();
    if force {
        shmq::inspect::unlink(name)?;
        let note = if l.in_use {
            "; a process had it open"
        } else {
            ""
        };
        writeln!(stdout, "removed {name} ({what}{note})")?;
        return Ok(ExitCode::SUCCESS);
    }
    if l.in_use || l.size != 0 {
        let why = if l.in_use {
            "a process has it open"
        } else {
            "it is not empty"
        };
        return Err(CliError::msg(format!(
            "refusing to remove {name}: {what}, but {why}; use --force to remove it anyway"
        )));
    }
    if shmq::inspect::remove_leftover(name)? {
        writeln!(stdout, "removed {name} ({what})")?;
        return Ok(ExitCode::SUCCESS);
    }
    Err(CliError::msg(format!(
        "could not remove {name}: it was opened, replaced or removed meanwhile"
    )))
}

/// What `gc` did (or would do) with one segment.
struct Action {
    name: String,
    action: &'static str,
    detail: String,
}

/// Lists (or removes) the names of one kind of a dead process's leftovers.
type Names = fn() -> shmq::Result<Vec<String>>;

/// Removes every stale segment (no process has it open, no endpoint alive),
/// damaged ones included, except channels whose messages wait for a consumer
/// (kept, and said so, unless `--discard-messages`), and (without `--prefix`)
/// the temporaries of dead creators; reports leftovers of interrupted creates
/// without removing them; with `--dry-run` only lists. Segments that cannot be
/// read are skipped with a note; one whose removal fails makes the exit status 1.
pub fn gc(args: &GcArgs, out: &Out) -> Result<ExitCode> {
    let mut actions = Vec::new();
    let mut failed = false;
    for (name, r) in report::list(args.prefix.as_deref())? {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // Unreadable (another user's, say): not ours to judge.
                actions.push(Action {
                    name,
                    action: "skipped",
                    detail: e.to_string(),
                });
                continue;
            }
        };
        if !r.is_stale() {
            continue;
        }
        if !args.discard_messages
            && let Some((messages, bytes)) = r.waiting_messages()
        {
            actions.push(Action {
                name,
                action: if args.dry_run { "would keep" } else { "kept" },
                detail: kept_detail(messages, bytes),
            });
            continue;
        }
        let detail = stale_detail(&r);
        if args.dry_run {
            actions.push(Action {
                name,
                action: "would remove",
                detail,
            });
            continue;
        }
        let action = match shmq::inspect::remove_stale(&name, args.discard_messages) {
            Ok(Removal::Removed) => Action {
                name,
                action: "removed",
                detail,
            },
            // A producer sent since we looked (and exited): the check under the
            // segment's lock found messages waiting.
            Ok(Removal::KeptMessages { messages, bytes }) => Action {
                name,
                action: "kept",
                detail: kept_detail(messages, bytes),
            },
            // Opened (or removed) by someone since we looked: not stale any more.
            Ok(Removal::Declined) => Action {
                name,
                action: "kept",
                detail: "in use again, removed by another process, or not owned by this user"
                    .into(),
            },
            Err(e) => {
                failed = true;
                Action {
                    name,
                    action: "error",
                    detail: e.to_string(),
                }
            }
        };
        actions.push(action);
    }
    // Temporaries of creators that died (only a creator building under a named
    // temporary leaves one): not segments, so `list` does not show them.
    if args.prefix.is_none() {
        // (Doorbells are the FIFOs of receivers that died.)
        let dead_names: [(&str, Names, Names, &str); 2] = [
            (
                "temporaries",
                shmq::inspect::dead_temporaries,
                shmq::inspect::remove_dead_temporaries,
                "temporary of a creator that died before publishing",
            ),
            (
                "doorbells",
                shmq::inspect::dead_doorbells,
                shmq::inspect::remove_dead_doorbells,
                "doorbell of a receiver that died",
            ),
        ];
        for (what, find, remove, detail) in dead_names {
            match if args.dry_run { find() } else { remove() } {
                Ok(found) => actions.extend(found.into_iter().map(|name| Action {
                    name,
                    action: if args.dry_run {
                        "would remove"
                    } else {
                        "removed"
                    },
                    detail: detail.into(),
                })),
                Err(e) => {
                    failed = true;
                    actions.push(Action {
                        name: what.into(),
                        action: "error",
                        detail: e.to_string(),
                    });
                }
            }
        }
    }
    // Leftovers of older versions' interrupted creates: reported, never
    // removed here (`shmq rm` does, on request).
    for (name, l) in shmq::inspect::leftovers()? {
        if args.prefix.as_deref().is_some_and(|p| !name.starts_with(p)) {
            continue;
        }
        let how = if l.size == 0 && !l.in_use {
            format!("remove it with `shmq rm {name}`")
        } else {
            format!("remove it with `shmq rm --force {name}`")
        };
        actions.push(Action {
            name,
            action: "leftover",
            detail: format!("{}; {how}", leftover_words(&l)),
        });
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let all: Vec<Value> = actions
            .iter()
            .map(|a| json!({ "name": a.name, "action": a.action, "detail": a.detail }))
            .collect();
        writeln!(stdout, "{}", Value::Array(all))?;
    } else if actions.is_empty() {
        writeln!(stdout, "no stale segments")?;
    } else {
        for a in &actions {
            let style = match a.action {
                "removed" | "would remove" | "leftover" => Style::Yellow,
                "error" => Style::Red,
                _ => Style::Plain,
            };
            writeln!(
                stdout,
                "{} {}  {}",
                out.paint(a.action, style),
                a.name,
                out.paint(&format!("({})", a.detail), Style::Dim)
            )?;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Why `gc` keeps a stale channel that holds messages, and how to remove it.
fn kept_detail(messages: u64, bytes: u64) -> String {
    let noun = if messages == 1 { "message" } else { "messages" };
    format!(
        "{messages} {noun} ({bytes} bytes) waiting for a consumer; \
         --discard-messages removes it"
    )
}

/// Why a stale segment was left behind, in a few words.
fn stale_detail(r: &Report) -> String {
    let mut parts = Vec::new();
    if r.is_damaged() {
        parts.push("damaged".to_owned());
    }
    let dead: Vec<&str> = r
        .endpoints
        .iter()
        .filter(|e| matches!(e.status, EndpointStatus::Dead | EndpointStatus::Gone))
        .map(|e| e.role.as_str())
        .collect();
    if !dead.is_empty() {
        // Gone and dead come together: the ring is unreadable (gone) or not.
        let word = if r.ring.is_none() { "gone" } else { "dead" };
        parts.push(format!("{word}: {}", dead.join(", ")));
    }
    if let Some(v) = &r.ring
        && v.messages > 0
    {
        parts.push(format!("{} messages never received", v.messages));
    }
    if parts.is_empty() {
        parts.push("no process has it open".into());
    }
    parts.join("; ")
}
