//! Frames: the 8-byte headers that delimit messages in a byte ring, as pure
//! encode/decode functions with every check a consumer makes.
//!
//! A frame is an 8-byte header followed by the payload, padded to 8 bytes, so
//! every header is 8-aligned and every message is contiguous. A frame that would
//! cross the end of the data area is preceded by a padding frame that fills the
//! rest of the area, and starts at offset 0.
//!
//! A header word of 0 means "nothing written here yet": a committed header is
//! never 0, because its kind is never 0.
//!
//! ```text
//! SPSC header (u64, little-endian):  bits 0..32 payload length, bits 32..64 tag
//! MPSC header (u64, little-endian):  bits 0..32 length as i32 (claimed, not
//!                                    committed: -(length) - 1), 32..40 kind,
//!                                    40..48 producer slot, 48..64 producer
//!                                    incarnation (low 16 bits)
//! broadcast header (u64):            bits 0..30 payload length (message) or
//!                                    bytes after the header (padding), bit 30
//!                                    always set, bit 31 padding; 32..64 the low
//!                                    32 bits of the message's sequence number
//!                                    (padding: the next message's)
//! ```

/// Size of a frame header.
pub const HEADER_LEN: usize = 8;

/// SPSC tag of a message frame.
pub const SPSC_MSG: u32 = 0x4753_4d31;
/// SPSC tag of a padding frame.
pub const SPSC_PAD: u32 = 0x4441_5031;
/// MPSC kind of a message frame.
pub const MPSC_MSG: u8 = 0x4d;
/// MPSC kind of a padding frame.
pub const MPSC_PAD: u8 = 0x50;

/// `n` rounded up to a multiple of 8.
#[inline]
pub const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Bytes a frame with `payload` bytes takes: header plus padded payload.
#[inline]
pub const fn frame_len(payload: usize) -> usize {
    HEADER_LEN + align8(payload)
}

/// The largest payload a ring of `capacity` bytes takes: half the ring, less two
/// headers. With this bound a message always fits once the ring is empty, even
/// when it must wrap (the padding before it is then shorter than the message).
#[inline]
pub const fn max_payload(capacity: usize) -> usize {
    capacity / 2 - 2 * HEADER_LEN
}

/// A decoded SPSC header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpscFrame {
    /// Not written yet (the word is 0).
    Empty,
    /// A message of `len` payload bytes.
    Message {
        /// Payload length.
        len: usize,
    },
    /// Padding of `len` bytes after the header, up to the end of the data area.
    Padding {
        /// Bytes after the header.
        len: usize,
    },
}

impl SpscFrame {
    /// Bytes this frame takes, header included (0 for `Empty`).
    #[inline]
    pub fn size(&self) -> usize {
        match *self {
            SpscFrame::Empty => 0,
            SpscFrame::Message { len } => frame_len(len),
            SpscFrame::Padding { len } => HEADER_LEN + len,
        }
    }
}

/// Encodes an SPSC message header.
#[inline]
pub const fn spsc_message(len: usize) -> u64 {
    ((SPSC_MSG as u64) << 32) | len as u32 as u64
}

/// Encodes an SPSC padding header covering `len` bytes after it.
#[inline]
pub const fn spsc_padding(len: usize) -> u64 {
    ((SPSC_PAD as u64) << 32) | len as u32 as u64
}

/// Encodes an SPSC frame (`Empty` encodes as 0).
pub fn encode_spsc(frame: SpscFrame) -> u64 {
    match frame {
        SpscFrame::Empty => 0,
        SpscFrame::Message { len } => spsc_message(len),
        SpscFrame::Padding { len } => spsc_padding(len),
    }
}

/// Decodes and checks the SPSC header word `raw` found at offset `off` of a data
/// area of `cap` bytes.
///
/// # Errors
/// A short description of the failed check: unknown tag, a message longer than
/// [`max_payload`] or running past the end of the area, padding that does not
/// end exactly at the end of the area, or padding at offset 0 (which no producer
/// writes, and which would let a chain of paddings loop).
#[inline]
pub fn decode_spsc(raw: u64, off: usize, cap: usize) -> Result<SpscFrame, &'static str> {
    if raw == 0 {
        return Ok(SpscFrame::Empty);
    }
    let len = (raw as u32) as usize;
    match (raw >> 32) as u32 {
        SPSC_MSG => {
            if len > max_payload(cap) {
                return Err("message length exceeds the ring's maximum");
            }
            if off + frame_len(len) > cap {
                return Err("message runs past the end of the data area");
            }
            Ok(SpscFrame::Message { len })
        }
        SPSC_PAD => {
            if off == 0 {
                return Err("padding at offset 0");
            }
            if !len.is_multiple_of(8) || off + HEADER_LEN + len != cap {
                return Err("padding does not end at the end of the data area");
            }
            Ok(SpscFrame::Padding { len })
        }
        _ => Err("unknown frame tag"),
    }
}

/// A decoded MPSC header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpscHeader {
    /// Committed: the payload length (message) or the bytes after the header
    /// (padding). Claimed, while a producer is still writing the message:
    /// `-(payload length) - 1`, so that even an empty message's claim is negative
    /// (found by the ops-vs-model property test: with `-len`, a claimed empty
    /// message read as committed).
    pub len: i32,
    /// [`MPSC_MSG`] or [`MPSC_PAD`].
    pub kind: u8,
    /// Producer slot that claimed the frame.
    pub slot: u8,
    /// Low 16 bits of that producer's incarnation.
    pub incarnation: u16,
}

impl MpscHeader {
    /// The `len` field of a claimed (not yet committed) message of `payload` bytes.
    #[inline]
    pub const fn claimed_len(payload: usize) -> i32 {
        -(payload as i32) - 1
    }

    /// The payload length (message) or padding length, whether claimed or committed.
    #[inline]
    pub const fn payload_len(&self) -> usize {
        if self.len < 0 {
            (-(self.len as i64) - 1) as usize
        } else {
            self.len as usize
        }
    }

    /// Encodes the header.
    #[inline]
    pub const fn encode(&self) -> u64 {
        (self.len as u32 as u64)
            | ((self.kind as u64) << 32)
            | ((self.slot as u64) << 40)
            | ((self.incarnation as u64) << 48)
    }

    /// Splits a header word into its fields (no checks).
    #[inline]
    pub const fn from_raw(raw: u64) -> MpscHeader {
        MpscHeader {
            len: raw as u32 as i32,
            kind: (raw >> 32) as u8,
            slot: (raw >> 40) as u8,
            incarnation: (raw >> 48) as u16,
        }
    }

    /// Bytes the frame takes once committed, header included.
    #[inline]
    pub fn size(&self) -> usize {
        let len = self.payload_len();
        if self.kind == MPSC_PAD {
            HEADER_LEN + len
        } else {
            frame_len(len)
        }
    }
}

/// Checks an MPSC header word found at offset `off` of a data area of `cap`
/// bytes in a ring with `slots` producer slots. `Ok(None)` for 0 (not written).
///
/// # Errors
/// A short description of the failed check: unknown kind, slot out of range,
/// a length over [`max_payload`] (messages) or not 8-aligned (padding), a frame
/// running past the end of the area, or a negative padding length.
#[inline]
pub fn decode_mpsc(
    raw: u64,
    off: usize,
    cap: usize,
    slots: u16,
) -> Result<Option<MpscHeader>, &'static str> {
    if raw == 0 {
        return Ok(None);
    }
    let h = MpscHeader::from_raw(raw);
    if u16::from(h.slot) >= slots {
        return Err("producer slot out of range");
    }
    let len = h.payload_len();
    match h.kind {
        MPSC_MSG => {
            if len > max_payload(cap) {
                return Err("message length exceeds the ring's maximum");
            }
        }
        MPSC_PAD => {
            if h.len < 0 {
                return Err("padding is never uncommitted");
            }
            if !len.is_multiple_of(8) {
                return Err("padding length not 8-aligned");
            }
        }
        _ => return Err("unknown frame kind"),
    }
    if off + h.size() > cap {
        return Err("frame runs past the end of the data area");
    }
    Ok(Some(h))
}

/// Broadcast header bit that every written header has (so a word of zeros
/// is never a header).
const BROADCAST_WRITTEN: u32 = 1 << 30;
/// Broadcast header bit of a padding frame.
const BROADCAST_PAD: u32 = 1 << 31;

/// A decoded broadcast header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BroadcastFrame {
    /// Payload length (message), or bytes after the header (padding).
    pub len: usize,
    /// Whether this is padding up to the end of the data area.
    pub padding: bool,
    /// Low 32 bits of the message's sequence number (padding: of the message
    /// after it).
    pub seq: u32,
}

impl BroadcastFrame {
    /// Encodes the header.
    #[inline]
    pub const fn encode(&self) -> u64 {
        let flags = if self.padding {
            BROADCAST_WRITTEN | BROADCAST_PAD
        } else {
            BROADCAST_WRITTEN
        };
        ((self.seq as u64) << 32) | (self.len as u32 | flags) as u64
    }

    /// Bytes the frame takes, header included.
    #[inline]
    pub const fn size(&self) -> usize {
        if self.padding {
            HEADER_LEN + self.len
        } else {
            frame_len(self.len)
        }
    }
}

/// Checks a broadcast header word found at offset `off` of a data area of
/// `cap` bytes (at most 2 GiB, so that a length fits in 30 bits).
///
/// # Errors
/// A short description of the failed check: a word that is not a header, a
/// message longer than [`max_payload`] or running past the end of the area,
/// padding at offset 0 or not ending exactly at the end of the area.
#[inline]
pub fn decode_broadcast(raw: u64, off: usize, cap: usize) -> Result<BroadcastFrame, &'static str> {
    let low = raw as u32;
    if low & BROADCAST_WRITTEN == 0 {
        return Err("not a frame header");
    }
    let f = BroadcastFrame {
        len: (low & !(BROADCAST_WRITTEN | BROADCAST_PAD)) as usize,
        padding: low & BROADCAST_PAD != 0,
        seq: (raw >> 32) as u32,
    };
    if f.padding {
        if off == 0 {
            return Err("padding at offset 0");
        }
        if !f.len.is_multiple_of(8) || off + HEADER_LEN + f.len != cap {
            return Err("padding does not end at the end of the data area");
        }
    } else {
        if f.len > max_payload(cap) {
            return Err("message length exceeds the ring's maximum");
        }
        if off + frame_len(f.len) > cap {
            return Err("message runs past the end of the data area");
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn broadcast_headers_round_trip_and_are_checked() {
        let cap = 1024;
        let m = BroadcastFrame {
            len: 5,
            padding: false,
            seq: u32::MAX,
        };
        assert_eq!(decode_broadcast(m.encode(), 0, cap), Ok(m));
        assert_eq!(m.size(), 16);
        let p = BroadcastFrame {
            len: 16,
            padding: true,
            seq: 7,
        };
        assert_eq!(decode_broadcast(p.encode(), cap - 24, cap), Ok(p));
        assert_eq!(p.size(), 24);
        assert!(decode_broadcast(0, 0, cap).is_err());
        assert!(decode_broadcast(p.encode(), 0, cap).is_err());
        assert!(decode_broadcast(p.encode(), cap - 32, cap).is_err());
        let big = BroadcastFrame {
            len: max_payload(cap) + 1,
            ..m
        };
        assert!(decode_broadcast(big.encode(), 0, cap).is_err());
        assert!(decode_broadcast(m.encode(), cap - 8, cap).is_err());
    }

    proptest! {
        /// Whatever a peer writes, decoding never panics, and what it accepts
        /// lies inside the data area.
        #[test]
        fn broadcast_decoding_accepts_only_frames_inside_the_area(raw: u64, off in 0usize..128) {
            let (cap, off) = (1024, off * 8);
            if let Ok(f) = decode_broadcast(raw, off, cap) {
                prop_assert!(off + f.size() <= cap);
                prop_assert_eq!(decode_broadcast(f.encode(), off, cap), Ok(f));
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(frame_len(0), 8);
        assert_eq!(frame_len(1), 16);
        assert_eq!(frame_len(8), 16);
        assert_eq!(frame_len(9), 24);
        assert_eq!(max_payload(64), 16);
        assert_eq!(max_payload(1 << 20), (1 << 19) - 16);
    }

    #[test]
    fn spsc_checks() {
        let cap = 256;
        // Each header, at the given offset, decodes to the frame.
        let accepted = [
            (0, 0, SpscFrame::Empty),
            (spsc_message(5), 0, SpscFrame::Message { len: 5 }),
            (spsc_message(0), 248, SpscFrame::Message { len: 0 }),
            (spsc_padding(8), 240, SpscFrame::Padding { len: 8 }),
            (spsc_padding(0), 248, SpscFrame::Padding { len: 0 }),
        ];
        for (raw, at, frame) in accepted {
            assert_eq!(decode_spsc(raw, at, cap), Ok(frame), "{raw:#x} at {at}");
        }
        // Each header, at the given offset, fails its check.
        let refused = [
            (spsc_message(8), 248, "runs past the end"),
            (spsc_message(max_payload(cap) + 1), 0, "over the maximum"),
            (spsc_padding(16), 240, "past the end"),
            (spsc_padding(0), 240, "short of the end"),
            (spsc_padding(248), 0, "at offset 0"),
            (0x1234_0000_0000_0005, 0, "bad tag"),
        ];
        for (raw, at, what) in refused {
            assert!(decode_spsc(raw, at, cap).is_err(), "{what}");
        }
    }

    #[test]
    fn mpsc_checks() {
        let cap = 256;
        let m = MpscHeader {
            len: 5,
            kind: MPSC_MSG,
            slot: 1,
            incarnation: 7,
        };
        assert_eq!(decode_mpsc(m.encode(), 0, cap, 2), Ok(Some(m)));
        assert!(
            decode_mpsc(m.encode(), 0, cap, 1).is_err(),
            "slot out of range"
        );
        let claimed = MpscHeader { len: -5, ..m };
        assert_eq!(decode_mpsc(claimed.encode(), 0, cap, 2), Ok(Some(claimed)));
        // A claim of the largest message is -(max) - 1, one beyond max in magnitude
        // (the frame_decoder fuzz target's own check once forgot the - 1).
        let max = max_payload(cap);
        let claimed_max = MpscHeader {
            len: MpscHeader::claimed_len(max),
            ..m
        };
        let decoded = decode_mpsc(claimed_max.encode(), 0, cap, 2)
            .unwrap()
            .unwrap();
        assert_eq!(decoded.payload_len(), max);
        // Each header, at the given offset, fails its check.
        let refused = [
            (
                MpscHeader::claimed_len(max + 1),
                MPSC_MSG,
                0,
                "a claim one byte over the maximum",
            ),
            (-8, MPSC_PAD, 0, "a claimed padding frame"),
            (12, MPSC_PAD, 0, "padding short of the end of the area"),
            (9, MPSC_MSG, 240, "a message past the end of the area"),
        ];
        for (len, kind, at, what) in refused {
            let h = MpscHeader { len, kind, ..m };
            assert!(decode_mpsc(h.encode(), at, cap, 2).is_err(), "{what}");
        }
        assert!(decode_mpsc(MpscHeader { kind: 3, ..m }.encode(), 0, cap, 2).is_err());
        assert!(decode_mpsc(MpscHeader { len: i32::MIN, ..m }.encode(), 0, cap, 2).is_err());
        assert_eq!(decode_mpsc(0, 0, cap, 2), Ok(None));
    }

    proptest! {
        #[test]
        fn spsc_decode_is_total_and_round_trips(raw: u64, off in (0usize..512).prop_map(|o| o * 8), shift in 6u32..16) {
            let cap = 1usize << shift;
            let off = off % cap;
            if let Ok(frame) = decode_spsc(raw, off, cap) {
                prop_assert_eq!(encode_spsc(frame), raw);
                prop_assert!(off + frame.size() <= cap);
            }
        }

        #[test]
        fn mpsc_decode_is_total_and_round_trips(raw: u64, off in (0usize..512).prop_map(|o| o * 8), shift in 6u32..16, slots in 1u16..256) {
            let cap = 1usize << shift;
            let off = off % cap;
            if let Ok(Some(h)) = decode_mpsc(raw, off, cap, slots) {
                prop_assert_eq!(h.encode(), raw);
                prop_assert!(off + h.size() <= cap);
            }
        }
    }
}
