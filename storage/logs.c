/* storage logs: sandbox log lines (migrations/0003_sandbox_metrics_and_logs.sql)
 * written by the worker that runs the sandbox, read team-scoped by
 * warren-api together with lifecycle lines made from sandbox_events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "warren/ids.h"

static bool logs__level_valid(const char *level)
{
	return level && (!strcmp(level, "debug") || !strcmp(level, "info") ||
			 !strcmp(level, "warn") || !strcmp(level, "error"));
}

/* A JSON string of at most STORAGE_LOG_LINE_MAX bytes of text; when text
 * is not UTF-8 (jansson refuses it), its non-ASCII bytes become '?'. */
static json_t *logs__message(const char *text)
{
	size_t len = strnlen(text, STORAGE_LOG_LINE_MAX);
	json_t *string = json_stringn(text, len);
	char *ascii;

	if (string)
		return string;
	ascii = malloc(len + 1);
	if (!ascii)
		return NULL;
	for (size_t i = 0; i < len; i++)
		ascii[i] = (unsigned char)text[i] >= 0x80 ? '?' : text[i];
	string = json_stringn(ascii, len);
	free(ascii);
	return string;
}

int storage__sandbox_logs_append(struct storage_pool *pool, const char *sandbox_id,
				 const struct storage_log_line *lines, size_t count,
				 struct storage_error *err)
{
	json_t *array;
	char *text;
	int rc;

	if (!ids__is_sandbox_id(sandbox_id))
		return storage__fail(err, STORAGE_ERR_INVALID, "bad sandbox id");
	if (count == 0)
		return STORAGE_OK;
	array = json_array();
	for (size_t i = 0; array && i < count; i++) {
		json_t *message = logs__message(lines[i].message ? lines[i].message : "");

		if (!message || !logs__level_valid(lines[i].level) || lines[i].at <= 0) {
			json_decref(message);
			json_decref(array);
			return storage__fail(err, STORAGE_ERR_INVALID, "bad log line");
		}
		json_array_append_new(array,
				      json_pack("{s:I, s:s, s:o}", "at", (json_int_t)lines[i].at,
						"level", lines[i].level, "message", message));
	}
	text = array ? json_dumps(array, JSON_COMPACT) : NULL;
	json_decref(array);
	if (!text)
		return storage__fail(err, STORAGE_ERR_INTERNAL, "out of memory");
	{
		const char *params[] = {sandbox_id, text};

		rc = storage__run_exec(pool, STMT_LOGS_APPEND, params, err);
	}
	free(text);
	return rc;
}

static void logs__decode(const PGresult *result, int row, void *item)
{
	struct storage_log_line *line = item;

	line->at = storage__int(result, row, 0, 0);
	storage__text(result, row, 1, line->level, sizeof(line->level));
	storage__text(result, row, 2, line->source, sizeof(line->source));
	line->message = strdup(PQgetisnull(result, row, 3) ? "" : PQgetvalue(result, row, 3));
}

int storage__sandbox_logs_list(struct storage_pool *pool, const char *team_id,
			       const char *sandbox_id, const struct storage_logs_query *query,
			       struct storage_log_line **out, size_t *count,
			       struct storage_error *err)
{
	char cursor[24], limit[16];
	const char *level = query->min_level ? query->min_level : "debug";
	const char *params[] = {sandbox_id,
				team_id,
				cursor,
				query->forward ? "true" : "false",
				limit,
				level,
				query->search && query->search[0] ? query->search : NULL};

	*out = NULL;
	*count = 0;
	if (!ids__is_sandbox_id(sandbox_id) || !ids__is_uuid(team_id))
		return storage__fail(err, STORAGE_ERR_NOT_FOUND, "sandbox not found");
	if (!logs__level_valid(level) || query->limit < 1 || query->limit > STORAGE_LOGS_LIST_MAX)
		return storage__fail(err, STORAGE_ERR_INVALID, "bad level or limit");
	snprintf(cursor, sizeof(cursor), "%lld", (long long)query->cursor_ms);
	snprintf(limit, sizeof(limit), "%d", query->limit);
	return storage__run_list(pool, STMT_LOGS_LIST, params, sizeof(**out), logs__decode,
				 (void **)out, count, err);
}

void storage__sandbox_logs_free(struct storage_log_line *lines, size_t count)
{
	for (size_t i = 0; lines && i < count; i++)
		free(lines[i].message);
	free(lines);
}

int storage__sandbox_logs_prune(struct storage_pool *pool, int64_t keep_s, int64_t *deleted,
				struct storage_error *err)
{
	return storage__run_prune(pool, STMT_LOGS_PRUNE, keep_s, deleted, err);
}
