/* virtio_devices: device factory for the VMM (see virtio_devices.h). */
#include "virtio_devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "block.h"
#include "net.h"
#include "rng.h"
#include "virtio_mmio.h"
#include "warren/json_util.h"

enum virtio_device_kind { VIRTIO_DEVICE_BLOCK, VIRTIO_DEVICE_NET, VIRTIO_DEVICE_RNG };

struct virtio_device {
	enum virtio_device_kind kind;
	void *device; /* struct virtio_blk / virtio_net / virtio_rng */
	int irq_fd;
	int notify_fd;
};

static int queue_size_of(const json_t *config, char *error, size_t error_size)
{
	int64_t size = json_util__int(config, "queue_size", 0);

	if (size < 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1))) {
		snprintf(error, error_size, "queue_size must be a power of two <= %d",
			 VIRTQ_MAX_SIZE);
		return -EINVAL;
	}
	return (int)size;
}

/* "tap_fd": a tap the VMM opened itself before it dropped its privileges
 * (vmm/jail.c); only accepted when it is an open /dev/net/tun (10:200)
 * descriptor. -1 otherwise. */
static int tap_fd_of(const json_t *config)
{
	int64_t fd = json_util__int(config, "tap_fd", -1);
	struct stat st;

	if (fd < 3 || fd > INT32_MAX || fstat((int)fd, &st) != 0 || !S_ISCHR(st.st_mode) ||
	    major(st.st_rdev) != 10 || minor(st.st_rdev) != 200)
		return -1;
	return (int)fd;
}

int virtio_devices__create(const struct vmm_device_host *host, const json_t *config,
			   uint64_t mmio_base, uint32_t irq, struct vmm_device *out, char *error,
			   size_t error_size)
{
	struct virtio_device *device;
	struct virtio_mmio *transport;
	const char *type = json_util__string(config, "type", NULL);
	int queue_size, ret;

	if (!json_is_object(config) || !type) {
		snprintf(error, error_size, "device: \"type\" is required");
		return -EINVAL;
	}
	if (strcmp(type, "block") && strcmp(type, "net") && strcmp(type, "rng")) {
		snprintf(error, error_size, "unknown device type \"%s\"", type);
		return -EINVAL;
	}
	queue_size = queue_size_of(config, error, error_size);
	if (queue_size < 0)
		return queue_size;
	device = calloc(1, sizeof(*device));
	if (!device) {
		snprintf(error, error_size, "device: out of memory");
		return -ENOMEM;
	}
	device->irq_fd = -1;
	device->notify_fd = -1;
	if (host->vm_fd >= 0) {
		device->irq_fd = mmio_bus__irqfd(host->vm_fd, irq);
		device->notify_fd = mmio_bus__ioeventfd(
		    host->vm_fd, mmio_base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, false, 0);
	} else {
		device->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		device->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	if (device->irq_fd < 0 || device->notify_fd < 0) {
		ret = device->irq_fd < 0 ? device->irq_fd : device->notify_fd;
		if (ret >= 0 || ret == -1)
			ret = -errno;
		snprintf(error, error_size, "%s: irqfd/ioeventfd: %s", type, strerror(-ret));
		goto err;
	}

	if (strcmp(type, "block") == 0) {
		struct virtio_blk_options options = {
		    .path = json_util__string(config, "path", NULL),
		    .base = json_util__string(config, "base", NULL),
		    .read_only = json_util__bool(config, "read_only", false),
		    .direct = json_util__bool(config, "direct", false),
		    .id = json_util__string(config, "id", NULL),
		    .rate_limiter = json_object_get(config, "rate_limiter"),
		    .queue_size = (uint16_t)queue_size,
		};
		struct virtio_blk *blk;

		device->kind = VIRTIO_DEVICE_BLOCK;
		blk = virtio_blk__create(host->memory, host->loop, &options, device->notify_fd,
					 device->irq_fd, error, error_size);
		if (!blk) {
			ret = -EINVAL;
			goto err;
		}
		device->device = blk;
		transport = virtio_blk__transport(blk);
	} else if (strcmp(type, "rng") == 0) {
		struct virtio_rng_options options = {
		    .rate_limiter = json_object_get(config, "rate_limiter"),
		    .queue_size = (uint16_t)queue_size,
		};
		struct virtio_rng *rng;

		device->kind = VIRTIO_DEVICE_RNG;
		rng = virtio_rng__create(host->memory, host->loop, &options, device->notify_fd,
					 device->irq_fd, error, error_size);
		if (!rng) {
			ret = -EINVAL;
			goto err;
		}
		device->device = rng;
		transport = virtio_rng__transport(rng);
	} else {
		struct virtio_net_options options = {
		    .tap = json_util__string(config, "tap", NULL),
		    .tap_fd = tap_fd_of(config),
		    .rx_rate_limiter = json_object_get(config, "rx_rate_limiter"),
		    .tx_rate_limiter = json_object_get(config, "tx_rate_limiter"),
		    .queue_size = (uint16_t)queue_size,
		};
		const char *mac = json_util__string(config, "mac", NULL);
		struct virtio_net *net;

		device->kind = VIRTIO_DEVICE_NET;
		if (!mac || virtio_net__parse_mac(mac, options.mac) < 0) {
			snprintf(error, error_size, "net: \"mac\" (aa:bb:cc:dd:ee:ff) is required");
			ret = -EINVAL;
			goto err;
		}
		net = virtio_net__create(host->memory, host->loop, &options, device->notify_fd,
					 device->irq_fd, error, error_size);
		if (!net) {
			ret = -EINVAL;
			goto err;
		}
		device->device = net;
		transport = virtio_net__transport(net);
	}
	if (host->bus) {
		ret = mmio_bus__register(host->bus, MMIO_BUS_MEMORY, mmio_base,
					 MMIO_BUS_VIRTIO_WINDOW, &virtio_mmio_bus_ops, transport,
					 type);
		if (ret < 0) {
			snprintf(error, error_size, "%s: cannot register MMIO window: %s", type,
				 strerror(-ret));
			virtio_device__destroy(device);
			return ret;
		}
	}
	memset(out, 0, sizeof(*out));
	snprintf(out->type, sizeof(out->type), "%s", type);
	out->mmio_base = mmio_base;
	out->mmio_size = MMIO_BUS_VIRTIO_WINDOW;
	out->irq = irq;
	out->opaque = device;
	out->metrics = virtio_device__metrics;
	out->set_rate_limit = virtio_device__set_rate_limit;
	out->save = virtio_device__save;
	out->restore = virtio_device__restore;
	out->destroy = virtio_device__destroy;
	return 0;
err:
	if (device->irq_fd >= 0)
		close(device->irq_fd);
	if (device->notify_fd >= 0)
		close(device->notify_fd);
	free(device);
	return ret;
}

int virtio_device__set_rate_limit(void *opaque, const json_t *config, char *error,
				  size_t error_size)
{
	struct virtio_device *device = opaque;

	if (device->kind == VIRTIO_DEVICE_BLOCK)
		return virtio_blk__set_rate_limit(device->device, config, error, error_size);
	if (device->kind == VIRTIO_DEVICE_RNG)
		return virtio_rng__set_rate_limit(device->device, config, error, error_size);
	return virtio_net__set_rate_limit(device->device, config, error, error_size);
}

json_t *virtio_device__metrics(void *opaque)
{
	struct virtio_device *device = opaque;

	if (device->kind == VIRTIO_DEVICE_BLOCK)
		return virtio_blk__metrics(device->device);
	if (device->kind == VIRTIO_DEVICE_RNG)
		return virtio_rng__metrics(device->device);
	return virtio_net__metrics(device->device);
}

struct virtio_mmio *virtio_device__transport(void *opaque)
{
	struct virtio_device *device = opaque;

	if (device->kind == VIRTIO_DEVICE_BLOCK)
		return virtio_blk__transport(device->device);
	if (device->kind == VIRTIO_DEVICE_RNG)
		return virtio_rng__transport(device->device);
	return virtio_net__transport(device->device);
}

int virtio_device__save(void *opaque, uint8_t *data, size_t capacity, size_t *size, char *error,
			size_t error_size)
{
	return virtio_mmio__save(virtio_device__transport(opaque), data, capacity, size, error,
				 error_size);
}

int virtio_device__restore(void *opaque, const uint8_t *data, size_t size, char *error,
			   size_t error_size)
{
	return virtio_mmio__restore(virtio_device__transport(opaque), data, size, error,
				    error_size);
}

int virtio_device__irq_fd(void *opaque)
{
	return ((struct virtio_device *)opaque)->irq_fd;
}

void virtio_device__destroy(void *opaque)
{
	struct virtio_device *device = opaque;

	if (!device)
		return;
	if (device->kind == VIRTIO_DEVICE_BLOCK)
		virtio_blk__destroy(device->device);
	else if (device->kind == VIRTIO_DEVICE_RNG)
		virtio_rng__destroy(device->device);
	else
		virtio_net__destroy(device->device);
	close(device->irq_fd);
	close(device->notify_fd);
	free(device);
}

const struct vmm_device_type virtio_device_types[] = {
    {.name = "block", .create = virtio_devices__create},
    {.name = "net", .create = virtio_devices__create},
    {.name = "rng", .create = virtio_devices__create},
    {.name = NULL, .create = NULL},
};
