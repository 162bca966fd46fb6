// SPDX-License-Identifier: GPL-2.0
/*
 * c_parent: a test-only parent driver written in C against
 * include/linux/vhost_mdev.h, for what the Rust sample cannot show:
 *
 *  - abi=N registers with .abi_version = N: the core refuses any version
 *    but its own (insmod then fails with EINVAL);
 *  - the parent registers on a device of its own (a root device,
 *    /sys/devices/vhost_mdev_c_parent) with vhost_mdev_register_parent_on();
 *  - writing a queue index to the instance's "fire_irq" attribute makes
 *    it call vhost_mdev_vq_interrupt() for that queue from a hard IRQ (an
 *    hrtimer in HRTIMER_MODE_REL_HARD, 1 ms later; EBUSY while one is
 *    pending); lockdep reports it if the core's IRQ lock is not IRQ-safe.
 *    "hardirq_interrupts" counts the calls made in hard IRQ context,
 *    "other_interrupts" those that were not (a test expects 0);
 *  - set_mem_table: "mem_table" shows the number of tables received, then
 *    the last one, a region a line ("<iova> <size> <uaddr>" in hex);
 *  - get_vq_notification: every queue's doorbell is one zeroed page of
 *    the instance, which the core maps into region 1; "doorbell" shows
 *    the 16-bit value at its start (what a write through the mapping
 *    left there);
 *  - set_status: "status" shows the last status forwarded (0 after a
 *    reset); with 1 in "refuse_features_ok" the device refuses FEATURES_OK
 *    (set_status() fails for a status with it), as a vDPA device may;
 *  - the instance's "nvqs" attribute sets its queue count (any value up to
 *    C_MAX_VQS, refused with EBUSY while the device is open), which the
 *    core reads again at every open and checks (1 to 1024).
 *
 * Its device has two queues (by default) and moves no data. Not installed; built only
 * for the test kernel.
 */
#include <linux/device.h>
#include <linux/hardirq.h>
#include <linux/gfp.h>
#include <linux/hrtimer.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/vhost_mdev.h>
#include <linux/virtio_config.h>

static uint abi = VHOST_MDEV_ABI_VERSION;
module_param(abi, uint, 0444);
MODULE_PARM_DESC(abi, "ABI version to claim at registration (test only)");

/* Beyond the core's limit (1024), to test its check. */
#define C_MAX_VQS 2048

struct c_inst {
	struct vhost_mdev_device *vdev;
	struct hrtimer timer;
	/* The queue the pending timer signals; 1 while one is pending. */
	u16 irq_idx;
	atomic_t irq_pending;
	atomic_t fired;
	atomic_t fired_elsewhere;
	/* Serialises nvqs with vhost_mdev_is_open() (see the header). */
	struct mutex lock;
	u32 nvqs;
	/* Under lock: what the core forwarded. */
	u32 mem_tables;
	u32 nregions;
	struct vhost_mdev_mem_region regions[VHOST_MDEV_MAX_MEM_REGIONS];
	u8 status;
	bool refuse_features_ok;
	/* The doorbell page of every queue (get_vq_notification). */
	struct page *doorbell;
	u32 base[C_MAX_VQS];
};

static enum hrtimer_restart c_timer(struct hrtimer *t)
{
	struct c_inst *c = container_of(t, struct c_inst, timer);

	bool hard = in_hardirq();

	vhost_mdev_vq_interrupt(c->vdev, c->irq_idx);
	/* Free for the next write before the count says this one is done. */
	atomic_set_release(&c->irq_pending, 0);
	atomic_inc(hard ? &c->fired : &c->fired_elsewhere);
	return HRTIMER_NORESTART;
}

static u32 c_device_id(void *p) { return 1; }
static u32 c_vendor_id(void *p) { return 0; }
static u64 c_features(void *p)
{
	return BIT_ULL(VIRTIO_F_VERSION_1) | BIT_ULL(VIRTIO_F_ACCESS_PLATFORM);
}
static int c_set_features(void *p, u64 f) { return 0; }
static u32 c_config_size(void *p) { return 0; }
static void c_get_config(void *p, u32 off, void *buf, u32 len) { }
static void c_set_config(void *p, u32 off, const void *buf, u32 len) { }
static u32 c_vq_count(void *p)
{
	struct c_inst *c = p;
	u32 n;

	mutex_lock(&c->lock);
	n = c->nvqs;
	mutex_unlock(&c->lock);
	return n;
}
static u16 c_vq_num_max(void *p) { return 256; }
static void c_set_vq_num(void *p, u16 idx, u32 num) { }
static void c_set_vq_address(void *p, u16 idx, u64 d, u64 drv, u64 dev) { }
static void c_set_vq_ready(void *p, u16 idx, bool ready) { }
static void c_set_vq_base(void *p, u16 idx, u32 base)
{
	((struct c_inst *)p)->base[idx] = base;
}
static u32 c_get_vq_base(void *p, u16 idx)
{
	return ((struct c_inst *)p)->base[idx];
}
static void c_kick(void *p, u16 idx) { }
static int c_start(void *p) { return 0; }
static void c_reset(void *p)
{
	struct c_inst *c = p;

	memset(c->base, 0, sizeof(c->base));
	mutex_lock(&c->lock);
	c->status = 0;
	mutex_unlock(&c->lock);
}

static int c_set_status(void *p, u8 status)
{
	struct c_inst *c = p;
	int ret = 0;

	mutex_lock(&c->lock);
	if (c->refuse_features_ok && (status & VIRTIO_CONFIG_S_FEATURES_OK))
		ret = -EINVAL;
	else
		c->status = status;
	mutex_unlock(&c->lock);
	return ret;
}

static int c_get_vq_notification(void *p, u16 idx,
				 struct vhost_mdev_vq_notify_area *area)
{
	struct c_inst *c = p;

	area->addr = page_to_phys(c->doorbell);
	area->size = PAGE_SIZE;
	return 0;
}

static int c_set_mem_table(void *p, const struct vhost_mdev_mem_region *regions,
			   u32 nregions)
{
	struct c_inst *c = p;

	/* The core promises at most VHOST_MDEV_MAX_MEM_REGIONS. */
	if (WARN_ON(nregions > VHOST_MDEV_MAX_MEM_REGIONS))
		return -E2BIG;
	mutex_lock(&c->lock);
	c->mem_tables++;
	c->nregions = nregions;
	if (nregions)
		memcpy(c->regions, regions, nregions * sizeof(*regions));
	mutex_unlock(&c->lock);
	return 0;
}

static void c_destroy(void *p)
{
	struct c_inst *c = p;

	hrtimer_cancel(&c->timer);
	__free_page(c->doorbell);
	kvfree(c);
}

static const struct vhost_mdev_device_ops c_ops = {
	.get_device_id = c_device_id,
	.get_vendor_id = c_vendor_id,
	.get_device_features = c_features,
	.set_driver_features = c_set_features,
	.get_config_size = c_config_size,
	.get_config = c_get_config,
	.set_config = c_set_config,
	.get_vq_count = c_vq_count,
	.get_vq_num_max = c_vq_num_max,
	.set_vq_num = c_set_vq_num,
	.set_vq_address = c_set_vq_address,
	.set_vq_ready = c_set_vq_ready,
	.set_vq_base = c_set_vq_base,
	.get_vq_base = c_get_vq_base,
	.kick_vq = c_kick,
	.start = c_start,
	.reset = c_reset,
	.set_status = c_set_status,
	.set_mem_table = c_set_mem_table,
	.get_vq_notification = c_get_vq_notification,
	.destroy = c_destroy,
};

static void *c_create(void *parent_priv, struct vhost_mdev_device *vdev,
		      unsigned int type_index)
{
	struct c_inst *c = kvzalloc(sizeof(*c), GFP_KERNEL);

	if (!c)
		return ERR_PTR(-ENOMEM);
	c->doorbell = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!c->doorbell) {
		kvfree(c);
		return ERR_PTR(-ENOMEM);
	}
	c->vdev = vdev;
	mutex_init(&c->lock);
	c->nvqs = 2;
	hrtimer_init(&c->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
	c->timer.function = c_timer;
	return c;
}

static ssize_t hardirq_interrupts_show(struct device *dev,
				       struct device_attribute *attr, char *buf)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);

	if (!c)
		return -ENODEV;
	return sysfs_emit(buf, "%d\n", atomic_read(&c->fired));
}
static DEVICE_ATTR_RO(hardirq_interrupts);

static ssize_t other_interrupts_show(struct device *dev,
				     struct device_attribute *attr, char *buf)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);

	if (!c)
		return -ENODEV;
	return sysfs_emit(buf, "%d\n", atomic_read(&c->fired_elsewhere));
}
static DEVICE_ATTR_RO(other_interrupts);

static ssize_t fire_irq_store(struct device *dev, struct device_attribute *attr,
			      const char *buf, size_t count)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);
	u16 idx;
	int ret;

	if (!c)
		return -ENODEV;
	/* Any index: the core ignores one beyond the queues. */
	ret = kstrtou16(buf, 0, &idx);
	if (ret)
		return ret;
	if (atomic_cmpxchg(&c->irq_pending, 0, 1))
		return -EBUSY;
	c->irq_idx = idx;
	hrtimer_start(&c->timer, ms_to_ktime(1), HRTIMER_MODE_REL_HARD);
	return count;
}
static DEVICE_ATTR_WO(fire_irq);

static ssize_t mem_table_show(struct device *dev, struct device_attribute *attr,
			      char *buf)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);
	int len;
	u32 i;

	if (!c)
		return -ENODEV;
	mutex_lock(&c->lock);
	len = sysfs_emit(buf, "%u\n", c->mem_tables);
	/* 64 lines of at most 51 bytes fit the page. */
	for (i = 0; i < c->nregions; i++)
		len += sysfs_emit_at(buf, len, "%llx %llx %llx\n",
				     c->regions[i].guest_phys_addr,
				     c->regions[i].size,
				     c->regions[i].userspace_addr);
	mutex_unlock(&c->lock);
	return len;
}
static DEVICE_ATTR_RO(mem_table);

static ssize_t status_show(struct device *dev, struct device_attribute *attr,
			   char *buf)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);
	u8 status;

	if (!c)
		return -ENODEV;
	mutex_lock(&c->lock);
	status = c->status;
	mutex_unlock(&c->lock);
	return sysfs_emit(buf, "%u\n", status);
}
static DEVICE_ATTR_RO(status);

static ssize_t doorbell_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);
	u16 *v;
	u16 val;

	if (!c)
		return -ENODEV;
	v = page_address(c->doorbell);
	val = READ_ONCE(*v);
	return sysfs_emit(buf, "%u\n", val);
}
static DEVICE_ATTR_RO(doorbell);

static ssize_t refuse_features_ok_show(struct device *dev,
				       struct device_attribute *attr, char *buf)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);
	bool v;

	if (!c)
		return -ENODEV;
	mutex_lock(&c->lock);
	v = c->refuse_features_ok;
	mutex_unlock(&c->lock);
	return sysfs_emit(buf, "%d\n", v);
}

static ssize_t refuse_features_ok_store(struct device *dev,
					struct device_attribute *attr,
					const char *buf, size_t count)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);
	bool v;
	int ret;

	if (!c)
		return -ENODEV;
	ret = kstrtobool(buf, &v);
	if (ret)
		return ret;
	mutex_lock(&c->lock);
	c->refuse_features_ok = v;
	mutex_unlock(&c->lock);
	return count;
}
static DEVICE_ATTR_RW(refuse_features_ok);

static ssize_t nvqs_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);

	if (!c)
		return -ENODEV;
	return sysfs_emit(buf, "%u\n", c_vq_count(c));
}

static ssize_t nvqs_store(struct device *dev, struct device_attribute *attr,
			  const char *buf, size_t count)
{
	struct c_inst *c = vhost_mdev_priv_from_dev(dev);
	u32 n;
	int ret;

	if (!c)
		return -ENODEV;
	ret = kstrtou32(buf, 0, &n);
	if (ret)
		return ret;
	if (n > C_MAX_VQS)
		return -EINVAL;
	mutex_lock(&c->lock);
	if (vhost_mdev_is_open(c->vdev))
		ret = -EBUSY;
	else
		c->nvqs = n;
	mutex_unlock(&c->lock);
	return ret ?: count;
}
static DEVICE_ATTR_RW(nvqs);

static struct attribute *c_attrs[] = {
	&dev_attr_hardirq_interrupts.attr,
	&dev_attr_other_interrupts.attr,
	&dev_attr_fire_irq.attr,
	&dev_attr_mem_table.attr,
	&dev_attr_status.attr,
	&dev_attr_doorbell.attr,
	&dev_attr_refuse_features_ok.attr,
	&dev_attr_nvqs.attr,
	NULL,
};
static const struct attribute_group c_group = { .attrs = c_attrs };
static const struct attribute_group *c_groups[] = { &c_group, NULL };

static const struct vhost_mdev_type_info c_types[] = {
	{
		.sysfs_name = "test",
		.pretty_name = "C parent (test)",
		.description = "test-only C parent of the vhost-mdev suites",
		.max_instances = 2,
	},
};

static struct device *c_root;
static struct vhost_mdev_parent *c_parent;

static int __init c_parent_init(void)
{
	struct vhost_mdev_parent_info info = {
		.abi_version = abi,
		.name = "vhost_mdev_c_parent",
		.owner = THIS_MODULE,
		.types = c_types,
		.ntypes = ARRAY_SIZE(c_types),
		.dev_groups = c_groups,
		.create = c_create,
		.ops = &c_ops,
	};
	static struct vhost_mdev_parent_info c_info;

	c_root = root_device_register("vhost_mdev_c_parent_root");
	if (IS_ERR(c_root))
		return PTR_ERR(c_root);
	c_info = info;
	c_parent = vhost_mdev_register_parent_on(c_root, &c_info);
	if (IS_ERR(c_parent)) {
		root_device_unregister(c_root);
		return PTR_ERR(c_parent);
	}
	return 0;
}

static void __exit c_parent_exit(void)
{
	vhost_mdev_unregister_parent(c_parent);
	root_device_unregister(c_root);
}

module_init(c_parent_init);
module_exit(c_parent_exit);
MODULE_DESCRIPTION("vhost-mdev test: a parent driver in C");
MODULE_LICENSE("GPL");
