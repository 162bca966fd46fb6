/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vhost-mdev: the vhost protocol over VFIO mediated devices.
 *
 * An instance of a vhost-mdev mdev type is a VFIO device whose mdev type
 * reports device_api "vfio-vhost". See Documentation/uapi.rst.
 *
 * Region 0 (VHOST_VFIO_REGION_MSG) carries vhost requests: a request is one
 * pwrite() of exactly sizeof(struct vhost_vfio_op) + size bytes at offset 0;
 * a reply is read back with one pread() of exactly sizeof(struct
 * vhost_vfio_op) + reply size bytes at offset 0. Region 1
 * (VHOST_VFIO_REGION_NOTIFY) carries kicks: a 2-byte write of the queue index
 * at offset index * PAGE_SIZE. Region offsets follow VFIO: index << 40.
 *
 * All values are host-endian.
 */
#ifndef _UAPI_LINUX_VHOST_MDEV_H
#define _UAPI_LINUX_VHOST_MDEV_H

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vhost_types.h>

/* The mdev type's device_api attribute. */
#define VHOST_VFIO_DEVICE_API		"vfio-vhost"

/* Regions. */
#define VHOST_VFIO_REGION_MSG		0
#define VHOST_VFIO_REGION_NOTIFY	1
#define VHOST_VFIO_NUM_REGIONS		2
#define VHOST_VFIO_MSG_REGION_SIZE	4096
#define VHOST_VFIO_REGION_SHIFT		40

/* IRQ indexes. */
#define VHOST_VFIO_IRQ_VQ		0	/* one per virtqueue */
#define VHOST_VFIO_IRQ_CONFIG		1	/* config space changed */
#define VHOST_VFIO_IRQ_REQ		2	/* the instance is going away */
#define VHOST_VFIO_NUM_IRQS		3

/* struct vhost_vfio_op.flags */
#define VHOST_VFIO_NEED_REPLY		(1U << 0)

/**
 * struct vhost_vfio_op - header of a request or reply on region 0
 * @request: a request code from <linux/vhost.h> (the full ioctl number)
 * @flags: VHOST_VFIO_NEED_REPLY for requests that return data
 * @size: payload bytes that follow the header
 * @payload: the payload, laid out as the ioctl argument of vhost-vdpa
 */
struct vhost_vfio_op {
	__u64 request;
	__u32 flags;
	__u32 size;
	__u8 payload[];
};

/*
 * VHOST_VFIO_SET_VRING_HVA: where the sending process sees the rings of
 * queue @index that VHOST_SET_VRING_ADDR gave as IOVAs: desc_user_addr,
 * avail_user_addr and used_user_addr are addresses in its own address
 * space (flags and log_guest_addr 0), aligned as the rings are. The device
 * loads and stores the ring indexes and event fields there, each as one
 * access, as vhost-net does (a copy through the IOMMU API may tear them).
 * Required before DRIVER_OK for every enabled queue; every such request
 * until the next reset must come from the same address space (else
 * EPERM). A request (on region 0 or as an ioctl on the device fd).
 */
#define VHOST_VFIO_SET_VRING_HVA \
	_IOW(VHOST_VIRTIO, 0xE0, struct vhost_vring_addr)

#define VHOST_VFIO_OP_HDR_SIZE		16
#define VHOST_VFIO_MAX_PAYLOAD \
	(VHOST_VFIO_MSG_REGION_SIZE - VHOST_VFIO_OP_HDR_SIZE)

#endif /* _UAPI_LINUX_VHOST_MDEV_H */
