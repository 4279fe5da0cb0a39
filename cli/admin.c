/* `warren admin ...`: teams, API keys and the admin views (docs/admin.md).
 * Connects with config pg_url (WARREN_PG_URL); every SQL statement is in
 * storage/. TEAM arguments take a team name or its id. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/storage.h"
#include "warren/tokens.h"

static void cli_admin__usage(FILE *out)
{
	fprintf(out, "usage:\n"
		     "  warren admin team create NAME [--tier hobby|pro|enterprise]\n"
		     "  warren admin team list\n"
		     "  warren admin team set-tier TEAM hobby|pro|enterprise\n"
		     "  warren admin team set-limit TEAM LIMIT VALUE\n"
		     "  warren admin key create --team TEAM\n"
		     "  warren admin key list --team TEAM\n"
		     "  warren admin key revoke KEY_ID|e2b_...\n"
		     "  warren admin sandboxes\n"
		     "  warren admin rejections [--minutes N]\n"
		     "  warren admin host list\n"
		     "  warren admin host drain|undrain HOST_ID\n"
		     "LIMIT is one of:");
	for (size_t i = 0; storage_limit_names[i]; i++)
		fprintf(out, " %s", storage_limit_names[i]);
	fprintf(out, "\n");
}

static int cli_admin__fail(const char *what, const struct storage_error *err)
{
	fprintf(stderr, "warren admin: %s: %s (%s)\n", what, err->message,
		storage__status_name(err->code));
	return 1;
}

/* A team by id or by name. */
static int cli_admin__find_team(struct storage_pool *pool, const char *team,
				struct storage_team *out)
{
	struct storage_error err;
	int rc = ids__is_uuid(team) ? storage__team_get(pool, team, out, &err)
				    : storage__team_get_by_name(pool, team, out, &err);

	if (rc == STORAGE_ERR_NOT_FOUND) {
		fprintf(stderr, "warren admin: no team '%s'\n", team);
		return 1;
	}
	if (rc)
		return cli_admin__fail("team", &err);
	return 0;
}

static void cli_admin__print_team(const struct storage_team *team)
{
	const struct storage_team_limits *l = &team->limits;

	printf("team %s\n  id %s\n  tier %s\n", team->name, team->id,
	       storage__tier_name(team->tier));
	printf("  lifecycle_requests %d / lifecycle_window_s %d\n", l->lifecycle_requests,
	       l->lifecycle_window_s);
	printf("  sandbox_operations %d / sandbox_operations_window_s %d (per client IP)\n",
	       l->sandbox_operations, l->sandbox_operations_window_s);
	printf("  concurrent_sandboxes %d\n  creation_rate_per_s %d\n", l->concurrent_sandboxes,
	       l->creation_rate_per_s);
	printf("  egress_connections %d\n  max_timeout_s %d\n", l->egress_connections,
	       l->max_timeout_s);
}

static bool cli_admin__parse_int(const char *text, int64_t min, int64_t max, int64_t *value)
{
	char *end;
	long long parsed;

	errno = 0;
	parsed = strtoll(text, &end, 10);
	if (errno || end == text || *end || parsed < min || parsed > max)
		return false;
	*value = parsed;
	return true;
}

static int cli_admin__team(struct storage_pool *pool, int argc, char **argv)
{
	struct storage_team team;
	struct storage_error err;

	if (argc >= 2 && !strcmp(argv[0], "create")) {
		enum storage_tier tier = STORAGE_TIER_HOBBY;

		if (argc == 4 && !strcmp(argv[2], "--tier")) {
			if (!storage__tier_parse(argv[3], &tier)) {
				fprintf(stderr, "warren admin: unknown tier '%s'\n", argv[3]);
				return 2;
			}
		} else if (argc != 2) {
			cli_admin__usage(stderr);
			return 2;
		}
		if (storage__team_create(pool, argv[1], tier, &team, &err))
			return cli_admin__fail("team create", &err);
		cli_admin__print_team(&team);
		return 0;
	}
	if (argc == 1 && !strcmp(argv[0], "list")) {
		struct storage_team *teams;
		size_t count;

		if (storage__team_list(pool, &teams, &count, &err))
			return cli_admin__fail("team list", &err);
		printf("%-36s  %-24s %-10s %6s %6s %8s\n", "ID", "NAME", "TIER", "CONCUR", "RATE/S",
		       "MAX_TTL");
		for (size_t i = 0; i < count; i++)
			printf("%-36s  %-24s %-10s %6d %6d %8d\n", teams[i].id, teams[i].name,
			       storage__tier_name(teams[i].tier),
			       teams[i].limits.concurrent_sandboxes,
			       teams[i].limits.creation_rate_per_s, teams[i].limits.max_timeout_s);
		free(teams);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[0], "set-tier")) {
		enum storage_tier tier;

		if (!storage__tier_parse(argv[2], &tier)) {
			fprintf(stderr, "warren admin: unknown tier '%s'\n", argv[2]);
			return 2;
		}
		if (cli_admin__find_team(pool, argv[1], &team))
			return 1;
		if (storage__team_set_tier(pool, team.id, tier, &team, &err))
			return cli_admin__fail("team set-tier", &err);
		cli_admin__print_team(&team);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[0], "set-limit")) {
		int64_t value;

		if (!storage__limit_name_valid(argv[2])) {
			fprintf(stderr, "warren admin: unknown limit '%s'\n", argv[2]);
			cli_admin__usage(stderr);
			return 2;
		}
		if (!cli_admin__parse_int(argv[3], 1, INT32_MAX, &value)) {
			fprintf(stderr, "warren admin: VALUE must be an integer in 1..%d\n",
				INT32_MAX);
			return 2;
		}
		if (cli_admin__find_team(pool, argv[1], &team))
			return 1;
		if (storage__team_set_limit(pool, team.id, argv[2], (int32_t)value, &team, &err))
			return cli_admin__fail("team set-limit", &err);
		cli_admin__print_team(&team);
		return 0;
	}
	cli_admin__usage(stderr);
	return 2;
}

static int cli_admin__key(struct storage_pool *pool, int argc, char **argv)
{
	struct storage_team team;
	struct storage_error err;

	if (argc == 3 && !strcmp(argv[0], "create") && !strcmp(argv[1], "--team")) {
		char key[45], hash[TOKENS_SHA256_HEX_LEN + 1], prefix[9];
		struct storage_api_key created;

		if (cli_admin__find_team(pool, argv[2], &team))
			return 1;
		if (ids__api_key(key)) {
			fprintf(stderr, "warren admin: no randomness for a key\n");
			return 1;
		}
		/* Only the SHA-256 is stored; the key is shown this once. */
		tokens__sha256_hex(key, strlen(key), hash);
		snprintf(prefix, sizeof(prefix), "%.8s", key);
		if (storage__api_key_create(pool, team.id, hash, prefix, &created, &err))
			return cli_admin__fail("key create", &err);
		printf("%s\n", key);
		fprintf(stderr, "key id %s for team %s; the key is not stored, keep it now\n",
			created.id, team.name);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[0], "list") && !strcmp(argv[1], "--team")) {
		struct storage_api_key *keys;
		size_t count;

		if (cli_admin__find_team(pool, argv[2], &team))
			return 1;
		if (storage__api_key_list(pool, team.id, &keys, &count, &err))
			return cli_admin__fail("key list", &err);
		printf("%-36s  %-9s %-24s %-24s %s\n", "ID", "PREFIX", "CREATED", "LAST_USED",
		       "REVOKED");
		for (size_t i = 0; i < count; i++) {
			char created[32], used[32] = "-", revoked[32] = "-";

			clock__format_rfc3339(keys[i].created_at, created);
			if (keys[i].last_used_at >= 0)
				clock__format_rfc3339(keys[i].last_used_at, used);
			if (keys[i].revoked_at >= 0)
				clock__format_rfc3339(keys[i].revoked_at, revoked);
			printf("%-36s  %-9s %-24s %-24s %s\n", keys[i].id, keys[i].prefix, created,
			       used, revoked);
		}
		free(keys);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[0], "revoke")) {
		int rc;

		if (!strncmp(argv[1], "e2b_", 4)) {
			char hash[TOKENS_SHA256_HEX_LEN + 1];

			tokens__sha256_hex(argv[1], strlen(argv[1]), hash);
			rc = storage__api_key_revoke_by_hash(pool, hash, &err);
		} else {
			rc = storage__api_key_revoke(pool, argv[1], &err);
		}
		if (rc)
			return cli_admin__fail("key revoke", &err);
		printf("revoked\n");
		return 0;
	}
	cli_admin__usage(stderr);
	return 2;
}

static int cli_admin__sandboxes(struct storage_pool *pool)
{
	struct storage_admin_running *rows;
	struct storage_error err;
	size_t count;

	if (storage__admin_running(pool, &rows, &count, &err))
		return cli_admin__fail("sandboxes", &err);
	printf("%-24s %-10s %6s %8s %8s %7s\n", "TEAM", "TIER", "LIMIT", "STARTING", "RUNNING",
	       "PAUSED");
	for (size_t i = 0; i < count; i++)
		printf("%-24s %-10s %6d %8d %8d %7d\n", rows[i].team,
		       storage__tier_name(rows[i].tier), rows[i].limit, rows[i].starting,
		       rows[i].running, rows[i].paused);
	free(rows);
	return 0;
}

static int cli_admin__rejections(struct storage_pool *pool, int argc, char **argv)
{
	struct storage_admin_rejections *rows;
	struct storage_error err;
	int64_t minutes = 60;
	size_t count;

	if (argc == 2 && !strcmp(argv[0], "--minutes")) {
		if (!cli_admin__parse_int(argv[1], 1, 525600, &minutes)) {
			fprintf(stderr, "warren admin: --minutes takes 1..525600\n");
			return 2;
		}
	} else if (argc) {
		cli_admin__usage(stderr);
		return 2;
	}
	if (storage__admin_rejections(pool, (int)minutes, &rows, &count, &err))
		return cli_admin__fail("rejections", &err);
	printf("%-24s %-24s %-28s %s\n", "MINUTE", "TEAM", "LIMIT", "REJECTIONS");
	for (size_t i = 0; i < count; i++) {
		char minute[32];

		clock__format_rfc3339(rows[i].minute, minute);
		printf("%-24s %-24s %-28s %lld\n", minute, rows[i].team, rows[i].limit_name,
		       (long long)rows[i].rejections);
	}
	free(rows);
	return 0;
}

/* `host list` and `host drain|undrain ID` (docs/deploy.md, "Drain a
 * worker host"). */
static int cli_admin__host(struct storage_pool *pool, int argc, char **argv)
{
	struct storage_host *hosts;
	struct storage_error err;
	size_t count;
	int rc;

	if (argc == 2 && (!strcmp(argv[0], "drain") || !strcmp(argv[0], "undrain"))) {
		rc = storage__host_set_drain(pool, argv[1], !strcmp(argv[0], "drain"), &err);
		if (rc == STORAGE_ERR_NOT_FOUND) {
			fprintf(stderr, "warren admin: no host '%s'\n", argv[1]);
			return 1;
		}
		if (rc)
			return cli_admin__fail(argv[0], &err);
		printf("host %s: %s\n", argv[1],
		       !strcmp(argv[0], "drain")
			   ? "draining (no new creates; its sandboxes run until they end)"
			   : "drain lifted");
		return 0;
	}
	if (argc != 1 || strcmp(argv[0], "list")) {
		cli_admin__usage(stderr);
		return 2;
	}
	if (storage__host_list(pool, &hosts, &count, &err))
		return cli_admin__fail("hosts", &err);
	printf("%-24s %-9s %-5s %8s %8s %-8s %s\n", "HOST", "STATE", "KIND", "CAPACITY", "RUNNING",
	       "DRAINED", "HEARTBEAT");
	for (size_t i = 0; i < count; i++) {
		char beat[32];

		clock__format_rfc3339(hosts[i].heartbeat_at, beat);
		printf("%-24s %-9s %-5s %8d %8d %-8s %s\n", hosts[i].id, hosts[i].state,
		       hosts[i].runtime, hosts[i].capacity, hosts[i].running,
		       hosts[i].drain_requested ? "yes" : "no", beat);
	}
	free(hosts);
	return 0;
}

static int cli_admin__run(int argc, char **argv)
{
	struct storage_settings settings;
	struct storage_pool *pool;
	struct storage_error err;
	int rc;

	if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
		cli_admin__usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!config__get("pg_url", NULL)) {
		fprintf(stderr, "warren admin: set pg_url (WARREN_PG_URL)\n");
		return 1;
	}
	storage_settings__from_config(&settings, NULL, 1);
	pool = storage__pool_open_settings(&settings, &err);
	if (!pool)
		return cli_admin__fail("connect", &err);
	if (!strcmp(argv[1], "team"))
		rc = cli_admin__team(pool, argc - 2, argv + 2);
	else if (!strcmp(argv[1], "key"))
		rc = cli_admin__key(pool, argc - 2, argv + 2);
	else if (!strcmp(argv[1], "sandboxes") && argc == 2)
		rc = cli_admin__sandboxes(pool);
	else if (!strcmp(argv[1], "rejections"))
		rc = cli_admin__rejections(pool, argc - 2, argv + 2);
	else if (!strcmp(argv[1], "host"))
		rc = cli_admin__host(pool, argc - 2, argv + 2);
	else {
		cli_admin__usage(stderr);
		rc = 2;
	}
	storage__pool_close(pool);
	return rc;
}

CLI_COMMAND(admin, "admin",
	    "teams, API keys, hosts (drain), running sandboxes, rate-limit rejections",
	    cli_admin__run)
