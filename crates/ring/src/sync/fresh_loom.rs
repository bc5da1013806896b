//! Fresh control blocks under loom, where they live on the heap instead of being
//! zero bytes in shared memory.

use crate::ctl::{
    BroadcastControl, ConsumerLine, EndState, Ends, Line, MpscControl, NO_CLAIM, ProducerSlot,
    PublisherLine, SpscControl, SubscriberSlot, WakeLine,
};
use crate::sync::{AtomicU32, AtomicU64, Fresh, FutexWord};

fn end() -> EndState {
    EndState {
        state: AtomicU32::new(0),
        incarnation: AtomicU32::new(0),
    }
}

fn wake() -> WakeLine {
    WakeLine {
        data_seq: FutexWord::new(0),
        consumer_waiting: AtomicU32::new(0),
        space_seq: FutexWord::new(0),
        producers_waiting: AtomicU32::new(0),
        bell: AtomicU64::new(0),
        fences: AtomicU32::new(0),
    }
}

fn consumer_line() -> ConsumerLine {
    ConsumerLine {
        pos: AtomicU64::new(0),
        received: AtomicU64::new(0),
        releasing: AtomicU64::new(0),
    }
}

fn ends() -> Ends {
    Ends {
        epoch: AtomicU32::new(0),
        _reserved: AtomicU32::new(0),
        consumer: end(),
        producer: end(),
    }
}

/// `Fresh` for the SPSC and MPSC control blocks, which have the same lines
/// (an MPSC ring's producer slots follow its block).
macro_rules! fresh_one_consumer_control {
    ($($control:ident),*) => {$(
        impl Fresh for $control {
            fn fresh() -> Self {
                $control {
                    tail: Line(AtomicU64::new(0)),
                    head: Line(consumer_line()),
                    wake: Line(wake()),
                    ends: Line(ends()),
                }
            }
        }
    )*};
}

fresh_one_consumer_control!(SpscControl, MpscControl);

impl Fresh for Line<ProducerSlot> {
    fn fresh() -> Self {
        Line(ProducerSlot {
            end: end(),
            claim: AtomicU64::new(NO_CLAIM),
            since: AtomicU64::new(0),
        })
    }
}

impl Fresh for BroadcastControl {
    fn fresh() -> Self {
        BroadcastControl {
            publisher: Line(PublisherLine {
                tail: AtomicU64::new(0),
                count: AtomicU64::new(0),
                intent: AtomicU64::new(0),
                oldest: AtomicU64::new(0),
                need: AtomicU64::new(0),
            }),
            _spare: Line(AtomicU64::new(0)),
            wake: Line(wake()),
            ends: Line(ends()),
        }
    }
}

impl Fresh for Line<SubscriberSlot> {
    fn fresh() -> Self {
        Line(SubscriberSlot {
            end: end(),
            mode: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            pos: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
        })
    }
}
