//! The catalogue's message format (rule R4), with the incarnation that the
//! examples' [`crate::msg`] format lacks, a send time for latency, and a checksum:
//!
//! ```text
//! 0            4              8         16        20        24          32         len-8
//! | producer u32 | incarnation u32 | seq u64 | len u32 | 0 u32 | sent_ns u64 | payload | hash u64 |
//! ```
//! The payload is derived from the other fields and the hash covers everything
//! before it, so a record is verified whole. [`RecordVerifier`] checks a stream
//! of records.

use std::collections::BTreeMap;

/// Smallest record: the fields and the hash, no payload.
pub const MIN_SIZE: usize = 40;

/// The fields of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Producer id.
    pub producer: u32,
    /// Which (re)start of that producer sent it.
    pub incarnation: u32,
    /// Sequence number within the incarnation, from 0.
    pub seq: u64,
    /// `mono_ns()` when it was sent.
    pub sent_ns: u64,
}

fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// Hash of `bytes` (whole words, then the tail).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap()));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(mix(h, u64::from_le_bytes(tail)), 0x5851_F42D_4C95_7F2D)
}

fn payload_word(r: &Rec, i: usize) -> u64 {
    (r.seq ^ (u64::from(r.producer) << 40) ^ (u64::from(r.incarnation) << 20))
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add(i as u64)
}

/// Writes record `r` over all of `buf` (at least [`MIN_SIZE`] bytes).
pub fn fill(buf: &mut [u8], r: &Rec) {
    let len = buf.len();
    assert!(len >= MIN_SIZE, "a record needs {MIN_SIZE} bytes");
    buf[0..4].copy_from_slice(&r.producer.to_le_bytes());
    buf[4..8].copy_from_slice(&r.incarnation.to_le_bytes());
    buf[8..16].copy_from_slice(&r.seq.to_le_bytes());
    buf[16..20].copy_from_slice(&(len as u32).to_le_bytes());
    buf[20..24].copy_from_slice(&0u32.to_le_bytes());
    buf[24..32].copy_from_slice(&r.sent_ns.to_le_bytes());
    let body = &mut buf[32..len - 8];
    for (i, c) in body.chunks_mut(8).enumerate() {
        let w = payload_word(r, i).to_le_bytes();
        c.copy_from_slice(&w[..c.len()]);
    }
    let h = hash(&buf[..len - 8]);
    buf[len - 8..].copy_from_slice(&h.to_le_bytes());
}

/// Checks a received record whole: length field, hash and payload.
pub fn check(buf: &[u8]) -> Result<Rec, String> {
    let len = buf.len();
    if len < MIN_SIZE {
        return Err(format!("record of {len} bytes is shorter than {MIN_SIZE}"));
    }
    let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
    let r = Rec {
        producer: u32_at(0),
        incarnation: u32_at(4),
        seq: u64_at(8),
        sent_ns: u64_at(24),
    };
    if u32_at(16) as usize != len || u32_at(20) != 0 {
        return Err(format!(
            "{r:?}: length field {} for {len} bytes",
            u32_at(16)
        ));
    }
    if hash(&buf[..len - 8]) != u64_at(len - 8) {
        return Err(format!("{r:?}: checksum mismatch"));
    }
    for (i, c) in buf[32..len - 8].chunks(8).enumerate() {
        let w = payload_word(&r, i).to_le_bytes();
        if c != &w[..c.len()] {
            return Err(format!("{r:?}: payload word {i} is wrong"));
        }
    }
    Ok(r)
}

/// Checks a stream of records: every checksum; per (producer, incarnation)
/// sequence numbers from 0 with no gap and no duplicate; and per producer, no
/// record of an incarnation after the first record of a later one.
#[derive(Default, Debug)]
pub struct RecordVerifier {
    next: BTreeMap<(u32, u32), u64>,
    latest: BTreeMap<u32, u32>,
    /// Records taken.
    pub total: u64,
    /// Bytes taken.
    pub bytes: u64,
}

impl RecordVerifier {
    /// A verifier that has seen nothing.
    pub fn new() -> RecordVerifier {
        RecordVerifier::default()
    }

    /// Checks one record; `Err` describes the first problem.
    pub fn check(&mut self, buf: &[u8]) -> Result<Rec, String> {
        let r = check(buf)?;
        let latest = self.latest.entry(r.producer).or_insert(r.incarnation);
        if r.incarnation < *latest {
            return Err(format!(
                "producer {}: a record of incarnation {} after one of incarnation {}",
                r.producer, r.incarnation, *latest
            ));
        }
        *latest = r.incarnation;
        let next = self.next.entry((r.producer, r.incarnation)).or_insert(0);
        let who = format_args!("producer {} incarnation {}", r.producer, r.incarnation);
        crate::in_sequence(next, r.seq, who, "record")?;
        self.total += 1;
        self.bytes += buf.len() as u64;
        Ok(r)
    }

    /// As [`RecordVerifier::check`], panicking on a problem.
    pub fn take(&mut self, buf: &[u8]) -> Rec {
        self.check(buf)
            .unwrap_or_else(|e| panic!("verification failed: {e}"))
    }

    /// Records received from `producer`'s incarnation `incarnation`.
    pub fn count(&self, producer: u32, incarnation: u32) -> u64 {
        self.next
            .get(&(producer, incarnation))
            .copied()
            .unwrap_or(0)
    }

    /// Records received from every incarnation of `producer`.
    pub fn producer_total(&self, producer: u32) -> u64 {
        self.next
            .iter()
            .filter(|((p, _), _)| *p == producer)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Receives with `recv` (into one reused buffer) until it fails, checking every
/// message with a new [`RecordVerifier`]; returns the verifier and the error that
/// ended the stream.
pub fn drain<E>(recv: impl FnMut(&mut Vec<u8>) -> Result<(), E>) -> (RecordVerifier, E) {
    crate::drain_with(
        RecordVerifier::new(),
        |v, b| {
            v.take(b);
        },
        recv,
    )
}
