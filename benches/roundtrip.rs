//! Cross-process round trip, measured by criterion through `iter_custom`: shmq
//! (each wait strategy), the cache-line floor, and the kernel's pipe and UNIX
//! stream socket in one group, so that criterion's report compares them. A forked
//! echo server (`shmq_bench::echo::Echo`, pinned to another CPU) lives for the
//! whole benchmark of one transport; each sample times a run of round trips.
//!
//! ```text
//! cargo bench --bench roundtrip
//! ```
//! The full table with percentiles is `cargo run --release --example pingpong`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shmq_bench::echo::{Echo, Transport};

const TRANSPORTS: [Transport; 6] = [
    Transport::FloorSpin,
    Transport::ShmqSpin,
    Transport::ShmqAdaptive,
    Transport::ShmqPark,
    Transport::Pipe,
    Transport::UdsStream,
];

fn roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("roundtrip");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for size in [8usize, 64] {
        for t in TRANSPORTS {
            let mut echo = Echo::spawn(t, size, true).expect("start the echo server");
            g.bench_function(BenchmarkId::new(t.name(), size), |b| {
                b.iter_custom(|iters| {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        echo.round_trip().expect("round trip");
                    }
                    t0.elapsed()
                });
            });
            echo.finish().expect("stop the echo server");
        }
    }
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
