//! [`Ring`]: the kind-specific setup (`init`, `attach`) behind one name, so that a
//! test is written once over both kinds.

use std::sync::Arc;

use shmq_ring::{
    Consumer, Geometry, InProcess, Kind, Liveness, Mpsc, Producer, Region, Result, Spsc,
    WaitConfig, WaitStrategy, mpsc, spsc,
};

/// A ring kind's setup: [`spsc::init`] / [`mpsc::init`] and the kinds' `attach`
/// functions, which are inherent on one instantiation each.
pub trait Ring: Kind {
    /// Writes a fresh control block with positions at `start`.
    ///
    /// # Errors
    /// As the kind's `init`.
    fn init(region: &Region, geometry: Geometry<Self>, start: u64) -> Result<()>;

    /// Attaches a producer in `slot` (an SPSC ring has one producer and ignores it).
    ///
    /// # Errors
    /// As the kind's `Producer::attach`.
    fn producer(
        region: &Region,
        geometry: Geometry<Self>,
        slot: u16,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Producer<Self>>;

    /// Attaches the consumer.
    ///
    /// # Errors
    /// As the kind's `Consumer::attach`.
    fn consumer(
        region: &Region,
        geometry: Geometry<Self>,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<Consumer<Self>>;
}

impl Ring for Spsc {
    fn init(region: &Region, geometry: Geometry<Spsc>, start: u64) -> Result<()> {
        spsc::init(region, geometry, start)
    }

    fn producer(
        region: &Region,
        geometry: Geometry<Spsc>,
        _slot: u16,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<spsc::Producer> {
        spsc::Producer::attach(region, geometry, cfg, liveness)
    }

    fn consumer(
        region: &Region,
        geometry: Geometry<Spsc>,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<spsc::Consumer> {
        spsc::Consumer::attach(region, geometry, cfg, liveness)
    }
}

impl Ring for Mpsc {
    fn init(region: &Region, geometry: Geometry<Mpsc>, start: u64) -> Result<()> {
        mpsc::init(region, geometry, start)
    }

    fn producer(
        region: &Region,
        geometry: Geometry<Mpsc>,
        slot: u16,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<mpsc::Producer> {
        mpsc::Producer::attach(region, geometry, slot, cfg, liveness)
    }

    fn consumer(
        region: &Region,
        geometry: Geometry<Mpsc>,
        cfg: WaitConfig,
        liveness: Arc<dyn Liveness>,
    ) -> Result<mpsc::Consumer> {
        mpsc::Consumer::attach(region, geometry, cfg, liveness)
    }
}

/// A ring on a heap region, initialised at `start`, with the producer of slot 0
/// and the consumer attached (`Park` waits, [`InProcess`] liveness).
///
/// # Panics
/// If `init` or an attach fails.
pub fn pair<K: Ring>(geometry: Geometry<K>, start: u64) -> (Region, Producer<K>, Consumer<K>) {
    pair_with(geometry, start, WaitConfig::from(WaitStrategy::Park))
}

/// [`pair`] with both ends waiting as `cfg` says.
///
/// # Panics
/// If `init` or an attach fails.
pub fn pair_with<K: Ring>(
    geometry: Geometry<K>,
    start: u64,
    cfg: WaitConfig,
) -> (Region, Producer<K>, Consumer<K>) {
    let region = fresh(geometry, start);
    let tx = K::producer(&region, geometry, 0, cfg, Arc::new(InProcess)).unwrap();
    let rx = K::consumer(&region, geometry, cfg, Arc::new(InProcess)).unwrap();
    (region, tx, rx)
}

/// A heap region for `geometry` with a fresh ring at `start`, nothing attached.
///
/// # Panics
/// If `init` fails.
pub fn fresh<K: Ring>(geometry: Geometry<K>, start: u64) -> Region {
    let region = Region::heap(geometry.region_len());
    K::init(&region, geometry, start).unwrap();
    region
}

/// A fresh ring of `geometry` at `start` whose slot-0 producer has sent a message
/// of each of `sizes` (message `i` is `fill(i)` repeated), of which the consumer
/// has received the first `read`; both ends attached, waiting as `cfg` says, with
/// `live` for liveness.
///
/// # Panics
/// If `init`, an attach, a send or a receive fails.
pub fn sent<K: Ring>(
    geometry: Geometry<K>,
    start: u64,
    cfg: WaitConfig,
    live: Arc<dyn Liveness>,
    sizes: &[usize],
    read: usize,
    fill: impl Fn(usize) -> u8,
) -> (Region, Producer<K>, Consumer<K>) {
    let region = fresh(geometry, start);
    let mut tx = K::producer(&region, geometry, 0, cfg, live.clone()).unwrap();
    let mut rx = K::consumer(&region, geometry, cfg, live).unwrap();
    let mut buf = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        tx.try_send(&vec![fill(i); len]).unwrap();
        if i < read {
            rx.try_recv_into(&mut buf).unwrap();
        }
    }
    (region, tx, rx)
}
