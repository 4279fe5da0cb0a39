/* net_internal: what the pool, the proxy and the policy compiler share
 * inside workers/net. Not a public header. */
#ifndef WARREN_NET_INTERNAL_H
#define WARREN_NET_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <nftables/libnftables.h>

#include "warren/net.h"

/* A proxied connection, listed so that releasing its slot cuts it. */
struct egress_connection {
	int client, upstream; /* upstream -1 until dialed */
	int slot;
	struct egress_connection *prev, *next;
};

struct net_slot {
	bool exists;   /* namespace and links are there */
	bool in_use;   /* acquired by a sandbox */
	bool creating; /* index reserved while being created */
	int netns_fd;
	pthread_mutex_t nft_lock; /* one nft command at a time in the slot */
	enum net_runtime runtime;
	struct net_policy *policy;	/* the pool's copy, guarded by the pool lock */
	struct net_slot_counters base;	/* banked when a policy table was replaced */
	struct net_slot_counters proxy; /* proxy decisions (proxy_allowed/denied) */
	uint64_t generation;		/* bumped by every release */
	unsigned proxy_connections;	/* egress proxy connections open now */
};

struct net_pool {
	pthread_mutex_t lock; /* slots[*] flags, policy, counters */
	char *netns_prefix, *link_prefix, *slot_cidr, *uplink_interface;
	char host_table[48];
	uint32_t base; /* slot_cidr network, host order */
	unsigned capacity;
	struct net_slot *slots;
	int host_fd;		  /* the namespace the pool was created in */
	struct nft_ctx *host_nft; /* bound to the host namespace */
	pthread_mutex_t host_nft_lock;
	struct in_addr nameserver, resolver;
	uint16_t resolver_port, proxy_http_port, proxy_tls_port;

	/* egress proxy */
	int proxy_http_fd, proxy_tls_fd, stop_fd;
#define EGRESS_LOOP_THREADS 2
	struct egress_loop *proxy_loops;		     /* EGRESS_LOOP_THREADS event loops */
	int proxy_thread_count;				     /* loops running */
	atomic_int proxy_active;			     /* proxied connections open */
	unsigned egress_max, egress_slot_max, egress_idle_s; /* limits (under lock) */
	/* The never-allow set: built-in, slot range, host addresses and the
	 * net_never_allow setting; deduplicated, fixed after net_pool__new. */
	struct cidr *never;
	size_t never_count;
	struct egress_connection *connections; /* under lock */
	struct egress_dns_entry *dns_cache;    /* under dns_lock */
	pthread_mutex_t dns_lock;
};

void net_pool__slot_names(const struct net_pool *pool, int index, struct net_slot_info *info);
int net_pool__create_slot_at(struct net_pool *pool, int index);
struct net_policy *net_policy__clone(const struct net_policy *policy);

/* The egress proxy thread (egress.c). */
int egress__start(struct net_pool *pool);
/* Stops the proxy; false when connection threads are still running
 * (the pool must then not be freed). */
bool egress__stop(struct net_pool *pool);
/* Shuts down every proxied connection of slot (caller holds pool->lock). */
void egress__cut_slot(struct net_pool *pool, int slot);

#endif
