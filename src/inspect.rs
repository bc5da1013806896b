//! Looking at channels without attaching to them: what `shmq ls`, `inspect`, `gc`
//! and `top` show. Nothing here writes to a segment, takes a lock, or waits.

use shmq_ring::inspect::{EndStateKind, RingView};
use shmq_segment::{Expect, HeaderInfo, Peek, Segment, SegmentOptions};

use crate::attach::{KIND_MPSC, KIND_MPSC_TYPED, KIND_SPSC, KIND_SPSC_TYPED};
use crate::error::Result;

/// What kind of channel a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// SPSC, byte messages.
    Spsc,
    /// SPSC, typed messages.
    SpscTyped,
    /// MPSC, byte messages.
    Mpsc,
    /// MPSC, typed messages.
    MpscTyped,
}

impl ChannelKind {
    fn from_code(code: u16) -> Option<ChannelKind> {
        Some(match code {
            KIND_SPSC => ChannelKind::Spsc,
            KIND_SPSC_TYPED => ChannelKind::SpscTyped,
            KIND_MPSC => ChannelKind::Mpsc,
            KIND_MPSC_TYPED => ChannelKind::MpscTyped,
            _ => return None,
        })
    }

    /// Whether this is an MPSC kind.
    pub fn is_mpsc(self) -> bool {
        matches!(self, ChannelKind::Mpsc | ChannelKind::MpscTyped)
    }

    /// Whether messages are typed.
    pub fn is_typed(self) -> bool {
        matches!(self, ChannelKind::SpscTyped | ChannelKind::MpscTyped)
    }

    /// Short name: `spsc`, `spsc/typed`, `mpsc`, `mpsc/typed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Spsc => "spsc",
            ChannelKind::SpscTyped => "spsc/typed",
            ChannelKind::Mpsc => "mpsc",
            ChannelKind::MpscTyped => "mpsc/typed",
        }
    }
}

/// How an endpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointStatus {
    /// Never attached.
    Never,
    /// Held by a live process.
    Alive,
    /// Closed by its holder.
    Closed,
    /// Its holder died without closing.
    Dead,
    /// Claimed once and not held now; whether it closed or died cannot be told
    /// because the ring is unreadable.
    Gone,
}

impl EndpointStatus {
    /// `never`, `alive`, `closed` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Never => "never",
            EndpointStatus::Alive => "alive",
            EndpointStatus::Closed => "closed",
            EndpointStatus::Dead => "dead",
            EndpointStatus::Gone => "gone",
        }
    }
}

/// One endpoint of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointReport {
    /// `consumer`, `producer` (SPSC) or `producer N` (MPSC slot N).
    pub role: String,
    /// Its status.
    pub status: EndpointStatus,
    /// Pid recorded by its last holder (display only; 0 if never claimed).
    pub pid: u32,
    /// How many times it has been claimed.
    pub attaches: u32,
}

/// Everything known about one shmq segment.
#[derive(Clone, Debug)]
pub struct Report {
    /// The segment's name.
    pub name: String,
    /// Its size from `fstat`.
    pub size: u64,
    /// Owner uid and permission bits.
    pub owner: u32,
    /// Permission bits.
    pub mode: u32,
    /// The header as found.
    pub header: HeaderInfo,
    /// The channel kind, if the header names a known one.
    pub kind: Option<ChannelKind>,
    /// The ring's state, if the segment is valid enough to read it.
    pub ring: Option<RingView>,
    /// Its endpoints.
    pub endpoints: Vec<EndpointReport>,
    /// Some process has the segment open.
    pub in_use: bool,
    /// Every problem found; empty for a healthy segment.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether the segment is damaged (any problem found).
    pub fn is_damaged(&self) -> bool {
        !self.problems.is_empty()
    }

    /// Whether no live process has the segment open and no endpoint is alive: it
    /// was left behind (by a crash, or by processes that exited with messages in
    /// it) and `shmq gc` may remove it.
    pub fn is_stale(&self) -> bool {
        !self.in_use
            && self
                .endpoints
                .iter()
                .all(|e| e.status != EndpointStatus::Alive)
    }

    /// Whether an endpoint died without closing.
    pub fn has_dead_endpoint(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.status == EndpointStatus::Dead)
    }
}

/// Looks at the named segment. `Ok(None)` if the object is not a shmq segment
/// (no shmq magic, or too small to hold a header): someone else's.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) for a bad name, a missing object, or
/// no permission to read it.
pub fn inspect(name: &str) -> Result<Option<Report>> {
    let peek = match Segment::peek(name, &SegmentOptions::new()) {
        Ok(p) => p,
        Err(shmq_segment::Error::TooSmall { .. } | shmq_segment::Error::Untrusted { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if !peek.is_shmq() {
        return Ok(None);
    }
    Ok(Some(report(name, peek)))
}

/// Every shmq segment in `/dev/shm`, by name, with its report (or the error met
/// reading it). Other objects are skipped.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `/dev/shm` cannot be listed.
pub fn list() -> Result<Vec<(String, Result<Report>)>> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|source| {
        crate::Error::Segment(shmq_segment::Error::Os {
            op: "read_dir(/dev/shm)",
            source,
        })
    })?;
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|n| format!("/{n}"))
        .filter(|n| shmq_segment::validate_name(n).is_ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        match inspect(&name) {
            Ok(Some(r)) => out.push((name, Ok(r))),
            // Not ours, or removed since the directory was read (a channel whose
            // last endpoint closed): nothing to list.
            Ok(None) | Err(crate::Error::Segment(shmq_segment::Error::NotFound { .. })) => {}
            Err(e) => out.push((name, Err(e))),
        }
    }
    Ok(out)
}

fn report(name: &str, peek: Peek) -> Report {
    let header = *peek.header();
    let mut problems = Vec::new();
    let kind = ChannelKind::from_code(header.kind);
    let header_problems = peek.problems(&Expect::default());
    problems.extend(header_problems.iter().map(ToString::to_string));
    if header_problems.is_empty() && kind.is_none() {
        problems.push(format!("unknown channel kind {}", header.kind));
    }
    let in_use = peek.in_use().unwrap_or(true);
    let ring = if problems.is_empty()
        && let Some(kind) = kind
    {
        ring_view(&peek, kind, &header)
            .map_err(|e| problems.push(e))
            .ok()
    } else {
        None
    };
    if let Some(r) = &ring {
        problems.extend(r.problems.iter().cloned());
    }
    let mut endpoints = Vec::new();
    if header.endpoints <= shmq_segment::MAX_ENDPOINTS {
        for index in 0..header.endpoints {
            let Ok(info) = peek.endpoint_info(index) else {
                continue;
            };
            let state = ring.as_ref().and_then(|r| {
                if index == 0 {
                    Some(r.consumer.state)
                } else {
                    r.producers.get(usize::from(index) - 1).map(|p| p.state)
                }
            });
            let status = match (info.alive, state) {
                (true, _) => EndpointStatus::Alive,
                (false, Some(EndStateKind::Closed)) => EndpointStatus::Closed,
                (false, Some(EndStateKind::Attached)) => EndpointStatus::Dead,
                (false, None) if info.attaches > 0 => EndpointStatus::Gone,
                (false, _) => EndpointStatus::Never,
            };
            let role = match (index, kind.is_some_and(ChannelKind::is_mpsc)) {
                (0, _) => "consumer".to_owned(),
                (_, false) => "producer".to_owned(),
                (i, true) => format!("producer {}", i - 1),
            };
            endpoints.push(EndpointReport {
                role,
                status,
                pid: info.pid,
                attaches: info.attaches,
            });
        }
    }
    Report {
        name: name.to_owned(),
        size: peek.size(),
        owner: peek.owner(),
        mode: peek.mode(),
        header,
        kind,
        ring,
        endpoints,
        in_use,
        problems,
    }
}

fn ring_view(
    peek: &Peek,
    kind: ChannelKind,
    h: &HeaderInfo,
) -> std::result::Result<RingView, String> {
    let region = crate::mem::region_of_peek(peek)?;
    let view = if kind.is_mpsc() {
        shmq_ring::inspect::mpsc(&region, h.capacity, h.endpoints.saturating_sub(1))
    } else {
        shmq_ring::inspect::spsc(&region, h.capacity)
    };
    view.map_err(|e| format!("ring: {e}"))
}
