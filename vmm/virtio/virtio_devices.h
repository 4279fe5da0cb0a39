/* virtio_devices: the virtio device types the VMM binary hands its VM
 * (virtio_device_types, see struct vmm_device_type in mmio_bus.h), their
 * factory virtio_devices__create and the per-device entry points. The
 * opaque pointer is struct vmm_device.opaque as filled by
 * virtio_devices__create.
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

/* "block", "net", "rng": each created by virtio_devices__create; ends with
 * a NULL name. The binary sets vm->device_types to it. */
extern const struct vmm_device_type virtio_device_types[];

/* Creates the device described by `config` (one element of `devices`) at
 * [mmio_base, mmio_base + MMIO_BUS_VIRTIO_WINDOW) with interrupt `irq`
 * and fills `out` (metrics, set_rate_limit, destroy). Returns 0, or -errno
 * with a human-readable reason in error[error_size] (e.g. "unknown device
 * type \"foo\"", "block: path is required"). */
int virtio_devices__create(const struct vmm_device_host *host, const json_t *config,
			   uint64_t mmio_base, uint32_t irq, struct vmm_device *out, char *error,
			   size_t error_size);

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
/* Snapshot/restore of the device: its virtio-mmio transport (registers,
 * feature bits, queues and their indexes; see virtio_mmio__save). Block
 * and net keep no other guest-visible state: their config space comes
 * from the configuration (disk size, MAC), which a restore repeats. */
int virtio_device__save(void *opaque, uint8_t *data, size_t capacity, size_t *size, char *error,
			size_t error_size);
int virtio_device__restore(void *opaque, const uint8_t *data, size_t size, char *error,
			   size_t error_size);
/* The fds the device signals/watches (tests drive them without KVM). */
int virtio_device__irq_fd(void *opaque);

#endif
