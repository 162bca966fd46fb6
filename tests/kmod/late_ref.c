// SPDX-License-Identifier: GPL-2.0
/*
 * late_ref: a test-only module that holds references to sysfs objects for
 * as long as a test wants, so that their release runs late: after the
 * device was removed and after the modules that made it were unloaded.
 * It stands in for whatever else in the kernel may hold such a reference
 * (the thing CONFIG_DEBUG_KOBJECT_RELEASE simulates with random delays),
 * deterministically. Not installed; built only for the test kernel.
 *
 *   echo /sys/bus/mdev/devices/<uuid> > /sys/kernel/debug/late_ref/hold
 *   echo 1 > /sys/kernel/debug/late_ref/put       (drops every reference)
 *   cat /sys/kernel/debug/late_ref/held           (how many are held)
 *
 * The path must name a sysfs directory, i.e. a kobject (symlinks are
 * followed). The object is looked up while it is registered, so its
 * kobject is alive when the reference is taken (the test does not remove
 * it at the same time).
 */
#include <linux/debugfs.h>
#include <linux/kernfs.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/namei.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define LATE_REF_MAX 16

static DEFINE_MUTEX(late_ref_lock);
static struct kobject *late_refs[LATE_REF_MAX];
static unsigned int late_ref_count;
static struct dentry *late_ref_dir;

static void late_ref_put_all(void)
{
	mutex_lock(&late_ref_lock);
	while (late_ref_count) {
		struct kobject *kobj = late_refs[--late_ref_count];

		pr_info("late_ref: put %s\n", kobject_name(kobj));
		kobject_put(kobj);
	}
	mutex_unlock(&late_ref_lock);
}

static ssize_t hold_write(struct file *file, const char __user *ubuf,
			  size_t count, loff_t *ppos)
{
	struct kernfs_node *kn;
	struct kobject *kobj;
	struct path path;
	char *name;
	int ret;

	if (!count || count >= PATH_MAX)
		return -EINVAL;
	name = memdup_user_nul(ubuf, count);
	if (IS_ERR(name))
		return PTR_ERR(name);
	strim(name);
	ret = kern_path(name, LOOKUP_FOLLOW | LOOKUP_DIRECTORY, &path);
	if (ret)
		goto out;
	/* sysfs: the inode's kernfs node; a directory's node holds its kobject. */
	ret = -EINVAL;
	if (strcmp(path.dentry->d_sb->s_type->name, "sysfs"))
		goto out_path;
	kn = d_inode(path.dentry)->i_private;
	if (!kn || kernfs_type(kn) != KERNFS_DIR || !kn->priv)
		goto out_path;
	mutex_lock(&late_ref_lock);
	if (late_ref_count == LATE_REF_MAX) {
		ret = -ENOSPC;
	} else {
		kobj = kobject_get(kn->priv);
		late_refs[late_ref_count++] = kobj;
		pr_info("late_ref: holding %s\n", kobject_name(kobj));
		ret = count;
	}
	mutex_unlock(&late_ref_lock);
out_path:
	path_put(&path);
out:
	kfree(name);
	return ret;
}

static ssize_t put_write(struct file *file, const char __user *ubuf,
			 size_t count, loff_t *ppos)
{
	late_ref_put_all();
	return count;
}

static ssize_t held_read(struct file *file, char __user *ubuf, size_t count,
			 loff_t *ppos)
{
	char buf[16];
	int len;

	mutex_lock(&late_ref_lock);
	len = scnprintf(buf, sizeof(buf), "%u\n", late_ref_count);
	mutex_unlock(&late_ref_lock);
	return simple_read_from_buffer(ubuf, count, ppos, buf, len);
}

static const struct file_operations hold_fops = {
	.owner = THIS_MODULE,
	.write = hold_write,
};

static const struct file_operations put_fops = {
	.owner = THIS_MODULE,
	.write = put_write,
};

static const struct file_operations held_fops = {
	.owner = THIS_MODULE,
	.read = held_read,
};

static int __init late_ref_init(void)
{
	late_ref_dir = debugfs_create_dir("late_ref", NULL);
	debugfs_create_file("hold", 0200, late_ref_dir, NULL, &hold_fops);
	debugfs_create_file("put", 0200, late_ref_dir, NULL, &put_fops);
	debugfs_create_file("held", 0400, late_ref_dir, NULL, &held_fops);
	return 0;
}

static void __exit late_ref_exit(void)
{
	debugfs_remove(late_ref_dir);
	late_ref_put_all();
}

module_init(late_ref_init);
module_exit(late_ref_exit);
MODULE_DESCRIPTION("Test only: hold sysfs objects' references until told to drop them");
MODULE_LICENSE("GPL");
