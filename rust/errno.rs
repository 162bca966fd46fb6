// SPDX-License-Identifier: GPL-2.0

//! Error codes: the `kernel` crate's, and those 6.12's `kernel` crate does
//! not declare.
//!
//! Use this module, not `kernel::error::code` or `bindings::E*`, for every
//! error code, so that all of them come from one place.

use crate::bindings;
pub use kernel::error::code::*;
use kernel::error::Error;

/// Declares an error code that `kernel::error::code` lacks (as a function:
/// `Error` can only be built at run time outside the `kernel` crate).
macro_rules! declare_err {
    ($fn:ident, $err:ident, $doc:literal) => {
        #[doc = $doc]
        pub fn $fn() -> Error {
            Error::from_errno(-(bindings::$err as i32))
        }
    };
}

/// `kernel::error::to_result()` with the test inline: a data-path access
/// (a ring index, a DMA upcall) pays no call out of the module when it
/// succeeds. `r` is 0 or a negative errno.
#[inline(always)]
pub fn errno_result(r: i32) -> Result<(), Error> {
    if r < 0 {
        Err(Error::from_errno(r))
    } else {
        Ok(())
    }
}

declare_err!(enodata, ENODATA, "No data available.");
declare_err!(
    eopnotsupp,
    EOPNOTSUPP,
    "Operation not supported on transport endpoint."
);
declare_err!(eusers, EUSERS, "Too many users.");
