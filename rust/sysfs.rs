// SPDX-License-Identifier: GPL-2.0

//! Typed sysfs attribute groups of a device.
//!
//! C headers: [`include/linux/sysfs.h`](srctree/include/linux/sysfs.h),
//! [`include/linux/device.h`](srctree/include/linux/device.h).
//!
//! A driver describes each attribute as a type that implements
//! [`Attribute`] for the [`Owner`] of the devices it is shown on, and lists
//! them with [`attribute_groups!`], which builds a `&'static`, const,
//! NULL-terminated table of `struct attribute_group` whose `show` and
//! `store` callbacks are the thunks of this module. The thunks find the
//! object of the device ([`Owner::from_device`]), call the attribute's safe
//! methods and turn errors into negative errnos; the driver writes no
//! unsafe code.
//!
//! ```ignore
//! struct Mtu;
//!
//! #[vtable]
//! impl sysfs::Attribute<MyParent> for Mtu {
//!     const NAME: &'static CStr = c_str!("mtu");
//!     fn show(dev: &MyDevice) -> Result<CString> { ... }
//!     fn store(dev: &MyDevice, text: &str) -> Result { ... }
//! }
//!
//! sysfs::attribute_groups! {
//!     static GROUPS: MyParent = [
//!         (None, [Mtu]),
//!         (Some(c_str!("stats")), [RxPackets, TxPackets]),
//!     ];
//! }
//! ```

use crate::bindings;
use crate::errno::{EINVAL, ENODEV};
use core::marker::PhantomData;
use core::ptr;
use kernel::c_str;
use kernel::error::{from_result, VTABLE_DEFAULT_ERROR};
use kernel::ffi::c_char;
use kernel::prelude::*;
use kernel::str::CString;

/// The devices a group of attributes is shown on: how an attribute finds
/// the object it describes from the device sysfs passes.
pub trait Owner: 'static {
    /// The object the attributes describe.
    type Data;

    /// The object of `dev`, or `None` while the device has none.
    ///
    /// # Safety
    ///
    /// `dev` must be a live device on which a group of attributes of this
    /// owner is registered (as sysfs passes to `show` and `store`).
    unsafe fn from_device<'a>(dev: *mut bindings::device) -> Option<&'a Self::Data>;
}

/// One text attribute of the devices of owner `O`.
///
/// The attribute is read-only (mode 0444) unless the implementation has
/// [`Attribute::store`], then it is 0644.
#[vtable]
pub trait Attribute<O: Owner> {
    /// The file name.
    const NAME: &'static CStr;

    /// The value, newline included.
    fn show(data: &O::Data) -> Result<CString>;

    /// Parses `text` (what was written, as UTF-8 without surrounding
    /// whitespace) and applies it.
    fn store(_data: &O::Data, _text: &str) -> Result {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
}

/// The `show` and `store` callbacks of attribute `A` of owner `O`.
struct AttributeVTable<O, A>(PhantomData<(O, A)>);

impl<O: Owner, A: Attribute<O>> AttributeVTable<O, A> {
    /// `device_attribute.show`.
    ///
    /// # Safety
    ///
    /// Called by sysfs with a live device on which a group holding this
    /// attribute is registered and a page-sized buffer `buf`.
    unsafe extern "C" fn show_callback(
        dev: *mut bindings::device,
        _attr: *mut bindings::device_attribute,
        buf: *mut c_char,
    ) -> isize {
        from_result(|| {
            // SAFETY: `dev` carries a group of `O` (the only groups that
            // hold this callback are built by `attribute_groups!` for `O`).
            let data = unsafe { O::from_device(dev) }.ok_or(ENODEV)?;
            let s = A::show(data)?;
            // SAFETY: `buf` is a sysfs page; "%s" consumes one string.
            Ok(
                unsafe { bindings::sysfs_emit(buf, c_str!("%s").as_char_ptr(), s.as_char_ptr()) }
                    as isize,
            )
        })
    }

    /// `device_attribute.store`.
    ///
    /// # Safety
    ///
    /// Called by sysfs with a live device on which a group holding this
    /// attribute is registered and `count` readable bytes at `buf`.
    unsafe extern "C" fn store_callback(
        dev: *mut bindings::device,
        _attr: *mut bindings::device_attribute,
        buf: *const c_char,
        count: usize,
    ) -> isize {
        from_result(|| {
            // SAFETY: as in `show_callback`.
            let data = unsafe { O::from_device(dev) }.ok_or(ENODEV)?;
            // SAFETY: sysfs passes `count` readable bytes, unchanged for the
            // call.
            let bytes = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
            let text = core::str::from_utf8(bytes).map_err(|_| EINVAL)?;
            A::store(data, text.trim())?;
            Ok(count as isize)
        })
    }
}

/// A device attribute of owner `O`, as sysfs sees it.
#[repr(transparent)]
pub struct Attr<O: Owner>(bindings::device_attribute, PhantomData<fn() -> O>);

// SAFETY: the attribute is immutable after its static initialisation; sysfs
// only reads it, from any thread.
unsafe impl<O: Owner> Sync for Attr<O> {}

impl<O: Owner> Attr<O> {
    /// The attribute `A`, for [`attribute_groups!`].
    pub const fn new<A: Attribute<O>>() -> Self {
        // SAFETY: all-zeroes is a valid `device_attribute` (null pointers,
        // `None` callbacks, zeroed lockdep keys of a static attribute).
        let mut a: bindings::device_attribute = unsafe { core::mem::zeroed() };
        a.attr.name = A::NAME.as_char_ptr();
        a.show = Some(AttributeVTable::<O, A>::show_callback);
        if A::HAS_STORE {
            a.attr.mode = 0o644;
            a.store = Some(AttributeVTable::<O, A>::store_callback);
        } else {
            a.attr.mode = 0o444;
        }
        Self(a, PhantomData)
    }
}

/// The NULL-terminated list of the `M - 1` attributes of a group.
#[repr(transparent)]
pub struct AttrList<O: Owner, const M: usize>(
    [*const bindings::attribute; M],
    PhantomData<fn() -> O>,
);

// SAFETY: immutable pointers to immutable statics.
unsafe impl<O: Owner, const M: usize> Sync for AttrList<O, M> {}

impl<O: Owner, const M: usize> AttrList<O, M> {
    /// The list of `attrs`, for [`attribute_groups!`]; `M` is `N + 1`.
    pub const fn new<const N: usize>(attrs: &'static [Attr<O>; N]) -> Self {
        assert!(M == N + 1);
        let mut list = [ptr::null(); M];
        let mut i = 0;
        while i < N {
            list[i] = &attrs[i].0.attr;
            i += 1;
        }
        Self(list, PhantomData)
    }
}

/// An attribute group of owner `O`.
#[repr(transparent)]
pub struct Group<O: Owner>(bindings::attribute_group, PhantomData<fn() -> O>);

// SAFETY: immutable after its static initialisation.
unsafe impl<O: Owner> Sync for Group<O> {}

impl<O: Owner> Group<O> {
    /// A group of `attrs`, in directory `name` (or the device's own), for
    /// [`attribute_groups!`].
    pub const fn new<const M: usize>(
        name: Option<&'static CStr>,
        attrs: &'static AttrList<O, M>,
    ) -> Self {
        Self(
            bindings::attribute_group {
                name: match name {
                    Some(n) => n.as_char_ptr(),
                    None => ptr::null(),
                },
                is_visible: None,
                is_bin_visible: None,
                attrs: attrs.0.as_ptr().cast_mut().cast(),
                bin_attrs: ptr::null_mut(),
            },
            PhantomData,
        )
    }
}

/// The NULL-terminated table of the `G - 1` attribute groups of owner `O`:
/// what [`attribute_groups!`] declares.
#[repr(transparent)]
pub struct Groups<O: Owner, const G: usize>(
    [*const bindings::attribute_group; G],
    PhantomData<fn() -> O>,
);

// SAFETY: immutable pointers to immutable statics.
unsafe impl<O: Owner, const G: usize> Sync for Groups<O, G> {}

impl<O: Owner, const G: usize> Groups<O, G> {
    /// The table of `groups`, for [`attribute_groups!`]; `G` is `N + 1`.
    pub const fn new<const N: usize>(groups: [&'static Group<O>; N]) -> Self {
        assert!(G == N + 1);
        let mut table = [ptr::null(); G];
        let mut i = 0;
        while i < N {
            table[i] = &groups[i].0;
            i += 1;
        }
        Self(table, PhantomData)
    }

    /// The table, for `device_add_groups()` and friends: NULL-terminated,
    /// `'static`, and every callback in it expects a device of `O`.
    pub fn as_raw(&'static self) -> *const *const bindings::attribute_group {
        self.0.as_ptr()
    }
}

/// Declares a static table of attribute groups of an [`Owner`]: for each
/// group, its directory (`None` for the device's own) and its
/// [`Attribute`] types.
#[macro_export]
macro_rules! sysfs_attribute_groups {
    (
        $vis:vis static $name:ident: $owner:ty = [
            $( ($dir:expr, [ $( $attr:ty ),+ $(,)? ]) ),+ $(,)?
        ];
    ) => {
        $vis static $name: $crate::sysfs::Groups<
            $owner,
            { [$( stringify!($dir) ),+].len() + 1 },
        > = $crate::sysfs::Groups::new([$({
            const N: usize = [$( stringify!($attr) ),+].len();
            static ATTRS: [$crate::sysfs::Attr<$owner>; N] =
                [$( $crate::sysfs::Attr::new::<$attr>() ),+];
            static LIST: $crate::sysfs::AttrList<$owner, { N + 1 }> =
                $crate::sysfs::AttrList::new(&ATTRS);
            static GROUP: $crate::sysfs::Group<$owner> =
                $crate::sysfs::Group::new($dir, &LIST);
            &GROUP
        }),+]);
    };
}
pub use sysfs_attribute_groups as attribute_groups;
