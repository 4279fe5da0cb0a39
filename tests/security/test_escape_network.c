/* The network rows of the escape suite: what a tenant controls is a
 * process in its slot's network namespace (the jail runtime's exact
 * position; a vm guest sits behind tap0 and is further constrained), so
 * every attack here runs from a socket opened inside a slot namespace of
 * the netenv world (tests/network/netenv.h): a "host" namespace with the
 * slot pool and an uplink to a "fake internet" that also serves a stand-in
 * metadata service at 169.254.169.254. Each attack is tried with the
 * default policy and with allowOut ["0.0.0.0/0"] (and ["::/0"] for IPv6).
 * docs/security.md "Network" maps each test to the layer it proves. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "netenv.h"

#define ALLOW_ALL "{\"allowOut\":[\"0.0.0.0/0\",\"::/0\"]}"

static const char *const policies[] = {"{}", ALLOW_ALL};

struct slot {
	int index;
	struct net_slot_info info;
};

static struct slot slots[2] = {{.index = -1}, {.index = -1}};

/* Listeners a test opened, closed by its teardown even when it fails. */
static int listeners[8];
static size_t listener_count;

static void acquire(struct slot *s, const char *spec_json, uint32_t limit)
{
	json_t *spec = json_loads(spec_json, 0, NULL);
	char message[256];
	struct net_policy *policy;

	assert_non_null(spec);
	policy = net_policy__parse(spec, limit, message, sizeof(message));
	json_decref(spec);
	if (!policy)
		fail_msg("policy %s rejected: %s", spec_json, message);
	s->index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, policy, &s->info);
	net_policy__free(policy);
	assert_true(s->index >= 0);
}

static void release_one(struct slot *s)
{
	if (s->index >= 0)
		assert_int_equal(net_pool__release(netenv.pool, s->index), 0);
	s->index = -1;
}

static int release(void **state)
{
	(void)state;
	release_one(&slots[0]);
	release_one(&slots[1]);
	for (size_t i = 0; i < listener_count; i++)
		close(listeners[i]);
	listener_count = 0;
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A TCP connection from inside the slot must not be established (refused
 * by the slot's rules, or dropped by the host: a timeout). */
static int expect_blocked(const struct slot *s, const char *address, unsigned port)
{
	int fd = netenv__connect_from(s->info.netns_path, address, port);

	printf("  [%s] connect %s:%u -> %s\n", s->info.netns_name, address, port,
	       fd >= 0 ? "CONNECTED" : strerror(-fd));
	if (fd >= 0) {
		close(fd);
		fail_msg("%s:%u is reachable from the slot", address, port);
	}
	return fd;
}

/* Refused by the slot's own rules (a reset at once, so the first layer
 * stopped it; the host's drop would be a timeout). */
static void expect_refused_by_slot(const struct slot *s, const char *address, unsigned port)
{
	assert_int_equal(expect_blocked(s, address, port), -ECONNREFUSED);
}

/* A listener in the calling thread's namespace (kept open by the caller;
 * the kernel completes handshakes without accept()). */
struct listen_op {
	int family;
	const char *address;
	unsigned port;
	int fd;
};

static int listen_here(void *arg)
{
	struct listen_op *op = arg;
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int one = 1;

	op->fd = socket(op->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (op->fd < 0)
		return -errno;
	setsockopt(op->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (op->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)op->port);
		inet_pton(AF_INET, op->address, &a->sin_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)op->port);
		inet_pton(AF_INET6, op->address, &a->sin6_addr);
		len = sizeof(*a);
	}
	if (bind(op->fd, (struct sockaddr *)&ss, len) != 0 || listen(op->fd, 64) != 0) {
		int err = -errno;

		close(op->fd);
		op->fd = -1;
		return err;
	}
	return 0;
}

/* A listener inside the namespace at netns_path (NULL: here). */
static int listen_in(const char *netns_path, int family, const char *address, unsigned port)
{
	struct listen_op op = {.family = family, .address = address, .port = port, .fd = -1};
	int ns, rc;

	if (!netns_path) {
		rc = listen_here(&op);
	} else {
		ns = open(netns_path, O_RDONLY | O_CLOEXEC);
		assert_true(ns >= 0);
		rc = netns__run(ns, listen_here, &op);
		close(ns);
	}
	if (rc != 0)
		fail_msg("listen on %s port %u: %s", address, port, strerror(-rc));
	assert_true(listener_count < sizeof(listeners) / sizeof(listeners[0]));
	listeners[listener_count++] = op.fd;
	return op.fd;
}

/* ---- the rows ---------------------------------------------------------- */

/* A cloud metadata service (169.254.169.254) is never reachable: not with
 * allowOut 0.0.0.0/0, not when named explicitly, not through a domain
 * that resolves to it. */
static void test_metadata_service_unreachable(void **state)
{
	char out[512];
	int rc;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		acquire(&slots[0], policies[i], 0);
		expect_refused_by_slot(&slots[0], "169.254.169.254", 80);
		expect_refused_by_slot(&slots[0], "169.254.169.254", 9002);
		release_one(&slots[0]);
	}
	acquire(&slots[0], "{\"allowOut\":[\"169.254.169.254\",\"169.254.0.0/16\"]}", 0);
	expect_refused_by_slot(&slots[0], "169.254.169.254", 9002);
	release_one(&slots[0]);
	acquire(&slots[0], "{\"allowOut\":[\"metadata.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	rc = netenv__capture(
	    out, sizeof(out),
	    "ip netns exec %s curl -sS -m 4 --resolve metadata.test:80:169.254.169.254 "
	    "http://metadata.test/ 2>&1",
	    slots[0].info.netns_name);
	printf("  curl http://metadata.test/ -> %d %s\n", rc, out);
	assert_non_null(strstr(out, "blocked by the network policy"));
	assert_null(strstr(out, "ip=169.254.169.254"));
}

/* The host's own services (a PostgreSQL-like port on the host's uplink
 * address and on the slot's gateway) are unreachable from a slot. */
static void test_host_postgres_port_unreachable(void **state)
{
	char gateway[INET_ADDRSTRLEN];
	listen_in(NULL, AF_INET, "0.0.0.0", 5432);

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		acquire(&slots[0], policies[i], 0);
		inet_ntop(AF_INET, &slots[0].info.host_address, gateway, sizeof(gateway));
		expect_refused_by_slot(&slots[0], "198.18.0.1", 5432);
		expect_refused_by_slot(&slots[0], gateway, 5432);
		release_one(&slots[0]);
	}
	acquire(&slots[0], "{\"allowOut\":[\"198.18.0.1\",\"10.0.0.0/8\"]}", 0);
	inet_ntop(AF_INET, &slots[0].info.host_address, gateway, sizeof(gateway));
	expect_refused_by_slot(&slots[0], "198.18.0.1", 5432);
	expect_refused_by_slot(&slots[0], gateway, 5432);
}

/* Second layer on its own: with the slot's policy table gone (as if the
 * tenant had bypassed it), the host's input chain still drops the slot's
 * traffic to every host port but the egress proxy's. */
static void test_host_input_chain_drops_slot(void **state)
{
	char gateway[INET_ADDRSTRLEN];
	int fd;

	(void)state;
	listen_in(NULL, AF_INET, "0.0.0.0", 5432);
	acquire(&slots[0], ALLOW_ALL, 0);
	assert_int_equal(netenv__sh("ip netns exec %s nft delete table inet warren_policy",
				    slots[0].info.netns_name),
			 0);
	inet_ntop(AF_INET, &slots[0].info.host_address, gateway, sizeof(gateway));
	expect_blocked(&slots[0], "198.18.0.1", 5432);
	expect_blocked(&slots[0], gateway, 5432);
	expect_blocked(&slots[0], "169.254.169.254", 9002); /* host forward: never-allow */
	{
		char victim[INET_ADDRSTRLEN];
		acquire(&slots[1], "{}", 0);
		inet_ntop(AF_INET, &slots[1].info.slot_address, victim, sizeof(victim));
		listen_in(slots[1].info.netns_path, AF_INET, victim, 8080);
		expect_blocked(&slots[0], victim, 8080); /* host forward: slot to slot */
	}
	/* The proxy ports stay open to slots. */
	fd = netenv__connect_from(slots[0].info.netns_path, gateway, netenv.config.proxy_http_port);
	if (fd < 0)
		fail_msg("the egress proxy port is closed to the slot: %s", strerror(-fd));
	close(fd);
}

/* Another sandbox's slot address is unreachable, whatever the policy. */
static void test_other_slot_unreachable(void **state)
{
	char victim[INET_ADDRSTRLEN], spec[256];
	(void)state;
	acquire(&slots[1], "{}", 0);
	inet_ntop(AF_INET, &slots[1].info.slot_address, victim, sizeof(victim));
	listen_in(slots[1].info.netns_path, AF_INET, victim, 8080);
	for (size_t i = 0; i < 2; i++) {
		acquire(&slots[0], policies[i], 0);
		expect_refused_by_slot(&slots[0], victim, 8080);
		release_one(&slots[0]);
	}
	snprintf(spec, sizeof(spec), "{\"allowOut\":[\"%s\",\"10.11.0.0/16\"]}", victim);
	acquire(&slots[0], spec, 0);
	expect_refused_by_slot(&slots[0], victim, 8080);
}

/* The host's own addresses (uplink, gateway) on an arbitrary port, and the
 * host's loopback services through them, are unreachable. */
static void test_host_own_addresses_unreachable(void **state)
{
	char gateway[INET_ADDRSTRLEN];
	listen_in(NULL, AF_INET, "0.0.0.0", 7000);

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		acquire(&slots[0], policies[i], 0);
		inet_ntop(AF_INET, &slots[0].info.host_address, gateway, sizeof(gateway));
		expect_refused_by_slot(&slots[0], "198.18.0.1", 7000);
		expect_refused_by_slot(&slots[0], gateway, 7000);
		expect_refused_by_slot(&slots[0], "198.18.0.1", 22);
		release_one(&slots[0]);
	}
}

struct connect6_op {
	const char *address;
	unsigned port;
	int result;
};

static int connect6_here(void *arg)
{
	struct connect6_op *op = arg;
	struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)op->port)};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), error = 0;
	socklen_t len = sizeof(error);
	struct pollfd p = {.events = POLLOUT};

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET6, op->address, &to.sin6_addr);
	p.fd = fd;
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
		if (errno != EINPROGRESS)
			error = errno;
		else if (poll(&p, 1, 2000) != 1)
			error = ETIMEDOUT;
		else
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
	}
	close(fd);
	op->result = -error;
	return 0;
}

static void expect_blocked6(const struct slot *s, const char *address, unsigned port)
{
	struct connect6_op op = {.address = address, .port = port};
	int ns = open(s->info.netns_path, O_RDONLY | O_CLOEXEC);

	assert_true(ns >= 0);
	assert_int_equal(netns__run(ns, connect6_here, &op), 0);
	close(ns);
	printf("  [%s] connect [%s]:%u -> %s\n", s->info.netns_name, address, port,
	       op.result == 0 ? "CONNECTED" : strerror(-op.result));
	if (op.result == 0)
		fail_msg("[%s]:%u is reachable over IPv6 from the slot", address, port);
}

/* IPv6 out: even with allowOut ::/0 and a slot that has an IPv6 address
 * and route (which a vm guest could configure), neither the internet nor
 * the host is reachable over IPv6. The test gives the host an IPv6 uplink
 * and forwarding, so only the host table stands in the way. */
static void test_ipv6_out_denied(void **state)
{
	char inet_path[96];

	(void)state;
	snprintf(inet_path, sizeof(inet_path), "/run/netns/%s", netenv.inet_ns);
	assert_int_equal(netenv__sh("ip addr replace 2001:db8:1::1/64 dev u0%s nodad && "
				    "ip -n %s addr replace 2001:db8:1::2/64 dev u1%s nodad && "
				    "ip -n %s -6 route replace default via 2001:db8:1::1 && "
				    "sysctl -qw net.ipv6.conf.all.forwarding=1",
				    netenv.prefix, netenv.inet_ns, netenv.prefix, netenv.inet_ns),
			 0);
	listen_in(inet_path, AF_INET6, "2001:db8:1::2", 9006);
	listen_in(NULL, AF_INET6, "::", 7006);
	acquire(&slots[0], ALLOW_ALL, 0);
	/* Slots come with IPv6 disabled and their rules drop link-local and
	 * multicast (so neighbour discovery): undo the first and pin the
	 * neighbours, so that only the host's rules stand in the way. */
	assert_int_equal(
	    netenv__sh("ip netns exec %1$s sysctl -qw net.ipv6.conf.veth0.disable_ipv6=0 && "
		       "ip -n %1$s addr replace 2001:db8:2::2/64 dev veth0 nodad && "
		       "ip addr replace 2001:db8:2::1/64 dev %2$s nodad && "
		       "ip -n %1$s -6 route replace default via 2001:db8:2::1 && "
		       "ip -n %1$s neigh replace 2001:db8:2::1 dev veth0 nud permanent lladdr "
		       "$(ip -br link show dev %2$s | awk '{print $3}') && "
		       "ip neigh replace 2001:db8:2::2 dev %2$s nud permanent lladdr "
		       "$(ip -n %1$s -br link show dev veth0 | awk '{print $3}')",
		       slots[0].info.netns_name, slots[0].info.host_link),
	    0);
	expect_blocked6(&slots[0], "2001:db8:1::2", 9006);
	expect_blocked6(&slots[0], "2001:db8:2::1", 7006);
	expect_blocked6(&slots[0], "2001:db8:1::1", 7006);
}

/* Reads from fd until EOF, an error or timeout_ms; returns bytes read. */
static size_t read_until_closed(int fd, char *out, size_t size, int timeout_ms)
{
	size_t used = 0;
	int64_t deadline = now_ms() + timeout_ms;

	while (used + 1 < size) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			break;
		n = recv(fd, out + used, size - 1 - used, 0);
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	out[used] = 0;
	return used;
}

static bool keepalive_log_has(const char *host)
{
	char path[192], line[300];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s/keepalive.log", netenv.dir);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strncmp(line, host, strlen(host)) == 0 && line[strlen(host)] == '\n';
	fclose(f);
	return found;
}

/* Sends requests over one proxied connection from the slot; returns what
 * came back until the proxy or server closed. */
static void keepalive_exchange(const char *first, const char *second, char *out, size_t size)
{
	int fd = netenv__connect_from(slots[0].info.netns_path, "192.0.2.30", 80);

	assert_true(fd >= 0);
	assert_int_equal(send(fd, first, strlen(first), MSG_NOSIGNAL), (ssize_t)strlen(first));
	if (second) {
		char reply[512];
		struct pollfd p = {.fd = fd, .events = POLLIN};

		/* The first answer arrives, then the second request follows on
		 * the same connection. */
		assert_int_equal(poll(&p, 1, 4000), 1);
		assert_true(recv(fd, reply, sizeof(reply) - 1, 0) > 0);
		send(fd, second, strlen(second), MSG_NOSIGNAL);
	}
	read_until_closed(fd, out, size, 4000);
	close(fd);
}

/* A keep-alive connection allowed for one host cannot carry a request for
 * another (same IP): sequential, pipelined, or absolute-form. */
static void test_egress_keepalive_forbidden_host(void **state)
{
	char out[2048];

	(void)state;
	acquire(&slots[0], "{\"allowOut\":[\"keepalive.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	/* The server does keep-alive: an allowed second request works. */
	keepalive_exchange("GET /1 HTTP/1.1\r\nHost: keepalive.test\r\n\r\n",
			   "GET /2 HTTP/1.1\r\nHost: KeepAlive.test\r\n\r\n", out, sizeof(out));
	assert_non_null(strstr(out, "host=KeepAlive.test"));

	keepalive_exchange("GET /1 HTTP/1.1\r\nHost: keepalive.test\r\n\r\n",
			   "GET /2 HTTP/1.1\r\nHost: forbidden.test\r\n\r\n", out, sizeof(out));
	assert_null(strstr(out, "forbidden"));
	keepalive_exchange("GET /1 HTTP/1.1\r\nHost: keepalive.test\r\n\r\n"
			   "GET /2 HTTP/1.1\r\nHost: forbidden.test\r\n\r\n",
			   NULL, out, sizeof(out));
	assert_non_null(strstr(out, "host=keepalive.test"));
	assert_null(strstr(out, "forbidden"));
	keepalive_exchange("GET http://forbidden.test/ HTTP/1.1\r\nHost: keepalive.test\r\n\r\n",
			   NULL, out, sizeof(out));
	assert_null(strstr(out, "200 OK"));
	/* A body that hides a request behind a Content-Length the proxy and
	 * server could read differently is refused before anything goes. */
	keepalive_exchange("POST /1 HTTP/1.1\r\nHost: keepalive.test\r\nContent-Length: 0\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
			   "GET /2 HTTP/1.1\r\nHost: forbidden.test\r\n\r\n",
			   NULL, out, sizeof(out));
	assert_false(keepalive_log_has("forbidden.test"));
	{
		struct net_slot_counters c;

		assert_int_equal(net_pool__counters(netenv.pool, slots[0].index, &c), 0);
		assert_true(c.proxy_denied >= 3);
	}
}

struct flood_op {
	unsigned count;
	int *fds;
	unsigned opened;
};

/* Opens count connections to the proxied 192.0.2.10:80 from the calling
 * thread's namespace, each asking for a response that never comes. */
static int flood_here(void *arg)
{
	static const char hold[] = "GET /hold HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
	struct flood_op *op = arg;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(80)};

	inet_pton(AF_INET, "192.0.2.10", &to.sin_addr);
	for (unsigned i = 0; i < op->count; i++) {
		struct timeval timeout = {.tv_sec = 2};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			break;
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
		if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
			close(fd);
			continue;
		}
		send(fd, hold, sizeof(hold) - 1, MSG_NOSIGNAL);
		op->fds[op->opened++] = fd;
	}
	return 0;
}

static int curl_allowed(const struct slot *s, char *out, size_t size)
{
	int rc =
	    netenv__capture(out, size,
			    "ip netns exec %s curl -sS -m 6 --resolve allowed.test:80:192.0.2.10 "
			    "http://allowed.test/ 2>&1",
			    s->info.netns_name);

	printf("  [%s] curl http://allowed.test/ -> %d %s\n", s->info.netns_name, rc, out);
	return rc;
}

/* 2,600 held connections from one slot do not starve another slot's
 * domain-filtered egress: the per-slot cap (200 here) stays below the
 * global cap (1,000 here). */
static void test_egress_slot_cap_no_starvation(void **state)
{
	const char *spec = "{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}";
	struct flood_op op = {.count = 2600};
	struct net_slot_counters c;
	char out[512];
	int ns;

	(void)state;
	net_pool__set_egress_limits(netenv.pool, 1000, 200, 60);
	acquire(&slots[0], spec, 3000);
	acquire(&slots[1], spec, 0);
	op.fds = calloc(op.count, sizeof(*op.fds));
	assert_non_null(op.fds);
	ns = open(slots[0].info.netns_path, O_RDONLY | O_CLOEXEC);
	assert_true(ns >= 0);
	assert_int_equal(netns__run(ns, flood_here, &op), 0);
	close(ns);
	printf("  [%s] %u connections opened\n", slots[0].info.netns_name, op.opened);
	assert_true(op.opened >= 1000);
	/* The other slot still gets through, and so would its neighbours. */
	assert_int_equal(curl_allowed(&slots[1], out, sizeof(out)), 0);
	assert_non_null(strstr(out, "ip=192.0.2.10 host=allowed.test"));
	assert_int_equal(net_pool__counters(netenv.pool, slots[0].index, &c), 0);
	assert_true(c.limit_hits >= 1);
	for (unsigned i = 0; i < op.opened; i++)
		close(op.fds[i]);
	free(op.fds);
	net_pool__set_egress_limits(netenv.pool, 16384, 1024, 300);
}

/* A proxied connection idle for the timeout (2 s here) is closed, whether
 * it never sent a request head or waits on an upstream that never
 * answers. */
static void test_egress_idle_connection_closed(void **state)
{
	static const char hold[] = "GET /hold HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
	char out[256];
	int quiet, waiting;
	int64_t start;

	(void)state;
	net_pool__set_egress_limits(netenv.pool, 0, 0, 2);
	acquire(&slots[0], "{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	quiet = netenv__connect_from(slots[0].info.netns_path, "192.0.2.10", 80);
	waiting = netenv__connect_from(slots[0].info.netns_path, "192.0.2.10", 80);
	assert_true(quiet >= 0 && waiting >= 0);
	assert_int_equal(send(waiting, hold, sizeof(hold) - 1, MSG_NOSIGNAL),
			 (ssize_t)sizeof(hold) - 1);
	start = now_ms();
	read_until_closed(waiting, out, sizeof(out), 12000);
	printf("  held request closed after %lld ms\n", (long long)(now_ms() - start));
	assert_true(now_ms() - start < 9000);
	read_until_closed(quiet, out, sizeof(out), 12000);
	assert_true(now_ms() - start < 9000);
	close(quiet);
	close(waiting);
	net_pool__set_egress_limits(netenv.pool, 0, 0, 300);
}

#define T(f) cmocka_unit_test_teardown(f, release)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_metadata_service_unreachable),    T(test_host_postgres_port_unreachable),
	    T(test_host_input_chain_drops_slot),     T(test_other_slot_unreachable),
	    T(test_host_own_addresses_unreachable),  T(test_ipv6_out_denied),
	    T(test_egress_keepalive_forbidden_host), T(test_egress_slot_cap_no_starvation),
	    T(test_egress_idle_connection_closed),
	};
	struct rlimit files;
	int rc;

	/* 2,600 client sockets plus the proxy's own. */
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 16384) {
		files.rlim_cur = files.rlim_max < 16384 ? files.rlim_max : 16384;
		setrlimit(RLIMIT_NOFILE, &files);
	}
	rc = netenv__up(2);
	if (rc == 77)
		return 77;
	if (rc != 0)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	netenv__down();
	return rc;
}
