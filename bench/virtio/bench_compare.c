/* bench_compare: virtio-blk under warren-vmm vs QEMU microvm, driven by
 * the same freestanding guest (tests/virtio/guests/virtio_blk_bench_guest.c,
 * CPL3, polling, no interrupts) on the same 64 MiB image in the page
 * cache. The guest times each case with rdtsc; this program converts with
 * the host TSC rate (KVM guests read the host TSC) and prints IOPS and the
 * warren/QEMU ratio: medians of ROUNDS (default 3) alternating runs.
 *
 * Usage: bench_compare [build dir]   (default $WARREN_BUILD_DIR or ./build)
 * Env: QEMU (default qemu-system-x86_64), ROUNDS. Needs /dev/kvm; the net
 * cases need root (a network namespace of its own with the tap). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm_test_support.h"

#include "../samples.h"

extern char **environ;

#define CASES 6
static const char *case_names[CASES] = {"randread qd 1",	 "randread qd 8",
					"randread qd 32",	 "seqwrite-flush64 qd 1",
					"net tx 60-byte frames", "net rx 60-byte frames"};

struct figures {
	bool ok;
	double iops[CASES];
	double io_cpu_s; /* CPU time of every thread but the vCPU's, whole run */
	double requests; /* operations of the run's cases */
};

/* Net: the flood of frames into the tap once the guest asks for it. */
struct net_driver {
	int packet_fd;
	unsigned ifindex;
	bool go_seen, flooding;
	uint64_t flooded;
};

/* BENCH_IO_POLL_US=N: warren's io_poll_us and, for the block runs, a QEMU
 * iothread with poll-max-ns N*1000 (QEMU's polling lives in iothreads). */
static unsigned io_poll_us;

/* Placement, the same for both VMMs (BENCH_PIN=0 turns it off): the vCPU
 * thread alone on the last CPU; with BENCH_PIN=all everything else (I/O
 * threads, QEMU's thread pool, io_uring workers, this driver and its
 * flood) on CPU 0. Without it a 2-CPU machine decides by scheduler luck
 * which of three busy threads shares a CPU with the spinning vCPU. */
static bool pinning, pin_others;
static int pin_vcpu_cpu;

static void pin_task(pid_t tid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(tid, sizeof(set), &set);
}

/* Calls visit(tid, vcpu, ctx) for every thread of pid; vcpu: a vCPU thread
 * (warren's "vcpu<N>", QEMU's "CPU <N>/KVM"). false when pid is gone. */
static bool for_each_thread(pid_t pid, void (*visit)(pid_t tid, bool vcpu, void *ctx), void *ctx)
{
	char path[64], comm[64];
	struct dirent *entry;
	DIR *tasks;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	tasks = opendir(path);
	if (!tasks)
		return false;
	while ((entry = readdir(tasks)) != NULL) {
		pid_t tid = (pid_t)atoi(entry->d_name);
		FILE *file;

		if (tid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, (int)tid);
		file = fopen(path, "r");
		comm[0] = 0;
		if (file) {
			if (!fgets(comm, sizeof(comm), file))
				comm[0] = 0;
			fclose(file);
		}
		visit(tid, strncmp(comm, "vcpu", 4) == 0 || strncmp(comm, "CPU ", 4) == 0, ctx);
	}
	closedir(tasks);
	return true;
}

static void pin_thread(pid_t tid, bool vcpu, void *ctx)
{
	bool *found = ctx;

	if (vcpu) {
		pin_task(tid, pin_vcpu_cpu);
		*found = true;
	} else if (pin_others) {
		pin_task(tid, 0);
	}
}

/* true once a vCPU thread was found and pinned (or pinning is off). */
static bool pin_process(pid_t pid)
{
	bool found = false;

	if (!pinning)
		return true;
	for_each_thread(pid, pin_thread, &found);
	return found;
}

/* utime + stime in seconds from a /proc stat file, -1 when unreadable. */
static double stat_cpu_s(const char *path)
{
	unsigned long long user, system;
	char line[1024];
	const char *fields;
	FILE *file = fopen(path, "r");

	if (!file)
		return -1;
	fields = fgets(line, sizeof(line), file) ? strrchr(line, ')') : NULL;
	fclose(file);
	if (!fields || sscanf(fields + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			      &user, &system) != 2)
		return -1;
	return (double)(user + system) / (double)sysconf(_SC_CLK_TCK);
}

struct io_cpu {
	pid_t pid;
	double seconds;
};

static void subtract_vcpu(pid_t tid, bool vcpu, void *ctx)
{
	struct io_cpu *cpu = ctx;
	char path[64];
	double seconds;

	if (!vcpu)
		return;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)cpu->pid, (int)tid);
	seconds = stat_cpu_s(path);
	if (seconds > 0)
		cpu->seconds -= seconds;
}

/* CPU seconds of process pid (threads that exited included) minus its
 * vCPU threads' (which spin in these polling guests): the VMM's I/O cost.
 * Clock-tick resolution (10 ms). -1 when pid is gone. */
static double io_thread_cpu_s(pid_t pid)
{
	struct io_cpu cpu = {pid, 0};
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	cpu.seconds = stat_cpu_s(path);
	if (cpu.seconds < 0 || !for_each_thread(pid, subtract_vcpu, &cpu))
		return -1;
	return cpu.seconds;
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
	vmm_test__sleep_ms(300);
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
					out->requests += (double)ops;
					found++;
				}
		}
		if (sscanf(line, "bench %31s frames %llu cycles %llu", name, &ops, &cycles) == 3 &&
		    cycles > 0) {
			int index = strcmp(name, "tx") == 0 ? 4 : strcmp(name, "rx") == 0 ? 5 : -1;

			if (index >= 0) {
				out->iops[index] = (double)ops * hz / (double)cycles;
				out->requests += (double)ops;
				found++;
			}
		}
		line += 6;
	}
	out->ok = found >= 1 && strstr(console, "bench done") != NULL;
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

static void net_prepare(struct net_driver *net)
{
	struct sockaddr_ll address = {0};
	struct ifreq request;
	int fd;

	net->packet_fd = -1;
	for (int i = 0; i < 500 && !(net->ifindex = if_nametoindex("wbtap0")); i++)
		vmm_test__sleep_ms(10);
	if (!net->ifindex)
		return;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&request, 0, sizeof(request));
	snprintf(request.ifr_name, sizeof(request.ifr_name), "wbtap0");
	if (ioctl(fd, SIOCGIFFLAGS, &request) == 0) {
		request.ifr_flags |= IFF_UP;
		ioctl(fd, SIOCSIFFLAGS, &request);
	}
	close(fd);
	/* Bound to the guest's marker ethertype only: its 200,000 data frames
	 * (0x88b5) reach no socket here, the tap is the measured path, the
	 * same for both VMMs. Frames we send carry their own ethertype. */
	net->packet_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(0x88b6));
	address.sll_family = AF_PACKET;
	address.sll_protocol = htons(0x88b6);
	address.sll_ifindex = (int)net->ifindex;
	bind(net->packet_fd, (struct sockaddr *)&address, sizeof(address));
}

/* One step: read what the guest sent; send "go" until the guest answers,
 * a burst of 64 frames once it asked for the flood. */
static void net_step(struct net_driver *net)
{
	static uint8_t frame[60], received[2048];
	struct sockaddr_ll address = {0};
	struct mmsghdr messages[64];
	struct iovec iov = {frame, sizeof(frame)};
	ssize_t got;

	if (net->packet_fd < 0)
		return;
	while ((got = recv(net->packet_fd, received, sizeof(received), 0)) > 0) {
		net->go_seen = true;
		if (got >= 19 && memcmp(received + 14, "rx-go", 5) == 0)
			net->flooding = true;
	}
	memset(frame, 0xff, 6);
	memcpy(frame + 6, "\x02\x00\x00\x00\x00\xfe", 6);
	frame[12] = 0x88;
	frame[13] = 0xb5;
	memcpy(frame + 14, "host", 4);
	address.sll_family = AF_PACKET;
	address.sll_ifindex = (int)net->ifindex;
	address.sll_halen = 6;
	memset(address.sll_addr, 0xff, 6);
	if (!net->flooding) {
		if (!net->go_seen)
			sendto(net->packet_fd, frame, sizeof(frame), 0, (struct sockaddr *)&address,
			       sizeof(address));
		vmm_test__sleep_ms(net->go_seen ? 1 : 10);
		return;
	}
	for (int i = 0; i < 64; i++) {
		memset(&messages[i], 0, sizeof(messages[i]));
		messages[i].msg_hdr.msg_name = &address;
		messages[i].msg_hdr.msg_namelen = sizeof(address);
		messages[i].msg_hdr.msg_iov = &iov;
		messages[i].msg_hdr.msg_iovlen = 1;
	}
	got = sendmmsg(net->packet_fd, messages, 64, 0);
	if (got > 0)
		net->flooded += (uint64_t)got;
}

static void run_warren(const char *build, const char *guest, const char *device, double hz,
		       struct figures *out, struct net_driver *net)
{
	static struct vmm_session session = {.client.fd = -1}; /* large: not on the stack */
	char vmm[4096], line[10240];
	const char *argv[] = {vmm, "--api-socket", session.path, NULL};
	json_t *response;
	pid_t pid;
	int status;

	snprintf(vmm, sizeof(vmm), "%s/bin/warren-vmm", build);
	snprintf(session.path, sizeof(session.path), "/tmp/warren-bench-compare-%d.sock", getpid());
	if (posix_spawn(&pid, vmm, NULL, NULL, (char *const *)argv, environ) != 0)
		return;
	if (vmm_test__session_connect(&session, session.path, 300) < 0)
		goto out;
	snprintf(line, sizeof(line),
		 "{\"op\":\"configure\",\"config\":{\"kernel\":\"%s\",\"memory_mib\":64,"
		 "\"vcpus\":1,\"cpu_profile\":\"baseline\",\"io_poll_us\":%u,\"devices\":[%s]}}",
		 guest, io_poll_us, device);
	json_decref(vmm_test__request(&session, line));
	json_decref(vmm_test__request(&session, "{\"op\":\"start\"}"));
	pin_process(pid);
	if (net)
		net_prepare(net);
	for (uint64_t deadline = now_ns() + 120000000000ull; now_ns() < deadline;) {
		const char *state;

		if (net) {
			/* Flood like the QEMU run does: without waiting on the
			 * control socket more than once per 20 ms. */
			for (uint64_t until = now_ns() + 20000000ull; now_ns() < until;)
				net_step(net);
			if (!net->flooding)
				continue;
		}

		response = vmm_test__request(&session, "{\"op\":\"state\"}");
		state = response ? json_string_value(json_object_get(response, "state")) : NULL;
		if (!state || strcmp(state, "stopped") == 0) {
			json_decref(response);
			break;
		}
		json_decref(response);
		if (!net)
			vmm_test__sleep_ms(10);
	}
	out->io_cpu_s = io_thread_cpu_s(pid);
	response = vmm_test__request(&session, "{\"op\":\"console\",\"bytes\":8000}");
	if (response && json_string_value(json_object_get(response, "data")))
		parse_console(json_string_value(json_object_get(response, "data")), hz, out);
	if (!out->ok && response)
		fprintf(stderr, "warren console:\n%s\n",
			json_string_value(json_object_get(response, "data")));
	json_decref(response);
	json_decref(vmm_test__request(&session, "{\"op\":\"exit\"}"));
out:
	vmm_client__close(&session.client);
	for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
		vmm_test__sleep_ms(10);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	unlink(session.path);
}

static void run_qemu(const char *guest, const char *image, double hz, struct figures *out,
		     struct net_driver *net)
{
	const char *qemu = getenv("QEMU") ? getenv("QEMU") : "qemu-system-x86_64";
	char serial[128], serial_arg[160], drive[512];
	char iothread[96];
	const char *argv[] = {
	    qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-enable-kvm", "-m", "64",
	    "-nodefaults", "-no-user-config", "-display", "none", "-serial", serial_arg, "-kernel",
	    guest, "-device", "isa-debug-exit,iobase=0x501,iosize=1", "-global",
	    "virtio-mmio.force-legacy=false", net ? "-netdev" : "-drive",
	    net ? "tap,id=n0,ifname=wbtap0,script=no,downscript=no,vhost=off" : drive, "-device",
	    net		 ? "virtio-net-device,netdev=n0,mac=02:00:00:00:00:02"
	    : io_poll_us ? "virtio-blk-device,drive=d,iothread=io0"
			 : "virtio-blk-device,drive=d",
	    /* polling runs: QEMU's own adaptive polling lives in iothreads */
	    io_poll_us && !net ? "-object" : NULL, iothread, NULL};
	char *console;
	pid_t pid;
	int status;

	snprintf(iothread, sizeof(iothread), "iothread,id=io0,poll-max-ns=%u", io_poll_us * 1000u);
	snprintf(serial, sizeof(serial), "/tmp/warren-bench-qemu-%d.log", getpid());
	snprintf(serial_arg, sizeof(serial_arg), "file:%s", serial);
	snprintf(drive, sizeof(drive),
		 "id=d,file=%s,format=raw,if=none,cache=writeback,aio=threads", image ? image : "");
	if (posix_spawnp(&pid, qemu, NULL, NULL, (char *const *)argv, environ) != 0) {
		fprintf(stderr, "cannot run %s\n", qemu);
		return;
	}
	for (int i = 0; i < 200 && !pin_process(pid); i++)
		vmm_test__sleep_ms(5);
	if (net)
		net_prepare(net);
	for (int i = 0; i < 120000 && waitpid(pid, &status, WNOHANG) == 0; i++) {
		double cpu = io_thread_cpu_s(pid); /* the last sample before QEMU exits */

		if (cpu >= 0)
			out->io_cpu_s = cpu;
		if (!net)
			vmm_test__sleep_ms(10);
		else
			net_step(net);
	}
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

/* Per-round figures of both VMMs ([0] warren, [1] QEMU), up to 16 rounds. */
struct bench_samples {
	double iops[2][CASES][16];
	double cpu_per_request[2][16];
	double cpu_per_frame[2][16];
};

/* Fills the file made from the mkstemp template image with 64 MiB (each
 * MiB a different byte) and flushes it. False on any error (the file may
 * be left behind, as before). */
static bool bench__make_image(char *image)
{
	static uint8_t chunk[1 << 20];
	int fd = mkstemp(image);

	if (fd < 0)
		return false;
	for (int i = 0; i < 64; i++) {
		memset(chunk, i, sizeof(chunk));
		if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
			return false;
	}
	fsync(fd); /* neither VMM's first flush should pay for the image's creation */
	close(fd);
	return true;
}

/* Moves this process into a network namespace of its own (IPv6 off in it)
 * when it can and net_guest is readable; true when the net cases can run,
 * otherwise prints why they are skipped. */
static bool bench__prepare_net(const char *net_guest)
{
	bool have_net = unshare(CLONE_NEWNET) == 0 && access(net_guest, R_OK) == 0;

	if (have_net) { /* a tap in a namespace of our own (no route out) */
		FILE *sysctl = fopen("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w");

		if (sysctl) {
			fputs("1", sysctl);
			fclose(sysctl);
		}
	} else {
		printf("net cases skipped: needs root (a network namespace) and %s\n", net_guest);
	}
	return have_net;
}

/* Runs one round (block, then net when have_net) on warren and, unless
 * only_warren, on QEMU; stores the figures at index round of samples.
 * Returns false when a VMM's block run did not complete. */
static bool bench__run_round(const char *build, const char *guest, const char *image,
			     const char *device, const char *net_guest, bool have_net,
			     bool only_warren, double hz, int round, struct bench_samples *samples)
{
	struct figures warren = {0}, qemu = {0}, warren_net = {0}, qemu_net = {0};

	/* Alternate which VMM goes first: the second one's writes land on
	 * pages the first one just wrote and flushed. */
	if (round % 2 == 1 && !only_warren)
		run_qemu(guest, image, hz, &qemu, NULL);
	run_warren(build, guest, device, hz, &warren, NULL);
	if (round % 2 == 0 && !only_warren)
		run_qemu(guest, image, hz, &qemu, NULL);
	if (have_net) {
		struct net_driver net = {0};

		run_warren(build, net_guest,
			   "{\"type\":\"net\",\"tap\":\"wbtap0\",\"mac\":\"02:00:00:00:00:02\"}",
			   hz, &warren_net, &net);
		if (net.packet_fd >= 0)
			close(net.packet_fd);
		memset(&net, 0, sizeof(net));
		vmm_test__sleep_ms(200); /* the tap goes away with warren-vmm */
		if (!only_warren)
			run_qemu(net_guest, NULL, hz, &qemu_net, &net);
		if (net.packet_fd >= 0)
			close(net.packet_fd);
	}
	for (int i = 0; i < CASES; i++) {
		const struct figures *ours = i < 4 ? &warren : &warren_net;
		const struct figures *theirs = i < 4 ? &qemu : &qemu_net;

		samples->iops[0][i][round] = ours->ok ? ours->iops[i] : 0;
		samples->iops[1][i][round] = theirs->ok ? theirs->iops[i] : 0;
	}
	samples->cpu_per_request[0][round] =
	    warren.requests ? warren.io_cpu_s / warren.requests : 0;
	samples->cpu_per_request[1][round] = qemu.requests ? qemu.io_cpu_s / qemu.requests : 0;
	samples->cpu_per_frame[0][round] =
	    warren_net.requests ? warren_net.io_cpu_s / warren_net.requests : 0;
	samples->cpu_per_frame[1][round] =
	    qemu_net.requests ? qemu_net.io_cpu_s / qemu_net.requests : 0;
	return warren.ok && (only_warren || qemu.ok);
}

/* Prints the set-up (TSC, polling, placement) and the median of each case
 * and of the I/O CPU per request/frame over rounds, warren against QEMU
 * (samples__median() sorts the samples in place). */
static void bench__print_report(double hz, int rounds, bool have_net, struct bench_samples *samples)
{
	printf("virtio-blk/net, same CPL3 polling guest driver, 64 MiB image in the page cache, "
	       "TSC %.0f MHz, median of %d rounds\n",
	       hz / 1e6, rounds);
	if (io_poll_us)
		printf("polling: warren io_poll_us %u; QEMU virtio-blk in an iothread with "
		       "poll-max-ns "
		       "%u (QEMU's net device has no polling)\n",
		       io_poll_us, io_poll_us * 1000u);
	else
		printf("polling: none (warren io_poll_us 0, QEMU main loop; BENCH_IO_POLL_US=N)\n");
	if (pinning)
		printf("placement: vCPU thread on CPU %d%s (BENCH_PIN=0: none, BENCH_PIN=all)\n",
		       pin_vcpu_cpu,
		       pin_others ? ", every other thread of both VMMs and the driver on CPU 0"
				  : ", the other threads where the scheduler puts them");
	printf("%-24s %12s %12s %8s\n", "case (per second)", "warren", "qemu", "ratio");
	for (int i = 0; i < CASES; i++) {
		double ours = samples__median(samples->iops[0][i], rounds);
		double theirs = samples__median(samples->iops[1][i], rounds);

		printf("%-24s %12.0f %12.0f %8.2f\n", case_names[i], ours, theirs,
		       theirs > 0 ? ours / theirs : 0);
	}
	double ours = samples__median(samples->cpu_per_request[0], rounds) * 1e6;
	double theirs = samples__median(samples->cpu_per_request[1], rounds) * 1e6;

	printf("%-24s %10.2fus %10.2fus %8.2f\n", "blk CPU/request (I/O)", ours, theirs,
	       theirs > 0 ? ours / theirs : 0);
	if (have_net) {
		ours = samples__median(samples->cpu_per_frame[0], rounds) * 1e6;
		theirs = samples__median(samples->cpu_per_frame[1], rounds) * 1e6;
		printf("%-24s %10.2fus %10.2fus %8.2f\n", "net CPU/frame (I/O)", ours, theirs,
		       theirs > 0 ? ours / theirs : 0);
	}
	printf("(CPU of every VMM thread but the vCPU's over the whole block or net run, per "
	       "request or frame; 10 ms tick resolution)\n");
}

int main(int argc, char **argv)
{
	const char *build = argc > 1			 ? argv[1]
			    : getenv("WARREN_BUILD_DIR") ? getenv("WARREN_BUILD_DIR")
							 : "build";
	char guest[4096], image[] = "/tmp/warren-bench-compare-XXXXXX";
	int rounds = getenv("ROUNDS") ? atoi(getenv("ROUNDS")) : 3;
	static struct bench_samples samples;
	char device[512], net_guest[4096];
	bool have_net, all_ok = true;
	/* BENCH_ONLY=warren: no QEMU runs (for profiling warren alone). */
	bool only_warren = getenv("BENCH_ONLY") && strcmp(getenv("BENCH_ONLY"), "warren") == 0;
	double hz;

	if (rounds < 1 || rounds > 16)
		rounds = 3;
	io_poll_us = getenv("BENCH_IO_POLL_US") ? (unsigned)atoi(getenv("BENCH_IO_POLL_US")) : 0;
	pin_vcpu_cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
	pinning =
	    pin_vcpu_cpu >= 1 && !(getenv("BENCH_PIN") && strcmp(getenv("BENCH_PIN"), "0") == 0);
	pin_others = pinning && getenv("BENCH_PIN") && strcmp(getenv("BENCH_PIN"), "all") == 0;
	if (pin_others)
		pin_task(0, 0);

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
	if (!bench__make_image(image))
		return 1;
	hz = tsc_hz();
	snprintf(device, sizeof(device), "{\"type\":\"block\",\"path\":\"%s\"}", image);
	snprintf(net_guest, sizeof(net_guest), "%s/guests/virtio_net_bench_guest.elf", build);
	have_net = bench__prepare_net(net_guest);
	/* Rounds alternate the two VMMs; the medians are printed. */
	for (int round = 0; round < rounds; round++) {
		bool ok = bench__run_round(build, guest, image, device, net_guest, have_net,
					   only_warren, hz, round, &samples);

		all_ok = all_ok && ok;
	}
	unlink(image);
	bench__print_report(hz, rounds, have_net, &samples);
	return all_ok ? 0 : 1;
}
