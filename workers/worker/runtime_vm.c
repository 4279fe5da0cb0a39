/* runtime_vm: the `vm` runtime. One warren-vmm process per sandbox, in its
 * own process group, started inside the slot's network namespace so that
 * it opens that namespace's persistent tap0 (docs/network.md: the guest is
 * 169.254.0.21 behind tap0, the slot address is DNATed to it). Everything
 * of a sandbox lives in <state_dir>/<id>/: vmm.json (pid, socket: how a
 * restarted worker finds orphans) and vmm.log (root's), and root/, the
 * VMM's jail (docs/vmm-design.md, "Jail"): rootfs.ext4 (the sandbox's
 * copy-on-write overlay over the template image, or with vm_disk_copy a
 * private sparse copy), console.log and the control socket
 * vmm.sock (docs/vmm-api.md). Jailed (setting vm_jail, default on as
 * root), the VMM runs in a cgroup of its own with limits from the
 * sandbox's memory and vCPUs, pivot_root()ed into root/, as a uid/gid of
 * its own (setting vm_jail_uid_base + a free slot derived from the id). */
#include "runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <pthread.h>

#include "warren/jail_cgroup.h"
#include "warren/binary_path.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/exec_status.h"
#include "warren/ids.h"
#include "warren/json_util.h"
#include "warren/log.h"
#include "warren/templates.h"
#include "warren/tokens.h"
#include "warren/vmm_client.h"

extern char **environ;

#define VM_STOP_WAIT_MS 5000
/* warren-vmm answers "running" within milliseconds on an idle host; a
 * host busy starting many VMs (or a nested test host with one CPU) can
 * take seconds, and a start given up early is a create lost. The create's
 * own deadline still bounds the whole. */
#define VM_SOCKET_WAIT_MS	    20000
#define VM_IO_TIMEOUT_MS	    2000
#define VM_JAIL_UIDS		    1000000u /* uids per host: base .. base + VM_JAIL_UIDS - 1 */
#define VM_JAIL_MEMORY_OVERHEAD_MIB 96	     /* the VMM itself: rings, page tables, buffers */
#define VM_JAIL_PIDS_MAX	    256	     /* main + vCPUs + io_uring workers */

/* docs/host-requirements.md: what a kvm_pvm host needs on the guest command line. */
#define VM_BASELINE_CMDLINE                                                                        \
	"noxsave clearcpuid=smap,smep,popcnt i8042.noaux i8042.nokbd tsc=reliable"

struct runtime_vm {
	pid_t pid; /* also the process group */
	char dir[PATH_MAX];
	char root[PATH_MAX + 8]; /* the VMM's jail: <dir>/root */
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool jailed;
	bool have_cgroup;
	struct jail_cgroup cgroup;
	unsigned uid;	  /* jailed: its uid and gid */
	char id[64];	  /* the sandbox id */
	char **argv;	  /* the VMM's command line, kept for a restore */
	char *netns_path; /* NULL: the host's */
	bool paused;	  /* snapshotted and stopped: no VMM until resumed */
};

static pthread_mutex_t runtime_vm__uid_lock = PTHREAD_MUTEX_INITIALIZER;

/* Defined with pause and resume, and with the snapshot templates, below. */
static int runtime_vm__pause(struct runtime_vm *vm, char *err, size_t err_len);
static int runtime_vm__resume(struct runtime_vm *vm, char *err, size_t err_len);
static int runtime_vm__template(const char *template_dir, uint32_t *memory_mib, uint32_t *vcpus,
				char *profile, size_t profile_len, bool *overlay);
static int runtime_vm__stage_snapshot(const struct runtime_vm *vm, const char *template_dir,
				      char *err, size_t err_len);
#define VM_TEMPLATE_DIR "vm" /* in a vm snapshot template's dir */
/* A saved VM's state and memory files (root/ of a paused sandbox, vm/ of a
 * snapshot template: docs/vmm-snapshot.md "Files"). */
static const char *const runtime_vm__snapshot_files[] = {"snapshot", "snapshot.mem"};
#define VM_SNAPSHOT_FILE_COUNT                                                                     \
	(sizeof(runtime_vm__snapshot_files) / sizeof(runtime_vm__snapshot_files[0]))
#define VM_TEMPLATE_INFO "vm.json" /* the snapshot's machine: runtime_vm__template */

static const char *runtime_vm__state_root(void)
{
	return config__get("state_dir", "/var/lib/warren/sandboxes");
}

static void runtime_vm__sleep_ms(long ms)
{
	struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&pause, NULL);
}

int runtime_vm__find_vmm(char *out, size_t out_len)
{
	const char *configured = config__get("vmm_binary", NULL);

	if (configured) {
		snprintf(out, out_len, "%s", configured);
		return access(out, X_OK) == 0 ? 0 : -ENOENT;
	}
	/* Next to the running binary (build/bin), or in ../bin of it (tests
	 * run from build/tests), then the install locations. */
	if (binary__find_sibling("warren-vmm", out, out_len) == 0)
		return 0;
	snprintf(out, out_len, "/usr/local/bin/warren-vmm");
	if (access(out, X_OK) == 0)
		return 0;
	snprintf(out, out_len, "/usr/bin/warren-vmm");
	return access(out, X_OK) == 0 ? 0 : -ENOENT;
}

/* The guest kernel: setting guest_kernel (WARREN_GUEST_KERNEL). */
static const char *runtime_vm__kernel(void)
{
	return config__get("guest_kernel", NULL);
}

bool runtime_vm__available(char *reason, size_t reason_len)
{
	char vmm[PATH_MAX];
	const char *kernel = runtime_vm__kernel();
	int status = 0;
	pid_t pid;
	char *argv[] = {vmm, "--probe", NULL};
	posix_spawn_file_actions_t actions;

	if (runtime_vm__find_vmm(vmm, sizeof(vmm))) {
		snprintf(reason, reason_len, "warren-vmm not found (setting vmm_binary)");
		return false;
	}
	if (!kernel || access(kernel, R_OK)) {
		snprintf(reason, reason_len, "no guest kernel (setting guest_kernel: %s)",
			 kernel ? kernel : "unset");
		return false;
	}
	/* docs/vmm-api.md --probe: exit 0 only when a guest SYSCALL from CPL3
	 * reaches the guest kernel, i.e. Linux user space can run. */
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawn(&pid, vmm, &actions, NULL, argv, environ)) {
		posix_spawn_file_actions_destroy(&actions);
		snprintf(reason, reason_len, "cannot run %s --probe", vmm);
		return false;
	}
	posix_spawn_file_actions_destroy(&actions);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(reason, reason_len,
			 "%s --probe: guest user space cannot run here (status %d)", vmm,
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return false;
	}
	snprintf(reason, reason_len, "hardware KVM, %s --probe passed, guest kernel %s", vmm,
		 kernel);
	return true;
}

static int runtime_vm__remove_entry(const char *path, const struct stat *st, int flag,
				    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) && errno != ENOENT)
		log_warn("vm runtime: removing %s: %s", path, strerror(errno));
	return 0;
}

static void runtime_vm__remove_dir(const char *dir)
{
	nftw(dir, runtime_vm__remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* One control request (docs/vmm-api.md) bounded by VM_IO_TIMEOUT_MS each
 * way. 0 with the response line in out, or -1. */
static int runtime_vm__request(const char *socket_path, const char *request, char *out,
			       size_t out_len)
{
	return vmm_client__request(socket_path, request, out, out_len, VM_IO_TIMEOUT_MS) ? -1 : 0;
}

/* A locally administered unicast MAC from the sandbox id. */
static void runtime_vm__mac(const char *id, char out[18])
{
	char hex[TOKENS_SHA256_HEX_LEN + 1];

	tokens__sha256_hex(id, strlen(id), hex);
	snprintf(out, 18, "02:%.2s:%.2s:%.2s:%.2s:%.2s", hex, hex + 2, hex + 4, hex + 6, hex + 8);
}

/* Copies the template image sparsely (reflink where the filesystem can). */
static int runtime_vm__copy_image(const char *from, const char *to, char *err, size_t err_len)
{
	char *argv[] = {"cp", "--sparse=always", "--reflink=auto", (char *)from, (char *)to, NULL};
	int status = 0;
	pid_t pid;

	if (posix_spawnp(&pid, "cp", NULL, NULL, argv, environ)) {
		snprintf(err, err_len, "cannot run cp");
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(err, err_len, "copying %s to %s failed", from, to);
		return -1;
	}
	return 0;
}

/* An empty overlay file for the VMM's copy-on-write disk (it writes the
 * header itself). */
static int runtime_vm__new_overlay(const char *path, char *err, size_t err_len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		snprintf(err, err_len, "vm runtime: creating %s: %s", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

static int runtime_vm__write_state(const struct runtime_vm *vm, const char *id, char *err,
				   size_t err_len)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 16];
	struct timespec now;
	json_t *state;
	int ret = -1;

	clock_gettime(CLOCK_REALTIME, &now);
	/* started_ns: a resume since a pause's marker (runtime_vm__resumed_since) */
	state = json_pack("{s:s, s:I, s:s, s:I, s:I}", "id", id, "pid", (json_int_t)vm->pid,
			  "api_socket", vm->socket_path, "started_at", (json_int_t)now.tv_sec,
			  "started_ns", (json_int_t)now.tv_sec * 1000000000 + now.tv_nsec);

	snprintf(path, sizeof(path), "%s/vmm.json", vm->dir);
	snprintf(tmp, sizeof(tmp), "%s/vmm.json.tmp", vm->dir);
	if (state && json_dump_file(state, tmp, JSON_COMPACT) == 0 && rename(tmp, path) == 0)
		ret = 0;
	else
		snprintf(err, err_len, "writing %s failed", path);
	json_decref(state);
	return ret;
}

/* The guest's command line (the VMM appends virtio_mmio.device=...). */
static void runtime_vm__cmdline(const struct runtime_start *spec, bool baseline, char *out,
				size_t out_len)
{
	snprintf(out, out_len,
		 "console=ttyS0 root=/dev/vda rw init=/sbin/init reboot=k panic=-1%s%s%s%s",
		 baseline ? " " : "", baseline ? VM_BASELINE_CMDLINE : "",
		 spec->token_hash ? " warren.token_hash=" : "",
		 spec->token_hash ? spec->token_hash : "");
}

/* Kills the VMM's process group and reaps the process (it is our child). */
static void runtime_vm__kill(struct runtime_vm *vm)
{
	int status;

	if (vm->pid <= 0)
		return;
	kill(-vm->pid, SIGKILL);
	while (waitpid(vm->pid, &status, 0) < 0 && errno == EINTR)
		;
	vm->pid = 0;
}

/* The VMM process (our child): exited already? */
static bool runtime_vm__exited(struct runtime_vm *vm, int *status)
{
	pid_t got = waitpid(vm->pid, status, WNOHANG);

	if (got == vm->pid || (got < 0 && errno == ECHILD)) {
		vm->pid = 0;
		return true;
	}
	return false;
}

bool runtime_vm__has_exited(struct runtime_vm *vm, int *status)
{
	*status = 0;
	if (vm->paused)
		return false; /* stopped on purpose: its snapshot waits for a resume */
	if (vm->pid <= 0)
		return true;
	return runtime_vm__exited(vm, status);
}

static void runtime_vm__log_tail(const struct runtime_vm *vm, char *err, size_t err_len)
{
	char path[PATH_MAX + 16], text[512];
	size_t n = 0, used = strlen(err);
	FILE *file;

	snprintf(path, sizeof(path), "%s/vmm.log", vm->dir);
	file = fopen(path, "re");
	if (!file)
		return;
	if (fseek(file, -(long)(sizeof(text) - 1), SEEK_END))
		rewind(file);
	n = fread(text, 1, sizeof(text) - 1, file);
	fclose(file);
	text[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (text[i] == '\n')
			text[i] = ' ';
	if (used + 3 < err_len)
		snprintf(err + used, err_len - used, ": %s", text);
}

static const char *runtime_vm__cgroup_parent(void)
{
	return config__get("vm_cgroup_parent", "warren-vm");
}

/* Picks the jail's uid (= gid) for sandbox id and gives it root/: the
 * slot derived from the id's hash, or the next one no other sandbox's
 * jail root is owned by. Under a lock: two starts never pick the same. */
static int runtime_vm__jail_uid(struct runtime_vm *vm, const char *id, char *err, size_t err_len)
{
	char hex[TOKENS_SHA256_HEX_LEN + 1], path[PATH_MAX + 16];
	int64_t base = config__get_int("vm_jail_uid_base", 1500000000);
	unsigned start, slot;
	bool failed = false;
	int ret = -1;

	if (base < 1000 || base + VM_JAIL_UIDS > 4000000000ll) {
		snprintf(err, err_len, "vm runtime: bad setting vm_jail_uid_base");
		return -1;
	}
	tokens__sha256_hex(id, strlen(id), hex);
	hex[8] = 0; /* 32 bits of the hash pick the first slot tried */
	start = (unsigned)(strtoull(hex, NULL, 16) % VM_JAIL_UIDS);
	pthread_mutex_lock(&runtime_vm__uid_lock);
	for (unsigned i = 0; i < VM_JAIL_UIDS && ret && !failed; i++) {
		DIR *listing = opendir(runtime_vm__state_root());
		struct dirent *entry;
		bool used = false;

		slot = (start + i) % VM_JAIL_UIDS;
		while (listing && !used && (entry = readdir(listing))) {
			struct stat st;

			if (!ids__is_sandbox_id(entry->d_name) || !strcmp(entry->d_name, id))
				continue;
			snprintf(path, sizeof(path), "%s/%s/root", runtime_vm__state_root(),
				 entry->d_name);
			used = stat(path, &st) == 0 && st.st_uid == (uid_t)(base + slot);
		}
		if (listing)
			closedir(listing);
		if (used)
			continue;
		vm->uid = (unsigned)(base + slot);
		if (chown(vm->root, vm->uid, vm->uid)) {
			snprintf(err, err_len, "vm runtime: chown %s: %s", vm->root,
				 strerror(errno));
			failed = true;
			continue;
		}
		ret = 0;
	}
	pthread_mutex_unlock(&runtime_vm__uid_lock);
	if (ret && !failed)
		snprintf(err, err_len, "vm runtime: no free jail uid");
	return ret;
}

/* The jail's cgroup with the sandbox's limits (memory + the VMM's own
 * overhead, CPU = vCPUs, pids). */
static int runtime_vm__make_cgroup(struct runtime_vm *vm, const struct runtime_start *spec,
				   char *err, size_t err_len)
{
	struct jail_cgroup_limits limits = {0};
	uint32_t memory = spec->memory_mib ? spec->memory_mib : 128;
	uint32_t vcpus = spec->vcpus ? spec->vcpus : 1;
	int ret = jail_cgroup__paths(&vm->cgroup, runtime_vm__cgroup_parent(), spec->sandbox_id);

	if (ret) {
		snprintf(err, err_len, "vm runtime: no usable cgroup hierarchy: %s",
			 strerror(-ret));
		return -1;
	}
	limits.memory_max_bytes = ((uint64_t)memory + VM_JAIL_MEMORY_OVERHEAD_MIB) << 20;
	limits.cpu_millicores = vcpus * 1000;
	limits.pids_max = VM_JAIL_PIDS_MAX;
	if (jail_cgroup__create(&vm->cgroup, &limits, err, err_len))
		return -1;
	vm->have_cgroup = true;
	return 0;
}

/* A deep copy of a NULL-terminated argv, or NULL. */
static char **runtime_vm__copy_argv(char *const argv[])
{
	size_t count = 0;
	char **copy;

	while (argv[count])
		count++;
	copy = calloc(count + 1, sizeof(*copy));
	for (size_t i = 0; copy && i < count; i++)
		if (!(copy[i] = strdup(argv[i]))) {
			for (size_t j = 0; j < i; j++)
				free(copy[j]);
			free(copy);
			return NULL;
		}
	return copy;
}

static void runtime_vm__free(struct runtime_vm *vm)
{
	for (size_t i = 0; vm->argv && vm->argv[i]; i++)
		free(vm->argv[i]);
	free(vm->argv);
	free(vm->netns_path);
	free(vm);
}

/* Starts warren-vmm with argv (NULL-terminated; argv[0] the binary) in
 * vm->netns_path, in the jail's cgroup, its output to <dir>/vmm.log
 * (appended when append), and waits until it answers "running". 0, or -1
 * with the reason in err (the VMM killed; the state dir is kept). */
static int runtime_vm__spawn(struct runtime_vm *vm, char *const argv[], bool append, char *err,
			     size_t err_len)
{
	char log_path[PATH_MAX + 16], response[4096];
	int error_pipe[2] = {-1, -1}, go_pipe[2] = {-1, -1}, netns_fd = -1, status;
	int child_errno = 0, ret = -1;
	bool answered = false;
	long long deadline;

	snprintf(log_path, sizeof(log_path), "%s/vmm.log", vm->dir);
	if (vm->netns_path) {
		netns_fd = open(vm->netns_path, O_RDONLY | O_CLOEXEC);
		if (netns_fd < 0) {
			snprintf(err, err_len, "vm runtime: open %s: %s", vm->netns_path,
				 strerror(errno));
			goto out;
		}
	}
	int log_fd =
	    open(log_path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0600);
	if (log_fd < 0 || exec_status__open(error_pipe) || pipe2(go_pipe, O_CLOEXEC)) {
		snprintf(err, err_len, "vm runtime: %s: %s", log_path, strerror(errno));
		if (log_fd >= 0)
			close(log_fd);
		goto out;
	}
	vm->pid = fork();
	if (vm->pid == 0) {
		/* Child: async-signal-safe calls only. Own process group, the
		 * slot's network namespace (tap0 is opened there), then exec. */
		int null_fd = open("/dev/null", O_RDONLY);
		int code = 0;
		char go;

		setpgid(0, 0);
		/* Wait until the parent put us in the jail's cgroup. */
		if (read(go_pipe[0], &go, 1) != 1)
			_exit(127);
		if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET))
			code = errno;
		if (!code && (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 ||
			      dup2(log_fd, 2) < 0))
			code = errno;
		if (!code) {
			/* Nothing of the worker's (Kafka, database sockets) leaks in. */
			syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
			execv(argv[0], argv);
			code = errno;
		}
		exec_status__fail(error_pipe[1], code, 127);
	}
	close(log_fd);
	close(error_pipe[1]);
	error_pipe[1] = -1;
	if (vm->pid < 0) {
		vm->pid = 0;
		snprintf(err, err_len, "vm runtime: fork: %s", strerror(errno));
		goto out;
	}
	setpgid(vm->pid, vm->pid); /* also from here: no race with kill(-pid) */
	close(go_pipe[0]);
	go_pipe[0] = -1;
	if (vm->have_cgroup && jail_cgroup__attach(&vm->cgroup, vm->pid, err, err_len))
		goto out;
	if (write(go_pipe[1], "g", 1) != 1) {
		snprintf(err, err_len, "vm runtime: cannot release warren-vmm: %s",
			 strerror(errno));
		goto out;
	}
	if ((child_errno = exec_status__wait(error_pipe[0]))) {
		snprintf(err, err_len, "vm runtime: entering %s / exec %s: %s",
			 vm->netns_path ? vm->netns_path : "-", argv[0], strerror(child_errno));
		goto out;
	}
	if (runtime_vm__write_state(vm, vm->id, err, err_len))
		goto out;
	/* Started once the control socket answers "running". */
	deadline = (long long)clock__monotonic_ms() + VM_SOCKET_WAIT_MS;
	for (;;) {
		if (runtime_vm__exited(vm, &status)) {
			snprintf(err, err_len, "vm runtime: warren-vmm exited at start (status %d)",
				 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			runtime_vm__log_tail(vm, err, err_len);
			goto out;
		}
		answered = runtime_vm__request(vm->socket_path, "{\"op\":\"state\"}", response,
					       sizeof(response)) == 0;
		if (answered && strstr(response, "\"running\""))
			break;
		if ((long long)clock__monotonic_ms() > deadline) {
			/* what it last said tells a slow boot from a dead socket */
			snprintf(err, err_len,
				 "vm runtime: warren-vmm not running after %d ms (%s%.80s)",
				 VM_SOCKET_WAIT_MS,
				 answered ? "its control socket answered "
					  : "its control socket did not answer",
				 answered ? response : "");
			runtime_vm__log_tail(vm, err, err_len);
			goto out;
		}
		runtime_vm__sleep_ms(20);
	}
	ret = 0;
out:
	if (ret)
		runtime_vm__kill(vm);
	for (int i = 0; i < 2; i++)
		if (go_pipe[i] >= 0)
			close(go_pipe[i]);
	if (netns_fd >= 0)
		close(netns_fd);
	if (error_pipe[0] >= 0)
		close(error_pipe[0]);
	if (error_pipe[1] >= 0)
		close(error_pipe[1]);
	return ret;
}

/* What a start needs before anything is made: a sane sandbox id, the guest
 * kernel, warren-vmm (its path in vmm) and the template's metadata.
 * 0 or -1 with the reason in err. */
static int runtime_vm__preflight(const struct runtime_start *spec, const char *kernel, char *vmm,
				 size_t vmm_len, struct template_info *template_info, char *err,
				 size_t err_len)
{
	if (!spec->sandbox_id || !ids__is_sandbox_id(spec->sandbox_id)) {
		snprintf(err, err_len, "vm runtime: bad sandbox id");
		return -1;
	}
	if (!kernel || access(kernel, R_OK)) {
		snprintf(err, err_len, "vm runtime: no guest kernel (setting guest_kernel)");
		return -1;
	}
	if (runtime_vm__find_vmm(vmm, vmm_len)) {
		snprintf(err, err_len, "vm runtime: warren-vmm not found (setting vmm_binary)");
		return -1;
	}
	return templates__read(templates__dir(), spec->template_id, template_info, err, err_len)
		   ? -1
		   : 0;
}

/* The --device arguments: the disk (an overlay over base, or with base
 * NULL a writable copy at image) and the net device on tap0 with the
 * sandbox's MAC. 0 (both malloc'ed) or -1 (out of memory). */
static int runtime_vm__device_args(const char *sandbox_id, const char *image, const char *base,
				   char **block_json, char **net_json)
{
	char mac[18];
	json_t *block, *net;

	runtime_vm__mac(sandbox_id, mac);
	block = base ? json_pack("{s:s, s:s, s:s}", "type", "block", "path", image, "base", base)
		     : json_pack("{s:s, s:s, s:b}", "type", "block", "path", image, "read_only", 0);
	net = json_pack("{s:s, s:s, s:s}", "type", "net", "tap", "tap0", "mac", mac);
	*block_json = block ? json_dumps(block, JSON_COMPACT) : NULL;
	*net_json = net ? json_dumps(net, JSON_COMPACT) : NULL;
	json_decref(block);
	json_decref(net);
	return *block_json && *net_json ? 0 : -1;
}

/* The sandbox's disk at image: from a vm snapshot template its overlay
 * copied (or its full disk), else an empty overlay over the template image
 * or, with setting vm_disk_copy, a full sparse copy. *base: the overlay's
 * base (the template image) or NULL for a full disk. 0 or -1 with err. */
static int runtime_vm__make_disk(const struct template_info *template_info, int restored,
				 bool overlay, const char *image, const char **base, char *err,
				 size_t err_len)
{
	char from[PATH_MAX + 32];
	bool copy_disk = restored ? !overlay : config__get_bool("vm_disk_copy", false);

	*base = copy_disk ? NULL : template_info->image;
	if (restored && overlay) {
		snprintf(from, sizeof(from), "%.4000s/" VM_TEMPLATE_DIR "/disk.overlay",
			 template_info->dir);
		return runtime_vm__copy_image(from, image, err, err_len);
	}
	/* copy-on-write over the template image (docs/vmm-design.md "Disks") */
	return copy_disk ? runtime_vm__copy_image(template_info->image, image, err, err_len)
			 : runtime_vm__new_overlay(image, err, err_len);
}

/* The sandbox's state dir, the VMM's jail (uid, cgroup) in it. 0 or -1
 * with err (what was made is left for the caller's clean-up). */
static int runtime_vm__make_dirs(struct runtime_vm *vm, const struct runtime_start *spec, char *err,
				 size_t err_len)
{
	vm->jailed = config__get_bool("vm_jail", geteuid() == 0);
	if ((size_t)snprintf(vm->dir, sizeof(vm->dir), "%s/%s", runtime_vm__state_root(),
			     spec->sandbox_id) >= sizeof(vm->dir) ||
	    (size_t)snprintf(vm->root, sizeof(vm->root), "%s%s", vm->dir,
			     vm->jailed ? "/root" : "") >= sizeof(vm->root) ||
	    (size_t)snprintf(vm->socket_path, sizeof(vm->socket_path), "%s/vmm.sock", vm->root) >=
		sizeof(vm->socket_path)) {
		snprintf(err, err_len, "vm runtime: state_dir path too long");
		vm->dir[0] = 0;
		return -1;
	}
	mkdir(runtime_vm__state_root(), 0700);
	if (mkdir(vm->dir, 0700) && errno != EEXIST) {
		snprintf(err, err_len, "vm runtime: mkdir %s: %s", vm->dir, strerror(errno));
		vm->dir[0] = 0;
		return -1;
	}
	if (vm->jailed && mkdir(vm->root, 0700) && errno != EEXIST) {
		snprintf(err, err_len, "vm runtime: mkdir %s: %s", vm->root, strerror(errno));
		return -1;
	}
	if (vm->jailed && (runtime_vm__jail_uid(vm, spec->sandbox_id, err, err_len) ||
			   runtime_vm__make_cgroup(vm, spec, err, err_len)))
		return -1;
	return 0;
}

struct runtime_vm *runtime_vm__start(const struct runtime_start *requested, char *err,
				     size_t err_len)
{
	struct runtime_start start = *requested, *spec = &start;
	struct template_info template_info;
	struct runtime_vm *vm = NULL;
	const char *kernel = runtime_vm__kernel();
	const char *base;
	char vmm[PATH_MAX], image[PATH_MAX + 32], console[PATH_MAX + 32];
	char cmdline[1024], memory[16], vcpus[16], io_poll[24], profile[16];
	char jail_uid[16];
	char *block_json = NULL, *net_json = NULL;
	bool overlay = false;
	int restored;

	if (runtime_vm__preflight(spec, kernel, vmm, sizeof(vmm), &template_info, err, err_len))
		return NULL;
	/* a vm snapshot template: its machine, restored rather than booted */
	restored = runtime_vm__template(template_info.dir, &start.memory_mib, &start.vcpus, profile,
					sizeof(profile), &overlay);
	if (restored < 0) {
		snprintf(err, err_len, "vm runtime: template %s: bad vm snapshot",
			 spec->template_id);
		return NULL;
	}
	if (!restored)
		snprintf(profile, sizeof(profile), "%s",
			 config__get("vm_cpu_profile", NULL)
			     ?: (runtime__host_has_hardware_kvm() ? "host" : "baseline"));

	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	if (runtime_vm__make_dirs(vm, spec, err, err_len))
		goto err;
	snprintf(image, sizeof(image), "%s/rootfs.ext4", vm->root);
	snprintf(console, sizeof(console), "%s/console.log", vm->root);
	if (runtime_vm__make_disk(&template_info, restored, overlay, image, &base, err, err_len))
		goto err;
	if (runtime_vm__device_args(spec->sandbox_id, image, base, &block_json, &net_json)) {
		snprintf(err, err_len, "out of memory");
		goto err;
	}
	runtime_vm__cmdline(spec, !strcmp(profile, "baseline"), cmdline, sizeof(cmdline));
	snprintf(memory, sizeof(memory), "%u", spec->memory_mib ? spec->memory_mib : 128);
	snprintf(vcpus, sizeof(vcpus), "%u", spec->vcpus ? spec->vcpus : 1);
	/* vm_io_poll_us: the VMM's I/O thread busy-polls this long before it
	 * sleeps (lower I/O latency for CPU; docs/vmm-design.md). 0: never. */
	snprintf(io_poll, sizeof(io_poll), "%lld", (long long)config__get_int("vm_io_poll_us", 0));
	snprintf(jail_uid, sizeof(jail_uid), "%u", vm->uid);
	char *argv[] = {vmm, "--kernel", (char *)kernel, "--cmdline", cmdline, "--memory", memory,
			"--vcpus", vcpus, "--cpu-profile", profile, "--console", console,
			"--api-socket", vm->socket_path, "--io-poll-us", io_poll,
			"--rng" /* entropy: docs/vmm-design.md */, "--device", block_json,
			"--device", net_json,
			/* last: dropped when not jailed */
			vm->jailed ? "--jail" : NULL, vm->root, "--jail-uid", jail_uid,
			"--jail-gid", jail_uid, NULL};

	vm->argv = runtime_vm__copy_argv(argv);
	if ((spec->netns_path && !(vm->netns_path = strdup(spec->netns_path))) || !vm->argv) {
		snprintf(err, err_len, "out of memory");
		goto err;
	}
	snprintf(vm->id, sizeof(vm->id), "%s", spec->sandbox_id);
	if (restored) {
		/* the snapshot's guest goes on here: a resume of its files */
		vm->paused = true;
		if (runtime_vm__stage_snapshot(vm, template_info.dir, err, err_len) ||
		    runtime_vm__resume(vm, err, err_len))
			goto err;
	} else if (runtime_vm__spawn(vm, vm->argv, false, err, err_len))
		goto err;
	log_info("vm runtime: sandbox %s: warren-vmm pid %d in %s (profile %s, %s MiB, %s vcpus%s)",
		 spec->sandbox_id, (int)vm->pid, spec->netns_path ? spec->netns_path : "host netns",
		 profile, memory, vcpus, restored ? ", restored from its template" : "");
	goto out;
err:
	runtime_vm__kill(vm);
	if (vm->have_cgroup)
		jail_cgroup__destroy(&vm->cgroup, VM_STOP_WAIT_MS);
	if (vm->dir[0])
		runtime_vm__remove_dir(vm->dir);
	runtime_vm__free(vm);
	vm = NULL;
out:
	free(block_json);
	free(net_json);
	return vm;
}

void runtime_vm__stop(struct runtime_vm *vm)
{
	char response[4096];
	long long deadline;
	int status;

	if (!vm)
		return;
	/* docs/vmm-api.md: "exit" stops a running VM, then the process exits. */
	if (vm->pid > 0 && !runtime_vm__exited(vm, &status) &&
	    runtime_vm__request(vm->socket_path, "{\"op\":\"exit\"}", response, sizeof(response)))
		kill(vm->pid, SIGTERM);
	deadline = (long long)clock__monotonic_ms() + VM_STOP_WAIT_MS;
	while (vm->pid > 0 && !runtime_vm__exited(vm, &status)) {
		if ((long long)clock__monotonic_ms() > deadline) {
			log_warn("vm runtime: warren-vmm %d did not exit in %d ms: SIGKILL",
				 (int)vm->pid, VM_STOP_WAIT_MS);
			runtime_vm__kill(vm);
			break;
		}
		runtime_vm__sleep_ms(20);
	}
	/* Anything else left in the jail's cgroup, then its files. */
	if (vm->have_cgroup && jail_cgroup__destroy(&vm->cgroup, VM_STOP_WAIT_MS))
		log_warn("vm runtime: cgroup of %s not empty after stop", vm->dir);
	runtime_vm__remove_dir(vm->dir); /* a paused one's snapshot files too */
	runtime_vm__free(vm);
}

/* True when pid is a live process whose command line holds socket_path
 * (guards against a recycled pid). */
static bool runtime_vm__is_our_vmm(pid_t pid, const char *socket_path)
{
	char path[64], text[8192];
	size_t n;
	FILE *file;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	file = fopen(path, "re");
	if (!file)
		return false;
	n = fread(text, 1, sizeof(text) - 1, file);
	fclose(file);
	for (size_t i = 0; i < n; i++)
		if (text[i] == 0)
			text[i] = ' ';
	text[n] = 0;
	return strstr(text, "warren-vmm") && strstr(text, socket_path);
}

int runtime_vm__reap_orphans(const char *const *keep, size_t count)
{
	const char *root = runtime_vm__state_root();
	char state_path[PATH_MAX], dir[PATH_MAX];
	struct dirent *entry;
	int killed = 0;
	DIR *listing = opendir(root);

	if (!listing)
		return 0;
	while ((entry = readdir(listing))) {
		json_t *state;
		json_int_t pid;
		const char *socket_path;
		bool kept = false;

		if (!ids__is_sandbox_id(entry->d_name))
			continue;
		for (size_t k = 0; k < count && !kept; k++)
			kept = !strcmp(keep[k], entry->d_name);
		if (kept)
			continue;
		if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", root, entry->d_name) >=
			sizeof(dir) ||
		    (size_t)snprintf(state_path, sizeof(state_path), "%s/vmm.json", dir) >=
			sizeof(state_path))
			continue;
		state = json_load_file(state_path, 0, NULL);
		if (!state)
			continue; /* not a vm sandbox (the jail runtime's) */
		pid = json_integer_value(json_object_get(state, "pid"));
		socket_path = json_string_value(json_object_get(state, "api_socket"));
		if (pid > 1 && pid < INT_MAX && socket_path &&
		    runtime_vm__is_our_vmm((pid_t)pid, socket_path)) {
			long long deadline = (long long)clock__monotonic_ms() + VM_STOP_WAIT_MS;

			kill(-(pid_t)pid, SIGKILL);
			kill((pid_t)pid, SIGKILL);
			/* Our own child (this process started it): reap it now.
			 * Otherwise (ECHILD) wait for init to. */
			while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
				;
			while (runtime_vm__is_our_vmm((pid_t)pid, socket_path) &&
			       (long long)clock__monotonic_ms() < deadline) {
				runtime_vm__sleep_ms(10);
			}
			log_info(
			    "orphan vm sandbox %s (warren-vmm %d) of a previous worker stopped",
			    entry->d_name, (int)pid);
			killed++;
		}
		json_decref(state);
		{
			/* its jail's cgroup, if it had one (a missing one is fine) */
			struct jail_cgroup cgroup;

			if (jail_cgroup__paths(&cgroup, runtime_vm__cgroup_parent(),
					       entry->d_name) == 0)
				jail_cgroup__destroy(&cgroup, VM_STOP_WAIT_MS);
		}
		runtime_vm__remove_dir(dir);
	}
	closedir(listing);
	return killed;
}

/* ---- pause and resume: snapshot, stop, restore (docs/vmm-snapshot.md) ---- */

#define VM_SNAPSHOT_PATH (PATH_MAX + 32) /* root/ + "/snapshot" */
#define VM_PAUSED_FILE	 "paused.json"	 /* in the state dir: runtime_vm__write_paused */

/* The snapshot's state file: as the worker sees it (host) and as the VMM
 * does (inside its jail, where root/ is /). */
static void runtime_vm__snapshot_paths(const struct runtime_vm *vm, char *host, size_t host_len,
				       char *inner, size_t inner_len)
{
	snprintf(host, host_len, "%s/snapshot", vm->root);
	snprintf(inner, inner_len, "%s", vm->jailed ? "/snapshot" : host);
}

static bool runtime_vm__ok(const char *response)
{
	return strstr(response, "\"ok\":true") || strstr(response, "\"ok\": true");
}

/* Pauses the VMM and saves the VM; a snapshot refused while a device has
 * requests in flight is retried after a short run. 0 (the VM paused and
 * saved) or -EIO with the reason (the VM is running again). */
static int runtime_vm__save(struct runtime_vm *vm, const char *inner, char *response,
			    size_t response_len, char *err, size_t err_len)
{
	int timeout_ms = (int)config__get_int("vm_snapshot_timeout_ms", 120000);
	char *request = NULL;
	json_t *object = json_pack("{s:s, s:s}", "op", "snapshot", "path", inner);

	request = object ? json_dumps(object, JSON_COMPACT) : NULL;
	json_decref(object);
	if (!request) {
		snprintf(err, err_len, "out of memory");
		return -EIO;
	}
	for (int attempt = 0; attempt < 100; attempt++) {
		response[0] = 0;
		if (runtime_vm__request(vm->socket_path, "{\"op\":\"pause\"}", response,
					response_len) ||
		    !runtime_vm__ok(response) ||
		    vmm_client__request(vm->socket_path, request, response, response_len,
					timeout_ms) ||
		    !runtime_vm__ok(response)) {
			/* running again: in flight I/O completes, or the pause is undone */
			runtime_vm__request(vm->socket_path, "{\"op\":\"resume\"}", err, err_len);
			if (strstr(response, "device busy")) {
				runtime_vm__sleep_ms(5);
				continue;
			}
			break;
		}
		free(request);
		return 0;
	}
	free(request);
	snprintf(err, err_len, "vm runtime: snapshot failed: %.400s",
		 response[0] ? response : "no answer from warren-vmm");
	return -EIO;
}

/* <dir>/paused.json: what a restarted worker needs to restore a paused VM
 * (runtime_vm__adopt): the VMM's command line and jail uid. Written (tmp,
 * fsync, rename) once the snapshot is complete and the VMM gone, so its
 * presence means "complete". 0 or -1. */
static int runtime_vm__write_paused(const struct runtime_vm *vm)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 24];
	json_t *argv = json_array(), *marker;
	int fd, ret = -1;

	for (size_t i = 0; argv && vm->argv[i]; i++)
		json_array_append_new(argv, json_string(vm->argv[i]));
	marker = json_pack("{s:i, s:s, s:o, s:I, s:b}", "version", 1, "id", vm->id, "argv", argv,
			   "uid", (json_int_t)vm->uid, "jailed", vm->jailed);
	snprintf(path, sizeof(path), "%s/" VM_PAUSED_FILE, vm->dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!marker || json_dump_file(marker, tmp, JSON_COMPACT))
		goto out;
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd)) {
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	ret = rename(tmp, path);
out:
	if (ret)
		unlink(tmp);
	json_decref(marker);
	return ret ? -1 : 0;
}

/* Pause: save the VM to root/snapshot{,.mem}, then stop the VMM. The
 * sandbox's files (disk overlay, snapshot) stay in its state dir. */
static int runtime_vm__pause(struct runtime_vm *vm, char *err, size_t err_len)
{
	char host[VM_SNAPSHOT_PATH], inner[VM_SNAPSHOT_PATH], response[4096];
	long long started = (long long)clock__monotonic_ms(), deadline;
	int status;

	if (vm->pid <= 0) {
		snprintf(err, err_len, "vm runtime: warren-vmm is not running");
		return -EIO;
	}
	runtime_vm__snapshot_paths(vm, host, sizeof(host), inner, sizeof(inner));
	if (runtime_vm__save(vm, inner, response, sizeof(response), err, err_len))
		return -EIO;
	vm->paused = true; /* from here an exit of the VMM is ours */
	if (runtime_vm__request(vm->socket_path, "{\"op\":\"exit\"}", err, err_len))
		kill(vm->pid, SIGTERM);
	deadline = (long long)clock__monotonic_ms() + VM_STOP_WAIT_MS;
	while (vm->pid > 0 && !runtime_vm__exited(vm, &status)) {
		if ((long long)clock__monotonic_ms() > deadline) {
			runtime_vm__kill(vm);
			break;
		}
		runtime_vm__sleep_ms(10);
	}
	if (runtime_vm__write_paused(vm))
		log_warn("vm runtime: sandbox %s: %s/" VM_PAUSED_FILE " not written: the pause "
			 "does not survive a restart of the worker",
			 vm->id, vm->dir);
	log_info("vm runtime: sandbox %s: paused to %s in %lld ms (%.200s)", vm->id, host,
		 (long long)clock__monotonic_ms() - started, response);
	return 0;
}

/* Resume: a new warren-vmm restores the snapshot (same command line plus
 * --restore); then the snapshot files go (the memory stays mapped). */
static int runtime_vm__resume(struct runtime_vm *vm, char *err, size_t err_len)
{
	char host[VM_SNAPSHOT_PATH], inner[VM_SNAPSHOT_PATH], memory[VM_SNAPSHOT_PATH + 8];
	char marker[PATH_MAX + 16];
	long long started = (long long)clock__monotonic_ms();
	size_t count = 0;
	char **argv;
	int ret;

	runtime_vm__snapshot_paths(vm, host, sizeof(host), inner, sizeof(inner));
	while (vm->argv[count])
		count++;
	argv = calloc(count + 3, sizeof(*argv));
	if (!argv) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	argv[0] = vm->argv[0];
	argv[1] = "--restore";
	argv[2] = host; /* warren-vmm maps it into its jail */
	for (size_t i = 1; i < count; i++)
		argv[i + 2] = vm->argv[i];
	ret = runtime_vm__spawn(vm, argv, true, err, err_len);
	free(argv);
	if (ret)
		return -EIO; /* still paused: the snapshot is kept for another try */
	vm->paused = false;
	snprintf(memory, sizeof(memory), "%s.mem", host);
	snprintf(marker, sizeof(marker), "%s/" VM_PAUSED_FILE, vm->dir);
	unlink(marker); /* first: no marker names a snapshot that is going */
	unlink(host);
	unlink(memory);
	log_info("vm runtime: sandbox %s: resumed from its snapshot in %lld ms", vm->id,
		 (long long)clock__monotonic_ms() - started);
	return 0;
}

bool runtime_vm__paused(const struct runtime_vm *vm)
{
	return vm->paused;
}

int runtime_vm__set_paused(struct runtime_vm *vm, bool paused, char *err, size_t err_len)
{
	if (paused == vm->paused)
		return 0;
	return paused ? runtime_vm__pause(vm, err, err_len) : runtime_vm__resume(vm, err, err_len);
}

/* ---- a paused VM after a restart of the worker ---- */

/* The marker of id's state dir (dir filled), or NULL when there is none
 * or it does not name id with a command line. */
static json_t *runtime_vm__load_paused(const char *id, char *dir, size_t dir_len)
{
	char path[PATH_MAX + 16];
	json_t *marker, *argv;

	if (!ids__is_sandbox_id(id) ||
	    (size_t)snprintf(dir, dir_len, "%s/%s", runtime_vm__state_root(), id) >= dir_len)
		return NULL;
	snprintf(path, sizeof(path), "%s/" VM_PAUSED_FILE, dir);
	marker = json_load_file(path, 0, NULL);
	argv = json_object_get(marker, "argv");
	if (!marker || json_integer_value(json_object_get(marker, "version")) != 1 ||
	    strcmp(json_string_value(json_object_get(marker, "id")) ?: "", id) ||
	    !json_is_array(argv) || json_array_size(argv) < 2 || json_array_size(argv) > 64 ||
	    !json_is_integer(json_object_get(marker, "uid"))) {
		json_decref(marker);
		return NULL;
	}
	for (size_t i = 0; i < json_array_size(argv); i++)
		if (!json_is_string(json_array_get(argv, i))) {
			json_decref(marker);
			return NULL;
		}
	return marker;
}

/* True when <dir>/vmm.json says a VMM was started at or after the marker
 * was written: a resume ran (and its guest may have written to the disk
 * since the snapshot), so the snapshot no longer matches the disk. */
static bool runtime_vm__resumed_since(const char *dir)
{
	char path[PATH_MAX + 16];
	struct stat marker;
	json_t *state;
	bool resumed;

	snprintf(path, sizeof(path), "%s/" VM_PAUSED_FILE, dir);
	if (stat(path, &marker))
		return true;
	snprintf(path, sizeof(path), "%s/vmm.json", dir);
	state = json_load_file(path, 0, NULL);
	resumed = json_integer_value(json_object_get(state, "started_ns")) >=
		  (json_int_t)marker.st_mtim.tv_sec * 1000000000 + marker.st_mtim.tv_nsec;
	json_decref(state);
	return resumed;
}

/* The marker of id's state dir (dir filled) when the paused files it
 * stands for are complete: no resume since it was written, the snapshot,
 * its memory file and the disk all there. NULL otherwise. */
static json_t *runtime_vm__complete_marker(const char *id, char *dir, size_t dir_len)
{
	static const char *const files[] = {"snapshot", "snapshot.mem", "rootfs.ext4"};
	char path[PATH_MAX + 32];
	json_t *marker = runtime_vm__load_paused(id, dir, dir_len);
	bool jailed = json_is_true(json_object_get(marker, "jailed"));
	bool complete = marker != NULL && !runtime_vm__resumed_since(dir);

	for (size_t i = 0; complete && i < sizeof(files) / sizeof(files[0]); i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s%s/%s", dir, jailed ? "/root" : "", files[i]);
		complete = lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
			   (st.st_size > 0 || !strcmp(files[i], "rootfs.ext4"));
	}
	if (!complete) {
		json_decref(marker);
		return NULL;
	}
	return marker;
}

bool runtime_vm__paused_complete(const char *id)
{
	char dir[PATH_MAX];
	json_t *marker = runtime_vm__complete_marker(id, dir, sizeof(dir));
	bool complete = marker != NULL;

	json_decref(marker);
	return complete;
}

/* Stops a VMM that <dir>/vmm.json still names (a worker killed in the
 * middle of a resume), so no half-resumed guest runs beside the adopted
 * one. */
static void runtime_vm__stop_recorded(const struct runtime_vm *vm)
{
	char path[PATH_MAX + 16];
	json_t *state;
	json_int_t pid;

	snprintf(path, sizeof(path), "%s/vmm.json", vm->dir);
	state = json_load_file(path, 0, NULL);
	pid = json_integer_value(json_object_get(state, "pid"));
	if (pid > 1 && pid < INT_MAX && runtime_vm__is_our_vmm((pid_t)pid, vm->socket_path)) {
		kill(-(pid_t)pid, SIGKILL);
		kill((pid_t)pid, SIGKILL);
		for (int i = 0; i < 500 && runtime_vm__is_our_vmm((pid_t)pid, vm->socket_path); i++)
			runtime_vm__sleep_ms(10);
		log_warn("vm runtime: sandbox %s: warren-vmm %d of a previous worker stopped",
			 vm->id, (int)pid);
	}
	json_decref(state);
}

/* The command line of the marker, the binary replaced by this host's
 * warren-vmm; *memory_mib and *vcpus read from it. NULL when out of memory. */
static char **runtime_vm__marker_argv(const json_t *marker, const char *vmm, uint32_t *memory_mib,
				      uint32_t *vcpus)
{
	const json_t *list = json_object_get(marker, "argv");
	size_t count = json_array_size(list);
	char **argv = calloc(count + 1, sizeof(*argv));

	for (size_t i = 0; argv && i < count; i++) {
		const char *arg = i ? json_string_value(json_array_get(list, i)) : vmm;

		if (!(argv[i] = strdup(arg))) {
			for (size_t j = 0; j < i; j++)
				free(argv[j]);
			free(argv);
			return NULL;
		}
		if (i && i + 1 < count && !strcmp(arg, "--memory"))
			*memory_mib = (uint32_t)strtoul(
			    json_string_value(json_array_get(list, i + 1)), NULL, 10);
		if (i && i + 1 < count && !strcmp(arg, "--vcpus"))
			*vcpus = (uint32_t)strtoul(json_string_value(json_array_get(list, i + 1)),
						   NULL, 10);
	}
	return argv;
}

struct runtime_vm *runtime_vm__adopt(const char *id, const char *netns_path, uint32_t *vcpus,
				     char *err, size_t err_len)
{
	struct runtime_start spec = {.sandbox_id = id};
	struct runtime_vm *vm = NULL;
	struct jail_cgroup stale;
	char dir[PATH_MAX], vmm[PATH_MAX];
	json_t *marker = NULL;
	struct stat st;

	if (!(marker = runtime_vm__complete_marker(id, dir, sizeof(dir)))) {
		snprintf(err, err_len, "vm runtime: no complete paused snapshot of %s", id);
		goto fail;
	}
	if (runtime_vm__find_vmm(vmm, sizeof(vmm))) {
		snprintf(err, err_len, "vm runtime: warren-vmm not found (setting vmm_binary)");
		goto fail;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		goto oom;
	vm->jailed = json_is_true(json_object_get(marker, "jailed"));
	vm->uid = (unsigned)json_integer_value(json_object_get(marker, "uid"));
	vm->paused = true;
	snprintf(vm->id, sizeof(vm->id), "%s", id);
	snprintf(vm->dir, sizeof(vm->dir), "%s", dir);
	snprintf(vm->root, sizeof(vm->root), "%s%s", dir, vm->jailed ? "/root" : "");
	if ((size_t)snprintf(vm->socket_path, sizeof(vm->socket_path), "%s/vmm.sock", vm->root) >=
	    sizeof(vm->socket_path)) {
		snprintf(err, err_len, "vm runtime: state_dir path too long");
		goto fail;
	}
	if (vm->jailed && (stat(vm->root, &st) || st.st_uid != (uid_t)vm->uid)) {
		snprintf(err, err_len, "vm runtime: %s is not owned by the jail uid %u", vm->root,
			 vm->uid);
		goto fail;
	}
	vm->argv = runtime_vm__marker_argv(marker, vmm, &spec.memory_mib, &spec.vcpus);
	if (!vm->argv || (netns_path && !(vm->netns_path = strdup(netns_path))))
		goto oom;
	runtime_vm__stop_recorded(vm);
	/* the previous worker's cgroup (empty: its VMM is gone), then ours */
	if (jail_cgroup__paths(&stale, runtime_vm__cgroup_parent(), id) == 0)
		jail_cgroup__destroy(&stale, VM_STOP_WAIT_MS);
	if (vm->jailed && runtime_vm__make_cgroup(vm, &spec, err, err_len))
		goto fail;
	*vcpus = spec.vcpus;
	json_decref(marker);
	log_info("vm runtime: sandbox %s: paused snapshot adopted after a worker restart", id);
	return vm;
oom:
	snprintf(err, err_len, "out of memory");
fail:
	json_decref(marker);
	if (vm)
		runtime_vm__free(vm);
	return NULL;
}

/* ---- a vm sandbox as a template: its snapshot exported, then restored by
 * the sandboxes started from it (docs/api.md, "Snapshots") ---- */

/* Hard-links from to to, or copies it (sparse) where a link cannot be
 * made (another file system). 0 or -1 with err. */
static int runtime_vm__link_or_copy(const char *from, const char *to, char *err, size_t err_len)
{
	if (link(from, to) == 0)
		return 0;
	if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
		snprintf(err, err_len, "vm runtime: link %s: %s", to, strerror(errno));
		return -1;
	}
	return runtime_vm__copy_image(from, to, err, err_len);
}

/* The value after flag in a VMM command line, or NULL. */
static const char *runtime_vm__argv_value(char *const *argv, const char *flag)
{
	for (size_t i = 1; argv[i] && argv[i + 1]; i++)
		if (!strcmp(argv[i], flag))
			return argv[i + 1];
	return NULL;
}

/* The block device's JSON of a VMM command line (new reference), or NULL. */
static json_t *runtime_vm__block_device(char *const *argv)
{
	for (size_t i = 1; argv[i] && argv[i + 1]; i++) {
		json_t *device;

		if (strcmp(argv[i], "--device"))
			continue;
		device = json_loads(argv[i + 1], 0, NULL);
		if (!strcmp(json_util__string(device, "type", ""), "block"))
			return device;
		json_decref(device);
	}
	return NULL;
}

/* Bytes a file holds on disk (its allocated blocks: sparse holes are free). */
static uint64_t runtime_vm__allocated(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

/* Copies the paused VM's files into dir: vm/snapshot and vm/snapshot.mem
 * (hard links where they can be: never written again), the disk (the
 * overlay as vm/disk.overlay over a link of its base as rootfs.ext4, or a
 * full disk as rootfs.ext4) and vm/vm.json. The snapshot files become
 * root's, 0644 in a 0700 directory: every sandbox restored from them reads
 * them, none can change them. 0 or -1 with err. */
static int runtime_vm__export_paused(const struct runtime_vm *vm, const char *dir, uint64_t *bytes,
				     char *err, size_t err_len)
{
	char vm_dir[PATH_MAX + 8], from[PATH_MAX + 32], to[PATH_MAX + 32];
	json_t *block = runtime_vm__block_device(vm->argv), *info = NULL;
	const char *base = json_util__string(block, "base", NULL);
	int ret = -1;

	*bytes = 0;
	snprintf(vm_dir, sizeof(vm_dir), "%.4000s/" VM_TEMPLATE_DIR, dir);
	if (!block || mkdir(vm_dir, 0700)) {
		snprintf(err, err_len, "vm runtime: %s: %s", vm_dir,
			 block ? strerror(errno) : "no disk on the command line");
		goto out;
	}
	for (size_t i = 0; i < VM_SNAPSHOT_FILE_COUNT; i++) {
		snprintf(from, sizeof(from), "%s/%s", vm->root, runtime_vm__snapshot_files[i]);
		snprintf(to, sizeof(to), "%s/%s", vm_dir, runtime_vm__snapshot_files[i]);
		if (runtime_vm__link_or_copy(from, to, err, err_len))
			goto out;
		if (chmod(to, 0644) || (geteuid() == 0 && chown(to, 0, 0))) {
			snprintf(err, err_len, "vm runtime: %s: %s", to, strerror(errno));
			goto out;
		}
		*bytes += runtime_vm__allocated(to);
	}
	snprintf(from, sizeof(from), "%s/rootfs.ext4", vm->root);
	snprintf(to, sizeof(to), "%.4000s/%s", base ? vm_dir : dir,
		 base ? "disk.overlay" : "rootfs.ext4");
	if (runtime_vm__copy_image(from, to, err, err_len))
		goto out;
	*bytes += runtime_vm__allocated(to);
	snprintf(to, sizeof(to), "%.4000s/rootfs.ext4", dir);
	if (base && runtime_vm__link_or_copy(base, to, err, err_len))
		goto out;
	info = json_pack("{s:i, s:s, s:s, s:s, s:b, s:s}", "version", 1, "memory_mib",
			 runtime_vm__argv_value(vm->argv, "--memory") ?: "", "vcpus",
			 runtime_vm__argv_value(vm->argv, "--vcpus") ?: "", "cpu_profile",
			 runtime_vm__argv_value(vm->argv, "--cpu-profile") ?: "", "overlay",
			 base != NULL, "source", vm->id);
	snprintf(to, sizeof(to), "%s/" VM_TEMPLATE_INFO, vm_dir);
	if (!info || json_dump_file(info, to, JSON_COMPACT)) {
		snprintf(err, err_len, "vm runtime: writing %s failed", to);
		goto out;
	}
	ret = 0;
out:
	json_decref(block);
	json_decref(info);
	return ret;
}

int runtime_vm__export(struct runtime_vm *vm, const char *dir, uint64_t *bytes, char *err,
		       size_t err_len)
{
	bool was_running = !vm->paused;
	long long started = (long long)clock__monotonic_ms();
	char resume_err[512];
	int ret;

	if (was_running && runtime_vm__pause(vm, err, err_len))
		return -EIO;
	ret = runtime_vm__export_paused(vm, dir, bytes, err, err_len) ? -EIO : 0;
	/* a running source goes on: resumed from the snapshot just taken (one
	 * more try: a resume that fails leaves the VM paused) */
	if (was_running && runtime_vm__resume(vm, resume_err, sizeof(resume_err)) &&
	    runtime_vm__resume(vm, resume_err, sizeof(resume_err))) {
		log_warn("vm runtime: sandbox %s: not resumed after its snapshot: %s", vm->id,
			 resume_err);
		if (!ret)
			snprintf(err, err_len, "%s", resume_err);
		ret = -EIO;
	}
	if (!ret)
		log_info("vm runtime: sandbox %s: exported to %s in %lld ms (%llu bytes)", vm->id,
			 dir, (long long)clock__monotonic_ms() - started,
			 (unsigned long long)*bytes);
	return ret;
}

/* The machine of a template exported by runtime_vm__export_paused, from
 * <template dir>/vm/vm.json: 1 (memory, vcpus, profile, overlay filled), 0
 * when the template is not a vm snapshot, -1 when its vm.json is bad. */
static int runtime_vm__template(const char *template_dir, uint32_t *memory_mib, uint32_t *vcpus,
				char *profile, size_t profile_len, bool *overlay)
{
	char path[PATH_MAX + 32];
	json_t *info;
	unsigned long memory, count;
	const char *cpu_profile;
	int ret = -1;

	snprintf(path, sizeof(path), "%.4000s/" VM_TEMPLATE_DIR "/" VM_TEMPLATE_INFO, template_dir);
	if (access(path, F_OK))
		return 0;
	info = json_load_file(path, 0, NULL);
	memory = strtoul(json_util__string(info, "memory_mib", ""), NULL, 10);
	count = strtoul(json_util__string(info, "vcpus", ""), NULL, 10);
	cpu_profile = json_util__string(info, "cpu_profile", "");
	if (json_integer_value(json_object_get(info, "version")) == 1 && memory >= 16 &&
	    memory <= (1ul << 20) && count >= 1 && count <= 64 &&
	    (!strcmp(cpu_profile, "host") || !strcmp(cpu_profile, "baseline"))) {
		*memory_mib = (uint32_t)memory;
		*vcpus = (uint32_t)count;
		snprintf(profile, profile_len, "%s", cpu_profile);
		*overlay = json_is_true(json_object_get(info, "overlay"));
		ret = 1;
	}
	json_decref(info);
	return ret;
}

int runtime_vm__template_machine(const char *template_dir, uint32_t *memory_mib, uint32_t *vcpus)
{
	char profile[16];
	bool overlay;

	return runtime_vm__template(template_dir, memory_mib, vcpus, profile, sizeof(profile),
				    &overlay) == 1
		   ? 0
		   : -1;
}

/* Puts a vm snapshot template's state and memory files into the new
 * sandbox's root (links where they can be) for its restore. 0 or -1. */
static int runtime_vm__stage_snapshot(const struct runtime_vm *vm, const char *template_dir,
				      char *err, size_t err_len)
{
	char from[PATH_MAX + 32], to[PATH_MAX + 32];

	for (size_t i = 0; i < VM_SNAPSHOT_FILE_COUNT; i++) {
		snprintf(from, sizeof(from), "%.4000s/" VM_TEMPLATE_DIR "/%s", template_dir,
			 runtime_vm__snapshot_files[i]);
		snprintf(to, sizeof(to), "%s/%s", vm->root, runtime_vm__snapshot_files[i]);
		if (runtime_vm__link_or_copy(from, to, err, err_len))
			return -1;
	}
	return 0;
}
