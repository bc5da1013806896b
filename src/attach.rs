//! The attach path every channel shares: compute the layout, create or open the
//! segment, initialise or validate the ring, claim an endpoint, attach the ring
//! side; and the reverse on drop (close, maybe unlink, release).
//!
//! Endpoint `0` of a segment is the consumer; endpoint `1 + s` is producer slot
//! `s` (SPSC has one slot). Each endpoint claims its segment endpoint's liveness
//! marker (an OFD lock), so peers learn of its death from the kernel.
//!
//! # Fork
//! A handle belongs to the process that attached it. A copy inherited through
//! `fork` is inert in the child: using it is [`Error::Forked`], dropping it there
//! touches no shared state (the ring is detached, not closed), and the child does
//! not hold the endpoint's liveness marker (the segment layer points the child's
//! copy of the descriptor at `/dev/null`), so the parent's death is still seen by
//! its peer. Endpoints made by `anonymous()` attach lazily, on first use, through a
//! fresh open of the memfd in the process that uses them: create the pair, fork,
//! and use one end in each process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shmq_ring::watch::PeerWatch;
use shmq_ring::{
    Broadcast, Endpoint as RingEndpoint, Geometry, Interrupter, Liveness, Mpsc, Region, Spsc,
    WaitConfig, broadcast, failpoint, inspect, mpsc, spsc,
};
use shmq_segment::{Durability, Expect, Layout, Opened, Segment};

use crate::channel::PeerState;
use crate::durable::{Moved, Moves, Syncer};
use crate::error::{Error, Result};
use crate::identity::TypeInfo;
use crate::mem;
use crate::options::{
    DEFAULT_CAPACITY, DEFAULT_PRODUCERS, DEFAULT_SUBSCRIBERS, DEFAULT_TYPED_CAPACITY, Options,
};

/// Segment kind of an SPSC byte channel.
pub const KIND_SPSC: u16 = 1;
/// Segment kind of an SPSC typed channel.
pub const KIND_SPSC_TYPED: u16 = 2;
/// Segment kind of an MPSC byte channel.
pub const KIND_MPSC: u16 = 3;
/// Segment kind of an MPSC typed channel.
pub const KIND_MPSC_TYPED: u16 = 4;
/// Segment kind of a broadcast byte channel.
pub const KIND_BROADCAST: u16 = 5;
/// Segment kind of a broadcast typed channel.
pub const KIND_BROADCAST_TYPED: u16 = 6;

/// What a channel looks like: kind, sizes, element type.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub(crate) kind: u16,
    /// Byte capacity to create with.
    capacity: u64,
    /// Whether an opener requires exactly that capacity (the caller set one).
    require_capacity: bool,
    /// Producer slots to create with (MPSC).
    producers: u16,
    /// Whether an opener requires exactly that many.
    require_producers: bool,
    ty: Option<TypeInfo>,
}

impl Shape {
    /// A byte channel's shape.
    pub(crate) fn bytes<K: RingKind>(opts: &Options) -> Shape {
        Shape::of::<K>(opts, opts.capacity.unwrap_or(DEFAULT_CAPACITY), None)
    }

    /// A typed channel's shape: the capacity in messages becomes a byte capacity
    /// that holds that many fixed-size frames (plus the wrap's padding and the end
    /// marker), and whose largest message is at least one element.
    pub(crate) fn typed<K: RingKind>(opts: &Options, ty: TypeInfo) -> Shape {
        let frame = shmq_ring::frame::frame_len(ty.size as usize) as u64;
        let header = shmq_ring::frame::HEADER_LEN as u64;
        let messages = opts.capacity.unwrap_or(DEFAULT_TYPED_CAPACITY);
        // The frames, one more for the wrap's padding, the end marker; and room
        // enough that one element is at most `frame::max_payload` (half the ring
        // less two headers).
        let need = messages
            .saturating_mul(frame)
            .saturating_add(frame + header)
            .max(2 * (u64::from(ty.size) + 2 * header))
            .max(spsc::MIN_CAPACITY);
        // No room for a single message is refused (capacity 0 fails the geometry
        // check with `InvalidCapacity(0)`), not rounded up to a working ring.
        let capacity = if messages == 0 {
            0
        } else {
            need.checked_next_power_of_two().unwrap_or(u64::MAX)
        };
        Shape::of::<K>(opts, capacity, Some(ty))
    }

    fn of<K: RingKind>(opts: &Options, capacity: u64, ty: Option<TypeInfo>) -> Shape {
        let (slots, required) = match K::SLOTS {
            Slots::One => (1, false),
            Slots::Producers => (
                opts.producers.unwrap_or(DEFAULT_PRODUCERS),
                opts.producers.is_some(),
            ),
            Slots::Subscribers => (
                opts.subscribers.unwrap_or(DEFAULT_SUBSCRIBERS),
                opts.subscribers.is_some(),
            ),
        };
        Shape {
            kind: if ty.is_some() { K::KIND_TYPED } else { K::KIND },
            capacity,
            require_capacity: opts.capacity.is_some(),
            producers: slots,
            require_producers: required,
            ty,
        }
    }

    fn is_mpsc(&self) -> bool {
        is_mpsc_kind(self.kind)
    }

    /// Segment endpoints of a channel of this shape: the consumer (unused in
    /// a broadcast channel), then the producer slots, or the publisher and
    /// the subscriber slots.
    fn endpoints(&self) -> u16 {
        if is_broadcast_kind(self.kind) {
            2 + self.producers
        } else {
            1 + self.producers
        }
    }

    /// The ring's geometry, checked: the one check of capacity and slots a
    /// channel being created gets.
    fn geometry(&self) -> Result<RingGeometry> {
        RingGeometry::new(self.kind, self.capacity, self.producers)
    }

    /// The header a creator writes.
    ///
    /// # Errors
    /// [`Error::InvalidMessageName`] if the element type's name does not fit.
    fn layout(&self, geometry: &RingGeometry) -> Result<Layout> {
        Ok(Layout {
            kind: self.kind,
            endpoints: self.endpoints(),
            data_len: geometry.region_len() as u64,
            capacity: self.capacity,
            slot_size: self.ty.map_or(0, |t| t.size),
            slot_align: self.ty.map_or(0, |t| t.align),
            type_version: self.ty.map_or(0, |t| t.version_field()),
            type_flags: self.ty.map_or(0, |t| t.flags()),
            type_name: match &self.ty {
                Some(t) => t.type_name()?,
                None => shmq_segment::TypeName::EMPTY,
            },
        })
    }

    /// What the segment layer checks; a typed channel's element fields are
    /// left to [`crate::identity::check`], which names both types, and its
    /// capacity (derived from the element's size) to [`Shape::check_typed`],
    /// after it.
    fn expect(&self) -> Expect {
        let untyped = self.ty.is_none().then_some(0);
        let capacity = self.require_capacity && self.ty.is_none();
        Expect {
            kind: Some(self.kind),
            endpoints: if self.is_mpsc() || is_broadcast_kind(self.kind) {
                self.require_producers.then_some(self.endpoints())
            } else {
                Some(2)
            },
            capacity: capacity.then_some(self.capacity),
            slot_size: untyped,
            slot_align: untyped,
            type_version: untyped,
            type_flags: untyped,
        }
    }
}

impl Shape {
    /// A typed channel's checks beyond the segment layer's: the message type
    /// first (so that another type is named as such, not as the capacity its
    /// size gives), then the capacity the caller asked for.
    fn check_typed(&self, seg: &Segment) -> Result<()> {
        crate::identity::check(seg, self.ty.as_ref())?;
        let found = seg.info().capacity;
        if self.ty.is_some() && self.require_capacity && found != self.capacity {
            return Err(shmq_segment::Error::LayoutMismatch {
                field: "capacity",
                expected: self.capacity,
                found,
            }
            .into());
        }
        Ok(())
    }
}

/// Whether a header's ring kind is one of the MPSC kinds.
fn is_mpsc_kind(kind: u16) -> bool {
    matches!(kind, KIND_MPSC | KIND_MPSC_TYPED)
}

/// Whether a header's ring kind is one of the broadcast kinds.
fn is_broadcast_kind(kind: u16) -> bool {
    matches!(kind, KIND_BROADCAST | KIND_BROADCAST_TYPED)
}

/// Which endpoints of a ring kind come in slots.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slots {
    /// One producer, one consumer (SPSC).
    One,
    /// Producer slots (MPSC).
    Producers,
    /// One publisher, subscriber slots (broadcast).
    Subscribers,
}

/// A mapped, validated channel segment and the ring region in it. Clones share
/// the segment (and its open file description): an endpoint attaches through its
/// own [`Mapped::reopen`].
#[derive(Clone)]
pub struct Mapped {
    pub(crate) seg: Arc<Segment>,
    pub(crate) region: Region,
    pub(crate) geometry: RingGeometry,
    /// How a broadcast subscriber attaching through this mapping receives
    /// and where it starts ([`Options::subscribe`], [`Options::join`]).
    pub(crate) subscribe: crate::options::Subscribe,
}

impl Mapped {
    /// A validated segment, its ring geometry checked from the header.
    fn new(seg: Segment) -> Result<Mapped> {
        let info = *seg.info();
        let fixed = if is_broadcast_kind(info.kind) { 2 } else { 1 };
        let geometry = RingGeometry::new(
            info.kind,
            info.capacity,
            info.endpoints.saturating_sub(fixed).max(1),
        )?;
        let seg = Arc::new(seg);
        Ok(Mapped {
            region: mem::region(&seg),
            seg,
            geometry,
            subscribe: Default::default(),
        })
    }

    /// This mapping, for subscribers that receive as `opts` says.
    fn subscribing(mut self, opts: &Options) -> Mapped {
        self.subscribe = opts.subscribe;
        self
    }

    /// Capacity of the ring in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.geometry.capacity() as u64
    }

    /// Producer slots (1 for SPSC).
    pub(crate) fn slots(&self) -> u16 {
        self.geometry.producers()
    }

    /// The same segment through a new open file description, so that this
    /// process's liveness markers are its own.
    fn reopen(&self) -> Result<Mapped> {
        let mut m = Mapped::new(self.seg.reopen()?)?;
        m.subscribe = self.subscribe;
        Ok(m)
    }

    /// The ring as it is now (the inspection walk, over the live mapping).
    fn view(&self) -> shmq_ring::Result<inspect::RingView> {
        match self.geometry {
            RingGeometry::Mpsc(_) => inspect::mpsc(&self.region, self.capacity(), self.slots()),
            RingGeometry::Spsc(_) => inspect::spsc(&self.region, self.capacity()),
            RingGeometry::Broadcast(_) => {
                inspect::broadcast(&self.region, self.capacity(), self.slots())
            }
        }
    }

    /// Nothing committed is waiting (for unlink-on-close). A broadcast file
    /// channel waits for subscribers nobody knows of yet: it counts as
    /// drained only while its ring retains no message at all (a log to replay
    /// with `Join::Oldest` is data; `rm` the file to discard it).
    fn drained(&self) -> bool {
        if let (RingGeometry::Broadcast(_), shmq_segment::Backing::File(_)) =
            (self.geometry, self.seg.backing())
        {
            let retained =
                inspect::broadcast_publisher(&self.region, self.capacity(), self.slots());
            if !retained.is_ok_and(|p| p.oldest == p.tail) {
                return false;
            }
        }
        self.view().is_ok_and(|v| {
            v.state.messages == 0 && v.state.uncommitted == 0 && v.problems.is_empty()
        })
    }

    /// Committed messages waiting for the consumer, as the inspection walk
    /// counts them.
    pub(crate) fn waiting(&self) -> Result<u64> {
        Ok(self.view()?.state.messages)
    }

    /// The state of the consumer (`consumer`) or of each producer endpoint:
    /// the words, the markers, the words again ([`PeerState::judge`]); an
    /// endpoint that changed during the look is looked at again (a few times:
    /// after that, a peer that attaches and closes faster than we look is
    /// `Alive` if its marker is held and `Closed` if not: it did not die under
    /// the word we read, which changed).
    pub(crate) fn peers(&self, consumer: bool) -> Result<Vec<PeerState>> {
        let words = |ends: inspect::Endpoints| {
            if consumer {
                vec![ends.consumer]
            } else {
                ends.producers
            }
        };
        let first_index = if consumer { 0 } else { 1 };
        let mut first = words(self.ends()?);
        let mut out: Vec<Option<PeerState>> = vec![None; first.len()];
        for _ in 0..8 {
            let markers = (first_index..)
                .zip(&out)
                .map(|(index, done)| match done {
                    Some(_) => Ok(None),
                    None => self.seg.endpoint_info(index).map(Some),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let second = words(self.ends()?);
            for ((slot, marker), (a, b)) in
                out.iter_mut().zip(markers).zip(first.iter().zip(&second))
            {
                if let (None, Some(m)) = (&slot, marker) {
                    *slot = PeerState::judge(*a, m, *b);
                }
            }
            if out.iter().all(Option::is_some) {
                break;
            }
            first = second;
        }
        (first_index..)
            .zip(out)
            .map(|(index, judged)| match judged {
                Some(state) => Ok(state),
                None => {
                    let m = self.seg.endpoint_info(index)?;
                    Ok(if m.alive {
                        PeerState::Alive { pid: m.pid }
                    } else {
                        PeerState::Closed
                    })
                }
            })
            .collect()
    }

    /// A watch on the ring's wake line, for waiting on peer changes.
    fn watch(&self) -> shmq_ring::Result<PeerWatch> {
        match self.geometry {
            RingGeometry::Mpsc(_) => PeerWatch::mpsc(&self.region, self.capacity(), self.slots()),
            RingGeometry::Spsc(_) => PeerWatch::spsc(&self.region, self.capacity()),
            RingGeometry::Broadcast(_) => {
                PeerWatch::broadcast(&self.region, self.capacity(), self.slots())
            }
        }
    }

    /// The endpoints' state words (a few loads, no walk).
    fn ends(&self) -> shmq_ring::Result<inspect::Endpoints> {
        match self.geometry {
            RingGeometry::Mpsc(_) => {
                inspect::mpsc_ends(&self.region, self.capacity(), self.slots())
            }
            RingGeometry::Spsc(_) => inspect::spsc_ends(&self.region, self.capacity()),
            RingGeometry::Broadcast(_) => {
                inspect::broadcast_ends(&self.region, self.capacity(), self.slots())
            }
        }
    }
}

/// Watches a channel's peers (the consumer, seen from a sender; the producers,
/// seen from a receiver) from any thread, also while the handle it came from is
/// blocked in a send or a receive: [`Sender::peer_watcher`],
/// [`Receiver::peer_watcher`]. It shares that handle's mapping and its
/// [`Interrupter`], and does not keep the channel's name alive.
///
/// [`Sender::peer_watcher`]: crate::Sender::peer_watcher
/// [`Receiver::peer_watcher`]: crate::Receiver::peer_watcher
#[derive(Clone)]
pub struct PeerWatcher {
    mapped: Mapped,
    /// Watching the consumer (else the producers).
    consumer: bool,
    /// The longest sleep: a death is seen within it.
    slice: Duration,
    interrupt: Interrupter,
}

impl core::fmt::Debug for PeerWatcher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerWatcher")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl PeerWatcher {
    /// The watched endpoints' states now (one for the consumer or an SPSC
    /// producer, one per slot for MPSC producers).
    ///
    /// # Errors
    /// The segment's error reading a liveness marker, or a ring that no longer
    /// reads as one (`Corrupted`).
    pub fn states(&self) -> Result<Vec<PeerState>> {
        self.mapped.peers(self.consumer)
    }

    /// Waits until the states differ from `known` (an earlier answer), and
    /// returns them. Asleep meanwhile, on the ring's wake line, which every
    /// attach and close bumps; the sequence is read before each look, so a
    /// change after the look ends the sleep at once. A death wakes nobody: each
    /// sleep lasts at most one wait slice, so a death is seen within one.
    ///
    /// # Errors
    /// [`Error::Timeout`] once `timeout` passes, [`Error::Interrupted`] if the
    /// handle's interrupter is set, or as [`PeerWatcher::states`].
    pub fn changed(&self, known: &[PeerState], timeout: Duration) -> Result<Vec<PeerState>> {
        let watch = self.mapped.watch()?;
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let seq = watch.seq();
            let now = self.states()?;
            if now != known {
                return Ok(now);
            }
            if self.interrupt.is_interrupted() {
                return Err(Error::Interrupted);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => self.slice,
            };
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            watch.park(seq, left.min(self.slice));
        }
    }
}

/// A channel's ring geometry, checked once: from the shape when the channel is
/// created, from the validated header when it is opened.
#[derive(Clone, Copy, Debug)]
pub enum RingGeometry {
    /// An SPSC ring.
    Spsc(Geometry<Spsc>),
    /// An MPSC ring.
    Mpsc(Geometry<Mpsc>),
    /// A broadcast ring (its `producers` are the subscriber slots).
    Broadcast(Geometry<Broadcast>),
}

impl RingGeometry {
    fn new(kind: u16, capacity: u64, producers: u16) -> Result<RingGeometry> {
        Ok(if is_mpsc_kind(kind) {
            RingGeometry::Mpsc(Geometry::mpsc(capacity, producers)?)
        } else if is_broadcast_kind(kind) {
            RingGeometry::Broadcast(Geometry::broadcast(capacity, producers)?)
        } else {
            RingGeometry::Spsc(Geometry::spsc(capacity)?)
        })
    }

    fn capacity(&self) -> usize {
        match self {
            RingGeometry::Spsc(g) => g.capacity(),
            RingGeometry::Mpsc(g) => g.capacity(),
            RingGeometry::Broadcast(g) => g.capacity(),
        }
    }

    fn producers(&self) -> u16 {
        match self {
            RingGeometry::Spsc(g) => g.producers(),
            RingGeometry::Mpsc(g) => g.producers(),
            RingGeometry::Broadcast(g) => g.producers(),
        }
    }

    fn region_len(&self) -> usize {
        match self {
            RingGeometry::Spsc(g) => g.region_len(),
            RingGeometry::Mpsc(g) => g.region_len(),
            RingGeometry::Broadcast(g) => g.region_len(),
        }
    }

    /// Prepares a fresh region as an empty ring.
    fn init(&self, region: &Region) -> Result<()> {
        match *self {
            RingGeometry::Spsc(g) => spsc::init(region, g, 0)?,
            RingGeometry::Mpsc(g) => mpsc::init(region, g, 0)?,
            RingGeometry::Broadcast(g) => broadcast::init(region, g, 0)?,
        }
        Ok(())
    }
}

/// Creates, initialises and publishes a channel's segment.
fn create(
    shape: &Shape,
    make: impl FnOnce(&Layout) -> Result<shmq_segment::Creating>,
) -> Result<Segment> {
    let geometry = shape.geometry()?;
    let c = make(&shape.layout(&geometry)?)?;
    finish_creating(&geometry, c)
}

/// Creates a named channel. With `reclaim_stale`, a stale channel under the name
/// is replaced only if no messages wait in it: the segment layer would replace it
/// whatever it holds, so the channel removes it itself (deciding under the
/// segment's lock, see [`crate::inspect::remove_stale`]) and then creates.
fn create_named(name: &str, shape: &Shape, opts: &Options) -> Result<Segment> {
    let plain = opts.segment().reclaim_stale(false);
    let attempt = || create(shape, |l| Ok(Segment::create(name, l, &plain)?));
    match attempt() {
        Err(Error::Segment(shmq_segment::Error::AlreadyExists { stale: true, .. }))
            if opts.segment().reclaims_stale() =>
        {
            match crate::inspect::remove_stale(name, false)? {
                crate::inspect::Removal::KeptMessages { messages, bytes } => {
                    Err(Error::StaleWithMessages {
                        name: name.to_owned(),
                        messages,
                        bytes,
                    })
                }
                // Removed, or opened or removed by someone else meanwhile: one more
                // try, as the segment layer's own reclaim makes.
                crate::inspect::Removal::Removed | crate::inspect::Removal::Declined => attempt(),
            }
        }
        other => other,
    }
}

fn finish_creating(geometry: &RingGeometry, c: shmq_segment::Creating) -> Result<Segment> {
    mem::with_creating(&c, |r| geometry.init(r))?;
    failpoint::hit("mid_init");
    Ok(c.publish()?)
}

/// Where a channel comes from.
pub(crate) enum Source<'a> {
    /// Create it under this name; fail if it exists.
    Create(&'a str),
    /// Open it under this name.
    Open(&'a str),
    /// Create it, or open it if it exists.
    CreateOrOpen(&'a str),
    /// An anonymous channel's descriptor from another process.
    Fd(std::os::fd::OwnedFd),
    /// Create a file channel at this path; fail if something is there.
    CreateFile(&'a std::path::Path),
    /// Open the file channel at this path.
    OpenFile(&'a std::path::Path),
    /// Create the file channel, or open it if it exists.
    CreateOrOpenFile(&'a std::path::Path),
}

/// Maps and validates (or creates and initialises) a channel's segment.
pub(crate) fn map(source: Source<'_>, shape: &Shape, opts: &Options) -> Result<Mapped> {
    map_segment(source, shape, opts)
        .map(|m| m.subscribing(opts))
        .map_err(in_words)
}

/// A segment layer's mismatch, said in the channel's words: kinds by name and
/// the options that allow sharing (element types are compared, and named, by
/// [`crate::identity::check`]).
fn in_words(e: Error) -> Error {
    use shmq_segment::Error as S;
    let kind = |code: u64| {
        u16::try_from(code)
            .ok()
            .and_then(crate::inspect::ChannelKind::from_code)
            .map_or_else(
                || format!("kind code {code} (not a shmq channel)"),
                |k| k.long_name().to_owned(),
            )
    };
    match e {
        Error::Segment(S::LayoutMismatch {
            field: "kind",
            expected,
            found,
        }) => Error::WrongKind {
            expected: kind(expected),
            found: kind(found),
        },
        Error::Segment(S::Untrusted { reason }) => Error::Untrusted { reason },
        other => other,
    }
}

fn map_segment(source: Source<'_>, shape: &Shape, opts: &Options) -> Result<Mapped> {
    if let Some(ty) = &shape.ty {
        // A name that cannot be recorded is refused before anything is made or opened.
        ty.type_name()?;
    }
    let file = matches!(
        source,
        Source::CreateFile(_) | Source::OpenFile(_) | Source::CreateOrOpenFile(_)
    );
    if !file && opts.durability.is_some_and(|d| d != Durability::None) {
        return Err(shmq_segment::Error::InvalidArgument {
            what: "a durability policy applies to file channels only (create_file, open_file, create_or_open_file)",
        }
        .into());
    }
    // A stale file's messages are data: the segment layer would replace the
    // file whatever it holds, so file channels never reclaim.
    let file_opts = || opts.segment().reclaim_stale(false);
    let durability = opts.durability.unwrap_or_default();
    let seg = match source {
        Source::Create(name) => create_named(name, shape, opts)?,
        Source::CreateFile(path) => {
            let geometry = shape.geometry()?;
            let mut c = Segment::create_file(path, &shape.layout(&geometry)?, &file_opts())?;
            c.set_durability(durability)?;
            finish_creating(&geometry, c)?
        }
        Source::OpenFile(path) => {
            let seg = Segment::open_file(path, &shape.expect(), &file_opts())?;
            check_durability(&seg, opts)?;
            seg
        }
        Source::CreateOrOpenFile(path) => {
            let geometry = shape.geometry()?;
            let layout = shape.layout(&geometry)?;
            match Segment::create_or_open_file(path, &layout, &shape.expect(), &file_opts())? {
                Opened::Created(mut c) => {
                    c.set_durability(durability)?;
                    finish_creating(&geometry, c)?
                }
                Opened::Existing(s) => {
                    check_durability(&s, opts)?;
                    s
                }
            }
        }
        Source::Open(name) => Segment::open(name, &shape.expect(), &opts.segment())?,
        Source::CreateOrOpen(name) => {
            let geometry = shape.geometry()?;
            let layout = shape.layout(&geometry)?;
            match Segment::create_or_open(name, &layout, &shape.expect(), &opts.segment())? {
                Opened::Created(c) => finish_creating(&geometry, c)?,
                Opened::Existing(s) => s,
            }
        }
        Source::Fd(fd) => Segment::from_fd(fd, &shape.expect(), &opts.segment())?,
    };
    shape.check_typed(&seg)?;
    Mapped::new(seg)
}

/// An opened file's recorded policy against the one the opener set, if any.
fn check_durability(seg: &Segment, opts: &Options) -> Result<()> {
    let found = seg.durability()?;
    match opts.durability {
        Some(expected) if expected != found => Err(Error::WrongDurability {
            expected: expected.to_string(),
            found: found.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A new anonymous channel's segment, mapped once for both (pending) ends.
pub(crate) fn anonymous(shape: &Shape, opts: &Options) -> Result<(Mapped, Mapped)> {
    let seg = create(shape, |l| Ok(Segment::anonymous(l, &opts.segment())?))?;
    let a = Mapped::new(seg)?.subscribing(opts);
    // Both ends are pending: each reopens the segment when it attaches.
    let b = a.clone();
    Ok((a, b))
}

/// Liveness of a channel's endpoints, from the segment's markers.
struct SegmentLiveness(Arc<Segment>);

impl Liveness for SegmentLiveness {
    fn is_alive(&self, e: RingEndpoint) -> bool {
        let index = match e {
            RingEndpoint::Consumer => 0,
            RingEndpoint::Producer(s) => 1 + s,
            // A broadcast channel's endpoint 0 is unused: its publisher is
            // `Producer(0)`, endpoint 1.
            RingEndpoint::Subscriber(s) => 2 + s,
        };
        // A segment that shrank under us (a peer truncated it), or whose header no
        // longer reads as published (a hole punched over its first page reads as
        // zeros), is destroyed, and with it the channel: every peer counts as
        // gone, so that a blocked side returns within a wait slice (`Handle::run`
        // reports it as `Corrupted`). The pages past a truncated end are the
        // SIGBUS guard's business.
        if self.0.is_damaged() || !self.0.header_intact() || self.0.is_shrunk().unwrap_or(false) {
            return false;
        }
        // If the kernel cannot tell us, assume alive: we never declare a peer dead
        // (and never reclaim its claims) without positive evidence.
        self.0.endpoint_alive(index).unwrap_or(true)
    }
}

/// A ring kind a channel can be made of ([`Spsc`], [`Mpsc`]): how its sides
/// attach, and whether its producers have slots. Sealed.
pub trait RingKind: shmq_ring::Kind + sealed::Sealed {
    /// Which endpoints come in slots.
    #[doc(hidden)]
    const SLOTS: Slots;
    /// The segment kind of a byte channel of this ring kind.
    #[doc(hidden)]
    const KIND: u16;
    /// The segment kind of a typed channel of this ring kind.
    #[doc(hidden)]
    const KIND_TYPED: u16;
    /// The geometry, if the channel is of this kind.
    #[doc(hidden)]
    fn geometry(g: &RingGeometry) -> Option<shmq_ring::Geometry<Self>>;
    /// Attaches a producer (an MPSC one: in `a.slot`).
    #[doc(hidden)]
    fn attach_producer(a: Attach<'_>) -> shmq_ring::Result<shmq_ring::Producer<Self>>;
    /// Attaches a consumer (a broadcast subscriber: in `a.slot`).
    #[doc(hidden)]
    fn attach_consumer(a: Attach<'_>) -> shmq_ring::Result<shmq_ring::Consumer<Self>>;
}

/// What attaching one side of a mapped channel takes, whatever the ring kind
/// and side.
#[doc(hidden)]
pub struct Attach<'a> {
    /// The channel.
    m: &'a Mapped,
    /// Which of the side's endpoints it takes, counted from the side's first
    /// (0 for a side that has one).
    slot: u16,
    /// How the side waits.
    wait: WaitConfig,
    /// How the side tells whether its peers are alive.
    live: Arc<dyn Liveness>,
}

impl<'a> Attach<'a> {
    /// The ring region in the channel's segment.
    fn region(&self) -> &'a Region {
        &self.m.region
    }

    /// The channel's geometry as kind `K`. The segment's kind was checked
    /// against the shape's when it was opened, so a mismatch here is a bug in
    /// this crate; it is reported as a region too small for the ring, never a
    /// panic.
    fn geometry<K: RingKind>(&self) -> shmq_ring::Result<Geometry<K>> {
        K::geometry(&self.m.geometry).ok_or(shmq_ring::Error::RegionTooSmall {
            needed: self.m.region.len() as u64 + 1,
            len: self.m.region.len() as u64,
        })
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for shmq_ring::Spsc {}
    impl Sealed for shmq_ring::Mpsc {}
    impl Sealed for shmq_ring::Broadcast {}
}

impl RingKind for Spsc {
    const SLOTS: Slots = Slots::One;
    const KIND: u16 = KIND_SPSC;
    const KIND_TYPED: u16 = KIND_SPSC_TYPED;
    fn geometry(g: &RingGeometry) -> Option<Geometry<Spsc>> {
        match *g {
            RingGeometry::Spsc(g) => Some(g),
            _ => None,
        }
    }
    fn attach_producer(a: Attach<'_>) -> shmq_ring::Result<spsc::Producer> {
        spsc::Producer::attach(a.region(), a.geometry()?, a.wait, a.live)
    }
    fn attach_consumer(a: Attach<'_>) -> shmq_ring::Result<spsc::Consumer> {
        spsc::Consumer::attach(a.region(), a.geometry()?, a.wait, a.live)
    }
}

impl RingKind for Mpsc {
    const SLOTS: Slots = Slots::Producers;
    const KIND: u16 = KIND_MPSC;
    const KIND_TYPED: u16 = KIND_MPSC_TYPED;
    fn geometry(g: &RingGeometry) -> Option<Geometry<Mpsc>> {
        match *g {
            RingGeometry::Mpsc(g) => Some(g),
            _ => None,
        }
    }
    fn attach_producer(a: Attach<'_>) -> shmq_ring::Result<mpsc::Producer> {
        mpsc::Producer::attach(a.region(), a.geometry()?, a.slot, a.wait, a.live)
    }
    fn attach_consumer(a: Attach<'_>) -> shmq_ring::Result<mpsc::Consumer> {
        mpsc::Consumer::attach(a.region(), a.geometry()?, a.wait, a.live)
    }
}

impl RingKind for Broadcast {
    const SLOTS: Slots = Slots::Subscribers;
    const KIND: u16 = KIND_BROADCAST;
    const KIND_TYPED: u16 = KIND_BROADCAST_TYPED;
    fn geometry(g: &RingGeometry) -> Option<Geometry<Broadcast>> {
        match *g {
            RingGeometry::Broadcast(g) => Some(g),
            _ => None,
        }
    }
    fn attach_producer(a: Attach<'_>) -> shmq_ring::Result<broadcast::Publisher> {
        broadcast::Publisher::attach(a.region(), a.geometry()?, a.wait, a.live)
    }
    fn attach_consumer(a: Attach<'_>) -> shmq_ring::Result<broadcast::Subscriber> {
        let s = a.m.subscribe;
        broadcast::Subscriber::attach(
            a.region(),
            a.geometry()?,
            a.slot,
            s.mode,
            s.join,
            a.wait,
            a.live,
        )
    }
}

/// One side of a ring, as the facade drives it: a producer or the consumer of
/// some kind.
pub(crate) trait Attachable: Sized {
    /// Whether this is the consumer side.
    const CONSUMER: bool;
    /// Which of the channel's endpoints this side may take, and how a channel
    /// whose every one is busy is reported.
    const SLOTS: Slots;
    /// `"consumer"` or `"producer"`.
    const ROLE: &'static str = if Self::CONSUMER {
        "consumer"
    } else {
        "producer"
    };
    fn attach(a: Attach<'_>) -> shmq_ring::Result<Self>;
    fn detach(self);
    fn set_interrupter(&mut self, i: Interrupter);
    /// Right after attaching: what the side needs from the channel beyond
    /// the ring (a producer's way to ring its consumer's doorbell).
    fn prepare(&mut self, _m: &Mapped) {}
    /// Right after attaching to a file channel that syncs (it has a
    /// `Syncer`): what the side does differently there.
    fn synced(&mut self) {}
}

impl<K: RingKind> Attachable for shmq_ring::Producer<K> {
    const CONSUMER: bool = false;
    const SLOTS: Slots = match K::SLOTS {
        Slots::Producers => Slots::Producers,
        Slots::One | Slots::Subscribers => Slots::One,
    };
    fn attach(a: Attach<'_>) -> shmq_ring::Result<Self> {
        K::attach_producer(a)
    }
    fn set_interrupter(&mut self, i: Interrupter) {
        shmq_ring::Producer::set_interrupter(self, i);
    }

    fn prepare(&mut self, m: &Mapped) {
        self.set_ringer(Arc::new(crate::doorbell::Ringer::for_channel(&m.seg)));
    }

    fn detach(self) {
        shmq_ring::Producer::detach(self);
    }
}

impl<K: RingKind> Attachable for shmq_ring::Consumer<K> {
    const CONSUMER: bool = true;
    const SLOTS: Slots = match K::SLOTS {
        Slots::Subscribers => Slots::Subscribers,
        Slots::One | Slots::Producers => Slots::One,
    };
    fn attach(a: Attach<'_>) -> shmq_ring::Result<Self> {
        K::attach_consumer(a)
    }
    fn set_interrupter(&mut self, i: Interrupter) {
        shmq_ring::Consumer::set_interrupter(self, i);
    }

    fn synced(&mut self) {
        // Handing lines back would dirty each message's pages again after the
        // producer's sync, and the next sync would write them a second time
        // (40% more bytes written with `EveryCommit` and 4 KiB messages).
        self.set_hand_back(false);
    }

    fn detach(self) {
        shmq_ring::Consumer::detach(self);
    }
}

/// An attached ring side and the endpoint marker it holds.
struct Ready<R: Attachable> {
    /// Always `Some` until dropped.
    ring: Option<R>,
    mapped: Mapped,
    index: u16,
    pid: u32,
    /// `fork_generation()` when attached: a handle inherited through `fork` sees a
    /// different value and refuses to be used.
    generation: u64,
    /// The segment was found destroyed under the mapping (`Handle::run`): every
    /// call reports this.
    destroyed: Option<crate::error::Corruption>,
    /// A file channel's durability policy at work (`None` for every other
    /// channel, and for files whose policy is `None`).
    sync: Option<Box<Syncer>>,
}

enum State<R: Attachable> {
    /// Made by `anonymous()`: attaches in the process that first uses it.
    Pending(Mapped),
    Ready(Ready<R>),
    /// Attaching failed; the handle is unusable.
    Gone,
}

/// A channel handle: the facade's hold on one ring side (a producer or the consumer).
pub(crate) struct Handle<R: Attachable> {
    state: State<R>,
    wait: WaitConfig,
    /// Handed to the ring side when it attaches (so that a pending handle's
    /// interrupter works too).
    interrupt: Interrupter,
}

impl<R: Attachable> Handle<R> {
    /// Maps the channel and attaches now.
    pub(crate) fn open(source: Source<'_>, shape: &Shape, opts: &Options) -> Result<Self> {
        let wait = opts.wait_for(!matches!(source, Source::Fd(_)));
        Handle::attached(map(source, shape, opts)?, wait)
    }

    /// Attaches now.
    pub(crate) fn attached(mapped: Mapped, wait: WaitConfig) -> Result<Self> {
        let interrupt = Interrupter::new();
        Ok(Handle {
            state: State::Ready(attach(mapped, wait, &interrupt)?),
            wait,
            interrupt,
        })
    }

    /// Attaches on first use (for `anonymous()` pairs that cross `fork`).
    pub(crate) fn pending(mapped: Mapped, wait: WaitConfig) -> Self {
        Handle {
            state: State::Pending(mapped),
            wait,
            interrupt: Interrupter::new(),
        }
    }

    /// The ring side, attaching it first if needed.
    #[inline]
    pub(crate) fn ring(&mut self) -> Result<&mut R> {
        if !matches!(self.state, State::Ready(Ready { ring: Some(_), .. })) {
            self.attach_now()?;
        }
        match &mut self.state {
            State::Ready(Ready {
                ring: Some(r),
                generation,
                ..
            }) => {
                if *generation != shmq_segment::fork_generation() {
                    return Err(Error::Forked);
                }
                Ok(r)
            }
            _ => Err(not_attached()),
        }
    }

    #[cold]
    fn attach_now(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Pending(m) => {
                let fresh = m.reopen()?;
                drop(m);
                self.state = State::Ready(attach(fresh, self.wait, &self.interrupt)?);
                Ok(())
            }
            other => {
                self.state = other;
                Err(not_attached())
            }
        }
    }

    /// Runs one ring operation, then reports [`Error::Corrupted`] instead of its
    /// result if the segment was destroyed under this handle, now or earlier:
    /// - the SIGBUS guard replaced the mapping's pages (a peer truncated the
    ///   object and this process touched a page past the new end): the operation
    ///   ran on the guard's private poisoned pages, so whatever it returned
    ///   means nothing; or
    /// - the ring reported its peer gone, and the object is smaller than the
    ///   mapping (`SegmentLiveness` reports every peer of a shrunk segment dead,
    ///   so that a side blocked on pages still within the object returns); or
    /// - the ring found nothing to do (`Empty`, `Full`, `Timeout`, gone) and the
    ///   shared header no longer reads as published: a hole punched over the
    ///   first page reads as zeros, which the ring would take for a fresh ring.
    ///
    /// Either way the handle stays `Corrupted` from then on, without running the
    /// operation. One atomic load (of a process-local line) and one flag per
    /// call; two more loads when the ring finds nothing to do, and an `fstat`
    /// when it reports a disconnection.
    ///
    /// On a file channel that syncs, the result says what the call moved
    /// ([`Moves`]: sent or received messages, a lent guard), and the handle's
    /// `Syncer` counts it (an error moved nothing): see `durable.rs`.
    #[inline]
    pub(crate) fn run<'a, T: Moves>(
        &'a mut self,
        op: impl FnOnce(&'a mut R) -> shmq_ring::Result<T>,
    ) -> Result<T> {
        // A `Ready` handle's ring is `Some` until the handle drops.
        if !matches!(self.state, State::Ready(_)) {
            self.attach_now()?;
        }
        match &mut self.state {
            State::Ready(Ready {
                ring: Some(ring),
                mapped,
                destroyed,
                generation,
                sync,
                ..
            }) => {
                if *generation != shmq_segment::fork_generation() {
                    return Err(Error::Forked);
                }
                // Damage is looked for after the operation only (one load per
                // call): an operation on poisoned pages fails its checks or, if
                // blocked, returns once `SegmentLiveness` calls every peer dead,
                // and whatever it returned is replaced below.
                if let Some(c) = destroyed {
                    return Err(Error::Corrupted(*c));
                }
                if let Some(s) = sync {
                    s.check()?;
                }
                let result = op(ring);
                if mapped.seg.is_damaged() {
                    *destroyed = Some(SHRUNK);
                    return Err(Error::Corrupted(SHRUNK));
                }
                // A file channel's policy: one branch for every other channel
                // (see `durable.rs` for who syncs when). Only messages moved
                // count; a call that moved none syncs only what an earlier
                // call's guard moved since.
                match result {
                    Ok(v) => {
                        if let Some(s) = sync {
                            s.after_call(&mapped.seg, v.moved());
                        }
                        Ok(v)
                    }
                    Err(e) => {
                        let e = judge(e, mapped, destroyed);
                        if let Some(s) = sync
                            && !matches!(e, Error::Corrupted(_))
                        {
                            s.after_call(&mapped.seg, Moved::NOTHING);
                        }
                        Err(e)
                    }
                }
            }
            _ => Err(not_attached()),
        }
    }

    /// Writes a file channel back to its file now, whatever its policy (a
    /// no-op for other channels and for a handle not attached yet).
    pub(crate) fn sync(&mut self) -> Result<()> {
        match &mut self.state {
            State::Ready(r) => {
                if r.generation != shmq_segment::fork_generation() {
                    return Err(Error::Forked);
                }
                if !matches!(r.mapped.seg.backing(), shmq_segment::Backing::File(_)) {
                    return Ok(());
                }
                match &mut r.sync {
                    Some(s) => s.sync(&r.mapped.seg),
                    None => Ok(r.mapped.seg.sync()?),
                }
            }
            State::Pending(_) => Ok(()),
            State::Gone => Err(not_attached()),
        }
    }

    /// The flag that interrupts this handle's blocking calls.
    pub(crate) fn interrupter(&self) -> Interrupter {
        self.interrupt.clone()
    }

    pub(crate) fn mapped(&self) -> Option<&Mapped> {
        match &self.state {
            State::Pending(m) => Some(m),
            State::Ready(r) => Some(&r.mapped),
            State::Gone => None,
        }
    }

    /// A second handle on the same channel with its own endpoint (MPSC producers).
    /// A pending handle's clone is pending too, so that a parent can hand each
    /// child of a `fork` its own, attaching in that child.
    pub(crate) fn try_clone(&self) -> Result<Self> {
        match &self.state {
            State::Pending(m) => Ok(Handle::pending(m.clone(), self.wait)),
            State::Ready(r) => Handle::attached(r.mapped.reopen()?, self.wait),
            State::Gone => Err(not_attached()),
        }
    }

    /// A second handle on the same channel that attaches on first use (MPSC
    /// producers' `Clone`): infallible now, its errors come with its first call.
    pub(crate) fn clone_pending(&self) -> Self {
        match self.mapped() {
            Some(m) => Handle::pending(m.clone(), self.wait),
            None => Handle {
                state: State::Gone,
                wait: self.wait,
                interrupt: Interrupter::new(),
            },
        }
    }

    /// Capacity of the ring in bytes (0 for a handle that failed to attach).
    pub(crate) fn capacity(&self) -> u64 {
        self.mapped().map_or(0, Mapped::capacity)
    }

    /// The largest message the ring takes.
    pub(crate) fn max_message_len(&self) -> usize {
        self.mapped()
            .map_or(0, |m| shmq_ring::frame::max_payload(m.geometry.capacity()))
    }

    /// The mapping, or `NotAttached` for a handle that failed to attach.
    fn mapped_or_err(&self) -> Result<&Mapped> {
        self.mapped().ok_or_else(not_attached)
    }

    /// A duplicate of the segment's descriptor.
    pub(crate) fn export_fd(&self) -> Result<std::os::fd::OwnedFd> {
        Ok(self.mapped_or_err()?.seg.export_fd()?)
    }

    /// Committed messages waiting for the consumer.
    pub(crate) fn waiting(&self) -> Result<u64> {
        self.mapped_or_err()?.waiting()
    }

    /// The consumer's state (`consumer`) or each producer endpoint's.
    pub(crate) fn peers(&self, consumer: bool) -> Result<Vec<PeerState>> {
        self.mapped_or_err()?.peers(consumer)
    }

    /// A watcher of the consumer (`consumer`) or of the producers, usable from
    /// any thread while this handle is busy.
    pub(crate) fn watcher(&self, consumer: bool) -> Result<PeerWatcher> {
        Ok(PeerWatcher {
            mapped: self.mapped_or_err()?.clone(),
            consumer,
            slice: self.wait.slice,
            interrupt: self.interrupt.clone(),
        })
    }
}

pub(crate) fn not_attached() -> Error {
    Error::NotAttached
}

/// What a handle reports once its segment shrank under its mapping.
const SHRUNK: crate::error::Corruption = crate::error::Corruption {
    what: "segment shrunk under the mapping (a peer truncated it)",
    position: 0,
    value: 0,
};

/// What a handle reports once its segment's header stopped reading as published.
const HEADER_GONE: crate::error::Corruption = crate::error::Corruption {
    what: "segment header overwritten or punched out (magic or state)",
    position: 0,
    value: 0,
};

fn attach<R: Attachable>(
    mapped: Mapped,
    wait: WaitConfig,
    interrupt: &Interrupter,
) -> Result<Ready<R>> {
    let live: Arc<dyn Liveness> = Arc::new(SegmentLiveness(mapped.seg.clone()));
    let sync = Syncer::for_segment(&mapped.seg)?.map(Box::new);
    // Segment endpoints: 0 the consumer, 1 + s producer slot s; in a
    // broadcast channel 1 the publisher and 2 + s subscriber slot s.
    let broadcast = matches!(mapped.geometry, RingGeometry::Broadcast(_));
    let (first, count) = match (R::CONSUMER, broadcast) {
        (true, false) => (0, 1),
        (true, true) => (2, mapped.slots()),
        (false, false) => (1, mapped.slots()),
        (false, true) => (1, 1),
    };
    let indices: Vec<u16> = (first..first + count).collect();
    let mut busy = false;
    for index in indices {
        match mapped.seg.claim_endpoint(index) {
            Ok(()) => {}
            Err(shmq_segment::Error::EndpointBusy { .. }) => {
                busy = true;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let a = Attach {
            m: &mapped,
            slot: index - first,
            wait,
            live: live.clone(),
        };
        let mut ring = match R::attach(a) {
            Ok(r) => r,
            Err(e) => {
                let _ = mapped.seg.release_endpoint(index);
                return Err(e.into());
            }
        };
        ring.set_interrupter(interrupt.clone());
        ring.prepare(&mapped);
        if sync.is_some() {
            ring.synced();
        }
        return Ok(Ready {
            ring: Some(ring),
            mapped,
            index,
            pid: std::process::id(),
            generation: shmq_segment::fork_generation(),
            destroyed: None,
            sync,
        });
    }
    debug_assert!(busy);
    if R::SLOTS == Slots::Producers {
        Err(Error::TooManyProducers {
            max: mapped.slots(),
        })
    } else if R::SLOTS == Slots::Subscribers {
        Err(Error::TooManySubscribers {
            max: mapped.slots(),
        })
    } else {
        // The holder's recorded pid, for the message (shared memory: display only).
        let index = first;
        let pid = mapped
            .seg
            .endpoint_info(index)
            .ok()
            .map(|i| i.pid)
            .filter(|&p| p != 0);
        Err(Error::AlreadyAttached { role: R::ROLE, pid })
    }
}

/// A ring error seen through a segment that may have been destroyed: the
/// shared header no longer reads as published (a hole over the first page)
/// while the ring found nothing to do or its peer gone, or the object shrank
/// under a "peer gone": then `Corrupted`, and the handle stays so. Out of line:
/// errors are the slow path.
#[cold]
#[inline(never)]
fn judge(
    e: shmq_ring::Error,
    mapped: &Mapped,
    destroyed: &mut Option<crate::error::Corruption>,
) -> Error {
    use shmq_ring::Error as R;
    let found = match &e {
        R::Empty | R::Full | R::Timeout | R::Disconnected(_) if !mapped.seg.header_intact() => {
            Some(HEADER_GONE)
        }
        R::Disconnected(_) if mapped.seg.is_shrunk().unwrap_or(false) => Some(SHRUNK),
        _ => None,
    };
    match found {
        Some(c) => {
            *destroyed = Some(c);
            Error::Corrupted(c)
        }
        None => e.into(),
    }
}

impl<R: Attachable> Drop for Ready<R> {
    fn drop(&mut self) {
        let Some(ring) = self.ring.take() else { return };
        if std::process::id() != self.pid {
            // A copy inherited through fork: leave the real owner's endpoint alone.
            ring.detach();
            return;
        }
        drop(ring); // marks the endpoint closed and wakes the peer
        let m = &self.mapped;
        let removed = m.seg.remove_if_unused(|| m.drained());
        // A file channel that syncs: what this end did last (a guard committed
        // or released after its last call, its close) reaches the disk too,
        // unless the drained file was just removed. Nobody to tell of a failure.
        if let Some(s) = &mut self.sync
            && !matches!(removed, Ok(true))
        {
            let _ = s.sync(&m.seg);
        }
        let _ = m.seg.release_endpoint(self.index);
    }
}
