/* net_address: "HOST:PORT" settings of the servers (api_listen,
 * proxy_listen), parsed one way. */
#ifndef WARREN_NET_ADDRESS_H
#define WARREN_NET_ADDRESS_H

#include <stddef.h>
#include <stdint.h>

/* Splits text at its LAST colon: host is what comes before (an IPv6
 * literal may be bare, "::1:80", or bracketed, "[::1]:80"; the brackets
 * are dropped), port the decimal digits after (0..65535; 0 = any). The
 * host must be non-empty and shorter than host_len. 0, or -EINVAL (host
 * and port then unspecified). */
int address__parse_host_port(const char *text, char *host, size_t host_len, uint16_t *port);

#endif
