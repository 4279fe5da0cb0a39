/* `warren batch create|kill`: batch jobs against a warren stack.
 *
 *   warren batch create --count N --template T [--concurrency C] [--json]
 *                       [--timeout S] [--metadata k=v ...] [--api-url URL]
 *                       [--api-key KEY] [--via-kafka --team NAME|--team-id ID]
 *   warren batch kill --metadata k=v [...] [--concurrency C] [--json]
 *
 * Through the API (default): POST /sandboxes with C requests in flight
 * (curl multi); a 429 waits for its Retry-After and is sent again (counted
 * as rate-limited), and so does a 503 that carries one (no worker host has
 * room: counted as no room). With --via-kafka the create commands are produced
 * straight to the commands topic (docs/events/README.md) and the results
 * are read back from the events topic. Ends with a summary: created,
 * failed (by reason), rate-limited, p50/p99 latency (of the attempt that
 * succeeded: 429 waits excluded); --json prints it as
 * one JSON object with one entry per sandbox in "results". */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "warren/clock.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/json_util.h"
#include "warren/kafka.h"
#include "warren/kafka_event.h"
#include "warren/storage.h"

#define BATCH_MAX_COUNT	   100000
#define BATCH_MAX_METADATA 64
#define BATCH_RESPONSE_MAX (1 << 20)

struct batch_options {
	const char *action; /* "create" or "kill" */
	long count;
	long concurrency;
	long timeout_s;
	long deadline_ms; /* --via-kafka: how long to wait for one result */
	const char *template_id;
	const char *api_url;
	const char *api_ca_file; /* CA of an https api_url; NULL: the system's */
	const char *api_key;
	const char *team_name;
	const char *team_id;
	bool json;
	bool via_kafka;
	const char *metadata[BATCH_MAX_METADATA]; /* "k=v" */
	size_t metadata_count;
};

enum batch_state { BATCH_PENDING, BATCH_WAITING, BATCH_IN_FLIGHT, BATCH_DONE };

/* One sandbox of the batch (one create or one kill). */
struct batch_job {
	enum batch_state state;
	uint64_t ready_at_ms; /* BATCH_WAITING: when a 429 lets us retry */
	uint64_t started_ms;  /* the current attempt */
	uint64_t latency_ms;  /* the final attempt */
	int attempts;
	int status;   /* HTTP status of the final attempt, 0 on a transport error */
	bool success; /* created (or killed) */
	char request_id[IDS_UUID_LEN + 1];
	char sandbox_id[IDS_SANDBOX_ID_LEN + 1];
	char error[256];
	/* the transfer in progress */
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	char *response;
	size_t response_len;
	long retry_after_s;
};

struct batch_run {
	struct batch_options *options;
	struct batch_job *jobs;
	size_t count;
	size_t done;
	long rate_limited;
	long no_room; /* 503 with Retry-After: every worker host full, retried */
	uint64_t started_ms;
	bool progress; /* stdout is a terminal */
};

/* ---- options ---- */

static void batch__usage(void)
{
	fprintf(stderr,
		"usage: warren batch create --count N --template T [--concurrency C] [--json]\n"
		"                           [--timeout SECONDS] [--metadata k=v]...\n"
		"                           [--api-url URL] [--api-key KEY]\n"
		"                           [--via-kafka (--team NAME | --team-id ID)]"
		" [--deadline-ms MS]\n"
		"       warren batch kill --metadata k=v [--metadata k=v]... [--concurrency C]"
		" [--json]\n"
		"settings: api_url (WARREN_API_URL, default http://127.0.0.1:3000), api_ca_file,"
		" E2B_API_KEY\n");
}

static bool batch__parse_long(const char *text, long min, long max, long *out)
{
	char *end;
	long value;

	if (!text || !*text)
		return false;
	errno = 0;
	value = strtol(text, &end, 10);
	if (errno || *end || value < min || value > max)
		return false;
	*out = value;
	return true;
}

static int batch__parse(int argc, char **argv, struct batch_options *o)
{
	*o = (struct batch_options){
	    .count = 1,
	    .concurrency = 4,
	    .timeout_s = 300,
	    .deadline_ms = 60000,
	    .api_url = config__get("api_url", "http://127.0.0.1:3000"),
	    .api_ca_file = config__get("api_ca_file", NULL),
	    .api_key = getenv("E2B_API_KEY"),
	};
	if (argc < 2 || (strcmp(argv[1], "create") && strcmp(argv[1], "kill")))
		return -EINVAL;
	o->action = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes_value = true;

		if (!strcmp(arg, "--json")) {
			o->json = true;
			takes_value = false;
		} else if (!strcmp(arg, "--via-kafka")) {
			o->via_kafka = true;
			takes_value = false;
		} else if (!value) {
			fprintf(stderr, "warren batch: %s needs a value\n", arg);
			return -EINVAL;
		} else if (!strcmp(arg, "--count")) {
			if (!batch__parse_long(value, 1, BATCH_MAX_COUNT, &o->count))
				goto bad_value;
		} else if (!strcmp(arg, "--concurrency")) {
			if (!batch__parse_long(value, 1, 1000, &o->concurrency))
				goto bad_value;
		} else if (!strcmp(arg, "--timeout")) {
			if (!batch__parse_long(value, 1, 86400 * 7, &o->timeout_s))
				goto bad_value;
		} else if (!strcmp(arg, "--deadline-ms")) {
			if (!batch__parse_long(value, 1, 3600 * 1000, &o->deadline_ms))
				goto bad_value;
		} else if (!strcmp(arg, "--template")) {
			o->template_id = value;
		} else if (!strcmp(arg, "--api-url")) {
			o->api_url = value;
		} else if (!strcmp(arg, "--api-key")) {
			o->api_key = value;
		} else if (!strcmp(arg, "--team")) {
			o->team_name = value;
		} else if (!strcmp(arg, "--team-id")) {
			o->team_id = value;
		} else if (!strcmp(arg, "--metadata")) {
			const char *eq = strchr(value, '=');
			if (!eq || eq == value || o->metadata_count == BATCH_MAX_METADATA)
				goto bad_value;
			o->metadata[o->metadata_count++] = value;
		} else {
			fprintf(stderr, "warren batch: unknown option %s\n", arg);
			return -EINVAL;
		}
		if (takes_value)
			i++;
		continue;
	bad_value:
		fprintf(stderr, "warren batch: bad value for %s: %s\n", arg, value);
		return -EINVAL;
	}
	if (!strcmp(o->action, "create") && !o->template_id) {
		fprintf(stderr, "warren batch create: --template is required\n");
		return -EINVAL;
	}
	if (!strcmp(o->action, "kill") && !o->metadata_count) {
		fprintf(stderr, "warren batch kill: at least one --metadata k=v is required\n");
		return -EINVAL;
	}
	if (o->via_kafka && strcmp(o->action, "create")) {
		fprintf(stderr, "warren batch: --via-kafka applies to create only\n");
		return -EINVAL;
	}
	if (o->via_kafka && !o->team_name && !o->team_id) {
		fprintf(stderr,
			"warren batch create --via-kafka: --team or --team-id is required\n");
		return -EINVAL;
	}
	if (!o->via_kafka && (!o->api_key || !*o->api_key)) {
		fprintf(stderr, "warren batch: no API key (E2B_API_KEY or --api-key)\n");
		return -EINVAL;
	}
	return 0;
}

/* The metadata options as a JSON object {k: v}. */
static json_t *batch__metadata_object(const struct batch_options *o)
{
	json_t *metadata = json_object();

	for (size_t i = 0; i < o->metadata_count; i++) {
		const char *eq = strchr(o->metadata[i], '=');
		char *key = strndup(o->metadata[i], (size_t)(eq - o->metadata[i]));
		if (key)
			json_object_set_new(metadata, key, json_string(eq + 1));
		free(key);
	}
	return metadata;
}

/* ---- progress and summary ---- */

static void batch__progress(struct batch_run *run, bool final)
{
	static uint64_t last_ms;
	uint64_t now = clock__monotonic_ms();
	double elapsed = (double)(now - run->started_ms) / 1000.0;
	double rate = elapsed > 0 ? (double)run->done / elapsed : 0;
	double eta = rate > 0 ? (double)(run->count - run->done) / rate : 0;
	char bar[31];
	size_t filled = run->count ? run->done * 30 / run->count : 30;

	if (!run->progress || (!final && now - last_ms < 100))
		return;
	last_ms = now;
	for (size_t i = 0; i < 30; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[30] = '\0';
	if (run->done)
		printf("\r[%s] %zu/%zu  %.1f/s  ETA %.0fs  rate-limited %ld\033[K", bar, run->done,
		       run->count, rate, eta, run->rate_limited);
	else
		printf("\r[%s] %zu/%zu  waiting for the first result  rate-limited %ld\033[K", bar,
		       run->done, run->count, run->rate_limited);
	if (final)
		printf("\n");
	fflush(stdout);
}

static int batch__compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values. */
static uint64_t batch__percentile(const uint64_t *sorted, size_t n, double p)
{
	size_t rank;

	if (!n)
		return 0;
	rank = (size_t)((p / 100.0) * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

/* Replaces sandbox ids in text by "<id>" so failures group by reason. */
static void batch__normalize_reason(const char *text, char *out, size_t out_len)
{
	size_t o = 0;

	for (size_t i = 0; text[i] && o + 1 < out_len;) {
		bool id = text[i] == 'i' && (i == 0 || !isalnum((unsigned char)text[i - 1]));
		size_t n = 0;
		if (id) {
			while (n < 20 && (islower((unsigned char)text[i + 1 + n]) ||
					  isdigit((unsigned char)text[i + 1 + n])))
				n++;
			id = n == 20 && !isalnum((unsigned char)text[i + 21]);
		}
		if (id && o + 5 < out_len) {
			memcpy(out + o, "<id>", 4);
			o += 4;
			i += 21;
		} else {
			out[o++] = text[i++];
		}
	}
	out[o] = '\0';
}

/* Prints the summary (text or JSON). Returns the exit code: 0 when every
 * job succeeded, 1 otherwise. */
static int batch__summary(struct batch_run *run)
{
	const char *verb = strcmp(run->options->action, "kill") ? "created" : "killed";
	uint64_t elapsed_ms = clock__monotonic_ms() - run->started_ms;
	uint64_t *latencies = calloc(run->count ? run->count : 1, sizeof(*latencies));
	json_t *failures = json_object(), *results = json_array(), *summary;
	size_t succeeded = 0, failed = 0;
	const char *reason_key;
	json_t *reason_count;

	if (!latencies) {
		json_decref(failures);
		json_decref(results);
		return 1;
	}
	for (size_t i = 0; i < run->count; i++) {
		struct batch_job *job = &run->jobs[i];
		json_t *entry = json_pack("{s:i, s:s, s:i, s:I, s:i, s:b}", "index", (int)i,
					  "request_id", job->request_id, "status", job->status,
					  "latency_ms", (json_int_t)job->latency_ms, "attempts",
					  job->attempts, "ok", job->success);
		if (job->sandbox_id[0])
			json_object_set_new(entry, "sandbox_id", json_string(job->sandbox_id));
		if (job->success) {
			latencies[succeeded++] = job->latency_ms;
		} else {
			char reason[300];
			json_t *previous;
			batch__normalize_reason(job->error, reason, sizeof(reason));
			previous = json_object_get(failures, reason);
			json_object_set_new(
			    failures, reason,
			    json_integer(previous ? json_integer_value(previous) + 1 : 1));
			json_object_set_new(entry, "error", json_string(job->error));
			failed++;
		}
		json_array_append_new(results, entry);
	}
	qsort(latencies, succeeded, sizeof(*latencies), batch__compare_u64);
	double rate = elapsed_ms ? (double)succeeded * 1000.0 / (double)elapsed_ms : 0;
	uint64_t p50 = batch__percentile(latencies, succeeded, 50);
	uint64_t p99 = batch__percentile(latencies, succeeded, 99);

	if (run->options->json) {
		summary = json_pack(
		    "{s:s, s:i, s:i, s:i, s:O, s:I, s:I, s:I, s:I, s:I, s:f, s:s, s:O}", "action",
		    run->options->action, "requested", (int)run->count, verb, (int)succeeded,
		    "failed", (int)failed, "failures", failures, "rate_limited",
		    (json_int_t)run->rate_limited, "no_room", (json_int_t)run->no_room, "p50_ms",
		    (json_int_t)p50, "p99_ms", (json_int_t)p99, "elapsed_ms",
		    (json_int_t)elapsed_ms, "rate_per_s", rate, "via",
		    run->options->via_kafka ? "kafka" : "api", "results", results);
		if (summary) {
			char *text = json_dumps(summary, JSON_COMPACT);
			if (text)
				printf("%s\n", text);
			free(text);
			json_decref(summary);
		}
	} else {
		printf("%s %zu of %zu in %.1f s (%.1f/s)%s\n", verb, succeeded, run->count,
		       (double)elapsed_ms / 1000.0, rate,
		       run->options->via_kafka ? " via Kafka" : "");
		printf("failed: %zu\n", failed);
		json_object_foreach(failures, reason_key, reason_count)
		    printf("  %lld  %s\n", (long long)json_integer_value(reason_count), reason_key);
		printf("rate-limited (429, retried): %ld\n", run->rate_limited);
		printf("no room (503, retried): %ld\n", run->no_room);
		if (succeeded)
			printf("latency: p50 %llu ms, p99 %llu ms\n", (unsigned long long)p50,
			       (unsigned long long)p99);
	}
	json_decref(failures);
	json_decref(results);
	free(latencies);
	return failed ? 1 : 0;
}

/* ---- HTTP (curl multi) ---- */

static size_t batch__on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
	struct batch_job *job = opaque;
	size_t n = size * nmemb;
	char *grown;

	if (job->response_len + n > BATCH_RESPONSE_MAX)
		return 0;
	grown = realloc(job->response, job->response_len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + job->response_len, data, n);
	job->response = grown;
	job->response_len += n;
	job->response[job->response_len] = '\0';
	return n;
}

static size_t batch__on_header(char *data, size_t size, size_t nmemb, void *opaque)
{
	struct batch_job *job = opaque;
	size_t n = size * nmemb;
	char line[128];

	if (n < sizeof(line) && !strncasecmp(data, "Retry-After:", 12)) {
		memcpy(line, data, n);
		line[n] = '\0';
		long seconds = strtol(line + 12, NULL, 10);
		job->retry_after_s = seconds > 0 && seconds < 3600 ? seconds : 1;
	}
	return n;
}

static void batch__release_transfer(CURLM *multi, struct batch_job *job)
{
	if (job->easy) {
		curl_multi_remove_handle(multi, job->easy);
		curl_easy_cleanup(job->easy);
	}
	curl_slist_free_all(job->headers);
	free(job->body);
	free(job->response);
	job->easy = NULL;
	job->headers = NULL;
	job->body = NULL;
	job->response = NULL;
	job->response_len = 0;
}

/* Starts the job's next attempt: a create (POST /sandboxes) or a kill
 * (DELETE /sandboxes/<id>). A new request id per attempt. */
static int batch__start_transfer(struct batch_run *run, CURLM *multi, struct batch_job *job)
{
	const struct batch_options *o = run->options;
	char url[1024], header[160];
	bool create = !strcmp(o->action, "create");

	ids__uuid(job->request_id);
	job->easy = curl_easy_init();
	if (!job->easy)
		return -ENOMEM;
	if (create) {
		json_t *body =
		    json_pack("{s:s, s:I, s:o}", "templateID", o->template_id, "timeout",
			      (json_int_t)o->timeout_s, "metadata", batch__metadata_object(o));
		job->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
		json_decref(body);
		if (!job->body)
			return -ENOMEM;
		snprintf(url, sizeof(url), "%s/sandboxes", o->api_url);
		curl_easy_setopt(job->easy, CURLOPT_POSTFIELDS, job->body);
		job->headers = curl_slist_append(job->headers, "Content-Type: application/json");
	} else {
		snprintf(url, sizeof(url), "%s/sandboxes/%s", o->api_url, job->sandbox_id);
		curl_easy_setopt(job->easy, CURLOPT_CUSTOMREQUEST, "DELETE");
	}
	snprintf(header, sizeof(header), "X-API-Key: %s", o->api_key);
	job->headers = curl_slist_append(job->headers, header);
	snprintf(header, sizeof(header), "X-Request-Id: %s", job->request_id);
	job->headers = curl_slist_append(job->headers, header);
	curl_easy_setopt(job->easy, CURLOPT_URL, url);
	curl_easy_setopt(job->easy, CURLOPT_HTTPHEADER, job->headers);
	curl_easy_setopt(job->easy, CURLOPT_WRITEFUNCTION, batch__on_body);
	curl_easy_setopt(job->easy, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(job->easy, CURLOPT_HEADERFUNCTION, batch__on_header);
	curl_easy_setopt(job->easy, CURLOPT_HEADERDATA, job);
	curl_easy_setopt(job->easy, CURLOPT_PRIVATE, job);
	curl_easy_setopt(job->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(job->easy, CURLOPT_TIMEOUT, 600L);
	if (o->api_ca_file)
		curl_easy_setopt(job->easy, CURLOPT_CAINFO, o->api_ca_file);
	job->retry_after_s = 0;
	job->attempts++;
	job->started_ms = clock__monotonic_ms();
	job->state = BATCH_IN_FLIGHT;
	return curl_multi_add_handle(multi, job->easy) == CURLM_OK ? 0 : -EIO;
}

/* A finished transfer: success, a 429 to retry later, or a failure. */
static void batch__finish_transfer(struct batch_run *run, CURLM *multi, struct batch_job *job,
				   CURLcode result)
{
	bool create = !strcmp(run->options->action, "create");
	long status = 0;

	job->latency_ms = clock__monotonic_ms() - job->started_ms;
	curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &status);
	job->status = result == CURLE_OK ? (int)status : 0;
	if (result != CURLE_OK) {
		snprintf(job->error, sizeof(job->error), "transport: %s",
			 curl_easy_strerror(result));
	} else if (status == 429 || (status == 503 && job->retry_after_s > 0)) {
		/* 429: a rate limit; 503 with Retry-After: no worker host has
		 * room right now (docs/api.md, "Placement"). Both: wait, resend. */
		if (status == 429)
			run->rate_limited++;
		else
			run->no_room++;
		job->ready_at_ms = clock__monotonic_ms() +
				   (uint64_t)(job->retry_after_s ? job->retry_after_s : 1) * 1000;
		job->state = BATCH_WAITING;
		batch__release_transfer(multi, job);
		return;
	} else if ((create && status == 201) || (!create && (status == 204 || status == 404))) {
		/* A kill of a sandbox that ended meanwhile (404) is done too. */
		job->success = true;
		if (create) {
			json_t *body = json_loads(job->response ? job->response : "", 0, NULL);
			snprintf(job->sandbox_id, sizeof(job->sandbox_id), "%s",
				 json_util__string(body, "sandboxID", ""));
			json_decref(body);
		}
	} else {
		json_t *body = json_loads(job->response ? job->response : "", 0, NULL);
		snprintf(job->error, sizeof(job->error), "HTTP %ld: %s", status,
			 json_util__string(body, "message", "(no message)"));
		if (create)
			snprintf(job->sandbox_id, sizeof(job->sandbox_id), "%s",
				 ids__is_sandbox_id(json_util__string(body, "sandboxID", ""))
				     ? json_util__string(body, "sandboxID", "")
				     : "");
		json_decref(body);
	}
	job->state = BATCH_DONE;
	run->done++;
	batch__release_transfer(multi, job);
}

/* Runs every job with at most concurrency transfers in flight. */
static int batch__run_http(struct batch_run *run)
{
	CURLM *multi = curl_multi_init();
	size_t next = 0; /* jobs are started in order */
	long in_flight = 0;

	if (!multi)
		return -ENOMEM;
	while (run->done < run->count) {
		uint64_t now = clock__monotonic_ms();
		int running = 0, queued;
		CURLMsg *msg;

		/* retries whose Retry-After passed first, then new jobs */
		for (size_t i = 0; i < next && in_flight < run->options->concurrency; i++) {
			struct batch_job *job = &run->jobs[i];
			if (job->state == BATCH_WAITING && job->ready_at_ms <= now) {
				if (batch__start_transfer(run, multi, job))
					goto transfer_error;
				in_flight++;
			}
		}
		while (next < run->count && in_flight < run->options->concurrency) {
			if (batch__start_transfer(run, multi, &run->jobs[next]))
				goto transfer_error;
			next++;
			in_flight++;
		}
		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &queued))) {
			struct batch_job *job = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
			batch__finish_transfer(run, multi, job, msg->data.result);
			in_flight--;
		}
		batch__progress(run, false);
		if (run->done < run->count)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	batch__progress(run, true);
	curl_multi_cleanup(multi);
	return 0;
transfer_error:
	fprintf(stderr, "warren batch: could not start a request (out of memory?)\n");
	for (size_t i = 0; i < run->count; i++)
		batch__release_transfer(multi, &run->jobs[i]);
	curl_multi_cleanup(multi);
	return -EIO;
}

/* ---- kill: the sandboxes matching the metadata ---- */

static size_t batch__collect(char *data, size_t size, size_t nmemb, void *opaque)
{
	return batch__on_body(data, size, nmemb, opaque);
}

/* GET /v2/sandboxes?metadata=...: every matching sandbox id (all pages). */
static int batch__list_matching(const struct batch_options *o, char ***ids_out, size_t *count_out)
{
	char **ids = NULL, next_token[512] = "";
	size_t count = 0;
	char query[2048] = "";
	CURL *easy = curl_easy_init();
	int rc = -EIO;

	if (!easy)
		return -ENOMEM;
	for (size_t i = 0; i < o->metadata_count; i++) {
		size_t used = strlen(query);
		snprintf(query + used, sizeof(query) - used, "%s%s", i ? "&" : "", o->metadata[i]);
	}
	char *encoded = curl_easy_escape(easy, query, 0);
	for (int page = 0; page < 1000; page++) {
		struct batch_job response = {0};
		struct curl_slist *headers = NULL;
		char url[4096], header[160];
		long status = 0;
		json_t *list;
		size_t index;
		json_t *item;

		snprintf(url, sizeof(url), "%s/v2/sandboxes?metadata=%s&limit=100%s%s", o->api_url,
			 encoded ? encoded : "", next_token[0] ? "&nextToken=" : "", next_token);
		snprintf(header, sizeof(header), "X-API-Key: %s", o->api_key);
		headers = curl_slist_append(headers, header);
		curl_easy_reset(easy);
		curl_easy_setopt(easy, CURLOPT_URL, url);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, batch__collect);
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, &response);
		curl_easy_setopt(easy, CURLOPT_TIMEOUT, 60L);
		if (o->api_ca_file)
			curl_easy_setopt(easy, CURLOPT_CAINFO, o->api_ca_file);
		CURLcode result = curl_easy_perform(easy);
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		struct curl_header *token_header = NULL;
		next_token[0] = '\0';
		if (result == CURLE_OK && curl_easy_header(easy, "X-Next-Token", 0, CURLH_HEADER,
							   -1, &token_header) == CURLHE_OK) {
			char *escaped = curl_easy_escape(easy, token_header->value, 0);
			if (escaped)
				snprintf(next_token, sizeof(next_token), "%s", escaped);
			curl_free(escaped);
		}
		curl_slist_free_all(headers);
		if (result != CURLE_OK || status != 200) {
			fprintf(stderr, "warren batch kill: listing failed: %s %ld %s\n",
				result != CURLE_OK ? curl_easy_strerror(result) : "HTTP", status,
				response.response ? response.response : "");
			free(response.response);
			goto out;
		}
		list = json_loads(response.response ? response.response : "", 0, NULL);
		free(response.response);
		json_array_foreach(list, index, item)
		{
			const char *id = json_util__string(item, "sandboxID", "");
			char **grown;
			if (!ids__is_sandbox_id(id))
				continue;
			grown = realloc(ids, (count + 1) * sizeof(*ids));
			if (!grown) {
				json_decref(list);
				goto out;
			}
			ids = grown;
			ids[count++] = strdup(id);
		}
		json_decref(list);
		if (!next_token[0]) {
			rc = 0;
			break;
		}
	}
out:
	curl_free(encoded);
	curl_easy_cleanup(easy);
	if (rc) {
		for (size_t i = 0; i < count; i++)
			free(ids[i]);
		free(ids);
		return rc;
	}
	*ids_out = ids;
	*count_out = count;
	return 0;
}

/* ---- create through Kafka ---- */

static struct batch_job *batch__find_request(struct batch_run *run, const char *request_id)
{
	for (size_t i = 0; i < run->count; i++)
		if (run->jobs[i].state == BATCH_IN_FLIGHT &&
		    !strcmp(run->jobs[i].request_id, request_id))
			return &run->jobs[i];
	return NULL;
}

static int batch__resolve_team(const struct batch_options *o, char *team_id, size_t len)
{
	struct storage_error err;
	struct storage_team team;
	struct storage_settings settings;
	struct storage_pool *pool;
	int rc;

	if (o->team_id) {
		snprintf(team_id, len, "%s", o->team_id);
		return 0;
	}
	storage_settings__from_config(&settings, NULL, 1);
	pool = storage__pool_open_settings(&settings, &err);
	if (!pool) {
		fprintf(stderr, "warren batch: PostgreSQL: %s\n", err.message);
		return -EIO;
	}
	rc = storage__team_get_by_name(pool, o->team_name, &team, &err);
	storage__pool_close(pool);
	if (rc) {
		fprintf(stderr, "warren batch: team %s: %s\n", o->team_name, err.message);
		return -ENOENT;
	}
	snprintf(team_id, len, "%s", team.id);
	return 0;
}

/* A batch of creates through Kafka in progress. */
struct kafka_batch {
	struct batch_run *run;
	char commands_topic[KAFKA_TOPIC_NAME_MAX + 1], events_topic[KAFKA_TOPIC_NAME_MAX + 1];
	char team_id[KAFKA_EVENT_TEAM_ID_MAX + 1], group[96];
	struct kafka_settings kafka; /* from the configuration */
	struct kafka_producer *producer;
	struct kafka_consumer *consumer;
	size_t next;	/* jobs[0..next) were produced */
	long in_flight; /* produced, waiting for their result */
};

/* Ends a job of the batch (its latency counted from its start). */
static void kafka_batch__finish(struct kafka_batch *b, struct batch_job *job, uint64_t now)
{
	if (job->state == BATCH_IN_FLIGHT)
		b->in_flight--;
	job->latency_ms = now - job->started_ms;
	job->state = BATCH_DONE;
	b->run->done++;
}

/* The producer, and a consumer of the events topic in a group of its own,
 * assigned its partitions (results are read from "latest": be assigned
 * before producing). 0 or -EIO (reported). */
static int kafka_batch__open(struct kafka_batch *b)
{
	const char *prefix = config__get("kafka_topic_prefix", "");
	struct kafka_consumer_config consumer_config = {
	    .settings = &b->kafka, .group_id = b->group, .start_at_latest = true};
	const char *topics[] = {b->events_topic};
	char err[256] = "";

	snprintf(b->commands_topic, sizeof(b->commands_topic), "%s%s", prefix,
		 KAFKA_TOPIC_SANDBOX_COMMANDS);
	snprintf(b->events_topic, sizeof(b->events_topic), "%s%s", prefix,
		 KAFKA_TOPIC_SANDBOX_EVENTS);
	ids__uuid(b->group + snprintf(b->group, sizeof(b->group), "warren-batch-"));
	kafka_settings__from_config(&b->kafka);
	b->producer = kafka_producer__new(&b->kafka, NULL, err, sizeof(err));
	b->consumer = kafka_consumer__new(&consumer_config, err, sizeof(err));
	if (!b->producer || !b->consumer || kafka_consumer__subscribe(b->consumer, topics, 1)) {
		fprintf(stderr, "warren batch: Kafka: %s\n", err[0] ? err : "subscribe failed");
		return -EIO;
	}
	for (uint64_t until = clock__monotonic_ms() + 30000;
	     kafka_consumer__assignment_count(b->consumer) <= 0;) {
		struct kafka_message msg = {0};

		if (clock__monotonic_ms() > until) {
			fprintf(stderr, "warren batch: no partition of %s assigned in 30 s\n",
				b->events_topic);
			return -EIO;
		}
		if (kafka_consumer__poll(b->consumer, 200, &msg) == 1)
			kafka_message__release(&msg);
	}
	for (int i = 0; i < 3; i++) { /* let the "latest" positions resolve */
		struct kafka_message msg = {0};

		if (kafka_consumer__poll(b->consumer, 100, &msg) == 1)
			kafka_message__release(&msg);
	}
	return 0;
}

static void kafka_batch__close(struct kafka_batch *b)
{
	char err[256];

	kafka_consumer__free(b->consumer);
	kafka__delete_group(&b->kafka, b->group, 5000, err, sizeof(err));
	kafka_producer__free(b->producer);
}

/* Produces create commands until concurrency of them wait for a result.
 * A command that cannot be produced ends its job as failed. 0, or -EINVAL
 * when the command itself is invalid (reported). */
static int kafka_batch__produce_more(struct kafka_batch *b)
{
	const struct batch_options *o = b->run->options;
	char reason[256];

	while (b->next < b->run->count && b->in_flight < o->concurrency) {
		struct batch_job *job = &b->run->jobs[b->next++];
		struct kafka_event command;
		json_t *spec =
		    json_pack("{s:s, s:I, s:o}", "template_id", o->template_id, "timeout_s",
			      (json_int_t)o->timeout_s, "metadata", batch__metadata_object(o));
		int produced;

		ids__sandbox_id(job->sandbox_id);
		if (kafka_event__init_command(&command, KAFKA_EVENT_CREATE, b->team_id,
					      job->sandbox_id, spec, reason,
					      sizeof(reason)) != KAFKA_EVENT_OK) {
			fprintf(stderr, "warren batch: the create command is invalid: %s\n",
				reason);
			return -EINVAL;
		}
		snprintf(job->request_id, sizeof(job->request_id), "%s", command.request_id);
		job->attempts = 1;
		job->started_ms = clock__monotonic_ms();
		produced = kafka_producer__produce_event(b->producer, b->commands_topic, &command,
							 10000, NULL);
		kafka_event__clear(&command);
		if (produced) {
			snprintf(job->error, sizeof(job->error),
				 "producing the command failed (%d)", produced);
			kafka_batch__finish(b, job, clock__monotonic_ms());
			continue;
		}
		job->state = BATCH_IN_FLIGHT;
		b->in_flight++;
	}
	return 0;
}

/* Waits up to 100 ms for one event; a created/failed result of one of
 * our requests ends its job. */
static void kafka_batch__take_result(struct kafka_batch *b)
{
	struct kafka_message msg = {0};
	struct kafka_event result = {0};
	struct batch_job *job;
	char reason[256];

	if (kafka_consumer__poll(b->consumer, 100, &msg) != 1)
		goto out;
	if (kafka_event__decode(msg.payload, msg.len, &result, reason, sizeof(reason)) !=
	    KAFKA_EVENT_OK)
		goto out;
	job = batch__find_request(b->run, result.request_id);
	if (job && (result.type == KAFKA_EVENT_CREATED || result.type == KAFKA_EVENT_FAILED)) {
		job->success = result.type == KAFKA_EVENT_CREATED;
		job->status = job->success ? 201 : (int)json_util__int(result.result, "code", 500);
		if (!job->success)
			snprintf(job->error, sizeof(job->error), "failed %d: %s", job->status,
				 json_util__string(result.result, "message", "failed"));
		kafka_batch__finish(b, job, clock__monotonic_ms());
	}
	kafka_event__clear(&result);
out:
	kafka_message__release(&msg);
}

/* Ends the jobs that waited longer than the deadline for their result. */
static void kafka_batch__expire(struct kafka_batch *b)
{
	uint64_t now = clock__monotonic_ms();
	long deadline_ms = b->run->options->deadline_ms;

	for (size_t i = 0; i < b->next; i++) {
		struct batch_job *job = &b->run->jobs[i];

		if (job->state == BATCH_IN_FLIGHT &&
		    now - job->started_ms > (uint64_t)deadline_ms) {
			snprintf(job->error, sizeof(job->error),
				 "no result within %ld ms (find it with GET /sandboxes/<id>)",
				 deadline_ms);
			kafka_batch__finish(b, job, now);
		}
	}
}

/* Produces the create commands (at most concurrency waiting for their
 * result) and matches the result events by request_id. */
static int batch__run_kafka(struct batch_run *run)
{
	struct kafka_batch b = {.run = run};
	int rc;

	if (batch__resolve_team(run->options, b.team_id, sizeof(b.team_id)))
		return -EINVAL;
	rc = kafka_batch__open(&b);
	if (rc)
		goto out;
	run->started_ms = clock__monotonic_ms();
	while (run->done < run->count) {
		rc = kafka_batch__produce_more(&b);
		if (rc)
			goto out;
		kafka_batch__take_result(&b);
		kafka_batch__expire(&b);
		batch__progress(run, false);
	}
	batch__progress(run, true);
out:
	kafka_batch__close(&b);
	return rc;
}

/* ---- the command ---- */

static int cli_batch__run(int argc, char **argv)
{
	struct batch_options options;
	struct batch_run run = {0};
	char **ids = NULL;
	int rc;

	if (batch__parse(argc, argv, &options)) {
		batch__usage();
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	run.options = &options;
	run.progress = isatty(STDOUT_FILENO) && !options.json;
	if (!strcmp(options.action, "kill")) {
		if (batch__list_matching(&options, &ids, &run.count)) {
			rc = 1;
			goto out;
		}
	} else {
		run.count = (size_t)options.count;
	}
	run.jobs = calloc(run.count ? run.count : 1, sizeof(*run.jobs));
	if (!run.jobs) {
		rc = 1;
		goto out;
	}
	for (size_t i = 0; ids && i < run.count; i++)
		snprintf(run.jobs[i].sandbox_id, sizeof(run.jobs[i].sandbox_id), "%s", ids[i]);
	run.started_ms = clock__monotonic_ms();
	rc = options.via_kafka ? batch__run_kafka(&run) : batch__run_http(&run);
	if (rc) {
		rc = 1;
		goto out;
	}
	rc = batch__summary(&run);
out:
	for (size_t i = 0; ids && i < run.count; i++)
		free(ids[i]);
	free(ids);
	free(run.jobs);
	curl_global_cleanup();
	return rc;
}

CLI_COMMAND(batch, "batch", "create or kill sandboxes in bulk (API or Kafka)", cli_batch__run)
