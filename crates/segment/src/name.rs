//! Names of POSIX shared-memory objects.
//!
//! A name is checked here, before any system call, so that a bad name is always
//! [`Error::InvalidName`] and never whatever `shm_open` happens to make of it.

use crate::error::{Error, Result};

/// The longest name after the leading `/`: Linux's `NAME_MAX` for a file in `/dev/shm`.
pub const NAME_MAX: usize = 255;

/// Checks that `name` is a portable POSIX shared-memory name: one leading `/`, no
/// other `/`, 1 to [`NAME_MAX`] bytes after it, no NUL, and not `.` or `..`.
///
/// # Errors
/// [`Error::InvalidName`] saying what is wrong.
///
/// # Examples
/// ```
/// assert!(shmq_segment::validate_name("/orders").is_ok());
/// assert!(shmq_segment::validate_name("orders").is_err());
/// assert!(shmq_segment::validate_name("/a/b").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let Some(rest) = name.strip_prefix('/') else {
        return bad("must start with '/'");
    };
    if rest.is_empty() {
        return bad("must have at least one byte after '/'");
    }
    if rest.len() > NAME_MAX {
        return bad("longer than 255 bytes after '/'");
    }
    if rest.contains('/') {
        return bad("must not contain '/' after the first byte");
    }
    if rest.contains('\0') {
        return bad("must not contain NUL");
    }
    if rest == "." || rest == ".." {
        return bad("must not be '.' or '..'");
    }
    Ok(())
}

/// A fresh name `"/{prefix}-{16 hex digits}"` with 64 random bits from the kernel
/// (`getrandom`), for segments whose name is passed to the peer out of band.
///
/// # Errors
/// [`Error::InvalidName`] if `prefix` makes the name invalid, [`Error::Os`] if the
/// kernel has no randomness to give.
///
/// # Examples
/// ```
/// let name = shmq_segment::unique_name("jobs")?;
/// assert!(name.starts_with("/jobs-"));
/// # Ok::<(), shmq_segment::Error>(())
/// ```
pub fn unique_name(prefix: &str) -> Result<String> {
    let name = format!("/{prefix}-{:016x}", crate::sys::random_u64()?);
    validate_name(&name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_bad_names() {
        let long = format!("/{}", "x".repeat(NAME_MAX + 1));
        for name in [
            "",
            "/",
            "noslash",
            "/a/b",
            "//a",
            "/a\0b",
            "/.",
            "/..",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_name(name), Err(Error::InvalidName { .. })),
                "{name:?} should be invalid"
            );
        }
    }

    #[test]
    fn good_names() {
        let longest = format!("/{}", "x".repeat(NAME_MAX));
        for name in ["/a", "/shmq-test", "/.hidden", "/a.b", longest.as_str()] {
            validate_name(name).unwrap();
        }
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("t").unwrap();
        let b = unique_name("t").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), "/t-".len() + 16);
    }
}
