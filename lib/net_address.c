/* net_address: HOST:PORT parsing (see warren/net_address.h). */
#include <errno.h>
#include <string.h>

#include "warren/net_address.h"

int address__parse_host_port(const char *text, char *host, size_t host_len, uint16_t *port)
{
	const char *colon = text ? strrchr(text, ':') : NULL;
	const char *start = text, *end = colon;
	unsigned long value = 0;

	if (!colon || !host || !port || colon[1] == '\0')
		return -EINVAL;
	for (const char *p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		value = value * 10 + (unsigned long)(*p - '0');
		if (value > 65535)
			return -EINVAL;
	}
	if (*start == '[') { /* [v6]:port */
		if (end - start < 2 || end[-1] != ']')
			return -EINVAL;
		start++;
		end--;
	}
	if (end == start || (size_t)(end - start) >= host_len || memchr(start, '[', end - start) ||
	    memchr(start, ']', end - start))
		return -EINVAL;
	memcpy(host, start, (size_t)(end - start));
	host[end - start] = '\0';
	*port = (uint16_t)value;
	return 0;
}
