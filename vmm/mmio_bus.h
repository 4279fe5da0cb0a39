/* mmio_bus: how devices plug into warren-vmm.
 *
 * A bus maps guest-physical MMIO ranges and I/O port ranges to device
 * handlers. vCPU threads call mmio_bus__dispatch() for every KVM_EXIT_MMIO
 * and KVM_EXIT_IO; the handler of the range that holds the address runs on
 * that vCPU thread (several vCPUs may call one device at once: a device
 * locks its own state). Everything a handler gets (offset, size, data) comes
 * from the guest: bounds-check it. Ranges are registered before the vCPUs
 * start and never change while they run (lookup takes no lock).
 *
 * Interrupts: a device gets a GSI of the in-kernel IOAPIC/PIC (KVM's default
 * routing wires GSI 0-15 to both) and an eventfd bound to it with KVM_IRQFD
 * (mmio_bus__irqfd); writing 1 to that eventfd raises the (edge) interrupt,
 * from any thread. Queue notifications: KVM_IOEVENTFD on the virtio-mmio
 * QueueNotify register (mmio_bus__ioeventfd) turns the guest's write into an
 * eventfd signal the event loop watches, without a VMM exit. A device must
 * still accept the same write through its MMIO handler (some hosts' KVM
 * deliver it as an exit).
 *
 * Layout (x86-64, see guest_memory.h): virtio-mmio windows of
 * MMIO_BUS_VIRTIO_WINDOW bytes from MMIO_BUS_VIRTIO_BASE up, IRQs from
 * MMIO_BUS_VIRTIO_FIRST_IRQ up (skipping the legacy ones). The VMM hands
 * each configured device its window and IRQ and adds
 * virtio_mmio.device=<size>@<base>:<irq> to the kernel command line. */
#ifndef WARREN_VMM_MMIO_BUS_H
#define WARREN_VMM_MMIO_BUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_memory.h"

struct event_loop;

#define MMIO_BUS_VIRTIO_BASE	    0xd0000000ull
#define MMIO_BUS_VIRTIO_WINDOW	    0x1000ull
#define MMIO_BUS_VIRTIO_MAX_DEVICES 8
/* GSIs for virtio devices, in order; 0 timer, 1 keyboard, 2 cascade, 4 COM1,
 * 8 RTC, 12 mouse, 14/15 IDE are left alone. */
#define MMIO_BUS_VIRTIO_IRQS                                                                       \
	{                                                                                          \
		5, 6, 7, 9, 10, 11, 3, 13                                                          \
	}

enum mmio_bus_space {
	MMIO_BUS_MEMORY = 0, /* guest-physical MMIO (KVM_EXIT_MMIO) */
	MMIO_BUS_PORT = 1,   /* x86 I/O ports (KVM_EXIT_IO) */
};

/* Handlers. offset is relative to the registered base; size is 1, 2, 4 or 8
 * (never more than 8). A read fills data[0..size) (little endian); bytes it
 * leaves alone read as 0. Unhandled registers: read 0, ignore writes. */
struct mmio_bus_ops {
	void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t size);
	void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size);
};

struct mmio_bus;

/* Creates an empty bus. NULL on allocation failure. */
struct mmio_bus *mmio_bus__create(void);
void mmio_bus__destroy(struct mmio_bus *bus);

/* Maps [base, base + length) of `space` to ops/opaque. name is kept for
 * logs and metrics (copied). Returns 0, -EEXIST when the range overlaps a
 * registered one, -EINVAL for length 0 or a wrapping range, -ENOMEM.
 * Only before the vCPUs start. */
int mmio_bus__register(struct mmio_bus *bus, enum mmio_bus_space space, uint64_t base,
		       uint64_t length, const struct mmio_bus_ops *ops, void *opaque,
		       const char *name);

/* Runs the handler of the range holding [address, address + size) (it must
 * fit wholly inside one range). Returns false when no range holds it (the
 * caller counts it; reads then return all ones like an empty bus). */
bool mmio_bus__dispatch(struct mmio_bus *bus, enum mmio_bus_space space, uint64_t address,
			uint8_t *data, uint32_t size, bool is_write);

/* Creates an eventfd and binds it to `gsi` with KVM_IRQFD on vm_fd.
 * Returns the eventfd (the caller owns it) or -errno. */
int mmio_bus__irqfd(int vm_fd, uint32_t gsi);

/* Creates an eventfd signalled when the guest writes `length` bytes (1, 2,
 * 4 or 8) at guest-physical `address` (MMIO space), optionally only when the
 * value equals `datamatch` (has_datamatch). KVM_IOEVENTFD. Returns the
 * eventfd or -errno. */
int mmio_bus__ioeventfd(int vm_fd, uint64_t address, uint32_t length, bool has_datamatch,
			uint64_t datamatch);

/* --- Devices configured through the control socket / CLI ------------------
 *
 * The VMM's configuration carries `devices: [{"type": "block"|"net"|...,
 * ...}]`. The core knows no device: the binary hands the VM a table of
 * device types (struct vmm_device_type in vm->device_types; vmm/virtio/
 * exports virtio_device_types). At start, for each entry, the VM looks its
 * "type" up in that table and calls the type's create() with the entry, the
 * device's MMIO window and IRQ. The device registers its window on
 * host->bus, sets up its irqfd/ioeventfd and event-loop watches and fills
 * `out`. */

/* What a device may use; all of it outlives the device. */
struct vmm_device_host {
	int vm_fd;
	struct guest_memory *memory;
	struct event_loop *loop;
	struct mmio_bus *bus;
};

/* One created device as the VMM keeps it. */
struct vmm_device {
	char type[16];	    /* copy of the config's "type" */
	uint64_t mmio_base; /* window given by the VMM */
	uint64_t mmio_size;
	uint32_t irq;
	void *opaque;
	/* New JSON object with the device's counters (may be NULL). Called on
	 * the event-loop thread. */
	json_t *(*metrics)(void *opaque);
	/* Run-time rate-limit update (the control socket's "rate_limit"); NULL
	 * when the device has none. Loop thread. 0, or -errno with a reason in
	 * error[error_size]. */
	int (*set_rate_limit)(void *opaque, const json_t *config, char *error, size_t error_size);
	/* Snapshot (loop thread, vCPUs paused): the device's state into
	 * data[0..capacity), *size set; -EBUSY with a reason while requests
	 * are in flight (retry later). NULL: the device cannot be saved. */
	int (*save)(void *opaque, uint8_t *data, size_t capacity, size_t *size, char *error,
		    size_t error_size);
	/* Restore into the freshly created device, before the vCPUs run. The
	 * data is hostile (a file): checked. 0 or -EINVAL with a reason. */
	int (*restore)(void *opaque, const uint8_t *data, size_t size, char *error,
		       size_t error_size);
	/* Frees the device; called on the event-loop thread after the vCPUs
	 * stopped. */
	void (*destroy)(void *opaque);
};

/* One kind of device the VMM can create from its configuration. create()
 * builds the device described by `config` (one element of `devices`) at
 * [mmio_base, mmio_base + MMIO_BUS_VIRTIO_WINDOW) with interrupt `irq`.
 * It returns 0, or -errno with a human-readable reason in
 * error[error_size] (e.g. "block: path is required"). A table of types
 * ends with an entry whose name is NULL. */
struct vmm_device_type {
	const char *name; /* the config's "type" */
	int (*create)(const struct vmm_device_host *host, const json_t *config, uint64_t mmio_base,
		      uint32_t irq, struct vmm_device *out, char *error, size_t error_size);
};

/* The entry of `types` (NULL-name terminated, may be NULL) called `name`,
 * or NULL. */
const struct vmm_device_type *mmio_bus__device_type(const struct vmm_device_type *types,
						    const char *name);

#endif
