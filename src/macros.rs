//! The methods SPSC and MPSC byte endpoints share, written once.

/// Sending methods for a byte sender wrapping `End<$ring>` in `self.end`.
macro_rules! sender_methods {
    ($ring:ty, $guard:ident) => {
        /// Sends a copy of `msg` without waiting.
        ///
        /// # Errors
        /// [`Error::Full`](crate::Error::Full), [`Error::MessageTooLarge`](crate::Error::MessageTooLarge),
        /// [`Error::Disconnected`](crate::Error::Disconnected) (the receiver is gone),
        /// [`Error::Corrupted`](crate::Error::Corrupted).
        #[inline]
        pub fn try_send(&mut self, msg: &[u8]) -> crate::Result<()> {
            Ok(self.end.ring()?.try_send(msg)?)
        }

        /// Sends a copy of `msg`, waiting for room as the wait strategy says. A
        /// receiver that has not attached yet is waited for, not an error.
        ///
        /// # Errors
        /// As [`Self::try_send`], without `Full`.
        #[inline]
        pub fn send(&mut self, msg: &[u8]) -> crate::Result<()> {
            Ok(self.end.ring()?.send(msg)?)
        }

        /// Sends a copy of `msg`, waiting at most `timeout` for room.
        ///
        /// # Errors
        /// As [`Self::send`], plus [`Error::Timeout`](crate::Error::Timeout).
        pub fn send_timeout(
            &mut self,
            msg: &[u8],
            timeout: std::time::Duration,
        ) -> crate::Result<()> {
            Ok(self.end.ring()?.send_timeout(msg, timeout)?)
        }

        /// Reserves room for `len` bytes in the ring without waiting: write the
        /// message in place through the guard, then `commit()` it. Dropping the
        /// guard uncommitted sends nothing.
        ///
        /// # Errors
        /// As [`Self::try_send`].
        #[inline]
        pub fn try_reserve(&mut self, len: usize) -> crate::Result<$guard<'_>> {
            Ok(self.end.ring()?.try_reserve(len)?)
        }

        /// Reserves room for `len` bytes, waiting as the wait strategy says.
        ///
        /// # Errors
        /// As [`Self::send`].
        #[inline]
        pub fn reserve(&mut self, len: usize) -> crate::Result<$guard<'_>> {
            Ok(self.end.ring()?.reserve(len)?)
        }

        /// Reserves room for `len` bytes, waiting at most `timeout`.
        ///
        /// # Errors
        /// As [`Self::send_timeout`].
        pub fn reserve_timeout(
            &mut self,
            len: usize,
            timeout: std::time::Duration,
        ) -> crate::Result<$guard<'_>> {
            Ok(self.end.ring()?.reserve_timeout(len, timeout)?)
        }

        /// The largest message this channel takes.
        pub fn max_message_len(&self) -> usize {
            self.end
                .mapped()
                .map_or(0, |m| shmq_ring::frame::max_payload(m.capacity as usize))
        }

        /// Capacity of the ring in bytes.
        pub fn capacity(&self) -> u64 {
            self.end.mapped().map_or(0, |m| m.capacity)
        }

        /// A duplicate of the channel's file descriptor, to pass to another process
        /// over a UNIX socket (`SCM_RIGHTS`). Only anonymous (memfd) channels can be
        /// opened from it ([`Self::from_fd`] checks its seals).
        ///
        /// # Errors
        /// [`Error::Segment`](crate::Error::Segment) if `dup` fails.
        pub fn export_fd(&self) -> crate::Result<std::os::fd::OwnedFd> {
            let seg = self.end.segment().ok_or_else(crate::attach::not_attached)?;
            Ok(seg.export_fd()?)
        }
    };
}

/// Receiving methods for a byte receiver wrapping `End<$ring>` in `self.end`.
macro_rules! receiver_methods {
    ($ring:ty, $guard:ident) => {
        /// Receives the next message without waiting, lending it in place until the
        /// guard drops (see the guard's note on trusting shared bytes).
        ///
        /// # Errors
        /// [`Error::Empty`](crate::Error::Empty), [`Error::Disconnected`](crate::Error::Disconnected)
        /// (the sender is gone and everything it committed has been received),
        /// [`Error::Corrupted`](crate::Error::Corrupted).
        #[inline]
        pub fn try_recv(&mut self) -> crate::Result<$guard<'_>> {
            Ok(self.end.ring()?.try_recv()?)
        }

        /// Receives the next message, waiting as the wait strategy says.
        ///
        /// # Errors
        /// As [`Self::try_recv`], without `Empty`.
        #[inline]
        pub fn recv(&mut self) -> crate::Result<$guard<'_>> {
            Ok(self.end.ring()?.recv()?)
        }

        /// Receives the next message, waiting at most `timeout`.
        ///
        /// # Errors
        /// As [`Self::recv`], plus [`Error::Timeout`](crate::Error::Timeout).
        pub fn recv_timeout(&mut self, timeout: std::time::Duration) -> crate::Result<$guard<'_>> {
            Ok(self.end.ring()?.recv_timeout(timeout)?)
        }

        /// Receives the next message into `buf` (cleared first), waiting. The bytes
        /// are copied out before the space is released, so they are the caller's
        /// whatever the peer does next.
        ///
        /// # Errors
        /// As [`Self::recv`].
        #[inline]
        pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> crate::Result<()> {
            Ok(self.end.ring()?.recv_into(buf)?)
        }

        /// As [`Self::recv_into`], without waiting.
        ///
        /// # Errors
        /// As [`Self::try_recv`].
        #[inline]
        pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> crate::Result<()> {
            Ok(self.end.ring()?.try_recv_into(buf)?)
        }

        /// As [`Self::recv_into`], waiting at most `timeout`.
        ///
        /// # Errors
        /// As [`Self::recv_timeout`].
        pub fn recv_into_timeout(
            &mut self,
            buf: &mut Vec<u8>,
            timeout: std::time::Duration,
        ) -> crate::Result<()> {
            Ok(self.end.ring()?.recv_into_timeout(buf, timeout)?)
        }

        /// Hands up to `max` waiting messages to `each`, in place and in order, and
        /// releases them all with one store. Returns how many (0 if none waited).
        ///
        /// # Errors
        /// [`Error::Disconnected`](crate::Error::Disconnected) when nothing waited and
        /// the sender is gone; [`Error::Corrupted`](crate::Error::Corrupted).
        pub fn try_recv_batch(
            &mut self,
            max: usize,
            each: impl FnMut(&[u8]),
        ) -> crate::Result<usize> {
            Ok(self.end.ring()?.try_recv_batch(max, each)?)
        }

        /// The largest message this channel takes.
        pub fn max_message_len(&self) -> usize {
            self.end
                .mapped()
                .map_or(0, |m| shmq_ring::frame::max_payload(m.capacity as usize))
        }

        /// Capacity of the ring in bytes.
        pub fn capacity(&self) -> u64 {
            self.end.mapped().map_or(0, |m| m.capacity)
        }

        /// A duplicate of the channel's file descriptor (see the sender's
        /// `export_fd`).
        ///
        /// # Errors
        /// [`Error::Segment`](crate::Error::Segment) if `dup` fails.
        pub fn export_fd(&self) -> crate::Result<std::os::fd::OwnedFd> {
            let seg = self.end.segment().ok_or_else(crate::attach::not_attached)?;
            Ok(seg.export_fd()?)
        }
    };
}

/// Constructors by name and from a descriptor, for a byte endpoint.
macro_rules! named_constructors {
    ($shape:expr) => {
        /// Creates the channel under `name` (one leading `/`, as for `shm_open`);
        /// fails if it exists. (A typed channel's capacity counts messages.)
        ///
        /// # Errors
        /// [`Error::Segment`](crate::Error::Segment) (invalid name, already exists,
        /// permissions, ...), [`Error::InvalidCapacity`](crate::Error::InvalidCapacity).
        pub fn create(name: &str, opts: &crate::Options) -> crate::Result<Self> {
            let shape = ($shape)(opts);
            Self::from_mapped(
                crate::attach::named(crate::attach::How::Create(name), &shape, opts)?,
                opts,
            )
        }

        /// Opens the existing channel under `name`, waiting for its creator to finish.
        ///
        /// # Errors
        /// [`Error::Segment`](crate::Error::Segment) (not found, foreign or damaged
        /// segment, layout mismatch, ...), [`Error::AlreadyAttached`](crate::Error::AlreadyAttached).
        pub fn open(name: &str, opts: &crate::Options) -> crate::Result<Self> {
            let shape = ($shape)(opts);
            Self::from_mapped(
                crate::attach::named(crate::attach::How::Open(name), &shape, opts)?,
                opts,
            )
        }

        /// Creates the channel under `name`, or opens it if it exists: either side
        /// may start first.
        ///
        /// # Errors
        /// As [`Self::create`] and [`Self::open`].
        pub fn create_or_open(name: &str, opts: &crate::Options) -> crate::Result<Self> {
            let shape = ($shape)(opts);
            Self::from_mapped(
                crate::attach::named(crate::attach::How::CreateOrOpen(name), &shape, opts)?,
                opts,
            )
        }

        /// Opens an anonymous channel from a file descriptor received from another
        /// process. Its seals are checked before it is mapped.
        ///
        /// # Errors
        /// [`Error::Segment`](crate::Error::Segment) (`Unsealed`, `Untrusted`, layout
        /// mismatch, ...).
        pub fn from_fd(fd: std::os::fd::OwnedFd, opts: &crate::Options) -> crate::Result<Self> {
            let shape = ($shape)(opts);
            Self::from_mapped(crate::attach::from_fd(fd, &shape, opts)?, opts)
        }
    };
}

pub(crate) use {named_constructors, receiver_methods, sender_methods};
