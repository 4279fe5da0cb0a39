/* virtio_mmio: the virtio-mmio transport, version 2 (virtio 1.x, 4.2.2),
 * shared by every device (blk, net).
 *
 * Threads: the register handlers (virtio_mmio__read/__write, plugged into
 * vmm-core's mmio_bus with virtio_mmio_bus_ops) run on vCPU threads; queue
 * work runs on the event-loop thread. One mutex per transport serialises
 * both: device code holds it (virtio_mmio__lock) while it pops and pushes.
 *
 * Notifications: the guest's QueueNotify write arrives as a signal on
 * notify_fd (an ioeventfd registered by the VMM, or the handler itself
 * signals it when the write exits to us); the transport watches it on the
 * loop and calls the device's notify(). Interrupts: irq_fd is an irqfd;
 * writing it raises the device's interrupt.
 *
 * Hostile guest: a virtqueue violation, or a queue the driver enables with
 * a bad size/address, sets DEVICE_NEEDS_RESET (status bit 64) and raises a
 * configuration-change interrupt (4.2.2, 2.1.2); the device then ignores
 * the guest until it writes 0 to Status (reset). The VM keeps running:
 * only this device stops. Each such event is counted (needs_reset). */
#ifndef WARREN_VMM_VIRTIO_MMIO_H
#define WARREN_VMM_VIRTIO_MMIO_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtqueue.h"

struct event_loop;
struct mmio_bus_ops;

/* 4.2.2 register offsets */
#define VIRTIO_MMIO_MAGIC_VALUE		0x000
#define VIRTIO_MMIO_VERSION		0x004
#define VIRTIO_MMIO_DEVICE_ID		0x008
#define VIRTIO_MMIO_VENDOR_ID		0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES	0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES	0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL		0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_MMIO_QUEUE_NUM		0x038
#define VIRTIO_MMIO_QUEUE_READY		0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY	0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS	0x060
#define VIRTIO_MMIO_INTERRUPT_ACK	0x064
#define VIRTIO_MMIO_STATUS		0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW	0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH	0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW	0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH	0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW	0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH	0x0a4
#define VIRTIO_MMIO_SHM_SEL		0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW		0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH	0x0b4
#define VIRTIO_MMIO_CONFIG_GENERATION	0x0fc
#define VIRTIO_MMIO_CONFIG		0x100

#define VIRTIO_MMIO_MAGIC  0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x4e525257 /* "WRRN" */

/* 2.1 device status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE	 1
#define VIRTIO_STATUS_DRIVER		 2
#define VIRTIO_STATUS_DRIVER_OK		 4
#define VIRTIO_STATUS_FEATURES_OK	 8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED		 128

/* 6 reserved feature bits */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

#define VIRTIO_INTERRUPT_USED	1
#define VIRTIO_INTERRUPT_CONFIG 2

#define VIRTIO_MMIO_MAX_QUEUES 4

/* What a device tells the transport about itself. */
struct virtio_mmio_device {
	uint32_t device_id; /* 5: 1 net, 2 block */
	uint64_t features;  /* device-specific bits; the transport adds
			     * VERSION_1, INDIRECT_DESC and EVENT_IDX */
	unsigned queue_count;
	uint16_t queue_max_size; /* power of two <= VIRTQ_MAX_SIZE */
	const uint8_t *config;	 /* device config space (read-only to the guest) */
	uint32_t config_size;
	void *opaque;
	/* Loop thread, lock NOT held: the driver notified (some) queue. */
	void (*notify)(void *opaque);
	/* Lock held, any thread: the driver reset the device (write 0 to
	 * Status); drop queue state. In-flight I/O completes later and must
	 * check virtio_mmio__generation() before pushing. */
	void (*reset)(void *opaque);
	/* Lock held, any thread: the driver set DRIVER_OK. */
	void (*driver_ok)(void *opaque);
	/* Queues (bit per index) whose avail ring the loop may watch while it
	 * busy-polls (event_loop__set_polling): new buffers there call notify()
	 * without waiting for the guest's notification. 0: none. */
	uint32_t polled_queues;
};

struct virtio_mmio {
	pthread_mutex_t lock;
	struct virtio_mmio_device device;
	const struct guest_memory *memory;
	struct event_loop *loop;
	int irq_fd;
	int notify_fd;
	int64_t notify_watch;
	int poller; /* event_loop__add_poller id, or -1 */

	uint32_t status;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	uint32_t interrupt_status;
	uint32_t config_generation;
	uint32_t generation; /* bumped on every reset */
	struct {
		uint16_t num;
		uint64_t desc, driver, device;
	} queue_regs[VIRTIO_MMIO_MAX_QUEUES];
	struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];

	/* counters (under lock) */
	uint64_t needs_reset_count;
	uint64_t notifications;
	uint64_t interrupts;
	enum virtq_error last_error;
};

/* The mmio_bus handlers; opaque is the struct virtio_mmio. */
extern const struct mmio_bus_ops virtio_mmio_bus_ops;

/* Initialises transport t for device over memory. notify_fd/irq_fd are
 * eventfds owned by the caller (an ioeventfd and an irqfd in the VMM;
 * plain eventfds in tests). Watches notify_fd on loop (call on the loop
 * thread or before it runs). 0 or -errno. */
int virtio_mmio__init(struct virtio_mmio *t, const struct guest_memory *memory,
		      struct event_loop *loop, const struct virtio_mmio_device *device,
		      int notify_fd, int irq_fd);
/* Loop thread: cancels the notify watch and marks the device FAILED, so
 * virtio_mmio__queue() returns NULL from now on (device teardown while
 * I/O is still in flight). */
void virtio_mmio__stop(struct virtio_mmio *t);
/* virtio_mmio__stop() if not done, then frees the lock. */
void virtio_mmio__uninit(struct virtio_mmio *t);

/* Register access (4.2.2). offset is relative to the window; size 1..8. */
void virtio_mmio__read(void *opaque, uint64_t offset, uint8_t *data, uint32_t size);
void virtio_mmio__write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size);

void virtio_mmio__lock(struct virtio_mmio *t);
void virtio_mmio__unlock(struct virtio_mmio *t);

/* Lock held. The queue when the driver made it ready and the device is
 * live (DRIVER_OK, no NEEDS_RESET); NULL otherwise. */
struct virtq *virtio_mmio__queue(struct virtio_mmio *t, unsigned index);
/* Lock held. Raises the used-buffer interrupt if the queue's driver wants
 * one (EVENT_IDX / NO_INTERRUPT). */
void virtio_mmio__signal_used(struct virtio_mmio *t, unsigned index);
/* Lock held. A virtqueue returned -EPROTO: NEEDS_RESET + config interrupt. */
void virtio_mmio__needs_reset(struct virtio_mmio *t, enum virtq_error error);
/* Lock held. Negotiated feature bit test. */
/* Lock held: adds the transport's figures to a device's metrics object:
 * status (2.1 bits), driver_ok, features (negotiated; 0 before
 * FEATURES_OK), needs_reset, notifications, interrupts. */
void virtio_mmio__add_metrics(const struct virtio_mmio *t, json_t *metrics);
bool virtio_mmio__has_feature(const struct virtio_mmio *t, unsigned bit);
/* Snapshot (loop thread, vCPUs paused): the transport's registers and
 * queue state (ring addresses, sizes, ready, the device's avail/used
 * indexes) into data[0..capacity) (*size set). -EBUSY with a reason while
 * a queue has requests in flight (the caller retries), -ENOSPC. */
int virtio_mmio__save(struct virtio_mmio *t, uint8_t *data, size_t capacity, size_t *size,
		      char *error, size_t error_size);
/* Restore into a freshly initialised transport of the same device: every
 * value is checked (hostile file); the rings are validated again; then
 * driver_ok() and notify() run as after the driver's own start. 0 or
 * -EINVAL with a reason. */
int virtio_mmio__restore(struct virtio_mmio *t, const uint8_t *data, size_t size, char *error,
			 size_t error_size);
/* Lock held. Changes with every reset: in-flight work compares it. */
uint32_t virtio_mmio__generation(const struct virtio_mmio *t);

#endif
