/* snapshot__capture (workers/worker/snapshot.c): a jail sandbox's files
 * as a new installed template. Over a made-up base template and writable
 * layer: the snapshot reads back with templates__read, holds the file the
 * sandbox wrote (owner shifted back from the host uid range) and not the
 * one it removed, shares the base's untouched files by hard link, leaves
 * the live layer and the base as they were, counts its own bytes, replaces
 * a half-done earlier tree, refuses a name in use, and snapshot__remove takes it away. Needs root
 * (chown, mknod): skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <jansson.h>

#include "snapshot.h"

#define HOST_UID 3000000u

static char root[256];

static void at(char *out, const char *rel)
{
	snprintf(out, 512, "%s/%s", root, rel);
}

static void write_file(const char *rel, const char *text)
{
	char p[512];
	FILE *f;

	at(p, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void make_dirs(const char *rel)
{
	char cmd[700];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s'", root, rel);
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/var/tmp/warren-snapshot-XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

/* cache/base-1 (rootfs: etc/keep, etc/gone) installed as templates/base;
 * upper: home/user/note.txt by uid 1000 inside, a whiteout of etc/gone. */
static void make_fixture(void)
{
	char p[512], target[512];

	make_dirs("templates");
	make_dirs("cache/base-1/rootfs/etc");
	make_dirs("upper/home/user");
	write_file("cache/base-1/rootfs/etc/keep", "kept");
	write_file("cache/base-1/rootfs/etc/gone", "removed inside");
	write_file(
	    "cache/base-1/template.json",
	    "{\"name\":\"base\",\"agent_version\":\"1\",\"built_at\":\"2026-01-01T00:00:00Z\","
	    "\"size\":100,\"user\":\"user\",\"content_hash\":"
	    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}");
	at(target, "cache/base-1");
	at(p, "templates/base");
	assert_int_equal(symlink(target, p), 0);
	write_file("upper/home/user/note.txt", "hello");
	at(p, "upper/home/user/note.txt");
	assert_int_equal(chown(p, HOST_UID + 1000, HOST_UID + 1000), 0);
	make_dirs("upper/etc");
	at(p, "upper/etc/gone");
	assert_int_equal(mknod(p, S_IFCHR | 0000, makedev(0, 0)), 0);
}

static void test_capture(void **state)
{
	char templates[512], cache[512], upper[512], p[512], base_keep[512], err[256];
	struct snapshot_source source = {0};
	struct template_info snap;
	struct stat st, base_st;
	uint64_t bytes = 0;
	FILE *f;
	char text[16] = "";

	(void)state;
	if (geteuid() != 0)
		skip(); /* chown and mknod need root */
	make_fixture();
	at(templates, "templates");
	at(cache, "cache");
	at(upper, "upper");
	assert_int_equal(templates__read(templates, "base", &source.base, err, sizeof(err)), 0);
	source.upper = upper;
	source.host_uid = HOST_UID;
	source.templates_dir = templates;
	source.cache_dir = cache;

	/* the tree of an attempt that died before its link is replaced */
	make_dirs("cache/snap-1/rootfs");
	write_file("cache/snap-1/rootfs/junk", "half done");
	assert_int_equal(snapshot__capture(&source, "snap-1", &bytes, err, sizeof(err)), 0);
	assert_int_equal(bytes, 5);
	at(p, "cache/snap-1/rootfs/junk");
	assert_int_not_equal(access(p, F_OK), 0);
	assert_int_equal(templates__read(templates, "snap-1", &snap, err, sizeof(err)), 0);
	assert_string_equal(snap.name, "snap-1");
	assert_string_not_equal(snap.content_hash, source.base.content_hash);
	snprintf(p, sizeof(p), "%.400s/template.json", snap.dir);
	{
		char meta[4096] = "";

		f = fopen(p, "r");
		assert_non_null(f);
		assert_true(fread(meta, 1, sizeof(meta) - 1, f) > 0);
		fclose(f);
		/* the base's user kept; a build_id so the prune of deleted team
		 * templates takes it once deleted */
		assert_non_null(strstr(meta, "\"user\": \"user\""));
		assert_non_null(strstr(meta, "\"build_id\": \"snap-1\""));
	}

	snprintf(p, sizeof(p), "%.400s/home/user/note.txt", snap.rootfs);
	f = fopen(p, "r");
	assert_non_null(f);
	assert_non_null(fgets(text, sizeof(text), f));
	fclose(f);
	assert_string_equal(text, "hello");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, 1000);
	snprintf(p, sizeof(p), "%.400s/etc/gone", snap.rootfs);
	assert_int_not_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%.400s/etc/keep", snap.rootfs);
	snprintf(base_keep, sizeof(base_keep), "%.400s/etc/keep", source.base.rootfs);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(stat(base_keep, &base_st), 0);
	assert_int_equal(st.st_ino, base_st.st_ino); /* shared, not copied */

	/* the base and the live layer are as they were */
	snprintf(p, sizeof(p), "%.400s/etc/gone", source.base.rootfs);
	assert_int_equal(access(p, F_OK), 0);
	at(p, "upper/etc/gone");
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	at(p, "upper/home/user/note.txt");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, HOST_UID + 1000);

	/* a name in use is refused, a bad name too */
	assert_int_equal(snapshot__capture(&source, "snap-1", &bytes, err, sizeof(err)), -1);
	assert_int_equal(snapshot__capture(&source, "../x", &bytes, err, sizeof(err)), -1);

	assert_int_equal(snapshot__remove(templates, "snap-1"), 0);
	assert_int_not_equal(templates__read(templates, "snap-1", &snap, err, sizeof(err)), 0);
	at(p, "cache/snap-1");
	assert_int_not_equal(access(p, F_OK), 0);
	assert_int_equal(snapshot__remove(templates, "snap-1"), -ENOENT);
}

/* A vm sandbox's export (what runtime__export_vm writes, made up here):
 * installed with template.json naming the source, no start command; an
 * export that fails leaves nothing. */
static int fake_export(void *opaque, const char *dir, uint64_t *bytes, char *err, size_t err_len)
{
	char p[700];
	FILE *f;

	if (opaque) {
		snprintf(err, err_len, "the VMM refused");
		return -5;
	}
	snprintf(p, sizeof(p), "%s/vm", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/vm/vm.json", dir);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs("{\"version\":1}", f);
	fclose(f);
	*bytes = 4096;
	return 0;
}

static void test_capture_vm(void **state)
{
	char templates[512], cache[512], p[512], err[256];
	struct snapshot_source source = {0};
	struct template_info snap;
	uint64_t bytes = 0;
	json_t *meta;
	(void)state;

	make_fixture();
	write_file("cache/base-1/template.json",
		   "{\"name\":\"base\",\"agent_version\":\"1\",\"built_at\":"
		   "\"2026-01-01T00:00:00Z\",\"size\":100,\"start_cmd\":\"sleep 1\","
		   "\"content_hash\":"
		   "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}");
	at(templates, "templates");
	at(cache, "cache");
	source.templates_dir = templates;
	source.cache_dir = cache;
	assert_int_equal(templates__read(templates, "base", &source.base, err, sizeof(err)), 0);
	source.export_vm = fake_export;
	source.export_opaque = (void *)1; /* fails */
	source.source_id = "iaaaaaaaaaaaaaaaaaaaa";
	source.source_secure = true;
	assert_int_equal(snapshot__capture(&source, "snap-vm", &bytes, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "the VMM refused"));
	at(p, "cache/.snapshot-snap-vm");
	assert_int_not_equal(access(p, F_OK), 0);
	at(p, "templates/snap-vm");
	assert_int_not_equal(access(p, F_OK), 0);

	source.export_opaque = NULL;
	assert_int_equal(snapshot__capture(&source, "snap-vm", &bytes, err, sizeof(err)), 0);
	assert_int_equal(bytes, 4096);
	assert_int_equal(templates__read(templates, "snap-vm", &snap, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%.400s/template.json", snap.dir);
	meta = json_load_file(p, 0, NULL);
	assert_non_null(meta);
	assert_null(json_object_get(meta, "start_cmd"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(meta, "vm_snapshot"),
							      "source_sandbox_id")),
			    "iaaaaaaaaaaaaaaaaaaaa");
	assert_true(json_is_true(json_object_get(json_object_get(meta, "vm_snapshot"), "secure")));
	json_decref(meta);
	snprintf(p, sizeof(p), "%.400s/vm/vm.json", snap.dir);
	assert_int_equal(access(p, F_OK), 0);
}

/* What a killed capture leaves is swept; finished templates are kept. */
static void test_sweep_unfinished(void **state)
{
	char templates[512], cache[512], p[512], target[512];
	(void)state;

	make_fixture();
	make_dirs("cache/.snapshot-snap-2/rootfs/etc");
	write_file("cache/.snapshot-snap-2/rootfs/etc/keep", "half");
	at(target, "cache/.snapshot-snap-2");
	at(p, "templates/.snap-2.snapshot");
	assert_int_equal(symlink(target, p), 0);
	at(templates, "templates");
	at(cache, "cache");
	assert_int_equal(snapshot__sweep_unfinished(templates, cache), 2);
	assert_int_not_equal(access(target, F_OK), 0);
	assert_int_not_equal(access(p, F_OK), 0);
	at(p, "templates/base");
	assert_int_equal(access(p, F_OK), 0);
	at(p, "cache/base-1/rootfs/etc/keep");
	assert_int_equal(access(p, F_OK), 0);
	assert_int_equal(snapshot__sweep_unfinished(templates, cache), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_capture, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_capture_vm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sweep_unfinished, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
