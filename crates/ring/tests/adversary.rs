//! The adversary shim at work (catalogue HP-04, FZ-05, pitfall 11): with
//! `--cfg shmq_adversary` every atomic read the rings make of shared memory is
//! reported to a thread-local hook (`shmq_ring::adversary`), before and after it
//! happens. Run:
//!
//! ```text
//! RUSTFLAGS="--cfg shmq_adversary" CARGO_TARGET_DIR=target/adversary \
//!     cargo test -p shmq-ring --test adversary --release
//! ```
//!
//! - **Read counts**: one `try_recv`/`try_send` of each ring, recorded word by
//!   word. On the paths that move messages every control word and every frame
//!   header is loaded at most once; the slow paths (an empty ring: liveness and
//!   reclamation) load some words again, each time validating the new value before
//!   using it. The tests pin exactly which words those are.
//! - **Flipper**: a peer that rewrites a word between two reads, exhaustively (each
//!   read of an operation, each hostile value) and at random: the consumer returns
//!   frames that agree with a header it validated, or `Corrupted`, never panics,
//!   and each call makes a bounded number of reads.
//! - **`sim`**: the deterministic simulation the `interleaved_adversary` fuzz target
//!   runs (`shmq_ring_model::adversary`, with the rest of the harness): the
//!   fuzzer's input chooses the operations and, before every read, whether and
//!   what the peer writes.
#![cfg(all(shmq_adversary, not(loom)))]

mod tests {
    use std::rc::Rc;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use proptest::prelude::*;
    use shmq_ring::adversary::{self, Read};
    use shmq_ring::frame::{MPSC_MSG, MPSC_PAD, MpscHeader, max_payload};
    use shmq_ring::{Consumer, Error, Geometry, Mpsc, Producer, Region, Spsc, mpsc, spsc};
    use shmq_ring_model::adversary::*;
    use shmq_ring_model::{Ring, sent};

    const CAP: usize = 256;

    /// What a victim operation did, if it returned an allowed result.
    struct Outcome {
        delivered: Vec<usize>,
        batch: bool,
    }

    /// An operation under attack.
    #[derive(Clone, Copy, Debug)]
    enum Victim {
        Recv,
        RecvGuard,
        Batch(usize),
        /// `recv_into_timeout(0)`: the blocking path, liveness, reclamation.
        Slow,
        Send(usize),
    }

    fn recv_outcome(r: Result<Vec<u8>, Error>) -> Result<Outcome, String> {
        match r {
            Ok(m) => Ok(Outcome {
                delivered: vec![m.len()],
                batch: false,
            }),
            Err(Error::Empty | Error::Timeout | Error::Corrupted(_) | Error::Disconnected(_)) => {
                Ok(Outcome {
                    delivered: Vec::new(),
                    batch: false,
                })
            }
            Err(e) => Err(format!("receive returned {e:?}")),
        }
    }

    fn batch_outcome(
        r: Result<usize, Error>,
        lens: Vec<usize>,
        n: usize,
    ) -> Result<Outcome, String> {
        match r {
            Ok(k) if k == lens.len() && k <= n => {}
            // A batch that meets a bad header after good frames has already handed
            // those over (valid, and checked below) and reports the corruption.
            Err(Error::Corrupted(_)) if lens.len() <= n => {}
            Err(Error::Disconnected(_)) if lens.is_empty() => {}
            r => {
                return Err(format!(
                    "try_recv_batch({n}) returned {r:?} handing over {lens:?}"
                ));
            }
        }
        Ok(Outcome {
            delivered: lens,
            batch: true,
        })
    }

    fn send_outcome(r: Result<(), Error>, len: usize) -> Result<Outcome, String> {
        match r {
            Ok(()) | Err(Error::Full | Error::Corrupted(_) | Error::Disconnected(_)) => {
                Ok(Outcome {
                    delivered: Vec::new(),
                    batch: false,
                })
            }
            Err(Error::MessageTooLarge { .. }) if len > max_payload(CAP) => Ok(Outcome {
                delivered: Vec::new(),
                batch: false,
            }),
            Err(e) => Err(format!("send returned {e:?}")),
        }
    }

    /// A ring with both ends, made the same way every time.
    struct Scene<K: Ring> {
        region: Region,
        /// Offset of the data area.
        data: usize,
        /// MPSC producer slots (`None` for SPSC), for naming words.
        slots: Option<u16>,
        /// The producer of slot 0.
        tx: Producer<K>,
        rx: Consumer<K>,
    }

    /// A ring of `geometry` at `start` whose slot-0 producer sent `sizes`, the
    /// first `read` of them received (both ends alive as long as `live` says).
    fn scene<K: Ring>(
        geometry: Geometry<K>,
        slots: Option<u16>,
        start: u64,
        sizes: &[usize],
        read: usize,
        live: Dead,
    ) -> Scene<K> {
        let (region, tx, rx) = sent(
            geometry,
            start,
            no_wait(),
            Arc::new(live),
            sizes,
            read,
            |i| i as u8,
        );
        Scene {
            region,
            data: geometry.control_len(),
            slots,
            tx,
            rx,
        }
    }

    /// An SPSC ring at `start` with `sizes` sent and the first `read` received.
    fn spsc_scene(start: u64, sizes: &[usize], read: usize) -> Scene<Spsc> {
        let s = scene(
            Geometry::spsc(CAP as u64).unwrap(),
            None,
            start,
            sizes,
            read,
            Dead::default(),
        );
        assert_eq!(s.data, spsc::CONTROL_LEN);
        s
    }

    /// An MPSC ring with two slots: slot 0 sent `sizes` (the first `read`
    /// received); then, if `dead_claim`, slot 1 claimed 20 bytes and died.
    fn mpsc_scene(start: u64, sizes: &[usize], read: usize, dead_claim: bool) -> Scene<Mpsc> {
        let g = Geometry::mpsc(CAP as u64, 2).unwrap();
        let dead = Dead::default();
        let mut s = scene(g, Some(2), start, sizes, read, dead.clone());
        assert_eq!(s.data, mpsc::control_len(2));
        if dead_claim {
            let mut b = Mpsc::producer(&s.region, g, 1, no_wait(), Arc::new(dead.clone())).unwrap();
            std::mem::forget(b.try_reserve(20).unwrap());
            b.detach();
            dead.0.store(0b10, Ordering::Relaxed);
            s.tx.try_send(b"after the dead claim").unwrap();
        }
        s
    }

    impl<K: Ring> Scene<K> {
        fn region(&self) -> &Region {
            &self.region
        }
        fn data(&self) -> usize {
            self.data
        }
        fn slots(&self) -> Option<u16> {
            self.slots
        }
        fn run(&mut self, v: Victim) -> Result<Outcome, String> {
            let mut buf = Vec::new();
            match v {
                Victim::Recv => recv_outcome(self.rx.try_recv_into(&mut buf).map(|()| buf)),
                Victim::RecvGuard => recv_outcome(self.rx.try_recv().map(|g| g.to_vec())),
                Victim::Slow => recv_outcome(
                    self.rx
                        .recv_into_timeout(&mut buf, Duration::ZERO)
                        .map(|()| buf),
                ),
                Victim::Batch(n) => {
                    let mut lens = Vec::new();
                    let r = self.rx.try_recv_batch(n, |m| lens.push(m.len()));
                    batch_outcome(r, lens, n)
                }
                Victim::Send(len) => send_outcome(self.tx.try_send(&vec![7; len]), len),
            }
        }
    }

    fn named<K: Ring>(s: &Scene<K>, reads: &[Rd]) -> Vec<(String, (u32, u32))> {
        counts(reads)
            .into_iter()
            .map(|(o, c)| (name(o, s.slots(), CAP), c))
            .collect()
    }

    /// Runs `v` on a fresh scene and returns the reads, after checking the result.
    fn clean<K: Ring>(make: &impl Fn() -> Scene<K>, v: Victim) -> (Scene<K>, Vec<Rd>) {
        let mut s = make();
        let region = s.region().clone();
        let (out, reads) = record(&region, || s.run(v));
        let out = out.unwrap_or_else(|e| panic!("{v:?} without a peer: {e}"));
        check_delivery(&out.delivered, &reads, s.data(), CAP, s.slots(), out.batch)
            .unwrap_or_else(|e| panic!("{v:?} without a peer: {e}"));
        (s, reads)
    }

    /// Asserts that `v` loads every word at most once, except the words in
    /// `twice` (at most twice); read-modify-writes only of `allowed_rmw`, at most
    /// once each.
    fn loads_once<K: Ring>(
        make: impl Fn() -> Scene<K>,
        v: Victim,
        allowed_rmw: &[&str],
        twice: &[&str],
    ) {
        let (s, reads) = clean(&make, v);
        assert!(!reads.is_empty(), "{v:?} read nothing?");
        for (word, (loads, rmw)) in named(&s, &reads) {
            let most = if twice.contains(&word.as_str()) { 2 } else { 1 };
            assert!(
                loads <= most,
                "{v:?} loads {word} {loads} times: {:?}",
                named(&s, &reads)
            );
            assert!(
                rmw == 0 || (rmw == 1 && allowed_rmw.contains(&word.as_str())),
                "{v:?}: {rmw} read-modify-writes of {word}"
            );
        }
    }

    /// HP-04: the operations that move messages fetch every shared word at most
    /// once (exactly once where they read it at all).
    #[test]
    fn message_paths_load_every_shared_word_once() {
        let spsc_msgs = || spsc_scene(0, &[5, 40, 100], 0);
        let spsc_wrapped = || spsc_scene(0, &[100, 100, 60], 2); // padding, then offset 0
        for v in [
            Victim::Recv,
            Victim::RecvGuard,
            Victim::Batch(8),
            Victim::Send(30),
        ] {
            loads_once(spsc_msgs, v, &[], &[]);
            loads_once(spsc_wrapped, v, &[], &[]);
        }
        // Full: the producer re-reads `head` once, then looks at the consumer.
        let spsc_full = || spsc_scene(0, &[100, 100], 0);
        let (s, reads) = clean(&spsc_full, Victim::Send(100));
        assert_eq!(
            counts(&reads).get(&128),
            Some(&(1, 0)),
            "head: {:?}",
            named(&s, &reads)
        );

        // Less than half the ring: a longer batch releases on the way (each release
        // looks at `producers_waiting` again, to decide on a wake-up).
        let mpsc_msgs = || mpsc_scene(0, &[5, 40, 20], 0, false);
        let mpsc_wrapped = || mpsc_scene(0, &[100, 60, 60], 2, false);
        for v in [Victim::Recv, Victim::RecvGuard, Victim::Batch(8)] {
            loads_once(mpsc_msgs, v, &[], &[]);
            loads_once(mpsc_wrapped, v, &[], &[]);
        }
        // The claim's compare-and-swap reads `tail` again, as the atomic comparison
        // with the value validated: it fails if `tail` changed since. When its
        // cached `head` says full, the producer also reloads `tail` after `head`,
        // only to compare it with the first value (a stale `t` means: start over).
        loads_once(mpsc_msgs, Victim::Send(30), &["tail"], &[]);
        loads_once(mpsc_wrapped, Victim::Send(90), &["tail"], &["tail"]);
    }

    /// The slow paths (nothing to receive, or no room) look at some words more than
    /// once: each look is a fresh load that is validated before it is used, never a
    /// reuse of an earlier check (the flipper tests below and the fuzz target
    /// `interleaved_adversary` write between every pair of them). Only these kinds
    /// of word are ever loaded twice in one call: frame headers (re-peeked, and the
    /// reclamation pass), endpoint states and the epoch (liveness).
    #[test]
    fn slow_paths_reload_only_words_they_revalidate() {
        let mut seen = Vec::new();
        let mut check = |what: &str, named: Vec<(String, (u32, u32))>| {
            for (word, (loads, _)) in &named {
                if *loads > 1 {
                    assert!(
                        word.starts_with("data+") || word == "epoch" || word.ends_with(".state"),
                        "{what} loads {word} {loads} times: {named:?}"
                    );
                }
            }
            seen.push(format!("{what}: {named:?}"));
        };
        let empty_spsc = || spsc_scene(0, &[5], 1);
        for v in [Victim::Recv, Victim::Slow, Victim::Batch(4)] {
            let (s, reads) = clean(&empty_spsc, v);
            check(&format!("spsc {v:?} on empty"), named(&s, &reads));
        }
        let full_spsc = || spsc_scene(0, &[100, 100], 0);
        let (s, reads) = clean(&full_spsc, Victim::Send(100));
        check("spsc Send on full", named(&s, &reads));
        let empty_mpsc = || mpsc_scene(0, &[5], 1, false);
        for v in [Victim::Recv, Victim::Slow, Victim::Batch(4)] {
            let (s, reads) = clean(&empty_mpsc, v);
            check(&format!("mpsc {v:?} on empty"), named(&s, &reads));
        }
        let dead = || mpsc_scene(0, &[5], 1, true);
        let (s, reads) = clean(&dead, Victim::Slow);
        check("mpsc Slow reclaiming", named(&s, &reads));
        for line in seen {
            println!("{line}");
        }
    }

    /// Runs `v` with the peer writing `value` into the word the `k`-th read is
    /// about to load, then a few plain follow-up calls; checks every result.
    fn strike_once<K: Ring>(
        make: &impl Fn() -> Scene<K>,
        v: Victim,
        k: usize,
        value: u64,
    ) -> Result<(), String> {
        let mut s = make();
        let region = s.region().clone();
        let base = adversary::base_address(&region).unwrap();
        let n = Rc::new(std::cell::Cell::new(0usize));
        let hook = {
            let (n, region) = (n.clone(), region.clone());
            move |rd: &Read| {
                if rd.value.is_none() {
                    if n.get() == k
                        && let Some(off) = rd.addr.checked_sub(base)
                        && off < region.len()
                    {
                        poke(&region, off, rd.width, value);
                    }
                    n.set(n.get() + 1);
                }
            }
        };
        let (out, reads) = record_with(&region, hook, || s.run(v));
        let out = out?;
        if reads.len() > read_bound(CAP) {
            return Err(format!("{} reads", reads.len()));
        }
        check_delivery(&out.delivered, &reads, s.data(), CAP, s.slots(), out.batch)?;
        // What the strike left behind is still safe to use.
        for f in [
            Victim::Recv,
            Victim::Batch(3),
            Victim::Send(9),
            Victim::Recv,
            Victim::Slow,
        ] {
            let (out, reads) = record(&region, || s.run(f));
            let out = out.map_err(|e| format!("then {f:?}: {e}"))?;
            check_delivery(&out.delivered, &reads, s.data(), CAP, s.slots(), out.batch)
                .map_err(|e| format!("then {f:?}: {e}"))?;
        }
        Ok(())
    }

    /// A named way to make a scene.
    type Make<S> = (&'static str, fn() -> S);

    /// Every read of `v`, struck with every hostile value for that word.
    fn flip_every_read<K: Ring>(make: impl Fn() -> Scene<K>, v: Victim) -> usize {
        let (s, reads) = clean(&make, v);
        let mut cases = 0;
        for (k, rd) in reads.iter().enumerate() {
            let values = if rd.off >= s.data() && rd.off < s.data() + CAP {
                hostile_values(rd.off - s.data(), CAP)
            } else {
                control_values(rd.value, CAP)
            };
            for value in values {
                if let Err(e) = strike_once(&make, v, k, value) {
                    panic!(
                        "{v:?}: read {k} ({}) struck with {value:#x}: {e}",
                        name(rd.off, s.slots(), CAP)
                    );
                }
                cases += 1;
            }
        }
        cases
    }

    /// [`flip_every_read`] for each scene and each victim operation.
    fn flip_every_victim<K: Ring>(makes: [Make<Scene<K>>; 4]) -> usize {
        let mut cases = 0;
        for (_, make) in makes {
            for v in [
                Victim::Recv,
                Victim::RecvGuard,
                Victim::Batch(4),
                Victim::Slow,
                Victim::Send(30),
                Victim::Send(100),
            ] {
                cases += flip_every_read(make, v);
            }
        }
        cases
    }

    /// HP-04 flipper, exhaustively: before each read an operation makes, the peer
    /// rewrites that word with each hostile value. Every call returns a frame that
    /// agrees with a header it validated, or a typed error; nothing panics; the
    /// calls after it too.
    #[test]
    fn a_write_before_any_read_gives_valid_frames_or_errors() {
        let spsc: [Make<Scene<Spsc>>; 4] = [
            ("messages", || spsc_scene(0, &[5, 40, 100], 0)),
            ("wrapped", || spsc_scene(0, &[100, 100, 60], 2)),
            ("empty", || spsc_scene(u64::MAX - 63, &[5], 1)),
            ("full", || spsc_scene(0, &[100, 100], 0)),
        ];
        let mpsc: [Make<Scene<Mpsc>>; 4] = [
            ("messages", || mpsc_scene(0, &[5, 40, 60], 0, false)),
            ("wrapped", || mpsc_scene(0, &[100, 60, 60], 2, false)),
            ("empty", || mpsc_scene(u64::MAX - 63, &[5], 1, false)),
            ("dead claim", || mpsc_scene(0, &[5, 9], 1, true)),
        ];
        let cases = flip_every_victim(spsc) + flip_every_victim(mpsc);
        println!("{cases} strikes");
        assert!(
            cases > 1000,
            "only {cases} strikes: the scenes read too little"
        );
    }

    /// An empty two-slot MPSC ring (one message sent and received) for a peer
    /// racing the consumer: the scene, its region, the region's address as the
    /// shim reports it, and where the data area starts.
    fn raced() -> (Scene<Mpsc>, Region, usize, usize) {
        let s = mpsc_scene(0, &[5], 1, false);
        let region = s.region.clone();
        let base = adversary::base_address(&region).unwrap();
        (s, region, base, mpsc::control_len(2))
    }

    /// Bug found with the shim: the MPSC consumer's reclamation loop
    /// (`check_producers`: `while reclaim_dead()? { peek }`) has no bound. A
    /// producer that writes a dead producer's claim header (negative length) at
    /// `head` each time the consumer has turned the previous one into padding keeps
    /// a single `recv_timeout` call looping as long as it likes, past its deadline
    /// (pitfall 26, HP-03: every call must be bounded).
    #[test]
    fn reclamation_is_bounded_against_a_racing_peer() {
        let (mut s, region, base, data) = raced();
        let dead_claim = MpscHeader {
            len: -16,
            kind: MPSC_MSG,
            slot: 1,
            incarnation: 9, // slot 1 never had incarnation 9: its holder is gone
        }
        .encode();
        let reads = Rc::new(std::cell::Cell::new(0usize));
        let r = reads.clone();
        let out = adversary::with_hook(
            move |rd: &Read| {
                if rd.value.is_some() {
                    return;
                }
                r.set(r.get() + 1);
                let Some(off) = rd.addr.checked_sub(base) else {
                    return;
                };
                // Give up after a million reads, so that the test ends either way.
                if r.get() < 1_000_000 && !rd.rmw && off >= data && off < data + CAP {
                    let now = region.load_word(off).unwrap();
                    if now == 0 || MpscHeader::from_raw(now).kind == MPSC_PAD {
                        region.store_word(off, dead_claim);
                    }
                }
            },
            || s.rx.recv_timeout(Duration::ZERO).map(|g| g.len()),
        );
        let n = reads.get();
        assert!(
            n <= read_bound(CAP),
            "one recv_timeout(0) made {n} reads ({out:?}, {} reclaimed)",
            s.rx.reclaimed()
        );
    }

    /// Found by ThreadSanitizer (2026-12-05, `four_threads_exactly_once_in_per_producer_order`
    /// in 2 of 30 runs): the reclamation pass read the header at `head` as 0
    /// (a claim without its header yet); then the live producer wrote that
    /// header, withdrew its intent and copied its payload; the pass, finding no
    /// intent, looked for the next header through that payload, reading bytes a
    /// producer was writing. It must look at the header again after the intents
    /// and stop. Here the peer does the producer's three steps just before the
    /// pass reads slot 1's intent.
    #[test]
    fn reclamation_never_reads_a_live_claims_payload() {
        let (mut s, region, base, data) = raced();
        let g = Geometry::mpsc(CAP as u64, 2).unwrap();
        // Slot 1 attached and alive; it claims 20 bytes at `head` (intent, then
        // `tail`), its header not written yet.
        let _b = Mpsc::producer(&region, g, 1, no_wait(), Arc::new(Dead::default())).unwrap();
        // The ring is empty: the claim starts at `tail`, where the consumer is.
        let tail = region.load_word(0).unwrap();
        let intent = 512 + 128 + 8;
        assert!(region.store_word(intent, tail | 1));
        let need = 32u64; // frame_len(20)
        assert!(region.store_word(0, tail + need));
        let at = data + tail as usize;
        let payload = at + 8..at + need as usize;
        let header = MpscHeader {
            len: MpscHeader::claimed_len(20),
            kind: MPSC_MSG,
            slot: 1,
            incarnation: 1,
        }
        .encode();
        let after = Rc::new(std::cell::RefCell::new(Vec::new()));
        let (seen, r) = (after.clone(), region.clone());
        let mut struck = false;
        let out = adversary::with_hook(
            move |rd: &Read| {
                let off = rd.addr.wrapping_sub(base);
                if struck {
                    if rd.value.is_none() {
                        seen.borrow_mut().push(off);
                    }
                } else if off == intent && rd.value.is_none() {
                    // The pass read the header as 0 and `tail`, and is about to
                    // look at the intents: the producer writes its header,
                    // withdraws its intent and copies its payload.
                    r.store_word(at, header);
                    r.store_word(intent, 0); // NO_CLAIM
                    for w in (at + 8..at + need as usize).step_by(8) {
                        r.store_word(w, 0x5a5a_5a5a_5a5a_5a5a);
                    }
                    struck = true;
                }
            },
            || s.rx.recv_timeout(Duration::ZERO).map(|g| g.len()),
        );
        let after = after.borrow();
        assert!(
            !after.is_empty(),
            "the pass never read the header at head ({out:?})"
        );
        assert!(
            after.iter().all(|o| !payload.contains(o)),
            "read the live claim's payload: offsets {after:?}, payload {payload:?} ({out:?})"
        );
        assert_eq!(s.rx.reclaimed(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// HP-04 flipper at random, through the FZ-05 simulation: random programs,
        /// the peer striking before a random share of the reads.
        #[test]
        fn random_strikes_give_valid_frames_or_errors(
            head in proptest::collection::vec(any::<u8>(), 3..30),
            stream in proptest::collection::vec(
                prop_oneof![3 => 0u8..0x80, 1 => 0x80u8..=0xff, 1 => any::<u8>()], 0..3000),
        ) {
            let mut input = head;
            input.extend(stream);
            let r = sim::run(&input);
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }

    /// The committed seeds of the fuzz target run clean.
    #[test]
    fn fuzz_seeds_run_clean() {
        for (name, input) in sim::seeds() {
            sim::run(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
