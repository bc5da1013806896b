//! The two ends of a channel of any ring kind and message format:
//! [`Sender<K, M>`] and [`Receiver<K, M>`], written once over the kind
//! ([`Spsc`](crate::Spsc) or [`Mpsc`](crate::Mpsc)) and the format ([`Bytes`],
//! the default, or [`Typed<T>`]). Constructors and the kind's own methods are
//! written once for both formats; the sending and receiving forms once per
//! format (bytes here, typed values in [`crate::typed`]). [`crate::spsc`],
//! [`crate::mpsc`] and their `typed` modules name them for each kind.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmq_ring::{Consumer, Mpsc, Producer};

use crate::attach::{self, Handle, PeerWatcher, RingKind, Shape, Source};
use crate::{Options, Result};

pub use shmq_ring::{ReadGuard, WriteGuard};

/// What a channel's messages are: [`Bytes`], [`Typed<T>`] or [`Declared<T>`].
/// Sealed.
pub trait Format: format::Sealed + 'static {
    /// `"bytes"` or the element type's name, for `Debug`.
    #[doc(hidden)]
    fn name() -> &'static str;
    /// The channel's shape for ring kind `K` under `opts`.
    #[doc(hidden)]
    fn shape<K: RingKind>(opts: &Options) -> Shape;
    /// The capacity in this format's unit, from the ring's bytes.
    #[doc(hidden)]
    fn capacity(bytes: u64) -> u64;
    /// A received message, owned: `Vec<u8>` or `T`.
    type Message;
    /// Receives one message, owned: waiting as the strategy says (`block`), or not.
    #[doc(hidden)]
    fn receive<K: RingKind>(rx: &mut Receiver<K, Self>, block: bool) -> Result<Self::Message>
    where
        Self: Sized;
}

/// Variable-length byte messages (the default format).
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes;

/// Fixed-size messages of one [`bytemuck::Pod`] type `T`, known in the header
/// by its Rust type name ([`std::any::type_name`]), size and alignment: both
/// ends must name the same type at the same path.
pub struct Typed<T>(PhantomData<fn() -> T>);

/// Fixed-size messages of one [`Message`](crate::Message) type `T`, known in
/// the header by its declared name and version, size and alignment: ends built
/// separately, each with its own definition of `T`, agree on it.
pub struct Declared<T>(PhantomData<fn() -> T>);

mod format {
    pub trait Sealed {}
    impl Sealed for super::Bytes {}
    impl<T: bytemuck::Pod> Sealed for super::Typed<T> {}
    impl<T: crate::Message> Sealed for super::Declared<T> {}
}

impl Format for Bytes {
    fn name() -> &'static str {
        "bytes"
    }
    fn shape<K: RingKind>(opts: &Options) -> Shape {
        Shape::bytes::<K>(opts)
    }
    fn capacity(bytes: u64) -> u64 {
        bytes
    }
    type Message = Vec<u8>;
    fn receive<K: RingKind>(rx: &mut Receiver<K, Self>, block: bool) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        if block {
            rx.recv_into(&mut buf)?;
        } else {
            rx.try_recv_into(&mut buf)?;
        }
        Ok(buf)
    }
}

impl<T: bytemuck::Pod> Format for Typed<T> {
    fn name() -> &'static str {
        std::any::type_name::<T>()
    }
    fn shape<K: RingKind>(opts: &Options) -> Shape {
        Shape::typed::<K>(opts, crate::identity::TypeInfo::undeclared::<T>())
    }
    /// How many messages a ring of `bytes` holds at least (the inverse of
    /// `Shape::typed`: one frame of room for the wrap's padding and the end marker).
    fn capacity(bytes: u64) -> u64 {
        let frame = shmq_ring::frame::frame_len(size_of::<T>()) as u64;
        let header = shmq_ring::frame::HEADER_LEN as u64;
        bytes.saturating_sub(frame + header) / frame
    }
    type Message = T;
    fn receive<K: RingKind>(rx: &mut Receiver<K, Self>, block: bool) -> Result<T> {
        if block { rx.recv() } else { rx.try_recv() }
    }
}

impl<T: crate::Message> Format for Declared<T> {
    fn name() -> &'static str {
        T::NAME
    }
    fn shape<K: RingKind>(opts: &Options) -> Shape {
        Shape::typed::<K>(opts, crate::identity::TypeInfo::declared::<T>())
    }
    fn capacity(bytes: u64) -> u64 {
        Typed::<T>::capacity(bytes)
    }
    type Message = T;
    fn receive<K: RingKind>(rx: &mut Receiver<K, Self>, block: bool) -> Result<T> {
        if block { rx.recv() } else { rx.try_recv() }
    }
}

/// What one endpoint of a channel is doing, as [`Sender::peer`] and
/// [`Receiver::peers`] report it. The kernel's liveness marker decides alive
/// or not; the state word the endpoint wrote tells closed from died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// No process has attached it yet.
    NeverAttached,
    /// Held by a live process. `pid` is the one its holder recorded (for
    /// display: it is shared memory, and a pid namespace may differ).
    Alive {
        /// The holder's process id, as recorded.
        pid: u32,
    },
    /// Its holder closed it (dropped its handle or called `close`).
    Closed,
    /// Its holder died without closing it (a crash, a kill, or an exit that
    /// skipped destructors, such as `std::process::exit`).
    Died,
}

impl PeerState {
    /// From a reading of the endpoint's word (state and incarnation), then its
    /// marker (alive, the recorded pid, the attach count), then a second
    /// reading. `None`: the endpoint changed between the readings (a holder
    /// attached after the marker was asked): look again.
    ///
    /// A holder takes its marker before it writes its word and stores CLOSED
    /// before it gives the marker up, so a free marker between two equal
    /// readings that say "attached" is a death, and a close during the look
    /// reads as a close (an earlier order, word then marker, reported clean
    /// closes as deaths).
    pub(crate) fn judge(
        first: shmq_ring::inspect::EndpointView,
        marker: shmq_segment::EndpointInfo,
        second: shmq_ring::inspect::EndpointView,
    ) -> Option<PeerState> {
        use shmq_ring::inspect::EndpointState as S;
        Some(match second.state {
            _ if marker.alive => PeerState::Alive { pid: marker.pid },
            S::Closed => PeerState::Closed,
            // A word that says "never" about an endpoint that was claimed is
            // damage: only the marker tells, and it is free.
            S::Never if marker.attaches == 0 => PeerState::NeverAttached,
            _ if (second.state, second.incarnation) != (first.state, first.incarnation) => {
                return None;
            }
            // Never (claimed), Attached or Invalid, unchanged, with no live
            // marker.
            _ => PeerState::Died,
        })
    }
}

/// The sending end of a channel of ring kind `K` and message format `M`. For
/// MPSC channels each sender holds one producer slot.
pub struct Sender<K: RingKind, M: Format = Bytes> {
    pub(crate) end: Handle<Producer<K>>,
    _m: PhantomData<fn(M)>,
}

/// The receiving end of a channel of ring kind `K` and message format `M`.
pub struct Receiver<K: RingKind, M: Format = Bytes> {
    pub(crate) end: Handle<Consumer<K>>,
    /// Made by the first [`Receiver::doorbell`]; armed by the ring from then on.
    bell: Option<Arc<crate::doorbell::Bell>>,
    _m: PhantomData<fn() -> M>,
}

impl<K: RingKind, M: Format> core::fmt::Debug for Sender<K, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        debug_end::<K, M>(f, "Sender", self.capacity())
    }
}

impl<K: RingKind, M: Format> core::fmt::Debug for Receiver<K, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        debug_end::<K, M>(f, "Receiver", self.capacity())
    }
}

/// What `Debug` shows of either end: its kind, message format and capacity.
fn debug_end<K: RingKind, M: Format>(
    f: &mut core::fmt::Formatter<'_>,
    end: &str,
    capacity: u64,
) -> core::fmt::Result {
    f.debug_struct(end)
        .field("kind", &K::NAME)
        .field("messages", &M::name())
        .field("capacity", &capacity)
        .finish()
}

impl<K: RingKind, M: Format> Sender<K, M> {
    /// Creates the channel under `name` (one leading `/`, as for `shm_open`);
    /// fails if it exists. (A typed channel's [`Options::capacity`] counts
    /// messages.)
    ///
    /// # Errors
    /// [`Error::Segment`](crate::Error::Segment) (invalid name, already exists,
    /// permissions, ...), [`Error::InvalidCapacity`](crate::Error::InvalidCapacity).
    pub fn create(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Create(name), opts)
    }

    /// Opens the existing channel under `name`, waiting for its creator to finish.
    ///
    /// # Errors
    /// [`Error::Segment`](crate::Error::Segment) (not found, foreign or damaged
    /// segment, layout mismatch, ...), [`Error::AlreadyAttached`](crate::Error::AlreadyAttached),
    /// [`Error::TooManyProducers`](crate::Error::TooManyProducers).
    pub fn open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Open(name), opts)
    }

    /// Creates the channel under `name`, or opens it if it exists: either side
    /// may start first.
    ///
    /// # Errors
    /// As [`Sender::create`] and [`Sender::open`].
    pub fn create_or_open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateOrOpen(name), opts)
    }

    /// Opens an anonymous channel from a file descriptor received from another
    /// process ([`Sender::export_fd`]). Its seals are checked before it is mapped.
    ///
    /// # Errors
    /// [`Error::Segment`](crate::Error::Segment) (`Unsealed`, `Untrusted`, layout
    /// mismatch, ...).
    pub fn from_fd(fd: OwnedFd, opts: &Options) -> Result<Self> {
        Self::attach(Source::Fd(fd), opts)
    }

    pub(crate) fn attach(source: Source<'_>, opts: &Options) -> Result<Self> {
        Ok(Sender {
            end: Handle::open(source, &M::shape::<K>(opts), opts)?,
            _m: PhantomData,
        })
    }

    /// Capacity: bytes for a byte channel, messages (at least) for a typed one.
    pub fn capacity(&self) -> u64 {
        M::capacity(self.end.capacity())
    }

    /// The flag that interrupts this sender's blocking calls from another thread
    /// or a signal handler: they return [`Error::Interrupted`](crate::Error::Interrupted)
    /// within one wait slice, and so does every later blocking call until
    /// [`Interrupter::clear`](crate::Interrupter::clear); `try_` calls go on
    /// working. Handles are `Send + Sync` and outlive the sender harmlessly.
    pub fn interrupter(&self) -> crate::Interrupter {
        self.end.interrupter()
    }

    /// The consumer's state: never attached, alive (with its pid), closed or
    /// died.
    ///
    /// # Errors
    /// [`Error::NotAttached`](crate::Error::NotAttached), or the segment's error
    /// reading the marker.
    pub fn peer(&self) -> Result<PeerState> {
        Ok(self.end.peers(true)?[0])
    }

    /// Waits until the consumer's state differs from `known` (a value from
    /// [`Sender::peer`]) and returns it: an attach, a close and (within one
    /// wait slice) a death end the wait. Asleep meanwhile.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout) once `timeout` passes,
    /// [`Error::Interrupted`](crate::Error::Interrupted), or as [`Sender::peer`].
    pub fn peer_changed(&self, known: PeerState, timeout: Duration) -> Result<PeerState> {
        Ok(self.peer_watcher()?.changed(&[known], timeout)?[0])
    }

    /// A watcher of the consumer for another thread: it can wait for a change
    /// while this sender is blocked (a queue's sender blocked on a full ring
    /// whose consumer died, say).
    ///
    /// # Errors
    /// [`Error::NotAttached`](crate::Error::NotAttached).
    pub fn peer_watcher(&self) -> Result<PeerWatcher> {
        self.end.watcher(true)
    }

    /// Waits until a consumer is attached and alive, and returns its state
    /// (at once if it is).
    ///
    /// # Errors
    /// As [`Sender::peer_changed`].
    pub fn wait_for_peer(&self, timeout: Duration) -> Result<PeerState> {
        let deadline = Deadline::after(timeout);
        let mut state = self.peer()?;
        while !matches!(state, PeerState::Alive { .. }) {
            state = self.peer_changed(state, deadline.left())?;
        }
        Ok(state)
    }

    /// Committed messages the consumer has not received yet. It walks the ring
    /// (a query, not a hot-path call); MPSC claims not yet committed do not
    /// count.
    ///
    /// # Errors
    /// [`Error::NotAttached`](crate::Error::NotAttached), or the ring's
    /// corruption if the walk finds one.
    pub fn len(&self) -> Result<u64> {
        self.end.waiting()
    }

    /// Whether no committed message waits ([`Sender::len`] is 0).
    ///
    /// # Errors
    /// As [`Sender::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A duplicate of the channel's file descriptor, to pass to another process
    /// over a UNIX socket (`SCM_RIGHTS`). Only anonymous (memfd) channels can be
    /// opened from it ([`Sender::from_fd`] checks its seals).
    ///
    /// # Errors
    /// [`Error::Segment`](crate::Error::Segment) if `dup` fails.
    pub fn export_fd(&self) -> Result<OwnedFd> {
        self.end.export_fd()
    }
}

impl<K: RingKind> Sender<K> {
    /// Sends a copy of `msg` without waiting.
    ///
    /// # Errors
    /// [`Error::Full`](crate::Error::Full), [`Error::MessageTooLarge`](crate::Error::MessageTooLarge),
    /// [`Error::Disconnected`](crate::Error::Disconnected) (the receiver is gone;
    /// sessions only: a queue's sender waits for the next receiver, see
    /// [`Options::lifecycle`](crate::Options::lifecycle)),
    /// [`Error::Corrupted`](crate::Error::Corrupted).
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.end.run(|r| r.try_send(msg))
    }

    /// Sends a copy of `msg`, waiting for room as the wait strategy says. A
    /// receiver that has not attached yet is waited for, not an error.
    ///
    /// # Errors
    /// As [`Sender::try_send`], without `Full`.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.end.run(|r| r.send(msg))
    }

    /// Sends a copy of `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Sender::send`], plus [`Error::Timeout`](crate::Error::Timeout).
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.end.run(|r| r.send_timeout(msg, timeout))
    }

    /// Reserves room for `len` bytes in the ring without waiting: write the
    /// message in place through the guard, then `commit()` it. Dropping the
    /// guard uncommitted sends nothing.
    ///
    /// MPSC: until the guard is committed or dropped, no producer's later message
    /// is received, and once the ring is full every producer waits (see
    /// [`Sender::reserve`]).
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_, K>> {
        self.end.run(|r| r.try_reserve(len))
    }

    /// Reserves room for `len` bytes, waiting as the wait strategy says.
    ///
    /// # MPSC: a held reservation stops every producer
    /// On an MPSC channel the reservation is a claim on the next part of the ring,
    /// and the receiver takes messages in ring order: it cannot pass a claim that
    /// is not committed yet. Until this guard is committed or dropped, messages
    /// that other producers send after it are not received, and once they have
    /// filled the ring every producer waits (0 messages a second while a producer
    /// holding a guard is stopped, descheduled or blocked). This follows from the
    /// design (one shared ring, delivered in order). Keep guards short: fill and
    /// commit them without blocking in between, or use `send`, which holds its
    /// claim only while it copies the message. A producer that cannot be trusted to do
    /// so (another team's process, one that may be stopped with `SIGSTOP` or
    /// debugged) should get its own SPSC channel ([`crate::spsc`]), so that it can
    /// only hold up itself. A producer that dies holding a guard is recovered from
    /// (its claim is reclaimed once its death is seen); one that lives is waited for.
    ///
    /// # Errors
    /// As [`Sender::send`].
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_, K>> {
        self.end.run(|r| r.reserve(len))
    }

    /// Reserves room for `len` bytes, waiting at most `timeout`.
    ///
    /// MPSC: until the guard is committed or dropped, no producer's later message
    /// is received, and once the ring is full every producer waits (see
    /// [`Sender::reserve`]).
    ///
    /// # Errors
    /// As [`Sender::send_timeout`].
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_, K>> {
        self.end.run(|r| r.reserve_timeout(len, timeout))
    }

    /// Sends as many of `msgs` as fit now, in order, published with one store and
    /// one notification; returns how many were sent. (MPSC: at most 64 a call,
    /// with one claim.)
    ///
    /// # Errors
    /// [`Error::Full`](crate::Error::Full) if not even the first fits, otherwise as
    /// [`Sender::try_send`].
    pub fn try_send_batch<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = &'m [u8]>,
    ) -> Result<usize> {
        self.end.run(|r| r.try_send_batch(msgs))
    }

    /// The largest message this channel takes.
    pub fn max_message_len(&self) -> usize {
        self.end.max_message_len()
    }
}

impl<M: Format> Sender<Mpsc, M> {
    /// Another sender on the same channel, with its own producer slot.
    ///
    /// # Errors
    /// [`Error::TooManyProducers`](crate::Error::TooManyProducers) if every slot is
    /// taken, [`Error::Segment`](crate::Error::Segment) if re-opening fails.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Sender {
            end: self.end.try_clone()?,
            _m: PhantomData,
        })
    }

    /// This sender's producer slot.
    ///
    /// # Errors
    /// As for sending, if the sender has not attached yet and cannot.
    pub fn slot(&mut self) -> Result<u16> {
        Ok(self.end.ring()?.slot())
    }
}

impl<M: Format> Clone for Sender<Mpsc, M> {
    /// Another sender on the same channel that takes its producer slot on first
    /// use (it attaches then, in the process that uses it): a clone never
    /// fails or panics; when every slot is taken, its first call returns
    /// [`Error::TooManyProducers`](crate::Error::TooManyProducers). Use
    /// [`Sender::try_clone`] to take the slot at once instead.
    fn clone(&self) -> Self {
        Sender {
            end: self.end.clone_pending(),
            _m: PhantomData,
        }
    }
}

impl<K: RingKind, M: Format> Receiver<K, M> {
    /// Creates the channel under `name`; fails if it exists.
    ///
    /// # Errors
    /// As [`Sender::create`].
    pub fn create(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Create(name), opts)
    }

    /// Opens the existing channel under `name`, waiting for its creator to finish.
    ///
    /// # Errors
    /// As [`Sender::open`].
    pub fn open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::Open(name), opts)
    }

    /// Creates the channel under `name`, or opens it if it exists.
    ///
    /// # Errors
    /// As [`Sender::create_or_open`].
    pub fn create_or_open(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Source::CreateOrOpen(name), opts)
    }

    /// Opens an anonymous channel from a file descriptor received from another
    /// process.
    ///
    /// # Errors
    /// As [`Sender::from_fd`].
    pub fn from_fd(fd: OwnedFd, opts: &Options) -> Result<Self> {
        Self::attach(Source::Fd(fd), opts)
    }

    pub(crate) fn attach(source: Source<'_>, opts: &Options) -> Result<Self> {
        Ok(Receiver {
            end: Handle::open(source, &M::shape::<K>(opts), opts)?,
            bell: None,
            _m: PhantomData,
        })
    }

    /// Capacity: bytes for a byte channel, messages (at least) for a typed one.
    pub fn capacity(&self) -> u64 {
        M::capacity(self.end.capacity())
    }

    /// The flag that interrupts this receiver's blocking calls (see
    /// [`Sender::interrupter`]): the way to stop a thread blocked in `recv` for a
    /// shutdown, from another thread or a signal handler.
    pub fn interrupter(&self) -> crate::Interrupter {
        self.end.interrupter()
    }

    /// The producers' states: one for SPSC, one per slot for MPSC (slot order).
    ///
    /// # Errors
    /// As [`Sender::peer`].
    pub fn peers(&self) -> Result<Vec<PeerState>> {
        self.end.peers(false)
    }

    /// Waits until the producers' states differ from `known` (a value from
    /// [`Receiver::peers`]) and returns them: an attach, a close and (within
    /// one wait slice) a death end the wait. Asleep meanwhile.
    ///
    /// # Errors
    /// As [`Sender::peer_changed`].
    pub fn peers_changed(&self, known: &[PeerState], timeout: Duration) -> Result<Vec<PeerState>> {
        self.peer_watcher()?.changed(known, timeout)
    }

    /// A watcher of the producers for another thread (see
    /// [`Sender::peer_watcher`]).
    ///
    /// # Errors
    /// [`Error::NotAttached`](crate::Error::NotAttached).
    pub fn peer_watcher(&self) -> Result<PeerWatcher> {
        self.end.watcher(false)
    }

    /// Waits until at least one producer is attached and alive, and returns the
    /// producers' states (at once if one is).
    ///
    /// # Errors
    /// As [`Sender::peer_changed`].
    pub fn wait_for_peer(&self, timeout: Duration) -> Result<Vec<PeerState>> {
        let deadline = Deadline::after(timeout);
        let mut states = self.peers()?;
        while !states.iter().any(|s| matches!(s, PeerState::Alive { .. })) {
            states = self.peers_changed(&states, deadline.left())?;
        }
        Ok(states)
    }

    /// Reports [`Error::Disconnected`](crate::Error::Disconnected) only once at
    /// least `n` producer attachments have happened over the channel's life,
    /// none is attached now, and everything committed has been received:
    /// "done", said explicitly. Unset, a session (anonymous channels) expects
    /// one, and a queue (named channels) never reports `Disconnected`: its
    /// receiver sleeps until the next producer comes ([`Options::lifecycle`]).
    ///
    /// # Errors
    /// As for receiving, if the receiver has not attached yet and cannot.
    pub fn expect_producers(&mut self, n: u32) -> Result<()> {
        self.end.ring()?.expect_producers(n);
        Ok(())
    }

    /// Committed messages waiting to be received (see [`Sender::len`]).
    ///
    /// # Errors
    /// As [`Sender::len`].
    pub fn len(&self) -> Result<u64> {
        self.end.waiting()
    }

    /// Whether no committed message waits.
    ///
    /// # Errors
    /// As [`Sender::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Received messages, owned (`Vec<u8>` or `T`), waiting for each as the
    /// wait strategy says. The iteration ends when the receiver is done
    /// ([`Error::Disconnected`](crate::Error::Disconnected) is not an item: in a
    /// queue, only after [`Receiver::expect_producers`]); any other error is the last item. A copy is made and
    /// the slot released before each item is returned: a consumer that dies
    /// after that has received it (at most once); [`Receiver::recv`]'s guard
    /// releases only when dropped (at least once).
    pub fn iter(&mut self) -> Iter<'_, K, M> {
        Iter {
            rx: self,
            block: true,
            done: false,
        }
    }

    /// As [`Receiver::iter`], without waiting: ends when no message is there now.
    pub fn try_iter(&mut self) -> Iter<'_, K, M> {
        Iter {
            rx: self,
            block: false,
            done: false,
        }
    }

    /// A duplicate of the channel's file descriptor (see [`Sender::export_fd`]).
    ///
    /// # Errors
    /// [`Error::Segment`](crate::Error::Segment) if `dup` fails.
    pub fn export_fd(&self) -> Result<OwnedFd> {
        self.end.export_fd()
    }
}

impl<K: RingKind> Receiver<K> {
    /// Receives the next message without waiting, lending it in place until the
    /// guard drops (see the guard's note on trusting shared bytes).
    ///
    /// # Errors
    /// [`Error::Empty`](crate::Error::Empty), [`Error::Disconnected`](crate::Error::Disconnected)
    /// (done: the expected senders came and went, see
    /// [`Receiver::expect_producers`], and everything they committed has been
    /// received),
    /// [`Error::Corrupted`](crate::Error::Corrupted).
    #[inline]
    pub fn try_recv(&mut self) -> Result<ReadGuard<'_, K>> {
        self.end.run(|r| r.try_recv())
    }

    /// Receives the next message, waiting as the wait strategy says.
    ///
    /// # Errors
    /// As [`Receiver::try_recv`], without `Empty`.
    #[inline]
    pub fn recv(&mut self) -> Result<ReadGuard<'_, K>> {
        self.end.run(|r| r.recv())
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Receiver::recv`], plus [`Error::Timeout`](crate::Error::Timeout).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, K>> {
        self.end.run(|r| r.recv_timeout(timeout))
    }

    /// Receives the next message into `buf` (cleared first), waiting. The bytes
    /// are copied out before the space is released, so they are the caller's
    /// whatever the peer does next.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    #[inline]
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.end.run(|r| r.recv_into(buf))
    }

    /// As [`Receiver::recv_into`], without waiting.
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    #[inline]
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.end.run(|r| r.try_recv_into(buf))
    }

    /// As [`Receiver::recv_into`], waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Receiver::recv_timeout`].
    pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        self.end.run(|r| r.recv_into_timeout(buf, timeout))
    }

    /// Hands up to `max` waiting messages to `each`, in place and in order, and
    /// releases them all with one store. Returns how many (0 if none waited,
    /// or `max` is 0).
    ///
    /// # Errors
    /// [`Error::Disconnected`](crate::Error::Disconnected) when nothing waited and
    /// the senders are gone; [`Error::Corrupted`](crate::Error::Corrupted).
    pub fn try_recv_batch(&mut self, max: usize, each: impl FnMut(&[u8])) -> Result<usize> {
        self.end.run(|r| r.try_recv_batch(max, each))
    }

    /// Hands up to `max` messages to `each` (as [`Receiver::try_recv_batch`]),
    /// waiting as the wait strategy says until there is at least one. Returns
    /// how many (0 only if `max` is 0).
    ///
    /// With a linger ([`Options::linger`](crate::Options::linger)), a call
    /// that comes less than the linger after the previous one took everything
    /// there first waits until the linger has passed since then, without
    /// reading the ring: a receiver that keeps up with a stream of large
    /// messages otherwise reads each one while the sender writes the next
    /// beside it, which slows both (README, "Throughput").
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_batch(&mut self, max: usize, each: impl FnMut(&[u8])) -> Result<usize> {
        self.end.run(|r| r.recv_batch(max, each))
    }

    /// As [`Receiver::recv_batch`], waiting at most `timeout` (the linger
    /// included).
    ///
    /// # Errors
    /// As [`Receiver::recv_timeout`].
    pub fn recv_batch_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        each: impl FnMut(&[u8]),
    ) -> Result<usize> {
        self.end.run(|r| r.recv_batch_timeout(max, timeout, each))
    }

    /// The largest message this channel takes.
    pub fn max_message_len(&self) -> usize {
        self.end.max_message_len()
    }
}

impl<K: RingKind, M: Format> Receiver<K, M> {
    /// This receiver's pollable descriptor, for an event loop (epoll, mio,
    /// tokio's `AsyncFd`, glib, calloop): readable when a message may be
    /// there after a non-blocking receive said `Empty`; see [`Doorbell`]
    /// for the contract. The first call makes it (a FIFO in `/dev/shm` with
    /// the channel's permission bits, and a timer of one wait slice); later
    /// calls return the same one.
    ///
    /// A sender wakes a receiver that waits on it with one `write` (one
    /// kernel hop to the thread blocked in `epoll_wait`), and only when the
    /// receiver's last `try_recv` found nothing: streaming to a busy receiver
    /// makes no system call.
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    /// use shmq::{Error, Options, spsc};
    ///
    /// let (mut tx, mut rx) = spsc::anonymous(&Options::new())?;
    /// let bell = rx.doorbell()?;
    /// let readable = |ms: u16| {
    ///     let mut fds = [PollFd::new(bell.as_fd(), PollFlags::POLLIN)];
    ///     poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
    /// };
    /// assert!(matches!(rx.try_recv(), Err(Error::Empty))); // armed
    /// assert!(!readable(0));
    /// tx.send(b"ding")?; // rings: one write
    /// assert!(readable(5000));
    /// assert_eq!(&*rx.try_recv()?, b"ding");
    /// # Ok::<(), shmq::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Segment`](crate::Error::Segment) if the FIFO, the timer or the
    /// epoll instance cannot be made; as [`Receiver::expect_producers`].
    ///
    /// [`Doorbell`]: crate::Doorbell
    pub fn doorbell(&mut self) -> Result<crate::Doorbell> {
        if let Some(b) = &self.bell {
            return Ok(crate::Doorbell(b.clone()));
        }
        let slice = self.end.ring()?.wait_config().slice;
        let Some(mapped) = self.end.mapped() else {
            return Err(crate::attach::not_attached());
        };
        let bell = crate::doorbell::create(&mapped.seg, slice)?;
        self.end.ring()?.set_doorbell(Some(bell.clone()));
        self.bell = Some(bell.clone());
        Ok(crate::Doorbell(bell))
    }
}

impl<M: Format> Receiver<Mpsc, M> {
    /// How many times producers have attached to this channel.
    ///
    /// # Errors
    /// As [`Receiver::expect_producers`].
    pub fn producer_attachments(&mut self) -> Result<u32> {
        Ok(self.end.ring()?.producer_attachments())
    }

    /// How many dead producers' claims this receiver has turned into padding.
    ///
    /// # Errors
    /// As [`Receiver::expect_producers`].
    pub fn reclaimed(&mut self) -> Result<u64> {
        Ok(self.end.ring()?.reclaimed())
    }
}

/// A new anonymous channel of kind `K` and format `M` (a sealed memfd): both ends, for use
/// across `fork`. Each end attaches in the process that first uses it; drop the
/// end a process does not use. [`Sender::export_fd`] passes the channel to an
/// unrelated process.
///
/// # Errors
/// [`Error::InvalidCapacity`](crate::Error::InvalidCapacity),
/// [`Error::Segment`](crate::Error::Segment) (`memfd_create`, sealing, mapping).
pub fn anonymous<K: RingKind, M: Format>(opts: &Options) -> Result<(Sender<K, M>, Receiver<K, M>)> {
    let (a, b) = attach::anonymous(&M::shape::<K>(opts), opts)?;
    Ok((
        Sender {
            end: Handle::pending(a, opts.wait_for(false)),
            _m: PhantomData,
        },
        Receiver {
            end: Handle::pending(b, opts.wait_for(false)),
            bell: None,
            _m: PhantomData,
        },
    ))
}

/// Received messages of a [`Receiver`], owned ([`Receiver::iter`],
/// [`Receiver::try_iter`]).
pub struct Iter<'a, K: RingKind, M: Format> {
    rx: &'a mut Receiver<K, M>,
    block: bool,
    done: bool,
}

impl<K: RingKind, M: Format> Iterator for Iter<'_, K, M> {
    type Item = Result<M::Message>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match M::receive(self.rx, self.block) {
            Ok(m) => Some(Ok(m)),
            Err(crate::Error::Disconnected(_) | crate::Error::Empty) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<'a, K: RingKind, M: Format> IntoIterator for &'a mut Receiver<K, M> {
    type Item = Result<M::Message>;
    type IntoIter = Iter<'a, K, M>;

    fn into_iter(self) -> Iter<'a, K, M> {
        self.iter()
    }
}

/// The end of a wait made of several waits (`None`: it never ends).
struct Deadline(Option<Instant>);

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// What is left of it (`Duration::MAX` for one that never ends).
    fn left(&self) -> Duration {
        self.0.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PeerState;
    use shmq_ring::inspect::{EndpointState as S, EndpointView};
    use shmq_segment::EndpointInfo;

    fn word(state: S, incarnation: u32) -> EndpointView {
        EndpointView {
            state,
            incarnation,
            pending_claim: None,
        }
    }

    fn marker(alive: bool, attaches: u32) -> EndpointInfo {
        EndpointInfo {
            alive,
            pid: 42,
            attaches,
        }
    }

    #[test]
    fn a_look_judges_the_word_on_both_sides_of_the_marker() {
        let judge = PeerState::judge;
        let (att, free) = (word(S::Attached, 3), marker(false, 3));
        assert_eq!(
            judge(att, marker(true, 3), att),
            Some(PeerState::Alive { pid: 42 })
        );
        assert_eq!(judge(att, free, att), Some(PeerState::Died));
        // Closed while asked: a close, not a death.
        assert_eq!(
            judge(att, free, word(S::Closed, 3)),
            Some(PeerState::Closed)
        );
        // Closed and attached again while asked: look again.
        assert_eq!(judge(att, free, word(S::Attached, 4)), None);
        // Closed, then a new holder attached after the first reading: look again.
        assert_eq!(judge(word(S::Closed, 3), free, word(S::Attached, 4)), None);
        assert_eq!(
            judge(word(S::Never, 0), marker(false, 0), word(S::Never, 0)),
            Some(PeerState::NeverAttached)
        );
        // "Never" about a claimed endpoint is damage; the marker is free.
        assert_eq!(
            judge(word(S::Never, 0), free, word(S::Never, 0)),
            Some(PeerState::Died)
        );
    }
}
