/* libFuzzer target: warren-proxy's hostile-input parsers (request and
 * response heads, chunked bodies split anywhere, Host parsing, header
 * routing, masks, error rendering) with their invariants checked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "route.h"

static struct http_head head;

static void check_head(const char *buf, size_t len)
{
	if (head.head_len > len)
		abort();
	for (size_t i = 0; i < head.header_count; i++) {
		const struct http_header *h = &head.headers[i];

		if (h->name < buf || h->name + h->name_len > buf + head.head_len ||
		    h->value < buf || h->value + h->value_len > buf + head.head_len)
			abort();
		for (size_t j = 0; j < h->value_len; j++)
			if (h->value[j] == '\r' || h->value[j] == '\n')
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct route_target target;
	const char *error = NULL;
	char text[512], out[4096];

	if (http__parse_request(buf, size, 16384, &head) == HTTP_PARSE_OK) {
		check_head(buf, size);
		if (head.body == HTTP_BODY_LENGTH && head.content_length > HTTP_MAX_CONTENT_LENGTH)
			abort();
		if (route__request(&head, "warren.test", &target, &error)) {
			if (target.port == 0 || target.port > 65535 || !target.sandbox_id[0])
				abort();
		} else if (!error) {
			abort();
		}
		(void)route__wants_html(&head);
	}
	if (http__parse_response(buf, size, 16384, size & 1, &head) == HTTP_PARSE_OK) {
		check_head(buf, size);
		if (head.status < 100 || head.status > 599)
			abort();
	}
	/* chunked: whole, and split at a point chosen by the first byte */
	{
		struct http_chunked one, two;
		bool done_one = false, done_two = false;
		size_t split = size ? data[0] % (size + 1) : 0;
		ssize_t a =
		    (http__chunked_init(&one), http__chunked_feed(&one, buf, size, &done_one));
		ssize_t b, c = 0;

		http__chunked_init(&two);
		b = http__chunked_feed(&two, buf, split, &done_two);
		if (b >= 0 && !done_two && (size_t)b == split)
			c = http__chunked_feed(&two, buf + split, size - split, &done_two);
		if (a > (ssize_t)size)
			abort();
		if (a >= 0 && b >= 0 && c >= 0 && !done_one && (size_t)b == split &&
		    (size_t)(b + c) != (size_t)a)
			abort();
	}
	route__parse_host(buf, size, "warren.test", &target);
	if (size < sizeof(text)) {
		memcpy(text, buf, size);
		text[size] = '\0';
		if (route__mask_host(text, 8080, out, sizeof(out)) &&
		    (strchr(out, '\r') || strchr(out, '\n') || strchr(out, ' ')))
			abort();
		{
			struct route_error e = {.kind = (enum route_error_kind)(size % 11),
						.sandbox_id = text,
						.message = text,
						.port = 1};

			(void)route__render_error(&e, size & 1, size & 2, out, sizeof(out));
		}
	}
	return 0;
}
