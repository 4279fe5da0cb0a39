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
#include "snapshot.h"
#include "event_loop.h"
#include "virtio_devices.h"
#include "vm.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/log.h"

/* One VMM process: what the command line asked for, then what the start
 * steps built. main() runs the steps in order; vmm__teardown() undoes
 * whatever of them ran. */
struct vmm {
	/* the command line (vmm__parse_arguments) */
	struct vm_config config; /* --kernel etc.; handed to the VM by vmm__boot */
	const char *api_socket;
	const char *restore; /* --restore: start from this snapshot, not by booting */
	struct jail_options jail;
	bool jail_check;
	bool verbose;
	bool seccomp; /* install the allow-list before the guest runs (default; --no-seccomp) */
	uint64_t timeout_ms;

	/* built by the steps */
	struct event_loop *loop;
	struct vm vm;
	struct control control;
	bool have_control;
	bool one_shot;
	int signal_fd;
};

/* What vmm__parse_arguments found: go on, or exit with a status. */
enum vmm_parse {
	VMM_PARSE_RUN,
	VMM_PARSE_HELP,	 /* --help: exit 0 */
	VMM_PARSE_PROBE, /* --probe */
	VMM_PARSE_USAGE, /* bad command line: exit 2 */
};

#define VMM_STATUS_USAGE 2
#define VMM_STATUS_ERROR 125 /* the VMM itself failed (docs/vmm-api.md) */

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: warren-vmm --kernel FILE [--initrd FILE] [--cmdline STRING] [--memory MiB]\n"
	    "                  [--vcpus N] [--cpu-profile baseline|host] [--console FILE|-]\n"
	    "                  [--api-socket PATH] [--timeout-ms N] [--device JSON]...\n"
	    "                  [--io-poll-us N] [--rng] [--no-seccomp] [--verbose]\n"
	    "                  [--restore SNAPSHOT]\n"
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
	if (snapshot__init() != 0) /* the checksum's library, before files are forbidden */
		log_warn("snapshots: SHA-256 unavailable");
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
		ssize_t n =
		    write(memfd, syscall_probe_guest + written, syscall_probe_guest_size - written);

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

/* --device JSON / --rng: appends one element of the "devices" array
 * (docs/vmm-api.md) to vmm->config. 0, or -1 (not a JSON object with a
 * string "type", or too many devices) with the reason on stderr. */
static int vmm__add_device(struct vmm *vmm, bool rng, const char *json)
{
	json_t *device = rng ? json_pack("{s:s}", "type", "rng")
			     : json_loads(json, JSON_REJECT_DUPLICATES, NULL);
	json_t **devices = &vmm->config.devices;

	if (!json_is_object(device) || !json_is_string(json_object_get(device, "type")) ||
	    (*devices && json_array_size(*devices) >= MMIO_BUS_VIRTIO_MAX_DEVICES)) {
		json_decref(device);
		fprintf(stderr,
			"warren-vmm: --device needs a JSON object with a \"type\" "
			"(at most %d devices)\n",
			MMIO_BUS_VIRTIO_MAX_DEVICES);
		return -1;
	}
	if (*devices == NULL)
		*devices = json_array();
	json_array_append_new(*devices, device);
	return 0;
}

/* The options that take a number (--memory, --vcpus, --io-poll-us,
 * --timeout-ms): parses `text` into vmm within the option's range. 0, or
 * -1 when it is not a number or out of range. */
static int vmm__number_option(struct vmm *vmm, int option, const char *text)
{
	uint64_t number;

	if (parse_u64(text, &number))
		return -1;
	switch (option) {
	case 'm':
		if (number < 16 || number > VM_MAX_MEMORY_MIB)
			return -1;
		vmm->config.memory_mib = number;
		return 0;
	case 'n':
		if (number < 1 || number > VM_MAX_VCPUS)
			return -1;
		vmm->config.vcpus = (uint32_t)number;
		return 0;
	case 'l':
		if (number > VM_MAX_IO_POLL_US)
			return -1;
		vmm->config.io_poll_us = (uint32_t)number;
		return 0;
	case 't':
		vmm->timeout_ms = number;
		return 0;
	default:
		return -1;
	}
}

/* Step 1, the command line into vmm (options, config). Error domain: the
 * usage; VMM_PARSE_USAGE when an option or the combination is wrong. */
static enum vmm_parse vmm__parse_arguments(struct vmm *vmm, int argc, char **argv)
{
	static const struct option options[] = {
	    {"kernel", required_argument, NULL, 'k'},
	    {"initrd", required_argument, NULL, 'i'},
	    {"cmdline", required_argument, NULL, 'c'},
	    {"memory", required_argument, NULL, 'm'},
	    {"vcpus", required_argument, NULL, 'n'},
	    {"cpu-profile", required_argument, NULL, 'p'},
	    {"console", required_argument, NULL, 'o'},
	    {"api-socket", required_argument, NULL, 'a'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"device", required_argument, NULL, 'd'},
	    {"rng", no_argument, NULL, 'r'},
	    {"jail", required_argument, NULL, 'J'},
	    {"jail-uid", required_argument, NULL, 'U'},
	    {"jail-gid", required_argument, NULL, 'G'},
	    {"jail-check", no_argument, NULL, 'C'},
	    {"io-poll-us", required_argument, NULL, 'l'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"probe", no_argument, NULL, 'P'},
	    {"no-seccomp", no_argument, NULL, 'S'},
	    {"restore", required_argument, NULL, 'R'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct vm_config *config = &vmm->config;
	struct jail_options *jail = &vmm->jail;
	unsigned id;
	int option;

	while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (option) {
		case 'k':
			free(config->kernel);
			config->kernel = strdup(optarg);
			break;
		case 'i':
			free(config->initrd);
			config->initrd = strdup(optarg);
			break;
		case 'c':
			free(config->command_line);
			config->command_line = strdup(optarg);
			break;
		case 'o':
			free(config->console);
			config->console = strdup(optarg);
			break;
		case 'a':
			vmm->api_socket = optarg;
			break;
		case 'r': /* --rng: a virtio entropy device with the default limits */
		case 'd':
			if (vmm__add_device(vmm, option == 'r', optarg))
				return VMM_PARSE_USAGE;
			break;
		case 'J':
			jail->root = optarg;
			break;
		case 'U':
		case 'G':
			if (jail__parse_id(optarg, &id))
				return VMM_PARSE_USAGE;
			if (option == 'U')
				jail->uid = id;
			else
				jail->gid = id;
			break;
		case 'C':
			vmm->jail_check = true;
			break;
		case 'v':
			vmm->verbose = true;
			break;
		case 'S':
			vmm->seccomp = false;
			break;
		case 'R':
			vmm->restore = optarg;
			break;
		case 'm':
		case 'n':
		case 'l':
		case 't':
			if (vmm__number_option(vmm, option, optarg))
				return VMM_PARSE_USAGE;
			break;
		case 'p':
			if (!cpuid__parse_profile(optarg, &config->cpu_profile))
				return VMM_PARSE_USAGE;
			break;
		case 'h':
			return VMM_PARSE_HELP;
		case 'P':
			return VMM_PARSE_PROBE;
		default:
			return VMM_PARSE_USAGE;
		}
	}
	if (optind != argc ||
	    (config->kernel == NULL && vmm->api_socket == NULL && !vmm->jail_check) ||
	    (vmm->jail_check && jail->root == NULL) || (jail->root && (!jail->uid || !jail->gid)) ||
	    (vmm->restore && config->kernel == NULL))
		return VMM_PARSE_USAGE;
	return VMM_PARSE_RUN;
}

/* Step 2, --jail: the process confines itself (jail.c) before it creates
 * anything. Error domain: the jail. 0 to go on; otherwise the process's
 * exit status (125 when the jail failed; --jail-check's own status). */
static int vmm__confine(struct vmm *vmm)
{
	char error[256] = "";
	int pagemap;

	/* a later snapshot of a restored guest asks it which pages the guest
	 * wrote; the jail has no /proc */
	if (vmm->restore && (pagemap = snapshot__open_pagemap()))
		log_warn("/proc/self/pagemap: %s (a later snapshot reads every page)",
			 strerror(-pagemap));
	if (vmm->jail.root == NULL)
		return 0;
	if (vmm->restore && !jail__path_inside(vmm->jail.root, vmm->restore, &vmm->restore)) {
		log_error("jail: the snapshot %s is not inside %s", vmm->restore, vmm->jail.root);
		return VMM_STATUS_ERROR;
	}
	if (jail__enter(&vmm->jail, &vmm->config, &vmm->api_socket, error, sizeof(error)) != 0) {
		log_error("%s", error);
		fprintf(stderr, "warren-vmm: exit reason=vmm-error code=0 status=125\n");
		return VMM_STATUS_ERROR;
	}
	if (vmm->jail_check)
		return vmm__jail_check(vmm);
	return 0;
}

/* Step 3: the event loop, the (empty) VM wired to vmm/virtio's devices and
 * to the lock-down, and the signals that stop it (SIGTERM, SIGINT, SIGHUP,
 * through a signalfd on the loop). Error domain: -errno. */
static int vmm__setup(struct vmm *vmm)
{
	sigset_t signals;

	vmm->loop = event_loop__create(256);
	if (vmm->loop == NULL) {
		log_error("cannot create the event loop");
		return -ENOMEM;
	}
	vm__init(&vmm->vm, vmm->loop);
	vmm->vm.verbose = vmm->verbose;
	vmm->vm.device_types = virtio_device_types;
	vmm->vm.on_stop = vmm__on_stop;
	vmm->vm.on_stop_opaque = vmm;
	vmm->vm.on_ready = vmm__lock_down;
	vmm->vm.on_ready_opaque = vmm;
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL); /* vCPU threads inherit the mask */
	vmm->signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vmm->signal_fd >= 0)
		event_loop__watch(vmm->loop, vmm->signal_fd, POLLIN, vmm__signal, vmm);
	return 0;
}

/* Step 4, --api-socket: listens for control clients (control.c). Error
 * domain: -errno of control__open. */
static int vmm__open_control(struct vmm *vmm)
{
	int result;

	if (vmm->api_socket == NULL)
		return 0;
	result = control__open(&vmm->control, &vmm->vm, vmm->loop, vmm->api_socket);
	if (result) {
		log_error("control socket %s: %s", vmm->api_socket, strerror(-result));
		return result;
	}
	vmm->control.on_exit = vmm__on_control_exit;
	vmm->have_control = true;
	return 0;
}

/* Step 5, --kernel: configures and starts the VM at once (the process exits
 * when it stops) and arms the --timeout-ms watchdog. Error domain: vm__start's
 * -errno, its reason logged. */
static int vmm__boot(struct vmm *vmm)
{
	char error[256] = "";
	int result;

	if (vmm->config.kernel == NULL)
		return 0;
	vmm->one_shot = true;
	vm__configure(&vmm->vm, &vmm->config); /* takes the config, leaves it empty */
	result =
	    vmm->restore ? vm__prepare_restore(&vmm->vm, vmm->restore, error, sizeof(error)) : 0;
	if (result == 0)
		result = vm__start(&vmm->vm, error, sizeof(error));
	if (result == 0 && vmm->restore)
		log_info("vm restored from %s: running %.1f ms after the process started",
			 vmm->restore,
			 (double)(clock__monotonic_ns() - vm__process_start_ns()) / 1e6);
	if (result != 0) {
		log_error("cannot %s the VM: %s", vmm->restore ? "restore" : "start", error);
		fprintf(stderr, "warren-vmm: exit reason=vmm-error code=0 status=125\n");
		return result;
	}
	if (vmm->timeout_ms)
		event_loop__timer(vmm->loop, vmm->timeout_ms * 1000000ull, vmm__watchdog, vmm);
	return 0;
}

/* Step 6: runs the loop until the VM (one-shot) or the control client ends
 * it, stops a VM still running and reports how it ended on stderr. Returns
 * the process's exit status (vm__exit_status; 0 when no VM ran). */
static int vmm__run(struct vmm *vmm)
{
	enum vm_state state;
	int status;

	event_loop__run(vmm->loop);
	state = atomic_load(&vmm->vm.state);
	if (state == VM_STATE_RUNNING || state == VM_STATE_PAUSED)
		vm__request_stop(&vmm->vm, VM_EXIT_STOPPED, 0, "VMM exiting");
	if (atomic_load(&vmm->vm.exit_reason) == VM_EXIT_NONE)
		return 0;
	status = vm__exit_status(&vmm->vm);
	fprintf(stderr, "warren-vmm: exit reason=%s code=%d status=%d%s%s\n",
		vm__exit_reason_name(atomic_load(&vmm->vm.exit_reason)), vmm->vm.exit_code, status,
		vmm->vm.exit_detail[0] ? " detail=" : "", vmm->vm.exit_detail);
	if (vmm->vm.verbose) {
		json_t *metrics = vm__metrics_json(&vmm->vm);
		char *text = json_dumps(metrics, JSON_COMPACT);

		fprintf(stderr, "warren-vmm: metrics %s\n", text ? text : "{}");
		free(text);
		json_decref(metrics);
	}
	return status;
}

/* Undoes whatever of steps 3-5 ran (any of them may have failed). */
static void vmm__teardown(struct vmm *vmm)
{
	if (vmm->have_control)
		control__close(&vmm->control);
	if (vmm->loop) {
		vm__destroy(&vmm->vm);
		event_loop__destroy(vmm->loop);
	}
	if (vmm->signal_fd >= 0)
		close(vmm->signal_fd);
	vm_config__free(&vmm->config);
}

int main(int argc, char **argv)
{
	static struct vmm vmm; /* large (console ring); not on the stack */
	int status = VMM_STATUS_ERROR;

	log__set_component("vmm");
	/* The settings (environment, /etc/warren/warren.conf) are read now,
	 * while files can still be opened: the first log line may come after
	 * the lock-down (seccomp refuses openat then) or inside the jail. */
	(void)config__get_soft("log_level", NULL);
	signal(SIGPIPE, SIG_IGN); /* a console reader going away must not kill the VM */
	vmm.seccomp = true;
	vmm.signal_fd = -1;
	vm_config__init(&vmm.config);
	vmm.config.console = NULL;
	switch (vmm__parse_arguments(&vmm, argc, argv)) {
	case VMM_PARSE_RUN:
		break;
	case VMM_PARSE_HELP:
		usage(stdout);
		status = 0;
		goto out;
	case VMM_PARSE_PROBE:
#ifdef WARREN_VMM_HAVE_PROBE
		status = vmm__probe();
#else
		fprintf(stderr, "warren-vmm: built without the probe guest\n");
		status = 1;
#endif
		goto out;
	case VMM_PARSE_USAGE:
		usage(stderr);
		status = VMM_STATUS_USAGE;
		goto out;
	}
	if ((status = vmm__confine(&vmm)) != 0 || vmm.jail_check)
		goto out;
	status = VMM_STATUS_ERROR;
	if (vmm__setup(&vmm) || vmm__open_control(&vmm) || vmm__boot(&vmm))
		goto out;
	status = vmm__run(&vmm);
out:
	vmm__teardown(&vmm);
	return status;
}
