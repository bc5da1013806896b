//! Latency and throughput harness (being written).
