//! A [`Report`] summarised for tables, its findings rendered in words, and the
//! whole written out as JSON. Nothing here checks a header or a ring: every
//! problem shown is one of the library's findings.

use serde_json::{Value, json};
use shmq::inspect::{
    ChannelKind, Endpoint, EndpointRecord, EndpointReport, EndpointState, EndpointStatus, Expected,
    Field, Finding, HeaderField, HeaderState, Report, RingExpected, RingReport, Severity,
    SubscriberRecord,
};

use crate::out::{self, Align, Cell, Out, Style, Table};

/// `shmq::inspect::list`, only names starting with `prefix`, if given.
///
/// # Errors
/// If `/dev/shm` cannot be listed.
pub fn list(prefix: Option<&str>) -> shmq::Result<Vec<(String, shmq::Result<Report>)>> {
    let mut found = shmq::inspect::list()?;
    found.retain(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)));
    Ok(found)
}

/// The last sync a file channel's header records, in words: when (UTC, and
/// how long ago) and how many syncs so far; `never`.
pub fn last_sync(r: &Report) -> String {
    let Some(l) = r.last_sync.filter(|l| l.syncs > 0 && l.last_sync_ns > 0) else {
        return "never".to_owned();
    };
    let secs = l.last_sync_ns / 1_000_000_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC ({} s ago), {} syncs since creation",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.saturating_sub(secs),
        l.syncs
    )
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The durability policy in words, for tables and JSON: `none`, `periodic`,
/// `every-commit`, `damaged` or `-`.
pub fn durability_short(r: &Report) -> &'static str {
    match &r.durability {
        Some(Ok(d)) => d.name(),
        Some(Err(_)) => "damaged",
        None => "-",
    }
}

/// `spsc/bytes`, `spsc/typed`, `mpsc/bytes` or `mpsc/typed`; `kind N` for a code
/// this build does not know.
pub fn kind_name(r: &Report) -> String {
    match r.kind {
        Some(k) => k.long_name().to_owned(),
        None => format!("kind {}", r.header.kind_code()),
    }
}

/// A typed channel's message type in words (`"metrics.Sample" v2 (24 bytes,
/// align 8)`), `-` for a byte channel or a header too damaged to say.
pub fn message_type(r: &Report) -> String {
    r.message_type
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// A typed channel's message type, short, for a table: its name, then `v2` if
/// declared; `-` for a byte channel.
pub fn message_type_short(r: &Report) -> String {
    match &r.message_type {
        Some(t) => match t.version {
            Some(v) => format!("{} v{v}", t.name),
            None => t.name.clone(),
        },
        None => "-".to_owned(),
    }
}

/// A message type as JSON: name, version (null if undeclared), size, align.
fn message_type_json(r: &Report) -> Value {
    r.message_type.as_ref().map_or(Value::Null, |t| {
        json!({
            "name": t.name,
            "version": t.version,
            "declared": t.version.is_some(),
            "size": t.size,
            "align": t.align,
        })
    })
}

/// A header field's label: `total len`.
pub fn label(f: HeaderField) -> &'static str {
    match f {
        HeaderField::Magic => "magic",
        HeaderField::Version => "version",
        HeaderField::State => "state",
        HeaderField::Kind => "kind",
        HeaderField::Endpoints => "endpoints",
        HeaderField::CreatorPid => "creator pid",
        HeaderField::TotalLen => "total len",
        HeaderField::DataOffset => "data offset",
        HeaderField::Capacity => "capacity",
        HeaderField::SlotSize => "slot size",
        HeaderField::SlotAlign => "slot align",
        HeaderField::TypeVersion => "type version",
        HeaderField::TypeFlags => "type flags",
    }
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

/// A header field's value in words, short: a kind by its name, a state as
/// `ready`, the magic number in hexadecimal.
fn value(field: HeaderField, v: u64) -> String {
    match field {
        HeaderField::Magic => format!("{v:#018x}"),
        HeaderField::State => match HeaderState::from_value(v) {
            HeaderState::Ready => "ready".into(),
            HeaderState::Initialising => "initialising".into(),
            HeaderState::Unknown(v) => format!("{v:#x}"),
        },
        HeaderField::Kind => match u16::try_from(v).ok().and_then(ChannelKind::from_code) {
            Some(k) => k.long_name().into(),
            None => v.to_string(),
        },
        _ => v.to_string(),
    }
}

/// A header field's value as the `inspect` row shows it: [`value`] with the
/// raw number and sizes where they help.
fn row_value(field: HeaderField, v: u64) -> String {
    match field {
        HeaderField::Magic => format!("{v:#018x} \"{}\"", ascii(v)),
        HeaderField::Kind => {
            let name = u16::try_from(v)
                .ok()
                .and_then(ChannelKind::from_code)
                .map_or("unknown", ChannelKind::long_name);
            format!("{v} ({name})")
        }
        HeaderField::TotalLen | HeaderField::Capacity => format!("{v} ({})", out::bytes(v)),
        HeaderField::TypeFlags => match v {
            0 => "0 (undeclared: known by its Rust type name)".into(),
            1 => "1 (declared name and version)".into(),
            _ => v.to_string(),
        },
        _ => value(field, v),
    }
}

/// What a finding is about, in words: `header version`, `frame at position 8`.
fn subject(field: Field) -> String {
    match field {
        Field::Header(h) => format!("header {}", label(h)),
        Field::TypeName => "header type name".into(),
        Field::Region => "ring region".into(),
        Field::Head => "ring head".into(),
        Field::Tail => "ring tail".into(),
        Field::Frame { position } => format!("frame at position {position}"),
        Field::EndpointState(e) => match e {
            Endpoint::Consumer => "consumer state".into(),
            Endpoint::Producer => "producer state".into(),
            Endpoint::ProducerSlot(i) => format!("producer {i} state"),
            Endpoint::SubscriberSlot(i) => format!("subscriber {i} state"),
        },
        _ => "segment".into(),
    }
}

/// What the check expected, in words.
fn expected(f: &Finding) -> String {
    let v = |x: u64| match f.field {
        Field::Header(h) => value(h, x),
        _ => x.to_string(),
    };
    match f.expected {
        Expected::Value(x) => v(x),
        Expected::NotZero => "not 0".into(),
        Expected::AtMost(x) => format!("at most {}", v(x)),
        Expected::AtLeast(x) => format!("at least {}", v(x)),
        Expected::Below(x) => format!("less than {}", v(x)),
        Expected::Between { min, max } => format!("from {} to {}", v(min), v(max)),
        Expected::PowerOfTwo { min, max } => format!(
            "a power of two from {} to {}",
            out::bytes(min),
            out::bytes(max)
        ),
        Expected::ChannelKind => {
            let names: Vec<&str> = ChannelKind::ALL.iter().map(|k| k.long_name()).collect();
            format!("a channel kind ({})", names.join(", "))
        }
        Expected::Readable => "a region inside the segment, aligned for a ring".into(),
        Expected::TypeName => format!(
            "UTF-8 text of at most {} bytes, a NUL, then zeros",
            shmq::MAX_MESSAGE_NAME
        ),
        Expected::NoTypeName => "no name (a byte channel has no message type)".into(),
        Expected::Ring(RingExpected::Aligned) => "a multiple of 8".into(),
        Expected::Ring(RingExpected::WithinCapacity { head, capacity }) => {
            format!("at most {capacity} bytes past head {head}")
        }
        Expected::Ring(RingExpected::Frame(_)) => "a valid frame header".into(),
        Expected::Ring(RingExpected::EndsBy(tail)) => format!("an end at or before tail {tail}"),
        Expected::Ring(RingExpected::KnownState) => "never, attached or closed".into(),
        _ => "another value".into(),
    }
}

/// What was found, in words.
fn found(f: &Finding) -> String {
    match (f.field, f.expected) {
        (_, Expected::TypeName) => format!("a bad byte at offset {} of the field", f.found),
        (_, Expected::NoTypeName) => format!("a name of {} bytes", f.found),
        (_, Expected::Ring(RingExpected::Frame(_))) | (Field::EndpointState(_), _) => {
            format!("{:#x}", f.found)
        }
        (Field::Header(h), _) => value(h, f.found),
        _ => f.found.to_string(),
    }
}

/// Why it matters, where the expected value alone does not say.
fn why(f: &Finding) -> Option<String> {
    let header = match f.field {
        Field::Header(h) => h,
        _ => {
            return match f.expected {
                Expected::Ring(RingExpected::Frame(what)) => Some(what.to_owned()),
                _ => None,
            };
        }
    };
    Some(match (header, f.expected) {
        (HeaderField::State, _) => match HeaderState::from_value(f.found) {
            HeaderState::Initialising if f.severity == Severity::Warning => {
                "its creator is still at work".into()
            }
            HeaderState::Initialising => "abandoned: its creator died".into(),
            _ => "not a known state".into(),
        },
        (HeaderField::Version, _) => "another layout version of shmq, or damage".into(),
        (HeaderField::Endpoints, Expected::Value(_)) => {
            "an SPSC channel has a consumer and a producer".into()
        }
        (HeaderField::Endpoints, Expected::Between { .. }) => {
            "an MPSC channel has a consumer and its producer slots".into()
        }
        (HeaderField::TypeVersion, _) => "a type that declares no name has no version".into(),
        (HeaderField::TypeFlags, _) => "flags no creator writes".into(),
        (HeaderField::SlotSize | HeaderField::SlotAlign, e) => {
            if e == Expected::NotZero {
                "a typed channel records its element".into()
            } else {
                "a byte channel has no element type".into()
            }
        }
        (HeaderField::TotalLen, Expected::Value(_)) => "the object's size".into(),
        (HeaderField::TotalLen, _) => "room for the ring".into(),
        (HeaderField::DataOffset, Expected::Value(_)) => "right after the endpoint table".into(),
        _ => return None,
    })
}

/// `expected X`, then `, found Y` when `with_found`, then why it matters.
fn detail(f: &Finding, with_found: bool) -> String {
    let mut s = format!("expected {}", expected(f));
    if with_found {
        s.push_str(&format!(", found {}", found(f)));
    }
    if let Some(w) = why(f) {
        s.push_str(&format!(" ({w})"));
    }
    s
}

/// A finding as a note beside the value it is about (which the row shows
/// already): `expected 1 (...)`.
pub fn finding_note(f: &Finding) -> String {
    detail(f, false)
}

/// A finding in words: `header version: expected 1, found 7 (...)`.
pub fn finding(f: &Finding) -> String {
    format!("{}: {}", subject(f.field), detail(f, true))
}

/// A finding as JSON: its field (with the frame's position or the producer's
/// slot), what was expected and found, its severity, and the whole in words.
fn finding_json(f: &Finding) -> Value {
    let (field, position, slot) = match f.field {
        Field::Header(h) => (h.name(), None, None),
        Field::TypeName => ("type_name", None, None),
        Field::Region => ("region", None, None),
        Field::Head => ("head", None, None),
        Field::Tail => ("tail", None, None),
        Field::Frame { position } => ("frame", Some(position), None),
        Field::EndpointState(Endpoint::Consumer) => ("consumer_state", None, None),
        Field::EndpointState(Endpoint::Producer) => ("producer_state", None, None),
        Field::EndpointState(Endpoint::ProducerSlot(i)) => ("producer_state", None, Some(i)),
        Field::EndpointState(Endpoint::SubscriberSlot(i)) => ("subscriber_state", None, Some(i)),
        _ => ("other", None, None),
    };
    json!({
        "field": field,
        "position": position,
        "slot": slot,
        "expected": expected(f),
        "found": f.found,
        "severity": match f.severity {
            Severity::Damage => "damage",
            Severity::Mismatch => "mismatch",
            Severity::Warning => "warning",
            _ => "other",
        },
        "text": finding(f),
    })
}

/// One header field: its label, its value decoded, and what its findings say.
#[derive(Clone, Debug)]
pub struct HeaderRow {
    /// Its label (`total len`).
    pub label: &'static str,
    /// Its value, decoded for reading.
    pub value: String,
    /// What is wrong with it, from the library's findings, if anything.
    pub bad: Option<String>,
}

/// Every header field with its value, and the notes of the findings about it.
pub fn header_rows(r: &Report) -> Vec<HeaderRow> {
    HeaderField::ALL
        .iter()
        .map(|&h| {
            let notes: Vec<String> = r.findings(Field::Header(h)).map(finding_note).collect();
            HeaderRow {
                label: label(h),
                value: row_value(h, r.header.get(h)),
                bad: (!notes.is_empty()).then(|| notes.join("; ")),
            }
        })
        .collect()
}

/// Every finding, in words.
pub fn problems(r: &Report) -> Vec<String> {
    r.problems.iter().map(finding).collect()
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

/// Whether the report is of a broadcast channel.
pub fn is_broadcast(r: &Report) -> bool {
    r.kind.is_some_and(ChannelKind::is_broadcast)
}

/// The consumer's endpoint (index 0), if the header declares one; a
/// broadcast channel has none (its index 0 is unused: see [`subscribers`]).
pub fn consumer(r: &Report) -> Option<&EndpointReport> {
    if is_broadcast(r) {
        return None;
    }
    r.endpoints.first()
}

/// The producers' endpoints (index 1 and up); a broadcast channel's
/// publisher (index 1) alone.
pub fn producers(r: &Report) -> &[EndpointReport] {
    let end = if is_broadcast(r) {
        2.min(r.endpoints.len())
    } else {
        r.endpoints.len()
    };
    r.endpoints.get(1..end).unwrap_or(&[])
}

/// One broadcast subscriber slot that has been attached: its endpoint's
/// liveness and its ring record (mode, position, lag, counters).
#[derive(Clone, Copy, Debug)]
pub struct Subscriber<'a> {
    /// Its slot number (`subscriber N`).
    pub slot: u16,
    /// Alive, dead, closed, ... (its segment endpoint's status).
    pub status: EndpointStatus,
    /// Its segment endpoint (pid, attaches).
    pub end: &'a EndpointReport,
    /// Its ring record.
    pub record: &'a SubscriberRecord,
}

impl Subscriber<'_> {
    /// `lossless` or `lossy`.
    pub fn mode(&self) -> &'static str {
        if self.record.lossless {
            "lossless"
        } else {
            "lossy"
        }
    }
}

/// A broadcast channel's subscribers that have ever attached, by slot (never
/// attached slots are left out); empty for other kinds or an unreadable ring.
pub fn subscribers(r: &Report) -> Vec<Subscriber<'_>> {
    let Some(ring) = r.ring.as_ref().filter(|_| is_broadcast(r)) else {
        return Vec::new();
    };
    (0u16..)
        .zip(&ring.subscribers)
        .filter_map(|(slot, record)| {
            let end = r.endpoints.get(2 + usize::from(slot))?;
            let status = end.status;
            let never = status == EndpointStatus::Never && record.end.state == EndpointState::Never;
            (!never).then_some(Subscriber {
                slot,
                status,
                end,
                record,
            })
        })
        .collect()
}

/// One subscriber as JSON: slot, status (liveness), pid, mode, position,
/// lag in bytes behind the publisher, messages received and missed.
fn subscriber_json(s: &Subscriber<'_>) -> Value {
    json!({
        "slot": s.slot,
        "role": s.end.role,
        "status": s.status.as_str(),
        "pid": s.end.pid,
        "attaches": s.end.attaches,
        "mode": s.mode(),
        "position": s.record.position,
        "lag_bytes": s.record.behind,
        "received": s.record.received,
        "missed": s.record.lagged,
    })
}

/// A broadcast channel's subscribers as a JSON array (empty for other kinds).
pub fn subscribers_json(r: &Report) -> Value {
    Value::Array(subscribers(r).iter().map(subscriber_json).collect())
}

/// A broadcast channel's subscribers as a table, one row each, indented by
/// two spaces; `None` if it has none to show (or is another kind).
pub fn subscriber_table(r: &Report, out: &Out) -> Option<String> {
    let subs = subscribers(r);
    if subs.is_empty() {
        return None;
    }
    let mut t = Table::new(&[
        ("  SUBSCRIBER", Align::Left),
        ("MODE", Align::Left),
        ("STATUS", Align::Left),
        ("PID", Align::Right),
        ("POSITION", Align::Right),
        ("LAG", Align::Right),
        ("RECEIVED", Align::Right),
        ("MISSED", Align::Right),
    ]);
    for s in &subs {
        let pid = if s.end.pid == 0 {
            "-".into()
        } else {
            s.end.pid.to_string()
        };
        t.row(vec![
            Cell::plain(format!("  {}", s.slot)),
            Cell::plain(s.mode()),
            Cell::styled(s.status.as_str(), status_style(s.status)),
            Cell::plain(pid),
            Cell::plain(s.record.position.to_string()),
            Cell::plain(out::bytes(s.record.behind)),
            Cell::plain(s.record.received.to_string()),
            Cell::styled(
                s.record.lagged.to_string(),
                if s.record.lagged > 0 {
                    Style::Yellow
                } else {
                    Style::Plain
                },
            ),
        ]);
    }
    Some(t.render(out))
}

/// A broadcast channel's subscribers in a few words (`2 alive, 1 dead`, or
/// `none`), with the style of the worst.
pub fn subscribers_summary(r: &Report) -> (String, Style) {
    status_summary(subscribers(r).iter().map(|s| s.status))
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
    status_summary(ps.iter().map(|e| e.status))
}

/// Statuses counted in a few words: `2 alive, 1 dead` (never attached ones
/// are not counted), or `none`.
fn status_summary(statuses: impl Iterator<Item = EndpointStatus>) -> (String, Style) {
    let all: Vec<EndpointStatus> = statuses.collect();
    let count = |s| all.iter().filter(|&&e| e == s).count();
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
    if r.is_damaged() {
        (format!("damaged, {base}"), Style::Red)
    } else if r.is_stale() {
        (base.to_owned(), Style::Yellow)
    } else {
        (base.to_owned(), Style::Green)
    }
}

/// An end-state word as text.
pub fn end_state_str(s: EndpointState) -> String {
    match s {
        EndpointState::Never => "never".into(),
        EndpointState::Attached => "attached".into(),
        EndpointState::Closed => "closed".into(),
        EndpointState::Invalid(v) => format!("invalid {v:#x}"),
        _ => "unknown".into(),
    }
}

/// A ring endpoint's state words as JSON.
fn end_view(v: &EndpointRecord) -> Value {
    json!({
        "state": end_state_str(v.state),
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

/// The ring's state as JSON, with the findings about the ring (of `r`).
pub fn ring_json(v: &RingReport, r: &Report) -> Value {
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
        "problems": r
            .problems
            .iter()
            .filter(|f| !matches!(f.field, Field::Header(_)))
            .map(finding)
            .collect::<Vec<_>>(),
    })
}

/// Everything in a report as JSON: the summary `shmq ls` shows plus, with
/// `full`, the header and ring that `shmq inspect` shows.
pub fn report_json(r: &Report, full: bool) -> Value {
    let ring = r.ring.as_ref();
    let mut v = json!({
        "name": r.name,
        "kind": r.kind.map(ChannelKind::long_name),
        "kind_code": r.header.kind_code(),
        "message_type": message_type_json(r),
        "capacity": r.header.capacity(),
        "size": r.size,
        "used_bytes": ring.and_then(|v| v.used_bytes),
        "messages": ring.map(|v| v.messages),
        "message_bytes": ring.map(|v| v.message_bytes),
        "uncommitted": ring.map(|v| v.uncommitted),
        "received": ring.map(|v| v.received),
        "consumer": consumer(r).map(endpoint),
        "producers": producers(r).iter().map(endpoint).collect::<Vec<_>>(),
        "subscribers": subscribers_json(r),
        "in_use": r.in_use,
        "stale": r.is_stale(),
        "damaged": r.is_damaged(),
        "problems": problems(r),
        "findings": r.problems.iter().map(finding_json).collect::<Vec<_>>(),
        "durability": durability_short(r),
        "durability_detail": match &r.durability {
            Some(Ok(d)) => d.to_string(),
            Some(Err(e)) => e.clone(),
            None => "-".to_owned(),
        },
        "last_sync_ns": r.last_sync.map(|l| l.last_sync_ns),
        "syncs": r.last_sync.map(|l| l.syncs),
    });
    if full {
        v["owner"] = json!(r.owner);
        v["mode"] = json!(format!("{:04o}", r.mode));
        let mut header = serde_json::Map::new();
        for h in HeaderField::ALL {
            let x = r.header.get(h);
            let x = match h {
                HeaderField::Magic => json!(format!("{x:#018x}")),
                HeaderField::State => json!(format!("{x:#x}")),
                _ => json!(x),
            };
            header.insert(h.name().to_owned(), x);
        }
        v["header"] = Value::Object(header);
        v["ring"] = ring.map_or(Value::Null, |v| ring_json(v, r));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Report {
        Report {
            name: "/t".into(),
            size: 8192,
            owner: 0,
            mode: 0o600,
            header: shmq::inspect::Header::default(),
            kind: Some(ChannelKind::Spsc),
            ring: None,
            endpoints: Vec::new(),
            in_use: false,
            problems: Vec::new(),
            message_type: None,
            durability: None,
            last_sync: None,
        }
    }

    #[test]
    fn a_healthy_report_has_no_notes() {
        let r = healthy();
        assert!(header_rows(&r).iter().all(|f| f.bad.is_none()));
        assert!(problems(&r).is_empty());
        assert_eq!(state_word(&r).0, "stale");
    }

    #[test]
    fn findings_render_in_words() {
        let mut r = healthy();
        let header = |field, expected, found, severity| Finding {
            field: Field::Header(field),
            expected,
            found,
            severity,
        };
        r.problems = vec![
            header(
                HeaderField::Version,
                Expected::Value(1),
                9,
                Severity::Mismatch,
            ),
            header(
                HeaderField::Kind,
                Expected::Value(u64::from(shmq::KIND_MPSC)),
                u64::from(shmq::KIND_SPSC),
                Severity::Damage,
            ),
            header(
                HeaderField::State,
                Expected::Value(0x5244_5921),
                0xdead,
                Severity::Damage,
            ),
            Finding {
                field: Field::Frame { position: 8 },
                expected: Expected::Ring(RingExpected::Frame("unknown frame tag")),
                found: 0xdead_beef_0000_0005,
                severity: Severity::Damage,
            },
        ];
        assert_eq!(
            problems(&r),
            [
                "header version: expected 1, found 9 (another layout version of shmq, or damage)",
                "header kind: expected mpsc/bytes, found spsc/bytes",
                "header state: expected ready, found 0xdead (not a known state)",
                "frame at position 8: expected a valid frame header, found 0xdeadbeef00000005 \
                 (unknown frame tag)",
            ]
        );
        let rows = header_rows(&r);
        assert_eq!(
            rows[1].bad.as_deref(),
            Some("expected 1 (another layout version of shmq, or damage)")
        );
        assert!(rows[5].bad.is_none(), "creator pid");
        assert_eq!(state_word(&r).0, "damaged, stale");
    }

    #[test]
    fn a_warning_alone_is_not_damage() {
        let mut r = healthy();
        r.in_use = true;
        r.problems = vec![Finding {
            field: Field::Header(HeaderField::State),
            expected: Expected::Value(0x5244_5921),
            found: 0,
            severity: Severity::Warning,
        }];
        assert_eq!(
            problems(&r),
            ["header state: expected ready, found initialising (its creator is still at work)"]
        );
        assert_eq!(state_word(&r).0, "open");
    }
}
