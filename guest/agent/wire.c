/* wire: pure request decoders, see wire.h. The JSON mapping follows
 * protobuf's proto3 JSON rules (lowerCamelCase names, bytes as base64,
 * enums by name or number) as produced by @bufbuild/protobuf's toJson. */
#include "wire.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool string_is_clean(const json_t *value)
{
	return json_is_string(value) &&
	       strlen(json_string_value(value)) == json_string_length(value);
}

void wire__process_config_free(struct process_config *config)
{
	size_t i;

	if (config->argv) {
		for (i = 0; i < config->argc; i++)
			free(config->argv[i]);
		free(config->argv);
	}
	if (config->envs) {
		for (i = 0; i < config->env_count; i++)
			free(config->envs[i]);
		free(config->envs);
	}
	free(config->cmd);
	free(config->cwd);
	memset(config, 0, sizeof(*config));
}

bool wire__parse_process_config(const json_t *object, struct process_config *out, char *err,
				size_t err_len)
{
	const json_t *cmd, *args, *envs, *cwd, *value;
	const char *key;
	size_t i, count;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(object)) {
		snprintf(err, err_len, "process must be an object");
		return false;
	}
	cmd = json_object_get(object, "cmd");
	if (!string_is_clean(cmd) || json_string_length(cmd) == 0) {
		snprintf(err, err_len, "process.cmd must be a non-empty string");
		return false;
	}
	args = json_object_get(object, "args");
	if (args && !json_is_null(args) && !json_is_array(args)) {
		snprintf(err, err_len, "process.args must be an array");
		return false;
	}
	count = json_is_array(args) ? json_array_size(args) : 0;
	if (count > WIRE_MAX_ARGS) {
		snprintf(err, err_len, "too many arguments (max %d)", WIRE_MAX_ARGS);
		return false;
	}
	envs = json_object_get(object, "envs");
	if (envs && !json_is_null(envs) && !json_is_object(envs)) {
		snprintf(err, err_len, "process.envs must be an object");
		return false;
	}
	if (json_is_object(envs) && json_object_size(envs) > WIRE_MAX_ENVS) {
		snprintf(err, err_len, "too many environment variables (max %d)", WIRE_MAX_ENVS);
		return false;
	}
	cwd = json_object_get(object, "cwd");
	if (cwd && !json_is_null(cwd) && !string_is_clean(cwd)) {
		snprintf(err, err_len, "process.cwd must be a string");
		return false;
	}

	out->cmd = strdup(json_string_value(cmd));
	out->argv = calloc(count + 2, sizeof(char *));
	if (!out->cmd || !out->argv)
		goto oom;
	out->argv[0] = strdup(out->cmd);
	if (!out->argv[0])
		goto oom;
	out->argc = 1;
	for (i = 0; i < count; i++) {
		value = json_array_get(args, i);
		if (!string_is_clean(value)) {
			snprintf(err, err_len, "process.args[%zu] must be a string", i);
			goto fail;
		}
		out->argv[out->argc] = strdup(json_string_value(value));
		if (!out->argv[out->argc])
			goto oom;
		out->argc++;
	}
	out->envs = calloc((json_is_object(envs) ? json_object_size(envs) : 0) + 1, sizeof(char *));
	if (!out->envs)
		goto oom;
	if (json_is_object(envs)) {
		json_object_foreach((json_t *)envs, key, value)
		{
			if (key[0] == '\0' || strchr(key, '=') || !string_is_clean(value)) {
				snprintf(err, err_len, "invalid environment variable '%.64s'", key);
				goto fail;
			}
			if (asprintf(&out->envs[out->env_count], "%s=%s", key,
				     json_string_value(value)) < 0) {
				out->envs[out->env_count] = NULL;
				goto oom;
			}
			out->env_count++;
		}
	}
	if (string_is_clean(cwd) && json_string_length(cwd) > 0) {
		out->cwd = strdup(json_string_value(cwd));
		if (!out->cwd)
			goto oom;
	}
	return true;
oom:
	snprintf(err, err_len, "out of memory");
fail:
	wire__process_config_free(out);
	return false;
}

bool wire__parse_selector(const json_t *object, struct process_selector *out, char *err,
			  size_t err_len)
{
	const json_t *pid, *tag;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(object)) {
		snprintf(err, err_len, "process selector must be an object");
		return false;
	}
	pid = json_object_get(object, "pid");
	tag = json_object_get(object, "tag");
	if (pid && tag) {
		snprintf(err, err_len, "process selector has both pid and tag");
		return false;
	}
	if (pid) {
		/* uint32 in proto3 JSON: a number or a decimal string. */
		long long value = -1;
		if (json_is_integer(pid)) {
			value = json_integer_value(pid);
		} else if (string_is_clean(pid)) {
			char *end;
			const char *text = json_string_value(pid);
			if (isdigit((unsigned char)text[0])) {
				value = strtoll(text, &end, 10);
				if (*end)
					value = -1;
			}
		}
		if (value <= 0 || value > INT32_MAX) {
			snprintf(err, err_len, "process selector pid is not a valid pid");
			return false;
		}
		out->has_pid = true;
		out->pid = (uint32_t)value;
		return true;
	}
	if (tag) {
		if (!string_is_clean(tag) || json_string_length(tag) == 0 ||
		    json_string_length(tag) >= sizeof(out->tag)) {
			snprintf(err, err_len,
				 "process selector tag must be a string of 1-255 bytes");
			return false;
		}
		memcpy(out->tag, json_string_value(tag), json_string_length(tag) + 1);
		return true;
	}
	snprintf(err, err_len, "process selector needs pid or tag");
	return false;
}

int wire__parse_signal(const json_t *value)
{
	long long number = -1;

	if (json_is_integer(value))
		number = json_integer_value(value);
	else if (string_is_clean(value)) {
		const char *name = json_string_value(value);
		if (strcmp(name, "SIGNAL_SIGKILL") == 0)
			return SIGKILL;
		if (strcmp(name, "SIGNAL_SIGTERM") == 0)
			return SIGTERM;
		return 0;
	}
	if (number == 9)
		return SIGKILL;
	if (number == 15)
		return SIGTERM;
	return 0;
}

static int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

long wire__base64_decode(const char *text, size_t text_len, uint8_t *out, size_t out_cap)
{
	uint32_t accumulator = 0;
	size_t i, produced = 0, padding = 0;
	int bits = 0, value;

	while (text_len > 0 && text[text_len - 1] == '=' && padding < 2) {
		text_len--;
		padding++;
	}
	if (text_len % 4 == 1)
		return -1;
	if (padding && (text_len + padding) % 4 != 0)
		return -1;
	for (i = 0; i < text_len; i++) {
		value = base64_value((unsigned char)text[i]);
		if (value < 0)
			return -1;
		accumulator = (accumulator << 6) | (uint32_t)value;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (produced >= out_cap)
				return -1;
			out[produced++] = (uint8_t)(accumulator >> bits);
		}
	}
	return (long)produced;
}

void wire__base64_encode(const uint8_t *data, size_t len, char *out)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;
	uint32_t triple;

	for (i = 0; i + 2 < len; i += 3) {
		triple = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
		out[o++] = alphabet[(triple >> 18) & 63];
		out[o++] = alphabet[(triple >> 12) & 63];
		out[o++] = alphabet[(triple >> 6) & 63];
		out[o++] = alphabet[triple & 63];
	}
	if (len - i == 1) {
		triple = (uint32_t)data[i] << 16;
		out[o++] = alphabet[(triple >> 18) & 63];
		out[o++] = alphabet[(triple >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		triple = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
		out[o++] = alphabet[(triple >> 18) & 63];
		out[o++] = alphabet[(triple >> 12) & 63];
		out[o++] = alphabet[(triple >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}

bool wire__parse_basic_auth_user(const char *header, char *out, size_t out_len)
{
	uint8_t decoded[512];
	const char *encoded;
	long n;
	size_t name_len;
	uint8_t *colon;

	if (!header || strncasecmp(header, "Basic ", 6) != 0)
		return false;
	encoded = header + 6;
	while (*encoded == ' ')
		encoded++;
	n = wire__base64_decode(encoded, strlen(encoded), decoded, sizeof(decoded));
	if (n <= 0)
		return false;
	colon = memchr(decoded, ':', (size_t)n);
	name_len = colon ? (size_t)(colon - decoded) : (size_t)n;
	if (name_len == 0 || name_len >= out_len || memchr(decoded, '\0', name_len))
		return false;
	memcpy(out, decoded, name_len);
	out[name_len] = '\0';
	return true;
}

bool wire__parse_token_hash(const char *text, struct token_hash *out)
{
	size_t want, i;
	const char *hex;

	memset(out, 0, sizeof(*out));
	if (!text)
		return false;
	if (strncmp(text, "sha256:", 7) == 0) {
		out->algorithm = TOKEN_HASH_SHA256;
		want = 64;
	} else if (strncmp(text, "sha512:", 7) == 0) {
		out->algorithm = TOKEN_HASH_SHA512;
		want = 128;
	} else {
		return false;
	}
	hex = text + 7;
	if (strlen(hex) != want)
		goto fail;
	for (i = 0; i < want; i++) {
		if (!isxdigit((unsigned char)hex[i]))
			goto fail;
		out->hex[i] = (char)tolower((unsigned char)hex[i]);
	}
	out->hex[want] = '\0';
	return true;
fail:
	memset(out, 0, sizeof(*out));
	return false;
}

bool wire__content_type_is(const char *header, const char *type)
{
	size_t n = strlen(type);

	if (!header)
		return false;
	while (*header == ' ')
		header++;
	if (strncasecmp(header, type, n) != 0)
		return false;
	header += n;
	while (*header == ' ')
		header++;
	return *header == '\0' || *header == ';';
}

/* One Accept-Encoding element [start, end): does it accept gzip? "gzip" or
 * "x-gzip" or "*", and no q of zero among its parameters. */
static bool element_accepts_gzip(const char *start, const char *end)
{
	const char *name_end = start, *param;
	size_t len;

	while (start < end && (*start == ' ' || *start == '\t'))
		start++;
	for (name_end = start;
	     name_end < end && *name_end != ';' && *name_end != ' ' && *name_end != '\t';
	     name_end++)
		;
	len = (size_t)(name_end - start);
	if (!((len == 4 && strncasecmp(start, "gzip", 4) == 0) ||
	      (len == 6 && strncasecmp(start, "x-gzip", 6) == 0) || (len == 1 && *start == '*')))
		return false;
	for (param = name_end; param < end; param++) {
		if (*param != ';')
			continue;
		param++;
		while (param < end && (*param == ' ' || *param == '\t'))
			param++;
		if (end - param >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
			/* q=0, q=0.0, q=0.000: refused; anything else accepts */
			const char *digit = param + 2;
			bool zero = digit < end && *digit == '0';

			for (digit++; zero && digit < end && *digit != ';' && *digit != ' ';
			     digit++)
				zero = *digit == '0' || *digit == '.';
			return !zero;
		}
	}
	return true;
}

bool wire__accepts_gzip(const char *header)
{
	const char *start, *comma;

	if (!header)
		return false;
	for (start = header; *start; start = *comma ? comma + 1 : comma) {
		comma = strchrnul(start, ',');
		if (element_accepts_gzip(start, comma))
			return true;
	}
	return false;
}
