/* snapshot: encoder, hostile-input parser and memory file of a VM snapshot
 * (see snapshot.h; the layout is documented in docs/vmm-snapshot.md).
 *
 * State file layout (little endian, x86-64):
 *   header, SNAPSHOT_HEADER_SIZE bytes:
 *     0  magic "WRNSNAP\0"        8  u32 version      12 u32 header size
 *     16 u64 state section size   24 u32 vCPU count   28 u32 device count
 *     32 u32 record count         36..96 zero
 *     96 SHA-256 of bytes [0, 96) of the header and of the state section
 *   state section: records, each a 16-byte head {u32 type, u32 index,
 *     u32 length, u32 zero} and `length` bytes of payload padded to 8. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define HEADER_DIGEST_OFFSET 96
#define RECORD_HEAD_SIZE     16
#define PAGE_SIZE_BYTES	     4096ull
#define MEMORY_CHUNK	     (1ull << 20)
#define MEMORY_QUEUE_DEPTH   32
#define PAGEMAP_BATCH	     4096 /* entries read at once */
/* /proc/pid/pagemap, Documentation/admin-guide/mm/pagemap.rst */
#define PAGEMAP_PRESENT	       (1ull << 63)
#define PAGEMAP_SWAPPED	       (1ull << 62)
#define PAGEMAP_FILE_OR_SHARED (1ull << 61)

enum record_type {
	RECORD_MACHINE = 1,
	RECORD_CLOCK = 2,
	RECORD_IRQCHIP = 3,
	RECORD_PIT = 4,
	RECORD_SERIAL = 5,
	RECORD_DEVICE = 6,
	RECORD_VCPU_FIRST = 16, /* 16 + bit number of enum snapshot_vcpu_part */
	RECORD_VCPU_LAST = 16 + 9,
};

#define DEVICE_RECORD_FIXED (SNAPSHOT_DEVICE_TYPE_SIZE + 16)

static void snapshot__error(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int snapshot__digest(const uint8_t *header, const uint8_t *state, size_t state_size,
			    uint8_t digest[SHA256_DIGEST_LENGTH]);

static void snapshot__error(char *error, size_t error_size, const char *fmt, ...)
{
	va_list ap;

	if (error == NULL || error_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(error, error_size, fmt, ap);
	va_end(ap);
}

int snapshot__init(void)
{
	uint8_t header[SNAPSHOT_HEADER_SIZE] = {0};
	uint8_t digest[SHA256_DIGEST_LENGTH];

	return snapshot__digest(header, header, 0, digest);
}

struct snapshot_state *snapshot__alloc(void)
{
	return calloc(1, sizeof(struct snapshot_state));
}

void snapshot__free(struct snapshot_state *state)
{
	free(state);
}

char *snapshot__memory_path(const char *state_path)
{
	size_t length = strlen(state_path) + sizeof(".mem");
	char *path = malloc(length);

	if (path)
		snprintf(path, length, "%s.mem", state_path);
	return path;
}

/* --- encoding ------------------------------------------------------- */

struct encoder {
	uint8_t *data;
	size_t size, capacity;
	uint32_t records;
};

static int encoder__reserve(struct encoder *encoder, size_t more)
{
	size_t capacity = encoder->capacity ? encoder->capacity : 65536;
	uint8_t *data;

	if (encoder->size + more <= encoder->capacity)
		return 0;
	while (capacity < encoder->size + more)
		capacity *= 2;
	data = realloc(encoder->data, capacity);
	if (data == NULL)
		return -ENOMEM;
	encoder->data = data;
	encoder->capacity = capacity;
	return 0;
}

static void put_u32(uint8_t *at, uint32_t value)
{
	memcpy(at, &value, 4);
}

static void put_u64(uint8_t *at, uint64_t value)
{
	memcpy(at, &value, 8);
}

static uint32_t get_u32(const uint8_t *at)
{
	uint32_t value;

	memcpy(&value, at, 4);
	return value;
}

static uint64_t get_u64(const uint8_t *at)
{
	uint64_t value;

	memcpy(&value, at, 8);
	return value;
}

/* Appends one record whose payload is head[0..head_size) then
 * tail[0..tail_size) (tail may be NULL). */
static int encoder__record(struct encoder *encoder, uint32_t type, uint32_t index, const void *head,
			   size_t head_size, const void *tail, size_t tail_size)
{
	size_t length = head_size + tail_size;
	size_t padded = (length + 7) & ~(size_t)7;
	uint8_t *at;

	if (encoder__reserve(encoder, RECORD_HEAD_SIZE + padded))
		return -ENOMEM;
	at = encoder->data + encoder->size;
	memset(at, 0, RECORD_HEAD_SIZE + padded);
	put_u32(at, type);
	put_u32(at + 4, index);
	put_u32(at + 8, (uint32_t)length);
	memcpy(at + RECORD_HEAD_SIZE, head, head_size);
	if (tail_size)
		memcpy(at + RECORD_HEAD_SIZE + head_size, tail, tail_size);
	encoder->size += RECORD_HEAD_SIZE + padded;
	encoder->records++;
	return 0;
}

/* The payload of vCPU part `bit` of vcpu (pointer and size). */
static void *vcpu__part(struct snapshot_vcpu *vcpu, unsigned bit, size_t *size)
{
	switch (1u << bit) {
	case SNAPSHOT_VCPU_REGS:
		*size = sizeof(vcpu->regs);
		return &vcpu->regs;
	case SNAPSHOT_VCPU_SREGS:
		*size = sizeof(vcpu->sregs);
		return &vcpu->sregs;
	case SNAPSHOT_VCPU_FPU:
		*size = sizeof(vcpu->fpu);
		return &vcpu->fpu;
	case SNAPSHOT_VCPU_XSAVE:
		*size = sizeof(vcpu->xsave);
		return vcpu->xsave;
	case SNAPSHOT_VCPU_XCRS:
		*size = sizeof(vcpu->xcrs);
		return &vcpu->xcrs;
	case SNAPSHOT_VCPU_MSRS:
		*size = (size_t)vcpu->msr_count * sizeof(vcpu->msrs[0]);
		return vcpu->msrs;
	case SNAPSHOT_VCPU_LAPIC:
		*size = sizeof(vcpu->lapic);
		return &vcpu->lapic;
	case SNAPSHOT_VCPU_EVENTS:
		*size = sizeof(vcpu->events);
		return &vcpu->events;
	case SNAPSHOT_VCPU_MP_STATE:
		*size = sizeof(vcpu->mp_state);
		return &vcpu->mp_state;
	case SNAPSHOT_VCPU_DEBUGREGS:
		*size = sizeof(vcpu->debugregs);
		return &vcpu->debugregs;
	}
	*size = 0;
	return NULL;
}

static int encoder__vcpu(struct encoder *encoder, const struct snapshot_vcpu *vcpu, uint32_t index)
{
	int result = 0;

	for (unsigned bit = 0; bit <= RECORD_VCPU_LAST - RECORD_VCPU_FIRST && !result; bit++) {
		size_t size;
		const void *part;

		if (!(vcpu->present & (1u << bit)))
			continue;
		part = vcpu__part((struct snapshot_vcpu *)vcpu, bit, &size);
		result =
		    encoder__record(encoder, RECORD_VCPU_FIRST + bit, index, part, size, NULL, 0);
	}
	return result;
}

static int encoder__device(struct encoder *encoder, const struct snapshot_device *device,
			   uint32_t index)
{
	uint8_t head[DEVICE_RECORD_FIXED] = {0};

	if (device->size > SNAPSHOT_MAX_DEVICE_STATE ||
	    memchr(device->type, 0, SNAPSHOT_DEVICE_TYPE_SIZE) == NULL)
		return -EINVAL;
	memcpy(head, device->type, SNAPSHOT_DEVICE_TYPE_SIZE);
	put_u64(head + SNAPSHOT_DEVICE_TYPE_SIZE, device->mmio_base);
	put_u32(head + SNAPSHOT_DEVICE_TYPE_SIZE + 8, device->irq);
	put_u32(head + SNAPSHOT_DEVICE_TYPE_SIZE + 12, device->size);
	return encoder__record(encoder, RECORD_DEVICE, index, head, sizeof(head), device->data,
			       device->size);
}

/* SHA-256 over header[0, HEADER_DIGEST_OFFSET) and the state section. */
static int snapshot__digest(const uint8_t *header, const uint8_t *state, size_t state_size,
			    uint8_t digest[SHA256_DIGEST_LENGTH])
{
	EVP_MD_CTX *context = EVP_MD_CTX_new();
	unsigned int length = 0;
	int ok;

	if (context == NULL)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(context, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(context, header, HEADER_DIGEST_OFFSET) &&
	     EVP_DigestUpdate(context, state, state_size) &&
	     EVP_DigestFinal_ex(context, digest, &length);
	EVP_MD_CTX_free(context);
	return ok && length == SHA256_DIGEST_LENGTH ? 0 : -EIO;
}

static int snapshot__check_counts(const struct snapshot_state *state)
{
	if (state->vcpu_count == 0 || state->vcpu_count > SNAPSHOT_MAX_VCPUS ||
	    state->vcpu_count != state->machine.vcpus || state->device_count > SNAPSHOT_MAX_DEVICES)
		return -EINVAL;
	for (uint32_t i = 0; i < state->vcpu_count; i++)
		if ((state->vcpus[i].present & SNAPSHOT_VCPU_REQUIRED) != SNAPSHOT_VCPU_REQUIRED ||
		    state->vcpus[i].msr_count > SNAPSHOT_MAX_MSRS)
			return -EINVAL;
	return 0;
}

int snapshot__encode(const struct snapshot_state *state, uint8_t **out, size_t *out_size)
{
	struct encoder encoder = {0};
	uint8_t *header;
	int result;

	*out = NULL;
	*out_size = 0;
	if ((result = snapshot__check_counts(state)))
		return result;
	if (encoder__reserve(&encoder, SNAPSHOT_HEADER_SIZE))
		return -ENOMEM;
	memset(encoder.data, 0, SNAPSHOT_HEADER_SIZE);
	encoder.size = SNAPSHOT_HEADER_SIZE;
	result = encoder__record(&encoder, RECORD_MACHINE, 0, &state->machine,
				 sizeof(state->machine), NULL, 0);
	if (!result)
		result = encoder__record(&encoder, RECORD_CLOCK, 0, &state->clock,
					 sizeof(state->clock), NULL, 0);
	for (uint32_t chip = 0; chip < 3 && !result; chip++)
		result = encoder__record(&encoder, RECORD_IRQCHIP, chip, &state->irqchip[chip],
					 sizeof(state->irqchip[chip]), NULL, 0);
	if (!result)
		result = encoder__record(&encoder, RECORD_PIT, 0, &state->pit, sizeof(state->pit),
					 NULL, 0);
	if (!result)
		result = encoder__record(&encoder, RECORD_SERIAL, 0, &state->serial,
					 sizeof(state->serial), NULL, 0);
	for (uint32_t i = 0; i < state->vcpu_count && !result; i++)
		result = encoder__vcpu(&encoder, &state->vcpus[i], i);
	for (uint32_t i = 0; i < state->device_count && !result; i++)
		result = encoder__device(&encoder, &state->devices[i], i);
	if (result)
		goto err;
	header = encoder.data;
	memcpy(header, SNAPSHOT_MAGIC, 8);
	put_u32(header + 8, SNAPSHOT_VERSION);
	put_u32(header + 12, SNAPSHOT_HEADER_SIZE);
	put_u64(header + 16, encoder.size - SNAPSHOT_HEADER_SIZE);
	put_u32(header + 24, state->vcpu_count);
	put_u32(header + 28, state->device_count);
	put_u32(header + 32, encoder.records);
	if ((result = snapshot__digest(header, header + SNAPSHOT_HEADER_SIZE,
				       encoder.size - SNAPSHOT_HEADER_SIZE,
				       header + HEADER_DIGEST_OFFSET)))
		goto err;
	*out = encoder.data;
	*out_size = encoder.size;
	return 0;
err:
	free(encoder.data);
	return result;
}

/* --- decoding (hostile input) ------------------------------------------ */

struct decoder {
	struct snapshot_state *state;
	uint32_t vcpu_count, device_count;
	bool have_machine, have_clock, have_pit, have_serial;
	uint8_t have_irqchip; /* bit per chip */
	uint64_t have_device; /* bit per device */
	char *error;
	size_t error_size;
};

static int decoder__fixed(struct decoder *decoder, void *target, size_t target_size,
			  const uint8_t *payload, uint32_t length, bool *seen, const char *name)
{
	if (*seen) {
		snapshot__error(decoder->error, decoder->error_size, "%s saved twice", name);
		return -EINVAL;
	}
	if (length != target_size) {
		snapshot__error(decoder->error, decoder->error_size,
				"%s record is %u bytes, expected %zu", name, length, target_size);
		return -EINVAL;
	}
	memcpy(target, payload, target_size);
	*seen = true;
	return 0;
}

static int decoder__vcpu(struct decoder *decoder, uint32_t type, uint32_t index,
			 const uint8_t *payload, uint32_t length)
{
	unsigned bit = type - RECORD_VCPU_FIRST;
	struct snapshot_vcpu *vcpu;
	size_t size;
	void *target;

	if (index >= decoder->vcpu_count) {
		snapshot__error(decoder->error, decoder->error_size,
				"vCPU record for vCPU %u of %u", index, decoder->vcpu_count);
		return -EINVAL;
	}
	vcpu = &decoder->state->vcpus[index];
	if (vcpu->present & (1u << bit)) {
		snapshot__error(decoder->error, decoder->error_size,
				"vCPU %u: record type %u saved twice", index, type);
		return -EINVAL;
	}
	if ((1u << bit) == SNAPSHOT_VCPU_MSRS) {
		if (length % sizeof(struct kvm_msr_entry) != 0 ||
		    length / sizeof(struct kvm_msr_entry) > SNAPSHOT_MAX_MSRS) {
			snapshot__error(decoder->error, decoder->error_size,
					"vCPU %u: MSR record of %u bytes", index, length);
			return -EINVAL;
		}
		vcpu->msr_count = length / sizeof(struct kvm_msr_entry);
	}
	target = vcpu__part(vcpu, bit, &size);
	if (length != size) {
		snapshot__error(decoder->error, decoder->error_size,
				"vCPU %u: record type %u is %u bytes, expected %zu", index, type,
				length, size);
		return -EINVAL;
	}
	memcpy(target, payload, size);
	vcpu->present |= 1u << bit;
	return 0;
}

static int decoder__device(struct decoder *decoder, uint32_t index, const uint8_t *payload,
			   uint32_t length)
{
	struct snapshot_device *device;
	uint32_t size;

	if (index >= decoder->device_count || (decoder->have_device & (1ull << index))) {
		snapshot__error(decoder->error, decoder->error_size,
				"device record %u (of %u) out of range or saved twice", index,
				decoder->device_count);
		return -EINVAL;
	}
	if (length < DEVICE_RECORD_FIXED) {
		snapshot__error(decoder->error, decoder->error_size, "device %u record too short",
				index);
		return -EINVAL;
	}
	size = get_u32(payload + SNAPSHOT_DEVICE_TYPE_SIZE + 12);
	if (size > SNAPSHOT_MAX_DEVICE_STATE || size != length - DEVICE_RECORD_FIXED ||
	    memchr(payload, 0, SNAPSHOT_DEVICE_TYPE_SIZE) == NULL) {
		snapshot__error(decoder->error, decoder->error_size,
				"device %u record: bad type or state size", index);
		return -EINVAL;
	}
	device = &decoder->state->devices[index];
	memcpy(device->type, payload, SNAPSHOT_DEVICE_TYPE_SIZE);
	device->mmio_base = get_u64(payload + SNAPSHOT_DEVICE_TYPE_SIZE);
	device->irq = get_u32(payload + SNAPSHOT_DEVICE_TYPE_SIZE + 8);
	device->size = size;
	memcpy(device->data, payload + DEVICE_RECORD_FIXED, size);
	decoder->have_device |= 1ull << index;
	return 0;
}

static int decoder__record(struct decoder *decoder, uint32_t type, uint32_t index,
			   const uint8_t *payload, uint32_t length)
{
	struct snapshot_state *state = decoder->state;
	bool seen;
	int result;

	switch (type) {
	case RECORD_MACHINE:
		return decoder__fixed(decoder, &state->machine, sizeof(state->machine), payload,
				      length, &decoder->have_machine, "machine");
	case RECORD_CLOCK:
		return decoder__fixed(decoder, &state->clock, sizeof(state->clock), payload, length,
				      &decoder->have_clock, "clock");
	case RECORD_PIT:
		return decoder__fixed(decoder, &state->pit, sizeof(state->pit), payload, length,
				      &decoder->have_pit, "PIT");
	case RECORD_SERIAL:
		return decoder__fixed(decoder, &state->serial, sizeof(state->serial), payload,
				      length, &decoder->have_serial, "serial");
	case RECORD_IRQCHIP:
		if (index >= 3) {
			snapshot__error(decoder->error, decoder->error_size, "irqchip %u", index);
			return -EINVAL;
		}
		seen = decoder->have_irqchip & (1u << index);
		result = decoder__fixed(decoder, &state->irqchip[index], sizeof(state->irqchip[0]),
					payload, length, &seen, "irqchip");
		if (!result && state->irqchip[index].chip_id != index) {
			snapshot__error(decoder->error, decoder->error_size,
					"irqchip record %u holds chip %u", index,
					state->irqchip[index].chip_id);
			return -EINVAL;
		}
		decoder->have_irqchip |= (uint8_t)(1u << index);
		return result;
	case RECORD_DEVICE:
		return decoder__device(decoder, index, payload, length);
	default:
		if (type >= RECORD_VCPU_FIRST && type <= RECORD_VCPU_LAST)
			return decoder__vcpu(decoder, type, index, payload, length);
		snapshot__error(decoder->error, decoder->error_size, "unknown record type %u",
				type);
		return -EINVAL;
	}
}

/* Checks the header of data[0..size): magic, version, sizes, digest. */
static int decoder__header(struct decoder *decoder, const uint8_t *data, size_t size,
			   uint32_t *records)
{
	uint8_t digest[SHA256_DIGEST_LENGTH];
	uint64_t state_size;
	uint32_t version;

	if (size < SNAPSHOT_HEADER_SIZE || memcmp(data, SNAPSHOT_MAGIC, 8) != 0) {
		snapshot__error(decoder->error, decoder->error_size, "%s",
				size < 8 || memcmp(data, SNAPSHOT_MAGIC, 8) != 0
				    ? "not a warren-vmm snapshot (bad magic)"
				    : "snapshot truncated inside its header");
		return -EINVAL;
	}
	version = get_u32(data + 8);
	if (version != SNAPSHOT_VERSION) {
		snapshot__error(decoder->error, decoder->error_size,
				"snapshot format version %u; this warren-vmm reads version %u",
				version, SNAPSHOT_VERSION);
		return -EPROTO;
	}
	state_size = get_u64(data + 16);
	if (get_u32(data + 12) != SNAPSHOT_HEADER_SIZE ||
	    state_size != size - SNAPSHOT_HEADER_SIZE) {
		snapshot__error(decoder->error, decoder->error_size,
				"snapshot is %zu bytes, its header says %llu%s", size,
				(unsigned long long)state_size + SNAPSHOT_HEADER_SIZE,
				state_size > size - SNAPSHOT_HEADER_SIZE ? " (truncated)" : "");
		return -EINVAL;
	}
	if (snapshot__digest(data, data + SNAPSHOT_HEADER_SIZE, (size_t)state_size, digest) ||
	    memcmp(digest, data + HEADER_DIGEST_OFFSET, sizeof(digest)) != 0) {
		snapshot__error(decoder->error, decoder->error_size,
				"snapshot checksum mismatch (corrupt file)");
		return -EBADMSG;
	}
	decoder->vcpu_count = get_u32(data + 24);
	decoder->device_count = get_u32(data + 28);
	*records = get_u32(data + 32);
	if (decoder->vcpu_count == 0 || decoder->vcpu_count > SNAPSHOT_MAX_VCPUS ||
	    decoder->device_count > SNAPSHOT_MAX_DEVICES) {
		snapshot__error(decoder->error, decoder->error_size,
				"snapshot of %u vCPUs and %u devices (limits %d, %d)",
				decoder->vcpu_count, decoder->device_count, SNAPSHOT_MAX_VCPUS,
				SNAPSHOT_MAX_DEVICES);
		return -EINVAL;
	}
	return 0;
}

/* Everything a restore needs is there and consistent. */
static int decoder__complete(struct decoder *decoder)
{
	struct snapshot_state *state = decoder->state;
	const struct snapshot_machine *machine = &state->machine;

	if (!decoder->have_machine || !decoder->have_clock || !decoder->have_pit ||
	    !decoder->have_serial || decoder->have_irqchip != 7 ||
	    decoder->have_device !=
		(decoder->device_count == 64 ? ~0ull : (1ull << decoder->device_count) - 1)) {
		snapshot__error(decoder->error, decoder->error_size,
				"snapshot lacks VM or device state");
		return -EINVAL;
	}
	if (machine->vcpus != decoder->vcpu_count || machine->memory_size == 0 ||
	    machine->memory_size % PAGE_SIZE_BYTES != 0 ||
	    machine->memory_size > (uint64_t)256 << 30 ||
	    machine->memory_low_size != (machine->memory_size < GUEST_MEMORY_LOW_LIMIT
					     ? machine->memory_size
					     : GUEST_MEMORY_LOW_LIMIT)) {
		snapshot__error(decoder->error, decoder->error_size,
				"snapshot machine record is inconsistent");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < decoder->vcpu_count; i++)
		if ((state->vcpus[i].present & SNAPSHOT_VCPU_REQUIRED) != SNAPSHOT_VCPU_REQUIRED) {
			snapshot__error(decoder->error, decoder->error_size,
					"vCPU %u state is incomplete", i);
			return -EINVAL;
		}
	state->vcpu_count = decoder->vcpu_count;
	state->device_count = decoder->device_count;
	return 0;
}

int snapshot__decode(const uint8_t *data, size_t size, struct snapshot_state *state, char *error,
		     size_t error_size)
{
	struct decoder decoder = {.state = state, .error = error, .error_size = error_size};
	uint32_t records = 0, seen = 0;
	size_t offset = SNAPSHOT_HEADER_SIZE;
	int result;

	memset(state, 0, sizeof(*state));
	if ((result = decoder__header(&decoder, data, size, &records)))
		return result;
	while (offset < size) {
		uint32_t type, index, length;
		size_t padded;

		if (size - offset < RECORD_HEAD_SIZE) {
			snapshot__error(error, error_size, "record head cut at offset %zu", offset);
			return -EINVAL;
		}
		type = get_u32(data + offset);
		index = get_u32(data + offset + 4);
		length = get_u32(data + offset + 8);
		padded = ((size_t)length + 7) & ~(size_t)7;
		if (get_u32(data + offset + 12) != 0 || padded > size - offset - RECORD_HEAD_SIZE) {
			snapshot__error(error, error_size, "bad record at offset %zu", offset);
			return -EINVAL;
		}
		if ((result = decoder__record(&decoder, type, index,
					      data + offset + RECORD_HEAD_SIZE, length)))
			return result;
		offset += RECORD_HEAD_SIZE + padded;
		seen++;
	}
	if (seen != records) {
		snapshot__error(error, error_size, "snapshot holds %u records, header says %u",
				seen, records);
		return -EINVAL;
	}
	return decoder__complete(&decoder);
}

/* --- files ------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *data, size_t size)
{
	while (size) {
		ssize_t written = write(fd, data, size);

		if (written < 0 && errno == EINTR)
			continue;
		if (written <= 0)
			return written < 0 ? -errno : -EIO;
		data += written;
		size -= (size_t)written;
	}
	return 0;
}

int snapshot__write_file(const char *path, const struct snapshot_state *state, char *error,
			 size_t error_size)
{
	uint8_t *data = NULL;
	size_t size = 0;
	char *temporary = NULL;
	int fd = -1, result;

	if ((result = snapshot__encode(state, &data, &size))) {
		snapshot__error(error, error_size, "cannot encode the snapshot: %s",
				strerror(-result));
		goto out;
	}
	if (asprintf(&temporary, "%s.tmp", path) < 0) {
		temporary = NULL;
		result = -ENOMEM;
		goto out;
	}
	unlink(temporary); /* created anew: the VMM's seccomp allows only O_EXCL */
	fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || (result = write_all(fd, data, size)) || fsync(fd) < 0 ||
	    rename(temporary, path) < 0) {
		result = result ? result : -errno;
		snapshot__error(error, error_size, "%s: %s", path, strerror(-result));
		if (fd >= 0)
			unlink(temporary);
		goto out;
	}
	result = 0;
out:
	if (fd >= 0)
		close(fd);
	free(temporary);
	free(data);
	return result;
}

int snapshot__read_file(const char *path, struct snapshot_state *state, char *error,
			size_t error_size)
{
	struct stat st;
	uint8_t *data = NULL;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), result;

	if (fd < 0 || fstat(fd, &st) < 0) {
		result = -errno;
		snapshot__error(error, error_size, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > SNAPSHOT_MAX_STATE_SIZE) {
		result = -EINVAL;
		snapshot__error(error, error_size, "%s: not a regular file of at most %u bytes",
				path, SNAPSHOT_MAX_STATE_SIZE);
		goto out;
	}
	data = malloc((size_t)st.st_size + 1);
	if (data == NULL) {
		result = -ENOMEM;
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t got = read(fd, data + done, (size_t)st.st_size - done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		done += (size_t)got;
	}
	result = snapshot__decode(data, done, state, error, error_size);
out:
	if (fd >= 0)
		close(fd);
	free(data);
	return result;
}

/* --- guest memory ---------------------------------------------------- */

/* io_uring writer: keeps up to MEMORY_QUEUE_DEPTH writes in flight. */
struct memory_writer {
	struct io_uring ring;
	int fd;
	unsigned in_flight;
	int result;
	struct snapshot_memory_stats *stats;
};

static int memory_writer__reap(struct memory_writer *writer, unsigned wait_for)
{
	while (writer->in_flight > 0 && wait_for > 0) {
		struct io_uring_cqe *cqe;
		int result = io_uring_wait_cqe(&writer->ring, &cqe);

		if (result == -EINTR)
			continue;
		if (result < 0)
			return result;
		/* a short write of a regular file (ENOSPC) counts as an error */
		if (cqe->res < 0 || (uint64_t)cqe->res != (uint64_t)(uintptr_t)cqe->user_data)
			writer->result = cqe->res < 0 ? cqe->res : -ENOSPC;
		io_uring_cqe_seen(&writer->ring, cqe);
		writer->in_flight--;
		wait_for--;
	}
	return writer->result;
}

/* Queues the write of data[0..length) at file offset, in chunks. */
static int memory_writer__extent(struct memory_writer *writer, const uint8_t *data, uint64_t offset,
				 uint64_t length)
{
	while (length > 0 && writer->result == 0) {
		uint64_t chunk = length < MEMORY_CHUNK ? length : MEMORY_CHUNK;
		struct io_uring_sqe *sqe;

		if (writer->in_flight == MEMORY_QUEUE_DEPTH && memory_writer__reap(writer, 1))
			break;
		sqe = io_uring_get_sqe(&writer->ring);
		if (sqe == NULL) {
			io_uring_submit(&writer->ring);
			continue;
		}
		io_uring_prep_write(sqe, writer->fd, data, (unsigned)chunk, offset);
		io_uring_sqe_set_data(sqe, (void *)(uintptr_t)chunk);
		writer->in_flight++;
		writer->stats->bytes_written += chunk;
		writer->stats->extents++;
		if (io_uring_submit(&writer->ring) < 0)
			writer->result = -EIO;
		data += chunk;
		offset += chunk;
		length -= chunk;
	}
	return writer->result;
}

static bool page_is_zero(const uint8_t *page)
{
	static const uint8_t zero[PAGE_SIZE_BYTES];

	return memcmp(page, zero, PAGE_SIZE_BYTES) == 0;
}

static int pagemap_fd = -1;

int snapshot__open_pagemap(void)
{
	if (pagemap_fd < 0)
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return pagemap_fd < 0 ? -errno : 0;
}

/* Copies [offset, offset + length) of the restored guest's memory file to
 * the same place in the new one: its data extents only, in the kernel. */
static int memory_writer__copy(struct memory_writer *writer, int source_fd, uint64_t offset,
			       uint64_t length)
{
	uint64_t end = offset + length;

	while (offset < end && writer->result == 0) {
		off_t data = lseek(source_fd, (off_t)offset, SEEK_DATA), hole;
		loff_t from, to;

		if (data < 0)
			return errno == ENXIO ? 0 : (writer->result = -errno);
		if ((uint64_t)data >= end)
			return 0;
		hole = lseek(source_fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > end)
			hole = (off_t)end;
		from = to = data;
		while (from < hole) {
			ssize_t copied = copy_file_range(source_fd, &from, writer->fd, &to,
							 (size_t)(hole - from), 0);

			if (copied < 0 && errno == EINTR)
				continue;
			if (copied <= 0)
				return writer->result = copied < 0 ? -errno : -EIO;
			writer->stats->bytes_written += (uint64_t)copied;
			writer->stats->bytes_copied += (uint64_t)copied;
		}
		offset = (uint64_t)hole;
	}
	return writer->result;
}

/* One run of pages alike: written since the restore (from memory) or not
 * (from the memory file). */
static int memory_writer__run(struct memory_writer *writer, const struct guest_memory *memory,
			      uint64_t first, uint64_t end, bool written)
{
	uint64_t offset = first * PAGE_SIZE_BYTES, length = (end - first) * PAGE_SIZE_BYTES;

	if (written)
		return memory_writer__extent(writer, memory->host + offset, offset, length);
	return memory_writer__copy(writer, memory->source_fd, offset, length);
}

/* A restored guest: its memory is its memory file mapped privately, so a
 * page it wrote is anonymous now (pagemap: present or swapped, not a file
 * page) and every other page still is the file's. Reading all of them
 * through the mapping to find the zero ones faulted in the whole file
 * (8-11 s for 512 MiB in the nested test host). 1 when pagemap could not
 * be read (the caller scans instead), else 0 or -errno. */
static int memory_writer__restored(struct memory_writer *writer, const struct guest_memory *memory)
{
	static uint64_t entries[PAGEMAP_BATCH];
	uint64_t pages = memory->size / PAGE_SIZE_BYTES, run = 0;
	bool run_written = false;

	for (uint64_t page = 0; page < pages && writer->result == 0;) {
		uint64_t batch = pages - page < PAGEMAP_BATCH ? pages - page : PAGEMAP_BATCH;
		off_t at =
		    (off_t)(((uintptr_t)memory->host / PAGE_SIZE_BYTES + page) * sizeof(uint64_t));

		if (pread(pagemap_fd, entries, batch * sizeof(uint64_t), at) !=
		    (ssize_t)(batch * sizeof(uint64_t)))
			return page == 0 ? 1 : (writer->result = -EIO);
		for (uint64_t i = 0; i < batch; i++, page++) {
			bool written = (entries[i] & PAGEMAP_SWAPPED) ||
				       ((entries[i] & PAGEMAP_PRESENT) &&
					!(entries[i] & PAGEMAP_FILE_OR_SHARED));

			if (page == 0)
				run_written = written;
			if (written == run_written)
				continue;
			memory_writer__run(writer, memory, run, page, run_written);
			run = page;
			run_written = written;
		}
	}
	if (writer->result == 0)
		memory_writer__run(writer, memory, run, pages, run_written);
	return writer->result;
}

/* Writes what holds data: the memfd's data extents, a restored guest's
 * written pages and file extents, or non-zero pages. */
static int memory_writer__all(struct memory_writer *writer, const struct guest_memory *memory)
{
	uint64_t offset = 0;

	if (memory->memfd < 0 && memory->source_fd >= 0 && pagemap_fd >= 0) {
		int result = memory_writer__restored(writer, memory);

		if (result <= 0)
			return result;
	}
	while (offset < memory->size && writer->result == 0) {
		uint64_t start = offset, end;

		if (memory->memfd >= 0) {
			off_t data = lseek(memory->memfd, (off_t)offset, SEEK_DATA);
			off_t hole;

			if (data < 0)
				return errno == ENXIO ? 0 : -errno;
			hole = lseek(memory->memfd, data, SEEK_HOLE);
			start = (uint64_t)data;
			end = hole < 0 ? memory->size : (uint64_t)hole;
		} else {
			while (start < memory->size && page_is_zero(memory->host + start))
				start += PAGE_SIZE_BYTES;
			end = start;
			while (end < memory->size && !page_is_zero(memory->host + end))
				end += PAGE_SIZE_BYTES;
		}
		if (end > memory->size)
			end = memory->size;
		if (start < end)
			memory_writer__extent(writer, memory->host + start, start, end - start);
		offset = end > start ? end : start + PAGE_SIZE_BYTES;
	}
	return writer->result;
}

int snapshot__write_memory(const struct guest_memory *memory, const char *path,
			   struct snapshot_memory_stats *stats, char *error, size_t error_size)
{
	struct memory_writer writer = {.fd = -1, .stats = stats};
	bool ring = false;
	int result;

	memset(stats, 0, sizeof(*stats));
	unlink(path);
	writer.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (writer.fd < 0 || ftruncate(writer.fd, (off_t)memory->size) < 0) {
		result = -errno;
		snapshot__error(error, error_size, "%s: %s", path, strerror(errno));
		goto out;
	}
	if ((result = io_uring_queue_init(MEMORY_QUEUE_DEPTH, &writer.ring, 0))) {
		snapshot__error(error, error_size, "io_uring: %s", strerror(-result));
		goto out;
	}
	ring = true;
	result = memory_writer__all(&writer, memory);
	if (memory_writer__reap(&writer, writer.in_flight) && result == 0)
		result = writer.result;
	if (result == 0 && fsync(writer.fd) < 0)
		result = -errno;
	if (result)
		snapshot__error(error, error_size, "writing guest memory to %s: %s", path,
				strerror(-result));
out:
	if (ring)
		io_uring_queue_exit(&writer.ring);
	if (writer.fd >= 0)
		close(writer.fd);
	if (result)
		unlink(path);
	return result;
}

int snapshot__map_memory(const char *path, uint64_t size, uint64_t low_size,
			 struct guest_memory *memory, char *error, size_t error_size)
{
	struct stat st;
	void *host;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), result = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		result = -errno;
		snapshot__error(error, error_size, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
		result = -EINVAL;
		snapshot__error(error, error_size,
				"memory file %s is %lld bytes, the snapshot's guest has %llu", path,
				(long long)st.st_size, (unsigned long long)size);
		goto out;
	}
	/* Private: the guest's writes stay in this process (copy on write) */
	host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (host == MAP_FAILED) {
		result = -errno;
		snapshot__error(error, error_size, "mmap %s: %s", path, strerror(errno));
		goto out;
	}
	madvise(host, size, MADV_DONTDUMP);
	memory->host = host;
	memory->size = size;
	memory->low_size = low_size;
	memory->memfd = -1;
	memory->source_fd = fd; /* a later snapshot copies its untouched pages */
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return result;
}
