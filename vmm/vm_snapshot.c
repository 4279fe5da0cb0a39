/* vm_snapshot: a paused VM saved to a snapshot (vm__snapshot) and a VM
 * built from one (vm__prepare_restore, then vm__start's restore steps).
 * The file format is snapshot.[ch]; docs/vmm-snapshot.md has the design
 * and its limits. KVM API references: Documentation/virt/kvm/api.rst. */
#include "vm_snapshot.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "snapshot.h"
#include "warren/clock.h"
#include "warren/log.h"

static void vm_snapshot__error(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vm_snapshot__error(char *error, size_t error_size, const char *fmt, ...)
{
	va_list ap;

	if (error == NULL || error_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(error, error_size, fmt, ap);
	va_end(ap);
}

/* --- saving ------------------------------------------------------------- */

/* The MSRs KVM can save (KVM_GET_MSR_INDEX_LIST), each read once to keep
 * only those this vCPU answers (KVM_GET_MSRS stops at the first it does
 * not). At most SNAPSHOT_MAX_MSRS. */
static int vcpu__save_msrs(struct vm *vm, int vcpu_fd, struct snapshot_vcpu *out)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	struct kvm_msr_list *list = NULL;
	struct kvm_msrs *msrs = NULL;
	uint32_t next = 0;
	int result = 0;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) == 0 || errno != E2BIG ||
	    probe.nmsrs == 0 || probe.nmsrs > 4096)
		return -EINVAL;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	msrs = calloc(1, sizeof(*msrs) + probe.nmsrs * sizeof(struct kvm_msr_entry));
	if (list == NULL || msrs == NULL) {
		result = -ENOMEM;
		goto out;
	}
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		result = -errno;
		goto out;
	}
	out->msr_count = 0;
	while (next < list->nmsrs && out->msr_count < SNAPSHOT_MAX_MSRS) {
		uint32_t count = list->nmsrs - next;
		int read;

		if (count > SNAPSHOT_MAX_MSRS - out->msr_count)
			count = SNAPSHOT_MAX_MSRS - out->msr_count;
		msrs->nmsrs = count;
		for (uint32_t i = 0; i < count; i++)
			msrs->entries[i] = (struct kvm_msr_entry){.index = list->indices[next + i]};
		read = ioctl(vcpu_fd, KVM_GET_MSRS, msrs);
		if (read < 0) {
			result = -errno;
			goto out;
		}
		memcpy(&out->msrs[out->msr_count], msrs->entries,
		       (size_t)read * sizeof(struct kvm_msr_entry));
		out->msr_count += (uint32_t)read;
		next +=
		    (uint32_t)read + ((uint32_t)read < count ? 1 : 0); /* skip the refused one */
	}
out:
	free(list);
	free(msrs);
	return result;
}

static int vcpu__save(struct vm *vm, struct vcpu *vcpu, struct snapshot_vcpu *out, char *error,
		      size_t error_size)
{
	struct {
		unsigned long request;
		void *target;
		uint32_t part;
		bool optional;
	} reads[] = {
	    {KVM_GET_REGS, &out->regs, SNAPSHOT_VCPU_REGS, false},
	    {KVM_GET_SREGS, &out->sregs, SNAPSHOT_VCPU_SREGS, false},
	    {KVM_GET_FPU, &out->fpu, SNAPSHOT_VCPU_FPU, false},
	    {KVM_GET_XSAVE, out->xsave, SNAPSHOT_VCPU_XSAVE, true},
	    {KVM_GET_XCRS, &out->xcrs, SNAPSHOT_VCPU_XCRS, true},
	    {KVM_GET_LAPIC, &out->lapic, SNAPSHOT_VCPU_LAPIC, false},
	    {KVM_GET_VCPU_EVENTS, &out->events, SNAPSHOT_VCPU_EVENTS, false},
	    {KVM_GET_MP_STATE, &out->mp_state, SNAPSHOT_VCPU_MP_STATE, false},
	    {KVM_GET_DEBUGREGS, &out->debugregs, SNAPSHOT_VCPU_DEBUGREGS, false},
	};
	int result;

	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		if (ioctl(vcpu->fd, reads[i].request, reads[i].target) == 0) {
			out->present |= reads[i].part;
		} else if (!reads[i].optional) {
			result = -errno;
			vm_snapshot__error(error, error_size, "vcpu %u: KVM get (part 0x%x): %s",
					   vcpu->index, reads[i].part, strerror(errno));
			return result;
		}
	}
	if ((result = vcpu__save_msrs(vm, vcpu->fd, out))) {
		vm_snapshot__error(error, error_size, "vcpu %u: MSRs: %s", vcpu->index,
				   strerror(-result));
		return result;
	}
	out->present |= SNAPSHOT_VCPU_MSRS;
	return 0;
}

static int vm_snapshot__save_vm(struct vm *vm, struct snapshot_state *state, char *error,
				size_t error_size)
{
	for (uint32_t chip = 0; chip < 3; chip++) {
		state->irqchip[chip].chip_id = chip;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &state->irqchip[chip]) < 0)
			goto err;
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &state->pit) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_CLOCK, &state->clock) < 0)
		goto err;
	pthread_mutex_lock(&vm->serial.lock);
	state->serial = (struct snapshot_serial){
	    .ier = vm->serial.ier,
	    .lcr = vm->serial.lcr,
	    .mcr = vm->serial.mcr,
	    .scr = vm->serial.scr,
	    .fcr = vm->serial.fcr,
	    .divisor_low = vm->serial.divisor_low,
	    .divisor_high = vm->serial.divisor_high,
	    .thr_empty_pending = vm->serial.thr_empty_pending != 0,
	    .irq_level = vm->serial.irq_level != 0,
	};
	pthread_mutex_unlock(&vm->serial.lock);
	return 0;
err:
	vm_snapshot__error(error, error_size, "VM state (irqchip, PIT, clock): %s",
			   strerror(errno));
	return -errno;
}

static int vm_snapshot__save_devices(struct vm *vm, struct snapshot_state *state, char *error,
				     size_t error_size)
{
	for (uint32_t i = 0; i < vm->device_count; i++) {
		struct vmm_device *device = &vm->devices[i];
		struct snapshot_device *out = &state->devices[i];
		size_t size = 0;
		int result;

		if (device->save == NULL) {
			vm_snapshot__error(error, error_size, "device %u (%s) cannot be saved", i,
					   device->type);
			return -EOPNOTSUPP;
		}
		snprintf(out->type, sizeof(out->type), "%s", device->type);
		out->mmio_base = device->mmio_base;
		out->irq = device->irq;
		result = device->save(device->opaque, out->data, sizeof(out->data), &size, error,
				      error_size);
		if (result)
			return result;
		out->size = (uint32_t)size;
	}
	state->device_count = vm->device_count;
	return 0;
}

int vm__snapshot(struct vm *vm, const char *path, json_t **info, char *error, size_t error_size)
{
	struct snapshot_state *state = NULL;
	struct snapshot_memory_stats stats = {0};
	uint64_t started = clock__monotonic_ns(), memory_ns = 0;
	char *memory_path = NULL;
	int result;

	*info = NULL;
	if (atomic_load(&vm->state) != VM_STATE_PAUSED) {
		vm_snapshot__error(error, error_size, "the VM is %s; pause it first",
				   vm__state_name(atomic_load(&vm->state)));
		return -EINVAL;
	}
	state = snapshot__alloc();
	memory_path = snapshot__memory_path(path);
	if (state == NULL || memory_path == NULL) {
		result = -ENOMEM;
		goto out;
	}
	state->machine = (struct snapshot_machine){
	    .vcpus = vm->vcpu_count,
	    .cpu_profile = (uint32_t)vm->config.cpu_profile,
	    .memory_size = vm->memory.size,
	    .memory_low_size = vm->memory.low_size,
	};
	state->vcpu_count = vm->vcpu_count;
	/* devices first: a busy one stops the snapshot before anything is written */
	if ((result = vm_snapshot__save_devices(vm, state, error, error_size)) ||
	    (result = vm_snapshot__save_vm(vm, state, error, error_size)))
		goto out;
	for (uint32_t i = 0; i < vm->vcpu_count; i++)
		if ((result = vcpu__save(vm, &vm->vcpus[i], &state->vcpus[i], error, error_size)))
			goto out;
	memory_ns = clock__monotonic_ns();
	unlink(path); /* the state file goes last: a crash leaves no valid pair */
	unlink(memory_path);
	if ((result = snapshot__write_memory(&vm->memory, memory_path, &stats, error, error_size)))
		goto out;
	memory_ns = clock__monotonic_ns() - memory_ns;
	state->machine.memory_bytes_written = stats.bytes_written;
	if ((result = snapshot__write_file(path, state, error, error_size))) {
		unlink(memory_path);
		goto out;
	}
	*info = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "path", path, "memory_path",
			  memory_path, "memory_bytes", (json_int_t)vm->memory.size,
			  "memory_bytes_written", (json_int_t)stats.bytes_written, "memory_writes",
			  (json_int_t)stats.extents, "memory_bytes_copied",
			  (json_int_t)stats.bytes_copied, "memory_ns", (json_int_t)memory_ns,
			  "total_ns", (json_int_t)(clock__monotonic_ns() - started));
out:
	free(memory_path);
	snapshot__free(state);
	return result;
}

/* --- restoring ---------------------------------------------------------- */

int vm__prepare_restore(struct vm *vm, const char *path, char *error, size_t error_size)
{
	struct snapshot_state *state = snapshot__alloc();
	const struct snapshot_machine *machine;
	size_t device_count = vm->config.devices ? json_array_size(vm->config.devices) : 0;
	int result;

	if (state == NULL)
		return -ENOMEM;
	if ((result = snapshot__read_file(path, state, error, error_size)))
		goto err;
	machine = &state->machine;
	result = -EINVAL;
	if (machine->vcpus != vm->config.vcpus ||
	    machine->memory_size != vm->config.memory_mib << 20 ||
	    machine->cpu_profile != (uint32_t)vm->config.cpu_profile ||
	    state->device_count != device_count) {
		vm_snapshot__error(
		    error, error_size,
		    "snapshot of %u vCPUs, %llu MiB, CPU profile %u, %u devices; the "
		    "VM is configured with %u, %llu, %u, %zu",
		    machine->vcpus, (unsigned long long)(machine->memory_size >> 20),
		    machine->cpu_profile, state->device_count, vm->config.vcpus,
		    (unsigned long long)vm->config.memory_mib, (unsigned)vm->config.cpu_profile,
		    device_count);
		goto err;
	}
	for (uint32_t i = 0; i < state->device_count; i++) {
		const char *type = json_string_value(
		    json_object_get(json_array_get(vm->config.devices, i), "type"));

		if (type == NULL || strcmp(type, state->devices[i].type) != 0) {
			vm_snapshot__error(error, error_size,
					   "device %u is \"%s\" in the snapshot, \"%s\" configured",
					   i, state->devices[i].type, type ? type : "");
			goto err;
		}
	}
	free(vm->restore_memory_path);
	snapshot__free(vm->restore);
	vm->restore_memory_path = snapshot__memory_path(path);
	vm->restore = state;
	return vm->restore_memory_path ? 0 : -ENOMEM;
err:
	snapshot__free(state);
	return result;
}

void vm_snapshot__release(struct vm *vm)
{
	snapshot__free(vm->restore);
	free(vm->restore_memory_path);
	vm->restore = NULL;
	vm->restore_memory_path = NULL;
}

int vm_snapshot__map_memory(struct vm *vm, char *error, size_t error_size)
{
	const struct snapshot_machine *machine = &vm->restore->machine;

	return snapshot__map_memory(vm->restore_memory_path, machine->memory_size,
				    machine->memory_low_size, &vm->memory, error, error_size);
}

int vm_snapshot__restore_devices(struct vm *vm, char *error, size_t error_size)
{
	for (uint32_t i = 0; i < vm->device_count; i++) {
		struct vmm_device *device = &vm->devices[i];
		const struct snapshot_device *saved = &vm->restore->devices[i];
		char reason[160] = "";
		int result;

		if (device->restore == NULL || saved->mmio_base != device->mmio_base ||
		    saved->irq != device->irq) {
			vm_snapshot__error(error, error_size,
					   "device %u (%s) cannot be restored at this window/IRQ",
					   i, device->type);
			return -EINVAL;
		}
		result = device->restore(device->opaque, saved->data, saved->size, reason,
					 sizeof(reason));
		if (result) {
			vm_snapshot__error(error, error_size, "device %u (%s): %s", i, device->type,
					   reason);
			return result;
		}
	}
	return 0;
}

/* KVM_SET_MSRS sets entries in order and stops at the first it refuses:
 * skip that one (logged) and go on. */
static void vcpu__restore_msrs(struct vcpu *vcpu, const struct snapshot_vcpu *saved)
{
	uint64_t buffer
	    [(sizeof(struct kvm_msrs) + SNAPSHOT_MAX_MSRS * sizeof(struct kvm_msr_entry)) / 8 + 1];
	struct kvm_msrs *msrs = (struct kvm_msrs *)buffer;
	uint32_t next = 0, refused = 0;

	while (next < saved->msr_count) {
		int set;

		msrs->nmsrs = saved->msr_count - next;
		msrs->pad = 0;
		memcpy(msrs->entries, &saved->msrs[next], msrs->nmsrs * sizeof(msrs->entries[0]));
		set = ioctl(vcpu->fd, KVM_SET_MSRS, msrs);
		if (set < 0 || (uint32_t)set >= msrs->nmsrs) {
			if (set < 0)
				refused += saved->msr_count - next;
			break;
		}
		refused++;
		next += (uint32_t)set + 1;
	}
	if (refused)
		log_warn("vcpu %u: %u saved MSRs not accepted by KVM", vcpu->index, refused);
}

static int vcpu__restore(struct vcpu *vcpu, const struct snapshot_vcpu *saved, char *error,
			 size_t error_size)
{
	/* the order QEMU and Firecracker use: special registers before the
	 * LAPIC, the LAPIC before the MSRs (TSC deadline) and the events */
	struct {
		unsigned long request;
		const void *source;
		uint32_t part;
	} writes[] = {
	    {KVM_SET_SREGS, &saved->sregs, SNAPSHOT_VCPU_SREGS},
	    {KVM_SET_REGS, &saved->regs, SNAPSHOT_VCPU_REGS},
	    {KVM_SET_FPU, &saved->fpu, SNAPSHOT_VCPU_FPU},
	    {KVM_SET_XSAVE, saved->xsave, SNAPSHOT_VCPU_XSAVE},
	    {KVM_SET_XCRS, &saved->xcrs, SNAPSHOT_VCPU_XCRS},
	    {KVM_SET_LAPIC, &saved->lapic, SNAPSHOT_VCPU_LAPIC},
	    {0, NULL, SNAPSHOT_VCPU_MSRS},
	    {KVM_SET_MP_STATE, &saved->mp_state, SNAPSHOT_VCPU_MP_STATE},
	    {KVM_SET_VCPU_EVENTS, &saved->events, SNAPSHOT_VCPU_EVENTS},
	    {KVM_SET_DEBUGREGS, &saved->debugregs, SNAPSHOT_VCPU_DEBUGREGS},
	};

	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		if (!(saved->present & writes[i].part))
			continue;
		if (writes[i].part == SNAPSHOT_VCPU_MSRS) {
			vcpu__restore_msrs(vcpu, saved);
			continue;
		}
		if (ioctl(vcpu->fd, writes[i].request, writes[i].source) < 0) {
			int result = -errno;

			vm_snapshot__error(error, error_size, "vcpu %u: KVM set (part 0x%x): %s",
					   vcpu->index, writes[i].part, strerror(errno));
			return result;
		}
	}
	return 0;
}

int vm_snapshot__restore_state(struct vm *vm, char *error, size_t error_size)
{
	const struct snapshot_state *state = vm->restore;
	struct kvm_clock_data clock = {.clock = state->clock.clock};
	int result;

	for (uint32_t chip = 0; chip < 3; chip++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &state->irqchip[chip]) < 0)
			goto err;
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &state->pit) < 0)
		goto err;
	for (uint32_t i = 0; i < vm->vcpu_count; i++)
		if ((result = vcpu__restore(&vm->vcpus[i], &state->vcpus[i], error, error_size)))
			return result;
	/* the guest's clock goes on from the value it had when saved (the
	 * paused time is not counted) */
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		goto err;
	pthread_mutex_lock(&vm->serial.lock);
	vm->serial.ier = state->serial.ier;
	vm->serial.lcr = state->serial.lcr;
	vm->serial.mcr = state->serial.mcr;
	vm->serial.scr = state->serial.scr;
	vm->serial.fcr = state->serial.fcr;
	vm->serial.divisor_low = state->serial.divisor_low;
	vm->serial.divisor_high = state->serial.divisor_high;
	vm->serial.thr_empty_pending = state->serial.thr_empty_pending != 0;
	vm->serial.irq_level = state->serial.irq_level != 0; /* the line is in the irqchip */
	pthread_mutex_unlock(&vm->serial.lock);
	return 0;
err:
	result = -errno;
	vm_snapshot__error(error, error_size, "VM state (irqchip, PIT, clock): %s",
			   strerror(errno));
	return result;
}
