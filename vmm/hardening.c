/* hardening: the lock-down (see hardening.h). What runs once it is in
 * place: vCPU threads (KVM_RUN, KVM_IRQ_LINE, eventfd writes, futexes, the
 * kick signal to their own process), the event loop (io_uring_enter, reads
 * of eventfd/signalfd, the control socket, console writes), device
 * backends (io_uring; fallocate for discard; pread/pwrite of copy-on-write
 * overlays; getrandom for virtio-rng) and teardown (munmap, close, unlink
 * of the control socket, exit). */
#include "hardening.h"

#include <cap-ng.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void hardening__violation(int signal_number, siginfo_t *info, void *context)
{
	char message[96] = "warren-vmm: seccomp: blocked system call ";
	size_t length = strlen(message);
	unsigned number = (unsigned)info->si_syscall;
	char digits[12];
	int count = 0;

	do {
		digits[count++] = (char)('0' + number % 10);
		number /= 10;
	} while (number && count < (int)sizeof(digits));
	while (count > 0 && length + 2 < sizeof(message))
		message[length++] = digits[--count];
	message[length++] = '\n';
	if (write(STDERR_FILENO, message, length) < 0) {
		/* nothing left to do */
	}
	_exit(126);
}

/* System calls allowed with any arguments once the VMM is running. */
static const int hardening__allowed[] = {
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(readv),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(pwrite64),
    SCMP_SYS(preadv),
    SCMP_SYS(pwritev),
    SCMP_SYS(close),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(statx),
    SCMP_SYS(lseek),
    SCMP_SYS(fcntl),
    SCMP_SYS(getsockopt),
    SCMP_SYS(fallocate),
    SCMP_SYS(fsync),
    SCMP_SYS(fdatasync),
    SCMP_SYS(io_uring_enter),
    SCMP_SYS(futex),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(gettid),
    SCMP_SYS(getpid),
    SCMP_SYS(sched_yield),
    SCMP_SYS(restart_syscall),
    SCMP_SYS(nanosleep),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(getrandom),
    SCMP_SYS(mmap),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(mprotect),
    SCMP_SYS(madvise),
    SCMP_SYS(brk),
    SCMP_SYS(rseq),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(accept4),
    SCMP_SYS(recvfrom),
    SCMP_SYS(sendto),
    SCMP_SYS(recvmsg),
    SCMP_SYS(sendmsg),
    SCMP_SYS(setsockopt),
    SCMP_SYS(shutdown),
    SCMP_SYS(unlink),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    /* a snapshot (vm_snapshot.c) writes new files: its ring, sizes, rename;
     * a restored guest's untouched pages are copied from its memory file */
    SCMP_SYS(io_uring_setup),
    SCMP_SYS(copy_file_range),
    SCMP_SYS(ftruncate),
    SCMP_SYS(rename),
    SCMP_SYS(renameat),
    SCMP_SYS(renameat2),
};
/* ioctl: only what runs after setup */
static const unsigned long hardening__ioctls[] = {
    KVM_RUN,
    KVM_IRQ_LINE,
    KVM_IRQ_LINE_STATUS,
    KVM_GET_REGS,
    KVM_GET_SREGS,
    KVM_GET_MP_STATE,
    TCGETS,
    TUNSETOFFLOAD /* net: follows the driver's features */,
    /* a snapshot reads the state (only reads: a restore is before this) */
    KVM_GET_FPU,
    KVM_GET_XSAVE,
    KVM_GET_XCRS,
    KVM_GET_LAPIC,
    KVM_GET_VCPU_EVENTS,
    KVM_GET_DEBUGREGS,
    KVM_GET_MSRS,
    KVM_GET_MSR_INDEX_LIST,
    KVM_GET_IRQCHIP,
    KVM_GET_PIT2,
    KVM_GET_CLOCK,
};
/* Hot paths first in the generated filter (each system call runs it). */
static const int hardening__hot[] = {
    SCMP_SYS(ioctl), SCMP_SYS(io_uring_enter), SCMP_SYS(readv), SCMP_SYS(writev),
    SCMP_SYS(read),  SCMP_SYS(pwritev),	       SCMP_SYS(write),
};

/* Installs the SIGSYS handler that reports a blocked system call and exits.
 * Also does the one-time work (time zone, jansson seed) that would otherwise
 * need a system call the filter blocks. Returns 0 or -errno. */
static int hardening__prepare_trap(void)
{
	struct sigaction action = {0};

	tzset();	     /* strftime() in the logs would open /etc/localtime later */
	json_object_seed(0); /* jansson would open /dev/urandom for its first object */
	action.sa_sigaction = hardening__violation;
	action.sa_flags = SA_SIGINFO;
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGSYS, &action, NULL) < 0)
		return -errno;
	return 0;
}

/* Adds every allow rule (the tables above, openat to create, tgkill within
 * this process) and the hot-path priorities to filter. Returns 0 or the
 * first libseccomp error (negative errno). */
static int hardening__add_rules(scmp_filter_ctx filter)
{
	int result = 0;

	for (size_t i = 0;
	     i < sizeof(hardening__allowed) / sizeof(hardening__allowed[0]) && result == 0; i++)
		result = seccomp_rule_add(filter, SCMP_ACT_ALLOW, hardening__allowed[i], 0);
	for (size_t i = 0;
	     i < sizeof(hardening__ioctls) / sizeof(hardening__ioctls[0]) && result == 0; i++) {
		const struct scmp_arg_cmp request = {
		    .arg = 1, .op = SCMP_CMP_EQ, .datum_a = hardening__ioctls[i], .datum_b = 0};

		result =
		    seccomp_rule_add_array(filter, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, &request);
	}
	/* open only to create a new file (O_CREAT|O_EXCL: a snapshot's files),
	 * never to open an existing one */
	if (result == 0)
		result = seccomp_rule_add(
		    filter, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
		    SCMP_A2(SCMP_CMP_MASKED_EQ, O_CREAT | O_EXCL, O_CREAT | O_EXCL));
	/* tgkill (the vCPU kick) only within this process: never a signal to
	 * another sandbox's VMM, even one that shares our uid. */
	if (result == 0)
		result = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
					  SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
	for (size_t i = 0; i < sizeof(hardening__hot) / sizeof(hardening__hot[0]) && result == 0;
	     i++)
		result = seccomp_syscall_priority(filter, hardening__hot[i], (uint8_t)(255 - i));
	return result;
}

int hardening__install_seccomp(void)
{
	scmp_filter_ctx filter;
	int result = hardening__prepare_trap();

	if (result < 0)
		return result;
	filter = seccomp_init(SCMP_ACT_TRAP);
	if (filter == NULL)
		return -ENOMEM;
	result = hardening__add_rules(filter);
	if (result == 0)
		result = seccomp_attr_set(filter, SCMP_FLTATR_CTL_TSYNC, 1);
	if (result == 0)
		result = seccomp_load(filter);
	seccomp_release(filter);
	return result;
}

/* "CapEff:\t0000000000000000" style line of a status file: true when the
 * mask is not zero (or unreadable: fail closed). */
static bool hardening__mask_set(const char *status, const char *key)
{
	const char *line = strstr(status, key);

	if (line == NULL)
		return true;
	return strtoull(line + strlen(key), NULL, 16) != 0;
}

/* In the VMM's jail (vmm/jail.c) there is no /proc. There the process
 * switched to a uid other than 0 while single-threaded, so every thread
 * created since inherited no capability and none can gain one (no uid 0,
 * no_new_privs): all real, effective and saved uids non-zero and no
 * capability in this thread is then proof enough. */
static bool hardening__unprivileged_user(void)
{
	struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	uid_t ruid, euid, suid;

	memset(data, 0, sizeof(data));
	if (getresuid(&ruid, &euid, &suid) != 0 || ruid == 0 || euid == 0 || suid == 0 ||
	    syscall(SYS_capget, &header, data) != 0)
		return false;
	return !data[0].effective && !data[0].permitted && !data[1].effective && !data[1].permitted;
}

int hardening__check_no_capabilities(char *error, size_t error_size)
{
	DIR *tasks = opendir("/proc/self/task");
	struct dirent *entry;
	int result = 0;

	if (tasks == NULL && errno == ENOENT && hardening__unprivileged_user())
		return 0; /* jailed: no /proc, and see hardening__unprivileged_user */
	if (tasks == NULL) {
		snprintf(error, error_size, "capabilities: /proc/self/task: %s", strerror(errno));
		return -errno;
	}
	while (result == 0 && (entry = readdir(tasks)) != NULL) {
		char path[288], status[4096];
		size_t length;
		FILE *file;

		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", entry->d_name);
		file = fopen(path, "re");
		if (file == NULL)
			continue; /* the thread exited */
		length = fread(status, 1, sizeof(status) - 1, file);
		fclose(file);
		status[length] = 0;
		/* io_uring's workers ("iou-wrk-", "iou-sqp-") are kernel threads
		 * doing the ring's I/O; they cannot run our code. */
		if (strncmp(status, "Name:\tiou-", 10) == 0)
			continue;
		if (hardening__mask_set(status, "CapEff:\t") ||
		    hardening__mask_set(status, "CapPrm:\t")) {
			snprintf(error, error_size, "capabilities: thread %s still holds some",
				 entry->d_name);
			result = -EPERM;
		}
	}
	closedir(tasks);
	return result;
}

int hardening__lock_down(bool seccomp, char *error, size_t error_size)
{
	int result;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		result = -errno;
		snprintf(error, error_size, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return result;
	}
	capng_clear(CAPNG_SELECT_BOTH);
	if (capng_apply(CAPNG_SELECT_BOTH) != 0) {
		/* Without CAP_SETPCAP the bounding set stays as it is; with
		 * no_new_privs and no execve allowed nothing can raise it. */
		capng_clear(CAPNG_SELECT_CAPS);
		if (capng_apply(CAPNG_SELECT_CAPS) != 0) {
			snprintf(error, error_size, "capabilities: cannot drop them");
			return -EPERM;
		}
	}
	result = hardening__check_no_capabilities(error, error_size);
	if (result != 0 || !seccomp)
		return result;
	result = hardening__install_seccomp();
	if (result != 0) {
		snprintf(error, error_size, "seccomp filter not installed: %s",
			 strerror(result < 0 ? -result : result));
		return result < 0 ? result : -result;
	}
	return 0;
}
