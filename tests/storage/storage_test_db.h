/* Test helper: a throwaway PostgreSQL database per test binary on the
 * dev-stack server named by WARREN_PG_URL (scripts/dev-stack env). */
#ifndef WARREN_STORAGE_TEST_DB_H
#define WARREN_STORAGE_TEST_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct test_db {
	char name[64];
	char url[2048]; /* conninfo of the new database */
};

/* The server URL from WARREN_PG_URL, or NULL after printing why. */
const char *test_db__server_url(void);
/* Creates a uniquely named empty database; false (message printed) on error. */
bool test_db__create(struct test_db *db, const char *tag);
/* Drops it (WITH (FORCE)); safe to call twice. */
void test_db__drop(struct test_db *db);
/* Runs sql on its own connection to db; the first row's first column is
 * copied to out (may be NULL). false on any error (printed). */
bool test_db__sql(const struct test_db *db, const char *sql, char *out, size_t out_size);
/* The source tree's migrations folder (WARREN_SOURCE_DIR/migrations). */
const char *test_db__migrations_dir(void);
/* How many NNNN_name.sql files that folder holds (what a fresh migrate applies). */
int test_db__migration_files(void);

#endif
