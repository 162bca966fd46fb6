/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost-mdev parent driver interface.
 *
 * A parent driver registers a parent with one or more mdev types. Each mdev
 * instance of such a type is created by the parent's create() callback and
 * becomes a VFIO device whose vhost requests the core (vhost_mdev.ko) maps
 * onto the vDPA-style device ops below. See Documentation/parent-drivers.rst.
 *
 * Context rules:
 *  - Every op except kick_vq() and get_vq_notification() is called in
 *    process context, serialised by the core's per-instance state mutex;
 *    they may sleep.
 *  - kick_vq() may be called in atomic context (from an eventfd wake-up):
 *    it may only queue work, never sleep and never signal an eventfd.
 *  - reset() must quiesce the device: when it returns, no work of the
 *    instance runs and no DMA is in flight.
 *
 * The interface is versioned: a parent sets .abi_version of its
 * vhost_mdev_parent_info to VHOST_MDEV_ABI_VERSION, and the core refuses a
 * parent built against another version (MODVERSIONS covers neither a
 * changed struct layout nor Rust parents). See the history in
 * Documentation/parent-drivers.rst.
 */
#ifndef _LINUX_VHOST_MDEV_H
#define _LINUX_VHOST_MDEV_H

#include <linux/types.h>

struct device;
struct module;
struct attribute_group;
struct page;
struct mm_struct;
struct vhost_mdev_parent;
struct vhost_mdev_device;

/*
 * 1: the first interface (no version field).
 * 2: .abi_version; a 32-bit vring base; the set_status, set_mem_table and
 *    get_vq_notification ops; vq_interrupt from any context;
 *    vhost_mdev_register_parent_on(); vhost_mdev_dma_pin()/_unpin();
 *    vhost_mdev_log_write(), vhost_mdev_opener_mm().
 */
#define VHOST_MDEV_ABI_VERSION 2

/**
 * struct vhost_mdev_mem_region - one region of the driver's memory table
 * @guest_phys_addr: the region's IOVA (the guest-physical address with no
 *                   vIOMMU)
 * @size: its length in bytes
 * @userspace_addr: where the VMM that sent the table sees it
 */
struct vhost_mdev_mem_region {
	u64 guest_phys_addr;
	u64 size;
	u64 userspace_addr;
};

/* Most regions of a memory table (vhost's default max_mem_regions). */
#define VHOST_MDEV_MAX_MEM_REGIONS 64

/**
 * struct vhost_mdev_vq_notify_area - a queue's doorbell, for mmap
 * @addr: physical address of the doorbell's page-aligned area
 * @size: its length, a multiple of PAGE_SIZE
 */
struct vhost_mdev_vq_notify_area {
	phys_addr_t addr;
	u64 size;
};

/**
 * struct vhost_mdev_device_ops - operations of one instance
 *
 * @priv of each callback is the pointer that the parent's create() returned.
 * Queue indexes are checked by the core (< get_vq_count()); ring sizes are
 * checked to be powers of two no larger than get_vq_num_max().
 */
struct vhost_mdev_device_ops {
	u32 (*get_device_id)(void *priv);
	u32 (*get_vendor_id)(void *priv);
	u64 (*get_device_features)(void *priv);
	/* Called when the driver sets FEATURES_OK. Non-zero keeps it clear. */
	int (*set_driver_features)(void *priv, u64 features);
	u32 (*get_config_size)(void *priv);
	/* The range is checked by the core against get_config_size(). */
	void (*get_config)(void *priv, u32 offset, void *buf, u32 len);
	void (*set_config)(void *priv, u32 offset, const void *buf, u32 len);
	/*
	 * 1 to 1024 queues. Called at create and again at every first open:
	 * the count may change while the device is closed (is_open() is
	 * already true when the core reads it at open).
	 */
	u32 (*get_vq_count)(void *priv);
	u16 (*get_vq_num_max)(void *priv);
	void (*set_vq_num)(void *priv, u16 idx, u32 num);
	void (*set_vq_address)(void *priv, u16 idx, u64 desc, u64 driver,
			       u64 device);
	void (*set_vq_ready)(void *priv, u16 idx, bool ready);
	/*
	 * The vring base in vhost's encoding (drivers/vhost/vhost.c): split
	 * rings use bits 0-15 (the next available index; the core passes
	 * bits 16-31 as 0 and ignores them on get); packed rings carry
	 * last_avail_idx | avail_wrap << 15 in bits 0-15 and
	 * last_used_idx | used_wrap << 15 in bits 16-31.
	 */
	void (*set_vq_base)(void *priv, u16 idx, u32 base);
	u32 (*get_vq_base)(void *priv, u16 idx);
	/* May be called in atomic context: queue work only. */
	void (*kick_vq)(void *priv, u16 idx);
	/* DRIVER_OK: start processing the enabled queues. */
	int (*start)(void *priv);
	/* Status 0, close or removal: stop, quiesce, forget queue state. */
	void (*reset)(void *priv);
	/* Optional. suspend() returns once the device is quiet. */
	int (*suspend)(void *priv);
	int (*resume)(void *priv);
	/* Optional. Drop every translation of [iova, iova + len) before returning. */
	void (*dma_unmap)(void *priv, u64 iova, u64 len);
	/*
	 * Optional (ABI 2). Told of every non-zero status the driver writes
	 * that passed the core's checks: after set_driver_features() when it
	 * sets FEATURES_OK (an error then keeps FEATURES_OK clear, as a
	 * device that refuses the features does), before start() when it
	 * sets DRIVER_OK (an error then fails the request and changes
	 * nothing). For devices with a status of their own (vDPA).
	 */
	int (*set_status)(void *priv, u8 status);
	/*
	 * Optional (ABI 2). The driver's memory table (VHOST_SET_MEM_TABLE),
	 * for devices that must make its pages resident themselves. Called
	 * in any status (a VMM sends a new table whenever its memory map
	 * changes, also while the device runs) with the whole new table,
	 * which replaces the last one. The core checked it: 0 to
	 * VHOST_MDEV_MAX_MEM_REGIONS regions, none empty, no range that
	 * wraps (IOVA or user address), no two IOVA ranges overlapping; page
	 * alignment is the parent's to require. @regions is valid for the
	 * call only (not to be dereferenced when @nregions is 0). An error
	 * fails the request; the parent then keeps its previous table.
	 * Without the op the request succeeds and the table is ignored.
	 */
	int (*set_mem_table)(void *priv, const struct vhost_mdev_mem_region *regions,
			     u32 nregions);
	/*
	 * Optional (ABI 2). The doorbell of queue @idx (< get_vq_count()),
	 * which the core maps into the opener's region 1 instead of trapping
	 * its writes: a page-aligned area of whole pages, the doorbell at its
	 * start, that the device keeps while the instance exists (a mapping
	 * may outlive a reset). Called in process context while the device
	 * is open, without the state mutex and possibly under the opener's
	 * mmap lock: return a fixed answer, taking no lock that another op
	 * holds. An error, or an area that is not page-aligned, means the
	 * queue has no mappable doorbell.
	 */
	int (*get_vq_notification)(void *priv, u16 idx,
				   struct vhost_mdev_vq_notify_area *area);
	/* Called once when the instance is destroyed (after reset). */
	void (*destroy)(void *priv);
};

/**
 * struct vhost_mdev_type_info - one mdev type of a parent
 * @sysfs_name: the type's directory under mdev_supported_types is
 *              "<parent name>-<sysfs_name>"
 * @pretty_name: the type's "name" attribute
 * @description: the type's "description" attribute
 * @max_instances: instances of this type that may exist at once
 */
struct vhost_mdev_type_info {
	const char *sysfs_name;
	const char *pretty_name;
	const char *description;
	unsigned int max_instances;
};

/**
 * struct vhost_mdev_parent_info - what a parent driver registers
 * @abi_version: VHOST_MDEV_ABI_VERSION of the header the parent was built
 *               with (the first member in every version)
 * @name: the parent device's name (and class name): types are named
 *        "<name>-<sysfs_name>"
 * @owner: the parent driver's module
 * @types: @ntypes mdev types
 * @dev_groups: optional per-instance sysfs attribute groups, added to each
 *              instance's mdev device; vhost_mdev_priv_from_dev() maps the
 *              attribute's device back to the instance
 * @create: create instance of type @type_index; returns the parent's
 *          instance pointer (passed back as @priv) or an ERR_PTR
 * @ops: the instances' device ops
 * @priv: passed to create()
 */
struct vhost_mdev_parent_info {
	u32 abi_version;
	const char *name;
	struct module *owner;
	const struct vhost_mdev_type_info *types;
	unsigned int ntypes;
	const struct attribute_group **dev_groups;
	void *(*create)(void *parent_priv, struct vhost_mdev_device *vdev,
			unsigned int type_index);
	const struct vhost_mdev_device_ops *ops;
	void *priv;
};

struct vhost_mdev_parent *
vhost_mdev_register_parent(const struct vhost_mdev_parent_info *info);
/*
 * ABI 2: the same, for a parent that serves an existing device (a vDPA
 * device): the parent's mdev device becomes a child of @dev, which must
 * stay registered until vhost_mdev_unregister_parent() returns.
 */
struct vhost_mdev_parent *
vhost_mdev_register_parent_on(struct device *dev,
			      const struct vhost_mdev_parent_info *info);
void vhost_mdev_unregister_parent(struct vhost_mdev_parent *parent);

/*
 * Upcalls from a parent's instance, valid from the parent's create() until
 * its destroy(). vhost_mdev_vq_interrupt() may be called from any context,
 * hard IRQ handlers included (ABI 2: vDPA hardware signals from its IRQ
 * handler); config_changed() and needs_reset() from process context only
 * (a worker), not from IRQ handlers and not from an eventfd wake-up.
 */
void vhost_mdev_vq_interrupt(struct vhost_mdev_device *vdev, u16 idx);
void vhost_mdev_config_changed(struct vhost_mdev_device *vdev);
void vhost_mdev_needs_reset(struct vhost_mdev_device *vdev);
/*
 * Process context, from the worker that serves the instance, while the
 * device is open and started (reset() stops the worker before close).
 * A naturally aligned 2-byte access inside a ring of a configured queue
 * (descriptor table, driver area up to used_event, device area up to
 * avail_event) is single-copy atomic on every DMA back end: through the pin
 * cache with iommufd, else one get_user()/put_user() at the address the VMM
 * gave with VHOST_VFIO_SET_VRING_HVA. Read and write ring indexes and event
 * fields only with such 2-byte accesses: a longer or unaligned access may
 * be copied a byte at a time.
 */
int vhost_mdev_dma_rw(struct vhost_mdev_device *vdev, u64 iova, void *buf,
		      size_t len, bool write);
/*
 * Same context. Copies guest memory to guest memory without a bounce
 * buffer, through pages the core pinned and caches (only for a device bound
 * to iommufd). Returns -EOPNOTSUPP when it cannot serve the copy (type1, a
 * failed pin, an unmapped IOVA); part of the destination may have been
 * written by then, and the parent redoes the copy through a buffer of its
 * own with vhost_mdev_dma_rw(), which reports the real error. Overlapping
 * ranges are copied page piece by page piece, not as one memmove(). With
 * iommufd, vhost_mdev_dma_rw() also goes through the cache, and does a
 * naturally aligned 2-, 4- or 8-byte access as one load or store.
 */
int vhost_mdev_dma_copy(struct vhost_mdev_device *vdev, u64 dst, u64 src,
			size_t len);
/*
 * Any context, while the instance exists. Whether vhost_mdev_dma_copy() can
 * work for the current opening of the device (it is bound to iommufd), so
 * that a parent picks its data path once per worker run.
 */
bool vhost_mdev_dma_can_copy(struct vhost_mdev_device *vdev);
/*
 * A worker brackets a batch of vhost_mdev_dma_rw() calls with these: the
 * worker adopts the address space of the process that opened the device
 * (kthread_use_mm()), so that VFIO does not switch it for every call.
 * Only from a kthread (a workqueue worker), never nested. With a type1
 * container, DMA then works only for mappings made by that same process
 * (as a VMM does); VFIO refuses the others. When begin fails (-ESRCH: the
 * opener has exited) or an access in the session fails, end the session and
 * use vhost_mdev_dma_rw() without one: VFIO then uses the address space of
 * whoever mapped the memory, per access (the sample parent does this).
 */
int vhost_mdev_dma_begin(struct vhost_mdev_device *vdev);
void vhost_mdev_dma_end(struct vhost_mdev_device *vdev);
/*
 * ABI 2. Process context, while the device is open. Pins @npages pages
 * from the page-aligned @iova for a device that does its own DMA (through
 * iommufd: the vfio cdev or iommufd's compat container, as
 * vfio_pin_pages()); @pages receives them. Returns the number pinned or a
 * negative errno (-EINVAL when the device is not open, -E2BIG above 512
 * pages, -EOPNOTSUPP when it is open through a type1 container: unpinning
 * from type1's unmap notifier is a lock inversion inside 6.12's type1, see
 * parent-drivers.rst; VFIO's error, e.g. -ENOENT for an IOVA not mapped,
 * -EPERM for a write pin of a read-only mapping, -ENOMEM at
 * RLIMIT_MEMLOCK). Hold no lock that dma_unmap() takes across the call:
 * iommufd may call it meanwhile. The parent's dma_unmap() op must unpin
 * (vhost_mdev_dma_unpin(), exactly the @iova and @npages pinned) every
 * page of a range the VMM unmaps before it returns: a parent that pins
 * must implement dma_unmap().
 */
int vhost_mdev_dma_pin(struct vhost_mdev_device *vdev, u64 iova, int npages,
		       bool write, struct page **pages);
void vhost_mdev_dma_unpin(struct vhost_mdev_device *vdev, u64 iova, int npages);
/*
 * ABI 2. Any context. Marks [iova, iova + len) dirty in the vhost dirty log
 * (VHOST_SET_LOG_BASE) while the driver has logging on (VHOST_F_LOG_ALL),
 * for a parent whose device writes guest memory by other means than
 * vhost_mdev_dma_rw() and vhost_mdev_dma_copy() (which log by themselves);
 * call it after the write is done. Does nothing while the driver does not
 * log. A parent offers VHOST_F_LOG_ALL (bit 26) in get_device_features()
 * only when every write of its device is logged so: the core then keeps
 * the log for it, owns the bit (set_driver_features() never sees it) and
 * lets the VMM toggle it while the device runs. See parent-drivers.rst,
 * "Live migration".
 */
void vhost_mdev_log_write(struct vhost_mdev_device *vdev, u64 iova, u64 len);
/*
 * ABI 2. From a parent op other than kick_vq() (the core holds the
 * instance's state lock, which close takes too), while the device is open:
 * the address space of the process that opened the device, with an
 * mmgrab() reference the caller drops with mmdrop(); NULL when the device
 * is not open or its opener had none. For a parent whose device works on
 * the opener's virtual addresses (a vDPA device in VA mode: bind_mm()).
 */
struct mm_struct *vhost_mdev_opener_mm(struct vhost_mdev_device *vdev);
void *vhost_mdev_priv_from_dev(struct device *dev);
const u8 *vhost_mdev_uuid(struct vhost_mdev_device *vdev);
/*
 * Whether a user has the device open: true from the start of the first
 * open (before the core reads get_vq_count()) to the end of the last close.
 */
bool vhost_mdev_is_open(struct vhost_mdev_device *vdev);

#endif /* _LINUX_VHOST_MDEV_H */
