//! A [`Report`] summarised for tables, and written out as JSON.

use serde_json::{Value, json};
use shmq::inspect::{ChannelKind, EndpointReport, EndpointStatus, Report};
use shmq::ring::inspect::{EndStateKind, EndView, RingView};

use shmq::segment::{Layout, MAGIC, MAX_ENDPOINTS, STATE_INIT, STATE_READY, VERSION};

use crate::out::{self, Style};

/// `shmq::inspect::list` with segments removed between the directory read and
/// the look at them dropped (they are simply gone), and only names starting
/// with `prefix`, if given.
///
/// # Errors
/// If `/dev/shm` cannot be listed.
pub fn list(prefix: Option<&str>) -> shmq::Result<Vec<(String, shmq::Result<Report>)>> {
    let mut found = shmq::inspect::list()?;
    found.retain(|(name, r)| {
        prefix.is_none_or(|p| name.starts_with(p))
            && !matches!(
                r,
                Err(shmq::Error::Segment(shmq::segment::Error::NotFound { .. }))
            )
    });
    Ok(found)
}

/// `spsc/bytes`, `spsc/typed`, `mpsc/bytes` or `mpsc/typed`; `kind N` for a code
/// this build does not know.
pub fn kind_name(r: &Report) -> String {
    match r.kind {
        Some(k) => kind_str(k).to_owned(),
        None => format!("kind {}", r.header.kind),
    }
}

/// The long name of a channel kind.
pub fn kind_str(k: ChannelKind) -> &'static str {
    match k {
        ChannelKind::Spsc => "spsc/bytes",
        ChannelKind::SpscTyped => "spsc/typed",
        ChannelKind::Mpsc => "mpsc/bytes",
        ChannelKind::MpscTyped => "mpsc/typed",
    }
}

/// One header field: its label, its value decoded, and what is wrong with it.
#[derive(Clone, Debug)]
pub struct HeaderField {
    /// Its label (`total len`).
    pub label: &'static str,
    /// Words by which a problem the library reported names this field; a failed
    /// check is added to the problems only if none of them is mentioned already.
    mentions: &'static [&'static str],
    /// Its value, decoded for reading.
    pub value: String,
    /// What is wrong with it, if a check failed.
    pub bad: Option<String>,
}

/// The magic number's bytes as text, `.` for any that is not printable.
fn ascii(magic: u64) -> String {
    magic
        .to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

/// Every header field, each checked against what a creator of this build
/// writes, so that `inspect` can mark each damaged field on its own row. Some of
/// these checks repeat the library's (`Report.problems`, which lists every
/// failed check as text); [`problems`] does not list those twice.
pub fn header_fields(r: &Report) -> Vec<HeaderField> {
    let h = &r.header;
    let f = |label, mentions, value: String, bad: Option<String>| HeaderField {
        label,
        mentions,
        value,
        bad,
    };
    let (state, state_bad) = match h.state {
        STATE_READY => ("ready".to_owned(), None),
        STATE_INIT if r.in_use => (
            "initialising".to_owned(),
            Some("its creator is still at work".to_owned()),
        ),
        STATE_INIT => (
            "initialising".to_owned(),
            Some("abandoned: its creator died".to_owned()),
        ),
        v => (format!("{v:#x}"), Some("not a known state".to_owned())),
    };
    let endpoints_bad = if h.endpoints > MAX_ENDPOINTS {
        Some(format!("more than {MAX_ENDPOINTS}"))
    } else {
        match r.kind {
            Some(k) if !k.is_mpsc() && h.endpoints != 2 => {
                Some("an SPSC channel has 2 (consumer, producer)".to_owned())
            }
            Some(k) if k.is_mpsc() && h.endpoints < 2 => {
                Some("an MPSC channel has a consumer and at least one producer".to_owned())
            }
            _ => None,
        }
    };
    let want_offset = Layout::data_offset_for(h.endpoints.min(MAX_ENDPOINTS));
    let cap_ok = h.capacity.is_power_of_two()
        && (shmq::ring::spsc::MIN_CAPACITY..=shmq::ring::spsc::MAX_CAPACITY).contains(&h.capacity);
    let typed = r.kind.is_some_and(ChannelKind::is_typed);
    let slot_bad = |v: u64| match (r.kind, v) {
        (Some(_), 0) if typed => Some("a typed channel records its element".to_owned()),
        (Some(_), v) if !typed && v != 0 => Some("a byte channel records 0".to_owned()),
        _ => None,
    };
    vec![
        f(
            "magic",
            &["magic"],
            format!("{:#018x} \"{}\"", h.magic, ascii(h.magic)),
            (h.magic != MAGIC).then(|| format!("expected {MAGIC:#018x}")),
        ),
        f(
            "version",
            &["version"],
            h.version.to_string(),
            (h.version != VERSION).then(|| format!("this build reads version {VERSION}")),
        ),
        f(
            "state",
            &["state", "not ready", "abandoned"],
            state,
            state_bad,
        ),
        f(
            "kind",
            &["kind"],
            format!("{} ({})", h.kind, r.kind.map_or("unknown", kind_str)),
            r.kind.is_none().then(|| "not a channel kind".to_owned()),
        ),
        f(
            "endpoints",
            &["endpoints"],
            h.endpoints.to_string(),
            endpoints_bad,
        ),
        f("creator pid", &[], h.creator_pid.to_string(), None),
        f(
            "total len",
            &["total_len"],
            format!("{} ({})", h.total_len, out::bytes(h.total_len)),
            (h.total_len != r.size).then(|| format!("the object is {} bytes", r.size)),
        ),
        f(
            "data offset",
            &["data_offset"],
            h.data_offset.to_string(),
            (h.endpoints <= MAX_ENDPOINTS && h.data_offset != want_offset)
                .then(|| format!("expected {want_offset} for {} endpoints", h.endpoints)),
        ),
        f(
            "capacity",
            &["capacity"],
            format!("{} ({})", h.capacity, out::bytes(h.capacity)),
            (!cap_ok).then(|| "not a power of two from 64 B to 4 GiB".to_owned()),
        ),
        f(
            "slot size",
            &["slot_size"],
            h.slot_size.to_string(),
            slot_bad(h.slot_size.into()),
        ),
        f(
            "slot align",
            &["slot_align"],
            h.slot_align.to_string(),
            slot_bad(h.slot_align.into()),
        ),
        f(
            "type hash",
            &["type_hash"],
            format!("{:#018x}", h.type_hash),
            slot_bad(h.type_hash),
        ),
    ]
}

/// Every problem: the library's (`Report.problems`), then each failed header
/// check that none of those already names.
pub fn problems(r: &Report) -> Vec<String> {
    let mut all = r.problems.clone();
    for f in header_fields(r) {
        let Some(bad) = f.bad else { continue };
        let named = r
            .problems
            .iter()
            .any(|p| f.mentions.iter().any(|m| p.contains(m)));
        if !named {
            all.push(format!("header {} = {}: {bad}", f.label, f.value));
        }
    }
    all
}

/// Whether any problem was found (see [`problems`]).
pub fn is_damaged(r: &Report) -> bool {
    !problems(r).is_empty()
}

/// How an endpoint status is coloured.
pub fn status_style(s: EndpointStatus) -> Style {
    match s {
        EndpointStatus::Alive => Style::Green,
        EndpointStatus::Dead => Style::Red,
        EndpointStatus::Closed | EndpointStatus::Gone => Style::Yellow,
        EndpointStatus::Never => Style::Dim,
    }
}

/// The consumer's endpoint (index 0), if the header declares one.
pub fn consumer(r: &Report) -> Option<&EndpointReport> {
    r.endpoints.first()
}

/// The producers' endpoints (index 1 and up).
pub fn producers(r: &Report) -> &[EndpointReport] {
    r.endpoints.get(1..).unwrap_or(&[])
}

/// One endpoint's status as a word ([`EndpointStatus::as_str`]), or `-` if unknown.
pub fn one_status(e: Option<&EndpointReport>) -> (String, Style) {
    match e {
        Some(e) => (e.status.as_str().to_owned(), status_style(e.status)),
        None => ("-".into(), Style::Dim),
    }
}

/// Producers in a few words: SPSC `alive`; MPSC `2 alive, 1 dead` (slots never
/// used are not counted; `gone` where the ring is unreadable), or `none`.
pub fn producers_summary(r: &Report) -> (String, Style) {
    let ps = producers(r);
    if !r.kind.is_some_and(ChannelKind::is_mpsc) && ps.len() <= 1 {
        return one_status(ps.first());
    }
    let count = |s| ps.iter().filter(|e| e.status == s).count();
    let mut parts = Vec::new();
    for s in [
        EndpointStatus::Alive,
        EndpointStatus::Dead,
        EndpointStatus::Gone,
        EndpointStatus::Closed,
    ] {
        let n = count(s);
        if n > 0 {
            parts.push(format!("{n} {}", s.as_str()));
        }
    }
    let style = if count(EndpointStatus::Dead) > 0 {
        Style::Red
    } else if count(EndpointStatus::Alive) > 0 {
        Style::Green
    } else if count(EndpointStatus::Closed) + count(EndpointStatus::Gone) > 0 {
        Style::Yellow
    } else {
        Style::Dim
    };
    if parts.is_empty() {
        ("none".into(), style)
    } else {
        (parts.join(", "), style)
    }
}

/// The segment's state in one word: `live` (an endpoint is alive), `open` (some
/// process has it open, no endpoint alive), `stale`; prefixed with `damaged, `
/// when a problem was found.
pub fn state_word(r: &Report) -> (String, Style) {
    let alive = r
        .endpoints
        .iter()
        .any(|e| e.status == EndpointStatus::Alive);
    let base = if alive {
        "live"
    } else if r.in_use {
        "open"
    } else {
        "stale"
    };
    if is_damaged(r) {
        (format!("damaged, {base}"), Style::Red)
    } else if r.is_stale() {
        (base.to_owned(), Style::Yellow)
    } else {
        (base.to_owned(), Style::Green)
    }
}

/// An end-state word as JSON.
fn end_state(s: EndStateKind) -> Value {
    match s {
        EndStateKind::Never => json!("never"),
        EndStateKind::Attached => json!("attached"),
        EndStateKind::Closed => json!("closed"),
        EndStateKind::Invalid(v) => json!(format!("invalid {v:#x}")),
    }
}

/// An end-state word as text.
pub fn end_state_str(s: EndStateKind) -> String {
    match s {
        EndStateKind::Never => "never".into(),
        EndStateKind::Attached => "attached".into(),
        EndStateKind::Closed => "closed".into(),
        EndStateKind::Invalid(v) => format!("invalid {v:#x}"),
    }
}

/// A ring endpoint's state words as JSON.
fn end_view(v: &EndView) -> Value {
    json!({
        "state": end_state(v.state),
        "incarnation": v.incarnation,
        "pending_claim": v.pending_claim,
    })
}

/// A segment endpoint (liveness, pid, attaches) as JSON.
fn endpoint(e: &EndpointReport) -> Value {
    json!({
        "role": e.role,
        "status": e.status.as_str(),
        "pid": e.pid,
        "attaches": e.attaches,
    })
}

/// The ring's state as JSON.
pub fn ring_json(v: &RingView) -> Value {
    json!({
        "capacity": v.capacity,
        "head": v.head,
        "tail": v.tail,
        "received": v.received,
        "used_bytes": v.used_bytes,
        "messages": v.messages,
        "message_bytes": v.message_bytes,
        "uncommitted": v.uncommitted,
        "consumer": end_view(&v.consumer),
        "producers": v.producers.iter().map(end_view).collect::<Vec<_>>(),
        "consumer_waiting": v.consumer_waiting,
        "producers_waiting": v.producers_waiting,
        "problems": v.problems,
    })
}

/// Everything in a report as JSON: the summary `shmq ls` shows plus, with
/// `full`, the header and ring that `shmq inspect` shows.
pub fn report_json(r: &Report, full: bool) -> Value {
    let ring = r.ring.as_ref();
    let mut v = json!({
        "name": r.name,
        "kind": r.kind.map(kind_str),
        "kind_code": r.header.kind,
        "capacity": r.header.capacity,
        "size": r.size,
        "used_bytes": ring.and_then(|v| v.used_bytes),
        "messages": ring.map(|v| v.messages),
        "message_bytes": ring.map(|v| v.message_bytes),
        "uncommitted": ring.map(|v| v.uncommitted),
        "received": ring.map(|v| v.received),
        "consumer": consumer(r).map(endpoint),
        "producers": producers(r).iter().map(endpoint).collect::<Vec<_>>(),
        "in_use": r.in_use,
        "stale": r.is_stale(),
        "damaged": is_damaged(r),
        "problems": problems(r),
    });
    if full {
        let h = &r.header;
        v["owner"] = json!(r.owner);
        v["mode"] = json!(format!("{:04o}", r.mode));
        v["header"] = json!({
            "magic": format!("{:#018x}", h.magic),
            "version": h.version,
            "state": format!("{:#x}", h.state),
            "kind": h.kind,
            "endpoints": h.endpoints,
            "creator_pid": h.creator_pid,
            "total_len": h.total_len,
            "data_offset": h.data_offset,
            "capacity": h.capacity,
            "slot_size": h.slot_size,
            "slot_align": h.slot_align,
            "type_hash": format!("{:#018x}", h.type_hash),
        });
        v["ring"] = ring.map_or(Value::Null, ring_json);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmq::segment::HeaderInfo;

    fn healthy() -> Report {
        let header = HeaderInfo {
            magic: MAGIC,
            version: VERSION,
            state: STATE_READY,
            kind: shmq::KIND_SPSC,
            endpoints: 2,
            creator_pid: 1,
            total_len: 8192,
            data_offset: Layout::data_offset_for(2),
            capacity: 4096,
            ..HeaderInfo::default()
        };
        Report {
            name: "/t".into(),
            size: 8192,
            owner: 0,
            mode: 0o600,
            header,
            kind: Some(ChannelKind::Spsc),
            ring: None,
            endpoints: Vec::new(),
            in_use: false,
            problems: Vec::new(),
        }
    }

    #[test]
    fn a_healthy_header_passes_every_check() {
        let r = healthy();
        assert!(header_fields(&r).iter().all(|f| f.bad.is_none()));
        assert!(problems(&r).is_empty());
    }

    #[test]
    fn every_damaged_field_is_named_once() {
        let mut r = healthy();
        r.header.version = 9;
        r.header.state = 0xdead;
        r.header.slot_size = 3;
        // The library names the first failure only.
        r.problems = vec!["layout version mismatch: expected 1, found 9".into()];
        assert_eq!(
            problems(&r),
            [
                "layout version mismatch: expected 1, found 9",
                "header state = 0xdead: not a known state",
                "header slot size = 3: a byte channel records 0",
            ]
        );
        assert!(is_damaged(&r));
        assert_eq!(state_word(&r).0, "damaged, stale");
    }
}
