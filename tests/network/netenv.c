/* netenv: see netenv.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "netenv.h"

struct netenv netenv;
static bool netenv_created;
static int original_netns_fd = -1;

static int vrun(char *out, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static int vrun(char *out, size_t size, const char *fmt, va_list ap)
{
	char *command = NULL;
	FILE *pipe;
	size_t used = 0;
	int status;

	if (vasprintf(&command, fmt, ap) < 0)
		return -1;
	pipe = popen(command, "r");
	free(command);
	if (!pipe)
		return -1;
	for (;;) {
		char buffer[4096];
		size_t n = fread(buffer, 1, sizeof(buffer), pipe);

		if (n == 0)
			break;
		if (out && used + 1 < size) {
			size_t room = size - 1 - used;

			memcpy(out + used, buffer, n < room ? n : room);
			used += n < room ? n : room;
		}
	}
	if (out && size)
		out[used] = 0;
	status = pclose(pipe);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int netenv__sh(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vrun(NULL, 0, fmt, ap);
	va_end(ap);
	return rc;
}

int netenv__capture(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vrun(out, size, fmt, ap);
	va_end(ap);
	return rc;
}

static const char *script(void)
{
	static char path[512];
	const char *source = getenv("WARREN_SOURCE_DIR");

	snprintf(path, sizeof(path), "%s/tests/network/netenv.sh", source ? source : ".");
	return path;
}

void netenv__down(void)
{
	if (!netenv_created)
		return;
	netenv_created = false;
	net_pool__free(netenv.pool);
	netenv.pool = NULL;
	/* Leave the host namespace first: "down" kills what runs in it. */
	if (original_netns_fd >= 0 && setns(original_netns_fd, CLONE_NEWNET) != 0)
		perror("netenv: setns back");
	netenv__sh("%s down %s >/dev/null 2>&1", script(), netenv.prefix);
	netenv__sh("rm -rf %s", netenv.dir);
}

static void on_signal(int signal_number)
{
	netenv__down();
	_exit(128 + signal_number);
}

static bool have(const char *tool)
{
	return netenv__sh("command -v %s >/dev/null 2>&1", tool) == 0;
}

int netenv__up(unsigned precreate)
{
	const char *tools[] = {"ip", "dnsmasq", "python3", "curl", "openssl", "conntrack"};
	int host_fd;

	if (geteuid() != 0) {
		printf("SKIP: network tests need root (namespaces, nftables)\n");
		return 77;
	}
	if (access("/dev/net/tun", R_OK | W_OK) != 0) {
		printf("SKIP: /dev/net/tun is missing\n");
		return 77;
	}
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		if (!have(tools[i])) {
			printf("SKIP: %s is not installed\n", tools[i]);
			return 77;
		}
	}
	/* The cleanup is registered before anything is created. */
	atexit(netenv__down);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGSEGV, on_signal);
	signal(SIGABRT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	netenv__sh("%s reap >/dev/null 2>&1", script());

	snprintf(netenv.prefix, sizeof(netenv.prefix), "wn%d", (int)getpid());
	snprintf(netenv.dir, sizeof(netenv.dir), "/tmp/%s", netenv.prefix);
	snprintf(netenv.host_ns, sizeof(netenv.host_ns), "%shost", netenv.prefix);
	snprintf(netenv.inet_ns, sizeof(netenv.inet_ns), "%sinet", netenv.prefix);
	netenv_created = true;
	if (netenv__sh("%s up %s %s", script(), netenv.prefix, netenv.dir) != 0) {
		fprintf(stderr, "netenv: the fake internet could not be set up\n");
		return -1;
	}
	/* From here on the whole process lives in the test host namespace:
	 * its only route leads to the fake internet. */
	{
		char path[96];

		snprintf(path, sizeof(path), "/run/netns/%s", netenv.host_ns);
		original_netns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		host_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (host_fd < 0 || setns(host_fd, CLONE_NEWNET) != 0) {
			perror("netenv: setns host");
			return -1;
		}
		close(host_fd);
	}
	{
		static char netns_prefix[32], uplink[32];

		snprintf(netns_prefix, sizeof(netns_prefix), "%ss", netenv.prefix);
		snprintf(uplink, sizeof(uplink), "u0%s", netenv.prefix);
		memset(&netenv.config, 0, sizeof(netenv.config));
		netenv.config.netns_prefix = netns_prefix;
		netenv.config.link_prefix = netenv.prefix;
		netenv.config.slot_cidr = "10.11.0.0/16";
		netenv.config.uplink_interface = uplink;
		inet_pton(AF_INET, "192.0.2.53", &netenv.config.nameserver);
		inet_pton(AF_INET, "192.0.2.53", &netenv.config.resolver);
		netenv.config.resolver_port = 53;
		netenv.config.proxy_http_port = 3128;
		netenv.config.proxy_tls_port = 3129;
		netenv.config.precreate = precreate;
		netenv.config.max_slots = 64;
	}
	netenv.pool = net_pool__new(&netenv.config);
	if (!netenv.pool) {
		fprintf(stderr, "netenv: net_pool__new failed\n");
		return -1;
	}
	return 0;
}

struct connect_op {
	struct sockaddr_in to;
	int fd;
};

static int connect_inside(void *arg)
{
	struct connect_op *op = arg;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int error = 0;
	socklen_t len = sizeof(error);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&op->to, sizeof(op->to)) != 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};

		if (errno != EINPROGRESS) {
			error = errno;
		} else if (poll(&p, 1, 2000) != 1) {
			error = ETIMEDOUT;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) {
			error = errno;
		}
	}
	if (error) {
		close(fd);
		return -error;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	op->fd = fd;
	return 0;
}

int netenv__connect_from(const char *netns_path, const char *address, unsigned port)
{
	struct connect_op op = {.to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)},
				.fd = -1};
	int ns = open(netns_path, O_RDONLY | O_CLOEXEC), rc;

	if (ns < 0)
		return -errno;
	inet_pton(AF_INET, address, &op.to.sin_addr);
	rc = netns__run(ns, connect_inside, &op);
	close(ns);
	return rc < 0 ? rc : op.fd;
}
