/* storage migrate: applies migrations/NNNN_name.sql in order (storage/README.md,
 * "Storage and migrations"). Each file runs in its own transaction and is
 * recorded with its sha256 in schema_migrations; an applied file that was
 * changed or removed stops everything; a session advisory lock makes
 * concurrent runs wait for each other. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "warren/log.h"
#include "warren/tokens.h"

/* pg_advisory_lock key: "warrenmg" as a big-endian int64. */
#define MIGRATE_LOCK_KEY "8603444449466001767"
#define MIGRATE_FILE_MAX (16 * 1024 * 1024)

struct migration_file {
	int version;
	char name[128];
	char sha256[TOKENS_SHA256_HEX_LEN + 1];
	char *sql;
};

struct migration_applied {
	int version;
	char name[128];
	char sha256[TOKENS_SHA256_HEX_LEN + 1];
	int64_t applied_at;
};

const char *storage__default_migrations_dir(void)
{
#ifdef WARREN_SOURCE_MIGRATIONS_DIR
	if (access(WARREN_SOURCE_MIGRATIONS_DIR, R_OK | X_OK) == 0)
		return WARREN_SOURCE_MIGRATIONS_DIR;
#endif
	return "/usr/share/warren/migrations";
}

/* Files whose comments were reworded after release, the SQL unchanged:
 * a database that recorded the old checksum is not "modified" when the
 * file now has the new one. Each entry: version, old sha256, new sha256. */
static const struct {
	int version;
	const char *applied_sha256;
	const char *file_sha256;
} migration_rewordings[] = {
    /* 0001: its comments cite docs/e2b-compatibility.md */
    {1, "cc4d4e8823899e6072bb35b01337ceb89a6d206ab79783c92ecbe94c8a8ab038",
     "d2abf8652d4d3189e80cc9e918f8154effa81fb3313ade2a73924320593f5322"},
};

/* True when the applied migration's checksum matches the file's (or one
 * is a listed rewording of the other). */
static bool migration__same(int version, const char *applied_sha256, const char *file_sha256)
{
	if (!strcmp(applied_sha256, file_sha256))
		return true;
	for (size_t i = 0; i < sizeof(migration_rewordings) / sizeof(migration_rewordings[0]); i++)
		if (migration_rewordings[i].version == version &&
		    !strcmp(migration_rewordings[i].applied_sha256, applied_sha256) &&
		    !strcmp(migration_rewordings[i].file_sha256, file_sha256))
			return true;
	return false;
}

/* "0001_initial.sql" -> 1; -1 for any other name. */
static int migration__version(const char *name)
{
	size_t len = strlen(name);
	int version = 0;

	if (len < 10 || len >= 128 || strcmp(name + len - 4, ".sql") || name[4] != '_')
		return -1;
	for (int i = 0; i < 4; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -1;
		version = version * 10 + (name[i] - '0');
	}
	for (size_t i = 5; i < len - 4; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return -1;
	}
	return version;
}

static int migration__compare(const void *a, const void *b)
{
	return ((const struct migration_file *)a)->version -
	       ((const struct migration_file *)b)->version;
}

static void migration__files_free(struct migration_file *files, size_t count)
{
	for (size_t i = 0; files && i < count; i++)
		free(files[i].sql);
	free(files);
}

static char *migration__read(const char *path, size_t *len)
{
	FILE *file = fopen(path, "re");
	char *data = NULL;
	long size;

	if (!file)
		return NULL;
	if (fseek(file, 0, SEEK_END) || (size = ftell(file)) < 0 || size > MIGRATE_FILE_MAX ||
	    fseek(file, 0, SEEK_SET))
		goto out;
	data = malloc((size_t)size + 1);
	if (!data)
		goto out;
	if (fread(data, 1, (size_t)size, file) != (size_t)size) {
		free(data);
		data = NULL;
		goto out;
	}
	data[size] = '\0';
	*len = (size_t)size;
out:
	fclose(file);
	return data;
}

/* Every NNNN_name.sql of dir, sorted by version, with contents and hashes. */
static int migration__scan(const char *dir, struct migration_file **out, size_t *count,
			   struct storage_error *err)
{
	struct migration_file *files = NULL;
	size_t used = 0, capacity = 0;
	struct dirent *entry;
	DIR *handle = opendir(dir);
	int rc = STORAGE_OK;

	if (!handle)
		return storage__fail(err, STORAGE_ERR_INVALID,
				     "cannot open migrations folder %s: %s", dir, strerror(errno));
	while ((entry = readdir(handle))) {
		char path[4096];
		size_t len;
		int version = migration__version(entry->d_name);

		if (version < 0) {
			if (strstr(entry->d_name, ".sql"))
				log_warn("migrate: ignoring %s/%s (not NNNN_name.sql)", dir,
					 entry->d_name);
			continue;
		}
		if (used == capacity) {
			struct migration_file *grown;

			capacity = capacity ? capacity * 2 : 16;
			grown = realloc(files, capacity * sizeof(*files));
			if (!grown) {
				rc = storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
				goto out;
			}
			files = grown;
		}
		memset(&files[used], 0, sizeof(files[used]));
		files[used].version = version;
		if (strlen(entry->d_name) >= sizeof(files[used].name)) {
			rc = storage__fail(err, STORAGE_ERR_INVALID,
					   "migration file name too long: %s", entry->d_name);
			goto out;
		}
		memcpy(files[used].name, entry->d_name, strlen(entry->d_name) + 1);
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		files[used].sql = migration__read(path, &len);
		if (!files[used].sql) {
			rc = storage__fail(err, STORAGE_ERR_INVALID, "cannot read %s", path);
			goto out;
		}
		tokens__sha256_hex(files[used].sql, len, files[used].sha256);
		used++;
	}
	if (used > 1)
		qsort(files, used, sizeof(*files), migration__compare);
	for (size_t i = 1; i < used; i++) {
		if (files[i].version == files[i - 1].version) {
			rc = storage__fail(err, STORAGE_ERR_INVALID,
					   "migrations %s and %s share version %04d",
					   files[i - 1].name, files[i].name, files[i].version);
			goto out;
		}
	}
out:
	closedir(handle);
	if (rc) {
		migration__files_free(files, used);
		return rc;
	}
	*out = files;
	*count = used;
	return STORAGE_OK;
}

static void migration__quiet_notice(void *arg, const char *message)
{
	(void)arg;
	log_debug("migrate: %s", message);
}

static PGconn *migration__connect(const struct storage_settings *settings,
				  struct storage_error *err)
{
	PGconn *conn;

	if (!settings->url || !*settings->url) {
		storage__fail(err, STORAGE_ERR_INVALID,
			      "no PostgreSQL url (set pg_url / WARREN_PG_URL)");
		return NULL;
	}
	conn = storage__connect_with(settings, NULL);
	if (PQstatus(conn) != CONNECTION_OK) {
		storage__fail(err, STORAGE_ERR_UNAVAILABLE, "cannot connect to PostgreSQL: %s",
			      PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, migration__quiet_notice, NULL);
	return conn;
}

/* Runs sql (no parameters) and expects success; err names context. */
static int migration__exec(PGconn *conn, const char *sql, const char *context,
			   struct storage_error *err)
{
	PGresult *result = PQexec(conn, sql);
	ExecStatusType status = PQresultStatus(result);
	int rc = STORAGE_OK;

	if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
		struct storage_error local;

		if (!err)
			err = &local;
		storage__fail_result(err, result, conn);
		rc = err->code;
		if (context) {
			char message[sizeof(err->message)];
			int prefix = snprintf(message, sizeof(message), "%s: ", context);

			if (prefix > 0 && (size_t)prefix < sizeof(message)) {
				snprintf(message + prefix, sizeof(message) - (size_t)prefix, "%.*s",
					 (int)(sizeof(message) - (size_t)prefix - 1), err->message);
				memcpy(err->message, message, sizeof(message));
			}
		}
	}
	PQclear(result);
	return rc;
}

/* Applied migrations, or none when schema_migrations does not exist. */
static int migration__applied(PGconn *conn, struct migration_applied **out, size_t *count,
			      struct storage_error *err)
{
	PGresult *result;
	int rows;

	*out = NULL;
	*count = 0;
	result = PQexec(conn, "SELECT version, name, sha256, " STORAGE_SQL_MS(
				  "applied_at") " FROM schema_migrations ORDER BY version");
	if (PQresultStatus(result) != PGRES_TUPLES_OK) {
		const char *sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
		int rc = STORAGE_OK;

		if (!sqlstate || strcmp(sqlstate, "42P01")) /* 42P01: undefined_table */
			rc = storage__fail_result(err, result, conn);
		PQclear(result);
		return rc;
	}
	rows = PQntuples(result);
	if (rows > 0) {
		*out = calloc((size_t)rows, sizeof(**out));
		if (!*out) {
			PQclear(result);
			return storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
		}
	}
	for (int i = 0; i < rows; i++) {
		(*out)[i].version = (int)storage__int(result, i, 0, -1);
		storage__text(result, i, 1, (*out)[i].name, sizeof((*out)[i].name));
		storage__text(result, i, 2, (*out)[i].sha256, sizeof((*out)[i].sha256));
		(*out)[i].applied_at = storage__int(result, i, 3, -1);
	}
	*count = (size_t)rows;
	PQclear(result);
	return STORAGE_OK;
}

static const struct migration_file *migration__find(const struct migration_file *files,
						    size_t count, int version)
{
	for (size_t i = 0; i < count; i++)
		if (files[i].version == version)
			return &files[i];
	return NULL;
}

static bool migration__is_applied(const struct migration_applied *applied, size_t count,
				  int version)
{
	for (size_t i = 0; i < count; i++)
		if (applied[i].version == version)
			return true;
	return false;
}

static int migration__apply(PGconn *conn, const struct migration_file *file,
			    struct storage_error *err)
{
	char version[16];
	const char *params[] = {version, file->name, file->sha256};
	PGresult *result;
	int rc;

	snprintf(version, sizeof(version), "%d", file->version);
	rc = migration__exec(conn, "BEGIN", file->name, err);
	if (rc)
		return rc;
	rc = migration__exec(conn, file->sql, file->name, err);
	if (rc)
		goto rollback;
	result = PQexecParams(conn,
			      "INSERT INTO schema_migrations (version, name, sha256)"
			      " VALUES ($1::int, $2, $3)",
			      3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(result) != PGRES_COMMAND_OK) {
		rc = storage__fail_result(err, result, conn);
		PQclear(result);
		goto rollback;
	}
	PQclear(result);
	return migration__exec(conn, "COMMIT", file->name, err);
rollback:
	migration__exec(conn, "ROLLBACK", NULL, NULL);
	return rc;
}

int storage__migrate(const char *url, const char *dir, int *applied_count,
		     struct storage_error *err)
{
	struct storage_settings settings;

	storage_settings__for_url(&settings, url, 1);
	return storage__migrate_settings(&settings, dir, applied_count, err);
}

int storage__migrate_settings(const struct storage_settings *settings, const char *dir,
			      int *applied_count, struct storage_error *err)
{
	struct migration_file *files = NULL;
	struct migration_applied *applied = NULL;
	size_t file_count = 0, applied_rows = 0;
	int done = 0, rc;
	bool locked = false;
	PGconn *conn;

	if (applied_count)
		*applied_count = 0;
	if (!dir)
		dir = storage__default_migrations_dir();
	rc = migration__scan(dir, &files, &file_count, err);
	if (rc)
		return rc;
	conn = migration__connect(settings, err);
	if (!conn) {
		rc = STORAGE_ERR_UNAVAILABLE;
		goto out;
	}
	/* Concurrent `warren migrate` runs queue here; the later ones then
	 * find every file applied. */
	rc = migration__exec(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "advisory lock",
			     err);
	if (rc)
		goto out;
	locked = true;
	rc = migration__exec(conn,
			     "CREATE TABLE IF NOT EXISTS schema_migrations ("
			     " version integer PRIMARY KEY,"
			     " name text NOT NULL,"
			     " sha256 text NOT NULL,"
			     " applied_at timestamptz NOT NULL DEFAULT now())",
			     "schema_migrations", err);
	if (rc)
		goto out;
	rc = migration__applied(conn, &applied, &applied_rows, err);
	if (rc)
		goto out;
	for (size_t i = 0; i < applied_rows; i++) {
		const struct migration_file *file =
		    migration__find(files, file_count, applied[i].version);

		if (!file) {
			rc = storage__fail(err, STORAGE_ERR_CONFLICT,
					   "migration %s was applied but is missing from %s",
					   applied[i].name, dir);
			goto out;
		}
		if (!migration__same(applied[i].version, applied[i].sha256, file->sha256)) {
			rc =
			    storage__fail(err, STORAGE_ERR_CONFLICT,
					  "migration %s/%s was modified after it was applied "
					  "(sha256 now %.12s..., applied %.12s...); restore it and "
					  "add a new migration instead",
					  dir, file->name, file->sha256, applied[i].sha256);
			goto out;
		}
	}
	for (size_t i = 0; i < file_count; i++) {
		if (migration__is_applied(applied, applied_rows, files[i].version))
			continue;
		rc = migration__apply(conn, &files[i], err);
		if (rc)
			goto out;
		log_info("migrate: applied %s", files[i].name);
		done++;
	}
	storage__ok(err);
out:
	if (locked)
		migration__exec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", NULL,
				NULL);
	if (conn)
		PQfinish(conn);
	if (applied_count)
		*applied_count = done;
	free(applied);
	migration__files_free(files, file_count);
	return rc;
}

static int migration__status_compare(const void *a, const void *b)
{
	return ((const struct storage_migration_status *)a)->version -
	       ((const struct storage_migration_status *)b)->version;
}

int storage__migrate_status(const char *url, const char *dir, struct storage_migration_status **out,
			    size_t *count, struct storage_error *err)
{
	struct storage_settings settings;

	storage_settings__for_url(&settings, url, 1);
	return storage__migrate_status_settings(&settings, dir, out, count, err);
}

int storage__migrate_status_settings(const struct storage_settings *settings, const char *dir,
				     struct storage_migration_status **out, size_t *count,
				     struct storage_error *err)
{
	struct migration_file *files = NULL;
	struct migration_applied *applied = NULL;
	struct storage_migration_status *statuses = NULL;
	size_t file_count = 0, applied_rows = 0, used = 0;
	PGconn *conn = NULL;
	int rc;

	*out = NULL;
	*count = 0;
	if (!dir)
		dir = storage__default_migrations_dir();
	rc = migration__scan(dir, &files, &file_count, err);
	if (rc)
		return rc;
	conn = migration__connect(settings, err);
	if (!conn) {
		rc = STORAGE_ERR_UNAVAILABLE;
		goto out;
	}
	rc = migration__applied(conn, &applied, &applied_rows, err);
	if (rc)
		goto out;
	statuses = calloc(file_count + applied_rows + 1, sizeof(*statuses));
	if (!statuses) {
		rc = storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < file_count; i++) {
		struct storage_migration_status *status = &statuses[used++];

		status->version = files[i].version;
		snprintf(status->name, sizeof(status->name), "%s", files[i].name);
		status->applied_at = -1;
		for (size_t j = 0; j < applied_rows; j++) {
			if (applied[j].version != files[i].version)
				continue;
			status->applied = true;
			status->applied_at = applied[j].applied_at;
			status->modified =
			    !migration__same(files[i].version, applied[j].sha256, files[i].sha256);
		}
	}
	for (size_t j = 0; j < applied_rows; j++) {
		struct storage_migration_status *status;

		if (migration__find(files, file_count, applied[j].version))
			continue;
		status = &statuses[used++];
		status->version = applied[j].version;
		snprintf(status->name, sizeof(status->name), "%s", applied[j].name);
		status->applied = true;
		status->missing_file = true;
		status->applied_at = applied[j].applied_at;
	}
	if (used > 1)
		qsort(statuses, used, sizeof(*statuses), migration__status_compare);
	*out = statuses;
	*count = used;
	statuses = NULL;
	storage__ok(err);
out:
	free(statuses);
	if (conn)
		PQfinish(conn);
	free(applied);
	migration__files_free(files, file_count);
	return rc;
}
