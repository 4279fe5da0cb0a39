/* netenv: the network tests' world, shared by tests/network and
 * bench/network. netenv__up() registers its cleanup first, removes
 * leftovers of crashed runs (namespaces named wn<dead pid>*), creates a
 * "host" namespace whose only uplink is a veth to a "fake internet"
 * namespace (netenv.sh), moves the calling process into the host
 * namespace and creates a slot pool there. */
#ifndef WARREN_TESTS_NETENV_H
#define WARREN_TESTS_NETENV_H

#include <stddef.h>

#include "warren/net.h"

struct netenv {
	char prefix[16]; /* wn<pid>: every name of this run starts with it */
	char dir[128];	 /* CA, logs */
	char host_ns[32];
	char inet_ns[32];
	struct net_pool *pool;
	struct net_pool_config config;
};

extern struct netenv netenv;

/* 0 when ready; 77 (skip, reason printed) when the machine lacks what the
 * tests need (root, /dev/net/tun, ip, dnsmasq, python3, curl, openssl). */
int netenv__up(unsigned precreate);
/* Frees the pool and removes every namespace/process of this run. */
void netenv__down(void);
/* Runs a shell command; returns its exit status (-1 on failure to run). */
int netenv__sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs a shell command, captures up to size-1 bytes of stdout+stderr. */
int netenv__capture(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Connects from inside the namespace at netns_path to address:port
 * (2 s timeout). Returns the socket or -errno. */
int netenv__connect_from(const char *netns_path, const char *address, unsigned port);

#endif
