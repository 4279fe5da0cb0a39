/* Unit tests of the hostile-input parsers (workers/net/parse.c): TLS
 * ClientHello SNI, HTTP Host, DNS answers. Malformed input must be
 * refused, never crash (run under -DWARREN_SANITIZE=ON too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "warren/net.h"

/* Builds a ClientHello record with the given SNI (NULL: no SNI ext). */
static size_t client_hello(uint8_t *out, const char *sni, bool extra_ext)
{
	uint8_t body[1024];
	size_t n = 0, ext_start, name_len = sni ? strlen(sni) : 0;

	body[n++] = 3;
	body[n++] = 3; /* legacy_version */
	memset(body + n, 0xab, 32);
	n += 32; /* random */
	body[n++] = 32;
	memset(body + n, 1, 32);
	n += 32; /* session id */
	body[n++] = 0;
	body[n++] = 4; /* cipher suites */
	body[n++] = 0x13;
	body[n++] = 0x01;
	body[n++] = 0x13;
	body[n++] = 0x02;
	body[n++] = 1;
	body[n++] = 0; /* compression */
	ext_start = n;
	n += 2;
	if (extra_ext) { /* supported_versions */
		body[n++] = 0;
		body[n++] = 43;
		body[n++] = 0;
		body[n++] = 3;
		body[n++] = 2;
		body[n++] = 3;
		body[n++] = 4;
	}
	if (sni) {
		body[n++] = 0;
		body[n++] = 0; /* server_name */
		body[n++] = (uint8_t)((name_len + 5) >> 8);
		body[n++] = (uint8_t)(name_len + 5);
		body[n++] = (uint8_t)((name_len + 3) >> 8);
		body[n++] = (uint8_t)(name_len + 3);
		body[n++] = 0; /* host_name */
		body[n++] = (uint8_t)(name_len >> 8);
		body[n++] = (uint8_t)name_len;
		memcpy(body + n, sni, name_len);
		n += name_len;
	}
	body[ext_start] = (uint8_t)((n - ext_start - 2) >> 8);
	body[ext_start + 1] = (uint8_t)(n - ext_start - 2);
	out[0] = 22;
	out[1] = 3;
	out[2] = 1;
	out[3] = (uint8_t)((n + 4) >> 8);
	out[4] = (uint8_t)(n + 4);
	out[5] = 1;
	out[6] = 0;
	out[7] = (uint8_t)(n >> 8);
	out[8] = (uint8_t)n;
	memcpy(out + 9, body, n);
	return n + 9;
}

static void test_sni_valid(void **state)
{
	uint8_t hello[2048];
	size_t len = client_hello(hello, "allowed.test", true);
	char name[NET_SNI_MAX + 1];
	size_t name_len;

	(void)state;
	assert_int_equal(net_parse__tls_sni(hello, len, name, &name_len), NET_PARSE_OK);
	assert_int_equal(name_len, 12);
	assert_memory_equal(name, "allowed.test", 12);
	len = client_hello(hello, NULL, true);
	assert_int_equal(net_parse__tls_sni(hello, len, name, &name_len), NET_PARSE_NOT_FOUND);
}

static void test_sni_truncated_everywhere(void **state)
{
	uint8_t hello[2048];
	size_t len = client_hello(hello, "allowed.test", true);
	char name[NET_SNI_MAX + 1];
	size_t name_len;

	(void)state;
	/* Every prefix is "need more", never OK and never a crash. */
	for (size_t i = 0; i < len; i++) {
		uint8_t *copy = malloc(i ? i : 1);

		memcpy(copy, hello, i);
		assert_int_equal(net_parse__tls_sni(copy, i, name, &name_len), NET_PARSE_NEED_MORE);
		free(copy);
	}
}

static void test_sni_malformed(void **state)
{
	uint8_t hello[2048], bad[2048];
	size_t len = client_hello(hello, "allowed.test", true);
	char name[NET_SNI_MAX + 1];
	size_t name_len;

	(void)state;
	assert_int_equal(
	    net_parse__tls_sni((const uint8_t *)"GET / HTTP/1.1\r\n", 16, name, &name_len),
	    NET_PARSE_MALFORMED);
	memcpy(bad, hello, len);
	bad[0] = 23; /* not handshake */
	assert_int_equal(net_parse__tls_sni(bad, len, name, &name_len), NET_PARSE_MALFORMED);
	memcpy(bad, hello, len);
	bad[5] = 2; /* ServerHello */
	assert_int_equal(net_parse__tls_sni(bad, len, name, &name_len), NET_PARSE_MALFORMED);
	memcpy(bad, hello, len);
	bad[3] = 0xff;
	bad[4] = 0xff; /* record > 2^14 */
	assert_int_equal(net_parse__tls_sni(bad, len, name, &name_len), NET_PARSE_MALFORMED);
	memcpy(bad, hello, len);
	bad[6] = 0x10; /* handshake longer than record */
	assert_int_equal(net_parse__tls_sni(bad, len, name, &name_len), NET_PARSE_MALFORMED);
	memcpy(bad, hello, len);
	bad[9 + 34] = 33; /* session id > 32 */
	assert_int_equal(net_parse__tls_sni(bad, len, name, &name_len), NET_PARSE_MALFORMED);
	/* Every single-byte corruption: any verdict, but no crash and an
	 * OK name always lies inside the buffer. */
	for (size_t i = 0; i < len; i++) {
		for (int v = 0; v < 256; v += 51) {
			memcpy(bad, hello, len);
			bad[i] = (uint8_t)v;
			if (net_parse__tls_sni(bad, len, name, &name_len) == NET_PARSE_OK) {
				assert_true(name_len >= 1 && name_len <= NET_SNI_MAX);
				assert_int_equal(strlen(name), name_len);
			}
		}
	}
}

static void test_sni_duplicate_extension(void **state)
{
	uint8_t hello[2048];
	size_t len = client_hello(hello, "a.test", false), ext_total;
	char name[NET_SNI_MAX + 1];
	size_t name_len;
	/* Append a second server_name extension and fix the lengths. */
	static const uint8_t second[] = {0, 0, 0, 11, 0, 9, 0, 0, 6, 'b', '.', 't', 'e', 's', 't'};

	(void)state;
	memcpy(hello + len, second, sizeof(second));
	ext_total = ((size_t)hello[9 + 2 + 32 + 33 + 6 + 2] << 8 | hello[9 + 2 + 32 + 33 + 6 + 3]) +
		    sizeof(second);
	hello[9 + 2 + 32 + 33 + 6 + 2] = (uint8_t)(ext_total >> 8);
	hello[9 + 2 + 32 + 33 + 6 + 3] = (uint8_t)ext_total;
	len += sizeof(second);
	hello[3] = (uint8_t)((len - 5) >> 8);
	hello[4] = (uint8_t)(len - 5);
	hello[7] = (uint8_t)((len - 9) >> 8);
	hello[8] = (uint8_t)(len - 9);
	assert_int_equal(net_parse__tls_sni(hello, len, name, &name_len), NET_PARSE_MALFORMED);
}

/* Splits the handshake message of a one-record ClientHello into records
 * of at most chunk bytes. */
static size_t fragment(const uint8_t *hello, size_t len, size_t chunk, uint8_t *out)
{
	size_t n = 0;

	for (size_t at = 5; at < len; at += chunk) {
		size_t piece = len - at < chunk ? len - at : chunk;

		out[n++] = 22;
		out[n++] = 3;
		out[n++] = 1;
		out[n++] = (uint8_t)(piece >> 8);
		out[n++] = (uint8_t)piece;
		memcpy(out + n, hello + at, piece);
		n += piece;
	}
	return n;
}

static void test_sni_fragmented(void **state)
{
	uint8_t hello[2048], split[8192];
	size_t len = client_hello(hello, "fragmented.example.test", true), n;
	char name[NET_SNI_MAX + 1];
	size_t name_len;

	(void)state;
	for (size_t chunk = 1; chunk <= 64; chunk = chunk * 2 + 1) {
		n = fragment(hello, len, chunk, split);
		assert_int_equal(net_parse__tls_sni(split, n, name, &name_len), NET_PARSE_OK);
		assert_string_equal(name, "fragmented.example.test");
		/* Every prefix of the fragmented form is "need more". */
		for (size_t i = 0; i < n; i++)
			assert_int_equal(net_parse__tls_sni(split, i, name, &name_len),
					 NET_PARSE_NEED_MORE);
	}
	/* A record of another type in between: refused. */
	n = fragment(hello, len, 40, split);
	split[45] = 23;
	assert_int_equal(net_parse__tls_sni(split, n, name, &name_len), NET_PARSE_MALFORMED);
	/* Something after the ClientHello in the same record: refused. */
	memcpy(split, hello, len);
	split[len] = 1;
	split[3] = (uint8_t)((len - 4) >> 8);
	split[4] = (uint8_t)(len - 4);
	assert_int_equal(net_parse__tls_sni(split, len + 1, name, &name_len), NET_PARSE_MALFORMED);
	/* Bytes after the last record (early data) are not looked at. */
	memcpy(split, hello, len);
	memset(split + len, 0xee, 10);
	assert_int_equal(net_parse__tls_sni(split, len + 10, name, &name_len), NET_PARSE_OK);
}

static enum net_parse_result host(const char *request, char *out)
{
	const char *name;
	size_t len;
	enum net_parse_result r =
	    net_parse__http_host((const uint8_t *)request, strlen(request), &name, &len);

	if (r == NET_PARSE_OK) {
		memcpy(out, name, len);
		out[len] = 0;
	}
	return r;
}

static void test_http_host(void **state)
{
	char out[300];

	(void)state;
	assert_int_equal(host("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", out), NET_PARSE_OK);
	assert_string_equal(out, "a.test");
	assert_int_equal(
	    host("GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT:\t b.test:8080 \r\nAccept: */*\r\n\r\n",
		 out),
	    NET_PARSE_OK);
	assert_string_equal(out, "b.test");
	assert_int_equal(host("GET / HTTP/1.1\r\nHost: a.test\r\n", out), NET_PARSE_NEED_MORE);
	assert_int_equal(host("GET / HTTP/1.1\r\nAccept: x\r\n\r\n", out), NET_PARSE_NOT_FOUND);
	assert_int_equal(host("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", out),
			 NET_PARSE_MALFORMED);
	assert_int_equal(host("GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", out), NET_PARSE_MALFORMED);
	assert_int_equal(host("GET / HTTP/1.1\r\n Host: a.test\r\n\r\n", out), NET_PARSE_MALFORMED);
	assert_int_equal(host("GET / HTTP/1.1\r\nHost: a.test:80x\r\n\r\n", out),
			 NET_PARSE_MALFORMED);
	assert_int_equal(host("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", out),
			 NET_PARSE_MALFORMED);
	assert_int_equal(host("GET / HTTP/1.1\r\nHost: evil.test@a.test\r\n\r\n", out),
			 NET_PARSE_MALFORMED);
	assert_int_equal(host("GET / HTTP/1.1\r\nHost: \r\n\r\n", out), NET_PARSE_MALFORMED);
	assert_int_equal(host("GET / HTTP/1.1\nHost: a.test\r\n\r\n", out), NET_PARSE_MALFORMED);
	assert_int_equal(host("\x16\x03\x01\r\n\r\n", out), NET_PARSE_MALFORMED);
}

static enum net_parse_result request(const char *text, struct net_http_request *out)
{
	return net_parse__http_request((const uint8_t *)text, strlen(text), out);
}

/* Request framing for keep-alive checks: everything two HTTP parsers
 * could frame differently is refused. */
static void test_http_request(void **state)
{
	struct net_http_request r;
	const char *malformed[] = {
	    "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +5\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5 5\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 9999999999999999999\r\n\r\n",
	    "GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
	    "GET http://a.test@b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
	    "GET b.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n",
	    "GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n",
	};

	(void)state;
	assert_int_equal(request("GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET", &r), NET_PARSE_OK);
	assert_int_equal(r.head_len, strlen("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"));
	assert_int_equal(r.host_len, 6);
	assert_false(r.chunked || r.last || r.content_length);
	assert_int_equal(
	    request("POST /x HTTP/1.1\r\nHost: a.test:8080\r\ncontent-length:  12 \r\n\r\n", &r),
	    NET_PARSE_OK);
	assert_int_equal(r.content_length, 12);
	assert_int_equal(
	    request(
		"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
		&r),
	    NET_PARSE_OK);
	assert_int_equal(
	    request("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nHost: a.test\r\n\r\n", &r),
	    NET_PARSE_OK);
	assert_true(r.chunked);
	assert_int_equal(
	    request("GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n\r\n", &r),
	    NET_PARSE_OK);
	assert_true(r.last);
	assert_int_equal(request("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n", &r),
			 NET_PARSE_MALFORMED);
	assert_int_equal(request("GET HTTP://A.test:80/x HTTP/1.1\r\nHost: a.test\r\n\r\n", &r),
			 NET_PARSE_OK);
	assert_int_equal(request("OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", &r), NET_PARSE_OK);
	assert_int_equal(request("GET / HTTP/1.1\r\nHost: a.test\r\n", &r), NET_PARSE_NEED_MORE);
	for (size_t i = 0; i < sizeof(malformed) / sizeof(*malformed); i++) {
		if (request(malformed[i], &r) != NET_PARSE_MALFORMED)
			fail_msg("accepted: %s", malformed[i]);
	}
}

static void test_http_chunk_line(void **state)
{
	uint64_t size = 0;
	size_t len = 0;

	(void)state;
	assert_int_equal(net_parse__http_chunk_line((const uint8_t *)"1A\r\nxx", 6, &size, &len),
			 NET_PARSE_OK);
	assert_int_equal(size, 26);
	assert_int_equal(len, 4);
	assert_int_equal(net_parse__http_chunk_line((const uint8_t *)"0;ext=1\r\n", 9, &size, &len),
			 NET_PARSE_OK);
	assert_int_equal(size, 0);
	assert_int_equal(len, 9);
	assert_int_equal(net_parse__http_chunk_line((const uint8_t *)"1f", 2, &size, &len),
			 NET_PARSE_NEED_MORE);
	assert_int_equal(net_parse__http_chunk_line((const uint8_t *)"\r\n", 2, &size, &len),
			 NET_PARSE_MALFORMED);
	assert_int_equal(net_parse__http_chunk_line((const uint8_t *)"1g\r\n", 4, &size, &len),
			 NET_PARSE_MALFORMED);
	assert_int_equal(net_parse__http_chunk_line((const uint8_t *)" 1\r\n", 4, &size, &len),
			 NET_PARSE_MALFORMED);
	assert_int_equal(net_parse__http_chunk_line((const uint8_t *)"1\n", 2, &size, &len),
			 NET_PARSE_MALFORMED);
	assert_int_equal(
	    net_parse__http_chunk_line((const uint8_t *)"ffffffffffffffff\r\n", 18, &size, &len),
	    NET_PARSE_MALFORMED);
}

static void test_dns(void **state)
{
	uint8_t query[512], answer[512], scratch[512];
	struct in_addr a[4];
	int n;

	(void)state;
	n = net_parse__dns_query(query, sizeof(query), 0x1234, "allowed.test.");
	assert_int_equal(n, 12 + 14 + 4);
	assert_int_equal(net_parse__dns_query(scratch, sizeof(scratch), 1, "a..b"), -1);
	assert_int_equal(net_parse__dns_query(scratch, 20, 1, "allowed.test"), -1);
	/* An answer: the question, then a CNAME and an A via pointers. */
	memcpy(answer, query, (size_t)n);
	answer[2] = 0x81;
	answer[3] = 0x80;
	answer[7] = 2;
	{
		static const uint8_t records[] = {
		    0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12,	      /* CNAME */
		    0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192,  0,  2, 10, /* A */
		};
		memcpy(answer + n, records, sizeof(records));
		uint32_t ttl = 0;

		assert_int_equal(
		    net_parse__dns_answer(answer, (size_t)n + sizeof(records), 0x1234, a, 4, &ttl),
		    1);
		assert_int_equal(a[0].s_addr, htonl(0xc000020a));
		assert_int_equal(ttl, 60); /* of the A record, not the CNAME */
		/* Wrong id, truncated everywhere, rcode set: refused. */
		assert_int_equal(
		    net_parse__dns_answer(answer, (size_t)n + sizeof(records), 0x1235, a, 4, NULL),
		    -1);
		for (size_t i = 0; i < (size_t)n + sizeof(records) - 1; i++)
			assert_true(net_parse__dns_answer(answer, i, 0x1234, a, 4, NULL) <= 0 ||
				    i >= (size_t)n + sizeof(records));
		answer[3] = 0x83;
		assert_int_equal(
		    net_parse__dns_answer(answer, (size_t)n + sizeof(records), 0x1234, a, 4, NULL),
		    -1);
	}
	/* A self-referencing label chain ends, bounded. */
	memset(answer, 0, sizeof(answer));
	answer[0] = 0x12;
	answer[1] = 0x34;
	answer[2] = 0x80;
	answer[5] = 1;
	for (int i = 12; i < 500; i += 2) {
		answer[i] = 1;
		answer[i + 1] = 'a';
	}
	assert_int_equal(net_parse__dns_answer(answer, 500, 0x1234, a, 4, NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sni_valid),
	    cmocka_unit_test(test_sni_truncated_everywhere),
	    cmocka_unit_test(test_sni_malformed),
	    cmocka_unit_test(test_sni_duplicate_extension),
	    cmocka_unit_test(test_sni_fragmented),
	    cmocka_unit_test(test_http_host),
	    cmocka_unit_test(test_http_request),
	    cmocka_unit_test(test_http_chunk_line),
	    cmocka_unit_test(test_dns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
