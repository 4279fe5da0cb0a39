/* virtio_devices: the factory the VMM calls for each configured device
 * (virtio_devices__create, declared in mmio_bus.h) and the per-device
 * entry points vmm-core exposes on the control socket. The opaque pointer
 * is struct vmm_device.opaque as filled by virtio_devices__create.
 *
 * Device config (one element of the VMM's "devices" array):
 *   {"type": "block", "path": "/img.raw", "read_only": false,
 *    "direct": false, "id": "serial", "queue_size": 128,
 *    "rate_limiter": {"bandwidth": {...}, "ops": {...}}}
 *   {"type": "net", "tap": "tap0", "mac": "02:00:00:00:00:01",
 *    "queue_size": 256, "rx_rate_limiter": {...}, "tx_rate_limiter": {...}}
 *   (or "tap_fd": N instead of "tap": an open /dev/net/tun descriptor of
 *    the VMM's own, set by its jail; refused on the control socket)
 *   {"type": "rng", "queue_size": 64, "rate_limiter": {...}}  (entropy,
 *    see rng.h; without "rate_limiter" the default VIRTIO_RNG_DEFAULT_LIMIT)
 * Rate-limiter JSON: see rate_limiter.h.
 *
 * Without a VM (host->vm_fd < 0, in-process tests and benchmarks) the
 * interrupt and notification eventfds are plain eventfds and the device
 * is not registered on a bus when host->bus is NULL. */
#ifndef WARREN_VMM_VIRTIO_DEVICES_H
#define WARREN_VMM_VIRTIO_DEVICES_H

#include <jansson.h>
#include <stddef.h>

#include "mmio_bus.h"

struct virtio_mmio;

/* Loop thread. Block, rng: a rate-limiter object. Net: {"rx": {...}, "tx":
 * {...}}. 0, or -EINVAL with a reason in error. */
int virtio_device__set_rate_limit(void *opaque, const json_t *config, char *error,
				  size_t error_size);
/* Loop thread: new JSON object of the device's counters (see block.h/net.h). */
json_t *virtio_device__metrics(void *opaque);
/* Loop thread, vCPUs stopped: frees the device and its eventfds. */
void virtio_device__destroy(void *opaque);
/* The device's transport (its MMIO handlers take it as opaque). */
struct virtio_mmio *virtio_device__transport(void *opaque);
/* The fds the device signals/watches (tests drive them without KVM). */
int virtio_device__irq_fd(void *opaque);

#endif
