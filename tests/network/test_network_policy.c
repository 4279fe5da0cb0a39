/* The egress policy matrix, run from inside a slot as a plain
 * process (the jail runtime's path: OUTPUT hook). Every rule of the
 * semantics has a named test here; docs/network.md lists them. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net_internal.h"
#include "netenv.h"

static struct net_slot_info slot;
static int slot_index = -1;

static void acquire(const char *spec_json, uint32_t limit)
{
	json_error_t error;
	json_t *spec = json_loads(spec_json, 0, &error);
	char message[256];
	struct net_policy *policy;

	assert_non_null(spec);
	policy = net_policy__parse(spec, limit, message, sizeof(message));
	json_decref(spec);
	if (!policy)
		fail_msg("policy %s rejected: %s", spec_json, message);
	slot_index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, policy, &slot);
	net_policy__free(policy);
	assert_true(slot_index >= 0);
}

static int release(void **state)
{
	(void)state;
	if (slot_index >= 0)
		assert_int_equal(net_pool__release(netenv.pool, slot_index), 0);
	slot_index = -1;
	return 0;
}

static void replace(const char *spec_json)
{
	json_t *spec = json_loads(spec_json, 0, NULL);
	char message[256];
	struct net_policy *policy = net_policy__parse(spec, 0, message, sizeof(message));

	json_decref(spec);
	assert_non_null(policy);
	assert_int_equal(net_pool__set_policy(netenv.pool, slot_index, policy), 0);
	net_policy__free(policy);
}

/* curl from inside the slot; returns curl's exit status, body in out. */
static int curl(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int curl(char *out, size_t size, const char *fmt, ...)
{
	char args[512];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	rc = netenv__capture(
	    out, size,
	    "ip netns exec %s curl -sS -m 4 --connect-timeout 2 --cacert %s/ca.pem %s 2>&1",
	    slot.netns_name, netenv.dir, args);
	printf("  [%s] curl %s -> %d %s", slot.netns_name, args, rc, out);
	if (!strchr(out, '\n'))
		printf("\n");
	return rc;
}

/* An HTTP GET that must reach the fake internet at address. */
static void expect_http(const char *name, const char *address, const char *served_by)
{
	char out[1024], expect[128];

	assert_int_equal(
	    curl(out, sizeof(out), "--resolve %s:80:%s http://%s/", name, address, name), 0);
	snprintf(expect, sizeof(expect), "ip=%s host=%s", served_by, name);
	assert_non_null(strstr(out, expect));
}

static void expect_https(const char *name, const char *address, const char *served_by)
{
	char out[1024], expect[160];

	assert_int_equal(
	    curl(out, sizeof(out), "--resolve %s:443:%s https://%s/", name, address, name), 0);
	snprintf(expect, sizeof(expect), "ip=%s host=%s sni=%s", served_by, name, name);
	assert_non_null(strstr(out, expect));
}

/* A direct TCP connection that must be refused (reset by the policy). */
static void expect_refused(const char *address, unsigned port)
{
	int fd = netenv__connect_from(slot.netns_path, address, port);

	if (fd >= 0)
		close(fd);
	assert_true(fd == -ECONNREFUSED || fd == -EHOSTUNREACH || fd == -EACCES || fd == -EPERM);
}

static void expect_connects(const char *address, unsigned port)
{
	int fd = netenv__connect_from(slot.netns_path, address, port);

	if (fd < 0)
		fail_msg("connect %s:%u from the slot: %s", address, port, strerror(-fd));
	close(fd);
}

static struct net_slot_counters counters(void)
{
	struct net_slot_counters c;

	assert_int_equal(net_pool__counters(netenv.pool, slot_index, &c), 0);
	return c;
}

/* --- the matrix ------------------------------------------------------- */

static void test_default_allows_internet(void **state)
{
	(void)state;
	acquire("{}", 0);
	expect_http("allowed.test", "192.0.2.10", "192.0.2.10");
	expect_https("allowed.test", "192.0.2.10", "192.0.2.10");
	expect_connects("203.0.113.10", 9002);
	assert_true(counters().allowed_connections >= 3);
}

static void test_deny_all_traffic(void **state)
{
	(void)state;
	acquire("{\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	expect_refused("192.0.2.10", 80);
	expect_refused("198.51.100.10", 443);
	assert_true(counters().denied_connections >= 2);
}

static void test_deny_all_cidr_form(void **state)
{
	(void)state;
	acquire("{\"denyOut\":[\"0.0.0.0/0\"]}", 0);
	expect_refused("203.0.113.10", 9002);
}

static void test_deny_one_ip(void **state)
{
	(void)state;
	acquire("{\"denyOut\":[\"192.0.2.10\"]}", 0);
	expect_refused("192.0.2.10", 80);
	expect_connects("192.0.2.11", 80);
}

static void test_allow_beats_deny_ip(void **state)
{
	(void)state;
	acquire("{\"allowOut\":[\"192.0.2.10\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	expect_connects("192.0.2.10", 80);
	expect_refused("192.0.2.11", 80);
}

static void test_allow_beats_deny_cidr(void **state)
{
	(void)state;
	acquire("{\"allowOut\":[\"192.0.2.10/31\"],\"denyOut\":[\"192.0.2.0/24\"]}", 0);
	expect_connects("192.0.2.10", 9002);
	expect_connects("192.0.2.11", 9002);
	expect_refused("192.0.2.20", 9002);
	expect_connects("198.51.100.10", 9002); /* outside the denied /24 */
}

static void test_internal_ranges_denied(void **state)
{
	char host[INET_ADDRSTRLEN];

	(void)state;
	acquire("{}", 0);
	/* The host side of the veth runs the proxy: 10/8, internal. */
	inet_ntop(AF_INET, &slot.host_address, host, sizeof(host));
	expect_refused(host, netenv.config.proxy_http_port);
	expect_refused("169.254.169.254", 80);
	expect_refused("192.168.1.1", 80);
	expect_refused("172.16.0.1", 80);
	expect_refused("100.64.0.1", 80);
}

static void test_internal_range_explicitly_allowed(void **state)
{
	char host[INET_ADDRSTRLEN];

	(void)state;
	acquire("{\"allowOut\":[\"10.0.0.0/8\"]}", 0);
	expect_connects("10.99.0.10", 9002);
	/* The slot range (the gateway is in it) is never-allow: no allowOut
	 * entry opens it. */
	inet_ntop(AF_INET, &slot.host_address, host, sizeof(host));
	expect_refused(host, netenv.config.proxy_http_port);
}

static void test_domain_http_by_host(void **state)
{
	char out[1024];

	(void)state;
	acquire("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	expect_http("allowed.test", "192.0.2.10", "192.0.2.10");
	expect_http("ALLOWED.TEST.", "192.0.2.10", "192.0.2.10"); /* case, trailing dot */
	/* Another name on the same IP: 403 from the proxy. */
	assert_int_equal(
	    curl(out, sizeof(out), "--resolve other.test:80:192.0.2.10 http://other.test/"), 0);
	assert_non_null(strstr(out, "blocked by the network policy"));
	/* Other ports are judged by CIDR rules only: denied. */
	expect_refused("192.0.2.10", 9002);
	assert_true(counters().proxy_allowed >= 2);
	assert_true(counters().proxy_denied >= 1);
}

static void test_domain_https_by_sni(void **state)
{
	char out[1024];

	(void)state;
	acquire("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	expect_https("allowed.test", "192.0.2.10", "192.0.2.10");
	assert_int_not_equal(
	    curl(out, sizeof(out), "--resolve other.test:443:192.0.2.10 https://other.test/"), 0);
	assert_null(strstr(out, "ip="));
}

/* A refused request whose body is still coming gets its 403, not a
 * reset: the proxy answers, then reads and drops what the sandbox still
 * sends before it closes. curl reads an early answer while it uploads;
 * Python's http.client sends the whole body first and, before the
 * linger, saw ConnectionResetError instead. */
static void test_refusal_reaches_uploader(void **state)
{
	char out[1024], path[300];
	FILE *file;

	(void)state;
	acquire("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	snprintf(path, sizeof(path), "%s/upload", netenv.dir);
	file = fopen(path, "w");
	assert_non_null(file);
	for (int i = 0; i < 16 << 20; i++) /* more than the socket buffers hold */
		fputc('a' + i % 26, file);
	assert_int_equal(fclose(file), 0);
	/* "Expect:" empty: the body follows the head without waiting. */
	assert_int_equal(curl(out, sizeof(out),
			      "-H 'Expect:' --data-binary @%s --resolve other.test:80:192.0.2.10 "
			      "http://other.test/upload",
			      path),
			 0);
	assert_non_null(strstr(out, "blocked by the network policy"));
	netenv__capture(out, sizeof(out),
			"ip netns exec %s python3 -c '\n"
			"import http.client\n"
			"c = http.client.HTTPConnection(\"192.0.2.10\", 80, timeout=4)\n"
			"try:\n"
			"    c.request(\"POST\", \"/upload\", body=open(\"%s\", \"rb\").read(),\n"
			"              headers={\"Host\": \"other.test\"})\n"
			"    print(\"status\", c.getresponse().status)\n"
			"except OSError as error:\n"
			"    print(\"error\", repr(error))\n"
			"' 2>&1",
			slot.netns_name, path);
	printf("  python http.client: %s", out);
	assert_non_null(strstr(out, "status 403"));
	unlink(path);
}

/* Downloads through the proxy into a file of the netenv dir and checks
 * that all size bytes came, in order (byte i = i mod 251). */
static void expect_download(const char *url, size_t size, const char *curl_options)
{
	char out[512], path[300];
	size_t count = 0;
	FILE *file;
	int c;

	snprintf(path, sizeof(path), "%s/download", netenv.dir);
	unlink(path);
	assert_int_equal(curl(out, sizeof(out),
			      "%s -m 20 -o %s --resolve allowed.test:80:192.0.2.10 --resolve "
			      "allowed.test:443:192.0.2.10 %s/bytes/%zu",
			      curl_options, path, url, size),
			 0);
	file = fopen(path, "rb");
	assert_non_null(file);
	while ((c = fgetc(file)) != EOF) {
		if (c != (int)(count % 251))
			fail_msg("%s: byte %zu is %d, not %zu", url, count, c, count % 251);
		count++;
	}
	fclose(file);
	assert_int_equal(count, size);
	unlink(path);
}

/* A download much larger than the relay's 64 KiB buffer (the rest goes
 * by splice) arrives whole and in order, over HTTP and TLS, also to a
 * client that reads slower than the upstream sends (the pipe fills and
 * the proxy waits for the client). */
static void test_proxy_large_download(void **state)
{
	(void)state;
	acquire("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	expect_download("http://allowed.test", 8u << 20, "");
	expect_download("https://allowed.test", 8u << 20, "");
	expect_download("http://allowed.test", 3u << 20, "--limit-rate 2M");
	expect_download("http://allowed.test", 65536, ""); /* exactly one buffer */
	assert_true(counters().proxy_allowed >= 4);
}

static void test_wildcard_suffix(void **state)
{
	char out[1024];

	(void)state;
	acquire("{\"allowOut\":[\"*.example.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	expect_https("sub.example.test", "192.0.2.11", "192.0.2.11");
	expect_http("sub.example.test", "192.0.2.11", "192.0.2.11");
	assert_int_not_equal(
	    curl(out, sizeof(out), "--resolve example.test:443:192.0.2.11 https://example.test/"),
	    0);
	assert_int_not_equal(
	    curl(out, sizeof(out),
		 "--resolve evil-example.test:443:192.0.2.11 https://evil-example.test/"),
	    0);
	assert_int_equal(
	    curl(out, sizeof(out),
		 "--resolve evil-example.test:80:192.0.2.11 http://evil-example.test/"),
	    0);
	assert_non_null(strstr(out, "blocked by the network policy"));
}

static void test_proxy_dials_resolved_not_guest_address(void **state)
{
	(void)state;
	/* The guest aims split.test at 203.0.113.10 (denied); the proxy
	 * resolves split.test itself (198.51.100.10) and dials that. */
	acquire("{\"allowOut\":[\"split.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	expect_https("split.test", "203.0.113.10", "198.51.100.10");
	expect_http("split.test", "203.0.113.10", "198.51.100.10");
	expect_refused("203.0.113.10", 9002);
}

static void test_proxy_refuses_internal_answer(void **state)
{
	char out[1024];

	(void)state;
	acquire("{\"allowOut\":[\"internal.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	assert_int_equal(
	    curl(out, sizeof(out), "--resolve internal.test:80:192.0.2.10 http://internal.test/"),
	    0);
	assert_non_null(strstr(out, "blocked by the network policy"));
	assert_int_not_equal(
	    curl(out, sizeof(out), "--resolve internal.test:443:192.0.2.10 https://internal.test/"),
	    0);
}

static void test_nameserver_allowed_with_domains(void **state)
{
	struct in_addr answers[4];
	int ns;

	(void)state;
	acquire("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	/* DNS from inside the slot to the configured nameserver works. */
	ns = netenv__capture(
	    NULL, 0,
	    "ip netns exec %s python3 -c \"import socket;s=socket.socket(2,2);s.settimeout(2);"
	    "s.sendto(b'"
	    "\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07allowed\\x04test"
	    "\\x00\\x00\\x01\\x00\\x01',('192.0.2.53',53));s.recv(512)\"",
	    slot.netns_name);
	assert_int_equal(ns, 0);
	release(state);
	acquire("{\"denyOut\":[\"ALL_TRAFFIC\"]}", 0);
	ns = netenv__capture(
	    NULL, 0,
	    "ip netns exec %s python3 -c \"import socket;s=socket.socket(2,2);s.settimeout(1);"
	    "s.sendto(b'"
	    "\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07allowed\\x04test"
	    "\\x00\\x00\\x01\\x00\\x01',('192.0.2.53',53));s.recv(512)\" 2>/dev/null",
	    slot.netns_name);
	assert_int_not_equal(ns, 0);
	(void)answers;
}

static void test_connection_limit(void **state)
{
	int fds[6];

	(void)state;
	acquire("{}", 5);
	for (int i = 0; i < 5; i++) {
		fds[i] = netenv__connect_from(slot.netns_path, "192.0.2.10", 9000);
		if (fds[i] < 0)
			fail_msg("connection %d of 5 refused: %s", i + 1, strerror(-fds[i]));
	}
	fds[5] = netenv__connect_from(slot.netns_path, "192.0.2.10", 9000);
	assert_true(fds[5] < 0); /* N+1 refused */
	assert_true(counters().limit_hits >= 1);
	/* One closed: room again (conntrack forgets closed connections). */
	close(fds[0]);
	fds[0] = -1;
	for (int attempt = 0; attempt < 40 && fds[0] < 0; attempt++) {
		usleep(50 * 1000);
		fds[0] = netenv__connect_from(slot.netns_path, "192.0.2.10", 9000);
	}
	assert_true(fds[0] >= 0);
	/* A live policy replacement neither lifts nor resets the limit. */
	replace("{\"denyOut\":[\"203.0.113.0/24\"]}");
	fds[5] = netenv__connect_from(slot.netns_path, "192.0.2.10", 9000);
	assert_true(fds[5] < 0);
	assert_true(counters().limit_hits >= 2);
	for (int i = 0; i < 5; i++)
		close(fds[i]);
}

static void test_live_replacement(void **state)
{
	char reply[64] = {0};
	ssize_t n;
	int old;

	(void)state;
	acquire("{}", 0);
	old = netenv__connect_from(slot.netns_path, "192.0.2.10", 9001);
	assert_true(old >= 0);
	replace("{\"denyOut\":[\"ALL_TRAFFIC\"]}");
	/* New connections see the new rules... */
	expect_refused("192.0.2.10", 9001);
	/* ...established ones follow conntrack. */
	assert_int_equal(send(old, "hello", 5, MSG_NOSIGNAL), 5);
	shutdown(old, SHUT_WR);
	n = recv(old, reply, sizeof(reply) - 1, 0);
	close(old);
	assert_true(n > 0);
	assert_string_equal(reply, "5\n");
	replace("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}");
	expect_https("allowed.test", "192.0.2.10", "192.0.2.10");
	replace("{}");
	expect_connects("192.0.2.10", 9001);
	/* Counters survive replacement (banked). */
	assert_true(counters().denied_connections >= 1);
	assert_true(counters().proxy_allowed >= 1);
}

static void test_allow_internet_access_false(void **state)
{
	(void)state;
	acquire("{\"allow_internet_access\":false}", 0);
	expect_refused("192.0.2.10", 80);
	release(state);
	acquire("{\"allow_internet_access\":false,\"allowOut\":[\"192.0.2.10\"]}", 0);
	expect_connects("192.0.2.10", 80);
	expect_refused("192.0.2.11", 80);
	release(state);
	/* It satisfies the ALL_TRAFFIC requirement of domain entries. */
	acquire("{\"allow_internet_access\":false,\"allowOut\":[\"allowed.test\"]}", 0);
	expect_https("allowed.test", "192.0.2.10", "192.0.2.10");
	expect_refused("192.0.2.10", 9002);
}

static void test_counters_bytes(void **state)
{
	struct net_slot_counters c;

	(void)state;
	acquire("{}", 0);
	expect_http("allowed.test", "192.0.2.10", "192.0.2.10");
	c = counters();
	assert_true(c.bytes_out > 0);
	assert_true(c.bytes_in > 0);
}

/* The vm runtime's path: the guest's traffic enters from tap0 and is
 * FORWARDED (prerouting redirect, forward filter, SNAT to the slot
 * address), and the host reaches the guest at the slot address (DNAT).
 * A user-space VMM is not needed to prove the rules: tap0 is replaced by
 * a veth named tap0 whose peer sits in a "guest" namespace holding
 * 169.254.0.21. The slot is destroyed afterwards, not recycled. */
static void run_in_guest(const char *guest, const char *command, char *out, size_t size)
{
	netenv__capture(out, size, "ip netns exec %s %s 2>&1", guest, command);
	printf("  [%s] %s -> %s\n", guest, command, out);
}

static void test_vm_runtime_forward_path(void **state)
{
	char guest[48], out[1024], command[512], slot_address[INET_ADDRSTRLEN];
	json_t *spec;
	struct net_policy *policy;
	int rc;

	(void)state;
	snprintf(guest, sizeof(guest), "%sguest", netenv.prefix);
	slot_index = net_pool__acquire(netenv.pool, NET_RUNTIME_VM, NULL, &slot);
	assert_true(slot_index >= 0);
	inet_ntop(AF_INET, &slot.slot_address, slot_address, sizeof(slot_address));
	rc = netenv__sh(
	    "ip netns add %1$s && ip -n %2$s link del tap0 && "
	    "ip -n %2$s link add tap0 type veth peer name eth0 netns %1$s && "
	    "ip -n %2$s addr add 169.254.0.22/30 dev tap0 && ip -n %2$s link set tap0 up && "
	    "ip -n %1$s link set lo up && ip -n %1$s addr add 169.254.0.21/30 dev eth0 && "
	    "ip -n %1$s link set eth0 up && ip -n %1$s route add default via 169.254.0.22",
	    guest, slot.netns_name);
	assert_int_equal(rc, 0);
	/* Default policy: the guest reaches the internet, SNATed. */
	snprintf(command, sizeof(command), "curl -sS -m 4 http://192.0.2.10/");
	run_in_guest(guest, command, out, sizeof(out));
	assert_non_null(strstr(out, "ip=192.0.2.10"));
	/* Inbound: the host reaches a guest port at the slot address. */
	netenv__sh(
	    "ip netns exec %s python3 -m http.server --bind 169.254.0.21 8000 >/dev/null 2>&1 & "
	    "for i in $(seq 1 50); do ip netns exec %s sh -c 'exec 3<>/dev/tcp/169.254.0.21/8000' "
	    "2>/dev/null && break; sleep 0.05; done",
	    guest, guest);
	assert_int_equal(
	    netenv__capture(out, sizeof(out),
			    "curl -sS -m 4 -o /dev/null -w '%%{http_code}' http://%s:8000/",
			    slot_address),
	    0);
	assert_string_equal(out, "200");
	/* Deny ALL: forwarded traffic refused. */
	spec = json_loads("{\"denyOut\":[\"ALL_TRAFFIC\"]}", 0, NULL);
	policy = net_policy__parse(spec, 0, NULL, 0);
	json_decref(spec);
	assert_int_equal(net_pool__set_policy(netenv.pool, slot_index, policy), 0);
	net_policy__free(policy);
	run_in_guest(guest, "curl -sS -m 4 --connect-timeout 2 http://192.0.2.10/", out,
		     sizeof(out));
	assert_null(strstr(out, "ip=192.0.2.10"));
	assert_true(counters().denied_connections >= 1);
	/* Domains: prerouting redirects the guest's 443 to the proxy, which
	 * knows the slot by the SNATed source. */
	spec =
	    json_loads("{\"allowOut\":[\"allowed.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", 0, NULL);
	policy = net_policy__parse(spec, 0, NULL, 0);
	json_decref(spec);
	assert_int_equal(net_pool__set_policy(netenv.pool, slot_index, policy), 0);
	net_policy__free(policy);
	snprintf(command, sizeof(command),
		 "curl -sS -m 4 --cacert %s/ca.pem --resolve allowed.test:443:192.0.2.10 "
		 "https://allowed.test/",
		 netenv.dir);
	run_in_guest(guest, command, out, sizeof(out));
	assert_non_null(strstr(out, "ip=192.0.2.10 host=allowed.test sni=allowed.test"));
	snprintf(command, sizeof(command),
		 "curl -sS -m 4 --cacert %s/ca.pem --resolve other.test:443:192.0.2.10 "
		 "https://other.test/",
		 netenv.dir);
	run_in_guest(guest, command, out, sizeof(out));
	assert_null(strstr(out, "ip="));
	assert_true(counters().proxy_allowed >= 1);
	assert_true(counters().proxy_denied >= 1);
	/* A guest speaking as another address is dropped at tap0. */
	replace("{}");
	netenv__sh("ip -n %s addr add 10.11.0.6/32 dev eth0", guest);
	run_in_guest(guest,
		     "curl -sS -m 3 --connect-timeout 2 --interface 10.11.0.6 http://192.0.2.10/",
		     out, sizeof(out));
	assert_null(strstr(out, "ip=192.0.2.10"));
	run_in_guest(guest, "curl -sS -m 3 http://192.0.2.10/", out, sizeof(out));
	assert_non_null(strstr(out, "ip=192.0.2.10"));
	netenv__sh("ip netns pids %s | xargs -r kill -9; ip netns del %s", guest, guest);
	assert_int_equal(net_pool__destroy_slot(netenv.pool, slot_index), 0);
	slot_index = -1;
}

/* A slot whose process speaks as another slot's address is dropped by
 * the host's reverse-path check. The slot is destroyed afterwards (its
 * addresses were changed by the test). */
static void test_spoofed_slot_source_dropped(void **state)
{
	char out[1024];

	(void)state;
	acquire("{}", 0);
	assert_int_equal(netenv__sh("ip -n %s addr add 10.11.0.10/32 dev veth0", slot.netns_name),
			 0);
	netenv__capture(out, sizeof(out),
			"ip netns exec %s curl -sS -m 3 --connect-timeout 2 --interface 10.11.0.10 "
			"http://192.0.2.10/ 2>&1",
			slot.netns_name);
	assert_null(strstr(out, "ip=192.0.2.10"));
	/* ...dropped by the host's reverse-path rule, not merely lost. */
	netenv__capture(out, sizeof(out), "nft list chain inet warren_host_%s guard",
			netenv.prefix);
	assert_null(strstr(out, "counter packets 0 "));
	assert_non_null(strstr(out, "counter packets "));
	netenv__capture(out, sizeof(out), "ip netns exec %s curl -sS -m 3 http://192.0.2.10/ 2>&1",
			slot.netns_name);
	assert_non_null(strstr(out, "ip=192.0.2.10"));
	assert_int_equal(net_pool__destroy_slot(netenv.pool, slot_index), 0);
	slot_index = -1;
}

/* The largest accepted policy (1,000 entries per list, overlapping and
 * duplicate ones included) compiles, applies, and holds. */
static void test_largest_policy_applies(void **state)
{
	json_t *spec = json_object(), *allow = json_array(), *deny = json_array();
	char message[256], entry[32];
	struct net_policy *policy;

	(void)state;
	for (int i = 0; i < NET_POLICY_MAX_ENTRIES; i++) {
		snprintf(entry, sizeof(entry), "11.0.%d.%d", i / 200, i % 200);
		json_array_append_new(allow, json_string(i == 999 ? "192.0.2.10" : entry));
		snprintf(entry, sizeof(entry), i % 3 ? "12.%d.%d.0/24" : "12.%d.0.0/16", i / 250,
			 i % 250);
		json_array_append_new(deny, json_string(i == 999 ? "192.0.2.0/24" : entry));
	}
	json_object_set_new(spec, "allowOut", allow);
	json_object_set_new(spec, "denyOut", deny);
	policy = net_policy__parse(spec, 0, message, sizeof(message));
	json_decref(spec);
	if (!policy)
		fail_msg("%s", message);
	slot_index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, policy, &slot);
	net_policy__free(policy);
	assert_true(slot_index >= 0);
	expect_connects("192.0.2.10", 9002); /* allowed inside a denied /24 */
	expect_refused("192.0.2.11", 9002);
	expect_connects("198.51.100.10", 9002);
}

#define T(f) cmocka_unit_test_teardown(f, release)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_default_allows_internet),
	    T(test_deny_all_traffic),
	    T(test_deny_all_cidr_form),
	    T(test_deny_one_ip),
	    T(test_allow_beats_deny_ip),
	    T(test_allow_beats_deny_cidr),
	    T(test_internal_ranges_denied),
	    T(test_internal_range_explicitly_allowed),
	    T(test_domain_http_by_host),
	    T(test_domain_https_by_sni),
	    T(test_proxy_large_download),
	    T(test_refusal_reaches_uploader),
	    T(test_wildcard_suffix),
	    T(test_proxy_dials_resolved_not_guest_address),
	    T(test_proxy_refuses_internal_answer),
	    T(test_nameserver_allowed_with_domains),
	    T(test_connection_limit),
	    T(test_live_replacement),
	    T(test_allow_internet_access_false),
	    T(test_counters_bytes),
	    T(test_vm_runtime_forward_path),
	    T(test_spoofed_slot_source_dropped),
	    T(test_largest_policy_applies),
	};
	int rc = netenv__up(1);

	if (rc == 77)
		return 77;
	if (rc != 0)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	netenv__down();
	return rc;
}
