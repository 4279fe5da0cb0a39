/* storage names: the pure parts of the storage API (SQLSTATE mapping,
 * enum names, keyset page tokens). No libpq here: unit-tested alone. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warren/ids.h"
#include "warren/storage.h"

/* PostgreSQL Appendix A, "PostgreSQL Error Codes". */
enum storage_status storage__status_from_sqlstate(const char *sqlstate)
{
	if (!sqlstate || strlen(sqlstate) != 5)
		return STORAGE_ERR_UNAVAILABLE;
	if (!strcmp(sqlstate, "23505"))
		return STORAGE_ERR_DUPLICATE; /* unique_violation */
	if (!strcmp(sqlstate, "23503"))
		return STORAGE_ERR_NOT_FOUND_REF; /* foreign_key_violation */
	if (!strncmp(sqlstate, "23", 2))
		return STORAGE_ERR_INVALID; /* check, not_null, restrict, exclusion */
	if (!strncmp(sqlstate, "22", 2))
		return STORAGE_ERR_INVALID; /* data exception: bad uuid, too long, ... */
	if (!strncmp(sqlstate, "08", 2))
		return STORAGE_ERR_UNAVAILABLE; /* connection exception */
	if (!strcmp(sqlstate, "57P01") || !strcmp(sqlstate, "57P02") ||
	    !strcmp(sqlstate, "57P03") || !strcmp(sqlstate, "57P04"))
		return STORAGE_ERR_UNAVAILABLE; /* admin/crash shutdown, cannot connect now */
	if (!strncmp(sqlstate, "53", 2))
		return STORAGE_ERR_UNAVAILABLE; /* insufficient resources */
	if (!strcmp(sqlstate, "40001") || !strcmp(sqlstate, "40P01") || !strcmp(sqlstate, "55P03"))
		return STORAGE_ERR_UNAVAILABLE; /* serialization, deadlock, lock timeout: retry */
	return STORAGE_ERR_INTERNAL;
}

const char *storage__status_name(enum storage_status status)
{
	switch (status) {
	case STORAGE_OK:
		return "ok";
	case STORAGE_ERR_NOT_FOUND:
		return "not_found";
	case STORAGE_ERR_DUPLICATE:
		return "duplicate";
	case STORAGE_ERR_NOT_FOUND_REF:
		return "not_found_ref";
	case STORAGE_ERR_INVALID:
		return "invalid";
	case STORAGE_ERR_CONFLICT:
		return "conflict";
	case STORAGE_ERR_UNAVAILABLE:
		return "unavailable";
	case STORAGE_ERR_INTERNAL:
		return "internal";
	}
	return "unknown";
}

static const char *const storage_tier_names[] = {"hobby", "pro", "enterprise"};

const char *storage__tier_name(enum storage_tier tier)
{
	if ((unsigned)tier >= sizeof(storage_tier_names) / sizeof(storage_tier_names[0]))
		return "unknown";
	return storage_tier_names[tier];
}

bool storage__tier_parse(const char *name, enum storage_tier *tier)
{
	for (size_t i = 0; name && i < sizeof(storage_tier_names) / sizeof(storage_tier_names[0]);
	     i++) {
		if (!strcmp(name, storage_tier_names[i])) {
			*tier = (enum storage_tier)i;
			return true;
		}
	}
	return false;
}

const char *const storage_limit_names[] = {
    "lifecycle_requests",	   "lifecycle_window_s",   "sandbox_operations",
    "sandbox_operations_window_s", "concurrent_sandboxes", "creation_rate_per_s",
    "egress_connections",	   "max_timeout_s",	   NULL,
};

bool storage__limit_name_valid(const char *name)
{
	for (size_t i = 0; name && storage_limit_names[i]; i++)
		if (!strcmp(name, storage_limit_names[i]))
			return true;
	return false;
}

static const char *const storage_state_names[STORAGE_SANDBOX_STATE_COUNT] = {
    "starting",	 "running", "paused",  "killing",  "killed",
    "timed_out", "failed",  "pausing", "resuming",
};

const char *storage__sandbox_state_name(enum storage_sandbox_state state)
{
	if ((unsigned)state >= STORAGE_SANDBOX_STATE_COUNT)
		return "unknown";
	return storage_state_names[state];
}

bool storage__sandbox_state_parse(const char *name, enum storage_sandbox_state *state)
{
	for (int i = 0; name && i < STORAGE_SANDBOX_STATE_COUNT; i++) {
		if (!strcmp(name, storage_state_names[i])) {
			*state = (enum storage_sandbox_state)i;
			return true;
		}
	}
	return false;
}

/* Page token: base64url (no padding) of "<created_us>.<sandbox id>", the
 * position of the last row of a page in (created_at DESC, id DESC) order. */
void storage__page_token_encode(int64_t created_us, const char *sandbox_id, char *out)
{
	char plain[64];
	int plain_len, encoded_len;

	plain_len = snprintf(plain, sizeof(plain), "%lld.%s", (long long)created_us,
			     sandbox_id ? sandbox_id : "");
	if (plain_len < 0 || (size_t)plain_len >= sizeof(plain)) {
		out[0] = '\0';
		return;
	}
	/* 4 * ceil(63 / 3) = 84 < STORAGE_PAGE_TOKEN_MAX */
	encoded_len =
	    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)plain, plain_len);
	while (encoded_len > 0 && out[encoded_len - 1] == '=')
		encoded_len--;
	out[encoded_len] = '\0';
	for (int i = 0; i < encoded_len; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
}

bool storage__page_token_decode(const char *token, int64_t *created_us,
				char sandbox_id[STORAGE_SANDBOX_ID_LEN + 1])
{
	char padded[STORAGE_PAGE_TOKEN_MAX + 4];
	unsigned char plain[STORAGE_PAGE_TOKEN_MAX];
	size_t len;
	int plain_len, pad;
	char *dot, *end;
	long long value;

	if (!token)
		return false;
	len = strlen(token);
	if (len == 0 || len > STORAGE_PAGE_TOKEN_MAX - 1 || len % 4 == 1)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = token[i];

		if (c >= 'A' && c <= 'Z')
			padded[i] = c;
		else if (c >= 'a' && c <= 'z')
			padded[i] = c;
		else if (c >= '0' && c <= '9')
			padded[i] = c;
		else if (c == '-')
			padded[i] = '+';
		else if (c == '_')
			padded[i] = '/';
		else
			return false;
	}
	pad = (int)((4 - len % 4) % 4);
	for (int i = 0; i < pad; i++)
		padded[len + (size_t)i] = '=';
	padded[len + (size_t)pad] = '\0';
	plain_len = EVP_DecodeBlock(plain, (const unsigned char *)padded, (int)(len + (size_t)pad));
	if (plain_len < 0)
		return false;
	plain_len -= pad; /* EVP_DecodeBlock counts padding as zero bytes */
	if (plain_len <= 0 || (size_t)plain_len >= sizeof(plain))
		return false;
	plain[plain_len] = '\0';
	if (memchr(plain, '\0', (size_t)plain_len))
		return false;
	dot = strchr((char *)plain, '.');
	if (!dot || dot == (char *)plain)
		return false;
	*dot = '\0';
	for (char *p = (char *)plain; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	value = strtoll((char *)plain, &end, 10);
	if (errno || *end)
		return false;
	if (!ids__is_sandbox_id(dot + 1))
		return false;
	*created_us = value;
	memcpy(sandbox_id, dot + 1, STORAGE_SANDBOX_ID_LEN + 1);
	return true;
}
