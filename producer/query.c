/* query: list filters (docs/e2b-compatibility.md, "REST API"). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/storage.h"

static int query__fail(struct api_error *err, const char *message, const char *detail)
{
	if (err) {
		err->status = 400;
		snprintf(err->message, sizeof(err->message), "%s%s%.100s%s", message,
			 detail ? " \"" : "", detail ? detail : "", detail ? "\"" : "");
	}
	return -1;
}

static int query__hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int query__url_decode(const char *in, size_t in_len, char *out, size_t out_len)
{
	size_t o = 0;

	for (size_t i = 0; i < in_len; i++) {
		int c = (unsigned char)in[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int high, low;

			if (i + 2 >= in_len)
				return -1;
			high = query__hex(in[i + 1]);
			low = query__hex(in[i + 2]);
			if (high < 0 || low < 0)
				return -1;
			c = high * 16 + low;
			i += 2;
		}
		if (c == 0 || o + 1 >= out_len)
			return -1;
		out[o++] = (char)c;
	}
	if (out_len == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

int query__metadata(const char *value, json_t **out, struct api_error *err)
{
	const char *pair = value;
	json_t *filter;

	*out = NULL;
	if (!value || !*value)
		return 0;
	if (strlen(value) > 4096)
		return query__fail(err, "metadata filter is longer than 4096 bytes", NULL);
	filter = json_object();
	while (pair && *pair) {
		const char *end = strchr(pair, '&');
		size_t len = end ? (size_t)(end - pair) : strlen(pair);
		const char *equals = memchr(pair, '=', len);
		char key[257], text[1025], once[1025];

		if (len == 0)
			goto next;
		if (!equals || equals == pair) {
			json_decref(filter);
			return query__fail(
			    err, "metadata filter must be key=value pairs joined by '&'", NULL);
		}
		/* Two layers, as the SDK encodes them: encodeURIComponent of
		 * each key and value, then URLSearchParams of the pairs. */
		if (query__url_decode(pair, (size_t)(equals - pair), once, sizeof(once)) ||
		    query__url_decode(once, strlen(once), key, sizeof(key)) ||
		    query__url_decode(equals + 1, len - (size_t)(equals - pair) - 1, once,
				      sizeof(once)) ||
		    query__url_decode(once, strlen(once), text, sizeof(text))) {
			json_decref(filter);
			return query__fail(err, "metadata filter has a bad escape or is too long",
					   NULL);
		}
		json_object_set_new(filter, key, json_string(text));
	next:
		pair = end ? end + 1 : NULL;
	}
	if (json_object_size(filter) == 0) {
		json_decref(filter);
		filter = NULL;
	}
	*out = filter;
	return 0;
}

int query__states(const char *value, uint32_t *mask, struct api_error *err)
{
	const char *item = value;

	if (!value)
		return 0;
	while (item) {
		const char *end = strchr(item, ',');
		size_t len = end ? (size_t)(end - item) : strlen(item);
		enum storage_sandbox_state state;
		char name[32];

		if (len > 0) {
			if (len >= sizeof(name))
				return query__fail(err, "unknown sandbox state", NULL);
			memcpy(name, item, len);
			name[len] = '\0';
			/* E2B's list knows two states; the others are ours. */
			if ((strcmp(name, "running") && strcmp(name, "paused")) ||
			    !storage__sandbox_state_parse(name, &state))
				return query__fail(
				    err, "state must be \"running\" or \"paused\", not", name);
			*mask |= STORAGE_STATE_BIT(state);
		}
		item = end ? end + 1 : NULL;
	}
	return 0;
}

int query__limit(const char *value, int *out, struct api_error *err)
{
	char *end;
	long limit;

	if (!value || !*value) {
		*out = STORAGE_PAGE_LIMIT_MAX;
		return 0;
	}
	limit = strtol(value, &end, 10);
	if (*end || !isdigit((unsigned char)value[0]) || limit < 1 ||
	    limit > STORAGE_PAGE_LIMIT_MAX)
		return query__fail(err, "limit must be an integer from 1 to 100", NULL);
	*out = (int)limit;
	return 0;
}

int query__order(const char *value, bool *ascending, struct api_error *err)
{
	*ascending = false;
	if (!value || !*value || !strcmp(value, "desc"))
		return 0;
	if (!strcmp(value, "asc")) {
		*ascending = true;
		return 0;
	}
	return query__fail(err, "order must be \"asc\" or \"desc\", not", value);
}

int query__time(const char *name, const char *value, int64_t *out_ms, struct api_error *err)
{
	char message[96];

	*out_ms = 0;
	if (!value || !*value)
		return 0;
	if (clock__parse_rfc3339(value, out_ms) && *out_ms > 0)
		return 0;
	snprintf(message, sizeof(message),
		 "%s must be an RFC 3339 time (2026-01-31T12:00:00Z), not", name);
	return query__fail(err, message, value);
}

int query__template(const char *value, const char **out, struct api_error *err)
{
	size_t len = value ? strlen(value) : 0;

	*out = NULL;
	if (len == 0)
		return 0;
	if (len > 128)
		return query__fail(err, "template must be at most 128 characters", NULL);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];

		if (!(islower(c) || isdigit(c) || ((c == '.' || c == '_' || c == '-') && i > 0)))
			return query__fail(
			    err, "template must be a template id ([a-z0-9][a-z0-9._-]*), not",
			    value);
	}
	*out = value;
	return 0;
}

int query__unix_seconds(const char *name, const char *value, int64_t *out_s, struct api_error *err)
{
	char message[96], *end;
	long long seconds;

	*out_s = -1;
	if (!value || !*value)
		return 0;
	errno = 0;
	seconds = strtoll(value, &end, 10);
	if (*end || errno || !isdigit((unsigned char)value[0]) || seconds > 253402300799LL) {
		snprintf(message, sizeof(message), "%s must be a Unix time in seconds, not", name);
		return query__fail(err, message, value);
	}
	*out_s = seconds;
	return 0;
}

int query__sandbox_ids(const char *value, char (*ids)[24], size_t max, size_t *count,
		       struct api_error *err)
{
	const char *item = value;

	*count = 0;
	if (!value || !*value)
		return query__fail(
		    err, "sandbox_ids is required (a comma-separated list of sandbox ids)", NULL);
	while (item) {
		const char *end = strchr(item, ',');
		size_t len = end ? (size_t)(end - item) : strlen(item);
		char id[IDS_SANDBOX_ID_LEN + 2];
		bool seen = false;

		if (len > 0) {
			if (len > IDS_SANDBOX_ID_LEN) {
				return query__fail(
				    err, "sandbox_ids holds something that is not a sandbox id",
				    NULL);
			}
			memcpy(id, item, len);
			id[len] = '\0';
			if (!ids__is_sandbox_id(id))
				return query__fail(
				    err,
				    "sandbox_ids holds something that is not a sandbox id:", id);
			for (size_t i = 0; i < *count; i++)
				seen = seen || !strcmp(ids[i], id);
			if (!seen) {
				if (*count >= max)
					return query__fail(
					    err, "sandbox_ids lists more than 100 sandboxes", NULL);
				snprintf(ids[(*count)++], 24, "%s", id);
			}
		}
		item = end ? end + 1 : NULL;
	}
	if (*count == 0)
		return query__fail(
		    err, "sandbox_ids is required (a comma-separated list of sandbox ids)", NULL);
	return 0;
}

int query__log_level(const char *value, const char **out, struct api_error *err)
{
	static const char *const levels[] = {"debug", "info", "warn", "error"};

	*out = NULL;
	if (!value || !*value)
		return 0;
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (!strcmp(value, levels[i])) {
			*out = levels[i];
			return 0;
		}
	}
	return query__fail(err, "level must be debug, info, warn or error, not", value);
}

int query__direction(const char *value, bool *forward, struct api_error *err)
{
	*forward = true;
	if (!value || !*value || !strcmp(value, "forward"))
		return 0;
	if (!strcmp(value, "backward")) {
		*forward = false;
		return 0;
	}
	return query__fail(err, "direction must be \"forward\" or \"backward\", not", value);
}

int query__int_range(const char *name, const char *value, int64_t min, int64_t max,
		     int64_t fallback, int64_t *out, struct api_error *err)
{
	char message[128], *end;
	long long number;

	*out = fallback;
	if (!value || !*value)
		return 0;
	errno = 0;
	number = strtoll(value, &end, 10);
	if (*end || errno || !(isdigit((unsigned char)value[0]) || value[0] == '-') ||
	    number < min || number > max) {
		snprintf(message, sizeof(message), "%s must be an integer from %lld to %lld, not",
			 name, (long long)min, (long long)max);
		return query__fail(err, message, value);
	}
	*out = number;
	return 0;
}
