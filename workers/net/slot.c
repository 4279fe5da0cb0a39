/* slot: the per-host pool of sandbox network slots (ARCHITECTURE.md
 * "Sandbox network"; addressing and table layout in docs/network.md).
 *
 * Slot N: netns <netns_prefix>N (bind-mounted under /run/netns), veth
 * <link_prefix>N (host) <-> veth0 (slot), host H = base+4N+1/30, slot
 * address S = base+4N+2/30, tap0 169.254.0.22/30 (guest .21), default
 * route via H. Namespace work runs on short-lived threads that setns(2)
 * into the target (netns__run), so any caller thread may use the pool. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/rtnetlink.h>
#include <nftables/libnftables.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net_internal.h"
#include "warren/fds.h"
#include "warren/log.h"

#define NETNS_RUN_DIR "/run/netns"
#define SLOT_LINK     "veth0"
#define TAP_LINK      "tap0"
#define TAP_ADDRESS   "169.254.0.22/30"
/* tap0's MAC, the same in every slot (each is its own namespace): a vm
 * guest restored in another slot than the one it was paused in (a worker
 * restart, docs/network.md) finds its gateway at the MAC it cached. */
static const unsigned char tap_mac[6] = {0x02, 0x77, 0x72, 0x6e, 0x00, 0x01};
#define GUEST_ADDRESS "169.254.0.21"
/* Host conntrack mark of a slot's connections: 'W' in the top byte, the
 * low 24 bits of the slot's host address below it. Unique on the host,
 * not just in this pool: several pools (workers, test stacks) on one
 * machine have disjoint slot ranges, and a release flushes every host
 * entry carrying its mark, so a mark shared with another pool's slot
 * (the slot index alone) cut that slot's live connections, e.g. a
 * proxied request whose answer was then dropped as a new packet. */
#define SLOT_MARK(pool, index)                                                                     \
	(0x57000000u | (((pool)->base + 4u * (uint32_t)(index) + 1) & 0xffffffu))

/* ---- namespaces ---------------------------------------------------------- */

struct netns_call {
	int fd;
	int (*fn)(void *arg);
	void *arg;
	int rc;
};

static void *netns_thread(void *p)
{
	struct netns_call *call = p;

	if (setns(call->fd, CLONE_NEWNET) != 0) {
		call->rc = -errno;
		return NULL;
	}
	call->rc = call->fn(call->arg);
	return NULL;
}

int netns__run(int netns_fd, int (*fn)(void *arg), void *arg)
{
	struct netns_call call = {.fd = netns_fd, .fn = fn, .arg = arg, .rc = -1};
	pthread_t thread;
	int err;

	err = pthread_create(&thread, NULL, netns_thread, &call);
	if (err)
		return -err;
	pthread_join(thread, NULL);
	return call.rc;
}

/* iproute2's layout: /run/netns a shared mount point, one bind mount of
 * an nsfs file per name, so `ip netns` sees our slots. */
static int netns_run_dir_ready(void)
{
	if (mkdir(NETNS_RUN_DIR, 0755) != 0 && errno != EEXIST)
		return -errno;
	if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) != 0)
		return -errno;
	return mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0 ? 0 : -errno;
}

static void *netns_create_thread(void *p)
{
	struct netns_call *call = p;
	const char *path = call->arg;
	char self[64];
	int fd;

	call->rc = -1;
	if (unshare(CLONE_NEWNET) != 0) {
		call->rc = -errno;
		return NULL;
	}
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0) {
		call->rc = -errno;
		return NULL;
	}
	close(fd);
	snprintf(self, sizeof(self), "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
	if (mount(self, path, "none", MS_BIND, NULL) != 0) {
		call->rc = -errno;
		unlink(path);
		return NULL;
	}
	call->rc = 0;
	return NULL;
}

/* Creates a named network namespace; returns an fd to it or -errno. */
static int netns_create(const char *path)
{
	struct netns_call call = {.arg = (void *)path, .rc = -1};
	pthread_t thread;
	int err, fd;

	err = pthread_create(&thread, NULL, netns_create_thread, &call);
	if (err)
		return -err;
	pthread_join(thread, NULL);
	if (call.rc)
		return call.rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void netns_remove(const char *path)
{
	umount2(path, MNT_DETACH);
	unlink(path);
}

/* ---- small helpers run inside a namespace ------------------------------- */

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, value, strlen(value));
	close(fd);
	return n == (ssize_t)strlen(value) ? 0 : -EIO;
}

/* Raises one IPv4 neighbour-table threshold of the host to at least want
 * (never lowers it). */
static void neighbour_threshold_at_least(const char *name, unsigned want)
{
	char path[96], value[32] = "";
	FILE *file;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/neigh/default/%s", name);
	file = fopen(path, "re");
	if (file) {
		if (!fgets(value, sizeof(value), file))
			value[0] = '\0';
		fclose(file);
	}
	if (!value[0] || strtoul(value, NULL, 10) >= want)
		return; /* enough, or a namespace without its own (the table is the host's) */
	snprintf(value, sizeof(value), "%u", want);
	if (write_file(path, value) == 0)
		log_info("net: host neighbour table %s raised to %u for the slots", name, want);
	else
		log_warn("net: cannot raise %s to %u: slots past the host's neighbour table "
			 "will be unreachable",
			 path, want);
}

/* Every slot in use has a neighbour entry on the host (its address on its
 * veth); the kernel's default hard limit is 1,024 entries for the whole
 * host ("neighbor table overflow": about 850 of 1,000 sandboxes answered
 * before). Room for every slot twice over plus the host's own. */
static void host_neighbour_room(unsigned slots)
{
	neighbour_threshold_at_least("gc_thresh2", slots + 512);
	neighbour_threshold_at_least("gc_thresh3", 2 * slots + 1024);
}

/* A libnftables context; its netlink socket belongs to the namespace of
 * the thread that creates it, for its whole life (the host's is made once;
 * a slot's is made inside the slot for each command, slot_nft: about
 * 0.2 ms with libnftables 1.0.6). */
static struct nft_ctx *nft_context_new(void)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);

	if (nft) {
		nft_ctx_buffer_output(nft);
		nft_ctx_buffer_error(nft);
	}
	return nft;
}

/* Runs an nftables buffer with nft (caller holds its lock). With output,
 * the JSON listing is returned (caller frees). */
static int nft_run(struct nft_ctx *nft, const char *text, char **output)
{
	int rc;

	if (!nft)
		return -EINVAL;
	if (output)
		nft_ctx_output_set_flags(nft, NFT_CTX_OUTPUT_JSON);
	rc = nft_run_cmd_from_buffer(nft, text);
	if (output)
		nft_ctx_output_set_flags(nft, 0);
	if (rc != 0) {
		const char *error = nft_ctx_get_error_buffer(nft);

		log_error("net: nftables refused a ruleset: %s", error ? error : "?");
		rc = -EINVAL;
	} else if (output) {
		const char *out = nft_ctx_get_output_buffer(nft);

		*output = strdup(out ? out : "");
		if (!*output)
			rc = -ENOMEM;
	} else {
		nft_ctx_get_output_buffer(nft); /* drain */
	}
	return rc;
}

static int host_nft(struct net_pool *pool, const char *text)
{
	int rc;

	pthread_mutex_lock(&pool->host_nft_lock);
	rc = nft_run(pool->host_nft, text, NULL);
	pthread_mutex_unlock(&pool->host_nft_lock);
	return rc;
}

static struct nl_sock *route_socket(void)
{
	struct nl_sock *sk = nl_socket_alloc();

	if (!sk)
		return NULL;
	if (nl_connect(sk, NETLINK_ROUTE) < 0) {
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

static int link_up(struct nl_sock *sk, const char *name, int *ifindex)
{
	struct rtnl_link *link = NULL, *change = NULL;
	int rc;

	rc = rtnl_link_get_kernel(sk, 0, name, &link);
	if (rc < 0)
		goto out;
	change = rtnl_link_alloc();
	if (!change) {
		rc = -NLE_NOMEM;
		goto out;
	}
	rtnl_link_set_flags(change, IFF_UP);
	rc = rtnl_link_change(sk, link, change, 0);
	if (ifindex)
		*ifindex = rtnl_link_get_ifindex(link);
out:
	if (change)
		rtnl_link_put(change);
	if (link)
		rtnl_link_put(link);
	return rc;
}

static int address_add(struct nl_sock *sk, int ifindex, const char *cidr)
{
	struct rtnl_addr *addr = rtnl_addr_alloc();
	struct nl_addr *local = NULL;
	int rc;

	if (!addr)
		return -NLE_NOMEM;
	rc = nl_addr_parse(cidr, AF_INET, &local);
	if (rc < 0)
		goto out;
	rtnl_addr_set_ifindex(addr, ifindex);
	rtnl_addr_set_local(addr, local);
	rc = rtnl_addr_add(sk, addr, 0);
out:
	if (local)
		nl_addr_put(local);
	rtnl_addr_put(addr);
	return rc;
}

static void format_v4(char *out, size_t size, uint32_t host_order, int prefix)
{
	struct in_addr a = {.s_addr = htonl(host_order)};
	char text[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, text, sizeof(text));
	if (prefix >= 0)
		snprintf(out, size, "%s/%d", text, prefix);
	else
		snprintf(out, size, "%s", text);
}

/* ---- pool --------------------------------------------------------------- */

void net_pool__slot_names(const struct net_pool *pool, int index, struct net_slot_info *info)
{
	memset(info, 0, sizeof(*info));
	info->index = index;
	snprintf(info->netns_name, sizeof(info->netns_name), "%s%d", pool->netns_prefix, index);
	snprintf(info->netns_path, sizeof(info->netns_path), NETNS_RUN_DIR "/%s", info->netns_name);
	snprintf(info->host_link, sizeof(info->host_link), "%s%d", pool->link_prefix, index);
	info->host_address.s_addr = htonl(pool->base + 4u * (uint32_t)index + 1);
	info->slot_address.s_addr = htonl(pool->base + 4u * (uint32_t)index + 2);
}

struct host_link_op {
	const struct net_pool *pool;
	const struct net_slot_info *info;
	int slot_fd;
};

/* In the host namespace: the veth pair, its peer straight into the slot. */
static int host_link_create(void *arg)
{
	struct host_link_op *op = arg;
	struct nl_sock *sk = route_socket();
	struct rtnl_link *veth = NULL, *peer;
	char cidr[32];
	int rc = -1, ifindex;

	if (!sk)
		return -1;
	veth = rtnl_link_veth_alloc();
	if (!veth)
		goto out;
	rtnl_link_set_name(veth, op->info->host_link);
	peer = rtnl_link_veth_get_peer(veth);
	rtnl_link_set_name(peer, SLOT_LINK);
	rtnl_link_set_ns_fd(peer, op->slot_fd);
	rtnl_link_put(peer);
	rc = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
	if (rc < 0) {
		log_error("net: creating veth %s: %s", op->info->host_link, nl_geterror(rc));
		goto out;
	}
	rc = link_up(sk, op->info->host_link, &ifindex);
	if (rc < 0)
		goto out;
	format_v4(cidr, sizeof(cidr), ntohl(op->info->host_address.s_addr), 30);
	rc = address_add(sk, ifindex, cidr);
	if (rc < 0)
		log_error("net: address %s on %s: %s", cidr, op->info->host_link, nl_geterror(rc));
out:
	if (veth)
		rtnl_link_put(veth);
	nl_socket_free(sk);
	return rc < 0 ? -1 : 0;
}

static int host_link_delete(void *arg)
{
	struct host_link_op *op = arg;
	struct nl_sock *sk = route_socket();
	struct rtnl_link *link = NULL;
	int rc;

	if (!sk)
		return -1;
	rc = rtnl_link_get_kernel(sk, 0, op->info->host_link, &link);
	if (rc >= 0) {
		rc = rtnl_link_delete(sk, link);
		rtnl_link_put(link);
	} else if (rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND) {
		rc = 0;
	}
	nl_socket_free(sk);
	return rc < 0 ? -1 : 0;
}

/* A persistent tap owned by root, opened later by the VMM with
 * IFF_VNET_HDR (the flags must match what the VMM asks for). */
static int tap_create(void)
{
	struct ifreq ifr = {0};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	int rc = -1;

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP_LINK);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	memcpy(ifr.ifr_hwaddr.sa_data, tap_mac, sizeof(tap_mac));
	if (ioctl(fd, SIOCSIFHWADDR, &ifr) != 0 || ioctl(fd, TUNSETOWNER, 0) != 0 ||
	    ioctl(fd, TUNSETPERSIST, 1) != 0)
		rc = -errno;
	else
		rc = 0;
	close(fd);
	return rc;
}

/* Inside the slot: lo, veth0, tap0, the default route, forwarding. */
static int slot_inside_create(void *arg)
{
	struct host_link_op *op = arg;
	struct nl_sock *sk = route_socket();
	struct rtnl_route *route = NULL;
	struct rtnl_nexthop *hop;
	struct nl_addr *dst = NULL, *gateway = NULL;
	char cidr[32];
	int rc = -1, veth_index, tap_index;

	if (!sk)
		return -1;
	/* Slots are IPv4 only: no IPv6 autoconfiguration chatter (it would
	 * count as sandbox traffic) and no IPv6 path around the policy. */
	write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	/* Every port of the slot is the tenant's: a jail sandbox's root has no
	 * CAP_NET_BIND_SERVICE in this namespace (the host's user namespace
	 * owns it), and a server on port 80 is what users start. */
	write_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
	if ((rc = link_up(sk, "lo", NULL)) < 0 || (rc = link_up(sk, SLOT_LINK, &veth_index)) < 0)
		goto out;
	format_v4(cidr, sizeof(cidr), ntohl(op->info->slot_address.s_addr), 30);
	if ((rc = address_add(sk, veth_index, cidr)) < 0)
		goto out;
	rc = tap_create();
	if (rc < 0) {
		log_error("net: creating %s: %s", TAP_LINK, strerror(-rc));
		goto out;
	}
	if ((rc = link_up(sk, TAP_LINK, &tap_index)) < 0 ||
	    (rc = address_add(sk, tap_index, TAP_ADDRESS)) < 0)
		goto out;
	format_v4(cidr, sizeof(cidr), ntohl(op->info->host_address.s_addr), -1);
	route = rtnl_route_alloc();
	hop = rtnl_route_nh_alloc();
	if (!route || !hop || nl_addr_parse("0.0.0.0/0", AF_INET, &dst) < 0 ||
	    nl_addr_parse(cidr, AF_INET, &gateway) < 0) {
		if (hop)
			rtnl_route_nh_free(hop);
		rc = -1;
		goto out;
	}
	rtnl_route_set_family(route, AF_INET);
	rtnl_route_set_table(route, RT_TABLE_MAIN);
	rtnl_route_set_protocol(route, RTPROT_STATIC);
	rtnl_route_set_scope(route, RT_SCOPE_UNIVERSE);
	rtnl_route_set_dst(route, dst);
	rtnl_route_nh_set_gateway(hop, gateway);
	rtnl_route_nh_set_ifindex(hop, veth_index);
	rtnl_route_add_nexthop(route, hop);
	rc = rtnl_route_add(sk, route, NLM_F_CREATE);
	if (rc < 0)
		goto out;
	rc = write_file("/proc/sys/net/ipv4/ip_forward", "1");
out:
	if (rc < 0)
		log_error("net: configuring slot %s failed (%d)", op->info->netns_name, rc);
	if (dst)
		nl_addr_put(dst);
	if (gateway)
		nl_addr_put(gateway);
	if (route)
		rtnl_route_put(route);
	nl_socket_free(sk);
	return rc < 0 ? -1 : 0;
}

int net_pool__create_slot_at(struct net_pool *pool, int index)
{
	struct net_slot_info info;
	struct host_link_op op = {.pool = pool, .info = &info, .slot_fd = -1};
	struct net_slot *slot = &pool->slots[index];

	net_pool__slot_names(pool, index, &info);
	netns_remove(info.netns_path); /* leftover of a crashed run */
	op.slot_fd = netns_create(info.netns_path);
	if (op.slot_fd < 0) {
		log_error("net: creating namespace %s: %s", info.netns_name, strerror(-op.slot_fd));
		return -1;
	}
	netns__run(pool->host_fd, host_link_delete, &op);
	if (netns__run(pool->host_fd, host_link_create, &op) != 0 ||
	    netns__run(op.slot_fd, slot_inside_create, &op) != 0) {
		netns__run(pool->host_fd, host_link_delete, &op);
		netns_remove(info.netns_path);
		close(op.slot_fd);
		return -1;
	}
	slot->netns_fd = fds__keep_high(op.slot_fd); /* kept for the slot's life */
	slot->exists = true;
	/* Host conntrack entries of this slot carry its mark (release). */
	{
		char *text = NULL;

		if (asprintf(&text, "add element inet %s slot_marks { \"%s\" : 0x%08x }\n",
			     pool->host_table, info.host_link, SLOT_MARK(pool, index)) < 0 ||
		    host_nft(pool, text) != 0) {
			free(text);
			net_pool__destroy_slot(pool, index);
			return -1;
		}
		free(text);
	}
	return 0;
}

int net_pool__destroy_slot(struct net_pool *pool, int index)
{
	struct net_slot_info info;
	struct host_link_op op = {.pool = pool, .info = &info};
	struct net_slot *slot;
	int rc;

	if (index < 0 || (unsigned)index >= pool->capacity)
		return -1;
	slot = &pool->slots[index];
	net_pool__slot_names(pool, index, &info);
	/* Deleting the host end removes the pair now, not when the namespace's
	 * asynchronous cleanup runs. */
	rc = netns__run(pool->host_fd, host_link_delete, &op);
	netns_remove(info.netns_path);
	if (slot->netns_fd >= 0)
		close(slot->netns_fd);
	slot->netns_fd = -1;
	{
		char *text = NULL;

		/* Quietly: the element may never have been added. */
		if (asprintf(&text, "delete element inet %s slot_marks { \"%s\" }\n",
			     pool->host_table, info.host_link) >= 0) {
			pthread_mutex_lock(&pool->host_nft_lock);
			if (pool->host_nft)
				nft_run_cmd_from_buffer(pool->host_nft, text);
			pthread_mutex_unlock(&pool->host_nft_lock);
		}
		free(text);
	}
	pthread_mutex_lock(&pool->lock);
	slot->generation++;
	egress__cut_slot(pool, index);
	slot->exists = false;
	slot->in_use = false;
	slot->creating = false;
	net_policy__free(slot->policy);
	slot->policy = NULL;
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

/* Reserves the lowest unused index (under the lock). -1 when full. */
static int reserve_index(struct net_pool *pool)
{
	for (unsigned i = 0; i < pool->capacity; i++) {
		struct net_slot *slot = &pool->slots[i];

		if (!slot->exists && !slot->creating) {
			slot->creating = true;
			return (int)i;
		}
	}
	return -1;
}

int net_pool__create_slot(struct net_pool *pool)
{
	int index;

	pthread_mutex_lock(&pool->lock);
	index = reserve_index(pool);
	pthread_mutex_unlock(&pool->lock);
	if (index < 0)
		return -1;
	if (net_pool__create_slot_at(pool, index) != 0) {
		pthread_mutex_lock(&pool->lock);
		pool->slots[index].creating = false;
		pthread_mutex_unlock(&pool->lock);
		return -1;
	}
	pthread_mutex_lock(&pool->lock);
	pool->slots[index].creating = false;
	pthread_mutex_unlock(&pool->lock);
	return index;
}

/* ---- per-slot tables ---------------------------------------------------- */

/* The runtime's NAT and the byte counters: table inet warren_slot. */
static char *slot_base_table(const struct net_slot_info *info, enum net_runtime runtime,
			     uint32_t limit)
{
	char slot[INET_ADDRSTRLEN], *text = NULL;

	inet_ntop(AF_INET, &info->slot_address, slot, sizeof(slot));
	if (asprintf(
		&text,
		"table inet warren_slot\n"
		"delete table inet warren_slot\n"
		"table inet warren_slot {\n"
		"\tcounter bytes_in {\n\t}\n"
		"\tcounter bytes_out {\n\t}\n"
		"\tcounter limit_hits {\n\t}\n"
		/* The sandbox's concurrent egress connection limit: one
		 * ct count list for both paths (vm: forwarded from tap0;
		 * jail: local output), before the policy (priority 0). */
		"\tchain over_limit {\n\t\tcounter name \"limit_hits\"\n"
		"\t\tmeta l4proto tcp reject with tcp reset\n"
		"\t\treject with icmpx type admin-prohibited\n\t}\n"
		"\tchain connection_limit {\n\t\tct count over %u goto over_limit\n\t}\n"
		"\tchain connection_limit_forward {\n\t\ttype filter hook forward priority -1; "
		"policy accept;\n"
		"\t\tiifname \"" TAP_LINK "\" ct state new jump connection_limit\n\t}\n"
		"\tchain connection_limit_output {\n\t\ttype filter hook output priority -1; "
		"policy accept;\n"
		"\t\toifname \"" SLOT_LINK "\" ct state new jump connection_limit\n\t}\n"
		"\tchain prerouting {\n\t\ttype nat hook prerouting priority -110; policy accept;\n"
		"%s%s%s"
		"\t}\n"
		"\tchain postrouting {\n\t\ttype nat hook postrouting priority 110; policy "
		"accept;\n"
		"\t\toifname \"" SLOT_LINK "\" ip saddr " GUEST_ADDRESS " snat ip to %s\n\t}\n"
		/* A guest may only speak as 169.254.0.21, IPv4: a spoofed
		 * source would be forwarded un-NATed (and name another slot
		 * to the proxy). */
		"\tchain guard {\n\t\ttype filter hook prerouting priority -350; policy accept;\n"
		"\t\tiifname \"" TAP_LINK "\" meta nfproto ipv6 drop\n"
		"\t\tiifname \"" TAP_LINK "\" ip saddr != " GUEST_ADDRESS " drop\n\t}\n"
		"\tchain count_in {\n\t\ttype filter hook prerouting priority -300; policy "
		"accept;\n"
		"\t\tiifname \"" SLOT_LINK "\" counter name \"bytes_in\"\n\t}\n"
		"\tchain count_out {\n\t\ttype filter hook postrouting priority 300; policy "
		"accept;\n"
		"\t\toifname \"" SLOT_LINK "\" counter name \"bytes_out\"\n\t}\n"
		"}\n",
		limit, runtime == NET_RUNTIME_VM ? "\t\tiifname \"" SLOT_LINK "\" ip daddr " : "",
		runtime == NET_RUNTIME_VM ? slot : "",
		runtime == NET_RUNTIME_VM ? " dnat ip to " GUEST_ADDRESS "\n" : "", slot) < 0)
		return NULL;
	return text;
}

static char *slot_policy_table(const struct net_pool *pool, const struct net_slot_info *info,
			       const struct net_policy *policy)
{
	struct net_compile_params params = {
	    .proxy_address = info->host_address,
	    .proxy_http_port = pool->proxy_http_port,
	    .proxy_tls_port = pool->proxy_tls_port,
	    .nameserver = pool->nameserver,
	    .uplink_link = SLOT_LINK,
	    .never_allow = pool->never,
	    .never_allow_count = pool->never_count,
	};

	return net_policy__compile(policy, &params);
}

struct slot_nft_call {
	const char *text;
	char **output;
	int rc;
};

static int slot_nft_here(void *arg)
{
	struct slot_nft_call *call = arg;
	struct nft_ctx *nft = nft_context_new();

	call->rc = nft ? nft_run(nft, call->text, call->output) : -ENOMEM;
	if (nft)
		nft_ctx_free(nft);
	return 0;
}

/* Runs text (with output: the JSON listing, caller frees) in the slot's
 * namespace with a libnftables context made there for this call (about
 * 0.2 ms). Slots keep none: a kept context held ~1.2 MiB of ruleset
 * cache and a netlink socket, and libnftables waits on that socket with
 * select(), which aborts the process once the number reaches 1024 (about
 * 330 slots). The per-slot lock keeps one command at a time per slot. */
static int slot_nft(struct net_slot *slot, const char *text, char **output)
{
	struct slot_nft_call call = {.text = text, .output = output, .rc = -EINVAL};

	pthread_mutex_lock(&slot->nft_lock);
	if (slot->netns_fd < 0 || netns__run(slot->netns_fd, slot_nft_here, &call) != 0)
		call.rc = -EINVAL;
	pthread_mutex_unlock(&slot->nft_lock);
	return call.rc;
}

static int apply_in_slot(struct net_slot *slot, const char *text)
{
	return slot_nft(slot, text, NULL);
}

/* Reads the named counters of both slot tables (nft JSON). */
static int read_nft_counters(struct net_slot *slot, struct net_slot_counters *out)
{
	char *output = NULL;
	json_t *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = slot_nft(
	    slot, "list counters table inet warren_policy\nlist counters table inet warren_slot\n",
	    &output);
	if (rc != 0)
		goto out;
	/* Two JSON documents back to back: parse each. */
	for (const char *p = output; p && *p;) {
		json_error_t error;
		size_t used;
		json_t *entry;
		size_t i;

		while (*p == '\n' || *p == ' ')
			p++;
		if (!*p)
			break;
		root = json_loads(p, JSON_DISABLE_EOF_CHECK, &error);
		if (!root) {
			rc = -1;
			goto out;
		}
		used = (size_t)error.position;
		json_array_foreach(json_object_get(root, "nftables"), i, entry)
		{
			json_t *counter = json_object_get(entry, "counter");
			const char *name = json_string_value(json_object_get(counter, "name"));
			uint64_t packets =
			    (uint64_t)json_integer_value(json_object_get(counter, "packets"));
			uint64_t bytes =
			    (uint64_t)json_integer_value(json_object_get(counter, "bytes"));

			if (!name)
				continue;
			if (!strcmp(name, "allowed"))
				out->allowed_connections += packets;
			else if (!strcmp(name, "denied"))
				out->denied_connections += packets;
			else if (!strcmp(name, "limit_hits"))
				out->limit_hits += packets;
			else if (!strcmp(name, "bytes_out"))
				out->bytes_out += bytes;
			else if (!strcmp(name, "bytes_in"))
				out->bytes_in += bytes;
		}
		json_decref(root);
		root = NULL;
		if (used == 0)
			break;
		p += used;
	}
out:
	json_decref(root);
	free(output);
	return rc;
}

static void counters_add(struct net_slot_counters *sum, const struct net_slot_counters *c)
{
	sum->allowed_connections += c->allowed_connections;
	sum->denied_connections += c->denied_connections;
	sum->limit_hits += c->limit_hits;
	sum->proxy_allowed += c->proxy_allowed;
	sum->proxy_denied += c->proxy_denied;
	sum->bytes_out += c->bytes_out;
	sum->bytes_in += c->bytes_in;
}

/* Empties the slot namespace's conntrack table: ctnetlink delete with no
 * tuple is a flush (family AF_UNSPEC: every family). */
static int conntrack_flush_here(void *arg)
{
	struct nl_sock *sk = nl_socket_alloc();
	struct nfgenmsg header = {.nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0};
	int rc = -1;

	(void)arg;
	if (!sk)
		return -1;
	if (nl_connect(sk, NETLINK_NETFILTER) < 0)
		goto out;
	rc = nl_send_simple(sk, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
			    NLM_F_REQUEST | NLM_F_ACK, &header, sizeof(header));
	if (rc >= 0)
		rc = nl_wait_for_ack(sk);
out:
	nl_socket_free(sk);
	return rc < 0 ? -1 : 0;
}

/* Host-side conntrack entries of a slot (masqueraded egress, proxied
 * connections, connections into the slot) carry SLOT_MARK: one filtered
 * ctnetlink flush removes them (kernel 6.1 filters flushes by mark). */
static int conntrack_flush_mark(void *arg)
{
	uint32_t mark = *(uint32_t *)arg;
	struct nl_sock *sk = nl_socket_alloc();
	struct nl_msg *msg = NULL;
	struct nfgenmsg header = {.nfgen_family = AF_INET, .version = NFNETLINK_V0};
	int rc = -1;

	if (!sk || nl_connect(sk, NETLINK_NETFILTER) < 0)
		goto out;
	msg = nlmsg_alloc_simple((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
				 NLM_F_REQUEST | NLM_F_ACK);
	if (!msg || nlmsg_append(msg, &header, sizeof(header), NLMSG_ALIGNTO) < 0 ||
	    nla_put_u32(msg, CTA_MARK, htonl(mark)) < 0 ||
	    nla_put_u32(msg, CTA_MARK_MASK, htonl(0xffffffffu)) < 0)
		goto out;
	rc = nl_send_auto(sk, msg);
	if (rc >= 0)
		rc = nl_wait_for_ack(sk);
out:
	if (msg)
		nlmsg_free(msg);
	if (sk)
		nl_socket_free(sk);
	return rc < 0 ? -1 : 0;
}

int net_pool__acquire(struct net_pool *pool, enum net_runtime runtime,
		      const struct net_policy *policy, struct net_slot_info *info)
{
	struct net_policy *copy = policy ? net_policy__clone(policy) : net_policy__default(0);
	struct net_slot_info names;
	char *base = NULL, *rules = NULL, *text = NULL;
	int index = -1;

	if (!copy)
		return -1;
	pthread_mutex_lock(&pool->lock);
	for (unsigned i = 0; i < pool->capacity; i++) {
		struct net_slot *slot = &pool->slots[i];

		if (slot->exists && !slot->in_use && !slot->creating) {
			slot->in_use = true;
			index = (int)i;
			break;
		}
	}
	pthread_mutex_unlock(&pool->lock);
	if (index < 0) {
		/* On demand: none free. */
		index = net_pool__create_slot(pool);
		if (index < 0) {
			log_error("net: no free slot and none can be created");
			goto err;
		}
		pthread_mutex_lock(&pool->lock);
		pool->slots[index].in_use = true;
		pthread_mutex_unlock(&pool->lock);
	}
	net_pool__slot_names(pool, index, &names);
	base = slot_base_table(&names, runtime, net_policy__connection_limit(copy));
	rules = slot_policy_table(pool, &names, copy);
	if (!base || !rules || asprintf(&text, "%s%s", base, rules) < 0) {
		text = NULL;
		goto err_slot;
	}
	if (apply_in_slot(&pool->slots[index], text) != 0)
		goto err_slot;
	pthread_mutex_lock(&pool->lock);
	pool->slots[index].runtime = runtime;
	pool->slots[index].policy = copy;
	memset(&pool->slots[index].base, 0, sizeof(pool->slots[index].base));
	memset(&pool->slots[index].proxy, 0, sizeof(pool->slots[index].proxy));
	pthread_mutex_unlock(&pool->lock);
	if (info)
		*info = names;
	free(base);
	free(rules);
	free(text);
	return index;
err_slot:
	/* A slot whose tables cannot be installed is not reused. */
	net_pool__destroy_slot(pool, index);
err:
	free(base);
	free(rules);
	free(text);
	net_policy__free(copy);
	return -1;
}

int net_pool__set_policy(struct net_pool *pool, int index, const struct net_policy *policy)
{
	struct net_policy *copy, *old;
	struct net_slot_info names;
	struct net_slot_counters before;
	struct net_slot *slot;
	char *rules;
	int rc;

	if (index < 0 || (unsigned)index >= pool->capacity || !pool->slots[index].in_use)
		return -1;
	slot = &pool->slots[index];
	copy = policy ? net_policy__clone(policy) : net_policy__default(0);
	if (!copy)
		return -1;
	net_pool__slot_names(pool, index, &names);
	rules = slot_policy_table(pool, &names, copy);
	if (!rules) {
		net_policy__free(copy);
		return -1;
	}
	/* The policy table's counters restart with the new table: bank them. */
	if (read_nft_counters(slot, &before) != 0)
		memset(&before, 0, sizeof(before));
	before.bytes_in = before.bytes_out = before.limit_hits = 0; /* warren_slot keeps these */
	rc = apply_in_slot(slot, rules);
	free(rules);
	if (rc != 0) {
		net_policy__free(copy);
		return -1;
	}
	pthread_mutex_lock(&pool->lock);
	old = slot->policy;
	slot->policy = copy;
	counters_add(&slot->base, &before);
	pthread_mutex_unlock(&pool->lock);
	net_policy__free(old);
	return 0;
}

int net_pool__release(struct net_pool *pool, int index)
{
	struct net_slot_info names;
	struct net_slot *slot;
	uint32_t mark = SLOT_MARK(pool, index);
	const char *step;
	int rc;

	if (index < 0 || (unsigned)index >= pool->capacity || !pool->slots[index].in_use)
		return -1;
	slot = &pool->slots[index];
	net_pool__slot_names(pool, index, &names);
	/* The proxy's connections of this sandbox end with it. */
	pthread_mutex_lock(&pool->lock);
	slot->generation++;
	egress__cut_slot(pool, index);
	pthread_mutex_unlock(&pool->lock);
	/* Quiesce first: every packet in or out of the slot is dropped before
	 * conntrack sees it, so nothing re-creates entries (here or on the
	 * host) while they are flushed. Then the tables go. */
	step = "quiesce";
	rc = apply_in_slot(
	    slot, "table inet warren_quiesce {\n"
		  "\tchain in {\n\t\ttype filter hook prerouting priority -400; policy drop;\n\t}\n"
		  "\tchain out {\n\t\ttype filter hook output priority -400; policy drop;\n\t}\n"
		  "}\n");
	if (rc == 0) {
		step = "flush the slot's conntrack table";
		rc = netns__run(slot->netns_fd, conntrack_flush_here, NULL);
	}
	if (rc == 0) {
		step = "flush the host's conntrack entries of the slot";
		rc = netns__run(pool->host_fd, conntrack_flush_mark, &mark);
	}
	if (rc == 0) {
		step = "delete the slot's tables";
		rc = apply_in_slot(slot,
				   "table inet warren_policy\ndelete table inet warren_policy\n"
				   "table inet warren_slot\ndelete table inet warren_slot\n"
				   "delete table inet warren_quiesce\n");
	}
	if (rc != 0) {
		log_warn("net: slot %d could not be reset (%s failed); destroying it", index, step);
		net_pool__destroy_slot(pool, index);
		return -1;
	}
	pthread_mutex_lock(&pool->lock);
	net_policy__free(slot->policy);
	slot->policy = NULL;
	memset(&slot->base, 0, sizeof(slot->base));
	memset(&slot->proxy, 0, sizeof(slot->proxy));
	slot->in_use = false;
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

int net_pool__counters(struct net_pool *pool, int index, struct net_slot_counters *out)
{
	struct net_slot_counters now;
	struct net_slot *slot;

	if (index < 0 || (unsigned)index >= pool->capacity || !pool->slots[index].in_use)
		return -1;
	slot = &pool->slots[index];
	if (read_nft_counters(slot, &now) != 0)
		return -1;
	pthread_mutex_lock(&pool->lock);
	counters_add(&now, &slot->base);
	counters_add(&now, &slot->proxy);
	/* Proxy decisions count as connections too (the rules only saw a
	 * connection to the proxy). */
	now.allowed_connections += slot->proxy.proxy_allowed;
	now.denied_connections += slot->proxy.proxy_denied;
	pthread_mutex_unlock(&pool->lock);
	*out = now;
	return 0;
}

/* ---- host namespace ---------------------------------------------------- */

/* The never-allow set: CIDR_NEVER_ALLOW_BUILTIN, the slot range, every
 * address of the calling thread's namespace (the host's own) and the
 * never_allow setting, deduplicated into pool->never. 0 or -1 (logged). */
static int never_allow_build(struct net_pool *pool, const char *setting)
{
	size_t capacity = 64, count = 0;
	struct ifaddrs *addresses = NULL;
	const char *bad = NULL;
	struct cidr *list;
	int n;

	for (const char *p = setting ? setting : ""; *p; p++)
		capacity += *p == ',' || *p == ' ';
	list = calloc(capacity, sizeof(*list));
	if (!list)
		return -1;
	n = cidr__parse_list(CIDR_NEVER_ALLOW_BUILTIN, list, capacity, NULL);
	if (n < 0 || cidr__parse(pool->slot_cidr, &list[n]) != 0)
		goto err;
	count = (size_t)n + 1;
	n = cidr__parse_list(setting, list + count, capacity - count - 1, &bad);
	if (n < 0) {
		log_error(
		    "net: net_never_allow: '%.40s' is not an address or CIDR block (or too many)",
		    bad);
		goto err;
	}
	count += (size_t)n;
	if (getifaddrs(&addresses) == 0) {
		for (struct ifaddrs *a = addresses; a; a = a->ifa_next) {
			int family = a->ifa_addr ? a->ifa_addr->sa_family : AF_UNSPEC;
			struct cidr host = {.family = family,
					    .prefix = family == AF_INET ? 32 : 128};

			if (family != AF_INET && family != AF_INET6)
				continue;
			if (family == AF_INET)
				memcpy(host.address, &((struct sockaddr_in *)a->ifa_addr)->sin_addr,
				       4);
			else
				memcpy(host.address,
				       &((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr, 16);
			if (count == capacity) {
				struct cidr *grown = realloc(list, capacity * 2 * sizeof(*list));

				if (!grown)
					goto err;
				list = grown;
				capacity *= 2;
			}
			list[count++] = host;
		}
		freeifaddrs(addresses);
	}
	pool->never_count = cidr__dedupe(list, count);
	pool->never = list;
	return 0;
err:
	free(list);
	return -1;
}

/* The IPv4 part of pool->never as an nft "elements = { ... }" line
 * (empty when none). Caller frees; NULL on allocation failure. */
static char *never_v4_elements(const struct net_pool *pool)
{
	size_t size = 32 + pool->never_count * (INET_ADDRSTRLEN + 6), len = 0;
	char *text = malloc(size);

	if (!text)
		return NULL;
	text[0] = 0;
	for (size_t i = 0; i < pool->never_count; i++) {
		char address[INET_ADDRSTRLEN];

		if (pool->never[i].family != AF_INET)
			continue;
		inet_ntop(AF_INET, pool->never[i].address, address, sizeof(address));
		len += (size_t)snprintf(text + len, size - len, "%s%s/%d",
					len ? ", " : "\t\telements = { ", address,
					pool->never[i].prefix);
	}
	if (len)
		snprintf(text + len, size - len, " }\n");
	return text;
}

struct host_setup_op {
	struct net_pool *pool;
	bool remove;
};

static int host_setup(void *arg)
{
	struct host_setup_op *op = arg;
	struct net_pool *pool = op->pool;
	char *text = NULL, *never, uplink_rule[128] = "";
	int rc;

	if (op->remove) {
		if (!pool->host_nft)
			return 0;
		if (asprintf(&text, "table inet %s\ndelete table inet %s\n", pool->host_table,
			     pool->host_table) < 0)
			return -1;
		rc = host_nft(pool, text);
		free(text);
		pthread_mutex_lock(&pool->host_nft_lock);
		nft_ctx_free(pool->host_nft);
		pool->host_nft = NULL;
		pthread_mutex_unlock(&pool->host_nft_lock);
		return rc;
	}
	pool->host_nft = nft_context_new(); /* here: in the host namespace */
	if (!pool->host_nft)
		return -1;
	/* Unset uplink_interface: masquerade toward whatever is not a slot. */
	if (pool->uplink_interface && *pool->uplink_interface)
		snprintf(uplink_rule, sizeof(uplink_rule),
			 "\t\tip saddr %s oifname \"%s\" masquerade\n", pool->slot_cidr,
			 pool->uplink_interface);
	else
		snprintf(uplink_rule, sizeof(uplink_rule),
			 "\t\tip saddr %s oifname != \"%s*\" masquerade\n", pool->slot_cidr,
			 pool->link_prefix);
	never = never_v4_elements(pool);
	if (!never)
		return -1;
	/* Slots never reach each other through the host, nor the never-allow
	 * set, nor anything over IPv6 (answers to connections made TO a slot
	 * pass: warren-proxy may share a machine, hence an address, with
	 * PostgreSQL or Kafka, which are in the never-allow set; a slot cannot
	 * open a connection there, so only answers are "established" toward
	 * it); they reach the host itself only on the
	 * proxy ports (and answers to the host's own connections); the proxy
	 * ports answer slots only; a slot's packets must carry a source
	 * routed back through its own veth (reverse-path check), so no slot
	 * can speak as another. */
	if (asprintf(
		&text,
		"table inet %1$s\n"
		"delete table inet %1$s\n"
		"table inet %1$s {\n"
		"\tcounter slot_dropped {\n\t}\n"
		"\tset never_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n%6$s\t}\n"
		"\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n"
		"\t\tiifname \"%2$s*\" oifname \"%2$s*\" counter name \"slot_dropped\" drop\n"
		"\t\tiifname \"%2$s*\" meta nfproto != ipv4 counter name \"slot_dropped\" drop\n"
		"\t\tiifname \"%2$s*\" ct state established,related accept\n"
		"\t\tiifname \"%2$s*\" ip daddr @never_v4 counter name \"slot_dropped\" drop\n"
		"\t\tiifname \"%2$s*\" accept\n"
		"\t\toifname \"%2$s*\" meta nfproto != ipv4 drop\n"
		"\t\toifname \"%2$s*\" ct state established,related accept\n\t}\n"
		"\tmap slot_marks {\n\t\ttype ifname : mark\n\t}\n"
		"\tchain mark_in {\n\t\ttype filter hook prerouting priority 0; policy accept;\n"
		"\t\tct state new iifname \"%2$s*\" ct mark set iifname map @slot_marks\n\t}\n"
		"\tchain mark_out {\n\t\ttype filter hook postrouting priority 0; policy accept;\n"
		"\t\tct state new oifname \"%2$s*\" ct mark set oifname map @slot_marks\n\t}\n"
		"\tchain guard {\n\t\ttype filter hook prerouting priority -150; policy accept;\n"
		"\t\tiifname \"%2$s*\" meta nfproto != ipv4 counter name \"slot_dropped\" drop\n"
		"\t\tiifname \"%2$s*\" fib saddr . iif oif missing counter drop\n\t}\n"
		"\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n"
		"\t\ttcp dport { %3$u, %4$u } iifname != \"%2$s*\" ct state new,invalid,untracked "
		"drop\n"
		"\t\tiifname \"%2$s*\" ct state established,related accept\n"
		"\t\tiifname \"%2$s*\" ct state new meta nfproto ipv4 tcp dport { %3$u, %4$u } "
		"accept\n"
		"\t\tiifname \"%2$s*\" counter name \"slot_dropped\" drop\n\t}\n"
		"\tchain postrouting {\n\t\ttype nat hook postrouting priority 100; policy "
		"accept;\n"
		"%5$s\t}\n"
		"}\n",
		pool->host_table, pool->link_prefix, pool->proxy_http_port, pool->proxy_tls_port,
		uplink_rule, never) < 0) {
		free(never);
		return -1;
	}
	free(never);
	/* An earlier version's "table ip" of the same name goes (the command
	 * fails when there is none: its outcome is ignored). */
	{
		char *old = NULL;

		if (asprintf(&old, "delete table ip %s\n", pool->host_table) >= 0) {
			pthread_mutex_lock(&pool->host_nft_lock);
			nft_run_cmd_from_buffer(pool->host_nft, old);
			nft_ctx_get_error_buffer(pool->host_nft); /* drain */
			pthread_mutex_unlock(&pool->host_nft_lock);
			free(old);
		}
	}
	rc = host_nft(pool, text);
	free(text);
	if (rc == 0)
		rc = write_file("/proc/sys/net/ipv4/ip_forward", "1");
	if (rc == 0)
		host_neighbour_room(pool->capacity);
	return rc;
}

/* Removes host links carrying the link prefix (leftovers of a crash). */
static int host_reap_links(void *arg)
{
	struct net_pool *pool = arg;
	struct nl_sock *sk = route_socket();
	struct nl_cache *cache = NULL;
	size_t prefix_len = strlen(pool->link_prefix);

	if (!sk)
		return -1;
	if (rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache) >= 0) {
		for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
			struct rtnl_link *link = (struct rtnl_link *)o;
			const char *name = rtnl_link_get_name(link);

			if (name && !strncmp(name, pool->link_prefix, prefix_len) &&
			    name[prefix_len] >= '0' && name[prefix_len] <= '9')
				rtnl_link_delete(sk, link);
		}
		nl_cache_free(cache);
	}
	nl_socket_free(sk);
	return 0;
}

static void reap_namespaces(struct net_pool *pool)
{
	size_t prefix_len = strlen(pool->netns_prefix);
	DIR *dir = opendir(NETNS_RUN_DIR);
	struct dirent *entry;

	if (!dir)
		return;
	while ((entry = readdir(dir))) {
		char path[512];

		if (strncmp(entry->d_name, pool->netns_prefix, prefix_len) != 0)
			continue;
		snprintf(path, sizeof(path), NETNS_RUN_DIR "/%s", entry->d_name);
		log_warn("net: removing leftover namespace %s", entry->d_name);
		netns_remove(path);
	}
	closedir(dir);
}

static int parse_slot_cidr(const char *cidr, uint32_t *base, unsigned *count)
{
	char address[INET_ADDRSTRLEN];
	const char *slash = cidr ? strchr(cidr, '/') : NULL;
	struct in_addr a;
	int prefix;

	if (!slash || (size_t)(slash - cidr) >= sizeof(address))
		return -1;
	memcpy(address, cidr, (size_t)(slash - cidr));
	address[slash - cidr] = 0;
	prefix = atoi(slash + 1);
	if (inet_pton(AF_INET, address, &a) != 1 || prefix < 8 || prefix > 30)
		return -1;
	*base = ntohl(a.s_addr) & (prefix ? ~0u << (32 - prefix) : 0);
	*count = 1u << (32 - prefix - 2);
	return 0;
}

struct net_pool *net_pool__new(const struct net_pool_config *config)
{
	struct net_pool *pool = calloc(1, sizeof(*pool));
	struct host_setup_op host = {.pool = pool};
	unsigned count;

	if (!pool)
		return NULL;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_mutex_init(&pool->host_nft_lock, NULL);
	pool->host_fd = -1;
	pool->proxy_http_fd = pool->proxy_tls_fd = -1;
	pool->stop_fd = -1;
	if (strlen(config->link_prefix) > 9) {
		log_error("net: slot_link_prefix '%s' is too long (9 characters at most)",
			  config->link_prefix);
		goto err;
	}
	pool->netns_prefix = strdup(config->netns_prefix);
	pool->link_prefix = strdup(config->link_prefix);
	pool->slot_cidr = strdup(config->slot_cidr);
	pool->uplink_interface = config->uplink_interface ? strdup(config->uplink_interface) : NULL;
	if (!pool->netns_prefix || !pool->link_prefix || !pool->slot_cidr)
		goto err;
	if (parse_slot_cidr(config->slot_cidr, &pool->base, &count) != 0) {
		log_error("net: slot_cidr '%s' is not an IPv4 CIDR between /8 and /30",
			  config->slot_cidr);
		goto err;
	}
	pool->capacity = config->max_slots && config->max_slots < count ? config->max_slots : count;
	pool->nameserver = config->nameserver;
	pool->resolver = config->resolver;
	pool->resolver_port = config->resolver_port ? config->resolver_port : 53;
	pool->proxy_http_port = config->proxy_http_port;
	pool->proxy_tls_port = config->proxy_tls_port;
	snprintf(pool->host_table, sizeof(pool->host_table), "warren_host_%s", pool->link_prefix);
	pool->slots = calloc(pool->capacity, sizeof(*pool->slots));
	if (!pool->slots)
		goto err;
	for (unsigned i = 0; i < pool->capacity; i++) {
		pool->slots[i].netns_fd = -1;
		pthread_mutex_init(&pool->slots[i].nft_lock, NULL);
	}
	pool->host_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (pool->host_fd < 0 || netns_run_dir_ready() != 0) {
		log_error("net: cannot prepare %s: %s", NETNS_RUN_DIR, strerror(errno));
		goto err;
	}
	if (never_allow_build(pool, config->never_allow) != 0)
		goto err;
	pool->egress_max = config->egress_max_connections ? config->egress_max_connections : 16384;
	pool->egress_slot_max =
	    config->egress_slot_max_connections ? config->egress_slot_max_connections : 1024;
	pool->egress_idle_s = config->egress_idle_timeout_s ? config->egress_idle_timeout_s : 300;
	reap_namespaces(pool);
	netns__run(pool->host_fd, host_reap_links, pool);
	if (netns__run(pool->host_fd, host_setup, &host) != 0) {
		log_error("net: host forwarding table could not be installed");
		goto err;
	}
	if (egress__start(pool) != 0)
		goto err;
	for (unsigned i = 0; i < config->precreate && i < pool->capacity; i++)
		if (net_pool__create_slot(pool) < 0)
			goto err;
	log_info("net: slot pool ready (%u slots precreated, cidr %s, proxy ports %u/%u)",
		 config->precreate, pool->slot_cidr, pool->proxy_http_port, pool->proxy_tls_port);
	return pool;
err:
	net_pool__free(pool);
	return NULL;
}

void net_pool__free(struct net_pool *pool)
{
	struct host_setup_op host = {.pool = pool, .remove = true};
	bool proxy_stopped;

	if (!pool)
		return;
	proxy_stopped = egress__stop(pool);
	if (pool->slots) {
		for (unsigned i = 0; i < pool->capacity; i++)
			if (pool->slots[i].exists)
				net_pool__destroy_slot(pool, (int)i);
	}
	if (pool->host_fd >= 0) {
		netns__run(pool->host_fd, host_setup, &host);
		close(pool->host_fd);
	}
	if (!proxy_stopped)
		return; /* a proxy thread still holds the pool: leak it, never free under it */
	if (pool->slots)
		for (unsigned i = 0; i < pool->capacity; i++)
			pthread_mutex_destroy(&pool->slots[i].nft_lock);
	free(pool->slots);
	free(pool->netns_prefix);
	free(pool->link_prefix);
	free(pool->slot_cidr);
	free(pool->uplink_interface);
	free(pool->never);
	pthread_mutex_destroy(&pool->host_nft_lock);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

void net_pool__stats(struct net_pool *pool, struct net_pool_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&pool->lock);
	out->capacity = pool->capacity;
	for (unsigned i = 0; i < pool->capacity; i++) {
		out->existing += pool->slots[i].exists;
		out->in_use += pool->slots[i].in_use;
	}
	pthread_mutex_unlock(&pool->lock);
	out->proxy_connections = atomic_load(&pool->proxy_active);
}
