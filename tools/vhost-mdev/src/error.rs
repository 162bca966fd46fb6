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
    /// The parent does not offer what was asked (an attribute); the
    /// message says what it offers.
    #[error("{0}")]
    NotOffered(String),
    /// A type has no room for another instance.
    #[error("{0}")]
    NoAvailableInstances(String),
}

/// What kind of failure an error is: each has its own exit status of the
/// CLI (see [`Class::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The device, the kernel or the system failed the operation.
    Device,
    /// A command line or argument the command does not accept.
    Usage,
    /// The parent, type, instance or attribute does not exist.
    NotFound,
    /// Another process holds the device, or it is open.
    Busy,
    /// Not allowed (EACCES, EPERM).
    Permission,
    /// The type has no available instances.
    NoAvailableInstances,
}

impl Class {
    /// The CLI's exit status (documented in Documentation/cli.rst and the
    /// man page): 1 device error, 2 usage, 3 not found, 4 busy,
    /// 5 permission denied, 6 no available instances.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Device => 1,
            Class::Usage => 2,
            Class::NotFound => 3,
            Class::Busy => 4,
            Class::Permission => 5,
            Class::NoAvailableInstances => 6,
        }
    }
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

    /// What kind of failure this is.
    pub fn class(&self) -> Class {
        match self {
            Error::NotFound(_) | Error::NotOffered(_) => return Class::NotFound,
            Error::InUse(_) => return Class::Busy,
            Error::InvalidArgument(_) => return Class::Usage,
            Error::NoAvailableInstances(_) => return Class::NoAvailableInstances,
            _ => {}
        }
        match self.errno() {
            Some(libc::EACCES | libc::EPERM) => Class::Permission,
            Some(libc::EBUSY) => Class::Busy,
            Some(libc::ENOENT | libc::ENODEV) => Class::NotFound,
            _ => Class::Device,
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
    fn classes_have_distinct_exit_codes() {
        let sysfs = |e| Error::Sysfs {
            path: "/sys/x".into(),
            source: io::Error::from_raw_os_error(e),
        };
        let cases = [
            (Error::Protocol("x".into()), Class::Device),
            (Error::InvalidArgument("x".into()), Class::Usage),
            (Error::NotFound("x".into()), Class::NotFound),
            (Error::NotOffered("x".into()), Class::NotFound),
            (Error::InUse("x".into()), Class::Busy),
            (sysfs(libc::EBUSY), Class::Busy),
            (sysfs(libc::EACCES), Class::Permission),
            (
                Error::Sys {
                    op: "open /dev/vfio/3".into(),
                    errno: Errno(libc::EPERM),
                },
                Class::Permission,
            ),
            (sysfs(libc::EIO), Class::Device),
            (
                Error::NoAvailableInstances("x".into()),
                Class::NoAvailableInstances,
            ),
        ];
        for (e, c) in &cases {
            assert_eq!(e.class(), *c, "{e}");
        }
        let mut codes: Vec<u8> = [
            Class::Device,
            Class::Usage,
            Class::NotFound,
            Class::Busy,
            Class::Permission,
            Class::NoAvailableInstances,
        ]
        .iter()
        .map(|c| c.exit_code())
        .collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6]);
    }

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
