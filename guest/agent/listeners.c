/* listeners: /proc/net/tcp{,6} lines, see listeners.h. The kernel prints
 * each address as the 32-bit words of the network-order address, each
 * with %08X of its in-memory value: decoding a word and storing it back
 * in memory gives the address bytes again (the agent runs on the kernel
 * that printed them). */
#include "listeners.h"

#include <stdlib.h>
#include <string.h>

#define TCP_STATE_LISTEN 0x0A

/* Exactly digits hex digits at *text into *value; advances *text. */
static bool hex_word(const char **text, int digits, unsigned long *value)
{
	unsigned long result = 0;
	int i;

	for (i = 0; i < digits; i++) {
		char c = (*text)[i];
		int digit = c >= '0' && c <= '9'   ? c - '0'
			    : c >= 'A' && c <= 'F' ? c - 'A' + 10
			    : c >= 'a' && c <= 'f' ? c - 'a' + 10
						   : -1;
		if (digit < 0)
			return false;
		result = result << 4 | (unsigned long)digit;
	}
	*text += digits;
	*value = result;
	return true;
}

static const char *skip_spaces(const char *text)
{
	while (*text == ' ')
		text++;
	return text;
}

/* Skips count whitespace-separated fields. NULL when the line ends first. */
static const char *skip_fields(const char *text, int count)
{
	while (count-- > 0) {
		text = skip_spaces(text);
		if (!*text || *text == '\n')
			return NULL;
		while (*text && *text != ' ' && *text != '\n')
			text++;
	}
	return skip_spaces(text);
}

bool listeners__parse_line(const char *line, int family, struct tcp_listener *out)
{
	const char *text = skip_fields(line, 1); /* "sl:" */
	unsigned long word, state, port;
	uint32_t words[4];
	char *end;
	int i, count = family == AF_INET6 ? 4 : 1;

	memset(out, 0, sizeof(*out));
	if (!text || (family != AF_INET && family != AF_INET6))
		return false;
	for (i = 0; i < count; i++) {
		if (!hex_word(&text, 8, &word))
			return false;
		words[i] = (uint32_t)word;
	}
	if (*text++ != ':' || !hex_word(&text, 4, &port) || *text != ' ')
		return false;
	text = skip_fields(text, 1); /* rem_address */
	if (!text || !hex_word(&text, 2, &state) || state != TCP_STATE_LISTEN)
		return false;
	text = skip_fields(text, 5); /* tx:rx, tr:when, retrnsmt, uid, timeout */
	if (!text || *text < '0' || *text > '9')
		return false;
	out->inode = strtoul(text, &end, 10);
	if (*end != ' ' && *end != '\n' && *end != '\0')
		return false;
	out->family = family;
	out->port = (uint16_t)port;
	if (family == AF_INET)
		memcpy(&out->addr4, &words[0], 4);
	else
		memcpy(&out->addr6, words, 16);
	return true;
}

bool listeners__is_loopback(const struct tcp_listener *listener)
{
	const uint8_t *bytes;

	if (listener->family == AF_INET)
		return ((const uint8_t *)&listener->addr4)[0] == 127;
	bytes = listener->addr6.s6_addr;
	if (IN6_IS_ADDR_LOOPBACK(&listener->addr6))
		return true;
	return IN6_IS_ADDR_V4MAPPED(&listener->addr6) && bytes[12] == 127;
}
