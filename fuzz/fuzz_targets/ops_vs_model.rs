//! FZ-04: a list of operations (`shmq_fuzz::ops`: pushes, reservations committed,
//! aborted or held across other operations, receives, batches, re-attaches, and
//! peer writes into the region) against an SPSC ring or an MPSC ring with two
//! producers, compared with a `VecDeque` model (`crates/ring/tests/model.rs`, which
//! runs the same harness as a property test). Without peer writes the ring must
//! match the model exactly; after one, only valid frames or typed errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmq_fuzz::{model, ops};

fuzz_target!(|data: &[u8]| {
    let Ok((setup, program)) = ops::program(data) else {
        return;
    };
    if let Err(e) = model::run(setup, &program) {
        panic!("{e}\nsetup {setup:?}\nops {program:#?}");
    }
});
