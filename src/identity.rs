//! Message type identity: what a typed channel's header says its messages are,
//! and the check an opener makes against it.
//!
//! The header records the element type as text (its declared [`Message::NAME`],
//! or for a type that declares nothing its Rust [`std::any::type_name`]), a
//! version (the declared [`Message::VERSION`]), whether the name was declared,
//! and the type's size and alignment. Two ends agree when all five are equal;
//! otherwise the opener gets [`Error::WrongMessageType`] naming both types and
//! both layouts.

use shmq_segment::{Segment, TYPE_NAME_MAX, TypeName};

use crate::error::{Error, Result};

/// The header's type flag that says the name was declared ([`Message`]).
pub(crate) const DECLARED: u32 = 1;

/// A message type with a stable name and version, for typed channels whose
/// ends are built separately: two programs that each define the type (or one
/// that moved it to another module) agree on it by its declared name, version
/// and layout, not by its Rust path. Use it with the [`Declared<T>`](crate::Declared)
/// format ([`spsc::declared`](crate::spsc::declared),
/// [`mpsc::declared`](crate::mpsc::declared)); the [`Typed<T>`](crate::Typed)
/// format ignores it and identifies `T` by its Rust type name.
///
/// `NAME` is at most [`MAX_MESSAGE_NAME`] bytes of UTF-8 without NUL (a longer
/// one is refused when the channel is created or opened, with
/// [`Error::InvalidMessageName`]). Change `VERSION` whenever the meaning of the
/// bytes changes while the size stays; a changed size or alignment is refused
/// anyway.
///
/// ```
/// use shmq::bytemuck::{Pod, Zeroable};
/// use shmq::{Message, Options, spsc};
///
/// #[derive(Clone, Copy, Pod, Zeroable)]
/// #[bytemuck(crate = "shmq::bytemuck")]
/// #[repr(C)]
/// struct Sample {
///     host: u32,
///     value: f32,
/// }
///
/// impl Message for Sample {
///     const NAME: &'static str = "metrics.Sample";
///     const VERSION: u32 = 1;
/// }
///
/// let name = shmq::unique_name("doc-declared")?;
/// let mut tx = spsc::declared::Sender::<Sample>::create(&name, &Options::new().capacity(8))?;
/// // In another program, with its own definition of `Sample` under the same
/// // name, version and layout:
/// let mut rx = spsc::declared::Receiver::<Sample>::open(&name, &Options::new())?;
/// tx.send(&Sample { host: 7, value: 0.5 })?;
/// assert_eq!(rx.recv()?.host, 7);
///
/// // The same channel opened as an undeclared type is refused, in words.
/// let e = spsc::typed::Receiver::<u64>::open(&name, &Options::new()).unwrap_err();
/// assert_eq!(
///     e.to_string(),
///     "message type mismatch: the channel holds \"metrics.Sample\" v1 (8 bytes, align 4), \
///      this end uses the undeclared type \"u64\" (8 bytes, align 8)"
/// );
/// # Ok::<(), shmq::Error>(())
/// ```
pub trait Message: bytemuck::Pod {
    /// The type's stable name, recorded in the channel's header.
    const NAME: &'static str;
    /// The type's version, recorded beside its name.
    const VERSION: u32;
}

/// Longest [`Message::NAME`] (and Rust type name of an undeclared type) a
/// channel's header holds, in bytes.
pub const MAX_MESSAGE_NAME: usize = TYPE_NAME_MAX;

/// A typed channel's message type as its header records it (or as a handle
/// would record it): name, version if declared, size and alignment. Its
/// `Display` is the form errors and `shmq inspect` use:
/// `"metrics.Sample" v2 (24 bytes, align 8)`, or for a type that declares
/// nothing `the undeclared type "u64" (8 bytes, align 8)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The declared name, or the Rust type name of an undeclared type.
    pub name: String,
    /// The declared version; `None` for a type that declares nothing.
    pub version: Option<u32>,
    /// Size in bytes.
    pub size: u32,
    /// Alignment in bytes.
    pub align: u32,
}

impl core::fmt::Display for MessageType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (name, size, align) = (&self.name, self.size, self.align);
        match self.version {
            Some(v) => write!(f, "{name:?} v{v} ({size} bytes, align {align})"),
            None => write!(
                f,
                "the undeclared type {name:?} ({size} bytes, align {align})"
            ),
        }
    }
}

impl MessageType {
    /// The message type a header's fields describe. `None` if the flags hold a
    /// bit no creator writes, or an undeclared type has a version.
    pub(crate) fn from_header(
        name: &TypeName,
        version: u32,
        flags: u32,
        size: u32,
        align: u32,
    ) -> Option<MessageType> {
        let version = match flags {
            DECLARED => Some(version),
            0 if version == 0 => None,
            _ => return None,
        };
        Some(MessageType {
            name: name.as_str().to_owned(),
            version,
            size,
            align,
        })
    }
}

/// Identity of a typed channel's element type, as this end records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TypeInfo {
    pub(crate) size: u32,
    pub(crate) align: u32,
    /// The declared name, or the Rust type name.
    pub(crate) name: &'static str,
    /// The declared version, `None` for an undeclared type.
    pub(crate) version: Option<u32>,
}

impl TypeInfo {
    /// A type that declares nothing: known by its Rust type name (which two
    /// builds share when the type has the same path in both).
    pub(crate) fn undeclared<T: 'static>() -> TypeInfo {
        TypeInfo {
            size: size_of::<T>() as u32,
            align: align_of::<T>() as u32,
            name: std::any::type_name::<T>(),
            version: None,
        }
    }

    /// A [`Message`]: known by its declared name and version.
    pub(crate) fn declared<T: Message>() -> TypeInfo {
        TypeInfo {
            size: size_of::<T>() as u32,
            align: align_of::<T>() as u32,
            name: T::NAME,
            version: Some(T::VERSION),
        }
    }

    /// The header's version field.
    pub(crate) fn version_field(&self) -> u32 {
        self.version.unwrap_or(0)
    }

    /// The header's flags field.
    pub(crate) fn flags(&self) -> u32 {
        if self.version.is_some() { DECLARED } else { 0 }
    }

    /// The name as the header's field holds it.
    ///
    /// # Errors
    /// [`Error::InvalidMessageName`] if it is empty, too long or holds a NUL.
    pub(crate) fn type_name(&self) -> Result<TypeName> {
        let invalid = |reason: String| Error::InvalidMessageName {
            name: self.name.to_owned(),
            reason,
        };
        if self.name.is_empty() {
            return Err(invalid("a message type name must not be empty".into()));
        }
        TypeName::new(self.name).map_err(|e| match e {
            shmq_segment::Error::TypeNameTooLong { len, max } => invalid(format!(
                "it is {len} bytes, more than the {max} a channel's header holds{}",
                if self.version.is_some() {
                    ""
                } else {
                    " (declare a shorter stable name: impl shmq::Message and use Declared<T>)"
                }
            )),
            _ => invalid("a message type name must not contain a NUL byte".into()),
        })
    }

    /// This end's message type, for errors.
    pub(crate) fn message_type(&self) -> MessageType {
        MessageType {
            name: self.name.to_owned(),
            version: self.version,
            size: self.size,
            align: self.align,
        }
    }
}

/// Checks a mapped segment's element type against this end's (`None`: a byte
/// channel, whose header must name no type). The kind was checked already.
///
/// # Errors
/// [`Error::WrongMessageType`] naming both types; for a damaged type name field
/// or flags, the segment's [`BadTypeName`](shmq_segment::Error::BadTypeName) or
/// [`Corrupt`](shmq_segment::Error::Corrupt).
pub(crate) fn check(seg: &Segment, ty: Option<&TypeInfo>) -> Result<()> {
    let name = seg.type_name()?;
    let info = seg.info();
    let Some(ty) = ty else {
        // Byte channels: the numbers were checked as zeros with the header.
        if !name.is_empty() {
            return Err(shmq_segment::Error::BadTypeName {
                reason: "names a message type in a byte channel",
                at: 0,
            }
            .into());
        }
        return Ok(());
    };
    let found = MessageType::from_header(
        &name,
        info.type_version,
        info.type_flags,
        info.slot_size,
        info.slot_align,
    )
    .ok_or(shmq_segment::Error::Corrupt {
        what: "type_flags",
        value: info.type_flags.into(),
    })?;
    let expected = ty.message_type();
    if found != expected {
        return Err(Error::WrongMessageType { expected, found });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_in_words() {
        let declared = MessageType {
            name: "metrics.Sample".into(),
            version: Some(2),
            size: 24,
            align: 8,
        };
        assert_eq!(
            declared.to_string(),
            "\"metrics.Sample\" v2 (24 bytes, align 8)"
        );
        let undeclared = MessageType {
            version: None,
            ..declared.clone()
        };
        assert_eq!(
            undeclared.to_string(),
            "the undeclared type \"metrics.Sample\" (24 bytes, align 8)"
        );
        let name = TypeName::new("x").unwrap();
        assert_eq!(
            MessageType::from_header(&name, 3, DECLARED, 8, 8)
                .unwrap()
                .version,
            Some(3)
        );
        assert_eq!(
            MessageType::from_header(&name, 0, 0, 8, 8).unwrap().version,
            None
        );
        assert!(MessageType::from_header(&name, 3, 0, 8, 8).is_none());
        assert!(MessageType::from_header(&name, 3, 2, 8, 8).is_none());
    }

    #[test]
    fn names_longer_than_the_field_are_refused_in_words() {
        let long: &'static str = "a".repeat(MAX_MESSAGE_NAME + 1).leak();
        let ty = TypeInfo {
            size: 8,
            align: 8,
            name: long,
            version: Some(1),
        };
        let e = ty.type_name().unwrap_err();
        assert!(matches!(e, Error::InvalidMessageName { .. }));
        assert!(
            e.to_string().contains("128 bytes, more than the 127"),
            "{e}"
        );
        let fits = TypeInfo {
            name: &long[1..],
            ..ty
        };
        assert_eq!(fits.type_name().unwrap().as_str().len(), MAX_MESSAGE_NAME);
        let empty = TypeInfo { name: "", ..ty };
        assert!(empty.type_name().is_err());
    }
}
