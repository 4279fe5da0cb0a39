/* bench_network: slot set-up/tear-down times (pre-created vs on demand)
 * and the egress proxy against a direct connection in the same
 * namespaces (docs/network.md). Runs inside the tests' netenv (root,
 * namespaces only, no route out). Usage: bench_network [cycles] [seconds]
 * [rounds] with WARREN_SOURCE_DIR pointing at the source tree: each
 * egress figure is the median of rounds runs of seconds, direct and
 * proxied alternating, so that the machine's drifts hit both alike. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netenv.h"

#include "../samples.h"

#define UPSTREAM	"198.51.100.20" /* bench.test in the fake internet's DNS */
#define DIRECT_UPSTREAM "198.51.100.21" /* the same server, another address */
#define STREAM_BYTES	(64u << 20)
#define ROUNDS_MAX	15

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *what, double *samples, int n)
{
	qsort(samples, (size_t)n, sizeof(*samples), samples__compare_double);
	printf("%-44s p50 %7.2f ms  p99 %7.2f ms  (n=%d)\n", what, samples[n / 2] * 1e3,
	       samples[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] * 1e3, n);
}

/* ---- upstream server in the fake internet (port 80 of UPSTREAM) ---------
 * "GET /stream" -> STREAM_BYTES of zeros; anything else -> "ok".
 *
 * The proxied and the direct clients dial the server on two addresses.
 * Both leave the host from its one uplink address (the proxy's own
 * connections, the direct slot's masqueraded), and each kernel clock
 * stamps TCP timestamps with its own offset per address pair: on one
 * address the server's TIME_WAIT entries of one kind then refuse the
 * other kind's SYNs on a reused port (PAWS, RFC 7323 section 5), a 1 s
 * SYN retransmission each, which measured the sharing, not the proxy. */

static int listen_fds[2] = {-1, -1};

static int open_listener(void *arg)
{
	const char *addresses[2] = {UPSTREAM, DIRECT_UPSTREAM};
	int one = 1;

	(void)arg;
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(80)};
		inet_pton(AF_INET, addresses[i], &address.sin_addr);
		listen_fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(listen_fds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(listen_fds[i], (struct sockaddr *)&address, sizeof(address)) != 0 ||
		    listen(listen_fds[i], 1024) != 0)
			return -errno;
	}
	return 0;
}

static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char head[4096];
	size_t used = 0;

	while (used < sizeof(head) - 1) {
		ssize_t n = recv(fd, head + used, sizeof(head) - 1 - used, 0);

		if (n <= 0)
			goto out;
		used += (size_t)n;
		head[used] = 0;
		if (strstr(head, "\r\n\r\n"))
			break;
	}
	if (strncmp(head, "GET /stream", 11) == 0) {
		static char zeros[1 << 16];

		for (size_t sent = 0; sent < STREAM_BYTES;) {
			ssize_t n = send(fd, zeros, sizeof(zeros), MSG_NOSIGNAL);

			if (n <= 0)
				break;
			sent += (size_t)n;
		}
	} else {
		send(fd, "ok\n", 3, MSG_NOSIGNAL);
	}
out:
	close(fd);
	return NULL;
}

static void *upstream_thread(void *arg)
{
	int listen_fd = listen_fds[(intptr_t)arg];

	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		pthread_t thread;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		if (pthread_create(&thread, NULL, serve_one, (void *)(intptr_t)fd) == 0)
			pthread_detach(thread);
		else
			close(fd);
	}
}

/* ---- clients, run inside a slot ----------------------------------------- */

struct client_job {
	const char *target; /* address the client dials */
	bool stream;
	double seconds;
	uint64_t connections, bytes, failures;
	double elapsed;
};

static int one_request(const struct client_job *job, uint64_t *bytes)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(80)};
	char buffer[1 << 16];
	const char *request = job->stream ? "GET /stream HTTP/1.1\r\nHost: bench.test\r\n\r\n"
					  : "GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n";
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t n;

	inet_pton(AF_INET, job->target, &to.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0 ||
	    send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0)
		*bytes += (uint64_t)n;
	close(fd);
	return 0;
}

static int client_inside(void *arg)
{
	struct client_job *job = arg;
	double start = now_s();

	do {
		uint64_t bytes = 0;

		if (one_request(job, &bytes) == 0 && bytes > 0) {
			job->connections++;
			job->bytes += bytes;
		} else {
			job->failures++;
		}
	} while (now_s() - start < job->seconds);
	job->elapsed = now_s() - start;
	return 0;
}

static struct client_job run_client(const struct net_slot_info *slot, const char *target,
				    bool stream, double seconds)
{
	struct client_job job = {.target = target, .stream = stream, .seconds = seconds};
	int ns = open(slot->netns_path, O_RDONLY | O_CLOEXEC);

	netns__run(ns, client_inside, &job);
	close(ns);
	return job;
}

struct parallel_job {
	const struct net_slot_info *slot;
	const char *target;
	bool stream;
	double seconds;
	struct client_job result;
};

static void *parallel_thread(void *arg)
{
	struct parallel_job *job = arg;

	job->result = run_client(job->slot, job->target, job->stream, job->seconds);
	return NULL;
}

/* n clients (64 at most) at once; connections and bytes summed, the longest elapsed. */
static struct client_job run_clients(const struct net_slot_info *slot, const char *target,
				     bool stream, double seconds, int n)
{
	struct parallel_job jobs[64];
	pthread_t threads[64];
	struct client_job sum = {.target = target, .stream = stream};

	for (int i = 0; i < n && i < 64; i++) {
		jobs[i] = (struct parallel_job){
		    .slot = slot, .target = target, .stream = stream, .seconds = seconds};
		pthread_create(&threads[i], NULL, parallel_thread, &jobs[i]);
	}
	for (int i = 0; i < n && i < 64; i++) {
		pthread_join(threads[i], NULL);
		sum.connections += jobs[i].result.connections;
		sum.bytes += jobs[i].result.bytes;
		sum.failures += jobs[i].result.failures;
		if (jobs[i].result.elapsed > sum.elapsed)
			sum.elapsed = jobs[i].result.elapsed;
	}
	return sum;
}

/* Connections per second, or MB per second for downloads. */
static double rate_of(const struct client_job *job, bool stream)
{
	return stream ? job->bytes / job->elapsed / 1e6 : job->connections / job->elapsed;
}

static void print_pair(const char *what, const char *unit, double direct, double proxied)
{
	printf("  %-10s direct %8.0f %s   proxied %8.0f %s   ratio %.2f\n", what, direct, unit,
	       proxied, unit, proxied / direct);
}

static struct net_policy *policy_from(const char *json)
{
	json_t *spec = json_loads(json, 0, NULL);
	struct net_policy *policy = net_policy__parse(spec, 0, NULL, 0);

	json_decref(spec);
	return policy;
}

int main(int argc, char **argv)
{
	int cycles = argc > 1 ? atoi(argv[1]) : 100;
	double seconds = argc > 2 ? atof(argv[2]) : 3.0;
	int rounds = argc > 3 ? atoi(argv[3]) : 3;
	double *acquire_times, *release_times, *create_times, *destroy_times;
	struct net_policy *domains =
	    policy_from("{\"allowOut\":[\"bench.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}");
	struct net_slot_info direct_slot, proxy_slot;
	pthread_t upstream;
	int rc, inet_fd;
	char path[96], command[160];

	if (cycles < 2)
		cycles = 2;
	if (rounds < 1 || rounds > ROUNDS_MAX)
		rounds = 3;
	rc = netenv__up(1);
	if (rc)
		return rc == 77 ? 0 : 1;
	acquire_times = calloc((size_t)cycles, sizeof(double));
	release_times = calloc((size_t)cycles, sizeof(double));
	create_times = calloc((size_t)cycles, sizeof(double));
	destroy_times = calloc((size_t)cycles, sizeof(double));

	/* Pre-created: acquire (tables) and release (quiesce, flush, reset). */
	for (int i = 0; i < cycles; i++) {
		struct net_slot_info slot;
		double t0 = now_s();
		int index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, domains, &slot);
		double t1 = now_s();

		if (index < 0)
			return 1;
		net_pool__release(netenv.pool, index);
		acquire_times[i] = t1 - t0;
		release_times[i] = now_s() - t1;
	}
	/* On demand: namespace, veth, tap0, addresses, route, then tables. */
	for (int i = 0; i < cycles; i++) {
		struct net_slot_info slot;
		double t0 = now_s(), t1;
		int held = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, domains,
					     &slot); /* the precreated one */
		int index;

		t0 = now_s();
		index = net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, domains, &slot);
		t1 = now_s();
		if (index < 0 || held < 0)
			return 1;
		net_pool__release(netenv.pool, index);
		net_pool__destroy_slot(netenv.pool, index);
		create_times[i] = t1 - t0;
		destroy_times[i] = now_s() - t1;
		net_pool__release(netenv.pool, held);
	}
	printf("slots (%d cycles, policy with a domain; jail runtime):\n", cycles);
	report("  acquire, pre-created slot", acquire_times, cycles);
	report("  release (quiesce, conntrack flush, reset)", release_times, cycles);
	report("  acquire, on demand (create + tables)", create_times, cycles);
	report("  release + destroy (on-demand slot)", destroy_times, cycles);
	free(acquire_times);
	free(release_times);
	free(create_times);
	free(destroy_times);

	/* Proxy vs direct, same namespaces, same upstream. */
	snprintf(path, sizeof(path), "/run/netns/%s", netenv.inet_ns);
	inet_fd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(command, sizeof(command), "ip -n %s addr add %s/32 dev lo", netenv.inet_ns,
		 DIRECT_UPSTREAM);
	if (inet_fd < 0 || system(command) != 0 || netns__run(inet_fd, open_listener, NULL) != 0) {
		fprintf(stderr, "bench: upstream server could not listen\n");
		return 1;
	}
	for (intptr_t i = 0; i < 2; i++) {
		pthread_create(&upstream, NULL, upstream_thread, (void *)i);
		pthread_detach(upstream);
	}
	if (net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, NULL, &direct_slot) < 0 ||
	    net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, domains, &proxy_slot) < 0)
		return 1;
	/* The proxied client dials a denied address: the proxy resolves
	 * bench.test itself. */
	printf("egress, HTTP/1.1 to a C upstream in the fake internet, direct vs through the "
	       "proxy (median of %d alternating rounds):\n",
	       rounds);
	for (size_t step = 0; step < 3; step++) {
		static const int client_counts[] = {1, 4, 64};
		int clients = client_counts[step];
		double rates[4][ROUNDS_MAX]; /* conn/s direct, proxied; MB/s direct, proxied */
		uint64_t failures[2] = {0, 0};
		char what[32];

		for (int round = 0; round < rounds; round++) {
			for (int stream = 0; stream < 2; stream++) {
				struct client_job direct = run_clients(
				    &direct_slot, DIRECT_UPSTREAM, stream, seconds, clients);
				struct client_job proxied = run_clients(&proxy_slot, "203.0.113.10",
									stream, seconds, clients);

				rates[stream * 2][round] = rate_of(&direct, stream);
				rates[stream * 2 + 1][round] = rate_of(&proxied, stream);
				failures[0] += direct.failures;
				failures[1] += proxied.failures;
			}
		}
		snprintf(what, sizeof(what), "%d client%s", clients, clients > 1 ? "s" : "");
		print_pair(what, "conn/s", samples__median(rates[0], rounds),
			   samples__median(rates[1], rounds));
		print_pair(what, "MB/s  ", samples__median(rates[2], rounds),
			   samples__median(rates[3], rounds));
		if (failures[0] || failures[1])
			printf("  (failures: direct %llu, proxied %llu)\n",
			       (unsigned long long)failures[0], (unsigned long long)failures[1]);
	}
	printf("  (conn/s: one request per connection; MB/s: %u MiB downloads)\n",
	       STREAM_BYTES >> 20);
	net_policy__free(domains);
	close(listen_fds[0]);
	close(listen_fds[1]);
	netenv__down();
	return 0;
}
