//! The peers in the echo (feature `peers`): other shared-memory rings, driven
//! like shmq-spin (both sides polling) and checked like every transport (the
//! client compares the echo with what it sent, byte for byte).
//!
//! - `ringfire`: two SPMC rings of fixed slots (`[u8; N]` for the message size
//!   `N`, one of [`RINGFIRE_SIZES`]), created by the parent before the fork in
//!   `/dev/shm` and unlinked as soon as both ends are attached.
//! - `iceoryx2`: two publish-subscribe services of byte slices (`[u8]`, at most
//!   the message size), no history, a buffer of 8 samples that does not
//!   overflow; the parent makes its node and ports before the fork, the server
//!   makes its own in the child (none of iceoryx2's objects crosses the fork),
//!   and the client's first message waits until the server's ports are there.
//!
//! A server that dies is noticed through the watchdog's nudge (a flag in this
//! process that the polling client looks at every so often).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use ringfire::{CleanupMode, RingConsumer, RingProducer, RingProducerBuilder};

use super::{Client, Nudge, Parts, Result, Server, check_echo, is_stop};

/// Message sizes the ringfire echo carries (its slots have a fixed type).
pub(crate) const RINGFIRE_SIZES: [usize; 6] = [8, 16, 64, 256, 1024, 4096];

/// Polls between two looks at the dead flag.
const DEAD_CHECK: u32 = 1024;

/// A name no other run uses: this process, and a counter.
pub(crate) fn unique(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "shmq-bench-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A flag the watchdog raises when the server has ended, and its nudge.
fn dead_flag() -> (Arc<AtomicBool>, Nudge) {
    let dead = Arc::new(AtomicBool::new(false));
    let d = dead.clone();
    (dead, Box::new(move || d.store(true, Ordering::Release)))
}

/// A new ringfire ring of `slots` slots of `T` in `/dev/shm`, with its one
/// reader attached (from the start) and its file already unlinked.
pub(crate) fn ringfire_ring<T: Copy + 'static>(
    slots: u64,
    lossless: bool,
) -> Result<(RingProducer<T>, RingConsumer<T>)> {
    let path = format!("/dev/shm/{}", unique("ringfire"));
    let mut opts = RingProducerBuilder::new(slots).cleanup_mode(CleanupMode::Persistent);
    if lossless {
        opts = opts.flow_control(ringfire::FlowControl::LosslessBackpressure);
    }
    let made = RingProducer::<T>::create_with_options(&path, opts).and_then(|tx| {
        let rx = RingConsumer::<T>::builder()
            .start_from_head()
            .attach(&path)?;
        Ok((tx, rx))
    });
    let _ = std::fs::remove_file(&path);
    Ok(made?)
}

/// The client's side of the ringfire echo.
struct RfClient<const N: usize> {
    tx: RingProducer<[u8; N]>,
    rx: RingConsumer<[u8; N]>,
    dead: Arc<AtomicBool>,
}

impl<const N: usize> Client for RfClient<N> {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        let mut m = [0u8; N];
        m.copy_from_slice(msg);
        self.tx.push(&m);
        let mut polls = 0u32;
        loop {
            if let Some(echo) = self.rx.try_recv() {
                return check_echo(&echo, msg, "ringfire");
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(DEAD_CHECK) && self.dead.load(Ordering::Acquire) {
                return Err("echo server gone".into());
            }
            std::hint::spin_loop();
        }
    }
}

/// The server's side of the ringfire echo.
struct RfServer<const N: usize> {
    rx: RingConsumer<[u8; N]>,
    tx: RingProducer<[u8; N]>,
}

impl<const N: usize> Server for RfServer<N> {
    fn serve(&mut self) -> Result<()> {
        loop {
            let Some(m) = self.rx.try_recv() else {
                std::hint::spin_loop();
                continue;
            };
            self.tx.push(&m);
            if is_stop(&m) {
                return Ok(());
            }
        }
    }
}

fn ringfire_n<const N: usize>() -> Result<Parts> {
    let (ping_tx, ping_rx) = ringfire_ring::<[u8; N]>(64, false)?;
    let (pong_tx, pong_rx) = ringfire_ring::<[u8; N]>(64, false)?;
    let (dead, nudge) = dead_flag();
    Ok(Parts {
        client: Box::new(RfClient {
            tx: ping_tx,
            rx: pong_rx,
            dead,
        }),
        server: Box::new(RfServer {
            rx: ping_rx,
            tx: pong_tx,
        }),
        nudge,
    })
}

/// The ringfire echo for `size`-byte messages.
pub(crate) fn ringfire(size: usize) -> Result<Parts> {
    match size {
        8 => ringfire_n::<8>(),
        16 => ringfire_n::<16>(),
        64 => ringfire_n::<64>(),
        256 => ringfire_n::<256>(),
        1024 => ringfire_n::<1024>(),
        4096 => ringfire_n::<4096>(),
        _ => Err(format!(
            "ringfire: fixed slots; message sizes {RINGFIRE_SIZES:?} only, not {size}"
        )
        .into()),
    }
}

/// An iceoryx2 node of this process (no signal handling of its own: the
/// harness's processes are ended by the harness).
pub(crate) fn iox_node() -> Result<Node<ipc::Service>> {
    // Errors only (unless IOX2_LOG_LEVEL says otherwise): iceoryx2 warns on
    // every node that it found no config file and uses its defaults.
    set_log_level_from_env_or(LogLevel::Error);
    Ok(NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()?)
}

/// The byte-slice publish-subscribe service `name`, opened or made with a
/// buffer of `buffer` samples that never overflows (a full buffer holds the
/// publisher back: nothing is dropped).
pub(crate) fn iox_service(
    node: &Node<ipc::Service>,
    name: &str,
    buffer: usize,
) -> Result<iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>>
{
    let name: ServiceName = name.try_into()?;
    Ok(node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(buffer)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .open_or_create()?)
}

/// A publisher of slices of up to `size` bytes that waits while the subscriber's
/// buffer is full.
pub(crate) fn iox_publisher(
    service: &iceoryx2::service::port_factory::publish_subscribe::PortFactory<
        ipc::Service,
        [u8],
        (),
    >,
    size: usize,
) -> Result<iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>> {
    Ok(service
        .publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?)
}

/// Sends a copy of `msg` through `publisher`.
#[inline]
pub(crate) fn iox_send(
    publisher: &iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
    msg: &[u8],
) -> Result<()> {
    let sample = publisher.loan_slice_uninit(msg.len())?;
    sample.write_from_slice(msg).send()?;
    Ok(())
}

/// Waits (at most `limit`) until `service` has a subscriber and `other` a
/// publisher besides ours: the peer's ports are there.
fn iox_wait_for_peer(
    ping: &iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    pong: &iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    dead: &AtomicBool,
    limit: Duration,
) -> Result<()> {
    let until = Instant::now() + limit;
    while ping.dynamic_config().number_of_subscribers() == 0
        || pong.dynamic_config().number_of_publishers() == 0
    {
        if dead.load(Ordering::Acquire) {
            return Err("echo server gone before its iceoryx2 ports were made".into());
        }
        if Instant::now() > until {
            return Err("iceoryx2: the echo server's ports did not appear".into());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// The client's side of the iceoryx2 echo.
struct IoxClient {
    // Field order is drop order: the ports before their services and node.
    publisher: iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
    subscriber: iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>,
    ping: iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    pong: iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    _node: Node<ipc::Service>,
    connected: bool,
    dead: Arc<AtomicBool>,
}

impl Client for IoxClient {
    #[inline]
    fn round_trip(&mut self, _seq: u64, msg: &[u8]) -> Result<()> {
        if !self.connected {
            iox_wait_for_peer(&self.ping, &self.pong, &self.dead, Duration::from_secs(10))?;
            self.connected = true;
        }
        iox_send(&self.publisher, msg)?;
        let mut polls = 0u32;
        loop {
            if let Some(echo) = self.subscriber.receive()? {
                return check_echo(echo.payload(), msg, "iceoryx2");
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(DEAD_CHECK) && self.dead.load(Ordering::Acquire) {
                return Err("echo server gone".into());
            }
            std::hint::spin_loop();
        }
    }
}

/// The server's side of the iceoryx2 echo: makes its node and ports in the
/// child.
struct IoxServer {
    ping: String,
    pong: String,
    size: usize,
}

impl Server for IoxServer {
    fn serve(&mut self) -> Result<()> {
        let node = iox_node()?;
        let ping = iox_service(&node, &self.ping, 8)?;
        let pong = iox_service(&node, &self.pong, 8)?;
        let subscriber = ping.subscriber_builder().create()?;
        let publisher = iox_publisher(&pong, self.size)?;
        loop {
            let Some(m) = subscriber.receive()? else {
                std::hint::spin_loop();
                continue;
            };
            iox_send(&publisher, m.payload())?;
            if is_stop(m.payload()) {
                return Ok(());
            }
        }
    }
}

/// The iceoryx2 echo for `size`-byte messages.
pub(crate) fn iceoryx2(size: usize) -> Result<Parts> {
    let (ping_name, pong_name) = (unique("iox-ping"), unique("iox-pong"));
    let node = iox_node()?;
    let ping = iox_service(&node, &ping_name, 8)?;
    let pong = iox_service(&node, &pong_name, 8)?;
    let subscriber = pong.subscriber_builder().create()?;
    let publisher = iox_publisher(&ping, size)?;
    let (dead, nudge) = dead_flag();
    Ok(Parts {
        client: Box::new(IoxClient {
            publisher,
            subscriber,
            ping,
            pong,
            _node: node,
            connected: false,
            dead,
        }),
        server: Box::new(IoxServer {
            ping: ping_name,
            pong: pong_name,
            size,
        }),
        nudge,
    })
}
