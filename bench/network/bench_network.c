/* bench_network: slot set-up/tear-down times (pre-created vs on demand)
 * and the egress proxy against a direct connection in the same
 * namespaces (docs/network.md). Runs inside the tests' netenv (root,
 * namespaces only, no route out). Usage: bench_network [cycles] [seconds]
 * [rounds] [client counts, default 1,4,64] with WARREN_SOURCE_DIR pointing
 * at the source tree: each egress figure is the median of rounds runs of
 * seconds, direct, proxied and (where nginx is installed) through nginx
 * alternating, so that the machine's drifts hit all alike. nginx is the
 * peer: a terminating HTTP proxy (proxy_pass, no buffering, no
 * keep-alive) in the fake internet, between a direct client and the same
 * upstream, so that its two TCP legs cost what the egress proxy's do. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netenv.h"

#include "../samples.h"

#define UPSTREAM	"198.51.100.20" /* bench.test in the fake internet's DNS */
#define DIRECT_UPSTREAM "198.51.100.21" /* the same server, another address */
#define NGINX_ADDRESS	"198.51.100.22" /* the peer proxy, in the fake internet */
#define NGINX_UPSTREAM	"198.51.100.23" /* the same server, for the peer's dials */
#define LISTENERS	3
#define NGINX_WORKERS	2 /* as many as the egress proxy has event loops */
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
 * "GET /stream" -> STREAM_BYTES of zeros; anything else -> "ok", each
 * as an HTTP response closed by the server (no keep-alive).
 *
 * The proxied, the direct and the peer's clients dial the server on three
 * addresses. The first two leave the host from its one uplink address
 * (the proxy's own connections, the direct slot's masqueraded), and each
 * kernel clock stamps TCP timestamps with its own offset per address
 * pair: on one address the server's TIME_WAIT entries of one kind then
 * refuse the other kind's SYNs on a reused port (PAWS, RFC 7323 section
 * 5), a 1 s SYN retransmission each, which measured the sharing, not the
 * proxy. */

static int listen_fds[LISTENERS] = {-1, -1, -1};

static int open_listener(void *arg)
{
	const char *addresses[LISTENERS] = {UPSTREAM, DIRECT_UPSTREAM, NGINX_UPSTREAM};
	int one = 1;

	(void)arg;
	for (int i = 0; i < LISTENERS; i++) {
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
		char response_head[128];
		int len = snprintf(response_head, sizeof(response_head),
				   "HTTP/1.1 200 OK\r\nContent-Length: %u\r\nConnection: "
				   "close\r\n\r\n",
				   STREAM_BYTES);

		if (send(fd, response_head, (size_t)len, MSG_NOSIGNAL) != len)
			goto out;
		for (size_t sent = 0; sent < STREAM_BYTES;) {
			ssize_t n = send(fd, zeros, sizeof(zeros), MSG_NOSIGNAL);

			if (n <= 0)
				break;
			sent += (size_t)n;
		}
	} else {
		static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: "
					 "close\r\n\r\nok\n";

		send(fd, ok, sizeof(ok) - 1, MSG_NOSIGNAL);
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

/* ---- the peer: nginx in the fake internet -------------------------------
 * A terminating HTTP proxy as common as any, placed where a direct
 * client reaches it: NGINX_ADDRESS:80 -> NGINX_UPSTREAM:80. Its master is
 * the child started here (ip netns exec execs nginx); netenv__down kills
 * whatever still runs in the namespace. */

static pid_t nginx_pid = -1;
static char nginx_dir[] = "/tmp/bench-network-nginx-XXXXXX"; /* its prefix */
static bool nginx_dir_made;

/* Writes nginx's configuration into a new folder (nginx_dir); its path
 * into conf. False when the folder cannot be made. */
static bool nginx__configure(int workers, char *conf, size_t size)
{
	const char *dir = nginx_dir;
	FILE *file;

	if (!mkdtemp(nginx_dir))
		return false;
	nginx_dir_made = true;
	if (chmod(dir, 0755) != 0) /* workers may run as nobody */
		return false;
	snprintf(conf, size, "%s/nginx.conf", dir);
	file = fopen(conf, "w");
	if (!file)
		return false;
	fprintf(file,
		"daemon off; worker_processes %d; pid %s/nginx.pid; error_log %s/error.log warn;\n"
		"events { worker_connections 4096; }\n"
		"http { access_log off; keepalive_timeout 0;\n"
		"  server { listen %s:80;\n"
		"    location / { proxy_pass http://%s; proxy_buffering off;\n"
		"      proxy_buffer_size 64k; proxy_buffers 4 64k; } } }\n",
		workers, dir, dir, NGINX_ADDRESS, NGINX_UPSTREAM);
	return fclose(file) == 0;
}

/* Stops nginx, if started, and removes its folder. */
static void nginx__stop(void)
{
	if (nginx_pid > 0) {
		kill(nginx_pid, SIGTERM);
		waitpid(nginx_pid, NULL, 0);
		nginx_pid = -1;
	}
	if (nginx_dir_made)
		netenv__sh("rm -rf %s", nginx_dir);
	nginx_dir_made = false;
}

/* Starts nginx (workers worker processes) and waits until the slot at
 * netns_path reaches it. False, with the reason printed, when nginx is
 * not installed or does not come up: the bench then goes on without it. */
static bool nginx__start(int workers, const char *netns_path)
{
	char conf[96];

	if (netenv__sh("command -v nginx >/dev/null") != 0) {
		printf("  (nginx is not installed: no peer figures)\n");
		return false;
	}
	if (!nginx__configure(workers, conf, sizeof(conf))) {
		printf("  (nginx's configuration could not be written: no peer figures)\n");
		nginx__stop();
		return false;
	}
	nginx_pid = fork();
	if (nginx_pid == 0) {
		execlp("ip", "ip", "netns", "exec", netenv.inet_ns, "nginx", "-p", nginx_dir, "-e",
		       "stderr", "-c", conf, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; nginx_pid > 0 && i < 50; i++) {
		int fd = netenv__connect_from(netns_path, NGINX_ADDRESS, 80);

		if (fd >= 0) {
			close(fd);
			return true;
		}
		usleep(100 * 1000);
	}
	printf("  (nginx did not come up: no peer figures)\n");
	nginx__stop();
	return false;
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

/* One figure: direct, proxied and their ratio; nginx's and its ratio
 * when there is a peer (peer >= 0). */
static void print_row(const char *what, const char *unit, double direct, double proxied,
		      double peer)
{
	printf("  %-10s direct %6.0f %s  proxied %6.0f (%.2fx)", what, direct, unit, proxied,
	       proxied / direct);
	if (peer >= 0)
		printf("  nginx %6.0f (%.2fx)", peer, peer / direct);
	printf("\n");
}

/* The egress figures for each client count: rounds of direct, proxied
 * and (with a peer) nginx runs of seconds each, alternating; medians. */
static void egress__compare(const struct net_slot_info *direct_slot,
			    const struct net_slot_info *proxy_slot, bool peer,
			    const int *client_counts, int steps, double seconds, int rounds)
{
	/* Who dials what: the proxied client dials a denied address (the
	 * proxy resolves bench.test itself); nginx is reached directly. */
	const struct net_slot_info *slots[3] = {direct_slot, proxy_slot, direct_slot};
	const char *targets[3] = {DIRECT_UPSTREAM, "203.0.113.10", NGINX_ADDRESS};
	int paths = peer ? 3 : 2;

	for (int step = 0; step < steps; step++) {
		int clients = client_counts[step];
		double rates[2][3][ROUNDS_MAX]; /* [conn/s, MB/s][direct, proxied, nginx] */
		uint64_t failures[3] = {0, 0, 0};
		char what[32];

		for (int round = 0; round < rounds; round++) {
			for (int stream = 0; stream < 2; stream++) {
				for (int path = 0; path < paths; path++) {
					struct client_job job = run_clients(
					    slots[path], targets[path], stream, seconds, clients);

					rates[stream][path][round] = rate_of(&job, stream);
					failures[path] += job.failures;
				}
			}
		}
		snprintf(what, sizeof(what), "%d client%s", clients, clients > 1 ? "s" : "");
		for (int stream = 0; stream < 2; stream++)
			print_row(what, stream ? "MB/s  " : "conn/s",
				  samples__median(rates[stream][0], rounds),
				  samples__median(rates[stream][1], rounds),
				  peer ? samples__median(rates[stream][2], rounds) : -1);
		if (failures[0] || failures[1] || failures[2])
			printf("  (failures: direct %llu, proxied %llu, nginx %llu)\n",
			       (unsigned long long)failures[0], (unsigned long long)failures[1],
			       (unsigned long long)failures[2]);
	}
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
	int client_counts[8] = {1, 4, 64}, steps = 3;
	double *acquire_times, *release_times, *create_times, *destroy_times;
	struct net_policy *domains =
	    policy_from("{\"allowOut\":[\"bench.test\"],\"denyOut\":[\"ALL_TRAFFIC\"]}");
	struct net_slot_info direct_slot, proxy_slot;
	pthread_t upstream;
	int rc, inet_fd;
	bool peer;
	char path[96];

	if (cycles < 2)
		cycles = 2;
	if (rounds < 1 || rounds > ROUNDS_MAX)
		rounds = 3;
	if (argc > 4) { /* "4" or "1,4,64": each between 1 and 64 */
		char *next = argv[4];

		for (steps = 0; steps < 8 && *next;) {
			long clients = strtol(next, &next, 10);

			if (clients < 1 || clients > 64 || (*next && *next != ',')) {
				fprintf(stderr, "bench: client counts: 1..64, comma-separated\n");
				return 2;
			}
			client_counts[steps++] = (int)clients;
			next += *next == ',';
		}
	}
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

	/* Proxy vs direct (vs nginx), same namespaces, same upstream. */
	snprintf(path, sizeof(path), "/run/netns/%s", netenv.inet_ns);
	inet_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (inet_fd < 0 ||
	    netenv__sh("ip -n %s addr add %s/32 dev lo && ip -n %s addr add %s/32 dev lo && "
		       "ip -n %s addr add %s/32 dev lo",
		       netenv.inet_ns, DIRECT_UPSTREAM, netenv.inet_ns, NGINX_ADDRESS,
		       netenv.inet_ns, NGINX_UPSTREAM) != 0 ||
	    netns__run(inet_fd, open_listener, NULL) != 0) {
		fprintf(stderr, "bench: upstream server could not listen\n");
		return 1;
	}
	for (intptr_t i = 0; i < LISTENERS; i++) {
		pthread_create(&upstream, NULL, upstream_thread, (void *)i);
		pthread_detach(upstream);
	}
	if (net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, NULL, &direct_slot) < 0 ||
	    net_pool__acquire(netenv.pool, NET_RUNTIME_JAIL, domains, &proxy_slot) < 0)
		return 1;
	printf("egress, HTTP/1.1 to a C upstream in the fake internet: direct, through the "
	       "egress proxy and through nginx (median of %d alternating rounds; x: of "
	       "direct):\n",
	       rounds);
	peer = nginx__start(NGINX_WORKERS, direct_slot.netns_path);
	egress__compare(&direct_slot, &proxy_slot, peer, client_counts, steps, seconds, rounds);
	nginx__stop();
	printf("  (conn/s: one request per connection; MB/s: %u MiB downloads; nginx: %d "
	       "workers, proxy_pass without buffering)\n",
	       STREAM_BYTES >> 20, NGINX_WORKERS);
	net_policy__free(domains);
	for (int i = 0; i < LISTENERS; i++)
		close(listen_fds[i]);
	netenv__down();
	return 0;
}
