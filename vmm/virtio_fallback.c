/* Used only when vmm/virtio/ does not provide virtio_devices__create()
 * (see vmm/CMakeLists.txt): every configured device is refused, plainly. */
#include <errno.h>
#include <stdio.h>

#include "mmio_bus.h"

int virtio_devices__create(const struct vmm_device_host *host, const json_t *config,
			   uint64_t mmio_base, uint32_t irq, struct vmm_device *out, char *error,
			   size_t error_size)
{
	snprintf(error, error_size, "this warren-vmm build has no virtio devices");
	return -ENOSYS;
}
