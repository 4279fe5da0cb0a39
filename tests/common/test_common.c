/* Unit tests of libwarren-common: ids, tokens, config, clock, HOST:PORT
 * parsing, sibling binaries, CHECK. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include "warren/binary_path.h"
#include "warren/check.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/fds.h"
#include "warren/ids.h"
#include "warren/net_address.h"
#include "warren/tokens.h"

static void test_sandbox_id_shape(void **state)
{
	char id[IDS_SANDBOX_ID_LEN + 1], other[IDS_SANDBOX_ID_LEN + 1];

	(void)state;
	assert_int_equal(ids__sandbox_id(id), 0);
	assert_int_equal(ids__sandbox_id(other), 0);
	assert_true(ids__is_sandbox_id(id));
	assert_string_not_equal(id, other);
	assert_false(ids__is_sandbox_id("iABCDEFGHIJKLMNOPQRST"));
	assert_false(ids__is_sandbox_id("i123"));
	assert_false(ids__is_sandbox_id("x12345678901234567890"));
	assert_false(ids__is_sandbox_id(NULL));
}

static void test_uuid_shape(void **state)
{
	char uuid[IDS_UUID_LEN + 1];

	(void)state;
	assert_int_equal(ids__uuid(uuid), 0);
	assert_true(ids__is_uuid(uuid));
	assert_int_equal(uuid[14], '4');
	assert_false(ids__is_uuid("not-a-uuid"));
	assert_false(ids__is_uuid("0123456789abcdef0123456789abcdef0123"));
}

static void test_api_key_shape(void **state)
{
	char key[45];

	(void)state;
	assert_int_equal(ids__api_key(key), 0);
	assert_int_equal(strlen(key), 44);
	assert_memory_equal(key, "e2b_", 4);
}

static void test_sha256_and_hmac_vectors(void **state)
{
	char hex[65];

	(void)state;
	tokens__sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* RFC 4231 test case 2. */
	tokens__hmac_sha256_hex("Jefe", "what do ya want for nothing?", hex);
	assert_string_equal(hex,
			    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_derived_tokens_differ(void **state)
{
	char access[65], traffic[65], again[65];

	(void)state;
	tokens__access_token("seed", "iabc", access);
	tokens__traffic_token("seed", "iabc", traffic);
	tokens__access_token("seed", "iabc", again);
	assert_string_equal(access, again);
	assert_string_not_equal(access, traffic);
	tokens__hmac_sha256_hex("seed", "sandbox-traffic-iabc", again);
	assert_string_equal(traffic, again);
}

static void test_constant_time_equal(void **state)
{
	(void)state;
	assert_true(tokens__equal("secret", "secret"));
	assert_false(tokens__equal("secret", "secreT"));
	assert_false(tokens__equal("secret", "secret2"));
	assert_false(tokens__equal("secret2", "secret"));
	assert_false(tokens__equal("", "x"));
	assert_true(tokens__equal("", ""));
}

static void test_file_signature(void **state)
{
	char sig[96], sig_exp[96];

	(void)state;
	tokens__file_signature("/home/user/a.txt", "read", "", "tok", -1, sig, sizeof(sig));
	tokens__file_signature("/home/user/a.txt", "read", "", "tok", 1700000000, sig_exp,
			       sizeof(sig_exp));
	assert_memory_equal(sig, "v1_", 3);
	assert_int_equal(strlen(sig), 3 + 43); /* 32 bytes, base64, no padding */
	assert_null(strchr(sig, '='));
	assert_string_not_equal(sig, sig_exp);
}

static void test_config_env_override(void **state)
{
	(void)state;
	setenv("WARREN_TEST_SETTING", "42", 1);
	assert_string_equal(config__get("test_setting", "x"), "42");
	assert_int_equal(config__get_int("test_setting", 7), 42);
	assert_int_equal(config__get_int("absent_setting", 7), 7);
	setenv("WARREN_TEST_FLAG", "true", 1);
	assert_true(config__get_bool("test_flag", false));
}

static void test_clock_format(void **state)
{
	char text[32];

	(void)state;
	clock__format_rfc3339(1700000000123LL, text);
	assert_string_equal(text, "2023-11-14T22:13:20.123Z");
	assert_true(clock__monotonic_ns() > 0);
}

static void test_host_port(void **state)
{
	char host[16];
	uint16_t port = 1;

	(void)state;
	assert_int_equal(address__parse_host_port("127.0.0.1:3000", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 3000);
	assert_int_equal(address__parse_host_port("localhost:0", host, sizeof(host), &port), 0);
	assert_string_equal(host, "localhost");
	assert_int_equal(port, 0);
	assert_int_equal(address__parse_host_port("0.0.0.0:65535", host, sizeof(host), &port), 0);
	assert_int_equal(port, 65535);
	/* IPv6: the last colon splits; brackets are dropped */
	assert_int_equal(address__parse_host_port("::1:3002", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 3002);
	assert_int_equal(address__parse_host_port("[::1]:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 80);
}

static void test_host_port_refused(void **state)
{
	static const char *const bad[] = {
	    "127.0.0.1",		 /* no port */
	    "127.0.0.1:",		 /* empty port */
	    ":3000",			 /* empty host */
	    "[]:3000",			 /* empty bracketed host */
	    "[::1:3000",		 /* unclosed bracket */
	    "::1]:3000",		 /* stray bracket */
	    "host:65536",		 /* out of range */
	    "host:99999999999999999999", /* overflow */
	    "host:-1",			 /* sign */
	    "host:+1",
	    "host: 1", /* space */
	    "host:1x", /* trailing junk */
	    "a-host-name-too-long-for-16:1",
	    "",
	};
	char host[16];
	uint16_t port;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (address__parse_host_port(bad[i], host, sizeof(host), &port) != -EINVAL)
			fail_msg("\"%s\" was accepted", bad[i]);
	assert_int_equal(address__parse_host_port(NULL, host, sizeof(host), &port), -EINVAL);
}

static void test_sibling_binary(void **state)
{
	char self[PATH_MAX], out[PATH_MAX], *name;
	ssize_t n;

	(void)state;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	name = strrchr(self, '/') + 1;
	/* this test binary is its own sibling */
	assert_int_equal(binary__find_sibling(name, out, sizeof(out)), 0);
	assert_string_equal(out, self);
	assert_int_equal(binary__find_sibling("warren-no-such-binary", out, sizeof(out)), -ENOENT);
	assert_int_equal(binary__find_sibling("../escape", out, sizeof(out)), -EINVAL);
	assert_int_equal(binary__find_sibling(name, out, 4), -ENAMETOOLONG);
}

static void test_check_passes(void **state)
{
	int calls = 0;

	(void)state;
	CHECK(++calls == 1); /* evaluated exactly once */
	assert_int_equal(calls, 1);
}

/* A failed CHECK aborts with file:line and the expression on stderr, in
 * this release-type build too (NDEBUG does not remove it). */
static void test_check_fails_loudly(void **state)
{
	char out[1024] = "";
	int fds[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int zero = 0;

		dup2(fds[1], STDERR_FILENO);
		signal(SIGABRT, SIG_DFL);
		CHECK(zero == 1);
		_exit(0); /* not reached */
	}
	close(fds[1]);
	while ((n = read(fds[0], out + got, sizeof(out) - 1 - (size_t)got)) > 0)
		got += n;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	assert_non_null(strstr(out, "test_common.c:"));
	assert_non_null(strstr(out, "test_check_fails_loudly"));
	assert_non_null(strstr(out, "check failed: zero == 1"));
}

/* A kept descriptor moves above select()'s range, close-on-exec, the old
 * number closed; with the open-file limit at 1024 it stays where it is. */
static void test_fds_keep_high(void **state)
{
	struct rlimit limit, low;
	int fd = open("/dev/null", O_RDONLY), high, kept;

	(void)state;
	assert_true(fd >= 0 && fd < 1024);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &limit), 0);
	if (limit.rlim_cur <= 1024) {
		low = limit; /* raise it to the hard limit if that allows */
		low.rlim_cur = limit.rlim_max > 2048 ? 2048 : limit.rlim_max;
		if (low.rlim_cur <= 1024 || setrlimit(RLIMIT_NOFILE, &low)) {
			close(fd);
			skip(); /* cannot have a descriptor above 1023 here */
		}
	}
	high = fds__keep_high(fd);
	assert_true(high >= 1024);
	assert_int_equal(fcntl(fd, F_GETFD), -1); /* the old number is closed */
	assert_true(fcntl(high, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(fds__keep_high(high), high); /* already high: unchanged */
	close(high);

	low = limit;
	low.rlim_cur = limit.rlim_max < 1024 ? limit.rlim_max : 1024;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	fd = open("/dev/null", O_RDONLY);
	kept = fds__keep_high(fd);
	assert_int_equal(kept, fd); /* no room above 1023: kept low, still open */
	assert_true(fcntl(kept, F_GETFD) >= 0);
	close(kept);
	setrlimit(RLIMIT_NOFILE, &limit);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sandbox_id_shape),
	    cmocka_unit_test(test_uuid_shape),
	    cmocka_unit_test(test_api_key_shape),
	    cmocka_unit_test(test_sha256_and_hmac_vectors),
	    cmocka_unit_test(test_derived_tokens_differ),
	    cmocka_unit_test(test_constant_time_equal),
	    cmocka_unit_test(test_file_signature),
	    cmocka_unit_test(test_config_env_override),
	    cmocka_unit_test(test_clock_format),
	    cmocka_unit_test(test_host_port),
	    cmocka_unit_test(test_host_port_refused),
	    cmocka_unit_test(test_sibling_binary),
	    cmocka_unit_test(test_check_passes),
	    cmocka_unit_test(test_check_fails_loudly),
	    cmocka_unit_test(test_fds_keep_high),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
