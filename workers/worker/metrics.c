/* metrics: the resource samples behind GET /sandboxes/{id}/metrics. The
 * main thread reads each live sandbox's usage from its runtime (the jail's
 * cgroup and disk image) every metrics_interval_ms, turns the CPU time
 * consumed since the previous sample into a percentage, and stores the
 * sample; it prunes samples past metrics_retention_s once a minute. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warren/clock.h"
#include "warren/config.h"
#include "warren/ids.h"
#include "warren/log.h"
#include "warren/prom.h"
#include "worker.h"

#define METRICS_PRUNE_EVERY_MS 60000

/* CPU use between two readings as a percentage of one CPU (0..100 *
 * cpu_count), as E2B reports it. 0 when the clock did not move. */
static double metrics__cpu_pct(uint64_t usec_before, uint64_t usec_now, int64_t ms_before,
			       int64_t ms_now, uint32_t cpu_count)
{
	double pct, wall_usec = (double)(ms_now - ms_before) * 1000.0;
	double cap = 100.0 * (cpu_count ? cpu_count : 1);

	if (ms_now <= ms_before || usec_now < usec_before)
		return 0;
	pct = (double)(usec_now - usec_before) * 100.0 / wall_usec;
	return pct > cap ? cap : pct;
}

/* Fills one sample of s when it is due (the first reading only sets the
 * baseline). Called with worker->lock held: s->instance cannot be torn
 * down meanwhile. true when *out holds a sample to store. */
static bool metrics__take(struct live_sandbox *s, int64_t now_ms, int64_t interval_ms,
			  struct storage_sandbox_metric *out)
{
	struct runtime_usage usage;
	bool had_baseline = s->metrics_at_ms > 0;

	if (had_baseline && now_ms - s->metrics_at_ms < interval_ms)
		return false;
	if (runtime__usage(s->instance, &usage))
		return false;
	memset(out, 0, sizeof(*out));
	snprintf(out->sandbox_id, sizeof(out->sandbox_id), "%s", s->id);
	out->at = now_ms;
	out->cpu_count = (int32_t)usage.cpu_count;
	out->cpu_used_pct = metrics__cpu_pct(s->metrics_cpu_usec, usage.cpu_usec, s->metrics_at_ms,
					     now_ms, usage.cpu_count);
	out->mem_used = (int64_t)(usage.mem_used_bytes & INT64_MAX);
	out->mem_total = (int64_t)(usage.mem_total_bytes & INT64_MAX);
	out->mem_cache = (int64_t)(usage.mem_cache_bytes & INT64_MAX);
	out->disk_used = (int64_t)(usage.disk_used_bytes & INT64_MAX);
	out->disk_total = (int64_t)(usage.disk_total_bytes & INT64_MAX);
	s->metrics_cpu_usec = usage.cpu_usec;
	s->metrics_at_ms = now_ms;
	return had_baseline;
}

static void metrics__prune(struct worker *worker, int64_t now_ms)
{
	int64_t keep_s = config__get_int("metrics_retention_s", 86400), deleted = 0;
	int64_t logs_keep_s = config__get_int("sandbox_log_retention_s", 7 * 86400);
	struct storage_error err;

	if (now_ms - worker->last_metrics_prune_ms < METRICS_PRUNE_EVERY_MS)
		return;
	worker->last_metrics_prune_ms = now_ms;
	if (storage__sandbox_logs_prune(worker->storage, logs_keep_s > 0 ? logs_keep_s : 0,
					&deleted, &err))
		log_warn("logs: pruning the lines of sandboxes ended %lld s ago failed: %s",
			 (long long)logs_keep_s, err.message);
	deleted = 0;
	if (storage__sandbox_metrics_prune(worker->storage, keep_s > 0 ? keep_s : 0, &deleted,
					   &err))
		log_warn("metrics: pruning samples older than %lld s failed: %s", (long long)keep_s,
			 err.message);
	else if (deleted > 0)
		log_info("metrics: pruned %lld samples older than %lld s", (long long)deleted,
			 (long long)keep_s);
}

/* ---- console lines (GET /sandboxes/{id}/logs) ---- */

#define LOGS_READ_MAX  (64 * 1024) /* console bytes read per sandbox per pass */
#define LOGS_LINES_MAX 1024	   /* lines stored per sandbox per pass */

struct log_cursor {
	char id[IDS_SANDBOX_ID_LEN + 1];
	char path[PATH_MAX];
	uint64_t offset;
	uint32_t lines;
};

/* Copies the complete lines of text[0..len) into pieces (NUL-terminated,
 * each cut at STORAGE_LOG_LINE_MAX - 1 bytes, "\r" dropped, empty ones
 * skipped) and out, at most max_lines. A last line without its newline
 * waits for the next pass unless the buffer was full. pieces needs 2 x len
 * bytes. Returns the bytes of text consumed. */
static size_t logs__split(const char *text, size_t len, bool buffer_full, size_t max_lines,
			  int64_t at, char *pieces, struct storage_log_line *out, size_t *count)
{
	size_t start = 0, used = 0;

	while (start < len && *count < max_lines) {
		const char *newline = memchr(text + start, '\n', len - start);
		size_t end = newline ? (size_t)(newline - text) : len, next;

		if (end - start >= STORAGE_LOG_LINE_MAX) {
			end = start + STORAGE_LOG_LINE_MAX - 1;
			next = end;
		} else if (!newline && !buffer_full) {
			break;
		} else {
			next = newline ? end + 1 : end;
		}
		if (end > start && text[end - 1] == '\r')
			end--;
		if (end > start) {
			memcpy(pieces + used, text + start, end - start);
			pieces[used + end - start] = '\0';
			out[*count].at = at;
			snprintf(out[*count].level, sizeof(out[*count].level), "info");
			out[*count].message = pieces + used;
			(*count)++;
			used += end - start + 1;
		}
		start = next;
	}
	return start;
}

/* Copies the new complete lines of one console to PostgreSQL; advances
 * cursor on success. At max_lines, one warn line says the rest is not kept. */
static void logs__copy(struct worker *worker, struct log_cursor *cursor, uint32_t max_lines,
		       char *buffer, char *pieces, int64_t now_ms)
{
	static char capped[] = "sandbox log capped: later console output is not kept";
	struct storage_log_line lines[LOGS_LINES_MAX + 1];
	size_t room = max_lines - cursor->lines, count = 0, used;
	struct storage_error err;
	ssize_t got;
	int fd;

	fd = open(cursor->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	got = pread(fd, buffer, LOGS_READ_MAX, (off_t)cursor->offset);
	close(fd);
	if (got <= 0)
		return;
	used = logs__split(buffer, (size_t)got, got == LOGS_READ_MAX,
			   room < LOGS_LINES_MAX ? room : LOGS_LINES_MAX, now_ms, pieces, lines,
			   &count);
	if (cursor->lines + count >= max_lines) {
		lines[count].at = now_ms;
		snprintf(lines[count].level, sizeof(lines[count].level), "warn");
		lines[count++].message = capped;
	}
	if (count &&
	    storage__sandbox_logs_append(worker->storage, cursor->id, lines, count, &err)) {
		log_debug("logs: lines of %s not stored: %s", cursor->id, err.message);
		return;
	}
	cursor->offset += used;
	cursor->lines += (uint32_t)count;
}

static void worker__collect_logs(struct worker *worker, int64_t now_ms)
{
	int64_t interval_ms = config__get_int("sandbox_log_interval_ms", 1000);
	int64_t max_lines = config__get_int("sandbox_log_max_lines", 10000);
	struct log_cursor *cursors;
	size_t count = 0, capacity;
	char *buffer;

	if (interval_ms <= 0 || max_lines <= 0 || now_ms - worker->last_logs_ms < interval_ms)
		return;
	worker->last_logs_ms = now_ms;
	if (max_lines > 1000000)
		max_lines = 1000000;
	pthread_mutex_lock(&worker->lock);
	capacity = worker->live_count > 0 ? (size_t)worker->live_count : 0;
	cursors = capacity ? calloc(capacity, sizeof(*cursors)) : NULL;
	for (struct live_sandbox *s = worker->sandboxes; cursors && s && count < capacity;
	     s = s->next) {
		if (s->log_lines >= (uint32_t)max_lines ||
		    runtime__console_path(s->instance, cursors[count].path,
					  sizeof(cursors[count].path)))
			continue;
		snprintf(cursors[count].id, sizeof(cursors[count].id), "%s", s->id);
		cursors[count].offset = s->log_offset;
		cursors[count++].lines = s->log_lines;
	}
	pthread_mutex_unlock(&worker->lock);
	buffer = count ? malloc(LOGS_READ_MAX * 3) : NULL; /* text, then its pieces */
	for (size_t i = 0; buffer && i < count; i++)
		logs__copy(worker, &cursors[i], (uint32_t)max_lines, buffer, buffer + LOGS_READ_MAX,
			   now_ms);
	free(buffer);
	/* Back into the table (a sandbox that ended meanwhile is gone). */
	pthread_mutex_lock(&worker->lock);
	for (struct live_sandbox *s = worker->sandboxes; s; s = s->next) {
		for (size_t i = 0; i < count; i++) {
			if (strcmp(s->id, cursors[i].id))
				continue;
			s->log_offset = cursors[i].offset;
			s->log_lines = cursors[i].lines;
		}
	}
	pthread_mutex_unlock(&worker->lock);
	free(cursors);
}

void worker__sample_metrics(struct worker *worker)
{
	int64_t interval_ms = config__get_int("metrics_interval_ms", 5000);
	int64_t now_ms = clock__realtime_ms();
	struct storage_sandbox_metric *samples;
	size_t count = 0, capacity;

	if (!worker->storage)
		return;
	worker__collect_logs(worker, now_ms);
	if (interval_ms <= 0)
		return;
	if (interval_ms < 500)
		interval_ms = 500;
	pthread_mutex_lock(&worker->lock);
	capacity = worker->live_count > 0 ? (size_t)worker->live_count : 0;
	samples = capacity ? calloc(capacity, sizeof(*samples)) : NULL;
	for (struct live_sandbox *s = worker->sandboxes; samples && s && count < capacity;
	     s = s->next)
		if (metrics__take(s, now_ms, interval_ms, &samples[count]))
			count++;
	pthread_mutex_unlock(&worker->lock);
	for (size_t i = 0; i < count; i++) {
		struct storage_error err;

		/* A sandbox that ended meanwhile may have no row to refer to
		 * any more: dropping its last sample is fine. */
		if (storage__sandbox_metric_insert(worker->storage, &samples[i], &err))
			log_debug("metrics: sample of %s not stored: %s", samples[i].sandbox_id,
				  err.message);
		else
			prom__counter_add("warren_worker_metric_samples_total",
					  "Sandbox resource samples stored", NULL, 1);
	}
	free(samples);
	metrics__prune(worker, now_ms);
}

/* ---- Prometheus (lib/prom): this worker's state at each scrape ---- */

static void metrics__collect(void *arg)
{
	struct worker *worker = arg;
	struct net_pool_stats slots;
	int live;

	pthread_mutex_lock(&worker->lock);
	live = worker->live_count;
	pthread_mutex_unlock(&worker->lock);
	prom__gauge_set("warren_worker_sandboxes", "Sandboxes this worker runs now", NULL, live);
	prom__gauge_set("warren_worker_capacity_sandboxes",
			"Sandboxes this worker may run (setting worker_capacity)", NULL,
			worker->capacity);
	if (!worker->net)
		return;
	net_pool__stats(worker->net, &slots);
	prom__gauge_set("warren_worker_slots", "Network slots by state", "state=\"in_use\"",
			slots.in_use);
	prom__gauge_set("warren_worker_slots", NULL, "state=\"free\"",
			slots.existing - slots.in_use);
	prom__gauge_set("warren_worker_slots_capacity", "Network slots the slot range allows", NULL,
			slots.capacity);
	prom__gauge_set("warren_worker_egress_proxy_connections",
			"Connections open through the egress proxy", NULL, slots.proxy_connections);
}

int worker__metrics_serve(struct worker *worker)
{
	prom__add_collector(metrics__collect, worker);
	return prom__serve_logged(config__get("metrics_listen", ""));
}

void worker__metrics_command(const char *type, int rc, uint64_t started_ns)
{
	char labels[96];

	snprintf(labels, sizeof(labels), "type=\"%s\",result=\"%s\"", type,
		 rc == 0	 ? "done"
		 : rc == -EAGAIN ? "retry"
				 : "error");
	prom__counter_add("warren_worker_commands_total",
			  "Kafka commands handled, by type and result", labels, 1);
	snprintf(labels, sizeof(labels), "type=\"%s\"", type);
	prom__histogram_observe("warren_worker_command_duration_seconds",
				"Time to handle one command (a create: until the sandbox runs)",
				labels, (double)(clock__monotonic_ns() - started_ns) / 1e9);
}
