/* Linux smoke (labels vmm-linux slow integration): the project's guest
 * kernel boots under warren-vmm, with a small initramfs, one virtio-blk
 * disk and (as root: a tap in a network namespace of the test's own) one
 * virtio-net device, to "Run /init as init process" on the console within
 * 180 s (about 55-100 s on a kvm_pvm host, where CPL0 is emulated; user
 * space itself cannot run there). Two vCPUs: the MP table path and AP
 * bring-up. Then the VMM's metrics (control socket) must show the devices
 * at DRIVER_OK, set by Linux's virtio_rng, virtio_blk and virtio_net, the
 * guest's "crng init done" (boot seed + virtio-rng), and the features
 * Linux negotiated: the disk's "[vda]" line alone shows only the block
 * driver, virtio_net prints nothing while eth0 stays down.
 * Kernel: env WARREN_GUEST_KERNEL, else guest/kernel/build.sh (cached). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "vmm_test_support.h"
#include "vmm_test_util.h"

extern char **environ;

#define BOOT_LIMIT_SECONDS 180
#define COMMAND_LINE                                                                               \
	"console=ttyS0 noxsave clearcpuid=smap,smep,popcnt i8042.noaux i8042.nokbd "               \
	"tsc=reliable reboot=k panic=-1"

static char kernel_path[4096];
static bool have_net; /* a namespace of our own for the tap */

/* Replaces *metrics with the VMM's current ones when it answers (connects
 * on first use: the socket appears once the VMM is up). */
static void refresh_metrics(struct vmm_session *session, json_t **metrics)
{
	json_t *latest;

	if (session->client.fd < 0 && vmm_test__session_connect(session, session->path, 1) < 0)
		return;
	latest = vmm_test__request(session, "{\"op\":\"metrics\"}");
	if (latest) {
		json_decref(*metrics);
		*metrics = latest;
	}
}

/* Asserts device `index` of the metrics reached DRIVER_OK; its features. */
static uint64_t assert_driver_ok(json_t *metrics, size_t index, const char *type)
{
	json_t *device = json_array_get(json_object_get(metrics, "devices"), index);
	json_t *figures = json_object_get(device, "metrics");

	assert_non_null(figures);
	assert_string_equal(json_string_value(json_object_get(figures, "type")), type);
	printf("%s: status 0x%llx, features 0x%llx\n", type,
	       (unsigned long long)json_integer_value(json_object_get(figures, "status")),
	       (unsigned long long)json_integer_value(json_object_get(figures, "features")));
	assert_true(json_is_true(json_object_get(figures, "driver_ok")));
	assert_int_equal(json_integer_value(json_object_get(figures, "needs_reset")), 0);
	return (uint64_t)json_integer_value(json_object_get(figures, "features"));
}

static bool find_kernel(void)
{
	const char *env = getenv("WARREN_GUEST_KERNEL");
	const char *source = getenv("WARREN_SOURCE_DIR");
	char command[4200];
	FILE *pipe;

	if (env && *env) {
		snprintf(kernel_path, sizeof(kernel_path), "%s", env);
		return access(kernel_path, R_OK) == 0;
	}
	snprintf(command, sizeof(command), "%s/guest/kernel/build.sh", source ? source : ".");
	printf("WARREN_GUEST_KERNEL unset: running %s (instant when cached)\n", command);
	pipe = popen(command, "r");
	if (pipe == NULL)
		return false;
	if (fgets(kernel_path, sizeof(kernel_path), pipe) == NULL)
		kernel_path[0] = 0;
	kernel_path[strcspn(kernel_path, "\n")] = 0;
	return pclose(pipe) == 0 && kernel_path[0] && access(kernel_path, R_OK) == 0;
}

/* newc cpio (Documentation/driver-api/early-userspace/buffer-format.rst). */
static void cpio_entry(FILE *out, const char *name, unsigned mode, unsigned major, unsigned minor,
		       const void *data, size_t size)
{
	static unsigned inode = 1;
	size_t name_size = strlen(name) + 1;
	static const char zeros[4];

	fprintf(out, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", inode++, mode,
		0, 0, 1, 0, size, 0, 0, major, minor, name_size, 0);
	fwrite(name, 1, name_size, out);
	fwrite(zeros, 1, (4 - (110 + name_size) % 4) % 4, out);
	if (size) {
		fwrite(data, 1, size, out);
		fwrite(zeros, 1, (4 - size % 4) % 4, out);
	}
}

static int write_initramfs(const char *path)
{
	FILE *out = fopen(path, "w");
	static const char script[] = "#!/bin/sh\necho init ran\n";
	void *init = NULL;
	size_t init_size = 0;
	FILE *busybox = fopen("/bin/busybox", "r");

	if (out == NULL)
		return -1;
	if (busybox) { /* a static busybox makes a real /init where user space can run */
		init = malloc(8u << 20);
		init_size = init ? fread(init, 1, 8u << 20, busybox) : 0;
		fclose(busybox);
	}
	cpio_entry(out, "dev", 040755, 0, 0, NULL, 0);
	cpio_entry(out, "dev/console", 020600, 5, 1, NULL, 0);
	if (init_size)
		cpio_entry(out, "init", 0100755, 0, 0, init, init_size);
	else
		cpio_entry(out, "init", 0100755, 0, 0, script, sizeof(script) - 1);
	cpio_entry(out, "TRAILER!!!", 0, 0, 0, NULL, 0);
	free(init);
	return fclose(out);
}

/* A running VMM being watched: its pid (-1 once reaped), the time it was
 * started and the seconds elapsed since, the console's text so far. */
struct boot_watch {
	pid_t pid;
	int status;
	struct timespec start;
	double elapsed;
	const char *console;
	char *text;
	size_t text_size;
};

/* Creates the three temporary files (initramfs written, empty console, a
 * 1 MiB disk) from their mkstemp templates and writes the block device's
 * JSON for disk into device. */
static void linux__make_files(char *initrd, char *console, char *disk, char *device,
			      size_t device_size)
{
	int fd = mkstemp(initrd);

	assert_true(fd >= 0);
	close(fd);
	fd = mkstemp(console);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(write_initramfs(initrd), 0);
	fd = mkstemp(disk);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(device, device_size, "{\"type\":\"block\",\"path\":\"%s\"}", disk);
}

/* Reads the console file into watch->text (NUL-terminated; empty when the
 * file cannot be opened). */
static void linux__read_console(struct boot_watch *watch)
{
	FILE *file = fopen(watch->console, "r");
	size_t got = 0;

	if (file) {
		got = fread(watch->text, 1, watch->text_size - 1, file);
		fclose(file);
	}
	watch->text[got] = 0;
}

/* Sets watch->elapsed to the seconds since watch->start. */
static void linux__update_elapsed(struct boot_watch *watch)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	watch->elapsed =
	    (double)(now.tv_sec - watch->start.tv_sec) + (now.tv_nsec - watch->start.tv_nsec) / 1e9;
}

/* True when the VMM has exited (then reaped: watch->pid becomes -1). */
static bool linux__vmm_exited(struct boot_watch *watch)
{
	if (waitpid(watch->pid, &watch->status, WNOHANG) == watch->pid) {
		watch->pid = -1;
		return true;
	}
	return false;
}

/* Polls the console once a second, refreshing *metrics each time, until
 * the kernel runs /init (true), the VMM exits or the boot limit passes. */
static bool linux__wait_for_init(struct boot_watch *watch, struct vmm_session *session,
				 json_t **metrics)
{
	while (watch->elapsed < BOOT_LIMIT_SECONDS) {
		sleep(1);
		linux__update_elapsed(watch);
		linux__read_console(watch);
		/* Metrics as we go: past "Run /init" the guest may reset (no
		 * user space on some hosts) and the VMM exit before we ask. */
		refresh_metrics(session, metrics);
		if (strstr(watch->text, "Run /init as init process"))
			return true;
		if (linux__vmm_exited(watch))
			break;
	}
	return false;
}

/* Entropy (--rng, boot seed): the guest's crng becomes ready at boot, not
 * minutes later. Keeps reading the console until "crng init done", the
 * VMM exits or the boot limit passes. */
static void linux__wait_for_crng(struct boot_watch *watch)
{
	while (watch->pid > 0 && !strstr(watch->text, "crng init done") &&
	       watch->elapsed < BOOT_LIMIT_SECONDS) {
		linux__read_console(watch);
		if (strstr(watch->text, "crng init done"))
			break;
		if (linux__vmm_exited(watch))
			break;
		sleep(1);
		linux__update_elapsed(watch);
	}
}

/* The devices the booted guest's drivers accepted: rng, block and (when
 * have_net) net with the checksum and TSO offloads. */
static void linux__check_drivers(json_t *metrics)
{
	assert_non_null(metrics);
	assert_driver_ok(metrics, 0, "rng");
	assert_driver_ok(metrics, 1, "block");
	if (have_net) {
		uint64_t features = assert_driver_ok(metrics, 2, "net");

		/* Linux takes the checksum and segmentation offloads we offer. */
		assert_true(features & (1ull << 0));  /* VIRTIO_NET_F_CSUM */
		assert_true(features & (1ull << 1));  /* VIRTIO_NET_F_GUEST_CSUM */
		assert_true(features & (1ull << 11)); /* VIRTIO_NET_F_HOST_TSO4 */
	} else {
		printf("net device not tested: needs root for a network namespace\n");
	}
}

static void test_linux_boots_to_init(void **state)
{
	char initrd[] = "/tmp/warren-vmm-initrd-XXXXXX";
	char console[] = "/tmp/warren-vmm-linux-console-XXXXXX";
	char disk[] = "/tmp/warren-vmm-linux-disk-XXXXXX";
	static struct vmm_session session_storage = {.client.fd = -1};
	struct vmm_session *session = &session_storage; /* large buffer: not on the stack */
	char device[256];
	const char *argv[] = {
	    vmm_test__binary(),
	    "--kernel",
	    kernel_path,
	    "--initrd",
	    initrd,
	    "--memory",
	    "256",
	    "--vcpus",
	    "2",
	    "--cmdline",
	    COMMAND_LINE,
	    "--console",
	    console,
	    "--api-socket",
	    session->path,
	    "--timeout-ms",
	    "240000",
	    "--rng",
	    "--device",
	    device,
	    have_net ? "--device" : NULL,
	    "{\"type\":\"net\",\"tap\":\"wsmoke0\",\"mac\":\"02:00:00:00:00:05\"}",
	    NULL};
	json_t *metrics = NULL;
	static char text[1 << 20];
	struct boot_watch watch = {
	    .elapsed = 0, .console = console, .text = text, .text_size = sizeof(text)};
	bool found;

	linux__make_files(initrd, console, disk, device, sizeof(device));
	snprintf(session->path, sizeof(session->path), "/tmp/warren-vmm-linux-%d.sock",
		 (int)getpid());
	clock_gettime(CLOCK_MONOTONIC, &watch.start);
	assert_int_equal(posix_spawn(&watch.pid, argv[0], NULL, NULL, (char *const *)argv, environ),
			 0);
	found = linux__wait_for_init(&watch, session, &metrics);
	if (found)
		linux__wait_for_crng(&watch);
	vmm_client__close(&session->client);
	if (watch.pid > 0) {
		kill(watch.pid, SIGTERM);
		waitpid(watch.pid, &watch.status, 0);
	}
	printf("%s\n--- end of console ---\n",
	       strlen(text) > 3000 ? text + strlen(text) - 3000 : text);
	printf("Linux smoke: \"Run /init as init process\" %s after %.1f s (limit %d s)\n",
	       found ? "reached" : "NOT reached", watch.elapsed, BOOT_LIMIT_SECONDS);
	unlink(initrd);
	unlink(console);
	unlink(disk);
	assert_true(found);
	assert_non_null(strstr(text, "virtio_mmio.device=4K@0xd0000000:5"));
	assert_non_null(strstr(text, "[vda] 2048 512-byte logical blocks"));
	assert_non_null(strstr(text, "smp: Brought up 1 node, 2 CPUs"));
	unlink(session->path);
	assert_non_null(strstr(text, "crng init done"));
	linux__check_drivers(metrics);
	json_decref(metrics);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_linux_boots_to_init),
	};

	if (!vmm_test__have_kvm())
		return 77;
	/* The tap lives in a namespace of our own: no route out, gone with us. */
	have_net = unshare(CLONE_NEWNET) == 0 && access("/dev/net/tun", R_OK | W_OK) == 0;
	if (!find_kernel()) {
		printf("FAIL: no guest kernel (set WARREN_GUEST_KERNEL or make "
		       "guest/kernel/build.sh work)\n");
		return 1;
	}
	printf("guest kernel: %s\n", kernel_path);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
