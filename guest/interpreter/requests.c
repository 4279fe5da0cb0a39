/* requests: request body validation (requests.h). */
#include "requests.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static json_t *load_object(const char *data, size_t len, char *err, size_t err_len)
{
	json_error_t jerr;
	json_t *body;

	if (len == 0)
		return json_object();
	body = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(body)) {
		json_decref(body);
		snprintf(err, err_len, "the body must be a JSON object");
		return NULL;
	}
	return body;
}

/* A string member, or NULL when absent or null; *bad for another type or
 * an embedded NUL. */
static const char *optional_string(json_t *body, const char *key, bool *bad)
{
	json_t *value = json_object_get(body, key);

	if (!value || json_is_null(value))
		return NULL;
	if (!json_is_string(value) ||
	    strlen(json_string_value(value)) != json_string_length(value)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(value);
}

int requests__language_supported(const char *language)
{
	return !language || !strcmp(language, "python") || !strcmp(language, "python3");
}

int requests__execute(const char *data, size_t len, struct execute_request *out, char *err,
		      size_t err_len)
{
	bool bad = false;
	const char *key;
	json_t *value, *env;

	memset(out, 0, sizeof(*out));
	out->body = load_object(data, len, err, err_len);
	if (!out->body)
		return 400;
	out->code = optional_string(out->body, "code", &bad);
	out->context_id = optional_string(out->body, "context_id", &bad);
	out->language = optional_string(out->body, "language", &bad);
	if (bad || !out->code) {
		snprintf(err, err_len, "code must be a string; context_id and language strings");
		goto fail;
	}
	if (out->context_id && out->language) {
		snprintf(err, err_len, "give context_id or language, not both");
		goto fail;
	}
	if (!requests__language_supported(out->language)) {
		snprintf(err, err_len, "language '%.32s' is not supported here (python only)",
			 out->language);
		goto fail;
	}
	env = json_object_get(out->body, "env_vars");
	if (env && !json_is_null(env)) {
		if (!json_is_object(env))
			goto bad_env;
		json_object_foreach(
		    env, key, value) if (!json_is_string(value) || !key[0] || strchr(key, '=') ||
					 strlen(json_string_value(value)) !=
					     json_string_length(value)) goto bad_env;
		if (json_object_size(env))
			out->env_vars = env;
	}
	return 0;
bad_env:
	snprintf(err, err_len, "env_vars must be an object of strings");
fail:
	requests__execute_clear(out);
	return 400;
}

int requests__context(const char *data, size_t len, struct context_request *out, char *err,
		      size_t err_len)
{
	bool bad = false;

	memset(out, 0, sizeof(*out));
	out->body = load_object(data, len, err, err_len);
	if (!out->body)
		return 400;
	out->language = optional_string(out->body, "language", &bad);
	out->cwd = optional_string(out->body, "cwd", &bad);
	if (bad) {
		snprintf(err, err_len, "language and cwd must be strings");
		requests__context_clear(out);
		return 400;
	}
	return 0;
}

void requests__execute_clear(struct execute_request *r)
{
	json_decref(r->body);
	memset(r, 0, sizeof(*r));
}

void requests__context_clear(struct context_request *r)
{
	json_decref(r->body);
	memset(r, 0, sizeof(*r));
}
