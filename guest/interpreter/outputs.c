/* outputs: iopub -> NDJSON (outputs.h). */
#include "outputs.h"

#include <stdlib.h>
#include <string.h>

static const struct {
	const char *mime, *key;
} mime_keys[] = {
    {"text/plain", "text"},
    {"text/html", "html"},
    {"text/markdown", "markdown"},
    {"image/svg+xml", "svg"},
    {"image/png", "png"},
    {"image/jpeg", "jpeg"},
    {"application/pdf", "pdf"},
    {"text/latex", "latex"},
    {"application/json", "json"},
    {"application/javascript", "javascript"},
    /* what the kernels' start-up file (ipython_startup.py) makes of a
     * matplotlib figure: the package's Result.chart */
    {"application/vnd.warren.chart+json", "chart"},
};

json_t *outputs__result(const json_t *data, bool is_main_result)
{
	json_t *line = json_pack("{s:s}", "type", "result");
	const char *mime;
	json_t *value;

	if (!line)
		return NULL;
	if (json_is_object(data)) {
		json_object_foreach((json_t *)data, mime, value)
		{
			const char *key = mime;

			for (size_t i = 0; i < sizeof(mime_keys) / sizeof(mime_keys[0]); i++)
				if (!strcmp(mime, mime_keys[i].mime))
					key = mime_keys[i].key;
			if (!strcmp(key, "type") || !strcmp(key, "is_main_result"))
				continue; /* never let a kernel overwrite the framing */
			json_object_set(line, key, value);
		}
	}
	json_object_set_new(line, "is_main_result", json_boolean(is_main_result));
	return line;
}

json_t *outputs__error(const char *name, const char *value, const json_t *traceback)
{
	size_t total = 1, index;
	json_t *frame, *line;
	char *joined;

	if (json_is_array(traceback))
		json_array_foreach(traceback, index, frame) total += json_string_length(frame) + 1;
	joined = calloc(1, total);
	if (!joined)
		return NULL;
	if (json_is_array(traceback)) {
		json_array_foreach(traceback, index, frame)
		{
			if (!json_is_string(frame))
				continue;
			if (joined[0])
				strcat(joined, "\n");
			strcat(joined, json_string_value(frame));
		}
	}
	line = json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "name", name ? name : "Error",
			 "value", value ? value : "", "traceback", joined);
	free(joined);
	return line;
}

json_t *outputs__from_iopub(const char *msg_type, const json_t *content)
{
	if (!json_is_object(content))
		return NULL;
	if (!strcmp(msg_type, "stream")) {
		const char *name = json_string_value(json_object_get(content, "name"));
		json_t *text = json_object_get(content, "text");

		if (!name || !json_is_string(text) ||
		    (strcmp(name, "stdout") && strcmp(name, "stderr")))
			return NULL;
		return json_pack("{s:s, s:O}", "type", name, "text", text);
	}
	if (!strcmp(msg_type, "execute_result"))
		return outputs__result(json_object_get(content, "data"), true);
	if (!strcmp(msg_type, "display_data"))
		return outputs__result(json_object_get(content, "data"), false);
	if (!strcmp(msg_type, "error"))
		return outputs__error(json_string_value(json_object_get(content, "ename")),
				      json_string_value(json_object_get(content, "evalue")),
				      json_object_get(content, "traceback"));
	return NULL;
}

json_t *outputs__execution_count(long long count)
{
	return json_pack("{s:s, s:I}", "type", "number_of_executions", "execution_count",
			 (json_int_t)count);
}

json_t *outputs__end(void)
{
	return json_pack("{s:s}", "type", "end_of_execution");
}

char *outputs__serialize(json_t *line)
{
	char *text, *with_newline;
	size_t len;

	if (!line)
		return NULL;
	text = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (!text)
		return NULL;
	len = strlen(text);
	with_newline = realloc(text, len + 2);
	if (!with_newline) {
		free(text);
		return NULL;
	}
	with_newline[len] = '\n';
	with_newline[len + 1] = '\0';
	return with_newline;
}
