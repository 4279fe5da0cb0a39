/* cidr: address blocks; see warren/cidr.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#include "warren/cidr.h"

int cidr__parse(const char *s, struct cidr *out)
{
	char address[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t address_len = slash ? (size_t)(slash - s) : strlen(s);
	int max;

	if (address_len == 0 || address_len >= sizeof(address))
		return -1;
	memcpy(address, s, address_len);
	address[address_len] = 0;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, address, out->address) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, address, out->address) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->prefix = max;
	if (slash) {
		const char *p = slash + 1;
		int value = 0;

		if (!*p || strlen(p) > 3)
			return -1;
		for (; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			value = value * 10 + (*p - '0');
		}
		if (value > max)
			return -1;
		out->prefix = value;
	}
	/* Normalise: clear host bits so nft accepts it and duplicates merge. */
	for (int bit = out->prefix; bit < max; bit++)
		out->address[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	return 0;
}

bool cidr__covers(const struct cidr *a, const struct cidr *b)
{
	if (a->family != b->family || a->prefix > b->prefix)
		return false;
	for (int bit = 0; bit < a->prefix; bit++) {
		uint8_t mask = (uint8_t)(0x80u >> (bit % 8));

		if ((a->address[bit / 8] & mask) != (b->address[bit / 8] & mask))
			return false;
	}
	return true;
}

bool cidr__contains(const struct cidr *c, int family, const void *address)
{
	struct cidr host = {.family = family, .prefix = family == AF_INET ? 32 : 128};

	memcpy(host.address, address, family == AF_INET ? 4 : 16);
	return cidr__covers(c, &host);
}

int cidr__parse_list(const char *text, struct cidr *out, size_t max, const char **bad)
{
	size_t count = 0;
	const char *p = text ? text : "";

	for (;;) {
		char entry[INET6_ADDRSTRLEN + 8];
		size_t len;

		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (!*p)
			return (int)count;
		len = strcspn(p, ", \t\r\n");
		if (len >= sizeof(entry) || count == max)
			goto bad;
		memcpy(entry, p, len);
		entry[len] = 0;
		if (cidr__parse(entry, &out[count]) != 0)
			goto bad;
		count++;
		p += len;
	}
bad:
	if (bad)
		*bad = p;
	return -1;
}

size_t cidr__dedupe(struct cidr *list, size_t count)
{
	size_t kept = 0;

	/* Decide on the untouched list first (drop marks the entry's prefix
	 * as -1), then compact. */
	for (size_t i = 0; i < count; i++) {
		for (size_t j = 0; j < count; j++) {
			if (i == j || list[j].prefix < 0 || !cidr__covers(&list[j], &list[i]))
				continue;
			/* Equal entries: keep the first one only. */
			if (!(cidr__covers(&list[i], &list[j]) && i < j)) {
				list[i].prefix = -1;
				break;
			}
		}
	}
	for (size_t i = 0; i < count; i++)
		if (list[i].prefix >= 0)
			list[kept++] = list[i];
	return kept;
}
