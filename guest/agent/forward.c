/* forward: loopback listeners made reachable at the sandbox address, see
 * forward.h. Everything runs on one thread around one epoll: listening
 * sockets (one per port and address), and per relayed connection its two
 * sockets with one bounded buffer per direction (a full buffer stops
 * reading that side: back-pressure). Connections that end during a batch
 * of events are freed after it (later events of the batch may name them). */
#include "forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "listeners.h"
#include "process.h"
#include "warren/clock.h"
#include "warren/log.h"

#define MAX_LISTENERS_READ 65536 /* listeners looked at */

enum handle_kind { HANDLE_LISTENER, HANDLE_CLIENT, HANDLE_SERVER, HANDLE_WAKE };

/* What an epoll event's data.ptr points to. */
struct handle {
	enum handle_kind kind;
	void *owner; /* struct forward or struct connection */
};

struct forward {
	struct forward *next;
	uint16_t port;
	struct sockaddr_storage target; /* the loopback listener */
	socklen_t target_len;
	int count;
	int fds[FORWARD_MAX_ADDRESSES];
	struct in_addr addresses[FORWARD_MAX_ADDRESSES];
	unsigned long inodes[FORWARD_MAX_ADDRESSES];
	struct handle handles[FORWARD_MAX_ADDRESSES];
	bool seen; /* still wanted by the current scan */
};

struct direction {
	uint8_t buf[FORWARD_RELAY_BUFFER];
	size_t len, off;
	bool eof, shut;
};

struct connection {
	struct connection *next;
	int client_fd, server_fd;
	bool connecting, dead;
	struct direction up;   /* client -> loopback server */
	struct direction down; /* loopback server -> client */
	struct handle client_handle, server_handle;
};

static int epoll_fd = -1;
static int wake_fd = -1;		  /* forward__activity -> the thread */
static _Atomic long long active_until_ms; /* fast scans until then */
static long active_window_ms = FORWARD_ACTIVE_MS;
static uint16_t own_port;
static struct forward *forwards;
static size_t forward_count;
static struct connection *connections;
static size_t connection_count;

/* --- relaying --- */

static void connection_close(struct connection *connection)
{
	if (connection->dead)
		return;
	connection->dead = true;
	epoll_ctl(epoll_fd, EPOLL_CTL_DEL, connection->client_fd, NULL);
	epoll_ctl(epoll_fd, EPOLL_CTL_DEL, connection->server_fd, NULL);
	close(connection->client_fd);
	close(connection->server_fd);
}

/* Moves what it can one way: reads `from` when the buffer is empty,
 * writes the buffer to `to`, passes the end on. True when anything moved. */
static bool direction_pump(struct connection *connection, struct direction *direction, int from,
			   int to)
{
	bool progress = false;
	ssize_t n;

	if (direction->len == 0 && !direction->eof) {
		n = recv(from, direction->buf, sizeof(direction->buf), 0);
		if (n > 0) {
			direction->len = (size_t)n;
			direction->off = 0;
			progress = true;
		} else if (n == 0) {
			direction->eof = progress = true;
		} else if (errno != EAGAIN && errno != EINTR) {
			connection_close(connection);
			return false;
		}
	}
	if (direction->len > direction->off) {
		n = send(to, direction->buf + direction->off, direction->len - direction->off,
			 MSG_NOSIGNAL);
		if (n > 0) {
			direction->off += (size_t)n;
			if (direction->off == direction->len)
				direction->len = direction->off = 0;
			progress = true;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			connection_close(connection);
			return false;
		}
	}
	if (direction->eof && direction->len == 0 && !direction->shut) {
		shutdown(to, SHUT_WR);
		direction->shut = progress = true;
	}
	return progress;
}

/* Each socket's interest from the buffers' state. */
static void connection_watch(struct connection *connection)
{
	struct epoll_event client = {.data.ptr = &connection->client_handle};
	struct epoll_event server = {.data.ptr = &connection->server_handle};

	if (connection->up.len == 0 && !connection->up.eof)
		client.events |= EPOLLIN;
	if (connection->down.len > 0)
		client.events |= EPOLLOUT;
	if (connection->connecting) {
		server.events = EPOLLOUT;
	} else {
		if (connection->down.len == 0 && !connection->down.eof)
			server.events |= EPOLLIN;
		if (connection->up.len > 0)
			server.events |= EPOLLOUT;
	}
	epoll_ctl(epoll_fd, EPOLL_CTL_MOD, connection->client_fd, &client);
	epoll_ctl(epoll_fd, EPOLL_CTL_MOD, connection->server_fd, &server);
}

/* An event on one of a connection's sockets. */
static void connection_event(struct connection *connection, bool server_side, uint32_t events)
{
	bool progress, any = false;
	int error = 0;
	socklen_t len = sizeof(error);

	if (connection->dead)
		return;
	if (server_side && connection->connecting) {
		if (getsockopt(connection->server_fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0 ||
		    error) {
			connection_close(connection); /* the loopback server refused */
			return;
		}
		connection->connecting = false;
	}
	do {
		progress = direction_pump(connection, &connection->up, connection->client_fd,
					  connection->server_fd);
		if (!connection->dead && !connection->connecting)
			progress |= direction_pump(connection, &connection->down,
						   connection->server_fd, connection->client_fd);
		any |= progress;
	} while (progress && !connection->dead);
	if (connection->dead)
		return;
	/* Both ways ended; or an error or hang-up nothing can be done about. */
	if ((connection->up.shut && connection->down.shut) || (events & EPOLLERR) ||
	    ((events & EPOLLHUP) && !any)) {
		connection_close(connection);
		return;
	}
	connection_watch(connection);
}

static bool register_fd(int fd, struct handle *handle, uint32_t events)
{
	struct epoll_event event = {.events = events, .data.ptr = handle};

	return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

/* A client accepted on forward's listener: connects to the loopback
 * listener and relays. */
static void connection_open(struct forward *forward, int client_fd)
{
	struct connection *connection = NULL;
	int server_fd;

	if (connection_count >= FORWARD_MAX_CONNECTIONS) {
		close(client_fd);
		return;
	}
	server_fd =
	    socket(forward->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (server_fd < 0 || !(connection = calloc(1, sizeof(*connection))))
		goto fail;
	connection->client_fd = client_fd;
	connection->server_fd = server_fd;
	connection->client_handle = (struct handle){HANDLE_CLIENT, connection};
	connection->server_handle = (struct handle){HANDLE_SERVER, connection};
	if (connect(server_fd, (struct sockaddr *)&forward->target, forward->target_len) < 0) {
		if (errno != EINPROGRESS)
			goto fail;
		connection->connecting = true;
	}
	if (!register_fd(client_fd, &connection->client_handle, EPOLLIN))
		goto fail;
	if (!register_fd(server_fd, &connection->server_handle,
			 connection->connecting ? EPOLLOUT : EPOLLIN)) {
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, client_fd, NULL);
		goto fail;
	}
	connection->next = connections;
	connections = connection;
	connection_count++;
	return;
fail:
	free(connection);
	if (server_fd >= 0)
		close(server_fd);
	close(client_fd);
}

static void listener_event(struct forward *forward, int fd)
{
	int client_fd, accepted;

	for (accepted = 0; accepted < 64; accepted++) {
		client_fd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (client_fd < 0)
			return;
		connection_open(forward, client_fd);
	}
}

/* Frees the connections closed during the last batch of events. */
static void connections_reap(void)
{
	struct connection **link = &connections, *connection;

	while ((connection = *link)) {
		if (!connection->dead) {
			link = &connection->next;
			continue;
		}
		*link = connection->next;
		connection_count--;
		free(connection);
	}
}

/* --- which ports to forward --- */

/* Appends one listener to list; false when it cannot grow. */
static bool listeners_append(struct tcp_listener **list, size_t *count, size_t *cap,
			     const struct tcp_listener *listener)
{
	struct tcp_listener *grown;

	if (*count >= MAX_LISTENERS_READ)
		return false;
	if (*count == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		grown = realloc(*list, *cap * sizeof(**list));
		if (!grown)
			return false;
		*list = grown;
	}
	(*list)[(*count)++] = *listener;
	return true;
}

/* The LISTEN sockets of family (AF_INET, AF_INET6) through the kernel's
 * sock_diag netlink dump with only the LISTEN state asked for: the kernel
 * then walks its listening hash alone. Reading /proc/net/tcp walks the
 * whole established hash, which is global to the host (sized by its
 * memory) and only filtered by namespace: about a millisecond per read on
 * a 24 GiB host, paid every second by every sandbox. Returns false when
 * sock_diag is unavailable (a guest kernel built without INET_DIAG): the
 * caller reads /proc instead. */
static bool diag_listeners(int family, struct tcp_listener **list, size_t *count, size_t *cap)
{
	struct {
		struct nlmsghdr header;
		struct inet_diag_req_v2 request;
	} query = {
	    .header = {.nlmsg_len = sizeof(query),
		       .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
		       .nlmsg_seq = 1},
	    .request = {.sdiag_family = (uint8_t)family,
			.sdiag_protocol = IPPROTO_TCP,
			.idiag_states = 1u << 10 /* TCP_LISTEN */},
	};
	static char buffer[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	bool done = false, ok = false;
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

	if (fd < 0)
		return false;
	if (send(fd, &query, sizeof(query), 0) != (ssize_t)sizeof(query))
		goto out;
	while (!done) {
		ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
		struct nlmsghdr *header = (struct nlmsghdr *)buffer;

		if (n <= 0)
			goto out;
		for (; NLMSG_OK(header, (size_t)n); header = NLMSG_NEXT(header, n)) {
			const struct inet_diag_msg *msg = NLMSG_DATA(header);
			struct tcp_listener listener = {.family = family};

			if (header->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (header->nlmsg_type == NLMSG_ERROR)
				goto out;
			if (header->nlmsg_len < NLMSG_LENGTH(sizeof(*msg)) ||
			    msg->idiag_family != family || msg->idiag_state != 10)
				continue;
			listener.port = ntohs(msg->id.idiag_sport);
			listener.inode = msg->idiag_inode;
			if (family == AF_INET)
				listener.addr4.s_addr = msg->id.idiag_src[0];
			else
				memcpy(&listener.addr6, msg->id.idiag_src, sizeof(listener.addr6));
			if (!listeners_append(list, count, cap, &listener))
				break;
		}
	}
	ok = true;
out:
	close(fd);
	return ok;
}

/* The LISTEN sockets of one /proc/net file appended to list. */
static void read_listeners(const char *path, int family, struct tcp_listener **list, size_t *count,
			   size_t *cap)
{
	FILE *file = fopen(path, "re");
	char line[512];
	struct tcp_listener listener;

	if (!file)
		return;
	while (fgets(line, sizeof(line), file)) {
		if (!listeners__parse_line(line, family, &listener))
			continue;
		if (!listeners_append(list, count, cap, &listener))
			break;
	}
	fclose(file);
}

static bool is_own_listener(unsigned long inode)
{
	const struct forward *forward;
	int i;

	for (forward = forwards; forward; forward = forward->next)
		for (i = 0; i < forward->count; i++)
			if (forward->inodes[i] == inode)
				return true;
	return false;
}

/* True when port has a loopback listener and no other (ours aside): then
 * *target is where to relay (the first loopback listener seen). */
static bool port_wanted(const struct tcp_listener *list, size_t count, uint16_t port,
			const struct tcp_listener **target)
{
	size_t i;

	*target = NULL;
	for (i = 0; i < count; i++) {
		if (list[i].port != port || is_own_listener(list[i].inode))
			continue;
		if (!listeners__is_loopback(&list[i]))
			return false; /* reachable already, or someone else's */
		if (!*target)
			*target = &list[i];
	}
	return *target != NULL;
}

static struct forward *forward_find(uint16_t port)
{
	struct forward *forward;

	for (forward = forwards; forward; forward = forward->next)
		if (forward->port == port)
			return forward;
	return NULL;
}

static struct forward *forward_new(const struct tcp_listener *target)
{
	struct forward *forward = calloc(1, sizeof(*forward));
	struct sockaddr_in *in4 = (struct sockaddr_in *)&forward->target;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&forward->target;

	if (!forward)
		return NULL;
	forward->port = target->port;
	if (target->family == AF_INET) {
		*in4 = (struct sockaddr_in){.sin_family = AF_INET,
					    .sin_port = htons(target->port),
					    .sin_addr = target->addr4};
		forward->target_len = sizeof(*in4);
	} else {
		*in6 = (struct sockaddr_in6){.sin6_family = AF_INET6,
					     .sin6_port = htons(target->port),
					     .sin6_addr = target->addr6};
		forward->target_len = sizeof(*in6);
	}
	forward->next = forwards;
	forwards = forward;
	forward_count++;
	log_info("forwarding port %u to its loopback listener", target->port);
	return forward;
}

static void forward_free(struct forward *forward)
{
	int i;

	for (i = 0; i < forward->count; i++) {
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, forward->fds[i], NULL);
		close(forward->fds[i]);
	}
	log_info("port %u: loopback listener gone, forward stopped", forward->port);
	free(forward);
}

/* Listens on forward's port at address unless it does already. */
static void forward_bind(struct forward *forward, struct in_addr address)
{
	struct sockaddr_in bind_to = {
	    .sin_family = AF_INET, .sin_port = htons(forward->port), .sin_addr = address};
	struct stat st;
	int fd, one = 1, i;

	for (i = 0; i < forward->count; i++)
		if (forward->addresses[i].s_addr == address.s_addr)
			return;
	if (forward->count == FORWARD_MAX_ADDRESSES)
		return;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	i = forward->count;
	forward->handles[i] = (struct handle){HANDLE_LISTENER, forward};
	if (bind(fd, (struct sockaddr *)&bind_to, sizeof(bind_to)) < 0 || listen(fd, 128) < 0 ||
	    fstat(fd, &st) < 0 || !register_fd(fd, &forward->handles[i], EPOLLIN)) {
		close(fd); /* taken at that address: tried again at the next scan */
		return;
	}
	forward->fds[i] = fd;
	forward->addresses[i] = address;
	forward->inodes[i] = (unsigned long)st.st_ino;
	forward->count++;
}

/* The namespace's non-loopback IPv4 addresses (interfaces up). */
static int own_addresses(struct in_addr *out, int max)
{
	struct ifaddrs *list, *entry;
	int count = 0;

	if (getifaddrs(&list) < 0)
		return 0;
	for (entry = list; entry && count < max; entry = entry->ifa_next) {
		if (!entry->ifa_addr || entry->ifa_addr->sa_family != AF_INET ||
		    (entry->ifa_flags & IFF_LOOPBACK) || !(entry->ifa_flags & IFF_UP))
			continue;
		out[count++] = ((struct sockaddr_in *)entry->ifa_addr)->sin_addr;
	}
	freeifaddrs(list);
	return count;
}

/* One scan: forwards for new loopback-only ports, none for those gone. */
static void forward_scan(void)
{
	struct tcp_listener *list = NULL;
	const struct tcp_listener *target;
	struct in_addr addresses[FORWARD_MAX_ADDRESSES];
	struct forward *forward, **link;
	size_t count = 0, cap = 0, i;
	int address_count = -1, a; /* looked up once a forward needs them */

	if (!diag_listeners(AF_INET, &list, &count, &cap) ||
	    !diag_listeners(AF_INET6, &list, &count, &cap)) {
		count = 0;
		read_listeners("/proc/net/tcp", AF_INET, &list, &count, &cap);
		read_listeners("/proc/net/tcp6", AF_INET6, &list, &count, &cap);
	}
	for (forward = forwards; forward; forward = forward->next)
		forward->seen = false;
	for (i = 0; i < count; i++) {
		if (list[i].port == own_port || !listeners__is_loopback(&list[i]))
			continue;
		forward = forward_find(list[i].port);
		if (forward && forward->seen)
			continue;
		if (!port_wanted(list, count, list[i].port, &target))
			continue;
		if (!forward && forward_count < FORWARD_MAX_PORTS)
			forward = forward_new(target);
		if (forward)
			forward->seen = true;
	}
	for (link = &forwards; (forward = *link);) {
		if (!forward->seen) {
			*link = forward->next;
			forward_count--;
			forward_free(forward);
			continue;
		}
		if (address_count < 0)
			address_count = own_addresses(addresses, FORWARD_MAX_ADDRESSES);
		for (a = 0; a < address_count; a++)
			forward_bind(forward, addresses[a]);
		link = &forward->next;
	}
	free(list);
}

/* The scan interval: a second while a process started through the agent
 * runs or one started within FORWARD_ACTIVE_MS, else FORWARD_IDLE_SCAN_MS.
 * Each scan is a sock_diag dump that walks the host's listening hash, so
 * on a host with many idle sandboxes the one-second scan of each was the
 * largest part of their idle cost (guest/agent/README.md). */
static long long scan_interval_ms(long long now)
{
	if (now < atomic_load(&active_until_ms) || process__running_count() > 0)
		return FORWARD_SCAN_MS;
	return FORWARD_IDLE_SCAN_MS;
}

void forward__activity(void)
{
	uint64_t one = 1;

	atomic_store(&active_until_ms, (long long)clock__monotonic_ms() + active_window_ms);
	if (wake_fd >= 0 && write(wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("forwarder: wake: %s", strerror(errno));
}

static void *forward_thread(void *unused)
{
	static struct handle wake_handle = {HANDLE_WAKE, NULL};
	struct epoll_event events[64], wake_event = {.events = EPOLLIN, .data.ptr = &wake_handle};
	struct handle *handle;
	long long next_scan = 0, now;
	uint64_t count;
	int n, i;

	(void)unused;
	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &wake_event))
		log_warn("forwarder: watching the wake-up: %s", strerror(errno));
	for (;;) {
		now = (long long)clock__monotonic_ms();
		if (now >= next_scan) {
			forward_scan();
			next_scan = now + scan_interval_ms(now);
		}
		n = epoll_wait(epoll_fd, events, 64, (int)(next_scan - now));
		if (n < 0 && errno != EINTR) {
			log_error("forwarder: epoll_wait: %s", strerror(errno));
			return NULL;
		}
		for (i = 0; i < n; i++) {
			handle = events[i].data.ptr;
			if (handle->kind == HANDLE_WAKE) {
				/* a start: the next scan within a second */
				if (read(wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
					log_warn("forwarder: wake: %s", strerror(errno));
				if (next_scan > (long long)clock__monotonic_ms() + FORWARD_SCAN_MS)
					next_scan =
					    (long long)clock__monotonic_ms() + FORWARD_SCAN_MS;
			} else if (handle->kind == HANDLE_LISTENER) {
				struct forward *forward = handle->owner;

				listener_event(forward, forward->fds[handle - forward->handles]);
			} else {
				connection_event(handle->owner, handle->kind == HANDLE_SERVER,
						 events[i].events);
			}
		}
		connections_reap();
	}
}

bool forward__start(uint16_t agent_port, long active_ms)
{
	pthread_attr_t attr;
	pthread_t thread;
	int result;

	own_port = agent_port;
	active_window_ms = active_ms;
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
		return false;
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (wake_fd < 0) {
		close(epoll_fd);
		epoll_fd = -1;
		return false;
	}
	/* the agent's start: its template's start command may open ports */
	atomic_store(&active_until_ms, (long long)clock__monotonic_ms() + active_window_ms);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	result = pthread_create(&thread, &attr, forward_thread, NULL);
	pthread_attr_destroy(&attr);
	if (result != 0) {
		close(wake_fd);
		wake_fd = -1;
		close(epoll_fd);
		epoll_fd = -1;
		return false;
	}
	return true;
}
