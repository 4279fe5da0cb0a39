/* build_merge: a build step's overlay upper dir merged into the template
 * tree (docs/templates.md). The upper was written from inside a user
 * namespace: owners are host ids (host_uid + id inside), deletions are
 * whiteouts (0/0 character devices or the user.overlay.whiteout xattr),
 * replaced dirs carry user.overlay.opaque. Walked before-children, so
 * every parent in the tree is a real directory (or absent) before a child
 * is placed under it: nothing a step made in the tree is followed on the
 * host. Then `cp -a --remove-destination` moves the files (new inodes:
 * the base's hard-linked files are never written). */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "build.h"

extern char **environ;

/* nftw has no user pointer: one merge at a time (a build's step and a
 * sandbox snapshot may merge at once on different threads). */
static pthread_mutex_t merge_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *merge_upper, *merge_rootfs;
static unsigned merge_host_uid;
static int merge_failed;

int build__spawn_wait(const char *const *argv)
{
	pid_t pid;
	int status;

	if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ))
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};

	return build__spawn_wait(argv);
}

static bool has_xattr(const char *path, const char *name, char *value, size_t len)
{
	ssize_t n = lgetxattr(path, name, value, len - 1);

	if (n < 0)
		return false;
	value[n] = '\0';
	return true;
}

/* Drops the overlay's own xattrs (they would mean something to the next
 * overlay that uses the tree as its lower). */
static void drop_overlay_xattrs(const char *path)
{
	char names[4096];
	ssize_t n = llistxattr(path, names, sizeof(names));

	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1)
		if (!strncmp(names + i, "user.overlay.", 13) ||
		    !strncmp(names + i, "trusted.overlay.", 16))
			lremovexattr(path, names + i);
}

static int merge__visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char target[PATH_MAX * 2], value[8];
	const char *rel = path + strlen(merge_upper);
	struct stat tst;
	bool whiteout, target_exists;

	(void)type;
	if (ftw->level == 0)
		goto owner; /* the root: only its owner */
	snprintf(target, sizeof(target), "%s%s", merge_rootfs, rel);
	target_exists = lstat(target, &tst) == 0;
	whiteout = (S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0)) ||
		   (S_ISREG(st->st_mode) && st->st_size == 0 &&
		    has_xattr(path, "user.overlay.whiteout", value, sizeof(value)));
	if (whiteout) {
		if (target_exists && remove_tree(target))
			merge_failed = 1;
		if (unlink(path))
			merge_failed = 1;
		return 0;
	}
	if (S_ISDIR(st->st_mode)) {
		bool opaque =
		    has_xattr(path, "user.overlay.opaque", value, sizeof(value)) && value[0] == 'y';

		if (target_exists && (opaque || !S_ISDIR(tst.st_mode)) && remove_tree(target))
			merge_failed = 1;
	} else if (target_exists && S_ISDIR(tst.st_mode) && remove_tree(target)) {
		merge_failed = 1;
	}
	drop_overlay_xattrs(path);
owner:
	if (st->st_uid >= merge_host_uid && st->st_uid < merge_host_uid + 65536u) {
		gid_t gid = st->st_gid >= merge_host_uid && st->st_gid < merge_host_uid + 65536u
				? st->st_gid - merge_host_uid
				: st->st_gid;

		if (lchown(path, st->st_uid - merge_host_uid, gid))
			merge_failed = 1;
		/* chown cleared set-id bits: put the mode back */
		if (!S_ISLNK(st->st_mode) && chmod(path, st->st_mode & 07777))
			merge_failed = 1;
	}
	return 0;
}

int build__merge_upper(const char *upper, const char *rootfs, unsigned host_uid, char *err,
		       size_t err_len)
{
	char source[PATH_MAX + 4], dest[PATH_MAX + 4];
	const char *cp[] = {"cp", "-a", "--remove-destination", source, dest, NULL};

	int walked;

	pthread_mutex_lock(&merge_lock);
	merge_upper = upper;
	merge_rootfs = rootfs;
	merge_host_uid = host_uid;
	merge_failed = 0;
	walked = nftw(upper, merge__visit, 64, FTW_PHYS) || merge_failed ? -1 : 0;
	pthread_mutex_unlock(&merge_lock);
	if (walked) {
		snprintf(err, err_len, "merging the step's files failed (%s)", strerror(errno));
		return -1;
	}
	snprintf(source, sizeof(source), "%s/.", upper);
	snprintf(dest, sizeof(dest), "%s/", rootfs);
	if (build__spawn_wait(cp)) {
		snprintf(err, err_len, "copying the step's files into the template failed");
		return -1;
	}
	return 0;
}
