#include "warren/ids.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int ids__random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

int ids__sandbox_id(char out[IDS_SANDBOX_ID_LEN + 1])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	uint8_t raw[IDS_SANDBOX_ID_LEN * 2];
	size_t filled = 1, i = 0;
	int rc;

	out[0] = 'i';
	/* Rejection sampling keeps the 36 symbols uniform: 252 = 7 * 36. */
	while (filled < IDS_SANDBOX_ID_LEN) {
		if (i == 0 || i == sizeof(raw)) {
			rc = ids__random_bytes(raw, sizeof(raw));
			if (rc)
				return rc;
			i = 0;
		}
		uint8_t b = raw[i++];
		if (b < 252)
			out[filled++] = alphabet[b % 36];
	}
	out[IDS_SANDBOX_ID_LEN] = '\0';
	return 0;
}

int ids__uuid(char out[IDS_UUID_LEN + 1])
{
	uint8_t b[16];
	int rc = ids__random_bytes(b, sizeof(b));

	if (rc)
		return rc;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, IDS_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
	return 0;
}

bool ids__is_sandbox_id(const char *s)
{
	if (!s || s[0] != 'i' || strlen(s) != IDS_SANDBOX_ID_LEN)
		return false;
	for (size_t i = 1; i < IDS_SANDBOX_ID_LEN; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

bool ids__is_uuid(const char *s)
{
	if (!s || strlen(s) != IDS_UUID_LEN)
		return false;
	for (size_t i = 0; i < IDS_UUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

int ids__api_key(char out[45])
{
	uint8_t b[20];
	int rc = ids__random_bytes(b, sizeof(b));

	if (rc)
		return rc;
	memcpy(out, "e2b_", 4);
	for (size_t i = 0; i < sizeof(b); i++)
		snprintf(out + 4 + 2 * i, 3, "%02x", b[i]);
	return 0;
}
