//! FZ-02: an arbitrary ring image with arbitrary `head` and `tail` (format:
//! `shmq_fuzz::DrainInput`) drained through the real receive paths:
//! `try_recv_into`, `try_recv`, `try_recv_batch` and `recv_into_timeout(0)` (the
//! blocking path: liveness checks and, for MPSC with dead producer slots,
//! reclamation). Every frame must be within the maximum, every error typed; a
//! call that does not return is a libFuzzer timeout. The image is also inspected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmq_fuzz::{DrainInput, DrainPlan, attach_error_ok, drain_mpsc, drain_spsc, load_image};
use shmq_ring::{Region, inspect};

fuzz_target!(|data: &[u8]| {
    let Some(input) = DrainInput::parse(data) else {
        return;
    };
    let region = Region::heap(input.region_len());
    load_image(&region, &input.image);
    // SPSC and MPSC alike: tail at 0, head at 128.
    assert!(region.store_word(0, input.effective_tail()));
    assert!(region.store_word(128, input.head));
    let cap = input.capacity;
    let view = if input.mpsc {
        inspect::mpsc(&region, cap, input.producers)
    } else {
        inspect::spsc(&region, cap)
    };
    if let Err(e) = view {
        panic!("inspect refused a well-sized region: {e:?}");
    }
    let plan = DrainPlan {
        batch: input.batch,
        calls: 4 * (cap as usize / 8) + 16,
    };
    let r = if input.mpsc {
        drain_mpsc(&region, cap, input.producers, input.dead, plan)
    } else {
        drain_spsc(&region, cap, plan)
    };
    if let Err(e) = r {
        assert!(attach_error_ok(&e), "attach: {e:?}");
    }
});
