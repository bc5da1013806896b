//! The test message format shared by the example programs and the tests, with
//! [`Verifier`], which checks a stream of such messages.
//!
//! ```text
//! 0       8          12         16
//! | seq u64 | producer u32 | len u32 | payload: byte i = f(seq, producer, i) |
//! ```
//! Messages are at least 16 bytes. Every byte is derived from the sequence number
//! and producer id, so a consumer can verify a message completely.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The declared message type of the typed-channel tests: 16 bytes, align 8,
/// named `shmq.test.Stamp` at version 3 (what `shmq ls`, `inspect` and `peek`
/// show for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, shmq::bytemuck::Pod, shmq::bytemuck::Zeroable)]
#[bytemuck(crate = "shmq::bytemuck")]
#[repr(C)]
pub struct Stamp {
    /// A sequence number.
    pub seq: u64,
    /// Who sent it (a producer's number).
    pub from: u64,
}

impl shmq::Message for Stamp {
    const NAME: &'static str = "shmq.test.Stamp";
    const VERSION: u32 = 3;
}

/// Smallest message: the 16-byte header.
pub const MIN_SIZE: usize = 16;

/// MPSC channels made by the example producer and consumer have this many
/// producer slots (both must agree, or the second to open sees a layout mismatch).
pub const EXAMPLE_PRODUCERS: u16 = 64;

/// Payload byte `i` of message `seq` from `producer`.
#[inline]
pub fn byte(seq: u64, producer: u32, i: usize) -> u8 {
    (seq.wrapping_mul(31) ^ u64::from(producer).wrapping_mul(0x9e37) ^ (i as u64).wrapping_mul(7))
        as u8
}

/// Writes message `seq` of `producer` into `buf` (its whole length).
pub fn fill(buf: &mut [u8], seq: u64, producer: u32) {
    let len = buf.len() as u32;
    buf[0..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&producer.to_le_bytes());
    buf[12..16].copy_from_slice(&len.to_le_bytes());
    for (i, b) in buf[MIN_SIZE..].iter_mut().enumerate() {
        *b = byte(seq, producer, i);
    }
}

/// A decoded, verified message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Sequence number.
    pub seq: u64,
    /// Producer id.
    pub producer: u32,
}

/// Checks a received message: its length field and every payload byte.
pub fn check(buf: &[u8]) -> Result<Header, String> {
    if buf.len() < MIN_SIZE {
        return Err(format!(
            "message of {} bytes is shorter than {MIN_SIZE}",
            buf.len()
        ));
    }
    let seq = u64::from_le_bytes(buf[0..8].try_into().unwrap());
    let producer = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    let len = u32::from_le_bytes(buf[12..16].try_into().unwrap()) as usize;
    if len != buf.len() {
        return Err(format!(
            "message {seq} of producer {producer}: length field {len}, actual {}",
            buf.len()
        ));
    }
    if let Some(i) = buf[MIN_SIZE..]
        .iter()
        .enumerate()
        .position(|(i, &b)| b != byte(seq, producer, i))
    {
        return Err(format!(
            "message {seq} of producer {producer}: payload byte {i} is wrong"
        ));
    }
    Ok(Header { seq, producer })
}

/// Checks a stream of messages of this format: every byte, and per producer strictly
/// increasing sequence numbers with no gap and no duplicate.
#[derive(Default, Debug)]
pub struct Verifier {
    next: BTreeMap<u32, u64>,
    /// Messages taken.
    pub total: u64,
}

impl Verifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Checks one message; `Err` describes the first problem.
    pub fn check(&mut self, buf: &[u8]) -> Result<Header, String> {
        let h = check(buf)?;
        let next = self.next.entry(h.producer).or_insert(0);
        crate::in_sequence(
            next,
            h.seq,
            format_args!("producer {}", h.producer),
            "message",
        )?;
        self.total += 1;
        Ok(h)
    }

    /// As [`Verifier::check`], panicking on a problem.
    pub fn take(&mut self, buf: &[u8]) -> Header {
        self.check(buf)
            .unwrap_or_else(|e| panic!("verification failed: {e}"))
    }

    /// Receives `n` messages with `recv` into `buf` and takes each (panics on
    /// a receive error or a bad message).
    pub fn take_n<E: std::fmt::Debug>(
        &mut self,
        n: u64,
        buf: &mut Vec<u8>,
        mut recv: impl FnMut(&mut Vec<u8>) -> Result<(), E>,
    ) {
        for k in 0..n {
            recv(buf).unwrap_or_else(|e| panic!("message {k} of {n}: {e:?}"));
            self.take(buf);
        }
    }

    /// Receives with `recv` into `buf` until it fails, checking every message
    /// (panics with `context` on a bad one); returns the error that ended the
    /// stream.
    pub fn take_until<E>(
        &mut self,
        buf: &mut Vec<u8>,
        context: &str,
        mut recv: impl FnMut(&mut Vec<u8>) -> Result<(), E>,
    ) -> E {
        loop {
            if let Err(e) = recv(buf) {
                return e;
            }
            self.check(buf).unwrap_or_else(|e| panic!("{context}: {e}"));
        }
    }

    /// Messages received from `producer`.
    pub fn count(&self, producer: u32) -> u64 {
        self.next.get(&producer).copied().unwrap_or(0)
    }

    /// Per-producer counts, as JSON.
    pub fn counts(&self) -> Value {
        let m: serde_json::Map<String, Value> = self
            .next
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Value::Object(m)
    }
}

/// A message of `size` bytes: message `seq` of `producer`.
pub fn message(seq: u64, producer: u32, size: usize) -> Vec<u8> {
    let mut v = vec![0; size];
    fill(&mut v, seq, producer);
    v
}

/// Receives with `recv` (into one reused buffer) until it fails, checking every
/// message with a new [`Verifier`]; returns the verifier and the error that
/// ended the stream.
pub fn drain<E>(recv: impl FnMut(&mut Vec<u8>) -> Result<(), E>) -> (Verifier, E) {
    crate::drain_with(
        Verifier::new(),
        |v, b| {
            v.take(b);
        },
        recv,
    )
}
