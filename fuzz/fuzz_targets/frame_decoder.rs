//! FZ-03: an arbitrary header word at an arbitrary offset of an arbitrary area
//! (format: `shmq_fuzz::FrameInput`) through the three frame decoders: `Ok` or `Err`,
//! never a panic; whatever decodes re-encodes to the same word and lies inside the
//! area; a message is never longer than the ring's maximum. The broadcast
//! decoder too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmq_fuzz::FrameInput;
use shmq_ring::frame::{
    self, HEADER_LEN, MPSC_MSG, MPSC_PAD, SpscFrame, decode_broadcast, decode_mpsc, decode_spsc,
    encode_spsc,
};

fuzz_target!(|data: &[u8]| {
    let Some(FrameInput {
        raw,
        off,
        cap,
        slots,
    }) = FrameInput::parse(data)
    else {
        return;
    };
    if let Ok(f) = decode_spsc(raw, off, cap) {
        assert_eq!(encode_spsc(f), raw, "{f:?}");
        assert!(off + f.size() <= cap, "{f:?} at {off} leaves {cap}");
        match f {
            SpscFrame::Empty => assert_eq!(raw, 0),
            SpscFrame::Message { len } => assert!(len <= frame::max_payload(cap)),
            SpscFrame::Padding { len } => {
                assert!(off > 0 && off + HEADER_LEN + len == cap, "{f:?} at {off}");
            }
        }
    }
    if let Ok(f) = decode_broadcast(raw, off, cap) {
        assert_eq!(f.encode(), raw, "{f:?}");
        assert!(off + f.size() <= cap, "{f:?} at {off} leaves {cap}");
        if f.padding {
            assert!(off > 0 && off + HEADER_LEN + f.len == cap, "{f:?} at {off}");
        } else {
            assert!(f.len <= frame::max_payload(cap), "{f:?}");
        }
    }
    if let Ok(h) = decode_mpsc(raw, off, cap, slots) {
        match h {
            None => assert_eq!(raw, 0),
            Some(h) => {
                assert_eq!(h.encode(), raw, "{h:?}");
                assert!(off + h.size() <= cap, "{h:?} at {off} leaves {cap}");
                assert!(u16::from(h.slot) < slots);
                assert!(h.kind == MPSC_MSG || (h.kind == MPSC_PAD && h.len >= 0));
                if h.kind == MPSC_MSG {
                    assert!(h.payload_len() <= frame::max_payload(cap), "{h:?}");
                }
            }
        }
    }
});
