//! FZ-01: arbitrary bytes (up to 64 KiB) as a segment image.
//!
//! The header is decoded and validated against the image's length, as an opener
//! does after `fstat` and `mmap`: `validate` and `problems` must agree and never
//! panic. A valid header of a ring kind (`shmq::KIND_*`) then gets its ring region
//! copied into a heap region, looked at by `inspect`, and drained by a consumer:
//! only frames within the maximum and typed errors may come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmq::{KIND_MPSC, KIND_MPSC_TYPED, KIND_SPSC, KIND_SPSC_TYPED};
use shmq_fuzz::{DrainPlan, attach_error_ok, drain_mpsc, drain_spsc, load_image};
use shmq_ring::{Region, inspect};
use shmq_segment::{Expect, HeaderInfo};

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let Some(info) = HeaderInfo::from_bytes(data) else {
        return;
    };
    let len = data.len() as u64;
    // The type name field: its text, or a refusal in words; never a panic.
    let at = shmq_segment::TYPE_NAME_OFFSET as usize;
    match shmq_segment::TypeName::decode(data.get(at..).unwrap_or_default()) {
        Ok(name) => assert!(name.as_str().len() <= shmq_segment::TYPE_NAME_MAX),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let expect = Expect::default();
    let problems = info.problems(len, &expect);
    let verdict = info.validate(len, &expect);
    match (&verdict, problems.first()) {
        (Ok(()), None) => {}
        (Err(e), Some(p)) => assert_eq!(e.to_string(), p.to_string()),
        (v, p) => panic!("validate {v:?} but problems {p:?}"),
    }
    // What the facade requires of its own kinds.
    let own = Expect {
        kind: Some(info.kind),
        endpoints: Some(info.endpoints),
        capacity: Some(info.capacity),
        ..Expect::default()
    };
    assert_eq!(info.validate(len, &own).is_ok(), verdict.is_ok());
    if verdict.is_err() {
        return;
    }
    let mpsc = match info.kind {
        KIND_SPSC | KIND_SPSC_TYPED => false,
        KIND_MPSC | KIND_MPSC_TYPED => true,
        _ => return,
    };
    // Validation guarantees data_offset < total_len == len.
    let image = &data[info.data_offset as usize..];
    let region = Region::heap(image.len());
    load_image(&region, image);
    // As the facade: endpoint 0 is the consumer, the others are producer slots.
    let producers = info.endpoints.saturating_sub(1).max(1);
    let cap = info.capacity;
    let view = if mpsc {
        inspect::mpsc(&region, cap, producers)
    } else {
        inspect::spsc(&region, cap)
    };
    if let Err(e) = &view {
        assert!(attach_error_ok(e), "inspect: {e:?}");
    }
    let plan = DrainPlan {
        batch: 4,
        calls: 64 + (image.len() / 8).min(4096),
    };
    let drained = if mpsc {
        drain_mpsc(&region, cap, producers, 0, plan)
    } else {
        drain_spsc(&region, cap, plan)
    };
    match drained {
        Ok(_) => assert!(view.is_ok(), "a consumer attached where inspect refused"),
        Err(e) => assert!(attach_error_ok(&e), "attach: {e:?}"),
    }
});
