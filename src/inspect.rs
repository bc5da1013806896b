//! Looking at channels without attaching to them: what `shmq ls`, `inspect`, `gc`
//! and `top` show. Nothing here writes to a segment, takes a lock, or waits,
//! except [`remove_stale`], [`remove_if_stale`] and [`unlink`], which remove one.
//! Nothing here maps a segment either: headers and rings are copied into private
//! buffers with `pread`, so an owner that truncates a segment while it is read
//! cannot make the reader fault (`SIGBUS`).
//!
//! # Findings
//! Every check that fails is one [`Finding`]: which [`Field`] (a header field, or
//! a part of the ring), what was [`Expected`], what was found, and its
//! [`Severity`]. The segment's header validation and the ring's inspection
//! produce them (`shmq_segment::HeaderFinding`, `shmq_ring::inspect::RingFinding`);
//! this module converts them field by field and adds the checks only a channel
//! knows (its kind, endpoint count, capacity, element fields). Tools render them;
//! nothing here turns a finding into text.

use shmq_ring::Region;
use shmq_ring::frame::{self, SpscFrame};
use shmq_ring::inspect::{self as ring, RingView};
use shmq_segment::{self as segment, Expect, HeaderInfo, Peek, Segment, SegmentOptions};

use crate::attach::{
    KIND_BROADCAST, KIND_BROADCAST_TYPED, KIND_MPSC, KIND_MPSC_TYPED, KIND_SPSC, KIND_SPSC_TYPED,
};
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
    /// Broadcast, byte messages.
    Broadcast,
    /// Broadcast, typed messages.
    BroadcastTyped,
}

impl ChannelKind {
    /// Every channel kind.
    pub const ALL: [ChannelKind; 6] = [
        ChannelKind::Spsc,
        ChannelKind::SpscTyped,
        ChannelKind::Mpsc,
        ChannelKind::MpscTyped,
        ChannelKind::Broadcast,
        ChannelKind::BroadcastTyped,
    ];

    /// The kind a header's kind code names, if it is a channel kind.
    pub fn from_code(code: u16) -> Option<ChannelKind> {
        Some(match code {
            KIND_SPSC => ChannelKind::Spsc,
            KIND_SPSC_TYPED => ChannelKind::SpscTyped,
            KIND_MPSC => ChannelKind::Mpsc,
            KIND_MPSC_TYPED => ChannelKind::MpscTyped,
            KIND_BROADCAST => ChannelKind::Broadcast,
            KIND_BROADCAST_TYPED => ChannelKind::BroadcastTyped,
            _ => return None,
        })
    }

    /// The header's kind code for this kind (`KIND_SPSC`, ...).
    pub fn code(self) -> u16 {
        match self {
            ChannelKind::Spsc => KIND_SPSC,
            ChannelKind::SpscTyped => KIND_SPSC_TYPED,
            ChannelKind::Mpsc => KIND_MPSC,
            ChannelKind::MpscTyped => KIND_MPSC_TYPED,
            ChannelKind::Broadcast => KIND_BROADCAST,
            ChannelKind::BroadcastTyped => KIND_BROADCAST_TYPED,
        }
    }

    /// Whether this is an MPSC kind.
    pub fn is_mpsc(self) -> bool {
        matches!(self, ChannelKind::Mpsc | ChannelKind::MpscTyped)
    }

    /// Whether this is a broadcast kind.
    pub fn is_broadcast(self) -> bool {
        matches!(self, ChannelKind::Broadcast | ChannelKind::BroadcastTyped)
    }

    /// Whether messages are typed.
    pub fn is_typed(self) -> bool {
        matches!(
            self,
            ChannelKind::SpscTyped | ChannelKind::MpscTyped | ChannelKind::BroadcastTyped
        )
    }

    /// Short name: `spsc`, `spsc/typed`, `mpsc`, `mpsc/typed`, `broadcast`,
    /// `broadcast/typed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Spsc => "spsc",
            ChannelKind::SpscTyped => "spsc/typed",
            ChannelKind::Mpsc => "mpsc",
            ChannelKind::MpscTyped => "mpsc/typed",
            ChannelKind::Broadcast => "broadcast",
            ChannelKind::BroadcastTyped => "broadcast/typed",
        }
    }

    /// Long name: `spsc/bytes`, `spsc/typed`, `mpsc/bytes`, `mpsc/typed`,
    /// `broadcast/bytes`, `broadcast/typed`.
    pub fn long_name(self) -> &'static str {
        match self {
            ChannelKind::Spsc => "spsc/bytes",
            ChannelKind::Mpsc => "mpsc/bytes",
            ChannelKind::Broadcast => "broadcast/bytes",
            typed => typed.as_str(),
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

/// One field of a segment header (the segment crate's own type: its `name()`
/// and `ALL`, in header order).
pub use shmq_segment::HeaderField;

/// What a check of the ring requires (the ring crate's own type, inside
/// [`Expected::Ring`]).
pub use shmq_ring::inspect::RingExpected;

/// The magic number of every shmq segment (`"SHMQ-SEG"` in little-endian order).
pub const MAGIC: u64 = segment::MAGIC;
/// The layout version this build writes and reads.
pub const VERSION: u32 = segment::VERSION;

/// What a header's `state` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderState {
    /// Published: the creator has finished writing the header.
    Ready,
    /// Not published yet: its creator is still writing it, or died first.
    Initialising,
    /// A value no creator writes.
    Unknown(u64),
}

impl HeaderState {
    /// Decodes a `state` value.
    pub fn from_value(v: u64) -> HeaderState {
        if v == u64::from(segment::STATE_READY) {
            HeaderState::Ready
        } else if v == u64::from(segment::STATE_INIT) {
            HeaderState::Initialising
        } else {
            HeaderState::Unknown(v)
        }
    }
}

/// A segment header's fields as found, each widened to `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    values: [u64; HeaderField::ALL.len()],
}

impl Header {
    /// A header with these values (for tools and tests that build a [`Report`]).
    pub fn from_fn(mut value: impl FnMut(HeaderField) -> u64) -> Header {
        Header {
            values: HeaderField::ALL.map(&mut value),
        }
    }

    /// One field's value.
    pub fn get(&self, field: HeaderField) -> u64 {
        self.values[field as usize]
    }

    /// The ring's capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.get(HeaderField::Capacity)
    }

    /// The channel kind's code.
    pub fn kind_code(&self) -> u64 {
        self.get(HeaderField::Kind)
    }

    /// The publication state.
    pub fn state(&self) -> HeaderState {
        HeaderState::from_value(self.get(HeaderField::State))
    }

    fn of(h: &HeaderInfo) -> Header {
        Header::from_fn(|f| h.value(f))
    }
}

/// Which endpoint's state word a ring finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The consumer.
    Consumer,
    /// The SPSC producer.
    Producer,
    /// MPSC producer slot N.
    ProducerSlot(u16),
    /// Broadcast subscriber slot N.
    SubscriberSlot(u16),
}

/// Which part of a segment a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// A header field.
    Header(HeaderField),
    /// The type name field after the header (the typed channel's message type
    /// name; empty for byte channels).
    TypeName,
    /// The ring's region as a whole (it could not be located in the segment).
    Region,
    /// The consumer's position in the ring.
    Head,
    /// The producers' published (SPSC) or claim (MPSC) position.
    Tail,
    /// The frame header at this ring position.
    Frame {
        /// Its position.
        position: u64,
    },
    /// An endpoint's state word in the ring.
    EndpointState(Endpoint),
}

/// What a check requires of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expected {
    /// Exactly this value (for [`HeaderField::Kind`] a kind code, for
    /// [`HeaderField::State`] a state value: decode them for display).
    Value(u64),
    /// Any value but 0.
    NotZero,
    /// At most this value.
    AtMost(u64),
    /// At least this value.
    AtLeast(u64),
    /// Less than this value.
    Below(u64),
    /// A value from `min` to `max`, both included.
    Between {
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A power of two from `min` to `max`, both included.
    PowerOfTwo {
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// The code of a channel kind (see [`ChannelKind::ALL`]).
    ChannelKind,
    /// A type name field as a creator writes it: UTF-8 text of at most
    /// [`MAX_MESSAGE_NAME`](crate::MAX_MESSAGE_NAME) bytes, a NUL, then zeros.
    /// The finding's `found` is the offset of the first byte that breaks it.
    TypeName,
    /// An empty type name (a byte channel has no message type). The finding's
    /// `found` is the length of the name found.
    NoTypeName,
    /// A region that lies inside the segment, aligned as a ring needs.
    Readable,
    /// What a check of the ring requires (the ring crate's own type).
    Ring(RingExpected),
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Severity {
    /// A value no creator or endpoint writes: the segment is damaged.
    Damage,
    /// A well-formed value this build does not accept (another layout version).
    Mismatch,
    /// Not wrong, but worth saying: the header is not published yet while its
    /// creator is still at work.
    Warning,
}

/// One failed check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What was checked.
    pub field: Field,
    /// What the check requires.
    pub expected: Expected,
    /// The value found: the field's value, a ring position, a frame header word,
    /// a state word, or (for `RingExpected::EndsBy`) where the frame ends.
    pub found: u64,
    /// How bad it is.
    pub severity: Severity,
}

impl Finding {
    /// Whether it makes the segment unusable ([`Severity::Damage`] or
    /// [`Severity::Mismatch`]).
    pub fn is_problem(&self) -> bool {
        self.severity != Severity::Warning
    }

    fn header(field: HeaderField, expected: Expected, found: u64) -> Finding {
        Finding {
            field: Field::Header(field),
            expected,
            found,
            severity: Severity::Damage,
        }
    }

    /// The segment's finding, with the severity of an unpublished header decided
    /// by whether its creator may still be at work (`in_use`).
    fn of_header(f: &segment::HeaderFinding, in_use: bool) -> Finding {
        let expected = match f.expected {
            segment::Expected::Value(v) => Expected::Value(v),
            segment::Expected::NotZero => Expected::NotZero,
            segment::Expected::AtMost(v) => Expected::AtMost(v),
            segment::Expected::Below(v) => Expected::Below(v),
        };
        let severity = match f.severity {
            segment::Severity::Damage => Severity::Damage,
            segment::Severity::Mismatch => Severity::Mismatch,
            segment::Severity::Unpublished if in_use => Severity::Warning,
            segment::Severity::Unpublished => Severity::Damage,
        };
        Finding {
            field: Field::Header(f.field),
            expected,
            found: f.found,
            severity,
        }
    }

    fn of_ring(f: &ring::RingFinding) -> Finding {
        let end = |e| match e {
            ring::EndpointName::Consumer => Endpoint::Consumer,
            ring::EndpointName::Producer => Endpoint::Producer,
            ring::EndpointName::ProducerSlot(i) => Endpoint::ProducerSlot(i),
            ring::EndpointName::SubscriberSlot(i) => Endpoint::SubscriberSlot(i),
        };
        let field = match f.field {
            ring::RingField::Head => Field::Head,
            ring::RingField::Tail => Field::Tail,
            ring::RingField::Frame { position } => Field::Frame { position },
            ring::RingField::EndpointState(e) => Field::EndpointState(end(e)),
        };
        Finding {
            field,
            expected: Expected::Ring(f.expected),
            found: f.found,
            severity: Severity::Damage,
        }
    }
}

/// What an endpoint's state word in the ring says.
pub use shmq_ring::inspect::EndpointState;
/// One endpoint as the ring's state words describe it.
pub use shmq_ring::inspect::EndpointView as EndpointRecord;
/// A channel's ring as its words describe it (positions, counts, endpoint
/// states; broadcast: each subscriber slot's mode, position and lag), the
/// ring's own reading passed through; its problems are in
/// [`Report::problems`].
pub use shmq_ring::inspect::RingState as RingReport;
/// One broadcast subscriber slot: its mode, position and lag.
pub use shmq_ring::inspect::SubscriberView as SubscriberRecord;

/// Everything known about one shmq segment.
#[derive(Clone, Debug)]
pub struct Report {
    /// The segment's name.
    pub name: String,
    /// Its size from `fstat`.
    pub size: u64,
    /// Owner uid.
    pub owner: u32,
    /// Permission bits.
    pub mode: u32,
    /// The header as found.
    pub header: Header,
    /// The channel kind, if the header names a known one.
    pub kind: Option<ChannelKind>,
    /// The ring's state, if the segment is valid enough to read it.
    pub ring: Option<RingReport>,
    /// Its endpoints: the consumer, then the producers.
    pub endpoints: Vec<EndpointReport>,
    /// Some process has the segment open.
    pub in_use: bool,
    /// Every check that failed, header first, then ring; empty for a healthy
    /// segment.
    pub problems: Vec<Finding>,
    /// A typed channel's message type as its header records it (name, version
    /// if declared, size, alignment); `None` for byte channels and for headers
    /// too damaged to say.
    pub message_type: Option<crate::MessageType>,
    /// The durability policy the header records ([`Durability::None`] for
    /// every segment but a file channel's), or what is wrong with the record
    /// (in words); `None` if the object is too short to hold it.
    ///
    /// [`Durability::None`]: crate::Durability::None
    pub durability: Option<std::result::Result<crate::Durability, String>>,
    /// The last sync recorded in the header (file channels; display only).
    pub last_sync: Option<crate::SyncRecord>,
}

impl Report {
    /// Whether the segment is damaged or unusable by this build: any finding
    /// but a [`Severity::Warning`].
    pub fn is_damaged(&self) -> bool {
        self.problems.iter().any(Finding::is_problem)
    }

    /// The findings about one field.
    pub fn findings(&self, field: Field) -> impl Iterator<Item = &Finding> {
        self.problems.iter().filter(move |f| f.field == field)
    }

    /// Whether no live process has the segment open and no endpoint is alive: it
    /// was left behind (by a crash, or by processes that exited with messages in
    /// it). `shmq gc` removes it unless messages wait in it for a consumer (see
    /// [`Report::waiting_messages`]).
    pub fn is_stale(&self) -> bool {
        !self.in_use
            && self
                .endpoints
                .iter()
                .all(|e| e.status != EndpointStatus::Alive)
    }

    /// The committed messages waiting in the ring for a consumer and their payload
    /// bytes, if there are any (and the ring could be read). `shmq gc` keeps such
    /// a channel unless told to discard them.
    pub fn waiting_messages(&self) -> Option<(u64, u64)> {
        self.ring
            .as_ref()
            .filter(|r| r.messages > 0)
            .map(|r| (r.messages, r.message_bytes))
    }

    /// Whether an endpoint died without closing.
    pub fn has_dead_endpoint(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.status == EndpointStatus::Dead)
    }
}

/// The named segment, read-only; `None` if it is not a shmq segment (no
/// shmq magic, too small for a header, or not a regular object of ours).
fn shmq_peek(name: &str) -> Result<Option<Peek>> {
    let peek = match Segment::peek(name, &SegmentOptions::new()) {
        Ok(p) => p,
        Err(segment::Error::TooSmall { .. } | segment::Error::Untrusted { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(peek.is_shmq().then_some(peek))
}

/// The file channel at `path`, read-only; `None` if the file is not a shmq
/// segment. A symbolic link or a directory is said as such (`Untrusted`),
/// not taken for someone else's file.
fn shmq_peek_file(path: &std::path::Path) -> Result<Option<Peek>> {
    let peek = match Segment::peek_file(path, &SegmentOptions::new()) {
        Ok(p) => p,
        Err(segment::Error::TooSmall { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(peek.is_shmq().then_some(peek))
}

/// Looks at the named segment. `Ok(None)` if the object is not a shmq segment
/// (no shmq magic, or too small to hold a header): someone else's.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) for a bad name, a missing object, or
/// no permission to read it.
pub fn inspect(name: &str) -> Result<Option<Report>> {
    Ok(shmq_peek(name)?.map(|peek| report(name, &peek)))
}

/// Looks at the file channel at `path` (as [`inspect`] does a named one).
/// `Ok(None)` if the file is not a shmq segment. The report's name is the path.
///
/// # Errors
/// As [`inspect`], with a path for the name.
pub fn inspect_file(path: &std::path::Path) -> Result<Option<Report>> {
    Ok(shmq_peek_file(path)?.map(|peek| report(&path.display().to_string(), &peek)))
}

/// The messages waiting in the named channel, oldest first, at most `max` of
/// them, copied out without attaching to the channel or writing to it: for
/// SPSC and MPSC the committed messages from the consumer's position on (the
/// ones [`RingReport::messages`] counts; claims not committed yet are left
/// out), for broadcast every message the ring still holds, from the oldest
/// (whether or not a subscriber has received it). A typed channel's messages
/// are its records' bytes ([`Report::message_type`] says their type).
/// `Ok(None)` if the object is not a shmq segment.
///
/// It is a snapshot: ends that send or receive meanwhile may change the
/// channel as soon as it is taken. A header its creator has not published
/// yet holds no message: `Ok` of an empty list.
///
/// # Errors
/// As [`inspect`]; [`Error::Corrupted`](crate::Error::Corrupted) if the
/// segment fails a check of its header, ring or frames ([`inspect`] names
/// each problem); [`Error::Lagged`](crate::Error::Lagged) if a broadcast
/// publisher overwrote every retained message while they were copied, again
/// and again (the count is the messages it published meanwhile).
pub fn peek_messages(name: &str, max: usize) -> Result<Option<Vec<Vec<u8>>>> {
    shmq_peek(name)?
        .map(|peek| waiting(name, &peek, max))
        .transpose()
}

/// [`peek_messages`] for the file channel at `path`.
///
/// # Errors
/// As [`peek_messages`], with a path for the name.
pub fn peek_messages_file(path: &std::path::Path, max: usize) -> Result<Option<Vec<Vec<u8>>>> {
    shmq_peek_file(path)?
        .map(|peek| waiting(&path.display().to_string(), &peek, max))
        .transpose()
}

/// Times a broadcast peek copies the retained messages again when the
/// publisher overwrote all of them during the copy.
const PEEK_ATTEMPTS: usize = 16;

/// The error for a segment that fails a check: the value and position found.
fn failed_check(f: &Finding) -> crate::Error {
    let position = match f.field {
        Field::Frame { position } => position,
        _ => 0,
    };
    corrupted(
        "the segment fails its checks (shmq inspect names each problem)",
        position,
        f.found,
    )
}

fn corrupted(what: &'static str, position: u64, value: u64) -> crate::Error {
    crate::Error::Corrupted(crate::Corruption {
        what,
        position,
        value,
    })
}

/// [`peek_messages`] on a peeked segment: the same checks as [`inspect`],
/// then a walk over a private copy of the frames.
fn waiting(name: &str, peek: &Peek, max: usize) -> Result<Vec<Vec<u8>>> {
    let r = report(name, peek);
    if let Some(f) = r.problems.iter().find(|f| f.is_problem()) {
        return Err(failed_check(f));
    }
    let (Some(kind), true) = (r.kind, r.problems.is_empty()) else {
        // Only warnings: the header is not published yet.
        return Ok(Vec::new());
    };
    let info = *peek.header();
    let copy = ring_copy(peek, kind, &info).map_err(|f| failed_check(&f))?;
    if let Some(f) = copy.view.problems.first() {
        return Err(failed_check(&Finding::of_ring(f)));
    }
    let mut walk = Walk {
        peek,
        cap: copy.view.state.capacity,
        copy: &copy,
        found: Vec::new(),
        max,
    };
    if kind.is_broadcast() {
        walk.broadcast(&info)?;
    } else if kind.is_mpsc() {
        walk.mpsc(info.endpoints.saturating_sub(1))?;
    } else {
        walk.spsc()?;
    }
    Ok(walk.found)
}

/// A walk over the frames of a ring's private copy, gathering messages.
struct Walk<'a> {
    peek: &'a Peek,
    copy: &'a RingCopy,
    cap: usize,
    found: Vec<Vec<u8>>,
    max: usize,
}

impl Walk<'_> {
    /// The data area's offset of ring position `pos`.
    fn offset(&self, pos: u64) -> usize {
        (pos & (self.cap as u64 - 1)) as usize
    }

    /// The header word at ring position `pos` in the copy.
    fn word(&self, pos: u64) -> u64 {
        let at = self.copy.control_len + self.offset(pos);
        self.copy.region.load_word(at).unwrap_or(0)
    }

    /// Copies `len` bytes from ring position `pos` (a multiple of 8, not
    /// wrapping) from the segment into the copy.
    fn fetch(&self, pos: u64, len: usize) -> Result<()> {
        let off = self.offset(pos);
        let len = len.min(self.cap - off);
        copy_in(
            self.peek,
            &self.copy.region,
            self.copy.control_len + off,
            len,
        )?;
        Ok(())
    }

    /// Copies `len` bytes from ring position `pos`, wrapping at the end of the
    /// data area.
    fn fetch_wrapping(&self, pos: u64, len: usize) -> Result<()> {
        let before_end = len.min(self.cap - self.offset(pos));
        self.fetch(pos, before_end)?;
        let rest = len - before_end;
        if rest > 0 {
            copy_in(self.peek, &self.copy.region, self.copy.control_len, rest)?;
        }
        Ok(())
    }

    /// Keeps the payload of `len` bytes of the frame at `pos`; `false` once
    /// `max` messages are kept.
    fn keep(&mut self, pos: u64, len: usize) -> bool {
        if self.found.len() >= self.max {
            return false;
        }
        let start = self.copy.control_len + self.offset(pos) + frame::HEADER_LEN;
        let mut msg = Vec::with_capacity(frame::align8(len));
        for at in (start..start + len).step_by(8) {
            let word = self.copy.region.load_word(at).unwrap_or(0);
            // Native order: `copy_in` stored the segment's bytes as such words.
            msg.extend_from_slice(&word.to_ne_bytes());
        }
        msg.truncate(len);
        self.found.push(msg);
        self.found.len() < self.max
    }

    /// SPSC: as the ring's own walk counts them, from `head`: the frames up
    /// to `tail`, and one a producer published after it without moving `tail`
    /// (fetched from the segment: the copy holds only its header).
    fn spsc(&mut self) -> Result<()> {
        let v = &self.copy.view;
        let (head, used) = (v.state.head, v.state.used_bytes.unwrap_or(0));
        // The copy holds the waiting frames and the word after them.
        let copied_to = head.wrapping_add(used).wrapping_add(8);
        let mut pos = head;
        for _ in 0..=self.cap / 8 {
            let raw = self.word(pos);
            let f = frame::decode_spsc(raw, self.offset(pos), self.cap)
                .map_err(|what| corrupted(what, pos, raw))?;
            let end = pos.wrapping_add(f.size() as u64);
            match f {
                SpscFrame::Empty => break,
                SpscFrame::Message { len } => {
                    if end.wrapping_sub(head) > copied_to.wrapping_sub(head) {
                        self.fetch(pos, f.size())?;
                    }
                    if !self.keep(pos, len) {
                        break;
                    }
                }
                SpscFrame::Padding { .. } => {}
            }
            pos = end;
            if pos.wrapping_sub(head) > used {
                break;
            }
        }
        Ok(())
    }

    /// MPSC: the committed messages from `head` to `tail`, as the ring's own
    /// walk counts them; it stops at a claim whose header is not written.
    fn mpsc(&mut self, producers: u16) -> Result<()> {
        let v = &self.copy.view;
        let (head, tail, used) = (v.state.head, v.state.tail, v.state.used_bytes.unwrap_or(0));
        let mut pos = head;
        for _ in 0..=self.cap / 8 {
            if pos == tail {
                break;
            }
            let raw = self.word(pos);
            let Some(h) = frame::decode_mpsc(raw, self.offset(pos), self.cap, producers)
                .map_err(|what| corrupted(what, pos, raw))?
            else {
                break;
            };
            let end = pos.wrapping_add(h.size() as u64);
            if end.wrapping_sub(head) > used {
                return Err(corrupted("frame runs past tail", pos, raw));
            }
            if h.len >= 0 && h.kind != frame::MPSC_PAD && !self.keep(pos, h.payload_len()) {
                break;
            }
            pos = end;
        }
        Ok(())
    }

    /// Broadcast: every frame from the oldest retained one to `tail`. The
    /// publisher may overwrite old frames while they are copied; it moves
    /// `oldest` past a frame before it overwrites it, so the frames from the
    /// `oldest` read after the copy were whole when copied. If it moved past
    /// everything copied, the copy is made again.
    fn broadcast(&mut self, h: &HeaderInfo) -> Result<()> {
        let subscribers = h.endpoints.saturating_sub(2);
        let control = self.copy.control_len;
        let positions = |walk: &Self| {
            ring::broadcast_publisher(&walk.copy.region, h.capacity, subscribers)
                .map_err(|_| corrupted("broadcast ring unreadable", 0, h.capacity))
        };
        let mut before = positions(self)?;
        for _ in 0..PEEK_ATTEMPTS {
            let held = before.tail.wrapping_sub(before.oldest);
            if !before.oldest.is_multiple_of(8) || held > self.cap as u64 {
                return Err(corrupted(
                    "broadcast oldest position out of range",
                    before.tail,
                    before.oldest,
                ));
            }
            self.fetch_wrapping(before.oldest, held as usize)?;
            copy_in(self.peek, &self.copy.region, 0, control)?;
            let after = positions(self)?;
            if after.oldest.wrapping_sub(before.oldest) <= held {
                return self.broadcast_frames(after.oldest, before.tail);
            }
            before = after;
        }
        let again = positions(self)?;
        Err(crate::Error::Lagged(again.count.wrapping_sub(before.count)))
    }

    /// The broadcast frames from `from` to `tail` in the copy.
    fn broadcast_frames(&mut self, from: u64, tail: u64) -> Result<()> {
        let mut pos = from;
        for _ in 0..=self.cap / 8 {
            if pos == tail {
                break;
            }
            let raw = self.word(pos);
            let f = frame::decode_broadcast(raw, self.offset(pos), self.cap)
                .map_err(|what| corrupted(what, pos, raw))?;
            let end = pos.wrapping_add(f.size() as u64);
            if end.wrapping_sub(from) > tail.wrapping_sub(from) {
                return Err(corrupted("frame runs past tail", pos, raw));
            }
            if !f.padding && !self.keep(pos, f.len) {
                break;
            }
            pos = end;
        }
        Ok(())
    }
}

/// Every file channel in directory `dir` (its regular files that hold a shmq
/// header; creators' temporaries and other files are skipped), by path, sorted,
/// with its report or the error met reading it.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `dir` cannot be listed.
pub fn list_dir(dir: &std::path::Path) -> Result<Vec<(String, Result<Report>)>> {
    let entries = std::fs::read_dir(dir).map_err(|source| {
        crate::Error::Segment(segment::Error::Os {
            op: "read_dir",
            source,
        })
    })?;
    let mut paths: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            !e.file_name()
                .to_string_lossy()
                .starts_with(segment::TEMPORARY_PREFIX)
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths
        .iter()
        .filter_map(|p| listed(p.display().to_string(), inspect_file(p)))
        .collect())
}

/// A listing's row for `name`: its report, or the error met reading it; none
/// for what is not a channel and for what was removed since the directory was
/// read (a channel whose last endpoint closed).
fn listed(name: String, r: Result<Option<Report>>) -> Option<(String, Result<Report>)> {
    match r {
        Ok(Some(r)) => Some((name, Ok(r))),
        Ok(None) => None,
        Err(e) if is_not_found(&e) => None,
        Err(e) => Some((name, Err(e))),
    }
}

/// The names of the regular files in `/dev/shm` that are valid segment names,
/// sorted, `/`-prefixed; creators' temporaries are left out (not segments yet,
/// see `dead_temporaries`).
fn shm_names() -> Result<Vec<String>> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|source| {
        crate::Error::Segment(segment::Error::Os {
            op: "read_dir(/dev/shm)",
            source,
        })
    })?;
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with(segment::TEMPORARY_PREFIX))
        .map(|n| format!("/{n}"))
        .filter(|n| segment::validate_name(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Every shmq segment in `/dev/shm`, by name, with its report (or the error met
/// reading it). Other objects, and segments removed between the directory read
/// and the look at them, are skipped.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `/dev/shm` cannot be listed.
pub fn list() -> Result<Vec<(String, Result<Report>)>> {
    Ok(shm_names()?
        .into_iter()
        .filter_map(|name| {
            let r = inspect(&name);
            listed(name, r)
        })
        .collect())
}

/// Whether `e` says that the segment does not exist (any more).
pub fn is_not_found(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Segment(segment::Error::NotFound { .. }))
}

/// Removes the named segment if no process has it open and no message waits in
/// it for a consumer ([`remove_stale`] without discarding messages): `Ok(true)`
/// if it was removed.
///
/// # Errors
/// As [`remove_stale`].
pub fn remove_if_stale(name: &str) -> Result<bool> {
    Ok(remove_stale(name, false)? == Removal::Removed)
}

/// What [`remove_stale`] did with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// It was removed.
    Removed,
    /// It was kept because committed messages wait in it for a consumer (a
    /// producer sent them and exited before any consumer attached, say): they are
    /// data, and a consumer that opens the channel later receives them.
    KeptMessages {
        /// Messages waiting.
        messages: u64,
        /// Their payload bytes.
        bytes: u64,
    },
    /// It was not removed: a process has it open (again), it is gone already, or
    /// it is not this user's.
    Declined,
}

/// Removes the named segment if no process has it open, taking its owner lock
/// exclusively first: a process that opens it between a look and this call
/// makes the removal decline ([`Removal::Declined`]) instead of pulling the name
/// from under it. Unless `discard_messages`, a channel whose ring holds committed
/// messages no consumer has received is kept ([`Removal::KeptMessages`]); that
/// is decided while the lock is held, so no producer can send between the look
/// and the removal.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) for a bad name or a failed system call.
pub fn remove_stale(name: &str, discard_messages: bool) -> Result<Removal> {
    remove_stale_with(name, discard_messages, |keep| {
        Ok(Segment::remove_if_stale_unless(name, keep)?)
    })
}

/// [`remove_stale`] for the file channel at `path` (a symbolic link is not
/// followed).
///
/// # Errors
/// As [`remove_stale`], with a path for the name.
pub fn remove_stale_file(path: &std::path::Path, discard_messages: bool) -> Result<Removal> {
    remove_stale_with(&path.display().to_string(), discard_messages, |keep| {
        Ok(Segment::remove_file_if_stale_unless(path, keep)?)
    })
}

/// The decision of [`remove_stale`] around `remove`, which removes the
/// segment (called `name` in reports) unless the function it is given, shown
/// the segment under its lock, says to keep it.
fn remove_stale_with(
    name: &str,
    discard_messages: bool,
    remove: impl FnOnce(&mut dyn FnMut(&Peek) -> bool) -> Result<bool>,
) -> Result<Removal> {
    let mut kept = None;
    let removed = remove(&mut |peek: &Peek| {
        if discard_messages || !peek.is_shmq() {
            return false;
        }
        kept = report(name, peek).waiting_messages();
        kept.is_some()
    })?;
    Ok(match (removed, kept) {
        (true, _) => Removal::Removed,
        (false, Some((messages, bytes))) => Removal::KeptMessages { messages, bytes },
        (false, None) => Removal::Declined,
    })
}

/// An object under a segment name with no shmq header, left by an older
/// shmq's creator that was interrupted (see [`shmq_segment::Leftover`]).
pub use shmq_segment::Leftover;

/// Whether the named object is a [`Leftover`]; `None` for a segment or anything
/// else.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) for a bad name, a missing object or
/// no permission.
pub fn leftover(name: &str) -> Result<Option<Leftover>> {
    Ok(Segment::leftover(name)?)
}

/// Every [`Leftover`] in `/dev/shm`, by name. Objects that are segments, are
/// someone else's, or vanish while we look are skipped.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `/dev/shm` cannot be listed.
pub fn leftovers() -> Result<Vec<(String, Leftover)>> {
    Ok(shm_names()?
        .into_iter()
        .filter_map(|n| Some((n.clone(), Segment::leftover(&n).ok()??)))
        .collect())
}

/// Removes the named [`Leftover`] if no process has it open (under its owner
/// lock, as [`remove_if_stale`]). `Ok(false)` if it is not a leftover, is in
/// use, or went away.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) for a bad name, a missing object or
/// no permission.
pub fn remove_leftover(name: &str) -> Result<bool> {
    Ok(Segment::remove_leftover(name)?)
}

/// Names of the temporaries in `/dev/shm` whose creators died before
/// publishing them (a creator builds under a named temporary unless
/// `SegmentOptions::build_unnamed`, and leaves it when killed).
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `/dev/shm` cannot be listed.
pub fn dead_temporaries() -> Result<Vec<String>> {
    Ok(Segment::dead_temporaries()?)
}

/// Removes the temporaries of dead creators from `/dev/shm` (never one whose
/// creator lives); returns their names.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `/dev/shm` cannot be listed.
pub fn remove_dead_temporaries() -> Result<Vec<String>> {
    Ok(Segment::remove_dead_temporaries()?)
}

/// Names (`/.shmq-bell-…`) of the doorbells in `/dev/shm` whose receivers
/// died ([`Receiver::doorbell`](crate::Receiver::doorbell) makes one; a
/// receiver that exits normally removes its own).
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `/dev/shm` cannot be listed.
pub fn dead_doorbells() -> Result<Vec<String>> {
    Ok(bell_names(shmq_segment::bell::dead_bells()?))
}

/// Removes the doorbells of dead receivers from `/dev/shm` (never one whose
/// receiver lives: it holds a lock on it); returns their names.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) if `/dev/shm` cannot be listed.
pub fn remove_dead_doorbells() -> Result<Vec<String>> {
    Ok(bell_names(shmq_segment::bell::remove_dead_bells()?))
}

/// `/dev/shm` paths as names (`/` and the file name).
fn bell_names(paths: Vec<std::path::PathBuf>) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| Some(format!("/{}", p.file_name()?.to_str()?)))
        .collect()
}

/// Removes the named segment unconditionally: processes that have it open keep
/// their mapping, nobody new can open it.
///
/// # Errors
/// [`Error::Segment`](crate::Error::Segment) for a bad name, a missing object or
/// no permission.
pub fn unlink(name: &str) -> Result<()> {
    Ok(Segment::unlink(name)?)
}

fn report(name: &str, peek: &Peek) -> Report {
    let info = *peek.header();
    let header = Header::of(&info);
    let in_use = peek.in_use().unwrap_or(true);
    let kind = u16::try_from(header.kind_code())
        .ok()
        .and_then(ChannelKind::from_code);
    let mut problems: Vec<Finding> = info
        .findings(peek.size(), &Expect::default())
        .iter()
        .map(|f| Finding::of_header(f, in_use))
        .collect();
    if header.state() == HeaderState::Initialising {
        // An unpublished header's other fields may not be written yet: only its
        // state says anything.
        problems.retain(|f| f.field == Field::Header(HeaderField::State));
    } else {
        // The channel's own checks, for the fields the segment found no fault in.
        for f in channel_findings(&header, kind) {
            if !problems.iter().any(|p| p.field == f.field) {
                problems.push(f);
            }
        }
    }
    let mut message_type = None;
    if header.state() != HeaderState::Initialising && !problems.iter().any(Finding::is_problem) {
        let typed = kind.is_some_and(ChannelKind::is_typed);
        match peek.type_name() {
            Err(segment::Error::BadTypeName { at, .. }) => problems.push(Finding {
                field: Field::TypeName,
                expected: Expected::TypeName,
                found: at as u64,
                severity: Severity::Damage,
            }),
            Err(_) => {}
            Ok(n) if !typed && !n.is_empty() => problems.push(Finding {
                field: Field::TypeName,
                expected: Expected::NoTypeName,
                found: n.as_str().len() as u64,
                severity: Severity::Damage,
            }),
            Ok(n) if typed => {
                message_type = crate::MessageType::from_header(
                    &n,
                    info.type_version,
                    info.type_flags,
                    info.slot_size,
                    info.slot_align,
                );
            }
            Ok(_) => {}
        }
    }
    let ring = match kind {
        Some(kind) if problems.is_empty() => match ring_view(peek, kind, &info) {
            Ok(v) => {
                problems.extend(v.problems.iter().map(Finding::of_ring));
                Some(v.state)
            }
            Err(f) => {
                problems.push(f);
                None
            }
        },
        _ => None,
    };
    let endpoints = endpoints(peek, &info, kind, ring.as_ref());
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
        message_type,
        durability: peek.durability().map(|d| d.map_err(|e| e.to_string())),
        last_sync: peek.sync_record(),
    }
}

/// What a channel requires of a header beyond the segment's own checks: a
/// channel kind, its endpoint count, a ring capacity, and element fields that
/// match typed or byte messages.
fn channel_findings(h: &Header, kind: Option<ChannelKind>) -> Vec<Finding> {
    use HeaderField as F;
    let mut out = Vec::new();
    let mut check = |field, ok: bool, expected| {
        if !ok {
            out.push(Finding::header(field, expected, h.get(field)));
        }
    };
    let capacity = h.capacity();
    let (min, max) = (shmq_ring::spsc::MIN_CAPACITY, shmq_ring::spsc::MAX_CAPACITY);
    check(
        F::Capacity,
        capacity.is_power_of_two() && (min..=max).contains(&capacity),
        Expected::PowerOfTwo { min, max },
    );
    let Some(kind) = kind else {
        check(F::Kind, false, Expected::ChannelKind);
        return out;
    };
    let endpoints = h.get(F::Endpoints);
    if kind.is_broadcast() {
        let (min, max) = (3, u64::from(shmq_ring::broadcast::MAX_SUBSCRIBERS) + 2);
        check(
            F::Endpoints,
            (min..=max).contains(&endpoints),
            Expected::Between { min, max },
        );
    } else if kind.is_mpsc() {
        let (min, max) = (2, u64::from(shmq_ring::mpsc::MAX_PRODUCERS) + 1);
        check(
            F::Endpoints,
            (min..=max).contains(&endpoints),
            Expected::Between { min, max },
        );
    } else {
        check(F::Endpoints, endpoints == 2, Expected::Value(2));
    }
    if kind.is_typed() {
        for field in [F::SlotSize, F::SlotAlign] {
            check(field, h.get(field) != 0, Expected::NotZero);
        }
        let flags = h.get(F::TypeFlags);
        check(
            F::TypeFlags,
            flags <= u64::from(crate::identity::DECLARED),
            Expected::AtMost(crate::identity::DECLARED.into()),
        );
        // An undeclared type has no version.
        check(
            F::TypeVersion,
            flags != 0 || h.get(F::TypeVersion) == 0,
            Expected::Value(0),
        );
    } else {
        for field in [F::SlotSize, F::SlotAlign, F::TypeVersion, F::TypeFlags] {
            check(field, h.get(field) == 0, Expected::Value(0));
        }
    }
    out
}

/// The ring's view, or the finding that says why it cannot be read.
///
/// The ring is read from a private copy, never from a mapping of the segment:
/// its owner may truncate it at any moment, and a mapped read would then fault
/// (`SIGBUS`). The copy is made with `pread` into a zero-filled heap region
/// ([`crate::mem::zeroed_region`]), in two steps: the control block first, then, once its positions say which part
/// of the data area holds messages, that part (all of it if the positions are
/// damaged). Pages of the data area that hold no message are never touched, so
/// looking at a large, mostly empty ring costs little memory.
fn ring_view(
    peek: &Peek,
    kind: ChannelKind,
    h: &HeaderInfo,
) -> std::result::Result<RingView, Finding> {
    ring_copy(peek, kind, h).map(|c| c.view)
}

/// A private copy of a ring: its control block and the part of its data area
/// that held messages, and the view read from it (see [`ring_view`]).
struct RingCopy {
    view: RingView,
    region: Region,
    /// Where the data area starts in `region`.
    control_len: usize,
}

/// [`ring_view`], keeping the copy it read.
fn ring_copy(
    peek: &Peek,
    kind: ChannelKind,
    h: &HeaderInfo,
) -> std::result::Result<RingCopy, Finding> {
    let unreadable = |expected, field, found| Finding {
        field,
        expected,
        found,
        severity: Severity::Damage,
    };
    let region_unreadable = || unreadable(Expected::Readable, Field::Region, h.data_offset);
    let data_len = peek
        .data_len()
        .and_then(|l| usize::try_from(l).ok())
        .ok_or_else(region_unreadable)?;
    let producers = h.endpoints.saturating_sub(1);
    let subscribers = h.endpoints.saturating_sub(2);
    // The channel checks rule out a bad capacity or producer count before the
    // ring is read; should the ring disagree, its region is unreadable.
    let (control_len, region_len) = if kind.is_broadcast() {
        let g = shmq_ring::Geometry::broadcast(h.capacity, subscribers)
            .map_err(|_| region_unreadable())?;
        (g.control_len(), g.region_len())
    } else if kind.is_mpsc() {
        let g =
            shmq_ring::Geometry::mpsc(h.capacity, producers).map_err(|_| region_unreadable())?;
        (g.control_len(), g.region_len())
    } else {
        let g = shmq_ring::Geometry::spsc(h.capacity).map_err(|_| region_unreadable())?;
        (g.control_len(), g.region_len())
    };
    let view = |region: &Region| {
        let v = if kind.is_broadcast() {
            ring::broadcast(region, h.capacity, subscribers)
        } else if kind.is_mpsc() {
            ring::mpsc(region, h.capacity, producers)
        } else {
            ring::spsc(region, h.capacity)
        };
        v.map_err(|e| match e {
            shmq_ring::Error::RegionTooSmall { needed, .. } => unreadable(
                Expected::AtLeast(h.data_offset.saturating_add(needed)),
                Field::Header(HeaderField::TotalLen),
                h.total_len,
            ),
            _ => region_unreadable(),
        })
    };
    // As long as the ring needs, if the segment holds that much (else the view
    // says the region is too small, without reading it).
    let region = crate::mem::zeroed_region(data_len.min(region_len));
    copy_in(peek, &region, 0, control_len.min(region.len())).map_err(|_| region_unreadable())?;
    let first = view(&region)?;
    let cap = first.state.capacity;
    let mask = cap as u64 - 1;
    match first.state.used_bytes {
        Some(0) => {
            return Ok(RingCopy {
                view: first,
                region,
                control_len,
            });
        }
        Some(used) => {
            // The waiting frames, plus the word after them (an SPSC producer that
            // died between writing a frame and publishing `tail` left one there).
            let want = usize::try_from(used).map_or(cap, |u| u.saturating_add(8).min(cap));
            let start = (first.state.head & mask) as usize;
            let before_end = want.min(cap - start);
            copy_in(peek, &region, control_len + start, before_end)
                .and_then(|()| copy_in(peek, &region, control_len, want - before_end))
                .map_err(|_| region_unreadable())?;
        }
        None => {
            copy_in(peek, &region, control_len, cap).map_err(|_| region_unreadable())?;
        }
    }
    Ok(RingCopy {
        view: view(&region)?,
        region,
        control_len,
    })
}

/// Bytes copied from the segment per `pread`.
const COPY_CHUNK: usize = 1 << 20;

/// Copies `len` bytes of the peeked user region, from offset `from` (a multiple
/// of 8), into `region` at the same offset. Bytes past the end of a segment
/// truncated meanwhile stay zero.
fn copy_in(peek: &Peek, region: &Region, from: usize, len: usize) -> segment::Result<()> {
    let mut buf = vec![0u8; len.min(COPY_CHUNK)];
    let end = from + len;
    let mut at = from;
    while at < end {
        let n = (end - at).min(buf.len());
        let got = peek.read_data(at as u64, &mut buf[..n])?;
        for (i, chunk) in buf[..got].chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // Native order: ring words are atomics in this machine's order.
            region.store_word(at + i * 8, u64::from_ne_bytes(word));
        }
        if got < n {
            break;
        }
        at += n;
    }
    Ok(())
}

/// The endpoint table, each endpoint's status decided by its liveness lock and
/// (when the ring could be read) its state word.
fn endpoints(
    peek: &Peek,
    info: &HeaderInfo,
    kind: Option<ChannelKind>,
    ring: Option<&RingReport>,
) -> Vec<EndpointReport> {
    let mut endpoints = Vec::new();
    if info.endpoints > segment::MAX_ENDPOINTS {
        return endpoints;
    }
    for index in 0..info.endpoints {
        let Ok(end) = peek.endpoint_info(index) else {
            continue;
        };
        let broadcast = kind.is_some_and(ChannelKind::is_broadcast);
        let state = ring.and_then(|r| match index {
            0 => Some(r.consumer.state),
            // A broadcast channel: 1 the publisher, 2 + s subscriber slot s.
            i if broadcast && i >= 2 => r.subscribers.get(usize::from(i) - 2).map(|s| s.end.state),
            i => r.producers.get(usize::from(i) - 1).map(|p| p.state),
        });
        let status = match (end.alive, state) {
            (true, _) => EndpointStatus::Alive,
            (false, Some(EndpointState::Closed)) => EndpointStatus::Closed,
            (false, Some(EndpointState::Attached)) => EndpointStatus::Dead,
            (false, None) if end.attaches > 0 => EndpointStatus::Gone,
            (false, _) => EndpointStatus::Never,
        };
        let role = match (index, kind) {
            (0, Some(k)) if k.is_broadcast() => "unused".to_owned(),
            (1, Some(k)) if k.is_broadcast() => "publisher".to_owned(),
            (i, Some(k)) if k.is_broadcast() => format!("subscriber {}", i - 2),
            (0, _) => "consumer".to_owned(),
            (i, Some(k)) if k.is_mpsc() => format!("producer {}", i - 1),
            _ => "producer".to_owned(),
        };
        endpoints.push(EndpointReport {
            role,
            status,
            pid: end.pid,
            attaches: end.attaches,
        });
    }
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: ChannelKind, set: &[(HeaderField, u64)]) -> Header {
        Header::from_fn(|f| {
            set.iter().find(|(g, _)| *g == f).map_or_else(
                || match f {
                    HeaderField::Kind => kind.code().into(),
                    // A consumer and a producer; broadcast: the unused word,
                    // the publisher and one subscriber slot.
                    HeaderField::Endpoints if kind.is_broadcast() => 3,
                    HeaderField::Endpoints => 2,
                    HeaderField::Capacity => 1024,
                    HeaderField::SlotSize | HeaderField::SlotAlign if kind.is_typed() => 8,
                    _ => 0,
                },
                |(_, v)| *v,
            )
        })
    }

    /// The ring is read from a copy of its waiting part; messages that wrap past
    /// the end of the ring are copied from both ends and all counted.
    #[test]
    fn waiting_messages_are_counted_across_the_wrap() {
        let opts = crate::Options::new().capacity(4096);
        let msg = [7u8; 100];
        let spsc_name = crate::unique_name("t-inspect-wrap-spsc").unwrap();
        let mut rx = crate::spsc::Receiver::create(&spsc_name, &opts).unwrap();
        let mut tx = crate::spsc::Sender::open(&spsc_name, &opts).unwrap();
        let mpsc_name = crate::unique_name("t-inspect-wrap-mpsc").unwrap();
        let mut mrx = crate::mpsc::Receiver::create(&mpsc_name, &opts).unwrap();
        let mut mtx = crate::mpsc::Sender::open(&mpsc_name, &opts).unwrap();
        for _ in 0..30 {
            tx.send(&msg).unwrap();
            mtx.send(&msg).unwrap();
        }
        for _ in 0..25 {
            drop(rx.recv().unwrap());
            drop(mrx.recv().unwrap());
        }
        for _ in 0..20 {
            tx.send(&msg).unwrap();
            mtx.send(&msg).unwrap();
        }
        for name in [&spsc_name, &mpsc_name] {
            let r = inspect(name).unwrap().expect("a channel");
            assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
            let ring = r.ring.as_ref().expect("ring read");
            assert!(
                ring.head % 4096 + ring.used_bytes.unwrap() > 4096,
                "{name}: the waiting messages should wrap"
            );
            assert_eq!(r.waiting_messages(), Some((25, 2500)), "{name}");
        }
        drop((tx, rx, mtx, mrx));
        let _ = unlink(&spsc_name);
        let _ = unlink(&mpsc_name);
    }

    /// Peeking copies the waiting messages out, oldest first, and leaves them
    /// there: SPSC and MPSC from the consumer's position (across the wrap),
    /// broadcast from the oldest message the ring still holds, typed channels
    /// as their records' bytes.
    #[test]
    fn peek_messages_shows_what_waits_and_leaves_it() {
        /// Unlinks the channels when dropped, even after a failed assertion.
        struct Names(Vec<String>);
        impl Drop for Names {
            fn drop(&mut self) {
                for n in &self.0 {
                    let _ = unlink(n);
                }
            }
        }
        let [spsc_name, mpsc_name, b_name, t_name] = ["spsc", "mpsc", "bcast", "typed"]
            .map(|k| crate::unique_name(&format!("t-inspect-peek-{k}")).unwrap());
        let _names = Names(vec![
            spsc_name.clone(),
            mpsc_name.clone(),
            b_name.clone(),
            t_name.clone(),
        ]);
        let opts = crate::Options::new().capacity(256);
        let msg = |i: u8| vec![i; usize::from(i % 5) + 1];
        let mut rx = crate::spsc::Receiver::create(&spsc_name, &opts).unwrap();
        let mut tx = crate::spsc::Sender::open(&spsc_name, &opts).unwrap();
        let mut mrx = crate::mpsc::Receiver::create(&mpsc_name, &opts).unwrap();
        let mut mtx = crate::mpsc::Sender::open(&mpsc_name, &opts).unwrap();
        // 16-byte frames: 12 sent, 8 received, 8 more sent wrap the 256 bytes.
        for i in 0..12 {
            tx.send(&msg(i)).unwrap();
            mtx.send(&msg(i)).unwrap();
        }
        for _ in 0..8 {
            drop(rx.recv().unwrap());
            drop(mrx.recv().unwrap());
        }
        for i in 12..20 {
            tx.send(&msg(i)).unwrap();
            mtx.send(&msg(i)).unwrap();
        }
        let want: Vec<Vec<u8>> = (8..20).map(msg).collect();
        for name in [&spsc_name, &mpsc_name] {
            assert_eq!(
                peek_messages(name, 100).unwrap(),
                Some(want.clone()),
                "{name}"
            );
            assert_eq!(
                peek_messages(name, 3).unwrap(),
                Some(want[..3].to_vec()),
                "{name}"
            );
            assert_eq!(peek_messages(name, 0).unwrap(), Some(Vec::new()), "{name}");
        }
        for m in &want {
            assert_eq!(&*rx.recv().unwrap(), &m[..], "still there after the peek");
            assert_eq!(&*mrx.recv().unwrap(), &m[..]);
        }
        assert_eq!(peek_messages(&spsc_name, 100).unwrap(), Some(Vec::new()));

        // Broadcast: no subscriber holds the publisher back, so the ring keeps
        // only the newest messages, from `oldest`.
        let mut pb = crate::broadcast::Publisher::create(&b_name, &opts).unwrap();
        for i in 0..40 {
            pb.send(&msg(i)).unwrap();
        }
        let got = peek_messages(&b_name, 100).unwrap().unwrap();
        assert!(got.len() >= 8 && got.len() < 40, "{}", got.len());
        let first = 40 - got.len() as u8;
        assert_eq!(got, (first..40).map(msg).collect::<Vec<_>>());
        let oldest = crate::Options::new().join(crate::broadcast::Join::Oldest);
        let mut sub = crate::broadcast::Subscriber::open(&b_name, &oldest).unwrap();
        assert_eq!(
            &*sub.recv().unwrap(),
            &msg(first)[..],
            "left for subscribers"
        );

        // Typed: the records' bytes.
        let topts = crate::Options::new().capacity(8);
        let mut ttx = crate::spsc::typed::Sender::<u64>::create(&t_name, &topts).unwrap();
        ttx.send(&7).unwrap();
        ttx.send(&u64::MAX).unwrap();
        assert_eq!(
            peek_messages(&t_name, 10).unwrap(),
            Some(vec![
                7u64.to_ne_bytes().to_vec(),
                u64::MAX.to_ne_bytes().to_vec()
            ])
        );
        assert!(peek_messages("/t-inspect-peek-none-such", 1).is_err_and(|e| is_not_found(&e)));
        drop((tx, rx, mtx, mrx, pb, sub, ttx));
    }

    /// A stale channel with messages waiting is kept unless they are discarded.
    #[test]
    fn remove_stale_keeps_waiting_messages_unless_told() {
        let name = crate::unique_name("t-inspect-keep").unwrap();
        let mut tx = crate::spsc::Sender::create(&name, &crate::Options::new()).unwrap();
        tx.send(b"abc").unwrap();
        tx.send(b"defgh").unwrap();
        drop(tx); // closed, not drained: the name stays, stale
        assert_eq!(
            remove_stale(&name, false).unwrap(),
            Removal::KeptMessages {
                messages: 2,
                bytes: 8
            }
        );
        assert!(!remove_if_stale(&name).unwrap());
        assert!(inspect(&name).unwrap().is_some_and(|r| r.is_stale()));
        assert_eq!(remove_stale(&name, true).unwrap(), Removal::Removed);
        assert!(inspect(&name).is_err_and(|e| is_not_found(&e)));
    }

    #[test]
    fn every_kind_passes_the_channel_checks_with_a_right_header() {
        for kind in ChannelKind::ALL {
            assert_eq!(channel_findings(&header(kind, &[]), Some(kind)), []);
            assert_eq!(ChannelKind::from_code(kind.code()), Some(kind));
        }
    }

    #[test]
    fn channel_checks_name_each_field() {
        let h = header(
            ChannelKind::Spsc,
            &[
                (HeaderField::Capacity, 100),
                (HeaderField::Endpoints, 3),
                (HeaderField::SlotSize, 3),
            ],
        );
        let f = channel_findings(&h, Some(ChannelKind::Spsc));
        let got: Vec<(Field, Expected, u64)> =
            f.iter().map(|f| (f.field, f.expected, f.found)).collect();
        assert_eq!(
            got,
            [
                (
                    Field::Header(HeaderField::Capacity),
                    Expected::PowerOfTwo {
                        min: 64,
                        max: 1 << 32
                    },
                    100
                ),
                (Field::Header(HeaderField::Endpoints), Expected::Value(2), 3),
                (Field::Header(HeaderField::SlotSize), Expected::Value(0), 3),
            ]
        );
        let typed = header(ChannelKind::MpscTyped, &[(HeaderField::SlotAlign, 0)]);
        let f = channel_findings(&typed, Some(ChannelKind::MpscTyped));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].expected, Expected::NotZero);
        let f = channel_findings(&Header::default(), None);
        assert_eq!(f.last().map(|f| f.expected), Some(Expected::ChannelKind));
    }

    #[test]
    fn an_unpublished_header_is_damage_only_once_its_creator_is_gone() {
        let lower = segment::HeaderFinding {
            field: segment::HeaderField::State,
            expected: segment::Expected::Value(segment::STATE_READY.into()),
            found: segment::STATE_INIT.into(),
            severity: segment::Severity::Unpublished,
        };
        let at_work = Finding::of_header(&lower, true);
        assert_eq!(at_work.field, Field::Header(HeaderField::State));
        assert_eq!(at_work.severity, Severity::Warning);
        assert!(!at_work.is_problem());
        assert_eq!(Finding::of_header(&lower, false).severity, Severity::Damage);
        for (i, f) in HeaderField::ALL.into_iter().enumerate() {
            // `Header::get` indexes by discriminant: ALL must be in declaration order.
            assert_eq!(f as usize, i);
        }
    }
}
