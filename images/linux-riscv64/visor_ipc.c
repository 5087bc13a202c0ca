// SPDX-License-Identifier: GPL-2.0
/*
 * visor-ipc: a Linux guest's side of visor-hv's hypercall interface (the
 * "modified guest" of paravirtualization; docs/hypercalls.md describes the
 * SBI extension it calls). /dev/visor-ipc sends and receives the
 * hypervisor's inter-VM messages:
 *
 *   echo 'NAME:text' > /dev/visor-ipc   sends "text" to the VM called NAME
 *   head -n1 /dev/visor-ipc             waits for the next message and
 *                                       prints it as "SENDER:text"
 *
 * Loading it prints what the hypervisor says about this VM.
 */
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <asm/sbi.h>

#define VISOR_EID 0x0A564953
enum {
	VISOR_VERSION = 0,
	VISOR_CONSOLE_WRITE = 1,
	VISOR_CONSOLE_READ = 2,
	VISOR_VM_SELF = 3,
	VISOR_VM_INFO = 4,
	VISOR_VM_LOOKUP = 5,
	VISOR_MSG_SEND = 6,
	VISOR_MSG_RECEIVE = 7,
	VISOR_VM_COUNT = 8,
};
#define VISOR_MSG_MAX 256
#define VISOR_NAME_BYTES 16
/* How often a blocking read asks for a message. */
#define POLL_MS 10

struct visor_vm_info {
	char name[VISOR_NAME_BYTES];
	u32 vcpus;
	u32 state;
	u64 memory;
};

static struct sbiret hypercall(int fid, unsigned long a0, unsigned long a1,
			       unsigned long a2)
{
	return sbi_ecall(VISOR_EID, fid, a0, a1, a2, 0, 0, 0);
}

static int to_errno(long error)
{
	switch (error) {
	case SBI_ERR_INVALID_PARAM:
		return -EINVAL;
	case SBI_ERR_DENIED:
		return -ECONNREFUSED;
	case SBI_ERR_FAILURE:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* The VM `id`'s description, in `info` (kmalloc'd: its physical address
 * is what the hypervisor reads). */
static int vm_info(unsigned long id, struct visor_vm_info *info)
{
	struct sbiret r = hypercall(VISOR_VM_INFO, id, __pa(info), sizeof(*info));

	return r.error ? to_errno(r.error) : 0;
}

static ssize_t ipc_write(struct file *file, const char __user *data,
			 size_t len, loff_t *offset)
{
	size_t max = VISOR_NAME_BYTES + 1 + VISOR_MSG_MAX + 1;
	char *buf, *colon;
	size_t n = len;
	struct sbiret r;
	ssize_t ret = len;

	if (len > max)
		return -EMSGSIZE;
	buf = kmalloc(max, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	if (copy_from_user(buf, data, len)) {
		ret = -EFAULT;
		goto out;
	}
	if (n && buf[n - 1] == '\n')
		n--;
	colon = memchr(buf, ':', n);
	if (!colon || colon == buf || colon + 1 == buf + n) {
		ret = -EINVAL;
		goto out;
	}
	r = hypercall(VISOR_VM_LOOKUP, __pa(buf), colon - buf, 0);
	if (r.error) {
		ret = -ENOENT;
		goto out;
	}
	r = hypercall(VISOR_MSG_SEND, r.value, __pa(colon + 1),
		      buf + n - (colon + 1));
	if (r.error)
		ret = to_errno(r.error);
out:
	kfree(buf);
	return ret;
}

static ssize_t ipc_read(struct file *file, char __user *data, size_t len,
			loff_t *offset)
{
	struct visor_vm_info *info;
	char *msg, *line;
	struct sbiret r;
	ssize_t ret;
	size_t n;

	msg = kmalloc(VISOR_MSG_MAX, GFP_KERNEL);
	info = kmalloc(sizeof(*info), GFP_KERNEL);
	line = kmalloc(VISOR_NAME_BYTES + VISOR_MSG_MAX + 2, GFP_KERNEL);
	if (!msg || !info || !line) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		r = hypercall(VISOR_MSG_RECEIVE, __pa(msg), VISOR_MSG_MAX, 0);
		if (r.error) {
			ret = to_errno(r.error);
			goto out;
		}
		if (r.value)
			break;
		if (file->f_flags & O_NONBLOCK) {
			ret = -EAGAIN;
			goto out;
		}
		if (msleep_interruptible(POLL_MS) || signal_pending(current)) {
			ret = -ERESTARTSYS;
			goto out;
		}
	}
	ret = vm_info(r.value >> 32, info);
	if (ret)
		goto out;
	n = scnprintf(line, VISOR_NAME_BYTES + VISOR_MSG_MAX + 2, "%.*s:%.*s\n",
		      (int)strnlen(info->name, VISOR_NAME_BYTES), info->name,
		      (int)(r.value & 0xffffffff), msg);
	n = min(n, len);
	ret = copy_to_user(data, line, n) ? -EFAULT : n;
out:
	kfree(msg);
	kfree(info);
	kfree(line);
	return ret;
}

static const struct file_operations ipc_fops = {
	.owner = THIS_MODULE,
	.read = ipc_read,
	.write = ipc_write,
};

static struct miscdevice ipc_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "visor-ipc",
	.fops = &ipc_fops,
};

static int __init ipc_init(void)
{
	struct visor_vm_info *info;
	struct sbiret version, self, count;
	int ret;

	if (sbi_probe_extension(VISOR_EID) <= 0) {
		pr_err("visor-ipc: not running under visor-hv (no hypercall extension)\n");
		return -ENODEV;
	}
	version = hypercall(VISOR_VERSION, 0, 0, 0);
	self = hypercall(VISOR_VM_SELF, 0, 0, 0);
	count = hypercall(VISOR_VM_COUNT, 0, 0, 0);
	info = kmalloc(sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	ret = vm_info(self.value, info);
	if (!ret)
		pr_info("visor-ipc: hypercalls v%lu.%lu; this is VM %.*s (%lu of %lu), %u vCPUs, %llu MiB\n",
			version.value >> 16, version.value & 0xffff,
			(int)strnlen(info->name, VISOR_NAME_BYTES), info->name,
			self.value, count.value, info->vcpus, info->memory >> 20);
	kfree(info);
	return ret ? ret : misc_register(&ipc_device);
}

static void __exit ipc_exit(void)
{
	misc_deregister(&ipc_device);
}

module_init(ipc_init);
module_exit(ipc_exit);
MODULE_DESCRIPTION("visor-hv inter-VM messages through its hypercall interface");
MODULE_LICENSE("GPL");
