//! Test harnesses of `shmq-ring`, shared by its integration tests
//! (`crates/ring/tests/{model,adversary}.rs`) and the fuzz targets (`fuzz/`), so
//! that a fuzz crash replays as an ordinary test:
//! - [`model`]: a list of operations run against a ring and against a model of it
//!   (catalogue FZ-04; the `ops_vs_model` fuzz target);
//! - `adversary` (only with `--cfg shmq_adversary`, which turns on the
//!   read-reporting atomics of `shmq-ring`): read recording, hostile values and
//!   the deterministic simulation `adversary::sim` (FZ-05; the
//!   `interleaved_adversary` fuzz target);
//! - [`Ring`], [`pair`] and [`checks`]: the kinds' setup behind one trait, and test
//!   bodies written once for both kinds.
//!
//! Not published; nothing here is part of the rings' API. Under `--cfg loom` only
//! [`Ring`] and its helpers are built (the loom models use them for their setup).

#[cfg(all(shmq_adversary, not(loom)))]
pub mod adversary;
#[cfg(not(loom))]
pub mod checks;
#[cfg(not(loom))]
pub mod model;

mod ring;
pub use ring::{Ring, fresh, pair, pair_with, sent};
