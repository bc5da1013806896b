//! The segment header: the first 64 bytes of every segment, and the endpoint table
//! that follows it.
//!
//! ```text
//! 0      64     128                      data_offset                 total_len
//! +------+------+------------------------+---------------------------+
//! |header| rsvd | endpoint table (16 B/e) | region owned by the user  |
//! +------+------+------------------------+---------------------------+
//! ```
//!
//! The creator writes every field, then stores [`STATE_READY`] into `state` with
//! `Release`; an opener loads `state` with `Acquire` and only then reads the rest.
//! Every field is an atomic, because an opener may read the header while a
//! (possibly hostile) creator is still writing it: a torn read is then a wrong
//! value, which validation rejects, never undefined behaviour.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// First eight bytes of every shmq segment (`"SHMQ-SEG"` in little-endian order).
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQ-SEG");
/// Layout version this build writes and accepts.
pub const VERSION: u32 = 1;
/// Size of the header proper.
pub const HEADER_LEN: u64 = 64;
/// Offset of the endpoint table.
pub const ENDPOINT_TABLE_OFFSET: u64 = 128;
/// Size of one endpoint record.
pub const ENDPOINT_RECORD_LEN: u64 = 16;
/// Most endpoints a segment may declare.
pub const MAX_ENDPOINTS: u16 = 1024;
/// Alignment of the user region (two cache lines, as `CachePadded` on x86_64).
pub const DATA_ALIGN: u64 = 128;
/// `state` while the creator is still writing the header.
pub const STATE_INIT: u32 = 0;
/// `state` once the header is complete.
pub const STATE_READY: u32 = 0x5244_5921;

/// The header as it lies in shared memory. Only ever reached through a
/// reference made by `map.rs`, and only ever read or written through atomics.
#[repr(C)]
pub(crate) struct RawHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) state: AtomicU32,
    pub(crate) kind: AtomicU16,
    pub(crate) endpoints: AtomicU16,
    pub(crate) creator_pid: AtomicU32,
    pub(crate) total_len: AtomicU64,
    pub(crate) data_offset: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) slot_size: AtomicU32,
    pub(crate) slot_align: AtomicU32,
    pub(crate) type_hash: AtomicU64,
}

const _: () = {
    assert!(size_of::<RawHeader>() as u64 == HEADER_LEN);
    assert!(offset_of!(RawHeader, magic) == 0);
    assert!(offset_of!(RawHeader, version) == 8);
    assert!(offset_of!(RawHeader, state) == 12);
    assert!(offset_of!(RawHeader, kind) == 16);
    assert!(offset_of!(RawHeader, endpoints) == 18);
    assert!(offset_of!(RawHeader, creator_pid) == 20);
    assert!(offset_of!(RawHeader, total_len) == 24);
    assert!(offset_of!(RawHeader, data_offset) == 32);
    assert!(offset_of!(RawHeader, capacity) == 40);
    assert!(offset_of!(RawHeader, slot_size) == 48);
    assert!(offset_of!(RawHeader, slot_align) == 52);
    assert!(offset_of!(RawHeader, type_hash) == 56);
};

/// One endpoint's record: who holds it, for display. Whether it is alive is
/// decided by its lock, never by these numbers (a pid can be reused).
#[repr(C)]
pub(crate) struct EndpointRecord {
    pub(crate) pid: AtomicU32,
    pub(crate) attaches: AtomicU32,
    pub(crate) reserved: AtomicU64,
}

const _: () = assert!(size_of::<EndpointRecord>() as u64 == ENDPOINT_RECORD_LEN);

/// What a creator puts in the header: the shape of the region it will build.
///
/// `kind`, `capacity`, `slot_size`, `slot_align` and `type_hash` mean nothing to
/// this crate; it stores them and checks them against an opener's [`Expect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Layout {
    /// What lives in the region (the ring crate's kind code). Must not be 0.
    pub kind: u16,
    /// How many endpoint liveness markers the segment has.
    pub endpoints: u16,
    /// Bytes the user region needs.
    pub data_len: u64,
    /// The region's capacity, in the user's units.
    pub capacity: u64,
    /// Size of one element for typed regions, 0 otherwise.
    pub slot_size: u32,
    /// Alignment of one element for typed regions, 0 otherwise.
    pub slot_align: u32,
    /// A hash identifying the element type, 0 for untyped regions.
    pub type_hash: u64,
}

impl Layout {
    /// Offset of the user region for a segment with `endpoints` endpoints.
    pub const fn data_offset_for(endpoints: u16) -> u64 {
        let end = ENDPOINT_TABLE_OFFSET + endpoints as u64 * ENDPOINT_RECORD_LEN;
        end.div_ceil(DATA_ALIGN) * DATA_ALIGN
    }

    /// Offset of the user region.
    pub const fn data_offset(&self) -> u64 {
        Self::data_offset_for(self.endpoints)
    }

    /// Total segment length: header, endpoint table and region, rounded up to a page.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the layout is unusable (kind 0, too many
    /// endpoints, empty or overflowing region).
    pub fn total_len(&self) -> Result<u64> {
        if self.kind == 0 {
            return Err(Error::InvalidArgument {
                what: "layout kind must not be 0",
            });
        }
        if self.endpoints > MAX_ENDPOINTS {
            return Err(Error::InvalidArgument {
                what: "more than MAX_ENDPOINTS endpoints",
            });
        }
        if self.data_len == 0 {
            return Err(Error::InvalidArgument {
                what: "layout data_len must not be 0",
            });
        }
        let page = page_size();
        self.data_offset()
            .checked_add(self.data_len)
            .and_then(|n| n.checked_next_multiple_of(page))
            .ok_or(Error::InvalidArgument {
                what: "segment length overflows",
            })
    }
}

/// What an opener requires of a segment's header. `None` accepts any value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Expect {
    /// Required region kind.
    pub kind: Option<u16>,
    /// Required number of endpoints.
    pub endpoints: Option<u16>,
    /// Required capacity.
    pub capacity: Option<u64>,
    /// Required element size.
    pub slot_size: Option<u32>,
    /// Required element alignment.
    pub slot_align: Option<u32>,
    /// Required element type hash.
    pub type_hash: Option<u64>,
}

/// A plain copy of a segment header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HeaderInfo {
    /// Magic number ([`MAGIC`] for a shmq segment).
    pub magic: u64,
    /// Layout version.
    pub version: u32,
    /// Publication state ([`STATE_INIT`] or [`STATE_READY`]).
    pub state: u32,
    /// Region kind.
    pub kind: u16,
    /// Number of endpoints.
    pub endpoints: u16,
    /// Process id of the creator (for display only).
    pub creator_pid: u32,
    /// Total length of the segment.
    pub total_len: u64,
    /// Offset of the user region.
    pub data_offset: u64,
    /// Capacity in the user's units.
    pub capacity: u64,
    /// Element size (typed regions).
    pub slot_size: u32,
    /// Element alignment (typed regions).
    pub slot_align: u32,
    /// Element type hash (typed regions).
    pub type_hash: u64,
}

impl HeaderInfo {
    /// Decodes the first [`HEADER_LEN`] bytes of a segment image, or `None` if
    /// `bytes` is shorter than that.
    pub fn from_bytes(bytes: &[u8]) -> Option<HeaderInfo> {
        let b = bytes.get(..HEADER_LEN as usize)?;
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
        Some(HeaderInfo {
            magic: u64_at(0),
            version: u32_at(8),
            state: u32_at(12),
            kind: u16_at(16),
            endpoints: u16_at(18),
            creator_pid: u32_at(20),
            total_len: u64_at(24),
            data_offset: u64_at(32),
            capacity: u64_at(40),
            slot_size: u32_at(48),
            slot_align: u32_at(52),
            type_hash: u64_at(56),
        })
    }

    /// Length of the user region.
    pub fn data_len(&self) -> u64 {
        self.total_len.saturating_sub(self.data_offset)
    }

    /// The value of one field, widened to `u64`.
    pub fn value(&self, field: HeaderField) -> u64 {
        match field {
            HeaderField::Magic => self.magic,
            HeaderField::Version => self.version.into(),
            HeaderField::State => self.state.into(),
            HeaderField::Kind => self.kind.into(),
            HeaderField::Endpoints => self.endpoints.into(),
            HeaderField::CreatorPid => self.creator_pid.into(),
            HeaderField::TotalLen => self.total_len,
            HeaderField::DataOffset => self.data_offset,
            HeaderField::Capacity => self.capacity,
            HeaderField::SlotSize => self.slot_size.into(),
            HeaderField::SlotAlign => self.slot_align.into(),
            HeaderField::TypeHash => self.type_hash,
        }
    }

    /// Checks the header of a *ready* segment against the object's size and the
    /// caller's expectations. Pure logic over a snapshot: the same checks run on
    /// a live mapping and in the fuzz target.
    ///
    /// # Errors
    /// [`Error::BadMagic`], [`Error::VersionMismatch`], [`Error::Corrupt`] or
    /// [`Error::LayoutMismatch`], for the first check that fails.
    pub fn validate(&self, file_len: u64, expect: &Expect) -> Result<()> {
        match self.findings(file_len, expect).first() {
            Some(f) => Err(f.to_error()),
            None => Ok(()),
        }
    }

    /// Every check [`HeaderInfo::validate`] makes that fails, as errors, in the
    /// same order (see [`HeaderInfo::findings`] for the field-tagged form).
    pub fn problems(&self, file_len: u64, expect: &Expect) -> Vec<Error> {
        self.findings(file_len, expect)
            .iter()
            .map(HeaderFinding::to_error)
            .collect()
    }

    /// Every check [`HeaderInfo::validate`] makes that fails, in the same order,
    /// each naming its field, what was expected and what was found (for tools
    /// that name all the damage, not just the first). A header with another
    /// magic number is not checked further.
    pub fn findings(&self, file_len: u64, expect: &Expect) -> Vec<HeaderFinding> {
        use HeaderField as F;
        let mut out = Vec::new();
        let mut check = |field: HeaderField, ok: bool, expected: Expected, severity| {
            if !ok {
                out.push(HeaderFinding {
                    field,
                    expected,
                    found: self.value(field),
                    severity,
                });
            }
        };
        if self.magic != MAGIC {
            check(F::Magic, false, Expected::Value(MAGIC), Severity::Damage);
            return out;
        }
        check(
            F::Version,
            self.version == VERSION,
            Expected::Value(VERSION.into()),
            Severity::Mismatch,
        );
        let state_severity = if self.state == STATE_INIT {
            Severity::Unpublished
        } else {
            Severity::Damage
        };
        check(
            F::State,
            self.state == STATE_READY,
            Expected::Value(STATE_READY.into()),
            state_severity,
        );
        check(F::Kind, self.kind != 0, Expected::NotZero, Severity::Damage);
        check(
            F::Endpoints,
            self.endpoints <= MAX_ENDPOINTS,
            Expected::AtMost(MAX_ENDPOINTS.into()),
            Severity::Damage,
        );
        check(
            F::TotalLen,
            self.total_len == file_len,
            Expected::Value(file_len),
            Severity::Damage,
        );
        let offset = Layout::data_offset_for(self.endpoints);
        check(
            F::DataOffset,
            self.data_offset == offset,
            Expected::Value(offset),
            Severity::Damage,
        );
        check(
            F::DataOffset,
            self.data_offset < self.total_len,
            Expected::Below(self.total_len),
            Severity::Damage,
        );
        let wanted: [(HeaderField, Option<u64>); 6] = [
            (F::Kind, expect.kind.map(u64::from)),
            (F::Endpoints, expect.endpoints.map(u64::from)),
            (F::Capacity, expect.capacity),
            (F::SlotSize, expect.slot_size.map(u64::from)),
            (F::SlotAlign, expect.slot_align.map(u64::from)),
            (F::TypeHash, expect.type_hash),
        ];
        for (field, want) in wanted {
            if let Some(want) = want {
                check(
                    field,
                    self.value(field) == want,
                    Expected::Value(want),
                    Severity::Mismatch,
                );
            }
        }
        out
    }
}

/// One field of the segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderField {
    /// The magic number.
    Magic,
    /// The layout version.
    Version,
    /// The publication state.
    State,
    /// The region kind.
    Kind,
    /// The number of endpoints.
    Endpoints,
    /// The creator's process id.
    CreatorPid,
    /// The total length of the segment.
    TotalLen,
    /// The offset of the user region.
    DataOffset,
    /// The region's capacity.
    Capacity,
    /// The element size.
    SlotSize,
    /// The element alignment.
    SlotAlign,
    /// The element type hash.
    TypeHash,
}

impl HeaderField {
    /// Every field, in header order.
    pub const ALL: [HeaderField; 12] = [
        HeaderField::Magic,
        HeaderField::Version,
        HeaderField::State,
        HeaderField::Kind,
        HeaderField::Endpoints,
        HeaderField::CreatorPid,
        HeaderField::TotalLen,
        HeaderField::DataOffset,
        HeaderField::Capacity,
        HeaderField::SlotSize,
        HeaderField::SlotAlign,
        HeaderField::TypeHash,
    ];

    /// The field's name in the layout: `magic`, `total_len`, ...
    pub fn name(self) -> &'static str {
        match self {
            HeaderField::Magic => "magic",
            HeaderField::Version => "version",
            HeaderField::State => "state",
            HeaderField::Kind => "kind",
            HeaderField::Endpoints => "endpoints",
            HeaderField::CreatorPid => "creator_pid",
            HeaderField::TotalLen => "total_len",
            HeaderField::DataOffset => "data_offset",
            HeaderField::Capacity => "capacity",
            HeaderField::SlotSize => "slot_size",
            HeaderField::SlotAlign => "slot_align",
            HeaderField::TypeHash => "type_hash",
        }
    }
}

/// What a check requires of a header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this value.
    Value(u64),
    /// Any value but 0.
    NotZero,
    /// At most this value.
    AtMost(u64),
    /// Less than this value.
    Below(u64),
}

/// How bad a header finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// A value no creator writes: the segment is damaged.
    Damage,
    /// A well-formed value that this build or the caller does not accept:
    /// another layout version, or not the kind or shape the caller expects.
    Mismatch,
    /// The header is not published yet (`state` is [`STATE_INIT`]): its creator
    /// is still writing it, or died before it finished.
    Unpublished,
}

/// One failed header check: which field, what was expected, what was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderFinding {
    /// The field checked.
    pub field: HeaderField,
    /// What the check requires.
    pub expected: Expected,
    /// The field's value (for [`HeaderField::TotalLen`] compared with the
    /// object's size, the header's value).
    pub found: u64,
    /// How bad it is.
    pub severity: Severity,
}

impl HeaderFinding {
    /// The error an opener gets for this finding.
    pub fn to_error(&self) -> Error {
        let (field, found) = (self.field, self.found);
        match (field, self.expected) {
            (HeaderField::Magic, _) => Error::BadMagic { found },
            (HeaderField::Version, Expected::Value(v)) => Error::VersionMismatch {
                expected: u32::try_from(v).unwrap_or(u32::MAX),
                found: u32::try_from(found).unwrap_or(u32::MAX),
            },
            (HeaderField::State, _)
            | (_, Expected::NotZero | Expected::AtMost(_) | Expected::Below(_)) => Error::Corrupt {
                what: field.name(),
                value: found,
            },
            (_, Expected::Value(expected)) => Error::LayoutMismatch {
                field: field.name(),
                expected,
                found,
            },
        }
    }
}

impl RawHeader {
    /// Reads every field; `state` with `Acquire`, so that when it says ready the
    /// other fields are the creator's.
    pub(crate) fn snapshot(&self) -> HeaderInfo {
        // Acquire: pairs with the Release store of STATE_READY in `RawHeader::publish`.
        let state = self.state.load(Ordering::Acquire);
        let r = Ordering::Relaxed;
        HeaderInfo {
            magic: self.magic.load(r),
            version: self.version.load(r),
            state,
            kind: self.kind.load(r),
            endpoints: self.endpoints.load(r),
            creator_pid: self.creator_pid.load(r),
            total_len: self.total_len.load(r),
            data_offset: self.data_offset.load(r),
            capacity: self.capacity.load(r),
            slot_size: self.slot_size.load(r),
            slot_align: self.slot_align.load(r),
            type_hash: self.type_hash.load(r),
        }
    }

    /// Writes every field but `state` (the creator calls this on fresh, zeroed memory).
    pub(crate) fn write(&self, layout: &Layout, total_len: u64) {
        let r = Ordering::Relaxed;
        self.magic.store(MAGIC, r);
        self.version.store(VERSION, r);
        self.kind.store(layout.kind, r);
        self.endpoints.store(layout.endpoints, r);
        self.creator_pid.store(std::process::id(), r);
        self.total_len.store(total_len, r);
        self.data_offset.store(layout.data_offset(), r);
        self.capacity.store(layout.capacity, r);
        self.slot_size.store(layout.slot_size, r);
        self.slot_align.store(layout.slot_align, r);
        self.type_hash.store(layout.type_hash, r);
    }

    /// Marks the header complete.
    pub(crate) fn publish(&self) {
        // Release: pairs with the Acquire load in `RawHeader::snapshot`; every
        // header field and everything the creator wrote into the region before
        // this store is visible to an opener that sees STATE_READY.
        self.state.store(STATE_READY, Ordering::Release);
    }
}

/// The system's page size.
pub(crate) fn page_size() -> u64 {
    // sysconf(_SC_PAGESIZE) cannot fail on Linux; 4096 is the fallback regardless.
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(layout: &Layout) -> HeaderInfo {
        let total_len = layout.total_len().unwrap();
        HeaderInfo {
            magic: MAGIC,
            version: VERSION,
            state: STATE_READY,
            kind: layout.kind,
            endpoints: layout.endpoints,
            creator_pid: 1,
            total_len,
            data_offset: layout.data_offset(),
            capacity: layout.capacity,
            slot_size: layout.slot_size,
            slot_align: layout.slot_align,
            type_hash: layout.type_hash,
        }
    }

    const L: Layout = Layout {
        kind: 3,
        endpoints: 4,
        data_len: 1000,
        capacity: 512,
        slot_size: 8,
        slot_align: 8,
        type_hash: 77,
    };

    #[test]
    fn data_offset_is_aligned_and_after_table() {
        for e in [0u16, 1, 2, 7, 8, 9, 100, MAX_ENDPOINTS] {
            let off = Layout::data_offset_for(e);
            assert_eq!(off % DATA_ALIGN, 0);
            assert!(off >= ENDPOINT_TABLE_OFFSET + u64::from(e) * ENDPOINT_RECORD_LEN);
        }
    }

    #[test]
    fn valid_header_passes_and_each_field_is_checked() {
        let h = ready(&L);
        let full = Expect {
            kind: Some(3),
            endpoints: Some(4),
            capacity: Some(512),
            slot_size: Some(8),
            slot_align: Some(8),
            type_hash: Some(77),
        };
        h.validate(h.total_len, &full).unwrap();
        h.validate(h.total_len, &Expect::default()).unwrap();

        let cases: [(&str, Expect); 6] = [
            (
                "kind",
                Expect {
                    kind: Some(4),
                    ..full
                },
            ),
            (
                "endpoints",
                Expect {
                    endpoints: Some(5),
                    ..full
                },
            ),
            (
                "capacity",
                Expect {
                    capacity: Some(1024),
                    ..full
                },
            ),
            (
                "slot_size",
                Expect {
                    slot_size: Some(16),
                    ..full
                },
            ),
            (
                "slot_align",
                Expect {
                    slot_align: Some(4),
                    ..full
                },
            ),
            (
                "type_hash",
                Expect {
                    type_hash: Some(78),
                    ..full
                },
            ),
        ];
        for (name, e) in cases {
            match h.validate(h.total_len, &e) {
                Err(Error::LayoutMismatch { field, .. }) => assert_eq!(field, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn damaged_headers_are_rejected() {
        let h = ready(&L);
        let e = Expect::default();
        assert!(matches!(
            HeaderInfo { magic: 1, ..h }.validate(h.total_len, &e),
            Err(Error::BadMagic { found: 1 })
        ));
        assert!(matches!(
            HeaderInfo { version: 9, ..h }.validate(h.total_len, &e),
            Err(Error::VersionMismatch { found: 9, .. })
        ));
        assert!(matches!(
            HeaderInfo { state: 5, ..h }.validate(h.total_len, &e),
            Err(Error::Corrupt { what: "state", .. })
        ));
        assert!(matches!(
            h.validate(h.total_len + 4096, &e),
            Err(Error::LayoutMismatch {
                field: "total_len",
                ..
            })
        ));
        assert!(matches!(
            HeaderInfo {
                data_offset: 64,
                ..h
            }
            .validate(h.total_len, &e),
            Err(Error::LayoutMismatch {
                field: "data_offset",
                ..
            })
        ));
        assert!(matches!(
            HeaderInfo {
                endpoints: MAX_ENDPOINTS + 1,
                ..h
            }
            .validate(h.total_len, &e),
            Err(Error::Corrupt {
                what: "endpoints",
                ..
            })
        ));
        let tiny = HeaderInfo {
            total_len: 128,
            endpoints: 0,
            data_offset: 128,
            ..h
        };
        assert!(matches!(
            tiny.validate(128, &e),
            Err(Error::Corrupt {
                what: "data_offset",
                ..
            })
        ));
    }

    #[test]
    fn problems_names_every_failed_check() {
        let h = HeaderInfo {
            version: 2,
            state: 0xdead,
            ..ready(&L)
        };
        let p = h.problems(
            h.total_len + 4096,
            &Expect {
                capacity: Some(1),
                ..Expect::default()
            },
        );
        let names: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(p.len(), 4, "{names:?}");
        assert!(matches!(p[0], Error::VersionMismatch { found: 2, .. }));
        assert!(matches!(p[1], Error::Corrupt { what: "state", .. }));
        assert!(matches!(
            p[2],
            Error::LayoutMismatch {
                field: "total_len",
                ..
            }
        ));
        assert!(matches!(
            p[3],
            Error::LayoutMismatch {
                field: "capacity",
                ..
            }
        ));
        assert_eq!(
            HeaderInfo { magic: 7, ..h }
                .problems(0, &Expect::default())
                .len(),
            1
        );
    }

    #[test]
    fn findings_name_field_expected_found_and_severity() {
        let h = HeaderInfo {
            version: 2,
            state: STATE_INIT,
            ..ready(&L)
        };
        let f = h.findings(
            h.total_len,
            &Expect {
                kind: Some(4),
                ..Expect::default()
            },
        );
        assert_eq!(
            f,
            [
                HeaderFinding {
                    field: HeaderField::Version,
                    expected: Expected::Value(VERSION.into()),
                    found: 2,
                    severity: Severity::Mismatch,
                },
                HeaderFinding {
                    field: HeaderField::State,
                    expected: Expected::Value(STATE_READY.into()),
                    found: STATE_INIT.into(),
                    severity: Severity::Unpublished,
                },
                HeaderFinding {
                    field: HeaderField::Kind,
                    expected: Expected::Value(4),
                    found: 3,
                    severity: Severity::Mismatch,
                },
            ]
        );
        for field in HeaderField::ALL {
            assert!(!field.name().is_empty());
        }
        assert_eq!(h.value(HeaderField::TypeHash), 77);
    }

    #[test]
    fn from_bytes_round_trips_the_layout_of_raw_header() {
        let h = ready(&L);
        let mut bytes = vec![0u8; 64];
        bytes[0..8].copy_from_slice(&h.magic.to_le_bytes());
        bytes[8..12].copy_from_slice(&h.version.to_le_bytes());
        bytes[12..16].copy_from_slice(&h.state.to_le_bytes());
        bytes[16..18].copy_from_slice(&h.kind.to_le_bytes());
        bytes[18..20].copy_from_slice(&h.endpoints.to_le_bytes());
        bytes[20..24].copy_from_slice(&h.creator_pid.to_le_bytes());
        bytes[24..32].copy_from_slice(&h.total_len.to_le_bytes());
        bytes[32..40].copy_from_slice(&h.data_offset.to_le_bytes());
        bytes[40..48].copy_from_slice(&h.capacity.to_le_bytes());
        bytes[48..52].copy_from_slice(&h.slot_size.to_le_bytes());
        bytes[52..56].copy_from_slice(&h.slot_align.to_le_bytes());
        bytes[56..64].copy_from_slice(&h.type_hash.to_le_bytes());
        assert_eq!(HeaderInfo::from_bytes(&bytes), Some(h));
        assert_eq!(HeaderInfo::from_bytes(&bytes[..63]), None);
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert!(Layout { kind: 0, ..L }.total_len().is_err());
        assert!(Layout { data_len: 0, ..L }.total_len().is_err());
        assert!(
            Layout {
                data_len: u64::MAX,
                ..L
            }
            .total_len()
            .is_err()
        );
        assert!(
            Layout {
                endpoints: MAX_ENDPOINTS + 1,
                ..L
            }
            .total_len()
            .is_err()
        );
        assert_eq!(L.total_len().unwrap() % page_size(), 0);
    }
}
