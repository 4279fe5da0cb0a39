/* storage metrics: resource samples of sandboxes (migrations/
 * 0003_sandbox_metrics_and_logs.sql), written by the worker that runs them and read
 * team-scoped by warren-api. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "warren/ids.h"

static void metric__decode(const PGresult *result, int row, void *item)
{
	struct storage_sandbox_metric *metric = item;
	const char *pct = PQgetisnull(result, row, 3) ? "0" : PQgetvalue(result, row, 3);

	storage__text(result, row, 0, metric->sandbox_id, sizeof(metric->sandbox_id));
	metric->at = storage__int(result, row, 1, 0);
	metric->cpu_count = (int32_t)storage__int(result, row, 2, 0);
	metric->cpu_used_pct = strtod(pct, NULL);
	metric->mem_used = storage__int(result, row, 4, 0);
	metric->mem_total = storage__int(result, row, 5, 0);
	metric->mem_cache = storage__int(result, row, 6, 0);
	metric->disk_used = storage__int(result, row, 7, 0);
	metric->disk_total = storage__int(result, row, 8, 0);
}

int storage__sandbox_metric_insert(struct storage_pool *pool,
				   const struct storage_sandbox_metric *sample,
				   struct storage_error *err)
{
	char at[24], cpus[16], pct[32], numbers[5][24];
	const int64_t figures[5] = {sample->mem_used, sample->mem_total, sample->mem_cache,
				    sample->disk_used, sample->disk_total};
	const char *params[] = {sample->sandbox_id, at,		cpus,	    pct,       numbers[0],
				numbers[1],	    numbers[2], numbers[3], numbers[4]};

	if (!ids__is_sandbox_id(sample->sandbox_id))
		return storage__fail(err, STORAGE_ERR_INVALID, "bad sandbox id");
	if (sample->at <= 0 || sample->cpu_count < 0 || !(sample->cpu_used_pct >= 0) ||
	    sample->cpu_used_pct > 1e6)
		return storage__fail(err, STORAGE_ERR_INVALID, "bad metric sample");
	for (int i = 0; i < 5; i++) {
		if (figures[i] < 0)
			return storage__fail(err, STORAGE_ERR_INVALID, "negative metric figure");
		snprintf(numbers[i], sizeof(numbers[i]), "%lld", (long long)figures[i]);
	}
	snprintf(at, sizeof(at), "%lld", (long long)sample->at);
	snprintf(cpus, sizeof(cpus), "%d", sample->cpu_count);
	snprintf(pct, sizeof(pct), "%.3f", sample->cpu_used_pct);
	return storage__run_exec(pool, STMT_METRICS_INSERT, params, err);
}

int storage__sandbox_metrics_list(struct storage_pool *pool, const char *team_id,
				  const char *sandbox_id, int64_t start_ms, int64_t end_ms,
				  struct storage_sandbox_metric **out, size_t *count,
				  struct storage_error *err)
{
	char start[24], end[24], limit[16];
	const char *params[] = {sandbox_id, team_id, start, end, limit};

	*out = NULL;
	*count = 0;
	if (!ids__is_sandbox_id(sandbox_id) || !ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	snprintf(start, sizeof(start), "%lld", (long long)start_ms);
	snprintf(end, sizeof(end), "%lld", (long long)end_ms);
	snprintf(limit, sizeof(limit), "%d", STORAGE_METRICS_LIST_MAX);
	return storage__run_list(pool, STMT_METRICS_LIST, params, sizeof(**out), metric__decode,
				 (void **)out, count, err);
}

int storage__sandbox_metrics_latest(struct storage_pool *pool, const char *team_id,
				    const char *const *ids, size_t id_count,
				    struct storage_sandbox_metric **out, size_t *count,
				    struct storage_error *err)
{
	char array[100 * (STORAGE_SANDBOX_ID_LEN + 1) + 3];
	const char *params[] = {team_id, array};
	size_t used = 0;

	*out = NULL;
	*count = 0;
	if (!ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "team not found");
	if (id_count < 1 || id_count > 100)
		return storage__fail(err, STORAGE_ERR_INVALID, "1..100 sandbox ids");
	array[used++] = '{';
	for (size_t i = 0; i < id_count; i++) {
		/* Checked ids ([a-z0-9] only) need no quoting in the array. */
		if (!ids__is_sandbox_id(ids[i]))
			return storage__fail(err, STORAGE_ERR_INVALID, "bad sandbox id");
		used += (size_t)snprintf(array + used, sizeof(array) - used, "%s%s", i ? "," : "",
					 ids[i]);
	}
	snprintf(array + used, sizeof(array) - used, "}");
	return storage__run_list(pool, STMT_METRICS_LATEST, params, sizeof(**out), metric__decode,
				 (void **)out, count, err);
}

int storage__sandbox_metrics_prune(struct storage_pool *pool, int64_t keep_s, int64_t *deleted,
				   struct storage_error *err)
{
	return storage__run_prune(pool, STMT_METRICS_PRUNE, keep_s, deleted, err);
}

int storage__sandbox_count_by_state(struct storage_pool *pool,
				    int64_t counts[STORAGE_SANDBOX_STATE_COUNT],
				    struct storage_error *err)
{
	struct storage_error local;
	PGresult *result;

	if (!err)
		err = &local;
	memset(counts, 0, sizeof(int64_t) * STORAGE_SANDBOX_STATE_COUNT);
	result = storage__run(pool, STMT_SANDBOX_COUNT_BY_STATE, NULL, err);
	if (!result)
		return err->code;
	for (int i = 0; i < PQntuples(result); i++) {
		enum storage_sandbox_state state;
		char name[32];

		storage__text(result, i, 0, name, sizeof(name));
		if (storage__sandbox_state_parse(name, &state))
			counts[state] = storage__int(result, i, 1, 0);
	}
	PQclear(result);
	return STORAGE_OK;
}
