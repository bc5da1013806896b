//! Every transport of both harnesses, for real, across `fork`: each echoes the
//! exact bytes sent, each notices a dead peer instead of hanging, and every
//! throughput flow (the fan-out ones to 1 and 3 consumer processes) delivers
//! every message in order.
//!
//! Some transports spin, and this machine may have only two CPUs: everything runs
//! in ONE test, one transport at a time, with tiny counts. Nothing here asserts
//! a timing.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
#[cfg(feature = "peers")]
use shmq_bench::cli::Rows;
use shmq_bench::echo::{Echo, Transport};
use shmq_bench::{pingpong, throughput};

/// Each of `transports` echoes 20 messages of `size` bytes exactly, then
/// finishes cleanly.
fn echo_checks(transports: &[Transport], size: usize, pin: bool) {
    for &t in transports {
        let mut e = Echo::spawn(t, size, pin).unwrap_or_else(|e| panic!("{t} {size}: {e}"));
        for i in 0..20 {
            e.round_trip()
                .unwrap_or_else(|e| panic!("{t} {size} B, round trip {i}: {e}"));
        }
        e.finish()
            .unwrap_or_else(|e| panic!("{t} {size} B, finish: {e}"));
    }
}

fn dead_server_is_noticed() {
    // A killed server leaves its receiver's doorbell (the event-loop rows'):
    // collected below, those that were not dead before.
    let dead_before = shmq::inspect::dead_doorbells().unwrap_or_default();
    for t in Transport::ALL {
        let mut e = Echo::spawn(t, 64, true).unwrap();
        for _ in 0..3 {
            e.round_trip().unwrap();
        }
        let pid = e.server_pid().expect("server running");
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        // The server may not be gone yet for the first round trip after the kill,
        // but some round trip must fail (and none may hang).
        let failed = (0..1000).any(|_| e.round_trip().is_err());
        assert!(
            failed,
            "{t}: round trips kept succeeding with the server dead"
        );
    }
    for name in shmq::inspect::dead_doorbells().unwrap_or_default() {
        if !dead_before.contains(&name) {
            let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        }
    }
}

fn harness_measures() {
    let plan = pingpong::Plan {
        iters: 200,
        warmup: 10,
        max_time: None,
        pin: true,
        rounds: 1,
    };
    for t in Transport::ALL {
        let (h, _) = pingpong::measure(t, 64, &plan, |_| {}).unwrap();
        assert_eq!(h.len(), 200, "{t}");
    }
}

/// A pinned throughput plan of `messages` messages of `size` bytes through a
/// ring of `capacity` bytes, `batch` per call.
fn flow_plan(size: usize, messages: u64, capacity: u64, batch: usize) -> throughput::Plan {
    throughput::Plan {
        size,
        messages,
        capacity,
        pin: true,
        batch,
        linger: std::time::Duration::ZERO,
        file_dir: std::env::temp_dir(),
    }
}

fn flows_deliver() {
    for size in [24, 64, 4096, 65536] {
        for (flow, producers) in [
            (throughput::Flow::FloorStream, 1),
            (throughput::Flow::ShmqSpsc, 1),
            (throughput::Flow::ShmqSpscTyped, 1),
            (throughput::Flow::ShmqMpsc, 1),
            (throughput::Flow::ShmqMpsc, 3),
            (throughput::Flow::Pipe, 1),
            (throughput::Flow::UdsStream, 1),
            (throughput::Flow::Memcpy, 1),
            (throughput::Flow::ShmqShm, 1),
            (throughput::Flow::ShmqFileNone, 1),
            (throughput::Flow::ShmqFilePeriodic, 1),
            (throughput::Flow::ShmqFileEvery, 1),
            (throughput::Flow::ShmqBroadcast, 1),
            (throughput::Flow::ShmqBroadcast, 3),
            (throughput::Flow::ShmqBroadcastLossy, 1),
            (throughput::Flow::ShmqBroadcastLossy, 3),
            (throughput::Flow::SpscFanout, 1),
            (throughput::Flow::SpscFanout, 3),
        ] {
            if !flow.supports(size) {
                continue;
            }
            let plan = flow_plan(size, 300, 1 << 16, 8);
            let row = throughput::measure(flow, producers, &plan)
                .unwrap_or_else(|e| panic!("{flow} x{producers} {size} B: {e}"));
            assert_eq!(row.messages, 300, "{flow} x{producers} {size} B");
            // Only lossy subscribers may miss messages, each at most all of them.
            let most = if flow == throughput::Flow::ShmqBroadcastLossy {
                300 * u64::from(producers)
            } else {
                0
            };
            assert!(row.drops <= most, "{flow} x{producers} {size} B: {row:?}");
            if flow.is_fanout() {
                assert_eq!((row.producers, row.consumers), (1, producers));
            } else {
                assert_eq!((row.producers, row.consumers), (producers, 1));
            }
        }
    }
    // Message by message too, and a ring the floor (and each of two fan-out
    // consumers) laps many times.
    for flow in [
        throughput::Flow::FloorStream,
        throughput::Flow::ShmqSpscTyped,
        throughput::Flow::ShmqBroadcast,
        throughput::Flow::ShmqBroadcastLossy,
        throughput::Flow::SpscFanout,
    ] {
        let n = if flow.is_fanout() { 2 } else { 1 };
        let plan = flow_plan(64, 5000, 1 << 10, 1);
        let row = throughput::measure(flow, n, &plan).unwrap_or_else(|e| panic!("{flow}: {e}"));
        assert_eq!(row.messages, 5000, "{flow}");
    }
    // Receivers that linger (`recv_batch` looking at most every 20 us) still
    // get every message once, in order, message by message and in batches,
    // through a ring they lap.
    for (flow, producers) in [
        (throughput::Flow::ShmqSpsc, 1),
        (throughput::Flow::ShmqSpscTyped, 1),
        (throughput::Flow::ShmqMpsc, 2),
    ] {
        for batch in [1, 8] {
            let plan = throughput::Plan {
                linger: std::time::Duration::from_micros(20),
                ..flow_plan(64, 5000, 1 << 10, batch)
            };
            let row = throughput::measure(flow, producers, &plan)
                .unwrap_or_else(|e| panic!("{flow} lingering, batch {batch}: {e}"));
            assert_eq!(row.messages, 5000, "{flow} lingering, batch {batch}");
        }
    }
}

/// A placement probe runs (its label depends on the machine: not asserted).
fn probe_runs() {
    let (p, ns) = shmq_bench::placement::Probe::new(300, true)
        .run(true)
        .unwrap();
    assert!(ns > 0 || p == shmq_bench::placement::Placement::Unprobed);
}

#[test]
fn every_transport_one_at_a_time() {
    echo_checks(&Transport::ALL, 8, true);
    echo_checks(&Transport::ALL, 64, true);
    echo_checks(&Transport::ALL, 4096, false);
    dead_server_is_noticed();
    harness_measures();
    flows_deliver();
    probe_runs();
}

/// The peers (feature `peers`, not in CI's test command): each echoes exactly,
/// notices a dead server, and streams every message in order.
#[cfg(feature = "peers")]
#[test]
fn peers_one_at_a_time() {
    for &t in Transport::PEERS {
        for size in [8, 64, 4096] {
            echo_checks(&[t], size, true);
        }
        let mut e = Echo::spawn(t, 64, true).unwrap();
        e.round_trip().unwrap();
        let pid = e.server_pid().expect("server running");
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        assert!(
            (0..1000).any(|_| e.round_trip().is_err()),
            "{t}: round trips kept succeeding with the server dead"
        );
    }
    for &flow in throughput::Flow::PEERS {
        for (size, batch) in [(64, 1), (64, 8), (4096, 8)] {
            let plan = flow_plan(size, 3000, 1 << 14, batch);
            let row = throughput::measure(flow, 1, &plan)
                .unwrap_or_else(|e| panic!("{flow} {size} B: {e}"));
            assert_eq!((row.messages, row.drops), (3000, 0), "{flow} {size} B");
        }
    }
}
