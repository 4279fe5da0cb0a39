/* jail_disk: a sandbox's writable layer on its own size-limited ext4 image
 * (jail_disk.h). Loop devices: loop(4); LOOP_CONFIGURE since Linux 5.8. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "jail_disk.h"
#include "warren/clock.h"
#include "warren/dirs.h"

extern char **environ;

#define JAIL_DISK_LOOP_TRIES 16

static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;
#define JAIL_DISK_VOLUMES_MAX 8 /* = JAIL_VOLUMES_MAX (warren/jail.h) */

/* mkfs.ext4 on image: no journal (the layer dies with the sandbox), no
 * reserved blocks, no resize inode (a layer never grows online; its
 * reserved group-descriptor blocks were 4.1 of the 4.3 MiB every sandbox
 * copied and dirtied), the inode tables left for lazy init (never run:
 * the mount says noinit_itable, so a 10 GiB layer holds ~230 KiB until
 * written), the root directory owned by owner. */
static int jail_disk__format(const char *image, uid_t owner, char *err, size_t err_len)
{
	char extended[96];
	const char *argv[] = {
	    "mkfs.ext4", "-q",	   "-F",  "-m", "0", "-O", "^has_journal,^resize_inode",
	    "-E",	 extended, image, NULL};
	pid_t pid;
	int status, ret;

	snprintf(extended, sizeof(extended),
		 "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=%u:%u",
		 (unsigned int)owner, (unsigned int)owner);
	ret = posix_spawnp(&pid, "mkfs.ext4", NULL, NULL, (char *const *)argv, environ);
	if (ret) {
		snprintf(err, err_len, "run mkfs.ext4: %s", strerror(ret));
		return -ret;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			snprintf(err, err_len, "wait for mkfs.ext4: %s", strerror(errno));
			return -errno;
		}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(err, err_len, "mkfs.ext4 %s failed (status %d)", image, status);
		return -EIO;
	}
	return 0;
}

/* A free loop device bound to image_fd, autocleared; its fd (its path in
 * device_path), or -errno. */
static int jail_disk__attach(int image_fd, char device_path[32], char *err, size_t err_len)
{
	struct loop_config config;
	int control, device = -1, number, ret = -EBUSY;

	control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (control < 0) {
		snprintf(err, err_len, "open /dev/loop-control: %s", strerror(errno));
		return -errno;
	}
	memset(&config, 0, sizeof(config));
	config.fd = (unsigned int)image_fd;
	config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	/* Another process may take the same free device between the two
	 * calls: LOOP_CONFIGURE then fails with EBUSY and we ask again. The
	 * worker's own creates take turns (attach_lock): at 100 creates in
	 * flight they were handed the same free number and ran out of tries. */
	pthread_mutex_lock(&attach_lock);
	for (int i = 0; i < JAIL_DISK_LOOP_TRIES && ret == -EBUSY; i++) {
		number = ioctl(control, LOOP_CTL_GET_FREE);
		if (number < 0) {
			ret = -errno;
			break;
		}
		snprintf(device_path, 32, "/dev/loop%d", number);
		device = open(device_path, O_RDWR | O_CLOEXEC);
		if (device < 0) {
			ret = -errno;
			break;
		}
		if (ioctl(device, LOOP_CONFIGURE, &config) == 0) {
			ret = 0;
			break;
		}
		ret = -errno;
		close(device);
		device = -1;
	}
	pthread_mutex_unlock(&attach_lock);
	close(control);
	if (ret) {
		snprintf(err, err_len, "attach a loop device: %s", strerror(-ret));
		return ret;
	}
	return device;
}

/* The formatted, never mounted image of size bytes, made once per size
 * and kept in cache_dir (made if missing) as .ext4-noresize-<size>.img
 * (a name of its own per set of mkfs options); made under
 * a private name and renamed, so concurrent starts never see half an
 * image. Its path in out. */
static int jail_disk__pristine(const char *cache_dir, uint64_t size, char *out, size_t out_len,
			       char *err, size_t err_len)
{
	char made[PATH_MAX + 48];
	int fd, ret;

	if ((size_t)snprintf(out, out_len, "%s/.ext4-noresize-%llu.img", cache_dir,
			     (unsigned long long)size) >= out_len)
		return -ENAMETOOLONG;
	if (access(out, R_OK) == 0)
		return 0;
	if ((ret = dirs__make(cache_dir, 0700))) {
		snprintf(err, err_len, "mkdir %s: %s", cache_dir, strerror(-ret));
		return ret;
	}
	snprintf(made, sizeof(made), "%s.%d.%llx", out, (int)getpid(),
		 (unsigned long long)clock__monotonic_ns());
	fd = open(made, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size)) {
		ret = -errno;
		snprintf(err, err_len, "create %s: %s", made, strerror(errno));
		goto out;
	}
	ret = jail_disk__format(made, 0, err, err_len);
	if (!ret && rename(made, out)) {
		ret = -errno;
		snprintf(err, err_len, "rename %s: %s", made, strerror(errno));
	}
out:
	if (fd >= 0)
		close(fd);
	if (ret)
		unlink(made);
	return ret;
}

/* Copies the data extents of from into to (same size, holes kept: a
 * 10 GiB image holds ~4 MiB of metadata). 0 or -errno. */
static int jail_disk__copy_sparse(int from, int to, uint64_t size)
{
	off_t offset = 0;

	if (ftruncate(to, (off_t)size))
		return -errno;
	for (;;) {
		off_t data = lseek(from, offset, SEEK_DATA), hole, to_offset;

		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		hole = lseek(from, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		to_offset = data;
		while (data < hole) {
			ssize_t n =
			    copy_file_range(from, &data, to, &to_offset, (size_t)(hole - data), 0);

			if (n <= 0)
				return n < 0 ? -errno : -EIO;
		}
		offset = hole;
	}
}

int jail_disk__create(const char *dir, const char *cache_dir, uint64_t size, uid_t owner, char *err,
		      size_t err_len)
{
	char image[PATH_MAX], pristine[PATH_MAX], mount_point[PATH_MAX], device_path[32];
	char path[PATH_MAX + 8];
	static const char *const parts[] = {"upper", "work"};
	int image_fd = -1, pristine_fd = -1, device = -1, ret;
	bool mounted = false;

	if ((size_t)snprintf(image, sizeof(image), "%s/disk.img", dir) >= sizeof(image) ||
	    (size_t)snprintf(mount_point, sizeof(mount_point), "%s/disk", dir) >=
		sizeof(mount_point)) {
		snprintf(err, err_len, "state dir path too long");
		return -ENAMETOOLONG;
	}
	if ((ret = jail_disk__pristine(cache_dir, size, pristine, sizeof(pristine), err, err_len)))
		return ret;
	pristine_fd = open(pristine, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	image_fd = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (pristine_fd < 0 || image_fd < 0) {
		ret = -errno;
		snprintf(err, err_len, "open %s or %s: %s", pristine, image, strerror(errno));
		goto out;
	}
	if ((ret = jail_disk__copy_sparse(pristine_fd, image_fd, size))) {
		snprintf(err, err_len, "copy %s: %s", pristine, strerror(-ret));
		goto out;
	}
	device = jail_disk__attach(image_fd, device_path, err, err_len);
	if (device < 0) {
		ret = device;
		goto out;
	}
	/* noinit_itable: the inode tables stay as mkfs left them (lazy): no
	 * kernel thread writes them out behind the sandbox's back. */
	if (mount(device_path, mount_point, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME,
		  "noinit_itable")) {
		ret = -errno;
		snprintf(err, err_len, "mount the writable layer's image: %s", strerror(errno));
		goto out;
	}
	mounted = true;
	if (chown(mount_point, owner, owner)) {
		ret = -errno;
		snprintf(err, err_len, "chown %s: %s", mount_point, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		mode_t mode = strcmp(parts[i], "work") ? 0755 : 0700;

		snprintf(path, sizeof(path), "%s/%s", mount_point, parts[i]);
		if (mkdir(path, mode) || chmod(path, mode) || chown(path, owner, owner)) {
			ret = -errno;
			snprintf(err, err_len, "mkdir %s: %s", path, strerror(errno));
			goto out;
		}
	}
	ret = 0;
out:
	if (ret && mounted)
		umount2(mount_point, MNT_DETACH);
	/* The mount holds the device now; with AUTOCLEAR it is detached when
	 * the last mount of it goes (or here, when nothing mounted it). */
	if (device >= 0)
		close(device);
	if (image_fd >= 0)
		close(image_fd);
	if (pristine_fd >= 0)
		close(pristine_fd);
	return ret;
}

int jail_disk__remove(const char *dir)
{
	char mount_point[PATH_MAX];

	for (int i = -1; i < JAIL_DISK_VOLUMES_MAX; i++) {
		int n = i < 0 ? snprintf(mount_point, sizeof(mount_point), "%s/disk", dir)
			      : snprintf(mount_point, sizeof(mount_point), "%s/vol%d", dir, i);

		if ((size_t)n >= sizeof(mount_point))
			return -ENAMETOOLONG;
		/* EINVAL: not a mount point (no quota, or already gone). */
		if (umount2(mount_point, MNT_DETACH | UMOUNT_NOFOLLOW) && errno != EINVAL &&
		    errno != ENOENT)
			return -errno;
	}
	return 0;
}

/* Runs argv (a tool of e2fsprogs) and waits: 0, or -EIO with err. */
static int jail_disk__run(const char *const *argv, char *err, size_t err_len)
{
	posix_spawn_file_actions_t actions;
	pid_t pid;
	int status, ret;

	/* debugfs prints its banner on stderr: the status says enough */
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
	ret = posix_spawnp(&pid, argv[0], &actions, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	if (ret) {
		snprintf(err, err_len, "run %s: %s", argv[0], strerror(ret));
		return -ret;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			snprintf(err, err_len, "wait for %s: %s", argv[0], strerror(errno));
			return -errno;
		}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(err, err_len, "%s failed (status %d)", argv[0], status);
		return -EIO;
	}
	return 0;
}

int jail_disk__volume_make(const char *image, uint64_t size, char *err, size_t err_len)
{
	char made[PATH_MAX + 48];
	const char *mkfs[] = {"mkfs.ext4",
			      "-q",
			      "-F",
			      "-m",
			      "0",
			      "-E",
			      "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0",
			      made,
			      NULL};
	const char *mode[] = {"debugfs", "-w", "-R", "sif / mode 040777", made, NULL};
	const char *lost[] = {"debugfs", "-w", "-R", "rmdir lost+found", made, NULL};
	int fd, ret;

	if (access(image, F_OK) == 0)
		return 0;
	snprintf(made, sizeof(made), "%s.%d.%llx", image, (int)getpid(),
		 (unsigned long long)clock__monotonic_ns());
	fd = open(made, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size)) {
		ret = -errno;
		snprintf(err, err_len, "create %s: %s", made, strerror(errno));
		goto out;
	}
	if ((ret = jail_disk__run(mkfs, err, err_len)) ||
	    (ret = jail_disk__run(mode, err, err_len)) ||
	    (ret = jail_disk__run(lost, err, err_len)))
		goto out;
	if (fsync(fd) || rename(made, image)) {
		ret = -errno;
		snprintf(err, err_len, "rename %s: %s", made, strerror(errno));
	}
out:
	if (fd >= 0)
		close(fd);
	if (ret)
		unlink(made);
	return ret;
}

/* Takes the image's exclusive flock, retrying for up to wait_ms while
 * another mount of it (a sandbox still being torn down) holds it. */
static int jail_disk__volume_lock(int fd, const char *image, int wait_ms, char *err, size_t err_len)
{
	for (int waited = 0;; waited += 20) {
		struct timespec pause = {0, 20 * 1000000};

		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK || waited >= wait_ms)
			break;
		nanosleep(&pause, NULL);
	}
	snprintf(err, err_len, "volume image %s is mounted by another sandbox on this host", image);
	return -EBUSY;
}

int jail_disk__volume_mount(const char *image, const char *mount_point, int wait_ms, char *err,
			    size_t err_len)
{
	char device_path[32];
	int fd, device = -1, ret;

	fd = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, err_len, "open volume image %s: %s", image, strerror(errno));
		return ret;
	}
	if ((ret = jail_disk__volume_lock(fd, image, wait_ms, err, err_len)))
		goto out;
	if (mkdir(mount_point, 0700) && errno != EEXIST) {
		ret = -errno;
		snprintf(err, err_len, "mkdir %s: %s", mount_point, strerror(errno));
		goto out;
	}
	/* The loop device keeps this open file (and so its flock) until the
	 * filesystem's last mount goes. */
	device = jail_disk__attach(fd, device_path, err, err_len);
	if (device < 0) {
		ret = device;
		goto out;
	}
	if (mount(device_path, mount_point, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, NULL)) {
		ret = -errno;
		snprintf(err, err_len, "mount volume image %s: %s", image, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (device >= 0)
		close(device);
	close(fd);
	return ret;
}
