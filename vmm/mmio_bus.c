/* mmio_bus: range lookup for KVM_EXIT_MMIO / KVM_EXIT_IO, irqfd and
 * ioeventfd helpers (contract in mmio_bus.h; KVM API: 4.75 KVM_IRQFD,
 * 4.59 KVM_IOEVENTFD in Documentation/virt/kvm/api.rst). */
#include "mmio_bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#define MMIO_BUS_MAX_RANGES 64

struct mmio_bus_range {
	enum mmio_bus_space space;
	uint64_t base;
	uint64_t length;
	const struct mmio_bus_ops *ops;
	void *opaque;
	char name[24];
};

struct mmio_bus {
	unsigned count;
	struct mmio_bus_range ranges[MMIO_BUS_MAX_RANGES];
};

struct mmio_bus *mmio_bus__create(void)
{
	return calloc(1, sizeof(struct mmio_bus));
}

void mmio_bus__destroy(struct mmio_bus *bus)
{
	free(bus);
}

int mmio_bus__register(struct mmio_bus *bus, enum mmio_bus_space space, uint64_t base,
		       uint64_t length, const struct mmio_bus_ops *ops, void *opaque,
		       const char *name)
{
	struct mmio_bus_range *range;
	uint64_t end;

	if (length == 0 || ops == NULL || __builtin_add_overflow(base, length, &end))
		return -EINVAL;
	for (unsigned i = 0; i < bus->count; i++) {
		const struct mmio_bus_range *other = &bus->ranges[i];

		if (other->space == space && base < other->base + other->length &&
		    other->base < end)
			return -EEXIST;
	}
	if (bus->count == MMIO_BUS_MAX_RANGES)
		return -ENOMEM;
	range = &bus->ranges[bus->count++];
	range->space = space;
	range->base = base;
	range->length = length;
	range->ops = ops;
	range->opaque = opaque;
	snprintf(range->name, sizeof(range->name), "%s", name ? name : "?");
	return 0;
}

bool mmio_bus__dispatch(struct mmio_bus *bus, enum mmio_bus_space space, uint64_t address,
			uint8_t *data, uint32_t size, bool is_write)
{
	for (unsigned i = 0; i < bus->count; i++) {
		const struct mmio_bus_range *range = &bus->ranges[i];
		uint64_t offset;

		if (range->space != space || address < range->base)
			continue;
		offset = address - range->base;
		if (offset >= range->length || size > range->length - offset)
			continue;
		if (is_write) {
			if (range->ops->write)
				range->ops->write(range->opaque, offset, data, size);
		} else {
			memset(data, 0, size);
			if (range->ops->read)
				range->ops->read(range->opaque, offset, data, size);
		}
		return true;
	}
	if (!is_write)
		memset(data, 0xff, size);
	return false;
}

int mmio_bus__irqfd(int vm_fd, uint32_t gsi)
{
	struct kvm_irqfd request = {0};
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	if (fd < 0)
		return -errno;
	request.fd = (uint32_t)fd;
	request.gsi = gsi;
	if (ioctl(vm_fd, KVM_IRQFD, &request) < 0) {
		int error = -errno;

		close(fd);
		return error;
	}
	return fd;
}

int mmio_bus__ioeventfd(int vm_fd, uint64_t address, uint32_t length, bool has_datamatch,
			uint64_t datamatch)
{
	struct kvm_ioeventfd request = {0};
	int fd;

	if (length != 1 && length != 2 && length != 4 && length != 8)
		return -EINVAL;
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	request.addr = address;
	request.len = length;
	request.fd = fd;
	if (has_datamatch) {
		request.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
		request.datamatch = datamatch;
	}
	if (ioctl(vm_fd, KVM_IOEVENTFD, &request) < 0) {
		int error = -errno;

		close(fd);
		return error;
	}
	return fd;
}

const struct vmm_device_type *mmio_bus__device_type(const struct vmm_device_type *types,
						    const char *name)
{
	if (types == NULL || name == NULL)
		return NULL;
	for (; types->name != NULL; types++)
		if (strcmp(types->name, name) == 0)
			return types;
	return NULL;
}
