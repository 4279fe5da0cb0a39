/* listeners: the TCP listening sockets of the agent's network namespace as
 * /proc/net/tcp and /proc/net/tcp6 show them (one line per socket:
 * "sl local_address rem_address st ... uid timeout inode"). Pure parsing,
 * no I/O: forward.c reads the files. */
#ifndef WARREN_AGENT_LISTENERS_H
#define WARREN_AGENT_LISTENERS_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

struct tcp_listener {
	int family;	       /* AF_INET or AF_INET6 */
	struct in_addr addr4;  /* AF_INET */
	struct in6_addr addr6; /* AF_INET6 */
	uint16_t port;
	unsigned long inode;
};

/* Parses one line of /proc/net/tcp (family AF_INET) or /proc/net/tcp6
 * (AF_INET6). True only for a well-formed line of a socket in LISTEN
 * state; the header line and anything malformed are false. */
bool listeners__parse_line(const char *line, int family, struct tcp_listener *out);
/* 127.0.0.0/8, ::1 or ::ffff:127.x.x.x */
bool listeners__is_loopback(const struct tcp_listener *listener);

#endif
