// SPDX-License-Identifier: GPL-2.0

//! The parent ops of `struct vhost_mdev_device_ops`, listed once.
//!
//! C header: [`include/linux/vhost_mdev.h`](../include/linux/vhost_mdev.h).
//!
//! [`for_each_parent_op!`] hands the list to a macro of its caller: the Rust
//! parent API expands it into the `extern "C"` thunks and the `const` ops
//! table of a parent, the core into the check of the ops a parent must
//! register. An op added to the header is added here, and nowhere else by
//! hand but in the trait method that implements it.
//!
//! Each entry is `kind op => method(args) -> ret [how];`:
//!
//! - `kind` is `required`, or `optional(HAS_METHOD)` for an op the parent
//!   may leave out (the `#[vtable]` constant of the method);
//! - `how` is `value` (the method's value is the op's), `errno` (the method
//!   returns a `Result`, the op 0 or a negative errno) or `custom` (the
//!   thunk is written by hand: it converts pointers).

/// Calls `$m! { entries }` with every op of the header, in its order.
macro_rules! for_each_parent_op {
    ($m:ident) => {
        $m! {
            required get_device_id => device_id() -> u32 [value];
            required get_vendor_id => vendor_id() -> u32 [value];
            required get_device_features => device_features() -> u64 [value];
            required set_driver_features => set_driver_features(features: u64) -> i32 [errno];
            required get_config_size => config_size() -> u32 [value];
            required get_config => get_config() -> () [custom];
            required set_config => set_config() -> () [custom];
            required get_vq_count => vq_count() -> u32 [value];
            required get_vq_num_max => vq_num_max() -> u16 [value];
            required set_vq_num => set_vq_num(idx: u16, num: u32) -> () [value];
            required set_vq_address =>
                set_vq_address(idx: u16, desc: u64, driver: u64, device: u64) -> () [value];
            required set_vq_ready => set_vq_ready(idx: u16, ready: bool) -> () [value];
            required set_vq_base => set_vq_base(idx: u16, base: u32) -> () [value];
            required get_vq_base => get_vq_base(idx: u16) -> u32 [value];
            required kick_vq => kick(idx: u16) -> () [value];
            required start => start() -> i32 [errno];
            required reset => reset() -> () [value];
            optional(HAS_SUSPEND) suspend => suspend() -> i32 [errno];
            optional(HAS_RESUME) resume => resume() -> i32 [errno];
            optional(HAS_DMA_UNMAP) dma_unmap => dma_unmap(iova: u64, len: u64) -> () [value];
            optional(HAS_SET_STATUS) set_status => set_status(status: u8) -> i32 [errno];
            optional(HAS_SET_MEM_TABLE) set_mem_table => set_mem_table() -> i32 [custom];
            optional(HAS_GET_VQ_NOTIFICATION) get_vq_notification =>
                get_vq_notification() -> i32 [custom];
            required destroy => destroy() -> () [custom];
        }
    };
}
pub(crate) use for_each_parent_op;
