/* bench_agent: request latency of warren-agent, p50/p99, for GET /health
 * and GET /files of a 1 KiB file (with the access token; as root, and as
 * "nobody" when we are root and it exists), with 1 and 32
 * concurrent keep-alive clients (one libcurl handle each), on 127.0.0.1.
 *
 *   build/bin/bench_agent BUILD_DIR [BUILD_DIR...]
 *
 * Each BUILD_DIR holds bin/warren-agent (e.g. a build of the previous
 * commit, then this one): the agents run one after the other in the same
 * run, started and stopped by tests/agent/agent_harness.c. */
#include <curl/curl.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_harness.h"

#include "../samples.h"

#define REQUESTS_TOTAL 6400 /* per case, split over the clients */
#define MAX_CLIENTS    32

struct client {
	pthread_t thread;
	const char *path;
	int requests;
	double *latencies_ms;
	int failures;
};

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

static void *client_run(void *arg)
{
	struct client *client = arg;
	struct curl_slist *headers = curl_slist_append(NULL, "X-Access-Token: " TOKEN);
	CURL *curl = curl_easy_init();
	char url[1024];
	long status;
	int i;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", agent_port, client->path);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
	for (i = 0; i < client->requests; i++) {
		double started = now_ms();

		status = 0;
		if (curl_easy_perform(curl) == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		client->latencies_ms[i] = now_ms() - started;
		if (status != 200 && status != 204)
			client->failures++;
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return NULL;
}

/* Runs one case and prints "label path clients p50 p99 failures". */
static void bench_case(const char *label, const char *path, int clients)
{
	struct client client[MAX_CLIENTS];
	int per = REQUESTS_TOTAL / clients, i, n = 0, failures = 0;
	double *all = calloc(REQUESTS_TOTAL, sizeof(double)), started = now_ms(), took;

	for (i = 0; i < clients; i++) {
		client[i] = (struct client){
		    .path = path, .requests = per, .latencies_ms = all + (size_t)i * (size_t)per};
		pthread_create(&client[i].thread, NULL, client_run, &client[i]);
	}
	for (i = 0; i < clients; i++) {
		pthread_join(client[i].thread, NULL);
		failures += client[i].failures;
		n += client[i].requests;
	}
	took = now_ms() - started;
	qsort(all, (size_t)n, sizeof(double), samples__compare_double);
	printf("%-28s %-22s %3d clients  p50 %7.3f ms  p99 %7.3f ms  %8.0f req/s  failures %d\n",
	       label,
	       strncmp(path, "/files", 6) != 0 ? "GET /health"
	       : strstr(path, "username=")     ? "GET /files 1K (nobody)"
					       : "GET /files 1K (root)",
	       clients, all[n / 2], all[(n * 99) / 100], n / (took / 1e3), failures);
	free(all);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const int client_counts[] = {1, 32};
	char path[600], files_path[700], nobody_path[800], body[800];
	bool as_nobody = geteuid() == 0 && getpwnam("nobody");
	struct buffer out;
	int i, c;
	FILE *f;

	if (argc < 2) {
		fprintf(stderr, "usage: %s BUILD_DIR [BUILD_DIR...] (each with bin/warren-agent)\n",
			argv[0]);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (i = 1; i < argc; i++) {
		setenv("WARREN_BUILD_DIR", argv[i], 1);
		if (start_agent(NULL)) {
			fprintf(stderr, "cannot start %s/bin/warren-agent\n", argv[i]);
			return 1;
		}
		snprintf(body, sizeof(body), "{\"accessToken\":\"%s\",\"defaultUser\":\"root\"}",
			 TOKEN);
		if (http("POST", "/init", NULL, "application/json", body, strlen(body), &out) !=
		    204)
			return 1;
		free(out.data);
		snprintf(path, sizeof(path), "%s/small.bin", work_dir);
		f = fopen(path, "w");
		if (!f)
			return 1;
		for (c = 0; c < 1024; c++)
			fputc('a' + c % 26, f);
		fclose(f);
		snprintf(files_path, sizeof(files_path), "/files?path=%s", path);
		snprintf(nobody_path, sizeof(nobody_path), "%s&username=nobody", files_path);
		if (chmod(work_dir, 0755) < 0 || chmod(path, 0644) < 0)
			return 1;
		for (c = 0; c < 2; c++) {
			bench_case(argv[i], "/health", client_counts[c]);
			bench_case(argv[i], files_path, client_counts[c]);
			if (as_nobody) /* the user switch: groups, fsgid, fsuid */
				bench_case(argv[i], nobody_path, client_counts[c]);
		}
		if (stop_agent(NULL))
			return 1;
	}
	return 0;
}
