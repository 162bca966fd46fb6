// SPDX-License-Identifier: GPL-2.0

//! Module parameters defined in C, read from Rust without `unsafe`.
//!
//! C header: [`include/linux/moduleparam.h`](srctree/include/linux/moduleparam.h).
//!
//! 6.12's `module!` has no parameters: a module defines each one in its C
//! shim, an `unsigned int` with `module_param_named()` or
//! `module_param_cb()` (whose setter checks the range), and declares a
//! reader of it with [`c_uint!`]:
//!
//! ```ignore
//! // shim.c
//! unsigned int my_module_depth = 16;
//! module_param_named(depth, my_module_depth, uint, 0444);
//!
//! // Rust
//! params::c_uint! {
//!     /// The `depth` module parameter.
//!     fn depth = my_module_depth;
//! }
//! ```
//!
//! The reader is one relaxed atomic load (`READ_ONCE()`): a parameter
//! with a writable mode may change at any time.

/// Declares, for each `fn $name = $sym;`, a `fn $name() -> u32` that reads
/// the module parameter whose C variable is the `unsigned int` named `$sym`
/// (defined in the module's C shim; see the module documentation).
#[macro_export]
macro_rules! params_c_uint {
    ($($(#[$meta:meta])* $vis:vis fn $name:ident = $sym:ident;)+) => {
        $(
            $(#[$meta])*
            $vis fn $name() -> u32 {
                extern "C" {
                    // An `unsigned int` in C; an atomic here, because sysfs
                    // may write it while Rust reads it (same size and
                    // alignment).
                    static $sym: ::core::sync::atomic::AtomicU32;
                }
                // SAFETY: `$sym` is a C `unsigned int` of this module (the
                // macro's contract), alive while the module is; it is only
                // read, atomically.
                unsafe { &$sym }.load(::core::sync::atomic::Ordering::Relaxed)
            }
        )+
    };
}
pub use params_c_uint as c_uint;
