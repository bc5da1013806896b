//! The segment header: the first 64 bytes of every segment, the type name field,
//! and the endpoint table that follows them.
//!
//! ```text
//! 0      64         128         256                      data_offset          total_len
//! +------+----------+-----------+------------------------+--------------------+
//! |header|durability| type name | endpoint table (16 B/e) | region of the user |
//! +------+----------+-----------+------------------------+--------------------+
//! ```
//!
//! The durability record ([`DURABILITY_OFFSET`], [`DURABILITY_RECORD_LEN`]
//! bytes) holds a file-backed segment's [`Durability`] policy, written before
//! publication and never changed after, and its last sync (display only). It
//! lies in bytes that layout version 2 reserved and every creator left zero, so
//! all zeros is [`Durability::None`] and a segment made before the record
//! existed reads as what it was: never synced.
//!
//! The type name field ([`TYPE_NAME_OFFSET`], [`TYPE_NAME_FIELD_LEN`] bytes) holds
//! the text naming a typed region's element type ([`TypeName`]): UTF-8, at most
//! [`TYPE_NAME_MAX`] bytes, then a NUL, then zeros. It is written before the
//! header is published and never changes after.
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
/// Layout version this build writes and accepts. Version 1 (before the type
/// name field) kept a hash of the element type's name at offset 56 and the
/// endpoint table at 128; version 2 had the same header as 3, and rings
/// whose consumer could not wait on a doorbell (a version-2 producer would
/// not ring it). Both are refused with [`Error::VersionMismatch`], never read
/// as version 3.
pub const VERSION: u32 = 3;
/// Size of the header proper.
pub const HEADER_LEN: u64 = 64;
/// Offset of the type name field.
pub const TYPE_NAME_OFFSET: u64 = 128;
/// Size of the type name field: the name, its NUL terminator, zeros.
pub const TYPE_NAME_FIELD_LEN: usize = 128;
/// Longest type name the field holds, in bytes (one byte is left for the NUL).
pub const TYPE_NAME_MAX: usize = TYPE_NAME_FIELD_LEN - 1;
/// Offset of the endpoint table.
pub const ENDPOINT_TABLE_OFFSET: u64 = TYPE_NAME_OFFSET + TYPE_NAME_FIELD_LEN as u64;
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
    pub(crate) type_version: AtomicU32,
    pub(crate) type_flags: AtomicU32,
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
    assert!(offset_of!(RawHeader, type_version) == 56);
    assert!(offset_of!(RawHeader, type_flags) == 60);
};

/// The type name field as it lies in shared memory: the text's bytes in order
/// (each word little-endian), only ever read or written through atomics.
#[repr(C)]
pub(crate) struct RawTypeName {
    pub(crate) words: [AtomicU64; TYPE_NAME_FIELD_LEN / 8],
}

const _: () = assert!(size_of::<RawTypeName>() == TYPE_NAME_FIELD_LEN);
const _: () = assert!(TYPE_NAME_OFFSET >= HEADER_LEN && TYPE_NAME_OFFSET.is_multiple_of(8));

impl RawTypeName {
    /// Copies the field out, each word read once (`Relaxed`: the creator wrote
    /// it before publishing the header, and a reader has loaded `state` with
    /// `Acquire` before calling this; after publication it never changes).
    pub(crate) fn read(&self) -> [u8; TYPE_NAME_FIELD_LEN] {
        let mut out = [0u8; TYPE_NAME_FIELD_LEN];
        for (chunk, word) in out.chunks_exact_mut(8).zip(&self.words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        out
    }

    /// Writes the field (the creator, on fresh memory, before publishing:
    /// `Relaxed`, ordered by the `Release` store of `state` in
    /// `RawHeader::publish`, which pairs with the `Acquire` in `snapshot`).
    pub(crate) fn write(&self, name: &TypeName) {
        for (chunk, word) in name.bytes.chunks_exact(8).zip(&self.words) {
            let v = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
            word.store(v, Ordering::Relaxed);
        }
    }
}

/// The text naming a typed region's element type, as the type name field holds
/// it: valid UTF-8 of at most [`TYPE_NAME_MAX`] bytes with no NUL in it. Empty
/// for untyped regions. What it means is the user's business (`shmq` stores the
/// message type's declared name, or its Rust type name).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeName {
    /// The field's image: the text, a NUL, zeros.
    bytes: [u8; TYPE_NAME_FIELD_LEN],
    len: u8,
}

impl TypeName {
    /// The empty name (untyped regions).
    pub const EMPTY: TypeName = TypeName {
        bytes: [0; TYPE_NAME_FIELD_LEN],
        len: 0,
    };

    /// `name` as a field's content.
    ///
    /// # Errors
    /// [`Error::TypeNameTooLong`] for more than [`TYPE_NAME_MAX`] bytes,
    /// [`Error::InvalidArgument`] if it contains a NUL.
    pub fn new(name: &str) -> Result<TypeName> {
        if name.len() > TYPE_NAME_MAX {
            return Err(Error::TypeNameTooLong {
                len: name.len(),
                max: TYPE_NAME_MAX,
            });
        }
        if name.as_bytes().contains(&0) {
            return Err(Error::InvalidArgument {
                what: "a type name must not contain a NUL byte",
            });
        }
        let mut bytes = [0; TYPE_NAME_FIELD_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(TypeName {
            bytes,
            len: name.len() as u8,
        })
    }

    /// Decodes a field's image (a copy of it: from a mapping, through
    /// `RawTypeName::read`, or from a file): the text up to the first NUL,
    /// which must be there, be UTF-8, and be followed by zeros only.
    ///
    /// # Errors
    /// [`Error::BadTypeName`] saying which check failed; a `field` shorter than
    /// [`TYPE_NAME_FIELD_LEN`] bytes is one without a terminator.
    pub fn decode(field: &[u8]) -> Result<TypeName> {
        let field = field.get(..TYPE_NAME_FIELD_LEN).unwrap_or(field);
        let bad = |reason, at: usize| Error::BadTypeName { reason, at };
        let Some(len) = field.iter().position(|&b| b == 0) else {
            return Err(bad("has no NUL terminator", field.len()));
        };
        if let Some(i) = field[len..].iter().position(|&b| b != 0) {
            return Err(bad(
                "has bytes other than zero after its terminator",
                len + i,
            ));
        }
        if let Err(e) = core::str::from_utf8(&field[..len]) {
            return Err(bad("is not UTF-8", e.valid_up_to()));
        }
        let mut bytes = [0; TYPE_NAME_FIELD_LEN];
        bytes[..len].copy_from_slice(&field[..len]);
        Ok(TypeName {
            bytes,
            len: len as u8,
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Checked UTF-8 by both constructors; never fails.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The field's image: the text, a NUL, zeros.
    pub fn to_bytes(&self) -> [u8; TYPE_NAME_FIELD_LEN] {
        self.bytes
    }
}

impl Default for TypeName {
    fn default() -> Self {
        TypeName::EMPTY
    }
}

impl core::fmt::Debug for TypeName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for TypeName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
/// `kind`, `capacity`, `slot_size`, `slot_align`, `type_version`, `type_flags`
/// and `type_name` mean nothing to this crate; it stores them and checks the
/// numbers against an opener's [`Expect`] (the name is the opener's to compare:
/// [`Segment::type_name`](crate::Segment::type_name)).
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
    /// The element type's version, 0 for untyped regions.
    pub type_version: u32,
    /// Flags about the element type's identity (the user's), 0 for untyped regions.
    pub type_flags: u32,
    /// The element type's name, empty for untyped regions.
    pub type_name: TypeName,
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
    /// Required element type version.
    pub type_version: Option<u32>,
    /// Required element type flags.
    pub type_flags: Option<u32>,
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
    /// Element type version (typed regions).
    pub type_version: u32,
    /// Element type flags (typed regions).
    pub type_flags: u32,
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
            type_version: u32_at(56),
            type_flags: u32_at(60),
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
            HeaderField::TypeVersion => self.type_version.into(),
            HeaderField::TypeFlags => self.type_flags.into(),
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
    /// magic number or layout version is not checked further (its other
    /// fields are not laid out as this version's).
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
        if self.version != VERSION {
            // Another version lays its fields out its own way: none is read
            // as this version's.
            check(
                F::Version,
                false,
                Expected::Value(VERSION.into()),
                Severity::Mismatch,
            );
            return out;
        }
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
        let wanted: [(HeaderField, Option<u64>); 7] = [
            (F::Kind, expect.kind.map(u64::from)),
            (F::Endpoints, expect.endpoints.map(u64::from)),
            (F::Capacity, expect.capacity),
            (F::SlotSize, expect.slot_size.map(u64::from)),
            (F::SlotAlign, expect.slot_align.map(u64::from)),
            (F::TypeVersion, expect.type_version.map(u64::from)),
            (F::TypeFlags, expect.type_flags.map(u64::from)),
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
    /// The element type's version.
    TypeVersion,
    /// The element type's identity flags.
    TypeFlags,
}

impl HeaderField {
    /// Every field, in header order.
    pub const ALL: [HeaderField; 13] = [
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
        HeaderField::TypeVersion,
        HeaderField::TypeFlags,
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
            HeaderField::TypeVersion => "type_version",
            HeaderField::TypeFlags => "type_flags",
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
            type_version: self.type_version.load(r),
            type_flags: self.type_flags.load(r),
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
        self.type_version.store(layout.type_version, r);
        self.type_flags.store(layout.type_flags, r);
    }

    /// Marks the header complete.
    pub(crate) fn publish(&self) {
        // Release: pairs with the Acquire load in `RawHeader::snapshot`; every
        // header field and everything the creator wrote into the region before
        // this store is visible to an opener that sees STATE_READY.
        self.state.store(STATE_READY, Ordering::Release);
    }
}

/// Offset of the durability record, in what layout version 2 reserved
/// (bytes 64 to 127, which every version-2 creator leaves zero).
pub const DURABILITY_OFFSET: u64 = HEADER_LEN;
/// Size of the durability record.
pub const DURABILITY_RECORD_LEN: u64 = 64;

/// When a file-backed segment's writes are forced to the disk: chosen by its
/// creator and recorded in the header (the durability record, in bytes 64 to
/// 127, which layout version 2 reserved as zeros, so that a segment made
/// before the record existed reads as [`Durability::None`], which is what its
/// creator gave it). This crate records and validates it; syncing is the
/// user's ([`Segment::sync`](crate::Segment::sync)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Never synced by policy: the page cache holds the writes, which survive
    /// the death of any process but not a kernel crash or a power loss.
    #[default]
    None,
    /// Synced at most `interval` after, or `messages` messages (published or
    /// received by one end) after, the last sync, whichever comes first (a
    /// zero budget is not used; at least one must be non-zero; `interval` is
    /// kept in whole milliseconds).
    Periodic {
        /// The longest time between syncs (zero: no time budget).
        interval: core::time::Duration,
        /// The most messages between syncs (zero: no count budget).
        messages: u64,
    },
    /// Synced after every commit (every call that publishes or receives a
    /// message).
    EveryCommit,
}

impl core::fmt::Display for Durability {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Durability::None => f.write_str("none (page cache only)"),
            Durability::EveryCommit => f.write_str("every commit"),
            Durability::Periodic { interval, messages } => {
                f.write_str("periodic (")?;
                if !interval.is_zero() {
                    write!(f, "every {} ms", interval.as_millis())?;
                    if messages != 0 {
                        f.write_str(" or ")?;
                    }
                }
                if messages != 0 {
                    write!(f, "every {messages} messages")?;
                }
                f.write_str(", whichever comes first)")
            }
        }
    }
}

/// `policy` codes of the durability record.
const POLICY_NONE: u32 = 0;
const POLICY_PERIODIC: u32 = 1;
const POLICY_EVERY_COMMIT: u32 = 2;

impl Durability {
    /// A short name: `none`, `periodic`, `every-commit`.
    pub fn name(&self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Periodic { .. } => "periodic",
            Durability::EveryCommit => "every-commit",
        }
    }

    /// The record's `(policy, interval_ms, messages)` words.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a periodic policy with both budgets zero
    /// or an interval of more than `u32::MAX` milliseconds.
    pub fn encode(&self) -> Result<(u32, u32, u64)> {
        Ok(match *self {
            Durability::None => (POLICY_NONE, 0, 0),
            Durability::EveryCommit => (POLICY_EVERY_COMMIT, 0, 0),
            Durability::Periodic { interval, messages } => {
                let ms =
                    u32::try_from(interval.as_millis()).map_err(|_| Error::InvalidArgument {
                        what: "a periodic sync interval must be under 49 days",
                    })?;
                if ms == 0 && messages == 0 {
                    return Err(Error::InvalidArgument {
                        what: "a periodic sync policy needs an interval of at least 1 ms or a message count",
                    });
                }
                (POLICY_PERIODIC, ms, messages)
            }
        })
    }

    /// The policy the record's words say, each checked.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the word that no creator writes: an unknown
    /// policy, budgets on a policy that has none, or a periodic one with none.
    pub fn decode(policy: u32, interval_ms: u32, messages: u64) -> Result<Durability> {
        let bad = |what, value| Err(Error::Corrupt { what, value });
        match policy {
            POLICY_NONE | POLICY_EVERY_COMMIT if interval_ms != 0 => bad(
                "durability interval (set on a policy without one)",
                interval_ms.into(),
            ),
            POLICY_NONE | POLICY_EVERY_COMMIT if messages != 0 => bad(
                "durability message count (set on a policy without one)",
                messages,
            ),
            POLICY_NONE => Ok(Durability::None),
            POLICY_EVERY_COMMIT => Ok(Durability::EveryCommit),
            POLICY_PERIODIC if interval_ms == 0 && messages == 0 => {
                bad("durability budgets (a periodic policy with neither)", 0)
            }
            POLICY_PERIODIC => Ok(Durability::Periodic {
                interval: core::time::Duration::from_millis(interval_ms.into()),
                messages,
            }),
            other => bad("durability policy", other.into()),
        }
    }

    /// Decodes the record from a copy of the segment's first bytes (at least
    /// [`DURABILITY_OFFSET`] + 16 of them); `None` if `bytes` is shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<Result<Durability>> {
        let o = DURABILITY_OFFSET as usize;
        let b = bytes.get(o..o + 16)?;
        let policy = u32::from_le_bytes(b[0..4].try_into().ok()?);
        let ms = u32::from_le_bytes(b[4..8].try_into().ok()?);
        let messages = u64::from_le_bytes(b[8..16].try_into().ok()?);
        Some(Durability::decode(policy, ms, messages))
    }
}

/// The last completed sync, as the durability record keeps it (display only:
/// any process with the segment open may write it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SyncRecord {
    /// When the last sync completed, in nanoseconds since the Unix epoch
    /// (`CLOCK_REALTIME`); 0 if never.
    pub last_sync_ns: u64,
    /// Syncs completed since the segment was created.
    pub syncs: u64,
}

impl SyncRecord {
    /// Decodes it from a copy of the segment's first bytes; `None` if too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<SyncRecord> {
        let o = DURABILITY_OFFSET as usize;
        let b = bytes.get(o + 16..o + 32)?;
        Some(SyncRecord {
            last_sync_ns: u64::from_le_bytes(b[0..8].try_into().ok()?),
            syncs: u64::from_le_bytes(b[8..16].try_into().ok()?),
        })
    }
}

/// The durability record as it lies in the segment, reached only through
/// `map.rs` and only ever read or written through atomics.
#[repr(C)]
pub(crate) struct RawDurability {
    pub(crate) policy: AtomicU32,
    pub(crate) interval_ms: AtomicU32,
    pub(crate) messages: AtomicU64,
    pub(crate) last_sync_ns: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) reserved: [AtomicU64; 4],
}

const _: () = assert!(size_of::<RawDurability>() as u64 == DURABILITY_RECORD_LEN);
const _: () = assert!(DURABILITY_OFFSET + DURABILITY_RECORD_LEN <= TYPE_NAME_OFFSET);

impl RawDurability {
    /// Writes the policy (the creator, on fresh memory, before publishing:
    /// `Relaxed`, ordered by the `Release` store of `state` in
    /// `RawHeader::publish`, which pairs with the `Acquire` in `snapshot`).
    pub(crate) fn write(&self, d: &Durability) -> Result<()> {
        let (policy, ms, messages) = d.encode()?;
        let r = Ordering::Relaxed;
        self.policy.store(policy, r);
        self.interval_ms.store(ms, r);
        self.messages.store(messages, r);
        Ok(())
    }

    /// Reads the policy, each word once (`Relaxed`: written before publication
    /// and never after; the reader loaded `state` with `Acquire` first), and
    /// checks it.
    pub(crate) fn read(&self) -> Result<Durability> {
        let r = Ordering::Relaxed;
        Durability::decode(
            self.policy.load(r),
            self.interval_ms.load(r),
            self.messages.load(r),
        )
    }

    /// Records a completed sync. `Relaxed`: display only, paired with nothing
    /// (a reader may see the time and the count of different syncs).
    pub(crate) fn record_sync(&self, now_ns: u64) {
        self.last_sync_ns.store(now_ns, Ordering::Relaxed);
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// The last sync, as recorded (`Relaxed`: display only, see `record_sync`).
    pub(crate) fn sync_record(&self) -> SyncRecord {
        SyncRecord {
            last_sync_ns: self.last_sync_ns.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
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
            type_version: layout.type_version,
            type_flags: layout.type_flags,
        }
    }

    const L: Layout = Layout {
        kind: 3,
        endpoints: 4,
        data_len: 1000,
        capacity: 512,
        slot_size: 8,
        slot_align: 8,
        type_version: 77,
        type_flags: 1,
        type_name: TypeName::EMPTY,
    };

    #[test]
    fn durability_round_trips_and_damage_is_refused() {
        use core::time::Duration;
        for d in [
            Durability::None,
            Durability::EveryCommit,
            Durability::Periodic {
                interval: Duration::from_millis(5),
                messages: 0,
            },
            Durability::Periodic {
                interval: Duration::ZERO,
                messages: 100,
            },
        ] {
            let (p, ms, n) = d.encode().unwrap();
            assert_eq!(Durability::decode(p, ms, n).unwrap(), d);
            let mut image = [0u8; 128];
            image[64..68].copy_from_slice(&p.to_le_bytes());
            image[68..72].copy_from_slice(&ms.to_le_bytes());
            image[72..80].copy_from_slice(&n.to_le_bytes());
            assert_eq!(Durability::from_bytes(&image).unwrap().unwrap(), d);
        }
        // A version-2 segment's reserved zeros: none.
        assert_eq!(
            Durability::from_bytes(&[0u8; 128]).unwrap().unwrap(),
            Durability::None
        );
        assert!(Durability::from_bytes(&[0u8; 70]).is_none());
        for (p, ms, n) in [(3, 0, 0), (0, 1, 0), (2, 0, 9), (1, 0, 0), (u32::MAX, 0, 0)] {
            assert!(
                matches!(Durability::decode(p, ms, n), Err(Error::Corrupt { .. })),
                "{p} {ms} {n}"
            );
        }
        let none = Durability::Periodic {
            interval: Duration::from_micros(500),
            messages: 0,
        };
        assert!(matches!(none.encode(), Err(Error::InvalidArgument { .. })));
    }

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
            type_version: Some(77),
            type_flags: Some(1),
        };
        h.validate(h.total_len, &full).unwrap();
        h.validate(h.total_len, &Expect::default()).unwrap();

        let cases: [(&str, Expect); 7] = [
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
                "type_version",
                Expect {
                    type_version: Some(78),
                    ..full
                },
            ),
            (
                "type_flags",
                Expect {
                    type_flags: Some(0),
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
            total_len: ENDPOINT_TABLE_OFFSET,
            endpoints: 0,
            data_offset: ENDPOINT_TABLE_OFFSET,
            ..h
        };
        assert!(matches!(
            tiny.validate(ENDPOINT_TABLE_OFFSET, &e),
            Err(Error::Corrupt {
                what: "data_offset",
                ..
            })
        ));
    }

    #[test]
    fn problems_names_every_failed_check() {
        let old = HeaderInfo {
            version: 1,
            ..ready(&L)
        };
        // Another version: that alone, its other fields not read as ours.
        let p = old.problems(old.total_len + 4096, &Expect::default());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(matches!(
            p[0],
            Error::VersionMismatch {
                found: 1,
                expected: VERSION
            }
        ));
        let h = HeaderInfo {
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
        assert_eq!(p.len(), 3, "{names:?}");
        assert!(matches!(p[0], Error::Corrupt { what: "state", .. }));
        assert!(matches!(
            p[1],
            Error::LayoutMismatch {
                field: "total_len",
                ..
            }
        ));
        assert!(matches!(
            p[2],
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
        assert_eq!(h.value(HeaderField::TypeVersion), 77);
        assert_eq!(h.value(HeaderField::TypeFlags), 1);
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
        bytes[56..60].copy_from_slice(&h.type_version.to_le_bytes());
        bytes[60..64].copy_from_slice(&h.type_flags.to_le_bytes());
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

    #[test]
    fn type_names_round_trip_up_to_the_limit() {
        for name in [
            "",
            "u64",
            "metrics.Sample",
            "é∑ unicode",
            &"n".repeat(TYPE_NAME_MAX),
        ] {
            let t = TypeName::new(name).unwrap();
            assert_eq!(t.as_str(), name);
            assert_eq!(t.is_empty(), name.is_empty());
            let image = t.to_bytes();
            assert_eq!(&image[..name.len()], name.as_bytes());
            assert!(image[name.len()..].iter().all(|&b| b == 0));
            assert_eq!(TypeName::decode(&image).unwrap(), t);
            // Through the atomics of the field in shared memory.
            let raw = RawTypeName {
                words: Default::default(),
            };
            raw.write(&t);
            assert_eq!(raw.read(), image);
        }
        assert_eq!(TypeName::default(), TypeName::EMPTY);
        let long = "n".repeat(TYPE_NAME_MAX + 1);
        assert!(matches!(
            TypeName::new(&long),
            Err(Error::TypeNameTooLong { len, max: TYPE_NAME_MAX }) if len == TYPE_NAME_MAX + 1
        ));
        assert!(matches!(
            TypeName::new("a\0b"),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn damaged_type_name_fields_are_refused_in_words() {
        let good = TypeName::new("metrics.Sample").unwrap().to_bytes();
        let reason = |field: &[u8]| match TypeName::decode(field) {
            Err(Error::BadTypeName { reason, at }) => (reason, at),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(&[b'x'; TYPE_NAME_FIELD_LEN]),
            ("has no NUL terminator", TYPE_NAME_FIELD_LEN)
        );
        assert_eq!(reason(&good[..10]).0, "has no NUL terminator");
        let mut trailing = good;
        trailing[100] = 1;
        assert_eq!(
            reason(&trailing),
            ("has bytes other than zero after its terminator", 100)
        );
        let mut not_utf8 = good;
        not_utf8[3] = 0xff;
        assert_eq!(reason(&not_utf8), ("is not UTF-8", 3));
        let e = TypeName::decode(&not_utf8).unwrap_err().to_string();
        assert!(e.contains("is not UTF-8"), "{e}");
    }
}
