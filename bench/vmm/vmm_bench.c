/* vmm_bench: warren-vmm vs QEMU microvm on the same host and payload.
 *
 * 1. Boot: process start -> first guest instruction. The test guests'
 *    first instructions write the boot-marker port and one byte ('>') to
 *    COM1; we time spawn -> that first serial byte on the VMM's stdout for
 *    both VMMs (QEMU boots the same ELF through its PVH note), and also
 *    report warren-vmm's own boot marker (ns since its process start).
 * 2. Memory overhead: the idle guest prints and halts; then VmRSS minus
 *    RssShmem (guest RAM is a memfd in both: QEMU gets
 *    memory-backend-memfd) of the VMM process.
 *
 * Usage: vmm_bench [runs, default 7]   (median of the runs is reported)
 * Env: WARREN_VMM (binary), WARREN_GUESTS (folder with hello.elf, idle.elf),
 *      QEMU (default qemu-system-x86_64). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef WARREN_BUILD_DIR
#define WARREN_BUILD_DIR "build"
#endif

struct result {
	double first_byte_ms; /* spawn -> first serial byte */
	double marker_ms;     /* warren-vmm's boot marker, or -1 */
	int ok;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int compare(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *values, int count)
{
	qsort(values, (size_t)count, sizeof(double), compare);
	return count ? values[count / 2] : -1;
}

/* Spawns argv with stdout and stderr on pipes. */
static pid_t spawn(const char *const *argv, int *out_fd, int *err_fd)
{
	int out[2], err[2];
	posix_spawn_file_actions_t actions;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return -1;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
	posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (posix_spawnp(&pid, argv[0], &actions, NULL, (char *const *)argv, environ) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&actions);
	close(out[1]);
	close(err[1]);
	*out_fd = out[0];
	*err_fd = err[0];
	return pid;
}

/* Reads fd until `needle` shows up (or EOF / timeout); returns ms at the
 * first byte in *first_ms. */
static int wait_for(int fd, const char *needle, double start, double *first_ms, char *text,
		    size_t size)
{
	size_t length = 0;

	*first_ms = -1;
	text[0] = 0;
	while (length + 1 < size) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t got;

		if (poll(&pfd, 1, 10000) <= 0)
			return -1;
		got = read(fd, text + length, size - length - 1);
		if (got <= 0)
			return -1;
		if (*first_ms < 0)
			*first_ms = now_ms() - start;
		length += (size_t)got;
		text[length] = 0;
		if (needle == NULL || strstr(text, needle))
			return 0;
	}
	return -1;
}

static void drain(int fd, char *text, size_t size)
{
	size_t length = strlen(text);
	ssize_t got;

	while (length + 1 < size && (got = read(fd, text + length, size - length - 1)) > 0)
		length += (size_t)got;
	text[length] = 0;
}

static struct result run_boot(const char *const *argv, int is_warren)
{
	struct result result = {-1, -1, 0};
	char out[4096], err[8192] = "";
	double start = now_ms();
	int out_fd, err_fd, status;
	pid_t pid = spawn(argv, &out_fd, &err_fd);
	const char *marker;

	if (pid < 0)
		return result;
	if (wait_for(out_fd, "hello from warren guest", start, &result.first_byte_ms, out,
		     sizeof(out)) == 0)
		result.ok = 1;
	drain(err_fd, err, sizeof(err));
	waitpid(pid, &status, 0);
	close(out_fd);
	close(err_fd);
	marker = strstr(err, "boot marker 0");
	if (is_warren && marker) {
		const char *colon = strstr(marker, "): ");

		if (colon)
			result.marker_ms = strtod(colon + 3, NULL) / 1e6;
	}
	return result;
}

struct memory_figures {
	long rss_kib, shmem_kib, anon_kib, file_kib;
};

static int read_memory(pid_t pid, struct memory_figures *figures)
{
	char path[64], line[256];
	FILE *file;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	file = fopen(path, "r");
	if (file == NULL)
		return -1;
	memset(figures, 0, sizeof(*figures));
	while (fgets(line, sizeof(line), file)) {
		sscanf(line, "VmRSS: %ld", &figures->rss_kib);
		sscanf(line, "RssShmem: %ld", &figures->shmem_kib);
		sscanf(line, "RssAnon: %ld", &figures->anon_kib);
		sscanf(line, "RssFile: %ld", &figures->file_kib);
	}
	fclose(file);
	return 0;
}

static int run_memory(const char *const *argv, struct memory_figures *figures)
{
	char out[4096], err[8192] = "";
	double first;
	int out_fd, err_fd, status, result = -1;
	pid_t pid = spawn(argv, &out_fd, &err_fd);
	struct timespec settle = {0, 300 * 1000000L};

	if (pid < 0)
		return -1;
	if (wait_for(out_fd, "idle guest up", now_ms(), &first, out, sizeof(out)) == 0) {
		nanosleep(&settle, NULL);
		result = read_memory(pid, figures);
	}
	kill(pid, SIGTERM);
	drain(err_fd, err, sizeof(err));
	waitpid(pid, &status, 0);
	close(out_fd);
	close(err_fd);
	return result;
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 7;
	const char *vmm =
	    getenv("WARREN_VMM") ? getenv("WARREN_VMM") : WARREN_BUILD_DIR "/bin/warren-vmm";
	const char *guests =
	    getenv("WARREN_GUESTS") ? getenv("WARREN_GUESTS") : WARREN_BUILD_DIR "/guests";
	const char *qemu = getenv("QEMU") ? getenv("QEMU") : "qemu-system-x86_64";
	char hello[4096], idle[4096];
	double ours[64], theirs[64], markers[64];
	int ours_count = 0, theirs_count = 0, marker_count = 0;
	struct memory_figures our_memory, qemu_memory;

	if (runs < 1 || runs > 64)
		runs = 7;
	snprintf(hello, sizeof(hello), "%s/hello.elf", guests);
	snprintf(idle, sizeof(idle), "%s/idle.elf", guests);
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("SKIP: /dev/kvm not available\n");
		return 77;
	}
	{
		const char *warren_boot[] = {vmm,	  "--kernel", hello,	   "--memory", "64",
					     "--console", "-",	      "--verbose", NULL};
		const char *qemu_boot[] = {qemu,
					   "-M",
					   "microvm,x-option-roms=off,rtc=off",
					   "-enable-kvm",
					   "-m",
					   "64",
					   "-nodefaults",
					   "-no-user-config",
					   "-nographic",
					   "-serial",
					   "stdio",
					   "-kernel",
					   hello,
					   "-device",
					   "isa-debug-exit,iobase=0x501,iosize=1",
					   NULL};

		for (int i = 0; i < runs; i++) {
			struct result a = run_boot(warren_boot, 1);
			struct result b = run_boot(qemu_boot, 0);

			if (a.ok)
				ours[ours_count++] = a.first_byte_ms;
			if (a.marker_ms >= 0)
				markers[marker_count++] = a.marker_ms;
			if (b.ok)
				theirs[theirs_count++] = b.first_byte_ms;
		}
	}
	printf("boot, process spawn -> first guest serial byte (median of %d, hello.elf):\n", runs);
	printf("  warren-vmm %8.2f ms  (%d ok)\n", median(ours, ours_count), ours_count);
	printf("  qemu       %8.2f ms  (%d ok; -M microvm, PVH entry of the same ELF)\n",
	       median(theirs, theirs_count), theirs_count);
	if (ours_count && theirs_count)
		printf("  ratio warren/qemu %.3f\n",
		       median(ours, ours_count) / median(theirs, theirs_count));
	printf("  warren-vmm boot marker (first guest instruction, since its process start): %.2f "
	       "ms\n",
	       median(markers, marker_count));

	{
		const char *warren_idle[] = {vmm,  "--kernel",	idle, "--memory",
					     "64", "--console", "-",  NULL};
		const char *qemu_idle[] = {qemu,
					   "-M",
					   "microvm,x-option-roms=off,rtc=off,memory-backend=ram",
					   "-object",
					   "memory-backend-memfd,id=ram,size=64M",
					   "-enable-kvm",
					   "-m",
					   "64",
					   "-nodefaults",
					   "-no-user-config",
					   "-nographic",
					   "-serial",
					   "stdio",
					   "-kernel",
					   idle,
					   NULL};
		int a = run_memory(warren_idle, &our_memory);
		int b = run_memory(qemu_idle, &qemu_memory);

		printf("memory overhead, VmRSS - RssShmem (guest RAM), idle.elf with 64 MiB:\n");
		if (a == 0)
			printf("  warren-vmm %7.2f MiB  (rss %ld KiB: anon %ld, file %ld, guest "
			       "%ld)\n",
			       (our_memory.rss_kib - our_memory.shmem_kib) / 1024.0,
			       our_memory.rss_kib, our_memory.anon_kib, our_memory.file_kib,
			       our_memory.shmem_kib);
		if (b == 0)
			printf("  qemu       %7.2f MiB  (rss %ld KiB: anon %ld, file %ld, guest "
			       "%ld)\n",
			       (qemu_memory.rss_kib - qemu_memory.shmem_kib) / 1024.0,
			       qemu_memory.rss_kib, qemu_memory.anon_kib, qemu_memory.file_kib,
			       qemu_memory.shmem_kib);
		if (a == 0 && b == 0)
			printf("  ratio warren/qemu %.3f\n",
			       (double)(our_memory.rss_kib - our_memory.shmem_kib) /
				   (double)(qemu_memory.rss_kib - qemu_memory.shmem_kib));
	}
	return 0;
}
