/* `warren migrate [--status]`: applies migrations/NNNN_name.sql in order
 * (storage__migrate), or lists which are applied. Connects with config
 * pg_url, pg_password, pg_ssl_* (the admin role's); the folder is config migrations_dir
 * (WARREN_MIGRATIONS_DIR), else the install's (<prefix>/share/warren/
 * migrations beside this binary's bin/), else the source tree's or
 * /usr/share/warren's (storage__default_migrations_dir). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "warren/binary_path.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/storage.h"

static int cli_migrate__status(const struct storage_settings *settings, const char *dir)
{
	struct storage_migration_status *statuses;
	struct storage_error err;
	size_t count;
	int pending = 0, bad = 0;

	if (storage__migrate_status_settings(settings, dir, &statuses, &count, &err)) {
		fprintf(stderr, "warren migrate: %s\n", err.message);
		return 1;
	}
	printf("migrations in %s\n", dir);
	for (size_t i = 0; i < count; i++) {
		char when[32] = "";
		const char *state = "pending";

		if (statuses[i].applied) {
			clock__format_rfc3339(statuses[i].applied_at, when);
			state = statuses[i].missing_file ? "MISSING FILE"
				: statuses[i].modified	 ? "MODIFIED"
							 : "applied";
		}
		pending += !statuses[i].applied;
		bad += statuses[i].missing_file || statuses[i].modified;
		printf("  %-40s %-12s %s\n", statuses[i].name, state, when);
	}
	printf("%d pending, %d modified or missing\n", pending, bad);
	free(statuses);
	return bad ? 1 : 0;
}

static const char *cli_migrate__dir(void)
{
	static char installed[PATH_MAX];
	const char *configured = config__get("migrations_dir", NULL);

	if (configured)
		return configured;
	if (binary__find_data("migrations", installed, sizeof(installed)) == 0)
		return installed;
	return storage__default_migrations_dir();
}

static int cli_migrate__run(int argc, char **argv)
{
	struct storage_settings settings;
	struct storage_error err;
	const char *dir;
	int applied;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: warren migrate [--status]\nmigrations in %s\n", cli_migrate__dir());
		return 0;
	}
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--status"))) {
		fprintf(stderr, "usage: warren migrate [--status]\n");
		return 2;
	}
	storage_settings__from_config(&settings, NULL, 1);
	dir = cli_migrate__dir();
	if (!settings.url) {
		fprintf(stderr, "warren migrate: set pg_url (WARREN_PG_URL)\n");
		return 1;
	}
	if (argc == 2)
		return cli_migrate__status(&settings, dir);
	if (storage__migrate_settings(&settings, dir, &applied, &err)) {
		fprintf(stderr, "warren migrate: %s\n", err.message);
		return 1;
	}
	printf("warren migrate: %d migration(s) applied from %s\n", applied, dir);
	return 0;
}

CLI_COMMAND(migrate, "migrate", "apply database migrations (--status: list them)", cli_migrate__run)
