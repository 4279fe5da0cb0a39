/* vm: KVM plumbing and vCPU threads (see vm.h). KVM API references are to
 * sections of Documentation/virt/kvm/api.rst (Linux 6.1). */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include <linux/kvm.h>

#include "boot.h"
#include "event_loop.h"
#include "loader.h"
#include "vm_snapshot.h"
#include "warren/clock.h"
#include "warren/log.h"

#define VCPU_KICK_SIGNAL	(SIGRTMIN + 1)
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MISC_ENABLE_FAST_STRING 0x1ull
#define LAPIC_LVT_LINT0		0x350
#define LAPIC_LVT_LINT1		0x360
#define LAPIC_MODE_NMI		0x4
#define LAPIC_MODE_EXTINT	0x7

static uint64_t process_start_ns;

__attribute__((constructor(101))) static void vm__record_process_start(void)
{
	process_start_ns = clock__monotonic_ns();
}

uint64_t vm__process_start_ns(void)
{
	return process_start_ns;
}

static void vm__error(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vm__error(char *error, size_t error_size, const char *fmt, ...)
{
	va_list ap;

	if (error == NULL || error_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(error, error_size, fmt, ap);
	va_end(ap);
}

/* --- configuration ------------------------------------------------------ */

void vm_config__init(struct vm_config *config)
{
	memset(config, 0, sizeof(*config));
	config->vcpus = 1;
	config->memory_mib = 128;
	config->cpu_profile = CPU_PROFILE_BASELINE;
}

void vm_config__free(struct vm_config *config)
{
	free(config->kernel);
	free(config->initrd);
	free(config->command_line);
	free(config->console);
	if (config->devices)
		json_decref(config->devices);
	vm_config__init(config);
}

static int vm_config__string(const json_t *object, const char *key, char **out, bool required,
			     char *error, size_t error_size)
{
	const json_t *value = json_object_get(object, key);

	if (value == NULL || json_is_null(value)) {
		if (required) {
			vm__error(error, error_size, "\"%s\" is required", key);
			return -EINVAL;
		}
		return 0;
	}
	if (!json_is_string(value) || json_string_length(value) == 0 ||
	    json_string_length(value) >= 4096 ||
	    strlen(json_string_value(value)) != json_string_length(value)) {
		vm__error(error, error_size, "\"%s\" must be a non-empty string without NUL", key);
		return -EINVAL;
	}
	*out = strdup(json_string_value(value));
	return *out ? 0 : -ENOMEM;
}

static int vm_config__integer(const json_t *object, const char *key, uint64_t minimum,
			      uint64_t maximum, uint64_t *out, char *error, size_t error_size)
{
	const json_t *value = json_object_get(object, key);

	if (value == NULL)
		return 0;
	if (!json_is_integer(value) || json_integer_value(value) < 0 ||
	    (uint64_t)json_integer_value(value) < minimum ||
	    (uint64_t)json_integer_value(value) > maximum) {
		vm__error(error, error_size, "\"%s\" must be an integer in [%llu, %llu]", key,
			  (unsigned long long)minimum, (unsigned long long)maximum);
		return -EINVAL;
	}
	*out = (uint64_t)json_integer_value(value);
	return 0;
}

int vm_config__from_json(struct vm_config *config, const json_t *object, char *error,
			 size_t error_size)
{
	static const char *const known[] = {"kernel",	  "initrd",	"cmdline",
					    "vcpus",	  "memory_mib", "cpu_profile",
					    "io_poll_us", "console",	"devices"};
	const json_t *value;
	const char *key;
	uint64_t number;
	int result;

	vm_config__init(config);
	if (!json_is_object(object)) {
		vm__error(error, error_size, "configuration must be an object");
		return -EINVAL;
	}
	json_object_foreach((json_t *)object, key, value)
	{
		bool found = false;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			found = found || strcmp(key, known[i]) == 0;
		if (!found) {
			vm__error(error, error_size, "unknown configuration key \"%.64s\"", key);
			return -EINVAL;
		}
	}
	if ((result =
		 vm_config__string(object, "kernel", &config->kernel, true, error, error_size)) ||
	    (result =
		 vm_config__string(object, "initrd", &config->initrd, false, error, error_size)) ||
	    (result = vm_config__string(object, "cmdline", &config->command_line, false, error,
					error_size)) ||
	    (result =
		 vm_config__string(object, "console", &config->console, false, error, error_size)))
		goto err;
	number = config->vcpus;
	if ((result =
		 vm_config__integer(object, "vcpus", 1, VM_MAX_VCPUS, &number, error, error_size)))
		goto err;
	config->vcpus = (uint32_t)number;
	if ((result = vm_config__integer(object, "memory_mib", 16, VM_MAX_MEMORY_MIB,
					 &config->memory_mib, error, error_size)))
		goto err;
	number = config->io_poll_us;
	if ((result = vm_config__integer(object, "io_poll_us", 0, VM_MAX_IO_POLL_US, &number, error,
					 error_size)))
		goto err;
	config->io_poll_us = (uint32_t)number;
	value = json_object_get(object, "cpu_profile");
	if (value != NULL &&
	    !cpuid__parse_profile(json_string_value(value), &config->cpu_profile)) {
		vm__error(error, error_size, "\"cpu_profile\" must be \"baseline\" or \"host\"");
		result = -EINVAL;
		goto err;
	}
	value = json_object_get(object, "devices");
	if (value != NULL) {
		size_t index;
		const json_t *device;

		if (!json_is_array(value) || json_array_size(value) > MMIO_BUS_VIRTIO_MAX_DEVICES) {
			vm__error(error, error_size, "\"devices\" must be an array of at most %d",
				  MMIO_BUS_VIRTIO_MAX_DEVICES);
			result = -EINVAL;
			goto err;
		}
		json_array_foreach(value, index, device)
		{
			/* "tap_fd" names a descriptor of this process: only the
			 * VMM's own jail sets it (vmm/jail.c), never a client. */
			if (!json_is_object(device) ||
			    !json_is_string(json_object_get(device, "type")) ||
			    json_object_get(device, "tap_fd") != NULL) {
				vm__error(error, error_size,
					  "devices[%zu] must be an object with a string \"type\""
					  " (and no \"tap_fd\")",
					  index);
				result = -EINVAL;
				goto err;
			}
		}
		config->devices = json_deep_copy(value);
	}
	return 0;
err:
	vm_config__free(config);
	return result;
}

/* --- names, JSON ------------------------------------------------------ */

const char *vm__state_name(enum vm_state state)
{
	switch (state) {
	case VM_STATE_EMPTY:
		return "empty";
	case VM_STATE_CONFIGURED:
		return "configured";
	case VM_STATE_RUNNING:
		return "running";
	case VM_STATE_PAUSED:
		return "paused";
	case VM_STATE_STOPPED:
		return "stopped";
	}
	return "unknown";
}

const char *vm__exit_reason_name(enum vm_exit_reason reason)
{
	switch (reason) {
	case VM_EXIT_NONE:
		return "none";
	case VM_EXIT_DEBUG:
		return "debug-exit";
	case VM_EXIT_RESET:
		return "reset";
	case VM_EXIT_SHUTDOWN:
		return "shutdown";
	case VM_EXIT_WATCHDOG:
		return "watchdog";
	case VM_EXIT_STOPPED:
		return "stopped";
	case VM_EXIT_INTERNAL_ERROR:
		return "internal-error";
	case VM_EXIT_VMM_ERROR:
		return "vmm-error";
	}
	return "unknown";
}

static const char *const exit_counter_names[VM_COUNT_MAX] = {
    [VM_COUNT_IO] = "io",
    [VM_COUNT_IO_UNHANDLED] = "io_unhandled",
    [VM_COUNT_MMIO] = "mmio",
    [VM_COUNT_MMIO_UNHANDLED] = "mmio_unhandled",
    [VM_COUNT_HLT] = "hlt",
    [VM_COUNT_SHUTDOWN] = "shutdown",
    [VM_COUNT_INTR] = "intr",
    [VM_COUNT_SYSTEM_EVENT] = "system_event",
    [VM_COUNT_INTERNAL_ERROR] = "internal_error",
    [VM_COUNT_FAIL_ENTRY] = "fail_entry",
    [VM_COUNT_OTHER] = "other",
};

int vm__exit_status(const struct vm *vm)
{
	switch ((enum vm_exit_reason)atomic_load(&vm->exit_reason)) {
	case VM_EXIT_DEBUG:
		return vm->exit_code > 99 ? 99 : vm->exit_code;
	case VM_EXIT_RESET:
		return 100;
	case VM_EXIT_SHUTDOWN:
		return 101;
	case VM_EXIT_WATCHDOG:
		return 102;
	case VM_EXIT_STOPPED:
		return 103;
	case VM_EXIT_INTERNAL_ERROR:
		return 104;
	case VM_EXIT_NONE:
	case VM_EXIT_VMM_ERROR:
		return 125;
	}
	return 125;
}

json_t *vm__state_json(struct vm *vm)
{
	json_t *object = json_object();
	enum vm_exit_reason reason = atomic_load(&vm->exit_reason);

	json_object_set_new(object, "state", json_string(vm__state_name(atomic_load(&vm->state))));
	if (reason != VM_EXIT_NONE) {
		pthread_mutex_lock(&vm->lock);
		json_object_set_new(object, "exit_reason",
				    json_string(vm__exit_reason_name(reason)));
		if (reason == VM_EXIT_DEBUG)
			json_object_set_new(object, "exit_code", json_integer(vm->exit_code));
		if (vm->exit_detail[0])
			json_object_set_new(object, "exit_detail", json_string(vm->exit_detail));
		pthread_mutex_unlock(&vm->lock);
	}
	return object;
}

json_t *vm__metrics_json(struct vm *vm)
{
	json_t *object = vm__state_json(vm);
	json_t *exits = json_object();
	json_t *markers = json_array();
	json_t *devices = json_array();
	json_t *console = json_object();
	uint32_t marker_count = atomic_load(&vm->boot_marker_count);

	for (int i = 0; i < VM_COUNT_MAX; i++)
		json_object_set_new(exits, exit_counter_names[i],
				    json_integer((json_int_t)atomic_load(&vm->exits[i])));
	json_object_set_new(object, "exits", exits);
	if (marker_count > VM_MAX_BOOT_MARKERS)
		marker_count = VM_MAX_BOOT_MARKERS;
	for (uint32_t i = 0; i < marker_count; i++)
		json_array_append_new(markers, json_integer((json_int_t)vm->boot_markers_ns[i]));
	json_object_set_new(object, "boot_markers_ns", markers);
	if (vm->start_ns)
		json_object_set_new(object, "start_since_process_ns",
				    json_integer((json_int_t)(vm->start_ns - process_start_ns)));
	if (vm->console_ready) {
		pthread_mutex_lock(&vm->console.lock);
		json_object_set_new(console, "bytes", json_integer((json_int_t)vm->console.total));
		json_object_set_new(console, "dropped",
				    json_integer((json_int_t)vm->console.dropped));
		if (vm->console.first_byte_ns)
			json_object_set_new(console, "first_byte_since_process_ns",
					    json_integer((json_int_t)(vm->console.first_byte_ns -
								      process_start_ns)));
		pthread_mutex_unlock(&vm->console.lock);
	}
	json_object_set_new(object, "console", console);
	for (uint32_t i = 0; i < vm->device_count; i++) {
		const struct vmm_device *device = &vm->devices[i];
		json_t *entry = json_pack("{s:s, s:I, s:i}", "type", device->type, "mmio_base",
					  (json_int_t)device->mmio_base, "irq", (int)device->irq);

		if (entry && device->metrics) {
			json_t *metrics = device->metrics(device->opaque);

			if (metrics)
				json_object_set_new(entry, "metrics", metrics);
		}
		if (entry)
			json_array_append_new(devices, entry);
	}
	json_object_set_new(object, "devices", devices);
	return object;
}

/* --- legacy devices --------------------------------------------------- */

static void vm__serial_output(void *opaque, uint8_t byte)
{
	struct vm *vm = opaque;

	console__put(&vm->console, byte);
}

static void vm__serial_irq(void *opaque, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level irq = {.irq = SERIAL_COM1_IRQ, .level = (uint32_t)level};

	ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
}

static void i8042__read(void *opaque, uint64_t offset, uint8_t *data, uint32_t size)
{
	data[0] = 0; /* status (0x64): output buffer empty, input buffer empty */
}

static void i8042__write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size)
{
	struct vm *vm = opaque;

	/* 0x64 is offset 4 of the 0x60 range; command 0xfe pulses the reset line */
	if (offset == 4 && data[0] == 0xfe)
		vm__request_stop(vm, VM_EXIT_RESET, 0, "i8042 reset (0xfe to port 0x64)");
}

static const struct mmio_bus_ops i8042__ops = {.read = i8042__read, .write = i8042__write};

static void debug_exit__write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size)
{
	vm__request_stop(opaque, VM_EXIT_DEBUG, data[0], NULL);
}

static const struct mmio_bus_ops debug_exit__ops = {.write = debug_exit__write};

static void boot_marker__write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size)
{
	struct vm *vm = opaque;
	uint64_t now = clock__monotonic_ns() - process_start_ns;
	uint32_t index = atomic_fetch_add(&vm->boot_marker_count, 1);

	if (index < VM_MAX_BOOT_MARKERS)
		vm->boot_markers_ns[index] = now;
	if (vm->verbose && index < VM_MAX_BOOT_MARKERS) /* a guest may write it forever */
		log_info("boot marker %u (value %u): %llu ns since process start", index, data[0],
			 (unsigned long long)now);
}

static const struct mmio_bus_ops boot_marker__ops = {.write = boot_marker__write};

/* Test register: stores the last write, reads its complement (so a guest
 * can tell a real round trip from plain memory). */
static void test_register__read(void *opaque, uint64_t offset, uint8_t *data, uint32_t size)
{
	struct vm *vm = opaque;
	uint64_t value;

	pthread_mutex_lock(&vm->test_lock);
	value = ~vm->test_register;
	pthread_mutex_unlock(&vm->test_lock);
	if (offset >= 8 || size > 8 - offset)
		return;
	value >>= offset * 8;
	memcpy(data, &value, size);
}

static void test_register__write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t size)
{
	struct vm *vm = opaque;
	uint64_t value = 0;

	if (offset != 0 || size > 8)
		return;
	memcpy(&value, data, size);
	pthread_mutex_lock(&vm->test_lock);
	vm->test_register = value;
	pthread_mutex_unlock(&vm->test_lock);
}

static const struct mmio_bus_ops test_register__ops = {.read = test_register__read,
						       .write = test_register__write};

/* Ports whose reads are 0 and writes ignored: CMOS/RTC (0x70/0x71, read 0
 * so Linux's update-in-progress poll ends) and POST code 0x80 (io_delay). */
static const struct mmio_bus_ops sink__ops = {0};

static int vm__register_legacy(struct vm *vm)
{
	int result;

	serial__init(&vm->serial, vm__serial_output, vm__serial_irq, vm);
	if ((result = mmio_bus__register(vm->bus, MMIO_BUS_PORT, SERIAL_COM1_BASE, 8, &serial__ops,
					 &vm->serial, "serial")) ||
	    (result =
		 mmio_bus__register(vm->bus, MMIO_BUS_PORT, 0x60, 5, &i8042__ops, vm, "i8042")) ||
	    (result = mmio_bus__register(vm->bus, MMIO_BUS_PORT, VM_PORT_DEBUG_EXIT, 1,
					 &debug_exit__ops, vm, "debug-exit")) ||
	    (result = mmio_bus__register(vm->bus, MMIO_BUS_PORT, VM_PORT_BOOT_MARKER, 1,
					 &boot_marker__ops, vm, "boot-marker")) ||
	    (result = mmio_bus__register(vm->bus, MMIO_BUS_PORT, VM_PORT_TEST, 8,
					 &test_register__ops, vm, "test-register")) ||
	    (result = mmio_bus__register(vm->bus, MMIO_BUS_MEMORY, VM_TEST_MMIO_BASE, 0x1000,
					 &test_register__ops, vm, "test-register")) ||
	    (result =
		 mmio_bus__register(vm->bus, MMIO_BUS_PORT, 0x70, 2, &sink__ops, vm, "cmos")) ||
	    (result = mmio_bus__register(vm->bus, MMIO_BUS_PORT, 0x80, 1, &sink__ops, vm, "post")))
		return result;
	return 0;
}

/* --- vCPU threads ------------------------------------------------------ */

static void vcpu__kick_handler(int signal_number)
{
	(void)signal_number; /* only interrupts KVM_RUN (EINTR) */
}

static void vm__kick_all(struct vm *vm)
{
	for (uint32_t i = 0; i < vm->vcpu_count; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];

		if (vcpu->run)
			__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (vcpu->thread_started && !pthread_equal(vcpu->thread, pthread_self()))
			pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
	}
}

static void vcpu__handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint64_t length = (uint64_t)run->io.size * run->io.count;
	uint8_t *data;

	if (run->io.size == 0 || run->io.size > 4 || run->io.data_offset > vcpu->run_size ||
	    length > vcpu->run_size - run->io.data_offset) {
		atomic_fetch_add(&vcpu->vm->exits[VM_COUNT_IO_UNHANDLED], 1);
		return;
	}
	data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (!mmio_bus__dispatch(vcpu->vm->bus, MMIO_BUS_PORT, run->io.port,
					data + (uint64_t)i * run->io.size, run->io.size,
					run->io.direction == KVM_EXIT_IO_OUT))
			atomic_fetch_add(&vcpu->vm->exits[VM_COUNT_IO_UNHANDLED], 1);
	}
}

static void vcpu__handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint32_t length = run->mmio.len;

	if (length == 0 || length > sizeof(run->mmio.data) ||
	    !mmio_bus__dispatch(vcpu->vm->bus, MMIO_BUS_MEMORY, run->mmio.phys_addr, run->mmio.data,
				length ? (length > 8 ? 8 : length) : 1, run->mmio.is_write))
		atomic_fetch_add(&vcpu->vm->exits[VM_COUNT_MMIO_UNHANDLED], 1);
}

static void vcpu__wait_while_paused(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->lock);
	vm->paused_vcpus++;
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->pause_requested) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->paused_vcpus--;
	pthread_mutex_unlock(&vm->lock);
}

/* After an I/O or MMIO exit the instruction completes only on the next
 * KVM_RUN: enter with immediate_exit set, so KVM completes it and returns
 * at once without running the guest. A paused vCPU's state is then
 * consistent for a snapshot (KVM API, "immediate_exit"). */
static void vcpu__complete_pending(struct vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (ioctl(vcpu->fd, KVM_RUN, 0) == 0 || errno != EINTR)
		log_debug("vcpu %u: completing the last exit: %s", vcpu->index, strerror(errno));
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

/* Capabilities are per thread: a vCPU thread drops all of its own before
 * it runs the guest (lowering them is always allowed). */
static void vcpu__drop_capabilities(void)
{
	struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &header, data) != 0)
		log_warn("vcpu: capset: %s",
			 strerror(errno)); /* on_ready's check fails the start */
}

static void *vcpu__thread(void *opaque)
{
	struct vcpu *vcpu = opaque;
	struct vm *vm = vcpu->vm;
	struct kvm_run *run = vcpu->run;
	bool pending_completion = false; /* the last exit was I/O: KVM finishes it on entry */
	char detail[128];

	if (vm->on_ready)
		vcpu__drop_capabilities();
	for (;;) {
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (atomic_load(&vm->stopping))
			break;
		if (atomic_load(&vm->pause_requested)) {
			if (pending_completion)
				vcpu__complete_pending(vcpu);
			pending_completion = false;
			vcpu__wait_while_paused(vcpu);
			continue;
		}
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				atomic_fetch_add(&vm->exits[VM_COUNT_INTR], 1);
				continue;
			}
			snprintf(detail, sizeof(detail), "vcpu %u: KVM_RUN: %s", vcpu->index,
				 strerror(errno));
			vm__request_stop(vm, VM_EXIT_VMM_ERROR, 0, detail);
			break;
		}
		pending_completion =
		    run->exit_reason == KVM_EXIT_IO || run->exit_reason == KVM_EXIT_MMIO;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			atomic_fetch_add(&vm->exits[VM_COUNT_IO], 1);
			vcpu__handle_io(vcpu);
			break;
		case KVM_EXIT_MMIO:
			atomic_fetch_add(&vm->exits[VM_COUNT_MMIO], 1);
			vcpu__handle_mmio(vcpu);
			break;
		case KVM_EXIT_HLT:
			atomic_fetch_add(&vm->exits[VM_COUNT_HLT], 1);
			break;
		case KVM_EXIT_INTR:
			atomic_fetch_add(&vm->exits[VM_COUNT_INTR], 1);
			break;
		case KVM_EXIT_SHUTDOWN:
			atomic_fetch_add(&vm->exits[VM_COUNT_SHUTDOWN], 1);
			snprintf(detail, sizeof(detail), "vcpu %u: triple fault", vcpu->index);
			vm__request_stop(vm, VM_EXIT_SHUTDOWN, 0, detail);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			atomic_fetch_add(&vm->exits[VM_COUNT_SYSTEM_EVENT], 1);
			if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
				vm__request_stop(vm, VM_EXIT_RESET, 0, "system event: reset");
			else
				vm__request_stop(vm, VM_EXIT_SHUTDOWN, 0, "system event: shutdown");
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			atomic_fetch_add(&vm->exits[VM_COUNT_INTERNAL_ERROR], 1);
			snprintf(detail, sizeof(detail),
				 "vcpu %u: KVM internal error, suberror %u%s", vcpu->index,
				 run->internal.suberror,
				 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
				     ? " (emulation failure)"
				     : "");
			vm__request_stop(vm, VM_EXIT_INTERNAL_ERROR, 0, detail);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			atomic_fetch_add(&vm->exits[VM_COUNT_FAIL_ENTRY], 1);
			snprintf(detail, sizeof(detail), "vcpu %u: entry failed, reason 0x%llx",
				 vcpu->index,
				 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			vm__request_stop(vm, VM_EXIT_INTERNAL_ERROR, 0, detail);
			break;
		default:
			atomic_fetch_add(&vm->exits[VM_COUNT_OTHER], 1);
			snprintf(detail, sizeof(detail), "vcpu %u: unexpected exit reason %u",
				 vcpu->index, run->exit_reason);
			vm__request_stop(vm, VM_EXIT_VMM_ERROR, 0, detail);
			break;
		}
	}
	pthread_mutex_lock(&vm->lock);
	vm->running_vcpus--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

/* --- stop / pause ------------------------------------------------------ */

static void vm__join_vcpus(struct vm *vm)
{
	for (uint32_t i = 0; i < vm->vcpu_count; i++) {
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
}

static void vm__stopped_on_loop(void *opaque)
{
	struct vm *vm = opaque;

	if (vm->stop_handled)
		return;
	vm->stop_handled = true;
	vm__join_vcpus(vm);
	if (vm->console_ready)
		console__flush(&vm->console);
	atomic_store(&vm->state, VM_STATE_STOPPED);
	if (vm->verbose || atomic_load(&vm->exit_reason) != VM_EXIT_DEBUG)
		log_info("vm stopped: %s%s%s", vm__exit_reason_name(atomic_load(&vm->exit_reason)),
			 vm->exit_detail[0] ? ": " : "", vm->exit_detail);
	if (vm->on_stop)
		vm->on_stop(vm, vm->on_stop_opaque);
}

void vm__request_stop(struct vm *vm, enum vm_exit_reason reason, int code, const char *detail)
{
	bool first = false;

	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->exit_reason) == VM_EXIT_NONE) {
		vm->exit_code = code;
		snprintf(vm->exit_detail, sizeof(vm->exit_detail), "%s", detail ? detail : "");
		atomic_store(&vm->exit_reason, reason);
		first = true;
	}
	atomic_store(&vm->stopping, true);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	vm__kick_all(vm);
	if (vm->loop == NULL || event_loop__defer(vm->loop, vm__stopped_on_loop, vm) != 0)
		log_error("vm: cannot hand the stop to the event loop");
}

int vm__pause(struct vm *vm)
{
	if (atomic_load(&vm->state) != VM_STATE_RUNNING)
		return -EINVAL;
	atomic_store(&vm->pause_requested, true);
	vm__kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->paused_vcpus < vm->running_vcpus && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (!atomic_load(&vm->stopping))
		atomic_store(&vm->state, VM_STATE_PAUSED);
	pthread_mutex_unlock(&vm->lock);
	return atomic_load(&vm->stopping) ? -EINVAL : 0;
}

int vm__resume(struct vm *vm)
{
	if (atomic_load(&vm->state) != VM_STATE_PAUSED)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->pause_requested, false);
	atomic_store(&vm->state, VM_STATE_RUNNING);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

json_t *vm__registers_json(struct vm *vm)
{
	json_t *array;

	if (atomic_load(&vm->state) != VM_STATE_PAUSED)
		return NULL;
	array = json_array();
	for (uint32_t i = 0; i < vm->vcpu_count; i++) {
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		struct kvm_mp_state mp_state = {0};

		if (ioctl(vm->vcpus[i].fd, KVM_GET_REGS, &regs) < 0 ||
		    ioctl(vm->vcpus[i].fd, KVM_GET_SREGS, &sregs) < 0)
			continue;
		ioctl(vm->vcpus[i].fd, KVM_GET_MP_STATE, &mp_state);
		json_array_append_new(
		    array, json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:i, s:i}", "vcpu", (int)i,
				     "rip", (json_int_t)regs.rip, "rsp", (json_int_t)regs.rsp,
				     "rflags", (json_int_t)regs.rflags, "cr0",
				     (json_int_t)sregs.cr0, "cr3", (json_int_t)sregs.cr3, "cs",
				     (int)sregs.cs.selector, "mp_state", (int)mp_state.mp_state));
	}
	return array;
}

/* --- creation ------------------------------------------------------ */

void vm__init(struct vm *vm, struct event_loop *loop)
{
	memset(vm, 0, sizeof(*vm));
	vm->loop = loop;
	vm->kvm_fd = -1;
	vm->vm_fd = -1;
	vm->memory.memfd = -1;
	vm->memory.source_fd = -1;
	vm_config__init(&vm->config);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->test_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	atomic_store(&vm->state, VM_STATE_EMPTY);
}

int vm__configure(struct vm *vm, struct vm_config *config)
{
	enum vm_state state = atomic_load(&vm->state);

	if (state != VM_STATE_EMPTY && state != VM_STATE_CONFIGURED)
		return -EBUSY;
	vm_config__free(&vm->config);
	vm->config = *config;
	vm_config__init(config);
	atomic_store(&vm->state, VM_STATE_CONFIGURED);
	return 0;
}

static int vm__create_memory(struct vm *vm, char *error, size_t error_size)
{
	uint64_t size = vm->config.memory_mib << 20;
	struct kvm_userspace_memory_region region = {0};

	if (vm->restore) {
		int result = vm_snapshot__map_memory(vm, error, error_size);

		if (result)
			return result;
		goto regions;
	}
	vm->memory.size = size;
	vm->memory.low_size = size < GUEST_MEMORY_LOW_LIMIT ? size : GUEST_MEMORY_LOW_LIMIT;
	vm->memory.memfd = memfd_create("warren-guest-ram", MFD_CLOEXEC);
	if (vm->memory.memfd < 0 || ftruncate(vm->memory.memfd, (off_t)size) < 0) {
		vm__error(error, error_size, "guest memory: %s", strerror(errno));
		return -errno;
	}
	vm->memory.host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			       vm->memory.memfd, 0);
	if (vm->memory.host == MAP_FAILED) {
		vm->memory.host = NULL;
		vm__error(error, error_size, "guest memory mmap: %s", strerror(errno));
		return -ENOMEM;
	}
	madvise(vm->memory.host, size, MADV_DONTDUMP);
regions:
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = vm->memory.low_size;
	region.userspace_addr = (uint64_t)(uintptr_t)vm->memory.host;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		goto err;
	if (size > vm->memory.low_size) {
		region.slot = 1;
		region.guest_phys_addr = GUEST_MEMORY_HIGH_BASE;
		region.memory_size = size - vm->memory.low_size;
		region.userspace_addr =
		    (uint64_t)(uintptr_t)(vm->memory.host + vm->memory.low_size);
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			goto err;
	}
	return 0;
err:
	vm__error(error, error_size, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	return -errno;
}

static int vm__map_file(const char *path, uint8_t **data, size_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return -EINVAL;
	}
	*size = (size_t)st.st_size;
	*data = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (*data == MAP_FAILED) {
		*data = NULL;
		return -errno;
	}
	return 0;
}

static int vm__load_initrd(struct vm *vm, const struct loader_image *image,
			   struct boot_setup *setup, char *error, size_t error_size)
{
	uint8_t *data;
	size_t size;
	uint64_t address_max =
	    image->kind == LOADER_BZIMAGE ? image->initrd_address_max : 0x7fffffff;
	void *target;
	int result = vm__map_file(vm->config.initrd, &data, &size);

	if (result) {
		vm__error(error, error_size, "initrd %s: %s", vm->config.initrd, strerror(-result));
		return result;
	}
	setup->initrd_address = boot__initrd_address(&vm->memory, size, image->end, address_max);
	target = setup->initrd_address ? guest_memory__ptr(&vm->memory, setup->initrd_address, size)
				       : NULL;
	if (target == NULL) {
		vm__error(error, error_size, "initrd of %zu bytes does not fit in guest memory",
			  size);
		munmap(data, size);
		return -EINVAL;
	}
	memcpy(target, data, size);
	setup->initrd_size = size;
	munmap(data, size);
	return 0;
}

static char *vm__build_command_line(struct vm *vm)
{
	const char *base =
	    vm->config.command_line ? vm->config.command_line : VM_DEFAULT_COMMAND_LINE;
	size_t capacity = strlen(base) + 1 + vm->device_count * 64;
	char *line = malloc(capacity);
	size_t used;

	if (line == NULL)
		return NULL;
	used = (size_t)snprintf(line, capacity, "%s", base);
	for (uint32_t i = 0; i < vm->device_count && used < capacity; i++)
		used += (size_t)snprintf(
		    line + used, capacity - used, " virtio_mmio.device=%lluK@0x%llx:%u",
		    (unsigned long long)(vm->devices[i].mmio_size >> 10),
		    (unsigned long long)vm->devices[i].mmio_base, vm->devices[i].irq);
	return line;
}

static int vm__create_devices(struct vm *vm, char *error, size_t error_size)
{
	static const uint32_t irqs[MMIO_BUS_VIRTIO_MAX_DEVICES] = MMIO_BUS_VIRTIO_IRQS;
	struct vmm_device_host host = {
	    .vm_fd = vm->vm_fd, .memory = &vm->memory, .loop = vm->loop, .bus = vm->bus};
	size_t index;
	json_t *device;

	if (vm->config.devices == NULL)
		return 0;
	json_array_foreach(vm->config.devices, index, device)
	{
		struct vmm_device *out = &vm->devices[vm->device_count];
		uint64_t base = MMIO_BUS_VIRTIO_BASE + index * MMIO_BUS_VIRTIO_WINDOW;
		int result;

		const char *name = json_string_value(json_object_get(device, "type"));
		const struct vmm_device_type *type = mmio_bus__device_type(vm->device_types, name);

		if (index >= MMIO_BUS_VIRTIO_MAX_DEVICES)
			return -EINVAL;
		if (type == NULL) {
			vm__error(error, error_size, "unknown device type \"%.32s\"",
				  name ? name : "");
			return -EINVAL;
		}
		memset(out, 0, sizeof(*out));
		result = type->create(&host, device, base, irqs[index], out, error, error_size);
		if (result)
			return result;
		out->mmio_base = base;
		out->irq = irqs[index];
		if (out->mmio_size == 0)
			out->mmio_size = MMIO_BUS_VIRTIO_WINDOW;
		vm->device_count++;
	}
	return 0;
}

static int vcpu__setup_cpuid(struct vm *vm, struct vcpu *vcpu, const struct kvm_cpuid2 *supported)
{
	size_t size = sizeof(struct kvm_cpuid2) + supported->nent * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *cpuid = malloc(size);
	int result = 0;

	if (cpuid == NULL)
		return -ENOMEM;
	memcpy(cpuid, supported, size);
	cpuid__apply_profile(cpuid->entries, cpuid->nent, vm->config.cpu_profile, vcpu->index,
			     vm->config.vcpus);
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0)
		result = -errno;
	free(cpuid);
	return result;
}

static struct kvm_cpuid2 *vm__supported_cpuid(int kvm_fd)
{
	for (uint32_t entries = 128; entries <= 4096; entries *= 2) {
		struct kvm_cpuid2 *cpuid =
		    calloc(1, sizeof(*cpuid) + entries * sizeof(struct kvm_cpuid_entry2));

		if (cpuid == NULL)
			return NULL;
		cpuid->nent = entries;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			return cpuid;
		free(cpuid);
		if (errno != E2BIG)
			return NULL;
	}
	return NULL;
}

static int vcpu__setup_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;
	uint32_t value;

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	/* LINT0: ExtINT (the 8259 PIC's output), LINT1: NMI, as a BIOS leaves them */
	memcpy(&value, lapic.regs + LAPIC_LVT_LINT0, 4);
	value = (value & ~0x700u) | (LAPIC_MODE_EXTINT << 8);
	memcpy(lapic.regs + LAPIC_LVT_LINT0, &value, 4);
	memcpy(&value, lapic.regs + LAPIC_LVT_LINT1, 4);
	value = (value & ~0x700u) | (LAPIC_MODE_NMI << 8);
	memcpy(lapic.regs + LAPIC_LVT_LINT1, &value, 4);
	return ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0 ? -errno : 0;
}

static int vcpu__create(struct vm *vm, uint32_t index, const struct loader_image *image,
			const struct kvm_cpuid2 *cpuid, char *error, size_t error_size)
{
	struct vcpu *vcpu = &vm->vcpus[index];
	uint64_t msr_buffer[(sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)) / 8 + 1] = {0};
	struct kvm_msrs *msrs = (struct kvm_msrs *)msr_buffer;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	int run_size, result;

	vcpu->vm = vm;
	vcpu->index = index;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0) {
		vm__error(error, error_size, "KVM_CREATE_VCPU %u: %s", index, strerror(errno));
		return -errno;
	}
	vm->vcpu_count = index + 1;
	run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run)) {
		vm__error(error, error_size, "KVM_GET_VCPU_MMAP_SIZE failed");
		return -EINVAL;
	}
	vcpu->run_size = (size_t)run_size;
	vcpu->run = mmap(NULL, vcpu->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		vm__error(error, error_size, "mmap kvm_run: %s", strerror(errno));
		return -ENOMEM;
	}
	if ((result = vcpu__setup_cpuid(vm, vcpu, cpuid))) {
		vm__error(error, error_size, "KVM_SET_CPUID2: %s", strerror(-result));
		return result;
	}
	msrs->nmsrs = 1;
	msrs->entries[0].index = MSR_IA32_MISC_ENABLE;
	msrs->entries[0].data = MISC_ENABLE_FAST_STRING;
	if (ioctl(vcpu->fd, KVM_SET_MSRS, msrs) != 1)
		log_warn("vcpu %u: KVM_SET_MSRS(IA32_MISC_ENABLE) not accepted", index);
	if ((result = vcpu__setup_lapic(vcpu))) {
		vm__error(error, error_size, "vcpu %u LAPIC: %s", index, strerror(-result));
		return result;
	}
	if (index != 0 || vm->restore)
		return 0; /* APs wait for INIT/SIPI; a restore sets every vCPU later */
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		goto err;
	boot__initial_registers(image, &regs, &sregs);
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		goto err;
	return 0;
err:
	vm__error(error, error_size, "vcpu %u registers: %s", index, strerror(errno));
	return -errno;
}

static int vm__lock_down(struct vm *vm, char *error, size_t error_size);

/* vm__start's context: the kernel image and boot setup the steps below
 * build, freed by vm_start__release(). Each step returns 0 or -errno with
 * a reason in error. */
struct vm_start {
	struct vm *vm;
	char *error;
	size_t error_size;
	struct loader_image image;
	struct boot_setup setup;
	uint8_t *kernel;
	size_t kernel_size;
	char *command_line;
	struct kvm_cpuid2 *cpuid;
};

/* Step 1: the bus and the console, before KVM. */
static int vm_start__host(struct vm_start *start)
{
	struct vm *vm = start->vm;
	int result;

	vm->start_ns = clock__monotonic_ns();
	if (vm->loop)
		event_loop__set_polling(vm->loop, (uint64_t)vm->config.io_poll_us * 1000u);
	vm->bus = mmio_bus__create();
	if (vm->bus == NULL)
		return -ENOMEM;
	result = console__init(&vm->console, vm->config.console, vm->loop, vm->restore != NULL);
	if (result) {
		vm__error(start->error, start->error_size, "console %s: %s", vm->config.console,
			  strerror(-result));
		return result;
	}
	vm->console_ready = true;
	return 0;
}

/* Step 2: the KVM VM, its memory, the in-kernel irqchip and PIT. */
static int vm_start__kvm(struct vm_start *start)
{
	struct vm *vm = start->vm;
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	uint64_t identity_map = VM_IDENTITY_MAP_ADDRESS;
	int result;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		result = -errno;
		vm__error(start->error, start->error_size, "/dev/kvm: %s", strerror(errno));
		return result;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		vm__error(start->error, start->error_size, "KVM API version is not %d",
			  KVM_API_VERSION);
		return -EINVAL;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		result = -errno;
		vm__error(start->error, start->error_size, "KVM_CREATE_VM: %s", strerror(errno));
		return result;
	}
	/* 4.48 KVM_SET_TSS_ADDR, 4.47 KVM_SET_IDENTITY_MAP_ADDR: three pages and
	 * one page in the MMIO hole, below the BIOS area */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VM_TSS_ADDRESS) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity_map) < 0)
		log_debug("vm: TSS/identity map address not set: %s", strerror(errno));
	/* Memory slots before the irqchip: once an irqchip exists, the first
	 * slot update waits for an SRCU grace period (~6-8 ms measured here). */
	if ((result = vm__create_memory(vm, start->error, start->error_size)))
		return result;
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		result = -errno;
		vm__error(start->error, start->error_size, "KVM_CREATE_IRQCHIP/PIT2: %s",
			  strerror(errno));
		return result;
	}
	return 0;
}

/* Step 3: the kernel (and initrd) parsed and loaded into guest memory. */
static int vm_start__kernel(struct vm_start *start)
{
	struct vm *vm = start->vm;
	int result;

	if (vm->restore)
		return 0; /* the kernel is in the restored memory */
	if ((result = vm__map_file(vm->config.kernel, &start->kernel, &start->kernel_size))) {
		vm__error(start->error, start->error_size, "kernel %s: %s", vm->config.kernel,
			  strerror(-result));
		return result;
	}
	if ((result = loader__parse(start->kernel, start->kernel_size, &vm->memory, &start->image,
				    start->error, start->error_size)))
		return result;
	if ((result =
		 loader__load(&start->image, start->kernel, start->kernel_size, &vm->memory))) {
		vm__error(start->error, start->error_size, "kernel does not fit in guest memory");
		return result;
	}
	if (vm->config.initrd && (result = vm__load_initrd(vm, &start->image, &start->setup,
							   start->error, start->error_size)))
		return result;
	return 0;
}

/* Step 4: legacy and configured devices on the bus, then the boot data
 * (page tables, zero page with the command line that names the devices). */
static int vm_start__devices(struct vm_start *start)
{
	struct vm *vm = start->vm;
	int result;

	if ((result = vm__register_legacy(vm))) {
		vm__error(start->error, start->error_size, "legacy devices: %s", strerror(-result));
		return result;
	}
	if ((result = vm__create_devices(vm, start->error, start->error_size)))
		return result;
	if (vm->restore)
		return vm_snapshot__restore_devices(vm, start->error, start->error_size);
	start->command_line = vm__build_command_line(vm);
	if (start->command_line == NULL)
		return -ENOMEM;
	start->setup.command_line = start->command_line;
	start->setup.vcpus = vm->config.vcpus;
	if ((result = boot__setup_memory(&vm->memory, &start->image, &start->setup))) {
		vm__error(start->error, start->error_size, "boot setup: %s",
			  result == -EINVAL ? "command line too long or memory too small"
					    : strerror(-result));
		return result;
	}
	if (vm->verbose)
		log_info("vm: %s kernel, entry 0x%llx, command line \"%s\"",
			 start->image.kind == LOADER_BZIMAGE ? "bzImage" : "ELF64",
			 (unsigned long long)start->image.entry, start->command_line);
	return 0;
}

/* Step 5: the vCPUs, with the CPUID of the configured profile. */
static int vm_start__vcpus(struct vm_start *start)
{
	struct vm *vm = start->vm;
	int result;

	start->cpuid = vm__supported_cpuid(vm->kvm_fd);
	if (start->cpuid == NULL) {
		vm__error(start->error, start->error_size, "KVM_GET_SUPPORTED_CPUID: %s",
			  strerror(errno));
		return -EINVAL;
	}
	for (uint32_t i = 0; i < vm->config.vcpus; i++)
		if ((result = vcpu__create(vm, i, &start->image, start->cpuid, start->error,
					   start->error_size)))
			return result;
	if (vm->restore)
		return vm_snapshot__restore_state(vm, start->error, start->error_size);
	return 0;
}

/* Step 6: the VM runs: one thread per vCPU ("vcpu<N>"), held before its
 * first KVM_RUN until on_ready's lock-down (vm__lock_down) succeeded. */
static int vm_start__run(struct vm_start *start)
{
	struct vm *vm = start->vm;
	struct sigaction action = {0};
	int result;

	action.sa_handler = vcpu__kick_handler;
	sigemptyset(&action.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &action, NULL);
	atomic_store(&vm->state, VM_STATE_RUNNING);
	if (vm->on_ready)
		atomic_store(&vm->pause_requested, true); /* held until vm__lock_down */
	for (uint32_t i = 0; i < vm->vcpu_count; i++) {
		/* "vcpu<N>" in ps, perf and /proc/<pid>/task/<tid>/comm. */
		char name[16];

		pthread_mutex_lock(&vm->lock);
		vm->running_vcpus++;
		pthread_mutex_unlock(&vm->lock);
		result = -pthread_create(&vm->vcpus[i].thread, NULL, vcpu__thread, &vm->vcpus[i]);
		if (result) {
			pthread_mutex_lock(&vm->lock);
			vm->running_vcpus--;
			pthread_mutex_unlock(&vm->lock);
			vm__request_stop(vm, VM_EXIT_VMM_ERROR, 0, "cannot start vCPU thread");
			vm__error(start->error, start->error_size, "pthread_create: %s",
				  strerror(-result));
			return result;
		}
		vm->vcpus[i].thread_started = true;
		snprintf(name, sizeof(name), "vcpu%u", i);
		pthread_setname_np(vm->vcpus[i].thread, name);
	}
	if (vm->on_ready)
		return vm__lock_down(vm, start->error, start->error_size);
	return 0;
}

int vm__start(struct vm *vm, char *error, size_t error_size)
{
	static int (*const steps[])(struct vm_start *) = {
	    vm_start__host,    vm_start__kvm,	vm_start__kernel,
	    vm_start__devices, vm_start__vcpus, vm_start__run,
	};
	struct vm_start start = {.vm = vm, .error = error, .error_size = error_size};
	int result = 0;

	if (atomic_load(&vm->state) != VM_STATE_CONFIGURED) {
		vm__error(error, error_size, "VM is %s, not configured",
			  vm__state_name(atomic_load(&vm->state)));
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && result == 0; i++)
		result = steps[i](&start);
	free(start.cpuid);
	free(start.command_line);
	vm_snapshot__release(vm); /* restored (or failed): not needed any more */
	if (start.kernel)
		munmap(start.kernel, start.kernel_size);
	if (result && atomic_load(&vm->state) == VM_STATE_CONFIGURED)
		atomic_store(&vm->state, VM_STATE_STOPPED),
		    atomic_store(&vm->exit_reason, VM_EXIT_VMM_ERROR);
	return result;
}

/* vm__start with on_ready: waits until every vCPU thread is parked (its
 * capabilities dropped), runs on_ready, then lets them into the guest, or
 * stops the VM when on_ready failed. 0 or on_ready's error. */
static int vm__lock_down(struct vm *vm, char *error, size_t error_size)
{
	int result;

	pthread_mutex_lock(&vm->lock);
	while (vm->paused_vcpus < vm->running_vcpus && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	result = vm->on_ready(vm, vm->on_ready_opaque, error, error_size);
	if (result) {
		vm__request_stop(vm, VM_EXIT_VMM_ERROR, 0, error);
		return result;
	}
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->pause_requested, false);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm__destroy(struct vm *vm)
{
	atomic_store(&vm->stopping, true);
	vm__kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	vm__join_vcpus(vm);
	for (uint32_t i = 0; i < vm->device_count; i++)
		if (vm->devices[i].destroy)
			vm->devices[i].destroy(vm->devices[i].opaque);
	vm->device_count = 0;
	for (uint32_t i = 0; i < vm->vcpu_count; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, vm->vcpus[i].run_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
	}
	vm->vcpu_count = 0;
	if (vm->console_ready)
		console__destroy(&vm->console);
	vm->console_ready = false;
	if (vm->memory.host)
		munmap(vm->memory.host, vm->memory.size);
	if (vm->memory.memfd >= 0)
		close(vm->memory.memfd);
	if (vm->memory.source_fd >= 0)
		close(vm->memory.source_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	mmio_bus__destroy(vm->bus);
	vm_snapshot__release(vm);
	vm_config__free(&vm->config);
	memset(&vm->memory, 0, sizeof(vm->memory));
	vm->memory.memfd = vm->memory.source_fd = vm->vm_fd = vm->kvm_fd = -1;
	vm->bus = NULL;
}
