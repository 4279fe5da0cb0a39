/* net: sandbox network slots, the egress policy compiler and the egress
 * proxy (ARCHITECTURE.md "Sandbox network"; docs/network.md has the
 * addressing scheme, the rule layout and the rule -> test table).
 *
 * Three layers, usable separately:
 *   net_policy__*  pure: validate and parse a network spec, compile it to
 *                  an nftables ruleset, match host names against it.
 *   net_parse__*   pure: hostile-input-safe TLS ClientHello SNI and HTTP
 *                  Host extraction, DNS A answers.
 *   net_pool__*    the per-host slot pool (netns, veth, tap0, NAT, policy
 *                  table, conntrack) and the egress proxy thread. */
#ifndef WARREN_NET_H
#define WARREN_NET_H

#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "warren/cidr.h"

/* ---- policy ------------------------------------------------------------ */

#define NET_POLICY_MAX_ENTRIES		    1000 /* per list (allowOut, denyOut) */
#define NET_POLICY_DEFAULT_CONNECTION_LIMIT 2500 /* docs/e2b-compatibility.md "Limits" */
#define NET_DOMAIN_MAX			    253

struct net_policy;

/* Checks a network spec {allowOut:[], denyOut:[], allow_internet_access}
 * (any key may be absent). Returns 0 when valid, else -1 with a message
 * meant for the API user in message (always NUL-terminated). Pure. */
int net_policy__validate(const json_t *spec, char *message, size_t message_size);

/* Validates and parses spec into a policy (CIDRs normalised and
 * de-duplicated, domains lower-cased). connection_limit 0 means the
 * default. NULL with message set on invalid input. */
struct net_policy *net_policy__parse(const json_t *spec, uint32_t connection_limit, char *message,
				     size_t message_size);
/* The default policy (everything but internal ranges allowed). */
struct net_policy *net_policy__default(uint32_t connection_limit);
void net_policy__free(struct net_policy *policy);
/* True when policy has no entries (what net_policy__default gives, at any
 * connection limit): a slot that has the default needs no replacement. */
bool net_policy__is_default(const struct net_policy *policy);

/* The per-sandbox limit of concurrent egress connections. It is installed
 * with the slot (net_pool__acquire) and kept across policy replacement. */
uint32_t net_policy__connection_limit(const struct net_policy *policy);

/* True when the policy holds domain entries (80/443 go to the proxy). */
bool net_policy__has_domains(const struct net_policy *policy);

/* True when host (len bytes, not NUL-terminated, any case, an optional
 * trailing dot) matches an exact or "*.suffix" domain entry. Bytes other
 * than ASCII letters compare exactly (IDNA names as bytes). */
bool net_policy__domain_allowed(const struct net_policy *policy, const char *host, size_t len);

/* Where the compiled ruleset sends proxied traffic. */
struct net_compile_params {
	struct in_addr proxy_address; /* host side of this slot's veth */
	uint16_t proxy_http_port;     /* original port 80 goes here */
	uint16_t proxy_tls_port;      /* original port 443 goes here */
	struct in_addr nameserver;    /* allowed automatically with domains */
	const char *uplink_link;      /* slot-side veth name ("veth0") */
	/* The operator's never-allow set (no overlaps: cidr__dedupe), denied
	 * before any allowOut entry. */
	const struct cidr *never_allow;
	size_t never_allow_count;
};

/* The host part of an infrastructure endpoint: a URL ("postgresql://u:p@
 * host:5432/db"), a libpq "host=... port=..." string or a broker
 * "host:port" (IPv6 in brackets). Copies it NUL-terminated into host;
 * returns its length, 0 when there is none or it does not fit. Pure. */
size_t net_policy__endpoint_host(const char *endpoint, char *host, size_t size);

/* True when address (family AF_INET: 4 bytes, AF_INET6: 16) lies in one
 * of the never_count blocks of never. Pure. */
bool net_policy__never_allowed(const struct cidr *never, size_t never_count, int family,
			       const void *address);

/* Compiles policy into one nftables transaction that replaces the table
 * "inet warren_policy" atomically (text for nft_run_cmd_from_buffer).
 * Caller frees. NULL on allocation failure. */
char *net_policy__compile(const struct net_policy *policy, const struct net_compile_params *params);

/* ---- hostile-input parsers --------------------------------------------- */

enum net_parse_result {
	NET_PARSE_OK = 0,
	NET_PARSE_NEED_MORE, /* a prefix of something valid: read more */
	NET_PARSE_NOT_FOUND, /* well-formed, but no SNI / Host */
	NET_PARSE_MALFORMED, /* refuse the connection */
};

#define NET_SNI_MAX 255

/* Finds the server_name of the TLS ClientHello at the start of data (one
 * or several handshake records, reassembled up to 16 KiB). On OK, the
 * name is copied NUL-terminated into name and its length set. */
enum net_parse_result net_parse__tls_sni(const uint8_t *data, size_t len,
					 char name[NET_SNI_MAX + 1], size_t *name_len);
/* Finds the Host header (port stripped) of an HTTP/1.x request head in
 * data. NEED_MORE until "\r\n\r\n" is seen; two Host headers are
 * MALFORMED. On OK, name and name_len point into data. */
enum net_parse_result net_parse__http_host(const uint8_t *data, size_t len, const char **name,
					   size_t *name_len);
/* One HTTP/1.x request head, as the egress proxy frames a keep-alive
 * connection (net_parse__http_request). */
struct net_http_request {
	const char *host; /* Host header value, port stripped (points into data) */
	size_t host_len;
	size_t head_len;	 /* bytes of the head, final CRLF CRLF included */
	bool chunked;		 /* Transfer-Encoding: chunked */
	uint64_t content_length; /* body bytes when not chunked (0: none) */
	bool last;		 /* Upgrade or CONNECT: nothing after it is HTTP */
};

/* Parses the request head at the start of data: the Host (as
 * net_parse__http_host), the body framing and whether the connection can
 * carry another request after it. MALFORMED for anything two parsers
 * could read differently: Content-Length with Transfer-Encoding, a
 * transfer coding other than "chunked", differing or non-decimal
 * Content-Length values, a request target in absolute form naming
 * another host, any target not "/..." or "*" or absolute form. */
enum net_parse_result net_parse__http_request(const uint8_t *data, size_t len,
					      struct net_http_request *out);
/* Parses a chunk-size line ("1a;ext\r\n") at the start of data. On OK,
 * *size is the chunk's size and *line_len the line's length with its
 * CRLF. NEED_MORE until the CRLF is seen (1 KiB at most). */
enum net_parse_result net_parse__http_chunk_line(const uint8_t *data, size_t len, uint64_t *size,
						 size_t *line_len);

/* Builds a DNS query for name's A records. Returns its length or -1. */
int net_parse__dns_query(uint8_t *out, size_t out_size, uint16_t id, const char *name);
/* Collects up to max A records of a DNS answer to query id, and the
 * smallest TTL among them in min_ttl (may be NULL). Returns the count
 * (0: none) or -1 when the packet is malformed, an error or not ours. */
int net_parse__dns_answer(const uint8_t *data, size_t len, uint16_t id, struct in_addr *out,
			  int max, uint32_t *min_ttl);

/* True for addresses a sandbox or the proxy must never reach unless
 * explicitly allowed (10/8, 172.16/12, 192.168/16, 169.254/16, 100.64/10,
 * 127/8, plus 0/8, multicast and reserved 224/3). */
bool net_policy__is_internal_v4(struct in_addr address);

/* ---- slot pool and egress proxy ---------------------------------------- */

enum net_runtime {
	NET_RUNTIME_VM = 0, /* guest behind tap0: DNAT slot address -> 169.254.0.21 */
	NET_RUNTIME_JAIL,   /* a process inside the namespace serves the slot address */
};

struct net_pool_config {
	const char *netns_prefix;     /* "warren-slot-" -> /run/netns/warren-slot-N */
	const char *link_prefix;      /* "wslot" -> host-side veth "wslotN" */
	const char *slot_cidr;	      /* "10.11.0.0/16", one /30 per slot */
	const char *uplink_interface; /* masquerade toward it; NULL: toward any non-slot link */
	struct in_addr nameserver;    /* sandbox_nameserver, 8.8.8.8 */
	struct in_addr resolver;      /* egress_resolver the proxy asks */
	uint16_t resolver_port;	      /* 53 */
	uint16_t proxy_http_port;     /* proxy listeners in the host namespace */
	uint16_t proxy_tls_port;
	unsigned precreate; /* slots created by net_pool__new */
	unsigned max_slots; /* cap (also limited by the CIDR) */
	/* Blocks added to the built-in never-allow set (CIDR_NEVER_ALLOW_BUILTIN,
	 * the slot range and the host's own addresses): comma-separated
	 * CIDRs, NULL or "" for none. */
	const char *never_allow;
	/* Egress proxy limits, 0 for the default: connections open at once
	 * on this host, per slot, and seconds a proxied connection may stay
	 * without a byte either way. */
	unsigned egress_max_connections;      /* 16384 */
	unsigned egress_slot_max_connections; /* 1024 */
	unsigned egress_idle_timeout_s;	      /* 300 */
};

struct net_pool;

/* Creates the pool relative to the calling thread's network namespace
 * (the "host" namespace): host forwarding + masquerade table, the egress
 * proxy thread and precreate slots. Removes leftovers carrying the same
 * prefixes first. NULL on failure (logged). */
struct net_pool *net_pool__new(const struct net_pool_config *config);
/* Stops the proxy, destroys every slot and the host table. */
void net_pool__free(struct net_pool *pool);

struct net_slot_info {
	int index;
	char netns_name[64]; /* under /run/netns */
	char netns_path[96];
	char host_link[16];	     /* host-side veth */
	struct in_addr host_address; /* host side of the veth, the gateway */
	struct in_addr slot_address; /* namespace side: "the slot address" */
};

/* Takes a free slot (creating one on demand when none is free), installs
 * the runtime's NAT and policy (NULL: default) and returns its index, or
 * -1. The slot starts with zeroed counters and no conntrack state. */
int net_pool__acquire(struct net_pool *pool, enum net_runtime runtime,
		      const struct net_policy *policy, struct net_slot_info *info);
/* Replaces the slot's policy atomically; established connections stay,
 * new ones see the new rules. The pool keeps its own copy. 0 or -1. */
int net_pool__set_policy(struct net_pool *pool, int slot, const struct net_policy *policy);
/* Returns the slot to the pool: policy and NAT tables deleted, conntrack
 * flushed (slot namespace and host entries of its address), counters
 * zeroed. 0 or -1 (the slot is then destroyed instead of reused). */
int net_pool__release(struct net_pool *pool, int slot);

struct net_slot_counters {
	uint64_t allowed_connections; /* new egress connections accepted (rules + proxy) */
	uint64_t denied_connections;  /* refused by rules or by the proxy */
	uint64_t limit_hits;	      /* refused by the connection limit */
	uint64_t proxy_allowed;	      /* of which through the proxy */
	uint64_t proxy_denied;
	uint64_t bytes_out; /* bytes leaving the slot (veth, incl. proxied) */
	uint64_t bytes_in;
};

/* Changes the egress proxy's limits (0 keeps a value): connections on
 * this host, per slot, idle seconds. New connections see them; open ones
 * keep the idle timeout they started with. */
void net_pool__set_egress_limits(struct net_pool *pool, unsigned max_connections,
				 unsigned slot_max_connections, unsigned idle_timeout_s);

/* The pool's size now, for the worker's Prometheus gauges. */
struct net_pool_stats {
	unsigned capacity;     /* slots the CIDR and slot_max allow */
	unsigned existing;     /* namespaces made (free + in use) */
	unsigned in_use;       /* acquired by sandboxes */
	int proxy_connections; /* egress proxy connections open */
};
void net_pool__stats(struct net_pool *pool, struct net_pool_stats *out);

/* Reads the slot's counters since acquire. 0 or -1. */
int net_pool__counters(struct net_pool *pool, int slot, struct net_slot_counters *out);

/* Creates / destroys one slot outside the free list (on-demand path and
 * benchmarks). net_pool__acquire uses these itself. */
int net_pool__create_slot(struct net_pool *pool);
int net_pool__destroy_slot(struct net_pool *pool, int slot);

/* Runs fn(arg) on a short-lived thread that has entered the network
 * namespace fd. Returns fn's result, or -errno when setns fails. */
int netns__run(int netns_fd, int (*fn)(void *arg), void *arg);

#endif
