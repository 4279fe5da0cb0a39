/* virtio_mmio: virtio-mmio v2 transport (virtio 1.x 4.2.2). See virtio_mmio.h. */
#include "virtio_mmio.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "event_loop.h"
#include "mmio_bus.h"
#include "warren/log.h"

const struct mmio_bus_ops virtio_mmio_bus_ops = {
    .read = virtio_mmio__read,
    .write = virtio_mmio__write,
};

static uint64_t offered_features(const struct virtio_mmio *t)
{
	return t->device.features | (1ull << VIRTIO_F_VERSION_1) |
	       (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_EVENT_IDX);
}

bool virtio_mmio__has_feature(const struct virtio_mmio *t, unsigned bit)
{
	return bit < 64 && (t->status & VIRTIO_STATUS_FEATURES_OK) &&
	       (t->driver_features & (1ull << bit));
}

void virtio_mmio__add_metrics(const struct virtio_mmio *t, json_t *metrics)
{
	json_object_set_new(metrics, "status", json_integer(t->status));
	json_object_set_new(metrics, "driver_ok",
			    json_boolean((t->status & VIRTIO_STATUS_DRIVER_OK) != 0));
	json_object_set_new(
	    metrics, "features",
	    json_integer(
		(json_int_t)((t->status & VIRTIO_STATUS_FEATURES_OK) ? t->driver_features : 0)));
	json_object_set_new(metrics, "needs_reset", json_integer((json_int_t)t->needs_reset_count));
	json_object_set_new(metrics, "notifications", json_integer((json_int_t)t->notifications));
	json_object_set_new(metrics, "interrupts", json_integer((json_int_t)t->interrupts));
}

uint32_t virtio_mmio__generation(const struct virtio_mmio *t)
{
	return t->generation;
}

void virtio_mmio__lock(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
}

void virtio_mmio__unlock(struct virtio_mmio *t)
{
	pthread_mutex_unlock(&t->lock);
}

static void raise_interrupt(struct virtio_mmio *t, uint32_t bits)
{
	uint64_t one = 1;

	t->interrupt_status |= bits;
	t->interrupts++;
	if (t->irq_fd >= 0 && write(t->irq_fd, &one, sizeof(one)) < 0)
		log_warn("virtio-mmio: irqfd write failed");
}

struct virtq *virtio_mmio__queue(struct virtio_mmio *t, unsigned index)
{
	if (index >= t->device.queue_count)
		return NULL;
	if ((t->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET |
			  VIRTIO_STATUS_FAILED)) != VIRTIO_STATUS_DRIVER_OK)
		return NULL;
	if (!t->queues[index].ready || t->queues[index].broken)
		return NULL;
	return &t->queues[index];
}

void virtio_mmio__signal_used(struct virtio_mmio *t, unsigned index)
{
	if (index < t->device.queue_count && virtq__should_interrupt(&t->queues[index]))
		raise_interrupt(t, VIRTIO_INTERRUPT_USED);
}

void virtio_mmio__needs_reset(struct virtio_mmio *t, enum virtq_error error)
{
	if (t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	t->needs_reset_count++;
	t->last_error = error;
	log_warn("virtio-mmio: device %u needs reset: %s", t->device.device_id,
		 virtq__error_name(error));
	t->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	/* 2.1.2: a config-change notification tells the driver to look. */
	if (t->status & VIRTIO_STATUS_DRIVER_OK)
		raise_interrupt(t, VIRTIO_INTERRUPT_CONFIG);
}

static bool on_notify(void *opaque, int32_t result)
{
	struct virtio_mmio *t = opaque;
	uint64_t counter;

	if (result < 0)
		return false;
	if (read(t->notify_fd, &counter, sizeof(counter)) != sizeof(counter))
		return true; /* spurious wakeup */
	pthread_mutex_lock(&t->lock);
	t->notifications++;
	pthread_mutex_unlock(&t->lock);
	if (t->device.notify)
		t->device.notify(t->device.opaque);
	return true;
}

/* Loop poller: buffers the driver made available on a polled queue are
 * taken now instead of after its notification crossed the eventfd. */
static bool virtio_mmio__poll(void *opaque)
{
	struct virtio_mmio *t = opaque;
	bool available = false;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->device.queue_count && !available; i++)
		if ((t->device.polled_queues & (1u << i)) && virtq__has_available(&t->queues[i]))
			available = true;
	pthread_mutex_unlock(&t->lock);
	if (available)
		t->device.notify(t->device.opaque);
	return available;
}

int virtio_mmio__init(struct virtio_mmio *t, const struct guest_memory *memory,
		      struct event_loop *loop, const struct virtio_mmio_device *device,
		      int notify_fd, int irq_fd)
{
	unsigned i;

	memset(t, 0, sizeof(*t));
	if (device->queue_count == 0 || device->queue_count > VIRTIO_MMIO_MAX_QUEUES ||
	    device->queue_max_size == 0 || device->queue_max_size > VIRTQ_MAX_SIZE ||
	    (device->queue_max_size & (device->queue_max_size - 1)))
		return -EINVAL;
	t->device = *device;
	t->memory = memory;
	t->loop = loop;
	t->irq_fd = irq_fd;
	t->notify_fd = notify_fd;
	t->notify_watch = -1;
	t->poller = -1;
	for (i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
		virtq__init(&t->queues[i], memory);
	pthread_mutex_init(&t->lock, NULL);
	if (loop && device->polled_queues && device->notify)
		t->poller = event_loop__add_poller(loop, virtio_mmio__poll, t); /* best effort */
	if (loop && notify_fd >= 0) {
		t->notify_watch = event_loop__watch(loop, notify_fd, POLLIN, on_notify, t);
		if (t->notify_watch < 0) {
			int ret = (int)t->notify_watch;

			if (t->poller >= 0)
				event_loop__remove_poller(loop, t->poller);
			pthread_mutex_destroy(&t->lock);
			return ret;
		}
	}
	return 0;
}

/* Loop thread: no more notifications or polling for this transport. */
static void virtio_mmio__leave_loop(struct virtio_mmio *t)
{
	if (t->loop && t->notify_watch >= 0)
		event_loop__cancel(t->loop, t->notify_watch);
	t->notify_watch = -1;
	if (t->loop && t->poller >= 0)
		event_loop__remove_poller(t->loop, t->poller);
	t->poller = -1;
}

void virtio_mmio__stop(struct virtio_mmio *t)
{
	virtio_mmio__leave_loop(t);
	pthread_mutex_lock(&t->lock);
	t->status |= VIRTIO_STATUS_FAILED;
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio__uninit(struct virtio_mmio *t)
{
	virtio_mmio__leave_loop(t);
	pthread_mutex_destroy(&t->lock);
}

/* Lock held: 4.2.2.1 writing 0 to Status resets the device. */
static void virtio_mmio__reset(struct virtio_mmio *t)
{
	unsigned i;

	t->status = 0;
	t->device_features_sel = 0;
	t->driver_features_sel = 0;
	t->driver_features = 0;
	t->queue_sel = 0;
	t->interrupt_status = 0;
	t->generation++;
	memset(t->queue_regs, 0, sizeof(t->queue_regs));
	for (i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
		virtq__init(&t->queues[i], t->memory);
	if (t->device.reset)
		t->device.reset(t->device.opaque);
}

/* Lock held: 3.1.1 steps 5-8 of the driver's initialisation. */
static void virtio_mmio__write_status(struct virtio_mmio *t, uint32_t value)
{
	uint32_t added;

	if (value == 0) {
		virtio_mmio__reset(t);
		return;
	}
	/* NEEDS_RESET is the device's to set; the driver cannot clear it. */
	value = (value & ~(uint32_t)VIRTIO_STATUS_DEVICE_NEEDS_RESET) |
		(t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	added = value & ~t->status;
	if (added & VIRTIO_STATUS_FEATURES_OK) {
		uint64_t offered = offered_features(t);

		/* Only offered bits, and no legacy drivers (VERSION_1 required). */
		if ((t->driver_features & ~offered) ||
		    !(t->driver_features & (1ull << VIRTIO_F_VERSION_1)))
			value &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
	}
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !(value & VIRTIO_STATUS_FEATURES_OK))
		value &= ~(uint32_t)VIRTIO_STATUS_DRIVER_OK;
	/* FEATURES_OK cannot be withdrawn short of a reset. */
	if (t->status & VIRTIO_STATUS_FEATURES_OK)
		value |= VIRTIO_STATUS_FEATURES_OK;
	t->status = value;
	if ((added & VIRTIO_STATUS_DRIVER_OK) && (value & VIRTIO_STATUS_DRIVER_OK) &&
	    t->device.driver_ok)
		t->device.driver_ok(t->device.opaque);
}

/* Lock held: QueueReady = 1 validates and maps the rings. */
static void virtio_mmio__queue_ready(struct virtio_mmio *t, unsigned index, uint32_t value)
{
	struct virtq *q = &t->queues[index];

	if (!value) {
		q->ready = false;
		return;
	}
	if (q->ready)
		return;
	if (virtq__enable(q, t->queue_regs[index].num, t->device.queue_max_size,
			  t->queue_regs[index].desc, t->queue_regs[index].driver,
			  t->queue_regs[index].device,
			  virtio_mmio__has_feature(t, VIRTIO_F_EVENT_IDX),
			  virtio_mmio__has_feature(t, VIRTIO_F_INDIRECT_DESC)) < 0)
		virtio_mmio__needs_reset(t, q->error);
}

static void put_le(uint8_t *data, uint32_t size, uint64_t value)
{
	for (uint32_t i = 0; i < size && i < 8; i++)
		data[i] = (uint8_t)(value >> (8 * i));
}

static uint64_t get_le(const uint8_t *data, uint32_t size)
{
	uint64_t value = 0;

	for (uint32_t i = 0; i < size && i < 8; i++)
		value |= (uint64_t)data[i] << (8 * i);
	return value;
}

static void set_low(uint64_t *field, uint32_t value)
{
	*field = (*field & 0xffffffff00000000ull) | value;
}

static void set_high(uint64_t *field, uint32_t value)
{
	*field = (*field & 0xffffffffull) | ((uint64_t)value << 32);
}

void virtio_mmio__read(void *opaque, uint64_t offset, uint8_t *data, uint32_t size)
{
	struct virtio_mmio *t = opaque;
	uint64_t value = 0;

	if (size == 0 || size > 8)
		return;
	memset(data, 0, size);
	pthread_mutex_lock(&t->lock);
	if (offset >= VIRTIO_MMIO_CONFIG) {
		uint64_t config_offset = offset - VIRTIO_MMIO_CONFIG;

		/* Device config: any width, bytes past the end read 0. */
		for (uint32_t i = 0; i < size; i++)
			if (config_offset + i < t->device.config_size)
				data[i] = t->device.config[config_offset + i];
		goto out;
	}
	if (size != 4) /* 4.2.2.2: registers are 32-bit */
		goto out;
	switch (offset) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		value = VIRTIO_MMIO_MAGIC;
		break;
	case VIRTIO_MMIO_VERSION:
		value = 2;
		break;
	case VIRTIO_MMIO_DEVICE_ID:
		value = t->device.device_id;
		break;
	case VIRTIO_MMIO_VENDOR_ID:
		value = VIRTIO_MMIO_VENDOR;
		break;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (t->device_features_sel < 2)
			value = (uint32_t)(offered_features(t) >> (32 * t->device_features_sel));
		break;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		if (t->queue_sel < t->device.queue_count)
			value = t->device.queue_max_size;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (t->queue_sel < t->device.queue_count)
			value = t->queues[t->queue_sel].ready;
		break;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		value = t->interrupt_status;
		break;
	case VIRTIO_MMIO_STATUS:
		value = t->status;
		break;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		value = 0xffffffffu; /* no shared memory regions */
		break;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		value = t->config_generation;
		break;
	default:
		break;
	}
	put_le(data, size, value);
out:
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio__write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size)
{
	struct virtio_mmio *t = opaque;
	uint32_t value;
	unsigned sel;

	if (size != 4 || offset >= VIRTIO_MMIO_CONFIG)
		return; /* config space is read-only for our devices */
	value = (uint32_t)get_le(data, size);
	if (offset == VIRTIO_MMIO_QUEUE_NOTIFY) {
		uint64_t one = 1;

		/* Arrived as an exit rather than through the ioeventfd. */
		if (t->notify_fd >= 0 && write(t->notify_fd, &one, sizeof(one)) < 0)
			log_warn("virtio-mmio: notify eventfd write failed");
		return;
	}
	pthread_mutex_lock(&t->lock);
	sel = t->queue_sel;
	switch (offset) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->device_features_sel = value;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->driver_features_sel = value;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		/* Only while negotiating (3.1.1 step 5). */
		if ((t->status & VIRTIO_STATUS_FEATURES_OK) || t->driver_features_sel > 1)
			break;
		if (t->driver_features_sel == 0)
			set_low(&t->driver_features, value);
		else
			set_high(&t->driver_features, value);
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->queue_sel = value;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (sel < t->device.queue_count && !t->queues[sel].ready)
			t->queue_regs[sel].num = (uint16_t)(value > 0xffff ? 0 : value);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (sel < t->device.queue_count && !(t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
			virtio_mmio__queue_ready(t, sel, value);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->interrupt_status &= ~value;
		break;
	case VIRTIO_MMIO_STATUS:
		virtio_mmio__write_status(t, value);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: {
		uint64_t *field;

		if (sel >= t->device.queue_count || t->queues[sel].ready)
			break;
		if (offset < VIRTIO_MMIO_QUEUE_DRIVER_LOW)
			field = &t->queue_regs[sel].desc;
		else if (offset < VIRTIO_MMIO_QUEUE_DEVICE_LOW)
			field = &t->queue_regs[sel].driver;
		else
			field = &t->queue_regs[sel].device;
		if (offset & 4)
			set_high(field, value);
		else
			set_low(field, value);
		break;
	}
	default:
		break;
	}
	pthread_mutex_unlock(&t->lock);
}

/* --- snapshot ---------------------------------------------------------- */

/* The saved transport, version 1 (little endian, fixed layout). */
struct virtio_mmio_saved_queue {
	uint64_t desc, driver, device;
	uint16_t num, last_avail_idx, used_idx, signalled_used;
	uint8_t ready, signalled_used_valid, reserved[6];
};

struct virtio_mmio_saved {
	uint32_t version;
	uint32_t device_id;
	uint32_t queue_count;
	uint32_t status;
	uint32_t device_features_sel, driver_features_sel;
	uint32_t queue_sel, interrupt_status;
	uint32_t config_generation, reserved;
	uint64_t driver_features;
	struct virtio_mmio_saved_queue queues[VIRTIO_MMIO_MAX_QUEUES];
};

_Static_assert(sizeof(struct virtio_mmio_saved) == 48 + 40 * VIRTIO_MMIO_MAX_QUEUES,
	       "saved transport layout");

int virtio_mmio__save(struct virtio_mmio *t, uint8_t *data, size_t capacity, size_t *size,
		      char *error, size_t error_size)
{
	struct virtio_mmio_saved saved = {.version = 1};
	int result = 0;

	if (capacity < sizeof(saved))
		return -ENOSPC;
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->device.queue_count; i++)
		if (t->queues[i].ready && t->queues[i].in_flight) {
			snprintf(error, error_size,
				 "device busy: %u requests in flight on queue %u (retry)",
				 t->queues[i].in_flight, i);
			result = -EBUSY;
			goto out;
		}
	saved.device_id = t->device.device_id;
	saved.queue_count = t->device.queue_count;
	saved.status = t->status;
	saved.device_features_sel = t->device_features_sel;
	saved.driver_features_sel = t->driver_features_sel;
	saved.queue_sel = t->queue_sel;
	saved.interrupt_status = t->interrupt_status;
	saved.config_generation = t->config_generation;
	saved.driver_features = t->driver_features;
	for (unsigned i = 0; i < t->device.queue_count; i++) {
		const struct virtq *q = &t->queues[i];
		struct virtio_mmio_saved_queue *out = &saved.queues[i];

		out->desc = t->queue_regs[i].desc;
		out->driver = t->queue_regs[i].driver;
		out->device = t->queue_regs[i].device;
		out->num = t->queue_regs[i].num;
		out->ready = q->ready && !q->broken;
		out->last_avail_idx = q->last_avail_idx;
		out->used_idx = q->used_idx;
		out->signalled_used = q->signalled_used;
		out->signalled_used_valid = q->signalled_used_valid;
	}
	memcpy(data, &saved, sizeof(saved));
	*size = sizeof(saved);
out:
	pthread_mutex_unlock(&t->lock);
	return result;
}

/* Lock held: puts one saved queue back; its rings are checked again
 * (virtq__enable) since the saved addresses are hostile. */
static int virtio_mmio__restore_queue(struct virtio_mmio *t, unsigned index,
				      const struct virtio_mmio_saved_queue *saved)
{
	struct virtq *q = &t->queues[index];

	t->queue_regs[index].desc = saved->desc;
	t->queue_regs[index].driver = saved->driver;
	t->queue_regs[index].device = saved->device;
	t->queue_regs[index].num = saved->num;
	if (!saved->ready)
		return 0;
	if (virtq__enable(q, saved->num, t->device.queue_max_size, saved->desc, saved->driver,
			  saved->device, virtio_mmio__has_feature(t, VIRTIO_F_EVENT_IDX),
			  virtio_mmio__has_feature(t, VIRTIO_F_INDIRECT_DESC)) < 0)
		return -EINVAL;
	q->last_avail_idx = saved->last_avail_idx;
	q->used_idx = saved->used_idx;
	q->signalled_used = saved->signalled_used;
	q->signalled_used_valid = saved->signalled_used_valid != 0;
	return 0;
}

int virtio_mmio__restore(struct virtio_mmio *t, const uint8_t *data, size_t size, char *error,
			 size_t error_size)
{
	struct virtio_mmio_saved saved;
	int result = 0;

	if (size != sizeof(saved)) {
		snprintf(error, error_size, "virtio state is %zu bytes, expected %zu", size,
			 sizeof(saved));
		return -EINVAL;
	}
	memcpy(&saved, data, sizeof(saved));
	pthread_mutex_lock(&t->lock);
	if (saved.version != 1 || saved.device_id != t->device.device_id ||
	    saved.queue_count != t->device.queue_count ||
	    saved.queue_sel >= VIRTIO_MMIO_MAX_QUEUES || saved.device_features_sel > 1 ||
	    saved.driver_features_sel > 1 || (saved.driver_features & ~offered_features(t)) ||
	    (saved.status & ~0xffu)) {
		snprintf(error, error_size, "virtio state does not match this device");
		result = -EINVAL;
		goto out;
	}
	t->status = saved.status;
	t->device_features_sel = saved.device_features_sel;
	t->driver_features_sel = saved.driver_features_sel;
	t->queue_sel = saved.queue_sel;
	t->interrupt_status =
	    saved.interrupt_status & (VIRTIO_INTERRUPT_USED | VIRTIO_INTERRUPT_CONFIG);
	t->config_generation = saved.config_generation;
	t->driver_features = saved.driver_features;
	for (unsigned i = 0; i < t->device.queue_count && result == 0; i++)
		if ((result = virtio_mmio__restore_queue(t, i, &saved.queues[i])))
			snprintf(error, error_size, "virtio queue %u: bad saved ring", i);
	if (result == 0 && (t->status & VIRTIO_STATUS_DRIVER_OK) &&
	    !(t->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) && t->device.driver_ok)
		t->device.driver_ok(t->device.opaque);
out:
	pthread_mutex_unlock(&t->lock);
	/* buffers the driver queued before the snapshot: look at them now */
	if (result == 0 && t->device.notify && (t->status & VIRTIO_STATUS_DRIVER_OK))
		t->device.notify(t->device.opaque);
	return result;
}
