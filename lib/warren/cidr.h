/* cidr: IPv4/IPv6 address blocks (parse, containment) and the built-in
 * "never allow" set that no tenant network policy can open (the API's
 * validation and the worker's rules share it; docs/network.md). */
#ifndef WARREN_CIDR_H
#define WARREN_CIDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t address[16];
	int prefix;
};

/* Blocks no sandbox may ever reach, whatever its allowOut says: "this
 * network", loopback, link-local (cloud metadata services live at
 * 169.254.169.254), multicast + reserved + broadcast, and the IPv6
 * equivalents (unspecified, loopback, v4-mapped, link-local, unique local,
 * multicast). The worker adds its slot range, the host's own addresses
 * and the net_never_allow setting. */
#define CIDR_NEVER_ALLOW_BUILTIN                                                                   \
	"0.0.0.0/8,127.0.0.0/8,169.254.0.0/16,224.0.0.0/3,"                                        \
	"::/128,::1/128,::ffff:0:0/96,fe80::/10,fc00::/7,ff00::/8"

/* Parses "address" or "address/prefix" (IPv4 or IPv6); host bits are
 * cleared. 0 or -1 (hostile input safe). */
int cidr__parse(const char *s, struct cidr *out);
/* True when a covers b entirely (same family, a's prefix no longer). */
bool cidr__covers(const struct cidr *a, const struct cidr *b);
/* True when address (AF_INET: 4 bytes, AF_INET6: 16) lies in c. */
bool cidr__contains(const struct cidr *c, int family, const void *address);
/* Parses a list separated by commas and/or blanks into out (at most max
 * entries). Returns the count, or -1 at the first bad entry (bad, when not
 * NULL, then points at it inside text). */
int cidr__parse_list(const char *text, struct cidr *out, size_t max, const char **bad);
/* Drops entries covered by another one (interval sets must not overlap).
 * Returns the new count. Quadratic: for lists of a few thousand. */
size_t cidr__dedupe(struct cidr *list, size_t count);

#endif
