/* Unit tests of the policy validator, parser, matcher and compiler
 * (workers/net/policy.c). No namespaces, no root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "warren/net.h"

static int validate(const char *json, char *message, size_t size)
{
	json_t *spec = json_loads(json, 0, NULL);
	int rc;

	assert_non_null(spec);
	rc = net_policy__validate(spec, message, size);
	json_decref(spec);
	return rc;
}

static void expect_error(const char *json, const char *fragment)
{
	char message[512];

	assert_int_equal(validate(json, message, sizeof(message)), -1);
	if (!strstr(message, fragment))
		fail_msg("%s: message '%s' lacks '%s'", json, message, fragment);
}

static void test_valid_specs(void **state)
{
	char message[256];

	(void)state;
	assert_int_equal(validate("{}", message, sizeof(message)), 0);
	assert_int_equal(
	    validate("{\"allowOut\":[\"1.2.3.4\",\"10.0.0.0/8\",\"::1\",\"2001:db8::/32\"]}",
		     message, sizeof(message)),
	    0);
	assert_int_equal(
	    validate(
		"{\"allowOut\":[\"example.com\",\"*.example.org\"],\"denyOut\":[\"0.0.0.0/0\"]}",
		message, sizeof(message)),
	    0);
	assert_int_equal(validate("{\"allowOut\":[\"example.com\"],\"denyOut\":[\"ALL_TRAFFIC\"]}",
				  message, sizeof(message)),
			 0);
	assert_int_equal(
	    validate("{\"allowOut\":[\"example.com\"],\"allow_internet_access\":false}", message,
		     sizeof(message)),
	    0);
}

static void test_invalid_cidr(void **state)
{
	(void)state;
	expect_error("{\"denyOut\":[\"1.2.3.4/33\"]}", "is not a valid IP address or CIDR block");
	expect_error("{\"allowOut\":[\"1.2.3\"]}", "is not a valid IP address or CIDR block");
	expect_error("{\"allowOut\":[\"300.1.1.1\"]}", "is not a valid IP address or CIDR block");
	expect_error("{\"allowOut\":[\"::1/129\"]}", "is not a valid IP address or CIDR block");
	expect_error("{\"allowOut\":[\"1.2.3.4/\"]}", "is not a valid IP address or CIDR block");
	expect_error("{\"allowOut\":[\"1.2.3.4/8x\"]}", "is not a valid IP address or CIDR block");
}

static void test_domain_in_deny(void **state)
{
	(void)state;
	expect_error("{\"denyOut\":[\"example.com\"]}", "domains are only supported in allowOut");
}

static void test_domain_without_all_traffic(void **state)
{
	(void)state;
	expect_error("{\"allowOut\":[\"example.com\"]}",
		     "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' "
		     "in deny out");
	expect_error("{\"allowOut\":[\"example.com\"],\"denyOut\":[\"1.2.3.4\"]}",
		     "'ALL_TRAFFIC' in deny out");
}

static void test_oversized_lists(void **state)
{
	json_t *spec = json_object(), *list = json_array();
	char message[256];

	(void)state;
	for (int i = 0; i <= NET_POLICY_MAX_ENTRIES; i++)
		json_array_append_new(list, json_string("1.2.3.4"));
	json_object_set_new(spec, "denyOut", list);
	assert_int_equal(net_policy__validate(spec, message, sizeof(message)), -1);
	assert_non_null(strstr(message, "at most 1000"));
	json_array_remove(list, 0);
	assert_int_equal(net_policy__validate(spec, message, sizeof(message)), 0);
	json_decref(spec);
}

static void test_wildcard_syntax(void **state)
{
	(void)state;
	expect_error("{\"allowOut\":[\"*.*.com\"],\"denyOut\":[\"ALL_TRAFFIC\"]}",
		     "invalid wildcard");
	expect_error("{\"allowOut\":[\"a.*.com\"],\"denyOut\":[\"ALL_TRAFFIC\"]}",
		     "invalid wildcard");
	expect_error("{\"allowOut\":[\"*\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", "invalid wildcard");
	expect_error("{\"allowOut\":[\"*example.com\"],\"denyOut\":[\"ALL_TRAFFIC\"]}",
		     "invalid wildcard");
	expect_error("{\"allowOut\":[\"a..b\"],\"denyOut\":[\"ALL_TRAFFIC\"]}", "empty label");
	expect_error("{\"allowOut\":[\"a b.com\"],\"denyOut\":[\"ALL_TRAFFIC\"]}",
		     "character not allowed");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_error("{\"allowOut\":\"1.2.3.4\"}", "must be an array");
	expect_error("{\"allowOut\":[1]}", "must be a string");
	expect_error("{\"allow_internet_access\":\"no\"}", "must be a boolean");
	expect_error("[]", "must be an object");
	/* A hostile entry is not echoed raw. */
	expect_error("{\"denyOut\":[\"\\u0001evil.com\"]}", "unprintable");
}

static struct net_policy *parse(const char *json)
{
	json_t *spec = json_loads(json, 0, NULL);
	char message[256];
	struct net_policy *p = net_policy__parse(spec, 0, message, sizeof(message));

	json_decref(spec);
	if (!p)
		fail_msg("%s: %s", json, message);
	return p;
}

static void test_is_default(void **state)
{
	struct net_policy *p;

	(void)state;
	p = net_policy__default(7);
	assert_true(net_policy__is_default(p));
	net_policy__free(p);
	p = parse("{}");
	assert_true(net_policy__is_default(p));
	net_policy__free(p);
	p = parse("{\"denyOut\":[\"192.0.2.1\"]}");
	assert_false(net_policy__is_default(p));
	net_policy__free(p);
	p = parse("{\"allowOut\":[\"10.1.2.3\"]}"); /* an internal allow */
	assert_false(net_policy__is_default(p));
	net_policy__free(p);
	p = parse("{\"allowOut\":[\"example.com\"],\"denyOut\":[\"0.0.0.0/0\"]}");
	assert_false(net_policy__is_default(p));
	net_policy__free(p);
}

static void test_domain_matching(void **state)
{
	struct net_policy *p =
	    parse("{\"allowOut\":[\"Example.COM\",\"*.suffix.test\",\"b\\u00fccher.de\"],"
		  "\"denyOut\":[\"ALL_TRAFFIC\"]}");

	(void)state;
	assert_true(net_policy__has_domains(p));
	assert_true(net_policy__domain_allowed(p, "example.com", 11));
	assert_true(net_policy__domain_allowed(p, "EXAMPLE.com.", 12));
	assert_false(net_policy__domain_allowed(p, "www.example.com", 15));
	assert_false(net_policy__domain_allowed(p, "example.co", 10));
	assert_true(net_policy__domain_allowed(p, "a.suffix.test", 13));
	assert_true(net_policy__domain_allowed(p, "x.y.SUFFIX.test", 15));
	assert_false(net_policy__domain_allowed(p, "suffix.test", 11));
	assert_false(net_policy__domain_allowed(p, "evil-suffix.test", 16));
	assert_false(net_policy__domain_allowed(p, "suffix.test-evil.com", 20));
	assert_false(net_policy__domain_allowed(p, ".suffix.test", 12) && false);
	assert_true(net_policy__domain_allowed(p,
					       "b\xc3\xbc"
					       "cher.de",
					       10));
	assert_false(net_policy__domain_allowed(p,
						"B\xc3\x9c"
						"CHER.de",
						10)); /* bytes, no Unicode folding */
	assert_false(net_policy__domain_allowed(p, "example.com\0x", 13));
	assert_false(net_policy__domain_allowed(p, "", 0));
	net_policy__free(p);
}

static void test_compile(void **state)
{
	struct net_policy *p =
	    parse("{\"allowOut\":[\"1.2.3.4\",\"1.2.3.0/24\",\"1.2.3.0/24\",\"site.test\"],"
		  "\"denyOut\":[\"ALL_TRAFFIC\",\"5.6.7.8/16\"]}");
	struct net_compile_params params = {.proxy_http_port = 3128, .proxy_tls_port = 3129};
	char *text;

	(void)state;
	inet_pton(AF_INET, "10.11.0.1", &params.proxy_address);
	inet_pton(AF_INET, "8.8.8.8", &params.nameserver);
	text = net_policy__compile(p, &params);
	assert_non_null(text);
	/* Atomic replacement: create, delete, recreate in one buffer. */
	assert_true(
	    strncmp(text, "table inet warren_policy\ndelete table inet warren_policy\n", 56) == 0);
	/* Covered and duplicate entries merged; host bits cleared. */
	assert_non_null(strstr(text, "elements = { 1.2.3.0/24 }"));
	assert_non_null(strstr(text, "elements = { 0.0.0.0/0 }"));
	assert_non_null(strstr(text, "elements = { ::/0 }"));
	assert_non_null(strstr(text, "tcp dport 443 dnat ip to 10.11.0.1:3129"));
	assert_non_null(strstr(text, "ip daddr 8.8.8.8 meta l4proto { tcp, udp } th dport 53"));
	/* The limit is the slot's (base table), not the replaceable policy's. */
	assert_null(strstr(text, "ct count"));
	assert_int_equal(net_policy__connection_limit(p), NET_POLICY_DEFAULT_CONNECTION_LIMIT);
	/* Order: never-allow, allowOut inside internal ranges, internal
	 * ranges, allowOut, denyOut. */
	assert_non_null(strstr(text, "ip daddr @never_v4 goto deny"));
	assert_true(strstr(text, "ip daddr @never_v4 goto deny") <
		    strstr(text, "ip daddr @allow_internal_v4 counter"));
	assert_true(strstr(text, "ip daddr @allow_internal_v4 counter") <
		    strstr(text, "ip daddr @internal_v4 goto deny"));
	assert_true(strstr(text, "ip daddr @internal_v4 goto deny") <
		    strstr(text, "ip daddr @allow_v4 counter"));
	assert_true(strstr(text, "ip daddr @allow_v4 counter") <
		    strstr(text, "ip daddr @deny_v4 goto deny"));
	/* Both paths: forward (vm, from tap0) and output (jail). */
	assert_non_null(strstr(text, "iifname \"tap0\" jump egress"));
	assert_non_null(strstr(text, "type filter hook output priority 0"));
	/* nft gotcha: no rule directly before "}" without a newline. */
	assert_null(strstr(text, " }\n}"));
	free(text);
	net_policy__free(p);

	p = parse("{}");
	text = net_policy__compile(p, &params);
	assert_null(strstr(text, "dnat"));
	assert_null(strstr(text, "8.8.8.8"));
	free(text);
	net_policy__free(p);
}

/* The never-allow set is compiled first and no allowOut entry opens it;
 * a broad allow does not open internal ranges, an entry inside one does. */
static void test_compile_never_allow(void **state)
{
	struct net_policy *p =
	    parse("{\"allowOut\":[\"0.0.0.0/0\",\"10.1.0.0/16\",\"169.254.169.254\"]}");
	struct net_compile_params params = {.proxy_http_port = 3128, .proxy_tls_port = 3129};
	struct cidr never[8];
	int count = cidr__parse_list("169.254.0.0/16, 10.11.0.0/16 ::1 198.18.0.1", never, 8, NULL);
	const char *internal;
	char *text;

	(void)state;
	assert_int_equal(count, 4);
	params.never_allow = never;
	params.never_allow_count = (size_t)count;
	text = net_policy__compile(p, &params);
	assert_non_null(text);
	assert_non_null(strstr(text,
			       "set never_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
			       "\t\telements = { 169.254.0.0/16, 10.11.0.0/16, 198.18.0.1/32 }"));
	assert_non_null(strstr(text, "set never_v6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n"
				     "\t\telements = { ::1/128 }"));
	internal = strstr(text, "set allow_internal_v4 {");
	assert_non_null(internal);
	/* 10.1.0.0/16 and 169.254.169.254 lie inside internal ranges; 0/0 does not. */
	assert_true(strncmp(internal,
			    "set allow_internal_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
			    "\t\telements = { 10.1.0.0/16, 169.254.169.254/32 }\n",
			    100) == 0);
	assert_true(strstr(text, "ip daddr @never_v4 goto deny") <
		    strstr(text, "ip daddr @allow_internal_v4"));
	free(text);
	net_policy__free(p);

	assert_true(
	    net_policy__never_allowed(never, 4, AF_INET, &(struct in_addr){htonl(0xa9fea9fe)}));
	assert_true(
	    net_policy__never_allowed(never, 4, AF_INET, &(struct in_addr){htonl(0x0a0b0005)}));
	assert_false(
	    net_policy__never_allowed(never, 4, AF_INET, &(struct in_addr){htonl(0x0a0c0005)}));
	assert_false(
	    net_policy__never_allowed(never, 4, AF_INET, &(struct in_addr){htonl(0xc000020a)}));
	assert_true(net_policy__never_allowed(never, 4, AF_INET6, &in6addr_loopback));
}

static void test_cidr_list(void **state)
{
	struct cidr list[8];
	const char *bad = NULL;

	(void)state;
	assert_int_equal(cidr__parse_list("", list, 8, NULL), 0);
	assert_int_equal(cidr__parse_list(CIDR_NEVER_ALLOW_BUILTIN, list, 8, NULL),
			 -1); /* 10 > 8 */
	assert_int_equal(cidr__parse_list("10.0.0.0/8, nope", list, 8, &bad), -1);
	assert_string_equal(bad, "nope");
	assert_int_equal(
	    cidr__parse_list("10.0.0.0/8,10.1.0.0/16 10.0.0.0/8 ::1 ::/0", list, 8, NULL), 5);
	assert_int_equal(cidr__dedupe(list, 5), 2); /* 10/8 and ::/0 */
	assert_int_equal(list[0].prefix, 8);
	assert_int_equal(list[1].family, AF_INET6);
	assert_int_equal(list[1].prefix, 0);
}

static void test_endpoint_host(void **state)
{
	char host[64];

	(void)state;
	assert_int_equal(
	    net_policy__endpoint_host("postgresql://u:p@db.internal:5432/warren?sslmode=require",
				      host, sizeof(host)),
	    11);
	assert_string_equal(host, "db.internal");
	assert_true(net_policy__endpoint_host("postgres://10.0.3.4/warren", host, sizeof(host)) >
		    0);
	assert_string_equal(host, "10.0.3.4");
	assert_true(net_policy__endpoint_host("postgresql://[fd00::5]:5432/x", host, sizeof(host)) >
		    0);
	assert_string_equal(host, "fd00::5");
	assert_true(
	    net_policy__endpoint_host("host=10.1.1.1 port=5432 dbname=w", host, sizeof(host)) > 0);
	assert_string_equal(host, "10.1.1.1");
	assert_true(net_policy__endpoint_host("kafka-1:9092,kafka-2:9092", host, sizeof(host)) > 0);
	assert_string_equal(host, "kafka-1");
	assert_int_equal(net_policy__endpoint_host("", host, sizeof(host)), 0);
	assert_int_equal(net_policy__endpoint_host("postgresql:///db", host, sizeof(host)), 0);
	assert_int_equal(net_policy__endpoint_host("[fd00::5", host, sizeof(host)), 0);
	assert_int_equal(net_policy__endpoint_host(
			     "averyveryveryveryveryveryveryveryveryveryveryveryverylonghostname:1",
			     host, sizeof(host)),
			 0);
}

static void test_internal_v4(void **state)
{
	const char *internal[] = {
	    "10.1.2.3",	  "172.16.0.1", "172.31.255.255", "192.168.0.1", "169.254.169.254",
	    "100.64.0.1", "127.0.0.1",	"0.0.0.0",	  "224.0.0.1",	 "255.255.255.255"};
	const char *public[] = {"8.8.8.8", "172.32.0.1", "192.0.2.10", "100.128.0.1", "1.1.1.1"};
	struct in_addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(internal) / sizeof(*internal); i++) {
		inet_pton(AF_INET, internal[i], &a);
		assert_true(net_policy__is_internal_v4(a));
	}
	for (size_t i = 0; i < sizeof(public) / sizeof(*public); i++) {
		inet_pton(AF_INET, public[i], &a);
		assert_false(net_policy__is_internal_v4(a));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_specs),
	    cmocka_unit_test(test_invalid_cidr),
	    cmocka_unit_test(test_domain_in_deny),
	    cmocka_unit_test(test_domain_without_all_traffic),
	    cmocka_unit_test(test_oversized_lists),
	    cmocka_unit_test(test_wildcard_syntax),
	    cmocka_unit_test(test_wrong_types),
	    cmocka_unit_test(test_domain_matching),
	    cmocka_unit_test(test_is_default),
	    cmocka_unit_test(test_compile),
	    cmocka_unit_test(test_compile_never_allow),
	    cmocka_unit_test(test_cidr_list),
	    cmocka_unit_test(test_endpoint_host),
	    cmocka_unit_test(test_internal_v4),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
