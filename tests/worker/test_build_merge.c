/* build__merge_upper (workers/worker/build_merge.c): a build step's
 * overlay upper merged into the template tree. Checks whiteouts (0/0
 * character device and the xattr form), an opaque dir, a dir replacing a
 * symlink in the tree (not followed), owners shifted back from the jail's
 * host uid range with set-id bits kept, overlay xattrs dropped, and that a
 * file hard-linked with the base is replaced, never written. Needs root
 * (chown, mknod): skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "build.h"

#define HOST_UID 3000000u

static char root[256], upper[300], tree[300], outside[300];

static void path(char *out, const char *base, const char *rel)
{
	snprintf(out, 512, "%s/%s", base, rel);
}

static void write_file(const char *base, const char *rel, const char *text)
{
	char p[512];
	FILE *f;

	path(p, base, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void read_file(const char *base, const char *rel, char *out, size_t len)
{
	char p[512];
	FILE *f;
	size_t n;

	path(p, base, rel);
	f = fopen(p, "r");
	assert_non_null(f);
	n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/var/tmp/warren-merge-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	snprintf(upper, sizeof(upper), "%s/upper", root);
	snprintf(tree, sizeof(tree), "%s/tree", root);
	snprintf(outside, sizeof(outside), "%s/outside", root);
	return mkdir(upper, 0755) || mkdir(tree, 0755) || mkdir(outside, 0755);
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_merge(void **state)
{
	char p[512], q[512], err[256], text[64], value[8];
	struct stat st;

	(void)state;
	if (geteuid() != 0)
		skip(); /* chown and mknod need root */
	/* the tree (the base): files, a dir, a symlink pointing outside */
	write_file(tree, "keep", "keep\n");
	write_file(tree, "gone", "gone\n");
	write_file(tree, "shared", "base\n");
	path(p, tree, "dir");
	mkdir(p, 0755);
	write_file(tree, "dir/old", "old\n");
	path(p, tree, "evil");
	assert_int_equal(symlink(outside, p), 0);
	path(p, tree, "shared");
	path(q, root, "base-shared");
	assert_int_equal(link(p, q), 0); /* the base's hard link */

	/* the upper a step left */
	path(p, upper, "gone");
	assert_int_equal(mknod(p, S_IFCHR | 0000, makedev(0, 0)), 0);
	write_file(upper, "shared", "step\n");
	path(p, upper, "dir");
	mkdir(p, 0755);
	if (lsetxattr(p, "user.overlay.opaque", "y", 1, 0))
		skip(); /* no user xattrs on this filesystem */
	write_file(upper, "dir/new", "new\n");
	path(p, upper, "evil");
	mkdir(p, 0755);
	write_file(upper, "evil/payload", "x\n");
	write_file(upper, "setuid", "#!/bin/sh\n");
	path(p, upper, "setuid");
	assert_int_equal(chown(p, HOST_UID + 1000, HOST_UID + 1000), 0);
	assert_int_equal(chmod(p, 04755), 0);
	write_file(upper, "xwhiteout", "");
	path(p, upper, "xwhiteout");
	assert_int_equal(lsetxattr(p, "user.overlay.whiteout", "y", 1, 0), 0);
	write_file(tree, "xwhiteout", "present\n");
	assert_int_equal(chown(upper, HOST_UID, HOST_UID), 0);

	assert_int_equal(build__merge_upper(upper, tree, HOST_UID, err, sizeof(err)), 0);

	path(p, tree, "gone");
	assert_int_not_equal(lstat(p, &st), 0);
	path(p, tree, "xwhiteout");
	assert_int_not_equal(lstat(p, &st), 0);
	read_file(tree, "keep", text, sizeof(text));
	assert_string_equal(text, "keep\n");
	read_file(tree, "shared", text, sizeof(text));
	assert_string_equal(text, "step\n");
	read_file(root, "base-shared", text, sizeof(text));
	assert_string_equal(text, "base\n"); /* the base's inode untouched */
	path(p, tree, "dir/old");
	assert_int_not_equal(lstat(p, &st), 0); /* opaque: the old content is gone */
	read_file(tree, "dir/new", text, sizeof(text));
	assert_string_equal(text, "new\n");
	path(p, tree, "dir");
	assert_true(lgetxattr(p, "user.overlay.opaque", value, sizeof(value)) < 0);
	path(p, tree, "evil");
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode)); /* the symlink was replaced, not followed */
	path(p, outside, "payload");
	assert_int_not_equal(lstat(p, &st), 0);
	path(p, tree, "setuid");
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 1000);
	assert_int_equal(st.st_mode & 07777, 04755);
	assert_int_equal(stat(tree, &st), 0);
	assert_int_equal(st.st_uid, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
