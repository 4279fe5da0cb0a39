/* Integration test of `warren migrate` and `warren admin` (build/bin/warren)
 * on a fresh database: migrate twice (second is a no-op), create a team
 * and a key, and check that only the key's SHA-256 reached the database. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "storage_test_db.h"
#include "warren/tokens.h"

static struct test_db db;

/* Runs `warren ARGS` with WARREN_PG_URL set to the test database; stdout
 * goes to out. Returns the exit status. */
static int warren(const char *args, char *out, size_t size)
{
	char command[4096];
	const char *build = getenv("WARREN_BUILD_DIR");
	FILE *pipe;
	size_t used = 0, n;
	int status;

	assert_non_null(build);
	snprintf(command, sizeof(command), "WARREN_PG_URL=\"%s\" %s/bin/warren %s", db.url, build,
		 args);
	pipe = popen(command, "r");
	assert_non_null(pipe);
	while (used + 1 < size && (n = fread(out + used, 1, size - used - 1, pipe)) > 0)
		used += n;
	out[used] = '\0';
	status = pclose(pipe);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int group_setup(void **state)
{
	(void)state;
	return test_db__create(&db, "cli") ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	test_db__drop(&db);
	return 0;
}

/* "<N> migration(s) applied" for every NNNN_name.sql of the source tree. */
static void applied_all(char *out, size_t len)
{
	DIR *handle = opendir(test_db__migrations_dir());
	struct dirent *entry;
	int count = 0;

	assert_non_null(handle);
	while ((entry = readdir(handle)))
		if (strlen(entry->d_name) > 9 &&
		    !strcmp(entry->d_name + strlen(entry->d_name) - 4, ".sql"))
			count++;
	closedir(handle);
	snprintf(out, len, "%d migration(s) applied", count);
}

static void test_migrate_and_admin(void **state)
{
	char out[8192], key[64], hash[TOKENS_SHA256_HEX_LEN + 1], sql[512], value[128];
	char all[64];

	(void)state;
	applied_all(all, sizeof(all));
	assert_int_equal(warren("migrate", out, sizeof(out)), 0);
	assert_non_null(strstr(out, all));
	assert_int_equal(warren("migrate", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "0 migration(s) applied"));
	assert_int_equal(warren("migrate --status", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "0001_initial.sql"));
	assert_non_null(strstr(out, "0 pending"));

	assert_int_equal(warren("admin team create clitest --tier pro", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "concurrent_sandboxes 100"));
	assert_int_not_equal(warren("admin team create clitest 2>/dev/null", out, sizeof(out)), 0);
	assert_int_equal(
	    warren("admin team set-limit clitest concurrent_sandboxes 300", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "concurrent_sandboxes 300"));
	assert_int_equal(warren("admin team list", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "clitest"));

	assert_int_equal(warren("admin key create --team clitest 2>/dev/null", out, sizeof(out)),
			 0);
	assert_int_equal(sscanf(out, "%63s", key), 1);
	assert_int_equal(strlen(key), 44);
	assert_memory_equal(key, "e2b_", 4);
	tokens__sha256_hex(key, strlen(key), hash);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM api_keys k JOIN teams t ON t.id = k.team_id"
		 " WHERE t.name = 'clitest' AND k.key_hash = '%s'",
		 hash);
	assert_true(test_db__sql(&db, sql, value, sizeof(value)));
	assert_string_equal(value, "1");
	/* The key itself is nowhere in the table. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM api_keys k WHERE k::text LIKE '%%%s%%'",
		 key + 4);
	assert_true(test_db__sql(&db, sql, value, sizeof(value)));
	assert_string_equal(value, "0");

	assert_int_equal(warren("admin sandboxes", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "clitest"));
	snprintf(sql, sizeof(sql), "admin key revoke %s", key);
	assert_int_equal(warren(sql, out, sizeof(out)), 0);
	assert_int_not_equal(
	    warren("admin key revoke 00000000-0000-4000-8000-000000000000 2>/dev/null", out,
		   sizeof(out)),
	    0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_migrate_and_admin),
	};

	if (!test_db__server_url())
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
