/* Linux smoke (labels vmm-linux slow integration): the project's guest
 * kernel boots under warren-vmm, with a small initramfs and one virtio-blk
 * disk, to "Run /init as init process" on the console within 180 s (about
 * 55-100 s on a kvm_pvm host, where CPL0 is emulated; user space itself
 * cannot run there). Two vCPUs: the MP table path and AP bring-up. The disk
 * must have been probed by virtio_blk (its "[vda]" line, printed once the
 * driver set DRIVER_OK).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm_test_util.h"

extern char **environ;

#define BOOT_LIMIT_SECONDS 180
#define COMMAND_LINE                                                                       \
	"console=ttyS0 noxsave clearcpuid=smap,smep,popcnt i8042.noaux i8042.nokbd "       \
	"tsc=reliable reboot=k panic=-1"

static char kernel_path[4096];

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

static void test_linux_boots_to_init(void **state)
{
	char initrd[] = "/tmp/warren-vmm-initrd-XXXXXX";
	char console[] = "/tmp/warren-vmm-linux-console-XXXXXX";
	char disk[] = "/tmp/warren-vmm-linux-disk-XXXXXX";
	char device[256];
	const char *argv[] = { vmm_test__binary(), "--kernel", kernel_path, "--initrd", initrd,
			       "--memory", "256", "--vcpus", "2", "--cmdline", COMMAND_LINE,
			       "--console", console,
			       "--timeout-ms", "240000", "--device", device, NULL };
	struct timespec start, now;
	static char text[1 << 20];
	double elapsed = 0;
	bool found = false;
	pid_t pid;
	int status, fd;

	fd = mkstemp(initrd);
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
	snprintf(device, sizeof(device), "{\"type\":\"block\",\"path\":\"%s\"}", disk);
	clock_gettime(CLOCK_MONOTONIC, &start);
	assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ), 0);
	while (elapsed < BOOT_LIMIT_SECONDS) {
		FILE *file;
		size_t got = 0;

		sleep(1);
		clock_gettime(CLOCK_MONOTONIC, &now);
		elapsed = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
		file = fopen(console, "r");
		if (file) {
			got = fread(text, 1, sizeof(text) - 1, file);
			fclose(file);
		}
		text[got] = 0;
		if (strstr(text, "Run /init as init process")) {
			found = true;
			break;
		}
		if (waitpid(pid, &status, WNOHANG) == pid) {
			pid = -1;
			break;
		}
	}
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	printf("%s\n--- end of console ---\n", strlen(text) > 3000 ? text + strlen(text) - 3000 : text);
	printf("Linux smoke: \"Run /init as init process\" %s after %.1f s (limit %d s)\n",
	       found ? "reached" : "NOT reached", elapsed, BOOT_LIMIT_SECONDS);
	unlink(initrd);
	unlink(console);
	unlink(disk);
	assert_true(found);
	assert_non_null(strstr(text, "virtio_mmio.device=4K@0xd0000000:5"));
	assert_non_null(strstr(text, "[vda] 2048 512-byte logical blocks"));
	assert_non_null(strstr(text, "smp: Brought up 1 node, 2 CPUs"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linux_boots_to_init),
	};

	if (!vmm_test__have_kvm())
		return 77;
	if (!find_kernel()) {
		printf("FAIL: no guest kernel (set WARREN_GUEST_KERNEL or make guest/kernel/build.sh work)\n");
		return 1;
	}
	printf("guest kernel: %s\n", kernel_path);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
