/* bench_proxy: requests/s and p99 latency of wrk through warren-proxy (the
 * traffic-token check on) and through nginx as a plain reverse proxy
 * (proxy_pass, its defaults), both in front of the same backend (nginx
 * serving a static file) on loopback; one run each with the same wrk
 * threads/connections; prints both and the ratio.
 *
 * Needs WARREN_PG_URL (scripts/dev-stack env): the sandbox row lives in a
 * throwaway database. Knobs: BENCH_SECONDS (10), BENCH_CONNECTIONS (64),
 * BENCH_WRK_THREADS (2), BENCH_PROXY_WORKERS (2: warren-proxy threads and
 * nginx worker_processes), BENCH_ROUNDS (1..9, default 1: rounds alternate
 * which runs first; the median ratio is printed). Run:
 * build-<you>/bin/bench_proxy */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage_test_db.h"
#include "warren/ids.h"
#include "warren/storage.h"
#include "warren/tokens.h"

#include "../samples.h"

#define SEED "bench-proxy-seed-0123456789"

static char tmpdir[] = "/tmp/warren-proxy-bench-XXXXXX";

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool wait_port(int port)
{
	for (int i = 0; i < 100; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));

		close(fd);
		if (rc == 0)
			return true;
		usleep(50000);
	}
	return false;
}

static bool write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (!f)
		return false;
	fputs(text, f);
	return fclose(f) == 0;
}

static pid_t spawn(char *const argv[], char *const env[])
{
	pid_t pid = fork();

	if (pid == 0) {
		for (int i = 0; env && env[i]; i++)
			putenv(env[i]);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static void stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (int i = 0; i < 60 && waitpid(pid, NULL, WNOHANG) == 0; i++)
		usleep(50000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* wrk's latency text ("812.00us", "3.21ms", "1.02s") in ms. */
static double parse_latency_ms(const char *text)
{
	char *end;
	double value = strtod(text, &end);

	if (strncmp(end, "us", 2) == 0)
		return value / 1000.0;
	if (strncmp(end, "ms", 2) == 0)
		return value;
	if (*end == 's')
		return value * 1000.0;
	if (strncmp(end, "m", 1) == 0)
		return value * 60000.0;
	return -1;
}

struct result {
	double requests_per_s, p99_ms;
	long errors;		   /* non-2xx + socket errors */
	long requests;		   /* total in the run */
	double cpu_us_per_request; /* the proxy's user+system CPU per request */
};

/* utime + stime (clock ticks) of pid and of its children (nginx workers). */
static long long cpu_ticks(pid_t pid)
{
	long long total = 0;
	DIR *proc = opendir("/proc");
	struct dirent *entry;

	if (!proc)
		return -1;
	while ((entry = readdir(proc))) {
		char path[300], stat[1024], *p;
		long long utime, stime;
		int ppid, self;
		FILE *f;

		if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", entry->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(stat, sizeof(stat), f)) {
			fclose(f);
			continue;
		}
		fclose(f);
		self = atoi(stat);
		p = strrchr(stat, ')'); /* after the command name */
		if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld",
				 &ppid, &utime, &stime) != 3)
			continue;
		if (self == pid || ppid == pid)
			total += utime + stime;
	}
	closedir(proc);
	return total;
}

static bool run_wrk(const char *name, int port, pid_t server, const char *host, const char *token,
		    struct result *out)
{
	long long ticks_before = cpu_ticks(server), ticks_after;
	char command[2048], line[512];
	FILE *p;
	const char *seconds = getenv("BENCH_SECONDS"), *connections = getenv("BENCH_CONNECTIONS"),
		   *threads = getenv("BENCH_WRK_THREADS");

	snprintf(command, sizeof(command),
		 "wrk -t%s -c%s -d%ss --latency -H 'Host: %s' -H 'e2b-traffic-access-token: %s' "
		 "http://127.0.0.1:%d/index.html 2>&1",
		 threads ? threads : "2", connections ? connections : "64",
		 seconds ? seconds : "10", host, token, port);
	printf("%s: %s\n", name, command);
	fflush(stdout);
	memset(out, 0, sizeof(*out));
	out->p99_ms = -1;
	p = popen(command, "r");
	if (!p)
		return false;
	while (fgets(line, sizeof(line), p)) {
		long a, b, c, d;
		char *s;

		fputs("  | ", stdout);
		fputs(line, stdout);
		if ((s = strstr(line, "Requests/sec:")))
			out->requests_per_s = strtod(s + 13, NULL);
		else if ((s = strstr(line, " 99%")))
			out->p99_ms = parse_latency_ms(s + 4 + strspn(s + 4, " \t"));
		else if (sscanf(line, " %ld requests in", &a) == 1)
			out->requests = a;
		else if ((s = strstr(line, "Non-2xx or 3xx responses:")))
			out->errors += strtol(s + 26, NULL, 10);
		else if (sscanf(line,
				" Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &a,
				&b, &c, &d) == 4)
			out->errors += a + b + c + d;
	}
	ticks_after = cpu_ticks(server);
	if (out->requests > 0)
		out->cpu_us_per_request = (double)(ticks_after - ticks_before) * 1e6 /
					  (double)sysconf(_SC_CLK_TCK) / (double)out->requests;
	return pclose(p) == 0 && out->requests_per_s > 0;
}

/* The servers under test and where they listen; a pid of -1 is not running. */
struct bench_servers {
	int backend_port, nginx_port, proxy_port;
	pid_t backend, nginx, proxy;
};

/* Migrates the throwaway database at db_url, creates a team, the template and
 * one running sandbox whose id is written to id (32 bytes). *pool is set
 * as soon as it is open (the caller closes it); false (message printed) on error. */
static bool bench__seed_database(const char *db_url, struct storage_pool **pool, char *id)
{
	struct storage_error err;
	struct storage_team team;
	struct storage_template template_row = {
	    .id = "base",
	    .agent_version = "bench",
	    .image_path = "/nonexistent",
	    .content_hash = "0000000000000000000000000000000000000000000000000000000000000000"};
	struct storage_sandbox_new sandbox = {0};
	struct storage_sandbox_transition t = {0};
	struct storage_sandbox row;
	char request_id[40];
	bool existing;

	if (storage__migrate(db_url, test_db__migrations_dir(), NULL, &err) != STORAGE_OK ||
	    !(*pool = storage__pool_open(db_url, 1, &err)) ||
	    storage__team_create(*pool, "bench", STORAGE_TIER_PRO, &team, &err) ||
	    storage__template_upsert(*pool, &template_row, &err)) {
		fprintf(stderr, "database: %s\n", err.message);
		return false;
	}
	ids__sandbox_id(id);
	ids__uuid(request_id);
	sandbox = (struct storage_sandbox_new){.id = id,
					       .team_id = team.id,
					       .template_id = "base",
					       .request_id = request_id,
					       .timeout_s = 3600,
					       .secure = true,
					       .allow_public_traffic = false};
	t = (struct storage_sandbox_transition){.sandbox_id = id,
						.from = STORAGE_SANDBOX_STARTING,
						.to = STORAGE_SANDBOX_RUNNING,
						.slot_index = 1,
						.slot_address = "127.0.0.1"};
	if (storage__sandbox_insert(*pool, &sandbox, &existing, &row, &err) ||
	    (storage__sandbox_clear(&row), storage__sandbox_transition(*pool, &t, NULL, &err))) {
		fprintf(stderr, "sandbox: %s\n", err.message);
		return false;
	}
	return true;
}

/* Writes into tmpdir (already created) the backend's static file, the
 * backend nginx config and the proxy_pass nginx config with workers
 * worker processes. */
static void bench__write_configs(const char *workers, const struct bench_servers *servers)
{
	char text[2048], path[512];

	chmod(tmpdir, 0755); /* nginx workers may run as nobody */
	snprintf(path, sizeof(path), "%s/www", tmpdir);
	mkdir(path, 0755);
	write_file("www/index.html",
		   "<html><body>hello from the backend, 64 bytes</body></html>\n");
	snprintf(
	    text, sizeof(text),
	    "daemon off; worker_processes 1; pid %s/backend.pid; error_log %s/backend.log warn;\n"
	    "events { worker_connections 4096; }\n"
	    "http { access_log off; server { listen 127.0.0.1:%d; root %s/www; } }\n",
	    tmpdir, tmpdir, servers->backend_port, tmpdir);
	write_file("backend.conf", text);
	snprintf(text, sizeof(text),
		 "daemon off; worker_processes %s; pid %s/proxy.pid; error_log %s/proxy.log warn;\n"
		 "events { worker_connections 4096; }\n"
		 "http { access_log off; server { listen 127.0.0.1:%d;\n"
		 "  location / { proxy_pass http://127.0.0.1:%d; } } }\n",
		 workers, tmpdir, tmpdir, servers->nginx_port, servers->backend_port);
	write_file("nginx-proxy.conf", text);
}

/* Starts the backend nginx, the proxy_pass nginx and warren-proxy (from
 * build, or ./build when NULL, against db_url); records their pids in
 * servers. Does not wait for them to listen. */
static void bench__start_servers(const char *workers, const char *build, const char *db_url,
				 struct bench_servers *servers)
{
	char listen_env[64], pg_env[2100], threads_env[64];
	char backend_conf[600], proxy_conf[600];
	char *backend_argv[] = {"nginx", "-p", tmpdir, "-c", backend_conf, NULL};
	char *nginx_argv[] = {"nginx", "-p", tmpdir, "-c", proxy_conf, NULL};
	char proxy_bin[1024];
	char *proxy_argv[] = {proxy_bin, NULL};
	char *proxy_env[] = {listen_env,
			     pg_env,
			     threads_env,
			     "WARREN_TOKEN_SEED=" SEED,
			     "WARREN_DOMAIN=warren.test",
			     "WARREN_PROXY_OPS_PER_IP=1000000000",
			     NULL};

	snprintf(backend_conf, sizeof(backend_conf), "%s/backend.conf", tmpdir);
	snprintf(proxy_conf, sizeof(proxy_conf), "%s/nginx-proxy.conf", tmpdir);
	snprintf(proxy_bin, sizeof(proxy_bin), "%s/bin/warren-proxy", build ? build : "build");
	snprintf(listen_env, sizeof(listen_env), "WARREN_PROXY_LISTEN=127.0.0.1:%d",
		 servers->proxy_port);
	snprintf(pg_env, sizeof(pg_env), "WARREN_PG_URL=%s", db_url);
	snprintf(threads_env, sizeof(threads_env), "WARREN_PROXY_THREADS=%s", workers);
	servers->backend = spawn(backend_argv, NULL);
	servers->nginx = spawn(nginx_argv, NULL);
	servers->proxy = spawn(proxy_argv, proxy_env);
}

/* Runs wrk rounds times against both proxies (alternating which goes first),
 * filling nginx_results, proxy_results and ratios (proxy/nginx requests/s).
 * False when a wrk run fails; *errors set when any run saw errors. */
static bool bench__run_rounds(const struct bench_servers *servers, const char *host,
			      const char *token, int rounds, struct result *nginx_results,
			      struct result *proxy_results, double *ratios, bool *errors)
{
	for (int round = 0; round < rounds; round++) {
		struct result *n = &nginx_results[round], *w = &proxy_results[round];
		/* alternate the order so neither always runs on a warmer machine */
		bool ok = round % 2 == 0
			      ? run_wrk("nginx (proxy_pass)", servers->nginx_port, servers->nginx,
					host, token, n) &&
				    run_wrk("warren-proxy (token check on)", servers->proxy_port,
					    servers->proxy, host, token, w)
			      : run_wrk("warren-proxy (token check on)", servers->proxy_port,
					servers->proxy, host, token, w) &&
				    run_wrk("nginx (proxy_pass)", servers->nginx_port,
					    servers->nginx, host, token, n);

		if (!ok) {
			fprintf(stderr, "wrk failed\n");
			return false;
		}
		ratios[round] = w->requests_per_s / n->requests_per_s;
		if (n->errors || w->errors)
			*errors = true;
	}
	return true;
}

/* Prints each round's figures for both proxies and the median throughput
 * ratio (sorts ratios in place). */
static void bench__print_report(const char *workers, int rounds, const struct result *nginx_results,
				const struct result *proxy_results, double *ratios)
{
	printf("\nproxy benchmark (wrk %ss, %s connections, %s wrk threads, %s proxy workers, "
	       "loopback, same nginx static backend, %d round(s))\n",
	       getenv("BENCH_SECONDS") ? getenv("BENCH_SECONDS") : "10",
	       getenv("BENCH_CONNECTIONS") ? getenv("BENCH_CONNECTIONS") : "64",
	       getenv("BENCH_WRK_THREADS") ? getenv("BENCH_WRK_THREADS") : "2", workers, rounds);
	for (int round = 0; round < rounds; round++) {
		const struct result *n = &nginx_results[round], *w = &proxy_results[round];

		printf("  round %d\n", round + 1);
		printf("    nginx        %10.0f req/s  p99 %8.2f ms  %6.1f us CPU/request  errors "
		       "%ld\n",
		       n->requests_per_s, n->p99_ms, n->cpu_us_per_request, n->errors);
		printf("    warren-proxy %10.0f req/s  p99 %8.2f ms  %6.1f us CPU/request  errors "
		       "%ld\n",
		       w->requests_per_s, w->p99_ms, w->cpu_us_per_request, w->errors);
		printf(
		    "    ratio warren-proxy/nginx: %.2fx throughput (goal >= 0.90x), %.2fx CPU per "
		    "request\n",
		    ratios[round], w->cpu_us_per_request / n->cpu_us_per_request);
	}
	qsort(ratios, (size_t)rounds, sizeof(ratios[0]), samples__compare_double);
	printf("  median throughput ratio: %.2fx over %d round(s)\n", ratios[rounds / 2], rounds);
	printf("  (CPU per request is the steadier figure on a shared machine)\n");
}

int main(void)
{
	struct test_db db;
	struct storage_pool *pool = NULL;
	char id[32], token[TOKENS_SHA256_HEX_LEN + 1], host[128], text[2048];
	const char *workers = getenv("BENCH_PROXY_WORKERS");
	const char *build = getenv("WARREN_BUILD_DIR");
	struct bench_servers servers = {.backend = -1, .nginx = -1, .proxy = -1};
	struct result nginx_results[9], proxy_results[9];
	double ratios[9];
	int rounds = getenv("BENCH_ROUNDS") ? atoi(getenv("BENCH_ROUNDS")) : 1;
	bool errors = false;
	bool db_created = false, tmp_created = false;
	int rc = 1;

	servers.backend_port = free_port();
	servers.nginx_port = free_port();
	servers.proxy_port = free_port();
	if (!workers)
		workers = "2";
	if (rounds < 1 || rounds > 9)
		rounds = 1;
	signal(SIGPIPE, SIG_IGN);
	if (!test_db__create(&db, "proxybench"))
		return 1;
	db_created = true;
	if (!bench__seed_database(db.url, &pool, id))
		goto out;
	tokens__traffic_token(SEED, id, token);
	snprintf(host, sizeof(host), "%d-%s.warren.test", servers.backend_port, id);

	if (!mkdtemp(tmpdir))
		goto out;
	tmp_created = true;
	bench__write_configs(workers, &servers);
	bench__start_servers(workers, build, db.url, &servers);
	if (!wait_port(servers.backend_port) || !wait_port(servers.nginx_port) ||
	    !wait_port(servers.proxy_port)) {
		fprintf(stderr, "a server did not start (logs in %s)\n", tmpdir);
		goto out;
	}
	if (!bench__run_rounds(&servers, host, token, rounds, nginx_results, proxy_results, ratios,
			       &errors))
		goto out;
	bench__print_report(workers, rounds, nginx_results, proxy_results, ratios);
	rc = errors ? 2 : 0;
	if (rc)
		printf("  WARNING: errors during the run; the figures are not comparable\n");
out:
	stop(servers.proxy);
	stop(servers.nginx);
	stop(servers.backend);
	if (tmp_created) {
		snprintf(text, sizeof(text), "rm -rf '%s'", tmpdir);
		if (system(text) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	if (pool)
		storage__pool_close(pool);
	if (db_created)
		test_db__drop(&db);
	return rc;
}
