/* placement__survey (producer/placement.c): which hosts a create may go to,
 * by state, runtime, heartbeat age and event protocol version (rolling
 * upgrades: a host whose worker does not understand the API's version is
 * counted apart and never chosen). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "placement.h"

#define NOW_MS	 1000000
#define FRESH_MS 30000

static struct storage_host host(const char *id, const char *runtime, const char *state,
				int capacity, int running, int protocol, int64_t age_ms)
{
	struct storage_host h = {.capacity = capacity,
				 .running = running,
				 .protocol_version = protocol,
				 .heartbeat_at = NOW_MS - age_ms};

	snprintf(h.id, sizeof(h.id), "%s", id);
	snprintf(h.runtime, sizeof(h.runtime), "%s", runtime);
	snprintf(h.state, sizeof(h.state), "%s", state);
	return h;
}

static void test_all_compatible(void **state)
{
	struct storage_host hosts[] = {host("a", "jail", "ready", 10, 9, 1, 0),
				       host("b", "jail", "ready", 10, 2, 1, 500),
				       host("c", "vm", "ready", 50, 0, 1, 0)};
	struct placement p;

	(void)state;
	placement__survey(hosts, 3, "", 1, NOW_MS, FRESH_MS, &p);
	assert_int_equal(p.ready, 3);
	assert_int_equal(p.incompatible, 0);
	assert_int_equal(p.capacity, 70);
	assert_int_equal(p.running, 11);
	assert_string_equal(p.best_host, "c");
	placement__survey(hosts, 3, "jail", 1, NOW_MS, FRESH_MS, &p);
	assert_int_equal(p.ready, 2);
	assert_string_equal(p.best_host, "b");
}

static void test_skips_stale_draining_down(void **state)
{
	struct storage_host hosts[] = {host("old", "jail", "ready", 10, 0, 1, FRESH_MS + 1),
				       host("drain", "jail", "draining", 10, 0, 1, 0),
				       host("down", "jail", "down", 10, 0, 1, 0)};
	struct placement p;

	(void)state;
	placement__survey(hosts, 3, "", 1, NOW_MS, FRESH_MS, &p);
	assert_int_equal(p.ready, 0);
	assert_int_equal(p.incompatible, 0);
	assert_string_equal(p.best_host, "");
}

/* A rolling upgrade: the API writes version 2; host "v1" understands only 1. */
static void test_mixed_versions(void **state)
{
	struct storage_host hosts[] = {
	    host("v1", "jail", "ready", 100, 0, 1, 0), host("v2-full", "jail", "ready", 5, 5, 2, 0),
	    host("v2", "jail", "ready", 5, 1, 2, 0), host("v3", "jail", "ready", 5, 3, 3, 0)};
	struct placement p;

	(void)state;
	placement__survey(hosts, 4, "", 2, NOW_MS, FRESH_MS, &p);
	assert_int_equal(p.incompatible, 1);
	assert_int_equal(p.newest_incompatible, 1);
	assert_int_equal(p.ready, 3);
	assert_int_equal(p.capacity, 15); /* the old host's room is not counted */
	assert_int_equal(p.running, 9);
	assert_string_equal(p.best_host, "v2"); /* never "v1", which has the most room */
}

static void test_only_incompatible(void **state)
{
	struct storage_host hosts[] = {host("v1a", "jail", "ready", 10, 0, 1, 0),
				       host("v1b", "jail", "ready", 10, 0, 0, 0)};
	struct placement p;

	(void)state;
	placement__survey(hosts, 2, "", 2, NOW_MS, FRESH_MS, &p);
	assert_int_equal(p.ready, 0);
	assert_int_equal(p.incompatible, 2);
	assert_int_equal(p.newest_incompatible, 1);
	assert_string_equal(p.best_host, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_all_compatible),
	    cmocka_unit_test(test_skips_stale_draining_down),
	    cmocka_unit_test(test_mixed_versions),
	    cmocka_unit_test(test_only_incompatible),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
