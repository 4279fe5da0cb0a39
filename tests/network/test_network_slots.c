/* Slot lifecycle: 200 acquire/release cycles with traffic and
 * 200 on-demand create/destroy cycles leave no namespaces, links, rules
 * or conntrack entries behind; a released slot keeps nothing of its last
 * sandbox; the pool cleans up after itself. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <sys/socket.h>

#include "net_internal.h"
#include "netenv.h"

#define CYCLES 200

static int count_lines(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int count_lines(const char *fmt, ...)
{
	char out[65536], *command = NULL;
	int lines = 0;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&command, fmt, ap) < 0)
		command = NULL;
	va_end(ap);
	assert_non_null(command);
	netenv__capture(out, sizeof(out), "%s", command);
	free(command);
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	return lines;
}

static int namespaces_with_prefix(void)
{
	char pattern[64];

	snprintf(pattern, sizeof(pattern), "%ss", netenv.prefix);
	return count_lines("ls /run/netns | grep '^%s' || true", pattern);
}

static int host_links(void)
{
	return count_lines("ip -o link show");
}

static int host_rules(void)
{
	return count_lines("nft list ruleset");
}

/* conntrack entries in a namespace (-C prints the count). */
static int conntrack_count(const char *netns)
{
	char out[64];

	netenv__capture(out, sizeof(out), "ip netns exec %s conntrack -C 2>/dev/null", netns);
	return atoi(out);
}

static int host_conntrack_for(struct in_addr address)
{
	char text[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &address, text, sizeof(text));
	return count_lines("conntrack -L -s %s 2>/dev/null || true", text);
}

static void test_acquire_release_cycles(void **state)
{
	int links_before = host_links(), namespaces_before = namespaces_with_prefix();
	json_t *spec =
	    json_loads("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0, NULL);
	struct net_policy *domains = net_policy__parse(spec, 0, NULL, 0);

	(void)state;
	json_decref(spec);
	assert_non_null(domains);
	for (int i = 0; i < CYCLES; i++) {
		struct net_slot_info slot;
		struct net_slot_counters c;
		int index =
		    net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, i % 2 ? domains : NULL, &slot);
		int fd;

		assert_true(index >= 0);
		/* A fresh slot: zero counters, nothing in conntrack. */
		assert_int_equal(net_pool__counters(netenv.pool, index, &c), 0);
		assert_int_equal(c.allowed_connections + c.denied_connections + c.proxy_allowed, 0);
		if (i % 50 == 0)
			assert_int_equal(conntrack_count(slot.netns_name), 0);
		/* Some traffic: allowed (default) or denied (domains policy). */
		fd = netenv__connect_from(slot.netns_path, "192.0.2.10", 9002);
		if (i % 2)
			assert_true(fd < 0);
		else
			assert_true(fd >= 0);
		if (fd >= 0)
			close(fd);
		if (i % 50 == 0)
			assert_true(conntrack_count(slot.netns_name) > 0);
		assert_int_equal(net_pool__release(netenv.pool, index), 0);
		if (i % 50 == 0 || i == CYCLES - 1) {
			assert_int_equal(conntrack_count(slot.netns_name), 0);
			assert_int_equal(host_conntrack_for(slot.slot_address), 0);
			assert_int_equal(
			    count_lines("ip netns exec %s nft list ruleset", slot.netns_name), 0);
		}
	}
	net_policy__free(domains);
	assert_int_equal(host_links(), links_before);
	assert_int_equal(namespaces_with_prefix(), namespaces_before);
}

static void test_create_destroy_cycles(void **state)
{
	int links_before = host_links(), namespaces_before = namespaces_with_prefix();
	int rules_before = host_rules();

	(void)state;
	for (int i = 0; i < CYCLES; i++) {
		int index = net_pool__create_slot(netenv.pool);

		assert_true(index >= 0);
		assert_int_equal(net_pool__destroy_slot(netenv.pool, index), 0);
	}
	assert_int_equal(host_links(), links_before);
	assert_int_equal(namespaces_with_prefix(), namespaces_before);
	assert_int_equal(host_rules(), rules_before);
}

static void test_on_demand_when_pool_empty(void **state)
{
	struct net_slot_info a, b, c;
	int ia, ib, ic;

	(void)state;
	/* Two precreated, the third is made on demand; each has its own
	 * addresses and a working uplink. */
	ia = net_pool__acquire(netenv.pool, NET_RUNTIME_VM, NULL, &a);
	ib = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, NULL, &b);
	ic = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, NULL, &c);
	assert_true(ia >= 0 && ib >= 0 && ic >= 0);
	assert_true(ia != ib && ib != ic && ia != ic);
	assert_int_not_equal(a.slot_address.s_addr, c.slot_address.s_addr);
	assert_int_equal(
	    count_lines("ip -n %s -br addr show tap0 | grep -c 169.254.0.22/30", c.netns_name), 1);
	/* tap0 has the same MAC in every slot (a restored guest's gateway) */
	assert_int_equal(
	    count_lines("ip -n %s link show tap0 | grep -c 02:77:72:6e:00:01", a.netns_name), 1);
	assert_int_equal(
	    count_lines("ip -n %s link show tap0 | grep -c 02:77:72:6e:00:01", c.netns_name), 1);
	{
		int fd = netenv__connect_from(c.netns_path, "192.0.2.10", 9002);

		assert_true(fd >= 0);
		close(fd);
	}
	/* vm runtime: the slot address is DNATed to the guest. */
	assert_int_equal(count_lines("ip netns exec %s nft list chain inet warren_slot prerouting "
				     "| grep -c 'dnat ip to 169.254.0.21'",
				     a.netns_name),
			 1);
	assert_int_equal(net_pool__release(netenv.pool, ia), 0);
	assert_int_equal(net_pool__release(netenv.pool, ib), 0);
	assert_int_equal(net_pool__release(netenv.pool, ic), 0);
}

static void test_pool_free_removes_everything(void **state)
{
	char pattern[64];

	(void)state;
	net_pool__free(netenv.pool);
	netenv.pool = NULL;
	assert_int_equal(namespaces_with_prefix(), 0);
	snprintf(pattern, sizeof(pattern), "%s[0-9]", netenv.prefix);
	assert_int_equal(count_lines("ip -o link show | grep '%s' || true", pattern), 0);
	assert_int_equal(count_lines("nft list tables | grep warren_host || true"), 0);
}

/* Releasing a slot cuts the proxy's connections of its sandbox. */
static void test_release_cuts_proxied_connections(void **state)
{
	json_t *spec =
	    json_loads("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0, NULL);
	struct net_policy *policy = net_policy__parse(spec, 0, NULL, 0);
	static const char request[] = "GET /hold HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
	struct net_slot_info slot;
	struct net_slot_counters c;
	int index, fd;

	(void)state;
	json_decref(spec);
	index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, policy, &slot);
	net_policy__free(policy);
	assert_true(index >= 0);
	fd = netenv__connect_from(slot.netns_path, "192.0.2.10", 80);
	assert_true(fd >= 0);
	assert_int_equal(send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL),
			 (ssize_t)sizeof(request) - 1);
	/* Wait until the proxy has allowed and dialed it. */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(net_pool__counters(netenv.pool, index, &c), 0);
		if (c.proxy_allowed == 1)
			break;
		usleep(20 * 1000);
	}
	assert_int_equal(c.proxy_allowed, 1);
	usleep(100 * 1000);
	assert_int_equal(atomic_load(&netenv.pool->proxy_active), 1);
	assert_int_equal(net_pool__release(netenv.pool, index), 0);
	for (int i = 0; i < 100 && atomic_load(&netenv.pool->proxy_active) > 0; i++)
		usleep(20 * 1000);
	assert_int_equal(atomic_load(&netenv.pool->proxy_active), 0);
	close(fd);
}

/* Two pools on one machine (two workers, two test stacks), both with a
 * slot 0: releasing the other pool's slot 0 leaves this pool's slot 0
 * connections (their host conntrack entries) alone. With a mark made of
 * the slot index only, the other release flushed them too, and a live
 * connection's packets were then dropped by the host as new ones. */
static void test_release_spares_other_pools(void **state)
{
	struct net_pool_config config = netenv.config;
	char link_prefix[16], netns_prefix[32];
	struct net_slot_info mine, theirs;
	struct net_pool *other;
	int index, other_index, fd;

	(void)state;
	snprintf(link_prefix, sizeof(link_prefix), "wo%d", (int)(getpid() % 100000));
	snprintf(netns_prefix, sizeof(netns_prefix), "%ss", link_prefix);
	config.link_prefix = link_prefix;
	config.netns_prefix = netns_prefix;
	config.slot_cidr = "10.12.0.0/16";
	config.proxy_http_port = netenv.config.proxy_http_port + 10; /* its own egress proxy */
	config.proxy_tls_port = netenv.config.proxy_tls_port + 10;
	config.precreate = 0;
	other = net_pool__new(&config);
	assert_non_null(other);
	index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, NULL, &mine);
	other_index = net_pool__acquire(other, NET_RUNTIME_JAIL, NULL, &theirs);
	assert_int_equal(index, other_index); /* the same slot number in both */
	fd = netenv__connect_from(mine.netns_path, "192.0.2.10", 9002);
	assert_true(fd >= 0);
	assert_true(host_conntrack_for(mine.slot_address) > 0);
	assert_int_equal(net_pool__release(other, other_index), 0);
	assert_true(host_conntrack_for(mine.slot_address) > 0);
	close(fd);
	assert_int_equal(net_pool__release(netenv.pool, index), 0);
	assert_int_equal(host_conntrack_for(mine.slot_address), 0);
	net_pool__free(other);
}

/* uplink_interface unset: the pool masquerades toward every non-slot
 * link, so slots still reach the (fake) internet. Runs after the first
 * pool was freed. */
static void test_pool_without_uplink_setting(void **state)
{
	struct net_pool_config config = netenv.config;
	struct net_slot_info slot;
	int index, fd;

	(void)state;
	config.uplink_interface = NULL;
	config.precreate = 0;
	netenv.pool = net_pool__new(&config);
	assert_non_null(netenv.pool);
	index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, NULL, &slot);
	assert_true(index >= 0);
	fd = netenv__connect_from(slot.netns_path, "192.0.2.10", 9002);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(net_pool__release(netenv.pool, index), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_acquire_release_cycles),
	    cmocka_unit_test(test_create_destroy_cycles),
	    cmocka_unit_test(test_on_demand_when_pool_empty),
	    cmocka_unit_test(test_release_cuts_proxied_connections),
	    cmocka_unit_test(test_release_spares_other_pools),
	    cmocka_unit_test(test_pool_free_removes_everything),
	    cmocka_unit_test(test_pool_without_uplink_setting),
	};
	int rc = netenv__up(2);

	if (rc == 77)
		return 77;
	if (rc != 0)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	netenv__down();
	return rc;
}
