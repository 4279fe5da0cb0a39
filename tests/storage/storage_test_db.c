/* Test helper: per-binary throwaway databases (see storage_test_db.h). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage_test_db.h"
#include "warren/ids.h"

const char *test_db__server_url(void)
{
	const char *url = getenv("WARREN_PG_URL");

	if (!url || !*url) {
		fprintf(stderr,
			"FAIL: WARREN_PG_URL is not set; run eval \"$(scripts/dev-stack env)\" "
			"after scripts/dev-stack up\n");
		return NULL;
	}
	return url;
}

/* The server's conninfo with dbname replaced, as key='value' pairs. */
static bool test_db__url_for(const char *server_url, const char *dbname, char *out, size_t size)
{
	char *error = NULL;
	PQconninfoOption *options = PQconninfoParse(server_url, &error);
	size_t used = 0;

	if (!options) {
		fprintf(stderr, "cannot parse WARREN_PG_URL: %s\n", error ? error : "?");
		PQfreemem(error);
		return false;
	}
	out[0] = '\0';
	for (PQconninfoOption *o = options; o->keyword; o++) {
		const char *value = !strcmp(o->keyword, "dbname") ? dbname : o->val;

		if (!value)
			continue;
		used += (size_t)snprintf(out + used, size > used ? size - used : 0, "%s%s='",
					 used ? " " : "", o->keyword);
		for (const char *p = value; *p && used + 3 < size; p++) {
			if (*p == '\'' || *p == '\\')
				out[used++] = '\\';
			out[used++] = *p;
		}
		used += (size_t)snprintf(out + used, size > used ? size - used : 0, "'");
	}
	PQconninfoFree(options);
	return used < size;
}

static bool test_db__server_exec(const char *sql)
{
	const char *server = test_db__server_url();
	PGconn *conn;
	PGresult *result;
	bool ok;

	if (!server)
		return false;
	conn = PQconnectdb(server);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect to %s: %s", server, PQerrorMessage(conn));
		PQfinish(conn);
		return false;
	}
	result = PQexec(conn, sql);
	ok = PQresultStatus(result) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
	PQclear(result);
	PQfinish(conn);
	return ok;
}

/* Drops databases left by test processes that died before their teardown
 * (a crash, an abort under the sanitizers): warren_test_<tag>_<pid>_<hex>
 * whose pid no longer exists on this machine. */
static void test_db__drop_stale(const char *server)
{
	PGconn *conn = PQconnectdb(server);
	PGresult *result;

	if (PQstatus(conn) != CONNECTION_OK)
		goto out;
	result = PQexec(
	    conn, "SELECT datname, substring(datname from '^warren_test_[a-z]+_([0-9]+)_')"
		  " FROM pg_database WHERE datname ~ '^warren_test_[a-z]+_[0-9]+_[0-9a-f]{8}$'");
	for (int i = 0; PQresultStatus(result) == PGRES_TUPLES_OK && i < PQntuples(result); i++) {
		long pid = strtol(PQgetvalue(result, i, 1), NULL, 10);
		char sql[256];

		if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
			 PQgetvalue(result, i, 0));
		PQclear(PQexec(conn, sql));
	}
	PQclear(result);
out:
	PQfinish(conn);
}

bool test_db__create(struct test_db *db, const char *tag)
{
	char sql[256], suffix[9];
	unsigned char random[4];
	const char *server = test_db__server_url();

	memset(db, 0, sizeof(*db));
	if (!server)
		return false;
	test_db__drop_stale(server);
	ids__random_bytes(random, sizeof(random));
	snprintf(suffix, sizeof(suffix), "%02x%02x%02x%02x", random[0], random[1], random[2],
		 random[3]);
	snprintf(db->name, sizeof(db->name), "warren_test_%s_%d_%s", tag, (int)getpid(), suffix);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db->name);
	if (!test_db__server_exec(sql)) {
		db->name[0] = '\0';
		return false;
	}
	return test_db__url_for(server, db->name, db->url, sizeof(db->url));
}

void test_db__drop(struct test_db *db)
{
	char sql[256];

	if (!db->name[0])
		return;
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
	test_db__server_exec(sql);
	db->name[0] = '\0';
}

bool test_db__sql(const struct test_db *db, const char *sql, char *out, size_t out_size)
{
	PGconn *conn = PQconnectdb(db->url);
	PGresult *result;
	ExecStatusType status;
	bool ok;

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return false;
	}
	result = PQexec(conn, sql);
	status = PQresultStatus(result);
	ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
	if (ok && out && out_size) {
		out[0] = '\0';
		if (status == PGRES_TUPLES_OK && PQntuples(result) > 0 && PQnfields(result) > 0)
			snprintf(out, out_size, "%s", PQgetvalue(result, 0, 0));
	}
	PQclear(result);
	PQfinish(conn);
	return ok;
}

const char *test_db__migrations_dir(void)
{
	static char dir[4096];
	const char *source = getenv("WARREN_SOURCE_DIR");

	snprintf(dir, sizeof(dir), "%s/migrations", source ? source : ".");
	return dir;
}

int test_db__migration_files(void)
{
	DIR *handle = opendir(test_db__migrations_dir());
	struct dirent *entry;
	int count = 0;

	if (!handle)
		return -1;
	while ((entry = readdir(handle)))
		if (strlen(entry->d_name) > 9 &&
		    !strcmp(entry->d_name + strlen(entry->d_name) - 4, ".sql"))
			count++;
	closedir(handle);
	return count;
}
