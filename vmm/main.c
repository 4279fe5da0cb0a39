/* warren-vmm: one microVM per process. Usage in docs/vmm-api.md.
 *
 *   warren-vmm --kernel F [--initrd F] [--cmdline S] [--memory MiB]
 *              [--vcpus N] [--cpu-profile baseline|host] [--console FILE|-]
 *              [--api-socket PATH] [--timeout-ms N] [--device JSON]... [--rng]
 *              [--verbose]
 *              [--jail DIR --jail-uid U --jail-gid G [--jail-check]]
 *   warren-vmm --api-socket PATH [--verbose]   (configure/start over the socket)
 *   warren-vmm --probe   (can this host's KVM run Linux user space?)
 *
 * With --kernel the VM boots at once and the process exits when it stops,
 * with the status of vm__exit_status(). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "control.h"
#include "hardening.h"
#include "jail.h"
#include "event_loop.h"
#include "virtio_devices.h"
#include "vm.h"
#include "warren/log.h"

struct vmm {
	struct event_loop *loop;
	struct vm vm;
	struct control control;
	bool have_control;
	bool one_shot;
	uint64_t timeout_ms;
	int signal_fd;
	bool seccomp; /* install the allow-list before the guest runs (default; --no-seccomp) */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: warren-vmm --kernel FILE [--initrd FILE] [--cmdline STRING] [--memory MiB]\n"
		"                  [--vcpus N] [--cpu-profile baseline|host] [--console FILE|-]\n"
		"                  [--api-socket PATH] [--timeout-ms N] [--device JSON]...\n"
		"                  [--io-poll-us N] [--rng] [--no-seccomp] [--verbose]\n"
		"                  [--jail DIR --jail-uid U --jail-gid G [--jail-check]]\n"
		"       warren-vmm --api-socket PATH [--verbose]\n"
		"       warren-vmm --probe\n"
		"exit status (with --kernel): the guest's debug-exit code (0-99), 100 reset,\n"
		"101 shutdown (triple fault), 102 watchdog timeout, 103 stopped, 104 internal\n"
		"error, 125 VMM error\n");
}

/* vm.on_ready: the VM is set up and its vCPU threads wait before their
 * first KVM_RUN. Nothing needs privileges from here: no_new_privs, every
 * capability dropped, the seccomp allow-list (hardening.c). Fail closed: a
 * step that fails stops the start, and the process exits (status 125). */
static int vmm__lock_down(struct vm *vm, void *opaque, char *error, size_t error_size)
{
	struct vmm *vmm = opaque;
	bool seccomp = vmm->seccomp;
	int result;

	(void)vm;
#ifdef WARREN_VMM_NO_SECCOMP
	seccomp = false; /* sanitizer/fuzz builds: their runtimes need more */
#endif
	result = hardening__lock_down(seccomp, error, error_size);
	if (result != 0) {
		log_error("hardening failed, not starting the guest: %s", error);
		vmm->one_shot = true; /* exit once the VM is down */
	}
	return result;
}

/* --jail-check: what a jailed VMM looks like, without KVM (tests): once in
 * the jail, lock down (seccomp too unless --no-seccomp), print "jailed"
 * on stdout, then wait for stdin to close and exit 0. The caller inspects
 * /proc/<pid> meanwhile. */
static int vmm__jail_check(struct vmm *vmm)
{
	char error[256] = "", byte;
	bool seccomp = vmm->seccomp;

#ifdef WARREN_VMM_NO_SECCOMP
	seccomp = false;
#endif
	if (hardening__lock_down(seccomp, error, sizeof(error)) != 0) {
		log_error("hardening failed: %s", error);
		return 125;
	}
	if (write(STDOUT_FILENO, "jailed\n", 7) != 7)
		return 125;
	while (read(STDIN_FILENO, &byte, 1) > 0)
		;
	return 0;
}

static void vmm__on_stop(struct vm *vm, void *opaque)
{
	struct vmm *vmm = opaque;

	if (vmm->one_shot)
		event_loop__stop(vmm->loop);
}

static void vmm__on_control_exit(struct control *control)
{
	struct vmm *vmm = (struct vmm *)((char *)control - offsetof(struct vmm, control));

	event_loop__stop(vmm->loop);
}

static bool vmm__watchdog(void *opaque, int32_t result)
{
	struct vmm *vmm = opaque;
	char detail[96];

	if (result != -ETIME)
		return false;
	snprintf(detail, sizeof(detail), "no exit within %llu ms",
		 (unsigned long long)vmm->timeout_ms);
	vm__request_stop(&vmm->vm, VM_EXIT_WATCHDOG, 0, detail);
	return false;
}

static bool vmm__signal(void *opaque, int32_t result)
{
	struct vmm *vmm = opaque;
	struct signalfd_siginfo info;
	enum vm_state state = atomic_load(&vmm->vm.state);

	if (result < 0 || read(vmm->signal_fd, &info, sizeof(info)) != sizeof(info))
		return true;
	log_info("signal %u: stopping", info.ssi_signo);
	if (state == VM_STATE_RUNNING || state == VM_STATE_PAUSED) {
		vmm->one_shot = true; /* exit once the vCPUs are down */
		vm__request_stop(&vmm->vm, VM_EXIT_STOPPED, 0, "signal");
	} else {
		event_loop__stop(vmm->loop);
	}
	return true;
}

#ifdef WARREN_VMM_HAVE_PROBE
static void vmm__on_stop_probe(struct vm *vm, void *opaque)
{
	event_loop__stop(opaque);
}

static bool vmm__probe_timeout(void *opaque, int32_t result)
{
	if (result == -ETIME)
		vm__request_stop(opaque, VM_EXIT_WATCHDOG, 0, "probe timed out");
	return false;
}

extern const unsigned char syscall_probe_guest[];
extern const size_t syscall_probe_guest_size;

/* --probe: boots the embedded SYSCALL probe guest (tests/guests/
 * syscall_probe.c) and prints one JSON line. Exit 0: SYSCALL from CPL3
 * reaches the guest kernel (hardware KVM: the vm runtime works); 3: it
 * does not (e.g. kvm_pvm: use the jail runtime); 1: no usable KVM. */
static int vmm__probe(void)
{
	char path[64], error[256] = "";
	struct vm_config config;
	struct event_loop *loop = event_loop__create(64);
	static struct vm vm;
	uint8_t *tail = NULL;
	const char *verdict;
	int memfd = memfd_create("warren-syscall-probe", MFD_CLOEXEC), status = 1;
	size_t written = 0;

	vm_config__init(&config);
	while (memfd >= 0 && written < syscall_probe_guest_size) {
		ssize_t n = write(memfd, syscall_probe_guest + written, syscall_probe_guest_size - written);

		if (n <= 0)
			break;
		written += (size_t)n;
	}
	if (loop == NULL || memfd < 0 || written != syscall_probe_guest_size) {
		printf("{\"kvm\":\"unusable\",\"detail\":\"probe setup failed\"}\n");
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	config.kernel = strdup(path);
	config.memory_mib = 16;
	vm__init(&vm, loop);
	vm.on_stop = vmm__on_stop_probe;
	vm.on_stop_opaque = loop;
	vm__configure(&vm, &config);
	if (vm__start(&vm, error, sizeof(error)) != 0) {
		printf("{\"kvm\":\"unusable\",\"detail\":\"%s\"}\n", error);
		goto out_vm;
	}
	event_loop__timer(loop, 10ull * 1000000000ull, vmm__probe_timeout, &vm);
	event_loop__run(loop);
	console__tail(&vm.console, 4096, &tail);
	if (atomic_load(&vm.exit_reason) == VM_EXIT_DEBUG && vm.exit_code == 0) {
		verdict = "hardware";
		status = 0;
	} else {
		verdict = "limited";
		status = 3;
	}
	{
		char *line = tail ? strstr((char *)tail, "SYSCALL") : NULL;

		if (line)
			line[strcspn(line, "\n")] = 0;
		json_t *result = json_pack("{s:s, s:s, s:s}", "kvm", verdict, "exit_reason",
					   vm__exit_reason_name(atomic_load(&vm.exit_reason)),
					   "detail", line ? line : vm.exit_detail);
		char *text = json_dumps(result, JSON_COMPACT);

		if (text)
			printf("%s\n", text);
		else
			status = 1;
		free(text);
		json_decref(result);
	}
	free(tail);
out_vm:
	vm__destroy(&vm);
out:
	vm_config__free(&config);
	if (loop)
		event_loop__destroy(loop);
	if (memfd >= 0)
		close(memfd);
	return status;
}
#endif

static int parse_u64(const char *text, uint64_t *out)
{
	char *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-')
		return -1;
	*out = value;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "cpu-profile", required_argument, NULL, 'p' },
		{ "console", required_argument, NULL, 'o' },
		{ "api-socket", required_argument, NULL, 'a' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "device", required_argument, NULL, 'd' },
		{ "rng", no_argument, NULL, 'r' },
		{ "jail", required_argument, NULL, 'J' },
		{ "jail-uid", required_argument, NULL, 'U' },
		{ "jail-gid", required_argument, NULL, 'G' },
		{ "jail-check", no_argument, NULL, 'C' },
		{ "io-poll-us", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "probe", no_argument, NULL, 'P' },
		{ "no-seccomp", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct vmm vmm; /* large (console ring); not on the stack */
	struct jail_options jail = { 0 };
	bool jail_check = false;
	struct vm_config config;
	const char *api_socket = NULL;
	char error[256] = "";
	sigset_t signals;
	uint64_t number;
	int option, status = 125;

	log__set_component("vmm");
	vmm.seccomp = true;
	signal(SIGPIPE, SIG_IGN); /* a console reader going away must not kill the VM */
	vm_config__init(&config);
	config.console = NULL;
	while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (option) {
		case 'k': free(config.kernel); config.kernel = strdup(optarg); break;
		case 'i': free(config.initrd); config.initrd = strdup(optarg); break;
		case 'c': free(config.command_line); config.command_line = strdup(optarg); break;
		case 'o': free(config.console); config.console = strdup(optarg); break;
		case 'a': api_socket = optarg; break;
		case 'r': /* --rng: a virtio entropy device with the default limits */
		case 'd': {
			/* one element of the "devices" array (docs/vmm-api.md) */
			json_t *device = option == 'r' ? json_pack("{s:s}", "type", "rng") :
				json_loads(optarg, JSON_REJECT_DUPLICATES, NULL);

			if (!json_is_object(device) || !json_is_string(json_object_get(device, "type")) ||
			    (config.devices && json_array_size(config.devices) >= MMIO_BUS_VIRTIO_MAX_DEVICES)) {
				json_decref(device);
				fprintf(stderr, "warren-vmm: --device needs a JSON object with a \"type\" "
						"(at most %d devices)\n", MMIO_BUS_VIRTIO_MAX_DEVICES);
				goto bad_usage;
			}
			if (config.devices == NULL)
				config.devices = json_array();
			json_array_append_new(config.devices, device);
			break;
		}
		case 'J': jail.root = optarg; break;
		case 'U':
		case 'G': {
			unsigned id;

			if (jail__parse_id(optarg, &id))
				goto bad_usage;
			if (option == 'U')
				jail.uid = id;
			else
				jail.gid = id;
			break;
		}
		case 'C': jail_check = true; break;
		case 'v': vmm.vm.verbose = true; break;
		case 'S': vmm.seccomp = false; break;
		case 'm':
			if (parse_u64(optarg, &number) || number < 16 || number > VM_MAX_MEMORY_MIB)
				goto bad_usage;
			config.memory_mib = number;
			break;
		case 'n':
			if (parse_u64(optarg, &number) || number < 1 || number > VM_MAX_VCPUS)
				goto bad_usage;
			config.vcpus = (uint32_t)number;
			break;
		case 'p':
			if (!cpuid__parse_profile(optarg, &config.cpu_profile))
				goto bad_usage;
			break;
		case 'l':
			if (parse_u64(optarg, &number) || number > VM_MAX_IO_POLL_US)
				goto bad_usage;
			config.io_poll_us = (uint32_t)number;
			break;
		case 't':
			if (parse_u64(optarg, &number))
				goto bad_usage;
			vmm.timeout_ms = number;
			break;
		case 'h': usage(stdout); vm_config__free(&config); return 0;
		case 'P':
			vm_config__free(&config);
#ifdef WARREN_VMM_HAVE_PROBE
			return vmm__probe();
#else
			fprintf(stderr, "warren-vmm: built without the probe guest\n");
			return 1;
#endif
		default: goto bad_usage;
		}
	}
	if (optind != argc || (config.kernel == NULL && api_socket == NULL && !jail_check) ||
	    (jail_check && jail.root == NULL) || (jail.root && (!jail.uid || !jail.gid)))
		goto bad_usage;
	if (jail.root) {
		if (jail__enter(&jail, &config, &api_socket, error, sizeof(error)) != 0) {
			log_error("%s", error);
			fprintf(stderr, "warren-vmm: exit reason=vmm-error code=0 status=125\n");
			status = 125;
			goto out_config;
		}
		if (jail_check) {
			status = vmm__jail_check(&vmm);
			goto out_config;
		}
	}

	vmm.loop = event_loop__create(256);
	if (vmm.loop == NULL) {
		log_error("cannot create the event loop");
		goto out_config;
	}
	{
		bool verbose = vmm.vm.verbose;

		vm__init(&vmm.vm, vmm.loop);
		vmm.vm.verbose = verbose;
	}
	vmm.vm.device_types = virtio_device_types;
	vmm.vm.on_stop = vmm__on_stop;
	vmm.vm.on_stop_opaque = &vmm;
	vmm.vm.on_ready = vmm__lock_down;
	vmm.vm.on_ready_opaque = &vmm;
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL); /* vCPU threads inherit the mask */
	vmm.signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vmm.signal_fd >= 0)
		event_loop__watch(vmm.loop, vmm.signal_fd, POLLIN, vmm__signal, &vmm);
	if (api_socket) {
		int result = control__open(&vmm.control, &vmm.vm, vmm.loop, api_socket);

		if (result) {
			log_error("control socket %s: %s", api_socket, strerror(-result));
			goto out_loop;
		}
		vmm.control.on_exit = vmm__on_control_exit;
		vmm.have_control = true;
	}
	if (config.kernel) {
		vmm.one_shot = true;
		vm__configure(&vmm.vm, &config);
		if (vm__start(&vmm.vm, error, sizeof(error)) != 0) {
			log_error("cannot start the VM: %s", error);
			fprintf(stderr, "warren-vmm: exit reason=vmm-error code=0 status=125\n");
			goto out_control;
		}
		if (vmm.timeout_ms)
			event_loop__timer(vmm.loop, vmm.timeout_ms * 1000000ull, vmm__watchdog, &vmm);
	}
	event_loop__run(vmm.loop);
	if (atomic_load(&vmm.vm.state) == VM_STATE_RUNNING ||
	    atomic_load(&vmm.vm.state) == VM_STATE_PAUSED)
		vm__request_stop(&vmm.vm, VM_EXIT_STOPPED, 0, "VMM exiting");
	status = atomic_load(&vmm.vm.exit_reason) == VM_EXIT_NONE ? 0 : vm__exit_status(&vmm.vm);
	if (config.kernel || atomic_load(&vmm.vm.exit_reason) != VM_EXIT_NONE) {
		fprintf(stderr, "warren-vmm: exit reason=%s code=%d status=%d%s%s\n",
			vm__exit_reason_name(atomic_load(&vmm.vm.exit_reason)), vmm.vm.exit_code,
			status, vmm.vm.exit_detail[0] ? " detail=" : "", vmm.vm.exit_detail);
		if (vmm.vm.verbose) {
			json_t *metrics = vm__metrics_json(&vmm.vm);
			char *text = json_dumps(metrics, JSON_COMPACT);

			fprintf(stderr, "warren-vmm: metrics %s\n", text ? text : "{}");
			free(text);
			json_decref(metrics);
		}
	}
out_control:
	if (vmm.have_control)
		control__close(&vmm.control);
out_loop:
	vm__destroy(&vmm.vm);
	event_loop__destroy(vmm.loop);
	if (vmm.signal_fd >= 0)
		close(vmm.signal_fd);
out_config:
	vm_config__free(&config);
	return status;
bad_usage:
	usage(stderr);
	vm_config__free(&config);
	return 2;
}
