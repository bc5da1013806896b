//! Channel options.

use std::time::Duration;

use shmq_ring::broadcast::{Join, Mode};
use shmq_ring::{Lifecycle, WaitConfig, WaitStrategy};
use shmq_segment::{Durability, SegmentOptions};

/// Default capacity of a byte channel: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;
/// Default capacity of a typed channel, in messages.
pub const DEFAULT_TYPED_CAPACITY: u64 = 1024;
/// Default number of producer slots of an MPSC channel.
pub const DEFAULT_PRODUCERS: u16 = 16;
/// How a broadcast subscriber receives and where it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Subscribe {
    pub(crate) mode: Mode,
    pub(crate) join: Join,
}

/// Subscriber slots of a broadcast channel unless [`Options::max_subscribers`]
/// says otherwise.
pub const DEFAULT_SUBSCRIBERS: u16 = 64;

/// How a channel is created, opened and waited on.
///
/// ```
/// use std::time::Duration;
/// use shmq::{Options, WaitStrategy};
/// let opts = Options::new()
///     .capacity(1 << 16)
///     .wait(WaitStrategy::SpinThenPark { spin: Duration::from_micros(50) })
///     .mode(0o600);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) capacity: Option<u64>,
    pub(crate) producers: Option<u16>,
    /// Subscriber slots of a broadcast channel (set by
    /// [`Options::max_subscribers`]).
    pub(crate) subscribers: Option<u16>,
    /// How a broadcast subscriber receives, and where it starts.
    pub(crate) subscribe: Subscribe,
    pub(crate) wait: WaitConfig,
    /// Set by [`Options::lifecycle`]; unset: a queue for named channels, a
    /// session for anonymous and descriptor-passed ones.
    lifecycle: Option<Lifecycle>,
    /// Set by [`Options::durability`]: the policy a created file channel
    /// records, and the one an opener requires.
    pub(crate) durability: Option<Durability>,
    /// Set by [`Options::segment_options`]; the settings below apply on top of it.
    base: SegmentOptions,
    /// The segment settings made through this builder, in call order: they
    /// apply on top of `base` whenever it was set, so calls compose.
    settings: Vec<Setting>,
}

/// One segment setting made through [`Options`]: the setter of `Options` that
/// records it has the name of the `SegmentOptions` setter that applies it (in
/// [`Options::segment`]).
#[derive(Clone, Copy, Debug)]
enum Setting {
    Mode(u32),
    Populate(bool),
    Lock(bool),
    HugePages(bool),
    OpenTimeout(Duration),
    ReclaimStale(bool),
    SigbusGuard(bool),
    ExpectedOwner(Option<u32>),
    AllowSharedWrite(bool),
}

impl Setting {
    /// `o` with this setting made.
    fn apply(self, o: SegmentOptions) -> SegmentOptions {
        match self {
            Setting::Mode(mode) => o.mode(mode),
            Setting::Populate(yes) => o.populate(yes),
            Setting::Lock(yes) => o.lock(yes),
            Setting::HugePages(yes) => o.huge_pages(yes),
            Setting::OpenTimeout(timeout) => o.open_timeout(timeout),
            Setting::ReclaimStale(yes) => o.reclaim_stale(yes),
            Setting::SigbusGuard(yes) => o.sigbus_guard(yes),
            Setting::ExpectedOwner(uid) => o.expected_owner(uid),
            Setting::AllowSharedWrite(yes) => o.allow_shared_write(yes),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: capacity [`DEFAULT_CAPACITY`] bytes (byte channels) or
    /// [`DEFAULT_TYPED_CAPACITY`] messages (typed channels) when creating and any
    /// when opening; the default [`WaitStrategy`]; the secure
    /// [`SegmentOptions`] defaults (mode `0o600`, space reserved at creation).
    pub fn new() -> Self {
        Options {
            capacity: None,
            producers: None,
            subscribers: None,
            subscribe: Subscribe::default(),
            wait: WaitConfig::default(),
            lifecycle: None,
            durability: None,
            base: SegmentOptions::new(),
            settings: Vec::new(),
        }
    }

    /// The wait configuration for a channel that is named (`named`) or not.
    pub(crate) fn wait_for(&self, named: bool) -> WaitConfig {
        let default = if named {
            Lifecycle::Queue
        } else {
            Lifecycle::Session
        };
        WaitConfig {
            lifecycle: self.lifecycle.unwrap_or(default),
            ..self.wait
        }
    }

    /// Capacity: bytes for byte channels (a power of two from 64 B to 4 GiB),
    /// messages for typed channels. When opening, a set capacity must match.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Producer slots of an MPSC channel (default [`DEFAULT_PRODUCERS`], at most
    /// 256). When opening, a set value must match.
    pub fn max_producers(mut self, n: u16) -> Self {
        self.producers = Some(n);
        self
    }

    /// Subscriber slots of a broadcast channel (default
    /// [`DEFAULT_SUBSCRIBERS`], at most
    /// [`broadcast::MAX_SUBSCRIBERS`](crate::broadcast::MAX_SUBSCRIBERS)).
    /// When opening, a set value must match.
    pub fn max_subscribers(mut self, n: u16) -> Self {
        self.subscribers = Some(n);
        self
    }

    /// How a broadcast subscriber receives: [`Mode::Lossless`] (the default:
    /// the publisher waits for it) or [`Mode::Lossy`] (never waited for; told
    /// what it missed).
    pub fn subscribe(mut self, mode: Mode) -> Self {
        self.subscribe.mode = mode;
        self
    }

    /// Where a broadcast subscriber starts: [`Join::Next`] (the default) or
    /// [`Join::Oldest`] (the oldest message still in the channel).
    pub fn join(mut self, at: Join) -> Self {
        self.subscribe.join = at;
        self
    }

    /// How blocking calls wait.
    pub fn wait(mut self, strategy: WaitStrategy) -> Self {
        self.wait.strategy = strategy;
        self
    }

    /// Longest single sleep; a blocked call notices a dead peer within it
    /// (default 50 ms).
    pub fn wait_slice(mut self, slice: Duration) -> Self {
        self.wait.slice = slice;
        self
    }

    /// A receiver's linger (default zero: none). A blocking batch receive
    /// ([`Receiver::recv_batch`](crate::Receiver::recv_batch)) that comes less
    /// than `linger` after the previous one took every message there first
    /// waits, without reading the ring, until `linger` has passed since then,
    /// and takes what came meanwhile in one batch. For a receiver of a stream
    /// of large messages: one that keeps up reads each message while the
    /// sender writes the next beside it, which slows both (README,
    /// "Throughput"). A message after a quiet spell of at least `linger` is
    /// not delayed; one that follows the previous batch closely waits at most
    /// `linger`. Other receive forms do not linger.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.wait.linger = linger;
        self
    }

    /// What an absent peer means ([`Lifecycle`], docs/LIFECYCLE.md). Unset,
    /// named channels are queues (a sender waits only for room, whatever the
    /// receiver does; a receiver waits for senders until
    /// [`Receiver::expect_producers`](crate::Receiver::expect_producers) says how
    /// many make it done) and anonymous or descriptor-passed channels are
    /// sessions (`Disconnected` once the peer is gone and everything is drained,
    /// final). Choose a session for a named channel whose sender must learn at
    /// once that its receiver went away.
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// When a file channel's writes are forced to the disk ([`Durability`];
    /// file channels only: `create_file`, `open_file`, `create_or_open_file`).
    /// Recorded in the file when it is created (unset: [`Durability::None`]);
    /// every end follows the recorded policy, and an opener that sets one
    /// requires it ([`Error::WrongDurability`](crate::Error::WrongDurability)
    /// otherwise). What each policy survives and costs: README, "Durable
    /// channels".
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }
}

impl Options {
    /// Permission bits of a created segment (default `0o600`), applied with `fchmod`.
    pub fn mode(self, mode: u32) -> Self {
        self.record(Setting::Mode(mode))
    }

    /// Pre-fault the mapping (`MAP_POPULATE`).
    pub fn populate(self, yes: bool) -> Self {
        self.record(Setting::Populate(yes))
    }

    /// Lock the mapping in memory (`mlock`).
    pub fn lock(self, yes: bool) -> Self {
        self.record(Setting::Lock(yes))
    }

    /// Huge pages for anonymous channels (`MFD_HUGETLB`).
    pub fn huge_pages(self, yes: bool) -> Self {
        self.record(Setting::HugePages(yes))
    }

    /// How long opening waits for a segment under the name to become usable
    /// (default 2 s): one being removed, or one an older shmq's creator has not
    /// finished. A channel of this version appears under its name only once it
    /// is complete, so opening before its creator is done is `NotFound` at once.
    pub fn open_timeout(self, timeout: Duration) -> Self {
        self.record(Setting::OpenTimeout(timeout))
    }

    /// Let `create` replace a stale segment (no live process has it open) left
    /// under the same name by a crash. A stale channel whose ring still holds
    /// messages that no consumer has received is not replaced: they are data, and
    /// `create` fails with [`Error::StaleWithMessages`](crate::Error::StaleWithMessages)
    /// (open the channel to receive them, or remove it to discard them).
    pub fn reclaim_stale(self, yes: bool) -> Self {
        self.record(Setting::ReclaimStale(yes))
    }

    /// Guard this channel's mappings against `SIGBUS` (default on): a peer that
    /// truncates a named channel's segment makes this end's calls return
    /// [`Error::Corrupted`](crate::Error::Corrupted) or
    /// [`Error::Disconnected`](crate::Error::Disconnected) instead of killing the
    /// process. Installs a process-global `SIGBUS` handler on first use, which
    /// chains to any handler installed before it; see
    /// [`SegmentOptions::sigbus_guard`] for what it does and when to turn it off.
    pub fn sigbus_guard(self, yes: bool) -> Self {
        self.record(Setting::SigbusGuard(yes))
    }

    /// Owner uid an opened channel's segment must have: `Some(uid)`, or `None`
    /// for any owner (default: this process's effective uid). With
    /// [`Options::allow_shared_write`] and a creator's [`Options::mode`], this is
    /// how two users share a channel.
    pub fn expected_owner(self, uid: Option<u32>) -> Self {
        self.record(Setting::ExpectedOwner(uid))
    }

    /// Accept segments that group or others may write (default: refuse them,
    /// unless [`Options::mode`] itself grants such bits).
    pub fn allow_shared_write(self, yes: bool) -> Self {
        self.record(Setting::AllowSharedWrite(yes))
    }

    /// The segment options to start from (size limits and any setting this
    /// builder has no method for). The builder's own segment settings
    /// ([`Options::mode`], [`Options::open_timeout`], ...) apply on top of it,
    /// whether they were called before or after this.
    pub fn segment_options(mut self, segment: SegmentOptions) -> Self {
        self.base = segment;
        self
    }

    /// This builder with `setting` recorded, to apply in [`Options::segment`].
    fn record(mut self, setting: Setting) -> Self {
        self.settings.push(setting);
        self
    }

    /// The segment options in effect: the base, then every setting in call order.
    pub(crate) fn segment(&self) -> SegmentOptions {
        self.settings
            .iter()
            .fold(self.base.clone(), |o, s| s.apply(o))
    }
}
