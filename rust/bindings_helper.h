/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C APIs that vhost-mdev's Rust code calls and that the 6.12 `kernel`
 * crate does not bind: VFIO, mdev, eventfd, kthread mm switching, vhost_task
 * workers, vDPA bus drivers and vhost IOTLBs, and the vhost/virtio uAPI. bindgen runs over this header with the
 * kernel's own C flags (see Kbuild); rust/helpers.c wraps what is
 * `static inline` here.
 */
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/eventfd.h>
#include <linux/fault-inject.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/iommu.h>
#include <linux/kthread.h>
#include <linux/mdev.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/sched/vhost_task.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/vdpa.h>
#include <linux/vfio.h>
#include <linux/vhost.h>
#include <linux/vhost_iotlb.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <linux/workqueue.h>

#include <uapi/linux/vhost_mdev.h>
#include <linux/vhost_mdev.h>

#include "helpers.h"

/*
 * Constants bindgen cannot see through macros (ioctl numbers). Kbuild strips
 * the prefix from the generated Rust, as the kernel does with
 * RUST_CONST_HELPER_: these are bindings::PAGE_SIZE and so on.
 */
const size_t VHOST_MDEV_CONST_PAGE_SIZE = PAGE_SIZE;
const int VHOST_MDEV_CONST_IOMMU_READ = IOMMU_READ;
const int VHOST_MDEV_CONST_IOMMU_WRITE = IOMMU_WRITE;
const int VHOST_MDEV_CONST_IOMMU_CACHE = IOMMU_CACHE;
const gfp_t VHOST_MDEV_CONST_GFP_KERNEL = GFP_KERNEL;
const unsigned int VHOST_MDEV_CONST_FOLL_WRITE = FOLL_WRITE;
const unsigned int VHOST_MDEV_CONST_FOLL_LONGTERM = FOLL_LONGTERM;
const unsigned int VHOST_MDEV_CONST_VFIO_DEVICE_GET_INFO = VFIO_DEVICE_GET_INFO;
const unsigned int VHOST_MDEV_CONST_VFIO_DEVICE_GET_REGION_INFO = VFIO_DEVICE_GET_REGION_INFO;
const unsigned int VHOST_MDEV_CONST_VFIO_DEVICE_GET_IRQ_INFO = VFIO_DEVICE_GET_IRQ_INFO;
const unsigned int VHOST_MDEV_CONST_VFIO_DEVICE_SET_IRQS = VFIO_DEVICE_SET_IRQS;
const unsigned int VHOST_MDEV_CONST_VFIO_DEVICE_RESET = VFIO_DEVICE_RESET;
const unsigned int VHOST_MDEV_CONST_VFIO_DEVICE_IOEVENTFD = VFIO_DEVICE_IOEVENTFD;
/* The vhost request codes of region 0 (checked in vhost_mdev/proto.rs). */
const unsigned int VHOST_MDEV_CONST_VHOST_GET_FEATURES = VHOST_GET_FEATURES;
const unsigned int VHOST_MDEV_CONST_VHOST_SET_FEATURES = VHOST_SET_FEATURES;
const unsigned int VHOST_MDEV_CONST_VHOST_SET_OWNER = VHOST_SET_OWNER;
const unsigned int VHOST_MDEV_CONST_VHOST_SET_MEM_TABLE = VHOST_SET_MEM_TABLE;
const unsigned int VHOST_MDEV_CONST_VHOST_SET_LOG_BASE = VHOST_SET_LOG_BASE;
const unsigned int VHOST_MDEV_CONST_VHOST_SET_VRING_NUM = VHOST_SET_VRING_NUM;
const unsigned int VHOST_MDEV_CONST_VHOST_SET_VRING_ADDR = VHOST_SET_VRING_ADDR;
const unsigned int VHOST_MDEV_CONST_VHOST_SET_VRING_BASE = VHOST_SET_VRING_BASE;
const unsigned int VHOST_MDEV_CONST_VHOST_GET_VRING_BASE = VHOST_GET_VRING_BASE;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_GET_DEVICE_ID = VHOST_VDPA_GET_DEVICE_ID;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_GET_STATUS = VHOST_VDPA_GET_STATUS;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_SET_STATUS = VHOST_VDPA_SET_STATUS;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_GET_CONFIG = VHOST_VDPA_GET_CONFIG;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_SET_CONFIG = VHOST_VDPA_SET_CONFIG;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_SET_VRING_ENABLE = VHOST_VDPA_SET_VRING_ENABLE;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_GET_VRING_NUM = VHOST_VDPA_GET_VRING_NUM;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_GET_CONFIG_SIZE = VHOST_VDPA_GET_CONFIG_SIZE;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_GET_VQS_COUNT = VHOST_VDPA_GET_VQS_COUNT;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_SUSPEND = VHOST_VDPA_SUSPEND;
const unsigned int VHOST_MDEV_CONST_VHOST_VDPA_RESUME = VHOST_VDPA_RESUME;
const unsigned int VHOST_MDEV_CONST_VHOST_VFIO_SET_VRING_HVA = VHOST_VFIO_SET_VRING_HVA;
