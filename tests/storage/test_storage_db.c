/* Integration tests of libwarren-storage against the dev-stack
 * PostgreSQL (one fresh database for the binary, migrated, dropped at the
 * end): constraint -> error code mapping, idempotent sandbox insert by
 * request_id, compare-and-set transitions, team isolation, keyset
 * pagination, admission under concurrency, reconnect after the pool's
 * backends are terminated, requests, rate-limit state, admin views. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "storage_test_db.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/storage.h"
#include "warren/template_builds.h"
#include "warren/tokens.h"

static struct test_db db;
static struct storage_pool *pool;
static const char *template_id = "base";

static int group_setup(void **state)
{
	struct storage_error err;
	struct storage_template template_in = {.agent_version = "0.1.0",
					       .image_path = "/var/lib/warren/base.img"};
	int applied;

	(void)state;
	if (!test_db__create(&db, "storage"))
		return -1;
	if (storage__migrate(db.url, test_db__migrations_dir(), &applied, &err)) {
		fprintf(stderr, "migrate: %s\n", err.message);
		return -1;
	}
	pool = storage__pool_open(db.url, 2, &err);
	if (!pool) {
		fprintf(stderr, "pool: %s\n", err.message);
		return -1;
	}
	snprintf(template_in.id, sizeof(template_in.id), "%s", template_id);
	tokens__sha256_hex("image", 5, template_in.content_hash);
	if (storage__template_upsert(pool, &template_in, &err)) {
		fprintf(stderr, "template: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	storage__pool_close(pool);
	pool = NULL;
	test_db__drop(&db);
	return 0;
}

/* A new team with a unique name. */
static void make_team(const char *tag, enum storage_tier tier, struct storage_team *team)
{
	char name[64], suffix[9];
	unsigned char random[4];
	struct storage_error err;

	ids__random_bytes(random, sizeof(random));
	snprintf(suffix, sizeof(suffix), "%02x%02x%02x%02x", random[0], random[1], random[2],
		 random[3]);
	snprintf(name, sizeof(name), "%s-%s", tag, suffix);
	assert_int_equal(storage__team_create(pool, name, tier, team, &err), STORAGE_OK);
	assert_string_equal(team->name, name);
}

/* Fills a create request with fresh ids. */
struct new_sandbox {
	char id[IDS_SANDBOX_ID_LEN + 1];
	char request_id[IDS_UUID_LEN + 1];
	struct storage_sandbox_new spec;
};

static void new_sandbox_init(struct new_sandbox *n, const char *team_id)
{
	memset(n, 0, sizeof(*n));
	assert_int_equal(ids__sandbox_id(n->id), 0);
	assert_int_equal(ids__uuid(n->request_id), 0);
	n->spec.id = n->id;
	n->spec.team_id = team_id;
	n->spec.template_id = template_id;
	n->spec.request_id = n->request_id;
	n->spec.timeout_s = 300;
	n->spec.allow_public_traffic = true;
}

static void admit_one(const char *team_id, struct storage_sandbox *out)
{
	struct new_sandbox n;
	struct storage_admission admission;
	struct storage_error err;

	new_sandbox_init(&n, team_id);
	assert_int_equal(storage__sandbox_admit(pool, &n.spec, &admission, out, &err), STORAGE_OK);
	assert_true(admission.admitted);
	assert_false(admission.existing);
}

static void test_teams_and_limits(void **state)
{
	struct storage_team team, again, *teams;
	struct storage_error err;
	size_t count;
	bool seen = false;

	(void)state;
	make_team("limits", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(team.tier, STORAGE_TIER_HOBBY);
	assert_int_equal(team.limits.concurrent_sandboxes, 20);
	assert_int_equal(team.limits.creation_rate_per_s, 1);
	assert_int_equal(team.limits.lifecycle_requests, 20000);
	assert_int_equal(team.limits.lifecycle_window_s, 30);
	assert_int_equal(team.limits.sandbox_operations, 40000);
	assert_int_equal(team.limits.sandbox_operations_window_s, 60);
	assert_int_equal(team.limits.egress_connections, 2500);
	assert_int_equal(team.limits.max_timeout_s, 3600);

	assert_int_equal(storage__team_set_tier(pool, team.id, STORAGE_TIER_PRO, &again, &err),
			 STORAGE_OK);
	assert_int_equal(again.tier, STORAGE_TIER_PRO);
	assert_int_equal(again.limits.concurrent_sandboxes, 100);
	assert_int_equal(again.limits.creation_rate_per_s, 5);
	assert_int_equal(again.limits.max_timeout_s, 86400);

	assert_int_equal(
	    storage__team_set_limit(pool, team.id, "concurrent_sandboxes", 1100, &again, &err),
	    STORAGE_OK);
	assert_int_equal(again.limits.concurrent_sandboxes, 1100);
	assert_int_equal(again.limits.creation_rate_per_s, 5);
	/* Above the pro add-on maximum: the CHECK refuses it. */
	assert_int_equal(
	    storage__team_set_limit(pool, team.id, "concurrent_sandboxes", 1101, &again, &err),
	    STORAGE_ERR_INVALID);
	assert_string_equal(err.sqlstate, "23514");
	assert_int_equal(storage__team_set_limit(pool, team.id, "no_such_limit", 5, &again, &err),
			 STORAGE_ERR_INVALID);

	assert_int_equal(storage__team_get_by_name(pool, team.name, &again, &err), STORAGE_OK);
	assert_string_equal(again.id, team.id);
	assert_int_equal(
	    storage__team_get(pool, "00000000-0000-4000-8000-000000000000", &again, &err),
	    STORAGE_ERR_NOT_FOUND);
	assert_int_equal(storage__team_list(pool, &teams, &count, &err), STORAGE_OK);
	for (size_t i = 0; i < count; i++)
		seen |= !strcmp(teams[i].id, team.id);
	free(teams);
	assert_true(seen);
}

static void test_constraint_errors(void **state)
{
	struct storage_team team, other;
	struct storage_api_key key;
	struct storage_sandbox sandbox;
	struct new_sandbox n;
	struct storage_error err;
	char hash[TOKENS_SHA256_HEX_LEN + 1], sql[256], value[64];

	(void)state;
	make_team("errors", STORAGE_TIER_HOBBY, &team);
	/* unique_violation -> DUPLICATE */
	assert_int_equal(storage__team_create(pool, team.name, STORAGE_TIER_PRO, &other, &err),
			 STORAGE_ERR_DUPLICATE);
	assert_string_equal(err.sqlstate, "23505");
	/* check_violation -> INVALID */
	assert_int_equal(storage__team_create(pool, "bad name!", STORAGE_TIER_PRO, &other, &err),
			 STORAGE_ERR_INVALID);
	assert_int_equal(storage__api_key_create(pool, team.id, "NOT-HEX", "e2b_x", &key, &err),
			 STORAGE_ERR_INVALID);
	/* foreign_key_violation -> NOT_FOUND_REF */
	tokens__sha256_hex("k", 1, hash);
	assert_int_equal(storage__api_key_create(pool, "00000000-0000-4000-8000-000000000000", hash,
						 "e2b_x", &key, &err),
			 STORAGE_ERR_NOT_FOUND_REF);
	assert_string_equal(err.sqlstate, "23503");
	new_sandbox_init(&n, team.id);
	n.spec.template_id = "no-such-template";
	assert_int_equal(storage__sandbox_admit(pool, &n.spec, NULL, &sandbox, &err),
			 STORAGE_ERR_NOT_FOUND_REF);
	/* E2B: allowPublicTraffic=false requires secure=true. */
	new_sandbox_init(&n, team.id);
	n.spec.allow_public_traffic = false;
	assert_int_equal(storage__sandbox_admit(pool, &n.spec, NULL, &sandbox, &err),
			 STORAGE_ERR_INVALID);
	/* A team that does not exist cannot admit. */
	new_sandbox_init(&n, "00000000-0000-4000-8000-000000000000");
	assert_int_equal(storage__sandbox_admit(pool, &n.spec, NULL, &sandbox, &err),
			 STORAGE_ERR_NOT_FOUND_REF);

	/* sandbox_events is append-only. */
	admit_one(team.id, &sandbox);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sandbox_events WHERE sandbox_id = '%s'",
		 sandbox.id);
	assert_true(test_db__sql(&db, sql, value, sizeof(value)));
	assert_string_equal(value, "1");
	snprintf(sql, sizeof(sql), "DELETE FROM sandbox_events WHERE sandbox_id = '%s'",
		 sandbox.id);
	assert_false(test_db__sql(&db, sql, NULL, 0));
	snprintf(sql, sizeof(sql), "UPDATE sandbox_events SET type = 'x' WHERE sandbox_id = '%s'",
		 sandbox.id);
	assert_false(test_db__sql(&db, sql, NULL, 0));
	storage__sandbox_clear(&sandbox);
}

static void test_idempotent_insert(void **state)
{
	struct storage_team team, other;
	struct storage_sandbox first, second;
	struct storage_admission admission;
	struct new_sandbox n;
	struct storage_error err;
	char first_id[IDS_SANDBOX_ID_LEN + 1];
	int32_t active;
	bool existing;

	(void)state;
	make_team("idem", STORAGE_TIER_HOBBY, &team);
	make_team("idem-other", STORAGE_TIER_HOBBY, &other);
	new_sandbox_init(&n, team.id);
	n.spec.metadata = json_pack("{s:s}", "owner", "alice");
	assert_int_equal(storage__sandbox_admit(pool, &n.spec, &admission, &first, &err),
			 STORAGE_OK);
	assert_true(admission.admitted);
	assert_false(admission.existing);
	assert_int_equal(admission.active_count, 1);
	assert_int_equal(admission.limit, 20);
	assert_int_equal(first.state, STORAGE_SANDBOX_STARTING);
	assert_string_equal(first.request_id, n.request_id);
	assert_string_equal(json_string_value(json_object_get(first.metadata, "owner")), "alice");
	assert_true(first.end_at > first.created_at);
	memcpy(first_id, n.id, sizeof(first_id));

	/* Redelivered command: same request_id, a new candidate id. */
	assert_int_equal(ids__sandbox_id(n.id), 0);
	assert_int_equal(storage__sandbox_admit(pool, &n.spec, &admission, &second, &err),
			 STORAGE_OK);
	assert_true(admission.admitted);
	assert_true(admission.existing);
	assert_string_equal(second.id, first_id);
	assert_int_equal(storage__sandbox_insert(pool, &n.spec, &existing, NULL, &err), STORAGE_OK);
	assert_true(existing);
	assert_int_equal(storage__sandbox_count_active(pool, team.id, &active, &err), STORAGE_OK);
	assert_int_equal(active, 1);

	/* The same request_id from another team is not that team's. */
	n.spec.team_id = other.id;
	assert_int_equal(storage__sandbox_admit(pool, &n.spec, &admission, NULL, &err),
			 STORAGE_ERR_DUPLICATE);
	json_decref((json_t *)n.spec.metadata);
	storage__sandbox_clear(&first);
	storage__sandbox_clear(&second);
}

static void test_state_transitions(void **state)
{
	struct storage_team team;
	struct storage_sandbox sandbox, changed;
	struct storage_host host = {.id = "host-a",
				    .address = "10.0.0.1",
				    .runtime = "jail",
				    .capacity = 8,
				    .running = 0,
				    .state = "ready"};
	struct storage_sandbox_event *events;
	struct storage_error err;
	size_t count;

	(void)state;
	make_team("cas", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(storage__host_heartbeat(pool, &host, &err), STORAGE_OK);
	admit_one(team.id, &sandbox);
	assert_int_equal(sandbox.started_at, -1);
	assert_string_equal(sandbox.host_id, "");
	assert_int_equal(sandbox.slot_index, -1);

	struct storage_sandbox_transition t = {
	    .sandbox_id = sandbox.id,
	    .team_id = NULL,
	    .from = STORAGE_SANDBOX_STARTING,
	    .to = STORAGE_SANDBOX_RUNNING,
	    .host_id = "host-a",
	    .slot_index = 3,
	    .slot_address = "10.11.0.3",
	};
	assert_int_equal(storage__sandbox_transition(pool, &t, &changed, &err), STORAGE_OK);
	assert_int_equal(changed.state, STORAGE_SANDBOX_RUNNING);
	assert_string_equal(changed.host_id, "host-a");
	assert_int_equal(changed.slot_index, 3);
	assert_string_equal(changed.slot_address, "10.11.0.3");
	assert_true(changed.started_at > 0);
	storage__sandbox_clear(&changed);

	/* The same CAS again: the row is no longer starting. */
	assert_int_equal(storage__sandbox_transition(pool, &t, &changed, &err),
			 STORAGE_ERR_CONFLICT);
	assert_non_null(strstr(err.message, "running"));
	/* Not an edge of the state machine: refused by the trigger. */
	t.from = STORAGE_SANDBOX_RUNNING;
	t.to = STORAGE_SANDBOX_STARTING;
	assert_int_equal(storage__sandbox_transition(pool, &t, NULL, &err), STORAGE_ERR_INVALID);
	/* running -> killing -> killed, with a reason; keeps host and slot. */
	struct storage_sandbox_transition kill = {.sandbox_id = sandbox.id,
						  .team_id = team.id,
						  .from = STORAGE_SANDBOX_RUNNING,
						  .to = STORAGE_SANDBOX_KILLING,
						  .slot_index = -1};
	assert_int_equal(storage__sandbox_transition(pool, &kill, NULL, &err), STORAGE_OK);
	kill.from = STORAGE_SANDBOX_KILLING;
	kill.to = STORAGE_SANDBOX_KILLED;
	kill.failure_reason = "killed by user";
	assert_int_equal(storage__sandbox_transition(pool, &kill, &changed, &err), STORAGE_OK);
	assert_int_equal(changed.state, STORAGE_SANDBOX_KILLED);
	assert_int_equal(changed.slot_index, 3);
	assert_string_equal(changed.failure_reason, "killed by user");
	storage__sandbox_clear(&changed);
	/* A terminal state has no way out. */
	kill.from = STORAGE_SANDBOX_KILLED;
	kill.to = STORAGE_SANDBOX_RUNNING;
	assert_int_equal(storage__sandbox_transition(pool, &kill, NULL, &err), STORAGE_ERR_INVALID);

	/* Every change is in the history, in order. */
	assert_int_equal(
	    storage__sandbox_events_list(pool, sandbox.id, 0, 100, &events, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 4);
	assert_string_equal(events[0].type, "state_changed");
	assert_string_equal(json_string_value(json_object_get(events[0].payload, "to")),
			    "starting");
	assert_string_equal(json_string_value(json_object_get(events[1].payload, "to")), "running");
	assert_string_equal(json_string_value(json_object_get(events[3].payload, "to")), "killed");
	assert_string_equal(json_string_value(json_object_get(events[3].payload, "reason")),
			    "killed by user");
	assert_true(events[1].id > events[0].id);
	storage__sandbox_events_free(events, count);
	storage__sandbox_clear(&sandbox);
}

/* Moves sandbox_id from -> to; the storage code. */
static int move(const char *sandbox_id, enum storage_sandbox_state from,
		enum storage_sandbox_state to)
{
	struct storage_sandbox_transition t = {
	    .sandbox_id = sandbox_id, .from = from, .to = to, .slot_index = -1};
	struct storage_error err;

	return storage__sandbox_transition(pool, &t, NULL, &err);
}

/* Pause and resume (0002): pausing/paused/resuming, the lifecycle columns,
 * and a pause racing a kill: whichever compare-and-set comes second finds
 * the row moved, so the sandbox ends in exactly one state. */
static void test_pause_states(void **state)
{
	struct storage_team team;
	struct storage_sandbox sandbox, row;
	struct storage_host host = {.id = "host-p",
				    .address = "10.0.0.2",
				    .runtime = "jail",
				    .capacity = 8,
				    .running = 0,
				    .state = "ready"};
	struct storage_sandbox_list list;
	struct storage_sandbox_filter filter = {
	    .states = STORAGE_STATE_BIT(STORAGE_SANDBOX_PAUSED),
	};
	struct storage_error err;
	enum storage_sandbox_state parsed;

	(void)state;
	assert_true(storage__sandbox_state_parse("pausing", &parsed));
	assert_int_equal(parsed, STORAGE_SANDBOX_PAUSING);
	assert_string_equal(storage__sandbox_state_name(STORAGE_SANDBOX_RESUMING), "resuming");
	make_team("pause", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(storage__host_heartbeat(pool, &host, &err), STORAGE_OK);
	admit_one(team.id, &sandbox);
	assert_false(sandbox.pause_on_timeout);
	assert_int_equal(storage__sandbox_set_lifecycle(pool, sandbox.id, true, true, &err),
			 STORAGE_OK);
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_STARTING, STORAGE_SANDBOX_RUNNING),
			 STORAGE_OK);
	assert_int_equal(storage__sandbox_get_internal(pool, sandbox.id, &row, &err), STORAGE_OK);
	assert_true(row.pause_on_timeout);
	assert_true(row.auto_resume);
	storage__sandbox_clear(&row);

	/* pause, resume, pause again */
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_RUNNING, STORAGE_SANDBOX_PAUSING),
			 STORAGE_OK);
	/* a second pause's compare-and-set loses (the API's 409) */
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_RUNNING, STORAGE_SANDBOX_PAUSING),
			 STORAGE_ERR_CONFLICT);
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_PAUSING, STORAGE_SANDBOX_PAUSED),
			 STORAGE_OK);
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 1);
	assert_string_equal(list.items[0].id, sandbox.id);
	storage__sandbox_list_free(&list);
	/* a paused sandbox's end_at can be reset (resume sets it) */
	assert_int_equal(storage__sandbox_set_timeout(pool, team.id, sandbox.id, 60, NULL, &err),
			 STORAGE_OK);
	/* paused -> running directly is not an edge: resume goes through resuming */
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_PAUSED, STORAGE_SANDBOX_RUNNING),
			 STORAGE_ERR_INVALID);
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_PAUSED, STORAGE_SANDBOX_RESUMING),
			 STORAGE_OK);
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_RESUMING, STORAGE_SANDBOX_RUNNING),
			 STORAGE_OK);

	/* pause racing kill: the kill lands while pausing; the pause's last
	 * step then conflicts and the sandbox stays killed */
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_RUNNING, STORAGE_SANDBOX_PAUSING),
			 STORAGE_OK);
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_PAUSING, STORAGE_SANDBOX_KILLED),
			 STORAGE_OK);
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_PAUSING, STORAGE_SANDBOX_PAUSED),
			 STORAGE_ERR_CONFLICT);
	assert_int_equal(move(sandbox.id, STORAGE_SANDBOX_KILLED, STORAGE_SANDBOX_PAUSED),
			 STORAGE_ERR_INVALID);
	assert_int_equal(storage__sandbox_get_internal(pool, sandbox.id, &row, &err), STORAGE_OK);
	assert_int_equal(row.state, STORAGE_SANDBOX_KILLED);
	storage__sandbox_clear(&row);
	storage__sandbox_clear(&sandbox);
}

static void test_team_isolation(void **state)
{
	struct storage_team mine, theirs;
	struct storage_sandbox sandbox, got;
	struct storage_sandbox_list list;
	struct storage_error err;
	int64_t end_at;

	(void)state;
	make_team("iso-a", STORAGE_TIER_HOBBY, &mine);
	make_team("iso-b", STORAGE_TIER_HOBBY, &theirs);
	admit_one(mine.id, &sandbox);

	assert_int_equal(storage__sandbox_get(pool, mine.id, sandbox.id, &got, &err), STORAGE_OK);
	storage__sandbox_clear(&got);
	assert_int_equal(storage__sandbox_get(pool, theirs.id, sandbox.id, &got, &err),
			 STORAGE_ERR_NOT_FOUND);
	assert_int_equal(storage__sandbox_get(pool, mine.id, "i00000000000000000000", &got, &err),
			 STORAGE_ERR_NOT_FOUND);
	assert_int_equal(storage__sandbox_get(pool, mine.id, "'; DROP TABLE x; --", &got, &err),
			 STORAGE_ERR_NOT_FOUND);
	struct storage_sandbox_transition t = {.sandbox_id = sandbox.id,
					       .team_id = theirs.id,
					       .from = STORAGE_SANDBOX_STARTING,
					       .to = STORAGE_SANDBOX_KILLED,
					       .slot_index = -1};
	assert_int_equal(storage__sandbox_transition(pool, &t, NULL, &err), STORAGE_ERR_NOT_FOUND);
	assert_int_equal(
	    storage__sandbox_set_timeout(pool, theirs.id, sandbox.id, 60, &end_at, &err),
	    STORAGE_ERR_NOT_FOUND);
	assert_int_equal(storage__sandbox_list(pool, theirs.id, NULL, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 0);
	storage__sandbox_list_free(&list);
	/* The owner can. */
	assert_int_equal(storage__sandbox_set_timeout(pool, mine.id, sandbox.id, 60, &end_at, &err),
			 STORAGE_OK);
	assert_true(end_at > 0);
	assert_int_equal(storage__sandbox_get_internal(pool, sandbox.id, &got, &err), STORAGE_OK);
	assert_true(got.end_at == end_at);
	storage__sandbox_clear(&got);
	storage__sandbox_clear(&sandbox);
}

static void test_pagination(void **state)
{
	struct storage_team team;
	struct storage_sandbox_list list;
	struct storage_sandbox_filter filter = {.limit = 10};
	struct storage_error err;
	char seen[25][IDS_SANDBOX_ID_LEN + 1], token[STORAGE_PAGE_TOKEN_MAX] = "";
	size_t total = 0;
	int pages = 0;
	json_t *tagged = json_pack("{s:s}", "kind", "batch");

	(void)state;
	make_team("pages", STORAGE_TIER_PRO, &team);
	for (int i = 0; i < 25; i++) {
		struct new_sandbox n;
		struct storage_admission admission;

		new_sandbox_init(&n, team.id);
		n.spec.metadata = i % 2 ? tagged : NULL;
		assert_int_equal(storage__sandbox_admit(pool, &n.spec, &admission, NULL, &err),
				 STORAGE_OK);
		assert_true(admission.admitted);
	}
	do {
		filter.page_token = token;
		assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err),
				 STORAGE_OK);
		pages++;
		for (size_t i = 0; i < list.count; i++) {
			for (size_t j = 0; j < total; j++)
				assert_string_not_equal(seen[j], list.items[i].id);
			assert_true(total < 25);
			memcpy(seen[total++], list.items[i].id, IDS_SANDBOX_ID_LEN + 1);
			if (i > 0) /* newest first */
				assert_true(list.items[i].created_at <=
					    list.items[i - 1].created_at);
		}
		memcpy(token, list.next_token, sizeof(token));
		assert_int_equal(list.count, pages < 3 ? 10 : 5);
		storage__sandbox_list_free(&list);
	} while (token[0]);
	assert_int_equal(pages, 3);
	assert_int_equal(total, 25);

	/* Metadata and state filters. */
	filter = (struct storage_sandbox_filter){.metadata = tagged, .limit = 100};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 12);
	assert_string_equal(list.next_token, "");
	storage__sandbox_list_free(&list);
	filter =
	    (struct storage_sandbox_filter){.states = STORAGE_STATE_BIT(STORAGE_SANDBOX_RUNNING)};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 0);
	storage__sandbox_list_free(&list);
	/* Hostile input. */
	filter = (struct storage_sandbox_filter){.limit = 101};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err),
			 STORAGE_ERR_INVALID);
	filter = (struct storage_sandbox_filter){.page_token = "not a token"};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err),
			 STORAGE_ERR_INVALID);
	json_decref(tagged);
}

struct admit_worker {
	const char *team_id;
	int admitted;
	int refused;
	int errors;
};

static void *admit_thread(void *arg)
{
	struct admit_worker *worker = arg;

	for (int i = 0; i < 4; i++) {
		struct new_sandbox n;
		struct storage_admission admission;
		struct storage_error err;

		new_sandbox_init(&n, worker->team_id);
		if (storage__sandbox_admit(pool, &n.spec, &admission, NULL, &err)) {
			fprintf(stderr, "admit: %s\n", err.message);
			worker->errors++;
		} else if (admission.admitted) {
			worker->admitted++;
		} else {
			worker->refused++;
		}
	}
	return NULL;
}

/* 8 threads x 4 attempts over a pool of 2 connections: exactly the limit
 * gets in (docs/e2b-compatibility.md: concurrency counts running + starting). */
static void test_admit_concurrency(void **state)
{
	struct storage_team team;
	struct admit_worker workers[8];
	pthread_t threads[8];
	struct storage_error err;
	int admitted = 0, refused = 0;
	int32_t active;

	(void)state;
	make_team("admit", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(
	    storage__team_set_limit(pool, team.id, "concurrent_sandboxes", 5, &team, &err),
	    STORAGE_OK);
	for (int i = 0; i < 8; i++) {
		workers[i] = (struct admit_worker){.team_id = team.id};
		assert_int_equal(pthread_create(&threads[i], NULL, admit_thread, &workers[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(threads[i], NULL);
		assert_int_equal(workers[i].errors, 0);
		admitted += workers[i].admitted;
		refused += workers[i].refused;
	}
	assert_int_equal(admitted, 5);
	assert_int_equal(refused, 27);
	assert_int_equal(storage__sandbox_count_active(pool, team.id, &active, &err), STORAGE_OK);
	assert_int_equal(active, 5);
}

/* Terminates every backend of the test database but the caller's and
 * waits until they are gone. */
static void terminate_pool_backends(void)
{
	char sql[512], value[32];

	snprintf(sql, sizeof(sql),
		 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
		 " WHERE datname = '%s' AND pid <> pg_backend_pid()",
		 db.name);
	assert_true(test_db__sql(&db, sql, value, sizeof(value)));
	assert_true(atoi(value) >= 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
		 " AND pid <> pg_backend_pid()",
		 db.name);
	for (int i = 0; i < 100; i++) {
		assert_true(test_db__sql(&db, sql, value, sizeof(value)));
		if (!strcmp(value, "0"))
			return;
		usleep(50 * 1000);
	}
	fail_msg("backends still alive after pg_terminate_backend");
}

struct reader {
	const char *team_id;
	int failures;
};

static void *reader_thread(void *arg)
{
	struct reader *reader = arg;

	for (int i = 0; i < 5; i++) {
		struct storage_team got;
		struct storage_error err;

		if (storage__team_get(pool, reader->team_id, &got, &err)) {
			fprintf(stderr, "team_get after terminate: %s\n", err.message);
			reader->failures++;
		}
	}
	return NULL;
}

static void test_reconnect(void **state)
{
	struct storage_team team, got;
	struct storage_sandbox sandbox;
	struct storage_error err;
	int64_t event_id;

	(void)state;
	make_team("reconnect", STORAGE_TIER_HOBBY, &team);
	admit_one(team.id, &sandbox);
	terminate_pool_backends();
	/* Reads are retried once on a fresh connection: both pooled
	 * connections were dead, so run enough calls to touch both. */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(storage__team_get(pool, team.id, &got, &err), STORAGE_OK);
		assert_string_equal(got.name, team.name);
	}
	/* Both pooled connections dead at once, used by concurrent readers. */
	terminate_pool_backends();
	{
		struct reader readers[4];
		pthread_t threads[4];

		for (int i = 0; i < 4; i++) {
			readers[i] = (struct reader){.team_id = team.id};
			assert_int_equal(
			    pthread_create(&threads[i], NULL, reader_thread, &readers[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(threads[i], NULL);
			assert_int_equal(readers[i].failures, 0);
		}
	}
	/* Prepared on the (sequentially reused) first connection... */
	assert_int_equal(
	    storage__sandbox_event_append(pool, sandbox.id, "probe", NULL, &event_id, &err),
	    STORAGE_OK);
	terminate_pool_backends();
	/* ...an append that was sent is not rerun (it could append twice):
	 * UNAVAILABLE, and the connection is already reset for the next call. */
	int rc = storage__sandbox_event_append(pool, sandbox.id, "probe", NULL, &event_id, &err);
	assert_int_equal(rc, STORAGE_ERR_UNAVAILABLE);
	for (int i = 0; i < 4; i++)
		assert_int_equal(
		    storage__sandbox_event_append(pool, sandbox.id, "probe", NULL, &event_id, &err),
		    STORAGE_OK);
	storage__sandbox_clear(&sandbox);
}

static void test_requests(void **state)
{
	struct storage_team team, other;
	struct storage_request request;
	struct storage_error err;
	char request_id[IDS_UUID_LEN + 1];
	bool created;
	json_t *result = json_pack("{s:s}", "sandboxID", "iabcdefghij0123456789");

	(void)state;
	make_team("requests", STORAGE_TIER_HOBBY, &team);
	make_team("requests-other", STORAGE_TIER_HOBBY, &other);
	assert_int_equal(ids__uuid(request_id), 0);
	assert_int_equal(storage__request_begin(pool, request_id, team.id, "create", NULL, &created,
						&request, &err),
			 STORAGE_OK);
	assert_true(created);
	assert_int_equal(request.status, STORAGE_REQUEST_PENDING);
	assert_null(request.result);
	storage__request_clear(&request);
	assert_int_equal(storage__request_begin(pool, request_id, team.id, "create", NULL, &created,
						&request, &err),
			 STORAGE_OK);
	assert_false(created);
	storage__request_clear(&request);
	assert_int_equal(storage__request_begin(pool, request_id, other.id, "create", NULL,
						&created, NULL, &err),
			 STORAGE_ERR_DUPLICATE);

	assert_int_equal(
	    storage__request_finish(pool, request_id, STORAGE_REQUEST_DONE, result, &err),
	    STORAGE_OK);
	assert_int_equal(
	    storage__request_finish(pool, request_id, STORAGE_REQUEST_FAILED, NULL, &err),
	    STORAGE_ERR_CONFLICT);
	assert_int_equal(storage__request_get(pool, request_id, &request, &err), STORAGE_OK);
	assert_int_equal(request.status, STORAGE_REQUEST_DONE);
	assert_true(request.finished_at >= request.created_at);
	assert_true(json_equal(request.result, result));
	storage__request_clear(&request);
	assert_int_equal(ids__uuid(request_id), 0);
	assert_int_equal(
	    storage__request_finish(pool, request_id, STORAGE_REQUEST_DONE, NULL, &err),
	    STORAGE_ERR_NOT_FOUND);
	json_decref(result);
}

static void count_notification(const char *payload, void *opaque)
{
	json_t *event = json_loads(payload, 0, NULL);

	assert_non_null(event);
	assert_string_equal(json_string_value(json_object_get(event, "type")), "created");
	json_decref(event);
	(*(int *)opaque)++;
}

/* Waits up to 2 s for the listener's notifications; their count. */
static int listen_for(struct storage_listener *listener, int want)
{
	int got = 0;

	for (int i = 0; i < 20 && got < want; i++) {
		struct pollfd socket = {.fd = storage__listener_fd(listener), .events = POLLIN};

		if (poll(&socket, 1, 100) > 0)
			assert_true(storage__listener_drain(listener, count_notification, &got) >=
				    0);
	}
	return got;
}

/* A finish with an event notifies the listeners at its commit; a second
 * finish, a finish without one and an event too long for NOTIFY do not
 * (the row is recorded all the same). */
static void test_request_notifications(void **state)
{
	struct storage_settings settings;
	struct storage_listener *listener;
	struct storage_request request;
	struct storage_team team;
	struct storage_error err;
	char request_id[IDS_UUID_LEN + 1], *long_event;
	bool created;
	json_t *result = json_object();
	const char *event = "{\"version\":1,\"type\":\"created\"}";

	(void)state;
	storage_settings__for_url(&settings, db.url, 1);
	listener = storage__listener_open(&settings, STORAGE_RESULTS_CHANNEL, &err);
	assert_non_null(listener);
	make_team("notify", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(ids__uuid(request_id), 0);
	assert_int_equal(
	    storage__request_begin(pool, request_id, team.id, "create", NULL, &created, NULL, &err),
	    STORAGE_OK);
	assert_int_equal(storage__request_finish_notify(pool, request_id, STORAGE_REQUEST_DONE,
							result, event, &err),
			 STORAGE_OK);
	assert_int_equal(listen_for(listener, 1), 1);
	assert_int_equal(storage__request_finish_notify(pool, request_id, STORAGE_REQUEST_DONE,
							result, event, &err),
			 STORAGE_ERR_CONFLICT);
	assert_int_equal(ids__uuid(request_id), 0);
	assert_int_equal(
	    storage__request_begin(pool, request_id, team.id, "create", NULL, &created, NULL, &err),
	    STORAGE_OK);
	long_event = calloc(STORAGE_NOTIFY_PAYLOAD_MAX + 2, 1);
	assert_non_null(long_event);
	memset(long_event, ' ', STORAGE_NOTIFY_PAYLOAD_MAX + 1);
	assert_int_equal(storage__request_finish_notify(pool, request_id, STORAGE_REQUEST_DONE,
							result, long_event, &err),
			 STORAGE_OK);
	free(long_event);
	assert_int_equal(storage__request_get(pool, request_id, &request, &err), STORAGE_OK);
	assert_int_equal(request.status, STORAGE_REQUEST_DONE);
	storage__request_clear(&request);
	assert_int_equal(listen_for(listener, 1), 0);
	storage__listener_close(listener);
	json_decref(result);
}

/* A team's own built template is that team's only; a deleted one is no
 * one's; the others are everyone's (storage__template_get_for_team). */
static void test_template_for_team(void **state)
{
	struct storage_template template_in = {.agent_version = "0.1.0",
					       .image_path = "/var/lib/warren/own.img"};
	struct storage_template out;
	struct storage_team owner, other;
	struct storage_error err;
	char sql[256];

	(void)state;
	make_team("tpl-owner", STORAGE_TIER_HOBBY, &owner);
	make_team("tpl-other", STORAGE_TIER_HOBBY, &other);
	snprintf(template_in.id, sizeof(template_in.id), "own-build");
	tokens__sha256_hex("own", 3, template_in.content_hash);
	/* the team's row first (a build), then its image (the build's end) */
	assert_int_equal(storage__template_build_create(pool, owner.id, "own-build",
							"00000000-0000-4000-8000-00000000b01d", 2,
							512, &err),
			 STORAGE_OK);
	assert_int_equal(storage__template_upsert(pool, &template_in, &err), STORAGE_OK);
	assert_int_equal(storage__template_get_for_team(pool, owner.id, "own-build", &out, &err),
			 STORAGE_OK);
	assert_string_equal(out.image_path, "/var/lib/warren/own.img");
	assert_int_equal(storage__template_get_for_team(pool, other.id, "own-build", &out, &err),
			 STORAGE_ERR_NOT_FOUND);
	assert_int_equal(storage__template_get_for_team(pool, other.id, template_id, &out, &err),
			 STORAGE_OK);
	assert_int_equal(storage__template_get_for_team(pool, owner.id, "no-such", &out, &err),
			 STORAGE_ERR_NOT_FOUND);
	snprintf(sql, sizeof(sql),
		 "UPDATE team_templates SET deleted_at = now() WHERE id = 'own-build'");
	assert_true(test_db__sql(&db, sql, NULL, 0));
	assert_int_equal(storage__template_get_for_team(pool, owner.id, "own-build", &out, &err),
			 STORAGE_ERR_NOT_FOUND);
}

static void test_api_keys(void **state)
{
	struct storage_team team, found;
	struct storage_api_key key, *keys;
	struct storage_error err;
	char api_key[45], hash[TOKENS_SHA256_HEX_LEN + 1];
	size_t count;

	(void)state;
	make_team("keys", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(ids__api_key(api_key), 0);
	tokens__sha256_hex(api_key, strlen(api_key), hash);
	assert_int_equal(storage__api_key_create(pool, team.id, hash, "e2b_1234", &key, &err),
			 STORAGE_OK);
	assert_int_equal(storage__api_key_create(pool, team.id, hash, "e2b_1234", NULL, &err),
			 STORAGE_ERR_DUPLICATE);
	assert_int_equal(storage__api_key_authenticate(pool, hash, &found, &err), STORAGE_OK);
	assert_string_equal(found.id, team.id);
	assert_int_equal(storage__api_key_list(pool, team.id, &keys, &count, &err), STORAGE_OK);
	assert_int_equal(count, 1);
	assert_true(keys[0].last_used_at > 0);
	assert_int_equal(keys[0].revoked_at, -1);
	free(keys);
	assert_int_equal(storage__api_key_revoke(pool, key.id, &err), STORAGE_OK);
	assert_int_equal(storage__api_key_revoke(pool, key.id, &err), STORAGE_ERR_NOT_FOUND);
	assert_int_equal(storage__api_key_authenticate(pool, hash, &found, &err),
			 STORAGE_ERR_NOT_FOUND);
}

static void test_hosts_and_expiry(void **state)
{
	struct storage_team team;
	struct storage_sandbox a, b;
	struct storage_host host = {.id = "host-expiry",
				    .address = "10.0.0.2",
				    .runtime = "vm",
				    .capacity = 4},
			    *hosts;
	struct storage_sandbox_list list;
	struct storage_error err;
	char sql[256];
	size_t count;
	bool seen = false;

	(void)state;
	make_team("expiry", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(storage__host_heartbeat(pool, &host, &err), STORAGE_OK);
	host.running = 2;
	host.protocol_version = 7; /* 0007: the worker's event version, read back */
	assert_int_equal(storage__host_heartbeat(pool, &host, &err), STORAGE_OK);
	snprintf(host.runtime, sizeof(host.runtime), "kvm");
	assert_int_equal(storage__host_heartbeat(pool, &host, &err), STORAGE_ERR_INVALID);
	assert_int_equal(storage__host_list(pool, &hosts, &count, &err), STORAGE_OK);
	for (size_t i = 0; i < count; i++) {
		if (strcmp(hosts[i].id, "host-expiry"))
			continue;
		seen = true;
		assert_int_equal(hosts[i].running, 2);
		assert_int_equal(hosts[i].protocol_version, 7);
		assert_string_equal(hosts[i].runtime, "vm");
		assert_string_equal(hosts[i].state, "ready");
	}
	free(hosts);
	assert_true(seen);

	admit_one(team.id, &a);
	admit_one(team.id, &b);
	for (int i = 0; i < 2; i++) {
		struct storage_sandbox_transition t = {
		    .sandbox_id = i ? b.id : a.id,
		    .from = STORAGE_SANDBOX_STARTING,
		    .to = STORAGE_SANDBOX_RUNNING,
		    .host_id = "host-expiry",
		    .slot_index = i,
		};
		assert_int_equal(storage__sandbox_transition(pool, &t, NULL, &err), STORAGE_OK);
	}
	snprintf(sql, sizeof(sql),
		 "UPDATE sandboxes SET end_at = now() - interval '1 second' WHERE id = '%s'", a.id);
	assert_true(test_db__sql(&db, sql, NULL, 0));
	assert_int_equal(storage__sandbox_list_expired(pool, "host-expiry", 10, &list, &err),
			 STORAGE_OK);
	assert_int_equal(list.count, 1);
	assert_string_equal(list.items[0].id, a.id);
	storage__sandbox_list_free(&list);
	assert_int_equal(
	    storage__sandbox_list_by_host(pool, "host-expiry", STORAGE_STATES_ACTIVE, &list, &err),
	    STORAGE_OK);
	assert_int_equal(list.count, 2);
	storage__sandbox_list_free(&list);
	storage__sandbox_clear(&a);
	storage__sandbox_clear(&b);
}

static void test_rate_limits_and_admin(void **state)
{
	struct storage_team team;
	struct storage_admin_rejections *rejections;
	struct storage_admin_running *running;
	struct storage_sandbox sandbox;
	struct storage_error err;
	size_t count;
	int64_t tat;
	bool found, seen = false;

	(void)state;
	make_team("limiter", STORAGE_TIER_HOBBY, &team);
	assert_int_equal(storage__rate_limit_load(pool, team.id, &found, &tat, &err), STORAGE_OK);
	assert_false(found);
	assert_int_equal(storage__rate_limit_store(pool, team.id, false, 0, 1000, &err),
			 STORAGE_OK);
	assert_int_equal(storage__rate_limit_store(pool, team.id, false, 0, 1001, &err),
			 STORAGE_ERR_CONFLICT);
	assert_int_equal(storage__rate_limit_store(pool, team.id, true, 999, 1002, &err),
			 STORAGE_ERR_CONFLICT);
	assert_int_equal(storage__rate_limit_store(pool, team.id, true, 1000, 1003, &err),
			 STORAGE_OK);
	assert_int_equal(storage__rate_limit_load(pool, team.id, &found, &tat, &err), STORAGE_OK);
	assert_true(found);
	assert_true(tat == 1003);

	assert_int_equal(
	    storage__rate_limit_record_rejection(pool, team.id, "concurrent_sandboxes", &err),
	    STORAGE_OK);
	assert_int_equal(
	    storage__rate_limit_record_rejection(pool, team.id, "concurrent_sandboxes", &err),
	    STORAGE_OK);
	assert_int_equal(storage__admin_rejections(pool, 5, &rejections, &count, &err), STORAGE_OK);
	for (size_t i = 0; i < count; i++) {
		if (strcmp(rejections[i].team, team.name))
			continue;
		seen = true;
		assert_string_equal(rejections[i].limit_name, "concurrent_sandboxes");
		assert_true(rejections[i].rejections == 2);
	}
	free(rejections);
	assert_true(seen);

	admit_one(team.id, &sandbox);
	storage__sandbox_clear(&sandbox);
	seen = false;
	assert_int_equal(storage__admin_running(pool, &running, &count, &err), STORAGE_OK);
	for (size_t i = 0; i < count; i++) {
		if (strcmp(running[i].team, team.name))
			continue;
		seen = true;
		assert_int_equal(running[i].starting, 1);
		assert_int_equal(running[i].running, 0);
		assert_int_equal(running[i].limit, 20);
	}
	free(running);
	assert_true(seen);
}

/* Latency figures for the report (printed; asserts only success):
 * sequential admits and team-isolated gets on one pooled connection. */
static void test_timings(void **state)
{
	struct storage_team team;
	struct storage_sandbox sandbox;
	struct storage_error err;
	struct timespec start, end;
	char ids[200][IDS_SANDBOX_ID_LEN + 1];
	double admit_ms, get_ms;

	(void)state;
	make_team("timing", STORAGE_TIER_ENTERPRISE, &team);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int i = 0; i < 200; i++) {
		struct new_sandbox n;
		struct storage_admission admission;

		new_sandbox_init(&n, team.id);
		assert_int_equal(storage__sandbox_admit(pool, &n.spec, &admission, NULL, &err),
				 STORAGE_OK);
		assert_true(admission.admitted);
		memcpy(ids[i], n.id, sizeof(ids[i]));
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	admit_ms = ((double)(end.tv_sec - start.tv_sec) * 1e3 +
		    (double)(end.tv_nsec - start.tv_nsec) / 1e6) /
		   200;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(storage__sandbox_get(pool, team.id, ids[i % 200], &sandbox, &err),
				 STORAGE_OK);
		storage__sandbox_clear(&sandbox);
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	get_ms = ((double)(end.tv_sec - start.tv_sec) * 1e3 +
		  (double)(end.tv_nsec - start.tv_nsec) / 1e6) /
		 1000;
	printf("timing: sandbox_admit %.3f ms/call (200 sequential, 200 active in the team), "
	       "sandbox_get %.3f ms/call (1000 sequential)\n",
	       admit_ms, get_ms);
}

/* order=asc pages oldest first; template and startedAfter/Before filters. */
static void test_list_order_and_filters(void **state)
{
	struct storage_team team;
	struct storage_sandbox_list list;
	struct storage_sandbox_filter filter = {.limit = 4, .ascending = true};
	struct storage_template other = {
	    .id = "other-tpl", .agent_version = "0.1.0", .image_path = "/var/lib/warren/other.img"};
	struct storage_error err;
	char token[STORAGE_PAGE_TOKEN_MAX] = "";
	int64_t previous = 0, middle = 0;
	size_t total = 0;

	(void)state;
	tokens__sha256_hex("other", 5, other.content_hash);
	assert_int_equal(storage__template_upsert(pool, &other, &err), STORAGE_OK);
	make_team("order", STORAGE_TIER_PRO, &team);
	for (int i = 0; i < 10; i++) {
		struct new_sandbox n;
		struct storage_admission admission;

		new_sandbox_init(&n, team.id);
		if (i >= 7)
			n.spec.template_id = other.id;
		assert_int_equal(storage__sandbox_admit(pool, &n.spec, &admission, NULL, &err),
				 STORAGE_OK);
	}
	do {
		filter.page_token = token;
		assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err),
				 STORAGE_OK);
		for (size_t i = 0; i < list.count; i++) {
			assert_true(list.items[i].created_at >= previous); /* oldest first */
			previous = list.items[i].created_at;
			if (++total == 5)
				middle = previous;
		}
		memcpy(token, list.next_token, sizeof(token));
		storage__sandbox_list_free(&list);
	} while (token[0]);
	assert_int_equal(total, 10);

	filter = (struct storage_sandbox_filter){.template_id = "other-tpl"};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 3);
	assert_string_equal(list.items[0].template_id, "other-tpl");
	storage__sandbox_list_free(&list);
	filter = (struct storage_sandbox_filter){.template_id = "nope"};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 0);
	storage__sandbox_list_free(&list);

	/* created_at is kept in microseconds: a bound at the fifth one's
	 * millisecond keeps at least the last five (created after it). */
	filter = (struct storage_sandbox_filter){.started_after_ms = middle};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_true(list.count >= 5 && list.count <= 10);
	for (size_t i = 0; i < list.count; i++)
		assert_true(list.items[i].created_at >= middle);
	storage__sandbox_list_free(&list);
	filter = (struct storage_sandbox_filter){.started_after_ms = clock__realtime_ms() + 60000};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 0);
	storage__sandbox_list_free(&list);
	filter = (struct storage_sandbox_filter){.started_before_ms = 1000};
	assert_int_equal(storage__sandbox_list(pool, team.id, &filter, &list, &err), STORAGE_OK);
	assert_int_equal(list.count, 0);
	storage__sandbox_list_free(&list);
}

/* Metric samples: stored, read back by time range and team only, the
 * newest per sandbox, pruned by age. */
static void test_sandbox_metrics(void **state)
{
	struct storage_team team, stranger;
	struct storage_sandbox a, b;
	struct storage_sandbox_metric sample = {.cpu_count = 2,
						.mem_total = 512 << 20,
						.disk_total = 1 << 30},
				      *out = NULL;
	struct storage_error err;
	int64_t now = clock__realtime_ms(), deleted = -1;
	const char *ids[2];
	size_t count = 0;

	(void)state;
	make_team("metrics", STORAGE_TIER_PRO, &team);
	make_team("metrics-other", STORAGE_TIER_PRO, &stranger);
	admit_one(team.id, &a);
	admit_one(team.id, &b);
	for (int i = 0; i < 5; i++) {
		snprintf(sample.sandbox_id, sizeof(sample.sandbox_id), "%s", a.id);
		sample.at = now - (4 - i) * 5000;
		sample.cpu_used_pct = 10.0 * i;
		sample.mem_used = (int64_t)i << 20;
		assert_int_equal(storage__sandbox_metric_insert(pool, &sample, &err), STORAGE_OK);
	}
	/* The same instant again is ignored (a retried insert). */
	assert_int_equal(storage__sandbox_metric_insert(pool, &sample, &err), STORAGE_OK);
	snprintf(sample.sandbox_id, sizeof(sample.sandbox_id), "%s", b.id);
	sample.at = now - 1000;
	assert_int_equal(storage__sandbox_metric_insert(pool, &sample, &err), STORAGE_OK);
	sample.mem_used = -1;
	assert_int_equal(storage__sandbox_metric_insert(pool, &sample, &err), STORAGE_ERR_INVALID);

	assert_int_equal(storage__sandbox_metrics_list(pool, team.id, a.id, now - 60000, now, &out,
						       &count, &err),
			 STORAGE_OK);
	assert_int_equal(count, 5);
	assert_int_equal(out[0].at, now - 20000);
	assert_int_equal(out[4].at, now);
	assert_true(out[4].cpu_used_pct > 39.9 && out[4].cpu_used_pct < 40.1);
	assert_int_equal(out[3].mem_used, 3 << 20);
	assert_int_equal(out[3].cpu_count, 2);
	assert_int_equal(out[3].disk_total, 1 << 30);
	free(out);
	assert_int_equal(storage__sandbox_metrics_list(pool, team.id, a.id, now - 12000, now - 4000,
						       &out, &count, &err),
			 STORAGE_OK);
	assert_int_equal(count, 2);
	free(out);
	/* Another team sees nothing. */
	assert_int_equal(
	    storage__sandbox_metrics_list(pool, stranger.id, a.id, 0, now, &out, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 0);
	free(out);

	ids[0] = a.id;
	ids[1] = b.id;
	assert_int_equal(storage__sandbox_metrics_latest(pool, team.id, ids, 2, &out, &count, &err),
			 STORAGE_OK);
	assert_int_equal(count, 2);
	for (size_t i = 0; i < count; i++)
		assert_int_equal(out[i].at, strcmp(out[i].sandbox_id, a.id) ? now - 1000 : now);
	free(out);
	assert_int_equal(
	    storage__sandbox_metrics_latest(pool, stranger.id, ids, 2, &out, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 0);
	free(out);
	ids[1] = "x'); DROP TABLE sandbox_metrics; --";
	assert_int_equal(storage__sandbox_metrics_latest(pool, team.id, ids, 2, &out, &count, &err),
			 STORAGE_ERR_INVALID);

	/* Keep 10 s: the three older samples of a go. */
	assert_int_equal(storage__sandbox_metrics_prune(pool, 10, &deleted, &err), STORAGE_OK);
	assert_true(deleted >= 3);
	assert_int_equal(
	    storage__sandbox_metrics_list(pool, team.id, a.id, 0, now, &out, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 2);
	free(out);
	storage__sandbox_clear(&a);
	storage__sandbox_clear(&b);
}

/* Log lines: console lines stored, lifecycle lines from state changes,
 * both in time order, filtered by level and substring, team-scoped,
 * pruned once the sandbox has ended long enough. */
static void test_sandbox_logs(void **state)
{
	struct storage_team team, stranger;
	struct storage_sandbox sandbox;
	int64_t now = clock__realtime_ms(), deleted = -1;
	char hello[] = "hello from the agent", oops[] = "oops: disk full", latin[] = "caf\xe9";
	struct storage_log_line lines[3] =
	    {
		{.at = now + 10, .level = "info", .message = hello},
		{.at = now + 20, .level = "error", .message = oops},
		{.at = now + 30, .level = "debug", .message = latin},
	    },
				*out = NULL;
	struct storage_logs_query query = {.cursor_ms = 0, .forward = true, .limit = 100};
	struct storage_sandbox_transition t;
	struct storage_error err;
	size_t count = 0;

	(void)state;
	make_team("logs", STORAGE_TIER_PRO, &team);
	make_team("logs-other", STORAGE_TIER_PRO, &stranger);
	admit_one(team.id, &sandbox);
	/* Lines after the admission's state change, before the kill below. */
	usleep(20 * 1000);
	now = clock__realtime_ms();
	for (int i = 0; i < 3; i++)
		lines[i].at = now + 10 * (i + 1);
	assert_int_equal(storage__sandbox_logs_append(pool, sandbox.id, lines, 3, &err),
			 STORAGE_OK);
	assert_int_equal(
	    storage__sandbox_logs_list(pool, team.id, sandbox.id, &query, &out, &count, &err),
	    STORAGE_OK);
	/* "sandbox starting" (admission) first, then the three lines. */
	assert_int_equal(count, 4);
	assert_string_equal(out[0].source, "lifecycle");
	assert_string_equal(out[0].message, "sandbox starting");
	assert_string_equal(out[1].message, "hello from the agent");
	assert_string_equal(out[2].level, "error");
	assert_string_equal(out[3].message, "caf?"); /* not UTF-8: replaced */
	assert_int_equal(out[3].at, now + 30);
	storage__sandbox_logs_free(out, count);

	query = (struct storage_logs_query){
	    .cursor_ms = now + 1000, .forward = false, .limit = 2, .min_level = "info"};
	assert_int_equal(
	    storage__sandbox_logs_list(pool, team.id, sandbox.id, &query, &out, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 2); /* newest first, debug left out */
	assert_string_equal(out[0].message, "oops: disk full");
	assert_string_equal(out[1].message, "hello from the agent");
	storage__sandbox_logs_free(out, count);
	query = (struct storage_logs_query){.forward = true, .limit = 10, .search = "disk"};
	assert_int_equal(
	    storage__sandbox_logs_list(pool, team.id, sandbox.id, &query, &out, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 1);
	storage__sandbox_logs_free(out, count);
	query = (struct storage_logs_query){.forward = true, .limit = 10};
	assert_int_equal(
	    storage__sandbox_logs_list(pool, stranger.id, sandbox.id, &query, &out, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 0);
	storage__sandbox_logs_free(out, count);
	query.min_level = "loud";
	assert_int_equal(
	    storage__sandbox_logs_list(pool, team.id, sandbox.id, &query, &out, &count, &err),
	    STORAGE_ERR_INVALID);
	lines[0].level[0] = 'x';
	assert_int_equal(storage__sandbox_logs_append(pool, sandbox.id, lines, 1, &err),
			 STORAGE_ERR_INVALID);

	/* Ended: its lines stay until it is older than the retention. */
	usleep(50 * 1000);
	t = (struct storage_sandbox_transition){.sandbox_id = sandbox.id,
						.team_id = team.id,
						.from = STORAGE_SANDBOX_STARTING,
						.to = STORAGE_SANDBOX_KILLED,
						.slot_index = -1};
	assert_int_equal(storage__sandbox_transition(pool, &t, NULL, &err), STORAGE_OK);
	assert_int_equal(storage__sandbox_logs_prune(pool, 3600, &deleted, &err), STORAGE_OK);
	assert_int_equal(deleted, 0);
	query = (struct storage_logs_query){.forward = true, .limit = 10};
	assert_int_equal(
	    storage__sandbox_logs_list(pool, team.id, sandbox.id, &query, &out, &count, &err),
	    STORAGE_OK);
	assert_int_equal(count, 5);
	assert_string_equal(out[4].message, "sandbox starting -> killed");
	storage__sandbox_logs_free(out, count);
	assert_int_equal(storage__sandbox_logs_prune(pool, 0, &deleted, &err), STORAGE_OK);
	assert_int_equal(deleted, 3);
	storage__sandbox_clear(&sandbox);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_teams_and_limits),  cmocka_unit_test(test_constraint_errors),
	    cmocka_unit_test(test_idempotent_insert), cmocka_unit_test(test_state_transitions),
	    cmocka_unit_test(test_pause_states),      cmocka_unit_test(test_team_isolation),
	    cmocka_unit_test(test_pagination),	      cmocka_unit_test(test_list_order_and_filters),
	    cmocka_unit_test(test_sandbox_metrics),   cmocka_unit_test(test_sandbox_logs),
	    cmocka_unit_test(test_admit_concurrency), cmocka_unit_test(test_reconnect),
	    cmocka_unit_test(test_requests),	      cmocka_unit_test(test_request_notifications),
	    cmocka_unit_test(test_template_for_team), cmocka_unit_test(test_api_keys),
	    cmocka_unit_test(test_hosts_and_expiry),  cmocka_unit_test(test_rate_limits_and_admin),
	    cmocka_unit_test(test_timings),
	};

	if (!test_db__server_url())
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
