/* Unit tests of warren-agent's pure parsers: Connect envelopes, the proto3
 * JSON decoders, base64, Basic auth, --token-hash, path resolution, gzip
 * decoding and Accept-Encoding, /proc/net/tcp lines. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "envelope.h"
#include "gunzip.h"
#include "listeners.h"
#include "agent_paths.h"
#include "wire.h"

static void test_envelope(void **state)
{
	uint8_t frame[64];
	const uint8_t *message;
	size_t len;

	envelope__write_header(frame, 0, 2);
	memcpy(frame + 5, "{}", 2);
	assert_int_equal(envelope__parse_single(frame, 7, 100, &message, &len), ENVELOPE_OK);
	assert_int_equal(len, 2);
	assert_memory_equal(message, "{}", 2);
	assert_int_equal(envelope__parse_single(frame, 6, 100, &message, &len), ENVELOPE_TRUNCATED);
	assert_int_equal(envelope__parse_single(frame, 4, 100, &message, &len), ENVELOPE_TRUNCATED);
	assert_int_equal(envelope__parse_single(frame, 8, 100, &message, &len), ENVELOPE_TRAILING);
	assert_int_equal(envelope__parse_single(frame, 7, 1, &message, &len), ENVELOPE_TOO_LARGE);
	frame[0] = ENVELOPE_FLAG_COMPRESSED;
	assert_int_equal(envelope__parse_single(frame, 7, 100, &message, &len),
			 ENVELOPE_COMPRESSED);
	frame[0] = ENVELOPE_FLAG_END_STREAM;
	assert_int_equal(envelope__parse_single(frame, 7, 100, &message, &len), ENVELOPE_BAD_FLAGS);
	envelope__write_header(frame, 0, 0xffffffffu);
	assert_int_equal(envelope__parse_single(frame, 7, SIZE_MAX, &message, &len),
			 ENVELOPE_TRUNCATED);
}

/* gzip of len bytes of data (optionally twice, as two members). */
static size_t gzip_of(const void *data, size_t len, uint8_t *out, size_t cap)
{
	z_stream zs = {0};

	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
			 Z_OK);
	zs.next_in = (Bytef *)data;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	deflateEnd(&zs);
	return cap - zs.avail_out;
}

static bool count_sink(void *context, const uint8_t *data, size_t len)
{
	(void)data;
	*(size_t *)context += len;
	return true;
}

static void test_gunzip(void **state)
{
	static uint8_t zeros[4 * 1024 * 1024], packed[64 * 1024];
	uint8_t two[256], *out;
	size_t len, out_len, counted = 0, i;
	struct gunzip *gunzip;

	len = gzip_of("hello", 5, two, sizeof(two));
	len += gzip_of(" world", 6, two + len, sizeof(two) - len);
	assert_int_equal(gunzip__buffer(two, len, 100, &out, &out_len), GUNZIP_OK);
	assert_int_equal(out_len, 11);
	assert_string_equal((char *)out, "hello world"); /* NUL-terminated */
	free(out);
	assert_int_equal(gunzip__buffer(two, len, 10, &out, &out_len), GUNZIP_TOO_LARGE);
	assert_int_equal(gunzip__buffer(two, len - 1, 100, &out, &out_len), GUNZIP_TRUNCATED);
	assert_int_equal(gunzip__buffer((const uint8_t *)"plain", 5, 100, &out, &out_len),
			 GUNZIP_CORRUPT);
	assert_int_equal(gunzip__buffer(two, 0, 100, &out, &out_len), GUNZIP_TRUNCATED);
	memcpy(two + len, "xy", 2); /* garbage after a member */
	assert_int_equal(gunzip__buffer(two, len + 2, 100, &out, &out_len), GUNZIP_CORRUPT);

	/* A bomb fed a byte at a time stops at the bound, having handed out
	 * no more than it. */
	len = gzip_of(zeros, sizeof(zeros), packed, sizeof(packed));
	assert_true(len < 8192);
	gunzip = gunzip__new(1024 * 1024);
	for (i = 0; i < len; i++)
		if (gunzip__feed(gunzip, packed + i, 1, count_sink, &counted) != GUNZIP_OK)
			break;
	assert_true(i < len);
	assert_int_equal(gunzip__feed(gunzip, packed, 1, count_sink, &counted), GUNZIP_TOO_LARGE);
	assert_true(counted <= 1024 * 1024);
	gunzip__free(gunzip);
	/* The same, whole, within a bound that fits */
	gunzip = gunzip__new(sizeof(zeros));
	counted = 0;
	assert_int_equal(gunzip__feed(gunzip, packed, len, count_sink, &counted), GUNZIP_OK);
	assert_int_equal(gunzip__finish(gunzip), GUNZIP_OK);
	assert_int_equal(counted, sizeof(zeros));
	gunzip__free(gunzip);
}

static void test_accepts_gzip(void **state)
{
	assert_true(wire__accepts_gzip("gzip"));
	assert_true(wire__accepts_gzip("gzip, deflate"));
	assert_true(wire__accepts_gzip("deflate, GZIP;q=0.5"));
	assert_true(wire__accepts_gzip("br, *"));
	assert_true(wire__accepts_gzip("x-gzip"));
	assert_false(wire__accepts_gzip(NULL));
	assert_false(wire__accepts_gzip(""));
	assert_false(wire__accepts_gzip("identity"));
	assert_false(wire__accepts_gzip("gzip;q=0"));
	assert_false(wire__accepts_gzip("gzip; q=0.000, deflate"));
	assert_false(wire__accepts_gzip("gzipped, deflate"));
}

static void test_listeners(void **state)
{
	struct tcp_listener listener;

	assert_false(listeners__parse_line("  sl  local_address rem_address   st tx_queue "
					   "rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
					   AF_INET, &listener));
	assert_true(listeners__parse_line(
	    "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
	    "     0        0 5732001 1 000000005f6a0aa8 100 0 0 10 0\n",
	    AF_INET, &listener));
	assert_int_equal(listener.port, 8000);
	assert_int_equal(listener.inode, 5732001);
	assert_int_equal(((uint8_t *)&listener.addr4)[0], 127);
	assert_int_equal(((uint8_t *)&listener.addr4)[3], 1);
	assert_true(listeners__is_loopback(&listener));
	/* 0.0.0.0: not loopback; an established socket (01): not a listener */
	assert_true(
	    listeners__parse_line("   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 "
				  "00:00000000 00000000     0        0 1083 1 0 100 0 0 10 0",
				  AF_INET, &listener));
	assert_false(listeners__is_loopback(&listener));
	assert_false(
	    listeners__parse_line("   2: 0100007F:1F40 0100007F:C350 01 00000000:00000000 "
				  "00:00000000 00000000     0        0 77 1 0 100 0 0 10 0",
				  AF_INET, &listener));
	/* ::1 and ::ffff:127.0.0.1 */
	assert_true(listeners__parse_line(
	    "   0: 00000000000000000000000001000000:1F41 00000000000000000000000000000000:0000 0A "
	    "00000000:00000000 00:00000000 00000000     0        0 99 1 0 100 0 0 10 0",
	    AF_INET6, &listener));
	assert_int_equal(listener.port, 8001);
	assert_true(listeners__is_loopback(&listener));
	assert_true(listeners__parse_line(
	    "   1: 0000000000000000FFFF00000100007F:EB47 00000000000000000000000000000000:0000 0A "
	    "00000000:00000000 00:00000000 00000000     0        0 5673852 1 0 100 0 0 10 0",
	    AF_INET6, &listener));
	assert_true(listeners__is_loopback(&listener));
	/* truncated or garbled lines */
	assert_false(listeners__parse_line("   0: 0100007F:1F40", AF_INET, &listener));
	assert_false(listeners__parse_line("   0: 0100007G:1F40 00000000:0000 0A 0:0 0:0 0 0 0 1",
					   AF_INET, &listener));
	assert_false(listeners__parse_line("", AF_INET, &listener));
}

static void test_base64(void **state)
{
	uint8_t out[16];
	char text[32];

	wire__base64_encode((const uint8_t *)"hi\n", 3, text);
	assert_string_equal(text, "aGkK");
	wire__base64_encode((const uint8_t *)"err\n", 4, text);
	assert_string_equal(text, "ZXJyCg==");
	assert_int_equal(wire__base64_decode("ZXJyCg==", 8, out, sizeof(out)), 4);
	assert_memory_equal(out, "err\n", 4);
	assert_int_equal(wire__base64_decode("ZXJyCg", 6, out, sizeof(out)), 4); /* no padding */
	assert_int_equal(wire__base64_decode("-_8", 3, out, sizeof(out)), 2);	 /* url-safe */
	assert_int_equal(out[0], 0xfb);
	assert_int_equal(wire__base64_decode("Z", 1, out, sizeof(out)), -1);
	assert_int_equal(wire__base64_decode("Z!==", 4, out, sizeof(out)), -1);
	assert_int_equal(wire__base64_decode("ZXJyCg==", 8, out, 3), -1); /* capacity */
	assert_int_equal(wire__base64_decode("", 0, out, sizeof(out)), 0);
}

static void test_process_config(void **state)
{
	struct process_config config;
	char err[128];
	json_t *json = json_loads("{\"cmd\":\"/bin/bash\",\"args\":[\"-l\",\"-c\",\"echo hi\"],"
				  "\"envs\":{\"A\":\"1\"},\"cwd\":\"/tmp\"}",
				  0, NULL);

	assert_true(wire__parse_process_config(json, &config, err, sizeof(err)));
	assert_string_equal(config.cmd, "/bin/bash");
	assert_int_equal(config.argc, 4);
	assert_string_equal(config.argv[0], "/bin/bash");
	assert_string_equal(config.argv[3], "echo hi");
	assert_null(config.argv[4]);
	assert_int_equal(config.env_count, 1);
	assert_string_equal(config.envs[0], "A=1");
	assert_string_equal(config.cwd, "/tmp");
	wire__process_config_free(&config);
	json_decref(json);

	json = json_loads("{\"cmd\":\"x\",\"envs\":{\"A=B\":\"1\"}}", 0, NULL);
	assert_false(wire__parse_process_config(json, &config, err, sizeof(err)));
	json_decref(json);
	json = json_loads("{\"cmd\":\"x\",\"args\":[1]}", 0, NULL);
	assert_false(wire__parse_process_config(json, &config, err, sizeof(err)));
	json_decref(json);
	json = json_loads("{\"cmd\":\"\"}", 0, NULL);
	assert_false(wire__parse_process_config(json, &config, err, sizeof(err)));
	json_decref(json);
	json = json_loads("{\"cmd\":\"a\\u0000b\"}", 0, NULL);
	assert_false(wire__parse_process_config(json, &config, err, sizeof(err)));
	json_decref(json);
	assert_false(wire__parse_process_config(json_null(), &config, err, sizeof(err)));
}

static void test_selector_and_signal(void **state)
{
	struct process_selector selector;
	char err[128];
	json_t *json = json_loads("{\"pid\":42}", 0, NULL);

	assert_true(wire__parse_selector(json, &selector, err, sizeof(err)));
	assert_true(selector.has_pid);
	assert_int_equal(selector.pid, 42);
	json_decref(json);
	json = json_loads("{\"tag\":\"t1\"}", 0, NULL);
	assert_true(wire__parse_selector(json, &selector, err, sizeof(err)));
	assert_false(selector.has_pid);
	assert_string_equal(selector.tag, "t1");
	json_decref(json);
	json = json_loads("{\"pid\":-1}", 0, NULL);
	assert_false(wire__parse_selector(json, &selector, err, sizeof(err)));
	json_decref(json);
	json = json_loads("{}", 0, NULL);
	assert_false(wire__parse_selector(json, &selector, err, sizeof(err)));
	json_decref(json);

	json = json_string("SIGNAL_SIGKILL");
	assert_int_equal(wire__parse_signal(json), SIGKILL);
	json_decref(json);
	json = json_integer(15);
	assert_int_equal(wire__parse_signal(json), SIGTERM);
	json_decref(json);
	json = json_integer(11);
	assert_int_equal(wire__parse_signal(json), 0);
	json_decref(json);
}

static void test_headers_and_flags(void **state)
{
	struct token_hash hash;
	char user[64];

	assert_true(wire__parse_basic_auth_user("Basic cm9vdDo=", user, sizeof(user))); /* root: */
	assert_string_equal(user, "root");
	assert_false(wire__parse_basic_auth_user("Bearer x", user, sizeof(user)));
	assert_false(wire__parse_basic_auth_user("Basic Og==", user, sizeof(user))); /* ":" */
	assert_false(wire__parse_basic_auth_user(NULL, user, sizeof(user)));

	assert_true(wire__parse_token_hash(
	    "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789", &hash));
	assert_int_equal(hash.algorithm, TOKEN_HASH_SHA256);
	assert_string_equal(hash.hex,
			    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_false(wire__parse_token_hash("sha256:abc", &hash));
	assert_false(wire__parse_token_hash("md5:abcd", &hash));
	assert_int_equal(hash.algorithm, TOKEN_HASH_NONE);

	assert_true(wire__content_type_is("application/json; charset=utf-8", "application/json"));
	assert_true(wire__content_type_is("Application/Connect+JSON", "application/connect+json"));
	assert_false(wire__content_type_is("application/json+x", "application/json"));
	assert_false(wire__content_type_is(NULL, "application/json"));
}

static void test_paths(void **state)
{
	char out[64];

	assert_true(paths__resolve("file.txt", "/home/user", out, sizeof(out)));
	assert_string_equal(out, "/home/user/file.txt");
	assert_true(paths__resolve("~/a/./b//c/", "/home/user", out, sizeof(out)));
	assert_string_equal(out, "/home/user/a/b/c");
	assert_true(paths__resolve("~", "/home/user", out, sizeof(out)));
	assert_string_equal(out, "/home/user");
	assert_true(paths__resolve("/../../etc/../tmp/x", "/home/user", out, sizeof(out)));
	assert_string_equal(out, "/tmp/x");
	assert_true(paths__resolve("../../../..", "/home/user", out, sizeof(out)));
	assert_string_equal(out, "/");
	assert_false(paths__resolve("", "/home/user", out, sizeof(out)));
	assert_false(paths__resolve("a\nb", "/", out, sizeof(out)));
	assert_false(
	    paths__resolve("/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
			   "/", out, sizeof(out)));
	assert_string_equal(paths__basename("/a/b.txt"), "b.txt");
	assert_string_equal(paths__basename("/"), "/");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_envelope),
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_gunzip),
	    cmocka_unit_test(test_accepts_gzip),
	    cmocka_unit_test(test_listeners),
	    cmocka_unit_test(test_process_config),
	    cmocka_unit_test(test_selector_and_signal),
	    cmocka_unit_test(test_headers_and_flags),
	    cmocka_unit_test(test_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
