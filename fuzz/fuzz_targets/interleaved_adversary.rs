//! FZ-05: a deterministic single-threaded simulation in which the fuzzer chooses
//! a peer write to make between every two reads of shared memory that the rings
//! make (format and oracle: `sim` in `crates/ring/tests/adversary.rs`). Needs
//! the read-reporting atomics: build with `RUSTFLAGS="--cfg shmq_adversary"`
//! (scripts/fuzz.sh does, in its own target directory).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    #[cfg(shmq_adversary)]
    shmq_fuzz::adversary::sim::fuzz_one(data);
    #[cfg(not(shmq_adversary))]
    {
        let _ = data;
        panic!(
            "interleaved_adversary needs RUSTFLAGS=\"--cfg shmq_adversary\" (scripts/fuzz.sh sets it)"
        );
    }
});
