// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The error type of the library.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An errno value with its symbolic name in `Display`, e.g.
/// `Invalid argument (EINVAL)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The errno of the last failed libc call.
    pub fn last() -> Self {
        Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The symbolic name (`EINVAL`), if known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::ENOSPC => "ENOSPC",
            libc::ENOTTY => "ENOTTY",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::ENODATA => "ENODATA",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::ENOBUFS => "ENOBUFS",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ETIMEDOUT => "ETIMEDOUT",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; keep the text only.
        let text = msg.split(" (os error").next().unwrap_or(&msg);
        match self.name() {
            Some(name) => write!(f, "{text} ({name})"),
            None => write!(f, "{text} (errno {})", self.0),
        }
    }
}

impl From<&io::Error> for Errno {
    fn from(e: &io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Errors of the vhost-mdev library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A vhost request (over region 0 or as an ioctl) failed.
    #[error("{request} failed: {errno}")]
    Request {
        /// The request name, e.g. `VHOST_SET_VRING_NUM`.
        request: String,
        /// The errno the device returned.
        errno: Errno,
    },
    /// A system call other than a vhost request failed.
    #[error("{op} failed: {errno}")]
    Sys {
        /// What was attempted, e.g. `VFIO_DEVICE_GET_INFO` or `open /dev/vfio/3`.
        op: String,
        /// The errno.
        errno: Errno,
    },
    /// A file under sysfs or /proc could not be read or written.
    #[error("{}: {source}", path.display())]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The device answered something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A lookup found nothing; the message says what to do.
    #[error("{0}")]
    NotFound(String),
    /// The device is held open by another process.
    #[error("{0}")]
    InUse(String),
    /// An argument was out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operation is not available on this back end.
    #[error("{0} is not supported by this back end")]
    Unsupported(&'static str),
    /// Waiting for the device timed out.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    /// The errno carried by the error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Request { errno, .. } | Error::Sys { errno, .. } => Some(errno.0),
            Error::Sysfs { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// A [`Error::Sys`] from the last OS error.
    pub fn last_os(op: impl Into<String>) -> Self {
        Error::Sys {
            op: op.into(),
            errno: Errno::last(),
        }
    }

    /// A [`Error::Sys`] from an `io::Error`.
    pub fn io(op: impl Into<String>, e: &io::Error) -> Self {
        Error::Sys {
            op: op.into(),
            errno: Errno::from(e),
        }
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_request_and_errno() {
        let e = Error::Request {
            request: "VHOST_SET_VRING_NUM".into(),
            errno: Errno(libc::EINVAL),
        };
        assert_eq!(
            e.to_string(),
            "VHOST_SET_VRING_NUM failed: Invalid argument (EINVAL)"
        );
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert_eq!(
            Errno(libc::ENOBUFS).to_string(),
            "No buffer space available (ENOBUFS)"
        );
        assert_eq!(Errno(4000).name(), None);
    }
}
