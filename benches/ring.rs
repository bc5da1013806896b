//! In-process cost of the rings themselves, no second process: a `try_send`
//! followed by a `try_recv` by message size, the batch forms by batch size (one
//! thread alternating, so the lines stay in one cache), and a stream between two
//! threads.
//!
//! ```text
//! cargo bench --bench ring
//! SHMQ_BENCH_HAND_BACK=off cargo bench --bench ring   # SPSC consumers hand no lines back
//! ```
//!
//! In one thread the SPSC consumer's hand-back (`Consumer::set_hand_back`: a
//! store to every cache line a release frees, so that a producer on another CPU
//! finds it owned) is pure overhead; `SHMQ_BENCH_HAND_BACK=off` turns it off,
//! to tell its cost from the rest of the path.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shmq_ring::{Consumer, Geometry, InProcess, Kind, Producer, Region, WaitConfig, mpsc, spsc};

const CAP: usize = 1 << 16;

fn spsc_pair() -> (spsc::Producer, spsc::Consumer) {
    let g = Geometry::spsc(CAP as u64).expect("geometry");
    let region = Region::heap(g.region_len());
    spsc::init(&region, g, 0).expect("init");
    let cfg = WaitConfig::default();
    let tx = spsc::Producer::attach(&region, g, cfg, Arc::new(InProcess)).expect("tx");
    let mut rx = spsc::Consumer::attach(&region, g, cfg, Arc::new(InProcess)).expect("rx");
    if std::env::var_os("SHMQ_BENCH_HAND_BACK").is_some_and(|v| v == "off") {
        rx.set_hand_back(false);
    }
    (tx, rx)
}

fn mpsc_pair() -> (mpsc::Producer, mpsc::Consumer) {
    let g = Geometry::mpsc(CAP as u64, 1).expect("geometry");
    let region = Region::heap(g.region_len());
    mpsc::init(&region, g, 0).expect("init");
    let cfg = WaitConfig::default();
    let tx = mpsc::Producer::attach(&region, g, 0, cfg, Arc::new(InProcess)).expect("tx");
    let rx = mpsc::Consumer::attach(&region, g, cfg, Arc::new(InProcess)).expect("rx");
    (tx, rx)
}

const SIZES: [usize; 4] = [8, 64, 512, 4096];

/// Times a `try_send` of a `size`-byte message followed by the `try_recv` of it.
fn send_then_recv<K: Kind>(
    b: &mut Bencher,
    (mut tx, mut rx): (Producer<K>, Consumer<K>),
    size: usize,
) {
    let msg = vec![0x5a; size];
    b.iter(|| {
        tx.try_send(black_box(&msg)).expect("send");
        let m = rx.try_recv().expect("recv");
        black_box(m[m.len() - 1]);
    });
}

fn send_recv(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_recv");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("spsc", size), &size, |b, &size| {
            send_then_recv(b, spsc_pair(), size);
        });
        g.bench_with_input(
            BenchmarkId::new("spsc-zero-copy", size),
            &size,
            |b, &size| {
                let (mut tx, mut rx) = spsc_pair();
                b.iter(|| {
                    let mut slot = tx.try_reserve(size).expect("reserve");
                    slot[0] = 1;
                    slot[size - 1] = 2;
                    slot.commit();
                    let m = rx.try_recv().expect("recv");
                    black_box(m[m.len() - 1]);
                });
            },
        );
        g.bench_with_input(BenchmarkId::new("mpsc", size), &size, |b, &size| {
            send_then_recv(b, mpsc_pair(), size);
        });
    }
    g.finish();
}

fn batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_64B");
    let msg = [0x5au8; 64];
    for batch in [1usize, 8, 64, 256] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("spsc", batch), &batch, |b, &batch| {
            let (mut tx, mut rx) = spsc_pair();
            b.iter(|| {
                let sent = tx
                    .try_send_batch(std::iter::repeat_n(&msg[..], batch))
                    .expect("send");
                assert_eq!(sent, batch);
                let got = rx
                    .try_recv_batch(batch, |m| {
                        black_box(m[0]);
                    })
                    .expect("recv");
                assert_eq!(got, batch);
            });
        });
        g.bench_with_input(BenchmarkId::new("mpsc", batch), &batch, |b, &batch| {
            let (mut tx, mut rx) = mpsc_pair();
            b.iter(|| {
                // MPSC batches hold at most 64 messages: one call per 64.
                let mut sent = 0;
                while sent < batch {
                    sent += tx
                        .try_send_batch(std::iter::repeat_n(&msg[..], batch - sent))
                        .expect("send");
                }
                let got = rx
                    .try_recv_batch(batch, |m| {
                        black_box(m[0]);
                    })
                    .expect("recv");
                assert_eq!(got, batch);
            });
        });
    }
    g.finish();
}

/// One producer thread streams `iters` messages to this thread.
fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads_64B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("spsc", |b| {
        b.iter_custom(|iters| {
            let (mut tx, mut rx) = spsc_pair();
            let msg = vec![0x5a; 64];
            let t0 = Instant::now();
            let producer = std::thread::spawn(move || {
                for _ in 0..iters {
                    tx.send(&msg).expect("send");
                }
            });
            for _ in 0..iters {
                black_box(rx.recv().expect("recv")[0]);
            }
            let took = t0.elapsed();
            producer.join().expect("producer");
            took
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = send_recv, batches, two_threads
}
criterion_main!(benches);
