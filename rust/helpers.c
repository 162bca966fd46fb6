// SPDX-License-Identifier: GPL-2.0
/*
 * Out-of-line wrappers of `static inline` C functions that Rust calls.
 * Included by each module's shim (a C object cannot belong to two modules).
 */
#include <linux/device.h>
#include <linux/err.h>
#include <linux/highmem.h>
#include <linux/kcov.h>
#include <linux/ktime.h>
#include <linux/eventfd.h>
#include <linux/mdev.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/stat.h>
#include <linux/uaccess.h>
#include <linux/vdpa.h>
#include <linux/vfio.h>
#include <linux/workqueue.h>

#include "helpers.h"

struct vfio_device *vhost_mdev_helper_vfio_alloc_device(size_t size, struct device *dev,
						const struct vfio_device_ops *ops)
{
	return _vfio_alloc_device(size, dev, ops);
}

void vhost_mdev_helper_vfio_put_device(struct vfio_device *vdev)
{
	vfio_put_device(vdev);
}

void vhost_mdev_helper_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx);
}

void *vhost_mdev_helper_err_ptr(long err)
{
	return ERR_PTR(err);
}

bool vhost_mdev_helper_is_err(const void *ptr)
{
	return IS_ERR(ptr);
}

long vhost_mdev_helper_ptr_err(const void *ptr)
{
	return PTR_ERR(ptr);
}

struct mdev_device *vhost_mdev_helper_to_mdev_device(struct device *dev)
{
	return to_mdev_device(dev);
}

void *vhost_mdev_helper_dev_get_drvdata(const struct device *dev)
{
	return dev_get_drvdata(dev);
}

void vhost_mdev_helper_dev_set_drvdata(struct device *dev, void *data)
{
	dev_set_drvdata(dev, data);
}

struct module *vhost_mdev_helper_this_module(void)
{
	return THIS_MODULE;
}

struct mm_struct *vhost_mdev_helper_current_mm(void)
{
	return current->mm;
}

void vhost_mdev_helper_mmgrab(struct mm_struct *mm)
{
	mmgrab(mm);
}

void vhost_mdev_helper_mmdrop(struct mm_struct *mm)
{
	mmdrop(mm);
}

bool vhost_mdev_helper_mmget_not_zero(struct mm_struct *mm)
{
	return mmget_not_zero(mm);
}

bool vhost_mdev_helper_current_is_kthread(void)
{
	return current->flags & PF_KTHREAD;
}

/*
 * The address of @page in the kernel's direct map, or NULL for a highmem
 * page (which has none unless mapped with kmap).
 */
void *vhost_mdev_helper_page_address_lowmem(struct page *page)
{
	return PageHighMem(page) ? NULL : page_address(page);
}

u64 vhost_mdev_helper_page_to_phys(struct page *page)
{
	return page_to_phys(page);
}

void vhost_mdev_helper_cond_resched(void)
{
	cond_resched();
}

/*
 * One 2-byte load or store at a user address of the current mm: get_user()
 * and put_user() of a u16 are a single access (a naturally aligned one is
 * single-copy atomic), unlike copy_{from,to}_user(), which may copy a byte
 * at a time.
 */
int vhost_mdev_helper_get_user_u16(u16 *val, u64 uaddr)
{
	return get_user(*val, (u16 __user *)(uintptr_t)uaddr);
}

int vhost_mdev_helper_put_user_u16(u16 val, u64 uaddr)
{
	return put_user(val, (u16 __user *)(uintptr_t)uaddr);
}

bool vhost_mdev_helper_need_resched(void)
{
	return need_resched();
}

void vhost_mdev_helper_set_current_running(void)
{
	__set_current_state(TASK_RUNNING);
}

void vhost_mdev_helper_rcu_read_lock(void)
{
	rcu_read_lock();
}

void vhost_mdev_helper_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

void vhost_mdev_helper_cpu_relax(void)
{
	cpu_relax();
}

u64 vhost_mdev_helper_ktime_get_ns(void)
{
	return ktime_get_ns();
}

/*
 * Whether a worker may go on polling: nothing else wants this CPU (as for
 * KVM's halt polling: no other runnable task here, no reschedule asked).
 */
bool vhost_mdev_helper_may_poll(void)
{
	return !need_resched() && single_task_running();
}

unsigned long vhost_mdev_helper_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void vhost_mdev_helper_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

const char *vhost_mdev_helper_dev_name(const struct device *dev)
{
	return dev_name(dev);
}

int vhost_mdev_helper_vdpa_reset(struct vdpa_device *vdev, u32 flags)
{
	return vdpa_reset(vdev, flags);
}

int vhost_mdev_helper_vdpa_set_features(struct vdpa_device *vdev, u64 features)
{
	return vdpa_set_features(vdev, features);
}

struct device *vhost_mdev_helper_vdpa_get_dma_dev(struct vdpa_device *vdev)
{
	return vdpa_get_dma_dev(vdev);
}

unsigned long vhost_mdev_helper_vma_pgoff(const struct vm_area_struct *vma)
{
	return vma->vm_pgoff;
}

unsigned long vhost_mdev_helper_vma_len(const struct vm_area_struct *vma)
{
	return vma->vm_end - vma->vm_start;
}

/*
 * Maps the page at @addr (a doorbell) over the whole of @vma, which must be
 * one page, shared and neither readable nor executable (as vhost-vdpa's
 * doorbell mmap): I/O memory uncached, a RAM page (a software device's) as
 * the kernel maps it.
 */
int vhost_mdev_helper_mmap_doorbell(struct vm_area_struct *vma, phys_addr_t addr)
{
	unsigned long pfn = PHYS_PFN(addr);
	pgprot_t prot = vma->vm_page_prot;

	if (!(vma->vm_flags & VM_SHARED) || (vma->vm_flags & (VM_READ | VM_EXEC)) ||
	    vma->vm_end - vma->vm_start != PAGE_SIZE || offset_in_page(addr))
		return -EINVAL;
	if (!page_is_ram(pfn))
		prot = pgprot_noncached(prot);
	vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vm_flags_clear(vma, VM_MAYREAD | VM_MAYEXEC);
	return io_remap_pfn_range(vma, vma->vm_start, pfn, PAGE_SIZE, prot);
}

/* Whether the caller runs in a hard IRQ handler (in_hardirq()). */
bool vhost_mdev_helper_in_hardirq(void)
{
	return in_hardirq();
}

#ifdef CONFIG_KCOV
/*
 * Remote KCOV coverage of a device's worker (rust/kcov.rs): the common
 * handle of the current task (0 outside a task or without a collector),
 * and a section whose coverage goes to the collector with that handle.
 */
u64 vhost_mdev_helper_kcov_common_handle(void)
{
	return kcov_common_handle();
}

void vhost_mdev_helper_kcov_remote_start_common(u64 id)
{
	kcov_remote_start_common(id);
}

void vhost_mdev_helper_kcov_remote_stop(void)
{
	kcov_remote_stop();
}
#endif
