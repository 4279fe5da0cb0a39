/* Integration tests of the migration runner (storage/migrate.c) against
 * the dev-stack PostgreSQL: apply to an empty database, re-apply as a
 * no-op, refuse a modified applied file, roll back a failing file, and
 * stay correct when several runs race. Each test has its own database. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "storage_test_db.h"
#include "warren/storage.h"

static int count_migration_files(const char *dir)
{
	DIR *handle = opendir(dir);
	struct dirent *entry;
	int count = 0;

	assert_non_null(handle);
	while ((entry = readdir(handle)))
		if (strlen(entry->d_name) > 9 &&
		    !strcmp(entry->d_name + strlen(entry->d_name) - 4, ".sql"))
			count++;
	closedir(handle);
	return count;
}

/* A private copy of migrations/0001_initial.sql in a temporary folder. */
struct temp_dir {
	char path[64];
};

/* The test's temporary folder, removed by db_teardown also on failure. */
static char current_temp_dir[64];

static void write_file(const char *path, const char *text, const char *mode)
{
	FILE *file = fopen(path, mode);

	assert_non_null(file);
	assert_int_equal(fputs(text, file) >= 0, 1);
	fclose(file);
}

static void temp_dir_create(struct temp_dir *dir)
{
	char source[4096], target[4200], buffer[65536];
	FILE *in, *out;
	size_t n;

	snprintf(dir->path, sizeof(dir->path), "/tmp/warren-migrate-XXXXXX");
	assert_non_null(mkdtemp(dir->path));
	memcpy(current_temp_dir, dir->path, sizeof(current_temp_dir));
	snprintf(source, sizeof(source), "%s/0001_initial.sql", test_db__migrations_dir());
	snprintf(target, sizeof(target), "%s/0001_initial.sql", dir->path);
	in = fopen(source, "r");
	out = fopen(target, "w");
	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buffer, 1, sizeof(buffer), in)) > 0)
		assert_int_equal(fwrite(buffer, 1, n, out), n);
	fclose(in);
	fclose(out);
}

static void temp_path_remove(const char *dir_path)
{
	DIR *handle = opendir(dir_path);
	struct dirent *entry;
	char path[4200];

	while (handle && (entry = readdir(handle))) {
		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir_path, entry->d_name);
		unlink(path);
	}
	if (handle)
		closedir(handle);
	rmdir(dir_path);
	current_temp_dir[0] = '\0';
}

static void temp_dir_remove(struct temp_dir *dir)
{
	temp_path_remove(dir->path);
}

static int db_setup(void **state)
{
	struct test_db *db = calloc(1, sizeof(*db));

	if (!db || !test_db__create(db, "migrate")) {
		free(db);
		return -1;
	}
	*state = db;
	return 0;
}

static int db_teardown(void **state)
{
	if (current_temp_dir[0])
		temp_path_remove(current_temp_dir);
	test_db__drop(*state);
	free(*state);
	return 0;
}

static void test_apply_then_noop(void **state)
{
	struct test_db *db = *state;
	struct storage_error err;
	struct storage_migration_status *statuses;
	size_t count;
	int applied = -1, files = count_migration_files(test_db__migrations_dir());
	char value[64];

	assert_true(files >= 1);
	assert_int_equal(
	    storage__migrate_status(db->url, test_db__migrations_dir(), &statuses, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, (size_t)files);
	assert_false(statuses[0].applied);
	free(statuses);

	assert_int_equal(storage__migrate(db->url, test_db__migrations_dir(), &applied, &err),
			 STORAGE_OK);
	assert_int_equal(applied, files);
	assert_true(
	    test_db__sql(db, "SELECT count(*) FROM schema_migrations", value, sizeof(value)));
	assert_int_equal(atoi(value), files);
	assert_true(test_db__sql(db, "SELECT count(*) FROM tiers", value, sizeof(value)));
	assert_string_equal(value, "3");

	assert_int_equal(storage__migrate(db->url, test_db__migrations_dir(), &applied, &err),
			 STORAGE_OK);
	assert_int_equal(applied, 0);
	assert_int_equal(
	    storage__migrate_status(db->url, test_db__migrations_dir(), &statuses, &count, &err),
	    STORAGE_OK);
	for (size_t i = 0; i < count; i++) {
		assert_true(statuses[i].applied);
		assert_false(statuses[i].modified);
		assert_true(statuses[i].applied_at > 0);
	}
	free(statuses);
}

/* 0001's comments were reworded after release: a database that recorded
 * the old checksum is neither refused nor reported modified. */
static void test_reworded_migration_accepted(void **state)
{
	struct test_db *db = *state;
	struct storage_error err;
	struct storage_migration_status *statuses;
	size_t count;
	int applied = -1;
	char value[64];

	assert_int_equal(storage__migrate(db->url, test_db__migrations_dir(), &applied, &err),
			 STORAGE_OK);
	assert_true(
	    test_db__sql(db,
			 "UPDATE schema_migrations SET sha256 = 'cc4d4e8823899e6072bb35b01337ceb89a"
			 "6d206ab79783c92ecbe94c8a8ab038' WHERE version = 1 RETURNING version",
			 value, sizeof(value)));
	assert_int_equal(storage__migrate(db->url, test_db__migrations_dir(), &applied, &err),
			 STORAGE_OK);
	assert_int_equal(applied, 0);
	assert_int_equal(
	    storage__migrate_status(db->url, test_db__migrations_dir(), &statuses, &count, &err),
	    STORAGE_OK);
	assert_false(statuses[0].modified);
	free(statuses);
	/* another checksum is still a modification */
	assert_true(test_db__sql(db,
				 "UPDATE schema_migrations SET sha256 = 'dd' || substr(sha256, 3)"
				 " WHERE version = 1 RETURNING version",
				 value, sizeof(value)));
	assert_int_equal(storage__migrate(db->url, test_db__migrations_dir(), &applied, &err),
			 STORAGE_ERR_CONFLICT);
}

static void test_modified_file_refused(void **state)
{
	struct test_db *db = *state;
	struct storage_error err;
	struct storage_migration_status *statuses;
	struct temp_dir dir;
	char path[200];
	size_t count;
	int applied;

	temp_dir_create(&dir);
	assert_int_equal(storage__migrate(db->url, dir.path, &applied, &err), STORAGE_OK);
	assert_int_equal(applied, 1);
	snprintf(path, sizeof(path), "%s/0001_initial.sql", dir.path);
	write_file(path, "-- edited after it was applied\n", "a");

	assert_int_equal(storage__migrate(db->url, dir.path, &applied, &err), STORAGE_ERR_CONFLICT);
	assert_int_equal(applied, 0);
	assert_non_null(strstr(err.message, "0001_initial.sql"));
	assert_non_null(strstr(err.message, "modified"));
	assert_int_equal(storage__migrate_status(db->url, dir.path, &statuses, &count, &err),
			 STORAGE_OK);
	assert_int_equal(count, 1);
	assert_true(statuses[0].modified);
	free(statuses);

	/* A removed applied file is refused too. */
	unlink(path);
	assert_int_equal(storage__migrate(db->url, dir.path, &applied, &err), STORAGE_ERR_CONFLICT);
	assert_non_null(strstr(err.message, "missing"));
	temp_dir_remove(&dir);
}

static void test_failing_file_rolls_back(void **state)
{
	struct test_db *db = *state;
	struct storage_error err;
	struct temp_dir dir;
	char path[200], value[64];
	int applied;

	temp_dir_create(&dir);
	snprintf(path, sizeof(path), "%s/0002_broken.sql", dir.path);
	write_file(path, "CREATE TABLE half_done (id int);\nSELECT 1 / 0;\n", "w");
	assert_int_not_equal(storage__migrate(db->url, dir.path, &applied, &err), STORAGE_OK);
	assert_int_equal(applied, 1); /* 0001 went in, 0002 did not */
	assert_non_null(strstr(err.message, "0002_broken.sql"));
	assert_true(
	    test_db__sql(db, "SELECT count(*) FROM schema_migrations", value, sizeof(value)));
	assert_string_equal(value, "1");
	assert_true(
	    test_db__sql(db, "SELECT to_regclass('half_done') IS NULL", value, sizeof(value)));
	assert_string_equal(value, "t");

	/* Fixed, it applies; the run after that has nothing to do. */
	write_file(path, "CREATE TABLE half_done (id int);\n", "w");
	assert_int_equal(storage__migrate(db->url, dir.path, &applied, &err), STORAGE_OK);
	assert_int_equal(applied, 1);
	assert_int_equal(storage__migrate(db->url, dir.path, &applied, &err), STORAGE_OK);
	assert_int_equal(applied, 0);
	temp_dir_remove(&dir);
}

struct race {
	const char *url;
	int applied;
	int rc;
	char message[512];
};

static void *race_thread(void *arg)
{
	struct race *race = arg;
	struct storage_error err;

	race->rc = storage__migrate(race->url, test_db__migrations_dir(), &race->applied, &err);
	memcpy(race->message, err.message, sizeof(race->message));
	return NULL;
}

static void test_concurrent_migrate(void **state)
{
	struct test_db *db = *state;
	struct race races[4];
	pthread_t threads[4];
	int total = 0, files = count_migration_files(test_db__migrations_dir());
	char value[64];

	for (int i = 0; i < 4; i++) {
		races[i] = (struct race){.url = db->url};
		assert_int_equal(pthread_create(&threads[i], NULL, race_thread, &races[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		if (races[i].rc)
			fprintf(stderr, "run %d: %s\n", i, races[i].message);
		assert_int_equal(races[i].rc, STORAGE_OK);
		total += races[i].applied;
	}
	assert_int_equal(total, files);
	assert_true(
	    test_db__sql(db, "SELECT count(*) FROM schema_migrations", value, sizeof(value)));
	assert_int_equal(atoi(value), files);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_apply_then_noop, db_setup, db_teardown),
	    cmocka_unit_test_setup_teardown(test_modified_file_refused, db_setup, db_teardown),
	    cmocka_unit_test_setup_teardown(test_reworded_migration_accepted, db_setup,
					    db_teardown),
	    cmocka_unit_test_setup_teardown(test_failing_file_rolls_back, db_setup, db_teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_migrate, db_setup, db_teardown),
	};

	if (!test_db__server_url())
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
