/* parse: TLS ClientHello SNI (RFC 8446 4.1.2, RFC 6066 3), HTTP/1.x Host
 * (RFC 9112 3.2) and DNS A answers (RFC 1035 4.1). All input is hostile:
 * every length is checked against what remains before it is used. */
#include <string.h>
#include <strings.h>

#include "warren/net.h"

/* A bounded reader over a byte range. */
struct reader {
	const uint8_t *p;
	size_t left;
};

static bool take(struct reader *r, size_t n, const uint8_t **out)
{
	if (r->left < n)
		return false;
	if (out)
		*out = r->p;
	r->p += n;
	r->left -= n;
	return true;
}

static bool take_u8(struct reader *r, size_t *v)
{
	const uint8_t *b;

	if (!take(r, 1, &b))
		return false;
	*v = b[0];
	return true;
}

static bool take_u16(struct reader *r, size_t *v)
{
	const uint8_t *b;

	if (!take(r, 2, &b))
		return false;
	*v = (size_t)b[0] << 8 | b[1];
	return true;
}

/* A sub-reader of n bytes taken from r. */
static bool take_reader(struct reader *r, size_t n, struct reader *sub)
{
	const uint8_t *b;

	if (!take(r, n, &b))
		return false;
	sub->p = b;
	sub->left = n;
	return true;
}

#define TLS_RECORD_HANDSHAKE	   22
#define TLS_HANDSHAKE_CLIENT_HELLO 1
#define TLS_EXTENSION_SERVER_NAME  0
#define TLS_MAX_RECORD		   16384 /* RFC 8446 5.1: 2^14 */

/* The ClientHello body (after the 4-byte handshake header). */
static enum net_parse_result client_hello_sni(struct reader hello, char *name, size_t *name_len)
{
	struct reader extensions;
	size_t v, ext_len;
	bool found = false;

	/* legacy_version, random */
	if (!take(&hello, 2 + 32, NULL))
		return NET_PARSE_MALFORMED;
	/* legacy_session_id <0..32> */
	if (!take_u8(&hello, &v) || v > 32 || !take(&hello, v, NULL))
		return NET_PARSE_MALFORMED;
	/* cipher_suites <2..2^16-2>, even */
	if (!take_u16(&hello, &v) || v < 2 || (v & 1) || !take(&hello, v, NULL))
		return NET_PARSE_MALFORMED;
	/* legacy_compression_methods <1..2^8-1> */
	if (!take_u8(&hello, &v) || v < 1 || !take(&hello, v, NULL))
		return NET_PARSE_MALFORMED;
	if (hello.left == 0)
		return NET_PARSE_NOT_FOUND; /* no extensions at all */
	if (!take_u16(&hello, &ext_len) || !take_reader(&hello, ext_len, &extensions) ||
	    hello.left != 0)
		return NET_PARSE_MALFORMED;
	while (extensions.left > 0) {
		size_t ext_type, body_len, list_len;
		struct reader body, list;

		if (!take_u16(&extensions, &ext_type) || !take_u16(&extensions, &body_len) ||
		    !take_reader(&extensions, body_len, &body))
			return NET_PARSE_MALFORMED;
		if (ext_type != TLS_EXTENSION_SERVER_NAME)
			continue;
		if (found)
			return NET_PARSE_MALFORMED; /* RFC 8446 4.2: no duplicates */
		if (!take_u16(&body, &list_len) || !take_reader(&body, list_len, &list) ||
		    body.left != 0 || list_len == 0)
			return NET_PARSE_MALFORMED;
		while (list.left > 0) {
			size_t name_type, host_len;
			const uint8_t *host;

			if (!take_u8(&list, &name_type) || !take_u16(&list, &host_len) ||
			    !take(&list, host_len, &host))
				return NET_PARSE_MALFORMED;
			if (name_type != 0 || found)
				continue; /* RFC 6066: one host_name */
			if (host_len == 0 || host_len > NET_SNI_MAX || memchr(host, 0, host_len))
				return NET_PARSE_MALFORMED;
			memcpy(name, host, host_len);
			name[host_len] = 0;
			*name_len = host_len;
			found = true;
		}
		if (!found)
			return NET_PARSE_MALFORMED;
	}
	return found ? NET_PARSE_OK : NET_PARSE_NOT_FOUND;
}

/* The ClientHello may be fragmented over several handshake records
 * (RFC 8446 5.1); they are reassembled, up to TLS_MAX_RECORD bytes of
 * handshake message. */
enum net_parse_result net_parse__tls_sni(const uint8_t *data, size_t len,
					 char name[NET_SNI_MAX + 1], size_t *name_len)
{
	uint8_t handshake[TLS_MAX_RECORD + 4];
	size_t have = 0, need = 0, pos = 0;

	if (!data || !name || !name_len)
		return NET_PARSE_MALFORMED;
	for (;;) {
		struct reader r = {data + pos, len - pos};
		size_t type, major, minor, record_len;
		const uint8_t *payload;

		/* Refuse early what can never become a handshake record. */
		if (r.left >= 1 && data[pos] != TLS_RECORD_HANDSHAKE)
			return NET_PARSE_MALFORMED;
		if (r.left >= 2 && data[pos + 1] != 3)
			return NET_PARSE_MALFORMED;
		if (!take_u8(&r, &type) || !take_u8(&r, &major) || !take_u8(&r, &minor) ||
		    !take_u16(&r, &record_len))
			return NET_PARSE_NEED_MORE;
		if (record_len == 0 || record_len > TLS_MAX_RECORD)
			return NET_PARSE_MALFORMED;
		if (!take(&r, record_len, &payload))
			return NET_PARSE_NEED_MORE;
		if (have + record_len > sizeof(handshake))
			return NET_PARSE_MALFORMED; /* larger than we accept */
		memcpy(handshake + have, payload, record_len);
		have += record_len;
		pos += 5 + record_len;
		if (have >= 4 && need == 0) {
			if (handshake[0] != TLS_HANDSHAKE_CLIENT_HELLO)
				return NET_PARSE_MALFORMED;
			need = 4 + ((size_t)handshake[1] << 16 | (size_t)handshake[2] << 8 |
				    handshake[3]);
			if (need > sizeof(handshake))
				return NET_PARSE_MALFORMED;
		}
		if (need && have >= need) {
			struct reader hello = {handshake + 4, need - 4};

			/* Only the ClientHello may be in the first flight's
			 * handshake records. */
			if (have > need)
				return NET_PARSE_MALFORMED;
			return client_hello_sni(hello, name, name_len);
		}
	}
}

static bool is_header_space(uint8_t c)
{
	return c == ' ' || c == '\t';
}

enum net_parse_result net_parse__http_host(const uint8_t *data, size_t len, const char **name,
					   size_t *name_len)
{
	const uint8_t *end = NULL, *line, *found = NULL;
	size_t found_len = 0;

	if (!data)
		return NET_PARSE_MALFORMED;
	for (size_t i = 0; i + 3 < len; i++) {
		if (data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' &&
		    data[i + 3] == '\n') {
			end = data + i + 2; /* keep the last line's CRLF */
			break;
		}
	}
	if (!end)
		return NET_PARSE_NEED_MORE;
	/* The request line: "METHOD SP target SP HTTP/1.x". */
	line = memchr(data, '\n', (size_t)(end - data));
	if (!line || line == data || line[-1] != '\r' ||
	    !memmem(data, (size_t)(line - data), " HTTP/1.", 8))
		return NET_PARSE_MALFORMED;
	for (const uint8_t *p = line + 1; p < end;) {
		const uint8_t *eol = memchr(p, '\n', (size_t)(end - p));
		const uint8_t *colon, *value, *value_end;

		if (!eol || eol == p || eol[-1] != '\r')
			return NET_PARSE_MALFORMED;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p || is_header_space(colon[-1]) || is_header_space(p[0]))
			return NET_PARSE_MALFORMED; /* obs-fold and "Host :" refused */
		if (colon - p == 4 && strncasecmp((const char *)p, "host", 4) == 0) {
			if (found)
				return NET_PARSE_MALFORMED;
			value = colon + 1;
			value_end = eol - 1; /* the '\r' */
			while (value < value_end && is_header_space(*value))
				value++;
			while (value_end > value && is_header_space(value_end[-1]))
				value_end--;
			if (value == value_end)
				return NET_PARSE_MALFORMED;
			found = value;
			found_len = (size_t)(value_end - value);
		}
		p = eol + 1;
	}
	if (!found)
		return NET_PARSE_NOT_FOUND;
	if (found[0] == '[')
		return NET_PARSE_MALFORMED; /* IPv6 literals never match a domain */
	{
		const uint8_t *colon = memchr(found, ':', found_len);

		if (colon) {
			for (const uint8_t *d = colon + 1; d < found + found_len; d++)
				if (*d < '0' || *d > '9')
					return NET_PARSE_MALFORMED;
			found_len = (size_t)(colon - found);
		}
	}
	if (found_len == 0 || found_len > 255)
		return NET_PARSE_MALFORMED;
	for (size_t i = 0; i < found_len; i++)
		if (found[i] < 0x21 || found[i] == 0x7f || found[i] == '/' || found[i] == '@')
			return NET_PARSE_MALFORMED;
	*name = (const char *)found;
	*name_len = found_len;
	return NET_PARSE_OK;
}

/* A header's value with surrounding blanks trimmed. */
static void header_value(const uint8_t *colon, const uint8_t *eol, const uint8_t **value,
			 size_t *len)
{
	const uint8_t *v = colon + 1, *end = eol - 1; /* the '\r' */

	while (v < end && is_header_space(*v))
		v++;
	while (end > v && is_header_space(end[-1]))
		end--;
	*value = v;
	*len = (size_t)(end - v);
}

static bool header_is(const uint8_t *p, const uint8_t *colon, const char *name)
{
	size_t n = strlen(name);

	return (size_t)(colon - p) == n && strncasecmp((const char *)p, name, n) == 0;
}

/* The request target: origin form, "*", or absolute form whose host is
 * the Host header's (servers route by the absolute form's authority). */
static bool target_ok(const uint8_t *data, const uint8_t *line_end,
		      const struct net_http_request *out)
{
	const uint8_t *sp = memchr(data, ' ', (size_t)(line_end - data)), *t, *t_end, *a, *a_end;

	if (!sp)
		return false;
	t = sp + 1;
	t_end = memchr(t, ' ', (size_t)(line_end - t));
	if (!t_end || t_end == t)
		return false;
	if (t[0] == '/' || (t_end - t == 1 && t[0] == '*'))
		return true;
	if (t_end - t < 8 || strncasecmp((const char *)t, "http://", 7) != 0)
		return false;
	a = t + 7;
	for (a_end = a; a_end < t_end && *a_end != '/' && *a_end != '?' && *a_end != '#'; a_end++)
		if (*a_end == '@' || *a_end == '[')
			return false;
	{
		const uint8_t *colon = memchr(a, ':', (size_t)(a_end - a));

		if (colon)
			a_end = colon;
	}
	return (size_t)(a_end - a) == out->host_len &&
	       strncasecmp((const char *)a, out->host, out->host_len) == 0;
}

enum net_parse_result net_parse__http_request(const uint8_t *data, size_t len,
					      struct net_http_request *out)
{
	enum net_parse_result rc;
	const uint8_t *line, *end;
	bool have_length = false, have_coding = false;

	memset(out, 0, sizeof(*out));
	rc = net_parse__http_host(data, len, &out->host, &out->host_len);
	if (rc != NET_PARSE_OK)
		return rc;
	end = memmem(data, len, "\r\n\r\n", 4);
	out->head_len = (size_t)(end - data) + 4;
	line = memchr(data, '\n', out->head_len); /* the request line's end (validated) */
	if (!target_ok(data, line - 1, out))
		return NET_PARSE_MALFORMED;
	if (line - data >= 8 && strncasecmp((const char *)data, "CONNECT ", 8) == 0)
		out->last = true;
	for (const uint8_t *p = line + 1; p < end + 2;) {
		const uint8_t *eol = memchr(p, '\n', (size_t)(end + 2 - p));
		const uint8_t *colon = memchr(p, ':', (size_t)(eol - p)), *value;
		size_t value_len;

		/* Lines were validated by net_parse__http_host. */
		header_value(colon, eol, &value, &value_len);
		if (header_is(p, colon, "upgrade")) {
			out->last = true;
		} else if (header_is(p, colon, "transfer-encoding")) {
			if (have_coding || value_len != 7 ||
			    strncasecmp((const char *)value, "chunked", 7) != 0)
				return NET_PARSE_MALFORMED;
			have_coding = out->chunked = true;
		} else if (header_is(p, colon, "content-length")) {
			uint64_t n = 0;

			if (value_len == 0 || value_len > 18)
				return NET_PARSE_MALFORMED;
			for (size_t i = 0; i < value_len; i++) {
				if (value[i] < '0' || value[i] > '9')
					return NET_PARSE_MALFORMED;
				n = n * 10 + (uint64_t)(value[i] - '0');
			}
			if (have_length && n != out->content_length)
				return NET_PARSE_MALFORMED;
			have_length = true;
			out->content_length = n;
		}
		p = eol + 1;
	}
	if (have_length && have_coding)
		return NET_PARSE_MALFORMED;
	return NET_PARSE_OK;
}

enum net_parse_result net_parse__http_chunk_line(const uint8_t *data, size_t len, uint64_t *size,
						 size_t *line_len)
{
	const uint8_t *eol;
	uint64_t n = 0;
	size_t digits = 0;

	if (!data)
		return NET_PARSE_MALFORMED;
	eol = memchr(data, '\n', len < 1024 ? len : 1024);
	if (!eol)
		return len < 1024 ? NET_PARSE_NEED_MORE : NET_PARSE_MALFORMED;
	if (eol == data || eol[-1] != '\r')
		return NET_PARSE_MALFORMED;
	for (const uint8_t *p = data; p < eol - 1; p++) {
		int v;

		if (*p == ';')
			break; /* extensions are forwarded as they are */
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f')
			v = (*p | 0x20) - 'a' + 10;
		else
			return NET_PARSE_MALFORMED;
		if (++digits > 15)
			return NET_PARSE_MALFORMED;
		n = n * 16 + (uint64_t)v;
	}
	if (digits == 0)
		return NET_PARSE_MALFORMED;
	*size = n;
	*line_len = (size_t)(eol - data) + 1;
	return NET_PARSE_OK;
}

int net_parse__dns_query(uint8_t *out, size_t out_size, uint16_t id, const char *name)
{
	size_t n = 12, name_len = name ? strlen(name) : 0;
	const char *label = name;

	if (name_len > 0 && name[name_len - 1] == '.')
		name_len--;
	if (name_len == 0 || name_len > NET_DOMAIN_MAX || out_size < 12 + name_len + 2 + 4)
		return -1;
	memset(out, 0, 12);
	out[0] = (uint8_t)(id >> 8);
	out[1] = (uint8_t)id;
	out[2] = 0x01; /* RD */
	out[5] = 1;    /* QDCOUNT */
	while (label < name + name_len) {
		const char *dot = memchr(label, '.', (size_t)(name + name_len - label));
		size_t l = dot ? (size_t)(dot - label) : (size_t)(name + name_len - label);

		if (l == 0 || l > 63)
			return -1;
		out[n++] = (uint8_t)l;
		memcpy(out + n, label, l);
		n += l;
		label += l + (dot ? 1 : 0);
	}
	out[n++] = 0;
	out[n++] = 0;
	out[n++] = 1; /* QTYPE A */
	out[n++] = 0;
	out[n++] = 1; /* QCLASS IN */
	return (int)n;
}

/* Skips a possibly compressed name; a pointer ends it (RFC 1035 4.1.4). */
static bool skip_name(struct reader *r)
{
	for (int labels = 0; labels < 128; labels++) {
		size_t l;

		if (!take_u8(r, &l))
			return false;
		if (l == 0)
			return true;
		if ((l & 0xc0) == 0xc0)
			return take(r, 1, NULL);
		if (l & 0xc0)
			return false;
		if (!take(r, l, NULL))
			return false;
	}
	return false;
}

int net_parse__dns_answer(const uint8_t *data, size_t len, uint16_t id, struct in_addr *out,
			  int max, uint32_t *min_ttl)
{
	struct reader r = {data, len};
	size_t got_id, flags, qd, an, count = 0;
	uint32_t smallest = UINT32_MAX;

	if (!data || !take_u16(&r, &got_id) || !take_u16(&r, &flags) || !take_u16(&r, &qd) ||
	    !take_u16(&r, &an) || !take(&r, 4, NULL))
		return -1;
	if (got_id != id || !(flags & 0x8000) || (flags & 0x000f) != 0 || qd > 1)
		return -1;
	for (size_t i = 0; i < qd; i++)
		if (!skip_name(&r) || !take(&r, 4, NULL))
			return -1;
	for (size_t i = 0; i < an; i++) {
		size_t type, class, rdlength;
		const uint8_t *rdata, *ttl;

		if (!skip_name(&r) || !take_u16(&r, &type) || !take_u16(&r, &class) ||
		    !take(&r, 4, &ttl) || !take_u16(&r, &rdlength) || !take(&r, rdlength, &rdata))
			return -1;
		if (type == 1 && class == 1 && rdlength == 4 && (int)count < max) {
			uint32_t value = (uint32_t)ttl[0] << 24 | (uint32_t)ttl[1] << 16 |
					 (uint32_t)ttl[2] << 8 | ttl[3];

			memcpy(&out[count++], rdata, 4);
			if (value < smallest)
				smallest = value;
		}
	}
	if (min_ttl)
		*min_ttl = count ? smallest : 0;
	return (int)count;
}
