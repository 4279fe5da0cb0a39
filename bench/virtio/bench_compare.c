/* bench_compare: virtio-blk under warren-vmm vs QEMU microvm, driven by
 * the same freestanding guest (tests/virtio/guests/virtio_blk_bench_guest.c,
 * CPL3, polling, no interrupts) on the same 64 MiB image in the page
 * cache. The guest times each case with rdtsc; this program converts with
 * the host TSC rate (KVM guests read the host TSC) and prints IOPS and the
 * warren/QEMU ratio from one run of each.
 *
 * Usage: bench_compare [build dir]   (default $WARREN_BUILD_DIR or ./build)
 * Env: QEMU (default qemu-system-x86_64). Needs /dev/kvm. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CASES 4
static const char *case_names[CASES] = {"randread qd 1", "randread qd 8", "randread qd 32",
					"seqwrite-flush64 qd 1"};

struct figures {
	bool ok;
	double iops[CASES];
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double tsc_hz(void)
{
	uint32_t low, high;
	uint64_t start_tsc, end_tsc, start = now_ns();

	__asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
	start_tsc = ((uint64_t)high << 32) | low;
	sleep_ms(300);
	__asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
	end_tsc = ((uint64_t)high << 32) | low;
	return (double)(end_tsc - start_tsc) * 1e9 / (double)(now_ns() - start);
}

/* Parses "bench <name> qd <n> ops <count> cycles <delta>" lines. */
static void parse_console(const char *console, double hz, struct figures *out)
{
	const char *line = console;
	int found = 0;

	while ((line = strstr(line, "bench ")) != NULL) {
		char name[32];
		unsigned depth;
		unsigned long long ops, cycles;
		char label[64];

		if (sscanf(line, "bench %31s qd %u ops %llu cycles %llu", name, &depth, &ops,
			   &cycles) == 4 &&
		    cycles > 0) {
			snprintf(label, sizeof(label), "%s qd %u", name, depth);
			for (int i = 0; i < CASES; i++)
				if (strcmp(label, case_names[i]) == 0) {
					out->iops[i] = (double)ops * hz / (double)cycles;
					found++;
				}
		}
		line += 6;
	}
	out->ok = found == CASES && strstr(console, "bench done") != NULL;
}

static char *read_file(const char *path)
{
	FILE *file = fopen(path, "r");
	char *text = calloc(1, 65536);

	if (file && text)
		fread(text, 1, 65535, file);
	if (file)
		fclose(file);
	return text;
}

static json_t *request(int fd, const char *line)
{
	static char buffer[262144];
	static size_t length;
	char *newline;
	json_t *response;

	if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0)
		return NULL;
	while ((newline = memchr(buffer, '\n', length)) == NULL) {
		ssize_t got = recv(fd, buffer + length, sizeof(buffer) - length, 0);

		if (got <= 0)
			return NULL;
		length += (size_t)got;
	}
	response = json_loadb(buffer, (size_t)(newline - buffer), 0, NULL);
	length -= (size_t)(newline - buffer) + 1;
	memmove(buffer, newline + 1, length);
	return response;
}

static void run_warren(const char *build, const char *guest, const char *image, double hz,
		       struct figures *out)
{
	char vmm[4096], socket_path[108], line[10240];
	const char *argv[] = {vmm, "--api-socket", socket_path, NULL};
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	json_t *response;
	pid_t pid;
	int fd = -1, status;

	snprintf(vmm, sizeof(vmm), "%s/bin/warren-vmm", build);
	snprintf(socket_path, sizeof(socket_path), "/tmp/warren-bench-compare-%d.sock", getpid());
	if (posix_spawn(&pid, vmm, NULL, NULL, (char *const *)argv, environ) != 0)
		return;
	memcpy(address.sun_path, socket_path, strlen(socket_path) + 1);
	for (int i = 0; i < 300; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0)
			break;
		close(fd);
		fd = -1;
		sleep_ms(10);
	}
	if (fd < 0)
		goto out;
	snprintf(line, sizeof(line),
		 "{\"op\":\"configure\",\"config\":{\"kernel\":\"%s\",\"memory_mib\":64,"
		 "\"vcpus\":1,\"cpu_profile\":\"baseline\",\"devices\":[{\"type\":\"block\","
		 "\"path\":\"%s\"}]}}",
		 guest, image);
	json_decref(request(fd, line));
	json_decref(request(fd, "{\"op\":\"start\"}"));
	for (int i = 0; i < 12000; i++) { /* 120 s */
		const char *state;

		response = request(fd, "{\"op\":\"state\"}");
		state = response ? json_string_value(json_object_get(response, "state")) : NULL;
		if (!state || strcmp(state, "stopped") == 0) {
			json_decref(response);
			break;
		}
		json_decref(response);
		sleep_ms(10);
	}
	response = request(fd, "{\"op\":\"console\",\"bytes\":8000}");
	if (response && json_string_value(json_object_get(response, "data")))
		parse_console(json_string_value(json_object_get(response, "data")), hz, out);
	if (!out->ok && response)
		fprintf(stderr, "warren console:\n%s\n",
			json_string_value(json_object_get(response, "data")));
	json_decref(response);
	json_decref(request(fd, "{\"op\":\"exit\"}"));
out:
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
		sleep_ms(10);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	unlink(socket_path);
}

static void run_qemu(const char *guest, const char *image, double hz, struct figures *out)
{
	const char *qemu = getenv("QEMU") ? getenv("QEMU") : "qemu-system-x86_64";
	char serial[128], serial_arg[160], drive[512];
	const char *argv[] = {qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-enable-kvm", "-m",
			      "64", "-nodefaults", "-no-user-config", "-display", "none", "-serial",
			      serial_arg, "-kernel", guest, "-device",
			      "isa-debug-exit,iobase=0x501,iosize=1", "-global",
			      "virtio-mmio.force-legacy=false", "-drive", drive, "-device",
			      "virtio-blk-device,drive=d", NULL};
	char *console;
	pid_t pid;
	int status;

	snprintf(serial, sizeof(serial), "/tmp/warren-bench-qemu-%d.log", getpid());
	snprintf(serial_arg, sizeof(serial_arg), "file:%s", serial);
	snprintf(drive, sizeof(drive), "id=d,file=%s,format=raw,if=none,cache=writeback,aio=threads",
		 image);
	if (posix_spawnp(&pid, qemu, NULL, NULL, (char *const *)argv, environ) != 0) {
		fprintf(stderr, "cannot run %s\n", qemu);
		return;
	}
	for (int i = 0; i < 12000 && waitpid(pid, &status, WNOHANG) == 0; i++)
		sleep_ms(10);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	console = read_file(serial);
	if (console)
		parse_console(console, hz, out);
	if (!out->ok)
		fprintf(stderr, "qemu console:\n%s\n", console ? console : "(none)");
	free(console);
	unlink(serial);
}

int main(int argc, char **argv)
{
	const char *build = argc > 1 ? argv[1] : getenv("WARREN_BUILD_DIR") ? getenv("WARREN_BUILD_DIR") : "build";
	char guest[4096], image[] = "/tmp/warren-bench-compare-XXXXXX";
	static uint8_t chunk[1 << 20];
	struct figures warren = {0}, qemu = {0};
	double hz;
	int fd;

	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("SKIP: /dev/kvm not available\n");
		return 77;
	}
	snprintf(guest, sizeof(guest), "%s/guests/virtio_blk_bench_guest.elf", build);
	if (access(guest, R_OK) != 0) {
		fprintf(stderr, "bench_compare: %s missing (build guest-virtio_blk_bench_guest)\n",
			guest);
		return 1;
	}
	fd = mkstemp(image);
	if (fd < 0)
		return 1;
	for (int i = 0; i < 64; i++) {
		memset(chunk, i, sizeof(chunk));
		if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
			return 1;
	}
	close(fd);
	hz = tsc_hz();
	run_warren(build, guest, image, hz, &warren);
	run_qemu(guest, image, hz, &qemu);
	unlink(image);
	printf("virtio-blk, same CPL3 polling guest driver, 64 MiB image in the page cache, TSC %.0f MHz\n",
	       hz / 1e6);
	printf("%-24s %12s %12s %8s\n", "case", "warren IOPS", "qemu IOPS", "ratio");
	for (int i = 0; i < CASES; i++)
		printf("%-24s %12.0f %12.0f %8.2f\n", case_names[i], warren.ok ? warren.iops[i] : 0,
		       qemu.ok ? qemu.iops[i] : 0,
		       warren.ok && qemu.ok && qemu.iops[i] > 0 ? warren.iops[i] / qemu.iops[i] : 0);
	return warren.ok && qemu.ok ? 0 : 1;
}
