/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Out-of-line wrappers of `static inline` C functions and macros that Rust
 * cannot call directly. Each is a one-line forward; see rust/helpers.c.
 */
#ifndef VHOST_MDEV_RUST_HELPERS_H
#define VHOST_MDEV_RUST_HELPERS_H

#include <linux/eventfd.h>
#include <linux/mdev.h>
#include <linux/vfio.h>
#include <linux/workqueue.h>

struct vm_area_struct;

struct page;
struct vdpa_device;

struct vfio_device *vhost_mdev_helper_vfio_alloc_device(size_t size, struct device *dev,
						const struct vfio_device_ops *ops);
void vhost_mdev_helper_vfio_put_device(struct vfio_device *vdev);
void vhost_mdev_helper_eventfd_signal(struct eventfd_ctx *ctx);
void *vhost_mdev_helper_err_ptr(long err);
bool vhost_mdev_helper_is_err(const void *ptr);
long vhost_mdev_helper_ptr_err(const void *ptr);
struct mdev_device *vhost_mdev_helper_to_mdev_device(struct device *dev);
void *vhost_mdev_helper_dev_get_drvdata(const struct device *dev);
void vhost_mdev_helper_dev_set_drvdata(struct device *dev, void *data);
struct module *vhost_mdev_helper_this_module(void);
struct mm_struct *vhost_mdev_helper_current_mm(void);
void vhost_mdev_helper_mmgrab(struct mm_struct *mm);
void vhost_mdev_helper_mmdrop(struct mm_struct *mm);
bool vhost_mdev_helper_mmget_not_zero(struct mm_struct *mm);
bool vhost_mdev_helper_current_is_kthread(void);
void *vhost_mdev_helper_page_address_lowmem(struct page *page);
u64 vhost_mdev_helper_page_to_phys(struct page *page);
void vhost_mdev_helper_cond_resched(void);
int vhost_mdev_helper_get_user_u16(u16 *val, u64 uaddr);
int vhost_mdev_helper_put_user_u16(u16 val, u64 uaddr);
bool vhost_mdev_helper_need_resched(void);
void vhost_mdev_helper_set_current_running(void);
void vhost_mdev_helper_rcu_read_lock(void);
void vhost_mdev_helper_rcu_read_unlock(void);
void vhost_mdev_helper_cpu_relax(void);
u64 vhost_mdev_helper_ktime_get_ns(void);
bool vhost_mdev_helper_may_poll(void);
unsigned long vhost_mdev_helper_spin_lock_irqsave(spinlock_t *lock);
void vhost_mdev_helper_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);
const char *vhost_mdev_helper_dev_name(const struct device *dev);
int vhost_mdev_helper_vdpa_reset(struct vdpa_device *vdev, u32 flags);
int vhost_mdev_helper_vdpa_set_features(struct vdpa_device *vdev, u64 features);
struct device *vhost_mdev_helper_vdpa_get_dma_dev(struct vdpa_device *vdev);
unsigned long vhost_mdev_helper_vma_pgoff(const struct vm_area_struct *vma);
unsigned long vhost_mdev_helper_vma_len(const struct vm_area_struct *vma);
int vhost_mdev_helper_mmap_doorbell(struct vm_area_struct *vma, phys_addr_t addr);
bool vhost_mdev_helper_in_hardirq(void);
#ifdef CONFIG_KCOV
u64 vhost_mdev_helper_kcov_common_handle(void);
void vhost_mdev_helper_kcov_remote_start_common(u64 id);
void vhost_mdev_helper_kcov_remote_stop(void);
#endif

struct fault_attr;
/*
 * The fault attribute of the core's fault point @point (0 DMA, 1 pin,
 * 2 copy), or NULL: defined by vhost_mdev/shim.c with CONFIG_FAULT_INJECTION
 * only (rust/fault_inject.rs).
 */
struct fault_attr *vhost_mdev_fault_attr(unsigned int point);

#endif
