/* policy: network spec validation, parsing and the nftables compiler.
 * Semantics: ARCHITECTURE.md "Sandbox network", docs/e2b-compatibility.md "REST API"
 * (validation messages); rule layout in docs/network.md. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "net_internal.h"
#include "warren/cidr.h"

struct net_policy {
	struct cidr *allow;
	size_t allow_count;
	struct cidr *deny;
	size_t deny_count;
	struct cidr *allow_internal; /* allow entries inside an internal range */
	size_t allow_internal_count;
	char **domains; /* lower case, no trailing dot, "*." kept */
	size_t domain_count;
	uint32_t connection_limit;
};

#define ALL_TRAFFIC_MESSAGE                                                                        \
	"When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out"

static void set_message(char *message, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_message(char *message, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!message || !size)
		return;
	va_start(ap, fmt);
	vsnprintf(message, size, fmt, ap);
	va_end(ap);
}

/* A hostile entry is quoted in messages only when short and printable. */
static const char *printable(const char *s, char *buf, size_t size)
{
	size_t n = strlen(s);

	if (n > 64)
		return "(entry too long to show)";
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '\'' || s[i] == '"' || s[i] == '\\')
			return "(entry with unprintable characters)";
	snprintf(buf, size, "'%s'", s);
	return buf;
}

/* Looks like an address or CIDR (and must then parse as one). */
static bool looks_like_address(const char *s)
{
	bool only_digits_and_dots = true;

	if (strchr(s, '/') || strchr(s, ':'))
		return true;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			only_digits_and_dots = false;
	return only_digits_and_dots;
}

/* Domain syntax: an optional leading "*.", then labels of 1..63 bytes of
 * [A-Za-z0-9_-] or any byte >= 0x80 (IDNA compared as bytes), an optional
 * trailing dot, 253 bytes at most. Returns NULL when valid, else why. */
static const char *domain_error(const char *s)
{
	const char *p = s;
	size_t label = 0, total = strlen(s);

	if (total > 0 && s[total - 1] == '.')
		total--;
	if (total == 0)
		return "is empty";
	if (p[0] == '*') {
		if (p[1] != '.' || total < 3)
			return "has an invalid wildcard: only a leading '*.' followed by a domain "
			       "is supported";
		p += 2;
	}
	if (total > NET_DOMAIN_MAX)
		return "is longer than 253 characters";
	for (; p < s + total; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '.') {
			if (label == 0)
				return "has an empty label";
			label = 0;
			continue;
		}
		if (c == '*')
			return "has an invalid wildcard: only a leading '*.' followed by a domain "
			       "is supported";
		if (!(isalnum(c) || c == '-' || c == '_' || c >= 0x80))
			return "has a character not allowed in a domain";
		if (++label > 63)
			return "has a label longer than 63 characters";
	}
	if (label == 0)
		return "has an empty label";
	return NULL;
}

static bool cidr_is_all(const struct cidr *c)
{
	return c->prefix == 0;
}

struct parse_state {
	struct net_policy *policy; /* NULL: validate only */
	bool denies_all;
	bool has_domains;
	size_t allow_capacity, deny_capacity, domain_capacity;
};

static int push_cidr(struct cidr **list, size_t *count, size_t *capacity, const struct cidr *c)
{
	if (*count == *capacity) {
		size_t next = *capacity ? *capacity * 2 : 16;
		struct cidr *grown = realloc(*list, next * sizeof(**list));

		if (!grown)
			return -1;
		*list = grown;
		*capacity = next;
	}
	(*list)[(*count)++] = *c;
	return 0;
}

static int push_domain(struct parse_state *st, const char *s)
{
	struct net_policy *p = st->policy;
	size_t len = strlen(s);
	char *copy;

	if (p->domain_count == st->domain_capacity) {
		size_t next = st->domain_capacity ? st->domain_capacity * 2 : 16;
		char **grown = realloc(p->domains, next * sizeof(*grown));

		if (!grown)
			return -1;
		p->domains = grown;
		st->domain_capacity = next;
	}
	if (len > 0 && s[len - 1] == '.')
		len--;
	copy = strndup(s, len);
	if (!copy)
		return -1;
	for (char *c = copy; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	p->domains[p->domain_count++] = copy;
	return 0;
}

static int parse_list(struct parse_state *st, const json_t *spec, const char *key, bool is_allow,
		      char *message, size_t size)
{
	const json_t *list = json_object_get(spec, key);
	char quoted[80];
	size_t index;
	json_t *entry;

	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list)) {
		set_message(message, size, "%s must be an array of strings", key);
		return -1;
	}
	if (json_array_size(list) > NET_POLICY_MAX_ENTRIES) {
		set_message(message, size, "%s has %zu entries; at most %d are allowed", key,
			    json_array_size(list), NET_POLICY_MAX_ENTRIES);
		return -1;
	}
	json_array_foreach(list, index, entry)
	{
		const char *s = json_string_value(entry);
		struct cidr c;
		const char *why;

		if (!s) {
			set_message(message, size, "%s[%zu] must be a string", key, index);
			return -1;
		}
		if (strlen(s) != json_string_length(entry)) {
			set_message(message, size, "%s[%zu] contains a NUL character", key, index);
			return -1;
		}
		if (strcmp(s, "ALL_TRAFFIC") == 0)
			s = "0.0.0.0/0";
		if (looks_like_address(s)) {
			if (cidr__parse(s, &c) != 0) {
				set_message(message, size,
					    "%s[%zu] %s is not a valid IP address or CIDR block",
					    key, index, printable(s, quoted, sizeof(quoted)));
				return -1;
			}
			if (!is_allow && cidr_is_all(&c) && c.family == AF_INET)
				st->denies_all = true;
			if (st->policy) {
				struct net_policy *p = st->policy;
				int rc = is_allow ? push_cidr(&p->allow, &p->allow_count,
							      &st->allow_capacity, &c)
						  : push_cidr(&p->deny, &p->deny_count,
							      &st->deny_capacity, &c);

				if (rc) {
					set_message(message, size, "out of memory");
					return -1;
				}
			}
			continue;
		}
		why = domain_error(s);
		if (why) {
			set_message(
			    message, size,
			    "%s[%zu] %s is neither an IP address, a CIDR block nor a domain: it %s",
			    key, index, printable(s, quoted, sizeof(quoted)), why);
			return -1;
		}
		if (!is_allow) {
			set_message(message, size,
				    "%s[%zu] %s is a domain: domains are only supported in "
				    "allowOut, denyOut takes IP addresses and CIDR blocks",
				    key, index, printable(s, quoted, sizeof(quoted)));
			return -1;
		}
		st->has_domains = true;
		if (st->policy && push_domain(st, s)) {
			set_message(message, size, "out of memory");
			return -1;
		}
	}
	return 0;
}

static int parse_spec(struct parse_state *st, const json_t *spec, char *message, size_t size)
{
	const json_t *internet;

	if (message && size)
		message[0] = 0;
	if (!spec || json_is_null(spec))
		return 0;
	if (!json_is_object(spec)) {
		set_message(message, size, "network must be an object");
		return -1;
	}
	internet = json_object_get(spec, "allow_internet_access");
	if (internet && !json_is_boolean(internet) && !json_is_null(internet)) {
		set_message(message, size, "allow_internet_access must be a boolean");
		return -1;
	}
	if (parse_list(st, spec, "allowOut", true, message, size) ||
	    parse_list(st, spec, "denyOut", false, message, size))
		return -1;
	if (internet && json_is_false(internet)) {
		/* allow_internet_access=false is denyOut [ALL_TRAFFIC]. */
		st->denies_all = true;
		if (st->policy) {
			struct cidr all = {.family = AF_INET};

			if (push_cidr(&st->policy->deny, &st->policy->deny_count,
				      &st->deny_capacity, &all)) {
				set_message(message, size, "out of memory");
				return -1;
			}
		}
	}
	if (st->has_domains && !st->denies_all) {
		set_message(message, size, "%s", ALL_TRAFFIC_MESSAGE);
		return -1;
	}
	if (st->denies_all && st->policy) {
		/* ALL_TRAFFIC also closes IPv6 (slots have no IPv6 route anyway). */
		struct cidr all6 = {.family = AF_INET6};

		if (push_cidr(&st->policy->deny, &st->policy->deny_count, &st->deny_capacity,
			      &all6)) {
			set_message(message, size, "out of memory");
			return -1;
		}
	}
	return 0;
}

int net_policy__validate(const json_t *spec, char *message, size_t message_size)
{
	struct parse_state st = {0};

	return parse_spec(&st, spec, message, message_size);
}

struct net_policy *net_policy__default(uint32_t connection_limit)
{
	struct net_policy *p = calloc(1, sizeof(*p));

	if (p)
		p->connection_limit =
		    connection_limit ? connection_limit : NET_POLICY_DEFAULT_CONNECTION_LIMIT;
	return p;
}

bool net_policy__is_default(const struct net_policy *policy)
{
	return !policy->allow_count && !policy->deny_count && !policy->allow_internal_count &&
	       !policy->domain_count;
}

static ssize_t internal_allows(const struct net_policy *policy, struct cidr **out);

struct net_policy *net_policy__parse(const json_t *spec, uint32_t connection_limit, char *message,
				     size_t message_size)
{
	struct parse_state st = {0};
	ssize_t internal;

	st.policy = net_policy__default(connection_limit);
	if (!st.policy) {
		set_message(message, message_size, "out of memory");
		return NULL;
	}
	if (parse_spec(&st, spec, message, message_size)) {
		net_policy__free(st.policy);
		return NULL;
	}
	/* Before merging: 0.0.0.0/0 covers 10.1.0.0/16, but only the latter
	 * opens an internal range. */
	internal = internal_allows(st.policy, &st.policy->allow_internal);
	if (internal < 0) {
		set_message(message, message_size, "out of memory");
		net_policy__free(st.policy);
		return NULL;
	}
	st.policy->allow_internal_count = cidr__dedupe(st.policy->allow_internal, (size_t)internal);
	st.policy->allow_count = cidr__dedupe(st.policy->allow, st.policy->allow_count);
	st.policy->deny_count = cidr__dedupe(st.policy->deny, st.policy->deny_count);
	return st.policy;
}

void net_policy__free(struct net_policy *policy)
{
	if (!policy)
		return;
	for (size_t i = 0; i < policy->domain_count; i++)
		free(policy->domains[i]);
	free(policy->domains);
	free(policy->allow);
	free(policy->deny);
	free(policy->allow_internal);
	free(policy);
}

uint32_t net_policy__connection_limit(const struct net_policy *policy)
{
	return policy ? policy->connection_limit : NET_POLICY_DEFAULT_CONNECTION_LIMIT;
}

bool net_policy__has_domains(const struct net_policy *policy)
{
	return policy && policy->domain_count > 0;
}

static bool bytes_equal_nocase(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

bool net_policy__domain_allowed(const struct net_policy *policy, const char *host, size_t len)
{
	if (!policy || !host)
		return false;
	if (len > 0 && host[len - 1] == '.')
		len--;
	if (len == 0 || len > NET_DOMAIN_MAX || memchr(host, 0, len))
		return false;
	for (size_t i = 0; i < policy->domain_count; i++) {
		const char *rule = policy->domains[i];
		size_t rule_len = strlen(rule);

		if (rule[0] == '*') {
			/* "*.suffix": at least one byte before ".suffix". */
			const char *suffix = rule + 1; /* ".suffix" */
			size_t suffix_len = rule_len - 1;

			if (len > suffix_len &&
			    bytes_equal_nocase(host + len - suffix_len, suffix, suffix_len))
				return true;
		} else if (len == rule_len && bytes_equal_nocase(host, rule, len)) {
			return true;
		}
	}
	return false;
}

bool net_policy__is_internal_v4(struct in_addr address)
{
	uint32_t a = ntohl(address.s_addr);

	return (a >> 24) == 0 ||		   /* 0/8 */
	       (a >> 24) == 10 ||		   /* 10/8 */
	       (a >> 24) == 127 ||		   /* 127/8 */
	       (a & 0xfff00000u) == 0xac100000u || /* 172.16/12 */
	       (a & 0xffff0000u) == 0xc0a80000u || /* 192.168/16 */
	       (a & 0xffff0000u) == 0xa9fe0000u || /* 169.254/16 */
	       (a & 0xffc00000u) == 0x64400000u || /* 100.64/10 */
	       (a >> 29) == 7;			   /* 224/3: multicast, reserved, broadcast */
}

/* ---- compiler ---------------------------------------------------------- */

struct text {
	char *data;
	size_t len, capacity;
	bool failed;
};

static void emit(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		size_t room = t->capacity - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->data ? t->data + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t next = (t->capacity ? t->capacity * 2 : 4096) + (size_t)n;
		char *grown = realloc(t->data, next);

		if (!grown) {
			t->failed = true;
			return;
		}
		t->data = grown;
		t->capacity = next;
	}
}

static void emit_set(struct text *t, const char *name, const struct cidr *list, size_t count,
		     int family)
{
	char address[INET6_ADDRSTRLEN];
	bool first = true;

	emit(t, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n", name,
	     family == AF_INET ? "ipv4_addr" : "ipv6_addr");
	for (size_t i = 0; i < count; i++) {
		if (list[i].family != family)
			continue;
		inet_ntop(family, list[i].address, address, sizeof(address));
		emit(t, "%s%s/%d", first ? "\t\telements = { " : ", ", address, list[i].prefix);
		first = false;
	}
	if (!first)
		emit(t, " }\n");
	emit(t, "\t}\n");
}

/* Internal ranges: denied unless an allowOut entry lies inside one of
 * them (the never-allow set is checked before and always wins). */
#define INTERNAL_V4                                                                                \
	"0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, "       \
	"192.168.0.0/16, 224.0.0.0/3"
#define INTERNAL_V6 "::/128, ::1/128, ::ffff:0:0/96, fc00::/7, fe80::/10, ff00::/8"

/* The allowOut entries that lie entirely inside an internal range, in
 * *out (caller frees). Their count, or -1 on allocation failure. */
static ssize_t internal_allows(const struct net_policy *policy, struct cidr **out)
{
	struct cidr internal[16];
	int internal_count = cidr__parse_list(INTERNAL_V4 "," INTERNAL_V6, internal, 16, NULL);
	size_t count = 0;

	*out = calloc(policy->allow_count + 1, sizeof(**out));
	if (!*out || internal_count < 0)
		return -1;
	for (size_t i = 0; i < policy->allow_count; i++) {
		for (int j = 0; j < internal_count; j++) {
			if (cidr__covers(&internal[j], &policy->allow[i])) {
				(*out)[count++] = policy->allow[i];
				break;
			}
		}
	}
	return (ssize_t)count;
}

size_t net_policy__endpoint_host(const char *endpoint, char *host, size_t size)
{
	const char *p = endpoint, *end;
	size_t len;

	if (!endpoint || !size)
		return 0;
	host[0] = 0;
	if (strstr(p, "://")) {
		const char *authority = strstr(p, "://") + 3;
		const char *authority_end = authority + strcspn(authority, "/?#");
		const char *at = NULL;

		for (const char *q = authority; q < authority_end; q++)
			if (*q == '@')
				at = q;
		p = at ? at + 1 : authority;
		end = authority_end;
	} else if (strstr(p, "host=")) {
		const char *key = strstr(p, "host=");

		if (key != p && key[-1] != ' ')
			return 0;
		p = key + 5;
		end = p + strcspn(p, " ");
	} else {
		end = p + strcspn(p, ",/");
	}
	if (*p == '[') { /* [v6]:port */
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (!close)
			return 0;
		p++;
		end = close;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		if (colon)
			end = colon;
	}
	len = (size_t)(end - p);
	if (len == 0 || len >= size)
		return 0;
	memcpy(host, p, len);
	host[len] = 0;
	return len;
}

bool net_policy__never_allowed(const struct cidr *never, size_t never_count, int family,
			       const void *address)
{
	for (size_t i = 0; i < never_count; i++)
		if (cidr__contains(&never[i], family, address))
			return true;
	return false;
}

/* One transaction: create-if-missing, delete, recreate. nft applies the
 * whole buffer atomically, so no packet ever sees a half policy
 * (docs/host-requirements.md, "Networking": every rule line ends with a newline before "}"). */
char *net_policy__compile(const struct net_policy *policy, const struct net_compile_params *params)
{
	struct text t = {0};
	char proxy[INET_ADDRSTRLEN], nameserver[INET_ADDRSTRLEN];
	const char *veth = params->uplink_link ? params->uplink_link : "veth0";
	bool domains = net_policy__has_domains(policy);

	inet_ntop(AF_INET, &params->proxy_address, proxy, sizeof(proxy));
	inet_ntop(AF_INET, &params->nameserver, nameserver, sizeof(nameserver));

	emit(&t, "table inet warren_policy\ndelete table inet warren_policy\n");
	emit(&t, "table inet warren_policy {\n");
	emit(&t, "\tcounter allowed {\n\t}\n\tcounter denied {\n\t}\n");
	emit_set(&t, "never_v4", params->never_allow, params->never_allow_count, AF_INET);
	emit_set(&t, "never_v6", params->never_allow, params->never_allow_count, AF_INET6);
	emit(&t, "\tset internal_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
		 "\t\telements = { " INTERNAL_V4 " }\n\t}\n");
	emit(&t, "\tset internal_v6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n"
		 "\t\telements = { " INTERNAL_V6 " }\n\t}\n");
	emit_set(&t, "allow_internal_v4", policy->allow_internal, policy->allow_internal_count,
		 AF_INET);
	emit_set(&t, "allow_internal_v6", policy->allow_internal, policy->allow_internal_count,
		 AF_INET6);
	emit_set(&t, "allow_v4", policy->allow, policy->allow_count, AF_INET);
	emit_set(&t, "allow_v6", policy->allow, policy->allow_count, AF_INET6);
	emit_set(&t, "deny_v4", policy->deny, policy->deny_count, AF_INET);
	emit_set(&t, "deny_v6", policy->deny, policy->deny_count, AF_INET6);

	if (domains) {
		/* TCP 80/443 to anything not explicitly allowed goes to the
		 * egress proxy in the host namespace: prerouting for the vm
		 * runtime (from tap0), output for the jail runtime. */
		emit(&t,
		     "\tchain proxy_redirect {\n"
		     "\t\tip daddr @allow_v4 return\n"
		     "\t\ttcp dport 80 dnat ip to %s:%u\n"
		     "\t\ttcp dport 443 dnat ip to %s:%u\n\t}\n",
		     proxy, params->proxy_http_port, proxy, params->proxy_tls_port);
		emit(&t, "\tchain nat_prerouting {\n\t\ttype nat hook prerouting priority -100; "
			 "policy accept;\n"
			 "\t\tiifname \"tap0\" meta nfproto ipv4 jump proxy_redirect\n\t}\n");
		emit(
		    &t,
		    "\tchain nat_output {\n\t\ttype nat hook output priority -100; policy accept;\n"
		    "\t\toifname \"%s\" meta nfproto ipv4 jump proxy_redirect\n\t}\n",
		    veth);
	}

	/* The verdict chain every new egress connection walks, from either
	 * hook. Order is the semantics: established, (limit: base table), proxy, allowOut,
	 * nameserver, internal ranges, denyOut, accept. */
	emit(&t, "\tchain deny {\n\t\tcounter name \"denied\"\n"
		 "\t\tmeta l4proto tcp reject with tcp reset\n"
		 "\t\treject with icmpx type admin-prohibited\n\t}\n");
	/* The connection limit is not here: it lives in the slot's base
	 * table (slot.c), so replacing the policy keeps its count. */
	emit(&t, "\tchain egress {\n"
		 "\t\tct state established,related accept\n"
		 "\t\tct state invalid drop\n");
	if (domains) {
		emit(&t, "\t\tct status dnat ip daddr %s tcp dport { %u, %u } accept\n", proxy,
		     params->proxy_http_port, params->proxy_tls_port);
		emit(&t,
		     "\t\tip daddr %s meta l4proto { tcp, udp } th dport 53 counter name "
		     "\"allowed\" accept\n",
		     nameserver);
	}
	/* The operator's never-allow set comes before any tenant entry; an
	 * internal range opens only for allowOut entries inside it, so a
	 * broad allow (0.0.0.0/0) means "the public internet". */
	emit(&t, "\t\tip daddr @never_v4 goto deny\n"
		 "\t\tip6 daddr @never_v6 goto deny\n"
		 "\t\tip daddr @allow_internal_v4 counter name \"allowed\" accept\n"
		 "\t\tip6 daddr @allow_internal_v6 counter name \"allowed\" accept\n"
		 "\t\tip daddr @internal_v4 goto deny\n"
		 "\t\tip6 daddr @internal_v6 goto deny\n"
		 "\t\tip daddr @allow_v4 counter name \"allowed\" accept\n"
		 "\t\tip6 daddr @allow_v6 counter name \"allowed\" accept\n"
		 "\t\tip daddr @deny_v4 goto deny\n"
		 "\t\tip6 daddr @deny_v6 goto deny\n"
		 "\t\tcounter name \"allowed\" accept\n\t}\n");
	/* vm runtime: the guest's traffic is forwarded from tap0. Inbound
	 * (veth -> tap0) is not egress and is left alone. */
	emit(&t, "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n"
		 "\t\tiifname \"tap0\" jump egress\n\t}\n");
	/* jail runtime: the sandbox is a local process. Loopback and the
	 * host's own traffic to tap0 (ARP, the vm's console) stay open. */
	emit(&t, "\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n"
		 "\t\toifname \"lo\" accept\n"
		 "\t\toifname \"tap0\" accept\n"
		 "\t\tjump egress\n\t}\n");
	emit(&t, "}\n");
	if (t.failed) {
		free(t.data);
		return NULL;
	}
	return t.data;
}

struct net_policy *net_policy__clone(const struct net_policy *policy)
{
	struct net_policy *copy = net_policy__default(policy->connection_limit);

	if (!copy)
		return NULL;
	copy->allow =
	    policy->allow_count ? malloc(policy->allow_count * sizeof(*copy->allow)) : NULL;
	copy->deny = policy->deny_count ? malloc(policy->deny_count * sizeof(*copy->deny)) : NULL;
	copy->domains =
	    policy->domain_count ? calloc(policy->domain_count, sizeof(*copy->domains)) : NULL;
	if ((policy->allow_count && !copy->allow) || (policy->deny_count && !copy->deny) ||
	    (policy->domain_count && !copy->domains))
		goto err;
	if (policy->allow_count)
		memcpy(copy->allow, policy->allow, policy->allow_count * sizeof(*copy->allow));
	if (policy->deny_count)
		memcpy(copy->deny, policy->deny, policy->deny_count * sizeof(*copy->deny));
	copy->allow_count = policy->allow_count;
	copy->deny_count = policy->deny_count;
	if (policy->allow_internal_count) {
		copy->allow_internal =
		    malloc(policy->allow_internal_count * sizeof(*copy->allow_internal));
		if (!copy->allow_internal)
			goto err;
		memcpy(copy->allow_internal, policy->allow_internal,
		       policy->allow_internal_count * sizeof(*copy->allow_internal));
		copy->allow_internal_count = policy->allow_internal_count;
	}
	for (size_t i = 0; i < policy->domain_count; i++) {
		copy->domains[i] = strdup(policy->domains[i]);
		if (!copy->domains[i])
			goto err;
		copy->domain_count = i + 1;
	}
	return copy;
err:
	net_policy__free(copy);
	return NULL;
}
